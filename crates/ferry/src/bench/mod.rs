//! `ferry bench URL`: a load generator for FTP and SFTP servers on this machine, in the spirit
//! of pyftpdlib's `ftpbench`.
//!
//! It speaks FTP over its own lean client (tokio sockets plus `ferry-proto`'s reply decoder,
//! and rustls for explicit FTPS with `--tls`) so that it costs less CPU than the servers it
//! measures, and it reports its own CPU time beside the server's so that claim can be checked
//! on every run. SFTP servers (`sftp://`) are driven by OpenSSH's `sftp` client in batch mode
//! for transfers, so that servers are compared with the client people use, and by Ferry's
//! SFTP client library for logins and idle sessions.
//!
//! Loopback only: the target must be 127.0.0.0/8, `::1` or `localhost`. A load generator
//! pointed at someone else's server is an attack, so it refuses any other host.
//!
//! # Layout
//! - `ftp`: the control connection, passive data connections, transfers and listings, plain
//!   or TLS.
//! - `procfs`: server and bench CPU seconds and memory from `/proc`, over a process tree.
//! - `scenario`: the FTP scenarios (`stor`, `retr`, `login`, `small`, `list`, `idle`,
//!   `ceiling`) and their preparation.
//! - `sftp`: the SFTP target, OpenSSH's `sftp` in batch mode and Ferry's client library as
//!   drivers.
//! - `sftp_scenario`: the SFTP scenarios (`idle`, `put`, `get`, `login`, `small`, `small-put`).
//! - here: flags, target URL, the run, and the table / JSON report.

mod ftp;
mod procfs;
mod scenario;
mod sftp;
mod sftp_scenario;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use ferry_client::{TlsClientConfig, Trust};
use percent_encoding::percent_decode_str;
use serde::Serialize;
use serde_json::{Map, Value};

use ftp::DataMode;

