//! Loading a state-machine module: the deterministic engine configuration, validation of a
//! `.wasm` against the ABI, and the module's identity (its SHA-256 digest).

use super::host_functions::{self, HostState};
use fsm_sdk::abi;
use fsm_sdk::{CommandInfo, codec};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use wasmtime::{Config, Engine, ExternType, FuncType, InstancePre, Linker, Module, OptLevel, ValType};

/// The resource bounds of every call into a module. They are part of the replicated contract:
/// with another fuel budget or memory cap, a replica could accept a command that another one
/// aborts, so every replica of a cluster must use the same values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeLimits {
    /// Fuel for one command (roughly one unit per wasm instruction, plus the host-call costs in
    /// `docs/DESIGN.md`, "The ABI, byte by byte"). Out of fuel, the command ends in an error and
    /// changes nothing.
    pub fuel_per_apply: u64,
    /// Cap on the module's linear memory, in bytes. Growing past it traps the command. It also
    /// bounds the largest value a command can handle (roughly a third of it: the argument, the
    /// value read, and the reply may all be in memory at once).
    pub memory_bytes_max: usize,
    /// Native stack for wasm code, in bytes. Deep recursion past it traps.
    pub stack_bytes_max: usize,
}

impl Default for RuntimeLimits {
    fn default() -> Self {
        RuntimeLimits { fuel_per_apply: 50_000_000, memory_bytes_max: 256 * 1024 * 1024, stack_bytes_max: 512 * 1024 }
    }
}

/// Why a module could not be loaded. Each variant names the problem for the operator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read state-machine module {path}: {source}")]
    Read {
        /// The configured path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a WebAssembly core module.
    #[error("not a WebAssembly module: {0}")]
    NotWasm(String),
    /// wasmtime refused the module (malformed, or uses a disabled feature such as threads).
    #[error("invalid WebAssembly module: {0}")]
    Invalid(String),
    /// The module imports something outside the allow-list.
    #[error(
        "module imports `{module}::{name}`, which Redraft does not provide: a state machine may import \
         only {allowed} (no WASI, no wall clock, no randomness: `time` is the log entry's stamp)"
    )]
    ForbiddenImport {
        /// Import module name.
        module: String,
        /// Import field name.
        name: String,
        /// The allow-list, for the message.
        allowed: String,
    },
    /// An allowed import has the wrong signature.
    #[error("module imports `redraft::{name}` with type {found}, expected {expected}")]
    ImportType {
        /// Import field name.
        name: String,
        /// The module's type.
        found: String,
        /// The ABI's type.
        expected: String,
    },
    /// A required export is absent or has the wrong type.
    #[error("module does not export `{name}` as {expected}; is it built with fsm_sdk::export_state_machine!?")]
    MissingExport {
        /// Export name.
        name: &'static str,
        /// What the ABI needs.
        expected: String,
    },
    /// The module was built for another version of the ABI.
    #[error("module speaks ABI version {found}, this host speaks {expected}: rebuild it against this fsm-sdk")]
    AbiVersion {
        /// The module's version.
        found: u32,
        /// Ours.
        expected: u32,
    },
    /// The module trapped or misbehaved while reporting its version or command table.
    #[error("module failed while describing itself: {0}")]
    Describe(String),
    /// The command table does not decode or breaks a rule.
    #[error("module's command table is invalid: {0}")]
    CommandTable(String),
    /// The module keeps state in wasm globals, which the host cannot reset between commands.
    #[error(
        "module has {0} mutable globals; a state machine may have at most one (the shadow stack pointer): \
         keep state in the store"
    )]
    MutableGlobals(usize),
    /// The module is larger than a log entry may carry it.
    #[error("module is {0} bytes; at most {max} are allowed (a module switch carries it in one log entry)", max = MODULE_BYTES_MAX)]
    TooLarge(usize),
    /// The module's static data is too large to reset before every command.
    #[error("module's static data is {0} bytes; at most {max} are allowed (it is reset before every command)", max = super::statics::STATICS_BYTES_MAX)]
    StaticsTooLarge(usize),
}

