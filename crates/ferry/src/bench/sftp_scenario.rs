//! The SFTP scenarios of `ferry bench` and the files they need on the server.
//!
//! Transfers (`put`, `get`, `small`, `small-put`) are made by the `--driver`: OpenSSH's `sftp`
//! (the default: servers compared with the client people use, one process per connection,
//! whose CPU is added to the bench's) or Ferry's client library. Logins and idle sessions use
//! Ferry's client library in-process: a process per login (`ssh`, `sftp`) would cost the
//! client more CPU than the fastest server spends, so the machine's two cores would measure
//! the client. As for FTP, each scenario prepares untimed and measures one bounded part.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferry_client::SftpClient;
use ferry_client::sftp::UploadStart;

use super::scenario::{Tickets, median, write_local};
use super::sftp::{Batch, LocalDir, PatternReader, SftpTarget, connect, quote};
use super::{BenchArgs, Driver, Meter, Outcome, Report, Scenario, pattern, procfs};

/// `sftp` commands sent at once by a `small`/`small-put` connection, before the `pwd` that
/// tells when they are done.
const CHUNK: usize = 25;

/// Everything an SFTP scenario needs.
struct SftpCtx {
    target: Arc<SftpTarget>,
    args: BenchArgs,
    /// 1 MiB of pseudo-random bytes, repeated to make uploads.
    pattern: Arc<Vec<u8>>,
    /// The OpenSSH driver's local files.
    local: Option<LocalDir>,
}

impl SftpCtx {
    fn deadline(&self) -> Instant {
        Instant::now() + Duration::from_secs(self.args.duration)
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.args.timeout.max(1))
    }

    fn progress(&self, msg: &str) {
        eprintln!("ferry bench: {msg}");
    }

    fn openssh(&self) -> bool {
        self.args.driver == Driver::Openssh
    }

    fn local(&self) -> Result<&LocalDir> {
        self.local.as_ref().context("no local directory")
    }

    /// The longest a single command may take: what is left of `deadline`, and `--timeout`.
    fn limit(&self, deadline: Instant) -> Duration {
        deadline.saturating_duration_since(Instant::now()) + self.timeout()
    }
}

