//! [`Quota`]: how much a user may store, in bytes and in files, checked before and during
//! uploads the same way for every protocol.
//!
//! One [`Usage`] per user is shared by all the user's sessions, FTP and SFTP alike. It is
//! counted the first time an upload needs it, by walking the user's home through [`Storage`]
//! (at most [`WALK_LIMIT`] entries; the user's own uploads wait for it, nobody else does),
//! then kept up to date by the changes made through Ferry: an upload adds the size the file
//! ends with minus the size it had (a replaced file counts once), a deletion takes the file
//! away, a rename over a file takes that file away, and nothing else changes the figures.
//! Changes made beside Ferry (by another program on the same files) are seen at the next
//! count: the home is walked again when the figures are older than [`RECOUNT_AFTER`], or a
//! configuration reload marked them stale, and none of the user's uploads is in progress.
//!
//! Only regular files count, by their size (as listed: the length of a file, holes
//! included) and their number; directories and symbolic links don't.
//!
//! An upload is admitted when the user is below the bytes quota (or writes over an existing
//! file, which it may do up to that file's size), and, for a new file, below the files quota. Its writes are
//! then charged as they come: the file may grow only while the user's total stays within the
//! quota, and a write that would pass it is refused, nothing of it beyond the quota written.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;
use std::{fmt, io, pin::Pin};

use async_trait::async_trait;
use ferry_vfs::{
    EntryKind, Error, ErrorKind, FileHandle, Metadata, Reclaim, Result, Storage, Upload, VPath,
    WriteLimit, WriteMode,
};
use tokio::io::AsyncWrite;
use tokio::time::Instant;

/// How long a count of a user's home is trusted before it is walked again (when none of the
/// user's uploads is in progress), so that changes made beside Ferry are seen.
pub const RECOUNT_AFTER: Duration = Duration::from_secs(5 * 60);

/// Most entries one count of a home looks at. A larger home is counted as far as this goes
/// (a warning says so): the quota then sees less than there is.
pub const WALK_LIMIT: usize = 1_000_000;

/// A user's quotas; `None`: no limit of that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaLimits {
    /// Most bytes the user's files may hold together.
    pub bytes: Option<u64>,
    /// Most files the user may hold.
    pub files: Option<u64>,
}

impl QuotaLimits {
    /// Whether neither kind is limited.
    pub fn is_unlimited(&self) -> bool {
        self.bytes.is_none() && self.files.is_none()
    }
}

