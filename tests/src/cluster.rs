//! The real-process cluster harness: starts `redraft` nodes as child processes on free loopback
//! ports, each with its own YAML config, data dir and log file in one temp dir, and talks to them
//! over their Redis port only (this crate cannot depend on `redraft`).
//!
//! Every wait has a deadline and polls; nothing sleeps to synchronise. When a test panics, the
//! cluster's `Drop` kills every node, prints the tail of each node's log and keeps the temp dir.
//!
//! At most [`clusters_max`] clusters run at once in one test process (the others wait in
//! [`TestCluster::new`]), so a test binary's parallel tests do not starve each other's nodes of CPU
//! on a small machine and trip elections. A test must therefore never hold two clusters at once.

use crate::netlab::NetLab;
use crate::resp::{self, RawConn};
use redis::{ProtocolVersion, Value};
use serde_yaml_ng::{Mapping, Value as Yaml};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a node may take to answer `PING` after it was spawned.
pub const START_DEADLINE: Duration = Duration::from_secs(30);
/// Default deadline of the harness's waits (cluster formed, indexes equal, ...).
pub const WAIT_DEADLINE: Duration = Duration::from_secs(30);
/// How long a node may take to exit after SIGTERM before it is killed.
pub const STOP_DEADLINE: Duration = Duration::from_secs(30);
/// How long `JOIN` may take (the new node catches up, maybe through a snapshot, before it answers).
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(120);
/// A lab node's Redis port (on its namespace's address; see [`TestCluster::in_lab`]).
pub const LAB_REDIS_PORT: u16 = 6379;
/// A lab node's Raft port.
pub const LAB_RAFT_PORT: u16 = 7000;
/// Poll interval of every wait.
pub const POLL: Duration = Duration::from_millis(20);
/// Lines of each node's log printed when a test fails.
pub const LOG_TAIL_LINES: usize = 60;

/// How one node is configured (the rest of the YAML is the harness's: ports, paths, fast Raft
/// timings). See [`render_config`].
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// `store_backend`: `redb`, `memory_durable` or `memory`.
    pub backend: &'static str,
    /// `bootstrap`: a fresh node makes itself a one-node cluster.
    pub bootstrap: bool,
    /// `follower_writes`: `forward` or `redirect`.
    pub follower_writes: &'static str,
    /// `snapshot.logs_since_last`; 0 leaves the node's default.
    pub snapshot_logs_since_last: u64,
    /// YAML merged over the generated config: maps merge key by key (so `limits: {..}` or
    /// `snapshot: {chunk_bytes: ..}` add to what the harness writes), other values replace, and a
    /// `null` value removes the key.
    pub extra_yaml: String,
    /// `fsm_module`: the state machine's `.wasm`.
    pub fsm_module: PathBuf,
    /// The client port speaks TLS (`tls` in `extra_yaml`): the harness cannot `PING` it, so a
    /// start waits for the node's `node ready` log line instead, and the test talks to it with
    /// TLS clients (`redis-cli --tls`).
    pub client_tls: bool,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            backend: "redb",
            bootstrap: false,
            follower_writes: "forward",
            snapshot_logs_since_last: 0,
            extra_yaml: String::new(),
            fsm_module: PathBuf::from(crate::FSM_KV_WASM),
            client_tls: false,
        }
    }
}

/// The config a node gets: its addresses and data dir, the Raft timings tests use (heartbeat
/// 50 ms, election timeout 300–600 ms), `log_level` (`info`, or `REDRAFT_TEST_LOG_LEVEL`), then
/// `options.extra_yaml` merged over it (see [`NodeOptions::extra_yaml`]).
pub fn render_config(
    id: u64,
    raft_addr: SocketAddr,
    redis_addr: SocketAddr,
    data_dir: &Path,
    options: &NodeOptions,
) -> Result<String, String> {
    fn key(name: &str) -> Yaml {
        Yaml::from(name)
    }
    let mut raft = Mapping::new();
    raft.insert(key("heartbeat_interval_ms"), Yaml::Number(50.into()));
    raft.insert(key("election_timeout_min_ms"), Yaml::Number(300.into()));
    raft.insert(key("election_timeout_max_ms"), Yaml::Number(600.into()));

    let mut config = Mapping::new();
    config.insert(key("id"), Yaml::Number(id.into()));
    config.insert(key("raft_addr"), Yaml::from(raft_addr.to_string()));
    config.insert(key("redis_addr"), Yaml::from(redis_addr.to_string()));
    config.insert(key("store_backend"), Yaml::from(options.backend));
    config.insert(key("data_dir"), Yaml::from(path_text(data_dir)?));
    config.insert(key("fsm_module"), Yaml::from(path_text(&options.fsm_module)?));
    config.insert(key("bootstrap"), Yaml::Bool(options.bootstrap));
    config.insert(key("follower_writes"), Yaml::from(options.follower_writes));
    let level = std::env::var("REDRAFT_TEST_LOG_LEVEL").unwrap_or_else(|_| "info".into());
    config.insert(key("log_level"), Yaml::from(level));
    config.insert(key("raft"), Yaml::Mapping(raft));
    if options.snapshot_logs_since_last != 0 {
        let mut snapshot = Mapping::new();
        snapshot.insert(key("logs_since_last"), Yaml::Number(options.snapshot_logs_since_last.into()));
        config.insert(key("snapshot"), Yaml::Mapping(snapshot));
    }
    if !options.extra_yaml.trim().is_empty() {
        match serde_yaml_ng::from_str::<Yaml>(&options.extra_yaml) {
            Ok(Yaml::Mapping(extra)) => merge_yaml(&mut config, extra),
            Ok(Yaml::Null) => {}
            Ok(other) => return Err(format!("extra_yaml must be a map, got {other:?}")),
            Err(e) => return Err(format!("extra_yaml is not YAML ({e}): {}", options.extra_yaml)),
        }
    }
    serde_yaml_ng::to_string(&Yaml::Mapping(config)).map_err(|e| format!("render YAML: {e}"))
}

fn path_text(path: &Path) -> Result<String, String> {
    path.to_str().map(str::to_owned).ok_or_else(|| format!("path is not UTF-8: {}", path.display()))
}

