//! Server settings, already validated. The binary maps `ferry.toml` and CLI flags onto this.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::tls::TlsConfig;

/// Whether FTP over TLS is refused, allowed or demanded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsPolicy {
    /// No TLS: `AUTH TLS` is refused.
    Off,
    /// TLS allowed, plain FTP too.
    #[default]
    Optional,
    /// Logins and data connections only over TLS.
    Required,
}

/// How the server answers `PASV` when it sits behind NAT.
#[derive(Debug, Clone, Default)]
pub struct Masquerade {
    /// Address announced in `227` replies instead of the control connection's local address.
    pub address: Option<Ipv4Addr>,
    /// Per-client-network overrides, checked in order: clients in `network` get `address`.
    pub overrides: Vec<(IpNet, Ipv4Addr)>,
}

impl Masquerade {
    /// The address to announce to a client at `peer`, or `None` to use the local address.
    pub fn address_for(&self, peer: IpAddr) -> Option<Ipv4Addr> {
        let peer = peer.to_canonical();
        self.overrides
            .iter()
            .find(|(net, _)| net.contains(&peer))
            .map(|(_, a)| *a)
            .or(self.address)
    }
}

/// Everything the FTP server needs to know besides users and files.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Addresses to listen on (`[::]` is dual-stack where the OS allows).
    pub listen: Vec<SocketAddr>,
    /// Text of the `220` greeting.
    pub greeting: String,
    /// Passive ports to use, inclusive; `None` lets the OS pick an ephemeral port.
    pub passive_ports: Option<(u16, u16)>,
    /// NAT settings for `PASV`.
    pub masquerade: Masquerade,
    /// Allow active mode (`PORT`/`EPRT`).
    pub active_enabled: bool,
    /// Allow passive mode (`PASV`/`EPSV`).
    pub passive_enabled: bool,
    /// Connect active data connections from control port − 1 (port 20 when serving on 21).
    pub active_source_port_minus_one: bool,
    /// Accept passive data connections from any IP, not only the control connection's.
    pub allow_foreign_passive_peer: bool,
    /// Allow `PORT`/`EPRT` to an IP other than the client's (FTP bounce, RFC 2577).
    pub allow_active_foreign_address: bool,
    /// Allow `PORT`/`EPRT` to ports below 1024.
    pub allow_active_privileged_port: bool,
    /// Time to wait for a data connection.
    pub data_connect_timeout: Duration,
    /// Time a transfer may go without moving a byte before it is ended with `426` (a client
    /// that stops reading or sending keeps no connection, buffer or port for longer).
    pub data_stall_timeout: Duration,
    /// Plain binary passive downloads up to this many bytes whose data connection is waiting
    /// already are sent at once, with `150` and `226` in one segment (0: never).
    pub quick_download_max: u64,
    /// Time allowed between connecting and a successful login.
    pub login_timeout: Duration,
    /// Time a logged-in session may stay silent (no command, no transfer).
    pub idle_timeout: Duration,
    /// Longest accepted control line, in bytes.
    pub max_line: usize,
    /// Most concurrent control connections (0 = unlimited). The process's open-file limit
    /// must carry them: see [`ServerConfig::fit_open_file_limit`], which `ferry serve` applies.
    pub max_sessions: usize,
    /// Most concurrent control connections from one IP (0 = unlimited). On by default, so that
    /// one address cannot take every session (and descriptor) before logging in.
    pub max_sessions_per_ip: usize,
    /// Most sessions one user may hold at once, every protocol together, unless the user's
    /// own `max_sessions` says otherwise (0 = unlimited).
    pub max_sessions_per_user: usize,
    /// Upload bytes per second of the whole server, every protocol (`None` = unlimited).
    pub upload_rate: Option<u64>,
    /// Download bytes per second of the whole server, every protocol (`None` = unlimited).
    pub download_rate: Option<u64>,
    /// Failed `PASS` attempts before the connection is closed.
    pub max_login_attempts: u32,
    /// Pause before answering a failed login (slows guessing).
    pub login_failure_delay: Duration,
    /// Failed logins from one address, within `failed_login_window`, after which that address
    /// may not try again until the window has passed (0 = no limit).
    pub max_failed_logins_per_ip: u32,
    /// Failed logins for one user name (from any address), within `failed_login_window`,
    /// after which guesses for it from addresses that have failed are slowed (never refused:
    /// see `ferry_auth::LoginThrottle`; 0 = no slowdown).
    pub max_failed_logins_per_user: u32,
    /// See `max_failed_logins_per_ip`.
    pub failed_login_window: Duration,
    /// FTP over TLS; `None` means no TLS at all.
    pub tls: Option<TlsConfig>,
    /// Listeners for implicit FTPS (TLS from the first byte, classically port 990).
    pub implicit_tls_listen: Vec<SocketAddr>,
    /// Per-user TLS policies that differ from the server's (`tls` of `TlsConfig`).
    pub user_tls: HashMap<String, TlsPolicy>,
    /// Anonymous logins (`anonymous` or `ftp`, any password), read-only, served this
    /// directory; `None`: refused.
    pub anonymous_home: Option<PathBuf>,
    /// PROXY protocol: when enabled, every control connection (plain and implicit TLS) must
    /// come from one of these balancers with a header naming the client, who is then the
    /// session's peer for everything; passive data connections from them carry one too.
    pub proxy: ferry_core::ProxyTrust,
    /// Anonymous logins may only upload new files (a drop folder) instead of reading.
    pub anonymous_upload_only: bool,
}

