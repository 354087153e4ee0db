//! # fsm-kv: Redis string commands as a Redraft state machine
//!
//! Compiled to `wasm32-unknown-unknown` and loaded by every replica. Its table is
//! [`fsm_kv_core::STRINGS`]: `SET` (with `NX`, `XX`, `GET`), `GET`, `DEL` / `DELETE`, `EXISTS`,
//! `MGET`, `MSET`, `INCR`, `INCRBY`, `DECR`, `DECRBY`, `APPEND`, `STRLEN` and `DBSIZE`, with
//! Redis's reply types and error texts. `fsm-kv-v2` (in `fsm-kv/v2/`) adds commands on the same
//! layout, so a cluster can switch between the two (`MODULE RELOAD`).
//!
//! Layout in the host's store (the module owns its keyspace; nothing else writes to it):
//! * `b"k" ++ key` → the value, raw bytes.
//! * `b"m:dbsize"` → the number of keys, `i64` little-endian, kept current by every write so that
//!   `DBSIZE` costs one read instead of a scan.
//!
//! There are no expiring keys: a TTL needs a clock, and the state machine has none (every replica
//! must compute the same state from the same log). `SET ... EX/PX/EXAT/PXAT` is refused with an
//! error that says so; `KEEPTTL` is accepted and has nothing to keep.
#![deny(unsafe_code)]

pub use fsm_kv_core::parse_i64;
use fsm_sdk::{Command, StateMachine};

/// The key-value state machine.
pub struct KeyValue;

impl StateMachine for KeyValue {
    const COMMANDS: &'static [Command] = &fsm_kv_core::STRINGS;
}

fsm_sdk::export_state_machine!(KeyValue);
