//! The SFTP subsystem on one channel: a pipelined request loop.
//!
//! Packets are read as they arrive and each request runs as its own task, so a client that
//! keeps many requests in flight (OpenSSH's keeps 64) is served without a round trip per
//! request; replies go out as they complete, in any order, each written whole under the
//! channel's write lock (a packet is never interleaved with another). Requests on the same handle run in the order they
//! arrived (a chain of completion signals per handle); requests on paths run concurrently.
//! Every file operation goes through the user's [`UserFs`] (see `fs`).
//!
//! Bounds: at most `max_in_flight` requests at once (the loop stops reading, so the SSH
//! window and russh's channel buffer push back on the client), at most `read_budget` bytes of
//! file data read and not yet handed to the SSH layer, at most `max_handles` open handles, and
//! packets no longer than `max_packet` (checked on the length field, before buffering).
//!
//! Memory: an idle session holds one task and no buffers. The receive buffer is let go as soon
//! as it holds no partial packet (a burst of large writes leaves nothing behind), and replies
//! need no queue or writer task of their own.
//!
//! When the session ends, files still open are given up ([`OpenFile::abort`]): a file that
//! was replacing another is discarded and the old one stays. On server shutdown the session
//! ends as soon as nothing is open and nothing in flight.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ferry_core::{Direction, Operation, UserFs};
use ferry_sftp_proto::FrameError;
use ferry_sftp_proto::attrs::file_type;
use ferry_sftp_proto::response::{DATA_HEADER_LEN, data_header};
use ferry_sftp_proto::{
    Attrs, ClientMessage, Extended, Extension, Handle, Name, Request, Response, ServerMessage,
    Status, StatusCode, Times, ext, longname::longname, split_packet,
};
use ferry_vfs::{Entry, EntryKind, Error, ErrorKind, FsSpace, Metadata, VPath};
use russh::server::Msg;
use russh::{ChannelMsg, ChannelWriteHalf};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot, watch};

use crate::fs::{self, AttrChange, OpenDir, OpenFile, Transfers};
use crate::status::status_for;

/// Limits of one SFTP session.
#[derive(Debug, Clone, Copy)]
pub struct SftpLimits {
    /// Longest SFTP packet accepted (the length field's value).
    pub max_packet: u32,
    /// Requests handled at once; further packets wait in the channel.
    pub max_in_flight: usize,
    /// Open file and directory handles.
    pub max_handles: usize,
    /// Bytes of file data read for replies and not yet passed to the SSH layer.
    pub read_budget: u32,
    /// A session with nothing in flight and nothing received for this long ends.
    pub idle_timeout: Duration,
}

impl Default for SftpLimits {
    fn default() -> Self {
        SftpLimits {
            max_packet: 256 * 1024,
            max_in_flight: 128,
            max_handles: 256,
            read_budget: 8 * 1024 * 1024,
            idle_timeout: Duration::from_secs(600),
        }
    }
}

impl SftpLimits {
    /// Largest `READ` answered in full, and largest `WRITE` accepted: what fits in a packet,
    /// with room for the headers (as OpenSSH's server counts it).
    fn max_data(&self) -> u32 {
        self.max_packet.saturating_sub(1024)
    }
}

/// Directory entries per `NAME` reply.
const READDIR_BATCH: usize = 100;

enum Open {
    File(OpenFile),
    Dir(OpenDir),
    Closed,
}

struct Slot {
    object: Arc<tokio::sync::Mutex<Open>>,
    /// Completes when the last request queued on this handle has finished.
    tail: Option<oneshot::Receiver<()>>,
}

#[derive(Default)]
struct Handles {
    next: u64,
    open: HashMap<u64, Slot>,
}

/// Where a session's transfers are counted.
pub(crate) struct Meter {
    pub(crate) metrics: Arc<ferry_core::Metrics>,
    /// The session's id in the registry.
    pub(crate) session: u64,
}

