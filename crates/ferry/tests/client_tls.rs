//! The `ferry` client over TLS (FTPS), run as the built binary against Ferry's own server
//! started in-process with TLS required and data-channel session reuse required (its
//! defaults): explicit (`ftpes://`) and implicit (`ftps://`) in every data mode on IPv4 and
//! IPv6, long runs of uploads, and each way of trusting the server's certificate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{Out, USER, content, ferry_command, ok, require_ipv6, run, sha256, sha256_file, tree};
use ferry_ftpd::tls::{CertStore, TlsConfig, certified_key_from_pem, generate_self_signed};

const PASSWORD: &str = "tls pa:ss@word";
/// Upper bound for one command.
const WAIT: Duration = Duration::from_secs(90);

/// A server with its certificates; the plain server's URLs and paths through `Deref`.
struct Srv {
    srv: common::Srv,
    /// `cert.pem` (the server's self-signed certificate) and `other.pem` (an unrelated one).
    certs: tempfile::TempDir,
    fingerprint: String,
}

impl std::ops::Deref for Srv {
    type Target = common::Srv;
    fn deref(&self) -> &common::Srv {
        &self.srv
    }
}

fn self_signed() -> (String, String) {
    let g = generate_self_signed(&[
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])
    .unwrap();
    (g.cert_pem, g.key_pem)
}

impl Srv {
    /// TLS with Ferry's strict defaults, explicit on `listen` and implicit on the same IP.
    fn start(listen: &str) -> Srv {
        Self::start_with(listen, true)
    }

    fn start_with(listen: &str, tls: bool) -> Srv {
        let certs = tempfile::tempdir().unwrap();
        let (cert_pem, key_pem) = self_signed();
        std::fs::write(certs.path().join("cert.pem"), &cert_pem).unwrap();
        std::fs::write(certs.path().join("other.pem"), self_signed().0).unwrap();
        let store = CertStore::new(
            certified_key_from_pem(cert_pem.as_bytes(), key_pem.as_bytes()).unwrap(),
        );
        let fingerprint = store.fingerprint();
        let srv = common::Srv::start_with(listen, PASSWORD, |config| {
            if tls {
                let ip = config.listen[0].ip();
                config.tls = Some(TlsConfig::new(store).unwrap());
                config.implicit_tls_listen = vec![SocketAddr::new(ip, 0)];
            }
        });
        Srv {
            srv,
            certs,
            fingerprint,
        }
    }

    fn cacert(&self) -> String {
        self.certs.path().join("cert.pem").display().to_string()
    }

    fn other_ca(&self) -> String {
        self.certs.path().join("other.pem").display().to_string()
    }
}

/// Run `ferry ARGS` with a clean HOME, the password in FERRY_PASSWORD, `stdin` as input;
/// killed after WAIT.
fn ferry_in(dir: &Path, args: &[&str], stdin: &[u8]) -> Out {
    let mut cmd = ferry_command(dir, PASSWORD);
    cmd.args(args)
        // The system's roots must not matter (and must not include our test certificates).
        .env("SSL_CERT_FILE", dir.join("no-such-bundle.pem"))
        .env("SSL_CERT_DIR", dir.join("no-such-dir"));
    run(&mut cmd, stdin, WAIT)
}

fn ferry(dir: &Path, args: &[&str]) -> Out {
    ferry_in(dir, args, b"")
}

