//! Three real nodes formed with `BOOTSTRAP` and `JOIN`: reads on every node see the leader's
//! writes (linearizable follower reads), follower writes are forwarded or (in redirect mode)
//! answered with `MOVED`, and `NODES`, `LEADER` and `REMOVE` behave as documented.

use redis::Value;
use redraft_tests::cluster::WAIT_DEADLINE;
use redraft_tests::resp::{self, call_show, show};
use redraft_tests::{NodeOptions, TestCluster, redis_cli};

const REDRAFT: &str = env!("CARGO_BIN_EXE_redraft");

fn three(options: NodeOptions) -> TestCluster {
    TestCluster::form(REDRAFT, 3, options)
}

fn followers(cluster: &TestCluster, leader: u64) -> Vec<u64> {
    cluster.running_members().into_iter().filter(|&id| id != leader).collect()
}

#[test]
fn t10_a_write_on_the_leader_is_read_on_every_node() {
    let cluster = three(NodeOptions::default());
    let leader = cluster.leader(WAIT_DEADLINE);
    assert_eq!(call_show(&mut cluster.client(leader), &["SET", "k", "v1"]), "+OK");
    for id in cluster.ids() {
        // Linearizable: a read anywhere after the write's acknowledgement sees it, no waiting.
        assert_eq!(call_show(&mut cluster.client(id), &["GET", "k"]), "$v1", "GET on node {id}");
        assert_eq!(call_show(&mut cluster.client(id), &["MGET", "k", "nope"]), "*[$v1, (nil)]", "node {id}");
        assert_eq!(call_show(&mut cluster.client(id), &["DBSIZE"]), ":1", "node {id}");
    }
    cluster.wait_converged();
}

#[test]
fn t11_a_write_on_a_follower_is_forwarded() {
    let cluster = three(NodeOptions::default());
    let leader = cluster.leader(WAIT_DEADLINE);
    for follower in followers(&cluster, leader) {
        let mut con = cluster.client(follower);
        let key = format!("from-{follower}");
        assert_eq!(call_show(&mut con, &["SET", &key, "x"]), "+OK", "SET on follower {follower}");
        assert_eq!(call_show(&mut con, &["INCR", "counter"]).chars().next(), Some(':'), "INCR on {follower}");
        assert_eq!(call_show(&mut con, &["GET", &key]), "$x", "read-your-write on follower {follower}");
        for id in cluster.ids() {
            assert_eq!(call_show(&mut cluster.client(id), &["GET", &key]), "$x", "node {id} sees {key}");
        }
    }
    for id in cluster.ids() {
        assert_eq!(call_show(&mut cluster.client(id), &["GET", "counter"]), "$2", "node {id}");
    }
    cluster.wait_converged();
}

#[test]
fn t12_redirect_mode_answers_moved_and_redis_cli_follows_it() {
    let cluster = three(NodeOptions { follower_writes: "redirect", ..NodeOptions::default() });
    // Leadership can move between looking it up and writing: retry (with a fresh key, in case
    // the write landed on a new leader) until the answer names the leader seen just before.
    let mut attempt = 0;
    let (leader, follower, key) =
        cluster.wait_for("a follower to answer MOVED with the leader's address", WAIT_DEADLINE, || {
            attempt += 1;
            let key = format!("rk{attempt}");
            let leader = cluster.leader(WAIT_DEADLINE);
            let follower = followers(&cluster, leader)[0];
            let reply = show(&cluster.call(follower, &["SET", &key, "v"]));
            let expected = format!("-MOVED 0 127.0.0.1:{}", cluster.node(leader).redis_addr.port());
            if reply == expected { Ok((leader, follower, key)) } else { Err(format!("{reply} (expected {expected})")) }
        });
    assert_eq!(call_show(&mut cluster.client(leader), &["GET", &key]), "(nil)", "a MOVED write was not applied");
    assert_eq!(call_show(&mut cluster.client(leader), &["SET", &key, "on-leader"]), "+OK");

    let port = cluster.node(follower).redis_addr.port().to_string();
    let output = redis_cli(&["-c", "-h", "127.0.0.1", "-p", &port, "SET", "ck", "via-cli"], None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout.lines().last(), Some("OK"), "redis-cli -c followed MOVED: {output:?}");
    for id in cluster.ids() {
        assert_eq!(call_show(&mut cluster.client(id), &["GET", "ck"]), "$via-cli", "node {id}");
    }
}

#[test]
fn t13_a_follower_read_sees_a_write_just_acknowledged_by_the_leader() {
    let cluster = three(NodeOptions::default());
    let leader = cluster.leader(WAIT_DEADLINE);
    let follower = followers(&cluster, leader)[0];
    let mut writer = cluster.client(leader);
    let mut reader = cluster.client(follower);
    for i in 0..200 {
        let value = format!("v{i}");
        assert_eq!(call_show(&mut writer, &["SET", "lin", &value]), "+OK", "write {i}");
        assert_eq!(call_show(&mut reader, &["GET", "lin"]), format!("${value}"), "read {i} on follower {follower}");
    }
}

