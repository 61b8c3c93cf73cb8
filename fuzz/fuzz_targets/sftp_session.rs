//! Any bytes as the SFTP stream of one logged-in SSH session (what a client sends on the
//! `sftp` subsystem's channel, then end of file), on a server whose every login gets a fresh
//! in-memory tree: the session never panics, and the server closes the channel once the
//! client has ended its side and every request has been answered (no hang).
//!
//! The SSH transport is real (russh on 127.0.0.10), so the target covers the request loop as
//! it runs: framing over channel data, pipelining, handles, limits.
#![no_main]
#[path = "common/mod.rs"]
mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ferry_sftpd::{SftpConfig, SftpServer};
use libfuzzer_sys::fuzz_target;
use russh::ChannelMsg;
use russh::client;
use russh::keys::PublicKeyOrCertificate;

/// Its own loopback address, apart from `ftp_session`'s, so that the two can run side by side.
const HOST: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10));
/// Longer than any timer the server is given below, so only a real hang gets here.
const SESSION_END: Duration = Duration::from_secs(60);

struct Harness {
    runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
    _state: tempfile::TempDir,
}

struct TrustAll;

impl client::Handler for TrustAll {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let runtime = common::runtime();
        let auth = common::users();
        let storage = common::memory_storage();
        let state = tempfile::tempdir().expect("state dir");
        let mut config = SftpConfig::new(state.path());
        config.auth_rejection_time = Duration::ZERO;
        config.max_failed_logins_per_ip = 0;
        config.idle_timeout = Duration::from_secs(5);
        config.limits.idle_timeout = Duration::from_secs(5);
        let server = SftpServer::new(config, auth, storage).expect("server");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(SocketAddr::new(HOST, 0)))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        runtime.spawn(async move { server.serve(listener, std::future::pending::<()>()).await });
        Harness {
            runtime,
            addr,
            _state: state,
        }
    })
}

async fn session(addr: SocketAddr, data: &[u8]) {
    let socket = common::client_socket(HOST);
    let stream = socket.connect(addr).await.expect("connect");
    // As real clients do: without it, each small write waits for the last one's delayed
    // acknowledgement, and a run spends most of its time idle.
    stream.set_nodelay(true).expect("nodelay");
    // Plain X25519 rather than the default hybrid post-quantum exchange: the key exchange
    // is not what this target tests, and each run pays for one.
    let config = Arc::new(client::Config {
        preferred: russh::Preferred {
            kex: std::borrow::Cow::Borrowed(&[russh::kex::CURVE25519]),
            ..russh::Preferred::DEFAULT
        },
        ..client::Config::default()
    });
    let mut ssh = client::connect_stream(config, stream, TrustAll)
        .await
        .expect("ssh handshake");
    let ok = ssh
        .authenticate_password(common::USER, common::USER)
        .await
        .expect("login")
        .success();
    assert!(ok, "login refused");
    let mut channel = ssh.channel_open_session().await.expect("channel");
    channel
        .request_subsystem(true, "sftp")
        .await
        .expect("subsystem");
    // The server may end the channel first (a malformed packet): a failed send is fine.
    let _ = channel.data(data).await;
    let _ = channel.eof().await;
    loop {
        match channel.wait().await {
            Some(ChannelMsg::Close) | None => break,
            Some(_) => {}
        }
    }
    let _ = ssh
        .disconnect(russh::Disconnect::ByApplication, "", "")
        .await;
}

fuzz_target!(
    // Host keys are made here, before the first input (an RSA key takes seconds under the
    // sanitizer, which would count against that input's time).
    init: {
        harness();
    },
    |data: &[u8]| {
    let h = harness();
    let run = async {
        if tokio::time::timeout(SESSION_END, session(h.addr, data)).await.is_err() {
            panic!("the SFTP session did not end after the client closed its side");
        }
    };
    h.runtime.block_on(run);
}
);
