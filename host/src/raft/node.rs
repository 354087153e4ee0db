//! One running Redraft node: the stores, openraft, the peer transport, and the two batchers that
//! make throughput (see `docs/DESIGN.md`, "Request paths").
//!
//! * **Writes** go to one batcher task. It waits for a free in-flight slot, takes every write
//!   queued meanwhile (up to the configured count and bytes) and proposes them as one
//!   [`Request::Timed`] entry, stamped with the leader's clock. While an entry is being appended and fsynced, the next one
//!   fills up: one fsync and one AppendEntries round serve many clients. It is proposed once
//!   the previous one is on the leader's disk, so with more than one slot its append overlaps
//!   the previous entry's replication, commit and apply.
//! * **Linearizable reads** go to another batcher: one read-index round (a quorum heartbeat on the
//!   leader, or one RPC to the leader from a follower) serves every read queued when it starts;
//!   each then waits until the local state machine has applied up to that index and runs against
//!   the local store.
//!
//! * **Housekeeping**: the leader asks the module now and then whether it has work due (keys
//!   whose time ran out) and, if so, proposes a [`Request::Tick`] entry that every replica
//!   applies at the same time.
//!
//! What this module does not do: decide between forwarding and redirecting (the server does),
//! or speak RESP.

use super::log_store::LogStore;
use super::modules::{Configured, ModuleConfig};
use super::network::{Identity, PeerNetwork, ReadIndexError, TransportError};
use super::state_machine::{ActiveModule, SharedState, StateMachine};
use super::{Member, ModuleChange, NodeId, Request, Response, TimedCommands, TypeConfig, WriteCounters, lock};
use crate::config::{Config, ConfigSource};
use crate::runtime::{FsmEngine, FsmModule, Runtime, RuntimeLimits};
use crate::storage::{self, Backend, SharedStore};
use fsm_sdk::Reply;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, Raft, RaftMetrics, ServerState, SnapshotPolicy};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Why a client request could not be served. Each becomes one Redis error reply in one place,
/// the server's `cluster_error`, which adds the error code (`UNKNOWN`, `TIMEOUT`, `CLUSTERDOWN`,
/// `ERR`, `MOVED`): the texts here carry none.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterError {
    /// The node is not part of a cluster yet (`BOOTSTRAP` or `JOIN` it).
    #[error("No Raft Cluster")]
    NoCluster,
    /// No leader is known (an election is running, or no quorum).
    #[error("No raft leader")]
    NoLeader,
    /// Another node leads; the request was not applied here.
    #[error("node {leader} is the leader")]
    NotLeader {
        /// The leader's id.
        leader: NodeId,
        /// The leader's Redis address (empty if it joined without one).
        redis_addr: String,
    },
    /// A write was proposed but its fate is unknown: it may or may not be applied.
    #[error("{0}")]
    Unknown(String),
    /// A read could not confirm it is up to date in time.
    #[error("{0}")]
    Timeout(String),
    /// The leader this node knows of cannot be reached; nothing was asked of it.
    #[error("{0}")]
    Unreachable(String),
    /// A cluster command was refused (the text says why).
    #[error("{0}")]
    Refused(String),
    /// The node cannot serve: Raft stopped or the store failed.
    #[error("{0}")]
    Fatal(String),
}

/// Why a node could not start. Each message names what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A file or directory problem.
    #[error("{0}")]
    Io(String),
    /// The state-machine module or store refused.
    #[error("{0}")]
    StateMachine(String),
    /// The node must not run with this data dir (another id, or a memory node restarting).
    #[error("{0}")]
    Identity(String),
    /// openraft refused the configuration or failed to start.
    #[error("raft: {0}")]
    Raft(String),
}

struct WriteJob {
    command: Vec<u8>,
    reply: oneshot::Sender<Result<Reply, ClusterError>>,
}

struct ReadJob {
    command: Vec<u8>,
    reply: oneshot::Sender<Result<Reply, ClusterError>>,
}

/// Tunables the batchers and waits use, from the config.
#[derive(Debug, Clone, Copy)]
struct Tuning {
    batch_commands_max: usize,
    batch_bytes_max: usize,
    writes_in_flight_max: usize,
    read_timeout: Duration,
    write_timeout: Duration,
    election_timeout: Duration,
    /// A joining learner not heard from for this long is taken as down (see [`JOIN_SILENCE_MIN`]).
    join_silence: Duration,
}

/// A running node. Cheap to share (`Arc`).
pub struct Node {
    id: NodeId,
    member: Member,
    raft: Raft<TypeConfig>,
    identity: Arc<Identity>,
    network: PeerNetwork,
    /// The module this node's config names, and whether it asks the cluster to switch to it.
    modules: ModuleConfig,
    /// One module proposal at a time.
    switching: tokio::sync::Mutex<()>,
    /// The last log index at start: reads served as leader wait at least this far.
    read_floor: u64,
    store: SharedStore,
    reader: Mutex<Runtime>,
    shared: Arc<SharedState>,
    log: LogStore,
    writes: mpsc::Sender<WriteJob>,
    reads: mpsc::Sender<ReadJob>,
    /// `READONLY` reads: their own queue, so a slow read-index round never holds them up.
    stale_reads: mpsc::Sender<ReadJob>,
    tuning: Tuning,
}

/// How long `JOIN` waits for a new learner to catch up before giving up (it stays a learner).
const JOIN_CATCH_UP_SECS: u64 = 120;
/// How long `JOIN` waits for the new node to answer its probe before refusing it.
const JOIN_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// A learner that answers no RPC for this long (or for two snapshot chunk timeouts, if longer)
/// while catching up is taken as down, and `JOIN` gives up on it.
const JOIN_SILENCE_MIN: Duration = Duration::from_secs(10);
/// How long `JOIN` waits, once the node is a voter, for it to apply what was committed when its
/// promotion was decided (after which it can serve reads).
const JOIN_SERVING_TIMEOUT: Duration = Duration::from_secs(30);

