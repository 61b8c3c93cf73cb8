//! The harness shared by the client tests: Ferry's server in-process on a loopback port 0,
//! running the built `ferry` binary with a time limit, test files and their hashes.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

pub mod sftp;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ferry_auth::{Authenticator, UserSpec};
use ferry_ftpd::{Server, ServerConfig, local_storage};

pub const BIN: &str = env!("CARGO_BIN_EXE_ferry");
/// The user every in-process server has.
pub const USER: &str = "alice";

/// The argon2id hash of `password`, computed once per password (hashing is slow on purpose).
pub fn hash(password: &str) -> String {
    static HASHES: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    let mut hashes = HASHES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    hashes
        .entry(password.to_string())
        .or_insert_with(|| ferry_auth::hash_password(password))
        .clone()
}

/// A task on its own thread and tokio runtime; told to stop, and waited for, when dropped.
pub struct Background {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    /// Run `task` until it ends; it gets a sender for the one value this returns once it is
    /// ready (an address, say), and a receiver that fires when it should stop.
    pub fn start<T, F, Fut>(task: F) -> (T, Background)
    where
        T: Send + 'static,
        F: FnOnce(std::sync::mpsc::Sender<T>, tokio::sync::oneshot::Receiver<()>) -> Fut
            + Send
            + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(task(ready_tx, stop_rx));
        });
        let ready = ready_rx.recv_timeout(Duration::from_secs(60)).unwrap();
        (
            ready,
            Background {
                stop: Some(stop),
                thread: Some(thread),
            },
        )
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A Ferry server on its own thread and runtime, [`USER`] with all permissions on a fresh
/// temporary root; stops when dropped.
pub struct Srv {
    /// The (first) control listener.
    pub addr: SocketAddr,
    /// The first implicit-TLS listener, when the configuration has one.
    pub implicit: Option<SocketAddr>,
    pub root: tempfile::TempDir,
    _running: Background,
}

