//! LIST and MLSx lines from a hostile server: the client's parsers never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    for line in s.lines() {
        let _ = ferry_proto::listing::parse_list_line(line, 1_800_000_000);
        let _ = ferry_proto::listing::parse_mlsx_line(line);
    }
    let _ = ferry_proto::listing::parse_mdtm(s);
});
