//! The `ferry` client verbs over `sftp://`, run as the built binary against Ferry's SFTP server
//! (`ferry-sftpd`) started in-process on loopback (IPv4, and IPv6 when ::1 can be bound): every
//! verb, host keys (unknown refused with the fingerprint and how to accept it, accepted and
//! recorded, changed refused, `--insecure`), resumed transfers both ways, a 64 MiB file both
//! ways by SHA-256, mirror and shell, and escaped server-chosen names.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::sftp::SftpSrv;
use common::{Out, content, ferry_command, ok, require_ipv6, run, sha256, tree};

const PASSWORD: &str = "s3cret pass";
/// Upper bound for one command.
const WAIT: Duration = Duration::from_secs(180);

/// Run `ferry ARGS` in `dir` (also HOME), the password in FERRY_PASSWORD, no agent.
fn ferry_in(dir: &Path, args: &[&str], env: &[(&str, Option<&str>)], stdin: &[u8]) -> Out {
    let mut cmd = ferry_command(dir, PASSWORD);
    cmd.args(args).env_remove("SSH_AUTH_SOCK");
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    run(&mut cmd, stdin, WAIT)
}

fn ferry(dir: &Path, args: &[&str]) -> Out {
    ferry_in(dir, args, &[], b"")
}

#[track_caller]
fn fails(out: Out, code: i32) -> Out {
    assert_eq!(
        out.code, code,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    out
}

fn verbs(listen: &str) {
    let srv = SftpSrv::start(listen, PASSWORD);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    srv.trust_in(w);
    let body = content(700_001, 3);
    std::fs::write(w.join("up.bin"), &body).unwrap();

    ok(ferry(w, &["mkdir", &srv.url("d")]));
    ok(ferry(w, &["mkdir", "-p", &srv.url("d/e/f")]));
    ok(ferry(w, &["put", "up.bin", &srv.url("d/")]));
    assert_eq!(std::fs::read(srv.path("d/up.bin")).unwrap(), body);

    let ls = ok(ferry(w, &["ls", &srv.url("d/")]));
    assert_eq!(ls.stdout, "e\nup.bin\n");
    let ls = ok(ferry(w, &["ls", "-l", &srv.url("d")]));
    let line = ls.stdout.lines().nth(1).unwrap();
    assert!(line.starts_with("-         700001 "), "{}", ls.stdout);
    assert!(ls.stdout.starts_with("d "), "{}", ls.stdout);
    let js = ok(ferry(w, &["ls", "--json", &srv.url("d")]));
    let v: serde_json::Value = serde_json::from_str(&js.stdout).unwrap();
    assert_eq!(v[1]["name"], "up.bin");
    assert_eq!(v[1]["type"], "file");
    assert_eq!(v[1]["size"], 700_001);
    assert!(v[1]["mtime"].as_i64().unwrap() > 0);

    ok(ferry(w, &["get", &srv.url("d/up.bin"), "-o", "down.bin"]));
    assert_eq!(
        sha256(&std::fs::read(w.join("down.bin")).unwrap()),
        sha256(&body)
    );
    // Default local name: the remote file's.
    std::fs::create_dir(w.join("sub")).unwrap();
    ok(ferry_in(
        &w.join("sub"),
        &["get", &srv.url("d/up.bin")],
        &[("HOME", w.to_str())],
        b"",
    ));
    assert_eq!(std::fs::read(w.join("sub").join("up.bin")).unwrap(), body);
    std::fs::write(srv.path("d/hello.txt"), "hello, sftp\n").unwrap();
    let cat = ok(ferry(w, &["cat", &srv.url("d/hello.txt")]));
    assert_eq!(cat.stdout, "hello, sftp\n");
    ok(ferry(w, &["rm", &srv.url("d/hello.txt")]));
    ok(ferry(w, &["mv", &srv.url("d/up.bin"), "moved.bin"]));
    assert!(srv.path("d/moved.bin").exists());
    ok(ferry(w, &["mv", &srv.url("d/moved.bin"), "/top.bin"]));
    assert!(srv.path("top.bin").exists());

    // A missing file: exit code 4, and no empty local file left behind.
    let out = fails(ferry(w, &["get", &srv.url("nope.bin")]), 4);
    assert!(out.stderr.contains("nope.bin"), "{}", out.stderr);
    assert!(!w.join("nope.bin").exists());

    ok(ferry(w, &["rm", &srv.url("top.bin")]));
    ok(ferry(w, &["rmdir", &srv.url("d/e/f")]));
    ok(ferry(w, &["rmdir", &srv.url("d/e")]));
    // Not empty: refused.
    std::fs::write(srv.path("d/keep.txt"), b"k").unwrap();
    let out = fails(ferry(w, &["rmdir", &srv.url("d")]), 4);
    assert!(!out.stderr.is_empty());
    fails(ferry(w, &["rm", &srv.url("d")]), 4);
    // `~` is the login directory, which here is the root.
    let ls = ok(ferry(w, &["ls", &srv.url("~/")]));
    assert_eq!(ls.stdout, "d\n");
}

#[test]
fn verbs_over_sftp_ipv4() {
    verbs("127.0.0.1:0");
}

#[test]
fn verbs_over_sftp_ipv6() {
    require_ipv6();
    verbs("[::1]:0");
}

#[test]
fn host_keys_unknown_accepted_changed_and_insecure() {
    let srv = SftpSrv::start("127.0.0.1:0", PASSWORD);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let kh = w.join(".ssh").join("known_hosts");
    let url = srv.url("");

    // Unknown: refused, exit 8, the fingerprint and the ways to accept it.
    let out = fails(ferry(w, &["ls", &url]), 8);
    assert!(out.stderr.contains(&srv.fingerprint), "{}", out.stderr);
    assert!(out.stderr.contains("not known"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("--accept-host-key {}", srv.fingerprint)),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!(
            "ssh-keyscan -p {} 127.0.0.1 >> ~/.ssh/known_hosts",
            srv.addr.port()
        )),
        "{}",
        out.stderr
    );
    assert!(!kh.exists());

    // --insecure: a warning even with -q, nothing recorded.
    let out = ok(ferry(w, &["ls", "-q", "--insecure", &url]));
    assert!(out.stderr.contains("WARNING: --insecure"), "{}", out.stderr);
    assert!(!kh.exists());

    // Another fingerprint: refused.
    let out = fails(
        ferry(
            w,
            &[
                "ls",
                "--accept-host-key",
                "SHA256:0000000000000000000000000000000000000000000",
                &url,
            ],
        ),
        8,
    );
    assert!(out.stderr.contains("not the"), "{}", out.stderr);
    // The server's fingerprint (the prefix is optional): recorded, then known.
    let bare = srv.fingerprint.trim_start_matches("SHA256:");
    let out = ok(ferry(w, &["ls", "--accept-host-key", bare, &url]));
    assert!(out.stderr.contains("added"), "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(&kh).unwrap(),
        format!("{} {}\n", srv.known_name(), srv.key_line)
    );
    ok(ferry(w, &["ls", &url]));

    // Changed: refused loudly with the line to remove.
    let other = SftpSrv::start("127.0.0.1:0", PASSWORD);
    std::fs::write(
        &kh,
        format!("# mine\n{} {}\n", srv.known_name(), other.key_line),
    )
    .unwrap();
    let out = fails(ferry(w, &["ls", &url]), 8);
    assert!(out.stderr.contains("HAS CHANGED"), "{}", out.stderr);
    assert!(out.stderr.contains("line 2"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("ssh-keygen -R '{}'", srv.known_name())),
        "{}",
        out.stderr
    );
    let out = fails(
        ferry(w, &["ls", "--accept-host-key", &srv.fingerprint, &url]),
        8,
    );
    assert!(out.stderr.contains("HAS CHANGED"), "{}", out.stderr);
}

