//! # fsm-kv-core: Redis string commands for Redraft state machines
//!
//! The commands and the store layout shared by the two key-value modules: `fsm-kv` (v1, exactly
//! [`STRINGS`]) and `fsm-kv-v2` (these plus `GETDEL`, `SETNX` and `INCRBYFLOAT`). A plain library:
//! the modules export themselves (`fsm_sdk::export_state_machine!`), this crate exports nothing.
//!
//! [`STRINGS`]: `SET` (with `NX`, `XX`, `GET`), `GET`, `DEL` / `DELETE`, `EXISTS`, `MGET`, `MSET`,
//! `INCR`, `INCRBY`, `DECR`, `DECRBY`, `APPEND`, `STRLEN` and `DBSIZE`, with Redis's reply types
//! and error texts.
//!
//! Layout in the host's store (the module owns its keyspace; nothing else writes to it):
//! * `b"k" ++ key` → the value, raw bytes.
//! * `b"m:dbsize"` → the number of keys, `i64` little-endian, kept current by every write so that
//!   `DBSIZE` costs one read instead of a scan.
//!
//! * Keys with a time to live: see [`expiry`] (`e` + key, and the `x` index by time).
//!
//! [`EXPIRY`]: the time-to-live commands. Time comes from the log entry (the leader's clock,
//! the same on every replica), so expiry is deterministic; see [`expiry`].
#![deny(unsafe_code)]

pub mod collection;
pub mod expiry;
mod float;
pub mod hash;
pub mod keyspace;
pub mod list;
pub mod set;
pub mod zset;

use expiry::{ExpiryUnit, expire_if_due, live_len, live_value, overwrite, remove};

pub use float::{format_float, parse_float};
use fsm_sdk::{Arity, Command, KeySpec, Reply, Tx, View};

/// The string commands (fsm-kv v1's whole table).
pub const STRINGS: [Command; 14] = [
    Command::write("set", Arity::AtLeast(3), KeySpec::single(), set),
    Command::read("get", Arity::Exact(2), KeySpec::single(), get),
    Command::write("del", Arity::AtLeast(2), KeySpec::all(), del),
    Command::write("delete", Arity::AtLeast(2), KeySpec::all(), del),
    Command::read("exists", Arity::AtLeast(2), KeySpec::all(), exists),
    Command::read("mget", Arity::AtLeast(2), KeySpec::all(), mget),
    Command::write("mset", Arity::AtLeast(3), KeySpec::pairs(), mset),
    Command::write("incr", Arity::Exact(2), KeySpec::single(), incr),
    Command::write("incrby", Arity::Exact(3), KeySpec::single(), incrby),
    Command::write("decr", Arity::Exact(2), KeySpec::single(), decr),
    Command::write("decrby", Arity::Exact(3), KeySpec::single(), decrby),
    Command::write("append", Arity::Exact(3), KeySpec::single(), append),
    Command::read("strlen", Arity::Exact(2), KeySpec::single(), strlen),
    Command::read("dbsize", Arity::Exact(1), KeySpec::none(), dbsize),
];

/// The time-to-live commands (see [`expiry`]).
pub const EXPIRY: [Command; 12] = [
    Command::write("expire", Arity::AtLeast(3), KeySpec::single(), expiry::expire),
    Command::write("pexpire", Arity::AtLeast(3), KeySpec::single(), expiry::pexpire),
    Command::write("expireat", Arity::AtLeast(3), KeySpec::single(), expiry::expireat),
    Command::write("pexpireat", Arity::AtLeast(3), KeySpec::single(), expiry::pexpireat),
    Command::read("ttl", Arity::Exact(2), KeySpec::single(), expiry::ttl),
    Command::read("pttl", Arity::Exact(2), KeySpec::single(), expiry::pttl),
    Command::read("expiretime", Arity::Exact(2), KeySpec::single(), expiry::expiretime),
    Command::read("pexpiretime", Arity::Exact(2), KeySpec::single(), expiry::pexpiretime),
    Command::write("persist", Arity::Exact(2), KeySpec::single(), expiry::persist),
    Command::write("setex", Arity::Exact(4), KeySpec::single(), expiry::setex),
    Command::write("psetex", Arity::Exact(4), KeySpec::single(), expiry::psetex),
    Command::write("getex", Arity::AtLeast(2), KeySpec::single(), expiry::getex),
];

