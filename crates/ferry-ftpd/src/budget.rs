//! Room for the large buffers transfers take when they can, bounded for a whole server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The large buffers all transfers of a server hold at once, bounded: a transfer takes large
/// buffers while the budget has room for them, and makes do with small ones beyond. Every
/// transfer of the server (uploads and downloads) draws on the same budget; another server
/// shares it only when handed the same one.
#[derive(Debug)]
pub struct BufferBudget {
    limit: usize,
    reserved: AtomicUsize,
}

impl BufferBudget {
    /// The default limit. Pipelined uploads take 8 MiB each at full size (2 MiB beyond) and
    /// sealed TLS downloads 2.3 MiB (0.6 MiB beyond).
    pub const DEFAULT_LIMIT: usize = 256 * 1024 * 1024;

    /// A budget of `limit` bytes, none of them reserved.
    pub fn new(limit: usize) -> BufferBudget {
        BufferBudget {
            limit,
            reserved: AtomicUsize::new(0),
        }
    }

    /// Take `bytes` of the budget if that many are left; they come back when the reservation
    /// drops.
    pub fn reserve(self: &Arc<Self>, bytes: usize) -> Option<Reservation> {
        let before = self.reserved.fetch_add(bytes, Ordering::AcqRel);
        if before + bytes <= self.limit {
            Some(Reservation {
                budget: Arc::clone(self),
                bytes,
            })
        } else {
            self.reserved.fetch_sub(bytes, Ordering::AcqRel);
            None
        }
    }

    /// Bytes reserved by running transfers.
    pub fn reserved(&self) -> usize {
        self.reserved.load(Ordering::Acquire)
    }

    /// Most bytes that may be reserved at once.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl Default for BufferBudget {
    fn default() -> BufferBudget {
        BufferBudget::new(BufferBudget::DEFAULT_LIMIT)
    }
}

/// Bytes of a [`BufferBudget`] held by one transfer, given back when it drops.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<BufferBudget>,
    bytes: usize,
}

impl Reservation {
    /// The bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.reserved.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stay_within_the_limit_and_come_back() {
        let budget = Arc::new(BufferBudget::new(10));
        let six = budget.reserve(6).unwrap();
        assert!(budget.reserve(5).is_none(), "over the limit");
        assert_eq!(budget.reserved(), 6, "a refused reservation holds nothing");
        let four = budget.reserve(4).unwrap();
        assert_eq!((six.bytes(), four.bytes(), budget.reserved()), (6, 4, 10));
        drop(six);
        assert_eq!(budget.reserved(), 4);
        assert!(budget.reserve(6).is_some());
        // Another budget is another limit.
        let other = Arc::new(BufferBudget::new(10));
        assert!(other.reserve(10).is_some());
    }
}