/// A configured wasmtime engine plus the host functions: built once, shared by every module.
pub struct FsmEngine {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
    pub(crate) limits: RuntimeLimits,
    /// `wasmtime <version> <arch> codegen <fingerprint>`: see [`FsmEngine::identity`].
    identity: String,
}

impl FsmEngine {
    /// Builds the engine with the deterministic-execution settings: fuel metering, NaN
    /// canonicalisation, the target's baseline CPU, no threads, no SIMD, no memory64,
    /// multi-memory or custom page sizes, a fixed stack.
    pub fn new(limits: RuntimeLimits) -> Result<Arc<Self>, LoadError> {
        let snapshot_field_max = crate::storage::snapshot::FIELD_BYTES_MAX as usize;
        if limits.memory_bytes_max > snapshot_field_max {
            // A value as large as the memory allows must still fit in a snapshot.
            return Err(LoadError::Invalid(format!(
                "memory_bytes_max {} exceeds {snapshot_field_max}, the largest value a snapshot carries",
                limits.memory_bytes_max
            )));
        }
        // Threads (shared memory, atomics) are compiled out: wasmtime's `threads` feature is off.
        let mut config = Config::new();
        // Compile for this target's baseline CPU, not the features detected on this machine: the
        // code (and so its native stack use, which decides where a deep recursion overflows)
        // is then the same on every replica of this architecture, whatever its CPU model.
        config.target(TARGET_TRIPLE).map_err(|e| LoadError::Invalid(format!("engine target {TARGET_TRIPLE}: {e}")))?;
        config
            .consume_fuel(true)
            .cranelift_nan_canonicalization(true)
            .cranelift_opt_level(OptLevel::Speed)
            .wasm_simd(false)
            .wasm_relaxed_simd(false)
            .wasm_multi_memory(false)
            .wasm_memory64(false)
            .wasm_custom_page_sizes(false)
            .memory_may_move(true)
            .max_wasm_stack(limits.stack_bytes_max);
        let engine = Engine::new(&config).map_err(|e| LoadError::Invalid(format!("engine configuration: {e}")))?;
        let linker = host_functions::linker(&engine).map_err(|e| LoadError::Invalid(format!("host functions: {e}")))?;
        let identity =
            format!("wasmtime {} {TARGET_TRIPLE} codegen {}", super::WASMTIME_VERSION, codegen_fingerprint(&engine));
        Ok(Arc::new(FsmEngine { engine, linker, limits, identity }))
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> RuntimeLimits {
        self.limits
    }

    /// What, besides the module and the limits, decides how a command runs here: the wasmtime
    /// release (fuel costs), the target and the code generator's settings (native stack use, so
    /// where a deep recursion overflows). Part of the replicated [`super::Contract`]. The same on
    /// every machine running this build for this target: CPU features are not detected.
    pub fn identity(&self) -> &str {
        &self.identity
    }
}

/// A short digest of everything wasmtime says makes compiled code compatible (its version,
/// compiler flags, target CPU features, tunables). Hashed with SHA-256 rather than
/// `DefaultHasher`, whose algorithm may change between Rust releases; the sequence of values fed
/// to it comes from wasmtime's `Hash` impls, stable for one build of Redraft.
fn codegen_fingerprint(engine: &Engine) -> String {
    struct Sha(Sha256);
    impl std::hash::Hasher for Sha {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            0 // unused: the digest is read from the inner hasher
        }
    }
    let mut hasher = Sha(Sha256::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
    crate::storage::hex(&hasher.0.finalize()[..8])
}

/// The target this host was built for (from `build.rs`).
const TARGET_TRIPLE: &str = env!("REDRAFT_TARGET_TRIPLE");

/// The largest module accepted: a module switch carries the bytes in one log entry, and every
/// snapshot carries them too.
pub const MODULE_BYTES_MAX: usize = 32 * 1024 * 1024;

/// A validated state-machine module, ready to instantiate.
pub struct FsmModule {
    pub(crate) engine: Arc<FsmEngine>,
    pub(crate) pre: InstancePre<HostState>,
    /// The `.wasm` bytes: the replicated state records them, so every replica runs this module.
    bytes: Arc<[u8]>,
    digest: [u8; 32],
    /// Whether it exports the optional [`abi::export::MIGRATE`] hook.
    has_migrate: bool,
    /// Whether it exports the optional [`abi::export::TICK`] housekeeping.
    has_tick: bool,
    /// Whether it exports the optional [`abi::export::WATCH`] tokens.
    has_watch: bool,
    commands: Vec<CommandInfo<String>>,
    /// The static data region (see [`super::statics`]) and its bytes as instantiated.
    pub(crate) statics: std::ops::Range<usize>,
    pub(crate) pristine_statics: Vec<u8>,
    /// Where each command's input goes (the module's `__heap_base`).
    pub(crate) heap_base: usize,
}

impl std::fmt::Debug for FsmModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsmModule")
            .field("digest", &crate::storage::hex(&self.digest))
            .field("commands", &self.commands.len())
            .finish()
    }
}

