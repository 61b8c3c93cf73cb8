//! `ferry serve`'s connection limits with its defaults, over real sockets: one address that
//! floods the server cannot keep another address from being served, and every connection
//! the server does not serve is told so (`421`) instead of waiting unanswered.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ferry");
const WAIT: Duration = Duration::from_secs(20);
/// The default `max_sessions_per_ip`.
const PER_ADDRESS: usize = 50;

/// `FERRY_FLOOD="CONNECTIONS NOFILE"`: connections the flood opens, and the open-file limit
/// the server runs with (0: the one this test runs with). Default `300 400`.
fn flood_params() -> (usize, u64) {
    let v = std::env::var("FERRY_FLOOD").unwrap_or_default();
    let mut it = v.split_whitespace().map(|x| x.parse::<u64>().ok());
    match (it.next().flatten(), it.next().flatten()) {
        (Some(n), Some(nofile)) => (n as usize, nofile),
        _ => (300, 400),
    }
}

struct Serve {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ferry serve` with its defaults (plain FTP, to keep the flood cheap), its open-file limit
/// set to `nofile` by the shell (soft and hard) unless 0.
fn serve(nofile: u64) -> Serve {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = if nofile == 0 {
        Command::new(BIN)
    } else {
        let mut sh = Command::new("sh");
        sh.args(["-c", r#"ulimit -n "$1" && shift && exec "$@""#, "sh"])
            .arg(nofile.to_string())
            .arg(BIN);
        sh
    };
    cmd.args([
        "serve",
        "--allow-root",
        "--tls",
        "off",
        "--listen",
        "127.0.0.1:0",
    ])
    .args(["--user", "flood", "--log", "warn"])
    .env("FERRY_PASSWORD", "flood-pw")
    .current_dir(dir.path())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let addr = common::announced_ftp_address(&mut child);
    Serve {
        child,
        addr,
        _dir: dir,
    }
}

/// Connect from `source` (a loopback address) and read the server's first line; `None` when
/// nothing comes within [`WAIT`].
fn first_line(source: [u8; 4], to: SocketAddr) -> (Option<String>, TcpStream) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((source, 0)).into()).unwrap();
    socket.connect_timeout(&to.into(), WAIT).unwrap();
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 256];
    let line = match stream.read(&mut buf) {
        Ok(n) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        _ => None,
    };
    (line, stream)
}

#[derive(Debug, Default)]
struct Tally {
    greeted: Vec<TcpStream>,
    refused_per_address: usize,
    refused_other: Vec<String>,
    unanswered: usize,
}

#[test]
fn a_flood_from_one_address_leaves_room_for_others_and_hears_421() {
    let (n, nofile) = flood_params();
    let s = serve(nofile);
    let addr = s.addr;
    let (halfway_tx, halfway) = std::sync::mpsc::channel();
    let started = Instant::now();
    let flood = std::thread::spawn(move || {
        let mut t = Tally::default();
        for i in 0..n {
            if i == n / 2 {
                let _ = halfway_tx.send(());
            }
            match first_line([127, 0, 0, 1], addr) {
                (Some(l), stream) if l.starts_with("220") => t.greeted.push(stream),
                (Some(l), _) if l.starts_with("421") && l.contains("your address") => {
                    t.refused_per_address += 1
                }
                (Some(l), _) => t.refused_other.push(l),
                (None, _) => {
                    t.unanswered += 1;
                    // The server has stopped answering; more would only wait as long.
                    break;
                }
            }
        }
        t
    });
    halfway.recv_timeout(Duration::from_secs(120)).unwrap();
    // Another loopback address, in the middle of the flood.
    let asked = Instant::now();
    let (line, foreign) = first_line([127, 0, 0, 2], addr);
    let foreign_wait = asked.elapsed();
    let t = flood.join().unwrap();
    eprintln!(
        "flood of {n} connections from 127.0.0.1 (open-file limit {}): {} greeted, {} refused \
         with 421 for the address, {} other replies, {} unanswered, in {:?}; 127.0.0.2 got {:?} \
         after {foreign_wait:?}",
        if nofile == 0 {
            "as inherited".to_string()
        } else {
            nofile.to_string()
        },
        t.greeted.len(),
        t.refused_per_address,
        t.refused_other.len(),
        t.unanswered,
        started.elapsed(),
        line.as_deref().map(str::trim_end),
    );
    assert_eq!(t.unanswered, 0, "a connection got no answer at all");
    assert!(t.refused_other.is_empty(), "{:?}", t.refused_other);
    assert_eq!(t.greeted.len(), PER_ADDRESS.min(n));
    assert_eq!(t.refused_per_address, n.saturating_sub(PER_ADDRESS));
    assert!(
        line.as_deref().is_some_and(|l| l.starts_with("220")),
        "{line:?}"
    );
    if nofile == 0 {
        return;
    }
    // The global cap keeps sessions within the descriptors: four per session, 64 kept back.
    let most = ((nofile - 64) / 4) as usize;
    let room = most - PER_ADDRESS - 1;
    if room >= PER_ADDRESS {
        eprintln!("not checking the global cap: {most} sessions is more than two addresses hold");
        return;
    }
    let mut held = vec![foreign];
    for _ in 0..room {
        let (line, stream) = first_line([127, 0, 0, 2], addr);
        assert!(
            line.as_deref().is_some_and(|l| l.starts_with("220")),
            "{line:?}"
        );
        held.push(stream);
    }
    let (line, _) = first_line([127, 0, 0, 2], addr);
    let line = line.expect("no answer past the global cap");
    assert!(
        line.starts_with("421") && !line.contains("your address"),
        "{line:?}"
    );
}
