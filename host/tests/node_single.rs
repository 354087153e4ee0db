//! One bootstrapped node as a real process: every fsm-kv command through the `redis` crate in
//! RESP2 and RESP3 with Redis's exact replies, a 20,000-command pipeline, inline commands,
//! `redis-cli` and `redis-benchmark`, the client-compatibility commands, and a node outside any
//! cluster.

use redis::Value;
use redraft_tests::cluster::WAIT_DEADLINE;
use redraft_tests::resp::{self, call_show, show, text};
use redraft_tests::{NodeOptions, TestCluster, redis_benchmark, redis_cli};
use std::time::Duration;

const REDRAFT: &str = env!("CARGO_BIN_EXE_redraft");

/// A one-node cluster (`bootstrap: true`) whose node leads and serves writes.
fn single() -> TestCluster {
    let mut cluster = TestCluster::new(REDRAFT);
    cluster.start(1, NodeOptions { bootstrap: true, ..NodeOptions::default() });
    assert_eq!(cluster.leader(WAIT_DEADLINE), 1);
    cluster
}

/// Every fsm-kv command, with the reply Redis 7 gives (rendered by `resp::show`), run in order on
/// a fresh node.
const SCRIPT: &[(&[&str], &str)] = &[
    (&["GET", "k"], "(nil)"),
    (&["SET", "k", "v"], "+OK"),
    (&["GET", "k"], "$v"),
    (&["set", "k", "w"], "+OK"),
    (&["gEt", "k"], "$w"),
    (&["SET", "empty", ""], "+OK"),
    (&["GET", "empty"], "$"),
    // SET's options.
    (&["SET", "n1", "1", "NX"], "+OK"),
    (&["SET", "n1", "2", "NX"], "(nil)"),
    (&["GET", "n1"], "$1"),
    (&["SET", "n1", "3", "XX"], "+OK"),
    (&["SET", "missing", "3", "XX"], "(nil)"),
    (&["GET", "missing"], "(nil)"),
    (&["SET", "n1", "4", "GET"], "$3"),
    (&["SET", "new", "5", "GET"], "(nil)"),
    (&["GET", "new"], "$5"),
    (&["SET", "n1", "6", "nx", "get"], "$4"),
    (&["SET", "n1", "8", "KEEPTTL"], "+OK"),
    (&["GET", "n1"], "$8"),
    (&["SET", "n1", "v", "NX", "XX"], "-ERR syntax error"),
    (&["SET", "n1", "v", "BOGUS"], "-ERR syntax error"),
    (&["SET", "n1", "v", "EX", "100"], "+OK"),
    (&["TTL", "n1"], ":100"),
    (&["SET", "n1", "8"], "+OK"),
    (&["TTL", "n1"], ":-1"),
    (&["GET", "n1"], "$8"),
    // Arity and unknown commands.
    (&["GET"], "-ERR wrong number of arguments for 'get' command"),
    (&["GET", "a", "b"], "-ERR wrong number of arguments for 'get' command"),
    (&["SET", "k"], "-ERR wrong number of arguments for 'set' command"),
    (&["FOO", "bar"], "-ERR unknown command 'FOO', with args beginning with: 'bar' "),
    (&["FOO", "bar", "baz"], "-ERR unknown command 'FOO', with args beginning with: 'bar' 'baz' "),
    // MSET, EXISTS, MGET, DEL, DELETE.
    (&["MSET", "a", "1", "b", "2", "c", "3"], "+OK"),
    (&["MSET", "a", "1", "b"], "-ERR wrong number of arguments for 'mset' command"),
    (&["EXISTS", "a", "a", "b", "zz"], ":3"),
    (&["MGET", "a", "nope", "b"], "*[$1, (nil), $2]"),
    (&["DEL", "a", "a", "zz"], ":1"),
    (&["EXISTS", "a"], ":0"),
    (&["DELETE", "b", "c"], ":2"),
    (&["DEL", "b"], ":0"),
    // Counters.
    (&["INCR", "cnt"], ":1"),
    (&["INCRBY", "cnt", "41"], ":42"),
    (&["DECR", "cnt"], ":41"),
    (&["DECRBY", "cnt", "-9"], ":50"),
    (&["INCRBY", "cnt", "-100"], ":-50"),
    (&["GET", "cnt"], "$-50"),
    (&["INCR", "k"], "-ERR value is not an integer or out of range"),
    (&["INCRBY", "cnt", "x"], "-ERR value is not an integer or out of range"),
    (&["INCRBY", "cnt", "1.5"], "-ERR value is not an integer or out of range"),
    (&["INCRBY", "cnt"], "-ERR wrong number of arguments for 'incrby' command"),
    (&["SET", "max", "9223372036854775807"], "+OK"),
    (&["INCR", "max"], "-ERR increment or decrement would overflow"),
    (&["DECRBY", "cnt", "-9223372036854775808"], "-ERR decrement would overflow"),
    (&["GET", "max"], "$9223372036854775807"),
    // APPEND and STRLEN.
    (&["STRLEN", "s"], ":0"),
    (&["APPEND", "s", "Hello"], ":5"),
    (&["APPEND", "s", " World"], ":11"),
    (&["GET", "s"], "$Hello World"),
    (&["STRLEN", "s"], ":11"),
    // k, empty, n1, new, cnt, max, s.
    (&["DBSIZE"], ":7"),
    (&["DBSIZE", "x"], "-ERR wrong number of arguments for 'dbsize' command"),
    // Hashes, and the type check between them and strings.
    (&["HSET", "h", "f1", "a", "f2", "b"], ":2"),
    (&["HGET", "h", "f2"], "$b"),
    (&["HINCRBY", "h", "n", "5"], ":5"),
    (&["HLEN", "h"], ":3"),
    (&["TYPE", "h"], "+hash"),
    (&["GET", "h"], "-WRONGTYPE Operation against a key holding the wrong kind of value"),
    (&["HGET", "k", "f"], "-WRONGTYPE Operation against a key holding the wrong kind of value"),
    (&["DEL", "h"], ":1"),
    (&["DBSIZE"], ":7"),
];

