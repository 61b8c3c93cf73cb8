//! The scenarios of `ferry bench` and the files they need on the server.
//!
//! Each scenario prepares untimed, then measures one bounded part: a count of operations or
//! runs that stops early at `--duration`. Server and bench CPU are read around that part only.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::ftp::{self, Ctrl, Phases};
use super::{Ctx, Meter, Outcome, Scenario, procfs};

/// Sessions used to upload preparation files.
const PREP_SESSIONS: usize = 8;
/// Buffer for large downloads: big enough that a read is rarely the limit.
const BIG_BUF: usize = 1 << 20;

/// Run `scenarios` in order; a failing scenario is reported and the next one runs.
pub(super) async fn run_all(ctx: &Ctx, scenarios: &[Scenario]) -> Vec<Outcome> {
    let mut out = Vec::new();
    let needs_dir = scenarios.iter().any(|s| *s != Scenario::Ceiling);
    if needs_dir && let Err(e) = make_base(ctx).await {
        out.push(Outcome::failed("setup", "", &e));
        return out;
    }
    for &s in scenarios {
        ctx.progress(&format!("{s:?}").to_lowercase());
        match s {
            Scenario::Stor => out.push(or_failed("stor", "MB/s", transfer(ctx, Dir::Up).await)),
            Scenario::Retr => out.push(or_failed("retr", "MB/s", transfer(ctx, Dir::Down).await)),
            Scenario::Login => out.push(or_failed("login", "logins/s", login(ctx).await)),
            Scenario::Small => out.push(or_failed("small", "transfers/s", small(ctx).await)),
            Scenario::List => match listing(ctx).await {
                Ok(v) => out.extend(v),
                Err(e) => out.push(Outcome::failed("list", "ms", &e)),
            },
            Scenario::Idle => out.push(or_failed("idle", "KiB PSS/sess", idle(ctx).await)),
            Scenario::Ceiling => match ceiling(ctx).await {
                Ok(v) => out.extend(v),
                Err(e) => out.push(Outcome::failed("ceiling", "MB/s", &e)),
            },
            // SFTP only: refused before the run starts.
            Scenario::Put | Scenario::Get | Scenario::SmallPut => {}
        }
    }
    if needs_dir
        && !ctx.args.keep
        && scenarios
            .iter()
            .any(|s| matches!(s, Scenario::Stor | Scenario::Retr))
        && let Ok(mut c) = session(ctx).await
    {
        let _ = c.cmd(&format!("DELE {}", ctx.path("large.bin"))).await;
        c.quit().await;
    }
    out
}

fn or_failed(name: &str, unit: &'static str, r: Result<Outcome>) -> Outcome {
    r.unwrap_or_else(|e| Outcome::failed(name, unit, &e))
}

async fn session(ctx: &Ctx) -> Result<Ctrl> {
    Ctrl::open(&ctx.target, ctx.mode).await
}

/// `MKD`, accepting "already exists" answers.
async fn mkd(c: &mut Ctrl, path: &str) -> Result<()> {
    let r = c.cmd(&format!("MKD {path}")).await?;
    if r.code == 257 || r.code == 521 || r.code == 550 {
        Ok(())
    } else {
        bail!("MKD {path}: {} {}", r.code, r.text())
    }
}

async fn make_base(ctx: &Ctx) -> Result<()> {
    if let Some(dir) = &ctx.args.prepare_dir {
        std::fs::create_dir_all(dir.join("ferry-bench"))
            .with_context(|| format!("--prepare-dir {}", dir.display()))?;
        return Ok(());
    }
    let mut c = session(ctx).await.context("login")?;
    mkd(&mut c, &ctx.path("")).await?;
    c.quit().await;
    Ok(())
}