/// Checks the data dir belongs to this node id, and that a memory node is not restarting.
fn claim_data_dir(dir: &Path, id: NodeId, backend: Backend) -> Result<(), StartError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| StartError::Io(format!("cannot create data_dir {}: {e}", dir.display())))?;
    let marker = dir.join("node_id");
    match std::fs::read_to_string(&marker) {
        Ok(text) => {
            let recorded = text.trim();
            if recorded != id.to_string() {
                return Err(StartError::Identity(format!(
                    "data_dir {} belongs to node {recorded}, not node {id}: node ids are never reused; give each \
                     node its own data_dir",
                    dir.display()
                )));
            }
            if backend == Backend::Memory {
                return Err(StartError::Identity(format!(
                    "node {id} ran before with store_backend: memory, so it lost its Raft log and vote when it \
                     stopped. Rejoining under the same id could let it vote twice and lose acknowledged writes. \
                     REMOVE {id} from the cluster and JOIN a node with a new id and an empty data_dir (or delete \
                     {} if its cluster is gone)",
                    dir.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Written to a temporary file, synced, then renamed: a crash never leaves it empty.
            let write = || -> std::io::Result<()> {
                let temp = dir.join("node_id.tmp");
                let mut file = std::fs::File::create(&temp)?;
                std::io::Write::write_all(&mut file, format!("{id}\n").as_bytes())?;
                file.sync_all()?;
                std::fs::rename(&temp, &marker)?;
                std::fs::File::open(dir)?.sync_all()
            };
            write().map_err(|e| StartError::Io(format!("cannot write {}: {e}", marker.display())))
        }
        Err(e) => Err(StartError::Io(format!("cannot read {}: {e}", marker.display()))),
    }
}

/// A fresh cluster id: unique, not secret (it only keeps clusters from talking to each other).
fn new_cluster_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    for salt in 0..2u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(salt);
        h.write_u32(std::process::id());
        if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            h.write_u128(t.as_nanos());
        }
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

impl Node {
    /// Opens the stores, loads the module, starts openraft and the peer listener, and (with
    /// `bootstrap: true` on a fresh node) initialises a one-node cluster. `source` is where the
    /// config came from, read again on `MODULE RELOAD` and SIGHUP (without one, only the module
    /// file is read again).
    pub async fn start(config: &Config, source: Option<ConfigSource>) -> Result<Arc<Node>, StartError> {
        claim_data_dir(&config.data_dir, config.id, config.store_backend)?;
        let limits = RuntimeLimits {
            fuel_per_apply: config.limits.fuel_per_apply,
            memory_bytes_max: usize::try_from(config.limits.memory_bytes_max).unwrap_or(usize::MAX),
            ..RuntimeLimits::default()
        };
        let engine = FsmEngine::new(limits).map_err(|e| StartError::StateMachine(e.to_string()))?;
        let modules = ModuleConfig::open(engine.clone(), &config.fsm_module, source, &config.data_dir)?;
        let configured = modules.current().module;
        // Applies need no fsync of their own: every applied entry is already durable in the log,
        // and state + last-applied commit atomically, so a crash only rolls back to a consistent
        // earlier point that the log replays. Snapshots sync first (see state_machine).
        let store = storage::open(config.store_backend, &config.data_dir.join("state.redb"), false)
            .map_err(|e| StartError::StateMachine(format!("cannot open the state store: {e}")))?;
        // The store's recorded module is the cluster's, whatever the config names; a store without
        // one waits for the cluster's first module entry.
        let applier = Runtime::open_replica(configured.clone(), store.clone())
            .map_err(|e| StartError::StateMachine(e.to_string()))?;
        let reader = Runtime::attach(applier.module().clone(), store.clone())
            .map_err(|e| StartError::StateMachine(e.to_string()))?;
        let log = if config.store_backend.log_on_disk() {
            LogStore::open_disk(&config.data_dir)
                .map_err(|e| StartError::Io(format!("cannot open the raft log: {e}")))?
        } else {
            LogStore::memory()
        }
        .with_append_bytes_max(usize::try_from(config.raft.append_entries_bytes_max).unwrap_or(usize::MAX));
        if config.force_new_cluster {
            let member = Member { raft_addr: config.raft_addr.to_string(), redis_addr: config.redis_addr.to_string() };
            let index = log
                .force_single_voter(config.id, member)
                .map_err(|e| StartError::Raft(format!("--force-new-cluster refused: {e}")))?;
            tracing::warn!(
                id = config.id,
                index,
                "--force-new-cluster: this node is now the only voter of its cluster (membership entry at index \
                 {index}); JOIN fresh nodes with new ids, and never restart the lost ones on their old data"
            );
        }
        let chunk_bytes = usize::try_from(config.snapshot.chunk_bytes).unwrap_or(usize::MAX);
        let log_state = log.state().map_err(|e| StartError::Io(format!("cannot read the raft log: {e}")))?;
        let log_purged = log_state.last_purged_log_id;
        // Reads served as leader wait at least this far (see `super::read_index`).
        let read_floor = log_state.last_log_id.map_or(0, |l| l.index);
        let (machine, shared) =
            StateMachine::new(applier, modules.cell(), &config.data_dir.join("snapshots"), chunk_bytes, log_purged)
                .map_err(|e| StartError::StateMachine(format!("cannot open the state machine: {e}")))?;
        let machine = machine.with_counters(log.counters());
        // Verifying and recording a received snapshot reads it whole once: allow as long as a
        // chunk may take, several times over, and never less than 30 s.
        let purge_wait =
            Duration::from_millis(config.raft.snapshot_chunk_timeout_ms.saturating_mul(3)).max(Duration::from_secs(30));
        log.limit_purge_to(shared.recoverable.subscribe(), purge_wait);

        let raft_config = openraft::Config {
            cluster_name: "redraft".into(),
            heartbeat_interval: config.raft.heartbeat_interval_ms,
            election_timeout_min: config.raft.election_timeout_min_ms,
            election_timeout_max: config.raft.election_timeout_max_ms,
            install_snapshot_timeout: config.raft.snapshot_chunk_timeout_ms,
            max_payload_entries: config.raft.append_entries_max,
            snapshot_policy: match config.snapshot.logs_since_last {
                0 => SnapshotPolicy::Never,
                n => SnapshotPolicy::LogsSinceLast(n),
            },
            snapshot_max_chunk_size: config.snapshot.chunk_bytes,
            max_in_snapshot_log_to_keep: config.snapshot.logs_kept_after,
            ..openraft::Config::default()
        }
        .validate()
        .map_err(|e| StartError::Raft(e.to_string()))?;

        let secret = config.cluster_secret().map_err(|e| StartError::Io(e.to_string()))?;
        let peer_tls = config.peer_tls().map_err(|e| StartError::Io(e.to_string()))?;
        let identity = Identity::new(config.id, log.clone(), secret, peer_tls)
            .map_err(|e| StartError::Io(format!("cannot read the raft log: {e}")))?;
        let network = PeerNetwork::new(identity.clone(), Duration::from_millis(config.raft.rpc_timeout_ms));
        let listener = TcpListener::bind(config.raft_addr)
            .await
            .map_err(|e| StartError::Io(format!("cannot listen on raft_addr {}: {e}", config.raft_addr)))?;
        let raft = Raft::new(config.id, Arc::new(raft_config), network.clone(), log.clone(), machine)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        let read_timeout = Duration::from_millis(config.limits.read_timeout_ms);
        let contract: Arc<[u8]> = configured.contract().encode().into();
        tokio::spawn(super::network::serve(
            listener,
            raft.clone(),
            identity.clone(),
            read_timeout,
            read_floor,
            contract,
        ));

        let tuning = Tuning {
            batch_commands_max: config.limits.write_batch_commands_max.max(1),
            batch_bytes_max: usize::try_from(config.limits.write_batch_bytes_max).unwrap_or(usize::MAX),
            writes_in_flight_max: config.limits.writes_in_flight_max.max(1),
            read_timeout,
            write_timeout: Duration::from_millis(config.limits.write_timeout_ms),
            election_timeout: Duration::from_millis(config.raft.election_timeout_max_ms),
            join_silence: Duration::from_millis(config.raft.snapshot_chunk_timeout_ms.saturating_mul(2))
                .max(JOIN_SILENCE_MIN),
        };
        let (writes, write_rx) = mpsc::channel(tuning.batch_commands_max * 4);
        let (reads, read_rx) = mpsc::channel(4096);
        let (stale_reads, stale_rx) = mpsc::channel(4096);
        let node = Arc::new(Node {
            id: config.id,
            member: Member { raft_addr: config.raft_addr.to_string(), redis_addr: config.redis_addr.to_string() },
            raft: raft.clone(),
            identity,
            network,
            modules,
            switching: tokio::sync::Mutex::new(()),
            read_floor,
            store,
            reader: Mutex::new(reader),
            shared,
            log,
            writes,
            reads,
            stale_reads,
            tuning,
        });
        tokio::spawn(write_loop(raft, write_rx, tuning, node.log.flushed(), node.log.counters()));
        if config.snapshot.log_bytes_since_last > 0 {
            tokio::spawn(snapshot_by_bytes_loop(
                node.raft.clone(),
                node.log.counters(),
                config.snapshot.log_bytes_since_last,
            ));
        }
        tokio::spawn(read_loop(Arc::downgrade(&node), read_rx));
        tokio::spawn(stale_read_loop(Arc::downgrade(&node), stale_rx));
        tokio::spawn(module_loop(Arc::downgrade(&node), node.raft.metrics(), node.modules.wakeup.clone()));
        tokio::spawn(tick_loop(Arc::downgrade(&node)));
        if node.modules.changed_since_last_start() {
            let configured = node.modules.current().module;
            if node.active(|a| a.module.is_some()) && !node.is_active(&configured) {
                tracing::info!("fsm_module changed since the last start: proposing it when this node leads");
                node.modules.want(configured, node.last_module_entry());
            } else {
                node.modules.settle(None);
            }
        }
        let pristine = node.log.is_pristine().map_err(|e| StartError::Io(format!("cannot read the raft log: {e}")))?;
        if config.bootstrap && pristine {
            let raft_addr = node.member.raft_addr.clone();
            node.bootstrap(config.id, &raft_addr).await.map_err(|e| StartError::Raft(e.to_string()))?;
        }
        Ok(node)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// This node's addresses.
    pub fn member(&self) -> &Member {
        &self.member
    }

    /// The cluster's active module as this node has applied it, or (before the cluster has one)
    /// the configured module: its command table routes and describes commands.
    pub fn module(&self) -> Arc<FsmModule> {
        self.active(|active| active.module.clone()).unwrap_or_else(|| self.modules.current().module)
    }

    /// Reads the cluster's active module and its history (`MODULE INFO`, `MODULE HISTORY`).
    pub fn active<T>(&self, read: impl FnOnce(&ActiveModule) -> T) -> T {
        read(&self.shared.module.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The module this node's config names.
    pub fn configured_module(&self) -> Configured {
        self.modules.current()
    }

    /// The module this node asks the cluster to switch to, if any (`INFO`).
    pub fn wanted_module(&self) -> Option<Arc<FsmModule>> {
        self.modules.wanted().map(|w| w.module)
    }

    /// `MODULE RELOAD`: reads the config again and switches the cluster to the module it names
    /// (validated first: it loads, speaks our ABI, imports only what we allow). On the leader it
    /// proposes the switch and returns the outcome once applied; a follower returns what the
    /// leader must be sent ([`Reload::Forward`]).
    pub async fn reload_module(&self) -> Result<Reload, ClusterError> {
        let configured = self.reread_config().map_err(|e| ClusterError::Refused(e.to_string()))?;
        // An explicit reload replaces whatever this node asked for before.
        self.modules.settle(None);
        match self.route_to_leader() {
            Ok(()) => self.switch_to(configured.module, None).await.map(Reload::Done),
            Err(ClusterError::NotLeader { redis_addr, .. }) if !redis_addr.is_empty() => {
                self.read_barrier().await?;
                if self.is_active(&configured.module) {
                    return Ok(Reload::Done(already_active(&configured.module)));
                }
                Ok(Reload::Forward { redis_addr, bytes: configured.module.bytes().to_vec() })
            }
            Err(e) => Err(e),
        }
    }

    /// A follower's `MODULE RELOAD`, on the leader: validates the module it sent and switches to
    /// it.
    pub async fn propose_module(&self, bytes: &[u8]) -> Result<Reply, ClusterError> {
        // Not `-MOVED`: a client following it would reload the new leader's own config.
        self.route_to_leader().map_err(|e| match e {
            ClusterError::NotLeader { .. } => {
                ClusterError::Refused("leadership moved while the module was sent; run MODULE RELOAD again".into())
            }
            other => other,
        })?;
        let engine = self.shared.configured().engine().clone();
        let module = tokio::task::block_in_place(|| FsmModule::load(&engine, bytes))
            .map_err(|e| ClusterError::Refused(format!("the module does not load: {e}")))?;
        self.switch_to(Arc::new(module), None).await
    }

    /// SIGHUP: reads the config again; if it names another module than the active one, asks for
    /// a switch (proposed now if this node leads, else whenever it does).
    pub fn reload_on_signal(&self) {
        match self.reread_config() {
            Err(e) => tracing::error!("SIGHUP: the configuration was not reloaded: {e}"),
            Ok(configured) => {
                self.modules.settle(None);
                if self.is_active(&configured.module) {
                    tracing::info!("SIGHUP: the configured module is the active one; nothing to switch");
                } else {
                    tracing::info!(path = %configured.path.display(), "SIGHUP: proposing the configured module when this node leads");
                    self.modules.want(configured.module, self.last_module_entry());
                }
            }
        }
    }

    /// Reads the config and the module it names again (blocking: off the async workers).
    fn reread_config(&self) -> Result<Configured, String> {
        tokio::task::block_in_place(|| self.modules.reread())
    }

    fn is_active(&self, module: &FsmModule) -> bool {
        self.active(|a| a.module.as_ref().is_some_and(|m| m.digest() == module.digest()))
    }

    /// The index of the last module entry this node applied (0 if none).
    fn last_module_entry(&self) -> u64 {
        self.active(|a| a.history.last().map_or(0, |e| e.index))
    }

    /// Proposes `module` as the cluster's (on the leader) and returns the outcome once applied:
    /// `+OK ...` when active, an error naming why when rejected. With `after` (a request made
    /// when the last module entry was that one), a later module entry means the matter is decided
    /// and nothing is proposed.
    async fn switch_to(&self, module: Arc<FsmModule>, after: Option<u64>) -> Result<Reply, ClusterError> {
        let _one_at_a_time = self.switching.lock().await;
        // Decide on everything committed so far: a module entry may not be applied here yet.
        self.read_barrier().await?;
        if self.is_active(&module) {
            return Ok(already_active(&module));
        }
        let last = self.last_module_entry();
        if after.is_some_and(|after| after != last) {
            return Ok(Reply::Simple(format!("OK decided by the module entry at index {last}")));
        }
        let response = self.propose(Request::Module(ModuleChange::of(&module))).await?;
        Ok(response.replies.into_iter().next().unwrap_or_else(Reply::ok))
    }

    /// openraft's current view of this node (role, term, indexes, membership).
    pub fn metrics(&self) -> RaftMetrics<NodeId, Member> {
        self.raft.metrics().borrow().clone()
    }

    /// For each other member, how long ago it last answered an RPC of this node's (`None`: never).
    /// On the leader this is the liveness membership changes go by (`INFO raft`).
    pub fn peers_last_heard(&self) -> Vec<(NodeId, Option<Duration>)> {
        let metrics = self.metrics();
        let membership = metrics.membership_config.membership();
        membership
            .nodes()
            .filter(|(id, _)| **id != self.id)
            .map(|(id, _)| (*id, self.network.last_heard(*id)))
            .collect()
    }

    /// The cluster id, once bootstrapped or joined.
    pub fn cluster_id(&self) -> Option<String> {
        self.identity.cluster_id()
    }

    /// Whether this node is part of a cluster (it has a membership).
    pub fn is_initialized(&self) -> bool {
        self.raft.metrics().borrow().membership_config.membership().nodes().next().is_some()
    }

    /// The leader, if one is known, with its addresses.
    pub fn leader(&self) -> Option<(NodeId, Member)> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let leader = metrics.current_leader?;
        let member = metrics.membership_config.membership().get_node(&leader).cloned().unwrap_or_default();
        Some((leader, member))
    }

    /// Where a request that must run on the leader should go: `Ok(())` if that is here.
    pub fn route_to_leader(&self) -> Result<(), ClusterError> {
        if !self.is_initialized() {
            return Err(ClusterError::NoCluster);
        }
        match self.leader() {
            None => Err(ClusterError::NoLeader),
            Some((leader, _)) if leader == self.id => Ok(()),
            Some((leader, member)) => Err(ClusterError::NotLeader { leader, redis_addr: member.redis_addr }),
        }
    }

    /// Queues one write (an encoded command) for the next entry and returns where its reply
    /// will arrive: once the entry holding it is committed and applied here. Queuing eagerly, then
    /// awaiting, is what lets a pipelining client's writes share entries.
    pub async fn submit_write(&self, command: Vec<u8>) -> oneshot::Receiver<Result<Reply, ClusterError>> {
        let (reply, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError(job)) = self.writes.send(WriteJob { command, reply }).await {
            let _ = job.reply.send(Err(ClusterError::Fatal(stopped())));
        }
        rx
    }

    /// Queues one linearizable read for the next read-index round (see [`Node::submit_write`]).
    /// A `stale` read (`READONLY`) skips the read index and has its own queue and rounds.
    pub async fn submit_read(&self, command: Vec<u8>, stale: bool) -> oneshot::Receiver<Result<Reply, ClusterError>> {
        let (reply, rx) = oneshot::channel();
        let queue = if stale { &self.stale_reads } else { &self.reads };
        if let Err(mpsc::error::SendError(job)) = queue.send(ReadJob { command, reply }).await {
            let _ = job.reply.send(Err(ClusterError::Fatal(stopped())));
        }
        rx
    }

    /// Proposes one write and waits for its reply.
    pub async fn write(&self, command: Vec<u8>) -> Result<Reply, ClusterError> {
        self.submit_write(command)
            .await
            .await
            .unwrap_or_else(|_| Err(ClusterError::Unknown(unknown("the node is shutting down"))))
    }

    /// Runs a read command: linearizable, or (`stale`, a `READONLY` connection) against whatever
    /// this node has applied.
    pub async fn read(&self, command: Vec<u8>, stale: bool) -> Result<Reply, ClusterError> {
        if stale {
            return self.query(&command);
        }
        self.submit_read(command, false).await.await.unwrap_or_else(|_| Err(ClusterError::Fatal(stopped())))
    }

    /// Runs a read command against this node's applied state now (no read index).
    ///
    /// The wasm call (up to a full fuel budget) and the wait for the reader runtime run under
    /// `block_in_place`, so the async workers keep serving Raft while it runs.
    pub fn query(&self, command: &[u8]) -> Result<Reply, ClusterError> {
        tokio::task::block_in_place(|| self.with_reader(|reader| reader(command)))
    }

    /// Runs `queries` with a function that answers one query with the reader runtime, running the
    /// cluster's active module. Module changes wait meanwhile (`SharedState::module_change`), so a
    /// switch or a snapshot install cannot commit halfway through. Blocking.
    fn with_reader<T>(&self, queries: impl FnOnce(&mut dyn FnMut(&[u8]) -> Result<Reply, ClusterError>) -> T) -> T {
        let mut reader = lock(&self.reader);
        let _exclusive = lock(&self.shared.module_change);
        let active = self.active(|active| active.module.clone());
        match &active {
            Some(module) => {
                reader.use_module(module.clone());
                queries(&mut |command| {
                    reader.query(command).map_err(|e| ClusterError::Fatal(format!("read failed: {e}")))
                })
            }
            None => queries(&mut |_| Ok(Reply::error(super::state_machine::NO_MODULE))),
        }
    }

    /// Whether the active module has housekeeping due at `now_ms`, asked of the reader runtime
    /// against the applied state. Blocking.
    fn tick_due(&self, now_ms: i64) -> Result<bool, ClusterError> {
        let mut reader = lock(&self.reader);
        let _exclusive = lock(&self.shared.module_change);
        let Some(module) = self.active(|active| active.module.clone()) else { return Ok(false) };
        if !module.has_tick() {
            return Ok(false);
        }
        reader.use_module(module);
        reader.tick_due(now_ms).map_err(|e| ClusterError::Fatal(format!("housekeeping check failed: {e}")))
    }

    /// Waits until a read started now may run locally and be linearizable: obtains a read index
    /// (from openraft on the leader, by RPC to the leader on a follower) and waits until this
    /// node has applied up to it.
    async fn read_barrier(&self) -> Result<(), ClusterError> {
        if !self.is_initialized() {
            return Err(ClusterError::NoCluster);
        }
        // One read of the metrics, so the id and the address belong to the same leader.
        let (leader, member) = self.leader().ok_or(ClusterError::NoLeader)?;
        let timeout = self.tuning.read_timeout;
        let index = if leader == self.id {
            match tokio::time::timeout(timeout, self.raft.get_read_log_id()).await {
                Ok(Ok((read, _))) => super::read_index(read, self.read_floor),
                Ok(Err(RaftError::APIError(_))) => return Err(ClusterError::NoLeader),
                Ok(Err(RaftError::Fatal(e))) => return Err(ClusterError::Fatal(e.to_string())),
                Err(_) => {
                    return Err(ClusterError::Timeout(format!("leadership not confirmed within {timeout:?}")));
                }
            }
        } else {
            self.network.client(leader, &member).read_index(timeout).await.map_err(|e| match e {
                ReadIndexError::Unreachable(why) => {
                    ClusterError::Unreachable(format!("the leader (node {leader}) cannot be reached: {why}"))
                }
                ReadIndexError::Failed(why) => {
                    ClusterError::Timeout(format!("could not get a read index from the leader: {why}"))
                }
            })?
        };
        self.raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "linearizable read")
            .await
            .map(|_| ())
            .map_err(|e| ClusterError::Timeout(format!("not caught up with the leader's read index: {e}")))
    }

    /// `BOOTSTRAP`: makes this fresh node a one-node cluster whose first entry installs this
    /// node's configured module.
    pub async fn bootstrap(&self, id: NodeId, raft_addr: &str) -> Result<(), ClusterError> {
        if id != self.id {
            return Err(ClusterError::Refused(format!("this is node {}, not node {id}", self.id)));
        }
        let pristine = self.log.is_pristine().map_err(|e| ClusterError::Fatal(e.to_string()))?;
        let initialized = self.raft.is_initialized().await.map_err(|e| ClusterError::Fatal(e.to_string()))?;
        // A cluster id without a log means an earlier BOOTSTRAP stopped before initialising:
        // starting over is safe, so only a log or a membership refuses.
        if initialized || !pristine {
            return Err(ClusterError::Refused("this node is already part of a cluster".into()));
        }
        self.identity.set_cluster_id(&new_cluster_id()).map_err(|e| ClusterError::Fatal(e.to_string()))?;
        let member = Member { raft_addr: raft_addr.to_owned(), redis_addr: self.member.redis_addr.clone() };
        self.raft
            .initialize(BTreeMap::from([(self.id, member)]))
            .await
            .map_err(|e| ClusterError::Refused(format!("bootstrap failed: {e}")))?;
        self.raft
            .wait(Some(self.tuning.election_timeout * 10))
            .state(ServerState::Leader, "bootstrap")
            .await
            .map_err(|e| ClusterError::Timeout(format!("the new cluster elected no leader: {e}")))?;
        self.propose(Request::Module(ModuleChange::of(&self.modules.current().module))).await?;
        tracing::info!(id = self.id, cluster = ?self.cluster_id(), "bootstrapped a one-node cluster");
        Ok(())
    }

    async fn propose(&self, request: Request) -> Result<Response, ClusterError> {
        match tokio::time::timeout(self.tuning.write_timeout, self.raft.client_write(request)).await {
            Ok(Ok(written)) => Ok(written.data),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => Err(ClusterError::NoLeader),
            // Raft stopped after taking the entry: it may still commit.
            Ok(Err(RaftError::Fatal(e))) => Err(ClusterError::Unknown(unknown(&e.to_string()))),
            Ok(Err(e)) => Err(ClusterError::Refused(e.to_string())),
            Err(_) => Err(ClusterError::Unknown(unknown("no commit within the write timeout"))),
        }
    }

    /// `JOIN` (on the leader): adds a node as a learner, waits until it has caught up, then
    /// promotes it to voter, and answers once it can serve reads. Ids in use or retired are
    /// refused.
    ///
    /// Nothing is proposed before the node has answered a probe at `raft_addr` under `id`, outside
    /// any other cluster, with our ABI, engine and limits. The learner is promoted only once its
    /// matched log index has reached the commit index the leader had when the catch-up started
    /// (openraft's own test counts entries, and a short log of large batched entries always
    /// passes it), and only if the new voter set keeps a live quorum. A learner that does not catch
    /// up stays a learner, which counts for no quorum, and the error says how to remove it.
    pub async fn join(&self, id: NodeId, raft_addr: &str, redis_addr: &str) -> Result<(), ClusterError> {
        self.route_to_leader()?;
        let metrics = self.metrics();
        let membership = metrics.membership_config.membership();
        let already_learner = match membership.get_node(&id) {
            Some(_) if membership.voter_ids().any(|v| v == id) => {
                return Err(ClusterError::Refused(format!("node {id} is already a member")));
            }
            Some(existing) if existing.raft_addr != raft_addr => {
                return Err(ClusterError::Refused(format!(
                    "node {id} is a learner at {}: REMOVE {id} first to give it another address",
                    existing.raft_addr
                )));
            }
            Some(_) => true,
            None => false,
        };
        if self.shared.retired.read().unwrap_or_else(|p| p.into_inner()).contains(&id) {
            return Err(ClusterError::Refused(format!("node id {id} was removed and is never reused: pick a new id")));
        }
        if raft_addr == self.member.raft_addr {
            return Err(ClusterError::Refused(format!("{raft_addr} is this node's own raft address")));
        }
        if let Some((other, _)) = membership.nodes().find(|(n, m)| **n != id && m.raft_addr == raft_addr) {
            return Err(ClusterError::Refused(format!("{raft_addr} is the raft address of node {other}")));
        }
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let member = Member { raft_addr: raft_addr.to_owned(), redis_addr: redis_addr.to_owned() };
        self.probe_joining(id, &member).await?;
        if !already_learner {
            tracing::info!(id, %member, "adding learner");
            self.raft.add_learner(id, member.clone(), false).await.map_err(membership_error)?;
        }
        let target = self.catch_up(id).await?;
        let mut promoted = voters;
        promoted.insert(id);
        self.live_quorum(&promoted).map_err(|why| {
            ClusterError::Refused(format!(
                "node {id} caught up but was not promoted: the voters would have no live quorum ({why}); it \
                 stays a learner: run JOIN again once the voters are back, or REMOVE {id}"
            ))
        })?;
        tracing::info!(id, target, "promoting to voter");
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(membership_error)?;
        self.wait_serving(id, &member, target).await
    }

    /// Asks the node about to join who it is (see `network`'s probe) and refuses it when it does
    /// not answer, is another node, belongs to another cluster, or runs another ABI, engine or
    /// limits (it would stop at the cluster's first module entry, and once promoted count towards
    /// quorums it can never serve). Its module may differ: it runs the cluster's.
    async fn probe_joining(&self, id: NodeId, member: &Member) -> Result<(), ClusterError> {
        let answer = self.network.client(id, member).probe(JOIN_PROBE_TIMEOUT).await.map_err(|e| match e {
            TransportError::Refused(why) => ClusterError::Refused(format!(
                "node {id} at {} refused us: {why}. Nothing was changed",
                member.raft_addr
            )),
            e => ClusterError::Refused(format!(
                "cannot reach node {id} at {}: {e}; is it running? Nothing was changed",
                member.raft_addr
            )),
        })?;
        if let Some(theirs) = &answer.cluster_id
            && Some(theirs) != self.cluster_id().as_ref()
        {
            return Err(ClusterError::Refused(format!(
                "node {id} belongs to another cluster ({theirs}): only a node with an empty data_dir can join"
            )));
        }
        let ours = self.modules.current().module.contract();
        let differences = match crate::runtime::Contract::decode(&answer.contract) {
            Ok(theirs) => ours.differences_besides_module(&theirs).join("; "),
            Err(e) => format!("unreadable contract: {e}"),
        };
        if differences.is_empty() {
            return Ok(());
        }
        Err(ClusterError::Refused(format!(
            "node {id} runs another ABI, engine or limits ({differences}; cluster vs node {id}): refusing to JOIN it"
        )))
    }

    /// Waits until learner `id` has matched the log up to the commit index as it is now, and
    /// returns that index. Gives up (the node stays a learner) when this node stops leading, when
    /// the learner is silent for `join_silence`, or after [`JOIN_CATCH_UP_SECS`].
    async fn catch_up(&self, id: NodeId) -> Result<u64, ClusterError> {
        let target = self
            .raft
            .with_raft_state(|state| state.committed.map_or(0, |l| l.index))
            .await
            .map_err(|e| ClusterError::Fatal(e.to_string()))?;
        let stays = format!("it stays a learner, which counts for no quorum: run JOIN again, or REMOVE {id}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(JOIN_CATCH_UP_SECS);
        let mut metrics = self.raft.metrics();
        loop {
            {
                let m = metrics.borrow_and_update();
                if m.state != ServerState::Leader {
                    return Err(ClusterError::Refused(format!(
                        "leadership moved while node {id} was catching up; {stays}"
                    )));
                }
                let matched = m.replication.as_ref().and_then(|r| r.get(&id).cloned().flatten()).map(|l| l.index);
                if matched >= Some(target) {
                    return Ok(target);
                }
            }
            let silence = self.network.last_heard(id).unwrap_or(Duration::MAX);
            if silence > self.tuning.join_silence {
                return Err(ClusterError::Timeout(format!(
                    "node {id} stopped answering while catching up (nothing heard for {:?}); {stays}",
                    self.tuning.join_silence
                )));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClusterError::Timeout(format!(
                    "node {id} did not catch up to index {target} within {JOIN_CATCH_UP_SECS} s; {stays}"
                )));
            }
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() {
                    return Err(ClusterError::Fatal(stopped()));
                },
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    /// Whether `voters` has a quorum of live nodes: this node, and those the peer transport heard
    /// from within an election timeout. Says who is missing when not.
    fn live_quorum(&self, voters: &BTreeSet<NodeId>) -> Result<(), String> {
        let window = self.tuning.election_timeout;
        let (live, silent): (Vec<NodeId>, Vec<NodeId>) =
            voters.iter().partition(|&&v| v == self.id || self.network.heard_within(v, window));
        let needed = voters.len() / 2 + 1;
        if live.len() >= needed {
            return Ok(());
        }
        Err(format!(
            "{} of {} voters heard from within {window:?}, a quorum is {needed}; silent: {silent:?}",
            live.len(),
            voters.len()
        ))
    }

    /// Waits until the new voter has applied `target`: from then on it answers reads.
    async fn wait_serving(&self, id: NodeId, member: &Member, target: u64) -> Result<(), ClusterError> {
        let deadline = tokio::time::Instant::now() + JOIN_SERVING_TIMEOUT;
        let client = self.network.client(id, member);
        loop {
            if let Ok(answer) = client.probe(JOIN_PROBE_TIMEOUT).await
                && answer.last_applied >= target
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClusterError::Timeout(format!(
                    "node {id} is a voter but has not applied index {target} within {JOIN_SERVING_TIMEOUT:?}; \
                     check its log"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `REMOVE` (on the leader): retires the id for good, then removes the node from the
    /// membership. Removing a voter is refused when the voters left would have no live quorum
    /// (the change could not commit, and the cluster would be stuck in its joint configuration)
    /// unless `force`.
    pub async fn remove(&self, id: NodeId, force: bool) -> Result<(), ClusterError> {
        self.route_to_leader()?;
        let metrics = self.metrics();
        let membership = metrics.membership_config.membership();
        if membership.get_node(&id).is_none() {
            return Err(ClusterError::Refused(format!("node {id} is not a member")));
        }
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if voters.len() == 1 && voters.contains(&id) {
            return Err(ClusterError::Refused("cannot remove the last voter".into()));
        }
        if voters.contains(&id) && !force {
            let mut remaining = voters.clone();
            remaining.remove(&id);
            self.live_quorum(&remaining).map_err(|why| {
                ClusterError::Refused(format!(
                    "removing node {id} would leave no live quorum ({why}); bring the silent voters back, or \
                     REMOVE {id} FORCE"
                ))
            })?;
        }
        self.propose(Request::RetireNode(id)).await?;
        if voters.contains(&id) {
            self.raft
                .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                .await
                .map_err(membership_error)?;
        }
        if self.metrics().membership_config.membership().get_node(&id).is_some() {
            self.raft
                .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                .await
                .map_err(membership_error)?;
        }
        Ok(())
    }

    /// `SNAPSHOT`: builds a snapshot of everything applied so far and returns its last index.
    pub async fn snapshot(&self) -> Result<u64, ClusterError> {
        if !self.is_initialized() {
            return Err(ClusterError::NoCluster);
        }
        let applied = self.metrics().last_applied.map(|l| l.index).unwrap_or(0);
        self.raft.trigger().snapshot().await.map_err(|e| ClusterError::Fatal(e.to_string()))?;
        let metrics = self
            .raft
            .wait(Some(Duration::from_secs(600)))
            .metrics(|m| m.snapshot.is_some_and(|s| s.index >= applied), "snapshot")
            .await
            .map_err(|e| ClusterError::Timeout(format!("snapshot not built: {e}")))?;
        Ok(metrics.snapshot.map(|s| s.index).unwrap_or(0))
    }

    /// SHA-256 over the state machine's data at this node's applied index, hex (`DEBUG DIGEST`).
    pub fn state_digest(&self) -> Result<String, ClusterError> {
        tokio::task::block_in_place(|| {
            let view = self.store.read().map_err(|e| ClusterError::Fatal(e.to_string()))?;
            let digest = storage::state_digest(&*view).map_err(|e| ClusterError::Fatal(e.to_string()))?;
            Ok(storage::hex(&digest))
        })
    }

    /// Peer connections refused for failing the cluster-secret exchange (`INFO raft`).
    pub fn peers_refused(&self) -> u64 {
        self.network.peers_refused()
    }

    /// The write path's counters and the log's append latency, for the metrics endpoint.
    pub fn write_stats(&self) -> Arc<super::WriteCounters> {
        self.log.counters()
    }

    /// The write-path counters since start (`INFO raft`), by name.
    pub fn write_counters(&self) -> [(&'static str, u64); 8] {
        self.log.counters().snapshot()
    }

    /// Resolves when openraft stops on its own (a storage failure, a contract mismatch), with
    /// the reason; the binary then exits non-zero.
    pub async fn stopped(&self) -> String {
        let mut metrics = self.raft.metrics();
        loop {
            if let Err(fatal) = &metrics.borrow().running_state {
                return fatal.to_string();
            }
            if metrics.changed().await.is_err() {
                return "raft stopped".into();
            }
        }
    }

    /// Stops openraft (its tasks finish their current step) and makes applied state durable.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
        if let Err(e) = self.store.sync() {
            tracing::warn!("syncing the state store: {e}");
        }
    }
}

fn already_active(module: &FsmModule) -> Reply {
    Reply::Simple(format!("OK module {} is already active", &crate::storage::hex(&module.digest())[..12]))
}

/// What `MODULE RELOAD` leaves to the server.
#[derive(Debug)]
pub enum Reload {
    /// The answer.
    Done(Reply),
    /// This node follows: the leader at `redis_addr` must propose these module bytes
    /// (`REDRAFT.PROPOSE-MODULE`).
    Forward {
        /// The leader's Redis address.
        redis_addr: String,
        /// The module this node's config names.
        bytes: Vec<u8>,
    },
}

fn membership_error(e: RaftError<NodeId, ClientWriteError<NodeId, Member>>) -> ClusterError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => ClusterError::NoLeader,
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => ClusterError::Refused(e.to_string()),
        RaftError::Fatal(e) => ClusterError::Fatal(e.to_string()),
    }
}

fn stopped() -> String {
    "the node has stopped serving (see its log)".into()
}

fn unknown(why: &str) -> String {
    format!("the write's outcome is unknown ({why}): it may or may not have been applied")
}

/// The write batcher: see the module docs. `flushed` watches the last index on this node's disk.
async fn write_loop(
    raft: Raft<TypeConfig>,
    mut rx: mpsc::Receiver<WriteJob>,
    tuning: Tuning,
    mut flushed: tokio::sync::watch::Receiver<u64>,
    counters: Arc<WriteCounters>,
) {
    let slots = Arc::new(Semaphore::new(tuning.writes_in_flight_max));
    // The stamp of the last entry proposed: a stamp never goes below it, even if the wall clock
    // is set back (the state machine clamps too, across leaders).
    let mut last_stamp = 0i64;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let Some(first) = rx.recv().await else { return };
        let mut bytes = first.command.len();
        let mut jobs = vec![first];
        while jobs.len() < tuning.batch_commands_max && bytes < tuning.batch_bytes_max {
            match rx.try_recv() {
                Ok(job) => {
                    bytes += job.command.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let commands: Vec<Vec<u8>> = jobs.iter_mut().map(|j| std::mem::take(&mut j.command)).collect();
        WriteCounters::add(&counters.entries_proposed, 1);
        WriteCounters::add(&counters.commands_proposed, commands.len() as u64);
        // Whatever this entry's index, it is above the last one appended before it.
        let appended_before = raft.metrics().borrow().last_log_index.unwrap_or(0);
        last_stamp = crate::runtime::wall_clock_ms().max(last_stamp);
        let entry = Request::Timed(TimedCommands { time_ms: last_stamp, commands: Arc::new(commands) });
        let answer = match raft.client_write_ff(entry).await {
            Ok(answer) => answer,
            Err(fatal) => {
                for job in jobs {
                    let _ = job.reply.send(Err(ClusterError::Fatal(format!("raft stopped: {fatal}"))));
                }
                continue;
            }
        };
        let timeout = tuning.write_timeout;
        let (answered, mut answered_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _answered = answered;
            let outcome = tokio::time::timeout(timeout, answer).await;
            let _slot = slot;
            match outcome {
                Ok(Ok(Ok(response))) => {
                    // One reply per write, in order: anything else is a bug between the batcher
                    // and the state machine, and must not hand one client another's reply.
                    if response.data.replies.len() != jobs.len() {
                        tracing::error!(
                            "entry {} carried {} writes but returned {} replies",
                            response.log_id,
                            jobs.len(),
                            response.data.replies.len()
                        );
                        debug_assert_eq!(response.data.replies.len(), jobs.len(), "replies per write");
                    }
                    let mut replies = response.data.replies.into_iter();
                    for job in jobs {
                        let reply = replies.next().ok_or_else(|| ClusterError::Fatal("missing reply".into()));
                        let _ = job.reply.send(reply);
                    }
                }
                // Refused before it was appended, or truncated as uncommitted: not applied.
                Ok(Ok(Err(ClientWriteError::ForwardToLeader(f)))) => {
                    let error = match (f.leader_id, f.leader_node) {
                        (Some(leader), Some(node)) => ClusterError::NotLeader { leader, redis_addr: node.redis_addr },
                        _ => ClusterError::NoLeader,
                    };
                    for job in jobs {
                        let _ = job.reply.send(Err(error.clone()));
                    }
                }
                Ok(Ok(Err(other))) => {
                    for job in jobs {
                        let _ = job.reply.send(Err(ClusterError::Unknown(unknown(&other.to_string()))));
                    }
                }
                Ok(Err(_)) | Err(_) => {
                    let why = if outcome.is_err() {
                        "not applied within the write timeout"
                    } else {
                        "the node stopped before answering"
                    };
                    for job in jobs {
                        let _ = job.reply.send(Err(ClusterError::Unknown(unknown(why))));
                    }
                }
            }
        });
        // The next entry is proposed once this one is on the leader's disk (or its outcome is
        // known, say it was refused), not once it is applied: its replication and the
        // followers' fsyncs then overlap the next entry's append, and everything queued
        // meanwhile still goes into that one entry. The slots bound the entries not yet applied.
        tokio::select! {
            _ = flushed.wait_for(|&last| last > appended_before) => {}
            _ = &mut answered_rx => {}
        }
    }
}

/// Takes a snapshot once `limit` bytes were appended to this node's log since its last snapshot
/// (`snapshot.log_bytes_since_last`): openraft 0.9's policy counts entries only, and pipelined
/// entries of hundreds of writes let the log grow to gigabytes before the count is reached.
/// Looks once a second; ends when openraft stops.
async fn snapshot_by_bytes_loop(raft: Raft<TypeConfig>, counters: Arc<WriteCounters>, limit: u64) {
    let appended = || counters.log_bytes_appended.load(std::sync::atomic::Ordering::Relaxed);
    let mut mark = appended();
    let mut last_snapshot = raft.metrics().borrow().snapshot;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let snapshot = raft.metrics().borrow().snapshot;
        if snapshot != last_snapshot {
            // Taken meanwhile (by count, `SNAPSHOT`, or the trigger below): count from here.
            last_snapshot = snapshot;
            mark = appended();
        } else if appended().saturating_sub(mark) >= limit {
            mark = appended();
            if raft.trigger().snapshot().await.is_err() {
                return;
            }
        }
    }
}

/// How often the leader asks the module whether housekeeping is due (Redis expires keys ten
/// times a second too).
const TICK_INTERVAL: Duration = Duration::from_millis(100);

/// On the leader, proposes a [`Request::Tick`] whenever the module has housekeeping due, one at a
/// time (the next check waits for the last tick to apply), so expired keys leave the store
/// without any client touching them. Ends when the node is gone.
async fn tick_loop(node: std::sync::Weak<Node>) {
    let mut interval = tokio::time::interval(TICK_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(node) = node.upgrade() else { return };
        if node.raft.metrics().borrow().state != ServerState::Leader {
            continue;
        }
        let now = crate::runtime::wall_clock_ms();
        match tokio::task::block_in_place(|| node.tick_due(now)) {
            Ok(true) => {
                if let Err(e) = node.propose(Request::Tick(now)).await {
                    tracing::debug!("housekeeping tick not applied: {e}");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!("{e}"),
        }
    }
}

/// Reads served in one round at most.
const READS_PER_ROUND_MAX: usize = 4096;

/// `first` and every read queued behind it, up to [`READS_PER_ROUND_MAX`].
fn take_round(first: ReadJob, rx: &mut mpsc::Receiver<ReadJob>) -> Vec<ReadJob> {
    let mut jobs = vec![first];
    while jobs.len() < READS_PER_ROUND_MAX {
        match rx.try_recv() {
            Ok(job) => jobs.push(job),
            Err(_) => break,
        }
    }
    jobs
}

/// Answers a round of reads: each query once `barrier` allows it, with one hand-off to a blocking
/// thread and one lock of the reader runtime for the whole round.
fn answer_round(node: &Node, jobs: Vec<ReadJob>, barrier: Result<(), ClusterError>) {
    tokio::task::block_in_place(|| {
        node.with_reader(|reader| {
            for job in jobs {
                let reply = barrier.clone().and_then(|()| reader(&job.command));
                let _ = job.reply.send(reply);
            }
        })
    });
}

/// Serves `READONLY` reads in rounds, with no read index.
async fn stale_read_loop(node: std::sync::Weak<Node>, mut rx: mpsc::Receiver<ReadJob>) {
    while let Some(first) = rx.recv().await {
        let jobs = take_round(first, &mut rx);
        let Some(node) = node.upgrade() else { return };
        answer_round(&node, jobs, Ok(()));
    }
}

/// Read-index rounds in flight at once. One: every read arriving during a round joins the next,
/// which measured best (three nodes, `redis-benchmark -t get -c 50`: 45.7k and 45.2k GET/s with
/// one round, 41.5k and 41.1k with two, 31.2k and 36.2k with four).
const READ_ROUNDS_MAX: usize = 1;

/// The read batcher: see the module docs.
async fn read_loop(node: std::sync::Weak<Node>, mut rx: mpsc::Receiver<ReadJob>) {
    let rounds = Arc::new(Semaphore::new(READ_ROUNDS_MAX));
    loop {
        let Ok(round) = rounds.clone().acquire_owned().await else { return };
        let Some(first) = rx.recv().await else { return };
        let jobs = take_round(first, &mut rx);
        let Some(node) = node.upgrade() else { return };
        tokio::spawn(async move {
            let _round = round;
            let barrier = node.read_barrier().await;
            answer_round(&node, jobs, barrier);
        });
    }
}

/// Proposes the module this node asks for (see [`super::modules`]) whenever it leads.
async fn module_loop(
    node: std::sync::Weak<Node>,
    mut metrics: tokio::sync::watch::Receiver<RaftMetrics<NodeId, Member>>,
    wakeup: Arc<tokio::sync::Notify>,
) {
    loop {
        let woken = wakeup.notified();
        let mut failed = false;
        {
            let Some(node) = node.upgrade() else { return };
            if let Some(wanted) = node.modules.wanted()
                && node.active(|a| a.module.is_some())
                && node.route_to_leader().is_ok()
            {
                match node.switch_to(wanted.module.clone(), Some(wanted.after)).await {
                    Ok(reply) => {
                        tracing::info!("the module this node asked for: {reply:?}");
                        node.modules.settle(Some(&wanted.module));
                    }
                    // Lost the lead meanwhile: the request stays, for when this node leads.
                    Err(ClusterError::NoLeader | ClusterError::NotLeader { .. }) => {}
                    Err(e) => {
                        // Maybe applied after all: the next round sees the new module entry.
                        tracing::warn!("proposing the configured module failed: {e}; trying again");
                        failed = true;
                    }
                }
            }
        }
        if failed {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            () = woken => {}
        }
    }
}
