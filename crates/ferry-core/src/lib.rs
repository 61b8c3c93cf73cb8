//! What Ferry's protocols share, so that FTP, FTPS and SFTP serve the same users and files
//! under the same rules.
//!
//! # Layout
//! - [`userfs`]: [`UserFs`], one logged-in user's view of storage: every file operation of
//!   every protocol goes through it, and it is the one place where the user's permissions and
//!   the backend's capabilities are checked.

pub mod userfs;

pub use userfs::{Operation, UserFs};
