//! FTP over TLS (RFC 4217): certificates, the rustls configuration shared by control and data
//! connections, the plain-or-TLS [`Stream`], and data-channel session reuse.
//!
//! Session reuse: each control connection gets a random token, carried in every session ticket
//! (and TLS 1.2 session-cache entry) issued on it or on its data connections, inside the
//! ticket's encrypted and authenticated plaintext (see [`TicketScope`]). A data connection's
//! handshake may only resume a session carrying its control connection's token, or the token
//! of another live control connection logged in as the same (named) user from the same address
//! (see [`Logins`]), so a resumed data connection proves it was opened by a TLS client that
//! logged in as that user from there.
//!
//! Control connections run on rustls' unbuffered API (`control`), which keeps an idle session
//! small; data connections use tokio-rustls.

mod control;

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};

use crate::config::TlsPolicy;
use rustls::server::{
    ClientHello, ProducesTickets, ResolvesServerCert, ServerSessionMemoryCache,
    StoresServerSessions,
};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

pub(crate) use control::ControlTls;

/// TLS 1.3 tickets sent after each handshake (but see [`TlsConfig::config`]). Some clients
/// use a ticket once and every data connection resumes, so more than rustls' default of 2;
/// rustls clients keep at most 8 per server.
const TLS13_TICKETS: usize = 8;

/// Bytes of the per-control-connection token carried in session tickets.
pub(crate) const TOKEN_LEN: usize = 16;

/// The server's certificate, replaceable at run time (SIGHUP) without dropping sessions.
#[derive(Debug)]
pub struct CertStore {
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertStore {
    /// A store holding `key`.
    pub fn new(key: CertifiedKey) -> Arc<Self> {
        Arc::new(CertStore {
            current: RwLock::new(Arc::new(key)),
        })
    }

    /// Serve `key` to new handshakes; established sessions keep theirs.
    pub fn replace(&self, key: CertifiedKey) {
        if let Ok(mut cur) = self.current.write() {
            *cur = Arc::new(key);
        }
    }

    /// SHA-256 fingerprint of the current leaf certificate, `AB:CD:...`.
    pub fn fingerprint(&self) -> String {
        match self.current.read() {
            Ok(cur) => cur
                .cert
                .first()
                .map(|c| fingerprint_sha256(c.as_ref()))
                .unwrap_or_default(),
            Err(_) => String::new(),
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|k| Arc::clone(&k))
    }
}

/// Load a PEM certificate chain and private key.
pub fn load_pem_files(cert: &Path, key: &Path) -> io::Result<CertifiedKey> {
    let cert_pem = std::fs::read(cert).map_err(|e| with_path(e, cert))?;
    let key_pem = std::fs::read(key).map_err(|e| with_path(e, key))?;
    certified_key_from_pem(&cert_pem, &key_pem)
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Build a [`CertifiedKey`] from PEM text (certificate chain, then any key type rustls supports).
pub fn certified_key_from_pem(cert_pem: &[u8], key_pem: &[u8]) -> io::Result<CertifiedKey> {
    let invalid = |what: &str, e: &dyn std::fmt::Display| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}"))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid("certificate PEM", &e))?;
    if certs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "no certificate found in the PEM file",
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| invalid("private key PEM", &e))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| invalid("private key", &e))?;
    let ck = CertifiedKey::new(certs, signer);
    ck.keys_match()
        .map_err(|e| invalid("certificate and key do not match", &e))?;
    Ok(ck)
}

/// A freshly generated self-signed certificate.
#[derive(Debug, Clone)]
pub struct GeneratedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Generate a self-signed certificate for `names` (DNS names or IP literals).
pub fn generate_self_signed(names: &[String]) -> io::Result<GeneratedCert> {
    let ck = rcgen::generate_simple_self_signed(names.to_vec()).map_err(io::Error::other)?;
    Ok(GeneratedCert {
        cert_pem: ck.cert.pem(),
        key_pem: ck.signing_key.serialize_pem(),
    })
}

/// `AB:CD:...` SHA-256 of DER bytes (what browsers and `openssl x509 -fingerprint -sha256` show).
pub fn fingerprint_sha256(der: &[u8]) -> String {
    let digest = sha2::Sha256::digest(der);
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// One rustls configuration for control and data connections (sharing it is what makes
/// resumption across them possible): TLS 1.2 and 1.3, stateless tickets, a session cache for
/// TLS 1.2 clients that resume by session ID.
pub fn server_config(certs: Arc<CertStore>) -> io::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.ticketer = Arc::new(TokenTickets(
        rustls::crypto::ring::Ticketer::new().map_err(io::Error::other)?,
    ));
    config.send_tls13_tickets = TLS13_TICKETS;
    config.session_storage = Arc::new(TokenSessions(ServerSessionMemoryCache::new(16 * 1024)));
    Ok(Arc::new(config))
}

