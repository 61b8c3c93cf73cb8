#!/usr/bin/env python3
"""Read an interleave.sh run: per scenario, each round's figures, Ferry's ratio to the best peer
of the same round, and the median of those ratios, which is what the verdicts on the targets use.

    python3 bench/interleave.py bench/results/RUN

A ratio within a round compares servers measured seconds apart; the median over rounds is then
robust to the minute-to-minute drift that a single slot per server (compare.sh) is not.
"""
import json
import os
import re
import statistics
import sys

# scenario -> (figure label, per-CPU key in details, target on the figure, target per CPU)
SCENARIOS = {
    "stor": ("MB/s", "mb_per_server_cpu_s", 1.3, None),
    "retr": ("MB/s", "mb_per_server_cpu_s", 1.0, 1.5),
    "login": ("logins/s", "logins_per_server_cpu_s", 2.0, None),
    "small": ("transfers/s", "transfers_per_server_cpu_s", 1.5, 2.0),
}


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


def per_cpu(r, key):
    return (r.get("details") or {}).get(key) if r else None


def fmt(v, digits=0):
    if v is None:
        return "–"
    if digits:
        return f"{v:,.{digits}f}"
    return f"{v:,.0f}"


def spread(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None, None
    return statistics.median(xs), min(xs), max(xs)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    env = open(os.path.join(d, "env.txt")).read() if os.path.exists(os.path.join(d, "env.txt")) else ""
    print("```")
    print(env.strip())
    print("```\n")
    files = os.listdir(d)
    pat = re.compile(r"^(stor|retr|login|small)-(.+)-(\d+)\.json$")
    runs = {}  # scen -> round -> server -> report
    for name in files:
        m = pat.match(name)
        if m:
            runs.setdefault(m[1], {}).setdefault(int(m[3]), {})[m[2]] = load(os.path.join(d, name))
    verdicts = []
    for scen, (unit, cpu_key, need, need_cpu) in SCENARIOS.items():
        if scen not in runs:
            continue
        rounds = sorted(runs[scen])
        servers = ["ferry"] + sorted({s for r in rounds for s in runs[scen][r]} - {"ferry", "minimal"})
        print(f"### {scen}: {unit} (server CPU: {cpu_key.replace('_', ' ')})\n")
        # The minimal server of the round (`ferry bench --scenario ceiling`), where it ran.
        minimals = {rnd: result(load(os.path.join(d, f"{scen}-minimal-{rnd}.json")), f"minimal-{scen}")
                    for rnd in rounds}
        with_min = any(minimals.values())
        head = ["round"] + servers + (["minimal server"] if with_min else [])
        head += ["Ferry ÷ best peer", "per server CPU-s"]
        if with_min:
            head.append("Ferry ÷ minimal")
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        ratios, cpu_ratios, min_ratios, errors = [], [], [], []
        for rnd in rounds:
            row = runs[scen][rnd]
            res = {s: result(row.get(s), scen) for s in servers}
            cells = [str(rnd)]
            for s in servers:
                r = res[s]
                if r is None:
                    cells.append("failed")
                    continue
                errs = (r.get("details") or {}).get("errors") or 0
                if errs:
                    errors.append(f"{s} round {rnd}: {errs:.0f} errors")
                cells.append(f"{fmt(r['figure'])} ({fmt(per_cpu(r, cpu_key))}/CPU-s)")
            fr = res["ferry"]
            peers = [res[s] for s in servers if s != "ferry" and res[s] is not None]
            ratio = cpu_ratio = min_ratio = None
            if fr and peers:
                ratio = fr["figure"] / max(p["figure"] for p in peers)
                cpus = [per_cpu(p, cpu_key) for p in peers if per_cpu(p, cpu_key)]
                if per_cpu(fr, cpu_key) and cpus:
                    cpu_ratio = per_cpu(fr, cpu_key) / max(cpus)
            if with_min:
                m = minimals[rnd]
                cells.append(fmt(m["figure"]) if m else "–")
                if m and fr:
                    min_ratio = fr["figure"] / m["figure"]
            cells += [f"{ratio:.2f}×" if ratio else "–", f"{cpu_ratio:.2f}×" if cpu_ratio else "–"]
            if with_min:
                cells.append(f"{min_ratio:.0%}" if min_ratio else "–")
            ratios.append(ratio)
            cpu_ratios.append(cpu_ratio)
            min_ratios.append(min_ratio)
            print("| " + " | ".join(cells) + " |")
        med, lo, hi = spread(ratios)
        cmed, clo, chi = spread(cpu_ratios)
        print()
        if med is not None:
            print(f"Ferry ÷ best peer of the round: median {med:.2f}× (rounds {lo:.2f}-{hi:.2f}×); "
                  f"per server CPU-s: median {cmed:.2f}× ({clo:.2f}-{chi:.2f}×).")
        if with_min:
            mmed, mlo, mhi = spread(min_ratios)
            if mmed is not None:
                print(f"Ferry ÷ minimal server of the round: median {mmed:.0%} ({mlo:.0%}-{mhi:.0%}).")
        if errors:
            print("Errors: " + "; ".join(errors) + ".")
        print()
        n = len([r for r in ratios if r is not None])
        if med is not None:
            met = med >= need
            alt = ""
            if with_min and not met:
                mmed, _, _ = spread(min_ratios)
                if mmed is not None and mmed >= 0.9:
                    met, alt = True, f" (by the client-limit rule: {mmed:.0%} of the minimal server)"
            k = sum(1 for r in ratios if r is not None and r >= need)
            verdicts.append((f"{scen} {unit} ≥ {need}× best peer", f"median {med:.2f}×, {k} of {n} rounds", met, alt))
        mmed, _, _ = spread(min_ratios)
        if mmed is not None:
            k = sum(1 for r in min_ratios if r is not None and r >= 0.9)
            verdicts.append((f"{scen} {unit} ≥ 90% of the client's ceiling (the minimal server of the round)",
                             f"median {mmed:.0%}, {k} of {n} rounds", mmed >= 0.9, ""))
        if need_cpu and cmed is not None:
            k = sum(1 for r in cpu_ratios if r is not None and r >= need_cpu)
            verdicts.append((f"{scen} per server CPU-s ≥ {need_cpu}× best peer", f"median {cmed:.2f}×, {k} of {n} rounds", cmed >= need_cpu, ""))
    print("### Targets, by the median of per-round ratios\n")
    print("| target | measured | met? |")
    print("|---|---|---|")
    for label, measured, met, alt in verdicts:
        print(f"| {label} | {measured} | {'yes' + alt if met else 'no'} |")


if __name__ == "__main__":
    main()