/// put, ls, get (sha256-checked) in every mode over explicit and implicit TLS, then mirror
/// both ways over each.
fn every_mode(listen: &str) {
    let srv = Srv::start(listen);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let body = content(1_048_583, 7);
    std::fs::write(w.join("up.bin"), &body).unwrap();
    let ca = srv.cacert();
    for scheme in ["ftpes", "ftps"] {
        let url = |p: &str| {
            if scheme == "ftps" {
                srv.ftps(p)
            } else {
                srv.ftpes(p)
            }
        };
        for mode in ["auto", "passive", "epsv", "active"] {
            let ctx = format!("{listen} {scheme} {mode}");
            let t = ["--mode", mode, "--cacert", &ca];
            let remote = format!("{scheme}-{mode}.bin");
            ok(ferry(
                w,
                &[&["put"][..], &t, &["up.bin", &url(&remote)]].concat(),
            ));
            assert_eq!(sha256_file(&srv.path(&remote)), sha256(&body), "{ctx}: put");
            let ls = ok(ferry(w, &[&["ls"][..], &t, &[&url("")]].concat()));
            assert!(
                ls.stdout.lines().any(|l| l == remote),
                "{ctx}: ls {}",
                ls.stdout
            );
            let local = format!("down-{scheme}-{mode}.bin");
            ok(ferry(
                w,
                &[&["get"][..], &t, &[&url(&remote), "-o", &local]].concat(),
            ));
            assert_eq!(sha256_file(&w.join(&local)), sha256(&body), "{ctx}: get");
        }
        // A tree up and back down over one connection each.
        let src = w.join(format!("src-{scheme}"));
        std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
        for (i, f) in ["a.txt", "sub/b.bin", "sub/deeper/c d.txt"]
            .iter()
            .enumerate()
        {
            std::fs::write(src.join(f), content(70_000 * i + 5, i as u64)).unwrap();
        }
        let t = ["--cacert", &ca];
        let up = ok(ferry(
            w,
            &[
                &["mirror", "--reverse"][..],
                &t,
                &[src.to_str().unwrap(), &url(&format!("m-{scheme}/"))],
            ]
            .concat(),
        ));
        assert!(up.stderr.contains("3 copied"), "{scheme}: {}", up.stderr);
        assert_eq!(tree(&src), tree(&srv.path(&format!("m-{scheme}"))));
        let copy = w.join(format!("copy-{scheme}"));
        let down = ok(ferry(
            w,
            &[
                &["mirror", "-P", "2"][..],
                &t,
                &[&url(&format!("m-{scheme}/")), copy.to_str().unwrap()],
            ]
            .concat(),
        ));
        assert!(
            down.stderr.contains("3 copied"),
            "{scheme}: {}",
            down.stderr
        );
        assert_eq!(tree(&src), tree(&copy), "{scheme}: mirror down");
    }
}

#[test]
fn ftps_every_mode_ipv4() {
    every_mode("127.0.0.1:0");
}

#[test]
fn ftps_every_mode_ipv6() {
    require_ipv6();
    every_mode("[::1]:0");
}

/// Ferry's server issues no session tickets on upload data connections, and rustls uses
/// each ticket once: the client must renew its session rather than fail with `522`.
#[test]
fn many_uploads_in_a_row_keep_resuming() {
    let srv = Srv::start("127.0.0.1:0");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let files: Vec<String> = (0..25).map(|i| format!("f{i:02}.bin")).collect();
    std::fs::create_dir(w.join("many")).unwrap();
    for (i, f) in files.iter().enumerate() {
        std::fs::write(
            w.join("many").join(f),
            content(10_000 + 3_001 * i, i as u64),
        )
        .unwrap();
    }
    let ca = srv.cacert();

    // One control connection, 25 uploads (and a few in active mode).
    let mut script = String::new();
    for (i, f) in files.iter().enumerate() {
        if i == 12 {
            script.push_str("mode active\n");
        }
        script.push_str(&format!("put many/{f} s-{f}\n"));
    }
    let out = ok(ferry_in(
        w,
        &["shell", "-v", "--cacert", &ca, &srv.ftpes("")],
        script.as_bytes(),
    ));
    // A `522` reply line; the digits alone also occur in passive ports and sizes.
    assert!(
        !out.stderr.lines().any(|l| l.starts_with("< 522")),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("renewing the control connection"),
        "{}",
        out.stderr
    );
    for f in &files {
        assert_eq!(
            sha256_file(&srv.path(&format!("s-{f}"))),
            sha256_file(&w.join("many").join(f)),
            "shell put {f}"
        );
    }

    // mirror --reverse over one connection: 25 uploads in a row, implicit TLS.
    let out = ok(ferry(
        w,
        &[
            "mirror",
            "--reverse",
            "--cacert",
            &ca,
            "many",
            &srv.ftps("m/"),
        ],
    ));
    assert!(out.stderr.contains("25 copied"), "{}", out.stderr);
    assert_eq!(tree(&w.join("many")), tree(&srv.path("m")));
}

