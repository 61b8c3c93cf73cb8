//! Ferry's SFTP client against OpenSSH's sshd, started by this test on a high loopback port
//! (127.0.0.1 and ::1) with its own configuration: its own host keys (Ed25519 and RSA), the
//! `internal-sftp` subsystem chrooted into a root-owned directory with a writable `upload/`,
//! `AuthorizedKeysFile` pointing at a test file, and password logins for a test user.
//!
//! Logins: Ed25519, ECDSA and RSA keys with `-i`, the default `~/.ssh/id_ed25519`, ssh-agent,
//! a refused key then the password, an encrypted key skipped with a note; host keys: hashed
//! `known_hosts` entries (`ssh-keygen -H`), an RSA-only entry (the client asks for RSA), an
//! unknown key refused with the fingerprint `ssh-keygen -l` shows. Then every verb, resume both
//! ways and a 64 MiB file both ways by SHA-256, over IPv4 and IPv6.
//!
//! Needs root (chroot, a system user, sshd) and `/usr/sbin/sshd`; runs only with
//! `FERRY_PEER_TESTS=1`, and is listed as ignored otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Out, content, ok, run, sha256, tree};

const SSHD: &str = "/usr/sbin/sshd";
/// The system user sshd logs in (created when missing, with this password).
const USER: &str = "ferrysftp";
const PASSWORD: &str = "Sftp-test-pass1";
const WAIT: Duration = Duration::from_secs(180);

fn enabled() -> bool {
    std::env::var("FERRY_PEER_TESTS").is_ok_and(|v| v == "1")
}

/// Run a helper program to success.
#[track_caller]
fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn keygen(path: &Path, kind: &str, passphrase: &str) {
    let mut args = vec!["-q", "-t", kind, "-N", passphrase, "-C", "ferry-test", "-f"];
    let p = path.to_str().unwrap();
    args.push(p);
    if kind == "rsa" {
        args.extend(["-b", "2048"]);
    }
    sh("ssh-keygen", &args);
}

fn ipv6_available() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

