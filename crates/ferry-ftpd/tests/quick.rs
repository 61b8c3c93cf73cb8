//! The quick path of small downloads (`quick_download_max`). One test in its own binary, so
//! the process-wide counter it reads moves only with its own downloads.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn small_downloads_are_sent_at_once_when_the_client_connected_first() {
    let quick = ferry_ftpd::stats::quick_downloads;
    let body = content(200_000, 8);

    // Default limit (256 KiB): sent at once, 150 and 226 together.
    let s = TestServer::start().await;
    std::fs::write(s.path("small"), &body).unwrap();
    std::fs::write(s.path("empty"), b"").unwrap();
    let mut c = s.login().await;
    c.expect("TYPE I", 200).await;
    let before = quick();
    let (got, done) = c.retr_passive("RETR small").await;
    assert_eq!((done.code, sha256(&got)), (226, sha256(&body)));
    let (got, done) = c.retr_passive("RETR empty").await;
    assert_eq!((done.code, got.len()), (226, 0));
    c.expect("REST 150000", 350).await;
    let (got, _) = c.retr_passive("RETR small").await;
    assert_eq!(got, &body[150_000..]);
    assert_eq!(quick() - before, 3);
    // Not in ASCII mode (the conversion needs a copy), nor when the client has not connected
    // yet: the usual way.
    c.expect("TYPE A", 200).await;
    let (got, _) = c.retr_passive("RETR small").await;
    assert!(got.len() > body.len());
    c.expect("TYPE I", 200).await;
    let addr = c.epsv().await;
    assert_eq!(c.cmd("RETR small").await.code, 150);
    let mut data = TcpStream::connect(addr).await.unwrap();
    let mut got = Vec::new();
    data.read_to_end(&mut got).await.unwrap();
    assert_eq!(c.read_reply().await.code, 226);
    assert_eq!(sha256(&got), sha256(&body));
    // Larger than the limit: the usual way.
    std::fs::write(s.path("large"), content(300_000, 9)).unwrap();
    let (got, _) = c.retr_passive("RETR large").await;
    assert_eq!(got.len(), 300_000);
    assert_eq!(quick() - before, 3);

    // Off.
    let s = TestServer::start_with(|c| c.quick_download_max = 0).await;
    std::fs::write(s.path("small"), &body).unwrap();
    let mut c = s.login().await;
    c.expect("TYPE I", 200).await;
    let before = quick();
    let (got, _) = c.retr_passive("RETR small").await;
    assert_eq!(sha256(&got), sha256(&body));
    assert_eq!(quick() - before, 0);

    // A limit above the socket buffer (~2.6 MB on loopback), and a client that reads only
    // after the 150: the buffer fills before the file is out, the session answers 150 alone,
    // and a transfer task sends the rest.
    let s = TestServer::start_with(|c| c.quick_download_max = 64 * 1024 * 1024).await;
    let body = content(16 * 1024 * 1024, 10);
    std::fs::write(s.path("mid"), &body).unwrap();
    let mut c = s.login().await;
    c.expect("TYPE I", 200).await;
    let before = quick();
    let addr = c.epsv().await;
    let mut data = TcpStream::connect(addr).await.unwrap();
    assert_eq!(c.cmd("RETR mid").await.code, 150);
    c.expect("NOOP", 200).await;
    let mut got = Vec::new();
    data.read_to_end(&mut got).await.unwrap();
    assert_eq!(c.read_reply().await.code, 226);
    assert_eq!(sha256(&got), sha256(&body));
    assert_eq!(quick() - before, 1);
}