/// Descriptors the process needs besides its sessions' own: standard streams, the runtime's
/// (epoll, wakers), listeners, inotify, the shared root directories, log files.
pub const RESERVED_DESCRIPTORS: u64 = 64;

/// Descriptors one session may hold at once: its control connection, a passive listener (kept
/// open in the port pool between transfers), the data connection and the file it transfers.
pub const DESCRIPTORS_PER_SESSION: u64 = 4;

impl ServerConfig {
    /// The most sessions an open-file limit of `nofile` carries with every session holding
    /// [`DESCRIPTORS_PER_SESSION`] at once: never fewer than one.
    pub fn sessions_within(nofile: u64) -> usize {
        let sessions = nofile.saturating_sub(RESERVED_DESCRIPTORS) / DESCRIPTORS_PER_SESSION;
        usize::try_from(sessions).unwrap_or(usize::MAX).max(1)
    }

    /// Lower `max_sessions` (0 counting as unlimited) to what an open-file limit of `nofile`
    /// carries, so that control connections alone never use up the descriptors that data
    /// connections and files need. Returns the value it replaced when it lowered it.
    pub fn fit_open_file_limit(&mut self, nofile: u64) -> Option<usize> {
        let most = Self::sessions_within(nofile);
        if self.max_sessions == 0 || self.max_sessions > most {
            Some(std::mem::replace(&mut self.max_sessions, most))
        } else {
            None
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 2121))],
            greeting: "Ferry FTP server ready.".to_string(),
            passive_ports: None,
            masquerade: Masquerade::default(),
            active_enabled: true,
            passive_enabled: true,
            active_source_port_minus_one: false,
            allow_foreign_passive_peer: false,
            allow_active_foreign_address: false,
            allow_active_privileged_port: false,
            data_connect_timeout: Duration::from_secs(30),
            data_stall_timeout: Duration::from_secs(300),
            quick_download_max: 256 * 1024,
            login_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(600),
            max_line: 8192,
            max_sessions: 20_000,
            max_sessions_per_ip: 50,
            max_sessions_per_user: 0,
            upload_rate: None,
            download_rate: None,
            max_login_attempts: 3,
            login_failure_delay: Duration::from_secs(1),
            max_failed_logins_per_ip: 20,
            max_failed_logins_per_user: 0,
            failed_login_window: Duration::from_secs(300),
            tls: None,
            implicit_tls_listen: Vec::new(),
            user_tls: HashMap::new(),
            anonymous_home: None,
            proxy: ferry_core::ProxyTrust::default(),
            anonymous_upload_only: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_fit_the_open_file_limit() {
        let mut c = ServerConfig::default();
        // A typical systemd hard limit leaves the default alone.
        assert_eq!(c.fit_open_file_limit(1 << 20), None);
        assert_eq!(c.max_sessions, 20_000);
        // 20,000 descriptors carry (20,000 - 64) / 4 sessions.
        assert_eq!(c.fit_open_file_limit(20_000), Some(20_000));
        assert_eq!(c.max_sessions, 4_984);
        c.max_sessions = 0;
        assert_eq!(c.fit_open_file_limit(1_024), Some(0));
        assert_eq!(c.max_sessions, 240);
        assert_eq!(ServerConfig::sessions_within(10), 1);
    }
}
