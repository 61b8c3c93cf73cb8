#!/bin/bash
# Ferry's SFTP server against OpenSSH's sshd (internal-sftp) on this machine, in interleaved
# rounds: both servers up at once on loopback, serving the same tmpfs directory as the same
# system user, the same cipher, the same client. Needs root (sshd, its chroot, a tmpfs mount, a
# system user for sshd to log in). Loopback only; every bench call is bounded by --duration and
# by `timeout`; ~10 minutes with the defaults (plus the build and the wait for a quiet machine).
#
#   bench/sftp-compare.sh [OUTDIR]            # default OUTDIR: bench/results/<UTC time>-sftp
#   python3 bench/sftp-summary.py OUTDIR      # the tables again (the script prints them at the end)
#
# What runs:
# - sshd (/usr/sbin/sshd -D -e, own config on 127.0.0.1:$SSHD_PORT): its own Ed25519 host key,
#   `Subsystem sftp internal-sftp`, `ForceCommand internal-sftp -d /`, `ChrootDirectory` the
#   served directory (so both servers show the same paths, and sshd runs as it is deployed for
#   SFTP-only users), `Ciphers $CIPHER`, key and password logins for $BENCH_USER, `UsePAM no`,
#   `MaxStartups 64` (its default, 10, drops connections beyond 10 unauthenticated at a time),
#   `LogLevel ERROR`. /run/sshd is created if missing.
# - Ferry (`ferry serve`, release build of the committed HEAD unless FERRY_BIN is given), run as
#   $BENCH_USER (setpriv) so that both servers read and write the files as the same user:
#   `--sftp-listen 127.0.0.1:$FERRY_PORT --listen 127.0.0.1:0 --tls off --max-sessions-per-ip 0
#   --log warn`, the user with the same key (and password): `--user --authorized-keys` where
#   `ferry serve` has that flag, else a configuration file with `[[users]] authorized_keys`.
# - The served directory: a tmpfs mounted at $BASE/root (root-owned, as sshd's chroot must be),
#   with the bench's working directory ferry-bench/ owned by $BENCH_USER.
# - The client: `ferry bench sftp://...` (see docs/BENCHMARKS.md): put/get/small/small-put with
#   OpenSSH's `sftp -b -` (DRIVERS=openssh; add `ferry` for Ferry's client library too), logins
#   and idle sessions with Ferry's client library.
# - First, on fresh servers, idle sessions: $SESSIONS on each (side by side), then
#   $FERRY_SESSIONS on a fresh Ferry alone (the ≤ 32 KiB target). Then $ROUNDS rounds: each
#   scenario once per server, seconds apart, the order rotating from round to round; the
#   summary reads Ferry ÷ sshd within each round, then the median of those ratios (this machine
#   drifts by ±20% from one minute to the next; see bench/interleave.sh).
#
# Knobs (environment), with their defaults:
#   ROUNDS=5  SCENARIOS=put,get,login,small,small-put  DRIVERS=openssh  IDLE=1
#   SIZE=1GiB RUNS=2 WARMUP=1 (put/get, per round)  LOGINS=500  SMALL=3000 (small, small-put)
#   SMALL_SIZE=4KiB  CONCURRENCY=8  SESSIONS=300  FERRY_SESSIONS=2000  DURATION=60
#   AUTH=auto (key; password for both servers when this Ferry takes no key)  CIPHER=aes128-gcm@openssh.com
#   SSHD_PORT=2292 FERRY_PORT=2293  BENCH_USER=sftpbench  BENCH_PASS=Sftp-bench-pass1
#   BASE=/run/ferry-sftp-bench  QUIET_LOAD=1.0 QUIET_WAIT=300  FERRY_BIN (default: built)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "sftp-compare: needs root (sshd, chroot, tmpfs mount, a system user)" >&2
  exit 1
