//! [`LocalFs`]: a local directory served as `/`, jailed with cap-std (openat2/`RESOLVE_BENEATH`
//! where available): neither `..` nor a symlink can reach outside the root.
//!
//! Every operation runs its blocking cap-std calls on tokio's blocking pool. Paths are handed to
//! cap-std relative to the root directory handle; cap-std (and the kernel, through `openat2`)
//! refuses any resolution that would leave it, which surfaces as
//! [`ErrorKind::PermissionDenied`]. Symlinks that stay inside the root are followed.
//!
//! Only regular files are opened for reading or writing: a FIFO or device node under the root is
//! refused ([`ErrorKind::PermissionDenied`]) rather than opened, so it can't block a worker.
//!
//! Uploads' temporary files do not exist for clients, and those a crash left are removed (see
//! [`crate::leftovers`]).

use std::io::{Seek, SeekFrom};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::Entry;
use crate::VPath;
use async_trait::async_trait;
use cap_std::fs::{Dir, OpenOptions};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::leftovers::{self, hides};
use crate::listcache::{self, Found, ListCache};
use crate::snapshot::{Snapshot, Writer};
use crate::stat::convert;
use crate::{
    Capabilities, ChunkSource, EntryStream, Error, ErrorKind, FileAccess, FileHandle, Metadata,
    ReadHandle, Reclaim, Result, Storage, Upload, WriteMode,
};

/// Prefix of the temporary file a [`WriteMode::Replace`] upload is written to, beside its target.
pub use crate::leftovers::TEMP_PREFIX;

/// A local directory served as `/`.
#[derive(Debug, Clone)]
pub struct LocalFs {
    dir: Arc<Dir>,
    /// Where listings of large directories are kept and shared (see [`crate::listcache`]).
    listings: Arc<ListCache>,
}

impl LocalFs {
    /// Open `root` (which must exist and be a directory) as a jail, with a listing cache of its
    /// own ([`ListCache::default`]). The first time a root is opened in the process, the
    /// temporary files that uploads of a process that died left in it are looked for and
    /// removed, in the background (see [`crate::leftovers`]).
    pub fn new(root: &Path) -> std::io::Result<Self> {
        Self::with_cache(root, Arc::new(ListCache::default()))
    }

    /// [`LocalFs::new`], keeping and sharing listings in `listings`, which other instances
    /// may share: a server gives every root it opens the same one, so that its limit holds
    /// for the server and listings of a directory share one read whichever root reached it.
    pub fn with_cache(root: &Path, listings: Arc<ListCache>) -> std::io::Result<Self> {
        let dir = Arc::new(Dir::open_ambient_dir(root, cap_std::ambient_authority())?);
        leftovers::sweep_once(&dir);
        Ok(LocalFs { dir, listings })
    }

