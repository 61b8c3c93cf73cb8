//! [`ServerContext`]: what the servers of every protocol in one process share.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use ferry_auth::{Account, Authenticator, LoginThrottle};

use crate::metrics::{MeteredStorage, Metrics};
use crate::quota::{Quota, QuotaLimits, Usage};
use crate::rate::{Pace, RateLimit};
use crate::sessions::{SessionPermit, SessionRegistry};
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
    /// Most sessions one user may hold at once, unless the user's own `max_sessions` says
    /// otherwise (0: no limit).
    pub max_sessions_per_user: usize,
    /// Failed logins per address within `failed_login_window` before it is refused (0: none).
    pub max_failed_logins_per_ip: u32,
    /// Upload bytes per second of the whole server, every protocol (`None`: unlimited).
    pub upload_rate: Option<u64>,
    /// Download bytes per second of the whole server, every protocol (`None`: unlimited).
    pub download_rate: Option<u64>,
    /// Failed logins per user name within the window after which guesses for it from
    /// addresses that have failed are slowed, never refused (0: no slowdown).
    pub max_failed_logins_per_user: u32,
    /// The first slowdown beyond `max_failed_logins_per_user`, doubled for each further
    /// failure (at most the window).
    pub failed_login_backoff: Duration,
    /// See `max_failed_logins_per_ip`.
    pub failed_login_window: Duration,
    /// Most bytes each user's files may hold, unless the user's own `quota_bytes` says
    /// otherwise (`None` or 0: no quota).
    pub quota_bytes: Option<u64>,
    /// Most files each user may hold, unless the user's own `quota_files` says otherwise
    /// (`None` or 0: no quota).
    pub quota_files: Option<u64>,
}

impl Default for SharedLimits {
    fn default() -> Self {
        SharedLimits {
            max_sessions: 20_000,
            max_sessions_per_ip: 50,
            max_sessions_per_user: 0,
            upload_rate: None,
            download_rate: None,
            max_failed_logins_per_ip: 20,
            max_failed_logins_per_user: 0,
            failed_login_window: Duration::from_secs(300),
            failed_login_backoff: ferry_auth::DEFAULT_BACKOFF,
            quota_bytes: None,
            quota_files: None,
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
    /// Sessions per user unless the account says otherwise (0: no limit).
    pub max_sessions_per_user: usize,
    /// The server's bandwidth, uploads and downloads.
    overall: [Option<Arc<RateLimit>>; 2],
    /// Each user's bandwidth while any of its sessions holds it, by name and direction
    /// (0 upload, 1 download).
    per_user: Mutex<HashMap<(String, usize), Weak<RateLimit>>>,
    /// Quotas of the accounts that set none of their own.
    quota_defaults: QuotaLimits,
    /// What each user with a quota stores, by name and home, shared by its sessions and kept
    /// (counting a home is costly) for as long as the process runs.
    usage: Mutex<HashMap<(String, PathBuf), Arc<Usage>>>,
}

/// Why an account whose credentials were right is not logged in; the text is fit for the
/// client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefusal {
    /// The client's address is outside the account's `allowed_networks`.
    Network,
    /// The account holds its most sessions already.
    TooManySessions,
}

impl std::fmt::Display for LoginRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LoginRefusal::Network => "not allowed from this address",
            LoginRefusal::TooManySessions => "too many sessions for this user",
        })
    }
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
            throttle: LoginThrottle::with_backoff(
                limits.max_failed_logins_per_ip,
                limits.max_failed_logins_per_user,
                limits.failed_login_window,
                limits.failed_login_backoff,
            ),
            sessions: SessionRegistry::new(limits.max_sessions, limits.max_sessions_per_ip),
            transfer_log: TransferLog::new(),
            metrics: Arc::default(),
            max_sessions_per_user: limits.max_sessions_per_user,
            overall: [limits.upload_rate, limits.download_rate].map(|r| r.map(RateLimit::new)),
            per_user: Mutex::new(HashMap::new()),
            quota_defaults: QuotaLimits {
                bytes: limits.quota_bytes.filter(|n| *n > 0),
                files: limits.quota_files.filter(|n| *n > 0),
            },
            usage: Mutex::new(HashMap::new()),
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
        let old = std::mem::replace(&mut *current, auth);
        drop(current);
        // Files may have changed beside Ferry: count them again at the next upload.
        for usage in self.usage_map().values() {
            usage.mark_stale();
        }
        old
    }

    fn usage_map(&self) -> std::sync::MutexGuard<'_, HashMap<(String, PathBuf), Arc<Usage>>> {
        self.usage.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `account`'s quotas (its own, else the server's defaults; 0: none) with the usage its
    /// sessions share; `None` when it has none.
    pub fn quota_for(&self, account: &Account) -> Option<Quota> {
        let pick = |own: Option<u64>, default: Option<u64>| match own {
            Some(0) => None,
            Some(n) => Some(n),
            None => default,
        };
        let limits = QuotaLimits {
            bytes: pick(account.limits.quota_bytes, self.quota_defaults.bytes),
            files: pick(account.limits.quota_files, self.quota_defaults.files),
        };
        if limits.is_unlimited() {
            return None;
        }
        let key = (account.name.clone(), account.home.clone());
        let usage = Arc::clone(self.usage_map().entry(key).or_default());
        Some(Quota::new(limits, usage))
    }

    /// What `account`'s transfers in `direction` (0 upload, 1 download) are charged to: its
    /// own bucket, shared with its other sessions, and the server's.
    fn pace(&self, account: &Account, direction: usize) -> Pace {
        let rate = [account.limits.upload_rate, account.limits.download_rate][direction];
        let own = rate.map(|rate| {
            let mut buckets = self
                .per_user
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // Forget the buckets of users with no session left.
            buckets.retain(|_, b| b.strong_count() > 0);
            let key = (account.name.clone(), direction);
            match buckets.get(&key).and_then(Weak::upgrade) {
                Some(b) if b.rate() == rate => b,
                _ => {
                    let b = RateLimit::new(rate);
                    buckets.insert(key, Arc::downgrade(&b));
                    b
                }
            }
        });
        Pace::new(own.into_iter().chain(self.overall[direction].clone()))
    }

    /// Whether `account` may log in from `ip` (its `allowed_networks`). A protocol asks
    /// before it tells the client the password was right, and answers as to a wrong one.
    pub fn allows_from(&self, account: &Account, ip: IpAddr) -> bool {
        account.limits.allows_address(ip)
    }

    /// Log `account` in on the session of `permit`: its network checked again, then its
    /// sessions (every protocol together) counted against its cap, or the login refused.
    pub fn log_in(&self, permit: &SessionPermit, account: &Account) -> Result<(), LoginRefusal> {
        if !self.allows_from(account, permit.info().peer.ip()) {
            return Err(LoginRefusal::Network);
        }
        let max = account
            .limits
            .max_sessions
            .unwrap_or(self.max_sessions_per_user);
        if permit.log_in(&account.name, max) {
            Ok(())
        } else {
            Err(LoginRefusal::TooManySessions)
        }
    }

    /// The storage of a logged-in `account`, behind its permissions.
    pub fn user_fs(&self, account: Arc<Account>) -> io::Result<UserFs> {
        let storage = (self.storage)(&account)?;
        let storage = MeteredStorage::wrap(storage, Arc::clone(&self.metrics));
        let (upload, download) = (self.pace(&account, 0), self.pace(&account, 1));
        let quota = self.quota_for(&account);
        Ok(UserFs::new(account, storage)
            .with_pace(upload, download)
            .with_quota(quota))
    }
}
