//! # fsm-kv-v2: fsm-kv plus `GETDEL`, `SETNX` and `INCRBYFLOAT`
//!
//! (Its keys expire as fsm-kv's do: the same layout, the same housekeeping tick.)
//!
//! The example of a module switch worth doing: a cluster running fsm-kv (v1) points its config at
//! this module and runs `MODULE RELOAD`; from that log index on, every replica runs v2.
//!
//! **Same layout, so v1's data reads the same.** v2 keeps v1's store layout (see
//! [`fsm_kv_core`]): `k` + key → value, and the key count at `m:dbsize`. Its new commands keep
//! that count current as v1's do, so a cluster can also switch back to v1.
//!
//! **The migration hook** stamps the layout version, `m:schema` = `2`, after checking the state
//! is one v2 can read: v1's (no stamp) or v2's own. A state stamped by some later version is
//! refused, and the switch with it: the cluster stays on the module it runs. A migration runs
//! inside one log entry under one command's fuel budget, so it must not rewrite the whole
//! keyspace; a layout change that needs that would convert keys lazily, as they are written.
#![deny(unsafe_code)]

use fsm_kv_core::{data_key, expiry::expire_if_due, getdel, key_created, setnx};
use fsm_sdk::{Arity, Command, KeySpec, Reply, StateMachine, Tx};

/// The key-value state machine, version 2.
pub struct KeyValueV2;

/// The commands v2 adds to v1's.
const ADDED: [Command; 3] = [
    Command::write("getdel", Arity::Exact(2), KeySpec::single(), getdel),
    Command::write("setnx", Arity::Exact(3), KeySpec::single(), setnx),
    Command::write("incrbyfloat", Arity::Exact(3), KeySpec::single(), incrbyfloat),
];

const COMMANDS: [Command; 105] = fsm_kv_core::concat(fsm_kv_core::KV_COMMANDS, ADDED);

impl StateMachine for KeyValueV2 {
    const COMMANDS: &'static [Command] = &COMMANDS;

    fsm_kv_core::kv_hooks!();

    fn migrate(tx: &mut Tx) -> Reply {
        match tx.get(SCHEMA_KEY).as_deref() {
            None | Some(SCHEMA) => {
                tx.put(SCHEMA_KEY, SCHEMA);
                fsm_kv_core::migrate(tx)
            }
            Some(other) => Reply::error(format!(
                "ERR fsm-kv-v2 cannot read this state: it has layout version {:?}, v2 reads versions 1 and 2",
                String::from_utf8_lossy(other)
            )),
        }
    }
}

fsm_sdk::export_state_machine!(KeyValueV2);

/// Where the layout version is stamped (absent: v1's layout).
pub const SCHEMA_KEY: &[u8] = b"m:schema";
/// This module's layout version.
pub const SCHEMA: &[u8] = b"2";

/// `INCRBYFLOAT key increment`: the new value, as Redis prints it.
fn incrbyfloat(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    expire_if_due(tx, args[1]);
    let key = data_key(args[1]);
    let current = match fsm_kv_core::expiry::string_value(tx, args[1]) {
        Err(reply) => return reply,
        Ok(None) => 0.0,
        Ok(Some(value)) => match parse_float(&value) {
            Some(n) => n,
            None => return Reply::error("ERR value is not a valid float"),
        },
    };
    let Some(increment) = parse_float(args[2]) else {
        return Reply::error("ERR value is not a valid float");
    };
    let next = current + increment;
    if !next.is_finite() {
        return Reply::error("ERR increment would produce NaN or Infinity");
    }
    let text = format_float(next);
    if !tx.put(&key, text.as_bytes()) {
        key_created(tx, args[1]);
    }
    Reply::Bulk(text.into_bytes())
}

pub use fsm_kv_core::{format_float, parse_float};
