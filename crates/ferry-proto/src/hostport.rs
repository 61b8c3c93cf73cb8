//! Host-port codecs: RFC 959 `h1,h2,h3,h4,p1,p2` and RFC 2428 `|af|addr|port|`.
//!
//! Numbers are checked strictly: ASCII digits only (no sign, no hex), each byte 0..=255, ports
//! 1..=65535, and no arithmetic can overflow whatever the input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};

/// Malformed host-port argument (→ `501`), or an unsupported family (→ `522`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostPortError {
    #[error("malformed host-port: {0}")]
    Malformed(&'static str),
    /// EPRT with a network protocol other than 1 or 2.
    #[error("network protocol {0} not supported, use (1,2)")]
    UnsupportedFamily(u32),
}

/// A decimal of at most `max_digits` ASCII digits, or `None`.
fn small_decimal(s: &str, max_digits: usize) -> Option<u32> {
    if s.is_empty() || s.len() > max_digits || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.bytes().try_fold(0u32, |acc, d| {
        acc.checked_mul(10)?.checked_add(u32::from(d - b'0'))
    })
}

fn byte_field(s: &str) -> Result<u8, HostPortError> {
    small_decimal(s.trim_matches(' '), 3)
        .and_then(|n| u8::try_from(n).ok())
        .ok_or(HostPortError::Malformed("each number must be 0..=255"))
}

fn addr_from_bytes(b: [u8; 6]) -> Result<SocketAddrV4, HostPortError> {
    let port = u16::from_be_bytes([b[4], b[5]]);
    if port == 0 {
        return Err(HostPortError::Malformed("port 0"));
    }
    Ok(SocketAddrV4::new(
        Ipv4Addr::new(b[0], b[1], b[2], b[3]),
        port,
    ))
}

/// Parse `h1,h2,h3,h4,p1,p2` (PORT argument; also tolerant of spaces around numbers).
/// Port 0 is refused.
pub fn parse_port_arg(s: &str) -> Result<SocketAddrV4, HostPortError> {
    let mut bytes = [0u8; 6];
    let mut fields = s.trim().split(',');
    for slot in bytes.iter_mut() {
        let field = fields
            .next()
            .ok_or(HostPortError::Malformed("expected six numbers"))?;
        *slot = byte_field(field)?;
    }
    if fields.next().is_some() {
        return Err(HostPortError::Malformed("expected six numbers"));
    }
    addr_from_bytes(bytes)
}

/// Format `h1,h2,h3,h4,p1,p2`.
pub fn format_port_arg(addr: SocketAddrV4) -> String {
    let [a, b, c, d] = addr.ip().octets();
    let [p1, p2] = addr.port().to_be_bytes();
    format!("{a},{b},{c},{d},{p1},{p2}")
}

/// The full `227` text: `Entering Passive Mode (h1,h2,h3,h4,p1,p2).`
pub fn format_pasv_reply_text(addr: SocketAddrV4) -> String {
    format!("Entering Passive Mode ({}).", format_port_arg(addr))
}

/// Six comma-separated numbers starting at byte `start` of `s` (spaces allowed around commas).
fn six_numbers_at(s: &[u8], start: usize) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut i = start;
    for (n, slot) in out.iter_mut().enumerate() {
        if n > 0 {
            while s.get(i) == Some(&b' ') {
                i += 1;
            }
            if s.get(i) != Some(&b',') {
                return None;
            }
            i += 1;
            while s.get(i) == Some(&b' ') {
                i += 1;
            }
        }
        let digits_start = i;
        while s.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let field = std::str::from_utf8(&s[digits_start..i]).ok()?;
        *slot = u8::try_from(small_decimal(field, 3)?).ok()?;
    }
    Some(out)
}

/// Find and parse the `h1,...,p2` group in a `227` reply text (clients; servers vary the wording).
/// The first run of six comma-separated numbers wins, parenthesised or not.
pub fn parse_pasv_reply_text(text: &str) -> Result<SocketAddrV4, HostPortError> {
    let s = text.as_bytes();
    for start in 0..s.len() {
        let at_number_start =
            s[start].is_ascii_digit() && (start == 0 || !s[start - 1].is_ascii_digit());
        if at_number_start {
            if let Some(bytes) = six_numbers_at(s, start) {
                return addr_from_bytes(bytes);
            }
        }
    }
    Err(HostPortError::Malformed(
        "no h1,h2,h3,h4,p1,p2 group in 227 reply",
    ))
}

fn port_field(s: &str) -> Result<u16, HostPortError> {
    small_decimal(s, 5)
        .and_then(|n| u16::try_from(n).ok())
        .filter(|&p| p != 0)
        .ok_or(HostPortError::Malformed("port must be 1..=65535"))
}

