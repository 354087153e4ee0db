//! The wasm runtime: runs a state-machine module's commands against a [`Store`], deterministically
//! and transactionally.
//!
//! * [`FsmEngine`] configures wasmtime for deterministic execution; [`FsmModule`] is a validated
//!   module (its digest, its command table).
//! * [`Runtime::apply_batch`] runs N committed commands in one store transaction, with meta entries
//!   (the last-applied log id) written in the same commit. Each command runs under the fuel budget
//!   and memory cap; its writes are kept only if it returns a non-error reply.
//! * [`Runtime::query`] runs a read-only command against the committed state.
//! * Time: a write runs at its entry's stamp, clamped so that it never runs backwards
//!   ([`meta::CLOCK`] records it with the data); a query runs at the node's clock.
//!
//! What is deterministic, and so may become a client reply: unknown command, wrong arity, the
//! module's own error replies, traps, out-of-fuel, the memory cap, and the guest misusing the ABI.
//! What is not: storage failures ([`ApplyError`]); the caller must stop applying and never report
//! such a command as applied. The runtime knows nothing of Raft.
//!
//! [`Store`]: crate::storage::Store

mod contract;
mod host_functions;
mod instance;
mod module;
mod overlay;
mod statics;

pub use self::contract::{Contract, WASMTIME_VERSION};
pub use self::host_functions::{BYTES_PER_FUEL, HOST_CALL_FUEL, SCAN_ENTRY_FUEL};
pub use self::module::{FsmEngine, FsmModule, LoadError, RuntimeLimits};
pub use self::statics::{MUTABLE_GLOBALS_MAX, STATICS_BYTES_MAX};

use self::host_functions::{Access, HostFault};
use self::instance::Instance;
pub(crate) use self::instance::describe;
use crate::storage::snapshot::SnapshotInfo;
use crate::storage::{SharedStore, StorageError, WriteBatch, meta};
use fsm_sdk::{Reply, codec};
use std::sync::Arc;
use wasmtime::Trap;

/// A failure that is not the command's fault and not deterministic. The command must not be
/// reported as applied, and the caller should stop applying (the node halts, as toydb and etcd do
/// on a storage error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// wasmtime failed outside the guest's control (for example, could not instantiate).
    #[error("wasm engine failure: {0}")]
    Engine(String),
}

/// Why a runtime could not be opened on a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The store holds state produced under another contract (another module, or other limits).
    #[error(
        "the store's state was produced under another state-machine contract ({differences}; stored vs \
         configured): refusing to apply with a different module or different limits"
    )]
    ContractMismatch {
        /// Each differing field, as `name: stored vs configured`.
        differences: String,
    },
    /// The recorded contract does not decode: the store is damaged or not ours.
    #[error("the store's recorded state-machine contract is unreadable: {0}")]
    UnreadableContract(String),
    /// The module recorded in the store does not load (with this build's engine and limits).
    #[error("the state-machine module recorded in the store does not load: {0}")]
    RecordedModule(#[from] LoadError),
    /// Reading or writing the store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The module could not be instantiated.
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

/// How a failed call is classified.
enum Failure {
    /// The command is aborted with this error text; replicas agree on it.
    Deterministic(String),
    /// Not the command's fault; stop.
    Fatal(ApplyError),
}

fn classify(error: wasmtime::Error, limits: RuntimeLimits) -> Failure {
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return Failure::Deterministic(match trap {
            Trap::OutOfFuel => format!("ERR command aborted: fuel budget of {} exhausted", limits.fuel_per_apply),
            Trap::StackOverflow => "ERR command aborted: wasm stack overflow".to_owned(),
            other => format!("ERR command aborted: module trapped: {other}"),
        });
    }
    match error.downcast::<HostFault>() {
        Ok(HostFault::Guest(msg)) => Failure::Deterministic(format!("ERR command aborted: {msg}")),
        Ok(fault @ (HostFault::MemoryLimit(_) | HostFault::WriteLimit(_))) => {
            Failure::Deterministic(format!("ERR command aborted: {fault}"))
        }
        Ok(fault @ HostFault::HostResources(_)) => Failure::Fatal(ApplyError::Engine(fault.to_string())),
        Ok(HostFault::Storage(e)) => Failure::Fatal(ApplyError::Storage(e)),
        // Anything else came from wasmtime itself, not from the module's code: we cannot claim
        // another replica would see it too.
        Err(other) => Failure::Fatal(ApplyError::Engine(format!("{other:#}"))),
    }
}

