//! One SSH connection: authentication through [`Authenticator`], session channels that may
//! start the `sftp` subsystem and nothing else.
//!
//! # Logins
//! - `publickey`: a key is accepted when it is listed for the user
//!   ([`Authenticator::authorized_key`]) and russh has verified the client's signature with
//!   it. The "would this key do?" query (no signature yet) is answered from the list alone. A
//!   key that is not listed is *not* a failed login for the throttle: clients offer every key
//!   they hold in turn, and a key can't be guessed. Signatures: Ed25519, ECDSA (P-256, P-384,
//!   P-521), RSA with SHA-2 (`rsa-sha2-256`, `rsa-sha2-512`); `ssh-rsa` (SHA-1) is refused.
//! - `password`: checked through the throttle shared with FTP (a guess takes its place before
//!   the password is hashed; a refused one is never checked), and a refusal waits
//!   [`SftpConfig::auth_rejection_time`](crate::SftpConfig::auth_rejection_time).
//! - `keyboard-interactive`: one non-echoed `Password: ` prompt, its answer checked exactly as
//!   a password (so OpenSSH clients set to `PasswordAuthentication no` still log in).
//! - `none` is answered with the methods offered (see `server::methods_for`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ferry_auth::Account;
use ferry_core::{SessionPermit, events};
use russh::keys::{Algorithm, HashAlg};
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure};
use tokio::sync::watch;

use crate::fs::Transfers;
use crate::server::{Inner, Running, methods_for};

/// What the client is told when it asks for anything but SFTP.
const SFTP_ONLY: &str = "This server provides SFTP only: no shell, commands or terminals.\r\n";
/// What legacy `scp` (its own protocol, run as a remote command) is told.
const SCP_LEGACY: &str = "This server provides SFTP only, not scp's legacy protocol. Use sftp, \
or scp from OpenSSH 9.0 or later without -O (it copies over SFTP).\r\n";
/// The one keyboard-interactive prompt.
const PASSWORD_PROMPT: &str = "Password: ";

/// The per-connection handler russh calls: its state, boxed. russh keeps the handler by value
/// in the connection's session task, where it takes four times its size (the task stores its
/// future twice, and the future its handler twice), for the connection's whole life.
pub(crate) struct Connection(Box<State>);

impl Connection {
    pub(crate) fn new(state: State) -> Connection {
        Connection(Box::new(state))
    }
}

impl std::ops::Deref for Connection {
    type Target = State;
    fn deref(&self) -> &State {
        &self.0
    }
}

impl std::ops::DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.0
    }
}

/// What a connection's handler knows.
pub(crate) struct State {
    pub(crate) server: Arc<Inner>,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) account: Option<Arc<Account>>,
    /// Session channels opened and not yet turned into an SFTP session.
    pub(crate) channels: HashMap<ChannelId, Channel<Msg>>,
    /// Session channels accepted so far on this connection.
    pub(crate) opened: usize,
    /// Set once a login succeeds (ends the login grace timer).
    pub(crate) authenticated: Arc<AtomicBool>,
    /// SFTP sessions running on this connection (a shutdown waits for them).
    pub(crate) sessions: Arc<Running>,
    /// Turns true when the server shuts down.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// This connection's place in the registry of every protocol's sessions.
    pub(crate) permit: SessionPermit,
}

/// Whether a signature algorithm is accepted for user keys.
fn acceptable(algorithm: &Algorithm) -> bool {
    match algorithm {
        Algorithm::Rsa { hash } => matches!(hash, Some(HashAlg::Sha256 | HashAlg::Sha512)),
        Algorithm::Dsa => false,
        _ => true,
    }
}

/// A user name the client sent, as the log shows it: at most 64 characters.
fn shown(user: &str) -> String {
    user.chars().take(64).collect()
}

impl State {
    /// The answer to a refused attempt: the methods this server offers to the users of now
    /// (a reload may have given the first key or password to someone).
    fn again(&self) -> Auth {
        Auth::Reject {
            proceed_with_methods: Some(methods_for(&self.server.context.auth())),
            partial_success: false,
        }
    }

