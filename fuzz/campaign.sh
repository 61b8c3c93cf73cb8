#!/bin/bash
# Run every fuzz target (or those named) for up to FUZZ_SECONDS each, one after another at low CPU
# priority, starting from the checked-in seeds in corpus/TARGET and growing a working corpus
# outside the repository, then print a line per target: executions, coverage (edges, features),
# corpus size, and when coverage last grew (a plateau: growth stopped well before the end).
#
#   fuzz/campaign.sh [TARGET...]           # FUZZ_SECONDS=600 WORK=/tmp/ferry-fuzz by default
#
# Needs nightly and cargo-fuzz (`cargo install cargo-fuzz`). A crash stops the target and
# leaves the input under fuzz/artifacts/TARGET/; make it a regression test.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH=${FUZZ_SECONDS:-600}
WORK=${WORK:-/tmp/ferry-fuzz}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
cargo +nightly fuzz build -O >/dev/null
printf '%-16s %10s %8s %8s %7s %6s %s\n' target execs cov ft corpus time "last growth"
for t in "${targets[@]}"; do
  mkdir -p "$WORK/$t"
  log="$WORK/$t.log"
  set +e
  nice -n 19 cargo +nightly fuzz run -O "$t" "$WORK/$t" "corpus/$t" -- \
    -max_total_time="$SECONDS_EACH" -timeout=30 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  # libFuzzer's status lines: "#N <event> cov: C ft: F corp: K/..." with the elapsed
  # seconds only in the final stats, so growth time is read from the pulse/NEW line index.
  python3 - "$log" "$t" "$rc" "$SECONDS_EACH" <<'PY'
import re, sys
log, target, rc, total = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
execs = cov = ft = corp = 0
last_new = 0
secs = total
for line in open(log, errors="replace"):
    m = re.match(r"#(\d+)\s+(\w+)\s+cov: (\d+) ft: (\d+) corp: (\d+)", line)
    if m:
        n, ev, c, f, k = int(m[1]), m[2], int(m[3]), int(m[4]), int(m[5])
        if ev in ("NEW", "REDUCE") and (c > cov or f > ft):
            last_new = n
        execs, cov, ft, corp = n, max(cov, c), max(ft, f), k
    m = re.match(r"stat::number_of_executed_units: (\d+)", line)
    if m:
        execs = int(m[1])
    m = re.search(r"Done (\d+) runs in (\d+) second", line)
    if m:
        execs, secs = int(m[1]), int(m[2])
share = f"at {100 * last_new // max(execs, 1)}% of execs"
status = "" if rc == 0 else f"  FAILED (rc {rc}): see {log}"
print(f"{target:16} {execs:10} {cov:8} {ft:8} {corp:7} {secs:5}s {share}{status}")
PY
done
