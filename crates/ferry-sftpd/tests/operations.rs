//! Every SFTP operation over a real SSH connection (russh's client on loopback, raw packets):
//! open flags, directory reads in batches, attribute changes, statvfs/fsync/limits, links
//! refused, the account's permissions, the jail, and files left open when a client goes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use common::{Harness, Setup, Sftp, WAIT, path, status_code};
use ferry_sftp_proto::{
    Attrs, ClientMessage, Extended, Handle, OpenFlags, Owner, Request, Response, ServerMessage,
    StatVfs, StatusCode, Times, ext,
};
use ferry_vfs::{
    Capabilities, Entry, EntryStream, FileAccess, FileHandle, FsSpace, LocalFs, Metadata,
    ReadHandle, Result, Storage, Upload, VPath, WriteMode,
};

const R: u32 = OpenFlags::READ;
const W: u32 = OpenFlags::WRITE;
const CREAT: u32 = OpenFlags::CREAT;
const TRUNC: u32 = OpenFlags::TRUNC;
const EXCL: u32 = OpenFlags::EXCL;
const APPEND: u32 = OpenFlags::APPEND;

async fn write(c: &mut Sftp, id: u32, handle: &Handle, offset: u64, data: &[u8]) -> StatusCode {
    c.status(
        id,
        Request::Write {
            handle: handle.clone(),
            offset,
            data: Bytes::copy_from_slice(data),
        },
    )
    .await
}

async fn read(c: &mut Sftp, id: u32, handle: &Handle, offset: u64, len: u32) -> Response {
    c.call(
        id,
        Request::Read {
            handle: handle.clone(),
            offset,
            len,
        },
    )
    .await
}

async fn close(c: &mut Sftp, id: u32, handle: Handle) -> StatusCode {
    c.status(id, Request::Close { handle }).await
}

fn message(r: &Response) -> String {
    match r {
        Response::Status(s) => String::from_utf8_lossy(&s.message).into_owned(),
        other => panic!("expected a status, got {other:?}"),
    }
}

