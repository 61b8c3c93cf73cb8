//! The client against real servers (vsftpd, Pure-FTPd, ProFTPD, pyftpdlib) started by
//! `../shared/peers/<name>.sh` on loopback: put/ls/get/rm in each mode on IPv4 and IPv6, and
//! mirror both ways; every file verified by sha256. Then the same servers with `--tls`
//! (TLS required, session reuse required by vsftpd and ProFTPD): `ftpes://` put/ls/get in
//! each mode on IPv4 and IPv6, and long runs of uploads on one control connection.
//!
//! Needs root and the peer scripts; runs only with `FERRY_PEER_TESTS=1`
//! (`FERRY_PEERS_DIR` overrides where the scripts are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use common::{content, ferry_command, sha256_file, tree};

const USER: &str = "tester";
const PASSWORD: &str = "secret-pass";
const WAIT: Duration = Duration::from_secs(120);

/// One peer at a time: their start scripts share an unpack directory.
static SERIAL: Mutex<()> = Mutex::new(());

fn enabled() -> bool {
    std::env::var("FERRY_PEER_TESTS").is_ok_and(|v| v == "1")
}

fn peers_dir() -> PathBuf {
    std::env::var_os("FERRY_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/peers"))
}

/// Run a command to completion within WAIT; (exit code, stdout, stderr).
fn run(cmd: &mut Command) -> (i32, String, String) {
    run_input(cmd, b"")
}

/// Run a command with `input` on its standard input, within WAIT.
fn run_input(cmd: &mut Command, input: &[u8]) -> (i32, String, String) {
    let out = common::run(cmd, input, WAIT);
    (out.code, out.stdout, out.stderr)
}

/// A started peer; stopped on drop.
struct Peer {
    script: PathBuf,
    port: u16,
    home: PathBuf,
}

impl Peer {
    fn start(name: &str, port: u16) -> Peer {
        Self::start_with(name, port, false)
    }

    fn start_with(name: &str, port: u16, tls: bool) -> Peer {
        let script = peers_dir().join(format!("{name}.sh"));
        // A leftover from an interrupted run would make `start` refuse.
        let _ = run(Command::new("bash").arg(&script).arg("stop"));
        let port_arg = port.to_string();
        let mut args = vec!["start", "--port", &port_arg];
        if tls {
            args.push("--tls");
        }
        let (code, out, err) = run(Command::new("bash").arg(&script).args(&args));
        assert_eq!(code, 0, "{name} start failed:\n{out}\n{err}");
        let field = |key: &str| {
            out.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .map(str::to_string)
                .unwrap_or_else(|| panic!("no {key} in {out}"))
        };
        Peer {
            script,
            port: field("PORT=").parse().unwrap(),
            home: PathBuf::from(field("HOME=")),
        }
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("ftp://{USER}@{host}:{}/{path}", self.port)
    }

    fn ftpes(&self, host: &str, path: &str) -> String {
        format!("ftpes://{USER}@{host}:{}/{path}", self.port)
    }
}

/// The SHA-256 fingerprint of a peer's self-signed certificate (`openssl x509`). Pinned, as
/// these certificates (CN only, no subjectAltName, CA:TRUE) can't be verified by name.
fn fingerprint(name: &str) -> String {
    let cert = format!("/tmp/ftp-peer-{name}/cert.pem");
    let (code, out, err) = run(Command::new("openssl").args([
        "x509",
        "-in",
        &cert,
        "-noout",
        "-fingerprint",
        "-sha256",
    ]));
    assert_eq!(code, 0, "openssl x509 {cert}: {err}");
    out.trim()
        .split_once('=')
        .map(|(_, fp)| fp.to_string())
        .unwrap_or_else(|| panic!("no fingerprint in {out}"))
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = run(Command::new("bash").arg(&self.script).arg("stop"));
    }
}

