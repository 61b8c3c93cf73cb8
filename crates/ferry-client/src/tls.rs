//! FTP over TLS (RFC 4217) for the client: when to use TLS, whom to trust, and the session
//! tickets that let data connections resume the control connection's TLS session.
//!
//! # Trust
//! [`Trust::System`] verifies the server's certificate chain and name against the system's
//! roots (`/etc/ssl/certs`, `SSL_CERT_FILE`, `SSL_CERT_DIR`); [`Trust::Roots`] against given CA
//! certificates only; [`Trust::Pins`] accepts exactly the certificates whose SHA-256 matches,
//! whoever signed them and whatever name they carry; [`Trust::Insecure`] accepts any. In every
//! case the server must still prove possession of the certificate's key (handshake signatures
//! are always checked).
//!
//! # Session reuse
//! Strict servers (vsftpd `require_ssl_reuse`, ProFTPD, Ferry) accept a data connection only if
//! it resumes the control connection's TLS session. Each [`crate::Client`] therefore has its own
//! [`TicketStore`]: its data connections use only tickets issued to its own control session,
//! never a sibling connection's. TLS 1.3 tickets are single-use; the store counts them so the
//! client can renew the control session before it runs out (see `Client::open_data`).

use std::collections::VecDeque;
use std::fmt;
use std::path::Path;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{
    ClientSessionStore, Resumption, Tls12ClientSessionValue, Tls13ClientSessionValue,
    WebPkiServerVerifier,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, NamedGroup, SignatureScheme};
use sha2::Digest;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::{Error, Result};

/// When the control connection uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Plain FTP.
    #[default]
    Off,
    /// `AUTH TLS` when the server lists it in `FEAT` before login; plain FTP otherwise.
    Auto,
    /// `AUTH TLS` (explicit FTPS, `ftpes://`); a server that refuses it is an error.
    Explicit,
    /// TLS from the first byte (implicit FTPS, `ftps://`, port 990).
    Implicit,
}

impl TlsMode {
    /// The mode's name as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            TlsMode::Off => "off",
            TlsMode::Auto => "auto",
            TlsMode::Explicit => "required",
            TlsMode::Implicit => "implicit",
        }
    }
}

impl FromStr for TlsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "off" | "no" | "none" => Ok(TlsMode::Off),
            "auto" => Ok(TlsMode::Auto),
            "required" | "explicit" | "yes" => Ok(TlsMode::Explicit),
            "implicit" => Ok(TlsMode::Implicit),
            _ => Err(format!(
                "unknown TLS mode '{s}' (expected required, auto or off)"
            )),
        }
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which server certificates are accepted.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Chains to the system's root certificates, for the server's name.
    System,
    /// Chains to these CA certificates (only), for the server's name.
    Roots(Vec<CertificateDer<'static>>),
    /// Exactly the certificates with these SHA-256 fingerprints, regardless of issuer and name.
    Pins(Vec<[u8; 32]>),
    /// Any certificate: no protection against an active attacker.
    Insecure,
}

/// Certificates from a PEM file (`--cacert`).
pub fn load_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = std::fs::read(path).map_err(Error::local(format!("reading {}", path.display())))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Usage(format!("{}: bad PEM certificate: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Usage(format!(
            "{}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
            path.display()
        )));
    }
    Ok(certs)
}

/// Parse a SHA-256 fingerprint: 64 hex digits, optionally separated by `:` or spaces (as
/// `openssl x509 -fingerprint -sha256` and `ferry serve` print it), optionally prefixed by
/// `sha256:`.
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], String> {
    let trimmed = s.trim();
    let body = trimmed
        .strip_prefix("sha256:")
        .or_else(|| trimmed.strip_prefix("SHA256:"))
        .or_else(|| trimmed.strip_prefix("SHA-256:"))
        .unwrap_or(trimmed);
    let hex: String = body.chars().filter(|c| !matches!(c, ':' | ' ')).collect();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "bad SHA-256 fingerprint '{s}': expected 64 hex digits, e.g. AB:CD:...:EF"
        ));
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .map_err(|_| format!("bad SHA-256 fingerprint '{s}'"))?;
    }
    Ok(out)
}

/// `AB:CD:...` SHA-256 of a certificate.
pub fn fingerprint(der: &[u8]) -> String {
    format_fingerprint(&sha2::Sha256::digest(der).into())
}

fn format_fingerprint(fp: &[u8; 32]) -> String {
    fp.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A certificate was refused by `--pin-sha256`.
#[derive(Debug)]
struct PinMismatch(String);

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "its SHA-256 fingerprint {} matches no --pin-sha256",
            self.0
        )
    }
}

impl std::error::Error for PinMismatch {}

enum Check {
    WebPki(Arc<WebPkiServerVerifier>),
    Pins(Vec<[u8; 32]>),
    Insecure,
}

