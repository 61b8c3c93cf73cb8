//! Hostile input: oversized lines, NUL bytes, invalid UTF-8, traversal, floods, timeouts.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn oversized_line_is_refused_and_session_survives() {
    let s = TestServer::start().await;
    let mut c = s.login().await;
    // 1 MiB without a newline, then the end of that line, then a normal command.
    let junk = vec![b'A'; 1024 * 1024];
    c.send_raw(b"NOOP ").await;
    c.send_raw(&junk).await;
    c.send_raw(b"\r\nNOOP\r\n").await;
    let r = c.read_reply().await;
    assert_eq!(r.code, 500, "{r:?}");
    assert!(r.text().to_lowercase().contains("too long"));
    c.expect("NOOP", 200).await;
}

#[tokio::test]
async fn nul_bytes_and_invalid_utf8_get_501() {
    let s = TestServer::start().await;
    let mut c = s.login().await;
    c.send_raw(b"MKD a\0b\r\n").await;
    assert_eq!(c.read_reply().await.code, 501);
    c.send_raw(b"MKD \xff\xfe\r\n").await;
    assert_eq!(c.read_reply().await.code, 501);
    c.send_raw(b"\xc3\x28\xa0\r\n").await;
    assert!(c.read_reply().await.code >= 500);
    c.send_raw(b"\r\n\r\n").await; // empty lines are ignored
    c.expect("NOOP", 200).await;
    assert_eq!(std::fs::read_dir(s.root.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn traversal_stays_inside_the_root() {
    let s = TestServer::start().await;
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"outside").unwrap();
    std::os::unix::fs::symlink(outside.path(), s.path("escape")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), s.path("link")).unwrap();
    let mut c = s.login().await;
    for path in [
        "../../../../etc/passwd",
        "/../../etc/passwd",
        "..\\..\\etc\\passwd",
        "escape/secret",
        "link",
    ] {
        c.expect("EPSV", 229).await;
        let r = c.cmd(&format!("RETR {path}")).await;
        assert_eq!(r.code, 550, "RETR {path}: {r:?}");
    }
    c.expect("CWD escape", 550).await;
    c.expect("CWD ../..", 250).await;
    let r = c.expect("PWD", 257).await;
    assert!(r.text().starts_with("\"/\""));
    c.expect("EPSV", 229).await;
    let r = c.cmd("STOR ../../outside-write").await;
    assert_eq!(r.code, 150);
    // Written inside the root, as /outside-write.
    let _ = c.read_reply().await;
    assert!(!outside.path().join("outside-write").exists());
}

#[tokio::test]
async fn login_timeout_closes_silent_connections() {
    let s = TestServer::start_with(|c| c.login_timeout = Duration::from_millis(300)).await;
    let mut c = s.connect().await;
    let r = c.read_reply().await;
    assert_eq!(r.code, 421);
    assert!(c.closed().await);
}

#[tokio::test]
async fn idle_timeout_sends_421() {
    let s = TestServer::start_with(|c| c.idle_timeout = Duration::from_millis(300)).await;
    let mut c = s.login().await;
    let r = c.read_reply().await;
    assert_eq!(r.code, 421);
    assert!(c.closed().await);
}

#[tokio::test]
async fn connection_flood_is_capped_and_the_server_recovers() {
    let s = TestServer::start_with(|c| {
        c.max_sessions = 20;
        c.max_sessions_per_ip = 10;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(s.connect().await);
    }
    // The 11th from the same IP is told why and closed.
    let mut extra = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(&mut extra, &mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        buf[..n].starts_with(b"421"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    // A burst of connect/close cycles does not wedge anything.
    for _ in 0..200 {
        if let Ok(mut t) = tokio::net::TcpStream::connect(s.addr()).await {
            let _ = t.shutdown().await;
        }
    }
    drop(held);
    // The places come back as the server sees those connections end.
    let wait = Deadline::new("the server to admit connections again");
    let mut c = loop {
        match Ctrl::try_connect(s.addr()).await {
            Ok(c) => break c,
            Err(refused) => assert_eq!(refused.code, 421, "{refused:?}"),
        }
        wait.tick().await;
    };
    c.login(USER, PASSWORD).await;
    c.expect("NOOP", 200).await;
}

#[tokio::test]
async fn pipelined_commands_are_answered_in_order() {
    let s = TestServer::start().await;
    let mut c = s.login().await;
    c.send_raw(b"NOOP\r\nPWD\r\nSYST\r\nTYPE I\r\n").await;
    let codes = [
        c.read_reply().await.code,
        c.read_reply().await.code,
        c.read_reply().await.code,
        c.read_reply().await.code,
    ];
    assert_eq!(codes, [200, 257, 215, 200]);
}

#[tokio::test]
async fn password_guessing_from_one_address_is_cut_off() {
    let s = TestServer::start_with(|c| c.max_failed_logins_per_ip = 5).await;
    for _ in 0..2 {
        let mut c = s.connect().await;
        for _ in 0..3 {
            c.expect(&format!("USER {USER}"), 331).await;
            let r = c.cmd("PASS guess").await;
            if r.code == 421 {
                break;
            }
            assert_eq!(r.code, 530);
        }
    }
    // Even the right password is refused now, before any hashing, with the reason.
    let mut c = s.connect().await;
    c.expect(&format!("USER {USER}"), 331).await;
    let r = c.expect(&format!("PASS {PASSWORD}"), 421).await;
    assert!(r.text().contains("failed logins"), "{r:?}");
    assert!(c.closed().await);
}

/// Sessions sending commands drawn at random (every verb, unknown ones, hostile arguments,
/// now and then a NUL, an invalid UTF-8 or a control byte),
/// opening, feeding, draining or dropping data connections at random: every line gets a
/// well-formed reply, no session is closed on us, nothing is written through a link out of
/// the root, and the server serves a plain session afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_command_soup_gets_a_reply_for_every_line() {
    let outside = tempfile::tempdir().unwrap();
    let s = TestServer::start_with(|c| {
        c.data_connect_timeout = Duration::from_millis(300);
        c.max_login_attempts = 100_000;
        c.max_failed_logins_per_ip = 0;
        c.login_failure_delay = Duration::from_millis(1);
    })
    .await;
    std::os::unix::fs::symlink(outside.path(), s.path("out")).unwrap();
    std::fs::create_dir(s.path("dir")).unwrap();
    std::fs::write(s.path("a"), content(5000, 1)).unwrap();
    let (count, commands, first) = soup::soup_knobs(4, 300);
    let mut sessions = tokio::task::JoinSet::new();
    for seed in first..first + count {
        let addr = s.addr();
        sessions.spawn(async move {
            let mut c = Ctrl::connect(addr).await;
            c.login(USER, PASSWORD).await;
            soup::soup(&mut c, addr.ip(), seed, commands).await;
        });
    }
    while let Some(r) = sessions.join_next().await {
        r.unwrap();
    }
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    let mut c = s.login().await;
    c.expect("NOOP", 200).await;
    let (listing, done) = c.retr_passive("NLST").await;
    assert_eq!(done.code, 226, "{done:?}");
    assert!(!listing.is_empty());
}
