//! The control connection and everything done over it.

use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use ferry_proto::hostport;
use ferry_proto::listing::{self, ParsedEntry};
use ferry_proto::{Reply, ReplyDecoder};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsConnector;

use crate::data::{self, Pending};
use crate::options::{ConnectOptions, Dialogue, Mode, Observer, masked};
use crate::tls::{self, Stream, TicketStore, TlsClientConfig, TlsMode, Trust};
use crate::{Error, Features, MAX_LISTING, Result};

/// Longest wait for the reply that explains a failed data connection.
const EXPLAIN_WAIT: Duration = Duration::from_secs(5);
/// Longest wait, after an upload's close_notify, for the server to close its side.
const DRAIN_WAIT: Duration = Duration::from_secs(10);

/// How an upload treats an existing remote file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    /// `STOR`: replace it.
    Replace,
    /// `APPE`: append to it.
    Append,
    /// `REST n` + `STOR`: overwrite from byte `n` (resume an upload).
    At(u64),
}

/// An FTP control connection.
///
/// Commands are sent one at a time; a transfer borrows the client mutably until its
/// [`Download::finish`] or [`Upload::finish`] reads the final reply.
#[derive(Debug)]
pub struct Client {
    ctrl: Stream,
    decoder: ReplyDecoder,
    peer: SocketAddr,
    local: SocketAddr,
    opts: ConnectOptions,
    greeting: Reply,
    features: Features,
    /// `EPSV` was refused (auto mode then uses `PASV` for the rest of the session).
    epsv_refused: bool,
    /// TLS state when the control connection is secured.
    tls: Option<TlsSession>,
    /// What [`Client::login`] was given, to renew the session (see [`Client::open_data`]).
    credentials: Option<Credentials>,
}

/// The TLS side of a control connection.
#[derive(Debug)]
struct TlsSession {
    /// This session's configuration: data connections resume with its tickets.
    config: Arc<rustls::ClientConfig>,
    store: Arc<TicketStore>,
    name: ServerName<'static>,
    trust: TlsClientConfig,
    /// `PROT P` is in force: data connections use TLS too.
    protect_data: bool,
    /// Version, cipher suite and certificate fingerprint, for `-v` and callers.
    summary: String,
}

#[derive(Clone)]
struct Credentials {
    user: String,
    pass: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("pass", &"****")
            .finish()
    }
}

/// What a data connection needs to become TLS.
struct DataTls {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
    trust: TlsClientConfig,
    observer: Option<Observer>,
}

impl DataTls {
    async fn secure(self, tcp: TcpStream, timeout: Duration) -> Result<Stream> {
        let connector = TlsConnector::from(self.config);
        let tls = tokio::time::timeout(timeout, connector.connect(self.name, tcp))
            .await
            .map_err(|_| Error::Timeout("in the TLS handshake of the data connection".into()))?
            .map_err(|e| self.trust.handshake_error("data connection", e))?;
        if let Some(obs) = &self.observer {
            obs(Dialogue::Note(&format!(
                "data connection: {}",
                tls::summary(tls.get_ref().1)
            )));
        }
        Ok(Stream::Tls(Box::new(tls)))
    }
}

