//! Directory listing formats: `LIST` (`ls -l` style), `NLST`, `MLSD`/`MLST` facts (RFC 3659),
//! `MDTM` timestamps; and, for clients, parsers of Unix, DOS/IIS and MLSx listings.
//!
//! Times are Unix seconds (UTC). The current time is passed in (`now`), never read here.
//!
//! # Layout
//! - `calendar`: civil dates, `MDTM` times.
//! - `digits`: integers and times written straight into a line buffer.
//! - `format`: the server's line formatters.
//! - `parse`: the client's parsers of Unix, DOS/IIS and MLSx listings.

mod calendar;
mod digits;
mod format;
mod parse;
#[cfg(test)]
mod tests;

use calendar::*;
pub use calendar::{civil_from_days, days_from_civil, format_mdtm, parse_mdtm};
use digits::*;
pub use format::{MlstFacts, MlsxRole, format_list_line, format_mlsx_line, format_nlst_line};
pub use parse::{ParsedEntry, parse_list, parse_list_line, parse_mlsd, parse_mlsx_line};

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Other,
}

/// One directory entry as the server describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Name within its directory (no `/`).
    pub name: String,
    pub kind: EntryKind,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, Unix seconds UTC.
    pub mtime: i64,
    /// Permission bits (`0o755`), shown in `LIST` mode strings.
    pub mode: u32,
    /// Link count shown in `LIST`.
    pub nlink: u64,
    /// Stable identity for the MLSx `unique` fact, if known.
    pub unique: Option<Unique>,
}

/// Stable identity of a file for the MLSx `unique` fact. Kept as numbers and rendered only
/// when the fact is written, so stat'ing a 10,000-entry directory allocates nothing for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unique {
    /// A local file's device and inode, written `{dev:x}g{ino:x}` (`803g2a1`).
    DevIno { dev: u64, ino: u64 },
    /// A backend's own node id, written `m{id:x}` (`m2a`).
    Id(u64),
}

impl Unique {
    /// Append the fact value (lowercase hex, never any fact syntax) to `out`.
    fn push_to(self, out: &mut Vec<u8>) {
        match self {
            Unique::DevIno { dev, ino } => {
                push_hex(out, dev);
                out.push(b'g');
                push_hex(out, ino);
            }
            Unique::Id(id) => {
                out.push(b'm');
                push_hex(out, id);
            }
        }
    }
}

/// The same text as the `unique` fact; for logs and tests, not the listing hot path.
impl std::fmt::Display for Unique {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Unique::DevIno { dev, ino } => write!(f, "{dev:x}g{ino:x}"),
            Unique::Id(id) => write!(f, "m{id:x}"),
        }
    }
}
