//! Ferry's FTP server on tokio, around the sans-IO `ferry-proto`.
//!
//! # Layout
//! - [`budget`]: [`BufferBudget`], the large transfer buffers a server's transfers may hold at
//!   once.
//! - [`counters`]: [`TransferCounters`], what a server's transfers did, by the path they took.
//! - [`config`]: [`ServerConfig`], validated settings (the binary maps `ferry.toml` onto it).
//! - [`server`]: [`Server`], the listeners, connection limits and graceful shutdown.
//! - `session`: one task per control connection; typed login states; the command dispatch.
//! - `shared`: what every session of a server shares (settings, logins, storage, ports,
//!   shutdown), used by both `server` and `session`.
//! - [`data`]: the data-connection methods (active, passive, extended passive), the passive
//!   port pool and peer checks.
//! - `pump`: the byte pumps of transfers (copies with `TYPE A` conversion, `sendfile`, TLS
//!   sealing on the blocking pool, pipelined uploads); see its own layout note.
//! - `replies`: the one table from storage errors to FTP replies.
//! - [`tls`]: FTP over TLS: certificates, rustls configuration, data-channel session reuse.

pub mod budget;
pub mod config;
pub mod counters;
pub mod data;
mod pump;
mod replies;
pub mod server;
mod session;
mod shared;
pub mod tls;

pub use config::{Masquerade, ServerConfig, TlsPolicy};

pub use budget::{BufferBudget, Reservation};
pub use counters::TransferCounters;
pub use server::{Listeners, Server, StorageFactory, local_storage};
pub use tls::{CertStore, TlsConfig};
