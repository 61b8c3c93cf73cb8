//! Users shared by Ferry's FTP and SFTP servers.
//!
//! # Layout
//! - [`UserSpec`]: a `[[users]]` table of `ferry.toml`.
//! - [`Permissions`]: what a user may do (list, read, write, delete, rename, mkdir).
//! - [`Account`]: a logged-in identity with its home and permissions.
//! - [`Authenticator`]: verifies passwords (argon2id PHC strings) off the async workers, in
//!   comparable time whether or not the user exists, so user names can't be probed; and says
//!   whether a public key is one of a user's.
//! - [`hash_password`]: makes a PHC string (`ferry hash-password`).
//! - [`keys`]: public keys from OpenSSH `authorized_keys` lines.
//! - [`LoginThrottle`] (`throttle`): failed-login limits per client address, counted when a
//!   guess starts, so parallel guesses cannot exceed them; guesses for a name that has failed
//!   too often slowed, never refused, so nobody can lock a user out.

pub mod keys;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use tokio::sync::Semaphore;

mod throttle;
pub use keys::{AuthorizedKey, KeyError};
// Accounts carry their allowed networks as these.
pub use ipnet;
pub use throttle::{DEFAULT_BACKOFF, LoginAttempt, LoginThrottle, Throttled};

/// What a user may do. Parsed from a list such as `["list", "read"]` or `["all"]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Permissions {
    pub list: bool,
    pub read: bool,
    pub write: bool,
    pub delete: bool,
    pub rename: bool,
    pub mkdir: bool,
    /// Writes only create new files: no overwrite, append, resume or attribute change
    /// (the `upload-only` drop folder).
    pub create_only: bool,
}

impl Permissions {
    /// Everything allowed.
    pub const ALL: Permissions = Permissions {
        list: true,
        read: true,
        write: true,
        delete: true,
        rename: true,
        mkdir: true,
        create_only: false,
    };
    /// List and read only.
    pub const READ_ONLY: Permissions = Permissions {
        list: true,
        read: true,
        write: false,
        delete: false,
        rename: false,
        mkdir: false,
        create_only: false,
    };
    /// A drop folder: new files may be uploaded; nothing may be listed, read, replaced or
    /// removed.
    pub const UPLOAD_ONLY: Permissions = Permissions {
        list: false,
        read: false,
        write: true,
        delete: false,
        rename: false,
        mkdir: false,
        create_only: true,
    };

    /// Parse names (`list`, `read`, `write`, `delete`, `rename`, `mkdir`, `all`, `read-only`,
    /// `upload-only`).
    /// Names are case-insensitive and combine (`["read-only", "write"]`); an empty list allows
    /// nothing.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Self, AuthError> {
        let mut p = Permissions::default();
        for name in names {
            let name = name.as_ref();
            match name.trim().to_ascii_lowercase().as_str() {
                "list" => p.list = true,
                "read" => p.read = true,
                "write" => {
                    p = p.union(Permissions {
                        write: true,
                        ..Permissions::default()
                    })
                }
                "delete" => p.delete = true,
                "rename" => p.rename = true,
                "mkdir" => p.mkdir = true,
                "all" => p = p.union(Permissions::ALL),
                "read-only" => p = p.union(Permissions::READ_ONLY),
                "upload-only" => p = p.union(Permissions::UPLOAD_ONLY),
                _ => return Err(AuthError::UnknownPermission(name.to_string())),
            }
        }
        Ok(p)
    }

    /// Everything allowed by `self` or `other` (writes are create-only when every side that
    /// allows writes says so).
    pub const fn union(self, other: Permissions) -> Permissions {
        Permissions {
            list: self.list || other.list,
            read: self.read || other.read,
            write: self.write || other.write,
            delete: self.delete || other.delete,
            rename: self.rename || other.rename,
            mkdir: self.mkdir || other.mkdir,
            create_only: match (self.write, other.write) {
                (true, true) => self.create_only && other.create_only,
                (true, false) => self.create_only,
                (false, true) => other.create_only,
                (false, false) => false,
            },
        }
    }
}

/// One `[[users]]` entry of the configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    /// Login name.
    pub name: String,
    /// argon2id PHC string from `ferry hash-password`; `None` for a user who logs in with keys
    /// only.
    #[serde(default)]
    pub password_hash: Option<String>,
    /// Public keys the user may log in with (SFTP), as OpenSSH `authorized_keys` lines.
    #[serde(default)]
    pub authorized_keys: Vec<String>,
    /// A file of `authorized_keys` lines, read at start (and on reload), in addition to
    /// `authorized_keys`.
    #[serde(default)]
    pub authorized_keys_file: Option<PathBuf>,
    /// The user's home: the directory served as `/` to this user (`root` is read too).
    #[serde(alias = "root")]
    pub home: PathBuf,
    /// Permission names; default `["all"]`.
    #[serde(default = "default_permissions")]
    pub permissions: Vec<String>,
    /// Most sessions this user may hold at once, every protocol together (`None`: the
    /// server's default).
    #[serde(default)]
    pub max_sessions: Option<usize>,
    /// Client networks (CIDR, or single addresses) this user may log in from; empty: any.
    #[serde(default)]
    pub allowed_networks: Vec<String>,
    /// Upload bandwidth of all this user's sessions together, per second (`"10MiB"`,
    /// `"500kB"`, `"1000"` bytes; see [`parse_rate`]); `None`: unlimited.
    #[serde(default)]
    pub upload_rate: Option<String>,
    /// Download bandwidth of all this user's sessions together, per second.
    #[serde(default)]
    pub download_rate: Option<String>,
    /// Most bytes the user's files may hold together (`"10GiB"`, a number of bytes; see
    /// [`parse_size`]); `0` or `"none"`: no quota, whatever the server's default; `None`:
    /// the server's default.
    #[serde(default)]
    pub quota_bytes: Option<SizeValue>,
    /// Most files the user may hold (`0`: no quota, whatever the server's default; `None`:
    /// the server's default).
    #[serde(default)]
    pub quota_files: Option<u64>,
}

