//! Protected (TLS) data connections: the handshake with its proof of session reuse, and the
//! passive wait that tries every connection reaching the port until one passes.
//!
//! A passive port is waited on from `PASV` on, not from the transfer command: some clients
//! (curl, aioftp) start the TLS handshake as soon as they connect and send the command only
//! later, or only once the handshake is done; answering it at once spares them a stall (or a
//! deadlock). Whether session tickets go out (for a download, not for an upload) is settled
//! once the command has come (see [`tls::accept`]).
//!
//! Another program at the client's address can connect to a passive port before the client
//! does. Its connection fails the proof (it holds no session of this user's), and must not
//! cost the client its transfer: the wait goes on accepting, and handshakes the connections
//! that arrive side by side (a handshake that stalls does not hold up the next connection).

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use ferry_proto::Reply;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{Instrument, debug, warn};

use crate::data::{Arrival, DataError, PassivePlan};
use crate::tls::{self, DataConfigs, DataOwner, Stream, TlsConfig};

/// Handshakes under way at once on one passive port. A connection arriving when this many
/// are unfinished ends the oldest of them: connections that stall their handshake cannot keep
/// the client's own from being tried.
const MAX_HANDSHAKES: usize = 8;

/// Connections tried per wait; after that, the wait lets the ones under way finish.
const MAX_CANDIDATES: usize = 64;

/// How long a refused connection's close_notify may take to leave.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// After a connection was refused, how much longer the wait goes on (within the data-connect
/// timeout) for the client's own. The client connects as soon as it has the port (or the
/// `150`), so its connection is on its way when another program's has been refused; a client
/// whose own connection was refused (one that cannot resume sessions) hears `522` after this
/// rather than after the whole timeout.
fn grace(timeout: Duration) -> Duration {
    timeout / 10
}

/// What a protected data connection needs: the TLS configurations, whether session reuse is
/// required, and whose data connection it is.
#[derive(Clone)]
pub(super) struct DataTls {
    configs: DataConfigs,
    require_reuse: bool,
    owner: DataOwner,
}

impl DataTls {
    pub(super) fn new(tls: &TlsConfig, owner: DataOwner) -> Self {
        DataTls {
            configs: DataConfigs {
                download: tls.config(false),
                upload: tls.config(true),
            },
            require_reuse: tls.require_session_reuse,
            owner,
        }
    }

    /// The TLS handshake on `tcp`, checking it resumed a session its owner may use. `upload`
    /// holds whether the connection is for an upload once the command has come (`None`
    /// before). A refused connection is closed with close_notify, so that its client looks for
    /// the refusal on the control connection rather than seeing a reset. Not bounded in time:
    /// callers are.
    async fn handshake(
        &self,
        tcp: TcpStream,
        mut upload: watch::Receiver<Option<bool>>,
    ) -> Result<Stream, Reply> {
        let accepted = tls::accept(tcp, &self.configs, &mut upload, &self.owner).await;
        let (mut tls, proven) = match accepted {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, "TLS handshake failed on the data connection");
                return Err(Reply::new(
                    425,
                    format!("TLS handshake failed on the data connection: {e}."),
                ));
            }
        };
        if self.require_reuse && !proven {
            let from = tls.get_ref().0.peer_addr().ok();
            warn!(
                event = ferry_core::events::DATA_TLS_REFUSED,
                protocol = "ftps",
                from = from.map(tracing::field::display),
                reason = "no TLS session of the control connection resumed",
                "data connection did not resume a TLS session of its control connection (or of the same user's from the same address); refused"
            );
            let _ = tokio::time::timeout(CLOSE_WAIT, tls.shutdown()).await;
            return Err(Reply::new(
                522,
                "TLS session reuse required: the data connection must resume the control connection's TLS session (server key tls_require_session_reuse).",
            ));
        }
        Ok(Stream::Tls(Box::new(tls)))
    }

    /// [`DataTls::handshake`] within `timeout` (an active-mode connection, which the server
    /// made itself).
    pub(super) async fn handshake_within(
        &self,
        tcp: TcpStream,
        upload: bool,
        timeout: Duration,
    ) -> Result<Stream, Reply> {
        let (_, known) = watch::channel(Some(upload));
        match tokio::time::timeout(timeout, self.handshake(tcp, known)).await {
            Ok(result) => result,
            Err(_) => {
                warn!("TLS handshake timed out on the data connection");
                Err(Reply::new(
                    425,
                    "TLS handshake timed out on the data connection.",
                ))
            }
        }
    }
}

