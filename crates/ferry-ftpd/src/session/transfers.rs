//! File transfers: `RETR`, `STOR`, `APPE`, `STOU`, and the transfer task itself.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::TlsPolicy;
use ferry_core::{Direction, Operation, Protocol, TransferInfo};
use ferry_proto::Reply;
use ferry_proto::command::TransferType;
use ferry_vfs::VPath;
use ferry_vfs::{ErrorKind, WriteMode};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{Instrument, info, info_span, warn};

use super::protected::{DataTls, ProtectedPassive, accept_passive, data_failed};
use crate::data::{DataError, PassivePlan, connect_active};
use crate::pump::{self, PumpError};
use crate::replies::{path_error, storage_error};
use crate::tls::Stream;

use super::*;

impl Session {
    /// `true` if a data connection method was chosen; otherwise answers 425.
    pub(super) async fn data_ready(&mut self) -> io::Result<bool> {
        if matches!(self.data, DataPlan::None) {
            let text = if std::mem::take(&mut self.passive_expired) {
                format!(
                    "No data connection came within {} s of PASV/EPSV; its port was released. Send PASV or EPSV again.",
                    self.shared.config.data_connect_timeout.as_secs()
                )
            } else {
                "Use PORT, PASV, EPRT or EPSV first.".to_string()
            };
            self.send(&Reply::new(425, text)).await?;
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

    pub(super) async fn cmd_retr(&mut self, arg: &str) -> io::Result<Flow> {
        let offset = std::mem::take(&mut self.rest);
        let fs = match self.authorized(Operation::Read) {
            Ok(fs) => fs,
            Err(r) => {
                self.send(&r).await?;
                return Ok(Flow::Continue);
            }
        };
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
        let handle = match fs.open_read(&path, offset).await {
            Ok(h) => h,
            Err(e) => {
                self.send(&storage_error(&e)).await?;
                return Ok(Flow::Continue);
            }
        };
        let ascii = self.ttype == TransferType::Ascii;
        let announced = handle.size.saturating_sub(offset);
        let opening = format!(
            "Opening {} mode data connection for {} ({} bytes).",
            if ascii { "ASCII" } else { "BINARY" },
            arg,
            announced
        );
        let what = path.to_string();
        let logged = self.transfer_info(&path, Direction::Download);
        let mut already = 0;
        // A paced download goes through the copy loop, where its chunks are charged.
        let pace = fs.download_pace().clone();
        let unpaced = !pace.is_limited();
        if let Some(file) = handle.file().filter(|_| !ascii && unpaced) {
            match self.quick_retr(file, announced, &what) {
                Quick::NotTaken => {}
                Quick::Sent(n) => already = n,
                Quick::Done(outcome) => {
                    if let Some(info) = logged {
                        let log = &self.shared.context.transfer_log;
                        log.start(info, Arc::default(), 0)
                            .finish_with(outcome.bytes, outcome.completed);
                    }
                    self.send_two(&Reply::new(150, opening), &outcome.reply)
                        .await?;
                    return Ok(Flow::Continue);
                }
            }
        }
        let shared = Arc::clone(&self.shared);
        let job = move |stream: Stream, progress: Arc<AtomicU64>| async move {
            let (counters, buffers) = (&shared.counters, &shared.buffers);
            let left = announced - already;
            let file = handle.file().filter(|_| !ascii && unpaced);
            let done = match (stream, file) {
                // Plain binary download from a local file: the kernel copies (sendfile).
                (Stream::Plain(mut tcp), Some(file)) => {
                    let n = pump::send_file(&tcp, file, left, &progress, counters).await?;
                    tcp.shutdown().await.map_err(PumpError::Network)?;
                    Ok(Done::from(already + n))
                }
                // A large TLS binary download from a local file: sealed on the blocking pool.
                (Stream::Tls(tls), Some(file)) if left >= pump::SEAL_AFTER => {
                    let file = file.try_clone().map_err(PumpError::Local)?;
                    let n = pump::send_file_sealed(tls, file, left, &progress, counters, buffers)
                        .await?;
                    Ok(Done::from(already + n))
                }
                (mut stream, _) => match handle.file() {
                    Some(file) => {
                        let mut reader = pump::LocalFile(file);
                        pump::send(&mut reader, &mut stream, ascii, left, &progress, &pace).await
                    }
                    None => {
                        let mut reader = handle.into_reader();
                        pump::send(&mut reader, &mut stream, ascii, left, &progress, &pace).await
                    }
                }
                .map(Done::from),
            }?;
            if done.bytes < announced {
                warn!(
                    sent = done.bytes,
                    announced, "the file shrank while it was sent; the client got what there was"
                );
            }
            Ok(done)
        };
        let logged = logged.map(|info| (info, already));
        self.start_transfer(
            what,
            TransferKind::Download(announced),
            &opening,
            "Transfer complete.".to_string(),
            logged,
            job,
        )
        .await?;
        Ok(Flow::Continue)
    }

    /// What the transfer log says of a transfer of `path` (`None` when it is off).
    fn transfer_info(&self, path: &VPath, direction: Direction) -> Option<TransferInfo> {
        let logged_in = self.logged_in()?;
        if !self.shared.context.transfer_log.is_enabled() {
            return None;
        }
        Some(TransferInfo {
            peer: self.peer.ip(),
            path: path.to_string(),
            ascii: self.ttype == TransferType::Ascii,
            direction,
            anonymous: logged_in.fs.account().anonymous,
            user: match &logged_in.anonymous_id {
                Some(id) => id.to_string(),
                None => logged_in.fs.account().name.clone(),
            },
            // xferlog(5)'s service name for FTP, with or without TLS: analysers know it.
            service: "ftp",
        })
    }

    /// The quick path of a small plain binary download in passive mode: when the client's
    /// data connection is waiting already, send the file at once from here, with no task, no
    /// registration with the runtime and no `shutdown`, and answer `150` and `226` in one
    /// segment. About 10 system calls per small download instead of about 17. Data may reach
    /// the client before the `150`; clients read the two connections independently.
    ///
    /// If the socket buffer fills first, the connection becomes the data plan and the
    /// download goes on as usual (`Quick::Sent`); without a waiting connection nothing
    /// happens (`Quick::NotTaken`).
    fn quick_retr(&mut self, file: &std::fs::File, announced: u64, what: &str) -> Quick {
        // Larger downloads go the usual way, corked (see `pump::send_file`).
        if announced > self.shared.config.quick_download_max || self.data_is_protected() {
            return Quick::NotTaken;
        }
        let expected_peer = self.expected_peer();
        let DataPlan::Passive(plan) = &self.data else {
            return Quick::NotTaken;
        };
        let Some(stream) = plan.accept_now(expected_peer) else {
            return Quick::NotTaken;
        };
        // The listener goes back to the pool.
        self.data = DataPlan::None;
        let started = Instant::now();
        let result = match pump::send_file_now(&stream, file, announced, &self.shared.counters) {
            Ok((n, false)) => {
                self.data = DataPlan::Connected(stream);
                return Quick::Sent(n);
            }
            Ok((n, true)) => Ok(Done::from(n)),
            Err(e) => Err(e),
        };
        // Closing sends FIN after the data: the client has read nothing it must not lose.
        drop(stream);
        let bytes = result.as_ref().map_or(0, |d| d.bytes);
        let completed = result.is_ok();
        let metrics = &self.shared.context.metrics;
        metrics.add_bytes(Protocol::Ftp, Direction::Download, bytes);
        metrics.transfer_ended(Protocol::Ftp, Direction::Download, completed);
        Quick::Done(QuickDone {
            reply: final_reply(
                result,
                started,
                bytes,
                Some(what),
                "Transfer complete.".to_string(),
            )
            .reply,
            bytes,
            completed,
        })
    }

    /// Data connections of this session go through TLS (`PROT P` on a TLS server).
    fn data_is_protected(&self) -> bool {
        self.protect_data && self.shared.config.tls.is_some()
    }

    /// The plan for a passive listener just opened: with TLS, its wait starts now (see
    /// [`ProtectedPassive`]).
    pub(super) fn passive_plan(&self, plan: PassivePlan) -> DataPlan {
        match (&self.shared.config.tls, self.protect_data) {
            (Some(tls), true) => DataPlan::Protected(Box::new(ProtectedPassive::start(
                plan,
                self.expected_peer(),
                DataTls::new(tls, self.data_owner()),
                self.shared.config.data_connect_timeout,
            ))),
            _ => DataPlan::Passive(Box::new(plan)),
        }
    }

    /// The IP a passive data connection must come from (`None`: any, if so configured).
    pub(super) fn expected_peer(&self) -> Option<std::net::IpAddr> {
        (!self.shared.config.allow_foreign_passive_peer).then_some(self.peer.ip())
    }

    pub(super) async fn cmd_store(&mut self, arg: &str, kind: StoreKind) -> io::Result<Flow> {
        let offset = std::mem::take(&mut self.rest);
        if let Err(r) = self.authorized(Operation::Write) {
            self.send(&r).await?;
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

    pub(super) async fn cmd_stou(&mut self, hint: Option<&str>) -> io::Result<Flow> {
        self.rest = 0;
        let fs = match self.authorized(Operation::Write) {
            Ok(fs) => fs,
            Err(r) => {
                self.send(&r).await?;
                return Ok(Flow::Continue);
            }
        };
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
            match fs.open_write(&candidate, WriteMode::CreateNew).await {
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

    pub(super) async fn begin_upload(
        &mut self,
        path: VPath,
        mode: WriteMode,
        opened: Option<Box<dyn ferry_vfs::Upload>>,
    ) -> io::Result<Flow> {
        let fs = match self.authorized(Operation::Write) {
            Ok(fs) => fs,
            Err(r) => {
                self.send(&r).await?;
                return Ok(Flow::Continue);
            }
        };
        let upload = match opened {
            Some(u) => u,
            None => match fs.open_write(&path, mode).await {
                Ok(u) => u,
                Err(e) => {
                    self.send(&storage_error(&e)).await?;
                    return Ok(Flow::Continue);
                }
            },
        };
        let ascii = self.ttype == TransferType::Ascii;
        let pace = fs.upload_pace().clone();
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
        let shared = Arc::clone(&self.shared);
        let job = move |mut stream: Stream, progress: Arc<AtomicU64>| async move {
            let mut upload = upload;
            // A quota bounds what is written straight into the file too.
            let limit = upload.write_limit();
            let received = match (upload.local_file(), ascii) {
                // Binary upload to a local file: straight into it, plain or TLS.
                (Some(file), false) if !pace.is_limited() => {
                    let (counters, buffers) = (&shared.counters, &shared.buffers);
                    let limit = limit.as_deref();
                    pump::receive_file(&mut stream, file, limit, &progress, counters, buffers).await
                }
                _ => pump::receive(&mut stream, &mut upload, ascii, &progress, &pace).await,
            };
            let n = match received {
                Ok(n) => n,
                Err(e) => {
                    // The old file stays; the storage cleans up what it started.
                    let _ = upload.abort().await;
                    return Err(e);
                }
            };
            // Answer the client's TLS close_notify with ours (ftplib waits for it); a client
            // that already closed makes this fail, which changes nothing.
            let _ = stream.shutdown().await;
            let after = upload
                .commit_then_reclaim()
                .await
                .map_err(|e| PumpError::Local(io::Error::other(e.message)))?;
            Ok(Done { bytes: n, after })
        };
        let logged = self
            .transfer_info(&path, Direction::Upload)
            .map(|info| (info, 0));
        self.start_transfer(what, TransferKind::Upload, &opening, done, logged, job)
            .await?;
        Ok(Flow::Continue)
    }

    /// Send `150`, then run `job` on the data connection in its own task. The final reply is
    /// sent by the session loop when the task ends. A file transfer is `logged` in the
    /// transfer log when the task ends, however it ends (aborted, its task is dropped, and
    /// the line says incomplete), counting the bytes moved before the task (`logged.1`).
    pub(super) async fn start_transfer<F, Fut>(
        &mut self,
        what: String,
        kind: TransferKind,
        opening: &str,
        done: String,
        logged: Option<(TransferInfo, u64)>,
        job: F,
    ) -> io::Result<()>
    where
        F: FnOnce(Stream, Arc<AtomicU64>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Done, PumpError>> + Send + 'static,
    {
        let upload = kind == TransferKind::Upload;
        let plan = std::mem::replace(&mut self.data, DataPlan::None);
        let config = &self.shared.config;
        let timeout = config.data_connect_timeout;
        let expected_peer = self.expected_peer();
        let local_ip = self.local.ip();
        let source_port = config
            .active_source_port_minus_one
            .then(|| self.local.port().saturating_sub(1));
        let tls = match (&self.shared.config.tls, self.protect_data) {
            (Some(t), true) => Some(DataTls::new(t, self.data_owner())),
            _ => None,
        };
        self.send(&Reply::new(150, opening.to_string())).await?;
        let progress = Arc::new(AtomicU64::new(0));
        let task_progress = Arc::clone(&progress);
        let logged = logged.map(|(info, base)| {
            self.shared
                .context
                .transfer_log
                .start(info, Arc::clone(&progress), base)
        });
        let counted = match kind {
            TransferKind::Listing => None,
            TransferKind::Download(size) => Some((Direction::Download, Some(size))),
            TransferKind::Upload => Some((Direction::Upload, None)),
        };
        let guard = counted.map(|(direction, size)| {
            self.shared.context.metrics.start_transfer(
                self.permit.info().id,
                Protocol::Ftp,
                direction,
                what.clone(),
                size,
                Arc::clone(&progress),
            )
        });
        let span = info_span!("transfer", what = %what);
        let handle = tokio::spawn(
            async move {
                // Logged when the task ends, or is dropped (aborted).
                let logged = logged;
                let started = Instant::now();
                let stream = match (plan, tls) {
                    (DataPlan::Protected(p), _) => p.connection(upload).await,
                    (DataPlan::Passive(p), Some(tls)) => {
                        let (_, command) = watch::channel(Some(upload));
                        accept_passive(*p, expected_peer, tls, timeout, command).await
                    }
                    (DataPlan::Passive(p), None) => p
                        .accept(expected_peer, timeout)
                        .await
                        .map(Stream::Plain)
                        .map_err(|e| data_failed(&e)),
                    (DataPlan::Active(target), tls) => {
                        match connect_active(target, local_ip, source_port, timeout).await {
                            Ok(tcp) => match tls {
                                Some(tls) => tls.handshake_within(tcp, upload, timeout).await,
                                None => Ok(Stream::Plain(tcp)),
                            },
                            Err(e) => Err(data_failed(&e)),
                        }
                    }
                    // Only plain downloads begin on the quick path.
                    (DataPlan::Connected(s), _) => tokio::net::TcpStream::from_std(s)
                        .map(Stream::Plain)
                        .map_err(|e| data_failed(&DataError::Io(e))),
                    (DataPlan::None, _) => Err(data_failed(&DataError::Io(io::Error::other(
                        "no data connection",
                    )))),
                };
                let stream = match stream {
                    Ok(s) => s,
                    Err(reply) => return Outcome { reply, after: None },
                };
                let result = job(stream, Arc::clone(&task_progress)).await;
                if let Some(transfer) = logged {
                    match &result {
                        Ok(done) => transfer.finish_with(done.bytes, true),
                        Err(_) => transfer.finish(false),
                    }
                }
                if let Some(guard) = guard {
                    match &result {
                        Ok(done) => guard.finish(done.bytes, true),
                        Err(_) => guard.finish(task_progress.load(Ordering::Relaxed), false),
                    }
                }
                final_reply(
                    result,
                    started,
                    task_progress.load(Ordering::Relaxed),
                    None,
                    done,
                )
            }
            .instrument(span),
        );
        self.transfer = Some(RunningTransfer {
            handle,
            progress,
            what,
            moved: (0, Instant::now()),
        });
        Ok(())
    }
}

/// What a transfer started by [`Session::start_transfer`] is, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TransferKind {
    /// A directory listing (not counted as a transfer).
    Listing,
    /// A download of this many bytes.
    Download(u64),
    Upload,
}

/// What [`Session::quick_retr`] did.
enum Quick {
    NotTaken,
    /// Sent this much; the rest goes the usual way.
    Sent(u64),
    /// All sent, or failed.
    Done(QuickDone),
}

/// How a quick download ended.
struct QuickDone {
    reply: Reply,
    bytes: u64,
    completed: bool,
}

/// The final reply of a transfer (`226`, or `426`/`451` with the reason), logged. `what` names
/// the transfer when no tracing span does.
fn final_reply(
    result: Result<Done, PumpError>,
    started: Instant,
    progress: u64,
    what: Option<&str>,
    done: String,
) -> Outcome {
    let ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(Done { bytes, after }) => {
            info!(bytes, ms, what, "transfer complete");
            Outcome {
                reply: Reply::new(226, done),
                after,
            }
        }
        Err(PumpError::Network(e)) => {
            warn!(error = %e, bytes = progress, what, "transfer failed: data connection");
            Outcome {
                reply: Reply::new(
                    426,
                    format!("Data connection closed; transfer aborted: {e}."),
                ),
                after: None,
            }
        }
        Err(PumpError::Local(e)) if ferry_core::quota_refusal(&e).is_some() => {
            let why = ferry_core::quota_refusal(&e).unwrap_or_default();
            info!(
                reason = why,
                bytes = progress,
                what,
                "transfer stopped by the quota"
            );
            Outcome {
                reply: Reply::new(552, format!("{why}; transfer aborted.")),
                after: None,
            }
        }
        Err(PumpError::Local(e)) => {
            warn!(error = %e, what, "transfer failed: local error");
            Outcome {
                reply: Reply::new(
                    451,
                    format!("Local error; transfer aborted: {}.", local_message(&e)),
                ),
                after: None,
            }
        }
    }
}

/// What a transfer job hands back: the bytes moved, and cleanup to run once the client has
/// its answer (see [`ferry_vfs::Upload::commit_then_reclaim`]).
pub(super) struct Done {
    pub(super) bytes: u64,
    pub(super) after: Option<ferry_vfs::Reclaim>,
}

impl From<u64> for Done {
    fn from(bytes: u64) -> Done {
        Done { bytes, after: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StoreKind {
    Stor,
    Appe,
}
