//! Test harness: the SFTP server on a loopback port 0 with one user and a temporary root, a raw
//! SFTP client on russh's SSH client, and the checks for external tools.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ferry_auth::{Authenticator, UserSpec};
use ferry_sftp_proto::{
    Attrs, ClientMessage, Handle, OpenFlags, Request, Response, ServerMessage, StatusCode,
    split_packet,
};
use ferry_sftpd::{SftpConfig, SftpServer, StorageFactory, hostkey, local_storage};
use russh::ChannelMsg;
use russh::client::{self, Msg};
use russh::keys::PublicKeyOrCertificate;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const USER: &str = "alice";
pub const PASSWORD: &str = "correct horse";
/// Upper bound for one client run or one wait: a hang becomes a failure.
pub const WAIT: Duration = Duration::from_secs(60);

fn hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| ferry_auth::hash_password(PASSWORD))
}

/// Host keys made once per test binary and copied into each server's state directory (an RSA
/// key takes a while to make).
fn host_keys() -> &'static Path {
    static KEYS: OnceLock<tempfile::TempDir> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        hostkey::load_or_create_all(dir.path()).unwrap();
        dir
    })
    .path()
}

/// How a test server is set up.
pub struct Setup {
    /// The user's password (`None`: keys only).
    pub password: Option<&'static str>,
    /// The user's `authorized_keys` lines.
    pub keys: Vec<String>,
    pub permissions: Vec<String>,
    pub listen: &'static str,
    /// A second address served by the same server (another client address for the throttle).
    pub also_listen: Option<&'static str>,
    /// The user's `max_sessions`.
    pub max_sessions: Option<usize>,
    /// The user's `allowed_networks`.
    pub allowed_networks: Vec<String>,
    /// The user's `upload_rate` and `download_rate`.
    pub upload_rate: Option<String>,
    pub download_rate: Option<String>,
    /// The user's `quota_bytes` and `quota_files`.
    pub quota_bytes: Option<u64>,
    pub quota_files: Option<u64>,
    /// Storage other than the local root.
    pub storage: Option<StorageFactory>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            password: Some(PASSWORD),
            keys: Vec::new(),
            permissions: vec!["all".into()],
            listen: "127.0.0.1:0",
            also_listen: None,
            max_sessions: None,
            allowed_networks: Vec::new(),
            upload_rate: None,
            download_rate: None,
            quota_bytes: None,
            quota_files: None,
            storage: None,
        }
    }
}

pub struct Harness {
    pub addr: SocketAddr,
    /// The server's counters.
    pub metrics: Arc<ferry_core::Metrics>,
    /// Where `Setup::also_listen` is served.
    pub also_addr: Option<SocketAddr>,
    pub root: tempfile::TempDir,
    _state: tempfile::TempDir,
    pub fingerprints: Vec<String>,
    pub fingerprint: String,
    stop: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
}

