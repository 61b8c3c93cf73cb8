//! The SSH connection under SFTP: TCP (`TCP_NODELAY`), russh's client with a large window,
//! AES-GCM preferred, host key algorithms ordered by what `known_hosts` holds, and the host
//! key check.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use russh::client::{self, Handle};
use russh::keys::{Algorithm, HashAlg, PublicKey, PublicKeyOrCertificate};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::known_hosts::{self, HostKeyError, Verdict};
use super::{Hooks, SftpOptions};
use crate::{Error, Result};

/// Ciphers in the order this client asks for them: AES-GCM first (ring uses the CPU's AES
/// instructions), ChaCha20-Poly1305 for CPUs without them, CTR for old servers.
const CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::AES_128_GCM,
    russh::cipher::AES_256_GCM,
    russh::cipher::CHACHA20_POLY1305,
    russh::cipher::AES_128_CTR,
    russh::cipher::AES_192_CTR,
    russh::cipher::AES_256_CTR,
];

/// A failure inside russh's session task: its own error, or our refusal of the host key.
#[derive(Debug)]
pub(crate) enum SshFailure {
    Russh(russh::Error),
    HostKey(Box<HostKeyError>),
}

impl From<russh::Error> for SshFailure {
    fn from(e: russh::Error) -> Self {
        SshFailure::Russh(e)
    }
}

/// The client error for a russh error while `doing`.
pub(crate) fn russh_error(doing: &str, e: russh::Error) -> Error {
    match e {
        russh::Error::IO(source) => Error::Network {
            context: doing.to_string(),
            source,
        },
        russh::Error::Disconnect | russh::Error::HUP | russh::Error::SendError => Error::Closed,
        russh::Error::ConnectionTimeout
        | russh::Error::KeepaliveTimeout
        | russh::Error::InactivityTimeout
        | russh::Error::Elapsed(_) => Error::Timeout(doing.to_string()),
        other => Error::Protocol(format!("SSH, {doing}: {other}")),
    }
}

fn failure_error(doing: &str, e: SshFailure) -> Error {
    match e {
        SshFailure::Russh(e) => russh_error(doing, e),
        SshFailure::HostKey(k) => Error::HostKey(k),
    }
}

/// russh's handler: checks the host key against the policy.
pub(crate) struct Checker {
    host: String,
    port: u16,
    name: String,
    files: Vec<(PathBuf, String)>,
    opts_insecure: bool,
    accept: Option<String>,
    learn_to: Option<PathBuf>,
    hooks: Hooks,
    /// The key accepted at the first key exchange: re-exchanges must show the same.
    accepted: Option<Vec<u8>>,
}

/// `SHA256:...` with or without the prefix, as typed by a user.
fn normalize_fingerprint(s: &str) -> String {
    let s = s.trim();
    let body = s.strip_prefix("SHA256:").unwrap_or(s);
    format!("SHA256:{}", body.trim_end_matches('='))
}

impl Checker {
    fn check(&mut self, key: &PublicKey) -> std::result::Result<bool, SshFailure> {
        let blob = key
            .to_bytes()
            .map_err(|e| SshFailure::Russh(russh::Error::SshKey(e)))?;
        if let Some(accepted) = &self.accepted {
            return Ok(*accepted == blob);
        }
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let key_type = known_hosts::blob_type(&blob)
            .unwrap_or("unknown")
            .to_string();
        let host = self.name.clone();
        match known_hosts::check(&self.files, &self.name, &blob) {
            Verdict::Known => {
                self.hooks.trace(&format!(
                    "host key {key_type} {fingerprint} matches known_hosts"
                ));
            }
            Verdict::Revoked { file, line } => {
                return Err(SshFailure::HostKey(Box::new(HostKeyError::Revoked {
                    host,
                    fingerprint,
                    file,
                    line,
                })));
            }
            Verdict::Changed { file, line } => {
                let err = HostKeyError::Changed {
                    host,
                    key_type,
                    fingerprint,
                    file,
                    line,
                };
                if !self.opts_insecure {
                    return Err(SshFailure::HostKey(Box::new(err)));
                }
                self.hooks
                    .note(&format!("{err} -- connecting anyway because of --insecure"));
            }
            Verdict::Unknown { other_types } => {
                if let Some(wanted) = &self.accept {
                    if normalize_fingerprint(wanted) != fingerprint {
                        return Err(SshFailure::HostKey(Box::new(HostKeyError::NotAccepted {
                            host,
                            fingerprint,
                            accepted: normalize_fingerprint(wanted),
                        })));
                    }
                    match &self.learn_to {
                        Some(file) => match known_hosts::learn(file, &host, &key_type, &blob) {
                            Ok(()) => self.hooks.note(&format!(
                                "added {host} ({key_type} {fingerprint}) to {}",
                                file.display()
                            )),
                            Err(e) => self.hooks.note(&format!(
                                "could not record the host key in {}: {e}",
                                file.display()
                            )),
                        },
                        None => self
                            .hooks
                            .note("no home directory: the accepted host key is not recorded"),
                    }
                } else if self.opts_insecure {
                    self.hooks.note(&format!(
                        "--insecure: accepting the unknown host key of {host} ({key_type} \
                         {fingerprint}) without checking it"
                    ));
                } else {
                    return Err(SshFailure::HostKey(Box::new(HostKeyError::Unknown {
                        host,
                        port: self.port,
                        hostname: self.host.clone(),
                        key_type,
                        fingerprint,
                        other_types,
                    })));
                }
            }
        }
        self.accepted = Some(blob);
        Ok(true)
    }
}

