#!/bin/bash
# Side-by-side run of `ferry bench` against Ferry and the reference servers started by
# ../shared/peers/ (vsftpd, Pure-FTPd, ProFTPD, pyftpdlib), all on loopback, plain FTP, with
# every served directory on tmpfs. Needs root (the peer scripts do, and so does mounting
# tmpfs over their home directories).
#
#   bench/compare.sh [OUTDIR]          # default OUTDIR: bench/results/<UTC time>
#   python3 bench/summarize.py OUTDIR  # the Markdown tables of docs/BENCHMARKS.md
#
# Ferry is built in release mode from the committed HEAD (exported with `git archive` into a
# scratch directory, so uncommitted edits in the work tree are never measured), unless
# FERRY_BIN names a binary. Knobs (environment):
#   SERVERS="ferry vsftpd pure-ftpd proftpd pyftpdlib"   SIZE=1GiB  RUNS=5
#   COUNT=20000  CONCURRENCY=8  SESSIONS=300  FERRY_SESSIONS=10000  LIST_ENTRIES=10000
#   DURATION=60  SCENARIOS=idle,stor,retr,login,small,list  PEERS_DIR=/work/shared/peers  IPERF_SECS=5  QUIET_LOAD=0.7  QUIET_WAIT=600
#   WARMUP=3  TLS=0  FERRY_AGAIN=1
# FERRY_AGAIN=1 measures Ferry a second time after the peers (`ferry-again`, every scenario but
# idle), with the client ceilings again just before it (`ceiling-again`): the machine drifts
# over a run, and the first slot alone made Ferry's figures hostage to it.
# TLS=1 measures FTPS instead: every peer is started with `--tls` (TLS required on control and
# data connections, self-signed certificates), Ferry with `--tls required` (its generated
# certificate), and the bench with `--tls` (explicit FTPS, data connections resuming the control
# connection's TLS session, certificates not verified: loopback only).
# WARMUP unmeasured stor/retr transfers precede the measured runs for every server: on a virtual
# machine whose host takes freed memory back (free page reporting), the first gigabytes a
# server writes after a quiet spell come in at a fraction of the usual speed. An atomic
# replace (Ferry: temporary file, then rename) touches twice the memory of an overwrite in
# place, so one warm-up is not enough for it; three are, for every server.
# CONCURRENCY=8 stays below Pure-FTPd's listen backlog (9): at 32, bursts overflow its accept
# queue and some connections never get a greeting. Ferry gets a 100-port passive range, as
# each peer script configures: with none it binds port 0 per transfer, and 20,000 transfers
# leave enough TIME_WAIT sockets in the ephemeral range to make that bind slow, then fail.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
OUT=${1:-bench/results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PEERS_DIR=${PEERS_DIR:-/work/shared/peers}
SERVERS=${SERVERS:-"ferry vsftpd pure-ftpd proftpd pyftpdlib"}
SIZE=${SIZE:-1GiB}
RUNS=${RUNS:-5}
COUNT=${COUNT:-20000}
CONCURRENCY=${CONCURRENCY:-8}
SESSIONS=${SESSIONS:-300}            # the peers are configured for at most 400 sessions
FERRY_SESSIONS=${FERRY_SESSIONS:-10000}
LIST_ENTRIES=${LIST_ENTRIES:-10000}
DURATION=${DURATION:-60}
WARMUP=${WARMUP:-3}
SCENARIOS=${SCENARIOS:-idle,stor,retr,login,small,list}
FERRY_AGAIN=${FERRY_AGAIN:-1}
IPERF_SECS=${IPERF_SECS:-5}
TLS=${TLS:-0}
if [ "$TLS" = 1 ]; then
  BENCH_TLS=(--tls); PEER_TLS=(--tls); FERRY_TLS=required
else
  BENCH_TLS=(); PEER_TLS=(); FERRY_TLS=off
fi
USER_=tester
PASS_=secret-pass

log() { echo "compare: $*" >&2; }

# --- the Ferry binary, from the committed HEAD -------------------------------------------
. bench/ferry-bin.sh

{
  echo "commit: $COMMIT"
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "kernel: $(uname -r)"
  echo "cpus: $(nproc) ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
  echo "memory: $(free -g | awk '/Mem:/{print $2}') GiB"
  echo "ferry: $FERRY_BIN"
  echo "params: SCENARIOS=$SCENARIOS SIZE=$SIZE RUNS=$RUNS WARMUP=$WARMUP COUNT=$COUNT CONCURRENCY=$CONCURRENCY SESSIONS=$SESSIONS FERRY_SESSIONS=$FERRY_SESSIONS LIST_ENTRIES=$LIST_ENTRIES DURATION=$DURATION TLS=$TLS"
} > "$OUT/env.txt"

load() { echo "$1 $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/load.txt"; }

# On a shared machine, wait (bounded) for the 1-minute load to drop before measuring.
QUIET_LOAD=${QUIET_LOAD:-0.7}
QUIET_WAIT=${QUIET_WAIT:-600}
waited=0
while awk -v q="$QUIET_LOAD" '{exit !($1 > q)}' /proc/loadavg && [ "$waited" -lt "$QUIET_WAIT" ]; do
  [ "$waited" = 0 ] && log "waiting up to ${QUIET_WAIT}s for load < $QUIET_LOAD ($(cut -d' ' -f1 /proc/loadavg) now)"
  sleep 10; waited=$((waited + 10))
done
echo "waited ${waited}s for quiet (load < $QUIET_LOAD)" >> "$OUT/env.txt"

bench() {  # bench NAME URL PIDS HOME [extra args...]
  local name=$1 url=$2 pids=$3 home=$4; shift 4
  load "$name"
  "$FERRY_BIN" bench "$url" --server-pid "$pids" --prepare-dir "$home" --json --scenario "$SCENARIOS" \
    --size "$SIZE" --runs "$RUNS" --warmup "$WARMUP" --count "$COUNT" --concurrency "${B_CONC:-$CONCURRENCY}" \
    --sessions "${B_SESSIONS:-$SESSIONS}" --list-entries "$LIST_ENTRIES" --duration "$DURATION" \
    "${BENCH_TLS[@]}" "$@" \
    > "$OUT/$name.json" 2> "$OUT/$name.log" || log "$name: bench exited $? (see $OUT/$name.log)"
}

# --- the loopback ceiling and the bench's own ceiling ------------------------------------
log "iperf3 on 127.0.0.1 for ${IPERF_SECS}s"
load iperf3
iperf3 -s -1 -p 5299 > /dev/null 2>&1 &
IPERF_PID=$!
sleep 0.5
iperf3 -c 127.0.0.1 -p 5299 -t "$IPERF_SECS" -J > "$OUT/iperf3.json" || log "iperf3 failed"
kill "$IPERF_PID" 2>/dev/null || true
wait "$IPERF_PID" 2>/dev/null || true

log "bench ceiling (no FTP)"
load ceiling
"$FERRY_BIN" bench "ftp://u:p@127.0.0.1:1/" --scenario ceiling --size "$SIZE" \
  --count "$COUNT" --concurrency "$CONCURRENCY" --json \
  > "$OUT/ceiling.json" 2> "$OUT/ceiling.log"

# --- Ferry ------------------------------------------------------------------------------
run_ferry() {  # run_ferry NAME (ferry, or ferry-again: the same, measured last)
  local name=$1 root=/dev/shm/ferry-bench-root port=2125
  rm -rf "$root"; mkdir -p "$root"
  FERRY_PASSWORD=$PASS_ "$FERRY_BIN" serve --allow-root --tls $FERRY_TLS --listen 127.0.0.1:$port --user $USER_ \
    --root "$root" --passive-ports 30400-30499 --state-dir /dev/shm/ferry-bench-state --max-sessions-per-ip 0 --log warn \
    > "$OUT/$name-serve.log" 2>&1 &
  local pid=$!
  for _ in $(seq 50); do grep -q listening "$OUT/$name-serve.log" && break; sleep 0.1; done
  log "$name: pid $pid, root $root (tmpfs)"
  bench "$name" "ftp://$USER_:$PASS_@127.0.0.1:$port/" "$pid" "$root"
  kill "$pid"; wait "$pid" 2>/dev/null || true

  # A fresh server for the 10,000-session idle run.
  case ",$SCENARIOS," in *,idle,*) ;; *) rm -rf "$root" /dev/shm/ferry-bench-state; return ;; esac
  FERRY_PASSWORD=$PASS_ "$FERRY_BIN" serve --allow-root --tls $FERRY_TLS --listen 127.0.0.1:$port --user $USER_ \
    --root "$root" --passive-ports 30400-30499 --state-dir /dev/shm/ferry-bench-state --max-sessions-per-ip 0 --log warn \
    > "$OUT/ferry-serve-idle.log" 2>&1 &
  pid=$!
  for _ in $(seq 50); do grep -q listening "$OUT/ferry-serve-idle.log" && break; sleep 0.1; done
  log "ferry: $FERRY_SESSIONS idle sessions, pid $pid"
  B_SESSIONS=$FERRY_SESSIONS B_CONC=64 bench ferry-idle "ftp://$USER_:$PASS_@127.0.0.1:$port/" \
    "$pid" "$root" --scenario idle
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$root" /dev/shm/ferry-bench-state
}

