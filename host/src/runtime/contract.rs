//! The replicated contract: everything besides the log that decides what a replica computes.
//!
//! Two replicas with the same contract, the same starting state and the same log compute the same
//! replies and the same state. With a different module, ABI, engine version, fuel budget, memory
//! cap or stack size they may not (a command that fits one budget runs out under another), so a
//! store records the contract it was produced under, and a runtime with another contract refuses
//! to apply to it, and refuses its snapshots.

use super::RuntimeLimits;
use fsm_sdk::abi;

/// The wasmtime release every replica must run: fuel costs and native stack use may change
/// between releases. Kept equal to the `=` pin in the workspace `Cargo.toml` (a test checks
/// `Cargo.lock`).
pub const WASMTIME_VERSION: &str = "48.0.8";

/// See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contract {
    /// SHA-256 of the module's bytes.
    pub module_digest: [u8; 32],
    /// [`abi::ABI_VERSION`] the module speaks.
    pub abi_version: u32,
    /// The engine: `wasmtime <version> <arch> codegen <fingerprint>` ([`super::FsmEngine::identity`]).
    pub engine: String,
    /// Fuel per command.
    pub fuel_per_apply: u64,
    /// Memory cap per instance, bytes.
    pub memory_bytes_max: u64,
    /// Wasm stack, bytes.
    pub stack_bytes_max: u64,
}

impl Contract {
    /// The contract of a module run by `engine` (its identity) with these limits.
    pub fn new(module_digest: [u8; 32], engine: &str, limits: RuntimeLimits) -> Self {
        Contract {
            module_digest,
            abi_version: abi::ABI_VERSION,
            engine: engine.to_owned(),
            fuel_per_apply: limits.fuel_per_apply,
            memory_bytes_max: limits.memory_bytes_max as u64,
            stack_bytes_max: limits.stack_bytes_max as u64,
        }
    }

    fn fields(&self) -> [(&'static str, String); 6] {
        [
            ("module_digest", crate::storage::hex(&self.module_digest)),
            ("abi_version", self.abi_version.to_string()),
            ("engine", self.engine.clone()),
            ("fuel_per_apply", self.fuel_per_apply.to_string()),
            ("memory_bytes_max", self.memory_bytes_max.to_string()),
            ("stack_bytes_max", self.stack_bytes_max.to_string()),
        ]
    }

    /// A stable, human-readable encoding: one `name=value` line per field, in a fixed order.
    pub fn encode(&self) -> Vec<u8> {
        self.fields().iter().map(|(k, v)| format!("{k}={v}\n")).collect::<String>().into_bytes()
    }

    /// Parses [`Contract::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "contract is not UTF-8".to_owned())?;
        let mut c = Contract {
            module_digest: [0; 32],
            abi_version: 0,
            engine: String::new(),
            fuel_per_apply: 0,
            memory_bytes_max: 0,
            stack_bytes_max: 0,
        };
        let mut seen = 0;
        for line in text.lines() {
            let (key, value) = line.split_once('=').ok_or_else(|| format!("contract line without '=': {line:?}"))?;
            let number = |v: &str| v.parse::<u64>().map_err(|_| format!("contract field {key} is not a number: {v:?}"));
            match key {
                "module_digest" => c.module_digest = parse_digest(value)?,
                "abi_version" => {
                    c.abi_version = u32::try_from(number(value)?).map_err(|_| "abi_version out of range".to_owned())?
                }
                "engine" => c.engine = value.to_owned(),
                "fuel_per_apply" => c.fuel_per_apply = number(value)?,
                "memory_bytes_max" => c.memory_bytes_max = number(value)?,
                "stack_bytes_max" => c.stack_bytes_max = number(value)?,
                other => return Err(format!("unknown contract field {other:?}")),
            }
            seen += 1;
        }
        if seen != c.fields().len() {
            return Err(format!("contract has {seen} fields, expected {}", c.fields().len()));
        }
        Ok(c)
    }

    /// The fields that differ, as `name: this vs other` (empty when the contracts are equal).
    pub fn differences(&self, other: &Contract) -> Vec<String> {
        self.fields()
            .into_iter()
            .zip(other.fields())
            .filter(|(a, b)| a.1 != b.1)
            .map(|((name, a), (_, b))| format!("{name}: {a} vs {b}"))
            .collect()
    }

    /// [`Contract::differences`] in everything but the module: what a node must share with its
    /// cluster to follow it through module switches (the ABI, the engine, the limits).
    pub fn differences_besides_module(&self, other: &Contract) -> Vec<String> {
        let mut other = other.clone();
        other.module_digest = self.module_digest;
        self.differences(&other)
    }
}

fn parse_digest(hex: &str) -> Result<[u8; 32], String> {
    let bad = || format!("module_digest is not 64 hex digits: {hex:?}");
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Contract {
        Contract::new([0xa5; 32], "wasmtime 48.0.8 x86_64 codegen 0011223344556677", RuntimeLimits::default())
    }

    #[test]
    fn encoding_round_trips_and_is_readable() {
        let c = sample();
        let text = String::from_utf8(c.encode()).expect("utf8");
        assert!(text.contains("engine=wasmtime 48.0.8 x86_64 codegen 0011223344556677\n"), "{text}");
        assert!(text.starts_with("module_digest=a5a5"), "{text}");
        assert_eq!(Contract::decode(&c.encode()), Ok(c));
    }

    #[test]
    fn damaged_encodings_are_errors() {
        let good = String::from_utf8(sample().encode()).expect("utf8");
        for bad in [
            good.replace("abi_version=2", "abi_version=x"),
            good.replace("module_digest=a5", "module_digest=zz"),
            good.replace("engine=", "engine"),
            format!("{good}extra=1\n"),
            good.lines().skip(1).collect::<Vec<_>>().join("\n"),
        ] {
            assert!(Contract::decode(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn differences_name_each_field() {
        let a = sample();
        let mut b = sample();
        b.fuel_per_apply += 1;
        b.engine = "wasmtime 49.0.0".into();
        assert_eq!(
            a.differences(&b),
            vec![
                "engine: wasmtime 48.0.8 x86_64 codegen 0011223344556677 vs wasmtime 49.0.0".to_owned(),
                format!("fuel_per_apply: {} vs {}", a.fuel_per_apply, b.fuel_per_apply),
            ]
        );
        assert!(a.differences(&a).is_empty());
    }

    #[test]
    fn the_wasmtime_version_is_the_one_in_cargo_lock() {
        let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock")).expect("Cargo.lock");
        let entry = format!("name = \"wasmtime\"\nversion = \"{WASMTIME_VERSION}\"");
        assert!(lock.contains(&entry), "Cargo.lock's wasmtime is not {WASMTIME_VERSION}: update WASMTIME_VERSION");
    }
}