impl Srv {
    /// A server on `listen` with the test defaults (fast login failures, 5 s data connect
    /// timeout), after `configure` has changed what it wants.
    pub fn start_with(
        listen: &str,
        password: &str,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> Srv {
        let root = tempfile::tempdir().unwrap();
        let users = vec![UserSpec {
            name: USER.into(),
            password_hash: Some(hash(password)),
            authorized_keys: Vec::new(),
            authorized_keys_file: None,
            home: root.path().to_path_buf(),
            permissions: vec!["all".into()],
            max_sessions: None,
            allowed_networks: Vec::new(),
            upload_rate: None,
            download_rate: None,
            quota_bytes: None,
            quota_files: None,
        }];
        let auth = Arc::new(Authenticator::new(users).unwrap());
        let mut config = ServerConfig {
            listen: vec![listen.parse().unwrap()],
            login_failure_delay: Duration::from_millis(10),
            data_connect_timeout: Duration::from_secs(5),
            ..ServerConfig::default()
        };
        configure(&mut config);
        let ((addr, implicit), running) = Background::start(|ready, stop| async move {
            let server = Server::bind(config, auth, local_storage()).unwrap();
            ready
                .send((
                    server.local_addrs()[0],
                    server.implicit_tls_addrs().first().copied(),
                ))
                .unwrap();
            let _ = server
                .run(async {
                    let _ = stop.await;
                })
                .await;
        });
        Srv {
            addr,
            implicit,
            root,
            _running: running,
        }
    }

    /// An `ftp://` URL to the control listener.
    pub fn url(&self, path: &str) -> String {
        format!("ftp://{USER}@{}/{path}", self.addr)
    }

    /// An `ftpes://` URL (explicit TLS on the control listener).
    pub fn ftpes(&self, path: &str) -> String {
        format!("ftpes://{USER}@{}/{path}", self.addr)
    }

    /// An `ftps://` URL (implicit TLS).
    pub fn ftps(&self, path: &str) -> String {
        format!("ftps://{USER}@{}/{path}", self.implicit.unwrap())
    }

    /// A file under the user's root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }
}

/// What a finished process said.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// `ferry` in `dir`, with `dir` as HOME and `password` in FERRY_PASSWORD.
pub fn ferry_command(dir: &Path, password: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env("HOME", dir)
        .env("FERRY_PASSWORD", password);
    cmd
}

/// Run `cmd` with `stdin` as its input; killed (and the test failed) after `wait`.
pub fn run(cmd: &mut Command, stdin: &[u8], wait: Duration) -> Out {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // A process that exits without reading its input closes the pipe: not our failure.
    let _ = input.write_all(stdin);
    drop(input);
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
        if started.elapsed() > wait {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Out {
        code: status.code().unwrap_or(-1),
        stdout: t1.join().unwrap(),
        stderr: t2.join().unwrap(),
    }
}

/// `out`, after asserting that it exited with 0.
#[track_caller]
pub fn ok(out: Out) -> Out {
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    out
}

/// `len` pseudo-random bytes, the same for the same `seed`.
pub fn content(len: usize, seed: u64) -> Vec<u8> {
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

pub fn sha256(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).to_vec()
}

pub fn sha256_file(path: &Path) -> Vec<u8> {
    sha256(&std::fs::read(path).unwrap())
}

/// Fail the test unless this machine can bind `[::1]`. Every test that calls this has `ipv6` in
/// its name, so a machine without IPv6 loopback runs the others with `cargo test -- --skip ipv6`.
pub fn require_ipv6() {
    if let Err(e) = std::net::TcpListener::bind("[::1]:0") {
        panic!(
            "cannot bind [::1] ({e}): this test needs IPv6 loopback; \
             without it, run the others with `cargo test -- --skip ipv6`"
        );
    }
}

/// Relative paths and contents of every file under `dir` (directories as `name/`), sorted.
pub fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
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

/// Whether every one of `tools` is on the PATH; when one is not, the calling test skips (saying
/// so on stderr), or fails under `FERRY_REQUIRE_INTEROP=1`.
pub fn have(tools: &[&str]) -> bool {
    let missing: Vec<&&str> = tools
        .iter()
        .filter(|t| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var("FERRY_REQUIRE_INTEROP").as_deref() != Ok("1"),
        "{missing:?} not installed and FERRY_REQUIRE_INTEROP=1"
    );
    eprintln!("SKIP: {missing:?} not installed");
    false
}

/// OpenSSH's `sftp` logging in to `at` as `user` with `password` (through `sshpass`, host keys
/// not checked), running the commands of `batch` in `local`, within 120 s; `options` are more
/// `-o` settings. Its output, to be judged by the caller.
pub fn openssh_sftp(
    at: SocketAddr,
    (user, password): (&str, &str),
    batch: &str,
    local: &Path,
    options: &[&str],
) -> std::process::Output {
    let file = local.join(".batch");
    std::fs::write(&file, batch).unwrap();
    let mut cmd = Command::new("timeout");
    cmd.args([
        "-k",
        "5",
        "120",
        "sshpass",
        "-p",
        password,
        "sftp",
        "-F",
        "/dev/null",
    ]);
    for option in [
        "StrictHostKeyChecking=no",
        "UserKnownHostsFile=/dev/null",
        "LogLevel=ERROR",
        "PreferredAuthentications=password",
        "PubkeyAuthentication=no",
        "BatchMode=no",
    ]
    .iter()
    .chain(options)
    {
        cmd.args(["-o", option]);
    }
    cmd.arg("-b")
        .arg(&file)
        .args(["-P", &at.port().to_string()])
        .arg(format!("{user}@{}", at.ip()))
        .current_dir(local)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The FTP address a spawned `ferry serve` (stdout piped) announces on its first line; the
/// rest of its standard output is drained on a thread of its own.
pub fn announced_ftp_address(child: &mut std::process::Child) -> SocketAddr {
    use std::io::BufRead;
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    line.trim()
        .strip_prefix("ferry: listening on ftp://")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .trim_end_matches('/')
        .parse()
        .unwrap()
}
