//! A linearizability checker for registers (Wing & Gong's search with Lowe's memoisation, as
//! Knossos and Porcupine do it), for the fault suite's histories.
//!
//! A history is checked one key at a time (registers are independent). Each operation has the
//! instants its call was made and its answer came; a write whose answer never came or was
//! ambiguous (a timeout, `-UNKNOWN`) may have taken effect at any point after its call, or never:
//! its completion is "never". Reads that got no answer tell nothing and are left out by the caller.
//!
//! The search linearizes, one at a time, an operation that was called before every
//! not-yet-linearized operation completed, and backtracks on a read that does not see the state.
//! `(linearized set, register value)` pairs already explored are remembered, which keeps the
//! search near-linear for the few concurrent clients the suite runs. Writes with an unknown
//! outcome whose value no read ever saw are dropped first: leaving them out never makes a
//! history less linearizable.

use std::collections::HashSet;

/// What one operation did.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// `SET key value`; values are unique per history.
    Write(String),
    /// `GET key` answered `value` (`None`: nil).
    Read(Option<String>),
}

/// One operation of a register's history, with its real-time interval (any monotonic unit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Which client ran it (for the report only).
    pub client: usize,
    /// What it did and saw.
    pub op: Op,
    /// When its call was made.
    pub invoked: u64,
    /// When its answer came; `None` for a write whose outcome is unknown.
    pub completed: Option<u64>,
}

/// Why a history is not linearizable, or could not be decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Linearizable.
    Ok,
    /// Not linearizable: no order explains the answers.
    Violation(String),
    /// The search exceeded its step budget (the history is too concurrent to decide).
    Undecided(u64),
}

/// Most search steps per register before giving up with [`Verdict::Undecided`].
pub const SEARCH_STEPS_MAX: u64 = 20_000_000;

/// The stack the search runs on: it recurses once per operation, and a long soak's register
/// has tens of thousands (the default 2 MiB of a test thread overflowed at 600 s). Reserved, not
/// committed: only the pages the search touches are used.
pub const SEARCH_STACK_BYTES: usize = 1 << 30;

/// Checks one register's history, starting from `initial` (`None`: the key does not exist).
pub fn check_register(history: &[Event], initial: Option<String>) -> Verdict {
    let read_values: HashSet<&str> = history
        .iter()
        .filter_map(|e| match &e.op {
            Op::Read(Some(v)) => Some(v.as_str()),
            _ => None,
        })
        .collect();
    let ops: Vec<&Event> = history
        .iter()
        .filter(|e| e.completed.is_some() || matches!(&e.op, Op::Write(v) if read_values.contains(v.as_str())))
        .collect();
    let required = ops.iter().filter(|e| e.completed.is_some()).count();
    let ops = &ops;
    std::thread::scope(|scope| {
        let search = std::thread::Builder::new().stack_size(SEARCH_STACK_BYTES).spawn_scoped(scope, move || {
            let mut search = Search { ops, memo: HashSet::new(), steps: 0 };
            let mut linearized = vec![false; ops.len()];
            match search.dfs(&mut linearized, required, initial) {
                Some(true) => Verdict::Ok,
                Some(false) => Verdict::Violation(describe(ops)),
                None => Verdict::Undecided(search.steps),
            }
        });
        match search.map(|handle| handle.join()) {
            Ok(Ok(verdict)) => verdict,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(e) => panic!("cannot start the linearizability search's thread: {e}"),
        }
    })
}

struct Search<'a> {
    ops: &'a [&'a Event],
    memo: HashSet<(Vec<bool>, Option<String>)>,
    steps: u64,
}

impl Search<'_> {
    /// `Some(found)`, or `None` when the step budget ran out. `required` counts the completed
    /// operations not yet linearized.
    fn dfs(&mut self, linearized: &mut Vec<bool>, required: usize, state: Option<String>) -> Option<bool> {
        if required == 0 {
            return Some(true);
        }
        self.steps += 1;
        if self.steps > SEARCH_STEPS_MAX {
            return None;
        }
        if !self.memo.insert((linearized.clone(), state.clone())) {
            return Some(false);
        }
        let earliest_completion = (0..self.ops.len())
            .filter(|&i| !linearized[i])
            .filter_map(|i| self.ops[i].completed)
            .min()
            .unwrap_or(u64::MAX);
        // Completed operations first: an unknown write is tried only when they cannot go on.
        let mut candidates: Vec<usize> =
            (0..self.ops.len()).filter(|&i| !linearized[i] && self.ops[i].invoked <= earliest_completion).collect();
        candidates.sort_by_key(|&i| (self.ops[i].completed.is_none(), self.ops[i].completed));
        for i in candidates {
            let next = match &self.ops[i].op {
                Op::Write(v) => Some(v.clone()),
                Op::Read(seen) if *seen == state => state.clone(),
                Op::Read(_) => continue,
            };
            linearized[i] = true;
            let left = required - usize::from(self.ops[i].completed.is_some());
            let found = self.dfs(linearized, left, next);
            linearized[i] = false;
            if found != Some(false) {
                return found;
            }
        }
        Some(false)
    }
}

