//! The fault suite, Jepsen-style: three real nodes, concurrent clients over real sockets, and a
//! seeded nemesis that, while the clients run, kills (`kill -9`) a follower, the leader or every
//! node, pauses nodes (`SIGSTOP`/`SIGCONT`), partitions the network (a node isolated from its
//! peers while clients still reach it; a "bridge" where two nodes cannot see each other but both
//! see the third), and replaces a follower: REMOVE, then a fresh node under a new id JOINs (a
//! membership change each way under load, and a snapshot install, since the nodes snapshot and
//! purge their logs every few hundred entries). Partitions are nftables rules in network namespaces the test
//! creates and deletes itself ([`redraft_tests::netlab`]): the nodes run one per namespace, the
//! test in the lab's hub. Afterwards every fault is healed and the history is checked:
//!
//! * **registers** with unique values: every key's history of `SET`s and `GET`s must be
//!   linearizable ([`redraft_tests::linearizability`]), writes with an unknown outcome (timeouts,
//!   `-UNKNOWN`, a connection lost) counted as maybe-applied;
//! * **a counter**: its final value must lie between the acknowledged `INCR`s and the acknowledged
//!   plus the unknown ones (so no acknowledged increment was lost, none applied twice);
//! * **convergence**: every node reaches the same applied index and state digest, and final reads
//!   of every key agree on every node.
//!
//! Odd seeds keep the nodes' state in redb, even seeds in memory (`memory_durable`: a killed node
//! comes back from its snapshot and log), so both durable backends face the same faults.
//!
//! Every run is seeded; on failure the history is written to `history-<seed>.txt` in the
//! cluster's kept temp dir beside the node logs, and the panic names the seed to replay:
//! `REDRAFT_FAULT_SEEDS=<seed> cargo test -p redraft --test faults`. `make soak SEED=.. DURATION=..`
//! runs one long seed (the ignored `soak` case). `REDRAFT_FAULT_NODE_YAML` adds YAML to every
//! node's config, to check that the suite catches a broken setting (`reads: stale` must fail).

use redis::Value;
use redraft_tests::TestCluster;
use redraft_tests::cluster::{JOIN_TIMEOUT, LAB_REDIS_PORT, NodeOptions, WAIT_DEADLINE};
use redraft_tests::linearizability::{Event, Op, Verdict, check_register};
use redraft_tests::netlab::{LAB_ENV, NetLab};
use redraft_tests::resp::{self, show};
use redraft_tests::rng::Rng;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const REDRAFT: &str = env!("CARGO_BIN_EXE_redraft");

/// The nodes' ids (and, in the lab, the last byte of their addresses).
const NODES: [u64; 3] = [1, 2, 3];
/// The ids replacements take, in order (removed ids are never reused); the lab has a namespace
/// for each, so a run replaces at most this many nodes.
const SPARES: [u64; 3] = [4, 5, 6];
/// `snapshot.logs_since_last` of the nodes: snapshots every few hundred entries.
const SNAPSHOT_EVERY: u64 = 300;
/// `snapshot.logs_kept_after`: a node down for more than this many entries needs a snapshot.
const LOGS_KEPT_AFTER_SNAPSHOT: u64 = 100;
/// Seeds `make test` runs, each for [`SHORT_RUN`].
const DEFAULT_SEEDS: [u64; 3] = [1, 2, 3];
/// How long each default seed runs its clients and nemesis.
const SHORT_RUN: Duration = Duration::from_secs(25);
/// Register keys the clients share (few, so operations on one key overlap).
const KEYS: u64 = 6;
/// Concurrent register clients (the counter has one more).
const CLIENTS: usize = 3;
/// A client waits this long for an answer before calling the outcome unknown.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);

/// How one call ended.
enum Outcome {
    /// Answered: the reply.
    Ok(redis::Value),
    /// Refused before anything was proposed (no leader, not a member): not applied.
    Failed,
    /// No answer, or one that says it is unknown: why.
    Unknown(String),
}

/// One client's connection, reconnecting to another node after a failure.
struct Client {
    nodes: Vec<SocketAddr>,
    at: usize,
    con: Option<redis::Connection>,
}

