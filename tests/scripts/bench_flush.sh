#!/usr/bin/env bash
# FLUSHALL of a large keyspace on a 3-node cluster, for each durable backend: loads about KEYS
# keys (pipelined redis-benchmark SETs, 64-byte values, random keys out of 10^9), then times
# FLUSHALL's reply on the leader, the moment every node's DBSIZE reads 0, and one SET right after.
# Ports 9101-9103/7101-7103 on 127.0.0.1; data in a temp dir, deleted at the end.
#
# Usage: tests/scripts/bench_flush.sh BIN [KEYS]   (BACKENDS="redb memory_durable" by default)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$(realpath "$1")
KEYS=${2:-1000000}
WASM=$(realpath target/wasm32-unknown-unknown/guest/fsm_kv.wasm)
TMP=$(mktemp -d /tmp/redraft-flush.XXXXXX)
PIDS=()
stop_nodes() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=(); }
cleanup() { stop_nodes; rm -rf "$TMP"; }
trap cleanup EXIT
# shellcheck source=tests/scripts/bench_common.sh
. tests/scripts/bench_common.sh
now_ms() { date +%s%3N; }
echo "fsync probe: $(fsync_probe)"
printf '%-15s %10s %12s %16s %12s\n' backend keys "FLUSHALL ms" "all empty ms" "next SET ms"
for BACKEND in ${BACKENDS:-redb memory_durable}; do
  stop_nodes
  rm -rf "$TMP"/node*
  start_bench_cluster ""
  redis-benchmark -p 9101 -t set -n "$KEYS" -r 1000000000 -d 64 -c 50 -P 32 -q >/dev/null
  for port in 9102 9103; do
    until [ "$(redis-cli -p $port DBSIZE)" = "$(redis-cli -p 9101 DBSIZE)" ]; do sleep 0.2; done
  done
  held=$(redis-cli -p 9101 DBSIZE)
  start=$(now_ms)
  reply=$(redis-cli -p 9101 FLUSHALL)
  replied=$(now_ms)
  [ "$reply" = OK ] || { echo "FLUSHALL answered $reply" >&2; exit 1; }
  for port in 9101 9102 9103; do
    until [ "$(redis-cli -p $port DBSIZE)" = 0 ]; do sleep 0.01; done
  done
  empty=$(now_ms)
  redis-cli -p 9101 SET after-flush 1 >/dev/null
  set_done=$(now_ms)
  printf '%-15s %10s %12s %16s %12s\n' "$BACKEND" "$held" $((replied - start)) $((empty - start)) $((set_done - empty))
done