fi
OUT=${1:-bench/results/$(date -u +%Y%m%dT%H%M%SZ)-sftp}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
ROUNDS=${ROUNDS:-5}
SCENARIOS=${SCENARIOS:-put,get,login,small,small-put}
DRIVERS=${DRIVERS:-openssh}
IDLE=${IDLE:-1}
SIZE=${SIZE:-1GiB}
RUNS=${RUNS:-2}
WARMUP=${WARMUP:-1}
LOGINS=${LOGINS:-500}
SMALL=${SMALL:-3000}
SMALL_SIZE=${SMALL_SIZE:-4KiB}
CONCURRENCY=${CONCURRENCY:-8}
SESSIONS=${SESSIONS:-300}
FERRY_SESSIONS=${FERRY_SESSIONS:-2000}
DURATION=${DURATION:-60}
AUTH=${AUTH:-auto}
CIPHER=${CIPHER:-aes128-gcm@openssh.com}
SSHD_PORT=${SSHD_PORT:-2292}
FERRY_PORT=${FERRY_PORT:-2293}
BENCH_USER=${BENCH_USER:-sftpbench}
BENCH_PASS=${BENCH_PASS:-Sftp-bench-pass1}
BASE=${BASE:-/run/ferry-sftp-bench}
QUIET_LOAD=${QUIET_LOAD:-1.0}
QUIET_WAIT=${QUIET_WAIT:-300}
# Hard bound on each bench call: its scenario's --duration cap, logins and slack.
CALL_LIMIT=$((DURATION * 2 + 120))

log() { echo "sftp-compare: $*" >&2; }

for p in /usr/sbin/sshd sftp ssh-keygen setpriv python3; do
  command -v "$p" > /dev/null || { log "$p is missing (apt-get install openssh-server openssh-client util-linux python3)"; exit 1; }
done
if [ "$AUTH" != key ]; then
  command -v sshpass > /dev/null || { log "sshpass is missing (apt-get install sshpass), or AUTH=key"; exit 1; }
fi

. bench/ferry-bin.sh

ROOT=$BASE/root
STATE=$BASE/state
SSHD_PID= FERRY_PID= MOUNTED=
cleanup() {
  set +e
  [ -n "$FERRY_PID" ] && kill "$FERRY_PID" 2> /dev/null && wait "$FERRY_PID" 2> /dev/null
  [ -n "$SSHD_PID" ] && kill "$SSHD_PID" 2> /dev/null && wait "$SSHD_PID" 2> /dev/null
  sleep 0.5
  [ -n "$MOUNTED" ] && { umount "$ROOT" 2> /dev/null || umount -l "$ROOT"; }
  rm -rf "$BASE"
}
trap cleanup EXIT

# --- the user, the directory, the keys ----------------------------------------------------
mkdir -p /run/sshd && chmod 755 /run/sshd
if ! id "$BENCH_USER" > /dev/null 2>&1; then
  useradd -M -r -s /usr/sbin/nologin -d /nonexistent "$BENCH_USER"
fi
echo "$BENCH_USER:$BENCH_PASS" | chpasswd
if mountpoint -q "$ROOT" 2> /dev/null; then
  log "$ROOT is already mounted (another run?); stop it first"
  exit 1
fi
rm -rf "$BASE"
mkdir -p "$ROOT" "$STATE"
chmod 755 "$BASE" "$ROOT"
mount -t tmpfs -o size=8g,mode=755 tmpfs "$ROOT"
MOUNTED=1
install -d -o "$BENCH_USER" -g "$(id -gn "$BENCH_USER")" "$ROOT/ferry-bench"
ssh-keygen -q -t ed25519 -N '' -C sftp-bench-host -f "$STATE/ssh_host_ed25519_key"
ssh-keygen -q -t ed25519 -N '' -C sftp-bench-client -f "$STATE/client_key"
cp "$STATE/client_key.pub" "$STATE/authorized_keys"
chmod 644 "$STATE/authorized_keys"
install -d -o "$BENCH_USER" "$STATE/ferry"

# --- sshd -----------------------------------------------------------------------------------
cat > "$STATE/sshd_config" << EOF
ListenAddress 127.0.0.1:$SSHD_PORT
HostKey $STATE/ssh_host_ed25519_key
PidFile none
UsePAM no
StrictModes no
PermitRootLogin no
AllowUsers $BENCH_USER
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
AuthorizedKeysFile $STATE/authorized_keys
Ciphers $CIPHER
MaxStartups 64
LoginGraceTime 30
LogLevel ERROR
Subsystem sftp internal-sftp
ChrootDirectory $ROOT
ForceCommand internal-sftp -d /
AllowTcpForwarding no
AllowAgentForwarding no
X11Forwarding no
PermitTTY no
EOF
/usr/sbin/sshd -t -f "$STATE/sshd_config"
/usr/sbin/sshd -D -e -f "$STATE/sshd_config" > "$OUT/sshd.log" 2>&1 &
SSHD_PID=$!

