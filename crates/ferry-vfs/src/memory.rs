//! [`MemoryFs`]: an in-memory tree for fast tests; same semantics as [`crate::LocalFs`].
//!
//! Files behave like inodes: an upload opened in place ([`WriteMode::Append`], [`WriteMode::At`],
//! [`WriteMode::CreateNew`], [`WriteMode::Update`]) writes through to the file as it goes, so an
//! interrupted transfer leaves its partial data, exactly as on disk. A [`WriteMode::Replace`]
//! upload goes to a detached file that takes the name only on commit. Readers get a snapshot taken at open. There are
//! no symlinks; files are `0o644`, directories `0o755`.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Cursor;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::VPath;
use crate::{Entry, EntryKind, Unique};
use async_trait::async_trait;
use tokio::io::AsyncWrite;

use crate::{
    Capabilities, Error, ErrorKind, FileAccess, FileHandle, Metadata, ReadHandle, Result, Storage,
    Upload, WriteMode,
};

/// An in-memory file tree.
#[derive(Debug, Default)]
pub struct MemoryFs {
    inner: Arc<Mutex<Inner>>,
}

impl MemoryFs {
    /// An empty tree (just `/`).
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }
}

/// Lock, ignoring poisoning: every mutation below leaves the tree consistent at each step.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

struct Inner {
    root: DirNode,
    next_id: u64,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            root: DirNode {
                children: BTreeMap::new(),
                mtime: now(),
                id: 1,
            },
            next_id: 2,
        }
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner")
            .field("next_id", &self.next_id)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn new_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn new_file(&mut self, data: Vec<u8>) -> Arc<Mutex<FileData>> {
        let id = self.new_id();
        Arc::new(Mutex::new(FileData {
            data,
            mtime: now(),
            id,
        }))
    }
}

/// File content and times: the "inode", shared by the tree and open uploads.
struct FileData {
    data: Vec<u8>,
    mtime: i64,
    id: u64,
}

struct DirNode {
    children: BTreeMap<String, Node>,
    mtime: i64,
    id: u64,
}

enum Node {
    File(Arc<Mutex<FileData>>),
    Dir(DirNode),
}

impl Node {
    fn metadata(&self) -> Metadata {
        match self {
            Node::File(file) => {
                let file = lock(file);
                Metadata {
                    kind: EntryKind::File,
                    size: file.data.len() as u64,
                    mtime: file.mtime,
                    mode: 0o644,
                    nlink: 1,
                    unique: Some(Unique::Id(file.id)),
                }
            }
            Node::Dir(dir) => Node::metadata_of_dir(dir),
        }
    }

    fn metadata_of_dir(dir: &DirNode) -> Metadata {
        Metadata {
            kind: EntryKind::Dir,
            size: 0,
            mtime: dir.mtime,
            mode: 0o755,
            nlink: 2,
            unique: Some(Unique::Id(dir.id)),
        }
    }
}

fn not_found() -> Error {
    Error::new(ErrorKind::NotFound, "No such file or directory")
}
fn not_a_directory() -> Error {
    Error::new(ErrorKind::NotADirectory, "Not a directory")
}
fn is_a_directory() -> Error {
    Error::new(ErrorKind::IsADirectory, "Is a directory")
}
fn already_exists() -> Error {
    Error::new(ErrorKind::AlreadyExists, "File exists")
}
fn permission_denied() -> Error {
    Error::new(ErrorKind::PermissionDenied, "Permission denied")
}
fn beyond_end() -> Error {
    Error::new(ErrorKind::Other, "restart offset beyond end of file")
}

fn comps(path: &VPath) -> Vec<String> {
    path.components().map(str::to_string).collect()
}

/// The directory at `comps`.
fn dir_mut<'a>(root: &'a mut DirNode, comps: &[String]) -> Result<&'a mut DirNode> {
    let mut dir = root;
    for comp in comps {
        dir = match dir.children.get_mut(comp) {
            None => return Err(not_found()),
            Some(Node::File(_)) => return Err(not_a_directory()),
            Some(Node::Dir(d)) => d,
        };
    }
    Ok(dir)
}

