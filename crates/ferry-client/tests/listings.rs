//! LIST and MLSD bodies as vsftpd, ProFTPD, Pure-FTPd, pyftpdlib and IIS send them
//! (fixtures/README.md describes each), parsed as the client parses them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_client::{EntryKind, ParsedEntry};
use ferry_proto::listing::{parse_list, parse_mlsd};

/// 2026-11-28 03:11:03 UTC.
const NOW: i64 = 1_795_835_463;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Unix seconds of a UTC date and time.
fn utc(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
    let days = ferry_proto::listing::days_from_civil(y, mo, d);
    days * 86_400 + i64::from(h * 3600 + mi * 60 + s)
}

fn find<'a>(entries: &'a [ParsedEntry], name: &str) -> &'a ParsedEntry {
    entries
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("{name} missing from {entries:#?}"))
}

/// What every fixture must yield; `precise` when times carry seconds (MLSD), `links` when
/// the format shows symlinks.
fn check(entries: &[ParsedEntry], precise: bool, links: bool, source: &str) {
    let expected = if links { 5 } else { 4 };
    assert_eq!(entries.len(), expected, "{source}: {entries:#?}");

    let d = find(entries, "pub");
    assert_eq!(d.kind, EntryKind::Dir, "{source}");
    let pub_time = if precise || source.starts_with("iis") {
        utc(2024, 3, 15, 10, 15, 0)
    } else {
        utc(2024, 3, 15, 0, 0, 0)
    };
    assert_eq!(d.mtime, Some(pub_time), "{source}");

    let big = find(entries, "big.bin");
    assert_eq!(big.kind, EntryKind::File, "{source}");
    assert_eq!(big.size, Some(1_048_576), "{source}");
    let big_time = utc(2026, 11, 28, 3, 8, if precise { 12 } else { 0 });
    assert_eq!(big.mtime, Some(big_time), "{source}");

    let a = find(entries, "a.txt");
    assert_eq!(a.size, Some(6), "{source}");
    let a_time = if precise {
        utc(2020, 1, 2, 3, 4, 5)
    } else if source.starts_with("iis") {
        utc(2020, 1, 2, 3, 4, 0)
    } else {
        utc(2020, 1, 2, 0, 0, 0)
    };
    assert_eq!(a.mtime, Some(a_time), "{source}");

    // Two spaces inside the name survive.
    let s = find(entries, "name with  spaces.txt");
    assert_eq!(s.size, Some(11), "{source}");
    assert_eq!(s.mtime, Some(utc(2026, 11, 27, 22, 15, 0)), "{source}");

    if links {
        let l = find(entries, "link");
        assert_eq!(l.mtime, Some(utc(2023, 6, 1, 0, 0, 0)), "{source}");
        if l.kind == EntryKind::Symlink && !precise {
            assert_eq!(l.link_target.as_deref(), Some("a.txt"), "{source}");
        }
    }
}

#[test]
fn unix_list_formats() {
    for (name, links) in [
        ("vsftpd.list", true),
        ("proftpd.list", true),
        ("pureftpd.list", true),
        ("pyftpdlib.list", true),
    ] {
        let entries = parse_list(&fixture(name), NOW);
        check(&entries, false, links, name);
        assert_eq!(find(&entries, "link").kind, EntryKind::Symlink, "{name}");
    }
}

#[test]
fn iis_dos_formats() {
    for name in ["iis.list", "iis-4digit.list"] {
        let entries = parse_list(&fixture(name), NOW);
        check(&entries, false, false, name);
    }
}

#[test]
fn mlsd_formats() {
    for (name, links) in [
        ("proftpd.mlsd", true),
        ("pureftpd.mlsd", true),
        ("pyftpdlib.mlsd", true),
        ("iis.mlsd", false),
    ] {
        let entries = parse_mlsd(&fixture(name));
        check(&entries, true, links, name);
    }
    let pure = parse_mlsd(&fixture("pureftpd.mlsd"));
    let link = find(&pure, "link");
    assert_eq!(link.kind, EntryKind::Symlink);
    assert_eq!(link.link_target.as_deref(), Some("a.txt"));
    assert_eq!(
        find(&parse_mlsd(&fixture("proftpd.mlsd")), "link").kind,
        EntryKind::Symlink
    );
    // pyftpdlib follows links in MLSD: a plain file.
    assert_eq!(
        find(&parse_mlsd(&fixture("pyftpdlib.mlsd")), "link").kind,
        EntryKind::File
    );
}

#[test]
fn garbage_is_skipped_not_fatal() {
    let junk = b"total 0\r\n\r\nhello world\r\n-rw-r--r-- 1 a b 3 Nov 28 03:08\r\n\xff\xfe\r\n";
    assert!(parse_list(junk, NOW).is_empty());
    assert!(parse_mlsd(b"no facts here\r\ntype=file;size=x; f\r\n").len() <= 1);
}
