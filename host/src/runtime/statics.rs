//! A module's static data, reset before every command so that no command can see what an earlier
//! one left behind.
//!
//! Why: a wasm instance is reused from command to command (instantiating one per command would
//! cost several times the command itself). Anything a command leaves in the instance could make a
//! later command behave differently on a replica whose instance is older or younger (restarted,
//! or renewed after a trap). The SDK's allocator already starts every command from the same heap
//! state; what is left is the module's static data (`.data` and `.bss`), where Rust's std keeps
//! lazily initialised state such as the `HashMap` seed counter and the stdout buffer, and where a
//! module author's own `static`s live. Restoring that region to its bytes as instantiated makes
//! every command start from exactly the state of a fresh instance, at the cost of one copy of the
//! region (fsm-kv: about 30 KiB, most of it read-only data; 7 % of the nodes' CPU at `-P 16`).
//!
//! The region runs from the lowest active data segment to the module's `__heap_base` (exported by
//! every Rust `cdylib`; the linker puts the stack below the data). Wasm globals cannot be reset
//! from the host when not exported, so a module may have at most one mutable global: the shadow
//! stack pointer, which every call that returns puts back.

use super::LoadError;
use fsm_sdk::abi;
use std::ops::Range;
use wasmtime::wasmparser::{DataKind, ExternalKind, Operator, Parser, Payload};

/// Largest static region accepted: it is copied before every command.
pub const STATICS_BYTES_MAX: usize = 1024 * 1024;

/// Mutable wasm globals a module may have (the shadow stack pointer).
pub const MUTABLE_GLOBALS_MAX: usize = 1;

fn const_i32(expr: &wasmtime::wasmparser::ConstExpr<'_>) -> Option<u32> {
    match expr.get_operators_reader().read().ok()? {
        Operator::I32Const { value } => Some(value as u32),
        _ => None,
    }
}

/// Where a module's static data lies and where its heap starts.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// The static region, reset before every command.
    pub(crate) statics: Range<usize>,
    /// The value of the module's `__heap_base`: where the host writes each command's input.
    pub(crate) heap_base: usize,
}

/// Finds the layout of a (compiled, so already valid) module, and enforces the limit on mutable
/// globals.
pub(crate) fn layout(bytes: &[u8]) -> Result<Layout, LoadError> {
    let invalid = |e: wasmtime::wasmparser::BinaryReaderError| LoadError::Invalid(e.to_string());
    let mut segments: Vec<Range<usize>> = Vec::new();
    let mut global_inits: Vec<Option<u32>> = Vec::new();
    let mut mutable_globals = 0;
    let mut heap_base_global = None;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(invalid)? {
            Payload::GlobalSection(reader) => {
                for global in reader {
                    let global = global.map_err(invalid)?;
                    mutable_globals += usize::from(global.ty.mutable);
                    global_inits.push(const_i32(&global.init_expr));
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(invalid)?;
                    if export.name == "__heap_base" && export.kind == ExternalKind::Global {
                        heap_base_global = Some(export.index as usize);
                    }
                }
            }
            Payload::DataSection(reader) => {
                for data in reader {
                    let data = data.map_err(invalid)?;
                    if let DataKind::Active { offset_expr, .. } = data.kind {
                        let start = const_i32(&offset_expr)
                            .ok_or_else(|| LoadError::Invalid("a data segment's offset is not a constant".into()))?
                            as usize;
                        segments.push(start..start + data.data.len());
                    }
                }
            }
            _ => {}
        }
    }
    if mutable_globals > MUTABLE_GLOBALS_MAX {
        return Err(LoadError::MutableGlobals(mutable_globals));
    }
    // Globals are not imported (the import allow-list has functions only), so export indexes
    // count the module's own globals.
    let heap_base = heap_base_global
        .and_then(|i| global_inits.get(i).copied().flatten())
        .ok_or(LoadError::MissingExport { name: abi::export::HEAP_BASE, expected: "an i32 global".into() })?
        as usize;
    let Some(start) = segments.iter().map(|s| s.start).min() else {
        return Ok(Layout { statics: 0..0, heap_base });
    };
    let end = segments.iter().map(|s| s.end).max().unwrap_or(start).max(heap_base);
    if end - start > STATICS_BYTES_MAX {
        return Err(LoadError::StaticsTooLarge(end - start));
    }
    Ok(Layout { statics: start..end, heap_base })
}
