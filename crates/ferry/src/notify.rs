//! systemd's readiness protocol (`sd_notify(3)`): one datagram per state change, `KEY=VALUE`
//! lines, sent to the Unix socket named by `NOTIFY_SOCKET`. A path (`/run/systemd/notify`) or,
//! when it starts with `@`, an abstract socket name. Without the variable nothing is sent; a
//! message that cannot be sent is logged and forgotten, as the service runs all the same.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where state changes are told: the service manager's socket, when there is one.
pub(crate) struct Notifier {
    socket: UnixDatagram,
    to: SocketAddr,
}

/// How long a datagram may wait for room in the manager's queue (it reads at once).
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

impl Notifier {
    /// The socket in `NOTIFY_SOCKET`, if set and usable; `None` outside systemd (or another
    /// manager speaking the protocol).
    pub(crate) fn from_env() -> Option<Notifier> {
        let name = std::env::var_os("NOTIFY_SOCKET")?;
        match Self::open(name.as_encoded_bytes()) {
            Ok(notifier) => Some(notifier),
            Err(e) => {
                tracing::warn!(socket = ?name, error = %e, "NOTIFY_SOCKET unusable; systemd will not hear of readiness");
                None
            }
        }
    }

    fn open(name: &[u8]) -> std::io::Result<Notifier> {
        let to = match name {
            [] => return Err(std::io::Error::other("empty")),
            [b'@', abstract_name @ ..] => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(abstract_name)?
            }
            [b'/', ..] => {
                use std::os::unix::ffi::OsStrExt;
                SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(name))?
            }
            _ => {
                return Err(std::io::Error::other(
                    "neither a path nor an abstract name (@...)",
                ));
            }
        };
        let socket = UnixDatagram::unbound()?;
        socket.set_write_timeout(Some(SEND_TIMEOUT))?;
        Ok(Notifier { socket, to })
    }

    /// Every listener is bound and serving; `status` says on what.
    pub(crate) fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// A reload has begun (`READY=1` follows when it is over, whatever its outcome).
    pub(crate) fn reloading(&self) {
        // The manager matches the READY=1 that follows with this time (Type=notify-reload).
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading",
            ferry_sys::monotonic_micros()
        ));
    }

    /// The server is shutting down: sessions are being told, transfers finish.
    pub(crate) fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=shutting down: running transfers finish");
    }

    fn send(&self, message: &str) {
        if let Err(e) = self.socket.send_to_addr(message.as_bytes(), &self.to) {
            tracing::warn!(error = %e, "cannot notify the service manager");
        }
    }
}

/// `text` on one line: a newline would start another `KEY=` of the message.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_neither_paths_nor_abstract_are_refused() {
        assert!(Notifier::open(b"").is_err());
        assert!(Notifier::open(b"relative/path").is_err());
        assert!(Notifier::open(b"vsock:2:1234").is_err());
    }

    #[test]
    fn a_status_stays_one_field() {
        assert_eq!(one_line("a\nREADY=1\r\n"), "a READY=1  ");
    }
}
