//! Bandwidth limits over SFTP: a user's `upload_rate` and `download_rate`. Lower bounds only
//! (a limited transfer of N bytes takes at least 0.8 N / rate), which a slow machine cannot
//! break.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Harness, Setup, Sftp, pattern};
use ferry_sftp_proto::{OpenFlags, Request, Response, StatusCode};

const RATE: &str = "512KiB";
const RATE_BYTES: u64 = 512 * 1024;
const SIZE: usize = 1024 * 1024;
const CHUNK: usize = 32 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_rate_holds_sftp_writes_and_reads() {
    let setup = Setup {
        upload_rate: Some(RATE.into()),
        download_rate: Some(RATE.into()),
        ..Setup::default()
    };
    let h = Harness::setup(setup, |_| {}).await;
    let floor = Duration::from_secs_f64(SIZE as f64 / RATE_BYTES as f64 * 0.8);
    let body = pattern(SIZE);
    let mut c = Sftp::connect(&h, true).await;
    let flags = OpenFlags::WRITE | OpenFlags::CREAT | OpenFlags::TRUNC;
    let handle = c.open(1, "/limited.bin", flags).await;
    let started = Instant::now();
    for (i, chunk) in body.chunks(CHUNK).enumerate() {
        let write = Request::Write {
            handle: handle.clone(),
            offset: (i * CHUNK) as u64,
            data: Bytes::copy_from_slice(chunk),
        };
        assert_eq!(c.status(10 + i as u32, write).await, StatusCode::OK);
    }
    let upload = started.elapsed();
    assert_eq!(c.status(2, Request::Close { handle }).await, StatusCode::OK);
    assert!(upload >= floor, "1 MiB written at {RATE}/s in {upload:?}");
    assert_eq!(
        std::fs::read(h.root.path().join("limited.bin")).unwrap(),
        body
    );
    let handle = c.open(3, "/limited.bin", OpenFlags::READ).await;
    let started = Instant::now();
    let mut got = Vec::with_capacity(SIZE);
    for i in 0..SIZE / CHUNK {
        let read = Request::Read {
            handle: handle.clone(),
            offset: (i * CHUNK) as u64,
            len: CHUNK as u32,
        };
        match c.call(100 + i as u32, read).await {
            Response::Data(data) => got.extend_from_slice(&data),
            other => panic!("read {i}: {other:?}"),
        }
    }
    let download = started.elapsed();
    assert_eq!(got, body);
    assert!(download >= floor, "1 MiB read at {RATE}/s in {download:?}");
    eprintln!("at {RATE}/s: 1 MiB written in {upload:?}, read in {download:?}");
}