fn describe(ops: &[&Event]) -> String {
    let mut sorted: Vec<&&Event> = ops.iter().collect();
    sorted.sort_by_key(|e| e.invoked);
    sorted
        .iter()
        .map(|e| {
            let done = e.completed.map_or("?".to_owned(), |c| c.to_string());
            format!("  client {} [{}, {}] {:?}", e.client, e.invoked, done, e.op)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(client: usize, v: &str, invoked: u64, completed: Option<u64>) -> Event {
        Event { client, op: Op::Write(v.into()), invoked, completed }
    }

    fn r(client: usize, v: Option<&str>, invoked: u64, completed: u64) -> Event {
        Event { client, op: Op::Read(v.map(Into::into)), invoked, completed: Some(completed) }
    }

    #[test]
    fn sequential_and_concurrent_histories_pass() {
        let h = [w(0, "a", 0, Some(1)), r(1, Some("a"), 2, 3), w(0, "b", 4, Some(5)), r(1, Some("b"), 6, 7)];
        assert_eq!(check_register(&h, None), Verdict::Ok);
        // Overlapping write and read: the read may see either value.
        let h = [w(0, "a", 0, Some(1)), w(0, "b", 2, Some(6)), r(1, Some("a"), 3, 4), r(2, Some("b"), 5, 7)];
        assert_eq!(check_register(&h, None), Verdict::Ok);
        assert_eq!(check_register(&[r(0, None, 0, 1)], None), Verdict::Ok);
    }

    #[test]
    fn a_stale_read_is_a_violation() {
        let h = [w(0, "a", 0, Some(1)), w(0, "b", 2, Some(3)), r(1, Some("a"), 4, 5)];
        assert!(matches!(check_register(&h, None), Verdict::Violation(_)));
        // A read of a value never written.
        assert!(matches!(check_register(&[r(0, Some("x"), 0, 1)], None), Verdict::Violation(_)));
        // A lost write: acknowledged, then nil.
        assert!(matches!(check_register(&[w(0, "a", 0, Some(1)), r(1, None, 2, 3)], None), Verdict::Violation(_)));
    }

    #[test]
    fn unknown_writes_may_take_effect_late_or_never() {
        // Seen long after its call: took effect late.
        let h = [w(0, "a", 0, None), r(1, None, 1, 2), r(1, Some("a"), 10, 11)];
        assert_eq!(check_register(&h, None), Verdict::Ok);
        // Never seen: never took effect.
        let h = [w(0, "a", 0, None), r(1, None, 10, 11)];
        assert_eq!(check_register(&h, None), Verdict::Ok);
        // But not before its call.
        let h = [r(1, Some("a"), 0, 1), w(0, "a", 2, None)];
        assert!(matches!(check_register(&h, None), Verdict::Violation(_)));
        // And once overwritten and seen overwritten, it cannot come back without a new write.
        let h = [
            w(0, "a", 0, None),
            r(1, Some("a"), 1, 2),
            w(2, "b", 3, Some(4)),
            r(1, Some("b"), 5, 6),
            r(1, Some("a"), 7, 8),
        ];
        assert!(matches!(check_register(&h, None), Verdict::Violation(_)));
    }

    #[test]
    fn many_concurrent_operations_are_decided() {
        let mut h = Vec::new();
        for i in 0..300u64 {
            let t = i * 10;
            h.push(w((i % 3) as usize, &format!("v{i}"), t, Some(t + 15)));
            h.push(r(3, Some(&format!("v{i}")), t + 16, t + 17));
            if i % 7 == 0 {
                h.push(w(4, &format!("lost{i}"), t, None));
            }
        }
        assert_eq!(check_register(&h, None), Verdict::Ok);
    }

    #[test]
    fn a_soak_length_history_does_not_overflow_the_stack() {
        // 16,000 operations one after another: deeper than a 2 MiB stack holds in a debug build.
        let mut h = Vec::new();
        for i in 0..8_000u64 {
            let t = i * 10;
            h.push(w(0, &format!("v{i}"), t, Some(t + 2)));
            h.push(r(1, Some(&format!("v{i}")), t + 3, t + 4));
        }
        assert_eq!(check_register(&h, None), Verdict::Ok);
    }
}
