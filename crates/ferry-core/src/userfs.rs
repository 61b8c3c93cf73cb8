//! [`UserFs`]: an account plus its storage, authorizing every operation.
//!
//! Protocols never call [`Storage`] directly for a user's request: they call the method of
//! [`UserFs`] that names the operation, which refuses with [`ErrorKind::PermissionDenied`] what
//! the account may not do, and with [`ErrorKind::Unsupported`] what the backend can't do, before
//! storage is touched. Each protocol maps the resulting [`Error`] once (FTP reply codes, SFTP
//! status codes).

use std::net::SocketAddr;
use std::sync::Arc;

use ferry_auth::{Account, Permissions};

use crate::quota::{Grant, Quota, QuotaFile, QuotaUpload};
use crate::rate::Pace;
use ferry_vfs::{
    EntryKind, EntryStream, Error, ErrorKind, FileAccess, FileHandle, FsSpace, Metadata,
    ReadHandle, Result, Storage, Upload, VPath, WriteMode,
};

/// Everything a user can ask of storage, by the permission it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Enter a directory (FTP `CWD`, SFTP `realpath` of a directory): needs nothing, since a
    /// user who can do nothing else still has a home.
    Enter,
    /// Metadata of a named path (`SIZE`, `MDTM`, SFTP `stat`, `statvfs`): `list` or `read`.
    Stat,
    /// A directory's entries, or a path described as a listing would (`LIST`, `MLSD`, `MLST`,
    /// SFTP `opendir`): `list`.
    List,
    /// A file's content (`RETR`, SFTP `open` for reading): `read`.
    Read,
    /// Create or change a file's content (`STOR`, `APPE`, SFTP `open` for writing): `write`.
    Write,
    /// Change a file's times or permission bits (`MFMT`, `SITE CHMOD`, SFTP `setstat`): `write`.
    SetAttributes,
    /// Create a directory: `mkdir`.
    MakeDir,
    /// Remove a file or an empty directory: `delete`.
    Delete,
    /// Rename or move: `rename`.
    Rename,
}

impl Operation {
    /// Every operation, for tables and tests.
    pub const ALL: [Operation; 9] = [
        Operation::Enter,
        Operation::Stat,
        Operation::List,
        Operation::Read,
        Operation::Write,
        Operation::SetAttributes,
        Operation::MakeDir,
        Operation::Delete,
        Operation::Rename,
    ];

    /// Whether `permissions` allow this operation.
    pub fn allowed_by(self, p: Permissions) -> bool {
        match self {
            Operation::Enter => true,
            Operation::Stat => p.list || p.read,
            Operation::List => p.list,
            Operation::Read => p.read,
            Operation::Write => p.write,
            // A drop folder's users change no file once written.
            Operation::SetAttributes => p.write && !p.create_only,
            Operation::MakeDir => p.mkdir,
            Operation::Delete => p.delete,
            Operation::Rename => p.rename,
        }
    }
}

fn denied() -> Error {
    Error::new(ErrorKind::PermissionDenied, "Permission denied")
}

/// A write made create-only (`asked` became `mode`) whose name is taken: refused as a name this
/// user may not use (FTP `553`), not as a failure of storage. A write that asked for a new
/// file keeps `AlreadyExists` (FTP's `STOU` tries another name on it).
fn name_taken(e: Error, asked: WriteMode, mode: WriteMode) -> Error {
    if e.kind == ErrorKind::AlreadyExists && asked != mode {
        Error::new(
            ErrorKind::InvalidName,
            "File exists; this account may only upload new files",
        )
    } else {
        e
    }
}

fn unsupported(what: &str) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!("{what} is not supported by this storage"),
    )
}

/// One logged-in user's storage: the account, its storage, and the checks between them.
#[derive(Clone)]
pub struct UserFs {
    /// Behind one pointer, so that a session holding a `UserFs` inline stays small.
    who: Arc<Who>,
    storage: Arc<dyn Storage>,
    /// Who is served, named in the events refusals log (boxed: an idle session stays small).
    client: Option<Box<(&'static str, SocketAddr)>>,
}

/// The account and what its transfers are charged to.
struct Who {
    account: Arc<Account>,
    upload: Pace,
    download: Pace,
    /// What the account may store, shared with its other sessions (`None`: no quota).
    quota: Option<Quota>,
}

impl std::fmt::Debug for UserFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserFs")
            .field("user", &self.who.account.name)
            .finish_non_exhaustive()
    }
}