struct Shared {
    fs: UserFs,
    /// Files opened are logged as transfers (when the transfer log is on).
    transfers: Option<Transfers>,
    meter: Meter,
    limits: SftpLimits,
    handles: Mutex<Handles>,
    budget: Arc<Semaphore>,
    /// The channel's sending side; a reply is written whole while this is held.
    writer: tokio::sync::Mutex<ChannelWriteHalf<Msg>>,
    /// Set once a write has failed: the channel is gone, later replies are dropped.
    broken: AtomicBool,
    /// Woken each time a reply has gone out, so a shutdown waiting for quiet hears of it.
    sent: Notify,
}

impl Shared {
    fn handles(&self) -> MutexGuard<'_, Handles> {
        self.handles
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Write one reply; the permits that bound what is in flight are released once it has
    /// been handed to the SSH layer.
    async fn send(
        &self,
        bytes: Bytes,
        slot: OwnedSemaphorePermit,
        budget: Option<OwnedSemaphorePermit>,
    ) {
        if !self.broken.load(Ordering::Acquire) {
            let writer = self.writer.lock().await;
            // A failed write means the channel is gone; the reply has nowhere to go then.
            if writer.data_bytes(bytes).await.is_err() {
                self.broken.store(true, Ordering::Release);
            }
        }
        drop((slot, budget));
        self.sent.notify_one();
    }

    fn register(&self, open: Open) -> Result<Handle, Status> {
        let mut h = self.handles();
        if h.open.len() >= self.limits.max_handles {
            return Err(too_many_handles());
        }
        let id = h.next;
        h.next += 1;
        h.open.insert(
            id,
            Slot {
                object: Arc::new(tokio::sync::Mutex::new(open)),
                tail: None,
            },
        );
        Ok(Handle(Bytes::copy_from_slice(&id.to_be_bytes())))
    }

    /// Give up every handle still open (the session is over): each waits for the request
    /// running on it, then a file is aborted.
    async fn abort_all(&self) {
        let slots: Vec<Slot> = self.handles().open.drain().map(|(_, s)| s).collect();
        for slot in slots {
            let mut open = slot.object.lock().await;
            if let Open::File(file) = std::mem::replace(&mut *open, Open::Closed) {
                tracing::info!(path = %file.path(), "sftp: file left open; given up");
                file.abort().await;
            }
        }
    }
}

impl OpenFile {
    /// Count `n` bytes moved `direction` on this file: its first read or write makes it a
    /// transfer (listed as running until the file is closed).
    fn moved(&mut self, meter: &Meter, direction: Direction, n: u64) {
        if self.transfer.is_none() {
            self.transfer = Some(meter.metrics.start_transfer(
                meter.session,
                ferry_core::Protocol::Sftp,
                direction,
                self.path().to_string(),
                None,
                Arc::default(),
            ));
        }
        if let Some(transfer) = &self.transfer {
            transfer.add(n);
        }
    }
}

fn too_many_handles() -> Status {
    Status::new(StatusCode::FAILURE, "Too many open handles")
}

fn handle_id(h: &Handle) -> Option<u64> {
    Some(u64::from_be_bytes(h.as_bytes().try_into().ok()?))
}

fn packet(id: u32, response: Response) -> Bytes {
    ServerMessage::Response { id, response }.to_bytes()
}

fn status_packet(id: u32, status: Status) -> Bytes {
    packet(id, Response::Status(status))
}