impl Client {
    fn call(&mut self, args: &[String]) -> Outcome {
        if self.con.is_none() {
            match resp::connect_with_timeout(self.nodes[self.at], redis::ProtocolVersion::RESP2, false, CLIENT_TIMEOUT)
            {
                Ok(con) => self.con = Some(con),
                Err(_) => {
                    self.at = (self.at + 1) % self.nodes.len();
                    return Outcome::Failed;
                }
            }
        }
        let Some(con) = self.con.as_mut() else { return Outcome::Failed };
        let outcome = match resp::try_call(con, args) {
            // Refusals a node makes before proposing anything: the command was not applied.
            Ok(redis::Value::ServerError(e)) => {
                let text = format!("{e:?}");
                if matches!(e.code(), "CLUSTERDOWN" | "NOCLUSTER" | "MOVED") || text.contains("max number of clients") {
                    Outcome::Failed
                } else {
                    let why = format!("{} {}", e.code(), e.details().unwrap_or_default());
                    Outcome::Unknown(why.chars().take(72).collect())
                }
            }
            Ok(value) => return Outcome::Ok(value),
            Err(e) => Outcome::Unknown(format!("{:?}", e.kind())),
        };
        // Try another node next time: this one may be down, paused or leaderless.
        self.con = None;
        self.at = (self.at + 1) % self.nodes.len();
        outcome
    }
}

/// What the clients recorded.
#[derive(Default)]
struct History {
    registers: BTreeMap<String, Vec<Event>>,
    increments_acked: u64,
    increments_unknown: u64,
    /// Why outcomes were unknown, with how often.
    unknown_reasons: BTreeMap<String, u64>,
    log: Vec<String>,
}

fn now(start: Instant) -> u64 {
    start.elapsed().as_micros() as u64
}

/// One register client: random `SET key <unique>` and `GET key` until `stop`.
fn register_client(
    id: usize,
    seed: u64,
    nodes: Vec<SocketAddr>,
    start: Instant,
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<History>>,
) {
    let mut rng = Rng(seed ^ ((id as u64 + 1) * 0x1000_0000));
    let mut client = Client { at: id % nodes.len(), nodes, con: None };
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("r{}", rng.below(KEYS));
        let write = rng.below(2) == 0;
        n += 1;
        let value = format!("c{id}-{n}");
        let args = if write { vec!["SET".into(), key.clone(), value.clone()] } else { vec!["GET".into(), key.clone()] };
        let invoked = now(start);
        let outcome = client.call(&args);
        let completed = now(start);
        let event = match (&outcome, write) {
            (Outcome::Ok(redis::Value::Okay), true) => {
                Some(Event { client: id, op: Op::Write(value), invoked, completed: Some(completed) })
            }
            (Outcome::Unknown(_), true) => Some(Event { client: id, op: Op::Write(value), invoked, completed: None }),
            (Outcome::Ok(redis::Value::Nil), false) => {
                Some(Event { client: id, op: Op::Read(None), invoked, completed: Some(completed) })
            }
            (Outcome::Ok(redis::Value::BulkString(b)), false) => Some(Event {
                client: id,
                op: Op::Read(Some(String::from_utf8_lossy(b).into_owned())),
                invoked,
                completed: Some(completed),
            }),
            (Outcome::Ok(other), _) => {
                let mut h = history.lock().unwrap_or_else(|p| p.into_inner());
                h.log.push(format!("client {id}: unexpected reply to {args:?}: {}", show(other)));
                None
            }
            // Failed writes did nothing; reads without an answer tell nothing.
            _ => None,
        };
        let mut h = history.lock().unwrap_or_else(|p| p.into_inner());
        if let Outcome::Unknown(why) = outcome {
            *h.unknown_reasons.entry(why).or_default() += 1;
        }
        if let Some(event) = event {
            h.registers.entry(key).or_default().push(event);
        }
    }
}

