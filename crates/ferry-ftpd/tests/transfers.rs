//! Transfers: binary and ASCII, REST, APPE, STOU, ABOR, interrupted uploads, large offsets,
//! many sessions at once, the quick path of small downloads, and each server's own counts of
//! the paths its transfers took.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn binary_round_trip_and_empty_file() {
    let s = TestServer::start().await;
    let mut c = s.login().await;
    c.expect("TYPE I", 200).await;
    let body = content(3 * 1024 * 1024 + 17, 1);
    assert_eq!(c.stor_passive("STOR big.bin", &body).await.code, 226);
    let (got, done) = c.retr_passive("RETR big.bin").await;
    assert_eq!(done.code, 226);
    assert_eq!(sha256(&got), sha256(&body));
    assert_eq!(c.stor_passive("STOR empty", b"").await.code, 226);
    assert_eq!(std::fs::metadata(s.path("empty")).unwrap().len(), 0);
    let (got, done) = c.retr_passive("RETR empty").await;
    assert!(got.is_empty());
    assert_eq!(done.code, 226);
    c.expect("EPSV", 229).await;
    c.expect("RETR missing", 550).await;
    c.expect("RETR /", 550).await;
}

#[tokio::test]
async fn ascii_mode_converts_line_endings_both_ways() {
    let s = TestServer::start().await;
    std::fs::write(s.path("unix.txt"), b"one\ntwo\n\nthree").unwrap();
    let mut c = s.login().await;
    c.expect("TYPE A", 200).await;
    let (got, _) = c.retr_passive("RETR unix.txt").await;
    assert_eq!(got, b"one\r\ntwo\r\n\r\nthree");
    assert_eq!(
        c.stor_passive("STOR up.txt", b"a\r\nb\r\nc\rd\r\n")
            .await
            .code,
        226
    );
    assert_eq!(std::fs::read(s.path("up.txt")).unwrap(), b"a\nb\nc\rd\n");
    // Binary leaves bytes alone.
    c.expect("TYPE I", 200).await;
    let (got, _) = c.retr_passive("RETR unix.txt").await;
    assert_eq!(got, b"one\ntwo\n\nthree");
}

#[tokio::test]
async fn rest_resumes_downloads_and_uploads() {
    let s = TestServer::start().await;
    let body = content(100_000, 2);
    std::fs::write(s.path("f"), &body).unwrap();
    let mut c = s.login().await;
    c.expect("TYPE I", 200).await;
    c.expect("REST 40000", 350).await;
    let (got, done) = c.retr_passive("RETR f").await;
    assert_eq!(done.code, 226);
    assert_eq!(got, &body[40000..]);
    // REST applies once.
    let (got, _) = c.retr_passive("RETR f").await;
    assert_eq!(got.len(), body.len());
    // Upload resume: the server keeps the first 60000 bytes and takes the rest.
    std::fs::write(s.path("u"), &body[..60000]).unwrap();
    c.expect("REST 60000", 350).await;
    assert_eq!(c.stor_passive("STOR u", &body[60000..]).await.code, 226);
    assert_eq!(sha256(&std::fs::read(s.path("u")).unwrap()), sha256(&body));
}

#[tokio::test]
async fn append_and_unique_names() {
    let s = TestServer::start().await;
    let mut c = s.login().await;
    c.expect("TYPE I", 200).await;
    assert_eq!(c.stor_passive("APPE log", b"first,").await.code, 226);
    assert_eq!(c.stor_passive("APPE log", b"second").await.code, 226);
    assert_eq!(std::fs::read(s.path("log")).unwrap(), b"first,second");
    // STOU never overwrites.
    let addr = c.epsv().await;
    let mut data = TcpStream::connect(addr).await.unwrap();
    let r = c.expect("STOU log", 150).await;
    let name = r.text().trim_start_matches("FILE: ").to_string();
    assert_ne!(name, "log");
    data.write_all(b"unique").await.unwrap();
    drop(data);
    let done = c.read_reply().await;
    assert_eq!(done.code, 226);
    assert!(done.text().contains(&name), "{done:?}");
    assert_eq!(std::fs::read(s.path(&name)).unwrap(), b"unique");
    assert_eq!(std::fs::read(s.path("log")).unwrap(), b"first,second");
    let addr = c.epsv().await;
    let data = TcpStream::connect(addr).await.unwrap();
    let r = c.expect("STOU", 150).await;
    drop(data);
    assert_eq!(c.read_reply().await.code, 226);
    let name = r.text().trim_start_matches("FILE: ").to_string();
    assert!(s.path(&name).exists(), "{name}");
}