    /// Run `f` with the root directory on the blocking pool.
    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Dir) -> Result<T> + Send + 'static,
    {
        let dir = Arc::clone(&self.dir);
        match tokio::task::spawn_blocking(move || f(&dir)).await {
            Ok(result) => result,
            Err(_) => Err(task_failed()),
        }
    }

    /// Open `path` for writing in `mode` (and for reading too, if `read`), on the blocking pool:
    /// the file, and for [`WriteMode::Replace`] the guard of its temporary file.
    async fn open_for_writing(
        &self,
        path: &VPath,
        mode: WriteMode,
        read: bool,
    ) -> Result<(std::fs::File, Option<TempFile>)> {
        if hides(path) {
            return Err(leftovers::reserved());
        }
        let Some((parent, name)) = split(path) else {
            return Err(match mode {
                WriteMode::CreateNew => Error::new(ErrorKind::AlreadyExists, "File exists"),
                _ => Error::new(ErrorKind::IsADirectory, "Is a directory"),
            });
        };
        let target = join(&parent, &name);
        let root = Arc::clone(&self.dir);
        let (file, temp) = self
            .run(move |dir| {
                let current = existing(dir, &target)?;
                if mode == WriteMode::CreateNew {
                    if current.is_some() {
                        return Err(Error::new(ErrorKind::AlreadyExists, "File exists"));
                    }
                } else if let Some(md) = &current {
                    if md.is_dir() {
                        return Err(Error::new(ErrorKind::IsADirectory, "Is a directory"));
                    }
                    if !md.is_file() {
                        return Err(not_regular());
                    }
                }
                match mode {
                    WriteMode::Replace => {
                        let temp_rel = join(&parent, &leftovers::temp_name());
                        let file = dir.open_with(
                            &temp_rel,
                            OpenOptions::new().read(read).write(true).create_new(true),
                        )?;
                        leftovers::claim(&file);
                        let guard = TempFile {
                            dir: root,
                            temp: temp_rel,
                            target,
                            armed: true,
                        };
                        if let Some(md) = current {
                            // Keep the replaced file's permission bits (best effort).
                            let _ = file.set_permissions(md.permissions());
                        }
                        Ok((file.into_std(), Some(guard)))
                    }
                    WriteMode::Append => {
                        let file = dir.open_with(
                            &target,
                            OpenOptions::new().read(read).append(true).create(true),
                        )?;
                        Ok((file.into_std(), None))
                    }
                    WriteMode::At(offset) => {
                        let len = current.map_or(0, |md| md.len());
                        if offset > len {
                            return Err(Error::new(
                                ErrorKind::Other,
                                "restart offset beyond end of file",
                            ));
                        }
                        let file = dir.open_with(
                            &target,
                            OpenOptions::new().read(read).write(true).create(true),
                        )?;
                        let md = file.metadata()?;
                        if !md.is_file() {
                            return Err(not_regular());
                        }
                        if offset > md.len() {
                            return Err(Error::new(
                                ErrorKind::Other,
                                "restart offset beyond end of file",
                            ));
                        }
                        file.set_len(offset)?;
                        let mut file = file.into_std();
                        file.seek(SeekFrom::Start(offset))?;
                        Ok((file, None))
                    }
                    WriteMode::CreateNew => {
                        let file = dir.open_with(
                            &target,
                            OpenOptions::new().read(read).write(true).create_new(true),
                        )?;
                        Ok((file.into_std(), None))
                    }
                    WriteMode::Update => {
                        let file = dir.open_with(
                            &target,
                            OpenOptions::new().read(read).write(true).create(true),
                        )?;
                        if !file.metadata()?.is_file() {
                            return Err(not_regular());
                        }
                        Ok((file.into_std(), None))
                    }
                }
            })
            .await?;
        Ok((file, temp))
    }
}

/// A blocking storage task that panicked or was cancelled.
fn task_failed() -> Error {
    Error::new(ErrorKind::Other, "Local error: storage task failed")
}

/// The path cap-std resolves beneath the root: `.` for the root itself.
fn rel(path: &VPath) -> String {
    if path.is_root() {
        ".".to_string()
    } else {
        path.relative().to_string()
    }
}

/// `(parent, name)` relative to the root (`parent` is `""` for a top-level name); `None` for `/`.
fn split(path: &VPath) -> Option<(String, String)> {
    let comps: Vec<&str> = path.components().collect();
    let (name, parents) = comps.split_last()?;
    Some((parents.join("/"), (*name).to_string()))
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

fn root_refused() -> Error {
    Error::new(ErrorKind::PermissionDenied, "Permission denied")
}

fn not_regular() -> Error {
    Error::new(ErrorKind::PermissionDenied, "Not a regular file")
}

/// Directories with at least this many entries are stat'ed on several threads.
const PARALLEL_STAT_MIN: usize = 2000;

/// Entries per chunk of a streamed listing.
const STAT_CHUNK: usize = 500;

/// The names in `dir` that can be shown: names that aren't UTF-8 or that hold CR/LF can't be
/// shown safely on a line-based control or data channel, and uploads' temporary files are not
/// files yet (those no upload owns any more are removed on the way).
fn read_names(dir: &Dir) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let mut temps = Vec::new();
    for entry in dir.entries()? {
        match entry?.file_name().into_string() {
            Ok(name) if leftovers::is_upload_temp(&name) => temps.push(name),
            Ok(name) if !name.contains(['\r', '\n']) => names.push(name),
            _ => continue,
        }
    }
    for name in temps {
        leftovers::remove_if_stale(dir, &name);
    }
    Ok(names)
}

