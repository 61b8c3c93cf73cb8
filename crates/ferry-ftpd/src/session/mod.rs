//! One task per control connection.
//!
//! The session reads lines through a bounded [`LineBuffer`], parses them with
//! [`ferry_proto::command::parse`], and answers from one `match` in [`Session::dispatch`].
//! A transfer runs as its own task so the control connection stays responsive: `ABOR`, `STAT`
//! and `NOOP` are answered during a transfer, other commands wait for it to end.
//!
//! # Layout
//! The loop, the state and the dispatch live here; the commands, by family, in
//! `access` (USER, PASS, FEAT, OPTS), `files` (CWD, MKD, RMD, DELE, RNFR/RNTO, SIZE, MDTM,
//! MFMT, MLST, STAT path), `listings` (LIST, NLST, MLSD), `transfers` (RETR, STOR, APPE, STOU
//! and the transfer task), `ftps` (AUTH, PBSZ, PROT, CCC), `protected` (TLS data connections:
//! handshake, proof of session reuse, the passive wait) and `data` (PORT, EPRT, PASV, EPSV).

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ferry_core::{SessionPermit, UserFs};
use ferry_proto::command::{Command, ListArgs, ParseError, SiteCommand, TransferType};
use ferry_proto::line::Line;
use ferry_proto::listing::MlstFacts;
use ferry_proto::{LineBuffer, Reply};
use ferry_vfs::VPath;
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::data::PassivePlan;
use crate::shared::Shared;
use crate::tls::{DataOwner, Stream, TOKEN_LEN};

mod access;
mod data;
mod files;
mod ftps;
mod listings;
mod protected;
mod transfers;

use listings::{ListStyle, listed, listed_kind, parse_stat_args, perm_facts};
use transfers::StoreKind;

/// Lines a client may send ahead while a transfer runs; more is abuse.
const MAX_DEFERRED: usize = 32;

/// Where the next data connection comes from.
enum DataPlan {
    None,
    /// Boxed: most sessions sit idle with no data connection planned, and this is the
    /// largest variant (the session holds ~100 bytes less).
    Passive(Box<PassivePlan>),
    Active(SocketAddr),
    /// Accepted already (a download that began on the quick path and must wait for the
    /// client to read the rest).
    Connected(std::net::TcpStream),
    /// Passive with TLS (`PROT P`): waited for, and handshaken, from `PASV` on.
    Protected(Box<protected::ProtectedPassive>),
}

/// Login state.
enum State {
    /// Waiting for `USER`.
    Fresh,
    /// `USER` given, waiting for `PASS`.
    NeedPass(String),
    /// Logged in.
    LoggedIn(LoggedIn),
}

struct LoggedIn {
    /// The account and its storage, through which every file operation is authorized.
    fs: UserFs,
    /// An anonymous login's ID string (its password), which the transfer log names as the
    /// user, as xferlog(5) says (boxed, and only for anonymous logins: sessions stay small).
    anonymous_id: Option<Box<str>>,
}

/// What a transfer task reports when it ends.
struct Outcome {
    reply: Reply,
    /// Cleanup to start once `reply` is sent (see [`reclaim`]).
    after: Option<ferry_vfs::Reclaim>,
}

/// Start a transfer's leftover cleanup (freeing a replaced file: ~150 ms per GiB on tmpfs)
/// on the blocking pool, after the client has its answer, and go on without waiting: the
/// session reads its next command, and a next upload overlaps the freeing (on two cores,
/// uploads of 1 GiB in a row ran ~10-15% faster than when the freeing came first).
fn reclaim(after: Option<ferry_vfs::Reclaim>) {
    if let Some(work) = after {
        drop(tokio::task::spawn_blocking(work));
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Before the fields: gone from the registry when the client sees the connection close.
        if let (true, Some(tls)) = (self.tls_registered, &self.shared.config.tls) {
            tls.logins.remove(&self.tls_token);
        }
    }
}

