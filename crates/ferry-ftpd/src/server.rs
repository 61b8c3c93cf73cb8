//! The accept loop: listeners (IPv4, IPv6, dual-stack), connection limits, graceful shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use ferry_auth::{Account, Authenticator};
use ferry_core::{ServerContext, SharedLimits};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::budget::BufferBudget;
use crate::config::ServerConfig;
use crate::counters::TransferCounters;
use crate::data::PortPool;
use crate::session::Session;
use crate::shared::Shared;
pub use crate::shared::StorageFactory;

pub use ferry_core::{ROOT_REUSE, local_storage};

/// A bound FTP server, ready to [`run`](Server::run).
pub struct Server {
    shared: Arc<Shared>,
    /// Each listener, and whether it speaks implicit TLS.
    listeners: Vec<(TcpListener, bool)>,
    shutdown_tx: watch::Sender<bool>,
}

/// The control connections' listening sockets of a server, bound and not yet served (no
/// runtime needed).
pub struct Listeners {
    sockets: Vec<(std::net::TcpListener, bool)>,
}

impl Listeners {
    /// Bind every `config.listen` and `config.implicit_tls_listen` address. Fails with a clear
    /// message if an address can't be bound or if `active_source_port_minus_one` needs a
    /// privilege the process lacks.
    pub fn bind(config: &ServerConfig) -> io::Result<Listeners> {
        if config.listen.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no listen address given",
            ));
        }
        if !config.implicit_tls_listen.is_empty() && config.tls.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "implicit TLS listeners need TLS to be enabled",
            ));
        }
        let mut sockets = Vec::new();
        let all = config.listen.iter().map(|a| (a, false));
        let implicit = config.implicit_tls_listen.iter().map(|a| (a, true));
        for (addr, implicit) in all.chain(implicit) {
            let l = bind_control(*addr)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
            sockets.push((l, implicit));
        }
        if config.active_source_port_minus_one {
            for (l, _) in &sockets {
                check_source_port(l.local_addr()?)?;
            }
        }
        Ok(Listeners { sockets })
    }

    /// The addresses bound (useful with port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets
            .iter()
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect()
    }
}

impl Server {
    /// Bind every `config.listen` address, with a context of this server's own (its session
    /// and login limits from `config`). See [`Server::bind_in`].
    pub fn bind(
        config: ServerConfig,
        auth: Arc<Authenticator>,
        storage: StorageFactory,
    ) -> io::Result<Server> {
        let limits = SharedLimits {
            max_sessions: config.max_sessions,
            max_sessions_per_ip: config.max_sessions_per_ip,
            max_sessions_per_user: config.max_sessions_per_user,
            upload_rate: config.upload_rate,
            download_rate: config.download_rate,
            max_failed_logins_per_ip: config.max_failed_logins_per_ip,
            max_failed_logins_per_user: config.max_failed_logins_per_user,
            failed_login_window: config.failed_login_window,
            ..SharedLimits::default()
        };
        Self::bind_in(config, ServerContext::new(auth, storage, limits))
    }

    /// Bind every `config.listen` address, serving the users, storage and limits of `context`
    /// (shared with the process's other servers; `config`'s session and login limits are then
    /// the context's business). Fails with a clear message if an address can't be bound or if
    /// `active_source_port_minus_one` needs a privilege the process lacks.
    pub fn bind_in(config: ServerConfig, context: Arc<ServerContext>) -> io::Result<Server> {
        let listeners = Listeners::bind(&config)?;
        Self::with_listeners(config, context, listeners)
    }

    /// Serve on sockets bound beforehand by [`Listeners::bind`] (with the same `config`), for
    /// a process that binds while privileged and serves after giving the privilege up. Needs a
    /// tokio runtime, as [`Server::bind_in`] does.
    pub fn with_listeners(
        config: ServerConfig,
        context: Arc<ServerContext>,
        bound: Listeners,
    ) -> io::Result<Server> {
        let mut listeners = Vec::new();
        for (l, implicit) in bound.sockets {
            listeners.push((TcpListener::from_std(l)?, implicit));
        }
        let (shutdown_tx, shutdown) = watch::channel(false);
        let ports = PortPool::new(config.passive_ports);
        if let Some(pool) = &ports {
            let pool = Arc::downgrade(pool);
            context
                .metrics
                .watch_passive_ports(move || pool.upgrade().map_or(0, |p| p.in_use()));
        }
        let anonymous = config.anonymous_home.clone().map(|home| {
            Arc::new(Account {
                name: "anonymous".to_string(),
                home,
                permissions: if config.anonymous_upload_only {
                    ferry_auth::Permissions::UPLOAD_ONLY
                } else {
                    ferry_auth::Permissions::READ_ONLY
                },
                anonymous: true,
                limits: Default::default(),
            })
        });
        let proxy = Arc::new(config.proxy.clone());
        let shared = Arc::new(Shared {
            proxy,
            anonymous,
            config,
            context,
            ports,
            shutdown,
            counters: Arc::default(),
            buffers: Arc::default(),
        });
        Ok(Server {
            shared,
            listeners,
            shutdown_tx,
        })
    }

