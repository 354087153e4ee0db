#!/usr/bin/env bash
# The cluster benchmark (`make bench`): a 3-node Redraft cluster (log fsync on) per durable store
# backend (BACKENDS, default "redb memory_durable") and, in the same run, one redis-server with
# `appendonly yes` + `appendfsync always` as the yardstick, all driven by redis-benchmark (SET and
# GET, 256-byte values) at `-c 50`, `-c 50 -P 16` and `-c 1`.
# Prints one table with the ratios and writes it into docs/BENCHMARKS.md (between the
# `cluster-bench` markers). Ports 9101-9103/7101-7103 and 9199 on 127.0.0.1; data in a temp dir.
#
# Usage: tests/scripts/bench.sh <redraft binary> [requests for -c 50 (default 100000)]
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$(realpath "${1:-target/release/redraft}")
N=${2:-100000}
WASM=$(realpath target/wasm32-unknown-unknown/guest/fsm_kv.wasm)
TMP=$(mktemp -d /tmp/redraft-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

# shellcheck source=tests/scripts/bench_common.sh
. tests/scripts/bench_common.sh
start_node() { # id reads
  start_bench_node "$1" "reads: $2
${BENCH_EXTRA_YAML:-}"
}
stop_nodes() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=(); }

# One redis-benchmark run; prints requests per second.
rps() { # port test args...
  local port=$1 test=$2; shift 2
  redis-benchmark -p "$port" -t "$test" -d 256 -r 100000 --csv "$@" 2>/dev/null | awk -F'","' 'NR==2 {print int($2)}'
}

cluster_up() { # reads
  for id in 1 2 3; do start_node "$id" "$1"; done
  for id in 1 2 3; do wait_ping 910$id; done
  if redis-cli -p 9101 NODES | grep -q NOCLUSTER; then
    redis-cli -p 9101 BOOTSTRAP 1 127.0.0.1:7101 >/dev/null
    redis-cli -p 9101 JOIN 2 127.0.0.1:7102 127.0.0.1:9102 >/dev/null
    redis-cli -p 9101 JOIN 3 127.0.0.1:7103 127.0.0.1:9103 >/dev/null
  fi
  for _ in $(seq 1 100); do redis-cli -p 9101 LEADER 2>/dev/null | head -1 | grep -q '^1$' && break; sleep 0.1; done
}

PROBE=$(fsync_probe)
echo "fsync probe: $PROBE"
BACKENDS=${BACKENDS:-redb memory_durable}
redis_up() {
  redis-server --port 9199 --bind 127.0.0.1 --appendonly yes --appendfsync always --save "" --dir "$TMP" \
    --daemonize no >>"$TMP/redis.log" 2>&1 &
  PIDS+=($!)
  wait_ping 9199
}
LOADS=("c50:-c 50 -n $N" "p16:-c 50 -P 16 -n $((N * 2))" "c1:-c 1 -n $((N / 20))")
LEADER=9101

declare -A R
redis_up
for cfg in "${LOADS[@]}"; do
  name=${cfg%%:*}; args=${cfg#*:}
  for t in set get; do
    # shellcheck disable=SC2086
    R[redis,$name,$t]=$(rps 9199 $t $args)
  done
done
for BACKEND in $BACKENDS; do
  stop_nodes
  rm -rf "$TMP"/node*
  cluster_up linearizable
  for cfg in "${LOADS[@]}"; do
    name=${cfg%%:*}; args=${cfg#*:}
    for t in set get; do
      # shellcheck disable=SC2086
      R[$BACKEND,$name,$t]=$(rps $LEADER $t $args)
    done
  done
  # Stale reads, for the linearizable-read overhead: the same cluster restarted with `reads: stale`.
  stop_nodes
  cluster_up stale
  R[$BACKEND,c50,stale]=$(rps $LEADER get -c 50 -n "$N")
  R[$BACKEND,p16,stale]=$(rps $LEADER get -c 50 -P 16 -n $((N * 2)))
  echo "$BACKEND done"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
TABLE=$(
  echo "| run | store | redis-server SET/s | Redraft SET/s | ratio | redis-server GET/s | Redraft GET/s (linearizable) | ratio | Redraft stale GET/s | linearizable / stale |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for name in c50 p16 c1; do
    label=$(case $name in c50) echo '`-c 50`';; p16) echo '`-c 50 -P 16`';; c1) echo '`-c 1`';; esac)
    for b in $BACKENDS; do
      stale=${R[$b,$name,stale]:-}
      echo "| $label | $b | ${R[redis,$name,set]} | ${R[$b,$name,set]} | $(ratio "${R[$b,$name,set]}" "${R[redis,$name,set]}") | ${R[redis,$name,get]} | ${R[$b,$name,get]} | $(ratio "${R[$b,$name,get]}" "${R[redis,$name,get]}") | ${stale:--} | $( [ -n "$stale" ] && ratio "${R[$b,$name,get]}" "$stale" || echo -) |"
    done
  done
)
HEADER="Measured $(date -u +%Y-%m-%d) on $(nproc) cores, \`make bench\` ($N requests at -c 50, 256-byte values; Redraft: 3 nodes on one machine, log fsync on, one cluster per store backend; redis-server: one node, appendfsync always). Fsync probe of the data directory's disk before the run: $PROBE."
echo "$HEADER"
echo "$TABLE"

DOC=docs/BENCHMARKS.md
if grep -q '<!-- cluster-bench:start -->' "$DOC"; then
  awk -v header="$HEADER" -v table="$TABLE" '
    /<!-- cluster-bench:start -->/ { print; print ""; print header; print ""; print table; print ""; skip = 1; next }
    /<!-- cluster-bench:end -->/ { skip = 0 }
    !skip { print }' "$DOC" >"$DOC.tmp" && mv "$DOC.tmp" "$DOC"
  echo "(written to $DOC)"
fi