/// The counter client: `INCR counter` until `stop`, counting acknowledged and unknown outcomes.
fn counter_client(nodes: Vec<SocketAddr>, stop: Arc<AtomicBool>, history: Arc<Mutex<History>>) {
    let mut client = Client { at: 0, nodes, con: None };
    let args = vec!["INCR".to_owned(), "counter".to_owned()];
    while !stop.load(Ordering::Relaxed) {
        let outcome = client.call(&args);
        let mut h = history.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Outcome::Ok(redis::Value::Int(_)) => h.increments_acked += 1,
            Outcome::Unknown(why) => {
                h.increments_unknown += 1;
                *h.unknown_reasons.entry(why).or_default() += 1;
            }
            Outcome::Ok(other) => h.log.push(format!("counter: unexpected reply {}", show(&other))),
            Outcome::Failed => {}
        }
    }
}

/// The leader as some running node sees it (a quick look, no waiting).
fn current_leader(cluster: &TestCluster) -> Option<u64> {
    cluster.running().into_iter().find_map(|id| cluster.leader_seen_by(id).ok().flatten().map(|(l, _)| l))
}

/// The kinds of fault the nemesis draws from.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// `kill -9` of the leader or a follower, restarted after a while.
    KillOne,
    /// `kill -9` of every node, all restarted after a while.
    KillAll,
    /// `SIGSTOP` of a node, `SIGCONT` after a while.
    Pause,
    /// A node cut from both peers while clients still reach it (the leader half the time).
    Isolate,
    /// Two nodes that cannot see each other, both seeing the third.
    Bridge,
    /// A follower removed and replaced by a fresh node under a new id: a membership change each
    /// way, and a snapshot install when the leader has purged its log.
    Replace,
}

/// The faults a run can inject: partitions only in a [`NetLab`].
fn fault_kinds(lab: bool) -> Vec<Fault> {
    let mut kinds = vec![Fault::KillOne, Fault::KillOne, Fault::KillAll, Fault::Pause];
    if lab {
        kinds.extend([Fault::Replace, Fault::Isolate, Fault::Isolate, Fault::Bridge, Fault::Bridge]);
    }
    kinds
}

/// Injects seeded faults until `until`, one every 0.5–2 s, each healed before the next;
/// replacements start their nodes with `options`. Returns what it did and the members at the end.
fn nemesis(cluster: &mut TestCluster, rng: &mut Rng, until: Instant, options: &NodeOptions) -> (Vec<String>, Vec<u64>) {
    let mut done = Vec::new();
    let mut ids = NODES.to_vec();
    let mut spares = SPARES.iter().copied();
    let kinds = fault_kinds(cluster.lab().is_some());
    let pause = |rng: &mut Rng| Duration::from_millis(500 + rng.below(1500));
    while Instant::now() < until {
        wait_a_moment(pause(rng));
        let leader = current_leader(cluster);
        let followers: Vec<u64> = ids.iter().copied().filter(|&id| Some(id) != leader).collect();
        let fault = *rng.pick(&kinds);
        let either = |rng: &mut Rng| if rng.below(2) == 0 { leader.unwrap_or(ids[0]) } else { *rng.pick(&followers) };
        match fault {
            Fault::KillOne => {
                let victim = either(rng);
                cluster.kill(victim);
                done.push(format!("kill -9 node {victim} (leader {leader:?})"));
                wait_a_moment(pause(rng));
                cluster.restart(victim);
            }
            Fault::KillAll => {
                for &id in &ids {
                    cluster.kill(id);
                }
                done.push("kill -9 every node".to_owned());
                wait_a_moment(pause(rng));
                for &id in &ids {
                    cluster.restart(id);
                }
            }
            Fault::Pause => {
                let victim = *rng.pick(&ids);
                cluster.pause(victim);
                done.push(format!("SIGSTOP node {victim} (leader {leader:?})"));
                wait_a_moment(pause(rng));
                cluster.resume(victim);
            }
            Fault::Isolate => {
                let lab = cluster.lab().expect("partitions run in a lab");
                let victim = either(rng);
                lab.isolate(victim).unwrap_or_else(|e| panic!("isolate node {victim}: {e}"));
                done.push(format!("isolate node {victim} (leader {leader:?})"));
                wait_a_moment(pause(rng));
                lab.heal().unwrap_or_else(|e| panic!("heal: {e}"));
            }
            Fault::Bridge => {
                let lab = cluster.lab().expect("partitions run in a lab");
                let middle = *rng.pick(&ids);
                let [a, b] = ids.iter().copied().filter(|&id| id != middle).collect::<Vec<_>>()[..] else {
                    unreachable!("three nodes")
                };
                lab.cut(a, b).unwrap_or_else(|e| panic!("cut {a} from {b}: {e}"));
                done.push(format!("bridge: nodes {a} and {b} cut apart, both see node {middle} (leader {leader:?})"));
                wait_a_moment(pause(rng));
                lab.heal().unwrap_or_else(|e| panic!("heal: {e}"));
            }
            Fault::Replace => {
                let Some(new) = spares.next() else { continue };
                let victim = *rng.pick(&followers);
                done.push(replace(cluster, victim, new, options));
                ids.retain(|&id| id != victim);
                ids.push(new);
            }
        }
    }
    (done, ids)
}

