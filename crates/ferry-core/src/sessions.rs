//! [`SessionRegistry`]: the sessions of every protocol, counted against one set of limits
//! (overall and per client address), listed for whoever watches the server, and waited for at
//! shutdown.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;

/// The protocol a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// FTP, plain or over TLS.
    Ftp,
    /// SFTP over SSH.
    Sftp,
}

impl Protocol {
    /// Lower-case name (`ftp`, `sftp`), for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Ftp => "ftp",
            Protocol::Sftp => "sftp",
        }
    }
}

/// Why a connection was not admitted; the text is fit for the client (FTP sends it in `421`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_sessions` reached.
    TooMany,
    /// `max_sessions_per_ip` reached for the client's address.
    TooManyFromAddress,
}

impl Refusal {
    /// What the client is told.
    pub fn text(self) -> &'static str {
        match self {
            Refusal::TooMany => "Too many connections",
            Refusal::TooManyFromAddress => "Too many connections from your address",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text())
    }
}

/// One admitted session, as the registry lists it.
#[derive(Debug)]
pub struct SessionInfo {
    /// Unique within the process.
    pub id: u64,
    pub protocol: Protocol,
    /// The client.
    pub peer: SocketAddr,
    /// When it was admitted.
    pub since: SystemTime,
    user: Mutex<Option<Arc<str>>>,
}

impl SessionInfo {
    /// The user logged in on this session, if any.
    pub fn user(&self) -> Option<Arc<str>> {
        lock(&self.user).clone()
    }
}

#[derive(Default)]
struct Inner {
    per_ip: HashMap<IpAddr, usize>,
    /// Sessions logged in, per user name.
    per_user: HashMap<Arc<str>, usize>,
    sessions: HashMap<u64, Arc<SessionInfo>>,
}

/// The sessions of a server (of every protocol it serves), against one set of limits.
pub struct SessionRegistry {
    max_total: usize,
    max_per_ip: usize,
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    session_ended: Notify,
    refusals: Mutex<RefusalRate>,
}

/// Refusals logged in the current second, and those left unlogged: a flood of connections
/// must not become a flood of log lines.
#[derive(Default)]
struct RefusalRate {
    second: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl RefusalRate {
    /// Refusals logged one by one per second at most.
    const PER_SECOND: u32 = 10;
}

impl std::fmt::Debug for SessionRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRegistry")
            .field("max_total", &self.max_total)
            .field("max_per_ip", &self.max_per_ip)
            .field("count", &self.count())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update below leaves the maps consistent at each step.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SessionRegistry {
    /// At most `max_total` sessions, and `max_per_ip` from one address (0: no limit).
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(SessionRegistry {
            max_total,
            max_per_ip,
            inner: Mutex::new(Inner::default()),
            next_id: AtomicU64::new(1),
            session_ended: Notify::new(),
            refusals: Mutex::new(RefusalRate::default()),
        })
    }

    /// Admit a session of `protocol` from `peer`, or say why not (and log it: the
    /// `session_refused` event, at most [`RefusalRate::PER_SECOND`] a second, then a count).
    /// The session counts until the returned [`SessionPermit`] is dropped.
    pub fn admit(
        self: &Arc<Self>,
        protocol: Protocol,
        peer: SocketAddr,
    ) -> Result<SessionPermit, Refusal> {
        self.try_admit(protocol, peer).inspect_err(|why| {
            self.log_refusal(protocol, peer, *why);
        })
    }

    fn try_admit(
        self: &Arc<Self>,
        protocol: Protocol,
        peer: SocketAddr,
    ) -> Result<SessionPermit, Refusal> {
        let ip = peer.ip().to_canonical();
        let mut inner = lock(&self.inner);
        if self.max_total != 0 && inner.sessions.len() >= self.max_total {
            return Err(Refusal::TooMany);
        }
        let mine = inner.per_ip.get(&ip).copied().unwrap_or(0);
        if self.max_per_ip != 0 && mine >= self.max_per_ip {
            return Err(Refusal::TooManyFromAddress);
        }
        let info = Arc::new(SessionInfo {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            protocol,
            peer,
            since: SystemTime::now(),
            user: Mutex::new(None),
        });
        inner.per_ip.insert(ip, mine + 1);
        inner.sessions.insert(info.id, Arc::clone(&info));
        Ok(SessionPermit {
            registry: Arc::clone(self),
            info,
        })
    }