/// A passive plan shared between the session and the task waiting on it: whichever is done
/// with it first takes it out, and the port is free at once (the session may ask for another
/// right away; a task only stops at its next poll).
type SharedPlan = Arc<Mutex<Option<PassivePlan>>>;

/// Takes the plan out of a [`SharedPlan`] (freeing the port) when dropped.
struct Release(SharedPlan);

impl Drop for Release {
    fn drop(&mut self) {
        if let Ok(mut plan) = self.0.lock() {
            drop(plan.take());
        }
    }
}

/// A protected passive data connection waited for from `PASV` on (see the module's
/// documentation), in its own task; dropping this ends the wait and frees the port.
pub(super) struct ProtectedPassive {
    /// `Some(upload)` once the transfer command has come.
    command: watch::Sender<Option<bool>>,
    wait: tokio::task::JoinHandle<Result<Stream, Reply>>,
    _plan: Release,
}

impl ProtectedPassive {
    /// Start waiting on `plan`'s port (see [`accept_passive`]).
    pub(super) fn start(
        plan: PassivePlan,
        expected_peer: Option<IpAddr>,
        tls: DataTls,
        timeout: Duration,
    ) -> Self {
        let (command, told) = watch::channel(None);
        let plan = Arc::new(Mutex::new(Some(plan)));
        let wait = wait_passive(Arc::clone(&plan), expected_peer, tls, timeout, told);
        ProtectedPassive {
            command,
            wait: tokio::spawn(wait.in_current_span()),
            _plan: Release(plan),
        }
    }

    /// The data connection for a transfer command (an upload or not) that has just come.
    pub(super) async fn connection(mut self, upload: bool) -> Result<Stream, Reply> {
        self.command.send_replace(Some(upload));
        match (&mut self.wait).await {
            Ok(result) => result,
            Err(e) => Err(data_failed(&DataError::Io(io::Error::other(e)))),
        }
    }
}

impl Drop for ProtectedPassive {
    fn drop(&mut self) {
        self.wait.abort();
    }
}

/// A connection being tried.
type Candidate = Pin<Box<dyn Future<Output = Result<Stream, Reply>> + Send>>;

/// Wait on `plan`'s port for the client's protected data connection: accept every connection
/// from `expected_peer` (any, if `None`), handshake them side by side, and hand over the first
/// that passes. `command` holds `Some(upload)` once the transfer command has come; the wait
/// ends `timeout` after it (sooner, see [`grace`], once a connection has been refused), or
/// `timeout` after the wait began if it has not come by then. The answer on failure is the
/// last refusal, or `425`.
pub(super) async fn accept_passive(
    plan: PassivePlan,
    expected_peer: Option<IpAddr>,
    tls: DataTls,
    timeout: Duration,
    command: watch::Receiver<Option<bool>>,
) -> Result<Stream, Reply> {
    let plan = Arc::new(Mutex::new(Some(plan)));
    wait_passive(plan, expected_peer, tls, timeout, command).await
}

