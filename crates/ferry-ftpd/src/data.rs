//! Data connections: the three methods of RFC 959 and RFC 2428.
//!
//! - **Passive** (`PASV`/`EPSV`): [`PassivePlan::open`] binds a listener on the control
//!   connection's local address, on a port leased from the [`PortPool`]; the lease returns the
//!   port, and the listener with it, as soon as the plan is dropped (after the one accepted
//!   connection, a new `PASV`, or the session's end). Only the control connection's IP may
//!   connect unless relaxed. Behind a balancer speaking PROXY protocol, a connection from the
//!   balancer is judged by the client its header announces.
//! - **Active** (`PORT`/`EPRT`): [`connect_active`] connects to the client, from an ephemeral
//!   port or from control port − 1.
//!
//! Every wait is bounded by the data-connect timeout.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_core::ProxyTrust;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tracing::{debug, warn};

/// Passive ports available to lease, each with the listener it had, if any.
///
/// A port's listener stays open between transfers and goes back to the pool with the port:
/// binding costs a socket, a bind, a listen and a close per transfer, and the bind scans every
/// `TIME_WAIT` socket on the port (each download leaves one, the server closing first), which
/// under a burst of small transfers grew to half the server's CPU. Connections that reach an
/// idle listener are dropped when a session next takes it, before its `227`/`229` goes out.
/// Ports are handed out most recently used first, so a busy server keeps only about as many
/// listeners as it has transfers at once.
#[derive(Debug)]
pub struct PortPool {
    free: Mutex<Vec<Slot>>,
    size: usize,
}

#[derive(Debug)]
struct Slot {
    port: u16,
    /// The listener kept from the last lease (still registered with the runtime), with the
    /// address it is bound to.
    listener: Option<(IpAddr, TcpListener)>,
}

impl PortPool {
    /// A pool over `low..=high`, or `None` for OS-chosen ephemeral ports.
    pub fn new(range: Option<(u16, u16)>) -> Option<Arc<Self>> {
        let (low, high) = range?;
        // Popped from the end: the low ports first.
        let free = (low..=high)
            .rev()
            .map(|port| Slot {
                port,
                listener: None,
            })
            .collect();
        let size = usize::from(high.saturating_sub(low)) + 1;
        Some(Arc::new(PortPool {
            free: Mutex::new(free),
            size,
        }))
    }

    fn take(&self) -> Option<Slot> {
        self.free.lock().ok()?.pop()
    }

    /// Return ports that could not be bound (another program holds them) under the rest, so
    /// they are tried again only when the others are taken.
    fn set_aside(&self, ports: Vec<u16>) {
        if ports.is_empty() {
            return;
        }
        if let Ok(mut free) = self.free.lock() {
            let slots = ports.into_iter().map(|port| Slot {
                port,
                listener: None,
            });
            free.splice(0..0, slots);
        }
    }

    /// Ports leased now.
    pub fn in_use(&self) -> usize {
        self.size.saturating_sub(self.available())
    }

    /// Ports currently free (for tests and STAT).
    pub fn available(&self) -> usize {
        self.free.lock().map(|f| f.len()).unwrap_or(0)
    }
}

/// A leased port; returned to its pool on drop, with the listener when one is handed back.
#[derive(Debug)]
struct PortLease {
    pool: Arc<PortPool>,
    slot: Slot,
}

