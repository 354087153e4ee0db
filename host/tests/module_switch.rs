//! Module switches at the state-machine level: the `Request::Module` entries that every replica
//! applies, fed straight to `StateMachine::apply` (the node tests drive the same through real
//! processes and `MODULE RELOAD`). Each test asserts what a client would see: replies, the data,
//! the module that answers.

use fsm_sdk::Reply;
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder};
use redraft::raft::modules::configured_cell;
use redraft::raft::state_machine::{SharedState, StateMachine};
use redraft::raft::{ModuleChange, Request, TypeConfig};
use redraft::runtime::{Contract, FsmEngine, FsmModule, Runtime, RuntimeLimits};
use redraft::storage::{self, Backend, SharedStore};
use std::path::Path;
use std::sync::Arc;

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn load(engine: &Arc<FsmEngine>, path: &str) -> Arc<FsmModule> {
    Arc::new(FsmModule::load(engine, &read(path)).expect("module loads"))
}

/// One replica's state machine, in its own directory.
struct Replica {
    machine: StateMachine,
    shared: Arc<SharedState>,
    engine: Arc<FsmEngine>,
    store: SharedStore,
    next: u64,
}

impl Replica {
    /// A replica configured with `configured`. With `bootstrapped`, its store already runs that
    /// module (as after the cluster's first module entry); without, it has no module yet.
    fn new(dir: &Path, configured: &str, bootstrapped: bool, limits: RuntimeLimits) -> Self {
        let engine = FsmEngine::new(limits).expect("engine");
        let module = load(&engine, configured);
        let store = storage::open(Backend::Redb, &dir.join("state.redb"), false).expect("store");
        let runtime = match bootstrapped {
            true => Runtime::open(module.clone(), store.clone()),
            false => Runtime::attach(module.clone(), store.clone()),
        }
        .expect("runtime");
        let (machine, shared) =
            StateMachine::new(runtime, configured_cell(module), &dir.join("snapshots"), 4096, None).expect("machine");
        Replica { machine, shared, engine, store, next: 1 }
    }

    /// Applies one entry at the next index; returns its replies.
    async fn apply(&mut self, request: Request) -> Vec<Reply> {
        let entry = Entry::<TypeConfig> {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), self.next),
            payload: EntryPayload::Normal(request),
        };
        self.next += 1;
        let mut responses = self.machine.apply([entry]).await.expect("apply");
        assert_eq!(responses.len(), 1);
        responses.remove(0).replies
    }

    async fn run(&mut self, commands: &[&[&str]]) -> Vec<Reply> {
        let encoded = commands
            .iter()
            .map(|args| {
                let mut out = Vec::new();
                fsm_sdk::codec::encode_args(args, &mut out);
                out
            })
            .collect();
        self.apply(Request::Commands(Arc::new(encoded))).await
    }

    /// Proposes the module at `path` as a leader would: its bytes and its contract.
    async fn switch(&mut self, path: &str) -> Reply {
        let module = load(&self.engine, path);
        self.apply(Request::Module(ModuleChange::of(&module))).await.remove(0)
    }

    /// `DEBUG DIGEST`: the state's digest.
    fn state_digest(&self) -> String {
        let view = self.store.read().expect("view");
        storage::hex(&storage::state_digest(&*view).expect("digest"))
    }

    fn active_digest(&self) -> Option<[u8; 32]> {
        self.shared.module.read().expect("lock").module.as_ref().map(|m| m.digest())
    }
}

fn bulk(text: &str) -> Reply {
    Reply::Bulk(text.as_bytes().to_vec())
}

