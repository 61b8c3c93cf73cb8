//! The `ferry` client verbs, run as the built binary against Ferry's own server started
//! in-process on loopback port 0 (IPv4, and IPv6 when ::1 can be bound).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Out, Srv, USER, content, ferry_command, ok, require_ipv6, run, sha256, tree};

const PASSWORD: &str = "pa ss:w@rd";
/// Upper bound for one command.
const WAIT: Duration = Duration::from_secs(60);

/// A plain (no TLS) server with the test user.
fn server(listen: &str) -> Srv {
    Srv::start_with(listen, PASSWORD, |_| {})
}

/// Run `ferry ARGS` with a clean HOME, the password in FERRY_PASSWORD (unless `env` says
/// otherwise), `stdin` as input; killed after WAIT.
fn ferry_in(dir: &Path, args: &[&str], env: &[(&str, Option<&str>)], stdin: &[u8]) -> Out {
    let mut cmd = ferry_command(dir, PASSWORD);
    cmd.args(args);
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

/// put, ls (short, long, JSON), get, cat, mkdir, mv, rm, rmdir, quote in one mode.
fn verbs_round_trip(listen: &str, mode: &str) {
    let srv = server(listen);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let body = content(700_001, 3);
    std::fs::write(w.join("up.bin"), &body).unwrap();
    let m = ["--mode", mode];

    ok(ferry(w, &[&["mkdir"][..], &m, &[&srv.url("d")]].concat()));
    ok(ferry(
        w,
        &[&["put"][..], &m, &["up.bin", &srv.url("d/")]].concat(),
    ));
    assert_eq!(
        sha256(&std::fs::read(srv.path("d/up.bin")).unwrap()),
        sha256(&body)
    );

    let ls = ok(ferry(w, &[&["ls"][..], &m, &[&srv.url("d/")]].concat()));
    assert_eq!(ls.stdout, "up.bin\n");
    let ls = ok(ferry(
        w,
        &[&["ls", "-l"][..], &m, &[&srv.url("d")]].concat(),
    ));
    assert!(ls.stdout.starts_with("-         700001 "), "{}", ls.stdout);
    let js = ok(ferry(
        w,
        &[&["ls", "--json"][..], &m, &[&srv.url("d")]].concat(),
    ));
    let v: serde_json::Value = serde_json::from_str(&js.stdout).unwrap();
    assert_eq!(v[0]["name"], "up.bin");
    assert_eq!(v[0]["type"], "file");
    assert_eq!(v[0]["size"], 700_001);

    ok(ferry(
        w,
        &[&["get"][..], &m, &[&srv.url("d/up.bin"), "-o", "down.bin"]].concat(),
    ));
    assert_eq!(
        sha256(&std::fs::read(w.join("down.bin")).unwrap()),
        sha256(&body)
    );
    let cat = ferry_command(w, PASSWORD)
        .args([&["cat"][..], &m, &[&srv.url("d/up.bin")]].concat())
        .output()
        .unwrap();
    assert_eq!(sha256(&cat.stdout), sha256(&body));

    ok(ferry(
        w,
        &[&["mv"][..], &m, &[&srv.url("d/up.bin"), "renamed.bin"]].concat(),
    ));
    assert!(srv.path("d/renamed.bin").exists());
    let q = ok(ferry(
        w,
        &[&["quote"][..], &m, &[&srv.url("d"), "PWD", "NOOP"]].concat(),
    ));
    assert!(q.stdout.contains("257 \"/d\""), "{}", q.stdout);
    ok(ferry(
        w,
        &[&["rm"][..], &m, &[&srv.url("d/renamed.bin")]].concat(),
    ));
    ok(ferry(w, &[&["rmdir"][..], &m, &[&srv.url("d")]].concat()));
    assert!(!srv.path("d").exists());
}

#[test]
fn verbs_ipv4_every_mode() {
    for mode in ["auto", "passive", "epsv", "active"] {
        verbs_round_trip("127.0.0.1:0", mode);
    }
}

#[test]
fn verbs_ipv6_every_mode() {
    require_ipv6();
    for mode in ["auto", "passive", "epsv", "active"] {
        verbs_round_trip("[::1]:0", mode);
    }
}

#[test]
fn exit_codes() {
    let srv = server("127.0.0.1:0");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // Login refused: 3.
    let out = ferry_in(
        w,
        &["ls", &srv.url("")],
        &[("FERRY_PASSWORD", Some("nope"))],
        b"",
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    // Not found: 4.
    let out = ferry(w, &["get", &srv.url("missing.txt")]);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(!w.join("missing.txt").exists(), "no empty file left behind");
    // Network: 5 (nobody listens on that port).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = ferry(w, &["ls", &format!("ftp://a@127.0.0.1:{port}/")]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    // Usage: 2.
    assert_eq!(ferry(w, &["ls", "http://x/"]).code, 2);
    assert_eq!(
        ferry(w, &["get", "--mode", "sideways", &srv.url("x")]).code,
        2
    );
    // No password anywhere, no terminal: usage.
    let out = ferry_in(w, &["ls", &srv.url("")], &[("FERRY_PASSWORD", None)], b"");
    assert_eq!(out.code, 2, "{}", out.stderr);
    // Protocol-level refusal of a raw command: 6.
    let out = ferry(w, &["quote", &srv.url(""), "XYZZY"]);
    assert_eq!(out.code, 6, "{}", out.stderr);
}

#[test]
fn verbose_masks_the_password() {
    let srv = server("127.0.0.1:0");
    let work = tempfile::tempdir().unwrap();
    let out = ok(ferry(work.path(), &["ls", "-v", &srv.url("")]));
    assert!(out.stderr.contains("> PASS ****"), "{}", out.stderr);
    assert!(out.stderr.contains("> USER alice"), "{}", out.stderr);
    assert!(out.stderr.contains("< 230"), "{}", out.stderr);
    assert!(out.stderr.contains("> MLSD"), "{}", out.stderr);
    assert!(!out.stderr.contains("pa ss"), "{}", out.stderr);
    // Password in the URL (percent-encoded) is masked too.
    let url = format!("ftp://{USER}:pa%20ss%3Aw%40rd@{}/", srv.addr);
    let out = ok(ferry_in(
        work.path(),
        &["ls", "-v", &url],
        &[("FERRY_PASSWORD", None)],
        b"",
    ));
    assert!(!out.stderr.contains("pa ss"), "{}", out.stderr);
}

#[test]
fn netrc_credentials() {
    let srv = server("127.0.0.1:0");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::write(
        w.join(".netrc"),
        format!("machine 127.0.0.1 login {USER} password \"{PASSWORD}\"\n"),
    )
    .unwrap();
    std::fs::write(srv.path("f.txt"), b"hi").unwrap();
    let url = format!("ftp://{}/", srv.addr);
    let out = ok(ferry_in(w, &["ls", &url], &[("FERRY_PASSWORD", None)], b""));
    assert_eq!(out.stdout, "f.txt\n");
}

#[test]
fn get_and_put_resume() {
    let srv = server("127.0.0.1:0");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let body = content(300_000, 9);
    std::fs::write(srv.path("r.bin"), &body).unwrap();
    std::fs::write(w.join("r.bin"), &body[..123_456]).unwrap();
    let out = ok(ferry(w, &["get", "-c", "-v", &srv.url("r.bin")]));
    assert!(out.stderr.contains("> REST 123456"), "{}", out.stderr);
    assert_eq!(
        sha256(&std::fs::read(w.join("r.bin")).unwrap()),
        sha256(&body)
    );
    // Complete already: nothing transferred.
    let out = ok(ferry(w, &["get", "-c", "-v", &srv.url("r.bin")]));
    assert!(!out.stderr.contains("RETR"), "{}", out.stderr);

    std::fs::write(w.join("u.bin"), &body).unwrap();
    std::fs::write(srv.path("u.bin"), &body[..50_000]).unwrap();
    ok(ferry(w, &["put", "-c", "u.bin", &srv.url("u.bin")]));
    assert_eq!(
        sha256(&std::fs::read(srv.path("u.bin")).unwrap()),
        sha256(&body)
    );

    // --append adds to the end.
    std::fs::write(w.join("tail.txt"), b" world").unwrap();
    std::fs::write(srv.path("hello.txt"), b"hello").unwrap();
    ok(ferry(
        w,
        &["put", "--append", "tail.txt", &srv.url("hello.txt")],
    ));
    assert_eq!(
        std::fs::read(srv.path("hello.txt")).unwrap(),
        b"hello world"
    );

    // --checksum without server support says so and succeeds.
    let out = ok(ferry(w, &["get", "--checksum", &srv.url("hello.txt")]));
    assert!(out.stderr.contains("could not verify"), "{}", out.stderr);
}

#[test]
fn mirror_both_ways() {
    let srv = server("127.0.0.1:0");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    std::fs::create_dir_all(src.join("empty")).unwrap();
    for (i, name) in ["a.txt", "sub/b.bin", "sub/deeper/c", "sub/deeper/d e"]
        .iter()
        .enumerate()
    {
        std::fs::write(src.join(name), content(10_000 * i + 1, i as u64)).unwrap();
    }
    let target = srv.url("site/www/");
    let up = ok(ferry(
        w,
        &["mirror", "--reverse", "-P", "3", "src", &target],
    ));
    assert!(up.stderr.contains("4 copied"), "{}", up.stderr);
    assert_eq!(tree(&src), tree(&srv.path("site/www")));
    // Nothing changed: nothing copied.
    let again = ok(ferry(w, &["mirror", "--reverse", "src", &target]));
    assert!(again.stderr.contains("0 copied"), "{}", again.stderr);

    // Down into a new directory, in parallel; contents land inside it.
    let down = ok(ferry(w, &["mirror", "--parallel", "2", &target, "copy"]));
    assert!(down.stderr.contains("4 copied"), "{}", down.stderr);
    assert_eq!(tree(&src), tree(&w.join("copy")));
    let again = ok(ferry(w, &["mirror", &target, "copy"]));
    assert!(again.stderr.contains("0 copied"), "{}", again.stderr);
    // Times are kept (set from MLSD modify after download).
    let mt = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    assert_eq!(mt(&srv.path("site/www/a.txt")), mt(&w.join("copy/a.txt")));

    // A change and a deletion propagate with --delete.
    std::fs::write(src.join("a.txt"), b"changed").unwrap();
    std::fs::remove_file(src.join("sub/deeper/c")).unwrap();
    ok(ferry(
        w,
        &["mirror", "--reverse", "--delete", "src", &target],
    ));
    assert_eq!(tree(&src), tree(&srv.path("site/www")));
    ok(ferry(w, &["mirror", "--delete", &target, "copy"]));
    assert_eq!(tree(&src), tree(&w.join("copy")));
}

#[test]
fn shell_session_from_stdin() {
    let srv = server("127.0.0.1:0");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::create_dir(srv.path("docs")).unwrap();
    std::fs::write(srv.path("docs/one.txt"), b"1").unwrap();
    std::fs::write(srv.path("docs/two.txt"), b"22").unwrap();
    std::fs::write(srv.path("docs/skip.bin"), b"x").unwrap();
    std::fs::write(w.join("local.txt"), b"local").unwrap();
    let script = b"pwd\ncd docs\nls\nmget *.txt\nmode active\nput local.txt\nls -l\nmkdir sub\ncd sub\npwd\ncdup\nrm local.txt\nhelp get\nquit\n";
    let out = ok(ferry_in(w, &["shell", &srv.url("")], &[], script));
    assert!(out.stdout.starts_with("/\n"), "{}", out.stdout);
    assert!(
        out.stdout.contains("one.txt\nskip.bin\ntwo.txt\n"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("mode: active"), "{}", out.stdout);
    assert!(out.stdout.contains("/docs/sub\n"), "{}", out.stdout);
    assert!(out.stdout.contains("get REMOTE [LOCAL]"), "{}", out.stdout);
    assert_eq!(std::fs::read(w.join("one.txt")).unwrap(), b"1");
    assert_eq!(std::fs::read(w.join("two.txt")).unwrap(), b"22");
    assert!(!w.join("skip.bin").exists());
    assert!(!srv.path("docs/local.txt").exists(), "put then rm");
    assert!(srv.path("docs/sub").is_dir());

    // A failing command makes the session's exit status say so.
    let out = ferry_in(w, &["shell", &srv.url("")], &[], b"get nope\nquit\n");
    assert_eq!(out.code, 4, "{}", out.stderr);
}

#[test]
fn help_for_each_verb() {
    let work = tempfile::tempdir().unwrap();
    for verb in [
        "ls", "get", "put", "cat", "rm", "mkdir", "rmdir", "mv", "quote", "mirror", "shell",
    ] {
        let out = ok(ferry(work.path(), &["help", verb]));
        assert!(
            out.stdout.contains("Usage: ferry"),
            "{verb}: {}",
            out.stdout
        );
        assert!(out.stdout.contains("--mode"), "{verb}: {}", out.stdout);
    }
}

/// A server that puts terminal control sequences in its greeting, its replies and a file
/// name: serves one connection (`USER`, `PASS`, `EPSV`, `LIST`/`NLST`, anything else 550).
fn hostile_terminal_server() -> (u16, std::thread::JoinHandle<()>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (control, _) = listener.accept().unwrap();
        control
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let data = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let data_port = data.local_addr().unwrap().port();
        let mut w = control.try_clone().unwrap();
        let mut r = BufReader::new(control);
        w.write_all(b"220 \x1b]0;pwned\x07Welcome \x1b[31mred\x1b[0m\r\n")
            .unwrap();
        let mut line = String::new();
        while r.read_line(&mut line).unwrap_or(0) > 0 {
            let verb = line.split_whitespace().next().unwrap_or("").to_uppercase();
            line.clear();
            let reply: Vec<u8> = match verb.as_str() {
                "USER" => b"331 ok\r\n".to_vec(),
                "PASS" => b"230 ok\r\n".to_vec(),
                "TYPE" => b"200 ok\r\n".to_vec(),
                "EPSV" => format!("229 ok (|||{data_port}|)\r\n").into_bytes(),
                "LIST" | "NLST" | "MLSD" if verb != "MLSD" => {
                    w.write_all(b"150 here\r\n").unwrap();
                    let (mut d, _) = data.accept().unwrap();
                    let listing: &[u8] = if verb == "LIST" {
                        b"-rw-r--r-- 1 a b 5 Jan 01 2020 evil\x1b[2Jname\x07\r\n"
                    } else {
                        b"evil\x1b[2Jname\x07\r\n"
                    };
                    d.write_all(listing).unwrap();
                    drop(d);
                    b"226 done\r\n".to_vec()
                }
                "QUIT" => {
                    let _ = w.write_all(b"221 bye\r\n");
                    return;
                }
                _ => b"550 \x1b[2J\x1b[31mgone\x1b[0m\0\r\n".to_vec(),
            };
            if w.write_all(&reply).is_err() {
                return;
            }
        }
    });
    (port, handle)
}

#[test]
fn server_text_cannot_drive_the_terminal() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    for args in [
        &["ls", "-v"][..],
        &["ls", "-l"][..],
        &["ls"][..],
        &["mkdir", "-v"][..],
    ] {
        let (port, server) = hostile_terminal_server();
        let url = format!("ftp://u:p@127.0.0.1:{port}/x");
        let out = ferry_in(
            w,
            &[args, &["--mode", "epsv", &url]].concat(),
            &[("FERRY_PASSWORD", None)],
            b"",
        );
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(
            !all.contains('\u{1b}') && !all.contains('\u{7}') && !all.contains('\0'),
            "{args:?}: {all:?}"
        );
        assert!(all.contains("\\x1b["), "{args:?}: {all:?}");
        if args[0] == "ls" {
            assert!(
                out.stdout.contains("evil\\x1b[2Jname\\x07"),
                "{args:?}: {all:?}"
            );
        }
        server.join().unwrap();
    }
    // `quote` prints the server's replies as they came, but not its control sequences.
    let (port, server) = hostile_terminal_server();
    let url = format!("ftp://u:p@127.0.0.1:{port}/");
    let out = ferry_in(w, &["quote", &url, "FOO"], &[("FERRY_PASSWORD", None)], b"");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(!all.contains('\u{1b}'), "{all:?}");
    assert!(out.stdout.contains("550 \\x1b[2J"), "{all:?}");
    server.join().unwrap();
}
