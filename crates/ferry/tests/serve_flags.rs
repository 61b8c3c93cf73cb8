//! `ferry serve`'s flags for the limits, each through the real binary on loopback (plain FTP,
//! port 0): `--max-sessions-per-user`, `--upload-rate`/`--download-rate`,
//! `--allowed-network`, `--quota-bytes`/`--quota-files`, and the refusal of bad values.
//! Rates are checked as lower bounds only (N bytes at a rate take at least 0.8 N / rate).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ferry");
const USER: &str = "flags";
const PASSWORD: &str = "flags-Pass-1";
const WAIT: Duration = Duration::from_secs(30);

/// A running `ferry serve`, killed (through `Child::kill`, by PID) when dropped.
struct Serve {
    child: Child,
    addr: SocketAddr,
    root: PathBuf,
    /// The server's standard error (its log, at `info`).
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(flags: &[&str]) -> Serve {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let log = dir.path().join("server.log");
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--allow-root",
            "--tls",
            "off",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--root")
        .arg(&root)
        .args(["--user", USER, "--log", "info"])
        .args(flags)
        .env("FERRY_PASSWORD", PASSWORD)
        .env_remove("RUST_LOG")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let addr = common::announced_ftp_address(&mut child);
    Serve {
        child,
        addr,
        root,
        log,
        _dir: dir,
    }
}

/// A plain FTP control connection.
struct Ftp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Ftp {
    fn connect(addr: SocketAddr) -> Ftp {
        let stream = TcpStream::connect_timeout(&addr, WAIT).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut c = Ftp {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        assert_eq!(c.reply().0, 220);
        c
    }

    /// The next reply: its code and last line's text (empty at end of stream).
    fn reply(&mut self) -> (u16, String) {
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).unwrap_or(0) == 0 {
                return (0, String::new());
            }
            let b = line.as_bytes();
            if b.len() >= 4 && b[..3].iter().all(u8::is_ascii_digit) && b[3] == b' ' {
                return (line[..3].parse().unwrap(), line[4..].trim_end().to_string());
            }
        }
    }

    fn cmd(&mut self, line: &str) -> (u16, String) {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
        self.reply()
    }

    /// `USER` then `PASS`: the reply to the password.
    fn login(&mut self, password: &str) -> (u16, String) {
        assert_eq!(self.cmd(&format!("USER {USER}")).0, 331);
        self.cmd(&format!("PASS {password}"))
    }

    fn logged_in(addr: SocketAddr) -> Ftp {
        let mut c = Ftp::connect(addr);
        assert_eq!(c.login(PASSWORD).0, 230);
        assert_eq!(c.cmd("TYPE I").0, 200);
        c
    }

