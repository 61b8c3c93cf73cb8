//! SSH user authentication, in the order OpenSSH's client uses: `none` (to learn the methods
//! the server allows), then public keys (the `-i` files, the agent's keys, the usual
//! `~/.ssh/id_*` files), then the password (or keyboard-interactive answered with it).
//!
//! Keys and a password that worked are kept in [`SshAuth`]'s cache, so a reconnect or a
//! second connection asks nothing again.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use russh::client::{AuthResult, Handle, KeyboardInteractiveAuthResponse};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg};
use russh::{MethodKind, MethodSet};

use super::Hooks;
use super::ssh::Checker;
use crate::{Error, Result};

/// A question for the user, answered through an [`Asker`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// The password of `user` on `host`.
    Password { user: String, host: String },
    /// The passphrase of an encrypted private key.
    Passphrase { key: PathBuf },
}

/// Answers questions (on a terminal, typically); `None` when there is no answer. Called on a
/// blocking thread.
pub type Asker = Arc<dyn Fn(Ask) -> Option<String> + Send + Sync>;

/// Who logs in and with what.
#[derive(Clone)]
pub struct SshAuth {
    /// The user name.
    pub user: String,
    /// Private key files tried first (`-i`); one that can't be read is an error.
    pub identities: Vec<PathBuf>,
    /// Also try `~/.ssh/id_ed25519`, `id_ecdsa` and `id_rsa` when they exist.
    pub default_identities: bool,
    /// Also try the keys of the agent at `SSH_AUTH_SOCK`.
    pub agent: bool,
    /// The password, when known in advance; otherwise the asker is asked (if any).
    pub password: Option<String>,
    /// Asks for passwords and passphrases.
    pub asker: Option<Asker>,
    cache: Arc<Mutex<Cache>>,
}

#[derive(Default)]
struct Cache {
    /// Keys loaded (or `None`: skipped, already said why).
    keys: HashMap<PathBuf, Option<Arc<PrivateKey>>>,
    /// A password the server accepted.
    password: Option<String>,
}

impl fmt::Debug for SshAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshAuth")
            .field("user", &self.user)
            .field("identities", &self.identities)
            .field("default_identities", &self.default_identities)
            .field("agent", &self.agent)
            .field("password", &self.password.as_ref().map(|_| "****"))
            .field("asker", &self.asker.as_ref().map(|_| "Fn"))
            .finish()
    }
}

impl SshAuth {
    /// `user` with the defaults: the usual key files, the agent, no password yet, nobody to
    /// ask.
    pub fn new(user: impl Into<String>) -> SshAuth {
        SshAuth {
            user: user.into(),
            identities: Vec::new(),
            default_identities: true,
            agent: true,
            password: None,
            asker: None,
            cache: Arc::default(),
        }
    }

    /// Fail early, before connecting, on a `-i` file that can't be read.
    pub(crate) fn check_files(&self) -> Result<()> {
        for path in &self.identities {
            std::fs::File::open(path)
                .map_err(Error::local(format!("reading the key {}", path.display())))?;
        }
        Ok(())
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn ask(&self, question: Ask) -> Option<String> {
        let asker = self.asker.clone()?;
        tokio::task::spawn_blocking(move || asker(question))
            .await
            .ok()
            .flatten()
    }

    /// The key in `path`, decrypted with a passphrase asked for when needed; `Ok(None)` for a
    /// key skipped (said through `hooks`). A missing or unreadable file is an error only when
    /// `required`.
    async fn load(
        &self,
        path: &Path,
        required: bool,
        hooks: &Hooks,
    ) -> Result<Option<Arc<PrivateKey>>> {
        if let Some(cached) = self.cache().keys.get(path) {
            return Ok(cached.clone());
        }
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if required => {
                return Err(Error::local(format!("reading the key {}", path.display()))(
                    e,
                ));
            }
            Err(_) => return Ok(None),
        };
        let key = match russh::keys::decode_secret_key(&text, None) {
            Ok(k) => Some(Arc::new(k)),
            Err(russh::keys::Error::KeyIsEncrypted) => self.decrypt(path, &text, hooks).await,
            Err(e) if required => {
                return Err(Error::Usage(format!(
                    "{}: not a usable private key: {e}",
                    path.display()
                )));
            }
            Err(e) => {
                hooks.note(&format!("skipped the key {}: {e}", path.display()));
                None
            }
        };
        self.cache().keys.insert(path.to_path_buf(), key.clone());
        Ok(key)
    }

    async fn decrypt(&self, path: &Path, text: &str, hooks: &Hooks) -> Option<Arc<PrivateKey>> {
        if self.asker.is_none() {
            hooks.note(&format!(
                "skipped the key {}: it is encrypted, and there is no terminal to ask for its \
                 passphrase (load it into ssh-agent instead)",
                path.display()
            ));
            return None;
        }
        for _ in 0..3 {
            let pass = self
                .ask(Ask::Passphrase {
                    key: path.to_path_buf(),
                })
                .await?;
            if pass.is_empty() {
                return None;
            }
            match russh::keys::decode_secret_key(text, Some(&pass)) {
                Ok(k) => return Some(Arc::new(k)),
                Err(_) => hooks.note("wrong passphrase"),
            }
        }
        None
    }
}

