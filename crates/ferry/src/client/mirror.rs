//! `mirror`: copy the contents of a directory tree into another, in either direction, only
//! the files whose size or modification time differ, over one or more connections.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_client::{EntryKind, Error, ParsedEntry, StoreMode};

use super::remote::{LocalTarget, Remote};
use super::url::join;
use super::{Connector, Result, Ui};

/// Options of a mirror run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MirrorOpts {
    pub(crate) delete: bool,
    pub(crate) parallel: usize,
    pub(crate) ui: Ui,
}

/// One file to copy.
#[derive(Debug)]
enum Job {
    Download {
        remote: String,
        local: PathBuf,
        size: Option<u64>,
        /// Precise remote modification time, when the listing gave one.
        mtime: Option<i64>,
    },
    Upload {
        local: PathBuf,
        remote: String,
        size: u64,
        mtime: Option<i64>,
    },
}

impl Job {
    fn size(&self) -> u64 {
        match self {
            Job::Download { size, .. } => size.unwrap_or(0),
            Job::Upload { size, .. } => *size,
        }
    }
    fn name(&self) -> &str {
        match self {
            Job::Download { remote, .. } | Job::Upload { remote, .. } => remote,
        }
    }
}

/// A name a listing may give that is safe to use as one local path component.
fn safe_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

fn mtime_of(meta: &std::fs::Metadata) -> Option<i64> {
    let t = meta.modified().ok()?;
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).ok()?,
        Err(e) => -i64::try_from(e.duration().as_secs()).ok()?,
    };
    Some(secs)
}

