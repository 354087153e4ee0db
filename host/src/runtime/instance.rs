//! One live instance of a module, and the throwaway instance that describes a module at load.
//!
//! An [`Instance`] owns a wasmtime store whose data is the [`HostState`] the host functions work
//! on. The runtime keeps one per [`super::Runtime`] and replaces it after any trap.

use super::host_functions::{HostFault, HostState};
use super::module::{self, FsmModule, LoadError};
use fsm_sdk::{CommandInfo, Reply, abi, codec};
use wasmtime::{Memory, Store, TypedFunc};

/// Size of a wasm page.
const PAGE_BYTES: usize = 65_536;

/// One live instance of the module with its typed entry points.
pub(crate) struct Instance {
    pub(crate) store: Store<HostState>,
    memory: Memory,
    pub(crate) apply: TypedFunc<(u32, u32), u64>,
    pub(crate) query: TypedFunc<(u32, u32), u64>,
    /// The optional migration hook.
    pub(crate) migrate: Option<TypedFunc<(), u64>>,
    /// The optional housekeeping hook (`dry_run` flag).
    pub(crate) tick: Option<TypedFunc<u32, u64>>,
    /// The optional watch-token export (input length).
    pub(crate) watch: Option<TypedFunc<u32, u64>>,
}

impl Instance {
    pub(crate) fn new(module: &FsmModule) -> Result<Self, wasmtime::Error> {
        let limits = module.engine.limits;
        let mut store = Store::new(&module.engine.engine, HostState::new(limits.memory_bytes_max));
        store.limiter(|s| &mut s.cap);
        // Instantiation runs the module's start code: bound it like a command.
        store.set_fuel(limits.fuel_per_apply)?;
        let instance = module.pre.instantiate(&mut store)?;
        let memory = instance
            .get_memory(&mut store, abi::export::MEMORY)
            .ok_or_else(|| wasmtime::Error::msg("module has no memory export"))?;
        store.data_mut().memory = Some(memory);
        let migrate = match module.has_migrate() {
            true => Some(instance.get_typed_func(&mut store, abi::export::MIGRATE)?),
            false => None,
        };
        let tick = match module.has_tick() {
            true => Some(instance.get_typed_func(&mut store, abi::export::TICK)?),
            false => None,
        };
        let watch = match module.has_watch() {
            true => Some(instance.get_typed_func(&mut store, abi::export::WATCH)?),
            false => None,
        };
        Ok(Instance {
            tick,
            watch,
            apply: instance.get_typed_func(&mut store, abi::export::APPLY)?,
            query: instance.get_typed_func(&mut store, abi::export::QUERY)?,
            migrate,
            memory,
            store,
        })
    }

    /// Puts the module's static data back as instantiated (see [`super::statics`]).
    pub(crate) fn reset_statics(&mut self, module: &FsmModule) -> Result<(), wasmtime::Error> {
        let region = self
            .memory
            .data_mut(&mut self.store)
            .get_mut(module.statics.clone())
            .ok_or_else(|| HostFault::Guest("static data outside the module's memory".into()))?;
        region.copy_from_slice(&module.pristine_statics);
        Ok(())
    }

    /// Writes a command's input at the module's `__heap_base`, growing the memory first if it
    /// must, to hold the input and at least [`abi::ARENA_BYTES_GUARANTEED`] (through the memory
    /// cap: an input too large for it aborts the command, on every replica alike); returns its
    /// length as the guest sees it.
    pub(crate) fn write_input(&mut self, module: &FsmModule, bytes: &[u8]) -> Result<u32, wasmtime::Error> {
        let len = u32::try_from(bytes.len()).map_err(|_| HostFault::Guest("command larger than 4 GiB".into()))?;
        let start = module.heap_base;
        let end = start.saturating_add(bytes.len());
        let needed = end.max(start.saturating_add(abi::ARENA_BYTES_GUARANTEED));
        if needed > self.memory.data_size(&self.store) {
            // The module's own declared maximum is known up front: too small is the same on every
            // replica. Any other growth failure (the cap, host out of memory) is classified as
            // usual by the caller.
            let max_bytes = self.memory.ty(&self.store).maximum().map(|pages| pages.saturating_mul(PAGE_BYTES as u64));
            if max_bytes.is_some_and(|max| needed as u64 > max) {
                return Err(HostFault::Guest(
                    "the module's declared memory maximum cannot hold the input and the guaranteed arena".into(),
                )
                .into());
            }
        }
        grow_to(self.memory, &mut self.store, needed)?;
        let buffer = self
            .memory
            .data_mut(&mut self.store)
            .get_mut(start..end)
            .ok_or_else(|| HostFault::Guest("input does not fit the module's memory".into()))?;
        buffer.copy_from_slice(bytes);
        Ok(len)
    }