/// REMOVE of `victim` (through whoever leads), which is then killed, and a fresh node `new`
/// started and JOINed (through whoever leads), while the clients keep running. Says what happened.
fn replace(cluster: &mut TestCluster, victim: u64, new: u64, options: &NodeOptions) -> String {
    cluster.wait_for(&format!("REMOVE {victim} to be done"), JOIN_TIMEOUT, || {
        let leader = current_leader(cluster).ok_or("no leader")?;
        if !cluster.members(leader)?.iter().any(|m| m.id == victim) {
            return Ok(());
        }
        match cluster.try_remove(victim, leader)? {
            Value::Okay => Ok(()),
            other => Err(format!("REMOVE {victim} via {leader}: {}", show(&other))),
        }
    });
    cluster.kill(victim);
    cluster.start(new, options.clone());
    let purged = cluster.wait_for(&format!("JOIN {new} to be done"), JOIN_TIMEOUT, || {
        let leader = current_leader(cluster).ok_or("no leader")?;
        let purged = cluster.info_number(leader, "raft_purged_index")?;
        // An earlier attempt that timed out may have gone through.
        if cluster.members(leader)?.iter().any(|m| m.id == new && m.voter) {
            return Ok(purged);
        }
        match cluster.try_join(new, leader)? {
            Value::Okay => Ok(purged),
            other => Err(format!("JOIN {new} via {leader}: {}", show(&other))),
        }
    });
    let snapshot = cluster.info_number(new, "raft_snapshot_index").unwrap_or_default();
    format!(
        "replace node {victim} by node {new} (the leader's log was purged to {purged}; node {new}'s snapshot \
         index after the join: {snapshot})"
    )
}

/// The nemesis's pause between faults: time passing is the point here (faults last that long),
/// not a wait for some condition.
fn wait_a_moment(d: Duration) {
    std::thread::sleep(d);
}