#[test]
fn t14_nodes_lists_every_member() {
    let cluster = three(NodeOptions::default());
    let leader = cluster.wait_members(&[1, 2, 3]);
    for id in cluster.ids() {
        let reply = cluster.call(id, &["NODES"]);
        let Value::Array(rows) = &reply else { panic!("NODES on node {id}: {}", show(&reply)) };
        assert_eq!(rows.len(), 3, "{}", show(&reply));
        for row in rows {
            let Value::Array(fields) = row else { panic!("row {}", show(row)) };
            let [Value::Int(member), raft, redis, role, Value::Int(is_leader)] = fields.as_slice() else {
                panic!("NODES row on node {id}: {}", show(row));
            };
            let node = cluster.node(*member as u64);
            assert_eq!(resp::text(raft), Some(node.raft_addr.to_string()), "{}", show(row));
            assert_eq!(resp::text(redis), Some(node.redis_addr.to_string()), "{}", show(row));
            assert_eq!(resp::text(role).as_deref(), Some("voter"), "{}", show(row));
            assert_eq!(*is_leader, i64::from(*member as u64 == leader), "{}", show(row));
        }
    }
}

#[test]
fn t15_leader_names_the_leaders_redis_address() {
    let cluster = three(NodeOptions::default());
    // Checked as one observation, retried: a spurious election may briefly change the answer.
    cluster.wait_for("LEADER and INFO raft to agree on every node", WAIT_DEADLINE, || {
        let leader = cluster.leader(WAIT_DEADLINE);
        let expected = format!("*[:{leader}, ${}]", cluster.node(leader).redis_addr);
        for id in cluster.ids() {
            let reply = show(&cluster.call(id, &["LEADER"]));
            if reply != expected {
                return Err(format!("LEADER on node {id}: {reply}, expected {expected}"));
            }
            let info = cluster.info(id)?;
            let role = if id == leader { "leader" } else { "follower" };
            let field = |name: &str| info.get(name).map_or("(missing)", String::as_str);
            let seen = (field("raft_node_id"), field("raft_leader_id"), field("raft_role"));
            if seen != (id.to_string().as_str(), leader.to_string().as_str(), role) {
                return Err(format!("INFO raft on node {id}: {info:?}; expected leader {leader}, role {role}"));
            }
        }
        Ok(())
    });
}

#[test]
fn t16_readonly_reads_locally_and_readwrite_switches_back() {
    let cluster = three(NodeOptions::default());
    let leader = cluster.leader(WAIT_DEADLINE);
    let follower = followers(&cluster, leader)[0];
    assert_eq!(call_show(&mut cluster.client(leader), &["SET", "stale", "ok"]), "+OK");
    let mut con = cluster.client(follower);
    assert_eq!(call_show(&mut con, &["READONLY"]), "+OK");
    // A local read may lag, but catches up.
    cluster.wait_until("the follower's local read to see the write", WAIT_DEADLINE, || {
        (call_show(&mut con, &["GET", "stale"]) == "$ok").then_some(())
    });
    assert_eq!(call_show(&mut con, &["READWRITE"]), "+OK");
    assert_eq!(call_show(&mut con, &["GET", "stale"]), "$ok");
    assert_eq!(call_show(&mut con, &["SET", "stale", "again"]), "+OK", "writes still forwarded");
}

#[test]
fn t17_remove_takes_a_member_out() {
    let cluster = three(NodeOptions::default());
    let leader = cluster.leader(WAIT_DEADLINE);
    let gone = followers(&cluster, leader)[1];
    cluster.remove(gone, leader);
    let rest: Vec<u64> = cluster.ids().into_iter().filter(|&id| id != gone).collect();
    cluster.wait_members(&rest);
    let leader = cluster.leader(WAIT_DEADLINE);
    assert_eq!(call_show(&mut cluster.client(leader), &["SET", "after-remove", "1"]), "+OK");
    for &id in &rest {
        assert_eq!(call_show(&mut cluster.client(id), &["GET", "after-remove"]), "$1", "node {id}");
    }
    cluster.wait_converged();
}

/// The write-path counters in `INFO raft` add up: every acknowledged write was proposed once on
/// the leader and applied once on every node, and pipelined writes share entries and appends.
#[test]
fn t18_info_raft_counts_each_write_once_per_node() {
    const WRITES: usize = 500;
    let cluster = three(NodeOptions::default());
    let leader = cluster.leader(WAIT_DEADLINE);
    let mut pipe = redis::pipe();
    for i in 0..WRITES {
        pipe.cmd("SET").arg(format!("k{i}")).arg("v");
    }
    let replies: Vec<Value> = pipe.query(&mut cluster.client(leader)).expect("pipelined SETs");
    assert_eq!(replies.len(), WRITES);
    assert!(replies.iter().all(|r| show(r) == "+OK"), "every SET acknowledged");
    cluster.wait_converged();
    let number = |id: u64, field: &str| cluster.info_number(id, field).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(number(leader, "raft_commands_proposed"), WRITES as u64);
    let entries = number(leader, "raft_entries_proposed");
    assert!((1..WRITES as u64).contains(&entries), "{WRITES} pipelined writes in {entries} entries: batched");
    for id in cluster.ids() {
        assert_eq!(number(id, "raft_commands_applied"), WRITES as u64, "node {id} applied each write once");
        let appends = number(id, "raft_log_appends");
        let appended = number(id, "raft_log_entries_appended");
        assert!(appends >= 1 && appends <= appended, "node {id}: {appended} entries in {appends} appends");
        assert!(number(id, "raft_log_bytes_appended") > 0, "node {id}");
    }
}
