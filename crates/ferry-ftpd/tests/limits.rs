//! Limits one client cannot get around by spreading itself over many connections: password
//! guesses per address and per user, connections per address.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use tokio::task::JoinSet;

/// How many connections guess at once (`FERRY_GUESSERS`, default 200).
fn guessers() -> usize {
    std::env::var("FERRY_GUESSERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

/// Open `n` control connections from 127.0.0.1, each after `USER user`.
async fn ready_to_guess(s: &TestServer, n: usize, user: &str) -> Vec<Ctrl> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = s.connect().await;
        c.expect(&format!("USER {user}"), 331).await;
        conns.push(c);
    }
    conns
}

/// Send every connection's `PASS` line (in order) before reading any answer, then collect the
/// answers' codes in the same order.
async fn guess_all_at_once(conns: Vec<Ctrl>, passwords: Vec<String>) -> Vec<u16> {
    let mut conns = conns;
    for (c, p) in conns.iter_mut().zip(&passwords) {
        c.send_raw(format!("PASS {p}\r\n").as_bytes()).await;
    }
    let mut replies = JoinSet::new();
    for (i, mut c) in conns.into_iter().enumerate() {
        replies.spawn(async move { (i, c.read_reply().await.code) });
    }
    let mut codes = vec![0; passwords.len()];
    while let Some(r) = replies.join_next().await {
        let (i, code) = r.unwrap();
        codes[i] = code;
    }
    codes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_from_one_address_stay_within_the_limit() {
    const LIMIT: u32 = 20;
    let n = guessers();
    let s = TestServer::start_with(|c| {
        c.max_failed_logins_per_ip = LIMIT;
        c.max_sessions_per_ip = 0;
    })
    .await;
    let conns = ready_to_guess(&s, n, USER).await;
    let mut passwords: Vec<String> = (0..n - 1).map(|i| format!("guess{i}")).collect();
    passwords.push(PASSWORD.to_string());
    let started = std::time::Instant::now();
    let codes = guess_all_at_once(conns, passwords).await;
    let checked = codes.iter().filter(|c| **c == 530).count();
    let refused = codes.iter().filter(|c| **c == 421).count();
    let right = codes[n - 1];
    eprintln!(
        "{n} parallel guesses: {checked} checked (530), {refused} refused (421), the right \
         password last got {right}, in {:?}",
        started.elapsed()
    );
    assert!(
        checked <= LIMIT as usize,
        "{checked} wrong passwords were checked; the limit is {LIMIT}"
    );
    for (i, code) in codes[..n - 1].iter().enumerate() {
        assert!(
            *code == 530 || *code == 421,
            "guess {i} got {code}, {codes:?}"
        );
    }
    // The right password, sent last, was either refused or checked in a place of its own
    // (a right password gives its place back, so it never costs a wrong guess its place).
    assert!(right == 421 || right == 230, "{codes:?}");
    // Within the window, even the right password is refused now, before any hashing.
    let mut c = s.connect().await;
    c.expect(&format!("USER {USER}"), 331).await;
    let r = c.expect(&format!("PASS {PASSWORD}"), 421).await;
    assert!(r.text().contains("failed logins"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_for_one_user_are_limited_when_configured() {
    const LIMIT: u32 = 5;
    let s = TestServer::start_with(|c| {
        c.max_failed_logins_per_ip = 0;
        c.max_failed_logins_per_user = LIMIT;
        c.max_sessions_per_ip = 0;
    })
    .await;
    let n = 40;
    let conns = ready_to_guess(&s, n, USER).await;
    let passwords = (0..n).map(|i| format!("guess{i}")).collect();
    let codes = guess_all_at_once(conns, passwords).await;
    let checked = codes.iter().filter(|c| **c == 530).count();
    assert!(checked <= LIMIT as usize, "{codes:?}");
    assert!(codes.iter().all(|c| *c == 530 || *c == 421), "{codes:?}");
    let mut c = s.connect().await;
    c.expect(&format!("USER {USER}"), 331).await;
    let r = c.expect(&format!("PASS {PASSWORD}"), 421).await;
    assert!(r.text().contains("this user"), "{r:?}");
    // Other users are not affected.
    let mut c = s.connect().await;
    c.login(READER, PASSWORD).await;
}
