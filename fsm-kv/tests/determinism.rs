//! Determinism: one seeded random log of 100k fsm-kv commands (strings, expiry, keyspace commands,
//! hashes, and transactions with watched keys), stamped with times that make keys expire along
//! the way and interleaved with housekeeping ticks, applied by replicas that differ in everything
//! that must not matter (backend, batch boundaries, runtime restarts), gives identical replies
//! and an identical state digest; a snapshot restored into a fresh store of either backend gives
//! the same digest again.

mod support;

use support::{Dialect, RandomData, Rng, random_command};

use fsm_sdk::Reply;
use redraft::runtime::{Op, Runtime};
use redraft::storage::snapshot::SnapshotChunks;
use redraft::storage::{MemoryStore, RedbStore, SharedStore, meta, state_digest};
use std::sync::Arc;

const COMMANDS: usize = 100_000;
const SEED: u64 = 0x5eed_2026;
/// Log entry `i` is stamped `TIME_BASE + i × TIME_STEP_MS`: 5000 s over the log, so keys set with
/// the random log's relative times (1000 s and more) expire along the way.
const TIME_BASE: i64 = 1_800_000_000_000;
const TIME_STEP_MS: i64 = 50;
/// A housekeeping tick before every this many log entries.
const TICK_EVERY: usize = 500;

/// One replica: a store, a runtime, and how it cuts the log into batches.
struct Replica {
    name: &'static str,
    store: SharedStore,
    runtime: Runtime,
    batch_max: u64,
    /// Re-open the runtime (a fresh instance, as after a restart) every this many batches.
    reopen_every: Option<u64>,
    _dir: Option<tempfile::TempDir>,
}

impl Replica {
    fn new(name: &'static str, store: SharedStore, batch_max: u64, reopen_every: Option<u64>) -> Self {
        let runtime = Runtime::open(support::module(), store.clone()).expect("open");
        Replica { name, store, runtime, batch_max, reopen_every, _dir: None }
    }

    fn digest(&self) -> [u8; 32] {
        state_digest(&*self.store.read().expect("view")).expect("digest")
    }

    /// Applies the whole log in batches of random size (from this replica's own seed), writing
    /// the index of each batch's last entry as last-applied in the same commit.
    fn apply_log(&mut self, log: &[Vec<u8>], seed: u64) -> (Vec<Reply>, u64) {
        let mut rng = Rng(seed);
        let mut replies = Vec::with_capacity(log.len());
        let (mut at, mut batches, mut fuel) = (0usize, 0u64, 0u64);
        while at < log.len() {
            let n = (1 + rng.below(self.batch_max) as usize).min(log.len() - at);
            let last = (at + n) as u64;
            let mut ops = Vec::with_capacity(n + 1);
            for (i, encoded) in log.iter().enumerate().skip(at).take(n) {
                let time_ms = TIME_BASE + i as i64 * TIME_STEP_MS;
                if i.is_multiple_of(TICK_EVERY) {
                    ops.push(Op::Tick { time_ms });
                }
                ops.push(Op::Command { encoded, time_ms: Some(time_ms) });
            }
            let got = self.runtime.apply_ops(&ops, &[(meta::LAST_APPLIED, &last.to_le_bytes())]);
            replies.extend(got.expect("no storage failure"));
            at += n;
            batches += 1;
            if self.reopen_every.is_some_and(|every| batches.is_multiple_of(every)) {
                fuel += self.runtime.fuel_consumed();
                self.runtime = Runtime::open(support::module(), self.store.clone()).expect("reopen");
            }
        }
        (replies, fuel + self.runtime.fuel_consumed())
    }
}

