//! The SFTP request loop over a real SSH connection (russh's client on loopback), speaking raw
//! packets: many requests in flight, writes out of order, replacement only on close, and
//! hostile packets answered with statuses (or the channel closed), never a crash.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{Harness, PASSWORD, Sftp, TrustAll, USER, status_code};
use ferry_sftp_proto::{Attrs, Handle, OpenFlags, Request, Response, StatusCode};
use russh::client;

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_reads_in_flight_are_all_answered_by_id() {
    let h = Harness::start().await;
    let data = pattern(64 * 32 * 1024 + 100);
    std::fs::write(h.root.path().join("big"), &data).unwrap();
    let mut c = Sftp::connect(&h, true).await;
    let handle = c.open(1, "/big", OpenFlags::READ).await;

    // 65 reads sent before any answer is read: the last one starts past the end.
    for i in 0..65u32 {
        c.request(
            100 + i,
            Request::Read {
                handle: handle.clone(),
                offset: u64::from(i) * 32 * 1024,
                len: 32 * 1024,
            },
        )
        .await;
    }
    let mut got = vec![None; 65];
    for _ in 0..65 {
        let (id, response) = c.response().await;
        let slot = &mut got[(id - 100) as usize];
        assert!(slot.is_none(), "two answers for {id}");
        *slot = Some(response);
    }
    let mut assembled = Vec::new();
    for r in got.into_iter().map(Option::unwrap) {
        match r {
            Response::Data(d) => assembled.extend_from_slice(&d),
            Response::Status(s) => assert_eq!(s.code, StatusCode::EOF),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(assembled, data);
    assert_eq!(
        status_code(&c.call(2, Request::Close { handle }).await),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_out_of_order_land_in_place_and_replace_on_close() {
    let h = Harness::start().await;
    let target = h.root.path().join("f");
    std::fs::write(&target, b"old content").unwrap();
    let mut c = Sftp::connect(&h, true).await;
    let flags = OpenFlags::WRITE | OpenFlags::CREAT | OpenFlags::TRUNC;
    let handle = c.open(1, "/f", flags).await;

    let data = pattern(10 * 4096);
    // Last block first.
    for (n, i) in (0..10u32).rev().enumerate() {
        let at = i as usize * 4096;
        c.request(
            10 + n as u32,
            Request::Write {
                handle: handle.clone(),
                offset: at as u64,
                data: Bytes::copy_from_slice(&data[at..at + 4096]),
            },
        )
        .await;
    }
    for _ in 0..10 {
        let (_, r) = c.response().await;
        assert_eq!(status_code(&r), StatusCode::OK);
    }
    // Until CLOSE the old file is what the path names.
    assert_eq!(std::fs::read(&target).unwrap(), b"old content");
    assert_eq!(
        status_code(&c.call(2, Request::Close { handle }).await),
        StatusCode::OK
    );
    assert_eq!(std::fs::read(&target).unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_packets_get_statuses_and_the_session_goes_on() {
    let h = Harness::start().await;
    std::fs::write(h.root.path().join("f"), b"x").unwrap();
    let mut c = Sftp::connect(&h, true).await;

    // Unknown packet type, with an id: SSH_FX_OP_UNSUPPORTED.
    c.send_raw(Bytes::from_static(&[0, 0, 0, 6, 99, 0, 0, 0, 7, 0]))
        .await;
    let (id, r) = c.response().await;
    assert_eq!((id, status_code(&r)), (7, StatusCode::OP_UNSUPPORTED));

    // STAT with trailing bytes: SSH_FX_BAD_MESSAGE.
    c.send_raw(Bytes::from_static(&[
        0, 0, 0, 12, 17, 0, 0, 0, 8, 0, 0, 0, 1, b'/', 1, 2,
    ]))
    .await;
    let (id, r) = c.response().await;
    assert_eq!((id, status_code(&r)), (8, StatusCode::BAD_MESSAGE));

    // A handle the server never gave.
    let r = c
        .call(
            9,
            Request::Close {
                handle: Handle(Bytes::from_static(b"nope")),
            },
        )
        .await;
    assert_eq!(status_code(&r), StatusCode::FAILURE);

    // A name that is not UTF-8.
    let r = c
        .call(
            10,
            Request::Stat {
                path: Bytes::from_static(b"/\xff"),
            },
        )
        .await;
    match &r {
        Response::Status(s) => {
            assert_eq!(s.code, StatusCode::FAILURE);
            assert!(String::from_utf8_lossy(&s.message).contains("UTF-8"));
        }
        other => panic!("{other:?}"),
    }

    // Unknown extension.
    let r = c
        .call(
            11,
            Request::Extended(ferry_sftp_proto::Extended::Unknown {
                name: Bytes::from_static(b"nope@example.com"),
                data: Bytes::new(),
            }),
        )
        .await;
    assert_eq!(status_code(&r), StatusCode::OP_UNSUPPORTED);

    // `..` cannot climb out of the root.
    let r = c
        .call(
            12,
            Request::Realpath {
                path: Bytes::from_static(b"/../../.."),
            },
        )
        .await;
    match r {
        Response::Name(names) => assert_eq!(&names[0].filename[..], b"/"),
        other => panic!("{other:?}"),
    }

    // Still serving.
    match c
        .call(
            13,
            Request::Stat {
                path: Bytes::from_static(b"/f"),
            },
        )
        .await
    {
        Response::Attrs(a) => assert_eq!(a.size, Some(1)),
        other => panic!("{other:?}"),
    }

    // A length over the limit ends the channel (nothing can be framed after it).
    c.send_raw(Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 3]))
        .await;
    assert!(c.recv().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_before_init_ends_the_channel() {
    let h = Harness::start().await;
    let mut c = Sftp::connect(&h, false).await;
    c.request(
        1,
        Request::Stat {
            path: Bytes::from_static(b"/"),
        },
    )
    .await;
    assert!(c.recv().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_are_bounded() {
    let h = Harness::start_with(|c| c.limits.max_handles = 2).await;
    std::fs::write(h.root.path().join("f"), b"x").unwrap();
    let mut c = Sftp::connect(&h, true).await;
    let a = c.open(1, "/f", OpenFlags::READ).await;
    let _b = c.open(2, "/f", OpenFlags::READ).await;
    let r = c
        .call(
            3,
            Request::Open {
                path: Bytes::from_static(b"/f"),
                flags: OpenFlags(OpenFlags::READ),
                attrs: Attrs::default(),
            },
        )
        .await;
    assert_eq!(status_code(&r), StatusCode::FAILURE);
    assert_eq!(
        status_code(&c.call(4, Request::Close { handle: a }).await),
        StatusCode::OK
    );
    let _c = c.open(5, "/f", OpenFlags::READ).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_without_truncate_patches_in_place_keeping_the_rest() {
    let h = Harness::start().await;
    let target = h.root.path().join("f");
    std::fs::write(&target, b"0123456789").unwrap();
    let mut c = Sftp::connect(&h, true).await;
    let handle = c.open(1, "/f", OpenFlags::WRITE).await;
    let r = c
        .call(
            2,
            Request::Write {
                handle: handle.clone(),
                offset: 2,
                data: Bytes::from_static(b"ab"),
            },
        )
        .await;
    assert_eq!(status_code(&r), StatusCode::OK);
    assert_eq!(
        status_code(&c.call(3, Request::Close { handle }).await),
        StatusCode::OK
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"01ab456789");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_throttled_per_address() {
    let h = Harness::start_with(|c| c.max_failed_logins_per_ip = 2).await;
    let config = Arc::new(client::Config::default());
    for _ in 0..2 {
        let mut ssh = client::connect(Arc::clone(&config), h.addr, TrustAll)
            .await
            .unwrap();
        let r = ssh.authenticate_password(USER, "wrong").await.unwrap();
        assert!(!r.success());
    }
    // The address has used its guesses: even the right password is not checked now.
    let mut ssh = client::connect(config, h.addr, TrustAll).await.unwrap();
    let r = ssh.authenticate_password(USER, PASSWORD).await.unwrap();
    assert!(!r.success());
}
