#!/usr/bin/env python3
"""Turn a bench/compare.sh result directory into the Markdown tables of docs/BENCHMARKS.md.

    python3 bench/summarize.py bench/results/<run>

Each table has one column per server, Ferry's ratio to the best peer, and whether the
target is met. "Best" is the highest figure, or the lowest for times and memory. A run made
with FERRY_AGAIN=1 also has `ferry-again` (Ferry measured a second time, last): its column and
ratio are shown beside the first, and a target counts as met when both slots meet it.
"""
import json
import os
import sys

NCPU = os.cpu_count() or 2
PEERS = ["vsftpd", "pure-ftpd", "proftpd", "pyftpdlib"]
SERVERS = ["ferry"] + PEERS
AGAIN = "ferry-again"


def load(d, name):
    p = os.path.join(d, name + ".json")
    if not os.path.exists(p):
        return None
    try:
        with open(p) as f:
            return json.load(f)
    except json.JSONDecodeError:
        return None


def result(report, scenario):
    if not report:
        return None
    for r in report["results"]:
        if r["scenario"] == scenario:
            return r
    return None


def fmt(v, digits=None):
    if v is None:
        return "–"
    if digits is None:
        digits = 0 if abs(v) >= 100 else (1 if abs(v) >= 10 else 2)
    return f"{v:,.{digits}f}"


def metric(r, key):
    """A figure of result r: 'figure', a details key, or a derived per-CPU figure."""
    if not r or not r.get("ok"):
        return None
    if key == "figure":
        return r.get("figure")
    if key in ("min_each", "max_each"):
        each = r["details"].get("mb_per_s_each") or []
        return (min(each) if key == "min_each" else max(each)) if each else None
    if key in ("server_cpu_s", "bench_cpu_s", "elapsed_s", "machine_busy_pct"):
        return r.get(key)
    busy, soft, el = r.get("machine_busy_pct"), r.get("machine_softirq_pct"), r.get("elapsed_s")
    if key == "softirq_cpu_s":
        # Kernel network-stack work; on this kernel it is charged to the processes it
        # interrupts, so it is already inside the server and bench CPU figures.
        return None if soft is None or el is None else soft / 100 * NCPU * el
    if key == "other_cpu_s":
        # CPU the machine spent beyond this server and the bench: other programs (or
        # network work charged to no process). Large values mean a disturbed measurement.
        if busy is None or el is None:
            return None
        return busy / 100 * NCPU * el - (r.get("server_cpu_s") or 0) - (r.get("bench_cpu_s") or 0)
    return r["details"].get(key)


def why(r):
    if r is None:
        return "not run"
    if r.get("ok"):
        return None
    e = r.get("error") or "failed"
    return e if len(e) < 90 else e[:87] + "..."


def table(d, reports, title, scenario, rows, higher_better, target=None):
    """rows: [(label, key, higher_better_for_ratio)]"""
    if scenario == "idle" and load(d, "ferry-idle"):
        # Ferry's per-session cost is too small to show at 300 sessions (the heap has that
        # much slack); its column is the 10,000-session run on a fresh server.
        reports = dict(reports, ferry=load(d, "ferry-idle"))
    # `ferry-again` skips idle (its column would be a 300-session figure, see above).
    servers = SERVERS + ([AGAIN] if reports.get(AGAIN) and scenario != "idle" else [])
    ferries = [s for s in servers if s not in PEERS]
    out = [f"### {title}", ""]
    head = "Ferry ÷ best peer" + (" (first / again)" if len(ferries) > 1 else "")
    out.append("| | " + " | ".join(servers) + f" | {head} |")
    out.append("|---|" + "---:|" * len(servers) + "---:|")
    for label, key, hb in rows:
        vals = {s: metric(result(reports.get(s), scenario), key) for s in servers}
        cells = [fmt(vals[s]) for s in servers]
        peer_vals = [vals[p] for p in PEERS if vals[p] is not None]
        ratios = []
        for fe in ferries:
            if vals[fe] is not None and peer_vals and hb is not None:
                best = max(peer_vals) if hb else min(peer_vals)
                if best:
                    r = vals[fe] / best
                    ratios.append(f"{r:.2f}×" if r >= 0.1 else f"{r:.2g}×")
        ratio = " / ".join(ratios) if ratios else "–"
        out.append(f"| {label} | " + " | ".join(cells) + f" | {ratio} |")
    notes = []
    for s in servers:
        w = why(result(reports.get(s), scenario))
        if w and not (s == AGAIN and scenario == "idle"):
            notes.append(f"{s}: {w}")
    for s in servers:
        r = result(reports.get(s), scenario)
        if r and r.get("ok") and r.get("capped"):
            notes.append(f"{s}: capped by --duration")
        if r and r.get("ok") and "note" in r.get("details", {}):
            notes.append(f"{s}: {r['details']['note']}")
    out.append("")
    if notes:
        out.append("Not measured / notes: " + "; ".join(notes) + ".")
        out.append("")
    return "\n".join(out)


