//! `ferry probe` against Ferry's own servers (strict and loosened FTPS, plain FTP, SFTP) and
//! against small hostile fakes, all on 127.0.0.1: the verdict of each finding, the exit
//! status by the worst one, and bounded time whatever the server does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Out, Srv, USER, ferry_command, run};
use ferry_ftpd::TlsPolicy;
use ferry_ftpd::tls::{CertStore, TlsConfig, certified_key_from_pem, generate_self_signed};

const PASSWORD: &str = "probe-Pass-9";
const WAIT: Duration = Duration::from_secs(120);

/// `ferry probe ARGS --json`: the exit code and each finding's verdict and detail by id.
struct Probe {
    out: Out,
    findings: HashMap<String, (String, String)>,
}

impl Probe {
    fn run(dir: &Path, args: &[&str]) -> Probe {
        let out = run(
            ferry_command(dir, PASSWORD)
                .arg("probe")
                .args(args)
                .args(["--json", "--timeout", "5"]),
            b"",
            WAIT,
        );
        let json: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "no JSON ({e}), exit {}:\n{}\n{}",
                out.code, out.stdout, out.stderr
            )
        });
        let findings = json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["id"].as_str().unwrap().to_string(),
                    (
                        f["verdict"].as_str().unwrap().to_string(),
                        f["detail"].as_str().unwrap().to_string(),
                    ),
                )
            })
            .collect();
        assert_eq!(json["exit_code"].as_i64(), Some(i64::from(out.code)));
        Probe { out, findings }
    }

    #[track_caller]
    fn expect(&self, id: &str, verdict: &str) -> &str {
        let (v, detail) = self
            .findings
            .get(id)
            .unwrap_or_else(|| panic!("no finding {id} in {:?}", self.findings));
        assert_eq!(v, verdict, "{id}: {detail}\nall: {:#?}", self.findings);
        detail
    }
}

/// A certificate for localhost, 127.0.0.1 and ::1: (PEM certificate, store).
fn certificate() -> (String, std::sync::Arc<CertStore>) {
    let names = ["localhost", "127.0.0.1", "::1"].map(String::from);
    let g = generate_self_signed(&names).unwrap();
    let store = CertStore::new(
        certified_key_from_pem(g.cert_pem.as_bytes(), g.key_pem.as_bytes()).unwrap(),
    );
    (g.cert_pem, store)
}

#[test]
fn strict_ferry_with_its_certificate_trusted_is_all_ok() {
    let (cert_pem, store) = certificate();
    let srv = Srv::start_with("127.0.0.1:0", PASSWORD, |c| {
        c.tls = Some(TlsConfig::new(store).unwrap());
        c.implicit_tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), cert_pem).unwrap();
    let url = srv.ftpes("");
    let implicit = srv.implicit.unwrap().port();
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ports = format!("{implicit},{closed}");
    let p = Probe::run(dir.path(), &[&url, "--cacert", "ca.pem", "--ports", &ports]);
    assert_eq!(p.out.code, 0, "{:#?}", p.findings);
    let seen = p.expect("ports", "ok");
    assert!(
        seen.contains(&format!("{implicit}: TLS with an FTP greeting"))
            && seen.contains(&format!("{closed}: closed")),
        "{seen}"
    );
    p.expect("tls.auth", "ok");
    p.expect("tls.versions", "ok");
    p.expect("tls.legacy", "untested");
    p.expect("tls.certificate.trust", "ok");
    p.expect("tls.certificate.expiry", "ok");
    p.expect("login.cleartext", "ok");
    p.expect("data.protection", "ok");
    assert!(p.expect("data.session_reuse", "ok").contains("required"));
    p.expect("pasv.address", "ok");
    p.expect("epsv", "ok");
    p.expect("epsv_all", "ok");
    p.expect("port.bounce", "ok");
    p.expect("anonymous.login", "ok");
    p.expect("banner.version", "ok");
    p.expect("listing.mlsd", "ok");

    // Implicit TLS: nothing crosses in clear text, the rest as over explicit TLS.
    let p = Probe::run(
        dir.path(),
        &[&srv.ftps(""), "--cacert", "ca.pem", "--ports", ""],
    );
    assert_eq!(p.out.code, 0, "{:#?}", p.findings);
    assert!(p.expect("login.cleartext", "ok").contains("implicit"));
    p.expect("data.session_reuse", "ok");
    p.expect("epsv_all", "ok");

    // Without the CA: the same server, its self-signed certificate a warning.
    let p = Probe::run(dir.path(), &[&url]);
    assert_eq!(p.out.code, 10, "{:#?}", p.findings);
    assert!(
        p.expect("tls.certificate.trust", "warning")
            .contains("self-signed")
    );
    // The table says the same.
    let out = run(
        ferry_command(dir.path(), PASSWORD).args(["probe", &url, "--timeout", "5"]),
        b"",
        WAIT,
    );
    assert_eq!(out.code, 10, "{}", out.stderr);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("warning") && l.contains("self-signed")),
        "{}",
        out.stdout
    );
}