impl client::Handler for Checker {
    type Error = SshFailure;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> std::result::Result<bool, Self::Error> {
        match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => self.check(key),
            PublicKeyOrCertificate::Certificate(_) => {
                Err(SshFailure::HostKey(Box::new(HostKeyError::Certificate {
                    host: self.name.clone(),
                })))
            }
        }
    }

    async fn kex_done(
        &mut self,
        _shared_secret: Option<&[u8]>,
        names: &russh::Names,
        _session: &mut client::Session,
    ) -> std::result::Result<(), Self::Error> {
        self.hooks.trace(&format!(
            "SSH: kex {}, host key {}, cipher {}",
            names.kex.as_ref(),
            names.key.as_str(),
            names.cipher.as_ref()
        ));
        Ok(())
    }
}

/// The key type a host key algorithm signs with (`rsa-sha2-512` is an `ssh-rsa` key).
fn key_type_of(alg: &Algorithm) -> &str {
    match alg {
        Algorithm::Rsa { .. } => "ssh-rsa",
        other => other.as_str(),
    }
}

/// russh's host key algorithms, those of the types `known` first (so a server with several
/// host keys shows the one on record, as OpenSSH arranges).
fn host_key_order(known: &[String]) -> Vec<Algorithm> {
    let all = russh::Preferred::DEFAULT.key.to_vec();
    let (mut first, rest): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|a| known.iter().any(|k| k == key_type_of(a)));
    first.extend(rest);
    first
}

/// Connect to `host:port` and run the SSH handshake (host key checked); not yet logged in.
pub(crate) async fn connect(
    host: &str,
    port: u16,
    opts: &SftpOptions,
    hooks: &Hooks,
) -> Result<(Handle<Checker>, SocketAddr)> {
    let deadline = Instant::now() + opts.connect_timeout;
    let addrs: Vec<SocketAddr> =
        tokio::time::timeout_at(deadline, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| Error::Timeout("resolving the server's name".into()))?
            .map_err(Error::network("resolving the server's name"))?
            .collect();
    let mut last = None;
    let mut stream = None;
    for a in &addrs {
        match tokio::time::timeout_at(deadline, TcpStream::connect(a)).await {
            Ok(Ok(s)) => {
                stream = Some((s, *a));
                break;
            }
            Ok(Err(e)) => {
                last = Some(Error::Network {
                    context: format!("connecting to {a}"),
                    source: e,
                })
            }
            Err(_) => return Err(Error::Timeout(format!("connecting to {a}"))),
        }
    }
    let Some((stream, peer)) = stream else {
        return Err(
            last.unwrap_or_else(|| Error::Usage("the host name resolved to no address".into()))
        );
    };
    // Each SFTP request is a small packet that must not wait for the previous one's ACK.
    let _ = stream.set_nodelay(true);

    let name = known_hosts::lookup_name(host, port);
    let files = known_hosts::read_files(&opts.host_keys.files);
    let known = known_hosts::known_types(&files, &name);
    let config = client::Config {
        client_id: russh::SshId::Standard(Cow::Owned(format!(
            "SSH-2.0-Ferry_{}",
            env!("CARGO_PKG_VERSION")
        ))),
        window_size: opts.window_size,
        maximum_packet_size: opts.max_ssh_packet,
        nodelay: true,
        preferred: russh::Preferred {
            key: Cow::Owned(host_key_order(&known)),
            cipher: Cow::Borrowed(CIPHERS),
            ..russh::Preferred::DEFAULT
        },
        ..client::Config::default()
    };
    let checker = Checker {
        host: host.to_string(),
        port,
        name,
        files,
        opts_insecure: opts.host_keys.insecure,
        accept: opts.host_keys.accept.clone(),
        learn_to: opts.host_keys.learn_to.clone(),
        hooks: hooks.clone(),
        accepted: None,
    };
    hooks.trace(&format!("connected to {peer}"));
    let handle = tokio::time::timeout_at(
        deadline,
        client::connect_stream(Arc::new(config), stream, checker),
    )
    .await
    .map_err(|_| Error::Timeout("in the SSH handshake".into()))?
    .map_err(|e| failure_error("in the SSH handshake", e))?;
    Ok((handle, peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_as_typed() {
        assert_eq!(normalize_fingerprint("SHA256:abc"), "SHA256:abc");
        assert_eq!(normalize_fingerprint(" abc= "), "SHA256:abc");
    }

    #[test]
    fn known_types_first() {
        let order = host_key_order(&["ssh-rsa".to_string()]);
        assert!(matches!(order[0], Algorithm::Rsa { .. }));
        assert!(order.contains(&Algorithm::Ed25519));
        let order = host_key_order(&[]);
        assert_eq!(order[0], Algorithm::Ed25519);
    }
}
