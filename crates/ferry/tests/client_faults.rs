//! The `ferry` client when the network fails: the built binary talks to Ferry's own server
//! through a small TCP proxy on loopback that relays the control connection and, by
//! rewriting `229` replies, the data connections, and that injects one fault:
//!
//! - it cuts a session once a given number of data bytes has passed (the data connection
//!   only, or the control connection too): `get -c` and `put -c` must reconnect and resume,
//!   without `-c` the exit code must say what happened;
//! - it rewrites the port of every `229` reply to a closed one, or turns the client's `EPSV`
//!   into a command the server refuses: `--mode auto` must fall back to `PASV`.
//!
//! A cut closes the client's side of each connection with a FIN after the bytes it let
//! through (so the client holds exactly that much) and resets the server's side (so the
//! server sees an aborted transfer, never a short upload that ended normally).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Background, Out, Srv, USER, content, ferry_command, ok, run, sha256, sha256_file};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

const PASSWORD: &str = "fault-pass";
/// Upper bound for one command (a resume waits 0.5 s, 1 s, 1.5 s between attempts).
const WAIT: Duration = Duration::from_secs(90);
/// The size of the files transferred; a cut lands at `CUT` bytes.
const SIZE: usize = 8 * 1024 * 1024 + 13;
const CUT: u64 = 3 * 1024 * 1024;

/// What the proxy does wrong.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// In each of the first `sessions` sessions, relay the data connections and cut once
    /// `bytes` bytes have passed on one: that data connection, and with `control` the
    /// control connection too.
    Cut {
        bytes: u64,
        sessions: usize,
        control: bool,
        how: How,
    },
    /// Every `229` reply names a port where nobody listens.
    EpsvClosedPort,
    /// The client's `EPSV` reaches the server as `XEPSV`, which it refuses (`500`).
    EpsvRefused,
}

/// How a cut looks to the client (the server's side is always reset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    /// A FIN after the bytes let through: the client holds exactly that much.
    Close,
    /// A reset (`ECONNRESET` on the client's next read or write).
    Reset,
    /// Nothing more, ever, and the connections stay open: a cable pulled out; only the
    /// client's timeouts notice.
    Stall,
}

/// A cut of the first `sessions` sessions after `bytes` data bytes, closing the client's
/// side of the data connection and, with `control`, of the control connection.
fn cut(bytes: u64, sessions: usize, control: bool) -> Fault {
    Fault::Cut {
        bytes,
        sessions,
        control,
        how: How::Close,
    }
}

/// The proxy, on its own thread and runtime, in front of one server; stops when dropped.
struct Proxy {
    addr: SocketAddr,
    /// How many cuts it has made.
    cuts: Arc<AtomicUsize>,
    _running: Background,
}

impl Proxy {
    fn start(upstream: SocketAddr, fault: Fault) -> Proxy {
        let cuts = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&cuts);
        let (addr, running) = Background::start(move |ready, stop| async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            ready.send(listener.local_addr().unwrap()).unwrap();
            let accept = async {
                for index in 0.. {
                    let Ok((client, _)) = listener.accept().await else {
                        return;
                    };
                    let cut = match fault {
                        Fault::Cut {
                            bytes,
                            sessions,
                            control,
                            how,
                        } if index < sessions => Some((bytes, control, how)),
                        _ => None,
                    };
                    let counter = Arc::clone(&counter);
                    tokio::spawn(async move {
                        if let Ok(server) = TcpStream::connect(upstream).await {
                            control_relay(client, server, fault, cut, counter).await;
                        }
                    });
                }
            };
            tokio::select! {
                _ = accept => {}
                _ = stop => {}
            }
        });
        Proxy {
            addr,
            cuts,
            _running: running,
        }
    }

    /// An `ftp://` URL through the proxy.
    fn url(&self, path: &str) -> String {
        format!("ftp://{USER}@{}/{path}", self.addr)
    }

    fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }
}

/// A complete line (through LF) from the front of `buf`.
fn take_line(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let end = buf.iter().position(|&b| b == b'\n')? + 1;
    Some(buf.drain(..end).collect())
}