fn ferry(dir: &Path, args: &[&str]) -> (i32, String, String) {
    run(ferry_command(dir, PASSWORD).args(args))
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = ferry(dir, args);
    assert_eq!(code, 0, "ferry {args:?}\nstdout:\n{out}\nstderr:\n{err}");
    err
}

fn exercise(name: &str, port: u16) {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let peer = Peer::start(name, port);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::write(w.join("up.bin"), content(1_234_567, port.into())).unwrap();
    let want = sha256_file(&w.join("up.bin"));

    for host in ["127.0.0.1", "[::1]"] {
        for mode in ["auto", "passive", "epsv", "active"] {
            let m = ["--mode", mode];
            let remote = format!("{mode}.bin");
            let ctx = format!("{name} {host} {mode}");
            ok(
                w,
                &[&["put"][..], &m, &["up.bin", &peer.url(host, &remote)]].concat(),
            );
            assert_eq!(sha256_file(&peer.home.join(&remote)), want, "{ctx}: upload");
            let (_, listing, _) = ferry(w, &[&["ls"][..], &m, &[&peer.url(host, "")]].concat());
            assert!(listing.lines().any(|l| l == remote), "{ctx}: ls: {listing}");
            let local = format!("down-{mode}.bin");
            ok(
                w,
                &[&["get"][..], &m, &[&peer.url(host, &remote), "-o", &local]].concat(),
            );
            assert_eq!(sha256_file(&w.join(&local)), want, "{ctx}: download");
            ok(w, &[&["rm"][..], &m, &[&peer.url(host, &remote)]].concat());
            assert!(!peer.home.join(&remote).exists(), "{ctx}: rm");
        }
    }

    // File commands and a resumed download.
    let url = |p: &str| peer.url("127.0.0.1", p);
    ok(w, &["mkdir", &url("d")]);
    ok(w, &["put", "up.bin", &url("d/")]);
    ok(w, &["mv", &url("d/up.bin"), "moved.bin"]);
    std::fs::write(
        w.join("moved.bin"),
        &std::fs::read(w.join("up.bin")).unwrap()[..500_000],
    )
    .unwrap();
    ok(w, &["get", "-c", &url("d/moved.bin")]);
    assert_eq!(sha256_file(&w.join("moved.bin")), want, "{name}: get -c");
    ok(w, &["rm", &url("d/moved.bin")]);
    ok(w, &["rmdir", &url("d")]);

    // Mirror up and back down, then again with nothing to do.
    let src = w.join("src");
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    for (i, f) in ["a.txt", "sub/b.bin", "sub/deeper/c d.txt"]
        .iter()
        .enumerate()
    {
        std::fs::write(src.join(f), content(40_000 * i + 3, i as u64)).unwrap();
    }
    let up = ok(w, &["mirror", "--reverse", "-P", "2", "src", &url("m/")]);
    assert!(up.contains("3 copied"), "{name}: {up}");
    assert_eq!(tree(&src), tree(&peer.home.join("m")), "{name}: mirror up");
    let down = ok(w, &["mirror", "-P", "2", &url("m/"), "copy"]);
    assert!(down.contains("3 copied"), "{name}: {down}");
    assert_eq!(tree(&src), tree(&w.join("copy")), "{name}: mirror down");
    let again = ok(w, &["mirror", &url("m/"), "copy"]);
    assert!(
        again.contains("0 copied"),
        "{name}: second mirror copied again: {again}"
    );
}

