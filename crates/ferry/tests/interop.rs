//! Interoperability: the real `ferry serve` binary driven by real clients (curl, Python's
//! ftplib, lftp, rclone, aioftp) over loopback only (127.0.0.1 and ::1).
//!
//! Each test starts its own server on port 0 with a fresh root, so tests run in parallel. Every
//! external command runs under coreutils `timeout`, and every wait here is bounded. A missing
//! client skips its test with a note, unless `FERRY_REQUIRE_INTEROP=1` (as in CI), which turns a
//! missing client into a failure. IPv6 tests (`ipv6` in their names) fail when `[::1]` cannot be
//! bound; `cargo test -- --skip ipv6` leaves them out.
//!
//! Every transferred file is compared by sha256; a failing command's output and the tail of the
//! server's debug log are printed with the failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tempfile::TempDir;

const USER: &str = "tester";
const PASSWORD: &str = "interop-Pass-42";
/// Upper bound for one external command, enforced by `timeout`.
const COMMAND_SECS: &str = "120";
const STARTUP: Duration = Duration::from_secs(30);
const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Harness

/// A running `ferry serve`, killed (by PID, through `Child::kill`) when dropped.
struct Server {
    child: Child,
    v4: SocketAddr,
    v6: Option<SocketAddr>,
    /// The implicit-TLS listener, when started with `--implicit-tls-listen`.
    implicit: Option<SocketAddr>,
    root: PathBuf,
    log: PathBuf,
    /// Holds the root, the server log and the tests' local files.
    dir: TempDir,
}

impl Server {
    /// A server on 127.0.0.1:0, and on [::1]:0 too when `ipv6`, with TLS optional (plain
    /// clients work; TLS tests use `start_with`).
    fn start(ipv6: bool) -> Server {
        Self::start_with(ipv6, &["--tls", "optional"])
    }

    /// Like `start`, with extra `ferry serve` arguments.
    fn start_with(ipv6: bool, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        let log = dir.path().join("server.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.args(["serve", "--allow-root", "--listen", "127.0.0.1:0"]);
        if ipv6 {
            cmd.args(["--listen", "[::1]:0"]);
        }
        cmd.arg("--root")
            .arg(&root)
            .args(["--user", USER, "--log", "debug"])
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(extra)
            .env("FERRY_PASSWORD", PASSWORD)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&log).unwrap());
        let mut child = cmd.spawn().expect("cannot start the ferry binary");

        // Read the banner on a thread so the wait for it is bounded; the thread keeps draining
        // stdout until the server exits.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // After the banner nobody listens; keep draining anyway.
                let _ = tx.send(line);
            }
        });
        let wanted = if ipv6 { 2 } else { 1 };
        let want_implicit = extra.contains(&"--implicit-tls-listen");
        let mut addrs = Vec::new();
        let deadline = std::time::Instant::now() + STARTUP;
        let mut server = Server {
            child,
            v4: "127.0.0.1:0".parse().unwrap(),
            v6: None,
            implicit: None,
            root,
            log,
            dir,
        };
        while addrs.len() < wanted || (want_implicit && server.implicit.is_none()) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("ferry: listening on ftps://") {
                        let rest = rest.split('/').next().unwrap_or_default();
                        server.implicit = Some(rest.parse().unwrap());
                    } else if let Some(rest) = line.strip_prefix("ferry: listening on ftp://") {
                        let addr: SocketAddr = rest
                            .trim_end_matches('/')
                            .parse()
                            .unwrap_or_else(|e| panic!("bad banner line {line:?}: {e}"));
                        addrs.push(addr);
                    }
                }
                Err(e) => panic!(
                    "server did not print {wanted} listening line(s) within {STARTUP:?} ({e}); got {addrs:?}\n{}",
                    server.log_tail()
                ),
            }
        }
        for addr in addrs {
            match addr {
                SocketAddr::V4(_) => server.v4 = addr,
                SocketAddr::V6(_) => server.v6 = Some(addr),
            }
        }
        assert!(server.v4.port() != 0 && server.v4.ip().is_loopback());
        assert_eq!(server.v6.is_some(), ipv6, "expected IPv6 listener");
        server
    }

    /// The server's generated self-signed certificate (for curl --cacert and friends).
    fn cacert(&self) -> PathBuf {
        self.dir.path().join("state").join("cert.pem")
    }

    fn v6(&self) -> SocketAddr {
        self.v6.expect("server started without IPv6")
    }

    /// A fresh local directory (outside the server root) for a test's files.
    fn local(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        fs::create_dir_all(&p).unwrap();
        p
    }

    /// The last lines of the server's debug log, for failure messages.
    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(60);
        format!(
            "--- server log (last {} lines) ---\n{}",
            lines.len() - start,
            lines[start..].join("\n")
        )
    }

    /// Run `program args` under `timeout`; panic with its output and the server log unless it
    /// exits 0.
    fn run<I, S>(&self, program: &str, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "5", COMMAND_SECS, program]).args(args);
        self.run_command(cmd)
    }

    fn run_command(&self, mut cmd: Command) -> Output {
        let shown = format!("{cmd:?}");
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
        if !out.status.success() {
            let why = if out.status.code() == Some(124) {
                " (timed out)"
            } else {
                ""
            };
            panic!(
                "command failed with {}{why}: {shown}\n--- stdout ---\n{}\n--- stderr ---\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                tail(&String::from_utf8_lossy(&out.stderr), 80),
                self.log_tail()
            );
        }
        out
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Whether every tool is on PATH. If not: a note and `false` (skip), or a panic when
/// `FERRY_REQUIRE_INTEROP=1`.
fn have_tools(test: &str, tools: &[&str]) -> bool {
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

fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        fs::metadata(dir.join(program))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Fail `test` unless this machine can bind `[::1]`. The tests that need it have `ipv6` in their
/// names: without IPv6 loopback, run the others with `cargo test -- --skip ipv6`.
fn require_ipv6(test: &str) {
    if let Err(e) = TcpListener::bind("[::1]:0") {
        panic!(
            "{test}: cannot bind [::1] ({e}); without IPv6 loopback, run the others with \
             `cargo test -- --skip ipv6`"
        );
    }
}

/// Deterministic, incompressible-looking bytes (xorshift64*).
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn sha256_file(path: &Path) -> String {
    sha256_hex(&fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display())))
}

