//! [`TransferLog`]: one line per finished transfer, of every protocol, in the `xferlog`
//! format of wu-ftpd, vsftpd and ProFTPD (xferlog(5)), so that existing analysers read it.
//!
//! ```text
//! Sun Dec  6 20:46:15 2026 1 127.0.0.1 1234 /dir/file b _ o r alice ftp 0 * c
//! ```
//!
//! Fields, separated by single spaces: the local time the transfer ended (`ctime` form, five
//! tokens), whole seconds it took (at least 1, as vsftpd writes), the client's IP address
//! (no name lookup), the bytes moved, the path as the user sees it (beneath their home), `a`
//! (ASCII) or `b` (binary), `_` (no special action), `o` (download) or `i` (upload), `a`
//! (anonymous) or `r` (a configured user), the user name (for anonymous logins, the ID string
//! given as password, as xferlog(5) says), the service (`ftp` for FTP with or without TLS,
//! `sftp`), `0` and `*` (no RFC 931 identity), and `c` (complete) or `i` (incomplete:
//! aborted, failed, or cut off).
//!
//! A client chooses the path and the anonymous ID, so each of their whitespace, control,
//! bidirectional and invisible characters is written as `_` (as ProFTPD and vsftpd do with
//! whitespace): every field is then one token, a line can't be split, forged or made to
//! read differently, and analysers that split on spaces count fields right.
//!
//! Lines are formatted by the caller and handed to a writer thread through a bounded queue:
//! a transfer never waits on the disk. When the queue is full (the disk is that slow), the
//! line is dropped and counted, with a warning, rather than holding the transfer.
//!
//! The writer reopens the file by its path when the path no longer names the file it has
//! open (moved or removed, as `logrotate` does without `copytruncate`), and when asked
//! ([`TransferLog::reopen`], on `SIGHUP`), before it writes its next line.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Lines waiting for the writer thread at most; beyond, lines are dropped and counted.
pub const QUEUE_LINES: usize = 4096;

/// Which way the file went: a download is `o` in the log, an upload `i`.
pub use crate::metrics::Direction;

/// What the log says about a transfer when it starts; the bytes and the outcome come when
/// it ends (see [`Transfer`]).
#[derive(Debug, Clone)]
pub struct TransferInfo {
    /// The client's address.
    pub peer: IpAddr,
    /// The path as the user sees it.
    pub path: String,
    /// An ASCII-mode transfer (FTP `TYPE A`).
    pub ascii: bool,
    /// Download or upload.
    pub direction: Direction,
    /// An anonymous login (access mode `a`).
    pub anonymous: bool,
    /// The user name, or an anonymous login's ID string.
    pub user: String,
    /// `ftp` or `sftp`.
    pub service: &'static str,
}

/// One finished transfer.
#[derive(Debug, Clone)]
pub struct TransferRecord {
    pub info: TransferInfo,
    /// How long it took.
    pub duration: Duration,
    /// Bytes moved over the network.
    pub bytes: u64,
    /// It ended as asked (`c`), rather than aborted or failed (`i`).
    pub completed: bool,
}

enum Message {
    Line(String),
    /// Answered once every line queued before it is written and flushed.
    Flush(mpsc::Sender<()>),
}

struct Sink {
    queue: SyncSender<Message>,
    dropped: AtomicU64,
    /// Set to have the writer reopen the file by its path before its next line.
    reopen: Arc<AtomicBool>,
}

/// The process's transfer log: off until [`open`](TransferLog::open)ed. Cheap to clone; the
/// clones write to the same file.
#[derive(Clone, Default)]
pub struct TransferLog {
    sink: Arc<OnceLock<Sink>>,
}

impl std::fmt::Debug for TransferLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransferLog")
            .field("enabled", &self.is_enabled())
            .finish()
    }
}

impl TransferLog {
    /// A log that writes nothing until opened.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append to `path` (created with mode 0640 if missing) from now on. The file is opened
    /// here, so a path that can't be written is an error at start, not a silent gap. Opened
    /// with `O_APPEND`: several writers, and `logrotate`'s `copytruncate`, are safe.
    pub fn open(&self, path: &Path) -> io::Result<()> {
        let file = open_append(path)?;
        let (queue, lines) = mpsc::sync_channel(QUEUE_LINES);
        let reopen = Arc::new(AtomicBool::new(false));
        let sink = Sink {
            queue,
            dropped: AtomicU64::new(0),
            reopen: Arc::clone(&reopen),
        };
        if self.sink.set(sink).is_err() {
            return Err(io::Error::other("the transfer log is open already"));
        }
        let writer = Writer {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(64 * 1024, file),
            reopen,
            failing: false,
        };
        std::thread::Builder::new()
            .name("ferry-xferlog".to_string())
            .spawn(move || writer.run(lines))?;
        Ok(())
    }

