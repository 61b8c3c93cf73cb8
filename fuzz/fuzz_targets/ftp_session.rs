//! Any bytes as the control stream of one FTP session, on a server whose every login gets a
//! fresh in-memory tree: the session never panics, and it ends once the client has closed its
//! side (no hang, whatever was asked before).
//!
//! The first byte chooses whether the session logs in before the input (odd) or starts
//! with it (even), so that most runs reach the commands behind the login. The server and the
//! fuzzing client both sit on 127.0.0.9, where nothing else listens, so `PORT`/`EPRT` (which
//! must name the client's address) can only reach this server's own ports.
#![no_main]
#[path = "common/mod.rs"]
mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use ferry_ftpd::{Server, ServerConfig};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOST: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9));
/// Longer than any timer the server is given below, so only a real hang gets here.
const SESSION_END: Duration = Duration::from_secs(60);

struct Harness {
    runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let runtime = common::runtime();
        let auth = common::users();
        let storage = common::memory_storage();
        let config = ServerConfig {
            listen: vec![SocketAddr::new(HOST, 0)],
            data_connect_timeout: Duration::from_millis(200),
            data_stall_timeout: Duration::from_millis(500),
            login_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(5),
            login_failure_delay: Duration::ZERO,
            max_failed_logins_per_ip: 0,
            max_sessions_per_ip: 0,
            ..ServerConfig::default()
        };
        let server = runtime.block_on(async { Server::bind(config, auth, storage).expect("bind") });
        let addr = server.local_addrs()[0];
        runtime.spawn(server.run(std::future::pending::<()>()));
        Harness { runtime, addr }
    })
}

async fn session(addr: SocketAddr, data: &[u8]) {
    let socket = common::client_socket(HOST);
    let mut stream = socket.connect(addr).await.expect("connect");
    let (login, input) = match data.split_first() {
        Some((first, rest)) => (first % 2 == 1, rest),
        None => (false, data),
    };
    let (mut rx, mut tx) = stream.split();
    let write = async {
        if login {
            tx.write_all(b"USER fuzz\r\nPASS fuzz\r\n").await?;
        }
        tx.write_all(input).await?;
        tx.shutdown().await
    };
    let read = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match rx.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    // The server may close first (QUIT, too many bad commands): a failed write is fine.
    let both = async {
        let (_, ()) = tokio::join!(write, read);
    };
    if tokio::time::timeout(SESSION_END, both).await.is_err() {
        panic!("the session did not end after the client closed its side");
    }
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    h.runtime.block_on(session(h.addr, data));
});