#[tokio::test]
async fn abor_during_download_keeps_session_usable() {
    let s = TestServer::start().await;
    let body = content(64 * 1024 * 1024, 3);
    std::fs::write(s.path("huge"), &body).unwrap();
    let mut c = s.login().await;
    c.expect("TYPE I", 200).await;
    let mut data = c.start_passive("RETR huge").await;
    // Read a little, then abort with Telnet IP + Synch in front, as curl and lftp do.
    let mut buf = vec![0u8; 65536];
    let _ = data.read(&mut buf).await.unwrap();
    c.send_raw(b"\xff\xf4\xff\xf2ABOR\r\n").await;
    let first = c.read_reply().await;
    let second = c.read_reply().await;
    assert_aborted(&first, &second);
    drop(data);
    c.expect("NOOP", 200).await;
    c.expect("ABOR", 225).await;
    let (got, done) = c.retr_passive("RETR huge").await;
    assert_eq!(done.code, 226);
    assert_eq!(got.len(), body.len());
}

#[tokio::test]
async fn stat_and_noop_are_answered_during_a_transfer() {
    let s = TestServer::start().await;
    std::fs::write(s.path("huge"), content(32 * 1024 * 1024, 4)).unwrap();
    let mut c = s.login().await;
    c.expect("TYPE I", 200).await;
    let addr = c.epsv().await;
    let mut data = TcpStream::connect(addr).await.unwrap();
    c.expect("RETR huge", 150).await;
    let mut buf = vec![0u8; 65536];
    let _ = data.read(&mut buf).await.unwrap();
    let stat = c.expect("STAT", 211).await;
    assert!(stat.text().contains("/huge"), "{stat:?}");
    c.expect("NOOP", 200).await;
    // A queued command runs after the transfer ends.
    c.send_raw(b"PWD\r\n").await;
    let mut rest = Vec::new();
    data.read_to_end(&mut rest).await.unwrap();
    assert_eq!(c.read_reply().await.code, 226);
    assert_eq!(c.read_reply().await.code, 257);
}

#[tokio::test]
async fn a_broken_upload_in_place_keeps_what_arrived() {
    // REST + STOR writes in place; when the connection breaks, every byte that arrived is in
    // the file, so the client can resume from its size.
    let s = TestServer::start().await;
    std::fs::write(s.path("resumable"), b"0123456789").unwrap();
    let mut c = s.login().await;
    c.expect("TYPE I", 200).await;
    c.expect("REST 10", 350).await;
    let addr = c.epsv().await;
    let mut data = TcpStream::connect(addr).await.unwrap();
    c.expect("STOR resumable", 150).await;
    let part = content(300_000, 11);
    data.write_all(&part).await.unwrap();
    // Once the server has read it all, reset the connection (the client dies).
    let wait = Deadline::new("the server to read the whole part");
    while c.transfer_progress().await != Some(part.len() as u64) {
        wait.tick().await;
    }
    socket2::SockRef::from(&data)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(data);
    assert_eq!(c.read_reply().await.code, 426);
    let file = std::fs::read(s.path("resumable")).unwrap();
    assert_eq!(file.len(), 10 + part.len());
    assert_eq!(&file[10..], &part[..]);
    c.expect("SIZE resumable", 213).await;
}

