//! `ferry serve` run by a service manager: systemd's readiness notifications (`NOTIFY_SOCKET`),
//! SIGHUP reloading the users and their keys without dropping sessions, and the completion
//! scripts and manual page packagers install. Loopback only; every wait is bounded.
//!
//! The SFTP key login needs `ssh-keygen`; without it that part is skipped with a note, unless
//! `FERRY_REQUIRE_INTEROP=1` (as in CI), which makes it a failure.
//! `systemd-analyze verify` of the documented unit and the rendering of the manual page by
//! `man` are skipped in the same way where those tools are missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{BIN, Out, hash, run};

const WAIT: Duration = Duration::from_secs(60);

/// Send each line `from` yields to a channel, from a thread of its own.
fn lines_of(from: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// A `ferry serve` child, told to notify a socket this test holds when `notify`; killed (by
/// PID, through `Child::kill`) when dropped.
struct Managed {
    child: Child,
    stdout: mpsc::Receiver<String>,
    log: mpsc::Receiver<String>,
    notify: Option<UnixDatagram>,
}

impl Managed {
    fn start(dir: &Path, args: &[&str], password: Option<&str>, notify: bool) -> Managed {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--allow-root"])
            .args(args)
            .current_dir(dir)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("FERRY_PASSWORD")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(p) = password {
            cmd.env("FERRY_PASSWORD", p);
        }
        let notify = notify.then(|| {
            let socket = dir.join("notify.sock");
            let notify = UnixDatagram::bind(&socket).unwrap();
            notify.set_read_timeout(Some(WAIT)).unwrap();
            cmd.env("NOTIFY_SOCKET", &socket);
            notify
        });
        let mut child = cmd.spawn().unwrap();
        let stdout = lines_of(child.stdout.take().unwrap());
        let log = lines_of(child.stderr.take().unwrap());
        Managed {
            child,
            stdout,
            log,
            notify,
        }
    }

    /// The next notification, as its `KEY=VALUE` fields.
    fn notified(&self) -> HashMap<String, String> {
        let mut buf = [0u8; 4096];
        let n = self
            .notify
            .as_ref()
            .expect("started without NOTIFY_SOCKET")
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notification within {WAIT:?}: {e}"));
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        text.lines()
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("{text:?}"));
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    /// The address printed after `prefix` (`ferry: listening on ftp://`).
    fn listening(&self, prefix: &str) -> SocketAddr {
        loop {
            let line = self
                .stdout
                .recv_timeout(WAIT)
                .expect("ferry serve printed no address in time");
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim_end_matches('/').parse().unwrap();
            }
        }
    }

    /// The first line logged from now on that contains `needle`.
    fn logged(&self, needle: &str) -> String {
        loop {
            let line = self
                .log
                .recv_timeout(WAIT)
                .unwrap_or_else(|_| panic!("nothing logged with {needle:?} in time"));
            if line.contains(needle) {
                return line;
            }
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([name, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An FTP control connection.
struct Ctrl(BufReader<TcpStream>);

impl Ctrl {
    fn connect(addr: SocketAddr) -> Ctrl {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut c = Ctrl(BufReader::new(s));
        let greeting = c.reply();
        assert!(greeting.starts_with("220"), "{greeting}");
        c
    }

    fn reply(&mut self) -> String {
        let mut line = String::new();
        self.0.read_line(&mut line).unwrap();
        line
    }

    fn cmd(&mut self, cmd: &str) -> String {
        self.0
            .get_mut()
            .write_all(format!("{cmd}\r\n").as_bytes())
            .unwrap();
        self.reply()
    }

    /// The reply to `PASS` after `USER user` (a session of its own).
    fn login(addr: SocketAddr, user: &str, password: &str) -> (Ctrl, String) {
        let mut c = Ctrl::connect(addr);
        let r = c.cmd(&format!("USER {user}"));
        assert!(r.starts_with("331"), "{r}");
        let r = c.cmd(&format!("PASS {password}"));
        (c, r)
    }
}

/// `ferry ls` of an SFTP server's `/` as `user`, with `password` or `identity`.
fn sftp_ls(
    home: &Path,
    addr: SocketAddr,
    user: &str,
    password: Option<&str>,
    identity: Option<&Path>,
) -> Out {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(home)
        .env("HOME", home)
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("FERRY_PASSWORD")
        .args(["ls", "--insecure"]);
    if let Some(p) = password {
        cmd.env("FERRY_PASSWORD", p);
    }
    if let Some(i) = identity {
        cmd.arg("-i").arg(i);
    }
    cmd.arg(format!("sftp://{user}@{addr}/"));
    run(&mut cmd, b"", WAIT)
}

/// A `[[users]]` table.
fn user(name: &str, password: &str, home: &Path, keys: Option<&Path>) -> String {
    let keys = keys
        .map(|k| format!("authorized_keys_file = {:?}\n", k.to_str().unwrap()))
        .unwrap_or_default();
    format!(
        "[[users]]\nname = \"{name}\"\npassword_hash = \"{}\"\nhome = {:?}\n{keys}\n",
        hash(password),
        home.to_str().unwrap()
    )
}

fn config(users: &[String]) -> String {
    format!(
        "state_dir = \"state\"\n\n[limits]\nlogin_failure_delay_ms = 10\n\n\
         [ftp]\nlisten = [\"127.0.0.1:0\"]\ntls = \"off\"\n\n\
         [sftp]\nlisten = [\"127.0.0.1:0\"]\n\n{}",
        users.concat()
    )
}

/// Write `text` to `path` through a rename, as editors and configuration tools do.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A new Ed25519 key pair (`key`, `key.pub`) in `dir`; `None` without `ssh-keygen`.
fn keygen(dir: &Path) -> Option<PathBuf> {
    let key = dir.join("id_ed25519");
    let out = Command::new("timeout")
        .args(["30", "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output();
    match out {
        Ok(o) if o.status.success() => Some(key),
        _ => {
            assert!(
                std::env::var("FERRY_REQUIRE_INTEROP").as_deref() != Ok("1"),
                "ssh-keygen missing"
            );
            eprintln!("skipping the key login: ssh-keygen not installed");
            None
        }
    }
}

/// Under a service manager: `READY=1` once both ports answer; SIGHUP (the file rewritten: a
/// password changed, a user added, a key added to a keys file) is told as `RELOADING=1` with
/// the monotonic time, then `READY=1`; a session logged in before keeps working, new logins
/// over FTP and SFTP see the new users and keys and the old password fails; a file that no
/// longer parses is refused, logged, and the users served stay; SIGTERM is told as
/// `STOPPING=1`.
#[test]
fn notifies_readiness_and_reloads_users_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Bob, added by the reload, lives within a root served from the start: the confinement
    // (Landlock) admits no new root before a restart.
    let (alice_home, bob_home) = (d.join("alice"), d.join("alice").join("bob"));
    std::fs::create_dir_all(&alice_home).unwrap();
    std::fs::create_dir_all(&bob_home).unwrap();
    std::fs::write(alice_home.join("a.txt"), "alice's").unwrap();
    std::fs::write(bob_home.join("b.txt"), "bob's").unwrap();
    let keys = d.join("alice.keys");
    std::fs::write(&keys, "# none yet\n").unwrap();
    let toml = d.join("ferry.toml");
    std::fs::write(
        &toml,
        config(&[user("alice", "old-pw", &alice_home, Some(&keys))]),
    )
    .unwrap();
    let client_home = d.join("client");
    std::fs::create_dir_all(&client_home).unwrap();

    let served = Managed::start(d, &["--config", "ferry.toml"], None, true);
    let ready = served.notified();
    assert_eq!(
        ready.get("READY").map(String::as_str),
        Some("1"),
        "{ready:?}"
    );
    // Told only once both listeners answer: one attempt each, no retry.
    let ftp = served.listening("ferry: listening on ftp://");
    let sftp = served.listening("ferry: listening on sftp://");
    Ctrl::connect(ftp);
    let mut ssh = TcpStream::connect_timeout(&sftp, Duration::from_secs(10)).unwrap();
    ssh.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut banner = [0u8; 8];
    ssh.read_exact(&mut banner).unwrap();
    assert_eq!(&banner, b"SSH-2.0-");
    drop(ssh);
    let status = &ready["STATUS"];
    assert!(status.contains(&format!("ftp://{ftp}")), "{status}");
    assert!(status.contains(&format!("sftp://{sftp}")), "{status}");

    let (mut before, r) = Ctrl::login(ftp, "alice", "old-pw");
    assert!(r.starts_with("230"), "{r}");
    let key = keygen(&client_home);
    if let Some(key) = &key {
        let out = sftp_ls(&client_home, sftp, "alice", None, Some(key));
        assert_ne!(out.code, 0, "a key not listed yet: {}", out.stdout);
    }

    // A password changed, a user added, a key added to a keys file.
    replace(
        &toml,
        &config(&[
            user("alice", "new-pw", &alice_home, Some(&keys)),
            user("bob", "bob-pw", &bob_home, None),
        ]),
    );
    if let Some(key) = &key {
        let line = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        std::fs::write(&keys, line).unwrap();
    }
    served.signal("-HUP");
    let reloading = served.notified();
    assert_eq!(reloading.get("RELOADING").map(String::as_str), Some("1"));
    let usec: u64 = reloading["MONOTONIC_USEC"].parse().unwrap();
    assert!(usec > 0);
    let ready = served.notified();
    assert_eq!(
        ready.get("READY").map(String::as_str),
        Some("1"),
        "{ready:?}"
    );
    assert!(!ready["STATUS"].contains("failed"), "{ready:?}");

    // The session from before is still logged in.
    let r = before.cmd("PWD");
    assert!(r.starts_with("257"), "{r}");
    // New logins see the new users.
    let (_, r) = Ctrl::login(ftp, "bob", "bob-pw");
    assert!(r.starts_with("230"), "bob over FTP: {r}");
    let (_, r) = Ctrl::login(ftp, "alice", "new-pw");
    assert!(r.starts_with("230"), "alice's new password over FTP: {r}");
    let (_, r) = Ctrl::login(ftp, "alice", "old-pw");
    assert!(r.starts_with("530"), "alice's old password over FTP: {r}");
    let out = common::ok(sftp_ls(&client_home, sftp, "bob", Some("bob-pw"), None));
    assert!(out.stdout.contains("b.txt"), "{}", out.stdout);
    let out = sftp_ls(&client_home, sftp, "alice", Some("old-pw"), None);
    assert_ne!(
        out.code, 0,
        "alice's old password over SFTP: {}",
        out.stdout
    );
    let out = common::ok(sftp_ls(&client_home, sftp, "alice", Some("new-pw"), None));
    assert!(out.stdout.contains("a.txt"), "{}", out.stdout);
    if let Some(key) = &key {
        let out = common::ok(sftp_ls(&client_home, sftp, "alice", None, Some(key)));
        assert!(out.stdout.contains("a.txt"), "{}", out.stdout);
    }

    // A file that no longer parses: refused with a log line, the users of now stay.
    replace(&toml, "[[users]\nname = \"mallory\"\n");
    served.signal("-HUP");
    let reloading = served.notified();
    assert_eq!(reloading.get("RELOADING").map(String::as_str), Some("1"));
    let line = served.logged("configuration reload failed");
    assert!(line.contains("ferry.toml"), "{line}");
    let ready = served.notified();
    assert_eq!(
        ready.get("READY").map(String::as_str),
        Some("1"),
        "{ready:?}"
    );
    assert!(ready["STATUS"].contains("failed"), "{ready:?}");
    let (_, r) = Ctrl::login(ftp, "bob", "bob-pw");
    assert!(r.starts_with("230"), "bob after a refused reload: {r}");
    let r = before.cmd("PWD");
    assert!(r.starts_with("257"), "{r}");

    served.signal("-TERM");
    let stopping = served.notified();
    assert_eq!(
        stopping.get("STOPPING").map(String::as_str),
        Some("1"),
        "{stopping:?}"
    );
}

/// Without a service manager or a configuration file: SIGHUP reads `--user`'s
/// `--authorized-keys` file again, so a key added there logs in over SFTP from then on; the
/// password (from FERRY_PASSWORD at start) still works over FTP and SFTP.
#[test]
fn sighup_rereads_the_authorized_keys_of_the_user_flag() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let client_home = d.join("client");
    std::fs::create_dir_all(&client_home).unwrap();
    let Some(key) = keygen(&client_home) else {
        return;
    };
    std::fs::write(d.join("keys"), "").unwrap();
    std::fs::create_dir_all(d.join("root")).unwrap();
    std::fs::write(d.join("root/f.txt"), "f").unwrap();
    let served = Managed::start(
        d,
        &[
            "--listen",
            "127.0.0.1:0",
            "--sftp-listen",
            "127.0.0.1:0",
            "--tls",
            "off",
            "--user",
            "u",
            "--root",
            "root",
            "--authorized-keys",
            "keys",
            "--state-dir",
            "state",
        ],
        Some("pw"),
        false,
    );
    let ftp = served.listening("ferry: listening on ftp://");
    let sftp = served.listening("ferry: listening on sftp://");
    let out = sftp_ls(&client_home, sftp, "u", None, Some(&key));
    assert_ne!(out.code, 0, "a key not listed yet: {}", out.stdout);

    let line = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    replace(&d.join("keys"), &line);
    served.signal("-HUP");
    served.logged("users reloaded");
    let out = common::ok(sftp_ls(&client_home, sftp, "u", None, Some(&key)));
    assert!(out.stdout.contains("f.txt"), "{}", out.stdout);
    common::ok(sftp_ls(&client_home, sftp, "u", Some("pw"), None));
    let (_, r) = Ctrl::login(ftp, "u", "pw");
    assert!(r.starts_with("230"), "{r}");
}

/// The password-hashing threads of `pid` (`ferry-hash-N`).
fn hash_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("ferry-hash"))
        .count()
}

/// Wait until `pid` has `count` hashing threads; fail, saying `when`, if it never does.
fn wait_for_hash_threads(pid: u32, count: usize, when: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    while hash_threads(pid) != count {
        assert!(
            std::time::Instant::now() < deadline,
            "{} hashing threads {when}, not {count}",
            hash_threads(pid)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Each reload brings its own users and their hashing threads; the ones they replace go
/// with them, so reloads leave no thread behind. A reload that finds a setting changed says
/// that it waits for a restart.
#[test]
fn reloads_leave_no_threads_behind() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("home")).unwrap();
    std::fs::write(
        d.join("ferry.toml"),
        config(&[user("alice", "pw", &d.join("home"), None)]),
    )
    .unwrap();
    let served = Managed::start(d, &["--config", "ferry.toml"], None, false);
    let addr = served.listening("ferry: listening on ftp://");
    let pid = served.child.id();
    // The users' hashing threads start with their first login.
    let log_in = || {
        let (_c, r) = Ctrl::login(addr, "alice", "pw");
        assert!(r.starts_with("230"), "{r}");
    };
    log_in();
    // One per core (docs/security.md), each named by itself once it runs.
    let per_users = std::thread::available_parallelism().unwrap().get();
    wait_for_hash_threads(pid, per_users, "after the first login");
    for _ in 0..5 {
        served.signal("-HUP");
        served.logged("users reloaded");
        log_in();
    }
    // A setting that waits for a restart is said to.
    let text = std::fs::read_to_string(d.join("ferry.toml")).unwrap();
    std::fs::write(
        d.join("ferry.toml"),
        text.replace("login_failure_delay_ms = 10", "login_failure_delay_ms = 20"),
    )
    .unwrap();
    served.signal("-HUP");
    served.logged("take effect at the next restart");
    log_in();
    wait_for_hash_threads(pid, per_users, "after 6 reloads");
}

fn output(args: &[&str]) -> String {
    let out = Command::new("timeout")
        .arg("60")
        .arg(BIN)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Completion scripts for bash, zsh and fish name the subcommands, and bash's parses.
#[test]
fn completion_scripts_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let script = output(&["completions", shell]);
        for verb in [
            "serve",
            "check-config",
            "get",
            "put",
            "mirror",
            "completions",
        ] {
            assert!(script.contains(verb), "{shell}: no {verb}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.bash");
    std::fs::write(&path, output(&["completions", "bash"])).unwrap();
    let check = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    // A reader that leaves early is no crash.
    let mut head = Command::new(BIN)
        .args(["completions", "zsh"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(head.stdout.take());
    let out = head.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `ferry man` is one roff page with a section per subcommand and its options; `--dir`
/// writes a page per subcommand.
#[test]
fn man_page_covers_every_subcommand() {
    let page = output(&["man"]);
    assert!(page.contains(".TH ferry 1"), "{page}");
    for section in [
        ".SH \"FERRY SERVE\"",
        ".SH \"FERRY GET\"",
        ".SH \"FERRY COMPLETIONS\"",
    ] {
        assert!(page.contains(section), "no {section}");
    }
    assert!(page.contains("\\-\\-authorized\\-keys"), "serve's options");
    assert!(!page.contains("minimal\\-peer"), "a hidden subcommand");
    let dir = tempfile::tempdir().unwrap();
    output(&["man", "--dir", dir.path().to_str().unwrap()]);
    for name in ["ferry.1", "ferry-serve.1", "ferry-ls.1", "ferry-man.1"] {
        let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert!(text.starts_with(".ie"), "{name}");
    }
    if Command::new("man").arg("--version").output().is_ok() {
        let path = dir.path().join("ferry.1");
        let shown = Command::new("timeout")
            .args(["30", "man", "-l"])
            .arg(&path)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        assert!(shown.status.success());
        assert!(String::from_utf8_lossy(&shown.stdout).contains("ferry-serve(1)"));
    } else {
        assert!(
            std::env::var("FERRY_REQUIRE_INTEROP").as_deref() != Ok("1"),
            "man missing"
        );
        eprintln!("skipping the rendering check: man not installed");
    }
}

/// The systemd unit in docs/deployment.md is `Type=notify`, reloads with SIGHUP, is hardened,
/// and `systemd-analyze verify` accepts it (with this binary in place of the installed one).
#[test]
fn deployment_unit_is_notify_hardened_and_verifies() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/deployment.md"),
    )
    .unwrap();
    let unit = doc
        .split("```ini\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("no ```ini block in docs/deployment.md");
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(line)), "no {line}");
    }
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("FERRY_REQUIRE_INTEROP").as_deref() != Ok("1"),
            "systemd-analyze missing"
        );
        eprintln!("skipping systemd-analyze verify: systemd not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/ferry", BIN)).unwrap();
    let out = Command::new("timeout")
        .args(["60", "systemd-analyze", "verify"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