/// The usual private key files, in OpenSSH's order.
fn default_identity_files() -> Vec<PathBuf> {
    let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) else {
        return Vec::new();
    };
    let dir = PathBuf::from(home).join(".ssh");
    ["id_ed25519", "id_ecdsa", "id_rsa"]
        .iter()
        .map(|n| dir.join(n))
        .collect()
}

/// The public key blob in `key.pub`, to skip a file whose key the agent already offered.
fn public_blob(private: &Path) -> Option<Vec<u8>> {
    let mut name = private.as_os_str().to_owned();
    name.push(".pub");
    let key = russh::keys::load_public_key(PathBuf::from(name)).ok()?;
    key.to_bytes().ok()
}

/// What was tried, for the error when nothing worked.
#[derive(Default)]
struct Tried {
    keys: usize,
    password: bool,
}

fn allows(methods: &MethodSet, kind: MethodKind) -> bool {
    methods.contains(&kind)
}

fn ssh_error(e: russh::Error) -> Error {
    super::ssh::russh_error("authenticating", e)
}

/// Log in on `handle` as `auth.user`.
pub(crate) async fn authenticate(
    handle: &mut Handle<Checker>,
    auth: &SshAuth,
    host: &str,
    hooks: &Hooks,
) -> Result<()> {
    let user = auth.user.as_str();
    let mut methods = match handle.authenticate_none(user).await.map_err(ssh_error)? {
        AuthResult::Success => return Ok(()),
        AuthResult::Failure {
            remaining_methods, ..
        } => remaining_methods,
    };
    hooks.trace(&format!(
        "authentication methods offered: {}",
        methods
            .iter()
            .map(<&str>::from)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let mut tried = Tried::default();
    if allows(&methods, MethodKind::PublicKey) {
        match public_keys(handle, auth, hooks, &mut tried).await? {
            None => return Ok(()),
            Some(m) => methods = m,
        }
    }
    if allows(&methods, MethodKind::Password) {
        if password(handle, auth, host, hooks, &mut tried, false).await? {
            return Ok(());
        }
    } else if allows(&methods, MethodKind::KeyboardInteractive)
        && password(handle, auth, host, hooks, &mut tried, true).await?
    {
        return Ok(());
    }
    let mut why = Vec::new();
    if tried.keys > 0 {
        why.push(format!(
            "{} public key{} refused",
            tried.keys,
            if tried.keys == 1 { "" } else { "s" }
        ));
    } else if allows(&methods, MethodKind::PublicKey) {
        why.push("no private key to offer (give one with -i FILE)".to_string());
    }
    if tried.password {
        why.push("password refused".to_string());
    } else if allows(&methods, MethodKind::Password)
        || allows(&methods, MethodKind::KeyboardInteractive)
    {
        why.push("no password (set FERRY_PASSWORD, or run on a terminal to be asked)".to_string());
    }
    if why.is_empty() {
        why.push(format!(
            "the server offers no method this client has ({})",
            methods
                .iter()
                .map(<&str>::from)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Err(Error::AuthFailed(format!(
        "{user}@{host}: {}",
        why.join("; ")
    )))
}

/// Try each key; `Ok(None)` on success, else the methods still allowed.
async fn public_keys(
    handle: &mut Handle<Checker>,
    auth: &SshAuth,
    hooks: &Hooks,
    tried: &mut Tried,
) -> Result<Option<MethodSet>> {
    let user = auth.user.as_str();
    let mut remaining = None;
    let mut offered: Vec<Vec<u8>> = Vec::new();
    let mut rsa_hash = None;

    for path in &auth.identities {
        if let Some(key) = auth.load(path, true, hooks).await? {
            match try_key(handle, user, &key, path, &mut rsa_hash, hooks, tried).await? {
                None => return Ok(None),
                Some(m) => remaining = Some(m),
            }
            if let Ok(b) = key.public_key().to_bytes() {
                offered.push(b);
            }
        }
    }

    if auth.agent && std::env::var_os("SSH_AUTH_SOCK").is_some() {
        match AgentClient::connect_env().await {
            Ok(mut agent) => {
                let ids = agent.request_identities().await.unwrap_or_default();
                for id in ids {
                    let AgentIdentity::PublicKey { key, comment } = &id else {
                        continue;
                    };
                    let blob = key.to_bytes().unwrap_or_default();
                    if offered.contains(&blob) {
                        continue;
                    }
                    offered.push(blob);
                    let hash = if key.algorithm().is_rsa() {
                        rsa_hash_for(handle, &mut rsa_hash).await
                    } else {
                        None
                    };
                    tried.keys += 1;
                    hooks.trace(&format!(
                        "offering the agent's key {} ({comment})",
                        key.fingerprint(HashAlg::Sha256)
                    ));
                    match handle
                        .authenticate_publickey_with(user, key.clone(), hash, &mut agent)
                        .await
                    {
                        Ok(AuthResult::Success) => return Ok(None),
                        Ok(AuthResult::Failure {
                            remaining_methods, ..
                        }) => remaining = Some(remaining_methods),
                        Err(e) => hooks.note(&format!("the agent could not sign: {e}")),
                    }
                }
            }
            Err(e) => hooks.note(&format!("ssh-agent not used: {e}")),
        }
    }

    if auth.default_identities {
        for path in default_identity_files() {
            if !path.exists() {
                continue;
            }
            if public_blob(&path).is_some_and(|b| offered.contains(&b)) {
                continue;
            }
            let Some(key) = auth.load(&path, false, hooks).await? else {
                continue;
            };
            let blob = key.public_key().to_bytes().unwrap_or_default();
            if offered.contains(&blob) {
                continue;
            }
            offered.push(blob);
            match try_key(handle, user, &key, &path, &mut rsa_hash, hooks, tried).await? {
                None => return Ok(None),
                Some(m) => remaining = Some(m),
            }
        }
    }
    Ok(Some(remaining.unwrap_or_else(|| {
        MethodSet::from(&[MethodKind::Password, MethodKind::KeyboardInteractive][..])
    })))
}

/// The RSA signature hash the server takes (asked once per connection).
async fn rsa_hash_for(
    handle: &Handle<Checker>,
    known: &mut Option<Option<HashAlg>>,
) -> Option<HashAlg> {
    if let Some(h) = known {
        return *h;
    }
    // No answer: assume rsa-sha2-256, which every maintained server takes.
    let h = match handle.best_supported_rsa_hash().await {
        Ok(Some(h)) => h,
        _ => Some(HashAlg::Sha256),
    };
    *known = Some(h);
    h
}

#[allow(clippy::too_many_arguments)]
async fn try_key(
    handle: &mut Handle<Checker>,
    user: &str,
    key: &Arc<PrivateKey>,
    path: &Path,
    rsa_hash: &mut Option<Option<HashAlg>>,
    hooks: &Hooks,
    tried: &mut Tried,
) -> Result<Option<MethodSet>> {
    let hash = if key.algorithm().is_rsa() {
        rsa_hash_for(handle, rsa_hash).await
    } else {
        None
    };
    tried.keys += 1;
    hooks.trace(&format!(
        "offering the key {} ({})",
        path.display(),
        key.public_key().fingerprint(HashAlg::Sha256)
    ));
    let with_hash = PrivateKeyWithHashAlg::new(Arc::clone(key), hash);
    match handle
        .authenticate_publickey(user, with_hash)
        .await
        .map_err(ssh_error)?
    {
        AuthResult::Success => Ok(None),
        AuthResult::Failure {
            remaining_methods, ..
        } => Ok(Some(remaining_methods)),
    }
}

/// Password (or keyboard-interactive answered with the password); up to three tries when the
/// password is asked for, one when it was given.
async fn password(
    handle: &mut Handle<Checker>,
    auth: &SshAuth,
    host: &str,
    hooks: &Hooks,
    tried: &mut Tried,
    interactive: bool,
) -> Result<bool> {
    let user = auth.user.as_str();
    let cached = auth.cache().password.clone();
    let given = auth.password.clone().or(cached);
    let attempts = if given.is_some() { 1 } else { 3 };
    for _ in 0..attempts {
        let pass = match &given {
            Some(p) => p.clone(),
            None => match auth
                .ask(Ask::Password {
                    user: user.to_string(),
                    host: host.to_string(),
                })
                .await
            {
                Some(p) => p,
                None => return Ok(false),
            },
        };
        tried.password = true;
        let ok = if interactive {
            hooks.trace("keyboard-interactive, answered with the password");
            keyboard_interactive(handle, user, &pass).await?
        } else {
            hooks.trace("password");
            handle
                .authenticate_password(user, pass.clone())
                .await
                .map_err(ssh_error)?
                .success()
        };
        if ok {
            auth.cache().password = Some(pass);
            return Ok(true);
        }
    }
    Ok(false)
}

/// keyboard-interactive where every hidden prompt is the password (what PAM's usual
/// `Password:` conversation is); a visible prompt is answered empty.
async fn keyboard_interactive(
    handle: &mut Handle<Checker>,
    user: &str,
    pass: &str,
) -> Result<bool> {
    let mut reply = handle
        .authenticate_keyboard_interactive_start(user, None)
        .await
        .map_err(ssh_error)?;
    // Servers may send empty rounds; a bounded number of them.
    for _ in 0..8 {
        match reply {
            KeyboardInteractiveAuthResponse::Success => return Ok(true),
            KeyboardInteractiveAuthResponse::Failure { .. } => return Ok(false),
            KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                let answers = prompts
                    .iter()
                    .map(|p| {
                        if p.echo {
                            String::new()
                        } else {
                            pass.to_string()
                        }
                    })
                    .collect();
                reply = handle
                    .authenticate_keyboard_interactive_respond(answers)
                    .await
                    .map_err(ssh_error)?;
            }
        }
    }
    Ok(false)
}