/// The server certificate check of [`Trust`], remembering the last certificate seen so that
/// an error can name its fingerprint.
struct Verifier {
    check: Check,
    provider: Arc<CryptoProvider>,
    last_seen: Mutex<Option<String>>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.check {
            Check::WebPki(_) => "webpki",
            Check::Pins(_) => "pins",
            Check::Insecure => "insecure",
        };
        f.debug_struct("Verifier").field("check", &kind).finish()
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let digest: [u8; 32] = sha2::Sha256::digest(end_entity.as_ref()).into();
        if let Ok(mut seen) = self.last_seen.lock() {
            *seen = Some(format_fingerprint(&digest));
        }
        match &self.check {
            Check::WebPki(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            Check::Pins(pins) if pins.contains(&digest) => Ok(ServerCertVerified::assertion()),
            Check::Pins(_) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(PinMismatch(
                    format_fingerprint(&digest),
                )))),
            )),
            Check::Insecure => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A rustls client configuration built from a [`Trust`]; cheap to clone. Each control
/// connection derives its own configuration from it with a fresh [`TicketStore`].
#[derive(Clone)]
pub struct TlsClientConfig {
    base: Arc<rustls::ClientConfig>,
    verifier: Arc<Verifier>,
}

impl fmt::Debug for TlsClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClientConfig")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

impl TlsClientConfig {
    /// TLS 1.2 and 1.3 (ring provider), verifying servers as `trust` says.
    pub fn new(trust: Trust) -> Result<TlsClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let check = match trust {
            Trust::System => {
                let loaded = rustls_native_certs::load_native_certs();
                let mut roots = rustls::RootCertStore::empty();
                let (added, _ignored) = roots.add_parsable_certificates(loaded.certs);
                if added == 0 {
                    return Err(Error::Tls(
                        "no trusted root certificates found on this system (/etc/ssl/certs): \
                         use --cacert FILE or --pin-sha256 FINGERPRINT"
                            .into(),
                    ));
                }
                Check::WebPki(webpki(roots, &provider)?)
            }
            Trust::Roots(certs) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in certs {
                    roots
                        .add(c)
                        .map_err(|e| Error::Usage(format!("unusable CA certificate: {e}")))?;
                }
                Check::WebPki(webpki(roots, &provider)?)
            }
            Trust::Pins(pins) => Check::Pins(pins),
            Trust::Insecure => Check::Insecure,
        };
        let verifier = Arc::new(Verifier {
            check,
            provider: Arc::clone(&provider),
            last_seen: Mutex::new(None),
        });
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        Ok(TlsClientConfig {
            base: Arc::new(config),
            verifier,
        })
    }

    /// A configuration for one control connection and its data connections, with its own
    /// [`TicketStore`]: connect the control connection with it, then every data connection of
    /// that session with the same configuration, so that they resume the control
    /// connection's TLS session (strict servers refuse data connections that don't). Each
    /// TLS 1.3 data connection uses up one single-use ticket; the store says when none is
    /// left ([`TicketStore::exhausted`]), and a new control connection (a new session) then
    /// brings fresh tickets.
    pub fn for_session(&self) -> (Arc<rustls::ClientConfig>, Arc<TicketStore>) {
        let store = Arc::new(TicketStore::default());
        let mut config = (*self.base).clone();
        config.resumption = Resumption::store(store.clone());
        (Arc::new(config), store)
    }

    /// The fingerprint of the last certificate a server presented.
    fn last_seen(&self) -> Option<String> {
        self.verifier.last_seen.lock().ok().and_then(|s| s.clone())
    }

    /// The error for a failed handshake: certificate and TLS failures become [`Error::Tls`]
    /// (naming the certificate's fingerprint), I/O failures stay network errors.
    pub(crate) fn handshake_error(&self, what: &str, e: std::io::Error) -> Error {
        let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
            return Error::Network {
                context: format!("TLS handshake of the {what}"),
                source: e,
            };
        };
        match tls {
            rustls::Error::InvalidCertificate(cert) => {
                let fp = self.last_seen().unwrap_or_else(|| "unknown".into());
                let hint = match &self.verifier.check {
                    Check::Pins(_) => String::new(),
                    _ => format!(
                        "; its SHA-256 fingerprint is {fp} (trust its CA with --cacert FILE, \
                         or after checking the fingerprint: --pin-sha256 {fp})"
                    ),
                };
                Error::Tls(format!(
                    "the server's certificate is not trusted: {}{hint}",
                    describe(cert)
                ))
            }
            other => Error::Tls(format!("TLS handshake of the {what} failed: {other}")),
        }
    }
}

fn describe(e: &rustls::CertificateError) -> String {
    use rustls::CertificateError as C;
    match e {
        C::UnknownIssuer => "it is not signed by a trusted CA (unknown issuer)".into(),
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "it is not valid for this host name".into()
        }
        C::Expired | C::ExpiredContext { .. } => "it has expired".into(),
        C::NotValidYet | C::NotValidYetContext { .. } => "it is not valid yet".into(),
        C::Revoked => "it is revoked".into(),
        C::BadSignature => "it is not signed by a trusted CA (bad signature)".into(),
        C::Other(o) => o.to_string(),
        other => other.to_string(),
    }
}

fn webpki(
    roots: rustls::RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
        .build()
        .map_err(|e| Error::Tls(format!("building the certificate verifier: {e}")))
}

