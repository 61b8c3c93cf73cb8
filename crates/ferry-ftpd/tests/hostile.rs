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
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = s.login().await;
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

/// A small deterministic generator (xorshift), so that a failing soup can be replayed.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

/// Every verb the server knows, some it does not, and a few that are not verbs at all.
const SOUP_VERBS: &[&str] = &[
    "USER",
    "PASS",
    "ACCT",
    "CWD",
    "XCWD",
    "CDUP",
    "XCUP",
    "SMNT",
    "REIN",
    "PORT",
    "PASV",
    "EPSV",
    "EPRT",
    "TYPE",
    "STRU",
    "MODE",
    "RETR",
    "STOR",
    "STOU",
    "APPE",
    "ALLO",
    "REST",
    "RNFR",
    "RNTO",
    "ABOR",
    "DELE",
    "RMD",
    "XRMD",
    "MKD",
    "XMKD",
    "PWD",
    "XPWD",
    "LIST",
    "NLST",
    "MLSD",
    "MLST",
    "SITE",
    "SYST",
    "STAT",
    "HELP",
    "NOOP",
    "FEAT",
    "OPTS",
    "AUTH",
    "PBSZ",
    "PROT",
    "CCC",
    "MDTM",
    "MFMT",
    "SIZE",
    "LANG",
    "HOST",
    "CLNT",
    "EPSV",
    "PASV",
    "FOO",
    "retr",
    "list",
    "St\u{f6}r",
    "X",
    "",
];

/// Arguments: names good and bad, traversal, links out of the root, numbers out of range,
/// addresses (loopback only, or malformed), and text a reply must not echo raw.
const SOUP_ARGS: &[&str] = &[
    "",
    "a",
    "b",
    "dir",
    "dir/a",
    "dir/sub",
    ".",
    "..",
    "../..",
    "/",
    "//",
    "/../../etc/passwd",
    "out",
    "out/x",
    "out/../x",
    "..\\..\\x",
    "*",
    "-la",
    "-a dir",
    "a b",
    " a",
    "n\u{e4}me",
    "\u{1f600}",
    "0",
    "1",
    "100",
    "-1",
    "99999999999999999999",
    "18446744073709551615",
    "A",
    "I",
    "E",
    "L 8",
    "A N",
    "F",
    "R",
    "P",
    "S",
    "Z",
    "TLS",
    "SSL",
    "C",
    "UTF8 ON",
    "MLST type;size;modify;",
    "127,0,0,1,0,1",
    "127,0,0,1,300,1",
    "1,2,3",
    "127.0.0.1,0,1",
    "|1|127.0.0.1|1|",
    "|2|::1|1|",
    "|1|127.0.0.1|0|",
    "|3|x|1|",
    "||||",
    "ALL",
    "20201231235959 a",
    "99999999999999 a",
    "20201231235959",
    "CHMOD 777 a",
    "CHMOD 9999 a",
    "HELP",
    "UMASK 077",
    "a\rb",
    "a\tb",
    "%s%n%x",
    "$(id)",
    "`id`",
    "anonymous",
    "reader",
];

