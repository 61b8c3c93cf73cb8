//! Ferry's FTP server on tokio, around the sans-IO `ferry-proto`.
//!
//! # Layout
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

pub mod config;
pub mod data;
mod pump;
mod replies;
pub mod server;
mod session;
mod shared;
pub mod tls;

pub use config::{Masquerade, ServerConfig};
pub use ferry_auth::TlsPolicy;

/// Process-wide counters.
pub mod stats {
    /// Bytes sent with `sendfile` (zero-copy downloads) since the process started.
    pub fn zero_copy_bytes() -> u64 {
        crate::pump::ZERO_COPY_BYTES.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes of files that TLS downloads sealed on the blocking pool (large binary downloads
    /// from local files) since the process started.
    pub fn sealed_download_bytes() -> u64 {
        crate::pump::SEALED_DOWNLOAD_BYTES.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Downloads that began on the quick path (the data connection waiting already, the file
    /// sent at once from the session, `150` and `226` in one segment) since the process started.
    pub fn quick_downloads() -> u64 {
        crate::pump::QUICK_DOWNLOADS.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes that uploads wrote straight into a local file (no async file wrapper, no
    /// blocking-pool round trip per write) since the process started.
    pub fn direct_upload_bytes() -> u64 {
        crate::pump::DIRECT_UPLOAD_BYTES.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Of those, the bytes a blocking-pool job wrote while the session received the next buffer
    /// (uploads past their first 4 MiB).
    pub fn pipelined_upload_bytes() -> u64 {
        crate::pump::PIPELINED_UPLOAD_BYTES.load(std::sync::atomic::Ordering::Relaxed)
    }
}
pub use server::{Server, StorageFactory, local_storage};
pub use tls::{CertStore, TlsConfig};
