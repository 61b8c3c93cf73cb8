//! Users shared by Ferry's FTP and SFTP servers.
//!
//! # Layout
//! - [`UserSpec`] / [`AnonymousSpec`]: the `[[users]]` / `[anonymous]` tables of `ferry.toml`.
//! - [`Permissions`]: what a user may do (list, read, write, delete, rename, mkdir).
//! - [`Account`]: a logged-in identity with its root and permissions.
//! - [`Authenticator`]: verifies passwords (argon2id PHC strings) off the async workers, in
//!   comparable time whether or not the user exists, so user names can't be probed.
//! - [`hash_password`]: makes a PHC string (`ferry hash-password`).

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

/// What a user may do. Parsed from a list such as `["list", "read"]` or `["all"]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Permissions {
    pub list: bool,
    pub read: bool,
    pub write: bool,
    pub delete: bool,
    pub rename: bool,
    pub mkdir: bool,
}

impl Permissions {
    /// Everything allowed.
    pub const ALL: Permissions =
        Permissions { list: true, read: true, write: true, delete: true, rename: true, mkdir: true };
    /// List and read only.
    pub const READ_ONLY: Permissions =
        Permissions { list: true, read: true, write: false, delete: false, rename: false, mkdir: false };

    /// Parse names (`list`, `read`, `write`, `delete`, `rename`, `mkdir`, `all`, `read-only`).
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Self, AuthError> {
        let _ = names;
        todo!()
    }
}

/// One `[[users]]` entry of the configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    /// Login name.
    pub name: String,
    /// argon2id PHC string from `ferry hash-password`.
    pub password_hash: String,
    /// Directory served as `/` to this user.
    pub root: PathBuf,
    /// Permission names; default `["all"]`.
    #[serde(default = "default_permissions")]
    pub permissions: Vec<String>,
}

fn default_permissions() -> Vec<String> {
    vec!["all".to_string()]
}

/// The `[anonymous]` table: enables `anonymous`/`ftp` logins, read-only, with their own root.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnonymousSpec {
    /// Directory served to anonymous users.
    pub root: PathBuf,
}

/// A logged-in identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub root: PathBuf,
    pub permissions: Permissions,
    pub anonymous: bool,
}

/// Configuration errors.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("unknown permission '{0}' (expected list, read, write, delete, rename, mkdir, all or read-only)")]
    UnknownPermission(String),
    #[error("user '{user}': password_hash is not a valid argon2 PHC string: {reason}")]
    BadHash { user: String, reason: String },
    #[error("user '{0}' is defined twice")]
    Duplicate(String),
    #[error("user name '{0}' is reserved for anonymous access")]
    Reserved(String),
    #[error("invalid user name '{0}'")]
    InvalidName(String),
}

/// Verifies logins.
#[derive(Debug)]
pub struct Authenticator {
    // implementation-defined fields
}

impl Authenticator {
    /// Build from configuration. Hashes are validated here so a bad file fails at start.
    pub fn new(users: Vec<UserSpec>, anonymous: Option<AnonymousSpec>) -> Result<Self, AuthError> {
        let _ = (users, anonymous);
        todo!()
    }

    /// `true` if `name` is an anonymous login name (`anonymous` or `ftp`, any case) and
    /// anonymous access is enabled.
    pub fn is_anonymous(&self, name: &str) -> bool {
        let _ = name;
        todo!()
    }

    /// Check a login. Hashing runs on the blocking pool. Unknown users cost the same as
    /// known ones (verified against a dummy hash). Anonymous accepts any password.
    pub async fn authenticate(&self, name: &str, password: &str) -> Option<Arc<Account>> {
        let _ = (name, password);
        todo!()
    }
}

/// Hash a password as an argon2id PHC string with a random salt.
pub fn hash_password(password: &str) -> String {
    let _ = password;
    todo!()
}
