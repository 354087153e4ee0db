//! Failures of real node processes: the leader killed (`kill -9`) under a stream of writes, the
//! whole cluster stopped or killed and started again, snapshots that purge the log and bring a
//! new node and a restarted one up to date (with the state in redb, and in memory kept durable by
//! log and snapshots), and a memory-backed node that must not come back.
//!
//! Every write a client saw acknowledged must survive; a write that failed is "unknown" (it may or
//! may not have happened) and is never asserted either way.

use redis::Value;
use redraft_tests::cluster::{START_DEADLINE, WAIT_DEADLINE};
use redraft_tests::resp::{self, show};
use redraft_tests::{NodeOptions, TestCluster};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

const REDRAFT: &str = env!("CARGO_BIN_EXE_redraft");

/// How long the survivors may take to elect a leader that serves (many election timeouts of
/// 300–600 ms; generous for a loaded 2-core machine).
const ELECTION_DEADLINE: Duration = Duration::from_secs(20);

/// What the writer did.
#[derive(Debug, Default)]
struct Ledger {
    /// `i` of every acknowledged `SET w:<i> <i>`.
    acked: Vec<u64>,
    /// Writes that ended in an error reply or a broken connection: outcome unknown.
    unknown: u64,
    /// `INCR counter` sent, and acknowledged.
    incr_sent: u64,
    incr_acked: u64,
    /// A few of the errors seen, for messages.
    errors: Vec<String>,
}

/// A thread streaming writes to whichever node leads, reconnecting (and asking `LEADER` again)
/// after every error. Dropping it (a failed test) stops the thread.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    thread: Option<JoinHandle<Ledger>>,
}

impl Writer {
    fn start(addrs: Vec<SocketAddr>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, acked) = (stop.clone(), acked.clone());
            std::thread::spawn(move || write_until_stopped(&addrs, &stop, &acked))
        };
        Writer { stop, acked, thread: Some(thread) }
    }

    fn acked(&self) -> u64 {
        self.acked.load(Ordering::SeqCst)
    }

    /// Waits until at least `count` SETs were acknowledged.
    fn wait_acked(&self, cluster: &TestCluster, count: u64) {
        cluster.wait_for(&format!("{count} acknowledged writes"), WAIT_DEADLINE, || {
            if self.thread.as_ref().is_none_or(JoinHandle::is_finished) {
                panic!("the writer thread ended early");
            }
            let acked = self.acked();
            if acked >= count { Ok(()) } else { Err(format!("{acked} acknowledged")) }
        });
    }

    fn finish(mut self) -> Ledger {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().expect("running").join().expect("the writer thread panicked")
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn write_until_stopped(addrs: &[SocketAddr], stop: &AtomicBool, acked: &AtomicU64) -> Ledger {
    let mut ledger = Ledger::default();
    let mut con: Option<redis::Connection> = None;
    let mut rotation = 0;
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let Some(c) = con.as_mut() else {
            con = connect_to_leader(addrs, &mut rotation);
            if con.is_none() {
                std::thread::sleep(redraft_tests::cluster::POLL);
            }
            continue;
        };
        i += 1;
        let incr = i.is_multiple_of(5);
        let args = if incr {
            vec!["INCR".to_owned(), "counter".to_owned()]
        } else {
            vec!["SET".to_owned(), format!("w:{i}"), i.to_string()]
        };
        if incr {
            ledger.incr_sent += 1;
        }
        match resp::try_call(c, &args) {
            Ok(Value::Okay) if !incr => {
                ledger.acked.push(i);
                acked.fetch_add(1, Ordering::SeqCst);
            }
            Ok(Value::Int(_)) if incr => ledger.incr_acked += 1,
            outcome => {
                ledger.unknown += 1;
                if ledger.errors.len() < 20 {
                    ledger.errors.push(match outcome {
                        Ok(reply) => show(&reply),
                        Err(e) => e.to_string(),
                    });
                }
                // Find the leader again; back off a little while there is none.
                con = None;
                std::thread::sleep(redraft_tests::cluster::POLL);
            }
        }
    }
    ledger
}

