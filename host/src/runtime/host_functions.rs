//! The host functions a module imports (`redraft::get`, `put`, `delete`, `scan`, `scan_rev`,
//! `clear`, `time`) and the
//! per-instance state they work on.
//!
//! Every function checks the guest's pointers against its linear memory (a bad pointer traps the
//! command, deterministically), charges fuel for the bytes it moves (so host work is bounded by
//! the same budget as guest work), and reads through the batch [`Overlay`] onto the committed
//! [`ReadView`]. A storage failure is not the guest's fault and not deterministic: it travels out
//! as [`HostFault::Storage`] and stops the apply.

use super::overlay::{Lookup, Overlay};
use crate::storage::{ReadView, StorageError};
use fsm_sdk::{abi, codec};
use std::ops::ControlFlow;
use wasmtime::{Caller, Engine, FuncType, Linker, Memory, ResourceLimiter, ValType};

/// Fuel charged for every host call, on top of the guest's own instructions.
pub const HOST_CALL_FUEL: u64 = 20;
/// Bytes moved across the boundary per unit of fuel.
pub const BYTES_PER_FUEL: u64 = 16;
/// Fuel charged per entry a scan visits.
pub const SCAN_ENTRY_FUEL: u64 = 4;

/// What the guest may do in the current call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Not inside a call: any host call is a bug.
    Idle,
    /// A query: reads only.
    Read,
    /// A log entry: reads and writes.
    Write,
}

/// A host function's failure. The variants decide what the runtime does with it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HostFault {
    /// The guest misbehaved (a pointer outside its memory, a write in a query): the command is
    /// aborted with this message, deterministically.
    #[error("{0}")]
    Guest(String),
    /// The guest tried to grow its memory past the cap.
    #[error("memory limit of {0} bytes reached")]
    MemoryLimit(usize),
    /// The guest wrote more bytes in one command than the cap allows.
    #[error("command wrote more than {0} bytes")]
    WriteLimit(usize),
    /// The host could not provide memory the cap allows (out of memory): not deterministic.
    #[error("host out of resources: {0}")]
    HostResources(String),
    /// The storage engine failed: not deterministic, the apply stops.
    #[error("storage failure: {0}")]
    Storage(#[from] StorageError),
}

/// Caps the guest's memory growth. wasmtime's own limiter would also work, but this one fails
/// with a typed fault the runtime can classify as deterministic.
pub(crate) struct MemoryCap {
    pub(crate) bytes_max: usize,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.bytes_max {
            return Err(HostFault::MemoryLimit(self.bytes_max).into());
        }
        // Past the module's own declared maximum `memory.grow` returns -1, as the spec says:
        // deterministic. Refusing here means every later growth failure is the host's.
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    /// Growth this limiter approved failed anyway: the host is out of memory. Not deterministic
    /// (another replica may have had the memory), so it must not become a `-1` the guest sees.
    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(HostFault::HostResources(format!("memory growth failed: {error:#}")).into())
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Tables hold function references; a module needs few. Bound them like memory.
        Ok(desired <= 10_000)
    }
}

/// The data of one wasmtime store: the instance's view of the state during a call.
pub(crate) struct HostState {
    pub(crate) access: Access,
    /// Committed state, set for the duration of a batch or query.
    pub(crate) view: Option<Box<dyn ReadView>>,
    /// The batch's pending writes.
    pub(crate) overlay: Overlay,
    pub(crate) memory: Option<Memory>,
    pub(crate) cap: MemoryCap,
    /// Key and value bytes the current command has written; bounded by the memory cap so a
    /// command cannot fill the host's memory through `put`.
    pub(crate) written_bytes: usize,
    /// Reused buffer for keys and scan results, so host calls do not allocate per call.
    scratch: Vec<u8>,
    /// What `time` returns during the current call: the entry's stamp for a write, the node's
    /// clock for a query (milliseconds since the Unix epoch).
    pub(crate) time_ms: i64,
}

impl HostState {
    pub(crate) fn new(memory_bytes_max: usize) -> Self {
        HostState {
            access: Access::Idle,
            view: None,
            overlay: Overlay::default(),
            memory: None,
            cap: MemoryCap { bytes_max: memory_bytes_max },
            written_bytes: 0,
            scratch: Vec::new(),
            time_ms: 0,
        }
    }
}

/// The expected type of an allowed import, or `None` if `name` is not one.
pub(crate) fn import_type(engine: &Engine, name: &str) -> Option<FuncType> {
    use ValType::{I32, I64};
    let (params, results): (&[ValType], &[ValType]) = match name {
        abi::import::GET => (&[I32, I32, I32, I32], &[I64]),
        abi::import::PUT => (&[I32, I32, I32, I32], &[I32]),
        abi::import::DELETE => (&[I32, I32], &[I32]),
        abi::import::SCAN | abi::import::SCAN_REV => (&[I32, I32, I32, I32, I32, I32, I32], &[I64]),
        abi::import::CLEAR => (&[], &[]),
        abi::import::TIME => (&[], &[I64]),
        _ => return None,
    };
    Some(FuncType::new(engine, params.iter().cloned(), results.iter().cloned()))
}