# --- Ferry ----------------------------------------------------------------------------------
ulimit -n 65536 2> /dev/null || true
start_ferry() {  # start_ferry PORT LOG: sets FERRY_PID, waits until it listens
  local port=$1 logf=$2 args
  args=(serve --tls off --listen 127.0.0.1:0 --sftp-listen "127.0.0.1:$port" --state-dir "$STATE/ferry"
    --max-sessions-per-ip 0 --log warn)
  if "$FERRY_BIN" serve --help | grep -q -- --authorized-keys; then
    args+=(--user "$BENCH_USER" --root "$ROOT" --authorized-keys "$STATE/authorized_keys")
    FERRY_USERS="--user --authorized-keys"
  else
    local hash
    hash=$(FERRY_PASSWORD=$BENCH_PASS "$FERRY_BIN" hash-password)
    cat > "$STATE/ferry.toml" << EOF
[[users]]
name = "$BENCH_USER"
password_hash = "$hash"
home = "$ROOT"
authorized_keys = ["$(cat "$STATE/client_key.pub")"]
EOF
    chmod 644 "$STATE/ferry.toml"
    args+=(-c "$STATE/ferry.toml")
    FERRY_USERS="configuration file ([[users]] authorized_keys)"
  fi
  FERRY_PASSWORD=$BENCH_PASS setpriv --reuid "$BENCH_USER" --regid "$(id -g "$BENCH_USER")" --init-groups \
    "$FERRY_BIN" "${args[@]}" > "$logf" 2>&1 &
  FERRY_PID=$!
  for _ in $(seq 100); do grep -q "listening on sftp://" "$logf" && return; sleep 0.1; done
  log "ferry did not start (see $logf)"; exit 1
}
stop_ferry() {
  kill "$FERRY_PID" 2> /dev/null || true
  wait "$FERRY_PID" 2> /dev/null || true
  FERRY_PID=
}
start_ferry "$FERRY_PORT" "$OUT/ferry-serve.log"
for _ in $(seq 50); do ss -Hltn "sport = :$SSHD_PORT" | grep -q . && break; sleep 0.1; done
declare -A PORT=([ferry]=$FERRY_PORT [sshd]=$SSHD_PORT)
declare -A PID=([ferry]=$FERRY_PID [sshd]=$SSHD_PID)

# --- key or password ------------------------------------------------------------------------
bench() {  # bench NAME SERVER [args...]: one `ferry bench` call, its JSON in $OUT/NAME.json
  local name=$1 server=$2; shift 2
  echo "$name $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/load.txt"
  FERRY_PASSWORD=$BENCH_PASS timeout "$CALL_LIMIT" "$FERRY_BIN" bench "sftp://$BENCH_USER@127.0.0.1:${PORT[$server]}/" \
    "${AUTH_ARGS[@]}" --server-pid "${PID[$server]}" --json --duration "$DURATION" --cipher "$CIPHER" "$@" \
    > "$OUT/$name.json" 2> "$OUT/$name.log" || log "$name: bench exited $? (see its .log)"
}
probe() {  # probe SERVER: can the bench log in with the key? (three tries: a loaded machine)
  AUTH_ARGS=(-i "$STATE/client_key")
  for _ in 1 2 3; do
    FERRY_PASSWORD= timeout 60 "$FERRY_BIN" bench "sftp://$BENCH_USER@127.0.0.1:${PORT[$1]}/" "${AUTH_ARGS[@]}" \
      --scenario login --count 1 --json 2> "$OUT/probe.$1.log" > "$OUT/probe.$1.json"
    grep -q '"ok": true' "$OUT/probe.$1.json" && return 0
    sleep 2
  done
  return 1
}
# When this Ferry takes no key, both servers are measured with passwords, and sshd's key
# logins are measured too in each round (login.key.sshd.N), for reference.
SSHD_KEY_LOGINS=0
if [ "$AUTH" = auto ]; then
  AUTH=key
  probe sshd || { log "sshd refuses the key (see $OUT/sshd.log)"; exit 1; }
  if ! probe ferry; then
    AUTH=password
    SSHD_KEY_LOGINS=1
    log "this Ferry takes no key login: both servers measured with PASSWORD logins (and sshd with the key too)"
  fi
fi
if [ "$AUTH" = key ]; then AUTH_ARGS=(-i "$STATE/client_key"); else AUTH_ARGS=(); fi