/// A connection to the node that the first reachable node names in `LEADER`, or to that node
/// itself (it forwards) when it names none or the leader cannot be reached.
fn connect_to_leader(addrs: &[SocketAddr], rotation: &mut usize) -> Option<redis::Connection> {
    let timeout = Duration::from_secs(5);
    for _ in 0..addrs.len() {
        let addr = addrs[*rotation % addrs.len()];
        *rotation += 1;
        let Ok(mut con) = resp::connect_with_timeout(addr, redis::ProtocolVersion::RESP2, false, timeout) else {
            continue;
        };
        if let Ok(Value::Array(reply)) = resp::try_call(&mut con, &["LEADER"])
            && let Some(leader) = reply.get(1).and_then(resp::text).and_then(|a| a.parse::<SocketAddr>().ok())
            && let Ok(leader_con) = resp::connect_with_timeout(leader, redis::ProtocolVersion::RESP2, false, timeout)
        {
            return Some(leader_con);
        }
        return Some(con);
    }
    None
}

/// Asserts that node `id` holds `w:<i> = i` for every acknowledged `i`.
fn assert_acked_present(cluster: &TestCluster, id: u64, prefix: &str, acked: &[u64]) {
    let mut con = cluster.client(id);
    let mut missing = Vec::new();
    for chunk in acked.chunks(500) {
        let mut args = vec!["MGET".to_owned()];
        args.extend(chunk.iter().map(|i| format!("{prefix}:{i}")));
        let reply = resp::call(&mut con, &args);
        let Value::Array(values) = &reply else { panic!("MGET on node {id}: {}", show(&reply)) };
        assert_eq!(values.len(), chunk.len());
        for (i, value) in chunk.iter().zip(values) {
            if resp::text(value) != Some(i.to_string()) {
                missing.push(format!("{prefix}:{i} = {}", show(value)));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "node {id} lost {} of {} acknowledged writes, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(20)]
    );
}

/// `SET key value` on node `id` until it is acknowledged (a spurious election may fail a try;
/// the write is idempotent).
fn set_acked(cluster: &TestCluster, id: u64, key: &str, value: &str) {
    cluster.wait_for(&format!("SET {key} on node {id} to be acknowledged"), WAIT_DEADLINE, || {
        match cluster.try_call(id, &["SET", key, value]) {
            Ok(Value::Okay) => Ok(()),
            Ok(other) => Err(show(&other)),
            Err(e) => Err(e),
        }
    });
}

/// Writes `<prefix>:<i> = i` for `i` in `range`, spread over every running member.
fn write_keys(cluster: &TestCluster, prefix: &str, range: std::ops::Range<u64>) -> Vec<u64> {
    let ids = cluster.running_members();
    for i in range.clone() {
        let id = ids[i as usize % ids.len()];
        set_acked(cluster, id, &format!("{prefix}:{i}"), &i.to_string());
    }
    range.collect()
}

#[test]
fn t10_killing_the_leader_under_writes_loses_no_acknowledged_write() {
    let cluster = TestCluster::form(REDRAFT, 3, NodeOptions::default());
    let addrs = cluster.ids().iter().map(|&id| cluster.node(id).redis_addr).collect();
    let writer = Writer::start(addrs);
    writer.wait_acked(&cluster, 100);

    let old = cluster.leader(WAIT_DEADLINE);
    let at_kill = writer.acked();
    cluster.kill(old);
    let new = cluster.leader(ELECTION_DEADLINE);
    assert_ne!(new, old, "a survivor leads");
    writer.wait_acked(&cluster, at_kill + 100);
    let ledger = writer.finish();
    eprintln!(
        "writer: {} acknowledged, {} unknown, INCR {} of {} acknowledged; errors seen: {:?}",
        ledger.acked.len(),
        ledger.unknown,
        ledger.incr_acked,
        ledger.incr_sent,
        ledger.errors
    );

    let new = cluster.leader(WAIT_DEADLINE);
    assert_acked_present(&cluster, new, "w", &ledger.acked);
    let counter = resp::call(&mut cluster.client(new), &["GET", "counter"]);
    let counter: u64 = resp::text(&counter).and_then(|c| c.parse().ok()).unwrap_or(0);
    assert!(
        (ledger.incr_acked..=ledger.incr_sent).contains(&counter),
        "counter {counter}: {} INCRs acknowledged, {} sent",
        ledger.incr_acked,
        ledger.incr_sent
    );

    // The old leader comes back as a follower and catches up to the same state.
    cluster.restart(old);
    let (applied, digest) = cluster.wait_converged();
    assert_eq!(cluster.digest(old).expect("digest"), digest, "at applied index {applied}");
    assert_acked_present(&cluster, old, "w", &ledger.acked);
}

#[test]
fn t11_the_whole_cluster_restarts_with_every_acknowledged_write() {
    whole_cluster_restarts_with_every_acknowledged_write("redb");
}

/// The same with the state in memory: it comes back from the Raft log alone (no snapshot yet).
#[test]
fn t15_a_memory_durable_cluster_restarts_with_every_acknowledged_write() {
    whole_cluster_restarts_with_every_acknowledged_write("memory_durable");
}

fn whole_cluster_restarts_with_every_acknowledged_write(backend: &'static str) {
    let cluster = TestCluster::form(REDRAFT, 3, NodeOptions { backend, ..NodeOptions::default() });
    let ids = cluster.ids();

    let first = write_keys(&cluster, "r", 0..300);
    for &id in &ids {
        let status = cluster.stop(id);
        assert!(status.success(), "node {id} exits cleanly on SIGTERM: {status}");
    }
    for &id in &ids {
        cluster.restart(id);
    }
    cluster.leader(ELECTION_DEADLINE);
    for &id in &ids {
        assert_acked_present(&cluster, id, "r", &first);
    }
    cluster.wait_converged();

    // Again, killed this time: nothing acknowledged may depend on a clean shutdown.
    let second = write_keys(&cluster, "r", 300..600);
    for &id in &ids {
        cluster.kill(id);
    }
    for &id in &ids {
        cluster.restart(id);
    }
    cluster.leader(ELECTION_DEADLINE);
    let all: Vec<u64> = first.iter().chain(&second).copied().collect();
    for &id in &ids {
        assert_acked_present(&cluster, id, "r", &all);
    }
    let (_, digest) = cluster.wait_converged();
    for &id in &ids {
        assert_eq!(cluster.digest(id).expect("digest"), digest);
    }
}

#[test]
fn t12_snapshots_purge_the_log_and_bring_new_and_restarted_nodes_up_to_date() {
    snapshots_purge_the_log_and_bring_new_and_restarted_nodes_up_to_date("redb");
}

/// The same with the state in memory: a restart loads the snapshot file and replays the log after
/// it, and the purged log is not needed.
#[test]
fn t16_a_memory_durable_node_restarts_from_its_snapshot_and_the_log_after_it() {
    snapshots_purge_the_log_and_bring_new_and_restarted_nodes_up_to_date("memory_durable");
}

fn snapshots_purge_the_log_and_bring_new_and_restarted_nodes_up_to_date(backend: &'static str) {
    // Small chunks, so a snapshot travels in many; few logs kept, so the log is really purged.
    let options = NodeOptions {
        backend,
        extra_yaml: "snapshot: {chunk_bytes: 4096, logs_kept_after: 10}".into(),
        ..NodeOptions::default()
    };
    let mut cluster = TestCluster::form(REDRAFT, 3, options.clone());

    // 2000 keys in pipelines of 20 (so at least 100 log entries however the node batches).
    let leader = cluster.leader(WAIT_DEADLINE);
    for batch in 0..100u64 {
        cluster.wait_for(&format!("pipeline {batch} to be acknowledged"), WAIT_DEADLINE, || {
            let mut con = resp::connect(cluster.node(leader).redis_addr, redis::ProtocolVersion::RESP2, false)
                .map_err(|e| e.to_string())?;
            let commands: Vec<redis::Cmd> = (batch * 20..batch * 20 + 20)
                .map(|i| resp::command(&["SET".to_owned(), format!("s:{i}"), i.to_string()]))
                .collect();
            let replies = resp::pipeline(&mut con, &commands).map_err(|e| e.to_string())?;
            match replies.iter().find(|r| **r != Value::Okay) {
                None => Ok(()),
                Some(bad) => Err(show(bad)),
            }
        });
    }
    let keys: Vec<u64> = (0..2000).collect();

    let leader = cluster.leader(WAIT_DEADLINE);
    for id in std::iter::once(leader).chain(cluster.ids().into_iter().filter(|&id| id != leader)) {
        let reply = cluster.call(id, &["SNAPSHOT"]);
        assert!(matches!(reply, Value::Int(index) if index > 0), "SNAPSHOT on node {id}: {}", show(&reply));
    }
    for id in cluster.ids() {
        cluster.wait_for(&format!("node {id} to purge its log after the snapshot"), WAIT_DEADLINE, || {
            let purged = cluster.info_number(id, "raft_purged_index")?;
            let snapshot = cluster.info_number(id, "raft_snapshot_index")?;
            if purged > 0 && snapshot > 0 { Ok(()) } else { Err(format!("purged {purged}, snapshot {snapshot}")) }
        });
    }

    // A new node can only catch up through the snapshot: the log before it is gone.
    cluster.start(4, options);
    cluster.join(4, leader);
    cluster.wait_members(&[1, 2, 3, 4]);
    let (_, digest) = cluster.wait_converged();
    assert_eq!(cluster.digest(4).expect("digest"), digest);
    assert!(cluster.info_number(4, "raft_snapshot_index").expect("INFO") > 0, "node 4 installed a snapshot");
    assert!(cluster.info_number(4, "raft_snapshots_installed").expect("INFO") >= 1, "counted");
    assert!(cluster.info_number(4, "raft_snapshot_last_bytes").expect("INFO") > 0, "and sized");
    assert_acked_present(&cluster, 4, "s", &keys);

    // More writes after the snapshot, then restarts: a node rebuilds from snapshot plus log.
    let more = write_keys(&cluster, "after", 0..100);
    let leader = cluster.leader(WAIT_DEADLINE);
    let follower = cluster.ids().into_iter().find(|&id| id != leader && id != 4).expect("a follower");
    cluster.kill(follower);
    cluster.restart(follower);
    cluster.stop(4);
    cluster.restart(4);
    let (_, digest) = cluster.wait_converged();
    for id in [follower, 4] {
        assert_eq!(cluster.digest(id).expect("digest"), digest, "node {id} after its restart");
        assert_acked_present(&cluster, id, "s", &keys);
        assert_acked_present(&cluster, id, "after", &more);
    }
}

#[test]
fn t13_a_memory_node_refuses_to_restart_on_its_data_dir() {
    let mut cluster = TestCluster::new(REDRAFT);
    let options = NodeOptions { backend: "memory", bootstrap: true, ..NodeOptions::default() };
    for id in [1, 2] {
        cluster.start(id, options.clone());
        cluster.wait_for(&format!("node {id} to lead its one-node cluster"), WAIT_DEADLINE, || {
            match cluster.leader_seen_by(id) {
                Ok(Some((leader, _))) if leader == id => Ok(()),
                other => Err(format!("LEADER: {other:?}")),
            }
        });
        set_acked(&cluster, id, "k", "v");
    }
    // Stopped cleanly or killed: either way the log and the vote are gone with the process.
    cluster.stop(1);
    cluster.kill(2);
    for id in [1, 2] {
        let report = cluster.restart_expect_exit(id, START_DEADLINE);
        assert!(!report.status.success(), "node {id} must refuse: {report:?}");
        let output = report.output.to_lowercase();
        assert!(
            output.contains("memory") && output.contains("vote"),
            "node {id}: the refusal explains that a memory node lost its log and vote: {}",
            report.output
        );
    }
}

#[test]
fn t14_a_forwarded_write_or_read_to_a_dead_leader_is_refused_as_clusterdown() {
    let cluster = TestCluster::form(REDRAFT, 2, NodeOptions::default());
    let leader = cluster.leader(WAIT_DEADLINE);
    let follower = cluster.ids().into_iter().find(|&id| id != leader).expect("a follower");
    assert_eq!(resp::call(&mut cluster.client(follower), &["SET", "k", "before"]), Value::Okay);
    cluster.kill(leader);
    // Two voters, one dead: nothing can commit. A new connection has no upstream yet: whether the
    // follower still names the dead leader (the upstream cannot connect, so nothing was sent) or
    // has given up on it, the write is refused as one that was not applied, never "unknown".
    // (A write sent into an older connection's upstream before it noticed the leader's death
    // is unknown, rightly: it was sent.)
    let mut con = cluster.client(follower);
    let reply = show(&resp::call(&mut con, &["SET", "k", "lost"]));
    assert!(reply.starts_with("-CLUSTERDOWN"), "{reply}");
    // A linearizable read cannot be served either, and says so the same way.
    let reply = show(&resp::call(&mut con, &["GET", "k"]));
    assert!(reply.starts_with("-CLUSTERDOWN"), "{reply}");
    cluster.restart(leader);
    cluster.leader(ELECTION_DEADLINE);
    cluster.wait_converged();
    for id in cluster.ids() {
        assert_eq!(show(&resp::call(&mut cluster.client(id), &["GET", "k"])), "$before", "node {id}");
    }
}