impl Client {
    /// Connect to `addr` (a resolved address or `host:port`), trying each resolved address in
    /// turn within the connect timeout, and read the greeting.
    pub async fn connect(
        addr: impl tokio::net::ToSocketAddrs,
        opts: ConnectOptions,
    ) -> Result<Client> {
        let deadline = Instant::now() + opts.connect_timeout;
        let addrs: Vec<SocketAddr> =
            tokio::time::timeout_at(deadline, tokio::net::lookup_host(addr))
                .await
                .map_err(|_| Error::Timeout("resolving the server's name".into()))?
                .map_err(Error::network("resolving the server's name"))?
                .collect();
        let mut last = None;
        for a in &addrs {
            match tokio::time::timeout_at(deadline, TcpStream::connect(a)).await {
                Ok(Ok(stream)) => return Client::handshake(stream, opts).await,
                Ok(Err(e)) => {
                    last = Some(Error::Network {
                        context: format!("connecting to {a}"),
                        source: e,
                    })
                }
                Err(_) => {
                    return Err(Error::Timeout(format!("connecting to {a}")));
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::Usage("the host name resolved to no address".into())))
    }

    /// Wrap an established control connection and read the greeting.
    pub async fn handshake(stream: TcpStream, opts: ConnectOptions) -> Result<Client> {
        let peer = stream
            .peer_addr()
            .map_err(Error::network("control connection"))?;
        let local = stream
            .local_addr()
            .map_err(Error::network("control connection"))?;
        let _ = stream.set_nodelay(true);
        let mut client = Client {
            ctrl: Stream::Tcp(stream),
            decoder: ReplyDecoder::new(opts.max_reply_line, opts.max_reply_lines),
            peer,
            local,
            opts,
            greeting: Reply::new(220, ""),
            features: Features::default(),
            epsv_refused: false,
            tls: None,
            credentials: None,
        };
        if client.opts.tls == TlsMode::Implicit {
            client.start_tls().await?;
        }
        let mut greeting = client.read_reply().await?;
        // 120: "ready in nnn minutes"; the real greeting follows.
        while greeting.code == 120 {
            greeting = client.read_reply().await?;
        }
        if greeting.code != 220 {
            return Err(Error::Refused {
                command: "(greeting)".into(),
                reply: greeting,
            });
        }
        client.greeting = greeting;
        match client.opts.tls {
            TlsMode::Explicit => client.auth_tls(true).await?,
            TlsMode::Auto => {
                let feat = client.command("FEAT").await?;
                if offers_auth_tls(&feat) {
                    client.auth_tls(false).await?;
                } else {
                    client.observe(Dialogue::Note(
                        "the server does not offer AUTH TLS: continuing without TLS",
                    ));
                }
            }
            TlsMode::Off | TlsMode::Implicit => {}
        }
        Ok(client)
    }

    /// `AUTH TLS` and the handshake. When `required`, a refusal is an error; otherwise the
    /// session goes on in clear text.
    async fn auth_tls(&mut self, required: bool) -> Result<()> {
        let reply = self.command("AUTH TLS").await?;
        if reply.code == 234 {
            // Bytes that arrived behind the 234 in clear text were not protected: a man in the
            // middle could have appended a forged reply (the client side of CVE-2011-0411).
            self.decoder = ReplyDecoder::new(self.opts.max_reply_line, self.opts.max_reply_lines);
            return self.start_tls().await;
        }
        if required {
            return Err(Error::Tls(format!(
                "the server refused AUTH TLS ({} {}): it offers no explicit FTPS on this port \
                 (try ftps:// for implicit TLS)",
                reply.code,
                reply.lines.join(" ").trim()
            )));
        }
        self.observe(Dialogue::Note(
            "the server refused AUTH TLS: continuing without TLS",
        ));
        Ok(())
    }

    /// The TLS handshake on the control connection (after `AUTH TLS`, or at once for
    /// implicit TLS).
    async fn start_tls(&mut self) -> Result<()> {
        let trust = match &self.opts.tls_config {
            Some(t) => t.clone(),
            None => {
                let t = TlsClientConfig::new(Trust::System)?;
                // Kept for the data connections and for renewals of this session.
                self.opts.tls_config = Some(t.clone());
                t
            }
        };
        let name = match &self.opts.server_name {
            Some(host) => tls::server_name(host)?,
            None => ServerName::IpAddress(self.peer.ip().into()),
        };
        let Stream::Tcp(tcp) = std::mem::replace(&mut self.ctrl, Stream::Empty) else {
            return Err(Error::Protocol(
                "the control connection is already TLS".into(),
            ));
        };
        let (config, store) = trust.for_session();
        let connector = TlsConnector::from(Arc::clone(&config));
        let stream = tokio::time::timeout(
            self.opts.connect_timeout,
            connector.connect(name.clone(), tcp),
        )
        .await
        .map_err(|_| Error::Timeout("in the TLS handshake of the control connection".into()))?
        .map_err(|e| trust.handshake_error("control connection", e))?;
        let conn = stream.get_ref().1;
        let cert = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| tls::fingerprint(c.as_ref()))
            .unwrap_or_default();
        let summary = format!("{}; certificate SHA-256 {cert}", tls::summary(conn));
        self.observe(Dialogue::Note(&format!("control connection: {summary}")));
        self.ctrl = Stream::Tls(Box::new(stream));
        self.tls = Some(TlsSession {
            config,
            store,
            name,
            trust,
            protect_data: false,
            summary,
        });
        Ok(())
    }

    /// `true` when the control connection uses TLS.
    pub fn is_tls(&self) -> bool {
        self.ctrl.is_tls()
    }

