//! `ferry bench` against a spawned `ferry serve` on loopback, with tiny sizes: every scenario
//! runs and the JSON report is sane, in plain FTP and with `--tls`. Nothing here is timed;
//! the figures are only checked to be present and positive.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ferry");

/// A `ferry serve` child on 127.0.0.1:0, killed on drop.
struct Serve {
    child: Child,
    url: String,
}

impl Serve {
    /// Plain FTP only (`--tls off`).
    fn start(root: &std::path::Path) -> Serve {
        Serve::start_with(root, "off", None)
    }

    /// With a TLS policy (`off`, `optional`, `required`); a self-signed certificate is
    /// generated into `state`.
    fn start_with(root: &std::path::Path, tls: &str, state: Option<&std::path::Path>) -> Serve {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "serve",
            "--allow-root",
            "--tls",
            tls,
            "--listen",
            "127.0.0.1:0",
            "--user",
            "bench",
        ])
        .arg("--root")
        .arg(root);
        if let Some(state) = state {
            cmd.arg("--state-dir").arg(state);
        }
        let mut child = cmd
            .args(["--log", "warn"])
            .env("FERRY_PASSWORD", "bench-pw")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        // Keep reading what it prints next (with TLS: the certificate's fingerprint): a
        // closed pipe would end the server at its next line.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let addr = line
            .trim()
            .strip_prefix("ferry: listening on ftp://")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .trim_end_matches('/')
            .to_string();
        Serve {
            child,
            url: format!("ftp://bench:bench-pw@{addr}/"),
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Small counts for every scenario, so that a whole run takes seconds.
const LIGHT_LOAD: &[&str] = &[
    "--count",
    "20",
    "--concurrency",
    "4",
    "--small-files",
    "5",
    "--small-size",
    "1000",
    "--sessions",
    "10",
    "--settle",
    "0",
    "--duration",
    "60",
];

fn bench(args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let out = Command::new(BIN)
        .arg("bench")
        .args(args)
        .env_remove("FERRY_PASSWORD")
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn result<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["scenario"] == name)
        .unwrap_or_else(|| panic!("no result for {name}: {report:#}"))
}

fn check_all(report: &Value, names: &[&str]) {
    for name in names {
        let r = result(report, name);
        assert_eq!(r["ok"], true, "{name}: {r:#}");
        assert!(r["figure"].as_f64().unwrap() > 0.0, "{name}: {r:#}");
        assert!(r["elapsed_s"].as_f64().unwrap() >= 0.0, "{name}: {r:#}");
        assert!(r["bench_cpu_s"].as_f64().unwrap() >= 0.0, "{name}: {r:#}");
    }
}

#[test]
fn every_scenario_runs_and_reports_json() {
    let root = tempfile::tempdir().unwrap();
    let serve = Serve::start(root.path());
    let pid = serve.child.id().to_string();
    let (status, stdout, stderr) = bench(
        &[
            &[
                serve.url.as_str(),
                "--json",
                "--scenario",
                "idle,stor,retr,login,small,list,ceiling",
                "--size",
                "3MiB",
                "--runs",
                "2",
                "--list-entries",
                "50",
                "--server-pid",
                &pid,
            ],
            LIGHT_LOAD,
        ]
        .concat(),
    );
    assert!(status.success(), "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert!(
        report["target"]
            .as_str()
            .unwrap()
            .starts_with("ftp://bench@127.0.0.1:")
    );
    // One unmeasured transfer precedes the measured runs (not in `bytes` below).
    assert_eq!(report["warmup"], 1);
    assert!(
        !stdout.contains("bench-pw"),
        "password leaked into the report"
    );
    check_all(
        &report,
        &[
            "stor",
            "retr",
            "login",
            "small",
            "list",
            "mlsd",
            "ceiling-down",
            "ceiling-up",
            "minimal-small",
            "minimal-login",
        ],
    );
    // The minimal server ran in a process of its own, measured as the server.
    let minimal = result(&report, "minimal-small");
    assert_eq!(minimal["details"]["transfers"], 20, "{minimal:#}");
    assert!(minimal["server_cpu_s"].as_f64().is_some(), "{minimal:#}");
    let minimal = result(&report, "minimal-login");
    assert_eq!(minimal["details"]["logins"], 20, "{minimal:#}");
    assert!(minimal["server_cpu_s"].as_f64().is_some(), "{minimal:#}");
    for name in ["stor", "retr"] {
        let r = result(&report, name);
        assert_eq!(r["details"]["bytes"], 2 * 3 * 1024 * 1024, "{r:#}");
        assert!(r["server_cpu_s"].as_f64().is_some(), "{r:#}");
    }
    assert_eq!(result(&report, "login")["details"]["logins"], 20);
    assert_eq!(result(&report, "small")["details"]["transfers"], 20);
    assert_eq!(result(&report, "list")["details"]["lines"], 50);
    let idle = result(&report, "idle");
    assert_eq!(idle["ok"], true, "{idle:#}");
    assert_eq!(idle["details"]["alive"], 10, "{idle:#}");
    assert!(
        idle["details"]["pss_kib_after"].as_u64().unwrap() > 0,
        "{idle:#}"
    );
    // The large file is removed afterwards (no --keep).
    assert!(!root.path().join("ferry-bench/large.bin").exists());
    assert!(
        root.path()
            .join("ferry-bench/list/entry-000049.dat")
            .exists()
    );
}