/// What a user stores, as far as the quota knows: shared by all the user's sessions.
#[derive(Debug, Default)]
pub struct Usage {
    state: Mutex<State>,
    /// Held while the home is walked: the user's other uploads wait for the count.
    counting: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct State {
    /// The last count, kept up to date since (`None`: never counted).
    counted: Option<Counted>,
    /// A reload asked for a new count.
    stale: bool,
    /// Bytes that uploads in progress have grown their files by.
    reserved_bytes: u64,
    /// New files that uploads in progress are making.
    reserved_files: u64,
    /// Uploads in progress.
    open: usize,
}

#[derive(Debug, Clone, Copy)]
struct Counted {
    bytes: u64,
    files: u64,
    at: Instant,
}

impl Usage {
    /// Nothing counted yet.
    pub fn new() -> Arc<Usage> {
        Arc::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is a few additions: nothing can poison it half-way.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Bytes and files the user holds, uploads in progress included; `None` until counted.
    pub fn figures(&self) -> Option<(u64, u64)> {
        let s = self.lock();
        s.counted.map(|c| {
            (
                c.bytes.saturating_add(s.reserved_bytes),
                c.files.saturating_add(s.reserved_files),
            )
        })
    }

    /// Count again before the next upload that finds no other in progress (a reload: files
    /// may have changed beside Ferry).
    pub fn mark_stale(&self) {
        self.lock().stale = true;
    }

    fn needs_count(&self) -> bool {
        let s = self.lock();
        match &s.counted {
            None => true,
            Some(c) => (s.stale || c.at.elapsed() >= RECOUNT_AFTER) && s.open == 0,
        }
    }

    /// Count the home of `storage` if the figures are missing or due.
    async fn ensure_counted(&self, storage: &dyn Storage) -> Result<()> {
        if !self.needs_count() {
            return Ok(());
        }
        let _walking = self.counting.lock().await;
        // Another session may have counted while this one waited.
        if !self.needs_count() {
            return Ok(());
        }
        let (bytes, files) = walk(storage).await?;
        let mut s = self.lock();
        s.counted = Some(Counted {
            bytes,
            files,
            at: Instant::now(),
        });
        s.stale = false;
        Ok(())
    }

    /// A file of `size` bytes was removed through Ferry.
    pub(crate) fn removed(&self, size: u64) {
        if let Some(c) = &mut self.lock().counted {
            c.bytes = c.bytes.saturating_sub(size);
            c.files = c.files.saturating_sub(1);
        }
    }
}

/// Regular files beneath the root of `storage`: their bytes and their number, from at most
/// [`WALK_LIMIT`] entries. A directory that can't be listed is left out (and logged); the
/// root itself must be listable.
async fn walk(storage: &dyn Storage) -> Result<(u64, u64)> {
    let mut pending = VecDeque::from([VPath::root()]);
    let (mut bytes, mut files, mut seen) = (0u64, 0u64, 0usize);
    let mut first = true;
    while let Some(dir) = pending.pop_front() {
        let entries = match storage.list(&dir).await {
            Ok(entries) => entries,
            Err(e) if first => return Err(e),
            Err(e) => {
                tracing::warn!(%dir, error = %e, "quota: a directory could not be counted");
                continue;
            }
        };
        first = false;
        for entry in entries {
            seen += 1;
            if seen > WALK_LIMIT {
                tracing::warn!(
                    limit = WALK_LIMIT,
                    "quota: the home holds more entries than a count looks at; counted as far as the limit"
                );
                return Ok((bytes, files));
            }
            match entry.kind {
                EntryKind::File => {
                    bytes = bytes.saturating_add(entry.size);
                    files += 1;
                }
                EntryKind::Dir => {
                    if let Ok(path) = dir.join_name(&entry.name) {
                        pending.push_back(path);
                    }
                }
                EntryKind::Symlink | EntryKind::Other => {}
            }
        }
    }
    Ok((bytes, files))
}

/// The refusal of an upload or a write: [`ErrorKind::InsufficientStorage`] (FTP `552`, SFTP
/// `SSH_FX_FAILURE`), saying which quota and how full it is.
fn exceeded(what: &str, used: u64, limit: u64) -> Error {
    Error::new(
        ErrorKind::InsufficientStorage,
        format!("Quota exceeded: {what} ({used} of {limit} used)"),
    )
}

/// A quota refusal carried by an [`io::Error`] (from a wrapped upload's writes, or its
/// [`WriteLimit`]): the text for the client.
#[derive(Debug)]
pub struct QuotaExceeded(pub String);

impl fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for QuotaExceeded {}

/// The quota refusal `e` carries, if it carries one (a transfer ended by the quota is answered
/// as such, not as a local failure).
pub fn quota_refusal(e: &io::Error) -> Option<&str> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<QuotaExceeded>())
        .map(|q| q.0.as_str())
}

fn io_error(e: Error) -> io::Error {
    io::Error::other(QuotaExceeded(e.message))
}

/// A user's quotas and the usage they are checked against.
#[derive(Debug, Clone)]
pub struct Quota {
    limits: QuotaLimits,
    usage: Arc<Usage>,
}

impl Quota {
    /// `limits` checked against `usage` (the user's, shared by its sessions).
    pub fn new(limits: QuotaLimits, usage: Arc<Usage>) -> Quota {
        Quota { limits, usage }
    }

    /// The limits.
    pub fn limits(&self) -> QuotaLimits {
        self.limits
    }

    /// The usage they are checked against.
    pub fn usage(&self) -> &Arc<Usage> {
        &self.usage
    }

