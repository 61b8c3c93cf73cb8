//! A lean FTP client for load generation: tokio sockets and `ferry-proto`'s reply decoder,
//! plus rustls for `--tls`, nothing else. Every socket operation is bounded by
//! [`io_timeout`] (`--timeout`), so a stalled server ends an operation with an error instead
//! of hanging the bench.
//!
//! With `--tls` ([`Target::tls`]) every control connection is explicit FTPS (RFC 4217):
//! `AUTH TLS` after the greeting, the handshake, the login inside TLS, then `PBSZ 0` and
//! `PROT P` (in [`Ctrl::open`]), so data connections are TLS too. Each control connection
//! has its own configuration and ticket store (`ferry-client`'s
//! [`TlsClientConfig::for_session`](ferry_client::TlsClientConfig::for_session)): its data
//! connections resume its TLS session, as strict servers (Ferry, vsftpd) require. Plain
//! connections go through the same [`Conn`] enum, at the cost of a match per operation.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use ferry_client::tls::TicketStore;
use ferry_proto::hostport::{parse_epsv_reply_text, parse_pasv_reply_text};
use ferry_proto::{Reply, ReplyDecoder};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::Target;

static IO_TIMEOUT: OnceLock<Duration> = OnceLock::new();

/// Set the longest wait for any single socket operation (once, at start).
pub(super) fn set_io_timeout(t: Duration) {
    let _ = IO_TIMEOUT.set(t);
}

/// The longest wait for any single socket operation (connect, one read, one write).
pub(super) fn io_timeout() -> Duration {
    IO_TIMEOUT.get().copied().unwrap_or(Duration::from_secs(30))
}

/// Await `fut`, failing with `what` if it takes longer than [`io_timeout`].
pub(super) async fn bounded<T>(
    what: &str,
    fut: impl Future<Output = std::io::Result<T>>,
) -> Result<T> {
    let limit = io_timeout();
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.with_context(|| what.to_string()),
        Err(_) => bail!("{what}: no progress in {}s", limit.as_secs_f64()),
    }
}

/// How to open data connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DataMode {
    /// `EPSV`, falling back to `PASV` when the server refuses it.
    Epsv,
    /// `PASV` only.
    Pasv,
}

/// When the phases of a listing ended, from sending its command.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Phases {
    pub(super) reply_150: Duration,
    pub(super) first_byte: Duration,
    pub(super) eof: Duration,
    pub(super) reply_226: Duration,
}

/// A control or data connection: plain TCP, or TLS over TCP.
pub(super) enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    fn is_tls(&self) -> bool {
        matches!(self, Conn::Tls(_))
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => match Pin::new(s.as_mut()).poll_read(cx, buf) {
                // A server that closes a TLS connection without close_notify (many do) ends
                // the stream too: a transfer's final reply, on the authenticated control
                // connection, says whether it was complete, and the scenarios count bytes.
                Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    Poll::Ready(Ok(()))
                }
                other => other,
            },
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    /// Plain: a FIN. TLS: close_notify, flushed, then a FIN.
    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The TLS side of a control connection.
struct Session {
    /// This session's own configuration and ticket store: data connections connect with it
    /// to resume the control connection's TLS session.
    config: Arc<rustls::ClientConfig>,
    store: Arc<TicketStore>,
    /// The name the certificate is (not) checked against: the server's IP address, as
    /// `ferry-client` uses without a host name.
    name: ServerName<'static>,
    /// Where and as whom, to open a new session when the tickets run out.
    target: Arc<Target>,
}

/// One control connection.
pub(super) struct Ctrl {
    stream: Conn,
    decoder: ReplyDecoder,
    peer: SocketAddr,
    mode: DataMode,
    /// `Some` with `--tls`.
    tls: Option<Session>,
}

impl Ctrl {
    /// Connect and read the greeting (a `220`, after any `120`); with `--tls`, `AUTH TLS` and
    /// the TLS handshake.
    pub(super) async fn connect(target: &Arc<Target>, mode: DataMode) -> Result<Ctrl> {
        let addr = target.addr;
        let stream = bounded("connect", TcpStream::connect(addr)).await?;
        stream.set_nodelay(true).context("TCP_NODELAY")?;
        let mut ctrl = Ctrl {
            stream: Conn::Plain(stream),
            decoder: ReplyDecoder::new(8192, 1000),
            peer: addr,
            mode,
            tls: None,
        };
        let mut greeting = ctrl.reply().await?;
        while greeting.code == 120 {
            greeting = ctrl.reply().await?;
        }
        if greeting.code != 220 {
            bail!("greeting: {}", line(&greeting));
        }
        if target.tls.is_some() {
            ctrl = ctrl.start_tls(target).await?;
        }
        Ok(ctrl)
    }

