//! Bandwidth limits: token buckets shared by every session they cover (one user's, or the
//! whole server's), charged by the transfer loops once per chunk they move.
//!
//! A bucket lends: a chunk larger than what is left is let through at once and the debt is
//! paid by waiting before the next one, so no transfer is ever cut into smaller pieces (no
//! extra copy, no extra system call) and sessions sharing a bucket are served in turn.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Bytes a bucket holds at most (what may pass at once after an idle spell): a tenth of a
/// second's worth, at least this much.
const MIN_BURST: u64 = 16 * 1024;

/// One token bucket: `rate` bytes per second.
#[derive(Debug)]
pub struct RateLimit {
    rate: u64,
    burst: u64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Bytes that may pass now; negative while a chunk let through is being paid for.
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    /// A bucket of `rate` bytes per second (at least 1).
    pub fn new(rate: u64) -> Arc<RateLimit> {
        let rate = rate.max(1);
        let burst = (rate / 10).max(MIN_BURST);
        Arc::new(RateLimit {
            rate,
            burst,
            state: Mutex::new(Bucket {
                tokens: burst as f64,
                last: Instant::now(),
            }),
        })
    }

    /// Bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Charge `n` bytes; how long to wait before the next chunk.
    fn charge(&self, n: u64) -> Duration {
        let Ok(mut b) = self.state.lock() else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        let earned = now.duration_since(b.last).as_secs_f64() * self.rate as f64;
        b.tokens = (b.tokens + earned).min(self.burst as f64) - n as f64;
        b.last = now;
        if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-b.tokens / self.rate as f64)
        }
    }
}

/// The buckets one direction of a session's transfers is charged to (its user's, the
/// server's); none: unlimited, and free.
#[derive(Debug, Clone, Default)]
pub struct Pace {
    limits: Vec<Arc<RateLimit>>,
}

impl Pace {
    /// Charged to each of `limits`.
    pub fn new(limits: impl IntoIterator<Item = Arc<RateLimit>>) -> Pace {
        Pace {
            limits: limits.into_iter().collect(),
        }
    }

    /// Whether any limit applies (a transfer may then skip its zero-copy paths, which move
    /// bytes without passing through a loop that could be paced).
    pub fn is_limited(&self) -> bool {
        !self.limits.is_empty()
    }

    /// Account `n` bytes moved, waiting as long as the slowest bucket asks.
    pub async fn take(&self, n: usize) {
        let mut wait = Duration::ZERO;
        for limit in &self.limits {
            wait = wait.max(limit.charge(n as u64));
        }
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_bucket_holds_transfers_to_its_rate() {
        let limit = RateLimit::new(100_000);
        let pace = Pace::new([Arc::clone(&limit)]);
        let start = Instant::now();
        for _ in 0..50 {
            pace.take(10_000).await;
        }
        // 500,000 bytes at 100,000 per second, less the first burst.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(4_800), "{took:?}");
        assert!(took <= Duration::from_millis(5_100), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_sharing_a_bucket_share_its_rate() {
        let limit = RateLimit::new(100_000);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let pace = Pace::new([Arc::clone(&limit)]);
            tasks.push(tokio::spawn(async move {
                for _ in 0..25 {
                    pace.take(10_000).await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(9_800), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn no_limit_is_free() {
        let pace = Pace::default();
        assert!(!pace.is_limited());
        let start = Instant::now();
        pace.take(usize::MAX).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
