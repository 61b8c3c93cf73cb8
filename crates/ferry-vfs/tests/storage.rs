//! One behavioural suite run against both backends, plus local-only jail tests.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ferry_vfs::EntryKind;
use ferry_vfs::VPath;
use ferry_vfs::{ErrorKind, FileAccess, LocalFs, MemoryFs, Storage, WriteMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Fs = Arc<dyn Storage>;

mod moto;

/// An S3 backend on a new bucket of the test's moto server (`None`: skipped, said why).
fn s3_fs() -> Option<Fs> {
    s3_on_new_bucket().map(|(fs, _, _)| fs)
}

/// [`s3_fs`] with moto's address and the bucket's name, to look at the objects directly.
fn s3_on_new_bucket() -> Option<(Fs, std::net::SocketAddr, String)> {
    s3_with(|_| {})
}

fn s3_with(
    tune: impl FnOnce(&mut ferry_vfs::S3Config),
) -> Option<(Fs, std::net::SocketAddr, String)> {
    let addr = moto::endpoint()?;
    let bucket = moto::bucket(addr);
    let mut config = ferry_vfs::S3Config::from_url(&format!("s3://{bucket}/home/user")).unwrap();
    config.endpoint = Some(format!("http://{addr}"));
    config.region = Some(moto::REGION.into());
    config.access_key_id = Some(moto::ACCESS_KEY.into());
    config.secret_access_key = Some(moto::SECRET_KEY.into());
    tune(&mut config);
    let fs: Fs = Arc::new(ferry_vfs::S3Fs::new(&config).unwrap());
    Some((fs, addr, bucket))
}

fn p(s: &str) -> VPath {
    VPath::root().resolve(s).unwrap()
}

async fn put(fs: &Fs, path: &str, mode: WriteMode, data: &[u8]) {
    let mut up = fs.open_write(&p(path), mode).await.unwrap();
    up.write_all(data).await.unwrap();
    up.commit().await.unwrap();
}

async fn get_at(fs: &Fs, path: &str, offset: u64) -> Vec<u8> {
    let h = fs.open_read(&p(path), offset).await.unwrap();
    let mut out = Vec::new();
    h.into_reader().read_to_end(&mut out).await.unwrap();
    out
}

async fn get(fs: &Fs, path: &str) -> Vec<u8> {
    get_at(fs, path, 0).await
}

async fn names(fs: &Fs, path: &str) -> Vec<String> {
    let mut names: Vec<String> = fs
        .list(&p(path))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.sort();
    names
}

macro_rules! kind {
    ($e:expr) => {
        match $e {
            Ok(_) => panic!("expected an error from {}", stringify!($e)),
            Err(e) => e.kind,
        }
    };
}

async fn metadata_basics(fs: Fs) {
    let root = fs.metadata(&VPath::root()).await.unwrap();
    assert_eq!(root.kind, EntryKind::Dir);
    assert_eq!(kind!(fs.metadata(&p("/nope")).await), ErrorKind::NotFound);
    assert_eq!(kind!(fs.metadata(&p("/a/b/c")).await), ErrorKind::NotFound);
    put(&fs, "/f", WriteMode::Replace, b"hello").await;
    put(&fs, "/g", WriteMode::Replace, b"").await;
    let f = fs.metadata(&p("/f")).await.unwrap();
    assert_eq!(f.kind, EntryKind::File);
    assert_eq!(f.size, 5);
    assert!(f.nlink >= 1);
    assert_ne!(f.mode & 0o777, 0);
    let g = fs.metadata(&p("/g")).await.unwrap();
    assert!(f.unique.is_some());
    assert_ne!(f.unique, g.unique);
    assert_eq!(
        kind!(fs.metadata(&p("/f/x")).await),
        ErrorKind::NotADirectory
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    assert!((f.mtime - now.as_secs() as i64).abs() < 60);
}

async fn read_offsets(fs: Fs) {
    put(&fs, "/f", WriteMode::Replace, b"0123456789").await;
    assert_eq!(get(&fs, "/f").await, b"0123456789");
    assert_eq!(get_at(&fs, "/f", 4).await, b"456789");
    assert_eq!(get_at(&fs, "/f", 10).await, b"");
    assert_eq!(get_at(&fs, "/f", 1000).await, b"");
    assert_eq!(fs.open_read(&p("/f"), 3).await.unwrap().size, 10);
    assert_eq!(
        kind!(fs.open_read(&p("/missing"), 0).await),
        ErrorKind::NotFound
    );
    fs.mkdir(&p("/d")).await.unwrap();
    assert_eq!(
        kind!(fs.open_read(&p("/d"), 0).await),
        ErrorKind::IsADirectory
    );
    assert_eq!(
        kind!(fs.open_read(&VPath::root(), 0).await),
        ErrorKind::IsADirectory
    );
    assert_eq!(
        kind!(fs.open_read(&p("/f/x"), 0).await),
        ErrorKind::NotADirectory
    );
}

async fn replace_is_atomic(fs: Fs) {
    put(&fs, "/f", WriteMode::Replace, b"old").await;

    // Interrupted: dropped without commit.
    let mut up = fs.open_write(&p("/f"), WriteMode::Replace).await.unwrap();
    up.write_all(b"new content").await.unwrap();
    up.flush().await.unwrap();
    assert_eq!(get(&fs, "/f").await, b"old");
    drop(up);
    assert_eq!(get(&fs, "/f").await, b"old");
    assert_eq!(names(&fs, "/").await, ["f"]);

    // Committed; a download that opened the old content keeps reading it.
    let mut reader = fs.open_read(&p("/f"), 0).await.unwrap().into_reader();
    let mut up = fs.open_write(&p("/f"), WriteMode::Replace).await.unwrap();
    up.write_all(b"new content").await.unwrap();
    assert_eq!(get(&fs, "/f").await, b"old");
    up.commit().await.unwrap();
    assert_eq!(get(&fs, "/f").await, b"new content");
    let mut old = Vec::new();
    reader.read_to_end(&mut old).await.unwrap();
    assert_eq!(old, b"old");
    assert_eq!(names(&fs, "/").await, ["f"]);

    // Shorter content replaces fully.
    put(&fs, "/f", WriteMode::Replace, b"x").await;
    assert_eq!(get(&fs, "/f").await, b"x");

    // Into a missing directory.
    assert_eq!(
        kind!(fs.open_write(&p("/no/f"), WriteMode::Replace).await),
        ErrorKind::NotFound
    );
    // Through a file.
    assert_eq!(
        kind!(fs.open_write(&p("/f/g"), WriteMode::Replace).await),
        ErrorKind::NotADirectory
    );
}

async fn large_upload(fs: Fs) {
    let data: Vec<u8> = (0..3 * 1024 * 1024 + 17)
        .map(|i: u32| (i % 251) as u8)
        .collect();
    let mut up = fs.open_write(&p("/big"), WriteMode::Replace).await.unwrap();
    for chunk in data.chunks(64 * 1024 + 3) {
        up.write_all(chunk).await.unwrap();
    }
    up.commit().await.unwrap();
    assert_eq!(
        fs.metadata(&p("/big")).await.unwrap().size,
        data.len() as u64
    );
    assert!(get(&fs, "/big").await == data);
    assert!(get_at(&fs, "/big", 1_000_000).await == data[1_000_000..]);
}

async fn append(fs: Fs) {
    if !fs.capabilities().append {
        put(&fs, "/log", WriteMode::Replace, b"one").await;
        assert_eq!(
            kind!(fs.open_write(&p("/log"), WriteMode::Append).await),
            ErrorKind::Unsupported
        );
        assert_eq!(
            kind!(fs.open_file(&p("/log"), rw(WriteMode::Append)).await),
            ErrorKind::Unsupported
        );
        assert_eq!(get(&fs, "/log").await, b"one");
        return;
    }
    put(&fs, "/log", WriteMode::Append, b"one").await;
    put(&fs, "/log", WriteMode::Append, b"two").await;
    assert_eq!(get(&fs, "/log").await, b"onetwo");
    // Appended data is written in place: visible without commit.
    let mut up = fs.open_write(&p("/log"), WriteMode::Append).await.unwrap();
    up.write_all(b"three").await.unwrap();
    up.flush().await.unwrap();
    drop(up);
    assert_eq!(get(&fs, "/log").await, b"onetwothree");
}

async fn write_at_offset(fs: Fs) {
    put(&fs, "/f", WriteMode::Replace, b"0123456789").await;
    if !fs.capabilities().write_at {
        // Only from the start, which replaces the whole file.
        assert_eq!(
            kind!(fs.open_write(&p("/f"), WriteMode::At(4)).await),
            ErrorKind::Unsupported
        );
        assert_eq!(get(&fs, "/f").await, b"0123456789");
        put(&fs, "/f", WriteMode::At(0), b"ab").await;
        assert_eq!(get(&fs, "/f").await, b"ab");
        put(&fs, "/new", WriteMode::At(0), b"fresh").await;
        assert_eq!(get(&fs, "/new").await, b"fresh");
        assert_eq!(
            kind!(fs.open_write(&p("/new2"), WriteMode::At(5)).await),
            ErrorKind::Unsupported
        );
        assert_eq!(kind!(fs.metadata(&p("/new2")).await), ErrorKind::NotFound);
        return;
    }
    put(&fs, "/f", WriteMode::At(4), b"ab").await;
    assert_eq!(
        get(&fs, "/f").await,
        b"0123ab",
        "what followed the offset is truncated"
    );
    put(&fs, "/f", WriteMode::At(6), b"XY").await;
    assert_eq!(get(&fs, "/f").await, b"0123abXY");
    // Opening truncates even if nothing is written.
    let up = fs.open_write(&p("/f"), WriteMode::At(2)).await.unwrap();
    up.commit().await.unwrap();
    assert_eq!(get(&fs, "/f").await, b"01");
    assert_eq!(
        kind!(fs.open_write(&p("/f"), WriteMode::At(3)).await),
        ErrorKind::Other
    );
    assert_eq!(get(&fs, "/f").await, b"01");
    put(&fs, "/new", WriteMode::At(0), b"fresh").await;
    assert_eq!(get(&fs, "/new").await, b"fresh");
    assert_eq!(
        kind!(fs.open_write(&p("/new2"), WriteMode::At(5)).await),
        ErrorKind::Other
    );
    assert_eq!(kind!(fs.metadata(&p("/new2")).await), ErrorKind::NotFound);
}

async fn create_new(fs: Fs) {
    put(&fs, "/u", WriteMode::CreateNew, b"unique").await;
    assert_eq!(get(&fs, "/u").await, b"unique");
    assert_eq!(
        kind!(fs.open_write(&p("/u"), WriteMode::CreateNew).await),
        ErrorKind::AlreadyExists
    );
    fs.mkdir(&p("/d")).await.unwrap();
    assert_eq!(
        kind!(fs.open_write(&p("/d"), WriteMode::CreateNew).await),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        kind!(fs.open_write(&VPath::root(), WriteMode::CreateNew).await),
        ErrorKind::AlreadyExists
    );
    assert_eq!(get(&fs, "/u").await, b"unique");
}

async fn write_to_directory(fs: Fs) {
    fs.mkdir(&p("/d")).await.unwrap();
    for mode in [WriteMode::Replace, WriteMode::Append, WriteMode::At(0)] {
        assert_eq!(
            kind!(fs.open_write(&p("/d"), mode).await),
            ErrorKind::IsADirectory,
            "{mode:?}"
        );
        assert_eq!(
            kind!(fs.open_write(&VPath::root(), mode).await),
            ErrorKind::IsADirectory
        );
    }
    assert_eq!(fs.metadata(&p("/d")).await.unwrap().kind, EntryKind::Dir);
}

async fn directories(fs: Fs) {
    fs.mkdir(&p("/d")).await.unwrap();
    fs.mkdir(&p("/d/e")).await.unwrap();
    assert_eq!(kind!(fs.mkdir(&p("/d")).await), ErrorKind::AlreadyExists);
    assert_eq!(
        kind!(fs.mkdir(&VPath::root()).await),
        ErrorKind::AlreadyExists
    );
    assert_eq!(kind!(fs.mkdir(&p("/x/y")).await), ErrorKind::NotFound);
    put(&fs, "/d/f", WriteMode::Replace, b"").await;
    assert_eq!(kind!(fs.mkdir(&p("/d/f")).await), ErrorKind::AlreadyExists);
    assert_eq!(
        kind!(fs.mkdir(&p("/d/f/g")).await),
        ErrorKind::NotADirectory
    );
    assert_eq!(
        kind!(fs.rmdir(&p("/d")).await),
        ErrorKind::DirectoryNotEmpty
    );
    assert_eq!(kind!(fs.rmdir(&p("/d/f")).await), ErrorKind::NotADirectory);
    assert_eq!(kind!(fs.rmdir(&p("/d/zz")).await), ErrorKind::NotFound);
    assert_eq!(
        kind!(fs.rmdir(&VPath::root()).await),
        ErrorKind::PermissionDenied
    );
    fs.rmdir(&p("/d/e")).await.unwrap();
    fs.remove_file(&p("/d/f")).await.unwrap();
    fs.rmdir(&p("/d")).await.unwrap();
    assert!(names(&fs, "/").await.is_empty());
}

async fn remove_files(fs: Fs) {
    put(&fs, "/f", WriteMode::Replace, b"x").await;
    fs.mkdir(&p("/d")).await.unwrap();
    assert_eq!(
        kind!(fs.remove_file(&p("/d")).await),
        ErrorKind::IsADirectory
    );
    assert_eq!(
        kind!(fs.remove_file(&VPath::root()).await),
        ErrorKind::PermissionDenied
    );
    assert_eq!(
        kind!(fs.remove_file(&p("/nope")).await),
        ErrorKind::NotFound
    );
    fs.remove_file(&p("/f")).await.unwrap();
    assert_eq!(kind!(fs.metadata(&p("/f")).await), ErrorKind::NotFound);
    assert_eq!(names(&fs, "/").await, ["d"]);
}

async fn renames(fs: Fs) {
    put(&fs, "/a", WriteMode::Replace, b"A").await;
    put(&fs, "/b", WriteMode::Replace, b"B").await;
    fs.mkdir(&p("/d")).await.unwrap();
    put(&fs, "/d/inner", WriteMode::Replace, b"I").await;
    fs.mkdir(&p("/empty")).await.unwrap();

    fs.rename(&p("/a"), &p("/a2")).await.unwrap();
    assert_eq!(get(&fs, "/a2").await, b"A");
    fs.rename(&p("/a2"), &p("/b")).await.unwrap();
    assert_eq!(get(&fs, "/b").await, b"A", "a file target is replaced");
    assert_eq!(kind!(fs.metadata(&p("/a2")).await), ErrorKind::NotFound);
    fs.rename(&p("/b"), &p("/b")).await.unwrap();
    assert_eq!(get(&fs, "/b").await, b"A");

    assert_eq!(
        kind!(fs.rename(&p("/b"), &p("/d")).await),
        ErrorKind::IsADirectory
    );
    assert_eq!(
        kind!(fs.rename(&p("/d"), &p("/b")).await),
        ErrorKind::NotADirectory
    );
    assert_eq!(
        kind!(fs.rename(&p("/empty"), &p("/d")).await),
        ErrorKind::DirectoryNotEmpty
    );
    assert_eq!(
        kind!(fs.rename(&p("/d"), &p("/d/sub")).await),
        ErrorKind::PermissionDenied
    );
    assert_eq!(
        kind!(fs.rename(&p("/nope"), &p("/x")).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind!(fs.rename(&p("/b"), &p("/nodir/x")).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind!(fs.rename(&VPath::root(), &p("/x")).await),
        ErrorKind::PermissionDenied
    );
    assert_eq!(
        kind!(fs.rename(&p("/b"), &VPath::root()).await),
        ErrorKind::PermissionDenied
    );

    if !fs.capabilities().atomic_rename {
        // Objects: a non-empty directory stays where it is; an empty one moves.
        assert_eq!(
            kind!(fs.rename(&p("/d"), &p("/empty/moved")).await),
            ErrorKind::Unsupported
        );
        assert_eq!(get(&fs, "/d/inner").await, b"I");
        fs.rename(&p("/empty"), &p("/moved")).await.unwrap();
        assert!(fs.list(&p("/moved")).await.unwrap().is_empty());
        assert_eq!(names(&fs, "/").await, ["b", "d", "moved"]);
        return;
    }
    fs.rename(&p("/d"), &p("/empty/moved")).await.unwrap();
    assert_eq!(get(&fs, "/empty/moved/inner").await, b"I");
    fs.mkdir(&p("/e2")).await.unwrap();
    fs.rename(&p("/empty/moved"), &p("/e2")).await.unwrap();
    assert_eq!(
        get(&fs, "/e2/inner").await,
        b"I",
        "an empty directory target is replaced"
    );
    assert_eq!(names(&fs, "/").await, ["b", "e2", "empty"]);
}

async fn mtimes(fs: Fs) {
    put(&fs, "/f", WriteMode::Replace, b"x").await;
    fs.mkdir(&p("/d")).await.unwrap();
    if !fs.capabilities().set_times {
        let before = fs.metadata(&p("/f")).await.unwrap().mtime;
        assert_eq!(
            kind!(fs.set_mtime(&p("/f"), 1_000_000_000).await),
            ErrorKind::Unsupported
        );
        assert_eq!(fs.metadata(&p("/f")).await.unwrap().mtime, before);
        assert_eq!(
            kind!(fs.set_mtime(&p("/nope"), 0).await),
            ErrorKind::NotFound
        );
        return;
    }
    fs.set_mtime(&p("/f"), 1_000_000_000).await.unwrap();
    fs.set_mtime(&p("/d"), 1_234_567_890).await.unwrap();
    assert_eq!(fs.metadata(&p("/f")).await.unwrap().mtime, 1_000_000_000);
    assert_eq!(fs.metadata(&p("/d")).await.unwrap().mtime, 1_234_567_890);
    let listed = fs.list(&VPath::root()).await.unwrap();
    assert!(
        listed
            .iter()
            .any(|e| e.name == "f" && e.mtime == 1_000_000_000)
    );
    assert_eq!(
        kind!(fs.set_mtime(&p("/nope"), 0).await),
        ErrorKind::NotFound
    );
}

async fn listing(fs: Fs) {
    let odd = [
        "with space.txt",
        "été 日本.txt",
        "quote\"d",
        "-dash",
        "x;y=z",
    ];
    for name in odd {
        put(
            &fs,
            &format!("/{name}"),
            WriteMode::Replace,
            name.as_bytes(),
        )
        .await;
    }
    fs.mkdir(&p("/dir one")).await.unwrap();
    let entries = fs.list(&VPath::root()).await.unwrap();
    assert_eq!(entries.len(), odd.len() + 1);
    for name in odd {
        let e = entries.iter().find(|e| e.name == name).unwrap();
        assert_eq!(e.kind, EntryKind::File);
        assert_eq!(e.size, name.len() as u64);
        assert_eq!(get(&fs, &format!("/{name}")).await, name.as_bytes());
    }
    let d = entries.iter().find(|e| e.name == "dir one").unwrap();
    assert_eq!(d.kind, EntryKind::Dir);
    assert!(fs.list(&p("/dir one")).await.unwrap().is_empty());
    assert_eq!(
        kind!(fs.list(&p("/with space.txt")).await),
        ErrorKind::NotADirectory
    );
    assert_eq!(kind!(fs.list(&p("/nope")).await), ErrorKind::NotFound);
}

fn rw(mode: WriteMode) -> FileAccess {
    FileAccess {
        read: true,
        write: Some(mode),
    }
}

const READ: FileAccess = FileAccess {
    read: true,
    write: None,
};

/// Reads at offsets, several in flight at once, short only at the end of the file.
async fn positional_reads(fs: Fs) {
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    put(&fs, "/f", WriteMode::Replace, &data).await;
    let h = fs.open_file(&p("/f"), READ).await.unwrap();
    let offsets = [90_000u64, 0, 32_768, 99_999, 100_000, 250_000];
    let reads = offsets.map(|o| h.read_at(o, 32_768));
    let got = futures_join(reads).await;
    for (o, r) in offsets.iter().zip(got) {
        let r = r.unwrap();
        let start = (*o as usize).min(data.len());
        let end = (start + 32_768).min(data.len());
        assert_eq!(r, &data[start..end], "read at {o}");
    }
    assert_eq!(h.metadata().await.unwrap().size, 100_000);
    // Into a buffer that already holds a header: appended after it, short at the end.
    let mut buf = b"head".to_vec();
    assert_eq!(h.read_at_into(99_990, 100, &mut buf).await.unwrap(), 10);
    assert_eq!(&buf[..4], b"head");
    assert_eq!(&buf[4..], &data[99_990..]);
    assert_eq!(h.read_at_into(100_000, 100, &mut buf).await.unwrap(), 0);
    assert_eq!(buf.len(), 14);
    // Opened for reading only: no writes.
    assert_eq!(
        kind!(h.write_at(0, b"x").await),
        ErrorKind::PermissionDenied
    );
    h.close().await.unwrap();
    assert_eq!(
        kind!(fs.open_file(&p("/nope"), READ).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind!(fs.open_file(&VPath::root(), READ).await),
        ErrorKind::IsADirectory
    );
}

/// Writes out of order make the whole file; a replacing handle shows nothing until closed.
async fn positional_writes_replace(fs: Fs) {
    put(&fs, "/f", WriteMode::Replace, b"old content").await;
    let h = fs
        .open_file(&p("/f"), rw(WriteMode::Replace))
        .await
        .unwrap();
    let chunk = |i: u8| vec![i; 1000];
    for i in [3u8, 0, 2, 1] {
        h.write_at(u64::from(i) * 1000, &chunk(i)).await.unwrap();
    }
    if fs.capabilities().write_at {
        assert_eq!(
            h.read_at(1500, 1000).await.unwrap(),
            [vec![1u8; 500], vec![2u8; 500]].concat()
        );
    }
    assert_eq!(h.metadata().await.unwrap().size, 4000);
    // Not visible yet: readers still get the old file.
    assert_eq!(get(&fs, "/f").await, b"old content");
    h.close().await.unwrap();
    let want: Vec<u8> = (0..4u8).flat_map(chunk).collect();
    assert_eq!(get(&fs, "/f").await, want);
    assert_eq!(names(&fs, "/").await, ["f"]);
}

/// An aborted replacing handle, or upload, leaves the old file and nothing beside it.
async fn abort_keeps_the_old_file(fs: Fs) {
    put(&fs, "/f", WriteMode::Replace, b"keep me").await;
    let h = fs
        .open_file(&p("/f"), rw(WriteMode::Replace))
        .await
        .unwrap();
    h.write_at(0, b"half of a new").await.unwrap();
    h.abort().await.unwrap();
    assert_eq!(get(&fs, "/f").await, b"keep me");
    let mut up = fs.open_write(&p("/f"), WriteMode::Replace).await.unwrap();
    up.write_all(b"half of another").await.unwrap();
    up.abort().await.unwrap();
    assert_eq!(get(&fs, "/f").await, b"keep me");
    // A new name aborted leaves no file at all.
    let mut up = fs.open_write(&p("/g"), WriteMode::Replace).await.unwrap();
    up.write_all(b"never").await.unwrap();
    up.abort().await.unwrap();
    assert_eq!(names(&fs, "/").await, ["f"]);
}

/// In place: `Update` keeps what is not overwritten (a resumed upload), `Append` always
/// writes at the end, `At` truncates at its offset, `set_len` cuts or extends.
async fn positional_writes_in_place(fs: Fs) {
    put(&fs, "/f", WriteMode::Replace, b"0123456789").await;
    if !fs.capabilities().write_at {
        for mode in [WriteMode::Update, WriteMode::Append] {
            assert_eq!(
                kind!(fs.open_file(&p("/f"), rw(mode)).await),
                ErrorKind::Unsupported
            );
        }
        // A replacing handle takes writes in order (a few early ones wait their turn),
        // never a write over what it has already sent.
        let h = fs
            .open_file(&p("/f"), rw(WriteMode::Replace))
            .await
            .unwrap();
        h.write_at(0, b"ab").await.unwrap();
        assert_eq!(kind!(h.write_at(1, b"X").await), ErrorKind::Unsupported);
        h.abort().await.unwrap();
        assert_eq!(get(&fs, "/f").await, b"0123456789");
        // A file with a hole is refused at close, and leaves the old one.
        let h = fs
            .open_file(&p("/f"), rw(WriteMode::Replace))
            .await
            .unwrap();
        h.write_at(5, b"late").await.unwrap();
        assert_eq!(kind!(h.close().await), ErrorKind::Unsupported);
        assert_eq!(get(&fs, "/f").await, b"0123456789");
        return;
    }
    let h = fs.open_file(&p("/f"), rw(WriteMode::Update)).await.unwrap();
    h.write_at(10, b"abc").await.unwrap();
    h.write_at(2, b"XY").await.unwrap();
    // Visible at once, as on disk.
    assert_eq!(get(&fs, "/f").await, b"01XY456789abc");
    h.set_len(4).await.unwrap();
    h.sync().await.unwrap();
    h.close().await.unwrap();
    assert_eq!(get(&fs, "/f").await, b"01XY");
    let h = fs.open_file(&p("/f"), rw(WriteMode::Append)).await.unwrap();
    h.write_at(0, b"++").await.unwrap();
    h.close().await.unwrap();
    assert_eq!(get(&fs, "/f").await, b"01XY++");
    // Update creates a missing file; CreateNew refuses an existing one.
    let h = fs
        .open_file(&p("/new"), rw(WriteMode::Update))
        .await
        .unwrap();
    h.write_at(3, b"x").await.unwrap();
    h.close().await.unwrap();
    assert_eq!(get(&fs, "/new").await, b"\0\0\0x");
    assert_eq!(
        kind!(fs.open_file(&p("/new"), rw(WriteMode::CreateNew)).await),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        kind!(fs.open_file(&VPath::root(), rw(WriteMode::Update)).await),
        ErrorKind::IsADirectory
    );
}

/// What the backend claims it can do, it does.
async fn capabilities_hold(fs: Fs) {
    let caps = fs.capabilities();
    assert!(caps.directories);
    put(&fs, "/f", WriteMode::Replace, b"x").await;
    let chmod = fs.set_mode(&p("/f"), 0o600).await;
    if caps.chmod {
        chmod.unwrap();
        assert_eq!(fs.metadata(&p("/f")).await.unwrap().mode & 0o777, 0o600);
    } else {
        assert_eq!(kind!(chmod), ErrorKind::Unsupported);
    }
}

/// File system figures where the backend has them, `Unsupported` where it has not; never for
/// a missing path.
async fn statvfs_figures(fs: Fs) {
    put(&fs, "/f", WriteMode::Replace, b"x").await;
    match fs.statvfs(&p("/f")).await {
        Ok(space) => {
            assert!(space.blocks > 0 && space.blocks_available <= space.blocks);
            let root = fs.statvfs(&VPath::root()).await.unwrap();
            assert_eq!(root.fsid, space.fsid);
            assert_eq!(kind!(fs.statvfs(&p("/nope")).await), ErrorKind::NotFound);
        }
        Err(e) => assert_eq!(e.kind, ErrorKind::Unsupported),
    }
}

/// The health check answers on a working store, empty or not.
async fn check_answers(fs: Fs) {
    fs.check().await.unwrap();
    put(&fs, "/f", WriteMode::Replace, b"x").await;
    fs.check().await.unwrap();
}

/// Runs futures at once (all in flight), in order of results.
async fn futures_join<F: std::future::Future>(futures: [F; 6]) -> Vec<F::Output> {
    let [a, b, c, d, e, f] = futures;
    let (a, b, c, d, e, f) = tokio::join!(a, b, c, d, e, f);
    vec![a, b, c, d, e, f]
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod local_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let fs: super::Fs = std::sync::Arc::new(super::LocalFs::new(dir.path()).unwrap());
                    super::$name(fs).await;
                }
            )*
        }
        mod memory_backend {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(std::sync::Arc::new(super::MemoryFs::new())).await;
                }
            )*
        }
        mod s3_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(fs) = super::s3_fs() else { return };
                    super::$name(fs).await;
                }
            )*
        }
    };
}

