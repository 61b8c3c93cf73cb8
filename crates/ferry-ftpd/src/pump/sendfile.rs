//! Zero-copy downloads: the kernel copies a local file to a plain data connection.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::Interest;
use tokio::net::TcpStream;

use super::{PumpError, is_network_error};
use crate::counters::TransferCounters;

/// Zero-copy download: `sendfile` from `file` (at its current position) to `socket` until end
/// of file, or until the `announced` bytes (what the `150` reply said) have gone out: that
/// saves a last call only to hear "end of file" (one system call in ~18 of a small download).
/// A file that grows meanwhile is sent as it was when opened. Returns the bytes sent.
pub(crate) async fn send_file(
    socket: &TcpStream,
    file: &std::fs::File,
    announced: u64,
    progress: &Arc<AtomicU64>,
    counters: &TransferCounters,
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
                counters.add_zero_copy(n as u64);
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