impl Drop for PortLease {
    fn drop(&mut self) {
        if let Ok(mut free) = self.pool.free.lock() {
            free.push(Slot {
                port: self.slot.port,
                listener: self.slot.listener.take(),
            });
        }
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
    /// Always `Some` until dropped (then handed back to the pool with the port).
    listener: Option<TcpListener>,
    lease: Option<PortLease>,
    /// Local address the listener is bound to.
    pub local: SocketAddr,
    /// When the listener was handed out (an unused one is released a timeout later).
    pub opened: tokio::time::Instant,
    /// The balancers whose connections carry a PROXY header naming the client.
    proxy: Option<Arc<ProxyTrust>>,
}

/// A connection accepted on a passive port by [`PassivePlan::poll_accept_one`].
#[derive(Debug)]
pub struct Arrival {
    /// The connection.
    pub stream: TcpStream,
    /// Where it comes from.
    pub peer: SocketAddr,
    /// Set when `peer` is a trusted balancer: the connection's PROXY header is still to be
    /// read, and the client it names checked, before it may be used.
    pub via: Option<Arc<ProxyTrust>>,
}

impl PassivePlan {
    /// Bind a listener on `local_ip`, with a port from `pool` (or an ephemeral one).
    pub fn open(local_ip: IpAddr, pool: Option<&Arc<PortPool>>) -> Result<Self, DataError> {
        let Some(pool) = pool else {
            let listener = bind_listener(SocketAddr::new(local_ip, 0))?;
            let local = listener.local_addr()?;
            return Ok(PassivePlan {
                listener: Some(TcpListener::from_std(listener)?),
                lease: None,
                local,
                opened: tokio::time::Instant::now(),
                proxy: None,
            });
        };
        // Try each free port at most once: some may be held by other programs. Those go back
        // under the others (see `PortPool::set_aside`), not on top to be taken again at once.
        let attempts = pool.available();
        let mut in_use = Vec::new();
        let result = Self::open_pooled(local_ip, pool, attempts, &mut in_use);
        pool.set_aside(in_use);
        result
    }

    fn open_pooled(
        local_ip: IpAddr,
        pool: &Arc<PortPool>,
        attempts: usize,
        in_use: &mut Vec<u16>,
    ) -> Result<Self, DataError> {
        for _ in 0..attempts {
            let Some(mut slot) = pool.take() else { break };
            let local = SocketAddr::new(local_ip, slot.port);
            let kept = match slot.listener.take() {
                Some((ip, listener)) if ip == local_ip => Some(listener),
                // Bound to another of our addresses: closed, and this one bound instead.
                _ => None,
            };
            let listener = match kept {
                Some(listener) => {
                    drain_backlog(&listener);
                    listener
                }
                None => match bind_listener(local).and_then(TcpListener::from_std) {
                    Ok(listener) => listener,
                    Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                        in_use.push(slot.port);
                        continue;
                    }
                    Err(e) => {
                        in_use.push(slot.port);
                        return Err(e.into());
                    }
                },
            };
            let lease = PortLease {
                pool: Arc::clone(pool),
                slot,
            };
            return Ok(PassivePlan {
                listener: Some(listener),
                lease: Some(lease),
                local,
                opened: tokio::time::Instant::now(),
                proxy: None,
            });
        }
        Err(DataError::PortsExhausted)
    }

    /// Judge data connections from the balancers `proxy` trusts by the client their PROXY
    /// header names (PROXY protocol on: `proxy` is enabled).
    pub fn behind(mut self, proxy: &Arc<ProxyTrust>) -> Self {
        if proxy.is_enabled() {
            self.proxy = Some(Arc::clone(proxy));
        }
        self
    }

    /// The balancers trusted, when PROXY protocol is on and `peer` is one of them.
    fn balancer(&self, peer: SocketAddr) -> Option<&Arc<ProxyTrust>> {
        self.proxy.as_ref().filter(|p| p.trusts(peer.ip()))
    }

    /// Wait for the client. Connections from an IP other than `expected_peer` are dropped (and
    /// logged) unless `expected_peer` is `None`; the wait goes on until `timeout`. A
    /// connection from a trusted balancer counts as coming from the client its PROXY header
    /// names.
    pub async fn accept(
        self,
        expected_peer: Option<IpAddr>,
        timeout: Duration,
    ) -> Result<TcpStream, DataError> {
        let Some(listener) = &self.listener else {
            return Err(DataError::Io(io::Error::other("passive listener gone")));
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let accepted = tokio::time::timeout_at(deadline, listener.accept()).await;
            let (mut stream, mut peer) = match accepted {
                Err(_) => return Err(DataError::Timeout),
                Ok(Err(e)) if is_transient_accept_error(&e) => continue,
                Ok(r) => r?,
            };
            if let Some(proxy) = self.balancer(peer) {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                match proxy.source_of(&mut stream, peer, left).await {
                    Ok(source) => peer = source,
                    Err(e) => {
                        warn!(%peer, error = %e, "refused passive data connection from the balancer");
                        continue;
                    }
                }
            }
            match expected_peer {
                Some(ip) if ip.to_canonical() != peer.ip().to_canonical() => {
                    refused_foreign(peer, ip);
                    drop(stream);
                }
                // Nagle is off already: accepted connections inherit the listener's setting.
                _ => return Ok(stream),
            }
        }
    }
}

