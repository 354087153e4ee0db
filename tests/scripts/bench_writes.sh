#!/usr/bin/env bash
# Durable writes against `limits.writes_in_flight_max`, in one run (`make bench-writes`): for each
# value given, a fresh 3-node cluster (redb, fsync on) takes redis-benchmark SETs (256-byte values,
# random keys) at `-c 50`, `-c 1` and `-c 50 -P 16`; one redis-server with `appendfsync always`
# runs the same loads first as the yardstick. Prints SET/s, commands per log entry (requests over
# the growth of the leader's raft_last_log_index) and, at -c 50, the CPU time the three nodes
# spent per 1000 SETs (user + system, from /proc/<pid>/stat). Ports 9101-9103/7101-7103 and 9199 on
# 127.0.0.1; data in a temp dir, deleted at the end.
#
# Usage: tests/scripts/bench_writes.sh <redraft binary> [in-flight values (default: 1 2 4)]
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$(realpath "${1:-target/release/redraft}")
shift || true
VALUES=("$@")
[ ${#VALUES[@]} -gt 0 ] || VALUES=(1 2 4)
N=${N:-60000}
WASM=$(realpath target/wasm32-unknown-unknown/guest/fsm_kv.wasm)
TMP=$(mktemp -d /tmp/redraft-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

# shellcheck source=tests/scripts/bench_common.sh
. tests/scripts/bench_common.sh
rps() { # port args...
  local port=$1; shift
  redis-benchmark -p "$port" -t set -d 256 -r 100000 --csv "$@" 2>/dev/null | awk -F'","' 'NR==2 {print int($2)}'
}
cpu_ticks() { local sum=0 f; for p in "${PIDS[@]}"; do read -r -a f <"/proc/$p/stat"; sum=$((sum + f[13] + f[14])); done; echo "$sum"; }
last_index() { redis-cli -p 9101 INFO raft | tr -d '\r' | awk -F: '$1 == "raft_last_log_index" {print $2}'; }

cluster() { # in-flight
  rm -rf "$TMP"/node*
  start_bench_cluster "limits: {writes_in_flight_max: $1}"
}
stop_nodes() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=(); }

LOADS=("c50:-c 50 -n $N" "c1:-c 1 -n $((N / 20))" "p16:-c 50 -P 16 -n $((N * 2))")
redis-server --port 9199 --bind 127.0.0.1 --appendonly yes --appendfsync always --save "" --dir "$TMP" \
  --daemonize no >"$TMP/redis.log" 2>&1 &
REDIS=$!
wait_ping 9199
line="| redis-server |"
for load in "${LOADS[@]}"; do
  # shellcheck disable=SC2086
  line+=" $(rps 9199 ${load#*:}) | - |"
done
kill "$REDIS"; wait "$REDIS" 2>/dev/null || true

echo "Measured $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores: SET/s and commands per entry, 256-byte values; fsync probe: $(fsync_probe)"
echo
echo "| writes_in_flight_max | -c 50 SET/s | per entry | node CPU ms per 1k SETs | -c 1 SET/s | per entry | -c 50 -P 16 SET/s | per entry |"
echo "|---|---|---|---|---|---|---|---|---|"
echo "${line/| - | /| - | - | }"
for v in "${VALUES[@]}"; do
  cluster "$v"
  line="| $v |"
  for load in "${LOADS[@]}"; do
    args=${load#*:}
    requests=${args##*-n }
    before=$(last_index)
    ticks=$(cpu_ticks)
    # shellcheck disable=SC2086
    r=$(rps 9101 $args)
    ticks=$(($(cpu_ticks) - ticks))
    after=$(last_index)
    per=$(awk -v n="$requests" -v d="$((after - before))" 'BEGIN { if (d > 0) printf "%.1f", n / d; else print "-" }')
    line+=" $r | $per |"
    if [ "${load%%:*}" = c50 ]; then
      line+=" $(awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" -v n="$requests" 'BEGIN { printf "%.0f", t * 1000 / hz / n * 1000 }') |"
    fi
  done
  echo "$line"
  stop_nodes
done
