//! The `ferry` binary's server-side commands: `serve` defaults and flags, graceful shutdown,
//! `check-config` and `hash-password`.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_ferry");

/// A `ferry serve` child, killed on drop.
struct Serve {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// What it logs (standard error), line by line, unless the log went to a file.
    log: Option<mpsc::Receiver<String>>,
}

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

impl Serve {
    fn start(args: &[&str], dir: &std::path::Path, password: Option<&str>) -> Serve {
        Self::start_logging(args, dir, password, Stdio::piped())
    }

    /// Like `start`, with the server's log going to `stderr` (read through `logged` when piped).
    fn start_logging(
        args: &[&str],
        dir: &std::path::Path,
        password: Option<&str>,
        stderr: Stdio,
    ) -> Serve {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--allow-root"])
            .args(args)
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(stderr);
        match password {
            Some(p) => cmd.env("FERRY_PASSWORD", p),
            None => cmd.env_remove("FERRY_PASSWORD"),
        };
        let mut child = cmd.spawn().unwrap();
        let lines = lines_of(child.stdout.take().unwrap());
        let log = child.stderr.take().map(lines_of);
        Serve { child, lines, log }
    }

    /// The first line logged from now on that contains `needle`.
    fn logged(&self, needle: &str) -> String {
        self.logged_until(needle).pop().unwrap()
    }

