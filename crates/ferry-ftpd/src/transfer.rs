//! Byte pumps between storage and data connections, with `TYPE A` line-ending conversion.
//!
//! Buffers are allocated per transfer and freed when it ends, so idle sessions hold none.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

/// Size of the copy buffer of one transfer.
pub(crate) const BUFFER_SIZE: usize = 256 * 1024;

/// Which side of a transfer failed: it decides the reply (451 local, 426 network).
#[derive(Debug, thiserror::Error)]
pub(crate) enum PumpError {
    #[error("local error: {0}")]
    Local(io::Error),
    #[error("data connection: {0}")]
    Network(io::Error),
}

/// Converts bare LF to CRLF (server → client in `TYPE A`).
#[derive(Debug, Default)]
pub(crate) struct ToNetworkAscii {
    prev_cr: bool,
}

impl ToNetworkAscii {
    pub(crate) fn convert(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.reserve(input.len() + input.len() / 8);
        for &b in input {
            if b == b'\n' && !self.prev_cr {
                out.push(b'\r');
            }
            out.push(b);
            self.prev_cr = b == b'\r';
        }
    }
}

/// Converts CRLF to LF (client → server in `TYPE A`); a CR not followed by LF is kept.
#[derive(Debug, Default)]
pub(crate) struct FromNetworkAscii {
    pending_cr: bool,
}

impl FromNetworkAscii {
    pub(crate) fn convert(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.reserve(input.len() + 1);
        for &b in input {
            if self.pending_cr {
                self.pending_cr = false;
                if b != b'\n' {
                    out.push(b'\r');
                }
            }
            if b == b'\r' {
                self.pending_cr = true;
            } else {
                out.push(b);
            }
        }
    }

    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        out.clear();
        if std::mem::take(&mut self.pending_cr) {
            out.push(b'\r');
        }
    }
}

/// A local file read in place by the task, as `sendfile` reads it: the page cache copy costs
/// less than tokio's file wrapper, which hands every read to a blocking-pool thread and copies
/// twice. For downloads that can't use `sendfile` (TLS below [`SEAL_AFTER`], `TYPE A`).
/// Like `sendfile`, a read from a cold page cache waits for the disk.
pub(crate) struct LocalFile<'a>(pub(crate) &'a std::fs::File);

impl AsyncRead for LocalFile<'_> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        use std::io::Read;
        let read = loop {
            match (&mut &*self.0).read(buf.initialize_unfilled()) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        std::task::Poll::Ready(read.map(|n| buf.advance(n)))
    }
}

/// Copy `expected` bytes (the size announced) of `reader` (storage) to `writer` (data
/// connection). Returns the bytes read from storage. A small file gets a small buffer (a
/// 256 KiB buffer zeroed for a 4 KiB download cost more than the download's copies).
pub(crate) async fn send<R, W>(
    reader: &mut R,
    writer: &mut W,
    ascii: bool,
    expected: u64,
    progress: &Arc<AtomicU64>,
) -> Result<u64, PumpError>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let size = usize::try_from(expected).map_or(BUFFER_SIZE, |n| n.clamp(512, BUFFER_SIZE));
    let mut buf = vec![0u8; size];
    let mut converted = Vec::new();
    let mut conv = ToNetworkAscii::default();
    let mut total = 0u64;
    // As with `sendfile`, a file that grew since it was opened is sent as it was then (the
    // size the `150` reply announced), and one that shrank, as far as it goes.
    while total < expected {
        let want = usize::try_from(expected - total).map_or(buf.len(), |l| l.min(buf.len()));
        let n = reader
            .read(&mut buf[..want])
            .await
            .map_err(PumpError::Local)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        if ascii {
            conv.convert(chunk, &mut converted);
            writer
                .write_all(&converted)
                .await
                .map_err(PumpError::Network)?;
        } else {
            writer.write_all(chunk).await.map_err(PumpError::Network)?;
        }
        total += n as u64;
        progress.store(total, Ordering::Relaxed);
    }
    writer.flush().await.map_err(PumpError::Network)?;
    writer.shutdown().await.map_err(PumpError::Network)?;
    Ok(total)
}

