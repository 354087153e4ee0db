//! Background work of a leader: housekeeping ticks the module asks for, and snapshots once the
//! log has grown by `snapshot.log_bytes_since_last` bytes.

use super::{ClusterError, Node};
use crate::raft::{Request, TypeConfig, WriteCounters, lock};
use openraft::{Raft, ServerState};
use std::sync::Arc;
use std::time::Duration;

impl Node {
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
}

/// Takes a snapshot once `limit` bytes were appended to this node's log since its last snapshot
/// (`snapshot.log_bytes_since_last`): openraft 0.9's policy counts entries only, and pipelined
/// entries of hundreds of writes let the log grow to gigabytes before the count is reached.
/// Looks once a second; ends when openraft stops.
pub(super) async fn snapshot_by_bytes_loop(raft: Raft<TypeConfig>, counters: Arc<WriteCounters>, limit: u64) {
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
pub(super) async fn tick_loop(node: std::sync::Weak<Node>) {
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