struct RunningTransfer {
    handle: JoinHandle<Outcome>,
    progress: Arc<AtomicU64>,
    what: String,
    /// `progress` when last seen to move, and when (see `data_stall_timeout`).
    moved: (u64, Instant),
}

/// Result of handling one command.
enum Flow {
    Continue,
    Close,
}

pub(crate) struct Session {
    shared: Arc<Shared>,
    /// This session's place in the registry of every protocol's sessions (released when the
    /// session ends; shows who is logged in).
    permit: SessionPermit,
    control: Stream,
    /// Connected through an implicit-TLS listener.
    implicit_tls: bool,
    /// Random per-connection token carried in this session's TLS tickets (see `tls`).
    tls_token: [u8; TOKEN_LEN],
    /// This session is in the server's TLS [`crate::tls::Logins`] (from its TLS handshake on):
    /// while it is logged in as a named user, its tickets also serve that user's other
    /// sessions from the same address (see [`DataOwner`]).
    tls_registered: bool,
    pbsz_done: bool,
    /// `PROT P`: data connections use TLS.
    protect_data: bool,
    peer: SocketAddr,
    local: SocketAddr,
    lines: LineBuffer,
    deferred: VecDeque<Vec<u8>>,
    state: State,
    failed_logins: u32,
    cwd: VPath,
    ttype: TransferType,
    rest: u64,
    rename_from: Option<VPath>,
    epsv_all: bool,
    data: DataPlan,
    /// The last passive listener was released unused: the next transfer's `425` says so.
    passive_expired: bool,
    facts: MlstFacts,
    transfer: Option<RunningTransfer>,
    quit_after_transfer: bool,
}

impl Session {
    pub(crate) fn new(
        shared: Arc<Shared>,
        control: tokio::net::TcpStream,
        peer: SocketAddr,
        implicit_tls: bool,
        permit: SessionPermit,
    ) -> io::Result<Self> {
        let local = control.local_addr()?;
        let max_line = shared.config.max_line;
        Ok(Session {
            shared,
            permit,
            control: Stream::Plain(control),
            implicit_tls,
            tls_token: rand::random(),
            tls_registered: false,
            pbsz_done: false,
            protect_data: false,
            peer,
            local,
            lines: LineBuffer::new(max_line),
            deferred: VecDeque::new(),
            state: State::Fresh,
            failed_logins: 0,
            cwd: VPath::root(),
            ttype: TransferType::Ascii,
            rest: 0,
            rename_from: None,
            epsv_all: false,
            data: DataPlan::None,
            passive_expired: false,
            facts: MlstFacts::default(),
            transfer: None,
            quit_after_transfer: false,
        })
    }