    /// Before an upload of `path` in `mode` through `storage`: counted if due, then refused
    /// when the user is at the bytes quota (unless the upload writes over a file, which it
    /// may do up to that file's size) or, for a new file, at the files quota. The grant its
    /// writes are charged to.
    pub(crate) async fn admit(
        &self,
        storage: &dyn Storage,
        path: &VPath,
        mode: WriteMode,
    ) -> Result<Arc<Grant>> {
        self.usage.ensure_counted(storage).await?;
        let old = match storage.metadata(path).await {
            Ok(Metadata {
                kind: EntryKind::File,
                size,
                ..
            }) => Some(size),
            // A directory, a special file, a path that isn't there or can't be seen: opening
            // it answers for itself, as a new file if it succeeds.
            _ => None,
        };
        self.grant(old, mode, true)
    }

    /// A grant for changing the size of an existing file of `old` bytes in place (SFTP
    /// `SETSTAT` with a size): never refused up front, so that a user at the quota can still
    /// shrink a file; growing it is charged as any write.
    pub(crate) async fn admit_resize(&self, storage: &dyn Storage, old: u64) -> Result<Arc<Grant>> {
        self.usage.ensure_counted(storage).await?;
        self.grant(Some(old), WriteMode::Update, false)
    }

    /// A grant for a write to a file of `old` bytes (`None`: a new file) in `mode`, refused
    /// up front as [`Quota::admit`] says when `check`.
    fn grant(&self, old: Option<u64>, mode: WriteMode, check: bool) -> Result<Arc<Grant>> {
        let size = old.unwrap_or(0);
        let start = match mode {
            WriteMode::Replace | WriteMode::CreateNew => 0,
            WriteMode::Append | WriteMode::Update => size,
            WriteMode::At(offset) => offset,
        };
        let new_file = old.is_none();
        let mut s = self.usage.lock();
        let (bytes, files) = s.counted.map_or((0, 0), |c| (c.bytes, c.files));
        if check {
            if let (Some(limit), true) = (self.limits.files, new_file) {
                let used = files.saturating_add(s.reserved_files);
                if used >= limit {
                    return Err(exceeded("files", used, limit));
                }
            }
            if let Some(limit) = self.limits.bytes {
                let used = bytes.saturating_add(s.reserved_bytes);
                // What of the old file this upload may write again without growing it.
                let rewritable = match mode {
                    WriteMode::Replace | WriteMode::Update => size,
                    WriteMode::At(offset) => size.saturating_sub(offset),
                    WriteMode::Append | WriteMode::CreateNew => 0,
                };
                if used >= limit && rewritable == 0 {
                    return Err(exceeded("bytes", used, limit));
                }
            }
        }
        s.open += 1;
        if new_file {
            s.reserved_files += 1;
        }
        drop(s);
        Ok(Arc::new(Grant {
            usage: Arc::clone(&self.usage),
            limit: self.limits.bytes,
            in_place: !matches!(mode, WriteMode::Replace),
            state: Mutex::new(GrantState {
                old: size,
                extent: start,
                charged: 0,
                new_file,
                settled: false,
            }),
            on_refusal: OnceLock::new(),
            reported: AtomicBool::new(false),
        }))
    }
}

/// What a grant calls with the reason when its first write is refused.
type Report = Box<dyn Fn(&str) + Send + Sync>;

/// One upload's share of its user's quota: the size its file has reached (`extent`), and what
/// that adds to the user's usage while the upload is in progress.
pub(crate) struct Grant {
    usage: Arc<Usage>,
    limit: Option<u64>,
    /// What is written stays if the upload is given up (everything but a replacement, which
    /// is discarded).
    in_place: bool,
    state: Mutex<GrantState>,
    /// Told once, the first time a write is refused (the session logs the event).
    on_refusal: OnceLock<Report>,
    reported: AtomicBool,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("limit", &self.limit)
            .field("in_place", &self.in_place)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct GrantState {
    /// The file's size before the upload (0 for a new file).
    old: u64,
    /// The size the file has now.
    extent: u64,
    /// How far `extent` has grown past `old`: reserved in the usage.
    charged: u64,
    new_file: bool,
    settled: bool,
}

impl Grant {
    /// Calls `report` with the reason the first time one of this grant's writes is refused.
    pub(crate) fn on_refusal(&self, report: impl Fn(&str) + Send + Sync + 'static) {
        let _ = self.on_refusal.set(Box::new(report));
    }

