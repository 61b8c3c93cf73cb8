#!/bin/bash
# Run every fuzz target (or those named) for up to FUZZ_SECONDS each, one after another at low CPU
# priority, starting from the checked-in corpus in corpus/TARGET and growing a working corpus
# outside the repository, then print a line per target: executions, coverage (edges, features),
# corpus size, and when coverage last grew (a plateau: growth stopped well before the end).
#
#   fuzz/campaign.sh [TARGET...]           # FUZZ_SECONDS=600 WORK=/tmp/ferry-fuzz by default
#
# MERGE=1 then folds each target's working corpus back into corpus/TARGET (libFuzzer's
# -merge=1: only inputs that add coverage to what is there are copied in, named by their
# SHA-1), so that the next campaign, on any machine, starts where this one ended.
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
for t in "${targets[@]}"; do
  mkdir -p "$WORK/$t"
  log="$WORK/$t.log"
  set +e
  nice -n 19 cargo +nightly fuzz run -O "$t" "$WORK/$t" "corpus/$t" -- \
    -max_total_time="$SECONDS_EACH" -timeout="${FUZZ_TIMEOUT:-120}" -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  if [ "$rc" != 0 ]; then echo "$t: libFuzzer exited with $rc (a crash?): see $log" >&2; fi
done
if [ "${MERGE:-0}" = 1 ]; then
  triple=$(rustc +nightly -vV | sed -n 's/^host: //p')
  for t in "${targets[@]}"; do
    "target/$triple/release/$t" -merge=1 "corpus/$t" "$WORK/$t" >"$WORK/$t.merge.log" 2>&1 \
      || echo "$t: merging into corpus/$t failed: see $WORK/$t.merge.log" >&2
  done
fi
logs=(); for t in "${targets[@]}"; do logs+=("$WORK/$t.log"); done; python3 campaign_summary.py "${logs[@]}" || true