    /// `AUTH TLS` and the handshake of the control connection, with a session (configuration
    /// and ticket store) of its own.
    async fn start_tls(mut self, target: &Arc<Target>) -> Result<Ctrl> {
        let Some(tls) = &target.tls else {
            return Ok(self);
        };
        let r = self.cmd("AUTH TLS").await?;
        if r.code != 234 {
            bail!(
                "AUTH TLS refused: {} (the server offers no explicit FTPS on this port; \
                 run without --tls for plain FTP)",
                line(&r)
            );
        }
        let Ctrl {
            stream, peer, mode, ..
        } = self;
        let Conn::Plain(tcp) = stream else {
            bail!("the control connection is already TLS");
        };
        let (config, store) = tls.for_session();
        let name = ServerName::IpAddress(peer.ip().into());
        let connector = TlsConnector::from(Arc::clone(&config));
        let stream = bounded(
            "TLS handshake of the control connection",
            connector.connect(name.clone(), tcp),
        )
        .await?;
        Ok(Ctrl {
            stream: Conn::Tls(Box::new(stream)),
            // Anything that arrived behind the 234 in clear text is dropped: it was not
            // protected.
            decoder: ReplyDecoder::new(8192, 1000),
            peer,
            mode,
            tls: Some(Session {
                config,
                store,
                name,
                target: Arc::clone(target),
            }),
        })
    }