    /// Serve the connection to its end. Boxed: an `async fn` keeps its by-value arguments
    /// twice in its state (once as passed, once as moved in), and this one lives as long as
    /// the connection: the session's fields once, on the heap, instead of twice in the task.
    pub(crate) async fn run(mut self: Box<Self>) {
        debug!("connected");
        if self.implicit_tls {
            let timeout = self.shared.config.login_timeout;
            match tokio::time::timeout(timeout, Box::pin(self.upgrade_control())).await {
                Ok(Ok(())) => {
                    // Implicit FTPS protects data connections from the start.
                    self.pbsz_done = true;
                    self.protect_data = true;
                }
                Ok(Err(e)) => {
                    debug!(error = %e, "implicit TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!("implicit TLS handshake timed out");
                    return;
                }
            }
        }
        let greeting = Reply::new(220, self.shared.config.greeting.clone());
        if self.send(&greeting).await.is_err() {
            return;
        }
        match self.serve().await {
            Ok(()) => debug!("closed"),
            Err(e) => debug!(error = %e, "connection ended"),
        }
        if let Some(t) = self.transfer.take() {
            t.handle.abort();
        }
    }

    async fn serve(&mut self) -> io::Result<()> {
        let connected_at = Instant::now();
        let mut last_activity = Instant::now();
        let mut shutdown = self.shared.shutdown.clone();
        loop {
            // Answer whatever is complete first, unless a shutdown has begun: then nothing
            // new starts (a PASS read together with the shutdown logs no one in).
            if self.transfer.is_none() && *shutdown.borrow() {
                self.send(&Reply::new(421, SHUTTING_DOWN)).await?;
                return Ok(());
            }
            if self.transfer.is_none() {
                while let Some(line) = self.next_pending_line() {
                    last_activity = Instant::now();
                    if let Flow::Close = Box::pin(self.handle_line(line)).await? {
                        return Ok(());
                    }
                    if self.transfer.is_some() {
                        break;
                    }
                }
            } else {
                while let Some(line) = self.lines.next_line() {
                    if let Flow::Close = Box::pin(self.handle_line_during_transfer(line)).await? {
                        return Ok(());
                    }
                    if self.transfer.is_none() {
                        break;
                    }
                }
            }
            if self.transfer.is_none() && self.quit_after_transfer {
                self.send(&Reply::new(221, "Goodbye.")).await?;
                return Ok(());
            }
            if self.transfer.is_none() && !self.deferred.is_empty() {
                continue;
            }
            let deadline = match self.state {
                State::LoggedIn(_) => last_activity + self.shared.config.idle_timeout,
                _ => connected_at + self.shared.config.login_timeout,
            };
            let in_transfer = self.transfer.is_some();
            // Progress is sampled: the check comes a stall timeout after it last moved.
            let stall_check = self
                .transfer
                .as_ref()
                .map_or(deadline, |t| t.moved.1 + self.stall_limit(t.moved.0));
            // A passive listener nobody has connected to is released then (`expire_passive`).
            let passive_until = match &self.data {
                DataPlan::Passive(plan) if !in_transfer => {
                    Some(plan.opened + self.shared.config.data_connect_timeout)
                }
                _ => None,
            };
            tokio::select! {
                read = read_control(&mut self.control, &mut self.lines) => {
                    if read? == 0 {
                        return Ok(());
                    }
                }
                outcome = async {
                    match self.transfer.as_mut() {
                        Some(t) => (&mut t.handle).await,
                        None => std::future::pending().await,
                    }
                }, if in_transfer => {
                    self.transfer = None;
                    last_activity = Instant::now();
                    let (reply, after) = match outcome {
                        Ok(o) => (o.reply, o.after),
                        Err(e) => {
                            warn!(error = %e, "transfer task failed");
                            (Reply::new(451, "Transfer failed: internal error."), None)
                        }
                    };
                    let sent = self.send(&reply).await;
                    reclaim(after);
                    sent?;
                }
                _ = tokio::time::sleep_until(stall_check), if in_transfer => {
                    if let Some(t) = self.transfer.as_mut() {
                        let now = t.progress.load(Ordering::Relaxed);
                        if now != t.moved.0 {
                            t.moved = (now, Instant::now());
                        } else if t.moved.1.elapsed() >= self.stall_limit(now) {
                            self.end_stalled_transfer().await?;
                            last_activity = Instant::now();
                        }
                    }
                }
                _ = tokio::time::sleep_until(passive_until.unwrap_or(deadline)), if passive_until.is_some() => {
                    self.expire_passive();
                }
                _ = tokio::time::sleep_until(deadline), if !in_transfer => {
                    let text = match self.state {
                        State::LoggedIn(_) => "Idle timeout, closing control connection.",
                        _ => "Login timeout, closing control connection.",
                    };
                    self.send(&Reply::new(421, text)).await?;
                    return Ok(());
                }
                _ = shutdown.changed(), if !in_transfer => {
                    self.send(&Reply::new(421, SHUTTING_DOWN)).await?;
                    return Ok(());
                }
            }
            if self.lines.pending() == 0 && self.transfer.is_none() {
                self.lines.shrink();
            }
        }
    }

    fn next_pending_line(&mut self) -> Option<Line> {
        if let Some(l) = self.deferred.pop_front() {
            return Some(Line::Complete(l));
        }
        self.lines.next_line()
    }

    async fn send(&mut self, reply: &Reply) -> io::Result<()> {
        self.send_bytes(&reply.to_bytes()).await
    }

    /// Two replies in one write (one segment), e.g. `150` and `226` of a transfer done at once.
    async fn send_two(&mut self, first: &Reply, second: &Reply) -> io::Result<()> {
        let mut bytes = first.to_bytes();
        second.encode(&mut bytes);
        self.send_bytes(&bytes).await
    }

    async fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.control.write_all(bytes).await?;
        // With TLS, write_all may leave encrypted records buffered inside the TLS stream when
        // the socket was momentarily full; only a flush pushes them out. Without it a reply
        // (seen: the 226 after an upload, under load) can sit there until the client gives up.
        self.control.flush().await
    }

