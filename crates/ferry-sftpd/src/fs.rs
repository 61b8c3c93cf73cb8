//! What SFTP's requests mean in terms of [`UserFs`], the core's authorizing view of a user's
//! files: open flags to [`FileAccess`], attribute changes, directory reads in batches, renames
//! with v3's "never replace".
//!
//! Nothing here checks a permission or touches storage directly: every call goes through
//! [`UserFs`], the one place where both happen for every protocol.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ferry_core::{Direction, Transfer, TransferInfo, TransferLog, UserFs};
use ferry_sftp_proto::OpenFlags;
use ferry_vfs::{
    Entry, EntryKind, EntryStream, Error, ErrorKind, FileAccess, FileHandle, Result, VPath,
    WriteMode,
};

/// Attribute changes a client may ask for (`SETSTAT`, `FSETSTAT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AttrChange {
    pub(crate) size: Option<u64>,
    pub(crate) mode: Option<u32>,
    pub(crate) mtime: Option<i64>,
    /// The client asked to change the owner (never done).
    pub(crate) owner: bool,
}

impl AttrChange {
    /// What is applied by path (the size is applied through a handle).
    fn by_path(self) -> AttrChange {
        AttrChange { size: None, ..self }
    }
}

fn unsupported(message: &str) -> Error {
    Error::new(ErrorKind::Unsupported, message)
}

/// How `flags` open a file: reading only, or writing in which [`WriteMode`].
///
/// - `CREAT|EXCL`: a new file ([`WriteMode::CreateNew`]).
/// - `APPEND`: at the end ([`WriteMode::Append`]).
/// - `TRUNC`: a new content written beside the file, which takes its place on `CLOSE`; until
///   then the old file stays whole ([`WriteMode::Replace`]).
/// - plain `WRITE` on an existing file: in place, nothing cut off, so a resumed or patched
///   upload keeps what it does not overwrite ([`WriteMode::Update`]); on a missing file
///   (`CREAT`), as `TRUNC`.
///
/// Without `CREAT` the file must exist.
async fn access_for(fs: &UserFs, path: &VPath, flags: OpenFlags) -> Result<FileAccess> {
    let read = flags.has(OpenFlags::READ);
    if !flags.has(OpenFlags::WRITE) && !flags.has(OpenFlags::APPEND) {
        return Ok(FileAccess {
            read: true,
            write: None,
        });
    }
    let create = flags.has(OpenFlags::CREAT);
    if create && flags.has(OpenFlags::EXCL) {
        return Ok(FileAccess {
            read,
            write: Some(WriteMode::CreateNew),
        });
    }
    // Existence matters only without CREAT, or for a plain write (in place or not).
    let plain = !flags.has(OpenFlags::APPEND) && !flags.has(OpenFlags::TRUNC);
    let exists = if !create || plain {
        match fs.stat(path).await {
            Ok(md) if md.kind == EntryKind::Dir => {
                return Err(Error::new(ErrorKind::IsADirectory, "Is a directory"));
            }
            Ok(_) => true,
            Err(e) if e.kind == ErrorKind::NotFound && create => false,
            Err(e) => return Err(e),
        }
    } else {
        false
    };
    let mode = if flags.has(OpenFlags::APPEND) {
        WriteMode::Append
    } else if flags.has(OpenFlags::TRUNC) || !exists {
        WriteMode::Replace
    } else {
        WriteMode::Update
    };
    Ok(FileAccess {
        read,
        write: Some(mode),
    })
}

/// Where one SFTP session's files are logged as transfers (when the transfer log is on).
#[derive(Debug, Clone)]
pub(crate) struct Transfers {
    pub(crate) log: TransferLog,
    pub(crate) peer: IpAddr,
    pub(crate) user: String,
}

/// An open file: the core's handle, with what SFTP needs beside it.
pub(crate) struct OpenFile {
    handle: Box<dyn FileHandle>,
    path: VPath,
    /// Written beside its target until closed ([`WriteMode::Replace`]): until then the path
    /// still names the old file, so changes by path wait in `pending`.
    replacing: bool,
    pending: AttrChange,
    /// The transfer log's line for this file: a file opened for writing is an upload (its
    /// bytes written are counted), one opened for reading only a download (bytes read).
    /// Written at `CLOSE` (complete when the close succeeds), or, given up, as incomplete.
    logged: Option<Transfer>,
    upload: bool,
    /// The file's transfer (for the metrics and the status page), once a byte has moved.
    pub(crate) transfer: Option<ferry_core::TransferGuard>,
}

impl OpenFile {
    /// Open `path` as `flags` ask (see [`access_for`]).
    pub(crate) async fn open(
        fs: &UserFs,
        path: &VPath,
        flags: OpenFlags,
        transfers: Option<&Transfers>,
    ) -> Result<OpenFile> {
        let access = access_for(fs, path, flags).await?;
        let handle = fs.open_file(path, access).await?;
        let upload = access.write.is_some();
        let logged = transfers.map(|t| {
            let info = TransferInfo {
                peer: t.peer,
                path: path.to_string(),
                ascii: false,
                direction: if upload {
                    Direction::Upload
                } else {
                    Direction::Download
                },
                anonymous: false,
                user: t.user.clone(),
                service: "sftp",
            };
            t.log.start(info, Arc::new(AtomicU64::new(0)), 0)
        });
        Ok(OpenFile {
            handle,
            path: path.clone(),
            replacing: access.write == Some(WriteMode::Replace),
            pending: AttrChange::default(),
            logged,
            upload,
            transfer: None,
        })
    }

