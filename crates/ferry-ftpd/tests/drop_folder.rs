//! An anonymous drop folder (`anonymous_upload_only`): new files may be uploaded; nothing may be
//! listed, read, replaced or removed.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

async fn dropper(s: &TestServer) -> Ctrl {
    let mut c = s.connect().await;
    c.expect("USER anonymous", 331).await;
    let r = c.expect("PASS guest@example.org", 230).await;
    assert!(r.text().contains("upload-only"), "{r:?}");
    c
}

#[tokio::test]
async fn anonymous_drop_folder_takes_new_files_only() {
    let s = TestServer::start_with(|c| c.anonymous_upload_only = true).await;
    let drop = s.anon_root.path();
    std::fs::write(drop.join("theirs.txt"), b"someone else's").unwrap();
    let mut c = dropper(&s).await;
    // A new name is stored.
    let r = c.stor_passive("STOR mine.txt", b"my report").await;
    assert_eq!(r.code, 226, "{r:?}");
    assert_eq!(std::fs::read(drop.join("mine.txt")).unwrap(), b"my report");
    // A name that exists is refused before any data moves, and the old file is untouched.
    c.expect("EPSV", 229).await;
    c.expect("STOR theirs.txt", 553).await;
    c.expect("EPSV", 229).await;
    c.expect("STOR mine.txt", 553).await;
    assert_eq!(
        std::fs::read(drop.join("theirs.txt")).unwrap(),
        b"someone else's"
    );
    // Appending and resuming would change a file too.
    c.expect("EPSV", 229).await;
    c.expect("APPE theirs.txt", 550).await;
    c.expect("REST 3", 350).await;
    c.expect("EPSV", 229).await;
    c.expect("STOR theirs.txt", 550).await;
    // STOU finds a free name.
    let mut data = c.start_passive("STOU theirs.txt").await;
    tokio::io::AsyncWriteExt::write_all(&mut data, b"unique")
        .await
        .unwrap();
    drop_stream(data).await;
    assert_eq!(c.read_reply().await.code, 226);
    assert_eq!(std::fs::read(drop.join("theirs.txt.1")).unwrap(), b"unique");
    // Nothing may be read back, listed or probed.
    for command in ["RETR theirs.txt", "RETR mine.txt", "LIST", "NLST", "MLSD"] {
        c.expect("EPSV", 229).await;
        c.expect(command, 550).await;
    }
    for command in [
        "SIZE theirs.txt",
        "MDTM theirs.txt",
        "MLST theirs.txt",
        "DELE theirs.txt",
        "MKD sub",
        "MFMT 20200101000000 theirs.txt",
    ] {
        c.expect(command, 550).await;
    }
    c.expect("RNFR theirs.txt", 550).await;
}

async fn drop_stream(mut data: tokio::net::TcpStream) {
    tokio::io::AsyncWriteExt::shutdown(&mut data).await.unwrap();
}

#[tokio::test]
async fn anonymous_stays_read_only_by_default() {
    let s = TestServer::start().await;
    let mut c = s.connect().await;
    c.expect("USER anonymous", 331).await;
    let r = c.expect("PASS guest@example.org", 230).await;
    assert!(r.text().contains("read-only"), "{r:?}");
    c.expect("EPSV", 229).await;
    c.expect("STOR x", 550).await;
}