#[test]
fn strict_ferry_over_ipv6_is_all_ok() {
    common::require_ipv6();
    let (cert_pem, store) = certificate();
    let srv = Srv::start_with("[::1]:0", PASSWORD, |c| {
        c.tls = Some(TlsConfig::new(store).unwrap());
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), cert_pem).unwrap();
    let p = Probe::run(
        dir.path(),
        &[&srv.ftpes(""), "--cacert", "ca.pem", "--ports", ""],
    );
    assert_eq!(p.out.code, 0, "{:#?}", p.findings);
    p.expect("tls.certificate.trust", "ok");
    p.expect("data.session_reuse", "ok");
    p.expect("epsv", "ok");
    p.expect("epsv_all", "ok");
    assert!(p.expect("port.bounce", "ok").contains("EPRT |1|127.0.0.3|"));
    assert!(!p.findings.contains_key("ports"));
}

#[test]
fn loosened_ferry_shows_each_weakness() {
    let (_, store) = certificate();
    let anon = tempfile::tempdir().unwrap();
    let anon_home = anon.path().to_path_buf();
    let srv = Srv::start_with("127.0.0.1:0", PASSWORD, |c| {
        let mut tls = TlsConfig::new(store).unwrap();
        tls.policy = TlsPolicy::Optional;
        tls.require_session_reuse = false;
        c.tls = Some(tls);
        c.masquerade.address = Some(Ipv4Addr::new(10, 1, 2, 3));
        c.allow_active_foreign_address = true;
        c.anonymous_home = Some(anon_home);
    });
    let dir = tempfile::tempdir().unwrap();
    let p = Probe::run(dir.path(), &[&srv.url(""), "--allow-write-test"]);
    assert_eq!(p.out.code, 20, "{:#?}", p.findings);
    p.expect("tls.auth", "ok");
    assert!(p.expect("login.cleartext", "risk").contains("331"));
    p.expect("data.protection", "warning");
    p.expect("data.session_reuse", "warning");
    assert!(p.expect("pasv.address", "warning").contains("10.1.2.3"));
    assert!(p.expect("port.bounce", "risk").contains("127,0,0,3"));
    p.expect("anonymous.login", "warning");
    // Anonymous is read-only: MKD refused, and nothing was left behind.
    p.expect("anonymous.write", "ok");
    assert_eq!(std::fs::read_dir(anon.path()).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(srv.root.path()).unwrap().count(), 0);

    // Without --allow-write-test the write check is not made.
    let p = Probe::run(dir.path(), &[&srv.url("")]);
    p.expect("anonymous.write", "untested");
    p.expect("port.bounce", "risk");
}

#[test]
fn plain_ftp_without_tls_is_a_risk() {
    let srv = Srv::start_with("127.0.0.1:0", PASSWORD, |_| {});
    let dir = tempfile::tempdir().unwrap();
    let p = Probe::run(dir.path(), &[&srv.url("")]);
    assert_eq!(p.out.code, 20, "{:#?}", p.findings);
    p.expect("tls.auth", "risk");
    p.expect("login.cleartext", "risk");
    p.expect("tls.versions", "untested");
    p.expect("data.protection", "untested");
    p.expect("epsv_all", "ok");
    p.expect("port.bounce", "ok");
    assert!(!p.findings.contains_key("tls.certificate.trust"));
}