    /// Have the file reopened by its path before the next line (after a rotation: `SIGHUP`).
    pub fn reopen(&self) {
        if let Some(sink) = self.sink.get() {
            sink.reopen.store(true, Ordering::Relaxed);
        }
    }

    /// Whether lines are written.
    pub fn is_enabled(&self) -> bool {
        self.sink.get().is_some()
    }

    /// Lines dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.sink
            .get()
            .map_or(0, |s| s.dropped.load(Ordering::Relaxed))
    }

    /// Log `record`, ending now. Never waits.
    pub fn record(&self, record: &TransferRecord) {
        let Some(sink) = self.sink.get() else {
            return;
        };
        let line = format_line(record, chrono::Local::now());
        match sink.queue.try_send(Message::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let dropped = sink.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // At the first drop, then ever more rarely (a log of the log's trouble must
                // not flood the other one).
                if dropped.is_power_of_two() {
                    tracing::warn!(
                        dropped,
                        "transfer log: the disk is not keeping up; lines dropped"
                    );
                }
            }
            // The writer thread is gone; it said why.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// A transfer starting now, logged when it is [finished](Transfer::finish) or dropped.
    /// Its bytes are read from `counter` (plus `base`, moved before the counter started) when
    /// it ends.
    pub fn start(&self, info: TransferInfo, counter: Arc<AtomicU64>, base: u64) -> Transfer {
        Transfer {
            log: self.clone(),
            info: Some(info),
            started: Instant::now(),
            counter,
            base,
        }
    }

    /// Wait (at most `limit`) until every line logged so far is written and flushed: before
    /// the process exits.
    pub fn flush(&self, limit: Duration) {
        let Some(sink) = self.sink.get() else {
            return;
        };
        let (done, flushed) = mpsc::channel();
        let queue = sink.queue.clone();
        // `send` waits for room in the queue; on its own thread, so `limit` holds even when
        // the disk hangs.
        let sent = std::thread::Builder::new()
            .name("ferry-xferlog-flush".to_string())
            .spawn(move || {
                let _ = queue.send(Message::Flush(done));
            });
        if sent.is_ok() {
            let _ = flushed.recv_timeout(limit);
        }
    }
}

/// A transfer in progress. Dropped without [`finish`](Transfer::finish) (its task aborted,
/// its session gone), it is logged as incomplete with the bytes counted so far.
pub struct Transfer {
    log: TransferLog,
    /// Taken when logged.
    info: Option<TransferInfo>,
    started: Instant,
    counter: Arc<AtomicU64>,
    base: u64,
}

impl std::fmt::Debug for Transfer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transfer")
            .field("info", &self.info)
            .field("bytes", &self.bytes())
            .finish_non_exhaustive()
    }
}

impl Transfer {
    /// Where the bytes moved are counted.
    pub fn counter(&self) -> &Arc<AtomicU64> {
        &self.counter
    }

    /// Bytes moved so far.
    pub fn bytes(&self) -> u64 {
        self.base
            .saturating_add(self.counter.load(Ordering::Relaxed))
    }

    /// The transfer ended, `completed` or not, having moved what its counter says.
    pub fn finish(mut self, completed: bool) {
        let bytes = self.bytes();
        self.log_once(bytes, completed);
    }

    /// The transfer ended having moved `bytes` (when the mover knows better than the counter).
    pub fn finish_with(mut self, bytes: u64, completed: bool) {
        self.log_once(bytes, completed);
    }

    fn log_once(&mut self, bytes: u64, completed: bool) {
        if let Some(info) = self.info.take() {
            self.log.record(&TransferRecord {
                info,
                duration: self.started.elapsed(),
                bytes,
                completed,
            });
        }
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        let bytes = self.bytes();
        self.log_once(bytes, false);
    }
}

/// `path` opened for appending, created with mode 0640 if missing.
fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

/// The writer thread's state.
struct Writer {
    path: PathBuf,
    out: BufWriter<File>,
    reopen: Arc<AtomicBool>,
    /// The last write failed (so the next failure is not logged again).
    failing: bool,
}