    /// The lines logged from now on, up to and including the first that contains `needle`.
    fn logged_until(&self, needle: &str) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let log = self.log.as_ref().expect("the log went to a file");
            match log.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    lines.push(line);
                    if found {
                        return lines;
                    }
                }
                Err(_) => panic!("ferry serve logged no line with {needle:?} in time: {lines:#?}"),
            }
        }
    }

    fn line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(30))
            .expect("ferry serve printed nothing in time")
    }

    fn listening(&self) -> std::net::SocketAddr {
        let line = self.line();
        let addr = line
            .strip_prefix("ferry: listening on ftp://")
            .unwrap_or_else(|| panic!("{line}"));
        addr.trim_end_matches('/').parse().unwrap()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Ctrl(BufReader<TcpStream>);

impl Ctrl {
    fn connect(addr: std::net::SocketAddr) -> Ctrl {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut c = Ctrl(BufReader::new(s));
        assert!(c.reply().starts_with("220"));
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
}

#[test]
fn serve_with_no_arguments_creates_a_folder_and_prints_credentials() {
    for port in [2121, 2222] {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "this test needs 127.0.0.1:{port}, the default ports, free"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&[], dir.path(), None);
    let addr = serve.listening();
    assert_eq!(addr, "127.0.0.1:2121".parse().unwrap());
    // SFTP beside FTPS, with the host key's fingerprint in OpenSSH's form.
    assert_eq!(serve.line(), "ferry: listening on sftp://127.0.0.1:2222/");
    for kind in ["ED25519", "RSA"] {
        let host_key = serve.line();
        assert!(
            host_key.starts_with("ferry: SFTP host key SHA256:")
                && host_key.ends_with(&format!(" ({kind})")),
            "{host_key}"
        );
    }
    for file in ["ssh_host_ed25519_key", "ssh_host_rsa_key"] {
        assert!(
            dir.path().join("ferry-state").join(file).is_file(),
            "{file}"
        );
    }
    let tls = serve.line();
    assert!(
        tls.starts_with("ferry: TLS required with certificate") && tls.contains("SHA-256"),
        "{tls}"
    );
    let creds = serve.line();
    let password = creds
        .split('\'')
        .nth(3)
        .unwrap_or_else(|| panic!("{creds}"))
        .to_string();
    assert!(creds.contains("user 'ferry'"), "{creds}");
    assert!(password.len() >= 16, "weak generated password: {password}");
    let hint = serve.line();
    assert!(hint.contains("--ssl-reqd"), "{hint}");
    assert_eq!(serve.line(), "ferry: try: sftp -P 2222 ferry@127.0.0.1");
    assert!(dir.path().join("ferry-data").is_dir());
    assert!(dir.path().join("ferry-state/cert.pem").is_file());
    let key = dir.path().join("ferry-state/key.pem");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o077,
        0,
        "key readable by others"
    );
    // Strict by default: a clear-text login is refused with the reason.
    let mut c = Ctrl::connect(addr);
    let r = c.cmd("USER ferry");
    assert!(r.starts_with("530") && r.contains("AUTH TLS"), "{r}");
    assert!(c.cmd("AUTH TLS").starts_with("234"));
}

#[test]
fn gen_cert_writes_a_usable_pair() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "gen-cert",
            "--cert",
            "c.pem",
            "--key",
            "k.pem",
            "--name",
            "ftp.example.test",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("SHA-256 fingerprint: "));
    // The pair serves: start with it and see its fingerprint in the banner.
    let serve = Serve::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--user",
            "u",
            "--cert",
            "c.pem",
            "--key",
            "k.pem",
        ],
        dir.path(),
        Some("pw"),
    );
    serve.listening();
    let tls = serve.line();
    assert!(tls.contains("c.pem"), "{tls}");
    assert!(
        !dir.path().join("ferry-state").exists(),
        "no self-signed certificate when one is given"
    );
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Serve::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--user",
            "bob",
            "--root",
            "files",
            "--tls",
            "off",
        ],
        dir.path(),
        Some("pw-for-bob"),
    );
    let addr = serve.listening();
    let mut c = Ctrl::connect(addr);
    assert!(c.cmd("USER bob").starts_with("331"));
    assert!(c.cmd("PASS pw-for-bob").starts_with("230"));
    let status = Command::new("kill")
        .args(["-TERM", &serve.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        c.reply().starts_with("421"),
        "sessions are told before the server stops"
    );
    let mut rest = Vec::new();
    let _ = c.0.read_to_end(&mut rest);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = serve.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A client whose command fails after it opened its data connection (here `RETR` of a missing
/// file) leaves that connection on the passive port; dropping it later is routine, not a
/// warning in the default log.
#[test]
fn failed_commands_leave_no_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let serve = Serve::start_logging(
        &[
            "--listen",
            "127.0.0.1:0",
            "--user",
            "bob",
            "--root",
            "files",
            "--tls",
            "off",
        ],
        dir.path(),
        Some("pw-for-bob"),
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    let addr = serve.listening();
    let mut c = Ctrl::connect(addr);
    assert!(c.cmd("USER bob").starts_with("331"));
    assert!(c.cmd("PASS pw-for-bob").starts_with("230"));
    let mut data = Vec::new();
    for _ in 0..5 {
        let r = c.cmd("EPSV");
        let port: u16 = r
            .split("|||")
            .nth(1)
            .and_then(|p| p.split('|').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{r}"));
        data.push(
            TcpStream::connect_timeout(&(addr.ip(), port).into(), Duration::from_secs(10)).unwrap(),
        );
        let r = c.cmd("RETR missing.bin");
        assert!(r.starts_with("550"), "{r}");
    }
    // The log is written before the reply to the EPSV that dropped the last connection.
    assert!(c.cmd("EPSV").starts_with("229"));
    assert!(c.cmd("QUIT").starts_with("221"));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.lines().any(|l| l.contains("WARN")),
        "warnings in the default log:\n{text}"
    );
}

/// `kill -9` during an upload over an existing file keeps the old file and leaves the upload's
/// temporary file; the restarted server removes it (and no command could reach it meanwhile).
#[test]
fn a_killed_upload_leaves_nothing_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    std::fs::write(files.join("big.bin"), b"old content").unwrap();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--user",
        "bob",
        "--root",
        "files",
        "--tls",
        "off",
    ];
    let temps = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&files)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".ferry-upload."))
            .collect()
    };
    let login = |addr| {
        let mut c = Ctrl::connect(addr);
        assert!(c.cmd("USER bob").starts_with("331"));
        assert!(c.cmd("PASS pw-for-bob").starts_with("230"));
        c
    };

    let mut serve = Serve::start(&args, dir.path(), Some("pw-for-bob"));
    let addr = serve.listening();
    let mut c = login(addr);
    assert!(c.cmd("TYPE I").starts_with("200"));
    let r = c.cmd("EPSV");
    let port: u16 = r
        .split("|||")
        .nth(1)
        .and_then(|p| p.split('|').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{r}"));
    let mut data =
        TcpStream::connect_timeout(&(addr.ip(), port).into(), Duration::from_secs(10)).unwrap();
    assert!(c.cmd("STOR big.bin").starts_with("150"));
    let chunk = vec![0x5a_u8; 1 << 20];
    let mut written = false;
    for _ in 0..64 {
        data.write_all(&chunk).unwrap();
        if temps()
            .iter()
            .any(|t| std::fs::metadata(t).is_ok_and(|m| m.len() > 0))
        {
            written = true;
            break;
        }
    }
    assert!(written, "the upload never reached its temporary file");
    serve.child.kill().unwrap();
    serve.child.wait().unwrap();
    drop((data, c, serve));
    assert_eq!(temps().len(), 1, "the killed upload's temporary file");
    assert_eq!(
        std::fs::read(files.join("big.bin")).unwrap(),
        b"old content"
    );

    let serve = Serve::start(&args, dir.path(), Some("pw-for-bob"));
    let mut c = login(serve.listening());
    let left = temps();
    let name = left[0].file_name().unwrap().to_string_lossy().into_owned();
    // Removed by the sweep of the root, or, if that came within a moment of the kill, by the
    // first listing that sees it; unreachable either way.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !temps().is_empty() {
        assert!(c.cmd(&format!("SIZE {name}")).starts_with("550"));
        let mut status = c.cmd("STAT /");
        while !status.starts_with("213 ") {
            assert!(!status.contains(".ferry-upload."), "{status}");
            status = c.reply();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the killed upload's temporary file is still there: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        std::fs::read(files.join("big.bin")).unwrap(),
        b"old content"
    );
}

