//! Blocking pops (`BLPOP`, `BRPOP`, `BLMOVE`, `BRPOPLPUSH`, `BZPOPMIN`, `BZPOPMAX`) on three real
//! nodes: a client blocked on a follower is woken by a push made on the leader, each element goes
//! to exactly one client, a client that leaves while blocked takes nothing, and replies and errors
//! are Redis's, byte for byte.

use redraft_tests::cluster::WAIT_DEADLINE;
use redraft_tests::resp::{RawConn, call_show, show};
use redraft_tests::{NodeOptions, TestCluster};
use std::time::{Duration, Instant};

const REDRAFT: &str = env!("CARGO_BIN_EXE_redraft");

fn three() -> (TestCluster, u64, u64) {
    let cluster = TestCluster::form(REDRAFT, 3, NodeOptions::default());
    let leader = cluster.leader(WAIT_DEADLINE);
    let follower = cluster.running_members().into_iter().find(|&id| id != leader).expect("a follower");
    (cluster, leader, follower)
}

/// `blocked_clients` of node `id`'s `INFO clients`.
fn blocked(cluster: &TestCluster, id: u64) -> Result<u64, String> {
    let reply = cluster.try_call(id, &["INFO", "clients"])?;
    let info = redraft_tests::resp::text(&reply).ok_or_else(|| show(&reply))?;
    let line = info.lines().find_map(|l| l.strip_prefix("blocked_clients:"));
    line.and_then(|n| n.parse().ok()).ok_or_else(|| format!("no blocked_clients in {info}"))
}

/// Waits until node `id` counts `n` blocked clients.
fn wait_blocked(cluster: &TestCluster, id: u64, n: u64) {
    cluster.wait_for(&format!("{n} blocked clients on node {id}"), WAIT_DEADLINE, || match blocked(cluster, id)? {
        seen if seen == n => Ok(()),
        seen => Err(format!("{seen} blocked")),
    });
}

/// Sends a blocking command on a raw connection whose reads wait up to a minute.
fn block(cluster: &TestCluster, id: u64, request: &str) -> RawConn {
    let mut raw = cluster.raw(id);
    raw.stream().set_read_timeout(Some(Duration::from_secs(60))).expect("read timeout");
    raw.send(request.as_bytes()).expect("send");
    raw
}

fn reply(raw: &mut RawConn) -> String {
    String::from_utf8_lossy(&raw.read_reply().expect("a reply")).into_owned()
}

#[test]
fn t60_a_client_blocked_on_a_follower_gets_a_push_made_on_the_leader_and_its_pipelined_requests_after() {
    let (cluster, leader, follower) = three();
    // A request pipelined behind the blocking one is answered after it, in order.
    let mut waiting = block(&cluster, follower, "BLPOP empty jobs 0\r\nPING\r\n");
    wait_blocked(&cluster, follower, 1);
    let mut con = cluster.client(leader);
    assert_eq!(call_show(&mut con, &["RPUSH", "jobs", "j1", "j2"]), ":2");
    assert_eq!(reply(&mut waiting), "*2\r\n$4\r\njobs\r\n$2\r\nj1\r\n");
    assert_eq!(reply(&mut waiting), "+PONG\r\n");
    wait_blocked(&cluster, follower, 0);
    assert_eq!(call_show(&mut con, &["LRANGE", "jobs", "0", "-1"]), "*[$j2]", "exactly one element was taken");
    // With an element there, it does not block; BRPOP takes from the tail of the first non-empty key.
    assert_eq!(waiting.request_text(b"BRPOP empty jobs 5\r\n"), "*2\r\n$4\r\njobs\r\n$2\r\nj2\r\n");
    assert_eq!(call_show(&mut con, &["EXISTS", "jobs"]), ":0", "the emptied list is gone");
    cluster.wait_converged();
}

