//! A crash while a follower installs a snapshot (after openraft purged the log, before the
//! restored state reached the disk) must not strand the node: the received snapshot is recorded
//! before the restore, and at start a state behind the purged log is restored from it.
//!
//! These tests build the situation directly with the state machine's API: node A applies
//! entries and builds a snapshot; node B, whose state is empty, finds that snapshot file in its
//! snapshot directory and a log purged up to it.

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder};
use redraft::raft::modules::configured_cell;
use redraft::raft::state_machine::{SharedState, StateMachine};
use redraft::raft::{NodeId, Request};
use redraft::runtime::{FsmEngine, FsmModule, Runtime, RuntimeLimits};
use redraft::storage::{self, Backend};
use std::path::Path;
use std::sync::Arc;

fn log_id(index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

/// A state machine on `dir` running fsm-kv, its log purged up to `purged`.
fn machine(dir: &Path, purged: Option<LogId<NodeId>>) -> Result<(StateMachine, Arc<SharedState>), String> {
    let engine = FsmEngine::new(RuntimeLimits::default()).expect("engine");
    let module = Arc::new(FsmModule::load(&engine, &redraft_tests::fsm_kv_wasm()).expect("module"));
    let store = storage::open(Backend::Redb, &dir.join("state.redb"), false).expect("store");
    let runtime = Runtime::open(module.clone(), store).expect("runtime");
    StateMachine::new(runtime, configured_cell(module), &dir.join("snapshots"), 4096, purged).map_err(|e| e.to_string())
}

fn set(key: &str, value: &str) -> Vec<u8> {
    let mut out = Vec::new();
    fsm_sdk::codec::encode_args(&[b"SET".as_slice(), key.as_bytes(), value.as_bytes()], &mut out);
    out
}

fn digest(dir: &Path) -> String {
    let store = storage::open(Backend::Redb, &dir.join("state.redb"), false).expect("store");
    let view = store.read().expect("view");
    storage::hex(&storage::state_digest(&*view).expect("digest"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for item in std::fs::read_dir(from).expect("read_dir") {
        let path = item.expect("entry").path();
        std::fs::copy(&path, to.join(path.file_name().expect("name"))).expect("copy");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_a_state_behind_the_purged_log_is_restored_from_the_recorded_snapshot() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a).expect("mkdir");
    std::fs::create_dir_all(&b).expect("mkdir");

    // Node A applies five entries and snapshots them.
    {
        let (mut machine, _) = machine(&a, None).expect("machine");
        let entries: Vec<Entry<redraft::raft::TypeConfig>> = (1..=5)
            .map(|i| Entry {
                log_id: log_id(i),
                payload: EntryPayload::Normal(Request::Commands(Arc::new(
                    (0..20).map(|k| set(&format!("k{i}:{k}"), &format!("v{k}"))).collect(),
                ))),
            })
            .collect();
        let responses = machine.apply(entries).await.expect("apply");
        assert_eq!(responses.len(), 5);
        let snapshot = machine.get_snapshot_builder().await.build_snapshot().await.expect("snapshot");
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(5)));
    }

    // Node B has an empty state, A's snapshot recorded in its directory, and a log purged up to
    // index 5: exactly what a crash mid-install leaves. It starts with A's state.
    copy_dir(&a.join("snapshots"), &b.join("snapshots"));
    {
        let (mut machine, _) = machine(&b, Some(log_id(5))).expect("recovered machine");
        let (applied, _) = machine.applied_state().await.expect("applied state");
        assert_eq!(applied, Some(log_id(5)));
    }
    assert_eq!(digest(&b), digest(&a), "the recovered state is the snapshot's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t11_without_a_covering_snapshot_the_node_refuses_to_start_and_says_what_to_do() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("c");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let error = match machine(&dir, Some(log_id(9))) {
        Ok(_) => panic!("a state behind the purged log with no snapshot must be refused"),
        Err(e) => e,
    };
    assert!(error.contains("behind the purged log") && error.contains("JOIN"), "{error}");
}
