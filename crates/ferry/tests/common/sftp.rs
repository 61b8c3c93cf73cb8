//! Ferry's SFTP server (`ferry-sftpd`) on its own thread and runtime, [`USER`](super::USER)
//! with all permissions on a fresh root, and the `known_hosts` line that trusts it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry_auth::{Authenticator, UserSpec};
use ferry_sftpd::{SftpConfig, SftpServer, local_storage};

use super::{Background, USER, hash};

/// A running SFTP server; stops when dropped.
pub struct SftpSrv {
    pub addr: SocketAddr,
    pub root: tempfile::TempDir,
    _state: tempfile::TempDir,
    /// `SHA256:...` of the host key.
    pub fingerprint: String,
    /// `ssh-ed25519 AAAA...`.
    pub key_line: String,
    _running: Background,
}

impl SftpSrv {
    /// A server on `listen` (`127.0.0.1:0`, `[::1]:0`) taking `password` for [`USER`].
    pub fn start(listen: &str, password: &str) -> SftpSrv {
        let root = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let auth = Authenticator::new(vec![UserSpec {
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
        }])
        .unwrap();
        let mut config = SftpConfig::new(state.path());
        config.auth_rejection_time = Duration::from_millis(10);
        let server = SftpServer::new(config, Arc::new(auth), local_storage()).unwrap();
        let fingerprint = server.fingerprints()[0].clone();
        let key = ferry_sftpd::hostkey::load_or_create(state.path()).unwrap();
        let key_line = key.public_key().to_openssh().unwrap();
        let listen = listen.to_string();
        let (addr, running) = Background::start(|ready, stop| async move {
            let listener = tokio::net::TcpListener::bind(&listen).await.unwrap();
            ready.send(listener.local_addr().unwrap()).unwrap();
            let _ = server
                .serve(listener, async {
                    let _ = stop.await;
                })
                .await;
        });
        SftpSrv {
            addr,
            root,
            _state: state,
            fingerprint,
            key_line,
            _running: running,
        }
    }

    /// `sftp://alice@HOST:PORT/path` (`path` without a leading `/` is under the root).
    pub fn url(&self, path: &str) -> String {
        let host = match self.addr {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        };
        format!(
            "sftp://{USER}@{host}:{}/{}",
            self.addr.port(),
            path.trim_start_matches('/')
        )
    }

    /// The name the client looks the host up under: `[ip]:port`.
    pub fn known_name(&self) -> String {
        format!("[{}]:{}", self.addr.ip(), self.addr.port())
    }

    /// Write `HOME/.ssh/known_hosts` trusting this server.
    pub fn trust_in(&self, home: &Path) {
        let dir = home.join(".ssh");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("known_hosts"),
            format!("{} {}\n", self.known_name(), self.key_line),
        )
        .unwrap();
    }

    /// A file under the user's root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }
}