    /// `true` when data connections use TLS (`PROT P` accepted).
    pub fn data_protected(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.protect_data)
    }

    /// The control connection's TLS version, cipher suite and certificate fingerprint.
    pub fn tls_summary(&self) -> Option<&str> {
        self.tls.as_ref().map(|t| t.summary.as_str())
    }

    /// TLS 1.3 session tickets left for data connections to resume with.
    pub fn tls_tickets(&self) -> Option<usize> {
        self.tls.as_ref().map(|t| t.store.tickets())
    }

    /// The server's greeting.
    pub fn greeting(&self) -> &Reply {
        &self.greeting
    }

    /// The server's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Our end of the control connection.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The options in force.
    pub fn options(&self) -> &ConnectOptions {
        &self.opts
    }

    /// Change the data-connection mode for later transfers.
    pub fn set_mode(&mut self, mode: Mode) {
        self.opts.mode = mode;
    }

    /// Features from the last [`feat`](Self::feat) (empty before).
    pub fn features(&self) -> &Features {
        &self.features
    }

    // ---- the dialogue ----------------------------------------------------------------------

    fn observe(&self, step: Dialogue<'_>) {
        if let Some(obs) = &self.opts.observer {
            obs(step);
        }
    }

    /// Read one reply within the reply timeout.
    pub async fn read_reply(&mut self) -> Result<Reply> {
        let mut buf = [0u8; 4096];
        loop {
            match self.decoder.next_reply() {
                Ok(Some(reply)) => {
                    self.observe(Dialogue::Received(&reply));
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(e) => return Err(Error::Protocol(e.to_string())),
            }
            let n = tokio::time::timeout(self.opts.reply_timeout, self.ctrl.read(&mut buf))
                .await
                .map_err(|_| Error::Timeout("waiting for a reply".into()))?
                .map_err(Error::network("control connection"))?;
            if n == 0 {
                return Err(Error::Closed);
            }
            self.decoder.extend(&buf[..n]);
        }
    }

    /// Send one command line (without CRLF). CR, LF and NUL are refused.
    pub async fn send(&mut self, line: &str) -> Result<()> {
        if line.contains(['\r', '\n', '\0']) {
            return Err(Error::Usage(
                "a command or path may not contain CR, LF or NUL".into(),
            ));
        }
        self.observe(Dialogue::Sent(&masked(line)));
        let mut wire = Vec::with_capacity(line.len() + 2);
        wire.extend_from_slice(line.as_bytes());
        wire.extend_from_slice(b"\r\n");
        // Flush too: over TLS, write_all may leave records buffered in the TLS stream.
        let ctrl = &mut self.ctrl;
        let write = async move {
            ctrl.write_all(&wire).await?;
            ctrl.flush().await
        };
        tokio::time::timeout(self.opts.reply_timeout, write)
            .await
            .map_err(|_| Error::Timeout("sending a command".into()))?
            .map_err(Error::network("control connection"))
    }

    /// Send a command and read its reply, whatever the code.
    pub async fn command(&mut self, line: &str) -> Result<Reply> {
        self.send(line).await?;
        self.read_reply().await
    }

    /// Send a command and require a reply code accepted by `ok`.
    async fn expect(&mut self, line: &str, ok: impl Fn(u16) -> bool) -> Result<Reply> {
        let reply = self.command(line).await?;
        if ok(reply.code) {
            Ok(reply)
        } else {
            Err(Error::Refused {
                command: masked(line),
                reply,
            })
        }
    }

    async fn expect_2xx(&mut self, line: &str) -> Result<Reply> {
        self.expect(line, |c| (200..300).contains(&c)).await
    }

    /// Send a raw command line and return the final reply (preliminary `1yz` replies are
    /// reported to the observer and skipped). Error replies are returned, not raised.
    pub async fn quote(&mut self, raw: &str) -> Result<Reply> {
        self.send(raw).await?;
        loop {
            let reply = self.read_reply().await?;
            if !reply.is_preliminary() {
                return Ok(reply);
            }
        }
    }

    // ---- session -------------------------------------------------------------------------

    /// Log in, discover features and switch to binary (`TYPE I`).
    pub async fn login(&mut self, user: &str, pass: &str) -> Result<()> {
        let reply = self.command(&format!("USER {user}")).await?;
        let reply = match reply.code {
            230 => reply,
            331 | 332 => self.command(&format!("PASS {pass}")).await?,
            _ => return Err(Error::LoginRefused(reply)),
        };
        match reply.code {
            230 | 202 => {}
            332 => {
                return Err(Error::LoginRefused(reply));
            }
            _ => return Err(Error::LoginRefused(reply)),
        }
        self.credentials = Some(Credentials {
            user: user.to_string(),
            pass: pass.to_string(),
        });
        if self.tls.is_some() {
            self.protect_data().await?;
        }
        self.feat().await?;
        if self.features.has("UTF8") {
            // Best effort: some servers need it to send UTF-8 names.
            let _ = self.command("OPTS UTF8 ON").await?;
        }
        self.expect_2xx("TYPE I").await?;
        Ok(())
    }

    /// `PBSZ 0` and `PROT P`: data connections use TLS from now on.
    async fn protect_data(&mut self) -> Result<()> {
        // PBSZ must precede PROT (RFC 4217); some servers don't know it and don't need it.
        let _ = self.command("PBSZ 0").await?;
        let reply = self.command("PROT P").await?;
        let implicit = self.opts.tls == TlsMode::Implicit;
        if reply.is_success() || (implicit && matches!(reply.code, 500 | 502)) {
            // An implicit-TLS server that doesn't know PROT protects data anyway.
            if let Some(t) = &mut self.tls {
                t.protect_data = true;
            }
            Ok(())
        } else {
            Err(Error::Tls(format!(
                "the server refused PROT P ({} {}): data connections would not be protected",
                reply.code,
                reply.lines.join(" ").trim()
            )))
        }
    }

    /// Ask `FEAT` and remember the answer (a server without FEAT gives no features).
    pub async fn feat(&mut self) -> Result<&Features> {
        let reply = self.command("FEAT").await?;
        self.features = Features::parse(&reply);
        Ok(&self.features)
    }

    /// Say `QUIT` and close, ignoring a server that doesn't answer.
    pub async fn quit(mut self) -> Result<()> {
        if self.send("QUIT").await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), self.read_reply()).await;
        }
        let _ = self.ctrl.shutdown().await;
        Ok(())
    }

    /// `NOOP`, to keep a session alive or check it.
    pub async fn noop(&mut self) -> Result<()> {
        self.expect_2xx("NOOP").await.map(drop)
    }

    // ---- navigation and file commands -----------------------------------------------------

    /// The current directory (`PWD`).
    pub async fn pwd(&mut self) -> Result<String> {
        let reply = self.expect("PWD", |c| c == 257).await?;
        ferry_proto::reply::parse_257(&reply.text()).ok_or_else(|| {
            Error::Protocol(format!("no quoted path in PWD reply: {}", reply.text()))
        })
    }

    /// Change directory (`CWD`).
    pub async fn cwd(&mut self, path: &str) -> Result<()> {
        self.expect_2xx(&format!("CWD {path}")).await.map(drop)
    }

    /// Go to the parent directory (`CDUP`).
    pub async fn cdup(&mut self) -> Result<()> {
        self.expect_2xx("CDUP").await.map(drop)
    }

    /// Create a directory (`MKD`).
    pub async fn mkdir(&mut self, path: &str) -> Result<()> {
        self.expect_2xx(&format!("MKD {path}")).await.map(drop)
    }

    /// Remove an empty directory (`RMD`).
    pub async fn rmdir(&mut self, path: &str) -> Result<()> {
        self.expect_2xx(&format!("RMD {path}")).await.map(drop)
    }

    /// Delete a file (`DELE`).
    pub async fn delete(&mut self, path: &str) -> Result<()> {
        self.expect_2xx(&format!("DELE {path}")).await.map(drop)
    }

    /// Rename (`RNFR` + `RNTO`).
    pub async fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        self.expect(&format!("RNFR {from}"), |c| c == 350).await?;
        self.expect_2xx(&format!("RNTO {to}")).await.map(drop)
    }

    /// A file's size in bytes (`SIZE`, in binary type).
    pub async fn size(&mut self, path: &str) -> Result<u64> {
        let reply = self.expect(&format!("SIZE {path}"), |c| c == 213).await?;
        let text = reply.text();
        text.trim()
            .parse()
            .map_err(|_| Error::Protocol(format!("bad SIZE reply: {text}")))
    }

    /// A file's modification time, Unix seconds UTC (`MDTM`).
    pub async fn mdtm(&mut self, path: &str) -> Result<i64> {
        let reply = self.expect(&format!("MDTM {path}"), |c| c == 213).await?;
        let text = reply.text();
        listing::parse_mdtm(text.trim())
            .ok_or_else(|| Error::Protocol(format!("bad MDTM reply: {text}")))
    }

    /// Set a file's modification time (`MFMT`, when the server offers it).
    pub async fn mfmt(&mut self, path: &str, unix_secs: i64) -> Result<()> {
        let when = listing::format_mdtm(unix_secs);
        self.expect(&format!("MFMT {when} {path}"), |c| c == 213)
            .await
            .map(drop)
    }

    // ---- listings ------------------------------------------------------------------------

    /// A directory's entries: `MLSD` when the server announced `MLST`, else `LIST` parsed as
    /// Unix `ls -l` or DOS/IIS lines. `.`/`..` and unparsable lines are left out.
    /// `now` (Unix seconds) places year-less `ls` dates.
    pub async fn list(&mut self, path: Option<&str>) -> Result<Vec<ParsedEntry>> {
        let now = unix_now();
        if self.features.has("MLST") {
            let raw = self.listing_raw("MLSD", path).await?;
            Ok(listing::parse_mlsd(&raw))
        } else {
            let raw = self.listing_raw("LIST", path).await?;
            Ok(listing::parse_list(&raw, now))
        }
    }

    /// Names in a directory (`NLST`).
    pub async fn nlst(&mut self, path: Option<&str>) -> Result<Vec<String>> {
        let raw = self.listing_raw("NLST", path).await?;
        Ok(String::from_utf8_lossy(&raw)
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// The raw bytes of a listing command (`LIST`, `NLST`, `MLSD`), at most [`MAX_LISTING`].
    pub async fn listing_raw(&mut self, verb: &str, path: Option<&str>) -> Result<Vec<u8>> {
        let line = match path {
            Some(p) if !p.is_empty() => format!("{verb} {p}"),
            _ => verb.to_string(),
        };
        let mut download = self.start_transfer(&line).await?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match download.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => return Err(download.fail(e).await),
            };
            if n == 0 {
                break;
            }
            if out.len() + n > MAX_LISTING {
                download.abort().await?;
                return Err(Error::Protocol(format!(
                    "listing larger than {MAX_LISTING} bytes"
                )));
            }
            out.extend_from_slice(&buf[..n]);
        }
        download.finish().await?;
        Ok(out)
    }

    // ---- transfers -----------------------------------------------------------------------

    /// Start downloading `path` from byte `offset` (`REST` when nonzero). Read the returned
    /// stream to its end, then call [`Download::finish`].
    pub async fn retrieve(&mut self, path: &str, offset: u64) -> Result<Download<'_>> {
        let pending = self.open_data().await?;
        if offset > 0 {
            self.expect(&format!("REST {offset}"), |c| c == 350).await?;
        }
        self.begin(&format!("RETR {path}"), pending).await
    }

    /// Start uploading to `path`. Write the data, then call [`Upload::finish`].
    pub async fn store(&mut self, path: &str, mode: StoreMode) -> Result<Upload<'_>> {
        let pending = self.open_data().await?;
        let line = match mode {
            StoreMode::Replace => format!("STOR {path}"),
            StoreMode::Append => format!("APPE {path}"),
            StoreMode::At(offset) => {
                if offset > 0 {
                    self.expect(&format!("REST {offset}"), |c| c == 350).await?;
                }
                format!("STOR {path}")
            }
        };
        let Transfer {
            stream,
            final_reply,
        } = self.begin_raw(&line, pending).await?;
        let idle = self.opts.idle_timeout;
        Ok(Upload {
            client: self,
            data: stream,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            sent: 0,
            final_reply,
        })
    }

    /// Open a data connection and send a download-like command on it.
    async fn start_transfer(&mut self, line: &str) -> Result<Download<'_>> {
        let pending = self.open_data().await?;
        self.begin(line, pending).await
    }

    async fn begin(&mut self, line: &str, pending: Pending) -> Result<Download<'_>> {
        let Transfer {
            stream,
            final_reply,
        } = self.begin_raw(line, pending).await?;
        let idle = self.opts.idle_timeout;
        Ok(Download {
            client: self,
            data: stream,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            received: 0,
            final_reply,
        })
    }

    /// What a data connection needs for TLS, when data is protected.
    fn data_tls(&self) -> Option<DataTls> {
        let t = self.tls.as_ref().filter(|t| t.protect_data)?;
        Some(DataTls {
            config: Arc::clone(&t.config),
            name: t.name.clone(),
            trust: t.trust.clone(),
            observer: self.opts.observer.clone(),
        })
    }

    /// Send the transfer command, read its preliminary reply and establish the data stream.
    ///
    /// The data connection (accepting it in active mode, then the TLS handshake) proceeds
    /// while the reply is awaited: servers differ in whether they send `150` before or after
    /// the data connection's TLS handshake.
    async fn begin_raw(&mut self, line: &str, pending: Pending) -> Result<Transfer> {
        let timeout = self.opts.data_timeout;
        let secure = self.data_tls();
        let data = async move {
            let tcp = pending.establish(timeout).await?;
            match secure {
                Some(s) => s.secure(tcp, timeout).await,
                None => Ok(Stream::Tcp(tcp)),
            }
        };
        tokio::pin!(data);
        self.send(line).await?;
        let mut ready = None;
        let reply = loop {
            tokio::select! {
                biased;
                reply = self.read_reply() => break reply?,
                d = &mut data, if ready.is_none() => ready = Some(d),
            }
        };
        match reply.code {
            100..=199 => {
                let stream = match ready {
                    Some(r) => r,
                    None => data.await,
                };
                match stream {
                    Ok(stream) => Ok(Transfer {
                        stream,
                        final_reply: None,
                    }),
                    Err(e) => Err(self.explain(e, line).await),
                }
            }
            // Some servers answer an empty transfer with 226 at once.
            200..=299 => {
                let stream = match ready {
                    Some(Ok(s)) => s,
                    Some(Err(_)) => Stream::Empty,
                    None => match tokio::time::timeout(Duration::ZERO, data).await {
                        Ok(Ok(s)) => s,
                        _ => Stream::Empty,
                    },
                };
                Ok(Transfer {
                    stream,
                    final_reply: Some(reply),
                })
            }
            _ => Err(Error::Refused {
                command: line.to_string(),
                reply,
            }),
        }
    }

    /// The error for a data connection that failed: the server's error reply when it sends
    /// one soon (`522 session reuse required`, `425`, `426`), else `err`.
    async fn explain(&mut self, err: Error, what: &str) -> Error {
        if matches!(err, Error::Closed) {
            return err;
        }
        let wait = self.opts.reply_timeout.min(EXPLAIN_WAIT);
        match tokio::time::timeout(wait, self.read_reply()).await {
            Ok(Ok(reply)) if reply.is_error() => transfer_reply_error(reply, what),
            _ => err,
        }
    }

    /// Read the reply that ends a transfer; anything but 2xx means the transfer failed.
    async fn end_transfer(&mut self, final_reply: Option<Reply>, what: &str) -> Result<Reply> {
        let reply = match final_reply {
            Some(r) => r,
            None => self.read_reply().await?,
        };
        if reply.is_success() {
            Ok(reply)
        } else {
            Err(transfer_reply_error(reply, what))
        }
    }

    // ---- data connections ------------------------------------------------------------------

    fn control_is_v6(&self) -> bool {
        matches!(self.peer.ip().to_canonical(), std::net::IpAddr::V6(_))
    }

    /// Set up a data connection in the configured mode.
    ///
    /// With TLS 1.3 a data connection resumes the control session with a single-use ticket.
    /// Servers issue tickets on the control connection and usually on downloads, but not all
    /// do on uploads (Ferry doesn't), so a long run of uploads can use them all up; a server
    /// that requires session reuse would then refuse the next data connection (`522`). Before
    /// that happens, the control connection is renewed: log in again on a fresh connection
    /// (fresh tickets) and return to the current directory.
    async fn open_data(&mut self) -> Result<Pending> {
        if self
            .tls
            .as_ref()
            .is_some_and(|t| t.protect_data && t.store.exhausted())
            && self.credentials.is_some()
        {
            self.renew().await?;
        }
        let v6 = self.control_is_v6();
        match self.opts.mode {
            Mode::Active => self.open_active().await,
            Mode::Epsv => self
                .open_epsv()
                .await?
                .map_err(|(line, reply)| Error::Refused {
                    command: line,
                    reply,
                }),
            Mode::Passive if v6 => {
                self.open_epsv()
                    .await?
                    .map_err(|(line, reply)| Error::Refused {
                        command: line,
                        reply,
                    })
            }
            Mode::Passive => self.open_pasv().await,
            Mode::Auto => {
                if !self.epsv_refused || v6 {
                    match self.open_epsv().await {
                        Ok(Ok(p)) => return Ok(p),
                        Ok(Err((line, reply))) => {
                            if v6 || !(500..600).contains(&reply.code) {
                                return Err(Error::Refused {
                                    command: line,
                                    reply,
                                });
                            }
                            self.epsv_refused = true;
                        }
                        // The EPSV port was unreachable: try PASV, whose reply may name a
                        // reachable address.
                        Err(e) if !v6 && e.is_network() && !matches!(e, Error::Closed) => {}
                        Err(e) => return Err(e),
                    }
                }
                self.open_pasv().await
            }
        }
    }

    /// Replace the control connection with a fresh, logged-in one in the same directory.
    async fn renew(&mut self) -> Result<()> {
        let Some(creds) = self.credentials.clone() else {
            return Ok(());
        };
        self.observe(Dialogue::Note(
            "no TLS session ticket left for a data connection: renewing the control connection",
        ));
        let dir = self.pwd().await.ok();
        if self.send("QUIT").await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), self.read_reply()).await;
        }
        let _ = self.ctrl.shutdown().await;
        let mut fresh = Client::connect(self.peer, self.opts.clone()).await?;
        fresh.login(&creds.user, &creds.pass).await?;
        if let Some(dir) = dir {
            fresh.cwd(&dir).await?;
        }
        fresh.epsv_refused = self.epsv_refused;
        *self = fresh;
        Ok(())
    }

    /// `EPSV` and connect; `Ok(Err)` when the server refused the command.
    async fn open_epsv(&mut self) -> Result<std::result::Result<Pending, (String, Reply)>> {
        let reply = self.command("EPSV").await?;
        if reply.code != 229 {
            return Ok(Err(("EPSV".into(), reply)));
        }
        let port = hostport::parse_epsv_reply_text(&reply.text())
            .map_err(|e| Error::Protocol(format!("EPSV reply: {e}")))?;
        let addr = SocketAddr::new(self.peer.ip(), port);
        Ok(Ok(Pending::Connected(
            data::connect(addr, self.opts.data_timeout).await?,
        )))
    }

    async fn open_pasv(&mut self) -> Result<Pending> {
        let reply = self.expect("PASV", |c| c == 227).await?;
        let offered = hostport::parse_pasv_reply_text(&reply.text())
            .map_err(|e| Error::Protocol(format!("PASV reply: {e}")))?;
        let addr = data::pasv_target(
            SocketAddr::V4(offered),
            self.peer.ip(),
            self.opts.trust_pasv_address,
        );
        Ok(Pending::Connected(
            data::connect(addr, self.opts.data_timeout).await?,
        ))
    }

    async fn open_active(&mut self) -> Result<Pending> {
        let ip = self.opts.active_addr.unwrap_or(self.local.ip());
        let listener = TcpListener::bind(SocketAddr::new(ip, 0))
            .await
            .map_err(Error::network(format!("listening on {ip} for active mode")))?;
        let addr = listener
            .local_addr()
            .map_err(Error::network("active-mode listener"))?;
        let line = match addr {
            SocketAddr::V4(v4) => format!("PORT {}", hostport::format_port_arg(v4)),
            SocketAddr::V6(_) => format!("EPRT {}", hostport::format_eprt_arg(addr)),
        };
        self.expect_2xx(&line).await?;
        Ok(Pending::Listening {
            listener,
            peer_ip: self.peer.ip(),
        })
    }
}

