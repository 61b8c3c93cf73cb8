//! A user with `permissions = ["upload-only"]` over SFTP: exclusive creations only; reads,
//! listings, replacing, appending and attribute changes refused.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::{Harness, Setup, Sftp, path, status_code};
use ferry_sftp_proto::{Attrs, OpenFlags, Request, Response, StatusCode, Times};

const READ: u32 = OpenFlags::READ;
const WRITE: u32 = OpenFlags::WRITE;
const CREAT: u32 = OpenFlags::CREAT;
const TRUNC: u32 = OpenFlags::TRUNC;
const EXCL: u32 = OpenFlags::EXCL;
const APPEND: u32 = OpenFlags::APPEND;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_only_user_creates_new_files_only() {
    let setup = Setup {
        permissions: vec!["upload-only".into()],
        ..Setup::default()
    };
    let h = Harness::setup(setup, |_| {}).await;
    std::fs::write(h.root.path().join("theirs.txt"), b"someone else's").unwrap();
    let mut c = Sftp::connect(&h, true).await;
    // An exclusive creation, as the drop folder's own clients open.
    let handle = c.open(1, "/new.txt", WRITE | CREAT | EXCL).await;
    let write = Request::Write {
        handle: handle.clone(),
        offset: 0,
        data: Bytes::from_static(b"dropped"),
    };
    assert_eq!(c.status(2, write).await, StatusCode::OK);
    assert_eq!(c.status(3, Request::Close { handle }).await, StatusCode::OK);
    assert_eq!(
        std::fs::read(h.root.path().join("new.txt")).unwrap(),
        b"dropped"
    );
    // OpenSSH's `put` opens WRITE|CREAT|TRUNC: exclusive here, so a new name works...
    let handle = c.open(4, "/put.txt", WRITE | CREAT | TRUNC).await;
    assert_eq!(c.status(5, Request::Close { handle }).await, StatusCode::OK);
    // ...and a name that exists is refused, the file untouched.
    for (id, flags) in [(6, WRITE | CREAT | TRUNC), (7, WRITE | CREAT | EXCL)] {
        match c.try_open(id, "/theirs.txt", flags).await {
            Response::Status(s) => {
                assert_eq!(s.code, StatusCode::FAILURE, "{s:?}");
                assert!(
                    String::from_utf8_lossy(&s.message).contains("exists"),
                    "{s:?}"
                );
            }
            other => panic!("opened an existing file: {other:?}"),
        }
    }
    // Appending or writing in place would change a file; reading is not allowed at all.
    for (id, flags) in [
        (8, WRITE | APPEND),
        (9, WRITE | CREAT | APPEND),
        (10, READ),
        (11, READ | WRITE | CREAT | EXCL),
    ] {
        let r = c.try_open(id, "/theirs.txt", flags).await;
        assert_eq!(
            status_code(&r),
            StatusCode::PERMISSION_DENIED,
            "flags {flags:#x}"
        );
    }
    assert_eq!(
        std::fs::read(h.root.path().join("theirs.txt")).unwrap(),
        b"someone else's"
    );
    let refused = [
        Request::Opendir { path: path("/") },
        Request::Stat {
            path: path("/theirs.txt"),
        },
        Request::Remove {
            path: path("/theirs.txt"),
        },
        Request::Setstat {
            path: path("/new.txt"),
            attrs: Attrs {
                times: Some(Times { atime: 0, mtime: 0 }),
                ..Attrs::default()
            },
        },
    ];
    for (id, request) in (20..).zip(refused) {
        let what = format!("{request:?}");
        assert_eq!(
            c.status(id, request).await,
            StatusCode::PERMISSION_DENIED,
            "{what}"
        );
    }
}
