//! What the session targets share: a runtime, one user with a cheap password hash, and
//! storage that gives every login a fresh in-memory tree (so each input starts alike).
use std::sync::Arc;

use ferry_auth::{Authenticator, UserSpec};
use ferry_ftpd::StorageFactory;
use ferry_vfs::{MemoryFs, Storage};

/// The user's name and password.
pub const USER: &str = "fuzz";

/// A runtime with one worker beside the thread that blocks on each input.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// `USER` with password `USER` and every permission; tiny argon2 parameters keep logins
/// cheap for the fuzzer.
pub fn users() -> Arc<Authenticator> {
    let params = argon2::Params::new(8, 1, 1, None).expect("params");
    let salt = argon2::password_hash::SaltString::encode_b64(b"ferry-fuzz-salt").expect("salt");
    let hash = argon2::PasswordHasher::hash_password(
        &argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params),
        USER.as_bytes(),
        &salt,
    )
    .expect("hash")
    .to_string();
    let users = vec![UserSpec {
        name: USER.into(),
        password_hash: Some(hash),
        home: "/nonexistent".into(),
        permissions: vec!["all".into()],
        ..UserSpec::default()
    }];
    Arc::new(Authenticator::new(users).expect("users"))
}

/// A fresh in-memory tree per login.
pub fn memory_storage() -> StorageFactory {
    Arc::new(|_| Ok(Arc::new(MemoryFs::new()) as Arc<dyn Storage>))
}

/// Client ports the session targets bind before connecting, below the kernel's ephemeral
/// range (so no listener the server opens there takes one).
const CLIENT_PORTS: std::ops::Range<u16> = 10_000..30_000;
static NEXT_CLIENT_PORT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);

/// A socket bound to `host` for the fuzzing client. Letting the kernel pick the port at `bind`
/// fails once hundreds of runs a second have left every ephemeral port in TIME_WAIT; here the
/// ports are taken in turn, with `SO_REUSEADDR` so that a port whose last connection is in
/// TIME_WAIT can be bound again (loopback reuses the connection slot, `tcp_tw_reuse`), and one
/// in use otherwise is skipped.
pub fn client_socket(host: std::net::IpAddr) -> tokio::net::TcpSocket {
    let span = CLIENT_PORTS.end - CLIENT_PORTS.start;
    let mut last = None;
    for _ in 0..256 {
        let n = NEXT_CLIENT_PORT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % span;
        let socket = match host {
            std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .expect("socket");
        socket.set_reuseaddr(true).expect("reuseaddr");
        match socket.bind(std::net::SocketAddr::new(host, CLIENT_PORTS.start + n)) {
            Ok(()) => return socket,
            Err(e) => last = Some(e),
        }
    }
    panic!("no client port free on {host}: {last:?}");
}
