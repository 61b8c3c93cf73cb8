//! The SFTP client against Ferry's SFTP server (`ferry-sftpd`) started in-process on loopback
//! (IPv4, and IPv6 when ::1 can be bound): host keys checked against `known_hosts`, password
//! logins (a key refused first), every operation, pipelined transfers of 64 MiB checked by
//! SHA-256, and resumed transfers both ways.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ferry_auth::{Authenticator, UserSpec};
use ferry_client::sftp::{HostKeyError, HostKeyPolicy, UploadStart};
use ferry_client::{EntryKind, Error, SftpClient, SftpOptions, SshAuth};
use ferry_sftpd::{SftpConfig, SftpServer, local_storage};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

const USER: &str = "alice";
const PASSWORD: &str = "correct horse";
/// Upper bound for one client operation in these tests.
const WAIT: Duration = Duration::from_secs(120);

fn hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| ferry_auth::hash_password(PASSWORD))
}

/// Ferry's SFTP server on a loopback port, [`USER`] with all permissions on a fresh root.
struct Server {
    addr: SocketAddr,
    root: tempfile::TempDir,
    _state: tempfile::TempDir,
    /// `ssh-ed25519 AAAA...`: the host key as known_hosts holds it.
    key_line: String,
    fingerprint: String,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Server {
    async fn start(listen: &str) -> Server {
        let root = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let auth = Authenticator::new(vec![UserSpec {
            name: USER.into(),
            password_hash: Some(hash().to_string()),
            authorized_keys: Vec::new(),
            authorized_keys_file: None,
            home: root.path().to_path_buf(),
            permissions: vec!["all".into()],
            max_sessions: None,
            allowed_networks: Vec::new(),
            upload_rate: None,
            download_rate: None,
            quota_bytes: None,
            quota_files: None,
        }])
        .unwrap();
        let mut config = SftpConfig::new(state.path());
        config.auth_rejection_time = Duration::from_millis(10);
        let server = SftpServer::new(config, Arc::new(auth), local_storage()).unwrap();
        let fingerprint = server.fingerprints()[0].clone();
        let key = ferry_sftpd::hostkey::load_or_create(state.path()).unwrap();
        let key_line = key.public_key().to_openssh().unwrap();
        let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = server
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Server {
            addr,
            root,
            _state: state,
            key_line,
            fingerprint,
            stop: Some(stop),
        }
    }

    /// The `known_hosts` line for this server, under the name the client looks up.
    fn known_hosts_line(&self) -> String {
        format!(
            "[{}]:{} {}\n",
            self.addr.ip(),
            self.addr.port(),
            self.key_line
        )
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }
}

/// Fail unless `[::1]` can be bound (the test's name has `ipv6`: `--skip ipv6` leaves it out).
fn require_ipv6() {
    if let Err(e) = std::net::TcpListener::bind("[::1]:0") {
        panic!("cannot bind [::1] ({e}); without IPv6 loopback, use `cargo test -- --skip ipv6`");
    }
}

/// Options trusting only the known_hosts file `kh`, notes collected in `notes`.
fn options(kh: &Path, notes: &Arc<Mutex<Vec<String>>>) -> SftpOptions {
    let notes = Arc::clone(notes);
    SftpOptions {
        host_keys: HostKeyPolicy {
            files: vec![kh.to_path_buf()],
            learn_to: Some(kh.to_path_buf()),
            accept: None,
            insecure: false,
        },
        notice: Some(Arc::new(move |n: &str| {
            notes.lock().unwrap().push(n.to_string())
        })),
        connect_timeout: Duration::from_secs(10),
        reply_timeout: Duration::from_secs(30),
        ..SftpOptions::default()
    }
}

/// Password only: no agent, no key files from a home directory.
fn password_auth() -> SshAuth {
    let mut auth = SshAuth::new(USER);
    auth.default_identities = false;
    auth.agent = false;
    auth.password = Some(PASSWORD.into());
    auth
}

async fn connect(srv: &Server, opts: SftpOptions, auth: &SshAuth) -> Result<SftpClient, Error> {
    let host = srv.addr.ip().to_string();
    tokio::time::timeout(
        WAIT,
        SftpClient::connect(&host, srv.addr.port(), auth, opts),
    )
    .await
    .expect("connect hung")
}

/// A client that trusts `srv`'s key (written to a fresh known_hosts in `dir`).
async fn trusted(srv: &Server, dir: &Path) -> SftpClient {
    let kh = dir.join("known_hosts");
    std::fs::write(&kh, srv.known_hosts_line()).unwrap();
    connect(srv, options(&kh, &Arc::default()), &password_auth())
        .await
        .unwrap()
}

/// Deterministic, incompressible test content.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sha256(data: &[u8]) -> String {
    let d = Sha256::digest(data);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

async fn download_all(c: &SftpClient, path: &str, offset: u64) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    let mut seen = 0u64;
    let n = tokio::time::timeout(WAIT, c.download(path, offset, &mut out, &mut |n| seen += n))
        .await
        .expect("download hung")?;
    assert_eq!(n, out.len() as u64);
    assert_eq!(seen, n, "progress saw every byte");
    Ok(out)
}

