//! FTP over TLS commands: `AUTH`, `PBSZ`, `PROT`, `CCC`.

use std::io;

use ferry_auth::Account;

use crate::config::TlsPolicy;
use ferry_proto::command::ProtLevel;
use ferry_proto::{LineBuffer, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, warn};

use crate::tls::{self, Stream};

use super::*;

impl Session {
    pub(super) fn tls_enabled(&self) -> bool {
        self.shared
            .config
            .tls
            .as_ref()
            .is_some_and(|t| t.policy != TlsPolicy::Off)
    }

    pub(super) fn global_tls(&self) -> TlsPolicy {
        self.shared
            .config
            .tls
            .as_ref()
            .map_or(TlsPolicy::Off, |t| t.policy)
    }

    pub(super) fn anonymous_exempt(&self) -> bool {
        self.shared
            .config
            .tls
            .as_ref()
            .is_some_and(|t| t.exempt_anonymous)
    }

    /// The policy that applies to `account`: its own setting, else the server's.
    pub(super) fn account_tls(&self, account: &Account) -> TlsPolicy {
        if !self.tls_enabled() {
            return TlsPolicy::Off;
        }
        if account.anonymous && self.anonymous_exempt() {
            return TlsPolicy::Optional;
        }
        self.shared
            .config
            .user_tls
            .get(&account.name)
            .copied()
            .unwrap_or(self.global_tls())
    }

    /// The policy in force now (the logged-in user's, else the server's).
    pub(super) fn session_tls(&self) -> TlsPolicy {
        match self.logged_in() {
            Some(l) => self.account_tls(l.fs.account()),
            None => self.global_tls(),
        }
    }

    /// This session's entry in the server's TLS logins, if it has one (see [`DataOwner`]).
    fn tls_logins(&self) -> Option<&Arc<tls::Logins>> {
        let tls = self.shared.config.tls.as_ref()?;
        self.tls_registered.then_some(&tls.logins)
    }

    /// Note the login in the server's TLS logins (see [`DataOwner`]).
    pub(super) fn tls_logged_in(&self, account: &Account) {
        if let Some(logins) = self.tls_logins() {
            let named = (!account.anonymous).then_some(account.name.as_str());
            logins.logged_in(&self.tls_token, named);
        }
    }

    /// Note the logout (`REIN`) in the server's TLS logins.
    pub(super) fn tls_logged_out(&self) {
        if let Some(logins) = self.tls_logins() {
            logins.logged_out(&self.tls_token);
        }
    }

    /// Whose data connections this session's are (see [`DataOwner`]).
    pub(super) fn data_owner(&self) -> DataOwner {
        let named = self.logged_in().filter(|l| !l.fs.account().anonymous);
        let login = match (self.tls_logins(), named) {
            (Some(logins), Some(l)) => Some((
                Arc::clone(logins),
                tls::Login {
                    ip: self.peer.ip().to_canonical(),
                    user: l.fs.account().name.as_str().into(),
                },
            )),
            _ => None,
        };
        DataOwner {
            token: self.tls_token,
            login,
        }
    }

    pub(super) async fn upgrade_control(&mut self) -> io::Result<()> {
        let Some(tls) = self.shared.config.tls.clone() else {
            return Err(io::Error::other("TLS is not configured"));
        };
        let Stream::Plain(tcp) = std::mem::replace(&mut self.control, Stream::Closed) else {
            return Err(io::Error::other("control connection is not plain"));
        };
        if !self.tls_registered {
            tls.logins.register(&self.tls_token, self.peer.ip());
            self.tls_registered = true;
        }
        let stream = tls::ControlTls::accept(Arc::clone(&tls.rustls), tcp, &self.tls_token).await?;
        self.control = Stream::Control(Box::new(stream));
        Ok(())
    }

