//! Binary uploads into a local file.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt};

use super::PumpError;
use super::write_queue::{WRITE_BUFFERS, Writes};
use crate::budget::{BufferBudget, Reservation};
use crate::counters::TransferCounters;
use ferry_vfs::WriteLimit;

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
/// +12%, 8 MiB no better), within the server's budget for large buffers (`budget`). The
/// buffers live for the transfer only.
///
/// `limit` (the user's quota) is asked before each write, and no byte it does not allow is
/// written: the upload ends with its refusal ([`PumpError::Local`]) once what arrived passes it.
pub(crate) async fn receive_file<R>(
    reader: &mut R,
    file: &std::fs::File,
    limit: Option<&dyn WriteLimit>,
    progress: &Arc<AtomicU64>,
    counters: &Arc<TransferCounters>,
    budget: &Arc<BufferBudget>,
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
        let allowed = allowed(limit, n);
        let k = allowed.as_ref().map_or(n, |(k, _)| *k);
        (&*file).write_all(&buf[..k]).map_err(PumpError::Local)?;
        if let Some((_, Some(refused))) = allowed {
            counters.add_direct_upload(k as u64);
            return Err(PumpError::Local(refused));
        }
        total += n as u64;
        progress.store(total, Ordering::Relaxed);
        counters.add_direct_upload(n as u64);
        match failed {
            Some(e) => return Err(PumpError::Network(e)),
            None if n < buf.len() => return Ok(total),
            None if total >= PIPELINE_AFTER => break,
            None => {}
        }
    }
    // Shares the file position (a duplicate descriptor of the same open file).
    let file = file.try_clone().map_err(PumpError::Local)?;
    let (size, _held) = reserve_pipeline_buffers(budget);
    let writes = Writes::new(
        file,
        (buf.len() == size).then_some(buf),
        Arc::clone(counters),
    );
    loop {
        let mut buf = writes.free_buffer(size).await.map_err(PumpError::Local)?;
        let (n, failed) = fill(reader, &mut buf, progress, total).await;
        if let Some((k, Some(refused))) = allowed(limit, n) {
            writes.queue(buf, k).map_err(PumpError::Local)?;
            writes.finish().await.map_err(PumpError::Local)?;
            return Err(PumpError::Local(refused));
        }
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

/// Of `n` bytes received, how many `limit` lets be written, and its refusal of the rest (if
/// it refuses any); `None` without a limit.
fn allowed(limit: Option<&dyn WriteLimit>, n: usize) -> Option<(usize, Option<io::Error>)> {
    let limit = limit?;
    let mut k = 0usize;
    while k < n {
        match limit.allow((n - k) as u64) {
            Ok(0) => break,
            Ok(more) => k += usize::try_from(more).unwrap_or(n - k).min(n - k),
            Err(e) => return Some((k, Some(e))),
        }
    }
    Some((k, None))
}

/// Uploads larger than this hand their writes to a thread (see [`receive_file`]).
const PIPELINE_AFTER: u64 = 4 * 1024 * 1024;

/// Size of a pipelined upload's buffers while the budget allows (else [`UPLOAD_BUFFER`]).
pub(super) const PIPELINE_BUFFER: usize = 4 * 1024 * 1024;

/// Reserve room in `budget` for one upload's large buffers: their size, and the hold on the
/// budget (none when it is spent and the upload makes do with [`UPLOAD_BUFFER`]).
pub(super) fn reserve_pipeline_buffers(budget: &Arc<BufferBudget>) -> (usize, Option<Reservation>) {
    match budget.reserve(WRITE_BUFFERS * PIPELINE_BUFFER) {
        Some(held) => (PIPELINE_BUFFER, Some(held)),
        None => (UPLOAD_BUFFER, None),
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
pub(super) const UPLOAD_BUFFER: usize = 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_upload_buffers_stay_within_their_budget() {
        let budget = Arc::new(BufferBudget::new(3 * WRITE_BUFFERS * PIPELINE_BUFFER));
        let mut held = Vec::new();
        for _ in 0..3 {
            let (size, reservation) = reserve_pipeline_buffers(&budget);
            assert_eq!(size, PIPELINE_BUFFER);
            held.push(reservation.unwrap());
        }
        // The fourth upload gets the small buffers and holds nothing of the budget.
        let (size, reservation) = reserve_pipeline_buffers(&budget);
        assert_eq!((size, reservation.is_none()), (UPLOAD_BUFFER, true));
        assert_eq!(budget.reserved(), budget.limit());
        // One ends: the next gets large buffers again.
        held.pop();
        assert_eq!(reserve_pipeline_buffers(&budget).0, PIPELINE_BUFFER);
    }
}
