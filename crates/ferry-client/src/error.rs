//! The client's errors, each mapped to one process exit code.
//!
//! | code | meaning |
//! |---|---|
//! | 1 | local problem (a local file can't be read or written) |
//! | 2 | usage (bad URL, bad argument) |
//! | 3 | login refused (`530` to `USER`/`PASS`, or any `530` later; SFTP: no credential accepted) |
//! | 4 | not found or unavailable (`550`, `450` on a file command; SFTP: no such file, permission denied, failure) |
//! | 5 | network (connect failure, timeout, closed connection, `421`, `425`) |
//! | 6 | protocol (malformed or unexpected reply, any other refusal; SFTP: unsupported operation, bad message) |
//! | 7 | partial transfer (size mismatch, `426`/`451` at the end of a transfer, checksum mismatch) |
//! | 8 | the server's identity: TLS certificate not trusted (unknown CA, wrong name, expired, no match for a pinned fingerprint), TLS handshake failed or TLS required and not offered; SSH host key unknown, changed or revoked |

use std::io;

use ferry_proto::Reply;

/// What went wrong; [`Error::exit_code`] gives the documented exit status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller asked for something impossible (bad argument, CR/LF in a path).
    #[error("{0}")]
    Usage(String),
    /// The server refused the credentials.
    #[error("login refused: {} {}", .0.code, one_line(.0))]
    LoginRefused(Reply),
    /// The server answered a command with an error reply.
    #[error("{command}: {} {}", reply.code, one_line(reply))]
    Refused {
        /// The command as sent (password masked).
        command: String,
        /// The server's reply.
        reply: Reply,
    },
    /// A network operation failed.
    #[error("{context}: {source}")]
    Network {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A wait on the network ran out of time.
    #[error("timed out {0}")]
    Timeout(String),
    /// The server closed the control connection.
    #[error("the server closed the control connection")]
    Closed,
    /// The server broke the protocol (malformed or unexpected reply).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A transfer ended early or its result does not match.
    #[error("partial transfer: {0}")]
    Partial(String),
    /// The connection could not be secured: certificate not trusted, TLS handshake failed,
    /// or TLS required and not offered.
    #[error("TLS: {0}")]
    Tls(String),
    /// The SFTP server answered a request with an error status.
    #[error("{command}: {message}")]
    Status {
        /// The request and its path.
        command: String,
        /// The `SSH_FX_*` code.
        code: u32,
        /// The server's message and the code's name.
        message: String,
    },
    /// The SSH server's host key is not trusted: unknown, changed or revoked.
    #[error("{0}")]
    HostKey(Box<crate::sftp::HostKeyError>),
    /// The SSH server accepted none of the credentials tried.
    #[error("login refused: {0}")]
    AuthFailed(String),
    /// A local file operation failed.
    #[error("{context}: {source}")]
    Local {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

fn one_line(reply: &Reply) -> String {
    reply.lines.join(" ").trim().to_string()
}

impl Error {
    /// The process exit status for this error (see the module docs).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Local { .. } => 1,
            Error::Usage(_) => 2,
            Error::LoginRefused(_) => 3,
            Error::Refused { reply, .. } => match reply.code {
                530 | 332 => 3,
                550 | 450 => 4,
                421 | 425 => 5,
                426 => 7,
                _ => 6,
            },
            Error::Network { .. } | Error::Timeout(_) | Error::Closed => 5,
            Error::Protocol(_) => 6,
            Error::Partial(_) => 7,
            Error::Tls(_) | Error::HostKey(_) => 8,
            Error::AuthFailed(_) => 3,
            Error::Status { code, .. } => match *code {
                // No such file, permission denied, failure: what FTP says with 550.
                2..=4 => 4,
                // Connection lost.
                7 => 5,
                _ => 6,
            },
        }
    }

    /// The reply code when the server refused a command.
    pub fn reply_code(&self) -> Option<u16> {
        match self {
            Error::Refused { reply, .. } | Error::LoginRefused(reply) => Some(reply.code),
            _ => None,
        }
    }

    /// `true` when the server refused the command (an FTP error reply or an SFTP error
    /// status), as opposed to a failure of the connection or of a local file.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Error::Refused { .. } | Error::LoginRefused(_) | Error::Status { .. }
        )
    }

    /// `true` for a `550`/`450` refusal: the file or directory is missing or unavailable.
    pub fn is_not_found(&self) -> bool {
        self.exit_code() == 4
    }

    /// `true` when the failure is on the network (worth a reconnect and resume).
    pub fn is_network(&self) -> bool {
        self.exit_code() == 5
    }

    /// Wrap a network I/O error with what was being done.
    pub fn network(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        let context = context.into();
        move |source| Error::Network { context, source }
    }

    /// Wrap a local I/O error with what was being done.
    pub fn local(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        let context = context.into();
        move |source| Error::Local { context, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        let refused = |code| Error::Refused {
            command: "RETR x".into(),
            reply: Reply::new(code, "no"),
        };
        assert_eq!(refused(550).exit_code(), 4);
        assert_eq!(refused(530).exit_code(), 3);
        assert_eq!(refused(425).exit_code(), 5);
        assert_eq!(refused(426).exit_code(), 7);
        assert_eq!(refused(502).exit_code(), 6);
        assert_eq!(Error::LoginRefused(Reply::new(530, "no")).exit_code(), 3);
        assert_eq!(Error::Closed.exit_code(), 5);
        assert_eq!(Error::Usage("x".into()).exit_code(), 2);
        assert_eq!(Error::Partial("x".into()).exit_code(), 7);
        assert_eq!(Error::Tls("x".into()).exit_code(), 8);
        assert_eq!(Error::Protocol("x".into()).exit_code(), 6);
        assert!(refused(550).is_not_found());
        let status = |code| Error::Status {
            command: "OPEN x".into(),
            code,
            message: "no".into(),
        };
        assert_eq!(status(2).exit_code(), 4);
        assert_eq!(status(3).exit_code(), 4);
        assert_eq!(status(8).exit_code(), 6);
        assert!(status(2).is_not_found() && status(2).is_refusal());
        assert_eq!(Error::AuthFailed("x".into()).exit_code(), 3);
        assert_eq!(
            refused(550).to_string(),
            "RETR x: 550 no",
            "one line, code and text"
        );
    }
}
