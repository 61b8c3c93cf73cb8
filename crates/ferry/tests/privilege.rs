//! `ferry serve` started as root: it refuses to serve as root unless told it may, and with
//! `run_as` it serves as that account, every thread with no capability, `no_new_privs`, a
//! seccomp filter, and Landlock keeping files outside the served roots shut.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ferry");

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

/// `nobody`'s user and group ids, from the user database.
fn nobody() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with("nobody:"))
        .expect("a nobody account");
    let f: Vec<&str> = line.split(':').collect();
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

/// Send each line `from` yields to a channel, from a thread of its own.
fn lines_of(from: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// Lines from `rx` up to the first containing `needle` (panics after 30 s).
fn until(rx: &mpsc::Receiver<String>, needle: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return seen;
                }
            }
            Err(_) => panic!("no line with {needle:?} in time: {seen:#?}"),
        }
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn started_as_root_without_run_as_it_refuses_unless_allowed() {
    if !is_root() {
        eprintln!("SKIPPED started_as_root_without_run_as_it_refuses_unless_allowed: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--tls", "off"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "ferry serve kept running as root"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("refusing to serve as root"), "{stderr}");
    assert!(stderr.contains("run_as"), "{stderr}");
    // Refused before anything was made.
    assert!(!dir.path().join("ferry-data").exists());

    // Told explicitly, in the file, it serves.
    std::fs::write(dir.path().join("ferry.toml"), "allow_root = true\n").unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "-c", "ferry.toml", "--listen", "127.0.0.1:0"])
        .args(["--tls", "off"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = lines_of(child.stdout.take().unwrap());
    let _child = Killed(child);
    until(&stdout, "listening on ftp://");
}

/// One FTP reply (multi-line replies whole); its last line.
fn reply(r: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    if line.as_bytes().get(3) == Some(&b'-') {
        let end = format!("{} ", &line[..3]);
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            if line.starts_with(&end) {
                break;
            }
        }
    }
    line
}

fn command(r: &mut BufReader<TcpStream>, line: &str) -> String {
    r.get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .unwrap();
    reply(r)
}

/// Log in and upload `name` holding `bytes` through EPSV.
fn upload(addr: SocketAddr, user: &str, password: &str, name: &str, bytes: &[u8]) {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut c = BufReader::new(s);
    assert!(reply(&mut c).starts_with("220"));
    assert!(command(&mut c, &format!("USER {user}")).starts_with("331"));
    let pass = command(&mut c, &format!("PASS {password}"));
    assert!(pass.starts_with("230"), "{pass}");
    assert!(command(&mut c, "TYPE I").starts_with("200"));
    let epsv = command(&mut c, "EPSV");
    let port: u16 = epsv
        .split("|||")
        .nth(1)
        .and_then(|p| p.split('|').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{epsv}"));
    let mut data =
        TcpStream::connect_timeout(&SocketAddr::new(addr.ip(), port), Duration::from_secs(10))
            .unwrap();
    assert!(command(&mut c, &format!("STOR {name}")).starts_with("150"));
    data.write_all(bytes).unwrap();
    drop(data);
    let done = reply(&mut c);
    assert!(done.starts_with("226"), "{done}");
    let _ = command(&mut c, "QUIT");
}

/// `Key:` fields of every thread of `pid`.
fn thread_status(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .collect()
}

fn field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in {status}"))
}

#[test]
fn run_as_serves_as_that_account_with_no_privilege_and_confined() {
    if !is_root() {
        eprintln!(
            "SKIPPED run_as_serves_as_that_account_with_no_privilege_and_confined: needs root"
        );
        return;
    }
    let (uid, gid) = nobody();
    let dir = tempfile::tempdir().unwrap();
    // The account must reach its home through the temporary directory.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::os::unix::fs::chown(&root, Some(uid), Some(gid)).unwrap();
    // Readable by anyone, so only Landlock can keep it shut.
    let outside = dir.path().join("outside.txt");
    std::fs::write(&outside, b"not served").unwrap();
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).unwrap();

    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--tls", "off"])
        .args(["--user", "alice", "--run-as", "nobody", "--root"])
        .arg(&root)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("FERRY_PASSWORD", "alice-pw")
        .env("FERRY_TEST_CONFINEMENT_PROBE", &outside)
        .env_remove("RUST_LOG")
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stdout = lines_of(child.stdout.take().unwrap());
    let stderr = lines_of(child.stderr.take().unwrap());
    let _child = Killed(child);
    let listening = until(&stdout, "listening on ftp://").pop().unwrap();
    let addr: SocketAddr = listening
        .trim_start_matches("ferry: listening on ftp://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let log = until(&stderr, "confinement probe");
    let landlock = !log.iter().any(|l| l.contains("lacks Landlock"));
    let probe = log.last().unwrap();
    if landlock {
        assert!(
            probe.ends_with("refused: permission denied"),
            "a file outside the roots opened: {log:#?}"
        );
    } else {
        eprintln!("SKIPPED the Landlock part: this kernel lacks Landlock ({probe})");
    }

    // Serving still works, as the account: the upload is nobody's. A login starts the
    // password-hashing threads, which must be as confined as the rest.
    upload(addr, "alice", "alice-pw", "up.bin", b"uploaded as nobody");
    let meta = std::fs::metadata(root.join("up.bin")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (uid, gid));

    let threads = thread_status(pid);
    assert!(threads.len() > 1, "{threads:#?}");
    for status in &threads {
        let ids = format!("{uid}\t{uid}\t{uid}\t{uid}");
        assert_eq!(field(status, "Uid:"), ids, "{status}");
        let gids = format!("{gid}\t{gid}\t{gid}\t{gid}");
        assert_eq!(field(status, "Gid:"), gids, "{status}");
        assert_eq!(field(status, "Groups:"), "", "{status}");
        for caps in ["CapEff:", "CapPrm:", "CapInh:", "CapAmb:"] {
            assert_eq!(field(status, caps), "0000000000000000", "{caps} {status}");
        }
        assert_eq!(field(status, "NoNewPrivs:"), "1", "{status}");
        assert_eq!(field(status, "Seccomp:"), "2", "{status}");
    }
}

#[test]
fn check_config_names_an_unknown_run_as_account() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ferry.toml");
    std::fs::write(&file, "run_as = \"ferry-no-such-user\"\n").unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no such user 'ferry-no-such-user'"),
        "{stderr}"
    );
    std::fs::write(&file, "run_as = \"nobody\"\n").unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The embedded default (no configuration, no listen address) is the one run that serves as
/// root when started as root, loopback only, with a warning: `ferry serve` on a fresh machine.
#[test]
fn the_embedded_default_serves_as_root_with_a_warning() {
    if !is_root() {
        eprintln!("SKIPPED the_embedded_default_serves_as_root_with_a_warning: needs root");
        return;
    }
    for port in [2121, 2222] {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "this test needs 127.0.0.1:{port}, the default ports, free"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Killed(
        Command::new(BIN)
            .arg("serve")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let listening = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.starts_with("ferry: listening on ftp://"));
    let line = listening.expect("the default serves as root");
    assert!(line.contains("127.0.0.1:"), "{line}");
}
