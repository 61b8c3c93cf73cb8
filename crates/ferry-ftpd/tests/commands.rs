//! Every control command over a real socket: reply codes, sequences and permissions.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

#[tokio::test]
async fn login_flow_and_user_probing() {
    let s = TestServer::start().await;
    let mut c = s.connect().await;
    // Before login only a few commands work.
    c.expect("PWD", 530).await;
    c.expect("LIST", 530).await;
    c.expect("PASS x", 503).await;
    // Unknown and known users get the same 331, and the same 530 for a wrong password.
    let unknown = c.expect("USER nobody-here", 331).await;
    c.expect("PASS whatever", 530).await;
    let known = c.expect(&format!("USER {USER}"), 331).await;
    assert_eq!(unknown.text(), known.text());
    c.expect("PASS wrong", 530).await;
    c.expect(&format!("USER {USER}"), 331).await;
    c.expect("PASS wrong", 421).await; // third failure closes
    assert!(c.closed().await);

    let mut c = s.connect().await;
    c.login(USER, PASSWORD).await;
    c.expect("PASS again", 503).await;
    c.expect("USER other", 530).await;
    c.expect("ACCT x", 202).await;
    c.expect("REIN", 220).await;
    c.expect("PWD", 530).await;
    c.login(USER, PASSWORD).await;
    c.expect("QUIT", 221).await;
    assert!(c.closed().await);
}

#[tokio::test]
async fn anonymous_is_read_only() {
    let s = TestServer::start().await;
    std::fs::write(s.anon_root.path().join("pub.txt"), b"public").unwrap();
    let mut c = s.connect().await;
    c.expect("USER anonymous", 331).await;
    c.expect("PASS guest@example.org", 230).await;
    let (bytes, done) = c.retr_passive("RETR pub.txt").await;
    assert_eq!(bytes, b"public");
    assert_eq!(done.code, 226);
    c.expect("MKD new", 550).await;
    c.expect("DELE pub.txt", 550).await;
    c.expect("EPSV", 229).await;
    c.expect("STOR x", 550).await;
}

#[tokio::test]
async fn informational_commands() {
    let s = TestServer::start().await;
    let mut c = s.login().await;
    c.expect("SYST", 215).await;
    c.expect("NOOP", 200).await;
    let feat = c.expect("FEAT", 211).await;
    for f in [
        "EPSV",
        "EPRT",
        "MDTM",
        "MFMT",
        "SIZE",
        "REST STREAM",
        "UTF8",
        "MLST type*",
    ] {
        assert!(
            feat.lines.iter().any(|l| l.trim().starts_with(f)),
            "FEAT lacks {f}: {feat:?}"
        );
    }
    assert!(feat.lines.len() > 3, "FEAT must be multi-line");
    for line in &feat.lines[1..feat.lines.len() - 1] {
        assert!(
            line.starts_with(' '),
            "RFC 2389: feature lines start with a space: {line:?}"
        );
    }
    let help = c.expect("HELP", 214).await;
    assert!(help.lines.len() > 2);
    c.expect("HELP RETR", 214).await;
    c.expect("OPTS UTF8 ON", 200).await;
    let r = c.expect("OPTS MLST type;size;", 200).await;
    assert!(r.text().contains("type;size;"), "{r:?}");
    c.expect("OPTS NOPE", 501).await;
    let stat = c.expect("STAT", 211).await;
    assert!(stat.lines.iter().any(|l| l.contains(USER)), "{stat:?}");
    c.expect("TYPE A", 200).await;
    c.expect("TYPE I", 200).await;
    c.expect("TYPE L 8", 200).await;
    c.expect("TYPE E", 504).await;
    c.expect("TYPE", 501).await;
    c.expect("MODE S", 200).await;
    c.expect("MODE B", 504).await;
    c.expect("STRU F", 200).await;
    c.expect("STRU R", 504).await;
    c.expect("ALLO 100", 202).await;
    c.expect("REST 10", 350).await;
    c.expect("REST x", 501).await;
    c.expect("FOOBAR", 500).await;
    c.expect("SMNT x", 502).await;
}