/// The `foreign_data_refused` event: a connection to a passive port from `from`, which is
/// not the client's address `client`.
fn refused_foreign(from: SocketAddr, client: IpAddr) {
    warn!(
        event = ferry_core::events::FOREIGN_DATA_REFUSED,
        protocol = "ftp",
        peer = %client,
        %from,
        reason = "data connection from an address other than the client's",
        "refused passive data connection from a foreign address"
    );
}

impl PassivePlan {
    /// Poll for the next connection from `expected_peer` (any, if `None`), leaving the
    /// listener in place for more; connections from elsewhere are dropped and logged, as in
    /// `accept`. Synchronous, so that the plan can be dropped (and its port freed) at any time
    /// between polls by whoever holds it; a connection from a trusted balancer is handed over
    /// unchecked, its [`Arrival::via`] set, for the caller to read its header.
    pub fn poll_accept_one(
        &self,
        cx: &mut std::task::Context<'_>,
        expected_peer: Option<IpAddr>,
    ) -> std::task::Poll<Result<Arrival, DataError>> {
        use std::task::Poll;
        let Some(listener) = &self.listener else {
            return Poll::Ready(Err(DataError::Io(io::Error::other(
                "passive listener gone",
            ))));
        };
        loop {
            let (stream, peer) = match listener.poll_accept(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) if is_transient_accept_error(&e) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Ready(Ok(accepted)) => accepted,
            };
            let via = self.balancer(peer).cloned();
            match expected_peer {
                Some(ip) if via.is_none() && ip.to_canonical() != peer.ip().to_canonical() => {
                    refused_foreign(peer, ip);
                }
                _ => return Poll::Ready(Ok(Arrival { stream, peer, via })),
            }
        }
    }

    /// The client's connection if it has arrived already: no wait, and (unlike
    /// [`PassivePlan::accept`]) not registered with the runtime, for a transfer that is done
    /// at once. Connections from a foreign IP are dropped, as in `accept`. Never takes one
    /// behind a balancer (its header would need a wait).
    pub fn accept_now(&self, expected_peer: Option<IpAddr>) -> Option<std::net::TcpStream> {
        if self.proxy.is_some() {
            return None;
        }
        let listener = self.listener.as_ref()?;
        // Bounded, like `drain_backlog`.
        for _ in 0..64 {
            match ferry_sys::accept_nonblocking(listener) {
                Ok((stream, peer)) => match expected_peer {
                    Some(ip) if ip.to_canonical() != peer.ip().to_canonical() => {
                        refused_foreign(peer, ip);
                    }
                    _ => return Some(stream),
                },
                Err(e) if is_transient_accept_error(&e) => continue,
                Err(_) => return None,
            }
        }
        None
    }
}

impl Drop for PassivePlan {
    fn drop(&mut self) {
        // Hand the listener back with its port; without a pool it just closes.
        if let (Some(listener), Some(lease)) = (self.listener.take(), self.lease.as_mut()) {
            lease.slot.listener = Some((self.local.ip(), listener));
        }
    }
}

/// Drop the connections that reached an idle listener: they were not made for this transfer.
/// Asks the kernel directly (the socket is non-blocking), not the runtime's cached readiness,
/// which may not have seen a connection that has just arrived.
///
/// Logged at debug level only: most are a client's own, left when the command it connected
/// for failed (`550` on a missing file, a refused `STOR`), which is not worth a warning.
fn drain_backlog(listener: &TcpListener) {
    let socket = socket2::SockRef::from(listener);
    // Bounded: the backlog is small, and a flood is cut short.
    for _ in 0..64 {
        match socket.accept() {
            Ok((stream, peer)) => {
                let peer = peer.as_socket();
                debug!(?peer, "dropped a connection made to an idle passive port");
                drop(stream);
            }
            Err(e) if is_transient_accept_error(&e) => continue,
            Err(_) => return,
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

fn bind_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    // Non-blocking from the start: no fcntl round trip per transfer.
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Our side closes data connections first, so recently used ports sit in TIME_WAIT; without
    // SO_REUSEADDR a small passive range would run dry for minutes.
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(8)?;
    Ok(socket.into())
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
