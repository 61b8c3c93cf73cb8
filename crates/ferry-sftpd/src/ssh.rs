//! One SSH connection: authentication through [`Authenticator`], session channels that may
//! start the `sftp` subsystem and nothing else.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ferry_auth::Account;
use russh::server::{Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, ChannelOpenFailure, MethodKind, MethodSet};

use crate::fs::SftpFs;
use crate::server::Inner;

/// What the client is told when it asks for anything but SFTP.
const SFTP_ONLY: &str = "This server provides SFTP only: no shell, commands or terminals.\r\n";
/// What legacy `scp` (its own protocol, run as a remote command) is told.
const SCP_LEGACY: &str = "This server provides SFTP only, not scp's legacy protocol. Use sftp, \
or scp from OpenSSH 9.0 or later without -O (it copies over SFTP).\r\n";

/// The per-connection handler russh calls.
pub(crate) struct Connection {
    pub(crate) server: Arc<Inner>,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) account: Option<Arc<Account>>,
    /// Session channels opened and not yet turned into an SFTP session.
    pub(crate) channels: HashMap<ChannelId, Channel<Msg>>,
    /// Session channels accepted so far on this connection.
    pub(crate) opened: usize,
    /// Set once a login succeeds (ends the login grace timer).
    pub(crate) authenticated: Arc<AtomicBool>,
}

fn password_only() -> Auth {
    Auth::Reject {
        proceed_with_methods: Some(MethodSet::from(&[MethodKind::Password][..])),
        partial_success: false,
    }
}

impl Connection {
    /// Refuse a request on `channel`: the reason on its stderr, then exit status 1 and close.
    ///
    /// The request itself is acknowledged: OpenSSH's client exits at once on a failure reply,
    /// before showing what the server wrote to stderr.
    fn refuse(
        &self,
        channel: ChannelId,
        message: &str,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        tracing::info!(peer = ?self.peer, "ssh: refused: {}", message.trim_end());
        session.channel_success(channel)?;
        session.extended_data(channel, 1, message.as_bytes().to_vec())?;
        session.exit_status_request(channel, 1)?;
        session.eof(channel)?;
        session.close(channel)?;
        Ok(())
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(password_only())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        // Anonymous access is an FTP feature; over SFTP those names are ordinary (unknown) users.
        if self.server.auth.is_anonymous(user) {
            tracing::info!(peer = ?self.peer, "ssh: anonymous login refused");
            return Ok(password_only());
        }
        match self.server.auth.authenticate(user, password).await {
            Some(account) => {
                tracing::info!(peer = ?self.peer, user = %account.name, "ssh: login");
                self.account = Some(account);
                self.authenticated.store(true, Ordering::Release);
                Ok(Auth::Accept)
            }
            None => {
                tracing::info!(peer = ?self.peer, "ssh: failed login");
                Ok(password_only())
            }
        }
    }

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        _offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(password_only())
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        _user: &str,
        _submethods: &str,
        _response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        Ok(password_only())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.opened >= self.server.config.max_channels {
            reply
                .reject(ChannelOpenFailure::Other {
                    code: 4, // SSH_OPEN_RESOURCE_SHORTAGE
                    reason: "too many channels on this connection".to_string(),
                })
                .await;
            return Ok(());
        }
        self.opened += 1;
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host: &str,
        _port: u32,
        _originator: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply
            .reject(ChannelOpenFailure::Other {
                code: 1, // SSH_OPEN_ADMINISTRATIVELY_PROHIBITED
                reason: "port forwarding is not provided: this server provides SFTP only"
                    .to_string(),
            })
            .await;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name != "sftp" {
            let message = format!(
                "Subsystem {:?} is not provided: this server provides SFTP only.\r\n",
                name.escape_debug().to_string()
            );
            return self.refuse(channel, &message, session);
        }
        let (Some(account), Some(ch)) = (self.account.clone(), self.channels.remove(&channel))
        else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        let storage = match (self.server.storage)(&account) {
            Ok(storage) => storage,
            Err(e) => {
                tracing::warn!(user = %account.name, "sftp: storage unavailable: {e}");
                return self.refuse(channel, "The user's files are unavailable.\r\n", session);
            }
        };
        session.channel_success(channel)?;
        let fs = SftpFs::new(account, storage);
        let limits = self.server.config.limits;
        tokio::spawn(crate::sftp::serve(ch, fs, limits));
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse(channel, SFTP_ONLY, session)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let legacy_scp = data.starts_with(b"scp ")
            && data.split(|b| *b == b' ').any(|w| w == b"-t" || w == b"-f");
        let message = if legacy_scp { SCP_LEGACY } else { SFTP_ONLY };
        self.refuse(channel, message, session)
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // A refusal only: the client may go on to ask for the subsystem on this channel.
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn agent_request(
        &mut self,
        _channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(false)
    }
}