/// Merges `extra` into `base`: maps key by key, other values replace, `null` removes.
fn merge_yaml(base: &mut Mapping, extra: Mapping) {
    for (k, v) in extra {
        if v.is_null() {
            base.remove(&k);
        } else if let (Yaml::Mapping(add), Some(Yaml::Mapping(into))) = (&v, base.get_mut(&k)) {
            merge_yaml(into, add.clone());
        } else {
            base.insert(k, v);
        }
    }
}

/// A free TCP port on 127.0.0.1, never handed out before in this process.
///
/// Ports are taken below the kernel's ephemeral range (`ip_local_port_range`), from a per-process
/// random start, and checked by binding them: an outgoing connection's ephemeral source port can
/// then never take the port of a node that is down for a restart. (Falls back to the OS's choice,
/// `bind 127.0.0.1:0`, when the range leaves no room below it.)
pub fn free_port() -> u16 {
    struct Ports {
        used: BTreeSet<u16>,
        next: Option<u32>,
    }
    static PORTS: Mutex<Ports> = Mutex::new(Ports { used: BTreeSet::new(), next: None });
    let mut ports = lock(&PORTS);
    let (low, high) = port_window();
    let span = u32::from(high - low);
    if span > 0 {
        let seed = ports.next.unwrap_or_else(|| {
            let nanos =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
            std::process::id().wrapping_mul(7919).wrapping_add(nanos) % span
        });
        for step in 0..span {
            let offset = (seed + step) % span;
            let port = low + u16::try_from(offset).expect("offset < span <= u16::MAX");
            if !ports.used.contains(&port) && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
                ports.used.insert(port);
                ports.next = Some((offset + 1) % span);
                return port;
            }
        }
    }
    loop {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0 for a free port")
            .port();
        if ports.used.insert(port) {
            return port;
        }
    }
}

/// Ports `[low, high)` to pick from: up to 12,000 ports just below the ephemeral range.
fn port_window() -> (u16, u16) {
    let range = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok().and_then(|text| {
        let mut numbers = text.split_whitespace().map(|n| n.parse::<u16>().ok());
        Some((numbers.next()??, numbers.next()??))
    });
    match range {
        Some((ephemeral_low, _)) if ephemeral_low >= 2048 => {
            (ephemeral_low.saturating_sub(12_000).max(1024), ephemeral_low)
        }
        _ => (0, 0),
    }
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

/// Locks, ignoring poisoning (a panicking test must not hide the cluster from its `Drop`).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How many clusters may run at once in one test process: `REDRAFT_TEST_CLUSTERS`, default 2.
pub fn clusters_max() -> usize {
    std::env::var("REDRAFT_TEST_CLUSTERS").ok().and_then(|v| v.parse().ok()).filter(|&n| n >= 1).unwrap_or(2)
}

static RUNNING_CLUSTERS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

/// One of the [`clusters_max`] slots, held for a cluster's life.
struct ClusterSlot;

impl ClusterSlot {
    fn acquire() -> Self {
        let (count, freed) = &RUNNING_CLUSTERS;
        let mut running = lock(count);
        while *running >= clusters_max() {
            running = freed.wait(running).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        *running += 1;
        ClusterSlot
    }
}

impl Drop for ClusterSlot {
    fn drop(&mut self) {
        let (count, freed) = &RUNNING_CLUSTERS;
        *lock(count) -= 1;
        freed.notify_one();
    }
}

/// Calls `f` every [`POLL`] until it returns `Ok`, for at most `deadline` (at least once). On
/// timeout returns the last `Err` (the last observation) and the time spent.
pub fn try_wait_for<T, E>(deadline: Duration, mut f: impl FnMut() -> Result<T, E>) -> Result<T, (E, Duration)> {
    let start = Instant::now();
    loop {
        match f() {
            Ok(value) => return Ok(value),
            Err(last) => {
                let elapsed = start.elapsed();
                if elapsed >= deadline {
                    return Err((last, elapsed));
                }
                std::thread::sleep(POLL.min(deadline - elapsed));
            }
        }
    }
}

/// [`try_wait_for`] that panics on timeout with `what` and the last observation.
pub fn wait_for<T, E: Debug>(what: &str, deadline: Duration, f: impl FnMut() -> Result<T, E>) -> T {
    try_wait_for(deadline, f).unwrap_or_else(|(last, elapsed)| {
        panic!("timed out after {elapsed:?} waiting for {what}; last observation: {last:?}")
    })
}

/// Polls `f` until it returns `Some`, for at most `deadline`; panics with `what` on timeout.
pub fn wait_until<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    wait_for(what, deadline, || f().ok_or("the condition was still false"))
}

/// A node's state as the harness sees it: running child, or how it last ended.
struct Proc {
    child: Option<Child>,
    last_exit: Option<ExitStatus>,
    /// Still running when the cluster was dropped (and so killed by the harness).
    killed_at_drop: bool,
}

/// One node: its addresses and files, and its process while it runs.
pub struct Node {
    /// Raft node id.
    pub id: u64,
    /// The Redis (RESP) address clients use.
    pub redis_addr: SocketAddr,
    /// The Raft peer address.
    pub raft_addr: SocketAddr,
    /// `<cluster dir>/node<id>`: config, log and data dir.
    pub dir: PathBuf,
    /// `data_dir` of the config.
    pub data_dir: PathBuf,
    /// The YAML config the node runs with.
    pub config_path: PathBuf,
    /// Its stdout and stderr, every run appended (each start is marked by a harness line).
    pub log_path: PathBuf,
    /// What it was started with.
    pub options: NodeOptions,
    /// The network namespace it runs in (a [`NetLab`]'s), or `None` for the test's own.
    pub netns: Option<String>,
    proc: Mutex<Proc>,
}

impl Node {
    /// The process id while the node runs.
    pub fn pid(&self) -> Option<u32> {
        let mut proc = lock(&self.proc);
        Self::reap(&mut proc);
        proc.child.as_ref().map(Child::id)
    }

    /// Whether the process is running (a process that exited on its own is reaped here).
    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    /// One line: running (pid), or how it ended.
    pub fn status(&self) -> String {
        let mut proc = lock(&self.proc);
        Self::reap(&mut proc);
        match (&proc.child, &proc.last_exit) {
            (Some(child), _) => format!("running (pid {})", child.id()),
            (None, _) if proc.killed_at_drop => "was running until the end of the test".into(),
            (None, Some(status)) => format!("not running (last exit: {status})"),
            (None, None) => "never started".into(),
        }
    }

    fn reap(proc: &mut Proc) {
        if let Some(child) = proc.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            proc.last_exit = Some(status);
            proc.child = None;
        }
    }

    /// The whole log (every run).
    pub fn log(&self) -> String {
        fs::read(&self.log_path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }
}

/// Sends `signal` (a `kill` option such as `-STOP`) to `pid`; panics when `kill` fails.
fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill").args([signal, &pid.to_string()]).status();
    assert!(status.as_ref().is_ok_and(ExitStatus::success), "kill {signal} {pid}: {status:?}");
}

