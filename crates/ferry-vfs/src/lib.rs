//! Storage for Ferry: one async [`Storage`] trait that the FTP and SFTP servers speak to, with
//! errors that map once onto protocol replies.
//!
//! # Layout
//! - [`Storage`], [`Error`]/[`ErrorKind`], [`ReadHandle`], [`Upload`] (and the
//!   [`WriteLimit`] a wrapped upload's direct writes ask first) live here.
//! - `entry`: [`Metadata`] and directory [`Entry`]s, as every protocol sees them.
//! - `path`: [`VPath`], an absolute normalised virtual path that `..` can never climb above.
//! - [`local`]: [`LocalFs`], a directory jail (cap-std: no `..` or symlink escape), blocking
//!   calls run off the async workers; its listings share one read of a directory
//!   (`snapshot`) and keep large ones, in a [`ListCache`] that the instances of one server
//!   share ([`listcache`]).
//! - `stat`: local metadata as [`Metadata`], for both.
//! - [`memory`]: [`MemoryFs`], an in-memory tree for fast tests.
//! - [`s3`]: [`S3Fs`], the objects of an S3 bucket beneath a prefix (ranged GETs, multipart
//!   uploads, delimiter listings); what objects cannot do it refuses ([`Capabilities`]).
//! - [`leftovers`]: uploads' temporary files, hidden from every operation, and those a crash
//!   left removed.
//!
//! Paths are [`VPath`]s: already absolute and normalised by the protocol layer. Backends guard
//! again (the jail), so a bug above cannot reach outside the root.

mod entry;
pub mod leftovers;
pub mod listcache;
pub mod local;
pub mod memory;
mod path;
pub mod s3;
mod snapshot;
mod stat;

use std::pin::Pin;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

pub use entry::{Entry, EntryKind, Metadata, Unique};
/// Size, free space and limits of the file system under a path ([`Storage::statvfs`]).
pub use ferry_sys::FsSpace;
pub use listcache::ListCache;
pub use local::LocalFs;
pub use memory::MemoryFs;
pub use path::{MAX_NAME, MAX_PATH, PathError, VPath};
pub use s3::{S3Config, S3Fs};

/// What went wrong, in terms every protocol can answer (each protocol maps every kind once:
/// FTP in `ferry-ftpd`'s reply table, SFTP to its status codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No such file or directory.
    NotFound,
    /// The backend, the jail or the user's permissions refused.
    PermissionDenied,
    /// The target exists.
    AlreadyExists,
    /// A directory was expected.
    NotADirectory,
    /// A file was expected.
    IsADirectory,
    /// Removing a directory that is not empty.
    DirectoryNotEmpty,
    /// Out of space or quota.
    InsufficientStorage,
    /// A name the backend can't store.
    InvalidName,
    /// An operation this backend cannot do at all (see [`Capabilities`]): appending to an
    /// object, writing at a random offset, renaming a non-empty directory of objects.
    Unsupported,
    /// The backend can't be reached for now (an object store that doesn't answer); trying
    /// again later may succeed.
    Unavailable,
    /// Anything else, a local I/O failure.
    Other,
}

/// A storage error: its kind plus a message safe to show to the client (no host paths).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    /// A new error.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// From an OS error; the message never includes the host path.
    ///
    /// The jail's refusals (cap-std's "path led outside" and the kernel's `EXDEV` from
    /// `openat2(RESOLVE_BENEATH)`) and symlink loops map to [`ErrorKind::PermissionDenied`].
    pub fn from_io(err: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;

        // Kinds not (yet) stable at the workspace's MSRV are recognised by their Linux errno.
        #[cfg(target_os = "linux")]
        if let Some(code) = err.raw_os_error() {
            let known = match code {
                18 => Some((ErrorKind::PermissionDenied, "Permission denied")), // EXDEV
                22 => Some((ErrorKind::PermissionDenied, "Invalid argument")),  // EINVAL
                27 => Some((ErrorKind::InsufficientStorage, "File too large")), // EFBIG
                30 => Some((ErrorKind::PermissionDenied, "Read-only file system")), // EROFS
                36 => Some((ErrorKind::InvalidName, "File name too long")),     // ENAMETOOLONG
                39 => Some((ErrorKind::DirectoryNotEmpty, "Directory not empty")), // ENOTEMPTY
                40 => Some((
                    ErrorKind::PermissionDenied,
                    "Too many levels of symbolic links",
                )), // ELOOP
                84 => Some((ErrorKind::InvalidName, "Invalid file name")),      // EILSEQ
                122 => Some((ErrorKind::InsufficientStorage, "Disk quota exceeded")), // EDQUOT
                _ => None,
            };
            if let Some((kind, message)) = known {
                return Error::new(kind, message);
            }
        }

        let (kind, message) = match err.kind() {
            K::NotFound => (ErrorKind::NotFound, "No such file or directory"),
            K::PermissionDenied => (ErrorKind::PermissionDenied, "Permission denied"),
            K::AlreadyExists => (ErrorKind::AlreadyExists, "File exists"),
            K::NotADirectory => (ErrorKind::NotADirectory, "Not a directory"),
            K::IsADirectory => (ErrorKind::IsADirectory, "Is a directory"),
            K::DirectoryNotEmpty => (ErrorKind::DirectoryNotEmpty, "Directory not empty"),
            K::StorageFull => (ErrorKind::InsufficientStorage, "No space left on device"),
            K::FileTooLarge => (ErrorKind::InsufficientStorage, "File too large"),
            K::ReadOnlyFilesystem => (ErrorKind::PermissionDenied, "Read-only file system"),
            K::InvalidInput => (ErrorKind::PermissionDenied, "Invalid argument"),
            K::Unsupported => (ErrorKind::Unsupported, "Operation not supported"),
            K::OutOfMemory => (ErrorKind::InsufficientStorage, "Out of memory"),
            other => return Error::new(ErrorKind::Other, format!("Local error: {other}")),
        };
        Error::new(kind, message)
    }
}

