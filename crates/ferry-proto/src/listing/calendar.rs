//! Calendar arithmetic for listing times: civil dates from Unix seconds and back, `MDTM`.

pub(super) const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

pub(super) const DAY: i64 = 86_400;
/// `ls -l` shows the time of day for entries younger than this, the year otherwise.
pub(super) const RECENT: i64 = 180 * DAY;

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

pub(super) fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

pub(super) fn days_in_month(year: i64, month: u32) -> u32 {
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
pub(super) struct Civil {
    pub(super) year: i64,
    pub(super) month: u32,
    pub(super) day: u32,
    pub(super) hour: u32,
    pub(super) min: u32,
    pub(super) sec: u32,
}

impl Civil {
    pub(super) fn from_unix(secs: i64) -> Civil {
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
    pub(super) fn to_unix(self) -> Option<i64> {
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

/// Earliest time [`format_mdtm`] can show: 0000-01-01 00:00:00.
pub(super) const MDTM_MIN: i64 = -62_167_219_200;
/// Latest time [`format_mdtm`] can show: 9999-12-31 23:59:59.
pub(super) const MDTM_MAX: i64 = 253_402_300_799;

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
pub(super) fn digits(s: &str) -> Option<u32> {
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
