//! Ferry's SFTP server: SSH (russh, `ring` only) carrying SFTP version 3, served from the same
//! users ([`ferry_auth`]) and files ([`ferry_vfs`]) as FTP.
//!
//! # Layout
//! - [`server`]: [`SftpServer`] (host key, SSH configuration, accept loop with `TCP_NODELAY`
//!   and a login grace timer), [`SftpConfig`], [`StorageFactory`].
//! - `ssh`: the per-connection russh handler: password logins through
//!   [`Authenticator`](ferry_auth::Authenticator), session channels that may start the `sftp`
//!   subsystem; shell, exec (legacy `scp` included), pty, env, X11, agent and port forwarding
//!   refused with a message.
//! - `sftp`: the pipelined request loop on one channel ([`SftpLimits`]).
//! - `fs`: every storage call and permission check (the seam for a shared authorizing file
//!   system); `status`: the one table from storage errors to `SSH_FX_*`.
//! - [`hostkey`]: the Ed25519 host key in the state directory and its `SHA256:` fingerprint.

mod fs;
pub mod hostkey;
pub mod server;
mod sftp;
mod ssh;
mod status;

pub use server::{SftpConfig, SftpServer, StorageFactory, local_storage};
pub use sftp::SftpLimits;