/// A running sshd and the keys made for it; stopped (by its pid) on drop.
struct Sshd {
    child: Child,
    port: u16,
    v6: bool,
    dir: tempfile::TempDir,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sshd {
    fn state(&self) -> &Path {
        self.dir.path()
    }

    /// The chroot's writable directory, as the server's files.
    fn upload(&self) -> PathBuf {
        self.state().join("chroot").join("upload")
    }

    fn key(&self, name: &str) -> PathBuf {
        self.state().join("keys").join(name)
    }

    /// `sftp://ferrysftp@HOST:PORT/upload/path`.
    fn url(&self, v6: bool, path: &str) -> String {
        let host = if v6 { "[::1]" } else { "127.0.0.1" };
        format!("sftp://{USER}@{host}:{}/upload/{path}", self.port)
    }

    /// known_hosts lines for both addresses, with the host key `which` (`ed25519`, `rsa`).
    fn known_hosts(&self, which: &str) -> String {
        let key = std::fs::read_to_string(self.state().join(format!("ssh_host_{which}_key.pub")))
            .unwrap();
        let key = key.trim();
        format!("[127.0.0.1]:{p} {key}\n[::1]:{p} {key}\n", p = self.port)
    }

    fn start() -> Sshd {
        if !Path::new("/run/sshd").exists() {
            std::fs::create_dir_all("/run/sshd").unwrap();
            std::fs::set_permissions("/run/sshd", std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let has_user = Command::new("id")
            .arg(USER)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
        if !has_user {
            sh(
                "useradd",
                &[
                    "-M",
                    "-r",
                    "-s",
                    "/usr/sbin/nologin",
                    "-d",
                    "/nonexistent",
                    USER,
                ],
            );
        }
        let mut chpasswd = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(
            chpasswd.stdin.as_mut().unwrap(),
            format!("{USER}:{PASSWORD}\n").as_bytes(),
        )
        .unwrap();
        drop(chpasswd.stdin.take());
        assert!(chpasswd.wait().unwrap().success());

        // sshd requires a chroot whose every component is root-owned and writable by no one
        // else: /run is, /tmp (1777) is not.
        let dir = tempfile::Builder::new()
            .prefix("ferry-sshd-")
            .tempdir_in("/run")
            .unwrap();
        let state = dir.path();
        std::fs::set_permissions(state, std::fs::Permissions::from_mode(0o755)).unwrap();
        let chroot = state.join("chroot");
        std::fs::create_dir_all(chroot.join("upload")).unwrap();
        std::fs::set_permissions(&chroot, std::fs::Permissions::from_mode(0o755)).unwrap();
        sh(
            "chown",
            &[&format!("{USER}:"), chroot.join("upload").to_str().unwrap()],
        );

        keygen(&state.join("ssh_host_ed25519_key"), "ed25519", "");
        keygen(&state.join("ssh_host_rsa_key"), "rsa", "");
        let keys = state.join("keys");
        std::fs::create_dir(&keys).unwrap();
        let mut authorized = String::new();
        for (name, kind) in [("ed25519", "ed25519"), ("ecdsa", "ecdsa"), ("rsa", "rsa")] {
            keygen(&keys.join(name), kind, "");
            authorized
                .push_str(&std::fs::read_to_string(keys.join(format!("{name}.pub"))).unwrap());
        }
        // An encrypted key the server would take, and a key it doesn't know.
        keygen(&keys.join("encrypted"), "ed25519", "a passphrase");
        authorized.push_str(&std::fs::read_to_string(keys.join("encrypted.pub")).unwrap());
        keygen(&keys.join("stranger"), "ed25519", "");
        let ak = state.join("authorized_keys");
        std::fs::write(&ak, authorized).unwrap();
        std::fs::set_permissions(&ak, std::fs::Permissions::from_mode(0o644)).unwrap();

        let config = state.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "HostKey {s}/ssh_host_ed25519_key\n\
                 HostKey {s}/ssh_host_rsa_key\n\
                 PidFile none\n\
                 UsePAM no\n\
                 StrictModes no\n\
                 PermitRootLogin no\n\
                 AllowUsers {USER}\n\
                 PasswordAuthentication yes\n\
                 KbdInteractiveAuthentication no\n\
                 PubkeyAuthentication yes\n\
                 AuthorizedKeysFile {s}/authorized_keys\n\
                 MaxAuthTries 10\n\
                 Subsystem sftp internal-sftp\n\
                 ChrootDirectory {s}/chroot\n\
                 ForceCommand internal-sftp\n\
                 AllowTcpForwarding no\n\
                 X11Forwarding no\n",
                s = state.display()
            ),
        )
        .unwrap();
        // Configuration errors show here; the running server logs only fatal ones (the
        // readiness probes below would each log a closed connection).
        sh(SSHD, &["-t", "-f", config.to_str().unwrap()]);
        let v6 = ipv6_available();
        // A free port now may be taken by the time sshd binds it: a few tries.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut cmd = Command::new(SSHD);
            cmd.args([
                "-D",
                "-e",
                "-f",
                config.to_str().unwrap(),
                "-o",
                "LogLevel=FATAL",
            ])
            .args(["-p", &port.to_string(), "-o", "ListenAddress=127.0.0.1"]);
            if v6 {
                cmd.args(["-o", "ListenAddress=::1"]);
            }
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap();
            let started = Instant::now();
            let up = loop {
                if child.try_wait().unwrap().is_some() {
                    break false;
                }
                let v4_up = TcpStream::connect(("127.0.0.1", port)).is_ok();
                let v6_up = !v6 || TcpStream::connect(("::1", port)).is_ok();
                if v4_up && v6_up {
                    break true;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "sshd did not start listening"
                );
                std::thread::sleep(Duration::from_millis(20));
            };
            if up {
                return Sshd {
                    child,
                    port,
                    v6,
                    dir,
                };
            }
        }
        panic!("sshd did not start (see its messages above)");
    }
}

/// `ferry ARGS` in a fresh working directory (also HOME) holding `known_hosts`, without a
/// password or an agent unless `env` gives them.
fn ferry(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = common::ferry_command(home, "");
    cmd.args(args)
        .env_remove("FERRY_PASSWORD")
        .env_remove("SSH_AUTH_SOCK");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd, b"", WAIT)
}

/// A working directory whose `~/.ssh/known_hosts` trusts the server's `which` host key.
fn home(sshd: &Sshd, which: &str) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let ssh = home.path().join(".ssh");
    std::fs::create_dir(&ssh).unwrap();
    std::fs::write(ssh.join("known_hosts"), sshd.known_hosts(which)).unwrap();
    home
}