/// Bytes sent with `sendfile` since start (observability; lets tests prove the path is taken).
pub(crate) static ZERO_COPY_BYTES: AtomicU64 = AtomicU64::new(0);

/// Zero-copy download: `sendfile` from `file` (at its current position) to `socket` until end
/// of file, or until the `announced` bytes (what the `150` reply said) have gone out: that
/// saves a last call only to hear "end of file" (one system call in ~18 of a small download).
/// A file that grows meanwhile is sent as it was when opened. Returns the bytes sent.
pub(crate) async fn send_file(
    socket: &TcpStream,
    file: &std::fs::File,
    announced: u64,
    progress: &Arc<AtomicU64>,
) -> Result<u64, PumpError> {
    // Per call; the kernel sends what the socket buffer takes and returns.
    const CHUNK: usize = 4 * 1024 * 1024;
    // Corked, the kernel sends only full segments while a large file streams, and the rest
    // when it is uncorked at the end: ~15% less CPU per megabyte than with Nagle off (the data
    // socket's setting), as ProFTPD does. Small files go out in one call and skip the two
    // extra system calls. A failure to cork only costs that.
    const CORK_AFTER: u64 = 256 * 1024;
    let mut corked = false;
    let mut total = 0u64;
    if announced == 0 {
        return Ok(0);
    }
    loop {
        socket.writable().await.map_err(PumpError::Network)?;
        let want = usize::try_from(announced - total).map_or(CHUNK, |left| left.min(CHUNK));
        match socket.try_io(Interest::WRITABLE, || {
            ferry_sys::sendfile(socket, file, want)
        }) {
            Ok(0) => {
                if corked {
                    let _ = ferry_sys::set_tcp_cork(socket, false);
                }
                return Ok(total);
            }
            Ok(n) => {
                total += n as u64;
                progress.store(total, Ordering::Relaxed);
                ZERO_COPY_BYTES.fetch_add(n as u64, Ordering::Relaxed);
                if total >= announced {
                    if corked {
                        let _ = ferry_sys::set_tcp_cork(socket, false);
                    }
                    return Ok(total);
                }
                if !corked && total >= CORK_AFTER {
                    corked = ferry_sys::set_tcp_cork(socket, true).is_ok();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            // sendfile reports both sides' errors; a broken pipe or reset is the network.
            Err(e) if is_network_error(&e) => return Err(PumpError::Network(e)),
            Err(e) => return Err(PumpError::Local(e)),
        }
    }
}

/// TLS downloads from a local file of at least this many bytes seal their records on a
/// thread (see [`send_file_sealed`]); smaller ones are done before a handoff would pay off.
pub(crate) const SEAL_AFTER: u64 = 1024 * 1024;

/// Plaintext read from the file and sealed per step of a [`send_file_sealed`] download, and
/// per batch handed to the socket, while the budget allows ...
const SEAL_CHUNK: usize = 256 * 1024;
const SEAL_BATCH: usize = 4 * SEAL_CHUNK;

/// ... and beyond it.
const SEAL_CHUNK_SMALL: usize = 64 * 1024;
const SEAL_BATCH_SMALL: usize = 4 * SEAL_CHUNK_SMALL;

/// Batches of ciphertext of one sealed download: one being sealed, one being sent.
const SEAL_BUFFERS: usize = 2;

/// Bytes of files sealed on the blocking pool by TLS downloads (see [`send_file_sealed`])
/// since start.
pub(crate) static SEALED_DOWNLOAD_BYTES: AtomicU64 = AtomicU64::new(0);

/// A sealed download's sizes: plaintext chunk, batch, and the budget bytes it holds (released
/// by [`Reservation`]).
fn reserve_seal_buffers(
    reserved: &std::sync::atomic::AtomicUsize,
    budget: usize,
) -> (usize, usize, usize) {
    let want = SEAL_BUFFERS * SEAL_BATCH + SEAL_CHUNK;
    if reserve(reserved, budget, want) {
        (SEAL_CHUNK, SEAL_BATCH, want)
    } else {
        (SEAL_CHUNK_SMALL, SEAL_BATCH_SMALL, 0)
    }
}

/// Bytes of [`PIPELINE_BUDGET`] held by a transfer, given back when it ends.
struct Reservation(usize);

impl Drop for Reservation {
    fn drop(&mut self) {
        PIPELINE_RESERVED.fetch_sub(self.0, Ordering::AcqRel);
    }
}

/// A TLS download from a local file, in two stages on two cores: a blocking-pool job reads a
/// batch of the file and has rustls seal it into records while the transfer's task writes the
/// previous batch to the socket. Done in one task, the stages take turns (and the file was
/// read through tokio's file wrapper, a blocking-pool round trip and one more copy per read):
/// measured on loopback, 1.6-1.7 → 1.9-2.3 GB/s and a third less server CPU per byte.
/// Ends with the TLS close_notify. Returns the bytes of the file sent.
///
/// rustls' connection moves into each job and back; incoming records are not read meanwhile
/// (nor are they on the usual path: a download's client sends nothing until the end). A job
/// holds a blocking-pool thread only while it seals (~0.5 ms per batch), never while the
/// client is slow to read: clients that stop reading cannot starve the pool, which logins
/// and storage calls also use. If the task is dropped (`ABOR`), the job in flight finishes
/// its batch and nothing more is sealed.
pub(crate) async fn send_file_sealed(
    tls: Box<tokio_rustls::server::TlsStream<TcpStream>>,
    file: std::fs::File,
    announced: u64,
    progress: &Arc<AtomicU64>,
) -> Result<u64, PumpError> {
    let (mut tcp, conn) = (*tls).into_inner();
    let (chunk, batch, held) = reserve_seal_buffers(&PIPELINE_RESERVED, PIPELINE_BUDGET);
    let _reservation = Reservation(held);
    // Room for the records' headers and tags too (29 bytes per 16 KiB record).
    let capacity = batch + batch / 256;
    let sealer = Sealer::new(conn, file, chunk, batch, announced);
    let mut job = Some(seal_next(sealer, Vec::with_capacity(capacity)));
    let mut spare = Vec::with_capacity(capacity);
    let mut total = 0u64;
    while let Some(sealing) = job.take() {
        let (sealer, out, sealed) = sealing
            .await
            .map_err(|e| PumpError::Local(io::Error::other(e)))?;
        let (n, last) = sealed.map_err(PumpError::Local)?;
        if !last {
            job = Some(seal_next(sealer, std::mem::take(&mut spare)));
        }
        tcp.write_all(&out).await.map_err(PumpError::Network)?;
        total += n as u64;
        progress.store(total, Ordering::Relaxed);
        SEALED_DOWNLOAD_BYTES.fetch_add(n as u64, Ordering::Relaxed);
        spare = out;
    }
    tcp.shutdown().await.map_err(PumpError::Network)?;
    Ok(total)
}

/// What a job of [`send_file_sealed`] returns: the sealer, the batch, its file bytes and
/// whether it is the last.
type Sealed = (Sealer, Vec<u8>, io::Result<(usize, bool)>);

/// Seal the next batch into `out` on the blocking pool.
fn seal_next(mut sealer: Sealer, mut out: Vec<u8>) -> tokio::task::JoinHandle<Sealed> {
    tokio::task::spawn_blocking(move || {
        let sealed = sealer.seal(&mut out);
        (sealer, out, sealed)
    })
}

/// The file side of a sealed download: the file, rustls' connection, and what is left.
struct Sealer {
    conn: rustls::ServerConnection,
    file: std::fs::File,
    plain: Vec<u8>,
    batch: usize,
    left: u64,
    /// Application data records sealed, and how many more the keys allow: TLS 1.2 with
    /// AES-GCM stops at 2^24 records (rustls then closes and drops what is written after; TLS
    /// 1.3 renews its keys instead).
    records: u64,
    record_limit: u64,
}

/// The most plaintext per record (rustls' default, which Ferry keeps).
const RECORD: usize = 16 * 1024;

/// Records sent under the same keys before the file (Finished, tickets): left as a margin.
const RECORD_MARGIN: u64 = 64;

impl Sealer {
    fn new(
        mut conn: rustls::ServerConnection,
        file: std::fs::File,
        chunk: usize,
        batch: usize,
        announced: u64,
    ) -> Sealer {
        // Records go straight to the batch; rustls' own queue only ever holds one chunk's.
        conn.set_buffer_limit(None);
        let record_limit = match conn.negotiated_cipher_suite() {
            Some(rustls::SupportedCipherSuite::Tls12(suite)) => suite
                .common
                .confidentiality_limit
                .saturating_sub(RECORD_MARGIN),
            _ => u64::MAX,
        };
        Sealer {
            conn,
            file,
            plain: vec![0u8; chunk],
            batch,
            left: announced,
            records: 0,
            record_limit,
        }
    }

    /// Read and seal up to a batch of the file into `out` (emptied first), and the
    /// close_notify after the last of it. Returns the file bytes in the batch and whether it
    /// is the last.
    fn seal(&mut self, out: &mut Vec<u8>) -> io::Result<(usize, bool)> {
        use std::io::{Read, Write};
        out.clear();
        // Whatever rustls holds already (session tickets) goes first.
        self.flush(out)?;
        let mut taken = 0;
        while taken < self.batch && self.left > 0 {
            let room = self.plain.len().min(self.batch - taken);
            let want = usize::try_from(self.left).map_or(room, |l| l.min(room));
            let n = match self.file.read(&mut self.plain[..want]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            // A file that shrank since it was opened: what there was is all.
            if n == 0 {
                self.left = 0;
                break;
            }
            self.records += n.div_ceil(RECORD) as u64;
            if self.records > self.record_limit {
                return Err(io::Error::other(
                    "the TLS 1.2 session's keys may seal no more records (TLS 1.3 renews them)",
                ));
            }
            self.conn.writer().write_all(&self.plain[..n])?;
            self.flush(out)?;
            taken += n;
            self.left -= n as u64;
        }
        let last = self.left == 0;
        if last {
            self.conn.send_close_notify();
            self.flush(out)?;
        }
        Ok((taken, last))
    }

    fn flush(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(out)?;
        }
        Ok(())
    }
}

/// Downloads that began on the quick path (see `stats::quick_downloads`).
pub(crate) static QUICK_DOWNLOADS: AtomicU64 = AtomicU64::new(0);

/// Send `file` (from its current position) on a non-blocking `socket` for as long as the
/// socket takes it without waiting, up to `announced` bytes: the quick path of a small
/// download. Returns the bytes sent, and whether that is all (`announced` bytes, or the end of
/// a file that shrank); if not, the socket buffer filled: finish with [`send_file`].
pub(crate) fn send_file_now(
    socket: &std::net::TcpStream,
    file: &std::fs::File,
    announced: u64,
) -> Result<(u64, bool), PumpError> {
    QUICK_DOWNLOADS.fetch_add(1, Ordering::Relaxed);
    let mut total = 0u64;
    while total < announced {
        let want = usize::try_from(announced - total).unwrap_or(usize::MAX);
        match ferry_sys::sendfile(socket, file, want) {
            Ok(0) => return Ok((total, true)),
            Ok(n) => {
                total += n as u64;
                ZERO_COPY_BYTES.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((total, false)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_network_error(&e) => return Err(PumpError::Network(e)),
            Err(e) => return Err(PumpError::Local(e)),
        }
    }
    Ok((total, true))
}

/// Bytes that uploads wrote straight into a local file (see [`receive_file`]) since start.
pub(crate) static DIRECT_UPLOAD_BYTES: AtomicU64 = AtomicU64::new(0);

/// Of [`DIRECT_UPLOAD_BYTES`], those written by a pipelined upload's thread.
pub(crate) static PIPELINED_UPLOAD_BYTES: AtomicU64 = AtomicU64::new(0);

/// Upload into a local file: read the data connection (plain or TLS) into large buffers and
/// write them to `file` at its current position, as page-cache writes, until the client
/// closes. Returns the bytes received.
///
/// The first [`PIPELINE_AFTER`] bytes are written from the calling worker, so a small upload
/// costs no thread handoff. A larger one hands each buffer's write to a blocking-pool job, with
/// [`WRITE_BUFFERS`] buffers taking turns: the worker receives into one while the job copies
/// the other into the page cache, so the two copies of every byte (socket → buffer, buffer →
/// file) run on two cores instead of one after the other. A job holds a thread only while it
/// writes, never while the client is slow to send: clients that trickle cannot starve the
/// pool, which logins and storage calls also use.
///
/// Measured against `splice` (socket → pipe → file, one copy fewer) on loopback: level when
/// memory is warm, but the pipe holds on to the sender's pages, so the sender allocates fresh
/// ones for every megabyte, and on a virtual machine whose host takes freed memory back that
/// made uploads 0.4-2 GB/s from one run to the next. A 1 MiB buffer was ~25% faster than
/// 256 KiB, and for the pipelined part 4 MiB buffers another 15-20% (less server CPU too; 2 MiB
/// +12%, 8 MiB no better), within a budget for all uploads (see [`PIPELINE_BUDGET`]). The
/// buffers live for the transfer only.
pub(crate) async fn receive_file<R>(
    reader: &mut R,
    file: &std::fs::File,
    progress: &Arc<AtomicU64>,
) -> Result<u64, PumpError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    use std::io::Write;
    let mut buf = vec![0u8; UPLOAD_BUFFER];
    let mut total = 0u64;
    // Whatever arrived before a failure is written before the failure is reported (a client
    // resuming an upload in place goes on from what the file holds).
    loop {
        let (n, failed) = fill(reader, &mut buf, progress, total).await;
        (&*file).write_all(&buf[..n]).map_err(PumpError::Local)?;
        total += n as u64;
        progress.store(total, Ordering::Relaxed);
        DIRECT_UPLOAD_BYTES.fetch_add(n as u64, Ordering::Relaxed);
        match failed {
            Some(e) => return Err(PumpError::Network(e)),
            None if n < buf.len() => return Ok(total),
            None if total >= PIPELINE_AFTER => break,
            None => {}
        }
    }
    // Shares the file position (a duplicate descriptor of the same open file).
    let file = file.try_clone().map_err(PumpError::Local)?;
    let (size, held) = reserve_pipeline_buffers(&PIPELINE_RESERVED, PIPELINE_BUDGET);
    let _reservation = Reservation(held);
    let writes = Writes::new(file, (buf.len() == size).then_some(buf));
    loop {
        let mut buf = writes.free_buffer(size).await.map_err(PumpError::Local)?;
        let (n, failed) = fill(reader, &mut buf, progress, total).await;
        writes.queue(buf, n).map_err(PumpError::Local)?;
        total += n as u64;
        progress.store(total, Ordering::Relaxed);
        if failed.is_some() || n < size {
            writes.finish().await.map_err(PumpError::Local)?;
            return match failed {
                Some(e) => Err(PumpError::Network(e)),
                None => Ok(total),
            };
        }
    }
}

/// The write side of a pipelined upload: the receiving task queues filled buffers, and a
/// blocking-pool job writes them in order, going from one to the next while any is queued
/// (as a thread of its own would) and ending when none is: a client that is slow to send, or
/// stops, holds no thread of the pool, which logins and storage calls also use. The task
/// starts a job when it queues a buffer and none runs. Dropped (`ABOR`), the queue is
/// emptied: a job stops after the write in hand.
struct Writes {
    shared: Arc<WriteShared>,
}

struct WriteShared {
    file: std::fs::File,
    state: std::sync::Mutex<WriteState>,
    /// A buffer came back, or the job ended.
    changed: tokio::sync::Notify,
}

#[derive(Default)]
struct WriteState {
    queued: std::collections::VecDeque<(Vec<u8>, usize)>,
    free: Vec<Vec<u8>>,
    /// Buffers made so far (at most [`WRITE_BUFFERS`]).
    made: usize,
    running: bool,
    failed: Option<io::Error>,
}

impl WriteShared {
    fn state(&self) -> std::sync::MutexGuard<'_, WriteState> {
        // A panic while holding the lock leaves plain data behind; carry on with it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The job: write what is queued, in order, until nothing is.
    fn run(&self) {
        use std::io::Write;
        loop {
            let next = {
                let mut state = self.state();
                let next = state.queued.pop_front();
                if next.is_none() {
                    state.running = false;
                }
                next
            };
            let Some((buf, n)) = next else {
                self.changed.notify_one();
                return;
            };
            let result = (&self.file).write_all(&buf[..n]);
            let mut state = self.state();
            state.free.push(buf);
            match result {
                Ok(()) => {
                    DIRECT_UPLOAD_BYTES.fetch_add(n as u64, Ordering::Relaxed);
                    PIPELINED_UPLOAD_BYTES.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    state.failed = Some(e);
                    state.queued.clear();
                    state.running = false;
                    drop(state);
                    self.changed.notify_one();
                    return;
                }
            }
            drop(state);
            self.changed.notify_one();
        }
    }
}

impl Writes {
    /// `first` (the direct phase's buffer) is reused when it has the pipelined size.
    fn new(file: std::fs::File, first: Option<Vec<u8>>) -> Writes {
        let mut state = WriteState::default();
        if let Some(buf) = first {
            state.free.push(buf);
            state.made = 1;
        }
        Writes {
            shared: Arc::new(WriteShared {
                file,
                state: std::sync::Mutex::new(state),
                changed: tokio::sync::Notify::new(),
            }),
        }
    }

    /// A buffer of `size` bytes to receive into: a free one, a new one while fewer than
    /// [`WRITE_BUFFERS`] exist, or the next one written. The first write failure, if any.
    async fn free_buffer(&self, size: usize) -> io::Result<Vec<u8>> {
        loop {
            {
                let mut state = self.shared.state();
                if let Some(e) = state.failed.take() {
                    return Err(e);
                }
                if let Some(buf) = state.free.pop() {
                    return Ok(buf);
                }
                if state.made < WRITE_BUFFERS {
                    state.made += 1;
                    return Ok(vec![0u8; size]);
                }
            }
            self.shared.changed.notified().await;
        }
    }

    /// Queue `buf[..n]` for writing (an empty one is kept for reuse); start a job if none runs.
    fn queue(&self, buf: Vec<u8>, n: usize) -> io::Result<()> {
        let mut state = self.shared.state();
        if let Some(e) = state.failed.take() {
            return Err(e);
        }
        if n == 0 {
            state.free.push(buf);
            return Ok(());
        }
        state.queued.push_back((buf, n));
        if !state.running {
            state.running = true;
            let shared = Arc::clone(&self.shared);
            drop(tokio::task::spawn_blocking(move || shared.run()));
        }
        Ok(())
    }

    /// Wait until everything queued is written; the first failure, if any.
    async fn finish(&self) -> io::Result<()> {
        loop {
            {
                let mut state = self.shared.state();
                if let Some(e) = state.failed.take() {
                    return Err(e);
                }
                if !state.running && state.queued.is_empty() {
                    return Ok(());
                }
            }
            self.shared.changed.notified().await;
        }
    }
}

impl Drop for Writes {
    fn drop(&mut self) {
        self.shared.state().queued.clear();
    }
}

/// Uploads larger than this hand their writes to a thread (see [`receive_file`]).
const PIPELINE_AFTER: u64 = 4 * 1024 * 1024;

/// Buffers of one pipelined upload: one being received into, one being written.
const WRITE_BUFFERS: usize = 2;

/// Size of a pipelined upload's buffers while the budget allows (else [`UPLOAD_BUFFER`]).
const PIPELINE_BUFFER: usize = 4 * 1024 * 1024;

/// Most bytes of large buffers all transfers hold at once: those of pipelined uploads (8 MiB
/// each at full size; uploads beyond use [`UPLOAD_BUFFER`]-sized ones, 2 MiB each) and of
/// sealed TLS downloads (2.3 MiB each at full size, 0.6 MiB beyond).
const PIPELINE_BUDGET: usize = 256 * 1024 * 1024;

/// Bytes of [`PIPELINE_BUDGET`] reserved by running transfers.
static PIPELINE_RESERVED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Reserve room in `reserved` (within `budget`) for one upload's large buffers: their size
/// and the bytes reserved (0 when the budget is spent and the upload makes do with
/// [`UPLOAD_BUFFER`]).
fn reserve_pipeline_buffers(
    reserved: &std::sync::atomic::AtomicUsize,
    budget: usize,
) -> (usize, usize) {
    let want = WRITE_BUFFERS * PIPELINE_BUFFER;
    if reserve(reserved, budget, want) {
        (PIPELINE_BUFFER, want)
    } else {
        (UPLOAD_BUFFER, 0)
    }
}

/// Take `want` bytes of `budget` in `reserved`, if that many are left.
fn reserve(reserved: &std::sync::atomic::AtomicUsize, budget: usize, want: usize) -> bool {
    let before = reserved.fetch_add(want, Ordering::AcqRel);
    if before + want <= budget {
        true
    } else {
        reserved.fetch_sub(want, Ordering::AcqRel);
        false
    }
}

/// Read until `buf` is full or the peer closes. Returns the bytes read, and the error that
/// ended the reading early, if one did (the bytes before it are good). Full buffers mean
/// fewer, larger writes and handoffs.
///
/// `progress` (at `before` bytes when called) counts what arrives as it arrives: a slow client
/// fills a 4 MiB buffer in minutes, and must not look stalled meanwhile (`data_stall_timeout`).
async fn fill<R>(
    reader: &mut R,
    buf: &mut [u8],
    progress: &AtomicU64,
    before: u64,
) -> (usize, Option<io::Error>)
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]).await {
            Ok(0) => break,
            Ok(k) => {
                n += k;
                progress.store(before + n as u64, Ordering::Relaxed);
            }
            // A TLS peer that closes TCP without close_notify: most FTPS clients do, so (like
            // vsftpd's default, and `receive`) this is the end of the upload.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return (n, Some(e)),
        }
    }
    (n, None)
}