#[test]
fn t61_timeouts_errors_and_transactions_answer_as_redis_does() {
    let (cluster, leader, _) = three();
    let mut raw = cluster.raw(leader);
    let started = Instant::now();
    assert_eq!(raw.request_text(b"BLPOP nothing 0.3\r\n"), "*-1\r\n");
    assert!(started.elapsed() >= Duration::from_millis(300), "it waited for the timeout");
    assert_eq!(raw.request_text(b"BLMOVE nothing dst LEFT RIGHT 0.05\r\n"), "$-1\r\n");
    assert_eq!(raw.request_text(b"BLPOP q -1\r\n"), "-ERR timeout is negative\r\n");
    assert_eq!(raw.request_text(b"BLPOP q soon\r\n"), "-ERR timeout is not a float or out of range\r\n");
    assert_eq!(raw.request_text(b"BLPOP q\r\n"), "-ERR wrong number of arguments for 'blpop' command\r\n");
    assert_eq!(raw.request_text(b"BLMOVE a b UP LEFT 0\r\n"), "-ERR syntax error\r\n");
    assert_eq!(raw.request_text(b"SET s v\r\n"), "+OK\r\n");
    assert_eq!(
        raw.request_text(b"BLPOP s 0\r\n"),
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    );
    assert_eq!(raw.request_text(b"MULTI\r\n"), "+OK\r\n");
    assert_eq!(raw.request_text(b"BLPOP q 0\r\n"), "-ERR Command not allowed inside a transaction\r\n");
    assert_eq!(raw.request_text(b"EXEC\r\n"), "-EXECABORT Transaction discarded because of previous errors.\r\n");
    // RESP3: the timeout is a null, a popped score a double.
    assert!(raw.request_text(b"HELLO 3\r\n").starts_with('%'));
    assert_eq!(raw.request_text(b"BZPOPMIN nothing 0.05\r\n"), "_\r\n");
    assert_eq!(raw.request_text(b"ZADD z 1.5 a 2 b\r\n"), ":2\r\n");
    assert_eq!(raw.request_text(b"BZPOPMAX z 0\r\n"), "*3\r\n$1\r\nz\r\n$1\r\nb\r\n,2\r\n");
    assert_eq!(raw.request_text(b"HELLO 2\r\n").get(..3), Some("*14"));
    assert_eq!(raw.request_text(b"BZPOPMIN z 0\r\n"), "*3\r\n$1\r\nz\r\n$1\r\na\r\n$3\r\n1.5\r\n");
}

#[test]
fn t62_each_element_goes_to_exactly_one_of_the_clients_blocked_on_its_key() {
    let (cluster, leader, follower) = three();
    // Three clients on two nodes wait on one queue; BLMOVE and BRPOPLPUSH take into lists of
    // their own.
    let mut clients = [
        block(&cluster, follower, "BLPOP queue 0\r\n"),
        block(&cluster, leader, "BLMOVE queue taken:leader RIGHT LEFT 0\r\n"),
        block(&cluster, follower, "BRPOPLPUSH queue taken:follower 0\r\n"),
    ];
    wait_blocked(&cluster, follower, 2);
    wait_blocked(&cluster, leader, 1);
    let mut con = cluster.client(leader);
    for item in ["a", "b", "c"] {
        let pushed = call_show(&mut con, &["LPUSH", "queue", item]);
        assert!(pushed.starts_with(':'), "push {item}: {pushed}");
    }
    let got: Vec<String> = clients.iter_mut().map(reply).collect();
    let mut items: Vec<String> = got.iter().map(|r| r.rsplit("\r\n").nth(1).unwrap_or_default().to_owned()).collect();
    items.sort();
    assert_eq!(items, ["a", "b", "c"], "every element delivered once: {got:?}");
    assert_eq!(call_show(&mut con, &["LLEN", "queue"]), ":0");
    let moved = show(&cluster.call(leader, &["LRANGE", "taken:leader", "0", "-1"]));
    let pushed = show(&cluster.call(leader, &["LRANGE", "taken:follower", "0", "-1"]));
    assert_eq!(moved.matches('$').count() + pushed.matches('$').count(), 2, "{moved} {pushed}");
    cluster.wait_converged();
}

#[test]
fn t63_a_client_that_leaves_while_blocked_takes_nothing() {
    let (cluster, leader, follower) = three();
    let waiting = block(&cluster, follower, "BLPOP jobs 0\r\n");
    wait_blocked(&cluster, follower, 1);
    drop(waiting);
    wait_blocked(&cluster, follower, 0);
    let mut con = cluster.client(leader);
    assert_eq!(call_show(&mut con, &["RPUSH", "jobs", "kept"]), ":1");
    cluster.wait_converged();
    assert_eq!(call_show(&mut cluster.client(follower), &["LRANGE", "jobs", "0", "-1"]), "*[$kept]");
}

#[test]
fn t64_a_client_blocked_on_a_follower_survives_the_leaders_death_and_gets_the_next_push() {
    let (cluster, leader, follower) = three();
    let mut waiting = block(&cluster, follower, "BLPOP jobs 0\r\n");
    wait_blocked(&cluster, follower, 1);
    cluster.kill(leader);
    let new_leader = cluster.wait_until("a new leader", WAIT_DEADLINE, || {
        let seen = cluster.leader_seen_by(follower).ok().flatten()?;
        (seen.0 != leader).then_some(seen.0)
    });
    let mut con = cluster.client(new_leader);
    assert_eq!(call_show(&mut con, &["RPUSH", "jobs", "after-failover"]), ":1");
    assert_eq!(reply(&mut waiting), "*2\r\n$4\r\njobs\r\n$14\r\nafter-failover\r\n");
    assert_eq!(call_show(&mut con, &["EXISTS", "jobs"]), ":0", "taken once");
}
