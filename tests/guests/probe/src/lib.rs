//! A test-only module whose replies depend on std's hidden global state, unless the host gives
//! every command the state of a fresh instance.
//!
//! * `HASHORDER`: the iteration order of a `HashMap` with the default hasher. std seeds it from a
//!   per-instance counter that every `HashMap::new()` advances.
//! * `PRINT`: writes to stdout without a newline. std buffers it in a lazily allocated static
//!   buffer (stdout itself goes nowhere on this target).
//! * `COUNT`: increments a plain `static` and returns it.
//!
//! Its migration hook panics (a trap): a cluster can never switch to it from another module,
//! which the module-switch tests use to check that a failed migration changes nothing.
#![deny(unsafe_code)]

use fsm_sdk::{Arity, Command, KeySpec, Reply, StateMachine, Tx, View};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};

/// The probe.
pub struct Probe;

impl StateMachine for Probe {
    const COMMANDS: &'static [Command] = &[
        Command::read("hashorder", Arity::Exact(1), KeySpec::none(), hash_order),
        Command::read("print", Arity::Exact(2), KeySpec::none(), print),
        Command::read("count", Arity::Exact(1), KeySpec::none(), count),
    ];

    fn migrate(tx: &mut Tx) -> Reply {
        // Writes first, so the test can check they are not kept.
        tx.put(b"probe-migrated", b"1");
        panic!("fsm-probe refuses to be migrated to")
    }
}

fsm_sdk::export_state_machine!(Probe);

fn hash_order(_: &View, _: &[&[u8]]) -> Reply {
    let map: HashMap<i64, ()> = (0..32).map(|i| (i, ())).collect();
    Reply::Array(map.keys().map(|k| Reply::Integer(*k)).collect())
}

fn print(_: &View, args: &[&[u8]]) -> Reply {
    print!("{}", String::from_utf8_lossy(args[1]));
    Reply::ok()
}

static COUNTER: AtomicI64 = AtomicI64::new(0);

fn count(_: &View, _: &[&[u8]]) -> Reply {
    Reply::Integer(COUNTER.fetch_add(1, Ordering::Relaxed) + 1)
}