/// A size as written in the configuration file: a number of bytes, or text with a unit
/// (`"10GiB"`, `"500MB"`, `"none"`); read by [`parse_size`] when the users are built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeValue {
    /// A bare number: bytes.
    Bytes(u64),
    /// Text, checked by [`parse_size`].
    Text(String),
}

impl SizeValue {
    /// The size in bytes (`0`: none), or `None` if the text is not a size.
    pub fn bytes(&self) -> Option<u64> {
        match self {
            SizeValue::Bytes(n) => Some(*n),
            SizeValue::Text(t) => parse_size(t),
        }
    }
}

impl fmt::Display for SizeValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeValue::Bytes(n) => write!(f, "{n}"),
            SizeValue::Text(t) => f.write_str(t),
        }
    }
}

impl<'de> Deserialize<'de> for SizeValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = SizeValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"10GiB\" or \"500MB\", a number of bytes, or \"none\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<SizeValue, E> {
                Ok(SizeValue::Bytes(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<SizeValue, E> {
                u64::try_from(v)
                    .map(SizeValue::Bytes)
                    .map_err(|_| E::custom(format!("{v}: a size can't be negative")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SizeValue, E> {
                Ok(SizeValue::Text(v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A rate in bytes per second from `"10MiB"`, `"10 MiB/s"`, `"500kB"`, `"1G"` or `"4096"`:
/// `k`/`M`/`G` are powers of 1000, `Ki`/`Mi`/`Gi` of 1024, `B` and `/s` optional. `None` if
/// malformed or zero.
pub fn parse_rate(text: &str) -> Option<u64> {
    let t = text.trim();
    let t = t.strip_suffix("/s").unwrap_or(t).trim_end();
    amount(t).filter(|r| *r > 0)
}

/// A size in bytes from `"10GiB"`, `"500MB"`, `"1G"` or `"4096"`, with the units of
/// [`parse_rate`] (no `/s`); `"0"` and `"none"` are 0 (no limit). `None` if malformed.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("none") {
        return Some(0);
    }
    amount(t)
}

/// A number with an optional unit (`k`, `Mi`, ...) and an optional `B`.
fn amount(t: &str) -> Option<u64> {
    let t = t.strip_suffix(['B', 'b']).unwrap_or(t);
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "" => 1,
        "k" | "K" => 1000,
        "M" => 1000 * 1000,
        "G" => 1000 * 1000 * 1000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(factor)
}

fn default_permissions() -> Vec<String> {
    vec!["all".to_string()]
}

/// A logged-in identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    /// Where the account's files are: the directory served as its `/`.
    pub home: PathBuf,
    pub permissions: Permissions,
    /// Logged in without credentials (FTP's anonymous login): never shares anything with a
    /// named account.
    pub anonymous: bool,
    /// Where this account may log in from, and how many times at once.
    pub limits: AccountLimits,
}

/// An account's own login limits (`[[users]]` keys).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountLimits {
    /// Most sessions at once (`None`: the server's default).
    pub max_sessions: Option<usize>,
    /// Client networks it may log in from; empty: any.
    pub allowed_networks: Vec<ipnet::IpNet>,
    /// Upload bytes per second, all its sessions together (`None`: unlimited).
    pub upload_rate: Option<u64>,
    /// Download bytes per second, all its sessions together (`None`: unlimited).
    pub download_rate: Option<u64>,
    /// Most bytes its files may hold (`None`: the server's default; `Some(0)`: no quota).
    pub quota_bytes: Option<u64>,
    /// Most files it may hold (`None`: the server's default; `Some(0)`: no quota).
    pub quota_files: Option<u64>,
}

impl AccountLimits {
    /// Whether a client at `ip` may log in to this account (IPv4-mapped IPv6 counts as IPv4).
    pub fn allows_address(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.allowed_networks.is_empty() || self.allowed_networks.iter().any(|n| n.contains(&ip))
    }
}

/// Configuration errors.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "unknown permission '{0}' (expected list, read, write, delete, rename, mkdir, all, read-only or upload-only)"
    )]
    UnknownPermission(String),
    #[error("user '{user}': password_hash is not a valid argon2 PHC string: {reason}")]
    BadHash { user: String, reason: String },
    #[error("user '{0}' is defined twice")]
    Duplicate(String),
    #[error("user name '{0}' is reserved for anonymous access")]
    Reserved(String),
    #[error("invalid user name '{0}'")]
    InvalidName(String),
    #[error(
        "user '{user}': allowed_networks: '{value}' is not a network (CIDR, e.g. 192.0.2.0/24) nor an address"
    )]
    BadNetwork { user: String, value: String },
    #[error(
        "user '{user}': {key}: '{value}' is not a rate (e.g. \"10MiB\", \"500kB\", bytes per second)"
    )]
    BadRate {
        user: String,
        key: &'static str,
        value: String,
    },
    #[error(
        "user '{user}': quota_bytes: '{value}' is not a size (e.g. \"10GiB\", \"500MB\", a number of bytes, or \"none\")"
    )]
    BadSize { user: String, value: String },
    #[error("user '{0}' has neither password_hash nor authorized keys: nobody could log in as it")]
    NoCredentials(String),
    #[error("user '{user}': {source}: line {line} of its authorized keys")]
    BadKey {
        user: String,
        line: usize,
        source: KeyError,
    },
    #[error("user '{user}': cannot read authorized_keys_file {path}: {reason}")]
    KeysFile {
        user: String,
        path: String,
        reason: String,
    },
}

