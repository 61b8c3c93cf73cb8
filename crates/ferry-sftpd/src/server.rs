//! The listener: accepts TCP connections, runs SSH on each (russh) with the session handler.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use ferry_auth::Authenticator;
use ferry_core::{Protocol, ServerContext, SessionPermit, SharedLimits};
use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PrivateKey};
use russh::{MethodKind, MethodSet};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

use crate::hostkey;
use crate::sftp::SftpLimits;
use crate::ssh::{Connection, State};

pub use ferry_core::{StorageFactory, local_storage};

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
    /// Minimum time a refused password (or keyboard-interactive answer) takes. Key probes
    /// are answered at once: a client offers its keys in turn, and one not listed is no
    /// failed login.
    pub auth_rejection_time: Duration,
    /// Failed logins per client address within `failed_login_window` before that address is
    /// refused (0: no limit). Used by [`SftpServer::new`]; with
    /// [`SftpServer::new_in`] the context's limits apply.
    pub max_failed_logins_per_ip: u32,
    /// Failed logins per user name within the window after which guesses for it from
    /// addresses that have failed are slowed, never refused (0: no slowdown).
    pub max_failed_logins_per_user: u32,
    /// How long a failed login counts.
    pub failed_login_window: Duration,
    /// PROXY protocol: when enabled, every connection must come from one of these balancers
    /// with a header naming the client, who is then the connection's peer for everything.
    pub proxy: ferry_core::ProxyTrust,
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
            max_failed_logins_per_ip: 20,
            max_failed_logins_per_user: 0,
            failed_login_window: Duration::from_secs(300),
            proxy: ferry_core::ProxyTrust::default(),
        }
    }
}

/// What every connection shares.
pub(crate) struct Inner {
    /// Users, storage, login throttle and session registry, shared with the other protocols.
    pub(crate) context: Arc<ServerContext>,
    pub(crate) config: SftpConfig,
}

/// An SFTP server: host keys loaded, ready to serve listeners.
pub struct SftpServer {
    inner: Arc<Inner>,
    ssh: Arc<russh::server::Config>,
    fingerprints: Vec<String>,
    key_types: Vec<&'static str>,
}

/// The login methods worth offering: keys if any user has one, passwords (and the
/// keyboard-interactive prompt that carries one) if any user has one. A client is never sent
/// through key probes, nor asked for a password, that could not succeed for anyone. Computed
/// for each refusal (`none` included), from the users of the moment.
pub(crate) fn methods_for(auth: &Authenticator) -> MethodSet {
    let mut methods = Vec::new();
    if auth.any_key() {
        methods.push(MethodKind::PublicKey);
    }
    if auth.any_password() {
        methods.push(MethodKind::Password);
        methods.push(MethodKind::KeyboardInteractive);
    }
    MethodSet::from(&methods[..])
}

impl SftpServer {
    /// Load (or make) the host keys and build the SSH configuration, with a context of this
    /// server's own (the default session limits, its failed-login limits from `config`). See
    /// [`SftpServer::new_in`].
    pub fn new(
        config: SftpConfig,
        auth: Arc<Authenticator>,
        storage: StorageFactory,
    ) -> std::io::Result<SftpServer> {
        let limits = SharedLimits {
            max_failed_logins_per_ip: config.max_failed_logins_per_ip,
            max_failed_logins_per_user: config.max_failed_logins_per_user,
            failed_login_window: config.failed_login_window,
            ..SharedLimits::default()
        };
        Self::new_in(config, ServerContext::new(auth, storage, limits))
    }

    /// Load (or make) the host keys and build the SSH configuration, serving the users,
    /// storage and limits of `context` (shared with the process's other servers: logins,
    /// failed logins and sessions count together).
    pub fn new_in(config: SftpConfig, context: Arc<ServerContext>) -> std::io::Result<SftpServer> {
        let keys = hostkey::load_or_create_all(&config.state_dir)?;
        let fingerprints = keys.iter().map(hostkey::fingerprint).collect();
        let key_types = keys.iter().map(hostkey::type_name).collect();
        // russh offers these only where the handler is not asked (a bad signature); the
        // handler answers from the users of the moment.
        let methods = methods_for(&context.auth());
        let ssh = ssh_config(&config, keys, methods);
        Ok(SftpServer {
            inner: Arc::new(Inner { context, config }),
            ssh: Arc::new(ssh),
            fingerprints,
            key_types,
        })
    }

    /// The context this server serves from (users, storage, limits, sessions, metrics).
    pub fn context(&self) -> Arc<ServerContext> {
        Arc::clone(&self.inner.context)
    }

