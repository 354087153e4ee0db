//! # Redraft
//!
//! A Redis-compatible key-value server whose replicated state machine is a WebAssembly module.
//! This crate is the node. Its layers, each depending only on the ones after it:
//!
//! * [`runtime`]: runs a state-machine module (wasmtime) deterministically and transactionally;
//! * [`storage`]: the state store, redb (durable) or memory, with chunked snapshots.
//!
//! [`config`] reads a node's settings (a YAML file and command-line overrides).
//!
//! The Raft layer and the Redis-facing server build on these (see `docs/DESIGN.md`).

pub mod config;
pub mod runtime;
pub mod storage;