/// How long a verified login stays in the [`Authenticator`]'s cache.
pub const LOGIN_CACHE_TTL: Duration = Duration::from_secs(10 * 60);
/// How many verified logins the [`Authenticator`]'s cache holds at most.
pub const LOGIN_CACHE_CAPACITY: usize = 10_000;

/// Names reserved for FTP's anonymous login (compared ignoring ASCII case): no configured user
/// may take them.
pub const ANONYMOUS_NAMES: [&str; 2] = ["anonymous", "ftp"];

type HmacSha256 = Hmac<Sha256>;

/// One configured user.
struct User {
    /// The validated PHC string; `None` when the user has keys only.
    hash: Option<Arc<str>>,
    /// Public keys accepted for this user.
    keys: Vec<AuthorizedKey>,
    account: Arc<Account>,
}

/// A recently verified login: a keyed digest of name and password, never the password.
struct CachedLogin {
    tag: [u8; 32],
    expires: Instant,
}

/// Verifies logins.
///
/// # Security
/// - Passwords are checked against argon2 PHC strings on the blocking pool, at most a few at
///   once (a semaphore sized to the CPUs), so a login flood queues instead of exhausting memory.
/// - An unknown user name is verified against a dummy hash made with the first configured
///   user's parameters, so the time taken does not reveal whether a name exists (as long as all
///   users share parameters, which `ferry hash-password` ensures).
/// - **Login cache (a deliberate trade-off).** After a successful argon2 check, an
///   HMAC-SHA256 of the name and password, keyed with 64 random bytes drawn at start and held
///   only in memory, is kept for [`LOGIN_CACHE_TTL`] (at most [`LOGIN_CACHE_CAPACITY`] entries).
///   A later login of the same user with the same password matches that digest (compared in
///   constant time) and skips argon2, so clients that open many sessions don't pay ~20 ms of
///   CPU and 19 MiB each. The cost: for those minutes, someone able to read this process's
///   memory could test guesses against the digest at SHA-256 speed rather than argon2 speed.
///   Only the right password can hit the cache; wrong passwords and unknown users always pay
///   full argon2, and failed logins are never cached.
pub struct Authenticator {
    users: HashMap<String, User>,
    /// Parameters for the dummy hash (those of the first user, or argon2's defaults).
    dummy_params: Params,
    /// PHC string verified for unknown users; made at start when users exist, else on first use.
    dummy: Arc<OnceLock<String>>,
    /// One HMAC-SHA256 block of key.
    cache_key: [u8; 64],
    cache: Mutex<HashMap<String, CachedLogin>>,
    verifiers: Semaphore,
    /// Dedicated hashing threads (see [`HashPool`]).
    pool: HashPool,
}

/// A few long-lived threads for password hashing. Each argon2 verification allocates its memory
/// cost (19 MiB by default); on tokio's blocking pool that memory would be retained by the
/// allocator of every thread that ever hashed (hundreds of them under a login flood). Here at
/// most `threads` keep it. Jobs wait in a bounded queue; a session whose job finds it full
/// waits asynchronously, holding no thread (a flood of logins must not take the blocking pool
/// that storage calls and transfers use). The threads start at the first job, not with the
/// pool: a server that drops privileges after loading its users must have no thread yet, and
/// threads started later inherit what the server gave up.
struct HashPool {
    threads: usize,
    jobs: OnceLock<tokio::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>>,
}

impl HashPool {
    fn new(threads: usize) -> Self {
        HashPool {
            threads,
            jobs: OnceLock::new(),
        }
    }

    fn jobs(&self) -> &tokio::sync::mpsc::Sender<Box<dyn FnOnce() + Send>> {
        self.jobs.get_or_init(|| {
            let (jobs, rx) = tokio::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>(1024);
            let rx = Arc::new(Mutex::new(rx));
            for i in 0..self.threads {
                let rx = Arc::clone(&rx);
                let spawned = std::thread::Builder::new()
                    .name(format!("ferry-hash-{i}"))
                    .spawn(move || {
                        loop {
                            let job = match rx.lock() {
                                Ok(mut guard) => guard.blocking_recv(),
                                Err(_) => return,
                            };
                            match job {
                                Some(job) => job(),
                                None => return,
                            }
                        }
                    });
                if spawned.is_err() {
                    break;
                }
            }
            jobs
        })
    }