    /// Read the next complete reply.
    pub(super) async fn reply(&mut self) -> Result<Reply> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(r) = self.decoder.next_reply().context("bad reply")? {
                return Ok(r);
            }
            let n = bounded("read reply", self.stream.read(&mut buf)).await?;
            if n == 0 {
                bail!("server closed the control connection");
            }
            self.decoder.extend(&buf[..n]);
        }
    }

    /// Send one command line (CRLF appended).
    pub(super) async fn send(&mut self, cmd: &str) -> Result<()> {
        let mut bytes = Vec::with_capacity(cmd.len() + 2);
        bytes.extend_from_slice(cmd.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        match &mut self.stream {
            Conn::Plain(s) => bounded("send command", s.write_all(&bytes)).await,
            // rustls may keep part of a record until flushed.
            Conn::Tls(s) => {
                bounded("send command", async {
                    s.write_all(&bytes).await?;
                    s.flush().await
                })
                .await
            }
        }
    }

    /// Send a command and read its reply.
    pub(super) async fn cmd(&mut self, cmd: &str) -> Result<Reply> {
        self.send(cmd).await?;
        self.reply().await
    }

    /// Send a command and fail unless the reply code is one of `ok`.
    pub(super) async fn expect(&mut self, cmd: &str, ok: &[u16]) -> Result<Reply> {
        let r = self.cmd(cmd).await?;
        if ok.contains(&r.code) {
            Ok(r)
        } else {
            let shown = if cmd.starts_with("PASS ") {
                "PASS ****"
            } else {
                cmd
            };
            bail!("{shown}: {}", line(&r))
        }
    }

    /// `USER` + `PASS` (a `230` straight after `USER` is accepted too).
    pub(super) async fn login(&mut self, user: &str, pass: &str) -> Result<()> {
        let r = self
            .expect(&format!("USER {user}"), &[230, 331, 332])
            .await?;
        if r.code != 230 {
            self.expect(&format!("PASS {pass}"), &[230, 202]).await?;
        }
        Ok(())
    }

    /// Connect, log in and switch to binary; with `--tls`, `PBSZ 0` and `PROT P` after the
    /// login, so that data connections are TLS too.
    pub(super) async fn open(target: &Arc<Target>, mode: DataMode) -> Result<Ctrl> {
        let mut c = Ctrl::connect(target, mode).await?;
        c.login(&target.user, &target.pass).await?;
        if c.tls.is_some() {
            c.expect("PBSZ 0", &[200]).await?;
            c.expect("PROT P", &[200]).await?;
        }
        c.expect("TYPE I", &[200]).await?;
        Ok(c)
    }

    /// `QUIT`, reading the `221` if it comes; errors are ignored (the server may just close).
    pub(super) async fn quit(mut self) {
        if self.send("QUIT").await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), self.reply()).await;
        }
    }

    /// Open a passive data connection to the control peer's address (the address in a
    /// `227` reply is ignored, as curl does by default); TLS comes later, in [`Ctrl::begin`].
    ///
    /// With TLS 1.3 each data connection uses up one of the session's single-use tickets;
    /// servers send new ones on the control connection and on downloads, not always on
    /// uploads (Ferry doesn't). When none is left, this session is replaced by a new one
    /// (connect, `AUTH TLS`, login) with fresh tickets, as `ferry-client` does: a data
    /// connection without one could not resume the session, and strict servers refuse it.
    async fn data(&mut self) -> Result<TcpStream> {
        if let Some(t) = self.tls.as_ref().filter(|t| t.store.exhausted()) {
            let target = Arc::clone(&t.target);
            let fresh = Ctrl::open(&target, self.mode)
                .await
                .context("new session for fresh TLS session tickets")?;
            std::mem::replace(self, fresh).quit().await;
        }
        let port = if self.mode == DataMode::Epsv {
            let r = self.cmd("EPSV").await?;
            match r.code {
                229 => Some(parse_epsv_reply_text(&r.text()).map_err(|e| anyhow!("EPSV: {e}"))?),
                500..=504 => {
                    self.mode = DataMode::Pasv;
                    None
                }
                _ => bail!("EPSV: {}", line(&r)),
            }
        } else {
            None
        };
        let port = match port {
            Some(p) => p,
            None => {
                let r = self.expect("PASV", &[227]).await?;
                parse_pasv_reply_text(&r.text())
                    .map_err(|e| anyhow!("PASV: {e}"))?
                    .port()
            }
        };
        let data = bounded(
            "data connect",
            TcpStream::connect(SocketAddr::new(self.peer.ip(), port)),
        )
        .await?;
        Ok(data)
    }

    /// Send a transfer command for the data connection `tcp` and read its first reply; the
    /// connection comes back (as TLS with `PROT P`) with a `1xx` reply only. The data
    /// connection's TLS handshake runs while the reply is awaited: servers differ in whether
    /// they send `150` before or after it.
    async fn begin(&mut self, cmd: &str, tcp: TcpStream) -> Result<(Reply, Option<Conn>)> {
        let Some(t) = &self.tls else {
            let r = self.cmd(cmd).await?;
            let data = (100..200).contains(&r.code).then_some(Conn::Plain(tcp));
            return Ok((r, data));
        };
        let connector = TlsConnector::from(Arc::clone(&t.config));
        let handshake = bounded(
            "TLS handshake of the data connection",
            connector.connect(t.name.clone(), tcp),
        );
        tokio::pin!(handshake);
        self.send(cmd).await?;
        let mut shaken = None;
        let r = loop {
            tokio::select! {
                r = self.reply() => break r?,
                h = &mut handshake, if shaken.is_none() => shaken = Some(h),
            }
        };
        if !(100..200).contains(&r.code) {
            return Ok((r, None));
        }
        let stream = match shaken {
            Some(h) => h?,
            None => handshake.await?,
        };
        Ok((r, Some(Conn::Tls(Box::new(stream)))))
    }

    /// Send a transfer command for the data connection `tcp` and wait for its `1xx`.
    async fn start(&mut self, cmd: &str, tcp: TcpStream) -> Result<Conn> {
        match self.begin(cmd, tcp).await? {
            (_, Some(data)) => Ok(data),
            (r, None) => bail!("{cmd}: {}", line(&r)),
        }
    }

    /// The final reply of a transfer, which must be `2xx`.
    async fn finish(&mut self, cmd: &str) -> Result<()> {
        let r = self.reply().await?;
        if !(200..300).contains(&r.code) {
            bail!("{cmd} (end): {}", line(&r));
        }
        Ok(())
    }

    /// Download `path`, discarding the bytes into `buf`. Returns the byte count and whether
    /// the transfer completed; after `deadline` it stops early, leaving this connection
    /// mid-transfer (drop it).
    pub(super) async fn retr(
        &mut self,
        path: &str,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> Result<(u64, bool)> {
        let cmd = format!("RETR {path}");
        let tcp = self.data().await?;
        let mut data = self.start(&cmd, tcp).await?;
        let (total, complete) = drain(&mut data, buf, deadline, |_| {}).await?;
        drop(data);
        if complete {
            self.finish(&cmd).await?;
        }
        Ok((total, complete))
    }

    /// Upload `size` bytes to `path`, repeating `pattern`. Returns the bytes sent and whether
    /// the transfer completed; after `deadline` it stops early, leaving this connection
    /// mid-transfer (drop it).
    pub(super) async fn stor(
        &mut self,
        path: &str,
        size: u64,
        pattern: &[u8],
        deadline: Option<Instant>,
    ) -> Result<(u64, bool)> {
        let cmd = format!("STOR {path}");
        let tcp = self.data().await?;
        let mut data = self.start(&cmd, tcp).await?;
        let (sent, complete) = fill(&mut data, size, pattern, deadline).await?;
        if complete {
            bounded("close upload", data.shutdown()).await?;
            if data.is_tls() {
                self.finish_tls_upload(&cmd, data).await?;
            } else {
                drop(data);
                self.finish(&cmd).await?;
            }
        }
        Ok((sent, complete))
    }

    /// The final reply of a TLS upload whose close_notify is sent, reading the data
    /// connection meanwhile (the server's close_notify, any session tickets): closing it
    /// with bytes unread would make the close a reset, which can cut the end of the upload
    /// on the server's side before the server has read it. Once the final reply is in, the
    /// server has all the data, and the connection is dropped whatever is left on it.
    async fn finish_tls_upload(&mut self, cmd: &str, mut data: Conn) -> Result<()> {
        let mut sink = [0u8; 4096];
        let drain = async {
            // Errors end it too: the server may close without close_notify.
            while matches!(data.read(&mut sink).await, Ok(n) if n > 0) {}
        };
        tokio::pin!(drain);
        let mut drained = false;
        let r = loop {
            tokio::select! {
                r = self.reply() => break r?,
                () = &mut drain, if !drained => drained = true,
            }
        };
        if !(200..300).contains(&r.code) {
            bail!("{cmd} (end): {}", line(&r));
        }
        Ok(())
    }

    /// Run a listing command (`LIST dir`, `MLSD dir`, `NLST dir`) on a new data connection;
    /// returns bytes, lines and when each phase ended, counted from sending the command.
    pub(super) async fn listing(
        &mut self,
        cmd: &str,
        buf: &mut [u8],
    ) -> Result<(u64, u64, Phases)> {
        let tcp = self.data().await?;
        let t0 = Instant::now();
        let mut data = self.start(cmd, tcp).await?;
        let reply_150 = t0.elapsed();
        let mut lines = 0u64;
        let mut first_byte = None;
        let (total, _) = drain(&mut data, buf, None, |chunk| {
            first_byte.get_or_insert_with(|| t0.elapsed());
            lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        })
        .await?;
        let eof = t0.elapsed();
        drop(data);
        self.finish(cmd).await?;
        let phases = Phases {
            reply_150,
            first_byte: first_byte.unwrap_or(eof),
            eof,
            reply_226: t0.elapsed(),
        };
        Ok((total, lines, phases))
    }

    /// Names in `dir` per `NLST` (for checking what a previous run left).
    pub(super) async fn nlst(&mut self, dir: &str) -> Result<Vec<String>> {
        let cmd = format!("NLST {dir}");
        let tcp = self.data().await?;
        let (r, data) = self.begin(&cmd, tcp).await?;
        if (400..600).contains(&r.code) {
            // Commonly 450/550 for a missing directory.
            return Ok(Vec::new());
        }
        let Some(mut data) = data else {
            bail!("{cmd}: {}", line(&r));
        };
        let mut all = Vec::new();
        data.read_to_end(&mut all).await.context("NLST data")?;
        drop(data);
        self.finish(&cmd).await?;
        Ok(String::from_utf8_lossy(&all)
            .lines()
            .map(|l| l.rsplit('/').next().unwrap_or(l).trim().to_string())
            .filter(|l| !l.is_empty())
            .collect())
    }

    /// `SIZE path`, or `None` when the server says it does not exist.
    pub(super) async fn size(&mut self, path: &str) -> Result<Option<u64>> {
        let r = self.cmd(&format!("SIZE {path}")).await?;
        Ok(if r.code == 213 {
            r.text().trim().parse().ok()
        } else {
            None
        })
    }
}