    /// Reads and decodes the reply a call returned.
    pub(crate) fn read_reply(&self, packed: u64) -> Result<Reply, wasmtime::Error> {
        let (ptr, len) = abi::unpack(packed);
        let data = self.memory.data(&self.store);
        let bytes = data
            .get(ptr as usize..(ptr as usize).saturating_add(len as usize))
            .ok_or_else(|| HostFault::Guest("module returned a reply outside its memory".into()))?;
        codec::decode_reply(bytes)
            .map_err(|e| HostFault::Guest(format!("module returned a malformed reply: {e}")).into())
    }
}

/// Reads a module's static data as instantiated, its ABI version and its command table, in a
/// throwaway instance.
pub(crate) fn describe(module: &FsmModule) -> Result<(Vec<CommandInfo<String>>, Vec<u8>), LoadError> {
    let describe_err = |e: wasmtime::Error| LoadError::Describe(format!("{e:#}"));
    let limits = module.engine.limits;
    let mut store = Store::new(&module.engine.engine, HostState::new(limits.memory_bytes_max));
    store.limiter(|s| &mut s.cap);
    store.set_fuel(limits.fuel_per_apply).map_err(describe_err)?;
    let instance = module.pre.instantiate(&mut store).map_err(describe_err)?;
    let memory = instance
        .get_memory(&mut store, abi::export::MEMORY)
        .ok_or_else(|| LoadError::Describe("no memory export".into()))?;
    let pristine = memory
        .data(&store)
        .get(module.statics.clone())
        .ok_or_else(|| LoadError::Describe("static data outside the initial memory".into()))?
        .to_vec();
    let version: TypedFunc<(), u32> =
        instance.get_typed_func(&mut store, abi::export::ABI_VERSION).map_err(describe_err)?;
    let found = version.call(&mut store, ()).map_err(describe_err)?;
    if found != abi::ABI_VERSION {
        return Err(LoadError::AbiVersion { found, expected: abi::ABI_VERSION });
    }
    // The guest may rely on the guaranteed arena in every call, this one included.
    let needed = module.heap_base.saturating_add(abi::ARENA_BYTES_GUARANTEED);
    grow_to(memory, &mut store, needed).map_err(|e| match e.downcast::<HostFault>() {
        Ok(fault @ HostFault::HostResources(_)) => LoadError::Describe(fault.to_string()),
        _ => LoadError::Describe(format!(
            "its memory cannot grow to the {} bytes past __heap_base every call is guaranteed \
             (declared maximum or memory cap too small)",
            abi::ARENA_BYTES_GUARANTEED
        )),
    })?;
    let commands: TypedFunc<(), u64> =
        instance.get_typed_func(&mut store, abi::export::COMMANDS).map_err(describe_err)?;
    let packed = commands.call(&mut store, ()).map_err(describe_err)?;
    let (ptr, len) = abi::unpack(packed);
    let bytes = memory
        .data(&store)
        .get(ptr as usize..(ptr as usize).saturating_add(len as usize))
        .ok_or_else(|| LoadError::Describe("command table outside the module's memory".into()))?;
    Ok((module::decode_table(bytes)?, pristine))
}

/// Grows `memory` to at least `needed` bytes (a no-op when it is that large already).
fn grow_to(memory: Memory, store: &mut Store<HostState>, needed: usize) -> Result<(), wasmtime::Error> {
    let size = memory.data_size(&*store);
    if needed > size {
        memory.grow(&mut *store, (needed - size).div_ceil(PAGE_BYTES) as u64)?;
    }
    Ok(())
}