#[test]
fn ferry_sftp_offers_only_strong_algorithms() {
    let srv = common::sftp::SftpSrv::start("127.0.0.1:0", PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let p = Probe::run(dir.path(), &[&srv.url("")]);
    assert_eq!(p.out.code, 0, "{:#?}", p.findings);
    assert!(p.expect("ssh.host_key", "ok").contains("ssh-ed25519"));
    p.expect("ssh.kex", "ok");
    p.expect("ssh.ciphers", "ok");
    p.expect("ssh.macs", "ok");
    p.expect("ssh.strict_kex", "ok");
    assert!(p.expect("ssh.banner", "ok").starts_with("SSH-2.0-"));
}

/// A listener on 127.0.0.1 whose one connection `serve` handles on its own thread.
fn fake(
    serve: impl FnOnce(std::net::TcpStream) + Send + 'static,
) -> (u16, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        if let Ok((s, _)) = l.accept() {
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
            serve(s);
        }
    });
    (port, t)
}

#[test]
fn weak_and_broken_ssh_algorithms_are_flagged() {
    let (port, server) = fake(|mut s| {
        let mut payload = vec![20u8];
        payload.extend_from_slice(&[9; 16]);
        for list in [
            "diffie-hellman-group1-sha1,diffie-hellman-group14-sha1",
            "ssh-rsa,ssh-dss",
            "aes128-cbc,3des-cbc",
            "aes128-ctr",
            "hmac-md5,hmac-sha1",
            "hmac-sha1",
            "none",
            "none",
            "",
            "",
        ] {
            payload.extend_from_slice(&(list.len() as u32).to_be_bytes());
            payload.extend_from_slice(list.as_bytes());
        }
        payload.extend_from_slice(&[0; 5]);
        let padding = 8 - (payload.len() + 5) % 8 + 8;
        let mut packet = ((payload.len() + padding + 1) as u32)
            .to_be_bytes()
            .to_vec();
        packet.push(padding as u8);
        packet.extend_from_slice(&payload);
        packet.extend(std::iter::repeat_n(0u8, padding));
        s.write_all(b"SSH-2.0-OpenSSH_5.3\r\n").unwrap();
        s.write_all(&packet).unwrap();
        let _ = s.read(&mut [0u8; 512]);
    });
    let dir = tempfile::tempdir().unwrap();
    let p = Probe::run(dir.path(), &[&format!("sftp://127.0.0.1:{port}")]);
    server.join().unwrap();
    assert_eq!(p.out.code, 20, "{:#?}", p.findings);
    assert!(
        p.expect("ssh.kex", "risk")
            .contains("diffie-hellman-group1-sha1")
    );
    assert!(p.expect("ssh.host_key", "risk").contains("ssh-dss"));
    assert!(p.expect("ssh.ciphers", "risk").contains("3des-cbc"));
    assert!(p.expect("ssh.macs", "risk").contains("hmac-md5"));
    p.expect("ssh.banner", "ok");
}

#[test]
fn bad_usage_is_2_and_an_unreachable_server_is_1() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        ferry_command(dir.path(), PASSWORD).args(["probe", "http://127.0.0.1/"]),
        b"",
        WAIT,
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    let out = run(
        ferry_command(dir.path(), PASSWORD).args(["probe", "ftp://127.0.0.1/", "--ports", "21,x"]),
        b"",
        WAIT,
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run(
        ferry_command(dir.path(), PASSWORD).args(["probe", &format!("ftp://127.0.0.1:{port}")]),
        b"",
        WAIT,
    );
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("probe failed"), "{}", out.stderr);
}

#[test]
fn a_silent_or_flooding_server_cannot_hang_the_probe() {
    // Greets, then never answers.
    let (silent, t1) = fake(|mut s| {
        s.write_all(b"220 hello\r\n").unwrap();
        let mut buf = [0u8; 512];
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    });
    // One endless reply line.
    let (flood, t2) = fake(|mut s| {
        let _ = s.write_all(b"220-");
        let chunk = [b'A'; 16 * 1024];
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) && s.write_all(&chunk).is_ok() {}
    });
    let dir = tempfile::tempdir().unwrap();
    for port in [silent, flood] {
        let started = Instant::now();
        let out = run(
            ferry_command(dir.path(), PASSWORD).args([
                "probe",
                &format!("ftp://{USER}@127.0.0.1:{port}"),
                "--timeout",
                "2",
            ]),
            b"",
            WAIT,
        );
        assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
        assert!(started.elapsed() < Duration::from_secs(30));
    }
    t1.join().unwrap();
    t2.join().unwrap();
}