    /// The context this server serves from (users, storage, limits, sessions).
    pub fn context(&self) -> Arc<ServerContext> {
        Arc::clone(&self.shared.context)
    }

    /// What this server's transfers have done, by the path they took (its own counts: another
    /// server in the process keeps others).
    pub fn counters(&self) -> Arc<TransferCounters> {
        Arc::clone(&self.shared.counters)
    }

    /// The budget of large transfer buffers this server's transfers draw on.
    pub fn buffer_budget(&self) -> Arc<BufferBudget> {
        Arc::clone(&self.shared.buffers)
    }

    /// The plain/explicit-TLS addresses actually bound (useful with port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs(false)
    }

    /// The implicit-TLS addresses actually bound.
    pub fn implicit_tls_addrs(&self) -> Vec<SocketAddr> {
        self.addrs(true)
    }

    fn addrs(&self, implicit: bool) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter(|(_, i)| *i == implicit)
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect()
    }

    /// Serve until `shutdown` completes, then tell every session (`421`), let running transfers
    /// finish, and return when all sessions have ended.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let Server {
            shared,
            listeners,
            shutdown_tx,
        } = self;
        let mut accepters = JoinSet::new();
        for (listener, implicit) in listeners {
            let accepting = Accepting {
                shared: Arc::clone(&shared),
                implicit,
            };
            accepters.spawn(accept_loop(listener, accepting));
        }
        shutdown.await;
        let sessions = &shared.context.sessions;
        info!(
            sessions = sessions.count_of(ferry_core::Protocol::Ftp),
            "shutting down"
        );
        accepters.abort_all();
        let _ = shutdown_tx.send(true);
        sessions.wait_until_none_of(ferry_core::Protocol::Ftp).await;
        Ok(())
    }
}

/// What an accept loop needs to start sessions itself, with no hop through another task.
#[derive(Clone)]
struct Accepting {
    shared: Arc<Shared>,
    implicit: bool,
}

