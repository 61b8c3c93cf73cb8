//! What every session of a server shares, apart from the accept loop that starts them: the
//! sessions and the server both use it, and neither uses the other's insides.

use std::sync::Arc;

use ferry_auth::Account;
use ferry_core::ServerContext;
use tokio::sync::watch;

use crate::budget::BufferBudget;
use crate::config::ServerConfig;
use crate::counters::TransferCounters;
use crate::data::PortPool;

pub use ferry_core::StorageFactory;

/// What every session shares.
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    /// Users, storage, login throttle and session registry, shared with the other protocols.
    pub(crate) context: Arc<ServerContext>,
    pub(crate) ports: Option<Arc<PortPool>>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) counters: Arc<TransferCounters>,
    /// The large transfer buffers this server's transfers may hold at once.
    pub(crate) buffers: Arc<BufferBudget>,
    /// The balancers whose PROXY headers name the client (on control and data connections).
    pub(crate) proxy: Arc<ferry_core::ProxyTrust>,
    /// The account of anonymous logins, when they are allowed.
    pub(crate) anonymous: Option<Arc<Account>>,
}
