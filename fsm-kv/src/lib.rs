//! # fsm-kv: Redis string commands as a Redraft state machine
//!
//! Compiled to `wasm32-unknown-unknown` and loaded by every replica. Its table is
//! [`fsm_kv_core::KV_COMMANDS`]: `SET` (with `NX`, `XX`, `GET`, `EX`, `PX`, `EXAT`, `PXAT`,
//! `KEEPTTL`), `GET`, `DEL` / `DELETE`, `EXISTS`, `MGET`, `MSET`, `INCR`, `INCRBY`, `DECR`,
//! `DECRBY`, `APPEND`, `STRLEN`, `DBSIZE`, and the time-to-live commands (`EXPIRE`, `PEXPIRE`,
//! `EXPIREAT`, `PEXPIREAT`, `TTL`, `PTTL`, `EXPIRETIME`, `PEXPIRETIME`, `PERSIST`, `SETEX`,
//! `PSETEX`, `GETEX`), with Redis's reply types and error texts. `fsm-kv-v2` (in `fsm-kv/v2/`) adds commands on the same
//! layout, so a cluster can switch between the two (`MODULE RELOAD`).
//!
//! Layout in the host's store (the module owns its keyspace; nothing else writes to it):
//! * `b"k" ++ key` → the value, raw bytes.
//! * `b"m:dbsize"` → the number of keys, `i64` little-endian, kept current by every write so that
//!   `DBSIZE` costs one read instead of a scan.
//!
//! * `b"e" ++ key` → its expiry time, and `b"x" ++ time ++ key` → an index by time (see
//!   [`fsm_kv_core::expiry`]).
//!
//! **Time** comes from the log entry, stamped by the leader: every replica expires a key at the
//! same index. Expired keys vanish from reads at once, and the housekeeping tick removes them
//! from the store ([`fsm_sdk::StateMachine::tick`]), at most
//! [`fsm_kv_core::expiry::TICK_KEYS_MAX`] per tick.
#![deny(unsafe_code)]

pub use fsm_kv_core::parse_i64;
use fsm_sdk::{Command, Reply, StateMachine, Tx};

/// The key-value state machine.
pub struct KeyValue;

impl StateMachine for KeyValue {
    const COMMANDS: &'static [Command] = &fsm_kv_core::KV_COMMANDS;

    fn migrate(tx: &mut Tx) -> Reply {
        fsm_kv_core::migrate(tx)
    }

    fsm_kv_core::kv_hooks!();
}

fsm_sdk::export_state_machine!(KeyValue);
