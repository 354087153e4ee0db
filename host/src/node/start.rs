//! Starting a node: claiming its data dir, opening the log and the state store, loading the
//! module, starting openraft, the peer listener and the background tasks.

use super::housekeeping::{SnapshotTrigger, snapshot_loop, tick_loop};
use super::lifecycle::module_loop;
use super::membership::JOIN_SILENCE_MIN;
use super::reads::{read_loop, stale_read_loop};
use super::writes::write_loop;
use super::{Node, StartError, Tuning};
use crate::config::{Config, ConfigSource};
use crate::raft::log_store::LogStore;
use crate::raft::modules::ModuleConfig;
use crate::raft::network::{Identity, PeerNetwork};
use crate::raft::state_machine::StateMachine;
use crate::raft::{Member, NodeId};
use crate::runtime::{FsmEngine, Runtime, RuntimeLimits};
use crate::storage::{self, Backend};
use openraft::{Raft, SnapshotPolicy};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

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
        let modules = ModuleConfig::open(engine.clone(), &config.fsm_module, source, &config.data_dir)
            .map_err(|e| StartError::StateMachine(e.to_string()))?;
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
        // Reads served as leader wait at least this far (see `crate::raft::read_index`).
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
            // The count is `snapshot_loop`'s, with the bytes (see `SnapshotTrigger`).
            snapshot_policy: SnapshotPolicy::Never,
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
        tokio::spawn(crate::raft::network::serve(
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
        if config.store_backend == Backend::MemoryDurable
            && config.snapshot.log_bytes_since_last == 0
            && config.snapshot.logs_since_last == 0
        {
            tracing::warn!(
                "store_backend: memory_durable with snapshots off (snapshot.logs_since_last and \
                 snapshot.log_bytes_since_last both 0): the log is never purged, and every start replays all of it"
            );
        }
        let trigger =
            SnapshotTrigger { entries: config.snapshot.logs_since_last, bytes: config.snapshot.log_bytes_since_last };
        if trigger.entries > 0 || trigger.bytes > 0 {
            tokio::spawn(snapshot_loop(node.raft.clone(), node.log.counters(), trigger));
        }
        tokio::spawn(read_loop(Arc::downgrade(&node), read_rx));
        tokio::spawn(stale_read_loop(Arc::downgrade(&node), stale_rx));
        tokio::spawn(module_loop(
            Arc::downgrade(&node),
            node.raft.metrics(),
            node.raft.server_metrics(),
            node.modules.wakeup.clone(),
        ));
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
}