suite!(
    metadata_basics,
    read_offsets,
    replace_is_atomic,
    large_upload,
    append,
    write_at_offset,
    create_new,
    write_to_directory,
    directories,
    remove_files,
    renames,
    mtimes,
    listing,
    positional_reads,
    positional_writes_replace,
    abort_keeps_the_old_file,
    positional_writes_in_place,
    capabilities_hold,
    statvfs_figures,
    check_answers,
);

mod local_only {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    fn setup() -> (tempfile::TempDir, std::path::PathBuf, Fs) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let fs: Fs = Arc::new(LocalFs::new(&root).unwrap());
        (tmp, root, fs)
    }

    fn host_names(dir: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn roots_opened_together_are_all_swept_of_leftovers() {
        // Many roots opened at once (users logging in together): one sweeper takes them in
        // turn, and every one is swept.
        let tmp = tempfile::tempdir().unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        let leftovers: Vec<std::path::PathBuf> = (0..40)
            .map(|i| {
                let root = tmp.path().join(format!("user{i}"));
                std::fs::create_dir_all(root.join("deep/er")).unwrap();
                let left = root.join("deep/er/.ferry-upload.00000000000000ff.tmp");
                let file = std::fs::File::create(&left).unwrap();
                file.set_modified(old).unwrap();
                left
            })
            .collect();
        let opened: Vec<LocalFs> = (0..40)
            .map(|i| LocalFs::new(&tmp.path().join(format!("user{i}"))).unwrap())
            .collect();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while leftovers.iter().any(|l| l.exists()) {
            assert!(std::time::Instant::now() < until, "roots left unswept");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        drop(opened);
    }

    #[test]
    fn new_requires_a_directory() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(LocalFs::new(&tmp.path().join("missing")).is_err());
        std::fs::write(tmp.path().join("file"), b"x").unwrap();
        assert!(LocalFs::new(&tmp.path().join("file")).is_err());
    }

    #[tokio::test]
    async fn symlinks_cannot_escape() {
        let (tmp, root, fs) = setup();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"secret").unwrap();
        symlink("/etc", root.join("etc")).unwrap();
        symlink(&outside, root.join("out")).unwrap();
        symlink(outside.join("secret"), root.join("secret")).unwrap();
        symlink("../outside/secret", root.join("relsecret")).unwrap();
        symlink("../outside/newfile", root.join("dangling")).unwrap();

        let refused = |k: ErrorKind| matches!(k, ErrorKind::PermissionDenied | ErrorKind::NotFound);
        for path in [
            "/secret",
            "/relsecret",
            "/out/secret",
            "/etc/passwd",
            "/etc/hostname",
        ] {
            assert!(refused(kind!(fs.open_read(&p(path), 0).await)), "{path}");
            assert!(refused(kind!(fs.metadata(&p(path)).await)), "{path}");
        }
        assert!(refused(kind!(fs.list(&p("/etc")).await)));
        assert!(refused(kind!(fs.list(&p("/out")).await)));
        for mode in [
            WriteMode::Replace,
            WriteMode::Append,
            WriteMode::At(0),
            WriteMode::CreateNew,
        ] {
            for path in ["/secret", "/out/secret", "/out/new", "/dangling"] {
                let res = fs.open_write(&p(path), mode).await;
                assert!(res.is_err(), "{path} {mode:?}");
            }
        }
        assert!(fs.mkdir(&p("/out/newdir")).await.is_err());
        assert!(fs.set_mtime(&p("/secret"), 0).await.is_err());
        assert!(refused(kind!(fs.statvfs(&p("/out")).await)));
        assert!(refused(kind!(fs.statvfs(&p("/etc")).await)));
        put(&fs, "/mine", WriteMode::Replace, b"m").await;
        assert!(fs.rename(&p("/mine"), &p("/out/stolen")).await.is_err());
        assert!(fs.remove_file(&p("/out/secret")).await.is_err());

        // Nothing outside changed.
        assert_eq!(host_names(&outside), ["secret"]);
        assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"secret");

        // The root still lists, showing the links as links.
        let entries = fs.list(&VPath::root()).await.unwrap();
        for name in ["etc", "out", "secret", "relsecret", "dangling"] {
            let e = entries.iter().find(|e| e.name == name).unwrap();
            assert_eq!(e.kind, EntryKind::Symlink, "{name}");
        }
        // Removing the link itself is fine: it lives inside the root.
        fs.remove_file(&p("/secret")).await.unwrap();
        assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"secret");
    }

    #[tokio::test]
    async fn symlinks_inside_are_followed() {
        let (_tmp, root, fs) = setup();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/file"), b"inside").unwrap();
        symlink("sub/file", root.join("link")).unwrap();
        symlink("sub", root.join("sublink")).unwrap();
        assert_eq!(get(&fs, "/link").await, b"inside");
        assert_eq!(get(&fs, "/sublink/file").await, b"inside");
        assert!(fs.statvfs(&p("/sublink")).await.unwrap().blocks > 0);
        assert_eq!(
            fs.metadata(&p("/link")).await.unwrap().kind,
            EntryKind::File
        );
        assert_eq!(names(&fs, "/sublink").await, ["file"]);
        put(&fs, "/link", WriteMode::Append, b"+").await;
        assert_eq!(get(&fs, "/sub/file").await, b"inside+");
    }

    #[tokio::test]
    async fn unshowable_names_are_skipped() {
        let (_tmp, root, fs) = setup();
        std::fs::write(root.join(std::ffi::OsStr::from_bytes(b"bad\xff")), b"x").unwrap();
        std::fs::write(root.join("cr\rlf\n"), b"x").unwrap();
        std::fs::write(root.join("ok"), b"x").unwrap();
        assert_eq!(names(&fs, "/").await, ["ok"]);
    }

    #[tokio::test]
    async fn replace_uses_a_temp_file_beside_the_target() {
        let (_tmp, root, fs) = setup();
        std::fs::create_dir(root.join("d")).unwrap();
        std::fs::write(root.join("d/f"), b"old").unwrap();
        std::fs::set_permissions(root.join("d/f"), std::fs::Permissions::from_mode(0o600)).unwrap();

        let mut up = fs.open_write(&p("/d/f"), WriteMode::Replace).await.unwrap();
        up.write_all(b"partial").await.unwrap();
        up.flush().await.unwrap();
        let during = host_names(&root.join("d"));
        assert_eq!(during.len(), 2);
        assert!(
            during
                .iter()
                .any(|n| n.starts_with(ferry_vfs::local::TEMP_PREFIX)),
            "{during:?}"
        );
        drop(up);
        assert_eq!(host_names(&root.join("d")), ["f"], "temp file removed");
        assert_eq!(std::fs::read(root.join("d/f")).unwrap(), b"old");

        put(&fs, "/d/f", WriteMode::Replace, b"new").await;
        assert_eq!(host_names(&root.join("d")), ["f"]);
        assert_eq!(std::fs::read(root.join("d/f")).unwrap(), b"new");
        let mode = std::fs::metadata(root.join("d/f"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "permission bits kept");
        assert_eq!(fs.metadata(&p("/d/f")).await.unwrap().mode & 0o777, 0o600);
    }

    #[tokio::test]
    async fn failed_commit_removes_the_temp_file() {
        let (_tmp, root, fs) = setup();
        let mut up = fs.open_write(&p("/f"), WriteMode::Replace).await.unwrap();
        up.write_all(b"data").await.unwrap();
        // The target becomes a non-empty directory before commit: rename must fail.
        std::fs::create_dir(root.join("f")).unwrap();
        std::fs::write(root.join("f/x"), b"").unwrap();
        let err = up.commit().await.unwrap_err();
        assert!(matches!(
            err.kind,
            ErrorKind::IsADirectory | ErrorKind::DirectoryNotEmpty
        ));
        assert_eq!(host_names(&root), ["f"]);
    }

    #[tokio::test]
    async fn replacing_leaves_freeing_the_old_file_for_later() {
        let (_tmp, root, fs) = setup();
        // A new file: nothing to reclaim.
        let old = vec![7u8; 2 << 20];
        let mut up = fs.open_write(&p("/f"), WriteMode::Replace).await.unwrap();
        up.write_all(&old).await.unwrap();
        assert!(up.commit_then_reclaim().await.unwrap().is_none());
        // Replacing a large file: the new content is in place at once; the old file's
        // storage is freed by the work handed back (the caller runs it after answering the
        // client).
        let mut up = fs.open_write(&p("/f"), WriteMode::Replace).await.unwrap();
        up.write_all(b"new").await.unwrap();
        let reclaim = up.commit_then_reclaim().await.unwrap();
        assert_eq!(std::fs::read(root.join("f")).unwrap(), b"new");
        assert_eq!(host_names(&root), ["f"]);
        reclaim.expect("the replaced file is held for later")();
        assert_eq!(get(&fs, "/f").await, b"new");
        // A small one is freed with the rename: nothing is left to do after the reply.
        let mut up = fs.open_write(&p("/f"), WriteMode::Replace).await.unwrap();
        up.write_all(b"newer").await.unwrap();
        assert!(up.commit_then_reclaim().await.unwrap().is_none());
        assert_eq!(get(&fs, "/f").await, b"newer");
    }

    #[tokio::test]
    async fn read_handle_offers_the_file() {
        use std::io::Read;
        let (_tmp, root, fs) = setup();
        std::fs::write(root.join("f"), b"0123456789").unwrap();
        let h = fs.open_read(&p("/f"), 6).await.unwrap();
        assert_eq!(h.size, 10);
        let mut rest = String::new();
        h.file().unwrap().read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "6789");
    }

    /// Paths the kernel has cached are looked at and opened on the async worker: the call is
    /// done at its first poll, with no round trip through the blocking pool.
    #[tokio::test]
    async fn cached_paths_need_no_blocking_thread() {
        use futures_util::future::poll_immediate;
        let (_tmp, root, fs) = setup();
        std::fs::write(root.join("f"), b"x").unwrap();
        std::fs::create_dir(root.join("d")).unwrap();
        for path in ["/f", "/d"] {
            let mut at_once = false;
            for _ in 0..10 {
                let _ = std::fs::metadata(root.join(&path[1..]));
                if let Some(md) = poll_immediate(fs.metadata(&p(path))).await {
                    md.unwrap();
                    at_once = true;
                    break;
                }
            }
            assert!(at_once, "{path}: metadata went through the blocking pool");
        }
        let opened = poll_immediate(fs.open_read(&p("/f"), 0)).await;
        assert!(
            opened.is_some_and(|h| h.is_ok()),
            "open_read went through the pool"
        );
    }

    #[tokio::test]
    async fn unique_is_dev_and_inode() {
        use std::os::unix::fs::MetadataExt;
        let (_tmp, root, fs) = setup();
        std::fs::write(root.join("f"), b"").unwrap();
        let host = std::fs::metadata(root.join("f")).unwrap();
        let md = fs.metadata(&p("/f")).await.unwrap();
        assert_eq!(
            md.unique,
            Some(ferry_vfs::Unique::DevIno {
                dev: host.dev(),
                ino: host.ino()
            })
        );
        assert_eq!(md.mode, host.mode() & 0o7777);
    }

    #[tokio::test]
    async fn fifos_are_refused_without_blocking() {
        let (_tmp, root, fs) = setup();
        let made = std::process::Command::new("mkfifo")
            .arg(root.join("pipe"))
            .status();
        if !matches!(made, Ok(s) if s.success()) {
            eprintln!("mkfifo unavailable; skipped");
            return;
        }
        let limit = std::time::Duration::from_secs(5);
        let read = tokio::time::timeout(limit, fs.open_read(&p("/pipe"), 0))
            .await
            .unwrap();
        assert_eq!(kind!(read), ErrorKind::PermissionDenied);
        for mode in [WriteMode::Replace, WriteMode::Append, WriteMode::At(0)] {
            let write = tokio::time::timeout(limit, fs.open_write(&p("/pipe"), mode))
                .await
                .unwrap();
            assert_eq!(kind!(write), ErrorKind::PermissionDenied);
        }
        let entries = fs.list(&VPath::root()).await.unwrap();
        assert_eq!(entries[0].kind, EntryKind::Other);
    }

    #[test]
    fn io_errors_map_without_paths() {
        use std::io;
        let cases = [
            (
                io::Error::from(io::ErrorKind::NotFound),
                ErrorKind::NotFound,
            ),
            (
                io::Error::from(io::ErrorKind::PermissionDenied),
                ErrorKind::PermissionDenied,
            ),
            (
                io::Error::from(io::ErrorKind::AlreadyExists),
                ErrorKind::AlreadyExists,
            ),
            (
                io::Error::from_raw_os_error(39),
                ErrorKind::DirectoryNotEmpty,
            ),
            (io::Error::from_raw_os_error(20), ErrorKind::NotADirectory),
            (io::Error::from_raw_os_error(21), ErrorKind::IsADirectory),
            (
                io::Error::from_raw_os_error(28),
                ErrorKind::InsufficientStorage,
            ),
            (
                io::Error::from_raw_os_error(122),
                ErrorKind::InsufficientStorage,
            ),
            (
                io::Error::from_raw_os_error(40),
                ErrorKind::PermissionDenied,
            ),
            (
                io::Error::from_raw_os_error(18),
                ErrorKind::PermissionDenied,
            ),
            (io::Error::from_raw_os_error(36), ErrorKind::InvalidName),
            (io::Error::from_raw_os_error(5), ErrorKind::Other),
            (
                io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "a path led outside of the filesystem",
                ),
                ErrorKind::PermissionDenied,
            ),
            (io::Error::other("/home/secret/path"), ErrorKind::Other),
        ];
        for (err, want) in cases {
            let mapped = ferry_vfs::Error::from_io(&err);
            assert_eq!(mapped.kind, want, "{err}");
            assert!(!mapped.message.contains('/'), "{}", mapped.message);
        }
    }
}