/// Stat `names` and hand the entries to `emit` in chunks, in the order of `names`. One stat
/// per entry is what a listing costs (about 1 µs each), so a large directory is spread over
/// the cores: workers take chunks in turn and this thread passes them on in order, the first
/// while the rest are still being read. `emit` returns `Ok(false)` to stop early; after it is
/// given an error, nothing more is stat'ed.
fn stat_in_order(
    dir: &Dir,
    names: Vec<String>,
    mut emit: impl FnMut(Result<Vec<Entry>>) -> Result<bool>,
) -> Result<()> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};
    let threads = if names.len() >= PARALLEL_STAT_MIN {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(4)
    } else {
        1
    };
    // Each chunk its own small allocation: split off the front instead, every chunk would
    // keep the capacity of all the names after it (for 100,000 names, 200 MB at once).
    let mut chunks: Vec<Vec<String>> = Vec::with_capacity(names.len().div_ceil(STAT_CHUNK));
    let mut names = names.into_iter();
    loop {
        let chunk: Vec<String> = names.by_ref().take(STAT_CHUNK).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push(chunk);
    }
    if threads == 1 {
        for chunk in chunks {
            let entries = stat_all(dir, chunk);
            let failed = entries.is_err();
            if !emit(entries)? || failed {
                break;
            }
        }
        return Ok(());
    }
    let count = chunks.len();
    let queue = Mutex::new(chunks.into_iter().enumerate());
    let stop = AtomicBool::new(false);
    let (done_tx, done_rx) = std::sync::mpsc::channel::<(usize, Result<Vec<Entry>>)>();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let done_tx = done_tx.clone();
            let (queue, stop) = (&queue, &stop);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let next = queue.lock().ok().and_then(|mut q| q.next());
                    let Some((i, chunk)) = next else { break };
                    if done_tx.send((i, stat_all(dir, chunk))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        // Chunks finish out of order; they are passed on in order.
        let mut waiting = std::collections::BTreeMap::new();
        let mut next = 0;
        let result = 'emit: loop {
            if next == count {
                break Ok(());
            }
            let Ok((i, entries)) = done_rx.recv() else {
                break Err(Error::new(ErrorKind::Other, "Local error: listing failed"));
            };
            waiting.insert(i, entries);
            while let Some(entries) = waiting.remove(&next) {
                next += 1;
                let failed = entries.is_err();
                match emit(entries) {
                    Ok(true) if !failed => {}
                    Ok(_) => break 'emit Ok(()),
                    Err(e) => break 'emit Err(e),
                }
            }
        };
        stop.store(true, Ordering::Relaxed);
        result
    })
}

