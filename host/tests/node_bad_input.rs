//! Bad input of every kind against real node processes: malformed RESP and oversized bulks
//! (Redis's protocol errors, then the connection closes), wrong arity and unknown commands (the
//! connection stays open), garbage on the Raft port, and configs or modules a node must refuse to
//! start with. After each, the running node still answers and its data is intact.

use redraft_tests::cluster::WAIT_DEADLINE;
use redraft_tests::resp::{RawConn, call_show};
use redraft_tests::{NodeOptions, TestCluster};
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

const REDRAFT: &str = env!("CARGO_BIN_EXE_redraft");

/// How long a node given a bad config or module may take to exit.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(30);

/// A one-node cluster holding `canary = alive`.
fn single(extra_yaml: &str) -> TestCluster {
    let mut cluster = TestCluster::new(REDRAFT);
    cluster.start(1, NodeOptions { bootstrap: true, extra_yaml: extra_yaml.into(), ..NodeOptions::default() });
    assert_eq!(cluster.leader(WAIT_DEADLINE), 1);
    assert_eq!(call_show(&mut cluster.client(1), &["SET", "canary", "alive"]), "+OK");
    cluster
}

/// The node answers on a new connection, still has its data and still commits writes.
fn assert_intact(cluster: &TestCluster) {
    let mut con = cluster.client(1);
    assert_eq!(call_show(&mut con, &["PING"]), "+PONG");
    assert_eq!(call_show(&mut con, &["GET", "canary"]), "$alive");
    assert_eq!(call_show(&mut con, &["INCR", "writes-after-bad-input"]).chars().next(), Some(':'));
    assert!(cluster.node(1).is_running(), "{}", cluster.statuses());
}

/// Sends `request`, expects exactly `reply`, then the server closing the connection.
fn expect_protocol_error(cluster: &TestCluster, request: &[u8], reply: &str) {
    let mut raw = cluster.raw(1);
    assert_eq!(raw.request_text(request), reply, "reply to {:?}", String::from_utf8_lossy(request));
    raw.expect_closed();
}

/// Deterministic pseudo-random bytes (xorshift64*).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

#[test]
fn t10_malformed_multibulk_headers_are_protocol_errors() {
    let cluster = single("");
    expect_protocol_error(&cluster, b"*99999999999\r\n", "-ERR Protocol error: invalid multibulk length\r\n");
    expect_protocol_error(&cluster, b"*1\r\n+PING\r\n", "-ERR Protocol error: expected '$', got '+'\r\n");
    expect_protocol_error(&cluster, b"*1\r\n$-5\r\n", "-ERR Protocol error: invalid bulk length\r\n");
    expect_protocol_error(&cluster, b"*2\r\n$3\r\nGET\r\n$abc\r\n", "-ERR Protocol error: invalid bulk length\r\n");
    expect_protocol_error(&cluster, b"*x\r\n", "-ERR Protocol error: invalid multibulk length\r\n");
    // A reply already sent stays valid: the error comes after the good command's reply.
    let mut raw = cluster.raw(1);
    raw.send(b"*1\r\n$4\r\nPING\r\n*1\r\n+PING\r\n").expect("send");
    assert_eq!(String::from_utf8_lossy(&raw.read_reply().expect("PONG")), "+PONG\r\n");
    assert_eq!(
        String::from_utf8_lossy(&raw.read_reply().expect("error")),
        "-ERR Protocol error: expected '$', got '+'\r\n"
    );
    raw.expect_closed();
    // A bare `$-5` line is an inline command for Redis (an unknown one): an error, not a crash.
    let mut raw = cluster.raw(1);
    let reply = raw.request_text(b"$-5\r\n");
    assert!(reply.starts_with("-ERR"), "{reply}");
    assert_intact(&cluster);
}

#[test]
fn t11_unbalanced_quotes_in_an_inline_command() {
    let cluster = single("");
    expect_protocol_error(&cluster, b"SET a \"b c\r\n", "-ERR Protocol error: unbalanced quotes in request\r\n");
    expect_protocol_error(&cluster, b"SET a 'b c\r\n", "-ERR Protocol error: unbalanced quotes in request\r\n");
    assert_eq!(call_show(&mut cluster.client(1), &["GET", "a"]), "(nil)", "nothing was written");
    assert_intact(&cluster);
}

