//! A lean FTP client for load generation: tokio sockets and `ferry-proto`'s reply decoder,
//! nothing else. Every socket operation is bounded by [`io_timeout`] (`--timeout`), so a
//! stalled server ends an operation with an error instead of hanging the bench.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use ferry_proto::hostport::{parse_epsv_reply_text, parse_pasv_reply_text};
use ferry_proto::{Reply, ReplyDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

/// One control connection.
pub(super) struct Ctrl {
    stream: TcpStream,
    decoder: ReplyDecoder,
    peer: SocketAddr,
    mode: DataMode,
}

impl Ctrl {
    /// Connect and read the greeting (a `220`, after any `120`).
    pub(super) async fn connect(addr: SocketAddr, mode: DataMode) -> Result<Ctrl> {
        let stream = bounded("connect", TcpStream::connect(addr)).await?;
        stream.set_nodelay(true).context("TCP_NODELAY")?;
        let mut ctrl = Ctrl {
            stream,
            decoder: ReplyDecoder::new(8192, 1000),
            peer: addr,
            mode,
        };
        let mut greeting = ctrl.reply().await?;
        while greeting.code == 120 {
            greeting = ctrl.reply().await?;
        }
        if greeting.code != 220 {
            bail!("greeting: {}", line(&greeting));
        }
        Ok(ctrl)
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
        bounded("send command", self.stream.write_all(&bytes)).await
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

    /// Connect, log in and switch to binary.
    pub(super) async fn open(
        addr: SocketAddr,
        mode: DataMode,
        user: &str,
        pass: &str,
    ) -> Result<Ctrl> {
        let mut c = Ctrl::connect(addr, mode).await?;
        c.login(user, pass).await?;
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
    /// `227` reply is ignored, as curl does by default).
    async fn data(&mut self) -> Result<TcpStream> {
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

    /// Send a transfer command on an open data connection and wait for its `1xx`.
    async fn start(&mut self, cmd: &str) -> Result<()> {
        let r = self.cmd(cmd).await?;
        if !(100..200).contains(&r.code) {
            bail!("{cmd}: {}", line(&r));
        }
        Ok(())
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
        let mut data = self.data().await?;
        self.start(&cmd).await?;
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
        let mut data = self.data().await?;
        self.start(&cmd).await?;
        let (sent, complete) = fill(&mut data, size, pattern, deadline).await?;
        if complete {
            bounded("close upload", data.shutdown()).await?;
            drop(data);
            self.finish(&cmd).await?;
        }
        Ok((sent, complete))
    }

    /// Run a listing command (`LIST dir`, `MLSD dir`, `NLST dir`) on a new data connection;
    /// returns bytes, lines and when each phase ended, counted from sending the command.
    pub(super) async fn listing(
        &mut self,
        cmd: &str,
        buf: &mut [u8],
    ) -> Result<(u64, u64, Phases)> {
        let mut data = self.data().await?;
        let t0 = Instant::now();
        self.start(cmd).await?;
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
        let mut data = self.data().await?;
        let r = self.cmd(&cmd).await?;
        if (400..600).contains(&r.code) {
            // Commonly 450/550 for a missing directory.
            return Ok(Vec::new());
        }
        if !(100..200).contains(&r.code) {
            bail!("{cmd}: {}", line(&r));
        }
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
pub(super) async fn drain(
    data: &mut TcpStream,
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
pub(super) async fn fill(
    data: &mut TcpStream,
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