async fn accept_loop(listener: TcpListener, accepting: Accepting) {
    // One descriptor held in reserve. When the process has none left, the kernel keeps
    // completing connections into the backlog where nobody answers them; letting the reserve
    // go for as long as it takes to accept one, tell it `421` and close it means every client
    // hears why, and the backlog drains instead of filling.
    let mut reserve = reserve_descriptor();
    let mut exhausted = Exhaustion::default();
    loop {
        match listener.accept().await {
            Ok((stream, peer)) if accepting.shared.proxy.is_enabled() => {
                tokio::spawn(start_proxied_session(accepting.clone(), stream, peer));
            }
            Ok((stream, peer)) => start_session(&accepting, stream, peer),
            Err(e) if ferry_sys::is_out_of_descriptors(&e) => {
                if reserve.take().is_some() {
                    if let Some(Ok((stream, _))) = accept_waiting(&listener).await {
                        refuse(&stream, "Server busy");
                        exhausted.refused += 1;
                    }
                    reserve = reserve_descriptor();
                }
                exhausted.note(&e);
                if reserve.is_none() {
                    // Not even the reserve came back: wait for sessions to end.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    reserve = reserve_descriptor();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {
                // Reset by the client before it was accepted: nothing to back off from.
                debug!(error = %e, "accept failed");
            }
            Err(e) => {
                // Out of memory or buffers: back off instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// A descriptor to let go of when the process runs out: an unbound socket (no port, no file).
fn reserve_descriptor() -> Option<Socket> {
    Socket::new(Domain::IPV4, Type::STREAM, None).ok()
}

/// The connection waiting on `listener`, if any, without waiting for one.
async fn accept_waiting(listener: &TcpListener) -> Option<io::Result<(TcpStream, SocketAddr)>> {
    std::future::poll_fn(|cx| match listener.poll_accept(cx) {
        std::task::Poll::Ready(r) => std::task::Poll::Ready(Some(r)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}

/// Runs out of descriptors, reported at most every few seconds (a flood would otherwise
/// write a line per connection).
#[derive(Default)]
struct Exhaustion {
    refused: u64,
    reported: Option<std::time::Instant>,
}

impl Exhaustion {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(10);

    fn note(&mut self, e: &io::Error) {
        if self.reported.is_none_or(|t| t.elapsed() >= Self::EVERY) {
            warn!(
                error = %e,
                refused = self.refused,
                "out of descriptors: refusing connections with 421 (raise the open-file limit or lower max_sessions)"
            );
            self.reported = Some(std::time::Instant::now());
            self.refused = 0;
        }
    }
}

/// Tell a connection we do not serve why (`421`) and close it. The line goes out with one
/// non-blocking send: a fresh connection's send buffer is empty, and nothing waits on a
/// client that does not read.
fn refuse(stream: &TcpStream, why: &str) {
    let line = format!("421 {why}, try again later.\r\n");
    let _ = socket2::SockRef::from(stream).send(line.as_bytes());
}

/// Start the session of a connection from a balancer, for the client its PROXY header names;
/// a connection that is not from a trusted balancer, or has no valid header, is closed
/// unanswered (nobody but the balancer would read an answer).
async fn start_proxied_session(accepting: Accepting, mut stream: TcpStream, peer: SocketAddr) {
    match accepting.shared.proxy.client_of(&mut stream, peer).await {
        Ok(client) => start_session(&accepting, stream, client),
        Err(e) => debug!(%peer, error = %e, "connection refused: PROXY protocol"),
    }
}

fn start_session(accepting: &Accepting, stream: TcpStream, peer: SocketAddr) {
    let permit = match accepting
        .shared
        .context
        .sessions
        .admit(ferry_core::Protocol::Ftp, peer)
    {
        Ok(p) => p,
        Err(why) => {
            // Logged by the registry (`session_refused`).
            refuse(&stream, why.text());
            return;
        }
    };
    // Nagle off and urgent data inline come from the listener (see `bind_control`).
    let span = info_span!("session", %peer, user = tracing::field::Empty);
    // Made here, not in the task: the task then holds a pointer, not the session's fields.
    let session = match Session::new(
        Arc::clone(&accepting.shared),
        stream,
        peer,
        accepting.implicit,
        permit,
    ) {
        Ok(session) => Box::new(session),
        Err(e) => {
            span.in_scope(|| debug!(error = %e, "session setup failed"));
            return;
        }
    };
    tokio::spawn(session_task(session).instrument(span));
}

/// A session's task: small, because it lives as long as the connection (its argument is a
/// pointer; the session's fields, its place in the registry among them, are on the heap, see
/// `Session::run`).
async fn session_task(session: Box<Session>) {
    session.run().await;
}

fn bind_control(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if let SocketAddr::V6(v6) = addr {
        // `[::]` serves IPv4 too (dual-stack); a specific IPv6 address only itself.
        socket.set_only_v6(!v6.ip().is_unspecified())?;
    }
    socket.set_nonblocking(true)?;
    // Accepted connections inherit these (Linux), saving two system calls per session:
    // replies go out at once, and telnet "Synch" marks its byte as TCP urgent data, which
    // must stay in the stream so that an ABOR sent with MSG_OOB (as Python's ftplib does)
    // arrives whole.
    socket.set_tcp_nodelay(true)?;
    socket.set_out_of_band_inline(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

fn check_source_port(control: SocketAddr) -> io::Result<()> {
    let port = control
        .port()
        .checked_sub(1)
        .filter(|p| *p > 0)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "active_source_port_minus_one needs a control port above 1",
            )
        })?;
    let probe = SocketAddr::new(control.ip(), port);
    let socket = Socket::new(
        Domain::for_address(probe),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&probe.into()).map_err(|e| {
        let hint = if e.kind() == io::ErrorKind::PermissionDenied {
            " (binding a port below 1024 needs root or CAP_NET_BIND_SERVICE)"
        } else {
            ""
        };
        io::Error::new(
            e.kind(),
            format!(
                "active_source_port_minus_one: cannot bind data source port {probe}: {e}{hint}"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every idle session holds its task for hours: the future must not hold the session's
    /// fields by value (an `async fn` keeps by-value arguments twice; 2,208 bytes before).
    #[tokio::test]
    async fn a_session_task_holds_the_session_by_pointer() {
        let config = ServerConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            ..ServerConfig::default()
        };
        let auth = Arc::new(Authenticator::new(Vec::new()).unwrap());
        let server = Server::bind(config, auth, local_storage()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let permit = server
            .shared
            .context
            .sessions
            .admit(ferry_core::Protocol::Ftp, peer)
            .unwrap();
        let session = Box::new(
            Session::new(Arc::clone(&server.shared), stream, peer, false, permit).unwrap(),
        );
        let task = session_task(session);
        let size = std::mem::size_of_val(&task);
        assert!(size <= 1024, "a session's task is {size} bytes");
        // And the session's own fields: no large value held inline while idle (a planned
        // passive listener is boxed). 488 includes the session's place in the registry (two
        // pointers, which the task used to hold instead), and, for the logs, the client's
        // protocol and address its view of storage names in refusals (one boxed pointer) and
        // an anonymous login's ID (a boxed string, none for other logins).
        let fields = std::mem::size_of::<Session>();
        assert!(fields <= 488, "a session's fields are {fields} bytes");
        drop((task, client));
        assert_eq!(server.shared.context.sessions.count(), 0);
    }

    /// Two servers in one process (or an FTP and another protocol's server later) share
    /// counters or a buffer budget only when handed the same ones.
    #[tokio::test]
    async fn each_server_has_its_own_counters_and_buffer_budget() {
        let bind = || {
            let config = ServerConfig {
                listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
                ..ServerConfig::default()
            };
            let auth = Arc::new(Authenticator::new(Vec::new()).unwrap());
            Server::bind(config, auth, local_storage()).unwrap()
        };
        let (a, b) = (bind(), bind());
        assert!(!Arc::ptr_eq(&a.counters(), &b.counters()));
        assert!(!Arc::ptr_eq(&a.buffer_budget(), &b.buffer_budget()));
        let held = a.buffer_budget().reserve(1024).unwrap();
        assert_eq!(
            (a.buffer_budget().reserved(), b.buffer_budget().reserved()),
            (held.bytes(), 0)
        );
    }
}