/// Make sure `names` (relative to `dir`, each `size` bytes) exist on the server: written
/// locally under `--prepare-dir`, else uploaded through a few sessions where missing.
async fn ensure_files(ctx: &Ctx, dir: &str, names: &[String], size: u64) -> Result<()> {
    if let Some(local) = &ctx.args.prepare_dir {
        let d = local.join("ferry-bench").join(dir);
        std::fs::create_dir_all(&d).with_context(|| d.display().to_string())?;
        let data = &ctx.pattern[..usize::try_from(size)
            .unwrap_or(usize::MAX)
            .min(ctx.pattern.len())];
        for n in names {
            let p = d.join(n);
            if std::fs::metadata(&p).map(|m| m.len()).ok() != Some(size) {
                write_local(&p, size, data, &ctx.pattern)?;
            }
        }
        return Ok(());
    }
    let mut c = session(ctx).await?;
    mkd(&mut c, &ctx.path(dir)).await?;
    let present: std::collections::HashSet<String> =
        c.nlst(&ctx.path(dir)).await?.into_iter().collect();
    c.quit().await;
    let missing: Vec<String> = names
        .iter()
        .filter(|n| !present.contains(*n))
        .cloned()
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    ctx.progress(&format!(
        "uploading {} files into ferry-bench/{dir}",
        missing.len()
    ));
    let missing = Arc::new(missing);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..PREP_SESSIONS.min(missing.len()) {
        let missing = Arc::clone(&missing);
        let next = Arc::clone(&next);
        let (t, mode) = (Arc::clone(&ctx.target), ctx.mode);
        let prefix = ctx.path(dir);
        let pattern = ctx.pattern[..usize::try_from(size)
            .unwrap_or(usize::MAX)
            .min(ctx.pattern.len())]
            .to_vec();
        tasks.spawn(async move {
            let mut c = Ctrl::open(&t, mode).await?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(name) = missing.get(i) else { break };
                let target = format!("{prefix}/{name}");
                if pattern.is_empty() {
                    c.stor(&target, 0, b"\0", None).await?;
                } else {
                    c.stor(&target, size, &pattern, None).await?;
                }
            }
            c.quit().await;
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.context("upload task")??;
    }
    Ok(())
}

pub(super) fn write_local(
    path: &std::path::Path,
    size: u64,
    first: &[u8],
    pattern: &[u8],
) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).with_context(|| path.display().to_string())?;
    let mut left = size;
    let mut chunk = first;
    while left > 0 {
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(chunk.len());
        f.write_all(&chunk[..n])?;
        left -= n as u64;
        chunk = pattern;
    }
    Ok(())
}

pub(super) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Up,
    Down,
}

/// `stor` / `retr`: `--runs` single-stream transfers of `--size` bytes.
async fn transfer(ctx: &Ctx, dir: Dir) -> Result<Outcome> {
    let size = ctx.args.size;
    let path = ctx.path("large.bin");
    let mut c = session(ctx).await?;
    if dir == Dir::Down && c.size(&path).await? != Some(size) {
        if let Some(local) = &ctx.args.prepare_dir {
            let p = local.join("ferry-bench/large.bin");
            write_local(&p, size, &ctx.pattern, &ctx.pattern)?;
        } else {
            ctx.progress("uploading the large file first");
            c.stor(&path, size, &ctx.pattern, None).await?;
        }
    }
    let name = if dir == Dir::Up { "stor" } else { "retr" };
    let mut o = Outcome::new(name, "MB/s");
    let mut buf = vec![0u8; BIG_BUF];
    let mut rates = Vec::new();
    let mut bytes = 0u64;
    let deadline = ctx.deadline();
    for _ in 0..ctx.args.warmup {
        ctx.progress(&format!("{name}: warm-up"));
        match dir {
            Dir::Up => c.stor(&path, size, &ctx.pattern, Some(deadline)).await?,
            Dir::Down => c.retr(&path, &mut buf, Some(deadline)).await?,
        };
    }
    let meter = Meter::start(&ctx.args.server_pid);
    for _ in 0..ctx.args.runs {
        if Instant::now() >= deadline {
            o.capped = true;
            break;
        }
        let t0 = Instant::now();
        let (n, complete) = match dir {
            Dir::Up => c.stor(&path, size, &ctx.pattern, Some(deadline)).await?,
            Dir::Down => c.retr(&path, &mut buf, Some(deadline)).await?,
        };
        let secs = t0.elapsed().as_secs_f64();
        bytes += n;
        rates.push(n as f64 / secs / 1e6);
        if !complete {
            o.capped = true;
            break;
        }
        if dir == Dir::Down && n != size {
            bail!("RETR returned {n} bytes, expected {size}");
        }
    }
    meter.stop(&mut o);
    if o.capped {
        drop(c);
    } else {
        c.quit().await;
    }
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
    if let Some(cpu) = o.server_cpu_s.filter(|c| *c > 0.0) {
        o.detail("mb_per_server_cpu_s", bytes as f64 / 1e6 / cpu);
    }
    Ok(o)
}