/// A port on 127.0.0.1 where nobody listens (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The port of a `229 ... (|||port|)` line, and the line with `port` put in its place.
fn epsv_port(line: &[u8], port: u16) -> Option<(u16, Vec<u8>)> {
    let text = std::str::from_utf8(line).ok()?;
    if !text.starts_with("229") {
        return None;
    }
    let start = text.find("(|||")? + 4;
    let len = text[start..].find("|)")?;
    let old = text[start..start + len].parse().ok()?;
    let new = format!("{}{port}{}", &text[..start], &text[start + len..]);
    Some((old, new.into_bytes()))
}

/// Relay one control connection, rewriting what `fault` says, until both sides have closed
/// or a data relay cuts the session.
async fn control_relay(
    mut client: TcpStream,
    mut server: TcpStream,
    fault: Fault,
    cut: Option<(u64, bool, How)>,
    cuts: Arc<AtomicUsize>,
) {
    // Closing the server's side then resets it (no FIN: nothing that looks like an end).
    let _ = server.set_zero_linger();
    if matches!(cut, Some((_, _, How::Reset))) {
        let _ = client.set_zero_linger();
    }
    let upstream_ip = server.peer_addr().unwrap().ip();
    let session_cut = Arc::new(watch::channel(false).0);
    let mut stop = session_cut.subscribe();
    let (mut cr, mut cw) = client.split();
    let (mut sr, mut sw) = server.split();
    let (mut from_client, mut from_server) = (Vec::new(), Vec::new());
    let (mut cbuf, mut sbuf) = ([0u8; 4096], [0u8; 4096]);
    let (mut client_open, mut server_open) = (true, true);
    // Lets the current data relay start once the client has the transfer's 1xx reply.
    let mut go: Option<oneshot::Sender<()>> = None;
    while client_open || server_open {
        tokio::select! {
            // A cut wins over bytes that arrive at the same time (the server's 426).
            biased;
            // (The guard `wait_for` returns is not `Send`: drop it at once.)
            _ = async { drop(stop.wait_for(|cut| *cut).await) } => {
                if matches!(cut, Some((_, _, How::Stall))) {
                    std::future::pending::<()>().await;
                }
                return;
            }
            r = cr.read(&mut cbuf), if client_open => match r {
                Ok(0) | Err(_) => {
                    client_open = false;
                    let _ = sw.shutdown().await;
                }
                Ok(n) => {
                    from_client.extend_from_slice(&cbuf[..n]);
                    while let Some(mut line) = take_line(&mut from_client) {
                        if matches!(fault, Fault::EpsvRefused)
                            && line.trim_ascii().eq_ignore_ascii_case(b"EPSV")
                        {
                            line = b"XEPSV\r\n".to_vec();
                        }
                        let _ = sw.write_all(&line).await;
                    }
                }
            },
            r = sr.read(&mut sbuf), if server_open => match r {
                Ok(0) | Err(_) => {
                    server_open = false;
                    let _ = cw.shutdown().await;
                }
                Ok(n) => {
                    from_server.extend_from_slice(&sbuf[..n]);
                    while let Some(mut line) = take_line(&mut from_server) {
                        match (fault, cut) {
                            (Fault::EpsvClosedPort, _) => {
                                if let Some((_, new)) = epsv_port(&line, closed_port()) {
                                    line = new;
                                }
                            }
                            (_, Some((bytes, control, how))) => {
                                if let Some((port, _)) = epsv_port(&line, 0) {
                                    let relay = TcpListener::bind("127.0.0.1:0").await.unwrap();
                                    let mine = relay.local_addr().unwrap().port();
                                    line = epsv_port(&line, mine).unwrap().1;
                                    let (tx, rx) = oneshot::channel();
                                    go = Some(tx);
                                    tokio::spawn(data_relay(
                                        relay,
                                        SocketAddr::new(upstream_ip, port),
                                        rx,
                                        bytes,
                                        how,
                                        control.then(|| Arc::clone(&session_cut)),
                                        Arc::clone(&cuts),
                                    ));
                                }
                            }
                            _ => {}
                        }
                        let _ = cw.write_all(&line).await;
                        if line.first() == Some(&b'1')
                            && let Some(go) = go.take()
                        {
                            let _ = go.send(());
                        }
                    }
                }
            },
        }
    }
}