impl Writer {
    /// Lines as they come, flushed whenever the queue is empty.
    fn run(mut self, lines: Receiver<Message>) {
        while let Ok(first) = lines.recv() {
            self.reopen_if_moved();
            let mut next = Some(first);
            let mut waiting = Vec::new();
            while let Some(message) = next {
                match message {
                    Message::Line(line) => {
                        let r = self.out.write_all(line.as_bytes());
                        self.report(r);
                    }
                    Message::Flush(done) => waiting.push(done),
                }
                next = lines.try_recv().ok();
            }
            let r = self.out.flush();
            self.report(r);
            for done in waiting {
                let _ = done.send(());
            }
        }
    }

    /// Once per run of failures (a full disk fails every write).
    fn report(&mut self, result: io::Result<()>) {
        match result {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                self.failing = true;
                tracing::error!(error = %e, path = %self.path.display(), "transfer log: cannot write");
            }
            Err(_) => {}
        }
    }

    /// Reopen the file by its path when asked, or when the path names another file or none
    /// (rotated away). One `stat` per batch of lines.
    fn reopen_if_moved(&mut self) {
        use std::os::unix::fs::MetadataExt;
        let asked = self.reopen.swap(false, Ordering::Relaxed);
        let moved = || {
            let (Ok(named), Ok(open)) =
                (std::fs::metadata(&self.path), self.out.get_ref().metadata())
            else {
                return true;
            };
            (named.dev(), named.ino()) != (open.dev(), open.ino())
        };
        if !asked && !moved() {
            return;
        }
        let r = self.out.flush();
        self.report(r);
        match open_append(&self.path) {
            Ok(file) => {
                self.out = BufWriter::with_capacity(64 * 1024, file);
                tracing::info!(path = %self.path.display(), "transfer log reopened");
            }
            // Lines go on to the old file until the path can be opened.
            Err(e) => self.report(Err(e)),
        }
    }
}

/// One xferlog(5) line (with its newline) for `record`, ended at `now`.
pub fn format_line<Tz: chrono::TimeZone>(
    record: &TransferRecord,
    now: chrono::DateTime<Tz>,
) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let info = &record.info;
    // Whole seconds, rounded up, at least 1 (vsftpd never writes 0: analysers divide by it).
    let secs = record
        .duration
        .as_secs()
        .saturating_add(u64::from(record.duration.subsec_nanos() > 0))
        .max(1);
    format!(
        "{} {} {} {} {} {} _ {} {} {} {} 0 * {}\n",
        now.format("%a %b %e %H:%M:%S %Y"),
        secs,
        info.peer.to_canonical(),
        record.bytes,
        token(&info.path),
        if info.ascii { 'a' } else { 'b' },
        match info.direction {
            Direction::Download => 'o',
            Direction::Upload => 'i',
        },
        if info.anonymous { 'a' } else { 'r' },
        token(&info.user),
        info.service,
        if record.completed { 'c' } else { 'i' },
    )
}

