//! What SIGHUP reloads in a running `ferry serve`: the users and the TLS certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_auth::{Authenticator, UserSpec};
use tokio::signal::unix::Signal;

use crate::config::FileConfig;
use crate::notify::Notifier;
use crate::serve::TlsSetup;

/// The users to serve: the configuration file's, with the `--user` (or generated) one in
/// place of a file user of the same name.
pub(crate) fn users_with(mut users: Vec<UserSpec>, quick: Option<&UserSpec>) -> Vec<UserSpec> {
    if let Some(quick) = quick {
        users.retain(|u| u.name != quick.name);
        users.push(quick.clone());
    }
    users
}

/// What SIGHUP reloads: the users (the configuration file's `[[users]]` with their password
/// hashes, and every authorized keys file) and the TLS certificate. Sessions keep running:
/// those logged in keep their account and the certificate they started with; logins from
/// then on see the new users. Every other setting takes effect at the next start.
pub(crate) struct Reloader {
    /// The configuration file (none: only the --user's keys file is read again).
    config: Option<PathBuf>,
    /// The --user (or generated) user, as at start (its password came from FERRY_PASSWORD).
    quick: Option<UserSpec>,
    tls: Option<TlsSetup>,
    context: Arc<ferry_core::ServerContext>,
    notifier: Option<Arc<Notifier>>,
    /// What the service manager is told when ready.
    status: String,
    /// The file's settings other than its users, as served: a reload that finds them changed
    /// says that they wait for a restart.
    settings: Option<toml::Table>,
}

impl Reloader {
    /// A reloader of `config` (the file the server started from) and of `tls`'s files.
    pub(crate) fn new(
        config: Option<PathBuf>,
        quick: Option<UserSpec>,
        tls: Option<TlsSetup>,
        context: Arc<ferry_core::ServerContext>,
        notifier: Option<Arc<Notifier>>,
        status: String,
    ) -> Reloader {
        let settings = config
            .as_deref()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .and_then(|text| settings_of(&text));
        Reloader {
            config,
            quick,
            tls,
            context,
            notifier,
            status,
            settings,
        }
    }

    /// Reload at each signal until the signal stream ends. The service manager hears
    /// `RELOADING=1` before and `READY=1` after, whatever the outcome.
    pub(crate) async fn run(self, mut hangup: Signal) {
        while hangup.recv().await.is_some() {
            if let Some(n) = &self.notifier {
                n.reloading();
            }
            let mut failed = Vec::new();
            if let Err(e) = self.reload_users().await {
                tracing::error!(
                    error = %format!("{e:#}"),
                    "configuration reload failed; keeping the previous users"
                );
                failed.push("users");
            }
            if let Err(e) = self.reload_certificate() {
                tracing::error!(error = %format!("{e:#}"), "TLS certificate reload failed; keeping the old one");
                failed.push("certificate");
            }
            if let Some(n) = &self.notifier {
                let status = if failed.is_empty() {
                    self.status.clone()
                } else {
                    format!(
                        "{}; last reload failed, kept the previous {} (see the log)",
                        self.status,
                        failed.join(" and ")
                    )
                };
                n.ready(&status);
            }
        }
    }

    /// Read the users again and serve them from the next login on. The whole file is checked
    /// as at start, so a reload never takes a file the next start would refuse.
    async fn reload_users(&self) -> anyhow::Result<()> {
        let (config, quick) = (self.config.clone(), self.quick.clone());
        // Reads files, and hashes a dummy password (a few milliseconds of CPU).
        let (auth, count, settings) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let (users, settings) = match &config {
                Some(path) => read_users(path)?,
                None => (Vec::new(), None),
            };
            let users = users_with(users, quick.as_ref());
            let count = users.len();
            Ok((Authenticator::new(users)?, count, settings))
        })
        .await??;
        self.context.replace_auth(Arc::new(auth));
        tracing::info!(users = count, "users reloaded");
        if settings.is_some() && settings != self.settings {
            tracing::warn!(
                "settings other than [[users]] changed in the configuration file; \
                 they take effect at the next restart"
            );
        }
        Ok(())
    }

    fn reload_certificate(&self) -> anyhow::Result<()> {
        let Some(tls) = &self.tls else {
            return Ok(());
        };
        let key = ferry_ftpd::tls::load_pem_files(&tls.cert_path, &tls.key_path)?;
        tls.config.certs.replace(key);
        tracing::info!(fingerprint = %tls.config.certs.fingerprint(), "TLS certificate reloaded");
        Ok(())
    }
}

/// The users of the configuration file at `path`, checked whole as at start, and its other
/// settings.
fn read_users(path: &Path) -> anyhow::Result<(Vec<UserSpec>, Option<toml::Table>)> {
    use anyhow::Context;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file = FileConfig::parse(&text).with_context(|| format!("in {}", path.display()))?;
    file.server_config()
        .with_context(|| format!("in {}", path.display()))?;
    Ok((file.users, settings_of(&text)))
}

/// Every key of a configuration file but `[[users]]`.
fn settings_of(text: &str) -> Option<toml::Table> {
    let mut table: toml::Table = text.parse().ok()?;
    table.remove("users");
    Some(table)
}

#[cfg(test)]
mod tests {
    use super::settings_of;

    #[test]
    fn users_are_not_settings() {
        let a = settings_of("state_dir = \"s\"\n[[users]]\nname = \"a\"\n");
        let b =
            settings_of("state_dir = \"s\"\n[[users]]\nname = \"b\"\n[[users]]\nname = \"c\"\n");
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_ne!(a, settings_of("state_dir = \"t\"\n"));
    }
}