def main():
    d = sys.argv[1]
    reports = {s: load(d, s) for s in SERVERS + [AGAIN]}
    parts = []
    with open(os.path.join(d, "env.txt")) as f:
        parts.append("```\n" + f.read().strip() + "\n```\n")
    if os.path.exists(os.path.join(d, "load.txt")):
        with open(os.path.join(d, "load.txt")) as f:
            parts.append("Load average (1, 5, 15 min) when each part started:\n\n```\n" + f.read().strip() + "\n```\n")

    ip = os.path.join(d, "iperf3.json")
    if os.path.exists(ip):
        with open(ip) as f:
            j = json.load(f)
        end = j.get("end", {})
        bps = end.get("sum_received", {}).get("bits_per_second")
        cpu = end.get("cpu_utilization_percent", {})
        if bps:
            parts.append(
                f"**Loopback ceiling** (iperf3, one TCP stream, 127.0.0.1): "
                f"{bps / 8e6:,.0f} MB/s (sender CPU {cpu.get('host_total', 0):.0f}%, "
                f"receiver CPU {cpu.get('remote_total', 0):.0f}%).\n"
            )
    c = load(d, "ceiling")
    if c:
        down, up = result(c, "ceiling-down"), result(c, "ceiling-up")
        parts.append(
            "**Bench client ceiling** (`ferry bench --scenario ceiling`: the same receive and send "
            "loops against an in-process source/sink, no FTP): "
            f"receive {fmt(metric(down, 'figure'))} MB/s, send {fmt(metric(up, 'figure'))} MB/s "
            "(its CPU seconds include the in-process peer).\n"
        )
        m = result(c, "minimal-small")
        if m and m.get("ok"):
            ml = result(c, "minimal-login")
            parts.append(
                "**Minimal server** (`ferry bench --scenario ceiling`, `minimal-small` and `minimal-login`: "
                "the `small` and `login` loops against a server in a process of its own (one worker per CPU), no "
                "file system, no password, each download `accept`, one `write`, `close`): " + minimal(m)
                + ("; " + minimal(ml) if ml and ml.get("ok") else "") + ".\n"
            )
    ca = load(d, "ceiling-again")
    if ca:
        down, up = result(ca, "ceiling-down"), result(ca, "ceiling-up")
        m = result(ca, "minimal-small")
        ml = result(ca, "minimal-login")
        parts.append(
            "**Again, after the peers** (just before `ferry-again`): bench client ceiling receive "
            f"{fmt(metric(down, 'figure'))} MB/s, send {fmt(metric(up, 'figure'))} MB/s; minimal server "
            + (minimal(m) if m and m.get("ok") else "not measured")
            + ("; " + minimal(ml) if ml and ml.get("ok") else "") + ".\n"
        )

    parts.append(table(d, reports, "Single-stream download (RETR)", "retr", [
        ("MB/s (median)", "figure", True),
        ("MB/s (slowest run)", "min_each", None),
        ("MB/s (fastest run)", "max_each", None),
        ("MB per server CPU-second", "mb_per_server_cpu_s", True),
        ("server CPU-s", "server_cpu_s", None),
        ("bench CPU-s", "bench_cpu_s", None),
        ("machine busy % (of 2 CPUs)", "machine_busy_pct", None),
        ("other CPU-s (machine − server − bench)", "other_cpu_s", None),
    ], True))
    parts.append(table(d, reports, "Single-stream upload (STOR)", "stor", [
        ("MB/s (median)", "figure", True),
        ("MB/s (slowest run)", "min_each", None),
        ("MB/s (fastest run)", "max_each", None),
        ("MB per server CPU-second", "mb_per_server_cpu_s", True),
        ("server CPU-s", "server_cpu_s", None),
        ("bench CPU-s", "bench_cpu_s", None),
        ("machine busy % (of 2 CPUs)", "machine_busy_pct", None),
        ("other CPU-s (machine − server − bench)", "other_cpu_s", None),
    ], True))
    parts.append(table(d, reports, "Connect + login + QUIT", "login", [
        ("logins/s", "figure", True),
        ("logins per server CPU-second", "logins_per_server_cpu_s", True),
        ("server CPU-s", "server_cpu_s", None),
        ("bench CPU-s", "bench_cpu_s", None),
        ("machine busy % (of 2 CPUs)", "machine_busy_pct", None),
        ("other CPU-s (machine − server − bench)", "other_cpu_s", None),
        ("errors", "errors", None),
    ], True))
    parts.append(table(d, reports, "Small-file downloads (RETR)", "small", [
        ("transfers/s", "figure", True),
        ("transfers per server CPU-second", "transfers_per_server_cpu_s", True),
        ("server CPU-s", "server_cpu_s", None),
        ("bench CPU-s", "bench_cpu_s", None),
        ("machine busy % (of 2 CPUs)", "machine_busy_pct", None),
        ("other CPU-s (machine − server − bench)", "other_cpu_s", None),
        ("errors", "errors", None),
    ], True))
    parts.append(table(d, reports, "LIST of the large directory", "list", [
        ("ms (median, EPSV to 226)", "figure", False),
        ("ms, first run (EPSV to 226)", "ms_first", False),
        ("ms from command to 150", "ms_to_150", None),
        ("ms from command to first byte", "ms_to_first_byte", None),
        ("ms from command to 226", "ms_to_226", None),
        ("lines", "lines", None),
        ("bytes", "bytes", None),
        ("server CPU-s (all runs)", "server_cpu_s", None),
    ], False))
    parts.append(table(d, reports, "MLSD of the large directory", "mlsd", [
        ("ms (median, EPSV to 226)", "figure", False),
        ("ms, first run (EPSV to 226)", "ms_first", False),
        ("ms from command to 150", "ms_to_150", None),
        ("ms from command to first byte", "ms_to_first_byte", None),
        ("ms from command to 226", "ms_to_226", None),
        ("lines", "lines", None),
        ("bytes", "bytes", None),
        ("server CPU-s (all runs)", "server_cpu_s", None),
    ], False))
    parts.append(table(d, reports, "Idle logged-in sessions", "idle", [
        ("PSS KiB per session", "figure", False),
        ("RSS KiB per session", "rss_kib_per_session", False),
        ("sessions held", "sessions", None),
        ("sessions refused", "errors", None),
        ("sessions answering NOOP", "alive", None),
        ("server processes", "processes_after", None),
        ("server CPU-s to open them", "server_cpu_s", None),
    ], False))
    fi = load(d, "ferry-idle")
    r = result(fi, "idle")
    if r:
        det = r.get("details", {})
        parts.append(
            f"**Ferry at scale** (fresh server, `--sessions {fi['sessions']}`): "
            f"{det.get('sessions', 0):,} sessions opened, {det.get('alive', 0):,} answered NOOP, "
            f"{fmt(r.get('figure'), 2)} KiB PSS and {fmt(det.get('rss_kib_per_session'), 2)} KiB RSS per "
            f"session (server PSS {det.get('pss_kib_before', 0):,} → {det.get('pss_kib_after', 0):,} KiB); "
            f"opening them took {fmt(r.get('elapsed_s'), 2)} s and {fmt(r.get('server_cpu_s'), 2)} server "
            f"CPU-seconds" + ("" if r.get("ok") else f"; error: {r.get('error')}") + ".\n"
        )
    parts.append(targets(reports, fi, load(d, "ceiling"), load(d, "ceiling-again")))
    print("\n".join(parts))