#[test]
fn prepare_dir_writes_files_locally_and_the_table_prints() {
    let root = tempfile::tempdir().unwrap();
    let serve = Serve::start(root.path());
    let (status, stdout, stderr) = bench(&[
        &serve.url,
        "--scenario",
        "retr,list,small",
        "--size",
        "100KiB",
        "--count",
        "10",
        "--concurrency",
        "2",
        "--small-files",
        "3",
        "--list-entries",
        "30",
        "--keep",
        "--prepare-dir",
        root.path().to_str().unwrap(),
    ]);
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(!stderr.contains("uploading"), "{stderr}");
    for name in ["retr", "list", "mlsd", "small"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name) && !l.contains("error:")),
            "{name} row missing or failed:\n{stdout}"
        );
    }
    assert_eq!(
        std::fs::metadata(root.path().join("ferry-bench/large.bin"))
            .unwrap()
            .len(),
        100 * 1024
    );
}

#[test]
fn refuses_hosts_off_this_machine() {
    for url in [
        "ftp://u:p@192.0.2.1:21/",
        "ftp://u:p@example.com/",
        "ftp://u:p@[2001:db8::1]/",
    ] {
        let (status, _, stderr) = bench(&[url, "--scenario", "login"]);
        assert_eq!(status.code(), Some(2), "{url}: {stderr}");
        assert!(stderr.contains("refusing"), "{url}: {stderr}");
    }
}