    async fn handle_line(&mut self, line: Line) -> io::Result<Flow> {
        let bytes = match line {
            Line::TooLong => {
                self.send(&Reply::new(500, "Command line too long."))
                    .await?;
                return Ok(Flow::Continue);
            }
            Line::Complete(b) => b,
        };
        let command = match ferry_proto::command::parse(&bytes) {
            Ok(c) => c,
            Err(ParseError::Empty) => return Ok(Flow::Continue),
            Err(e) => {
                debug!(error = %e, "bad command");
                self.rename_from = None;
                self.send(&Reply::new(e.code(), format!("{e}."))).await?;
                return Ok(Flow::Continue);
            }
        };
        debug!(command = %command.redacted(), "command");
        self.dispatch(command).await
    }

    async fn handle_line_during_transfer(&mut self, line: Line) -> io::Result<Flow> {
        let bytes = match line {
            Line::TooLong => {
                self.send(&Reply::new(500, "Command line too long."))
                    .await?;
                return Ok(Flow::Continue);
            }
            Line::Complete(b) => b,
        };
        match ferry_proto::command::parse(&bytes) {
            Ok(Command::Abor) => {
                self.abort().await?;
            }
            Ok(Command::Stat(None)) => {
                let reply = self.status_reply();
                self.send(&reply).await?;
            }
            Ok(Command::Noop) => {
                self.send(&Reply::new(200, "NOOP ok.")).await?;
            }
            Ok(Command::Quit) => {
                self.quit_after_transfer = true;
            }
            _ => {
                if self.deferred.len() >= MAX_DEFERRED {
                    self.send(&Reply::new(421, "Too many commands during a transfer."))
                        .await?;
                    return Ok(Flow::Close);
                }
                self.deferred.push_back(bytes);
            }
        }
        Ok(Flow::Continue)
    }

    /// How long a transfer that has moved `moved` bytes may go without moving another: before
    /// the first, the data connection may still be on its way (`data_connect_timeout`).
    fn stall_limit(&self, moved: u64) -> std::time::Duration {
        let config = &self.shared.config;
        if moved == 0 {
            config.data_stall_timeout.max(config.data_connect_timeout)
        } else {
            config.data_stall_timeout
        }
    }

    /// End a transfer that moved no byte for `data_stall_timeout`: `426`, and the session goes
    /// on (as after `ABOR`, an upload's partial file is handled as for a broken connection).
    async fn end_stalled_transfer(&mut self) -> io::Result<()> {
        let Some(t) = self.transfer.take() else {
            return Ok(());
        };
        t.handle.abort();
        let _ = t.handle.await;
        let secs = self.shared.config.data_stall_timeout.as_secs();
        let bytes = t.progress.load(Ordering::Relaxed);
        warn!(what = %t.what, bytes, secs, "transfer stalled; ended");
        self.send(&Reply::new(
            426,
            format!("No data moved for {secs} s; transfer aborted."),
        ))
        .await
    }