impl Harness {
    pub async fn start() -> Harness {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut SftpConfig)) -> Harness {
        Self::setup(Setup::default(), tweak).await
    }

    pub async fn setup(setup: Setup, tweak: impl FnOnce(&mut SftpConfig)) -> Harness {
        let root = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        for file in [hostkey::ED25519_FILE, hostkey::RSA_FILE] {
            std::fs::copy(host_keys().join(file), state.path().join(file)).unwrap();
        }
        let auth = Authenticator::new(vec![UserSpec {
            name: USER.into(),
            password_hash: setup.password.map(|_| hash().to_string()),
            authorized_keys: setup.keys,
            authorized_keys_file: None,
            home: root.path().to_path_buf(),
            permissions: setup.permissions,
            max_sessions: setup.max_sessions,
            allowed_networks: setup.allowed_networks,
            upload_rate: setup.upload_rate,
            download_rate: setup.download_rate,
            quota_bytes: setup.quota_bytes.map(ferry_auth::SizeValue::Bytes),
            quota_files: setup.quota_files,
        }])
        .unwrap();
        let mut config = SftpConfig::new(state.path());
        config.auth_rejection_time = Duration::from_millis(10);
        tweak(&mut config);
        let storage = setup.storage.unwrap_or_else(local_storage);
        let server = SftpServer::new(config, Arc::new(auth), storage).unwrap();
        let fingerprints = server.fingerprints().to_vec();
        let metrics = Arc::clone(&server.context().metrics);
        let listener = TcpListener::bind(setup.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let also = match setup.also_listen {
            Some(a) => Some(TcpListener::bind(a).await.unwrap()),
            None => None,
        };
        let also_addr = also.as_ref().map(|l| l.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(async move {
            let (tell, told) = tokio::sync::watch::channel(false);
            let stop = async move {
                let _ = stopped.await;
                let _ = tell.send(true);
            };
            let also_served = async {
                if let Some(l) = also {
                    let mut told = told;
                    let stop = async move {
                        let _ = told.wait_for(|stop| *stop).await;
                    };
                    server.serve(l, stop).await.unwrap();
                }
            };
            let (served, ()) = tokio::join!(server.serve(listener, stop), also_served);
            served.unwrap();
        });
        Harness {
            addr,
            metrics,
            also_addr,
            root,
            _state: state,
            fingerprint: fingerprints[0].clone(),
            fingerprints,
            stop: Some(stop),
            served: Some(served),
        }
    }

    /// Tell the server to shut down.
    pub fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Whether `serve` has returned within `wait`.
    pub async fn served_within(&mut self, wait: Duration) -> bool {
        let served = self.served.as_mut().expect("already waited for");
        match tokio::time::timeout(wait, served).await {
            Ok(joined) => {
                joined.unwrap();
                self.served = None;
                true
            }
            Err(_) => false,
        }
    }

    /// OpenSSH client options for this server: no host key checks, no agent, nothing from
    /// `~/.ssh`, AES-128-GCM; `auth` names the methods to try.
    pub fn openssh_options(&self, auth: &str) -> Vec<String> {
        let mut options: Vec<String> = [
            "-F",
            "/dev/null",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "IdentityAgent=none",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "LogLevel=ERROR",
            // The cipher OpenSSH users pick for speed (not in russh's default offer).
            "-o",
            "Ciphers=aes128-gcm@openssh.com",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        options.extend(["-o".to_string(), format!("PreferredAuthentications={auth}")]);
        if auth != "publickey" {
            options.extend(["-o".into(), "PubkeyAuthentication=no".into()]);
            // `sftp -b` turns batch mode on, which forbids password prompts; the first value
            // given wins, so this lets sshpass answer.
            options.extend(["-o".into(), "BatchMode=no".into()]);
        }
        options
    }

    /// Password options (as before keys existed).
    pub fn ssh_options(&self) -> Vec<String> {
        self.openssh_options("password")
    }

    /// `user@host` for OpenSSH, with IPv6 in brackets.
    pub fn target(&self) -> String {
        match self.addr {
            SocketAddr::V6(a) => format!("{USER}@[{}]", a.ip()),
            SocketAddr::V4(a) => format!("{USER}@{}", a.ip()),
        }
    }

    /// Run `sftp -b batch` in `local` with a password through `sshpass`.
    pub async fn sftp(&self, password: &str, batch: &str, local: &Path) -> Output {
        self.sftp_with(password, "password", &[], batch, local)
            .await
    }

    /// Run `sftp -b batch` in `local`: with `password` through `sshpass` (methods `auth`), or
    /// with the identity files in `extra` (`-i FILE`) when `auth` is `publickey`.
    pub async fn sftp_with(
        &self,
        password: &str,
        auth: &str,
        extra: &[&str],
        batch: &str,
        local: &Path,
    ) -> Output {
        let batch_file = local.join(".batch");
        std::fs::write(&batch_file, batch).unwrap();
        let mut args: Vec<String> = self.openssh_options(auth);
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend([
            "-b".to_string(),
            batch_file.display().to_string(),
            "-P".to_string(),
            self.addr.port().to_string(),
            self.target(),
        ]);
        if auth == "publickey" {
            run("sftp", &args, local).await
        } else {
            let mut with_pass = vec!["-p".to_string(), password.to_string(), "sftp".to_string()];
            with_pass.extend(args);
            run("sshpass", &with_pass, local).await
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shut_down();
    }
}

pub async fn run(program: &str, args: &[String], dir: &Path) -> Output {
    let child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{program} did not finish within {WAIT:?}"))
        .unwrap()
}

/// A command's status and output, for failure messages.
pub fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Whether every tool is on PATH. If not: a note and `false` (skip), or a panic when
/// `FERRY_REQUIRE_INTEROP=1`.
pub fn have_tools(test: &str, tools: &[&str]) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let on_path = |program: &str| {
        std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| {
                std::fs::metadata(dir.join(program))
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
        })
    };
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !on_path(t)).collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("FERRY_REQUIRE_INTEROP").as_deref() == Ok("1") {
        panic!("{test}: {missing:?} not installed and FERRY_REQUIRE_INTEROP=1");
    }
    eprintln!(
        "note: skipping {test}: {missing:?} not installed (FERRY_REQUIRE_INTEROP=1 makes this a failure)"
    );
    false
}

