//! Every storage call and every permission check of an SFTP session, in one place.
//!
//! [`SftpFs`] is one logged-in user's view: their [`Account`] (permissions) and their
//! [`Storage`]. The request loop never touches storage directly, so this module is the one seam
//! to swap for a protocol-neutral authorizing file system shared with FTP.
//!
//! Today's [`Storage`] reads and writes sequentially; SFTP reads and writes at offsets. The
//! handles here bridge the two: on local files (the jailed backend hands out its file) they
//! use positional reads and writes (`pread`/`pwrite` on the blocking pool), so requests at any
//! offset, in any order, work; on other backends they follow a stream and refuse a write that
//! is not at the current end (a read elsewhere reopens the stream at its offset).

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::BytesMut;
use ferry_auth::{Account, Permissions};
use ferry_vfs::Entry;
use ferry_vfs::VPath;
use ferry_vfs::{EntryStream, Error, ErrorKind, Metadata, Storage, Upload, WriteMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Why an operation failed: a storage error (the kinds every protocol maps), or an operation
/// this server does not offer.
#[derive(Debug)]
pub(crate) enum FsError {
    Storage(Error),
    Unsupported(&'static str),
}

impl From<Error> for FsError {
    fn from(e: Error) -> Self {
        FsError::Storage(e)
    }
}

pub(crate) type FsResult<T> = Result<T, FsError>;

fn denied() -> FsError {
    FsError::Storage(Error::new(ErrorKind::PermissionDenied, "Permission denied"))
}

fn check(allowed: bool) -> FsResult<()> {
    if allowed { Ok(()) } else { Err(denied()) }
}

/// How a file is opened for writing, from the client's `pflags`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WriteIntent {
    pub(crate) create: bool,
    pub(crate) truncate: bool,
    pub(crate) exclusive: bool,
    pub(crate) append: bool,
}

/// Attribute changes a client may ask for (`SETSTAT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AttrChange {
    pub(crate) size: Option<u64>,
    pub(crate) mode: Option<u32>,
    pub(crate) mtime: Option<i64>,
    pub(crate) owner: bool,
}

/// One user's files.
pub(crate) struct SftpFs {
    account: Arc<Account>,
    storage: Arc<dyn Storage>,
}

impl SftpFs {
    pub(crate) fn new(account: Arc<Account>, storage: Arc<dyn Storage>) -> Self {
        SftpFs { account, storage }
    }

    /// The login name (owner shown in listings).
    pub(crate) fn user(&self) -> &str {
        &self.account.name
    }

    fn perms(&self) -> Permissions {
        self.account.permissions
    }

    /// Metadata of `path` (for `STAT`, `LSTAT`, `FSTAT`): needs read or list, as FTP's `SIZE`.
    pub(crate) async fn stat(&self, path: &VPath) -> FsResult<Metadata> {
        let p = self.perms();
        check(p.read || p.list)?;
        Ok(self.storage.metadata(path).await?)
    }

    /// Open a directory for reading its entries.
    pub(crate) async fn open_dir(&self, path: &VPath) -> FsResult<DirReader> {
        check(self.perms().list)?;
        let md = self.storage.metadata(path).await?;
        if md.kind != ferry_vfs::EntryKind::Dir {
            return Err(Error::new(ErrorKind::NotADirectory, "Not a directory").into());
        }
        let stream = self.storage.list_sorted(path).await?;
        Ok(DirReader {
            stream,
            pending: std::collections::VecDeque::new(),
            done: false,
        })
    }

    /// Open a file for reading.
    pub(crate) async fn open_read(&self, path: &VPath) -> FsResult<FileHandle> {
        check(self.perms().read)?;
        let handle = self.storage.open_read(path, 0).await?;
        let source = match handle.file().map(std::fs::File::try_clone) {
            Some(Ok(file)) => ReadSource::Local(Arc::new(file)),
            _ => ReadSource::Stream {
                reader: handle.into_reader(),
                pos: 0,
            },
        };
        Ok(FileHandle {
            path: path.clone(),
            state: FileState::Read(source),
        })
    }