    async fn abort(&mut self) -> io::Result<()> {
        self.data = DataPlan::None;
        self.rest = 0;
        let Some(t) = self.transfer.take() else {
            return self.send(&Reply::new(225, "No transfer to abort.")).await;
        };
        if t.handle.is_finished() {
            if let Ok(outcome) = t.handle.await {
                let sent = self.send(&outcome.reply).await;
                reclaim(outcome.after);
                sent?;
            }
            return self.send(&Reply::new(226, "No transfer to abort.")).await;
        }
        t.handle.abort();
        let _ = t.handle.await;
        info!(what = %t.what, bytes = t.progress.load(Ordering::Relaxed), "transfer aborted");
        self.send(&Reply::new(426, "Connection closed; transfer aborted."))
            .await?;
        self.send(&Reply::new(226, "Abort successful.")).await
    }

    fn status_reply(&self) -> Reply {
        let mut lines = vec!["Ferry FTP server status:".to_string()];
        // Before login, nothing about the connection (whoever asks may be a scanner).
        match &self.state {
            State::LoggedIn(l) => {
                lines.push(format!("Connected from {}", self.peer.ip()));
                lines.push(format!("Logged in as {}", l.fs.account().name));
            }
            _ => lines.push("Not logged in".to_string()),
        }
        lines.push(format!(
            "TYPE: {}, STRUcture: File, MODE: Stream",
            if self.ttype == TransferType::Ascii {
                "ASCII"
            } else {
                "BINARY"
            }
        ));
        if let Some(t) = &self.transfer {
            lines.push(format!(
                "Transferring {}: {} bytes so far",
                t.what,
                t.progress.load(Ordering::Relaxed)
            ));
        } else {
            lines.push("No data connection".to_string());
        }
        lines.push("End of status".to_string());
        Reply::multi(211, lines)
    }

    fn logged_in(&self) -> Option<&LoggedIn> {
        match &self.state {
            State::LoggedIn(l) => Some(l),
            _ => None,
        }
    }

    fn user_fs(&self) -> Option<&UserFs> {
        self.logged_in().map(|l| &l.fs)
    }

