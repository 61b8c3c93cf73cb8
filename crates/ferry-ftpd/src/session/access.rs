//! Access control: `USER`, `PASS`, `FEAT`, `OPTS`.

use std::io;
use std::sync::Arc;

use crate::config::TlsPolicy;
use ferry_core::events;
use ferry_proto::Reply;
use ferry_proto::listing::MlstFacts;
use ferry_vfs::VPath;
use tracing::{info, warn};

use super::*;

/// `anonymous` or `ftp`, in any case: FTP's anonymous login names.
fn is_anonymous_name(name: &str) -> bool {
    ferry_auth::ANONYMOUS_NAMES
        .iter()
        .any(|a| name.eq_ignore_ascii_case(a))
}

/// The `ban` event: `name`'s failure from `peer` filled the `limit`.
fn log_ban(
    protocol: &'static str,
    peer: std::net::SocketAddr,
    name: &str,
    limit: ferry_auth::Throttled,
    context: &ferry_core::ServerContext,
) {
    let scope = match limit {
        ferry_auth::Throttled::Address => "address",
    };
    warn!(
        event = events::BAN,
        protocol,
        peer = %peer,
        user = %sanitize(name),
        scope,
        window_secs = context.throttle.window().as_secs(),
        reason = %limit,
        "failed-login limit reached: refusing logins for the window"
    );
}