/// Flags of `ferry bench`.
#[derive(Debug, Clone, Args)]
pub(crate) struct BenchArgs {
    /// The server: ftp://USER:PASS@127.0.0.1:PORT/ or sftp://USER@127.0.0.1:PORT/ (loopback
    /// only). Without a password in the URL, FERRY_PASSWORD is used (SFTP: unless
    /// --identity is given). A path, if any, is where the bench's working directory
    /// `ferry-bench/` is made.
    #[arg(value_name = "URL")]
    url: String,
    /// Scenarios to run, comma-separated; they always run in the order listed here. FTP
    /// default: idle,stor,retr,login,small,list; `ceiling` (the bench's own throughput with
    /// no FTP server, and `small` and `login` against a minimal server) runs only when asked
    /// for. SFTP default: idle,put,get,login,small,small-put.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    scenario: Vec<Scenario>,
    /// Size of the large file for `stor`/`retr`, `put`/`get` (and `ceiling`): bytes, or with a unit
    /// (KiB, MiB, GiB; KB, MB, GB).
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size)]
    size: u64,
    /// Repetitions of each `stor`, `retr`, `put`, `get`, `LIST` and `MLSD` measurement (the
    /// median is shown).
    #[arg(long, value_name = "N", default_value_t = 1)]
    runs: u32,
    /// Unmeasured `stor`/`retr` (`put`/`get`) transfers before the measured runs: the first touch of fresh
    /// memory (page cache, socket buffers; on a virtual machine, pages the host must supply
    /// again) is then in no server's figures.
    #[arg(long, value_name = "N", default_value_t = 1)]
    warmup: u32,
    /// Concurrent connections for `login`, `small` and `small-put`, and concurrent openings
    /// for `idle`.
    #[arg(long, value_name = "N", default_value_t = 8)]
    concurrency: usize,
    /// Total logins (`login`) and total transfers (`small`, `small-put`).
    #[arg(long, value_name = "N", default_value_t = 2000)]
    count: u64,
    /// Size of each file in `small` and `small-put`.
    #[arg(long, value_name = "SIZE", default_value = "4KiB", value_parser = parse_size)]
    small_size: u64,
    /// Distinct files `small` cycles through (and `small-put` per connection).
    #[arg(long, value_name = "N", default_value_t = 100)]
    small_files: u64,
    /// Entries in the directory listed by `list` (LIST and MLSD).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    list_entries: u64,
    /// Logged-in sessions held open by `idle`.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    sessions: u64,
    /// Seconds `idle` waits with all sessions open before reading the server's memory.
    #[arg(long, value_name = "SECS", default_value_t = 2)]
    settle: u64,
    /// Cap in seconds on each scenario's measured part; a scenario that reaches it stops
    /// early and reports what it did (marked "capped").
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    duration: u64,
    /// Seconds any single socket operation (connect, a reply, one read or write) may take
    /// before it counts as an error.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    timeout: u64,
    /// The server's process ID (repeatable or comma-separated), for its CPU seconds per
    /// scenario and its memory per idle session; its descendants are included, so forking
    /// servers are measured whole.
    #[arg(long, value_name = "PID", value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Local path of the URL's directory on the server, when this machine can write there:
    /// the files of `small`, `list` and `retr` are then created directly instead of being
    /// uploaded through the server.
    #[arg(long, value_name = "DIR")]
    prepare_dir: Option<PathBuf>,
    /// Use PASV instead of EPSV for data connections.
    #[arg(long)]
    pasv: bool,
    /// Explicit FTPS (RFC 4217) on every connection: `AUTH TLS` and a full TLS handshake on
    /// each control connection before the login, then `PBSZ 0` and `PROT P`, so data
    /// connections are TLS too (resuming the control connection's TLS session). The server's
    /// certificate is NOT verified (the bench only talks to this machine). `ceiling` stays
    /// plain TCP.
    #[arg(long)]
    tls: bool,
    /// SFTP: private key file to log in with (OpenSSH format), for every connection and
    /// both drivers; without it, the password (URL or FERRY_PASSWORD) is used, through
    /// `sshpass` for OpenSSH's `sftp`.
    #[arg(long, short = 'i', value_name = "FILE")]
    identity: Option<PathBuf>,
    /// SFTP: the client that makes the `put`, `get`, `small` and `small-put` transfers:
    /// `openssh` (OpenSSH's `sftp -b -`, one process per connection, fed commands and timed
    /// by the bench) or `ferry` (Ferry's SFTP client library, in-process). Logins and idle
    /// sessions always use Ferry's client library.
    #[arg(long, value_name = "CLIENT", default_value = "openssh")]
    driver: Driver,
    /// SFTP: the cipher OpenSSH's `sftp` is told to use (`-o Ciphers=`); Ferry's client
    /// library asks for aes128-gcm@openssh.com first.
    #[arg(long, value_name = "NAME", default_value = "aes128-gcm@openssh.com")]
    cipher: String,
    /// SFTP with `--driver openssh`: directory for the client's local files (the source of
    /// uploads, the target of downloads); default: /dev/shm when it exists (memory, as the
    /// served directory should be), else the system's temporary directory.
    #[arg(long, value_name = "DIR")]
    local_dir: Option<PathBuf>,
    /// Worker threads of the bench's runtime (default: one per CPU).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Keep the large file on the server afterwards (it is deleted by default).
    #[arg(long)]
    keep: bool,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// One scenario of the bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Scenario {
    /// `--sessions` idle logged-in sessions (server memory per session). First, so that the
    /// server's heap is not already grown by the other scenarios.
    Idle,
    /// FTP: single-stream upload of `--size` bytes (MB/s).
    Stor,
    /// FTP: single-stream download of `--size` bytes (MB/s).
    Retr,
    /// SFTP: upload of `--size` bytes on one session (MB/s).
    Put,
    /// SFTP: download of `--size` bytes on one session (MB/s).
    Get,
    /// Connect + login + QUIT (SFTP: connect, key or password login, SFTP subsystem
    /// started, disconnect), `--concurrency` at a time, `--count` in all (logins/s).
    Login,
    /// Downloads of `--small-size` files over `--concurrency` sessions (transfers/s).
    Small,
    /// SFTP: uploads of `--small-size` files over `--concurrency` sessions (transfers/s).
    SmallPut,
    /// LIST and MLSD of a `--list-entries` directory (milliseconds).
    List,
    /// The bench's own throughput against an in-process peer, no FTP (MB/s); and `small` and
    /// `login` against a minimal server in a process of its own (transfers/s and logins/s,
    /// its CPU per transfer and per login).
    Ceiling,
}

