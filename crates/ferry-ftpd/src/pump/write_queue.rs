//! The write side of a pipelined upload.

use std::io;
use std::sync::Arc;

use crate::counters::TransferCounters;

/// The write side of a pipelined upload: the receiving task queues filled buffers, and a
/// blocking-pool job writes them in order, going from one to the next while any is queued
/// (as a thread of its own would) and ending when none is: a client that is slow to send, or
/// stops, holds no thread of the pool, which logins and storage calls also use. The task
/// starts a job when it queues a buffer and none runs. Dropped (`ABOR`), the queue is
/// emptied: a job stops after the write in hand.
pub(super) struct Writes {
    shared: Arc<WriteShared>,
}

struct WriteShared {
    file: std::fs::File,
    counters: Arc<TransferCounters>,
    state: std::sync::Mutex<WriteState>,
    /// A buffer came back, or the job ended.
    changed: tokio::sync::Notify,
}

#[derive(Default)]
struct WriteState {
    queued: std::collections::VecDeque<(Vec<u8>, usize)>,
    free: Vec<Vec<u8>>,
    /// Buffers made so far (at most [`WRITE_BUFFERS`]).
    made: usize,
    running: bool,
    failed: Option<io::Error>,
}

impl WriteShared {
    fn state(&self) -> std::sync::MutexGuard<'_, WriteState> {
        // A panic while holding the lock leaves plain data behind; carry on with it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The job: write what is queued, in order, until nothing is.
    fn run(&self) {
        use std::io::Write;
        loop {
            let next = {
                let mut state = self.state();
                let next = state.queued.pop_front();
                if next.is_none() {
                    state.running = false;
                }
                next
            };
            let Some((buf, n)) = next else {
                self.changed.notify_one();
                return;
            };
            let result = (&self.file).write_all(&buf[..n]);
            let mut state = self.state();
            state.free.push(buf);
            match result {
                Ok(()) => self.counters.add_pipelined_upload(n as u64),
                Err(e) => {
                    state.failed = Some(e);
                    state.queued.clear();
                    state.running = false;
                    drop(state);
                    self.changed.notify_one();
                    return;
                }
            }
            drop(state);
            self.changed.notify_one();
        }
    }
}

impl Writes {
    /// `first` (the direct phase's buffer) is reused when it has the pipelined size.
    pub(super) fn new(
        file: std::fs::File,
        first: Option<Vec<u8>>,
        counters: Arc<TransferCounters>,
    ) -> Writes {
        let mut state = WriteState::default();
        if let Some(buf) = first {
            state.free.push(buf);
            state.made = 1;
        }
        Writes {
            shared: Arc::new(WriteShared {
                file,
                counters,
                state: std::sync::Mutex::new(state),
                changed: tokio::sync::Notify::new(),
            }),
        }
    }

    /// A buffer of `size` bytes to receive into: a free one, a new one while fewer than
    /// [`WRITE_BUFFERS`] exist, or the next one written. The first write failure, if any.
    pub(super) async fn free_buffer(&self, size: usize) -> io::Result<Vec<u8>> {
        loop {
            {
                let mut state = self.shared.state();
                if let Some(e) = state.failed.take() {
                    return Err(e);
                }
                if let Some(buf) = state.free.pop() {
                    return Ok(buf);
                }
                if state.made < WRITE_BUFFERS {
                    state.made += 1;
                    return Ok(vec![0u8; size]);
                }
            }
            self.shared.changed.notified().await;
        }
    }

    /// Queue `buf[..n]` for writing (an empty one is kept for reuse); start a job if none runs.
    pub(super) fn queue(&self, buf: Vec<u8>, n: usize) -> io::Result<()> {
        let mut state = self.shared.state();
        if let Some(e) = state.failed.take() {
            return Err(e);
        }
        if n == 0 {
            state.free.push(buf);
            return Ok(());
        }
        state.queued.push_back((buf, n));
        if !state.running {
            state.running = true;
            let shared = Arc::clone(&self.shared);
            drop(tokio::task::spawn_blocking(move || shared.run()));
        }
        Ok(())
    }

    /// Wait until everything queued is written; the first failure, if any.
    pub(super) async fn finish(&self) -> io::Result<()> {
        loop {
            {
                let mut state = self.shared.state();
                if let Some(e) = state.failed.take() {
                    return Err(e);
                }
                if !state.running && state.queued.is_empty() {
                    return Ok(());
                }
            }
            self.shared.changed.notified().await;
        }
    }
}

impl Drop for Writes {
    fn drop(&mut self) {
        self.shared.state().queued.clear();
    }
}

/// Buffers of one pipelined upload: one being received into, one being written.
pub(super) const WRITE_BUFFERS: usize = 2;