    /// `e`, a write refused by the quota, reported the first time.
    fn refused(&self, e: Error) -> Error {
        // Once: a refused transfer's further writes say nothing new.
        if !self.reported.swap(true, Ordering::Relaxed) {
            if let Some(report) = self.on_refusal.get() {
                report(&e.message);
            }
        }
        e
    }

    fn lock(&self) -> MutexGuard<'_, GrantState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Grows (or shrinks) the file to `extent`: refused when the growth past the old size
    /// does not fit in the quota. Takes the grant's state locked, so that what was read of
    /// it and the change are one step (pipelined SFTP writes come several at once).
    fn resize_locked(&self, g: &mut GrantState, extent: u64) -> Result<()> {
        if g.settled {
            // Over: what it wrote has been counted already.
            return Ok(());
        }
        let want = extent.saturating_sub(g.old);
        let mut u = self.usage.lock();
        if want > g.charged {
            let need = want - g.charged;
            if let Some(limit) = self.limit {
                let used = u
                    .counted
                    .map_or(0, |c| c.bytes)
                    .saturating_add(u.reserved_bytes);
                if used.saturating_add(need) > limit {
                    return Err(self.refused(exceeded("bytes", used, limit)));
                }
            }
            u.reserved_bytes += need;
        } else {
            u.reserved_bytes = u.reserved_bytes.saturating_sub(g.charged - want);
        }
        g.charged = want;
        g.extent = extent;
        Ok(())
    }

    /// [`Grant::resize_locked`] to exactly `extent` (a size set).
    fn resize(&self, extent: u64) -> Result<()> {
        let mut g = self.lock();
        self.resize_locked(&mut g, extent)
    }

    /// Grow the file by as much of `n` bytes at its end as the quota allows (at least 1
    /// unless `n` is 0): how many. Refused when not one more byte fits.
    fn extend(&self, n: u64) -> Result<u64> {
        if n == 0 {
            return Ok(0);
        }
        let mut g = self.lock();
        let room = match self.limit {
            None => n,
            Some(limit) => {
                let u = self.usage.lock();
                let used = u
                    .counted
                    .map_or(0, |c| c.bytes)
                    .saturating_add(u.reserved_bytes);
                // Bytes of the old file not yet written again, then the quota's room.
                let slack = g.old.saturating_sub(g.extent);
                let room = slack.saturating_add(limit.saturating_sub(used));
                if room == 0 {
                    return Err(self.refused(exceeded("bytes", used, limit)));
                }
                room.min(n)
            }
        };
        let extent = g.extent.saturating_add(room);
        self.resize_locked(&mut g, extent)?;
        Ok(room)
    }

    /// The last `n` bytes [`Grant::extend`] allowed were not written after all.
    fn retract(&self, n: u64) {
        let mut g = self.lock();
        let extent = g.extent.saturating_sub(n);
        // Shrinking always fits.
        let _ = self.resize_locked(&mut g, extent);
    }

    /// Grow the file so that it reaches `end` (a write at an offset): all or nothing; a
    /// file that reaches further already stays as it is.
    fn reach(&self, end: u64) -> Result<()> {
        let mut g = self.lock();
        if end <= g.extent {
            return Ok(());
        }
        self.resize_locked(&mut g, end)
    }

    /// Grow the file by `n` bytes at its end (an append): all or nothing.
    fn grow(&self, n: u64) -> Result<()> {
        let mut g = self.lock();
        let extent = g.extent.saturating_add(n);
        self.resize_locked(&mut g, extent)
    }

