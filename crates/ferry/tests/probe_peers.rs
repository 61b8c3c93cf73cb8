//! `ferry probe` against the reference servers (vsftpd, Pure-FTPd, ProFTPD, pyftpdlib),
//! started by `../shared/peers/<name>.sh` on 127.0.0.1, with and without `--tls`: the
//! verdicts an auditor expects of each, such as vsftpd taking EPRT after `EPSV ALL` and
//! Pure-FTPd taking PASV after it, or which of them require TLS session reuse.
//!
//! Needs root and the peer scripts; runs only with `FERRY_PEER_TESTS=1`
//! (`FERRY_PEERS_DIR` overrides where the scripts are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use common::{ferry_command, run};

const USER: &str = "tester";
const PASSWORD: &str = "secret-pass";
const WAIT: Duration = Duration::from_secs(180);

/// One peer at a time: their start scripts share an unpack directory.
static SERIAL: Mutex<()> = Mutex::new(());

fn enabled() -> bool {
    std::env::var("FERRY_PEER_TESTS").is_ok_and(|v| v == "1")
}

fn peers_dir() -> PathBuf {
    std::env::var_os("FERRY_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/peers"))
}

/// A started peer; stopped on drop.
struct Peer {
    script: PathBuf,
    port: u16,
}

impl Peer {
    fn start(name: &str, port: u16, tls: bool) -> Peer {
        let script = peers_dir().join(format!("{name}.sh"));
        // A leftover from an interrupted run would make `start` refuse.
        let _ = run(Command::new("bash").arg(&script).arg("stop"), b"", WAIT);
        let port_arg = port.to_string();
        let mut args = vec!["start", "--port", &port_arg];
        if tls {
            args.push("--tls");
        }
        let out = run(Command::new("bash").arg(&script).args(&args), b"", WAIT);
        assert_eq!(
            out.code, 0,
            "{name} start failed:\n{}\n{}",
            out.stdout, out.stderr
        );
        let port = out
            .stdout
            .split_whitespace()
            .find_map(|w| w.strip_prefix("PORT="))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no PORT= in {}", out.stdout));
        Peer { script, port }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = run(
            Command::new("bash").arg(&self.script).arg("stop"),
            b"",
            WAIT,
        );
    }
}

/// What every probe of a reference server finds, TLS or not: passive mode announces the
/// address dialled, bounce protection is on, anonymous is off, EPSV works.
const COMMON: &[(&str, &str)] = &[
    ("service", "ok"),
    ("pasv.address", "ok"),
    ("epsv", "ok"),
    ("eprt", "ok"),
    ("port.bounce", "ok"),
    ("anonymous.login", "ok"),
    ("anonymous.write", "ok"),
    ("feat", "ok"),
];

/// Without `--tls`: clear-text logins, no TLS.
const PLAIN: &[(&str, &str)] = &[
    ("tls.auth", "risk"),
    ("login.cleartext", "risk"),
    ("tls.versions", "untested"),
    ("data.protection", "untested"),
    ("data.session_reuse", "untested"),
];

/// With `--tls`: TLS required for logins and data, a self-signed certificate valid 3 days.
const TLS: &[(&str, &str)] = &[
    ("tls.auth", "ok"),
    ("login.cleartext", "ok"),
    ("tls.versions", "ok"),
    ("tls.legacy", "untested"),
    ("data.protection", "ok"),
    ("tls.certificate.trust", "warning"),
    ("tls.certificate.expiry", "warning"),
];

/// Per server: (name, port, its own expectations without TLS, with TLS).
type Expected = (
    &'static str,
    u16,
    &'static [(&'static str, &'static str)],
    &'static [(&'static str, &'static str)],
);

