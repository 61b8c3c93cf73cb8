#!/bin/bash
# Ferry and the peers measured in turn, round after round, all servers up at once: the paired
# counterpart of compare.sh. compare.sh gives each server one slot of minutes; this machine
# drifts by ±20% from one minute to the next (docs/BENCHMARKS.md, *Across runs*), so a ratio
# of two slots is partly the drift's. Here every round runs each server once per scenario,
# seconds apart, in an order that rotates from round to round (with the minimal server of
# `ferry bench --scenario ceiling` in the login and small rounds), and interleave.py reads the
# ratio within each round, then their median. Needs root (the peer scripts, the tmpfs mounts).
#
#   bench/interleave.sh [OUTDIR]          # default OUTDIR: bench/results/<UTC time>-interleaved
#   python3 bench/interleave.py OUTDIR    # per-round ratios, medians, the verdicts on the targets
#
# Knobs (environment), with their defaults:
#   ROUNDS=9  SCENARIOS=stor,retr,login,small (stor first: its upload, owned by the FTP user,
#   is the file retr reads; a file retr had to write itself would be root's, and some peers
#   could not overwrite it)  CEILING=1 (the minimal server, each round)
#   PEERS_retr="proftpd pure-ftpd vsftpd"  PEERS_stor="pure-ftpd proftpd vsftpd"
#   PEERS_small="pure-ftpd vsftpd proftpd"  PEERS_login="pyftpdlib"
#   SIZE=1GiB RUNS=3 WARMUP=2 (stor/retr per round; three runs, so that the median drops one
#   run that meets memory the VM host took back, see docs/BENCHMARKS.md)  COUNT=20000 (small) LOGINS=10000 (login)
#   CONCURRENCY=8  DURATION=30  FERRY_BIN (default: built from the committed HEAD, as compare.sh)
#   TLS=0 (1: FTPS, as compare.sh's TLS=1: peers with --tls, Ferry --tls required, the bench
#   --tls; no minimal server, which speaks plain FTP only)
# Each scenario's peers are the ones that came first in it in compare.sh's runs (every peer not
# listed was several times slower there: vsftpd and ProFTPD do 35-55 logins/s, so a round of
# theirs would take a minute and say nothing new; Pure-FTPd's 550/s, 20 s).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/results/$(date -u +%Y%m%dT%H%M%SZ)-interleaved}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PEERS_DIR=${PEERS_DIR:-/work/shared/peers}
ROUNDS=${ROUNDS:-9}
SCENARIOS=${SCENARIOS:-stor,retr,login,small}
CEILING=${CEILING:-1}
PEERS_retr=${PEERS_retr:-"proftpd pure-ftpd vsftpd"}
PEERS_stor=${PEERS_stor:-"pure-ftpd proftpd vsftpd"}
PEERS_small=${PEERS_small:-"pure-ftpd vsftpd proftpd"}
PEERS_login=${PEERS_login:-"pyftpdlib"}
SIZE=${SIZE:-1GiB}
RUNS=${RUNS:-3}
WARMUP=${WARMUP:-2}
COUNT=${COUNT:-20000}
LOGINS=${LOGINS:-10000}
CONCURRENCY=${CONCURRENCY:-8}
DURATION=${DURATION:-30}
TLS=${TLS:-0}
if [ "$TLS" = 1 ]; then
  BENCH_TLS=(--tls); PEER_TLS=(--tls); FERRY_TLS=required; CEILING=0
else
  BENCH_TLS=(); PEER_TLS=(); FERRY_TLS=off
fi
USER_=tester
PASS_=secret-pass
declare -A PORT=([ferry]=2125 [vsftpd]=2121 [pure-ftpd]=2122 [proftpd]=2123 [pyftpdlib]=2124)

log() { echo "interleave: $*" >&2; }

. bench/ferry-bin.sh

