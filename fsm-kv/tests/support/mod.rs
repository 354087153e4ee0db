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

/// fsm-kv-v2, compiled once per test binary.
pub fn v2_module() -> Arc<FsmModule> {
    static MODULE: OnceLock<Arc<FsmModule>> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            let engine = FsmEngine::new(RuntimeLimits::default()).expect("engine");
            let bytes = std::fs::read(redraft_tests::FSM_KV_V2_WASM).expect("read fsm-kv-v2");
            Arc::new(FsmModule::load(&engine, &bytes).expect("fsm-kv-v2 loads"))
        })
        .clone()
}

/// `module` on a fresh memory store.
pub fn in_memory(module: Arc<FsmModule>) -> Kv {
    Kv { backend: "memory", runtime: Runtime::open(module, Arc::new(MemoryStore::new())).expect("open"), _dir: None }
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

// ----- seeded random command logs ---------------------------------------------------------

pub use redraft_tests::rng::Rng;

/// Random keys and values for the command logs, drawn from the shared seeded [`Rng`].
pub trait RandomData {
    fn key(&mut self) -> Vec<u8>;
    fn value(&mut self) -> Vec<u8>;
}

impl RandomData for Rng {
    fn key(&mut self) -> Vec<u8> {
        // A small keyspace so commands collide; some keys are binary.
        let k = self.below(400);
        if k.is_multiple_of(50) { vec![b'k', 0, (k % 256) as u8, b'\n'] } else { format!("key:{k}").into_bytes() }
    }

    fn value(&mut self) -> Vec<u8> {
        match self.below(4) {
            0 => (self.next() as i64 % 1000).to_string().into_bytes(),
            1 => Vec::new(),
            _ => (0..self.below(40)).map(|_| self.below(256) as u8).collect(),
        }
    }
}

/// Which server the commands are for: Redis has no `DELETE` (Redraft's original name for `DEL`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Redraft,
    Redis,
}

/// A random fsm-kv-v2 command: one of v2's own a quarter of the time, else an fsm-kv command.
/// `INCRBYFLOAT` increments are exact in binary, plus invalid ones: Redis adds in `long double`
/// and prints its rounding error (`958.29999999999999999` for 958 + 0.3) where fsm-kv-v2 adds in
/// `f64` and prints `958.3`, a documented difference.
pub fn random_v2_command(rng: &mut Rng) -> Vec<Vec<u8>> {
    let c = |s: &str| s.as_bytes().to_vec();
    const INCREMENTS: [&str; 12] =
        ["1", "0.5", "-2.25", "3.5e2", "0.125", "-0.75", "10", "2.5e-1", "abc", " 1", "", "inf"];
    match rng.below(12) {
        0 => vec![c("GETDEL"), rng.key()],
        1 => vec![c("SETNX"), rng.key(), rng.value()],
        2 => vec![c("INCRBYFLOAT"), rng.key(), c(INCREMENTS[rng.below(INCREMENTS.len() as u64) as usize])],
        _ => random_command(rng, Dialect::Redis),
    }
}

/// A random fsm-kv command, weighted towards writes; includes error cases (bad integers, bad
/// options, wrong arity, unknown commands).
pub fn random_command(rng: &mut Rng, dialect: Dialect) -> Vec<Vec<u8>> {
    let c = |s: &str| s.as_bytes().to_vec();
    if rng.below(200) == 0 {
        return match rng.below(5) {
            0 => vec![c("GET")],
            1 => vec![c("SET"), rng.key()],
            2 => vec![c("NOSUCHCMD"), rng.key()],
            // Redis quotes unknown commands' arguments up to 128 bytes in all, and stops at NUL.
            3 => vec![c("NOSUCHCMD"), vec![b'a'; 90], vec![b'b'; 90], c("c")],
            _ => vec![[vec![b'N'; 150], c("\0x")].concat(), c("a\0b"), c("c\r\nd")],
        };
    }
    let del = if dialect == Dialect::Redis || rng.below(2) == 0 { "DEL" } else { "DELETE" };
    match rng.below(16) {
        0..=3 => {
            let mut cmd = vec![c("SET"), rng.key(), rng.value()];
            for option in ["NX", "XX", "GET", "BOGUS"] {
                if rng.below(8) == 0 {
                    cmd.push(c(option));
                }
            }
            cmd
        }
        4 => vec![c("GET"), rng.key()],
        5 => (0..1 + rng.below(3)).fold(vec![c(del)], |mut v, _| {
            v.push(rng.key());
            v
        }),
        6 => vec![c("EXISTS"), rng.key(), rng.key()],
        7 => vec![c("MGET"), rng.key(), rng.key(), rng.key()],
        8 => vec![c("MSET"), rng.key(), rng.value(), rng.key(), rng.value()],
        9 => vec![c("INCR"), rng.key()],
        10 => vec![c("INCRBY"), rng.key(), rng.value()],
        11 => vec![c("DECR"), rng.key()],
        12 => vec![c("DECRBY"), rng.key(), (rng.next() as i64 % 100).to_string().into_bytes()],
        13 => vec![c("APPEND"), rng.key(), rng.value()],
        14 => vec![c("STRLEN"), rng.key()],
        _ => vec![c("DBSIZE")],
    }
}
