//! The server on loopback, driven by OpenSSH's own clients: `sftp -b` batches (passwords
//! through `sshpass`, keys with `-i`), `scp`, and `ssh` for what must be refused.
//!
//! Without `sftp`, `ssh`, `scp`, `ssh-keygen` or `sshpass` on PATH a test prints a note and
//! skips, unless `FERRY_REQUIRE_INTEROP=1` (as in CI), which makes that a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

mod common;

use common::{Harness, PASSWORD, Setup, USER, WAIT, have_ipv6, have_tools, pattern, run, text};

/// Make a key pair with `ssh-keygen` in `dir`: the private key's path.
async fn keygen(dir: &Path, name: &str, kind: &str, bits: Option<&str>) -> PathBuf {
    let file = dir.join(name);
    let mut args: Vec<String> = ["-q", "-t", kind, "-N", "", "-C", name, "-f"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(file.display().to_string());
    if let Some(bits) = bits {
        args.extend(["-b".to_string(), bits.to_string()]);
    }
    let out = run("ssh-keygen", &args, dir).await;
    assert!(out.status.success(), "{}", text(&out));
    file
}

/// The `authorized_keys` line of the key at `private`.
fn public_line(private: &Path) -> String {
    std::fs::read_to_string(private.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string()
}

fn names_on_disk(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn set_mtime(path: &Path, secs: u64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

fn mtime(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_key_logins_ed25519_ecdsa_rsa() {
    if !have_tools("openssh_key_logins", &["sftp", "ssh-keygen"]) {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let mut listed = Vec::new();
    for (name, kind, bits) in [
        ("id_ed25519", "ed25519", None),
        ("id_ecdsa256", "ecdsa", Some("256")),
        ("id_ecdsa384", "ecdsa", Some("384")),
        ("id_ecdsa521", "ecdsa", Some("521")),
        ("id_rsa", "rsa", Some("3072")),
    ] {
        listed.push(keygen(keys.path(), name, kind, bits).await);
    }
    let stranger = keygen(keys.path(), "id_stranger", "ed25519", None).await;
    // Keys only: no password to fall back on.
    let setup = Setup {
        password: None,
        keys: listed.iter().map(|k| public_line(k)).collect(),
        ..Setup::default()
    };
    let h = Harness::setup(setup, |_| {}).await;
    let local = tempfile::tempdir().unwrap();
    std::fs::write(local.path().join("up.txt"), b"by key\n").unwrap();

    for key in &listed {
        let name = key.file_name().unwrap().to_string_lossy().into_owned();
        let batch = format!("put up.txt {name}.txt\nls -l\n");
        let key = key.display().to_string();
        // A key the server does not list is offered first, as clients holding several do.
        let stranger = stranger.display().to_string();
        let ids = ["-i", stranger.as_str(), "-i", key.as_str()];
        let out = h
            .sftp_with("", "publickey", &ids, &batch, local.path())
            .await;
        assert!(out.status.success(), "{name}: {}", text(&out));
        assert_eq!(
            std::fs::read(h.root.path().join(format!("{name}.txt"))).unwrap(),
            b"by key\n"
        );
    }
    let ids = ["-i", stranger.to_str().unwrap()];
    let out = h
        .sftp_with("", "publickey", &ids, "mkdir x\n", local.path())
        .await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!h.root.path().join("x").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_keyboard_interactive_with_password_authentication_off() {
    if !have_tools("openssh_keyboard_interactive", &["sftp", "sshpass"]) {
        return;
    }
    let h = Harness::start().await;
    let local = tempfile::tempdir().unwrap();
    let extra = ["-o", "PasswordAuthentication=no"];
    let out = h
        .sftp_with(
            PASSWORD,
            "keyboard-interactive",
            &extra,
            "mkdir kbd\n",
            local.path(),
        )
        .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(h.root.path().join("kbd").is_dir());
    let out = h
        .sftp_with(
            "wrong",
            "keyboard-interactive",
            &extra,
            "mkdir no\n",
            local.path(),
        )
        .await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!h.root.path().join("no").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_over_ipv6() {
    if !have_tools("openssh_over_ipv6", &["sftp", "sshpass"]) || !have_ipv6("openssh_over_ipv6") {
        return;
    }
    let setup = Setup {
        listen: "[::1]:0",
        ..Setup::default()
    };
    let h = Harness::setup(setup, |_| {}).await;
    assert!(h.addr.is_ipv6());
    let local = tempfile::tempdir().unwrap();
    let data = pattern(1024 * 1024 + 3);
    std::fs::write(local.path().join("six.bin"), &data).unwrap();
    let out = h
        .sftp(
            PASSWORD,
            "put six.bin\nget six.bin back.bin\nls\n",
            local.path(),
        )
        .await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read(h.root.path().join("six.bin")).unwrap(), data);
    assert_eq!(std::fs::read(local.path().join("back.bin")).unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_every_operation() {
    if !have_tools("openssh_every_operation", &["sftp", "sshpass"]) {
        return;
    }
    let h = Harness::start().await;
    let root = h.root.path();
    let local = tempfile::tempdir().unwrap();
    let l = local.path();
    let big = pattern(3 * 1024 * 1024 + 5);
    std::fs::write(l.join("big.bin"), &big).unwrap();
    std::fs::write(l.join("stamp.txt"), b"stamped\n").unwrap();
    set_mtime(&l.join("stamp.txt"), 1_200_000_000);
    std::fs::write(l.join("small.txt"), b"small\n").unwrap();
    std::fs::create_dir(l.join("many")).unwrap();
    for i in 0..150 {
        std::fs::write(l.join(format!("many/m{i:03}")), format!("{i}\n")).unwrap();
    }
    // Half a download already here, to be completed by `reget`.
    std::fs::write(l.join("part.bin"), &big[..1_000_000]).unwrap();

    let batch = "\
mkdir d
put -p stamp.txt d/stamp.txt
put -f big.bin d/big.bin
chmod 600 d/big.bin
put -r many d/many
ls -l d
ls d/many
rename d/big.bin d/moved.bin
put small.txt d/small.txt
rename d/small.txt d/replaced.bin
rename d/moved.bin d/replaced.bin
df -h
df
-ln d/replaced.bin d/hard
-ln -s d/replaced.bin d/soft
cd ..
cd ..
pwd
get d/replaced.bin got.bin
reget d/replaced.bin part.bin
get -r d/many gotmany
rm d/stamp.txt
-rmdir d/many
mkdir gone
rmdir gone
ls -la
";
    let out = h.sftp(PASSWORD, batch, l).await;
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);

    // put -p: the time came along (setstat); put -f went through fsync.
    assert!(!root.join("d/stamp.txt").exists(), "{shown}");
    // rename onto an existing name replaced it (posix-rename).
    assert_eq!(std::fs::read(root.join("d/replaced.bin")).unwrap(), big);
    assert!(!root.join("d/moved.bin").exists());
    assert!(!root.join("d/small.txt").exists());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(root.join("d/replaced.bin"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{shown}");
    // A directory listed in more than one batch: every name, once.
    let listed = stdout.matches("d/many/m").count();
    assert_eq!(listed, 150, "{shown}");
    assert_eq!(names_on_disk(&root.join("d/many")).len(), 150);
    // df: figures of the file system (statvfs@openssh.com).
    assert!(stdout.contains("Avail"), "{shown}");
    // Links refused, nothing made.
    assert!(!root.join("d/hard").exists() && !root.join("d/soft").exists());
    assert!(stderr.contains("hardlink"), "{shown}");
    assert!(stderr.contains("Operation unsupported"), "{shown}");
    // `cd ..` stops at the root.
    assert!(stdout.contains("Remote working directory: /\n"), "{shown}");
    assert_eq!(std::fs::read(l.join("got.bin")).unwrap(), big);
    assert_eq!(std::fs::read(l.join("part.bin")).unwrap(), big);
    assert_eq!(names_on_disk(&l.join("gotmany")).len(), 150);
    assert!(!root.join("gone").exists());
    // No temporary file left anywhere.
    assert_eq!(names_on_disk(root), ["d"]);
    assert_eq!(names_on_disk(&root.join("d")), ["many", "replaced.bin"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_put_p_keeps_the_time() {
    if !have_tools("openssh_put_p", &["sftp", "sshpass"]) {
        return;
    }
    let h = Harness::start().await;
    let local = tempfile::tempdir().unwrap();
    std::fs::write(local.path().join("stamp.txt"), b"stamped\n").unwrap();
    set_mtime(&local.path().join("stamp.txt"), 1_200_000_000);
    let out = h
        .sftp(
            PASSWORD,
            "put -p stamp.txt\nget -p stamp.txt back.txt\n",
            local.path(),
        )
        .await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(mtime(&h.root.path().join("stamp.txt")), 1_200_000_000);
    assert_eq!(mtime(&local.path().join("back.txt")), 1_200_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_jail_escapes_fail() {
    if !have_tools("openssh_jail_escapes", &["sftp", "sshpass"]) {
        return;
    }
    let h = Harness::start().await;
    let root = h.root.path();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"secret").unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("out")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), root.join("esc")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("etc")).unwrap();
    let local = tempfile::tempdir().unwrap();
    std::fs::write(local.path().join("f"), b"mine").unwrap();
    let batch = "\
-get out/secret s1
-get esc s2
-get etc/passwd s3
-get ../../../../etc/passwd p1
-get /etc/passwd p2
-ls out
-ls out/
-ls -l etc/
-put f out/new
-put f esc
-put f ../../../../tmp/ferry-escape
-cd out
-df out
-rename f out/f
ls
";
    let out = h.sftp(PASSWORD, batch, local.path()).await;
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    for name in ["s1", "s2", "s3", "p1", "p2"] {
        assert!(!local.path().join(name).exists(), "{name} fetched\n{shown}");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Nothing from outside is listed (the batch's own lines aside).
    let listed: Vec<&str> = stdout.lines().filter(|l| !l.starts_with("sftp>")).collect();
    assert_eq!(listed, ["esc  etc  out  "], "{shown}");
    assert_eq!(names_on_disk(outside.path()), ["secret"]);
    assert_eq!(
        std::fs::read(outside.path().join("secret")).unwrap(),
        b"secret"
    );
    // `..` from the root is the root: that upload aimed at a `/tmp` inside it, which is not
    // there.
    assert!(!Path::new("/tmp/ferry-escape").exists());
    assert_eq!(names_on_disk(root), ["esc", "etc", "out"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_interrupted_upload_keeps_the_old_file() {
    if !have_tools("openssh_interrupted_upload", &["sftp", "ssh-keygen"]) {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let key = keygen(keys.path(), "id", "ed25519", None).await;
    let setup = Setup {
        keys: vec![public_line(&key)],
        ..Setup::default()
    };
    let h = Harness::setup(setup, |_| {}).await;
    let root = h.root.path();
    std::fs::write(root.join("target.bin"), b"old content").unwrap();
    let local = tempfile::tempdir().unwrap();
    std::fs::write(local.path().join("big.bin"), pattern(8 * 1024 * 1024)).unwrap();
    std::fs::write(local.path().join(".batch"), "put big.bin target.bin\n").unwrap();

    // Slowed to ~100 KB/s (`-l` in Kbit/s) so that it is still running when killed.
    let mut args = h.openssh_options("publickey");
    args.extend(["-i".to_string(), key.display().to_string()]);
    args.extend(["-l", "800", "-b", ".batch", "-P"].map(String::from));
    args.extend([h.addr.port().to_string(), h.target()]);
    let mut child = tokio::process::Command::new("sftp")
        .args(&args)
        .current_dir(local.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let temp_has_data = || {
        std::fs::read_dir(root).unwrap().any(|e| {
            let e = e.unwrap();
            e.file_name()
                .to_string_lossy()
                .starts_with(ferry_vfs::local::TEMP_PREFIX)
                && e.metadata().unwrap().len() > 0
        })
    };
    until("the upload has begun", temp_has_data).await;
    assert_eq!(
        std::fs::read(root.join("target.bin")).unwrap(),
        b"old content"
    );
    child.kill().await.unwrap();

    until("the unfinished upload is removed", || {
        names_on_disk(root) == ["target.bin"]
    })
    .await;
    assert_eq!(
        std::fs::read(root.join("target.bin")).unwrap(),
        b"old content"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_scp_copies_over_sftp_and_ssh_asks_are_refused() {
    if !have_tools("openssh_scp_and_refusals", &["ssh", "scp", "sshpass"]) {
        return;
    }
    let h = Harness::start().await;
    let local = tempfile::tempdir().unwrap();
    std::fs::write(local.path().join("f"), b"over sftp").unwrap();
    let port = h.addr.port().to_string();
    let with_password = |program: &str, flag: &str, rest: &[String]| {
        let mut args = vec!["-p".to_string(), PASSWORD.to_string(), program.to_string()];
        args.extend(h.ssh_options());
        args.extend([flag.to_string(), port.clone()]);
        args.extend(rest.iter().cloned());
        args
    };

    // scp of OpenSSH 9 and later speaks SFTP: served.
    let args = with_password("scp", "-P", &["f".into(), format!("{}:f", h.target())]);
    let out = run("sshpass", &args, local.path()).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(h.root.path().join("f")).unwrap(),
        b"over sftp"
    );

    // A shell (no command), another subsystem, stdio forwarding (-W): refused, with why.
    let cases: [(Vec<String>, &str); 3] = [
        (vec![h.target()], "SFTP only"),
        (
            vec!["-s".into(), h.target(), "netconf".into()],
            "not provided",
        ),
        (
            vec!["-W".into(), "127.0.0.1:9".into(), h.target()],
            "forwarding failed",
        ),
    ];
    for (rest, says) in cases {
        let args = with_password("ssh", "-p", &rest);
        let out = run("sshpass", &args, local.path()).await;
        assert!(!out.status.success(), "{rest:?}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{rest:?}: {}",
            text(&out)
        );
    }
}