/// Redis's reply to a command name the table does not have.
pub(crate) fn unknown_command(encoded: &[u8]) -> Reply {
    let mut args = Vec::new();
    if codec::decode_args_into(encoded, &mut args).is_err() || args.is_empty() {
        return Reply::error("ERR empty command");
    }
    // Redis: the name cut at 128 bytes; arguments quoted while their text is under 128 bytes,
    // each cut to what is left of the 128; then CR and LF become spaces.
    let mut quoted: Vec<u8> = Vec::new();
    // C's `%s` stops at a NUL byte, so Redis's text does too.
    let c_str = |b: &[u8]| -> usize { b.iter().position(|&c| c == 0).unwrap_or(b.len()) };
    for arg in &args[1..] {
        if quoted.len() >= 128 {
            break;
        }
        let arg = &arg[..c_str(arg)];
        let room = 128 - quoted.len();
        quoted.push(b'\'');
        quoted.extend_from_slice(&arg[..arg.len().min(room)]);
        quoted.extend_from_slice(b"' ");
    }
    let name = &args[0][..c_str(args[0]).min(128)];
    let text = format!(
        "ERR unknown command '{}', with args beginning with: {}",
        String::from_utf8_lossy(name),
        String::from_utf8_lossy(&quoted)
    );
    Reply::Error(text.replace(['\r', '\n'], " "))
}

/// What [`Runtime::switch_module`] decided. Deterministic: replicas that run the same switch from
/// the same state decide the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwitchOutcome {
    /// The new module is active, committed together with whatever its migration hook wrote.
    Activated,
    /// The migration hook refused (an error reply) or failed (a trap, out of fuel, the memory
    /// cap), with this text: nothing it wrote is kept and the old module stays active.
    Rejected(String),
}

/// One unit of work for [`Runtime::apply_ops`].
#[derive(Debug, Clone, Copy)]
pub enum Op<'a> {
    /// A client command (an argument list encoded with [`codec::encode_args`]), at `time_ms`
    /// (`None`: at the state's current time).
    Command {
        /// The encoded argument list.
        encoded: &'a [u8],
        /// The entry's stamp, in milliseconds since the Unix epoch.
        time_ms: Option<i64>,
    },
    /// The module's housekeeping hook ([`fsm_sdk::abi::export::TICK`]), at `time_ms`.
    Tick {
        /// The entry's stamp, in milliseconds since the Unix epoch.
        time_ms: i64,
    },
}