fn mtime(p: &std::path::Path) -> u64 {
    std::fs::metadata(p)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn names_on_disk(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_offers_the_extensions_served() {
    let h = Harness::start().await;
    let c = Sftp::connect(&h, false).await;
    let mut c = c;
    c.send(ClientMessage::Init {
        version: 3,
        extensions: vec![],
    })
    .await;
    let Some(ServerMessage::Version {
        version,
        extensions,
    }) = c.recv().await
    else {
        panic!("no VERSION");
    };
    assert_eq!(version, 3);
    let offered: Vec<(String, String)> = extensions
        .iter()
        .map(|e| {
            (
                String::from_utf8_lossy(&e.name).into_owned(),
                String::from_utf8_lossy(&e.data).into_owned(),
            )
        })
        .collect();
    for (name, version) in [
        (ext::POSIX_RENAME, "1"),
        (ext::STATVFS, "2"),
        (ext::FSTATVFS, "2"),
        (ext::FSYNC, "1"),
        (ext::LIMITS, "1"),
    ] {
        assert!(
            offered.contains(&(name.to_string(), version.to_string())),
            "{name} {version} not in {offered:?}"
        );
    }
    // Refused, so never offered.
    assert!(
        !offered.iter().any(|(n, _)| n == ext::HARDLINK),
        "{offered:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_flags_choose_how_a_file_is_written() {
    let h = Harness::start().await;
    let root = h.root.path();
    let mut c = Sftp::connect(&h, true).await;

    // READ|WRITE|CREAT|TRUNC: a new content, readable through the handle, in place on CLOSE.
    std::fs::write(root.join("t"), b"old content").unwrap();
    let t = c.open(1, "/t", R | W | CREAT | TRUNC).await;
    assert_eq!(write(&mut c, 2, &t, 0, b"fresh").await, StatusCode::OK);
    match read(&mut c, 3, &t, 1, 100).await {
        Response::Data(d) => assert_eq!(&d[..], b"resh"),
        other => panic!("{other:?}"),
    }
    match c.call(4, Request::Fstat { handle: t.clone() }).await {
        Response::Attrs(a) => assert_eq!(a.size, Some(5)),
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read(root.join("t")).unwrap(), b"old content");
    assert_eq!(close(&mut c, 5, t).await, StatusCode::OK);
    assert_eq!(std::fs::read(root.join("t")).unwrap(), b"fresh");

    // CREAT|EXCL: only a new name.
    let r = c.try_open(6, "/t", W | CREAT | EXCL).await;
    assert_eq!(status_code(&r), StatusCode::FAILURE, "{}", message(&r));
    let e = c.open(7, "/e", W | CREAT | EXCL).await;
    assert_eq!(write(&mut c, 8, &e, 0, b"e").await, StatusCode::OK);
    assert_eq!(close(&mut c, 9, e).await, StatusCode::OK);
    assert_eq!(std::fs::read(root.join("e")).unwrap(), b"e");

    // Without CREAT the file must exist.
    let r = c.try_open(10, "/missing", W).await;
    assert_eq!(status_code(&r), StatusCode::NO_SUCH_FILE);
    let r = c.try_open(11, "/missing", W | TRUNC).await;
    assert_eq!(status_code(&r), StatusCode::NO_SUCH_FILE);
    let r = c.try_open(12, "/missing", R).await;
    assert_eq!(status_code(&r), StatusCode::NO_SUCH_FILE);
    assert!(!root.join("missing").exists());

    // APPEND: at the end, whatever the offset.
    std::fs::write(root.join("a"), b"head").unwrap();
    let a = c.open(13, "/a", W | APPEND).await;
    assert_eq!(write(&mut c, 14, &a, 0, b"+tail").await, StatusCode::OK);
    assert_eq!(close(&mut c, 15, a).await, StatusCode::OK);
    assert_eq!(std::fs::read(root.join("a")).unwrap(), b"head+tail");

    // WRITE|CREAT on a new name: the file appears whole, on CLOSE.
    let n = c.open(16, "/n", W | CREAT).await;
    assert_eq!(write(&mut c, 17, &n, 0, b"new").await, StatusCode::OK);
    assert!(!root.join("n").exists());
    assert_eq!(close(&mut c, 18, n).await, StatusCode::OK);
    assert_eq!(std::fs::read(root.join("n")).unwrap(), b"new");

    // A directory is not a file.
    std::fs::create_dir(root.join("d")).unwrap();
    for flags in [R, W, W | CREAT, W | CREAT | TRUNC] {
        let r = c.try_open(19, "/d", flags).await;
        assert_eq!(status_code(&r), StatusCode::FAILURE, "{flags:#x}");
    }
    assert_eq!(names_on_disk(root), ["a", "d", "e", "n", "t"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readdir_comes_in_batches_ending_with_eof() {
    let h = Harness::start().await;
    let dir = h.root.path().join("many");
    std::fs::create_dir(&dir).unwrap();
    for i in 0..250 {
        std::fs::write(dir.join(format!("f{i:03}")), [b'x'; 3]).unwrap();
    }
    let mut c = Sftp::connect(&h, true).await;
    let handle = match c
        .call(
            1,
            Request::Opendir {
                path: path("/many"),
            },
        )
        .await
    {
        Response::Handle(h) => h,
        other => panic!("{other:?}"),
    };
    let mut batches = Vec::new();
    let mut seen = Vec::new();
    for id in 2.. {
        match c
            .call(
                id,
                Request::Readdir {
                    handle: handle.clone(),
                },
            )
            .await
        {
            Response::Name(names) => {
                batches.push(names.len());
                for n in names {
                    assert_eq!(n.attrs.size, Some(3));
                    assert!(String::from_utf8_lossy(&n.longname).starts_with("-rw"));
                    seen.push(String::from_utf8(n.filename.to_vec()).unwrap());
                }
            }
            Response::Status(s) if s.code == StatusCode::EOF => break,
            other => panic!("{other:?}"),
        }
        assert!(id < 10, "no end of directory");
    }
    assert_eq!(batches, [100, 100, 50]);
    let want: Vec<String> = (0..250).map(|i| format!("f{i:03}")).collect();
    assert_eq!(seen, want);
    match c
        .call(
            20,
            Request::Fstat {
                handle: handle.clone(),
            },
        )
        .await
    {
        Response::Attrs(a) => assert!(a.permissions.unwrap() & 0o040000 != 0),
        other => panic!("{other:?}"),
    }
    // Reading a directory handle as a file, and the reverse, are refused.
    let r = read(&mut c, 21, &handle, 0, 10).await;
    assert_eq!(status_code(&r), StatusCode::FAILURE);
    assert_eq!(close(&mut c, 22, handle).await, StatusCode::OK);
    let r = c
        .call(
            23,
            Request::Opendir {
                path: path("/many/f000"),
            },
        )
        .await;
    assert_eq!(status_code(&r), StatusCode::FAILURE);
    let r = c
        .call(
            24,
            Request::Opendir {
                path: path("/nope"),
            },
        )
        .await;
    assert_eq!(status_code(&r), StatusCode::NO_SUCH_FILE);
}

fn attrs(f: impl FnOnce(&mut Attrs)) -> Attrs {
    let mut a = Attrs::EMPTY;
    f(&mut a);
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setstat_and_fsetstat_change_size_permissions_and_time() {
    let h = Harness::start().await;
    let root = h.root.path();
    std::fs::write(root.join("f"), b"0123456789").unwrap();
    let mut c = Sftp::connect(&h, true).await;
    let setstat = |path_: &str, a: Attrs| Request::Setstat {
        path: path(path_),
        attrs: a,
    };

    // By path: size, permissions, time.
    let r = c
        .status(1, setstat("/f", attrs(|a| a.size = Some(4))))
        .await;
    assert_eq!(r, StatusCode::OK);
    assert_eq!(std::fs::read(root.join("f")).unwrap(), b"0123");
    let r = c
        .status(2, setstat("/f", attrs(|a| a.permissions = Some(0o600))))
        .await;
    assert_eq!(r, StatusCode::OK);
    assert_eq!(mode(&root.join("f")), 0o600);
    let times = Times {
        atime: 1_000_000_000,
        mtime: 1_000_000_000,
    };
    let r = c
        .status(3, setstat("/f", attrs(|a| a.times = Some(times))))
        .await;
    assert_eq!(r, StatusCode::OK);
    assert_eq!(mtime(&root.join("f")), 1_000_000_000);
    match c.call(4, Request::Stat { path: path("/f") }).await {
        Response::Attrs(a) => {
            assert_eq!(a.size, Some(4));
            assert_eq!(a.times.unwrap().mtime, 1_000_000_000);
            assert_eq!(a.permissions.unwrap() & 0o777, 0o600);
        }
        other => panic!("{other:?}"),
    }
    // The owner can't be changed; a missing file has no size to change.
    let owner = Owner { uid: 0, gid: 0 };
    let r = c
        .call(5, setstat("/f", attrs(|a| a.owner = Some(owner))))
        .await;
    assert_eq!(
        status_code(&r),
        StatusCode::OP_UNSUPPORTED,
        "{}",
        message(&r)
    );
    let r = c
        .status(6, setstat("/missing", attrs(|a| a.size = Some(0))))
        .await;
    assert_eq!(r, StatusCode::NO_SUCH_FILE);
    assert!(!root.join("missing").exists());

    // On a file being replaced: the size of what is written at once, the time and
    // permissions once it is in place (until then the path names the old file).
    std::fs::write(root.join("g"), b"old").unwrap();
    let g = c.open(7, "/g", W | CREAT | TRUNC).await;
    assert_eq!(
        write(&mut c, 8, &g, 0, b"new content").await,
        StatusCode::OK
    );
    let change = attrs(|a| {
        a.size = Some(3);
        a.permissions = Some(0o640);
        a.times = Some(Times {
            atime: 2_000_000_000,
            mtime: 2_000_000_000,
        });
    });
    let r = c
        .status(
            9,
            Request::Fsetstat {
                handle: g.clone(),
                attrs: change,
            },
        )
        .await;
    assert_eq!(r, StatusCode::OK);
    assert_eq!(std::fs::read(root.join("g")).unwrap(), b"old");
    assert_ne!(mtime(&root.join("g")), 2_000_000_000);
    assert_eq!(close(&mut c, 10, g).await, StatusCode::OK);
    assert_eq!(std::fs::read(root.join("g")).unwrap(), b"new");
    assert_eq!(mtime(&root.join("g")), 2_000_000_000);
    assert_eq!(mode(&root.join("g")), 0o640);

    // In place: at once.
    std::fs::write(root.join("u"), b"0123456789").unwrap();
    let u = c.open(11, "/u", W).await;
    let r = c
        .status(
            12,
            Request::Fsetstat {
                handle: u.clone(),
                attrs: attrs(|a| a.size = Some(2)),
            },
        )
        .await;
    assert_eq!(r, StatusCode::OK);
    assert_eq!(std::fs::read(root.join("u")).unwrap(), b"01");
    // A handle opened for reading changes no size.
    let ro = c.open(13, "/u", R).await;
    let r = c
        .status(
            14,
            Request::Fsetstat {
                handle: ro,
                attrs: attrs(|a| a.size = Some(0)),
            },
        )
        .await;
    assert_eq!(r, StatusCode::PERMISSION_DENIED);
    assert_eq!(std::fs::read(root.join("u")).unwrap(), b"01");
    assert_eq!(close(&mut c, 15, u).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statvfs_fsync_limits_and_renames() {
    let h = Harness::start().await;
    let root = h.root.path();
    std::fs::write(root.join("f"), b"x").unwrap();
    let mut c = Sftp::connect(&h, true).await;

    let space = match c
        .call(1, Request::Extended(Extended::StatVfs { path: path("/f") }))
        .await
    {
        Response::ExtendedReply(body) => StatVfs::decode(body).unwrap(),
        other => panic!("{other:?}"),
    };
    assert!(
        space.blocks > 0 && space.bavail <= space.blocks,
        "{space:?}"
    );
    assert!(space.frsize > 0 && space.namemax >= 255, "{space:?}");
    assert_eq!(space.flag & ext::ST_RDONLY, 0);
    let r = c
        .call(
            2,
            Request::Extended(Extended::StatVfs {
                path: path("/nope"),
            }),
        )
        .await;
    assert_eq!(status_code(&r), StatusCode::NO_SUCH_FILE);

    let f = c.open(3, "/f", W).await;
    match c
        .call(
            4,
            Request::Extended(Extended::FstatVfs { handle: f.clone() }),
        )
        .await
    {
        Response::ExtendedReply(body) => {
            assert_eq!(StatVfs::decode(body).unwrap().fsid, space.fsid)
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(write(&mut c, 5, &f, 1, b"yz").await, StatusCode::OK);
    let r = c
        .status(6, Request::Extended(Extended::Fsync { handle: f.clone() }))
        .await;
    assert_eq!(r, StatusCode::OK);
    assert_eq!(close(&mut c, 7, f).await, StatusCode::OK);
    assert_eq!(std::fs::read(root.join("f")).unwrap(), b"xyz");

    match c.call(8, Request::Extended(Extended::Limits)).await {
        Response::ExtendedReply(body) => {
            let l = ferry_sftp_proto::Limits::decode(body).unwrap();
            assert_eq!(l.max_packet_len, 256 * 1024);
            assert!(l.max_read_len >= 32 * 1024 && l.max_read_len < l.max_packet_len);
            assert_eq!(l.max_write_len, l.max_read_len);
            assert_eq!(l.max_open_handles, 256);
        }
        other => panic!("{other:?}"),
    }

    // RENAME never replaces; posix-rename does.
    std::fs::write(root.join("g"), b"g").unwrap();
    let rename = Request::Rename {
        from: path("/f"),
        to: path("/g"),
    };
    assert_eq!(c.status(9, rename).await, StatusCode::FAILURE);
    assert_eq!(std::fs::read(root.join("g")).unwrap(), b"g");
    let posix = Request::Extended(Extended::PosixRename {
        from: path("/f"),
        to: path("/g"),
    });
    assert_eq!(c.status(10, posix).await, StatusCode::OK);
    assert_eq!(std::fs::read(root.join("g")).unwrap(), b"xyz");
    assert_eq!(names_on_disk(root), ["g"]);

    // Realpath: normalised, relative to the root, never above it.
    for (asked, want) in [
        (".", "/"),
        ("a/../../b", "/b"),
        ("/x/./y/", "/x/y"),
        ("..", "/"),
    ] {
        match c.call(11, Request::Realpath { path: path(asked) }).await {
            Response::Name(n) => assert_eq!(&n[0].filename[..], want.as_bytes(), "{asked}"),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_are_refused_clearly() {
    let h = Harness::start().await;
    let root = h.root.path();
    std::fs::write(root.join("f"), b"x").unwrap();
    std::os::unix::fs::symlink("f", root.join("link")).unwrap();
    let mut c = Sftp::connect(&h, true).await;
    let r = c
        .call(
            1,
            Request::Symlink {
                target: path("/f"),
                link: path("/new"),
            },
        )
        .await;
    assert_eq!(status_code(&r), StatusCode::OP_UNSUPPORTED);
    assert!(message(&r).contains("Symbolic links"), "{}", message(&r));
    let r = c
        .call(
            2,
            Request::Readlink {
                path: path("/link"),
            },
        )
        .await;
    assert_eq!(status_code(&r), StatusCode::OP_UNSUPPORTED);
    let r = c
        .call(
            3,
            Request::Extended(Extended::Hardlink {
                from: path("/f"),
                to: path("/hard"),
            }),
        )
        .await;
    assert_eq!(status_code(&r), StatusCode::OP_UNSUPPORTED);
    assert!(message(&r).contains("Hard links"), "{}", message(&r));
    assert_eq!(names_on_disk(root), ["f", "link"]);
    // A link inside the root is followed.
    match c
        .call(
            4,
            Request::Stat {
                path: path("/link"),
            },
        )
        .await
    {
        Response::Attrs(a) => assert_eq!(a.size, Some(1)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_leads_out_of_the_root() {
    let h = Harness::start().await;
    let root = h.root.path();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"secret").unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("out")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), root.join("s")).unwrap();
    let mut c = Sftp::connect(&h, true).await;
    let refused = |code: StatusCode| {
        code == StatusCode::PERMISSION_DENIED || code == StatusCode::NO_SUCH_FILE
    };
    for p in [
        "/out/secret",
        "/s",
        "/out",
        "../../../../etc/passwd",
        "/etc/passwd",
    ] {
        let r = c.call(1, Request::Stat { path: path(p) }).await;
        assert!(refused(status_code(&r)), "stat {p}: {r:?}");
        let r = c.try_open(2, p, R).await;
        assert!(refused(status_code(&r)), "open {p}: {r:?}");
        let r = c.call(3, Request::Opendir { path: path(p) }).await;
        assert!(
            matches!(r, Response::Status(_)) && status_code(&r) != StatusCode::OK,
            "opendir {p}: {r:?}"
        );
    }
    for p in ["/out/new", "/out/secret", "/s"] {
        for flags in [W | CREAT | TRUNC, W | CREAT, W | APPEND, W | CREAT | EXCL] {
            let r = c.try_open(4, p, flags).await;
            assert!(
                matches!(r, Response::Status(_)),
                "open {p} {flags:#x}: {r:?}"
            );
        }
        let r = c
            .call(
                5,
                Request::Setstat {
                    path: path(p),
                    attrs: attrs(|a| a.size = Some(0)),
                },
            )
            .await;
        assert!(status_code(&r) != StatusCode::OK, "setstat {p}");
    }
    let r = c
        .call(
            6,
            Request::Extended(Extended::StatVfs { path: path("/out") }),
        )
        .await;
    assert!(refused(status_code(&r)), "statvfs: {r:?}");
    assert_eq!(names_on_disk(outside.path()), ["secret"]);
    assert_eq!(
        std::fs::read(outside.path().join("secret")).unwrap(),
        b"secret"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accounts_permissions_apply() {
    let setup = Setup {
        permissions: vec!["read-only".into()],
        ..Setup::default()
    };
    let h = Harness::setup(setup, |_| {}).await;
    let root = h.root.path();
    std::fs::write(root.join("f"), b"data").unwrap();
    std::fs::create_dir(root.join("d")).unwrap();
    let mut c = Sftp::connect(&h, true).await;
    let f = c.open(1, "/f", R).await;
    match read(&mut c, 2, &f, 0, 100).await {
        Response::Data(d) => assert_eq!(&d[..], b"data"),
        other => panic!("{other:?}"),
    }
    for flags in [W, W | CREAT | TRUNC, W | APPEND, R | W] {
        let r = c.try_open(3, "/f", flags).await;
        assert_eq!(status_code(&r), StatusCode::PERMISSION_DENIED, "{flags:#x}");
    }
    let denied = [
        Request::Mkdir {
            path: path("/new"),
            attrs: Attrs::EMPTY,
        },
        Request::Rmdir { path: path("/d") },
        Request::Remove { path: path("/f") },
        Request::Rename {
            from: path("/f"),
            to: path("/g"),
        },
        Request::Extended(Extended::PosixRename {
            from: path("/f"),
            to: path("/g"),
        }),
        Request::Setstat {
            path: path("/f"),
            attrs: attrs(|a| a.permissions = Some(0o777)),
        },
        Request::Setstat {
            path: path("/f"),
            attrs: attrs(|a| a.size = Some(0)),
        },
    ];
    for (i, request) in denied.into_iter().enumerate() {
        let name = request.name();
        let code = c.status(10 + i as u32, request).await;
        assert_eq!(code, StatusCode::PERMISSION_DENIED, "{name}");
    }
    assert_eq!(names_on_disk(root), ["d", "f"]);
    assert_eq!(std::fs::read(root.join("f")).unwrap(), b"data");
    // Read-only, as far as this account is concerned.
    match c
        .call(30, Request::Extended(Extended::StatVfs { path: path("/") }))
        .await
    {
        Response::ExtendedReply(body) => {
            assert_ne!(StatVfs::decode(body).unwrap().flag & ext::ST_RDONLY, 0)
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_without_figures_or_permissions_says_unsupported() {
    let memory: Arc<dyn Storage> = Arc::new(ferry_vfs::MemoryFs::new());
    let setup = Setup {
        storage: Some(Arc::new(move |_: &ferry_auth::Account| {
            Ok(Arc::clone(&memory))
        })),
        ..Setup::default()
    };
    let h = Harness::setup(setup, |_| {}).await;
    let mut c = Sftp::connect(&h, true).await;
    let f = c.open(1, "/f", W | CREAT | TRUNC).await;
    assert_eq!(write(&mut c, 2, &f, 0, b"abc").await, StatusCode::OK);
    assert_eq!(close(&mut c, 3, f).await, StatusCode::OK);
    let r = c
        .call(4, Request::Extended(Extended::StatVfs { path: path("/f") }))
        .await;
    assert_eq!(
        status_code(&r),
        StatusCode::OP_UNSUPPORTED,
        "{}",
        message(&r)
    );
    let r = c
        .call(
            5,
            Request::Setstat {
                path: path("/f"),
                attrs: attrs(|a| a.permissions = Some(0o600)),
            },
        )
        .await;
    assert_eq!(
        status_code(&r),
        StatusCode::OP_UNSUPPORTED,
        "{}",
        message(&r)
    );
    // What the backend can do still works: time, and writes in place.
    let times = Times {
        atime: 1_500_000_000,
        mtime: 1_500_000_000,
    };
    let r = c
        .status(
            6,
            Request::Setstat {
                path: path("/f"),
                attrs: attrs(|a| a.times = Some(times)),
            },
        )
        .await;
    assert_eq!(r, StatusCode::OK);
    let f = c.open(7, "/f", W).await;
    assert_eq!(write(&mut c, 8, &f, 1, b"X").await, StatusCode::OK);
    assert_eq!(close(&mut c, 9, f).await, StatusCode::OK);
    let f = c.open(10, "/f", R).await;
    match read(&mut c, 11, &f, 0, 10).await {
        Response::Data(d) => assert_eq!(&d[..], b"aXc"),
        other => panic!("{other:?}"),
    }
}

/// Local storage that counts the files given up ([`FileHandle::abort`]).
struct Counting {
    local: LocalFs,
    aborted: Arc<AtomicUsize>,
}

struct CountingHandle {
    inner: Box<dyn FileHandle>,
    aborted: Arc<AtomicUsize>,
}

#[async_trait]
impl FileHandle for CountingHandle {
    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.inner.read_at(offset, len).await
    }
    async fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.inner.write_at(offset, data).await
    }
    async fn metadata(&self) -> Result<Metadata> {
        self.inner.metadata().await
    }
    async fn set_len(&self, len: u64) -> Result<()> {
        self.inner.set_len(len).await
    }
    async fn sync(&self) -> Result<()> {
        self.inner.sync().await
    }
    async fn close(self: Box<Self>) -> Result<()> {
        self.inner.close().await
    }
    async fn abort(self: Box<Self>) -> Result<()> {
        let done = self.inner.abort().await;
        self.aborted.fetch_add(1, Ordering::SeqCst);
        done
    }
}

#[async_trait]
impl Storage for Counting {
    async fn metadata(&self, path: &VPath) -> Result<Metadata> {
        self.local.metadata(path).await
    }
    async fn list(&self, path: &VPath) -> Result<Vec<Entry>> {
        self.local.list(path).await
    }
    async fn list_sorted(&self, path: &VPath) -> Result<EntryStream> {
        self.local.list_sorted(path).await
    }
    async fn open_read(&self, path: &VPath, offset: u64) -> Result<ReadHandle> {
        self.local.open_read(path, offset).await
    }
    async fn open_write(&self, path: &VPath, mode: WriteMode) -> Result<Box<dyn Upload>> {
        self.local.open_write(path, mode).await
    }
    async fn open_file(&self, path: &VPath, access: FileAccess) -> Result<Box<dyn FileHandle>> {
        let inner = self.local.open_file(path, access).await?;
        Ok(Box::new(CountingHandle {
            inner,
            aborted: Arc::clone(&self.aborted),
        }))
    }
    fn capabilities(&self) -> Capabilities {
        self.local.capabilities()
    }
    async fn mkdir(&self, path: &VPath) -> Result<()> {
        self.local.mkdir(path).await
    }
    async fn rmdir(&self, path: &VPath) -> Result<()> {
        self.local.rmdir(path).await
    }
    async fn remove_file(&self, path: &VPath) -> Result<()> {
        self.local.remove_file(path).await
    }
    async fn rename(&self, from: &VPath, to: &VPath) -> Result<()> {
        self.local.rename(from, to).await
    }
    async fn set_mtime(&self, path: &VPath, unix_secs: i64) -> Result<()> {
        self.local.set_mtime(path, unix_secs).await
    }
    async fn set_mode(&self, path: &VPath, mode: u32) -> Result<()> {
        self.local.set_mode(path, mode).await
    }
    async fn statvfs(&self, path: &VPath) -> Result<FsSpace> {
        self.local.statvfs(path).await
    }
}

/// Wait (bounded) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_left_open_when_the_client_goes_are_given_up() {
    let aborted = Arc::new(AtomicUsize::new(0));
    let root = tempfile::tempdir().unwrap();
    let storage = {
        let aborted = Arc::clone(&aborted);
        let home = root.path().to_path_buf();
        Arc::new(move |_: &ferry_auth::Account| {
            let s: Arc<dyn Storage> = Arc::new(Counting {
                local: LocalFs::new(&home)?,
                aborted: Arc::clone(&aborted),
            });
            Ok(s)
        })
    };
    let setup = Setup {
        storage: Some(storage),
        ..Setup::default()
    };
    let h = Harness::setup(setup, |_| {}).await;
    let root = root.path();
    std::fs::write(root.join("f"), b"old content").unwrap();
    std::fs::write(root.join("u"), b"0123456789").unwrap();
    let mut c = Sftp::connect(&h, true).await;
    let f = c.open(1, "/f", W | CREAT | TRUNC).await;
    assert_eq!(
        write(&mut c, 2, &f, 0, b"half of a new").await,
        StatusCode::OK
    );
    let n = c.open(3, "/n", W | CREAT).await;
    assert_eq!(
        write(&mut c, 4, &n, 0, b"never whole").await,
        StatusCode::OK
    );
    let u = c.open(5, "/u", W).await;
    assert_eq!(write(&mut c, 6, &u, 0, b"AB").await, StatusCode::OK);
    let _r = c.open(7, "/u", R).await;
    // Temporary files sit beside the targets meanwhile.
    assert_eq!(names_on_disk(root).len(), 4);

    // The client goes without closing anything.
    drop(c);
    until("every file given up", || {
        aborted.load(Ordering::SeqCst) == 4
    })
    .await;
    until("the temporary files removed", || {
        names_on_disk(root) == ["f", "u"]
    })
    .await;
    assert_eq!(std::fs::read(root.join("f")).unwrap(), b"old content");
    // Written in place stays written, as on any file system.
    assert_eq!(std::fs::read(root.join("u")).unwrap(), b"AB23456789");
}

/// A file's reads and writes are a transfer, listed while the file is open and counted by
/// direction when it is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_transfers_are_counted_in_the_metrics() {
    let h = Harness::start().await;
    let mut c = Sftp::connect(&h, true).await;
    let up = c.open(1, "/up", W | CREAT | TRUNC).await;
    assert_eq!(
        write(&mut c, 2, &up, 0, b"twelve bytes").await,
        StatusCode::OK
    );
    let running = h.metrics.transfers();
    assert_eq!(running.len(), 1);
    assert_eq!((running[0].path.as_str(), running[0].bytes()), ("/up", 12));
    assert_eq!(close(&mut c, 3, up).await, StatusCode::OK);
    assert!(h.metrics.transfers().is_empty());
    let down = c.open(4, "/up", R).await;
    assert!(matches!(
        read(&mut c, 5, &down, 0, 100).await,
        Response::Data(_)
    ));
    assert_eq!(close(&mut c, 6, down).await, StatusCode::OK);
    let text = h.metrics.render(&ferry_core::SessionRegistry::new(0, 0));
    for line in [
        "ferry_transfer_bytes_total{protocol=\"sftp\",direction=\"upload\"} 12",
        "ferry_transfer_bytes_total{protocol=\"sftp\",direction=\"download\"} 12",
        "ferry_transfers_total{protocol=\"sftp\",direction=\"upload\"} 1",
        "ferry_transfers_total{protocol=\"sftp\",direction=\"download\"} 1",
        "ferry_logins_total{protocol=\"sftp\",result=\"ok\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
}