#[test]
fn replicas_agree_on_replies_and_state() {
    let mut rng = Rng(SEED);
    let encode_one = |rng: &mut Rng| {
        let args = random_command(rng, Dialect::Redraft);
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        support::encode(&args)
    };
    let log: Vec<Vec<u8>> = (0..COMMANDS)
        .map(|_| {
            if rng.below(40) != 0 {
                return encode_one(&mut rng);
            }
            // A transaction of a few commands, sometimes watching a key with a token that may or
            // may not still match (an empty token: "the key does not exist").
            let commands: Vec<Vec<u8>> = (0..1 + rng.below(4)).map(|_| encode_one(&mut rng)).collect();
            let refs: Vec<&[u8]> = commands.iter().map(Vec::as_slice).collect();
            let watches = if rng.below(2) == 0 { vec![(rng.key(), Vec::new())] } else { Vec::new() };
            redraft::runtime::encode_transaction(&watches, &refs)
        })
        .collect();

    let dir = tempfile::tempdir().expect("temp dir");
    let redb: SharedStore = Arc::new(RedbStore::open(&dir.path().join("r.redb"), false).expect("redb"));
    let mut replicas = vec![
        Replica::new("memory, batches ≤ 64", Arc::new(MemoryStore::new()), 64, None),
        Replica { _dir: Some(dir), ..Replica::new("redb, batches ≤ 1000", redb, 1000, None) },
        Replica::new("memory, batches of 1, reopened", Arc::new(MemoryStore::new()), 1, Some(7_919)),
    ];

    let (reference, reference_fuel) = replicas[0].apply_log(&log, 1);
    let errors = reference.iter().filter(|r| r.is_error()).count();
    assert!(errors > 1_000 && errors < COMMANDS / 2, "the log exercises error paths: {errors} errors");
    for (i, replica) in replicas.iter_mut().enumerate().skip(1) {
        let (replies, fuel) = replica.apply_log(&log, 1 + i as u64);
        assert_eq!(replies.len(), reference.len(), "{}: one reply per command and tick", replica.name);
        if let Some(at) = (0..reference.len()).find(|&n| replies[n] != reference[n]) {
            panic!("{} diverges at command {at}: {:?} vs {:?}", replica.name, replies[at], reference[at]);
        }
        // Same instructions too: a command near its fuel budget must end the same way everywhere,
        // so fuel use may not depend on a replica's history (instance age, restarts, batching).
        assert_eq!(fuel, reference_fuel, "{} burnt different fuel for the same log", replica.name);
    }
    let digest = replicas[0].digest();
    for replica in &replicas {
        assert_eq!(replica.digest(), digest, "{} state digest", replica.name);
        let view = replica.store.read().expect("view");
        let last = view.meta().expect("meta").remove(meta::LAST_APPLIED).expect("last applied recorded");
        assert_eq!(last, (COMMANDS as u64).to_le_bytes(), "{}", replica.name);
    }

    // Snapshot each replica and restore into fresh stores of both kinds.
    for replica in &mut replicas {
        let bytes: Vec<u8> = SnapshotChunks::new(replica.store.read().expect("view"), 64 * 1024)
            .collect::<Result<Vec<_>, _>>()
            .expect("snapshot")
            .concat();
        let dir = tempfile::tempdir().expect("temp dir");
        let fresh: [SharedStore; 2] =
            [Arc::new(MemoryStore::new()), Arc::new(RedbStore::open(&dir.path().join("f.redb"), false).expect("redb"))];
        for store in fresh {
            // A runtime restores through its own module's digest check.
            let mut runtime = Runtime::open(support::module(), store.clone()).expect("open");
            runtime.restore(&mut bytes.as_slice()).expect("restore");
            assert_eq!(state_digest(&*store.read().expect("view")).expect("digest"), digest, "{}", replica.name);
            let dbsize = runtime.query(&support::encode(&[b"DBSIZE"])).expect("query");
            assert_eq!(dbsize, replica.runtime.query(&support::encode(&[b"DBSIZE"])).expect("query"));
        }
    }
}