/// Shared state of a concurrent loop: tickets up to a count, a deadline, error tally.
pub(super) struct Tickets {
    next: AtomicU64,
    count: u64,
    deadline: Instant,
    done: AtomicU64,
    errors: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Tickets {
    pub(super) fn new(count: u64, deadline: Instant) -> Arc<Tickets> {
        Arc::new(Tickets {
            next: AtomicU64::new(0),
            count,
            deadline,
            done: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_error: std::sync::Mutex::new(None),
        })
    }

    /// The next ticket, or `None` when the count is used up or the deadline passed.
    pub(super) fn take(&self) -> Option<u64> {
        if Instant::now() >= self.deadline {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i < self.count).then_some(i)
    }

    pub(super) fn record(&self, r: Result<()>) {
        match r {
            Ok(()) => {
                self.done.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert_with(|| format!("{e:#}"));
                }
            }
        }
    }

    /// Fill `o` with the tally; `figure` = completed per second.
    pub(super) fn report(&self, o: &mut Outcome, what: &str) {
        let done = self.done.load(Ordering::Relaxed);
        let errors = self.errors.load(Ordering::Relaxed);
        o.ok = done > 0;
        o.capped = done + errors < self.count && Instant::now() >= self.deadline;
        o.figure = Some(done as f64 / o.elapsed_s.max(1e-9));
        o.detail(what, done);
        o.detail("errors", errors);
        if let Some(cpu) = o.server_cpu_s.filter(|c| *c > 0.0) {
            o.detail(&format!("{what}_per_server_cpu_s"), done as f64 / cpu);
        }
        if let Ok(first) = self.first_error.lock()
            && let Some(e) = first.as_ref()
        {
            o.detail("first_error", e.clone());
            if done == 0 {
                o.error = Some(e.clone());
            }
        }
    }
}

/// `login`: connect + USER/PASS + QUIT, `--concurrency` at a time, `--count` in all; with
/// `--tls`, `AUTH TLS` and a full handshake before `USER` (no `PBSZ`/`PROT`: no data follows).
async fn login(ctx: &Ctx) -> Result<Outcome> {
    login_loop(ctx, "login").await
}

