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
//!
//! The parts, one job each: `start` (opening the stores and starting openraft), `writes`
//! (the write batcher), `reads` (the read batchers and barriers), `membership` (bootstrap,
//! join, remove), `lifecycle` (the module a node asks for, and switching to it) and
//! `housekeeping` (ticks, and when to snapshot).

mod housekeeping;
mod lifecycle;
mod membership;
mod reads;
mod start;
mod writes;

pub use lifecycle::Reload;
use reads::ReadJob;
use writes::WriteJob;

use crate::raft::log_store::LogStore;
use crate::raft::modules::{Configured, ModuleConfig};
use crate::raft::network::{Identity, PeerNetwork};
use crate::raft::state_machine::{ActiveModule, SharedState};
use crate::raft::{Member, NodeId, Request, Response, TypeConfig};
use crate::runtime::{FsmModule, Runtime};
use crate::storage::{self, SharedStore};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{Raft, RaftMetrics};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

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

impl Node {
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

    /// The clients blocked on keys (`BLPOP`, ...), which this node's applies wake.
    pub fn key_waiters(&self) -> &Arc<crate::raft::state_machine::key_waiters::KeyWaiters> {
        &self.shared.key_waiters
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

    /// Takes new peer certificates (SIGHUP); see `Identity::replace_tls`.
    pub fn replace_peer_tls(&self, tls: Option<crate::config::PeerTls>) -> Result<(), String> {
        self.identity.replace_tls(tls)
    }

    /// Peer connections refused for failing the cluster-secret exchange (`INFO raft`).
    pub fn peers_refused(&self) -> u64 {
        self.network.peers_refused()
    }

    /// The write path's counters and the log's append latency, for the metrics endpoint.
    pub fn write_stats(&self) -> Arc<crate::raft::WriteCounters> {
        self.log.counters()
    }

    /// The write-path counters since start (`INFO raft`), by name.
    pub fn write_counters(&self) -> [(&'static str, u64); 10] {
        self.log.counters().snapshot()
    }

    /// Resolves when openraft stops on its own (a storage failure, a contract mismatch), with
    /// the reason; the binary then exits non-zero.
    ///
    /// Watches openraft's server metrics (role, leader, membership), which change rarely, not
    /// its full metrics, which change with every append, commit and apply: a waiter on those woke
    /// a thread several times per write. The core drops the watch when its task ends.
    pub async fn stopped(&self) -> String {
        let mut server = self.raft.server_metrics();
        loop {
            if let Err(fatal) = &self.raft.metrics().borrow().running_state {
                return fatal.to_string();
            }
            if server.changed().await.is_err() {
                return match &self.raft.metrics().borrow().running_state {
                    Err(fatal) => fatal.to_string(),
                    Ok(()) => "raft stopped".into(),
                };
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

fn stopped() -> String {
    "the node has stopped serving (see its log)".into()
}

fn unknown(why: &str) -> String {
    format!("the write's outcome is unknown ({why}): it may or may not have been applied")
}