/// One seeded run: forms the cluster, runs clients and nemesis for `duration`, heals, checks.
fn run(seed: u64, duration: Duration, lab: Option<&str>) {
    let mut cluster = TestCluster::new(REDRAFT);
    // Odd seeds keep the state in redb, even ones in memory (durable through log and snapshots).
    let backend = if seed.is_multiple_of(2) { "memory_durable" } else { "redb" };
    let mut options = NodeOptions { backend, ..NodeOptions::default() };
    if let Some(lab) = lab {
        cluster = cluster.in_lab(NetLab::attach(lab, &lab_nodes()));
        // Snapshots and log purges every few hundred entries, so restarts and joins install them.
        options.snapshot_logs_since_last = SNAPSHOT_EVERY;
        options.extra_yaml = format!("snapshot: {{logs_kept_after: {LOGS_KEPT_AFTER_SNAPSHOT}}}\n");
    }
    // To check that the suite notices a broken node, e.g. `reads: stale` must fail it.
    if let Ok(yaml) = std::env::var("REDRAFT_FAULT_NODE_YAML") {
        options.extra_yaml.push_str(&yaml);
    }
    let mut cluster = cluster.formed(NODES.len(), options.clone());
    // In the lab, the clients also know the addresses replacements will have.
    let nodes: Vec<SocketAddr> = match cluster.lab() {
        Some(_) => lab_nodes().into_iter().map(|id| SocketAddr::from((NetLab::ip(id), LAB_REDIS_PORT))).collect(),
        None => cluster.ids().iter().map(|&id| cluster.node(id).redis_addr).collect(),
    };
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let history = Arc::new(Mutex::new(History::default()));
    let mut threads = Vec::new();
    for id in 0..CLIENTS {
        let (nodes, stop, history) = (nodes.clone(), stop.clone(), history.clone());
        threads.push(std::thread::spawn(move || register_client(id, seed, nodes, start, stop, history)));
    }
    {
        let (nodes, stop, history) = (nodes.clone(), stop.clone(), history.clone());
        threads.push(std::thread::spawn(move || counter_client(nodes, stop, history)));
    }
    let mut rng = Rng(seed);
    let (faults, members) = nemesis(&mut cluster, &mut rng, start + duration, &options);
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().expect("client thread");
    }

    // Healed: every node runs. Final reads go to every node, after every client stopped.
    let (_, digest) = cluster.wait_converged();
    let mut history =
        Arc::try_unwrap(history).ok().expect("clients done").into_inner().unwrap_or_else(|p| p.into_inner());
    let mut problems = history.log.clone();
    let mut final_values = BTreeMap::new();
    for key in (0..KEYS).map(|k| format!("r{k}")).chain(["counter".to_owned()]) {
        let mut seen = BTreeMap::new();
        for &id in &members {
            let invoked = now(start);
            let value = cluster
                .wait_for(&format!("GET {key} on node {id}"), WAIT_DEADLINE, || cluster.try_call(id, &["GET", &key]));
            let op = match &value {
                redis::Value::Nil => Op::Read(None),
                redis::Value::BulkString(b) => Op::Read(Some(String::from_utf8_lossy(b).into_owned())),
                other => panic!("GET {key} on node {id}: {}", show(other)),
            };
            if key != "counter" {
                history.registers.entry(key.clone()).or_default().push(Event {
                    client: 99,
                    op: op.clone(),
                    invoked,
                    completed: Some(now(start)),
                });
            }
            seen.insert(id, op);
        }
        let distinct: std::collections::BTreeSet<_> = seen.values().collect();
        if distinct.len() != 1 {
            problems.push(format!("final reads of {key} differ between nodes: {seen:?}"));
        }
        final_values.insert(key, seen.values().next().cloned());
    }
    let counter = match final_values.get("counter") {
        Some(Some(Op::Read(Some(v)))) => v.parse::<u64>().unwrap_or(u64::MAX),
        _ => 0,
    };
    let (acked, unknown) = (history.increments_acked, history.increments_unknown);
    if counter < acked || counter > acked + unknown {
        problems.push(format!("counter is {counter}: {acked} increments acknowledged, {unknown} unknown"));
    }
    let mut operations = 0;
    for (key, events) in &history.registers {
        operations += events.len();
        match check_register(events, None) {
            Verdict::Ok => {}
            Verdict::Violation(trace) => problems.push(format!("{key} is not linearizable:\n{trace}")),
            Verdict::Undecided(steps) => problems.push(format!("{key}: the checker gave up after {steps} steps")),
        }
    }
    let summary = format!(
        "seed {seed} ({backend}): {operations} register operations on {KEYS} keys, {acked} increments acknowledged and {unknown} \
         unknown (counter {counter}), unknown because: {:?}; {} faults: {faults:?}; digest {digest}",
        history.unknown_reasons,
        faults.len()
    );
    eprintln!("{summary}");
    if !problems.is_empty() {
        let path = cluster.dir().join(format!("history-{seed}.txt"));
        let mut text = format!("{summary}\n\n");
        for (key, events) in &history.registers {
            text.push_str(&format!("# {key}\n"));
            for e in events {
                text.push_str(&format!("{} {} {:?} {:?}\n", e.client, e.invoked, e.completed, e.op));
            }
        }
        let _ = std::fs::write(&path, text);
        panic!(
            "seed {seed} found {} problem(s); history in {} (replay: REDRAFT_FAULT_SEEDS={seed} cargo test -p redraft --test faults):\n{}",
            problems.len(),
            path.display(),
            problems.join("\n")
        );
    }
    assert!(operations > 0 && acked > 0, "the clients made progress: {summary}");
}

