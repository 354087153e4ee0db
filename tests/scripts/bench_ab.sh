#!/usr/bin/env bash
# Two builds side by side, interleaved: for each of ROUNDS rounds and each (binary, module) pair, a
# fresh 3-node cluster (redb, fsync on) takes redis-benchmark SETs (256-byte values, random keys
# out of 100k) at -c 50, -c 1 and -c 50 -P 16, then linearizable GETs at -c 50 -P 16 and -c 50.
# Prints one line per cluster, with the nodes' CPU per 1000 SETs at -c 50 (in all, and by thread
# name) and their context switches per SET at -c 1 (steadier than throughput on a shared VM).
# Ports 9101-9103/7101-7103 on 127.0.0.1; data in a temp dir, deleted at the end.
#
# Usage: tests/scripts/bench_ab.sh ROUNDS nameA binA wasmA nameB binB wasmB
# BENCH_DIR=/dev/shm puts the data dirs on tmpfs: fsync costs nothing, so the figures isolate the
# CPU and hand-off cost of the write path from the disk's (which varies by 2x from run to run here).
# R=<n> draws the random keys out of n instead of 100k.
# (build the older pair from a git worktree; each binary needs the module it was built with)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=$1
shift
NAMES=("$1" "$4")
BINS=("$(realpath "$2")" "$(realpath "$5")")
WASMS=("$(realpath "$3")" "$(realpath "$6")")
N=${N:-60000}
TMP=$(mktemp -d "${BENCH_DIR:-/tmp}"/redraft-ab.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
# shellcheck source=tests/scripts/bench_common.sh
. tests/scripts/bench_common.sh
rps() { # port test args...
  local port=$1 test=$2
  shift 2
  redis-benchmark -p "$port" -t "$test" -d 256 -r "${R:-100000}" --csv "$@" 2>/dev/null | awk -F'","' 'NR==2 {print int($2)}'
}
# Context switches of every live thread of the three nodes so far: the hand-offs a write costs
# (a thread that exits takes its count with it; the blocking pool keeps idle threads for 10 s).
switches() { cat /proc/"${PIDS[0]}"/task/*/status /proc/"${PIDS[1]}"/task/*/status /proc/"${PIDS[2]}"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s}'; }
# CPU ticks so far of the three nodes' live threads, summed by thread name ("name ticks" lines):
# which part of a node (async workers, log writer, state flusher) took the CPU.
thread_cpu() {
  local p
  for p in "${PIDS[@]}"; do cat /proc/"$p"/task/*/stat 2>/dev/null; done |
    sed -E 's/^[0-9]+ \(([^)]*)\) /\1 /' | awk '{t[$1] += $13 + $14} END {for (n in t) print n, t[n]}'
}
# CPU time of the three nodes so far, in clock ticks (1/100 s).
node_cpu() { cat /proc/"${PIDS[0]}"/stat /proc/"${PIDS[1]}"/stat /proc/"${PIDS[2]}"/stat | awk '{s += $14 + $15} END {print s}'; }
echo "fsync probe: $(fsync_probe)"
for round in $(seq 1 "$ROUNDS"); do
  for i in 0 1; do
    BIN=${BINS[$i]}
    WASM=${WASMS[$i]}
    rm -rf "$TMP"/node*
    start_bench_cluster ""
    cpu_before=$(node_cpu)
    threads_before=$(thread_cpu)
    c50=$(rps 9101 set -c 50 -n "$N")
    c50_cpu=$(( ($(node_cpu) - cpu_before) * 10 * 1000 / N ))
    # ms per 1000 SETs by thread name, largest first (threads that exited are not counted).
    c50_threads=$(printf '%s\n' "$threads_before" | awk -v n="$N" 'NR == FNR {b[$1] = $2; next}
      {d = ($2 - b[$1]) * 10 * 1000 / n; if (d >= 1) printf "%s %d\n", $1, d}' - <(thread_cpu) |
      sort -k2 -nr | awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2}')
    before=$(switches)
    c1=$(rps 9101 set -c 1 -n $((N / 20)))
    c1_switches=$(( ($(switches) - before) * 20 / N ))
    p16=$(rps 9101 set -c 50 -P 16 -n $((N * 2)))
    get=$(rps 9101 get -c 50 -P 16 -n $((N * 2)))
    get50=$(rps 9101 get -c 50 -n "$N")
    echo "round $round ${NAMES[$i]}: SET -c 50 $c50 ($c50_cpu ms CPU/1000: $c50_threads) | SET -c 1 $c1 ($c1_switches switches/SET) | SET -P 16 $p16 | GET -P 16 $get | GET -c 50 $get50"
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    PIDS=()
  done
done