/// Parse an EPRT argument `|1|132.235.1.2|6275|` or `|2|::1|5282|` (any delimiter char 33..=126).
/// Family 1 needs a dotted IPv4 literal, 2 an IPv6 literal without zone; others are
/// [`HostPortError::UnsupportedFamily`].
pub fn parse_eprt_arg(s: &str) -> Result<SocketAddr, HostPortError> {
    let s = s.trim();
    let delim = s
        .chars()
        .next()
        .ok_or(HostPortError::Malformed("empty EPRT argument"))?;
    if !('!'..='~').contains(&delim) {
        return Err(HostPortError::Malformed("bad delimiter"));
    }
    let body = &s[delim.len_utf8()..];
    let fields: Vec<&str> = body.split(delim).collect();
    let [af, addr, port, end] = fields.as_slice() else {
        return Err(HostPortError::Malformed("expected <d>af<d>addr<d>port<d>"));
    };
    if !end.is_empty() {
        return Err(HostPortError::Malformed("expected <d>af<d>addr<d>port<d>"));
    }
    let af = small_decimal(af, 10).ok_or(HostPortError::Malformed("bad network protocol"))?;
    let ip = match af {
        1 => IpAddr::V4(
            addr.parse::<Ipv4Addr>()
                .map_err(|_| HostPortError::Malformed("bad IPv4 address"))?,
        ),
        2 => IpAddr::V6(
            addr.parse::<Ipv6Addr>()
                .map_err(|_| HostPortError::Malformed("bad IPv6 address"))?,
        ),
        other => return Err(HostPortError::UnsupportedFamily(other)),
    };
    Ok(SocketAddr::new(ip, port_field(port)?))
}

/// Format an EPRT argument for `addr` (an IPv6 scope id is not sent).
pub fn format_eprt_arg(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("|1|{}|{}|", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("|2|{}|{}|", a.ip(), a.port()),
    }
}

/// The full `229` text: `Entering Extended Passive Mode (|||port|)`.
pub fn format_epsv_reply_text(port: u16) -> String {
    format!("Entering Extended Passive Mode (|||{port}|)")
}