/// The threads of `pid` that are not (yet) stopped, with their state letter from
/// `/proc/<pid>/task/<tid>/stat` (`T` is stopped). An unreadable task directory counts as one.
fn threads_not_stopped(pid: u32) -> Vec<(String, char)> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return vec![("<no task list>".into(), '?')];
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| {
            let stat = fs::read_to_string(task.path().join("stat")).ok()?;
            // `tid (comm) S ...`: the command name may hold spaces and parentheses.
            let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next())?;
            (state != 'T' && state != 't').then(|| (task.file_name().to_string_lossy().into_owned(), state))
        })
        .collect()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A member as `NODES` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Raft node id.
    pub id: u64,
    /// Raft address.
    pub raft_addr: String,
    /// Redis address.
    pub redis_addr: String,
    /// `voter` (true) or `learner`.
    pub voter: bool,
    /// Whether the reporting node sees it as the leader.
    pub leader: bool,
}

/// How a node process that was expected to refuse to start ended.
#[derive(Debug)]
pub struct ExitReport {
    /// Its exit status.
    pub status: ExitStatus,
    /// What it printed (stdout and stderr, interleaved as written).
    pub output: String,
    /// The config file it was given.
    pub config_path: PathBuf,
}

enum LaunchError {
    Spawn(io::Error),
    Exited { status: ExitStatus, log: String },
    NoPong { log: String },
}

/// Nodes started from one `redraft` binary, in one temp dir. Dropping it kills every node.
pub struct TestCluster {
    binary: PathBuf,
    tmp: Option<tempfile::TempDir>,
    root: PathBuf,
    nodes: BTreeMap<u64, Node>,
    removed: Mutex<BTreeSet<u64>>,
    scratch: AtomicU32,
    start_deadline: Duration,
    lab: Option<NetLab>,
    credentials: Option<(String, String)>,
    _slot: ClusterSlot,
}