/// Each name's own metadata (a symlink is reported as one, never followed); names removed
/// since the directory was read are skipped.
fn stat_all(dir: &Dir, names: Vec<String>) -> Result<Vec<Entry>> {
    let mut entries = Vec::with_capacity(names.len());
    for name in names {
        match dir.symlink_metadata(&name) {
            Ok(md) => entries.push(convert(&md).into_entry(name)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(entries)
}

/// One listing of a directory: its own position in a shared read (see `snapshot`). Entries
/// are brought up to date (`listcache::fresh`) when the read was made for another listing, and
/// all of them once the read is older than `listcache::MAX_AGE`.
struct Listing {
    snapshot: Arc<Snapshot>,
    next: usize,
    /// The listed directory, where entries are stat'ed again.
    dir: Arc<Dir>,
    /// The read was made for this listing.
    own: bool,
}

impl Listing {
    fn new(snapshot: Arc<Snapshot>, dir: Arc<Dir>, own: bool) -> Listing {
        Listing {
            snapshot,
            next: 0,
            dir,
            own,
        }
    }
}

impl Drop for Listing {
    fn drop(&mut self) {
        if self.snapshot.len() >= crate::snapshot::RELEASE_AFTER {
            crate::snapshot::release_soon();
        }
    }
}

#[async_trait]
impl ChunkSource for Listing {
    async fn next_chunk(&mut self) -> Option<Result<Vec<Entry>>> {
        let chunk = match self.snapshot.chunk(self.next, STAT_CHUNK).await? {
            Ok(chunk) => chunk,
            Err(e) => return Some(Err(e)),
        };
        self.next += chunk.len();
        let all = self.snapshot.started().elapsed() > listcache::MAX_AGE;
        let refresh = all || !self.own;
        if !refresh || !chunk.iter().any(|e| listcache::needs_fresh(e, all)) {
            return Some(Ok(chunk));
        }
        let dir = Arc::clone(&self.dir);
        // A few hundred stats at most, on the blocking pool only while they run.
        let fresh = tokio::task::spawn_blocking(move || {
            chunk
                .into_iter()
                .filter_map(|e| listcache::fresh(&dir, e, all))
                .collect()
        })
        .await;
        Some(fresh.map_err(|_| task_failed()))
    }
}

/// Metadata of `rel` following symlinks (inside the jail), `None` if it doesn't exist.
fn existing(dir: &Dir, rel: &str) -> Result<Option<cap_std::fs::Metadata>> {
    match dir.metadata(rel) {
        Ok(md) => Ok(Some(md)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn to_system_time(unix_secs: i64) -> Option<SystemTime> {
    let magnitude = Duration::from_secs(unix_secs.unsigned_abs());
    if unix_secs >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    }
}

/// Removes a [`WriteMode::Replace`] temporary file unless the upload was committed.
struct TempFile {
    dir: Arc<Dir>,
    temp: String,
    target: String,
    armed: bool,
}

impl TempFile {
    /// Keep the file: it has been renamed onto the target.
    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            // A single unlink: cheap enough to do inline, and Drop can't await.
            let _ = self.dir.remove_file(&self.temp);
        }
    }
}

/// An upload to a local file.
struct LocalUpload {
    file: tokio::fs::File,
    /// The same open file (shared position) for the direct-write fast path; `None` in append
    /// mode, where `splice` is not allowed (`O_APPEND`).
    direct: Option<std::fs::File>,
    /// `Some` for [`WriteMode::Replace`]: the temporary file to rename on commit.
    temp: Option<TempFile>,
}

impl AsyncWrite for LocalUpload {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.file).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

#[async_trait]
impl Upload for LocalUpload {
    /// Waits for every buffered write to reach the kernel, then (for `Replace`) renames the
    /// temporary file onto the target. No `fsync`: the rename is atomic for readers, but a
    /// power loss right after commit may lose the new content.
    fn local_file(&self) -> Option<&std::fs::File> {
        self.direct.as_ref()
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        if let Some(reclaim) = self.commit_then_reclaim().await? {
            let _ = tokio::task::spawn_blocking(reclaim).await;
        }
        Ok(())
    }

    async fn commit_then_reclaim(mut self: Box<Self>) -> Result<Option<Reclaim>> {
        self.file.flush().await?;
        match self.temp.take() {
            Some(temp) => put_in_place(temp).await,
            None => Ok(None),
        }
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        // Buffered writes land first, so the unlink below is the last word on the file.
        let _ = self.file.flush().await;
        if let Some(temp) = self.temp.take() {
            discard(temp).await;
        }
        Ok(())
    }
}

/// The largest replaced file [`put_in_place`] frees itself (bytes).
const RECLAIM_HERE: u64 = 1 << 20;

/// Rename a finished temporary file onto its target. The replaced file, if larger than
/// [`RECLAIM_HERE`], comes back still open, to be freed by the caller after it has answered
/// the client: replacing a file frees its pages when the last reference goes, inside the
/// rename (~150 ms for 1 GiB on tmpfs).
async fn put_in_place(mut temp: TempFile) -> Result<Option<Reclaim>> {
    let joined = tokio::task::spawn_blocking(move || {
        use cap_std::fs::OpenOptionsExt;
        let dir = Arc::clone(&temp.dir);
        let replaced = dir
            .open_with(
                &temp.target,
                OpenOptions::new()
                    .read(true)
                    .custom_flags(ferry_sys::O_PATH_NOFOLLOW),
            )
            .ok();
        let renamed = dir.rename(&temp.temp, &dir, &temp.target);
        if renamed.is_ok() {
            temp.disarm();
        }
        // A small file replaced is freed here at once: its few pages cost less than another
        // trip to this pool after the reply.
        let replaced =
            replaced.filter(|old| old.metadata().map_or(true, |md| md.len() > RECLAIM_HERE));
        // On failure `temp` drops here and removes the temporary file.
        (renamed, replaced)
    })
    .await;
    match joined {
        Ok((renamed, replaced)) => {
            renamed?;
            Ok(replaced.map(|old| Box::new(move || drop(old)) as Reclaim))
        }
        Err(_) => Err(task_failed()),
    }
}

/// Remove an unfinished temporary file, off the async workers.
async fn discard(temp: TempFile) {
    let _ = tokio::task::spawn_blocking(move || drop(temp)).await;
}

/// A local file open for reads and writes at offsets. Each call is one `pread`/`pwrite` made
/// in place on the async worker, as downloads read local files: a few microseconds against
/// the page cache, no blocking-pool round trip per SFTP request.
struct LocalHandle {
    file: std::fs::File,
    /// `Some` for [`WriteMode::Replace`]: the temporary file to rename on close.
    temp: Option<TempFile>,
    append: bool,
    readable: bool,
    writable: bool,
}

fn not_open_for(what: &str) -> Error {
    Error::new(
        ErrorKind::PermissionDenied,
        format!("File not open for {what}"),
    )
}

#[async_trait]
impl FileHandle for LocalHandle {
    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        if !self.readable {
            return Err(not_open_for("reading"));
        }
        let mut buf = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            let at = offset.saturating_add(filled as u64);
            match self.file.read_at(&mut buf[filled..], at) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
        buf.truncate(filled);
        Ok(buf)
    }

    async fn read_at_into(&self, offset: u64, len: usize, buf: &mut Vec<u8>) -> Result<usize> {
        use std::os::unix::fs::FileExt;
        if !self.readable {
            return Err(not_open_for("reading"));
        }
        let start = buf.len();
        buf.resize(start + len, 0);
        let mut filled = 0;
        while filled < len {
            let at = offset.saturating_add(filled as u64);
            match self.file.read_at(&mut buf[start + filled..], at) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    buf.truncate(start);
                    return Err(e.into());
                }
            }
        }
        buf.truncate(start + filled);
        Ok(filled)
    }

    async fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::FileExt;
        if !self.writable {
            return Err(not_open_for("writing"));
        }
        if self.append {
            // O_APPEND: every write goes to the end, whatever the offset.
            return Ok((&self.file).write_all(data)?);
        }
        Ok(self.file.write_all_at(data, offset)?)
    }

    async fn metadata(&self) -> Result<Metadata> {
        let md = cap_std::fs::Metadata::from_just_metadata(self.file.metadata()?);
        Ok(convert(&md))
    }

    async fn set_len(&self, len: u64) -> Result<()> {
        if !self.writable {
            return Err(not_open_for("writing"));
        }
        Ok(self.file.set_len(len)?)
    }

    async fn sync(&self) -> Result<()> {
        let file = self.file.try_clone()?;
        match tokio::task::spawn_blocking(move || file.sync_all()).await {
            Ok(done) => Ok(done?),
            Err(_) => Err(task_failed()),
        }
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        if let Some(temp) = self.temp.take() {
            if let Some(reclaim) = put_in_place(temp).await? {
                let _ = tokio::task::spawn_blocking(reclaim).await;
            }
        }
        Ok(())
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        if let Some(temp) = self.temp.take() {
            discard(temp).await;
        }
        Ok(())
    }
}

