//! `--metrics-listen`: Prometheus text at `/metrics`, `/healthz` through a SIGTERM drain, basic
//! auth, and the status page, read from the DOM headless Chromium renders while an upload
//! runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, hash, run};

const WAIT: Duration = Duration::from_secs(30);
const PASSWORD: &str = "observed";
const VIEWER: &str = "viewer:look";

struct Node {
    child: Child,
    ftp: SocketAddr,
    http: SocketAddr,
    root: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ferry serve` with plain FTP, its metrics listener behind basic auth ([`VIEWER`]).
fn start() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let (user, password) = VIEWER.split_once(':').unwrap();
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "[limits]\nmax_failed_logins_per_ip = 2\nlogin_failure_delay_ms = 10\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\nuser = \"{user}\"\npassword_hash = \"{}\"\n",
            hash(password)
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--allow-root",
            "--tls",
            "off",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--config")
        .arg(&config)
        .args(["--user", "alice", "--log", "warn"])
        .arg("--root")
        .arg(&root)
        .env("FERRY_PASSWORD", PASSWORD)
        .env_remove("RUST_LOG")
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut ftp, mut http) = (None, None);
    while ftp.is_none() || http.is_none() {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "ferry serve ended");
        let line = line.trim();
        if let Some(a) = line.strip_prefix("ferry: listening on ftp://") {
            ftp = Some(a.trim_end_matches('/').parse().unwrap());
        }
        if let Some(a) = line.strip_prefix("ferry: metrics on http://") {
            http = Some(a.trim_end_matches("/metrics").parse().unwrap());
        }
    }
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Node {
        child,
        ftp: ftp.unwrap(),
        http: http.unwrap(),
        root,
        _dir: dir,
    }
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// `GET path`: the status code and the body.
fn get(addr: SocketAddr, path: &str, credentials: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let auth = credentials
        .map(|c| format!("Authorization: Basic {}\r\n", base64(c.as_bytes())))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let code = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

struct Ftp(BufReader<TcpStream>);

impl Ftp {
    fn connect(addr: SocketAddr) -> Ftp {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut f = Ftp(BufReader::new(s));
        assert!(f.reply().starts_with("220"));
        f
    }

    fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            assert!(self.0.read_line(&mut line).unwrap() > 0, "closed");
            let b = line.as_bytes();
            if b.len() >= 4 && b[..3].iter().all(u8::is_ascii_digit) && b[3] == b' ' {
                return line.trim_end().to_string();
            }
        }
    }

    fn cmd(&mut self, line: &str) -> String {
        self.0
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
        self.reply()
    }

    fn login(&mut self) {
        assert!(self.cmd("USER alice").starts_with("331"));
        assert!(self.cmd(&format!("PASS {PASSWORD}")).starts_with("230"));
        assert!(self.cmd("TYPE I").starts_with("200"));
    }

    /// A data connection for the next transfer command (EPSV).
    fn data(&mut self) -> TcpStream {
        let r = self.cmd("EPSV");
        let port: u16 = r
            .split("|||")
            .nth(1)
            .and_then(|p| p.split('|').next())
            .unwrap()
            .parse()
            .unwrap();
        let peer = self.0.get_ref().peer_addr().unwrap();
        TcpStream::connect((peer.ip(), port)).unwrap()
    }
}

/// Poll `what` until it holds (the server acts on its own time), within [`WAIT`].
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < WAIT, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn metrics_count_logins_and_bytes_and_healthz_follows_the_drain() {
    let mut node = start();
    let body = common::content(1 << 20, 5);
    std::fs::write(node.root.join("one.bin"), &body).unwrap();
    let (http, auth) = (node.http, Some(VIEWER));

    let mut ftp = Ftp::connect(node.ftp);
    assert!(ftp.cmd("USER alice").starts_with("331"));
    assert!(ftp.cmd("PASS wrong").starts_with("530"));
    ftp.login();
    let mut data = ftp.data();
    assert!(ftp.cmd("RETR one.bin").starts_with("150"));
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), body.len());
    assert!(ftp.reply().starts_with("226"));

    assert_eq!(get(http, "/metrics", None).0, 401);
    assert_eq!(get(http, "/metrics", Some("viewer:wrong")).0, 401);
    let (code, text) = get(http, "/metrics", auth);
    assert_eq!(code, 200);
    for line in [
        "ferry_sessions{protocol=\"ftp\"} 1",
        "ferry_logins_total{protocol=\"ftp\",result=\"failed\"} 1",
        "ferry_logins_total{protocol=\"ftp\",result=\"ok\"} 1",
        "ferry_transfer_bytes_total{protocol=\"ftp\",direction=\"download\"} 1048576",
        "ferry_transfers_total{protocol=\"ftp\",direction=\"download\"} 1",
        "ferry_passive_ports_in_use 0",
        "ferry_storage_request_seconds_count{operation=\"open_read\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }

    // Healthy, without credentials (balancers ask it).
    assert_eq!(get(http, "/healthz", None), (200, "ok\n".to_string()));

    // An upload runs; SIGTERM: the node drains (the upload goes on) and says so.
    let mut up = ftp.data();
    assert!(ftp.cmd("STOR up.bin").starts_with("150"));
    up.write_all(&body).unwrap();
    let kill = Command::new("kill")
        .args(["-TERM", &node.child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    eventually("/healthz answers 503", || {
        get(http, "/healthz", None) == (503, "draining\n".to_string())
    });
    drop(up);
    assert!(ftp.reply().starts_with("226"));
    eventually("the node exits once the upload is done", || {
        node.child.try_wait().unwrap().is_some()
    });
    assert_eq!(std::fs::read(node.root.join("up.bin")).unwrap(), body);
}

fn chromium() -> Option<&'static str> {
    for path in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(path).exists() {
            return Some(path);
        }
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "chromium is not installed (.ci/run installs it)"
    );
    eprintln!("SKIPPED: chromium is not installed (apt-get install chromium)");
    None
}

#[test]
fn the_status_page_shows_a_running_upload_in_a_real_browser() {
    let Some(chromium) = chromium() else { return };
    let node = start();
    let mut ftp = Ftp::connect(node.ftp);
    ftp.login();
    let mut up = ftp.data();
    assert!(ftp.cmd("STOR under-way.bin").starts_with("150"));
    up.write_all(&[7u8; 300_000]).unwrap();
    // Two failed logins, and the third attempt from the address is refused: a ban.
    let mut guesser = Ftp::connect(node.ftp);
    for _ in 0..2 {
        assert!(guesser.cmd("USER alice").starts_with("331"));
        assert!(guesser.cmd("PASS guess").starts_with("530"));
    }
    assert!(guesser.cmd("USER alice").starts_with("331"));
    assert!(guesser.cmd("PASS guess").starts_with("421"));
    eventually("the upload shows in /status.json", || {
        let (_, json) = get(node.http, "/status.json", Some(VIEWER));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["transfers"][0]["bytes"].as_u64() == Some(300_000)
    });

    // The page loads in the browser (credentials in the URL); its DOM shows the upload.
    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{VIEWER}@{}/", node.http);
    let out = run(
        Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(["--virtual-time-budget=3000", "--dump-dom"])
            .arg(&url),
        b"",
        Duration::from_secs(120),
    );
    let dom = out.stdout;
    assert!(
        dom.contains("<td>/under-way.bin</td>"),
        "no upload in the page (stderr: {})\n{dom}",
        out.stderr
    );
    assert!(dom.contains("<td>upload</td>"), "{dom}");
    assert!(dom.contains("<td>293.0 KiB</td>"), "{dom}");
    assert!(dom.contains("<td>alice</td>"), "{dom}");
    // The ban: the address alone (sessions show address and port).
    assert!(dom.contains("<td>ftp</td><td>127.0.0.1</td>"), "{dom}");
    assert!(dom.contains("<polyline"), "{dom}");
    drop(up);
    assert!(ftp.reply().starts_with("226"));
}

#[test]
fn healthz_says_so_when_the_storage_stops_answering() {
    let node = start();
    assert_eq!(get(node.http, "/healthz", None).0, 200);
    std::fs::remove_dir_all(&node.root).unwrap();
    eventually("/healthz reports the storage", || {
        get(node.http, "/healthz", None) == (503, "storage unavailable\n".to_string())
    });
}