impl UserFs {
    /// `account`'s view of `storage`.
    pub fn new(account: Arc<Account>, storage: Arc<dyn Storage>) -> Self {
        let who = Who {
            account,
            upload: Pace::default(),
            download: Pace::default(),
            quota: None,
        };
        UserFs {
            who: Arc::new(who),
            storage,
            client: None,
        }
    }

    /// This view serves the client at `peer` over `protocol` (`ftp`, `ftps`, `sftp`): the
    /// `permission_denied` and `jail_refused` events it logs name them.
    pub fn for_client(mut self, protocol: &'static str, peer: SocketAddr) -> Self {
        self.client = Some(Box::new((protocol, peer)));
        self
    }

    /// The same, its uploads charged to `upload` and its downloads to `download`.
    pub fn with_pace(self, upload: Pace, download: Pace) -> Self {
        let who = Who {
            account: Arc::clone(&self.who.account),
            upload,
            download,
            quota: self.who.quota.clone(),
        };
        UserFs {
            who: Arc::new(who),
            storage: self.storage,
            client: self.client,
        }
    }

    /// The same, its uploads held to `quota` (see [`crate::quota`]).
    pub fn with_quota(self, quota: Option<Quota>) -> Self {
        let who = Who {
            account: Arc::clone(&self.who.account),
            upload: self.who.upload.clone(),
            download: self.who.download.clone(),
            quota,
        };
        UserFs {
            who: Arc::new(who),
            storage: self.storage,
            client: self.client,
        }
    }

    /// The account's quota, if it has one.
    pub fn quota(&self) -> Option<&Quota> {
        self.who.quota.as_ref()
    }

    /// The quota's grant for a write to `path` in `mode` (`None`: no quota), logged when
    /// refused.
    async fn admit(&self, path: &VPath, mode: WriteMode) -> Result<Option<Arc<Grant>>> {
        let Some(quota) = &self.who.quota else {
            return Ok(None);
        };
        match quota.admit(self.storage.as_ref(), path, mode).await {
            Ok(grant) => {
                // A write the quota cuts short is the same event, told once per upload.
                let (protocol, peer) = self.client_fields();
                let user = self.who.account.name.clone();
                let path = path.to_string();
                grant.on_refusal(move |reason| {
                    tracing::info!(
                        event = crate::events::QUOTA_EXCEEDED,
                        protocol,
                        peer,
                        user = %user,
                        path = %path,
                        reason,
                        "upload stopped by the quota"
                    );
                });
                Ok(Some(grant))
            }
            Err(e) => {
                if e.kind == ErrorKind::InsufficientStorage {
                    let (protocol, peer) = self.client_fields();
                    tracing::info!(
                        event = crate::events::QUOTA_EXCEEDED,
                        protocol,
                        peer,
                        user = %self.who.account.name,
                        %path,
                        reason = %e.message,
                        "upload refused by the quota"
                    );
                }
                Err(e)
            }
        }
    }

    /// The size of the file at `path` if there is a quota to tell of its removal (`None`: no
    /// quota, or not a file).
    async fn quota_size(&self, path: &VPath) -> Option<u64> {
        self.who.quota.as_ref()?;
        match self.storage.metadata(path).await {
            Ok(md) if md.kind == EntryKind::File => Some(md.size),
            _ => None,
        }
    }

    /// The file of `size` bytes (if [`UserFs::quota_size`] found one) is gone.
    fn quota_removed(&self, size: Option<u64>) {
        if let (Some(quota), Some(size)) = (&self.who.quota, size) {
            quota.usage().removed(size);
        }
    }

    /// What the transfer loops charge the bytes of uploads to (file content only).
    pub fn upload_pace(&self) -> &Pace {
        &self.who.upload
    }