fn guest_fault(msg: &str) -> wasmtime::Error {
    HostFault::Guest(msg.to_owned()).into()
}

/// Takes `units` of fuel; out of fuel, the call traps exactly as if guest code had run dry.
fn charge(caller: &mut Caller<'_, HostState>, units: u64) -> wasmtime::Result<()> {
    let fuel = caller.get_fuel()?;
    if fuel < units {
        caller.set_fuel(0)?;
        return Err(wasmtime::Trap::OutOfFuel.into());
    }
    caller.set_fuel(fuel - units)
}

fn byte_fuel(bytes: u64) -> u64 {
    HOST_CALL_FUEL + bytes / BYTES_PER_FUEL
}

/// The guest slice `[ptr, ptr + len)`, or a fault naming the problem.
fn slice(data: &[u8], ptr: u32, len: u32) -> wasmtime::Result<&[u8]> {
    let start = ptr as usize;
    data.get(start..start.saturating_add(len as usize))
        .ok_or_else(|| guest_fault("module passed a pointer outside its memory"))
}

fn slice_mut(data: &mut [u8], ptr: u32, len: usize) -> wasmtime::Result<&mut [u8]> {
    let start = ptr as usize;
    data.get_mut(start..start.saturating_add(len))
        .ok_or_else(|| guest_fault("module passed a pointer outside its memory"))
}

fn memory(caller: &Caller<'_, HostState>) -> wasmtime::Result<Memory> {
    caller.data().memory.ok_or_else(|| guest_fault("host function called before the module's memory was bound"))
}

fn require(state: &HostState, write: bool) -> wasmtime::Result<()> {
    match (state.access, write) {
        (Access::Write, _) | (Access::Read, false) => Ok(()),
        (Access::Read, true) => Err(guest_fault("a read-only command tried to write")),
        (Access::Idle, _) => Err(guest_fault("host function called outside a command")),
    }
}

fn view(state: &HostState) -> wasmtime::Result<&dyn ReadView> {
    state.view.as_deref().ok_or_else(|| guest_fault("host function called outside a command"))
}

/// `get(key_ptr, key_len, dst_ptr, dst_cap) -> i64`.
fn get(
    mut caller: Caller<'_, HostState>,
    key_ptr: u32,
    key_len: u32,
    dst_ptr: u32,
    dst_cap: u32,
) -> wasmtime::Result<i64> {
    charge(&mut caller, byte_fuel(u64::from(key_len)))?;
    let memory = memory(&caller)?;
    let (data, state) = memory.data_and_store_mut(&mut caller);
    require(state, false)?;
    state.scratch.clear();
    state.scratch.extend_from_slice(slice(data, key_ptr, key_len)?);
    let key = state.scratch.as_slice();
    let copy = |value: &[u8], data: &mut [u8]| -> wasmtime::Result<i64> {
        if value.len() <= dst_cap as usize {
            slice_mut(data, dst_ptr, value.len())?.copy_from_slice(value);
        }
        Ok(value.len() as i64)
    };
    let len = match state.overlay.lookup(key) {
        Lookup::Value(v) => copy(v, data)?,
        Lookup::Deleted => abi::ABSENT,
        Lookup::Unknown => {
            let mut result = Ok(abi::ABSENT);
            view(state)?.get(key, &mut |v| result = copy(v, data)).map_err(HostFault::Storage)?;
            result?
        }
    };
    if len > 0 && len as u64 <= u64::from(dst_cap) {
        charge(&mut caller, len as u64 / BYTES_PER_FUEL)?;
    }
    Ok(len)
}

/// `put(key_ptr, key_len, value_ptr, value_len) -> i32`.
fn put(caller: Caller<'_, HostState>, key_ptr: u32, key_len: u32, val_ptr: u32, val_len: u32) -> wasmtime::Result<u32> {
    write(caller, key_ptr, key_len, Some((val_ptr, val_len)))
}

/// `delete(key_ptr, key_len) -> i32`.
fn delete(caller: Caller<'_, HostState>, key_ptr: u32, key_len: u32) -> wasmtime::Result<u32> {
    write(caller, key_ptr, key_len, None)
}

