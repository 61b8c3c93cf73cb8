//! Reading a local file in place on the worker.

use std::io;

use tokio::io::AsyncRead;

#[cfg(doc)]
use super::SEAL_AFTER;

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