# --- a peer -----------------------------------------------------------------------------
run_peer() {  # run_peer NAME PORT
  local name=$1 port=$2 out pids home
  if [ -f "/tmp/ftp-peer-$name/pids" ]; then
    log "$name: another user of $PEERS_DIR is running it (/tmp/ftp-peer-$name/pids); skipped"
    return
  fi
  out=$(bash "$PEERS_DIR/$name.sh" start "${PEER_TLS[@]}" --port "$port")
  pids=$(sed -n 's/^PID=\(.*\) PORT=.*/\1/p' <<< "$out" | tr ' ' ',')
  home=$(sed -n 's/.* HOME=\([^ ]*\) .*/\1/p' <<< "$out")
  # Serve from tmpfs, as Ferry does: mounted over the home the script made (the servers
  # resolve it at login, after this).
  mount -t tmpfs -o "size=8g,mode=755,uid=$(id -u $USER_),gid=$(id -g $USER_)" tmpfs "$home"
  install -d -o $USER_ -g $USER_ "$home/ferry-bench"
  log "$name: pids $pids, home $home (tmpfs)"
  bench "$name" "ftp://$USER_:$PASS_@127.0.0.1:$port/" "$pids" "$home"
  bash "$PEERS_DIR/$name.sh" stop > /dev/null
  sleep 0.5
  umount "$home" || umount -l "$home"
}

