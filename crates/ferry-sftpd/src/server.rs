//! The listener: accepts TCP connections, runs SSH on each (russh) with the session handler.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ferry_auth::{Account, Authenticator};
use ferry_vfs::{LocalFs, Storage};
use russh::keys::PrivateKey;
use russh::{MethodKind, MethodSet};
use tokio::net::TcpListener;

use crate::hostkey;
use crate::sftp::SftpLimits;
use crate::ssh::Connection;

/// Makes the storage a logged-in user's session serves.
pub type StorageFactory =
    Arc<dyn Fn(&Account) -> std::io::Result<Arc<dyn Storage>> + Send + Sync + 'static>;

/// Each account's root directory on the local disk, jailed ([`LocalFs`]).
pub fn local_storage() -> StorageFactory {
    Arc::new(|account: &Account| {
        let fs: Arc<dyn Storage> = Arc::new(LocalFs::new(&account.root)?);
        Ok(fs)
    })
}

/// Settings of the SFTP server.
#[derive(Debug, Clone)]
pub struct SftpConfig {
    /// Where the host key is kept (made on first start).
    pub state_dir: PathBuf,
    /// Per-session SFTP limits.
    pub limits: SftpLimits,
    /// SSH channel window the server grants: large, so a client's writes are not held to a
    /// round trip per window.
    pub window_size: u32,
    /// Largest SSH packet the server accepts on a channel.
    pub max_ssh_packet: u32,
    /// Time from connect to a successful login before the connection is closed.
    pub login_grace: Duration,
    /// Connections with no traffic at all for this long are closed by the SSH layer.
    pub idle_timeout: Duration,
    /// Session channels one connection may open.
    pub max_channels: usize,
    /// Authentication attempts per connection.
    pub max_auth_attempts: usize,
    /// Minimum time a rejected authentication takes (hides what was wrong).
    pub auth_rejection_time: Duration,
}

impl SftpConfig {
    /// Defaults, with the host key in `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        SftpConfig {
            state_dir: state_dir.into(),
            limits: SftpLimits::default(),
            window_size: 8 * 1024 * 1024,
            max_ssh_packet: 64 * 1024,
            login_grace: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            max_channels: 8,
            max_auth_attempts: 6,
            auth_rejection_time: Duration::from_secs(1),
        }
    }
}

/// What every connection shares.
pub(crate) struct Inner {
    pub(crate) auth: Arc<Authenticator>,
    pub(crate) storage: StorageFactory,
    pub(crate) config: SftpConfig,
}

/// An SFTP server: host key loaded, ready to serve listeners.
pub struct SftpServer {
    inner: Arc<Inner>,
    ssh: Arc<russh::server::Config>,
    fingerprints: Vec<String>,
}

impl SftpServer {
    /// Load (or make) the host key and build the SSH configuration.
    pub fn new(
        config: SftpConfig,
        auth: Arc<Authenticator>,
        storage: StorageFactory,
    ) -> std::io::Result<SftpServer> {
        let key = hostkey::load_or_create(&config.state_dir)?;
        let fingerprints = vec![hostkey::fingerprint(&key)];
        let ssh = ssh_config(&config, vec![key]);
        Ok(SftpServer {
            inner: Arc::new(Inner {
                auth,
                storage,
                config,
            }),
            ssh: Arc::new(ssh),
            fingerprints,
        })
    }

    /// Host key fingerprints in OpenSSH's `SHA256:...` form (what a client asks the user to
    /// confirm on first connection).
    pub fn fingerprints(&self) -> &[String] {
        &self.fingerprints
    }

    /// Accept connections on `listener` until `shutdown` completes; each connection runs in its
    /// own task (and keeps running after shutdown until its client leaves).
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of descriptors and the like: pause rather than spin.
                        tracing::warn!("sftp: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!("sftp: TCP_NODELAY: {e}");
            }
            let inner = Arc::clone(&self.inner);
            let ssh = Arc::clone(&self.ssh);
            tokio::spawn(async move {
                let authenticated = Arc::new(AtomicBool::new(false));
                let handler = Connection {
                    server: Arc::clone(&inner),
                    peer: Some(peer),
                    account: None,
                    channels: HashMap::new(),
                    opened: 0,
                    authenticated: Arc::clone(&authenticated),
                };
                let grace = inner.config.login_grace;
                let deadline = tokio::time::Instant::now() + grace;
                let session = tokio::time::timeout_at(
                    deadline,
                    russh::server::run_stream(ssh, stream, handler),
                )
                .await;
                let session = match session {
                    Ok(Ok(session)) => session,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, "ssh: handshake: {e}");
                        return;
                    }
                    Err(_) => return,
                };
                let handle = session.handle();
                tokio::pin!(session);
                tokio::select! {
                    ended = &mut session => {
                        if let Err(e) = ended {
                            tracing::debug!(%peer, "ssh: session ended: {e}");
                        }
                        return;
                    }
                    () = tokio::time::sleep_until(deadline) => {}
                }
                if !authenticated.load(Ordering::Acquire) {
                    tracing::info!(%peer, "ssh: no login within {grace:?}; closing");
                    let _ = handle
                        .disconnect(
                            russh::Disconnect::ByApplication,
                            "login grace time exceeded".to_string(),
                            "en".to_string(),
                        )
                        .await;
                    return;
                }
                if let Err(e) = session.await {
                    tracing::debug!(%peer, "ssh: session ended: {e}");
                }
            });
        }
    }
}

fn ssh_config(config: &SftpConfig, keys: Vec<PrivateKey>) -> russh::server::Config {
    russh::server::Config {
        server_id: russh::SshId::Standard(
            format!("SSH-2.0-Ferry_{}", env!("CARGO_PKG_VERSION")).into(),
        ),
        methods: MethodSet::from(&[MethodKind::Password][..]),
        auth_rejection_time: config.auth_rejection_time,
        // OpenSSH probes with `none` first; answering it at once is not an oracle.
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys,
        window_size: config.window_size,
        maximum_packet_size: config.max_ssh_packet,
        max_auth_attempts: config.max_auth_attempts,
        inactivity_timeout: Some(config.idle_timeout),
        nodelay: true,
        preferred: russh::Preferred {
            cipher: std::borrow::Cow::Borrowed(CIPHERS),
            ..russh::Preferred::DEFAULT
        },
        ..Default::default()
    }
}

/// russh's ciphers plus AES-128-GCM, which OpenSSH clients are often told to use (it is the
/// fastest on CPUs with AES instructions); the client's order decides.
const CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::CHACHA20_POLY1305,
    russh::cipher::AES_256_GCM,
    russh::cipher::AES_128_GCM,
    russh::cipher::AES_256_CTR,
    russh::cipher::AES_192_CTR,
    russh::cipher::AES_128_CTR,
];
