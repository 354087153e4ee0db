//! Applying `SET` (16-byte key, 64-byte value) through the wasm runtime (fsm-kv) against a
//! native Rust reference doing the same work on the same store: decode the arguments, look the
//! command up, check whether the key exists, write it (and the key count when it is new), commit.
//!
//! Run: `make bench-apply` (or `cargo bench -p redraft --bench apply`). Figures go to
//! `docs/BENCHMARKS.md`.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use fsm_sdk::codec;
use redraft::runtime::{FsmEngine, FsmModule, Runtime, RuntimeLimits};
use redraft::storage::{MemoryStore, RedbStore, SharedStore, WriteBatch, meta};
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

/// The native reference: fsm-kv's `SET` written directly against the store.
struct Native {
    store: SharedStore,
    batch: WriteBatch,
}

impl Native {
    fn apply_batch(&mut self, commands: &[Vec<u8>], last_applied: &[u8]) -> Vec<fsm_sdk::Reply> {
        let view = self.store.read().expect("view");
        let mut replies = Vec::with_capacity(commands.len());
        let mut args = Vec::new();
        let mut added = 0i64;
        for command in commands {
            codec::decode_args_into(command, &mut args).expect("decode");
            assert!(args[0].eq_ignore_ascii_case(b"set") && args.len() == 3);
            let mut key = Vec::with_capacity(args[1].len() + 1);
            key.push(b'k');
            key.extend_from_slice(args[1]);
            let existed = match self.batch.data.get(&key) {
                Some(v) => v.is_some(),
                None => view.get(&key, &mut |_| {}).expect("get"),
            };
            self.batch.put(&key, args[2]);
            if !existed {
                added += 1;
            }
            replies.push(fsm_sdk::Reply::ok());
        }
        if added != 0 {
            let mut count = [0u8; 8];
            view.get(b"m:dbsize", &mut |v| count.copy_from_slice(&v[..8])).expect("get");
            let n = i64::from_le_bytes(count) + added;
            self.batch.put(b"m:dbsize", &n.to_le_bytes());
        }
        self.batch.set_meta(meta::LAST_APPLIED, last_applied);
        drop(view);
        self.store.commit(&self.batch).expect("commit");
        self.batch.clear();
        replies
    }
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

    let mut native = Native { store: open(), batch: WriteBatch::default() };
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
