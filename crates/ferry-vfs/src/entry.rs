//! What storage says about a path: its [`Metadata`], and the [`Entry`]s of a directory.
//!
//! Protocols render these their own way (FTP listing lines, SFTP attributes); nothing here is
//! specific to one of them.

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Other,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Name within its directory (no `/`).
    pub name: String,
    pub kind: EntryKind,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, Unix seconds UTC.
    pub mtime: i64,
    /// Permission bits (`0o755`).
    pub mode: u32,
    /// Link count.
    pub nlink: u64,
    /// Stable identity, if the backend has one.
    pub unique: Option<Unique>,
}

/// Stable identity of a file, kept as numbers (stat'ing a large directory allocates nothing
/// for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unique {
    /// A local file's device and inode.
    DevIno { dev: u64, ino: u64 },
    /// A backend's own node id.
    Id(u64),
}

/// Metadata of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub kind: EntryKind,
    pub size: u64,
    /// Unix seconds UTC.
    pub mtime: i64,
    /// Permission bits.
    pub mode: u32,
    pub nlink: u64,
    /// Stable identity (for MLSx `unique`), if the backend has one.
    pub unique: Option<Unique>,
}

impl Metadata {
    /// A listing [`Entry`] with this metadata and `name`.
    pub fn into_entry(self, name: String) -> Entry {
        Entry {
            name,
            kind: self.kind,
            size: self.size,
            mtime: self.mtime,
            mode: self.mode,
            nlink: self.nlink,
            unique: self.unique,
        }
    }
}