    /// Run `f` on a hashing thread; `None` if the pool is gone.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Box<dyn FnOnce() + Send> = Box::new(move || {
            let _ = tx.send(f());
        });
        // The queue is bounded; a full one makes this session wait, on no thread.
        self.jobs().send(job).await.ok()?;
        rx.await.ok()
    }
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print hashes, the cache or its key.
        let mut names: Vec<&str> = self.users.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("Authenticator")
            .field("users", &names)
            .finish_non_exhaustive()
    }
}

fn bad_hash(user: &str, reason: impl fmt::Display) -> AuthError {
    AuthError::BadHash {
        user: user.to_string(),
        reason: reason.to_string(),
    }
}

/// Check that `phc` is a complete argon2 PHC string we can verify against; its parameters.
fn validate_hash(user: &str, phc: &str) -> Result<Params, AuthError> {
    let hash = PasswordHash::new(phc).map_err(|e| bad_hash(user, e))?;
    Algorithm::try_from(hash.algorithm).map_err(|e| bad_hash(user, e))?;
    if let Some(version) = hash.version {
        Version::try_from(version).map_err(|e| bad_hash(user, e))?;
    }
    let params = Params::try_from(&hash).map_err(|e| bad_hash(user, e))?;
    if hash.salt.is_none() {
        return Err(bad_hash(user, "no salt"));
    }
    if hash.hash.is_none() {
        return Err(bad_hash(user, "no hash output"));
    }
    Ok(params)
}

fn validate_name(name: &str) -> Result<(), AuthError> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(AuthError::InvalidName(name.to_string()));
    }
    if ANONYMOUS_NAMES.iter().any(|a| name.eq_ignore_ascii_case(a)) {
        return Err(AuthError::Reserved(name.to_string()));
    }
    Ok(())
}

/// A PHC string for a random password with `params`: what unknown users are checked against.
fn make_dummy(params: &Params) -> String {
    let password: [u8; 16] = rand::random();
    hash_with(&password, params.clone())
}

fn hash_with(password: &[u8], params: Params) -> String {
    let salt_bytes: [u8; 16] = rand::random();
    let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    // 16 bytes always encode to a valid salt, and argon2 accepts any password length we pass
    // with parameters it built itself; a failure here is a bug, not input.
    let phc = SaltString::encode_b64(&salt_bytes)
        .and_then(|salt| hasher.hash_password(password, &salt).map(|h| h.to_string()));
    match phc {
        Ok(phc) => phc,
        Err(e) => panic!("argon2 hashing with valid parameters failed: {e}"),
    }
}

