//! Public keys a user may log in with, written as OpenSSH `authorized_keys` lines.
//!
//! A line is `TYPE BASE64 [COMMENT]`. Keys are kept as their wire blobs (the SSH encoding of
//! the public key, which the base64 field is), so a login compares the blob the client offers
//! with the listed ones; the signature itself is checked by the SSH layer. Lines with options
//! (`from="..."`, `command="..."`, `restrict`) are refused when the configuration is read:
//! ignoring an option such as `from=` would grant more than the admin wrote.

use base64ct::Encoding;

/// Key types accepted (what OpenSSH offers today; DSA is gone from OpenSSH).
const KEY_TYPES: [&str; 7] = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// One authorized public key.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthorizedKey {
    /// The key type named on the line (`ssh-ed25519`).
    pub kind: String,
    /// The SSH wire encoding of the public key.
    pub blob: Vec<u8>,
    /// The comment, if any (shown in logs to tell keys apart).
    pub comment: String,
}

impl std::fmt::Debug for AuthorizedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({} bytes) {}",
            self.kind,
            self.blob.len(),
            self.comment
        )
    }
}

/// Why an `authorized_keys` line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "unknown key type '{0}' (expected ssh-ed25519, ecdsa-sha2-nistp256/384/521 or ssh-rsa)"
    )]
    UnknownType(String),
    #[error("options before the key type are not supported (found '{0}'); list the bare key")]
    Options(String),
    #[error("the key is not valid base64")]
    Base64,
    #[error("the key data does not encode a '{0}' key")]
    Mismatch(String),
    #[error("no key on the line")]
    Empty,
}

/// Read the SSH `string` at the start of `blob`: its bytes.
fn first_string(blob: &[u8]) -> Option<&[u8]> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    blob.get(4..4usize.checked_add(len)?)
}

impl AuthorizedKey {
    /// Parse one line; `Ok(None)` for a blank line or a comment.
    pub fn parse_line(line: &str) -> Result<Option<AuthorizedKey>, KeyError> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return Ok(None);
        }
        let mut fields = line.split_whitespace();
        let kind = fields.next().ok_or(KeyError::Empty)?;
        if !KEY_TYPES.contains(&kind) {
            // `from="a,b" ssh-ed25519 ...`: the first field is options when a known type follows.
            if fields.any(|f| KEY_TYPES.contains(&f)) {
                return Err(KeyError::Options(kind.chars().take(40).collect()));
            }
            return Err(KeyError::UnknownType(kind.chars().take(40).collect()));
        }
        let data = fields.next().ok_or(KeyError::Empty)?;
        let blob = base64ct::Base64::decode_vec(data).map_err(|_| KeyError::Base64)?;
        if first_string(&blob) != Some(kind.as_bytes()) {
            return Err(KeyError::Mismatch(kind.to_string()));
        }
        let comment = fields.collect::<Vec<_>>().join(" ");
        Ok(Some(AuthorizedKey {
            kind: kind.to_string(),
            blob,
            comment,
        }))
    }

    /// Every key of an `authorized_keys` text; the first bad line's number (from 1) and error.
    pub fn parse_all(text: &str) -> Result<Vec<AuthorizedKey>, (usize, KeyError)> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if let Some(key) = Self::parse_line(line).map_err(|e| (i + 1, e))? {
                keys.push(key);
            }
        }
        Ok(keys)
    }

    /// OpenSSH's fingerprint: `SHA256:` and the unpadded base64 of the blob's SHA-256.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.blob)
    }
}

/// OpenSSH's `SHA256:...` fingerprint of a public key blob.
pub fn fingerprint(blob: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(blob);
    format!(
        "SHA256:{}",
        base64ct::Base64Unpadded::encode_string(&digest)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // `ssh-keygen -t ed25519` output (a throwaway key).
    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILA9jLcKhe7kfCVY4vCdA4upqWLxtZTzGfD+4pjWY/dC alice@laptop";

    #[test]
    fn parses_a_key_and_its_fingerprint() {
        let key = AuthorizedKey::parse_line(ED25519).unwrap().unwrap();
        assert_eq!(key.kind, "ssh-ed25519");
        assert_eq!(key.comment, "alice@laptop");
        assert_eq!(key.blob.len(), 51);
        // What `ssh-keygen -lf` prints for it.
        assert_eq!(
            key.fingerprint(),
            "SHA256:hV8xb1CB4leGosqn3i6ddGUZXW3Y234sebMVbgqH4bA"
        );
    }

    #[test]
    fn blank_and_comment_lines_are_skipped() {
        assert_eq!(AuthorizedKey::parse_line("   ").unwrap(), None);
        assert_eq!(AuthorizedKey::parse_line("# a comment").unwrap(), None);
        let all = AuthorizedKey::parse_all(&format!("# keys\n\n{ED25519}\n")).unwrap();
        assert_eq!(all.len(), 1);
    }

    #[test]
    fn refusals_say_why() {
        let opts = format!("from=\"10.0.0.0/8\" {ED25519}");
        assert!(matches!(
            AuthorizedKey::parse_line(&opts),
            Err(KeyError::Options(_))
        ));
        assert!(matches!(
            AuthorizedKey::parse_line("ssh-dss AAAA"),
            Err(KeyError::UnknownType(_))
        ));
        assert_eq!(
            AuthorizedKey::parse_line("ssh-ed25519 !!!"),
            Err(KeyError::Base64)
        );
        // An RSA type over ed25519 data.
        let swapped = ED25519.replace("ssh-ed25519 ", "ssh-rsa ");
        assert_eq!(
            AuthorizedKey::parse_line(&swapped),
            Err(KeyError::Mismatch("ssh-rsa".into()))
        );
        assert_eq!(
            AuthorizedKey::parse_all(&format!("{ED25519}\nssh-ed25519")),
            Err((2, KeyError::Empty))
        );
    }
}