    async fn dispatch(&mut self, command: Command) -> io::Result<Flow> {
        let was_rnfr_pending = self.rename_from.take();
        // Commands allowed before login.
        let needs_login = !matches!(
            command,
            Command::User(_)
                | Command::Pass(_)
                | Command::Acct(_)
                | Command::Quit
                | Command::Rein
                | Command::Noop
                | Command::Syst
                | Command::Feat
                | Command::Help(_)
                | Command::Opts { .. }
                | Command::Auth(_)
                | Command::Pbsz(_)
                | Command::Prot(_)
                | Command::Ccc
                | Command::Stat(None)
        );
        if needs_login && self.logged_in().is_none() {
            self.send(&Reply::new(530, "Please log in with USER and PASS first."))
                .await?;
            return Ok(Flow::Continue);
        }
        let reply = match command {
            Command::User(name) => self.cmd_user(name),
            Command::Pass(password) => return self.cmd_pass(password).await,
            Command::Acct(_) => match self.state {
                State::LoggedIn(_) => Reply::new(202, "ACCT not needed."),
                _ => Reply::new(503, "Login with USER first."),
            },
            Command::Quit => {
                self.send(&Reply::new(221, "Goodbye.")).await?;
                return Ok(Flow::Close);
            }
            Command::Rein => {
                self.state = State::Fresh;
                self.permit.set_user(None);
                self.tls_logged_out();
                self.reset_transfer_state();
                self.cwd = VPath::root();
                self.failed_logins = 0;
                Reply::new(220, "Session reinitialized; log in with USER.")
            }
            Command::Noop => Reply::new(200, "NOOP ok."),
            Command::Syst => Reply::new(215, "UNIX Type: L8"),
            Command::Stat(None) => self.status_reply(),
            Command::Stat(Some(arg)) => self.cmd_stat_path(&arg).await,
            Command::Help(arg) => help(arg.as_deref()),
            Command::Feat => self.feat(),
            Command::Opts { command, args } => self.cmd_opts(&command, args.as_deref()),
            Command::Cwd(arg) => self.cmd_cwd(&arg).await.unwrap_or_else(|r| r),
            Command::Cdup => {
                let parent = self.cwd.parent();
                self.cwd = parent;
                Reply::new(250, format!("Directory changed to {}.", self.cwd))
            }
            Command::Pwd => Reply::new(
                257,
                format!("{} is the current directory.", self.cwd.quoted()),
            ),
            Command::Mkd(arg) => self.cmd_mkd(&arg).await.unwrap_or_else(|r| r),
            Command::Rmd(arg) => self.cmd_rmd(&arg).await.unwrap_or_else(|r| r),
            Command::Dele(arg) => self.cmd_dele(&arg).await.unwrap_or_else(|r| r),
            Command::Rnfr(arg) => self.cmd_rnfr(&arg).await.unwrap_or_else(|r| r),
            Command::Rnto(arg) => self
                .cmd_rnto(&arg, was_rnfr_pending)
                .await
                .unwrap_or_else(|r| r),
            Command::Type(t) => {
                self.ttype = t;
                match t {
                    TransferType::Ascii => Reply::new(200, "Switching to ASCII mode."),
                    TransferType::Image => Reply::new(200, "Switching to Binary mode."),
                }
            }
            Command::ModeStream => Reply::new(200, "Mode set to S."),
            Command::StruFile => Reply::new(200, "Structure set to F."),
            Command::Allo => Reply::new(202, "ALLO not needed."),
            Command::Rest(offset) => {
                self.rest = offset;
                Reply::new(
                    350,
                    format!("Restarting at {offset}. Send STOR or RETR to initiate transfer."),
                )
            }
            Command::Retr(arg) => return self.cmd_retr(&arg).await,
            Command::Stor(arg) => return self.cmd_store(&arg, StoreKind::Stor).await,
            Command::Appe(arg) => return self.cmd_store(&arg, StoreKind::Appe).await,
            Command::Stou(arg) => return self.cmd_stou(arg.as_deref()).await,
            Command::Abor => {
                self.abort().await?;
                return Ok(Flow::Continue);
            }
            Command::List(args) => return self.cmd_list(args, ListStyle::Long).await,
            Command::Nlst(args) => {
                let style = if args.long {
                    ListStyle::Long
                } else {
                    ListStyle::Names
                };
                return self.cmd_list(args, style).await;
            }
            Command::Mlsd(arg) => {
                let args = ListArgs {
                    all: true,
                    long: false,
                    path: arg,
                };
                return self.cmd_list(args, ListStyle::Mlsd).await;
            }
            Command::Mlst(arg) => self.cmd_mlst(arg.as_deref()).await,
            Command::Size(arg) => self.cmd_size(&arg).await,
            Command::Mdtm(arg) => self.cmd_mdtm(&arg).await,
            Command::Mfmt { unix_secs, path } => {
                self.cmd_mfmt(unix_secs, &path).await.unwrap_or_else(|r| r)
            }
            Command::Site(site) => self.cmd_site(site).await.unwrap_or_else(|r| r),
            Command::Port(addr) => self.cmd_active(SocketAddr::V4(addr), "PORT"),
            Command::Eprt(addr) => self.cmd_active(addr, "EPRT"),
            Command::Pasv => self.cmd_pasv(),
            Command::Epsv(arg) => self.cmd_epsv(arg),
            Command::Auth(mechanism) => return self.cmd_auth(&mechanism).await,
            Command::Pbsz(_) => self.cmd_pbsz(),
            Command::Prot(level) => self.cmd_prot(level),
            Command::Ccc => return self.cmd_ccc().await,
        };
        self.send(&reply).await?;
        Ok(Flow::Continue)
    }

    fn reset_transfer_state(&mut self) {
        self.data = DataPlan::None;
        self.passive_expired = false;
        self.rest = 0;
        self.rename_from = None;
        self.epsv_all = false;
        self.ttype = TransferType::Ascii;
        self.facts = MlstFacts::default();
    }
}

