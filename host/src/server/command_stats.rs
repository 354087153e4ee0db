//! Per-command counters and latencies: `INFO commandstats` / `latencystats` and the metrics
//! endpoint read them. Only commands the node knows get a row (the module's and its own), so
//! garbage command names cannot grow the table.
//!
//! **Latency** is measured from the moment the connection dispatches the command to the moment
//! its reply is ready: for a write, that includes batching, replication and apply; for a
//! linearizable read, the read-index round. (Redis's `usec` is execution time only.)

use super::protocol::Response;
use crate::stats::Histogram;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How a command ended, as the metrics label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A reply that is not an error.
    Ok,
    /// An error from running it (`WRONGTYPE`, `ERR value is not an integer`, ...).
    Error,
    /// Refused before it ran: wrong arity, `NOAUTH`, `NOPERM`, a doomed transaction.
    Rejected,
    /// The outcome of a write is unknown (`-UNKNOWN`): it may or may not have been applied.
    Unknown,
    /// Sent elsewhere: `-MOVED` (a redirect) or `-CLUSTERDOWN` (no leader to take it).
    Moved,
}

impl Outcome {
    /// Every outcome, in the order of [`CommandSlot`]'s counters.
    pub const ALL: [Outcome; 5] = [Outcome::Ok, Outcome::Error, Outcome::Rejected, Outcome::Unknown, Outcome::Moved];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Rejected => "rejected",
            Outcome::Unknown => "unknown",
            Outcome::Moved => "moved",
        }
    }

    /// The outcome a reply says.
    pub fn of(response: &Response) -> Outcome {
        let Response::Error(text) = response else { return Outcome::Ok };
        let code = text.split(' ').next().unwrap_or("");
        match code {
            "UNKNOWN" => Outcome::Unknown,
            "MOVED" | "CLUSTERDOWN" => Outcome::Moved,
            "NOAUTH" | "NOPERM" | "EXECABORT" | "WRONGPASS" => Outcome::Rejected,
            "ERR" if text.starts_with("ERR wrong number of arguments") => Outcome::Rejected,
            _ => Outcome::Error,
        }
    }
}

/// One command's row.
#[derive(Debug)]
pub struct CommandSlot {
    name: String,
    outcomes: [AtomicU64; 5],
    latency: Histogram,
}

impl CommandSlot {
    /// The command's name (lower-case).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Records one call.
    pub fn record(&self, outcome: Outcome, started: Instant) {
        self.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
        self.latency.observe(started.elapsed());
    }

    /// Calls that ended with `outcome`.
    pub fn count(&self, outcome: Outcome) -> u64 {
        self.outcomes[outcome as usize].load(Ordering::Relaxed)
    }

    /// Its latency histogram.
    pub fn latency(&self) -> &Histogram {
        &self.latency
    }
}

/// A command being measured: its row and when it was dispatched.
pub struct Meter {
    slot: Arc<CommandSlot>,
    started: Instant,
}

impl Meter {
    /// Starts measuring a call of `slot`'s command.
    pub fn start(slot: Arc<CommandSlot>) -> Self {
        Meter { slot, started: Instant::now() }
    }

    /// Records the call's reply.
    pub fn finish(self, response: &Response) {
        self.slot.record(Outcome::of(response), self.started);
    }
}

/// Every command's row, by name.
#[derive(Debug, Default)]
pub struct CommandStats {
    slots: Mutex<HashMap<String, Arc<CommandSlot>>>,
}

impl CommandStats {
    /// The row of `name` (lower-case), made on first use.
    pub fn slot(&self, name: &str) -> Arc<CommandSlot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.get(name) {
            return slot.clone();
        }
        let slot = Arc::new(CommandSlot {
            name: name.to_owned(),
            outcomes: Default::default(),
            latency: Histogram::default(),
        });
        slots.insert(name.to_owned(), slot.clone());
        slot
    }

    /// Every row, by name.
    pub fn all(&self) -> Vec<Arc<CommandSlot>> {
        let mut all: Vec<_> = self.slots.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        all.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Calls of every command.
    pub fn total_calls(&self) -> u64 {
        self.all().iter().map(|s| Outcome::ALL.iter().map(|o| s.count(*o)).sum::<u64>()).sum()
    }
}

/// A connection's shortcut to the rows of the module's commands, by command index, so the hot
/// path takes no lock: rebuilt when the cluster switches modules.
#[derive(Default)]
pub struct ModuleSlots {
    module: Option<Arc<crate::runtime::FsmModule>>,
    slots: Vec<Option<Arc<CommandSlot>>>,
}

impl ModuleSlots {
    /// The row of the module command at `index` of `module`'s table.
    pub fn slot(
        &mut self,
        stats: &CommandStats,
        module: &Arc<crate::runtime::FsmModule>,
        index: usize,
    ) -> Arc<CommandSlot> {
        if !self.module.as_ref().is_some_and(|m| Arc::ptr_eq(m, module)) {
            self.module = Some(module.clone());
            self.slots = vec![None; module.commands().len()];
        }
        match self.slots.get_mut(index) {
            Some(Some(slot)) => slot.clone(),
            Some(entry) => entry.insert(stats.slot(&module.commands()[index].name.to_ascii_lowercase())).clone(),
            None => stats.slot(&module.commands()[index].name.to_ascii_lowercase()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_classified_as_the_metrics_label_them() {
        assert_eq!(Outcome::of(&Response::ok()), Outcome::Ok);
        assert_eq!(Outcome::of(&Response::error("WRONGTYPE Operation against a key")), Outcome::Error);
        assert_eq!(Outcome::of(&Response::error("NOPERM this user has no permissions")), Outcome::Rejected);
        assert_eq!(Outcome::of(&Response::error("ERR wrong number of arguments for 'get' command")), Outcome::Rejected);
        assert_eq!(Outcome::of(&Response::error("UNKNOWN the write's outcome is unknown")), Outcome::Unknown);
        assert_eq!(Outcome::of(&Response::error("MOVED 0 127.0.0.1:9002")), Outcome::Moved);
    }

    #[test]
    fn rows_are_shared_by_name_and_count_calls() {
        let stats = CommandStats::default();
        let a = stats.slot("get");
        Meter::start(a).finish(&Response::ok());
        Meter::start(stats.slot("get")).finish(&Response::error("ERR x"));
        assert_eq!(stats.total_calls(), 2);
        let get = &stats.all()[0];
        assert_eq!((get.count(Outcome::Ok), get.count(Outcome::Error)), (1, 1));
        assert_eq!(get.latency().count(), 2);
    }
}