for s in $SERVERS; do
  case $s in
    ferry) run_ferry ferry ;;
    vsftpd) run_peer vsftpd 2121 ;;
    pure-ftpd) run_peer pure-ftpd 2122 ;;
    proftpd) run_peer proftpd 2123 ;;
    pyftpdlib) run_peer pyftpdlib 2124 ;;
    *) log "unknown server $s" ;;
  esac
  sleep 2   # let TIME_WAIT sockets and exiting children settle
done

# Ferry again, last, with the minimal server just before it: the machine drifts over a run
# (see docs/BENCHMARKS.md, *Across runs*), and Ferry otherwise always takes the first slot.
if [ "$FERRY_AGAIN" = 1 ] && [[ " $SERVERS " == *" ferry "* ]]; then
  log "bench ceiling again (no FTP)"
  load ceiling-again
  "$FERRY_BIN" bench "ftp://u:p@127.0.0.1:1/" --scenario ceiling --size "$SIZE" \
    --count "$COUNT" --concurrency "$CONCURRENCY" --json \
    > "$OUT/ceiling-again.json" 2> "$OUT/ceiling-again.log"
  SCENARIOS=$(tr ',' '\n' <<< "$SCENARIOS" | grep -vx idle | paste -sd, -) run_ferry ferry-again
fi
load end
log "results in $OUT"