async fn upload_all(
    c: &SftpClient,
    data: &[u8],
    path: &str,
    start: UploadStart,
) -> Result<u64, Error> {
    let mut src = data;
    let mut seen = 0u64;
    let n = tokio::time::timeout(WAIT, c.upload(&mut src, path, start, &mut |n| seen += n))
        .await
        .expect("upload hung")?;
    assert_eq!(seen, n);
    Ok(n)
}

async fn operations(listen: &str) {
    let srv = Server::start(listen).await;
    let work = tempfile::tempdir().unwrap();
    let mut c = trusted(&srv, work.path()).await;
    assert_eq!(c.peer_addr(), srv.addr);
    assert_eq!(c.server_version(), 3);
    assert!(c.has_extension("posix-rename@openssh.com"));
    // limits@openssh.com raised the chunk above the 32 KiB default.
    assert!(c.chunk_sizes().0 > 32 * 1024, "{:?}", c.chunk_sizes());

    assert_eq!(c.realpath(".").await.unwrap(), "/");
    c.mkdir("d").await.unwrap();
    c.mkdir("d/sub").await.unwrap();
    let body = content(300_001, 1);
    assert_eq!(
        upload_all(&c, &body, "d/a.bin", UploadStart::Replace)
            .await
            .unwrap(),
        300_001
    );
    assert_eq!(std::fs::read(srv.path("d/a.bin")).unwrap(), body);
    assert_eq!(c.size("d/a.bin").await.unwrap(), 300_001);
    let st = c.stat("d/a.bin").await.unwrap();
    assert!(st.is_regular());
    assert!(c.lstat("d/sub").await.unwrap().is_dir());

    let mut names: Vec<_> = c
        .list(Some("d"))
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.kind, e.size))
        .collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        names[0],
        ("a.bin".to_string(), EntryKind::File, Some(300_001))
    );
    assert_eq!(names[1].0, "sub");
    assert_eq!(names[1].1, EntryKind::Dir);
    assert_eq!(names.len(), 2);

    assert_eq!(download_all(&c, "d/a.bin", 0).await.unwrap(), body);

    // posix-rename replaces an existing target.
    upload_all(&c, b"old", "d/b.bin", UploadStart::Replace)
        .await
        .unwrap();
    c.rename("d/a.bin", "d/b.bin").await.unwrap();
    assert_eq!(std::fs::read(srv.path("d/b.bin")).unwrap(), body);
    assert!(!srv.path("d/a.bin").exists());

    let t = 1_600_000_000;
    c.set_mtime("d/b.bin", t).await.unwrap();
    assert_eq!(c.mtime("d/b.bin").await.unwrap(), t);

    // cd makes relative paths relative to it.
    c.cd("d").await.unwrap();
    assert_eq!(c.pwd().await.unwrap(), "/d");
    assert_eq!(c.size("b.bin").await.unwrap(), 300_001);
    c.cd("..").await.unwrap();
    assert_eq!(c.pwd().await.unwrap(), "/");
    let e = c.cd("d/b.bin").await.unwrap_err();
    assert!(e.is_not_found(), "{e}");

    c.remove("d/b.bin").await.unwrap();
    c.rmdir("d/sub").await.unwrap();
    c.rmdir("d").await.unwrap();
    assert!(!srv.path("d").exists());

    // Refusals are statuses with the FTP-like exit codes.
    let e = download_all(&c, "missing", 0).await.unwrap_err();
    assert!(
        matches!(e, Error::Status { code: 2, .. }) && e.exit_code() == 4,
        "{e:?}"
    );
    assert!(e.to_string().contains("missing"), "{e}");
    let e = c.rmdir("missing-dir").await.unwrap_err();
    assert!(e.is_refusal() && e.is_not_found(), "{e}");
    // Still usable after refusals.
    assert!(c.list(None).await.unwrap().is_empty());
    c.quit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_over_ipv4() {
    operations("127.0.0.1:0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_over_ipv6() {
    require_ipv6();
    operations("[::1]:0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_64_mib_both_ways_keep_many_requests_in_flight() {
    let srv = Server::start("127.0.0.1:0").await;
    let work = tempfile::tempdir().unwrap();
    let c = trusted(&srv, work.path()).await;
    let body = content(64 * 1024 * 1024 + 12_345, 7);
    upload_all(&c, &body, "big.bin", UploadStart::Replace)
        .await
        .unwrap();
    let up_peak = c.peak_in_flight();
    assert_eq!(
        sha256(&std::fs::read(srv.path("big.bin")).unwrap()),
        sha256(&body)
    );
    let down = download_all(&c, "big.bin", 0).await.unwrap();
    assert_eq!(sha256(&down), sha256(&body));
    // One request at a time would leave this at 1.
    assert!(up_peak >= 32, "writes in flight: {up_peak}");
    assert!(c.peak_in_flight() >= 32, "{}", c.peak_in_flight());
    c.quit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_download_reads_in_flight() {
    let srv = Server::start("127.0.0.1:0").await;
    let work = tempfile::tempdir().unwrap();
    let body = content(16 * 1024 * 1024, 9);
    std::fs::write(srv.path("r.bin"), &body).unwrap();
    let c = trusted(&srv, work.path()).await;
    assert_eq!(download_all(&c, "r.bin", 0).await.unwrap(), body);
    assert!(
        c.peak_in_flight() >= 32,
        "reads in flight: {}",
        c.peak_in_flight()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_transfers_both_ways() {
    let srv = Server::start("127.0.0.1:0").await;
    let work = tempfile::tempdir().unwrap();
    let c = trusted(&srv, work.path()).await;
    let body = content(5_000_003, 3);

    // Download from an offset: only the rest comes.
    std::fs::write(srv.path("f.bin"), &body).unwrap();
    let rest = download_all(&c, "f.bin", 1_234_567).await.unwrap();
    assert_eq!(rest, &body[1_234_567..]);
    // At or past the end: nothing.
    assert!(
        download_all(&c, "f.bin", 5_000_003)
            .await
            .unwrap()
            .is_empty()
    );

    // Upload resumed: the server keeps its first part and gets the rest written after it.
    std::fs::write(srv.path("g.bin"), &body[..2_000_000]).unwrap();
    upload_all(&c, &body[2_000_000..], "g.bin", UploadStart::At(2_000_000))
        .await
        .unwrap();
    assert_eq!(
        sha256(&std::fs::read(srv.path("g.bin")).unwrap()),
        sha256(&body)
    );
    // A replacing upload truncates.
    upload_all(&c, b"short", "g.bin", UploadStart::Replace)
        .await
        .unwrap();
    assert_eq!(std::fs::read(srv.path("g.bin")).unwrap(), b"short");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_keys_unknown_changed_hashed_insecure_and_accepted() {
    let srv = Server::start("127.0.0.1:0").await;
    let work = tempfile::tempdir().unwrap();
    let kh = work.path().join("known_hosts");
    let notes: Arc<Mutex<Vec<String>>> = Arc::default();
    let auth = password_auth();

    // Unknown: refused, with the fingerprint.
    let e = connect(&srv, options(&kh, &notes), &auth)
        .await
        .unwrap_err();
    match &e {
        Error::HostKey(k) => match k.as_ref() {
            HostKeyError::Unknown {
                fingerprint, host, ..
            } => {
                assert_eq!(fingerprint, &srv.fingerprint);
                assert_eq!(host, &format!("[127.0.0.1]:{}", srv.addr.port()));
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    assert_eq!(e.exit_code(), 8);
    assert!(e.to_string().contains(&srv.fingerprint), "{e}");
    assert!(!kh.exists(), "nothing recorded");

    // --insecure: accepted, said, not recorded.
    let mut o = options(&kh, &notes);
    o.host_keys.insecure = true;
    connect(&srv, o, &auth).await.unwrap().quit().await.unwrap();
    assert!(
        notes
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.contains("--insecure"))
    );
    assert!(!kh.exists());

    // A fingerprint that is not the server's: refused.
    let mut o = options(&kh, &notes);
    o.host_keys.accept = Some("SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into());
    let e = connect(&srv, o, &auth).await.unwrap_err();
    assert!(
        matches!(&e, Error::HostKey(k) if matches!(k.as_ref(), HostKeyError::NotAccepted { .. })),
        "{e:?}"
    );
    // The server's fingerprint: accepted and recorded, then known without being told.
    let mut o = options(&kh, &notes);
    o.host_keys.accept = Some(srv.fingerprint.clone());
    connect(&srv, o, &auth).await.unwrap().quit().await.unwrap();
    let recorded = std::fs::read_to_string(&kh).unwrap();
    assert_eq!(recorded, srv.known_hosts_line());
    connect(&srv, options(&kh, &notes), &auth)
        .await
        .unwrap()
        .quit()
        .await
        .unwrap();

    // Changed: another ed25519 key on record for this host and port, loudly refused, even
    // with a fingerprint to accept.
    let other = ferry_sftpd::hostkey::load_or_create(work.path()).unwrap();
    std::fs::write(
        &kh,
        format!(
            "[127.0.0.1]:{} {}\n",
            srv.addr.port(),
            other.public_key().to_openssh().unwrap()
        ),
    )
    .unwrap();
    let mut o = options(&kh, &notes);
    o.host_keys.accept = Some(srv.fingerprint.clone());
    let e = connect(&srv, o, &auth).await.unwrap_err();
    assert!(
        matches!(&e, Error::HostKey(k) if matches!(k.as_ref(), HostKeyError::Changed { line: 1, .. })),
        "{e:?}"
    );
    assert!(e.to_string().contains("HAS CHANGED"), "{e}");
    // --insecure connects anyway, saying so.
    let mut o = options(&kh, &notes);
    o.host_keys.insecure = true;
    connect(&srv, o, &auth).await.unwrap().quit().await.unwrap();
    assert!(
        notes
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.contains("HAS CHANGED"))
    );

    // A hashed entry (as `ssh-keygen -H` writes them) is found.
    let name = format!("[127.0.0.1]:{}", srv.addr.port());
    let salt = [7u8; 20];
    let tag = ring_hmac_sha1(&salt, name.as_bytes());
    std::fs::write(
        &kh,
        format!("|1|{}|{} {}\n", b64(&salt), b64(&tag), srv.key_line),
    )
    .unwrap();
    connect(&srv, options(&kh, &notes), &auth)
        .await
        .unwrap()
        .quit()
        .await
        .unwrap();
}

fn b64(data: &[u8]) -> String {
    data_encoding::BASE64.encode(data)
}

fn ring_hmac_sha1(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    ring::hmac::sign(&k, msg).as_ref().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_logins_refusals_and_what_was_tried() {
    let srv = Server::start("127.0.0.1:0").await;
    let work = tempfile::tempdir().unwrap();
    let kh = work.path().join("known_hosts");
    std::fs::write(&kh, srv.known_hosts_line()).unwrap();
    // Any Ed25519 key in OpenSSH's format, unknown to the server: the password logs in.
    let key = ferry_sftpd::hostkey::load_or_create(work.path()).unwrap();
    let key_file = work.path().join("id_test");
    std::fs::write(
        &key_file,
        key.to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let notes = Arc::default();
    let mut auth = password_auth();
    auth.identities = vec![key_file.clone()];
    connect(&srv, options(&kh, &notes), &auth)
        .await
        .unwrap()
        .quit()
        .await
        .unwrap();

    // Without the password (and a fresh cache: the one above remembers what worked) nothing
    // is left: exit code 3 and what was tried.
    let mut auth = SshAuth::new(USER);
    auth.default_identities = false;
    auth.agent = false;
    auth.identities = vec![key_file.clone()];
    let e = connect(&srv, options(&kh, &notes), &auth)
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), 3, "{e}");
    let text = e.to_string();
    assert!(text.contains("no password"), "{text}");

    // A wrong password is refused.
    auth.password = Some("wrong".into());
    let e = connect(&srv, options(&kh, &notes), &auth)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::AuthFailed(_)), "{e:?}");
    assert!(e.to_string().contains("password refused"), "{e}");

    // A -i file that does not exist is a local error before anything is sent.
    auth.identities = vec![work.path().join("missing")];
    let e = connect(&srv, options(&kh, &notes), &auth)
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), 1, "{e}");
}
