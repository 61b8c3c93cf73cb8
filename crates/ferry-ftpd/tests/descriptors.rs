//! A server whose process has no descriptor left still answers every connection: the ones it
//! cannot serve get `421`, and it serves again as soon as descriptors come free.
//!
//! Alone in its test binary: it lowers this process's open-file limit.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use tokio::io::AsyncReadExt;

/// Open `/dev/null` until the process has no descriptor left.
fn take_every_descriptor() -> Vec<std::fs::File> {
    let mut ballast = Vec::new();
    for _ in 0..10_000 {
        match std::fs::File::open("/dev/null") {
            Ok(f) => ballast.push(f),
            Err(e) if ferry_sys::is_out_of_descriptors(&e) => return ballast,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the descriptor limit was not reached");
}

/// The first line the server sends on a new connection.
async fn first_line(addr: std::net::SocketAddr) -> (String, tokio::net::TcpStream) {
    let mut stream = tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
        .await
        .expect("no reply: the connection waits unanswered")
        .unwrap();
    (String::from_utf8_lossy(&buf[..n]).into_owned(), stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_beyond_the_descriptor_limit_gets_421() {
    let s = TestServer::start_with(|c| {
        c.max_sessions = 0;
        c.max_sessions_per_ip = 0;
    })
    .await;
    let mut held = s.connect().await;
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let before = ferry_sys::raise_nofile_limit().unwrap();
    ferry_sys::set_nofile_limit(open + 64).unwrap();
    let mut ballast = take_every_descriptor();
    // One descriptor free: the client's socket takes it, and the server has none to accept
    // the connection with.
    drop(ballast.pop());
    let (line, mut refused) = first_line(s.addr()).await;
    assert!(line.starts_with("421 "), "{line:?}");
    let mut rest = [0u8; 16];
    let n = tokio::time::timeout(WAIT, refused.read(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "the refused connection is closed");
    drop(refused);
    // Descriptors free again: served as usual, and the session held all along still works.
    drop(ballast);
    ferry_sys::set_nofile_limit(before).unwrap();
    let (line, _served) = first_line(s.addr()).await;
    assert!(line.starts_with("220 "), "{line:?}");
    held.expect("NOOP", 200).await;
}
