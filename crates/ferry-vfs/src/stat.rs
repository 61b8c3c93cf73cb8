//! Metadata of local files as storage reports it, for the local backend and its listing
//! cache alike.

use cap_std::fs::MetadataExt;

use crate::{EntryKind, Metadata};

/// What `md` (from cap-std, of the entry itself or what it leads to) says, as [`Metadata`].
pub(crate) fn convert(md: &cap_std::fs::Metadata) -> Metadata {
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_file() {
        EntryKind::File
    } else if ft.is_symlink() {
        EntryKind::Symlink
    } else {
        EntryKind::Other
    };
    Metadata {
        kind,
        size: md.len(),
        mtime: md.mtime(),
        mode: md.mode() & 0o7777,
        nlink: md.nlink(),
        unique: Some(crate::Unique::DevIno {
            dev: md.dev(),
            ino: md.ino(),
        }),
    }
}

/// [`convert`] for what `ferry_sys::stat_cached` found (links followed, so never a link).
pub(crate) fn from_cached(st: &ferry_sys::CachedStat) -> Metadata {
    let kind = match st.kind {
        ferry_sys::OpenedKind::File => EntryKind::File,
        ferry_sys::OpenedKind::Directory => EntryKind::Dir,
        ferry_sys::OpenedKind::Other => EntryKind::Other,
    };
    Metadata {
        kind,
        size: st.size,
        mtime: st.mtime,
        mode: st.mode,
        nlink: st.nlink,
        unique: Some(crate::Unique::DevIno {
            dev: st.dev,
            ino: st.ino,
        }),
    }
}