async fn soup(addr: std::net::SocketAddr, seed: u64, commands: usize) {
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpStream;

    let mut dice = Dice(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut c = Ctrl::connect(addr).await;
    c.login(USER, PASSWORD).await;
    let mut passive: Option<std::net::SocketAddr> = None;
    let long = "n".repeat(300);
    for i in 0..commands {
        let verb = dice.pick(SOUP_VERBS);
        let arg = match dice.below(12) {
            0 => long.as_str(),
            _ => dice.pick(SOUP_ARGS),
        };
        let line = if arg.is_empty() {
            verb.to_string()
        } else {
            format!("{verb} {arg}")
        };
        if line.trim().is_empty() {
            // Ignored by the server, with no reply: the next reply shows nothing went astray.
            c.send_raw(format!("{line}\r\n").as_bytes()).await;
            continue;
        }
        let upper = verb.to_ascii_uppercase();
        let data = matches!(
            upper.as_str(),
            "RETR" | "STOR" | "STOU" | "APPE" | "LIST" | "NLST" | "MLSD"
        );
        // Connect to the passive port first, most of the time (the server waits for the
        // connection otherwise, until its data-connect timeout).
        let mut conn = None;
        if data && passive.is_none() && dice.below(10) < 7 {
            // Most transfers are asked for in passive mode, as clients do.
            let r = c
                .cmd(if dice.below(2) == 0 { "EPSV" } else { "PASV" })
                .await;
            let text = r.text();
            passive = match r.code {
                229 => ferry_proto::hostport::parse_epsv_reply_text(&text)
                    .map(|port| std::net::SocketAddr::new(addr.ip(), port))
                    .ok(),
                227 => ferry_proto::hostport::parse_pasv_reply_text(&text)
                    .map(std::net::SocketAddr::V4)
                    .ok(),
                // `PASV` after `EPSV ALL` is refused (503), as it should be.
                code => {
                    assert!(
                        (500..600).contains(&code),
                        "seed {seed}, command {i}: {r:?}"
                    );
                    None
                }
            };
        }
        if data {
            if let Some(a) = passive.take() {
                if dice.below(5) != 0 {
                    conn = TcpStream::connect(a).await.ok();
                }
            }
        }
        let mut raw = line.clone().into_bytes();
        if dice.below(15) == 0 {
            // A byte the line may not hold: NUL, invalid UTF-8, a control character. (Not
            // 0xff: that is Telnet's IAC, which takes the next byte with it, and a line left
            // empty by that is ignored without a reply, as an empty line is.)
            let at = dice.below(raw.len());
            raw[at] = [0x00, 0xfe, 0xc3, 0x80, 0x1b, 0x7f][dice.below(6)];
        }
        raw.extend_from_slice(b"\r\n");
        if std::env::var_os("FERRY_SOUP_TRACE").is_some() {
            let shown = raw.escape_ascii().to_string();
            eprintln!("send {seed} {i} {shown} connected={}", conn.is_some());
        }
        c.send_raw(&raw).await;
        let r = c.read_reply().await;
        if std::env::var_os("FERRY_SOUP_TRACE").is_some() {
            eprintln!("soup {seed} {upper} {}", r.code);
        }
        let ctx = format!("seed {seed}, command {i}: {line:?} -> {r:?}");
        assert!((100..600).contains(&r.code), "{ctx}");
        assert_ne!(r.code, 421, "{ctx}");
        match (upper.as_str(), r.code) {
            ("EPSV", 229) => {
                let port = ferry_proto::hostport::parse_epsv_reply_text(&r.text()).unwrap();
                passive = Some(std::net::SocketAddr::new(addr.ip(), port));
            }
            ("PASV", 227) => {
                let v4 = ferry_proto::hostport::parse_pasv_reply_text(&r.text()).unwrap();
                passive = Some(std::net::SocketAddr::V4(v4));
            }
            _ => {}
        }
        if (100..200).contains(&r.code) {
            // A transfer began: feed it, drain it, or drop the connection half way.
            if let Some(mut d) = conn.take() {
                match (upper.as_str(), dice.below(4)) {
                    (_, 0) => drop(d),
                    ("STOR" | "STOU" | "APPE", _) => {
                        let bytes = content(dice.below(20_000), seed ^ i as u64);
                        let _ = d.write_all(&bytes).await;
                        let _ = d.shutdown().await;
                    }
                    _ => {
                        let mut sink = Vec::new();
                        let _ = tokio::time::timeout(WAIT, d.read_to_end(&mut sink)).await;
                    }
                }
            }
            let done = c.read_reply().await;
            let ctx = format!("seed {seed}, command {i}: {line:?} -> {r:?}, then {done:?}");
            assert!((200..600).contains(&done.code), "{ctx}");
            assert_ne!(done.code, 421, "{ctx}");
        }
        if data {
            passive = None;
        }
        // Logged out (`REIN`, a `USER` or `PASS` at random): log in again, so that the soup
        // keeps reaching the commands behind the login.
        if r.code == 530 || upper == "REIN" || upper == "USER" {
            if r.code == 331 {
                c.expect(&format!("PASS {PASSWORD}"), 230).await;
            } else {
                c.send_raw(format!("USER {USER}\r\n").as_bytes()).await;
                let u = c.read_reply().await;
                if u.code == 331 {
                    c.expect(&format!("PASS {PASSWORD}"), 230).await;
                }
            }
        }
    }
    c.expect("QUIT", 221).await;
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
    // FERRY_SOUP="SESSIONS COMMANDS FIRST_SEED" soaks longer by hand (e.g. "16 5000 100").
    let knobs: Vec<u64> = std::env::var("FERRY_SOUP")
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    let (count, commands, first) = match knobs[..] {
        [n, c, f] => (n, c as usize, f),
        _ => (4, 300, 1),
    };
    let mut sessions = tokio::task::JoinSet::new();
    for seed in first..first + count {
        sessions.spawn(soup(s.addr(), seed, commands));
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
