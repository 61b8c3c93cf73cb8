//! Password-guess limits per client address, and a per-user-name slowdown, for every protocol.
//!
//! A guess is counted when it *starts*, not when its answer is known: a client that sends
//! many guesses at once over many connections cannot have more of them checked than the
//! limit allows, because each one takes a place before its password is hashed. A guess that
//! turns out right gives its place back; a wrong one keeps it until the window has passed.
//! When every place is taken by guesses still being checked, the next guess waits (holding no
//! thread) to learn whether a place comes free or the address is refused.
//!
//! An address is refused once it has failed too often. A user name never is: a refusal by
//! name would let anyone lock a user out by sending wrong passwords for it. Once a name has
//! failed too often, a guess for it is slowed instead, with a delay that doubles with every
//! further failure, and only when it comes from an address that has failed within the window
//! (or has another guess running): the user, logging in from an address of their own, is
//! answered at once.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Why a login may not be tried now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// Too many failed logins from this client address within the window.
    Address,
}

impl std::fmt::Display for Throttled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Throttled::Address => "too many failed logins from this address",
        })
    }
}

/// Limits on failed logins; shared by every session of every protocol (cheap to clone).
///
/// Guarantees against a hostile client:
/// - within one window, at most `per_address` wrong passwords from one address are ever
///   checked, however the guesses are spread over connections and however many arrive at once;
/// - once `per_user` guesses for one name have failed within the window, every further guess
///   for it from an address that has failed (or is guessing already) waits `backoff`, doubled
///   for each failure beyond the limit (at most the window) before its password is checked;
/// - a guess from an address with no failure within the window and nothing running is never
///   refused nor slowed because of its user name: nobody can lock a user out from elsewhere.
///   The cost: a guesser with many addresses gets one prompt guess per address (then
///   `per_address` slowed ones) per window.
///
/// A limit of 0 turns that limit off.
#[derive(Clone)]
pub struct LoginThrottle {
    inner: Arc<Inner>,
}

struct Inner {
    per_address: u32,
    per_user: u32,
    window: Duration,
    backoff: Duration,
    state: Mutex<State>,
    /// Woken whenever a guess ends, for the guesses waiting for a place.
    released: Notify,
}

struct State {
    addresses: Buckets<IpAddr>,
    /// Keyed by a keyed hash of the name: a flood of long made-up names costs 8 bytes each.
    users: Buckets<u64>,
    hasher: std::collections::hash_map::RandomState,
}

/// One guess in progress. Call [`succeeded`](LoginAttempt::succeeded) when the password was
/// right; dropped otherwise (the password was wrong, or the check never finished), it counts
/// as a failed login.
#[must_use = "dropping the attempt counts a failed login"]
pub struct LoginAttempt {
    inner: Arc<Inner>,
    address: Option<IpAddr>,
    user: Option<u64>,
}

/// The first delay for a guess beyond the per-user limit, unless set otherwise.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);

impl LoginThrottle {
    /// At most `per_address` failed logins per client address within `window`; guesses for a
    /// name beyond `per_user` failures slowed (0: no limit of that kind), from
    /// [`DEFAULT_BACKOFF`] on.
    pub fn new(per_address: u32, per_user: u32, window: Duration) -> Self {
        Self::with_backoff(per_address, per_user, window, DEFAULT_BACKOFF)
    }

    /// As [`new`](LoginThrottle::new), the first delay beyond the per-user limit `backoff`.
    pub fn with_backoff(
        per_address: u32,
        per_user: u32,
        window: Duration,
        backoff: Duration,
    ) -> Self {
        LoginThrottle {
            inner: Arc::new(Inner {
                per_address,
                per_user,
                window,
                backoff,
                state: Mutex::new(State {
                    addresses: Buckets::default(),
                    users: Buckets::default(),
                    hasher: std::collections::hash_map::RandomState::new(),
                }),
                released: Notify::new(),
            }),
        }
    }

    /// How long failures count.
    pub fn window(&self) -> Duration {
        self.inner.window
    }

