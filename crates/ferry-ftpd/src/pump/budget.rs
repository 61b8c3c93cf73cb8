//! The large buffers of pipelined uploads and sealed downloads, bounded for all transfers
//! together.

use std::sync::atomic::Ordering;

#[cfg(doc)]
use super::upload::UPLOAD_BUFFER;

/// Bytes of [`PIPELINE_BUDGET`] held by a transfer, given back when it ends.
pub(super) struct Reservation(pub(super) usize);

impl Drop for Reservation {
    fn drop(&mut self) {
        PIPELINE_RESERVED.fetch_sub(self.0, Ordering::AcqRel);
    }
}

/// Most bytes of large buffers all transfers hold at once: those of pipelined uploads (8 MiB
/// each at full size; uploads beyond use [`UPLOAD_BUFFER`]-sized ones, 2 MiB each) and of
/// sealed TLS downloads (2.3 MiB each at full size, 0.6 MiB beyond).
pub(super) const PIPELINE_BUDGET: usize = 256 * 1024 * 1024;

/// Bytes of [`PIPELINE_BUDGET`] reserved by running transfers.
pub(super) static PIPELINE_RESERVED: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// Take `want` bytes of `budget` in `reserved`, if that many are left.
pub(super) fn reserve(
    reserved: &std::sync::atomic::AtomicUsize,
    budget: usize,
    want: usize,
) -> bool {
    let before = reserved.fetch_add(want, Ordering::AcqRel);
    if before + want <= budget {
        true
    } else {
        reserved.fetch_sub(want, Ordering::AcqRel);
        false
    }
}
