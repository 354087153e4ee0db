//! Shared test support for Redraft's test suites.
//!
//! - the guest state machines, built from source by this crate's build script (never committed
//!   as binaries);
//! - [`cluster`]: the real-process harness that starts `redraft` nodes and waits on them;
//! - [`resp`]: connections, commands and reply rendering for talking RESP to a node;
//! - [`netlab`]: network namespaces, veth pairs and nftables rules for partition faults;
//! - [`rng`]: the seeded generator that makes random tests replayable;
//! - [`tools`]: `redis-cli` and `redis-benchmark` as child processes.
//!
//! This crate talks to nodes only through processes and sockets: `redraft` dev-depends on it, so
//! it cannot depend on `redraft`.

use std::path::Path;

pub mod cluster;
pub mod linearizability;
pub mod netlab;
pub mod resp;
pub mod rng;
pub mod tools;

pub use cluster::{ExitReport, Member, Node, NodeOptions, TestCluster, wait_for, wait_until};
pub use tools::{redis_benchmark, redis_cli};

/// Path of `fsm-kv.wasm`, freshly built for `wasm32-unknown-unknown`.
pub const FSM_KV_WASM: &str = env!("FSM_KV_WASM");

/// The bytes of `fsm-kv.wasm`.
pub fn fsm_kv_wasm() -> Vec<u8> {
    std::fs::read(Path::new(FSM_KV_WASM)).unwrap_or_else(|e| panic!("read {FSM_KV_WASM}: {e}"))
}

/// Path of `fsm-kv.wasm` (what a node's `fsm_module` points at).
pub fn fsm_kv_wasm_path() -> &'static Path {
    Path::new(FSM_KV_WASM)
}

/// Path of `fsm-kv-v2.wasm`: fsm-kv plus `GETDEL`, `SETNX`, `INCRBYFLOAT`, with a migration hook.
pub const FSM_KV_V2_WASM: &str = env!("FSM_KV_V2_WASM");

/// Path of `fsm-probe.wasm`: a test-only module that exercises std's hidden global state.
pub const FSM_PROBE_WASM: &str = env!("FSM_PROBE_WASM");

/// The bytes of `fsm-probe.wasm`.
pub fn fsm_probe_wasm() -> Vec<u8> {
    std::fs::read(Path::new(FSM_PROBE_WASM)).unwrap_or_else(|e| panic!("read {FSM_PROBE_WASM}: {e}"))
}
