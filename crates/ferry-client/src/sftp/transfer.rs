//! Pipelined transfers, as OpenSSH's client does them: up to
//! [`SftpOptions::requests_in_flight`](super::SftpOptions) reads or writes in flight, so a
//! file moves at the link's rate rather than one chunk per round trip.
//!
//! A download is written in file order: responses are awaited oldest first, a short read is
//! completed (its rest asked for before anything later is written), and a server that answers
//! short reads is then asked for chunks of the size it gives.

use std::collections::VecDeque;

use bytes::BytesMut;
use ferry_sftp_proto::{Handle, OpenFlags, Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::wire::Ticket;
use super::{SftpClient, expect_ok, status_error, unexpected};
use crate::{Error, Result};

/// Where an upload starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadStart {
    /// Create or truncate the file and write from byte 0.
    Replace,
    /// Keep what the file holds and write from this offset (resume, append).
    At(u64),
}

/// Smallest chunk a server's short reads shrink requests to.
const MIN_CHUNK: u32 = 4096;

/// A remote file open for reading ([`SftpClient::open_read`]).
pub struct RemoteFile<'a> {
    client: &'a SftpClient,
    handle: Handle,
    path: String,
    size: Option<u64>,
}

impl std::fmt::Debug for RemoteFile<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteFile")
            .field("path", &self.path)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl RemoteFile<'_> {
    /// The file's size when it was opened, if the server said.
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// Copy the file from byte `offset` to its end into `sink`, calling `progress` with each
    /// number of bytes written, then close it. Returns the bytes written. A failure to write
    /// `sink` is [`Error::Local`].
    pub async fn download_to<W>(
        self,
        offset: u64,
        sink: &mut W,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<u64>
    where
        W: AsyncWrite + Unpin + Send + ?Sized,
    {
        let copied = self.read_all(offset, sink, progress).await;
        // A read-only handle: closing it after a failure commits nothing.
        let closed = self.client.close_handle(&self.handle, &self.path).await;
        let n = copied?;
        closed?;
        Ok(n)
    }

    /// Close the file without reading it.
    pub async fn close(self) -> Result<()> {
        self.client.close_handle(&self.handle, &self.path).await
    }

    async fn read_all<W>(
        &self,
        offset: u64,
        sink: &mut W,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<u64>
    where
        W: AsyncWrite + Unpin + Send + ?Sized,
    {
        let c = self.client;
        let handle = &self.handle;
        let size = self.size;
        let command = format!("READ {}", self.path);
        let in_flight = c.opts.requests_in_flight.max(1);
        let timeout = c.opts.reply_timeout;
        let mut chunk = c.read_len.max(1);
        let mut queue: VecDeque<(u64, u32, Ticket)> = VecDeque::with_capacity(in_flight);
        let mut next = offset;
        let mut written = 0u64;
        loop {
            // Up to the known size; past it (or with no size known) one request at a time,
            // which finds the end of the file.
            while queue.len() < in_flight && (queue.is_empty() || size.is_none_or(|s| next < s)) {
                let ticket = c
                    .wire
                    .send(Request::Read {
                        handle: handle.clone(),
                        offset: next,
                        len: chunk,
                    })
                    .await?;
                queue.push_back((next, chunk, ticket));
                next += u64::from(chunk);
            }
            let Some((at, len, ticket)) = queue.pop_front() else {
                break;
            };
            let data = match ticket.wait(timeout, &command).await? {
                Response::Data(d) => d,
                Response::Status(s) if s.code == StatusCode::EOF => break,
                Response::Status(s) => return Err(status_error(&command, &s)),
                other => return Err(unexpected(&command, &other)),
            };
            let got = u32::try_from(data.len()).unwrap_or(u32::MAX);
            if got == 0 || got > len {
                return Err(Error::Protocol(format!(
                    "{command}: {got} bytes in answer to a read of {len}"
                )));
            }
            sink.write_all(&data)
                .await
                .map_err(Error::local("writing the local file"))?;
            written += u64::from(got);
            progress(u64::from(got));
            if got < len {
                let rest_at = at + u64::from(got);
                if size.is_none_or(|s| rest_at < s) {
                    // The server answers at most `got` bytes: ask it for no more.
                    chunk = chunk.min(got).max(MIN_CHUNK);
                }
                let ticket = c
                    .wire
                    .send(Request::Read {
                        handle: handle.clone(),
                        offset: rest_at,
                        len: len - got,
                    })
                    .await?;
                queue.push_front((rest_at, len - got, ticket));
            }
        }
        // Requests past the end still in the queue are dropped; their answers are discarded.
        sink.flush()
            .await
            .map_err(Error::local("writing the local file"))?;
        Ok(written)
    }
}

impl SftpClient {
    /// Open `path` for reading and ask its size (`OPEN`, `FSTAT`).
    pub async fn open_read(&self, path: &str) -> Result<RemoteFile<'_>> {
        let path = self.resolve(path);
        let handle = self.open(&path, OpenFlags::READ, "read").await?;
        let size = match self
            .call(
                Request::Fstat {
                    handle: handle.clone(),
                },
                &format!("FSTAT {path}"),
            )
            .await
        {
            Ok(Response::Attrs(a)) => a.size,
            Ok(_) => None,
            Err(e) => {
                let _ = self.close_handle(&handle, &path).await;
                return Err(e);
            }
        };
        Ok(RemoteFile {
            client: self,
            handle,
            path,
            size,
        })
    }

    /// Download `path` from byte `offset` into `sink` (see [`RemoteFile::download_to`]).
    pub async fn download<W>(
        &self,
        path: &str,
        offset: u64,
        sink: &mut W,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<u64>
    where
        W: AsyncWrite + Unpin + Send + ?Sized,
    {
        self.open_read(path)
            .await?
            .download_to(offset, sink, progress)
            .await
    }

    /// Upload `source` to `path`, calling `progress` with each number of bytes sent. Returns
    /// the bytes sent. A failure to read `source` is [`Error::Local`].
    ///
    /// The file is closed (which is when a server that writes beside the target puts the new
    /// file in place) only after every write succeeded; after a failure the handle is left
    /// open, so such a server keeps the old file when the session ends.
    pub async fn upload<R>(
        &self,
        source: &mut R,
        path: &str,
        start: UploadStart,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<u64>
    where
        R: AsyncRead + Unpin + Send + ?Sized,
    {
        let path = self.resolve(path);
        let (flags, mut at, what) = match start {
            UploadStart::Replace => (
                OpenFlags::WRITE | OpenFlags::CREAT | OpenFlags::TRUNC,
                0,
                "write, truncate",
            ),
            UploadStart::At(at) => (OpenFlags::WRITE | OpenFlags::CREAT, at, "write"),
        };
        let handle = self.open(&path, flags, what).await?;
        let command = format!("WRITE {path}");
        let in_flight = self.opts.requests_in_flight.max(1);
        let timeout = self.opts.reply_timeout;
        let chunk = self.write_len.max(1) as usize;
        let mut queue: VecDeque<Ticket> = VecDeque::with_capacity(in_flight);
        let mut sent = 0u64;
        loop {
            let mut buf = BytesMut::with_capacity(chunk);
            while buf.len() < chunk {
                let n = source
                    .read_buf(&mut buf)
                    .await
                    .map_err(Error::local("reading the local file"))?;
                if n == 0 {
                    break;
                }
            }
            if buf.is_empty() {
                break;
            }
            if queue.len() >= in_flight
                && let Some(t) = queue.pop_front()
            {
                expect_ok(&command, t.wait(timeout, &command).await?)?;
            }
            let len = buf.len() as u64;
            let ticket = self
                .wire
                .send(Request::Write {
                    handle: handle.clone(),
                    offset: at,
                    data: buf.freeze(),
                })
                .await?;
            queue.push_back(ticket);
            at += len;
            sent += len;
            progress(len);
        }
        while let Some(t) = queue.pop_front() {
            expect_ok(&command, t.wait(timeout, &command).await?)?;
        }
        self.close_handle(&handle, &path).await?;
        Ok(sent)
    }
}
