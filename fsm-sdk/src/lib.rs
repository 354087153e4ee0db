#![doc = include_str!("../README.md")]
//!
//! ## Crate layout
//!
//! * [`abi`]: export and import names, the ABI version, status codes, and all `extern "C"` glue
//!   (the only `unsafe` in the SDK);
//! * [`codec`]: the byte encodings both sides use;
//! * [`glob`]: Redis's glob patterns (`KEYS`, `SCAN ... MATCH`), for modules and the host alike;
//! * [`StateMachine`], [`Command`], [`View`], [`Tx`], [`Reply`]: what a module author uses.

pub mod abi;
pub mod codec;
pub mod glob;
mod reply;

pub use reply::Reply;

/// How many arguments a command takes, counting the command name itself (Redis's convention,
/// which `COMMAND` reports: `GET key` is `Exact(2)`, `DEL key [key ...]` is `AtLeast(2)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    /// Exactly this many.
    Exact(u32),
    /// This many or more.
    AtLeast(u32),
}

impl Arity {
    /// Whether `argc` arguments (the name included) satisfy this arity.
    pub const fn accepts(self, argc: usize) -> bool {
        match self {
            Arity::Exact(n) => argc == n as usize,
            Arity::AtLeast(n) => argc >= n as usize,
        }
    }

    /// Redis's integer form: positive for exact, negative for a minimum.
    pub const fn to_wire(self) -> i32 {
        match self {
            Arity::Exact(n) => n as i32,
            Arity::AtLeast(n) => -(n as i32),
        }
    }

    /// Parses Redis's integer form; zero (meaningless) and `i32::MIN` (no positive counterpart)
    /// are refused.
    pub const fn from_wire(n: i32) -> Option<Self> {
        if n == i32::MIN {
            None
        } else if n > 0 {
            Some(Arity::Exact(n as u32))
        } else if n < 0 {
            Some(Arity::AtLeast(n.unsigned_abs()))
        } else {
            None
        }
    }
}

/// Where the keys are among a command's arguments, as Redis's `COMMAND` reports them (first key
/// position, last key position with -1 meaning the last argument, step). Cluster-aware clients
/// use it; the host reports it verbatim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    /// Position of the first key (0 when the command has no keys).
    pub first: i32,
    /// Position of the last key; negative counts from the end.
    pub last: i32,
    /// Distance between keys.
    pub step: i32,
}

impl KeySpec {
    /// No keys (`DBSIZE`).
    pub const fn none() -> Self {
        KeySpec { first: 0, last: 0, step: 0 }
    }
    /// One key in position 1 (`GET key`).
    pub const fn single() -> Self {
        KeySpec { first: 1, last: 1, step: 1 }
    }
    /// Every argument after the name is a key (`DEL key [key ...]`).
    pub const fn all() -> Self {
        KeySpec { first: 1, last: -1, step: 1 }
    }
    /// Keys and values alternate after the name (`MSET key value [key value ...]`).
    pub const fn pairs() -> Self {
        KeySpec { first: 1, last: -1, step: 2 }
    }

    /// The argument positions of the keys in a command of `argc` arguments (the name
    /// included): what the host checks against a user's key patterns, and whose writes wake
    /// clients blocked on those keys.
    pub fn positions(self, argc: usize) -> impl Iterator<Item = usize> {
        let argc = argc as i64;
        let first = i64::from(self.first);
        let last = if self.last < 0 { argc + i64::from(self.last) } else { i64::from(self.last) };
        let step = i64::from(self.step).max(1);
        // No keys (first 0) is an empty range: the last position before the first.
        let last = if first > 0 { last.min(argc - 1) } else { first - 1 };
        (first..=last).step_by(step as usize).map(|i| i as usize)
    }
}

/// What the host learns about a command from the module's table. The guest builds it from a
/// [`Command`]; the host decodes it (with an owned `String` name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandInfo<N = &'static str> {
    /// Lower-case command name.
    pub name: N,
    /// Argument count, the name included.
    pub arity: Arity,
    /// Whether the command may change state, and so must go through the Raft log.
    pub write: bool,
    /// Key positions, for `COMMAND`.
    pub keys: KeySpec,
}

/// A command handler. A read handler cannot write by construction, so the host may run it
/// outside the log (a linearizable or a stale read).
#[derive(Clone, Copy)]
pub enum Handler {
    /// Reads state; runs as a query.
    Read(fn(&View, &[&[u8]]) -> Reply),
    /// May read and write state; runs only as a committed log entry.
    Write(fn(&mut Tx, &[&[u8]]) -> Reply),
}

/// One row of a module's command table.
#[derive(Clone, Copy)]
pub struct Command {
    /// Lower-case command name, as clients type it in any case.
    pub name: &'static str,
    /// Argument count, the name included. The host checks it before calling the handler, so a
    /// handler can index its arguments freely up to the arity.
    pub arity: Arity,
    /// Key positions, for `COMMAND`.
    pub keys: KeySpec,
    /// The code that runs.
    pub handler: Handler,
}

impl Command {
    /// A command that only reads.
    pub const fn read(name: &'static str, arity: Arity, keys: KeySpec, run: fn(&View, &[&[u8]]) -> Reply) -> Self {
        Command { name, arity, keys, handler: Handler::Read(run) }
    }

    /// A command that may write.
    pub const fn write(name: &'static str, arity: Arity, keys: KeySpec, run: fn(&mut Tx, &[&[u8]]) -> Reply) -> Self {
        Command { name, arity, keys, handler: Handler::Write(run) }
    }

    /// The table row the host sees.
    pub const fn info(&self) -> CommandInfo {
        CommandInfo {
            name: self.name,
            arity: self.arity,
            write: matches!(self.handler, Handler::Write(_)),
            keys: self.keys,
        }
    }

