//! Many sessions at once: 2,000 concurrent logged-in sessions, all served (not timed).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_concurrent_sessions_are_all_served() {
    const N: usize = 2000;
    // All from 127.0.0.1: past the default per-address cap.
    let s = TestServer::start_with(|c| c.max_sessions_per_ip = 0).await;
    let addr = s.addr();
    // Open and log in every session, keeping them all open at the same time.
    let mut tasks = Vec::with_capacity(N);
    for _ in 0..N {
        tasks.push(tokio::spawn(async move {
            let mut c = Ctrl::connect(addr).await;
            c.login(USER, PASSWORD).await;
            c
        }));
    }
    let mut sessions = Vec::with_capacity(N);
    for t in tasks {
        sessions.push(
            tokio::time::timeout(Duration::from_secs(120), t)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert_eq!(sessions.len(), N);
    // Every one of them still answers.
    let mut tasks = Vec::with_capacity(N);
    for mut c in sessions {
        tasks.push(tokio::spawn(async move {
            c.expect("NOOP", 200).await;
            c.expect("PWD", 257).await;
            c.expect("QUIT", 221).await;
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .unwrap()
            .unwrap();
    }
}
