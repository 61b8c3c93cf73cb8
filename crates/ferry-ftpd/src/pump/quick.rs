//! The quick path of a small download.

use std::io;

use super::{PumpError, is_network_error};
use crate::counters::TransferCounters;

#[cfg(doc)]
use super::send_file;

/// Send `file` (from its current position) on a non-blocking `socket` for as long as the
/// socket takes it without waiting, up to `announced` bytes: the quick path of a small
/// download. Returns the bytes sent, and whether that is all (`announced` bytes, or the end of
/// a file that shrank); if not, the socket buffer filled: finish with [`send_file`].
pub(crate) fn send_file_now(
    socket: &std::net::TcpStream,
    file: &std::fs::File,
    announced: u64,
    counters: &TransferCounters,
) -> Result<(u64, bool), PumpError> {
    counters.add_quick_download();
    let mut total = 0u64;
    while total < announced {
        let want = usize::try_from(announced - total).unwrap_or(usize::MAX);
        match ferry_sys::sendfile(socket, file, want) {
            Ok(0) => return Ok((total, true)),
            Ok(n) => {
                total += n as u64;
                counters.add_zero_copy(n as u64);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((total, false)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_network_error(&e) => return Err(PumpError::Network(e)),
            Err(e) => return Err(PumpError::Local(e)),
        }
    }
    Ok((total, true))
}
