//! Listings of one local directory share one read of it (`ferry_vfs::listcache`); each test
//! reads the counters of its own [`ListCache`].
#![allow(clippy::unwrap_used)]

use ferry_vfs::Entry;
use ferry_vfs::VPath;
use std::sync::Arc;

use ferry_vfs::{ListCache, LocalFs, Storage};

async fn list(fs: &LocalFs, path: &str) -> Vec<Entry> {
    fs.list_sorted(&VPath::root().resolve(path).unwrap())
        .await
        .unwrap()
        .collect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_of_one_directory_share_its_read() {
    let root = tempfile::tempdir_in("/dev/shm").unwrap();
    let big = root.path().join("shared");
    std::fs::create_dir(&big).unwrap();
    for i in 0..3000 {
        std::fs::write(big.join(format!("s{i:04}")), b"x").unwrap();
    }
    // Too many entries to keep: only sharing can spare a second read.
    let cache = Arc::new(ListCache::new(1000));
    let fs = LocalFs::with_cache(root.path(), Arc::clone(&cache)).unwrap();
    let path = VPath::root().resolve("/shared").unwrap();

    // A listing that has begun and is not being taken...
    let mut first = fs.list_sorted(&path).await.unwrap();
    let head = first.next().await.unwrap().unwrap();
    // ...is followed by the next listing of the same directory, which gets every entry.
    let followed = cache.followed();
    let second = fs.list_sorted(&path).await.unwrap();
    assert_eq!(cache.followed() - followed, 1);
    let all = second.collect().await.unwrap();
    assert_eq!(all.len(), 3000);
    assert_eq!(all[..head.len()], head[..]);
    let mut rest = head;
    rest.extend(first.collect().await.unwrap());
    assert_eq!(rest, all);

    // A change in the directory starts a read of its own, which shows the change.
    let held = fs.list_sorted(&path).await.unwrap();
    std::fs::write(big.join("new"), b"").unwrap();
    let followed = cache.followed();
    let after = list(&fs, "/shared").await;
    assert_eq!(
        cache.followed(),
        followed,
        "followed a read of the old directory"
    );
    assert!(after.iter().any(|e| e.name == "new"));
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_read_is_neither_kept_nor_followed() {
    let root = tempfile::tempdir_in("/dev/shm").unwrap();
    let big = root.path().join("dropped");
    std::fs::create_dir(&big).unwrap();
    for i in 0..20_000 {
        std::fs::write(big.join(format!("d{i:05}")), b"").unwrap();
    }
    let cache = Arc::new(ListCache::default());
    let fs = LocalFs::with_cache(root.path(), Arc::clone(&cache)).unwrap();
    let path = VPath::root().resolve("/dropped").unwrap();
    // Listings dropped after their first chunk, most often while the read goes on: the read
    // stops, and whatever comes next lists every entry.
    let mut stopped = 0;
    for _ in 0..5 {
        let abandoned = cache.abandoned();
        let mut stream = fs.list_sorted(&path).await.unwrap();
        let _ = stream.next().await.unwrap().unwrap();
        drop(stream);
        // Until the read has stopped, or has ended and been kept.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while cache.abandoned() == abandoned && cache.kept_entries() < 20_000 {
            assert!(
                std::time::Instant::now() < until,
                "the read neither stopped nor ended"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        stopped += cache.abandoned() - abandoned;
        assert_eq!(list(&fs, "/dropped").await.len(), 20_000);
    }
    assert!(stopped > 0, "no read was stopped: the test proved nothing");
}
