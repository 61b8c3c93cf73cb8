//! Listings of large local directories, kept while the kernel reports no change in them.
//!
//! Reading a 10,000-entry directory costs ~2 ms of `getdents` and ~10,000 `statx` calls
//! (7-10 ms of CPU on a small machine), every time a client lists it. A directory with at least
//! `MIN_ENTRIES` (1,000) entries is therefore kept once read, as sorted entries with their
//! metadata, and watched with inotify (see [`ferry_sys::DirWatcher`]): creating, removing,
//! renaming, writing to an entry or changing its attributes drops the kept listing. Before a
//! kept listing is used, every pending event is read; the kernel queues an event before the
//! call that caused it returns, so every change completed before the listing began is seen.
//!
//! What inotify on the directory cannot see, and how it is covered:
//! - a subdirectory's own metadata (its time and link count change when entries inside it
//!   do): entries that are directories are stat'ed again each time;
//! - a file with several hard links written through a name in another directory: entries with
//!   a link count above one are stat'ed again each time;
//! - a file that gets its second link, then a write through it, and writes through a memory
//!   mapping: a kept listing is used at most [`MAX_AGE`] after it was read;
//! - changes made by other machines: only file systems known to be local are kept (tmpfs,
//!   ext2/3/4, XFS, Btrfs, F2FS), never NFS, CIFS, FUSE or overlays.
//!
//! Bounded: at most [`ListCache::limit`] entries over all directories (least recently used go
//! first), one inotify instance per cache, made when the cache first meets a directory large
//! enough to keep and closed with the cache. Without inotify or `/proc`, nothing is kept.
//!
//! The same watch lets listings share a read: a listing of a directory that another listing is
//! reading (or has read, and still uses) follows that read instead of starting its own, as long
//! as no entry was created, removed or renamed in the directory since it began. Entries of a
//! read shown more than [`MAX_AGE`] after it began are stat'ed again as they go out. So the
//! listings of one large directory hold its entries once, kept or not, however slowly they are
//! taken (see `snapshot`); only a change in the directory starts another read.
//!
//! What is kept and shared belongs to a [`ListCache`], shared by the [`LocalFs`](crate::LocalFs)
//! instances given it: a server gives one to every root it opens, so its limit bounds the
//! server, and two servers in one process keep, count and bound their listings apart.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::{Entry, EntryKind};
use cap_std::fs::{Dir, MetadataExt};
use ferry_sys::{DirChange, DirWatcher};

use crate::snapshot::Snapshot;

/// Smaller directories are read afresh each time: it is quick, and keeping them is not free.
pub(crate) const MIN_ENTRIES: usize = 1000;

/// A kept listing is used at most this long after it was read, and a shared read's entries
/// are stat'ed again when shown later than this (see the module notes).
pub const MAX_AGE: Duration = Duration::from_secs(5);

/// Default limit of a [`ListCache`]: ~100 bytes each, some 20 MB.
pub const DEFAULT_LIMIT: usize = 200_000;

/// Kept listings of large directories and the reads that listings share (see the module
/// notes), for the [`LocalFs`](crate::LocalFs) instances that are given it.
pub struct ListCache {
    limit: AtomicUsize,
    hits: AtomicU64,
    followed: AtomicU64,
    abandoned: AtomicU64,
    /// Made the first time a directory large enough is listed, so that a cache that never
    /// meets one holds no inotify instance; `None` if inotify is not available.
    watch: OnceLock<Option<Watch>>,
}

impl ListCache {
    /// A cache keeping at most `limit` entries over all directories (0 keeps none; listings
    /// under way still share reads).
    pub fn new(limit: usize) -> ListCache {
        ListCache {
            limit: AtomicUsize::new(limit),
            hits: AtomicU64::new(0),
            followed: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            watch: OnceLock::new(),
        }
    }

    /// Most entries kept over all directories.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Change the limit; what is kept beyond it is dropped now, least recently used first.
    pub fn set_limit(&self, entries: usize) {
        self.limit.store(entries, Ordering::Relaxed);
        if let Some(watch) = self.watch() {
            let mut state = watch.lock();
            state.evict(&watch.watcher, entries);
        }
    }