/// Any I/O error converts through [`Error::from_io`], so backends can use `?`.
impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Error::from_io(&err)
    }
}

/// `Result` with a storage [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// An open file for reading, positioned at the requested offset.
pub struct ReadHandle {
    source: Source,
    /// Total size of the file when opened.
    pub size: u64,
}

enum Source {
    Stream(Pin<Box<dyn AsyncRead + Send>>),
    File(std::fs::File),
}

impl ReadHandle {
    /// A handle reading from `reader`.
    pub fn from_reader(reader: Pin<Box<dyn AsyncRead + Send>>, size: u64) -> ReadHandle {
        ReadHandle {
            source: Source::Stream(reader),
            size,
        }
    }

    /// A handle on a local file (at its current position), which zero-copy paths can use.
    pub fn from_file(file: std::fs::File, size: u64) -> ReadHandle {
        ReadHandle {
            source: Source::File(file),
            size,
        }
    }

    /// The local file, when there is one: a fast path for `sendfile`.
    pub fn file(&self) -> Option<&std::fs::File> {
        match &self.source {
            Source::File(f) => Some(f),
            Source::Stream(_) => None,
        }
    }

    /// The bytes as an asynchronous stream (a local file is wrapped only now, so a zero-copy
    /// download never pays for the wrapper).
    pub fn into_reader(self) -> Pin<Box<dyn AsyncRead + Send>> {
        match self.source {
            Source::Stream(r) => r,
            Source::File(f) => Box::pin(tokio::fs::File::from_std(f)),
        }
    }
}

/// How an upload treats an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Replace: write to a temporary file beside the target, rename into place on [`Upload::commit`].
    /// Dropping the upload without commit removes the temporary file and leaves the old file intact.
    Replace,
    /// Append to the end (created if missing). Written in place.
    Append,
    /// Write in place starting at this offset (REST + STOR), truncating what follows.
    At(u64),
    /// Create a new file; fail with `AlreadyExists` if the name is taken (STOU).
    CreateNew,
    /// Write in place at any offset, truncating nothing (SFTP resuming or patching a file);
    /// the file is created if missing. Needs [`Capabilities::write_at`].
    Update,
}

/// What a backend can do beyond reading, writing whole files and listing. Protocols consult it
/// to refuse clearly ([`ErrorKind::Unsupported`]) what would otherwise corrupt an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Appending to an existing file ([`WriteMode::Append`]).
    pub append: bool,
    /// Writing at any offset of an existing file ([`WriteMode::At`], [`WriteMode::Update`],
    /// [`FileHandle::write_at`] out of order).
    pub write_at: bool,
    /// `rename` replaces its target atomically, and renames directories with their contents.
    pub atomic_rename: bool,
    /// Directories exist on their own (empty ones included), not only as name prefixes.
    pub directories: bool,
    /// Permission bits can be changed ([`Storage::set_mode`]).
    pub chmod: bool,
    /// Symbolic links exist (and are followed within the root).
    pub symlinks: bool,
    /// Modification times can be set ([`Storage::set_mtime`]).
    pub set_times: bool,
}

impl Capabilities {
    /// A POSIX file system: everything.
    pub const POSIX: Capabilities = Capabilities {
        append: true,
        write_at: true,
        atomic_rename: true,
        directories: true,
        chmod: true,
        symlinks: true,
        set_times: true,
    };
}

