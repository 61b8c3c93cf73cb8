use super::*;
use super::{calendar::*, digits::*, format::*, parse::*};
use proptest::prelude::*;

/// 2026-11-28 03:11:03 UTC.
const NOW: i64 = 1_795_835_463;

fn at(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
    Civil {
        year: y,
        month: mo,
        day: d,
        hour: h,
        min: mi,
        sec: s,
    }
    .to_unix()
    .unwrap()
}

fn entry(name: &str, kind: EntryKind, size: u64, mtime: i64, mode: u32) -> Entry {
    Entry {
        name: name.into(),
        kind,
        size,
        mtime,
        mode,
        nlink: 1,
        unique: None,
    }
}

fn list_line(e: &Entry, now: i64) -> String {
    let mut out = Vec::new();
    format_list_line(e, now, &mut out);
    String::from_utf8(out).unwrap()
}

fn mlsx_line(e: &Entry, role: MlsxRole, facts: &MlstFacts, perm: &str) -> String {
    let mut out = Vec::new();
    format_mlsx_line(e, role, facts, perm, &mut out);
    String::from_utf8(out).unwrap()
}

fn parsed(name: &str, kind: EntryKind, size: Option<u64>, mtime: Option<i64>) -> ParsedEntry {
    ParsedEntry {
        name: name.into(),
        kind,
        size,
        mtime,
        link_target: None,
    }
}

#[test]
fn civil_conversions() {
    assert_eq!(at(2026, 11, 28, 3, 11, 3), NOW);
    assert_eq!(days_from_civil(1970, 1, 1), 0);
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(-1), (1969, 12, 31));
    assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    assert_eq!(days_from_civil(0, 1, 1), -719_528);
    assert_eq!(
        Civil::from_unix(-1),
        Civil {
            year: 1969,
            month: 12,
            day: 31,
            hour: 23,
            min: 59,
            sec: 59
        }
    );
    assert!(
        Civil {
            year: 2025,
            month: 2,
            day: 29,
            hour: 0,
            min: 0,
            sec: 0
        }
        .to_unix()
        .is_none()
    );
    assert!(
        Civil {
            year: 2024,
            month: 2,
            day: 29,
            hour: 0,
            min: 0,
            sec: 0
        }
        .to_unix()
        .is_some()
    );
    assert!(
        Civil {
            year: 1900,
            month: 2,
            day: 29,
            hour: 0,
            min: 0,
            sec: 0
        }
        .to_unix()
        .is_none()
    );
    let _ = Civil::from_unix(i64::MIN);
    let _ = Civil::from_unix(i64::MAX);
}

#[test]
fn mdtm() {
    assert_eq!(format_mdtm(0), "19700101000000");
    assert_eq!(format_mdtm(NOW), "20261128031103");
    assert_eq!(format_mdtm(-1), "19691231235959");
    assert_eq!(format_mdtm(i64::MIN), "00000101000000");
    assert_eq!(format_mdtm(i64::MAX), "99991231235959");
    assert_eq!(parse_mdtm("20261128031103"), Some(NOW));
    assert_eq!(parse_mdtm("20261128031103.5"), Some(NOW));
    assert_eq!(parse_mdtm("20261128031103.123456"), Some(NOW));
    assert_eq!(parse_mdtm("19691231235959"), Some(-1));
    assert_eq!(parse_mdtm("20161231235960"), Some(at(2017, 1, 1, 0, 0, 0)));
    for bad in [
        "",
        "2026112803110",
        "202611280311033",
        "20261328031103",
        "20260028031103",
        "20261100031103",
        "20261131031103",
        "20250229000000",
        "20261128241103",
        "20261128036003",
        "20261128031161",
        "20261128031103.",
        "20261128031103.x",
        "2026112803110a",
        "+2026112803110",
        " 20261128031103",
        "20261128031103 ",
        "2026-11-28 03:1",
        "２0261128031103",
    ] {
        assert_eq!(parse_mdtm(bad), None, "{bad:?}");
    }
    assert_eq!(
        parse_mdtm("20240229120000"),
        Some(at(2024, 2, 29, 12, 0, 0))
    );
}

