//! Per-user quotas over SFTP (russh's client on loopback, raw packets): an open for writing
//! refused at the quota, a write past it refused with nothing of it written, the files quota,
//! a size change, and removals freeing room; each refusal `SSH_FX_FAILURE` with a message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::{Harness, Setup, Sftp, path};
use ferry_sftp_proto::{Attrs, Handle, OpenFlags, Request, Response, StatusCode};

const W: u32 = OpenFlags::WRITE;
const CREAT: u32 = OpenFlags::CREAT;
const TRUNC: u32 = OpenFlags::TRUNC;

async fn quota_server(bytes: u64, files: u64) -> Harness {
    let setup = Setup {
        quota_bytes: Some(bytes),
        quota_files: Some(files),
        ..Setup::default()
    };
    Harness::setup(setup, |_| {}).await
}

/// The status of a request expected to answer with one: its code and message.
fn status(r: &Response) -> (StatusCode, String) {
    match r {
        Response::Status(s) => (s.code, String::from_utf8_lossy(&s.message).into_owned()),
        other => panic!("expected a status, got {other:?}"),
    }
}

async fn write(c: &mut Sftp, id: u32, handle: &Handle, offset: u64, data: &[u8]) -> Response {
    let request = Request::Write {
        handle: handle.clone(),
        offset,
        data: Bytes::copy_from_slice(data),
    };
    c.call(id, request).await
}

async fn close(c: &mut Sftp, id: u32, handle: Handle) -> StatusCode {
    c.status(id, Request::Close { handle }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_at_the_quota_and_writing_past_it_fail_with_a_message() {
    let h = quota_server(1000, 0).await;
    let root = h.root.path();
    std::fs::write(root.join("old"), vec![1u8; 600]).unwrap();
    let mut c = Sftp::connect(&h, true).await;

    // 400 bytes left: a new file may take them, not one more.
    let f = c.open(1, "/new", W | CREAT | TRUNC).await;
    assert_eq!(
        status(&write(&mut c, 2, &f, 0, &[2u8; 300]).await).0,
        StatusCode::OK
    );
    let refused = status(&write(&mut c, 3, &f, 300, &[2u8; 101]).await);
    assert_eq!(
        refused,
        (
            StatusCode::FAILURE,
            "Quota exceeded: bytes (900 of 1000 used)".to_string()
        )
    );
    // A hole counts: a write far out is refused too.
    let far = status(&write(&mut c, 4, &f, 1 << 30, b"x").await);
    assert_eq!(far.0, StatusCode::FAILURE);
    assert_eq!(
        status(&write(&mut c, 5, &f, 300, &[2u8; 100]).await).0,
        StatusCode::OK
    );
    assert_eq!(close(&mut c, 6, f).await, StatusCode::OK);
    assert_eq!(std::fs::metadata(root.join("new")).unwrap().len(), 400);

    // Full: an open for writing is refused, whatever the flags.
    let append = OpenFlags::APPEND;
    for (id, name, flags) in [
        (7, "/more", W | CREAT | TRUNC),
        (8, "/more", W | CREAT),
        (9, "/new", append),
    ] {
        let refused = status(&c.try_open(id, name, flags).await);
        assert_eq!(
            refused,
            (
                StatusCode::FAILURE,
                "Quota exceeded: bytes (1000 of 1000 used)".to_string()
            ),
            "flags {flags:#x}"
        );
    }
    assert!(!root.join("more").exists());
    // Rewriting a file at its size still fits.
    let f = c.open(10, "/old", W | TRUNC).await;
    assert_eq!(
        status(&write(&mut c, 11, &f, 0, &[3u8; 600]).await).0,
        StatusCode::OK
    );
    assert_eq!(
        status(&write(&mut c, 12, &f, 600, b"x").await).0,
        StatusCode::FAILURE
    );
    assert_eq!(close(&mut c, 13, f).await, StatusCode::OK);
    assert_eq!(std::fs::read(root.join("old")).unwrap(), vec![3u8; 600]);

    // A size change may cut a file at the quota, not grow it.
    let grow = Attrs {
        size: Some(700),
        ..Attrs::default()
    };
    let set = |attrs: Attrs| Request::Setstat {
        path: path("/old"),
        attrs,
    };
    assert_eq!(c.status(14, set(grow)).await, StatusCode::FAILURE);
    let cut = Attrs {
        size: Some(100),
        ..Attrs::default()
    };
    assert_eq!(c.status(15, set(cut)).await, StatusCode::OK);
    assert_eq!(std::fs::metadata(root.join("old")).unwrap().len(), 100);
    // What the cut freed can be written.
    let f = c.open(16, "/more", W | CREAT | TRUNC).await;
    assert_eq!(
        status(&write(&mut c, 17, &f, 0, &[4u8; 500]).await).0,
        StatusCode::OK
    );
    assert_eq!(close(&mut c, 18, f).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_files_quota_refuses_new_files_and_removing_one_frees_its_place() {
    let h = quota_server(0, 2).await;
    let root = h.root.path();
    std::fs::write(root.join("one"), b"1").unwrap();
    let mut c = Sftp::connect(&h, true).await;
    let f = c.open(1, "/two", W | CREAT | TRUNC).await;
    assert_eq!(close(&mut c, 2, f).await, StatusCode::OK);
    let refused = status(&c.try_open(3, "/three", W | CREAT | TRUNC).await);
    assert_eq!(
        refused,
        (
            StatusCode::FAILURE,
            "Quota exceeded: files (2 of 2 used)".to_string()
        )
    );
    // An existing file may be written.
    let f = c.open(4, "/one", W | TRUNC).await;
    assert_eq!(close(&mut c, 5, f).await, StatusCode::OK);
    let remove = Request::Remove { path: path("/one") };
    assert_eq!(c.status(6, remove).await, StatusCode::OK);
    let f = c.open(7, "/three", W | CREAT | TRUNC).await;
    assert_eq!(close(&mut c, 8, f).await, StatusCode::OK);
    assert!(root.join("three").exists());
}
