//! Background work: on a leader, the housekeeping ticks the module asks for; on every node, its
//! snapshots, by the count of entries and the bytes of log since the last one, spaced by the
//! snapshot's own size once it is large.

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

/// When this node takes a snapshot on its own (`snapshot:` in the config; `0` turns a trigger
/// off). openraft's count policy is off: this one replaces it, so that both triggers obey the
/// spacing of large snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SnapshotTrigger {
    /// Applied entries since the last snapshot (`snapshot.logs_since_last`).
    pub(super) entries: u64,
    /// Bytes appended to the log since the last snapshot (`snapshot.log_bytes_since_last`):
    /// entries of pipelined writes hold hundreds of writes each, so a count alone lets the log
    /// grow to gigabytes.
    pub(super) bytes: u64,
}

/// From this size on, a snapshot spaces the next one by its own size in log bytes. A snapshot
/// writes the whole state, so with a fixed trigger its cost per write grows with the keyspace:
/// at about 800k keys (a 300 MB snapshot) snapshot builds were a fifth of the nodes' CPU under
/// pipelined SETs, and a count of 20,000 single-write entries would write the state again for
/// every 6 MB of log. Spaced by their own size, snapshots write at most one byte per byte of log
/// whatever the state's size, and the log stays within about the state's size. Smaller ones are
/// cheap whatever triggers them.
const SNAPSHOT_SPACED_FROM_BYTES: u64 = 64 << 20;

impl SnapshotTrigger {
    /// Whether a snapshot is due, `entries` and `bytes` after the last one, whose file was
    /// `last_bytes` long.
    pub(super) fn due(&self, entries: u64, bytes: u64, last_bytes: u64) -> bool {
        let spacing = if last_bytes >= SNAPSHOT_SPACED_FROM_BYTES { last_bytes } else { 0 };
        let by_count = self.entries > 0 && entries >= self.entries;
        let by_bytes = self.bytes > 0 && bytes >= self.bytes;
        (by_count || by_bytes) && bytes >= spacing
    }
}

/// What the snapshot loop counts from: the last snapshot, or the last time it asked for one.
///
/// Why the request counts too: a build's end reaches openraft's metrics a moment after its size
/// reaches the counters, and asking again in between would start a second build of the whole
/// state at once.
struct SnapshotClock {
    trigger: SnapshotTrigger,
    /// The last snapshot's index, as openraft's metrics last reported it.
    snapshot: u64,
    /// The applied index and the log bytes appended, when counting started.
    from_index: u64,
    from_bytes: u64,
}

impl SnapshotClock {
    fn new(trigger: SnapshotTrigger, snapshot: u64, appended: u64) -> Self {
        SnapshotClock { trigger, snapshot, from_index: snapshot, from_bytes: appended }
    }

    /// One look: given the snapshot index and applied index from the metrics, the log bytes
    /// appended so far and the last snapshot's size, whether to ask for a snapshot now.
    fn ask(&mut self, snapshot: u64, applied: u64, appended: u64, last_bytes: u64) -> bool {
        if snapshot != self.snapshot {
            // Taken meanwhile (asked for, by `SNAPSHOT`, or installed): count from here.
            (self.snapshot, self.from_index, self.from_bytes) = (snapshot, snapshot, appended);
            return false;
        }
        let entries = applied.saturating_sub(self.from_index);
        let due = self.trigger.due(entries, appended.saturating_sub(self.from_bytes), last_bytes);
        if due {
            (self.from_index, self.from_bytes) = (applied, appended);
        }
        due
    }
}

/// Takes a snapshot when `trigger` says it is due (see [`SnapshotClock`]). Looks once a second;
/// ends when openraft stops.
pub(super) async fn snapshot_loop(raft: Raft<TypeConfig>, counters: Arc<WriteCounters>, trigger: SnapshotTrigger) {
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(std::sync::atomic::Ordering::Relaxed);
    let index = |id: Option<openraft::LogId<crate::raft::NodeId>>| id.map_or(0, |id| id.index);
    let mut clock =
        SnapshotClock::new(trigger, index(raft.metrics().borrow().snapshot), load(&counters.log_bytes_appended));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let (snapshot, applied) = {
            let metrics = raft.metrics();
            let metrics = metrics.borrow();
            (index(metrics.snapshot), index(metrics.last_applied))
        };
        let appended = load(&counters.log_bytes_appended);
        if clock.ask(snapshot, applied, appended, load(&counters.snapshot_bytes))
            && raft.trigger().snapshot().await.is_err()
        {
            return;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_snapshots_follow_either_trigger() {
        let trigger = SnapshotTrigger { entries: 20_000, bytes: 512 << 20 };
        let small = 10 << 20;
        assert!(!trigger.due(19_999, 1 << 20, small));
        assert!(trigger.due(20_000, 1 << 20, small), "by count");
        assert!(trigger.due(10, 512 << 20, small), "by bytes");
        assert!(!SnapshotTrigger { entries: 0, bytes: 0 }.due(u64::MAX, u64::MAX, 0), "both off");
    }

    #[test]
    fn a_large_snapshot_spaces_the_next_by_its_size() {
        let trigger = SnapshotTrigger { entries: 20_000, bytes: 512 << 20 };
        let large = 1 << 30;
        assert!(!trigger.due(1_000_000, 100 << 20, large), "a count reached on a small log waits");
        assert!(!trigger.due(10, 600 << 20, large), "the byte trigger rises to the snapshot's size");
        assert!(trigger.due(10, 1 << 30, large));
        assert!(!SnapshotTrigger { entries: 0, bytes: 0 }.due(u64::MAX, u64::MAX, large), "both off");
    }

    /// Once it has asked, the loop waits a whole interval again, even while the metrics still
    /// show the old snapshot (the build that ends meanwhile must not be followed by a second).
    #[test]
    fn the_loop_asks_once_per_interval_and_counts_from_each_new_snapshot() {
        let mut clock = SnapshotClock::new(SnapshotTrigger { entries: 100, bytes: 0 }, 0, 0);
        assert!(!clock.ask(0, 99, 1000, 0));
        assert!(clock.ask(0, 100, 1000, 0), "due by count");
        assert!(!clock.ask(0, 150, 1500, 0), "asked already: the metrics lag the build");
        assert!(!clock.ask(100, 150, 1500, 0), "the build shows: count from its index");
        assert!(!clock.ask(100, 199, 1990, 0));
        assert!(clock.ask(100, 200, 2000, 0));
        // No build came of it (say one was running): after another interval it asks again.
        assert!(clock.ask(100, 300, 3000, 0));
    }
}
