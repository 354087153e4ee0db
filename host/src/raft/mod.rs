//! The Raft layer: openraft glue between the Redis-facing server and the wasm state machine.
//!
//! Split along openraft's traits, one concern per file:
//!
//! * [`log_store`]: the Raft log and vote, on disk (fsynced before an append is acknowledged) or
//!   in memory; [`wal`]: the log's segment files;
//! * [`state_machine`]: applies committed entries through the [`crate::runtime::Runtime`], builds
//!   and installs snapshots (files, streamed in chunks);
//! * [`network`]: the peer transport, Raft RPCs over TCP with a cluster id on every request;
//! * [`modules`]: the module this node's config names, and whether it asks for a switch.
//!
//! What this layer does not own: the running node's service (batching, reads, membership; see
//! [`crate::node`]), RESP (see [`crate::server`]) and wasm execution (see [`crate::runtime`]).

// openraft's traits fix the error type (`StorageError`, about 224 bytes); our helpers return it
// as-is rather than boxing and unboxing at every trait boundary.
#![allow(clippy::result_large_err)]

pub mod log_store;
pub mod modules;
pub mod network;
pub mod peer_auth;
pub mod state_machine;
pub mod wal;

use fsm_sdk::Reply;
use serde::{Deserialize, Serialize};
use std::fmt;
#[allow(unused_imports)] // `declare_raft_types!` names `Cursor` for its default snapshot type.
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of the write path since the node started, for `INFO raft` (sample twice for rates):
/// they explain a benchmark's figures (commands per entry, entries per append and per apply).
#[derive(Debug, Default)]
pub struct WriteCounters {
    /// Entries the write batcher proposed, and the client writes they carried.
    pub entries_proposed: AtomicU64,
    /// See `entries_proposed`.
    pub commands_proposed: AtomicU64,
    /// Log appends (each one write and one fsync on disk), and the entries and bytes they held.
    pub log_appends: AtomicU64,
    /// See `log_appends`.
    pub log_entries_appended: AtomicU64,
    /// See `log_appends`.
    pub log_bytes_appended: AtomicU64,
    /// Calls to apply committed entries, and the entries and client writes they applied.
    pub applies: AtomicU64,
    /// See `applies`.
    pub entries_applied: AtomicU64,
    /// See `applies`.
    pub commands_applied: AtomicU64,
    /// How long each log append took, its write and fsync together.
    pub append_latency: crate::stats::Histogram,
    /// How many client writes each entry the write batcher proposed carried.
    pub batch_commands: crate::stats::SizeHistogram,
    /// The highest index openraft has told the log store is committed (a gauge; on every node).
    pub commit_index: AtomicU64,
    /// Snapshots this node built, and how long each took (reading the state, writing and
    /// fsyncing the file).
    pub snapshots_built: AtomicU64,
    /// See `snapshots_built`.
    pub snapshot_build_latency: crate::stats::Histogram,
    /// Snapshots received from a leader and installed, and how long each install took (fsync,
    /// verification and restore; the transfer is not included).
    pub snapshots_installed: AtomicU64,
    /// See `snapshots_installed`.
    pub snapshot_install_latency: crate::stats::Histogram,
    /// The size in bytes of the snapshot file this node built or installed last (a gauge).
    pub snapshot_bytes: AtomicU64,
}

impl WriteCounters {
    /// Adds `n` to `counter` (relaxed: counters, not synchronisation).
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// `(name, value)` for each counter, in a fixed order.
    pub fn snapshot(&self) -> [(&'static str, u64); 10] {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("raft_entries_proposed", get(&self.entries_proposed)),
            ("raft_commands_proposed", get(&self.commands_proposed)),
            ("raft_log_appends", get(&self.log_appends)),
            ("raft_log_entries_appended", get(&self.log_entries_appended)),
            ("raft_log_bytes_appended", get(&self.log_bytes_appended)),
            ("raft_applies", get(&self.applies)),
            ("raft_entries_applied", get(&self.entries_applied)),
            ("raft_commands_applied", get(&self.commands_applied)),
            ("raft_snapshots_built", get(&self.snapshots_built)),
            ("raft_snapshots_installed", get(&self.snapshots_installed)),
        ]
    }
}

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
    /// fsync and one replication round serve them all). Shared (`Arc`), so the log store's cache
    /// and openraft's replication and apply paths can hold the entry without copying it.
    Commands(#[serde(with = "byte_strings")] std::sync::Arc<Vec<Vec<u8>>>),
    /// Written only by Redraft before module switches existed, as the first entry after
    /// bootstrap: the cluster's contract ([`crate::runtime::Contract`], encoded), without the
    /// module's bytes. Applied as the module entry of this node's configured module, which must
    /// have exactly this contract (every node of such a cluster had to). Kept so that those logs
    /// still decode: the variants' order is their encoding.
    Contract(#[serde(with = "byte_string")] Vec<u8>),
    /// Retires a node id for good (proposed before the node is removed), so it is never reused.
    RetireNode(NodeId),
    /// Makes a state-machine module the cluster's active one, from this entry on. The first
    /// entry after bootstrap installs the bootstrapping node's module; later ones switch modules
    /// (`MODULE RELOAD`), running the new module's migration hook inside this entry's apply.
    Module(ModuleChange),
    /// Client commands as in [`Request::Commands`], stamped with the proposing leader's clock:
    /// the module's time while they apply (see [`crate::runtime::Runtime::apply_ops`]). What the
    /// write batcher proposes.
    Timed(TimedCommands),
    /// The module's housekeeping (expiring keys) at this time, in milliseconds since the Unix
    /// epoch: proposed by the leader when the module says work is due.
    Tick(i64),
}

/// A [`Request::Timed`] entry's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimedCommands {
    /// The leader's clock when it proposed the entry, in milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// The commands, as in [`Request::Commands`].
    #[serde(with = "byte_strings")]
    pub commands: std::sync::Arc<Vec<Vec<u8>>>,
}

