//! Data connections: the three methods of RFC 959 and RFC 2428.
//!
//! - **Passive** (`PASV`/`EPSV`): [`PassivePlan::open`] binds a listener on the control
//!   connection's local address, on a port leased from the [`PortPool`]; the lease returns the
//!   port as soon as the listener is dropped (after the one accepted connection, a new `PASV`,
//!   or the session's end). Only the control connection's IP may connect unless relaxed.
//! - **Active** (`PORT`/`EPRT`): [`connect_active`] connects to the client, from an ephemeral
//!   port or from control port − 1.
//!
//! Every wait is bounded by the data-connect timeout.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tracing::warn;

/// Passive ports available to lease. Ports are handed out round-robin so a port just released
/// (possibly still in `TIME_WAIT` on the client side) is not reused at once.
#[derive(Debug)]
pub struct PortPool {
    free: Mutex<VecDeque<u16>>,
}

impl PortPool {
    /// A pool over `low..=high`, or `None` for OS-chosen ephemeral ports.
    pub fn new(range: Option<(u16, u16)>) -> Option<Arc<Self>> {
        let (low, high) = range?;
        Some(Arc::new(PortPool {
            free: Mutex::new((low..=high).collect()),
        }))
    }

    fn take(&self) -> Option<u16> {
        self.free.lock().ok()?.pop_front()
    }

    fn give_back(&self, port: u16) {
        if let Ok(mut free) = self.free.lock() {
            free.push_back(port);
        }
    }

    /// Ports currently free (for tests and STAT).
    pub fn available(&self) -> usize {
        self.free.lock().map(|f| f.len()).unwrap_or(0)
    }
}

/// A leased port; returned to its pool on drop.
#[derive(Debug)]
struct PortLease {
    pool: Arc<PortPool>,
    port: u16,
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.pool.give_back(self.port);
    }
}

/// Why a data connection could not be set up; each becomes a reply in the session.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("no passive port free, try again later")]
    PortsExhausted,
    #[error("data connection timed out")]
    Timeout,
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A bound passive listener waiting for the client.
#[derive(Debug)]
pub struct PassivePlan {
    listener: TcpListener,
    _lease: Option<PortLease>,
    /// Local address the listener is bound to.
    pub local: SocketAddr,
}

impl PassivePlan {
    /// Bind a listener on `local_ip`, with a port from `pool` (or an ephemeral one).
    pub fn open(local_ip: IpAddr, pool: Option<&Arc<PortPool>>) -> Result<Self, DataError> {
        let Some(pool) = pool else {
            let listener = bind_listener(SocketAddr::new(local_ip, 0))?;
            let local = listener.local_addr()?;
            return Ok(PassivePlan {
                listener,
                _lease: None,
                local,
            });
        };
        // Try each free port at most once: some may be held by other programs.
        let attempts = pool.available();
        for _ in 0..attempts {
            let Some(port) = pool.take() else { break };
            let lease = PortLease {
                pool: Arc::clone(pool),
                port,
            };
            match bind_listener(SocketAddr::new(local_ip, port)) {
                Ok(listener) => {
                    let local = listener.local_addr()?;
                    return Ok(PassivePlan {
                        listener,
                        _lease: Some(lease),
                        local,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(DataError::PortsExhausted)
    }

    /// Wait for the client. Connections from an IP other than `expected_peer` are dropped (and
    /// logged) unless `expected_peer` is `None`; the wait goes on until `timeout`.
    pub async fn accept(
        self,
        expected_peer: Option<IpAddr>,
        timeout: Duration,
    ) -> Result<TcpStream, DataError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let accepted = tokio::time::timeout_at(deadline, self.listener.accept()).await;
            let (stream, peer) = match accepted {
                Err(_) => return Err(DataError::Timeout),
                Ok(Err(e)) if is_transient_accept_error(&e) => continue,
                Ok(r) => r?,
            };
            match expected_peer {
                Some(ip) if ip.to_canonical() != peer.ip().to_canonical() => {
                    warn!(%peer, expected = %ip, "refused passive data connection from a foreign address");
                    drop(stream);
                }
                _ => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
            }
        }
    }
}

fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Our side closes data connections first, so recently used ports sit in TIME_WAIT; without
    // SO_REUSEADDR a small passive range would run dry for minutes.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(8)?;
    TcpListener::from_std(socket.into())
}

/// Connect to the client for an active transfer, from `local_ip` and an ephemeral port, or from
/// `source_port` when set (control port − 1; needs `SO_REUSEADDR`, and privilege below 1024).
pub async fn connect_active(
    target: SocketAddr,
    local_ip: IpAddr,
    source_port: Option<u16>,
    timeout: Duration,
) -> Result<TcpStream, DataError> {
    // Connect with the same family as the local address (an IPv4 client on a dual-stack
    // socket shows up as ::ffff:a.b.c.d locally).
    let local_ip = match (local_ip, target) {
        (IpAddr::V6(v6), SocketAddr::V4(_)) => {
            v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(local_ip)
        }
        _ => local_ip,
    };
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(port) = source_port {
        socket.set_reuseaddr(true)?;
        socket.bind(SocketAddr::new(local_ip, port))?;
    } else if local_ip.is_ipv4() == target.is_ipv4() {
        socket.bind(SocketAddr::new(local_ip, 0))?;
    }
    match tokio::time::timeout(timeout, socket.connect(target)).await {
        Err(_) => Err(DataError::Timeout),
        Ok(r) => {
            let stream = r?;
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
    }
}