struct Transfer {
    stream: Stream,
    final_reply: Option<Reply>,
}

/// The error for a reply that ends a transfer badly.
fn transfer_reply_error(reply: Reply, what: &str) -> Error {
    if reply.code == 426 || reply.code == 451 {
        Error::Partial(format!(
            "{what}: {} {}",
            reply.code,
            reply.lines.join(" ").trim()
        ))
    } else {
        Error::Refused {
            command: what.to_string(),
            reply,
        }
    }
}

/// `true` when a `FEAT` reply lists `AUTH` with `TLS` among its mechanisms (`AUTH TLS`,
/// `AUTH TLS;SSL`, `AUTH SSL TLS`, one line per mechanism, ...).
fn offers_auth_tls(feat: &Reply) -> bool {
    feat.is_success()
        && feat.lines.iter().any(|l| {
            let mut words = l.split([' ', ';', ',']).filter(|w| !w.is_empty());
            words.next().is_some_and(|w| w.eq_ignore_ascii_case("AUTH"))
                && words.any(|w| w.eq_ignore_ascii_case("TLS") || w.eq_ignore_ascii_case("TLS-C"))
        })
}

/// The error for a failed transfer (data connection already closed): the server's own reply
/// when it explains the failure (`426`, `522`, `552`, ...), else the I/O error.
async fn transfer_failure(
    client: &mut Client,
    final_reply: Option<Reply>,
    what: &str,
    e: std::io::Error,
) -> Error {
    let err = transfer_error(what, e);
    match final_reply {
        Some(r) if r.is_error() => transfer_reply_error(r, what),
        Some(_) => err,
        None => client.explain(err, what).await,
    }
}

