//! The command soup: commands drawn at random (every verb, unknown ones, hostile arguments,
//! stray bytes) with data connections opened, fed, drained or dropped at random, over any
//! control connection (see `hostile.rs` and `tls.rs`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ferry_proto::Reply;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Ctrl, PASSWORD, USER, content};

/// A small deterministic generator (xorshift), so that a failing soup can be replayed.
pub struct Dice(pub u64);

impl Dice {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

/// Every verb the server knows, some it does not, and a few that are not verbs at all.
pub const SOUP_VERBS: &[&str] = &[
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
pub const SOUP_ARGS: &[&str] = &[
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

/// What the soup needs of a control connection: plain (`Ctrl`) or TLS.
pub trait SoupControl: Send {
    fn send_raw(&mut self, bytes: &[u8]) -> impl Future<Output = ()> + Send;
    fn read_reply(&mut self) -> impl Future<Output = Reply> + Send;
    /// The data connection `tcp` as the session's protection level wants it (`None`: given
    /// up, e.g. a TLS handshake that failed).
    fn data(&mut self, tcp: TcpStream) -> impl Future<Output = Option<Box<dyn DataIo>>> + Send;
    /// A reply to a line the soup sent (for state such as the protection level).
    fn observe(&mut self, _line: &str, _reply: &Reply) {}
}

/// A data connection, plain or TLS.
pub trait DataIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> DataIo for T {}

impl SoupControl for Ctrl {
    async fn send_raw(&mut self, bytes: &[u8]) {
        Ctrl::send_raw(self, bytes).await
    }
    async fn read_reply(&mut self) -> Reply {
        Ctrl::read_reply(self).await
    }
    async fn data(&mut self, tcp: TcpStream) -> Option<Box<dyn DataIo>> {
        Some(Box::new(tcp))
    }
}

/// Where a `229` or `227` reply says to connect (`None` for any other reply).
fn passive_address(ip: IpAddr, r: &Reply) -> Option<SocketAddr> {
    let text = r.text();
    match r.code {
        229 => ferry_proto::hostport::parse_epsv_reply_text(&text)
            .map(|port| SocketAddr::new(ip, port))
            .ok(),
        227 => ferry_proto::hostport::parse_pasv_reply_text(&text)
            .map(SocketAddr::V4)
            .ok(),
        _ => None,
    }
}

async fn cmd<C: SoupControl>(c: &mut C, line: &str) -> Reply {
    c.send_raw(format!("{line}\r\n").as_bytes()).await;
    c.read_reply().await
}

/// One session of the soup on `c`, logged in already: `commands` lines drawn with `seed`.
/// `ip` is the server's, for `EPSV` ports. Panics (with the seed, the line and the reply) on a
/// reply that is not well-formed, a session closed or a reply that does not come.
pub async fn soup<C: SoupControl>(c: &mut C, ip: IpAddr, seed: u64, commands: usize) {
    let trace = std::env::var_os("FERRY_SOUP_TRACE").is_some();
    let mut dice = Dice(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut passive: Option<SocketAddr> = None;
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
        if data && passive.is_none() && dice.below(10) < 7 {
            // Most transfers are asked for in passive mode, as clients do.
            let r = cmd(c, if dice.below(2) == 0 { "EPSV" } else { "PASV" }).await;
            passive = passive_address(ip, &r);
            // `PASV` after `EPSV ALL` is refused (503), as it should be.
            assert!(
                passive.is_some() || (500..600).contains(&r.code),
                "seed {seed}, command {i}: {r:?}"
            );
        }
        // Connect to the passive port first, most of the time (the server waits for the
        // connection otherwise, until its data-connect timeout).
        let mut conn = None;
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
        if trace {
            let shown = raw.escape_ascii().to_string();
            eprintln!("send {seed} {i} {shown} connected={}", conn.is_some());
        }
        c.send_raw(&raw).await;
        let r = c.read_reply().await;
        if trace {
            eprintln!("soup {seed} {upper} {}", r.code);
        }
        let ctx = format!("seed {seed}, command {i}: {line:?} -> {r:?}");
        assert!((100..600).contains(&r.code), "{ctx}");
        assert_ne!(r.code, 421, "{ctx}");
        c.observe(&line, &r);
        if matches!(upper.as_str(), "EPSV" | "PASV") {
            if let Some(a) = passive_address(ip, &r) {
                passive = Some(a);
            }
        }
        if (100..200).contains(&r.code) {
            // A transfer began: feed it, drain it, or drop the connection half way (bounded:
            // a TLS handshake the server does not expect must not hold the soup up).
            let soon = Duration::from_secs(3);
            if let Some(tcp) = conn.take() {
                if let Ok(Some(mut d)) = tokio::time::timeout(soon, c.data(tcp)).await {
                    match (upper.as_str(), dice.below(4)) {
                        (_, 0) => drop(d),
                        ("STOR" | "STOU" | "APPE", _) => {
                            let bytes = content(dice.below(20_000), seed ^ i as u64);
                            let _ = tokio::time::timeout(soon, d.write_all(&bytes)).await;
                            let _ = tokio::time::timeout(soon, d.shutdown()).await;
                        }
                        _ => {
                            let mut sink = Vec::new();
                            let _ = tokio::time::timeout(soon, d.read_to_end(&mut sink)).await;
                        }
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
            let u = if r.code == 331 {
                r
            } else {
                cmd(c, &format!("USER {USER}")).await
            };
            if u.code == 331 {
                let p = cmd(c, &format!("PASS {PASSWORD}")).await;
                assert_eq!(p.code, 230, "seed {seed}, command {i}: {p:?}");
            }
        }
    }
    let q = cmd(c, "QUIT").await;
    assert_eq!(q.code, 221, "seed {seed}: {q:?}");
}

/// `FERRY_SOUP="SESSIONS COMMANDS FIRST_SEED"`, to soak longer by hand (e.g. "16 3000 100");
/// else `sessions` sessions of `commands` lines from seed 1.
pub fn soup_knobs(sessions: u64, commands: usize) -> (u64, usize, u64) {
    let knobs: Vec<u64> = std::env::var("FERRY_SOUP")
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    match knobs[..] {
        [n, c, f] => (n, c as usize, f),
        _ => (sessions, commands, 1),
    }
}
