//! Client-side listing parsers: Unix `ls -l`, DOS/IIS and MLSx lines.

use super::*;

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
pub(super) fn tokens(s: &str) -> Vec<(usize, &str)> {
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

pub(super) fn month_number(s: &str) -> Option<u32> {
    let i = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(s))?;
    u32::try_from(i + 1).ok()
}

/// `HH:MM` → (hour, minute).
pub(super) fn hh_mm(s: &str) -> Option<(u32, u32)> {
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

pub(super) fn parse_unix_line(line: &str, now: i64) -> Option<ParsedEntry> {
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
pub(super) fn guess_year(month: u32, day: u32, hour: u32, min: u32, now: i64) -> Option<i64> {
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
pub(super) fn parse_dos_line(line: &str) -> Option<ParsedEntry> {
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

/// `true` for an MLSx line whose `type` fact is `cdir` or `pdir`.
fn is_cdir_or_pdir(line: &str) -> bool {
    let facts = line.trim_start().split(' ').next().unwrap_or("");
    facts.split(';').any(|f| {
        f.split_once('=').is_some_and(|(k, v)| {
            k.eq_ignore_ascii_case("type")
                && (v.eq_ignore_ascii_case("cdir") || v.eq_ignore_ascii_case("pdir"))
        })
    })
}

/// Entries of an `MLSD` body, without `cdir`/`pdir`, `.` and `..`.
pub fn parse_mlsd(raw: &[u8]) -> Vec<ParsedEntry> {
    String::from_utf8_lossy(raw)
        .lines()
        .filter(|l| !l.trim().is_empty() && !is_cdir_or_pdir(l))
        .filter_map(parse_mlsx_line)
        .filter(|e| e.name != "." && e.name != ".." && !e.name.contains('/'))
        .collect()
}

/// Entries of a `LIST` body (Unix or DOS lines), without `total`, `.` and `..`.
pub fn parse_list(raw: &[u8], now: i64) -> Vec<ParsedEntry> {
    String::from_utf8_lossy(raw)
        .lines()
        .filter_map(|l| parse_list_line(l, now))
        .filter(|e| e.name != "." && e.name != "..")
        .collect()
}
