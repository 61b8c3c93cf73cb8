//! The client against real servers (vsftpd, Pure-FTPd, ProFTPD, pyftpdlib) started by
//! `../shared/peers/<name>.sh` on loopback: put/ls/get/rm in each mode on IPv4 and IPv6, and
//! mirror both ways; every file verified by sha256.
//!
//! Needs root and the peer scripts; runs only with `FERRY_PEER_TESTS=1`
//! (`FERRY_PEERS_DIR` overrides where the scripts are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ferry");
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
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t1 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let t2 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if started.elapsed() > WAIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.code().unwrap_or(-1),
        t1.join().unwrap(),
        t2.join().unwrap(),
    )
}

/// A started peer; stopped on drop.
struct Peer {
    script: PathBuf,
    port: u16,
    home: PathBuf,
}

impl Peer {
    fn start(name: &str, port: u16) -> Peer {
        let script = peers_dir().join(format!("{name}.sh"));
        // A leftover from an interrupted run would make `start` refuse.
        let _ = run(Command::new("bash").arg(&script).arg("stop"));
        let (code, out, err) =
            run(Command::new("bash")
                .arg(&script)
                .args(["start", "--port", &port.to_string()]));
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
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = run(Command::new("bash").arg(&self.script).arg("stop"));
    }
}

fn ferry(dir: &Path, args: &[&str]) -> (i32, String, String) {
    run(Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("FERRY_PASSWORD", PASSWORD))
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = ferry(dir, args);
    assert_eq!(code, 0, "ferry {args:?}\nstdout:\n{out}\nstderr:\n{err}");
    err
}

fn sha256(path: &Path) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(path).unwrap()).to_vec()
}

fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                out.push((format!("{rel}/"), Vec::new()));
                stack.push(p);
            } else {
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn exercise(name: &str, port: u16) {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let peer = Peer::start(name, port);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::write(w.join("up.bin"), content(1_234_567, port.into())).unwrap();
    let want = sha256(&w.join("up.bin"));

    for host in ["127.0.0.1", "[::1]"] {
        for mode in ["auto", "passive", "epsv", "active"] {
            let m = ["--mode", mode];
            let remote = format!("{mode}.bin");
            let ctx = format!("{name} {host} {mode}");
            ok(
                w,
                &[&["put"][..], &m, &["up.bin", &peer.url(host, &remote)]].concat(),
            );
            assert_eq!(sha256(&peer.home.join(&remote)), want, "{ctx}: upload");
            let (_, listing, _) = ferry(w, &[&["ls"][..], &m, &[&peer.url(host, "")]].concat());
            assert!(listing.lines().any(|l| l == remote), "{ctx}: ls: {listing}");
            let local = format!("down-{mode}.bin");
            ok(
                w,
                &[&["get"][..], &m, &[&peer.url(host, &remote), "-o", &local]].concat(),
            );
            assert_eq!(sha256(&w.join(&local)), want, "{ctx}: download");
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
    assert_eq!(sha256(&w.join("moved.bin")), want, "{name}: get -c");
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

macro_rules! peer_test {
    ($test:ident, $name:literal, $port:literal) => {
        #[test]
        fn $test() {
            if !enabled() {
                eprintln!("skipped: set FERRY_PEER_TESTS=1 (needs root and ../shared/peers)");
                return;
            }
            exercise($name, $port);
        }
    };
}

peer_test!(vsftpd, "vsftpd", 2131);
peer_test!(pure_ftpd, "pure-ftpd", 2132);
peer_test!(proftpd, "proftpd", 2133);
peer_test!(pyftpdlib, "pyftpdlib", 2134);
