//! Graceful shutdown over real connections: no new connection, a connection not logged in is
//! closed, an idle SFTP session ends, a session with a file open goes on until it closes the
//! file, and `serve` returns once the last connection has ended.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Harness, PASSWORD, Sftp, USER, WAIT, ssh, status_code};
use ferry_sftp_proto::{OpenFlags, Request, StatusCode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_open_transfers_finish_then_ends_every_session() {
    let mut h = Harness::start().await;
    let target = h.root.path().join("f");
    std::fs::write(&target, b"old").unwrap();

    let mut busy = Sftp::connect(&h, true).await;
    let flags = OpenFlags::WRITE | OpenFlags::CREAT | OpenFlags::TRUNC;
    let file = busy.open(1, "/f", flags).await;
    let mut idle = Sftp::connect(&h, true).await;
    let mut stranger = ssh(&h).await;

    h.shut_down();

    // The idle session ends, and so does the connection that never logged in.
    assert!(idle.recv().await.is_none(), "idle session still open");
    let r = tokio::time::timeout(WAIT, stranger.authenticate_password(USER, PASSWORD))
        .await
        .expect("no answer");
    assert!(!r.is_ok_and(|r| r.success()), "logged in during shutdown");

    // Nobody new is let in.
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(h.addr).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "still accepting");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The transfer goes on, and the file takes its place as usual.
    let write = Request::Write {
        handle: file.clone(),
        offset: 0,
        data: Bytes::from_static(b"new content"),
    };
    assert_eq!(status_code(&busy.call(2, write).await), StatusCode::OK);
    assert!(
        !h.served_within(Duration::ZERO).await,
        "served before the transfer ended"
    );
    assert_eq!(
        status_code(&busy.call(3, Request::Close { handle: file }).await),
        StatusCode::OK
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"new content");

    // Then that session ends too, and with it the server.
    assert!(busy.recv().await.is_none(), "busy session still open");
    assert!(h.served_within(WAIT).await, "serve did not return");
}