/// Relay one data connection, from when `go` says the client has the transfer's 1xx reply
/// (so that a cut always lands in a transfer the client knows has begun); once `limit` bytes
/// have passed (either way), count a cut, cut the session too when given, and close both
/// sides (or, with `How::Stall`, fall silent).
async fn data_relay(
    listener: TcpListener,
    target: SocketAddr,
    go: oneshot::Receiver<()>,
    limit: u64,
    how: How,
    session_cut: Option<Arc<watch::Sender<bool>>>,
    cuts: Arc<AtomicUsize>,
) {
    let Ok((mut client, _)) = listener.accept().await else {
        return;
    };
    drop(listener);
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = server.set_zero_linger();
    if how == How::Reset {
        let _ = client.set_zero_linger();
    }
    if go.await.is_err() {
        return;
    }
    let (mut cr, mut cw) = client.split();
    let (mut sr, mut sw) = server.split();
    let (mut cbuf, mut sbuf) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    let (mut client_open, mut server_open) = (true, true);
    let mut passed = 0u64;
    while client_open || server_open {
        tokio::select! {
            r = cr.read(&mut cbuf), if client_open => match r {
                Ok(0) | Err(_) => {
                    client_open = false;
                    let _ = sw.shutdown().await;
                }
                Ok(n) => {
                    let n = n.min(usize::try_from(limit - passed).unwrap_or(usize::MAX));
                    let _ = sw.write_all(&cbuf[..n]).await;
                    passed += n as u64;
                }
            },
            r = sr.read(&mut sbuf), if server_open => match r {
                Ok(0) | Err(_) => {
                    server_open = false;
                    let _ = cw.shutdown().await;
                }
                Ok(n) => {
                    let n = n.min(usize::try_from(limit - passed).unwrap_or(usize::MAX));
                    let _ = cw.write_all(&sbuf[..n]).await;
                    passed += n as u64;
                }
            },
        }
        if passed >= limit {
            cuts.fetch_add(1, Ordering::SeqCst);
            if let Some(cut) = session_cut {
                cut.send_replace(true);
            }
            if how == How::Stall {
                std::future::pending::<()>().await;
            }
            // Dropping the streams: a FIN (or with `How::Reset` a reset) to the client after
            // what it was sent, a reset to the server.
            return;
        }
    }
}

/// A server with `big.bin` and a work directory with `up.bin`, the same `SIZE` bytes.
struct Scene {
    srv: Srv,
    work: tempfile::TempDir,
    body: Vec<u8>,
}

impl Scene {
    fn new(seed: u64) -> Scene {
        let srv = Srv::start_with("127.0.0.1:0", PASSWORD, |_| {});
        let body = content(SIZE, seed);
        std::fs::write(srv.path("big.bin"), &body).unwrap();
        let work = tempfile::tempdir().unwrap();
        std::fs::write(work.path().join("up.bin"), &body).unwrap();
        Scene { srv, work, body }
    }
}

fn ferry(dir: &Path, args: &[&str]) -> Out {
    let mut cmd = ferry_command(dir, PASSWORD);
    cmd.args(args);
    run(&mut cmd, b"", WAIT)
}

/// The values of every `< 213 N` reply (to `SIZE`) in a `-v` dialogue.
fn size_replies(stderr: &str) -> Vec<u64> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("< 213 "))
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// Both connections cut mid-download: `get -c` reconnects, sends `REST` at exactly what it
/// had received, and ends with the whole file.
#[test]
fn get_c_resumes_after_the_connection_drops() {
    let Scene { srv, work, body } = &Scene::new(1);
    let proxy = Proxy::start(srv.addr, cut(CUT, 1, true));
    let w = work.path();
    let out = ok(ferry(w, &["get", "-c", "-v", &proxy.url("big.bin")]));
    assert_eq!(proxy.cuts(), 1, "the cut happened");
    assert!(
        out.stderr.contains("reconnecting to resume (1/3)"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!("> REST {CUT}\n")),
        "{}",
        out.stderr
    );
    assert_eq!(count(&out.stderr, "> RETR big.bin"), 2, "{}", out.stderr);
    assert_eq!(sha256_file(&w.join("big.bin")), sha256(body));
}