fn transfer_error(what: &str, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::TimedOut {
        Error::Timeout(format!("{what}: the data connection went idle"))
    } else {
        Error::Network {
            context: what.to_string(),
            source: e,
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A download in progress: read the file's bytes, then [`finish`](Self::finish).
///
/// Reading fails with `TimedOut` when the data connection stays silent longer than the idle
/// timeout.
#[derive(Debug)]
pub struct Download<'a> {
    client: &'a mut Client,
    data: Stream,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    received: u64,
    final_reply: Option<Reply>,
}

impl Download<'_> {
    /// Bytes read so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Close the data connection and read the server's final reply: the transfer succeeded
    /// only if this returns `Ok`. Call after reading to the end.
    pub async fn finish(self) -> Result<Reply> {
        let Download {
            client,
            mut data,
            final_reply,
            ..
        } = self;
        if data.is_tls() {
            // Our close_notify in answer to the server's; best effort.
            let _ = tokio::time::timeout(Duration::from_secs(2), data.shutdown()).await;
        }
        drop(data);
        client.end_transfer(final_reply, "download").await
    }

    /// Give up: `ABOR`, close the data connection, and read the replies that follow.
    pub async fn abort(self) -> Result<()> {
        let Download {
            client,
            data,
            final_reply,
            ..
        } = self;
        drop(data);
        if final_reply.is_some() {
            return Ok(());
        }
        client.send("ABOR").await?;
        // 426 (transfer aborted) then 226 (ABOR ok), or just 226/225.
        for _ in 0..2 {
            let reply = client.read_reply().await?;
            if reply.code == 226 || reply.code == 225 || reply.code >= 500 {
                break;
            }
        }
        Ok(())
    }

    /// The error for a failed read: closes the data connection and, when the server explains
    /// the failure on the control connection soon (`426`, `522`, ...), that reply.
    pub async fn fail(self, e: std::io::Error) -> Error {
        let Download {
            client,
            data,
            final_reply,
            ..
        } = self;
        drop(data);
        transfer_failure(client, final_reply, "download", e).await
    }
}

impl AsyncRead for Download<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.data).poll_read(cx, buf) {
            Poll::Ready(result) => {
                let result = match result {
                    // A server that closes a TLS data connection without close_notify (many
                    // do) ends the file too: the final reply on the authenticated control
                    // connection says whether the transfer was complete, and callers compare
                    // sizes.
                    Err(e)
                        if e.kind() == std::io::ErrorKind::UnexpectedEof && this.data.is_tls() =>
                    {
                        Ok(())
                    }
                    other => other,
                };
                if result.is_ok() {
                    this.received += (buf.filled().len() - before) as u64;
                    this.timer.as_mut().reset(Instant::now() + this.idle);
                }
                Poll::Ready(result)
            }
            Poll::Pending => idle_check(&mut this.timer, cx),
        }
    }
}