fn system_time(unix: i64) -> SystemTime {
    if unix >= 0 {
        UNIX_EPOCH + Duration::from_secs(unix.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(unix.unsigned_abs())
    }
}

/// Times from a `LIST` line are to the minute (recent) or the day (older): equal within that.
fn coarse_equal(local: i64, listed: i64) -> bool {
    let window = if listed % 86_400 == 0 { 86_400 } else { 60 };
    (listed..listed + window).contains(&local)
}

/// Totals for the closing line.
#[derive(Debug, Default)]
struct Tally {
    copied: usize,
    bytes: u64,
    unchanged: usize,
    deleted: usize,
    failed: usize,
}

/// Remote tree → local directory.
pub(crate) async fn download(
    conn: &Connector,
    remote_base: &str,
    local_base: PathBuf,
    opts: MirrorOpts,
) -> Result<()> {
    let mut c = conn.open().await?;
    let precise = c.precise_times();
    let has_mdtm = c.has_mdtm();
    let mut tally = Tally::default();
    let mut jobs = Vec::new();
    let mut stack = vec![(remote_base.to_string(), local_base.clone())];
    while let Some((rdir, ldir)) = stack.pop() {
        let entries = c.list((!rdir.is_empty()).then_some(rdir.as_str())).await?;
        std::fs::create_dir_all(&ldir)
            .map_err(Error::local(format!("creating {}", ldir.display())))?;
        let mut names = HashSet::new();
        for e in entries {
            if !safe_name(&e.name) {
                opts.ui.note(&format!("skipped unsafe name {:?}", e.name));
                continue;
            }
            let rpath = join(&rdir, &e.name);
            let lpath = ldir.join(&e.name);
            match e.kind {
                EntryKind::Dir => {
                    names.insert(e.name.clone());
                    stack.push((rpath, lpath));
                }
                EntryKind::File => {
                    names.insert(e.name.clone());
                    if download_needed(&mut c, &e, &rpath, &lpath, precise, has_mdtm).await? {
                        jobs.push(Job::Download {
                            remote: rpath,
                            local: lpath,
                            size: e.size,
                            mtime: if precise { e.mtime } else { None },
                        });
                    } else {
                        tally.unchanged += 1;
                    }
                }
                EntryKind::Symlink | EntryKind::Other => {
                    names.insert(e.name.clone());
                    opts.ui
                        .note(&format!("skipped {rpath} (not a file or directory)"));
                }
            }
        }
        if opts.delete {
            delete_local_extras(&ldir, &names, &mut tally, opts.ui)?;
        }
    }
    run_jobs(conn, c, jobs, opts, &mut tally).await
}

async fn download_needed(
    c: &mut Remote,
    e: &ParsedEntry,
    rpath: &str,
    lpath: &Path,
    precise: bool,
    has_mdtm: bool,
) -> Result<bool> {
    let Ok(meta) = std::fs::metadata(lpath) else {
        return Ok(true);
    };
    if !meta.is_file() || e.size.is_some_and(|s| s != meta.len()) {
        return Ok(true);
    }
    let Some(local) = mtime_of(&meta) else {
        return Ok(true);
    };
    if precise {
        return Ok(e.mtime.is_some_and(|t| t != local));
    }
    if has_mdtm && let Ok(t) = c.mdtm(rpath).await {
        return Ok(t != local);
    }
    Ok(e.mtime.is_some_and(|t| !coarse_equal(local, t)))
}

fn delete_local_extras(
    dir: &Path,
    keep: &HashSet<String>,
    tally: &mut Tally,
    ui: Ui,
) -> Result<()> {
    let read =
        std::fs::read_dir(dir).map_err(Error::local(format!("reading {}", dir.display())))?;
    for entry in read.flatten() {
        let name = entry.file_name();
        if name.to_str().is_some_and(|n| keep.contains(n)) {
            continue;
        }
        let path = entry.path();
        let result = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        result.map_err(Error::local(format!("deleting {}", path.display())))?;
        ui.note(&format!("deleted {}", path.display()));
        tally.deleted += 1;
    }
    Ok(())
}

/// Local directory → remote tree.
pub(crate) async fn upload(
    conn: &Connector,
    local_base: PathBuf,
    remote_base: &str,
    opts: MirrorOpts,
) -> Result<()> {
    if !local_base.is_dir() {
        return Err(Error::Usage(format!(
            "{} is not a directory",
            local_base.display()
        )));
    }
    let mut c = conn.open().await?;
    let precise = c.precise_times();
    let has_mdtm = c.has_mdtm();
    let has_mfmt = c.can_set_mtime();
    if !remote_base.is_empty() {
        super::mkdir_parents(&mut c, remote_base).await?;
    }
    let mut tally = Tally::default();
    let mut jobs = Vec::new();
    let mut stack = vec![(local_base, remote_base.to_string())];
    while let Some((ldir, rdir)) = stack.pop() {
        let remote: HashMap<String, ParsedEntry> = c
            .list((!rdir.is_empty()).then_some(rdir.as_str()))
            .await?
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect();
        let read = std::fs::read_dir(&ldir)
            .map_err(Error::local(format!("reading {}", ldir.display())))?;
        let mut local_names = HashSet::new();
        let mut entries: Vec<_> = read.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                opts.ui.note(&format!(
                    "skipped {} (name is not UTF-8)",
                    entry.path().display()
                ));
                continue;
            };
            if !safe_name(&name) {
                continue;
            }
            let path = entry.path();
            let Ok(meta) = std::fs::metadata(&path) else {
                opts.ui
                    .note(&format!("skipped {} (unreadable)", path.display()));
                continue;
            };
            let rpath = join(&rdir, &name);
            local_names.insert(name.clone());
            let there = remote.get(&name);
            if meta.is_dir() {
                if !there.is_some_and(|r| r.kind == EntryKind::Dir) {
                    c.mkdir(&rpath).await?;
                }
                stack.push((path, rpath));
            } else if meta.is_file() {
                let lm = mtime_of(&meta);
                let needed = match there {
                    None => true,
                    Some(r) if r.kind == EntryKind::Dir => {
                        opts.ui
                            .note(&format!("skipped {rpath}: a directory on the server"));
                        tally.failed += 1;
                        continue;
                    }
                    Some(r) if r.size.is_some_and(|s| s != meta.len()) => true,
                    Some(r) => {
                        let rm = if precise {
                            r.mtime
                        } else if has_mdtm {
                            c.mdtm(&rpath).await.ok()
                        } else {
                            r.mtime
                        };
                        match (rm, lm) {
                            (Some(rt), Some(lt)) if has_mfmt && precise => rt != lt,
                            (Some(rt), Some(lt)) if has_mfmt => rt != lt,
                            // Without MFMT the server's time is the upload's: newer is fine.
                            (Some(rt), Some(lt)) => rt < lt,
                            _ => false,
                        }
                    }
                };
                if needed {
                    jobs.push(Job::Upload {
                        local: path,
                        remote: rpath,
                        size: meta.len(),
                        mtime: if has_mfmt { lm } else { None },
                    });
                } else {
                    tally.unchanged += 1;
                }
            }
        }
        if opts.delete {
            for (name, e) in &remote {
                if local_names.contains(name) || !safe_name(name) {
                    continue;
                }
                let rpath = join(&rdir, name);
                if e.kind == EntryKind::Dir {
                    remove_remote_tree(&mut c, &rpath).await?;
                } else {
                    c.delete(&rpath).await?;
                }
                opts.ui.note(&format!("deleted {rpath}"));
                tally.deleted += 1;
            }
        }
    }
    run_jobs(conn, c, jobs, opts, &mut tally).await
}

