//! Directory listing formats: `LIST` (`ls -l` style), `NLST`, `MLSD`/`MLST` facts (RFC 3659),
//! `MDTM` timestamps; and, for clients, parsers of Unix, DOS/IIS and MLSx listings.
//!
//! Times are Unix seconds (UTC). The current time is passed in (`now`), never read here.

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
    /// Stable identity for the MLSx `unique` fact (e.g. `dev`+`ino` in hex), if known.
    pub unique: Option<String>,
}

/// Append one `LIST` line (`-rw-r--r-- 1 ftp ftp 1234 Nov 28 03:08 name\r\n`) to `out`.
/// Entries modified within ~6 months of `now` show `HH:MM`, others the year (as `ls -l`).
/// Owner and group are always `ftp` so no local account names leak.
pub fn format_list_line(entry: &Entry, now: i64, out: &mut Vec<u8>) {
    let _ = (entry, now, out);
    todo!()
}

/// Append one `NLST` line (`name\r\n`).
pub fn format_nlst_line(name: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Which MLSx facts are enabled (`OPTS MLST type;size;...`). All on by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MlstFacts {
    pub kind: bool,
    pub size: bool,
    pub modify: bool,
    pub perm: bool,
    pub unique: bool,
}

impl Default for MlstFacts {
    fn default() -> Self {
        MlstFacts { kind: true, size: true, modify: true, perm: true, unique: true }
    }
}

impl MlstFacts {
    /// Apply `OPTS MLST` arguments (`"type;size;"`; unknown facts ignored; empty disables all).
    pub fn from_opts(args: &str) -> Self {
        let _ = args;
        todo!()
    }

    /// The FEAT line, e.g. `MLST type*;size*;modify*;perm*;unique*;`.
    pub fn feat_line(&self) -> String {
        todo!()
    }

    /// The `200` answer text to `OPTS MLST`, listing the enabled facts (`type;size;`).
    pub fn enabled_list(&self) -> String {
        todo!()
    }
}

/// Which MLSx `type` value to use for an entry listed by `MLSD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MlsxRole {
    /// A normal entry.
    Entry,
    /// The listed directory itself (`type=cdir`).
    Cdir,
    /// Its parent (`type=pdir`).
    Pdir,
}

/// Append one MLSx fact line `type=file;size=1;modify=20261128030823;perm=rw;unique=..; name`
/// (no leading space, CRLF appended) to `out`. `perm` is the RFC 3659 perm letters for this user.
pub fn format_mlsx_line(entry: &Entry, role: MlsxRole, facts: &MlstFacts, perm: &str, out: &mut Vec<u8>) {
    let _ = (entry, role, facts, perm, out);
    todo!()
}

/// `YYYYMMDDHHMMSS` (UTC) for `MDTM` and MLSx `modify`.
pub fn format_mdtm(unix_secs: i64) -> String {
    let _ = unix_secs;
    todo!()
}

/// Parse `YYYYMMDDHHMMSS[.sss]` (UTC) to Unix seconds; `None` if malformed or out of range.
pub fn parse_mdtm(s: &str) -> Option<i64> {
    let _ = s;
    todo!()
}

/// One entry as a client understands it from a listing line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedEntry {
    pub name: String,
    pub kind: EntryKind,
    pub size: Option<u64>,
    /// Unix seconds UTC when the listing gave a time.
    pub mtime: Option<i64>,
    /// Symlink target for `LIST` lines of the form `name -> target`.
    pub link_target: Option<String>,
}

/// Parse one `LIST` line in Unix `ls -l` or DOS/IIS (`11-28-26  03:08AM  <DIR>  name`) form.
/// `now` lets year-less Unix dates pick the right year. `None` for `total N` and unknown forms.
pub fn parse_list_line(line: &str, now: i64) -> Option<ParsedEntry> {
    let _ = (line, now);
    todo!()
}

/// Parse one MLSD/MLST line (`facts; name`, leading space tolerated). `cdir`/`pdir` entries
/// are returned with `kind: Dir` and their names; callers skip them if they wish.
pub fn parse_mlsx_line(line: &str) -> Option<ParsedEntry> {
    let _ = line;
    todo!()
}