    /// The upload is over: `kept`, what it wrote is the file now (the usage takes its net
    /// change); otherwise it was discarded. Its reservation is released either way.
    fn settle(&self, kept: bool) {
        let mut g = self.lock();
        if g.settled {
            return;
        }
        g.settled = true;
        let mut u = self.usage.lock();
        u.open = u.open.saturating_sub(1);
        u.reserved_bytes = u.reserved_bytes.saturating_sub(g.charged);
        if g.new_file {
            u.reserved_files = u.reserved_files.saturating_sub(1);
        }
        if kept {
            if let Some(c) = &mut u.counted {
                c.bytes = c.bytes.saturating_add(g.extent).saturating_sub(g.old);
                if g.new_file {
                    c.files += 1;
                }
            }
        }
    }

    /// Ended as its result says: a success keeps what it wrote; a failure keeps only what
    /// was written in place.
    fn finish<T>(&self, result: &Result<T>) {
        self.settle(result.is_ok() || self.in_place);
    }

    /// The upload never started (opening its file failed): nothing written, nothing kept.
    pub(crate) fn cancel(&self) {
        self.settle(false);
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        // Given up without a word (a session that ended, a task dropped).
        self.settle(self.in_place);
    }
}

impl WriteLimit for Grant {
    fn allow(&self, n: u64) -> io::Result<u64> {
        self.extend(n).map_err(io_error)
    }
}

/// An upload whose writes are charged to its user's quota.
pub(crate) struct QuotaUpload {
    inner: Box<dyn Upload>,
    grant: Arc<Grant>,
}

impl QuotaUpload {
    pub(crate) fn new(inner: Box<dyn Upload>, grant: Arc<Grant>) -> QuotaUpload {
        QuotaUpload { inner, grant }
    }
}

impl AsyncWrite for QuotaUpload {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Pin::new(&mut self.inner).poll_write(cx, buf);
        }
        let allowed = match self.grant.extend(buf.len() as u64) {
            Ok(n) => usize::try_from(n).unwrap_or(buf.len()).min(buf.len()),
            Err(e) => return Poll::Ready(Err(io_error(e))),
        };
        let polled = Pin::new(&mut self.inner).poll_write(cx, &buf[..allowed]);
        let written = match &polled {
            Poll::Ready(Ok(n)) => *n,
            _ => 0,
        };
        if written < allowed {
            self.grant.retract((allowed - written) as u64);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Upload for QuotaUpload {
    async fn commit(self: Box<Self>) -> Result<()> {
        let QuotaUpload { inner, grant } = *self;
        let result = inner.commit().await;
        grant.finish(&result);
        result
    }

    async fn commit_then_reclaim(self: Box<Self>) -> Result<Option<Reclaim>> {
        let QuotaUpload { inner, grant } = *self;
        let result = inner.commit_then_reclaim().await;
        grant.finish(&result);
        result
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        let QuotaUpload { inner, grant } = *self;
        let result = inner.abort().await;
        grant.settle(grant.in_place);
        result
    }

    fn local_file(&self) -> Option<&std::fs::File> {
        self.inner.local_file()
    }

    fn write_limit(&self) -> Option<Arc<dyn WriteLimit>> {
        Some(Arc::clone(&self.grant) as Arc<dyn WriteLimit>)
    }
}

/// A file open for writes at offsets whose growth is charged to its user's quota.
pub(crate) struct QuotaFile {
    inner: Box<dyn FileHandle>,
    grant: Arc<Grant>,
    /// Every write goes at the end, whatever its offset.
    append: bool,
}

impl QuotaFile {
    pub(crate) fn new(inner: Box<dyn FileHandle>, grant: Arc<Grant>, append: bool) -> QuotaFile {
        QuotaFile {
            inner,
            grant,
            append,
        }
    }
}

#[async_trait]
impl FileHandle for QuotaFile {
    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.inner.read_at(offset, len).await
    }

    async fn read_at_into(&self, offset: u64, len: usize, buf: &mut Vec<u8>) -> Result<usize> {
        self.inner.read_at_into(offset, len, buf).await
    }

    async fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        let len = data.len() as u64;
        if self.append {
            self.grant.grow(len)?;
        } else {
            self.grant.reach(offset.saturating_add(len))?;
        }
        self.inner.write_at(offset, data).await
    }

