#!/usr/bin/env bash
# Measures module switches on a local 3-node cluster (release build, redb, loopback ports
# 19101-19103 / 17101-17103, data in a temp dir):
#   1. MODULE RELOAD's round trip with no load, alternating fsm-kv and fsm-kv-v2;
#   2. redis-benchmark SET (-c 50, 256-byte values) without a switch, then with two switches
#      during the run: requests per second and latency percentiles (a stall shows in max).
# `make bench-switch` runs it. Prints a Markdown table for docs/BENCHMARKS.md.
#
# Usage: tests/scripts/module_switch_bench.sh [redraft binary]
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-target/release/redraft}
WASM=$PWD/target/wasm32-unknown-unknown/guest
DIR=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT

for n in 1 2 3; do
  cat >"$DIR/node$n.yaml" <<YAML
id: $n
raft_addr: 127.0.0.1:$((17100 + n))
redis_addr: 127.0.0.1:$((19100 + n))
store_backend: redb
data_dir: $DIR/data$n
fsm_module: $WASM/fsm_kv.wasm
log_level: warn
YAML
  "$BIN" --config "$DIR/node$n.yaml" >"$DIR/node$n.log" 2>&1 &
  PIDS+=($!)
done
for port in 19101 19102 19103; do
  for _ in $(seq 1 300); do redis-cli -p $port PING 2>/dev/null | grep -q PONG && break; sleep 0.1; done
done
redis-cli -p 19101 BOOTSTRAP 1 127.0.0.1:17101 >/dev/null
redis-cli -p 19101 JOIN 2 127.0.0.1:17102 127.0.0.1:19102 >/dev/null
redis-cli -p 19101 JOIN 3 127.0.0.1:17103 127.0.0.1:19103 >/dev/null

use_module() { sed -i "s|^fsm_module: .*|fsm_module: $WASM/$1|" "$DIR"/node*.yaml; }
# Switches to $1 and prints the round trip in ms.
reload() {
  use_module "$1"
  local start end reply
  start=$(date +%s%N)
  reply=$(redis-cli -p 19101 MODULE RELOAD)
  end=$(date +%s%N)
  [[ $reply == OK* ]] || { echo "MODULE RELOAD: $reply" >&2; exit 1; }
  echo $(((end - start) / 1000000))
}

idle=()
for i in 1 2 3 4 5 6; do
  if ((i % 2)); then idle+=("$(reload fsm_kv_v2.wasm)"); else idle+=("$(reload fsm_kv.wasm)"); fi
done
echo "MODULE RELOAD round trips with no load (ms): ${idle[*]}"

bench() { redis-benchmark -p 19101 -t set -n 150000 -c 50 -d 256 -r 100000 --csv | tail -1; }
quiet=$(bench)
( sleep 2; reload fsm_kv_v2.wasm >"$DIR/under1"; sleep 2; reload fsm_kv.wasm >"$DIR/under2" ) &
switcher=$!
busy=$(bench)
wait $switcher
echo "MODULE RELOAD round trips under load (ms): $(cat "$DIR/under1") $(cat "$DIR/under2")"
echo
echo '| SET run | rps | avg ms | p50 ms | p99 ms | max ms |'
echo '|---|---|---|---|---|---|'
for row in "no switch,$quiet" "two switches,$busy"; do
  IFS=, read -r label _ rps avg _ p50 _ p99 max <<<"${row//\"/}"
  echo "| $label | $rps | $avg | $p50 | $p99 | $max |"
done
echo
distinct=0
for _ in $(seq 1 100); do
  distinct=$(for p in 19101 19102 19103; do redis-cli -p $p DEBUG DIGEST; done | sort -u | wc -l)
  ((distinct == 1)) && break
  sleep 0.1
done
echo "state digests: $distinct distinct (1: the replicas agree)"
echo "module history on node 3: $(redis-cli -p 19103 MODULE HISTORY | grep -c activated) activations"