/// Delete a remote directory and everything in it.
async fn remove_remote_tree(c: &mut Remote, path: &str) -> Result<()> {
    let mut dirs = vec![path.to_string()];
    let mut order = Vec::new();
    while let Some(dir) = dirs.pop() {
        for e in c.list(Some(&dir)).await? {
            if !safe_name(&e.name) {
                continue;
            }
            let p = join(&dir, &e.name);
            if e.kind == EntryKind::Dir {
                dirs.push(p);
            } else {
                c.delete(&p).await?;
            }
        }
        order.push(dir);
    }
    for dir in order.iter().rev() {
        c.rmdir(dir).await?;
    }
    Ok(())
}

/// Run the jobs over up to `opts.parallel` connections (the first is `first`).
async fn run_jobs(
    conn: &Connector,
    first: Remote,
    jobs: Vec<Job>,
    opts: MirrorOpts,
    tally: &mut Tally,
) -> Result<()> {
    let total: u64 = jobs.iter().map(Job::size).sum();
    let bar = opts.ui.bar(Some(total), "mirror");
    let workers = opts.parallel.min(jobs.len()).max(1);
    let queue = Arc::new(Mutex::new(jobs.into_iter().collect::<VecDeque<_>>()));
    let errors: Arc<Mutex<Vec<Error>>> = Arc::default();
    let done = Arc::new(Mutex::new((0usize, 0u64)));
    let mut set = tokio::task::JoinSet::new();
    let mut first = Some(first);
    for _ in 0..workers {
        let client = first.take();
        let conn = conn.clone();
        let queue = queue.clone();
        let errors = errors.clone();
        let done = done.clone();
        let bar = bar.clone();
        let ui = opts.ui;
        set.spawn(async move {
            let mut client = match client {
                Some(c) => c,
                None => match conn.open().await {
                    Ok(c) => c,
                    Err(e) => {
                        // The other connections carry on with the queue.
                        ui.note(&format!("extra connection failed: {e}"));
                        return;
                    }
                },
            };
            loop {
                let job = queue.lock().ok().and_then(|mut q| q.pop_front());
                let Some(job) = job else { break };
                let mut result = run_job(&mut client, &job, bar.as_ref()).await;
                if matches!(&result, Err(e) if e.reply_code() == Some(522)) {
                    // The data connection did not resume the TLS session: once, on a fresh
                    // session.
                    if let Ok(c) = conn.open().await {
                        client = c;
                        result = run_job(&mut client, &job, bar.as_ref()).await;
                    }
                }
                match result {
                    Ok(bytes) => {
                        if let Ok(mut d) = done.lock() {
                            d.0 += 1;
                            d.1 += bytes;
                        }
                    }
                    Err(e) => {
                        ui.note(&format!("failed: {}: {e}", job.name()));
                        let fatal = e.is_network();
                        if let Ok(mut errs) = errors.lock() {
                            errs.push(e);
                        }
                        if fatal {
                            // This connection is gone: reconnect for the next job.
                            match conn.open().await {
                                Ok(c) => client = c,
                                Err(_) => return,
                            }
                        }
                    }
                }
            }
            let _ = client.quit().await;
        });
    }
    while set.join_next().await.is_some() {}
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let left = queue.lock().map(|q| q.len()).unwrap_or(0);
    if let Ok(d) = done.lock() {
        tally.copied = d.0;
        tally.bytes = d.1;
    }
    let mut errors = errors
        .lock()
        .map(|mut e| std::mem::take(&mut *e))
        .unwrap_or_default();
    tally.failed += errors.len() + left;
    opts.ui.note(&format!(
        "mirror: {} copied ({} bytes), {} unchanged, {} deleted, {} failed",
        tally.copied, tally.bytes, tally.unchanged, tally.deleted, tally.failed
    ));
    if !errors.is_empty() {
        return Err(errors.remove(0));
    }
    if left > 0 {
        return Err(Error::Closed);
    }
    Ok(())
}