#[test]
fn resumed_transfers_both_ways_over_sftp() {
    let srv = SftpSrv::start("127.0.0.1:0", PASSWORD);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    srv.trust_in(w);
    let body = content(3_000_017, 5);

    // get -c: the local file has the first part.
    std::fs::write(srv.path("f.bin"), &body).unwrap();
    std::fs::write(w.join("f.bin"), &body[..1_000_000]).unwrap();
    ok(ferry(w, &["get", "-c", &srv.url("f.bin")]));
    assert_eq!(
        sha256(&std::fs::read(w.join("f.bin")).unwrap()),
        sha256(&body)
    );
    // Complete already: said, nothing changes.
    let out = ok(ferry(w, &["get", "-c", &srv.url("f.bin")]));
    assert!(out.stderr.contains("complete already"), "{}", out.stderr);

    // put -c: the server has the first part.
    std::fs::write(w.join("g.bin"), &body).unwrap();
    std::fs::write(srv.path("g.bin"), &body[..2_000_000]).unwrap();
    ok(ferry(w, &["put", "-c", "g.bin", &srv.url("g.bin")]));
    assert_eq!(
        sha256(&std::fs::read(srv.path("g.bin")).unwrap()),
        sha256(&body)
    );
    // --append adds the whole file.
    std::fs::write(w.join("tail.txt"), b"tail").unwrap();
    std::fs::write(srv.path("log.txt"), b"head-").unwrap();
    ok(ferry(
        w,
        &["put", "--append", "tail.txt", &srv.url("log.txt")],
    ));
    assert_eq!(std::fs::read(srv.path("log.txt")).unwrap(), b"head-tail");
    // A remote file larger than the local one is not "resumed".
    std::fs::write(w.join("small.bin"), b"abc").unwrap();
    std::fs::write(srv.path("small.bin"), b"abcdef").unwrap();
    fails(
        ferry(w, &["put", "-c", "small.bin", &srv.url("small.bin")]),
        2,
    );
}

