//! Per-user quotas over FTP: uploads refused with `552` before they begin when the user is at
//! the quota, cut with `552` when they cross it (on every path a binary or ASCII upload takes,
//! the old file kept), the files quota, and deletions freeing room.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use ferry_auth::SizeValue;
use ferry_proto::Reply;
use tokio::io::AsyncWriteExt;

/// A server whose `alice` holds at most `bytes` bytes and `files` files (0: no limit), with
/// `existing` files (name, length) in her home before she logs in.
async fn server(bytes: u64, files: u64, existing: &[(&str, usize)]) -> TestServer {
    let s = TestServer::start_with_users(
        |_| {},
        |users| {
            users[0].quota_bytes = Some(SizeValue::Bytes(bytes));
            users[0].quota_files = Some(files);
        },
    )
    .await;
    for (i, (name, len)) in existing.iter().enumerate() {
        std::fs::write(s.path(name), content(*len, i as u64)).unwrap();
    }
    s
}

/// Upload `bytes` with `command` (which must begin: `150`); the server may stop reading
/// before the end, so the client's own write failing is expected. The final reply.
async fn upload(c: &mut Ctrl, command: &str, bytes: &[u8]) -> Reply {
    let mut data = c.start_passive(command).await;
    let sent = tokio::time::timeout(WAIT, async {
        data.write_all(bytes).await?;
        data.shutdown().await
    })
    .await
    .expect("upload hung");
    drop((data, sent));
    c.read_reply().await
}

fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn an_upload_at_the_quota_is_refused_with_552_before_it_begins() {
    let s = server(1000, 0, &[("old", 1000)]).await;
    let mut c = s.login().await;
    c.expect("TYPE I", 200).await;
    c.epsv().await;
    let refused = c.expect("STOR new", 552).await;
    assert_eq!(
        refused.text(),
        "Quota exceeded: bytes (1000 of 1000 used)",
        "{refused:?}"
    );
    assert!(!s.path("new").exists());
    // Appending grows the file: refused too; so is a restart at the file's end.
    c.expect("APPE old", 552).await;
    c.expect("REST 1000", 350).await;
    c.expect("STOR old", 552).await;
    // Replacing a file with one of the same size fits exactly.
    let same = content(1000, 9);
    assert_eq!(upload(&mut c, "STOR old", &same).await.code, 226);
    assert_eq!(std::fs::read(s.path("old")).unwrap(), same);
    c.expect("QUIT", 221).await;
}

#[tokio::test]
async fn an_upload_crossing_the_quota_is_cut_with_552_and_the_old_file_kept() {
    const QUOTA: u64 = 6 * 1024 * 1024;
    let s = server(QUOTA, 0, &[("keep", 100_000)]).await;
    let old = std::fs::read(s.path("keep")).unwrap();
    let mut c = s.login().await;
    c.expect("TYPE I", 200).await;
    // Straight into the file, past the part written inline (the pipelined writes).
    let before = s.counters.direct_upload_bytes();
    let done = upload(&mut c, "STOR keep", &content(9 * 1024 * 1024, 1)).await;
    assert_eq!(done.code, 552, "{done:?}");
    assert!(
        done.text().starts_with("Quota exceeded: bytes ("),
        "{done:?}"
    );
    assert!(
        s.counters.direct_upload_bytes() > before,
        "not the direct path"
    );
    assert_eq!(std::fs::read(s.path("keep")).unwrap(), old);
    assert_eq!(names_in(s.root.path()), ["keep"], "temporary files left");
    // A new file cut short leaves nothing (the inline part is cut in the tests below).
    let done = upload(&mut c, "STOR small", &content(7 * 1024 * 1024, 2)).await;
    assert_eq!(done.code, 552, "{done:?}");
    assert!(!s.path("small").exists());
    // Through the copy loop (ASCII).
    c.expect("TYPE A", 200).await;
    let done = upload(&mut c, "STOR text", &vec![b'x'; 7 * 1024 * 1024]).await;
    assert_eq!(done.code, 552, "{done:?}");
    assert!(!s.path("text").exists());
    // Nothing of the refused uploads counts: what is left still fits.
    c.expect("TYPE I", 200).await;
    let fits = content(QUOTA as usize - 100_000, 3);
    assert_eq!(upload(&mut c, "STOR full", &fits).await.code, 226);
    assert_eq!(std::fs::read(s.path("full")).unwrap(), fits);
    c.epsv().await;
    c.expect("STOR more", 552).await;
    c.expect("QUIT", 221).await;
}

#[tokio::test]
async fn an_append_in_place_keeps_what_fitted() {
    let s = server(1000, 0, &[("log", 400)]).await;
    let mut c = s.login().await;
    c.expect("TYPE I", 200).await;
    let done = upload(&mut c, "APPE log", &content(1000, 4)).await;
    assert_eq!(done.code, 552, "{done:?}");
    // Written in place: what arrived within the quota stays, nothing beyond it.
    assert_eq!(std::fs::metadata(s.path("log")).unwrap().len(), 1000);
    c.epsv().await;
    c.expect("APPE log", 552).await;
}

#[tokio::test]
async fn the_files_quota_refuses_new_files_and_deleting_frees_room() {
    let s = server(0, 2, &[("one", 10)]).await;
    let mut c = s.login().await;
    c.expect("TYPE I", 200).await;
    assert_eq!(upload(&mut c, "STOR two", b"2").await.code, 226);
    c.epsv().await;
    let refused = c.expect("STOR three", 552).await;
    assert_eq!(refused.text(), "Quota exceeded: files (2 of 2 used)");
    c.epsv().await;
    c.expect("STOU", 552).await;
    // Replacing a file makes none.
    assert_eq!(upload(&mut c, "STOR two", b"22").await.code, 226);
    c.expect("DELE one", 250).await;
    assert_eq!(upload(&mut c, "STOR three", b"3").await.code, 226);
    assert_eq!(names_in(s.root.path()), ["three", "two"]);
}

#[tokio::test]
async fn deleting_frees_bytes_for_the_next_upload() {
    let s = server(1000, 0, &[]).await;
    let mut c = s.login().await;
    c.expect("TYPE I", 200).await;
    assert_eq!(upload(&mut c, "STOR a", &content(600, 1)).await.code, 226);
    let done = upload(&mut c, "STOR b", &content(600, 2)).await;
    assert_eq!(done.code, 552, "{done:?}");
    assert!(done.text().contains("(1000 of 1000 used)"), "{done:?}");
    c.expect("DELE a", 250).await;
    assert_eq!(upload(&mut c, "STOR b", &content(600, 2)).await.code, 226);
}

#[tokio::test]
async fn the_sessions_of_a_user_share_one_usage() {
    let s = server(1000, 0, &[]).await;
    let mut one = s.login().await;
    let mut two = s.login().await;
    one.expect("TYPE I", 200).await;
    two.expect("TYPE I", 200).await;
    assert_eq!(upload(&mut one, "STOR a", &content(700, 1)).await.code, 226);
    let done = upload(&mut two, "STOR b", &content(700, 2)).await;
    assert_eq!(done.code, 552, "{done:?}");
    assert_eq!(upload(&mut two, "STOR b", &content(300, 2)).await.code, 226);
    one.epsv().await;
    one.expect("STOR c", 552).await;
}