async fn run_job(c: &mut Remote, job: &Job, bar: Option<&indicatif::ProgressBar>) -> Result<u64> {
    match job {
        Job::Download {
            remote,
            local,
            size,
            mtime,
        } => {
            let name = local
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let part = local.with_file_name(format!(".{name}.ferry-part"));
            let got = match c.download(remote, 0, LocalTarget::Create(&part), bar).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = std::fs::remove_file(&part);
                    return Err(e);
                }
            };
            if let Some(s) = size
                && *s != got
            {
                let _ = std::fs::remove_file(&part);
                return Err(Error::Partial(format!(
                    "{remote}: got {got} bytes, the listing said {s}"
                )));
            }
            let when = match mtime {
                Some(t) => Some(*t),
                None if c.has_mdtm() => c.mdtm(remote).await.ok(),
                None => None,
            };
            if let Some(t) = when {
                let f = std::fs::File::options()
                    .write(true)
                    .open(&part)
                    .map_err(Error::local(format!("opening {}", part.display())))?;
                f.set_modified(system_time(t))
                    .map_err(Error::local(format!(
                        "setting the time of {}",
                        part.display()
                    )))?;
            }
            std::fs::rename(&part, local)
                .map_err(Error::local(format!("renaming to {}", local.display())))?;
            Ok(got)
        }
        Job::Upload {
            local,
            remote,
            size,
            mtime,
        } => {
            let mut file = tokio::fs::File::open(local)
                .await
                .map_err(Error::local(format!("reading {}", local.display())))?;
            let sent = c
                .upload(&mut file, local, remote, StoreMode::Replace, bar)
                .await?;
            if sent != *size {
                return Err(Error::Partial(format!(
                    "{}: sent {sent} bytes, the file had {size}",
                    local.display()
                )));
            }
            match c.size(remote).await {
                Ok(s) if s != sent => {
                    return Err(Error::Partial(format!(
                        "{remote}: the server has {s} bytes, sent {sent}"
                    )));
                }
                _ => {}
            }
            if let Some(t) = mtime {
                c.set_mtime(remote, *t).await?;
            }
            Ok(sent)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_times() {
        assert!(safe_name("a.txt"));
        for bad in ["", ".", "..", "a/b", "a\\b"] {
            assert!(!safe_name(bad), "{bad}");
        }
        assert!(coarse_equal(120, 120));
        assert!(coarse_equal(179, 120));
        assert!(!coarse_equal(180, 120));
        assert!(coarse_equal(86_400 + 5000, 86_400));
        assert_eq!(system_time(10), UNIX_EPOCH + Duration::from_secs(10));
    }
}
