//! A moto S3 server on loopback for tests: one per test process, started on first use (moto's
//! `ThreadedMotoServer` on `127.0.0.1`, port chosen by the kernel), gone when the process ends
//! (it exits when its standard input closes). Each test makes its own bucket.
//!
//! Without moto (`pip install 'moto[server]'`) a test skips, saying so on stderr; with
//! `FERRY_REQUIRE_INTEROP=1` it fails instead.

#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Credentials moto accepts (any do); set in the environment of what talks to it.
pub const ACCESS_KEY: &str = "ferrytest";
pub const SECRET_KEY: &str = "ferrytestsecret";
pub const REGION: &str = "us-east-1";

const SCRIPT: &str = r#"
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
"#;

struct Moto {
    addr: SocketAddr,
    // Held so that moto lives as long as this process: it exits when stdin closes.
    _child: Mutex<(Child, ChildStdin)>,
}

static MOTO: OnceLock<Option<Moto>> = OnceLock::new();
static BUCKETS: AtomicUsize = AtomicUsize::new(0);

fn start() -> Option<Moto> {
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let stdin = child.stdin.take()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take()?)
        .read_line(&mut line)
        .ok()?;
    let Ok(port) = line.trim().parse::<u16>() else {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    };
    Some(Moto {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        _child: Mutex::new((child, stdin)),
    })
}

/// moto's address, or `None` (after saying why) when the test must skip.
pub fn endpoint() -> Option<SocketAddr> {
    let moto = MOTO.get_or_init(start);
    match moto {
        Some(m) => Some(m.addr),
        None => {
            assert!(
                std::env::var("FERRY_REQUIRE_INTEROP").as_deref() != Ok("1"),
                "moto is required (FERRY_REQUIRE_INTEROP=1) but could not start: pip install 'moto[server]'"
            );
            eprintln!("SKIP: moto is not installed (pip install 'moto[server]'); S3 test not run");
            None
        }
    }
}

/// One plain HTTP request to moto; status and body. moto does not check signatures, but
/// answers only requests that carry one as the bucket's owner.
pub fn http(addr: SocketAddr, method: &str, target: &str) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20260101/{REGION}/s3/aws4_request, SignedHeaders=host, Signature=00\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut body = raw[head_end..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&data[..eol])
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
    out
}

/// A new empty bucket; its name.
pub fn bucket(addr: SocketAddr) -> String {
    let name = format!(
        "ferry-{}-{}",
        std::process::id(),
        BUCKETS.fetch_add(1, Ordering::Relaxed)
    );
    let (status, _) = http(addr, "PUT", &format!("/{name}"));
    assert_eq!(status, 200, "creating bucket {name}");
    name
}

/// The keys in `bucket` (all of them, no delimiter), straight from moto.
pub fn keys(addr: SocketAddr, bucket: &str) -> Vec<String> {
    let (status, body) = http(addr, "GET", &format!("/{bucket}?list-type=2"));
    assert_eq!(status, 200);
    let body = String::from_utf8_lossy(&body).to_string();
    body.split("<Key>")
        .skip(1)
        .filter_map(|s| s.split("</Key>").next())
        .map(|k| {
            k.replace("&amp;", "&")
                .replace("&quot;", "\"")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&apos;", "'")
        })
        .collect()
}

/// The content of `key` in `bucket`, straight from moto.
pub fn object(addr: SocketAddr, bucket: &str, key: &str) -> Option<Vec<u8>> {
    let (status, body) = http(addr, "GET", &format!("/{bucket}/{key}"));
    (status == 200).then_some(body)
}

/// Multipart uploads started in `bucket` and neither completed nor aborted.
pub fn open_uploads(addr: SocketAddr, bucket: &str) -> usize {
    let (status, body) = http(addr, "GET", &format!("/{bucket}?uploads"));
    assert_eq!(status, 200);
    String::from_utf8_lossy(&body).matches("<UploadId>").count()
}
