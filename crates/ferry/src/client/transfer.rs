//! `get`, `put` and `cat`: streaming copies with progress, a size check after each transfer,
//! optional server-side checksums, and reconnect-and-resume for `-c`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_client::checksum::Algorithm;
use ferry_client::{Error, StoreMode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};

use super::remote::{LocalTarget, Remote};
use super::url::{RemoteUrl, join};
use super::{Connector, Result, Ui};

/// How many times `-c` reconnects after a network failure.
const RESUME_ATTEMPTS: u32 = 3;

/// Which side of a copy failed.
pub(crate) enum CopyError {
    Read(std::io::Error),
    Write(std::io::Error),
}

/// Copy `r` to `w`, ticking the bar and feeding the hasher.
pub(crate) async fn copy<R, W>(
    r: &mut R,
    w: &mut W,
    bar: Option<&indicatif::ProgressBar>,
) -> std::result::Result<u64, CopyError>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                // A tokio file may still be writing the last chunk in the background: finish
                // it, so that `get -c` resumes from a length that holds everything received.
                let _ = w.flush().await;
                return Err(CopyError::Read(e));
            }
        };
        if n == 0 {
            break;
        }
        w.write_all(&buf[..n]).await.map_err(CopyError::Write)?;
        total += n as u64;
        if let Some(b) = bar {
            b.inc(n as u64);
        }
    }
    w.flush().await.map_err(CopyError::Write)?;
    Ok(total)
}

/// Repeat `once` while it fails on the network and `resume` is set, reconnecting each time;
/// and once after a `522` (data connection refused for not reusing the TLS session).
async fn with_resume<F>(conn: &Connector, resume: bool, ui: Ui, mut once: F) -> Result<()>
where
    F: for<'a> FnMut(&'a mut Remote) -> super::BoxFut<'a>,
{
    let mut attempt = 0;
    let mut retried_reuse = false;
    loop {
        let result = match conn.open().await {
            Ok(mut c) => {
                let r = once(&mut c).await;
                if r.is_ok() {
                    let _ = c.quit().await;
                }
                r
            }
            Err(e) => Err(e),
        };
        match result {
            // The server refused a data connection that did not resume the control
            // connection's TLS session: once, try again on a fresh session.
            Err(e) if e.reply_code() == Some(522) && !retried_reuse => {
                retried_reuse = true;
                ui.note(&format!(
                    "{e}; reconnecting to retry on a fresh TLS session"
                ));
            }
            Err(e) if resume && (e.is_network() || matches!(e, Error::Partial(_))) => {
                attempt += 1;
                if attempt > RESUME_ATTEMPTS {
                    return Err(e);
                }
                ui.note(&format!(
                    "{e}; reconnecting to resume ({attempt}/{RESUME_ATTEMPTS})"
                ));
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
            }
            other => return other,
        }
    }
}

pub(crate) async fn get(
    conn: &Connector,
    url: &RemoteUrl,
    output: Option<PathBuf>,
    resume: bool,
    verify: bool,
    ui: Ui,
) -> Result<()> {
    let name = url.file_name();
    if name.is_empty() {
        return Err(Error::Usage(
            "the URL names a directory: use ls or mirror".into(),
        ));
    }
    let local = output.unwrap_or_else(|| PathBuf::from(name));
    if local == Path::new("-") {
        return cat(conn, url).await;
    }
    let path = url.path.clone();
    with_resume(conn, resume, ui, |c| {
        let path = path.clone();
        let local = local.clone();
        Box::pin(async move { get_once(c, &path, &local, resume, verify, ui).await })
    })
    .await
}

async fn get_once(
    c: &mut Remote,
    path: &str,
    local: &Path,
    resume: bool,
    verify: bool,
    ui: Ui,
) -> Result<()> {
    let remote_size = c.size(path).await.ok();
    let offset = if resume {
        tokio::fs::metadata(local).await.map_or(0, |m| m.len())
    } else {
        0
    };
    if let Some(size) = remote_size {
        if resume && offset == size {
            ui.note(&format!("{} is complete already", local.display()));
            return check(c, path, local, verify, ui).await;
        }
        if resume && offset > size {
            return Err(Error::Usage(format!(
                "{} ({offset} bytes) is larger than the remote file ({size} bytes): not resuming",
                local.display()
            )));
        }
    }
    let target = if offset > 0 {
        LocalTarget::Append(local)
    } else {
        LocalTarget::Create(local)
    };
    let bar = ui.bar(remote_size, path.rsplit('/').next().unwrap_or(path));
    if let Some(b) = &bar {
        b.set_position(offset);
    }
    let received = c.download(path, offset, target, bar.as_ref()).await;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let total = offset + received?;
    if let Some(size) = remote_size
        && total != size
    {
        return Err(Error::Partial(format!(
            "{path}: got {total} bytes, the server said {size}"
        )));
    }
    check(c, path, local, verify, ui).await
}