/// Buffer of one upload written straight into a local file (and of a pipelined one past the
/// budget).
const UPLOAD_BUFFER: usize = 1024 * 1024;

fn is_network_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
            | io::ErrorKind::TimedOut
    )
}

/// Copy `reader` (data connection) into `writer` (storage) until EOF. Returns bytes received.
pub(crate) async fn receive<R, W>(
    reader: &mut R,
    writer: &mut W,
    ascii: bool,
    progress: &Arc<AtomicU64>,
) -> Result<u64, PumpError>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut buf = vec![0u8; BUFFER_SIZE];
    let mut converted = Vec::new();
    let mut conv = FromNetworkAscii::default();
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(n) => n,
            // A TLS peer that closes TCP without close_notify: most FTPS clients do, so (like
            // vsftpd's default) this counts as the end of the upload.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(PumpError::Network(e)),
        };
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        if ascii {
            conv.convert(chunk, &mut converted);
            writer
                .write_all(&converted)
                .await
                .map_err(PumpError::Local)?;
        } else {
            writer.write_all(chunk).await.map_err(PumpError::Local)?;
        }
        total += n as u64;
        progress.store(total, Ordering::Relaxed);
    }
    if ascii {
        conv.finish(&mut converted);
        writer
            .write_all(&converted)
            .await
            .map_err(PumpError::Local)?;
    }
    writer.flush().await.map_err(PumpError::Local)?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_net(chunks: &[&[u8]]) -> Vec<u8> {
        let mut c = ToNetworkAscii::default();
        let mut all = Vec::new();
        let mut out = Vec::new();
        for ch in chunks {
            c.convert(ch, &mut out);
            all.extend_from_slice(&out);
        }
        all
    }

    fn from_net(chunks: &[&[u8]]) -> Vec<u8> {
        let mut c = FromNetworkAscii::default();
        let mut all = Vec::new();
        let mut out = Vec::new();
        for ch in chunks {
            c.convert(ch, &mut out);
            all.extend_from_slice(&out);
        }
        c.finish(&mut out);
        all.extend_from_slice(&out);
        all
    }

    #[test]
    fn large_upload_buffers_stay_within_their_budget() {
        let reserved = std::sync::atomic::AtomicUsize::new(0);
        let budget = 3 * WRITE_BUFFERS * PIPELINE_BUFFER;
        let mut held = Vec::new();
        for _ in 0..3 {
            let (size, bytes) = reserve_pipeline_buffers(&reserved, budget);
            assert_eq!(size, PIPELINE_BUFFER);
            held.push(bytes);
        }
        // The fourth upload gets the small buffers and holds nothing of the budget.
        assert_eq!(
            reserve_pipeline_buffers(&reserved, budget),
            (UPLOAD_BUFFER, 0)
        );
        assert_eq!(reserved.load(Ordering::Relaxed), budget);
        // One ends (as `Reservation::drop` does): the next gets large buffers again.
        reserved.fetch_sub(held.pop().unwrap(), Ordering::Relaxed);
        assert_eq!(
            reserve_pipeline_buffers(&reserved, budget).0,
            PIPELINE_BUFFER
        );
    }

    #[test]
    fn sealed_downloads_share_the_budget_with_uploads() {
        let reserved = std::sync::atomic::AtomicUsize::new(0);
        let budget = WRITE_BUFFERS * PIPELINE_BUFFER + SEAL_BUFFERS * SEAL_BATCH + SEAL_CHUNK;
        let (chunk, batch, held) = reserve_seal_buffers(&reserved, budget);
        assert_eq!((chunk, batch), (SEAL_CHUNK, SEAL_BATCH));
        // What is left is one upload's large buffers; the next download gets small ones.
        assert_eq!(
            reserve_pipeline_buffers(&reserved, budget).0,
            PIPELINE_BUFFER
        );
        assert_eq!(
            reserve_seal_buffers(&reserved, budget),
            (SEAL_CHUNK_SMALL, SEAL_BATCH_SMALL, 0)
        );
        assert_eq!(reserved.load(Ordering::Relaxed), budget);
        reserved.fetch_sub(held, Ordering::Relaxed);
        assert_eq!(reserve_seal_buffers(&reserved, budget).0, SEAL_CHUNK);
    }

    #[tokio::test]
    async fn a_local_file_is_sent_as_announced() {
        use std::io::Write;
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&body).unwrap();
        // Announced smaller (the file grew since: sent as it was), exact, larger (it shrank:
        // sent as far as it goes); from the start and from an offset.
        for (expected, from) in [
            (600u64, 0usize),
            (300_000, 0),
            (400_000, 0),
            (10, 299_990),
            (0, 123_456),
            (50_000, 123_456),
        ] {
            use std::io::Seek;
            (&file).seek(std::io::SeekFrom::Start(from as u64)).unwrap();
            let mut out = Vec::new();
            let progress = Arc::new(AtomicU64::new(0));
            let n = send(&mut LocalFile(&file), &mut out, false, expected, &progress)
                .await
                .unwrap();
            let end = (from + expected as usize).min(body.len());
            assert_eq!((n as usize, out.as_slice()), (end - from, &body[from..end]));
        }
    }

    #[test]
    fn lf_becomes_crlf_once() {
        assert_eq!(to_net(&[b"a\nb\r\nc\n"]), b"a\r\nb\r\nc\r\n");
        assert_eq!(to_net(&[b"a\r", b"\nb\n"]), b"a\r\nb\r\n");
    }

    #[test]
    fn crlf_becomes_lf_across_chunks() {
        assert_eq!(from_net(&[b"a\r\nb\r", b"\nc\rd\r"]), b"a\nb\nc\rd\r");
        assert_eq!(from_net(&[b"\r", b"\r", b"\n"]), b"\r\n");
    }

    #[test]
    fn round_trip_of_unix_text() {
        let text = b"line one\nline two\n\nend";
        assert_eq!(from_net(&[&to_net(&[text])]), text);
    }
}
