//! Any bytes as a client's stream of SFTP packets: framing and decoding never panic, and every
//! request that decodes re-encodes to a packet that decodes to the same request.
#![no_main]
use bytes::BytesMut;
use ferry_sftp_proto::{ClientMessage, split_packet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // As one packet body...
    check(bytes::Bytes::copy_from_slice(data));
    // ...and as a framed stream, with a small limit so over-long lengths are exercised.
    let mut stream = BytesMut::from(data);
    while let Ok(Some(packet)) = split_packet(&mut stream, 64 * 1024) {
        check(packet);
    }
});

fn check(packet: bytes::Bytes) {
    match ClientMessage::decode(packet) {
        Ok(m) => {
            let mut out = BytesMut::new();
            m.encode(&mut out);
            let body = split_packet(&mut out, u32::MAX)
                .ok()
                .flatten()
                .expect("an encoded message is one whole packet");
            assert_eq!(ClientMessage::decode(body).as_ref(), Ok(&m));
        }
        Err(e) => {
            let _ = (e.id(), e.status_code(), e.to_string());
        }
    }
}