/// TLS settings of a server.
#[derive(Clone)]
pub struct TlsConfig {
    /// Server-wide policy (users may tighten it).
    pub policy: TlsPolicy,
    /// Data connections must resume the control connection's TLS session.
    pub require_session_reuse: bool,
    /// Anonymous logins may skip TLS even when it is required.
    pub exempt_anonymous: bool,
    /// Allow `CCC` (back to a clear control connection after login).
    pub allow_ccc: bool,
    /// The certificate in use (replaceable).
    pub certs: Arc<CertStore>,
    /// The rustls configuration of control connections and downloads.
    pub rustls: Arc<rustls::ServerConfig>,
    /// The same, issuing no TLS 1.3 tickets: for uploads (see [`TlsConfig::config`]).
    pub rustls_upload: Arc<rustls::ServerConfig>,
    /// Control connections logged in over TLS, whose sessions their user's data connections
    /// from the same address may resume.
    pub(crate) logins: Arc<Logins>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("policy", &self.policy)
            .field("require_session_reuse", &self.require_session_reuse)
            .field("exempt_anonymous", &self.exempt_anonymous)
            .field("allow_ccc", &self.allow_ccc)
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Settings with a certificate store and strict defaults (`required`, reuse required).
    pub fn new(certs: Arc<CertStore>) -> io::Result<Self> {
        let rustls = server_config(Arc::clone(&certs))?;
        // Same ticket keys, certificate and session cache, so resumption works across both.
        let mut upload = (*rustls).clone();
        upload.send_tls13_tickets = 0;
        let rustls_upload = Arc::new(upload);
        Ok(TlsConfig {
            rustls_upload,
            policy: TlsPolicy::Required,
            require_session_reuse: true,
            exempt_anonymous: false,
            allow_ccc: false,
            certs,
            rustls,
            logins: Arc::default(),
        })
    }

    /// The configuration for a data connection. An upload's data connection gets no session
    /// tickets: the client never reads on it, and closing a socket with unread tickets makes
    /// the kernel send a reset that can destroy the end of the upload. Downloads and listings
    /// (which the client reads to the end) issue tickets, replenishing clients that use each
    /// ticket once.
    pub(crate) fn config(&self, upload: bool) -> Arc<rustls::ServerConfig> {
        Arc::clone(if upload {
            &self.rustls_upload
        } else {
            &self.rustls
        })
    }
}

/// Accept a TLS handshake on a data connection: issued tickets carry `owner`'s token, and only
/// a session `owner` may resume (see [`DataOwner`]) can be. Also returns whether the handshake
/// resumed such a session, as seen by our ticketer or session cache opening one under this
/// scope: with a ticketer or cache that is not ours (see [`server_config`]) nothing is proven,
/// and the answer is `false`. A session of another control connection proves something only
/// once that connection is logged in as the owner's user: this may wait for a login under
/// way. Not bounded in time: callers are.
///
/// `upload` holds `Some(true)` for an upload, `Some(false)` for a download or listing, `None`
/// while the command is yet to come: a client may begin the handshake as soon as it connects
/// (curl, aioftp), and must not wait for an answer until it sends the command (aioftp sends it
/// only once the handshake is done). So the server answers at once; what it cannot know yet
/// is whether to send TLS 1.3 session tickets (see [`TlsConfig::config`]), which go out when
/// the client's last handshake message (its Finished) is read. Until the command has come,
/// that message is left unread: the client, done with the handshake once it has sent it,
/// goes on to send the command, and the tickets follow its answer. (TLS 1.2 tickets travel
/// inside the handshake, which the client reads, so they are always sent.)
pub(crate) async fn accept(
    tcp: TcpStream,
    configs: &DataConfigs,
    upload: &mut tokio::sync::watch::Receiver<Option<bool>>,
    owner: &DataOwner,
) -> io::Result<(TlsStream<TcpStream>, bool)> {
    let hello = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp).await?;
    // TLS 1.3 whenever the client offers it (we do).
    let tls13 = hello
        .client_hello()
        .cipher_suites()
        .iter()
        .any(|s| u16::from(*s) & 0xff00 == 0x1300);
    let tickets = |upload: Option<bool>| !tls13 || upload == Some(false);
    let known = *upload.borrow();
    let config = match known {
        Some(true) => Arc::clone(&configs.upload),
        Some(false) | None => Arc::clone(&configs.download),
    };
    let mut opened = Opened::default();
    let handshake = {
        // The ClientHello, with the session it offers, is processed here.
        let scope = TicketScope::data(owner, tickets(known));
        let handshake = hello.into_stream(config);
        opened.add(scope.opened());
        handshake
    };
    let mut handshake = std::pin::pin!(handshake);
    let mut step = |cx: &mut Context<'_>, upload: Option<bool>| {
        // Tickets are opened and made within a poll, on this thread.
        let scope = TicketScope::data(owner, tickets(upload));
        let polled = handshake.as_mut().poll(cx);
        opened.add(scope.opened());
        polled
    };
    // The first step sends the server's answer to the ClientHello; then the client's last
    // message waits for the command (see above). A handshake that needed a second
    // ClientHello (a HelloRetryRequest, when the client guessed no key share the server
    // takes) waits for the command too.
    let first = std::future::poll_fn(|cx| Poll::Ready(step(cx, known))).await;
    let tls = match first {
        Poll::Ready(result) => result?,
        Poll::Pending => {
            if tls13 {
                while upload.borrow_and_update().is_none() {
                    if upload.changed().await.is_err() {
                        break;
                    }
                }
            }
            std::future::poll_fn(|cx| step(cx, *upload.borrow())).await?
        }
    };
    let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    Ok((tls, resumed && owner.proven_by(opened).await))
}