#[test]
fn list_line_format() {
    let recent = at(2026, 11, 20, 3, 8, 59);
    assert_eq!(
        list_line(&entry("pub", EntryKind::Dir, 4096, recent, 0o755), NOW),
        "drwxr-xr-x    1 ftp      ftp               4096 Nov 20 03:08 pub\r\n"
    );
    let old = at(2024, 1, 5, 10, 0, 0);
    assert_eq!(
        list_line(
            &entry("big file.bin", EntryKind::File, 1_048_576, old, 0o644),
            NOW
        ),
        "-rw-r--r--    1 ftp      ftp            1048576 Jan  5  2024 big file.bin\r\n"
    );
    let link = entry("bin", EntryKind::Symlink, 7, recent, 0o777);
    assert!(list_line(&link, NOW).starts_with("lrwxrwxrwx "));
    let odd = entry("x", EntryKind::Other, 0, recent, 0o7644);
    assert!(list_line(&odd, NOW).starts_with("-rwSr-Sr-T "));
    let odd = entry("x", EntryKind::File, 0, recent, 0o7755);
    assert!(list_line(&odd, NOW).starts_with("-rwsr-sr-t "));
    // Over six months ago, or more than a day in the future: show the year.
    let e = entry("f", EntryKind::File, 1, NOW - 181 * DAY, 0o644);
    assert!(
        list_line(&e, NOW).contains(" May 31  2026 f"),
        "{}",
        list_line(&e, NOW)
    );
    let e = entry("f", EntryKind::File, 1, NOW - 179 * DAY, 0o644);
    assert!(list_line(&e, NOW).contains(" Jun  2 03:11 f"));
    let e = entry("f", EntryKind::File, 1, NOW + 2 * DAY, 0o644);
    assert!(list_line(&e, NOW).contains(" Nov 30  2026 f"));
    let e = entry("f", EntryKind::File, 1, NOW + 3600, 0o644);
    assert!(list_line(&e, NOW).contains(" Nov 28 04:11 f"));
    // Hostile names can't add lines.
    let e = entry(
        "a\r\n-rw-r--r-- 1 x x 1 Jan 1 2020 fake",
        EntryKind::File,
        1,
        NOW,
        0o644,
    );
    assert_eq!(list_line(&e, NOW).matches("\r\n").count(), 1);
    // Extreme values don't panic.
    let e = Entry {
        nlink: u64::MAX,
        ..entry("f", EntryKind::File, u64::MAX, i64::MIN, u32::MAX)
    };
    let _ = list_line(&e, i64::MAX);
    let _ = list_line(&entry("f", EntryKind::File, 0, i64::MAX, 0), i64::MIN);
}

#[test]
fn nlst_line() {
    let mut out = Vec::new();
    format_nlst_line("a b", &mut out);
    format_nlst_line("x\ny", &mut out);
    assert_eq!(out, b"a b\r\nx?y\r\n");
}

#[test]
fn mlst_facts() {
    let all = MlstFacts::default();
    assert_eq!(all.feat_line(), "MLST type*;size*;modify*;perm*;unique*;");
    assert_eq!(all.enabled_list(), "type;size;modify;perm;unique;");
    let some = MlstFacts::from_opts("Type;SIZE;bogus;");
    assert_eq!(
        some,
        MlstFacts {
            kind: true,
            size: true,
            modify: false,
            perm: false,
            unique: false
        }
    );
    assert_eq!(some.feat_line(), "MLST type*;size*;modify;perm;unique;");
    assert_eq!(some.enabled_list(), "type;size;");
    let none = MlstFacts::from_opts("");
    assert_eq!(none.enabled_list(), "");
    assert_eq!(
        MlstFacts::from_opts("modify;unique"),
        MlstFacts {
            kind: false,
            size: false,
            modify: true,
            perm: false,
            unique: true
        }
    );
}

#[test]
fn mlsx_line_format() {
    let mut e = entry("a file", EntryKind::File, 1234, NOW, 0o644);
    e.unique = Some(Unique::DevIno {
        dev: 0x803,
        ino: 0x2a1,
    });
    let all = MlstFacts::default();
    assert_eq!(
        mlsx_line(&e, MlsxRole::Entry, &all, "adfrw"),
        "type=file;size=1234;modify=20261128031103;perm=adfrw;unique=803g2a1; a file\r\n"
    );
    let d = entry("d", EntryKind::Dir, 4096, NOW, 0o755);
    assert_eq!(
        mlsx_line(&d, MlsxRole::Entry, &all, ""),
        "type=dir;modify=20261128031103; d\r\n"
    );
    assert_eq!(
        mlsx_line(&d, MlsxRole::Cdir, &all, "el"),
        "type=cdir;modify=20261128031103;perm=el; d\r\n"
    );
    assert_eq!(
        mlsx_line(&d, MlsxRole::Pdir, &all, "el"),
        "type=pdir;modify=20261128031103;perm=el; d\r\n"
    );
    let l = entry("l", EntryKind::Symlink, 3, NOW, 0o777);
    assert!(mlsx_line(&l, MlsxRole::Entry, &all, "").starts_with("type=OS.unix=symlink;modify="));
    let some = MlstFacts::from_opts("type;size");
    assert_eq!(
        mlsx_line(&e, MlsxRole::Entry, &some, "r"),
        "type=file;size=1234; a file\r\n"
    );
    assert_eq!(
        mlsx_line(&e, MlsxRole::Entry, &MlstFacts::from_opts(""), "r"),
        " a file\r\n"
    );
    e.unique = Some(Unique::Id(0xabcd));
    e.name = "evil\r\nname".into();
    assert!(
        mlsx_line(&e, MlsxRole::Entry, &all, "r;w")
            .ends_with("perm=rw;unique=mabcd; evil??name\r\n")
    );
}