#[test]
fn a_64_mib_file_both_ways_over_sftp() {
    let srv = SftpSrv::start("127.0.0.1:0", PASSWORD);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    srv.trust_in(w);
    let body = content(64 * 1024 * 1024 + 3, 11);
    std::fs::write(w.join("big.bin"), &body).unwrap();
    ok(ferry(w, &["put", "big.bin", &srv.url("big.bin")]));
    assert_eq!(
        sha256(&std::fs::read(srv.path("big.bin")).unwrap()),
        sha256(&body)
    );
    ok(ferry(w, &["get", &srv.url("big.bin"), "-o", "back.bin"]));
    assert_eq!(
        sha256(&std::fs::read(w.join("back.bin")).unwrap()),
        sha256(&body)
    );
}

#[test]
fn mirror_both_ways_and_shell_over_sftp() {
    let srv = SftpSrv::start("127.0.0.1:0", PASSWORD);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    srv.trust_in(w);
    let src = w.join("src");
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    std::fs::write(src.join("top.txt"), b"top").unwrap();
    std::fs::write(src.join("a/one.bin"), content(100_000, 1)).unwrap();
    std::fs::write(src.join("a/b/two.bin"), content(300_000, 2)).unwrap();

    ok(ferry(
        w,
        &["mirror", "--reverse", "-P", "3", "src", &srv.url("site")],
    ));
    assert_eq!(tree(&srv.path("site")), tree(&src));
    // Nothing changed: nothing copied.
    let out = ok(ferry(w, &["mirror", "--reverse", "src", &srv.url("site")]));
    assert!(out.stderr.contains("0 copied"), "{}", out.stderr);

    ok(ferry(w, &["mirror", &srv.url("site"), "back"]));
    assert_eq!(tree(&w.join("back")), tree(&src));
    let out = ok(ferry(w, &["mirror", &srv.url("site"), "back"]));
    assert!(out.stderr.contains("0 copied"), "{}", out.stderr);
    // --delete removes what the source lacks.
    std::fs::remove_file(src.join("top.txt")).unwrap();
    ok(ferry(
        w,
        &["mirror", "--reverse", "--delete", "src", &srv.url("site")],
    ));
    assert!(!srv.path("site/top.txt").exists());

    let script = "pwd\ncd site\npwd\nls\nput src/a/one.bin copy.bin\nsize copy.bin\n\
                  get copy.bin fetched.bin\nrename copy.bin renamed.bin\nrm renamed.bin\n\
                  mkdir newdir\nrmdir newdir\nquote NOOP\nls\n";
    let out = ferry_in(w, &["shell", &srv.url("")], &[], script.as_bytes());
    // The last failed command (quote, FTP only) decides the exit code.
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.starts_with("/\n/site\na\n"), "{}", out.stdout);
    assert!(out.stdout.contains("100000\n"), "{}", out.stdout);
    assert!(out.stderr.contains("quote is for FTP"), "{}", out.stderr);
    assert_eq!(
        std::fs::read(w.join("fetched.bin")).unwrap(),
        content(100_000, 1)
    );
    assert!(!srv.path("site/renamed.bin").exists());
}

