//! The `longname` of a `NAME` entry: the `ls -l` line OpenSSH's client prints for `ls -l`.
//!
//! Its shape is OpenSSH's own (`-rw-r--r--    1 owner    group        1234 Jan  2 03:04 name`):
//! clients that parse it (some GUI clients do) expect exactly that. Times are shown in UTC;
//! the current time is passed in, never read here.

use bytes::Bytes;

use crate::Attrs;
use crate::attrs::file_type;

/// Half a year in seconds: older (or future) times show the year instead of the time of day.
const SIX_MONTHS: i64 = 365 * 24 * 60 * 60 / 2;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The ten-character mode string of `ls -l` (`drwxr-xr-x`, `-rwsr-x--T`, ...).
pub fn mode_string(mode: u32) -> String {
    let kind = match mode & file_type::MASK {
        file_type::DIRECTORY => 'd',
        file_type::SYMLINK => 'l',
        file_type::CHAR => 'c',
        file_type::BLOCK => 'b',
        file_type::FIFO => 'p',
        file_type::SOCKET => 's',
        file_type::REGULAR => '-',
        _ => '?',
    };
    let bit = |mask: u32, c: char| if mode & mask != 0 { c } else { '-' };
    // The execute column doubles as setuid/setgid/sticky: lower case when also executable.
    let special = |x: u32, s: u32, set: char| match (mode & x != 0, mode & s != 0) {
        (true, true) => set,
        (false, true) => set.to_ascii_uppercase(),
        (true, false) => 'x',
        (false, false) => '-',
    };
    [
        kind,
        bit(0o400, 'r'),
        bit(0o200, 'w'),
        special(0o100, 0o4000, 's'),
        bit(0o040, 'r'),
        bit(0o020, 'w'),
        special(0o010, 0o2000, 's'),
        bit(0o004, 'r'),
        bit(0o002, 'w'),
        special(0o001, 0o1000, 't'),
    ]
    .iter()
    .collect()
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
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

/// `Mon dd HH:MM` for recent times, `Mon dd  YYYY` otherwise (as `ls` and OpenSSH do).
fn date(mtime: i64, now: i64) -> String {
    let (year, month, day) = civil_from_days(mtime.div_euclid(86_400));
    let secs = mtime.rem_euclid(86_400);
    let mon = MONTHS[(month as usize).saturating_sub(1).min(11)];
    if now - SIX_MONTHS < mtime && mtime <= now {
        format!("{mon} {day:>2} {:02}:{:02}", secs / 3600, secs % 3600 / 60)
    } else {
        format!("{mon} {day:>2}  {year}")
    }
}

/// At most `width` characters of `s`, padded to `width` (OpenSSH's `%-8.8s`).
fn column(s: &str, width: usize) -> String {
    let cut: String = s.chars().take(width).collect();
    format!("{cut:<width$}")
}

/// The `ls -l` line for `name` with `attrs` (permissions, size and mtime; absent ones show as
/// `?---------`, 0 and the epoch), `nlink` links, owned by `owner`/`group`, relative to `now`
/// (Unix seconds). The name is copied as bytes: it need not be UTF-8.
pub fn longname(
    name: &[u8],
    attrs: &Attrs,
    nlink: u64,
    owner: &str,
    group: &str,
    now: i64,
) -> Bytes {
    let mode = mode_string(attrs.permissions.unwrap_or(0));
    let size = attrs.size.unwrap_or(0);
    let mtime = attrs.times.map_or(0, |t| i64::from(t.mtime));
    let head = format!(
        "{mode} {nlink:>4} {} {} {size:>8} {} ",
        column(owner, 8),
        column(group, 8),
        date(mtime, now)
    );
    let mut out = Vec::with_capacity(head.len() + name.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(name);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Times;

    #[test]
    fn modes() {
        assert_eq!(mode_string(file_type::DIRECTORY | 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(file_type::REGULAR | 0o644), "-rw-r--r--");
        assert_eq!(mode_string(file_type::SYMLINK | 0o777), "lrwxrwxrwx");
        assert_eq!(mode_string(file_type::REGULAR | 0o4750), "-rwsr-x---");
        assert_eq!(mode_string(file_type::DIRECTORY | 0o1776), "drwxrwxrwT");
        assert_eq!(mode_string(0o2644), "?rw-r-Sr--");
    }

    #[test]
    fn recent_and_old_dates() {
        // 2024-03-05 06:07:08 UTC.
        let t = 1_709_618_828;
        assert_eq!(date(t, t + 60), "Mar  5 06:07");
        assert_eq!(date(t, t + 400 * 86_400), "Mar  5  2024");
        // In the future: the year.
        assert_eq!(date(t, t - 60), "Mar  5  2024");
        assert_eq!(date(0, t), "Jan  1  1970");
    }

    #[test]
    fn line_shape_matches_openssh() {
        let attrs = Attrs {
            size: Some(1234),
            permissions: Some(file_type::REGULAR | 0o644),
            times: Some(Times {
                atime: 0,
                mtime: 1_709_618_828,
            }),
            ..Attrs::default()
        };
        let line = longname(
            b"f\xffile",
            &attrs,
            1,
            "averyverylongname",
            "g",
            1_709_618_900,
        );
        assert_eq!(
            &line[..],
            b"-rw-r--r--    1 averyver g            1234 Mar  5 06:07 f\xffile"
        );
    }
}
