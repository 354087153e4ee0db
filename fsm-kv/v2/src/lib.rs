//! # fsm-kv-v2: fsm-kv plus `GETDEL`, `SETNX` and `INCRBYFLOAT`
//!
//! (Its keys expire as fsm-kv's do: the same layout, the same housekeeping tick.)
//!
//! The example of a module switch worth doing: a cluster running fsm-kv (v1) points its config at
//! this module and runs `MODULE RELOAD`; from that log index on, every replica runs v2.
//!
//! **Same layout, so v1's data reads the same.** v2 keeps v1's store layout (see
//! [`fsm_kv_core`]): `k` + key → value, and the key count at `m:dbsize`. Its new commands keep
//! that count current as v1's do, so a cluster can also switch back to v1.
//!
//! **The migration hook** stamps the layout version, `m:schema` = `2`, after checking the state
//! is one v2 can read: v1's (no stamp) or v2's own. A state stamped by some later version is
//! refused, and the switch with it: the cluster stays on the module it runs. A migration runs
//! inside one log entry under one command's fuel budget, so it must not rewrite the whole
//! keyspace; a layout change that needs that would convert keys lazily, as they are written.
#![deny(unsafe_code)]

use fsm_kv_core::{data_key, expiry::expire_if_due, getdel, key_created, setnx};
use fsm_sdk::{Arity, Command, KeySpec, Reply, StateMachine, Tx, View};

/// The key-value state machine, version 2.
pub struct KeyValueV2;

/// The commands v2 adds to v1's.
const ADDED: [Command; 3] = [
    Command::write("getdel", Arity::Exact(2), KeySpec::single(), getdel),
    Command::write("setnx", Arity::Exact(3), KeySpec::single(), setnx),
    Command::write("incrbyfloat", Arity::Exact(3), KeySpec::single(), incrbyfloat),
];

const COMMANDS: [Command; 40] = fsm_kv_core::concat(fsm_kv_core::KV_COMMANDS, ADDED);

impl StateMachine for KeyValueV2 {
    const COMMANDS: &'static [Command] = &COMMANDS;

    fn tick_due(view: &View) -> bool {
        fsm_kv_core::tick_due(view)
    }

    fn tick(tx: &mut Tx) -> Reply {
        fsm_kv_core::tick(tx)
    }

    fn watch_token(view: &View, key: &[u8]) -> Option<Vec<u8>> {
        Some(fsm_kv_core::watch_token(view, key))
    }

    fn migrate(tx: &mut Tx) -> Reply {
        match tx.get(SCHEMA_KEY).as_deref() {
            None | Some(SCHEMA) => {
                tx.put(SCHEMA_KEY, SCHEMA);
                fsm_kv_core::migrate(tx)
            }
            Some(other) => Reply::error(format!(
                "ERR fsm-kv-v2 cannot read this state: it has layout version {:?}, v2 reads versions 1 and 2",
                String::from_utf8_lossy(other)
            )),
        }
    }
}

fsm_sdk::export_state_machine!(KeyValueV2);

/// Where the layout version is stamped (absent: v1's layout).
pub const SCHEMA_KEY: &[u8] = b"m:schema";
/// This module's layout version.
pub const SCHEMA: &[u8] = b"2";

/// `INCRBYFLOAT key increment`: the new value, as Redis prints it.
fn incrbyfloat(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    expire_if_due(tx, args[1]);
    let key = data_key(args[1]);
    let current = match tx.get(&key) {
        None => 0.0,
        Some(value) => match parse_float(&value) {
            Some(n) => n,
            None => return Reply::error("ERR value is not a valid float"),
        },
    };
    let Some(increment) = parse_float(args[2]) else {
        return Reply::error("ERR value is not a valid float");
    };
    let next = current + increment;
    if !next.is_finite() {
        return Reply::error("ERR increment would produce NaN or Infinity");
    }
    let text = format_float(next);
    if !tx.put(&key, text.as_bytes()) {
        key_created(tx, args[1]);
    }
    Reply::Bulk(text.into_bytes())
}

/// Parses a float as Redis's `string2ld` accepts it: no leading or trailing space, not NaN, and
/// no overflow to infinity or underflow to zero (an explicit `inf` is accepted, as `strtold`
/// does). One difference: Redis parses into a `long double`, so it takes magnitudes up to about
/// 1e4932 where an `f64` stops near 1e308 (refused here as not a valid float). wasm floats are
/// IEEE-754 and the host canonicalises NaNs: every replica computes the same.
pub fn parse_float(bytes: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(bytes).ok()?;
    if text.is_empty() || text.len() > 5 * 1024 || text.starts_with(char::is_whitespace) {
        return None;
    }
    let n = text.parse::<f64>().ok().filter(|n| !n.is_nan())?;
    let mantissa = text.split(['e', 'E']).next().unwrap_or(text);
    let overflow = n.is_infinite() && mantissa.bytes().any(|b| b.is_ascii_digit());
    let underflow = n == 0.0 && mantissa.bytes().any(|b| matches!(b, b'1'..=b'9'));
    (!overflow && !underflow).then_some(n)
}

/// Prints a float the way Redis's `INCRBYFLOAT` does: plain decimal, no exponent, no trailing
/// zeros (`10.5`, `3`, `0.0001`). The sum is rounded to 15 significant digits first (what an
/// `f64` holds), so `0.1 + 0.2` prints `0.3` as in Redis. Redis adds in `long double` and prints
/// 17 decimals, which shows that type's own rounding error on larger values (`958.3` is
/// `958.29999999999999999` there): where the exact sum is not a binary fraction, the texts may
/// differ in those digits.
pub fn format_float(n: f64) -> String {
    let rounded: f64 = format!("{n:.14e}").parse().unwrap_or(n);
    let text = format!("{rounded}");
    if text == "-0" { "0".to_owned() } else { text }
}

#[cfg(test)]
mod tests {
    use super::{format_float, parse_float};

    #[test]
    fn floats_parse_like_redis() {
        assert_eq!(parse_float(b"10.5"), Some(10.5));
        assert_eq!(parse_float(b"5.0e3"), Some(5000.0));
        assert_eq!(parse_float(b"-1"), Some(-1.0));
        assert_eq!(parse_float(b"inf"), Some(f64::INFINITY));
        for bad in [&b""[..], b" 1", b"1 ", b"abc", b"nan", b"1.2.3", b"1e400", b"1e-400"] {
            assert_eq!(parse_float(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn floats_print_like_redis() {
        assert_eq!(format_float(10.5 + 0.1), "10.6");
        assert_eq!(format_float(5000.0), "5000");
        assert_eq!(format_float(-0.0), "0");
        assert_eq!(format_float(1e-5), "0.00001");
        assert_eq!(format_float(0.1 + 0.2), "0.3");
        assert_eq!(format_float(1e20), "100000000000000000000");
    }
}