/// `requires_reuse`: the peer refuses data connections that don't resume the session (then
/// every one must have resumed).
fn exercise_tls(name: &str, port: u16, requires_reuse: bool) {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let peer = Peer::start_with(name, port, true);
    let pin = fingerprint(name);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::write(w.join("up.bin"), content(1_234_567, port.into())).unwrap();
    let want = sha256_file(&w.join("up.bin"));

    for host in ["127.0.0.1", "[::1]"] {
        for mode in ["auto", "passive", "epsv", "active"] {
            let t = ["--mode", mode, "--pin-sha256", &pin];
            let remote = format!("tls-{mode}.bin");
            let ctx = format!("{name} TLS {host} {mode}");
            ok(
                w,
                &[&["put"][..], &t, &["up.bin", &peer.ftpes(host, &remote)]].concat(),
            );
            assert_eq!(sha256_file(&peer.home.join(&remote)), want, "{ctx}: upload");
            let (code, listing, err) =
                ferry(w, &[&["ls"][..], &t, &[&peer.ftpes(host, "")]].concat());
            assert_eq!(code, 0, "{ctx}: ls: {err}");
            assert!(listing.lines().any(|l| l == remote), "{ctx}: ls: {listing}");
            let local = format!("down-{mode}.bin");
            ok(
                w,
                &[
                    &["get"][..],
                    &t,
                    &[&peer.ftpes(host, &remote), "-o", &local],
                ]
                .concat(),
            );
            assert_eq!(sha256_file(&w.join(&local)), want, "{ctx}: download");
        }
    }

    // A run of uploads, then downloads, on one control connection (passive, then active):
    // the client must keep resuming the session (renewing it when tickets run out).
    let mut script = String::new();
    for i in 0..12 {
        if i == 6 {
            script.push_str("mode active\n");
        }
        script.push_str(&format!("put up.bin run-{i}.bin\n"));
    }
    for i in 0..12 {
        script.push_str(&format!("get run-{i}.bin back-{i}.bin\n"));
    }
    let (code, _, err) = run_input(
        ferry_command(w, PASSWORD).args([
            "shell",
            "-v",
            "--pin-sha256",
            &pin,
            &peer.ftpes("127.0.0.1", ""),
        ]),
        script.as_bytes(),
    );
    assert_eq!(code, 0, "{name}: shell run:\n{err}");
    assert!(
        !err.contains("< 522"),
        "{name}: session reuse refused:\n{err}"
    );
    if requires_reuse {
        assert!(
            !err.contains("full handshake\n"),
            "{name}: a data connection did not resume:\n{err}"
        );
    }
    for i in 0..12 {
        assert_eq!(
            sha256_file(&peer.home.join(format!("run-{i}.bin"))),
            want,
            "{name}: run {i}"
        );
        assert_eq!(
            sha256_file(&w.join(format!("back-{i}.bin"))),
            want,
            "{name}: back {i}"
        );
    }
}

/// Each peer in plain FTP, then with TLS (whether it requires the data connection to resume the
/// control connection's session). vsftpd (`require_ssl_reuse`) and ProFTPD refuse data
/// connections that don't resume it; Pure-FTPd issues no TLS 1.3 tickets and pyftpdlib doesn't
/// check.
const PEERS: [(&str, u16, u16, bool); 4] = [
    ("vsftpd", 2131, 2141, true),
    ("pure-ftpd", 2132, 2142, false),
    ("proftpd", 2133, 2143, true),
    ("pyftpdlib", 2134, 2144, false),
];

/// Without `FERRY_PEER_TESTS=1` every test is listed as ignored, with the reason, rather than
/// counted as passed.
fn main() -> std::process::ExitCode {
    let args = libtest_mimic::Arguments::from_args();
    let off = !enabled();
    let mut trials = Vec::new();
    for (name, port, tls_port, reuse) in PEERS {
        let id = name.replace('-', "_");
        trials.push(libtest_mimic::Trial::test(id.clone(), move || {
            exercise(name, port);
            Ok(())
        }));
        trials.push(libtest_mimic::Trial::test(format!("{id}_tls"), move || {
            exercise_tls(name, tls_port, reuse);
            Ok(())
        }));
    }
    let trials = trials
        .into_iter()
        .map(|t| {
            t.with_ignored_flag(off).with_kind(if off {
                "needs FERRY_PEER_TESTS=1, root and ../shared/peers"
            } else {
                ""
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}
