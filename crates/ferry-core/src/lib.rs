//! What Ferry's protocols share, so that FTP, FTPS and SFTP serve the same users and files
//! under the same rules.
//!
//! # Layout
//! - [`context`]: [`ServerContext`], what the servers of one process share: users, storage per
//!   account, the login throttle, the session registry and the transfer log.
//! - [`events`]: the names of the security events every protocol logs (`event` field).
//! - [`metrics`]: [`Metrics`], what every protocol counts, in Prometheus' text format, and
//!   [`MeteredStorage`], which times storage requests.
//! - [`proxy`]: [`ProxyTrust`], PROXY protocol v1/v2 on accept: which balancers announce the
//!   client, and reading their header.
//! - [`quota`]: [`Quota`], what a user may store (bytes, files) against its [`Usage`], one
//!   per user shared by its sessions: counted by walking its home, then kept up to date.
//! - [`sessions`]: [`SessionRegistry`], every protocol's sessions against one set of limits
//!   (overall and per address), listed, and waited for at shutdown.
//! - [`rate`]: [`RateLimit`] token buckets (one per user and direction, shared by the user's
//!   sessions; one per direction for the server) and [`Pace`], what a transfer loop charges.
//! - [`storage`]: [`StorageFactory`], which storage an account sees ([`local_storage`]: its
//!   home, jailed; one listing cache per factory, [`local_storage_with`] to give it;
//!   [`with_s3`]: `s3://BUCKET/PREFIX` homes from a bucket).
//! - [`userfs`]: [`UserFs`], one logged-in user's view of storage: every file operation of
//!   every protocol goes through it, and it is the one place where the user's permissions and
//!   the backend's capabilities are checked.
//! - [`xferlog`]: [`TransferLog`], one xferlog(5) line per finished transfer of any protocol,
//!   written by a thread of its own behind a bounded queue.
//!
//! A protocol server takes an `Arc<ServerContext>`, admits each connection through
//! [`SessionRegistry::admit`], logs users in through the context's authenticator and throttle,
//! and serves their requests through [`UserFs`], mapping its errors to the protocol's replies.

pub mod context;
pub mod events;
pub mod metrics;
pub mod proxy;
pub mod quota;
pub mod rate;
pub mod sessions;
pub mod storage;
pub mod userfs;
pub mod xferlog;

pub use context::{LoginRefusal, ServerContext, SharedLimits};
pub use metrics::{Ban, Direction, MeteredStorage, Metrics, RunningTransfer, TransferGuard};
pub use proxy::{ProxyError, ProxyTrust};
pub use quota::{Quota, QuotaExceeded, QuotaLimits, Usage, quota_refusal};
pub use rate::{Pace, RateLimit};
pub use sessions::{Protocol, Refusal, SessionInfo, SessionPermit, SessionRegistry};
pub use storage::{
    ROOT_REUSE, S3Settings, StorageFactory, local_storage, local_storage_with, with_s3,
};
pub use userfs::{Operation, UserFs};
pub use xferlog::{Transfer, TransferInfo, TransferLog};