/// What a call into the module runs.
#[derive(Clone, Copy)]
enum Call<'a> {
    /// The command at `index` of the table, with its encoded input.
    Command { index: u32, encoded: &'a [u8] },
    /// The housekeeping hook (a dry run when the access is read-only).
    Tick,
    /// The watch-token export, with its encoded input (the key).
    Watch { encoded: &'a [u8] },
}

/// Internal command name of a transaction item (see [`encode_transaction`]). A module's command
/// names are lower-case ASCII, so no module command can be named this.
pub const TRANSACTION_MARKER: &[u8] = b"\0exec";
/// Internal command name of a watch-token read (see [`encode_watch`]).
pub const WATCH_MARKER: &[u8] = b"\0watch";

/// A transaction as one item of a log entry: `[TRANSACTION_MARKER, watches, command...]`, where
/// `watches` is an encoded list `[key, token, key, token, ...]` of the keys `WATCH`ed and the
/// tokens read then, and each command is an encoded argument list. Applied by
/// [`Runtime::apply_ops`] as one reply: an array of the commands' replies, or a null if a token
/// differs now (nothing runs then).
pub fn encode_transaction(watches: &[(Vec<u8>, Vec<u8>)], commands: &[&[u8]]) -> Vec<u8> {
    let flat: Vec<&[u8]> = watches.iter().flat_map(|(k, t)| [k.as_slice(), t.as_slice()]).collect();
    let mut encoded_watches = Vec::with_capacity(codec::encoded_args_len(&flat));
    codec::encode_args(&flat, &mut encoded_watches);
    let mut items: Vec<&[u8]> = Vec::with_capacity(commands.len() + 2);
    items.push(TRANSACTION_MARKER);
    items.push(&encoded_watches);
    items.extend_from_slice(commands);
    let mut out = Vec::with_capacity(codec::encoded_args_len(&items));
    codec::encode_args(&items, &mut out);
    out
}

/// A watch-token read of `key`, for the read path ([`Runtime::query`]): the module's token for
/// the key as a bulk reply.
pub fn encode_watch(key: &[u8]) -> Vec<u8> {
    let items: [&[u8]; 2] = [WATCH_MARKER, key];
    let mut out = Vec::with_capacity(codec::encoded_args_len(&items));
    codec::encode_args(&items, &mut out);
    out
}

/// Named meta entries to commit, with their values.
pub type MetaValues = Vec<(&'static str, Vec<u8>)>;

/// Runs one module's commands against one store. Owns a single wasm instance, re-created after
/// any trap so that no half-updated guest memory ever runs another command.
pub struct Runtime {
    module: Arc<FsmModule>,
    store: SharedStore,
    instance: Option<Instance>,
    /// Commands whose calls ended in a trap, fault or out-of-fuel: useful for tests and `INFO`.
    aborted: u64,
    /// Fuel burnt by every command run so far: identical on replicas that ran the same commands
    /// from the same state, which the determinism tests check.
    fuel_consumed: u64,
    /// The state's time ([`meta::CLOCK`]): the latest entry stamp applied.
    clock_ms: i64,
}

impl Runtime {
    /// Opens a runtime on `store`. A store produced under another [`Contract`] (another module,
    /// or other limits) is refused; a fresh store records this module's contract and bytes.
    pub fn open(module: Arc<FsmModule>, store: SharedStore) -> Result<Self, OpenError> {
        let contract = module.contract();
        let mut recorded = store.read()?.meta()?;
        match recorded.remove(meta::CONTRACT) {
            Some(bytes) => {
                let stored = Contract::decode(&bytes).map_err(OpenError::UnreadableContract)?;
                let differences = stored.differences(&contract);
                if !differences.is_empty() {
                    return Err(OpenError::ContractMismatch { differences: differences.join("; ") });
                }
                if !recorded.contains_key(meta::MODULE) {
                    // Written before stores recorded their module: record it now.
                    let mut batch = WriteBatch::default();
                    batch.set_meta(meta::MODULE, module.bytes());
                    store.commit(&batch)?;
                }
            }
            None => {
                let mut batch = WriteBatch::default();
                batch.set_meta(meta::CONTRACT, &contract.encode());
                batch.set_meta(meta::MODULE, module.bytes());
                store.commit(&batch)?;
            }
        }
        Self::attach(module, store)
    }

    /// Opens a replica's runtime: with the module `store` records ([`meta::MODULE`]), compiled
    /// by `fallback`'s engine, when there is one (the contract check of [`Runtime::open`] applies:
    /// a node whose engine or limits changed refuses the state). A store that records only a
    /// contract (written before modules were recorded) must be `fallback`'s, and gets its bytes
    /// recorded. A store with neither gets `fallback` without recording anything: the Raft layer
    /// records the cluster's module when its log entry is applied ([`Runtime::switch_module`]).
    pub fn open_replica(fallback: Arc<FsmModule>, store: SharedStore) -> Result<Self, OpenError> {
        let mut recorded = store.read()?.meta()?;
        match (recorded.remove(meta::MODULE), recorded.contains_key(meta::CONTRACT)) {
            (Some(bytes), _) => Self::open(Arc::new(FsmModule::load(fallback.engine(), &bytes)?), store),
            (None, true) => Self::open(fallback, store),
            (None, false) => Self::attach(fallback, store),
        }
    }

    /// A runtime on `store` that neither checks nor records a contract: for a replica whose store
    /// has no module yet (see [`Runtime::open_replica`]), and for a second runtime on a store
    /// another one opened.
    pub fn attach(module: Arc<FsmModule>, store: SharedStore) -> Result<Self, OpenError> {
        let instance = Instance::new(&module).map_err(|e| ApplyError::Engine(format!("{e:#}")))?;
        let clock_ms = recorded_clock(&store.read()?.meta()?);
        Ok(Runtime { module, store, instance: Some(instance), aborted: 0, fuel_consumed: 0, clock_ms })
    }

    /// Runs queries with `module` from now on (a reader following the applier's switch). The
    /// store is not touched.
    pub fn use_module(&mut self, module: Arc<FsmModule>) {
        if !Arc::ptr_eq(&module, &self.module) {
            self.module = module;
            self.instance = None;
        }
    }

    /// Makes `module` this runtime's module, in one store transaction that records its contract
    /// and bytes and sets the `meta` entries (`meta` is asked for them once the outcome is known).
    ///
    /// With `run_migrate`, the module's migration hook (if it exports one) first runs as a write
    /// against the current state, under the usual fuel budget and memory cap; if it returns an
    /// error or fails, the switch is [`SwitchOutcome::Rejected`]: only `meta` is committed, and
    /// this runtime keeps its module. A storage or engine failure returns `Err` and commits
    /// nothing.
    pub fn switch_module(
        &mut self,
        module: Arc<FsmModule>,
        run_migrate: bool,
        meta: &dyn Fn(&SwitchOutcome) -> Result<MetaValues, ApplyError>,
    ) -> Result<SwitchOutcome, ApplyError> {
        let limits = module.engine.limits;
        let view = self.store.read()?;
        let mut overlay = self.take_overlay();
        overlay.clear();
        let deterministic = |error: wasmtime::Error| match classify(error, limits) {
            Failure::Deterministic(text) => Ok(SwitchOutcome::Rejected(text)),
            Failure::Fatal(e) => Err(e),
        };
        let mut fresh = None;
        let outcome = match Instance::new(&module) {
            Err(error) => deterministic(error),
            Ok(mut instance) => {
                let state = instance.store.data_mut();
                state.access = Access::Write;
                state.time_ms = self.clock_ms;
                state.view = Some(view);
                state.overlay = std::mem::take(&mut overlay);
                let hook = instance.migrate.clone().filter(|_| run_migrate);
                let outcome = match hook {
                    None => Ok(SwitchOutcome::Activated),
                    Some(hook) => {
                        let call = (|| -> Result<Reply, wasmtime::Error> {
                            instance.reset_statics(&module)?;
                            instance.store.set_fuel(limits.fuel_per_apply)?;
                            instance.store.data_mut().written_bytes = 0;
                            // No input, but the arena every call is guaranteed (the memory grows
                            // to hold it, as before any command).
                            instance.write_input(&module, &[])?;
                            let packed = hook.call(&mut instance.store, ())?;
                            instance.read_reply(packed)
                        })();
                        self.fuel_consumed += limits.fuel_per_apply - instance.store.get_fuel().unwrap_or(0);
                        match call {
                            Ok(Reply::Error(text)) => Ok(SwitchOutcome::Rejected(text)),
                            Ok(_) => Ok(SwitchOutcome::Activated),
                            Err(error) => deterministic(error),
                        }
                    }
                };
                let state = instance.store.data_mut();
                state.access = Access::Idle;
                state.view = None;
                overlay = std::mem::take(&mut state.overlay);
                fresh = Some(instance);
                outcome
            }
        };
        let result = outcome.and_then(|outcome| {
            match &outcome {
                SwitchOutcome::Activated => {
                    overlay.keep_command();
                    overlay.batch.set_meta(meta::CONTRACT, &module.contract().encode());
                    overlay.batch.set_meta(meta::MODULE, module.bytes());
                }
                SwitchOutcome::Rejected(_) => {
                    self.aborted += 1;
                    overlay.clear();
                }
            }
            for (name, value) in meta(&outcome)? {
                overlay.batch.set_meta(name, &value);
            }
            self.store.commit(&overlay.batch)?;
            Ok(outcome)
        });
        overlay.clear();
        if let Ok(SwitchOutcome::Activated) = &result {
            self.module = module;
            self.instance = fresh;
        }
        self.put_overlay(overlay);
        result
    }

    /// The module this runtime runs.
    pub fn module(&self) -> &Arc<FsmModule> {
        &self.module
    }

    /// The store this runtime applies to.
    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// How many commands were aborted by a trap, out-of-fuel, the memory cap or an ABI fault.
    pub fn aborted_commands(&self) -> u64 {
        self.aborted
    }

    /// Total fuel the commands run by this runtime have burnt (guest instructions plus host-call
    /// charges). Part of what must be identical across replicas: see `docs/DESIGN.md`.
    pub fn fuel_consumed(&self) -> u64 {
        self.fuel_consumed
    }

    fn instance(&mut self) -> Result<&mut Instance, ApplyError> {
        if self.instance.is_none() {
            let fresh = Instance::new(&self.module).map_err(|e| ApplyError::Engine(format!("{e:#}")))?;
            self.instance = Some(fresh);
        }
        self.instance.as_mut().ok_or_else(|| ApplyError::Engine("no instance".into()))
    }

    /// Applies `commands` (each an argument list encoded with [`codec::encode_args`]) in order, in
    /// one store transaction that also sets the `meta` entries, at the state's current time (see
    /// [`Runtime::apply_ops`] for commands with their entries' times). Returns one reply per
    /// command.
    pub fn apply_batch<C: AsRef<[u8]>>(
        &mut self,
        commands: &[C],
        meta: &[(&str, &[u8])],
    ) -> Result<Vec<Reply>, ApplyError> {
        let ops: Vec<Op<'_>> = commands.iter().map(|c| Op::Command { encoded: c.as_ref(), time_ms: None }).collect();
        self.apply_ops(&ops, meta)
    }

    /// Applies `ops` in order, in one store transaction that also sets the `meta` entries (and
    /// [`meta::CLOCK`] when the time moved). Returns one reply per op.
    ///
    /// Time: each op runs at the greater of its own time and the time of everything applied
    /// before it, so the module's clock never runs backwards, whatever the proposers' clocks did.
    ///
    /// A command that fails deterministically gets an error reply and leaves no trace; the batch
    /// goes on. A storage or engine failure returns `Err` and commits nothing.
    pub fn apply_ops(&mut self, ops: &[Op<'_>], meta: &[(&str, &[u8])]) -> Result<Vec<Reply>, ApplyError> {
        let view = self.store.read()?;
        let mut overlay = self.take_overlay();
        overlay.clear();
        let mut replies = Vec::with_capacity(ops.len());
        let mut outcome = Ok(());
        let mut clock = self.clock_ms;
        self.begin(Access::Write, view, overlay)?;
        for op in ops {
            let time_ms = match op {
                Op::Command { time_ms, .. } => *time_ms,
                Op::Tick { time_ms } => Some(*time_ms),
            };
            clock = clock.max(time_ms.unwrap_or(clock));
            let result = self.set_call_time(clock).and_then(|()| match op {
                Op::Command { encoded, .. } => self.run(encoded, Access::Write),
                Op::Tick { .. } => self.call(Access::Write, Call::Tick),
            });
            match result {
                Ok(reply) => replies.push(reply),
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        let mut overlay = self.end();
        let result = outcome.and_then(|()| {
            for (name, value) in meta {
                overlay.batch.set_meta(name, value);
            }
            if clock != self.clock_ms {
                overlay.batch.set_meta(meta::CLOCK, &clock.to_le_bytes());
            }
            if overlay.batch.is_empty() { Ok(()) } else { self.store.commit(&overlay.batch).map_err(Into::into) }
        });
        overlay.clear();
        self.put_overlay(overlay);
        if result.is_ok() {
            self.clock_ms = clock;
        }
        result.map(|()| replies)
    }

    /// The time of the last op applied (milliseconds since the Unix epoch; 0 before any stamped
    /// entry): what the module's clock reads in the next write unless its entry is stamped later.
    pub fn clock_ms(&self) -> i64 {
        self.clock_ms
    }

    /// Whether the module's housekeeping ([`fsm_sdk::StateMachine::tick`]) has work due at
    /// `now_ms`: asked as a query on the committed state. Always false for a module without it.
    pub fn tick_due(&mut self, now_ms: i64) -> Result<bool, ApplyError> {
        if !self.module.has_tick() {
            return Ok(false);
        }
        let view = self.store.read()?;
        let overlay = self.take_overlay();
        self.begin(Access::Read, view, overlay)?;
        let reply = self.set_call_time(now_ms).and_then(|()| self.call(Access::Read, Call::Tick));
        let overlay = self.end();
        self.put_overlay(overlay);
        Ok(matches!(reply?, Reply::Integer(n) if n > 0))
    }

    /// Applies one encoded command on its own (a batch of one, no meta).
    pub fn apply(&mut self, command: &[u8]) -> Result<Reply, ApplyError> {
        let mut replies = self.apply_batch(&[command], &[])?;
        replies.pop().ok_or_else(|| ApplyError::Engine("no reply".into()))
    }

    /// Runs a read-only command against the committed state, at this node's clock (never below
    /// the state's own time). A write command is refused.
    pub fn query(&mut self, command: &[u8]) -> Result<Reply, ApplyError> {
        let view = self.store.read()?;
        let overlay = self.take_overlay();
        self.begin(Access::Read, view, overlay)?;
        let now = wall_clock_ms().max(self.clock_ms);
        let reply = self.set_call_time(now).and_then(|()| self.run(command, Access::Read));
        let overlay = self.end();
        self.put_overlay(overlay);
        reply
    }

    /// Replaces the state with a snapshot's (see [`crate::storage::snapshot`]), refusing, before
    /// anything changes, a snapshot produced under another contract (another module, say).
    pub fn restore(&mut self, source: &mut dyn std::io::Read) -> Result<SnapshotInfo, StorageError> {
        self.restore_checked(source, &[])
    }

    /// [`Runtime::restore`], also requiring the snapshot's meta to hold each of `required` with
    /// exactly that value (the Raft layer checks the last-applied log id this way), all checked
    /// before the state changes.
    pub fn restore_checked(
        &mut self,
        source: &mut dyn std::io::Read,
        required: &[(&str, &[u8])],
    ) -> Result<SnapshotInfo, StorageError> {
        self.restore_with_module(source, self.module.clone(), required)
    }

    /// [`Runtime::restore_checked`] for a snapshot produced under `module` (which may differ from
    /// this runtime's: a replica catching up on a cluster that switched modules). The snapshot's
    /// contract must be `module`'s; once restored, this runtime runs `module`.
    pub fn restore_with_module(
        &mut self,
        source: &mut dyn std::io::Read,
        module: Arc<FsmModule>,
        required: &[(&str, &[u8])],
    ) -> Result<SnapshotInfo, StorageError> {
        let contract = module.contract().encode();
        let mut all = vec![(meta::CONTRACT, contract.as_slice())];
        all.extend_from_slice(required);
        let info = self.store.restore(source, &all)?;
        self.clock_ms = recorded_clock(&info.meta);
        if !info.meta.contains_key(meta::MODULE) {
            // A snapshot from before snapshots carried their module: record it, as `open` does.
            let mut batch = WriteBatch::default();
            batch.set_meta(meta::MODULE, module.bytes());
            self.store.commit(&batch)?;
        }
        self.use_module(module);
        Ok(info)
    }

    fn take_overlay(&mut self) -> overlay::Overlay {
        self.instance.as_mut().map(|i| std::mem::take(&mut i.store.data_mut().overlay)).unwrap_or_default()
    }

    fn put_overlay(&mut self, overlay: overlay::Overlay) {
        if let Some(i) = self.instance.as_mut() {
            i.store.data_mut().overlay = overlay;
        }
    }

    fn begin(
        &mut self,
        access: Access,
        view: Box<dyn crate::storage::ReadView>,
        overlay: overlay::Overlay,
    ) -> Result<(), ApplyError> {
        let state = self.instance()?.store.data_mut();
        state.access = access;
        state.view = Some(view);
        state.overlay = overlay;
        Ok(())
    }

    /// Leaves the call state and hands back the overlay (the instance may have been replaced
    /// after a trap; the overlay travels with the runtime, not the instance).
    fn end(&mut self) -> overlay::Overlay {
        match self.instance.as_mut() {
            Some(i) => {
                let state = i.store.data_mut();
                state.access = Access::Idle;
                state.view = None;
                std::mem::take(&mut state.overlay)
            }
            None => overlay::Overlay::default(),
        }
    }

    /// Runs one command inside a begun batch or query.
    fn run(&mut self, encoded: &[u8], access: Access) -> Result<Reply, ApplyError> {
        let Ok(name) = codec::command_name(encoded) else {
            return Ok(Reply::error("ERR empty command"));
        };
        if name == TRANSACTION_MARKER {
            return match access {
                Access::Write => self.run_transaction(encoded),
                _ => Ok(Reply::error("ERR a transaction cannot run as a read-only query")),
            };
        }
        if name == WATCH_MARKER {
            return self.watch_token(encoded, access);
        }
        let Some(index) = self.module.command_index(name) else {
            return Ok(unknown_command(encoded));
        };
        let info = &self.module.commands()[index];
        if !info.arity.accepts(count_args(encoded)) {
            return Ok(Reply::wrong_arity(&info.name));
        }
        if access == Access::Read && info.write {
            return Ok(Reply::error(format!("ERR '{}' writes and cannot run as a read-only query", info.name)));
        }
        self.call(access, Call::Command { index: index as u32, encoded })
    }

    /// The module's watch token for the key in `encoded` (`[WATCH_MARKER, key]`).
    fn watch_token(&mut self, encoded: &[u8], access: Access) -> Result<Reply, ApplyError> {
        let mut args = Vec::new();
        if codec::decode_args_into(encoded, &mut args).is_err() || args.len() != 2 {
            return Ok(Reply::error("ERR malformed watch request"));
        }
        if !self.module.has_watch() {
            return Ok(Reply::error("ERR WATCH is not supported by this state machine"));
        }
        let mut input = Vec::with_capacity(codec::encoded_args_len(&args[1..]));
        codec::encode_args(&args[1..], &mut input);
        self.call(access, Call::Watch { encoded: &input })
    }

    /// Runs a transaction item ([`encode_transaction`]): checks the watched keys' tokens, then
    /// runs every command in order. One reply: the commands' replies, or a null if a watched key
    /// changed (then nothing runs). A malformed item is answered with an error, deterministically.
    fn run_transaction(&mut self, encoded: &[u8]) -> Result<Reply, ApplyError> {
        let malformed = || Ok(Reply::error("ERR malformed transaction"));
        let mut args = Vec::new();
        if codec::decode_args_into(encoded, &mut args).is_err() || args.len() < 2 {
            return malformed();
        }
        let mut watches = Vec::new();
        if codec::decode_args_into(args[1], &mut watches).is_err() || !watches.len().is_multiple_of(2) {
            return malformed();
        }
        for pair in watches.chunks_exact(2) {
            match self.watch_token(&encode_watch(pair[0]), Access::Write)? {
                Reply::Bulk(token) if token == pair[1] => {}
                Reply::Bulk(_) => return Ok(Reply::Null),
                Reply::Error(text) => return Ok(Reply::Error(text)),
                _ => return Ok(Reply::error("ERR the state machine returned no watch token")),
            }
        }
        let mut replies = Vec::with_capacity(args.len() - 2);
        for command in &args[2..] {
            let nested = codec::command_name(command).is_ok_and(|n| n == TRANSACTION_MARKER || n == WATCH_MARKER);
            replies.push(if nested {
                Reply::error("ERR malformed transaction")
            } else {
                self.run(command, Access::Write)?
            });
        }
        Ok(Reply::Array(replies))
    }

    /// Calls into the module inside a begun batch or query, under the fuel budget, keeping the
    /// call's writes only if it returned a non-error reply.
    fn call(&mut self, access: Access, what: Call<'_>) -> Result<Reply, ApplyError> {
        let limits = self.module.engine.limits;
        self.instance()?;
        let (call, fuel_used) = {
            // Borrow the two fields apart: the module to read, the instance to run.
            let module = &*self.module;
            let instance = self.instance.as_mut().ok_or_else(|| ApplyError::Engine("no instance".into()))?;
            let call = (|| -> Result<Reply, wasmtime::Error> {
                instance.reset_statics(module)?;
                instance.store.set_fuel(limits.fuel_per_apply)?;
                instance.store.data_mut().written_bytes = 0;
                let packed = match what {
                    Call::Command { index, encoded } => {
                        let len = instance.write_input(module, encoded)?;
                        match access {
                            Access::Read => instance.query.call(&mut instance.store, (index, len))?,
                            _ => instance.apply.call(&mut instance.store, (index, len))?,
                        }
                    }
                    Call::Tick => {
                        let Some(tick) = instance.tick.clone() else { return Ok(Reply::Integer(0)) };
                        // No input, but the arena every call is guaranteed.
                        instance.write_input(module, &[])?;
                        tick.call(&mut instance.store, u32::from(access == Access::Read))?
                    }
                    Call::Watch { encoded } => {
                        let Some(watch) = instance.watch.clone() else {
                            return Ok(Reply::error("ERR WATCH is not supported by this state machine"));
                        };
                        let len = instance.write_input(module, encoded)?;
                        watch.call(&mut instance.store, len)?
                    }
                };
                instance.read_reply(packed)
            })();
            let fuel_used = limits.fuel_per_apply - instance.store.get_fuel().unwrap_or(0);
            // Keep the command's writes only if it succeeded.
            let overlay = &mut instance.store.data_mut().overlay;
            match &call {
                Ok(reply) if !reply.is_error() => overlay.keep_command(),
                _ => overlay.undo_command(),
            }
            (call, fuel_used)
        };
        self.fuel_consumed += fuel_used;
        match call {
            Ok(reply) => Ok(reply),
            Err(error) => {
                match classify(error, limits) {
                    Failure::Deterministic(text) => {
                        self.aborted += 1;
                        self.replace_instance()?;
                        Ok(Reply::Error(text))
                    }
                    Failure::Fatal(e) => {
                        // The batch is abandoned; report the original failure, not a later one.
                        let _ = self.replace_instance();
                        Err(e)
                    }
                }
            }
        }
    }

    /// Sets the time the module's `time` host function returns for the next calls.
    fn set_call_time(&mut self, time_ms: i64) -> Result<(), ApplyError> {
        self.instance()?.store.data_mut().time_ms = time_ms;
        Ok(())
    }

    /// Swaps in a fresh instance, carrying over the call state (view, overlay, access). The old
    /// instance is dropped even if a fresh one cannot be made: a trapped instance never runs
    /// again (the next call instantiates lazily).
    fn replace_instance(&mut self) -> Result<(), ApplyError> {
        let old = self.instance.take();
        let mut fresh = Instance::new(&self.module).map_err(|e| ApplyError::Engine(format!("{e:#}")))?;
        if let Some(mut old) = old {
            let old_state = old.store.data_mut();
            let new_state = fresh.store.data_mut();
            new_state.access = old_state.access;
            new_state.view = old_state.view.take();
            new_state.overlay = std::mem::take(&mut old_state.overlay);
            new_state.time_ms = old_state.time_ms;
        }
        self.instance = Some(fresh);
        Ok(())
    }
}

/// This node's wall clock in milliseconds since the Unix epoch (0 if it is set before 1970).
pub fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The state's time as [`meta::CLOCK`] records it (0 when absent or malformed).
fn recorded_clock(meta: &std::collections::BTreeMap<String, Vec<u8>>) -> i64 {
    meta.get(meta::CLOCK).and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok()).map_or(0, i64::from_le_bytes)
}

/// The number of arguments in an encoded list (0 if it does not decode).
fn count_args(encoded: &[u8]) -> usize {
    encoded.get(..4).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}