/// Read `data` to end of stream through `buf`, passing each chunk to `each`. Returns the
/// byte count and `true`, or `false` if `deadline` passed first.
pub(super) async fn drain<S: AsyncRead + Unpin>(
    data: &mut S,
    buf: &mut [u8],
    deadline: Option<Instant>,
    mut each: impl FnMut(&[u8]),
) -> Result<(u64, bool)> {
    let mut total = 0u64;
    loop {
        let n = bounded("read data", data.read(buf)).await?;
        if n == 0 {
            return Ok((total, true));
        }
        each(&buf[..n]);
        total += n as u64;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok((total, false));
        }
    }
}

/// Write `size` bytes to `data`, repeating `pattern`. Returns the bytes written and `true`,
/// or `false` if `deadline` passed first.
pub(super) async fn fill<S: AsyncWrite + Unpin>(
    data: &mut S,
    size: u64,
    pattern: &[u8],
    deadline: Option<Instant>,
) -> Result<(u64, bool)> {
    if pattern.is_empty() {
        bail!("empty data pattern");
    }
    let mut sent = 0u64;
    while sent < size {
        let n = usize::try_from(size - sent)
            .unwrap_or(usize::MAX)
            .min(pattern.len());
        bounded("write data", data.write_all(&pattern[..n])).await?;
        sent += n as u64;
        if sent < size && deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok((sent, false));
        }
    }
    Ok((sent, true))
}

/// A reply as one line for error messages.
fn line(r: &Reply) -> String {
    format!("{} {}", r.code, r.lines.join(" / "))
}