    /// Host key fingerprints (Ed25519, then RSA) in OpenSSH's `SHA256:...` form (what a
    /// client asks the user to confirm on first connection).
    pub fn fingerprints(&self) -> &[String] {
        &self.fingerprints
    }

    /// The host keys as `ssh-keygen -l` shows them: fingerprint and type, e.g.
    /// `SHA256:... (ED25519)`.
    pub fn host_keys(&self) -> Vec<String> {
        self.fingerprints
            .iter()
            .zip(&self.key_types)
            .map(|(fp, kind)| format!("{fp} ({kind})"))
            .collect()
    }

    /// Accept connections on `listener` until `shutdown` completes, then shut down gracefully
    /// and return once every connection accepted here has ended:
    /// - no new connection is accepted;
    /// - a connection not logged in yet is disconnected;
    /// - an SFTP session ends as soon as it has nothing open and nothing in flight (a transfer
    ///   running finishes first, and its file is closed as the client asks), then its
    ///   connection is disconnected ("server shutting down").
    ///
    /// A client that keeps a file open without using it is bounded by the idle timeouts; a
    /// caller that wants a shorter bound stops waiting for this future.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let running = Arc::new(Running::default());
        let (stop, stopping) = watch::channel(false);
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                _ = &mut shutdown => break,
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
            if self.inner.config.proxy.is_enabled() {
                self.admit_proxied(stream, peer, &running, stopping.clone());
            } else {
                admit(
                    &self.inner,
                    &self.ssh,
                    stream,
                    peer,
                    &running,
                    stopping.clone(),
                );
            }
        }
        drop(listener);
        tracing::info!(connections = running.count(), "sftp: shutting down");
        let _ = stop.send(true);
        running.ended().await;
        Ok(())
    }

    /// Admit a connection from a balancer, for the client its PROXY header names, read in a
    /// task of its own (counted in `running`); one not from a trusted balancer, or without a
    /// valid header, is closed unanswered.
    fn admit_proxied(
        &self,
        mut stream: TcpStream,
        peer: SocketAddr,
        running: &Arc<Running>,
        shutdown: watch::Receiver<bool>,
    ) {
        let guard = running.enter();
        let (inner, ssh, running) = (
            Arc::clone(&self.inner),
            Arc::clone(&self.ssh),
            Arc::clone(running),
        );
        tokio::spawn(async move {
            match inner.config.proxy.client_of(&mut stream, peer).await {
                Ok(client) => admit(&inner, &ssh, stream, client, &running, shutdown),
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "sftp: connection refused: PROXY protocol")
                }
            }
            drop(guard);
        });
    }
}

