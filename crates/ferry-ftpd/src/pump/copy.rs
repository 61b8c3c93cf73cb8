//! The generic pumps: any reader to any writer through a buffer, with `TYPE A` conversion.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ferry_core::Pace;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::PumpError;
use super::ascii::{FromNetworkAscii, ToNetworkAscii};

/// Size of the copy buffer of one transfer.
pub(crate) const BUFFER_SIZE: usize = 256 * 1024;

/// Copy `expected` bytes (the size announced) of `reader` (storage) to `writer` (data
/// connection), each chunk charged to `pace`. Returns the bytes read from storage. A small
/// file gets a small buffer (a 256 KiB buffer zeroed for a 4 KiB download cost more than the
/// download's copies).
pub(crate) async fn send<R, W>(
    reader: &mut R,
    writer: &mut W,
    ascii: bool,
    expected: u64,
    progress: &Arc<AtomicU64>,
    pace: &Pace,
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
        pace.take(n).await;
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

/// Copy `reader` (data connection) into `writer` (storage) until EOF, each chunk charged to
/// `pace`. Returns bytes received.
pub(crate) async fn receive<R, W>(
    reader: &mut R,
    writer: &mut W,
    ascii: bool,
    progress: &Arc<AtomicU64>,
    pace: &Pace,
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
        pace.take(n).await;
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
    use crate::pump::LocalFile;

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
            let pace = Pace::default();
            let n = send(
                &mut LocalFile(&file),
                &mut out,
                false,
                expected,
                &progress,
                &pace,
            )
            .await
            .unwrap();
            let end = (from + expected as usize).min(body.len());
            assert_eq!((n as usize, out.as_slice()), (end - from, &body[from..end]));
        }
    }
}