fn func_type(engine: &Engine, params: &[ValType], results: &[ValType]) -> FuncType {
    FuncType::new(engine, params.iter().cloned(), results.iter().cloned())
}

/// The exports the ABI requires, with their types.
fn required_exports(engine: &Engine) -> Vec<(&'static str, FuncType)> {
    use ValType::{I32, I64};
    vec![
        (abi::export::ABI_VERSION, func_type(engine, &[], &[I32])),
        (abi::export::COMMANDS, func_type(engine, &[], &[I64])),
        (abi::export::APPLY, func_type(engine, &[I32, I32], &[I64])),
        (abi::export::QUERY, func_type(engine, &[I32, I32], &[I64])),
    ]
}

impl FsmModule {
    /// Reads and loads the module at `path`.
    pub fn load_file(engine: &Arc<FsmEngine>, path: &Path) -> Result<Self, LoadError> {
        let bytes =
            std::fs::read(path).map_err(|source| LoadError::Read { path: path.display().to_string(), source })?;
        Self::load(engine, &bytes)
    }

    /// Validates and compiles a module: wasm magic, compilation, the import allow-list, the
    /// required exports, the ABI version and the command table.
    pub fn load(engine: &Arc<FsmEngine>, bytes: &[u8]) -> Result<Self, LoadError> {
        if bytes.len() > MODULE_BYTES_MAX {
            return Err(LoadError::TooLarge(bytes.len()));
        }
        match bytes.get(..8) {
            Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => {}
            Some([0, b'a', b's', b'm', ..]) => {
                return Err(LoadError::NotWasm(
                    "this is a WebAssembly component or another binary version; Redraft loads core modules \
                     built for wasm32-unknown-unknown"
                        .into(),
                ));
            }
            _ => return Err(LoadError::NotWasm("the bytes do not start with the wasm magic number `\\0asm`".into())),
        }
        let module = Module::from_binary(&engine.engine, bytes).map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        check_imports(&engine.engine, &module)?;
        let OptionalExports { has_migrate, has_tick, has_watch } = check_exports(&engine.engine, &module)?;
        let layout = super::statics::layout(bytes)?;
        let pre = engine.linker.instantiate_pre(&module).map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        let mut module = FsmModule {
            engine: engine.clone(),
            pre,
            bytes: bytes.into(),
            digest,
            has_migrate,
            has_tick,
            has_watch,
            commands: Vec::new(),
            statics: layout.statics,
            pristine_statics: Vec::new(),
            heap_base: layout.heap_base,
        };
        let (commands, pristine) = super::describe(&module)?;
        module.commands = commands;
        module.pristine_statics = pristine;
        Ok(module)
    }

    /// SHA-256 of the module's bytes: its identity in the replicated contract.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// The `.wasm` bytes it was loaded from.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether it exports the optional migration hook ([`abi::export::MIGRATE`]).
    pub fn has_migrate(&self) -> bool {
        self.has_migrate
    }

    /// Whether it exports the optional housekeeping hook ([`abi::export::TICK`]): only then does
    /// a leader propose tick entries.
    pub fn has_tick(&self) -> bool {
        self.has_tick
    }

    /// Whether it exports the optional watch tokens ([`abi::export::WATCH`]) that `WATCH` needs.
    pub fn has_watch(&self) -> bool {
        self.has_watch
    }