/// Serve SFTP on `channel` for the user behind `fs` until the client closes it, or until
/// `shutdown` turns true and nothing is open or in flight.
pub(crate) async fn serve(
    channel: russh::Channel<Msg>,
    fs: UserFs,
    limits: SftpLimits,
    transfers: Option<Transfers>,
    meter: Meter,
    mut shutdown: watch::Receiver<bool>,
) {
    let (mut rx, tx) = channel.split();
    let shared = Arc::new(Shared {
        fs,
        transfers,
        meter,
        limits,
        handles: Mutex::new(Handles::default()),
        budget: Arc::new(Semaphore::new(limits.read_budget.max(1) as usize)),
        writer: tokio::sync::Mutex::new(tx),
        broken: AtomicBool::new(false),
        sent: Notify::new(),
    });
    let slots = Arc::new(Semaphore::new(limits.max_in_flight));
    let mut inbox = Inbox::default();
    let mut initialized = false;
    let mut stopping = *shutdown.borrow();
    // What the client's `ssh` exits with (scp checks it): 1 when the stream was unusable.
    let mut exit_status = 0;

    'session: loop {
        loop {
            let packet = match inbox.next_packet(limits.max_packet) {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => {
                    tracing::info!("sftp: {e}; closing the channel");
                    exit_status = 1;
                    break 'session;
                }
            };
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                break 'session;
            };
            match ClientMessage::decode(packet) {
                Ok(ClientMessage::Init { version, .. }) if !initialized => {
                    initialized = true;
                    tracing::debug!(client_version = version, "sftp: init");
                    // Boxed (here and below): the session's task is as large as its largest
                    // wait, and it lives as long as the session; only the idle wait stays inline.
                    Box::pin(shared.send(version_packet(), slot, None)).await;
                }
                Ok(ClientMessage::Request { id, request }) if initialized => {
                    dispatch(&shared, id, request, slot);
                }
                Ok(_) => {
                    tracing::info!("sftp: INIT out of place; closing the channel");
                    exit_status = 1;
                    break 'session;
                }
                Err(e) => match e.id() {
                    Some(id) if initialized => {
                        let status = Status::new(e.status_code(), e.to_string());
                        Box::pin(shared.send(status_packet(id, status), slot, None)).await;
                    }
                    _ => {
                        tracing::info!("sftp: {e}; closing the channel");
                        exit_status = 1;
                        break 'session;
                    }
                },
            }
        }

        let quiet = |shared: &Shared| {
            slots.available_permits() == limits.max_in_flight && shared.handles().open.is_empty()
        };
        if stopping && quiet(&shared) {
            tracing::info!("sftp: server shutting down; session ended between requests");
            break;
        }
        let msg = tokio::select! {
            waited = tokio::time::timeout(limits.idle_timeout, rx.wait()) => match waited {
                Ok(msg) => msg,
                Err(_) if slots.available_permits() == limits.max_in_flight => {
                    tracing::info!("sftp: idle timeout");
                    break;
                }
                Err(_) => continue,
            },
            changed = shutdown.changed(), if !stopping => {
                // A dropped sender means the server is gone: stop as well.
                stopping = changed.is_err() || *shutdown.borrow();
                continue;
            }
            () = shared.sent.notified(), if stopping => continue,
        };
        match msg {
            Some(ChannelMsg::Data { data }) => inbox.push(&data),
            Some(ChannelMsg::Eof | ChannelMsg::Close) | None => break,
            Some(_) => {}
        }
    }
    Box::pin(end(&shared, &slots, limits, exit_status)).await;
}

/// The end of a session: files left open are given up, the requests still running answered,
/// then the channel is closed with `exit_status`.
async fn end(shared: &Shared, slots: &Semaphore, limits: SftpLimits, exit_status: u32) {
    shared.abort_all().await;
    // Every request still running has sent its reply once all the slots are back.
    let _ = slots.acquire_many(limits.max_in_flight as u32).await;
    let tx = shared.writer.lock().await;
    let _ = tx.exit_status(exit_status).await;
    let _ = tx.eof().await;
    let _ = tx.close().await;
}

/// What the client has sent and not yet taken as whole packets.
#[derive(Default)]
struct Inbox {
    buf: BytesMut,
}

impl Inbox {
    /// Append received bytes.
    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole packet, if one is in. The buffer is given up when nothing is left in
    /// it, so a session that has received a large packet keeps none of that memory once idle
    /// (the packets split off share it until they are dropped).
    fn next_packet(&mut self, max_len: u32) -> Result<Option<Bytes>, FrameError> {
        let packet = split_packet(&mut self.buf, max_len);
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
        }
        packet
    }

    /// Bytes held for packets not yet complete, counting room reserved.
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