/// Where and as whom the bench connects.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    addr: SocketAddr,
    user: String,
    pass: String,
    /// Directory prefix for `ferry-bench/` ("" or "dir/").
    base: String,
    /// `--tls`: explicit FTPS with this configuration (any certificate accepted).
    tls: Option<TlsClientConfig>,
}

/// The parts of a bench URL after its scheme.
pub(crate) struct UrlParts {
    /// The user name, if the URL has one (percent-decoded).
    user: Option<String>,
    /// The password, if the URL has one (percent-decoded).
    pass: Option<String>,
    /// A loopback address.
    addr: SocketAddr,
    /// Directory prefix for `ferry-bench/` ("" or "dir/").
    base: String,
}

impl UrlParts {
    /// Parse `user:pass@host:port/path` (every part optional but the host), refusing any host
    /// that is not loopback.
    fn parse(rest: &str, default_port: u16) -> Result<UrlParts> {
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        let (user, pass) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => (Some(decode(user)), Some(decode(pass))),
                None => (Some(decode(u)), None),
            },
            None => (None, None),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .with_context(|| format!("bad IPv6 host in {hostport}"))?;
            (host, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        let port: u16 = match port {
            Some(p) => p.parse().with_context(|| format!("bad port '{p}'"))?,
            None => default_port,
        };
        let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            match host.parse::<IpAddr>() {
                Ok(ip) if ip.to_canonical().is_loopback() => ip.to_canonical(),
                _ => bail!(
                    "refusing to benchmark '{host}': ferry bench only targets servers on this \
                     machine (127.0.0.0/8, ::1 or localhost), never a remote host"
                ),
            }
        };
        let path = decode(path);
        let base = path.trim_matches('/');
        Ok(UrlParts {
            user,
            pass,
            addr: SocketAddr::new(ip, port),
            base: if base.is_empty() {
                String::new()
            } else {
                format!("{base}/")
            },
        })
    }
}

impl Target {
    /// Parse `ftp://user:pass@host:port/path`, refusing any host that is not loopback.
    fn parse(url: &str, env_password: Option<String>) -> Result<Target> {
        let Some(rest) = url.strip_prefix("ftp://") else {
            if url.starts_with("ftps://") || url.starts_with("ftpes://") {
                bail!(
                    "ferry bench takes an ftp:// URL; add --tls for explicit FTPS (AUTH TLS), \
                     implicit FTPS is not supported"
                );
            }
            bail!("not an ftp:// or sftp:// URL: {url}");
        };
        let parts = UrlParts::parse(rest, 21)?;
        let user = parts.user.unwrap_or_else(|| "anonymous".to_string());
        let pass = match parts.pass.or(env_password) {
            Some(p) => p,
            None if user == "anonymous" => "ferry-bench@".to_string(),
            None => bail!("no password: put it in the URL or in FERRY_PASSWORD"),
        };
        Ok(Target {
            addr: parts.addr,
            user,
            pass,
            base: parts.base,
            tls: None,
        })
    }

    /// The URL without its password, for reports.
    fn shown(&self) -> String {
        format!("ftp://{}@{}/{}", self.user, self.addr, self.base)
    }
}

/// Parse `1GiB`, `512MiB`, `4KiB`, `10MB`, `1048576`.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("bad size '{s}'"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit '{other}' (use KiB, MiB, GiB, KB, MB, GB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size '{s}' is too large"))
}

/// Everything a scenario needs.
pub(crate) struct Ctx {
    target: Arc<Target>,
    args: BenchArgs,
    mode: DataMode,
    /// 1 MiB of pseudo-random bytes, repeated to make uploads.
    pattern: Vec<u8>,
}