/// `allowed_networks` of `user`: CIDR networks, or single addresses.
fn parse_networks(user: &str, values: &[String]) -> Result<Vec<ipnet::IpNet>, AuthError> {
    values
        .iter()
        .map(|v| {
            let v = v.trim();
            v.parse::<ipnet::IpNet>()
                .or_else(|_| v.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map(|n| n.trunc())
                .map_err(|_| AuthError::BadNetwork {
                    user: user.to_string(),
                    value: v.to_string(),
                })
        })
        .collect()
}

/// The keys of `spec`: its inline lines, then its file's.
fn load_keys(spec: &UserSpec) -> Result<Vec<AuthorizedKey>, AuthError> {
    let bad = |(line, source)| AuthError::BadKey {
        user: spec.name.clone(),
        line,
        source,
    };
    let mut keys = AuthorizedKey::parse_all(&spec.authorized_keys.join("\n")).map_err(bad)?;
    if let Some(path) = &spec.authorized_keys_file {
        let text = std::fs::read_to_string(path).map_err(|e| AuthError::KeysFile {
            user: spec.name.clone(),
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        keys.extend(AuthorizedKey::parse_all(&text).map_err(bad)?);
    }
    Ok(keys)
}

/// `true` if `password` matches the PHC string `phc` (which was validated at start).
fn verify(phc: &str, password: &[u8]) -> bool {
    match PasswordHash::new(phc) {
        Ok(hash) => Argon2::default().verify_password(password, &hash).is_ok(),
        Err(_) => false,
    }
}

impl Authenticator {
    /// Build from configuration. Hashes and keys are validated here (and key files read) so a
    /// bad file fails at start.
    ///
    /// User names must be non-empty without whitespace or control characters
    /// ([`AuthError::InvalidName`]), unique ([`AuthError::Duplicate`], compared exactly) and not
    /// `anonymous`/`ftp` in any case ([`AuthError::Reserved`]); each user needs a password hash
    /// or a key ([`AuthError::NoCredentials`]).
    pub fn new(users: Vec<UserSpec>) -> Result<Self, AuthError> {
        let mut map = HashMap::with_capacity(users.len());
        let mut dummy_params = None;
        for spec in users {
            validate_name(&spec.name)?;
            let hash = match &spec.password_hash {
                Some(phc) => {
                    let params = validate_hash(&spec.name, phc)?;
                    dummy_params.get_or_insert(params);
                    Some(Arc::from(phc.as_str()))
                }
                None => None,
            };
            let keys = load_keys(&spec)?;
            if hash.is_none() && keys.is_empty() {
                return Err(AuthError::NoCredentials(spec.name));
            }
            let permissions = Permissions::from_names(&spec.permissions)?;
            if map.contains_key(&spec.name) {
                return Err(AuthError::Duplicate(spec.name));
            }
            let rate = |key: &'static str, value: &Option<String>| match value {
                None => Ok(None),
                Some(v) => parse_rate(v).map(Some).ok_or_else(|| AuthError::BadRate {
                    user: spec.name.clone(),
                    key,
                    value: v.clone(),
                }),
            };
            let limits = AccountLimits {
                max_sessions: spec.max_sessions,
                allowed_networks: parse_networks(&spec.name, &spec.allowed_networks)?,
                upload_rate: rate("upload_rate", &spec.upload_rate)?,
                download_rate: rate("download_rate", &spec.download_rate)?,
                quota_bytes: match &spec.quota_bytes {
                    None => None,
                    Some(v) => Some(v.bytes().ok_or_else(|| AuthError::BadSize {
                        user: spec.name.clone(),
                        value: v.to_string(),
                    })?),
                },
                quota_files: spec.quota_files,
            };
            let account = Arc::new(Account {
                name: spec.name.clone(),
                home: spec.home,
                permissions,
                anonymous: false,
                limits,
            });
            map.insert(
                spec.name,
                User {
                    hash,
                    keys,
                    account,
                },
            );
        }
        let have_hashes = dummy_params.is_some();
        let dummy_params = dummy_params.unwrap_or_default();
        let dummy = Arc::new(OnceLock::new());
        if have_hashes {
            dummy.get_or_init(|| make_dummy(&dummy_params));
        }
        let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Authenticator {
            users: map,
            dummy_params,
            dummy,
            cache_key: rand::random(),
            cache: Mutex::new(HashMap::new()),
            verifiers: Semaphore::new(parallelism),
            pool: HashPool::new(parallelism),
        })
    }

    /// The account `name` logs in as with the public key `blob` (SSH wire encoding), if that
    /// key is authorized for it. Only which key: the SSH layer proves the client holds it.
    pub fn authorized_key(&self, name: &str, blob: &[u8]) -> Option<Arc<Account>> {
        let user = self.users.get(name)?;
        user.keys
            .iter()
            .any(|k| k.blob == blob)
            .then(|| Arc::clone(&user.account))
    }

    /// Whether any user logs in with a password (so a server offers password logins).
    pub fn any_password(&self) -> bool {
        self.users.values().any(|u| u.hash.is_some())
    }

    /// Whether any user has a public key (so a server offers key logins).
    pub fn any_key(&self) -> bool {
        self.users.values().any(|u| !u.keys.is_empty())
    }

    /// Whether `name` may log in with a password at all (a configured user with a hash).
    pub fn has_password(&self, name: &str) -> bool {
        self.users.get(name).is_some_and(|u| u.hash.is_some())
    }

    /// Check a password login. Hashing runs on the blocking pool. Unknown users, and users with
    /// keys only, cost the same as known ones (verified against a dummy hash).
    ///
    /// A successful login is remembered for [`LOGIN_CACHE_TTL`]; see the type's security notes.
    pub async fn authenticate(&self, name: &str, password: &str) -> Option<Arc<Account>> {
        let user = self.users.get(name).filter(|u| u.hash.is_some());
        let tag = self.tag(name, password);
        if let Some(user) = user {
            if self.cache_hit(name, &tag) {
                return Some(Arc::clone(&user.account));
            }
        }

        let phc = match user.and_then(|u| u.hash.as_ref()) {
            Some(hash) => Arc::clone(hash),
            None => Arc::from(self.dummy_phc()),
        };
        let password = password.as_bytes().to_vec();
        let dummy = Arc::clone(&self.dummy);
        let dummy_params = self.dummy_params.clone();
        let verified = {
            // The semaphore is never closed; if it were, verify without a permit.
            let _permit = self.verifiers.acquire().await.ok();
            // A flood of identical logins (a client pool reconnecting) hashes once: whoever
            // waited for a permit finds the result of the first.
            if let Some(user) = user {
                if self.cache_hit(name, &tag) {
                    return Some(Arc::clone(&user.account));
                }
            }
            self.pool
                .run(move || {
                    let phc: &str = if phc.is_empty() {
                        dummy.get_or_init(|| make_dummy(&dummy_params))
                    } else {
                        &phc
                    };
                    verify(phc, &password)
                })
                .await
                .unwrap_or(false)
        };

        let user = user?;
        if !verified {
            return None;
        }
        self.remember(name, tag);
        Some(Arc::clone(&user.account))
    }

    /// The dummy PHC string if made already; `""` means "make it on the blocking pool".
    fn dummy_phc(&self) -> &str {
        self.dummy.get().map_or("", String::as_str)
    }

    fn tag(&self, name: &str, password: &str) -> HmacSha256 {
        let mut mac = <HmacSha256 as KeyInit>::new(&self.cache_key.into());
        mac.update(&(name.len() as u64).to_be_bytes());
        mac.update(name.as_bytes());
        mac.update(password.as_bytes());
        mac
    }

    fn lock_cache(&self) -> MutexGuard<'_, HashMap<String, CachedLogin>> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn cache_hit(&self, name: &str, tag: &HmacSha256) -> bool {
        let stored = match self.lock_cache().get(name) {
            Some(entry) if Instant::now() < entry.expires => entry.tag,
            _ => return false,
        };
        // Constant-time comparison.
        tag.clone().verify_slice(&stored).is_ok()
    }

    fn remember(&self, name: &str, tag: HmacSha256) {
        let tag: [u8; 32] = tag.finalize().into_bytes().into();
        let mut cache = self.lock_cache();
        if cache.len() >= LOGIN_CACHE_CAPACITY && !cache.contains_key(name) {
            let now = Instant::now();
            cache.retain(|_, entry| now < entry.expires);
            if cache.len() >= LOGIN_CACHE_CAPACITY {
                if let Some(victim) = cache.keys().next().cloned() {
                    cache.remove(&victim);
                }
            }
        }
        cache.insert(
            name.to_string(),
            CachedLogin {
                tag,
                expires: Instant::now() + LOGIN_CACHE_TTL,
            },
        );
    }
}

