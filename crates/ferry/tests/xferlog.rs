//! `ferry serve --xferlog` and `--log-format json`, over real sockets on loopback: one
//! xferlog(5) line per FTP and SFTP transfer, complete or aborted, each field checked;
//! client-chosen names kept to one token; the `xferlog` and `log_format` keys; security events (a
//! failed login, a login, a jail refusal, a refused bounce `PORT`, a foreign data connection)
//! as JSON lines on standard error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ferry");
const PASSWORD: &str = "xfer-pw";
/// Upper bound for any one wait.
const WAIT: Duration = Duration::from_secs(60);

/// A `ferry serve` process; killed when dropped.
struct Serve {
    child: Child,
    ftp: SocketAddr,
    sftp: SocketAddr,
    root: PathBuf,
    stderr: Arc<Mutex<Vec<String>>>,
    dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ferry serve` for user `alice` (plain FTP and SFTP on 127.0.0.1 port 0), with `args`, and
/// `config` as its configuration file when given.
fn serve(args: &[&str], config: Option<&str>) -> Serve {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--allow-root"])
        .args(["--tls", "off", "--listen", "127.0.0.1:0"])
        .args(["--sftp-listen", "127.0.0.1:0", "--user", "alice"])
        .arg("--root")
        .arg(&root)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(args)
        .env("FERRY_PASSWORD", PASSWORD)
        .env_remove("RUST_LOG")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(text) = config {
        let path = dir.path().join("ferry.toml");
        std::fs::write(&path, text).unwrap();
        cmd.arg("--config").arg(path);
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = Arc::new(Mutex::new(Vec::new()));
    {
        let lines = Arc::clone(&stderr);
        let err = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in err.lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
    }
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut ftp, mut sftp) = (None, None);
    while ftp.is_none() || sftp.is_none() {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            panic!(
                "ferry serve ended early: {:?}",
                stderr.lock().unwrap().join("\n")
            );
        }
        let line = line.trim();
        if let Some(a) = line.strip_prefix("ferry: listening on ftp://") {
            ftp = Some(a.trim_end_matches('/').parse().unwrap());
        }
        if let Some(a) = line.strip_prefix("ferry: listening on sftp://") {
            sftp = Some(a.trim_end_matches('/').parse().unwrap());
        }
    }
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Serve {
        child,
        ftp: ftp.unwrap(),
        sftp: sftp.unwrap(),
        root,
        stderr,
        dir,
    }
}

impl Serve {
    /// The standard-error lines that are JSON objects with `event` = `name`, waited for.
    fn events(&self, name: &str) -> Vec<serde_json::Value> {
        let start = Instant::now();
        loop {
            let found: Vec<serde_json::Value> = self
                .stderr
                .lock()
                .unwrap()
                .iter()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| v["event"] == name)
                .collect();
            if !found.is_empty() {
                return found;
            }
            assert!(
                start.elapsed() < WAIT,
                "no {name} event in:\n{}",
                self.stderr.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The first `n` lines of the transfer log at `path`, waited for.
fn log_lines(path: &Path, n: usize) -> Vec<String> {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(String::from).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            start.elapsed() < WAIT,
            "{} of {n} lines in {}:\n{text}",
            lines.len(),
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One xferlog(5) line, split into its fields.
#[derive(Debug)]
struct Line {
    seconds: u64,
    host: String,
    bytes: u64,
    file: String,
    kind: String,
    action: String,
    direction: String,
    access: String,
    user: String,
    service: String,
    auth: String,
    ident: String,
    status: String,
}

fn parse(line: &str) -> Line {
    let f: Vec<&str> = line.split(' ').filter(|f| !f.is_empty()).collect();
    assert_eq!(f.len(), 18, "field count of {line:?}");
    // "Mon Dec  7 01:02:03 2026": a day name, a month, the day, the time and the year.
    assert!(
        ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].contains(&f[0]),
        "{line:?}"
    );
    assert!(
        [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"
        ]
        .contains(&f[1]),
        "{line:?}"
    );
    assert!((1..=31).contains(&f[2].parse::<u32>().unwrap()), "{line:?}");
    assert_eq!(f[3].len(), 8, "{line:?}");
    assert_eq!(f[3].split(':').count(), 3, "{line:?}");
    assert!(f[4].parse::<u32>().unwrap() >= 2024, "{line:?}");
    // The day is padded to two places: "Dec  7", "Dec 17".
    let day = &line[8..10];
    assert_eq!(day.trim(), f[2], "{line:?}");
    Line {
        seconds: f[5].parse().unwrap(),
        host: f[6].to_string(),
        bytes: f[7].parse().unwrap(),
        file: f[8].to_string(),
        kind: f[9].to_string(),
        action: f[10].to_string(),
        direction: f[11].to_string(),
        access: f[12].to_string(),
        user: f[13].to_string(),
        service: f[14].to_string(),
        auth: f[15].to_string(),
        ident: f[16].to_string(),
        status: f[17].to_string(),
    }
}

/// Check the fields every line of this test shares, and return the line.
#[track_caller]
fn check(line: &str, service: &str) -> Line {
    let l = parse(line);
    assert!(l.seconds >= 1, "{line:?}");
    assert_eq!(l.host, "127.0.0.1", "{line:?}");
    assert_eq!(l.action, "_", "{line:?}");
    assert_eq!(l.access, "r", "{line:?}");
    assert_eq!(l.user, "alice", "{line:?}");
    assert_eq!(l.service, service, "{line:?}");
    assert_eq!((l.auth.as_str(), l.ident.as_str()), ("0", "*"), "{line:?}");
    l
}

/// A minimal FTP control connection.
struct Ftp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Ftp {
    fn connect(addr: SocketAddr) -> Ftp {
        let stream = TcpStream::connect_timeout(&addr, WAIT).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut ftp = Ftp {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        assert_eq!(ftp.reply().0, 220);
        ftp
    }

    fn login(addr: SocketAddr) -> Ftp {
        let mut ftp = Ftp::connect(addr);
        ftp.expect("USER alice", 331);
        ftp.expect(&format!("PASS {PASSWORD}"), 230);
        ftp.expect("TYPE I", 200);
        ftp
    }

    /// A whole reply: its code and text.
    fn reply(&mut self) -> (u16, String) {
        let mut text = String::new();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        text.push_str(&line);
        let code: u16 = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        if line.as_bytes().get(3) == Some(&b'-') {
            let end = format!("{code} ");
            loop {
                line.clear();
                assert!(self.reader.read_line(&mut line).unwrap() > 0, "{text}");
                text.push_str(&line);
                if line.starts_with(&end) {
                    break;
                }
            }
        }
        (code, text)
    }

    fn send(&mut self, command: &str) {
        self.writer
            .write_all(format!("{command}\r\n").as_bytes())
            .unwrap();
    }

    #[track_caller]
    fn expect(&mut self, command: &str, code: u16) -> String {
        self.send(command);
        let (got, text) = self.reply();
        assert_eq!(got, code, "{command}: {text}");
        text
    }

    /// `EPSV`: the data address.
    fn epsv(&mut self) -> SocketAddr {
        let text = self.expect("EPSV", 229);
        let port = text
            .split("(|||")
            .nth(1)
            .and_then(|t| t.split('|').next())
            .and_then(|p| p.parse().ok())
            .unwrap();
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    }

    fn data(&mut self) -> TcpStream {
        let addr = self.epsv();
        TcpStream::connect_timeout(&addr, WAIT).unwrap()
    }

    fn retr(&mut self, name: &str) -> Vec<u8> {
        let mut data = self.data();
        data.set_read_timeout(Some(WAIT)).unwrap();
        self.send(&format!("RETR {name}"));
        let mut body = Vec::new();
        data.read_to_end(&mut body).unwrap();
        let mut codes = vec![self.reply().0];
        if codes[0] == 150 {
            codes.push(self.reply().0);
        }
        assert_eq!(codes.last(), Some(&226), "RETR {name}: {codes:?}");
        body
    }

    fn stor(&mut self, name: &str, body: &[u8]) {
        let mut data = self.data();
        self.send(&format!("STOR {name}"));
        assert_eq!(self.reply().0, 150);
        data.write_all(body).unwrap();
        drop(data);
        assert_eq!(self.reply().0, 226, "STOR {name}");
    }

    /// `ABOR` of the running transfer: `426` then `226`.
    fn abort(&mut self) {
        self.send("ABOR");
        let first = self.reply();
        let second = self.reply();
        assert_eq!((first.0, second.0), (426, 226), "{first:?} {second:?}");
    }
}

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn ftp_transfers_complete_and_aborted_are_logged() {
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("xferlog");
    let srv = serve(&["--xferlog", log.to_str().unwrap()], None);
    let small = content(100_000);
    std::fs::write(srv.root.join("small.bin"), &small).unwrap();
    // Larger than any socket buffers: the download is running when ABOR comes.
    let big = content(64 << 20);
    std::fs::write(srv.root.join("big.bin"), &big).unwrap();

    let mut ftp = Ftp::login(srv.ftp);
    assert_eq!(ftp.retr("small.bin"), small);
    let l = check(&log_lines(&log, 1)[0], "ftp");
    assert_eq!((l.bytes, l.file.as_str()), (100_000, "/small.bin"));
    assert_eq!((l.kind.as_str(), l.direction.as_str()), ("b", "o"));
    assert_eq!(l.status, "c");

    ftp.stor("up load.bin", &small);
    assert_eq!(std::fs::read(srv.root.join("up load.bin")).unwrap(), small);
    let l = check(&log_lines(&log, 2)[1], "ftp");
    assert_eq!((l.bytes, l.file.as_str()), (100_000, "/up_load.bin"));
    assert_eq!((l.direction.as_str(), l.status.as_str()), ("i", "c"));

    // A download aborted with nothing read: incomplete, fewer bytes than the file.
    let _data = ftp.data();
    ftp.send("RETR big.bin");
    assert_eq!(ftp.reply().0, 150);
    ftp.abort();
    let l = check(&log_lines(&log, 3)[2], "ftp");
    assert_eq!((l.file.as_str(), l.direction.as_str()), ("/big.bin", "o"));
    assert_eq!(l.status, "i");
    assert!(l.bytes < big.len() as u64, "{l:?}");

    // An upload aborted with its data connection still open: incomplete.
    let mut data = ftp.data();
    ftp.send("STOR cut.bin");
    assert_eq!(ftp.reply().0, 150);
    data.write_all(&small).unwrap();
    ftp.abort();
    let l = check(&log_lines(&log, 4)[3], "ftp");
    assert_eq!((l.file.as_str(), l.direction.as_str()), ("/cut.bin", "i"));
    assert_eq!(l.status, "i");
    assert!(l.bytes <= small.len() as u64, "{l:?}");

    // ASCII mode and a name with a control character (ESC): one token, `a`.
    ftp.expect("TYPE A", 200);
    ftp.stor("esc\u{1b}[31mred.txt", b"line\r\n");
    let l = check(&log_lines(&log, 5)[4], "ftp");
    assert_eq!(l.file, "/esc_[31mred.txt");
    assert_eq!((l.kind.as_str(), l.status.as_str()), ("a", "c"));
    ftp.expect("QUIT", 221);
    assert_eq!(log_lines(&log, 5).len(), 5, "one line per transfer");
}

#[test]
fn sftp_transfers_and_json_events_from_the_configuration_keys() {
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("transfers.log");
    let config = format!(
        "xferlog = {:?}\nlog_format = \"json\"\n",
        log.to_str().unwrap()
    );
    let srv = serve(&[], Some(&config));
    let body = content(300_000);
    let work = srv.dir.path();
    std::fs::write(work.join("local.bin"), &body).unwrap();
    let url = |p: &str| format!("sftp://alice@{}/{p}", srv.sftp);
    let ferry = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .arg("--insecure")
            .env("FERRY_PASSWORD", PASSWORD)
            .env("HOME", work)
            .env_remove("SSH_AUTH_SOCK")
            .current_dir(work)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
    };
    ferry(&["put", "local.bin", &url("a%20file.bin")]);
    let logins = srv.events("login_ok");
    let e = &logins[0];
    assert_eq!(
        (e["protocol"].as_str(), e["user"].as_str()),
        (Some("sftp"), Some("alice")),
        "{e}"
    );
    assert_eq!(e["method"], "password", "{e}");
    let l = check(&log_lines(&log, 1)[0], "sftp");
    assert_eq!((l.bytes, l.file.as_str()), (300_000, "/a_file.bin"));
    assert_eq!((l.kind.as_str(), l.direction.as_str()), ("b", "i"));
    assert_eq!(l.status, "c");

    ferry(&["get", &url("a%20file.bin"), "-o", "back.bin"]);
    assert_eq!(std::fs::read(work.join("back.bin")).unwrap(), body);
    let lines = log_lines(&log, 2);
    let l = check(&lines[1], "sftp");
    assert_eq!((l.bytes, l.file.as_str()), (300_000, "/a_file.bin"));
    assert_eq!((l.direction.as_str(), l.status.as_str()), ("o", "c"));

    // FTP writes to the same log, as `ftp`.
    let mut ftp = Ftp::login(srv.ftp);
    assert_eq!(ftp.retr("a file.bin"), body);
    let l = check(&log_lines(&log, 3)[2], "ftp");
    assert_eq!((l.bytes, l.direction.as_str()), (300_000, "o"));
}

#[test]
fn security_events_are_json_lines() {
    let srv = serve(&["--log-format", "json"], None);
    let mut ftp = Ftp::connect(srv.ftp);
    ftp.expect("USER alice", 331);
    ftp.expect("PASS wrong", 530);
    let failed = srv.events("login_failed");
    let e = &failed[0];
    assert_eq!(e["protocol"], "ftp", "{e}");
    assert_eq!(e["user"], "alice", "{e}");
    let peer: SocketAddr = e["peer"].as_str().unwrap().parse().unwrap();
    assert_eq!(peer.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST), "{e}");
    let time = e["time"].as_str().unwrap();
    assert!(
        time.len() >= 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "RFC 3339: {e}"
    );
    assert_eq!(e["level"], "WARN", "{e}");

    ftp.expect("USER alice", 331);
    ftp.expect(&format!("PASS {PASSWORD}"), 230);
    let ok = srv.events("login_ok");
    assert_eq!(ok[0]["user"], "alice", "{}", ok[0]);
    assert_eq!(ok[0]["method"], "password", "{}", ok[0]);

    // A link out of the home: the jail refuses it.
    std::fs::write(srv.dir.path().join("secret.txt"), b"secret").unwrap();
    std::os::unix::fs::symlink(srv.dir.path().join("secret.txt"), srv.root.join("out")).unwrap();
    ftp.expect("SIZE out", 550);
    let jail = srv.events("jail_refused");
    let e = &jail[0];
    assert_eq!(
        (e["protocol"].as_str(), e["user"].as_str()),
        (Some("ftp"), Some("alice")),
        "{e}"
    );
    assert_eq!(e["path"], "/out", "{e}");

    // FTP bounce: a data address other than the client's.
    ftp.expect("PORT 127,0,0,2,200,10", 504);
    let bounce = srv.events("bounce_refused");
    let e = &bounce[0];
    assert_eq!(
        (e["protocol"].as_str(), e["user"].as_str()),
        (Some("ftp"), Some("alice")),
        "{e}"
    );
    assert_eq!(e["target"], "127.0.0.2:51210", "{e}");
    assert_eq!(e["command"], "PORT", "{e}");

    // A connection to the passive port from another loopback address: dropped, logged.
    let addr = ftp.epsv();
    let thief = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    thief
        .bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 0).into())
        .unwrap();
    thief.connect_timeout(&addr.into(), WAIT).unwrap();
    std::fs::write(srv.root.join("f.txt"), b"x").unwrap();
    ftp.send("RETR f.txt");
    let foreign = srv.events("foreign_data_refused");
    let e = &foreign[0];
    assert_eq!(e["protocol"], "ftp", "{e}");
    let from: SocketAddr = e["from"].as_str().unwrap().parse().unwrap();
    assert_eq!(from.ip(), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), "{e}");
    assert_eq!(e["peer"], "127.0.0.1", "{e}");
    drop(thief);
}

#[test]
fn json_lines_keep_client_text_on_one_line() {
    let srv = serve(&["--log-format", "json"], None);
    let mut ftp = Ftp::connect(srv.ftp);
    ftp.expect("USER al\u{202e}ice\u{85}x", 331);
    ftp.expect("PASS wrong", 530);
    let failed = srv.events("login_failed");
    let user = failed[0]["user"].as_str().unwrap();
    assert!(
        user.starts_with("al") && user.ends_with('x'),
        "{}",
        failed[0]
    );
    let lines = srv.stderr.lock().unwrap().clone();
    for line in &lines {
        assert!(
            !line.contains('\u{202e}') && !line.contains('\u{85}'),
            "{line:?}"
        );
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "{line:?}"
        );
    }
}
