//! Bandwidth limits over real sockets. Each check is a lower bound only (a limited transfer of
//! N bytes takes at least 0.8 N / rate), which a slow machine cannot break.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;

/// 512 KiB per second, and 1 MiB to move: at least 1.6 s when limited.
const RATE: &str = "512KiB";
const RATE_BYTES: u64 = 512 * 1024;
const SIZE: usize = 1024 * 1024;

fn floor() -> Duration {
    Duration::from_secs_f64(SIZE as f64 / RATE_BYTES as f64 * 0.8)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_rate_holds_uploads_and_downloads() {
    let s = TestServer::start_with_users(
        |_| {},
        |users| {
            users[0].upload_rate = Some(RATE.into());
            users[0].download_rate = Some(RATE.into());
        },
    )
    .await;
    let body = content(SIZE, 7);
    let mut c = s.login().await;
    c.expect("TYPE I", 200).await;
    let started = Instant::now();
    let r = c.stor_passive("STOR limited.bin", &body).await;
    let upload = started.elapsed();
    assert_eq!(r.code, 226, "{r:?}");
    assert!(
        upload >= floor(),
        "1 MiB uploaded at {RATE}/s in {upload:?}"
    );
    assert_eq!(std::fs::read(s.path("limited.bin")).unwrap(), body);
    let started = Instant::now();
    let (bytes, r) = c.retr_passive("RETR limited.bin").await;
    let download = started.elapsed();
    assert_eq!(r.code, 226, "{r:?}");
    assert_eq!(bytes, body);
    assert!(
        download >= floor(),
        "1 MiB downloaded at {RATE}/s in {download:?}"
    );
    eprintln!("at {RATE}/s: 1 MiB up in {upload:?}, down in {download:?}");
    // The user without a rate is not held (same file, same server): it takes the fast paths.
    let mut r2 = s.connect().await;
    r2.login(READER, PASSWORD).await;
    r2.expect("TYPE I", 200).await;
    let started = Instant::now();
    let (bytes, r) = r2.retr_passive("RETR limited.bin").await;
    assert_eq!((r.code, bytes.len()), (226, SIZE));
    eprintln!("unlimited: 1 MiB down in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_rate_holds_every_user() {
    let s = TestServer::start_with(|c| c.download_rate = Some(RATE_BYTES)).await;
    std::fs::write(s.path("f.bin"), content(SIZE, 3)).unwrap();
    let mut c = s.connect().await;
    c.login(READER, PASSWORD).await;
    c.expect("TYPE I", 200).await;
    let started = Instant::now();
    let (bytes, r) = c.retr_passive("RETR f.bin").await;
    let took = started.elapsed();
    assert_eq!((r.code, bytes.len()), (226, SIZE));
    assert!(
        took >= floor(),
        "1 MiB downloaded at {RATE}/s overall in {took:?}"
    );
}