/// A `put` (with a value) or a `delete` (without): one overlay write, counted against the
/// write cap. Returns 1 if the key existed before.
fn write(
    mut caller: Caller<'_, HostState>,
    key_ptr: u32,
    key_len: u32,
    value: Option<(u32, u32)>,
) -> wasmtime::Result<u32> {
    let value_len = value.map_or(0, |(_, len)| len);
    charge(&mut caller, byte_fuel(u64::from(key_len) + u64::from(value_len)))?;
    let memory = memory(&caller)?;
    let (data, state) = memory.data_and_store_mut(&mut caller);
    require(state, true)?;
    let key = slice(data, key_ptr, key_len)?;
    let value = value.map(|(ptr, len)| slice(data, ptr, len)).transpose()?;
    // Deletes count too: each leaves a tombstone and an undo entry in host memory.
    state.written_bytes = state.written_bytes.saturating_add(key.len() + value.map_or(0, <[u8]>::len));
    if state.written_bytes > state.cap.bytes_max {
        return Err(HostFault::WriteLimit(state.cap.bytes_max).into());
    }
    let view = state.view.as_deref().ok_or_else(|| guest_fault("host function called outside a command"))?;
    let existed = state.overlay.write(view, key, value).map_err(HostFault::Storage)?;
    Ok(u32::from(existed))
}

/// `clear()`: removes every key of the state (see [`Overlay::clear_all`]): constant work, so
/// it costs one host call's fuel.
fn clear(mut caller: Caller<'_, HostState>) -> wasmtime::Result<()> {
    charge(&mut caller, HOST_CALL_FUEL)?;
    let state = caller.data_mut();
    require(state, true)?;
    state.overlay.clear_all();
    Ok(())
}

/// `scan` and `scan_rev(start_ptr, start_len, end_ptr, end_len, limit, dst_ptr, dst_cap) -> i64`
/// (ascending and descending); each guest slice here is `(ptr, len)`.
fn scan_range(
    mut caller: Caller<'_, HostState>,
    (start_ptr, start_len): (u32, u32),
    (end_ptr, end_len): (u32, u32),
    limit: u32,
    (dst_ptr, dst_cap): (u32, u32),
    reverse: bool,
) -> wasmtime::Result<i64> {
    charge(&mut caller, byte_fuel(u64::from(start_len) + u64::from(end_len)))?;
    let memory = memory(&caller)?;
    let (data, state) = memory.data_and_store_mut(&mut caller);
    require(state, false)?;
    let start = slice(data, start_ptr, start_len)?.to_vec();
    let end = (end_len > 0).then(|| slice(data, end_ptr, end_len).map(<[u8]>::to_vec)).transpose()?;
    if end.as_ref().is_some_and(|end| *end <= start) {
        // An empty (or inverted) range: nothing to visit. Ordered maps panic on inverted ranges.
        return Ok(0);
    }
    let size_max = state.cap.bytes_max;
    let mut out = std::mem::take(&mut state.scratch);
    out.clear();
    let (mut entries, mut too_big) = (0u32, false);
    let scanned = state.overlay.scan(view(state)?, &start, end.as_deref(), reverse, &mut |k, v| {
        if entries >= limit {
            return ControlFlow::Break(());
        }
        if out.len() + codec::encoded_entry_len(k, v) > size_max {
            too_big = true;
            return ControlFlow::Break(());
        }
        codec::encode_entry(k, v, &mut out);
        entries += 1;
        ControlFlow::Continue(())
    });
    let result = match scanned {
        Err(e) => Err(HostFault::Storage(e).into()),
        Ok(()) if too_big => Err(guest_fault("scan result exceeds the module's memory limit")),
        Ok(()) => {
            if out.len() <= dst_cap as usize {
                slice_mut(data, dst_ptr, out.len())?.copy_from_slice(&out);
            }
            Ok(out.len() as i64)
        }
    };
    state.scratch = out;
    let len = result?;
    charge(&mut caller, len as u64 / BYTES_PER_FUEL + u64::from(entries) * SCAN_ENTRY_FUEL)?;
    Ok(len)
}

/// `time() -> i64`: the current call's time (see [`HostState::time_ms`]).
fn time(mut caller: Caller<'_, HostState>) -> wasmtime::Result<i64> {
    charge(&mut caller, HOST_CALL_FUEL)?;
    let state = caller.data();
    require(state, false)?;
    Ok(state.time_ms)
}

/// The linker with every host function defined under [`abi::IMPORT_MODULE`].
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    linker.func_wrap(abi::IMPORT_MODULE, abi::import::GET, get)?;
    linker.func_wrap(abi::IMPORT_MODULE, abi::import::PUT, put)?;
    linker.func_wrap(abi::IMPORT_MODULE, abi::import::DELETE, delete)?;
    for (name, reverse) in [(abi::import::SCAN, false), (abi::import::SCAN_REV, true)] {
        linker.func_wrap(
            abi::IMPORT_MODULE,
            name,
            move |caller: Caller<'_, HostState>, start: u32, start_len, end: u32, end_len, limit, dst: u32, dst_cap| {
                scan_range(caller, (start, start_len), (end, end_len), limit, (dst, dst_cap), reverse)
            },
        )?;
    }
    linker.func_wrap(abi::IMPORT_MODULE, abi::import::CLEAR, clear)?;
    linker.func_wrap(abi::IMPORT_MODULE, abi::import::TIME, time)?;
    Ok(linker)
}