    /// Checks the arity (again: the guest does not trust the host for it) and runs the handler.
    fn run(&self, args: &[&[u8]], read_only: bool) -> Reply {
        if !self.arity.accepts(args.len()) {
            return Reply::wrong_arity(self.name);
        }
        match self.handler {
            Handler::Read(run) => run(&View(()), args),
            Handler::Write(_) if read_only => {
                Reply::Error(format!("ERR '{}' writes and cannot run as a read-only query", self.name))
            }
            Handler::Write(run) => run(&mut Tx(View(())), args),
        }
    }
}

/// A state machine: a table of commands. Implement it on a unit struct and export it with
/// [`export_state_machine!`].
pub trait StateMachine {
    /// Every command the module serves. Names must be unique, lower-case ASCII.
    const COMMANDS: &'static [Command];

    /// Runs once when a running cluster switches to this module from another one (`MODULE
    /// RELOAD`), inside the switch's log entry, against the state the previous module left. It is
    /// an ordinary write: deterministic, bounded by the same fuel budget and memory cap as a
    /// command, and transactional. Return an error reply (or trap) to refuse the switch: the old
    /// module then stays active on every replica and nothing this hook wrote is kept.
    ///
    /// It does not run when a cluster is bootstrapped with the module (there is no earlier
    /// state). The default accepts any state and changes nothing.
    fn migrate(_tx: &mut Tx) -> Reply {
        Reply::ok()
    }

    /// Whether [`StateMachine::tick`] has work to do at [`View::time_ms`] (keys whose time to
    /// live ran out, say). The leader asks now and then, as a query with its own clock; when the
    /// answer is yes, it proposes a tick entry. Keep it cheap: one lookup, not a scan. The
    /// default has nothing to do.
    fn tick_due(_view: &View) -> bool {
        false
    }

    /// Housekeeping, run as a write when a tick entry is applied, on every replica at that
    /// entry's time: an ordinary write, bounded by the same fuel budget, so do a bounded amount
    /// of work per tick (the leader proposes another while [`StateMachine::tick_due`] says so).
    fn tick(_tx: &mut Tx) -> Reply {
        Reply::ok()
    }

    /// A token for `key` that changes whenever the key does (its value, its type, its expiry,
    /// whether it exists), for `WATCH`: the host reads it when a client watches the key and
    /// compares it again when the client's `EXEC` is applied, aborting the transaction if it
    /// differs. A digest of what the key holds is enough (a rewrite with identical content then
    /// does not abort, a documented difference from Redis). `None`, the default, means the module
    /// does not support `WATCH`, and the client is told so.
    fn watch_token(_view: &View, _key: &[u8]) -> Option<Vec<u8>> {
        None
    }
}

/// Read access to the replicated state, as of the command being run (a write handler sees its
/// own earlier writes).
///
/// Keys and values are arbitrary bytes. The store is ordered by key bytes, so [`View::scan`]
/// returns keys in lexicographic order.
pub struct View(());

impl View {
    /// The command's time in milliseconds since the Unix epoch. In a write (and in
    /// [`StateMachine::tick`] and [`StateMachine::migrate`]) it is the time the leader stamped on
    /// the log entry: the same on every replica, and never below an earlier entry's. In a read it
    /// is the serving node's clock. Use it for expiry, never for anything that must be unique.
    pub fn time_ms(&self) -> i64 {
        abi::host_time()
    }

    /// The value stored at `key`.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        abi::host_get(key)
    }

    /// The length of the value at `key`, without copying it.
    pub fn value_len(&self, key: &[u8]) -> Option<u32> {
        abi::host_value_len(key)
    }

    /// Whether `key` has a value.
    pub fn exists(&self, key: &[u8]) -> bool {
        self.value_len(key).is_some()
    }

    /// Up to `limit` entries with `start <= key < end` (no upper bound when `end` is `None`), in
    /// key order.
    pub fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
        Self::decoded(&abi::host_scan(start, end, limit, false))
    }

    /// As [`View::scan`], in descending key order: the `limit` highest keys of the range. This
    /// reads the end of a range (a sorted set's top scores, a list's tail) without walking the
    /// rest of it.
    pub fn scan_rev(&self, start: &[u8], end: Option<&[u8]>, limit: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
        Self::decoded(&abi::host_scan(start, end, limit, true))
    }

    fn decoded(bytes: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        // The host encodes with the same codec; a decode failure would be a host bug, and the
        // host's own tests cover it, so degrade to an empty result rather than trap.
        codec::decode_entries(bytes)
            .map(|entries| entries.into_iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect())
            .unwrap_or_default()
    }
}

/// Read and write access to the replicated state inside a write command. Writes are buffered by
/// the host and kept only if the handler returns a non-error reply.
pub struct Tx(View);

impl Tx {
    /// Only the SDK's entry points make one: a `Tx` exists only inside a write call.
    pub(crate) fn new() -> Self {
        Tx(View(()))
    }
}

impl core::ops::Deref for Tx {
    type Target = View;
    fn deref(&self) -> &View {
        &self.0
    }
}

impl Tx {
    /// Stores `value` at `key`; returns whether the key existed before.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> bool {
        abi::host_put(key, value)
    }

    /// Removes `key`; returns whether it existed.
    pub fn delete(&mut self, key: &[u8]) -> bool {
        abi::host_delete(key)
    }

    /// Removes every key of the state, in constant work whatever its size: how a `FLUSHDB` stays
    /// one bounded command. Later writes of the same command are kept; if the command fails, the
    /// clear is undone with the rest.
    pub fn clear(&mut self) {
        abi::host_clear()
    }
}