#[tokio::test]
async fn directories_and_names() {
    let s = TestServer::start().await;
    let mut c = s.login().await;
    let r = c.expect("PWD", 257).await;
    assert!(r.text().starts_with("\"/\""), "{r:?}");
    c.expect("MKD a", 257).await;
    c.expect("XMKD a/b c", 257).await;
    c.expect("MKD a", 550).await;
    c.expect("CWD a/b c", 250).await;
    let r = c.expect("XPWD", 257).await;
    assert!(r.text().starts_with("\"/a/b c\""), "{r:?}");
    c.expect("CDUP", 250).await;
    c.expect("XCUP", 250).await;
    c.expect("XCUP", 250).await; // stays at /
    let r = c.expect("PWD", 257).await;
    assert!(r.text().starts_with("\"/\""), "{r:?}");
    c.expect("CWD ../../..", 250).await;
    let r = c.expect("PWD", 257).await;
    assert!(r.text().starts_with("\"/\""), "climbed above root: {r:?}");
    c.expect("XCWD a", 250).await;
    c.expect("CWD /", 250).await;
    c.expect("CWD missing", 550).await;
    assert!(s.path("a/b c").is_dir());

    // Files: rename, size, mdtm, mfmt, delete.
    std::fs::write(s.path("a/f.txt"), b"12345").unwrap();
    c.expect("CWD nonexistent/..", 250).await;
    let r = c.expect("SIZE a/f.txt", 213).await;
    assert_eq!(r.text(), "5");
    c.expect("SIZE a", 550).await;
    c.expect("SIZE nope", 550).await;
    let r = c.expect("MDTM a/f.txt", 213).await;
    assert_eq!(r.text().len(), 14, "{r:?}");
    c.expect("MFMT 20200102030405 a/f.txt", 213).await;
    let r = c.expect("MDTM a/f.txt", 213).await;
    assert_eq!(r.text(), "20200102030405");
    c.expect("MFMT 2020 a/f.txt", 501).await;
    c.expect("RNTO x", 503).await;
    c.expect("RNFR a/f.txt", 350).await;
    c.expect("NOOP", 200).await;
    c.expect("RNTO a/g.txt", 503).await; // RNTO must follow RNFR directly
    c.expect("RNFR a/f.txt", 350).await;
    c.expect("RNTO a/g.txt", 250).await;
    assert!(s.path("a/g.txt").exists() && !s.path("a/f.txt").exists());
    c.expect("RNFR missing", 550).await;
    c.expect("RMD a", 550).await; // not empty
    c.expect("DELE a/g.txt", 250).await;
    c.expect("DELE a/g.txt", 550).await;
    c.expect("RMD a/b c", 250).await;
    c.expect("XRMD a", 250).await;
    c.expect("RMD /", 550).await;
    // Names with CR are refused, UTF-8 names work.
    c.expect("MKD bad\rname", 553).await;
    c.expect("MKD café ☕", 257).await;
    assert!(s.path("café ☕").is_dir());
}

#[tokio::test]
async fn permissions_are_enforced() {
    let s = TestServer::start().await;
    std::fs::write(s.path("f"), b"x").unwrap();
    let mut c = s.connect().await;
    c.login(READER, PASSWORD).await;
    c.expect("MKD d", 550).await;
    c.expect("DELE f", 550).await;
    c.expect("RNFR f", 550).await;
    c.expect("MFMT 20200102030405 f", 550).await;
    c.expect("EPSV", 229).await;
    c.expect("STOR g", 550).await;
    c.expect("APPE f", 550).await;
    let (bytes, done) = c.retr_passive("RETR f").await;
    assert_eq!((bytes.as_slice(), done.code), (&b"x"[..], 226));
}