/// A command run at the edge of its fuel budget ends the same way on a fresh instance and on one
/// warmed by thousands of earlier calls: fuel use does not depend on an instance's history, so
/// replicas agree even there. (wasmtime checks fuel at block boundaries, so the exact budget at
/// which the command starts failing may be a little below what it consumed.)
#[test]
fn a_command_at_its_fuel_budget_ends_the_same_on_fresh_and_warm_instances() {
    use redraft::runtime::{FsmEngine, FsmModule, RuntimeLimits};
    let mut args: Vec<Vec<u8>> = vec![b"MSET".to_vec()];
    for i in 0..50 {
        args.push(format!("key:{i}").into_bytes());
        args.push(vec![b'v'; 100 + i]);
    }
    let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    let command = support::encode(&refs);

    // How much fuel the command needs, measured on a fresh store.
    let mut probe = Runtime::open(support::module(), Arc::new(MemoryStore::new())).expect("open");
    assert_eq!(probe.apply(&command).expect("apply"), Reply::ok());
    let needed = probe.fuel_consumed();

    let bytes = redraft_tests::fsm_kv_wasm();
    let mut rng = Rng(7);
    let warmup: Vec<Vec<u8>> = (0..3_000)
        .map(|_| {
            let args = [b"MGET".to_vec(), rng.key(), rng.key(), rng.key()];
            support::encode(&args.iter().map(Vec::as_slice).collect::<Vec<_>>())
        })
        .collect();
    let budgets = [needed, needed - 1, needed - 2, needed - 5, needed - 20, needed - 100, needed / 2];
    let mut outcomes = Vec::new();
    for fuel in budgets {
        let limits = RuntimeLimits { fuel_per_apply: fuel, ..RuntimeLimits::default() };
        let module = Arc::new(FsmModule::load(&FsmEngine::new(limits).expect("engine"), &bytes).expect("load"));
        let mut fresh = Runtime::open(module.clone(), Arc::new(MemoryStore::new())).expect("open");
        let mut warm = Runtime::open(module, Arc::new(MemoryStore::new())).expect("open");
        for query in &warmup {
            warm.query(query).expect("warm-up query");
        }
        let warm_fuel_before = warm.fuel_consumed();
        let fresh_reply = fresh.apply(&command).expect("apply");
        let warm_reply = warm.apply(&command).expect("apply");
        assert_eq!(fresh_reply, warm_reply, "fresh and warm instances differ with a budget of {fuel}");
        assert_eq!(
            warm.fuel_consumed() - warm_fuel_before,
            fresh.fuel_consumed(),
            "fresh and warm instances burn different fuel with a budget of {fuel}"
        );
        outcomes.push(fresh_reply);
    }
    assert_eq!(outcomes[0], Reply::ok(), "the measured fuel suffices");
    let exhausted = Reply::Error(format!("ERR command aborted: fuel budget of {} exhausted", needed / 2));
    assert_eq!(outcomes[outcomes.len() - 1], exhausted);
    assert!(outcomes[1..6].iter().any(Reply::is_error), "the edge lies within 100 units: {outcomes:?}");
}

/// Commands that need memory beyond the guaranteed arena (a 1 MiB value in and out) burn the
/// same fuel on a fresh instance and on one whose memory an earlier command already grew: the
/// guest's growth path runs the same instructions whether or not the pages exist.
#[test]
fn growing_memory_costs_the_same_on_fresh_and_grown_instances() {
    let big = vec![b'x'; 1 << 20];
    let huge = vec![b'y'; 2 << 20];
    let set = support::encode(&[b"SET", b"k", &big]);
    let get = support::encode(&[b"GET", b"k"]);
    let run = |runtime: &mut Runtime| {
        let before = runtime.fuel_consumed();
        assert_eq!(runtime.apply(&set).expect("set"), Reply::ok());
        assert_eq!(runtime.query(&get).expect("get"), Reply::Bulk(big.clone()));
        runtime.fuel_consumed() - before
    };
    let mut fresh = Runtime::open(support::module(), Arc::new(MemoryStore::new())).expect("open");
    let mut grown = Runtime::open(support::module(), Arc::new(MemoryStore::new())).expect("open");
    // A 2 MiB command that fails (syntax error) grows the instance's memory and changes nothing.
    let failing = support::encode(&[b"SET", b"k", &huge, b"NX", b"XX"]);
    assert_eq!(grown.apply(&failing).expect("apply"), Reply::error("ERR syntax error"));
    assert_eq!(run(&mut fresh), run(&mut grown));
}