use redraft_tests::{FSM_KV_V2_WASM as V2, FSM_KV_WASM as V1, FSM_PROBE_WASM as PROBE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t1_a_switch_keeps_v1_data_readable_and_v2_commands_work_from_the_next_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut r = Replica::new(dir.path(), V1, true, RuntimeLimits::default());
    r.run(&[&["SET", "a", "1"], &["SET", "n", "5"]]).await;
    assert!(matches!(&r.run(&[&["SETNX", "a", "x"]]).await[0], Reply::Error(e) if e.contains("unknown command")));

    let reply = r.switch(V2).await;
    assert!(matches!(&reply, Reply::Simple(s) if s.starts_with("OK module") && s.contains("index 3")), "{reply:?}");
    assert_eq!(r.active_digest(), Some(load(&r.engine, V2).digest()));

    let replies = r
        .run(&[&["GET", "a"], &["SETNX", "a", "x"], &["INCRBYFLOAT", "n", "1.5"], &["GETDEL", "a"], &["DBSIZE"]])
        .await;
    assert_eq!(replies, vec![bulk("1"), Reply::Integer(0), bulk("6.5"), bulk("1"), Reply::Integer(1)]);
    let history = r.shared.module.read().expect("lock").history.clone();
    assert_eq!(history.len(), 1);
    assert_eq!((history[0].index, history[0].rejected.clone()), (3, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t2_a_trapping_migration_is_rejected_as_a_whole_and_the_old_module_stays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut r = Replica::new(dir.path(), V1, true, RuntimeLimits::default());
    r.run(&[&["SET", "a", "1"]]).await;
    let before = r.state_digest();

    let reply = r.switch(PROBE).await;
    assert!(
        matches!(&reply, Reply::Error(e) if e.contains("rejected at index 2: migrate failed: module trapped") && e.contains("unreachable")),
        "{reply:?}"
    );
    assert_eq!(r.state_digest(), before, "nothing the migration wrote is kept");
    assert_eq!(r.active_digest(), Some(load(&r.engine, V1).digest()));
    assert_eq!(r.run(&[&["GET", "a"], &["COUNT"]]).await[0], bulk("1"));
    let history = r.shared.module.read().expect("lock").history.clone();
    assert!(history[0].rejected.as_deref().is_some_and(|why| why.contains("migrate failed")), "{history:?}");
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(bytes)).into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t3_a_malformed_entry_is_rejected_alike_and_bytes_that_do_not_load_stop_the_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut r = Replica::new(dir.path(), V1, true, RuntimeLimits::default());
    r.run(&[&["SET", "a", "1"]]).await;
    let garbage = b"\0asm\x01\0\0\0garbage".to_vec();

    // Bytes that are not the ones the contract names: every replica sees the same entry.
    let v1 = load(&r.engine, V1);
    let reply =
        r.apply(Request::Module(ModuleChange { contract: v1.contract().encode(), bytes: garbage.clone() })).await;
    assert!(matches!(&reply[0], Reply::Error(e) if e.contains("do not match its digest")), "{reply:?}");
    assert_eq!(r.run(&[&["GET", "a"]]).await, vec![bulk("1")]);

    // Bytes that match their digest but do not load here: the leader validated them, so this
    // node is the odd one out, and it stops rather than diverge.
    let contract = Contract::new(sha256(&garbage), r.engine.identity(), r.engine.limits()).encode();
    let entry = Entry::<TypeConfig> {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), r.next),
        payload: EntryPayload::Normal(Request::Module(ModuleChange { contract, bytes: garbage })),
    };
    let error = r.machine.apply([entry]).await.expect_err("stops").to_string();
    assert!(error.contains("does not load on this node"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t7_logs_and_stores_from_before_module_entries_keep_working() {
    // A log whose first entry is the old contract entry installs the configured module.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut r = Replica::new(dir.path(), V1, false, RuntimeLimits::default());
    let contract = load(&r.engine, V1).contract().encode();
    let reply = r.apply(Request::Contract(contract)).await;
    assert_eq!(reply, vec![Reply::ok()]);
    assert_eq!(r.run(&[&["SET", "a", "1"], &["GET", "a"]]).await, vec![Reply::ok(), bulk("1")]);
    assert!(r.shared.module.read().expect("lock").history.is_empty(), "as on replicas that applied it before");

    // A store that records only the contract opens with the configured module, and records it.
    let old = tempfile::tempdir().expect("tempdir");
    let engine = FsmEngine::new(RuntimeLimits::default()).expect("engine");
    let v1 = load(&engine, V1);
    let store = storage::open(Backend::Redb, &old.path().join("state.redb"), false).expect("store");
    let mut batch = storage::WriteBatch::default();
    batch.set_meta(storage::meta::CONTRACT, &v1.contract().encode());
    batch.put(b"ka", b"1");
    store.commit(&batch).expect("commit");
    let mut runtime = Runtime::open_replica(v1.clone(), store.clone()).expect("opens");
    let mut get = Vec::new();
    fsm_sdk::codec::encode_args(&[b"GET".as_slice(), b"a"], &mut get);
    assert_eq!(runtime.query(&get).expect("query"), bulk("1"));
    let meta = store.read().expect("view").meta().expect("meta");
    assert_eq!(meta.get(storage::meta::MODULE).map(Vec::as_slice), Some(v1.bytes()));

    // A snapshot that carries only the contract installs with the configured module, which then
    // runs the commands that follow.
    let legacy = tempfile::tempdir().expect("tempdir");
    let source = storage::open(Backend::Memory, &legacy.path().join("unused"), false).expect("store");
    let last = LogId::new(CommittedLeaderId::new(1, 1), 7);
    let mut batch = storage::WriteBatch::default();
    batch.set_meta(storage::meta::CONTRACT, &v1.contract().encode());
    batch.set_meta(storage::meta::LAST_APPLIED, &postcard::to_allocvec(&last).expect("encode"));
    batch.put(b"ka", b"1");
    source.commit(&batch).expect("commit");
    let chunks = storage::snapshot::SnapshotChunks::new(source.read().expect("view"), 4096);
    let bytes: Vec<u8> = chunks.map(|c| c.expect("chunk")).collect::<Vec<_>>().concat();
    let b = tempfile::tempdir().expect("tempdir");
    let mut follower = Replica::new(b.path(), V1, false, RuntimeLimits::default());
    let mut incoming = follower.machine.begin_receiving_snapshot().await.expect("receive");
    tokio::io::AsyncWriteExt::write_all(&mut *incoming, &bytes).await.expect("write");
    tokio::io::AsyncWriteExt::flush(&mut *incoming).await.expect("flush");
    let meta = openraft::SnapshotMeta {
        last_log_id: Some(last),
        last_membership: openraft::StoredMembership::default(),
        snapshot_id: "legacy-1".into(),
    };
    follower.machine.install_snapshot(&meta, incoming).await.expect("install");
    follower.next = 8;
    assert_eq!(follower.active_digest(), Some(v1.digest()));
    assert_eq!(follower.run(&[&["GET", "a"], &["INCR", "a"]]).await, vec![bulk("1"), Reply::Integer(2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t4_before_the_first_module_entry_commands_are_refused_alike_on_every_replica() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut r = Replica::new(dir.path(), V2, false, RuntimeLimits::default());
    let replies = r.run(&[&["SET", "a", "1"]]).await;
    assert!(matches!(&replies[0], Reply::Error(e) if e.contains("no state-machine module is active")), "{replies:?}");
    // The first module entry installs v1, whatever this replica's config names, without migrating.
    let reply = r.switch(V1).await;
    assert!(matches!(&reply, Reply::Simple(s) if s.starts_with("OK")), "{reply:?}");
    assert_eq!(r.run(&[&["SET", "a", "1"], &["GET", "a"]]).await, vec![Reply::ok(), bulk("1")]);
    assert!(matches!(&r.run(&[&["SETNX", "b", "1"]]).await[0], Reply::Error(e) if e.contains("unknown command")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t5_a_replica_with_other_limits_stops_at_a_module_entry_instead_of_diverging() {
    let dir = tempfile::tempdir().expect("tempdir");
    let other = RuntimeLimits { fuel_per_apply: 1_000_000, ..RuntimeLimits::default() };
    let mut r = Replica::new(dir.path(), V1, false, other);
    let cluster = FsmEngine::new(RuntimeLimits::default()).expect("engine");
    let module = load(&cluster, V2);
    let entry = Entry::<TypeConfig> {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), 1),
        payload: EntryPayload::Normal(Request::Module(ModuleChange::of(&module))),
    };
    let error = r.machine.apply([entry]).await.expect_err("refused").to_string();
    assert!(error.contains("fuel_per_apply: 1000000 vs 50000000"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t6_a_snapshot_carries_the_active_module_to_a_replica_configured_with_another() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a).expect("mkdir");
    std::fs::create_dir_all(&b).expect("mkdir");
    let mut leader = Replica::new(&a, V1, true, RuntimeLimits::default());
    leader.run(&[&["SET", "a", "1"]]).await;
    leader.switch(V2).await;
    leader.run(&[&["SETNX", "b", "2"]]).await;
    let snapshot = leader.machine.get_snapshot_builder().await.build_snapshot().await.expect("snapshot");

    // B is configured with v1 and has never applied anything.
    let mut follower = Replica::new(&b, V1, false, RuntimeLimits::default());
    let mut incoming = follower.machine.begin_receiving_snapshot().await.expect("receive");
    let mut source = snapshot.snapshot;
    tokio::io::copy(&mut *source, &mut *incoming).await.expect("copy");
    tokio::io::AsyncWriteExt::flush(&mut *incoming).await.expect("flush");
    follower.machine.install_snapshot(&snapshot.meta, incoming).await.expect("install");
    follower.next = snapshot.meta.last_log_id.expect("last").index + 1;

    assert_eq!(follower.active_digest(), Some(load(&follower.engine, V2).digest()), "B runs the cluster's v2");
    assert_eq!(follower.state_digest(), leader.state_digest());
    let replies = follower.run(&[&["GETDEL", "b"], &["GET", "a"]]).await;
    assert_eq!(replies, vec![bulk("2"), bulk("1")]);
    let history = follower.shared.module.read().expect("lock").history.clone();
    assert_eq!(history.len(), 1, "the history travels with the snapshot");
}
