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

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

const DAY: i64 = 86_400;
/// `ls -l` shows the time of day for entries younger than this, the year otherwise.
const RECENT: i64 = 180 * DAY;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian `(year, month, day)` of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    min: u32,
    sec: u32,
}

impl Civil {
    fn from_unix(secs: i64) -> Civil {
        let (year, month, day) = civil_from_days(secs.div_euclid(DAY));
        let rem = secs.rem_euclid(DAY) as u32;
        Civil {
            year,
            month,
            day,
            hour: rem / 3600,
            min: rem / 60 % 60,
            sec: rem % 60,
        }
    }

    /// Unix seconds, or `None` if a field is out of range (seconds may be 60, a leap second).
    fn to_unix(self) -> Option<i64> {
        let valid = (1..=12).contains(&self.month)
            && (1..=days_in_month(self.year, self.month)).contains(&self.day)
            && self.hour < 24
            && self.min < 60
            && self.sec <= 60;
        if !valid {
            return None;
        }
        days_from_civil(self.year, self.month, self.day)
            .checked_mul(DAY)?
            .checked_add(i64::from(self.hour * 3600 + self.min * 60 + self.sec))
    }
}

/// Names come from storage and may hold anything: CR or LF would forge extra listing lines.
fn push_name(out: &mut Vec<u8>, name: &str) {
    // Copied whole, then patched in place: cheaper than a byte-by-byte filtered extend.
    let start = out.len();
    out.extend_from_slice(name.as_bytes());
    for b in &mut out[start..] {
        if *b == b'\r' || *b == b'\n' {
            *b = b'?';
        }
    }
}

// Integers are written by hand rather than with `write!`: for a long listing, `core::fmt`
// (argument plumbing, `pad_integral`) cost more than everything else in a line. Each helper
// below gives exactly the bytes of the `format!` spec named in its comment (tests check).

/// `"00"` to `"99"`, so decimal digits are produced two per division, as `core` itself does.
const DIGIT_PAIRS: [[u8; 2]; 100] = {
    let mut t = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    t
};

/// The decimal digits of `v`, written at the end of `buf` (20 bytes hold `u64::MAX`).
fn decimal(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    while v >= 100 {
        at -= 2;
        buf[at..at + 2].copy_from_slice(&DIGIT_PAIRS[(v % 100) as usize]);
        v /= 100;
    }
    if v >= 10 {
        at -= 2;
        buf[at..at + 2].copy_from_slice(&DIGIT_PAIRS[v as usize]);
    } else {
        at -= 1;
        buf[at] = b'0' + v as u8;
    }
    &buf[at..]
}

/// `{}` of a `u64`.
fn push_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(decimal(v, &mut [0; 20]));
}

/// `{:>width$}` of a `u64`: right aligned, space padded; wider values are written whole.
fn push_u64_padded_right(out: &mut Vec<u8>, v: u64, width: usize) {
    let mut buf = [0; 20];
    let digits = decimal(v, &mut buf);
    out.resize(out.len() + width.saturating_sub(digits.len()), b' ');
    out.extend_from_slice(digits);
}

/// `{:>width$}` of an `i64`: as [`push_u64_padded_right`], the `-` counting in the width.
fn push_i64_padded_right(out: &mut Vec<u8>, v: i64, width: usize) {
    let mut buf = [0; 20];
    let digits = decimal(v.unsigned_abs(), &mut buf);
    let len = digits.len() + usize::from(v < 0);
    out.resize(out.len() + width.saturating_sub(len), b' ');
    if v < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(digits);
}

/// `{:02}` of a `u32`: two digits for 0..=99 (times of day, months, days), else all of them.
fn push_2digits(out: &mut Vec<u8>, v: u32) {
    match DIGIT_PAIRS.get(v as usize) {
        Some(pair) => out.extend_from_slice(pair),
        None => push_u64(out, v.into()),
    }
}

/// `{:04}` of a `u32`: four digits for 0..=9999 (MDTM years), else all of them.
fn push_4digits(out: &mut Vec<u8>, v: u32) {
    if v < 10_000 {
        push_2digits(out, v / 100);
        push_2digits(out, v % 100);
    } else {
        push_u64(out, v.into());
    }
}

/// `{:x}` of a `u64`: lowercase hex, no leading zeros (`0` for zero).
fn push_hex(out: &mut Vec<u8>, v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Number of significant nibbles; at least one so zero is written as `0`.
    let nibbles = (64 - (v | 1).leading_zeros()).div_ceil(4);
    for i in (0..nibbles).rev() {
        out.push(HEX[(v >> (i * 4) & 0xf) as usize]);
    }
}

/// `YYYYMMDDHHMMSS` (UTC) as [`format_mdtm`] writes it, appended to `out` without allocating.
fn push_mdtm(out: &mut Vec<u8>, unix_secs: i64) {
    let t = Civil::from_unix(unix_secs.clamp(MDTM_MIN, MDTM_MAX));
    // The clamp keeps the year within 0..=9999, so it converts and takes exactly 4 digits.
    push_4digits(out, u32::try_from(t.year).unwrap_or(0));
    push_2digits(out, t.month);
    push_2digits(out, t.day);
    push_2digits(out, t.hour);
    push_2digits(out, t.min);
    push_2digits(out, t.sec);
}

/// The `ls -l` mode string (`drwxr-xr-x`, `-rwsr-x--T`), ten ASCII bytes.
fn push_mode(out: &mut Vec<u8>, kind: EntryKind, mode: u32) {
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

/// Earliest time [`format_mdtm`] can show: 0000-01-01 00:00:00.
const MDTM_MIN: i64 = -62_167_219_200;
/// Latest time [`format_mdtm`] can show: 9999-12-31 23:59:59.
const MDTM_MAX: i64 = 253_402_300_799;

/// `YYYYMMDDHHMMSS` (UTC) for `MDTM` and MLSx `modify`.
/// Times before year 0 or after 9999 are clamped to those years so the form stays 14 digits.
pub fn format_mdtm(unix_secs: i64) -> String {
    let t = Civil::from_unix(unix_secs.clamp(MDTM_MIN, MDTM_MAX));
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        t.year, t.month, t.day, t.hour, t.min, t.sec
    )
}