{
  echo "commit: $COMMIT"
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "kernel: $(uname -r)"
  echo "cpus: $(nproc) ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
  echo "ferry: $FERRY_BIN (as $BENCH_USER; users from $FERRY_USERS)"
  echo "sshd: $(/usr/sbin/sshd -V 2>&1 | head -n1) (internal-sftp, chrooted, Ciphers $CIPHER)"
  echo "client: $(ssh -V 2>&1 | head -n1)"
  echo "auth: $AUTH$([ "$SSHD_KEY_LOGINS" = 1 ] && echo " (this Ferry takes no key; sshd's key logins measured as login.key.sshd.N)")"
  echo "params: ROUNDS=$ROUNDS SCENARIOS=$SCENARIOS DRIVERS=$DRIVERS SIZE=$SIZE RUNS=$RUNS WARMUP=$WARMUP LOGINS=$LOGINS SMALL=$SMALL SMALL_SIZE=$SMALL_SIZE CONCURRENCY=$CONCURRENCY SESSIONS=$SESSIONS FERRY_SESSIONS=$FERRY_SESSIONS DURATION=$DURATION IDLE=$IDLE"
} > "$OUT/env.txt"

waited=0
while awk -v q="$QUIET_LOAD" '{exit !($1 > q)}' /proc/loadavg && [ "$waited" -lt "$QUIET_WAIT" ]; do
  [ "$waited" = 0 ] && log "waiting up to ${QUIET_WAIT}s for load < $QUIET_LOAD ($(cut -d' ' -f1 /proc/loadavg) now)"
  sleep 10; waited=$((waited + 10))
done
echo "waited ${waited}s for quiet (load < $QUIET_LOAD; $(cut -d' ' -f1-3 /proc/loadavg) at the start)" >> "$OUT/env.txt"

# --- idle sessions, on fresh servers ----------------------------------------------------------
if [ "$IDLE" = 1 ]; then
  for server in sshd ferry; do
    log "idle: $SESSIONS sessions on $server"
    bench "idle.$server" "$server" --scenario idle --sessions "$SESSIONS" --concurrency 16
    sleep 2
  done
  log "idle: $FERRY_SESSIONS sessions on a fresh Ferry"
  stop_ferry
  start_ferry "$FERRY_PORT" "$OUT/ferry-serve-idle.log"
  PID[ferry]=$FERRY_PID
  bench "idle-scale.ferry" ferry --scenario idle --sessions "$FERRY_SESSIONS" --concurrency 16
  stop_ferry
  start_ferry "$FERRY_PORT" "$OUT/ferry-serve-rounds.log"
  PID[ferry]=$FERRY_PID
fi

# --- rounds ---------------------------------------------------------------------------------
for round in $(seq "$ROUNDS"); do
  for scen in ${SCENARIOS//,/ }; do
    case $scen in
      put|get) args=(--size "$SIZE" --runs "$RUNS" --warmup "$WARMUP"); drivers=$DRIVERS ;;
      login) args=(--count "$LOGINS" --concurrency "$CONCURRENCY"); drivers=lib ;;
      small|small-put) args=(--count "$SMALL" --concurrency "$CONCURRENCY" --small-size "$SMALL_SIZE"); drivers=$DRIVERS ;;
      *) log "unknown scenario $scen"; exit 1 ;;
    esac
    for drv in $drivers; do
      order=(ferry sshd)
      k=$(( (round - 1) % 2 ))
      order=("${order[@]:k}" "${order[@]:0:k}")
      for server in "${order[@]}"; do
        log "round $round/$ROUNDS: $scen ($drv) on $server"
        d=(); [ "$drv" != lib ] && d=(--driver "$drv")
        bench "$scen.$drv.$server.$round" "$server" --scenario "$scen" "${d[@]}" "${args[@]}"
        sleep 1   # TIME_WAIT sockets and exiting sshd children settle
      done
    done
    if [ "$scen" = login ] && [ "$SSHD_KEY_LOGINS" = 1 ]; then
      log "round $round/$ROUNDS: login with the key on sshd"
      bench "login.key.sshd.$round" sshd -i "$STATE/client_key" --scenario login "${args[@]}"
      sleep 1
    fi
  done
done
echo "end $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/load.txt"
log "results in $OUT"
python3 bench/sftp-summary.py "$OUT"
