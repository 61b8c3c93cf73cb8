//! Host-port codecs: RFC 959 `h1,h2,h3,h4,p1,p2` and RFC 2428 `|af|addr|port|`.

use std::net::{SocketAddr, SocketAddrV4};

/// Malformed host-port argument (→ `501`), or an unsupported family (→ `522`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostPortError {
    #[error("malformed host-port: {0}")]
    Malformed(&'static str),
    /// EPRT with a network protocol other than 1 or 2.
    #[error("network protocol {0} not supported, use (1,2)")]
    UnsupportedFamily(u32),
}

/// Parse `h1,h2,h3,h4,p1,p2` (PORT argument; also tolerant of spaces around numbers).
pub fn parse_port_arg(s: &str) -> Result<SocketAddrV4, HostPortError> {
    let _ = s;
    todo!()
}

/// Format `h1,h2,h3,h4,p1,p2`.
pub fn format_port_arg(addr: SocketAddrV4) -> String {
    let _ = addr;
    todo!()
}

/// The full `227` text: `Entering Passive Mode (h1,h2,h3,h4,p1,p2).`
pub fn format_pasv_reply_text(addr: SocketAddrV4) -> String {
    format!("Entering Passive Mode ({}).", format_port_arg(addr))
}

/// Find and parse the `h1,...,p2` group in a `227` reply text (clients; servers vary the wording).
pub fn parse_pasv_reply_text(text: &str) -> Result<SocketAddrV4, HostPortError> {
    let _ = text;
    todo!()
}

/// Parse an EPRT argument `|1|132.235.1.2|6275|` or `|2|::1|5282|` (any delimiter char 33..=126).
pub fn parse_eprt_arg(s: &str) -> Result<SocketAddr, HostPortError> {
    let _ = s;
    todo!()
}

/// Format an EPRT argument for `addr`.
pub fn format_eprt_arg(addr: SocketAddr) -> String {
    let _ = addr;
    todo!()
}

/// The full `229` text: `Entering Extended Passive Mode (|||port|)`.
pub fn format_epsv_reply_text(port: u16) -> String {
    format!("Entering Extended Passive Mode (|||{port}|)")
}

/// Find and parse the `(|||port|)` group in a `229` reply text.
pub fn parse_epsv_reply_text(text: &str) -> Result<u16, HostPortError> {
    let _ = text;
    todo!()
}