#[test]
fn user_flag_requires_the_password_variable() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--allow-root",
            "--listen",
            "127.0.0.1:0",
            "--user",
            "bob",
        ])
        .env_remove("FERRY_PASSWORD")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("FERRY_PASSWORD"));
}

#[test]
fn check_config_reports_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ferry.toml");
    std::fs::write(
        &file,
        "[ftp]\nlisten = [\"127.0.0.1:2121\"]\n[limits]\nidle_timeout = \"soon\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 4"), "{err}");
    // A file of the old, flat layout: the line, and where the key lives now.
    std::fs::write(&file, "# old\npassive_ports = \"30000-30099\"\n").unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2") && err.contains("[ftp]"), "{err}");

    let hash = Command::new(BIN)
        .arg("hash-password")
        .env("FERRY_PASSWORD", "pw")
        .output()
        .unwrap();
    assert!(hash.status.success());
    let hash = String::from_utf8(hash.stdout).unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    std::fs::write(
        &file,
        format!(
            "[[users]]\nname = \"a\"\npassword_hash = \"{}\"\nhome = \"{}\"\n",
            hash.trim(),
            dir.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    std::fs::write(
        &file,
        "[[users]]\nname = \"a\"\npassword_hash = \"plain\"\nhome = \"/tmp\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("password_hash"));
}

#[test]
fn hash_password_reads_stdin() {
    let mut child = Command::new(BIN)
        .arg("hash-password")
        .env_remove("FERRY_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from-stdin\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("$argon2id$"));
}

/// SIGHUP reloads the certificate files: new sessions get the new certificate, an existing
/// TLS session keeps working.
#[test]
fn sighup_reloads_the_certificate() {
    if Command::new("python3").arg("--version").output().is_err() {
        assert!(
            std::env::var("FERRY_REQUIRE_INTEROP").as_deref() != Ok("1"),
            "python3 missing"
        );
        eprintln!("skipping: python3 not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let gen_cert = || {
        let out = Command::new(BIN)
            .args(["gen-cert", "--cert", "c.pem", "--key", "k.pem"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("SHA-256 fingerprint: "))
            .unwrap()
            .replace(':', "")
            .to_lowercase()
    };
    let first = gen_cert();
    let serve = Serve::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--user",
            "u",
            "--cert",
            "c.pem",
            "--key",
            "k.pem",
        ],
        dir.path(),
        Some("pw"),
    );
    let addr = serve.listening();
    // A helper that keeps one TLS session open, prints the served fingerprint, then waits for a
    // line on stdin, checks that session still answers, and opens a new one.
    let script = r#"
import ftplib, hashlib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
def fp(f):
    return hashlib.sha256(f.sock.getpeercert(binary_form=True)).hexdigest()
a = ftplib.FTP_TLS(context=ctx, timeout=10); a.connect("127.0.0.1", int(sys.argv[1])); a.auth()
print(fp(a), flush=True)
sys.stdin.readline()
print(a.voidcmd("NOOP"), flush=True)
b = ftplib.FTP_TLS(context=ctx, timeout=10); b.connect("127.0.0.1", int(sys.argv[1])); b.auth()
print(fp(b), flush=True)
"#;
    let mut py = Command::new("timeout")
        .args(["30", "python3", "-c", script, &addr.port().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(py.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), first);
    let second = gen_cert();
    assert_ne!(first, second);
    let status = Command::new("kill")
        .args(["-HUP", &serve.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let reloaded = serve.logged("TLS certificate reloaded");
    assert!(
        reloaded.replace(':', "").to_lowercase().contains(&second),
        "{reloaded}"
    );
    py.stdin.take().unwrap().write_all(b"go\n").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("200"), "old session broken: {line}");
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(
        line.trim(),
        second,
        "new sessions must see the reloaded certificate"
    );
    assert!(py.wait().unwrap().success());
}

/// A name chosen by a client cannot reorder or hide what the log shows: a user name and a path
/// with a right-to-left override (and other invisible or control characters) are logged with
/// those characters escaped.
#[test]
fn client_text_is_escaped_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--user",
            "bob",
            "--root",
            "files",
            "--tls",
            "off",
        ],
        dir.path(),
        Some("pw-for-bob"),
    );
    let addr = serve.listening();
    let mut c = Ctrl::connect(addr);
    assert!(
        c.cmd("USER eve\u{202e}nimda\u{200b}\x0e")
            .starts_with("331")
    );
    assert!(c.cmd("PASS wrong").starts_with("530"));
    let failed = serve.logged("login failed");
    assert!(
        failed.contains(r"eve\u{202e}nimda\u{200b}\x0e"),
        "{failed:?}"
    );
    assert!(c.cmd("USER bob").starts_with("331"));
    assert!(c.cmd("PASS pw-for-bob").starts_with("230"));
    assert!(c.cmd("MKD gpj.\u{202e}\u{2066}exe").starts_with("257"));
    let created = serve.logged("directory created");
    assert!(created.contains(r"gpj.\u{202e}\u{2066}exe"), "{created:?}");
    for line in [&failed, &created] {
        assert!(!line.chars().any(ferry_proto::text::is_hidden), "{line:?}");
    }
}

/// `ferry --help` describes what is built: an FTP and FTPS server; a client that also speaks
/// SFTP (said only by the client verbs).
#[test]
fn help_promises_only_what_is_built() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("FTPS"), "{help}");
    // Both protocols, both ends: what is built.
    let about = help.lines().next().unwrap_or_default();
    assert_eq!(
        about, "Ferry: FTP, FTPS and SFTP server and client in one binary",
        "{help}"
    );
}