# Every server any scenario needs, each started once.
NEEDED=ferry
for s in ${SCENARIOS//,/ }; do
  v=PEERS_$s
  NEEDED="$NEEDED ${!v:-}"
done
NEEDED=$(tr ' ' '\n' <<< "$NEEDED" | awk 'NF && !seen[$0]++' | paste -sd' ')

{
  echo "commit: $COMMIT"
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "kernel: $(uname -r)"
  echo "cpus: $(nproc) ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
  echo "ferry: $FERRY_BIN"
  echo "params: ROUNDS=$ROUNDS SCENARIOS=$SCENARIOS SIZE=$SIZE RUNS=$RUNS WARMUP=$WARMUP COUNT=$COUNT LOGINS=$LOGINS CONCURRENCY=$CONCURRENCY DURATION=$DURATION CEILING=$CEILING TLS=$TLS"
  echo "servers: $NEEDED"
  for s in ${SCENARIOS//,/ }; do v=PEERS_$s; echo "peers $s: ${!v}"; done
} > "$OUT/env.txt"

declare -A PIDS HOMES
STARTED=()
MOUNTS=()
FERRY_PID=
cleanup() {
  set +e
  [ -n "$FERRY_PID" ] && kill "$FERRY_PID" 2>/dev/null && wait "$FERRY_PID" 2>/dev/null
  for name in "${STARTED[@]}"; do bash "$PEERS_DIR/$name.sh" stop > /dev/null 2>&1; done
  sleep 0.5
  for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null || umount -l "$m"; done
  rm -rf /dev/shm/ferry-bench-root /dev/shm/ferry-bench-state
}
trap cleanup EXIT

for name in $NEEDED; do
  if [ "$name" = ferry ]; then
    root=/dev/shm/ferry-bench-root
    rm -rf "$root" /dev/shm/ferry-bench-state; mkdir -p "$root"
    FERRY_PASSWORD=$PASS_ "$FERRY_BIN" serve --allow-root --tls $FERRY_TLS --listen 127.0.0.1:${PORT[ferry]} --user $USER_ \
      --root "$root" --passive-ports 30400-30499 --state-dir /dev/shm/ferry-bench-state --max-sessions-per-ip 0 --log warn \
      > "$OUT/ferry-serve.log" 2>&1 &
    FERRY_PID=$!
    for _ in $(seq 50); do grep -q listening "$OUT/ferry-serve.log" && break; sleep 0.1; done
    PIDS[ferry]=$FERRY_PID; HOMES[ferry]=$root
  else
    if [ -f "/tmp/ftp-peer-$name/pids" ]; then
      log "$name: already running (/tmp/ftp-peer-$name/pids); stop it first"; exit 1
    fi
    out=$(bash "$PEERS_DIR/$name.sh" start "${PEER_TLS[@]}" --port "${PORT[$name]}")
    STARTED+=("$name")
    PIDS[$name]=$(sed -n 's/^PID=\(.*\) PORT=.*/\1/p' <<< "$out" | tr ' ' ',')
    home=$(sed -n 's/.* HOME=\([^ ]*\) .*/\1/p' <<< "$out")
    mount -t tmpfs -o "size=8g,mode=755,uid=$(id -u $USER_),gid=$(id -g $USER_)" tmpfs "$home"
    MOUNTS+=("$home")
    install -d -o $USER_ -g $USER_ "$home/ferry-bench"
    HOMES[$name]=$home
  fi
  log "$name: pids ${PIDS[$name]}, home ${HOMES[$name]} (tmpfs)"
done

bench() {  # bench SCENARIO SERVER ROUND
  local scen=$1 name=$2 round=$3 args
  case $scen in
    retr|stor) args=(--size "$SIZE" --runs "$RUNS" --warmup "$WARMUP") ;;
    login) args=(--count "$LOGINS" --concurrency "$CONCURRENCY") ;;
    small) args=(--count "$COUNT" --concurrency "$CONCURRENCY") ;;
  esac
  echo "$scen $name $round $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/load.txt"
  "$FERRY_BIN" bench "ftp://$USER_:$PASS_@127.0.0.1:${PORT[$name]}/" --server-pid "${PIDS[$name]}" \
    --prepare-dir "${HOMES[$name]}" --json --scenario "$scen" --duration "$DURATION" "${args[@]}" "${BENCH_TLS[@]}" \
    > "$OUT/$scen-$name-$round.json" 2> "$OUT/$scen-$name-$round.log" \
    || log "$scen $name round $round: bench exited $? (see its .log)"
}

for round in $(seq "$ROUNDS"); do
  for scen in ${SCENARIOS//,/ }; do
    v=PEERS_$scen
    read -r -a order <<< "ferry ${!v}"
    if [[ "$scen" == small || "$scen" == login ]] && [ "$CEILING" = 1 ]; then
      order+=(minimal)
    fi
    # Rotate the order by the round: no server always goes first (after a quiet spell) or
    # right after the heaviest one.
    n=${#order[@]}; k=$(( (round - 1) % n ))
    order=("${order[@]:k}" "${order[@]:0:k}")
    for name in "${order[@]}"; do
      log "round $round/$ROUNDS: $scen $name"
      if [ "$name" = minimal ]; then
        n=$COUNT; [ "$scen" = login ] && n=$LOGINS
        "$FERRY_BIN" bench "ftp://u:p@127.0.0.1:1/" --scenario ceiling --size 64MiB \
          --count "$n" --concurrency "$CONCURRENCY" --json \
          > "$OUT/$scen-minimal-$round.json" 2> "$OUT/$scen-minimal-$round.log"
      else
        bench "$scen" "$name" "$round"
      fi
      sleep 1   # TIME_WAIT sockets and exiting children settle
    done
  done
done
log "results in $OUT"
