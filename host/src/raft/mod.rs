//! The Raft layer: openraft glue between the Redis-facing server and the wasm state machine.
//!
//! Split along openraft's traits, one concern per file:
//!
//! * [`log_store`]: the Raft log and vote, in redb (fsynced before an append is acknowledged) or
//!   in memory;
//! * [`state_machine`]: applies committed entries through the [`crate::runtime::Runtime`], builds
//!   and installs snapshots (files, streamed in chunks);
//! * [`network`]: the peer transport, Raft RPCs over TCP with a cluster id on every request;
//! * [`node`]: one running node: opens the stores, starts openraft, batches client writes into
//!   entries (group commit) and client reads into read-index rounds, and runs membership changes.
//!
//! What this layer does not own: RESP (see [`crate::server`]) and wasm execution (see
//! [`crate::runtime`]).

// openraft's traits fix the error type (`StorageError`, about 224 bytes); our helpers return it
// as-is rather than boxing and unboxing at every trait boundary.
#![allow(clippy::result_large_err)]

pub mod log_store;
pub mod network;
pub mod node;
pub mod state_machine;

use fsm_sdk::Reply;
use serde::{Deserialize, Serialize};
use std::fmt;
#[allow(unused_imports)] // `declare_raft_types!` names `Cursor` for its default snapshot type.
use std::io::Cursor;

/// A node's id in the cluster. Never reused: a removed id is retired for good.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The openraft type configuration of Redraft.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = Member,
        SnapshotData = tokio::fs::File,
);

/// A cluster member's addresses, as membership entries carry them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Where its peers send Raft RPCs.
    pub raft_addr: String,
    /// Where clients reach it (RESP): what `LEADER`, `NODES` and `-MOVED` report.
    pub redis_addr: String,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raft={} redis={}", self.raft_addr, self.redis_addr)
    }
}

/// The application payload of a Raft log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Client commands, each an argument list encoded with [`fsm_sdk::codec::encode_args`], applied
    /// in order. Many client writes share one entry: that is the group commit (one append, one
    /// fsync and one replication round serve them all).
    Commands(Vec<Vec<u8>>),
    /// The state-machine contract ([`crate::runtime::Contract`], encoded) the cluster was
    /// bootstrapped with. The first entry after bootstrap: a replica whose own contract differs
    /// refuses to apply past it.
    Contract(Vec<u8>),
    /// Retires a node id for good (proposed before the node is removed), so it is never reused.
    RetireNode(NodeId),
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Commands(commands) => write!(f, "commands({})", commands.len()),
            Request::Contract(_) => f.write_str("contract"),
            Request::RetireNode(id) => write!(f, "retire-node({id})"),
        }
    }
}

/// What applying one entry produced: one reply per command of a [`Request::Commands`] entry.
///
/// Replies never travel between nodes (a client gets its reply from the node it proposed on), so
/// they are skipped by serde.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Response {
    /// The module's replies, in command order.
    #[serde(skip)]
    pub replies: Vec<Reply>,
}

/// Serialises a value for the log, the meta tables or the wire (postcard: compact, and
/// self-delimiting enough for our framing).
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(value)
}

/// The inverse of [`encode`].
pub(crate) fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}