/// `git`, or `None` (said on standard error) when it is not installed.
fn git(dir: &std::path::Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output();
    match out {
        Ok(out) => {
            assert!(out.status.success(), "git {args:?}: {out:?}");
            Some(String::from_utf8_lossy(&out.stdout).into_owned())
        }
        Err(e) => {
            eprintln!("skipping: git is not available ({e})");
            None
        }
    }
}

/// `ferry serve` run with its defaults inside a git checkout leaves nothing for `git status`
/// to show: the generated state (with its private key) ignores itself, and the project's
/// .gitignore covers the default served folder. The printed certificate path is absolute, so
/// the printed `curl` line works from any directory.
#[test]
fn serve_defaults_stay_out_of_git_status_and_print_absolute_paths() {
    let dir = tempfile::tempdir().unwrap();
    if git(dir.path(), &["init", "-q"]).is_none() {
        return;
    }
    let serve = Serve::start(&["--listen", "127.0.0.1:0"], dir.path(), None);
    serve.listening();
    let tls = serve.line();
    let _credentials = serve.line();
    let hint = serve.line();
    let cert = hint
        .split_once("--cacert ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("{hint}"));
    assert!(std::path::Path::new(cert).is_absolute(), "{hint}");
    assert!(std::path::Path::new(cert).is_file(), "{hint}");
    assert!(tls.contains(cert), "{tls}");
    let status = git(
        dir.path(),
        &["status", "--porcelain", "--untracked-files=all"],
    )
    .unwrap();
    assert_eq!(status, "", "git status shows what ferry serve made");
    // A file uploaded into the default root, in Ferry's own checkout.
    std::fs::write(dir.path().join("ferry-data/uploaded.txt"), b"x").unwrap();
    std::fs::write(
        dir.path().join(".git/info/exclude"),
        include_str!("../../../.gitignore"),
    )
    .unwrap();
    let status = git(
        dir.path(),
        &["status", "--porcelain", "--untracked-files=all"],
    )
    .unwrap();
    assert_eq!(
        status, "",
        "the project's .gitignore leaves out the default root"
    );
}

/// A TLS ClientHello (TLS 1.2) that names an IP address as its server name, as lftp and wget
/// send: RFC 6066 says a host name, but FTP clients given an address send the address.
fn client_hello_naming(address: &str) -> Vec<u8> {
    fn extension(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
        out.extend(kind.to_be_bytes());
        out.extend((body.len() as u16).to_be_bytes());
        out.extend(body);
    }
    let name = address.as_bytes();
    let mut sni = ((name.len() + 3) as u16).to_be_bytes().to_vec();
    sni.push(0);
    sni.extend((name.len() as u16).to_be_bytes());
    sni.extend(name);
    let mut extensions = Vec::new();
    extension(&mut extensions, 0x0000, &sni);
    // x25519 and P-256; uncompressed points; ECDSA P-256, RSA-PSS and RSA PKCS#1 with SHA-256.
    extension(&mut extensions, 0x000a, &[0, 4, 0, 0x1d, 0, 0x17]);
    extension(&mut extensions, 0x000b, &[1, 0]);
    extension(&mut extensions, 0x000d, &[0, 6, 4, 3, 8, 4, 4, 1]);
    let mut hello = vec![3, 3];
    hello.extend([7u8; 32]);
    hello.push(0);
    // ECDHE-ECDSA-AES128-GCM-SHA256, ECDHE-RSA-AES128-GCM-SHA256; no compression.
    hello.extend([0, 4, 0xc0, 0x2b, 0xc0, 0x2f, 1, 0]);
    hello.extend((extensions.len() as u16).to_be_bytes());
    hello.extend(extensions);
    let mut handshake = vec![1];
    handshake.extend(&(hello.len() as u32).to_be_bytes()[1..]);
    handshake.extend(hello);
    let mut record = vec![0x16, 3, 1];
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

/// An IP address as the TLS server name is what FTP clients send; it is not worth a warning
/// in the server's log.
#[test]
fn an_ip_address_as_tls_server_name_is_not_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--user",
            "bob",
            "--root",
            "files",
        ],
        dir.path(),
        Some("pw-for-bob"),
    );
    let addr = serve.listening();
    let mut c = Ctrl::connect(addr);
    assert!(c.cmd("AUTH TLS").starts_with("234"));
    let mut tcp = c.0.into_inner();
    tcp.write_all(&client_hello_naming("127.0.0.1")).unwrap();
    // The server answers (its hello, or an alert): it has read ours.
    let mut answer = [0u8; 1];
    assert_eq!(tcp.read(&mut answer).unwrap(), 1);
    drop(tcp);
    // The handshake we leave unfinished is logged; nothing about the name before it.
    let lines = serve.logged_until("TLS handshake failed");
    assert!(!lines.iter().any(|l| l.contains("SNI")), "{lines:#?}");
}
