//! Limits one client cannot get around by spreading itself over many connections: password
//! guesses per address, connections per address; and guesses for one user that slow the
//! guesser without locking the user out.
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
/// The guesser is on `::1`, the user on 127.0.0.1 (hence `ipv6` in the name).
async fn a_guesser_slows_itself_but_cannot_lock_the_user_out_ipv6() {
    const LIMIT: u32 = 3;
    require_ipv6();
    let s = TestServer::start_with(|c| {
        c.listen = vec!["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()];
        c.max_failed_logins_per_user = LIMIT;
        c.max_sessions_per_ip = 0;
    })
    .await;
    let attacker = *s.addrs.iter().find(|a| a.is_ipv6()).unwrap();
    let user = *s.addrs.iter().find(|a| a.is_ipv4()).unwrap();
    // The attacker (from ::1) uses up the name's failures, answered at once.
    for i in 0..LIMIT {
        let mut c = Ctrl::connect(attacker).await;
        c.expect(&format!("USER {USER}"), 331).await;
        c.expect(&format!("PASS guess{i}"), 530).await;
    }
    // Its next guess is held back (the first slowdown is a second, doubling)...
    let mut guesser = Ctrl::connect(attacker).await;
    guesser.expect(&format!("USER {USER}"), 331).await;
    guesser.send_raw(b"PASS guess-again\r\n").await;
    let held = tokio::time::timeout(std::time::Duration::from_millis(300), guesser.read_reply());
    assert!(held.await.is_err(), "the guesser was answered at once");
    // ...while the user, from an address that has not failed, logs in at once, and again.
    for _ in 0..2 {
        let mut c = Ctrl::connect(user).await;
        c.login(USER, PASSWORD).await;
    }
    // The guess held back is checked in the end (and is wrong).
    assert_eq!(guesser.read_reply().await.code, 530);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_holds_at_most_max_sessions_per_user() {
    let s = TestServer::start_with(|c| c.max_sessions_per_user = 2).await;
    let mut first = s.login().await;
    let _second = s.login().await;
    let mut c = s.connect().await;
    c.expect(&format!("USER {USER}"), 331).await;
    let r = c.expect(&format!("PASS {PASSWORD}"), 421).await;
    assert!(r.text().contains("too many sessions"), "{r:?}");
    // Another user is not affected.
    s.connect().await.login(READER, PASSWORD).await;
    // A session that ends gives its place back.
    first.expect("QUIT", 221).await;
    assert!(first.closed().await);
    let deadline = Deadline::new("a place given back");
    loop {
        let mut c = s.connect().await;
        c.expect(&format!("USER {USER}"), 331).await;
        if c.cmd(&format!("PASS {PASSWORD}")).await.code == 230 {
            break;
        }
        deadline.tick().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_logs_in_only_from_allowed_networks() {
    let s = TestServer::start_with_users(
        |_| {},
        |users| {
            users[0].allowed_networks = vec!["192.0.2.0/24".into()];
            users[1].allowed_networks = vec!["192.0.2.0/24".into(), "127.0.0.0/8".into()];
        },
    )
    .await;
    // The right password from outside the networks is answered as a wrong one.
    let mut c = s.connect().await;
    c.expect(&format!("USER {USER}"), 331).await;
    c.expect(&format!("PASS {PASSWORD}"), 530).await;
    s.connect().await.login(READER, PASSWORD).await;
}
