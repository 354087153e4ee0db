//! Applies `SET` through the wasm runtime in a loop, for profilers that need a plain process
//! (`valgrind --tool=callgrind`, `perf record`): `cargo run --release -p redraft --example
//! apply_loop -- [commands] [batch]`.

use fsm_sdk::codec;
use redraft::runtime::{FsmEngine, FsmModule, Runtime, RuntimeLimits};
use redraft::storage::{MemoryStore, meta};
use std::sync::Arc;

fn main() {
    let mut args = std::env::args().skip(1);
    let commands: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let batch: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1).max(1);
    let engine = FsmEngine::new(RuntimeLimits::default()).expect("engine");
    let module = Arc::new(FsmModule::load(&engine, &redraft_tests::fsm_kv_wasm()).expect("fsm-kv"));
    let mut runtime = Runtime::open(module, Arc::new(MemoryStore::new())).expect("open");
    let value = [b'v'; 64];
    let encoded: Vec<Vec<u8>> = (0..10_000)
        .map(|i| {
            let mut out = Vec::new();
            codec::encode_args(&[b"SET".as_slice(), format!("key-{i:012}").as_bytes(), &value], &mut out);
            out
        })
        .collect();
    let started = std::time::Instant::now();
    let mut done = 0;
    while done < commands {
        let n = batch.min(commands - done);
        let cmds: Vec<&[u8]> = (done..done + n).map(|i| encoded[i % encoded.len()].as_slice()).collect();
        runtime.apply_batch(&cmds, &[(meta::LAST_APPLIED, &done.to_le_bytes())]).expect("apply");
        done += n;
    }
    let elapsed = started.elapsed();
    println!(
        "{commands} SETs in batches of {batch}: {:.0} ns/command, {} fuel",
        elapsed.as_nanos() as f64 / commands as f64,
        runtime.fuel_consumed()
    );
}