/// The configurations of a data connection's handshake: one issuing TLS 1.3 tickets (for
/// downloads, and for handshakes begun before the command, whose tickets are then held back
/// as needed), one issuing none (uploads; see [`TlsConfig::config`]).
#[derive(Clone)]
pub(crate) struct DataConfigs {
    pub(crate) download: Arc<rustls::ServerConfig>,
    pub(crate) upload: Arc<rustls::ServerConfig>,
}

/// Whose data connection a handshake is for: the control connection's token and, while it is
/// logged in as a named user, that login.
///
/// A data connection may resume its own control connection's sessions, or those of another
/// control connection logged in (at the time, not merely once) as the same named user from
/// the same address: clients such as rclone share one TLS session cache among their parallel
/// control connections, so a data connection offers whichever session the client last
/// received. The proof keeps its purpose (the data connection comes from a TLS client that
/// logged in as this user, from the control connection's address): a session's tickets go to
/// the TLS client of its control connection only, and that client logged in over it; another
/// user's, another address's and a connection's that never logged in prove nothing. Anonymous
/// logins are never shared (anyone may log in as anonymous).
#[derive(Clone)]
pub(crate) struct DataOwner {
    pub(crate) token: [u8; TOKEN_LEN],
    pub(crate) login: Option<(Arc<Logins>, Login)>,
}

impl DataOwner {
    /// Whether a session carrying `token` may be opened in this owner's scope: its own, or one
    /// of another live control connection from the same address (whose login is checked once
    /// the handshake is done, see [`DataOwner::proven_by`]).
    fn may_open(&self, token: &[u8]) -> Option<Opened> {
        if same_token(token, &self.token) {
            return Some(Opened {
                own: true,
                other: None,
            });
        }
        let (logins, login) = self.login.as_ref()?;
        let token = <[u8; TOKEN_LEN]>::try_from(token).ok()?;
        logins.may_prove(&token, login).then_some(Opened {
            own: false,
            other: Some(token),
        })
    }

    /// Whether the sessions `opened` prove the data connection is this owner's: its own, or
    /// another control connection's once that one is logged in as the same user (waiting for a
    /// login under way).
    async fn proven_by(&self, opened: Opened) -> bool {
        match (opened, &self.login) {
            (Opened { own: true, .. }, _) => true,
            (
                Opened {
                    other: Some(token), ..
                },
                Some((logins, login)),
            ) => logins.logged_in_as(&token, login).await,
            _ => false,
        }
    }
}

/// Which sessions were opened in a data connection's scope.
#[derive(Clone, Copy, Default)]
struct Opened {
    /// One of its own control connection's.
    own: bool,
    /// One of another control connection's (the last one), by token.
    other: Option<[u8; TOKEN_LEN]>,
}

impl Opened {
    fn add(&mut self, more: Opened) {
        self.own |= more.own;
        self.other = more.other.or(self.other);
    }
}

