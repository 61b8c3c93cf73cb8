//! What every session of a server shares, apart from the accept loop that starts them: the
//! sessions and the server both use it, and neither uses the other's insides.

use std::io;
use std::sync::Arc;

use ferry_auth::{Account, Authenticator, LoginThrottle};
use ferry_vfs::Storage;
use tokio::sync::watch;

use crate::budget::BufferBudget;
use crate::config::ServerConfig;
use crate::counters::TransferCounters;
use crate::data::PortPool;

#[cfg(doc)]
use ferry_vfs::LocalFs;

/// Makes the storage a logged-in account sees. The default serves `account.home` with [`LocalFs`].
pub type StorageFactory =
    Arc<dyn Fn(&Account) -> io::Result<Arc<dyn Storage>> + Send + Sync + 'static>;

/// What every session shares.
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) auth: Arc<Authenticator>,
    pub(crate) storage: StorageFactory,
    pub(crate) ports: Option<Arc<PortPool>>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) throttle: LoginThrottle,
    pub(crate) counters: Arc<TransferCounters>,
    /// The large transfer buffers this server's transfers may hold at once.
    pub(crate) buffers: Arc<BufferBudget>,
    /// The account of anonymous logins, when they are allowed.
    pub(crate) anonymous: Option<Arc<Account>>,
}