fn idle_check<T>(timer: &mut Pin<Box<Sleep>>, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
    match timer.as_mut().poll(cx) {
        Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "data connection idle",
        ))),
        Poll::Pending => Poll::Pending,
    }
}

use std::future::Future;

/// An upload in progress: write the bytes, then [`finish`](Self::finish).
#[derive(Debug)]
pub struct Upload<'a> {
    client: &'a mut Client,
    data: Stream,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    sent: u64,
    final_reply: Option<Reply>,
}

impl Upload<'_> {
    /// Bytes written so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Close the data connection (end of file) and read the server's final reply: the
    /// upload succeeded only if this returns `Ok`.
    ///
    /// Over TLS the end of file is a close_notify; then the data connection is read until
    /// the server closes it (it answers with its own close_notify, and may send session
    /// tickets), so that no unread bytes make our close a TCP reset that could cut the end
    /// of the upload on the server's side.
    pub async fn finish(self) -> Result<Reply> {
        let Upload {
            client,
            mut data,
            final_reply,
            idle,
            ..
        } = self;
        let closed = match tokio::time::timeout(idle, data.finish_writing()).await {
            Err(_) => Err(Error::Timeout("closing the data connection".into())),
            Ok(Err(e)) => Err(transfer_error("closing the data connection", e)),
            Ok(Ok(())) => Ok(()),
        };
        if closed.is_ok() && data.is_tls() {
            let drain = async {
                let mut sink = [0u8; 4096];
                // Errors end it too: the server may close without close_notify.
                while matches!(data.read(&mut sink).await, Ok(n) if n > 0) {}
            };
            let _ = tokio::time::timeout(idle.min(DRAIN_WAIT), drain).await;
        }
        drop(data);
        if let Err(e) = closed {
            return Err(match final_reply {
                Some(r) if r.is_error() => transfer_reply_error(r, "upload"),
                Some(_) => e,
                None => client.explain(e, "upload").await,
            });
        }
        client.end_transfer(final_reply, "upload").await
    }

    /// The error for a failed write: closes the data connection and, when the server explains
    /// the failure on the control connection soon (`426`, `522`, `552`, ...), that reply.
    pub async fn fail(self, e: std::io::Error) -> Error {
        let Upload {
            client,
            data,
            final_reply,
            ..
        } = self;
        drop(data);
        transfer_failure(client, final_reply, "upload", e).await
    }
}

impl AsyncWrite for Upload<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.data).poll_write(cx, buf) {
            Poll::Ready(result) => {
                if let Ok(n) = result {
                    this.sent += n as u64;
                    this.timer.as_mut().reset(Instant::now() + this.idle);
                }
                Poll::Ready(result)
            }
            Poll::Pending => idle_check(&mut this.timer, cx),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        Pin::new(&mut this.data).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        Pin::new(&mut this.data).poll_shutdown(cx)
    }
}
