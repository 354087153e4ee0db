# Redraft — one gate, identical locally and in CI (`.ci/run` calls `make test`).
#
#   make test     the whole suite: formatting, lints, the wasm build, every test, the docs
#                 (installs redis-server, the tests' reply oracle, if missing)
#   make wasm     build the state-machine modules (target/wasm32-unknown-unknown/guest/*.wasm)
#   make bench    the apply benchmark (wasm vs native, memory and redb); see docs/BENCHMARKS.md
#   make fix      format and apply lint fixes
#   make clean    remove build output
#
# test, wasm, build, bench and fix install what they need first (the pinned toolchain and the
# wasm target; test also redis-server). Prerequisites: rustup, make, a C toolchain (cc), and apt
# for redis-server.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
WASM_TARGET := wasm32-unknown-unknown
GUESTS := -p fsm-kv -p fsm-probe

.PHONY: all toolchain test-deps wasm build test verify lint fmt-check clippy doc unit bench bench-apply fix clean

all: build

## The toolchain pinned in rust-toolchain.toml, with the wasm target. Cheap when present.
toolchain:
	@command -v rustup >/dev/null || { echo "rustup is required (https://rustup.rs)"; exit 1; }
	@rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy rustfmt

## What the tests run besides our code: Debian's redis-server (the reply oracle).
test-deps:
	@command -v redis-server >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "installing redis-server (the tests' reply oracle)"; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }

wasm: toolchain
	$(CARGO) build --target $(WASM_TARGET) --profile guest $(GUESTS)
	@ls -l target/$(WASM_TARGET)/guest/*.wasm

build: wasm
	$(CARGO) build --release --workspace

## The whole suite. Fails on the first problem.
test: toolchain test-deps fmt-check clippy unit doc
	@echo "make test: all checks passed"

verify: test

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(CARGO) clippy --target $(WASM_TARGET) -p fsm-sdk $(GUESTS) --locked -- -D warnings

unit:
	$(CARGO) test --workspace --locked

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --locked

bench: bench-apply

bench-apply: toolchain
	$(CARGO) bench -p redraft --bench apply

fix: toolchain
	$(CARGO) fmt --all
	$(CARGO) clippy --workspace --all-targets --fix --allow-dirty -- -D warnings

clean:
	$(CARGO) clean