fn version_packet() -> Bytes {
    let extensions: Vec<Extension> = vec![
        ext::advertise(ext::POSIX_RENAME, "1"),
        // Version 2 is what OpenSSH's client looks for.
        ext::advertise(ext::STATVFS, "2"),
        ext::advertise(ext::FSTATVFS, "2"),
        ext::advertise(ext::FSYNC, "1"),
        ext::advertise(ext::LSETSTAT, "1"),
        ext::advertise(ext::LIMITS, "1"),
        ext::advertise(ext::EXPAND_PATH, "1"),
    ];
    ServerMessage::Version {
        version: ferry_sftp_proto::VERSION,
        extensions,
    }
    .to_bytes()
}

/// Start `request`; its reply is sent when it completes.
fn dispatch(shared: &Arc<Shared>, id: u32, request: Request, slot: OwnedSemaphorePermit) {
    let shared = Arc::clone(shared);
    let Some(handle) = request.handle().cloned() else {
        tokio::spawn(async move {
            let reply = path_request(&shared, id, request).await;
            shared.send(reply, slot, None).await;
        });
        return;
    };

    // Queue behind the requests already on this handle, in arrival order.
    let closing = matches!(request, Request::Close { .. });
    let queued = {
        let mut h = shared.handles();
        let (done, tail) = oneshot::channel::<()>();
        match handle_id(&handle) {
            // Later requests on a closing handle find it gone, as the client asked.
            Some(k) if closing => h.open.remove(&k).map(|s| (s.object, s.tail, done)),
            Some(k) => h.open.get_mut(&k).map(|s| {
                let previous = s.tail.replace(tail);
                (Arc::clone(&s.object), previous, done)
            }),
            None => None,
        }
    };
    let Some((object, previous, done)) = queued else {
        tokio::spawn(async move {
            let reply = status_packet(id, Status::new(StatusCode::FAILURE, "Invalid handle"));
            shared.send(reply, slot, None).await;
        });
        return;
    };

    tokio::spawn(async move {
        if let Some(previous) = previous {
            // An error only means the previous request's task ended; it is done either way.
            let _ = previous.await;
        }
        let mut guard = object.lock().await;
        let (reply, budget) = handle_request(&shared, id, request, &mut guard).await;
        drop(guard);
        drop(done);
        shared.send(reply, slot, budget).await;
    });
}

/// A client path as a [`VPath`]: relative paths start at the user's root, and `..` never
/// climbs above it.
fn vpath(raw: &[u8]) -> Result<VPath, Status> {
    let s = std::str::from_utf8(raw)
        .map_err(|_| Status::new(StatusCode::FAILURE, "File names must be UTF-8"))?;
    VPath::root()
        .resolve(s)
        .map_err(|e| Status::new(StatusCode::FAILURE, e.to_string()))
}

fn to_u32_time(secs: i64) -> u32 {
    u32::try_from(secs.max(0)).unwrap_or(u32::MAX)
}

fn type_bits(kind: EntryKind) -> u32 {
    match kind {
        EntryKind::File => file_type::REGULAR,
        EntryKind::Dir => file_type::DIRECTORY,
        EntryKind::Symlink => file_type::SYMLINK,
        EntryKind::Other => 0,
    }
}

fn attrs_of(kind: EntryKind, size: u64, mode: u32, mtime: i64) -> Attrs {
    let t = to_u32_time(mtime);
    Attrs {
        size: Some(size),
        owner: None,
        permissions: Some(type_bits(kind) | (mode & 0o7777)),
        times: Some(Times { atime: t, mtime: t }),
        extended: Vec::new(),
    }
}

fn metadata_attrs(md: &Metadata) -> Attrs {
    attrs_of(md.kind, md.size, md.mode, md.mtime)
}