/// `text` as one field: whitespace, control, bidirectional and invisible characters become
/// `_`; an empty text is `*`.
fn token(text: &str) -> String {
    if text.is_empty() {
        return "*".to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_whitespace() || ferry_proto::text::is_hidden(c) {
                '_'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn record(path: &str, duration: Duration) -> TransferRecord {
        TransferRecord {
            info: TransferInfo {
                peer: "::ffff:127.0.0.1".parse().unwrap(),
                path: path.to_string(),
                ascii: false,
                direction: Direction::Download,
                anonymous: false,
                user: "alice".to_string(),
                service: "ftp",
            },
            duration,
            bytes: 1234,
            completed: true,
        }
    }

    #[test]
    fn a_line_has_the_fields_of_xferlog_5() {
        let at = chrono::Utc
            .with_ymd_and_hms(2026, 12, 6, 20, 46, 15)
            .unwrap();
        let line = format_line(&record("/dir/file", Duration::from_millis(300)), at);
        assert_eq!(
            line,
            "Sun Dec  6 20:46:15 2026 1 127.0.0.1 1234 /dir/file b _ o r alice ftp 0 * c\n"
        );
        let mut r = record("/f", Duration::from_millis(2001));
        r.info.ascii = true;
        r.info.direction = Direction::Upload;
        r.info.anonymous = true;
        r.info.service = "sftp";
        r.completed = false;
        let at = chrono::Utc.with_ymd_and_hms(2027, 1, 13, 9, 5, 0).unwrap();
        assert_eq!(
            format_line(&r, at),
            "Wed Jan 13 09:05:00 2027 3 127.0.0.1 1234 /f a _ i a alice sftp 0 * i\n"
        );
    }

    #[test]
    fn client_chosen_text_stays_one_token() {
        let at = chrono::Utc
            .with_ymd_and_hms(2026, 12, 6, 20, 46, 15)
            .unwrap();
        let mut r = record("/a b\tc\r\nd\u{202e}e\u{200b}f\u{85}g", Duration::ZERO);
        r.info.user = String::new();
        let line = format_line(&r, at);
        assert_eq!(
            line,
            "Sun Dec  6 20:46:15 2026 1 127.0.0.1 1234 /a_b_c__d_e_f_g b _ o r * ftp 0 * c\n"
        );
        assert_eq!(line.matches('\n').count(), 1);
    }

    #[test]
    fn lines_reach_the_file_and_a_dropped_transfer_is_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("xferlog");
        let log = TransferLog::new();
        log.open(&path).unwrap();
        assert!(log.open(&path).is_err(), "opened once");
        let info = record("/f", Duration::ZERO).info;
        let counter = Arc::new(AtomicU64::new(0));
        let done = log.start(info.clone(), Arc::clone(&counter), 10);
        counter.store(5, Ordering::Relaxed);
        done.finish(true);
        let cut = log.start(info, Arc::new(AtomicU64::new(7)), 0);
        drop(cut);
        log.flush(Duration::from_secs(10));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].ends_with(" 15 /f b _ o r alice ftp 0 * c"),
            "{text}"
        );
        assert!(
            lines[1].ends_with(" 7 /f b _ o r alice ftp 0 * i"),
            "{text}"
        );
    }

    #[test]
    fn a_rotated_file_is_reopened_by_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("xferlog");
        let log = TransferLog::new();
        log.open(&path).unwrap();
        let line = |name: &str| {
            log.start(record(name, Duration::ZERO).info, Arc::default(), 0)
                .finish(true);
            log.flush(Duration::from_secs(10));
        };
        line("/one");
        std::fs::rename(&path, dir.path().join("xferlog.1")).unwrap();
        line("/two");
        // Asked to (SIGHUP), with the path unchanged: the same file, reopened.
        log.reopen();
        line("/three");
        let old = std::fs::read_to_string(dir.path().join("xferlog.1")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(old.lines().count(), 1, "{old}");
        assert!(old.contains(" /one "), "{old}");
        assert_eq!(new.lines().count(), 2, "{new}");
        assert!(new.contains(" /two ") && new.contains(" /three "), "{new}");
    }

    #[test]
    fn a_stuck_disk_drops_lines_and_never_holds_a_transfer() {
        // A pipe nobody reads stands for a disk that has stopped: the writer thread blocks on
        // it once the pipe is full, and the queue behind it fills.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("stuck");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !made.is_ok_and(|s| s.success()) {
            eprintln!("skipped: mkfifo is not available");
            return;
        }
        let (release, released) = mpsc::channel::<()>();
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                let mut pipe = File::open(fifo).unwrap();
                let _ = released.recv();
                let _ = io::copy(&mut pipe, &mut io::sink());
            })
        };
        let log = TransferLog::new();
        log.open(&fifo).unwrap();
        let info = record(&"x".repeat(200), Duration::ZERO).info;
        let lines = QUEUE_LINES * 4;
        // Run where a transfer would: if logging ever waited on the disk, this never ends.
        let (done, finished) = mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for _ in 0..lines {
                    log.start(info.clone(), Arc::default(), 0).finish(true);
                }
                let _ = done.send(());
            });
        }
        assert!(
            finished.recv_timeout(Duration::from_secs(60)).is_ok(),
            "logging waited for the disk"
        );
        assert!(log.dropped() > 0, "nothing dropped of {lines} lines");
        assert!(log.dropped() < lines as u64, "everything dropped");
        // Let the writer go (the reader drains the pipe until the writer closes it).
        drop(release);
        drop(reader);
    }

    #[test]
    fn an_unopened_log_writes_nothing() {
        let log = TransferLog::new();
        assert!(!log.is_enabled());
        log.start(record("/f", Duration::ZERO).info, Arc::default(), 0)
            .finish(true);
        log.flush(Duration::from_secs(1));
        assert_eq!(log.dropped(), 0);
    }
}