    /// The client's address as the security events show it.
    fn peer_field(&self) -> Option<String> {
        self.peer.map(|p| p.to_string())
    }

    fn logged_in(&mut self, account: Arc<Account>, how: &str) -> Auth {
        // A login that arrives while the server shuts down (before the connection is told to
        // leave) starts no session: nothing new begins once a shutdown has.
        if self.stopping() {
            tracing::info!(
                event = events::LOGIN_REFUSED,
                protocol = "sftp",
                peer = self.peer_field(),
                user = %shown(&account.name),
                reason = "the server is shutting down",
                "ssh: login refused: the server is shutting down"
            );
            return Auth::Reject {
                proceed_with_methods: None,
                partial_success: false,
            };
        }
        // Outside the account's networks or over its session cap: refused as any failed
        // method is (SSH has no way to say why), and logged.
        if let Err(why) = self.server.context.log_in(&self.permit, &account) {
            tracing::warn!(
                event = events::LOGIN_REFUSED,
                protocol = "sftp",
                peer = self.peer_field(),
                user = %shown(&account.name),
                reason = %why,
                "ssh: login refused: {why}"
            );
            return self.again();
        }
        let (method, fingerprint) = match how.strip_prefix("key ") {
            Some(fingerprint) => ("key", Some(fingerprint)),
            None => (how, None),
        };
        tracing::info!(
            event = events::LOGIN_OK,
            protocol = "sftp",
            peer = self.peer_field(),
            user = %account.name,
            method,
            fingerprint,
            "ssh: login ({how})"
        );
        self.server
            .context
            .metrics
            .login(ferry_core::Protocol::Sftp, true);
        self.account = Some(account);
        self.authenticated.store(true, Ordering::Release);
        Auth::Accept
    }

