//! FTP over TLS (RFC 4217): explicit and implicit, policy, data-channel session reuse, and a
//! byte recorder proving that nothing secret crosses in the clear.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use common::*;
use ferry_ftpd::TlsPolicy;
use ferry_ftpd::tls::{CertStore, TlsConfig, certified_key_from_pem, generate_self_signed};
use ferry_proto::{Reply, ReplyDecoder};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Every byte that crossed a socket, both directions.
type Log = Arc<Mutex<Vec<u8>>>;

/// A TCP stream that records what it reads and writes.
struct Recorded {
    inner: TcpStream,
    log: Log,
}

impl AsyncRead for Recorded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut me.inner).poll_read(cx, buf);
        me.log
            .lock()
            .unwrap()
            .extend_from_slice(&buf.filled()[before..]);
        r
    }
}

impl AsyncWrite for Recorded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            me.log.lock().unwrap().extend_from_slice(&buf[..*n]);
        }
        r
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

enum Conn {
    Plain(Recorded),
    Tls(Box<TlsStream<Recorded>>),
    Gone,
}

impl Conn {
    async fn write_all(&mut self, b: &[u8]) {
        match self {
            Conn::Plain(s) => s.write_all(b).await.unwrap(),
            Conn::Tls(s) => {
                s.write_all(b).await.unwrap();
                s.flush().await.unwrap();
            }
            Conn::Gone => panic!("gone"),
        }
    }
    async fn read(&mut self, b: &mut [u8]) -> usize {
        match self {
            Conn::Plain(s) => s.read(b).await.unwrap(),
            Conn::Tls(s) => s.read(b).await.unwrap(),
            Conn::Gone => panic!("gone"),
        }
    }
}

struct Fixture {
    server: TestServer,
    cert_pem: String,
    log: Log,
}

