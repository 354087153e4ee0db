//! Applies `SET` (16-byte key, 64-byte value) in a plain loop, for profilers and for a wasm/native
//! ratio that survives a noisy machine.
//!
//! `cargo run --release -p redraft --example apply_loop -- [commands] [batch] [wasm|native|compare]`
//!
//! * `wasm` (default) / `native`: one run; prints ns per command (and the fuel, for wasm). Run it
//!   under `perf record` or `valgrind --tool=callgrind`.
//! * `compare`: nine rounds alternating wasm and native on fresh memory stores, then the median
//!   of each and their ratio. Alternating puts both under the same bursts of noise from other
//!   tenants, which a criterion run of one after the other does not.

#[path = "../benches/support/native.rs"]
mod native;

use fsm_sdk::codec;
use native::Native;
use redraft::runtime::{FsmEngine, FsmModule, Runtime, RuntimeLimits};
use redraft::storage::{MemoryStore, meta};
use std::sync::Arc;
use std::time::Instant;

/// Distinct keys cycled through, as in the criterion benchmark.
const KEYSPACE: usize = 10_000;

fn commands() -> Vec<Vec<u8>> {
    let value = [b'v'; 64];
    (0..KEYSPACE)
        .map(|i| {
            let mut out = Vec::new();
            codec::encode_args(&[b"SET".as_slice(), format!("key-{i:012}").as_bytes(), &value], &mut out);
            out
        })
        .collect()
}

/// Runs `count` commands in batches through `apply`; returns ns per command.
fn run(count: usize, batch: usize, encoded: &[Vec<u8>], mut apply: impl FnMut(&[Vec<u8>], usize)) -> f64 {
    let started = Instant::now();
    let mut done = 0;
    while done < count {
        let n = batch.min(count - done);
        let start = done % encoded.len();
        let end = (start + n).min(encoded.len());
        apply(&encoded[start..end], done);
        done += end - start;
    }
    started.elapsed().as_nanos() as f64 / count as f64
}

fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(300_000);
    let batch: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1).max(1);
    let mode = args.next().unwrap_or_else(|| "wasm".into());
    let engine = FsmEngine::new(RuntimeLimits::default()).expect("engine");
    let module = Arc::new(FsmModule::load(&engine, &redraft_tests::fsm_kv_wasm()).expect("fsm-kv"));
    let encoded = commands();

    let wasm = |fuel: &mut u64| {
        let mut runtime = Runtime::open(module.clone(), Arc::new(MemoryStore::new())).expect("open");
        let ns = run(count, batch, &encoded, |cmds, done| {
            runtime.apply_batch(cmds, &[(meta::LAST_APPLIED, &done.to_le_bytes())]).expect("apply");
        });
        *fuel = runtime.fuel_consumed();
        ns
    };
    let native = || {
        let mut native = Native::new(Arc::new(MemoryStore::new()));
        run(count, batch, &encoded, |cmds, done| {
            native.apply_batch(cmds, &done.to_le_bytes());
        })
    };

    let mut fuel = 0;
    match mode.as_str() {
        "wasm" => {
            let ns = wasm(&mut fuel);
            println!(
                "wasm: {count} SETs in batches of {batch}: {ns:.0} ns/command, {} fuel/command",
                fuel / count as u64
            );
        }
        "native" => println!("native: {count} SETs in batches of {batch}: {:.0} ns/command", native()),
        "compare" => {
            let (mut w, mut n) = (Vec::new(), Vec::new());
            for _ in 0..9 {
                w.push(wasm(&mut fuel));
                n.push(native());
            }
            w.sort_by(f64::total_cmp);
            n.sort_by(f64::total_cmp);
            let (wm, nm) = (w[4], n[4]);
            println!(
                "{count} SETs in batches of {batch}, median of 9 alternating rounds: wasm {wm:.0} ns, native {nm:.0} ns, \
                 ratio {:.2} (wasm range {:.0}-{:.0}, native range {:.0}-{:.0})",
                wm / nm,
                w[0],
                w[8],
                n[0],
                n[8]
            );
        }
        other => eprintln!("unknown mode {other:?}: wasm, native or compare"),
    }
}
