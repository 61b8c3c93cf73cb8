//! SFTP for `ferry bench`: the target, and the two clients that drive it.
//!
//! - [`Batch`]: OpenSSH's `sftp -b -`, one process per connection (under `sshpass` for a
//!   password), fed commands on its standard input. Each command is followed by `pwd`; the
//!   command is done when `pwd`'s answer appears on standard output, since `sftp` runs its
//!   commands in order and, in batch mode, ends at the first one that fails.
//! - [`connect`]: a session of Ferry's SFTP client library.
//!
//! Host keys are not checked by either (the bench only talks to this machine).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ferry_client::sftp::HostKeyPolicy;
use ferry_client::{SftpClient, SftpOptions, SshAuth};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::{Driver, UrlParts, procfs};

/// What an `sftp` prints for `pwd`: the end of every command sent before it.
const MARKER: &str = "Remote working directory: ";
/// Standard error kept from an `sftp` process, for the message when it fails.
const STDERR_KEPT: usize = 4096;

/// Where and as whom the bench connects over SFTP.
pub(super) struct SftpTarget {
    pub(super) addr: SocketAddr,
    pub(super) user: String,
    /// Used when there is no identity.
    password: Option<String>,
    /// The private key every connection logs in with.
    identity: Option<PathBuf>,
    /// Directory prefix for `ferry-bench/` ("" or "dir/").
    base: String,
    /// The cipher OpenSSH's `sftp` is told to use.
    pub(super) cipher: String,
    /// Ferry's client library: the key loaded once, shared by every connection.
    auth: SshAuth,
}

/// How the SFTP runs were made, in the report.
#[derive(Debug, Serialize)]
pub(crate) struct SftpReport {
    /// The client of the transfers (`put`, `get`, `small`, `small-put`).
    driver: Driver,
    /// `key` or `password`, for every connection.
    auth: &'static str,
    /// The cipher asked of OpenSSH's `sftp`.
    cipher: String,
    /// `ssh -V` of the OpenSSH client used, when it drove transfers.
    #[serde(skip_serializing_if = "Option::is_none")]
    openssh: Option<String>,
    /// The client of `login` and `idle`.
    sessions_client: &'static str,
}

impl SftpTarget {
    /// Parse `sftp://user[:pass]@host[:port]/path` (loopback only); the login is `identity`
    /// when given, else the password from the URL or `env_password`.
    pub(super) fn parse(
        url: &str,
        env_password: Option<String>,
        identity: Option<PathBuf>,
        cipher: &str,
    ) -> Result<SftpTarget> {
        let Some(rest) = url.strip_prefix("sftp://") else {
            bail!("not an sftp:// URL: {url}");
        };
        let parts = UrlParts::parse(rest, 22)?;
        let Some(user) = parts.user.filter(|u| !u.is_empty()) else {
            bail!("no user name: sftp://USER@127.0.0.1:PORT/");
        };
        let password = parts.pass.or(env_password);
        if identity.is_none() && password.is_none() {
            bail!(
                "no key and no password: give --identity FILE, or the password in the URL or FERRY_PASSWORD"
            );
        }
        if let Some(key) = &identity {
            std::fs::File::open(key).with_context(|| format!("--identity {}", key.display()))?;
        }
        if cipher.is_empty() || cipher.contains(|c: char| c.is_whitespace() || c == ',') {
            bail!("--cipher takes one cipher name, e.g. aes128-gcm@openssh.com");
        }
        if parts.base.contains(['\n', '\r']) {
            bail!("the URL's path has a line break");
        }
        let mut auth = SshAuth::new(user.clone());
        auth.default_identities = false;
        auth.agent = false;
        match &identity {
            Some(key) => auth.identities = vec![key.clone()],
            None => auth.password = password.clone(),
        }
        Ok(SftpTarget {
            addr: parts.addr,
            user,
            password,
            identity,
            base: parts.base,
            cipher: cipher.to_string(),
            auth,
        })
    }

    /// The URL without its password, for reports.
    pub(super) fn shown(&self) -> String {
        format!("sftp://{}@{}/{}", self.user, self.addr, self.base)
    }