#[test]
fn parse_vsftpd_listing() {
    let lines = [
        "drwxr-xr-x    2 ftp      ftp          4096 Nov 28 03:08 pub",
        "-rw-r--r--    1 1000     1000      1048576 Jan 05  2024 big.bin",
        "lrwxrwxrwx    1 0        0               7 Mar 03  2021 bin -> usr/bin",
        "-rw-------    1 1000     1000            0 Nov 29 01:00 tomorrow",
        "-rw-------    1 1000     1000            0 Dec 25 10:00 last-christmas",
    ];
    let got: Vec<_> = lines.iter().map(|l| parse_list_line(l, NOW)).collect();
    assert_eq!(
        got[0],
        Some(parsed(
            "pub",
            EntryKind::Dir,
            Some(4096),
            Some(at(2026, 11, 28, 3, 8, 0))
        ))
    );
    assert_eq!(
        got[1],
        Some(parsed(
            "big.bin",
            EntryKind::File,
            Some(1_048_576),
            Some(at(2024, 1, 5, 0, 0, 0))
        ))
    );
    assert_eq!(
        got[2],
        Some(ParsedEntry {
            name: "bin".into(),
            kind: EntryKind::Symlink,
            size: Some(7),
            mtime: Some(at(2021, 3, 3, 0, 0, 0)),
            link_target: Some("usr/bin".into()),
        })
    );
    assert_eq!(
        got[3].as_ref().and_then(|e| e.mtime),
        Some(at(2026, 11, 29, 1, 0, 0))
    );
    assert_eq!(
        got[4].as_ref().and_then(|e| e.mtime),
        Some(at(2025, 12, 25, 10, 0, 0))
    );
}

#[test]
fn parse_proftpd_and_others() {
    let e = parse_list_line(
        "-rw-r--r--   1 ftp      ftp          1234 Nov 28 03:08 README\r\n",
        NOW,
    );
    assert_eq!(
        e,
        Some(parsed(
            "README",
            EntryKind::File,
            Some(1234),
            Some(at(2026, 11, 28, 3, 8, 0))
        ))
    );
    // pure-ftpd's wider columns.
    let e = parse_list_line(
        "drwxr-xr-x    2 1000       1000             4096 Nov 28 03:08 .",
        NOW,
    );
    assert_eq!(
        e.map(|e| (e.name, e.kind)),
        Some((".".into(), EntryKind::Dir))
    );
    // No group column (8 fields).
    let e = parse_list_line("-rw-r--r--   1 owner      1234 Nov 28 03:08 file", NOW);
    assert_eq!(
        e.map(|e| (e.name, e.size)),
        Some(("file".into(), Some(1234)))
    );
    // ACL and macOS xattr markers; names with spaces, leading space, arrows in files.
    let e = parse_list_line("-rw-r--r--+  1 user group 12 Nov 28 03:08 acl file", NOW);
    assert_eq!(e.map(|e| e.name), Some("acl file".into()));
    let e = parse_list_line("-rw-r--r--@  1 user  staff  12 Nov 28 03:08 x", NOW);
    assert_eq!(e.map(|e| e.name), Some("x".into()));
    let e = parse_list_line("-rw-r--r-- 1 ftp ftp 12 Nov 28 03:08  lead", NOW);
    assert_eq!(e.map(|e| e.name), Some(" lead".into()));
    let e = parse_list_line("-rw-r--r-- 1 ftp ftp 12 Nov 28 03:08 a -> b", NOW);
    assert_eq!(
        e.map(|e| (e.name, e.link_target)),
        Some(("a -> b".into(), None))
    );
    // Owner named like a month does not confuse the date search.
    let e = parse_list_line("-rw-r--r-- 1 jan may 12 Nov 28 2020 Dec 1 2020 x", NOW);
    assert_eq!(
        e.map(|e| (e.name, e.mtime)),
        Some(("Dec 1 2020 x".into(), Some(at(2020, 11, 28, 0, 0, 0))))
    );
    // Devices: `major, minor` instead of a size.
    let e = parse_list_line(
        "crw-rw-rw-   1 root     root       1,   3 Nov 28 03:08 null",
        NOW,
    );
    assert_eq!(
        e,
        Some(parsed(
            "null",
            EntryKind::Other,
            None,
            Some(at(2026, 11, 28, 3, 8, 0))
        ))
    );
    let e = parse_list_line(
        "brw-rw----   1 root     disk       8,0 Nov 28 03:08 sda",
        NOW,
    );
    assert_eq!(e.map(|e| (e.kind, e.size)), Some((EntryKind::Other, None)));
    let e = parse_list_line(
        "prw-r--r--   1 root     root          0 Nov 28 03:08 fifo",
        NOW,
    );
    assert_eq!(
        e.map(|e| (e.kind, e.size)),
        Some((EntryKind::Other, Some(0)))
    );
    // Feb 29 without a year goes back to a leap year.
    let e = parse_list_line("-rw-r--r-- 1 a b 1 Feb 29 12:00 leap", NOW);
    assert_eq!(e.and_then(|e| e.mtime), Some(at(2024, 2, 29, 12, 0, 0)));
    // Year rollover: late on Dec 31, a Jan 1 entry from a server ahead in time is next year.
    let eve = at(2026, 12, 31, 23, 0, 0);
    let e = parse_list_line("-rw-r--r-- 1 a b 1 Jan  1 05:00 new", eve);
    assert_eq!(e.and_then(|e| e.mtime), Some(at(2027, 1, 1, 5, 0, 0)));
}