    fn log_refusal(&self, protocol: Protocol, peer: SocketAddr, why: Refusal) {
        let mut rate = lock(&self.refusals);
        let now = Instant::now();
        if rate
            .second
            .is_none_or(|s| now.duration_since(s) >= Duration::from_secs(1))
        {
            let suppressed = std::mem::take(&mut rate.suppressed);
            *rate = RefusalRate {
                second: Some(now),
                ..RefusalRate::default()
            };
            if suppressed > 0 {
                tracing::warn!(
                    event = crate::events::SESSION_REFUSED,
                    suppressed,
                    "connections refused by the session limits, not logged one by one"
                );
            }
        }
        if rate.logged >= RefusalRate::PER_SECOND {
            rate.suppressed += 1;
            return;
        }
        rate.logged += 1;
        drop(rate);
        tracing::warn!(
            event = crate::events::SESSION_REFUSED,
            protocol = protocol.name(),
            %peer,
            reason = why.text(),
            "connection refused"
        );
    }

    /// Sessions admitted and not ended.
    pub fn count(&self) -> usize {
        lock(&self.inner).sessions.len()
    }

    /// The sessions now, oldest first.
    pub fn sessions(&self) -> Vec<Arc<SessionInfo>> {
        let mut all: Vec<_> = lock(&self.inner).sessions.values().cloned().collect();
        all.sort_by_key(|s| s.id);
        all
    }

    /// Sessions of `protocol` admitted and not ended.
    pub fn count_of(&self, protocol: Protocol) -> usize {
        lock(&self.inner)
            .sessions
            .values()
            .filter(|s| s.protocol == protocol)
            .count()
    }

    /// Wait until no session is left.
    pub async fn wait_until_empty(&self) {
        self.wait_until(|| self.count() == 0).await;
    }

    /// Wait until no session of `protocol` is left (one protocol's server shutting down
    /// while another goes on).
    pub async fn wait_until_none_of(&self, protocol: Protocol) {
        self.wait_until(|| self.count_of(protocol) == 0).await;
    }

    async fn wait_until(&self, done: impl Fn() -> bool) {
        loop {
            let notified = self.session_ended.notified();
            if done() {
                return;
            }
            notified.await;
        }
    }

    /// Sessions logged in as `user` now, every protocol together.
    pub fn count_of_user(&self, user: &str) -> usize {
        lock(&self.inner).per_user.get(user).copied().unwrap_or(0)
    }

    fn release(&self, info: &SessionInfo) {
        let ip = info.peer.ip().to_canonical();
        let mut inner = lock(&self.inner);
        if let Some(user) = lock(&info.user).take() {
            leave(&mut inner, &user);
        }
        inner.sessions.remove(&info.id);
        if let Some(n) = inner.per_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inner.per_ip.remove(&ip);
            }
        }
        drop(inner);
        self.session_ended.notify_waiters();
    }
}

/// One session less for `user`.
fn leave(inner: &mut Inner, user: &str) {
    if let Some(n) = inner.per_user.get_mut(user) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            inner.per_user.remove(user);
        }
    }
}

/// One session's place in its registry; released on drop (when the session ends).
#[derive(Debug)]
pub struct SessionPermit {
    registry: Arc<SessionRegistry>,
    info: Arc<SessionInfo>,
}

impl SessionPermit {
    /// What the registry shows of this session.
    pub fn info(&self) -> &Arc<SessionInfo> {
        &self.info
    }

    /// Record who logged in (or `None` after a logout, FTP's `REIN`), with no limit on the
    /// user's sessions.
    pub fn set_user(&self, user: Option<&str>) {
        match user {
            Some(user) => {
                self.log_in(user, 0);
            }
            None => {
                let mut inner = lock(&self.registry.inner);
                if let Some(old) = lock(&self.info.user).take() {
                    leave(&mut inner, &old);
                }
            }
        }
    }

    /// Record that `user` logged in on this session, unless `user` already holds `max`
    /// sessions (0: no limit): `false` then, and the session stays as it was. Checked and
    /// counted at once, so logins racing each other cannot exceed `max` together.
    pub fn log_in(&self, user: &str, max: usize) -> bool {
        let mut inner = lock(&self.registry.inner);
        let mut current = lock(&self.info.user);
        let already = current.as_deref() == Some(user);
        let held = inner.per_user.get(user).copied().unwrap_or(0);
        if !already && max != 0 && held >= max {
            return false;
        }
        if let Some(old) = current.take() {
            leave(&mut inner, &old);
        }
        let user: Arc<str> = Arc::from(user);
        *inner.per_user.entry(Arc::clone(&user)).or_insert(0) += 1;
        *current = Some(user);
        true
    }
}