    /// Open a file for writing. A new or truncated file is written beside its target and
    /// renamed into place on [`close`](Self::close), so the old file stays whole until then;
    /// an existing file opened without truncation is written in place, nothing cut off
    /// (resumed uploads; on storage without positional writes, only at its end).
    pub(crate) async fn open_write(
        &self,
        path: &VPath,
        intent: WriteIntent,
    ) -> FsResult<FileHandle> {
        check(self.perms().write)?;
        let existing = match self.storage.metadata(path).await {
            Ok(md) => Some(md),
            Err(e) if e.kind == ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        if existing
            .as_ref()
            .is_some_and(|md| md.kind == ferry_vfs::EntryKind::Dir)
        {
            return Err(Error::new(ErrorKind::IsADirectory, "Is a directory").into());
        }
        let mode = match (&existing, intent) {
            (
                Some(_),
                WriteIntent {
                    create: true,
                    exclusive: true,
                    ..
                },
            ) => {
                return Err(Error::new(ErrorKind::AlreadyExists, "File exists").into());
            }
            (None, WriteIntent { create: false, .. }) => {
                return Err(Error::new(ErrorKind::NotFound, "No such file").into());
            }
            (
                None,
                WriteIntent {
                    exclusive: true, ..
                },
            ) => WriteMode::CreateNew,
            (_, WriteIntent { append: true, .. }) => WriteMode::Append,
            (None, _) | (Some(_), WriteIntent { truncate: true, .. }) => WriteMode::Replace,
            // In place: "truncated" at its own length, so nothing is lost.
            (Some(md), _) => WriteMode::At(md.size),
        };
        let state = FileState::Write(self.start_upload(path, mode).await?);
        Ok(FileHandle {
            path: path.clone(),
            state,
        })
    }

    async fn start_upload(&self, path: &VPath, mode: WriteMode) -> FsResult<Writer> {
        let upload = self.storage.open_write(path, mode).await?;
        // Appends go through the stream: `O_APPEND` ignores offsets anyway.
        let local = match upload.local_file().map(std::fs::File::try_clone) {
            Some(Ok(file)) if mode != WriteMode::Append => Some(Arc::new(file)),
            _ => None,
        };
        Ok(Writer {
            upload,
            local,
            pos: match mode {
                WriteMode::At(offset) => offset,
                _ => 0,
            },
            append: mode == WriteMode::Append,
            replacing: mode == WriteMode::Replace,
            pending: AttrChange::default(),
        })
    }

    /// Read up to `len` bytes at `offset`, appended to `into` (which may already hold a
    /// header). Returns the buffer and how many bytes were read; 0 means end of file.
    pub(crate) async fn read_at(
        &self,
        file: &mut FileHandle,
        offset: u64,
        len: usize,
        mut into: BytesMut,
    ) -> FsResult<(BytesMut, usize)> {
        let FileState::Read(source) = &mut file.state else {
            return Err(FsError::Unsupported("this handle was opened for writing"));
        };
        let start = into.len();
        into.resize(start + len, 0);
        match source {
            ReadSource::Local(f) => {
                let f = Arc::clone(f);
                let joined = tokio::task::spawn_blocking(move || {
                    let mut filled = 0;
                    // Short reads from the kernel are retried so a reply is as full as it can be.
                    while filled < len {
                        match f.read_at(&mut into[start + filled..], offset + filled as u64) {
                            Ok(0) => break,
                            Ok(n) => filled += n,
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            Err(e) => return Err(Error::from_io(&e)),
                        }
                    }
                    into.truncate(start + filled);
                    Ok((into, filled))
                })
                .await;
                match joined {
                    Ok(r) => Ok(r?),
                    Err(_) => Err(Error::new(ErrorKind::Other, "read task failed").into()),
                }
            }
            ReadSource::Stream { reader, pos } => {
                if *pos != offset {
                    *reader = self
                        .storage
                        .open_read(&file.path, offset)
                        .await?
                        .into_reader();
                    *pos = offset;
                }
                let mut filled = 0;
                while filled < len {
                    let n = reader
                        .read(&mut into[start + filled..])
                        .await
                        .map_err(|e| Error::from_io(&e))?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                *pos += filled as u64;
                into.truncate(start + filled);
                Ok((into, filled))
            }
        }
    }

    /// Write `data` at `offset`.
    pub(crate) async fn write_at(
        &self,
        file: &mut FileHandle,
        offset: u64,
        data: bytes::Bytes,
    ) -> FsResult<()> {
        let writer = match &mut file.state {
            FileState::Write(w) => w,
            FileState::Read(_) => {
                return Err(FsError::Unsupported("this handle was opened for reading"));
            }
        };
        if let Some(f) = &writer.local {
            let f = Arc::clone(f);
            let joined = tokio::task::spawn_blocking(move || f.write_all_at(&data, offset)).await;
            return match joined {
                Ok(r) => r.map_err(|e| Error::from_io(&e).into()),
                Err(_) => Err(Error::new(ErrorKind::Other, "write task failed").into()),
            };
        }
        if !writer.append && offset != writer.pos {
            return Err(FsError::Unsupported(
                "this storage writes sequentially: write at the end of what was written",
            ));
        }
        writer
            .upload
            .write_all(&data)
            .await
            .map_err(|e| Error::from_io(&e))?;
        writer.pos += data.len() as u64;
        Ok(())
    }

    /// Flush a file to stable storage (`fsync@openssh.com`).
    pub(crate) async fn fsync(&self, file: &mut FileHandle) -> FsResult<()> {
        match &file.state {
            FileState::Write(w) => match &w.local {
                Some(f) => {
                    let f = Arc::clone(f);
                    match tokio::task::spawn_blocking(move || f.sync_data()).await {
                        Ok(r) => r.map_err(|e| Error::from_io(&e).into()),
                        Err(_) => Err(Error::new(ErrorKind::Other, "fsync task failed").into()),
                    }
                }
                None => Err(FsError::Unsupported(
                    "fsync is not supported by this storage",
                )),
            },
            FileState::Read(_) => Ok(()),
        }
    }

    /// Finish with a file: a write handle's upload is committed (renamed into place), then
    /// attribute changes made while it was open are applied.
    pub(crate) async fn close(&self, file: FileHandle) -> FsResult<()> {
        let writer = match file.state {
            FileState::Write(w) => w,
            FileState::Read(_) => return Ok(()),
        };
        let pending = writer.pending;
        writer.upload.commit().await?;
        if pending != AttrChange::default() {
            self.apply(&file.path, pending).await?;
        }
        Ok(())
    }

    /// `SETSTAT` on a path.
    pub(crate) async fn set_attrs(&self, path: &VPath, change: AttrChange) -> FsResult<()> {
        self.validate(change)?;
        self.apply(path, change).await
    }

    /// `FSETSTAT`: on a file being uploaded the change waits for the upload to complete
    /// (until then the path still names the old file).
    pub(crate) async fn set_attrs_open(
        &self,
        file: &mut FileHandle,
        change: AttrChange,
    ) -> FsResult<()> {
        self.validate(change)?;
        match &mut file.state {
            FileState::Write(w) if w.replacing => {
                let p = &mut w.pending;
                p.mode = change.mode.or(p.mode);
                p.mtime = change.mtime.or(p.mtime);
                Ok(())
            }
            _ => self.apply(&file.path, change).await,
        }
    }

    fn validate(&self, change: AttrChange) -> FsResult<()> {
        check(self.perms().write)?;
        if change.owner {
            return Err(FsError::Unsupported("changing the owner is not supported"));
        }
        if change.size.is_some() {
            return Err(FsError::Unsupported("changing the size is not supported"));
        }
        Ok(())
    }

    async fn apply(&self, path: &VPath, change: AttrChange) -> FsResult<()> {
        if let Some(mode) = change.mode {
            self.storage.set_mode(path, mode & 0o777).await?;
        }
        if let Some(mtime) = change.mtime {
            self.storage.set_mtime(path, mtime).await?;
        }
        Ok(())
    }

    /// `REMOVE`.
    pub(crate) async fn remove(&self, path: &VPath) -> FsResult<()> {
        check(self.perms().delete)?;
        Ok(self.storage.remove_file(path).await?)
    }

    /// `MKDIR`.
    pub(crate) async fn mkdir(&self, path: &VPath) -> FsResult<()> {
        check(self.perms().mkdir)?;
        Ok(self.storage.mkdir(path).await?)
    }

    /// `RMDIR`.
    pub(crate) async fn rmdir(&self, path: &VPath) -> FsResult<()> {
        check(self.perms().delete)?;
        Ok(self.storage.rmdir(path).await?)
    }

    /// `RENAME` (`replace` false: refuses an existing target, as SFTP v3 says) and
    /// `posix-rename@openssh.com` (`replace` true).
    pub(crate) async fn rename(&self, from: &VPath, to: &VPath, replace: bool) -> FsResult<()> {
        check(self.perms().rename)?;
        if !replace {
            match self.storage.metadata(to).await {
                Ok(_) => return Err(Error::new(ErrorKind::AlreadyExists, "File exists").into()),
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(self.storage.rename(from, to).await?)
    }
}

/// An open directory.
pub(crate) struct DirReader {
    stream: EntryStream,
    pending: std::collections::VecDeque<Entry>,
    done: bool,
}

impl DirReader {
    /// Up to `max` more entries; empty once the directory has been read.
    pub(crate) async fn next_batch(&mut self, max: usize) -> FsResult<Vec<Entry>> {
        while self.pending.len() < max && !self.done {
            match self.stream.next().await {
                Some(chunk) => self.pending.extend(chunk?),
                None => self.done = true,
            }
        }
        let n = self.pending.len().min(max);
        Ok(self.pending.drain(..n).collect())
    }
}

/// An open file.
pub(crate) struct FileHandle {
    path: VPath,
    state: FileState,
}

impl FileHandle {
    /// The path it was opened with.
    pub(crate) fn path(&self) -> &VPath {
        &self.path
    }
}

enum FileState {
    Read(ReadSource),
    Write(Writer),
}

enum ReadSource {
    Local(Arc<std::fs::File>),
    Stream {
        reader: std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>,
        pos: u64,
    },
}

struct Writer {
    upload: Box<dyn Upload>,
    /// The local file, for positional writes.
    local: Option<Arc<std::fs::File>>,
    /// Where the next sequential write must land.
    pos: u64,
    append: bool,
    /// Written beside the target, renamed over it on commit.
    replacing: bool,
    /// `FSETSTAT` changes to apply after commit (while replacing, the path names the old file).
    pending: AttrChange,
}