    /// What the transfer loops charge the bytes of downloads to (file content only).
    pub fn download_pace(&self) -> &Pace {
        &self.who.download
    }

    /// The logged-in account.
    pub fn account(&self) -> &Arc<Account> {
        &self.who.account
    }

    /// Whether the account may do `op` at all (for what a protocol advertises, such as MLSx
    /// `perm` facts).
    pub fn allows(&self, op: Operation) -> bool {
        op.allowed_by(self.who.account.permissions)
    }

    /// [`ErrorKind::PermissionDenied`] unless the account may do `op`: for protocols that
    /// refuse before anything else happens (FTP answers before it opens a data connection).
    /// Every operation method checks again.
    pub fn authorize(&self, op: Operation) -> Result<()> {
        if self.allows(op) {
            Ok(())
        } else {
            let (protocol, peer) = self.client_fields();
            tracing::info!(
                event = crate::events::PERMISSION_DENIED,
                protocol,
                peer,
                user = %self.who.account.name,
                operation = ?op,
                "operation not permitted for the account"
            );
            Err(denied())
        }
    }

    fn check(&self, op: Operation) -> Result<()> {
        self.authorize(op)
    }

    /// Check `op`, then ask storage.
    fn storage_for(&self, op: Operation) -> Result<&Arc<dyn Storage>> {
        self.check(op)?;
        Ok(&self.storage)
    }

    fn client_fields(&self) -> (&'static str, Option<String>) {
        match self.client.as_deref() {
            Some(&(protocol, peer)) => (protocol, Some(peer.to_string())),
            None => ("", None),
        }
    }

    /// `result` of storage's work for `op` on `path`; a refusal (the jail's, a special file's,
    /// the file system's) is logged as the `jail_refused` event.
    fn noted<T>(&self, op: Operation, path: &VPath, result: Result<T>) -> Result<T> {
        if let Err(e) = &result {
            if e.kind == ErrorKind::PermissionDenied {
                let (protocol, peer) = self.client_fields();
                tracing::warn!(
                    event = crate::events::JAIL_REFUSED,
                    protocol,
                    peer,
                    user = %self.who.account.name,
                    operation = ?op,
                    %path,
                    reason = %e.message,
                    "storage refused the path"
                );
            }
        }
        result
    }

    /// Checks that a write in `mode` is possible on this backend.
    fn check_mode(&self, mode: WriteMode) -> Result<()> {
        let caps = self.storage.capabilities();
        match mode {
            WriteMode::Append if !caps.append => Err(unsupported("Appending")),
            WriteMode::At(offset) if offset > 0 && !caps.write_at => {
                Err(unsupported("Writing from an offset"))
            }
            WriteMode::Update if !caps.write_at => Err(unsupported("Writing in place")),
            _ => Ok(()),
        }
    }

    /// [`Operation::Enter`]: `path` must be a directory; its metadata.
    pub async fn enter(&self, path: &VPath) -> Result<Metadata> {
        let meta = self.storage_for(Operation::Enter)?.metadata(path).await;
        let meta = self.noted(Operation::Enter, path, meta)?;
        if meta.kind != EntryKind::Dir {
            return Err(Error::new(ErrorKind::NotADirectory, "Not a directory"));
        }
        Ok(meta)
    }

    /// [`Operation::Stat`]: metadata of `path`.
    pub async fn stat(&self, path: &VPath) -> Result<Metadata> {
        let r = self.storage_for(Operation::Stat)?.metadata(path).await;
        self.noted(Operation::Stat, path, r)
    }

    /// [`Operation::Stat`]: size, free space and limits of the file system holding `path`
    /// (`Unsupported` where the backend has no such figures).
    pub async fn statvfs(&self, path: &VPath) -> Result<FsSpace> {
        let r = self.storage_for(Operation::Stat)?.statvfs(path).await;
        self.noted(Operation::Stat, path, r)
    }

    /// [`Operation::List`]: metadata of `path`, to be shown as a listing shows it.
    pub async fn describe(&self, path: &VPath) -> Result<Metadata> {
        let r = self.storage_for(Operation::List)?.metadata(path).await;
        self.noted(Operation::List, path, r)
    }

