//! Membership changes that cannot cost the cluster its quorum, through real processes: `JOIN`
//! refuses addresses that do not parse and nodes that do not answer before proposing anything,
//! promotes a learner only once it has caught up (a snapshot install included) and answers `OK`
//! only when the new voter serves reads; `REMOVE` refuses to leave the voters without a live
//! quorum unless forced, and can remove the leader. After each, the cluster still serves.

use redis::Value;
use redraft_tests::cluster::{JOIN_TIMEOUT, WAIT_DEADLINE, free_port, loopback};
use redraft_tests::resp::{self, call_show, show};
use redraft_tests::{NodeOptions, TestCluster};

const REDRAFT: &str = env!("CARGO_BIN_EXE_redraft");

/// A command that may take as long as a JOIN, on a fresh connection to `id`.
fn slow_call(cluster: &TestCluster, id: u64, args: &[&str]) -> String {
    let mut con =
        resp::connect_with_timeout(cluster.node(id).redis_addr, redis::ProtocolVersion::RESP2, false, JOIN_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to node {id}: {e}"));
    resp::try_call(&mut con, args).map(|v| show(&v)).unwrap_or_else(|e| format!("client error: {e}"))
}

/// The cluster elects a leader, commits a write there and reads it back on every running member
/// of its membership.
fn assert_serving(cluster: &TestCluster, key: &str) {
    let leader = cluster.leader(WAIT_DEADLINE);
    cluster.wait_for(&format!("SET {key} to commit"), WAIT_DEADLINE, || {
        let reply = cluster.try_call(leader, &["SET", key, "ok"]).map(|v| show(&v))?;
        if reply == "+OK" { Ok(()) } else { Err(reply) }
    });
    let members: Vec<u64> = cluster.members(leader).expect("NODES").into_iter().map(|m| m.id).collect();
    for id in cluster.running().into_iter().filter(|id| members.contains(id)) {
        assert_eq!(call_show(&mut cluster.client(id), &["GET", key]), "$ok", "GET {key} on node {id}");
    }
}

fn voters(cluster: &TestCluster, via: u64) -> Vec<u64> {
    cluster.members(via).expect("NODES").into_iter().filter(|m| m.voter).map(|m| m.id).collect()
}

#[test]
fn t10_join_of_an_address_that_does_not_parse_changes_nothing() {
    let cluster = TestCluster::form(REDRAFT, 1, NodeOptions::default());
    for (raft, redis) in [("x:y:z", None), ("127.0.0.1", None), ("127.0.0.1:0", None), ("127.0.0.1:7", Some("nope"))] {
        let mut args = vec!["JOIN", "9", raft];
        args.extend(redis);
        let reply = slow_call(&cluster, 1, &args);
        assert!(reply.starts_with("-ERR invalid") && reply.contains("expected host:port"), "{args:?}: {reply}");
    }
    assert_eq!(voters(&cluster, 1), vec![1]);
    assert_eq!(cluster.members(1).expect("NODES").len(), 1, "no learner was added");
    assert_serving(&cluster, "after-typo");
}

#[test]
fn t11_join_of_a_node_that_is_down_is_refused_before_anything_is_proposed() {
    let cluster = TestCluster::form(REDRAFT, 1, NodeOptions::default());
    let nobody = loopback(free_port()).to_string();
    let reply = slow_call(&cluster, 1, &["JOIN", "9", &nobody]);
    assert!(reply.starts_with("-ERR cannot reach node 9") && reply.contains("Nothing was changed"), "{reply}");
    assert_eq!(cluster.members(1).expect("NODES").len(), 1, "no learner was added: {:?}", cluster.members(1));
    assert_serving(&cluster, "after-down-join");
}

#[test]
fn t12_join_under_another_id_or_from_another_cluster_is_refused() {
    let mut cluster = TestCluster::form(REDRAFT, 1, NodeOptions::default());
    cluster.start(2, NodeOptions::default());
    let node2 = cluster.node(2).raft_addr.to_string();
    // The node at that address is node 2, not node 5.
    let reply = slow_call(&cluster, 1, &["JOIN", "5", &node2]);
    assert!(
        reply.starts_with("-ERR node 5 at") && reply.contains("refused us") && reply.contains("this is node 2"),
        "{reply}"
    );
    // A node of another cluster (here: one that bootstrapped itself) is refused.
    cluster.start(3, NodeOptions { bootstrap: true, ..NodeOptions::default() });
    let node3 = cluster.node(3).raft_addr.to_string();
    let reply = slow_call(&cluster, 1, &["JOIN", "3", &node3]);
    assert!(reply.starts_with("-ERR node 3 belongs to another cluster"), "{reply}");
    assert_eq!(cluster.members(1).expect("NODES").len(), 1);
    cluster.kill(3);
    // The right id joins.
    cluster.join(2, 1);
    assert_eq!(voters(&cluster, 1), vec![1, 2]);
    assert_serving(&cluster, "after-refusals");
}

#[test]
fn t13_join_answers_ok_only_once_the_new_node_serves_what_was_committed() {
    // The log is purged behind a snapshot, so the new node can only catch up by installing it.
    let options = NodeOptions {
        extra_yaml: "snapshot: {chunk_bytes: 4096, logs_kept_after: 0}".into(),
        ..NodeOptions::default()
    };
    let mut cluster = TestCluster::form(REDRAFT, 3, options.clone());
    let leader = cluster.leader(WAIT_DEADLINE);
    let mut con = cluster.client(leader);
    let commands: Vec<redis::Cmd> =
        (0..5000).map(|i| resp::command(&["SET".to_owned(), format!("k:{i}"), "x".repeat(64)])).collect();
    let replies = resp::pipeline(&mut con, &commands).expect("pipeline");
    assert!(replies.iter().all(|r| *r == Value::Okay), "every SET acknowledged");
    let reply = cluster.call(leader, &["SNAPSHOT"]);
    assert!(matches!(reply, Value::Int(i) if i > 0), "SNAPSHOT: {}", show(&reply));
    cluster.wait_for("the leader to purge its log", WAIT_DEADLINE, || {
        let purged = cluster.info_number(leader, "raft_purged_index")?;
        if purged > 0 { Ok(()) } else { Err("not purged".to_owned()) }
    });

    cluster.start(4, options);
    cluster.join(4, leader);
    // The moment JOIN said OK, node 4 answers from its own state (no read index, no waiting).
    let mut local = cluster.client(4);
    assert_eq!(call_show(&mut local, &["READONLY"]), "+OK");
    assert_eq!(call_show(&mut local, &["DBSIZE"]), ":5000", "node 4 applied everything before JOIN answered");
    assert_eq!(call_show(&mut local, &["GET", "k:4999"]), format!("${}", "x".repeat(64)));
    assert_eq!(voters(&cluster, leader), vec![1, 2, 3, 4]);
    assert_serving(&cluster, "after-snapshot-join");
}

#[test]
fn t14_remove_refuses_to_leave_no_live_quorum_unless_forced() {
    let cluster = TestCluster::form(REDRAFT, 3, NodeOptions::default());
    let leader = cluster.leader(WAIT_DEADLINE);
    let followers: Vec<u64> = cluster.ids().into_iter().filter(|&id| id != leader).collect();
    let (down, other) = (followers[0], followers[1]);
    cluster.kill(down);
    // Until an election timeout has passed, the leader may still count the dead node as live.
    cluster.wait_for("the leader to stop hearing from the killed node", WAIT_DEADLINE, || {
        let heard = cluster.info(leader)?.get("raft_peers_last_heard_ms").cloned().unwrap_or_default();
        let ms = heard.split(',').find_map(|p| p.strip_prefix(&format!("{down}="))).unwrap_or("never").to_owned();
        match ms.parse::<u64>() {
            Ok(ms) if ms < 1_000 => Err(heard),
            _ => Ok(()),
        }
    });
    // Leader + `other` are a quorum of three; without `other`, the leader and the dead node are not
    // a quorum of two, and the change could never commit.
    let reply = cluster.wait_until("REMOVE to be refused", WAIT_DEADLINE, || {
        let reply = slow_call(&cluster, leader, &["REMOVE", &other.to_string()]);
        reply.contains("would leave no live quorum").then_some(reply)
    });
    assert!(reply.contains(&format!("REMOVE {other} FORCE")) && reply.contains(&format!("[{down}]")), "{reply}");
    assert_eq!(voters(&cluster, leader).len(), 3, "nothing changed");
    assert_eq!(call_show(&mut cluster.client(leader), &["SET", "still", "serving"]), "+OK");
    // Removing the dead node itself leaves two live voters: allowed.
    assert_eq!(slow_call(&cluster, leader, &["REMOVE", &down.to_string()]), "+OK");
    let mut expected = vec![leader, other];
    expected.sort_unstable();
    assert_eq!(voters(&cluster, leader), expected);
    assert_eq!(slow_call(&cluster, leader, &["REMOVE", "x", "FORCE"]), "-ERR node id must be a positive integer");
    assert_eq!(slow_call(&cluster, leader, &["REMOVE", "3", "SOON"]), "-ERR syntax error");
}

#[test]
fn t15_remove_of_the_leader_hands_over_and_the_rest_serves() {
    let mut cluster = TestCluster::form(REDRAFT, 3, NodeOptions::default());
    let leader = cluster.leader(WAIT_DEADLINE);
    assert_eq!(call_show(&mut cluster.client(leader), &["SET", "before", "removal"]), "+OK");
    assert_eq!(slow_call(&cluster, leader, &["REMOVE", &leader.to_string()]), "+OK");
    cluster.kill(leader);
    let rest: Vec<u64> = cluster.ids().into_iter().filter(|&id| id != leader).collect();
    let new_leader = cluster.wait_until("a new leader among the others", WAIT_DEADLINE, || {
        let seen = cluster.leader_seen_by(rest[0]).ok().flatten()?;
        (seen.0 != leader).then_some(seen.0)
    });
    assert!(rest.contains(&new_leader));
    assert_eq!(voters(&cluster, new_leader), rest);
    for &id in &rest {
        assert_eq!(call_show(&mut cluster.client(id), &["GET", "before"]), "$removal", "node {id}");
    }
    // A node can join the two that are left, which then tolerate a failure again.
    cluster.start(4, NodeOptions::default());
    cluster.join(4, new_leader);
    let mut expected = rest.clone();
    expected.push(4);
    assert_eq!(voters(&cluster, new_leader), expected);
    assert_eq!(call_show(&mut cluster.client(4), &["GET", "before"]), "$removal");
}

#[test]
fn t16_join_during_a_leader_change_never_costs_the_quorum() {
    let mut cluster = TestCluster::form(REDRAFT, 3, NodeOptions::default());
    cluster.start(4, NodeOptions::default());
    let leader = cluster.leader(WAIT_DEADLINE);
    let leader_addr = cluster.node(leader).redis_addr;
    let (raft4, redis4) = (cluster.node(4).raft_addr.to_string(), cluster.node(4).redis_addr.to_string());
    let join = std::thread::spawn(move || {
        // The kill below may come before this connects: a refused connection is an outcome too.
        match resp::connect_with_timeout(leader_addr, redis::ProtocolVersion::RESP2, false, JOIN_TIMEOUT) {
            Ok(mut con) => resp::try_call(&mut con, &["JOIN", "4", &raft4, &redis4])
                .map(|v| show(&v))
                .unwrap_or_else(|e| e.to_string()),
            Err(e) => format!("connect: {e}"),
        }
    });
    cluster.kill(leader);
    let first = join.join().expect("JOIN thread");
    // Whatever the first JOIN answered, the survivors elect a leader and JOIN completes there.
    let rest: Vec<u64> = cluster.ids().into_iter().filter(|&id| id != leader).collect();
    let new_leader = cluster.wait_until("a new leader", WAIT_DEADLINE, || {
        let seen = cluster.leader_seen_by(rest[0]).ok().flatten()?;
        (seen.0 != leader).then_some(seen.0)
    });
    let again = cluster.wait_until("JOIN to complete on the new leader", JOIN_TIMEOUT, || {
        let node4 = cluster.node(4);
        let reply = slow_call(
            &cluster,
            new_leader,
            &["JOIN", "4", &node4.raft_addr.to_string(), &node4.redis_addr.to_string()],
        );
        (reply == "+OK" || reply.contains("already a member")).then_some(reply)
    });
    assert!(voters(&cluster, new_leader).contains(&4), "first JOIN: {first}; second: {again}");
    cluster.restart(leader);
    cluster.wait_members(&[1, 2, 3, 4]);
    assert_serving(&cluster, "after-join-during-election");
}

#[test]
fn t17_a_learner_that_stops_answering_stays_a_learner() {
    let mut cluster = TestCluster::form(REDRAFT, 1, NodeOptions::default());
    cluster.start(2, NodeOptions::default());
    // Paused before JOIN: the probe gets no answer, so nothing is proposed.
    cluster.pause(2);
    let raft2 = cluster.node(2).raft_addr.to_string();
    let reply = slow_call(&cluster, 1, &["JOIN", "2", &raft2]);
    cluster.resume(2);
    assert!(reply.starts_with("-ERR cannot reach node 2"), "{reply}");
    assert_eq!(voters(&cluster, 1), vec![1]);
    assert_serving(&cluster, "after-paused-join");
}

#[test]
fn t18_a_survivor_of_a_lost_majority_restarts_as_a_new_cluster_with_its_data() {
    let mut cluster = TestCluster::form(REDRAFT, 3, NodeOptions::default());
    let leader = cluster.leader(WAIT_DEADLINE);
    let mut con = cluster.client(leader);
    let commands: Vec<redis::Cmd> =
        (0..500).map(|i| resp::command(&["SET".to_owned(), format!("k:{i}"), i.to_string()])).collect();
    let replies = resp::pipeline(&mut con, &commands).expect("pipeline");
    assert!(replies.iter().all(|r| *r == Value::Okay), "every SET acknowledged");
    cluster.wait_converged();
    // The majority is lost for good: the survivor alone cannot commit.
    let survivor = cluster.ids().into_iter().find(|&id| id != leader).expect("a follower");
    for id in cluster.ids().into_iter().filter(|&id| id != survivor) {
        cluster.kill(id);
    }
    // Recovery is explicit: a restart on its own does not change the membership.
    cluster.restart(survivor);
    assert_eq!(voters(&cluster, survivor).len(), 3, "a plain restart keeps the old membership");
    cluster.restart_with_flags(survivor, &["--force-new-cluster"]);
    assert_eq!(cluster.leader(WAIT_DEADLINE), survivor);
    assert_eq!(voters(&cluster, survivor), vec![survivor]);
    let mut con = cluster.client(survivor);
    assert_eq!(call_show(&mut con, &["DBSIZE"]), ":500", "every acknowledged write the survivor held");
    assert_eq!(call_show(&mut con, &["GET", "k:499"]), "$499");
    assert_eq!(call_show(&mut con, &["SET", "after", "recovery"]), "+OK");
    // Fresh nodes with new ids join the new cluster; a later plain restart keeps it.
    cluster.start(4, NodeOptions::default());
    cluster.join(4, survivor);
    assert_eq!(call_show(&mut cluster.client(4), &["GET", "after"]), "$recovery");
    cluster.restart(survivor);
    cluster.wait_members(&[survivor, 4]);
    assert_serving(&cluster, "after-restart");
}

#[test]
fn t19_a_removed_id_is_never_reused_and_its_replacement_joins_under_a_new_one() {
    let mut cluster = TestCluster::form(REDRAFT, 3, NodeOptions::default());
    let leader = cluster.leader(WAIT_DEADLINE);
    assert_eq!(call_show(&mut cluster.client(leader), &["SET", "before", "replacement"]), "+OK");
    let victim = cluster.ids().into_iter().find(|&id| id != leader).expect("a follower");
    assert_eq!(slow_call(&cluster, leader, &["REMOVE", &victim.to_string()]), "+OK");
    // The same id on a fresh data dir is refused before anything is proposed: a node that comes
    // back under a retired id could otherwise vote with a log it no longer has.
    cluster.kill(victim);
    cluster.wipe(victim);
    cluster.restart(victim);
    let reply = cluster.try_join(victim, leader).map(|v| show(&v)).unwrap_or_else(|e| e);
    assert_eq!(reply, format!("-ERR node id {victim} was removed and is never reused: pick a new id"));
    let rest: Vec<u64> = cluster.ids().into_iter().filter(|&id| id != victim).collect();
    assert_eq!(voters(&cluster, leader), rest, "nothing changed");
    cluster.kill(victim);
    // The replacement, under a new id, joins and serves what was committed before.
    cluster.start(4, NodeOptions::default());
    cluster.join(4, leader);
    assert_eq!(voters(&cluster, leader), [rest, vec![4]].concat());
    assert_eq!(call_show(&mut cluster.client(4), &["GET", "before"]), "$replacement");
    assert_serving(&cluster, "after-replacement");
}
