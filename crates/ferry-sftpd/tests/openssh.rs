//! The server on loopback, driven by OpenSSH's own clients: `sftp -b` batches (password through
//! `sshpass`), and `ssh`/`scp` for what must be refused.
//!
//! Without `sftp`, `ssh`, `scp` or `sshpass` on PATH a test prints a note and skips, unless
//! `FERRY_REQUIRE_INTEROP=1` (as in CI), which makes that a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Output;

mod common;

use common::{Harness, PASSWORD, USER, run};

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Whether every tool is on PATH. If not: a note and `false` (skip), or a panic when
/// `FERRY_REQUIRE_INTEROP=1`.
fn have_tools(test: &str, tools: &[&str]) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let on_path = |program: &str| {
        std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| {
                std::fs::metadata(dir.join(program))
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
        })
    };
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !on_path(t)).collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("FERRY_REQUIRE_INTEROP").as_deref() == Ok("1") {
        panic!("{test}: {missing:?} not installed and FERRY_REQUIRE_INTEROP=1");
    }
    eprintln!(
        "note: skipping {test}: {missing:?} not installed (FERRY_REQUIRE_INTEROP=1 makes this a failure)"
    );
    false
}

/// Bytes that differ at every offset, so a block written at the wrong place shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ (i % 251) as u8)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_sftp_batch_put_get_ls_mkdir_rename_rm() {
    if !have_tools("openssh_sftp_batch", &["sftp", "sshpass"]) {
        return;
    }
    let h = Harness::start().await;
    let local = tempfile::tempdir().unwrap();
    // Several MiB: many requests in flight at once, in both directions.
    let big = pattern(5 * 1024 * 1024 + 12_345);
    std::fs::write(local.path().join("up.bin"), &big).unwrap();
    std::fs::write(local.path().join("small.txt"), b"hello\n").unwrap();
    // Half of a file already on the server, to be completed by `reput`.
    let resumed = pattern(3 * 1024 * 1024 + 7);
    std::fs::write(local.path().join("resume.bin"), &resumed).unwrap();
    std::fs::write(h.root.path().join("resume.bin"), &resumed[..1_500_000]).unwrap();

    let batch = "\
mkdir dir
put up.bin dir/up.bin
ls -l dir
rename dir/up.bin dir/moved.bin
get dir/moved.bin down.bin
put small.txt small.txt
ls
rm small.txt
mkdir gone
rmdir gone
reput resume.bin resume.bin
";
    let out = h.sftp(PASSWORD, batch, local.path()).await;
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");

    assert_eq!(
        std::fs::read(h.root.path().join("dir/moved.bin")).unwrap(),
        big,
        "{shown}"
    );
    assert!(!h.root.path().join("dir/up.bin").exists());
    assert_eq!(std::fs::read(local.path().join("down.bin")).unwrap(), big);
    assert!(!h.root.path().join("small.txt").exists());
    assert!(!h.root.path().join("gone").exists());
    assert_eq!(
        std::fs::read(h.root.path().join("resume.bin")).unwrap(),
        resumed
    );

    let stdout = String::from_utf8_lossy(&out.stdout);
    // `ls -l` shows the server's long names: mode, owner, size, name.
    let line = stdout
        .lines()
        .find(|l| l.contains("up.bin") && l.starts_with('-'))
        .unwrap_or_else(|| panic!("no ls -l line for up.bin\n{shown}"));
    assert!(line.starts_with("-rw"), "{line}");
    assert!(line.contains(USER), "{line}");
    assert!(line.contains(&big.len().to_string()), "{line}");
    assert!(stdout.contains("small.txt"), "{shown}");
    // Nothing left behind by the uploads.
    let leftovers: Vec<_> = std::fs::read_dir(h.root.path().join("dir"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("moved.bin")]);
    assert!(h.fingerprint.starts_with("SHA256:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_sftp_wrong_password_is_refused() {
    if !have_tools("openssh_sftp_wrong_password", &["sftp", "sshpass"]) {
        return;
    }
    let h = Harness::start().await;
    let local = tempfile::tempdir().unwrap();
    let out = h.sftp("wrong", "mkdir x\n", local.path()).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!h.root.path().join("x").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_errors_come_back_as_statuses() {
    if !have_tools("openssh_errors", &["sftp", "sshpass"]) {
        return;
    }
    let h = Harness::start().await;
    let local = tempfile::tempdir().unwrap();
    std::fs::write(h.root.path().join("keep.txt"), b"keep").unwrap();
    std::fs::create_dir(h.root.path().join("full")).unwrap();
    std::fs::write(h.root.path().join("full/f"), b"f").unwrap();
    // `-` lets the batch go on after a failing command.
    let batch = "\
-get missing.txt
-rmdir full
rename keep.txt full/f
-ln -s keep.txt link
-get ../../../../etc/passwd passwd
ls
";
    let out = h.sftp(PASSWORD, batch, local.path()).await;
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\"/missing.txt\" not found"), "{shown}");
    assert!(stderr.contains("rmdir \"/full\": Failure"), "{shown}");
    assert!(stderr.contains("Operation unsupported"), "{shown}");
    // OpenSSH renames with posix-rename@openssh.com when offered: the target is replaced.
    assert!(!h.root.path().join("keep.txt").exists());
    assert_eq!(
        std::fs::read(h.root.path().join("full/f")).unwrap(),
        b"keep"
    );
    assert!(!h.root.path().join("link").exists());
    // `..` stops at the user's root: /etc/passwd is looked up inside it and is not there.
    assert!(!local.path().join("passwd").exists(), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_exec_and_legacy_scp_are_refused_with_a_message() {
    if !have_tools("refusals", &["ssh", "scp", "sshpass"]) {
        return;
    }
    let h = Harness::start().await;
    let local = tempfile::tempdir().unwrap();
    let port = h.addr.port().to_string();
    let target = format!("{USER}@127.0.0.1");

    let mut args = vec!["-p".to_string(), PASSWORD.to_string(), "ssh".to_string()];
    args.extend(h.ssh_options());
    args.extend([
        "-p".to_string(),
        port.clone(),
        target.clone(),
        "id".to_string(),
    ]);
    let out = run("sshpass", &args, local.path()).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("SFTP only"),
        "{}",
        text(&out)
    );

    std::fs::write(local.path().join("f"), b"data").unwrap();
    let mut args = vec![
        "-p".to_string(),
        PASSWORD.to_string(),
        "scp".to_string(),
        "-O".to_string(),
    ];
    args.extend(h.ssh_options());
    args.extend([
        "-P".to_string(),
        port,
        "f".to_string(),
        format!("{target}:f"),
    ]);
    let out = run("sshpass", &args, local.path()).await;
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("legacy protocol"), "{}", text(&out));
    assert!(!h.root.path().join("f").exists());
}