/// `--tls` against a server that refuses clear-text logins (`--tls required`): every scenario
/// but `ceiling` runs over explicit FTPS, with more uploads on one session than the server
/// gives TLS session tickets (Ferry sends 8 per control connection, none on uploads), so the
/// bench's session renewal is exercised too.
#[test]
fn tls_scenarios_run_against_a_server_that_requires_tls() {
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let serve = Serve::start_with(root.path(), "required", Some(state.path()));
    let pid = serve.child.id().to_string();

    // The server really refuses plain FTP, so a passing run below can only be TLS.
    let (status, stdout, stderr) = bench(&[&serve.url, "--scenario", "login", "--timeout", "10"]);
    assert!(!status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("530 TLS required"), "{stdout}\n{stderr}");

    let (status, stdout, stderr) = bench(
        &[
            &[
                serve.url.as_str(),
                "--tls",
                "--json",
                "--scenario",
                "idle,stor,retr,login,small,list",
                "--size",
                "256KiB",
                "--runs",
                "10",
                "--list-entries",
                "40",
                "--timeout",
                "20",
                "--server-pid",
                &pid,
            ],
            LIGHT_LOAD,
        ]
        .concat(),
    );
    assert!(status.success(), "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(report["tls"], true, "{report:#}");
    assert!(
        !stdout.contains("bench-pw"),
        "password leaked into the report"
    );
    check_all(&report, &["stor", "retr", "login", "small", "list", "mlsd"]);
    for r in report["results"].as_array().unwrap() {
        assert!(r["error"].is_null(), "{r:#}");
        assert_eq!(r["capped"], false, "{r:#}");
        if let Some(errors) = r["details"].get("errors") {
            assert_eq!(errors, 0, "{r:#}");
        }
    }
    for name in ["stor", "retr"] {
        let r = result(&report, name);
        assert_eq!(r["details"]["runs"], 10, "{r:#}");
        assert_eq!(r["details"]["bytes"], 10 * 256 * 1024, "{r:#}");
    }
    assert_eq!(result(&report, "login")["details"]["logins"], 20);
    assert_eq!(result(&report, "small")["details"]["transfers"], 20);
    assert_eq!(result(&report, "list")["details"]["lines"], 40);
    let idle = result(&report, "idle");
    assert_eq!(idle["ok"], true, "{idle:#}");
    assert_eq!(idle["details"]["alive"], 10, "{idle:#}");
    // Files uploaded over TLS arrived whole.
    for i in 0..5 {
        let p = root.path().join(format!("ferry-bench/small/s{i:05}"));
        assert_eq!(
            std::fs::metadata(&p).unwrap().len(),
            1000,
            "{}",
            p.display()
        );
    }

    // The table says TLS was used.
    let (status, stdout, stderr) =
        bench(&[&serve.url, "--tls", "--scenario", "login", "--count", "3"]);
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stdout.lines().next().unwrap().contains("(TLS)"), "{stdout}");
}

/// `--tls` against a server without TLS fails at once, saying `AUTH TLS` was refused.
#[test]
fn tls_against_a_plain_server_fails_clearly() {
    let root = tempfile::tempdir().unwrap();
    let serve = Serve::start(root.path());
    let started = std::time::Instant::now();
    let (status, stdout, stderr) = bench(&[
        &serve.url,
        "--tls",
        "--scenario",
        "login",
        "--count",
        "3",
        "--timeout",
        "20",
    ]);
    assert!(!status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("AUTH TLS refused: 502"),
        "{stdout}\n{stderr}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
}

/// A `ferry serve` child serving SFTP (and FTP, unused) on 127.0.0.1 port 0, killed on drop.
struct SftpServe {
    child: Child,
    /// `127.0.0.1:PORT` of the SFTP listener.
    addr: String,
}

impl SftpServe {
    /// User `bench` with password `bench-pw` (and `extra` flags) on `root`.
    fn start(root: &std::path::Path, state: &std::path::Path, extra: &[&str]) -> SftpServe {
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--allow-root",
                "--tls",
                "off",
                "--listen",
                "127.0.0.1:0",
            ])
            .args(["--sftp-listen", "127.0.0.1:0", "--user", "bench"])
            .args(["--max-sessions-per-ip", "0", "--log", "warn"])
            .arg("--root")
            .arg(root)
            .arg("--state-dir")
            .arg(state)
            .args(extra)
            .env("FERRY_PASSWORD", "bench-pw")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut addr = None;
        let mut seen = String::new();
        for _ in 0..10 {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 {
                break;
            }
            seen.push_str(&line);
            if let Some(a) = line.trim().strip_prefix("ferry: listening on sftp://") {
                addr = Some(a.trim_end_matches('/').to_string());
                break;
            }
        }
        // Keep reading what it prints next: a closed pipe would end the server.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let addr = addr.unwrap_or_else(|| panic!("no SFTP listener in:\n{seen}"));
        SftpServe { child, addr }
    }
}