#[test]
fn parse_iis_listing() {
    let e = parse_list_line("11-28-26  03:08AM       <DIR>          name", NOW);
    assert_eq!(
        e,
        Some(parsed(
            "name",
            EntryKind::Dir,
            None,
            Some(at(2026, 11, 28, 3, 8, 0))
        ))
    );
    let e = parse_list_line("11-28-2026  03:08PM             1234 my file.txt\r\n", NOW);
    assert_eq!(
        e,
        Some(parsed(
            "my file.txt",
            EntryKind::File,
            Some(1234),
            Some(at(2026, 11, 28, 15, 8, 0))
        ))
    );
    let e = parse_list_line("01-01-99  12:00AM                1 old", NOW);
    assert_eq!(e.and_then(|e| e.mtime), Some(at(1999, 1, 1, 0, 0, 0)));
    let e = parse_list_line("01-01-99  12:30PM                1 noon", NOW);
    assert_eq!(e.and_then(|e| e.mtime), Some(at(1999, 1, 1, 12, 30, 0)));
    let e = parse_list_line("11-28-26  15:08       <dir>          x", NOW);
    assert_eq!(
        e.map(|e| (e.kind, e.mtime)),
        Some((EntryKind::Dir, Some(at(2026, 11, 28, 15, 8, 0))))
    );
    let e = parse_list_line("11-28-26  03:08PM       1,234,567 big", NOW);
    assert_eq!(e.and_then(|e| e.size), Some(1_234_567));
    for bad in [
        "13-28-26  03:08AM  <DIR>  x",
        "11-31-26  03:08AM  <DIR>  x",
        "11-28-26  13:08PM  <DIR>  x",
        "11-28-26  00:08AM  <DIR>  x",
        "11-28-26  03:08AM  <DIR>",
        "11-28-26  03:08AM  12a  x",
        "11-28-026  03:08AM  1  x",
        "11-28  03:08AM  1  x",
    ] {
        assert_eq!(parse_list_line(bad, NOW), None, "{bad:?}");
    }
}

#[test]
fn parse_list_rejects() {
    for bad in [
        "",
        "total 12",
        "total 0\r\n",
        "hello world",
        "-rw-r--r-- 1 ftp ftp 12 Nov 28 03:08",
        "-rw-r--r-- 1 ftp ftp 12 Nox 28 03:08 x",
        "-rw-r--r-- 1 ftp ftp 12 Nov 32 03:08 x",
        "-rw-r--r-- 1 ftp ftp 12 Nov 28 25:08 x",
        "-rw-r--r-- 1 ftp ftp -12 Nov 28 03:08 x",
        "-rw-r--r-- 1 ftp ftp 12 Nov 28 99999 x",
        "-rw-r--r-- 1 ftp ftp 12 Nov 31 2020 x",
        "xrw-r--r-- 1 ftp ftp 12 Nov 28 03:08 x",
        "-rw-r--r 1 ftp ftp 12 Nov 28 03:08 x",
        "-rw-r--r--X 1 ftp ftp 12 Nov 28 03:08 x",
        "-rwxrwxrwx",
        "-é-r--r--é 1 ftp ftp 12 Nov 28 03:08 x",
    ] {
        assert_eq!(parse_list_line(bad, NOW), None, "{bad:?}");
    }
}

