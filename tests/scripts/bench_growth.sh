#!/usr/bin/env bash
# Throughput as the keyspace grows (`make bench-growth`): a fresh 3-node cluster (store_backend
# BACKEND, default redb; fsync on) takes pipelined SETs (`-c 50 -P 16`, 256-byte values) of
# random keys out of KEYS, in STEPS rounds of KEYS/STEPS*2 requests each; after every round it
# prints the SET/s of that round, the
# keys held (DBSIZE), the user data that makes (keys x (key + value bytes)) and each node's RSS
# and data-dir size. Then it kills -9 a follower and times its restart until it answers a
# linearizable GET, and does the same for the whole cluster. Ports 9101-9103/7101-7103 on
# 127.0.0.1; data in a temp dir, deleted at the end.
#
# Usage: tests/scripts/bench_growth.sh <redraft binary> [keys (default 1000000)] [steps (default 10)]
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$(realpath "${1:-target/release/redraft}")
KEYS=${2:-1000000}
STEPS=${3:-10}
WASM=$(realpath target/wasm32-unknown-unknown/guest/fsm_kv.wasm)
TMP=$(mktemp -d /tmp/redraft-growth.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [ -n "${KEEP_TMP:-}" ] || rm -rf "$TMP"; }
trap cleanup EXIT

# shellcheck source=tests/scripts/bench_common.sh
. tests/scripts/bench_common.sh

rss_mb() { awk '/^VmRSS/ {printf "%d", $2 / 1024}' "/proc/$1/status"; }
dir_mb() { du -sm "$TMP/node$1" | cut -f1; }
dbsize() { redis-cli -p 9101 DBSIZE | tr -d '\r'; }
# Milliseconds from now until the node on <port> answers a linearizable GET.
until_serving_ms() {
  local port=$1 start
  start=$(date +%s%N)
  for _ in $(seq 1 6000); do
    redis-cli -p "$port" GET key:000000000001 2>/dev/null | grep -qv -e '^ERR' -e CLUSTERDOWN -e NOCLUSTER -e TIMEOUT \
      -e 'Connection refused' && break
    sleep 0.01
  done
  echo $((($(date +%s%N) - start) / 1000000))
}

start_bench_cluster ""

PER_STEP=$((KEYS / STEPS * 2))
echo "Measured $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores; fsync probe: $(fsync_probe)"
echo "Random keys out of $KEYS, $PER_STEP pipelined SETs (-c 50 -P 16, 256-byte values) per round"
echo
echo "| round | keys held | user data MB | SET/s | RSS MB (nodes 1/2/3) | data dir MB (nodes 1/2/3) |"
echo "|---|---|---|---|---|---|"
for step in $(seq 1 "$STEPS"); do
  rate=$(redis-benchmark -p 9101 -t set -d 256 -r "$KEYS" -c 50 -P 16 -n "$PER_STEP" --csv 2>/dev/null |
    awk -F'","' 'NR==2 {print int($2)}')
  keys=$(dbsize)
  # key:%012d is 16 bytes.
  user=$(awk -v k="$keys" 'BEGIN {printf "%d", k * (16 + 256) / 1048576}')
  echo "| $step | $keys | $user | $rate | $(rss_mb "${PIDS[0]}")/$(rss_mb "${PIDS[1]}")/$(rss_mb "${PIDS[2]}") | $(dir_mb 1)/$(dir_mb 2)/$(dir_mb 3) |"
done

echo
kill -9 "${PIDS[2]}"
wait "${PIDS[2]}" 2>/dev/null || true
"$BIN" --config "$TMP/node3.yaml" >>"$TMP/node3.log" 2>&1 &
PIDS[2]=$!
echo "kill -9 of a follower, restart to its first linearizable GET: $(until_serving_ms 9103) ms"
for i in 0 1 2; do kill -9 "${PIDS[$i]}"; wait "${PIDS[$i]}" 2>/dev/null || true; done
for id in 1 2 3; do "$BIN" --config "$TMP/node$id.yaml" >>"$TMP/node$id.log" 2>&1 & PIDS[id - 1]=$!; done
echo "kill -9 of all three, restart to the first linearizable GET on node 1: $(until_serving_ms 9101) ms"
