//! The client library against a hostile server: a fake server on loopback answers every
//! command with a reply drawn at random (the right one, a wrong code, a malformed line, a
//! reply cut short, a huge line, NUL bytes, silence, a closed connection, passive addresses
//! that point elsewhere) and treats data connections at random (data, garbage, nothing, a
//! reset), and cannot speak TLS, so every `AUTH TLS` handshake the client tries meets garbage,
//! silence or a close. Every operation must end, with a result or an error, within its
//! timeouts: no panic, no hang, no unbounded buffering.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use ferry_client::{Client, ConnectOptions, Mode, StoreMode, TlsClientConfig, TlsMode, Trust};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Deterministic dice (xorshift), so that a failing seed can be replayed.
struct Dice(u64);

impl Dice {
    fn new(seed: u64) -> Dice {
        Dice(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The reply a well-behaved server would give to `verb` (`data` is the passive port).
fn proper_reply(verb: &str, data: u16) -> String {
    let (p1, p2) = (data >> 8, data & 0xff);
    match verb {
        "USER" => "331 Password, please.\r\n".into(),
        "PASS" => "230 Logged in.\r\n".into(),
        "PWD" => "257 \"/home/x\" is the current directory.\r\n".into(),
        "SIZE" => "213 4096\r\n".into(),
        "MDTM" => "213 20201231235959\r\n".into(),
        "EPSV" => format!("229 Entering Extended Passive Mode (|||{data}|)\r\n"),
        "PASV" => format!("227 Entering Passive Mode (127,0,0,1,{p1},{p2}).\r\n"),
        "FEAT" => {
            "211-Features:\r\n AUTH TLS\r\n EPSV\r\n MLST type*;size*;\r\n SIZE\r\n REST STREAM\r\n211 End\r\n"
                .into()
        }
        // It cannot speak TLS: what follows is garbage, silence or a close (see below).
        "AUTH" => "234 Proceed.\r\n".into(),
        "REST" => "350 Restarting.\r\n".into(),
        "RNFR" => "350 Ready for RNTO.\r\n".into(),
        "RETR" | "STOR" | "APPE" | "LIST" | "NLST" | "MLSD" => "150 Opening.\r\n".into(),
        "QUIT" => "221 Bye.\r\n".into(),
        "MKD" => "257 \"/home/x/d\" created.\r\n".into(),
        _ => "250 OK.\r\n".into(),
    }
}

/// Something a broken or hostile server might say instead.
fn bad_reply(d: &mut Dice, verb: &str, data: u16) -> Vec<u8> {
    let (p1, p2) = (data >> 8, data & 0xff);
    match d.below(16) {
        0 => format!("{} Whatever.\r\n", 100 + d.below(500)).into_bytes(),
        1 => b"no code at all\r\n".to_vec(),
        2 => b"12 short\r\n".to_vec(),
        3 => b"2000 too long a code\r\n".to_vec(),
        4 => b"200-multi-line that never ends\r\n more\r\n".to_vec(),
        5 => vec![b'x'; 100_000],
        6 => b"200 nul\0in the middle \xff\xfe\r\n".to_vec(),
        7 => b"229 Entering Extended Passive Mode (|||99999|)\r\n".to_vec(),
        8 => b"229 Entering Extended Passive Mode (no port)\r\n".to_vec(),
        // A private address that is not the server's: the client must not go there (it
        // uses the control peer's address for private, loopback and unspecified ones unless
        // told to trust the reply; this test never tells it, and never names a public one).
        9 => format!("227 Entering Passive Mode (10,0,0,1,{p1},{p2}).\r\n").into_bytes(),
        10 => b"227 Entering Passive Mode (1,2,3).\r\n".to_vec(),
        11 => b"150 Here it comes.\r\n226 And it is done.\r\n".to_vec(),
        12 => format!(
            "{}-first line\r\n{} last line of another code\r\n",
            211, 212
        )
        .into_bytes(),
        13 => b"421 Going away.\r\n".to_vec(),
        14 => proper_reply(verb, data).trim_end().as_bytes().to_vec(), // no CRLF
        _ => b"\r\n\r\n".to_vec(),
    }
}

/// What the fake server does with one control connection.
async fn fake_session(mut control: TcpStream, seed: u64) {
    let mut d = Dice::new(seed);
    let data_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let data_port = data_listener.local_addr().unwrap().port();
    let greeting: &[u8] = match d.below(8) {
        0 => b"120 Soon.\r\n220 Ready.\r\n",
        1 => b"220-Welcome\r\n to the\r\n220 fake server.\r\n",
        2 => b"421 Too many.\r\n",
        3 => b"",
        _ => b"220 Ready.\r\n",
    };
    if control.write_all(greeting).await.is_err() || greeting.is_empty() {
        return;
    }
    let mut buf = Vec::new();
    loop {
        // One command line (bounded: a client that sends no newline is cut off).
        let line = loop {
            if let Some(i) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                break String::from_utf8_lossy(&line).trim_end().to_string();
            }
            if buf.len() > 64 * 1024 {
                return;
            }
            let mut chunk = [0u8; 4096];
            match control.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let verb = line
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let roll = d.below(10);
        let reply: Vec<u8> = match roll {
            0 | 1 => bad_reply(&mut d, &verb, data_port),
            // Silence: the client's reply timeout must end the wait.
            2 if d.below(4) == 0 => {
                tokio::time::sleep(Duration::from_millis(400)).await;
                continue;
            }
            3 if d.below(6) == 0 => return,
            _ => proper_reply(&verb, data_port).into_bytes(),
        };
        if control.write_all(&reply).await.is_err() {
            return;
        }
        if reply.starts_with(b"234") {
            // The client starts a handshake that can't succeed.
            match d.below(3) {
                0 => {
                    let _ = control
                        .write_all(b"\x16\x03\x03\x00\x05hello garbage\r\n")
                        .await;
                }
                1 => tokio::time::sleep(Duration::from_millis(1500)).await,
                _ => {}
            }
            return;
        }
        // A transfer "began": treat the data connection at random, then finish (or not).
        if reply.starts_with(b"150") && roll >= 4 {
            let accepted =
                tokio::time::timeout(Duration::from_millis(300), data_listener.accept()).await;
            if let Ok(Ok((mut conn, _))) = accepted {
                match d.below(5) {
                    0 => {
                        let _ = conn.write_all(&vec![b'a'; d.below(200_000)]).await;
                    }
                    1 => {
                        let _ = conn.write_all(b"drwxr-xr-x 1 a b 0 Jan 1 00:00 dir\r\n-rw-r--r-- 1 a b 5 Jan 1 2020 f\r\n\xff\0garbage\r\n").await;
                    }
                    2 => {
                        let mut sink = vec![0u8; 64 * 1024];
                        let _ =
                            tokio::time::timeout(Duration::from_millis(300), conn.read(&mut sink))
                                .await;
                    }
                    3 => {
                        let _ = conn.set_zero_linger();
                    }
                    _ => {}
                }
                drop(conn);
            }
            let done: &[u8] = match d.below(5) {
                0 => b"426 Aborted.\r\n",
                1 => b"451 Local error.\r\n",
                2 => b"",
                _ => b"226 Done.\r\n",
            };
            if control.write_all(done).await.is_err() {
                return;
            }
        }
    }
}

/// The fake server: each connection gets the next seed.
async fn fake_server(first_seed: u64) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut seed = first_seed;
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(fake_session(s, seed));
            seed += 1;
        }
    });
    addr
}