/// How [`Storage::open_file`] opens a file for random access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileAccess {
    /// [`FileHandle::read_at`] allowed.
    pub read: bool,
    /// [`FileHandle::write_at`] allowed, and how an existing file is treated.
    pub write: Option<WriteMode>,
}

/// A file open for reads and writes at offsets (SFTP's handles): requests may arrive out of
/// order and several at once. A handle opened with [`WriteMode::Replace`] writes beside its
/// target and takes its place only on [`FileHandle::close`]; [`FileHandle::abort`] (or a
/// handle dropped unclosed) leaves the old file as it was.
#[async_trait]
pub trait FileHandle: Send + Sync {
    /// Up to `len` bytes from `offset`; fewer only at the end of the file, none past it.
    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>>;

    /// [`FileHandle::read_at`], appending to `buf` (which may already hold a reply's header,
    /// so the data is not copied again); returns how many bytes were appended. Backends that
    /// can read straight into `buf` override the default, which copies.
    async fn read_at_into(&self, offset: u64, len: usize, buf: &mut Vec<u8>) -> Result<usize> {
        let data = self.read_at(offset, len).await?;
        buf.extend_from_slice(&data);
        Ok(data.len())
    }

    /// Write all of `data` at `offset` (at the end, whatever `offset`, in append mode).
    async fn write_at(&self, offset: u64, data: &[u8]) -> Result<()>;

    /// The file's metadata now (its size includes what was written through this handle).
    async fn metadata(&self) -> Result<Metadata>;

    /// Truncate or extend the file to `len` bytes.
    async fn set_len(&self, len: u64) -> Result<()>;

    /// Make what was written durable (`fsync`) where the backend can.
    async fn sync(&self) -> Result<()>;

    /// Finish: a [`WriteMode::Replace`] file takes its target's place now.
    async fn close(self: Box<Self>) -> Result<()>;

    /// Give up: a [`WriteMode::Replace`] file is discarded and its target left untouched;
    /// writes made in place stay, as on any file system.
    async fn abort(self: Box<Self>) -> Result<()>;
}

/// Blocking cleanup left over by [`Upload::commit_then_reclaim`].
pub type Reclaim = Box<dyn FnOnce() + Send + 'static>;

/// An upload in progress.
#[async_trait]
pub trait Upload: AsyncWrite + Send + Unpin {
    /// Flush and make the upload visible (rename into place for [`WriteMode::Replace`]).
    async fn commit(self: Box<Self>) -> Result<()>;

    /// [`Upload::commit`], leaving the cleanup that need not delay the client's answer (freeing
    /// the storage of a file the upload replaced) to the caller: run the returned work, which
    /// may block, once the client has been answered. The default does it all in `commit`.
    async fn commit_then_reclaim(self: Box<Self>) -> Result<Option<Reclaim>> {
        self.commit().await.map(|()| None)
    }

    /// Give up: a [`WriteMode::Replace`] upload is discarded, its target left untouched (what
    /// was written in place stays). Backends whose cleanup needs I/O (a multipart upload to
    /// abort) do it here; dropping an upload without commit or abort is a best-effort
    /// fallback only.
    async fn abort(self: Box<Self>) -> Result<()> {
        drop(self);
        Ok(())
    }

    /// Fast path: the local file this upload writes to, positioned where the next byte goes,
    /// for writing it directly (e.g. `splice` from the socket). Use either this or the
    /// `AsyncWrite` side, never both. `None` (the default) when there is no such file, or when
    /// direct writes would not be equivalent (append mode).
    fn local_file(&self) -> Option<&std::fs::File> {
        None
    }

    /// What bounds the bytes written through [`Upload::local_file`]: the caller asks it
    /// before each write and writes no more than it allows. `None` (the default): nothing
    /// does. An upload wrapped to count what it writes against a limit (a user's quota)
    /// returns one, since bytes written to the file directly pass beside its `AsyncWrite`.
    fn write_limit(&self) -> Option<std::sync::Arc<dyn WriteLimit>> {
        None
    }
}

/// A bound on what an upload may still write, shared by its writers (see
/// [`Upload::write_limit`]).
pub trait WriteLimit: Send + Sync {
    /// Of the next `n` bytes, how many may be written now: between 1 and `n` (`n` is 0:
    /// 0), counted as written from then on; an error when not one more may be (its message
    /// is fit for the client, its kind `std::io::ErrorKind::Other`).
    fn allow(&self, n: u64) -> std::io::Result<u64>;
}

/// Entries handed out per chunk by [`EntryStream::from_entries`].
const CHUNK: usize = 500;

/// Makes the chunks of an [`EntryStream`], each when it is asked for.
#[async_trait]
pub trait ChunkSource: Send {
    /// The next entries in name order; `None` once the directory has been listed.
    async fn next_chunk(&mut self) -> Option<Result<Vec<Entry>>>;
}

