//! Any bytes as one control line: parsing never panics, and a parsed command's log form is safe.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = ferry_proto::command::parse(data) {
        let shown = cmd.redacted();
        assert!(!shown.contains(['\r', '\n']));
        let _ = cmd.verb();
    }
});