/// The measured part of `login`, reported under `label`.
async fn login_loop(ctx: &Ctx, label: &str) -> Result<Outcome> {
    let mut o = Outcome::new(label, "logins/s");
    let tickets = Tickets::new(ctx.args.count, ctx.deadline());
    let meter = Meter::start(&ctx.args.server_pid);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..ctx.args.concurrency {
        let tickets = Arc::clone(&tickets);
        let (t, mode) = (Arc::clone(&ctx.target), ctx.mode);
        tasks.spawn(async move {
            while tickets.take().is_some() {
                let r = async {
                    let mut c = Ctrl::connect(&t, mode).await?;
                    c.login(&t.user, &t.pass).await?;
                    c.quit().await;
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
    Ok(o)
}

/// `small`: `--count` downloads of `--small-size` files over `--concurrency` logged-in
/// sessions (the logins are not timed).
async fn small(ctx: &Ctx) -> Result<Outcome> {
    let files = ctx.args.small_files.max(1);
    let names: Vec<String> = (0..files).map(|i| format!("s{i:05}")).collect();
    ensure_files(ctx, "small", &names, ctx.args.small_size).await?;
    small_loop(ctx, names, "small").await
}

/// The measured part of `small`: `--count` downloads of `names` (in turn) over
/// `--concurrency` sessions opened first.
async fn small_loop(ctx: &Ctx, names: Vec<String>, label: &str) -> Result<Outcome> {
    let mut sessions = Vec::new();
    for _ in 0..ctx.args.concurrency {
        sessions.push(session(ctx).await.context("opening the sessions")?);
    }
    let mut o = Outcome::new(label, "transfers/s");
    let tickets = Tickets::new(ctx.args.count, ctx.deadline());
    let names = Arc::new(names);
    let meter = Meter::start(&ctx.args.server_pid);
    let mut tasks = tokio::task::JoinSet::new();
    for mut c in sessions {
        let tickets = Arc::clone(&tickets);
        let names = Arc::clone(&names);
        let prefix = ctx.path("small");
        let want = ctx.args.small_size;
        let (t, mode) = (Arc::clone(&ctx.target), ctx.mode);
        tasks.spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Some(i) = tickets.take() {
                let name = &names[(i % names.len() as u64) as usize];
                let r = c.retr(&format!("{prefix}/{name}"), &mut buf, None).await;
                let r = match r {
                    Ok((n, _)) if n == want => Ok(()),
                    Ok((n, _)) => Err(anyhow::anyhow!("RETR gave {n} bytes, expected {want}")),
                    Err(e) => Err(e),
                };
                let failed = r.is_err();
                tickets.record(r);
                if failed {
                    // The control connection's state is unknown after an error: start a new
                    // session so the concurrency stays as asked (the time counts).
                    match Ctrl::open(&t, mode).await {
                        Ok(fresh) => c = fresh,
                        Err(e) => {
                            tickets.record(Err(e));
                            return;
                        }
                    }
                }
            }
            c.quit().await;
        });
    }
    while tasks.join_next().await.is_some() {}
    meter.stop(&mut o);
    tickets.report(&mut o, "transfers");
    o.detail("concurrency", ctx.args.concurrency as u64);
    o.detail("file_bytes", ctx.args.small_size);
    Ok(o)
}

/// `list`: LIST and MLSD of a `--list-entries` directory, `--runs` times each, on one session.
async fn listing(ctx: &Ctx) -> Result<Vec<Outcome>> {
    let n = ctx.args.list_entries;
    let names: Vec<String> = (0..n).map(|i| format!("entry-{i:06}.dat")).collect();
    ensure_files(ctx, "list", &names, 0).await?;
    let dir = ctx.path("list");
    let mut c = session(ctx).await?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut out = Vec::new();
    for verb in ["LIST", "MLSD"] {
        let mut o = Outcome::new(&verb.to_lowercase(), "ms");
        let mut times = Vec::new();
        let mut phases: Vec<Phases> = Vec::new();
        let mut last = (0, 0);
        let deadline = ctx.deadline();
        let meter = Meter::start(&ctx.args.server_pid);
        let mut error = None;
        for _ in 0..ctx.args.runs {
            if Instant::now() >= deadline {
                o.capped = true;
                break;
            }
            let t0 = Instant::now();
            match c.listing(&format!("{verb} {dir}"), &mut buf).await {
                Ok(r) => {
                    times.push(t0.elapsed().as_secs_f64() * 1e3);
                    phases.push(r.2);
                    last = (r.0, r.1);
                }
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        meter.stop(&mut o);
        if let Some(e) = error {
            o.error = Some(format!("{e:#}"));
            out.push(o);
            // The session may be confused after a refused command (vsftpd has no MLSD).
            c = session(ctx).await?;
            continue;
        }
        o.ok = !times.is_empty();
        // The first run apart: a server that keeps listings (Ferry) reads the disk only then.
        let first = times.first().copied();
        o.figure = Some(median(&mut times));
        if let Some(first) = first {
            o.detail("ms_first", (first * 100.0).round() / 100.0);
        }
        o.detail("bytes", last.0);
        o.detail("lines", last.1);
        o.detail("entries", n);
        o.detail("runs", times.len() as u64);
        // Where the time of the median run went (milliseconds from sending the command).
        let ms = |d: Duration| (d.as_secs_f64() * 1e4).round() / 10.0;
        let mut by_total: Vec<&Phases> = phases.iter().collect();
        by_total.sort_by_key(|p| p.reply_226);
        if let Some(p) = by_total.get(by_total.len() / 2) {
            o.detail("ms_to_150", ms(p.reply_150));
            o.detail("ms_to_first_byte", ms(p.first_byte));
            o.detail("ms_to_eof", ms(p.eof));
            o.detail("ms_to_226", ms(p.reply_226));
        }
        if last.1 < n {
            o.detail(
                "note",
                format!("server listed {} lines for {n} entries", last.1),
            );
        }
        out.push(o);
    }
    c.quit().await;
    Ok(out)
}

/// `idle`: hold `--sessions` logged-in sessions and read the server's memory per session.
async fn idle(ctx: &Ctx) -> Result<Outcome> {
    let pids = &ctx.args.server_pid;
    let mut o = Outcome::new("idle", "KiB PSS/sess");
    // One login first, so one-time costs (a password hash's working memory, worker threads,
    // lazily built state) are in the baseline and the figure is the cost of one more session.
    session(ctx).await.context("warm-up login")?.quit().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = procfs::tree_memory(pids);
    let tickets = Tickets::new(ctx.args.sessions, ctx.deadline());
    let meter = Meter::start(pids);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..ctx.args.concurrency {
        let tickets = Arc::clone(&tickets);
        let (t, mode) = (Arc::clone(&ctx.target), ctx.mode);
        tasks.spawn(async move {
            let mut held = Vec::new();
            while tickets.take().is_some() {
                match Ctrl::open(&t, mode).await {
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
    // The rate of opening is not the figure here.
    o.detail("opened_per_s", o.figure.unwrap_or(0.0));
    tokio::time::sleep(Duration::from_secs(ctx.args.settle)).await;
    let after = procfs::tree_memory(pids);
    let open = held.len() as u64;

    // Check every session still answers.
    let alive = Arc::new(AtomicU64::new(0));
    let mut checks = tokio::task::JoinSet::new();
    let per = held.len().div_ceil(ctx.args.concurrency).max(1);
    while !held.is_empty() {
        let mut chunk: Vec<Ctrl> = held.split_off(held.len().saturating_sub(per));
        let alive = Arc::clone(&alive);
        checks.spawn(async move {
            for c in &mut chunk {
                if matches!(c.cmd("NOOP").await, Ok(r) if r.code == 200) {
                    alive.fetch_add(1, Ordering::Relaxed);
                }
            }
            for c in chunk {
                c.quit().await;
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
        o.detail("processes_after", after.processes);
    }
    o.ok = open > 0 && alive == open;
    if alive < open && o.error.is_none() {
        o.error = Some(format!("only {alive} of {open} sessions answered NOOP"));
    }
    Ok(o)
}

/// `ceiling`: the bench's own transfer loops against an in-process peer on loopback (no
/// FTP), i.e. the most `retr`/`stor` could show on this machine with this client.
async fn ceiling(ctx: &Ctx) -> Result<Vec<Outcome>> {
    let size = ctx.args.size;
    let mut out = Vec::new();
    for dir in [Dir::Down, Dir::Up] {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let pattern = ctx.pattern.clone();
        // The peer: a plain source or sink, as cheap as a sendfile server can be.
        let peer = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await?;
            match dir {
                Dir::Down => {
                    ftp::fill(&mut s, size, &pattern, None).await?;
                    s.shutdown().await?;
                }
                Dir::Up => {
                    let mut buf = vec![0u8; BIG_BUF];
                    while s.read(&mut buf).await? > 0 {}
                }
            }
            anyhow::Ok(())
        });
        let name = if dir == Dir::Down {
            "ceiling-down"
        } else {
            "ceiling-up"
        };
        let mut o = Outcome::new(name, "MB/s");
        let mut buf = vec![0u8; BIG_BUF];
        let meter = Meter::start(&[]);
        let mut s = ftp::bounded("connect", TcpStream::connect(addr)).await?;
        let deadline = Some(ctx.deadline());
        let (n, complete) = match dir {
            Dir::Down => ftp::drain(&mut s, &mut buf, deadline, |_| {}).await?,
            Dir::Up => {
                let r = ftp::fill(&mut s, size, &ctx.pattern, deadline).await?;
                s.shutdown().await?;
                r
            }
        };
        drop(s);
        let _ = peer.await;
        meter.stop(&mut o);
        o.ok = true;
        o.capped = !complete;
        o.figure = Some(n as f64 / o.elapsed_s / 1e6);
        o.detail("bytes", n);
        o.detail(
            "note",
            if ctx.target.tls.is_some() {
                "bench CPU includes the in-process peer; plain TCP, no TLS"
            } else {
                "bench CPU includes the in-process peer"
            },
        );
        out.push(o);
    }
    out.extend(minimal_ceilings(ctx).await?);
    Ok(out)
}

/// The `small` and `login` loops (same client code, sessions, count and concurrency) against a
/// minimal server in a process of its own (`ferry bench-minimal-peer`, see [`minimal_peer`]):
/// the same exchanges with nothing behind them (no file system, no paths, no password, no
/// checks), each download an `accept`, one `write`, a `close`, and `150`+`226` in one write,
/// each login `331` and `230` for any name and password, one worker thread per CPU. Its
/// transfers/s and logins/s are what no server can beat on this machine with this client by
/// much, and its CPU per transfer or login is close to the kernel's floor for a server.
async fn minimal_ceilings(ctx: &Ctx) -> Result<Vec<Outcome>> {
    use tokio::io::AsyncBufReadExt;
    let exe = std::env::current_exe().context("finding the ferry binary")?;
    let mut child = tokio::process::Command::new(exe)
        .args(["bench-minimal-peer", "--size"])
        .arg(ctx.args.small_size.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the minimal peer")?;
    let stdout = child.stdout.take().context("minimal peer's output")?;
    let mut first = String::new();
    ftp::bounded(
        "minimal peer's port",
        tokio::io::BufReader::new(stdout).read_line(&mut first),
    )
    .await?;
    let port: u16 = first
        .trim()
        .parse()
        .with_context(|| format!("minimal peer said {first:?}"))?;
    let mut args = ctx.args.clone();
    args.server_pid = child.id().into_iter().collect();
    let peer_ctx = Ctx {
        target: Arc::new(super::Target {
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            user: "bench".into(),
            pass: "bench".into(),
            base: String::new(),
            tls: None,
        }),
        args,
        mode: super::DataMode::Epsv,
        pattern: Vec::new(),
    };
    let small = small_loop(&peer_ctx, vec!["f".to_string()], "minimal-small").await;
    let logins = login_loop(&peer_ctx, "minimal-login").await;
    // Its standard input closing tells it to end.
    drop(child.stdin.take());
    if tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
    let mut out = vec![small?, logins?];
    for o in &mut out {
        o.detail("note", "server CPU is the minimal peer's");
    }
    Ok(out)
}

/// `ferry bench-minimal-peer` (hidden): the server of [`minimal_ceilings`], on 127.0.0.1 and a
/// port the system picks, printed on the first line; it ends when its standard input closes.
pub(crate) fn minimal_peer(size: u64) -> Result<()> {
    // One worker per CPU, as the servers it stands for use every core: with one thread its
    // logins/s were a quarter lower than Ferry's own, no ceiling at all.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        println!("{}", listener.local_addr()?.port());
        use std::io::Write;
        std::io::stdout().flush()?;
        let body = Arc::new(vec![b'x'; size as usize]);
        let mut stdin = tokio::io::stdin();
        let mut sessions = tokio::task::JoinSet::new();
        let mut sink = [0u8; 64];
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (s, _) = accepted?;
                    let _ = s.set_nodelay(true);
                    sessions.spawn(minimal_session(s, Arc::clone(&body)));
                }
                read = stdin.read(&mut sink) => {
                    if !matches!(read, Ok(n) if n > 0) {
                        return Ok(());
                    }
                }
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            }
        }
    })
}

/// One session of the minimal peer of [`minimal_ceilings`]: a line, an answer; its data
/// listener is bound at the first `EPSV` (a login-only session binds none) and the downloads
/// are written with plain blocking calls on a socket that is already connected (as Ferry's
/// quick path does), so the peer costs no more than the kernel's work.
async fn minimal_session(s: TcpStream, body: Arc<Vec<u8>>) -> Result<()> {
    use std::io::Write;
    use tokio::io::AsyncBufReadExt;
    // The data listener and its port, made at the first `EPSV`.
    let mut data: Option<(std::net::TcpListener, u16)> = None;
    let (r, mut w) = s.into_split();
    let mut lines = tokio::io::BufReader::new(r).lines();
    w.write_all(b"220 ready\r\n").await?;
    while let Some(line) = ftp::bounded("read command", lines.next_line()).await? {
        let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let reply = match verb.as_str() {
            "USER" => "331 ok\r\n".to_string(),
            "PASS" => "230 ok\r\n".to_string(),
            "EPSV" => {
                let port = match &data {
                    Some((_, port)) => *port,
                    None => {
                        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
                        l.set_nonblocking(true)?;
                        let port = l.local_addr()?.port();
                        data = Some((l, port));
                        port
                    }
                };
                format!("229 ok (|||{port}|)\r\n")
            }
            "RETR" => {
                let Some((data, _)) = &data else {
                    w.write_all(b"425 use EPSV first\r\n").await?;
                    continue;
                };
                // The client connects before it sends RETR; wait briefly if not there yet.
                let mut conn = None;
                for _ in 0..1000 {
                    match data.accept() {
                        Ok((c, _)) => {
                            conn = Some(c);
                            break;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                match conn {
                    Some(mut c) => {
                        c.set_nonblocking(false)?;
                        c.write_all(&body)?;
                        drop(c);
                        "150 ok\r\n226 ok\r\n".to_string()
                    }
                    None => "425 no data connection\r\n".to_string(),
                }
            }
            "QUIT" => {
                w.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => "200 ok\r\n".to_string(),
        };
        w.write_all(reply.as_bytes()).await?;
    }
    Ok(())
}