    /// The engine it was compiled for (a module arriving in the log is loaded with the same one).
    pub fn engine(&self) -> &Arc<FsmEngine> {
        &self.engine
    }

    /// The replicated contract this module runs under: its digest, the engine, the limits.
    pub fn contract(&self) -> super::Contract {
        super::Contract::new(self.digest, self.engine.identity(), self.engine.limits)
    }

    /// The command table, in the module's order.
    pub fn commands(&self) -> &[CommandInfo<String>] {
        &self.commands
    }

    /// The position of a command in the table, by case-insensitive name.
    pub fn command_index(&self, name: &[u8]) -> Option<usize> {
        self.commands.iter().position(|c| c.name.as_bytes().eq_ignore_ascii_case(name))
    }
}

fn check_imports(engine: &Engine, module: &Module) -> Result<(), LoadError> {
    let allowed = || format!("{}::{{{}}}", abi::IMPORT_MODULE, abi::import::ALL.join(", "));
    for import in module.imports() {
        let expected = (import.module() == abi::IMPORT_MODULE)
            .then(|| host_functions::import_type(engine, import.name()))
            .flatten();
        let Some(expected) = expected else {
            return Err(LoadError::ForbiddenImport {
                module: import.module().to_owned(),
                name: import.name().to_owned(),
                allowed: allowed(),
            });
        };
        match import.ty() {
            ExternType::Func(found) if FuncType::eq(&found, &expected) => {}
            other => {
                return Err(LoadError::ImportType {
                    name: import.name().to_owned(),
                    found: format!("{other:?}"),
                    expected: format!("{expected:?}"),
                });
            }
        }
    }
    Ok(())
}

/// Which optional exports a module has.
struct OptionalExports {
    has_migrate: bool,
    has_tick: bool,
    has_watch: bool,
}

/// Whether the optional export `name` is there, with type `expected` (one of another type is
/// refused, not ignored).
fn optional_export(module: &Module, name: &'static str, expected: &FuncType) -> Result<bool, LoadError> {
    match module.get_export(name) {
        None => Ok(false),
        Some(ExternType::Func(found)) if FuncType::eq(&found, expected) => Ok(true),
        Some(_) => Err(LoadError::MissingExport {
            name,
            expected: format!("a function {expected} (it is optional, but must have this type when present)"),
        }),
    }
}

/// Checks the required exports; returns which optional hooks are there.
fn check_exports(engine: &Engine, module: &Module) -> Result<OptionalExports, LoadError> {
    if !matches!(module.get_export(abi::export::MEMORY), Some(ExternType::Memory(_))) {
        return Err(LoadError::MissingExport { name: abi::export::MEMORY, expected: "a memory".into() });
    }
    match module.get_export(abi::export::HEAP_BASE) {
        Some(ExternType::Global(g)) if !g.mutability().is_var() && matches!(g.content(), ValType::I32) => {}
        _ => {
            return Err(LoadError::MissingExport {
                name: abi::export::HEAP_BASE,
                expected: "an immutable i32 global".into(),
            });
        }
    }
    for (name, expected) in required_exports(engine) {
        match module.get_export(name) {
            Some(ExternType::Func(found)) if FuncType::eq(&found, &expected) => {}
            _ => return Err(LoadError::MissingExport { name, expected: format!("a function {expected}") }),
        }
    }
    let migrate = func_type(engine, &[], &[ValType::I64]);
    // `redraft_tick(dry_run)` and `redraft_watch(input_len)` share a type.
    let tick = func_type(engine, &[ValType::I32], &[ValType::I64]);
    Ok(OptionalExports {
        has_migrate: optional_export(module, abi::export::MIGRATE, &migrate)?,
        has_tick: optional_export(module, abi::export::TICK, &tick)?,
        has_watch: optional_export(module, abi::export::WATCH, &tick)?,
    })
}

/// Decodes the table a module reported.
pub(crate) fn decode_table(bytes: &[u8]) -> Result<Vec<CommandInfo<String>>, LoadError> {
    codec::decode_commands(bytes).map_err(|e| LoadError::CommandTable(e.to_string()))
}