    /// Take a place for one password check by `user` from `address`, waiting while every
    /// place is held by checks still running, then for the slowdown the name has earned if
    /// this address is a suspect. `Err` when the address is refused: the password must then
    /// not be checked at all.
    pub async fn begin(&self, address: IpAddr, user: &str) -> Result<LoginAttempt, Throttled> {
        let address = address.to_canonical();
        loop {
            // Registered before looking, so that a guess ending in between is not missed.
            let released = self.inner.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            match self.inner.try_begin(address, user) {
                Ok(Some((attempt, delay))) => {
                    if !delay.is_zero() {
                        // The place is held meanwhile: a guesser who gives up still pays.
                        tokio::time::sleep(delay).await;
                    }
                    return Ok(attempt);
                }
                Ok(None) => released.await,
                Err(why) => return Err(why),
            }
        }
    }
}

impl Inner {
    /// Whether addresses are tracked at all (for their own limit, or to tell suspects).
    fn tracks_addresses(&self) -> bool {
        self.per_address != 0 || self.per_user != 0
    }

    /// The delay for a guess when `tries` guesses for its name have failed or are running.
    fn slowdown(&self, tries: u32) -> Duration {
        if self.per_user == 0 || tries < self.per_user {
            return Duration::ZERO;
        }
        let doublings = (tries - self.per_user).min(20);
        self.backoff
            .saturating_mul(1 << doublings)
            .min(self.window.max(self.backoff))
    }

    /// A place and the delay to wait before checking if one is free, `None` if all are held
    /// by running checks, `Err` if refused.
    fn try_begin(
        self: &Arc<Self>,
        address: IpAddr,
        user: &str,
    ) -> Result<Option<(LoginAttempt, Duration)>, Throttled> {
        let Ok(mut state) = self.state.lock() else {
            // A panic elsewhere poisoned the lock: refuse rather than check without limits.
            return Err(Throttled::Address);
        };
        let now = Instant::now();
        let user_key = (self.per_user != 0).then(|| state.hasher.hash_one(user));
        let (suspect, room) = match state.addresses.get(&address, self.window, now) {
            Some(b) => (b.failures > 0 || b.in_flight > 0, b.room(self.per_address)),
            None => (false, Room::Free),
        };
        match room {
            Room::Refused => return Err(Throttled::Address),
            Room::Busy => return Ok(None),
            Room::Free => {}
        }
        let delay = match user_key {
            Some(k) if suspect => {
                let tries = state
                    .users
                    .get(&k, self.window, now)
                    .map_or(0, |b| b.failures.saturating_add(b.in_flight));
                self.slowdown(tries)
            }
            _ => Duration::ZERO,
        };
        let address = self.tracks_addresses().then_some(address);
        if let Some(a) = address {
            state.addresses.start(a, self.window, now);
        }
        if let Some(k) = user_key {
            state.users.start(k, self.window, now);
        }
        let attempt = LoginAttempt {
            inner: Arc::clone(self),
            address,
            user: user_key,
        };
        Ok(Some((attempt, delay)))
    }

    /// End a guess; the limit (address first) that this failure has just filled, if any.
    fn end(&self, address: Option<IpAddr>, user: Option<u64>, failed: bool) -> Option<Throttled> {
        let mut filled = None;
        if let Ok(mut state) = self.state.lock() {
            let now = Instant::now();
            // A user name past its limit is slowed, never refused: nothing to report.
            if let Some(k) = user {
                state.users.end(&k, failed, self.per_user, self.window, now);
            }
            if let Some(a) = address {
                if state
                    .addresses
                    .end(&a, failed, self.per_address, self.window, now)
                {
                    filled = Some(Throttled::Address);
                }
            }
        }
        self.released.notify_waiters();
        filled
    }
}

impl LoginAttempt {
    /// The password was right: the place is given back.
    pub fn succeeded(mut self) {
        let (address, user) = (self.address.take(), self.user.take());
        self.inner.end(address, user, false);
    }

    /// The password was wrong (as dropping the attempt says): counted as a failed login.
    /// `Some` when this failure filled the address's limit, so that the address is refused
    /// from now until the window has passed (said once per window, for logging a ban).
    pub fn failed(mut self) -> Option<Throttled> {
        let (address, user) = (self.address.take(), self.user.take());
        self.inner.end(address, user, true)
    }
}