/// Find and parse the `(|||port|)` group in a `229` reply text.
/// Any delimiter in 33..=126 other than a digit is accepted, as RFC 2428 allows; the closing
/// parenthesis is optional.
pub fn parse_epsv_reply_text(text: &str) -> Result<u16, HostPortError> {
    let s = text.as_bytes();
    for (open, _) in text.match_indices('(') {
        let rest = &s[open + 1..];
        let [d, d2, d3, tail @ ..] = rest else {
            continue;
        };
        if !(33..=126).contains(d) || d.is_ascii_digit() || d2 != d || d3 != d {
            continue;
        }
        let len = tail.iter().take_while(|b| b.is_ascii_digit()).count();
        if tail.get(len) != Some(d) {
            continue;
        }
        let Ok(digits) = std::str::from_utf8(&tail[..len]) else {
            continue;
        };
        return port_field(digits);
    }
    Err(HostPortError::Malformed("no (|||port|) group in 229 reply"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::SocketAddrV6;

    fn v6(ip: Ipv6Addr, port: u16) -> SocketAddr {
        SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0))
    }

    fn v4(a: [u8; 4], port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(a), port)
    }

    #[test]
    fn port_arg() {
        assert_eq!(
            parse_port_arg("127,0,0,1,4,2"),
            Ok(v4([127, 0, 0, 1], 1026))
        );
        assert_eq!(
            parse_port_arg(" 10, 0 ,0,1,0,21 "),
            Ok(v4([10, 0, 0, 1], 21))
        );
        assert_eq!(
            parse_port_arg("255,255,255,255,255,255"),
            Ok(v4([255; 4], 65535))
        );
        assert_eq!(parse_port_arg("010,0,0,1,0,21"), Ok(v4([10, 0, 0, 1], 21)));
        for bad in [
            "",
            "1,2,3,4,5",
            "1,2,3,4,5,6,7",
            "256,0,0,1,0,21",
            "1,2,3,4,5,-6",
            "+1,2,3,4,5,6",
            "1,2,3,4,5,0x6",
            "1,2,3,4,5,",
            "1,,3,4,5,6",
            "99999999999999999999,0,0,1,0,21",
            "0001,0,0,1,0,21",
            "1,2,3,4,0,0",
            "1.2.3.4,5,6",
            "١,2,3,4,5,6",
        ] {
            assert!(parse_port_arg(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            format_port_arg(v4([192, 168, 1, 2], 0x1234)),
            "192,168,1,2,18,52"
        );
    }

    #[test]
    fn pasv_reply_text() {
        let a = v4([127, 0, 0, 1], 1026);
        assert_eq!(
            parse_pasv_reply_text("Entering Passive Mode (127,0,0,1,4,2)."),
            Ok(a)
        );
        assert_eq!(
            parse_pasv_reply_text("227 Entering Passive Mode (127,0,0,1,4,2)"),
            Ok(a)
        );
        assert_eq!(parse_pasv_reply_text("227 =127,0,0,1,4,2"), Ok(a));
        assert_eq!(
            parse_pasv_reply_text("Entering Passive Mode 127,0,0,1,4,2"),
            Ok(a)
        );
        assert_eq!(parse_pasv_reply_text("Passive (127, 0, 0, 1, 4, 2)"), Ok(a));
        // A number group that fails doesn't hide a later good one.
        assert_eq!(parse_pasv_reply_text("v1,2 mode (127,0,0,1,4,2)"), Ok(a));
        assert_eq!(
            parse_pasv_reply_text("1000,0,0,1,4,2 (127,0,0,1,4,2)"),
            Ok(a)
        );
        assert!(parse_pasv_reply_text("Entering Passive Mode").is_err());
        assert!(parse_pasv_reply_text("(300,0,0,1,4,2)").is_err());
        assert!(parse_pasv_reply_text("(1,2,3,4,5)").is_err());
        assert!(parse_pasv_reply_text("(1,2,3,4,0,0)").is_err());
        assert!(parse_pasv_reply_text("").is_err());
        assert_eq!(
            format_pasv_reply_text(a),
            "Entering Passive Mode (127,0,0,1,4,2)."
        );
    }

    #[test]
    fn eprt_arg() {
        assert_eq!(
            parse_eprt_arg("|1|132.235.1.2|6275|"),
            Ok(SocketAddr::V4(v4([132, 235, 1, 2], 6275)))
        );
        assert_eq!(
            parse_eprt_arg("|2|::1|5282|"),
            Ok(v6(Ipv6Addr::LOCALHOST, 5282))
        );
        assert_eq!(
            parse_eprt_arg("!2!1080::8:800:200C:417A!5282!"),
            Ok(v6("1080::8:800:200C:417A".parse().unwrap(), 5282))
        );
        assert_eq!(
            parse_eprt_arg(" |1|1.2.3.4|65535| "),
            Ok(SocketAddr::V4(v4([1, 2, 3, 4], 65535)))
        );
        assert_eq!(
            parse_eprt_arg("|3|x|1|"),
            Err(HostPortError::UnsupportedFamily(3))
        );
        assert_eq!(
            parse_eprt_arg("|0|1.2.3.4|1|"),
            Err(HostPortError::UnsupportedFamily(0))
        );
        for bad in [
            "",
            "|",
            "||||",
            "|1|1.2.3.4|0|",
            "|1|1.2.3.4|65536|",
            "|1|1.2.3.4|+21|",
            "|1|1.2.3.4|21",
            "|1|1.2.3.4|21|x",
            "|1|::1|21|",
            "|2|1.2.3.4|21|",
            "|2|fe80::1%eth0|21|",
            "|1|1.2.3|21|",
            "|1|01.2.3.4|21|",
            "|1|1.2.3.4|21|extra|",
            "|x|1.2.3.4|21|",
            "|99999999999|1.2.3.4|21|",
            " 1 1.2.3.4 21 ",
            "é1é1.2.3.4é21é",
        ] {
            assert!(
                matches!(parse_eprt_arg(bad), Err(HostPortError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            format_eprt_arg(SocketAddr::V4(v4([1, 2, 3, 4], 21))),
            "|1|1.2.3.4|21|"
        );
        assert_eq!(format_eprt_arg(v6(Ipv6Addr::LOCALHOST, 21)), "|2|::1|21|");
    }

    #[test]
    fn epsv_reply_text() {
        assert_eq!(
            parse_epsv_reply_text("Entering Extended Passive Mode (|||6446|)"),
            Ok(6446)
        );
        assert_eq!(parse_epsv_reply_text("229 Extended (!!!65535!)"), Ok(65535));
        assert_eq!(parse_epsv_reply_text("EPSV (maybe) ok (|||21|"), Ok(21));
        for bad in [
            "",
            "(|||0|)",
            "(|||65536|)",
            "(|||abc|)",
            "(||6446|)",
            "(|!|6446|)",
            "(11164461)",
            "(   6446 )",
            "(|||6446)",
            "(|||",
        ] {
            assert!(parse_epsv_reply_text(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            format_epsv_reply_text(6446),
            "Entering Extended Passive Mode (|||6446|)"
        );
    }

    proptest! {
        #[test]
        fn port_round_trip(ip in any::<[u8; 4]>(), port in 1u16..) {
            let a = v4(ip, port);
            prop_assert_eq!(parse_port_arg(&format_port_arg(a)), Ok(a));
            prop_assert_eq!(parse_pasv_reply_text(&format_pasv_reply_text(a)), Ok(a));
        }

        #[test]
        fn eprt_round_trip(ip4 in any::<[u8; 4]>(), ip6 in any::<[u8; 16]>(), port in 1u16..) {
            let a = SocketAddr::V4(v4(ip4, port));
            prop_assert_eq!(parse_eprt_arg(&format_eprt_arg(a)), Ok(a));
            let b = v6(Ipv6Addr::from(ip6), port);
            prop_assert_eq!(parse_eprt_arg(&format_eprt_arg(b)), Ok(b));
        }

        #[test]
        fn epsv_round_trip(port in 1u16..) {
            prop_assert_eq!(parse_epsv_reply_text(&format_epsv_reply_text(port)), Ok(port));
        }

        #[test]
        fn never_panics(s in "\\PC{0,40}|[0-9,| ()]{0,40}") {
            let _ = parse_port_arg(&s);
            let _ = parse_pasv_reply_text(&s);
            let _ = parse_eprt_arg(&s);
            let _ = parse_epsv_reply_text(&s);
        }
    }
}