/// Who a control connection is logged in as, and from where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Login {
    pub(crate) ip: IpAddr,
    pub(crate) user: Arc<str>,
}

/// The TLS control connections of a server, by the token their tickets carry: where each
/// comes from and who it is logged in as. A session registers before its TLS handshake and
/// removes itself when it ends.
#[derive(Debug, Default)]
pub(crate) struct Logins {
    entries: Mutex<HashMap<[u8; TOKEN_LEN], Entry>>,
    /// Notified at every login, logout and end, for data connections waiting on one.
    changed: tokio::sync::Notify,
}

#[derive(Debug)]
struct Entry {
    ip: IpAddr,
    user: LoginState,
}

/// What a control connection is logged in as.
#[derive(Clone, Debug, PartialEq, Eq)]
enum LoginState {
    /// Not (yet) logged in.
    Pending,
    /// Logged in as this named user.
    Named(Arc<str>),
    /// Logged in as anonymous: its sessions serve no other connection.
    Anonymous,
    /// Logged out (`REIN`): no longer worth waiting for.
    LoggedOut,
}

impl Logins {
    /// Record the control connection with `token`, from `ip`, not logged in yet. Done before
    /// its handshake, so that its tickets never exist without their entry.
    pub(crate) fn register(&self, token: &[u8; TOKEN_LEN], ip: IpAddr) {
        if let Ok(mut map) = self.entries.lock() {
            map.insert(
                *token,
                Entry {
                    ip: ip.to_canonical(),
                    user: LoginState::Pending,
                },
            );
        }
    }

    /// The connection logged in as `user` (`None`: anonymous).
    pub(crate) fn logged_in(&self, token: &[u8; TOKEN_LEN], user: Option<&str>) {
        let state = user.map_or(LoginState::Anonymous, |u| LoginState::Named(u.into()));
        self.set(token, state);
    }

    /// The connection logged out (`REIN`).
    pub(crate) fn logged_out(&self, token: &[u8; TOKEN_LEN]) {
        self.set(token, LoginState::LoggedOut);
    }

    /// The connection ended.
    pub(crate) fn remove(&self, token: &[u8; TOKEN_LEN]) {
        if let Ok(mut map) = self.entries.lock() {
            map.remove(token);
        }
        self.changed.notify_waiters();
    }

    fn set(&self, token: &[u8; TOKEN_LEN], user: LoginState) {
        if let Ok(mut map) = self.entries.lock() {
            if let Some(entry) = map.get_mut(token) {
                entry.user = user;
            }
        }
        self.changed.notify_waiters();
    }

    /// Whether the control connection whose tickets carry `token` is live, comes from
    /// `login`'s address and is logged in as its user or still logging in.
    fn may_prove(&self, token: &[u8; TOKEN_LEN], login: &Login) -> bool {
        self.entries.lock().is_ok_and(|map| {
            map.get(token).is_some_and(|e| {
                e.ip == login.ip
                    && match &e.user {
                        LoginState::Pending => true,
                        LoginState::Named(user) => *user == login.user,
                        LoginState::Anonymous | LoginState::LoggedOut => false,
                    }
            })
        })
    }

    /// Whether the control connection whose tickets carry `token` is logged in as `login`,
    /// waiting while its login is under way. (The token comes from inside a ticket this server
    /// sealed: a client cannot choose it.)
    async fn logged_in_as(&self, token: &[u8; TOKEN_LEN], login: &Login) -> bool {
        loop {
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            // Registered before looking, so that no change between the two is missed.
            changed.as_mut().enable();
            let state = match self.entries.lock() {
                Ok(map) => match map.get(token) {
                    Some(e) if e.ip == login.ip => e.user.clone(),
                    _ => return false,
                },
                Err(_) => return false,
            };
            match state {
                LoginState::Named(user) => return user == login.user,
                LoginState::Anonymous | LoginState::LoggedOut => return false,
                LoginState::Pending => changed.await,
            }
        }
    }
}

/// Which control connection a handshake on this thread belongs to, while rustls runs it.
///
/// rustls' unbuffered connection (the control connection) cannot set resumption data, so the
/// token travels another way: the ticketer and the TLS 1.2 session cache are wrapped
/// ([`TokenTickets`], [`TokenSessions`]) to prefix each session's plaintext with the token of
/// the scope they are called in, and to check it when a session is resumed. rustls calls them
/// synchronously from the connection's processing, which runs inside a scope (the control
/// stream's record processing, the data handshake's polls); outside any scope no ticket is
/// issued and none is accepted. The prefix is inside the ticket's AEAD (or the server-side
/// cache), so the client can neither read nor change it.
#[derive(Clone)]
struct Scope {
    token: [u8; TOKEN_LEN],
    /// A data connection: only the sessions its owner may resume open.
    data: Option<DataOwner>,
    /// The sessions opened in this scope (for a data connection).
    opened: Opened,
    /// Sessions may be issued (a data connection holds back TLS 1.3 tickets the client would
    /// never read).
    issue: bool,
}

