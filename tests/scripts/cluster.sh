#!/usr/bin/env bash
# Starts the three-node local cluster of config/node{1,2,3}.yaml in the background, forms it
# with BOOTSTRAP and JOIN (first start only), and prints NODES. `make cluster` runs this;
# `make stop` stops the nodes (by the pids recorded in data/).
#
# Usage: tests/scripts/cluster.sh <redraft binary>
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-target/release/redraft}
mkdir -p data

for n in 1 2 3; do
  pidfile=data/node$n.pid
  if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "node $n already running (pid $(cat "$pidfile"))"
    continue
  fi
  "$BIN" --config config/node$n.yaml >>data/node$n.log 2>&1 &
  echo $! >"$pidfile"
  echo "node $n started (pid $!, log data/node$n.log)"
done

wait_for() { # port
  for _ in $(seq 1 300); do
    redis-cli -p "$1" PING 2>/dev/null | grep -q PONG && return 0
    sleep 0.1
  done
  echo "node on port $1 did not answer PING; see its log in data/" >&2
  exit 1
}
for port in 9001 9002 9003; do wait_for $port; done

if redis-cli -p 9001 NODES 2>&1 | grep -q NOCLUSTER; then
  echo "forming the cluster:"
  echo "  BOOTSTRAP 1 127.0.0.1:7001 -> $(redis-cli -p 9001 BOOTSTRAP 1 127.0.0.1:7001)"
  echo "  JOIN 2 127.0.0.1:7002 127.0.0.1:9002 -> $(redis-cli -p 9001 JOIN 2 127.0.0.1:7002 127.0.0.1:9002)"
  echo "  JOIN 3 127.0.0.1:7003 127.0.0.1:9003 -> $(redis-cli -p 9001 JOIN 3 127.0.0.1:7003 127.0.0.1:9003)"
fi
echo "NODES (id, raft address, redis address, role, leader):"
redis-cli -p 9001 NODES