#[test]
fn t12_a_bulk_over_the_configured_cap_is_refused() {
    let cluster = single("limits: {bulk_bytes_max: 1024}");
    // At the cap: accepted.
    let value = "x".repeat(1024);
    assert_eq!(call_show(&mut cluster.client(1), &["SET", "big", &value]), "+OK");
    assert_eq!(call_show(&mut cluster.client(1), &["STRLEN", "big"]), ":1024");
    // One byte over: refused at the header, before the body arrives.
    expect_protocol_error(
        &cluster,
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1025\r\n",
        "-ERR Protocol error: invalid bulk length\r\n",
    );
    // Far over, body and all.
    let mut request = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n".to_vec();
    request.extend(std::iter::repeat_n(b'y', 100_000));
    request.extend_from_slice(b"\r\n");
    let mut raw = cluster.raw(1);
    let _ = raw.send(&request); // the node may close before it has read everything
    // Closing with unread input resets the connection, which may overtake the error reply.
    match raw.read_reply() {
        Ok(reply) => assert_eq!(String::from_utf8_lossy(&reply), "-ERR Protocol error: invalid bulk length\r\n"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    assert_eq!(call_show(&mut cluster.client(1), &["GET", "k"]), "(nil)", "nothing was written");
    assert_intact(&cluster);
}

#[test]
fn t13_wrong_arity_and_unknown_commands_keep_the_connection_open() {
    let cluster = single("");
    let mut raw = cluster.raw(1);
    assert_eq!(raw.request_text(b"*1\r\n$3\r\nGET\r\n"), "-ERR wrong number of arguments for 'get' command\r\n");
    assert_eq!(
        raw.request_text(b"*2\r\n$3\r\nFOO\r\n$3\r\nbar\r\n"),
        "-ERR unknown command 'FOO', with args beginning with: 'bar' \r\n"
    );
    assert_eq!(raw.request_text(b"GET\r\n"), "-ERR wrong number of arguments for 'get' command\r\n");
    assert_eq!(raw.request_text(b"FOO\r\n"), "-ERR unknown command 'FOO', with args beginning with: \r\n");
    assert_eq!(raw.request_text(b"*1\r\n$4\r\nPING\r\n"), "+PONG\r\n", "the same connection still works");
    assert_eq!(raw.request_text(b"*2\r\n$3\r\nGET\r\n$6\r\ncanary\r\n"), "$5\r\nalive\r\n");
    // The same through the redis crate.
    let mut con = cluster.client(1);
    assert_eq!(call_show(&mut con, &["SET"]), "-ERR wrong number of arguments for 'set' command");
    assert_eq!(
        call_show(&mut con, &["NOSUCHCOMMAND"]),
        "-ERR unknown command 'NOSUCHCOMMAND', with args beginning with: "
    );
    assert_eq!(call_show(&mut con, &["GET", "canary"]), "$alive");
    assert_intact(&cluster);
}

#[test]
fn t14_garbage_on_the_raft_port_leaves_the_node_serving() {
    let cluster = single("");
    let raft = cluster.node(1).raft_addr;
    let send = |bytes: &[u8]| -> TcpStream {
        let mut stream = TcpStream::connect_timeout(&raft, Duration::from_secs(10)).expect("connect to the Raft port");
        let _ = stream.write_all(bytes); // the node may hang up at once
        stream
    };
    drop(send(b""));
    drop(send(&noise(1, 64 * 1024)));
    drop(send(&[0xff; 64]));
    drop(send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    drop(send(b"*1\r\n$4\r\nPING\r\n"));
    for seed in 2..10 {
        drop(send(&noise(seed, 1 + seed as usize * 97)));
    }
    // One bad peer left hanging mid-frame must not stall the node either.
    let _hanging = send(&[0, 0, 0, 100, 1, 2, 3]);
    assert_intact(&cluster);
    assert_eq!(cluster.leader(WAIT_DEADLINE), 1);
}

#[test]
fn t15_bad_configs_are_refused_naming_the_key_and_the_file() {
    let cluster = single("");
    let cases: &[(&str, &str)] = &[
        ("bogus_key: 1", "bogus_key"),
        ("raft: {heartbeat_ms: 5}", "heartbeat_ms"),
        ("limits: {no_such_limit: 5}", "no_such_limit"),
        ("store_backend: rocksdb", "store_backend"),
        ("follower_writes: sideways", "follower_writes"),
        ("raft: {heartbeat_interval_ms: fast}", "heartbeat_interval_ms"),
        ("limits: {bulk_bytes_max: -1}", "bulk_bytes_max"),
        ("bootstrap: maybe", "bootstrap"),
    ];
    for (extra, key) in cases {
        let yaml = cluster.fresh_config(9, &NodeOptions { extra_yaml: (*extra).into(), ..NodeOptions::default() });
        let report = cluster.run_expect_exit(&yaml, REFUSAL_DEADLINE);
        assert!(!report.status.success(), "{extra}: {report:?}");
        assert!(report.output.contains(key), "{extra}: the message names `{key}`:\n{}", report.output);
        let file = report.config_path.display().to_string();
        assert!(report.output.contains(&file), "{extra}: the message names {file}:\n{}", report.output);
        assert_intact(&cluster);
    }

    // Not YAML at all; an id of 0.
    let valid = cluster.fresh_config(9, &NodeOptions::default());
    assert!(valid.contains("id: 9\n"), "{valid}");
    for (what, yaml) in
        [("broken YAML", "id: [1\nraft_addr: \"\n".to_owned()), ("id 0", valid.replace("id: 9\n", "id: 0\n"))]
    {
        let report = cluster.run_expect_exit(&yaml, REFUSAL_DEADLINE);
        assert!(!report.status.success(), "{what}: {report:?}");
        let file = report.config_path.display().to_string();
        assert!(report.output.contains(&file), "{what}: the message names {file}:\n{}", report.output);
        assert_intact(&cluster);
    }
}

#[test]
fn t16_missing_or_corrupt_modules_are_refused() {
    let cluster = single("");
    let dir = cluster.dir().join("modules");
    std::fs::create_dir_all(&dir).expect("modules dir");
    let corrupt = dir.join("corrupt.wasm");
    std::fs::write(&corrupt, noise(42, 4096)).expect("write corrupt.wasm");
    let truncated = dir.join("truncated.wasm");
    let real = redraft_tests::fsm_kv_wasm();
    std::fs::write(&truncated, &real[..real.len() / 2]).expect("write truncated.wasm");
    let empty = dir.join("empty.wasm");
    std::fs::write(&empty, b"").expect("write empty.wasm");

    for module in [dir.join("missing.wasm"), corrupt, truncated, empty] {
        let yaml = cluster.fresh_config(9, &NodeOptions { fsm_module: module.clone(), ..NodeOptions::default() });
        let report = cluster.run_expect_exit(&yaml, REFUSAL_DEADLINE);
        assert!(!report.status.success(), "{}: {report:?}", module.display());
        let name = module.file_name().and_then(|n| n.to_str()).expect("file name");
        assert!(report.output.contains(name), "the message names the module {name}:\n{}", report.output);
        assert_intact(&cluster);
    }
}

#[test]
fn t17_a_refused_start_leaves_no_listener_behind() {
    let cluster = single("");
    let yaml = cluster.fresh_config(9, &NodeOptions { extra_yaml: "bogus_key: 1".into(), ..NodeOptions::default() });
    let redis_addr = yaml
        .lines()
        .find_map(|l| l.strip_prefix("redis_addr: "))
        .map(|a| a.trim_matches(['"', '\'']).parse().expect("redis_addr"))
        .expect("redis_addr in the config");
    let report = cluster.run_expect_exit(&yaml, REFUSAL_DEADLINE);
    assert!(!report.status.success());
    assert!(RawConn::connect(redis_addr).is_err(), "nothing listens on {redis_addr} after the refusal");
    assert_intact(&cluster);
}

/// A limit that is part of the replicated contract, set to another value than the cluster's.
const OTHER_FUEL: &str = "limits:\n  fuel_per_apply: 1000000\n";

#[test]
fn t18_a_node_with_other_limits_is_refused_by_join_and_at_restart() {
    let mut cluster = single("");

    // JOIN asks the new node for its contract first and refuses other limits, naming them. (Another
    // module is fine: a new node runs the cluster's, see node_modules.rs.)
    cluster.start(2, NodeOptions { extra_yaml: OTHER_FUEL.into(), ..NodeOptions::default() });
    let node2 = cluster.node(2);
    let reply =
        call_show(&mut cluster.client(1), &["JOIN", "2", &node2.raft_addr.to_string(), &node2.redis_addr.to_string()]);
    assert!(
        reply.starts_with("-ERR node 2 runs another ABI, engine or limits") && reply.contains("fuel_per_apply"),
        "{reply}"
    );
    assert!(cluster.node(2).is_running(), "the refused node is untouched: {}", cluster.statuses());
    let nodes = call_show(&mut cluster.client(1), &["NODES"]);
    assert!(!nodes.contains(&node2.raft_addr.to_string()), "node 2 is not a member: {nodes}");
    assert_intact(&cluster);

    // Node 1 restarted with other limits refuses to apply to the state it holds, naming both.
    cluster.stop(1);
    let config = std::fs::read_to_string(&cluster.node(1).config_path).expect("config");
    assert!(!config.contains("\nlimits:"), "the harness's config sets no limits:\n{config}");
    std::fs::write(&cluster.node(1).config_path, format!("{config}\n{OTHER_FUEL}")).expect("write");
    let report = cluster.restart_expect_exit(1, REFUSAL_DEADLINE);
    assert!(!report.status.success(), "{report:?}");
    assert!(
        report.output.contains("another state-machine contract") && report.output.contains("fuel_per_apply"),
        "{}",
        report.output
    );
    std::fs::write(&cluster.node(1).config_path, config).expect("restore config");
    cluster.restart(1);
    assert_eq!(cluster.leader(WAIT_DEADLINE), 1);
    assert_intact(&cluster);
}

#[test]
fn t19_join_without_a_redis_address_checks_the_contract_too() {
    // JOIN probes the new node over its Raft address, so the check needs no Redis address; the
    // node is refused before it could stop at the cluster's module entry as a voter. (A replica
    // that gets there anyway stops, naming the difference: module_switch.rs.)
    let mut cluster = single("");
    cluster.start(2, NodeOptions { extra_yaml: OTHER_FUEL.into(), ..NodeOptions::default() });
    let raft_addr = cluster.node(2).raft_addr.to_string();
    let reply = call_show(&mut cluster.client(1), &["JOIN", "2", &raft_addr]);
    assert!(
        reply.starts_with("-ERR node 2 runs another ABI, engine or limits") && reply.contains("fuel_per_apply"),
        "{reply}"
    );
    assert!(cluster.node(2).is_running(), "the refused node is untouched: {}", cluster.statuses());
    assert_intact(&cluster);
}

/// Requests whose cost grows with what the client sends, at their worst, two at a time.
fn worst_cases() -> Vec<Vec<Vec<u8>>> {
    let stars = |n: usize| format!("{}x", "*".repeat(n)).into_bytes();
    let many = |head: &[&str], n: usize, arg: &[u8]| {
        let mut args: Vec<Vec<u8>> = head.iter().map(|a| a.as_bytes().to_vec()).collect();
        args.extend(std::iter::repeat_n(arg.to_vec(), n));
        args
    };
    vec![
        // The pattern that once stalled a node for more than ten seconds.
        many(&["CONFIG", "GET"], 1, &stars(40)),
        // The longest pattern allowed, as many times as allowed.
        many(&["CONFIG", "GET"], 64, &stars(511)),
        // Past the caps: refused at once.
        many(&["CONFIG", "GET"], 1, &stars(100_000)),
        many(&["CONFIG", "GET"], 100_000, b"*"),
        // Long lists of names and sections.
        many(&["COMMAND", "INFO"], 200_000, b"get"),
        many(&["INFO"], 200_000, b"server"),
        many(&["MGET"], 200_000, b"k"),
        many(&["CLIENT", "SETNAME"], 1, &vec![b'n'; 1 << 20]),
    ]
}

#[test]
fn t20_worst_case_client_requests_never_keep_a_node_from_answering_ping() {
    let cluster = single("");
    for args in worst_cases() {
        assert_ping_answered_beside(cluster.node(1).redis_addr, &args);
    }
    assert_intact(&cluster);
}

#[test]
fn t21_worst_case_forwarded_writes_never_keep_a_follower_from_answering_ping() {
    // With the harness's 50 ms heartbeat, one AppendEntries of the 16 MiB entries (two of them may
    // share an entry) takes longer than openraft gives it on a debug build. It used to be cut off
    // mid-frame again and again while the follower campaigned with a shorter log, a livelock; the
    // send now finishes and the retry takes its answer (DESIGN, "The peer transport").
    let cluster = TestCluster::form(REDRAFT, 2, NodeOptions::default());
    let leader = cluster.leader(WAIT_DEADLINE);
    let follower = cluster.ids().into_iter().find(|&id| id != leader).expect("a follower");
    let pairs = |n: usize| {
        let mut args = vec![b"MSET".to_vec()];
        for i in 0..n {
            args.push(format!("k{i}").into_bytes());
            args.push(b"v".to_vec());
        }
        args
    };
    // The follower re-encodes these for its upstream to the leader and relays the replies.
    for args in [pairs(20_000), vec![b"SET".to_vec(), b"big".to_vec(), vec![b'x'; 16 << 20]]] {
        assert_ping_answered_beside(cluster.node(follower).redis_addr, &args);
    }
    // The big entries can cost a heartbeat or two on a debug build (an election may follow):
    // the follower serves writes again within the deadline.
    cluster.wait_for("a forwarded SET after the heavy ones", WAIT_DEADLINE, || {
        match call_show(&mut cluster.client(follower), &["SET", "after", "forwarding"]).as_str() {
            "+OK" => Ok(()),
            other => Err(other.to_owned()),
        }
    });
}

#[test]
fn t22_an_entry_that_takes_many_heartbeats_to_send_still_reaches_the_follower() {
    // openraft 0.9 gives each AppendEntries one heartbeat interval, 10 ms here; a 16 MiB entry
    // (sent, decoded, written and fsynced by the follower) takes far longer on a debug build. Cut
    // off at the deadline, the send never completed and the write never committed (a livelock);
    // now the send finishes and openraft's retry takes its answer.
    let raft = "raft: {heartbeat_interval_ms: 10, election_timeout_min_ms: 3000, election_timeout_max_ms: 6000}";
    let cluster = TestCluster::form(REDRAFT, 2, NodeOptions { extra_yaml: raft.to_owned(), ..NodeOptions::default() });
    let leader = cluster.leader(WAIT_DEADLINE);
    let value = vec![b'x'; 16 << 20];
    let mut request = format!("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n${}\r\n", value.len()).into_bytes();
    request.extend_from_slice(&value);
    request.extend_from_slice(b"\r\n");
    let mut con = RawConn::connect(cluster.node(leader).redis_addr).expect("connect");
    con.stream().set_read_timeout(Some(HEAVY_REPLY_DEADLINE)).expect("timeout");
    con.send(&request).expect("send");
    let reply = con.read_reply().expect("a reply to the 16 MiB SET");
    assert_eq!(String::from_utf8_lossy(&reply), "+OK\r\n", "the SET committed, so the follower has the entry");
    let (_, digest) = cluster.wait_converged();
    for id in cluster.ids() {
        assert_eq!(cluster.digest(id).expect("digest"), digest, "node {id}");
        assert_eq!(call_show(&mut cluster.client(id), &["STRLEN", "big"]), format!(":{}", 16 << 20), "node {id}");
    }
}

/// Sends `args` from two connections at once and asserts that `PING`s sent meanwhile on a
/// third are answered within [`PING_DEADLINE`] (a stalled worker would hold them up for as long
/// as the request runs), and that both heavy requests get a reply.
fn assert_ping_answered_beside(addr: std::net::SocketAddr, args: &[Vec<u8>]) {
    let what = format!(
        "{} {} ({} args)",
        String::from_utf8_lossy(&args[0]),
        String::from_utf8_lossy(&args[1][..args[1].len().min(16)]),
        args.len()
    );
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        request.extend_from_slice(arg);
        request.extend_from_slice(b"\r\n");
    }
    let request = std::sync::Arc::new(request);
    let heavy: Vec<_> = (0..2)
        .map(|_| {
            let request = request.clone();
            std::thread::spawn(move || {
                let mut con = RawConn::connect(addr).expect("connect");
                // The heavy request may take its time; only the PINGs have a deadline.
                con.stream().set_read_timeout(Some(HEAVY_REPLY_DEADLINE)).expect("timeout");
                con.send(&request).expect("send");
                con.read_reply().map(|r| r.len())
            })
        })
        .collect();
    let mut ping = TcpStream::connect(addr).expect("connect");
    ping.set_read_timeout(Some(PING_DEADLINE)).expect("timeout");
    // PINGs one after another for as long as the heavy requests run (at least five).
    let mut pings = 0;
    while pings < 5 || heavy.iter().any(|h| !h.is_finished()) {
        let sent = std::time::Instant::now();
        ping.write_all(b"PING\r\n").expect("send PING");
        let mut reply = [0u8; 7];
        std::io::Read::read_exact(&mut ping, &mut reply).unwrap_or_else(|e| {
            panic!("PING {pings} not answered within {PING_DEADLINE:?} during {what} ({:?}): {e}", sent.elapsed())
        });
        assert_eq!(&reply, b"+PONG\r\n", "during {what}");
        pings += 1;
    }
    for thread in heavy {
        let reply = thread.join().expect("heavy client");
        assert!(reply.as_ref().is_ok_and(|len| *len > 0), "{what} got a reply: {reply:?}");
    }
}

/// How long a worst-case request may take to be answered.
const HEAVY_REPLY_DEADLINE: Duration = Duration::from_secs(60);
/// How long a `PING` may wait while worst-case requests run beside it.
const PING_DEADLINE: Duration = Duration::from_secs(2);
