//! Listings of one local directory share one read of it (`ferry_vfs::listcache`): one test in
//! its own binary, so the process-wide counters move only with its own listings.
#![allow(clippy::unwrap_used)]

use ferry_vfs::Entry;
use ferry_vfs::VPath;
use ferry_vfs::{LocalFs, Storage, listcache};

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
    let fs = LocalFs::new(root.path()).unwrap();
    let path = VPath::root().resolve("/shared").unwrap();
    // Too many entries to keep: only sharing can spare a second read.
    listcache::set_limit(1000);

    // A listing that has begun and is not being taken...
    let mut first = fs.list_sorted(&path).await.unwrap();
    let head = first.next().await.unwrap().unwrap();
    // ...is followed by the next listing of the same directory, which gets every entry.
    let followed = listcache::followed();
    let second = fs.list_sorted(&path).await.unwrap();
    assert_eq!(listcache::followed() - followed, 1);
    let all = second.collect().await.unwrap();
    assert_eq!(all.len(), 3000);
    assert_eq!(all[..head.len()], head[..]);
    let mut rest = head;
    rest.extend(first.collect().await.unwrap());
    assert_eq!(rest, all);

    // A change in the directory starts a read of its own, which shows the change.
    let held = fs.list_sorted(&path).await.unwrap();
    std::fs::write(big.join("new"), b"").unwrap();
    let followed = listcache::followed();
    let after = list(&fs, "/shared").await;
    assert_eq!(
        listcache::followed(),
        followed,
        "followed a read of the old directory"
    );
    assert!(after.iter().any(|e| e.name == "new"));
    drop(held);
    listcache::set_limit(listcache::DEFAULT_LIMIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_read_is_neither_kept_nor_followed() {
    let root = tempfile::tempdir_in("/dev/shm").unwrap();
    let big = root.path().join("dropped");
    std::fs::create_dir(&big).unwrap();
    for i in 0..20_000 {
        std::fs::write(big.join(format!("d{i:05}")), b"").unwrap();
    }
    let fs = LocalFs::new(root.path()).unwrap();
    let path = VPath::root().resolve("/dropped").unwrap();
    // Listings dropped after their first chunk, most often while the read goes on: the read
    // stops, and whatever comes next lists every entry.
    let mut stopped = 0;
    for _ in 0..5 {
        let abandoned = listcache::abandoned();
        let mut stream = fs.list_sorted(&path).await.unwrap();
        let _ = stream.next().await.unwrap().unwrap();
        drop(stream);
        // Until the read has stopped, or has ended and been kept.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while listcache::abandoned() == abandoned && listcache::kept_entries() < 20_000 {
            assert!(
                std::time::Instant::now() < until,
                "the read neither stopped nor ended"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        stopped += listcache::abandoned() - abandoned;
        assert_eq!(list(&fs, "/dropped").await.len(), 20_000);
    }
    assert!(stopped > 0, "no read was stopped: the test proved nothing");
}