#[tokio::test]
async fn listings() {
    let s = TestServer::start().await;
    std::fs::create_dir(s.path("dir")).unwrap();
    std::fs::write(s.path("file one.txt"), b"hello").unwrap();
    std::fs::write(s.path(".hidden"), b"h").unwrap();
    std::fs::write(s.path("dir/inner"), b"i").unwrap();
    let mut c = s.login().await;

    let (list, done) = c.retr_passive("LIST").await;
    assert_eq!(done.code, 226);
    let text = String::from_utf8(list).unwrap();
    assert!(
        text.contains("file one.txt") && text.contains("dir"),
        "{text}"
    );
    assert!(!text.contains(".hidden"), "{text}");
    assert!(
        text.lines().all(|l| l.len() > 40),
        "ls -l form expected: {text}"
    );
    assert!(text.ends_with("\r\n"));
    let dir_line = text.lines().find(|l| l.ends_with(" dir")).unwrap();
    assert!(dir_line.starts_with('d'), "{dir_line}");

    let (list, _) = c.retr_passive("LIST -la").await;
    assert!(String::from_utf8(list).unwrap().contains(".hidden"));

    let (list, _) = c.retr_passive("LIST -l dir").await;
    assert!(String::from_utf8(list).unwrap().contains("inner"));

    let (list, _) = c.retr_passive("LIST file one.txt").await;
    let one = String::from_utf8(list).unwrap();
    assert_eq!(one.lines().count(), 1, "{one}");
    assert!(
        one.contains(" 5 ") || one.contains(" 5 N") || one.contains("5"),
        "{one}"
    );

    let (names, _) = c.retr_passive("NLST").await;
    let names = String::from_utf8(names).unwrap();
    let mut v: Vec<&str> = names.lines().collect();
    v.sort();
    assert_eq!(v, vec!["dir", "file one.txt"]);

    let (mlsd, done) = c.retr_passive("MLSD").await;
    assert_eq!(done.code, 226);
    let mlsd = String::from_utf8(mlsd).unwrap();
    assert!(mlsd.lines().any(|l| l.contains("type=cdir")), "{mlsd}");
    let f = mlsd.lines().find(|l| l.ends_with(" file one.txt")).unwrap();
    let lower = f.to_ascii_lowercase();
    for fact in ["type=file", "size=5", "modify=", "perm=", "unique="] {
        assert!(lower.contains(fact), "{fact} missing: {f}");
    }
    assert!(mlsd.contains(".hidden"), "MLSD shows all entries");
    // RFC 3659 perm letters follow the user's permissions.
    assert!(lower.contains("perm=adfrw;"), "{f}");
    let d = mlsd.lines().find(|l| l.ends_with(" dir")).unwrap();
    assert!(d.to_ascii_lowercase().contains("perm=cdelfmp;"), "{d}");
    let mut r = s.connect().await;
    r.login(READER, PASSWORD).await;
    let (ro, _) = r.retr_passive("MLSD").await;
    let ro = String::from_utf8(ro).unwrap().to_ascii_lowercase();
    assert!(
        ro.lines()
            .any(|l| l.ends_with(" file one.txt") && l.contains("perm=r;")),
        "{ro}"
    );
    assert!(
        ro.lines()
            .any(|l| l.ends_with(" dir") && l.contains("perm=el;")),
        "{ro}"
    );

    c.expect("EPSV", 229).await;
    c.expect("MLSD file one.txt", 501).await;

    let r = c.expect("MLST file one.txt", 250).await;
    assert!(r.lines.len() >= 3, "{r:?}");
    assert!(
        r.lines[1].starts_with(' ') && r.lines[1].contains("size=5"),
        "{r:?}"
    );
    c.expect("MLST missing", 550).await;

    let r = c.expect("STAT dir", 213).await;
    assert!(r.text().contains("inner"), "{r:?}");

    c.expect("EPSV", 229).await;
    c.expect("LIST missing", 550).await;
}