/// Only the data connection cut (the server then reports `426`, or `226` for what it had
/// handed to the kernel, and the size check catches the gap): `get -c` resumes too.
#[test]
fn get_c_resumes_after_the_data_connection_drops() {
    let Scene { srv, work, body } = &Scene::new(2);
    let proxy = Proxy::start(srv.addr, cut(CUT, 1, false));
    let w = work.path();
    let out = ok(ferry(w, &["get", "-c", "-v", &proxy.url("big.bin")]));
    assert_eq!(proxy.cuts(), 1);
    assert!(
        out.stderr.contains("partial transfer") && out.stderr.contains("reconnecting to resume"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!("> REST {CUT}\n")),
        "{}",
        out.stderr
    );
    assert_eq!(sha256_file(&w.join("big.bin")), sha256(body));
}

/// Without `-c`: a dropped connection is exit code 5 (network), a transfer cut short with the
/// control connection intact is 7 (partial); the partial file is kept, holding exactly what
/// arrived, and `get -c` completes it later.
#[test]
fn get_without_c_reports_the_drop_and_keeps_the_partial_file() {
    let Scene { srv, work, body } = &Scene::new(3);
    let w = work.path();
    for (control, code) in [(true, 5), (false, 7)] {
        let proxy = Proxy::start(srv.addr, cut(CUT, 1, control));
        let local = format!("part-{control}.bin");
        let out = ferry(w, &["get", &proxy.url("big.bin"), "-o", &local]);
        assert_eq!(out.code, code, "control cut: {control}: {}", out.stderr);
        assert!(!out.stderr.contains("reconnecting"), "{}", out.stderr);
        let partial = std::fs::read(w.join(&local)).unwrap();
        assert_eq!(partial.len() as u64, CUT, "control cut: {control}");
        assert_eq!(partial[..], body[..partial.len()]);

        // The proxy cut its first session only: this one goes through.
        let out = ok(ferry(
            w,
            &["get", "-c", "-v", &proxy.url("big.bin"), "-o", &local],
        ));
        assert!(
            out.stderr.contains(&format!("> REST {CUT}\n")),
            "{}",
            out.stderr
        );
        assert_eq!(sha256_file(&w.join(&local)), sha256(body));
    }
}

/// A reset rather than a FIN (`ECONNRESET` in the middle of reading), and a network that
/// falls silent (only `--timeout` notices): `get -c` resumes from what it wrote and ends with
/// the whole file.
#[test]
fn get_c_resumes_after_a_reset_and_after_a_stall() {
    let Scene { srv, work, body } = &Scene::new(10);
    let w = work.path();
    for how in [How::Reset, How::Stall] {
        let proxy = Proxy::start(
            srv.addr,
            Fault::Cut {
                bytes: CUT,
                sessions: 1,
                control: true,
                how,
            },
        );
        let local = format!("{how:?}.bin");
        let out = ok(ferry(
            w,
            &[
                "get",
                "-c",
                "-v",
                "--timeout",
                "2",
                &proxy.url("big.bin"),
                "-o",
                &local,
            ],
        ));
        assert_eq!(proxy.cuts(), 1, "{how:?}");
        assert!(
            out.stderr.contains("reconnecting to resume (1/3)"),
            "{how:?}: {}",
            out.stderr
        );
        if how == How::Stall {
            assert!(out.stderr.contains("timed out"), "{}", out.stderr);
            // Everything let through was written before resuming.
            assert!(
                out.stderr.contains(&format!("> REST {CUT}\n")),
                "{}",
                out.stderr
            );
        }
        // A reset may discard what had arrived unread, never add to it.
        let rest: Vec<u64> = out
            .stderr
            .lines()
            .filter_map(|l| l.strip_prefix("> REST "))
            .map(|v| v.parse().unwrap())
            .collect();
        assert!(rest.iter().all(|&r| r <= CUT), "{how:?}: {rest:?}");
        assert_eq!(sha256_file(&w.join(&local)), sha256(body), "{how:?}");
    }
}

/// An upload into a network that falls silent: `put -c` times out, reconnects, asks the
/// server's size again and appends the rest (while the stalled session still holds the file
/// open on the server).
#[test]
fn put_c_resumes_after_a_stall() {
    let Scene { srv, work, body } = &Scene::new(11);
    let w = work.path();
    let seed = 512 * 1024;
    std::fs::write(srv.path("up.bin"), &body[..seed]).unwrap();
    let proxy = Proxy::start(
        srv.addr,
        Fault::Cut {
            bytes: CUT,
            sessions: 1,
            control: true,
            how: How::Stall,
        },
    );
    let out = ok(ferry(
        w,
        &[
            "put",
            "-c",
            "-v",
            "--timeout",
            "2",
            "up.bin",
            &proxy.url(""),
        ],
    ));
    assert_eq!(proxy.cuts(), 1);
    assert!(
        out.stderr.contains("timed out") && out.stderr.contains("reconnecting to resume (1/3)"),
        "{}",
        out.stderr
    );
    assert_eq!(count(&out.stderr, "> APPE up.bin"), 2, "{}", out.stderr);
    let sizes = size_replies(&out.stderr);
    assert_eq!(sizes[0], seed as u64, "{}", out.stderr);
    assert!(sizes[1] > seed as u64, "{}", out.stderr);
    assert_eq!(sha256_file(&srv.path("up.bin")), sha256(body));
}