impl TestCluster {
    /// An empty cluster of nodes that will run `binary`. Waits for a free slot (see
    /// [`clusters_max`]).
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        let binary = binary.into();
        assert!(binary.is_file(), "node binary {} does not exist", binary.display());
        let slot = ClusterSlot::acquire();
        let tmp = tempfile::Builder::new().prefix("redraft-test-").tempdir().expect("create the cluster's temp dir");
        let root = tmp.path().to_path_buf();
        TestCluster {
            binary,
            tmp: Some(tmp),
            root,
            nodes: BTreeMap::new(),
            removed: Mutex::new(BTreeSet::new()),
            scratch: AtomicU32::new(0),
            start_deadline: START_DEADLINE,
            lab: None,
            credentials: None,
            _slot: slot,
        }
    }

    /// `n` nodes (ids 1..=n) started with `options` (never `bootstrap`): node 1 gets `BOOTSTRAP`,
    /// the others `JOIN` through node 1, then waits until `NODES` on every node shows the n
    /// voters and one leader.
    pub fn form(binary: impl Into<PathBuf>, n: usize, options: NodeOptions) -> Self {
        TestCluster::new(binary).formed(n, options)
    }

    /// Runs the nodes started from now on in `lab`'s namespaces, each on its address there
    /// (Redis port [`LAB_REDIS_PORT`], Raft port [`LAB_RAFT_PORT`]); this test process must run in
    /// the lab's hub. [`TestCluster::lab`] then makes partitions.
    pub fn in_lab(mut self, lab: NetLab) -> Self {
        self.lab = Some(lab);
        self
    }

    /// Makes the harness's own connections ([`TestCluster::client`], [`TestCluster::try_call`],
    /// `JOIN`, `INFO`, ...) authenticate as `user` with `password`: for nodes whose config
    /// requires it.
    pub fn with_credentials(mut self, user: &str, password: &str) -> Self {
        self.credentials = Some((user.to_owned(), password.to_owned()));
        self
    }

    fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The lab the nodes run in, if any.
    pub fn lab(&self) -> Option<&NetLab> {
        self.lab.as_ref()
    }

    /// [`TestCluster::form`] on this (empty) cluster.
    pub fn formed(self, n: usize, options: NodeOptions) -> Self {
        assert!(n >= 1, "a cluster has at least one node");
        assert!(self.nodes.is_empty(), "formed() starts from an empty cluster");
        let mut cluster = self;
        let ids: Vec<u64> = (1..=n as u64).collect();
        for &id in &ids {
            cluster.start(id, NodeOptions { bootstrap: false, ..options.clone() });
        }
        cluster.bootstrap(1);
        cluster.wait_members(&[1]);
        for &id in &ids[1..] {
            cluster.join(id, 1);
        }
        cluster.wait_members(&ids);
        cluster
    }

    /// Changes how long [`TestCluster::start`] and [`TestCluster::restart`] wait for `PING`.
    pub fn set_start_deadline(&mut self, deadline: Duration) {
        self.start_deadline = deadline;
    }

    /// The cluster's temp dir.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The node binary.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Every node started so far.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// The nodes whose process runs, removed members included.
    pub fn running(&self) -> Vec<u64> {
        self.nodes.values().filter(|n| n.is_running()).map(|n| n.id).collect()
    }

    /// The running nodes that are members (not taken out with [`TestCluster::remove`]).
    pub fn running_members(&self) -> Vec<u64> {
        let removed = lock(&self.removed);
        self.running().into_iter().filter(|id| !removed.contains(id)).collect()
    }

    /// Node `id`; panics if it was never started.
    pub fn node(&self, id: u64) -> &Node {
        self.nodes.get(&id).unwrap_or_else(|| panic!("node {id} was never started (nodes: {:?})", self.ids()))
    }

    /// Starts a new node `id`: free loopback ports (in a lab, its namespace's address),
    /// `<dir>/node<id>/{node.yaml,node.log,data}`, spawns it
    /// and waits (up to [`START_DEADLINE`]) until it answers `PING`. Panics with its log if it
    /// exits or does not answer in time (if its port was taken meanwhile, retries on new ports).
    pub fn start(&mut self, id: u64, options: NodeOptions) -> &Node {
        assert!(!self.nodes.contains_key(&id), "node {id} is already started");
        let dir = self.root.join(format!("node{id}"));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        for attempt in 1.. {
            let (redis_addr, raft_addr, netns) = match &self.lab {
                Some(lab) => {
                    assert!(lab.nodes().contains(&id), "the lab has no namespace for node {id}");
                    let ip = NetLab::ip(id);
                    (
                        SocketAddr::from((ip, LAB_REDIS_PORT)),
                        SocketAddr::from((ip, LAB_RAFT_PORT)),
                        Some(lab.namespace(id)),
                    )
                }
                None => (loopback(free_port()), loopback(free_port()), None),
            };
            let node = Node {
                id,
                redis_addr,
                raft_addr,
                netns,
                data_dir: dir.join("data"),
                config_path: dir.join("node.yaml"),
                log_path: dir.join("node.log"),
                dir: dir.clone(),
                options: options.clone(),
                proc: Mutex::new(Proc { child: None, last_exit: None, killed_at_drop: false }),
            };
            let yaml = render_config(id, node.raft_addr, node.redis_addr, &node.data_dir, &options)
                .unwrap_or_else(|e| panic!("node {id}: {e}"));
            fs::write(&node.config_path, yaml).unwrap_or_else(|e| panic!("write {}: {e}", node.config_path.display()));
            match self.launch(&node, &[]) {
                Ok(()) => {
                    self.nodes.insert(id, node);
                    return &self.nodes[&id];
                }
                Err(LaunchError::Exited { log, .. }) if attempt < 3 && log.contains("ddress already in use") => {
                    eprintln!("node {id}: a port was taken before the node bound it; retrying on new ports");
                    let _ = fs::remove_dir_all(&node.data_dir);
                }
                Err(e) => panic!("{}", self.launch_failure(&node, e)),
            }
        }
        unreachable!("the start loop returns or panics")
    }

    /// Starts node `id` again with its config (same ports, same data dir), stopping it first
    /// (SIGTERM) if it runs, and waits for `PING` as [`TestCluster::start`] does.
    pub fn restart(&self, id: u64) {
        let node = self.node(id);
        if node.is_running() {
            self.stop(id);
        }
        if let Err(e) = self.launch(node, &[]) {
            panic!("{}", self.launch_failure(node, e));
        }
    }

    /// [`TestCluster::restart`] with extra command-line flags for this run only (such as
    /// `--force-new-cluster`).
    pub fn restart_with_flags(&self, id: u64, flags: &[&str]) {
        let node = self.node(id);
        if node.is_running() {
            self.stop(id);
        }
        if let Err(e) = self.launch(node, flags) {
            panic!("{}", self.launch_failure(node, e));
        }
    }

    /// Runs node `id` again with its config, expecting it to refuse to start: waits for the
    /// process to exit and returns how, with what this run printed. Panics if it still runs after
    /// `timeout`.
    pub fn restart_expect_exit(&self, id: u64, timeout: Duration) -> ExitReport {
        let node = self.node(id);
        assert!(!node.is_running(), "node {id} is running; stop or kill it first");
        let (child, offset) = self.spawn(node, &[]).unwrap_or_else(|e| panic!("spawn node {id}: {e}"));
        let status = self.expect_exit(child, timeout, || read_from(&node.log_path, offset));
        lock(&node.proc).last_exit = Some(status);
        ExitReport { status, output: read_from(&node.log_path, offset), config_path: node.config_path.clone() }
    }

    /// Runs the binary on `config_yaml` (written to `<dir>/refused-<n>/node.yaml`), expecting it
    /// to refuse to start: returns its exit status and output. Panics if it still runs after
    /// `timeout`.
    pub fn run_expect_exit(&self, config_yaml: &str, timeout: Duration) -> ExitReport {
        let dir = self.root.join(format!("refused-{}", self.scratch.fetch_add(1, Ordering::Relaxed)));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let config_path = dir.join("node.yaml");
        let log_path = dir.join("node.log");
        fs::write(&config_path, config_yaml).unwrap_or_else(|e| panic!("write {}: {e}", config_path.display()));
        let log = fs::File::create(&log_path).unwrap_or_else(|e| panic!("create {}: {e}", log_path.display()));
        let child = self
            .command(&config_path, &dir, log, &[], None)
            .unwrap_or_else(|e| panic!("spawn {} --config {}: {e}", self.binary.display(), config_path.display()));
        let status = self.expect_exit(child, timeout, || read_from(&log_path, 0));
        ExitReport { status, output: read_from(&log_path, 0), config_path }
    }

    /// A valid config for a node that is never started by the harness: fresh ports and a fresh
    /// data dir (`<dir>/scratch-<n>/data`). For tests that tamper with it and expect a refusal.
    pub fn fresh_config(&self, id: u64, options: &NodeOptions) -> String {
        let data_dir = self.root.join(format!("scratch-{}", self.scratch.fetch_add(1, Ordering::Relaxed))).join("data");
        render_config(id, loopback(free_port()), loopback(free_port()), &data_dir, options)
            .unwrap_or_else(|e| panic!("node {id}: {e}"))
    }

    /// Deletes node `id`'s data dir, so its next [`TestCluster::restart`] starts it as a fresh,
    /// empty node with the same id and addresses (to `JOIN` again after a `REMOVE`).
    pub fn wipe(&self, id: u64) {
        let node = self.node(id);
        assert!(!node.is_running(), "wipe node {id}: stop or kill it first");
        match fs::remove_dir_all(&node.data_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => panic!("wipe node {id}: remove {}: {e}", node.data_dir.display()),
        }
    }

    /// SIGKILLs node `id` and reaps it.
    pub fn kill(&self, id: u64) -> ExitStatus {
        let node = self.node(id);
        let mut proc = lock(&node.proc);
        let Some(mut child) = proc.child.take() else {
            panic!("kill node {id}: it is not running (last exit: {:?})", proc.last_exit);
        };
        let _ = child.kill();
        let status = child.wait().unwrap_or_else(|e| panic!("wait for node {id}: {e}"));
        proc.last_exit = Some(status);
        status
    }

    /// SIGSTOPs node `id` and returns once every one of its threads is stopped. `kill -STOP`
    /// only queues the signal: until the kernel has stopped each thread (on a loaded machine, some
    /// milliseconds later) the node can still answer, which a test that pauses a node and then
    /// expects silence must not race with.
    pub fn pause(&self, id: u64) {
        let pid = self.node(id).pid().unwrap_or_else(|| panic!("pause node {id}: it is not running"));
        send_signal(pid, "-STOP");
        if let Err((running, waited)) = try_wait_for(STOP_DEADLINE, || match threads_not_stopped(pid) {
            running if running.is_empty() => Ok(()),
            running => Err(running),
        }) {
            panic!("node {id} (pid {pid}) still had running threads {running:?} {waited:?} after SIGSTOP");
        }
    }

    /// SIGCONTs node `id` after [`pause`](Self::pause).
    pub fn resume(&self, id: u64) {
        let pid = self.node(id).pid().unwrap_or_else(|| panic!("resume node {id}: it is not running"));
        send_signal(pid, "-CONT");
    }

    /// SIGTERMs node `id` and waits up to [`STOP_DEADLINE`] for it to exit; SIGKILLs it after that
    /// (saying so on stderr). Returns its exit status.
    pub fn stop(&self, id: u64) -> ExitStatus {
        let node = self.node(id);
        let mut proc = lock(&node.proc);
        let Some(mut child) = proc.child.take() else {
            panic!("stop node {id}: it is not running (last exit: {:?})", proc.last_exit);
        };
        let term = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        if !term.as_ref().is_ok_and(ExitStatus::success) {
            eprintln!("node {id}: `kill -TERM {}` failed: {term:?}", child.id());
        }
        let status = match try_wait_for(STOP_DEADLINE, || child.try_wait().ok().flatten().ok_or(())) {
            Ok(status) => status,
            Err(_) => {
                eprintln!("node {id} still ran {STOP_DEADLINE:?} after SIGTERM; killing it");
                let _ = child.kill();
                child.wait().unwrap_or_else(|e| panic!("wait for node {id}: {e}"))
            }
        };
        proc.last_exit = Some(status);
        status
    }

    /// Points node `id`'s config at another state-machine module (the running node sees it on
    /// `MODULE RELOAD`, SIGHUP or its next start).
    pub fn set_config_module(&self, id: u64, module: &Path) {
        let text = path_text(module).unwrap_or_else(|e| panic!("{e}"));
        self.set_config_value(id, "fsm_module", Yaml::from(text));
    }

    /// Sets the top-level `key` of node `id`'s config to `yaml` (a YAML text), replacing what was
    /// there (the running node sees it on SIGHUP or its next start).
    pub fn set_config_yaml(&self, id: u64, key: &str, yaml: &str) {
        let value: Yaml = serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{key}: {e}"));
        self.set_config_value(id, key, value);
    }

    fn set_config_value(&self, id: u64, key: &str, value: Yaml) {
        let node = self.node(id);
        let text = fs::read_to_string(&node.config_path)
            .unwrap_or_else(|e| panic!("read {}: {e}", node.config_path.display()));
        let mut config: Yaml = serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("node {id}'s config: {e}"));
        match &mut config {
            Yaml::Mapping(map) => map.insert(Yaml::from(key), value),
            other => panic!("node {id}'s config is not a map: {other:?}"),
        };
        let yaml = serde_yaml_ng::to_string(&config).unwrap_or_else(|e| panic!("render YAML: {e}"));
        fs::write(&node.config_path, yaml).unwrap_or_else(|e| panic!("write {}: {e}", node.config_path.display()));
    }

    /// Sends node `id` SIGHUP (it reads its config again).
    pub fn sighup(&self, id: u64) {
        let pid = self.node(id).pid().unwrap_or_else(|| panic!("node {id} is not running"));
        let hup = Command::new("kill").args(["-HUP", &pid.to_string()]).status();
        assert!(hup.as_ref().is_ok_and(ExitStatus::success), "`kill -HUP {pid}` failed: {hup:?}");
    }

    /// `MODULE INFO` on node `id`, its scalar fields as text (booleans as `1`/`0`, RESP2).
    pub fn module_info(&self, id: u64) -> Result<BTreeMap<String, String>, String> {
        let reply = self.try_call(id, &["MODULE", "INFO"])?;
        let Value::Array(items) = &reply else { return Err(format!("MODULE INFO: {}", resp::show(&reply))) };
        Ok(items
            .chunks(2)
            .filter_map(|pair| {
                let value = match &pair.get(1)? {
                    Value::Int(n) => n.to_string(),
                    other => resp::text(other).unwrap_or_default(),
                };
                Some((resp::text(&pair[0])?, value))
            })
            .collect())
    }

    /// Sends `BOOTSTRAP <id> <raft_addr>` to node `id`; asserts `+OK`.
    pub fn bootstrap(&self, id: u64) {
        let node = self.node(id);
        let reply = self.call(id, &["BOOTSTRAP", &id.to_string(), &node.raft_addr.to_string()]);
        assert_eq!(resp::show(&reply), "+OK", "BOOTSTRAP node {id}");
    }

    /// Sends `JOIN <id> <raft_addr> <redis_addr>` for node `id` to node `via`; asserts `+OK`
    /// (the node is a voter then).
    pub fn join(&self, id: u64, via: u64) {
        let reply = self.try_join(id, via).unwrap_or_else(|e| panic!("JOIN node {id} via node {via}: {e}"));
        assert_eq!(resp::show(&reply), "+OK", "JOIN node {id} via node {via}");
    }

    /// [`TestCluster::join`] that returns the reply (error replies as values; connection
    /// failures `Err`), waiting up to [`JOIN_TIMEOUT`]. On `+OK` the harness counts node `id` as
    /// a member again.
    pub fn try_join(&self, id: u64, via: u64) -> Result<Value, String> {
        let node = self.node(id);
        let args = ["JOIN".to_owned(), id.to_string(), node.raft_addr.to_string(), node.redis_addr.to_string()];
        let reply = self.call_slow(via, &args)?;
        if reply == Value::Okay {
            lock(&self.removed).remove(&id);
        }
        Ok(reply)
    }

    /// Sends `REMOVE <id>` to node `via`; asserts `+OK`. The harness then leaves node `id` out of
    /// its cluster-wide waits (it may keep running).
    pub fn remove(&self, id: u64, via: u64) {
        let reply = self.try_remove(id, via).unwrap_or_else(|e| panic!("REMOVE node {id} via node {via}: {e}"));
        assert_eq!(resp::show(&reply), "+OK", "REMOVE node {id} via node {via}");
    }

    /// [`TestCluster::remove`] that returns the reply, as [`TestCluster::try_join`] does. On
    /// `+OK` the harness leaves node `id` out of its cluster-wide waits.
    pub fn try_remove(&self, id: u64, via: u64) -> Result<Value, String> {
        let reply = self.call_slow(via, &["REMOVE".to_owned(), id.to_string()])?;
        if reply == Value::Okay {
            lock(&self.removed).insert(id);
        }
        Ok(reply)
    }

    /// One command on a fresh connection to node `via` that may take up to [`JOIN_TIMEOUT`].
    fn call_slow(&self, via: u64, args: &[String]) -> Result<Value, String> {
        let mut con = resp::connect_as(
            self.node(via).redis_addr,
            ProtocolVersion::RESP2,
            false,
            JOIN_TIMEOUT,
            self.credentials(),
        )
        .map_err(|e| format!("connect to node {via}: {e}"))?;
        resp::try_call(&mut con, args).map_err(|e| format!("node {via}: {}: {e}", resp::show_args(args)))
    }

    /// A RESP2 connection to node `id` (read and write timeouts [`resp::CLIENT_TIMEOUT`]).
    pub fn client(&self, id: u64) -> redis::Connection {
        resp::connect_as(
            self.node(id).redis_addr,
            ProtocolVersion::RESP2,
            true,
            resp::CLIENT_TIMEOUT,
            self.credentials(),
        )
        .unwrap_or_else(|e| panic!("connect to node {id}: {e}"))
    }

    /// A RESP3 connection to node `id` (the client sends `HELLO 3` first).
    pub fn client_resp3(&self, id: u64) -> redis::Connection {
        resp::connect_as(
            self.node(id).redis_addr,
            ProtocolVersion::RESP3,
            true,
            resp::CLIENT_TIMEOUT,
            self.credentials(),
        )
        .unwrap_or_else(|e| panic!("connect to node {id} with RESP3: {e}"))
    }

    /// A raw TCP connection to node `id`'s Redis port.
    pub fn raw(&self, id: u64) -> RawConn {
        RawConn::connect(self.node(id).redis_addr).unwrap_or_else(|e| panic!("connect to node {id}: {e}"))
    }

    /// One command on a fresh connection to node `id`; error replies are values, connection
    /// failures `Err`.
    pub fn try_call<A: AsRef<[u8]>>(&self, id: u64, args: &[A]) -> Result<Value, String> {
        let mut con = resp::connect_as(
            self.node(id).redis_addr,
            ProtocolVersion::RESP2,
            false,
            resp::CLIENT_TIMEOUT,
            self.credentials(),
        )
        .map_err(|e| format!("connect to node {id}: {e}"))?;
        resp::try_call(&mut con, args).map_err(|e| format!("node {id}: {}: {e}", resp::show_args(args)))
    }

    /// [`TestCluster::try_call`] that panics on a connection failure.
    pub fn call<A: AsRef<[u8]>>(&self, id: u64, args: &[A]) -> Value {
        self.try_call(id, args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `INFO raft module` of node `id` as `field → value`.
    pub fn info(&self, id: u64) -> Result<BTreeMap<String, String>, String> {
        let reply = self.try_call(id, &["INFO", "raft", "module"])?;
        let text = resp::text(&reply).ok_or_else(|| format!("node {id}: INFO: {}", resp::show(&reply)))?;
        Ok(parse_info(&text))
    }

    /// One field of node `id`'s `INFO raft module`; panics if it is missing.
    pub fn info_field(&self, id: u64, field: &str) -> String {
        let info = self.info(id).unwrap_or_else(|e| panic!("{e}"));
        info.get(field).cloned().unwrap_or_else(|| panic!("node {id}: no {field} in INFO: {info:?}"))
    }

    /// A numeric field of `INFO raft module` (an empty value reads as 0).
    pub fn info_number(&self, id: u64, field: &str) -> Result<u64, String> {
        let info = self.info(id)?;
        let value = info.get(field).ok_or_else(|| format!("node {id}: no {field} in INFO: {info:?}"))?;
        if value.is_empty() {
            return Ok(0);
        }
        value.parse().map_err(|e| format!("node {id}: {field}:{value}: {e}"))
    }

    /// `LEADER` as node `id` sees it: `Some((leader id, leader's redis address))`, or `None` when
    /// it answers an error (no leader, not in a cluster).
    pub fn leader_seen_by(&self, id: u64) -> Result<Option<(u64, String)>, String> {
        match self.try_call(id, &["LEADER"])? {
            Value::Array(items) => match items.as_slice() {
                [Value::Int(leader), addr] if resp::text(addr).is_some() && *leader > 0 => {
                    Ok(Some((leader.unsigned_abs(), resp::text(addr).unwrap_or_default())))
                }
                _ => Err(format!("node {id}: LEADER: unexpected {}", resp::show(&Value::Array(items)))),
            },
            Value::ServerError(_) => Ok(None),
            other => Err(format!("node {id}: LEADER: unexpected {}", resp::show(&other))),
        }
    }

    /// `NODES` as node `id` sees it.
    pub fn members(&self, id: u64) -> Result<Vec<Member>, String> {
        let reply = self.try_call(id, &["NODES"])?;
        parse_nodes(&reply).map_err(|e| format!("node {id}: NODES {}: {e}", resp::show(&reply)))
    }

    /// The leader, once there is one that serves: a running member that names itself in
    /// `LEADER`, while no running member names another. Panics after `deadline`.
    pub fn leader(&self, deadline: Duration) -> u64 {
        self.wait_for("a leader every running member agrees on", deadline, || {
            let mut seen = BTreeMap::new();
            for id in self.running_members() {
                seen.insert(id, self.leader_seen_by(id));
            }
            let named: BTreeSet<u64> =
                seen.values().filter_map(|s| s.as_ref().ok().and_then(Option::as_ref).map(|(l, _)| *l)).collect();
            let [leader] = named.into_iter().collect::<Vec<_>>()[..] else {
                return Err(format!("LEADER by node: {seen:?}"));
            };
            match seen.get(&leader) {
                Some(Ok(Some((l, addr)))) if *l == leader => {
                    let expected = self.node(leader).redis_addr.to_string();
                    if *addr == expected {
                        Ok(leader)
                    } else {
                        Err(format!("leader {leader} gives its address as {addr}, not {expected}"))
                    }
                }
                _ => Err(format!(
                    "node {leader} is named but is not a running member naming itself; LEADER by node: {seen:?}"
                )),
            }
        })
    }

    /// Waits until `NODES` on every running node of `ids` lists exactly `ids`, all voters with the
    /// harness's addresses, and one leader that all agree on; returns the leader.
    pub fn wait_members(&self, ids: &[u64]) -> u64 {
        let expected: BTreeSet<u64> = ids.iter().copied().collect();
        self.wait_for(&format!("NODES to show voters {ids:?} and one leader on every node"), WAIT_DEADLINE, || {
            let mut leaders = BTreeSet::new();
            for &id in ids {
                if !self.node(id).is_running() {
                    continue;
                }
                let members = self.members(id)?;
                let listed: BTreeSet<u64> = members.iter().map(|m| m.id).collect();
                if listed != expected || members.len() != ids.len() {
                    return Err(format!("node {id} lists {members:?}"));
                }
                for m in &members {
                    let node = self.node(m.id);
                    if !m.voter
                        || m.raft_addr != node.raft_addr.to_string()
                        || m.redis_addr != node.redis_addr.to_string()
                    {
                        return Err(format!(
                            "node {id} lists {m:?}; expected a voter at {} / {}",
                            node.raft_addr, node.redis_addr
                        ));
                    }
                }
                match members.iter().filter(|m| m.leader).collect::<Vec<_>>().as_slice() {
                    [leader] => leaders.insert(leader.id),
                    _ => return Err(format!("node {id} does not see exactly one leader: {members:?}")),
                };
            }
            match leaders.iter().collect::<Vec<_>>().as_slice() {
                [leader] => Ok(**leader),
                _ => Err(format!("the nodes disagree on the leader: {leaders:?}")),
            }
        })
    }

    /// `DEBUG DIGEST` of node `id`.
    pub fn digest(&self, id: u64) -> Result<String, String> {
        let reply = self.try_call(id, &["DEBUG", "DIGEST"])?;
        match resp::text(&reply) {
            Some(digest) if !matches!(reply, Value::ServerError(_)) => Ok(digest),
            _ => Err(format!("node {id}: DEBUG DIGEST: {}", resp::show(&reply))),
        }
    }

    /// Waits until every running member reports the same `raft_last_applied_index` and none has
    /// log entries past it (so everything logged is applied everywhere); returns that index.
    pub fn wait_applied_equal(&self) -> u64 {
        self.wait_for("the same last applied index on every running member", WAIT_DEADLINE, || {
            let mut applied = BTreeMap::new();
            let mut last_log = 0;
            for id in self.running_members() {
                applied.insert(id, self.info_number(id, "raft_last_applied_index")?);
                last_log = last_log.max(self.info_number(id, "raft_last_log_index")?);
            }
            let values: BTreeSet<u64> = applied.values().copied().collect();
            match values.iter().collect::<Vec<_>>().as_slice() {
                [index] if **index >= last_log => Ok(**index),
                _ => Err(format!("last applied by node: {applied:?}, highest last log index: {last_log}")),
            }
        })
    }

    /// Waits until every running member has applied the same index and reports the same
    /// `DEBUG DIGEST` there; returns both.
    pub fn wait_converged(&self) -> (u64, String) {
        self.wait_for("the same applied index and state digest on every running member", WAIT_DEADLINE, || {
            let mut seen = BTreeMap::new();
            for id in self.running_members() {
                let before = self.info_number(id, "raft_last_applied_index")?;
                let digest = self.digest(id)?;
                let after = self.info_number(id, "raft_last_applied_index")?;
                if before != after {
                    return Err(format!("node {id} is still applying ({before} → {after})"));
                }
                seen.insert(id, (after, digest));
            }
            let states: BTreeSet<&(u64, String)> = seen.values().collect();
            match states.iter().collect::<Vec<_>>().as_slice() {
                [state] => Ok((**state).clone()),
                _ => Err(format!("(applied, digest) by node: {seen:?}")),
            }
        })
    }

    /// [`wait_for`], with every node's status added to the panic message (their log tails follow
    /// from `Drop`).
    pub fn wait_for<T, E: Debug>(&self, what: &str, deadline: Duration, f: impl FnMut() -> Result<T, E>) -> T {
        try_wait_for(deadline, f).unwrap_or_else(|(last, elapsed)| {
            panic!("timed out after {elapsed:?} waiting for {what}; last observation: {last:?}\n{}", self.statuses())
        })
    }

    /// [`wait_until`] with node statuses on failure.
    pub fn wait_until<T>(&self, what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
        self.wait_for(what, deadline, || f().ok_or("the condition was still false"))
    }

    /// One line per node: its status and addresses.
    pub fn statuses(&self) -> String {
        self.nodes
            .values()
            .map(|n| format!("node {}: {} (redis {}, raft {})", n.id, n.status(), n.redis_addr, n.raft_addr))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The last [`LOG_TAIL_LINES`] lines of every node's log.
    pub fn log_tails(&self) -> String {
        self.nodes
            .values()
            .map(|n| {
                format!(
                    "----- node {} ({}), last {LOG_TAIL_LINES} lines of {} -----\n{}",
                    n.id,
                    n.status(),
                    n.log_path.display(),
                    n.log_tail(LOG_TAIL_LINES)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn command(
        &self,
        config_path: &Path,
        cwd: &Path,
        log: fs::File,
        flags: &[&str],
        netns: Option<&str>,
    ) -> io::Result<Child> {
        // `ip netns exec` enters the namespace and execs the node: the child is the node itself.
        let mut command = match netns {
            Some(ns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", ns]).arg(&self.binary);
                command
            }
            None => Command::new(&self.binary),
        };
        command
            .arg("--config")
            .arg(config_path)
            .args(flags)
            .current_dir(cwd)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // A freshly written executable can be briefly "busy" (ETXTBSY) while another thread's
        // fork still holds its write descriptor; that passes within milliseconds.
        const TEXT_FILE_BUSY: i32 = 26;
        let mut attempts = 0;
        loop {
            match command.spawn() {
                Err(e) if e.raw_os_error() == Some(TEXT_FILE_BUSY) && attempts < 50 => {
                    attempts += 1;
                    std::thread::sleep(POLL);
                }
                other => return other,
            }
        }
    }

    /// Spawns `node` with its output appended to its log; returns the child and where this run's
    /// output starts in the log.
    fn spawn(&self, node: &Node, flags: &[&str]) -> io::Result<(Child, u64)> {
        let mut log = OpenOptions::new().create(true).append(true).open(&node.log_path)?;
        let offset = log.seek(SeekFrom::End(0))?;
        writeln!(log, "===== redraft-tests: {} --config {} =====", self.binary.display(), node.config_path.display())?;
        Ok((self.command(&node.config_path, &node.dir, log, flags, node.netns.as_deref())?, offset))
    }

    /// Spawns `node` and waits until it answers `PING`; on success its child is stored.
    fn launch(&self, node: &Node, flags: &[&str]) -> Result<(), LaunchError> {
        let (mut child, offset) = self.spawn(node, flags).map_err(LaunchError::Spawn)?;
        let outcome = try_wait_for(self.start_deadline, || {
            if let Ok(Some(status)) = child.try_wait() {
                return Ok(Err(status));
            }
            let ready = if node.options.client_tls {
                read_from(&node.log_path, offset).contains("node ready")
            } else {
                ping(node.redis_addr)
            };
            if ready {
                // Whoever answered, our node must still be alive (not lost the port to another).
                return match child.try_wait() {
                    Ok(Some(status)) => Ok(Err(status)),
                    _ => Ok(Ok(())),
                };
            }
            Err(())
        });
        let mut proc = lock(&node.proc);
        match outcome {
            Ok(Ok(())) => {
                proc.child = Some(child);
                Ok(())
            }
            Ok(Err(status)) => {
                proc.last_exit = Some(status);
                Err(LaunchError::Exited { status, log: read_from(&node.log_path, offset) })
            }
            Err(_) => {
                let _ = child.kill();
                proc.last_exit = child.wait().ok();
                Err(LaunchError::NoPong { log: read_from(&node.log_path, offset) })
            }
        }
    }

    fn launch_failure(&self, node: &Node, error: LaunchError) -> String {
        let id = node.id;
        match error {
            LaunchError::Spawn(e) => format!(
                "cannot spawn node {id} ({} --config {}): {e}",
                self.binary.display(),
                node.config_path.display()
            ),
            LaunchError::Exited { status, log } => {
                format!("node {id} exited during startup with {status}\n----- its output -----\n{}", tail(&log, 200))
            }
            LaunchError::NoPong { log } => format!(
                "node {id} did not answer PING on {} within {:?}; killed it\n----- its output -----\n{}",
                node.redis_addr,
                self.start_deadline,
                tail(&log, 200)
            ),
        }
    }

    fn expect_exit(&self, mut child: Child, timeout: Duration, output: impl Fn() -> String) -> ExitStatus {
        match try_wait_for(timeout, || child.try_wait().ok().flatten().ok_or(())) {
            Ok(status) => status,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the node was expected to refuse to start, but still ran after {timeout:?}; killed it\n\
                     ----- its output -----\n{}",
                    tail(&output(), 200)
                );
            }
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for node in self.nodes.values() {
            let mut proc = lock(&node.proc);
            Node::reap(&mut proc);
            if let Some(mut child) = proc.child.take() {
                let _ = child.kill();
                let _ = child.wait();
                proc.killed_at_drop = true;
            }
        }
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails());
            if let Some(tmp) = self.tmp.take() {
                eprintln!("----- kept the cluster's files in {} -----", tmp.keep().display());
            }
        }
    }
}

/// Whether `addr` answers `PING` with `+PONG`, or with `-NOAUTH` when the node requires
/// authentication (short timeouts).
pub fn ping(addr: SocketAddr) -> bool {
    let attempt = || -> io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.set_write_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(b"*1\r\n$4\r\nPING\r\n")?;
        let mut reply = [0; 7];
        stream.read_exact(&mut reply)?;
        Ok(&reply == b"+PONG\r\n" || &reply == b"-NOAUTH")
    };
    attempt().unwrap_or(false)
}

fn read_from(path: &Path, offset: u64) -> String {
    let mut bytes = Vec::new();
    let read = fs::File::open(path).and_then(|mut f| {
        f.seek(SeekFrom::Start(offset))?;
        f.read_to_end(&mut bytes)
    });
    match read {
        Ok(_) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// `INFO` text as `field → value` (section headers and blank lines skipped).
pub fn parse_info(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A `NODES` reply as members.
pub fn parse_nodes(reply: &Value) -> Result<Vec<Member>, String> {
    let Value::Array(rows) = reply else { return Err("not an array".into()) };
    rows.iter()
        .map(|row| match row {
            Value::Array(fields) => match fields.as_slice() {
                [Value::Int(id), raft, redis, role, Value::Int(leader)] => {
                    let text = |v: &Value| resp::text(v).ok_or_else(|| format!("not a string: {}", resp::show(v)));
                    let role = text(role)?;
                    if role != "voter" && role != "learner" {
                        return Err(format!("role {role:?} is neither voter nor learner"));
                    }
                    if *leader != 0 && *leader != 1 {
                        return Err(format!("leader flag {leader} is neither 0 nor 1"));
                    }
                    Ok(Member {
                        id: u64::try_from(*id).map_err(|e| format!("id {id}: {e}"))?,
                        raft_addr: text(raft)?,
                        redis_addr: text(redis)?,
                        voter: role == "voter",
                        leader: *leader == 1,
                    })
                }
                _ => Err(format!("row {} is not [id, raft_addr, redis_addr, role, leader]", resp::show(row))),
            },
            other => Err(format!("row {} is not an array", resp::show(other))),
        })
        .collect()
}

#[cfg(test)]
mod tests;