/// One client session: connect, log in, and run operations drawn with `seed`, each of which
/// must end within `limit`. Errors are expected; hanging is not.
async fn client_session(addr: SocketAddr, seed: u64) {
    let limit = Duration::from_secs(8);
    let mut d = Dice::new(seed ^ 0xC0FFEE);
    let tls = [TlsMode::Off, TlsMode::Off, TlsMode::Auto, TlsMode::Explicit][d.below(4)];
    let opts = ConnectOptions {
        mode: [Mode::Auto, Mode::Passive, Mode::Epsv][d.below(3)],
        tls,
        tls_config: (tls != TlsMode::Off).then(|| TlsClientConfig::new(Trust::Insecure).unwrap()),
        connect_timeout: Duration::from_secs(2),
        data_timeout: Duration::from_millis(500),
        reply_timeout: Duration::from_millis(700),
        idle_timeout: Duration::from_millis(700),
        ..ConnectOptions::default()
    };
    let ctx = |what: &str| format!("seed {seed}: {what} did not end in time");
    let connected = tokio::time::timeout(limit, Client::connect(addr, opts))
        .await
        .unwrap_or_else(|_| panic!("{}", ctx("connect")));
    let trace = std::env::var_os("FERRY_SOUP_TRACE").is_some();
    if trace {
        eprintln!(
            "client {seed} connect ({tls:?}): {:?}",
            connected.as_ref().err()
        );
    }
    let Ok(mut c) = connected else { return };
    let login = tokio::time::timeout(limit, c.login("u", "p"))
        .await
        .unwrap_or_else(|_| panic!("{}", ctx("login")));
    if trace {
        eprintln!("client {seed} login: {login:?}");
    }
    if login.is_err() {
        return;
    }
    for step in 0..12 {
        let what = format!("step {step}");
        let r: Result<(), String> = tokio::time::timeout(limit, async {
            match d.below(9) {
                0 => c.pwd().await.map(drop),
                1 => c.size("f").await.map(drop),
                2 => c.mdtm("f").await.map(drop),
                3 => c.list(None).await.map(drop),
                4 => c.nlst(Some("d")).await.map(drop),
                5 => c.rename("a", "b").await,
                6 => {
                    let mut down = c.retrieve("f", [0, 7][d.below(2)]).await?;
                    let mut sink = Vec::new();
                    let _ = down.read_to_end(&mut sink).await;
                    down.finish().await.map(drop)
                }
                7 => {
                    let mut up = c.store("f", StoreMode::Replace).await?;
                    let _ = up.write_all(&[b'z'; 10_000]).await;
                    up.finish().await.map(drop)
                }
                _ => c.feat().await.map(drop),
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{}", ctx(&what)))
        .map_err(|e| e.to_string());
        if trace {
            eprintln!("client {seed} {step}: {r:?}");
        }
        // An error that leaves the session unusable ends it; others go on.
        if r.is_err() && d.below(3) == 0 {
            return;
        }
    }
    let _ = tokio::time::timeout(limit, c.quit())
        .await
        .unwrap_or_else(|_| panic!("{}", ctx("quit")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_survives_a_hostile_server() {
    // FERRY_SOUP="SESSIONS FIRST_SEED" soaks longer by hand (e.g. "400 1000").
    let knobs: Vec<u64> = std::env::var("FERRY_SOUP")
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    let (count, first) = match knobs[..] {
        [n, f, ..] => (n, f),
        _ => (40, 1),
    };
    let addr = fake_server(first).await;
    let mut sessions = tokio::task::JoinSet::new();
    for seed in first..first + count {
        sessions.spawn(client_session(addr, seed));
        // A few at a time: the fake server's seeds follow the order of connections.
        if sessions.len() >= 8 {
            sessions.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(r) = sessions.join_next().await {
        r.unwrap();
    }
}