fn cert() -> (String, String) {
    let g = generate_self_signed(&["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    (g.cert_pem, g.key_pem)
}

async fn start(tweak: impl FnOnce(&mut TlsConfig) + Send) -> Fixture {
    start_with(tweak, |_| {}).await
}

async fn start_with(
    tweak: impl FnOnce(&mut TlsConfig) + Send,
    server: impl FnOnce(&mut ferry_ftpd::ServerConfig),
) -> Fixture {
    let (cert_pem, key_pem) = cert();
    let store =
        CertStore::new(certified_key_from_pem(cert_pem.as_bytes(), key_pem.as_bytes()).unwrap());
    let mut tls = TlsConfig::new(store).unwrap();
    tweak(&mut tls);
    let server = TestServer::start_with(move |c| {
        c.tls = Some(tls);
        c.implicit_tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
        server(c);
    })
    .await;
    Fixture {
        server,
        cert_pem,
        log: Log::default(),
    }
}

/// A client configuration trusting `cert_pem`, for the TLS `versions` given.
fn client_config(
    cert_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> rustls::ClientConfig {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

fn connector(cert_pem: &str, resume: bool) -> TlsConnector {
    let mut config = client_config(cert_pem, rustls::DEFAULT_VERSIONS);
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    TlsConnector::from(Arc::new(config))
}

/// A TLS 1.2 client resuming with tickets, or with session IDs only.
fn connector_tls12(cert_pem: &str, session_ids: bool) -> TlsConnector {
    let mut config = client_config(cert_pem, &[&rustls::version::TLS12]);
    if session_ids {
        config.resumption = rustls::client::Resumption::default()
            .tls12_resumption(rustls::client::Tls12Resumption::SessionIdOnly);
    }
    TlsConnector::from(Arc::new(config))
}

/// A control connection that can switch to TLS, recording all raw bytes.
struct TlsCtrl {
    conn: Conn,
    decoder: ReplyDecoder,
    connector: TlsConnector,
    log: Log,
    addr: SocketAddr,
    /// `PROT P` is in force: data connections are TLS.
    private: bool,
}

impl TlsCtrl {
    async fn connect(f: &Fixture, resume: bool) -> TlsCtrl {
        Self::connect_to(f, f.server.addr(), resume, false).await
    }

    async fn connect_to(f: &Fixture, addr: SocketAddr, resume: bool, implicit: bool) -> TlsCtrl {
        let tcp = TcpStream::connect(addr).await.unwrap();
        Self::over(f, tcp, addr, resume, implicit).await
    }

    /// A control connection through a balancer, which sends `header` (PROXY protocol) first.
    async fn connect_behind(f: &Fixture, header: &[u8]) -> TlsCtrl {
        let addr = f.server.addr();
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(header).await.unwrap();
        Self::over(f, tcp, addr, true, false).await
    }

    async fn over(
        f: &Fixture,
        tcp: TcpStream,
        addr: SocketAddr,
        resume: bool,
        implicit: bool,
    ) -> TlsCtrl {
        let rec = Recorded {
            inner: tcp,
            log: Arc::clone(&f.log),
        };
        let connector = connector(&f.cert_pem, resume);
        let conn = if implicit {
            let name = ServerName::try_from("localhost").unwrap();
            Conn::Tls(Box::new(connector.connect(name, rec).await.unwrap()))
        } else {
            Conn::Plain(rec)
        };
        let mut c = TlsCtrl {
            conn,
            decoder: ReplyDecoder::default(),
            connector,
            log: Arc::clone(&f.log),
            addr,
            private: false,
        };
        assert_eq!(c.read_reply().await.code, 220);
        c
    }

    async fn read_reply(&mut self) -> Reply {
        let fut = async {
            loop {
                if let Some(r) = self.decoder.next_reply().unwrap() {
                    return r;
                }
                let mut buf = [0u8; 4096];
                let n = self.conn.read(&mut buf).await;
                assert!(n > 0, "control connection closed");
                self.decoder.extend(&buf[..n]);
            }
        };
        tokio::time::timeout(WAIT, fut)
            .await
            .expect("no reply in time")
    }

    async fn cmd(&mut self, line: &str) -> Reply {
        self.conn.write_all(format!("{line}\r\n").as_bytes()).await;
        self.read_reply().await
    }

    async fn expect(&mut self, line: &str, code: u16) -> Reply {
        let r = self.cmd(line).await;
        assert_eq!(r.code, code, "{line} -> {r:?}");
        r
    }

    async fn auth_tls(&mut self) {
        self.expect("AUTH TLS", 234).await;
        self.upgrade().await;
    }

    async fn upgrade(&mut self) {
        let Conn::Plain(rec) = std::mem::replace(&mut self.conn, Conn::Gone) else {
            panic!("already TLS")
        };
        let name = ServerName::try_from("localhost").unwrap();
        self.conn = Conn::Tls(Box::new(self.connector.connect(name, rec).await.unwrap()));
    }

    async fn secure_login(&mut self) {
        self.secure_login_as(USER).await;
    }

    async fn secure_login_as(&mut self, user: &str) {
        self.auth_tls().await;
        self.expect("PBSZ 0", 200).await;
        self.expect("PROT P", 200).await;
        self.private = true;
        self.expect(&format!("USER {user}"), 331).await;
        self.expect(&format!("PASS {PASSWORD}"), 230).await;
        self.expect("TYPE I", 200).await;
    }

    async fn tls_data(&self, tcp: TcpStream) -> std::io::Result<TlsStream<Recorded>> {
        let rec = Recorded {
            inner: tcp,
            log: Arc::clone(&self.log),
        };
        self.connector
            .connect(ServerName::try_from("localhost").unwrap(), rec)
            .await
    }

    async fn epsv(&mut self) -> SocketAddr {
        let r = self.expect("EPSV", 229).await;
        SocketAddr::new(
            self.addr.ip(),
            ferry_proto::hostport::parse_epsv_reply_text(&r.text()).unwrap(),
        )
    }

    /// A download the server must refuse at the data connection: no byte of `path` may come
    /// through. Returns the final reply, and whether the client's side of the data
    /// connection's handshake resumed a session (`None` if the handshake failed).
    async fn refused_get(&mut self, path: &str) -> (Reply, Option<bool>) {
        let addr = self.epsv().await;
        let tcp = TcpStream::connect(addr).await.unwrap();
        self.expect(&format!("RETR {path}"), 150).await;
        let mut resumed = None;
        if let Ok(mut d) = self.tls_data(tcp).await {
            resumed = Some(d.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed));
            let mut buf = Vec::new();
            let _ = d.read_to_end(&mut buf).await;
            assert!(
                buf.is_empty(),
                "{path} came through a refused data connection"
            );
        }
        (self.read_reply().await, resumed)
    }

    /// Download over a protected passive connection.
    async fn get(&mut self, path: &str) -> (Vec<u8>, Reply) {
        self.get_with(&format!("RETR {path}")).await
    }

    /// What `command` (`RETR`, a listing) sends over a protected passive connection.
    async fn get_with(&mut self, command: &str) -> (Vec<u8>, Reply) {
        let addr = self.epsv().await;
        let tcp = TcpStream::connect(addr).await.unwrap();
        self.expect(command, 150).await;
        let mut data = self.tls_data(tcp).await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(WAIT, data.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        (got, self.read_reply().await)
    }

    /// Upload over a protected passive (or active, via PORT) connection.
    async fn put(&mut self, path: &str, body: &[u8], active: bool) -> Reply {
        let tcp = if active {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let SocketAddr::V4(a) = l.local_addr().unwrap() else {
                unreachable!()
            };
            self.expect(
                &format!("PORT {}", ferry_proto::hostport::format_port_arg(a)),
                200,
            )
            .await;
            self.expect(&format!("STOR {path}"), 150).await;
            accept(&l).await
        } else {
            let addr = self.epsv().await;
            let tcp = TcpStream::connect(addr).await.unwrap();
            self.expect(&format!("STOR {path}"), 150).await;
            tcp
        };
        let mut data = self.tls_data(tcp).await.unwrap();
        data.write_all(body).await.unwrap();
        data.shutdown().await.unwrap();
        drop(data);
        self.read_reply().await
    }
}

impl soup::SoupControl for TlsCtrl {
    async fn send_raw(&mut self, bytes: &[u8]) {
        self.conn.write_all(bytes).await;
    }
    async fn read_reply(&mut self) -> Reply {
        TlsCtrl::read_reply(self).await
    }
    async fn data(&mut self, tcp: TcpStream) -> Option<Box<dyn soup::DataIo>> {
        if self.private {
            let tls = self.tls_data(tcp).await.ok()?;
            Some(Box::new(tls))
        } else {
            Some(Box::new(tcp))
        }
    }
    fn observe(&mut self, line: &str, reply: &Reply) {
        let mut words = line.split(' ');
        let verb = words.next().unwrap_or_default();
        if verb.eq_ignore_ascii_case("PROT") && reply.code == 200 {
            self.private = words.next().is_some_and(|l| l.eq_ignore_ascii_case("P"));
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn required_tls_protects_password_and_files() {
    let f = start(|_| {}).await;
    let secret = content(200_000, 42);
    std::fs::write(f.server.path("secret.bin"), &secret).unwrap();

    // Clear-text login attempts are refused with the reason.
    let mut c = TlsCtrl::connect(&f, true).await;
    let r = c.expect(&format!("USER {USER}"), 530).await;
    assert!(r.text().contains("AUTH TLS"), "{r:?}");
    c.expect("PBSZ 0", 503).await;
    c.expect("PROT P", 503).await;
    let feat = c.expect("FEAT", 211).await;
    for f in ["AUTH TLS", "PBSZ", "PROT"] {
        assert!(feat.lines.iter().any(|l| l.trim() == f), "FEAT lacks {f}");
    }

    c.auth_tls().await;
    c.expect("AUTH TLS", 503).await;
    c.expect("PROT P", 503).await; // PBSZ first
    c.expect("PBSZ 0", 200).await;
    c.expect("PROT S", 536).await;
    c.expect("PROT E", 536).await;
    c.expect("PROT C", 534).await;
    c.expect(&format!("USER {USER}"), 331).await;
    c.expect(&format!("PASS {PASSWORD}"), 230).await;
    c.expect("TYPE I", 200).await;
    // No PROT P yet: data connections are refused before they open.
    c.expect("EPSV", 229).await;
    c.expect("RETR secret.bin", 521).await;
    c.expect("PROT P", 200).await;

    let (got, done) = c.get("secret.bin").await;
    assert_eq!(done.code, 226, "{done:?}");
    assert_eq!(sha256(&got), sha256(&secret));
    let upload = content(150_000, 43);
    let r = c.put("up-passive.bin", &upload, false).await;
    assert_eq!(r.code, 226, "{r:?}");
    assert_eq!(c.put("up-active.bin", &upload, true).await.code, 226);
    assert_eq!(
        sha256(&std::fs::read(f.server.path("up-active.bin")).unwrap()),
        sha256(&upload)
    );
    let (list, done) = c.get("up-passive.bin").await;
    assert_eq!((done.code, list.len()), (226, upload.len()));

    let log = f.log.lock().unwrap().clone();
    assert!(log.len() > 500_000, "the recorder saw the traffic");
    assert!(
        !contains(&log, PASSWORD.as_bytes()),
        "password crossed in the clear"
    );
    assert!(
        !contains(&log, &secret[1000..1064]),
        "download crossed in the clear"
    );
    assert!(
        !contains(&log, &upload[1000..1064]),
        "upload crossed in the clear"
    );
}

#[tokio::test]
async fn many_transfers_keep_resuming_the_session() {
    let f = start(|_| {}).await;
    std::fs::write(f.server.path("f"), b"small").unwrap();
    let mut c = TlsCtrl::connect(&f, true).await;
    c.secure_login().await;
    for i in 0..25 {
        let (got, done) = c.get("f").await;
        assert_eq!(done.code, 226, "transfer {i}: {done:?}");
        assert_eq!(got, b"small");
    }
    // Uploads get no fresh tickets (see `TlsConfig::acceptor`); a client that uses each ticket
    // once still has the ones from the control handshake and the last download.
    for i in 0..6 {
        let body = content(70_000, i);
        let r = c.put(&format!("u{i}"), &body, i % 2 == 0).await;
        assert_eq!(r.code, 226, "upload {i}: {r:?}");
        assert_eq!(
            sha256(&std::fs::read(f.server.path(&format!("u{i}"))).unwrap()),
            sha256(&body)
        );
    }
}

#[tokio::test]
async fn tls12_clients_resume_on_data_connections() {
    // By ticket and by session ID; each data connection resumes the control connection's
    // session (reuse is required by default).
    let f = start(|_| {}).await;
    std::fs::write(f.server.path("f"), b"twelve").unwrap();
    for session_ids in [false, true] {
        let mut c = TlsCtrl::connect(&f, true).await;
        c.connector = connector_tls12(&f.cert_pem, session_ids);
        c.secure_login().await;
        for i in 0..3 {
            let (got, done) = c.get("f").await;
            assert_eq!(
                done.code, 226,
                "session ids {session_ids}, transfer {i}: {done:?}"
            );
            assert_eq!(got, b"twelve");
        }
        let r = c.put(&format!("up{session_ids}"), b"body", false).await;
        assert_eq!(r.code, 226, "{r:?}");
        c.expect("QUIT", 221).await;
    }
}

#[tokio::test]
async fn large_downloads_are_sealed_on_the_blocking_pool() {
    // From 1 MiB on, a TLS download is sealed on the blocking pool while the socket sends the
    // previous batch: the same bytes, encrypted, ending in close_notify (`read_to_end` fails
    // without one); from an offset too, on TLS 1.3 and 1.2, and the session goes on resuming.
    let f = start(|_| {}).await;
    let body = content(5 * 1024 * 1024 + 4321, 77);
    std::fs::write(f.server.path("big.bin"), &body).unwrap();
    for tls12 in [false, true] {
        let mut c = TlsCtrl::connect(&f, true).await;
        if tls12 {
            c.connector = connector_tls12(&f.cert_pem, false);
        }
        c.secure_login().await;
        let before = f.server.counters.sealed_download_bytes();
        let (got, done) = c.get("big.bin").await;
        assert_eq!(done.code, 226, "tls12 {tls12}: {done:?}");
        assert_eq!(sha256(&got), sha256(&body), "tls12 {tls12}");
        assert_eq!(
            f.server.counters.sealed_download_bytes() - before,
            body.len() as u64,
            "not sealed on the blocking pool"
        );
        let at = 1024 * 1024 + 17;
        c.expect(&format!("REST {at}"), 350).await;
        let (got, done) = c.get("big.bin").await;
        assert_eq!(done.code, 226, "{done:?}");
        assert_eq!(sha256(&got), sha256(&body[at..]));
        // Below the threshold, the usual path; the session still resumes.
        c.expect(&format!("REST {}", body.len() - 1000), 350).await;
        let (got, done) = c.get("big.bin").await;
        assert_eq!(
            (done.code, got.as_slice()),
            (226, &body[body.len() - 1000..])
        );
        c.expect("QUIT", 221).await;
    }
    let log = f.log.lock().unwrap().clone();
    assert!(
        !contains(&log, &body[3_000_000..3_000_064]),
        "download crossed in the clear"
    );
}

#[tokio::test]
async fn sealed_downloads_can_be_aborted_or_abandoned() {
    let f = start(|_| {}).await;
    let body = content(48 * 1024 * 1024, 78);
    std::fs::write(f.server.path("huge"), &body).unwrap();
    let mut c = TlsCtrl::connect(&f, true).await;
    c.secure_login().await;
    // ABOR after a little was read: 426 for the transfer, 226 for the ABOR.
    let addr = c.epsv().await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    c.expect("RETR huge", 150).await;
    let mut data = c.tls_data(tcp).await.unwrap();
    let mut buf = vec![0u8; 65536];
    data.read_exact(&mut buf).await.unwrap();
    assert_eq!(buf, body[..65536]);
    let first = c.cmd("ABOR").await;
    let second = c.read_reply().await;
    assert_aborted(&first, &second);
    drop(data);
    // The client goes away mid-download: 426, and the session goes on.
    let addr = c.epsv().await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    c.expect("RETR huge", 150).await;
    let mut data = c.tls_data(tcp).await.unwrap();
    data.read_exact(&mut buf).await.unwrap();
    drop(data);
    let done = c.read_reply().await;
    assert_eq!(done.code, 426, "{done:?}");
    c.expect("NOOP", 200).await;
    let (got, done) = c.get("huge").await;
    assert_eq!(done.code, 226, "{done:?}");
    assert_eq!(sha256(&got), sha256(&body));
}

#[test]
fn stalled_transfers_hold_no_blocking_thread() {
    // Large downloads seal, large uploads write, and listings read the directory on the
    // blocking pool, which storage calls need too. A client that stops reading a download or a
    // listing, or sending an upload, must not keep a thread of it: with two threads and two
    // stalled transfers of each kind (any kind holding its threads starves the rest), a failed
    // login and a listing are still answered.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let f = rt.block_on(start(|_| {}));
    let body = content(32 * 1024 * 1024, 79);
    std::fs::write(f.server.path("huge"), &body).unwrap();
    // Far more entries than a listing's reader keeps ahead of the sender, with long names.
    // Made before the clock starts: on a busy machine that alone takes seconds.
    std::fs::create_dir(f.server.path("many")).unwrap();
    for i in 0..30000 {
        let name = format!("{i:05}-{}", "n".repeat(200));
        std::fs::write(f.server.path(&format!("many/{name}")), b"").unwrap();
    }
    let test = async {
        let mut stalled = Vec::new();
        for verb in ["RETR huge", "STOR stalled", "LIST many"].repeat(2) {
            let mut c = TlsCtrl::connect(&f, true).await;
            c.secure_login().await;
            let addr = c.epsv().await;
            // A small receive window, so that the server's writes stop soon after ours do.
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.set_recv_buffer_size(4096).unwrap();
            let tcp = socket.connect(addr).await.unwrap();
            c.expect(verb, 150).await;
            let mut data = c.tls_data(tcp).await.unwrap();
            if verb.starts_with("STOR") {
                // Past the first 4 MiB (written from the session), then nothing more.
                data.write_all(&body[..9 * 1024 * 1024]).await.unwrap();
                data.flush().await.unwrap();
            } else {
                let mut buf = vec![0u8; 4096];
                data.read_exact(&mut buf).await.unwrap();
            }
            stalled.push((c, data));
        }
        // Every transfer has moved and then stopped: its count stays put between checks.
        for (c, _) in &mut stalled {
            let wait = Deadline::new("a transfer to stall");
            let mut last = None;
            loop {
                let now = progress_in(&c.expect("STAT", 211).await);
                if now.is_some_and(|n| n > 0) && now == last {
                    break;
                }
                last = now;
                wait.tick().await;
                tokio::time::sleep(std::time::Duration::from_millis(40)).await;
            }
        }
        let mut c = TlsCtrl::connect(&f, true).await;
        c.auth_tls().await;
        c.expect(&format!("USER {USER}"), 331).await;
        c.expect("PASS not-the-password", 530).await;
        c.expect(&format!("USER {USER}"), 331).await;
        c.expect(&format!("PASS {PASSWORD}"), 230).await;
        c.expect("PBSZ 0", 200).await;
        c.expect("PROT P", 200).await;
        let (list, done) = c.get_with("NLST").await;
        assert_eq!(done.code, 226, "{done:?}");
        assert!(
            contains(&list, b"huge"),
            "{}",
            String::from_utf8_lossy(&list)
        );
        drop(stalled);
    };
    rt.block_on(async {
        tokio::time::timeout(WAIT, test)
            .await
            .expect("stalled transfers kept the blocking pool busy")
    });
    drop(f);
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
}

#[tokio::test]
async fn uploads_ended_without_close_notify_are_complete() {
    // Most FTPS clients end an upload by closing TCP without a TLS close_notify; the server
    // takes that as the end of the file, as vsftpd does. Small (written from the session) and
    // large (written by blocking-pool jobs) uploads alike.
    let f = start(|_| {}).await;
    let mut c = TlsCtrl::connect(&f, true).await;
    c.secure_login().await;
    for (i, len) in [70_000usize, 6 * 1024 * 1024 + 5].into_iter().enumerate() {
        let body = content(len, 50 + i as u64);
        let addr = c.epsv().await;
        let tcp = TcpStream::connect(addr).await.unwrap();
        c.expect(&format!("STOR n{i}"), 150).await;
        let mut data = c.tls_data(tcp).await.unwrap();
        data.write_all(&body).await.unwrap();
        data.flush().await.unwrap();
        // TCP FIN only: no close_notify.
        data.get_mut().0.inner.shutdown().await.unwrap();
        let done = c.read_reply().await;
        drop(data);
        assert_eq!(done.code, 226, "upload of {len} bytes: {done:?}");
        assert_eq!(
            sha256(&std::fs::read(f.server.path(&format!("n{i}"))).unwrap()),
            sha256(&body)
        );
    }
}

#[tokio::test]
async fn data_connection_without_session_reuse_is_refused_unless_relaxed() {
    let f = start(|_| {}).await;
    std::fs::write(f.server.path("f"), b"x").unwrap();
    let mut c = TlsCtrl::connect(&f, false).await;
    c.secure_login().await;
    let (r, _) = c.refused_get("f").await;
    assert_eq!(r.code, 522, "{r:?}");
    assert!(r.text().contains("reuse"), "{r:?}");
    c.expect("NOOP", 200).await;

    let f = start(|t| t.require_session_reuse = false).await;
    std::fs::write(f.server.path("f"), b"x").unwrap();
    let mut c = TlsCtrl::connect(&f, false).await;
    c.secure_login().await;
    let (got, done) = c.get("f").await;
    assert_eq!((got.as_slice(), done.code), (&b"x"[..], 226));
}

type MakeConnector = fn(&str) -> TlsConnector;

/// Clients resuming by TLS 1.3 ticket, TLS 1.2 ticket and TLS 1.2 session ID.
const RESUMPTION_KINDS: [(&str, MakeConnector); 3] = [
    ("TLS 1.3 tickets", |pem| connector(pem, true)),
    ("TLS 1.2 tickets", |pem| connector_tls12(pem, false)),
    ("TLS 1.2 session IDs", |pem| connector_tls12(pem, true)),
];

impl TlsCtrl {
    /// A control connection to `addr` logged in as `user` with PROT P, whose client's TLS
    /// sessions come from this connection only (a fresh connector made by `make`).
    async fn logged_in(f: &Fixture, addr: SocketAddr, user: &str, make: MakeConnector) -> TlsCtrl {
        let mut c = TlsCtrl::connect_to(f, addr, true, false).await;
        c.connector = make(&f.cert_pem);
        c.secure_login_as(user).await;
        c
    }
}

#[tokio::test]
async fn a_data_connection_cannot_resume_another_users_session() {
    // The point of required reuse: a data connection proves it comes from a TLS client that
    // logged in as its control connection's user. Another user's tickets (or TLS 1.2 session
    // IDs), although issued by this server, prove nothing.
    let f = start(|_| {}).await;
    std::fs::write(f.server.path("f"), b"secret").unwrap();
    let addr = f.server.addr();
    for (kind, make) in RESUMPTION_KINDS {
        let mut a = TlsCtrl::logged_in(&f, addr, USER, make).await;
        let (got, done) = a.get("f").await;
        assert_eq!((got.as_slice(), done.code), (&b"secret"[..], 226), "{kind}");
        let mut b = TlsCtrl::logged_in(&f, addr, READER, make).await;
        // B's data connections offer what A's client holds only.
        let own = std::mem::replace(&mut b.connector, a.connector.clone());
        let (r, resumed) = b.refused_get("f").await;
        assert_eq!(r.code, 522, "{kind}: {r:?}");
        assert_eq!(
            resumed,
            Some(false),
            "{kind}: resumed another user's session"
        );
        // With its own, B's next data connection resumes.
        b.connector = own;
        let (got, done) = b.get("f").await;
        assert_eq!((got.as_slice(), done.code), (&b"secret"[..], 226), "{kind}");
    }
    // Anyone can log in as anonymous: anonymous sessions share nothing.
    std::fs::write(f.server.anon_root.path().join("pub"), b"public").unwrap();
    let a = TlsCtrl::logged_in(&f, addr, "anonymous", RESUMPTION_KINDS[0].1).await;
    let mut b = TlsCtrl::logged_in(&f, addr, "anonymous", RESUMPTION_KINDS[0].1).await;
    b.connector = a.connector.clone();
    let (r, _) = b.refused_get("pub").await;
    assert_eq!(r.code, 522, "anonymous: {r:?}");
}

/// A session another control connection of the same user received proves nothing from another
/// address (here the same user over `::1`, the issuer over 127.0.0.1).
#[tokio::test]
async fn a_data_connection_may_not_resume_a_session_from_another_address_ipv6() {
    require_ipv6();
    let f = start_with(|_| {}, |c| c.listen.push("[::1]:0".parse().unwrap())).await;
    std::fs::write(f.server.path("f"), b"shared").unwrap();
    let (v4, v6) = (f.server.addrs[0], f.server.addrs[1]);
    for (kind, make) in RESUMPTION_KINDS {
        let a = TlsCtrl::logged_in(&f, v4, USER, make).await;
        let mut b = TlsCtrl::logged_in(&f, v6, USER, make).await;
        b.connector = a.connector.clone();
        let (r, resumed) = b.refused_get("f").await;
        assert_eq!(r.code, 522, "{kind}, from another address: {r:?}");
        assert_eq!(resumed, Some(false), "{kind}: resumed from another address");
    }
}

#[tokio::test]
async fn a_data_connection_may_resume_its_users_other_live_session_from_its_address() {
    // Clients such as rclone share one TLS session cache among parallel control connections:
    // a data connection may offer a session another control connection received. Accepted
    // while that one is logged in as the same user from the same address; refused from
    // another address (`..._from_another_address_ipv6`), or once it has logged out or gone.
    let f = start(|_| {}).await;
    std::fs::write(f.server.path("f"), b"shared").unwrap();
    let v4 = f.server.addrs[0];
    for (kind, make) in RESUMPTION_KINDS {
        // Each check borrows a fresh issuer's sessions: a data connection's handshake leaves
        // tickets of its own session in the client it used.
        let a = TlsCtrl::logged_in(&f, v4, USER, make).await;
        let mut b = TlsCtrl::logged_in(&f, v4, USER, make).await;
        b.connector = a.connector.clone();
        let (got, done) = b.get("f").await;
        assert_eq!((got.as_slice(), done.code), (&b"shared"[..], 226), "{kind}");

        let mut a = TlsCtrl::logged_in(&f, v4, USER, make).await;
        let mut b = TlsCtrl::logged_in(&f, v4, USER, make).await;
        b.connector = a.connector.clone();
        a.expect("REIN", 220).await;
        let (r, _) = b.refused_get("f").await;
        assert_eq!(r.code, 522, "{kind}, issuer logged out: {r:?}");

        let mut a = TlsCtrl::logged_in(&f, v4, USER, make).await;
        let mut b = TlsCtrl::logged_in(&f, v4, USER, make).await;
        b.connector = a.connector.clone();
        a.expect("QUIT", 221).await;
        // The session is gone once its connection closes.
        let mut rest = [0u8; 64];
        let closed = tokio::time::timeout(WAIT, async {
            let Conn::Tls(tls) = &mut a.conn else {
                panic!("not TLS")
            };
            while tls.read(&mut rest).await.unwrap_or(0) > 0 {}
        });
        closed
            .await
            .expect("the server kept the connection after QUIT");
        let (r, _) = b.refused_get("f").await;
        assert_eq!(r.code, 522, "{kind}, issuer gone: {r:?}");
    }

    // The issuer is still logging in when the data connection offers its session: the proof
    // waits for the login.
    let mut a = TlsCtrl::connect_to(&f, v4, true, false).await;
    a.auth_tls().await;
    // Reading a reply takes in the TLS 1.3 tickets sent after the handshake.
    a.expect("PBSZ 0", 200).await;
    let mut b = TlsCtrl::logged_in(&f, v4, USER, RESUMPTION_KINDS[0].1).await;
    b.connector = a.connector.clone();
    let addr = b.epsv().await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    b.expect("RETR f", 150).await;
    let mut data = b.tls_data(tcp).await.unwrap();
    // The server sends a download's tickets once the handshake is done, just before it checks
    // the session it resumed: when they arrive, the check has found the login under way.
    let mut peeked = [0u8; 1];
    tokio::time::timeout(WAIT, data.get_ref().0.inner.peek(&mut peeked))
        .await
        .unwrap()
        .unwrap();
    a.expect(&format!("USER {USER}"), 331).await;
    a.expect(&format!("PASS {PASSWORD}"), 230).await;
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, data.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    let done = b.read_reply().await;
    assert_eq!(
        (got.as_slice(), done.code),
        (&b"shared"[..], 226),
        "login under way"
    );
}

#[tokio::test]
async fn connections_refused_or_stalled_on_a_passive_port_do_not_cost_the_client_its_transfer() {
    // Another program at the client's address connects to the passive port first. Refused (it
    // holds no session of this user's), or stalled before its handshake, it must not take the
    // transfer: the client's own connection, arriving next, gets the file.
    let f = start(|_| {}).await;
    let body = content(100_000, 60);
    std::fs::write(f.server.path("f"), &body).unwrap();
    let mut v = TlsCtrl::connect(&f, true).await;
    v.secure_login().await;
    let name = || ServerName::try_from("localhost").unwrap();
    let stranger = connector(&f.cert_pem, false);
    /// The client's own data connection to `addr` for a download of `body` under way.
    async fn own_connection(v: &mut TlsCtrl, addr: SocketAddr, body: &[u8]) -> Reply {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut data = v.tls_data(tcp).await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(WAIT, data.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert!(got == body, "the client's download differs");
        v.read_reply().await
    }

    // Refused first: a full handshake without any session of this server's.
    let addr = v.epsv().await;
    let first = TcpStream::connect(addr).await.unwrap();
    v.expect("RETR f", 150).await;
    let mut first = stranger.connect(name(), first).await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(WAIT, first.read_to_end(&mut got))
        .await
        .expect("the refused connection was kept open");
    assert!(got.is_empty(), "the stranger got data");
    let done = own_connection(&mut v, addr, &body).await;
    assert_eq!(done.code, 226, "after a refused connection: {done:?}");

    // Stalled first: connected, never starting its handshake.
    let addr = v.epsv().await;
    let stalled = TcpStream::connect(addr).await.unwrap();
    v.expect("RETR f", 150).await;
    let done = own_connection(&mut v, addr, &body).await;
    assert_eq!(done.code, 226, "after a stalled connection: {done:?}");
    drop(stalled);

    // More stalled connections than handshakes run at once: the oldest give way.
    let addr = v.epsv().await;
    v.expect("RETR f", 150).await;
    let mut stalled = Vec::new();
    for _ in 0..12 {
        stalled.push(TcpStream::connect(addr).await.unwrap());
    }
    let done = own_connection(&mut v, addr, &body).await;
    assert_eq!(
        done.code, 226,
        "after a dozen stalled connections: {done:?}"
    );
    drop(stalled);
    v.expect("NOOP", 200).await;
}

#[tokio::test]
async fn data_handshakes_begun_before_the_command_are_answered_at_once() {
    // Some clients start the TLS handshake on a passive data connection as soon as it
    // connects, and send the transfer command only afterwards (aioftp waits for the handshake
    // to end first; curl sends other commands meanwhile). The handshake is answered at once,
    // the session still resumes, and uploads, downloads and listings all work.
    let f = start(|_| {}).await;
    let body = content(300_000, 61);
    std::fs::write(f.server.path("f"), &body).unwrap();
    let mut c = TlsCtrl::connect(&f, true).await;
    c.secure_login().await;
    // More transfers than the tickets the control connection's handshake gave: the client
    // uses each ticket once.
    for round in 0..3 {
        for command in ["RETR f", "STOR up", "LIST", "MLSD", "NLST"] {
            let addr = c.epsv().await;
            let tcp = TcpStream::connect(addr).await.unwrap();
            let mut data = tokio::time::timeout(WAIT, c.tls_data(tcp))
                .await
                .unwrap_or_else(|_| panic!("{command}: the handshake waited for the command"))
                .unwrap();
            assert_eq!(
                data.get_ref().1.handshake_kind(),
                Some(rustls::HandshakeKind::Resumed),
                "{command}"
            );
            // Commands on the control connection go on meanwhile.
            c.expect("TYPE I", 200).await;
            c.expect(command, 150).await;
            let mut got = Vec::new();
            if command == "STOR up" {
                data.write_all(&body).await.unwrap();
                data.shutdown().await.unwrap();
                // Whatever the server sent: its close_notify, and no ticket.
                let mut rest = Vec::new();
                let _ = tokio::time::timeout(WAIT, data.read_to_end(&mut rest)).await;
            } else {
                tokio::time::timeout(WAIT, data.read_to_end(&mut got))
                    .await
                    .unwrap()
                    .unwrap();
            }
            // Tickets replenish the client's on downloads and listings only: an upload's
            // client may never read them (see `TlsConfig::config`).
            let tickets = data.get_ref().1.tls13_tickets_received();
            let upload = command.starts_with("STOR");
            assert_eq!(tickets > 0, !upload, "{command}: {tickets} tickets");
            let done = c.read_reply().await;
            assert_eq!(done.code, 226, "round {round}, {command}: {done:?}");
            match command {
                "RETR f" => assert!(got == body, "the download differs"),
                "STOR up" => assert!(std::fs::read(f.server.path("up")).unwrap() == body),
                _ => assert!(contains(&got, b"up"), "{}", String::from_utf8_lossy(&got)),
            }
        }
    }
}

#[tokio::test]
async fn a_protected_passive_port_nobody_uses_is_given_up() {
    // Waited on from PASV on, a protected passive port is given back when no transfer command
    // comes within the data-connect timeout: one idle session cannot hold it.
    let port = quiet_ports(10) + 7;
    let f = start_with(
        |_| {},
        |c| {
            c.passive_ports = Some((port, port));
            c.data_connect_timeout = Duration::from_millis(500);
        },
    )
    .await;
    std::fs::write(f.server.path("f"), b"x").unwrap();
    let mut idle = TlsCtrl::connect(&f, true).await;
    idle.secure_login().await;
    idle.epsv().await;
    let mut other = TlsCtrl::connect(&f, true).await;
    other.secure_login().await;
    assert_eq!(other.cmd("EPSV").await.code, 425, "the only port is taken");
    let freed = tokio::time::timeout(WAIT, async {
        while other.cmd("EPSV").await.code != 229 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    freed.await.expect("the idle session kept the port");
    // A new EPSV gives up the session's last port at once, and takes it again.
    let (got, done) = other.get_with("RETR f").await;
    assert_eq!((got.as_slice(), done.code), (&b"x"[..], 226));
    // The idle session's late command hears that its port is gone.
    let r = idle.cmd("RETR f").await;
    let r = if r.code == 150 {
        idle.read_reply().await
    } else {
        r
    };
    assert_eq!(r.code, 425, "{r:?}");
}

#[tokio::test]
async fn a_ticketer_that_is_not_ferrys_proves_nothing() {
    // Resumption proves the data connection's owner only through Ferry's own ticketer (which
    // binds tickets to their control connection); with another one, required reuse fails
    // closed rather than accepting any resumed session.
    let f = start(|t| {
        let mut config = (*t.rustls).clone();
        config.ticketer = rustls::crypto::ring::Ticketer::new().unwrap();
        config.session_storage = rustls::server::ServerSessionMemoryCache::new(64);
        t.rustls = Arc::new(config);
        t.rustls_upload = Arc::clone(&t.rustls);
    })
    .await;
    std::fs::write(f.server.path("f"), b"x").unwrap();
    let mut c = TlsCtrl::connect(&f, true).await;
    c.secure_login().await;
    let (r, resumed) = c.refused_get("f").await;
    assert_eq!(resumed, Some(true), "the client did resume");
    assert_eq!(r.code, 522, "{r:?}");
}

#[tokio::test]
async fn implicit_tls_listener() {
    let f = start(|_| {}).await;
    std::fs::write(f.server.path("f"), b"implicit").unwrap();
    let addr = f.server_implicit_addr();
    let mut c = TlsCtrl::connect_to(&f, addr, true, true).await;
    c.expect(&format!("USER {USER}"), 331).await;
    c.expect(&format!("PASS {PASSWORD}"), 230).await;
    // Data is protected from the start.
    let (got, done) = c.get("f").await;
    assert_eq!((got.as_slice(), done.code), (&b"implicit"[..], 226));
    assert!(!contains(&f.log.lock().unwrap(), PASSWORD.as_bytes()));
}

impl Fixture {
    fn server_implicit_addr(&self) -> SocketAddr {
        self.server.implicit_addrs[0]
    }
}

#[tokio::test]
async fn commands_pipelined_after_auth_are_discarded() {
    let f = start(|_| {}).await;
    let mut c = TlsCtrl::connect(&f, true).await;
    // A man in the middle could append a command to AUTH in clear text (CVE-2011-0411).
    c.conn.write_all(b"AUTH TLS\r\nDELE important\r\n").await;
    assert_eq!(c.read_reply().await.code, 234);
    c.upgrade().await;
    // The next reply answers our NOOP, not the injected DELE.
    let r = c.cmd("NOOP").await;
    assert_eq!(r.code, 200, "{r:?}");
}

#[tokio::test]
async fn optional_policy_allows_both_and_per_user_can_require() {
    let f = start(|t| t.policy = TlsPolicy::Optional).await;
    std::fs::write(f.server.path("f"), b"plain").unwrap();
    // Plain FTP still works under "optional".
    let mut c = TlsCtrl::connect(&f, true).await;
    c.expect(&format!("USER {USER}"), 331).await;
    c.expect(&format!("PASS {PASSWORD}"), 230).await;
    // And TLS with PROT C is allowed too.
    let mut c = TlsCtrl::connect(&f, true).await;
    c.auth_tls().await;
    c.expect("PBSZ 0", 200).await;
    c.expect("PROT C", 200).await;
    // A user whose own policy is "required" is refused in clear text...
    let mut c = TlsCtrl::connect(&f, true).await;
    c.expect(&format!("USER {SECURE}"), 331).await;
    let r = c.expect(&format!("PASS {PASSWORD}"), 530).await;
    assert!(r.text().contains("TLS required"), "{r:?}");
    // ...and over TLS must protect data too.
    let mut c = TlsCtrl::connect(&f, true).await;
    c.auth_tls().await;
    c.expect(&format!("USER {SECURE}"), 331).await;
    c.expect(&format!("PASS {PASSWORD}"), 230).await;
    c.expect("PBSZ 0", 200).await;
    c.expect("PROT C", 534).await;
    c.expect("EPSV", 229).await;
    c.expect("LIST", 521).await;
}

#[tokio::test]
async fn tls_off_refuses_auth() {
    let f = start(|t| t.policy = TlsPolicy::Off).await;
    let mut c = TlsCtrl::connect(&f, true).await;
    c.expect("AUTH TLS", 502).await;
    let feat = c.expect("FEAT", 211).await;
    assert!(!feat.text().contains("AUTH TLS"));
}

#[tokio::test]
async fn ccc_is_refused_by_default_and_works_when_allowed() {
    let f = start(|_| {}).await;
    let mut c = TlsCtrl::connect(&f, true).await;
    c.secure_login().await;
    c.expect("CCC", 534).await;

    let f = start(|t| t.allow_ccc = true).await;
    let mut c = TlsCtrl::connect(&f, true).await;
    c.secure_login().await;
    c.expect("CCC", 200).await;
    // Close TLS (sends close_notify), keep TCP, continue in clear text.
    let Conn::Tls(mut tls) = std::mem::replace(&mut c.conn, Conn::Gone) else {
        panic!()
    };
    tls.get_mut().1.send_close_notify();
    tls.flush().await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(WAIT, tls.read_to_end(&mut rest)).await;
    let (rec, _) = tls.into_inner();
    c.conn = Conn::Plain(rec);
    c.expect("NOOP", 200).await;
}

#[tokio::test]
async fn certificate_can_be_replaced_without_dropping_sessions() {
    let (cert_a, key_a) = cert();
    let store =
        CertStore::new(certified_key_from_pem(cert_a.as_bytes(), key_a.as_bytes()).unwrap());
    let before = store.fingerprint();
    let (cert_b, key_b) = cert();
    store.replace(certified_key_from_pem(cert_b.as_bytes(), key_b.as_bytes()).unwrap());
    assert_ne!(before, store.fingerprint());
    assert_eq!(store.fingerprint().len(), 32 * 3 - 1);
    // A mismatched key is refused.
    assert!(certified_key_from_pem(cert_a.as_bytes(), key_b.as_bytes()).is_err());
}

#[tokio::test]
async fn anonymous_can_be_exempted_from_required_tls() {
    // Strict by default: anonymous needs TLS too.
    let f = start(|_| {}).await;
    let mut c = TlsCtrl::connect(&f, true).await;
    c.expect("USER anonymous", 530).await;

    let f = start(|t| t.exempt_anonymous = true).await;
    std::fs::write(f.server.anon_root.path().join("pub"), b"open").unwrap();
    let mut c = TlsCtrl::connect(&f, true).await;
    c.expect("USER anonymous", 331).await;
    c.expect("PASS guest@", 230).await;
    // Plain data connections are allowed for the exempted anonymous user...
    let r = c.expect("EPSV", 229).await;
    let port = ferry_proto::hostport::parse_epsv_reply_text(&r.text()).unwrap();
    let mut data = TcpStream::connect(SocketAddr::new(c.addr.ip(), port))
        .await
        .unwrap();
    c.expect("RETR pub", 150).await;
    let mut got = Vec::new();
    data.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"open");
    assert_eq!(c.read_reply().await.code, 226);
    // ...but named users still need TLS.
    let mut c = TlsCtrl::connect(&f, true).await;
    c.expect(&format!("USER {USER}"), 530).await;
}

/// The command soup of `hostile.rs` over TLS control connections (`AUTH TLS`, `PROT P`), with
/// TLS required and with it optional (where `PROT C` turns data connections plain): every line
/// gets a well-formed reply, and the server serves a TLS session afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_command_soup_over_tls() {
    for policy in [TlsPolicy::Required, TlsPolicy::Optional] {
        let f = start_with(
            |t| t.policy = policy,
            |c| {
                c.data_connect_timeout = Duration::from_millis(300);
                c.data_stall_timeout = Duration::from_secs(2);
                c.max_login_attempts = 100_000;
                c.max_failed_logins_per_ip = 0;
                c.login_failure_delay = Duration::from_millis(1);
            },
        )
        .await;
        std::fs::create_dir(f.server.path("dir")).unwrap();
        std::fs::write(f.server.path("a"), content(5000, 1)).unwrap();
        let f = Arc::new(f);
        let (count, commands, first) = soup::soup_knobs(3, 200);
        let mut sessions = tokio::task::JoinSet::new();
        for seed in first..first + count {
            let f = Arc::clone(&f);
            sessions.spawn(async move {
                let mut c = TlsCtrl::connect(&f, true).await;
                c.secure_login().await;
                let ip = f.server.addr().ip();
                soup::soup(&mut c, ip, seed, commands).await;
            });
        }
        while let Some(r) = sessions.join_next().await {
            r.unwrap();
        }
        let mut c = TlsCtrl::connect(&f, true).await;
        c.secure_login().await;
        let (listing, done) = c.get_with("NLST").await;
        assert_eq!(done.code, 226, "{policy:?}: {done:?}");
        assert!(!listing.is_empty());
    }
}

fn proxy_v1(client: [u8; 4]) -> Vec<u8> {
    let [a, b, c, d] = client;
    format!("PROXY TCP4 {a}.{b}.{c}.{d} 127.0.0.1 40000 21\r\n").into_bytes()
}

/// Behind a balancer, a protected passive connection is judged by the client its PROXY header
/// names: another client's, through the same balancer, is refused while the session's own
/// carries the transfer.
#[tokio::test]
async fn protected_data_through_a_balancer_is_judged_by_its_proxy_header() {
    let f = start_with(
        |_| {},
        |c| c.proxy = ferry_core::ProxyTrust::new(vec!["127.0.0.1/32".parse().unwrap()]),
    )
    .await;
    std::fs::write(f.server.path("f"), b"for 127.0.0.2 only").unwrap();
    let mut c = TlsCtrl::connect_behind(&f, &proxy_v1([127, 0, 0, 2])).await;
    c.secure_login().await;
    let addr = c.epsv().await;
    let mut stranger = TcpStream::connect(addr).await.unwrap();
    stranger.write_all(&proxy_v1([127, 0, 0, 3])).await.unwrap();
    let mut own = TcpStream::connect(addr).await.unwrap();
    own.write_all(&proxy_v1([127, 0, 0, 2])).await.unwrap();
    c.expect("RETR f", 150).await;
    let mut data = c.tls_data(own).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, data.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"for 127.0.0.2 only");
    assert_eq!(c.read_reply().await.code, 226);
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(WAIT, stranger.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "the stranger's connection was answered");
}

/// Implicit FTPS behind a balancer: the header comes before the TLS handshake; without it,
/// the connection is closed unanswered.
#[tokio::test]
async fn implicit_tls_behind_a_balancer_reads_the_proxy_header_first() {
    let f = start_with(
        |_| {},
        |c| c.proxy = ferry_core::ProxyTrust::new(vec!["127.0.0.1/32".parse().unwrap()]),
    )
    .await;
    let addr = f.server.implicit_addrs[0];
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&proxy_v1([127, 0, 0, 2])).await.unwrap();
    let mut c = TlsCtrl::over(&f, tcp, addr, true, true).await;
    c.expect(&format!("USER {USER}"), 331).await;
    c.expect(&format!("PASS {PASSWORD}"), 230).await;
    let stat = c.expect("STAT", 211).await;
    assert!(stat.text().contains("Connected from 127.0.0.2"), "{stat:?}");
    // A TLS hello where the header should be.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    assert!(
        connector(&f.cert_pem, false)
            .connect(name, tcp)
            .await
            .is_err()
    );
}