#[tokio::test]
async fn data_command_without_data_method_is_425() {
    let s = TestServer::start().await;
    let mut c = s.login().await;
    c.expect("RETR x", 425).await;
    c.expect("LIST", 425).await;
    c.expect("NOOP", 200).await;
}

#[tokio::test]
async fn site_chmod_and_help() {
    use std::os::unix::fs::PermissionsExt;
    let s = TestServer::start().await;
    std::fs::write(s.path("f"), b"x").unwrap();
    let mode = |p: &str| std::fs::metadata(s.path(p)).unwrap().permissions().mode() & 0o7777;
    let mut c = s.login().await;
    c.expect("SITE CHMOD 600 f", 200).await;
    assert_eq!(mode("f"), 0o600);
    // setuid/setgid/sticky are never set from a client.
    c.expect("SITE CHMOD 6755 f", 200).await;
    assert_eq!(mode("f"), 0o755);
    c.expect("SITE CHMOD 644 missing", 550).await;
    c.expect("SITE CHMOD 9 f", 501).await;
    c.expect("SITE HELP", 214).await;
    c.expect("SITE IDLE 60", 502).await;
    let mut r = s.connect().await;
    r.login(READER, PASSWORD).await;
    r.expect("SITE CHMOD 777 f", 550).await;
    assert_eq!(mode("f"), 0o755);
}

/// A directory large enough to be stat'ed on several threads and streamed in many chunks:
/// every name once, in order, in LIST, MLSD and NLST; uploads in progress (and, but for MLSD,
/// dot files) are filtered in every chunk.
#[tokio::test]
async fn large_directory_listings_stream_every_entry_in_order() {
    let s = TestServer::start().await;
    let dir = s.path("big");
    std::fs::create_dir(&dir).unwrap();
    for i in (0..3000u32).rev() {
        std::fs::write(dir.join(format!("f{i:04}")), b"x").unwrap();
    }
    std::fs::write(dir.join(".hidden"), b"").unwrap();
    std::fs::write(dir.join(".ferry-upload.0123456789abcdef.tmp"), b"").unwrap();
    let expected: Vec<String> = (0..3000).map(|i| format!("f{i:04}")).collect();
    let mut c = s.login().await;
    for (command, name_of) in [
        (
            "LIST big",
            (|l: &str| l.rsplit(' ').next().unwrap().to_string()) as fn(&str) -> String,
        ),
        ("MLSD big", |l: &str| {
            l.split_once("; ").unwrap().1.to_string()
        }),
        ("NLST big", |l: &str| {
            l.rsplit('/').next().unwrap().to_string()
        }),
    ] {
        let (body, done) = c.retr_passive(command).await;
        assert_eq!(done.code, 226, "{command}");
        let text = String::from_utf8(body).unwrap();
        let names: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with("type=cdir"))
            .map(name_of)
            .collect();
        // MLSD shows dot files (the client hides them if it wants); uploads in progress
        // never show.
        let mut want = expected.clone();
        if command.starts_with("MLSD") {
            want.insert(0, ".hidden".to_string());
        }
        assert!(
            names == want,
            "{command}: {} names, first {:?}",
            names.len(),
            names.first()
        );
    }
}

/// `STAT` before login tells nothing about the connection (the peer address is for logged-in
/// users, who know it anyway); after login it does.
#[tokio::test]
async fn stat_before_login_does_not_disclose_the_peer_address() {
    let s = TestServer::start().await;
    let mut c = s.connect().await;
    let before = c.expect("STAT", 211).await;
    assert!(!before.text().contains("127.0.0.1"), "{before:?}");
    c.login(USER, PASSWORD).await;
    let after = c.expect("STAT", 211).await;
    assert!(after.text().contains("127.0.0.1"), "{after:?}");
}
