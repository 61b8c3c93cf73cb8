//! Every client operation against Ferry's own server, in each data mode, on IPv4 and IPv6.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::{TestServer, WAIT, content, sha256};
use ferry_client::{Client, ConnectOptions, Dialogue, EntryKind, Error, Mode, StoreMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MODES: [Mode; 4] = [Mode::Auto, Mode::Passive, Mode::Epsv, Mode::Active];

async fn connect(server: &TestServer, mode: Mode) -> Client {
    let opts = ConnectOptions {
        mode,
        ..ConnectOptions::default()
    };
    let mut c = Client::connect(server.addr, opts).await.unwrap();
    c.login(common::USER, common::PASSWORD).await.unwrap();
    c
}

async fn upload(c: &mut Client, path: &str, mode: StoreMode, bytes: &[u8]) {
    let mut up = c.store(path, mode).await.unwrap();
    up.write_all(bytes).await.unwrap();
    assert_eq!(up.sent(), bytes.len() as u64);
    up.finish().await.unwrap();
}

async fn download(c: &mut Client, path: &str, offset: u64) -> Vec<u8> {
    let mut down = c.retrieve(path, offset).await.unwrap();
    let mut out = Vec::new();
    down.read_to_end(&mut out).await.unwrap();
    down.finish().await.unwrap();
    out
}

async fn exercise(listen: &str, mode: Mode) {
    let server = TestServer::start(listen.parse().unwrap()).await;
    let mut c = connect(&server, mode).await;
    assert!(c.features().has("MLST"), "{:?}", c.features());
    assert_eq!(c.pwd().await.unwrap(), "/");

    c.mkdir("dir one").await.unwrap();
    c.cwd("dir one").await.unwrap();
    assert_eq!(c.pwd().await.unwrap(), "/dir one");

    let body = content(1_000_003, 7);
    upload(&mut c, "big.bin", StoreMode::Replace, &body).await;
    assert_eq!(
        sha256(&std::fs::read(server.path("dir one/big.bin")).unwrap()),
        sha256(&body)
    );
    assert_eq!(c.size("big.bin").await.unwrap(), body.len() as u64);
    let mtime = c.mdtm("big.bin").await.unwrap();
    assert!(mtime > 1_600_000_000);

    let got = download(&mut c, "big.bin", 0).await;
    assert_eq!(sha256(&got), sha256(&body), "{mode}");
    let tail = download(&mut c, "big.bin", 999_000).await;
    assert_eq!(tail, body[999_000..]);

    // Append and resume-at-offset uploads.
    upload(&mut c, "a.txt", StoreMode::Replace, b"hello ").await;
    upload(&mut c, "a.txt", StoreMode::Append, b"world").await;
    assert_eq!(download(&mut c, "a.txt", 0).await, b"hello world");
    upload(&mut c, "a.txt", StoreMode::At(6), b"there").await;
    assert_eq!(download(&mut c, "a.txt", 0).await, b"hello there");
    upload(&mut c, "empty", StoreMode::Replace, b"").await;
    assert_eq!(download(&mut c, "empty", 0).await, b"");

    // Listings: MLSD, LIST (parsed) and NLST.
    let mut entries = c.list(None).await.unwrap();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["a.txt", "big.bin", "empty"]);
    assert_eq!(entries[1].size, Some(body.len() as u64));
    assert_eq!(entries[1].mtime, Some(mtime));
    assert_eq!(entries[1].kind, EntryKind::File);
    let raw = c.listing_raw("LIST", None).await.unwrap();
    let listed = ferry_proto::listing::parse_list(&raw, mtime + 10);
    assert_eq!(listed.len(), 3, "{}", String::from_utf8_lossy(&raw));
    assert!(
        listed
            .iter()
            .any(|e| e.name == "big.bin" && e.size == Some(1_000_003))
    );
    let mut nl = c.nlst(None).await.unwrap();
    nl.sort();
    assert_eq!(nl, ["a.txt", "big.bin", "empty"]);

    c.cdup().await.unwrap();
    let top = c.list(Some("/")).await.unwrap();
    assert_eq!(top.len(), 1);
    assert_eq!(top[0].kind, EntryKind::Dir);
    assert_eq!(top[0].name, "dir one");

    // Rename, delete, rmdir; errors are typed.
    c.rename("dir one/a.txt", "dir one/b.txt").await.unwrap();
    assert!(server.path("dir one/b.txt").exists());
    let e = c.delete("dir one/nope").await.unwrap_err();
    assert_eq!(e.exit_code(), 4, "{e}");
    assert!(c.retrieve("nope", 0).await.unwrap_err().is_not_found());
    for f in ["b.txt", "big.bin", "empty"] {
        c.delete(&format!("dir one/{f}")).await.unwrap();
    }
    c.rmdir("dir one").await.unwrap();
    assert!(!server.path("dir one").exists());

    // Raw commands: error replies come back as replies.
    assert_eq!(c.quote("NOOP").await.unwrap().code, 200);
    assert!(c.quote("XYZZY").await.unwrap().is_error());
    c.quit().await.unwrap();
}

