//! `ferry serve --storage s3://BUCKET/PREFIX --s3-endpoint URL` against a moto S3 server on
//! loopback: FTP's file commands and SFTP's put/get land in the bucket (checked through moto's
//! own HTTP API, never on local disk), what objects cannot do is refused clearly, and an
//! upload cut off mid-way leaves the old object and no visible partial one.
//!
//! Without moto (`pip install 'moto[server]'`), or without `sftp`/`sshpass` for the SFTP test,
//! a test skips with a note; `FERRY_REQUIRE_INTEROP=1` (as in CI) makes that a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../ferry-vfs/tests/moto/mod.rs"]
mod moto;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{have, openssh_sftp};
use tempfile::TempDir;

const USER: &str = "tester";
const PASSWORD: &str = "s3-Pass-42";
const WAIT: Duration = Duration::from_secs(60);

/// A running `ferry serve` on a bucket, killed (by PID, through `Child::kill`) when dropped.
struct Served {
    child: Child,
    ftp: SocketAddr,
    sftp: SocketAddr,
    log: PathBuf,
    dir: TempDir,
    moto: SocketAddr,
    bucket: String,
}

impl Served {
    fn start() -> Option<Served> {
        Served::start_with(&["--tls", "off"])
    }

    /// With `extra` arguments (TLS is required unless they say otherwise).
    fn start_with(extra: &[&str]) -> Option<Served> {
        let moto = moto::endpoint()?;
        let bucket = moto::bucket(moto);
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args([
                "serve",
                "--allow-root",
                "--listen",
                "127.0.0.1:0",
                "--sftp-listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .args(["--user", USER, "--log", "debug"])
            .arg("--storage")
            .arg(format!("s3://{bucket}/home"))
            .arg("--s3-endpoint")
            .arg(format!("http://{moto}"))
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .env("FERRY_PASSWORD", PASSWORD)
            .env("AWS_ACCESS_KEY_ID", moto::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", moto::SECRET_KEY)
            .env("AWS_REGION", moto::REGION)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("cannot start the ferry binary");
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
            sftp: "127.0.0.1:0".parse().unwrap(),
            log,
            dir,
            moto,
            bucket,
        };
        let deadline = Instant::now() + WAIT;
        while served.ftp.port() == 0 || served.sftp.port() == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no listening lines ({e})\n{}", served.log_tail()));
            let addr = |rest: &str| rest.trim_end_matches('/').parse::<SocketAddr>().unwrap();
            if let Some(rest) = line.strip_prefix("ferry: listening on ftp://") {
                served.ftp = addr(rest);
            } else if let Some(rest) = line.strip_prefix("ferry: listening on sftp://") {
                served.sftp = addr(rest);
            }
        }
        Some(served)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(60);
        format!("--- server log ---\n{}", lines[start..].join("\n"))
    }

    fn keys(&self) -> Vec<String> {
        let mut keys = moto::keys(self.moto, &self.bucket);
        keys.sort();
        keys
    }

    fn object(&self, key: &str) -> Option<Vec<u8>> {
        moto::object(self.moto, &self.bucket, key)
    }

    /// Waits (bounded) until no multipart upload is left open in the bucket.
    fn wait_no_open_uploads(&self) {
        let until = Instant::now() + WAIT;
        while moto::open_uploads(self.moto, &self.bucket) != 0 {
            assert!(
                Instant::now() < until,
                "a multipart upload was left open\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain FTP control connection.
struct Ftp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Ftp {
    fn login(addr: SocketAddr) -> Ftp {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut ftp = Ftp {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        assert_eq!(ftp.reply().0, 220);
        assert_eq!(ftp.cmd(&format!("USER {USER}")).0, 331);
        assert_eq!(ftp.cmd(&format!("PASS {PASSWORD}")).0, 230);
        assert_eq!(ftp.cmd("TYPE I").0, 200);
        ftp
    }

    fn reply(&mut self) -> (u16, String) {
        let mut text = String::new();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        text.push_str(&line);
        let code: u16 = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        if line.as_bytes().get(3) == Some(&b'-') {
            let end = format!("{code} ");
            loop {
                line.clear();
                assert!(self.reader.read_line(&mut line).unwrap() > 0);
                text.push_str(&line);
                if line.starts_with(&end) {
                    break;
                }
            }
        }
        (code, text)
    }

    fn cmd(&mut self, line: &str) -> (u16, String) {
        write!(self.writer, "{line}\r\n").unwrap();
        self.reply()
    }

    /// A passive data connection (EPSV).
    fn data(&mut self) -> TcpStream {
        let (code, text) = self.cmd("EPSV");
        assert_eq!(code, 229, "{text}");
        let port: u16 = text
            .split("|||")
            .nth(1)
            .and_then(|s| s.split('|').next())
            .and_then(|p| p.parse().ok())
            .unwrap();
        let peer = self.writer.peer_addr().unwrap();
        let data = TcpStream::connect(SocketAddr::new(peer.ip(), port)).unwrap();
        data.set_read_timeout(Some(WAIT)).unwrap();
        data
    }

    fn stor(&mut self, verb: &str, path: &str, body: &[u8]) -> (u16, String) {
        let mut data = self.data();
        let (code, text) = self.cmd(&format!("{verb} {path}"));
        if code != 150 && code != 125 {
            return (code, text);
        }
        data.write_all(body).unwrap();
        drop(data);
        self.reply()
    }

    fn retr(&mut self, path: &str) -> (u16, Vec<u8>) {
        let mut data = self.data();
        let (code, text) = self.cmd(&format!("RETR {path}"));
        if code != 150 && code != 125 {
            return (code, text.into_bytes());
        }
        let mut body = Vec::new();
        data.read_to_end(&mut body).unwrap();
        assert_eq!(self.reply().0, 226);
        (code, body)
    }

    fn list(&mut self, path: &str) -> String {
        let mut data = self.data();
        let (code, text) = self.cmd(&format!("NLST {path}"));
        assert!(code == 150 || code == 125, "{text}");
        let mut body = String::new();
        data.read_to_string(&mut body).unwrap();
        assert_eq!(self.reply().0, 226);
        body
    }
}

fn payload(len: usize, seed: u32) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed).to_be_bytes()[1])
        .collect()
}

#[test]
fn ftp_file_commands_on_s3() {
    let Some(srv) = Served::start() else { return };
    let mut ftp = Ftp::login(srv.ftp);
    assert_eq!(ftp.cmd("MKD /d").0, 257);
    // More than one part (8 MiB): a multipart upload.
    let body = payload(9 * 1024 * 1024 + 5, 1);
    let (code, text) = ftp.stor("STOR", "/d/f", &body);
    assert_eq!(code, 226, "{text}\n{}", srv.log_tail());
    assert_eq!(srv.keys(), ["home/d/", "home/d/f"]);
    assert!(
        srv.object("home/d/f").unwrap() == body,
        "the object differs"
    );

    let (_, got) = ftp.retr("/d/f");
    assert!(got == body);
    assert_eq!(ftp.cmd("REST 8388000").0, 350);
    let (_, tail) = ftp.retr("/d/f");
    assert!(tail == body[8_388_000..]);
    // REST at the very end: an empty download, not an error.
    assert_eq!(ftp.cmd(&format!("REST {}", body.len())).0, 350);
    let (code, tail) = ftp.retr("/d/f");
    assert_eq!(code, 150);
    assert!(tail.is_empty());
    assert_eq!(ftp.cmd("SIZE /d/f").1.trim(), format!("213 {}", body.len()));
    assert_eq!(ftp.list("/d").trim(), "/d/f");

    // What objects cannot do: refused, the object untouched.
    let (code, text) = ftp.stor("APPE", "/d/f", b"more");
    assert_eq!(code, 504, "{text}");
    assert!(text.contains("not supported by this storage"), "{text}");
    assert_eq!(ftp.cmd("REST 10").0, 350);
    let (code, text) = ftp.stor("STOR", "/d/f", b"patch");
    assert_eq!(code, 504, "{text}");
    assert_eq!(ftp.cmd("MFMT 20200101000000 /d/f").0, 504);
    assert!(srv.object("home/d/f").unwrap() == body);

    // Rename by copy and delete.
    assert_eq!(ftp.cmd("RNFR /d/f").0, 350);
    assert_eq!(ftp.cmd("RNTO /d/g").0, 250);
    assert_eq!(srv.keys(), ["home/d/", "home/d/g"]);
    // A directory with files stays where it is; an empty one moves.
    assert_eq!(ftp.cmd("RNFR /d").0, 350);
    let (code, text) = ftp.cmd("RNTO /e");
    assert_eq!(code, 504, "{text}");
    assert_eq!(ftp.cmd("MKD /empty").0, 257);
    assert_eq!(ftp.cmd("RNFR /empty").0, 350);
    assert_eq!(ftp.cmd("RNTO /moved").0, 250);
    assert_eq!(srv.keys(), ["home/d/", "home/d/g", "home/moved/"]);

    assert_eq!(ftp.cmd("RMD /d").0, 550);
    assert_eq!(ftp.cmd("DELE /d/g").0, 250);
    assert_eq!(ftp.cmd("RMD /d").0, 250);
    assert_eq!(ftp.cmd("RMD /moved").0, 250);
    assert!(srv.keys().is_empty(), "{:?}", srv.keys());
    assert_eq!(ftp.cmd("QUIT").0, 221);
    // Nothing on local disk but the server's own state and log.
    let mut local: Vec<String> = std::fs::read_dir(srv.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    local.sort();
    assert_eq!(local, ["server.log", "state"]);
}

/// Sends 1 MiB at a time (64 MiB at most) until a multipart upload is open in the bucket.
fn send_until_a_part_is_up(srv: &Served, data: &mut TcpStream) {
    let chunk = payload(1024 * 1024, 9);
    for _ in 0..64 {
        data.write_all(&chunk).unwrap();
        if moto::open_uploads(srv.moto, &srv.bucket) > 0 {
            return;
        }
    }
    panic!("no multipart upload after 64 MiB\n{}", srv.log_tail());
}

#[test]
fn an_upload_cut_off_leaves_the_old_object() {
    let Some(srv) = Served::start() else { return };
    let mut ftp = Ftp::login(srv.ftp);
    assert_eq!(ftp.stor("STOR", "/k", b"old content").0, 226);

    // Sent until a multipart upload is under way, then the connection is reset.
    let mut data = ftp.data();
    let (code, _) = ftp.cmd("STOR /k");
    assert_eq!(code, 150);
    send_until_a_part_is_up(&srv, &mut data);
    socket2::SockRef::from(&data)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(data);
    let (code, text) = ftp.reply();
    assert!((400..600).contains(&code), "{code} {text}");
    srv.wait_no_open_uploads();
    assert_eq!(srv.object("home/k").unwrap(), b"old content");
    assert_eq!(srv.keys(), ["home/k"]);

    // The client killed outright, control connection and all.
    let mut data = ftp.data();
    assert_eq!(ftp.cmd("STOR /k").0, 150);
    send_until_a_part_is_up(&srv, &mut data);
    for s in [&data, &ftp.writer] {
        socket2::SockRef::from(s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }
    drop(data);
    drop(ftp);
    srv.wait_no_open_uploads();
    assert_eq!(srv.object("home/k").unwrap(), b"old content");
    assert_eq!(srv.keys(), ["home/k"]);
}

fn sftp_batch(srv: &Served, batch: &str, local: &Path) {
    let out = openssh_sftp(srv.sftp, (USER, PASSWORD), batch, local, &[]);
    assert!(
        out.status.success(),
        "sftp failed: {}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        srv.log_tail()
    );
}

#[test]
fn sftp_put_and_get_on_s3() {
    if !have(&["sftp", "sshpass", "timeout"]) {
        return;
    }
    let Some(srv) = Served::start() else { return };
    let local = srv.dir.path().join("local");
    std::fs::create_dir(&local).unwrap();
    let body = payload(10 * 1024 * 1024 + 77, 5);
    std::fs::write(local.join("up.bin"), &body).unwrap();
    sftp_batch(
        &srv,
        "mkdir /s\nput up.bin /s/up.bin\nget /s/up.bin back.bin\nrename /s/up.bin /s/moved.bin\n",
        &local,
    );
    assert!(std::fs::read(local.join("back.bin")).unwrap() == body);
    assert_eq!(srv.keys(), ["home/s/", "home/s/moved.bin"]);
    assert!(srv.object("home/s/moved.bin").unwrap() == body);
    srv.wait_no_open_uploads();
}

#[test]
fn ftps_with_curl_on_s3() {
    if !have(&["curl", "timeout"]) {
        return;
    }
    let Some(srv) = Served::start_with(&[]) else {
        return;
    };
    let local = srv.dir.path().join("local");
    std::fs::create_dir(&local).unwrap();
    let body = payload(9 * 1024 * 1024 + 11, 6);
    std::fs::write(local.join("up.bin"), &body).unwrap();
    let curl = |args: &[&str]| {
        let out = Command::new("timeout")
            .args(["-k", "5", "120", "curl", "-sS", "--ssl-reqd", "--cacert"])
            .arg(srv.dir.path().join("state/cert.pem"))
            .args(["--user", &format!("{USER}:{PASSWORD}")])
            .args(args)
            .current_dir(&local)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "curl {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            srv.log_tail()
        );
    };
    let url = format!("ftp://{}/up.bin", srv.ftp);
    curl(&["-T", "up.bin", &url]);
    assert!(srv.object("home/up.bin").unwrap() == body);
    curl(&["-o", "back.bin", &url]);
    assert!(std::fs::read(local.join("back.bin")).unwrap() == body);
    assert_eq!(srv.keys(), ["home/up.bin"]);
}

/// The server's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// An upload's parts (8 MiB buffers) go back to the system once it ends: without that, glibc
/// keeps buffers that size in its arenas after the first is freed, and the server stays as
/// large as at its busiest upload.
#[test]
fn memory_an_upload_held_is_given_back() {
    let Some(srv) = Served::start() else { return };
    let mut ftp = Ftp::login(srv.ftp);
    assert_eq!(ftp.stor("STOR", "/warm", b"warm").0, 226);
    let before = rss_kib(srv.child.id());
    let body = payload(48 << 20, 3);
    for round in 0..2 {
        assert_eq!(ftp.stor("STOR", &format!("/big{round}"), &body).0, 226);
    }
    srv.wait_no_open_uploads();
    let after = rss_kib(srv.child.id());
    assert!(
        after < before + 16 * 1024,
        "resident memory {before} KiB before two 48 MiB uploads, {after} KiB after"
    );
}