#[async_trait]
impl Storage for LocalFs {
    async fn metadata(&self, path: &VPath) -> Result<Metadata> {
        if hides(path) {
            return Err(leftovers::not_found());
        }
        let rel = rel(path);
        // Fast path, as for `open_read`: a path the kernel has cached is looked at here, on
        // the async worker (an SFTP `get` or `put` begins with one or two of these).
        if let Ok(st) = ferry_sys::stat_cached(&*self.dir, &rel) {
            return Ok(crate::stat::from_cached(&st));
        }
        self.run(move |dir| Ok(convert(&dir.metadata(&rel)?))).await
    }

    async fn list(&self, path: &VPath) -> Result<Vec<Entry>> {
        if hides(path) {
            return Err(leftovers::not_found());
        }
        let rel = rel(path);
        self.run(move |dir| {
            let sub = dir.open_dir(&rel)?;
            let names = read_names(&sub)?;
            let mut entries = Vec::with_capacity(names.len());
            stat_in_order(&sub, names, |chunk| {
                entries.extend(chunk?);
                Ok(true)
            })?;
            Ok(entries)
        })
        .await
    }

    async fn list_sorted(&self, path: &VPath) -> Result<EntryStream> {
        if hides(path) {
            return Err(leftovers::not_found());
        }
        let rel = rel(path);
        let dir = Arc::clone(&self.dir);
        let listings = Arc::clone(&self.listings);
        let (opened_tx, opened) = tokio::sync::oneshot::channel();
        // The read runs to its end at the disk's pace, however slowly the listing is taken:
        // the entries wait in the snapshot, shared with every other listing that follows the
        // same read (see `snapshot`), and the thread is free again within milliseconds.
        tokio::task::spawn_blocking(move || {
            let sub = match dir.open_dir(&rel) {
                Ok(sub) => Arc::new(sub),
                Err(e) => {
                    let _ = opened_tx.send(Err(e.into()));
                    return;
                }
            };
            let snapshot = Arc::new(Snapshot::new());
            let ticket = match listings.open(&sub, &snapshot) {
                Found::Shared(shared) => {
                    let _ = opened_tx.send(Ok(Listing::new(shared, sub, false)));
                    return;
                }
                Found::Read(ticket) => ticket,
            };
            let mut writer = Writer::new(&snapshot);
            let mut names = match read_names(&sub) {
                Ok(names) => names,
                Err(e) => {
                    writer.finish(Err(Error::new(e.kind, e.message.clone())));
                    let _ = opened_tx.send(Err(e));
                    return;
                }
            };
            let _ = opened_tx.send(Ok(Listing::new(
                Arc::clone(&snapshot),
                Arc::clone(&sub),
                true,
            )));
            names.sort_unstable();
            writer.reserve(names.len());
            // Stops (`false`) once no listing follows the read any more.
            let mut abandoned = false;
            let read = stat_in_order(&sub, names, |chunk| {
                writer.push(chunk?);
                abandoned = match &ticket {
                    Some(ticket) => ticket.unfollowed(&snapshot),
                    None => Arc::strong_count(&snapshot) == 1,
                };
                Ok(!abandoned)
            });
            if abandoned {
                // Nobody can follow it any more: ended as incomplete, and never kept.
                writer.finish(Err(Error::new(ErrorKind::Other, "listing abandoned")));
                return;
            }
            // Kept before the end is told, so a listing that starts once this one has ended
            // finds it kept.
            if let (Some(ticket), true) = (ticket, read.is_ok()) {
                ticket.keep(&snapshot, writer.len());
            }
            writer.finish(read);
        });
        match opened.await {
            Ok(Ok(listing)) => Ok(EntryStream::from_source(listing)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(task_failed()),
        }
    }

    async fn open_read(&self, path: &VPath, offset: u64) -> Result<ReadHandle> {
        if hides(path) {
            return Err(leftovers::not_found());
        }
        let rel = rel(path);
        // Fast path: a file whose path the kernel has cached opens here, on the async worker,
        // without a round trip through the blocking pool (half the system calls and two
        // context switches of a small download). Anything else, errors included, takes the
        // slow path, whose answer is the authoritative one.
        if let Ok((file, kind, size)) = ferry_sys::open_read_cached(&*self.dir, &rel) {
            if kind == ferry_sys::OpenedKind::File {
                let mut file = file;
                if offset > 0 {
                    file.seek(SeekFrom::Start(offset))?;
                }
                return Ok(ReadHandle::from_file(file, size));
            }
        }
        let (file, size) = self
            .run(move |dir| {
                // O_NONBLOCK: opening a FIFO must not block this thread; one open and one
                // fstat then tell what it is (a per-download cost, so no separate stat first).
                use cap_std::fs::OpenOptionsExt;
                let file = dir.open_with(
                    &rel,
                    OpenOptions::new()
                        .read(true)
                        .custom_flags(ferry_sys::O_NONBLOCK),
                )?;
                let md = file.metadata()?;
                if md.is_dir() {
                    return Err(Error::new(ErrorKind::IsADirectory, "Is a directory"));
                }
                if !md.is_file() {
                    return Err(not_regular());
                }
                let mut file = file.into_std();
                if offset > 0 {
                    file.seek(SeekFrom::Start(offset))?;
                }
                Ok((file, md.len()))
            })
            .await?;
        Ok(ReadHandle::from_file(file, size))
    }

    async fn open_write(&self, path: &VPath, mode: WriteMode) -> Result<Box<dyn Upload>> {
        let (file, temp) = self.open_for_writing(path, mode, false).await?;
        let direct = match mode {
            WriteMode::Append => None,
            _ => file.try_clone().ok(),
        };
        Ok(Box::new(LocalUpload {
            file: tokio::fs::File::from_std(file),
            direct,
            temp,
        }))
    }

    async fn open_file(&self, path: &VPath, access: FileAccess) -> Result<Box<dyn FileHandle>> {
        let Some(mode) = access.write else {
            if !access.read {
                return Err(not_open_for("anything"));
            }
            let handle = self.open_read(path, 0).await?;
            let file = match handle.file() {
                Some(file) => file.try_clone()?,
                None => return Err(Error::new(ErrorKind::Other, "Local error: no file")),
            };
            return Ok(Box::new(LocalHandle {
                file,
                temp: None,
                append: false,
                readable: true,
                writable: false,
            }));
        };
        let (file, temp) = self.open_for_writing(path, mode, access.read).await?;
        Ok(Box::new(LocalHandle {
            file,
            temp,
            append: mode == WriteMode::Append,
            readable: access.read,
            writable: true,
        }))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::POSIX
    }

    async fn mkdir(&self, path: &VPath) -> Result<()> {
        if hides(path) {
            return Err(leftovers::reserved());
        }
        let rel = rel(path);
        self.run(move |dir| Ok(dir.create_dir(&rel)?)).await
    }

    async fn rmdir(&self, path: &VPath) -> Result<()> {
        if path.is_root() {
            return Err(root_refused());
        }
        if hides(path) {
            return Err(leftovers::not_found());
        }
        let rel = rel(path);
        self.run(move |dir| Ok(dir.remove_dir(&rel)?)).await
    }

    async fn remove_file(&self, path: &VPath) -> Result<()> {
        if path.is_root() {
            return Err(root_refused());
        }
        if hides(path) {
            return Err(leftovers::not_found());
        }
        let rel = rel(path);
        self.run(move |dir| Ok(dir.remove_file(&rel)?)).await
    }

    async fn rename(&self, from: &VPath, to: &VPath) -> Result<()> {
        if from.is_root() || to.is_root() {
            return Err(root_refused());
        }
        if hides(from) {
            return Err(leftovers::not_found());
        }
        if hides(to) {
            return Err(leftovers::reserved());
        }
        let (from, to) = (rel(from), rel(to));
        self.run(move |dir| Ok(dir.rename(&from, dir, &to)?)).await
    }

    async fn set_mtime(&self, path: &VPath, unix_secs: i64) -> Result<()> {
        let Some(time) = to_system_time(unix_secs) else {
            return Err(Error::new(ErrorKind::Other, "Time out of range"));
        };
        if hides(path) {
            return Err(leftovers::not_found());
        }
        let rel = rel(path);
        self.run(move |dir| {
            // Check first: opening a FIFO would block. Directories open read-only too (a
            // `Dir` handle is `O_PATH`, which can't set times).
            let md = dir.metadata(&rel)?;
            if !md.is_dir() && !md.is_file() {
                return Err(not_regular());
            }
            let file = dir.open(&rel)?.into_std();
            file.set_modified(time)?;
            Ok(())
        })
        .await
    }

    async fn statvfs(&self, path: &VPath) -> Result<crate::FsSpace> {
        use cap_std::fs::OpenOptionsExt;
        if hides(path) {
            return Err(leftovers::not_found());
        }
        let rel = rel(path);
        self.run(move |dir| {
            // O_PATH: nothing is opened for reading (a FIFO can't block), symlinks are
            // followed only within the jail.
            let handle = dir.open_with(
                &rel,
                OpenOptions::new()
                    .read(true)
                    .custom_flags(ferry_sys::O_PATH),
            )?;
            Ok(ferry_sys::fs_space(&handle)?)
        })
        .await
    }

    async fn set_mode(&self, path: &VPath, mode: u32) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        if hides(path) {
            return Err(leftovers::not_found());
        }
        let rel = rel(path);
        let mode = mode & 0o777;
        self.run(move |dir| {
            // Through an open handle of the entry itself, so a symlink is never followed out.
            let md = dir.symlink_metadata(&rel)?;
            if !md.is_dir() && !md.is_file() {
                return Err(not_regular());
            }
            let file = dir.open(&rel)?.into_std();
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
            Ok(())
        })
        .await
    }
}
