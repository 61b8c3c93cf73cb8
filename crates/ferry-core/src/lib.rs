//! What Ferry's protocols share, so that FTP, FTPS and SFTP serve the same users and files
//! under the same rules.
//!
//! # Layout
//! - [`context`]: [`ServerContext`], what the servers of one process share: users, storage per
//!   account, the login throttle and the session registry.
//! - [`sessions`]: [`SessionRegistry`], every protocol's sessions against one set of limits
//!   (overall and per address), listed, and waited for at shutdown.
//! - [`storage`]: [`StorageFactory`], which storage an account sees ([`local_storage`]: its
//!   home, jailed; one listing cache per factory, [`local_storage_with`] to give it;
//!   [`with_s3`]: `s3://BUCKET/PREFIX` homes from a bucket).
//! - [`userfs`]: [`UserFs`], one logged-in user's view of storage: every file operation of
//!   every protocol goes through it, and it is the one place where the user's permissions and
//!   the backend's capabilities are checked.
//!
//! A protocol server takes an `Arc<ServerContext>`, admits each connection through
//! [`SessionRegistry::admit`], logs users in through the context's authenticator and throttle,
//! and serves their requests through [`UserFs`], mapping its errors to the protocol's replies.

pub mod context;
pub mod sessions;
pub mod storage;
pub mod userfs;

pub use context::{ServerContext, SharedLimits};
pub use sessions::{Protocol, Refusal, SessionInfo, SessionPermit, SessionRegistry};
pub use storage::{
    ROOT_REUSE, S3Settings, StorageFactory, local_storage, local_storage_with, with_s3,
};
pub use userfs::{Operation, UserFs};