#[test]
fn server_chosen_names_are_escaped_over_sftp() {
    let srv = SftpSrv::start("127.0.0.1:0", PASSWORD);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    srv.trust_in(w);
    std::fs::write(srv.path("evil\u{1b}[2Jname\u{202e}txt"), b"x").unwrap();
    let out = ok(ferry(w, &["ls", "-l", &srv.url("")]));
    assert!(
        out.stdout.contains("evil\\x1b[2Jname\\u{202e}txt"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains('\u{1b}'));
    // Mirror refuses nothing here (the name is one safe component), and escapes its notes.
    let out = fails(ferry(w, &["get", &srv.url("missing\u{7}")]), 4);
    assert!(!out.stderr.contains('\u{7}'), "{}", out.stderr);
}

#[test]
fn logins_and_flags_that_do_not_apply() {
    let srv = SftpSrv::start("127.0.0.1:0", PASSWORD);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    srv.trust_in(w);
    let url = srv.url("");
    // No password anywhere and no terminal: exit 3, saying what is missing.
    let out = fails(
        ferry_in(w, &["ls", &url], &[("FERRY_PASSWORD", None)], b""),
        3,
    );
    assert!(out.stderr.contains("no password"), "{}", out.stderr);
    // A wrong password: 3.
    let out = fails(
        ferry_in(w, &["ls", &url], &[("FERRY_PASSWORD", Some("wrong"))], b""),
        3,
    );
    assert!(out.stderr.contains("password refused"), "{}", out.stderr);
    // The password from ~/.netrc.
    std::fs::write(
        w.join(".netrc"),
        format!("machine 127.0.0.1 login alice password \"{PASSWORD}\"\n"),
    )
    .unwrap();
    ok(ferry_in(w, &["ls", &url], &[("FERRY_PASSWORD", None)], b""));
    // A -i file that does not exist: a local error.
    fails(ferry(w, &["ls", "-i", "missing_key", &url]), 1);

    fails(ferry(w, &["quote", &url, "NOOP"]), 2);
    fails(ferry(w, &["ls", "--tls", "required", &url]), 2);
    fails(ferry(w, &["ls", "-i", "key", "ftp://127.0.0.1:1/"]), 2);
    fails(
        ferry(
            w,
            &["ls", "--accept-host-key", "SHA256:x", "ftp://127.0.0.1:1/"],
        ),
        2,
    );
    // Nothing listens: a network error.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    fails(
        ferry(w, &["ls", &format!("sftp://alice@127.0.0.1:{port}/")]),
        5,
    );
}