/// Compare the server's checksum of `path` with the local file's, when asked.
async fn check(c: &mut Remote, path: &str, local: &Path, verify: bool, ui: Ui) -> Result<()> {
    if !verify {
        return Ok(());
    }
    match c.remote_checksum(path).await? {
        None => {
            // Said even with -q: the user asked for verification and did not get it.
            if c.is_sftp() {
                eprintln!(
                    "ferry: could not verify {}: SFTP version 3 has no checksum request",
                    super::printable(path)
                );
            } else {
                eprintln!(
                    "ferry: could not verify {}: the server offers no HASH, XSHA256, XSHA512 or \
                     XMD5",
                    super::printable(path)
                );
            }
            Ok(())
        }
        Some((algo, remote)) => {
            let mine = local_checksum(local, algo).await?;
            if mine == remote {
                ui.note(&format!("{path}: {} ok ({mine})", algo.hash_name()));
                Ok(())
            } else {
                Err(Error::Partial(format!(
                    "{path}: {} mismatch: server {remote}, local {mine}",
                    algo.hash_name()
                )))
            }
        }
    }
}

pub(crate) async fn local_checksum(local: &Path, algo: Algorithm) -> Result<String> {
    let mut file = tokio::fs::File::open(local)
        .await
        .map_err(Error::local(format!("reading {}", local.display())))?;
    let mut h = algo.hasher();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .await
            .map_err(Error::local(format!("reading {}", local.display())))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.hex())
}

pub(crate) async fn cat(conn: &Connector, url: &RemoteUrl) -> Result<()> {
    let mut c = conn.open().await?;
    let remote_size = c.size(&url.path).await.ok();
    let received = match c.download(&url.path, 0, LocalTarget::Stdout, None).await {
        Ok(n) => n,
        // A closed pipe (`ferry cat ... | head`) is the reader's choice, not an error.
        Err(Error::Local { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => {
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    if let Some(size) = remote_size
        && received != size
    {
        return Err(Error::Partial(format!(
            "{}: got {received} bytes, the server said {size}",
            url.path
        )));
    }
    c.quit().await
}

/// The remote path for uploading `local` to `url`: a URL ending in `/` (or with no path)
/// names a directory and keeps the file's name.
pub(crate) fn upload_target(local: &Path, url: &RemoteUrl) -> Result<String> {
    if url.path.is_empty() || url.path.ends_with('/') {
        let name = local
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::Usage(format!("{}: no usable file name", local.display())))?;
        Ok(join(&url.path, name))
    } else {
        Ok(url.path.clone())
    }
}

pub(crate) async fn put(
    conn: &Connector,
    local: &Path,
    url: &RemoteUrl,
    resume: bool,
    append: bool,
    verify: bool,
    ui: Ui,
) -> Result<()> {
    let meta = std::fs::metadata(local).map_err(Error::local(format!("{}", local.display())))?;
    if !meta.is_file() {
        return Err(Error::Usage(format!(
            "{} is not a file (use mirror --reverse for directories)",
            local.display()
        )));
    }
    let target = upload_target(local, url)?;
    let len = meta.len();
    with_resume(conn, resume, ui, |c| {
        let target = target.clone();
        let local = local.to_path_buf();
        Box::pin(async move { put_once(c, &local, &target, len, resume, append, verify, ui).await })
    })
    .await
}

#[allow(clippy::too_many_arguments)]
async fn put_once(
    c: &mut Remote,
    local: &Path,
    target: &str,
    len: u64,
    resume: bool,
    append: bool,
    verify: bool,
    ui: Ui,
) -> Result<()> {
    // What the server has before we start: resume point, or base of an append.
    let before = if resume || append {
        match c.size(target).await {
            Ok(s) => s,
            Err(e) if e.is_refusal() => 0,
            Err(e) => return Err(e),
        }
    } else {
        0
    };
    let (mode, skip) = if append {
        (StoreMode::Append, 0)
    } else if resume && before > 0 {
        if before == len {
            ui.note(&format!("{target} is complete already"));
            return check(c, target, local, verify, ui).await;
        }
        if before > len {
            return Err(Error::Usage(format!(
                "the remote file ({before} bytes) is larger than {} ({len} bytes): not resuming",
                local.display()
            )));
        }
        (StoreMode::Append, before)
    } else {
        (StoreMode::Replace, 0)
    };
    let mut file = tokio::fs::File::open(local)
        .await
        .map_err(Error::local(format!("reading {}", local.display())))?;
    if skip > 0 {
        file.seek(std::io::SeekFrom::Start(skip))
            .await
            .map_err(Error::local(format!("reading {}", local.display())))?;
    }
    let bar = ui.bar(Some(len), target.rsplit('/').next().unwrap_or(target));
    if let Some(b) = &bar {
        b.set_position(skip);
    }
    let sent = c.upload(&mut file, local, target, mode, bar.as_ref()).await;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    sent?;
    let expected = if append { before + len } else { len };
    match c.size(target).await {
        Ok(size) if size != expected => {
            return Err(Error::Partial(format!(
                "{target}: the server has {size} bytes, expected {expected}"
            )));
        }
        Ok(_) => {}
        // No SIZE: nothing to compare.
        Err(e) if e.is_refusal() => {}
        Err(e) => return Err(e),
    }
    if verify && append {
        eprintln!(
            "ferry: could not verify {}: an append can't be compared with the local file",
            super::printable(target)
        );
        return Ok(());
    }
    check(c, target, local, verify, ui).await
}
