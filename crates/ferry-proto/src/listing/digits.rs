//! Integer and time formatting for listing lines, written by hand for speed.

use super::*;

// Integers are written by hand rather than with `write!`: for a long listing, `core::fmt`
// (argument plumbing, `pad_integral`) cost more than everything else in a line. Each helper
// below gives exactly the bytes of the `format!` spec named in its comment (tests check).

/// `"00"` to `"99"`, so decimal digits are produced two per division, as `core` itself does.
pub(super) const DIGIT_PAIRS: [[u8; 2]; 100] = {
    let mut t = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    t
};

/// The decimal digits of `v`, written at the end of `buf` (20 bytes hold `u64::MAX`).
pub(super) fn decimal(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
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
pub(super) fn push_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(decimal(v, &mut [0; 20]));
}

/// `{:>width$}` of a `u64`: right aligned, space padded; wider values are written whole.
pub(super) fn push_u64_padded_right(out: &mut Vec<u8>, v: u64, width: usize) {
    let mut buf = [0; 20];
    let digits = decimal(v, &mut buf);
    out.resize(out.len() + width.saturating_sub(digits.len()), b' ');
    out.extend_from_slice(digits);
}

/// `{:>width$}` of an `i64`: as [`push_u64_padded_right`], the `-` counting in the width.
pub(super) fn push_i64_padded_right(out: &mut Vec<u8>, v: i64, width: usize) {
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
pub(super) fn push_2digits(out: &mut Vec<u8>, v: u32) {
    match DIGIT_PAIRS.get(v as usize) {
        Some(pair) => out.extend_from_slice(pair),
        None => push_u64(out, v.into()),
    }
}

/// `{:04}` of a `u32`: four digits for 0..=9999 (MDTM years), else all of them.
pub(super) fn push_4digits(out: &mut Vec<u8>, v: u32) {
    if v < 10_000 {
        push_2digits(out, v / 100);
        push_2digits(out, v % 100);
    } else {
        push_u64(out, v.into());
    }
}

/// `{:x}` of a `u64`: lowercase hex, no leading zeros (`0` for zero).
pub(super) fn push_hex(out: &mut Vec<u8>, v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Number of significant nibbles; at least one so zero is written as `0`.
    let nibbles = (64 - (v | 1).leading_zeros()).div_ceil(4);
    for i in (0..nibbles).rev() {
        out.push(HEX[(v >> (i * 4) & 0xf) as usize]);
    }
}

/// `YYYYMMDDHHMMSS` (UTC) as [`format_mdtm`] writes it, appended to `out` without allocating.
pub(super) fn push_mdtm(out: &mut Vec<u8>, unix_secs: i64) {
    let t = Civil::from_unix(unix_secs.clamp(MDTM_MIN, MDTM_MAX));
    // The clamp keeps the year within 0..=9999, so it converts and takes exactly 4 digits.
    push_4digits(out, u32::try_from(t.year).unwrap_or(0));
    push_2digits(out, t.month);
    push_2digits(out, t.day);
    push_2digits(out, t.hour);
    push_2digits(out, t.min);
    push_2digits(out, t.sec);
}
