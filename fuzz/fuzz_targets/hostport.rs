//! PORT/EPRT arguments and PASV/EPSV reply texts: parsers never panic; what parses round-trips.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ferry_proto::hostport::*;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(a) = parse_port_arg(s) {
        assert_eq!(parse_port_arg(&format_port_arg(a)), Ok(a));
    }
    if let Ok(a) = parse_eprt_arg(s) {
        assert_eq!(parse_eprt_arg(&format_eprt_arg(a)), Ok(a));
    }
    let _ = parse_pasv_reply_text(s);
    let _ = parse_epsv_reply_text(s);
});
