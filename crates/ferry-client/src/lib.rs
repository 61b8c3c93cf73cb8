//! Ferry's async FTP/FTPS client, built on the sans-IO [`ferry_proto`], and its SFTP client,
//! built on [`ferry_sftp_proto`].
//!
//! # Layout
//! - [`error`]: [`Error`], one typed failure per kind, each with a documented exit code.
//! - [`options`]: [`ConnectOptions`], [`Mode`] (auto, passive, EPSV, active), timeouts and the
//!   [`Dialogue`] hook that reports every command and reply (with `PASS` masked).
//! - [`features`]: [`Features`], the parsed `FEAT` reply.
//! - [`client`]: [`Client`], the control connection: login, navigation, file commands,
//!   listings, and streaming transfers ([`Download`], [`Upload`]).
//! - [`tls`]: FTPS: [`TlsMode`], [`Trust`] (system roots, CA file, pinned fingerprints,
//!   insecure), the per-session ticket store behind data-channel session reuse.
//! - `data`: opening data connections in each mode and choosing the address of a `227`.
//! - [`sftp`]: [`SftpClient`], SFTP version 3 over SSH (russh, ring): host keys checked
//!   against `known_hosts`, logins with keys, the agent or a password, pipelined transfers.
//! - [`checksum`]: server-side checksums (`HASH`, `XSHA256`, `XSHA512`, `XMD5`) and their local
//!   counterparts.
//!
//! # Against a hostile server
//! Replies are decoded with a bounded [`ferry_proto::ReplyDecoder`]; listings are read up to
//! [`MAX_LISTING`] bytes; every wait on the network has a timeout; no server-controlled value
//! can make the client panic. Paths containing CR, LF or NUL are refused before they reach the
//! wire, so a file name can never smuggle a second command.

pub mod checksum;
pub mod client;
mod data;
pub mod error;
pub mod features;
pub mod options;
pub mod sftp;
pub mod tls;

pub use client::{Client, Download, StoreMode, Upload};
pub use error::Error;
pub use features::Features;
pub use ferry_proto::Reply;
pub use ferry_proto::listing::{EntryKind, ParsedEntry};
pub use options::{ConnectOptions, Dialogue, Mode, Observer};
pub use sftp::{SftpClient, SftpOptions, SshAuth};
pub use tls::{TlsClientConfig, TlsMode, Trust};

/// Largest listing (`LIST`, `MLSD`, `NLST`) the client accepts, in bytes.
pub const MAX_LISTING: usize = 64 * 1024 * 1024;

/// Result with the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