impl Session {
    /// The protocol this session's security events name: `ftps` once the control connection
    /// is protected.
    pub(super) fn protocol(&self) -> &'static str {
        if self.control.is_tls() { "ftps" } else { "ftp" }
    }

    pub(super) fn cmd_user(&mut self, name: String) -> Reply {
        if let State::LoggedIn(_) = self.state {
            return Reply::new(530, "Already logged in; use REIN to change user.");
        }
        let anonymous = self.shared.anonymous.is_some() && is_anonymous_name(&name);
        if !self.control.is_tls()
            && self.global_tls() == TlsPolicy::Required
            && !(anonymous && self.anonymous_exempt())
        {
            info!(
                event = events::LOGIN_REFUSED,
                protocol = self.protocol(),
                peer = %self.peer,
                user = %sanitize(&name),
                reason = "clear-text login on a server that requires TLS",
                "login refused"
            );
            return Reply::new(
                530,
                "TLS required: send AUTH TLS before USER (this server does not accept clear-text logins).",
            );
        }
        self.state = State::NeedPass(name);
        if anonymous {
            Reply::new(
                331,
                "Anonymous login ok, send your e-mail address as password.",
            )
        } else {
            // Always 331, whether or not the user exists: names can't be probed.
            Reply::new(331, "Password required.")
        }
    }

    pub(super) async fn cmd_pass(&mut self, password: String) -> io::Result<Flow> {
        let name = match std::mem::replace(&mut self.state, State::Fresh) {
            State::NeedPass(name) => name,
            State::LoggedIn(l) => {
                self.state = State::LoggedIn(l);
                self.send(&Reply::new(503, "Already logged in.")).await?;
                return Ok(Flow::Continue);
            }
            State::Fresh => {
                self.send(&Reply::new(503, "Login with USER first."))
                    .await?;
                return Ok(Flow::Continue);
            }
        };
        // The guess takes its place before the password is hashed: guesses sent at once over
        // many connections cannot all be checked (see `ferry_auth::LoginThrottle`).
        let throttle = self.shared.context.throttle.clone();
        let attempt = match throttle.begin(self.peer.ip(), &name).await {
            Ok(attempt) => attempt,
            Err(why) => {
                let metrics = &self.shared.context.metrics;
                metrics.banned(ferry_core::Protocol::Ftp, self.peer.ip());
                warn!(
                    event = events::LOGIN_REFUSED,
                    protocol = self.protocol(),
                    peer = %self.peer,
                    user = %sanitize(&name),
                    reason = %why,
                    "login refused: {why}"
                );
                self.send(&Reply::new(
                    421,
                    format!("Login refused: {why}; try again later."),
                ))
                .await?;
                return Ok(Flow::Close);
            }
        };
        // xferlog(5) names an anonymous user by the ID string given as password.
        let mut anonymous_id = None;
        let account = match &self.shared.anonymous {
            Some(anonymous) if is_anonymous_name(&name) => {
                anonymous_id = Some(password.chars().take(64).collect::<String>());
                Some(Arc::clone(anonymous))
            }
            _ => {
                self.shared
                    .context
                    .auth()
                    .authenticate(&name, &password)
                    .await
            }
        };
        drop(password);
        // Outside the account's networks, a right password is answered as a wrong one (and
        // counted as one), so it tells nothing there.
        let peer = self.peer.ip();
        let account = account.filter(|a| {
            let allowed = self.shared.context.allows_from(a, peer);
            if !allowed {
                warn!(user = %a.name, "login refused: address not in the user's allowed_networks");
            }
            allowed
        });
        let Some(account) = account else {
            let filled = attempt.failed();
            let metrics = &self.shared.context.metrics;
            metrics.login(ferry_core::Protocol::Ftp, false);
            self.failed_logins += 1;
            warn!(
                event = events::LOGIN_FAILED,
                protocol = self.protocol(),
                peer = %self.peer,
                user = %sanitize(&name),
                attempt = self.failed_logins,
                reason = "wrong password or unknown user",
                "login failed"
            );
            if let Some(limit) = filled {
                log_ban(
                    self.protocol(),
                    self.peer,
                    &name,
                    limit,
                    &self.shared.context,
                );
            }
            tokio::time::sleep(self.shared.config.login_failure_delay).await;
            if self.failed_logins >= self.shared.config.max_login_attempts {
                self.send(&Reply::new(
                    421,
                    "Login incorrect; too many attempts, closing.",
                ))
                .await?;
                return Ok(Flow::Close);
            }
            self.send(&Reply::new(530, "Login incorrect.")).await?;
            return Ok(Flow::Continue);
        };
        attempt.succeeded();
        let metrics = &self.shared.context.metrics;
        metrics.login(ferry_core::Protocol::Ftp, true);
        let fs = match self.shared.context.user_fs(Arc::clone(&account)) {
            Ok(fs) => fs.for_client(self.protocol(), self.peer),
            Err(e) => {
                warn!(user = %account.name, error = %e, "cannot open the user's root");
                self.send(&Reply::new(421, "Home directory unavailable, closing."))
                    .await?;
                return Ok(Flow::Close);
            }
        };
        if !self.control.is_tls() && self.account_tls(&account) == TlsPolicy::Required {
            warn!(
                event = events::LOGIN_REFUSED,
                protocol = self.protocol(),
                peer = %self.peer,
                user = %account.name,
                reason = "TLS required for this account",
                "login refused: TLS required for this account"
            );
            self.send(&Reply::new(
                530,
                "TLS required for this account: reconnect and send AUTH TLS first.",
            ))
            .await?;
            return Ok(Flow::Continue);
        }
        if let Err(why) = self.shared.context.log_in(&self.permit, &account) {
            warn!(
                event = events::LOGIN_REFUSED,
                protocol = self.protocol(),
                peer = %self.peer,
                user = %account.name,
                reason = %why,
                "login refused: {why}"
            );
            self.send(&Reply::new(421, format!("Login refused: {why}; closing.")))
                .await?;
            return Ok(Flow::Close);
        }
        tracing::Span::current().record("user", account.name.as_str());
        info!(
            event = events::LOGIN_OK,
            protocol = self.protocol(),
            peer = %self.peer,
            user = %account.name,
            method = if account.anonymous { "anonymous" } else { "password" },
            anonymous = account.anonymous,
            "logged in"
        );
        let text = if account.anonymous && account.permissions.create_only {
            "Anonymous login ok, upload-only access: new files may be stored, nothing listed or read."
        } else if account.anonymous {
            "Anonymous login ok, read-only access."
        } else {
            "Login successful."
        };
        self.tls_logged_in(&account);
        self.state = State::LoggedIn(LoggedIn {
            fs,
            anonymous_id: anonymous_id.map(String::into_boxed_str),
        });
        self.cwd = VPath::root();
        self.send(&Reply::new(230, text)).await?;
        Ok(Flow::Continue)
    }

    pub(super) fn feat(&self) -> Reply {
        let mut features: Vec<String> = Vec::new();
        if self.tls_enabled() {
            features.extend(["AUTH TLS", "AUTH SSL", "PBSZ", "PROT"].map(String::from));
        }
        features.extend(["EPRT", "EPSV", "MDTM", "MFMT"].map(String::from));
        features.push(self.facts.feat_line());
        features.extend(["PASV", "REST STREAM", "SIZE", "TVFS", "UTF8"].map(String::from));
        // RFC 2389 §3.2: each feature line starts with a space.
        let mut lines = vec!["Features:".to_string()];
        lines.extend(features.into_iter().map(|f| format!(" {f}")));
        lines.push("End".to_string());
        Reply::multi(211, lines)
    }

    pub(super) fn cmd_opts(&mut self, command: &str, args: Option<&str>) -> Reply {
        match command {
            "UTF8" | "UTF-8" => match args.map(|a| a.trim().to_ascii_uppercase()) {
                Some(a) if a == "ON" || a.is_empty() => Reply::new(200, "Always in UTF8 mode."),
                None => Reply::new(200, "Always in UTF8 mode."),
                Some(a) if a == "OFF" => Reply::new(504, "UTF8 cannot be turned off."),
                Some(_) => Reply::new(501, "Use OPTS UTF8 ON."),
            },
            "MLST" => {
                self.facts = MlstFacts::from_opts(args.unwrap_or(""));
                Reply::new(200, format!("MLST OPTS {}", self.facts.enabled_list()))
            }
            _ => Reply::new(
                501,
                format!("Option not understood for {}.", sanitize(command)),
            ),
        }
    }
}