    async fn metadata(&self) -> Result<Metadata> {
        self.inner.metadata().await
    }

    async fn set_len(&self, len: u64) -> Result<()> {
        self.grant.resize(len)?;
        self.inner.set_len(len).await
    }

    async fn sync(&self) -> Result<()> {
        self.inner.sync().await
    }

    async fn close(self: Box<Self>) -> Result<()> {
        let QuotaFile { inner, grant, .. } = *self;
        let result = inner.close().await;
        grant.finish(&result);
        result
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        let QuotaFile { inner, grant, .. } = *self;
        let result = inner.abort().await;
        grant.settle(grant.in_place);
        result
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use ferry_auth::{Account, Permissions};
    use ferry_vfs::{FileAccess, MemoryFs};
    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::UserFs;

    fn p(s: &str) -> VPath {
        VPath::root().resolve(s).unwrap()
    }

    async fn put(fs: &dyn Storage, path: &str, len: usize) {
        let mut up = fs.open_write(&p(path), WriteMode::Replace).await.unwrap();
        up.write_all(&vec![7u8; len]).await.unwrap();
        up.commit().await.unwrap();
    }

    /// `/a` (100 bytes) and `/d/b` (50 bytes).
    async fn home() -> Arc<MemoryFs> {
        let fs = Arc::new(MemoryFs::new());
        put(fs.as_ref(), "/a", 100).await;
        fs.mkdir(&p("/d")).await.unwrap();
        put(fs.as_ref(), "/d/b", 50).await;
        fs
    }

    /// A user of `storage` held to `bytes` and `files`, counted in `usage`.
    fn user(storage: Arc<MemoryFs>, usage: &Arc<Usage>, bytes: u64, files: u64) -> UserFs {
        let account = Arc::new(Account {
            name: "q".into(),
            home: PathBuf::from("/unused"),
            permissions: Permissions::ALL,
            anonymous: false,
            limits: Default::default(),
        });
        let limits = QuotaLimits {
            bytes: Some(bytes),
            files: Some(files),
        };
        UserFs::new(account, storage).with_quota(Some(Quota::new(limits, Arc::clone(usage))))
    }

    async fn upload(user: &UserFs, path: &str, len: usize) -> Result<()> {
        let mut up = user.open_write(&p(path), WriteMode::Replace).await?;
        if let Err(e) = up.write_all(&vec![1u8; len]).await {
            let _ = up.abort().await;
            let text = quota_refusal(&e)
                .unwrap_or("not a quota refusal")
                .to_string();
            return Err(Error::new(ErrorKind::InsufficientStorage, text));
        }
        up.commit().await
    }

    #[tokio::test]
    async fn the_home_is_counted_then_followed_through_uploads_deletes_and_renames() {
        let fs = home().await;
        let usage = Usage::new();
        let u = user(Arc::clone(&fs), &usage, 10_000, 100);
        assert_eq!(
            usage.figures(),
            None,
            "counted only when an upload needs it"
        );
        upload(&u, "/c", 200).await.unwrap();
        assert_eq!(usage.figures(), Some((350, 3)));
        // Replacing counts the new size minus the old.
        upload(&u, "/c", 20).await.unwrap();
        assert_eq!(usage.figures(), Some((170, 3)));
        u.remove_file(&p("/a")).await.unwrap();
        assert_eq!(usage.figures(), Some((70, 2)));
        // A rename moves nothing; one over a file removes that file.
        u.rename(&p("/c"), &p("/e")).await.unwrap();
        assert_eq!(usage.figures(), Some((70, 2)));
        u.rename(&p("/e"), &p("/d/b")).await.unwrap();
        assert_eq!(usage.figures(), Some((20, 1)));
        // An empty file is a file.
        upload(&u, "/empty", 0).await.unwrap();
        assert_eq!(usage.figures(), Some((20, 2)));
    }

    #[tokio::test]
    async fn a_full_quota_refuses_new_uploads_but_not_a_same_size_replacement() {
        let fs = home().await;
        let usage = Usage::new();
        let u = user(Arc::clone(&fs), &usage, 150, 100);
        let e = upload(&u, "/new", 1).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::InsufficientStorage);
        assert_eq!(e.message, "Quota exceeded: bytes (150 of 150 used)");
        // Nothing was made.
        assert!(fs.metadata(&p("/new")).await.is_err());
        // Rewriting a file at its size fits; one byte more does not, and the old file stays.
        upload(&u, "/a", 100).await.unwrap();
        let e = upload(&u, "/a", 101).await.unwrap_err();
        assert_eq!(e.message, "Quota exceeded: bytes (150 of 150 used)");
        assert_eq!(fs.metadata(&p("/a")).await.unwrap().size, 100);
        assert_eq!(usage.figures(), Some((150, 2)));
        // Appending to a file at the quota is refused up front.
        let e = u
            .open_write(&p("/a"), WriteMode::Append)
            .await
            .err()
            .unwrap();
        assert_eq!(e.kind, ErrorKind::InsufficientStorage);
    }