impl Request {
    /// About how many bytes the entry takes on the wire (its commands' or module's bytes; a few
    /// bytes of framing left out): what bounds an AppendEntries RPC by size.
    pub fn wire_bytes(&self) -> usize {
        let commands = |c: &[Vec<u8>]| c.iter().map(|c| c.len() + 4).sum::<usize>();
        16 + match self {
            Request::Commands(c) => commands(c),
            Request::Timed(t) => commands(&t.commands),
            Request::Contract(c) => c.len(),
            Request::Module(m) => m.contract.len() + m.bytes.len(),
            Request::RetireNode(_) | Request::Tick(_) => 0,
        }
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Commands(commands) => write!(f, "commands({})", commands.len()),
            Request::Contract(_) => f.write_str("contract"),
            Request::Module(change) => write!(f, "module({} bytes)", change.bytes.len()),
            Request::RetireNode(id) => write!(f, "retire-node({id})"),
            Request::Timed(timed) => write!(f, "commands({}, at {} ms)", timed.commands.len(), timed.time_ms),
            Request::Tick(time_ms) => write!(f, "tick(at {time_ms} ms)"),
        }
    }
}

/// A [`Request::Module`] entry's payload: everything a replica needs to switch at this index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleChange {
    /// The proposer's contract for the module ([`crate::runtime::Contract`], encoded): its
    /// digest, and the ABI, engine and limits the proposer runs. A replica whose own ABI, engine
    /// or limits differ stops rather than apply it.
    #[serde(with = "byte_string")]
    pub contract: Vec<u8>,
    /// The `.wasm` bytes (their SHA-256 must be the contract's digest).
    #[serde(with = "byte_string")]
    pub bytes: Vec<u8>,
}

impl ModuleChange {
    /// The entry that makes `module` the cluster's, as this node (its engine, its limits) runs it.
    pub fn of(module: &crate::runtime::FsmModule) -> Self {
        ModuleChange { contract: module.contract().encode(), bytes: module.bytes().to_vec() }
    }
}

/// One module entry's outcome, as `MODULE HISTORY` lists it. Part of the replicated state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleEvent {
    /// The entry's log index: where the switch took effect, or was refused.
    pub index: u64,
    /// SHA-256 of the proposed module.
    pub digest: [u8; 32],
    /// `None` when the module became active; why not, otherwise.
    pub rejected: Option<String>,
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

/// Most commands one entry may hold when decoded (the write batcher makes at most
/// `limits.write_batch_commands_max`, 4096 by default).
pub const COMMANDS_PER_ENTRY_MAX: usize = 1 << 20;

/// Serde for one byte string as a `bytes` value (see [`byte_strings`]).
mod byte_string {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(item: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(item)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let super::byte_strings::ByteBuf(bytes) = serde::Deserialize::deserialize(deserializer)?;
        Ok(bytes)
    }
}

/// Serde for a list of byte strings, each as one `bytes` value. serde's default for `Vec<u8>`
/// is a sequence visited byte by byte, which profiling showed as the top user-space cost of
/// encoding and decoding large entries (on the leader's log, the wire, and each follower's log).
mod byte_strings {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::ser::{SerializeSeq, Serializer};
    use std::fmt;

