//! Test harness: a real server on loopback port 0 and a raw control-connection client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ferry_auth::{Authenticator, UserSpec};
use ferry_ftpd::{Server, ServerConfig, local_storage};
use ferry_proto::{Reply, ReplyDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

pub mod soup;

pub const USER: &str = "alice";
pub const PASSWORD: &str = "correct horse";
pub const READER: &str = "reader";
/// A user whose own policy is `tls = "required"` (no effect on servers without TLS).
pub const SECURE: &str = "secure";

/// Upper bound for any single wait in tests: a hang becomes a failure, not a stuck CI.
pub const WAIT: Duration = Duration::from_secs(20);

fn hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| ferry_auth::hash_password(PASSWORD))
}

pub struct TestServer {
    pub addrs: Vec<SocketAddr>,
    pub implicit_addrs: Vec<SocketAddr>,
    pub root: tempfile::TempDir,
    pub anon_root: tempfile::TempDir,
    /// This server's own transfer counters.
    pub counters: Arc<ferry_ftpd::TransferCounters>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
        Self::start_with_users(tweak, |_| {}).await
    }

    /// [`TestServer::start_with`], the users' entries changed by `users` first.
    pub async fn start_with_users(
        tweak: impl FnOnce(&mut ServerConfig),
        edit_users: impl FnOnce(&mut Vec<UserSpec>),
    ) -> TestServer {
        let mut config = ServerConfig {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            login_failure_delay: Duration::from_millis(10),
            data_connect_timeout: Duration::from_secs(5),
            ..ServerConfig::default()
        };
        let root = tempfile::tempdir().unwrap();
        let anon_root = tempfile::tempdir().unwrap();
        config.anonymous_home = Some(anon_root.path().to_path_buf());
        config
            .user_tls
            .insert(SECURE.into(), ferry_ftpd::TlsPolicy::Required);
        tweak(&mut config);
        let reader_root: PathBuf = root.path().to_path_buf();
        let mut users = vec![
            UserSpec {
                name: USER.into(),
                password_hash: Some(hash().to_string()),
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
            },
            UserSpec {
                name: READER.into(),
                password_hash: Some(hash().to_string()),
                authorized_keys: Vec::new(),
                authorized_keys_file: None,
                home: reader_root,
                permissions: vec!["list".into(), "read".into()],
                max_sessions: None,
                allowed_networks: Vec::new(),
                upload_rate: None,
                download_rate: None,
                quota_bytes: None,
                quota_files: None,
            },
            UserSpec {
                name: SECURE.into(),
                password_hash: Some(hash().to_string()),
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
            },
        ];
        edit_users(&mut users);
        let auth = Authenticator::new(users).unwrap();
        let server = Server::bind(config, Arc::new(auth), local_storage()).unwrap();
        let addrs = server.local_addrs();
        let implicit_addrs = server.implicit_tls_addrs();
        let counters = server.counters();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        TestServer {
            addrs,
            implicit_addrs,
            root,
            anon_root,
            counters,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    pub async fn connect(&self) -> Ctrl {
        Ctrl::connect(self.addr()).await
    }

    pub async fn login(&self) -> Ctrl {
        let mut c = self.connect().await;
        c.login(USER, PASSWORD).await;
        c
    }

    /// Stop the server and wait for every session to end.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("shutdown hung")
                .unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A control connection speaking raw FTP.
pub struct Ctrl {
    pub stream: TcpStream,
    decoder: ReplyDecoder,
    pub peer: SocketAddr,
}

impl Ctrl {
    pub async fn connect(addr: SocketAddr) -> Ctrl {
        Ctrl::try_connect(addr)
            .await
            .unwrap_or_else(|greeting| panic!("{greeting:?}"))
    }

    /// The control connection `stream` (already connected to `peer`), once its greeting is
    /// `220`; else the greeting.
    pub async fn greeted(stream: TcpStream, peer: SocketAddr) -> Result<Ctrl, Reply> {
        let mut c = Ctrl {
            stream,
            decoder: ReplyDecoder::default(),
            peer,
        };
        let greeting = c.read_reply().await;
        if greeting.code == 220 {
            Ok(c)
        } else {
            Err(greeting)
        }
    }

    /// Connect and read the greeting: the connection if it is `220`, else the greeting.
    pub async fn try_connect(addr: SocketAddr) -> Result<Ctrl, Reply> {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .unwrap()
            .unwrap();
        let mut c = Ctrl {
            stream,
            decoder: ReplyDecoder::default(),
            peer: addr,
        };
        let greeting = c.read_reply().await;
        if greeting.code == 220 {
            Ok(c)
        } else {
            Err(greeting)
        }
    }

    /// The bytes the running transfer has moved so far, as `STAT` tells (`None`: none runs).
    pub async fn transfer_progress(&mut self) -> Option<u64> {
        let r = self.expect("STAT", 211).await;
        progress_in(&r)
    }

    pub async fn read_reply(&mut self) -> Reply {
        let fut = async {
            loop {
                if let Some(r) = self.decoder.next_reply().unwrap() {
                    return r;
                }
                let mut buf = [0u8; 4096];
                let n = self.stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "control connection closed while waiting for a reply");
                self.decoder.extend(&buf[..n]);
            }
        };
        tokio::time::timeout(WAIT, fut)
            .await
            .expect("no reply in time")
    }

    /// Read until EOF; `true` if the server closed the connection.
    pub async fn closed(&mut self) -> bool {
        let mut buf = [0u8; 1024];
        matches!(
            tokio::time::timeout(WAIT, self.stream.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    pub async fn cmd(&mut self, line: &str) -> Reply {
        self.send_raw(format!("{line}\r\n").as_bytes()).await;
        self.read_reply().await
    }

    pub async fn expect(&mut self, line: &str, code: u16) -> Reply {
        let r = self.cmd(line).await;
        assert_eq!(r.code, code, "{line} -> {r:?}");
        r
    }

    pub async fn login(&mut self, user: &str, pass: &str) {
        self.expect(&format!("USER {user}"), 331).await;
        self.expect(&format!("PASS {pass}"), 230).await;
    }

    /// `PASV` and the address to connect to.
    pub async fn pasv(&mut self) -> SocketAddr {
        let r = self.expect("PASV", 227).await;
        SocketAddr::V4(ferry_proto::hostport::parse_pasv_reply_text(&r.text()).unwrap())
    }

    /// `EPSV` and the address to connect to (control peer's IP).
    pub async fn epsv(&mut self) -> SocketAddr {
        let r = self.expect("EPSV", 229).await;
        let port = ferry_proto::hostport::parse_epsv_reply_text(&r.text()).unwrap();
        SocketAddr::new(self.peer.ip(), port)
    }

    /// Run a download-like command over passive mode and return the bytes and the final reply.
    pub async fn retr_passive(&mut self, command: &str) -> (Vec<u8>, Reply) {
        let addr = self.epsv().await;
        self.retr_at(addr, command).await
    }

    /// Download with `command` through the passive address `addr` the server gave; returns
    /// the bytes and the final reply.
    pub async fn retr_at(&mut self, addr: SocketAddr, command: &str) -> (Vec<u8>, Reply) {
        let mut data = TcpStream::connect(addr).await.unwrap();
        let prelim = self.cmd(command).await;
        assert_eq!(prelim.code, 150, "{command} -> {prelim:?}");
        let mut bytes = Vec::new();
        tokio::time::timeout(WAIT, data.read_to_end(&mut bytes))
            .await
            .unwrap()
            .unwrap();
        let done = self.read_reply().await;
        (bytes, done)
    }

    /// Upload `bytes` with `command` over passive mode; returns the final reply.
    pub async fn stor_passive(&mut self, command: &str, bytes: &[u8]) -> Reply {
        let mut data = self.start_passive(command).await;
        data.write_all(bytes).await.unwrap();
        data.shutdown().await.unwrap();
        drop(data);
        self.read_reply().await
    }

    /// `EPSV`, connect, send `command` and expect `150`: the data connection of a transfer
    /// that has begun.
    pub async fn start_passive(&mut self, command: &str) -> TcpStream {
        let addr = self.epsv().await;
        let data = TcpStream::connect(addr).await.unwrap();
        let prelim = self.cmd(command).await;
        assert_eq!(prelim.code, 150, "{command} -> {prelim:?}");
        data
    }

    /// Open an active-mode listener on `ip`, send PORT (IPv4) or EPRT, return the listener.
    pub async fn active(&mut self, ip: IpAddr, use_eprt: bool) -> TcpListener {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let line = match (addr, use_eprt) {
            (SocketAddr::V4(v4), false) => {
                format!("PORT {}", ferry_proto::hostport::format_port_arg(v4))
            }
            (a, _) => format!("EPRT {}", ferry_proto::hostport::format_eprt_arg(a)),
        };
        self.expect(&line, 200).await;
        listener
    }
}

/// The bytes moved so far by the transfer a `STAT` reply describes, if it describes one.
pub fn progress_in(stat: &Reply) -> Option<u64> {
    let text = stat.text();
    let before = text
        .split(" bytes so far")
        .next()
        .filter(|b| b.len() < text.len())?;
    before.rsplit(' ').next()?.parse().ok()
}

/// A bounded wait for a condition that is polled: [`Deadline::tick`] pauses briefly between
/// checks, and fails the test once [`WAIT`] has passed.
pub struct Deadline {
    until: std::time::Instant,
    what: &'static str,
}

impl Deadline {
    /// Start waiting for `what` (named in the failure).
    pub fn new(what: &'static str) -> Deadline {
        Deadline {
            until: std::time::Instant::now() + WAIT,
            what,
        }
    }

    /// Pause before the next check; panics if the deadline has passed.
    pub async fn tick(&self) {
        assert!(
            std::time::Instant::now() < self.until,
            "waited {WAIT:?} in vain for {}",
            self.what
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The two replies an `ABOR` of a running transfer gets: `426` for the transfer, then `226`
/// for the `ABOR` itself.
pub fn assert_aborted(first: &Reply, second: &Reply) {
    assert_eq!(
        (first.code, second.code),
        (426, 226),
        "{first:?} {second:?}"
    );
}

pub async fn accept(listener: &TcpListener) -> TcpStream {
    tokio::time::timeout(WAIT, listener.accept())
        .await
        .expect("no data connection")
        .unwrap()
        .0
}

/// Deterministic pseudo-random content.
pub fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
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

/// `true` when the machine can bind ::1.
pub fn ipv6_available() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
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

/// A base port for `span` consecutive ports above the kernel's ephemeral range, so no
/// outgoing connection of a busy machine holds them; spread by process id for parallel runs,
/// and each call in a process gets the next span (tests of one binary run in parallel).
pub fn quiet_ports(span: u16) -> u16 {
    static CALLS: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let high: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|h| h.parse().ok()))
        .unwrap_or(60999);
    // Above `ferry serve`'s default passive range (61000-63999) too.
    let first = high.saturating_add(1).max(64000);
    let slots = ((65535 - first) / span).max(1);
    let slot = (std::process::id() as u16).wrapping_add(call) % slots;
    first + slot * span
}
