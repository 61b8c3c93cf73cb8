//! Kept listings of large local directories (`ferry_vfs::listcache`); each test reads the
//! counters of its own [`ListCache`].
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use ferry_vfs::Entry;
use ferry_vfs::VPath;
use ferry_vfs::{ListCache, LocalFs, Storage, listcache};

async fn list(fs: &LocalFs, path: &str) -> Vec<Entry> {
    fs.list_sorted(&VPath::root().resolve(path).unwrap())
        .await
        .unwrap()
        .collect()
        .await
        .unwrap()
}

fn find<'a>(entries: &'a [Entry], name: &str) -> &'a Entry {
    entries.iter().find(|e| e.name == name).unwrap()
}

#[tokio::test]
async fn large_listings_are_kept_until_the_directory_changes() {
    // tmpfs: a file system whose changes inotify sees (the test's premise).
    let root = tempfile::tempdir_in("/dev/shm").unwrap();
    let big = root.path().join("big");
    std::fs::create_dir(&big).unwrap();
    for i in 0..1500 {
        std::fs::write(big.join(format!("f{i:04}")), b"x").unwrap();
    }
    std::fs::create_dir(big.join("sub")).unwrap();
    let small = root.path().join("small");
    std::fs::create_dir(&small).unwrap();
    std::fs::write(small.join("one"), b"1").unwrap();
    std::fs::hard_link(big.join("f0004"), small.join("alias")).unwrap();
    let cache = Arc::new(ListCache::default());
    let fs = LocalFs::with_cache(root.path(), Arc::clone(&cache)).unwrap();
    let hits = || cache.hits();

    // Read from disk, then kept: the same listing, without reading the disk.
    let first = list(&fs, "/big").await;
    assert_eq!(first.len(), 1501);
    let before = hits();
    let again = list(&fs, "/big").await;
    assert_eq!(hits() - before, 1);
    assert_eq!(again, first);
    assert!(cache.kept_entries() >= 1501);

    // Every kind of change is seen at the next listing.
    let before = hits();
    std::fs::write(big.join("f0001"), b"longer").unwrap();
    assert_eq!(find(&list(&fs, "/big").await, "f0001").size, 6);
    std::fs::set_permissions(big.join("f0002"), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(find(&list(&fs, "/big").await, "f0002").mode, 0o600);
    std::fs::write(big.join("new"), b"").unwrap();
    assert!(list(&fs, "/big").await.iter().any(|e| e.name == "new"));
    std::fs::rename(big.join("new"), big.join("renamed")).unwrap();
    let l = list(&fs, "/big").await;
    assert!(l.iter().any(|e| e.name == "renamed") && !l.iter().any(|e| e.name == "new"));
    std::fs::remove_file(big.join("renamed")).unwrap();
    assert_eq!(list(&fs, "/big").await.len(), 1501);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(big.join("f0003"))
        .unwrap();
    f.set_len(1000).unwrap();
    drop(f);
    assert_eq!(find(&list(&fs, "/big").await, "f0003").size, 1000);
    assert_eq!(
        hits(),
        before,
        "a changed directory was answered from what was kept"
    );

    // Unchanged again: kept again.
    let before = hits();
    let _ = list(&fs, "/big").await;
    let _ = list(&fs, "/big").await;
    assert_eq!(hits() - before, 2);

    // What the directory's watch cannot see is read afresh even from a kept listing: a
    // subdirectory's own metadata (a directory made inside it raises its link count) ...
    let nlink = find(&list(&fs, "/big").await, "sub").nlink;
    let before = hits();
    std::fs::create_dir(big.join("sub").join("inner")).unwrap();
    assert_eq!(find(&list(&fs, "/big").await, "sub").nlink, nlink + 1);
    assert_eq!(hits() - before, 1);
    // ... and a file with a second name elsewhere, written through that name.
    let before = hits();
    std::fs::write(small.join("alias"), b"through the other name").unwrap();
    assert_eq!(find(&list(&fs, "/big").await, "f0004").size, 22);
    assert_eq!(hits() - before, 1);

    // Small directories are not kept.
    let before = hits();
    let _ = list(&fs, "/small").await;
    let _ = list(&fs, "/small").await;
    assert_eq!(hits(), before);

    // A removed directory's listing is gone with it.
    let _ = list(&fs, "/big").await;
    std::fs::remove_dir_all(&big).unwrap();
    assert!(
        fs.list_sorted(&VPath::root().resolve("/big").unwrap())
            .await
            .is_err()
    );

    // Limit 0: nothing kept.
    std::fs::create_dir(&big).unwrap();
    for i in 0..1200 {
        std::fs::write(big.join(format!("g{i:04}")), b"y").unwrap();
    }
    cache.set_limit(0);
    assert_eq!(cache.kept_entries(), 0);
    let before = hits();
    let _ = list(&fs, "/big").await;
    let _ = list(&fs, "/big").await;
    assert_eq!(hits(), before);
    cache.set_limit(listcache::DEFAULT_LIMIT);
    let _ = list(&fs, "/big").await;
    let _ = list(&fs, "/big").await;
    assert_eq!(hits() - before, 1);
}

/// Big directory `name` under `root`, of `n` files.
fn big_dir(root: &std::path::Path, name: &str, n: usize) {
    let big = root.join(name);
    std::fs::create_dir(&big).unwrap();
    for i in 0..n {
        std::fs::write(big.join(format!("f{i:04}")), b"x").unwrap();
    }
}

#[tokio::test]
async fn caches_keep_count_and_bound_apart() {
    let root = tempfile::tempdir_in("/dev/shm").unwrap();
    big_dir(root.path(), "big", 1200);
    let (a, b) = (Arc::new(ListCache::default()), Arc::new(ListCache::new(0)));
    // Two instances on one root, as two servers of one process would open it.
    let on_a = LocalFs::with_cache(root.path(), Arc::clone(&a)).unwrap();
    let on_b = LocalFs::with_cache(root.path(), Arc::clone(&b)).unwrap();

    // What one keeps, the other neither uses nor counts.
    let first = list(&on_a, "/big").await;
    assert_eq!(list(&on_a, "/big").await, first);
    assert_eq!((a.hits(), a.kept_entries()), (1, 1200));
    assert_eq!(list(&on_b, "/big").await, first);
    assert_eq!(list(&on_b, "/big").await, first);
    assert_eq!((b.hits(), b.kept_entries()), (0, 0), "b keeps none");
    assert_eq!(a.hits(), 1, "b's listings were counted in a");
    // One's limit is not the other's.
    assert_eq!(a.kept_entries(), 1200, "b's limit dropped a's listing");
    a.set_limit(0);
    b.set_limit(listcache::DEFAULT_LIMIT);
    assert_eq!((a.limit(), b.limit()), (0, listcache::DEFAULT_LIMIT));
    assert_eq!(a.kept_entries(), 0);
    let _ = list(&on_b, "/big").await;
    let _ = list(&on_b, "/big").await;
    assert_eq!((a.hits(), b.hits()), (1, 1));
    assert_eq!((a.kept_entries(), b.kept_entries()), (0, 1200));
}

#[tokio::test]
async fn instances_given_one_cache_share_it() {
    let root = tempfile::tempdir_in("/dev/shm").unwrap();
    big_dir(root.path(), "big", 1200);
    let cache = Arc::new(ListCache::default());
    // The same root opened twice (a server reopens roots): what one kept, the other uses.
    let first = LocalFs::with_cache(root.path(), Arc::clone(&cache)).unwrap();
    let listed = list(&first, "/big").await;
    drop(first);
    let again = LocalFs::with_cache(root.path(), Arc::clone(&cache)).unwrap();
    assert_eq!(list(&again, "/big").await, listed);
    assert_eq!(cache.hits(), 1);
    // An instance of its own shares nothing with them.
    let alone = LocalFs::new(root.path()).unwrap();
    assert_eq!(list(&alone, "/big").await, listed);
    assert_eq!(cache.hits(), 1);
}

/// Caches made and dropped by the hundred, each having listed a large directory, do not run
/// out of inotify instances (a user may hold 128): each closes its own with it.
#[tokio::test]
async fn a_dropped_cache_closes_its_inotify_instance() {
    let root = tempfile::tempdir_in("/dev/shm").unwrap();
    big_dir(root.path(), "big", 1200);
    for round in 0..300 {
        let cache = Arc::new(ListCache::default());
        let fs = LocalFs::with_cache(root.path(), Arc::clone(&cache)).unwrap();
        let _ = list(&fs, "/big").await;
        let _ = list(&fs, "/big").await;
        assert_eq!(cache.hits(), 1, "round {round}: nothing kept");
    }
}
