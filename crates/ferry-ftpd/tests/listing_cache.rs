//! Listing caches belong to the storage a server is given, not to the process: two servers
//! in one process, serving the same directory, keep, count and bound their listings apart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{Ctrl, PASSWORD, USER, WAIT};
use ferry_auth::{Authenticator, UserSpec};
use ferry_ftpd::{Server, ServerConfig};
use ferry_vfs::{ListCache, listcache};
use tokio::sync::oneshot;

/// A server on loopback whose user's home is `home`, listings kept in `listings`; it stops
/// when the sender is dropped.
fn serve(home: &Path, listings: Arc<ListCache>) -> (SocketAddr, oneshot::Sender<()>) {
    let config = ServerConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        login_failure_delay: Duration::from_millis(10),
        ..ServerConfig::default()
    };
    let user = UserSpec {
        name: USER.into(),
        password_hash: Some(ferry_auth::hash_password(PASSWORD)),
        authorized_keys: Vec::new(),
        authorized_keys_file: None,
        home: home.to_path_buf(),
        permissions: vec!["all".into()],
        max_sessions: None,
        allowed_networks: Vec::new(),
        upload_rate: None,
        download_rate: None,
        quota_bytes: None,
        quota_files: None,
    };
    let auth = Arc::new(Authenticator::new(vec![user]).unwrap());
    let server = Server::bind(config, auth, ferry_core::local_storage_with(listings)).unwrap();
    let addr = server.local_addrs()[0];
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// `MLSD big` on a new session: the number of files listed.
async fn mlsd_big(addr: SocketAddr) -> usize {
    let mut c = Ctrl::connect(addr).await;
    c.login(USER, PASSWORD).await;
    let (listing, done) = tokio::time::timeout(WAIT, c.retr_passive("MLSD big"))
        .await
        .expect("MLSD hung");
    assert_eq!(done.code, 226, "{done:?}");
    let listing = String::from_utf8(listing).unwrap();
    listing.lines().filter(|l| l.contains("type=file;")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_in_one_process_keep_listings_apart() {
    // tmpfs: a file system whose changes the kernel reports, so large listings are kept.
    let home = tempfile::tempdir_in("/dev/shm").unwrap();
    let big = home.path().join("big");
    std::fs::create_dir(&big).unwrap();
    for i in 0..1200 {
        std::fs::write(big.join(format!("f{i:04}")), b"x").unwrap();
    }
    let (a, b) = (Arc::new(ListCache::default()), Arc::new(ListCache::new(0)));
    let (on_a, _stop_a) = serve(home.path(), Arc::clone(&a));
    let (on_b, _stop_b) = serve(home.path(), Arc::clone(&b));

    // A keeps its listing and answers the next one from it.
    assert_eq!(mlsd_big(on_a).await, 1200);
    assert_eq!(mlsd_big(on_a).await, 1200);
    assert_eq!((a.hits(), a.kept_entries()), (1, 1200));

    // B, limited to nothing, neither uses what A keeps, nor counts in A, nor drops it.
    assert_eq!(mlsd_big(on_b).await, 1200);
    assert_eq!(mlsd_big(on_b).await, 1200);
    assert_eq!((b.hits(), b.kept_entries()), (0, 0));
    assert_eq!((a.hits(), a.kept_entries()), (1, 1200));

    // Limits change per server.
    b.set_limit(listcache::DEFAULT_LIMIT);
    assert_eq!(mlsd_big(on_b).await, 1200);
    assert_eq!(mlsd_big(on_b).await, 1200);
    assert_eq!((a.hits(), b.hits()), (1, 1));
    a.set_limit(0);
    assert_eq!((a.kept_entries(), b.kept_entries()), (0, 1200));
}
