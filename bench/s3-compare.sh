#!/usr/bin/env bash
# RETR/STOR of SIZE_MIB (default 1024) through `ferry serve --storage s3://...` against a
# direct S3 client (boto3, its default multipart settings) on the same store: a moto server
# started here on 127.0.0.1 (or S3_ENDPOINT with a bucket S3_BUCKET that exists, credentials
# in AWS_*). ROUNDS (default 3) rounds, alternating which client goes first; prints seconds
# and MiB/s for each, the ratio direct/ferry (above 1: Ferry is faster) and its median, and
# Ferry's resident memory (idle, peak, after). Needs python3 with boto3 and moto[server], curl.
#
#   bench/s3-compare.sh                 # builds ferry (release) from HEAD, see ferry-bin.sh
#   FERRY_BIN=target/release/ferry SIZE_MIB=256 bench/s3-compare.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { printf '%s\n' "$*" >&2; }
. bench/ferry-bin.sh

SIZE_MIB=${SIZE_MIB:-1024}
ROUNDS=${ROUNDS:-3}
WORK=$(mktemp -d /tmp/ferry-s3-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-bench} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-bench}
export AWS_REGION=${AWS_REGION:-us-east-1}
if [ -z "${S3_ENDPOINT:-}" ]; then
  cat > "$WORK/motosrv.py" <<'EOF'
import sys
from moto.server import ThreadedMotoServer
s = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
s.start()
print(s.get_host_and_port()[1], flush=True)
sys.stdin.read()
EOF
  mkfifo "$WORK/moto.in"
  python3 "$WORK/motosrv.py" < "$WORK/moto.in" > "$WORK/moto.port" 2>/dev/null &
  PIDS+=($!)
  exec 9> "$WORK/moto.in"   # moto exits when this closes
  for _ in $(seq 1 100); do [ -s "$WORK/moto.port" ] && break; sleep 0.2; done
  S3_ENDPOINT="http://127.0.0.1:$(cat "$WORK/moto.port")"
  S3_BUCKET=ferry-bench
fi
S3_BUCKET=${S3_BUCKET:?set S3_BUCKET with S3_ENDPOINT}

cat > "$WORK/direct.py" <<'EOF'
import sys, time, boto3
endpoint, bucket, op, path = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint)
if op == "mb":
    s3.create_bucket(Bucket=bucket)
    sys.exit(0)
t = time.time()
if op == "put":
    s3.upload_file(path, bucket, "direct/file.bin")
else:
    s3.download_file(bucket, "direct/file.bin", path)
print("%.3f" % (time.time() - t))
EOF
[ -n "${KEEP_BUCKET:-}" ] || python3 "$WORK/direct.py" "$S3_ENDPOINT" "$S3_BUCKET" mb - 2>/dev/null || true

log "making $SIZE_MIB MiB of random data"
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > "$WORK/file.bin"

FERRY_PASSWORD=bench "$FERRY_BIN" serve --allow-root --listen 127.0.0.1:0 --sftp-listen 127.0.0.1:0 --tls off \
  --user bench --storage "s3://$S3_BUCKET/ferry" --s3-endpoint "$S3_ENDPOINT" \
  --state-dir "$WORK/state" --log warn > "$WORK/serve.out" 2> "$WORK/serve.err" &
FERRY_PID=$!
PIDS+=($FERRY_PID)
for _ in $(seq 1 100); do grep -q 'ftp://' "$WORK/serve.out" && break; sleep 0.2; done
FTP=$(grep -o 'ftp://[0-9.:]*' "$WORK/serve.out" | head -n 1)

seconds() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
rate() { echo "scale=1; $SIZE_MIB / $1" | bc; }
rss() { awk '/^VmRSS/ {print $2}' "/proc/$FERRY_PID/status"; }

# Rounds: each puts and gets once directly and once through Ferry, the order flipped from
# round to round; the ratio is direct time / Ferry time within a round (above 1: Ferry is
# faster), and the summary is the median of the rounds' ratios.
printf 'ferry %s, %s MiB, store %s, %s rounds\n' "$COMMIT" "$SIZE_MIB" "$S3_ENDPOINT" "$ROUNDS"
printf '%-6s %-5s %10s %10s %10s %10s %8s\n' round op direct_s direct_MiBs ferry_s ferry_MiBs ratio
rss_idle=$(rss)
ratios_put=(); ratios_get=()
for round in $(seq 1 "$ROUNDS"); do
  for op in put get; do
    direct() {
      if [ "$op" = put ]; then python3 "$WORK/direct.py" "$S3_ENDPOINT" "$S3_BUCKET" put "$WORK/file.bin"
      else python3 "$WORK/direct.py" "$S3_ENDPOINT" "$S3_BUCKET" get "$WORK/direct.bin"; fi
    }
    through_ferry() {
      if [ "$op" = put ]; then seconds curl -sS --user bench:bench -T "$WORK/file.bin" "$FTP/file.bin"
      else seconds curl -sS --user bench:bench -o "$WORK/back.bin" "$FTP/file.bin"; fi
    }
    if [ $((round % 2)) = 1 ]; then d=$(direct); f=$(through_ferry); else f=$(through_ferry); d=$(direct); fi
    r=$(echo "scale=3; $d / $f" | bc)
    if [ "$op" = put ]; then ratios_put+=("$r"); else ratios_get+=("$r"); fi
    printf '%-6s %-5s %10.2f %10s %10.2f %10s %8s\n' "$round" "$op" "$d" "$(rate "$d")" "$f" "$(rate "$f")" "$r"
  done
  cmp -s "$WORK/file.bin" "$WORK/back.bin" || { log "ferry's download differs"; exit 1; }
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
echo "median ratio direct/ferry: put $(median "${ratios_put[@]}"), get $(median "${ratios_get[@]}")"
echo "ferry resident memory: idle ${rss_idle} KiB, peak $(awk '/^VmHWM/ {print $2}' "/proc/$FERRY_PID/status") KiB, now $(rss) KiB"
