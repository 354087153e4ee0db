//! Keys with a time to live and `MULTI` / `EXEC` / `WATCH`, on three real nodes with real
//! clients: expired keys vanish from every replica's store without a client touching them (the
//! leader's housekeeping tick), and a transaction runs as one unit on every node, through a
//! follower too, with Redis's replies.

use redraft_tests::cluster::WAIT_DEADLINE;
use redraft_tests::resp::{call_show, show};
use redraft_tests::{NodeOptions, TestCluster};

const REDRAFT: &str = env!("CARGO_BIN_EXE_redraft");

fn three() -> TestCluster {
    TestCluster::form(REDRAFT, 3, NodeOptions::default())
}

fn followers(cluster: &TestCluster, leader: u64) -> Vec<u64> {
    cluster.running_members().into_iter().filter(|&id| id != leader).collect()
}

#[test]
fn t50_expired_keys_leave_every_replica_without_a_client_touching_them() {
    let cluster = three();
    let leader = cluster.leader(WAIT_DEADLINE);
    let follower = followers(&cluster, leader)[0];
    let mut con = cluster.client(follower);
    assert_eq!(call_show(&mut con, &["SET", "short", "v", "PX", "300"]), "+OK");
    assert_eq!(call_show(&mut con, &["SETEX", "long", "1000", "v"]), "+OK");
    assert_eq!(call_show(&mut con, &["SET", "forever", "v"]), "+OK");
    for id in cluster.ids() {
        let ttl = show(&cluster.call(id, &["TTL", "long"]));
        assert!(ttl == ":1000" || ttl == ":999", "TTL on node {id}: {ttl}");
        assert_eq!(show(&cluster.call(id, &["TTL", "forever"])), ":-1", "node {id}");
    }
    // Every node's store loses the key: DBSIZE counts keys held, expired or not, so it drops
    // only when the tick's entry is applied there.
    for id in cluster.ids() {
        cluster.wait_for(&format!("node {id} to drop the expired key"), WAIT_DEADLINE, || {
            match show(&cluster.call(id, &["DBSIZE"])).as_str() {
                ":2" => Ok(()),
                other => Err(other.to_owned()),
            }
        });
        assert_eq!(show(&cluster.call(id, &["GET", "short"])), "(nil)", "node {id}");
        assert_eq!(show(&cluster.call(id, &["EXISTS", "long", "forever"])), ":2", "node {id}");
    }
    cluster.wait_converged();
}

#[test]
fn t51_multi_exec_runs_as_one_unit_with_redis_replies() {
    let cluster = three();
    let leader = cluster.leader(WAIT_DEADLINE);
    for id in [leader, followers(&cluster, leader)[0]] {
        let mut raw = cluster.raw(id);
        let key = format!("tx{id}");
        let script: &[(String, &str)] = &[
            ("EXEC\r\n".into(), "-ERR EXEC without MULTI"),
            ("DISCARD\r\n".into(), "-ERR DISCARD without MULTI"),
            ("MULTI\r\n".into(), "+OK"),
            ("MULTI\r\n".into(), "-ERR MULTI calls can not be nested"),
            (format!("SET {key} 1\r\n"), "+QUEUED"),
            (format!("INCRBY {key} 41\r\n"), "+QUEUED"),
            (format!("GET {key}\r\n"), "+QUEUED"),
            ("PING\r\n".into(), "+QUEUED"),
            ("SET s notanumber\r\n".into(), "+QUEUED"),
            ("INCR s\r\n".into(), "+QUEUED"),
            (
                "EXEC\r\n".into(),
                "*6\r\n+OK\r\n:42\r\n$2\r\n42\r\n+PONG\r\n+OK\r\n\
                 -ERR value is not an integer or out of range",
            ),
            ("MULTI\r\n".into(), "+OK"),
            (format!("SET {key} lost\r\n"), "+QUEUED"),
            ("NOSUCHCOMMAND x\r\n".into(), "-ERR unknown command 'NOSUCHCOMMAND', with args beginning with: 'x' "),
            (format!("GET {key} extra\r\n"), "-ERR wrong number of arguments for 'get' command"),
            ("EXEC\r\n".into(), "-EXECABORT Transaction discarded because of previous errors."),
            ("MULTI\r\n".into(), "+OK"),
            (format!("SET {key} discarded\r\n"), "+QUEUED"),
            ("DISCARD\r\n".into(), "+OK"),
            ("MULTI\r\n".into(), "+OK"),
            ("EXEC\r\n".into(), "*0"),
            ("MULTI\r\n".into(), "+OK"),
            ("BOOTSTRAP 1 127.0.0.1:1\r\n".into(), "-ERR Command not allowed inside a transaction"),
            ("EXEC\r\n".into(), "-EXECABORT Transaction discarded because of previous errors."),
        ];
        for (request, expected) in script {
            let got = raw.request_text(request.as_bytes());
            assert_eq!(got.trim_end_matches("\r\n"), *expected, "node {id}: {request:?}");
        }
        // Every node applied the committed transaction, and only it.
        for node in cluster.ids() {
            assert_eq!(show(&cluster.call(node, &["GET", &key])), "$42", "node {node}");
        }
    }
    // The redis crate's atomic pipeline is MULTI ... EXEC.
    let mut con = cluster.client(followers(&cluster, leader)[1]);
    let (a, b): (String, i64) = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("p")
        .arg("x")
        .cmd("APPEND")
        .arg("p")
        .arg("yz")
        .query(&mut con)
        .expect("atomic pipeline");
    assert_eq!((a.as_str(), b), ("OK", 3));
    cluster.wait_converged();
}