#[test]
fn parse_mlsx() {
    let e = parse_mlsx_line(
        "type=file;size=1234;modify=20261128031103;perm=adfrw;unique=8a; a file\r\n",
    );
    assert_eq!(
        e,
        Some(parsed("a file", EntryKind::File, Some(1234), Some(NOW)))
    );
    let e = parse_mlsx_line("Type=DIR;Modify=20261128031103; sub");
    assert_eq!(e, Some(parsed("sub", EntryKind::Dir, None, Some(NOW))));
    let e = parse_mlsx_line("type=cdir;perm=el; /pub");
    assert_eq!(
        e.map(|e| (e.name, e.kind)),
        Some(("/pub".into(), EntryKind::Dir))
    );
    let e = parse_mlsx_line("type=pdir; ..");
    assert_eq!(e.map(|e| e.kind), Some(EntryKind::Dir));
    // MLST over the control connection has a leading space.
    let e = parse_mlsx_line(" type=file;size=1; /dir/f");
    assert_eq!(
        e.map(|e| (e.name, e.size)),
        Some(("/dir/f".into(), Some(1)))
    );
    // All facts off: just ` name`; a leading-space name survives.
    assert_eq!(
        parse_mlsx_line(" lone"),
        Some(parsed("lone", EntryKind::Other, None, None))
    );
    assert_eq!(
        parse_mlsx_line("  spaced"),
        Some(parsed(" spaced", EntryKind::Other, None, None))
    );
    let e = parse_mlsx_line("type=OS.unix=symlink;size=3; l");
    assert_eq!(e.map(|e| e.kind), Some(EntryKind::Symlink));
    let e = parse_mlsx_line("type=OS.unix=slink:/target/x;modify=20261128031103; l");
    assert_eq!(
        e.map(|e| (e.kind, e.link_target)),
        Some((EntryKind::Symlink, Some("/target/x".into())))
    );
    let e = parse_mlsx_line("type=OS.unix=chr-1/3; null");
    assert_eq!(e.map(|e| e.kind), Some(EntryKind::Other));
    // Name containing "; " and '=' is kept whole.
    let e = parse_mlsx_line("type=file; a; b=c");
    assert_eq!(e.map(|e| e.name), Some("a; b=c".into()));
    // Bad fact values are dropped, not fatal.
    let e = parse_mlsx_line("type=file;size=-1;modify=bogus; f");
    assert_eq!(e, Some(parsed("f", EntryKind::File, None, None)));
    for bad in [
        "",
        "type=file;",
        "type=file; ",
        "nofacts",
        "garbage here",
        " ",
    ] {
        assert_eq!(parse_mlsx_line(bad), None, "{bad:?}");
    }
}

fn name() -> impl Strategy<Value = String> {
    "[^\r\n\t ][^\r\n]{0,20}".prop_filter("no symlink arrow", |n| !n.contains(" -> "))
}

fn kind() -> impl Strategy<Value = EntryKind> {
    prop_oneof![
        Just(EntryKind::File),
        Just(EntryKind::Dir),
        Just(EntryKind::Symlink)
    ]
}

proptest! {
    #[test]
    fn civil_round_trip(days in -100_000_000i64..100_000_000) {
        let (y, m, d) = civil_from_days(days);
        prop_assert!((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m));
        prop_assert_eq!(days_from_civil(y, m, d), days);
    }

    #[test]
    fn mdtm_round_trip(secs in MDTM_MIN..=MDTM_MAX) {
        let s = format_mdtm(secs);
        prop_assert_eq!(s.len(), 14);
        prop_assert_eq!(parse_mdtm(&s), Some(secs));
    }

    #[test]
    fn list_round_trip(
        name in name(),
        kind in kind(),
        size in any::<u64>(),
        mtime in -2_000_000_000i64..4_000_000_000,
        now in -2_000_000_000i64..4_000_000_000,
        mode in 0u32..0o10000,
        nlink in any::<u64>(),
    ) {
        let e = Entry { name: name.clone(), kind, size, mtime, mode, nlink, unique: None };
        let line = list_line(&e, now);
        let p = parse_list_line(&line, now);
        prop_assert!(p.is_some(), "{:?}", line);
        let p = p.unwrap_or_else(|| parsed("", EntryKind::Other, None, None));
        prop_assert_eq!(&p.name, &name);
        prop_assert_eq!(p.kind, kind);
        prop_assert_eq!(p.size, Some(size));
        let recent = mtime <= now + DAY && now - mtime < RECENT;
        let want = if recent { mtime - mtime.rem_euclid(60) } else { mtime - mtime.rem_euclid(DAY) };
        prop_assert_eq!(p.mtime, Some(want), "{:?}", line);
    }

    #[test]
    fn mlsx_round_trip(name in name(), kind in kind(), size in any::<u64>(), mtime in MDTM_MIN..=MDTM_MAX) {
        let e = Entry { name: name.clone(), kind, size, mtime, mode: 0o644, nlink: 1, unique: Some(Unique::Id(1)) };
        let line = mlsx_line(&e, MlsxRole::Entry, &MlstFacts::default(), "r");
        let p = parse_mlsx_line(&line);
        prop_assert_eq!(p, Some(ParsedEntry {
            name,
            kind,
            size: (kind == EntryKind::File).then_some(size),
            mtime: Some(mtime),
            link_target: None,
        }));
    }

    #[test]
    fn integer_helpers_match_format_any(v in any::<u64>(), width in 0usize..24) {
        check_integer_helpers(v);
        let s = v as i64;
        prop_assert_eq!(
            pushed(|o| push_i64_padded_right(o, s, width)),
            format!("x{s:>width$}")
        );
    }

    #[test]
    fn parsers_never_panic(line in "\\PC{0,80}", now in any::<i64>()) {
        let _ = parse_list_line(&line, now);
        let _ = parse_mlsx_line(&line);
        let _ = parse_mdtm(&line);
    }

    #[test]
    fn parsers_never_panic_on_plausible(
        line in "[-dlcbp][rwxsStT-]{9}[+@]? {1,3}[0-9]{1,3} [a-z]{1,5} [a-z]{0,5} [0-9, ]{1,8} (Jan|Feb|Nov|Dec) [0-9]{1,2} ([0-9]{1,2}:[0-9]{2}|[0-9]{4}) {1,2}.{0,10}",
        now in any::<i64>(),
    ) {
        let _ = parse_list_line(&line, now);
    }
}