    /// `key` or `password`.
    pub(super) fn auth_kind(&self) -> &'static str {
        if self.identity.is_some() {
            "key"
        } else {
            "password"
        }
    }

    /// The report's SFTP part.
    pub(super) fn report(&self, driver: Driver, openssh: Option<String>) -> SftpReport {
        SftpReport {
            driver,
            auth: self.auth_kind(),
            cipher: self.cipher.clone(),
            openssh,
            sessions_client: "ferry-client (Ferry's SFTP client library, in-process)",
        }
    }

    /// The bench's working directory on the server, absolute.
    pub(super) fn remote_dir(&self) -> String {
        format!("/{}ferry-bench", self.base)
    }

    /// A path under the bench's working directory on the server, absolute.
    pub(super) fn remote(&self, rel: &str) -> String {
        format!("/{}ferry-bench/{rel}", self.base)
    }

    /// The programs the OpenSSH driver needs that are not on the `PATH`.
    pub(super) fn missing_programs(&self) -> Vec<&'static str> {
        let mut need = vec!["sftp"];
        if self.identity.is_none() {
            need.push("sshpass");
        }
        need.into_iter()
            .filter(|p| find_program(p).is_none())
            .collect()
    }
}

/// `name` on the `PATH`, if it is there.
pub(super) fn find_program(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The first line `ssh -V` prints (on standard error), e.g. `OpenSSH_9.2p1 ...`.
pub(super) async fn openssh_version() -> Option<String> {
    let out = Command::new("ssh").arg("-V").output().await.ok()?;
    let text = String::from_utf8_lossy(&out.stderr);
    text.lines().next().map(|l| l.trim().to_string())
}

/// A session of Ferry's SFTP client library, logged in and with the SFTP subsystem started.
pub(super) async fn connect(t: &SftpTarget, timeout: Duration) -> Result<SftpClient> {
    let opts = SftpOptions {
        connect_timeout: timeout,
        reply_timeout: timeout,
        // Loopback only (see `UrlParts::parse`): no host key to check against anyone.
        host_keys: HostKeyPolicy {
            insecure: true,
            ..HostKeyPolicy::default()
        },
        ..SftpOptions::default()
    };
    let host = t.addr.ip().to_string();
    Ok(SftpClient::connect(&host, t.addr.port(), &t.auth, opts).await?)
}

/// `path` as one argument of an `sftp` command: quoted, with `\` and `"` escaped.
pub(super) fn quote(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 2);
    out.push('"');
    for c in path.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// One OpenSSH `sftp -b -` process, logged in.
pub(super) struct Batch {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: tokio::io::Lines<tokio::io::BufReader<ChildStdout>>,
    stderr: Option<tokio::task::JoinHandle<Vec<u8>>>,
    pid: u32,
    /// CPU seconds of the process tree when measuring started (see [`Batch::mark`]).
    cpu_base: f64,
}

impl Batch {
    /// Start `sftp` (under `sshpass` with a password) and wait, up to `timeout`, until it has
    /// logged in and answered a first `pwd`.
    pub(super) async fn start(t: &SftpTarget, timeout: Duration) -> Result<Batch> {
        let mut cmd = match (&t.identity, &t.password) {
            (None, Some(password)) => {
                let mut c = Command::new("sshpass");
                c.arg("-e").arg("sftp").env("SSHPASS", password);
                c
            }
            _ => Command::new("sftp"),
        };
        let port = t.addr.port().to_string();
        let connect_timeout = format!("ConnectTimeout={}", timeout.as_secs().max(1));
        let cipher = format!("Ciphers={}", t.cipher);
        // No user configuration, no agent, no multiplexing, no host key check.
        cmd.args(["-F", "/dev/null", "-P", &port])
            .args(["-o", &cipher, "-o", &connect_timeout])
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .args([
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
            ])
            .args(["-o", "ControlMaster=no", "-o", "ControlPath=none"])
            .args(["-o", "Compression=no"]);
        match &t.identity {
            Some(key) => {
                cmd.arg("-i")
                    .arg(key)
                    .args(["-o", "IdentitiesOnly=yes", "-o", "PubkeyAuthentication=yes"])
                    .args(["-o", "PasswordAuthentication=no"])
                    .args(["-o", "KbdInteractiveAuthentication=no"]);
            }
            None => {
                // Before `-b`, which sets BatchMode=yes (ssh keeps the first value it is
                // given), and so would forbid the password sshpass types.
                cmd.args(["-o", "PubkeyAuthentication=no", "-o", "BatchMode=no"])
                    .args([
                        "-o",
                        "PreferredAuthentications=password,keyboard-interactive",
                    ])
                    .args(["-o", "NumberOfPasswordPrompts=1"]);
            }
        }
        let host = match t.addr {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        };
        cmd.args(["-b", "-"])
            .arg(format!("{}@{host}", t.user))
            .env_remove("SSH_AUTH_SOCK")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().context("starting OpenSSH's sftp")?;
        let pid = child.id().context("sftp's process id")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("sftp's output")?;
        let stderr = child.stderr.take().map(|mut e| {
            tokio::spawn(async move {
                let mut kept = Vec::new();
                let mut buf = [0u8; 1024];
                while let Ok(n) = e.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let room = STDERR_KEPT.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
                kept
            })
        });
        let mut batch = Batch {
            child,
            stdin,
            stdout: tokio::io::BufReader::new(stdout).lines(),
            stderr,
            pid,
            cpu_base: 0.0,
        };
        batch
            .run(&[], timeout)
            .await
            .context("logging in with OpenSSH's sftp")?;
        Ok(batch)
    }

    /// Send `commands` and wait, up to `limit`, until all are done. An error leaves the process
    /// unusable (`sftp -b` ends at a failed command): close it and start another.
    pub(super) async fn run(&mut self, commands: &[String], limit: Duration) -> Result<()> {
        let mut text = String::new();
        for c in commands {
            text.push_str(c);
            text.push('\n');
        }
        text.push_str("pwd\n");
        let work = async {
            let stdin = self.stdin.as_mut().context("sftp's input is closed")?;
            stdin.write_all(text.as_bytes()).await?;
            stdin.flush().await?;
            loop {
                match self.stdout.next_line().await? {
                    Some(line) if line.starts_with(MARKER) => return anyhow::Ok(true),
                    Some(_) => {}
                    None => return Ok(false),
                }
            }
        };
        match tokio::time::timeout(limit, work).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => bail!("sftp ended: {}", self.failure().await),
            Ok(Err(e)) => bail!("sftp: {e} ({})", self.failure().await),
            Err(_) => {
                let _ = self.child.start_kill();
                bail!(
                    "sftp did not finish within {:.0} s ({})",
                    limit.as_secs_f64(),
                    self.failure().await
                )
            }
        }
    }

    /// What the process said on standard error and how it ended.
    async fn failure(&mut self) -> String {
        let status = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        let said = match self.stderr.take() {
            Some(task) => tokio::time::timeout(Duration::from_secs(1), task)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let said = String::from_utf8_lossy(&said);
        let said = said.trim().replace('\n', " / ");
        let status = match status {
            Ok(Ok(s)) => s.to_string(),
            _ => "still running".to_string(),
        };
        if said.is_empty() {
            status
        } else {
            format!("{status}: {said}")
        }
    }

    /// Start counting this process tree's CPU from now.
    pub(super) fn mark(&mut self) {
        self.cpu_base = procfs::tree_cpu_seconds(&[self.pid]);
    }

    /// CPU seconds of this process tree (sftp and its ssh) since [`Batch::mark`], or since it
    /// started if never marked.
    pub(super) fn cpu_used(&self) -> f64 {
        (procfs::tree_cpu_seconds(&[self.pid]) - self.cpu_base).max(0.0)
    }

    /// End the process: its input closed (`sftp` then quits), killed after 5 s.
    pub(super) async fn close(mut self) {
        drop(self.stdin.take());
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// `size` bytes of `pattern`, repeated, as a reader (the source of library uploads).
pub(super) struct PatternReader {
    pattern: Arc<Vec<u8>>,
    at: usize,
    left: u64,
}

impl PatternReader {
    pub(super) fn new(pattern: Arc<Vec<u8>>, size: u64) -> PatternReader {
        PatternReader {
            pattern,
            at: 0,
            left: size,
        }
    }
}

impl AsyncRead for PatternReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.left == 0 || this.pattern.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let n = buf
            .remaining()
            .min(this.pattern.len() - this.at)
            .min(usize::try_from(this.left).unwrap_or(usize::MAX));
        buf.put_slice(&this.pattern[this.at..this.at + n]);
        this.at = (this.at + n) % this.pattern.len();
        this.left -= n as u64;
        Poll::Ready(Ok(()))
    }
}

/// The client's side of the OpenSSH driver: a directory of its own (removed when dropped).
pub(super) struct LocalDir {
    path: PathBuf,
}

impl LocalDir {
    /// `ferry-bench-client-PID` in `parent` (default: /dev/shm if it is there, else the
    /// system's temporary directory).
    pub(super) fn create(parent: Option<&Path>) -> Result<LocalDir> {
        let parent = match parent {
            Some(p) => p.to_path_buf(),
            None if Path::new("/dev/shm").is_dir() => PathBuf::from("/dev/shm"),
            None => std::env::temp_dir(),
        };
        let path = parent.join(format!("ferry-bench-client-{}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("{}", path.display()))?;
        Ok(LocalDir { path })
    }

    /// A file in it; its path must have no line break (`sftp` reads one command a line).
    pub(super) fn file(&self, name: &str) -> Result<String> {
        let p = self.path.join(name);
        let s = p
            .to_str()
            .context("the local directory's path is not UTF-8")?;
        if s.contains(['\n', '\r']) {
            bail!("the local directory's path has a line break");
        }
        Ok(s.to_string())
    }
}

impl Drop for LocalDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t =
            SftpTarget::parse("sftp://bob:pw@127.0.0.1:2222/x/", None, None, "aes128-ctr").unwrap();
        assert_eq!(t.addr, "127.0.0.1:2222".parse().unwrap());
        assert_eq!(t.auth_kind(), "password");
        assert_eq!(t.remote("large.bin"), "/x/ferry-bench/large.bin");
        assert_eq!(t.remote_dir(), "/x/ferry-bench");
        assert_eq!(t.shown(), "sftp://bob@127.0.0.1:2222/x/");
        let t = SftpTarget::parse("sftp://bob@[::1]", Some("pw".into()), None, "c").unwrap();
        assert_eq!(t.addr, "[::1]:22".parse().unwrap());
        assert_eq!(t.remote("a"), "/ferry-bench/a");
        assert!(SftpTarget::parse("sftp://bob@127.0.0.1/", None, None, "c").is_err());
        assert!(SftpTarget::parse("sftp://127.0.0.1/", Some("p".into()), None, "c").is_err());
        let e = SftpTarget::parse("sftp://bob:p@192.0.2.1/", None, None, "c")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("refusing"), "{e}");
        let missing = Some(PathBuf::from("/nonexistent/key"));
        assert!(SftpTarget::parse("sftp://bob@127.0.0.1/", None, missing, "c").is_err());
        assert!(SftpTarget::parse("sftp://bob:p@127.0.0.1/", None, None, "a,b").is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("/a b/c"), "\"/a b/c\"");
        assert_eq!(quote(r#"x"y\z"#), r#""x\"y\\z""#);
    }

    #[tokio::test]
    async fn pattern_reader_repeats_to_size() {
        let pattern = Arc::new((0u8..=9).collect::<Vec<u8>>());
        let mut r = PatternReader::new(Arc::clone(&pattern), 25);
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        assert_eq!(out.len(), 25);
        assert_eq!(&out[..10], &pattern[..]);
        assert_eq!(&out[20..], &[0, 1, 2, 3, 4]);
    }
}