#[track_caller]
fn fails(out: Out, code: i32) -> Out {
    assert_eq!(
        out.code, code,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    out
}

fn key_logins(sshd: &Sshd) {
    let h = home(sshd, "ed25519");
    let w = h.path();
    // Hashed entries, as `ssh-keygen -H` writes them.
    let kh = w.join(".ssh").join("known_hosts");
    sh("ssh-keygen", &["-q", "-H", "-f", kh.to_str().unwrap()]);
    let hashed = std::fs::read_to_string(&kh).unwrap();
    assert!(hashed.starts_with("|1|"), "{hashed}");
    for key in ["ed25519", "ecdsa", "rsa"] {
        let k = sshd.key(key);
        let out = ok(ferry(
            w,
            &["ls", "-v", "-i", k.to_str().unwrap(), &sshd.url(false, "")],
            &[],
        ));
        assert!(out.stderr.contains("offering the key"), "{}", out.stderr);
    }
    // The default key file, no -i.
    std::fs::copy(sshd.key("ed25519"), w.join(".ssh").join("id_ed25519")).unwrap();
    ok(ferry(w, &["ls", &sshd.url(false, "")], &[]));
}

fn agent_login(sshd: &Sshd) {
    let h = home(sshd, "ed25519");
    let w = h.path();
    let sock = w.join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .args(["-D", "-a", sock.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !sock.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "ssh-agent did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let added = Command::new("ssh-add")
        .arg(sshd.key("rsa"))
        .env("SSH_AUTH_SOCK", &sock)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = ferry(
        w,
        &["ls", "-v", &sshd.url(false, "")],
        &[("SSH_AUTH_SOCK", sock.to_str().unwrap())],
    );
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let out = ok(out);
    assert!(out.stderr.contains("the agent's key"), "{}", out.stderr);
}

fn password_and_skipped_keys(sshd: &Sshd) {
    let h = home(sshd, "ed25519");
    let w = h.path();
    let url = sshd.url(false, "");
    // A key the server doesn't know, then the password.
    let stranger = sshd.key("stranger");
    ok(ferry(
        w,
        &["ls", "-i", stranger.to_str().unwrap(), &url],
        &[("FERRY_PASSWORD", PASSWORD)],
    ));
    // Without the password: refused, saying what was tried.
    let out = fails(
        ferry(w, &["ls", "-i", stranger.to_str().unwrap(), &url], &[]),
        3,
    );
    assert!(
        out.stderr.contains("1 public key refused"),
        "{}",
        out.stderr
    );
    // An encrypted key with no terminal to ask its passphrase: skipped with a note.
    let enc = sshd.key("encrypted");
    let out = ok(ferry(
        w,
        &["ls", "-i", enc.to_str().unwrap(), &url],
        &[("FERRY_PASSWORD", PASSWORD)],
    ));
    assert!(out.stderr.contains("encrypted"), "{}", out.stderr);
    // A wrong password.
    fails(ferry(w, &["ls", &url], &[("FERRY_PASSWORD", "wrong")]), 3);
}

fn host_keys(sshd: &Sshd) {
    // Only the RSA key on record: the client asks the server for it, not for Ed25519.
    let h = home(sshd, "rsa");
    ok(ferry(
        h.path(),
        &["ls", &sshd.url(false, "")],
        &[("FERRY_PASSWORD", PASSWORD)],
    ));
    // Unknown: the fingerprint ssh-keygen shows for the server's Ed25519 key.
    let empty = tempfile::tempdir().unwrap();
    let out = fails(
        ferry(
            empty.path(),
            &["ls", &sshd.url(false, "")],
            &[("FERRY_PASSWORD", PASSWORD)],
        ),
        8,
    );
    let listed = sh(
        "ssh-keygen",
        &[
            "-l",
            "-f",
            sshd.state()
                .join("ssh_host_ed25519_key.pub")
                .to_str()
                .unwrap(),
        ],
    );
    let fp = listed.split_whitespace().nth(1).unwrap();
    assert!(fp.starts_with("SHA256:"), "{listed}");
    assert!(out.stderr.contains(fp), "{}\n{listed}", out.stderr);
}

fn verbs(sshd: &Sshd, v6: bool) {
    let h = home(sshd, "ed25519");
    let w = h.path();
    let k = sshd.key("ed25519");
    let key = k.to_str().unwrap();
    let dir = if v6 { "v6" } else { "v4" };
    let url = |p: &str| sshd.url(v6, &format!("{dir}/{p}"));
    // The verb, then the key, then the rest.
    let f = |args: &[&str]| {
        let mut all = vec![args[0], "-i", key];
        all.extend_from_slice(&args[1..]);
        ferry(w, &all, &[])
    };
    ok(f(&["mkdir", &sshd.url(v6, dir)]));
    ok(f(&["mkdir", "-p", &url("a/b")]));
    let body = content(3_000_001, 4);
    std::fs::write(w.join("up.bin"), &body).unwrap();
    ok(f(&["put", "up.bin", &url("a/")]));
    let server = sshd.upload().join(dir);
    assert_eq!(std::fs::read(server.join("a/up.bin")).unwrap(), body);
    let ls = ok(f(&["ls", "-l", &url("a")]));
    assert!(ls.stdout.contains("3000001"), "{}", ls.stdout);
    assert!(
        ls.stdout
            .lines()
            .any(|l| l.starts_with('d') && l.ends_with(" b")),
        "{}",
        ls.stdout
    );
    ok(f(&["get", &url("a/up.bin"), "-o", "down.bin"]));
    assert_eq!(
        sha256(&std::fs::read(w.join("down.bin")).unwrap()),
        sha256(&body)
    );

    // Resume both ways.
    std::fs::write(w.join("down.bin"), &body[..1_000_000]).unwrap();
    ok(f(&["get", "-c", &url("a/up.bin"), "-o", "down.bin"]));
    assert_eq!(
        sha256(&std::fs::read(w.join("down.bin")).unwrap()),
        sha256(&body)
    );
    std::fs::write(server.join("a/up.bin"), &body[..2_000_000]).unwrap();
    ok(f(&["put", "-c", "up.bin", &url("a/up.bin")]));
    assert_eq!(
        sha256(&std::fs::read(server.join("a/up.bin")).unwrap()),
        sha256(&body)
    );

    // Rename over an existing file (posix-rename), delete, rmdir.
    std::fs::write(server.join("a/other.bin"), b"old").unwrap();
    ok(f(&["mv", &url("a/up.bin"), "other.bin"]));
    assert_eq!(std::fs::read(server.join("a/other.bin")).unwrap(), body);
    ok(f(&["rm", &url("a/other.bin")]));
    ok(f(&["rmdir", &url("a/b")]));
    fails(f(&["get", &url("a/missing")]), 4);

    // A mirror there and back.
    let src = w.join("tree");
    std::fs::create_dir_all(src.join("x/y")).unwrap();
    std::fs::write(src.join("x/one"), content(10_000, 1)).unwrap();
    std::fs::write(src.join("x/y/two"), content(20_000, 2)).unwrap();
    ok(f(&["mirror", "--reverse", "tree", &url("m")]));
    ok(f(&["mirror", &url("m"), "back"]));
    assert_eq!(tree(&w.join("back")), tree(&src));
}

fn large_file(sshd: &Sshd) {
    let h = home(sshd, "ed25519");
    let w = h.path();
    let k = sshd.key("ed25519");
    let body = content(64 * 1024 * 1024 + 5, 12);
    std::fs::write(w.join("big.bin"), &body).unwrap();
    let url = sshd.url(false, "big.bin");
    ok(ferry(
        w,
        &["put", "-i", k.to_str().unwrap(), "big.bin", &url],
        &[],
    ));
    assert_eq!(
        sha256(&std::fs::read(sshd.upload().join("big.bin")).unwrap()),
        sha256(&body)
    );
    ok(ferry(
        w,
        &["get", "-i", k.to_str().unwrap(), &url, "-o", "back.bin"],
        &[],
    ));
    assert_eq!(
        sha256(&std::fs::read(w.join("back.bin")).unwrap()),
        sha256(&body)
    );
}

fn main() -> std::process::ExitCode {
    let args = libtest_mimic::Arguments::from_args();
    let on = enabled() && Path::new(SSHD).exists();
    // Started only when some trial will run (not for --list, not when filtered out).
    let sshd: Arc<std::sync::OnceLock<Sshd>> = Arc::default();
    type Body = fn(&Sshd);
    let cases: [(&str, Body); 7] = [
        (
            "sshd_key_logins_ed25519_ecdsa_rsa_and_default_file",
            key_logins,
        ),
        ("sshd_agent_login", agent_login),
        (
            "sshd_password_after_refused_and_encrypted_keys",
            password_and_skipped_keys,
        ),
        ("sshd_host_key_order_and_unknown_key", host_keys),
        ("sshd_verbs_resume_and_mirror_ipv4", |s| verbs(s, false)),
        ("sshd_verbs_resume_and_mirror_ipv6", |s| {
            assert!(
                s.v6,
                "::1 cannot be bound: without IPv6 loopback, run the others with --skip ipv6"
            );
            verbs(s, true);
        }),
        ("sshd_64_mib_both_ways", large_file),
    ];
    let trials = cases
        .into_iter()
        .map(|(name, body)| {
            let sshd = Arc::clone(&sshd);
            libtest_mimic::Trial::test(name, move || {
                body(sshd.get_or_init(Sshd::start));
                Ok(())
            })
            .with_ignored_flag(!on)
            .with_kind(if on {
                ""
            } else {
                "needs FERRY_PEER_TESTS=1, root and /usr/sbin/sshd"
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    // Stop sshd (the one we started, by its pid) before exiting.
    match Arc::try_unwrap(sshd) {
        Ok(cell) => drop(cell.into_inner()),
        Err(shared) => {
            if let Some(s) = shared.get() {
                let _ = Command::new("kill").arg(s.child.id().to_string()).status();
            }
        }
    }
    conclusion.exit_code()
}