const PEERS: [Expected; 4] = [
    (
        "vsftpd",
        2151,
        &[
            ("banner.version", "warning"),
            ("epsv_all", "warning"),
            ("listing.mlsd", "ok"),
        ],
        &[
            ("banner.version", "warning"),
            ("epsv_all", "warning"),
            ("data.session_reuse", "ok"),
        ],
    ),
    (
        "pure-ftpd",
        2152,
        &[("banner.version", "ok"), ("epsv_all", "warning")],
        &[
            ("banner.version", "ok"),
            ("epsv_all", "warning"),
            ("data.session_reuse", "warning"),
        ],
    ),
    (
        "proftpd",
        2153,
        &[("banner.version", "ok"), ("epsv_all", "ok")],
        &[
            ("banner.version", "ok"),
            ("epsv_all", "ok"),
            ("data.session_reuse", "ok"),
        ],
    ),
    (
        "pyftpdlib",
        2154,
        &[("banner.version", "warning"), ("epsv_all", "ok")],
        &[
            ("banner.version", "warning"),
            ("epsv_all", "ok"),
            ("data.session_reuse", "warning"),
        ],
    ),
];

/// Probe `name` and compare every expected verdict; the exit code follows from them.
fn exercise(name: &str, port: u16, tls: bool, own: &[(&str, &str)]) {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let peer = Peer::start(name, port, tls);
    let dir = tempfile::tempdir().unwrap();
    let scheme = if tls { "ftpes" } else { "ftp" };
    let url = format!("{scheme}://{USER}@127.0.0.1:{}", peer.port);
    let out = run(
        ferry_command(dir.path(), PASSWORD).args(["probe", &url, "--json", "--timeout", "10"]),
        b"",
        WAIT,
    );
    let json: serde_json::Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("{name}: no JSON ({e}):\n{}\n{}", out.stdout, out.stderr));
    let found: HashMap<&str, (&str, &str)> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap(),
                (
                    f["verdict"].as_str().unwrap(),
                    f["detail"].as_str().unwrap(),
                ),
            )
        })
        .collect();
    let expected = COMMON
        .iter()
        .chain(if tls { TLS } else { PLAIN })
        .chain(own);
    let mut wrong = Vec::new();
    for (id, verdict) in expected {
        match found.get(id) {
            Some((v, _)) if v == verdict => {}
            Some((v, detail)) => wrong.push(format!("{id}: {v} ({detail}), expected {verdict}")),
            None => wrong.push(format!("{id}: missing, expected {verdict}")),
        }
    }
    assert!(
        wrong.is_empty(),
        "{name} (tls: {tls}):\n{}\nall: {found:#?}",
        wrong.join("\n")
    );
    // Clear-text logins are a risk; with TLS the worst is the self-signed certificate.
    assert_eq!(out.code, if tls { 10 } else { 20 }, "{name}: {found:#?}");
    if name == "vsftpd" {
        assert!(
            found["epsv_all"].1.contains("EPRT"),
            "{:?}",
            found["epsv_all"]
        );
    }
    if name == "pure-ftpd" {
        assert!(
            found["epsv_all"].1.contains("PASV"),
            "{:?}",
            found["epsv_all"]
        );
    }
}

/// Without `FERRY_PEER_TESTS=1` every test is listed as ignored, with the reason, rather than
/// counted as passed.
fn main() -> std::process::ExitCode {
    let args = libtest_mimic::Arguments::from_args();
    let off = !enabled();
    let mut trials = Vec::new();
    for (name, port, plain, tls) in PEERS {
        let id = name.replace('-', "_");
        trials.push(libtest_mimic::Trial::test(
            format!("probe_{id}"),
            move || {
                exercise(name, port, false, plain);
                Ok(())
            },
        ));
        trials.push(libtest_mimic::Trial::test(
            format!("probe_{id}_tls"),
            move || {
                exercise(name, port + 10, true, tls);
                Ok(())
            },
        ));
    }
    let trials = trials
        .into_iter()
        .map(|t| {
            t.with_ignored_flag(off).with_kind(if off {
                "needs FERRY_PEER_TESTS=1, root and ../shared/peers"
            } else {
                ""
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}