thread_local! {
    static SCOPE: RefCell<Option<Scope>> = const { RefCell::new(None) };
}

/// Guard for a [`Scope`]; restores the previous one when dropped.
pub(crate) struct TicketScope {
    previous: Option<Scope>,
}

impl TicketScope {
    /// A control connection's scope: its tickets carry `token`; resuming any of our sessions
    /// is allowed (the client proves nothing by it, and gains a fast reconnect).
    pub(crate) fn control(token: &[u8; TOKEN_LEN]) -> Self {
        Self::enter(Scope {
            token: *token,
            data: None,
            opened: Opened::default(),
            issue: true,
        })
    }

    /// A data connection's scope: tickets carry its owner's token (and are made only if
    /// `issue`), and only sessions the owner may resume open.
    pub(crate) fn data(owner: &DataOwner, issue: bool) -> Self {
        Self::enter(Scope {
            token: owner.token,
            data: Some(owner.clone()),
            opened: Opened::default(),
            issue,
        })
    }

    /// The sessions opened in this scope so far.
    fn opened(&self) -> Opened {
        SCOPE.with_borrow(|s| s.as_ref().map(|s| s.opened).unwrap_or_default())
    }

    fn enter(scope: Scope) -> Self {
        TicketScope {
            previous: SCOPE.replace(Some(scope)),
        }
    }
}

impl Drop for TicketScope {
    fn drop(&mut self) {
        SCOPE.set(self.previous.take());
    }
}

/// `plain` prefixed with the current scope's token; `None` outside a scope, or where no
/// session may be issued.
fn seal(plain: &[u8]) -> Option<Vec<u8>> {
    SCOPE.with_borrow(|scope| {
        let scope = scope.as_ref().filter(|s| s.issue)?;
        let mut sealed = Vec::with_capacity(TOKEN_LEN + plain.len());
        sealed.extend_from_slice(&scope.token);
        sealed.extend_from_slice(plain);
        Some(sealed)
    })
}

/// The session in `sealed` without its token, if the current scope may resume it.
fn open(mut sealed: Vec<u8>) -> Option<Vec<u8>> {
    SCOPE.with_borrow_mut(|scope| {
        let scope = scope.as_mut()?;
        let token = sealed.get(..TOKEN_LEN)?;
        // A control connection may resume any of our sessions.
        if let Some(owner) = &scope.data {
            let opened = owner.may_open(token)?;
            scope.opened.add(opened);
        }
        sealed.drain(..TOKEN_LEN);
        Some(sealed)
    })
}

/// Constant-time equality (a token is a secret of its control connection).
fn same_token(a: &[u8], b: &[u8; TOKEN_LEN]) -> bool {
    a.len() == TOKEN_LEN && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A ticketer whose tickets carry the token of the [`TicketScope`] they are made in.
#[derive(Debug)]
struct TokenTickets(Arc<dyn ProducesTickets>);

impl ProducesTickets for TokenTickets {
    fn enabled(&self) -> bool {
        self.0.enabled()
    }

    fn lifetime(&self) -> u32 {
        self.0.lifetime()
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.0.encrypt(&seal(plain)?)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        open(self.0.decrypt(cipher)?)
    }
}

/// A session cache (TLS 1.2 resumption by session ID) whose entries carry the token of the
/// [`TicketScope`] they are stored in.
#[derive(Debug)]
struct TokenSessions(Arc<dyn StoresServerSessions>);

impl StoresServerSessions for TokenSessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        match seal(&value) {
            Some(sealed) => self.0.put(key, sealed),
            None => false,
        }
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        open(self.0.get(key)?)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        open(self.0.take(key)?)
    }

    fn can_cache(&self) -> bool {
        self.0.can_cache()
    }
}

/// A control or data connection, plain or TLS.
pub(crate) enum Stream {
    Plain(TcpStream),
    /// A data connection.
    Tls(Box<TlsStream<TcpStream>>),
    /// A control connection.
    Control(Box<ControlTls>),
    /// Transient state while upgrading; all I/O fails.
    Closed,
}