impl Drop for SftpServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether every program is on the PATH. If not: a note and `false` (skip), or a panic when
/// `FERRY_REQUIRE_INTEROP=1`.
fn have_programs(test: &str, programs: &[&str]) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|p| {
            !std::env::split_paths(&path).any(|d| {
                std::fs::metadata(d.join(p))
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("FERRY_REQUIRE_INTEROP").as_deref() == Ok("1") {
        panic!("{test}: {missing:?} not installed and FERRY_REQUIRE_INTEROP=1");
    }
    eprintln!(
        "note: skipping {test}: {missing:?} not installed (FERRY_REQUIRE_INTEROP=1 makes this a failure)"
    );
    false
}

/// The checks every SFTP report passes: the transfers moved what they should, the server's
/// CPU was read, idle sessions answered, nothing failed, no password shown.
fn check_sftp_report(report: &Value, stdout: &str, root: &std::path::Path) {
    assert_eq!(report["protocol"], "sftp", "{report:#}");
    assert!(
        report["target"]
            .as_str()
            .unwrap()
            .starts_with("sftp://bench@127.0.0.1:"),
        "{report:#}"
    );
    assert!(
        !stdout.contains("bench-pw"),
        "password leaked into the report"
    );
    check_all(report, &["put", "get", "login", "small", "small-put"]);
    for r in report["results"].as_array().unwrap() {
        assert!(r["error"].is_null(), "{r:#}");
        assert_eq!(r["capped"], false, "{r:#}");
        assert!(r["server_cpu_s"].as_f64().is_some(), "{r:#}");
        if let Some(errors) = r["details"].get("errors") {
            assert_eq!(errors, 0, "{r:#}");
        }
    }
    for name in ["put", "get"] {
        let r = result(report, name);
        assert_eq!(r["details"]["runs"], 2, "{r:#}");
        assert_eq!(r["details"]["bytes"], 2 * 3 * 1024 * 1024, "{r:#}");
    }
    assert_eq!(result(report, "login")["details"]["logins"], 20);
    assert_eq!(result(report, "small")["details"]["transfers"], 20);
    assert_eq!(result(report, "small-put")["details"]["transfers"], 20);
    let idle = result(report, "idle");
    assert_eq!(idle["ok"], true, "{idle:#}");
    assert_eq!(idle["details"]["alive"], 10, "{idle:#}");
    assert!(
        idle["details"]["pss_kib_after"].as_u64().unwrap() > 0,
        "{idle:#}"
    );
    // The files arrived whole through the server; the large one is removed afterwards.
    for i in 0..5 {
        let p = root.join(format!("ferry-bench/small/s{i:05}"));
        assert_eq!(
            std::fs::metadata(&p).unwrap().len(),
            1000,
            "{}",
            p.display()
        );
    }
    // Each session writes its own names in turn (w<session>-00000, -00001, ...), whichever
    // transfers it took: every session's names start at 00000 and have no gap.
    let dir = root.join("ferry-bench/small-put");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in &names {
        let (session, nth) = name
            .strip_prefix('w')
            .and_then(|n| n.split_once('-'))
            .unwrap_or_else(|| panic!("unexpected name {name} in {names:?}"));
        let nth: u32 = nth.parse().unwrap();
        for before in 0..nth {
            let earlier = format!("w{session}-{before:05}");
            assert!(names.contains(&earlier), "{earlier} missing: {names:?}");
        }
        assert_eq!(
            std::fs::metadata(dir.join(name)).unwrap().len(),
            1000,
            "{name}"
        );
    }
    assert!(names.len() >= 5, "{names:?}");
    assert!(!root.join("ferry-bench/large.bin").exists());
}

/// Every SFTP scenario against `ferry serve --sftp-listen`, with `driver` making the transfers.
fn sftp_scenarios(driver: &str) -> (Value, String, tempfile::TempDir) {
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let serve = SftpServe::start(root.path(), state.path(), &[]);
    let pid = serve.child.id().to_string();
    let url = format!("sftp://bench:bench-pw@{}/", serve.addr);
    let (status, stdout, stderr) = bench(
        &[
            &[
                url.as_str(),
                "--json",
                "--driver",
                driver,
                "--size",
                "3MiB",
                "--runs",
                "2",
                "--timeout",
                "30",
                "--server-pid",
                &pid,
            ],
            LIGHT_LOAD,
        ]
        .concat(),
    );
    assert!(status.success(), "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    // The default scenarios are SFTP's, all of them.
    assert_eq!(
        report["scenarios"],
        serde_json::json!(["idle", "put", "get", "login", "small", "small-put"]),
        "{report:#}"
    );
    check_sftp_report(&report, &stdout, root.path());
    (report, stdout, root)
}

/// The SFTP scenarios with OpenSSH's `sftp` as the client of the transfers (password logins
/// through `sshpass`), the bench's default.
#[test]
fn sftp_scenarios_run_with_openssh_sftp_and_report_json() {
    if !have_programs(
        "sftp_scenarios_run_with_openssh_sftp_and_report_json",
        &["sftp", "sshpass"],
    ) {
        return;
    }
    let (report, _, _) = sftp_scenarios("openssh");
    assert_eq!(report["sftp"]["driver"], "openssh", "{report:#}");
    assert_eq!(report["sftp"]["auth"], "password", "{report:#}");
    assert_eq!(report["sftp"]["cipher"], "aes128-gcm@openssh.com");
    assert!(
        report["sftp"]["openssh"]
            .as_str()
            .unwrap()
            .starts_with("OpenSSH"),
        "{report:#}"
    );
    // The sftp processes' CPU is the client's, counted in the bench's.
    for name in ["put", "get", "small", "small-put"] {
        let r = result(&report, name);
        let client = r["details"]["client_cpu_s"].as_f64().unwrap();
        assert!(r["bench_cpu_s"].as_f64().unwrap() >= client, "{r:#}");
    }
}

/// The SFTP scenarios with Ferry's client library making the transfers too (no OpenSSH).
#[test]
fn sftp_scenarios_run_with_ferrys_client_and_report_json() {
    let (report, _, _) = sftp_scenarios("ferry");
    assert_eq!(report["sftp"]["driver"], "ferry", "{report:#}");
    assert!(report["sftp"].get("openssh").is_none(), "{report:#}");
}

/// FTP-only scenarios and flags are refused for sftp:// URLs and the other way round, and an
/// `sftp://` URL off this machine is refused like an FTP one.
#[test]
fn sftp_urls_refuse_what_they_cannot_measure() {
    for (args, says) in [
        (
            &["sftp://u:p@127.0.0.1:1/", "--scenario", "list"][..],
            "no list scenario for SFTP",
        ),
        (
            &["sftp://u:p@127.0.0.1:1/", "--scenario", "login", "--tls"][..],
            "--tls is for ftp://",
        ),
        (
            &["ftp://u:p@127.0.0.1:1/", "--scenario", "put"][..],
            "no put scenario for FTP",
        ),
        (
            &["sftp://u:p@192.0.2.1/", "--scenario", "login"][..],
            "refusing",
        ),
        (
            &["sftp://127.0.0.1:1/", "--scenario", "login"][..],
            "no user",
        ),
    ] {
        let (status, stdout, stderr) = bench(args);
        assert!(!status.success(), "{args:?}: {stdout}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// Key logins (`-i`) with both clients, against `ferry serve --authorized-keys`. Needs
/// `ssh-keygen`, `sftp`; runs only where `ferry serve` has `--authorized-keys`.
#[test]
fn sftp_scenarios_log_in_with_a_key() {
    let test = "sftp_scenarios_log_in_with_a_key";
    let help = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    if !String::from_utf8_lossy(&help.stdout).contains("--authorized-keys") {
        eprintln!("note: skipping {test}: this ferry serve has no --authorized-keys");
        return;
    }
    if !have_programs(test, &["sftp", "ssh-keygen"]) {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("id_ed25519");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    let authorized = keys.path().join("id_ed25519.pub");
    let serve = SftpServe::start(
        root.path(),
        state.path(),
        &["--authorized-keys", authorized.to_str().unwrap()],
    );
    let pid = serve.child.id().to_string();
    // No password anywhere: the bench's environment has none (see `bench`), nor the URL.
    let url = format!("sftp://bench@{}/", serve.addr);
    for driver in ["openssh", "ferry"] {
        let (status, stdout, stderr) = bench(
            &[
                &[
                    url.as_str(),
                    "--json",
                    "-i",
                    key.to_str().unwrap(),
                    "--driver",
                    driver,
                    "--size",
                    "3MiB",
                    "--runs",
                    "2",
                    "--timeout",
                    "30",
                    "--server-pid",
                    &pid,
                ],
                LIGHT_LOAD,
            ]
            .concat(),
        );
        assert!(status.success(), "{driver}: {stdout}\n{stderr}");
        let report: Value =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        assert_eq!(report["sftp"]["auth"], "key", "{report:#}");
        check_sftp_report(&report, &stdout, root.path());
        assert_eq!(result(&report, "login")["details"]["auth"], "key");
    }
}