    /// Listings answered from what was kept, since the cache was made.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Listings that followed a read other listings were using (rather than reading the
    /// directory or using a fresh kept listing), since the cache was made.
    pub fn followed(&self) -> u64 {
        self.followed.load(Ordering::Relaxed)
    }

    /// Reads of a watched directory stopped before their end because no listing followed them
    /// any more, since the cache was made.
    pub fn abandoned(&self) -> u64 {
        self.abandoned.load(Ordering::Relaxed)
    }

    /// Entries kept now, over all directories.
    pub fn kept_entries(&self) -> usize {
        self.watch().map_or(0, |w| w.lock().kept)
    }

    fn watch(&self) -> Option<&Watch> {
        self.watch.get().and_then(Option::as_ref)
    }

    fn watch_or_start(&self) -> Option<&Watch> {
        self.watch
            .get_or_init(|| {
                DirWatcher::new().ok().map(|watcher| Watch {
                    watcher,
                    state: Mutex::new(State::default()),
                })
            })
            .as_ref()
    }
}

impl Default for ListCache {
    /// A cache with [`DEFAULT_LIMIT`].
    fn default() -> ListCache {
        ListCache::new(DEFAULT_LIMIT)
    }
}

impl std::fmt::Debug for ListCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListCache")
            .field("limit", &self.limit())
            .field("hits", &self.hits())
            .field("followed", &self.followed())
            .field("abandoned", &self.abandoned())
            .finish_non_exhaustive()
    }
}

/// File systems whose every change the kernel here sees (`statfs` magic numbers).
const LOCAL_FS: [u64; 5] = [
    0x0102_1994, // tmpfs
    0xEF53,      // ext2, ext3, ext4
    0x5846_5342, // XFS
    0x9123_683E, // Btrfs
    0xF2F5_2010, // F2FS
];

/// Identity of a directory: device and inode.
type Key = (u64, u64);

/// A cache's inotify instance and what its watches cover.
struct Watch {
    watcher: DirWatcher,
    state: Mutex<State>,
}

impl Watch {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data; go on with it.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.catch_up(&self.watcher);
        state
    }
}

#[derive(Default)]
struct State {
    watches: HashMap<i32, Watched>,
    by_key: HashMap<Key, i32>,
    kept: usize,
}

/// One watched directory.
struct Watched {
    key: Key,
    /// Bumped by every change: a listing read while it moved is not kept.
    generation: u64,
    /// Listings of it being read from disk, to be kept if nothing changed meanwhile.
    reading: usize,
    listing: Option<Kept>,
    /// The latest read of it, while a listing still uses it.
    current: Option<Current>,
}

impl Watched {
    /// Whether anything still needs the watch.
    fn in_use(&self) -> bool {
        self.listing.is_some()
            || self.reading > 0
            || self
                .current
                .as_ref()
                .is_some_and(|c| c.snapshot.strong_count() > 0)
    }
}

struct Kept {
    entries: Arc<Snapshot>,
    len: usize,
    read_at: Instant,
    used_at: Instant,
}

/// A read that later listings may follow (see the module notes).
struct Current {
    snapshot: Weak<Snapshot>,
    generation: u64,
}

impl State {
    /// Apply every pending event.
    fn catch_up(&mut self, watcher: &DirWatcher) {
        let mut changed = Vec::new();
        watcher.drain(|c| changed.push(c));
        for change in changed {
            self.apply(watcher, change);
        }
    }

    fn apply(&mut self, watcher: &DirWatcher, change: DirChange) {
        match change {
            DirChange::Changed(wd) => self.changed(watcher, wd),
            DirChange::Ended(wd) => {
                if let Some(w) = self.watches.remove(&wd) {
                    self.by_key.remove(&w.key);
                    self.kept -= w.listing.map_or(0, |k| k.len);
                }
            }
            DirChange::Lost => {
                let wds: Vec<i32> = self.watches.keys().copied().collect();
                for wd in wds {
                    self.changed(watcher, wd);
                }
            }
        }
    }

