# Sourced by compare.sh and interleave.sh (after `log` is defined): sets COMMIT to the
# committed HEAD and FERRY_BIN to a release build of it, exported with `git archive` into a
# scratch directory so that uncommitted edits in the work tree are never measured, unless
# FERRY_BIN already names a binary.
COMMIT=$(git rev-parse HEAD)
if [ -z "${FERRY_BIN:-}" ]; then
  SRC=/tmp/ferry-bench-src
  TARGET=/tmp/ferry-bench-target
  log "building ferry $COMMIT (release) in $SRC"
  rm -rf "$SRC"; mkdir -p "$SRC"
  git archive "$COMMIT" | tar -x -C "$SRC"
  cargo build --release -p ferry --manifest-path "$SRC/Cargo.toml" --target-dir "$TARGET" >&2
  FERRY_BIN=$TARGET/release/ferry
fi
FERRY_BIN=$(readlink -f "$FERRY_BIN")
# Every session of the bench comes from 127.0.0.1 (hence --max-sessions-per-ip 0 where Ferry
# is started), and Ferry keeps its sessions within the open-file limit, four descriptors each:
# the 10,000-session idle run needs more than the usual 20,000 (root may raise the hard limit).
ulimit -n 65536 2>/dev/null || true
