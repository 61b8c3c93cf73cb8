//! One logged-in session, FTP/FTPS or SFTP, behind the operations the verbs use: what differs
//! between the protocols stays in this file.

use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use ferry_client::checksum::Algorithm;
use ferry_client::sftp::UploadStart;
use ferry_client::{Client, Error, ParsedEntry, SftpClient, StoreMode};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::Result;
use super::transfer::{CopyError, copy};

/// A logged-in session.
#[derive(Debug)]
pub(crate) enum Remote {
    Ftp(Box<Client>),
    Sftp(Box<SftpClient>),
}

/// Where a download goes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LocalTarget<'a> {
    /// Create (or truncate) this file.
    Create(&'a Path),
    /// Append to this file (resume).
    Append(&'a Path),
    /// Standard output.
    Stdout,
}

impl LocalTarget<'_> {
    fn label(&self) -> String {
        match self {
            LocalTarget::Create(p) | LocalTarget::Append(p) => p.display().to_string(),
            LocalTarget::Stdout => "standard output".into(),
        }
    }

    /// Opened only once the remote side has agreed to send, so that a missing remote file
    /// leaves no empty local one behind.
    async fn open(&self) -> Result<Sink> {
        let file = match self {
            LocalTarget::Create(p) => tokio::fs::File::create(p).await,
            LocalTarget::Append(p) => tokio::fs::OpenOptions::new().append(true).open(p).await,
            LocalTarget::Stdout => return Ok(Sink::Stdout(tokio::io::stdout())),
        };
        let file = file.map_err(Error::local(format!("opening {}", self.label())))?;
        Ok(Sink::File(file))
    }

    /// Flushed and, for a file, on disk: `get -c` resumes from the length.
    async fn finish(&self, mut sink: Sink) -> Result<()> {
        let context = format!("writing {}", self.label());
        sink.flush().await.map_err(Error::local(context.clone()))?;
        if let Sink::File(f) = &sink {
            f.sync_all().await.map_err(Error::local(context))?;
        }
        Ok(())
    }
}

/// An open local target.
enum Sink {
    File(tokio::fs::File),
    Stdout(tokio::io::Stdout),
}

impl AsyncWrite for Sink {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Sink::File(f) => Pin::new(f).poll_write(cx, buf),
            Sink::Stdout(o) => Pin::new(o).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Sink::File(f) => Pin::new(f).poll_flush(cx),
            Sink::Stdout(o) => Pin::new(o).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Sink::File(f) => Pin::new(f).poll_shutdown(cx),
            Sink::Stdout(o) => Pin::new(o).poll_shutdown(cx),
        }
    }
}

/// `Error::Local` from the library, named after the local file.
fn relabel(e: Error, label: &str) -> Error {
    match e {
        Error::Local { context, source } if context.ends_with("the local file") => {
            let verb = context.split(' ').next().unwrap_or("writing");
            Error::local(format!("{verb} {label}"))(source)
        }
        other => other,
    }
}

impl Remote {
    /// `true` for SFTP.
    pub(crate) fn is_sftp(&self) -> bool {
        matches!(self, Remote::Sftp(_))
    }

    /// The FTP client, for what only FTP has (raw commands, data connection modes).
    pub(crate) fn ftp(&mut self) -> Option<&mut Client> {
        match self {
            Remote::Ftp(c) => Some(c),
            Remote::Sftp(_) => None,
        }
    }

    /// `true` when listings carry exact modification times (MLSD, SFTP).
    pub(crate) fn precise_times(&self) -> bool {
        match self {
            Remote::Ftp(c) => c.features().has("MLST"),
            Remote::Sftp(_) => true,
        }
    }

    /// `true` when one file's exact modification time can be asked for (MDTM, SFTP).
    pub(crate) fn has_mdtm(&self) -> bool {
        match self {
            Remote::Ftp(c) => c.features().has("MDTM"),
            Remote::Sftp(_) => true,
        }
    }

    /// `true` when a file's modification time can be set (MFMT, SFTP).
    pub(crate) fn can_set_mtime(&self) -> bool {
        match self {
            Remote::Ftp(c) => c.features().has("MFMT"),
            Remote::Sftp(_) => true,
        }
    }

    pub(crate) async fn list(&mut self, path: Option<&str>) -> Result<Vec<ParsedEntry>> {
        match self {
            Remote::Ftp(c) => c.list(path).await,
            Remote::Sftp(s) => s.list(path).await,
        }
    }

    pub(crate) async fn size(&mut self, path: &str) -> Result<u64> {
        match self {
            Remote::Ftp(c) => c.size(path).await,
            Remote::Sftp(s) => s.size(path).await,
        }
    }

    pub(crate) async fn mdtm(&mut self, path: &str) -> Result<i64> {
        match self {
            Remote::Ftp(c) => c.mdtm(path).await,
            Remote::Sftp(s) => s.mtime(path).await,
        }
    }

    pub(crate) async fn set_mtime(&mut self, path: &str, unix: i64) -> Result<()> {
        match self {
            Remote::Ftp(c) => c.mfmt(path, unix).await,
            Remote::Sftp(s) => s.set_mtime(path, unix).await,
        }
    }

