//! # Redraft
//!
//! A Redis-compatible key-value server whose replicated state machine is a WebAssembly module.
//! This crate is the node. Its layers, each depending only on the ones after it:
//!
//! * [`server`]: the Redis-facing side (so far its wire protocol, RESP2 and RESP3);
//! * [`runtime`]: runs a state-machine module (wasmtime) deterministically and transactionally;
//! * [`storage`]: the state store, redb (durable) or memory, with chunked snapshots.
//!
//! The Raft layer, between the server and the runtime, builds on these (see `docs/DESIGN.md`).

pub mod runtime;
pub mod server;
pub mod storage;