impl Drop for SessionPermit {
    fn drop(&mut self) {
        self.registry.release(&self.info);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at(ip: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::from((ip, port))
    }

    #[test]
    fn limits_hold_over_every_protocol() {
        let reg = SessionRegistry::new(3, 2);
        let a = reg.admit(Protocol::Ftp, at([127, 0, 0, 1], 1)).unwrap();
        let b = reg.admit(Protocol::Sftp, at([127, 0, 0, 1], 2)).unwrap();
        // Two from one address, whatever the protocols: the third is refused.
        assert_eq!(
            reg.admit(Protocol::Ftp, at([127, 0, 0, 1], 3)).unwrap_err(),
            Refusal::TooManyFromAddress
        );
        let c = reg.admit(Protocol::Sftp, at([127, 0, 0, 2], 1)).unwrap();
        assert_eq!(
            reg.admit(Protocol::Ftp, at([127, 0, 0, 3], 1)).unwrap_err(),
            Refusal::TooMany
        );
        b.set_user(Some("alice"));
        let listed = reg.sessions();
        assert_eq!(listed.len(), 3);
        assert_eq!(listed[1].protocol, Protocol::Sftp);
        assert_eq!(listed[1].user().as_deref(), Some("alice"));
        drop((a, b));
        assert_eq!(reg.count(), 1);
        reg.admit(Protocol::Ftp, at([127, 0, 0, 1], 4)).unwrap();
        drop(c);
    }

    #[test]
    fn sessions_per_user_are_capped_and_given_back() {
        let reg = SessionRegistry::new(0, 0);
        let a = reg.admit(Protocol::Ftp, at([127, 0, 0, 1], 1)).unwrap();
        let b = reg.admit(Protocol::Sftp, at([127, 0, 0, 1], 2)).unwrap();
        let c = reg.admit(Protocol::Ftp, at([127, 0, 0, 1], 3)).unwrap();
        assert!(a.log_in("alice", 2));
        assert!(b.log_in("alice", 2));
        assert!(!c.log_in("alice", 2), "a third session over the cap");
        assert!(c.info().user().is_none());
        assert!(c.log_in("bob", 2), "other users are not affected");
        assert_eq!(reg.count_of_user("alice"), 2);
        // A logout (REIN) and a session's end each give a place back.
        a.set_user(None);
        assert!(c.log_in("alice", 2));
        assert_eq!(reg.count_of_user("bob"), 0);
        drop(b);
        assert_eq!(reg.count_of_user("alice"), 1);
        drop(c);
        assert_eq!(reg.count_of_user("alice"), 0);
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_their_ipv4() {
        let reg = SessionRegistry::new(0, 1);
        let _v4 = reg.admit(Protocol::Ftp, at([127, 0, 0, 1], 1)).unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:2".parse().unwrap();
        assert_eq!(
            reg.admit(Protocol::Sftp, mapped).unwrap_err(),
            Refusal::TooManyFromAddress
        );
    }

    #[tokio::test]
    async fn shutdown_waits_for_the_last_session() {
        let reg = SessionRegistry::new(0, 0);
        let permit = reg.admit(Protocol::Sftp, at([127, 0, 0, 1], 1)).unwrap();
        let waiting = {
            let reg = Arc::clone(&reg);
            tokio::spawn(async move { reg.wait_until_empty().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        let ftp = reg.admit(Protocol::Ftp, at([127, 0, 0, 1], 2)).unwrap();
        let ftp_done = {
            let reg = Arc::clone(&reg);
            tokio::spawn(async move { reg.wait_until_none_of(Protocol::Ftp).await })
        };
        drop(permit);
        // The SFTP session is gone; FTP's is not.
        let wait = std::time::Duration::from_secs(10);
        tokio::time::timeout(wait, async {
            while reg.count_of(Protocol::Sftp) > 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        assert!(!waiting.is_finished() && !ftp_done.is_finished());
        drop(ftp);
        tokio::time::timeout(wait, waiting).await.unwrap().unwrap();
        tokio::time::timeout(wait, ftp_done).await.unwrap().unwrap();
    }
}