/// A directory large enough to be stat'ed on several threads lists every entry once, with its
/// own metadata.
#[tokio::test]
async fn large_directory_lists_every_entry_once() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("big");
    std::fs::create_dir(&dir).unwrap();
    for i in 0..5000u32 {
        std::fs::write(dir.join(format!("f{i:05}")), vec![0u8; (i % 7) as usize]).unwrap();
    }
    std::fs::create_dir(dir.join("sub")).unwrap();
    let fs = ferry_vfs::LocalFs::new(root.path()).unwrap();
    use ferry_vfs::Storage;
    let mut entries = fs
        .list(&ferry_vfs::VPath::root().resolve("big").unwrap())
        .await
        .unwrap();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(entries.len(), 5001);
    entries.dedup_by(|a, b| a.name == b.name);
    assert_eq!(entries.len(), 5001);
    for (i, e) in entries.iter().take(5000).enumerate() {
        assert_eq!(e.name, format!("f{i:05}"));
        assert_eq!(e.size, (i % 7) as u64);
    }
    assert_eq!(entries[5000].kind, ferry_vfs::EntryKind::Dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_directory_streams_sorted_chunks() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("big");
    std::fs::create_dir(&dir).unwrap();
    // Written in reverse: the stream sorts, whatever order the directory keeps.
    for i in (0..5000u32).rev() {
        std::fs::write(dir.join(format!("f{i:05}")), vec![0u8; (i % 7) as usize]).unwrap();
    }
    let fs = ferry_vfs::LocalFs::new(root.path()).unwrap();
    use ferry_vfs::Storage;
    let big = ferry_vfs::VPath::root().resolve("big").unwrap();
    let mut stream = fs.list_sorted(&big).await.unwrap();
    let mut chunks = 0;
    let mut names = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        chunks += 1;
        for e in chunk {
            let i: usize = e.name[1..].parse().unwrap();
            assert_eq!(e.size, (i % 7) as u64);
            names.push(e.name);
        }
    }
    // Streamed in several chunks, every name once, in order.
    assert!(chunks > 1, "one chunk: not streamed");
    let expected: Vec<String> = (0..5000).map(|i| format!("f{i:05}")).collect();
    assert_eq!(names, expected);
    // A reader that stops early does not hang the backend.
    let mut stream = fs.list_sorted(&big).await.unwrap();
    assert!(stream.next().await.unwrap().is_ok());
    drop(stream);
    // A missing directory is an error before anything is streamed.
    let missing = ferry_vfs::VPath::root().resolve("nope").unwrap();
    assert_eq!(
        fs.list_sorted(&missing).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
}

