//! Server-side listing formatters: `LIST` (`ls -l`), `NLST`, MLSx facts.

use super::*;

/// Names come from storage and may hold anything: CR or LF would forge extra listing lines.
pub(super) fn push_name(out: &mut Vec<u8>, name: &str) {
    // Copied whole, then patched in place: cheaper than a byte-by-byte filtered extend.
    let start = out.len();
    out.extend_from_slice(name.as_bytes());
    for b in &mut out[start..] {
        if *b == b'\r' || *b == b'\n' {
            *b = b'?';
        }
    }
}

/// The `ls -l` mode string (`drwxr-xr-x`, `-rwsr-x--T`), ten ASCII bytes.
pub(super) fn push_mode(out: &mut Vec<u8>, kind: EntryKind, mode: u32) {
    let bit = |mask: u32, c: u8| if mode & mask != 0 { c } else { b'-' };
    // Execute position with setuid/setgid/sticky: `s`/`t` over `x`, `S`/`T` without it.
    let special = |exec: u32, special: u32, on: u8| match (mode & exec != 0, mode & special != 0) {
        (true, true) => on,
        (false, true) => on.to_ascii_uppercase(),
        (true, false) => b'x',
        (false, false) => b'-',
    };
    out.extend_from_slice(&[
        match kind {
            EntryKind::Dir => b'd',
            EntryKind::Symlink => b'l',
            EntryKind::File | EntryKind::Other => b'-',
        },
        bit(0o400, b'r'),
        bit(0o200, b'w'),
        special(0o100, 0o4000, b's'),
        bit(0o040, b'r'),
        bit(0o020, b'w'),
        special(0o010, 0o2000, b's'),
        bit(0o004, b'r'),
        bit(0o002, b'w'),
        special(0o001, 0o1000, b't'),
    ]);
}

/// Append one `LIST` line (`-rw-r--r-- 1 ftp ftp 1234 Nov 28 03:08 name\r\n`) to `out`.
/// Entries modified within ~6 months of `now` show `HH:MM`, others the year (as `ls -l`).
/// Owner and group are always `ftp` so no local account names leak.
/// CR or LF in the name are written as `?` so a stored name can't forge listing lines.
pub fn format_list_line(entry: &Entry, now: i64, out: &mut Vec<u8>) {
    let t = Civil::from_unix(entry.mtime);
    let month = MONTHS[(t.month as usize).saturating_sub(1) % 12];
    let recent = entry.mtime <= now.saturating_add(DAY) && now.saturating_sub(entry.mtime) < RECENT;
    // Written straight into `out`: a 10,000-entry listing makes no per-line allocation.
    // 64 bytes cover the columns and CRLF of a line whose numbers fit their widths.
    out.reserve(64 + entry.name.len());
    // `{mode} {nlink:>4} ftp      ftp      {size:>13} {month} {day:>2} `
    push_mode(out, entry.kind, entry.mode);
    out.push(b' ');
    push_u64_padded_right(out, entry.nlink, 4);
    out.extend_from_slice(b" ftp      ftp      ");
    push_u64_padded_right(out, entry.size, 13);
    out.push(b' ');
    out.extend_from_slice(month.as_bytes());
    out.push(b' ');
    push_u64_padded_right(out, t.day.into(), 2);
    out.push(b' ');
    if recent {
        // `{hour:02}:{min:02} `
        push_2digits(out, t.hour);
        out.push(b':');
        push_2digits(out, t.min);
    } else {
        // `{year:>5} `; far-off mtimes give years of any length or sign.
        push_i64_padded_right(out, t.year, 5);
    }
    out.push(b' ');
    push_name(out, &entry.name);
    out.extend_from_slice(b"\r\n");
}

/// Append one `NLST` line (`name\r\n`). CR or LF in the name are written as `?`.
pub fn format_nlst_line(name: &str, out: &mut Vec<u8>) {
    push_name(out, name);
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
        MlstFacts {
            kind: true,
            size: true,
            modify: true,
            perm: true,
            unique: true,
        }
    }
}

