//! A control stream in arbitrary pieces: the line buffer never holds more than its limit.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ferry_proto::LineBuffer;

fuzz_target!(|data: &[u8]| {
    let mut b = LineBuffer::new(64);
    for chunk in data.chunks(7) {
        b.extend(chunk);
        while let Some(_line) = b.next_line() {}
        assert!(b.pending() <= 64 + 2);
    }
});