#[tokio::test]
async fn all_operations_ipv4_every_mode() {
    for mode in MODES {
        tokio::time::timeout(WAIT, exercise("127.0.0.1:0", mode))
            .await
            .unwrap_or_else(|_| panic!("{mode} timed out"));
    }
}

#[tokio::test]
async fn all_operations_ipv6_every_mode() {
    common::require_ipv6();
    for mode in MODES {
        tokio::time::timeout(WAIT, exercise("[::1]:0", mode))
            .await
            .unwrap_or_else(|_| panic!("{mode} timed out"));
    }
}

#[tokio::test]
async fn login_refused_and_masked_dialogue() {
    let server = TestServer::start("127.0.0.1:0".parse().unwrap()).await;
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = log.clone();
    let opts = ConnectOptions {
        observer: Some(Arc::new(move |d: Dialogue<'_>| {
            let line = match d {
                Dialogue::Sent(s) => format!("> {s}"),
                Dialogue::Received(r) => format!("< {} {}", r.code, r.text()),
                Dialogue::Note(n) => format!("* {n}"),
            };
            sink.lock().unwrap().push(line);
        })),
        ..ConnectOptions::default()
    };
    let mut c = Client::connect(server.addr, opts.clone()).await.unwrap();
    let e = c.login(common::USER, "wrong password").await.unwrap_err();
    assert!(matches!(e, Error::LoginRefused(_)), "{e}");
    assert_eq!(e.exit_code(), 3);
    let mut c = Client::connect(server.addr, opts).await.unwrap();
    c.login(common::USER, common::PASSWORD).await.unwrap();
    let log = log.lock().unwrap().join("\n");
    assert!(log.contains("> PASS ****"), "{log}");
    assert!(!log.contains("correct horse"), "{log}");
    assert!(!log.contains("wrong password"), "{log}");
    assert!(log.contains("< 230"), "{log}");
    assert!(log.contains("> TYPE I"), "{log}");
}

#[tokio::test]
async fn path_with_newline_is_refused_locally() {
    let server = TestServer::start("127.0.0.1:0".parse().unwrap()).await;
    let mut c = connect(&server, Mode::Auto).await;
    let e = c.delete("a\r\nDELE b").await.unwrap_err();
    assert_eq!(e.exit_code(), 2);
    c.noop().await.unwrap();
}

#[tokio::test]
async fn connect_timeout_and_refused_are_network_errors() {
    // A port nobody listens on: connection refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = Client::connect(("127.0.0.1", port), ConnectOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), 5, "{e}");
}

/// A scripted server: answers each command from a table; refuses EPSV; its PASV names a
/// private address, which the client must replace by the control peer's.
#[tokio::test]
async fn auto_falls_back_to_pasv_and_ignores_private_pasv_address() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::TcpListener;

    let ctrl = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let data = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = ctrl.local_addr().unwrap();
    let dport = data.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (s, _) = ctrl.accept().await.unwrap();
        let (r, mut w) = s.into_split();
        let mut lines = BufReader::new(r).lines();
        w.write_all(b"220 fake\r\n").await.unwrap();
        while let Some(line) = lines.next_line().await.unwrap() {
            let verb = line.split(' ').next().unwrap().to_ascii_uppercase();
            let reply = match verb.as_str() {
                "USER" => "331 pw".to_string(),
                "PASS" => "230 ok".to_string(),
                "FEAT" => "211-Features:\r\n SIZE\r\n211 End".to_string(),
                "TYPE" => "200 ok".to_string(),
                "EPSV" => "500 EPSV not understood".to_string(),
                "PASV" => format!(
                    "227 Entering Passive Mode (10,9,8,7,{},{})",
                    dport >> 8,
                    dport & 0xff
                ),
                "RETR" => {
                    w.write_all(b"150 here\r\n").await.unwrap();
                    let (mut d, _) = data.accept().await.unwrap();
                    d.write_all(b"payload").await.unwrap();
                    drop(d);
                    "226 done".to_string()
                }
                "QUIT" => "221 bye".to_string(),
                _ => "502 no".to_string(),
            };
            w.write_all(format!("{reply}\r\n").as_bytes())
                .await
                .unwrap();
        }
    });
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = log.clone();
    let opts = ConnectOptions {
        observer: Some(Arc::new(move |d: Dialogue<'_>| {
            if let Dialogue::Sent(s) = d {
                sink.lock().unwrap().push(s.to_string());
            }
        })),
        ..ConnectOptions::default()
    };
    let run = async {
        let mut c = Client::connect(addr, opts).await.unwrap();
        c.login("u", "p").await.unwrap();
        assert_eq!(download(&mut c, "f", 0).await, b"payload");
        // EPSV is not tried again once refused.
        assert_eq!(download_err_free(&mut c).await, 0);
        c.quit().await.unwrap();
    };
    tokio::time::timeout(WAIT, run).await.unwrap();
    let _ = server.await;
    let log = log.lock().unwrap();
    assert_eq!(log.iter().filter(|l| *l == "EPSV").count(), 1, "{log:?}");
}

async fn download_err_free(c: &mut Client) -> usize {
    let got = download(c, "g", 0).await;
    assert_eq!(got, b"payload");
    0
}

#[test]
fn addresses_are_socket_addrs() {
    let _: SocketAddr = "[::1]:21".parse().unwrap();
}