/// Every node a run may start: the first members and their replacements.
fn lab_nodes() -> Vec<u64> {
    [NODES, SPARES].concat()
}

fn seeds() -> Vec<u64> {
    match std::env::var("REDRAFT_FAULT_SEEDS") {
        Ok(list) => {
            list.split(',').map(|s| s.trim().parse().expect("REDRAFT_FAULT_SEEDS: comma-separated integers")).collect()
        }
        Err(_) => DEFAULT_SEEDS.to_vec(),
    }
}

/// Runs `body` in a [`NetLab`], so the nemesis can partition: this process creates the lab,
/// runs this same test again inside the lab's hub namespace (`ip netns exec`), waits for it, and
/// deletes the lab whatever happened. In the re-executed process ([`LAB_ENV`] set) `body` runs,
/// given the lab's name.
/// `REDRAFT_FAULTS_NETNS=off` runs `body` here, without partitions (for machines without root).
fn in_lab(test: &str, ignored: bool, budget: Duration, body: impl FnOnce(Option<&str>)) {
    if let Ok(name) = std::env::var(LAB_ENV) {
        return body(Some(&name));
    }
    if std::env::var("REDRAFT_FAULTS_NETNS").as_deref() == Ok("off") {
        return body(None);
    }
    let lab = NetLab::create(&lab_nodes())
        .unwrap_or_else(|e| panic!("{e}\n(REDRAFT_FAULTS_NETNS=off runs the suite without partitions)"));
    let exe = std::env::current_exe().expect("this test binary's path");
    let mut command = std::process::Command::new("ip");
    command.args(["netns", "exec", &lab.hub()]).arg(exe).args([test, "--exact", "--nocapture", "--test-threads=1"]);
    if ignored {
        command.arg("--ignored");
    }
    let mut child = command
        .env(LAB_ENV, lab.name())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the test in the lab's hub");
    // Relay the inner run's output through this test's own (captured unless --nocapture).
    let relays: Vec<_> = [
        child.stdout.take().map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
        child.stderr.take().map(|e| Box::new(e) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|out| {
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                eprintln!("{line}");
            }
        })
    })
    .collect();
    let status = redraft_tests::cluster::try_wait_for(budget, || child.try_wait().ok().flatten().ok_or(()));
    let status = status.unwrap_or_else(|_| {
        eprintln!("the run in the lab took longer than {budget:?}; killing it");
        let _ = child.kill();
        child.wait().expect("reap the lab run")
    });
    drop(lab);
    for relay in relays {
        let _ = relay.join();
    }
    assert!(status.success(), "the fault suite in the lab failed ({status}); its output is above");
}

/// The longest a seeded run may take beyond its duration (forming, healing, checking).
const RUN_OVERHEAD_MAX: Duration = Duration::from_secs(180);

#[test]
fn t10_kills_pauses_partitions_and_rejoins_under_concurrent_clients_lose_nothing() {
    let seeds = seeds();
    let budget = (SHORT_RUN + RUN_OVERHEAD_MAX) * seeds.len() as u32;
    in_lab("t10_kills_pauses_partitions_and_rejoins_under_concurrent_clients_lose_nothing", false, budget, |lab| {
        for seed in seeds {
            run(seed, SHORT_RUN, lab);
        }
    });
}

/// `make soak SEED=.. DURATION=..` (seconds).
#[test]
#[ignore = "long: run with make soak"]
fn soak() {
    let seed = std::env::var("SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let secs = std::env::var("DURATION").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    let duration = Duration::from_secs(secs);
    in_lab("soak", true, duration + RUN_OVERHEAD_MAX, |lab| run(seed, duration, lab));
}