/// The `write!`-based formatters the byte-pushing ones replaced, kept as the reference
/// they must match byte for byte.
mod reference {
    use super::super::*;
    use std::io::Write;

    #[derive(Default)]
    struct ModeString {
        bytes: [u8; 10],
        len: usize,
    }

    impl ModeString {
        fn push(&mut self, c: char) {
            if self.len < self.bytes.len() {
                self.bytes[self.len] = c as u8;
                self.len += 1;
            }
        }
    }

    impl std::fmt::Display for ModeString {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("----------"))
        }
    }

    fn mode_string(kind: EntryKind, mode: u32) -> ModeString {
        let mut s = ModeString::default();
        s.push(match kind {
            EntryKind::Dir => 'd',
            EntryKind::Symlink => 'l',
            EntryKind::File | EntryKind::Other => '-',
        });
        let bit = |mask: u32, c: char| if mode & mask != 0 { c } else { '-' };
        let special = |exec: bool, special: bool, on: char| match (exec, special) {
            (true, true) => on,
            (false, true) => on.to_ascii_uppercase(),
            (true, false) => 'x',
            (false, false) => '-',
        };
        s.push(bit(0o400, 'r'));
        s.push(bit(0o200, 'w'));
        s.push(special(mode & 0o100 != 0, mode & 0o4000 != 0, 's'));
        s.push(bit(0o040, 'r'));
        s.push(bit(0o020, 'w'));
        s.push(special(mode & 0o010 != 0, mode & 0o2000 != 0, 's'));
        s.push(bit(0o004, 'r'));
        s.push(bit(0o002, 'w'));
        s.push(special(mode & 0o001 != 0, mode & 0o1000 != 0, 't'));
        s
    }

    fn push_name(out: &mut Vec<u8>, name: &str) {
        out.extend(
            name.bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b'?' } else { b }),
        );
    }

    pub(super) fn format_list_line(entry: &Entry, now: i64, out: &mut Vec<u8>) {
        let t = Civil::from_unix(entry.mtime);
        let month = MONTHS[(t.month as usize).saturating_sub(1) % 12];
        let recent =
            entry.mtime <= now.saturating_add(DAY) && now.saturating_sub(entry.mtime) < RECENT;
        let _ = write!(
            out,
            "{} {:>4} ftp      ftp      {:>13} {month} {:>2} ",
            mode_string(entry.kind, entry.mode),
            entry.nlink,
            entry.size,
            t.day
        );
        let _ = if recent {
            write!(out, "{:02}:{:02} ", t.hour, t.min)
        } else {
            write!(out, "{:>5} ", t.year)
        };
        push_name(out, &entry.name);
        out.extend_from_slice(b"\r\n");
    }

    pub(super) fn format_mlsx_line(
        entry: &Entry,
        role: MlsxRole,
        facts: &MlstFacts,
        perm: &str,
        out: &mut Vec<u8>,
    ) {
        fn push_clean(out: &mut Vec<u8>, v: &str) {
            out.extend(
                v.bytes()
                    .filter(|c| !matches!(c, b';' | b'=' | b' ' | b'\r' | b'\n')),
            );
        }
        let clean_empty = |v: &str| {
            v.bytes()
                .all(|c| matches!(c, b';' | b'=' | b' ' | b'\r' | b'\n'))
        };
        if facts.kind {
            let kind = match (role, entry.kind) {
                (MlsxRole::Cdir, _) => "cdir",
                (MlsxRole::Pdir, _) => "pdir",
                (MlsxRole::Entry, EntryKind::File) => "file",
                (MlsxRole::Entry, EntryKind::Dir) => "dir",
                (MlsxRole::Entry, EntryKind::Symlink) => "OS.unix=symlink",
                (MlsxRole::Entry, EntryKind::Other) => "OS.unix=special",
            };
            out.extend_from_slice(b"type=");
            out.extend_from_slice(kind.as_bytes());
            out.push(b';');
        }
        if facts.size && entry.kind == EntryKind::File && role == MlsxRole::Entry {
            let _ = write!(out, "size={};", entry.size);
        }
        if facts.modify {
            let t = Civil::from_unix(entry.mtime.clamp(MDTM_MIN, MDTM_MAX));
            let _ = write!(
                out,
                "modify={:04}{:02}{:02}{:02}{:02}{:02};",
                t.year, t.month, t.day, t.hour, t.min, t.sec
            );
        }
        if facts.perm && !clean_empty(perm) {
            out.extend_from_slice(b"perm=");
            push_clean(out, perm);
            out.push(b';');
        }
        // The old `Option<String>` value, built the way the storage backends built it.
        let unique = entry.unique.map(|u| match u {
            Unique::DevIno { dev, ino } => format!("{dev:x}g{ino:x}"),
            Unique::Id(id) => format!("m{id:x}"),
        });
        if let (true, Some(unique)) = (facts.unique, unique.as_deref()) {
            if !clean_empty(unique) {
                out.extend_from_slice(b"unique=");
                push_clean(out, unique);
                out.push(b';');
            }
        }
        out.push(b' ');
        push_name(out, &entry.name);
        out.extend_from_slice(b"\r\n");
    }
}