impl Ctx {
    /// A server path under the bench's working directory.
    fn path(&self, rel: &str) -> String {
        format!("{}ferry-bench/{rel}", self.target.base)
    }

    fn deadline(&self) -> Instant {
        Instant::now() + Duration::from_secs(self.args.duration)
    }

    fn progress(&self, msg: &str) {
        eprintln!("ferry bench: {msg}");
    }
}

/// The SFTP client that makes the transfers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Driver {
    /// OpenSSH's `sftp` in batch mode, one process per connection.
    Openssh,
    /// Ferry's SFTP client library, in-process.
    Ferry,
}

/// The figures of one scenario (one row of the report).
#[derive(Debug, Serialize)]
pub(crate) struct Outcome {
    /// Scenario name (`list` yields two rows, `list` and `mlsd`; `ceiling` four: `ceiling-down`, `ceiling-up`, `minimal-small`, `minimal-login`).
    scenario: String,
    ok: bool,
    /// The headline figure, in `unit`.
    figure: Option<f64>,
    unit: &'static str,
    /// Wall-clock seconds of the measured part.
    elapsed_s: f64,
    /// Server CPU seconds (user + system, process tree) during the measured part.
    server_cpu_s: Option<f64>,
    /// The bench's own CPU seconds during the measured part.
    bench_cpu_s: f64,
    /// Share of all CPUs of the machine that was busy (anything but idle and iowait) during
    /// the measured part: near 100 means the machine, not latency, was the limit; CPU used
    /// beyond server + bench is other load or kernel work charged to no process.
    machine_busy_pct: Option<f64>,
    /// Share of all CPUs spent in softirq (mostly the loopback network stack) during the
    /// measured part; part of `machine_busy_pct`.
    machine_softirq_pct: Option<f64>,
    /// Stopped by `--duration` before finishing its count.
    capped: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    details: Map<String, Value>,
}

impl Outcome {
    fn new(scenario: &str, unit: &'static str) -> Outcome {
        Outcome {
            scenario: scenario.to_string(),
            ok: false,
            figure: None,
            unit,
            elapsed_s: 0.0,
            server_cpu_s: None,
            bench_cpu_s: 0.0,
            machine_busy_pct: None,
            machine_softirq_pct: None,
            capped: false,
            error: None,
            details: Map::new(),
        }
    }

    fn failed(scenario: &str, unit: &'static str, err: &anyhow::Error) -> Outcome {
        let mut o = Outcome::new(scenario, unit);
        o.error = Some(format!("{err:#}"));
        o
    }

    fn detail(&mut self, key: &str, v: impl Into<Value>) {
        self.details.insert(key.to_string(), v.into());
    }
}

/// CPU readings at the start of a measured part.
pub(crate) struct Meter {
    pids: Vec<u32>,
    started: Instant,
    server: Option<f64>,
    bench: f64,
    machine: procfs::MachineTicks,
}

impl Meter {
    fn start(pids: &[u32]) -> Meter {
        Meter {
            pids: pids.to_vec(),
            server: (!pids.is_empty()).then(|| procfs::tree_cpu_seconds(pids)),
            bench: procfs::self_cpu_seconds(),
            machine: procfs::machine_ticks(),
            started: Instant::now(),
        }
    }

    /// Record elapsed time and CPU use since `start` into `o`.
    fn stop(&self, o: &mut Outcome) {
        o.elapsed_s = self.started.elapsed().as_secs_f64();
        o.bench_cpu_s = procfs::self_cpu_seconds() - self.bench;
        o.server_cpu_s = self
            .server
            .map(|before| procfs::tree_cpu_seconds(&self.pids) - before);
        let now = procfs::machine_ticks();
        let total = now.total.saturating_sub(self.machine.total);
        if total > 0 {
            let pct = |a: u64, b: u64| Some(100.0 * a.saturating_sub(b) as f64 / total as f64);
            o.machine_busy_pct = pct(now.busy, self.machine.busy);
            o.machine_softirq_pct = pct(now.softirq, self.machine.softirq);
        }
    }
}

