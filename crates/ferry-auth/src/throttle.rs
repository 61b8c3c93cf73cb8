//! Password-guess limits per client address and per user name, for every protocol.
//!
//! A guess is counted when it *starts*, not when its answer is known: a client that sends
//! many guesses at once over many connections cannot have more of them checked than the
//! limit allows, because each one takes a place before its password is hashed. A guess that
//! turns out right gives its place back; a wrong one keeps it until the window has passed.
//! When every place is taken by guesses still being checked, the next guess waits (holding no
//! thread) to learn whether a place comes free or the address is refused.

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
    /// Too many failed logins for this user name within the window.
    User,
}

impl std::fmt::Display for Throttled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Throttled::Address => "too many failed logins from this address",
            Throttled::User => "too many failed logins for this user",
        })
    }
}

/// Limits on failed logins; shared by every session of every protocol (cheap to clone).
///
/// Guarantee against a hostile client: within one window, at most `per_address` wrong
/// passwords from one address, and at most `per_user` for one user name from anywhere, are
/// ever checked, however the guesses are spread over connections and however many arrive at
/// once. A limit of 0 turns that limit off.
#[derive(Clone)]
pub struct LoginThrottle {
    inner: Arc<Inner>,
}

struct Inner {
    per_address: u32,
    per_user: u32,
    window: Duration,
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

impl LoginThrottle {
    /// At most `per_address` failed logins per client address and `per_user` per user name
    /// within `window` (0: no limit of that kind).
    pub fn new(per_address: u32, per_user: u32, window: Duration) -> Self {
        LoginThrottle {
            inner: Arc::new(Inner {
                per_address,
                per_user,
                window,
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
    /// place is held by checks still running. `Err` when the limit is reached: the password
    /// must then not be checked at all.
    pub async fn begin(&self, address: IpAddr, user: &str) -> Result<LoginAttempt, Throttled> {
        let address = address.to_canonical();
        loop {
            // Registered before looking, so that a guess ending in between is not missed.
            let released = self.inner.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            match self.inner.try_begin(address, user) {
                Ok(Some(attempt)) => return Ok(attempt),
                Ok(None) => released.await,
                Err(why) => return Err(why),
            }
        }
    }
}

impl Inner {
    /// A place if one is free, `None` if all are held by running checks, `Err` if refused.
    fn try_begin(
        self: &Arc<Self>,
        address: IpAddr,
        user: &str,
    ) -> Result<Option<LoginAttempt>, Throttled> {
        let Ok(mut state) = self.state.lock() else {
            // A panic elsewhere poisoned the lock: refuse rather than check without limits.
            return Err(Throttled::Address);
        };
        let now = Instant::now();
        let user_key = (self.per_user != 0).then(|| state.hasher.hash_one(user));
        let by_address = (self.per_address != 0).then(|| {
            state
                .addresses
                .room(&address, self.per_address, self.window, now)
        });
        let by_user = user_key.map(|k| state.users.room(&k, self.per_user, self.window, now));
        for (room, why) in [(by_address, Throttled::Address), (by_user, Throttled::User)] {
            if room == Some(Room::Refused) {
                return Err(why);
            }
        }
        if by_address == Some(Room::Busy) || by_user == Some(Room::Busy) {
            return Ok(None);
        }
        let address = (self.per_address != 0).then_some(address);
        if let Some(a) = address {
            state.addresses.start(a, self.window, now);
        }
        if let Some(k) = user_key {
            state.users.start(k, self.window, now);
        }
        Ok(Some(LoginAttempt {
            inner: Arc::clone(self),
            address,
            user: user_key,
        }))
    }

    /// End a guess; the limit (address first) that this failure has just filled, if any.
    fn end(&self, address: Option<IpAddr>, user: Option<u64>, failed: bool) -> Option<Throttled> {
        let mut filled = None;
        if let Ok(mut state) = self.state.lock() {
            let now = Instant::now();
            if let Some(k) = user {
                if state.users.end(&k, failed, self.per_user, self.window, now) {
                    filled = Some(Throttled::User);
                }
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
    /// `Some` when this failure filled a limit, so that the address or the user is refused
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

    fn room(&mut self, key: &K, limit: u32, window: Duration, now: Instant) -> Room {
        let Some(b) = self.map.get_mut(key) else {
            return Room::Free;
        };
        b.expire(window, now);
        if b.failures >= limit {
            Room::Refused
        } else if b.failures.saturating_add(b.in_flight) >= limit {
            Room::Busy
        } else {
            Room::Free
        }
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
    fn per_user_limit_spans_addresses() {
        let t = LoginThrottle::new(0, 2, Duration::from_secs(60));
        drop(begin(&t, A, "alice").unwrap().unwrap());
        drop(begin(&t, B, "alice").unwrap().unwrap());
        assert_eq!(
            begin(&t, "192.0.2.3".parse().unwrap(), "alice")
                .unwrap()
                .err(),
            Some(Throttled::User)
        );
        assert!(begin(&t, A, "bob").unwrap().is_ok());
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
        assert_eq!(
            begin(&t, B, "u").unwrap().unwrap().failed(),
            Some(Throttled::User)
        );
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
