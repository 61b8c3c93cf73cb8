#!/usr/bin/env python3
"""Read a bench/sftp-compare.sh run: per scenario (and driver), each round's figures for Ferry and
OpenSSH's sshd, Ferry ÷ sshd within the round and the median of those ratios; idle sessions; the
SFTP targets.

    python3 bench/sftp-summary.py bench/results/RUN

Files read: SCEN.DRIVER.SERVER.ROUND.json (SERVER ferry or sshd; DRIVER openssh, ferry, or lib
for logins), idle.SERVER.json, idle-scale.ferry.json, env.txt.
"""
import json
import os
import re
import statistics
import sys

# scenario -> (unit, per-CPU key in details, target ratio, aim ratio)
SCENARIOS = {
    "put": ("MB/s", "mb_per_server_cpu_s", 1.0, 1.5),
    "get": ("MB/s", "mb_per_server_cpu_s", 1.0, 1.5),
    "login": ("logins/s", "logins_per_server_cpu_s", 2.0, None),
    "small": ("transfers/s", "transfers_per_server_cpu_s", None, None),
    "small-put": ("transfers/s", "transfers_per_server_cpu_s", None, None),
}
DRIVER_NAMES = {"openssh": "OpenSSH sftp", "ferry": "Ferry's client library", "lib": "Ferry's client library"}
IDLE_TARGET_KIB = 32.0


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def result(report, scenario):
    if not report:
        return None
    for r in report.get("results", []):
        if r.get("scenario") == scenario and r.get("ok"):
            return r
    return None


def failure(report, scenario):
    if not report:
        return "no report"
    for r in report.get("results", []):
        if r.get("scenario") == scenario:
            return r.get("error") or "failed"
    return "not run"


def per_cpu(r, key):
    return (r.get("details") or {}).get(key) if r else None


def fmt(v, digits=None):
    if v is None:
        return "–"
    if digits is None:
        digits = 0 if abs(v) >= 100 else (1 if abs(v) >= 10 else 2)
    return f"{v:,.{digits}f}"


