//! Host keys checked against OpenSSH's `known_hosts` files: plain and hashed (`|1|salt|hash`)
//! host entries, `[host]:port` for ports other than 22, `*`/`?` wildcards, `!` negations, and
//! `@revoked` lines; `@cert-authority` lines are skipped (host certificates are not asked for).
//!
//! Matching is pure (text in, [`Verdict`] out); reading the files and appending a learned key
//! are the only I/O here.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use data_encoding::BASE64;

/// Where host keys are looked up, and what to do with one that is not there.
#[derive(Debug, Clone, Default)]
pub struct HostKeyPolicy {
    /// `known_hosts` files, read in order (a missing file is empty).
    pub files: Vec<PathBuf>,
    /// Where an accepted key is recorded (the user's file).
    pub learn_to: Option<PathBuf>,
    /// A fingerprint (`SHA256:...`) the user confirmed: an unknown key with exactly this
    /// fingerprint is accepted and recorded in [`learn_to`](Self::learn_to).
    pub accept: Option<String>,
    /// Accept any key, unknown or changed (reported through the warning hook).
    pub insecure: bool,
}

impl HostKeyPolicy {
    /// OpenSSH's defaults: `~/.ssh/known_hosts` (where accepted keys go), then
    /// `/etc/ssh/ssh_known_hosts`.
    pub fn user_default() -> HostKeyPolicy {
        let user = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(".ssh").join("known_hosts"));
        let mut files: Vec<PathBuf> = user.iter().cloned().collect();
        files.push(PathBuf::from("/etc/ssh/ssh_known_hosts"));
        HostKeyPolicy {
            files,
            learn_to: user,
            accept: None,
            insecure: false,
        }
    }
}

/// Why a host key was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyError {
    /// No `known_hosts` entry for this host has this key.
    Unknown {
        /// The name looked up: `host` or `[host]:port`.
        host: String,
        /// The port connected to.
        port: u16,
        /// The host name or address as given.
        hostname: String,
        /// The key's algorithm (`ssh-ed25519`).
        key_type: String,
        /// `SHA256:...`, as OpenSSH shows it.
        fingerprint: String,
        /// Types of the keys recorded for this host, when only other types are.
        other_types: Vec<String>,
    },
    /// An entry for this host has a different key of the same type.
    Changed {
        host: String,
        key_type: String,
        fingerprint: String,
        file: PathBuf,
        line: usize,
    },
    /// The key is marked `@revoked`.
    Revoked {
        host: String,
        fingerprint: String,
        file: PathBuf,
        line: usize,
    },
    /// The key is not the one the user said to accept.
    NotAccepted {
        host: String,
        fingerprint: String,
        accepted: String,
    },
    /// The server presented a certificate instead of a key.
    Certificate { host: String },
}

impl fmt::Display for HostKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostKeyError::Unknown {
                host,
                key_type,
                fingerprint,
                other_types,
                ..
            } => {
                write!(
                    f,
                    "the host key of {host} is not known: it offers {key_type} {fingerprint}"
                )?;
                if !other_types.is_empty() {
                    write!(
                        f,
                        " (known_hosts has a key of another type for it: {})",
                        other_types.join(", ")
                    )?;
                }
                Ok(())
            }
            HostKeyError::Changed {
                host,
                key_type,
                fingerprint,
                file,
                line,
            } => write!(
                f,
                "WARNING: THE HOST KEY OF {host} HAS CHANGED. Someone may be intercepting this \
                 connection (a man-in-the-middle attack), or the server's key was replaced. It \
                 now offers {key_type} {fingerprint}; {} line {line} holds a different one. \
                 Refusing to connect.",
                file.display()
            ),
            HostKeyError::Revoked {
                host,
                fingerprint,
                file,
                line,
            } => write!(
                f,
                "the host key of {host} ({fingerprint}) is marked @revoked in {} line {line}",
                file.display()
            ),
            HostKeyError::NotAccepted {
                host,
                fingerprint,
                accepted,
            } => write!(
                f,
                "the host key of {host} is {fingerprint}, not the {accepted} given to \
                 --accept-host-key: refusing to connect"
            ),
            HostKeyError::Certificate { host } => write!(
                f,
                "{host} presented a host certificate; only plain host keys are checked"
            ),
        }
    }
}

impl std::error::Error for HostKeyError {}

/// What the files say about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// An entry for this host holds this key.
    Known,
    /// An entry for this host holds another key of the same type (the first such line).
    Changed { file: PathBuf, line: usize },
    /// A `@revoked` line holds this key.
    Revoked { file: PathBuf, line: usize },
    /// No entry holds it; `other_types` are the types recorded for the host.
    Unknown { other_types: Vec<String> },
}