/// The parent directory of a non-root path and the last name.
fn parent_mut<'a, 'c>(
    root: &'a mut DirNode,
    comps: &'c [String],
) -> Result<(&'a mut DirNode, &'c str)> {
    let Some((name, parents)) = comps.split_last() else {
        return Err(permission_denied());
    };
    Ok((dir_mut(root, parents)?, name))
}

/// The node at some path: the root directory or a child of some directory.
enum Found<'a> {
    Root(&'a mut DirNode),
    Child(&'a mut Node),
}

fn find<'a>(root: &'a mut DirNode, comps: &[String]) -> Result<Found<'a>> {
    let Some((name, parents)) = comps.split_last() else {
        return Ok(Found::Root(root));
    };
    let parent = dir_mut(root, parents)?;
    parent
        .children
        .get_mut(name)
        .map(Found::Child)
        .ok_or_else(not_found)
}

/// Where an upload or a writable handle writes: a file of the tree, or a detached one that
/// takes its place on commit.
struct Target {
    file: Arc<Mutex<FileData>>,
    /// `Some` for [`WriteMode::Replace`]: the path the file is inserted at on commit.
    replace: Option<Vec<String>>,
    append: bool,
}

impl Target {
    /// Write `buf` at `pos` (at the end in append mode); the position after it.
    fn write_at(&self, pos: u64, buf: &[u8]) -> Result<u64> {
        let mut file = lock(&self.file);
        let len = file.data.len();
        let start = if self.append {
            len
        } else {
            usize::try_from(pos).map_err(|_| too_large())?
        };
        let end = start.checked_add(buf.len()).ok_or_else(too_large)?;
        if end > file.data.len() {
            file.data.resize(end, 0);
        }
        file.data[start..end].copy_from_slice(buf);
        file.mtime = now();
        Ok(end as u64)
    }

    /// Make a replacing file visible at its path.
    fn commit(self, inner: &Mutex<Inner>) -> Result<()> {
        let Some(path) = self.replace else {
            return Ok(());
        };
        let mut inner = lock(inner);
        let id = inner.new_id();
        lock(&self.file).id = id;
        let (parent, name) = parent_mut(&mut inner.root, &path)?;
        if let Some(Node::Dir(_)) = parent.children.get(name) {
            return Err(is_a_directory());
        }
        parent
            .children
            .insert(name.to_string(), Node::File(self.file));
        parent.mtime = now();
        Ok(())
    }
}

fn too_large() -> Error {
    Error::new(ErrorKind::InsufficientStorage, "File too large")
}

/// An upload into a [`MemoryFs`].
struct MemoryUpload {
    inner: Arc<Mutex<Inner>>,
    target: Target,
    pos: u64,
}

impl AsyncWrite for MemoryUpload {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let pos = self
            .target
            .write_at(self.pos, buf)
            .map_err(|e| std::io::Error::other(e.message))?;
        self.pos = pos;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[async_trait]
impl Upload for MemoryUpload {
    async fn commit(self: Box<Self>) -> Result<()> {
        let MemoryUpload { inner, target, .. } = *self;
        target.commit(&inner)
    }
}

/// A [`MemoryFs`] file open for reads and writes at offsets.
struct MemoryHandle {
    inner: Arc<Mutex<Inner>>,
    target: Target,
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
impl FileHandle for MemoryHandle {
    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        if !self.readable {
            return Err(not_open_for("reading"));
        }
        let file = lock(&self.target.file);
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(file.data.len());
        let end = start.saturating_add(len).min(file.data.len());
        Ok(file.data[start..end].to_vec())
    }

    async fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        if !self.writable {
            return Err(not_open_for("writing"));
        }
        self.target.write_at(offset, data).map(drop)
    }

    async fn metadata(&self) -> Result<Metadata> {
        Ok(Node::File(Arc::clone(&self.target.file)).metadata())
    }

    async fn set_len(&self, len: u64) -> Result<()> {
        if !self.writable {
            return Err(not_open_for("writing"));
        }
        let len = usize::try_from(len).map_err(|_| too_large())?;
        let mut file = lock(&self.target.file);
        file.data.resize(len, 0);
        file.mtime = now();
        Ok(())
    }

    async fn sync(&self) -> Result<()> {
        Ok(())
    }

