//! SFTP through the real `ferry serve` binary, beside FTPS: the same user and files over both
//! protocols (OpenSSH's `sftp` and curl), `--user NAME --authorized-keys FILE` logging in by
//! key, and SIGTERM letting a running SFTP upload finish. Loopback only (127.0.0.1, ::1).
//!
//! A missing tool (`sftp`, `sshpass`, `ssh-keygen`, `curl`) skips its test with a note, unless
//! `FERRY_REQUIRE_INTEROP=1` (as in CI), which makes it a failure. Every wait is bounded, every
//! external command runs under coreutils `timeout`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tempfile::TempDir;

const USER: &str = "tester";
const PASSWORD: &str = "sftp-Pass-42";
const STARTUP: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(60);

/// A running `ferry serve`, killed (by PID, through `Child::kill`) when dropped.
struct Served {
    child: Child,
    ftp: SocketAddr,
    sftp: Vec<SocketAddr>,
    root: PathBuf,
    state: PathBuf,
    log: PathBuf,
    dir: TempDir,
}

impl Served {
    /// `ferry serve` with FTPS on 127.0.0.1:0, SFTP on each of `sftp`, and `extra` arguments;
    /// `password` in FERRY_PASSWORD when given.
    fn start(sftp: &[&str], password: Option<&str>, extra: &[&str]) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let state = dir.path().join("state");
        let log = dir.path().join("server.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.args(["serve", "--allow-root", "--listen", "127.0.0.1:0"]);
        for addr in sftp {
            cmd.args(["--sftp-listen", addr]);
        }
        cmd.arg("--root")
            .arg(&root)
            .args(["--user", USER, "--log", "debug"])
            .arg("--state-dir")
            .arg(&state)
            .args(extra)
            .env_remove("FERRY_PASSWORD")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(p) = password {
            cmd.env("FERRY_PASSWORD", p);
        }
        let mut child = cmd.spawn().expect("cannot start the ferry binary");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut served = Served {
            child,
            ftp: "127.0.0.1:0".parse().unwrap(),
            sftp: Vec::new(),
            root,
            state,
            log,
            dir,
        };
        let deadline = Instant::now() + STARTUP;
        while served.ftp.port() == 0 || served.sftp.len() < sftp.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|e| {
                panic!(
                    "no listening lines within {STARTUP:?} ({e})\n{}",
                    served.log_tail()
                )
            });
            let addr = |rest: &str| rest.trim_end_matches('/').parse::<SocketAddr>().unwrap();
            if let Some(rest) = line.strip_prefix("ferry: listening on ftp://") {
                served.ftp = addr(rest);
            } else if let Some(rest) = line.strip_prefix("ferry: listening on sftp://") {
                served.sftp.push(addr(rest));
            }
        }
        served
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(60);
        format!("--- server log ---\n{}", lines[start..].join("\n"))
    }

    /// A fresh local directory outside the root.
    fn local(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// `sftp` arguments for the server at `addr`: `auth` methods, `extra` options, a batch.
    fn sftp_args(&self, addr: SocketAddr, auth: &str, extra: &[&str], batch: &Path) -> Vec<String> {
        let mut args: Vec<String> = [
            "-F",
            "/dev/null",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "IdentityAgent=none",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "LogLevel=ERROR",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(["-o".to_string(), format!("PreferredAuthentications={auth}")]);
        if auth == "password" {
            // `sftp -b` turns batch mode on, which forbids password prompts.
            args.extend(["-o", "BatchMode=no", "-o", "PubkeyAuthentication=no"].map(String::from));
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let host = match addr {
            SocketAddr::V6(a) => format!("{USER}@[{}]", a.ip()),
            SocketAddr::V4(a) => format!("{USER}@{}", a.ip()),
        };
        args.extend([
            "-b".to_string(),
            batch.display().to_string(),
            "-P".to_string(),
            addr.port().to_string(),
            host,
        ]);
        args
    }

    /// Run an `sftp` batch with the password, in `local`; panics unless it succeeds.
    fn sftp_password(&self, addr: SocketAddr, batch: &str, local: &Path) -> Output {
        let file = local.join(".batch");
        std::fs::write(&file, batch).unwrap();
        let mut args: Vec<String> = ["-k", "5", "120", "sshpass", "-p", PASSWORD, "sftp"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(self.sftp_args(addr, "password", &[], &file));
        self.run("timeout", &args, local)
    }

    /// Run an `sftp` batch with the password, in `local`, whatever its outcome.
    fn try_sftp_password(&self, addr: SocketAddr, batch: &str, local: &Path) -> Output {
        let file = local.join(".batch");
        std::fs::write(&file, batch).unwrap();
        let mut args: Vec<String> = ["-k", "5", "120", "sshpass", "-p", PASSWORD, "sftp"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(self.sftp_args(addr, "password", &[], &file));
        Command::new("timeout")
            .args(&args)
            .current_dir(local)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn run(&self, program: &str, args: &[String], dir: &Path) -> Output {
        let out = Command::new(program)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}\nstdout:\n{}\nstderr:\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
        out
    }

    /// curl over FTPS (TLS required, the generated certificate trusted) with `args`.
    fn curl(&self, args: &[&str], dir: &Path) -> Output {
        let out = self.try_curl(args, dir);
        assert!(
            out.status.success(),
            "curl {args:?} failed: {}\nstderr:\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
        out
    }

    /// [`Served::curl`], whatever its outcome.
    fn try_curl(&self, args: &[&str], dir: &Path) -> Output {
        let cacert = self.state.join("cert.pem").display().to_string();
        let mut all: Vec<String> = ["-k", "5", "120", "curl", "-sS", "--ssl-reqd", "--cacert"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        all.push(cacert);
        all.extend(["--user".to_string(), format!("{USER}:{PASSWORD}")]);
        all.extend(args.iter().map(|s| s.to_string()));
        Command::new("timeout")
            .args(&all)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

fn have_ipv6() -> bool {
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        return true;
    }
    eprintln!("note: cannot bind [::1] on this machine; IPv6 left out");
    false
}

fn payload(len: usize, seed: u32) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed).to_be_bytes()[1])
        .collect()
}

#[test]
fn files_cross_between_sftp_and_ftps_for_the_same_user() {
    if !have_tools("sftp_ftps_cross", &["sftp", "sshpass", "curl"]) {
        return;
    }
    let mut sftp = vec!["127.0.0.1:0"];
    if have_ipv6() {
        sftp.push("[::1]:0");
    }
    let srv = Served::start(&sftp, Some(PASSWORD), &[]);
    let local = srv.local("local");
    let over_sftp = payload(2 * 1024 * 1024 + 11, 1);
    let over_ftps = payload(1024 * 1024 + 7, 2);
    std::fs::write(local.join("over-sftp.bin"), &over_sftp).unwrap();
    std::fs::write(local.join("over-ftps.bin"), &over_ftps).unwrap();

    // Up over SFTP, down over FTPS.
    srv.sftp_password(srv.sftp[0], "put over-sftp.bin\n", &local);
    let url = format!("ftp://{}/over-sftp.bin", srv.ftp);
    srv.curl(&[&url, "-o", "from-ftps.bin"], &local);
    assert_eq!(
        std::fs::read(local.join("from-ftps.bin")).unwrap(),
        over_sftp
    );

    // Up over FTPS, down over SFTP (on every SFTP address, IPv6 included).
    let url = format!("ftp://{}/over-ftps.bin", srv.ftp);
    srv.curl(&["-T", "over-ftps.bin", &url], &local);
    for (i, addr) in srv.sftp.iter().enumerate() {
        let batch = format!("get over-ftps.bin from-sftp{i}.bin\nls -l\n");
        srv.sftp_password(*addr, &batch, &local);
        assert_eq!(
            std::fs::read(local.join(format!("from-sftp{i}.bin"))).unwrap(),
            over_ftps,
            "{addr}"
        );
    }
    // One set of files: the user's root.
    let mut names: Vec<String> = std::fs::read_dir(&srv.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["over-ftps.bin", "over-sftp.bin"]);
}

#[test]
fn serve_user_with_authorized_keys_logs_in_by_key() {
    if !have_tools("serve_authorized_keys", &["sftp", "ssh-keygen"]) {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("id_ed25519");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "bob@test", "-f"])
        .arg(&key)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let authorized = keys.path().join("authorized_keys");
    std::fs::copy(key.with_extension("pub"), &authorized).unwrap();

    // No FERRY_PASSWORD: the key is the user's only credential.
    let auth = authorized.display().to_string();
    let srv = Served::start(&["127.0.0.1:0"], None, &["--authorized-keys", &auth]);
    let local = srv.local("local");
    std::fs::write(local.join("k.txt"), b"by key\n").unwrap();
    let batch = local.join(".batch");
    std::fs::write(&batch, "put k.txt\nls -l\n").unwrap();
    let mut args: Vec<String> = ["-k", "5", "120", "sftp"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let id = key.display().to_string();
    args.extend(srv.sftp_args(srv.sftp[0], "publickey", &["-i", &id], &batch));
    srv.run("timeout", &args, &local);
    assert_eq!(std::fs::read(srv.root.join("k.txt")).unwrap(), b"by key\n");
}

#[test]
fn serve_user_needs_a_password_or_keys() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "serve",
            "--allow-root",
            "--listen",
            "127.0.0.1:0",
            "--user",
            USER,
            "--root",
        ])
        .arg(dir.path().join("root"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env_remove("FERRY_PASSWORD")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--authorized-keys"), "{stderr}");
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["serve", "--allow-root", "--authorized-keys", "/nonexistent"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--user"));
}

#[test]
fn sigterm_lets_a_running_sftp_upload_finish() {
    if !have_tools("sigterm_sftp_upload", &["sftp", "sshpass", "kill"]) {
        return;
    }
    let srv = Served::start(&["127.0.0.1:0"], Some(PASSWORD), &[]);
    let local = srv.local("local");
    // ~3 s at the rate below: still running when the server is told to stop.
    let data = payload(300 * 1024, 3);
    std::fs::write(local.join("slow.bin"), &data).unwrap();
    let batch = local.join(".batch");
    std::fs::write(&batch, "put slow.bin\n").unwrap();
    let mut args: Vec<String> = ["-p", PASSWORD, "sftp"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(srv.sftp_args(srv.sftp[0], "password", &["-l", "800"], &batch));
    let mut upload = Command::new("sshpass")
        .args(&args)
        .current_dir(&local)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Once the upload is under way (its temporary file beside the target has data)...
    let deadline = Instant::now() + WAIT;
    let started = || {
        std::fs::read_dir(&srv.root).unwrap().any(|e| {
            let e = e.unwrap();
            e.file_name()
                .to_string_lossy()
                .starts_with(".ferry-upload.")
                && e.metadata().unwrap().len() > 0
        })
    };
    while !started() {
        assert!(
            Instant::now() < deadline,
            "upload never began\n{}",
            srv.log_tail()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // ...the server is told to stop.
    let pid = srv.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());

    // The upload completes, then the server exits cleanly.
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = upload.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "upload never ended");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut upload.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        status.success(),
        "upload failed: {stderr}\n{}",
        srv.log_tail()
    );
    assert_eq!(std::fs::read(srv.root.join("slow.bin")).unwrap(), data);
    let mut srv = srv;
    let deadline = Instant::now() + WAIT;
    let exited = loop {
        if let Some(status) = srv.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "server never exited\n{}",
            srv.log_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exited.success(), "{exited}\n{}", srv.log_tail());
}

/// FTP and SFTP sessions count against the same `max_sessions_per_ip`: with a cap of 2, two
/// FTP connections from one address leave no room for an SFTP one, which is told why before
/// any SSH is spoken; when an FTP session ends, SFTP gets its place.
#[test]
fn ftp_and_sftp_sessions_share_the_per_address_cap() {
    use std::io::Read;
    let served = Served::start(
        &["127.0.0.1:0"],
        Some(PASSWORD),
        &["--max-sessions-per-ip", "2"],
    );
    let greeting = |s: &mut std::net::TcpStream| -> String {
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 256];
        let mut got = Vec::new();
        while !got.ends_with(b"\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    };
    let mut first = std::net::TcpStream::connect(served.ftp).unwrap();
    assert!(greeting(&mut first).starts_with("220"));
    let mut second = std::net::TcpStream::connect(served.ftp).unwrap();
    assert!(greeting(&mut second).starts_with("220"));
    let mut refused = std::net::TcpStream::connect(served.sftp[0]).unwrap();
    let line = greeting(&mut refused);
    assert!(
        line.starts_with("Too many connections from your address"),
        "{line:?}\n{}",
        served.log_tail()
    );
    // An FTP session leaves; SFTP is admitted (its version line comes), once the server has
    // seen the close.
    drop(first);
    let deadline = Instant::now() + WAIT;
    loop {
        let mut s = std::net::TcpStream::connect(served.sftp[0]).unwrap();
        let line = greeting(&mut s);
        if line.starts_with("SSH-2.0-") {
            break;
        }
        assert!(Instant::now() < deadline, "SFTP never admitted: {line:?}");
        std::thread::yield_now();
    }
    drop(second);
}

#[test]
fn one_quota_holds_the_users_ftps_and_sftp_uploads_together() {
    if !have_tools("sftp_ftps_quota", &["sftp", "sshpass", "curl"]) {
        return;
    }
    let srv = Served::start(
        &["127.0.0.1:0"],
        Some(PASSWORD),
        &["--quota-bytes", "3MiB", "--quota-files", "10"],
    );
    let local = srv.local("local");
    let mib = 1024 * 1024;
    std::fs::write(local.join("a.bin"), payload(2 * mib, 1)).unwrap();
    std::fs::write(local.join("b.bin"), payload(2 * mib, 2)).unwrap();
    std::fs::write(local.join("c.bin"), payload(mib / 2, 3)).unwrap();

    // 2 MiB over SFTP: 1 MiB left for FTPS, which a 2 MiB upload crosses (552).
    srv.sftp_password(srv.sftp[0], "put a.bin\n", &local);
    let url = format!("ftp://{}/b.bin", srv.ftp);
    let out = srv.try_curl(&["-T", "b.bin", &url], &local);
    assert!(
        !out.status.success(),
        "a 2 MiB FTPS upload passed a 1 MiB room"
    );
    assert!(!srv.root.join("b.bin").exists());
    // What FTPS writes within the room counts for SFTP too.
    let url = format!("ftp://{}/c.bin", srv.ftp);
    srv.curl(&["-T", "c.bin", &url], &local);
    let out = srv.try_sftp_password(srv.sftp[0], "put b.bin\n", &local);
    assert!(
        !out.status.success(),
        "a 2 MiB SFTP upload passed a 0.5 MiB room"
    );
    assert!(
        std::fs::metadata(srv.root.join("b.bin")).map_or(0, |m| m.len()) <= (mib / 2) as u64,
        "SFTP wrote past the quota"
    );
    // Removing over SFTP frees room for FTPS.
    srv.sftp_password(srv.sftp[0], "rm a.bin\n-rm b.bin\n", &local);
    let url = format!("ftp://{}/b.bin", srv.ftp);
    srv.curl(&["-T", "b.bin", &url], &local);
    assert_eq!(
        std::fs::read(srv.root.join("b.bin")).unwrap(),
        payload(2 * mib, 2)
    );
}
