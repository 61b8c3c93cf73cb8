//! Byte pumps between storage and data connections, with `TYPE A` line-ending conversion.
//!
//! Buffers are allocated per transfer and freed when it ends, so idle sessions hold none.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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

/// Copy `reader` (storage) to `writer` (data connection). Returns the bytes read from storage.
/// `expected` (the size announced) sizes the buffer: a small file gets a small one (a
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
    // A file that grew since it was opened is sent as it is now, in more reads.
    let size = usize::try_from(expected).map_or(BUFFER_SIZE, |n| n.clamp(512, BUFFER_SIZE));
    let mut buf = vec![0u8; size];
    let mut converted = Vec::new();
    let mut conv = ToNetworkAscii::default();
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).await.map_err(PumpError::Local)?;
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

/// Batches of ciphertext of one sealed download: one being filled, one being sent.
const SEAL_BUFFERS: usize = 2;

/// Bytes of the file sealed on a thread by TLS downloads (see [`send_file_sealed`]) since start.
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

/// A TLS download from a local file, in two stages on two cores: a blocking-pool thread reads
/// the file and has rustls seal it into records, a batch at a time, while the transfer's task
/// writes the previous batch to the socket. Done in one task, the stages take turns (and the
/// file is read through tokio's file wrapper, a blocking-pool round trip and one more copy per
/// read): measured on loopback, 1.6-1.7 → 1.9-2.3 GB/s and a third less server CPU per byte.
/// Ends with the TLS close_notify. Returns the bytes of the file sent.
///
/// rustls' connection moves to the thread; incoming records are not read meanwhile (nor are
/// they on the usual path: a download's client sends nothing until the end). If the task is
/// dropped (`ABOR`), the thread stops after the batch in hand.
pub(crate) async fn send_file_sealed(
    tls: Box<tokio_rustls::server::TlsStream<TcpStream>>,
    file: std::fs::File,
    announced: u64,
    progress: &Arc<AtomicU64>,
) -> Result<u64, PumpError> {
    use std::io::{Read, Write};
    let (mut tcp, mut conn) = (*tls).into_inner();
    let (chunk, batch, held) = reserve_seal_buffers(&PIPELINE_RESERVED, PIPELINE_BUDGET);
    let _reservation = Reservation(held);
    // A batch of ciphertext, the file bytes in it, and whether it is the last.
    type Batch = io::Result<(Vec<u8>, usize, bool)>;
    let (full_tx, mut full_rx) = tokio::sync::mpsc::channel::<Batch>(SEAL_BUFFERS);
    let (free_tx, mut free_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(SEAL_BUFFERS);
    for _ in 0..SEAL_BUFFERS {
        // Room for the records' headers and tags too (29 bytes per 16 KiB record).
        let _ = free_tx.try_send(Vec::with_capacity(batch + batch / 256));
    }
    let thread = tokio::task::spawn_blocking(move || {
        let mut file = file;
        let mut plain = vec![0u8; chunk];
        let mut left = announced;
        // Records go straight to `out`; rustls' own queue only ever holds one chunk's.
        conn.set_buffer_limit(None);
        let mut seal = |out: &mut Vec<u8>| -> io::Result<(usize, bool)> {
            let mut taken = 0;
            // Whatever rustls holds already (session tickets) goes first.
            while conn.wants_write() {
                conn.write_tls(out)?;
            }
            while taken < batch && left > 0 {
                let want = usize::try_from(left).map_or(chunk, |l| l.min(chunk));
                let n = match file.read(&mut plain[..want]) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                // A file that shrank since it was opened: what there was is all.
                if n == 0 {
                    left = 0;
                    break;
                }
                conn.writer().write_all(&plain[..n])?;
                while conn.wants_write() {
                    conn.write_tls(out)?;
                }
                taken += n;
                left -= n as u64;
            }
            let last = left == 0;
            if last {
                conn.send_close_notify();
                while conn.wants_write() {
                    conn.write_tls(out)?;
                }
            }
            Ok((taken, last))
        };
        while let Some(mut out) = free_rx.blocking_recv() {
            out.clear();
            let batch = seal(&mut out).map(|(n, last)| (out, n, last));
            let more = matches!(batch, Ok((_, _, false)));
            if full_tx.blocking_send(batch).is_err() || !more {
                break;
            }
        }
    });
    let mut total = 0u64;
    let result = loop {
        match full_rx.recv().await {
            Some(Ok((out, n, last))) => {
                if let Err(e) = tcp.write_all(&out).await {
                    break Err(PumpError::Network(e));
                }
                total += n as u64;
                progress.store(total, Ordering::Relaxed);
                SEALED_DOWNLOAD_BYTES.fetch_add(n as u64, Ordering::Relaxed);
                if last {
                    break tcp.shutdown().await.map_err(PumpError::Network);
                }
                // The thread may have stopped already; then the batch is simply freed.
                let _ = free_tx.try_send(out);
            }
            Some(Err(e)) => break Err(PumpError::Local(e)),
            None => {
                break Err(PumpError::Local(io::Error::other(
                    "TLS sealing thread stopped",
                )));
            }
        }
    };
    // Let a thread still sealing see the end, and wait for it (it holds the budget's buffers).
    drop(full_rx);
    drop(free_tx);
    let _ = thread.await;
    result.map(|()| total)
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
/// costs no thread handoff. A larger one hands its writes to a blocking-pool thread through
/// [`WRITE_BUFFERS`] buffers taking turns: the worker receives into one while the thread
/// copies another into the page cache, so the two copies of every byte (socket → buffer,
/// buffer → file) run on two cores instead of one after the other.
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
        let (n, failed) = fill(reader, &mut buf).await;
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
    let mut writer = Writer::start(file, buf);
    loop {
        let Some(mut buf) = writer.free_buffer().await else {
            return Err(writer.failure().await);
        };
        let (n, failed) = fill(reader, &mut buf).await;
        let short = n < buf.len();
        if n > 0 && !writer.write(buf, n).await {
            return Err(writer.failure().await);
        }
        total += n as u64;
        progress.store(total, Ordering::Relaxed);
        let ended = failed.is_some() || short;
        if ended {
            let written = writer.finish().await;
            return match (failed, written) {
                (_, Err(e)) => Err(PumpError::Local(e)),
                (Some(e), Ok(())) => Err(PumpError::Network(e)),
                (None, Ok(())) => Ok(total),
            };
        }
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
async fn fill<R>(reader: &mut R, buf: &mut [u8]) -> (usize, Option<io::Error>)
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]).await {
            Ok(0) => break,
            Ok(k) => n += k,
            // A TLS peer that closes TCP without close_notify: most FTPS clients do, so (like
            // vsftpd's default, and `receive`) this is the end of the upload.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return (n, Some(e)),
        }
    }
    (n, None)
}