#[test]
fn pinned_fingerprint() {
    let srv = Srv::start("127.0.0.1:0");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::write(srv.path("f.txt"), b"pinned").unwrap();
    // As the server prints it (AB:CD:...), and as bare lower-case hex.
    let out = ok(ferry(
        w,
        &["cat", "--pin-sha256", &srv.fingerprint, &srv.ftpes("f.txt")],
    ));
    assert_eq!(out.stdout, "pinned");
    let hex = srv.fingerprint.replace(':', "").to_lowercase();
    let out = ok(ferry(w, &["cat", "--pin-sha256", &hex, &srv.ftps("f.txt")]));
    assert_eq!(out.stdout, "pinned");

    // Any other fingerprint is refused with exit code 8, naming the server's.
    let wrong = "00:".repeat(31) + "00";
    let out = ferry(w, &["ls", "--pin-sha256", &wrong, &srv.ftpes("")]);
    assert_eq!(out.code, 8, "{}", out.stderr);
    assert!(
        out.stderr.contains("not trusted") && out.stderr.contains(&srv.fingerprint),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--pin-sha256"), "{}", out.stderr);
    // A malformed fingerprint is a usage error.
    let out = ferry(w, &["ls", "--pin-sha256", "AB:CD", &srv.ftpes("")]);
    assert_eq!(out.code, 2, "{}", out.stderr);
}

#[test]
fn ca_file_trust_and_unknown_ca() {
    let srv = Srv::start("127.0.0.1:0");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::write(srv.path("f.txt"), b"trusted").unwrap();
    let out = ok(ferry(
        w,
        &["cat", "--cacert", &srv.cacert(), &srv.ftpes("f.txt")],
    ));
    assert_eq!(out.stdout, "trusted");

    // Another CA: refused, exit 8, with the fingerprint to check.
    let out = ferry(w, &["ls", "--cacert", &srv.other_ca(), &srv.ftpes("")]);
    assert_eq!(out.code, 8, "{}", out.stderr);
    assert!(out.stderr.contains("not trusted"), "{}", out.stderr);
    assert!(out.stderr.contains(&srv.fingerprint), "{}", out.stderr);
    // No trust option: the system's roots (none in this environment) don't include it.
    let out = ferry(w, &["ls", &srv.ftps("")]);
    assert_eq!(out.code, 8, "{}", out.stderr);
    // The name must match too: the certificate is for localhost, 127.0.0.1 and ::1.
    let out = ok(ferry(
        w,
        &[
            "ls",
            "--cacert",
            &srv.cacert(),
            &format!("ftpes://{USER}@localhost:{}/", srv.addr.port()),
        ],
    ));
    assert!(out.stdout.contains("f.txt"));
    // An unreadable or empty CA file is a local or usage problem, before connecting.
    let out = ferry(w, &["ls", "--cacert", "missing.pem", &srv.ftpes("")]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    std::fs::write(w.join("empty.pem"), "").unwrap();
    let out = ferry(w, &["ls", "--cacert", "empty.pem", &srv.ftpes("")]);
    assert_eq!(out.code, 2, "{}", out.stderr);
}

#[test]
fn insecure_works_and_warns() {
    let srv = Srv::start("127.0.0.1:0");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::write(w.join("x.bin"), content(50_000, 1)).unwrap();
    let out = ok(ferry(
        w,
        &["put", "-q", "--insecure", "x.bin", &srv.ftpes("")],
    ));
    assert!(out.stderr.contains("WARNING: --insecure"), "{}", out.stderr);
    assert_eq!(
        sha256_file(&srv.path("x.bin")),
        sha256_file(&w.join("x.bin"))
    );
    let out = ok(ferry(w, &["ls", "-k", &srv.ftps("")]));
    assert_eq!(out.stdout, "x.bin\n");
    // Trust options conflict with each other.
    let out = ferry(w, &["ls", "-k", "--cacert", &srv.cacert(), &srv.ftps("")]);
    assert_eq!(out.code, 2, "{}", out.stderr);
}

#[test]
fn verbose_shows_the_tls_dialogue_with_the_password_masked() {
    let srv = Srv::start("127.0.0.1:0");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let out = ok(ferry(
        w,
        &["ls", "-v", "--cacert", &srv.cacert(), &srv.ftpes("")],
    ));
    let e = &out.stderr;
    let order = [
        "> AUTH TLS",
        "< 234",
        "* control connection: TLS",
        "> USER alice",
        "> PASS ****",
        "> PBSZ 0",
        "> PROT P",
        "< 200",
        "> MLSD",
        "* data connection: TLS",
        "resumed",
    ];
    let mut at = 0;
    for step in order {
        let found = e[at..]
            .find(step)
            .unwrap_or_else(|| panic!("no {step:?} after byte {at} in:\n{e}"));
        at += found;
    }
    assert!(!e.contains("pa:ss"), "{e}");
    // Implicit: no AUTH, TLS from the start.
    let out = ok(ferry(
        w,
        &["ls", "-v", "--cacert", &srv.cacert(), &srv.ftps("")],
    ));
    assert!(!out.stderr.contains("> AUTH TLS"), "{}", out.stderr);
    assert!(out.stderr.contains("> PROT P"), "{}", out.stderr);
    assert!(out.stderr.contains("> PASS ****"), "{}", out.stderr);
}

#[test]
fn tls_flag_for_ftp_urls() {
    let srv = Srv::start("127.0.0.1:0");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::write(srv.path("f.txt"), b"x").unwrap();
    let ca = srv.cacert();
    // ftp:// stays clear text by default: this server refuses that, with a hint.
    let out = ferry(w, &["ls", &srv.url("")]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("ftpes://"), "{}", out.stderr);
    // --tls required and --tls auto both upgrade.
    let out = ok(ferry(
        w,
        &[
            "ls",
            "-v",
            "--tls",
            "required",
            "--cacert",
            &ca,
            &srv.url(""),
        ],
    ));
    assert!(out.stderr.contains("> AUTH TLS"), "{}", out.stderr);
    assert_eq!(out.stdout, "f.txt\n");
    let out = ok(ferry(
        w,
        &["ls", "-v", "--tls", "auto", "--cacert", &ca, &srv.url("")],
    ));
    assert!(out.stderr.contains("> AUTH TLS"), "{}", out.stderr);
    // Contradictions and trust options without TLS are usage errors.
    assert_eq!(ferry(w, &["ls", "--tls", "off", &srv.ftpes("")]).code, 2);
    assert_eq!(ferry(w, &["ls", "--tls", "auto", &srv.ftps("")]).code, 2);
    assert_eq!(ferry(w, &["ls", "--cacert", &ca, &srv.url("")]).code, 2);
    assert_eq!(
        ferry(w, &["ls", "--tls", "sometimes", &srv.url("")]).code,
        2
    );

    // A server without TLS: auto goes on in clear text (saying so), required fails with 8.
    let plain = Srv::start_with("127.0.0.1:0", false);
    std::fs::write(plain.path("p.txt"), b"x").unwrap();
    let out = ok(ferry(w, &["ls", "--tls", "auto", &plain.url("")]));
    assert_eq!(out.stdout, "p.txt\n");
    assert!(out.stderr.contains("does not offer TLS"), "{}", out.stderr);
    let out = ferry(w, &["ls", &plain.ftpes("")]);
    assert_eq!(out.code, 8, "{}", out.stderr);
    assert!(out.stderr.contains("AUTH TLS"), "{}", out.stderr);
}