    async fn close(self: Box<Self>) -> Result<()> {
        let MemoryHandle { inner, target, .. } = *self;
        target.commit(&inner)
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

impl MemoryFs {
    /// The file an upload or writable handle in `mode` writes to, created or truncated as
    /// `mode` says.
    fn target(&self, path: &VPath, mode: WriteMode) -> Result<Target> {
        let path = comps(path);
        let mut guard = self.lock();
        let inner = &mut *guard;
        let Some((name, parents)) = path.split_last() else {
            return Err(match mode {
                WriteMode::CreateNew => already_exists(),
                _ => is_a_directory(),
            });
        };
        let parent = dir_mut(&mut inner.root, parents)?;
        let existing = match parent.children.get(name) {
            Some(Node::Dir(_)) if mode == WriteMode::CreateNew => return Err(already_exists()),
            Some(Node::Dir(_)) => return Err(is_a_directory()),
            Some(Node::File(file)) => Some(Arc::clone(file)),
            None => None,
        };
        if mode == WriteMode::Replace {
            // Detached until commit; its id is given then.
            let file = Arc::new(Mutex::new(FileData {
                data: Vec::new(),
                mtime: now(),
                id: 0,
            }));
            return Ok(Target {
                file,
                replace: Some(path.clone()),
                append: false,
            });
        }
        if mode == WriteMode::CreateNew && existing.is_some() {
            return Err(already_exists());
        }
        let offset = match mode {
            WriteMode::At(offset) => offset,
            _ => 0,
        };
        let file = match existing {
            Some(file) => file,
            None if offset > 0 => return Err(beyond_end()),
            None => {
                let file = inner.new_file(Vec::new());
                let parent = dir_mut(&mut inner.root, parents)?;
                parent
                    .children
                    .insert(name.clone(), Node::File(Arc::clone(&file)));
                parent.mtime = now();
                file
            }
        };
        if let WriteMode::At(offset) = mode {
            let mut data = lock(&file);
            let keep = usize::try_from(offset).map_err(|_| beyond_end())?;
            if keep > data.data.len() {
                return Err(beyond_end());
            }
            data.data.truncate(keep);
            data.mtime = now();
        }
        Ok(Target {
            file,
            replace: None,
            append: mode == WriteMode::Append,
        })
    }
}

#[async_trait]
impl Storage for MemoryFs {
    async fn metadata(&self, path: &VPath) -> Result<Metadata> {
        let mut inner = self.lock();
        match find(&mut inner.root, &comps(path))? {
            Found::Root(dir) => Ok(Node::metadata_of_dir(dir)),
            Found::Child(node) => Ok(node.metadata()),
        }
    }

    async fn list(&self, path: &VPath) -> Result<Vec<Entry>> {
        let mut inner = self.lock();
        let dir = dir_mut(&mut inner.root, &comps(path))?;
        Ok(dir
            .children
            .iter()
            .map(|(name, node)| node.metadata().into_entry(name.clone()))
            .collect())
    }

    async fn open_read(&self, path: &VPath, offset: u64) -> Result<ReadHandle> {
        let mut inner = self.lock();
        let file = match find(&mut inner.root, &comps(path))? {
            Found::Root(_) | Found::Child(Node::Dir(_)) => return Err(is_a_directory()),
            Found::Child(Node::File(file)) => Arc::clone(file),
        };
        drop(inner);
        let data = lock(&file).data.clone();
        let size = data.len() as u64;
        let mut cursor = Cursor::new(data);
        cursor.set_position(offset);
        Ok(ReadHandle::from_reader(Box::pin(cursor), size))
    }

    async fn open_write(&self, path: &VPath, mode: WriteMode) -> Result<Box<dyn Upload>> {
        let pos = match mode {
            WriteMode::At(offset) => offset,
            _ => 0,
        };
        Ok(Box::new(MemoryUpload {
            inner: Arc::clone(&self.inner),
            target: self.target(path, mode)?,
            pos,
        }))
    }

    async fn open_file(&self, path: &VPath, access: FileAccess) -> Result<Box<dyn FileHandle>> {
        let target = match access.write {
            Some(mode) => self.target(path, mode)?,
            None => {
                let mut inner = self.lock();
                let file = match find(&mut inner.root, &comps(path))? {
                    Found::Root(_) | Found::Child(Node::Dir(_)) => return Err(is_a_directory()),
                    Found::Child(Node::File(file)) => Arc::clone(file),
                };
                Target {
                    file,
                    replace: None,
                    append: false,
                }
            }
        };
        Ok(Box::new(MemoryHandle {
            inner: Arc::clone(&self.inner),
            target,
            readable: access.read,
            writable: access.write.is_some(),
        }))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            chmod: false,
            symlinks: false,
            ..Capabilities::POSIX
        }
    }

    async fn mkdir(&self, path: &VPath) -> Result<()> {
        let path = comps(path);
        let mut guard = self.lock();
        let inner = &mut *guard;
        if path.is_empty() {
            return Err(already_exists());
        }
        let id = inner.new_id();
        let (parent, name) = parent_mut(&mut inner.root, &path)?;
        if parent.children.contains_key(name) {
            return Err(already_exists());
        }
        let dir = DirNode {
            children: BTreeMap::new(),
            mtime: now(),
            id,
        };
        parent.children.insert(name.to_string(), Node::Dir(dir));
        parent.mtime = now();
        Ok(())
    }

    async fn rmdir(&self, path: &VPath) -> Result<()> {
        let path = comps(path);
        let mut inner = self.lock();
        let (parent, name) = parent_mut(&mut inner.root, &path)?;
        match parent.children.get(name) {
            None => return Err(not_found()),
            Some(Node::File(_)) => return Err(not_a_directory()),
            Some(Node::Dir(dir)) if !dir.children.is_empty() => {
                return Err(Error::new(
                    ErrorKind::DirectoryNotEmpty,
                    "Directory not empty",
                ));
            }
            Some(Node::Dir(_)) => {}
        }
        parent.children.remove(name);
        parent.mtime = now();
        Ok(())
    }

    async fn remove_file(&self, path: &VPath) -> Result<()> {
        let path = comps(path);
        let mut inner = self.lock();
        let (parent, name) = parent_mut(&mut inner.root, &path)?;
        match parent.children.get(name) {
            None => return Err(not_found()),
            Some(Node::Dir(_)) => return Err(is_a_directory()),
            Some(Node::File(_)) => {}
        }
        parent.children.remove(name);
        parent.mtime = now();
        Ok(())
    }

    async fn rename(&self, from: &VPath, to: &VPath) -> Result<()> {
        if from.is_root() || to.is_root() {
            return Err(permission_denied());
        }
        let (from, to) = (comps(from), comps(to));
        let mut inner = self.lock();
        let from_is_dir = match find(&mut inner.root, &from)? {
            Found::Root(_) => return Err(permission_denied()),
            Found::Child(node) => matches!(node, Node::Dir(_)),
        };
        if from == to {
            return Ok(());
        }
        if to.starts_with(&from) {
            // Into itself (POSIX EINVAL).
            return Err(Error::new(ErrorKind::PermissionDenied, "Invalid argument"));
        }
        {
            let (parent, name) = parent_mut(&mut inner.root, &to)?;
            match (from_is_dir, parent.children.get(name)) {
                (_, None) => {}
                (false, Some(Node::File(_))) => {}
                (false, Some(Node::Dir(_))) => return Err(is_a_directory()),
                (true, Some(Node::File(_))) => return Err(not_a_directory()),
                (true, Some(Node::Dir(dir))) if dir.children.is_empty() => {}
                (true, Some(Node::Dir(_))) => {
                    return Err(Error::new(
                        ErrorKind::DirectoryNotEmpty,
                        "Directory not empty",
                    ));
                }
            }
        }
        let (parent, name) = parent_mut(&mut inner.root, &from)?;
        let node = parent.children.remove(name).ok_or_else(not_found)?;
        parent.mtime = now();
        // Checked above; the lock has been held throughout.
        let (parent, name) = parent_mut(&mut inner.root, &to)?;
        parent.children.insert(name.to_string(), node);
        parent.mtime = now();
        Ok(())
    }

    async fn set_mtime(&self, path: &VPath, unix_secs: i64) -> Result<()> {
        let mut inner = self.lock();
        match find(&mut inner.root, &comps(path))? {
            Found::Root(dir) | Found::Child(Node::Dir(dir)) => dir.mtime = unix_secs,
            Found::Child(Node::File(file)) => lock(file).mtime = unix_secs,
        }
        Ok(())
    }
}