/// Every session cut: `get -c` gives up after 3 reconnections with the network's exit code,
/// keeping what four attempts fetched.
#[test]
fn get_c_gives_up_after_three_reconnections() {
    let Scene { srv, work, body } = &Scene::new(4);
    let step = 1024 * 1024;
    let proxy = Proxy::start(srv.addr, cut(step, usize::MAX, true));
    let w = work.path();
    let out = ferry(w, &["get", "-c", "-v", &proxy.url("big.bin")]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert_eq!(proxy.cuts(), 4);
    assert!(out.stderr.contains("(3/3)"), "{}", out.stderr);
    assert!(!out.stderr.contains("(4/3)"), "{}", out.stderr);
    for k in 1..4 {
        assert!(
            out.stderr.contains(&format!("> REST {}\n", k * step)),
            "{}",
            out.stderr
        );
    }
    let partial = std::fs::read(w.join("big.bin")).unwrap();
    assert_eq!(partial.len() as u64, 4 * step);
    assert_eq!(partial[..], body[..partial.len()]);
}

/// Both connections cut mid-upload: `put -c` reconnects and ends with the whole file. From
/// nothing (the server discards the interrupted `STOR`, so it starts again) and from a partial
/// remote file (`APPE` at the server's size, which the cut `APPE` has grown).
#[test]
fn put_c_resumes_after_the_connection_drops() {
    let Scene { srv, work, body } = &Scene::new(5);
    let w = work.path();
    let cut = cut(CUT, 1, true);

    let proxy = Proxy::start(srv.addr, cut);
    let out = ok(ferry(
        w,
        &["put", "-c", "-v", "up.bin", &proxy.url("fresh.bin")],
    ));
    assert_eq!(proxy.cuts(), 1);
    assert!(
        out.stderr.contains("reconnecting to resume (1/3)"),
        "{}",
        out.stderr
    );
    assert_eq!(sha256_file(&srv.path("fresh.bin")), sha256(body));

    let seed = 1024 * 1024;
    std::fs::write(srv.path("grown.bin"), &body[..seed]).unwrap();
    let proxy = Proxy::start(srv.addr, cut);
    let out = ok(ferry(
        w,
        &["put", "-c", "-v", "up.bin", &proxy.url("grown.bin")],
    ));
    assert_eq!(proxy.cuts(), 1);
    assert!(
        out.stderr.contains("reconnecting to resume (1/3)"),
        "{}",
        out.stderr
    );
    assert_eq!(count(&out.stderr, "> APPE grown.bin"), 2, "{}", out.stderr);
    assert!(!out.stderr.contains("> STOR"), "{}", out.stderr);
    // SIZE before each APPE, then after: seed, then more than the seed, then all of it.
    let sizes = size_replies(&out.stderr);
    assert_eq!(sizes.len(), 3, "{}", out.stderr);
    assert_eq!(sizes[0], seed as u64);
    assert!(
        sizes[1] >= seed as u64 && sizes[1] <= seed as u64 + CUT,
        "{}",
        out.stderr
    );
    assert_eq!(sizes[2], SIZE as u64);
    assert_eq!(sha256_file(&srv.path("grown.bin")), sha256(body));
}

/// Without `-c`: exit code 5 when the connection drops, 7 when only the data connection does;
/// either way the server keeps the file it had (uploads replace it only when complete).
#[test]
fn put_without_c_reports_the_drop_and_keeps_the_old_remote_file() {
    let Scene { srv, work, .. } = &Scene::new(6);
    let w = work.path();
    std::fs::write(srv.path("up.bin"), b"the previous version").unwrap();
    for (control, code) in [(true, 5), (false, 7)] {
        let proxy = Proxy::start(srv.addr, cut(CUT, 1, control));
        let out = ferry(w, &["put", "up.bin", &proxy.url("")]);
        assert_eq!(out.code, code, "control cut: {control}: {}", out.stderr);
        assert_eq!(proxy.cuts(), 1);
        assert_eq!(
            std::fs::read(srv.path("up.bin")).unwrap(),
            b"the previous version"
        );
    }
}

/// Through a proxy with `fault`: a shell session that gets, puts and lists, each file
/// sha256-checked; then `get --mode epsv`. The session's `-v` dialogue, and the last result.
fn data_method_faults(fault: Fault) -> (String, Out) {
    let Scene { srv, work, body } = &Scene::new(7);
    let proxy = Proxy::start(srv.addr, fault);
    let w = work.path();
    let shell = ok(run(
        ferry_command(w, PASSWORD).args(["shell", "-v", &proxy.url("")]),
        b"get big.bin\nput up.bin\nls\n",
        WAIT,
    ));
    assert_eq!(sha256_file(&w.join("big.bin")), sha256(body));
    assert_eq!(sha256_file(&srv.path("up.bin")), sha256(body));
    assert!(shell.stdout.contains("up.bin"), "{}", shell.stdout);
    let epsv = ferry(
        w,
        &["get", "--mode", "epsv", &proxy.url("big.bin"), "-o", "x"],
    );
    (shell.stderr, epsv)
}

/// The port a `229` names is closed: in auto mode each transfer falls back to `PASV` (and
/// tries `EPSV` again next time, as the server did not refuse it); `--mode epsv` fails with
/// the network's exit code.
#[test]
fn auto_mode_falls_back_to_pasv_when_the_epsv_port_is_unreachable() {
    let (e, epsv) = data_method_faults(Fault::EpsvClosedPort);
    assert_eq!(count(&e, "> EPSV\n"), 3, "{e}");
    assert_eq!(count(&e, "< 229 "), 3, "{e}");
    assert_eq!(count(&e, "> PASV\n"), 3, "{e}");
    assert_eq!(count(&e, "< 227 "), 3, "{e}");
    // Each PASV right after its EPSV.
    let order = [
        "> EPSV",
        "> PASV",
        "> RETR big.bin",
        "> EPSV",
        "> PASV",
        "> STOR",
    ];
    let mut at = 0;
    for step in order {
        at += e[at..]
            .find(step)
            .unwrap_or_else(|| panic!("no {step:?} after byte {at} in:\n{e}"));
    }
    assert_eq!(epsv.code, 5, "{}", epsv.stderr);
    assert!(epsv.stderr.contains("data connection"), "{}", epsv.stderr);
}

/// The server refuses `EPSV` (`500`): auto mode switches to `PASV` for the rest of the
/// session; `--mode epsv` fails as a refusal (6).
#[test]
fn auto_mode_uses_pasv_once_epsv_is_refused() {
    let (e, epsv) = data_method_faults(Fault::EpsvRefused);
    assert_eq!(count(&e, "> EPSV\n"), 1, "{e}");
    assert_eq!(count(&e, "< 500 "), 1, "{e}");
    assert_eq!(count(&e, "> PASV\n"), 3, "{e}");
    assert_eq!(epsv.code, 6, "{}", epsv.stderr);
    assert!(epsv.stderr.contains("EPSV: 500"), "{}", epsv.stderr);
}

/// The proxy itself: a transfer through it with no fault worth the name (a cut beyond the
/// file's end) arrives whole, so the faults above are the only difference.
#[test]
fn proxy_relays_faithfully() {
    let Scene { srv, work, body } = &Scene::new(9);
    let proxy = Proxy::start(srv.addr, cut(u64::MAX, usize::MAX, true));
    let w = work.path();
    let out = ok(ferry(w, &["get", "-v", &proxy.url("big.bin")]));
    assert_eq!(proxy.cuts(), 0);
    assert_eq!(count(&out.stderr, "> EPSV"), 1, "{}", out.stderr);
    assert_eq!(sha256_file(&w.join("big.bin")), sha256(body));
    ok(ferry(w, &["put", "up.bin", &proxy.url("")]));
    assert_eq!(sha256_file(&srv.path("up.bin")), sha256(body));
    assert_eq!(proxy.cuts(), 0);
}
