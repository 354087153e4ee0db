//! Shared test support for Redraft's test suites.
//!
//! For now it provides the guest state machines, built from source by this crate's build script
//! (never committed as binaries). The real-process cluster harness joins it with the node.

use std::path::Path;

/// Path of `fsm-kv.wasm`, freshly built for `wasm32-unknown-unknown`.
pub const FSM_KV_WASM: &str = env!("FSM_KV_WASM");

/// The bytes of `fsm-kv.wasm`.
pub fn fsm_kv_wasm() -> Vec<u8> {
    std::fs::read(Path::new(FSM_KV_WASM)).unwrap_or_else(|e| panic!("read {FSM_KV_WASM}: {e}"))
}

/// Path of `fsm-probe.wasm`: a test-only module that exercises std's hidden global state.
pub const FSM_PROBE_WASM: &str = env!("FSM_PROBE_WASM");

/// The bytes of `fsm-probe.wasm`.
pub fn fsm_probe_wasm() -> Vec<u8> {
    std::fs::read(Path::new(FSM_PROBE_WASM)).unwrap_or_else(|e| panic!("read {FSM_PROBE_WASM}: {e}"))
}