/// The name OpenSSH looks up: `host` on port 22, `[host]:port` otherwise; lowercase.
pub(crate) fn lookup_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// One parsed entry line.
struct Entry<'a> {
    revoked: bool,
    hosts: &'a str,
    blob: Vec<u8>,
}

fn parse_line(line: &str) -> Option<Entry<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields = line.split_ascii_whitespace();
    let mut first = fields.next()?;
    let mut revoked = false;
    if let Some(marker) = first.strip_prefix('@') {
        match marker {
            "revoked" => revoked = true,
            // `@cert-authority` and anything newer: not a host key line.
            _ => return None,
        }
        first = fields.next()?;
    }
    let _key_type = fields.next()?;
    let blob = BASE64.decode(fields.next()?.as_bytes()).ok()?;
    Some(Entry {
        revoked,
        hosts: first,
        blob,
    })
}

/// The algorithm name at the start of a key blob (`ssh-ed25519`).
pub(crate) fn blob_type(blob: &[u8]) -> Option<&str> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    std::str::from_utf8(blob.get(4..4usize.checked_add(len)?)?).ok()
}

/// `true` if the hosts field of a line matches `name` (OpenSSH's rules: any negated pattern
/// that matches excludes the line; otherwise any positive match includes it).
fn hosts_match(hosts: &str, name: &str) -> bool {
    if let Some(hashed) = hosts.strip_prefix("|1|") {
        return hashed_match(hashed, name);
    }
    let mut matched = false;
    for pattern in hosts.split(',') {
        if let Some(negated) = pattern.strip_prefix('!') {
            if glob(&negated.to_ascii_lowercase(), name) {
                return false;
            }
        } else if glob(&pattern.to_ascii_lowercase(), name) {
            matched = true;
        }
    }
    matched
}

/// `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`.
fn hashed_match(rest: &str, name: &str) -> bool {
    let Some((salt, hash)) = rest.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (
        BASE64.decode(salt.as_bytes()),
        BASE64.decode(hash.as_bytes()),
    ) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt);
    ring::hmac::verify(&key, name.as_bytes(), &hash).is_ok()
}