/// The whole report.
#[derive(Debug, Serialize)]
struct Report {
    target: String,
    /// `ftp` or `sftp`.
    protocol: &'static str,
    /// `--tls`: explicit FTPS on every connection (but `ceiling`).
    tls: bool,
    /// SFTP: how the transfers were driven and how the bench logged in.
    #[serde(skip_serializing_if = "Option::is_none")]
    sftp: Option<sftp::SftpReport>,
    scenarios: Vec<Scenario>,
    size_bytes: u64,
    runs: u32,
    warmup: u32,
    concurrency: usize,
    count: u64,
    small_size_bytes: u64,
    list_entries: u64,
    sessions: u64,
    duration_cap_s: u64,
    server_pids: Vec<u32>,
    threads: usize,
    results: Vec<Outcome>,
}

impl Report {
    /// The settings of `args`, with no results yet.
    fn new(args: &BenchArgs, target: String, scenarios: Vec<Scenario>, threads: usize) -> Report {
        Report {
            target,
            protocol: "ftp",
            tls: false,
            sftp: None,
            scenarios,
            size_bytes: args.size,
            runs: args.runs,
            warmup: args.warmup,
            concurrency: args.concurrency,
            count: args.count,
            small_size_bytes: args.small_size,
            list_entries: args.list_entries,
            sessions: args.sessions,
            duration_cap_s: args.duration,
            server_pids: args.server_pid.clone(),
            threads,
            results: Vec::new(),
        }
    }

    /// Print the report (JSON or a table); an error when every scenario failed.
    fn finish(&self, json: bool) -> Result<()> {
        if json {
            println!("{}", serde_json::to_string_pretty(self)?);
        } else {
            print_table(self);
        }
        if self.results.iter().all(|o| !o.ok) && !self.results.is_empty() {
            bail!("every scenario failed");
        }
        Ok(())
    }
}

pub(crate) use scenario::minimal_peer;

/// The scenarios of `asked` (sorted, without repeats), or `default` when none was asked for;
/// an error naming any that `protocol` does not have.
fn scenarios_for(
    asked: &[Scenario],
    default: &[Scenario],
    allowed: &[Scenario],
    protocol: &str,
) -> Result<Vec<Scenario>> {
    let mut scenarios = if asked.is_empty() {
        default.to_vec()
    } else {
        asked.to_vec()
    };
    scenarios.sort();
    scenarios.dedup();
    let foreign: Vec<String> = scenarios
        .iter()
        .filter(|s| !allowed.contains(s))
        .filter_map(|s| s.to_possible_value().map(|v| v.get_name().to_string()))
        .collect();
    if !foreign.is_empty() {
        let names: Vec<String> = allowed
            .iter()
            .filter_map(|s| s.to_possible_value().map(|v| v.get_name().to_string()))
            .collect();
        bail!(
            "no {} scenario for {protocol}; its scenarios are {}",
            foreign.join(", "),
            names.join(", ")
        );
    }
    Ok(scenarios)
}