fn run_script(con: &mut redis::Connection, protocol: &str) {
    for (args, expected) in SCRIPT {
        assert_eq!(call_show(con, args), *expected, "{protocol}: {}", resp::show_args(args));
    }
}

/// Keys and values with CR, LF, NUL and non-UTF-8 bytes, and a 1 MiB value, round-trip.
fn binary_safe(con: &mut redis::Connection) {
    let key: &[u8] = b"bin\0\r\n\xff";
    let value: &[u8] = b"\0\x01\r\n\xfe value";
    assert_eq!(show(&resp::call(con, &[b"SET", key, value])), "+OK");
    assert_eq!(resp::call(con, &[b"GET", key]), Value::BulkString(value.to_vec()));
    let big = vec![b'x'; 1 << 20];
    assert_eq!(show(&resp::call(con, &[&b"SET"[..], b"big", &big])), "+OK");
    assert_eq!(resp::call(con, &[&b"GET"[..], b"big"]), Value::BulkString(big));
}

#[test]
fn t10_every_command_in_resp2() {
    let cluster = single();
    let mut con = cluster.client(1);
    run_script(&mut con, "RESP2");
    binary_safe(&mut con);
}

#[test]
fn t11_every_command_in_resp3() {
    let cluster = single();
    let mut con = cluster.client_resp3(1);
    run_script(&mut con, "RESP3");
    binary_safe(&mut con);
    // RESP3's own null, not RESP2's null bulk, for a missing key.
    let mut raw = cluster.raw(1);
    assert!(raw.request_text(b"HELLO 3\r\n").starts_with('%'), "HELLO 3 answers a map");
    assert_eq!(raw.request_text(b"*2\r\n$3\r\nGET\r\n$7\r\nmissing\r\n"), "_\r\n");
    assert_eq!(raw.request_text(b"*3\r\n$4\r\nMGET\r\n$1\r\nk\r\n$7\r\nmissing\r\n"), "*2\r\n$1\r\nw\r\n_\r\n");
}