/// Commands over keys as such and over the keyspace (see [`keyspace`]).
pub const KEYSPACE: [Command; 11] = [
    Command::read("type", Arity::Exact(2), KeySpec::single(), keyspace::type_),
    Command::read("touch", Arity::AtLeast(2), KeySpec::all(), keyspace::touch),
    Command::write("unlink", Arity::AtLeast(2), KeySpec::all(), del),
    Command::read("keys", Arity::Exact(2), KeySpec::none(), keyspace::keys),
    Command::read("scan", Arity::AtLeast(2), KeySpec::none(), keyspace::scan),
    Command::read("randomkey", Arity::Exact(1), KeySpec::none(), keyspace::randomkey),
    Command::write("rename", Arity::Exact(3), KeySpec { first: 1, last: 2, step: 1 }, keyspace::rename),
    Command::write("renamenx", Arity::Exact(3), KeySpec { first: 1, last: 2, step: 1 }, keyspace::renamenx),
    Command::write("copy", Arity::AtLeast(3), KeySpec { first: 1, last: 2, step: 1 }, keyspace::copy),
    Command::write("flushdb", Arity::AtLeast(1), KeySpec::none(), keyspace::flushdb),
    Command::write("flushall", Arity::AtLeast(1), KeySpec::none(), keyspace::flushdb),
];

/// fsm-kv's whole table: [`STRINGS`], [`EXPIRY`], [`KEYSPACE`], [`hash::HASHES`],
/// [`set::SETS`], [`list::LISTS`] and [`zset::ZSETS`].
pub const KV_COMMANDS: [Command; 102] = concat(
    concat::<69, 16, 85>(
        concat::<53, 16, 69>(
            concat::<37, 16, 53>(concat::<26, 11, 37>(concat::<14, 12, 26>(STRINGS, EXPIRY), KEYSPACE), hash::HASHES),
            set::SETS,
        ),
        list::LISTS,
    ),
    zset::ZSETS,
);

/// fsm-kv's housekeeping: whether expired keys wait for removal, removed collections for their
/// elements to be deleted, or the keyspace index to be built ([`fsm_sdk::StateMachine::tick_due`]).
pub fn tick_due(view: &View) -> bool {
    expiry::tick_due(view) || collection::garbage_due(view) || keyspace::index_building(view)
}

/// fsm-kv's housekeeping tick: removes expired keys, deletes removed collections' elements and
/// indexes keys, a bounded number of each; replies with the work done.
pub fn tick(tx: &mut Tx) -> Reply {
    let removed = match expiry::tick(tx) {
        Reply::Integer(n) => n,
        other => return other,
    };
    Reply::Integer(removed + collection::collect_garbage(tx) + keyspace::index_step(tx))
}

/// fsm-kv's migration hook (a cluster switched to it from another module): the state's keys may
/// lack index entries, so they are indexed again ([`keyspace::reindex_after_switch`]).
pub fn migrate(tx: &mut Tx) -> Reply {
    keyspace::reindex_after_switch(tx);
    Reply::ok()
}

/// `first` followed by `second`: a module's table built from shared lists, in a `const`.
pub const fn concat<const A: usize, const B: usize, const N: usize>(
    first: [Command; A],
    second: [Command; B],
) -> [Command; N] {
    assert!(A + B == N && A > 0, "N must be A + B, and A at least 1");
    let mut out = [first[0]; N];
    let mut i = 0;
    while i < N {
        out[i] = if i < A { first[i] } else { second[i - A] };
        i += 1;
    }
    out
}

pub(crate) const DATA_PREFIX: u8 = b'k';
pub(crate) const DBSIZE_KEY: &[u8] = b"m:dbsize";

/// The store key of a user key.
pub fn data_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(DATA_PREFIX);
    k.extend_from_slice(key);
    k
}

/// The number of user keys.
pub fn read_dbsize(view: &View) -> i64 {
    view.get(DBSIZE_KEY).and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok()).map_or(0, i64::from_le_bytes)
}

/// Records that `key` was just created: counts it and indexes it (see [`keyspace`]).
pub fn key_created(tx: &mut Tx, key: &[u8]) {
    adjust_dbsize(tx, 1);
    keyspace::index_add(tx, key);
}

/// Records that `key` was just removed: the inverse of [`key_created`].
pub fn key_removed(tx: &mut Tx, key: &[u8]) {
    adjust_dbsize(tx, -1);
    keyspace::index_remove(tx, key);
}