#[test]
fn t52_watch_aborts_exec_when_a_watched_key_changed_on_any_node() {
    let cluster = three();
    let leader = cluster.leader(WAIT_DEADLINE);
    let follower = followers(&cluster, leader)[0];
    let mut watcher = cluster.raw(follower);
    let mut other = cluster.client(leader);
    assert_eq!(call_show(&mut other, &["SET", "w", "1"]), "+OK");
    let mut step = |request: &str| watcher.request_text(request.as_bytes()).trim_end_matches("\r\n").to_owned();

    // Changed between WATCH and EXEC (by another client, on another node): nothing runs.
    assert_eq!(step("WATCH w absent\r\n"), "+OK");
    assert_eq!(call_show(&mut other, &["SET", "w", "2"]), "+OK");
    assert_eq!(step("MULTI\r\n"), "+OK");
    assert_eq!(step("SET w mine\r\n"), "+QUEUED");
    assert_eq!(step("EXEC\r\n"), "*-1");
    assert_eq!(call_show(&mut other, &["GET", "w"]), "$2");

    // EXEC forgot the watch: the next transaction runs.
    assert_eq!(step("MULTI\r\n"), "+OK");
    assert_eq!(step("INCR w\r\n"), "+QUEUED");
    assert_eq!(step("EXEC\r\n"), "*1\r\n:3");

    // Unchanged: it runs. A key that appears counts as a change, so does a new expiry.
    assert_eq!(step("WATCH w\r\n"), "+OK");
    assert_eq!(step("MULTI\r\n"), "+OK");
    assert_eq!(step("INCR w\r\n"), "+QUEUED");
    assert_eq!(step("EXEC\r\n"), "*1\r\n:4");
    assert_eq!(step("WATCH absent\r\n"), "+OK");
    assert_eq!(call_show(&mut other, &["SET", "absent", "now"]), "+OK");
    assert_eq!(step("MULTI\r\n"), "+OK");
    assert_eq!(step("EXEC\r\n"), "*-1");
    assert_eq!(step("WATCH w\r\n"), "+OK");
    assert_eq!(call_show(&mut other, &["EXPIRE", "w", "1000"]), ":1");
    assert_eq!(step("MULTI\r\n"), "+OK");
    assert_eq!(step("EXEC\r\n"), "*-1");

    // UNWATCH and DISCARD forget the watch.
    assert_eq!(step("WATCH w\r\n"), "+OK");
    assert_eq!(step("UNWATCH\r\n"), "+OK");
    assert_eq!(call_show(&mut other, &["SET", "w", "5"]), "+OK");
    assert_eq!(step("MULTI\r\n"), "+OK");
    assert_eq!(step("WATCH w\r\n"), "-ERR WATCH inside MULTI is not allowed");
    assert_eq!(step("GET w\r\n"), "+QUEUED");
    assert_eq!(step("EXEC\r\n"), "*1\r\n$1\r\n5");
    cluster.wait_converged();
}

#[test]
fn t53_a_flush_of_a_large_keyspace_is_one_entry_on_every_replica_and_survives_a_restart() {
    let cluster = three();
    let leader = cluster.leader(WAIT_DEADLINE);
    let follower = followers(&cluster, leader)[0];
    let mut con = cluster.client(leader);
    // 30,000 keys: three times what one command could delete key by key.
    for chunk in 0..30 {
        let mut mset = vec!["MSET".to_owned()];
        for i in 0..1000 {
            mset.extend([format!("k:{chunk}:{i}"), "v".to_owned()]);
        }
        let args: Vec<&str> = mset.iter().map(String::as_str).collect();
        assert_eq!(call_show(&mut con, &args), "+OK");
    }
    assert_eq!(call_show(&mut con, &["HSET", "h", "f", "v"]), ":1");
    assert_eq!(call_show(&mut con, &["DBSIZE"]), ":30001");
    assert_eq!(call_show(&mut cluster.client(follower), &["FLUSHALL"]), "+OK", "through a follower");
    assert_eq!(call_show(&mut con, &["SET", "after", "1"]), "+OK");
    for id in cluster.ids() {
        cluster.wait_for(&format!("node {id} to apply the flush"), WAIT_DEADLINE, || {
            match show(&cluster.call(id, &["DBSIZE"])).as_str() {
                ":1" => Ok(()),
                other => Err(other.to_owned()),
            }
        });
    }
    let (_, digest) = cluster.wait_converged();
    // A restart re-applies whatever its store had not yet written, the flush included.
    cluster.restart(follower);
    let (_, again) = cluster.wait_converged();
    assert_eq!(digest, again);
    assert_eq!(show(&cluster.call(follower, &["SCAN", "0", "COUNT", "100"])), "*[$0, *[$after]]");
}