    fn changed(&mut self, watcher: &DirWatcher, wd: i32) {
        let dropped = match self.watches.get_mut(&wd) {
            Some(w) => {
                w.generation += 1;
                w.listing.take()
            }
            None => return,
        };
        self.kept -= dropped.map_or(0, |k| k.len);
        self.forget_if_unused(watcher, wd);
    }

    /// Stop watching `wd` if nothing is kept for it and no listing of it is being read or uses
    /// its latest read.
    fn forget_if_unused(&mut self, watcher: &DirWatcher, wd: i32) {
        if let Some(w) = self.watches.get(&wd) {
            if !w.in_use() {
                self.by_key.remove(&w.key);
                self.watches.remove(&wd);
                watcher.unwatch(wd);
            }
        }
    }

    /// Stop watching every directory nothing needs any more (the last listing that used a
    /// read has ended since).
    fn forget_all_unused(&mut self, watcher: &DirWatcher) {
        let unused: Vec<i32> = self
            .watches
            .iter()
            .filter(|(_, w)| !w.in_use())
            .map(|(wd, _)| *wd)
            .collect();
        for wd in unused {
            self.forget_if_unused(watcher, wd);
        }
    }

    /// Drop the least recently used listings until at most `limit` entries are kept.
    fn evict(&mut self, watcher: &DirWatcher, limit: usize) {
        while self.kept > limit {
            let oldest = self
                .watches
                .iter()
                .filter_map(|(wd, w)| w.listing.as_ref().map(|k| (k.used_at, *wd)))
                .min();
            let Some((_, wd)) = oldest else { break };
            let dropped = self.watches.get_mut(&wd).and_then(|w| w.listing.take());
            self.kept -= dropped.map_or(0, |k| k.len);
            self.forget_if_unused(watcher, wd);
        }
    }
}

/// What [`ListCache::open`] found.
pub(crate) enum Found {
    /// Another read of the directory, kept or still in use, and nothing in the directory has
    /// changed since it began: its entries, in name order, to pass through [`fresh`].
    Shared(Arc<Snapshot>),
    /// Read the directory from disk into the snapshot given to [`ListCache::open`]; with a
    /// ticket, other listings may follow the read, and what is read may be kept.
    Read(Option<Ticket>),
}

/// A directory this small (its size as `stat` gives it: ~20 bytes per entry on tmpfs and
/// Btrfs, more on ext4 and XFS) is never kept nor shared, and is not even looked up: one
/// `fstat` and done.
const MIN_DIR_BYTES: u64 = 8192;

