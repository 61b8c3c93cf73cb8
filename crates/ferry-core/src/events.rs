//! The names of the security events every protocol logs: the value of the `event` field of
//! their tracing events, stable so that whoever reads the log (a SIEM reading
//! `--log-format json`, fail2ban, grep) can match on it. Each event also carries `protocol`
//! (`ftp`, `ftps`, `sftp`) and `peer` (the client's address and port), and where known `user`
//! and `reason`. docs/security.md lists them with their fields.

/// A login succeeded (`method`: `password`, `anonymous`, `keyboard-interactive`, or `key`
/// with its `fingerprint`).
pub const LOGIN_OK: &str = "login_ok";
/// A password (or anonymous login) was wrong, or the user unknown.
pub const LOGIN_FAILED: &str = "login_failed";
/// A login was refused before any password was checked: the address or user is throttled
/// after too many failures, or the login needed TLS.
pub const LOGIN_REFUSED: &str = "login_refused";
/// A failure filled a failed-login limit: the address (`scope` = `address`) or the user name
/// (`scope` = `user`) is refused for `window_secs`.
pub const BAN: &str = "ban";
/// A connection was refused by the session limits (`max_sessions`, `max_sessions_per_ip`).
pub const SESSION_REFUSED: &str = "session_refused";
/// FTP `PORT`/`EPRT` to another host or to a privileged port (FTP bounce) was refused.
pub const BOUNCE_REFUSED: &str = "bounce_refused";
/// A passive data connection came from an address other than the client's; dropped.
pub const FOREIGN_DATA_REFUSED: &str = "foreign_data_refused";
/// A TLS data connection did not prove it belongs to the session (no resumed TLS session of
/// its control connection); refused.
pub const DATA_TLS_REFUSED: &str = "data_tls_refused";
/// The account's permissions do not allow the operation.
pub const PERMISSION_DENIED: &str = "permission_denied";
/// Storage refused a path: a link leading out of the home, a special file, or the file
/// system's own permissions.
pub const JAIL_REFUSED: &str = "jail_refused";
/// An upload was refused before it began because the user is at a quota, or stopped when
/// it reached one (`reason` says which, and how full; once per upload).
pub const QUOTA_EXCEEDED: &str = "quota_exceeded";

/// Every event name, for documentation tests.
pub const ALL: [&str; 11] = [
    LOGIN_OK,
    LOGIN_FAILED,
    LOGIN_REFUSED,
    BAN,
    SESSION_REFUSED,
    BOUNCE_REFUSED,
    FOREIGN_DATA_REFUSED,
    DATA_TLS_REFUSED,
    PERMISSION_DENIED,
    JAIL_REFUSED,
    QUOTA_EXCEEDED,
];

#[cfg(test)]
mod tests {
    #[test]
    fn every_event_is_documented() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/security.md"
        ))
        .unwrap_or_default();
        for name in super::ALL {
            assert!(
                doc.contains(&format!("`{name}`")),
                "docs/security.md does not list `{name}`"
            );
        }
    }
}