/// Interesting integers: small ones, every power of ten and its neighbours, the extremes.
fn edge_u64s() -> Vec<u64> {
    let mut v = vec![
        0,
        1,
        2,
        9,
        10,
        11,
        99,
        100,
        101,
        255,
        256,
        4096,
        0xffff_ffff,
    ];
    let mut p = 1u64;
    while let Some(next) = p.checked_mul(10) {
        v.extend([p - 1, p, p + 1, next - 1]);
        p = next;
    }
    v.extend([p - 1, p, p + 1, u64::MAX / 2, u64::MAX - 1, u64::MAX]);
    for shift in 0..64 {
        v.extend([(1u64 << shift) - 1, 1 << shift]);
    }
    v
}

fn pushed(f: impl FnOnce(&mut Vec<u8>)) -> String {
    // A non-empty buffer, as in a listing: helpers must append, never overwrite.
    let mut out = b"x".to_vec();
    f(&mut out);
    String::from_utf8(out).unwrap()
}

fn check_integer_helpers(v: u64) {
    assert_eq!(pushed(|o| push_u64(o, v)), format!("x{v}"));
    assert_eq!(pushed(|o| push_hex(o, v)), format!("x{v:x}"));
    for width in [0, 1, 2, 4, 5, 13, 20, 25] {
        assert_eq!(
            pushed(|o| push_u64_padded_right(o, v, width)),
            format!("x{v:>width$}")
        );
        for s in [v as i64, (v as i64).wrapping_neg()] {
            assert_eq!(
                pushed(|o| push_i64_padded_right(o, s, width)),
                format!("x{s:>width$}")
            );
        }
    }
    if let Ok(small) = u32::try_from(v) {
        assert_eq!(pushed(|o| push_2digits(o, small)), format!("x{small:02}"));
        assert_eq!(pushed(|o| push_4digits(o, small)), format!("x{small:04}"));
    }
}

#[test]
fn integer_helpers_match_format() {
    for v in edge_u64s() {
        check_integer_helpers(v);
    }
    for v in 0..=10_100 {
        check_integer_helpers(v);
    }
    for s in [i64::MIN, i64::MIN + 1, i64::MAX, -1, -10, -99_999, -100_000] {
        for width in [0, 5, 20, 21, 25] {
            assert_eq!(
                pushed(|o| push_i64_padded_right(o, s, width)),
                format!("x{s:>width$}")
            );
        }
    }
    assert_eq!(
        pushed(|o| push_2digits(o, u32::MAX)),
        format!("x{:02}", u32::MAX)
    );
    assert_eq!(
        pushed(|o| push_4digits(o, u32::MAX)),
        format!("x{:04}", u32::MAX)
    );
}

#[test]
fn mdtm_and_unique_bytes_match_format() {
    let mut times = vec![
        i64::MIN,
        MDTM_MIN - 1,
        MDTM_MIN,
        MDTM_MIN + 1,
        -62_135_596_800, // 0001-01-01
        -1,
        0,
        NOW,
        MDTM_MAX - 1,
        MDTM_MAX,
        MDTM_MAX + 1,
        i64::MAX,
    ];
    times.extend((0..2000).map(|i| MDTM_MIN + i * 158_000_123));
    for t in times {
        assert_eq!(pushed(|o| push_mdtm(o, t)), format!("x{}", format_mdtm(t)));
    }
    for a in edge_u64s() {
        for u in [Unique::Id(a), Unique::DevIno { dev: a, ino: !a }] {
            assert_eq!(pushed(|o| u.push_to(o)), format!("x{u}"));
        }
    }
    assert_eq!(
        Unique::DevIno {
            dev: 0x803,
            ino: 0x2a1
        }
        .to_string(),
        "803g2a1"
    );
    assert_eq!(Unique::Id(0x2a).to_string(), "m2a");
    assert_eq!(Unique::Id(0).to_string(), "m0");
}