    pub(super) async fn cmd_auth(&mut self, mechanism: &str) -> io::Result<Flow> {
        let reply = if !self.tls_enabled() {
            Reply::new(502, "TLS is not enabled on this server.")
        } else if !matches!(mechanism, "TLS" | "SSL" | "TLS-C" | "TLS-P") {
            Reply::new(504, "Unsupported mechanism; use AUTH TLS.")
        } else if self.control.is_tls() {
            Reply::new(503, "Already using TLS.")
        } else if self.logged_in().is_some() {
            Reply::new(503, "AUTH must come before login; use REIN first.")
        } else {
            Reply::new(
                234,
                format!("AUTH {mechanism} ok; start the TLS handshake."),
            )
        };
        self.send(&reply).await?;
        if reply.code != 234 {
            return Ok(Flow::Continue);
        }
        // Anything the client sent after AUTH in clear text must not be run as if protected
        // (command injection, as in CVE-2011-0411).
        if self.lines.pending() > 0 || !self.deferred.is_empty() {
            warn!("discarding clear-text commands pipelined after AUTH");
            self.lines = LineBuffer::new(self.shared.config.max_line);
            self.deferred.clear();
        }
        let timeout = self.shared.config.login_timeout;
        match tokio::time::timeout(timeout, self.upgrade_control()).await {
            Ok(Ok(())) => {
                debug!("control connection upgraded to TLS");
                if mechanism == "SSL" || mechanism == "TLS-P" {
                    // RFC 4217 §4: legacy AUTH SSL implies protected data.
                    self.pbsz_done = true;
                    self.protect_data = true;
                }
                self.state = State::Fresh;
                Ok(Flow::Continue)
            }
            Ok(Err(e)) => {
                warn!(error = %e, "TLS handshake failed on the control connection");
                Ok(Flow::Close)
            }
            Err(_) => {
                warn!("TLS handshake timed out on the control connection");
                Ok(Flow::Close)
            }
        }
    }

    pub(super) fn cmd_pbsz(&mut self) -> Reply {
        if !self.control.is_tls() {
            return Reply::new(503, "PBSZ needs AUTH TLS first.");
        }
        self.pbsz_done = true;
        Reply::new(200, "PBSZ=0")
    }

    pub(super) fn cmd_prot(&mut self, level: ProtLevel) -> Reply {
        if !self.control.is_tls() {
            return Reply::new(503, "PROT needs AUTH TLS first.");
        }
        if !self.pbsz_done {
            return Reply::new(503, "PROT needs PBSZ 0 first.");
        }
        match level {
            ProtLevel::Private => {
                self.protect_data = true;
                Reply::new(200, "PROT now Private.")
            }
            ProtLevel::Clear if self.session_tls() == TlsPolicy::Required => Reply::new(
                534,
                "PROT C refused: this server requires protected data connections (use PROT P).",
            ),
            ProtLevel::Clear => {
                self.protect_data = false;
                // A passive port already handshaking TLS cannot carry a clear connection.
                if matches!(self.data, DataPlan::Protected(_)) {
                    self.data = DataPlan::None;
                }
                Reply::new(200, "PROT now Clear.")
            }
            ProtLevel::Safe | ProtLevel::Confidential => Reply::new(
                536,
                "PROT level not supported by TLS; use PROT P or PROT C.",
            ),
        }
    }

    pub(super) async fn cmd_ccc(&mut self) -> io::Result<Flow> {
        let allowed = self.shared.config.tls.as_ref().is_some_and(|t| t.allow_ccc);
        if !self.control.is_tls() {
            self.send(&Reply::new(533, "CCC needs a TLS control connection."))
                .await?;
            return Ok(Flow::Continue);
        }
        if !allowed || self.logged_in().is_none() {
            self.send(&Reply::new(
                534,
                "CCC refused by policy (allow_ccc is off).",
            ))
            .await?;
            return Ok(Flow::Continue);
        }
        self.send(&Reply::new(200, "Control connection now in clear text."))
            .await?;
        let Stream::Control(mut tls) = std::mem::replace(&mut self.control, Stream::Closed) else {
            return Ok(Flow::Close);
        };
        tls.send_close_notify()?;
        tls.flush().await?;
        // Wait for the client's close_notify, then carry on over the bare TCP connection.
        let mut buf = [0u8; 512];
        let wait = self.shared.config.data_connect_timeout;
        loop {
            match tokio::time::timeout(wait, tls.read(&mut buf)).await {
                Ok(Ok(0)) => break,
                Ok(Ok(_)) => continue,
                Ok(Err(_)) | Err(_) => return Ok(Flow::Close),
            }
        }
        // Clear-text commands may follow the client's close_notify in the same segment.
        let (tcp, rest) = tls.into_tcp();
        self.lines.extend(&rest);
        self.control = Stream::Plain(tcp);
        Ok(Flow::Continue)
    }
}