/// Read what the control connection has into `lines`; 0 at end of stream.
///
/// An idle session waits for readability holding no buffer (its future stays small, see the
/// `Box::pin`s in `serve`): the bytes are read into a stack buffer that lives only within one
/// poll. Plain sessions read through `poll_read` (not `readable` + `try_read`), which lets the
/// runtime take a short read as "drained" and saves a `recvfrom` that would only say `EAGAIN`
/// per command; TLS sessions read through rustls the same way (a buffer held across the wait
/// would stay allocated, 4 KiB per idle TLS connection).
async fn read_control(control: &mut Stream, lines: &mut LineBuffer) -> io::Result<usize> {
    std::future::poll_fn(|cx| {
        let mut buf = [0u8; 4096];
        let mut read = tokio::io::ReadBuf::new(&mut buf);
        match std::pin::Pin::new(&mut *control).poll_read(cx, &mut read) {
            std::task::Poll::Ready(Ok(())) => {
                let n = read.filled().len();
                lines.extend(read.filled());
                if let (Stream::Plain(tcp), true) = (&*control, n > 0 && buf[n - 1] != b'\n') {
                    drain_after_urgent_mark(tcp, lines, &mut buf);
                }
                std::task::Poll::Ready(Ok(n))
            }
            other => other.map(|r| r.map(|()| 0)),
        }
    })
    .await
}

/// The kernel ends a read at the TCP urgent mark (Telnet Synch, or Python's `ftplib.abort()`,
/// which sends `ABOR\r\n` with `MSG_OOB`), and tokio then waits for a new readiness edge that
/// never comes, leaving the rest of the line unread. Read on directly until the socket is
/// really empty.
fn drain_after_urgent_mark(tcp: &tokio::net::TcpStream, lines: &mut LineBuffer, buf: &mut [u8]) {
    use std::io::Read;
    let sock = socket2::SockRef::from(tcp);
    for _ in 0..4 {
        match (&*sock).read(buf) {
            Ok(n) if n > 0 => lines.extend(&buf[..n]),
            _ => return,
        }
    }
}

fn not_logged_in() -> Reply {
    Reply::new(530, "Please log in with USER and PASS first.")
}

fn help(arg: Option<&str>) -> Reply {
    const VERBS: &str = "ABOR ACCT ALLO APPE CDUP CWD DELE EPRT EPSV FEAT HELP LIST MDTM MFMT MKD MLSD MLST MODE NLST NOOP OPTS PASS PASV PORT PWD QUIT REIN REST RETR RMD RNFR RNTO SITE SIZE STAT STOR STOU STRU SYST TYPE USER XCUP XCWD XMKD XPWD XRMD";
    match arg {
        None => {
            let mut lines = vec!["The following commands are recognized:".to_string()];
            let words: Vec<&str> = VERBS.split(' ').collect();
            for chunk in words.chunks(10) {
                lines.push(format!(" {}", chunk.join(" ")));
            }
            lines.push("Help OK.".to_string());
            Reply::multi(214, lines)
        }
        Some(verb) => {
            let v = verb.trim().to_ascii_uppercase();
            if VERBS.split(' ').any(|w| w == v) {
                Reply::new(
                    214,
                    format!("{v} is supported; see RFC 959, 2428 and 3659."),
                )
            } else {
                Reply::new(502, format!("Unknown command {}.", sanitize(&v)))
            }
        }
    }
}

/// A client-supplied string made safe for logs and replies: at most 64 characters, with
/// control, bidirectional and invisible characters escaped as the client shows them.
fn sanitize(s: &str) -> String {
    let head: String = s.chars().take(64).collect();
    ferry_proto::text::printable(&head).into_owned()
}

fn local_message(e: &io::Error) -> String {
    ferry_vfs::Error::from_io(e).message
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The reply to every session a shutdown ends.
const SHUTTING_DOWN: &str = "Server shutting down, closing control connection.";