/// Run the SFTP scenarios of `args` and print the report.
pub(super) fn run(args: BenchArgs, threads: usize) -> Result<()> {
    use Scenario::*;
    if args.tls {
        bail!("--tls is for ftp:// URLs (SFTP is always encrypted)");
    }
    let target = SftpTarget::parse(
        &args.url,
        std::env::var("FERRY_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty()),
        args.identity.clone(),
        &args.cipher,
    )?;
    let all = [Idle, Put, Get, Login, Small, SmallPut];
    let scenarios = super::scenarios_for(&args.scenario, &all, &all, "SFTP")?;
    let drives = scenarios
        .iter()
        .any(|s| matches!(s, Put | Get | Small | SmallPut));
    let local = if drives && args.driver == Driver::Openssh {
        let missing = target.missing_programs();
        if !missing.is_empty() {
            bail!(
                "--driver openssh needs {} on the PATH (apt-get install openssh-client sshpass), \
                 or use --driver ferry",
                missing.join(" and ")
            );
        }
        Some(LocalDir::create(args.local_dir.as_deref())?)
    } else {
        None
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    let openssh = if local.is_some() {
        runtime.block_on(super::sftp::openssh_version())
    } else {
        None
    };
    let ctx = SftpCtx {
        target: Arc::new(target),
        pattern: Arc::new(pattern(1 << 20)),
        local,
        args,
    };
    let mut report = Report::new(&ctx.args, ctx.target.shown(), scenarios.clone(), threads);
    report.protocol = "sftp";
    report.sftp = Some(ctx.target.report(ctx.args.driver, openssh));
    report.results = runtime.block_on(run_all(&ctx, &scenarios));
    report.finish(ctx.args.json)
}

async fn run_all(ctx: &SftpCtx, scenarios: &[Scenario]) -> Vec<Outcome> {
    let mut out = Vec::new();
    if let Err(e) = make_base(ctx).await {
        out.push(Outcome::failed("setup", "", &e));
        return out;
    }
    for &s in scenarios {
        let r = match s {
            Scenario::Idle => ("idle", "KiB PSS/sess", idle(ctx).await),
            Scenario::Put => ("put", "MB/s", transfer(ctx, Dir::Up).await),
            Scenario::Get => ("get", "MB/s", transfer(ctx, Dir::Down).await),
            Scenario::Login => ("login", "logins/s", login(ctx).await),
            Scenario::Small => ("small", "transfers/s", small(ctx, Dir::Down).await),
            Scenario::SmallPut => ("small-put", "transfers/s", small(ctx, Dir::Up).await),
            // FTP only: refused before the run starts.
            Scenario::Stor | Scenario::Retr | Scenario::List | Scenario::Ceiling => continue,
        };
        out.push(r.2.unwrap_or_else(|e| Outcome::failed(r.0, r.1, &e)));
    }
    let transfers = scenarios
        .iter()
        .any(|s| matches!(s, Scenario::Put | Scenario::Get));
    if transfers
        && !ctx.args.keep
        && let Ok(c) = connect(&ctx.target, ctx.timeout()).await
    {
        let _ = c.remove(&ctx.target.remote("large.bin")).await;
        let _ = c.quit().await;
    }
    out
}

/// `mkdir path`, accepting a directory already there.
async fn mkdir(c: &SftpClient, path: &str) -> Result<()> {
    if let Err(e) = c.mkdir(path).await {
        match c.stat(path).await {
            Ok(a) if a.is_dir() => {}
            _ => return Err(e).with_context(|| format!("mkdir {path}")),
        }
    }
    Ok(())
}

/// The bench's working directory: made locally under `--prepare-dir`, else through the server.
async fn make_base(ctx: &SftpCtx) -> Result<()> {
    if let Some(dir) = &ctx.args.prepare_dir {
        std::fs::create_dir_all(dir.join("ferry-bench"))
            .with_context(|| format!("--prepare-dir {}", dir.display()))?;
        return Ok(());
    }
    let c = connect(&ctx.target, ctx.timeout()).await.context("login")?;
    mkdir(&c, &ctx.target.remote_dir()).await?;
    let _ = c.quit().await;
    Ok(())
}

/// Make sure the files `names` (in `dir` under the working directory, each `size` bytes) are
/// on the server: written locally under `--prepare-dir`, else uploaded with Ferry's client
/// library where missing.
async fn ensure_files(ctx: &SftpCtx, dir: &str, names: &[String], size: u64) -> Result<()> {
    if let Some(local) = &ctx.args.prepare_dir {
        let d = local.join("ferry-bench").join(dir);
        std::fs::create_dir_all(&d).with_context(|| d.display().to_string())?;
        for n in names {
            let p = d.join(n);
            if std::fs::metadata(&p).map(|m| m.len()).ok() != Some(size) {
                write_local(&p, size, &ctx.pattern, &ctx.pattern)?;
            }
        }
        return Ok(());
    }
    let c = connect(&ctx.target, ctx.timeout()).await?;
    let remote = ctx.target.remote(dir);
    mkdir(&c, &remote).await?;
    let present: std::collections::HashMap<String, Option<u64>> = c
        .list(Some(&remote))
        .await?
        .into_iter()
        .map(|e| (e.name, e.size))
        .collect();
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| present.get(*n).copied().flatten() != Some(size))
        .collect();
    if !missing.is_empty() {
        ctx.progress(&format!(
            "uploading {} files into ferry-bench/{dir}",
            missing.len()
        ));
    }
    for n in missing {
        let mut src = PatternReader::new(Arc::clone(&ctx.pattern), size);
        c.upload(
            &mut src,
            &format!("{remote}/{n}"),
            UploadStart::Replace,
            &mut |_| {},
        )
        .await?;
    }
    let _ = c.quit().await;
    Ok(())
}

/// The large file `get` reads, `--size` bytes, on the server.
async fn ensure_large(ctx: &SftpCtx, path: &str) -> Result<()> {
    let size = ctx.args.size;
    let c = connect(&ctx.target, ctx.timeout()).await?;
    if c.size(path).await.ok() != Some(size) {
        if let Some(local) = &ctx.args.prepare_dir {
            let p = local.join("ferry-bench/large.bin");
            write_local(&p, size, &ctx.pattern, &ctx.pattern)?;
        } else {
            ctx.progress("uploading the large file first");
            let mut src = PatternReader::new(Arc::clone(&ctx.pattern), size);
            c.upload(&mut src, path, UploadStart::Replace, &mut |_| {})
                .await?;
        }
    }
    let _ = c.quit().await;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Up,
    Down,
}

/// One connection of the `--driver`.
enum Conn {
    Openssh(Batch),
    Ferry(SftpClient),
}

impl Conn {
    async fn open(ctx: &SftpCtx) -> Result<Conn> {
        Ok(if ctx.openssh() {
            Conn::Openssh(Batch::start(&ctx.target, ctx.timeout()).await?)
        } else {
            Conn::Ferry(connect(&ctx.target, ctx.timeout()).await?)
        })
    }

    /// Start counting the client's CPU (an OpenSSH process's; the library's is the bench's).
    fn mark(&mut self) {
        if let Conn::Openssh(b) = self {
            b.mark();
        }
    }

    /// CPU seconds of the client process since [`Conn::mark`] (0 for the library).
    fn cpu_used(&self) -> f64 {
        match self {
            Conn::Openssh(b) => b.cpu_used(),
            Conn::Ferry(_) => 0.0,
        }
    }

    async fn close(self) {
        match self {
            Conn::Openssh(b) => b.close().await,
            Conn::Ferry(c) => {
                let _ = c.quit().await;
            }
        }
    }
}

/// `put` / `get`: `--runs` transfers of `--size` bytes on one session (after `--warmup`).
async fn transfer(ctx: &SftpCtx, dir: Dir) -> Result<Outcome> {
    let size = ctx.args.size;
    let path = ctx.target.remote("large.bin");
    let name = if dir == Dir::Up { "put" } else { "get" };
    ctx.progress(name);
    if dir == Dir::Down {
        ensure_large(ctx, &path).await?;
    }
    // The OpenSSH driver's local side: the upload's source, the download's target.
    let local = if ctx.openssh() {
        let l = ctx.local()?;
        let f = l.file(if dir == Dir::Up { "put.bin" } else { "get.bin" })?;
        if dir == Dir::Up && std::fs::metadata(&f).map(|m| m.len()).ok() != Some(size) {
            write_local(std::path::Path::new(&f), size, &ctx.pattern, &ctx.pattern)?;
        }
        f
    } else {
        String::new()
    };
    let command = match dir {
        Dir::Up => format!("put {} {}", quote(&local), quote(&path)),
        Dir::Down => format!("get {} {}", quote(&path), quote(&local)),
    };
    let mut conn = Conn::open(ctx).await?;
    let deadline = ctx.deadline();
    let one = One {
        dir,
        size,
        command,
        path,
        local,
    };
    for _ in 0..ctx.args.warmup {
        ctx.progress(&format!("{name}: warm-up"));
        one.run(ctx, &mut conn, deadline).await?;
    }
    let mut o = Outcome::new(name, "MB/s");
    let mut rates = Vec::new();
    let mut bytes = 0u64;
    conn.mark();
    let meter = Meter::start(&ctx.args.server_pid);
    for _ in 0..ctx.args.runs {
        if Instant::now() >= deadline {
            o.capped = true;
            break;
        }
        let t0 = Instant::now();
        let n = one.run(ctx, &mut conn, deadline).await?;
        rates.push(n as f64 / t0.elapsed().as_secs_f64() / 1e6);
        bytes += n;
    }
    let client_cpu = conn.cpu_used();
    meter.stop(&mut o);
    o.bench_cpu_s += client_cpu;
    conn.close().await;
    o.ok = !rates.is_empty();
    o.figure = Some(median(&mut rates));
    o.detail("bytes", bytes);
    o.detail("runs", rates.len() as u64);
    o.detail(
        "mb_per_s_each",
        rates
            .iter()
            .map(|r| (r * 10.0).round() / 10.0)
            .collect::<Vec<_>>(),
    );
    if ctx.openssh() {
        o.detail("client_cpu_s", client_cpu);
    }
    if let Some(cpu) = o.server_cpu_s.filter(|c| *c > 0.0) {
        o.detail("mb_per_server_cpu_s", bytes as f64 / 1e6 / cpu);
    }
    Ok(o)
}

/// One transfer of `put` or `get`.
struct One {
    dir: Dir,
    size: u64,
    /// The OpenSSH driver's command.
    command: String,
    /// The remote file.
    path: String,
    /// The OpenSSH driver's local file.
    local: String,
}

impl One {
    /// Make the transfer on `conn`; the bytes moved (which must be `size`).
    async fn run(&self, ctx: &SftpCtx, conn: &mut Conn, deadline: Instant) -> Result<u64> {
        let n = match conn {
            Conn::Openssh(b) => {
                b.run(std::slice::from_ref(&self.command), ctx.limit(deadline))
                    .await?;
                match self.dir {
                    Dir::Down => std::fs::metadata(&self.local)?.len(),
                    Dir::Up => self.size,
                }
            }
            Conn::Ferry(c) => match self.dir {
                Dir::Up => {
                    let mut src = PatternReader::new(Arc::clone(&ctx.pattern), self.size);
                    c.upload(&mut src, &self.path, UploadStart::Replace, &mut |_| {})
                        .await?
                }
                Dir::Down => {
                    c.download(&self.path, 0, &mut tokio::io::sink(), &mut |_| {})
                        .await?
                }
            },
        };
        if n != self.size {
            bail!("{} bytes moved, expected {}", n, self.size);
        }
        Ok(n)
    }
}

/// `small` / `small-put`: `--count` transfers of `--small-size` files over `--concurrency`
/// sessions opened first (not timed). Downloads cycle through `--small-files` files; uploads
/// go to `--small-files` names per session, replaced in turn.
async fn small(ctx: &SftpCtx, dir: Dir) -> Result<Outcome> {
    let name = if dir == Dir::Up { "small-put" } else { "small" };
    ctx.progress(name);
    let files = ctx.args.small_files.max(1);
    let size = ctx.args.small_size;
    let remote_dir = ctx
        .target
        .remote(if dir == Dir::Up { "small-put" } else { "small" });
    let names: Vec<String> = (0..files).map(|i| format!("s{i:05}")).collect();
    match dir {
        Dir::Down => ensure_files(ctx, "small", &names, size).await?,
        Dir::Up => {
            let c = connect(&ctx.target, ctx.timeout()).await?;
            mkdir(&c, &remote_dir).await?;
            let _ = c.quit().await;
        }
    }
    let source = if ctx.openssh() && dir == Dir::Up {
        let f = ctx.local()?.file("small.src")?;
        write_local(std::path::Path::new(&f), size, &ctx.pattern, &ctx.pattern)?;
        f
    } else {
        String::new()
    };
    let mut conns = Vec::new();
    for _ in 0..ctx.args.concurrency {
        conns.push(Conn::open(ctx).await.context("opening the sessions")?);
    }
    let mut o = Outcome::new(name, "transfers/s");
    let tickets = Tickets::new(ctx.args.count, ctx.deadline());
    for c in &mut conns {
        c.mark();
    }
    // CPU of OpenSSH processes that failed and were replaced during the measured part.
    let replaced_cpu = Arc::new(std::sync::Mutex::new(0.0f64));
    let meter = Meter::start(&ctx.args.server_pid);
    let mut tasks = tokio::task::JoinSet::new();
    for (worker, mut conn) in conns.into_iter().enumerate() {
        let tickets = Arc::clone(&tickets);
        let target = Arc::clone(&ctx.target);
        let pattern = Arc::clone(&ctx.pattern);
        let replaced_cpu = Arc::clone(&replaced_cpu);
        let remote_dir = remote_dir.clone();
        let source = source.clone();
        let local = match &ctx.local {
            Some(l) => l.file(&format!("w{worker}.bin"))?,
            None => String::new(),
        };
        let timeout = ctx.timeout();
        let openssh = ctx.openssh();
        // Downloads by ticket; uploads by this session's own count, so that each session
        // writes its names in turn whichever tickets it happens to take.
        let remote = move |i: u64, nth: u64| match dir {
            Dir::Down => format!("{remote_dir}/s{:05}", i % files),
            Dir::Up => format!("{remote_dir}/w{worker}-{:05}", nth % files),
        };
        tasks.spawn(async move {
            let mut nth = 0u64;
            loop {
                let r: Result<()> = match &mut conn {
                    Conn::Openssh(b) => {
                        let mut commands = Vec::with_capacity(CHUNK);
                        while commands.len() < CHUNK {
                            let Some(i) = tickets.take() else { break };
                            let path = remote(i, nth);
                            nth += 1;
                            commands.push(match dir {
                                Dir::Down => format!("get {} {}", quote(&path), quote(&local)),
                                Dir::Up => format!("put {} {}", quote(&source), quote(&path)),
                            });
                        }
                        if commands.is_empty() {
                            break;
                        }
                        let n = commands.len();
                        match b.run(&commands, timeout).await {
                            Ok(()) => {
                                for _ in 0..n {
                                    tickets.record(Ok(()));
                                }
                                continue;
                            }
                            // Which of the chunk failed is unknown: all count as errors.
                            Err(e) => {
                                for _ in 1..n {
                                    tickets.record(Err(anyhow::anyhow!("in a failed batch")));
                                }
                                Err(e)
                            }
                        }
                    }
                    Conn::Ferry(c) => {
                        let Some(i) = tickets.take() else { break };
                        let path = remote(i, nth);
                        nth += 1;
                        let r = match dir {
                            Dir::Down => c
                                .download(&path, 0, &mut tokio::io::sink(), &mut |_| {})
                                .await
                                .map_err(anyhow::Error::from),
                            Dir::Up => {
                                let mut src = PatternReader::new(Arc::clone(&pattern), size);
                                c.upload(&mut src, &path, UploadStart::Replace, &mut |_| {})
                                    .await
                                    .map_err(anyhow::Error::from)
                            }
                        };
                        match r {
                            Ok(n) if n == size => {
                                tickets.record(Ok(()));
                                continue;
                            }
                            Ok(n) => Err(anyhow::anyhow!("{path}: {n} bytes, expected {size}")),
                            Err(e) => Err(e),
                        }
                    }
                };
                if let Err(e) = r {
                    tickets.record(Err(e));
                    // The session's state is unknown after an error: a new one keeps the
                    // concurrency as asked (its time counts).
                    let cpu = conn.cpu_used();
                    if let Ok(mut c) = replaced_cpu.lock() {
                        *c += cpu;
                    }
                    conn.close().await;
                    let fresh = if openssh {
                        Batch::start(&target, timeout).await.map(Conn::Openssh)
                    } else {
                        connect(&target, timeout).await.map(Conn::Ferry)
                    };
                    match fresh {
                        Ok(c) => conn = c,
                        Err(e) => {
                            tickets.record(Err(e));
                            return None;
                        }
                    }
                }
            }
            Some(conn)
        });
    }
    let mut held = Vec::new();
    while let Some(r) = tasks.join_next().await {
        if let Some(c) = r.context("transfer task")? {
            held.push(c);
        }
    }
    let mut client_cpu: f64 = held.iter().map(Conn::cpu_used).sum();
    if let Ok(c) = replaced_cpu.lock() {
        client_cpu += *c;
    }
    meter.stop(&mut o);
    o.bench_cpu_s += client_cpu;
    for c in held {
        c.close().await;
    }
    tickets.report(&mut o, "transfers");
    o.detail("concurrency", ctx.args.concurrency as u64);
    if ctx.openssh() {
        o.detail("client_cpu_s", client_cpu);
    }
    Ok(o)
}

/// `login`: connect, log in (key or password), start the SFTP subsystem, disconnect;
/// `--concurrency` at a time, `--count` in all, with Ferry's client library.
async fn login(ctx: &SftpCtx) -> Result<Outcome> {
    ctx.progress("login");
    let mut o = Outcome::new("login", "logins/s");
    let tickets = Tickets::new(ctx.args.count, ctx.deadline());
    let meter = Meter::start(&ctx.args.server_pid);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..ctx.args.concurrency {
        let tickets = Arc::clone(&tickets);
        let target = Arc::clone(&ctx.target);
        let timeout = ctx.timeout();
        tasks.spawn(async move {
            while tickets.take().is_some() {
                let r = async {
                    let c = connect(&target, timeout).await?;
                    c.quit().await?;
                    anyhow::Ok(())
                }
                .await;
                tickets.record(r);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    meter.stop(&mut o);
    tickets.report(&mut o, "logins");
    o.detail("concurrency", ctx.args.concurrency as u64);
    o.detail("auth", ctx.target.auth_kind());
    Ok(o)
}

/// `idle`: hold `--sessions` logged-in SFTP sessions and read the server's memory per session.
async fn idle(ctx: &SftpCtx) -> Result<Outcome> {
    ctx.progress("idle");
    let pids = &ctx.args.server_pid;
    let mut o = Outcome::new("idle", "KiB PSS/sess");
    // One session first, so one-time costs are in the baseline and the figure is the cost of
    // one more session.
    let _ = connect(&ctx.target, ctx.timeout())
        .await
        .context("warm-up login")?
        .quit()
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = procfs::tree_memory(pids);
    let tickets = Tickets::new(ctx.args.sessions, ctx.deadline());
    let meter = Meter::start(pids);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..ctx.args.concurrency {
        let tickets = Arc::clone(&tickets);
        let target = Arc::clone(&ctx.target);
        let timeout = ctx.timeout();
        tasks.spawn(async move {
            let mut held = Vec::new();
            while tickets.take().is_some() {
                match connect(&target, timeout).await {
                    Ok(c) => {
                        held.push(c);
                        tickets.record(Ok(()));
                    }
                    Err(e) => tickets.record(Err(e)),
                }
            }
            held
        });
    }
    let mut held = Vec::new();
    while let Some(r) = tasks.join_next().await {
        held.extend(r.context("session task")?);
    }
    meter.stop(&mut o);
    tickets.report(&mut o, "sessions");
    o.detail("opened_per_s", o.figure.unwrap_or(0.0));
    tokio::time::sleep(Duration::from_secs(ctx.args.settle)).await;
    let after = procfs::tree_memory(pids);
    let open = held.len() as u64;

    // Every session must still answer.
    let alive = Arc::new(AtomicU64::new(0));
    let dir = ctx.target.remote_dir();
    let mut checks = tokio::task::JoinSet::new();
    let per = held.len().div_ceil(ctx.args.concurrency).max(1);
    while !held.is_empty() {
        let chunk: Vec<SftpClient> = held.split_off(held.len().saturating_sub(per));
        let alive = Arc::clone(&alive);
        let dir = dir.clone();
        checks.spawn(async move {
            for c in &chunk {
                if c.stat(&dir).await.is_ok() {
                    alive.fetch_add(1, Ordering::Relaxed);
                }
            }
            for c in chunk {
                let _ = c.quit().await;
            }
        });
    }
    while checks.join_next().await.is_some() {}
    let alive = alive.load(Ordering::Relaxed);
    o.detail("alive", alive);
    if pids.is_empty() {
        o.figure = None;
        o.detail("note", "no --server-pid: memory not measured");
    } else if open > 0 {
        let per = |a: u64, b: u64| (a as f64 - b as f64) / open as f64;
        o.figure = Some(per(after.pss_kib, before.pss_kib));
        o.detail("rss_kib_per_session", per(after.rss_kib, before.rss_kib));
        o.detail("pss_kib_before", before.pss_kib);
        o.detail("pss_kib_after", after.pss_kib);
        o.detail("rss_kib_after", after.rss_kib);
        o.detail("processes_before", before.processes);
        o.detail("processes_after", after.processes);
    }
    o.ok = open > 0 && alive == open;
    if alive < open && o.error.is_none() {
        o.error = Some(format!("only {alive} of {open} sessions answered"));
    }
    Ok(o)
}