/// Hash a password as an argon2id PHC string with a random salt.
///
/// Uses argon2id v19 with argon2's default parameters (19 MiB, 2 passes, 1 lane) and a 16-byte
/// salt from the thread-local CSPRNG.
pub fn hash_password(password: &str) -> String {
    hash_with(password.as_bytes(), Params::default())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A PHC string with tiny parameters so tests stay fast in debug builds.
    fn cheap_hash(password: &str) -> String {
        hash_with(password.as_bytes(), Params::new(8, 1, 1, None).unwrap())
    }

    fn user(name: &str, password: &str) -> UserSpec {
        UserSpec {
            name: name.to_string(),
            password_hash: Some(cheap_hash(password)),
            authorized_keys: Vec::new(),
            authorized_keys_file: None,
            home: PathBuf::from(format!("/srv/{name}")),
            permissions: default_permissions(),
            max_sessions: None,
            allowed_networks: Vec::new(),
            upload_rate: None,
            download_rate: None,
            quota_bytes: None,
            quota_files: None,
        }
    }

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILA9jLcKhe7kfCVY4vCdA4upqWLxtZTzGfD+4pjWY/dC alice@laptop";

    #[test]
    fn permission_names() {
        assert_eq!(Permissions::from_names(&["all"]).unwrap(), Permissions::ALL);
        assert_eq!(
            Permissions::from_names(&["read-only"]).unwrap(),
            Permissions::READ_ONLY
        );
        assert_eq!(
            Permissions::from_names(&["list", "READ"]).unwrap(),
            Permissions::READ_ONLY
        );
        let p = Permissions::from_names(&["read-only", "mkdir"]).unwrap();
        assert!(p.list && p.read && p.mkdir && !p.write && !p.delete && !p.rename);
        assert_eq!(
            Permissions::from_names::<&str>(&[]).unwrap(),
            Permissions::default()
        );
        assert!(matches!(
            Permissions::from_names(&["read", "exec"]),
            Err(AuthError::UnknownPermission(p)) if p == "exec"
        ));
    }

    #[test]
    fn rates_have_units() {
        for (text, rate) in [
            ("4096", 4096),
            ("10MiB", 10 << 20),
            ("10 MiB/s", 10 << 20),
            ("500kB", 500_000),
            ("2M", 2_000_000),
            ("1Gi", 1 << 30),
            ("64KiB", 64 << 10),
        ] {
            assert_eq!(parse_rate(text), Some(rate), "{text}");
        }
        for bad in ["", "0", "fast", "10 parsecs", "-5", "99999999999999999999G"] {
            assert_eq!(parse_rate(bad), None, "{bad}");
        }
    }

    #[test]
    fn sizes_have_units_and_zero_is_none() {
        for (text, size) in [
            ("4096", 4096),
            ("10GiB", 10 << 30),
            ("500MB", 500_000_000),
            ("1 Ki", 1024),
            ("0", 0),
            ("none", 0),
            ("None", 0),
        ] {
            assert_eq!(parse_size(text), Some(size), "{text}");
        }
        for bad in ["", "big", "10 MiB/s", "-5", "1.5G", "99999999999999999999G"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn quotas_are_read_and_bad_sizes_refused() {
        let mut spec = user("q", "pw");
        spec.quota_bytes = Some(SizeValue::Text("10MiB".into()));
        spec.quota_files = Some(100);
        let auth = Authenticator::new(vec![spec.clone()]).unwrap();
        let limits = &auth.users["q"].account.limits;
        assert_eq!(
            (limits.quota_bytes, limits.quota_files),
            (Some(10 << 20), Some(100))
        );
        spec.quota_bytes = Some(SizeValue::Bytes(0));
        let auth = Authenticator::new(vec![spec.clone()]).unwrap();
        assert_eq!(auth.users["q"].account.limits.quota_bytes, Some(0));
        spec.quota_bytes = Some(SizeValue::Text("lots".into()));
        let e = Authenticator::new(vec![spec]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "user 'q': quota_bytes: 'lots' is not a size (e.g. \"10GiB\", \"500MB\", a number of bytes, or \"none\")"
        );
    }

    #[test]
    fn allowed_networks_are_checked_and_parsed() {
        let mut spec = user("net", "pw");
        spec.allowed_networks = vec!["192.0.2.0/24".into(), "2001:db8::1".into()];
        let auth = Authenticator::new(vec![spec.clone()]).unwrap();
        let limits = &auth.users["net"].account.limits;
        assert!(limits.allows_address("192.0.2.7".parse().unwrap()));
        assert!(limits.allows_address("::ffff:192.0.2.7".parse().unwrap()));
        assert!(limits.allows_address("2001:db8::1".parse().unwrap()));
        assert!(!limits.allows_address("2001:db8::2".parse().unwrap()));
        assert!(!limits.allows_address("198.51.100.1".parse().unwrap()));
        assert!(AccountLimits::default().allows_address("198.51.100.1".parse().unwrap()));
        spec.allowed_networks = vec!["192.0.2.0/33".into()];
        assert!(matches!(
            Authenticator::new(vec![spec]),
            Err(AuthError::BadNetwork { .. })
        ));
    }

    #[test]
    fn upload_only_is_create_only_until_write_is_granted() {
        let p = Permissions::from_names(&["upload-only"]).unwrap();
        assert_eq!(p, Permissions::UPLOAD_ONLY);
        assert!(p.write && p.create_only && !p.list && !p.read && !p.delete);
        // With list added, still no overwrite; with write or all, overwrite again.
        let p = Permissions::from_names(&["upload-only", "list"]).unwrap();
        assert!(p.list && p.create_only);
        for more in ["write", "all"] {
            let p = Permissions::from_names(&["upload-only", more]).unwrap();
            assert!(p.write && !p.create_only, "{more}");
            let p = Permissions::from_names(&[more, "upload-only"]).unwrap();
            assert!(p.write && !p.create_only, "{more} first");
        }
        assert!(!Permissions::from_names(&["write"]).unwrap().create_only);
    }

    #[test]
    fn hash_password_makes_verifiable_argon2id() {
        let phc = hash_password("s3cret pass");
        assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
        validate_hash("x", &phc).unwrap();
        assert!(verify(&phc, b"s3cret pass"));
        assert!(!verify(&phc, b"s3cret pas"));
        assert_ne!(phc, hash_password("s3cret pass"), "salt is random");
    }

    #[tokio::test]
    async fn login_round_trip() {
        let auth = Authenticator::new(vec![user("alice", "pw1"), user("bob", "pw2")]).unwrap();
        let a = auth.authenticate("alice", "pw1").await.unwrap();
        assert_eq!(a.name, "alice");
        assert_eq!(a.home, PathBuf::from("/srv/alice"));
        assert_eq!(a.permissions, Permissions::ALL);
        assert!(!a.anonymous);
        assert!(auth.authenticate("alice", "pw2").await.is_none());
        assert!(auth.authenticate("alice", "").await.is_none());
        assert!(
            auth.authenticate("Alice", "pw1").await.is_none(),
            "names are case-sensitive"
        );
        assert!(auth.authenticate("carol", "pw1").await.is_none());
        assert_eq!(auth.authenticate("bob", "pw2").await.unwrap().name, "bob");
    }

    #[tokio::test]
    async fn unknown_users_without_any_configured_user() {
        let auth = Authenticator::new(vec![]).unwrap();
        assert!(auth.authenticate("nobody", "x").await.is_none());
        assert!(auth.authenticate("anonymous", "x").await.is_none());
    }

    #[tokio::test]
    async fn keys_log_in_only_their_user() {
        let key = AuthorizedKey::parse_line(KEY).unwrap().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("keys");
        std::fs::write(&file, format!("# bob's\n{KEY}\n")).unwrap();
        let mut alice = user("alice", "pw");
        alice.authorized_keys = vec![KEY.to_string()];
        let mut bob = user("bob", "pw");
        bob.password_hash = None;
        bob.authorized_keys_file = Some(file);
        let carol = user("carol", "pw");
        let auth = Authenticator::new(vec![alice, bob, carol]).unwrap();
        assert_eq!(
            auth.authorized_key("alice", &key.blob).unwrap().name,
            "alice"
        );
        assert_eq!(auth.authorized_key("bob", &key.blob).unwrap().name, "bob");
        assert!(auth.authorized_key("carol", &key.blob).is_none());
        assert!(auth.authorized_key("nobody", &key.blob).is_none());
        let mut other = key.blob.clone();
        *other.last_mut().unwrap() ^= 1;
        assert!(auth.authorized_key("alice", &other).is_none());
        // A user with keys only has no password, whatever is tried.
        assert!(!auth.has_password("bob"));
        assert!(auth.authenticate("bob", "").await.is_none());
        assert!(auth.authenticate("bob", "pw").await.is_none());
        assert!(auth.has_password("alice"));
        assert!(auth.any_password() && auth.any_key());
        let passwords_only = Authenticator::new(vec![user("carol", "pw")]).unwrap();
        assert!(passwords_only.any_password() && !passwords_only.any_key());
        let mut dave = user("dave", "pw");
        dave.password_hash = None;
        dave.authorized_keys = vec![KEY.to_string()];
        let keys_only = Authenticator::new(vec![dave]).unwrap();
        assert!(!keys_only.any_password() && keys_only.any_key());
    }

    #[test]
    fn key_errors_name_the_user_and_line() {
        let mut u = user("alice", "pw");
        u.authorized_keys = vec![KEY.to_string(), "ssh-ed25519 !!!".to_string()];
        let e = Authenticator::new(vec![u]).unwrap_err();
        assert!(matches!(e, AuthError::BadKey { line: 2, .. }), "{e}");
        let mut u = user("alice", "pw");
        u.authorized_keys_file = Some(PathBuf::from("/nonexistent/keys"));
        let e = Authenticator::new(vec![u]).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/keys"), "{e}");
        let mut u = user("alice", "pw");
        u.password_hash = None;
        assert!(matches!(
            Authenticator::new(vec![u]).unwrap_err(),
            AuthError::NoCredentials(_)
        ));
    }

    #[test]
    fn config_errors() {
        let err = |users: Vec<UserSpec>| Authenticator::new(users).unwrap_err();
        assert!(
            matches!(err(vec![user("a", "x"), user("a", "y")]), AuthError::Duplicate(n) if n == "a")
        );
        assert!(matches!(
            err(vec![user("FTP", "x")]),
            AuthError::Reserved(_)
        ));
        assert!(matches!(
            err(vec![user("anonymous", "x")]),
            AuthError::Reserved(_)
        ));
        for bad in ["", "a b", "tab\tname", "nl\n", "bell\u{7}"] {
            assert!(
                matches!(err(vec![user(bad, "x")]), AuthError::InvalidName(_)),
                "{bad:?}"
            );
        }
        let mut u = user("a", "x");
        u.permissions = vec!["fly".into()];
        assert!(matches!(err(vec![u]), AuthError::UnknownPermission(_)));

        for phc in [
            "not a hash",
            "",
            "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
            "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ",
            "$argon2id$v=7$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        ] {
            let mut u = user("alice", "x");
            u.password_hash = Some(phc.to_string());
            let e = err(vec![u]);
            assert!(
                matches!(&e, AuthError::BadHash { user, .. } if user == "alice"),
                "{phc}: {e}"
            );
            assert!(
                e.to_string()
                    .starts_with("user 'alice': password_hash is not a valid")
            );
        }
    }

    #[tokio::test]
    async fn config_from_toml() {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            users: Vec<UserSpec>,
        }
        let text = format!(
            r#"
            [[users]]
            name = "alice"
            password_hash = "{}"
            root = "/srv/alice"

            [[users]]
            name = "reader"
            password_hash = "{}"
            home = "/srv/reader"
            permissions = ["read-only"]
            authorized_keys = ["{KEY}"]
            "#,
            cheap_hash("alice-pw"),
            cheap_hash("reader-pw"),
        );
        let file: File = toml::from_str(&text).unwrap();
        assert_eq!(file.users[0].permissions, vec!["all".to_string()]);
        let auth = Authenticator::new(file.users).unwrap();
        let r = auth.authenticate("reader", "reader-pw").await.unwrap();
        assert_eq!(r.permissions, Permissions::READ_ONLY);
        assert_eq!(r.home, PathBuf::from("/srv/reader"));
        let alice = auth.authenticate("alice", "alice-pw").await.unwrap();
        // `root`, the key's old name, is still read.
        assert_eq!(alice.home, PathBuf::from("/srv/alice"));

        let typo = "[[users]]\nname = \"a\"\npasword_hash = \"x\"\nroot = \"/\"\n";
        assert!(
            toml::from_str::<File>(typo).is_err(),
            "unknown keys are errors"
        );
    }

    #[tokio::test]
    async fn cache_skips_argon2_only_for_the_right_password() {
        let mut auth = Authenticator::new(vec![user("alice", "pw")]).unwrap();
        let first = auth.authenticate("alice", "pw").await.unwrap();
        assert!(auth.authenticate("alice", "wrong").await.is_none());
        assert_eq!(auth.lock_cache().len(), 1, "failures are not cached");

        // Make argon2 fail for alice: only a cache hit can now let her in.
        auth.users.get_mut("alice").unwrap().hash = Some(Arc::from("$argon2id$broken"));
        let second = auth.authenticate("alice", "pw").await.unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        assert!(auth.authenticate("alice", "wrong").await.is_none());
        assert!(auth.authenticate("alice", "pw ").await.is_none());

        // Expired entries are not used.
        auth.lock_cache().get_mut("alice").unwrap().expires = Instant::now();
        assert!(auth.authenticate("alice", "pw").await.is_none());
    }

    #[tokio::test]
    async fn cache_is_bounded() {
        let auth = Authenticator::new(vec![user("alice", "pw")]).unwrap();
        for i in 0..LOGIN_CACHE_CAPACITY + 5 {
            auth.remember(&format!("u{i}"), auth.tag("u", "p"));
        }
        assert_eq!(auth.lock_cache().len(), LOGIN_CACHE_CAPACITY);
        assert!(auth.authenticate("alice", "pw").await.is_some());
        assert_eq!(auth.lock_cache().len(), LOGIN_CACHE_CAPACITY);
        assert!(auth.lock_cache().contains_key("alice"));
    }

    #[test]
    fn futures_are_send() {
        fn assert_send_sync<T: Send + Sync>(_: &T) {}
        fn assert_send<T: Send>(_: T) {}
        let auth = Authenticator::new(vec![]).unwrap();
        assert_send_sync(&auth);
        assert_send(auth.authenticate("a", "b"));
    }

    #[test]
    fn debug_hides_secrets() {
        let auth = Authenticator::new(vec![user("alice", "pw")]).unwrap();
        let shown = format!("{auth:?}");
        assert!(shown.contains("alice"));
        assert!(!shown.contains("argon2"), "{shown}");
    }
}
