//! What one server's transfers have done, by the path they took.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counts of one server's transfers by the path they took, since the server was made: for
/// observability, and so that tests can prove a path is taken. Each server has its own.
#[derive(Debug, Default)]
pub struct TransferCounters {
    zero_copy_bytes: AtomicU64,
    sealed_download_bytes: AtomicU64,
    quick_downloads: AtomicU64,
    direct_upload_bytes: AtomicU64,
    pipelined_upload_bytes: AtomicU64,
}

impl TransferCounters {
    /// Bytes sent with `sendfile` (zero-copy downloads).
    pub fn zero_copy_bytes(&self) -> u64 {
        self.zero_copy_bytes.load(Ordering::Relaxed)
    }

    /// Bytes of files that TLS downloads sealed on the blocking pool (large binary downloads
    /// from local files).
    pub fn sealed_download_bytes(&self) -> u64 {
        self.sealed_download_bytes.load(Ordering::Relaxed)
    }

    /// Downloads that began on the quick path (the data connection waiting already, the file
    /// sent at once from the session, `150` and `226` in one segment).
    pub fn quick_downloads(&self) -> u64 {
        self.quick_downloads.load(Ordering::Relaxed)
    }

    /// Bytes that uploads wrote straight into a local file (no async file wrapper, no
    /// blocking-pool round trip per write).
    pub fn direct_upload_bytes(&self) -> u64 {
        self.direct_upload_bytes.load(Ordering::Relaxed)
    }

    /// Of those, the bytes a blocking-pool job wrote while the session received the next
    /// buffer (uploads past their first 4 MiB).
    pub fn pipelined_upload_bytes(&self) -> u64 {
        self.pipelined_upload_bytes.load(Ordering::Relaxed)
    }

    /// Count `n` bytes sent with `sendfile`.
    pub fn add_zero_copy(&self, n: u64) {
        self.zero_copy_bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Count `n` bytes of a file sealed on the blocking pool.
    pub fn add_sealed_download(&self, n: u64) {
        self.sealed_download_bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Count a download that began on the quick path.
    pub fn add_quick_download(&self) {
        self.quick_downloads.fetch_add(1, Ordering::Relaxed);
    }

    /// Count `n` bytes an upload wrote straight into a local file from the session.
    pub fn add_direct_upload(&self, n: u64) {
        self.direct_upload_bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Count `n` bytes a pipelined upload's blocking-pool job wrote (a direct upload's too).
    pub fn add_pipelined_upload(&self, n: u64) {
        self.direct_upload_bytes.fetch_add(n, Ordering::Relaxed);
        self.pipelined_upload_bytes.fetch_add(n, Ordering::Relaxed);
    }
}
