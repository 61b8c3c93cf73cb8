//! Any bytes from a "server", fed in two pieces: the reply decoder never panics, and decoded
//! replies re-encode to something that decodes to the same reply.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ferry_proto::ReplyDecoder;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
    let mut d = ReplyDecoder::new(4096, 64);
    d.extend(&data[..split]);
    let mut replies = Vec::new();
    loop {
        match d.next_reply() {
            Ok(Some(r)) => replies.push(r),
            Ok(None) => break,
            Err(_) => break,
        }
    }
    d.extend(&data[split..]);
    while let Ok(Some(r)) = d.next_reply() {
        replies.push(r);
    }
    for r in replies {
        let mut again = ReplyDecoder::new(1 << 20, 1 << 16);
        again.extend(&r.to_bytes());
        let back = again.next_reply().ok().flatten();
        assert_eq!(back.map(|b| b.code), Some(r.code));
    }
});
