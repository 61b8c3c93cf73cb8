//! Two `ferry serve` nodes behind HAProxy (`send-proxy-v2`) on loopback, on one shared root
//! or on one S3 bucket (a moto server): FTP control and each node's passive range go through
//! the balancer, and so does SFTP. The client is bound to 127.0.0.2, so the nodes can only
//! tell who it is from the PROXY header.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../ferry-vfs/tests/moto/mod.rs"]
mod moto;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const PASSWORD: &str = "balanced";
const WAIT: Duration = Duration::from_secs(30);
const PROXY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const STRANGER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// A child process, killed when dropped, its stderr kept.
struct Proc {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> (Proc, std::sync::mpsc::Receiver<String>) {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let log = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let kept = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = err.read(&mut buf) {
                kept.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        (Proc { child, log }, lines)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node: `ferry serve` on `ip`, FTP and SFTP on ports of its choosing, passive ports
/// `range`, PROXY headers required from the balancer.
struct Node {
    proc: Proc,
    ftp: SocketAddr,
    sftp: SocketAddr,
    metrics: SocketAddr,
}

/// Where a node's user lives: `--root DIR`, or `--storage s3://... --s3-endpoint URL`.
enum Home<'a> {
    Root(&'a Path),
    S3 {
        endpoint: SocketAddr,
        bucket: &'a str,
    },
}

fn node(dir: &Path, name: &str, ip: Ipv4Addr, range: (u16, u16), home: &Home) -> Node {
    let config = dir.join(format!("{name}.toml"));
    // Clients are told the balancer's address in 227, a refused data connection ends in 425
    // soon, and the greeting names the node.
    std::fs::write(
        &config,
        format!(
            "[ftp]\nmasquerade_address = \"127.0.0.1\"\ndata_connect_timeout = 3\n\
             greeting = \"Ferry node {name}\"\n"
        ),
    )
    .unwrap();
    let home_args: Vec<String> = match home {
        Home::Root(root) => vec!["--root".into(), root.display().to_string()],
        Home::S3 { endpoint, bucket } => vec![
            "--storage".into(),
            format!("s3://{bucket}/home"),
            "--s3-endpoint".into(),
            format!("http://{endpoint}"),
        ],
    };
    let (proc, lines) = Proc::spawn(
        Command::new(BIN)
            .args(["serve", "--allow-root"])
            .arg("--config")
            .arg(&config)
            .args(["--listen", &format!("{ip}:0")])
            .args(["--sftp-listen", &format!("{ip}:0")])
            .args(["--metrics-listen", &format!("{ip}:0")])
            .args(["--passive-ports", &format!("{}-{}", range.0, range.1)])
            .args(["--proxy-protocol-from", "127.0.0.1/32"])
            .args(["--tls", "off", "--user", USER, "--log", "debug"])
            .args(&home_args)
            .arg("--state-dir")
            .arg(dir.join(format!("{name}-state")))
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .env("AWS_ACCESS_KEY_ID", moto::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", moto::SECRET_KEY)
            .env("AWS_REGION", moto::REGION)
            .env("FERRY_PASSWORD", PASSWORD),
    );
    let (mut ftp, mut sftp, mut metrics) = (None, None, None);
    while ftp.is_none() || sftp.is_none() || metrics.is_none() {
        let line = lines
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("{name} did not start: {}", proc.log()));
        let addr = |prefix: &str| -> Option<SocketAddr> {
            line.strip_prefix(prefix)
                .map(|a| a.trim_end_matches('/').parse().unwrap())
        };
        ftp = ftp.or(addr("ferry: listening on ftp://"));
        sftp = sftp.or(addr("ferry: listening on sftp://"));
        metrics = metrics.or(line
            .strip_prefix("ferry: metrics on http://")
            .map(|a| a.trim_end_matches("/metrics").parse().unwrap()));
    }
    Node {
        proc,
        ftp: ftp.unwrap(),
        sftp: sftp.unwrap(),
        metrics: metrics.unwrap(),
    }
}

/// A port free on every one of `ips` (bound and let go: another program may take it in
/// between, which makes the test fail loudly, not pass).
fn free_port(ips: &[Ipv4Addr]) -> u16 {
    let l = TcpListener::bind((ips[0], 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    if ips[1..]
        .iter()
        .all(|ip| TcpListener::bind((*ip, port)).is_ok())
    {
        port
    } else {
        free_port(&ips[1..])
    }
}

/// `len` consecutive ports free on every one of `ips`, from a bounded number of tries.
fn free_range(ips: &[Ipv4Addr], len: u16) -> (u16, u16) {
    for _ in 0..200 {
        let low = free_port(ips);
        let Some(high) = low.checked_add(len - 1) else {
            continue;
        };
        let all_free =
            (low..=high).all(|port| ips.iter().all(|ip| TcpListener::bind((*ip, port)).is_ok()));
        if all_free {
            return (low, high);
        }
    }
    panic!("no free port range");
}

fn haproxy_config(control: u16, sftp: u16, nodes: &[(&Node, Ipv4Addr, (u16, u16))]) -> String {
    let mut c = String::from(
        "global\n  maxconn 200\n\
         defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
         frontend ftp\n",
    );
    c += &format!("  bind {PROXY}:{control}\n  default_backend ftp_nodes\n");
    c += "backend ftp_nodes\n  balance roundrobin\n";
    for (i, (n, _, _)) in nodes.iter().enumerate() {
        c += &format!("  server n{i} {} send-proxy-v2\n", n.ftp);
    }
    for (i, (_, ip, (low, high))) in nodes.iter().enumerate() {
        // Each node's own passive range; no port on the server: the one the client chose.
        c += &format!("frontend data{i}\n  bind {PROXY}:{low}-{high}\n  default_backend data{i}\n");
        c += &format!("backend data{i}\n  server n{i} {ip} send-proxy-v2\n");
    }
    c += &format!("frontend sftp\n  bind {PROXY}:{sftp}\n  default_backend sftp_nodes\n");
    c += "backend sftp_nodes\n  balance roundrobin\n";
    for (i, (n, _, _)) in nodes.iter().enumerate() {
        c += &format!("  server n{i} {} send-proxy-v2\n", n.sftp);
    }
    c
}

fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    socket.connect_timeout(&to.into(), WAIT).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
}

/// Read one reply (its last line) from an FTP control connection.
fn reply(r: &mut BufReader<TcpStream>) -> String {
    loop {
        let mut line = String::new();
        assert!(
            r.read_line(&mut line).unwrap() > 0,
            "control connection closed"
        );
        let b = line.as_bytes();
        if b.len() >= 4 && b[..3].iter().all(u8::is_ascii_digit) && b[3] == b' ' {
            return line.trim_end().to_string();
        }
    }
}

fn cmd(r: &mut BufReader<TcpStream>, line: &str) -> String {
    r.get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .unwrap();
    reply(r)
}

/// The server closes `stream` without a byte.
fn closed_unanswered(mut stream: TcpStream, hello: &[u8]) {
    let _ = stream.write_all(hello);
    let mut buf = [0u8; 256];
    let n = stream.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "answered: {:?}", String::from_utf8_lossy(&buf[..n]));
}

/// The node's `/metrics`.
fn scrape(addr: SocketAddr) -> String {
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    body
}

/// Two nodes on 127.0.0.11 and 127.0.0.12 behind HAProxy on 127.0.0.1: FTP control on
/// `front`, SFTP on `sftp`, each node's passive range forwarded to it.
struct Cluster {
    nodes: [Node; 2],
    front: SocketAddr,
    sftp: SocketAddr,
    balancer: Proc,
}

impl Cluster {
    fn start(haproxy: &str, dir: &Path, home: &Home) -> Cluster {
        let ips = [Ipv4Addr::new(127, 0, 0, 11), Ipv4Addr::new(127, 0, 0, 12)];
        // Every port the balancer binds from one free block, so that no two of its frontends
        // share a port (HAProxy binds with SO_REUSEPORT, and would split the connections).
        let (low, _) = free_range(&[PROXY, ips[0], ips[1]], 18);
        let (r1, r2) = ((low, low + 7), (low + 8, low + 15));
        let (control, sftp) = (low + 16, low + 17);
        let n1 = node(dir, "n1", ips[0], r1, home);
        let n2 = node(dir, "n2", ips[1], r2, home);
        let cfg = dir.join("haproxy.cfg");
        let nodes = [(&n1, ips[0], r1), (&n2, ips[1], r2)];
        std::fs::write(&cfg, haproxy_config(control, sftp, &nodes)).unwrap();
        let (balancer, _) = Proc::spawn(Command::new(haproxy).arg("-db").arg("-f").arg(&cfg));
        let front = SocketAddr::from((PROXY, control));
        let started = Instant::now();
        while TcpStream::connect(front).is_err() {
            assert!(started.elapsed() < WAIT, "haproxy: {}", balancer.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        Cluster {
            nodes: [n1, n2],
            front,
            sftp: SocketAddr::from((PROXY, sftp)),
            balancer,
        }
    }
}

/// An HTTP GET to a node's metrics listener: status and body.
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}

/// The value of one series in a node's `/metrics` (0 when absent).
fn counter(node: &Node, series: &str) -> u64 {
    let metrics = scrape(node.metrics);
    metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// A logged-in FTP session from 127.0.0.2 through the balancer, on the node `name` (its
/// greeting says which node took the connection; the balancer alternates, and a connection
/// it cannot pass on, to a node that is down, is closed and tried again, a bounded number
/// of times).
fn ftp_on(front: SocketAddr, name: &str) -> BufReader<TcpStream> {
    for _ in 0..12 {
        let mut c = BufReader::new(connect_from(CLIENT, front));
        let mut greeting = String::new();
        if c.read_line(&mut greeting).unwrap_or(0) == 0 {
            continue;
        }
        if !greeting.contains(&format!("Ferry node {name}")) {
            continue;
        }
        assert!(cmd(&mut c, &format!("USER {USER}")).starts_with("331"));
        assert!(cmd(&mut c, &format!("PASS {PASSWORD}")).starts_with("230"));
        assert!(cmd(&mut c, "TYPE I").starts_with("200"));
        return c;
    }
    panic!("the balancer never passed a connection to {name}");
}

/// A passive data connection from 127.0.0.2 through the balancer.
fn pasv(c: &mut BufReader<TcpStream>) -> TcpStream {
    let reply = cmd(c, "PASV");
    let (_, hp) = reply.split_once('(').unwrap();
    let hp = hp.trim_end_matches(|c| c != ')').trim_end_matches(')');
    let p: Vec<u16> = hp.split(',').map(|v| v.trim().parse().unwrap()).collect();
    assert_eq!(&p[..4], &[127, 0, 0, 1], "{reply}");
    connect_from(CLIENT, SocketAddr::from((PROXY, p[4] * 256 + p[5])))
}

fn stor(c: &mut BufReader<TcpStream>, path: &str, body: &[u8]) {
    let mut data = pasv(c);
    let first = cmd(c, &format!("STOR {path}"));
    assert!(first.starts_with("150"), "{first}");
    data.write_all(body).unwrap();
    drop(data);
    let last = reply(c);
    assert!(last.starts_with("226"), "{last}");
}

fn retr(c: &mut BufReader<TcpStream>, path: &str) -> Vec<u8> {
    let mut data = pasv(c);
    let first = cmd(c, &format!("RETR {path}"));
    assert!(first.starts_with("150"), "{first}");
    let mut body = Vec::new();
    data.read_to_end(&mut body).unwrap();
    let last = reply(c);
    assert!(last.starts_with("226"), "{last}");
    body
}

fn mlsd(c: &mut BufReader<TcpStream>, path: &str) -> String {
    let mut data = pasv(c);
    let first = cmd(c, &format!("MLSD {path}"));
    assert!(first.starts_with("150"), "{first}");
    let mut listing = String::new();
    data.read_to_string(&mut listing).unwrap();
    assert!(reply(c).starts_with("226"));
    listing
}

/// OpenSSH's `sftp` from 127.0.0.2 through the balancer, with a batch of commands run in
/// `local`; its standard output. A failure shows the logs of `nodes`.
fn sftp_via(at: SocketAddr, batch: &str, local: &Path, nodes: &[&Node]) -> String {
    let options = ["BindAddress=127.0.0.2"];
    let out = openssh_sftp(at, (USER, PASSWORD), batch, local, &options);
    assert!(
        out.status.success(),
        "sftp failed: {}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        nodes
            .iter()
            .map(|n| n.proc.log())
            .collect::<Vec<_>>()
            .join("\n")
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What boto3 sees in `bucket`: a line "KEY SIZE SHA256" per object.
fn boto3_objects(endpoint: SocketAddr, bucket: &str) -> Vec<String> {
    let script = r#"
import boto3, hashlib, sys
s3 = boto3.client("s3", endpoint_url=sys.argv[1])
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[2]):
    for o in page.get("Contents", []):
        body = s3.get_object(Bucket=sys.argv[2], Key=o["Key"])["Body"].read()
        print(o["Key"], len(body), hashlib.sha256(body).hexdigest())
"#;
    let out = ok(run(
        Command::new("python3")
            .args(["-c", script, &format!("http://{endpoint}"), bucket])
            .env("AWS_ACCESS_KEY_ID", moto::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", moto::SECRET_KEY)
            .env("AWS_DEFAULT_REGION", moto::REGION),
        b"",
        Duration::from_secs(60),
    ));
    out.stdout.lines().map(str::to_string).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every file name beneath `dir`, recursively.
fn local_files(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        if entry.file_type().unwrap().is_dir() {
            names.extend(local_files(&entry.path()));
        } else {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names
}

fn haproxy() -> Option<&'static str> {
    let path = "/usr/sbin/haproxy";
    if Path::new(path).exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "haproxy is not installed (.ci/run installs it)"
    );
    eprintln!("SKIPPED: haproxy is not installed (apt-get install haproxy)");
    None
}

#[test]
fn two_nodes_behind_haproxy_see_the_client_the_proxy_header_names() {
    let Some(haproxy) = haproxy() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("shared-root");
    std::fs::create_dir(&root).unwrap();
    let body = content(3 << 20, 16);
    std::fs::write(root.join("big.bin"), &body).unwrap();

    let Cluster {
        nodes: [n1, n2],
        front,
        sftp,
        balancer: _balancer,
    } = Cluster::start(haproxy, dir.path(), &Home::Root(&root));
    let control = front.port();

    // Python's ftplib binds control and data connections to 127.0.0.2; two sessions, one
    // per node (round robin), each downloads through the balancer (PASV, data through the
    // node's range on the balancer) and asks STAT who it is.
    let script = r#"
import ftplib, hashlib, io, sys
host, port, password = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for _ in range(2):
    f = ftplib.FTP()
    f.connect(host, port, timeout=30, source_address=("127.0.0.2", 0))
    f.login("alice", password)
    buf = io.BytesIO()
    f.retrbinary("RETR big.bin", buf.write)
    print(hashlib.sha256(buf.getvalue()).hexdigest())
    print(f.sendcmd("STAT").replace("\n", " | "))
    f.quit()
"#;
    let out = ok(run(
        Command::new("python3").args([
            "-c",
            script,
            &PROXY.to_string(),
            &control.to_string(),
            PASSWORD,
        ]),
        b"",
        Duration::from_secs(120),
    ));
    let want: String = sha256(&body).iter().map(|b| format!("{b:02x}")).collect();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", out.stdout);
    for pair in lines.chunks(2) {
        assert_eq!(pair[0], want);
        assert!(pair[1].contains("Connected from 127.0.0.2"), "{}", pair[1]);
    }
    // Round robin: each node served one of them, for 127.0.0.2, and counted its bytes.
    let counted = format!(
        "ferry_transfer_bytes_total{{protocol=\"ftp\",direction=\"download\"}} {}",
        body.len()
    );
    for n in [&n1, &n2] {
        let log = n.proc.log();
        assert!(log.contains("peer=127.0.0.2"), "{log}");
        let metrics = scrape(n.metrics);
        assert!(
            metrics.contains(&counted),
            "{counted} missing from:\n{metrics}"
        );
    }

    // A data connection through the balancer from another address is refused: the node
    // compares the PROXY header's source, not the balancer's address.
    let mut ctrl = BufReader::new(connect_from(CLIENT, front));
    assert!(reply(&mut ctrl).starts_with("220"));
    assert!(cmd(&mut ctrl, &format!("USER {USER}")).starts_with("331"));
    assert!(cmd(&mut ctrl, &format!("PASS {PASSWORD}")).starts_with("230"));
    let pasv = cmd(&mut ctrl, "PASV");
    let (_, hp) = pasv.split_once('(').unwrap();
    let hp = hp.trim_end_matches(|c| c != ')').trim_end_matches(')');
    let p: Vec<u16> = hp.split(',').map(|v| v.trim().parse().unwrap()).collect();
    assert_eq!(&p[..4], &[127, 0, 0, 1], "{pasv}");
    let data_at = SocketAddr::from((PROXY, p[4] * 256 + p[5]));
    let stolen = connect_from(STRANGER, data_at);
    let first = cmd(&mut ctrl, "RETR big.bin");
    assert!(first.starts_with("150"), "{first}");
    let last = reply(&mut ctrl);
    assert!(last.starts_with("425"), "{last}");
    closed_unanswered(stolen, b"");

    // Straight to a node, skipping the balancer: no header, no service.
    closed_unanswered(connect_from(PROXY, n1.ftp), b"USER alice\r\n");
    closed_unanswered(connect_from(CLIENT, n2.ftp), b"USER alice\r\n");
    closed_unanswered(connect_from(PROXY, n1.sftp), b"SSH-2.0-test\r\n");

    // SFTP through the balancer: the node's SSH banner, once the header is read.
    let mut ssh = BufReader::new(connect_from(CLIENT, sftp));
    let mut banner = String::new();
    ssh.read_line(&mut banner).unwrap();
    assert!(banner.starts_with("SSH-2.0-"), "{banner:?}");
}

#[test]
fn two_nodes_on_one_bucket_serve_each_others_uploads_and_survive_a_kill() {
    let Some(haproxy) = haproxy() else { return };
    if !have(&["sftp", "sshpass", "timeout"]) {
        return;
    }
    let Some(endpoint) = moto::endpoint() else {
        return;
    };
    let bucket = moto::bucket(endpoint);
    let dir = tempfile::tempdir().unwrap();
    let home = Home::S3 {
        endpoint,
        bucket: &bucket,
    };
    let Cluster {
        nodes: [mut n1, n2],
        front,
        sftp,
        balancer: _balancer,
    } = Cluster::start(haproxy, dir.path(), &home);
    for n in [&n1, &n2] {
        assert_eq!(http_get(n.metrics, "/healthz"), (200, "ok\n".to_string()));
    }

    // FTP: uploaded through node 1 (multipart: larger than a part), listed and downloaded
    // through node 2.
    let body = content((20 << 20) + 5, 41);
    let mut c1 = ftp_on(front, "n1");
    assert!(cmd(&mut c1, "MKD /shared").starts_with("257"));
    stor(&mut c1, "/shared/up.bin", &body);
    assert!(cmd(&mut c1, "QUIT").starts_with("221"));
    let mut c2 = ftp_on(front, "n2");
    let listing = mlsd(&mut c2, "/shared");
    assert!(
        listing.contains(&format!("size={};", body.len())) && listing.contains(" up.bin\r\n"),
        "{listing}"
    );
    assert!(retr(&mut c2, "/shared/up.bin") == body);
    assert!(cmd(&mut c2, "QUIT").starts_with("221"));
    let upload = "ferry_transfer_bytes_total{protocol=\"ftp\",direction=\"upload\"}";
    let download = "ferry_transfer_bytes_total{protocol=\"ftp\",direction=\"download\"}";
    assert_eq!(counter(&n1, upload), body.len() as u64);
    assert_eq!(counter(&n2, download), body.len() as u64);
    assert_eq!(counter(&n1, download) + counter(&n2, upload), 0);

    // SFTP: put through whichever node the balancer picks, then listed and fetched until the
    // other node has served it (the balancer alternates).
    let local = dir.path().join("local");
    std::fs::create_dir(&local).unwrap();
    let small = content((3 << 20) + 1, 42);
    std::fs::write(local.join("s.bin"), &small).unwrap();
    sftp_via(sftp, "put s.bin /shared/s.bin\n", &local, &[&n1, &n2]);
    let put = "ferry_transfer_bytes_total{protocol=\"sftp\",direction=\"upload\"}";
    let get = "ferry_transfer_bytes_total{protocol=\"sftp\",direction=\"download\"}";
    let (uploader, other) = if counter(&n1, put) > 0 {
        (&n1, &n2)
    } else {
        (&n2, &n1)
    };
    assert_eq!(counter(uploader, put), small.len() as u64);
    let mut fetched = false;
    for _ in 0..6 {
        let batch = "ls -l /shared\nget /shared/s.bin back.bin\n";
        let listing = sftp_via(sftp, batch, &local, &[&n1, &n2]);
        assert!(
            listing.contains("up.bin") && listing.contains("s.bin"),
            "{listing}"
        );
        assert!(std::fs::read(local.join("back.bin")).unwrap() == small);
        if counter(other, get) > 0 {
            fetched = true;
            break;
        }
    }
    assert!(fetched, "the other node never served the SFTP download");

    // The files are objects in the bucket, as boto3 reads them, and nowhere on local disk.
    let objects = boto3_objects(endpoint, &bucket);
    assert_eq!(
        objects,
        [
            format!("home/shared/ 0 {}", hex(&sha256(b""))),
            format!("home/shared/s.bin {} {}", small.len(), hex(&sha256(&small))),
            format!("home/shared/up.bin {} {}", body.len(), hex(&sha256(&body))),
        ]
    );
    let on_disk = local_files(dir.path());
    assert!(
        !on_disk.iter().any(|n| n == "up.bin"),
        "a copy on local disk: {on_disk:?}"
    );

    // Straight to a node, skipping the balancer: no header, no service.
    closed_unanswered(connect_from(CLIENT, n1.ftp), b"USER alice\r\n");
    closed_unanswered(connect_from(CLIENT, n2.sftp), b"SSH-2.0-test\r\n");

    // A node killed (SIGKILL) while an upload replaces an object: the old object stays, and
    // the other node serves it.
    let mut c1 = ftp_on(front, "n1");
    let mut data = pasv(&mut c1);
    let first = cmd(&mut c1, "STOR /shared/up.bin");
    assert!(first.starts_with("150"), "{first}");
    let chunk = content(1 << 20, 43);
    let mut sent = 0;
    while moto::open_uploads(endpoint, &bucket) == 0 {
        assert!(sent < 64, "no multipart upload under way after 64 MiB");
        data.write_all(&chunk).unwrap();
        sent += 1;
    }
    n1.proc.child.kill().unwrap();
    n1.proc.child.wait().unwrap();
    drop(data);
    drop(c1);
    assert_eq!(boto3_objects(endpoint, &bucket), objects);
    let mut c2 = ftp_on(front, "n2");
    assert!(retr(&mut c2, "/shared/up.bin") == body);
    assert!(cmd(&mut c2, "QUIT").starts_with("221"));
}

#[test]
fn healthz_on_s3_says_so_when_the_store_does_not_answer() {
    // An endpoint nobody listens on: the node starts (the store is reached lazily) and
    // reports its storage down.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let range = free_range(&[Ipv4Addr::new(127, 0, 0, 13)], 2);
    let home = Home::S3 {
        endpoint: closed,
        bucket: "nowhere",
    };
    let n = node(dir.path(), "n1", Ipv4Addr::new(127, 0, 0, 13), range, &home);
    assert_eq!(
        http_get(n.metrics, "/healthz"),
        (503, "storage unavailable\n".to_string())
    );
}
