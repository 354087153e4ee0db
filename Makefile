# Redraft — one gate, identical locally and in CI (`.ci/run` calls `make test`).
#
#   make run      build everything and start one durable node (config/single.yaml), bootstrapped,
#                 in the foreground: `redis-cli -p 9001` talks to it; Ctrl-C stops it
#   make test     the whole suite: formatting, lints, the wasm build, every test, the docs
#                 (installs redis-server and redis-tools, and the client libraries redis-py,
#                 node-redis and ioredis, which the tests use, if missing)
#   make cluster  three nodes (config/node{1,2,3}.yaml) in the background, formed with BOOTSTRAP
#                 and JOIN; prints NODES. Logs and data in data/
#   make stop     stop the nodes `make cluster` started
#   make bench    the cluster benchmark against redis-server --appendfsync always (writes
#                 docs/BENCHMARKS.md), the apply micro-benchmark, and module switches under load
#   make bench-writes  durable SETs against limits.writes_in_flight_max, one run (IN_FLIGHT="1 2 4")
#   make bench-growth  SET/s, RSS and data size as the keyspace grows, and restart times (KEYS=.. STEPS=.. BACKEND=..)
#   make bench-flush   FLUSHALL of FLUSH_KEYS keys (default a million) per durable backend
#   make soak     one long seeded fault-suite run: make soak SEED=42 DURATION=600
#   make wasm     build the state-machine modules (target/wasm32-unknown-unknown/guest/*.wasm)
#   make fix      format and apply lint fixes
#   make clean    stop the nodes, remove build output and data/
#
# Every target installs what it needs first (the pinned toolchain and the wasm target; test,
# cluster and bench also Debian's redis-server and redis-tools). Prerequisites: rustup, make, a C
# toolchain (cc), and apt for the redis packages.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
WASM_TARGET := wasm32-unknown-unknown
GUESTS := -p fsm-kv -p fsm-kv-v2 -p fsm-probe

SEED ?= 1
DURATION ?= 300

.PHONY: client-deps bench-writes bench-growth bench-flush soak all toolchain test-deps wasm build release run cluster stop test verify lint fmt-check clippy doc unit bench bench-cluster bench-apply bench-switch fix clean

all: build

## The toolchain pinned in rust-toolchain.toml, with the wasm target. Cheap when present.
toolchain:
	@command -v rustup >/dev/null || { echo "rustup is required (https://rustup.rs)"; exit 1; }
	@rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy rustfmt

## What the tests run besides our code: Debian's redis-server (the reply oracle and the benchmark
## yardstick), redis-tools (redis-cli, redis-benchmark: real clients), and iproute2 and nftables
## (the fault suite's network namespaces and partitions).
test-deps:
	@command -v redis-server >/dev/null && command -v redis-cli >/dev/null && command -v redis-benchmark >/dev/null \
	  && command -v ip >/dev/null && command -v nft >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "installing redis-server, redis-tools, iproute2 and nftables (used by the tests)"; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools iproute2 nftables >/dev/null; }

## The client libraries the tests run against real nodes (host/tests/real_clients.rs): redis-py in
## tests/clients/.venv, node-redis and ioredis in tests/clients/node_modules, at the versions pinned
## in tests/clients/requirements.txt and package-lock.json. Installs python3-venv and nodejs/npm
## from Debian first if they are missing. Cheap when present.
client-deps:
	@command -v node >/dev/null && command -v npm >/dev/null && python3 -m venv --help >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "installing python3-venv, nodejs and npm (the client tests use them)"; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv nodejs npm >/dev/null; }
	@[ -x tests/clients/.venv/bin/python ] && tests/clients/.venv/bin/python -c 'import redis, prometheus_client' 2>/dev/null || { \
	  python3 -m venv tests/clients/.venv && tests/clients/.venv/bin/pip install --quiet --disable-pip-version-check -r tests/clients/requirements.txt; }
	@[ -d tests/clients/node_modules/redis ] && [ -d tests/clients/node_modules/ioredis ] || \
	  npm ci --prefix tests/clients --no-audit --no-fund --loglevel=error

wasm: toolchain
	$(CARGO) build --target $(WASM_TARGET) --profile guest $(GUESTS)
	@ls -l target/$(WASM_TARGET)/guest/*.wasm

build: wasm
	$(CARGO) build --release --workspace

## The node binary, optimised.
release: wasm
	$(CARGO) build --release -p redraft --bin redraft

## One durable node in the foreground, bootstrapped: `redis-cli -p 9001`.
run: release
	@echo "starting node 1 (config/single.yaml): redis-cli -p 9001; Ctrl-C stops it"
	./target/release/redraft --config config/single.yaml

cluster: release test-deps
	tests/scripts/cluster.sh target/release/redraft

stop:
	@for f in data/*.pid; do [ -f "$$f" ] || continue; pid=$$(cat "$$f"); \
	  if kill "$$pid" 2>/dev/null; then echo "stopping pid $$pid ($$f)"; \
	    for i in $$(seq 1 100); do kill -0 "$$pid" 2>/dev/null || break; sleep 0.1; done; fi; rm -f "$$f"; done

## The whole suite. Fails on the first problem.
test: toolchain test-deps client-deps fmt-check clippy unit doc
	@echo "make test: all checks passed"

verify: test

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(CARGO) clippy --target $(WASM_TARGET) -p fsm-sdk -p fsm-kv-core $(GUESTS) --locked -- -D warnings

unit:
	$(CARGO) test --workspace --locked

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --locked

## One long seeded run of the fault suite: make soak SEED=42 DURATION=600 (seconds).
soak: toolchain test-deps wasm
	SEED=$(SEED) DURATION=$(DURATION) $(CARGO) test -p redraft --test faults --locked -- --ignored soak --nocapture

bench: bench-cluster bench-apply bench-switch

## The 3-node cluster vs redis-server --appendfsync always, same run; writes docs/BENCHMARKS.md.
bench-cluster: release test-deps
	tests/scripts/bench.sh target/release/redraft

## Durable SETs at -c 50, -c 1 and -P 16 for each writes_in_flight_max in IN_FLIGHT, one run.
IN_FLIGHT ?= 1 2 4
bench-writes: release test-deps
	tests/scripts/bench_writes.sh target/release/redraft $(IN_FLIGHT)

## Pipelined SETs into a growing keyspace: SET/s, RSS and data dir per round, then restart times.
## BACKEND=memory_durable measures the state-in-memory backend (default redb).
KEYS ?= 10000000
STEPS ?= 10
BACKEND ?= redb
bench-growth: release test-deps
	BACKEND=$(BACKEND) tests/scripts/bench_growth.sh target/release/redraft $(KEYS) $(STEPS)

## FLUSHALL of a large keyspace per durable backend: its reply, every node empty, the next SET.
FLUSH_KEYS ?= 1000000
bench-flush: release test-deps
	tests/scripts/bench_flush.sh target/release/redraft $(FLUSH_KEYS)

## Module switches on a 3-node cluster: MODULE RELOAD's round trip, SET throughput across switches.
bench-switch: release test-deps
	tests/scripts/module_switch_bench.sh target/release/redraft

bench-apply: toolchain
	$(CARGO) bench -p redraft --bench apply

fix: toolchain
	$(CARGO) fmt --all
	$(CARGO) clippy --workspace --all-targets --fix --allow-dirty -- -D warnings

clean: stop
	$(CARGO) clean
	rm -rf data
