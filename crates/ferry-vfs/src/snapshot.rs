//! One read of a directory, shared by every listing that uses it.
//!
//! A read (names, sort, one `stat` each) runs on the blocking pool at the disk's pace and never
//! waits for a listing: it appends entries here as they come. Each listing follows with its own
//! position and copies out one chunk at a time when its client is ready for more, waiting
//! (asynchronously, holding no thread) when it has caught up with the read. So listings that
//! clients do not read hold one chunk each, not the directory; what the directory costs is
//! held once, for as long as a listing or the [`listcache`](crate::listcache) uses it.
//!
//! When a listing of a large directory ends, what it and its sessions freed is handed back to
//! the system shortly after ([`release_soon`]): the allocator would keep it otherwise, and a
//! burst of listings would leave the process at its peak size.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::Entry;
use tokio::sync::watch;

use crate::{Error, ErrorKind, Result};

/// A directory's entries in name order, as a read of it produced them so far.
pub(crate) struct Snapshot {
    /// When the read began: what it shows is at most this old.
    started: Instant,
    state: Mutex<State>,
    /// Signalled whenever entries are added or the read ends.
    grown: watch::Sender<()>,
}

struct State {
    entries: Vec<Entry>,
    end: Option<End>,
}

enum End {
    Complete,
    Failed(Error),
}

impl Snapshot {
    /// An empty snapshot for a read to fill (through a [`Writer`]).
    pub(crate) fn new() -> Snapshot {
        Snapshot {
            started: Instant::now(),
            state: Mutex::new(State {
                entries: Vec::new(),
                end: None,
            }),
            grown: watch::Sender::new(()),
        }
    }

    /// A snapshot of a read already complete.
    #[cfg(test)]
    pub(crate) fn complete(entries: Vec<Entry>) -> Snapshot {
        let snapshot = Snapshot::new();
        let mut writer = Writer::new(&snapshot);
        writer.push(entries);
        writer.finish(Ok(()));
        snapshot
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain data: a panic elsewhere leaves it usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When the read began.
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// Entries read so far.
    pub(crate) fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// The number of entries, once the read has completed without error.
    pub(crate) fn complete_len(&self) -> Option<usize> {
        let state = self.lock();
        matches!(state.end, Some(End::Complete)).then_some(state.entries.len())
    }

    /// Whether the read ended in an error (such a snapshot is not shared further).
    pub(crate) fn failed(&self) -> bool {
        matches!(self.lock().end, Some(End::Failed(_)))
    }

    /// Up to `max` entries from position `from`, waiting while the read has not reached it;
    /// `None` past the end.
    pub(crate) async fn chunk(&self, from: usize, max: usize) -> Option<Result<Vec<Entry>>> {
        let mut grown = self.grown.subscribe();
        loop {
            {
                // Checked after subscribing: anything added from now on wakes the wait below.
                let state = self.lock();
                if from < state.entries.len() {
                    let to = state.entries.len().min(from.saturating_add(max));
                    return Some(Ok(state.entries[from..to].to_vec()));
                }
                match &state.end {
                    Some(End::Complete) => return None,
                    Some(End::Failed(e)) => {
                        return Some(Err(Error::new(e.kind, e.message.clone())));
                    }
                    None => {}
                }
            }
            if grown.changed().await.is_err() {
                return Some(Err(Error::new(
                    ErrorKind::Other,
                    "Local error: listing failed",
                )));
            }
        }
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if state.entries.len() >= RELEASE_AFTER {
            // Freed after this returns, before the release runs.
            release_soon();
        }
    }
}

/// Listings of at least this many entries hand freed memory back when they end.
pub(crate) const RELEASE_AFTER: usize = 10_000;

/// Hand the memory the allocator holds free back to the system, once, a moment from now:
/// listings often end together (their sessions closing at once), and one release after them
/// all does for every one. At most one release waits at a time.
pub(crate) fn release_soon() {
    static PENDING: AtomicBool = AtomicBool::new(false);
    if PENDING.swap(true, Ordering::AcqRel) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("ferry-release".into())
        .spawn(|| {
            std::thread::sleep(Duration::from_millis(500));
            PENDING.store(false, Ordering::Release);
            ferry_sys::release_free_memory();
        });
    if spawned.is_err() {
        PENDING.store(false, Ordering::Release);
    }
}

/// The one writer of a [`Snapshot`]. A read that ends without saying how (a panic) ends the
/// snapshot as failed, so no listing waits for it forever.
pub(crate) struct Writer<'a> {
    snapshot: &'a Snapshot,
    done: bool,
}

