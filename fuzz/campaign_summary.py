#!/usr/bin/env python3
"""Summarize libFuzzer logs written by fuzz/campaign.sh: a line per log with executions,
coverage (edges `cov`, features `ft`), corpus size, run time, the edges the run began with (its
corpus loaded) and how many it added, and when edges and features last grew, as a share of the
executions (edges that stopped growing early, or a run from the last one's corpus that adds
next to none, mean a plateau), and the edges its last ten minutes added (placed by executions at
the run's average rate: a long run's tail is a run from the corpus it had grown by then)."""
import re
import sys


def summary(path):
    execs = cov = ft = corp = 0
    last_cov = last_ft = 0
    start_cov = None
    secs = None
    crashed = False
    growth = []  # (execution, edges) each time edges grew
    for line in open(path, errors="replace"):
        m = re.match(r"#(\d+)\s+(\w+)\s+cov: (\d+) ft: (\d+) corp: (\d+)", line)
        if m:
            n, c, f, k = int(m[1]), int(m[3]), int(m[4]), int(m[5])
            if m[2] == "INITED" and start_cov is None:
                start_cov = c
            if c > cov:
                last_cov = n
                growth.append((n, c))
            if f > ft:
                last_ft = n
            execs, cov, ft, corp = n, max(cov, c), max(ft, f), k
        m = re.search(r"Done (\d+) runs in (\d+) second", line)
        if m:
            execs, secs = int(m[1]), int(m[2])
        if "ERROR: libFuzzer" in line or "panicked at" in line:
            crashed = True
    tail = None
    if secs and secs > TAIL:
        since = execs * (secs - TAIL) / secs
        before = max([c for n, c in growth if n <= since] + [start_cov or 0])
        tail = cov - before
    return execs, cov, ft, corp, secs, start_cov, last_cov, last_ft, crashed, tail


TAIL = 600  # seconds: the end of a run whose growth is shown on its own


def pct(n, total):
    return f"{100 * n // max(total, 1)}%"


print(f"{'target':16} {'execs':>11} {'cov':>6} {'added':>6} {'ft':>7} {'corpus':>6} {'time':>6} {'last 10 min':>11}  edges last grew  features last grew")
for path in sys.argv[1:]:
    name = path.rsplit("/", 1)[-1].removesuffix(".log")
    execs, cov, ft, corp, secs, start, lc, lf, crashed, tail = summary(path)
    t = f"{secs}s" if secs is not None else "?"
    added = "?" if start is None else str(cov - start)
    tail = "–" if tail is None else str(tail)
    note = "  CRASH (see log)" if crashed else ""
    print(f"{name:16} {execs:11} {cov:6} {added:>6} {ft:7} {corp:6} {t:>6} {tail:>11}  {pct(lc, execs):>15}  {pct(lf, execs):>18}{note}")
