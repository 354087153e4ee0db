//! The harness's own tests. What needs a running node uses a stand-in: a shell script that takes
//! `--config <file>`, reads `redis_addr` from it and execs `redis-server` there (installed by
//! `make test` as the tests' reply oracle), or one that fails or hangs on purpose.

use super::*;
use std::os::unix::fs::PermissionsExt;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// A script in its own temp dir, made executable; the dir lives as long as the returned guard.
fn script(body: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new().prefix("redraft-fake-node-").tempdir().expect("temp dir");
    let path = dir.path().join("fake-redraft");
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
    (dir, path)
}

/// A stand-in node that serves the Redis protocol (redis-server) on the config's `redis_addr`.
fn redis_server_node() -> (tempfile::TempDir, PathBuf) {
    let server = crate::tools::find_on_path("redis-server");
    script(&format!(
        r#"[ "$1" = --config ] || {{ echo "usage: $0 --config FILE" >&2; exit 2; }}
port=$(sed -n 's/^redis_addr: *"\{{0,1\}}127\.0\.0\.1:\([0-9]*\)"\{{0,1\}}$/\1/p' "$2")
echo "fake node: redis-server on port $port" >&2
exec {} --port "$port" --bind 127.0.0.1 --save "" --appendonly no"#,
        server.display()
    ))
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn free_ports_are_distinct_bindable_and_below_the_ephemeral_range() {
    let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
    let distinct: BTreeSet<u16> = ports.iter().copied().collect();
    assert_eq!(distinct.len(), ports.len(), "a port was handed out twice: {ports:?}");
    let (low, high) = port_window();
    for &port in &ports {
        if high > low {
            assert!((low..high).contains(&port), "{port} outside [{low}, {high})");
        }
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap_or_else(|e| panic!("{port} is not free: {e}"));
    }
}

#[test]
fn ports_from_parallel_threads_never_collide() {
    let threads: Vec<_> =
        (0..4).map(|_| std::thread::spawn(|| (0..50).map(|_| free_port()).collect::<Vec<_>>())).collect();
    let mut all = BTreeSet::new();
    for t in threads {
        for port in t.join().expect("thread") {
            assert!(all.insert(port), "{port} handed out twice");
        }
    }
}

#[test]
fn config_has_addresses_paths_and_fast_timings() {
    let options = NodeOptions { bootstrap: true, snapshot_logs_since_last: 500, ..NodeOptions::default() };
    let yaml = render_config(3, loopback(7001), loopback(6001), Path::new("/tmp/x/data"), &options).expect("render");
    let config: Yaml = serde_yaml_ng::from_str(&yaml).expect("parse back");
    assert_eq!(config["id"].as_u64(), Some(3));
    assert_eq!(config["raft_addr"].as_str(), Some("127.0.0.1:7001"));
    assert_eq!(config["redis_addr"].as_str(), Some("127.0.0.1:6001"));
    assert_eq!(config["store_backend"].as_str(), Some("redb"));
    assert_eq!(config["data_dir"].as_str(), Some("/tmp/x/data"));
    assert_eq!(config["fsm_module"].as_str(), Some(crate::FSM_KV_WASM));
    assert_eq!(config["bootstrap"].as_bool(), Some(true));
    assert_eq!(config["follower_writes"].as_str(), Some("forward"));
    assert_eq!(config["raft"]["heartbeat_interval_ms"].as_u64(), Some(50));
    assert_eq!(config["raft"]["election_timeout_min_ms"].as_u64(), Some(300));
    assert_eq!(config["raft"]["election_timeout_max_ms"].as_u64(), Some(600));
    assert_eq!(config["snapshot"]["logs_since_last"].as_u64(), Some(500));
    assert!(config["log_level"].is_string());

    let plain = render_config(1, loopback(1), loopback(2), Path::new("/d"), &NodeOptions::default()).expect("render");
    let plain: Yaml = serde_yaml_ng::from_str(&plain).expect("parse back");
    assert!(plain.get("snapshot").is_none(), "0 leaves the node's default: {plain:?}");
}

#[test]
fn extra_yaml_merges_map_by_map() {
    let options = NodeOptions {
        snapshot_logs_since_last: 100,
        extra_yaml: "snapshot: {chunk_bytes: 4096}\nraft: {heartbeat_interval_ms: 70}\n\
                     limits:\n  bulk_bytes_max: 1024\nbogus_key: 1\nlog_level: null\nstore_backend: memory\n"
            .into(),
        ..NodeOptions::default()
    };
    let yaml = render_config(1, loopback(1), loopback(2), Path::new("/d"), &options).expect("render");
    let config: Yaml = serde_yaml_ng::from_str(&yaml).expect("parse back");
    assert_eq!(config["snapshot"]["logs_since_last"].as_u64(), Some(100), "kept: {yaml}");
    assert_eq!(config["snapshot"]["chunk_bytes"].as_u64(), Some(4096), "added: {yaml}");
    assert_eq!(config["raft"]["heartbeat_interval_ms"].as_u64(), Some(70), "replaced: {yaml}");
    assert_eq!(config["raft"]["election_timeout_min_ms"].as_u64(), Some(300), "kept: {yaml}");
    assert_eq!(config["limits"]["bulk_bytes_max"].as_u64(), Some(1024));
    assert_eq!(config["bogus_key"].as_u64(), Some(1), "unknown keys pass through for refusal tests");
    assert!(config.get("log_level").is_none(), "null removes: {yaml}");
    assert_eq!(config["store_backend"].as_str(), Some("memory"));

    for bad in ["[1, 2]", "a: [", "just text"] {
        let options = NodeOptions { extra_yaml: bad.into(), ..NodeOptions::default() };
        let e = render_config(1, loopback(1), loopback(2), Path::new("/d"), &options).expect_err(bad);
        assert!(e.contains("extra_yaml"), "{bad}: {e}");
    }
}

#[test]
fn wait_for_returns_the_first_success() {
    let mut calls = 0;
    let value = wait_for("the third call", Duration::from_secs(30), || {
        calls += 1;
        if calls == 3 { Ok(calls * 10) } else { Err(format!("call {calls}")) }
    });
    assert_eq!(value, 30);
    let mut calls = 0;
    assert_eq!(
        wait_until("at once", Duration::ZERO, || {
            calls += 1;
            Some("now")
        }),
        "now"
    );
    assert_eq!(calls, 1, "a zero deadline still tries once");
}

#[test]
fn wait_for_times_out_with_what_and_the_last_observation() {
    let start = Instant::now();
    let mut calls = 0;
    let payload = catch_unwind(AssertUnwindSafe(|| {
        wait_for("the moon", Duration::from_millis(300), || -> Result<(), String> {
            calls += 1;
            Err(format!("observation {calls}"))
        })
    }))
    .expect_err("times out");
    let elapsed = start.elapsed();
    let message = panic_text(payload);
    assert!(message.contains("waiting for the moon"), "{message}");
    assert!(message.contains(&format!("\"observation {calls}\"")), "the last observation: {message}");
    assert!(calls > 3, "polled repeatedly: {calls}");
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");

    let payload =
        catch_unwind(|| wait_until("never", Duration::from_millis(50), || None::<()>)).expect_err("times out");
    assert!(panic_text(payload).contains("waiting for never"));
}

#[test]
fn info_and_nodes_replies_parse() {
    let info = parse_info("# Raft\r\nraft_node_id:2\r\nraft_role:follower\r\nraft_leader_id:\r\n\r\nraft_term:7\r\n");
    assert_eq!(info["raft_node_id"], "2");
    assert_eq!(info["raft_role"], "follower");
    assert_eq!(info["raft_leader_id"], "");
    assert_eq!(info["raft_term"], "7");

    let reply = redis::parse_redis_value(
        b"*2\r\n*5\r\n:1\r\n$14\r\n127.0.0.1:7001\r\n$14\r\n127.0.0.1:6001\r\n$5\r\nvoter\r\n:1\r\n\
          *5\r\n:2\r\n$14\r\n127.0.0.1:7002\r\n$14\r\n127.0.0.1:6002\r\n$7\r\nlearner\r\n:0\r\n",
    )
    .expect("parse");
    let members = parse_nodes(&reply).expect("members");
    assert_eq!(
        members,
        [
            Member {
                id: 1,
                raft_addr: "127.0.0.1:7001".into(),
                redis_addr: "127.0.0.1:6001".into(),
                voter: true,
                leader: true
            },
            Member {
                id: 2,
                raft_addr: "127.0.0.1:7002".into(),
                redis_addr: "127.0.0.1:6002".into(),
                voter: false,
                leader: false
            },
        ]
    );
    let bad = redis::parse_redis_value(b"*1\r\n*5\r\n:1\r\n$1\r\na\r\n$1\r\nb\r\n$4\r\nboss\r\n:1\r\n").expect("parse");
    assert!(parse_nodes(&bad).expect_err("bad role").contains("boss"));
    assert!(parse_nodes(&Value::Int(1)).is_err());
}

#[test]
fn a_node_is_started_stopped_killed_and_restarted() {
    let (_dir, fake) = redis_server_node();
    let mut cluster = TestCluster::new(&fake);
    let node = cluster.start(1, NodeOptions::default());
    let (redis_addr, config_path, log_path) = (node.redis_addr, node.config_path.clone(), node.log_path.clone());
    assert!(config_path.starts_with(cluster.dir()), "{}", config_path.display());
    let yaml = fs::read_to_string(&config_path).expect("config");
    assert!(yaml.contains(&format!("redis_addr: {redis_addr}")), "{yaml}");
    assert!(ping(redis_addr));

    let mut con = cluster.client(1);
    assert_eq!(resp::call_show(&mut con, &["SET", "k", "v"]), "+OK");
    assert_eq!(resp::call_show(&mut con, &["GET", "k"]), "$v");
    assert_eq!(resp::show(&cluster.call(1, &["GET", "k"])), "$v");
    assert_eq!(resp::call_show(&mut cluster.client_resp3(1), &["GET", "nope"]), "(nil)");
    assert_eq!(cluster.raw(1).request_text(b"PING\r\n"), "+PONG\r\n");
    assert_eq!(cluster.running(), [1]);

    let status = cluster.kill(1);
    assert!(!status.success(), "SIGKILL: {status}");
    assert!(!cluster.node(1).is_running());
    assert!(cluster.node(1).status().contains("last exit"), "{}", cluster.node(1).status());
    assert!(!ping(redis_addr));
    assert!(cluster.running().is_empty());

    cluster.restart(1);
    assert!(ping(redis_addr), "restarted on the same port");
    assert_eq!(cluster.node(1).redis_addr, redis_addr);
    let status = cluster.stop(1);
    assert!(status.success(), "redis-server exits 0 on SIGTERM: {status}");

    cluster.restart(1);
    cluster.restart(1); // a running node is stopped first
    assert!(ping(redis_addr));
    let log = fs::read_to_string(&log_path).expect("log");
    assert_eq!(log.matches("===== redraft-tests:").count(), 4, "every start is marked: {log}");
    assert!(log.contains("fake node: redis-server on port"), "{log}");
    assert!(cluster.log_tails().contains("fake node: redis-server"));
}

#[test]
fn a_node_exiting_at_startup_is_reported_with_its_status_and_output() {
    let (_dir, fake) = script("echo 'config error: unknown field `bogus` in /x/node.yaml' >&2; exit 3");
    let mut cluster = TestCluster::new(&fake);
    let payload = catch_unwind(AssertUnwindSafe(|| {
        cluster.start(1, NodeOptions::default());
    }))
    .expect_err("the node exits");
    let message = panic_text(payload);
    assert!(message.contains("node 1 exited during startup with exit status: 3"), "{message}");
    assert!(message.contains("unknown field `bogus`"), "{message}");

    let report = cluster.run_expect_exit("id: 1\n", Duration::from_secs(30));
    assert_eq!(report.status.code(), Some(3));
    assert!(report.output.contains("unknown field `bogus`"), "{report:?}");
    assert_eq!(fs::read_to_string(&report.config_path).expect("config"), "id: 1\n");
}

#[test]
fn a_node_that_never_answers_is_killed_at_the_start_deadline() {
    let (_dir, fake) = script(r#"echo $$ > "$(dirname "$2")/pid"; echo hanging >&2; exec sleep 600"#);
    let mut cluster = TestCluster::new(&fake);
    cluster.set_start_deadline(Duration::from_millis(500));
    let payload = catch_unwind(AssertUnwindSafe(|| {
        cluster.start(1, NodeOptions::default());
    }))
    .expect_err("no PONG");
    let message = panic_text(payload);
    assert!(message.contains("did not answer PING"), "{message}");
    assert!(message.contains("hanging"), "its output is shown: {message}");
    let pid: u32 = fs::read_to_string(cluster.dir().join("node1/pid")).expect("pid").trim().parse().expect("pid");
    assert!(!pid_alive(pid), "the hung node {pid} was killed and reaped");

    let payload = catch_unwind(AssertUnwindSafe(|| cluster.run_expect_exit("id: 1\n", Duration::from_millis(300))))
        .expect_err("it does not exit");
    assert!(panic_text(payload).contains("expected to refuse to start"));
}

#[test]
fn dropping_a_cluster_kills_its_nodes_and_a_panic_keeps_its_files() {
    let (_dir, fake) = redis_server_node();
    let cluster = {
        let mut cluster = TestCluster::new(&fake);
        cluster.start(1, NodeOptions::default());
        cluster
    };
    let pid = cluster.node(1).pid().expect("running");
    let dir = cluster.dir().to_path_buf();
    drop(cluster);
    assert!(!pid_alive(pid), "node killed on drop");
    assert!(!dir.exists(), "temp dir removed after a passing test");

    let kept = Mutex::new(None);
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut cluster = TestCluster::new(&fake);
        cluster.start(1, NodeOptions::default());
        *lock(&kept) = Some((cluster.dir().to_path_buf(), cluster.node(1).pid().expect("running")));
        panic!("a failing test");
    }));
    assert!(result.is_err());
    let (dir, pid) = lock(&kept).take().expect("recorded");
    assert!(!pid_alive(pid), "node killed on drop while panicking");
    assert!(dir.join("node1/node.log").is_file(), "files kept for the post-mortem: {}", dir.display());
    fs::remove_dir_all(&dir).expect("clean up");
}