/// S3 only: what the contract suite cannot see from the trait.
mod s3_only {
    use futures_util::StreamExt;

    use super::*;

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i % 251) as u8 ^ seed)
            .collect::<Vec<u8>>()
    }

    /// 5 MiB parts: a 12 MiB upload goes as three parts of one multipart upload.
    fn small_parts() -> Option<(Fs, std::net::SocketAddr, String)> {
        s3_with(|c| {
            c.part_size = 5 * 1024 * 1024;
            c.concurrency = 2;
        })
    }

    /// The health check reaches the store: a bucket that does not exist fails it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn check_fails_without_the_bucket() {
        let Some(addr) = moto::endpoint() else { return };
        let mut config = ferry_vfs::S3Config::from_url("s3://no-such-bucket/home").unwrap();
        config.endpoint = Some(format!("http://{addr}"));
        config.region = Some(moto::REGION.into());
        config.access_key_id = Some(moto::ACCESS_KEY.into());
        config.secret_access_key = Some(moto::SECRET_KEY.into());
        let fs = ferry_vfs::S3Fs::new(&config).unwrap();
        assert!(fs.check().await.is_err());
        assert!(
            fs.metadata(&VPath::root()).await.is_ok(),
            "the root needs no request"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn objects_live_in_the_bucket_beneath_the_prefix() {
        let Some((fs, addr, bucket)) = s3_on_new_bucket() else {
            return;
        };
        fs.mkdir(&p("/d")).await.unwrap();
        put(&fs, "/d/f", WriteMode::Replace, b"in the bucket").await;
        let mut keys = moto::keys(addr, &bucket);
        keys.sort();
        assert_eq!(keys, ["home/user/d/", "home/user/d/f"]);
        assert_eq!(
            moto::object(addr, &bucket, "home/user/d/f").unwrap(),
            b"in the bucket"
        );
        // Objects put by others show as files, their prefixes as directories.
        let other = moto::http(addr, "PUT", &format!("/{bucket}/home/user/x/y/z"));
        assert_eq!(other.0, 200);
        assert_eq!(names(&fs, "/").await, ["d", "x"]);
        assert_eq!(fs.metadata(&p("/x/y")).await.unwrap().kind, EntryKind::Dir);
        // Removing the last file keeps its directory (a marker replaces the implied one).
        fs.remove_file(&p("/x/y/z")).await.unwrap();
        assert!(fs.list(&p("/x/y")).await.unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn multipart_upload_shows_only_once_committed() {
        let Some((fs, addr, bucket)) = small_parts() else {
            return;
        };
        put(&fs, "/big", WriteMode::Replace, b"old").await;
        let data = pattern(12 * 1024 * 1024 + 333, 7);
        let mut up = fs.open_write(&p("/big"), WriteMode::Replace).await.unwrap();
        for chunk in data.chunks(64 * 1024) {
            up.write_all(chunk).await.unwrap();
        }
        up.flush().await.unwrap();
        // Parts are up, the object is not.
        assert_eq!(moto::open_uploads(addr, &bucket), 1);
        assert_eq!(get(&fs, "/big").await, b"old");
        up.commit().await.unwrap();
        assert_eq!(moto::open_uploads(addr, &bucket), 0);
        assert_eq!(
            fs.metadata(&p("/big")).await.unwrap().size,
            data.len() as u64
        );
        assert!(get(&fs, "/big").await == data);
        // Ranged reads, in the middle and at the very end (REST at the size).
        assert!(get_at(&fs, "/big", 7_000_001).await == data[7_000_001..]);
        assert!(get_at(&fs, "/big", data.len() as u64).await.is_empty());
        let h = fs.open_file(&p("/big"), READ).await.unwrap();
        assert!(h.read_at(6_000_000, 100).await.unwrap() == data[6_000_000..6_000_100]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn interrupted_multipart_uploads_leave_the_old_object() {
        let Some((fs, addr, bucket)) = small_parts() else {
            return;
        };
        put(&fs, "/f", WriteMode::Replace, b"keep me").await;
        // Aborted after two parts went up.
        let mut up = fs.open_write(&p("/f"), WriteMode::Replace).await.unwrap();
        up.write_all(&pattern(11 * 1024 * 1024, 1)).await.unwrap();
        up.flush().await.unwrap();
        assert_eq!(moto::open_uploads(addr, &bucket), 1);
        up.abort().await.unwrap();
        assert_eq!(moto::open_uploads(addr, &bucket), 0);
        assert_eq!(get(&fs, "/f").await, b"keep me");
        // Dropped (the transfer's task cancelled): aborted in the background.
        let mut up = fs.open_write(&p("/f"), WriteMode::Replace).await.unwrap();
        up.write_all(&pattern(11 * 1024 * 1024, 2)).await.unwrap();
        up.flush().await.unwrap();
        drop(up);
        let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while moto::open_uploads(addr, &bucket) != 0 {
            assert!(
                std::time::Instant::now() < until,
                "the upload was never aborted"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(get(&fs, "/f").await, b"keep me");
        assert_eq!(moto::keys(addr, &bucket), ["home/user/f"]);
    }

    /// Waits (bounded) until the bucket holds no multipart upload.
    async fn no_open_uploads(addr: std::net::SocketAddr, bucket: &str, what: &str) {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while moto::open_uploads(addr, bucket) != 0 {
            assert!(std::time::Instant::now() < until, "{what}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// An abort or a commit the caller stops waiting for (the session ended while its upload
    /// was being finished) still runs to its end: no multipart upload is left open.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_upload_finished_by_a_caller_who_leaves_is_not_left_open() {
        use futures_util::future::poll_immediate;
        let Some((fs, addr, bucket)) = small_parts() else {
            return;
        };
        put(&fs, "/f", WriteMode::Replace, b"keep me").await;
        let mut up = fs.open_write(&p("/f"), WriteMode::Replace).await.unwrap();
        up.write_all(&pattern(11 * 1024 * 1024, 5)).await.unwrap();
        up.flush().await.unwrap();
        assert_eq!(moto::open_uploads(addr, &bucket), 1);
        // Polled once (the abort's request is under way), then dropped.
        assert!(poll_immediate(up.abort()).await.is_none());
        no_open_uploads(
            addr,
            &bucket,
            "an abort given up half-way left the upload open",
        )
        .await;
        assert_eq!(get(&fs, "/f").await, b"keep me");

        let data = pattern(11 * 1024 * 1024 + 17, 6);
        let mut up = fs.open_write(&p("/f"), WriteMode::Replace).await.unwrap();
        up.write_all(&data).await.unwrap();
        up.flush().await.unwrap();
        assert!(poll_immediate(up.commit()).await.is_none());
        no_open_uploads(
            addr,
            &bucket,
            "a commit given up half-way left the upload open",
        )
        .await;
        assert!(get(&fs, "/f").await == data, "the commit was not completed");
        assert_eq!(moto::keys(addr, &bucket), ["home/user/f"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_download_never_mixes_two_versions() {
        let Some((fs, _, _)) = small_parts() else {
            return;
        };
        let old = pattern(12 * 1024 * 1024, 3);
        put(&fs, "/f", WriteMode::Replace, &old).await;
        let mut reader = fs.open_read(&p("/f"), 0).await.unwrap().into_reader();
        put(&fs, "/f", WriteMode::Replace, &pattern(12 * 1024 * 1024, 4)).await;
        let mut got = Vec::new();
        match reader.read_to_end(&mut got).await {
            Ok(_) => assert!(got == old, "a download mixed two versions"),
            Err(e) => assert!(old.starts_with(&got), "{e}: mixed before failing"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn listings_page_through_large_directories() {
        let Some((fs, _, _)) = s3_on_new_bucket() else {
            return;
        };
        fs.mkdir(&p("/big")).await.unwrap();
        // More than one page (the store's pages hold 1000 keys).
        let count = 1_010usize;
        let puts = futures_util::stream::iter(0..count).for_each_concurrent(16, |i| {
            let fs = Arc::clone(&fs);
            async move { put(&fs, &format!("/big/f{i:04}"), WriteMode::Replace, b"x").await }
        });
        puts.await;
        let listed = fs
            .list_sorted(&p("/big"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(listed.len(), count);
        assert!(listed.windows(2).all(|w| w[0].name < w[1].name));
        assert!(
            listed
                .iter()
                .all(|e| e.kind == EntryKind::File && e.size == 1)
        );
    }
}