/// Adds `delta` to the key count; a no-op for zero so reads of unchanged counts cost nothing.
pub fn adjust_dbsize(tx: &mut Tx, delta: i64) {
    if delta != 0 {
        let n = read_dbsize(tx) + delta;
        tx.put(DBSIZE_KEY, &n.to_le_bytes());
    }
}

/// Redis's `WRONGTYPE` error.
pub fn wrong_type() -> Reply {
    Reply::error("WRONGTYPE Operation against a key holding the wrong kind of value")
}

/// The `WATCH` token of a key: empty when the key does not exist (or expired at the command's
/// time); for a string, a 64-bit FNV-1a digest of the value, its length and its expiry time; for
/// a collection, its id and version (bumped by every change) and its expiry time.
pub fn watch_token(view: &View, key: &[u8]) -> Vec<u8> {
    if !expiry::is_live(view, key) {
        return Vec::new();
    }
    let Some(value) = expiry::live_value(view, key) else {
        let mut token = vec![2];
        if let Some(header) = collection::header(view, key) {
            token.extend_from_slice(&header.id.to_le_bytes());
            token.extend_from_slice(&header.version.to_le_bytes());
        }
        token.extend_from_slice(&expiry::expires_at(view, key).unwrap_or(-1).to_le_bytes());
        return token;
    };
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let expires = expiry::expires_at(view, key).unwrap_or(-1);
    for byte in value.iter().chain(&(value.len() as u64).to_le_bytes()).chain(&expires.to_le_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut token = vec![1];
    token.extend_from_slice(&hash.to_le_bytes());
    token
}

/// Parses an integer exactly as Redis's `string2ll` does: optional `-`, no `+`, no leading zeros,
/// no spaces, at most 20 characters, within `i64`.
pub fn parse_i64(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() || bytes.len() > 20 {
        return None;
    }
    if bytes == b"0" {
        return Some(0);
    }
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        n = n.checked_mul(10)?;
        n = if negative { n.checked_sub(d)? } else { n.checked_add(d)? };
    }
    Some(n)
}

// ----- reads --------------------------------------------------------------------------------

fn get(view: &View, args: &[&[u8]]) -> Reply {
    match expiry::string_value(view, args[1]) {
        Ok(value) => Reply::bulk_or_null(value),
        Err(reply) => reply,
    }
}

fn exists(view: &View, args: &[&[u8]]) -> Reply {
    let n = args[1..].iter().filter(|k| expiry::is_live(view, k)).count();
    Reply::Integer(n as i64)
}

fn mget(view: &View, args: &[&[u8]]) -> Reply {
    Reply::Array(args[1..].iter().map(|k| Reply::bulk_or_null(live_value(view, k))).collect())
}

fn strlen(view: &View, args: &[&[u8]]) -> Reply {
    match live_len(view, args[1]) {
        Ok(len) => Reply::Integer(len.map_or(0, i64::from)),
        Err(reply) => reply,
    }
}

fn dbsize(view: &View, _args: &[&[u8]]) -> Reply {
    Reply::Integer(read_dbsize(view))
}

// ----- writes -------------------------------------------------------------------------------

/// `SET key value [NX | XX] [GET] [EX s | PX ms | EXAT unix-s | PXAT unix-ms | KEEPTTL]`.
fn set(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    let (key, value) = (args[1], args[2]);
    let (mut nx, mut xx, mut get, mut keepttl) = (false, false, false, false);
    let mut expiry: Option<(ExpiryUnit, &[u8])> = None;
    let mut i = 3;
    while i < args.len() {
        let option = args[i];
        match option.to_ascii_uppercase().as_slice() {
            b"NX" if !xx => nx = true,
            b"XX" if !nx => xx = true,
            b"GET" => get = true,
            b"KEEPTTL" if expiry.is_none() => keepttl = true,
            _ => match (ExpiryUnit::parse(option), args.get(i + 1)) {
                // The same option twice is allowed (the last wins), as in Redis.
                (Some(unit), Some(arg)) if !keepttl && expiry.is_none_or(|(u, _)| u == unit) => {
                    expiry = Some((unit, arg));
                    i += 1;
                }
                _ => return Reply::syntax_error(),
            },
        }
        i += 1;
    }
    let at = match expiry.map(|(unit, arg)| expiry::option_expiry("set", unit, arg, tx.time_ms())) {
        Some(Ok(at)) => Some(at),
        Some(Err(reply)) => return reply,
        None => None,
    };
    let (old, exists) = if get || nx || xx {
        expire_if_due(tx, key);
        let old = if get {
            match expiry::string_value(tx, key) {
                Ok(old) => old,
                Err(reply) => return reply,
            }
        } else {
            None
        };
        (old, expiry::exists_raw(tx, key))
    } else {
        (None, false)
    };
    let write = !(nx && exists || xx && !exists);
    if write {
        match at {
            Some(at) => expiry::store_expiring(tx, key, value, at),
            None if keepttl => {
                expire_if_due(tx, key);
                let kept = expiry::expires_at(tx, key);
                overwrite(tx, key, value);
                expiry::set_expiry(tx, key, kept);
            }
            // An expired key's leftovers go with the overwrite: no TTL survives a plain SET.
            None => {
                overwrite(tx, key, value);
            }
        }
    }
    match (get, write) {
        (true, _) => Reply::bulk_or_null(old),
        (false, true) => Reply::ok(),
        (false, false) => Reply::Null,
    }
}