    struct AsBytes<'a>(&'a [u8]);

    impl serde::Serialize for AsBytes<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(self.0)
        }
    }

    pub fn serialize<S: Serializer>(items: &std::sync::Arc<Vec<Vec<u8>>>, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(items.len()))?;
        for item in items.iter() {
            seq.serialize_element(&AsBytes(item))?;
        }
        seq.end()
    }

    pub(super) struct ByteBuf(pub(super) Vec<u8>);

    impl<'de> serde::Deserialize<'de> for ByteBuf {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct BytesVisitor;
            impl<'de> Visitor<'de> for BytesVisitor {
                type Value = ByteBuf;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a byte string")
                }
                fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
                    Ok(ByteBuf(v.to_vec()))
                }
                fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
                    Ok(ByteBuf(v))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ByteBuf, A::Error> {
                    let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                    while let Some(b) = seq.next_element()? {
                        out.push(b);
                    }
                    Ok(ByteBuf(out))
                }
            }
            deserializer.deserialize_byte_buf(BytesVisitor)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<std::sync::Arc<Vec<Vec<u8>>>, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = Vec<Vec<u8>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of byte strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Vec<u8>>, A::Error> {
                // Capped: the length comes from the wire, and each (even empty) command costs a
                // `Vec` in memory, far more than its byte on the wire.
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(ByteBuf(item)) = seq.next_element()? {
                    if out.len() >= super::COMMANDS_PER_ENTRY_MAX {
                        return Err(serde::de::Error::custom("too many commands in one entry"));
                    }
                    out.push(item);
                }
                Ok(out)
            }
        }
        deserializer.deserialize_seq(ListVisitor).map(std::sync::Arc::new)
    }
}

/// The index a linearizable read served by the leader must wait for: openraft's read log id (the
/// greater of its commit index and the leader's first entry of its term), but never less than
/// `floor`, the last log index this node held when it started.
///
/// Why the floor: a leader that restarts keeps its term and vote, and openraft 0.9 resumes
/// leadership at once with the term's first entry (long committed) as its proof and the commit
/// index it last saved, which it saves lazily. An entry committed and acknowledged just before a
/// crash can be above that saved index, and a read would miss it (`node_failover.rs` t11 caught
/// this). Every entry committed before the restart is in this log by `floor`.
pub(crate) fn read_index(read_log_id: Option<openraft::LogId<NodeId>>, floor: u64) -> u64 {
    read_log_id.map_or(0, |l| l.index).max(floor)
}

/// Locks a mutex, recovering the data if a panicking holder poisoned it (every guarded value here
/// stays consistent between statements).
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Locks a mutex if no one holds it now (recovering a poisoned one, as [`lock`] does).
pub(crate) fn try_lock<T>(mutex: &std::sync::Mutex<T>) -> Option<std::sync::MutexGuard<'_, T>> {
    match mutex.try_lock() {
        Ok(guard) => Some(guard),
        Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_through_postcard() {
        let big = vec![7u8; 100_000];
        for request in [
            Request::Commands(vec![].into()),
            Request::Commands(vec![b"a".to_vec(), vec![], big.clone(), (0..=255).collect()].into()),
            Request::Contract(big.clone()),
            Request::Module(ModuleChange { contract: b"module_digest=00".to_vec(), bytes: big }),
            Request::RetireNode(42),
            Request::Timed(TimedCommands { time_ms: 1_700_000_000_123, commands: vec![b"x".to_vec(), vec![]].into() }),
            Request::Tick(-5),
        ] {
            let bytes = encode(&request).expect("encode");
            let back: Request = decode(&bytes).expect("decode");
            assert_eq!(back, request);
        }
    }

    #[test]
    fn byte_strings_are_encoded_as_length_and_bytes() {
        // One varint for the variant, one for the count, one for each length, then the bytes:
        // no per-byte overhead.
        let bytes = encode(&Request::Commands(vec![vec![200u8; 300]].into())).expect("encode");
        assert_eq!(bytes.len(), 1 + 1 + 2 + 300);
    }

    #[test]
    fn garbage_never_panics_and_never_allocates_what_it_claims() {
        // A count of 2^60 commands must be refused as short input, not allocated.
        let mut bytes = vec![0u8];
        bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(decode::<Request>(&bytes).is_err());
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for len in 0..2000 {
            let garbage: Vec<u8> = (0..len % 64)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let _ = decode::<Request>(&garbage);
        }
    }
}

#[cfg(test)]
mod limits {
    use super::*;

    #[test]
    fn an_entry_with_too_many_commands_is_refused_when_decoded() {
        let at_cap = Request::Commands(std::sync::Arc::new(vec![Vec::new(); COMMANDS_PER_ENTRY_MAX]));
        let bytes = encode(&at_cap).expect("encode");
        assert_eq!(decode::<Request>(&bytes).expect("at the cap"), at_cap);
        let over = Request::Commands(std::sync::Arc::new(vec![Vec::new(); COMMANDS_PER_ENTRY_MAX + 1]));
        let bytes = encode(&over).expect("encode");
        assert!(decode::<Request>(&bytes).is_err());
    }
}