impl ListCache {
    /// Look `dir` up before listing it: a read to follow, or a ticket to read it into
    /// `snapshot` (the watch starts before the read, so a change during the read is heard).
    pub(crate) fn open(self: &Arc<Self>, dir: &Dir, snapshot: &Arc<Snapshot>) -> Found {
        let Ok(md) = dir.dir_metadata() else {
            return Found::Read(None);
        };
        if md.len() < MIN_DIR_BYTES {
            return Found::Read(None);
        }
        let Some(watch) = self.watch_or_start() else {
            return Found::Read(None);
        };
        let key = (md.dev(), md.ino());
        let mut state = watch.lock();
        state.forget_all_unused(&watch.watcher);
        if let Some(&wd) = state.by_key.get(&key) {
            // Past its age, a kept listing is read again, unless listings still follow it:
            // then this one follows it too (its entries stat'ed again as they go out, see
            // `Listing` in `local`), rather than hold another copy of the directory.
            let usable = state
                .watches
                .get(&wd)
                .and_then(|w| w.listing.as_ref())
                .map(|k| {
                    let fresh = k.read_at.elapsed() <= MAX_AGE;
                    (fresh, fresh || Arc::strong_count(&k.entries) > 1)
                });
            match usable {
                Some((fresh, true)) => {
                    if let Some(kept) = state.watches.get_mut(&wd).and_then(|w| w.listing.as_mut())
                    {
                        kept.used_at = Instant::now();
                        let counter = if fresh { &self.hits } else { &self.followed };
                        counter.fetch_add(1, Ordering::Relaxed);
                        return Found::Shared(Arc::clone(&kept.entries));
                    }
                }
                Some((_, false)) => {
                    let stale = state.watches.get_mut(&wd).and_then(|w| w.listing.take());
                    state.kept -= stale.map_or(0, |k| k.len);
                }
                None => {}
            }
            // A read still in use (in progress, or done and not kept), of the directory as it is.
            let following = state.watches.get(&wd).and_then(|w| {
                let current = w.current.as_ref()?;
                if current.generation != w.generation {
                    return None;
                }
                current.snapshot.upgrade().filter(|s| !s.failed())
            });
            if let Some(shared) = following {
                self.followed.fetch_add(1, Ordering::Relaxed);
                let started = shared.started();
                // A complete read that was not kept (the limit was lower then) is kept now.
                if let Some(len) = shared
                    .complete_len()
                    .filter(|_| started.elapsed() <= MAX_AGE)
                {
                    let limit = self.limit();
                    if (MIN_ENTRIES..=limit).contains(&len) {
                        if let Some(w) = state.watches.get_mut(&wd) {
                            if w.listing.is_none() {
                                w.listing = Some(Kept {
                                    entries: Arc::clone(&shared),
                                    len,
                                    read_at: started,
                                    used_at: Instant::now(),
                                });
                                state.kept += len;
                                state.evict(&watch.watcher, limit);
                            }
                        }
                    }
                }
                return Found::Shared(shared);
            }
        }
        if !ferry_sys::fs_magic(dir).is_ok_and(|m| LOCAL_FS.contains(&m)) {
            return Found::Read(None);
        }
        let Ok(wd) = watch.watcher.watch(dir) else {
            return Found::Read(None);
        };
        let w = state.watches.entry(wd).or_insert(Watched {
            key,
            generation: 0,
            reading: 0,
            listing: None,
            current: None,
        });
        w.reading += 1;
        let generation = w.generation;
        w.current = Some(Current {
            snapshot: Arc::downgrade(snapshot),
            generation,
        });
        state.by_key.insert(key, wd);
        Found::Read(Some(Ticket {
            cache: Arc::clone(self),
            wd,
            generation,
        }))
    }
}

/// Whether a shared entry must be stat'ed again before it is shown (see [`fresh`]): always
/// when `all`, else if inotify on its directory cannot be trusted to report its changes.
pub(crate) fn needs_fresh(entry: &Entry, all: bool) -> bool {
    all || entry.kind == EntryKind::Dir || entry.nlink > 1
}

/// A shared entry as it is now: directories and multiply-linked files (every entry when
/// `all`) are stat'ed again (see the module notes), the rest is as read. `None` if it has gone
/// meanwhile.
pub(crate) fn fresh(dir: &Dir, entry: Entry, all: bool) -> Option<Entry> {
    if needs_fresh(&entry, all) {
        // Gone since: the event saying so reaches the next listing.
        let md = dir.symlink_metadata(&entry.name).ok()?;
        Some(crate::stat::convert(&md).into_entry(entry.name))
    } else {
        Some(entry)
    }
}

/// Permission to keep a listing of a directory being read from disk (see [`ListCache::open`]).
pub(crate) struct Ticket {
    cache: Arc<ListCache>,
    wd: i32,
    generation: u64,
}