/// `DEL key [key ...]` and its original Redraft name `DELETE`.
fn del(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    let mut removed = 0;
    for key in &args[1..] {
        expire_if_due(tx, key);
        if remove(tx, key) {
            removed += 1;
        }
    }
    Reply::Integer(removed)
}

/// `MSET key value [key value ...]`: every key loses its expiry, as with `SET`.
fn mset(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    if args.len().is_multiple_of(2) {
        return Reply::wrong_arity("mset");
    }
    for pair in args[1..].chunks_exact(2) {
        overwrite(tx, pair[0], pair[1]);
    }
    Reply::ok()
}

/// `GETDEL key`: the value, then the key is gone.
pub fn getdel(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    let key = args[1];
    expire_if_due(tx, key);
    let value = match expiry::string_value(tx, key) {
        Ok(value) => value,
        Err(reply) => return reply,
    };
    if value.is_some() {
        remove(tx, key);
    }
    Reply::bulk_or_null(value)
}

/// `SETNX key value`: 1 if it set the key, 0 if the key existed.
pub fn setnx(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    expire_if_due(tx, args[1]);
    if expiry::exists_raw(tx, args[1]) {
        return Reply::Integer(0);
    }
    overwrite(tx, args[1], args[2]);
    Reply::Integer(1)
}

/// Adds `delta` to the integer at `key` (0 when absent) and stores the result.
fn incr_by(tx: &mut Tx, key: &[u8], delta: i64) -> Reply {
    expire_if_due(tx, key);
    let dkey = data_key(key);
    let current = match expiry::string_value(tx, key) {
        Err(reply) => return reply,
        Ok(None) => 0,
        Ok(Some(v)) => match parse_i64(&v) {
            Some(n) => n,
            None => return Reply::not_an_integer(),
        },
    };
    let Some(next) = current.checked_add(delta) else {
        return Reply::overflow();
    };
    if !tx.put(&dkey, next.to_string().as_bytes()) {
        key_created(tx, key);
    }
    Reply::Integer(next)
}

fn incr(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    incr_by(tx, args[1], 1)
}

fn decr(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    incr_by(tx, args[1], -1)
}

fn incrby(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    match parse_i64(args[2]) {
        Some(delta) => incr_by(tx, args[1], delta),
        None => Reply::not_an_integer(),
    }
}

fn decrby(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    match parse_i64(args[2]) {
        Some(i64::MIN) => Reply::error("ERR decrement would overflow"),
        Some(delta) => incr_by(tx, args[1], -delta),
        None => Reply::not_an_integer(),
    }
}

/// `APPEND key value`: the new length.
fn append(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    expire_if_due(tx, args[1]);
    let dkey = data_key(args[1]);
    let mut value = match expiry::string_value(tx, args[1]) {
        Ok(value) => value.unwrap_or_default(),
        Err(reply) => return reply,
    };
    value.extend_from_slice(args[2]);
    if !tx.put(&dkey, &value) {
        key_created(tx, args[1]);
    }
    Reply::Integer(value.len() as i64)
}

#[cfg(test)]
mod tests {
    use super::parse_i64;

    #[test]
    fn integers_parse_like_redis_string2ll() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [&b""[..], b"+1", b"01", b"-0", b" 1", b"1 ", b"1.5", b"9223372036854775808", b"-", b"abc"] {
            assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