    /// A password (from `password` or the keyboard-interactive prompt): throttled, and a
    /// refusal takes at least `auth_rejection_time`.
    async fn check_password(&mut self, user: &str, password: &str, how: &str) -> Auth {
        let until = tokio::time::Instant::now() + self.server.config.auth_rejection_time;
        // Anonymous access is an FTP feature: the authenticator knows no anonymous account,
        // and its names are reserved, so over SFTP they are unknown users.
        let attempt = match self.peer {
            Some(peer) => match self.server.context.throttle.begin(peer.ip(), user).await {
                Ok(attempt) => Some(attempt),
                Err(why) => {
                    let metrics = &self.server.context.metrics;
                    metrics.banned(ferry_core::Protocol::Sftp, peer.ip());
                    tracing::warn!(
                        event = events::LOGIN_REFUSED,
                        protocol = "sftp",
                        peer = self.peer_field(),
                        user = %shown(user),
                        reason = %why,
                        "ssh: login refused: {why}"
                    );
                    tokio::time::sleep_until(until).await;
                    return self.again();
                }
            },
            None => None,
        };
        let account = self
            .server
            .context
            .auth()
            .authenticate(user, password)
            .await;
        // Outside the account's networks, a right password counts as a wrong one.
        let peer = self.permit.info().peer.ip();
        let account = account.filter(|a| self.server.context.allows_from(a, peer));
        match account {
            Some(account) => {
                if let Some(attempt) = attempt {
                    attempt.succeeded();
                }
                self.logged_in(account, how)
            }
            None => {
                let filled = attempt.and_then(|a| a.failed());
                let metrics = &self.server.context.metrics;
                metrics.login(ferry_core::Protocol::Sftp, false);
                tracing::warn!(
                    event = events::LOGIN_FAILED,
                    protocol = "sftp",
                    peer = self.peer_field(),
                    user = %shown(user),
                    method = how,
                    reason = "wrong password or unknown user",
                    "ssh: failed login ({how})"
                );
                if let Some(limit) = filled {
                    let scope = match limit {
                        ferry_auth::Throttled::Address => "address",
                    };
                    tracing::warn!(
                        event = events::BAN,
                        protocol = "sftp",
                        peer = self.peer_field(),
                        user = %shown(user),
                        scope,
                        window_secs = self.server.context.throttle.window().as_secs(),
                        reason = %limit,
                        "failed-login limit reached: refusing logins for the window"
                    );
                }
                tokio::time::sleep_until(until).await;
                self.again()
            }
        }
    }

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

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Take a session channel out of those waiting; the map's storage goes with the last one
    /// (a connection usually opens one channel, and then holds none for the rest of its life).
    fn take_channel(&mut self, channel: ChannelId) -> Option<Channel<Msg>> {
        let ch = self.channels.remove(&channel);
        if self.channels.is_empty() {
            self.channels = HashMap::new();
        }
        ch
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(self.again())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        Ok(self.check_password(user, password, "password").await)
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // Only which key: russh asks for (or has) the signature, and verifies it, after this.
        let listed = acceptable(offer.algorithm)
            && offer.public_key.to_bytes().is_ok_and(|blob| {
                self.server
                    .context
                    .auth()
                    .authorized_key(user, &blob)
                    .is_some()
            });
        if listed {
            Ok(Auth::Accept)
        } else {
            tracing::debug!(peer = ?self.peer, algorithm = %offer.algorithm, "ssh: key not listed");
            Ok(self.again())
        }
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        // russh has verified the signature; the key is checked again, as the query may have
        // named another user.
        let account = acceptable(key.algorithm)
            .then(|| key.public_key.to_bytes().ok())
            .flatten()
            .and_then(|blob| self.server.context.auth().authorized_key(user, &blob));
        match account {
            Some(account) => {
                let fingerprint = key.public_key.fingerprint(HashAlg::Sha256);
                Ok(self.logged_in(account, &format!("key {fingerprint}")))
            }
            None => Ok(self.again()),
        }
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        let Some(mut answers) = response else {
            return Ok(Auth::Partial {
                name: "".into(),
                instructions: "".into(),
                prompts: vec![(PASSWORD_PROMPT.into(), false)].into(),
            });
        };
        let answer = answers.next();
        let password = match (answer, answers.next()) {
            (Some(answer), None) => String::from_utf8(answer.to_vec()).ok(),
            _ => None,
        };
        match password {
            Some(password) => Ok(self
                .check_password(user, &password, "keyboard-interactive")
                .await),
            // Not one UTF-8 answer to the one prompt: a refusal, not a guess.
            None => Ok(self.again()),
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.stopping() {
            reply
                .reject(ChannelOpenFailure::Other {
                    code: 2, // SSH_OPEN_CONNECT_FAILED
                    reason: "the server is shutting down".to_string(),
                })
                .await;
            return Ok(());
        }
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
        self.take_channel(channel);
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
        let (Some(account), Some(ch)) = (self.account.clone(), self.take_channel(channel)) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        let fs = match self.server.context.user_fs(Arc::clone(&account)) {
            Ok(fs) => match self.peer {
                Some(peer) => fs.for_client("sftp", peer),
                None => fs,
            },
            Err(e) => {
                tracing::warn!(user = %account.name, "sftp: storage unavailable: {e}");
                return self.refuse(channel, "The user's files are unavailable.\r\n", session);
            }
        };
        if self.stopping() {
            return self.refuse(channel, "The server is shutting down.\r\n", session);
        }
        session.channel_success(channel)?;
        let limits = self.server.config.limits;
        let running = self.sessions.enter();
        let shutdown = self.shutdown.clone();
        let transfers = self
            .peer
            .filter(|_| self.server.context.transfer_log.is_enabled())
            .map(|peer| Transfers {
                log: self.server.context.transfer_log.clone(),
                peer: peer.ip(),
                user: account.name.clone(),
            });
        let meter = crate::sftp::Meter {
            metrics: Arc::clone(&self.server.context.metrics),
            session: self.permit.info().id,
        };
        tokio::spawn(async move {
            crate::sftp::serve(ch, fs, limits, transfers, meter, shutdown).await;
            drop(running);
        });
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

#[cfg(test)]
mod tests {
    //! Sizes of what an idle connection keeps in its tasks for its whole life. russh's session
    //! task holds the handler and, inlined at its await points, the futures of the handler's
    //! methods; that task stores its future twice, so each byte here counts up to four times.
    //! The bounds hold in debug and release builds.
    #![allow(unreachable_code, clippy::diverging_sub_expression)]

    use super::*;
    use russh::server::Handler;
    use std::future::Future;

    /// The size of the future `make` returns (`make` is never called).
    fn future_size<F: Future>(_make: impl FnOnce() -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// The largest future of a handler method: russh's own largest login step (its public-key
    /// check, 1,856 bytes in a release build) is larger, so these add nothing to its task.
    const HANDLER_FUTURE_MAX: usize = 1536;

    /// Ferry's own long-lived tasks (the connection's and the SFTP request loop's): each is as
    /// large as its largest wait, and every wait but the idle one is boxed.
    const TASK_FUTURE_MAX: usize = 1024;

    #[test]
    fn the_handler_is_one_pointer() {
        assert_eq!(
            std::mem::size_of::<Connection>(),
            std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn handler_futures_stay_small() {
        macro_rules! size {
            (|$c:ident, $s:ident, $id:ident| $call:expr) => {
                future_size(|| {
                    let ($c, $s, $id): (&mut Connection, &mut Session, ChannelId) = unreachable!();
                    let _ = (&$s, &$id);
                    $call
                })
            };
        }
        let sizes = [
            ("auth_none", size!(|c, s, id| c.auth_none(""))),
            ("auth_password", size!(|c, s, id| c.auth_password("", ""))),
            (
                "auth_publickey_offered",
                size!(|c, s, id| c.auth_publickey_offered("", unreachable!())),
            ),
            (
                "auth_publickey",
                size!(|c, s, id| c.auth_publickey("", unreachable!())),
            ),
            (
                "auth_keyboard_interactive",
                size!(|c, s, id| c.auth_keyboard_interactive("", "", None)),
            ),
            (
                "channel_open_session",
                size!(|c, s, id| c.channel_open_session(unreachable!(), unreachable!(), s)),
            ),
            (
                "channel_open_direct_tcpip",
                size!(|c, s, id| c.channel_open_direct_tcpip(
                    unreachable!(),
                    "",
                    0,
                    "",
                    0,
                    unreachable!(),
                    s
                )),
            ),
            ("channel_close", size!(|c, s, id| c.channel_close(id, s))),
            (
                "subsystem_request",
                size!(|c, s, id| c.subsystem_request(id, "", s)),
            ),
            ("shell_request", size!(|c, s, id| c.shell_request(id, s))),
            ("exec_request", size!(|c, s, id| c.exec_request(id, b"", s))),
            (
                "pty_request",
                size!(|c, s, id| c.pty_request(id, "", 0, 0, 0, 0, &[], s)),
            ),
            (
                "x11_request",
                size!(|c, s, id| c.x11_request(id, false, "", "", 0, s)),
            ),
            (
                "env_request",
                size!(|c, s, id| c.env_request(id, "", "", s)),
            ),
            ("agent_request", size!(|c, s, id| c.agent_request(id, s))),
        ];
        for (name, size) in sizes {
            assert!(
                size <= HANDLER_FUTURE_MAX,
                "{name}: a {size}-byte future (at most {HANDLER_FUTURE_MAX})"
            );
        }
    }

    #[test]
    fn long_lived_task_futures_stay_small() {
        let serve = future_size(|| {
            crate::sftp::serve(
                unreachable!(),
                unreachable!(),
                unreachable!(),
                unreachable!(),
                unreachable!(),
                unreachable!(),
            )
        });
        let connection = future_size(|| {
            crate::server::connection(
                unreachable!(),
                unreachable!(),
                unreachable!(),
                unreachable!(),
                unreachable!(),
                unreachable!(),
            )
        });
        for (name, size) in [("sftp::serve", serve), ("server::connection", connection)] {
            assert!(
                size <= TASK_FUTURE_MAX,
                "{name}: a {size}-byte future (at most {TASK_FUTURE_MAX})"
            );
        }
    }
}