impl Ticket {
    /// Whether no listing follows `snapshot` (the read this ticket is for) any more; if so,
    /// none can start to, and the read may stop.
    pub(crate) fn unfollowed(&self, snapshot: &Arc<Snapshot>) -> bool {
        if Arc::strong_count(snapshot) > 1 {
            return false;
        }
        // A ticket is only given by a cache that has its watch.
        if let Some(watch) = self.cache.watch() {
            let mut state = watch.lock();
            // Listings start to follow a read only under this lock: counted again under it.
            if Arc::strong_count(snapshot) > 1 {
                return false;
            }
            if let Some(w) = state.watches.get_mut(&self.wd) {
                if w.current
                    .as_ref()
                    .is_some_and(|c| c.snapshot.ptr_eq(&Arc::downgrade(snapshot)))
                {
                    w.current = None;
                }
            }
        }
        self.cache.abandoned.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Keep `snapshot`, a complete read of `len` entries, unless the directory changed while
    /// it was read, or it is too small to be worth it or too large for the limit.
    pub(crate) fn keep(self, snapshot: &Arc<Snapshot>, len: usize) {
        if len < MIN_ENTRIES {
            return;
        }
        let limit = self.cache.limit();
        if len > limit {
            return;
        }
        let Some(watch) = self.cache.watch() else {
            return;
        };
        let mut state = watch.lock();
        let Some(w) = state.watches.get_mut(&self.wd) else {
            return;
        };
        if w.generation != self.generation {
            return;
        }
        let now = Instant::now();
        let old = w.listing.replace(Kept {
            entries: Arc::clone(snapshot),
            len,
            read_at: now,
            used_at: now,
        });
        let added = len;
        let removed = old.map_or(0, |k| k.len);
        state.kept = state.kept + added - removed;
        state.evict(&watch.watcher, limit);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(watch) = self.cache.watch() {
            let mut state = watch.lock();
            if let Some(w) = state.watches.get_mut(&self.wd) {
                w.reading = w.reading.saturating_sub(1);
            }
            state.forget_if_unused(&watch.watcher, self.wd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(n: usize) -> Vec<Entry> {
        (0..n)
            .map(|i| Entry {
                name: format!("e{i}"),
                kind: EntryKind::File,
                size: 1,
                mtime: 0,
                mode: 0o644,
                nlink: 1,
                unique: None,
            })
            .collect()
    }

    /// A state with `dirs` kept listings of `each` entries, watch descriptors 1.. (made up:
    /// the watcher's `unwatch` of an unknown descriptor just fails).
    fn state(dirs: i32, each: usize) -> State {
        let mut s = State::default();
        for wd in 1..=dirs {
            let key = (1, wd as u64);
            let now = Instant::now();
            s.watches.insert(
                wd,
                Watched {
                    key,
                    generation: 0,
                    reading: 0,
                    listing: Some(Kept {
                        entries: Arc::new(Snapshot::complete(entries(each))),
                        len: each,
                        read_at: now,
                        used_at: now,
                    }),
                    current: None,
                },
            );
            s.by_key.insert(key, wd);
            s.kept += each;
        }
        s
    }

    #[test]
    fn lost_events_drop_every_kept_listing() {
        let w = DirWatcher::new().unwrap();
        let mut s = state(3, 10);
        // A directory being read keeps its watch, with a new generation, so that what is
        // being read is not kept either.
        if let Some(x) = s.watches.get_mut(&2) {
            x.reading = 1;
        }
        s.apply(&w, DirChange::Lost);
        assert_eq!(s.kept, 0);
        assert_eq!(s.watches.len(), 1);
        assert_eq!(s.watches.get(&2).map(|x| x.generation), Some(1));
        assert_eq!(s.by_key.len(), 1);
    }

    #[test]
    fn a_change_drops_one_listing_and_an_ended_watch_its_entry() {
        let w = DirWatcher::new().unwrap();
        let mut s = state(3, 10);
        s.apply(&w, DirChange::Changed(1));
        assert_eq!(s.kept, 20);
        assert!(!s.watches.contains_key(&1) && !s.by_key.contains_key(&(1, 1)));
        s.apply(&w, DirChange::Ended(3));
        assert_eq!(s.kept, 10);
        assert!(s.watches.contains_key(&2) && !s.watches.contains_key(&3));
        // Events for watches no longer known change nothing.
        s.apply(&w, DirChange::Changed(99));
        s.apply(&w, DirChange::Ended(99));
        assert_eq!(s.kept, 10);
    }

    #[test]
    fn eviction_drops_the_least_recently_used_first() {
        let w = DirWatcher::new().unwrap();
        let mut s = state(3, 10);
        let base = Instant::now();
        for (wd, later) in [(1, 3), (2, 1), (3, 2)] {
            if let Some(k) = s.watches.get_mut(&wd).and_then(|x| x.listing.as_mut()) {
                k.used_at = base + Duration::from_millis(later);
            }
        }
        s.evict(&w, 25);
        assert_eq!(s.kept, 20);
        assert!(
            !s.watches.contains_key(&2),
            "directory 2 was the least recently used"
        );
        s.evict(&w, 0);
        assert_eq!((s.kept, s.watches.len()), (0, 0));
    }
}