/// Whether this machine can use `[::1]`; if not, a note (IPv6 is never required).
pub fn have_ipv6(test: &str) -> bool {
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        return true;
    }
    eprintln!("note: skipping {test}: cannot bind [::1] on this machine");
    false
}

/// Bytes that differ at every offset, so a block written at the wrong place shows.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ (i % 251) as u8)
        .collect()
}

/// An SSH client that trusts any host key.
pub struct TrustAll;

impl client::Handler for TrustAll {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// An SSH connection to `h`, not logged in.
pub async fn ssh(h: &Harness) -> client::Handle<TrustAll> {
    let config = Arc::new(client::Config::default());
    client::connect(config, h.addr, TrustAll).await.unwrap()
}

/// A raw SFTP client on one channel.
pub struct Sftp {
    tx: russh::ChannelWriteHalf<Msg>,
    rx: russh::ChannelReadHalf,
    buf: BytesMut,
    pub ssh: client::Handle<TrustAll>,
}

impl Sftp {
    /// Log in with the password, start the subsystem; INIT/VERSION only if `init`.
    pub async fn connect(h: &Harness, init: bool) -> Sftp {
        let mut ssh = ssh(h).await;
        assert!(
            ssh.authenticate_password(USER, PASSWORD)
                .await
                .unwrap()
                .success()
        );
        Self::on(ssh, init).await
    }

    /// Start the subsystem on a logged-in connection.
    pub async fn on(ssh: client::Handle<TrustAll>, init: bool) -> Sftp {
        let channel = ssh.channel_open_session().await.unwrap();
        channel.request_subsystem(true, "sftp").await.unwrap();
        let (rx, tx) = channel.split();
        let mut s = Sftp {
            tx,
            rx,
            buf: BytesMut::new(),
            ssh,
        };
        if init {
            s.send(ClientMessage::Init {
                version: 3,
                extensions: vec![],
            })
            .await;
            match s.recv().await {
                Some(ServerMessage::Version { version: 3, .. }) => {}
                other => panic!("expected VERSION 3, got {other:?}"),
            }
        }
        s
    }

    pub async fn send(&self, m: ClientMessage) {
        let mut out = BytesMut::new();
        m.encode(&mut out);
        self.send_raw(out.freeze()).await;
    }

    pub async fn send_raw(&self, bytes: Bytes) {
        self.tx.data_bytes(bytes).await.unwrap();
    }

    pub async fn request(&self, id: u32, request: Request) {
        self.send(ClientMessage::Request { id, request }).await;
    }

    /// The next packet from the server; `None` once the channel has ended.
    pub async fn recv(&mut self) -> Option<ServerMessage> {
        loop {
            if let Some(p) = split_packet(&mut self.buf, 1 << 20).unwrap() {
                return Some(ServerMessage::decode(p).unwrap());
            }
            let msg = tokio::time::timeout(WAIT, self.rx.wait())
                .await
                .expect("server silent");
            match msg {
                Some(ChannelMsg::Data { data }) => self.buf.extend_from_slice(&data),
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => return None,
                Some(_) => {}
            }
        }
    }

    pub async fn response(&mut self) -> (u32, Response) {
        match self.recv().await {
            Some(ServerMessage::Response { id, response }) => (id, response),
            other => panic!("expected a response, got {other:?}"),
        }
    }

    pub async fn call(&mut self, id: u32, request: Request) -> Response {
        self.request(id, request).await;
        let (got, response) = self.response().await;
        assert_eq!(got, id);
        response
    }

    /// OPEN, expecting a handle.
    pub async fn open(&mut self, id: u32, path: &str, flags: u32) -> Handle {
        match self.try_open(id, path, flags).await {
            Response::Handle(h) => h,
            other => panic!("OPEN {path}: {other:?}"),
        }
    }

    /// OPEN, whatever the answer.
    pub async fn try_open(&mut self, id: u32, path: &str, flags: u32) -> Response {
        let path = Bytes::copy_from_slice(path.as_bytes());
        self.call(
            id,
            Request::Open {
                path,
                flags: OpenFlags(flags),
                attrs: Attrs::default(),
            },
        )
        .await
    }

    /// The status code of a request expected to answer with a status.
    pub async fn status(&mut self, id: u32, request: Request) -> StatusCode {
        status_code(&self.call(id, request).await)
    }
}

pub fn status_code(r: &Response) -> StatusCode {
    match r {
        Response::Status(s) => s.code,
        other => panic!("expected a status, got {other:?}"),
    }
}

/// The bytes of a path, for requests.
pub fn path(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}