impl MlstFacts {
    /// Apply `OPTS MLST` arguments (`"type;size;"`; unknown facts ignored; empty disables all).
    /// Fact names are case-insensitive.
    pub fn from_opts(args: &str) -> Self {
        let mut f = MlstFacts {
            kind: false,
            size: false,
            modify: false,
            perm: false,
            unique: false,
        };
        for fact in args.split(';').map(str::trim) {
            match fact.to_ascii_lowercase().as_str() {
                "type" => f.kind = true,
                "size" => f.size = true,
                "modify" => f.modify = true,
                "perm" => f.perm = true,
                "unique" => f.unique = true,
                _ => {}
            }
        }
        f
    }

    fn each(&self) -> [(&'static str, bool); 5] {
        [
            ("type", self.kind),
            ("size", self.size),
            ("modify", self.modify),
            ("perm", self.perm),
            ("unique", self.unique),
        ]
    }

    /// The FEAT line, e.g. `MLST type*;size*;modify*;perm*;unique*;`.
    pub fn feat_line(&self) -> String {
        let mut s = String::from("MLST ");
        for (name, on) in self.each() {
            s.push_str(name);
            if on {
                s.push('*');
            }
            s.push(';');
        }
        s
    }

    /// The `200` answer text to `OPTS MLST`, listing the enabled facts (`type;size;`).
    pub fn enabled_list(&self) -> String {
        let mut s = String::new();
        for (name, _) in self.each().into_iter().filter(|&(_, on)| on) {
            s.push_str(name);
            s.push(';');
        }
        s
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
///
/// `type` is `file`, `dir`, `cdir`/`pdir` (by `role`), `OS.unix=symlink` or `OS.unix=special`;
/// `size` is given for files only; `perm` is omitted when empty. Characters that would break
/// the fact syntax (`;`, `=`, space, CR, LF) are dropped from `perm` (`unique` is hex, which
/// never holds them), and CR/LF in the name are written as `?`.
pub fn format_mlsx_line(
    entry: &Entry,
    role: MlsxRole,
    facts: &MlstFacts,
    perm: &str,
    out: &mut Vec<u8>,
) {
    // Fact values may not contain the fact syntax; drop such characters as they are copied.
    fn push_clean(out: &mut Vec<u8>, v: &str) {
        out.extend(
            v.bytes()
                .filter(|c| !matches!(c, b';' | b'=' | b' ' | b'\r' | b'\n')),
        );
    }
    let clean_empty = |v: &str| {
        v.bytes()
            .all(|c| matches!(c, b';' | b'=' | b' ' | b'\r' | b'\n'))
    };
    // Enough for all facts with the longest numbers, so a line is one reservation at most.
    out.reserve(128 + perm.len() + entry.name.len());
    if facts.kind {
        let kind = match (role, entry.kind) {
            (MlsxRole::Cdir, _) => "cdir",
            (MlsxRole::Pdir, _) => "pdir",
            (MlsxRole::Entry, EntryKind::File) => "file",
            (MlsxRole::Entry, EntryKind::Dir) => "dir",
            (MlsxRole::Entry, EntryKind::Symlink) => "OS.unix=symlink",
            (MlsxRole::Entry, EntryKind::Other) => "OS.unix=special",
        };
        out.extend_from_slice(b"type=");
        out.extend_from_slice(kind.as_bytes());
        out.push(b';');
    }
    if facts.size && entry.kind == EntryKind::File && role == MlsxRole::Entry {
        out.extend_from_slice(b"size=");
        push_u64(out, entry.size);
        out.push(b';');
    }
    if facts.modify {
        out.extend_from_slice(b"modify=");
        push_mdtm(out, entry.mtime);
        out.push(b';');
    }
    if facts.perm && !clean_empty(perm) {
        out.extend_from_slice(b"perm=");
        push_clean(out, perm);
        out.push(b';');
    }
    if let (true, Some(unique)) = (facts.unique, entry.unique) {
        out.extend_from_slice(b"unique=");
        unique.push_to(out);
        out.push(b';');
    }
    out.push(b' ');
    push_name(out, &entry.name);
    out.extend_from_slice(b"\r\n");
}