/// Chunks of directory entries in name order, from [`Storage::list_sorted`].
///
/// Each chunk is made when [`EntryStream::next`] asks for it, so a listing goes at the pace
/// its reader takes it, and holds one chunk at a time of its own (backends share what they
/// read of a directory between its listings: see [`LocalFs`]).
pub struct EntryStream {
    inner: Inner,
}

enum Inner {
    Ready(std::vec::IntoIter<Entry>),
    Source(Box<dyn ChunkSource>),
}

impl std::fmt::Debug for EntryStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntryStream").finish_non_exhaustive()
    }
}

impl EntryStream {
    /// The next chunk; `None` once the directory has been listed.
    pub async fn next(&mut self) -> Option<Result<Vec<Entry>>> {
        match &mut self.inner {
            Inner::Ready(rest) => {
                let chunk: Vec<Entry> = rest.take(CHUNK).collect();
                (!chunk.is_empty()).then_some(Ok(chunk))
            }
            Inner::Source(source) => source.next_chunk().await,
        }
    }

    /// A stream of `entries`, already in name order.
    pub fn from_entries(entries: Vec<Entry>) -> EntryStream {
        EntryStream {
            inner: Inner::Ready(entries.into_iter()),
        }
    }

    /// A stream whose chunks `source` makes on demand.
    pub fn from_source(source: impl ChunkSource + 'static) -> EntryStream {
        EntryStream {
            inner: Inner::Source(Box::new(source)),
        }
    }

    /// Every remaining entry, in order.
    pub async fn collect(mut self) -> Result<Vec<Entry>> {
        let mut all = Vec::new();
        while let Some(chunk) = self.next().await {
            all.extend(chunk?);
        }
        Ok(all)
    }
}

/// A storage backend. Implementations must be safe against any `VPath` a hostile client can form.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Metadata of `path` (following symlinks only within the jail).
    async fn metadata(&self, path: &VPath) -> Result<Metadata>;

    /// Entries of directory `path`, without `.` and `..`, in backend order.
    async fn list(&self, path: &VPath) -> Result<Vec<Entry>>;

    /// Entries of directory `path` sorted by name, delivered in chunks as they are read, so
    /// that a listing can go out while the rest of the directory is still being read. An error
    /// opening the directory comes back here; later errors arrive in the stream.
    async fn list_sorted(&self, path: &VPath) -> Result<EntryStream> {
        let mut entries = self.list(path).await?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(EntryStream::from_entries(entries))
    }

    /// Open a file for reading at `offset`.
    async fn open_read(&self, path: &VPath, offset: u64) -> Result<ReadHandle>;

    /// Open a file for writing.
    async fn open_write(&self, path: &VPath, mode: WriteMode) -> Result<Box<dyn Upload>>;

    /// Open a file for reads and writes at offsets (see [`FileHandle`]).
    async fn open_file(&self, path: &VPath, access: FileAccess) -> Result<Box<dyn FileHandle>>;

    /// What this backend can do (see [`Capabilities`]).
    fn capabilities(&self) -> Capabilities;

    /// Create one directory (parent must exist).
    async fn mkdir(&self, path: &VPath) -> Result<()>;

    /// Remove an empty directory.
    async fn rmdir(&self, path: &VPath) -> Result<()>;

    /// Remove a file.
    async fn remove_file(&self, path: &VPath) -> Result<()>;

    /// Rename a file or directory (replacing a file target).
    async fn rename(&self, from: &VPath, to: &VPath) -> Result<()>;

    /// Set the modification time (MFMT).
    async fn set_mtime(&self, path: &VPath, unix_secs: i64) -> Result<()>;

    /// Whether the store answers, with one cheap request that reaches it (the node's
    /// `/healthz`). The default reads the root's metadata.
    async fn check(&self) -> Result<()> {
        self.metadata(&VPath::root()).await.map(drop)
    }

    /// Size, free space and limits of the file system holding `path` (SFTP's
    /// `statvfs@openssh.com`). Backends that have no such figures refuse
    /// ([`ErrorKind::Unsupported`], the default).
    async fn statvfs(&self, path: &VPath) -> Result<FsSpace> {
        let _ = path;
        Err(Error::new(
            ErrorKind::Unsupported,
            "File system figures are not available from this storage",
        ))
    }

    /// Set the permission bits (`SITE CHMOD`); only `0o777` are ever passed. Backends without
    /// permission bits refuse.
    async fn set_mode(&self, path: &VPath, mode: u32) -> Result<()> {
        let _ = (path, mode);
        Err(Error::new(
            ErrorKind::Unsupported,
            "Permissions are not supported by this storage",
        ))
    }
}