    #[tokio::test]
    async fn an_upload_is_cut_where_the_quota_ends_and_a_discarded_one_counts_nothing() {
        let fs = home().await;
        let usage = Usage::new();
        let u = user(Arc::clone(&fs), &usage, 1_000, 100);
        let mut up = u.open_write(&p("/big"), WriteMode::Replace).await.unwrap();
        let e = up.write_all(&[0u8; 900]).await.unwrap_err();
        assert_eq!(
            quota_refusal(&e),
            Some("Quota exceeded: bytes (1000 of 1000 used)")
        );
        assert_eq!(usage.figures(), Some((1_000, 3)), "in progress: reserved");
        up.abort().await.unwrap();
        assert_eq!(usage.figures(), Some((150, 2)));
        assert!(fs.metadata(&p("/big")).await.is_err());
        // An upload dropped without a word releases what it held too.
        let mut up = u.open_write(&p("/big"), WriteMode::Replace).await.unwrap();
        up.write_all(&[0u8; 500]).await.unwrap();
        drop(up);
        assert_eq!(usage.figures(), Some((150, 2)));
    }

    #[tokio::test]
    async fn direct_writes_ask_the_write_limit() {
        let fs = home().await;
        let usage = Usage::new();
        let u = user(Arc::clone(&fs), &usage, 400, 100);
        let up = u.open_write(&p("/a"), WriteMode::Replace).await.unwrap();
        let limit = up.write_limit().unwrap();
        // The old file's 100 bytes plus the 250 left.
        assert_eq!(limit.allow(300).unwrap(), 300);
        assert_eq!(limit.allow(100).unwrap(), 50);
        let e = limit.allow(1).unwrap_err();
        assert_eq!(
            quota_refusal(&e),
            Some("Quota exceeded: bytes (400 of 400 used)")
        );
        drop(limit);
        up.abort().await.unwrap();
        assert_eq!(usage.figures(), Some((150, 2)));
    }

    #[tokio::test]
    async fn the_files_quota_refuses_new_files_only() {
        let fs = home().await;
        let usage = Usage::new();
        let u = user(Arc::clone(&fs), &usage, 10_000, 2);
        let e = upload(&u, "/third", 1).await.unwrap_err();
        assert_eq!(e.message, "Quota exceeded: files (2 of 2 used)");
        upload(&u, "/a", 300).await.unwrap();
        u.remove_file(&p("/a")).await.unwrap();
        upload(&u, "/third", 1).await.unwrap();
        assert_eq!(usage.figures(), Some((51, 2)));
        // An upload in progress holds its new file's place.
        u.remove_file(&p("/third")).await.unwrap();
        let first = u.open_write(&p("/x"), WriteMode::Replace).await.unwrap();
        let e = u
            .open_write(&p("/y"), WriteMode::Replace)
            .await
            .err()
            .unwrap();
        assert_eq!(e.message, "Quota exceeded: files (2 of 2 used)");
        first.abort().await.unwrap();
        u.open_write(&p("/y"), WriteMode::Replace).await.unwrap();
    }