    /// `n` bytes were read from the file and sent.
    pub(crate) fn sent(&self, n: usize) {
        if !self.upload {
            self.count(n);
        }
    }

    /// `n` bytes were received and written to the file.
    pub(crate) fn received(&self, n: usize) {
        if self.upload {
            self.count(n);
        }
    }

    fn count(&self, n: usize) {
        if let Some(t) = &self.logged {
            t.counter()
                .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
    }

    /// The path it was opened with.
    pub(crate) fn path(&self) -> &VPath {
        &self.path
    }

    /// The core's handle: reads, writes, metadata and sync at offsets.
    pub(crate) fn handle(&self) -> &dyn FileHandle {
        self.handle.as_ref()
    }

    /// `FSETSTAT`: the size at once (on what is being written), the rest by path, or after
    /// the close for a file that is replacing another.
    pub(crate) async fn set_attrs(&mut self, fs: &UserFs, change: AttrChange) -> Result<()> {
        refuse_owner(change)?;
        if let Some(size) = change.size {
            self.handle.set_len(size).await?;
        }
        if self.replacing {
            // Checked now, so the client hears of a refusal from this request.
            if (change.mode.is_some() || change.mtime.is_some())
                && !fs.allows(ferry_core::Operation::SetAttributes)
            {
                return Err(Error::new(ErrorKind::PermissionDenied, "Permission denied"));
            }
            let p = &mut self.pending;
            p.mode = change.mode.or(p.mode);
            p.mtime = change.mtime.or(p.mtime);
            return Ok(());
        }
        apply(fs, &self.path, change.by_path()).await
    }

    /// `CLOSE`: a replacing file takes its target's place, then the attribute changes made
    /// while it was open are applied.
    pub(crate) async fn close(self, fs: &UserFs) -> Result<()> {
        let pending = self.pending;
        let closed = self.handle.close().await;
        if let Some(t) = self.logged {
            t.finish(closed.is_ok());
        }
        closed?;
        if pending != AttrChange::default() {
            apply(fs, &self.path, pending).await?;
        }
        Ok(())
    }

    /// Given up (the session ended with the file open): a replacing file is discarded and
    /// its target left as it was; the transfer is logged as incomplete.
    pub(crate) async fn abort(self) {
        if let Err(e) = self.handle.abort().await {
            tracing::warn!("sftp: giving up an open file: {e}");
        }
    }
}

fn refuse_owner(change: AttrChange) -> Result<()> {
    if change.owner {
        return Err(unsupported("Changing the owner is not supported"));
    }
    Ok(())
}

async fn apply(fs: &UserFs, path: &VPath, change: AttrChange) -> Result<()> {
    if let Some(mode) = change.mode {
        fs.set_mode(path, mode & 0o777).await?;
    }
    if let Some(mtime) = change.mtime {
        fs.set_mtime(path, mtime).await?;
    }
    Ok(())
}

/// `SETSTAT` on a path: the size in place (the core authorizes it as a write, and a quota
/// charges what it grows by), permissions and time by path.
pub(crate) async fn set_attrs(fs: &UserFs, path: &VPath, change: AttrChange) -> Result<()> {
    refuse_owner(change)?;
    if let Some(size) = change.size {
        // In place, never creating: the file must be there.
        fs.set_len(path, size).await?;
    }
    apply(fs, path, change.by_path()).await
}

/// `RENAME` (`replace` false: an existing target is refused, as SFTP v3 says) and
/// `posix-rename@openssh.com` (`replace` true).
pub(crate) async fn rename(fs: &UserFs, from: &VPath, to: &VPath, replace: bool) -> Result<()> {
    if !replace {
        match fs.stat(to).await {
            Ok(_) => return Err(Error::new(ErrorKind::AlreadyExists, "File exists")),
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    fs.rename(from, to).await
}

/// An open directory, read in batches from the storage's sorted chunks: at most one chunk is
/// held at a time, however large the directory.
pub(crate) struct OpenDir {
    path: VPath,
    stream: EntryStream,
    pending: VecDeque<Entry>,
    done: bool,
}

impl OpenDir {
    /// `OPENDIR`.
    pub(crate) async fn open(fs: &UserFs, path: &VPath) -> Result<OpenDir> {
        let stream = fs.list_sorted(path).await?;
        Ok(OpenDir {
            path: path.clone(),
            stream,
            pending: VecDeque::new(),
            done: false,
        })
    }

    /// The path it was opened with.
    pub(crate) fn path(&self) -> &VPath {
        &self.path
    }

    /// Up to `max` more entries; empty once the directory has been read.
    pub(crate) async fn next_batch(&mut self, max: usize) -> Result<Vec<Entry>> {
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