impl<'a> Writer<'a> {
    /// The writer of `snapshot`, which must be new.
    pub(crate) fn new(snapshot: &'a Snapshot) -> Writer<'a> {
        Writer {
            snapshot,
            done: false,
        }
    }

    /// Room for `n` entries in all, so the entries are never moved as they grow.
    pub(crate) fn reserve(&mut self, n: usize) {
        let mut state = self.snapshot.lock();
        let more = n.saturating_sub(state.entries.len());
        state.entries.reserve_exact(more);
    }

    /// Entries pushed so far.
    pub(crate) fn len(&self) -> usize {
        self.snapshot.lock().entries.len()
    }

    /// Append entries (in name order, after those already there).
    pub(crate) fn push(&mut self, chunk: Vec<Entry>) {
        if chunk.is_empty() {
            return;
        }
        self.snapshot.lock().entries.extend(chunk);
        self.snapshot.grown.send_replace(());
    }

    /// End the read: complete, or failed with `error` after what was pushed.
    pub(crate) fn finish(mut self, result: Result<()>) {
        self.end(match result {
            Ok(()) => End::Complete,
            Err(e) => End::Failed(e),
        });
    }

    fn end(&mut self, end: End) {
        self.done = true;
        let mut state = self.snapshot.lock();
        state.end = Some(end);
        if matches!(state.end, Some(End::Complete)) {
            // Kept as long as it is shared: no spare capacity.
            state.entries.shrink_to_fit();
        }
        drop(state);
        self.snapshot.grown.send_replace(());
    }
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.end(End::Failed(Error::new(
                ErrorKind::Other,
                "Local error: listing failed",
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EntryKind;

    fn entry(name: &str) -> Entry {
        Entry {
            name: name.to_string(),
            kind: EntryKind::File,
            size: 0,
            mtime: 0,
            mode: 0o644,
            nlink: 1,
            unique: None,
        }
    }

    #[tokio::test]
    async fn readers_follow_the_read_at_their_own_pace() {
        let snapshot = std::sync::Arc::new(Snapshot::new());
        let reader = {
            let snapshot = std::sync::Arc::clone(&snapshot);
            tokio::spawn(async move {
                let mut names = Vec::new();
                let mut at = 0;
                while let Some(chunk) = snapshot.chunk(at, 2).await {
                    let chunk = chunk.unwrap();
                    assert!(chunk.len() <= 2);
                    at += chunk.len();
                    names.extend(chunk.into_iter().map(|e| e.name));
                }
                names
            })
        };
        let mut writer = Writer::new(&snapshot);
        for name in ["a", "b", "c", "d", "e"] {
            writer.push(vec![entry(name)]);
            tokio::task::yield_now().await;
        }
        assert_eq!(snapshot.complete_len(), None);
        writer.finish(Ok(()));
        assert_eq!(reader.await.unwrap(), ["a", "b", "c", "d", "e"]);
        assert_eq!(snapshot.complete_len(), Some(5));
        // A latecomer reads it all from the start.
        assert_eq!(snapshot.chunk(3, 10).await.unwrap().unwrap().len(), 2);
        assert!(snapshot.chunk(5, 10).await.is_none());
    }

    #[tokio::test]
    async fn a_read_that_ends_unsaid_fails_its_readers() {
        let snapshot = Snapshot::new();
        {
            let mut writer = Writer::new(&snapshot);
            writer.push(vec![entry("a")]);
        }
        assert!(snapshot.failed());
        assert!(snapshot.chunk(0, 10).await.unwrap().is_ok());
        assert!(snapshot.chunk(1, 10).await.unwrap().is_err());
    }
}