    /// [`Operation::List`]: the entries of directory `path`, sorted by name, in chunks.
    pub async fn list_sorted(&self, path: &VPath) -> Result<EntryStream> {
        let r = self.storage_for(Operation::List)?.list_sorted(path).await;
        self.noted(Operation::List, path, r)
    }

    /// [`Operation::Read`]: a file's content from `offset`.
    pub async fn open_read(&self, path: &VPath, offset: u64) -> Result<ReadHandle> {
        let r = self
            .storage_for(Operation::Read)?
            .open_read(path, offset)
            .await;
        self.noted(Operation::Read, path, r)
    }

    /// For a create-only account ([`Permissions::create_only`]), the mode a write really
    /// gets: a new file only, whatever was asked for a whole new content; nothing else.
    fn create_only(&self, mode: WriteMode) -> Result<WriteMode> {
        if !self.who.account.permissions.create_only {
            return Ok(mode);
        }
        match mode {
            WriteMode::Replace | WriteMode::CreateNew => Ok(WriteMode::CreateNew),
            WriteMode::At(0) => Ok(WriteMode::CreateNew),
            _ => Err(Error::new(
                ErrorKind::PermissionDenied,
                "Permission denied: this account may only upload new files",
            )),
        }
    }

    /// [`Operation::Write`]: an upload in `mode`. A create-only account gets a new file or
    /// [`ErrorKind::InvalidName`] when the name is taken (the old file is left as it was).
    pub async fn open_write(&self, path: &VPath, mode: WriteMode) -> Result<Box<dyn Upload>> {
        let storage = self.storage_for(Operation::Write)?;
        let asked = mode;
        let mode = self.create_only(mode)?;
        self.check_mode(mode)?;
        let grant = self.admit(path, mode).await?;
        let opened = storage.open_write(path, mode).await;
        let opened = self.noted(
            Operation::Write,
            path,
            opened.map_err(|e| name_taken(e, asked, mode)),
        );
        match (opened, grant) {
            (Ok(upload), Some(grant)) => Ok(Box::new(QuotaUpload::new(upload, grant))),
            (Ok(upload), None) => Ok(upload),
            (Err(e), grant) => {
                if let Some(grant) = grant {
                    grant.cancel();
                }
                Err(e)
            }
        }
    }

    /// [`Operation::Read`] and/or [`Operation::Write`], as `access` asks: a handle for reads
    /// and writes at offsets.
    pub async fn open_file(&self, path: &VPath, access: FileAccess) -> Result<Box<dyn FileHandle>> {
        if access.read {
            self.check(Operation::Read)?;
        }
        let mut access = access;
        let asked = access.write;
        if let Some(mode) = asked {
            self.check(Operation::Write)?;
            let mode = self.create_only(mode)?;
            self.check_mode(mode)?;
            access.write = Some(mode);
        }
        let op = if access.write.is_some() {
            Operation::Write
        } else {
            Operation::Read
        };
        let grant = match access.write {
            Some(mode) => self.admit(path, mode).await?,
            None => None,
        };
        let opened = self.storage.open_file(path, access).await;
        let opened = opened.map_err(|e| match (asked, access.write) {
            (Some(asked), Some(mode)) => name_taken(e, asked, mode),
            _ => e,
        });
        match (self.noted(op, path, opened), grant) {
            (Ok(file), Some(grant)) => {
                let append = access.write == Some(WriteMode::Append);
                Ok(Box::new(QuotaFile::new(file, grant, append)))
            }
            (Ok(file), None) => Ok(file),
            (Err(e), grant) => {
                if let Some(grant) = grant {
                    grant.cancel();
                }
                Err(e)
            }
        }
    }