/// Run `ferry bench`.
pub(crate) fn run(args: BenchArgs) -> Result<()> {
    for &pid in &args.server_pid {
        if !procfs::exists(pid) {
            bail!("--server-pid {pid}: no such process");
        }
    }
    if args.concurrency == 0 || args.runs == 0 {
        bail!("--concurrency and --runs must be at least 1");
    }
    ftp::set_io_timeout(Duration::from_secs(args.timeout.max(1)));
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    if args.url.starts_with("sftp://") {
        return sftp_scenario::run(args, threads);
    }
    if args.identity.is_some() {
        bail!("--identity is for sftp:// URLs");
    }
    let mut target = Target::parse(
        &args.url,
        std::env::var("FERRY_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty()),
    )?;
    if args.tls {
        // Loopback only (see `Target::parse`): no certificate to check against anyone.
        target.tls = Some(TlsClientConfig::new(Trust::Insecure).context("TLS configuration")?);
    }
    use Scenario::*;
    let scenarios = scenarios_for(
        &args.scenario,
        &[Idle, Stor, Retr, Login, Small, List],
        &[Idle, Stor, Retr, Login, Small, List, Ceiling],
        "FTP",
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    let ctx = Ctx {
        target: Arc::new(target),
        mode: if args.pasv {
            DataMode::Pasv
        } else {
            DataMode::Epsv
        },
        pattern: pattern(1 << 20),
        args,
    };
    let mut report = Report::new(&ctx.args, ctx.target.shown(), scenarios.clone(), threads);
    report.tls = ctx.target.tls.is_some();
    report.results = runtime.block_on(scenario::run_all(&ctx, &scenarios));
    report.finish(ctx.args.json)
}

/// Deterministic pseudo-random bytes (xorshift), so uploads don't compress or dedupe.
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
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

fn print_table(r: &Report) {
    let tls = if r.tls { " (TLS)" } else { "" };
    println!("ferry bench {}{tls}  (threads {})", r.target, r.threads);
    println!(
        "{:<12} {:>10} {:<13} {:>9} {:>11} {:>10} {:>5}  details",
        "scenario", "figure", "unit", "elapsed s", "server CPU", "bench CPU", "busy"
    );
    for o in &r.results {
        let figure = match (o.ok, o.figure) {
            (true, Some(f)) if f >= 100.0 => format!("{f:.0}"),
            (true, Some(f)) => format!("{f:.2}"),
            _ => "-".to_string(),
        };
        let server = o
            .server_cpu_s
            .map_or_else(|| "-".to_string(), |s| format!("{s:.2}"));
        let mut details: Vec<String> = o
            .details
            .iter()
            .map(|(k, v)| match v {
                Value::Number(n) => match n.as_f64() {
                    Some(f) if f.fract() != 0.0 => format!("{k}={f:.2}"),
                    _ => format!("{k}={n}"),
                },
                other => format!("{k}={other}"),
            })
            .collect();
        if o.capped {
            details.insert(0, "CAPPED by --duration".to_string());
        }
        if let Some(e) = &o.error {
            details.insert(0, format!("error: {e}"));
        }
        let busy = o
            .machine_busy_pct
            .map_or_else(|| "-".to_string(), |b| format!("{b:.0}%"));
        println!(
            "{:<12} {:>10} {:<13} {:>9.2} {:>11} {:>10.2} {:>5}  {}",
            o.scenario,
            figure,
            o.unit,
            o.elapsed_s,
            server,
            o.bench_cpu_s,
            busy,
            details.join(" ")
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("123"), Ok(123));
        assert!(parse_size("1XB").is_err());
        assert!(parse_size("GiB").is_err());
        assert!(parse_size("99999999999GiB").is_err());
    }

    #[test]
    fn loopback_only() {
        let t = Target::parse("ftp://u:p%40ss@127.0.0.1:2121/", None).unwrap();
        assert_eq!(t.addr, "127.0.0.1:2121".parse().unwrap());
        assert_eq!((t.user.as_str(), t.pass.as_str()), ("u", "p@ss"));
        assert_eq!(t.base, "");
        let t = Target::parse("ftp://u@[::1]:21/sub/dir/", Some("pw".into())).unwrap();
        assert_eq!((t.pass.as_str(), t.base.as_str()), ("pw", "sub/dir/"));
        assert!(Target::parse("ftp://u:p@localhost:2121", None).is_ok());
        assert!(Target::parse("ftp://u:p@127.9.9.9", None).is_ok());
        for bad in [
            "ftp://u:p@10.0.0.1:21/",
            "ftp://u:p@example.com/",
            "ftp://u:p@[2001:db8::1]:21/",
            "ftp://u:p@0.0.0.0:21/",
        ] {
            let e = Target::parse(bad, None).unwrap_err().to_string();
            assert!(e.contains("refusing"), "{bad}: {e}");
        }
        assert!(Target::parse("ftp://u@127.0.0.1/", None).is_err());
        assert!(Target::parse("http://127.0.0.1/", None).is_err());
    }

    #[test]
    fn pattern_is_not_constant() {
        let p = pattern(1 << 20);
        assert_eq!(p.len(), 1 << 20);
        assert_ne!(p[..4096], p[4096..8192]);
    }
}
