//! [`ServerContext`]: what the servers of every protocol in one process share.

use std::io;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use ferry_auth::{Account, Authenticator, LoginThrottle};

use crate::metrics::{MeteredStorage, Metrics};
use crate::sessions::SessionRegistry;
use crate::storage::StorageFactory;
use crate::userfs::UserFs;
use crate::xferlog::TransferLog;

/// The limits every protocol counts against together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedLimits {
    /// Most sessions at once (0: no limit).
    pub max_sessions: usize,
    /// Most sessions at once from one client address (0: no limit).
    pub max_sessions_per_ip: usize,
    /// Failed logins per address within `failed_login_window` before it is refused (0: none).
    pub max_failed_logins_per_ip: u32,
    /// Failed logins per user name within the window (0: no limit).
    pub max_failed_logins_per_user: u32,
    /// See `max_failed_logins_per_ip`.
    pub failed_login_window: Duration,
}

impl Default for SharedLimits {
    fn default() -> Self {
        SharedLimits {
            max_sessions: 20_000,
            max_sessions_per_ip: 50,
            max_failed_logins_per_ip: 20,
            max_failed_logins_per_user: 0,
            failed_login_window: Duration::from_secs(300),
        }
    }
}

/// Users, their storage, the login throttle and the session registry: one of each per
/// process, handed to the FTP and the SFTP server alike, so that an account logs in the same
/// way, sees the same files and counts against the same limits whatever the protocol.
pub struct ServerContext {
    /// Who may log in, and how; replaced whole by [`ServerContext::replace_auth`].
    auth: RwLock<Arc<Authenticator>>,
    /// Which storage an account sees.
    pub storage: StorageFactory,
    /// Failed logins per address and per user, over every protocol.
    pub throttle: LoginThrottle,
    /// Sessions of every protocol, against the shared limits.
    pub sessions: Arc<SessionRegistry>,
    /// Every protocol's finished transfers, one xferlog line each (off until opened).
    pub transfer_log: TransferLog,
    /// What every protocol counts (logins, bans, transfers, storage latency).
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for ServerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerContext")
            .field("auth", &self.auth())
            .field("sessions", &self.sessions)
            .finish_non_exhaustive()
    }
}

impl ServerContext {
    /// A context with `limits`.
    pub fn new(
        auth: Arc<Authenticator>,
        storage: StorageFactory,
        limits: SharedLimits,
    ) -> Arc<ServerContext> {
        Arc::new(ServerContext {
            auth: RwLock::new(auth),
            storage,
            throttle: LoginThrottle::new(
                limits.max_failed_logins_per_ip,
                limits.max_failed_logins_per_user,
                limits.failed_login_window,
            ),
            sessions: SessionRegistry::new(limits.max_sessions, limits.max_sessions_per_ip),
            transfer_log: TransferLog::new(),
            metrics: Arc::default(),
        })
    }

    /// Who may log in, and how, as of now: read once per login attempt. A session keeps the
    /// account it logged in with whatever replaces this later.
    pub fn auth(&self) -> Arc<Authenticator> {
        // The lock is held only to clone or swap an `Arc`: nothing can poison it half-way.
        Arc::clone(&self.auth.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Serve `auth`'s users from the next login on (a configuration reload); sessions logged
    /// in already are not touched. Returns the users replaced.
    pub fn replace_auth(&self, auth: Arc<Authenticator>) -> Arc<Authenticator> {
        let mut current = self.auth.write().unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *current, auth)
    }

    /// The storage of a logged-in `account`, behind its permissions.
    pub fn user_fs(&self, account: Arc<Account>) -> io::Result<UserFs> {
        let storage = (self.storage)(&account)?;
        let storage = MeteredStorage::wrap(storage, Arc::clone(&self.metrics));
        Ok(UserFs::new(account, storage))
    }
}