fn assert_same_file(expected: &Path, actual: &Path, srv: &Server) {
    let (e, a) = (sha256_file(expected), sha256_file(actual));
    assert!(
        e == a,
        "{} ({} bytes, sha256 {a}) differs from {} ({} bytes, sha256 {e})\n{}",
        actual.display(),
        fs::metadata(actual).map(|m| m.len()).unwrap_or(0),
        expected.display(),
        fs::metadata(expected).map(|m| m.len()).unwrap_or(0),
        srv.log_tail()
    );
}

/// The test payload: a few MiB, an odd size, and an empty file. Returns the file paths.
fn write_payload(dir: &Path) -> Vec<PathBuf> {
    let files = [
        ("big.bin", 3 * MIB + 5, 1),
        ("odd.bin", 123_457, 2),
        ("empty.bin", 0, 3),
    ];
    files
        .iter()
        .map(|(name, len, seed)| {
            let p = dir.join(name);
            fs::write(&p, pseudo_random(*len, *seed)).unwrap();
            p
        })
        .collect()
}

/// Relative path -> sha256 (files) or "dir" (directories), for comparing whole trees.
fn tree_digest(root: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                out.insert(rel, "dir".to_string());
                walk(base, &path, out);
            } else {
                out.insert(rel, sha256_file(&path));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn assert_same_tree(expected: &Path, actual: &Path, srv: &Server) {
    let (e, a) = (tree_digest(expected), tree_digest(actual));
    assert!(
        e == a,
        "tree {} differs from {}\nexpected: {e:#?}\nactual: {a:#?}\n{}",
        actual.display(),
        expected.display(),
        srv.log_tail()
    );
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn url_host(addr: SocketAddr) -> String {
    // SocketAddr's Display already brackets IPv6: "[::1]:2121".
    format!("ftp://{addr}")
}

// ---------------------------------------------------------------------------------------------
// curl

/// Upload, download, list and resume both ways with curl using `mode` for data connections;
/// `verb` is the data-connection command curl must be seen sending (from `-v`).
fn curl_round_trip(test: &str, ipv6: bool, mode: &[&str], verb: &str, forbidden: &[&str]) {
    curl_round_trip_on(test, ipv6, false, mode, verb, forbidden)
}

/// `curl_round_trip`, optionally against a server that requires TLS (curl `--ssl-reqd`).
fn curl_round_trip_on(
    test: &str,
    ipv6: bool,
    tls: bool,
    mode: &[&str],
    verb: &str,
    forbidden: &[&str],
) {
    if ipv6 {
        require_ipv6(test);
    }
    if !have_tools(test, &["curl"]) {
        return;
    }
    let srv = if tls {
        Server::start_with(ipv6, &["--tls", "required"])
    } else {
        Server::start(ipv6)
    };
    let cacert = srv.cacert().to_string_lossy().into_owned();
    let tls_args: Vec<&str> = if tls {
        vec!["--ssl-reqd", "--cacert", &cacert]
    } else {
        vec![]
    };
    let base = url_host(if ipv6 { srv.v6() } else { srv.v4 });
    let up = srv.local("up");
    let down = srv.local("down");
    let payload = write_payload(&up);
    let userpw = format!("{USER}:{PASSWORD}");
    let curl = |extra: &[&str]| -> Output {
        let mut args: Vec<&str> = vec![
            "-sS",
            "-v",
            "--connect-timeout",
            "10",
            "--max-time",
            "90",
            "-u",
            &userpw,
        ];
        args.extend_from_slice(&tls_args);
        args.extend_from_slice(mode);
        args.extend_from_slice(extra);
        let out = srv.run("curl", &args);
        let log = text(&out.stderr);
        assert!(
            log.lines().any(|l| l.starts_with(&format!("> {verb}"))),
            "curl did not send {verb} with {mode:?}:\n{}",
            tail(&log, 60)
        );
        for f in forbidden {
            assert!(
                !log.lines().any(|l| l.starts_with(&format!("> {f}"))),
                "curl sent {f} with {mode:?}:\n{}",
                tail(&log, 60)
            );
        }
        out
    };

    // Uploads (creating the directory), checked on the server's disk.
    for file in &payload {
        let name = file.file_name().unwrap().to_str().unwrap();
        let url = format!("{base}/dir/{name}");
        curl(&["--ftp-create-dirs", "-T", file.to_str().unwrap(), &url]);
        assert_same_file(file, &srv.root.join("dir").join(name), &srv);
    }

    // Downloads.
    for file in &payload {
        let name = file.file_name().unwrap().to_str().unwrap();
        let out = down.join(name);
        curl(&["-o", out.to_str().unwrap(), &format!("{base}/dir/{name}")]);
        assert_same_file(file, &out, &srv);
    }

    // Listings: LIST (a URL ending in '/') and NLST (--list-only).
    let long = text(&curl(&[&format!("{base}/dir/")]).stdout);
    for name in ["big.bin", "odd.bin", "empty.bin"] {
        assert!(
            long.lines().any(|l| l.ends_with(&format!(" {name}"))),
            "LIST lacks {name}:\n{long}"
        );
    }
    let short = text(&curl(&["--list-only", &format!("{base}/dir/")]).stdout);
    let mut names: Vec<&str> = short.lines().map(|l| l.trim_end_matches('\r')).collect();
    names.sort_unstable();
    assert_eq!(names, ["big.bin", "empty.bin", "odd.bin"], "NLST:\n{short}");

    // Resumed download: a partial local file, completed with REST.
    let big = &payload[0];
    let partial = down.join("resumed.bin");
    let head = 1_000_003;
    fs::write(&partial, &fs::read(big).unwrap()[..head]).unwrap();
    let out = curl(&[
        "-C",
        "-",
        "-o",
        partial.to_str().unwrap(),
        &format!("{base}/dir/big.bin"),
    ]);
    assert!(
        text(&out.stderr).contains(&format!("> REST {head}")),
        "curl -C - did not send REST {head}:\n{}",
        tail(&text(&out.stderr), 60)
    );
    assert_same_file(big, &partial, &srv);

    // Resumed upload: a partial remote file, completed with SIZE + APPE.
    let remote_partial = srv.root.join("dir").join("resumed-up.bin");
    fs::write(&remote_partial, &fs::read(big).unwrap()[..777_777]).unwrap();
    let out = curl(&[
        "-C",
        "-",
        "-T",
        big.to_str().unwrap(),
        &format!("{base}/dir/resumed-up.bin"),
    ]);
    assert!(
        text(&out.stderr).contains("> APPE "),
        "curl -C - -T did not send APPE:\n{}",
        tail(&text(&out.stderr), 60)
    );
    assert_same_file(big, &remote_partial, &srv);

    // Nothing left behind by uploads (temporary names are renamed into place).
    let mut on_disk: Vec<String> = fs::read_dir(srv.root.join("dir"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort_unstable();
    assert_eq!(
        on_disk,
        ["big.bin", "empty.bin", "odd.bin", "resumed-up.bin"]
    );
}

#[test]
fn curl_passive_default_epsv() {
    curl_round_trip(
        "curl_passive_default_epsv",
        false,
        &[],
        "EPSV",
        &["PASV", "PORT", "EPRT"],
    );
}

#[test]
fn curl_passive_explicit() {
    curl_round_trip(
        "curl_passive_explicit",
        false,
        &["--ftp-pasv"],
        "EPSV",
        &["PORT", "EPRT"],
    );
}

#[test]
fn curl_passive_pasv_without_epsv() {
    curl_round_trip(
        "curl_passive_pasv_without_epsv",
        false,
        &["--disable-epsv"],
        "PASV",
        &["EPSV", "PORT", "EPRT"],
    );
}

#[test]
fn curl_active_eprt() {
    curl_round_trip(
        "curl_active_eprt",
        false,
        &["--ftp-port", "-"],
        "EPRT",
        &["PASV", "EPSV", "PORT"],
    );
}

#[test]
fn curl_active_port() {
    curl_round_trip(
        "curl_active_port",
        false,
        &["--ftp-port", "-", "--disable-eprt"],
        "PORT",
        &["PASV", "EPSV", "EPRT"],
    );
}

#[test]
fn curl_ipv6_passive_epsv() {
    curl_round_trip(
        "curl_ipv6_passive_epsv",
        true,
        &[],
        "EPSV",
        &["PASV", "PORT", "EPRT"],
    );
}

#[test]
fn curl_ipv6_active_eprt() {
    curl_round_trip(
        "curl_ipv6_active_eprt",
        true,
        &["--ftp-port", "-"],
        "EPRT",
        &["PASV", "EPSV", "PORT"],
    );
}

// ---------------------------------------------------------------------------------------------
// Python ftplib (tests/interop/ftplib_check.py does the talking)

fn ftplib_script(srv: &Server, addr: SocketAddr, mode: &str, local: &str, extra: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/ftplib_check.py");
    let (host, port) = (addr.ip().to_string(), addr.port().to_string());
    let mut args = vec![
        script.to_str().unwrap(),
        &host,
        &port,
        USER,
        PASSWORD,
        mode,
        local,
    ];
    args.extend_from_slice(extra);
    let out = srv.run("python3", &args);
    assert!(
        text(&out.stdout).starts_with("OK"),
        "script output: {}",
        text(&out.stdout)
    );
}

/// Uploads, SIZE, NLST, MLSD, downloads, rename, delete, MKD/RMD with ftplib in `mode`.
fn ftplib_files(test: &str, ipv6: bool, mode: &str) {
    if ipv6 {
        require_ipv6(test);
    }
    if !have_tools(test, &["python3"]) {
        return;
    }
    let srv = Server::start(ipv6);
    let local = srv.local("py-local");
    let payload = write_payload(&local);
    ftplib_script(
        &srv,
        if ipv6 { srv.v6() } else { srv.v4 },
        mode,
        local.to_str().unwrap(),
        &[],
    );

    // The script leaves /py holding big.bin only (the empty file deleted, odd.bin moved and
    // deleted); nothing else, such as a temporary upload name, may remain.
    let left: Vec<String> = fs::read_dir(srv.root.join("py"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["big.bin"], "left in /py");
    assert_same_file(&payload[0], &srv.root.join("py/big.bin"), &srv);
}

/// `ftplib.FTP.abort()` (ABOR as TCP urgent data) during a large download in `mode`; then NOOP
/// and a full download must work on the same control connection.
fn ftplib_abort(test: &str, mode: &str) {
    if !have_tools(test, &["python3"]) {
        return;
    }
    let srv = Server::start(false);
    // Large enough that the download cannot sit whole in loopback socket buffers before ABOR.
    let block = pseudo_random(MIB, 7);
    let data: Vec<u8> = block.iter().copied().cycle().take(32 * MIB).collect();
    fs::write(srv.root.join("abort.bin"), &data).unwrap();
    ftplib_script(&srv, srv.v4, mode, "-", &["/abort.bin", &sha256_hex(&data)]);
    assert_eq!(
        sha256_file(&srv.root.join("abort.bin")),
        sha256_hex(&data),
        "abort.bin changed"
    );
}

#[test]
fn ftplib_pasv() {
    ftplib_files("ftplib_pasv", false, "pasv");
}

#[test]
fn ftplib_epsv_ipv4() {
    ftplib_files("ftplib_epsv_ipv4", false, "epsv");
}

#[test]
fn ftplib_port() {
    ftplib_files("ftplib_port", false, "port");
}

#[test]
fn ftplib_eprt_ipv4() {
    ftplib_files("ftplib_eprt_ipv4", false, "eprt");
}

#[test]
fn ftplib_ipv6_epsv() {
    ftplib_files("ftplib_ipv6_epsv", true, "pasv");
}

#[test]
fn ftplib_ipv6_eprt() {
    ftplib_files("ftplib_ipv6_eprt", true, "port");
}

#[test]
fn ftplib_abort_passive_download() {
    ftplib_abort("ftplib_abort_passive_download", "pasv");
}

#[test]
fn ftplib_abort_active_download() {
    ftplib_abort("ftplib_abort_active_download", "port");
}

// ---------------------------------------------------------------------------------------------
// lftp

/// A small tree with nested and empty directories, spaces and UTF-8 in names, an empty file.
fn write_tree(dir: &Path) {
    let files: [(&str, usize); 6] = [
        ("a.txt", 6),
        ("empty.bin", 0),
        ("nested/n.bin", 100_003),
        ("nested/deeper/deepest/big.bin", 2 * MIB + 1),
        ("with space/file with spaces.txt", 10_000),
        ("ünïcødé dir/名前 файл.bin", 50_000),
    ];
    for (i, (rel, len)) in files.iter().enumerate() {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, pseudo_random(*len, 100 + i as u64)).unwrap();
    }
    fs::create_dir_all(dir.join("empty dir")).unwrap();
}

/// Run lftp non-interactively against `addr` with `commands` after login.
fn lftp(srv: &Server, addr: SocketAddr, settings: &str, commands: &str) -> Output {
    let script = format!(
        "set cmd:fail-exit yes; set net:max-retries 1; set net:timeout 10; \
         set net:reconnect-interval-base 1; set ftp:ssl-allow no; \
         set file:charset UTF-8; set ftp:charset UTF-8; {settings} \
         open -u {USER},{PASSWORD} {}; {commands}",
        url_host(addr)
    );
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", COMMAND_SECS, "lftp", "-d", "-c", &script])
        // lftp converts names through the locale's charset; make it UTF-8 whatever CI sets.
        .env("LC_ALL", "C.UTF-8");
    srv.run_command(cmd)
}

#[test]
fn lftp_mirror_upload() {
    if !have_tools("lftp_mirror_upload", &["lftp"]) {
        return;
    }
    let srv = Server::start(false);
    let local = srv.local("tree");
    write_tree(&local);
    lftp(
        &srv,
        srv.v4,
        "",
        &format!("mirror -R --verbose \"{}\" up", local.display()),
    );
    assert_same_tree(&local, &srv.root.join("up"), &srv);
}

#[test]
fn lftp_mirror_download() {
    if !have_tools("lftp_mirror_download", &["lftp"]) {
        return;
    }
    let srv = Server::start(false);
    let remote = srv.root.join("down");
    write_tree(&remote);
    let local = srv.local("mirrored");
    lftp(
        &srv,
        srv.v4,
        "",
        &format!("mirror --verbose down \"{}\"", local.display()),
    );
    assert_same_tree(&remote, &local, &srv);
}

#[test]
fn lftp_active_get_put() {
    if !have_tools("lftp_active_get_put", &["lftp"]) {
        return;
    }
    let srv = Server::start(false);
    let local = srv.local("lftp-active");
    let payload = write_payload(&local);
    fs::copy(&payload[0], srv.root.join("remote.bin")).unwrap();
    let got = local.join("got.bin");
    let out = lftp(
        &srv,
        srv.v4,
        "set ftp:passive-mode off;",
        &format!(
            "get /remote.bin -o \"{}\"; put \"{}\" -o /put.bin; put \"{}\" -o /put-empty.bin",
            got.display(),
            payload[1].display(),
            payload[2].display()
        ),
    );
    let log = text(&out.stderr);
    assert!(
        log.contains("---> PORT "),
        "lftp did not use PORT:\n{}",
        tail(&log, 60)
    );
    assert!(
        !log.contains("---> PASV") && !log.contains("---> EPSV"),
        "lftp went passive:\n{}",
        tail(&log, 60)
    );
    assert_same_file(&payload[0], &got, &srv);
    assert_same_file(&payload[1], &srv.root.join("put.bin"), &srv);
    assert_same_file(&payload[2], &srv.root.join("put-empty.bin"), &srv);
}

/// lftp's active mode over IPv6 sends `EPRT |2|::|port|` (the unspecified address, meaning
/// itself): the transfers must run in active mode, with no fallback to passive.
#[test]
fn lftp_ipv6_active_get_put() {
    if !have_tools("lftp_ipv6_active_get_put", &["lftp"]) {
        return;
    }
    require_ipv6("lftp_ipv6_active_get_put");
    let srv = Server::start(true);
    let local = srv.local("lftp-active6");
    let payload = write_payload(&local);
    fs::copy(&payload[0], srv.root.join("remote.bin")).unwrap();
    let got = local.join("got.bin");
    let out = lftp(
        &srv,
        srv.v6(),
        "set ftp:passive-mode off;",
        &format!(
            "get /remote.bin -o \"{}\"; put \"{}\" -o /put.bin; cls -l /",
            got.display(),
            payload[1].display()
        ),
    );
    let log = text(&out.stderr);
    assert!(
        log.contains("---> EPRT |2|"),
        "lftp did not use EPRT:\n{}",
        tail(&log, 60)
    );
    assert!(
        !log.contains("<--- 5") && !log.contains("---> PASV") && !log.contains("---> EPSV"),
        "an active command was refused or lftp went passive:\n{}",
        tail(&log, 60)
    );
    assert!(
        text(&out.stdout).contains("put.bin"),
        "{}",
        text(&out.stdout)
    );
    assert_same_file(&payload[0], &got, &srv);
    assert_same_file(&payload[1], &srv.root.join("put.bin"), &srv);
}

#[test]
fn lftp_ipv6_mirror_round_trip() {
    require_ipv6("lftp_ipv6_mirror_round_trip");
    if !have_tools("lftp_ipv6_mirror_round_trip", &["lftp"]) {
        return;
    }
    let srv = Server::start(true);
    let local = srv.local("tree6");
    write_tree(&local);
    let back = srv.local("back6");
    lftp(
        &srv,
        srv.v6(),
        "",
        &format!(
            "mirror -R --no-perms \"{}\" up6; mirror up6 \"{}\"",
            local.display(),
            back.display()
        ),
    );
    assert_same_tree(&local, &srv.root.join("up6"), &srv);
    assert_same_tree(&local, &back, &srv);
}

// ---------------------------------------------------------------------------------------------
// FTP over TLS

#[test]
fn curl_tls_explicit_epsv() {
    curl_round_trip_on(
        "curl_tls_explicit_epsv",
        false,
        true,
        &[],
        "EPSV",
        &["PASV", "PORT", "EPRT"],
    );
}

#[test]
fn curl_tls_explicit_pasv() {
    curl_round_trip_on(
        "curl_tls_explicit_pasv",
        false,
        true,
        &["--disable-epsv"],
        "PASV",
        &["EPSV"],
    );
}

// Not covered with curl: curl 7.88 (Debian 12) sends active-mode FTPS data without a TLS
// handshake, whatever the server. Active mode with TLS is covered by lftp and ftplib below.

#[test]
fn curl_tls_ipv6() {
    curl_round_trip_on("curl_tls_ipv6", true, true, &[], "EPSV", &["PASV"]);
}

/// curl starts the TLS handshake on a passive data connection as soon as it connects, then
/// sends `TYPE I` and `SIZE` before `RETR`, and reads no reply until its handshake moves on
/// (or its own ~200 ms timer fires): a server that answers the handshake only after `RETR`
/// costs every small download about 200 ms. The handshake must be answered at once: curl's
/// log shows the data connection's Server hello before `> RETR`. Up to three downloads, as
/// on a loaded machine the answer can lose the race against two control round trips; a
/// server that waits for the command can never show it.
#[test]
fn curl_tls_download_handshake_is_answered_before_retr() {
    if !have_tools(
        "curl_tls_download_handshake_is_answered_before_retr",
        &["curl"],
    ) {
        return;
    }
    let srv = Server::start_with(false, &["--tls", "required"]);
    fs::write(srv.root.join("small.bin"), pseudo_random(5_000, 88)).unwrap();
    let cacert = srv.cacert();
    let userpw = format!("{USER}:{PASSWORD}");
    let url = format!("{}/small.bin", url_host(srv.v4));
    let local = srv.local("curl-small");
    let mut logs = Vec::new();
    for attempt in 0..3 {
        let got = local.join(format!("got{attempt}.bin"));
        let out = srv.run(
            "curl",
            [
                "-sS",
                "-v",
                "--max-time",
                "60",
                "--ssl-reqd",
                "--cacert",
                cacert.to_str().unwrap(),
                "-u",
                &userpw,
                "-o",
                got.to_str().unwrap(),
                &url,
            ],
        );
        assert_same_file(&srv.root.join("small.bin"), &got, &srv);
        let log = text(&out.stderr);
        let retr = log.find("> RETR").expect("curl sent no RETR");
        // The second Server hello is the data connection's.
        let data_hello = log.match_indices("Server hello").nth(1).map(|(i, _)| i);
        if data_hello.is_some_and(|hello| hello < retr) {
            return;
        }
        logs.push(log);
    }
    panic!(
        "the data connection's handshake was answered only after RETR, three times:\n{}\n{}",
        tail(&logs.join("\n----\n"), 120),
        srv.log_tail()
    );
}

#[test]
fn curl_tls_implicit_ftps_url() {
    if !have_tools("curl_tls_implicit_ftps_url", &["curl"]) {
        return;
    }
    let srv = Server::start_with(
        false,
        &["--tls", "required", "--implicit-tls-listen", "127.0.0.1:0"],
    );
    let addr = srv.implicit.expect("no implicit listener banner");
    let local = srv.local("imp");
    let body = pseudo_random(2 * MIB + 5, 77);
    let src = local.join("src.bin");
    fs::write(&src, &body).unwrap();
    let cacert = srv.cacert();
    let userpw = format!("{USER}:{PASSWORD}");
    let url = format!("ftps://{addr}/implicit.bin");
    srv.run(
        "curl",
        [
            "-sS",
            "--max-time",
            "60",
            "--cacert",
            cacert.to_str().unwrap(),
            "-u",
            &userpw,
            "-T",
            src.to_str().unwrap(),
            &url,
        ],
    );
    assert_same_file(&src, &srv.root.join("implicit.bin"), &srv);
    let back = local.join("back.bin");
    srv.run(
        "curl",
        [
            "-sS",
            "--max-time",
            "60",
            "--cacert",
            cacert.to_str().unwrap(),
            "-u",
            &userpw,
            "-o",
            back.to_str().unwrap(),
            &url,
        ],
    );
    assert_same_file(&src, &back, &srv);
}

#[test]
fn curl_plain_login_is_refused_when_tls_is_required() {
    if !have_tools(
        "curl_plain_login_is_refused_when_tls_is_required",
        &["curl"],
    ) {
        return;
    }
    let srv = Server::start_with(false, &["--tls", "required"]);
    let out = Command::new("timeout")
        .args([
            "-k",
            "5",
            "30",
            "curl",
            "-sS",
            "-v",
            "--max-time",
            "20",
            "-u",
        ])
        .arg(format!("{USER}:{PASSWORD}"))
        .arg(format!("{}/", url_host(srv.v4)))
        .output()
        .unwrap();
    assert!(!out.status.success(), "plain login must fail");
    let log = text(&out.stderr);
    assert!(
        log.contains("< 530") && log.contains("AUTH TLS"),
        "{}",
        tail(&log, 30)
    );
    assert!(
        !log.contains("> PASS"),
        "the password must not be sent: {}",
        tail(&log, 30)
    );
}

#[test]
fn lftp_tls_mirror_round_trip() {
    if !have_tools("lftp_tls_mirror_round_trip", &["lftp"]) {
        return;
    }
    let srv = Server::start_with(false, &["--tls", "required"]);
    let settings = lftp_tls_settings(&srv, "");
    let local = lftp_mirror_round_trip(&srv, &settings);
    // Active mode (PORT) with TLS on the data connections.
    let active = srv.local("active");
    lftp(
        &srv,
        srv.v4,
        &format!("{settings} set ftp:passive-mode off;"),
        &format!("mirror up \"{}\"", active.display()),
    );
    assert_same_tree(&local, &active, &srv);
}

/// lftp limited to TLS 1.2 (GnuTLS priority string): its data connections resume the control
/// connection's session by TLS 1.2 ticket or session ID, which required reuse accepts.
#[test]
fn lftp_tls12_round_trip() {
    if !have_tools("lftp_tls12_round_trip", &["lftp"]) {
        return;
    }
    let srv = Server::start_with(false, &["--tls", "required"]);
    let settings = lftp_tls_settings(&srv, "set ssl:priority NORMAL:-VERS-TLS1.3;");
    lftp_mirror_round_trip(&srv, &settings);
}

/// lftp settings for FTPS on control and data connections, trusting the server's certificate.
fn lftp_tls_settings(srv: &Server, extra: &str) -> String {
    format!(
        "set ftp:ssl-allow yes; set ftp:ssl-force true; set ftp:ssl-protect-data true; \
         set ssl:ca-file \"{}\"; set ssl:check-hostname no; {extra}",
        srv.cacert().display()
    )
}

/// Mirror a fresh local tree up to `up/` and back down with lftp, checking both copies; the
/// local tree is returned.
fn lftp_mirror_round_trip(srv: &Server, settings: &str) -> PathBuf {
    let local = srv.local("tree");
    write_tree(&local);
    lftp(
        srv,
        srv.v4,
        settings,
        &format!("mirror -R --no-perms \"{}\" up", local.display()),
    );
    let back = srv.local("back");
    lftp(
        srv,
        srv.v4,
        settings,
        &format!("mirror up \"{}\"", back.display()),
    );
    assert_same_tree(&local, &srv.root.join("up"), srv);
    assert_same_tree(&local, &back, srv);
    local
}

/// Python's ftplib cannot resume TLS sessions on data connections: refused clearly under the
/// default, accepted when `tls_require_session_reuse = false`.
fn ftplib_tls(relax: bool) {
    // Lives until the end of the test; the server reads it at start.
    let cfg = tempfile::NamedTempFile::new().unwrap();
    let srv = if relax {
        fs::write(cfg.path(), "[ftp]\ntls_require_session_reuse = false\n").unwrap();
        Server::start_with(
            false,
            &[
                "--tls",
                "required",
                "--config",
                cfg.path().to_str().unwrap(),
            ],
        )
    } else {
        Server::start_with(false, &["--tls", "required"])
    };
    let script = r#"
import ftplib, ssl, sys
host, port, user, pw, cafile, expect_ok = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6] == "1"
ctx = ssl.create_default_context(cafile=cafile)
ftp = ftplib.FTP_TLS(context=ctx, timeout=20)
ftp.connect(host, port)
ftp.login(user, pw)
ftp.prot_p()
data = bytes(range(256)) * 4000
import io
try:
    ftp.storbinary("STOR t.bin", io.BytesIO(data))
    out = io.BytesIO()
    ftp.retrbinary("RETR t.bin", out.write)
    assert out.getvalue() == data
    print("transfer ok")
    ok = True
except ftplib.error_perm as e:
    print("refused:", e)
    ok = False
    assert "reuse" in str(e), e
except OSError as e:
    # The data connection ended before ftplib read the reply: the refusal is still waiting
    # on the control connection.
    print("data connection closed:", e)
    ok = False
    try:
        ftp.getresp()
        raise SystemExit("no refusal reply")
    except ftplib.error_perm as e2:
        print("refused:", e2)
        assert str(e2).startswith("522") and "reuse" in str(e2), e2
if ok:
    ftp.set_pasv(False)
    out = io.BytesIO()
    ftp.retrbinary("RETR t.bin", out.write)
    assert out.getvalue() == data
    ftp.storbinary("STOR t2.bin", io.BytesIO(data))
    print("active transfers ok")
print(ftp.voidcmd("NOOP"))
ftp.quit()
sys.exit(0 if ok == expect_ok else 1)
"#;
    srv.run(
        "python3",
        [
            "-c",
            script,
            "127.0.0.1",
            &srv.v4.port().to_string(),
            USER,
            PASSWORD,
            srv.cacert().to_str().unwrap(),
            if relax { "1" } else { "0" },
        ],
    );
}

#[test]
fn ftplib_tls_without_session_reuse_is_refused_clearly() {
    if have_tools(
        "ftplib_tls_without_session_reuse_is_refused_clearly",
        &["python3"],
    ) {
        ftplib_tls(false);
    }
}

#[test]
fn ftplib_tls_works_when_reuse_is_relaxed() {
    if have_tools("ftplib_tls_works_when_reuse_is_relaxed", &["python3"]) {
        ftplib_tls(true);
    }
}

// ---------------------------------------------------------------------------------------------
// rclone

/// Dozens of files in nested directories (names with spaces too), for rclone's parallel
/// transfers and checkers.
fn write_wide_tree(dir: &Path) {
    let dirs = ["", "a", "a/b", "a/b/c", "d", "e/f g", "e/h"];
    for (d, sub) in dirs.iter().enumerate() {
        for i in 0..8 {
            let p = dir.join(sub).join(format!("file {i}.bin"));
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            let len = (i * 37_003 + d * 1_009) % 150_000;
            fs::write(&p, pseudo_random(len, (d * 8 + i) as u64 + 500)).unwrap();
        }
    }
}

/// Run rclone against the server as remote `ferry:` (FTPS, explicit TLS), with its defaults
/// for parallelism (4 transfers, 8 checkers) and no retries: an error fails the command
/// instead of being retried away. Panics unless it exits 0 with no `ERROR` line.
fn rclone(srv: &Server, args: &[&str]) -> Output {
    let obscured = srv.run("rclone", ["obscure", PASSWORD]);
    let config = srv.dir.path().join("rclone.conf");
    fs::write(&config, "").unwrap();
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", COMMAND_SECS, "rclone"])
        .args(args)
        .args(["--retries", "1", "--low-level-retries", "1"])
        .arg("--config")
        .arg(&config)
        .env("RCLONE_CONFIG_FERRY_TYPE", "ftp")
        .env("RCLONE_CONFIG_FERRY_HOST", srv.v4.ip().to_string())
        .env("RCLONE_CONFIG_FERRY_PORT", srv.v4.port().to_string())
        .env("RCLONE_CONFIG_FERRY_USER", USER)
        .env("RCLONE_CONFIG_FERRY_PASS", text(&obscured.stdout).trim())
        .env("RCLONE_CONFIG_FERRY_EXPLICIT_TLS", "true")
        .env("RCLONE_CONFIG_FERRY_NO_CHECK_CERTIFICATE", "true");
    let out = srv.run_command(cmd);
    let log = text(&out.stderr);
    assert!(
        !log.contains("ERROR"),
        "rclone {args:?} reported errors:\n{}\n{}",
        tail(&log, 60),
        srv.log_tail()
    );
    out
}

/// rclone shares one TLS session cache among its parallel control connections, so its data
/// connections resume sessions that other control connections received; the server's
/// required session reuse accepts those of the same user from the same address.
#[test]
fn rclone_ftps_copy_sync_and_check_both_ways() {
    if !have_tools("rclone_ftps_copy_sync_and_check_both_ways", &["rclone"]) {
        return;
    }
    let srv = Server::start_with(false, &["--tls", "required"]);
    let local = srv.local("wide");
    write_wide_tree(&local);
    let local_arg = local.to_str().unwrap();
    rclone(&srv, &["copy", local_arg, "ferry:up"]);
    assert_same_tree(&local, &srv.root.join("up"), &srv);
    rclone(&srv, &["check", "--download", local_arg, "ferry:up"]);
    let back = srv.local("back");
    let back_arg = back.to_str().unwrap();
    rclone(&srv, &["copy", "ferry:up", back_arg]);
    assert_same_tree(&local, &back, &srv);

    // Changes on each side, carried over by sync.
    fs::write(local.join("a/b/file 3.bin"), pseudo_random(99_999, 900)).unwrap();
    fs::remove_file(local.join("d/file 5.bin")).unwrap();
    fs::create_dir_all(local.join("new/deeper")).unwrap();
    fs::write(local.join("new/deeper/n.bin"), pseudo_random(12_345, 901)).unwrap();
    rclone(&srv, &["sync", local_arg, "ferry:up"]);
    assert_same_tree(&local, &srv.root.join("up"), &srv);
    fs::write(
        srv.root.join("up/e/h/file 1.bin"),
        pseudo_random(54_321, 902),
    )
    .unwrap();
    fs::remove_file(srv.root.join("up/file 0.bin")).unwrap();
    rclone(&srv, &["sync", "ferry:up", back_arg]);
    assert_same_tree(&srv.root.join("up"), &back, &srv);
    rclone(&srv, &["check", "--download", "ferry:up", back_arg]);
}

// ---------------------------------------------------------------------------------------------
// aioftp

/// Whether `python3` can import `module`. If not: a note and `false` (skip), or a panic when
/// `FERRY_REQUIRE_INTEROP=1`.
fn have_python_module(test: &str, module: &str) -> bool {
    if !have_tools(test, &["python3"]) {
        return false;
    }
    let imported = Command::new("timeout")
        .args(["30", "python3", "-c", &format!("import {module}")])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    if imported {
        return true;
    }
    if std::env::var("FERRY_REQUIRE_INTEROP").as_deref() == Ok("1") {
        panic!("{test}: python3 cannot import {module} and FERRY_REQUIRE_INTEROP=1");
    }
    eprintln!(
        "note: skipping {test}: python3 cannot import {module} (pip install {module}; FERRY_REQUIRE_INTEROP=1 makes this a failure)"
    );
    false
}

/// aioftp starts the TLS handshake on a data connection as soon as it connects, and sends the
/// transfer command only once the handshake is done; it resumes the control connection's
/// session. Uploads, a listing and downloads over explicit FTPS, with session reuse required.
#[test]
fn aioftp_ftps_transfers() {
    if !have_python_module("aioftp_ftps_transfers", "aioftp") {
        return;
    }
    let srv = Server::start_with(false, &["--tls", "required"]);
    let script = r#"
import asyncio, hashlib, ssl, sys, aioftp

async def main(host, port, user, pw, cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    # Short timeouts: a data connection whose handshake is not answered fails the test.
    client = aioftp.Client(socket_timeout=15, connection_timeout=15, path_timeout=15)
    await client.connect(host, port)
    await client.upgrade_to_tls(ctx)
    await client.login(user, pw)
    await client.make_directory("aio/sub")
    files = {}
    for i in range(12):
        data = hashlib.sha256(str(i).encode()).digest() * (1000 * (i + 1))
        name = f"aio/sub/f{i}.bin"
        async with client.upload_stream(name) as stream:
            await stream.write(data)
        files[name] = data
    listed = sorted(str(p) for p, info in await client.list("aio/sub"))
    assert listed == sorted(files), listed
    for name, data in files.items():
        got = bytearray()
        async with client.download_stream(name) as stream:
            async for block in stream.iter_by_block():
                got += block
        assert bytes(got) == data, name
    await client.quit()
    print("aioftp ok:", len(files), "files up and down")

asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]))
"#;
    let out = srv.run(
        "python3",
        [
            "-c",
            script,
            "127.0.0.1",
            &srv.v4.port().to_string(),
            USER,
            PASSWORD,
            srv.cacert().to_str().unwrap(),
        ],
    );
    assert!(
        text(&out.stdout).contains("aioftp ok"),
        "{}",
        text(&out.stdout)
    );
    for i in 0..12u64 {
        let on_disk = fs::read(srv.root.join(format!("aio/sub/f{i}.bin"))).unwrap();
        assert_eq!(on_disk.len(), 32 * 1000 * (i as usize + 1), "f{i}.bin");
    }
}
