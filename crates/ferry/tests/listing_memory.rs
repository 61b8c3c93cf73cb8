//! Listings that clients never read cost the server bounded memory: many sessions list one
//! large directory of long names over data connections they do not read, and the resident
//! memory of the `ferry serve` process must stay within a bound, and come back down once the
//! sessions have ended.
//!
//! `FERRY_LISTING_MEMORY="SESSIONS ENTRIES"` changes the load (CI: 40 sessions, 20,000
//! entries) and then only prints the figures; `FERRY_BIN` runs another build of the server.
//! The figures in docs/security.md come from
//! `FERRY_LISTING_MEMORY="120 100000" cargo test --release -p ferry --test listing_memory -- --nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::TcpStream;

const PASSWORD: &str = "listing-memory-pw";
/// Growth allowed over the idle server, with the CI load (~240 MB when every unread listing
/// holds its own copy of the directory).
const BOUND_MIB: u64 = 64;
const WAIT: Duration = Duration::from_secs(60);

/// A `ferry serve` child, killed (by PID, through `Child::kill`) when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("no VmRSS");
    kib as f64 / 1024.0
}

/// The resident memory once it has stopped moving (two samples 500 ms apart within 1 MiB).
async fn settled_rss(pid: u32) -> f64 {
    let until = Instant::now() + WAIT;
    let mut last = rss_mib(pid);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = rss_mib(pid);
        if (now - last).abs() < 1.0 || Instant::now() > until {
            return now;
        }
        last = now;
    }
}

struct Ctrl {
    reader: AsyncBufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Ctrl {
    async fn connect(addr: SocketAddr) -> Ctrl {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .unwrap()
            .unwrap();
        let (r, w) = stream.into_split();
        let mut c = Ctrl {
            reader: AsyncBufReader::new(r),
            writer: w,
        };
        assert!(c.reply().await.starts_with("220"));
        c
    }

    /// The last line of the next reply.
    async fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(WAIT, self.reader.read_line(&mut line))
                .await
                .expect("no reply in time")
                .unwrap();
            assert!(n > 0, "control connection closed");
            let b = line.as_bytes();
            if b.len() >= 4 && b[..3].iter().all(u8::is_ascii_digit) && b[3] == b' ' {
                return line;
            }
        }
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        self.reply().await
    }
}

/// Log in, start `MLSD big` over a data connection with a tiny receive window, and read none
/// of it. Returns what must stay open.
async fn unread_listing(addr: SocketAddr) -> (Ctrl, TcpStream) {
    let mut c = Ctrl::connect(addr).await;
    assert!(c.cmd("USER bob").await.starts_with("331"));
    assert!(c.cmd(&format!("PASS {PASSWORD}")).await.starts_with("230"));
    let epsv = c.cmd("EPSV").await;
    let port = ferry_proto::hostport::parse_epsv_reply_text(&epsv).unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let data = socket
        .connect(SocketAddr::new(addr.ip(), port))
        .await
        .unwrap();
    let r = c.cmd("MLSD big").await;
    assert!(r.starts_with("150"), "{r}");
    (c, data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_listings_hold_bounded_memory() {
    let knobs = std::env::var("FERRY_LISTING_MEMORY").ok();
    let (sessions, entries) = knobs
        .as_deref()
        .and_then(|k| {
            let mut it = k.split_whitespace().map(|n| n.parse::<usize>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((40, 20_000));
    // A file system whose changes the kernel reports (tmpfs): listings of one directory then
    // share one read of it.
    if !std::path::Path::new("/dev/shm").is_dir() {
        eprintln!("note: skipping unread_listings_hold_bounded_memory: no /dev/shm");
        return;
    }
    let root = tempfile::tempdir_in("/dev/shm").unwrap();
    let state = tempfile::tempdir().unwrap();
    let big = root.path().join("big");
    std::fs::create_dir(&big).unwrap();
    let long = "n".repeat(200);
    for i in 0..entries {
        std::fs::File::create(big.join(format!("{i:06}-{long}"))).unwrap();
    }

    let bin = std::env::var("FERRY_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_ferry").into());
    let mut child = Command::new(bin)
        .args([
            "serve",
            "--allow-root",
            "--listen",
            "127.0.0.1:0",
            "--user",
            "bob",
            "--tls",
            "off",
        ])
        .args(["--log", "error", "--root"])
        .arg(root.path())
        .arg("--state-dir")
        .arg(state.path())
        .env("FERRY_PASSWORD", PASSWORD)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let serve = Serve(child);
    let pid = serve.0.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let addr: SocketAddr = loop {
        let line = rx.recv_timeout(WAIT).expect("ferry serve did not start");
        if let Some(a) = line.strip_prefix("ferry: listening on ftp://") {
            break a.trim_end_matches('/').parse().unwrap();
        }
    };

    // The idle figure: after one session has logged in and listed a small directory.
    let mut warm = Ctrl::connect(addr).await;
    assert!(warm.cmd("USER bob").await.starts_with("331"));
    assert!(
        warm.cmd(&format!("PASS {PASSWORD}"))
            .await
            .starts_with("230")
    );
    assert!(warm.cmd("STAT /").await.starts_with("213"));
    drop(warm);
    let idle = settled_rss(pid).await;

    let mut open = Vec::new();
    for _ in 0..sessions {
        open.push(unread_listing(addr).await);
    }
    let listing = settled_rss(pid).await;
    drop(open);
    // Every session gone: a new one is served (the server has seen the others close).
    let mut after = Ctrl::connect(addr).await;
    assert!(after.cmd("QUIT").await.starts_with("221"));
    let ended = settled_rss(pid).await;
    println!(
        "{sessions} unread MLSD of {entries} entries ({} bytes each name): idle {idle:.0} MiB, \
         listing {listing:.0} MiB, after the sessions ended {ended:.0} MiB",
        long.len() + 7
    );
    if knobs.is_none() {
        let bound = BOUND_MIB as f64;
        assert!(
            listing - idle < bound,
            "unread listings grew the server by {:.0} MiB",
            listing - idle
        );
        assert!(
            ended - idle < bound,
            "the server kept {:.0} MiB once the sessions had ended",
            ended - idle
        );
    }
}