/// The thread side of a pipelined upload: writes the buffers it is handed, in order, and
/// hands each one back. It stops at the first failure, when the upload ends, or, if the
/// upload's task is dropped (`ABOR`), before its next write.
struct Writer {
    full: Option<tokio::sync::mpsc::Sender<(Vec<u8>, usize)>>,
    free: tokio::sync::mpsc::Receiver<Vec<u8>>,
    thread: Option<tokio::task::JoinHandle<io::Result<()>>>,
    cancelled: Arc<AtomicBool>,
    /// Bytes of the pipeline budget this upload holds (see [`reserve_pipeline_buffers`]).
    reserved: usize,
}

impl Writer {
    /// Start the thread; `first` (the direct phase's buffer) is reused when the budget leaves
    /// the upload at that size.
    fn start(file: std::fs::File, first: Vec<u8>) -> Writer {
        use std::io::Write;
        let (size, reserved) = reserve_pipeline_buffers(&PIPELINE_RESERVED, PIPELINE_BUDGET);
        let (full_tx, mut full_rx) = tokio::sync::mpsc::channel::<(Vec<u8>, usize)>(WRITE_BUFFERS);
        let (free_tx, free_rx) = tokio::sync::mpsc::channel(WRITE_BUFFERS);
        let mut buffers = 0;
        if first.len() == size {
            let _ = free_tx.try_send(first);
            buffers += 1;
        }
        for _ in buffers..WRITE_BUFFERS {
            let _ = free_tx.try_send(vec![0u8; size]);
        }
        let cancelled = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&cancelled);
        let thread = tokio::task::spawn_blocking(move || {
            let mut file = file;
            while let Some((buf, n)) = full_rx.blocking_recv() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                file.write_all(&buf[..n])?;
                DIRECT_UPLOAD_BYTES.fetch_add(n as u64, Ordering::Relaxed);
                PIPELINED_UPLOAD_BYTES.fetch_add(n as u64, Ordering::Relaxed);
                // The receiving side may be gone already; then the buffer is simply freed.
                let _ = free_tx.try_send(buf);
            }
            Ok(())
        });
        Writer {
            full: Some(full_tx),
            free: free_rx,
            thread: Some(thread),
            cancelled,
            reserved,
        }
    }

    /// A buffer to receive into; `None` once the thread has stopped.
    async fn free_buffer(&mut self) -> Option<Vec<u8>> {
        self.free.recv().await
    }

    /// Queue `buf[..n]`; false if the thread has stopped (see [`Writer::failure`]).
    async fn write(&mut self, buf: Vec<u8>, n: usize) -> bool {
        match &self.full {
            Some(full) => full.send((buf, n)).await.is_ok(),
            None => false,
        }
    }

    /// Wait for every queued write; the first failure, if any.
    async fn finish(&mut self) -> io::Result<()> {
        self.full = None;
        match self.thread.take() {
            Some(thread) => thread.await.unwrap_or_else(|e| Err(io::Error::other(e))),
            None => Ok(()),
        }
    }

    /// Why the thread stopped early.
    async fn failure(&mut self) -> PumpError {
        match self.finish().await {
            Err(e) => PumpError::Local(e),
            Ok(()) => PumpError::Local(io::Error::other("upload writer stopped")),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.cancelled.store(true, Ordering::Relaxed);
        PIPELINE_RESERVED.fetch_sub(self.reserved, Ordering::AcqRel);
    }
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
        // One ends (as `Writer::drop` does): the next gets large buffers again.
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
    async fn a_local_file_is_sent_whole_whatever_size_was_announced() {
        use std::io::Write;
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&body).unwrap();
        // Announced small (the file grew since) and exact; from the start and from an offset.
        for (expected, from) in [(600u64, 0usize), (300_000, 0), (10, 299_990), (0, 123_456)] {
            use std::io::Seek;
            (&file).seek(std::io::SeekFrom::Start(from as u64)).unwrap();
            let mut out = Vec::new();
            let progress = Arc::new(AtomicU64::new(0));
            let n = send(&mut LocalFile(&file), &mut out, false, expected, &progress)
                .await
                .unwrap();
            assert_eq!(
                (n as usize, out.as_slice()),
                (body.len() - from, &body[from..])
            );
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
