//! A key-value module under the real wasm runtime, on either backend, driven like a client.
#![allow(dead_code)] // each test binary uses a different part of this module

use fsm_sdk::{Reply, codec};
use redraft::runtime::{FsmEngine, FsmModule, Runtime, RuntimeLimits};
use redraft::storage::{MemoryStore, RedbStore, SharedStore};
use std::sync::{Arc, OnceLock};

/// One runtime over one store, plus the temp dir that holds a redb file.
pub struct Kv {
    pub backend: &'static str,
    pub runtime: Runtime,
    _dir: Option<tempfile::TempDir>,
}

/// fsm-kv, compiled once per test binary (compiling is the slow part of a test).
pub fn module() -> Arc<FsmModule> {
    static MODULE: OnceLock<Arc<FsmModule>> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            let engine = FsmEngine::new(RuntimeLimits::default()).expect("engine");
            Arc::new(FsmModule::load(&engine, &redraft_tests::fsm_kv_wasm()).expect("fsm-kv loads"))
        })
        .clone()
}

/// fsm-kv on a fresh memory store and on a fresh redb store.
pub fn backends() -> Vec<Kv> {
    let module = module();
    let memory: SharedStore = Arc::new(MemoryStore::new());
    let dir = tempfile::tempdir().expect("temp dir");
    let redb: SharedStore = Arc::new(RedbStore::open(&dir.path().join("state.redb"), false).expect("redb"));
    vec![
        Kv { backend: "memory", runtime: Runtime::open(module.clone(), memory).expect("open"), _dir: None },
        Kv { backend: "redb", runtime: Runtime::open(module, redb).expect("open"), _dir: Some(dir) },
    ]
}

pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    codec::encode_args(args, &mut out);
    out
}

impl Kv {
    /// Sends a command as the node will: writes through apply, reads through query.
    pub fn call_bytes(&mut self, args: &[&[u8]]) -> Reply {
        let encoded = encode(args);
        let module = self.runtime.module().clone();
        let write = module.command_index(args[0]).is_none_or(|i| module.commands()[i].write);
        let result = if write { self.runtime.apply(&encoded) } else { self.runtime.query(&encoded) };
        result.expect("no storage failure")
    }

    pub fn call(&mut self, args: &[&str]) -> Reply {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.call_bytes(&args)
    }
}

pub fn bulk(s: &str) -> Reply {
    Reply::Bulk(s.as_bytes().to_vec())
}

pub fn ok() -> Reply {
    Reply::ok()
}

pub fn err(s: &str) -> Reply {
    Reply::Error(s.to_owned())
}