/// `*` (any run) and `?` (one character) wildcard match.
fn glob(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Check `key` (its wire blob) for `name` (see [`lookup_name`]) against the files' texts.
pub(crate) fn check(files: &[(PathBuf, String)], name: &str, key: &[u8]) -> Verdict {
    let key_type = blob_type(key);
    let mut changed = None;
    let mut known = false;
    let mut other_types = Vec::new();
    for (path, text) in files {
        for (i, line) in text.lines().enumerate() {
            let Some(entry) = parse_line(line) else {
                continue;
            };
            if !hosts_match(entry.hosts, name) {
                continue;
            }
            if entry.revoked {
                if entry.blob == key {
                    return Verdict::Revoked {
                        file: path.clone(),
                        line: i + 1,
                    };
                }
                continue;
            }
            if entry.blob == key {
                known = true;
            } else if blob_type(&entry.blob) == key_type {
                changed.get_or_insert((path.clone(), i + 1));
            } else if let Some(t) = blob_type(&entry.blob)
                && !other_types.iter().any(|o| o == t)
            {
                other_types.push(t.to_string());
            }
        }
    }
    if known {
        Verdict::Known
    } else if let Some((file, line)) = changed {
        Verdict::Changed { file, line }
    } else {
        Verdict::Unknown { other_types }
    }
}

/// Key types recorded for `name`, in file order (to ask the server for those first).
pub(crate) fn known_types(files: &[(PathBuf, String)], name: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (_, text) in files {
        for line in text.lines() {
            let Some(entry) = parse_line(line) else {
                continue;
            };
            if entry.revoked || !hosts_match(entry.hosts, name) {
                continue;
            }
            if let Some(t) = blob_type(&entry.blob)
                && !out.iter().any(|o| o == t)
            {
                out.push(t.to_string());
            }
        }
    }
    out
}

/// The files' contents; a file that can't be read counts as empty.
pub(crate) fn read_files(files: &[PathBuf]) -> Vec<(PathBuf, String)> {
    files
        .iter()
        .filter_map(|p| {
            let bytes = std::fs::read(p).ok()?;
            Some((p.clone(), String::from_utf8_lossy(&bytes).into_owned()))
        })
        .collect()
}

/// Append `name keytype base64` to `file`, creating it (mode 0600) and its directory (0700).
pub(crate) fn learn(file: &Path, name: &str, key_type: &str, blob: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let existing = std::fs::read(file).unwrap_or_default();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(file)?;
    let mut line = String::new();
    if existing.last().is_some_and(|&b| b != b'\n') {
        line.push('\n');
    }
    line.push_str(&format!("{name} {key_type} {}\n", BASE64.encode(blob)));
    f.write_all(line.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(kind: &str, body: &[u8]) -> Vec<u8> {
        let mut b = (kind.len() as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind.as_bytes());
        b.extend_from_slice(body);
        b
    }

    fn line(hosts: &str, key: &[u8]) -> String {
        let kind = blob_type(key).unwrap();
        format!("{hosts} {kind} {}\n", BASE64.encode(key))
    }

    fn files(text: &str) -> Vec<(PathBuf, String)> {
        vec![(PathBuf::from("kh"), text.to_string())]
    }

    fn hashed(name: &str, salt: &[u8]) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
        let tag = ring::hmac::sign(&key, name.as_bytes());
        format!("|1|{}|{}", BASE64.encode(salt), BASE64.encode(tag.as_ref()))
    }

    #[test]
    fn lookup_names() {
        assert_eq!(lookup_name("Example.ORG", 22), "example.org");
        assert_eq!(lookup_name("127.0.0.1", 2222), "[127.0.0.1]:2222");
        assert_eq!(lookup_name("::1", 2222), "[::1]:2222");
    }

    #[test]
    fn plain_hashed_and_port_entries() {
        let ed = blob("ssh-ed25519", b"A");
        let text = format!(
            "# comment\n\n{}{}{}",
            line("example.org,10.0.0.1", &ed),
            line("[127.0.0.1]:2222", &ed),
            line(&hashed("[::1]:2200", b"saltsaltsaltsaltsalt"), &ed),
        );
        let f = files(&text);
        assert_eq!(check(&f, "example.org", &ed), Verdict::Known);
        assert_eq!(check(&f, "10.0.0.1", &ed), Verdict::Known);
        assert_eq!(check(&f, "[127.0.0.1]:2222", &ed), Verdict::Known);
        assert_eq!(check(&f, "[::1]:2200", &ed), Verdict::Known);
        // The plain name matches port 22 only.
        assert_eq!(
            check(&f, "[example.org]:2222", &ed),
            Verdict::Unknown {
                other_types: vec![]
            }
        );
        assert_eq!(
            check(&f, "[::1]:2201", &ed),
            Verdict::Unknown {
                other_types: vec![]
            }
        );
    }

    #[test]
    fn changed_other_type_and_revoked() {
        let ed = blob("ssh-ed25519", b"A");
        let ed2 = blob("ssh-ed25519", b"B");
        let rsa = blob("ssh-rsa", b"R");
        let text = format!("{}{}", line("h", &rsa), line("h", &ed));
        let f = files(&text);
        assert_eq!(
            check(&f, "h", &ed2),
            Verdict::Changed {
                file: PathBuf::from("kh"),
                line: 2
            }
        );
        let f = files(&line("h", &rsa));
        assert_eq!(
            check(&f, "h", &ed),
            Verdict::Unknown {
                other_types: vec!["ssh-rsa".into()]
            }
        );
        assert_eq!(known_types(&f, "h"), ["ssh-rsa"]);
        let text = format!("@revoked {}{}", line("*", &ed), line("h", &ed));
        assert_eq!(
            check(&files(&text), "h", &ed),
            Verdict::Revoked {
                file: PathBuf::from("kh"),
                line: 1
            }
        );
        // A key known under another host's name is no help.
        assert_eq!(
            check(&files(&line("other", &ed)), "h", &ed),
            Verdict::Unknown {
                other_types: vec![]
            }
        );
    }

    #[test]
    fn wildcards_negations_and_junk() {
        let ed = blob("ssh-ed25519", b"A");
        let text = format!(
            "@cert-authority *.example.org ssh-ed25519 AAAA\nnot a line\nx y !!!\n{}",
            line("*.example.org,!bad.example.org,[10.0.0.?]:2222", &ed)
        );
        let f = files(&text);
        assert_eq!(check(&f, "a.example.org", &ed), Verdict::Known);
        assert_eq!(check(&f, "[10.0.0.7]:2222", &ed), Verdict::Known);
        assert!(matches!(
            check(&f, "bad.example.org", &ed),
            Verdict::Unknown { .. }
        ));
        assert!(matches!(
            check(&f, "example.org", &ed),
            Verdict::Unknown { .. }
        ));
        assert_eq!(blob_type(&[0, 0, 0, 9, b'x']), None);
        assert_eq!(blob_type(&[]), None);
    }

    #[test]
    fn learned_line_is_found_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub").join("known_hosts");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "other ssh-ed25519 AAAA").unwrap();
        let ed = blob("ssh-ed25519", b"A");
        learn(&file, "[127.0.0.1]:2222", "ssh-ed25519", &ed).unwrap();
        let f = read_files(&[file.clone(), dir.path().join("missing")]);
        assert_eq!(f.len(), 1);
        assert_eq!(check(&f, "[127.0.0.1]:2222", &ed), Verdict::Known);
        assert!(
            f[0].1
                .starts_with("other ssh-ed25519 AAAA\n[127.0.0.1]:2222 ")
        );
    }
}