#[tokio::test]
async fn interrupted_upload_keeps_the_old_file() {
    let s = TestServer::start().await;
    std::fs::write(s.path("precious"), b"old content").unwrap();
    let mut c = s.login().await;
    c.expect("TYPE I", 200).await;
    abort_upload(&mut c, "STOR precious", &content(200_000, 5)).await;
    assert_eq!(std::fs::read(s.path("precious")).unwrap(), b"old content");
    assert_eq!(
        names_in(s.root.path()),
        ["precious"],
        "temporary files left"
    );

    // A connection reset mid-upload (client dies) also keeps the old file.
    let addr = c.epsv().await;
    let data = TcpStream::connect(addr).await.unwrap();
    c.expect("STOR precious", 150).await;
    let mut data = data;
    data.write_all(b"partial new").await.unwrap();
    socket2::SockRef::from(&data)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(data); // RST
    let done = c.read_reply().await;
    if done.code == 226 {
        // The reset raced the EOF; the upload then is complete by the protocol's rules.
        assert_eq!(std::fs::read(s.path("precious")).unwrap(), b"partial new");
    } else {
        assert_eq!(done.code, 426, "{done:?}");
        assert_eq!(std::fs::read(s.path("precious")).unwrap(), b"old content");
    }
}

/// Uploads' temporary files: those a crash left (no upload holds their lock) are removed when
/// the root is first opened, or when a listing comes across them; one an upload still owns
/// (here a lock held by the test, as a server in another process would) stays, and no command
/// can reach it.
#[tokio::test]
async fn upload_leftovers_are_unreachable_and_removed() {
    let s = TestServer::start().await;
    let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    let plant = |rel: &str| {
        let path = s.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let file = std::fs::File::create(&path).unwrap();
        std::io::Write::write_all(&mut &file, b"half an upload").unwrap();
        file.set_modified(an_hour_ago).unwrap();
        file
    };
    const STALE: &str = ".ferry-upload.00000000000000aa.tmp";
    const DEEP: &str = "sub/deeper/.ferry-upload.00000000000000bb.tmp";
    const LIVE: &str = ".ferry-upload.00000000000000cc.tmp";
    drop(plant(STALE));
    drop(plant(DEEP));
    let live = plant(LIVE);
    assert!(ferry_sys::try_lock_exclusive(&live).unwrap());
    std::fs::write(s.path("f"), b"file").unwrap();

    let mut c = s.login().await;
    let until = std::time::Instant::now() + WAIT;
    while s.path(STALE).exists() || s.path(DEEP).exists() {
        assert!(
            std::time::Instant::now() < until,
            "leftovers not removed when the root was opened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(s.path(LIVE).exists(), "an upload's file in use was removed");

    for command in ["SIZE", "MDTM", "DELE", "RNFR", "MLST", "CWD", "RMD"] {
        c.expect(&format!("{command} {LIVE}"), 550).await;
    }
    c.expect(&format!("SITE CHMOD 600 {LIVE}"), 550).await;
    c.expect(&format!("MDTM {LIVE}/x"), 550).await;
    let r = c.cmd(&format!("STAT {LIVE}")).await;
    assert_eq!(r.code, 550, "{r:?}");
    for command in ["RETR", "LIST", "NLST"] {
        let addr = c.epsv().await;
        let _data = TcpStream::connect(addr).await.unwrap();
        c.expect(&format!("{command} {LIVE}"), 550).await;
    }
    // Nor can it be made, overwritten or renamed onto.
    c.expect(&format!("MKD {LIVE}"), 553).await;
    c.expect("RNFR f", 350).await;
    c.expect(&format!("RNTO {LIVE}"), 553).await;
    let addr = c.epsv().await;
    let _data = TcpStream::connect(addr).await.unwrap();
    c.expect(&format!("STOR {LIVE}"), 553).await;
    // Listings do not show it.
    for command in ["LIST -a", "NLST -a", "MLSD"] {
        let (bytes, done) = c.retr_passive(command).await;
        assert_eq!(done.code, 226);
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.contains('f') && !text.contains(".ferry-upload"),
            "{text}"
        );
    }
    assert_eq!(std::fs::read(s.path(LIVE)).unwrap(), b"half an upload");

    // Once nobody holds it, the next listing that comes across it removes it.
    drop(live);
    let (_, done) = c.retr_passive("LIST").await;
    assert_eq!(done.code, 226);
    assert!(!s.path(LIVE).exists(), "a leftover seen by a listing stays");
    assert_eq!(names_in(s.root.path()), ["f", "sub"]);
}

#[tokio::test]
async fn large_uploads_are_written_by_a_thread_while_the_next_buffer_arrives() {
    let s = TestServer::start().await;
    let mut c = s.login().await;
    c.expect("TYPE I", 200).await;
    // Past the 4 MiB written inline, ending in a partly filled buffer.
    let body = content(11 * 1024 * 1024 + 123, 6);
    let before = s.counters.pipelined_upload_bytes();
    assert_eq!(c.stor_passive("STOR big", &body).await.code, 226);
    assert!(s.counters.pipelined_upload_bytes() - before >= 6 * 1024 * 1024);
    assert_eq!(
        sha256(&std::fs::read(s.path("big")).unwrap()),
        sha256(&body)
    );
    // A restart: the write jobs go on from the offset (they share the file position).
    let at = 3 * 1024 * 1024 + 7;
    c.expect(&format!("REST {at}"), 350).await;
    assert_eq!(c.stor_passive("STOR big", &body[at..]).await.code, 226);
    assert_eq!(
        sha256(&std::fs::read(s.path("big")).unwrap()),
        sha256(&body)
    );

    // ABOR in the middle of a pipelined upload: the old file stays, no temporary file is
    // left, and the session goes on.
    abort_upload(&mut c, "STOR big", &content(9 * 1024 * 1024, 7)).await;
    assert_eq!(
        sha256(&std::fs::read(s.path("big")).unwrap()),
        sha256(&body)
    );
    assert_eq!(names_in(s.root.path()), ["big"], "temporary files left");
}

/// Start an upload with `command`, send `bytes`, then `ABOR` it (426 then 226, or 226 if the
/// upload had ended); the session must answer `NOOP` afterwards.
async fn abort_upload(c: &mut Ctrl, command: &str, bytes: &[u8]) {
    let addr = c.epsv().await;
    let mut data = TcpStream::connect(addr).await.unwrap();
    c.expect(command, 150).await;
    data.write_all(bytes).await.unwrap();
    c.send_raw(b"ABOR\r\n").await;
    let first = c.read_reply().await;
    assert!(first.code == 426 || first.code == 226, "{first:?}");
    if first.code == 426 {
        assert_eq!(c.read_reply().await.code, 226);
    }
    drop(data);
    c.expect("NOOP", 200).await;
}

/// The names in `dir`, sorted.
fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn offsets_beyond_four_gib() {
    let s = TestServer::start().await;
    let f = std::fs::File::create(s.path("sparse")).unwrap();
    let size: u64 = 5 * 1024 * 1024 * 1024 + 10;
    f.set_len(size).unwrap();
    drop(f);
    let mut c = s.login().await;
    c.expect("TYPE I", 200).await;
    let r = c.expect("SIZE sparse", 213).await;
    assert_eq!(r.text(), size.to_string());
    c.expect(&format!("REST {}", size - 10), 350).await;
    let (got, done) = c.retr_passive("RETR sparse").await;
    assert_eq!(done.code, 226);
    assert_eq!(got, vec![0u8; 10]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_sessions_with_checksums() {
    let s = TestServer::start().await;
    let addr = s.addr();
    let mut tasks = Vec::new();
    for i in 0..50u64 {
        tasks.push(tokio::spawn(async move {
            let mut c = Ctrl::connect(addr).await;
            c.login(USER, PASSWORD).await;
            c.expect("TYPE I", 200).await;
            let body = content(200_000 + i as usize * 997, i);
            let name = format!("file-{i}");
            assert_eq!(
                c.stor_passive(&format!("STOR {name}"), &body).await.code,
                226
            );
            let (got, done) = c.retr_passive(&format!("RETR {name}")).await;
            assert_eq!(done.code, 226);
            assert_eq!(sha256(&got), sha256(&body), "session {i}");
            c.expect("QUIT", 221).await;
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn graceful_shutdown_tells_sessions() {
    let s = TestServer::start().await;
    let mut c = s.login().await;
    let shutdown = tokio::spawn(s.shutdown());
    let r = c.read_reply().await;
    assert_eq!(r.code, 421);
    tokio::time::timeout(WAIT, shutdown).await.unwrap().unwrap();
}

/// Plain binary downloads with the local backend are zero-copy (`sendfile`); binary uploads
/// go straight into the file.
#[tokio::test]
async fn binary_downloads_are_zero_copy() {
    let s = TestServer::start().await;
    let body = content(1_000_000, 9);
    std::fs::write(s.path("z"), &body).unwrap();
    let mut c = s.login().await;
    c.expect("TYPE I", 200).await;
    let before = s.counters.zero_copy_bytes();
    let (got, done) = c.retr_passive("RETR z").await;
    assert_eq!(done.code, 226);
    assert_eq!(sha256(&got), sha256(&body));
    assert_eq!(s.counters.zero_copy_bytes() - before, body.len() as u64);
    c.expect("REST 999000", 350).await;
    let (got, _) = c.retr_passive("RETR z").await;
    assert_eq!(got, &body[999_000..]);
    // Uploads straight into the file, including a restart in the middle of it.
    let before = s.counters.direct_upload_bytes();
    assert_eq!(c.stor_passive("STOR up", &body).await.code, 226);
    assert_eq!(s.counters.direct_upload_bytes() - before, body.len() as u64);
    assert_eq!(sha256(&std::fs::read(s.path("up")).unwrap()), sha256(&body));
    c.expect("REST 500000", 350).await;
    assert_eq!(c.stor_passive("STOR up", &body[500_000..]).await.code, 226);
    assert_eq!(sha256(&std::fs::read(s.path("up")).unwrap()), sha256(&body));
}

#[tokio::test]
async fn transfers_that_move_nothing_end_with_426() {
    let s = TestServer::start_with(|c| c.data_stall_timeout = Duration::from_secs(1)).await;
    let body = content(64 * 1024 * 1024, 9);
    std::fs::write(s.path("huge"), &body).unwrap();
    std::fs::write(s.path("kept"), b"old").unwrap();
    let mut c = s.login().await;
    c.expect("TYPE I", 200).await;
    // A download the client stops reading, its data connection left open.
    let mut data = c.start_passive("RETR huge").await;
    let mut buf = vec![0u8; 65536];
    data.read_exact(&mut buf).await.unwrap();
    let r = c.read_reply().await;
    assert_eq!(r.code, 426, "{r:?}");
    assert!(r.text().contains("No data moved"), "{r:?}");
    drop(data);
    c.expect("NOOP", 200).await;
    // An upload the client stops sending: 426, and the old file stays.
    let mut data = c.start_passive("STOR kept").await;
    data.write_all(&body[..100_000]).await.unwrap();
    let r = c.read_reply().await;
    assert_eq!(r.code, 426, "{r:?}");
    assert_eq!(std::fs::read(s.path("kept")).unwrap(), b"old");
    drop(data);
    c.expect("NOOP", 200).await;
}

#[tokio::test]
async fn a_slow_upload_is_not_a_stalled_one() {
    // 100 KB in 10 pieces over ~2.5 s, against a 1 s stall timeout: each piece moves the
    // transfer on, though the upload's buffer (1 MiB) fills only at the end.
    let s = TestServer::start_with(|c| c.data_stall_timeout = Duration::from_secs(1)).await;
    let body = content(100_000, 10);
    let mut c = s.login().await;
    c.expect("TYPE I", 200).await;
    let mut data = c.start_passive("STOR slow").await;
    let started = std::time::Instant::now();
    let mut sent = 0;
    for piece in body.chunks(10_000) {
        data.write_all(piece).await.unwrap();
        sent += piece.len() as u64;
        // Each piece is counted as it arrives, long before the buffer fills ...
        let wait = Deadline::new("the server to count the piece");
        while c.transfer_progress().await != Some(sent) {
            wait.tick().await;
        }
        // ... and the next comes at the client's pace, well within the stall timeout.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        started.elapsed() > Duration::from_secs(2),
        "not slow enough"
    );
    drop(data);
    let r = c.read_reply().await;
    assert_eq!(r.code, 226, "{r:?}");
    assert_eq!(
        sha256(&std::fs::read(s.path("slow")).unwrap()),
        sha256(&body)
    );
}

/// The quick path of small downloads (`quick_download_max`).
#[tokio::test]
async fn small_downloads_are_sent_at_once_when_the_client_connected_first() {
    let body = content(200_000, 8);

    // Default limit (256 KiB): sent at once, 150 and 226 together.
    let s = TestServer::start().await;
    std::fs::write(s.path("small"), &body).unwrap();
    std::fs::write(s.path("empty"), b"").unwrap();
    let mut c = s.login().await;
    c.expect("TYPE I", 200).await;
    let before = s.counters.quick_downloads();
    let (got, done) = c.retr_passive("RETR small").await;
    assert_eq!((done.code, sha256(&got)), (226, sha256(&body)));
    let (got, done) = c.retr_passive("RETR empty").await;
    assert_eq!((done.code, got.len()), (226, 0));
    c.expect("REST 150000", 350).await;
    let (got, _) = c.retr_passive("RETR small").await;
    assert_eq!(got, &body[150_000..]);
    assert_eq!(s.counters.quick_downloads() - before, 3);
    // Not in ASCII mode (the conversion needs a copy), nor when the client has not connected
    // yet: the usual way.
    c.expect("TYPE A", 200).await;
    let (got, _) = c.retr_passive("RETR small").await;
    assert!(got.len() > body.len());
    c.expect("TYPE I", 200).await;
    let addr = c.epsv().await;
    assert_eq!(c.cmd("RETR small").await.code, 150);
    let mut data = TcpStream::connect(addr).await.unwrap();
    let mut got = Vec::new();
    data.read_to_end(&mut got).await.unwrap();
    assert_eq!(c.read_reply().await.code, 226);
    assert_eq!(sha256(&got), sha256(&body));
    // Larger than the limit: the usual way.
    std::fs::write(s.path("large"), content(300_000, 9)).unwrap();
    let (got, _) = c.retr_passive("RETR large").await;
    assert_eq!(got.len(), 300_000);
    assert_eq!(s.counters.quick_downloads() - before, 3);

    // Off.
    let s = TestServer::start_with(|c| c.quick_download_max = 0).await;
    std::fs::write(s.path("small"), &body).unwrap();
    let mut c = s.login().await;
    c.expect("TYPE I", 200).await;
    let before = s.counters.quick_downloads();
    let (got, _) = c.retr_passive("RETR small").await;
    assert_eq!(sha256(&got), sha256(&body));
    assert_eq!(s.counters.quick_downloads() - before, 0);

    // A limit above the socket buffer (~2.6 MB on loopback), and a client that reads only
    // after the 150: the buffer fills before the file is out, the session answers 150 alone,
    // and a transfer task sends the rest.
    let s = TestServer::start_with(|c| c.quick_download_max = 64 * 1024 * 1024).await;
    let body = content(16 * 1024 * 1024, 10);
    std::fs::write(s.path("mid"), &body).unwrap();
    let mut c = s.login().await;
    c.expect("TYPE I", 200).await;
    let before = s.counters.quick_downloads();
    let addr = c.epsv().await;
    let mut data = TcpStream::connect(addr).await.unwrap();
    assert_eq!(c.cmd("RETR mid").await.code, 150);
    c.expect("NOOP", 200).await;
    let mut got = Vec::new();
    data.read_to_end(&mut got).await.unwrap();
    assert_eq!(c.read_reply().await.code, 226);
    assert_eq!(sha256(&got), sha256(&body));
    assert_eq!(s.counters.quick_downloads() - before, 1);
}

/// Each server counts its own transfers: two servers in one process do not see each other's.
#[tokio::test]
async fn transfer_counters_belong_to_their_server() {
    let a = TestServer::start().await;
    let b = TestServer::start().await;
    let body = content(100_000, 3);
    for s in [&a, &b] {
        std::fs::write(s.path("f"), &body).unwrap();
    }
    let mut c = b.login().await;
    c.expect("TYPE I", 200).await;
    let (got, done) = c.retr_passive("RETR f").await;
    assert_eq!((done.code, got.len()), (226, body.len()));
    assert_eq!(c.stor_passive("STOR g", &body).await.code, 226);
    assert_eq!(b.counters.zero_copy_bytes(), body.len() as u64);
    assert_eq!(b.counters.direct_upload_bytes(), body.len() as u64);
    assert_eq!(
        (
            a.counters.zero_copy_bytes(),
            a.counters.direct_upload_bytes()
        ),
        (0, 0),
        "server A counted server B's transfers"
    );
}