impl Stream {
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_) | Stream::Control(_))
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection closed")
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Control(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Closed => Poll::Ready(Err(closed())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Control(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Stream::Control(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Stream::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
            Stream::Control(s) => s.is_write_vectored(),
            Stream::Closed => false,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Control(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Control(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn owner(token: [u8; TOKEN_LEN]) -> DataOwner {
        DataOwner { token, login: None }
    }

    #[test]
    fn sessions_open_only_in_their_scope() {
        let (a, b) = ([1u8; TOKEN_LEN], [2u8; TOKEN_LEN]);
        let sealed = {
            let _s = TicketScope::control(&a);
            seal(b"session").unwrap()
        };
        // Outside any scope: nothing is made, nothing resumes.
        assert!(seal(b"session").is_none());
        assert!(open(sealed.clone()).is_none());
        {
            let _s = TicketScope::data(&owner(b), true);
            assert!(
                open(sealed.clone()).is_none(),
                "another session's data connection"
            );
            assert!(open(sealed[..TOKEN_LEN - 1].to_vec()).is_none());
        }
        {
            let _s = TicketScope::data(&owner(b), false);
            assert!(seal(b"session").is_none(), "tickets held back");
        }
        {
            let _s = TicketScope::data(&owner(a), true);
            assert_eq!(open(sealed.clone()).unwrap(), b"session");
            // Nested scopes restore the outer one.
            {
                let _inner = TicketScope::control(&b);
                assert_eq!(&seal(b"x").unwrap()[..TOKEN_LEN], &b);
            }
            assert_eq!(&seal(b"x").unwrap()[..TOKEN_LEN], &a);
        }
        // A control connection may resume any of our sessions.
        let _s = TicketScope::control(&b);
        assert_eq!(open(sealed).unwrap(), b"session");
    }

    #[tokio::test]
    async fn other_connections_sessions_prove_only_a_live_login_of_the_user_from_the_address() {
        let logins = Arc::new(Logins::default());
        let here: IpAddr = "127.0.0.1".parse().unwrap();
        let (issuer, me, far) = ([1u8; TOKEN_LEN], [2u8; TOKEN_LEN], [3u8; TOKEN_LEN]);
        let owner = |token: [u8; TOKEN_LEN], ip: IpAddr, user: Option<&str>| DataOwner {
            token,
            login: user.map(|user| {
                let login = Login {
                    ip,
                    user: user.into(),
                };
                (Arc::clone(&logins), login)
            }),
        };
        logins.register(&issuer, here);
        let sealed = {
            let _s = TicketScope::control(&issuer);
            seal(b"session").unwrap()
        };
        let opened_by = |owner: &DataOwner| {
            let scope = TicketScope::data(owner, true);
            open(sealed.clone()).map(|_| scope.opened())
        };
        let elsewhere = "127.0.0.2".parse().unwrap();
        logins.register(&far, elsewhere);
        let far_alice = owner(far, elsewhere, Some("alice"));
        assert!(opened_by(&far_alice).is_none(), "another address");
        logins.register(&me, here);
        assert!(opened_by(&owner(me, here, None)).is_none(), "anonymous");
        let alice = owner(me, here, Some("alice"));
        let opened = opened_by(&alice).unwrap();
        // The issuer's login is under way: the proof waits for it.
        let waiting = tokio::spawn({
            let alice = alice.clone();
            async move { alice.proven_by(opened).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        logins.logged_in(&issuer, Some("alice"));
        assert!(waiting.await.unwrap());
        let bob = owner(me, here, Some("bob"));
        assert!(!bob.proven_by(opened).await, "another user");
        assert!(opened_by(&bob).is_none(), "another user");
        logins.logged_in(&issuer, None);
        assert!(!alice.proven_by(opened).await, "the issuer is anonymous");
        assert!(opened_by(&alice).is_none(), "the issuer is anonymous");
        logins.logged_out(&issuer);
        assert!(!alice.proven_by(opened).await, "the issuer logged out");
        assert!(opened_by(&alice).is_none(), "the issuer logged out");
        // Still logging in when it goes.
        logins.register(&issuer, here);
        let waiting = tokio::spawn({
            let alice = alice.clone();
            async move { alice.proven_by(opened).await }
        });
        tokio::task::yield_now().await;
        logins.remove(&issuer);
        assert!(!waiting.await.unwrap(), "the issuer is gone");
        assert!(opened_by(&alice).is_none(), "the issuer is gone");
    }
}