def minimal(m):
    """The minimal server's figures: transfers/s (or logins/s) and server CPU per one."""
    login = m.get("scenario") == "minimal-login"
    count = m.get("details", {}).get("logins" if login else "transfers") or 0
    cpu = m.get("server_cpu_s")
    what = "login" if login else "download"
    per = f"{cpu / count * 1e6:,.1f} µs of server CPU per {what}" if cpu and count else "server CPU not read"
    return f"{fmt(metric(m, 'figure'))} {m.get('unit', '')}, {per}"


def best_peer(reports, scenario, key, higher=True):
    vals = [(metric(result(reports[p], scenario), key), p) for p in PEERS]
    vals = [(v, p) for v, p in vals if v is not None]
    if not vals:
        return None, None
    return max(vals) if higher else min(vals)


def verdict(oks):
    """Met in every Ferry slot, in some, or in none."""
    if all(oks):
        return "yes"
    return "no" if not any(oks) else "in one slot of two"


def targets(reports, fi, ceiling=None, ceiling_again=None):
    """The targets: measured ratio to the best peer and whether it is met."""
    rows = ["### Targets", "", "| target | measured | met? |", "|---|---|---|"]
    ferries = ["ferry"] + ([AGAIN] if reports.get(AGAIN) else [])

    def ratio_row(label, scenario, key, need, higher=True):
        b, who = best_peer(reports, scenario, key, higher)
        figs, ratios, oks = [], [], []
        for fe in ferries:
            f = metric(result(reports.get(fe), scenario), key)
            if f is None or not b:
                continue
            r = f / b
            oks.append(r >= need if higher else r <= need)
            figs.append(fmt(f) + (" (again)" if fe == AGAIN else ""))
            ratios.append(f"{r:.2f}×")
        if not oks:
            rows.append(f"| {label} | not measured | – |")
            return
        rows.append(
            f"| {label} | {', '.join(figs)} vs {fmt(b)} ({who}): {' / '.join(ratios)} | {verdict(oks)} |"
        )

    ratio_row("RETR MB/s ≥ 1× best peer", "retr", "figure", 1.0)
    ratio_row("RETR MB per server CPU-s ≥ 1.5× best peer", "retr", "mb_per_server_cpu_s", 1.5)
    ratio_row("STOR MB/s ≥ 1.3× best peer", "stor", "figure", 1.3)
    # The rule where the client is the limit: at least 90% of its own ceiling, measured
    # in the same run; here the same loop against a server that does nothing but the kernel's work.
    # The minimal server speaks plain FTP only: no ceiling for an FTPS run. Each Ferry slot is
    # read against the minimal server measured just before it.
    tls_run = bool((reports.get("ferry") or {}).get("tls"))

    def ceiling_row(label, scenario):
        shown, oks = [], []
        for fe, ceil in (("ferry", ceiling), (AGAIN, ceiling_again)):
            m = result(ceil, "minimal-" + scenario)
            f = metric(result(reports.get(fe), scenario), "figure")
            if m and m.get("ok") and m.get("figure") and f and not tls_run:
                r = f / m["figure"]
                oks.append(r >= 0.9)
                shown.append(f"{fmt(f)} vs {fmt(m['figure'])}" + (" (again)" if fe == AGAIN else "") + f": {r:.0%}")
        if oks:
            rows.append(f"| {label} ≥ 90% of the client's ceiling (the minimal server) | {'; '.join(shown)} | {verdict(oks)} |")

    ratio_row("logins/s ≥ 2× best peer", "login", "figure", 2.0)
    ceiling_row("logins/s", "login")
    ratio_row("small transfers/s ≥ 1.5× best peer", "small", "figure", 1.5)
    ceiling_row("small transfers/s", "small")
    ratio_row("small transfers per server CPU-s ≥ 2× best peer", "small", "transfers_per_server_cpu_s", 2.0)
    ratio_row("LIST time ≤ 0.5× best peer", "list", "figure", 0.5, higher=False)
    ratio_row("MLSD time ≤ 0.5× best peer", "mlsd", "figure", 0.5, higher=False)
    r = result(fi, "idle")
    if r and r.get("figure") is not None:
        pss, rss = r["figure"], r["details"].get("rss_kib_per_session", 0)
        n = r["details"].get("sessions", 0)
        ok = max(pss, rss) <= 2.0 and r["details"].get("alive") == fi["sessions"]
        rows.append(f"| idle session ≤ 2 KiB, 10,000 sessions served | {n:,} sessions, {pss:.2f} KiB PSS, {rss:.2f} KiB RSS each | {'yes' if ok else 'no'} |")
    rows.append("")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
