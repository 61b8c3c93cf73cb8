//! A real Ferry server on a loopback port 0, for client tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ferry_auth::{Authenticator, UserSpec};
use ferry_ftpd::{Server, ServerConfig, local_storage};
use tokio::sync::oneshot;

pub const USER: &str = "alice";
pub const PASSWORD: &str = "correct horse";

/// Upper bound for any single wait in tests.
pub const WAIT: Duration = Duration::from_secs(30);

fn hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| ferry_auth::hash_password(PASSWORD))
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub root: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(listen: SocketAddr) -> TestServer {
        Self::start_with(listen, |_| {}).await
    }

    pub async fn start_with(
        listen: SocketAddr,
        tweak: impl FnOnce(&mut ServerConfig),
    ) -> TestServer {
        let mut config = ServerConfig {
            listen: vec![listen],
            login_failure_delay: Duration::from_millis(10),
            data_connect_timeout: Duration::from_secs(5),
            ..ServerConfig::default()
        };
        tweak(&mut config);
        let root = tempfile::tempdir().unwrap();
        let users = vec![UserSpec {
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
        }];
        let auth = Authenticator::new(users).unwrap();
        let server = Server::bind(config, Arc::new(auth), local_storage()).unwrap();
        let addr = server.local_addrs()[0];
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = server
                .run(async {
                    let _ = rx.await;
                })
                .await;
        });
        TestServer {
            addr,
            root,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn path(&self, rel: &str) -> std::path::PathBuf {
        self.root.path().join(rel)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
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
