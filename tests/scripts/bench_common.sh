# Shared by the benchmark scripts (sourced): node configs on 127.0.0.1 ports 910<id>/710<id>,
# waiting for PING, forming a 3-node cluster, and an fsync probe of the data directory's filesystem.
# The caller sets BIN, WASM, TMP and the array PIDS, and may set BACKEND (store_backend, default redb).

# Writes node <id>'s config (redb, warn logging, plus the YAML lines given) and starts it.
start_bench_node() { # id extra-yaml
  local id=$1
  cat >"$TMP/node$id.yaml" <<YAML
id: $id
raft_addr: 127.0.0.1:710$id
redis_addr: 127.0.0.1:910$id
store_backend: ${BACKEND:-redb}
data_dir: $TMP/node$id
fsm_module: $WASM
log_level: warn
$2
YAML
  "$BIN" --config "$TMP/node$id.yaml" >>"$TMP/node$id.log" 2>&1 &
  PIDS+=($!)
}

# Starts nodes 1-3 (each with the YAML lines given), waits for them, and forms the cluster:
# node 1 bootstraps, 2 and 3 join.
start_bench_cluster() { # extra-yaml
  local id
  for id in 1 2 3; do start_bench_node "$id" "$1"; done
  for id in 1 2 3; do wait_ping 910$id; done
  redis-cli -p 9101 BOOTSTRAP 1 127.0.0.1:7101 >/dev/null
  redis-cli -p 9101 JOIN 2 127.0.0.1:7102 127.0.0.1:9102 >/dev/null
  redis-cli -p 9101 JOIN 3 127.0.0.1:7103 127.0.0.1:9103 >/dev/null
}

wait_ping() { for _ in $(seq 1 300); do redis-cli -p "$1" PING 2>/dev/null | grep -q PONG && return 0; sleep 0.1; done; echo "port $1 did not answer" >&2; exit 1; }

# 4 KiB writes each followed by fdatasync (dd oflag=dsync) in $TMP for about 2 s: prints
# "<n> fsync'd 4 KiB writes/s", the figure that bounds one durable write path on this disk.
fsync_probe() {
  local n=500 start end
  start=$(date +%s.%N)
  dd if=/dev/zero of="$TMP/fsync-probe" bs=4k count=$n oflag=dsync status=none
  end=$(date +%s.%N)
  rm -f "$TMP/fsync-probe"
  awk -v n=$n -v s="$start" -v e="$end" 'BEGIN { printf "%d fsync'"'"'d 4 KiB writes/s", n / (e - s) }'
}