/// The value of a run of ASCII digits (at most 9, so no overflow).
fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parse `YYYYMMDDHHMMSS[.sss]` (UTC) to Unix seconds; `None` if malformed or out of range.
/// Fractions are dropped; a leap second (`60`) is accepted as the next minute's first second.
pub fn parse_mdtm(s: &str) -> Option<i64> {
    let (main, frac) = match s.split_once('.') {
        Some((m, f)) => (m, Some(f)),
        None => (s, None),
    };
    if let Some(f) = frac {
        if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    if main.len() != 14 || !main.is_ascii() {
        return None;
    }
    Civil {
        year: i64::from(digits(&main[0..4])?),
        month: digits(&main[4..6])?,
        day: digits(&main[6..8])?,
        hour: digits(&main[8..10])?,
        min: digits(&main[10..12])?,
        sec: digits(&main[12..14])?,
    }
    .to_unix()
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

/// Whitespace-separated tokens with their byte offsets.
fn tokens(s: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices() {
        match (c == ' ' || c == '\t', start) {
            (true, Some(st)) => {
                out.push((st, &s[st..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(st) = start {
        out.push((st, &s[st..]));
    }
    out
}

fn month_number(s: &str) -> Option<u32> {
    let i = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(s))?;
    u32::try_from(i + 1).ok()
}

/// `HH:MM` → (hour, minute).
fn hh_mm(s: &str) -> Option<(u32, u32)> {
    let (h, m) = s.split_once(':')?;
    if h.len() > 2 || m.len() != 2 {
        return None;
    }
    let (h, m) = (digits(h)?, digits(m)?);
    (h < 24 && m < 60).then_some((h, m))
}

/// Parse one `LIST` line in Unix `ls -l` or DOS/IIS (`11-28-26  03:08AM  <DIR>  name`) form.
/// `now` lets year-less Unix dates pick the right year. `None` for `total N` and unknown forms.
pub fn parse_list_line(line: &str, now: i64) -> Option<ParsedEntry> {
    let line = line.trim_end_matches(['\r', '\n']);
    let first = line.bytes().next()?;
    if first.is_ascii_digit() {
        parse_dos_line(line)
    } else {
        parse_unix_line(line, now)
    }
}

fn parse_unix_line(line: &str, now: i64) -> Option<ParsedEntry> {
    let toks = tokens(line);
    let (_, perms) = *toks.first()?;
    // Type letter plus nine permission characters; ACL/xattr markers (`+`, `@`, `.`) may follow.
    let pb = perms.as_bytes();
    if pb.len() < 10
        || !pb[1..10].iter().all(|b| b"rwxsStTlL-".contains(b))
        || !pb[10..].iter().all(|b| b"+@.".contains(b))
    {
        return None;
    }
    let kind_char = pb[0];
    let kind = match kind_char {
        b'-' | b'f' => EntryKind::File,
        b'd' => EntryKind::Dir,
        b'l' => EntryKind::Symlink,
        b'c' | b'b' | b'p' | b's' | b'D' | b'n' => EntryKind::Other,
        _ => return None,
    };
    let device = matches!(kind_char, b'c' | b'b');

    // Find `Mon DD HH:MM|YYYY` preceded by a size; the name follows the next single space.
    for i in 2..toks.len().saturating_sub(3) {
        let (_, mon) = toks[i];
        let (_, day) = toks[i + 1];
        let (when_at, when) = toks[i + 2];
        let (Some(month), Some(day)) = (month_number(mon), digits(day)) else {
            continue;
        };
        if !(1..=31).contains(&day) {
            continue;
        }
        let (_, size_tok) = toks[i - 1];
        let size = if device {
            // `major, minor` (or `major,minor`) stands where the size would.
            let prev = toks[i - 2].1;
            let ok = size_tok.bytes().all(|b| b.is_ascii_digit() || b == b',')
                && (size_tok.contains(',') || prev.ends_with(','));
            if !ok {
                continue;
            }
            None
        } else {
            match size_tok.parse::<u64>() {
                Ok(n) if size_tok.bytes().all(|b| b.is_ascii_digit()) => Some(n),
                _ => continue,
            }
        };
        let mtime = if let Some((hour, min)) = hh_mm(when) {
            guess_year(month, day, hour, min, now)
        } else if let (4, Some(year)) = (when.len(), digits(when)) {
            Civil {
                year: i64::from(year),
                month,
                day,
                hour: 0,
                min: 0,
                sec: 0,
            }
            .to_unix()
        } else {
            None
        };
        // Not a real date (`Nov 31`, `25:00`): keep looking, it wasn't the date column.
        let Some(mtime) = mtime else { continue };
        let mtime = Some(mtime);
        let name_at = when_at + when.len() + 1;
        let full = line.get(name_at..).filter(|n| !n.is_empty())?;
        let (name, link_target) = match (kind, full.split_once(" -> ")) {
            (EntryKind::Symlink, Some((n, t))) => (n.to_string(), Some(t.to_string())),
            _ => (full.to_string(), None),
        };
        if name.is_empty() {
            return None;
        }
        return Some(ParsedEntry {
            name,
            kind,
            size,
            mtime,
            link_target,
        });
    }
    None
}

/// The Unix time of a year-less `ls` date: the latest year that puts it no more than a day
/// after `now` (Feb 29 goes back to a leap year).
fn guess_year(month: u32, day: u32, hour: u32, min: u32, now: i64) -> Option<i64> {
    let this_year = Civil::from_unix(now).year;
    (-1..8).find_map(|back| {
        let t = Civil {
            year: this_year - back,
            month,
            day,
            hour,
            min,
            sec: 0,
        }
        .to_unix()?;
        (t <= now.saturating_add(DAY)).then_some(t)
    })
}

/// `11-28-26  03:08AM  <DIR>  name` or `11-28-2026  15:08  1234 name` (IIS, DOS).
fn parse_dos_line(line: &str) -> Option<ParsedEntry> {
    let toks = tokens(line);
    let [(_, date), (_, time), (size_at, size_tok), ..] = toks.as_slice() else {
        return None;
    };
    let mut parts = date.split(['-', '/', '.']);
    let (m, d, y) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || m.len() > 2 || d.len() > 2 {
        return None;
    }
    let (month, day) = (digits(m)?, digits(d)?);
    let year = match y.len() {
        2 => {
            let y = i64::from(digits(y)?);
            if y < 70 { 2000 + y } else { 1900 + y }
        }
        4 => i64::from(digits(y)?),
        _ => return None,
    };

    let upper = time.to_ascii_uppercase();
    let (clock, ampm) = if let Some(c) = upper.strip_suffix("AM") {
        (c, Some(false))
    } else if let Some(c) = upper.strip_suffix("PM") {
        (c, Some(true))
    } else {
        (upper.as_str(), None)
    };
    let (mut hour, min) = hh_mm(clock)?;
    if let Some(pm) = ampm {
        if !(1..=12).contains(&hour) {
            return None;
        }
        hour = match (pm, hour) {
            (false, 12) => 0,
            (true, 12) => 12,
            (true, h) => h + 12,
            (false, h) => h,
        };
    }
    let mtime = Civil {
        year,
        month,
        day,
        hour,
        min,
        sec: 0,
    }
    .to_unix()?;

    let (kind, size) = if size_tok.eq_ignore_ascii_case("<DIR>") {
        (EntryKind::Dir, None)
    } else {
        let plain: String = size_tok.chars().filter(|&c| c != ',').collect();
        if plain.is_empty() || !plain.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        (EntryKind::File, Some(plain.parse::<u64>().ok()?))
    };
    let name = line[size_at + size_tok.len()..].trim_start_matches([' ', '\t']);
    if name.is_empty() {
        return None;
    }
    Some(ParsedEntry {
        name: name.to_string(),
        kind,
        size,
        mtime: Some(mtime),
        link_target: None,
    })
}

/// Parse one MLSD/MLST line (`facts; name`, leading space tolerated). `cdir`/`pdir` entries
/// are returned with `kind: Dir` and their names; callers skip them if they wish.
///
/// Fact names are case-insensitive; facts end at the first space and the name is everything
/// after it. A line that is only ` name` (all facts disabled) gives `kind: Other`.
pub fn parse_mlsx_line(line: &str) -> Option<ParsedEntry> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (facts, name) = match line.strip_prefix(' ') {
        // ` facts name` (MLST over the control connection) or ` name` (no facts).
        Some(rest) => match rest.split_once(' ') {
            Some((f, n)) if f.ends_with(';') && f.contains('=') => (f, n),
            _ => ("", rest),
        },
        None => line.split_once(' ')?,
    };
    if name.is_empty() {
        return None;
    }
    let mut entry = ParsedEntry {
        name: name.to_string(),
        kind: EntryKind::Other,
        size: None,
        mtime: None,
        link_target: None,
    };
    for fact in facts.split(';').filter(|f| !f.is_empty()) {
        let (key, value) = fact.split_once('=')?;
        match key.to_ascii_lowercase().as_str() {
            "type" => {
                let v = value.to_ascii_lowercase();
                entry.kind = match v.as_str() {
                    "file" => EntryKind::File,
                    "dir" | "cdir" | "pdir" => EntryKind::Dir,
                    "os.unix=symlink" | "os.unix=slink" => EntryKind::Symlink,
                    _ if v.starts_with("os.unix=slink:") || v.starts_with("os.unix=symlink:") => {
                        let at = value.find(':').map_or(value.len(), |i| i + 1);
                        entry.link_target = Some(value[at..].to_string());
                        EntryKind::Symlink
                    }
                    _ => EntryKind::Other,
                };
            }
            "size" if value.bytes().all(|b| b.is_ascii_digit()) => entry.size = value.parse().ok(),
            "modify" => entry.mtime = parse_mdtm(value),
            _ => {}
        }
    }
    Some(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 2026-11-28 03:11:03 UTC.
    const NOW: i64 = 1_795_835_463;

    fn at(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
        Civil {
            year: y,
            month: mo,
            day: d,
            hour: h,
            min: mi,
            sec: s,
        }
        .to_unix()
        .unwrap()
    }

    fn entry(name: &str, kind: EntryKind, size: u64, mtime: i64, mode: u32) -> Entry {
        Entry {
            name: name.into(),
            kind,
            size,
            mtime,
            mode,
            nlink: 1,
            unique: None,
        }
    }

    fn list_line(e: &Entry, now: i64) -> String {
        let mut out = Vec::new();
        format_list_line(e, now, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn mlsx_line(e: &Entry, role: MlsxRole, facts: &MlstFacts, perm: &str) -> String {
        let mut out = Vec::new();
        format_mlsx_line(e, role, facts, perm, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn parsed(name: &str, kind: EntryKind, size: Option<u64>, mtime: Option<i64>) -> ParsedEntry {
        ParsedEntry {
            name: name.into(),
            kind,
            size,
            mtime,
            link_target: None,
        }
    }

    #[test]
    fn civil_conversions() {
        assert_eq!(at(2026, 11, 28, 3, 11, 3), NOW);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(days_from_civil(0, 1, 1), -719_528);
        assert_eq!(
            Civil::from_unix(-1),
            Civil {
                year: 1969,
                month: 12,
                day: 31,
                hour: 23,
                min: 59,
                sec: 59
            }
        );
        assert!(
            Civil {
                year: 2025,
                month: 2,
                day: 29,
                hour: 0,
                min: 0,
                sec: 0
            }
            .to_unix()
            .is_none()
        );
        assert!(
            Civil {
                year: 2024,
                month: 2,
                day: 29,
                hour: 0,
                min: 0,
                sec: 0
            }
            .to_unix()
            .is_some()
        );
        assert!(
            Civil {
                year: 1900,
                month: 2,
                day: 29,
                hour: 0,
                min: 0,
                sec: 0
            }
            .to_unix()
            .is_none()
        );
        let _ = Civil::from_unix(i64::MIN);
        let _ = Civil::from_unix(i64::MAX);
    }

    #[test]
    fn mdtm() {
        assert_eq!(format_mdtm(0), "19700101000000");
        assert_eq!(format_mdtm(NOW), "20261128031103");
        assert_eq!(format_mdtm(-1), "19691231235959");
        assert_eq!(format_mdtm(i64::MIN), "00000101000000");
        assert_eq!(format_mdtm(i64::MAX), "99991231235959");
        assert_eq!(parse_mdtm("20261128031103"), Some(NOW));
        assert_eq!(parse_mdtm("20261128031103.5"), Some(NOW));
        assert_eq!(parse_mdtm("20261128031103.123456"), Some(NOW));
        assert_eq!(parse_mdtm("19691231235959"), Some(-1));
        assert_eq!(parse_mdtm("20161231235960"), Some(at(2017, 1, 1, 0, 0, 0)));
        for bad in [
            "",
            "2026112803110",
            "202611280311033",
            "20261328031103",
            "20260028031103",
            "20261100031103",
            "20261131031103",
            "20250229000000",
            "20261128241103",
            "20261128036003",
            "20261128031161",
            "20261128031103.",
            "20261128031103.x",
            "2026112803110a",
            "+2026112803110",
            " 20261128031103",
            "20261128031103 ",
            "2026-11-28 03:1",
            "２0261128031103",
        ] {
            assert_eq!(parse_mdtm(bad), None, "{bad:?}");
        }
        assert_eq!(
            parse_mdtm("20240229120000"),
            Some(at(2024, 2, 29, 12, 0, 0))
        );
    }

    #[test]
    fn list_line_format() {
        let recent = at(2026, 11, 20, 3, 8, 59);
        assert_eq!(
            list_line(&entry("pub", EntryKind::Dir, 4096, recent, 0o755), NOW),
            "drwxr-xr-x    1 ftp      ftp               4096 Nov 20 03:08 pub\r\n"
        );
        let old = at(2024, 1, 5, 10, 0, 0);
        assert_eq!(
            list_line(
                &entry("big file.bin", EntryKind::File, 1_048_576, old, 0o644),
                NOW
            ),
            "-rw-r--r--    1 ftp      ftp            1048576 Jan  5  2024 big file.bin\r\n"
        );
        let link = entry("bin", EntryKind::Symlink, 7, recent, 0o777);
        assert!(list_line(&link, NOW).starts_with("lrwxrwxrwx "));
        let odd = entry("x", EntryKind::Other, 0, recent, 0o7644);
        assert!(list_line(&odd, NOW).starts_with("-rwSr-Sr-T "));
        let odd = entry("x", EntryKind::File, 0, recent, 0o7755);
        assert!(list_line(&odd, NOW).starts_with("-rwsr-sr-t "));
        // Over six months ago, or more than a day in the future: show the year.
        let e = entry("f", EntryKind::File, 1, NOW - 181 * DAY, 0o644);
        assert!(
            list_line(&e, NOW).contains(" May 31  2026 f"),
            "{}",
            list_line(&e, NOW)
        );
        let e = entry("f", EntryKind::File, 1, NOW - 179 * DAY, 0o644);
        assert!(list_line(&e, NOW).contains(" Jun  2 03:11 f"));
        let e = entry("f", EntryKind::File, 1, NOW + 2 * DAY, 0o644);
        assert!(list_line(&e, NOW).contains(" Nov 30  2026 f"));
        let e = entry("f", EntryKind::File, 1, NOW + 3600, 0o644);
        assert!(list_line(&e, NOW).contains(" Nov 28 04:11 f"));
        // Hostile names can't add lines.
        let e = entry(
            "a\r\n-rw-r--r-- 1 x x 1 Jan 1 2020 fake",
            EntryKind::File,
            1,
            NOW,
            0o644,
        );
        assert_eq!(list_line(&e, NOW).matches("\r\n").count(), 1);
        // Extreme values don't panic.
        let e = Entry {
            nlink: u64::MAX,
            ..entry("f", EntryKind::File, u64::MAX, i64::MIN, u32::MAX)
        };
        let _ = list_line(&e, i64::MAX);
        let _ = list_line(&entry("f", EntryKind::File, 0, i64::MAX, 0), i64::MIN);
    }

    #[test]
    fn nlst_line() {
        let mut out = Vec::new();
        format_nlst_line("a b", &mut out);
        format_nlst_line("x\ny", &mut out);
        assert_eq!(out, b"a b\r\nx?y\r\n");
    }

    #[test]
    fn mlst_facts() {
        let all = MlstFacts::default();
        assert_eq!(all.feat_line(), "MLST type*;size*;modify*;perm*;unique*;");
        assert_eq!(all.enabled_list(), "type;size;modify;perm;unique;");
        let some = MlstFacts::from_opts("Type;SIZE;bogus;");
        assert_eq!(
            some,
            MlstFacts {
                kind: true,
                size: true,
                modify: false,
                perm: false,
                unique: false
            }
        );
        assert_eq!(some.feat_line(), "MLST type*;size*;modify;perm;unique;");
        assert_eq!(some.enabled_list(), "type;size;");
        let none = MlstFacts::from_opts("");
        assert_eq!(none.enabled_list(), "");
        assert_eq!(
            MlstFacts::from_opts("modify;unique"),
            MlstFacts {
                kind: false,
                size: false,
                modify: true,
                perm: false,
                unique: true
            }
        );
    }

    #[test]
    fn mlsx_line_format() {
        let mut e = entry("a file", EntryKind::File, 1234, NOW, 0o644);
        e.unique = Some(Unique::DevIno {
            dev: 0x803,
            ino: 0x2a1,
        });
        let all = MlstFacts::default();
        assert_eq!(
            mlsx_line(&e, MlsxRole::Entry, &all, "adfrw"),
            "type=file;size=1234;modify=20261128031103;perm=adfrw;unique=803g2a1; a file\r\n"
        );
        let d = entry("d", EntryKind::Dir, 4096, NOW, 0o755);
        assert_eq!(
            mlsx_line(&d, MlsxRole::Entry, &all, ""),
            "type=dir;modify=20261128031103; d\r\n"
        );
        assert_eq!(
            mlsx_line(&d, MlsxRole::Cdir, &all, "el"),
            "type=cdir;modify=20261128031103;perm=el; d\r\n"
        );
        assert_eq!(
            mlsx_line(&d, MlsxRole::Pdir, &all, "el"),
            "type=pdir;modify=20261128031103;perm=el; d\r\n"
        );
        let l = entry("l", EntryKind::Symlink, 3, NOW, 0o777);
        assert!(
            mlsx_line(&l, MlsxRole::Entry, &all, "").starts_with("type=OS.unix=symlink;modify=")
        );
        let some = MlstFacts::from_opts("type;size");
        assert_eq!(
            mlsx_line(&e, MlsxRole::Entry, &some, "r"),
            "type=file;size=1234; a file\r\n"
        );
        assert_eq!(
            mlsx_line(&e, MlsxRole::Entry, &MlstFacts::from_opts(""), "r"),
            " a file\r\n"
        );
        e.unique = Some(Unique::Id(0xabcd));
        e.name = "evil\r\nname".into();
        assert!(
            mlsx_line(&e, MlsxRole::Entry, &all, "r;w")
                .ends_with("perm=rw;unique=mabcd; evil??name\r\n")
        );
    }

    #[test]
    fn parse_vsftpd_listing() {
        let lines = [
            "drwxr-xr-x    2 ftp      ftp          4096 Nov 28 03:08 pub",
            "-rw-r--r--    1 1000     1000      1048576 Jan 05  2024 big.bin",
            "lrwxrwxrwx    1 0        0               7 Mar 03  2021 bin -> usr/bin",
            "-rw-------    1 1000     1000            0 Nov 29 01:00 tomorrow",
            "-rw-------    1 1000     1000            0 Dec 25 10:00 last-christmas",
        ];
        let got: Vec<_> = lines.iter().map(|l| parse_list_line(l, NOW)).collect();
        assert_eq!(
            got[0],
            Some(parsed(
                "pub",
                EntryKind::Dir,
                Some(4096),
                Some(at(2026, 11, 28, 3, 8, 0))
            ))
        );
        assert_eq!(
            got[1],
            Some(parsed(
                "big.bin",
                EntryKind::File,
                Some(1_048_576),
                Some(at(2024, 1, 5, 0, 0, 0))
            ))
        );
        assert_eq!(
            got[2],
            Some(ParsedEntry {
                name: "bin".into(),
                kind: EntryKind::Symlink,
                size: Some(7),
                mtime: Some(at(2021, 3, 3, 0, 0, 0)),
                link_target: Some("usr/bin".into()),
            })
        );
        assert_eq!(
            got[3].as_ref().and_then(|e| e.mtime),
            Some(at(2026, 11, 29, 1, 0, 0))
        );
        assert_eq!(
            got[4].as_ref().and_then(|e| e.mtime),
            Some(at(2025, 12, 25, 10, 0, 0))
        );
    }

    #[test]
    fn parse_proftpd_and_others() {
        let e = parse_list_line(
            "-rw-r--r--   1 ftp      ftp          1234 Nov 28 03:08 README\r\n",
            NOW,
        );
        assert_eq!(
            e,
            Some(parsed(
                "README",
                EntryKind::File,
                Some(1234),
                Some(at(2026, 11, 28, 3, 8, 0))
            ))
        );
        // pure-ftpd's wider columns.
        let e = parse_list_line(
            "drwxr-xr-x    2 1000       1000             4096 Nov 28 03:08 .",
            NOW,
        );
        assert_eq!(
            e.map(|e| (e.name, e.kind)),
            Some((".".into(), EntryKind::Dir))
        );
        // No group column (8 fields).
        let e = parse_list_line("-rw-r--r--   1 owner      1234 Nov 28 03:08 file", NOW);
        assert_eq!(
            e.map(|e| (e.name, e.size)),
            Some(("file".into(), Some(1234)))
        );
        // ACL and macOS xattr markers; names with spaces, leading space, arrows in files.
        let e = parse_list_line("-rw-r--r--+  1 user group 12 Nov 28 03:08 acl file", NOW);
        assert_eq!(e.map(|e| e.name), Some("acl file".into()));
        let e = parse_list_line("-rw-r--r--@  1 user  staff  12 Nov 28 03:08 x", NOW);
        assert_eq!(e.map(|e| e.name), Some("x".into()));
        let e = parse_list_line("-rw-r--r-- 1 ftp ftp 12 Nov 28 03:08  lead", NOW);
        assert_eq!(e.map(|e| e.name), Some(" lead".into()));
        let e = parse_list_line("-rw-r--r-- 1 ftp ftp 12 Nov 28 03:08 a -> b", NOW);
        assert_eq!(
            e.map(|e| (e.name, e.link_target)),
            Some(("a -> b".into(), None))
        );
        // Owner named like a month does not confuse the date search.
        let e = parse_list_line("-rw-r--r-- 1 jan may 12 Nov 28 2020 Dec 1 2020 x", NOW);
        assert_eq!(
            e.map(|e| (e.name, e.mtime)),
            Some(("Dec 1 2020 x".into(), Some(at(2020, 11, 28, 0, 0, 0))))
        );
        // Devices: `major, minor` instead of a size.
        let e = parse_list_line(
            "crw-rw-rw-   1 root     root       1,   3 Nov 28 03:08 null",
            NOW,
        );
        assert_eq!(
            e,
            Some(parsed(
                "null",
                EntryKind::Other,
                None,
                Some(at(2026, 11, 28, 3, 8, 0))
            ))
        );
        let e = parse_list_line(
            "brw-rw----   1 root     disk       8,0 Nov 28 03:08 sda",
            NOW,
        );
        assert_eq!(e.map(|e| (e.kind, e.size)), Some((EntryKind::Other, None)));
        let e = parse_list_line(
            "prw-r--r--   1 root     root          0 Nov 28 03:08 fifo",
            NOW,
        );
        assert_eq!(
            e.map(|e| (e.kind, e.size)),
            Some((EntryKind::Other, Some(0)))
        );
        // Feb 29 without a year goes back to a leap year.
        let e = parse_list_line("-rw-r--r-- 1 a b 1 Feb 29 12:00 leap", NOW);
        assert_eq!(e.and_then(|e| e.mtime), Some(at(2024, 2, 29, 12, 0, 0)));
        // Year rollover: late on Dec 31, a Jan 1 entry from a server ahead in time is next year.
        let eve = at(2026, 12, 31, 23, 0, 0);
        let e = parse_list_line("-rw-r--r-- 1 a b 1 Jan  1 05:00 new", eve);
        assert_eq!(e.and_then(|e| e.mtime), Some(at(2027, 1, 1, 5, 0, 0)));
    }

    #[test]
    fn parse_iis_listing() {
        let e = parse_list_line("11-28-26  03:08AM       <DIR>          name", NOW);
        assert_eq!(
            e,
            Some(parsed(
                "name",
                EntryKind::Dir,
                None,
                Some(at(2026, 11, 28, 3, 8, 0))
            ))
        );
        let e = parse_list_line("11-28-2026  03:08PM             1234 my file.txt\r\n", NOW);
        assert_eq!(
            e,
            Some(parsed(
                "my file.txt",
                EntryKind::File,
                Some(1234),
                Some(at(2026, 11, 28, 15, 8, 0))
            ))
        );
        let e = parse_list_line("01-01-99  12:00AM                1 old", NOW);
        assert_eq!(e.and_then(|e| e.mtime), Some(at(1999, 1, 1, 0, 0, 0)));
        let e = parse_list_line("01-01-99  12:30PM                1 noon", NOW);
        assert_eq!(e.and_then(|e| e.mtime), Some(at(1999, 1, 1, 12, 30, 0)));
        let e = parse_list_line("11-28-26  15:08       <dir>          x", NOW);
        assert_eq!(
            e.map(|e| (e.kind, e.mtime)),
            Some((EntryKind::Dir, Some(at(2026, 11, 28, 15, 8, 0))))
        );
        let e = parse_list_line("11-28-26  03:08PM       1,234,567 big", NOW);
        assert_eq!(e.and_then(|e| e.size), Some(1_234_567));
        for bad in [
            "13-28-26  03:08AM  <DIR>  x",
            "11-31-26  03:08AM  <DIR>  x",
            "11-28-26  13:08PM  <DIR>  x",
            "11-28-26  00:08AM  <DIR>  x",
            "11-28-26  03:08AM  <DIR>",
            "11-28-26  03:08AM  12a  x",
            "11-28-026  03:08AM  1  x",
            "11-28  03:08AM  1  x",
        ] {
            assert_eq!(parse_list_line(bad, NOW), None, "{bad:?}");
        }
    }

    #[test]
    fn parse_list_rejects() {
        for bad in [
            "",
            "total 12",
            "total 0\r\n",
            "hello world",
            "-rw-r--r-- 1 ftp ftp 12 Nov 28 03:08",
            "-rw-r--r-- 1 ftp ftp 12 Nox 28 03:08 x",
            "-rw-r--r-- 1 ftp ftp 12 Nov 32 03:08 x",
            "-rw-r--r-- 1 ftp ftp 12 Nov 28 25:08 x",
            "-rw-r--r-- 1 ftp ftp -12 Nov 28 03:08 x",
            "-rw-r--r-- 1 ftp ftp 12 Nov 28 99999 x",
            "-rw-r--r-- 1 ftp ftp 12 Nov 31 2020 x",
            "xrw-r--r-- 1 ftp ftp 12 Nov 28 03:08 x",
            "-rw-r--r 1 ftp ftp 12 Nov 28 03:08 x",
            "-rw-r--r--X 1 ftp ftp 12 Nov 28 03:08 x",
            "-rwxrwxrwx",
            "-é-r--r--é 1 ftp ftp 12 Nov 28 03:08 x",
        ] {
            assert_eq!(parse_list_line(bad, NOW), None, "{bad:?}");
        }
    }

    #[test]
    fn parse_mlsx() {
        let e = parse_mlsx_line(
            "type=file;size=1234;modify=20261128031103;perm=adfrw;unique=8a; a file\r\n",
        );
        assert_eq!(
            e,
            Some(parsed("a file", EntryKind::File, Some(1234), Some(NOW)))
        );
        let e = parse_mlsx_line("Type=DIR;Modify=20261128031103; sub");
        assert_eq!(e, Some(parsed("sub", EntryKind::Dir, None, Some(NOW))));
        let e = parse_mlsx_line("type=cdir;perm=el; /pub");
        assert_eq!(
            e.map(|e| (e.name, e.kind)),
            Some(("/pub".into(), EntryKind::Dir))
        );
        let e = parse_mlsx_line("type=pdir; ..");
        assert_eq!(e.map(|e| e.kind), Some(EntryKind::Dir));
        // MLST over the control connection has a leading space.
        let e = parse_mlsx_line(" type=file;size=1; /dir/f");
        assert_eq!(
            e.map(|e| (e.name, e.size)),
            Some(("/dir/f".into(), Some(1)))
        );
        // All facts off: just ` name`; a leading-space name survives.
        assert_eq!(
            parse_mlsx_line(" lone"),
            Some(parsed("lone", EntryKind::Other, None, None))
        );
        assert_eq!(
            parse_mlsx_line("  spaced"),
            Some(parsed(" spaced", EntryKind::Other, None, None))
        );
        let e = parse_mlsx_line("type=OS.unix=symlink;size=3; l");
        assert_eq!(e.map(|e| e.kind), Some(EntryKind::Symlink));
        let e = parse_mlsx_line("type=OS.unix=slink:/target/x;modify=20261128031103; l");
        assert_eq!(
            e.map(|e| (e.kind, e.link_target)),
            Some((EntryKind::Symlink, Some("/target/x".into())))
        );
        let e = parse_mlsx_line("type=OS.unix=chr-1/3; null");
        assert_eq!(e.map(|e| e.kind), Some(EntryKind::Other));
        // Name containing "; " and '=' is kept whole.
        let e = parse_mlsx_line("type=file; a; b=c");
        assert_eq!(e.map(|e| e.name), Some("a; b=c".into()));
        // Bad fact values are dropped, not fatal.
        let e = parse_mlsx_line("type=file;size=-1;modify=bogus; f");
        assert_eq!(e, Some(parsed("f", EntryKind::File, None, None)));
        for bad in [
            "",
            "type=file;",
            "type=file; ",
            "nofacts",
            "garbage here",
            " ",
        ] {
            assert_eq!(parse_mlsx_line(bad), None, "{bad:?}");
        }
    }

    fn name() -> impl Strategy<Value = String> {
        "[^\r\n\t ][^\r\n]{0,20}".prop_filter("no symlink arrow", |n| !n.contains(" -> "))
    }

    fn kind() -> impl Strategy<Value = EntryKind> {
        prop_oneof![
            Just(EntryKind::File),
            Just(EntryKind::Dir),
            Just(EntryKind::Symlink)
        ]
    }

    proptest! {
        #[test]
        fn civil_round_trip(days in -100_000_000i64..100_000_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert!((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m));
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }

        #[test]
        fn mdtm_round_trip(secs in MDTM_MIN..=MDTM_MAX) {
            let s = format_mdtm(secs);
            prop_assert_eq!(s.len(), 14);
            prop_assert_eq!(parse_mdtm(&s), Some(secs));
        }

        #[test]
        fn list_round_trip(
            name in name(),
            kind in kind(),
            size in any::<u64>(),
            mtime in -2_000_000_000i64..4_000_000_000,
            now in -2_000_000_000i64..4_000_000_000,
            mode in 0u32..0o10000,
            nlink in any::<u64>(),
        ) {
            let e = Entry { name: name.clone(), kind, size, mtime, mode, nlink, unique: None };
            let line = list_line(&e, now);
            let p = parse_list_line(&line, now);
            prop_assert!(p.is_some(), "{:?}", line);
            let p = p.unwrap_or_else(|| parsed("", EntryKind::Other, None, None));
            prop_assert_eq!(&p.name, &name);
            prop_assert_eq!(p.kind, kind);
            prop_assert_eq!(p.size, Some(size));
            let recent = mtime <= now + DAY && now - mtime < RECENT;
            let want = if recent { mtime - mtime.rem_euclid(60) } else { mtime - mtime.rem_euclid(DAY) };
            prop_assert_eq!(p.mtime, Some(want), "{:?}", line);
        }

        #[test]
        fn mlsx_round_trip(name in name(), kind in kind(), size in any::<u64>(), mtime in MDTM_MIN..=MDTM_MAX) {
            let e = Entry { name: name.clone(), kind, size, mtime, mode: 0o644, nlink: 1, unique: Some(Unique::Id(1)) };
            let line = mlsx_line(&e, MlsxRole::Entry, &MlstFacts::default(), "r");
            let p = parse_mlsx_line(&line);
            prop_assert_eq!(p, Some(ParsedEntry {
                name,
                kind,
                size: (kind == EntryKind::File).then_some(size),
                mtime: Some(mtime),
                link_target: None,
            }));
        }

        #[test]
        fn integer_helpers_match_format_any(v in any::<u64>(), width in 0usize..24) {
            check_integer_helpers(v);
            let s = v as i64;
            prop_assert_eq!(
                pushed(|o| push_i64_padded_right(o, s, width)),
                format!("x{s:>width$}")
            );
        }

        #[test]
        fn parsers_never_panic(line in "\\PC{0,80}", now in any::<i64>()) {
            let _ = parse_list_line(&line, now);
            let _ = parse_mlsx_line(&line);
            let _ = parse_mdtm(&line);
        }

        #[test]
        fn parsers_never_panic_on_plausible(
            line in "[-dlcbp][rwxsStT-]{9}[+@]? {1,3}[0-9]{1,3} [a-z]{1,5} [a-z]{0,5} [0-9, ]{1,8} (Jan|Feb|Nov|Dec) [0-9]{1,2} ([0-9]{1,2}:[0-9]{2}|[0-9]{4}) {1,2}.{0,10}",
            now in any::<i64>(),
        ) {
            let _ = parse_list_line(&line, now);
        }
    }

    /// The `write!`-based formatters the byte-pushing ones replaced, kept as the reference
    /// they must match byte for byte.
    mod reference {
        use super::super::*;
        use std::io::Write;

        #[derive(Default)]
        struct ModeString {
            bytes: [u8; 10],
            len: usize,
        }

        impl ModeString {
            fn push(&mut self, c: char) {
                if self.len < self.bytes.len() {
                    self.bytes[self.len] = c as u8;
                    self.len += 1;
                }
            }
        }

        impl std::fmt::Display for ModeString {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("----------"))
            }
        }

        fn mode_string(kind: EntryKind, mode: u32) -> ModeString {
            let mut s = ModeString::default();
            s.push(match kind {
                EntryKind::Dir => 'd',
                EntryKind::Symlink => 'l',
                EntryKind::File | EntryKind::Other => '-',
            });
            let bit = |mask: u32, c: char| if mode & mask != 0 { c } else { '-' };
            let special = |exec: bool, special: bool, on: char| match (exec, special) {
                (true, true) => on,
                (false, true) => on.to_ascii_uppercase(),
                (true, false) => 'x',
                (false, false) => '-',
            };
            s.push(bit(0o400, 'r'));
            s.push(bit(0o200, 'w'));
            s.push(special(mode & 0o100 != 0, mode & 0o4000 != 0, 's'));
            s.push(bit(0o040, 'r'));
            s.push(bit(0o020, 'w'));
            s.push(special(mode & 0o010 != 0, mode & 0o2000 != 0, 's'));
            s.push(bit(0o004, 'r'));
            s.push(bit(0o002, 'w'));
            s.push(special(mode & 0o001 != 0, mode & 0o1000 != 0, 't'));
            s
        }

        fn push_name(out: &mut Vec<u8>, name: &str) {
            out.extend(
                name.bytes()
                    .map(|b| if b == b'\r' || b == b'\n' { b'?' } else { b }),
            );
        }

        pub(super) fn format_list_line(entry: &Entry, now: i64, out: &mut Vec<u8>) {
            let t = Civil::from_unix(entry.mtime);
            let month = MONTHS[(t.month as usize).saturating_sub(1) % 12];
            let recent =
                entry.mtime <= now.saturating_add(DAY) && now.saturating_sub(entry.mtime) < RECENT;
            let _ = write!(
                out,
                "{} {:>4} ftp      ftp      {:>13} {month} {:>2} ",
                mode_string(entry.kind, entry.mode),
                entry.nlink,
                entry.size,
                t.day
            );
            let _ = if recent {
                write!(out, "{:02}:{:02} ", t.hour, t.min)
            } else {
                write!(out, "{:>5} ", t.year)
            };
            push_name(out, &entry.name);
            out.extend_from_slice(b"\r\n");
        }

        pub(super) fn format_mlsx_line(
            entry: &Entry,
            role: MlsxRole,
            facts: &MlstFacts,
            perm: &str,
            out: &mut Vec<u8>,
        ) {
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
                let _ = write!(out, "size={};", entry.size);
            }
            if facts.modify {
                let t = Civil::from_unix(entry.mtime.clamp(MDTM_MIN, MDTM_MAX));
                let _ = write!(
                    out,
                    "modify={:04}{:02}{:02}{:02}{:02}{:02};",
                    t.year, t.month, t.day, t.hour, t.min, t.sec
                );
            }
            if facts.perm && !clean_empty(perm) {
                out.extend_from_slice(b"perm=");
                push_clean(out, perm);
                out.push(b';');
            }
            // The old `Option<String>` value, built the way the storage backends built it.
            let unique = entry.unique.map(|u| match u {
                Unique::DevIno { dev, ino } => format!("{dev:x}g{ino:x}"),
                Unique::Id(id) => format!("m{id:x}"),
            });
            if let (true, Some(unique)) = (facts.unique, unique.as_deref()) {
                if !clean_empty(unique) {
                    out.extend_from_slice(b"unique=");
                    push_clean(out, unique);
                    out.push(b';');
                }
            }
            out.push(b' ');
            push_name(out, &entry.name);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Interesting integers: small ones, every power of ten and its neighbours, the extremes.
    fn edge_u64s() -> Vec<u64> {
        let mut v = vec![
            0,
            1,
            2,
            9,
            10,
            11,
            99,
            100,
            101,
            255,
            256,
            4096,
            0xffff_ffff,
        ];
        let mut p = 1u64;
        while let Some(next) = p.checked_mul(10) {
            v.extend([p - 1, p, p + 1, next - 1]);
            p = next;
        }
        v.extend([p - 1, p, p + 1, u64::MAX / 2, u64::MAX - 1, u64::MAX]);
        for shift in 0..64 {
            v.extend([(1u64 << shift) - 1, 1 << shift]);
        }
        v
    }

    fn pushed(f: impl FnOnce(&mut Vec<u8>)) -> String {
        // A non-empty buffer, as in a listing: helpers must append, never overwrite.
        let mut out = b"x".to_vec();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn check_integer_helpers(v: u64) {
        assert_eq!(pushed(|o| push_u64(o, v)), format!("x{v}"));
        assert_eq!(pushed(|o| push_hex(o, v)), format!("x{v:x}"));
        for width in [0, 1, 2, 4, 5, 13, 20, 25] {
            assert_eq!(
                pushed(|o| push_u64_padded_right(o, v, width)),
                format!("x{v:>width$}")
            );
            for s in [v as i64, (v as i64).wrapping_neg()] {
                assert_eq!(
                    pushed(|o| push_i64_padded_right(o, s, width)),
                    format!("x{s:>width$}")
                );
            }
        }
        if let Ok(small) = u32::try_from(v) {
            assert_eq!(pushed(|o| push_2digits(o, small)), format!("x{small:02}"));
            assert_eq!(pushed(|o| push_4digits(o, small)), format!("x{small:04}"));
        }
    }

    #[test]
    fn integer_helpers_match_format() {
        for v in edge_u64s() {
            check_integer_helpers(v);
        }
        for v in 0..=10_100 {
            check_integer_helpers(v);
        }
        for s in [i64::MIN, i64::MIN + 1, i64::MAX, -1, -10, -99_999, -100_000] {
            for width in [0, 5, 20, 21, 25] {
                assert_eq!(
                    pushed(|o| push_i64_padded_right(o, s, width)),
                    format!("x{s:>width$}")
                );
            }
        }
        assert_eq!(
            pushed(|o| push_2digits(o, u32::MAX)),
            format!("x{:02}", u32::MAX)
        );
        assert_eq!(
            pushed(|o| push_4digits(o, u32::MAX)),
            format!("x{:04}", u32::MAX)
        );
    }

    #[test]
    fn mdtm_and_unique_bytes_match_format() {
        let mut times = vec![
            i64::MIN,
            MDTM_MIN - 1,
            MDTM_MIN,
            MDTM_MIN + 1,
            -62_135_596_800, // 0001-01-01
            -1,
            0,
            NOW,
            MDTM_MAX - 1,
            MDTM_MAX,
            MDTM_MAX + 1,
            i64::MAX,
        ];
        times.extend((0..2000).map(|i| MDTM_MIN + i * 158_000_123));
        for t in times {
            assert_eq!(pushed(|o| push_mdtm(o, t)), format!("x{}", format_mdtm(t)));
        }
        for a in edge_u64s() {
            for u in [Unique::Id(a), Unique::DevIno { dev: a, ino: !a }] {
                assert_eq!(pushed(|o| u.push_to(o)), format!("x{u}"));
            }
        }
        assert_eq!(
            Unique::DevIno {
                dev: 0x803,
                ino: 0x2a1
            }
            .to_string(),
            "803g2a1"
        );
        assert_eq!(Unique::Id(0x2a).to_string(), "m2a");
        assert_eq!(Unique::Id(0).to_string(), "m0");
    }

    /// splitmix64: a fixed, dependency-free stream of test values.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn pick<T: Copy>(&mut self, from: &[T]) -> T {
            from[(self.next() % from.len() as u64) as usize]
        }

        /// Mostly ordinary values, sometimes an edge case.
        fn u64_of(&mut self, edges: &[u64], ordinary: u64) -> u64 {
            match self.next() % 4 {
                0 => self.pick(edges),
                1 => self.next(),
                _ => self.next() % ordinary,
            }
        }
    }

    #[test]
    fn lines_match_reference_formatters() {
        let mut rng = Rng(0x5eed);
        let edges = edge_u64s();
        let kinds = [
            EntryKind::File,
            EntryKind::Dir,
            EntryKind::Symlink,
            EntryKind::Other,
        ];
        let modes = [
            0,
            0o644,
            0o755,
            0o777,
            0o4755,
            0o4644,
            0o2755,
            0o2644,
            0o1777,
            0o1776,
            0o7000,
            0o7777,
            0o6111,
            0xffff_ffff,
        ];
        let times = [
            i64::MIN,
            i64::MIN + 1,
            MDTM_MIN - 1,
            MDTM_MIN,
            -2_000_000_000,
            -DAY - 1,
            -1,
            0,
            NOW - RECENT,
            NOW - RECENT + 1,
            NOW,
            NOW + DAY,
            NOW + DAY + 1,
            MDTM_MAX,
            MDTM_MAX + 1,
            1 << 50,
            i64::MAX,
        ];
        let nows = [NOW, 0, -1, i64::MIN, i64::MAX, MDTM_MAX + 10 * DAY];
        let names = [
            "a",
            "entry-000123.dat",
            "with space",
            " lead",
            "evil\r\nname",
            "ü",
        ];
        let perms = ["adfrw", "", "el", "r;w", "; ="];
        let facts = [
            MlstFacts::default(),
            MlstFacts::from_opts(""),
            MlstFacts::from_opts("size;unique"),
            MlstFacts::from_opts("type;modify;perm"),
        ];
        let roles = [MlsxRole::Entry, MlsxRole::Cdir, MlsxRole::Pdir];
        for i in 0..600 {
            let entry = Entry {
                name: rng.pick(&names).into(),
                kind: rng.pick(&kinds),
                size: rng.u64_of(&edges, 100_000_000),
                mtime: match rng.next() % 3 {
                    0 => rng.pick(&times),
                    1 => rng.next() as i64,
                    _ => NOW - (rng.next() % (2 * RECENT as u64)) as i64 + DAY,
                },
                mode: if i % 2 == 0 {
                    rng.pick(&modes)
                } else {
                    (rng.next() % 0o10000) as u32
                },
                nlink: rng.u64_of(&edges, 100),
                unique: match rng.next() % 3 {
                    0 => None,
                    1 => Some(Unique::Id(rng.u64_of(&edges, 1000))),
                    _ => Some(Unique::DevIno {
                        dev: rng.u64_of(&edges, 0x1000),
                        ino: rng.u64_of(&edges, 1 << 40),
                    }),
                },
            };
            let now = if i % 3 == 0 { rng.pick(&nows) } else { NOW };
            let (mut got, mut want) = (b"prefix\r\n".to_vec(), b"prefix\r\n".to_vec());
            format_list_line(&entry, now, &mut got);
            reference::format_list_line(&entry, now, &mut want);
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "{entry:?} now={now}"
            );
            let (role, facts, perm) = (rng.pick(&roles), rng.pick(&facts), rng.pick(&perms));
            format_mlsx_line(&entry, role, &facts, perm, &mut got);
            reference::format_mlsx_line(&entry, role, &facts, perm, &mut want);
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "{entry:?} {role:?} {facts:?} {perm:?}"
            );
        }
    }
}