    #[tokio::test]
    async fn writes_at_offsets_and_sizes_are_charged_by_how_far_the_file_reaches() {
        let fs = home().await;
        let usage = Usage::new();
        let u = user(Arc::clone(&fs), &usage, 300, 100);
        let access = FileAccess {
            read: false,
            write: Some(WriteMode::Update),
        };
        let f = u.open_file(&p("/a"), access).await.unwrap();
        // Within the old size: free; up to the quota: fine; past it: refused, nothing written.
        f.write_at(0, &[1u8; 100]).await.unwrap();
        f.write_at(100, &[1u8; 150]).await.unwrap();
        let e = f.write_at(250, &[1u8; 1]).await.unwrap_err();
        assert_eq!(e.message, "Quota exceeded: bytes (300 of 300 used)");
        // A hole counts as the file's length.
        assert!(f.write_at(10_000, &[1u8; 1]).await.is_err());
        assert!(f.set_len(251).await.is_err());
        f.set_len(10).await.unwrap();
        f.close().await.unwrap();
        assert_eq!(fs.metadata(&p("/a")).await.unwrap().size, 10);
        assert_eq!(usage.figures(), Some((60, 2)));
        // At the quota a file may be written over in place, up to its size.
        upload(&u, "/fill", 240).await.unwrap();
        let f = u.open_file(&p("/a"), access).await.unwrap();
        f.write_at(0, &[5u8; 10]).await.unwrap();
        assert!(f.write_at(10, b"x").await.is_err());
        f.close().await.unwrap();
        u.remove_file(&p("/fill")).await.unwrap();
        // Appends through a handle are charged by what they add.
        let appending = FileAccess {
            read: false,
            write: Some(WriteMode::Append),
        };
        let f = u.open_file(&p("/a"), appending).await.unwrap();
        f.write_at(0, &[6u8; 200]).await.unwrap();
        assert!(f.write_at(0, &[6u8; 41]).await.is_err());
        f.write_at(0, &[6u8; 40]).await.unwrap();
        f.close().await.unwrap();
        assert_eq!(usage.figures(), Some((300, 2)));
        u.set_len(&p("/a"), 10).await.unwrap();
        // At the quota a file can still be cut, not grown.
        upload(&u, "/fill", 240).await.unwrap();
        assert!(u.set_len(&p("/fill"), 241).await.is_err());
        u.set_len(&p("/fill"), 40).await.unwrap();
        assert_eq!(usage.figures(), Some((100, 3)));
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_share_the_usage_and_a_later_count_sees_changes_made_beside_ferry() {
        let fs = home().await;
        let usage = Usage::new();
        let one = user(Arc::clone(&fs), &usage, 10_000, 100);
        let two = user(Arc::clone(&fs), &usage, 10_000, 100);
        upload(&one, "/x", 10).await.unwrap();
        upload(&two, "/y", 10).await.unwrap();
        assert_eq!(usage.figures(), Some((170, 4)));
        // Beside Ferry: a file appears; unseen until the count is due.
        put(fs.as_ref(), "/outside", 1_000).await;
        upload(&one, "/z", 10).await.unwrap();
        assert_eq!(usage.figures(), Some((180, 5)));
        tokio::time::advance(RECOUNT_AFTER).await;
        upload(&two, "/z", 10).await.unwrap();
        assert_eq!(usage.figures(), Some((1_180, 6)));
        // A reload marks it stale: counted again at the next upload.
        fs.remove_file(&p("/outside")).await.unwrap();
        usage.mark_stale();
        upload(&one, "/z", 10).await.unwrap();
        assert_eq!(usage.figures(), Some((180, 5)));
    }
}