    /// `EPSV`, connected.
    fn data(&mut self) -> TcpStream {
        let (code, text) = self.cmd("EPSV");
        assert_eq!(code, 229, "{text}");
        let port: u16 = text
            .split("|||")
            .nth(1)
            .and_then(|rest| rest.split('|').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {text}"));
        let addr = SocketAddr::new(self.writer.peer_addr().unwrap().ip(), port);
        TcpStream::connect_timeout(&addr, WAIT).unwrap()
    }

    /// `STOR name` with `bytes` (the server may stop reading early): the final reply, or the
    /// refusal if the upload never began.
    fn stor(&mut self, name: &str, bytes: &[u8]) -> (u16, String) {
        let mut data = self.data();
        let begun = self.cmd(&format!("STOR {name}"));
        if begun.0 != 150 {
            return begun;
        }
        let _ = data.write_all(bytes);
        drop(data);
        self.reply()
    }

    fn retr(&mut self, name: &str) -> (Vec<u8>, u16) {
        let mut data = self.data();
        assert_eq!(self.cmd(&format!("RETR {name}")).0, 150);
        data.set_read_timeout(Some(WAIT)).unwrap();
        let mut bytes = Vec::new();
        data.read_to_end(&mut bytes).unwrap();
        (bytes, self.reply().0)
    }
}

#[test]
fn max_sessions_per_user_caps_the_users_sessions() {
    let s = serve(&["--max-sessions-per-user", "1"]);
    let _first = Ftp::logged_in(s.addr);
    let mut second = Ftp::connect(s.addr);
    let (code, text) = second.login(PASSWORD);
    assert_eq!(code, 421, "{text}");
    assert!(text.contains("too many sessions for this user"), "{text}");
}

#[test]
fn upload_and_download_rates_hold_the_server() {
    const SIZE: usize = 1024 * 1024;
    let s = serve(&["--upload-rate", "512KiB", "--download-rate", "512KiB"]);
    let floor = Duration::from_secs_f64(SIZE as f64 / (512.0 * 1024.0) * 0.8);
    let body: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let mut c = Ftp::logged_in(s.addr);
    let started = Instant::now();
    assert_eq!(c.stor("up.bin", &body).0, 226);
    let up = started.elapsed();
    assert!(up >= floor, "1 MiB up at 512 KiB/s in {up:?}");
    let started = Instant::now();
    let (bytes, code) = c.retr("up.bin");
    let down = started.elapsed();
    assert_eq!((code, bytes.len()), (226, SIZE));
    assert!(down >= floor, "1 MiB down at 512 KiB/s in {down:?}");
    eprintln!("at 512 KiB/s: 1 MiB up in {up:?}, down in {down:?}");
}

#[test]
fn allowed_network_keeps_the_user_to_its_networks() {
    let outside = serve(&["--allowed-network", "192.0.2.0/24"]);
    let mut c = Ftp::connect(outside.addr);
    // Answered as a wrong password: the address tells nothing about the account.
    assert_eq!(c.login(PASSWORD).0, 530);
    let inside = serve(&[
        "--allowed-network",
        "192.0.2.0/24",
        "--allowed-network",
        "127.0.0.1",
    ]);
    let mut c = Ftp::connect(inside.addr);
    assert_eq!(c.login(PASSWORD).0, 230);
}

#[test]
fn quota_flags_hold_the_users_bytes_and_files() {
    let s = serve(&[
        "--quota-bytes",
        "1000",
        "--quota-files",
        "2",
        "--log-format",
        "json",
    ]);
    std::fs::write(s.root.join("one"), vec![1u8; 300]).unwrap();
    let mut c = Ftp::logged_in(s.addr);
    // Crossing the bytes quota: cut, nothing kept.
    let (code, text) = c.stor("two", &[2u8; 800]);
    assert_eq!(code, 552, "{text}");
    assert!(text.starts_with("Quota exceeded: bytes"), "{text}");
    assert!(!s.root.join("two").exists());
    assert_eq!(c.stor("two", &[2u8; 700]).0, 226);
    // Full in both: refused before it begins.
    let (code, text) = c.stor("three", b"3");
    assert_eq!(
        (code, text.as_str()),
        (552, "Quota exceeded: files (2 of 2 used)")
    );
    assert_eq!(c.cmd("DELE one").0, 250);
    assert_eq!(c.stor("three", &[3u8; 300]).0, 226);
    // Both refusals are security events: the cut upload once, the one refused up front.
    let started = std::time::Instant::now();
    let events = loop {
        let log = std::fs::read_to_string(&s.log).unwrap();
        let events: Vec<String> = log
            .lines()
            .filter(|l| l.contains("\"event\":\"quota_exceeded\""))
            .map(str::to_string)
            .collect();
        if events.len() >= 2 || started.elapsed() > std::time::Duration::from_secs(10) {
            break events;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events[0].contains("Quota exceeded: bytes") && events[0].contains("/two"));
    assert!(events[1].contains("Quota exceeded: files (2 of 2 used)"));
}

#[test]
fn bad_limit_flags_are_refused_clearly() {
    for (flags, says) in [
        (&["--quota-bytes", "lots"][..], "'lots' is not a size"),
        (&["--upload-rate", "fast"][..], "'fast' is not a rate"),
        (&["--download-rate", "0"][..], "'0' is not a rate"),
        (
            &["--allowed-network", "10.0.0.0/33"][..],
            "is not a network",
        ),
        (&["--quota-files", "many"][..], "--quota-files"),
    ] {
        // Bounded: a flag taken would leave the server running.
        let out = Command::new("timeout")
            .args([
                "30",
                BIN,
                "serve",
                "--allow-root",
                "--tls",
                "off",
                "--listen",
                "127.0.0.1:0",
            ])
            .args(flags)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?} was accepted");
        assert!(err.contains(says), "{flags:?}: {err}");
    }
    // With users from a file and no --user, a per-user flag has no user to apply to.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.toml");
    let hash = ferry_auth::hash_password("x");
    std::fs::write(
        &config,
        format!("[[users]]\nname = \"a\"\npassword_hash = \"{hash}\"\nhome = \"/tmp\"\n"),
    )
    .unwrap();
    let out = Command::new("timeout")
        .args([
            "30",
            BIN,
            "serve",
            "--allow-root",
            "--tls",
            "off",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--config")
        .arg(&config)
        .args(["--quota-bytes", "1GiB"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("apply to the --user"), "{err}");
}