def spread(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None, None
    return statistics.median(xs), min(xs), max(xs)


AUTH = {"kind": "key"}


def rounds_table(runs, scen, drv):
    unit, cpu_key, need, aim = SCENARIOS[scen]
    rounds = sorted(runs)
    out = [f"#### {scen} ({unit}; client: {DRIVER_NAMES.get(drv, drv)})", ""]
    out.append("| round | Ferry | sshd | Ferry ÷ sshd | Ferry per server CPU-s | sshd per server CPU-s | ÷ per CPU-s | client CPU-s (Ferry / sshd) |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    ratios, cpu_ratios, notes = [], [], []
    for rnd in rounds:
        f = result(runs[rnd].get("ferry"), scen)
        s = result(runs[rnd].get("sshd"), scen)
        for name, r in (("ferry", f), ("sshd", s)):
            if r is None:
                notes.append(f"round {rnd} {name}: {failure(runs[rnd].get(name), scen)}")
            elif (r.get("details") or {}).get("errors"):
                notes.append(f"round {rnd} {name}: {r['details']['errors']} errors")
            elif r.get("capped"):
                notes.append(f"round {rnd} {name}: capped by --duration")
        ratio = f["figure"] / s["figure"] if f and s and s["figure"] else None
        fc, sc = per_cpu(f, cpu_key), per_cpu(s, cpu_key)
        cpu_ratio = fc / sc if fc and sc else None
        ratios.append(ratio)
        cpu_ratios.append(cpu_ratio)
        ccpu = lambda r: fmt(r.get("bench_cpu_s"), 2) if r else "–"
        out.append(
            f"| {rnd} | {fmt(f['figure'] if f else None)} | {fmt(s['figure'] if s else None)} | "
            f"{f'{ratio:.2f}×' if ratio else '–'} | {fmt(fc)} | {fmt(sc)} | "
            f"{f'{cpu_ratio:.2f}×' if cpu_ratio else '–'} | {ccpu(f)} / {ccpu(s)} |"
        )
    med, lo, hi = spread(ratios)
    cmed, clo, chi = spread(cpu_ratios)
    out.append("")
    if med is not None:
        line = f"Ferry ÷ sshd, median of the rounds: **{med:.2f}×** ({lo:.2f}-{hi:.2f}×)"
        if cmed is not None:
            line += f"; per server CPU-second {cmed:.2f}× ({clo:.2f}-{chi:.2f}×)"
        out.append(line + ".")
    fmed = spread([result(runs[r].get("ferry"), scen)["figure"] for r in rounds if result(runs[r].get("ferry"), scen)])[0]
    smed = spread([result(runs[r].get("sshd"), scen)["figure"] for r in rounds if result(runs[r].get("sshd"), scen)])[0]
    if notes:
        out.append("Notes: " + "; ".join(notes) + ".")
    out.append("")
    n = len([r for r in ratios if r is not None])
    verdict = None
    if need is not None and med is not None:
        k = sum(1 for r in ratios if r is not None and r >= need)
        label = f"{scen} ({DRIVER_NAMES.get(drv, drv)}) ≥ {need}× sshd" + (f", aim {aim}×" if aim else "")
        if scen == "login" and AUTH["kind"] != "key":
            label = f"logins/s ≥ {need}× sshd, with {AUTH['kind']} logins (the target is for key logins)"
        met = "yes" if med >= need else "no"
        if aim and med >= aim:
            met = "yes, aim met"
        verdict = (label, f"median {med:.2f}× ({k} of {n} rounds ≥ {need}×)", met)
    return "\n".join(out), verdict, (fmed, smed, med, cmed)


def idle_row(name, report):
    r = result(report, "idle")
    if not r:
        return f"| {name} | failed: {failure(report, 'idle')} | | | | |", None
    d = r.get("details") or {}
    return (
        f"| {name} | {d.get('sessions', 0):,} ({d.get('alive', 0):,} answering) | {fmt(r.get('figure'))} | "
        f"{fmt(d.get('rss_kib_per_session'))} | {d.get('processes_before', '–')} → {d.get('processes_after', '–')} | "
        f"{fmt(d.get('pss_kib_before'))} → {fmt(d.get('pss_kib_after'))} |",
        r,
    )


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    env = os.path.join(d, "env.txt")
    if os.path.exists(env):
        text = open(env).read()
        m = re.search(r"^auth: (\w+)", text, re.M)
        if m:
            AUTH["kind"] = m[1]
        print("```")
        print(text.strip())
        print("```\n")
    pat = re.compile(r"^(put|get|login|small|small-put)\.(openssh|ferry|lib|key)\.(ferry|sshd)\.(\d+)\.json$")
    runs = {}  # (scen, drv) -> round -> server -> report
    for name in os.listdir(d):
        m = pat.match(name)
        if m:
            runs.setdefault((m[1], m[2]), {}).setdefault(int(m[4]), {})[m[3]] = load(os.path.join(d, name))
    verdicts, overview = [], []
    for scen in SCENARIOS:
        for drv in ("openssh", "ferry", "lib"):
            if (scen, drv) not in runs:
                continue
            text, verdict, (fmed, smed, med, cmed) = rounds_table(runs[(scen, drv)], scen, drv)
            print(text)
            overview.append((scen, drv, fmed, smed, med, cmed))
            if verdict:
                verdicts.append(verdict)

    # Password logins on both (this Ferry takes no key), and sshd's key logins for reference.
    keyed = runs.get(("login", "key"))
    if keyed and ("login", "lib") in runs:
        plain = runs[("login", "lib")]
        print("#### login: sshd with the key (this Ferry takes no key: not the target's comparison)\n")
        print("| round | Ferry, password | sshd, password | sshd, key | Ferry (password) ÷ sshd (key) |")
        print("|---|---:|---:|---:|---:|")
        ratios = []
        for rnd in sorted(keyed):
            f = result(plain.get(rnd, {}).get("ferry"), "login")
            sp = result(plain.get(rnd, {}).get("sshd"), "login")
            sk = result(keyed[rnd].get("sshd"), "login")
            ratio = f["figure"] / sk["figure"] if f and sk and sk["figure"] else None
            ratios.append(ratio)
            print(f"| {rnd} | {fmt(f['figure'] if f else None)} | {fmt(sp['figure'] if sp else None)} | "
                  f"{fmt(sk['figure'] if sk else None)} | {f'{ratio:.2f}×' if ratio else '–'} |")
        med, lo, hi = spread(ratios)
        print()
        if med is not None:
            print(f"Ferry (password) ÷ sshd (key), median of the rounds: {med:.2f}× ({lo:.2f}-{hi:.2f}×).\n")

    idle_s, idle_f = load(os.path.join(d, "idle.sshd.json")), load(os.path.join(d, "idle.ferry.json"))
    scale = load(os.path.join(d, "idle-scale.ferry.json"))
    if idle_s or idle_f or scale:
        print("#### idle sessions (KiB per session: server memory after − before, ÷ sessions)\n")
        print("| server | sessions | PSS KiB/session | RSS KiB/session | server processes | server PSS KiB |")
        print("|---|---:|---:|---:|---:|---:|")
        rs = rf = rscale = None
        if idle_s:
            row, rs = idle_row("sshd", idle_s)
            print(row)
        if idle_f:
            row, rf = idle_row("ferry", idle_f)
            print(row)
        if scale:
            row, rscale = idle_row("ferry (fresh, alone)", scale)
            print(row)
        print()
        if rs and rf and rs.get("figure") and rf.get("figure") is not None:
            print(f"Ferry ÷ sshd, PSS per idle session: {rf['figure'] / rs['figure']:.3f}×.\n")
        best = rscale or rf
        if best and best.get("figure") is not None:
            pss = best["figure"]
            rss = (best.get("details") or {}).get("rss_kib_per_session") or 0
            n = (best.get("details") or {}).get("sessions", 0)
            ok = max(pss, rss) <= IDLE_TARGET_KIB
            verdicts.append((f"idle SFTP session ≤ {IDLE_TARGET_KIB:.0f} KiB", f"{n:,} sessions: {pss:.1f} KiB PSS, {rss:.1f} KiB RSS each", "yes" if ok else "no"))

    if overview:
        print("#### Overview (medians over the rounds)\n")
        print("| scenario | client | Ferry | sshd | Ferry ÷ sshd | ÷ per server CPU-s |")
        print("|---|---|---:|---:|---:|---:|")
        for scen, drv, fmed, smed, med, cmed in overview:
            unit = SCENARIOS[scen][0]
            print(f"| {scen} | {DRIVER_NAMES.get(drv, drv)} | {fmt(fmed)} {unit} | {fmt(smed)} {unit} | "
                  f"{f'{med:.2f}×' if med else '–'} | {f'{cmed:.2f}×' if cmed else '–'} |")
        print()
    if verdicts:
        print("#### SFTP targets, by the median of per-round ratios\n")
        print("| target | measured | met? |")
        print("|---|---|---|")
        for label, measured, met in verdicts:
            print(f"| {label} | {measured} | {met} |")


if __name__ == "__main__":
    main()