    /// [`Operation::Write`]: cut or extend the existing file at `path` to `len` bytes, in
    /// place. A quota refuses the growth beyond it, never a cut (a user at the quota can
    /// shrink a file).
    pub async fn set_len(&self, path: &VPath, len: u64) -> Result<()> {
        let storage = self.storage_for(Operation::Write)?;
        let mode = self.create_only(WriteMode::Update)?;
        self.check_mode(mode)?;
        let md = self.noted(Operation::Write, path, storage.metadata(path).await)?;
        if md.kind == EntryKind::Dir {
            return Err(Error::new(ErrorKind::IsADirectory, "Is a directory"));
        }
        let grant = match &self.who.quota {
            Some(quota) => Some(quota.admit_resize(storage.as_ref(), md.size).await?),
            None => None,
        };
        let access = FileAccess {
            read: false,
            write: Some(mode),
        };
        let opened = storage.open_file(path, access).await;
        let handle = match (self.noted(Operation::Write, path, opened), grant) {
            (Ok(file), Some(grant)) => Box::new(QuotaFile::new(file, grant, false)),
            (Ok(file), None) => file,
            (Err(e), grant) => {
                if let Some(grant) = grant {
                    grant.cancel();
                }
                return Err(e);
            }
        };
        let cut = handle.set_len(len).await;
        let closed = handle.close().await;
        cut?;
        closed
    }

    /// [`Operation::MakeDir`].
    pub async fn mkdir(&self, path: &VPath) -> Result<()> {
        let r = self.storage_for(Operation::MakeDir)?.mkdir(path).await;
        self.noted(Operation::MakeDir, path, r)
    }

    /// [`Operation::Delete`] of an empty directory; never the root.
    pub async fn rmdir(&self, path: &VPath) -> Result<()> {
        let storage = self.storage_for(Operation::Delete)?;
        if path.is_root() {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                "Cannot remove the root directory",
            ));
        }
        let r = storage.rmdir(path).await;
        self.noted(Operation::Delete, path, r)
    }

    /// [`Operation::Delete`] of a file (its bytes and the file itself no longer count
    /// against a quota).
    pub async fn remove_file(&self, path: &VPath) -> Result<()> {
        let storage = self.storage_for(Operation::Delete)?;
        let size = self.quota_size(path).await;
        let r = storage.remove_file(path).await;
        let r = self.noted(Operation::Delete, path, r);
        if r.is_ok() {
            self.quota_removed(size);
        }
        r
    }

    /// [`Operation::Rename`]: checks that `from` exists (and is not the root), for protocols
    /// that name the source first (FTP `RNFR`).
    pub async fn rename_source(&self, from: &VPath) -> Result<Metadata> {
        let storage = self.storage_for(Operation::Rename)?;
        if from.is_root() {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                "Cannot rename the root directory",
            ));
        }
        let r = storage.metadata(from).await;
        self.noted(Operation::Rename, from, r)
    }

    /// [`Operation::Rename`] of `from` to `to` (replacing a file at `to`).
    pub async fn rename(&self, from: &VPath, to: &VPath) -> Result<()> {
        let storage = self.storage_for(Operation::Rename)?;
        if from.is_root() || to.is_root() {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                "Cannot rename the root directory",
            ));
        }
        // A file replaced by the rename no longer counts against a quota.
        let replaced = if from == to {
            None
        } else {
            self.quota_size(to).await
        };
        let r = storage.rename(from, to).await;
        let r = self.noted(Operation::Rename, to, r);
        if r.is_ok() {
            self.quota_removed(replaced);
        }
        r
    }

    /// [`Operation::SetAttributes`]: the modification time.
    pub async fn set_mtime(&self, path: &VPath, unix_secs: i64) -> Result<()> {
        let r = self
            .storage_for(Operation::SetAttributes)?
            .set_mtime(path, unix_secs)
            .await;
        self.noted(Operation::SetAttributes, path, r)
    }

    /// [`Operation::SetAttributes`]: permission bits (`0o777` at most).
    pub async fn set_mode(&self, path: &VPath, mode: u32) -> Result<()> {
        let storage = self.storage_for(Operation::SetAttributes)?;
        if !storage.capabilities().chmod {
            return Err(unsupported("Changing permissions"));
        }
        let r = storage.set_mode(path, mode & 0o777).await;
        self.noted(Operation::SetAttributes, path, r)
    }
}
