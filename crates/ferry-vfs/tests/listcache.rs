//! Kept listings of large local directories (`ferry_vfs::listcache`): one test in its own
//! binary, so the process-wide hit counter moves only with its own listings.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;

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
    let fs = LocalFs::new(root.path()).unwrap();
    let hits = listcache::hits;

    // Read from disk, then kept: the same listing, without reading the disk.
    let first = list(&fs, "/big").await;
    assert_eq!(first.len(), 1501);
    let before = hits();
    let again = list(&fs, "/big").await;
    assert_eq!(hits() - before, 1);
    assert_eq!(again, first);
    assert!(listcache::kept_entries() >= 1501);

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
    listcache::set_limit(0);
    assert_eq!(listcache::kept_entries(), 0);
    let before = hits();
    let _ = list(&fs, "/big").await;
    let _ = list(&fs, "/big").await;
    assert_eq!(hits(), before);
    listcache::set_limit(listcache::DEFAULT_LIMIT);
    let _ = list(&fs, "/big").await;
    let _ = list(&fs, "/big").await;
    assert_eq!(hits() - before, 1);
}