/// [`accept_passive`] on a shared plan, which it takes out (freeing the port) when it ends.
async fn wait_passive(
    plan: SharedPlan,
    expected_peer: Option<IpAddr>,
    tls: DataTls,
    timeout: Duration,
    mut command: watch::Receiver<Option<bool>>,
) -> Result<Stream, Reply> {
    let plan = Release(plan);
    let accept_one = || {
        std::future::poll_fn(|cx| match plan.0.lock().as_deref() {
            Ok(Some(plan)) => plan.poll_accept_one(cx, expected_peer),
            Ok(None) | Err(_) => Poll::Ready(Err(DataError::Io(io::Error::other(
                "passive listener given up",
            )))),
        })
    };
    let began = Instant::now();
    let mut command_at = command.borrow().is_some().then_some(began);
    let mut refused: Option<(Instant, Reply)> = None;
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut tried = 0;
    loop {
        let deadline = match (command_at, &refused) {
            (None, _) => began + timeout,
            (Some(at), None) => at + timeout,
            (Some(at), Some((when, _))) => (at + timeout).min(at.max(*when) + grace(timeout)),
        };
        tokio::select! {
            done = next_done(&mut candidates), if !candidates.is_empty() => match done {
                Ok(stream) => return Ok(stream),
                Err(reply) => refused = Some((Instant::now(), reply)),
            },
            accepted = accept_one(), if tried < MAX_CANDIDATES => {
                let arrival = match accepted {
                    Ok(arrival) => arrival,
                    Err(e) => return Err(data_failed(&e)),
                };
                tried += 1;
                if candidates.len() >= MAX_HANDSHAKES {
                    warn!("too many TLS handshakes on a passive port; dropped the oldest");
                    drop(candidates.remove(0));
                }
                let (tls, command) = (tls.clone(), command.clone());
                candidates.push(Box::pin(async move {
                    let tcp = through_balancer(arrival, expected_peer, timeout).await?;
                    tls.handshake(tcp, command).await
                }));
            }
            changed = command.changed(), if command_at.is_none() => match changed {
                Ok(()) => command_at = command.borrow().is_some().then(Instant::now),
                // The session gave up the plan.
                Err(_) => return Err(data_failed(&DataError::Timeout)),
            },
            _ = tokio::time::sleep_until(deadline) => {
                return Err(match (refused, command_at) {
                    (Some((_, reply)), _) => reply,
                    (None, Some(_)) => data_failed(&DataError::Timeout),
                    // No command came: nothing failed that anyone waits for.
                    (None, None) => {
                        debug!("passive port given up: no transfer command came");
                        let e = DataError::Timeout;
                        Reply::new(425, format!("Can't open data connection: {e}."))
                    }
                });
            }
        }
    }
}

/// The connection of `arrival`, once the client its balancer's PROXY header names (if it came
/// through one) is `expected_peer`.
async fn through_balancer(
    arrival: Arrival,
    expected_peer: Option<IpAddr>,
    timeout: Duration,
) -> Result<TcpStream, Reply> {
    let Arrival {
        mut stream,
        peer,
        via,
    } = arrival;
    let Some(proxy) = via else {
        return Ok(stream);
    };
    let source = proxy
        .source_of(&mut stream, peer, timeout)
        .await
        .map_err(|e| {
            warn!(%peer, error = %e, "refused passive data connection from the balancer");
            Reply::new(425, "Can't open data connection: invalid PROXY header.")
        })?;
    match expected_peer {
        Some(ip) if ip.to_canonical() != source.ip().to_canonical() => {
            warn!(%source, expected = %ip, "refused passive data connection from a foreign address");
            Err(Reply::new(
                425,
                "Can't open data connection: not from the control connection's address.",
            ))
        }
        _ => Ok(stream),
    }
}

/// The result of the first of `candidates` to finish, which leaves the list.
async fn next_done(candidates: &mut Vec<Candidate>) -> Result<Stream, Reply> {
    std::future::poll_fn(|cx| {
        let mut done = None;
        for (i, candidate) in candidates.iter_mut().enumerate() {
            if let Poll::Ready(result) = candidate.as_mut().poll(cx) {
                done = Some((i, result));
                break;
            }
        }
        match done {
            Some((i, result)) => {
                drop(candidates.remove(i));
                Poll::Ready(result)
            }
            None => Poll::Pending,
        }
    })
    .await
}

/// The `425` for a data connection that could not be made.
pub(super) fn data_failed(e: &DataError) -> Reply {
    warn!(error = %e, "data connection failed");
    Reply::new(425, format!("Can't open data connection: {e}."))
}