impl Drop for LoginAttempt {
    fn drop(&mut self) {
        if self.address.is_some() || self.user.is_some() {
            let (address, user) = (self.address.take(), self.user.take());
            self.inner.end(address, user, true);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Room {
    Free,
    /// Every place is held, some by checks still running.
    Busy,
    /// Every place is held by failures within the window.
    Refused,
}

struct Bucket {
    failures: u32,
    in_flight: u32,
    /// When the first failure of the current window happened.
    since: Instant,
}

impl Bucket {
    /// Whether another guess may start against `limit` (0: no limit).
    fn room(&self, limit: u32) -> Room {
        if limit == 0 {
            Room::Free
        } else if self.failures >= limit {
            Room::Refused
        } else if self.failures.saturating_add(self.in_flight) >= limit {
            Room::Busy
        } else {
            Room::Free
        }
    }

    /// Forget failures older than the window.
    fn expire(&mut self, window: Duration, now: Instant) {
        if self.failures > 0 && now.duration_since(self.since) >= window {
            self.failures = 0;
        }
    }
}

struct Buckets<K> {
    map: HashMap<K, Bucket>,
}

impl<K> Default for Buckets<K> {
    fn default() -> Self {
        Buckets {
            map: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq + Copy> Buckets<K> {
    /// Keys tracked at most; beyond, keys with nothing running and the oldest failures go.
    const MAX_TRACKED: usize = 100_000;

    /// The bucket of `key`, its old failures forgotten.
    fn get(&mut self, key: &K, window: Duration, now: Instant) -> Option<&Bucket> {
        let b = self.map.get_mut(key)?;
        b.expire(window, now);
        Some(b)
    }

    fn start(&mut self, key: K, window: Duration, now: Instant) {
        if !self.map.contains_key(&key) && self.map.len() >= Self::MAX_TRACKED {
            self.make_room(window, now);
        }
        let b = self.map.entry(key).or_insert(Bucket {
            failures: 0,
            in_flight: 0,
            since: now,
        });
        b.in_flight = b.in_flight.saturating_add(1);
    }

    /// End a guess on `key`; true when this failure brought its failures to `limit`.
    fn end(&mut self, key: &K, failed: bool, limit: u32, window: Duration, now: Instant) -> bool {
        let Some(b) = self.map.get_mut(key) else {
            return false;
        };
        b.in_flight = b.in_flight.saturating_sub(1);
        b.expire(window, now);
        if failed {
            if b.failures == 0 {
                b.since = now;
            }
            b.failures = b.failures.saturating_add(1);
        }
        let filled = failed && b.failures == limit;
        if b.failures == 0 && b.in_flight == 0 {
            self.map.remove(key);
        }
        filled
    }

    fn make_room(&mut self, window: Duration, now: Instant) {
        self.map.retain(|_, b| {
            b.expire(window, now);
            b.failures > 0 || b.in_flight > 0
        });
        if self.map.len() >= Self::MAX_TRACKED {
            let oldest = self
                .map
                .iter()
                .filter(|(_, b)| b.in_flight == 0)
                .min_by_key(|(_, b)| b.since)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.map.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    fn begin(t: &LoginThrottle, a: IpAddr, user: &str) -> Option<Result<LoginAttempt, Throttled>> {
        slowed(t, a, user).map(|r| r.map(|(attempt, _)| attempt))
    }

    fn slowed(
        t: &LoginThrottle,
        a: IpAddr,
        user: &str,
    ) -> Option<Result<(LoginAttempt, Duration), Throttled>> {
        t.inner.try_begin(a.to_canonical(), user).transpose()
    }

    #[test]
    fn places_are_taken_when_a_guess_starts() {
        let t = LoginThrottle::new(3, 0, Duration::from_secs(60));
        let held: Vec<_> = (0..3)
            .map(|_| begin(&t, A, "u").unwrap().unwrap())
            .collect();
        // All places are held by guesses still running: the next one waits.
        assert!(begin(&t, A, "u").is_none());
        assert!(
            begin(&t, B, "u").is_some(),
            "another address is not affected"
        );
        drop(held);
        assert_eq!(begin(&t, A, "u").unwrap().err(), Some(Throttled::Address));
    }

    #[test]
    fn a_right_password_gives_its_place_back() {
        let t = LoginThrottle::new(2, 0, Duration::from_secs(60));
        for _ in 0..10 {
            begin(&t, A, "u").unwrap().unwrap().succeeded();
        }
        drop(begin(&t, A, "u").unwrap().unwrap());
        begin(&t, A, "u").unwrap().unwrap().succeeded();
        drop(begin(&t, A, "u").unwrap().unwrap());
        assert!(begin(&t, A, "u").unwrap().is_err());
        assert!(t.inner.state.lock().unwrap().addresses.map.len() == 1);
    }

    #[test]
    fn failures_expire_with_the_window() {
        let t = LoginThrottle::new(1, 0, Duration::from_millis(50));
        drop(begin(&t, A, "u").unwrap().unwrap());
        assert!(begin(&t, A, "u").unwrap().is_err());
        std::thread::sleep(Duration::from_millis(60));
        assert!(begin(&t, A, "u").unwrap().is_ok());
    }

    #[test]
    fn a_name_under_attack_slows_its_guessers_but_not_its_user() {
        let second = Duration::from_secs(1);
        let t = LoginThrottle::with_backoff(0, 2, Duration::from_secs(600), second);
        let delay = |a| slowed(&t, a, "alice").unwrap().unwrap().1;
        // Within the limit, nobody waits.
        for _ in 0..2 {
            let (attempt, wait) = slowed(&t, A, "alice").unwrap().unwrap();
            assert_eq!(wait, Duration::ZERO);
            drop(attempt);
        }
        // Beyond, the address that failed waits, twice as long for each further failure.
        let (attempt, wait) = slowed(&t, A, "alice").unwrap().unwrap();
        assert_eq!(wait, second);
        drop(attempt);
        assert_eq!(delay(A), 2 * second);
        // An address that has not failed is answered at once, and so is the right password.
        let (user, wait) = slowed(&t, B, "alice").unwrap().unwrap();
        assert_eq!(wait, Duration::ZERO);
        user.succeeded();
        // Another name is not slowed, even from the guessing address.
        let (bob, wait) = slowed(&t, A, "bob").unwrap().unwrap();
        assert_eq!(wait, Duration::ZERO);
        bob.succeeded();
    }

    #[test]
    fn guesses_running_at_once_make_an_address_a_suspect() {
        let t = LoginThrottle::with_backoff(0, 1, Duration::from_secs(600), Duration::from_secs(1));
        let (first, wait) = slowed(&t, A, "alice").unwrap().unwrap();
        assert_eq!(wait, Duration::ZERO);
        // Sent before the first is answered: the address is guessing already.
        let (second, wait) = slowed(&t, A, "alice").unwrap().unwrap();
        assert_eq!(wait, Duration::from_secs(1));
        let (third, wait) = slowed(&t, A, "alice").unwrap().unwrap();
        assert_eq!(wait, Duration::from_secs(2));
        drop((first, second, third));
    }

    #[test]
    fn the_slowdown_is_at_most_the_window() {
        let window = Duration::from_secs(5);
        let t = LoginThrottle::with_backoff(0, 1, window, Duration::from_secs(1));
        for _ in 0..40 {
            drop(begin(&t, A, "alice").unwrap().unwrap());
        }
        assert_eq!(slowed(&t, A, "alice").unwrap().unwrap().1, window);
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        let t = LoginThrottle::new(1, 0, Duration::from_secs(60));
        drop(begin(&t, A, "u").unwrap().unwrap());
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let r = t.inner.try_begin(mapped.to_canonical(), "u");
        assert!(r.is_err());
    }

    #[test]
    fn the_failure_that_fills_a_limit_says_so_once() {
        let t = LoginThrottle::new(2, 3, Duration::from_secs(60));
        assert_eq!(begin(&t, A, "u").unwrap().unwrap().failed(), None);
        assert_eq!(
            begin(&t, A, "u").unwrap().unwrap().failed(),
            Some(Throttled::Address)
        );
        // The user's limit slows guesses and never bans: nothing to say.
        assert_eq!(begin(&t, B, "u").unwrap().unwrap().failed(), None);
        assert!(begin(&t, A, "v").unwrap().is_err());
        let t = LoginThrottle::new(0, 0, Duration::from_secs(60));
        for _ in 0..5 {
            assert_eq!(begin(&t, A, "u").unwrap().unwrap().failed(), None);
        }
    }

    #[tokio::test]
    async fn a_waiting_guess_learns_the_outcome() {
        let t = LoginThrottle::new(1, 0, Duration::from_secs(60));
        let first = t.begin(A, "u").await.unwrap();
        let waiting = tokio::spawn({
            let t = t.clone();
            async move { t.begin(A, "u").await.map(|a| a.succeeded()) }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        first.succeeded();
        assert!(waiting.await.unwrap().is_ok());
        let second = t.begin(A, "u").await.unwrap();
        let waiting = tokio::spawn({
            let t = t.clone();
            async move { t.begin(A, "u").await.map(|a| a.succeeded()) }
        });
        drop(second);
        assert_eq!(waiting.await.unwrap().err(), Some(Throttled::Address));
    }
}