/// The name a certificate is checked against: a DNS name or an IP address.
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|_| Error::Usage(format!("'{host}' is not a valid TLS server name")))
}

/// Most TLS 1.3 tickets kept (rustls' own cache keeps 8 per server).
const MAX_TICKETS: usize = 64;

#[derive(Debug, Default)]
struct Tickets {
    kx_hint: Option<NamedGroup>,
    tls12: Option<Tls12ClientSessionValue>,
    tls13: VecDeque<Tls13ClientSessionValue>,
    /// TLS 1.3 tickets ever received.
    received: u64,
}

/// The session store of one control connection: every connection of that session talks to
/// the same server under the same name, so the name is not used as a key. Made by
/// [`TlsClientConfig::for_session`].
#[derive(Debug, Default)]
pub struct TicketStore {
    inner: Mutex<Tickets>,
}

impl TicketStore {
    fn with<T>(&self, f: impl FnOnce(&mut Tickets) -> T) -> T {
        match self.inner.lock() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// `true` when the server issues TLS 1.3 tickets and none is left: the next data
    /// connection could not resume the session.
    pub fn exhausted(&self) -> bool {
        self.with(|t| t.received > 0 && t.tls13.is_empty() && t.tls12.is_none())
    }

    /// TLS 1.3 tickets left.
    pub fn tickets(&self) -> usize {
        self.with(|t| t.tls13.len())
    }
}

impl ClientSessionStore for TicketStore {
    fn set_kx_hint(&self, _: ServerName<'static>, group: NamedGroup) {
        self.with(|t| t.kx_hint = Some(group));
    }
    fn kx_hint(&self, _: &ServerName<'_>) -> Option<NamedGroup> {
        self.with(|t| t.kx_hint)
    }
    fn set_tls12_session(&self, _: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.with(|t| t.tls12 = Some(value));
    }
    fn tls12_session(&self, _: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.with(|t| t.tls12.clone())
    }
    fn remove_tls12_session(&self, _: &ServerName<'static>) {
        self.with(|t| t.tls12 = None);
    }
    fn insert_tls13_ticket(&self, _: ServerName<'static>, value: Tls13ClientSessionValue) {
        self.with(|t| {
            if t.tls13.len() >= MAX_TICKETS {
                t.tls13.pop_front();
            }
            t.tls13.push_back(value);
            t.received += 1;
        });
    }
    fn take_tls13_ticket(&self, _: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        self.with(|t| t.tls13.pop_back())
    }
}

/// A control or data connection, plain or TLS.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// No connection (the server ended the transfer before one was needed): reads end at
    /// once, writes fail.
    Empty,
}

impl Stream {
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// End our direction: close_notify over TLS (the TCP connection stays open in both
    /// directions, so the server can answer and flush what it still has to send, such as
    /// session tickets), a TCP FIN otherwise.
    pub(crate) async fn finish_writing(&mut self) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        match self {
            Stream::Tls(s) => {
                s.get_mut().1.send_close_notify();
                s.flush().await
            }
            other => other.shutdown().await,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Empty => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Empty => Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Empty => Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Empty => Poll::Ready(Ok(())),
        }
    }
}

/// One line describing a TLS connection: version, cipher suite, resumed or not.
pub(crate) fn summary(conn: &rustls::ClientConnection) -> String {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2".to_string(),
        Some(v) => format!("{v:?}"),
        None => "TLS".to_string(),
    };
    let suite = conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_default();
    let kind = match conn.handshake_kind() {
        Some(rustls::HandshakeKind::Resumed) => "resumed",
        _ => "full handshake",
    };
    format!("{version}, {suite}, {kind}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse() {
        let colons = (0..32).map(|i| format!("{i:02X}")).collect::<Vec<_>>();
        let want: Vec<u8> = (0..32).collect();
        assert_eq!(parse_fingerprint(&colons.join(":")).unwrap().to_vec(), want);
        assert_eq!(
            parse_fingerprint(&colons.join("").to_lowercase())
                .unwrap()
                .to_vec(),
            want
        );
        assert_eq!(
            parse_fingerprint(&format!("sha256:{}", colons.join(":")))
                .unwrap()
                .to_vec(),
            want
        );
        assert_eq!(
            format_fingerprint(&parse_fingerprint(&colons.join(":")).unwrap()),
            colons.join(":")
        );
        assert!(parse_fingerprint("AB:CD").is_err());
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
        assert!(parse_fingerprint("").is_err());
    }

    #[test]
    fn tls_modes_parse() {
        assert_eq!("required".parse(), Ok(TlsMode::Explicit));
        assert_eq!("AUTO".parse(), Ok(TlsMode::Auto));
        assert_eq!("off".parse(), Ok(TlsMode::Off));
        assert!("maybe".parse::<TlsMode>().is_err());
    }

    #[test]
    fn server_names() {
        assert!(matches!(
            server_name("127.0.0.1").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("[::1]").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("example.org").unwrap(),
            ServerName::DnsName(_)
        ));
    }
}
