//! One task per control connection.
//!
//! The session reads lines through a bounded [`LineBuffer`], parses them with
//! [`ferry_proto::command::parse`], and answers from one `match` in [`Session::dispatch`].
//! A transfer runs as its own task so the control connection stays responsive: `ABOR`, `STAT`
//! and `NOOP` are answered during a transfer, other commands wait for it to end.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ferry_auth::{Account, Permissions, TlsPolicy};
use ferry_proto::command::{Command, EpsvArg, ListArgs, ParseError, ProtLevel, TransferType};
use ferry_proto::hostport;
use ferry_proto::line::Line;
use ferry_proto::listing::{self, Entry, EntryKind, MlstFacts, MlsxRole};
use ferry_proto::{LineBuffer, Reply, VPath};
use ferry_vfs::{ErrorKind, Metadata, Storage, WriteMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::data::{DataError, PassivePlan, connect_active};
use crate::replies::{path_error, permission_denied, storage_error};
use crate::server::Shared;
use crate::tls::{self, Stream, TOKEN_LEN};
use crate::transfer::{self, PumpError};

/// Lines a client may send ahead while a transfer runs; more is abuse.
const MAX_DEFERRED: usize = 32;

/// Where the next data connection comes from.
enum DataPlan {
    None,
    Passive(PassivePlan),
    Active(SocketAddr),
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
    account: Arc<Account>,
    storage: Arc<dyn Storage>,
}

/// What a transfer task reports when it ends.
struct Outcome {
    reply: Reply,
}

struct RunningTransfer {
    handle: JoinHandle<Outcome>,
    progress: Arc<AtomicU64>,
    what: String,
}

/// Result of handling one command.
enum Flow {
    Continue,
    Close,
}

pub(crate) struct Session {
    shared: Arc<Shared>,
    control: Stream,
    /// Connected through an implicit-TLS listener.
    implicit_tls: bool,
    /// Random per-connection token carried in this session's TLS tickets (see `tls`).
    tls_token: [u8; TOKEN_LEN],
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
    ) -> io::Result<Self> {
        let local = control.local_addr()?;
        let max_line = shared.config.max_line;
        Ok(Session {
            shared,
            control: Stream::Plain(control),
            implicit_tls,
            tls_token: rand::random(),
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
            facts: MlstFacts::default(),
            transfer: None,
            quit_after_transfer: false,
        })
    }

    pub(crate) async fn run(mut self) {
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
            // Answer whatever is complete first.
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
                    let reply = match outcome {
                        Ok(o) => o.reply,
                        Err(e) => {
                            warn!(error = %e, "transfer task failed");
                            Reply::new(451, "Transfer failed: internal error.")
                        }
                    };
                    self.send(&reply).await?;
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
                    self.send(&Reply::new(421, "Server shutting down, closing control connection.")).await?;
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
        let bytes = reply.to_bytes();
        self.control.write_all(&bytes).await
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

    async fn abort(&mut self) -> io::Result<()> {
        self.data = DataPlan::None;
        self.rest = 0;
        let Some(t) = self.transfer.take() else {
            return self.send(&Reply::new(225, "No transfer to abort.")).await;
        };
        if t.handle.is_finished() {
            if let Ok(outcome) = t.handle.await {
                self.send(&outcome.reply).await?;
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
        lines.push(format!("Connected from {}", self.peer.ip()));
        match &self.state {
            State::LoggedIn(l) => lines.push(format!("Logged in as {}", l.account.name)),
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

    fn perms(&self) -> Permissions {
        self.logged_in()
            .map(|l| l.account.permissions)
            .unwrap_or_default()
    }

    fn storage(&self) -> Option<Arc<dyn Storage>> {
        self.logged_in().map(|l| Arc::clone(&l.storage))
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
        self.rest = 0;
        self.rename_from = None;
        self.epsv_all = false;
        self.ttype = TransferType::Ascii;
        self.facts = MlstFacts::default();
    }

    // ---- access ------------------------------------------------------------------------

    fn cmd_user(&mut self, name: String) -> Reply {
        if let State::LoggedIn(_) = self.state {
            return Reply::new(530, "Already logged in; use REIN to change user.");
        }
        let anonymous = self.shared.auth.is_anonymous(&name);
        if !self.control.is_tls()
            && self.global_tls() == TlsPolicy::Required
            && !(anonymous && self.anonymous_exempt())
        {
            return Reply::new(
                530,
                "TLS required: send AUTH TLS before USER (this server does not accept clear-text logins).",
            );
        }
        self.state = State::NeedPass(name);
        if anonymous {
            Reply::new(
                331,
                "Anonymous login ok, send your e-mail address as password.",
            )
        } else {
            // Always 331, whether or not the user exists: names can't be probed.
            Reply::new(331, "Password required.")
        }
    }

    async fn cmd_pass(&mut self, password: String) -> io::Result<Flow> {
        let name = match std::mem::replace(&mut self.state, State::Fresh) {
            State::NeedPass(name) => name,
            State::LoggedIn(l) => {
                self.state = State::LoggedIn(l);
                self.send(&Reply::new(503, "Already logged in.")).await?;
                return Ok(Flow::Continue);
            }
            State::Fresh => {
                self.send(&Reply::new(503, "Login with USER first."))
                    .await?;
                return Ok(Flow::Continue);
            }
        };
        let ip = self.peer.ip();
        if self.shared.throttle.is_blocked(ip) {
            warn!(user = %sanitize(&name), "login refused: too many failed logins from this address");
            self.send(&Reply::new(
                421,
                "Too many failed logins from your address; try again later.",
            ))
            .await?;
            return Ok(Flow::Close);
        }
        let account = self.shared.auth.authenticate(&name, &password).await;
        drop(password);
        let Some(account) = account else {
            self.shared.throttle.record_failure(ip);
            self.failed_logins += 1;
            warn!(user = %sanitize(&name), attempt = self.failed_logins, "login failed");
            tokio::time::sleep(self.shared.config.login_failure_delay).await;
            if self.failed_logins >= self.shared.config.max_login_attempts {
                self.send(&Reply::new(
                    421,
                    "Login incorrect; too many attempts, closing.",
                ))
                .await?;
                return Ok(Flow::Close);
            }
            self.send(&Reply::new(530, "Login incorrect.")).await?;
            return Ok(Flow::Continue);
        };
        let storage = match (self.shared.storage)(&account) {
            Ok(s) => s,
            Err(e) => {
                warn!(user = %account.name, error = %e, "cannot open the user's root");
                self.send(&Reply::new(421, "Home directory unavailable, closing."))
                    .await?;
                return Ok(Flow::Close);
            }
        };
        if !self.control.is_tls() && self.account_tls(&account) == TlsPolicy::Required {
            warn!(user = %account.name, "login refused: TLS required for this account");
            self.send(&Reply::new(
                530,
                "TLS required for this account: reconnect and send AUTH TLS first.",
            ))
            .await?;
            return Ok(Flow::Continue);
        }
        tracing::Span::current().record("user", account.name.as_str());
        info!(anonymous = account.anonymous, "logged in");
        let text = if account.anonymous {
            "Anonymous login ok, read-only access."
        } else {
            "Login successful."
        };
        self.state = State::LoggedIn(LoggedIn { account, storage });
        self.cwd = VPath::root();
        self.send(&Reply::new(230, text)).await?;
        Ok(Flow::Continue)
    }

    fn feat(&self) -> Reply {
        let mut features: Vec<String> = Vec::new();
        if self.tls_enabled() {
            features.extend(["AUTH TLS", "AUTH SSL", "PBSZ", "PROT"].map(String::from));
        }
        features.extend(["EPRT", "EPSV", "MDTM", "MFMT"].map(String::from));
        features.push(self.facts.feat_line());
        features.extend(["PASV", "REST STREAM", "SIZE", "TVFS", "UTF8"].map(String::from));
        // RFC 2389 §3.2: each feature line starts with a space.
        let mut lines = vec!["Features:".to_string()];
        lines.extend(features.into_iter().map(|f| format!(" {f}")));
        lines.push("End".to_string());
        Reply::multi(211, lines)
    }

    fn cmd_opts(&mut self, command: &str, args: Option<&str>) -> Reply {
        match command {
            "UTF8" | "UTF-8" => match args.map(|a| a.trim().to_ascii_uppercase()) {
                Some(a) if a == "ON" || a.is_empty() => Reply::new(200, "Always in UTF8 mode."),
                None => Reply::new(200, "Always in UTF8 mode."),
                Some(a) if a == "OFF" => Reply::new(504, "UTF8 cannot be turned off."),
                Some(_) => Reply::new(501, "Use OPTS UTF8 ON."),
            },
            "MLST" => {
                self.facts = MlstFacts::from_opts(args.unwrap_or(""));
                Reply::new(200, format!("MLST OPTS {}", self.facts.enabled_list()))
            }
            _ => Reply::new(
                501,
                format!("Option not understood for {}.", sanitize(command)),
            ),
        }
    }

    // ---- navigation and files -------------------------------------------------------------

    fn resolve(&self, arg: &str) -> Result<VPath, Reply> {
        self.cwd.resolve(arg).map_err(|e| path_error(&e))
    }

    /// The prologue of file commands: the permission `allowed`, `arg` resolved, the storage.
    fn target(&self, allowed: bool, arg: &str) -> Result<(VPath, Arc<dyn Storage>), Reply> {
        if !allowed {
            return Err(permission_denied());
        }
        let path = self.resolve(arg)?;
        let storage = self.storage().ok_or_else(not_logged_in)?;
        Ok((path, storage))
    }

    async fn cmd_cwd(&mut self, arg: &str) -> Result<Reply, Reply> {
        let (path, storage) = self.target(true, arg)?;
        let meta = storage
            .metadata(&path)
            .await
            .map_err(|e| storage_error(&e))?;
        if meta.kind != EntryKind::Dir {
            return Err(Reply::new(550, "Not a directory."));
        }
        self.cwd = path;
        Ok(Reply::new(
            250,
            format!("Directory changed to {}.", self.cwd),
        ))
    }

    async fn cmd_mkd(&mut self, arg: &str) -> Result<Reply, Reply> {
        let (path, storage) = self.target(self.perms().mkdir, arg)?;
        storage.mkdir(&path).await.map_err(|e| storage_error(&e))?;
        info!(path = %path, "directory created");
        Ok(Reply::new(257, format!("{} created.", path.quoted())))
    }

    async fn cmd_rmd(&mut self, arg: &str) -> Result<Reply, Reply> {
        let (path, storage) = self.target(self.perms().delete, arg)?;
        if path.is_root() {
            return Err(Reply::new(550, "Cannot remove the root directory."));
        }
        storage.rmdir(&path).await.map_err(|e| storage_error(&e))?;
        info!(path = %path, "directory removed");
        Ok(Reply::new(250, "Directory removed."))
    }

    async fn cmd_dele(&mut self, arg: &str) -> Result<Reply, Reply> {
        let (path, storage) = self.target(self.perms().delete, arg)?;
        storage
            .remove_file(&path)
            .await
            .map_err(|e| storage_error(&e))?;
        info!(path = %path, "file deleted");
        Ok(Reply::new(250, "File deleted."))
    }

    async fn cmd_rnfr(&mut self, arg: &str) -> Result<Reply, Reply> {
        let (path, storage) = self.target(self.perms().rename, arg)?;
        if path.is_root() {
            return Err(Reply::new(550, "Cannot rename the root directory."));
        }
        storage
            .metadata(&path)
            .await
            .map_err(|e| storage_error(&e))?;
        self.rename_from = Some(path);
        Ok(Reply::new(350, "Ready for RNTO."))
    }

    async fn cmd_rnto(&mut self, arg: &str, from: Option<VPath>) -> Result<Reply, Reply> {
        let Some(from) = from else {
            return Err(Reply::new(503, "RNTO must come right after RNFR."));
        };
        let (to, storage) = self.target(true, arg)?;
        storage
            .rename(&from, &to)
            .await
            .map_err(|e| storage_error(&e))?;
        info!(from = %from, to = %to, "renamed");
        Ok(Reply::new(250, "Rename successful."))
    }

    async fn cmd_size(&mut self, arg: &str) -> Reply {
        match self.file_metadata(arg).await {
            Ok((_, m)) => Reply::new(213, m.size.to_string()),
            Err(r) => r,
        }
    }

    async fn cmd_mdtm(&mut self, arg: &str) -> Reply {
        match self.file_metadata(arg).await {
            Ok((_, m)) => Reply::new(213, listing::format_mdtm(m.mtime)),
            Err(r) => r,
        }
    }

    /// Metadata of a plain file named by `arg`, checking the read/list permission.
    async fn file_metadata(&self, arg: &str) -> Result<(VPath, Metadata), Reply> {
        let perms = self.perms();
        if !(perms.read || perms.list) {
            return Err(permission_denied());
        }
        let path = self.resolve(arg)?;
        let storage = self.storage().ok_or_else(not_logged_in)?;
        match storage.metadata(&path).await {
            Ok(m) if m.kind == EntryKind::Dir => Err(Reply::new(550, "Not a plain file.")),
            Ok(m) => Ok((path, m)),
            Err(e) => Err(storage_error(&e)),
        }
    }

    async fn cmd_mfmt(&mut self, unix_secs: i64, arg: &str) -> Result<Reply, Reply> {
        let (path, storage) = self.target(self.perms().write, arg)?;
        storage
            .set_mtime(&path, unix_secs)
            .await
            .map_err(|e| storage_error(&e))?;
        let when = listing::format_mdtm(unix_secs);
        Ok(Reply::new(213, format!("Modify={when}; {arg}")))
    }

    async fn cmd_mlst(&mut self, arg: Option<&str>) -> Reply {
        if !self.perms().list {
            return permission_denied();
        }
        let path = match self.resolve(arg.unwrap_or("")) {
            Ok(p) => p,
            Err(r) => return r,
        };
        let Some(storage) = self.storage() else {
            return not_logged_in();
        };
        match storage.metadata(&path).await {
            Ok(m) => {
                let name = arg.map(str::to_string).unwrap_or_else(|| path.to_string());
                let perm = perm_facts(self.perms(), m.kind);
                let entry = m.into_entry(name);
                let mut line = Vec::new();
                listing::format_mlsx_line(&entry, MlsxRole::Entry, &self.facts, &perm, &mut line);
                let text = String::from_utf8_lossy(&line).trim_end().to_string();
                Reply::multi(
                    250,
                    vec![
                        format!("Listing {}", path),
                        format!(" {text}"),
                        "End".to_string(),
                    ],
                )
            }
            Err(e) => storage_error(&e),
        }
    }

    async fn cmd_stat_path(&mut self, arg: &str) -> Reply {
        if !self.perms().list {
            return permission_denied();
        }
        let args = parse_stat_args(arg);
        let entries = match self.collect_listing(&args).await {
            Ok(e) => e,
            Err(r) => return r,
        };
        let now = unix_now();
        let mut lines = vec![format!(
            "Status of {}:",
            args.path.as_deref().unwrap_or(".")
        )];
        let mut buf = Vec::new();
        for entry in &entries.entries {
            buf.clear();
            listing::format_list_line(entry, now, &mut buf);
            lines.push(format!(" {}", String::from_utf8_lossy(&buf).trim_end()));
        }
        lines.push("End of status".to_string());
        Reply::multi(213, lines)
    }

    // ---- listings -------------------------------------------------------------------------

    async fn collect_listing(&self, args: &ListArgs) -> Result<Listing, Reply> {
        let path = self.resolve(args.path.as_deref().unwrap_or(""))?;
        let storage = self.storage().ok_or_else(not_logged_in)?;
        let meta = storage
            .metadata(&path)
            .await
            .map_err(|e| storage_error(&e))?;
        if meta.kind != EntryKind::Dir {
            let name = path.file_name().unwrap_or("").to_string();
            return Ok(Listing {
                dir: None,
                entries: vec![meta.into_entry(name)],
                path,
            });
        }
        let mut entries = storage.list(&path).await.map_err(|e| storage_error(&e))?;
        // Uploads in progress are not files yet.
        entries.retain(|e| !e.name.starts_with(ferry_vfs::local::TEMP_PREFIX));
        if !args.all {
            entries.retain(|e| !e.name.starts_with('.'));
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Listing {
            dir: Some(meta),
            entries,
            path,
        })
    }

    async fn cmd_list(&mut self, args: ListArgs, style: ListStyle) -> io::Result<Flow> {
        if !self.perms().list {
            self.send(&permission_denied()).await?;
            return Ok(Flow::Continue);
        }
        if style == ListStyle::Mlsd {
            // MLSD names a directory; a file is an error (RFC 3659 §7.2).
            if let Ok(path) = self.resolve(args.path.as_deref().unwrap_or("")) {
                if let Some(storage) = self.storage() {
                    if let Ok(m) = storage.metadata(&path).await {
                        if m.kind != EntryKind::Dir {
                            self.send(&Reply::new(
                                501,
                                "MLSD needs a directory; use MLST for a file.",
                            ))
                            .await?;
                            return Ok(Flow::Continue);
                        }
                    }
                }
            }
        }
        if !self.data_ready().await? {
            return Ok(Flow::Continue);
        }
        let listing = match self.collect_listing(&args).await {
            Ok(l) => l,
            Err(reply) => {
                self.send(&reply).await?;
                return Ok(Flow::Continue);
            }
        };
        let prefix = match (&args.path, style, &listing.dir) {
            (Some(p), ListStyle::Names, Some(_)) if !p.is_empty() => {
                Some(format!("{}/", p.trim_end_matches('/')))
            }
            _ => None,
        };
        let perms = self.perms();
        let facts = self.facts;
        let what = format!("listing of {}", listing.path);
        let job = move |mut stream: Stream, progress: Arc<AtomicU64>| async move {
            let now = unix_now();
            let mut buf = Vec::with_capacity(64 * 1024);
            if style == ListStyle::Mlsd {
                if let Some(dir) = listing.dir.clone() {
                    let perm = perm_facts(perms, EntryKind::Dir);
                    listing::format_mlsx_line(
                        &dir.into_entry(".".to_string()),
                        MlsxRole::Cdir,
                        &facts,
                        &perm,
                        &mut buf,
                    );
                }
            }
            let mut sent = 0u64;
            for entry in &listing.entries {
                match style {
                    ListStyle::Long => listing::format_list_line(entry, now, &mut buf),
                    ListStyle::Names => {
                        let name = match &prefix {
                            Some(p) => format!("{p}{}", entry.name),
                            None => entry.name.clone(),
                        };
                        listing::format_nlst_line(&name, &mut buf)
                    }
                    ListStyle::Mlsd => {
                        let perm = perm_facts(perms, entry.kind);
                        listing::format_mlsx_line(entry, MlsxRole::Entry, &facts, &perm, &mut buf)
                    }
                }
                if buf.len() >= 60 * 1024 {
                    stream.write_all(&buf).await.map_err(PumpError::Network)?;
                    sent += buf.len() as u64;
                    progress.store(sent, Ordering::Relaxed);
                    buf.clear();
                }
            }
            stream.write_all(&buf).await.map_err(PumpError::Network)?;
            sent += buf.len() as u64;
            stream.shutdown().await.map_err(PumpError::Network)?;
            Ok(sent)
        };
        self.start_transfer(
            what,
            false,
            "Here comes the directory listing.",
            "Directory send OK.".to_string(),
            job,
        )
        .await?;
        Ok(Flow::Continue)
    }

    // ---- transfers ------------------------------------------------------------------------

    /// `true` if a data connection method was chosen; otherwise answers 425.
    async fn data_ready(&mut self) -> io::Result<bool> {
        if matches!(self.data, DataPlan::None) {
            self.send(&Reply::new(425, "Use PORT, PASV, EPRT or EPSV first."))
                .await?;
            return Ok(false);
        }
        if !self.protect_data && self.session_tls() == TlsPolicy::Required {
            self.send(&Reply::new(
                521,
                "Data connections must be protected: send PBSZ 0 and PROT P first.",
            ))
            .await?;
            return Ok(false);
        }
        Ok(true)
    }

    async fn cmd_retr(&mut self, arg: &str) -> io::Result<Flow> {
        let offset = std::mem::take(&mut self.rest);
        if !self.perms().read {
            self.send(&permission_denied()).await?;
            return Ok(Flow::Continue);
        }
        if !self.data_ready().await? {
            return Ok(Flow::Continue);
        }
        let path = match self.resolve(arg) {
            Ok(p) => p,
            Err(r) => {
                self.send(&r).await?;
                return Ok(Flow::Continue);
            }
        };
        let Some(storage) = self.storage() else {
            return Ok(Flow::Continue);
        };
        let handle = match storage.open_read(&path, offset).await {
            Ok(h) => h,
            Err(e) => {
                self.send(&storage_error(&e)).await?;
                return Ok(Flow::Continue);
            }
        };
        let ascii = self.ttype == TransferType::Ascii;
        let size = handle.size;
        let opening = format!(
            "Opening {} mode data connection for {} ({} bytes).",
            if ascii { "ASCII" } else { "BINARY" },
            arg,
            size.saturating_sub(offset)
        );
        let what = path.to_string();
        let job = move |mut stream: Stream, progress: Arc<AtomicU64>| async move {
            match (&stream, handle.file, ascii) {
                // Plain binary download from a local file: the kernel copies (sendfile).
                (Stream::Plain(tcp), Some(file), false) => {
                    let n = transfer::send_file(tcp, &file, &progress).await?;
                    stream.shutdown().await.map_err(PumpError::Network)?;
                    Ok(n)
                }
                _ => {
                    let mut reader = handle.reader;
                    transfer::send(&mut reader, &mut stream, ascii, &progress).await
                }
            }
        };
        self.start_transfer(what, false, &opening, "Transfer complete.".to_string(), job)
            .await?;
        Ok(Flow::Continue)
    }

    async fn cmd_store(&mut self, arg: &str, kind: StoreKind) -> io::Result<Flow> {
        let offset = std::mem::take(&mut self.rest);
        if !self.perms().write {
            self.send(&permission_denied()).await?;
            return Ok(Flow::Continue);
        }
        if !self.data_ready().await? {
            return Ok(Flow::Continue);
        }
        let path = match self.resolve(arg) {
            Ok(p) if !p.is_root() => p,
            Ok(_) => {
                self.send(&Reply::new(553, "Cannot store onto the root directory."))
                    .await?;
                return Ok(Flow::Continue);
            }
            Err(r) => {
                self.send(&r).await?;
                return Ok(Flow::Continue);
            }
        };
        let mode = match (kind, offset) {
            (StoreKind::Appe, _) => WriteMode::Append,
            (StoreKind::Stor, 0) => WriteMode::Replace,
            (StoreKind::Stor, n) => WriteMode::At(n),
        };
        self.begin_upload(path, mode, None).await
    }

    async fn cmd_stou(&mut self, hint: Option<&str>) -> io::Result<Flow> {
        self.rest = 0;
        if !self.perms().write {
            self.send(&permission_denied()).await?;
            return Ok(Flow::Continue);
        }
        if !self.data_ready().await? {
            return Ok(Flow::Continue);
        }
        let base = match hint.map(|h| self.resolve(h)) {
            Some(Ok(p)) if !p.is_root() => p,
            Some(Err(r)) => {
                self.send(&r).await?;
                return Ok(Flow::Continue);
            }
            _ => match self.cwd.join_name("ferry") {
                Ok(p) => p,
                Err(e) => {
                    self.send(&path_error(&e)).await?;
                    return Ok(Flow::Continue);
                }
            },
        };
        let Some(storage) = self.storage() else {
            return Ok(Flow::Continue);
        };
        // The hint itself first, then hint.1, hint.2, ...; without a hint, random names.
        let stem = base.file_name().unwrap_or("ferry").to_string();
        for n in 0..100u32 {
            let candidate = match (hint.is_some(), n) {
                (true, 0) => Ok(base.clone()),
                (true, n) => base.parent().join_name(&format!("{stem}.{n}")),
                (false, _) => base
                    .parent()
                    .join_name(&format!("{stem}.{:08x}", rand::random::<u32>())),
            };
            let candidate = match candidate {
                Ok(p) => p,
                Err(e) => {
                    self.send(&path_error(&e)).await?;
                    return Ok(Flow::Continue);
                }
            };
            match storage.open_write(&candidate, WriteMode::CreateNew).await {
                Ok(upload) => {
                    return self
                        .begin_upload(candidate, WriteMode::CreateNew, Some(upload))
                        .await;
                }
                Err(e) if e.kind == ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    self.send(&storage_error(&e)).await?;
                    return Ok(Flow::Continue);
                }
            }
        }
        self.send(&Reply::new(553, "Could not find a unique file name."))
            .await?;
        Ok(Flow::Continue)
    }

    async fn begin_upload(
        &mut self,
        path: VPath,
        mode: WriteMode,
        opened: Option<Box<dyn ferry_vfs::Upload>>,
    ) -> io::Result<Flow> {
        let Some(storage) = self.storage() else {
            return Ok(Flow::Continue);
        };
        let upload = match opened {
            Some(u) => u,
            None => match storage.open_write(&path, mode).await {
                Ok(u) => u,
                Err(e) => {
                    self.send(&storage_error(&e)).await?;
                    return Ok(Flow::Continue);
                }
            },
        };
        let ascii = self.ttype == TransferType::Ascii;
        let opening = if mode == WriteMode::CreateNew {
            format!("FILE: {}", path.file_name().unwrap_or(""))
        } else {
            format!("Ok to send data for {}.", path)
        };
        let what = path.to_string();
        let done = match mode {
            WriteMode::CreateNew => format!(
                "Transfer complete (unique file name: {}).",
                path.file_name().unwrap_or("")
            ),
            _ => "Transfer complete.".to_string(),
        };
        let job = move |mut stream: Stream, progress: Arc<AtomicU64>| async move {
            let mut upload = upload;
            let n = match (&stream, upload.local_file(), ascii) {
                // Plain binary upload to a local file: the kernel moves the bytes (splice).
                (Stream::Plain(tcp), Some(file), false) => {
                    transfer::receive_file(tcp, file, &progress).await?
                }
                _ => transfer::receive(&mut stream, &mut upload, ascii, &progress).await?,
            };
            // Answer the client's TLS close_notify with ours (ftplib waits for it); a client
            // that already closed makes this fail, which changes nothing.
            let _ = stream.shutdown().await;
            upload
                .commit()
                .await
                .map_err(|e| PumpError::Local(io::Error::other(e.message)))?;
            Ok(n)
        };
        self.start_transfer(what, true, &opening, done, job).await?;
        Ok(Flow::Continue)
    }

    /// Send `150`, then run `job` on the data connection in its own task. The final reply is
    /// sent by the session loop when the task ends.
    async fn start_transfer<F, Fut>(
        &mut self,
        what: String,
        upload: bool,
        opening: &str,
        done: String,
        job: F,
    ) -> io::Result<()>
    where
        F: FnOnce(Stream, Arc<AtomicU64>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<u64, PumpError>> + Send + 'static,
    {
        let plan = std::mem::replace(&mut self.data, DataPlan::None);
        let config = &self.shared.config;
        let timeout = config.data_connect_timeout;
        let expected_peer = (!config.allow_foreign_passive_peer).then_some(self.peer.ip());
        let local_ip = self.local.ip();
        let source_port = config
            .active_source_port_minus_one
            .then(|| self.local.port().saturating_sub(1));
        let tls = match (&self.shared.config.tls, self.protect_data) {
            (Some(t), true) => Some((t.acceptor(upload), t.require_session_reuse, self.tls_token)),
            _ => None,
        };
        self.send(&Reply::new(150, opening.to_string())).await?;
        let progress = Arc::new(AtomicU64::new(0));
        let task_progress = Arc::clone(&progress);
        let span = info_span!("transfer", what = %what);
        let handle = tokio::spawn(
            async move {
                let started = Instant::now();
                let stream = match plan {
                    DataPlan::Passive(p) => p.accept(expected_peer, timeout).await,
                    DataPlan::Active(target) => connect_active(target, local_ip, source_port, timeout).await,
                    DataPlan::None => Err(DataError::Io(io::Error::other("no data connection"))),
                };
                let stream = match stream {
                    Ok(s) => s,
                    Err(e) => {
                        warn!(error = %e, "data connection failed");
                        return Outcome { reply: Reply::new(425, format!("Can't open data connection: {e}.")) };
                    }
                };
                let stream = match tls {
                    None => Stream::Plain(stream),
                    Some((acceptor, require_reuse, token)) => {
                        match protect_data_connection(&acceptor, stream, &token, require_reuse, timeout).await {
                            Ok(s) => s,
                            Err(reply) => return Outcome { reply },
                        }
                    }
                };
                let result = job(stream, Arc::clone(&task_progress)).await;
                let elapsed = started.elapsed();
                match result {
                    Ok(bytes) => {
                        info!(bytes, ms = elapsed.as_millis() as u64, "transfer complete");
                        Outcome { reply: Reply::new(226, done) }
                    }
                    Err(PumpError::Network(e)) => {
                        warn!(error = %e, bytes = task_progress.load(Ordering::Relaxed), "transfer failed: data connection");
                        Outcome { reply: Reply::new(426, format!("Data connection closed; transfer aborted: {e}.")) }
                    }
                    Err(PumpError::Local(e)) => {
                        warn!(error = %e, "transfer failed: local error");
                        Outcome { reply: Reply::new(451, format!("Local error; transfer aborted: {}.", local_message(&e))) }
                    }
                }
            }
            .instrument(span),
        );
        self.transfer = Some(RunningTransfer {
            handle,
            progress,
            what,
        });
        Ok(())
    }

    // ---- TLS ------------------------------------------------------------------------------

    fn tls_enabled(&self) -> bool {
        self.shared
            .config
            .tls
            .as_ref()
            .is_some_and(|t| t.policy != TlsPolicy::Off)
    }

    fn global_tls(&self) -> TlsPolicy {
        self.shared
            .config
            .tls
            .as_ref()
            .map_or(TlsPolicy::Off, |t| t.policy)
    }

    fn anonymous_exempt(&self) -> bool {
        self.shared
            .config
            .tls
            .as_ref()
            .is_some_and(|t| t.exempt_anonymous)
    }

    /// The policy that applies to `account`: its own setting, else the server's.
    fn account_tls(&self, account: &Account) -> TlsPolicy {
        if !self.tls_enabled() {
            return TlsPolicy::Off;
        }
        if account.anonymous && self.anonymous_exempt() {
            return TlsPolicy::Optional;
        }
        account.tls.unwrap_or(self.global_tls())
    }

    /// The policy in force now (the logged-in user's, else the server's).
    fn session_tls(&self) -> TlsPolicy {
        match self.logged_in() {
            Some(l) => self.account_tls(&l.account),
            None => self.global_tls(),
        }
    }

    async fn upgrade_control(&mut self) -> io::Result<()> {
        let Some(tls) = self.shared.config.tls.clone() else {
            return Err(io::Error::other("TLS is not configured"));
        };
        let Stream::Plain(tcp) = std::mem::replace(&mut self.control, Stream::Closed) else {
            return Err(io::Error::other("control connection is not plain"));
        };
        let stream = tls::accept(&tls.acceptor(false), tcp, &self.tls_token).await?;
        self.control = Stream::Tls(Box::new(stream));
        Ok(())
    }

    async fn cmd_auth(&mut self, mechanism: &str) -> io::Result<Flow> {
        let reply = if !self.tls_enabled() {
            Reply::new(502, "TLS is not enabled on this server.")
        } else if !matches!(mechanism, "TLS" | "SSL" | "TLS-C" | "TLS-P") {
            Reply::new(504, "Unsupported mechanism; use AUTH TLS.")
        } else if self.control.is_tls() {
            Reply::new(503, "Already using TLS.")
        } else if self.logged_in().is_some() {
            Reply::new(503, "AUTH must come before login; use REIN first.")
        } else {
            Reply::new(
                234,
                format!("AUTH {mechanism} ok; start the TLS handshake."),
            )
        };
        self.send(&reply).await?;
        if reply.code != 234 {
            return Ok(Flow::Continue);
        }
        // Anything the client sent after AUTH in clear text must not be run as if protected
        // (command injection, as in CVE-2011-0411).
        if self.lines.pending() > 0 || !self.deferred.is_empty() {
            warn!("discarding clear-text commands pipelined after AUTH");
            self.lines = LineBuffer::new(self.shared.config.max_line);
            self.deferred.clear();
        }
        let timeout = self.shared.config.login_timeout;
        match tokio::time::timeout(timeout, self.upgrade_control()).await {
            Ok(Ok(())) => {
                debug!("control connection upgraded to TLS");
                if mechanism == "SSL" || mechanism == "TLS-P" {
                    // RFC 4217 §4: legacy AUTH SSL implies protected data.
                    self.pbsz_done = true;
                    self.protect_data = true;
                }
                self.state = State::Fresh;
                Ok(Flow::Continue)
            }
            Ok(Err(e)) => {
                warn!(error = %e, "TLS handshake failed on the control connection");
                Ok(Flow::Close)
            }
            Err(_) => {
                warn!("TLS handshake timed out on the control connection");
                Ok(Flow::Close)
            }
        }
    }

    fn cmd_pbsz(&mut self) -> Reply {
        if !self.control.is_tls() {
            return Reply::new(503, "PBSZ needs AUTH TLS first.");
        }
        self.pbsz_done = true;
        Reply::new(200, "PBSZ=0")
    }

    fn cmd_prot(&mut self, level: ProtLevel) -> Reply {
        if !self.control.is_tls() {
            return Reply::new(503, "PROT needs AUTH TLS first.");
        }
        if !self.pbsz_done {
            return Reply::new(503, "PROT needs PBSZ 0 first.");
        }
        match level {
            ProtLevel::Private => {
                self.protect_data = true;
                Reply::new(200, "PROT now Private.")
            }
            ProtLevel::Clear if self.session_tls() == TlsPolicy::Required => Reply::new(
                534,
                "PROT C refused: this server requires protected data connections (use PROT P).",
            ),
            ProtLevel::Clear => {
                self.protect_data = false;
                Reply::new(200, "PROT now Clear.")
            }
            ProtLevel::Safe | ProtLevel::Confidential => Reply::new(
                536,
                "PROT level not supported by TLS; use PROT P or PROT C.",
            ),
        }
    }

    async fn cmd_ccc(&mut self) -> io::Result<Flow> {
        let allowed = self.shared.config.tls.as_ref().is_some_and(|t| t.allow_ccc);
        if !self.control.is_tls() {
            self.send(&Reply::new(533, "CCC needs a TLS control connection."))
                .await?;
            return Ok(Flow::Continue);
        }
        if !allowed || self.logged_in().is_none() {
            self.send(&Reply::new(
                534,
                "CCC refused by policy (allow_ccc is off).",
            ))
            .await?;
            return Ok(Flow::Continue);
        }
        self.send(&Reply::new(200, "Control connection now in clear text."))
            .await?;
        let Stream::Tls(mut tls) = std::mem::replace(&mut self.control, Stream::Closed) else {
            return Ok(Flow::Close);
        };
        tls.get_mut().1.send_close_notify();
        tls.flush().await?;
        // Wait for the client's close_notify, then carry on over the bare TCP connection.
        let mut buf = [0u8; 512];
        let wait = self.shared.config.data_connect_timeout;
        loop {
            match tokio::time::timeout(wait, tls.read(&mut buf)).await {
                Ok(Ok(0)) => break,
                Ok(Ok(_)) => continue,
                Ok(Err(_)) | Err(_) => return Ok(Flow::Close),
            }
        }
        let (tcp, _) = tls.into_inner();
        self.control = Stream::Plain(tcp);
        Ok(Flow::Continue)
    }

    // ---- data connection setup --------------------------------------------------------------

    fn cmd_active(&mut self, target: SocketAddr, verb: &str) -> Reply {
        let config = &self.shared.config;
        if self.epsv_all {
            return Reply::new(503, format!("{verb} not allowed after EPSV ALL."));
        }
        if !config.active_enabled {
            return Reply::new(
                502,
                "Active mode is disabled on this server; use PASV or EPSV.",
            );
        }
        let peer_ip = self.peer.ip().to_canonical();
        if !config.allow_active_foreign_address && target.ip().to_canonical() != peer_ip {
            warn!(%target, "refused active data address other than the client's (FTP bounce)");
            return Reply::new(
                504,
                format!("{verb} refused: the address must be your own (FTP bounce protection)."),
            );
        }
        if !config.allow_active_privileged_port && target.port() < 1024 {
            warn!(%target, "refused active data connection to a privileged port");
            return Reply::new(
                504,
                format!("{verb} refused: ports below 1024 are not allowed."),
            );
        }
        if target.is_ipv6()
            && !matches!(peer_ip, IpAddr::V6(_))
            && !config.allow_active_foreign_address
        {
            return Reply::new(522, "Network protocol not supported, use (1)");
        }
        self.data = DataPlan::Active(target);
        Reply::new(
            200,
            format!("{verb} command successful. Consider using EPSV."),
        )
    }

    fn cmd_pasv(&mut self) -> Reply {
        if self.epsv_all {
            return Reply::new(503, "PASV not allowed after EPSV ALL.");
        }
        if !self.shared.config.passive_enabled {
            return Reply::new(
                502,
                "Passive mode is disabled on this server; use PORT or EPRT.",
            );
        }
        let local_ip = self.local.ip().to_canonical();
        let announced = match (
            self.shared.config.masquerade.address_for(self.peer.ip()),
            local_ip,
        ) {
            (Some(a), _) => a,
            (None, IpAddr::V4(v4)) => v4,
            (None, IpAddr::V6(_)) => {
                return Reply::new(522, "PASV cannot carry an IPv6 address; use EPSV.");
            }
        };
        match self.open_passive(local_ip) {
            Ok(port) => Reply::new(
                227,
                hostport::format_pasv_reply_text(std::net::SocketAddrV4::new(announced, port)),
            ),
            Err(r) => r,
        }
    }

    fn cmd_epsv(&mut self, arg: EpsvArg) -> Reply {
        let local_ip = self.local.ip().to_canonical();
        let family_hint = if local_ip.is_ipv4() { "(1)" } else { "(2)" };
        match arg {
            EpsvArg::All => {
                self.epsv_all = true;
                return Reply::new(200, "EPSV ALL ok.");
            }
            EpsvArg::Unsupported(_) => {
                return Reply::new(
                    522,
                    format!("Network protocol not supported, use {family_hint}"),
                );
            }
            EpsvArg::V4 if !local_ip.is_ipv4() => {
                return Reply::new(522, "Network protocol not supported, use (2)");
            }
            EpsvArg::V6 if !local_ip.is_ipv6() => {
                return Reply::new(522, "Network protocol not supported, use (1)");
            }
            _ => {}
        }
        if !self.shared.config.passive_enabled {
            return Reply::new(
                502,
                "Passive mode is disabled on this server; use PORT or EPRT.",
            );
        }
        match self.open_passive(local_ip) {
            Ok(port) => Reply::new(229, hostport::format_epsv_reply_text(port)),
            Err(r) => r,
        }
    }

    fn open_passive(&mut self, local_ip: IpAddr) -> Result<u16, Reply> {
        // A new PASV replaces (and releases) any earlier listener.
        self.data = DataPlan::None;
        match PassivePlan::open(local_ip, self.shared.ports.as_ref()) {
            Ok(plan) => {
                let port = plan.local.port();
                self.data = DataPlan::Passive(plan);
                Ok(port)
            }
            Err(DataError::PortsExhausted) => {
                Err(Reply::new(425, "No passive port free; try again later."))
            }
            Err(e) => {
                warn!(error = %e, "passive listener failed");
                Err(Reply::new(425, "Can't open passive connection."))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListStyle {
    Long,
    Names,
    Mlsd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    Stor,
    Appe,
}

struct Listing {
    path: VPath,
    /// Metadata of the listed directory, `None` when a single file was listed.
    dir: Option<Metadata>,
    entries: Vec<Entry>,
}

/// Read what the control connection has into `lines`; 0 at end of stream.
///
/// An idle plain session waits for readability holding no buffer (its future stays small, see
/// the `Box::pin`s in `serve`); the bytes are read into a stack buffer only once they are there.
/// TLS sessions read through rustls, which buffers anyway.
async fn read_control(control: &mut Stream, lines: &mut LineBuffer) -> io::Result<usize> {
    match control {
        Stream::Plain(tcp) => loop {
            tcp.readable().await?;
            let mut buf = [0u8; 2048];
            match tcp.try_read(&mut buf) {
                Ok(0) => return Ok(0),
                Ok(n) => {
                    lines.extend(&buf[..n]);
                    if buf[n - 1] != b'\n' {
                        drain_after_urgent_mark(tcp, lines, &mut buf);
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        },
        other => {
            let mut buf = vec![0u8; 4096];
            let n = other.read(&mut buf).await?;
            lines.extend(&buf[..n]);
            Ok(n)
        }
    }
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

/// TLS handshake on a data connection, checking it resumed the control connection's session.
async fn protect_data_connection(
    acceptor: &tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    token: &[u8; TOKEN_LEN],
    require_reuse: bool,
    timeout: std::time::Duration,
) -> Result<Stream, Reply> {
    let tls = match tokio::time::timeout(timeout, tls::accept(acceptor, tcp, token)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            warn!(error = %e, "TLS handshake failed on the data connection");
            return Err(Reply::new(
                425,
                format!("TLS handshake failed on the data connection: {e}."),
            ));
        }
        Err(_) => {
            warn!("TLS handshake timed out on the data connection");
            return Err(Reply::new(
                425,
                "TLS handshake timed out on the data connection.",
            ));
        }
    };
    if require_reuse && !tls::resumed_with(&tls, token) {
        warn!("data connection did not resume the control connection's TLS session; refused");
        // Close cleanly (close_notify) so the client sees the refusal on the control
        // connection rather than a reset.
        let mut tls = tls;
        let _ = tokio::time::timeout(timeout, tls.shutdown()).await;
        return Err(Reply::new(
            522,
            "TLS session reuse required: the data connection must resume the control connection's TLS session (server key tls_require_session_reuse).",
        ));
    }
    Ok(Stream::Tls(Box::new(tls)))
}

fn not_logged_in() -> Reply {
    Reply::new(530, "Please log in with USER and PASS first.")
}

/// `STAT` takes `ls`-style flags too (`STAT -la dir`).
fn parse_stat_args(arg: &str) -> ListArgs {
    match ferry_proto::command::parse(format!("LIST {arg}").as_bytes()) {
        Ok(Command::List(args)) => args,
        _ => ListArgs {
            all: false,
            long: true,
            path: Some(arg.to_string()),
        },
    }
}

/// RFC 3659 `perm` fact letters for this user and entry kind.
fn perm_facts(p: Permissions, kind: EntryKind) -> String {
    let mut s = String::new();
    match kind {
        EntryKind::Dir => {
            if p.write {
                s.push('c');
            }
            if p.delete {
                s.push('d');
            }
            if p.list {
                s.push_str("el");
            }
            if p.rename {
                s.push('f');
            }
            if p.mkdir {
                s.push('m');
            }
            if p.delete {
                s.push('p');
            }
        }
        _ => {
            if p.write {
                s.push('a');
            }
            if p.delete {
                s.push('d');
            }
            if p.rename {
                s.push('f');
            }
            if p.read {
                s.push('r');
            }
            if p.write {
                s.push('w');
            }
        }
    }
    s
}

fn help(arg: Option<&str>) -> Reply {
    const VERBS: &str = "ABOR ACCT ALLO APPE CDUP CWD DELE EPRT EPSV FEAT HELP LIST MDTM MFMT MKD MLSD MLST MODE NLST NOOP OPTS PASS PASV PORT PWD QUIT REIN REST RETR RMD RNFR RNTO SIZE STAT STOR STOU STRU SYST TYPE USER XCUP XCWD XMKD XPWD XRMD";
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

/// A client-supplied string made safe for logs and replies.
fn sanitize(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
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
