//! The server's host keys: an Ed25519 key, and an RSA key (3072 bits) for clients that know no
//! Ed25519, each made once and kept in the state directory in OpenSSH's format, readable by
//! its owner only.

use std::io::Write;
use std::path::Path;

use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::{Ed25519Keypair, RsaKeypair};
use russh::keys::{Algorithm, HashAlg, PrivateKey};

/// File name of the Ed25519 host key inside the state directory (as sshd names its own).
pub const ED25519_FILE: &str = "ssh_host_ed25519_key";
/// File name of the RSA host key inside the state directory.
pub const RSA_FILE: &str = "ssh_host_rsa_key";
/// Size of a new RSA host key (OpenSSH's `ssh-keygen` default).
pub const RSA_BITS: usize = 3072;

/// The host keys from `state_dir`, Ed25519 first, each made (and the directory) on first use.
pub fn load_or_create_all(state_dir: &Path) -> std::io::Result<Vec<PrivateKey>> {
    let ed25519 = load_or_create(state_dir)?;
    let rsa = load_or_create_file(state_dir, RSA_FILE, || {
        let pair = RsaKeypair::random(&mut russh::keys::key::safe_rng(), RSA_BITS)
            .map_err(|e| std::io::Error::other(format!("making an RSA host key: {e}")))?;
        Ok(PrivateKey::from(pair))
    })?;
    Ok(vec![ed25519, rsa])
}

/// The Ed25519 host key from `state_dir`, made (and the directory) on first use.
pub fn load_or_create(state_dir: &Path) -> std::io::Result<PrivateKey> {
    load_or_create_file(state_dir, ED25519_FILE, || {
        let seed: [u8; 32] = rand::random();
        Ok(PrivateKey::from(Ed25519Keypair::from_seed(&seed)))
    })
}

/// Load the host key kept in `state_dir/file`, making it with `make` on first use.
///
/// A new key is written to a temporary file with mode 0600 and renamed into place, so a crash
/// never leaves half a key; an existing file that does not parse is an error, never replaced.
pub fn load_or_create_file(
    state_dir: &Path,
    file: &str,
    make: impl FnOnce() -> std::io::Result<PrivateKey>,
) -> std::io::Result<PrivateKey> {
    let path = state_dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(pem) => PrivateKey::from_openssh(pem.as_bytes()).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: not an OpenSSH private key: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(state_dir)?;
            let key = make()?;
            let pem = key
                .to_openssh(LineEnding::LF)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let temp = state_dir.join(format!(".{file}.{:016x}", rand::random::<u64>()));
            let written = (|| {
                use std::os::unix::fs::OpenOptionsExt;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&temp)?;
                f.write_all(pem.as_bytes())?;
                f.sync_all()?;
                std::fs::rename(&temp, &path)
            })();
            if written.is_err() {
                let _ = std::fs::remove_file(&temp);
            }
            written?;
            Ok(key)
        }
        Err(e) => Err(e),
    }
}

/// The key's type as `ssh-keygen -l` names it (`ED25519`, `RSA`, `ECDSA`).
pub fn type_name(key: &PrivateKey) -> &'static str {
    match key.algorithm() {
        Algorithm::Ed25519 => "ED25519",
        Algorithm::Rsa { .. } => "RSA",
        _ => "ECDSA",
    }
}

/// The key's fingerprint as OpenSSH prints it: `SHA256:` and unpadded base64.
pub fn fingerprint(key: &PrivateKey) -> String {
    key.public_key().fingerprint(HashAlg::Sha256).to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn made_once_then_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let a = load_or_create_all(&state).unwrap();
        let b = load_or_create_all(&state).unwrap();
        assert_eq!(a.len(), 2);
        for (a, b) in a.iter().zip(&b) {
            assert_eq!(fingerprint(a), fingerprint(b));
            assert!(fingerprint(a).starts_with("SHA256:"));
            assert!(!fingerprint(a).ends_with('='));
        }
        assert_eq!(type_name(&a[0]), "ED25519");
        assert_eq!(type_name(&a[1]), "RSA");
        let rsa = a[1].public_key().key_data().rsa().unwrap();
        assert_eq!(rsa.key_size(), RSA_BITS as u32);
        use std::os::unix::fs::PermissionsExt;
        for file in [ED25519_FILE, RSA_FILE] {
            let mode = std::fs::metadata(state.join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(ED25519_FILE), "nope").unwrap();
        assert!(load_or_create_all(dir.path()).is_err());
        assert_eq!(
            std::fs::read_to_string(dir.path().join(ED25519_FILE)).unwrap(),
            "nope"
        );
    }
}