/// The one place a connection is admitted: it runs in a task of its own, counted in
/// `running` until it ends.
fn admit(
    inner: &Arc<Inner>,
    ssh: &Arc<russh::server::Config>,
    stream: TcpStream,
    peer: SocketAddr,
    running: &Arc<Running>,
    shutdown: watch::Receiver<bool>,
) {
    {
        let permit = match inner.context.sessions.admit(Protocol::Sftp, peer) {
            Ok(permit) => permit,
            Err(why) => {
                // Logged by the registry (`session_refused`).
                // RFC 4253 4.2: a server may send lines before its version string; clients
                // show them, so the refusal is told, not just a closed connection.
                let line = format!("{why}, try again later.\r\n");
                let _ = socket2::SockRef::from(&stream).send(line.as_bytes());
                return;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("sftp: TCP_NODELAY: {e}");
        }
        let guard = running.enter();
        let inner = Arc::clone(inner);
        let ssh = Arc::clone(ssh);
        tokio::spawn(async move {
            connection(inner, ssh, stream, peer, shutdown, permit).await;
            drop(guard);
        });
    }
}

/// One connection: the SSH session, the login grace timer, and its part in a shutdown.
pub(crate) async fn connection(
    inner: Arc<Inner>,
    ssh: Arc<russh::server::Config>,
    stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
    permit: SessionPermit,
) {
    let authenticated = Arc::new(AtomicBool::new(false));
    let sessions = Arc::new(Running::default());
    let handler = Connection::new(State {
        server: Arc::clone(&inner),
        peer: Some(peer),
        account: None,
        channels: HashMap::new(),
        opened: 0,
        authenticated: Arc::clone(&authenticated),
        sessions: Arc::clone(&sessions),
        shutdown: shutdown.clone(),
        permit,
    });
    let grace = inner.config.login_grace;
    let deadline = tokio::time::Instant::now() + grace;
    // Boxed: the handshake's state is large and done with once the session runs; inline, it
    // would stay part of this task for the connection's whole life.
    let handshake = Box::pin(tokio::time::timeout_at(
        deadline,
        russh::server::run_stream(ssh, stream, handler),
    ));
    let session = tokio::select! {
        session = handshake => session,
        // Still in the key exchange: nothing to finish.
        () = stopped(&mut shutdown) => return,
    };
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
    // Boxed, as every wait but the idle one below: this task lives as long as the connection,
    // and its size is that of its largest wait.
    let disconnect = |why: &'static str| {
        let handle = handle.clone();
        Box::pin(async move {
            let _ = handle
                .disconnect(
                    russh::Disconnect::ByApplication,
                    why.to_string(),
                    "en".to_string(),
                )
                .await;
        })
    };
    let ended = |r: Result<(), russh::Error>| {
        if let Err(e) = r {
            tracing::debug!(%peer, "ssh: session ended: {e}");
        }
    };
    let grace_over = tokio::time::sleep_until(deadline);
    tokio::pin!(grace_over);
    let mut grace_running = true;
    loop {
        tokio::select! {
            r = &mut session => return ended(r),
            () = &mut grace_over, if grace_running => {
                grace_running = false;
                if !authenticated.load(Ordering::Acquire) {
                    tracing::info!(%peer, "ssh: no login within {grace:?}; closing");
                    disconnect("login grace time exceeded").await;
                    return;
                }
            }
            () = stopped(&mut shutdown) => break,
        }
    }
    // Shutting down: a session's transfers finish first.
    if authenticated.load(Ordering::Acquire) {
        tokio::select! {
            r = &mut session => return ended(r),
            () = sessions.ended() => {}
        }
        // Its channels are closed now, which ends OpenSSH's client. A disconnect sent at once
        // could overtake the last replies still queued on a channel, so the client is given a
        // moment to leave by itself.
        if let Ok(r) = tokio::time::timeout(CLOSE_GRACE, &mut session).await {
            return ended(r);
        }
    }
    disconnect("server shutting down").await;
    ended(session.await);
}

/// How long a connection whose sessions ended at shutdown may take to close by itself.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Wait until `shutdown` turns true (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Tasks still running (connections of a listener, SFTP sessions of a connection), so that
/// a shutdown can wait for the last one.
#[derive(Default)]
pub(crate) struct Running {
    count: AtomicUsize,
    none_left: Notify,
}

impl Running {
    fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Count one in until the returned guard drops.
    pub(crate) fn enter(self: &Arc<Self>) -> RunningGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        RunningGuard(Arc::clone(self))
    }

    /// Wait until none runs.
    pub(crate) async fn ended(&self) {
        loop {
            let notified = self.none_left.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One running task of a [`Running`] count.
pub(crate) struct RunningGuard(Arc<Running>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.none_left.notify_waiters();
        }
    }
}

fn ssh_config(
    config: &SftpConfig,
    keys: Vec<PrivateKey>,
    methods: MethodSet,
) -> russh::server::Config {
    russh::server::Config {
        server_id: russh::SshId::Standard(
            format!("SSH-2.0-Ferry_{}", env!("CARGO_PKG_VERSION")).into(),
        ),
        methods,
        // russh would hold every refusal this long, key probes included (a client offers its
        // keys in turn, and one not listed here is no failure). Refused passwords wait
        // `auth_rejection_time` in the handler instead (see `ssh`).
        auth_rejection_time: Duration::ZERO,
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys,
        window_size: config.window_size,
        maximum_packet_size: config.max_ssh_packet,
        max_auth_attempts: config.max_auth_attempts,
        inactivity_timeout: Some(config.idle_timeout),
        nodelay: true,
        preferred: russh::Preferred {
            cipher: std::borrow::Cow::Borrowed(CIPHERS),
            key: std::borrow::Cow::Borrowed(KEY_ALGORITHMS),
            ..russh::Preferred::DEFAULT
        },
        ..Default::default()
    }
}

/// Signature algorithms for the host keys and for user keys (sent to clients as
/// `server-sig-algs`): russh's list without `ssh-rsa`, whose SHA-1 signatures OpenSSH has
/// refused by default since 8.8; RSA keys sign with SHA-2 (`rsa-sha2-512`, `rsa-sha2-256`).
const KEY_ALGORITHMS: &[Algorithm] = &[
    Algorithm::Ed25519,
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP256,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP384,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP521,
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha512),
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha256),
    },
];

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