fn change_of(attrs: &Attrs) -> AttrChange {
    AttrChange {
        size: attrs.size,
        mode: attrs.permissions,
        mtime: attrs.times.map(|t| i64::from(t.mtime)),
        owner: attrs.owner.is_some(),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn names(user: &str, entries: Vec<Entry>) -> Vec<Name> {
    let now = now();
    entries
        .into_iter()
        .map(|e| {
            let attrs = attrs_of(e.kind, e.size, e.mode, e.mtime);
            Name {
                longname: longname(e.name.as_bytes(), &attrs, e.nlink, user, user, now),
                filename: Bytes::from(e.name),
                attrs,
            }
        })
        .collect()
}

fn path_name(path: &VPath) -> Response {
    let s = Bytes::copy_from_slice(path.as_str().as_bytes());
    Response::Name(vec![Name {
        filename: s.clone(),
        longname: s,
        attrs: Attrs::default(),
    }])
}

/// `statvfs@openssh.com`'s reply; read-only for an account that may not write.
fn statvfs_reply(fs: &UserFs, space: FsSpace) -> Response {
    let mut flag = 0;
    if space.read_only || !fs.allows(Operation::Write) {
        flag |= ext::ST_RDONLY;
    }
    if space.no_suid {
        flag |= ext::ST_NOSUID;
    }
    let reply = ext::StatVfs {
        bsize: space.block_size,
        frsize: space.fragment_size,
        blocks: space.blocks,
        bfree: space.blocks_free,
        bavail: space.blocks_available,
        files: space.files,
        ffree: space.files_free,
        favail: space.files_available,
        fsid: space.fsid,
        flag,
        namemax: space.name_max,
    };
    Response::ExtendedReply(reply.encode())
}

fn unsupported(message: &str) -> Status {
    Status::new(StatusCode::OP_UNSUPPORTED, message)
}

/// Requests that name paths.
async fn path_request(shared: &Shared, id: u32, request: Request) -> Bytes {
    match path_response(shared, request).await {
        Ok(response) => packet(id, response),
        Err(status) => status_packet(id, status),
    }
}

fn failed(e: Error) -> Status {
    status_for(&e)
}

async fn path_response(shared: &Shared, request: Request) -> Result<Response, Status> {
    let fs = &shared.fs;
    let done =
        |r: ferry_vfs::Result<()>| r.map(|()| Response::Status(Status::ok())).map_err(failed);
    match request {
        Request::Open { path, flags, .. } => {
            let path = vpath(&path)?;
            if shared.handles().open.len() >= shared.limits.max_handles {
                return Err(too_many_handles());
            }
            let file = OpenFile::open(fs, &path, flags, shared.transfers.as_ref())
                .await
                .map_err(failed)?;
            match shared.register(Open::File(file)) {
                Ok(handle) => Ok(Response::Handle(handle)),
                Err(status) => Err(status),
            }
        }
        Request::Opendir { path } => {
            let path = vpath(&path)?;
            if shared.handles().open.len() >= shared.limits.max_handles {
                return Err(too_many_handles());
            }
            let dir = OpenDir::open(fs, &path).await.map_err(failed)?;
            Ok(Response::Handle(shared.register(Open::Dir(dir))?))
        }
        Request::Stat { path } | Request::Lstat { path } => {
            let md = fs.stat(&vpath(&path)?).await.map_err(failed)?;
            Ok(Response::Attrs(metadata_attrs(&md)))
        }
        Request::Setstat { path, attrs }
        | Request::Extended(Extended::Lsetstat { path, attrs }) => {
            done(fs::set_attrs(fs, &vpath(&path)?, change_of(&attrs)).await)
        }
        Request::Remove { path } => done(fs.remove_file(&vpath(&path)?).await),
        Request::Mkdir { path, .. } => done(fs.mkdir(&vpath(&path)?).await),
        Request::Rmdir { path } => done(fs.rmdir(&vpath(&path)?).await),
        Request::Rename { from, to } => {
            done(fs::rename(fs, &vpath(&from)?, &vpath(&to)?, false).await)
        }
        Request::Extended(Extended::PosixRename { from, to }) => {
            done(fs::rename(fs, &vpath(&from)?, &vpath(&to)?, true).await)
        }
        // Within the user's root, normalised: `..` stops at `/`.
        Request::Realpath { path } => Ok(path_name(&vpath(&path)?)),
        Request::Extended(Extended::ExpandPath { path }) => {
            // The user's home is their root.
            let rest = path
                .strip_prefix(b"~")
                .filter(|r| r.is_empty() || r.starts_with(b"/"))
                .unwrap_or(&path);
            Ok(path_name(&vpath(rest)?))
        }
        Request::Extended(Extended::StatVfs { path }) => {
            let space = fs.statvfs(&vpath(&path)?).await.map_err(failed)?;
            Ok(statvfs_reply(fs, space))
        }
        Request::Extended(Extended::Limits) => {
            let l = &shared.limits;
            let limits = ferry_sftp_proto::Limits {
                max_packet_len: u64::from(l.max_packet),
                max_read_len: u64::from(l.max_data()),
                max_write_len: u64::from(l.max_data()),
                max_open_handles: l.max_handles as u64,
            };
            Ok(Response::ExtendedReply(limits.encode()))
        }
        Request::Readlink { .. } | Request::Symlink { .. } => Err(unsupported(
            "Symbolic links cannot be read or made over SFTP here (links inside the root are \
             followed, never shown)",
        )),
        Request::Extended(Extended::Hardlink { .. }) => {
            Err(unsupported("Hard links are not supported"))
        }
        Request::Extended(Extended::CopyData { .. }) => {
            Err(unsupported("copy-data is not supported"))
        }
        Request::Extended(Extended::Unknown { name, .. }) => Err(unsupported(&format!(
            "Extension {} is not supported",
            String::from_utf8_lossy(&name).escape_debug()
        ))),
        // Handle requests are routed to `handle_request`.
        other => Err(Status::new(
            StatusCode::BAD_MESSAGE,
            format!("{} needs a handle", other.name()),
        )),
    }
}

/// Requests on an open handle, run in arrival order for that handle.
async fn handle_request(
    shared: &Shared,
    id: u32,
    request: Request,
    open: &mut Open,
) -> (Bytes, Option<OwnedSemaphorePermit>) {
    let fs = &shared.fs;
    let fail = |e: Error| status_packet(id, status_for(&e));
    let done = |r: ferry_vfs::Result<()>| match r {
        Ok(()) => status_packet(id, Status::ok()),
        Err(e) => fail(e),
    };
    let reply = match (request, open) {
        (Request::Read { offset, len, .. }, Open::File(file)) => {
            let len = len.min(shared.limits.max_data());
            let Ok(budget) = Arc::clone(&shared.budget)
                .acquire_many_owned(len.clamp(1, shared.limits.read_budget.max(1)))
                .await
            else {
                return (
                    status_packet(id, Status::new(StatusCode::FAILURE, "Shutting down")),
                    None,
                );
            };
            // The reply is built around the data: header first, data read in after it.
            let mut buf = Vec::with_capacity(DATA_HEADER_LEN + len as usize);
            buf.resize(DATA_HEADER_LEN, 0);
            return match file
                .handle()
                .read_at_into(offset, len as usize, &mut buf)
                .await
            {
                Ok(0) => (status_packet(id, Status::eof()), None),
                Ok(n) => {
                    file.sent(n);
                    file.moved(&shared.meter, Direction::Download, n as u64);
                    fs.download_pace().take(n).await;
                    let n = u32::try_from(n).unwrap_or(u32::MAX);
                    buf[..DATA_HEADER_LEN].copy_from_slice(&data_header(id, n));
                    (Bytes::from(buf), Some(budget))
                }
                Err(e) => (fail(e), None),
            };
        }
        (Request::Write { offset, data, .. }, Open::File(file)) => {
            fs.upload_pace().take(data.len()).await;
            let written = file.handle().write_at(offset, &data).await;
            if written.is_ok() {
                file.received(data.len());
                file.moved(&shared.meter, Direction::Upload, data.len() as u64);
            }
            done(written)
        }
        (Request::Close { .. }, open) => match std::mem::replace(open, Open::Closed) {
            Open::File(mut file) => {
                let transfer = file.transfer.take();
                let closed = file.close(fs).await;
                if let Some(t) = transfer {
                    let bytes = t.bytes();
                    t.finish(bytes, closed.is_ok());
                }
                done(closed)
            }
            Open::Dir(_) | Open::Closed => status_packet(id, Status::ok()),
        },
        (Request::Fstat { .. }, Open::File(file)) => match file.handle().metadata().await {
            Ok(md) => packet(id, Response::Attrs(metadata_attrs(&md))),
            Err(e) => fail(e),
        },
        (Request::Fstat { .. }, Open::Dir(dir)) => match fs.stat(dir.path()).await {
            Ok(md) => packet(id, Response::Attrs(metadata_attrs(&md))),
            Err(e) => fail(e),
        },
        (Request::Fsetstat { attrs, .. }, Open::File(file)) => {
            done(file.set_attrs(fs, change_of(&attrs)).await)
        }
        (Request::Fsetstat { attrs, .. }, Open::Dir(dir)) => {
            done(fs::set_attrs(fs, dir.path(), change_of(&attrs)).await)
        }
        (Request::Readdir { .. }, Open::Dir(dir)) => match dir.next_batch(READDIR_BATCH).await {
            Ok(entries) if entries.is_empty() => status_packet(id, Status::eof()),
            Ok(entries) => packet(id, Response::Name(names(&fs.account().name, entries))),
            Err(e) => fail(e),
        },
        (Request::Extended(Extended::Fsync { .. }), Open::File(file)) => {
            done(file.handle().sync().await)
        }
        (Request::Extended(Extended::FstatVfs { .. }), Open::File(file)) => {
            match fs.statvfs(file.path()).await {
                Ok(space) => packet(id, statvfs_reply(fs, space)),
                Err(e) => fail(e),
            }
        }
        (Request::Extended(Extended::FstatVfs { .. }), Open::Dir(dir)) => {
            match fs.statvfs(dir.path()).await {
                Ok(space) => packet(id, statvfs_reply(fs, space)),
                Err(e) => fail(e),
            }
        }
        (Request::Read { .. } | Request::Write { .. }, Open::Dir(_)) => {
            fail(Error::new(ErrorKind::IsADirectory, "Is a directory"))
        }
        (Request::Readdir { .. }, Open::File(_)) => {
            fail(Error::new(ErrorKind::NotADirectory, "Not a directory"))
        }
        (_, _) => status_packet(id, Status::new(StatusCode::FAILURE, "Invalid handle")),
    };
    (reply, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(len: usize) -> Vec<u8> {
        let mut p = u32::try_from(len)
            .unwrap_or(u32::MAX)
            .to_be_bytes()
            .to_vec();
        p.resize(4 + len, 7);
        p
    }

    #[test]
    fn the_inbox_keeps_nothing_once_a_burst_is_taken() {
        let mut inbox = Inbox::default();
        // A large WRITE arriving in channel-sized pieces, then a small request.
        let mut stream = framed(200 * 1024);
        stream.extend(framed(40));
        let mut packets = Vec::new();
        for piece in stream.chunks(32 * 1024) {
            inbox.push(piece);
            while let Some(p) = inbox.next_packet(256 * 1024).ok().flatten() {
                packets.push(p);
            }
        }
        assert_eq!(
            packets.iter().map(Bytes::len).collect::<Vec<_>>(),
            [200 * 1024, 40]
        );
        assert_eq!(inbox.capacity(), 0, "the idle inbox holds a buffer");

        // A partial packet is kept until it is whole.
        inbox.push(&framed(10)[..6]);
        assert_eq!(inbox.next_packet(256 * 1024), Ok(None));
        inbox.push(&framed(10)[6..]);
        assert_eq!(
            inbox
                .next_packet(256 * 1024)
                .ok()
                .flatten()
                .map(|p| p.len()),
            Some(10)
        );
        assert_eq!(inbox.capacity(), 0);
    }
}
