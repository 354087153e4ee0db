//! The metrics endpoint on real nodes, scraped over HTTP and parsed by Prometheus's own
//! OpenMetrics parser (the official Python client, `tests/clients/scrape.py`): Raft state on
//! every node, per-follower lag on the leader, and request counters and latency histograms that
//! move when clients send commands. `INFO stats`, `commandstats` and `latencystats` agree.

use redraft_tests::cluster::{free_port, loopback};
use redraft_tests::resp::{call_show, show};
use redraft_tests::{NodeOptions, TestCluster};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

const REDRAFT: &str = env!("CARGO_BIN_EXE_redraft");

/// Every sample of `addr`'s endpoint, `name{labels}` → value, as Prometheus's parser reads them.
fn scrape(addr: SocketAddr) -> BTreeMap<String, f64> {
    let clients = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients");
    let python = clients.join(".venv/bin/python");
    assert!(python.exists(), "{} is missing: run `make client-deps`", python.display());
    let out = Command::new(&python)
        .arg(clients.join("scrape.py"))
        .arg(format!("http://{addr}/metrics"))
        .output()
        .expect("run scrape.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "scrape of {addr} failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
        .lines()
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn sample(samples: &BTreeMap<String, f64>, name: &str) -> f64 {
    *samples.get(name).unwrap_or_else(|| panic!("no {name} in {:?}", samples.keys().collect::<Vec<_>>()))
}

#[test]
fn t77_the_metrics_endpoint_reports_raft_state_and_moving_request_counters() {
    let mut cluster = TestCluster::new(REDRAFT);
    let mut metrics = BTreeMap::new();
    for id in 1..=3u64 {
        let addr = loopback(free_port());
        metrics.insert(id, addr);
        cluster.start(id, NodeOptions { extra_yaml: format!("metrics_addr: {addr}\n"), ..NodeOptions::default() });
    }
    cluster.bootstrap(1);
    cluster.wait_members(&[1]);
    cluster.join(2, 1);
    cluster.join(3, 1);
    let leader = cluster.wait_members(&[1, 2, 3]);

    let before = scrape(metrics[&leader]);
    assert_eq!(sample(&before, r#"redraft_raft_role{role="leader"}"#), 1.0);
    assert_eq!(sample(&before, "redraft_raft_leader_id{}"), leader as f64);
    let set_ok = r#"redraft_commands_total{command="set",outcome="ok"}"#;
    let sets_before = before.get(set_ok).copied().unwrap_or(0.0);

    let mut con = cluster.client(leader);
    for i in 0..25 {
        assert_eq!(call_show(&mut con, &["SET", &format!("k{i}"), "v"]), "+OK");
    }
    assert!(call_show(&mut con, &["INCR", "k0"]).starts_with("-ERR"), "INCR of a non-number fails");
    assert!(call_show(&mut con, &["GET"]).starts_with("-ERR wrong number"));

    let after = scrape(metrics[&leader]);
    assert_eq!(sample(&after, set_ok) - sets_before, 25.0, "SETs counted");
    assert_eq!(sample(&after, r#"redraft_commands_total{command="incr",outcome="error"}"#), 1.0);
    assert_eq!(sample(&after, r#"redraft_commands_total{command="get",outcome="rejected"}"#), 1.0);
    assert!(sample(&after, r#"redraft_command_duration_seconds_count{command="set"}"#) >= 25.0);
    assert!(sample(&after, r#"redraft_command_duration_seconds_bucket{command="set",le="+Inf"}"#) >= 25.0);
    assert!(
        sample(&after, "redraft_log_append_seconds_count{}") > sample(&before, "redraft_log_append_seconds_count{}")
    );
    assert!(
        sample(&after, "redraft_commands_proposed_total{}")
            >= sample(&before, "redraft_commands_proposed_total{}") + 25.0
    );
    assert!(sample(&after, "redraft_connected_clients{}") >= 1.0);
    let batches = sample(&after, "redraft_write_batch_commands_count{}")
        - sample(&before, "redraft_write_batch_commands_count{}");
    let batched =
        sample(&after, "redraft_write_batch_commands_sum{}") - sample(&before, "redraft_write_batch_commands_sum{}");
    assert!(batches >= 1.0 && batched >= 25.0, "{batches} entries carried {batched} writes");
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    for follower in &followers {
        let lag = format!(r#"redraft_raft_replication_lag_entries{{follower="{follower}"}}"#);
        assert!(after.contains_key(&lag), "the leader reports {lag}");
    }
    // Every node reports its own state; a follower its role.
    let follower = scrape(metrics[&followers[0]]);
    assert_eq!(sample(&follower, r#"redraft_raft_role{role="follower"}"#), 1.0);
    assert_eq!(sample(&follower, "redraft_raft_leader_id{}"), leader as f64);

    // A snapshot is counted, timed and sized; the commit index covers the writes.
    let reply = show(&cluster.call(leader, &["SNAPSHOT"]));
    assert!(reply.starts_with(':'), "SNAPSHOT: {reply}");
    let snapshotted = scrape(metrics[&leader]);
    assert_eq!(sample(&snapshotted, "redraft_snapshots_built_total{}"), 1.0);
    assert_eq!(sample(&snapshotted, "redraft_snapshot_build_seconds_count{}"), 1.0);
    assert!(sample(&snapshotted, "redraft_snapshot_bytes{}") > 0.0);
    let commit = sample(&snapshotted, "redraft_raft_commit_index{}");
    assert!(commit >= sample(&before, "redraft_raft_applied_index{}") + 1.0, "commit index {commit}");
    let raft = show(&cluster.call(leader, &["INFO", "raft"]));
    assert!(raft.contains("raft_snapshots_built:1\r\n") && raft.contains("raft_commit_index:"), "{raft}");

    // INFO agrees with the endpoint.
    let stats = show(&cluster.call(leader, &["INFO", "commandstats"]));
    assert!(stats.contains("cmdstat_incr:calls=1,"), "{stats}");
    assert!(stats.contains("cmdstat_get:calls=0,") && stats.contains("rejected_calls=1"), "{stats}");
    let latency = show(&cluster.call(leader, &["INFO", "latencystats"]));
    assert!(latency.contains("latency_percentiles_usec_set:p50="), "{latency}");
    let default = show(&cluster.call(leader, &["INFO"]));
    assert!(default.contains("total_commands_processed:") && !default.contains("cmdstat_"), "{default}");

    // Anything but GET /metrics is refused.
    let mut http = std::net::TcpStream::connect(metrics[&leader]).expect("connect to the metrics port");
    http.write_all(b"GET /secrets HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("send");
    let mut answer = String::new();
    http.read_to_string(&mut answer).expect("read");
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
}