    pub(crate) async fn mkdir(&mut self, path: &str) -> Result<()> {
        match self {
            Remote::Ftp(c) => c.mkdir(path).await,
            Remote::Sftp(s) => s.mkdir(path).await,
        }
    }

    pub(crate) async fn rmdir(&mut self, path: &str) -> Result<()> {
        match self {
            Remote::Ftp(c) => c.rmdir(path).await,
            Remote::Sftp(s) => s.rmdir(path).await,
        }
    }

    pub(crate) async fn delete(&mut self, path: &str) -> Result<()> {
        match self {
            Remote::Ftp(c) => c.delete(path).await,
            Remote::Sftp(s) => s.remove(path).await,
        }
    }

    pub(crate) async fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        match self {
            Remote::Ftp(c) => c.rename(from, to).await,
            Remote::Sftp(s) => s.rename(from, to).await,
        }
    }

    pub(crate) async fn pwd(&mut self) -> Result<String> {
        match self {
            Remote::Ftp(c) => c.pwd().await,
            Remote::Sftp(s) => s.pwd().await,
        }
    }

    pub(crate) async fn cwd(&mut self, path: &str) -> Result<()> {
        match self {
            Remote::Ftp(c) => c.cwd(path).await,
            Remote::Sftp(s) => s.cd(path).await,
        }
    }

    pub(crate) async fn cdup(&mut self) -> Result<()> {
        match self {
            Remote::Ftp(c) => c.cdup().await,
            Remote::Sftp(s) => s.cd("..").await,
        }
    }

    pub(crate) async fn quit(self) -> Result<()> {
        match self {
            Remote::Ftp(c) => c.quit().await,
            Remote::Sftp(s) => s.quit().await,
        }
    }

    /// The server's checksum of `path`, when it offers one (SFTP version 3 has none).
    pub(crate) async fn remote_checksum(
        &mut self,
        path: &str,
    ) -> Result<Option<(Algorithm, String)>> {
        match self {
            Remote::Ftp(c) => c.remote_checksum(path).await,
            Remote::Sftp(_) => Ok(None),
        }
    }

    /// Download `path` from byte `offset` into `target`, ticking `bar`; the bytes received.
    /// Only a completed transfer returns `Ok` (FTP: the final reply; SFTP: every read
    /// answered and the handle closed).
    pub(crate) async fn download(
        &mut self,
        path: &str,
        offset: u64,
        target: LocalTarget<'_>,
        bar: Option<&indicatif::ProgressBar>,
    ) -> Result<u64> {
        match self {
            Remote::Ftp(c) => {
                let mut down = c.retrieve(path, offset).await?;
                let mut sink = match target.open().await {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = down.abort().await;
                        return Err(e);
                    }
                };
                let copied = copy(&mut down, &mut sink, bar).await;
                match copied {
                    Ok(_) => {}
                    Err(CopyError::Read(e)) => return Err(down.fail(e).await),
                    Err(CopyError::Write(e)) => {
                        let _ = down.abort().await;
                        return Err(Error::local(format!("writing {}", target.label()))(e));
                    }
                }
                let received = down.received();
                down.finish().await?;
                target.finish(sink).await?;
                Ok(received)
            }
            Remote::Sftp(s) => {
                let file = s.open_read(path).await?;
                let mut sink = match target.open().await {
                    Ok(sink) => sink,
                    Err(e) => {
                        let _ = file.close().await;
                        return Err(e);
                    }
                };
                let mut tick = |n: u64| {
                    if let Some(b) = bar {
                        b.inc(n);
                    }
                };
                let received = file
                    .download_to(offset, &mut sink, &mut tick)
                    .await
                    .map_err(|e| relabel(e, &target.label()))?;
                target.finish(sink).await?;
                Ok(received)
            }
        }
    }

    /// Upload `source` (positioned where the upload starts) to `path`, ticking `bar`; the
    /// bytes sent. [`StoreMode::Append`] over SFTP writes from the remote file's size.
    pub(crate) async fn upload<R>(
        &mut self,
        source: &mut R,
        local: &Path,
        path: &str,
        mode: StoreMode,
        bar: Option<&indicatif::ProgressBar>,
    ) -> Result<u64>
    where
        R: AsyncRead + Unpin + Send + ?Sized,
    {
        match self {
            Remote::Ftp(c) => {
                let mut up = c.store(path, mode).await?;
                let sent = match copy(source, &mut up, bar).await {
                    Ok(n) => n,
                    Err(CopyError::Read(e)) => {
                        return Err(Error::local(format!("reading {}", local.display()))(e));
                    }
                    Err(CopyError::Write(e)) => return Err(up.fail(e).await),
                };
                up.finish().await?;
                Ok(sent)
            }
            Remote::Sftp(s) => {
                let start = match mode {
                    StoreMode::Replace => UploadStart::Replace,
                    StoreMode::At(n) => UploadStart::At(n),
                    StoreMode::Append => match s.size(path).await {
                        Ok(n) => UploadStart::At(n),
                        Err(e) if e.is_not_found() => UploadStart::At(0),
                        Err(e) => return Err(e),
                    },
                };
                let mut tick = |n: u64| {
                    if let Some(b) = bar {
                        b.inc(n);
                    }
                };
                s.upload(source, path, start, &mut tick)
                    .await
                    .map_err(|e| relabel(e, &local.display().to_string()))
            }
        }
    }
}
