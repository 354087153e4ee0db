//! Applying `SET` (16-byte key, 64-byte value) through the wasm runtime (fsm-kv) against a
//! native Rust reference doing the same work on the same store: decode the arguments, look the
//! command up, check whether the key exists, write it (and the key count when it is new), commit.
//!
//! Run: `make bench-apply` (or `cargo bench -p redraft --bench apply`). Figures go to
//! `docs/BENCHMARKS.md`.

#[path = "support/native.rs"]
mod native;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use fsm_sdk::codec;
use native::Native;
use redraft::runtime::{FsmEngine, FsmModule, Runtime, RuntimeLimits};
use redraft::storage::{MemoryStore, RedbStore, SharedStore, meta};
use std::hint::black_box;
use std::sync::Arc;

/// Distinct keys cycled through, so the steady state is mostly overwrites, as in a benchmark
/// with a bounded keyspace (`redis-benchmark -r`).
const KEYSPACE: usize = 10_000;

fn commands(n: usize, offset: usize) -> Vec<Vec<u8>> {
    let value = [b'v'; 64];
    (0..n)
        .map(|i| {
            let key = format!("key-{:012}", (offset + i) % KEYSPACE);
            let mut out = Vec::new();
            codec::encode_args(&[b"SET".as_slice(), key.as_bytes(), &value], &mut out);
            out
        })
        .collect()
}

fn module() -> Arc<FsmModule> {
    let engine = FsmEngine::new(RuntimeLimits::default()).expect("engine");
    Arc::new(FsmModule::load(&engine, &redraft_tests::fsm_kv_wasm()).expect("fsm-kv"))
}

fn bench_backend(c: &mut Criterion, backend: &str, batch: usize, open: &dyn Fn() -> SharedStore) {
    let module = module();
    let mut group = c.benchmark_group(format!("set/{backend}/batch={batch}"));
    group.throughput(Throughput::Elements(batch as u64));
    group.sample_size(20);
    group.measurement_time(std::time::Duration::from_secs(4));
    let batches: Vec<Vec<Vec<u8>>> = (0..KEYSPACE / batch.max(1) + 1).map(|i| commands(batch, i * batch)).collect();

    let mut runtime = Runtime::open(module, open()).expect("open");
    let mut i = 0usize;
    group.bench_function("wasm", |b| {
        b.iter_batched(
            || {
                i += 1;
                (i, &batches[i % batches.len()])
            },
            |(i, cmds)| black_box(runtime.apply_batch(cmds, &[(meta::LAST_APPLIED, &i.to_le_bytes())]).expect("apply")),
            BatchSize::SmallInput,
        )
    });

    let mut native = Native::new(open());
    let mut i = 0usize;
    group.bench_function("native", |b| {
        b.iter_batched(
            || {
                i += 1;
                (i, &batches[i % batches.len()])
            },
            |(i, cmds)| black_box(native.apply_batch(cmds, &i.to_le_bytes())),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn apply(c: &mut Criterion) {
    let memory = || -> SharedStore { Arc::new(MemoryStore::new()) };
    bench_backend(c, "memory", 1, &memory);
    bench_backend(c, "memory", 1000, &memory);
    let dir = tempfile::tempdir().expect("temp dir");
    let n = std::cell::Cell::new(0);
    let redb = || -> SharedStore {
        n.set(n.get() + 1);
        Arc::new(RedbStore::open(&dir.path().join(format!("b{}.redb", n.get())), true).expect("redb"))
    };
    bench_backend(c, "redb-fsync", 1000, &redb);
}

criterion_group!(benches, apply);
criterion_main!(benches);