/// splitmix64: a fixed, dependency-free stream of test values.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[(self.next() % from.len() as u64) as usize]
    }

    /// Mostly ordinary values, sometimes an edge case.
    fn u64_of(&mut self, edges: &[u64], ordinary: u64) -> u64 {
        match self.next() % 4 {
            0 => self.pick(edges),
            1 => self.next(),
            _ => self.next() % ordinary,
        }
    }
}

#[test]
fn lines_match_reference_formatters() {
    let mut rng = Rng(0x5eed);
    let edges = edge_u64s();
    let kinds = [
        EntryKind::File,
        EntryKind::Dir,
        EntryKind::Symlink,
        EntryKind::Other,
    ];
    let modes = [
        0,
        0o644,
        0o755,
        0o777,
        0o4755,
        0o4644,
        0o2755,
        0o2644,
        0o1777,
        0o1776,
        0o7000,
        0o7777,
        0o6111,
        0xffff_ffff,
    ];
    let times = [
        i64::MIN,
        i64::MIN + 1,
        MDTM_MIN - 1,
        MDTM_MIN,
        -2_000_000_000,
        -DAY - 1,
        -1,
        0,
        NOW - RECENT,
        NOW - RECENT + 1,
        NOW,
        NOW + DAY,
        NOW + DAY + 1,
        MDTM_MAX,
        MDTM_MAX + 1,
        1 << 50,
        i64::MAX,
    ];
    let nows = [NOW, 0, -1, i64::MIN, i64::MAX, MDTM_MAX + 10 * DAY];
    let names = [
        "a",
        "entry-000123.dat",
        "with space",
        " lead",
        "evil\r\nname",
        "ü",
    ];
    let perms = ["adfrw", "", "el", "r;w", "; ="];
    let facts = [
        MlstFacts::default(),
        MlstFacts::from_opts(""),
        MlstFacts::from_opts("size;unique"),
        MlstFacts::from_opts("type;modify;perm"),
    ];
    let roles = [MlsxRole::Entry, MlsxRole::Cdir, MlsxRole::Pdir];
    for i in 0..600 {
        let entry = Entry {
            name: rng.pick(&names).into(),
            kind: rng.pick(&kinds),
            size: rng.u64_of(&edges, 100_000_000),
            mtime: match rng.next() % 3 {
                0 => rng.pick(&times),
                1 => rng.next() as i64,
                _ => NOW - (rng.next() % (2 * RECENT as u64)) as i64 + DAY,
            },
            mode: if i % 2 == 0 {
                rng.pick(&modes)
            } else {
                (rng.next() % 0o10000) as u32
            },
            nlink: rng.u64_of(&edges, 100),
            unique: match rng.next() % 3 {
                0 => None,
                1 => Some(Unique::Id(rng.u64_of(&edges, 1000))),
                _ => Some(Unique::DevIno {
                    dev: rng.u64_of(&edges, 0x1000),
                    ino: rng.u64_of(&edges, 1 << 40),
                }),
            },
        };
        let now = if i % 3 == 0 { rng.pick(&nows) } else { NOW };
        let (mut got, mut want) = (b"prefix\r\n".to_vec(), b"prefix\r\n".to_vec());
        format_list_line(&entry, now, &mut got);
        reference::format_list_line(&entry, now, &mut want);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{entry:?} now={now}"
        );
        let (role, facts, perm) = (rng.pick(&roles), rng.pick(&facts), rng.pick(&perms));
        format_mlsx_line(&entry, role, &facts, perm, &mut got);
        reference::format_mlsx_line(&entry, role, &facts, perm, &mut want);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{entry:?} {role:?} {facts:?} {perm:?}"
        );
    }
}

#[test]
fn mlsd_skips_cdir_pdir() {
    let raw = b"type=cdir;modify=20260101000000; /pub\r\ntype=pdir;modify=20260101000000; /\r\ntype=file;size=3;modify=20260101000000; a b.txt\r\ntype=dir;modify=20260101000000; sub\r\n";
    let e = parse_mlsd(raw);
    assert_eq!(e.len(), 2);
    assert_eq!(e[0].name, "a b.txt");
    assert_eq!(e[0].size, Some(3));
    assert_eq!(e[1].name, "sub");
}
