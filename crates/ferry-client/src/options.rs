//! Connection options: data-connection mode, timeouts, limits and the dialogue hook.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use ferry_proto::Reply;

use crate::tls::{TlsClientConfig, TlsMode};

/// How data connections are opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// `EPSV`, falling back to `PASV` (IPv4 only) when the server refuses `EPSV` or the
    /// connection to its port fails.
    #[default]
    Auto,
    /// `PASV` on IPv4; `EPSV` on IPv6, where `PASV` cannot carry the address.
    Passive,
    /// `EPSV` only.
    Epsv,
    /// The server connects to us: `PORT` on IPv4, `EPRT` on IPv6.
    Active,
}

impl Mode {
    /// The mode's name as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::Passive => "passive",
            Mode::Epsv => "epsv",
            Mode::Active => "active",
        }
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Mode::Auto),
            "passive" | "pasv" => Ok(Mode::Passive),
            "epsv" => Ok(Mode::Epsv),
            "active" | "port" => Ok(Mode::Active),
            _ => Err(format!(
                "unknown mode '{s}' (expected auto, passive, epsv or active)"
            )),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One step of the control dialogue, as a packet trace would show it.
#[derive(Debug, Clone, Copy)]
pub enum Dialogue<'a> {
    /// A command sent to the server; `PASS` and `ACCT` arguments are masked as `****`.
    Sent(&'a str),
    /// A reply received from the server.
    Received(&'a Reply),
    /// Something the client did besides commands: a TLS handshake, a reconnect.
    Note(&'a str),
}

/// Callback receiving every [`Dialogue`] step.
pub type Observer = Arc<dyn Fn(Dialogue<'_>) + Send + Sync>;

/// Options for [`Client::connect`](crate::Client::connect).
#[derive(Clone)]
pub struct ConnectOptions {
    /// How data connections are opened.
    pub mode: Mode,
    /// Address the server connects to in active mode; default: the control connection's
    /// local address.
    pub active_addr: Option<IpAddr>,
    /// Connect to the address in a `227` reply even when it is private, unspecified or a
    /// different loopback address than the control peer's (off: use the control peer's IP).
    pub trust_pasv_address: bool,
    /// Time to establish the control connection.
    pub connect_timeout: Duration,
    /// Time to establish a data connection (either direction).
    pub data_timeout: Duration,
    /// Time to wait for a reply on the control connection.
    pub reply_timeout: Duration,
    /// Time a data connection may stay silent during a transfer.
    pub idle_timeout: Duration,
    /// Longest reply line accepted, in bytes.
    pub max_reply_line: usize,
    /// Most lines accepted in one multi-line reply.
    pub max_reply_lines: usize,
    /// Receives every command and reply.
    pub observer: Option<Observer>,
    /// When the control connection uses TLS; data connections are protected (`PROT P`)
    /// whenever it does.
    pub tls: TlsMode,
    /// Whom to trust; `None`: the system's root certificates (built on first use).
    pub tls_config: Option<TlsClientConfig>,
    /// The name the server's certificate must be valid for (a DNS name or IP address);
    /// `None`: the IP address connected to.
    pub server_name: Option<String>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            mode: Mode::Auto,
            active_addr: None,
            trust_pasv_address: false,
            connect_timeout: Duration::from_secs(15),
            data_timeout: Duration::from_secs(15),
            reply_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_reply_line: 16 * 1024,
            max_reply_lines: 10_000,
            observer: None,
            tls: TlsMode::Off,
            tls_config: None,
            server_name: None,
        }
    }
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("mode", &self.mode)
            .field("active_addr", &self.active_addr)
            .field("trust_pasv_address", &self.trust_pasv_address)
            .field("connect_timeout", &self.connect_timeout)
            .field("data_timeout", &self.data_timeout)
            .field("reply_timeout", &self.reply_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_reply_line", &self.max_reply_line)
            .field("max_reply_lines", &self.max_reply_lines)
            .field("observer", &self.observer.as_ref().map(|_| "Fn"))
            .field("tls", &self.tls)
            .field("tls_config", &self.tls_config)
            .field("server_name", &self.server_name)
            .finish()
    }
}

/// The command as it may be shown: `PASS`/`ACCT` arguments replaced by `****`.
pub fn masked(line: &str) -> String {
    let verb = line.split(' ').next().unwrap_or("");
    if (verb.eq_ignore_ascii_case("PASS") || verb.eq_ignore_ascii_case("ACCT"))
        && line.len() > verb.len()
    {
        format!("{} ****", verb.to_ascii_uppercase())
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_secrets() {
        assert_eq!(masked("PASS hunter2"), "PASS ****");
        assert_eq!(masked("pass a b c"), "PASS ****");
        assert_eq!(masked("ACCT x"), "ACCT ****");
        assert_eq!(masked("PASSX y"), "PASSX y");
        assert_eq!(masked("USER bob"), "USER bob");
        assert_eq!(masked("PASS"), "PASS");
    }

    #[test]
    fn modes_parse() {
        assert_eq!("auto".parse(), Ok(Mode::Auto));
        assert_eq!("PASV".parse(), Ok(Mode::Passive));
        assert_eq!("epsv".parse(), Ok(Mode::Epsv));
        assert_eq!("active".parse(), Ok(Mode::Active));
        assert!("x".parse::<Mode>().is_err());
    }
}
