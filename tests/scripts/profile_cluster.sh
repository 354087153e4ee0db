#!/usr/bin/env bash
# Profiles a 3-node cluster (redb, fsync on) under one redis-benchmark load: perf records all three
# nodes with DWARF call graphs, then prints the top symbols by self samples and by inclusive
# samples (a symbol anywhere on the stack), over all nodes. What the write path's CPU goes to.
#
# Usage: tests/scripts/profile_cluster.sh BIN WASM [redis-benchmark args...]
#   default load: -t set -c 50 -n 200000 -d 256 -r 100000
# BENCH_DIR=/dev/shm puts the data dirs on tmpfs (isolates CPU from the disk). TOP=<n> rows;
# INCLUDE=<regex> which symbols the inclusive list shows.
# PERF_OUT=<file> keeps perf.data there (default: deleted with the temp dir). WARMUP=<args> is
# the redis-benchmark load run before recording (default 20000 SETs).
# Ports 9101-9103/7101-7103 on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$(realpath "$1")
WASM=$(realpath "$2")
shift 2
LOAD=("$@")
[ ${#LOAD[@]} -gt 0 ] || LOAD=(-t set -c 50 -n 200000 -d 256 -r 100000)
TOP=${TOP:-40}
# The inclusive list shows only symbols matching this (the rest is runtime and libc frames).
INCLUDE=${INCLUDE:-'^(redraft::|openraft::|redb::|wasmtime|fsm_kv|imbl::|tokio::sync|tokio::net|__x64_sys|tcp_|schedule$|fdatasync)'}
TMP=$(mktemp -d "${BENCH_DIR:-/tmp}"/redraft-prof.XXXXXX)
PIDS=()
PERF_PID=""
cleanup() {
  [ -n "$PERF_PID" ] && kill -INT "$PERF_PID" 2>/dev/null || true
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
# shellcheck source=tests/scripts/bench_common.sh
. tests/scripts/bench_common.sh
start_bench_cluster ""
# Warm up (the leader's first entries, the key filter's build) before recording; WARMUP=<args>
# replaces the load, say to fill a large keyspace first.
read -r -a WARM <<<"${WARMUP:--t set -c 50 -n 20000 -d 256 -r 100000}"
redis-benchmark -p 9101 "${WARM[@]}" -q >/dev/null 2>&1
perf record -q -F 199 --call-graph dwarf,16384 -o "$TMP/perf.data" \
  -p "${PIDS[0]},${PIDS[1]},${PIDS[2]}" >/dev/null 2>&1 &
PERF_PID=$!
sleep 1 # perf attaches
redis-benchmark -p 9101 "${LOAD[@]}" -q 2>/dev/null | tr '\r' '\n' | tail -n 2
kill -INT "$PERF_PID"
wait "$PERF_PID" 2>/dev/null || true
PERF_PID=""
[ -n "${PERF_OUT:-}" ] && cp "$TMP/perf.data" "$PERF_OUT"
perf script -i "$TMP/perf.data" -F comm,ip,sym 2>/dev/null | python3 -c '
import re, sys, collections
top = int(sys.argv[1])
self_n, incl, total = collections.Counter(), collections.Counter(), 0
stack = []
def flush():
    global total
    if not stack: return
    total += 1
    self_n[stack[0]] += 1
    for s in set(stack): incl[s] += 1
for line in sys.stdin:
    line = line.rstrip("\n")
    if not line.strip():
        flush(); stack = []; continue
    if not line.startswith("\t") and not line.startswith(" " * 8):
        continue  # the sample header (thread name)
    parts = line.split(None, 1)
    stack.append(parts[1].split("+0x")[0] if len(parts) > 1 else "?")
flush()
print(f"{total} samples")
keep = re.compile(sys.argv[2])
for title, c in (("self", self_n), ("inclusive, symbols matching INCLUDE", incl)):
    print(f"--- top {top} by {title}")
    rows = [(s, n) for s, n in c.most_common() if title == "self" or keep.search(s)]
    for s, n in rows[:top]:
        print(f"{100 * n / total:6.2f}%  {s[:150]}")
' "$TOP" "$INCLUDE"