#[test]
fn t12_ten_thousand_sets_then_gets_in_one_pipeline() {
    let cluster = single();
    let addr = cluster.node(1).redis_addr;
    let mut con = resp::connect_with_timeout(addr, redis::ProtocolVersion::RESP2, true, Duration::from_secs(120))
        .expect("connect");
    const N: usize = 10_000;
    let mut commands = Vec::with_capacity(2 * N);
    for i in 0..N {
        commands.push(resp::command(&["SET".to_owned(), format!("p:{i}"), format!("value-{i}")]));
    }
    for i in 0..N {
        commands.push(resp::command(&["GET".to_owned(), format!("p:{i}")]));
    }
    let replies = resp::pipeline(&mut con, &commands).expect("pipeline");
    assert_eq!(replies.len(), 2 * N);
    for (i, reply) in replies[..N].iter().enumerate() {
        assert_eq!(show(reply), "+OK", "SET p:{i}");
    }
    for (i, reply) in replies[N..].iter().enumerate() {
        assert_eq!(show(reply), format!("$value-{i}"), "GET p:{i} after its SET in the same pipeline");
    }
    assert_eq!(call_show(&mut con, &["DBSIZE"]), format!(":{N}"));
}

#[test]
fn t13_inline_commands() {
    let cluster = single();
    let mut raw = cluster.raw(1);
    assert_eq!(raw.request_text(b"PING\r\n"), "+PONG\r\n");
    assert_eq!(raw.request_text(b"SET a \"b c\"\r\n"), "+OK\r\n");
    assert_eq!(raw.request_text(b"GET a\r\n"), "$3\r\nb c\r\n");
    assert_eq!(raw.request_text(b"EXISTS a  nope\r\n"), ":1\r\n", "runs of spaces separate arguments");
    assert_eq!(raw.request_text(b"GET\r\n"), "-ERR wrong number of arguments for 'get' command\r\n");
    // Inline and multibulk mix on one connection.
    assert_eq!(raw.request_text(b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n"), "$3\r\nb c\r\n");
    assert_eq!(raw.request_text(b"PING\r\n"), "+PONG\r\n");
}

#[test]
fn t14_redis_cli_commands() {
    let cluster = single();
    let port = cluster.node(1).redis_addr.port().to_string();
    let run = |args: &[&str]| {
        let mut all = vec!["-h", "127.0.0.1", "-p", &port];
        all.extend_from_slice(args);
        let output = redis_cli(&all, None);
        assert!(output.status.success(), "redis-cli {args:?}: {output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert_eq!(run(&["PING"]), "PONG\n");
    assert_eq!(run(&["SET", "cli", "hello world"]), "OK\n");
    assert_eq!(run(&["GET", "cli"]), "hello world\n");
    assert_eq!(run(&["INCR", "cli-n"]), "1\n");
    assert_eq!(run(&["GET", "nope"]), "\n", "redis-cli prints nil as an empty line when not on a tty");
}

#[test]
fn t15_redis_cli_interactive() {
    let cluster = single();
    let port = cluster.node(1).redis_addr.port().to_string();
    let output = redis_cli(
        &["-h", "127.0.0.1", "-p", &port],
        Some("PING\nSET ik \"i v\"\nGET ik\nINCR ic\nDBSIZE\nECHO done\n"),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["PONG", "OK", "i v", "1", "2", "done"], "stderr: {stderr}");
    for text in [&stdout, &stderr] {
        assert!(!text.contains("ERR") && !text.to_lowercase().contains("error"), "{stdout}\n{stderr}");
    }
}

#[test]
fn t16_redis_benchmark() {
    let cluster = single();
    let port = cluster.node(1).redis_addr.port().to_string();
    let output = redis_benchmark(&["-h", "127.0.0.1", "-p", &port, "-t", "set,get,ping", "-n", "20000", "-q"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "redis-benchmark: {output:?}");
    assert!(!stdout.contains("Error") && !stderr.contains("Error"), "{stdout}\n{stderr}");
    for test in ["SET", "GET", "PING"] {
        assert!(stdout.contains(test), "{test} was run: {stdout}");
    }
    // The node still serves, and the benchmark's writes are there.
    assert_eq!(call_show(&mut cluster.client(1), &["EXISTS", "key:__rand_int__"]), ":1");
}

#[test]
fn t17_client_compatibility_commands() {
    let cluster = single();
    let mut con = cluster.client(1);

    // HELLO answers the server's description: a map in RESP3, a flat array in RESP2.
    let hello3 = resp::call(&mut cluster.client_resp3(1), &["HELLO", "3"]);
    let Value::Map(pairs) = &hello3 else { panic!("HELLO 3: {}", show(&hello3)) };
    let field = |name: &str| pairs.iter().find(|(k, _)| text(k).as_deref() == Some(name)).map(|(_, v)| show(v));
    assert!(field("server").is_some_and(|v| v.len() > 1), "{}", show(&hello3));
    assert!(field("version").is_some_and(|v| v.len() > 1), "{}", show(&hello3));
    assert_eq!(field("proto").as_deref(), Some(":3"), "{}", show(&hello3));
    let hello2 = resp::call(&mut con, &["HELLO", "2"]);
    let Value::Array(items) = &hello2 else { panic!("HELLO 2: {}", show(&hello2)) };
    let proto = items.iter().position(|v| text(v).as_deref() == Some("proto")).expect("proto in HELLO 2");
    assert_eq!(show(&items[proto + 1]), ":2");

    assert_eq!(call_show(&mut con, &["PING"]), "+PONG");
    assert_eq!(call_show(&mut con, &["PING", "hi"]), "$hi");
    assert_eq!(call_show(&mut con, &["ECHO", "hello"]), "$hello");
    assert_eq!(call_show(&mut con, &["SELECT", "0"]), "+OK");
    assert_eq!(call_show(&mut con, &["SELECT", "1"]), "-ERR DB index is out of range");
    assert_eq!(call_show(&mut con, &["CLIENT", "SETNAME", "tester"]), "+OK");
    assert_eq!(call_show(&mut con, &["CLIENT", "GETNAME"]), "$tester");
    assert!(matches!(resp::call(&mut con, &["CLIENT", "ID"]), Value::Int(id) if id > 0));
    assert_eq!(call_show(&mut con, &["CLIENT", "SETINFO", "LIB-NAME", "redraft-tests"]), "+OK");
    assert_eq!(call_show(&mut con, &["CLIENT", "SETINFO", "LIB-VER", "1.0"]), "+OK");

    let info = text(&resp::call(&mut con, &["INFO", "SERVER"])).expect("INFO SERVER is a string");
    assert!(info.contains("redis_version:"), "{info}");
    let info = text(&resp::call(&mut con, &["INFO"])).expect("INFO is a string");
    assert!(info.contains("redis_version:"), "{info}");

    let save = resp::call(&mut con, &["CONFIG", "GET", "save"]);
    let Value::Array(pair) = &save else { panic!("CONFIG GET save: {}", show(&save)) };
    assert_eq!(pair.len(), 2, "{}", show(&save));
    assert_eq!(text(&pair[0]).as_deref(), Some("save"));

    assert!(matches!(resp::call(&mut con, &["COMMAND", "COUNT"]), Value::Int(n) if n > 0));
    assert!(matches!(resp::call(&mut con, &["COMMAND"]), Value::Array(c) if !c.is_empty()));
    let docs = resp::call(&mut con, &["COMMAND", "DOCS"]);
    assert!(matches!(docs, Value::Array(_) | Value::Map(_)), "COMMAND DOCS: {}", show(&docs));
    let docs = show(&resp::call(&mut con, &["COMMAND", "DOCS", "hset", "expire", "multi"]));
    for expected in [
        "Creates or modifies the value of a field in a hash.",
        "Sets the expiration time of a key in seconds.",
        "Starts a transaction.",
    ] {
        assert!(docs.contains(expected), "COMMAND DOCS: {docs}");
    }

    assert_eq!(call_show(&mut con, &["READONLY"]), "+OK");
    assert_eq!(call_show(&mut con, &["READWRITE"]), "+OK");
    assert_eq!(call_show(&mut con, &["SET", "still", "works"]), "+OK");

    let mut raw = cluster.raw(1);
    assert_eq!(raw.request_text(b"QUIT\r\n"), "+OK\r\n");
    raw.expect_closed();
}

#[test]
fn t18_cluster_commands_on_one_node() {
    let cluster = single();
    let node = cluster.node(1);
    assert_eq!(show(&cluster.call(1, &["LEADER"])), format!("*[:1, ${}]", node.redis_addr));
    assert_eq!(
        show(&cluster.call(1, &["NODES"])),
        format!("*[*[:1, ${}, ${}, $voter, :1]]", node.raft_addr, node.redis_addr)
    );
    let info = cluster.info(1).expect("INFO raft");
    assert_eq!(info["raft_node_id"], "1");
    assert_eq!(info["raft_role"], "leader");
    assert_eq!(info["raft_leader_id"], "1");
    for field in
        ["raft_term", "raft_last_log_index", "raft_last_applied_index", "raft_snapshot_index", "raft_purged_index"]
    {
        assert!(info.get(field).is_some_and(|v| v.is_empty() || v.parse::<u64>().is_ok()), "{field} in {info:?}");
    }

    // The digest is hex, stable while nothing is written, and changes with a write.
    let empty = cluster.digest(1).expect("digest");
    assert!(!empty.is_empty() && empty.chars().all(|c| c.is_ascii_hexdigit()), "{empty}");
    assert_eq!(cluster.digest(1).expect("digest"), empty);
    assert_eq!(show(&cluster.call(1, &["SET", "d", "1"])), "+OK");
    let written = cluster.digest(1).expect("digest");
    assert_ne!(written, empty);

    // SNAPSHOT answers the snapshot's last log index, which INFO then reports.
    let applied = cluster.info_number(1, "raft_last_applied_index").expect("applied");
    let Value::Int(index) = cluster.call(1, &["SNAPSHOT"]) else { panic!("SNAPSHOT is an integer") };
    assert!(index as u64 >= applied && applied > 0, "snapshot at {index}, applied {applied}");
    cluster.wait_until("INFO raft to report the snapshot", WAIT_DEADLINE, || {
        (cluster.info_number(1, "raft_snapshot_index").ok()? >= index as u64).then_some(())
    });
    assert_eq!(cluster.digest(1).expect("digest"), written);
}

#[test]
fn t19_a_node_outside_any_cluster_answers_ping_and_nocluster() {
    let mut cluster = TestCluster::new(REDRAFT);
    cluster.start(1, NodeOptions::default());
    let mut con = cluster.client(1);
    assert_eq!(call_show(&mut con, &["PING"]), "+PONG");
    assert_eq!(call_show(&mut con, &["SET", "k", "v"]), "-NOCLUSTER No Raft Cluster");
    assert_eq!(call_show(&mut con, &["INCR", "n"]), "-NOCLUSTER No Raft Cluster");

    cluster.bootstrap(1);
    assert_eq!(cluster.leader(WAIT_DEADLINE), 1);
    assert_eq!(call_show(&mut con, &["SET", "k", "v"]), "+OK", "the same connection works once bootstrapped");
    assert_eq!(call_show(&mut con, &["GET", "k"]), "$v");

    // Restarted, it is still the one-node cluster it made itself, with its data.
    cluster.restart(1);
    assert_eq!(cluster.leader(WAIT_DEADLINE), 1);
    assert_eq!(call_show(&mut cluster.client(1), &["GET", "k"]), "$v");
}

/// `snapshot.log_bytes_since_last`: a log that grows by bytes, not by entry count, is snapshotted
/// and purged all the same (far fewer entries than `logs_since_last` here), and the data stays.
#[test]
fn t20_a_log_grown_past_its_byte_bound_is_snapshotted() {
    let mut cluster = TestCluster::new(REDRAFT);
    let extra_yaml = "snapshot: {log_bytes_since_last: 65536, logs_kept_after: 0}".to_owned();
    cluster.start(1, NodeOptions { bootstrap: true, extra_yaml, ..NodeOptions::default() });
    assert_eq!(cluster.leader(WAIT_DEADLINE), 1);
    let value = "x".repeat(4096);
    let mut con = cluster.client(1);
    // 40 entries of 4 KiB: 160 KiB of log, far below the default 20,000 entries.
    for i in 0..40 {
        assert_eq!(call_show(&mut con, &["SET", &format!("k{i}"), &value]), "+OK");
    }
    let snapshot = cluster.wait_for("a snapshot taken by log bytes", WAIT_DEADLINE, || {
        match cluster.info_number(1, "raft_snapshot_index")? {
            0 => Err("no snapshot yet".to_owned()),
            index => Ok(index),
        }
    });
    assert!(snapshot > 1, "snapshot at {snapshot}");
    cluster.wait_for("the log purged up to the snapshot", WAIT_DEADLINE, || {
        match cluster.info_number(1, "raft_purged_index")? {
            0 => Err("nothing purged yet".to_owned()),
            index => Ok(index),
        }
    });
    assert_eq!(call_show(&mut con, &["STRLEN", "k39"]), ":4096");
    assert_eq!(call_show(&mut con, &["DBSIZE"]), ":40");
}
