//! What an idle session costs the server: its tasks, counted on the server's own runtime
//! (the clients run on another), so that per-session machinery that grows back is seen.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Harness, Sftp, path};
use ferry_sftp_proto::{Request, Response};

/// Idle sessions held at once.
const SESSIONS: usize = 8;

/// Tasks an idle logged-in SFTP session may keep: russh's session task, the connection's
/// (login grace, shutdown) and the SFTP request loop. Replies need no writer task.
const TASKS_PER_SESSION: usize = 3;

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn an_idle_sftp_session_keeps_three_tasks() {
    let server = runtime(2);
    let clients = runtime(1);
    let h = server.block_on(Harness::start());
    let alive = || server.metrics().num_alive_tasks();
    let before = alive();

    let sessions = clients.block_on(async {
        let mut sessions = Vec::new();
        for _ in 0..SESSIONS {
            let mut s = Sftp::connect(&h, true).await;
            // One request answered: the session's request loop has run.
            let r = s.call(1, Request::Realpath { path: path(".") }).await;
            assert!(matches!(r, Response::Name(_)), "{r:?}");
            sessions.push(s);
        }
        sessions
    });

    // Request tasks end just after their replies: wait (bounded) for the count to settle.
    let limit = before + SESSIONS * TASKS_PER_SESSION;
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive() > limit && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let per_session = (alive() - before) as f64 / SESSIONS as f64;
    assert!(
        alive() <= limit,
        "{per_session:.2} server tasks per idle session (at most {TASKS_PER_SESSION})"
    );

    // Every session still answers.
    clients.block_on(async {
        for mut s in sessions {
            let r = s.call(2, Request::Realpath { path: path("/") }).await;
            assert!(matches!(r, Response::Name(_)), "{r:?}");
        }
    });
    drop(h);
}
