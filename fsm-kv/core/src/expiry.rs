//! Keys with a time to live: the layout, the checks every command makes, and the commands
//! (`EXPIRE` and friends, `TTL` and friends, `PERSIST`, `SETEX`, `PSETEX`, `GETEX`).
//!
//! **Time.** A write runs at its log entry's stamp ([`fsm_sdk::View::time_ms`]): every replica
//! expires the same keys at the same index. A read runs at the serving node's clock and never
//! changes state, as on a Redis replica.
//!
//! **Layout** (next to the value at `k` + key):
//! * `e` + key → the expiry time, milliseconds since the Unix epoch, `i64` little-endian;
//! * `x` + the expiry time (`u64` big-endian, so keys sort by time) + key → empty: the index the
//!   housekeeping tick walks to remove expired keys in time order.
//!
//! A key is expired when the time is **past** its expiry time (Redis's `now > when`). Expired
//! keys are invisible to every command at once; a write that touches one removes it first (as
//! Redis's `lookupKeyWrite` does), and the tick removes the rest ([`tick`]).

use crate::{collection, data_key, key_created, key_removed, parse_i64};
use fsm_sdk::{Reply, Tx, View};

const EXPIRY_PREFIX: u8 = b'e';
const INDEX_PREFIX: u8 = b'x';
/// Expired keys one tick removes at most: bounded work per entry, whatever the backlog.
pub const TICK_KEYS_MAX: u32 = 512;

fn expiry_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(EXPIRY_PREFIX);
    k.extend_from_slice(key);
    k
}

fn index_key(at: i64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 9);
    k.push(INDEX_PREFIX);
    k.extend_from_slice(&(at.max(0) as u64).to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// The expiry time of `key`, if it has one (whether or not the key is live).
pub fn expires_at(view: &View, key: &[u8]) -> Option<i64> {
    view.get(&expiry_key(key)).and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok()).map(i64::from_le_bytes)
}

/// Whether `key`'s time ran out at `now`.
/// Whether `key`'s time ran out at the command's time. The time is asked of the host only when
/// the key has an expiry: most keys have none, and a host call per read is measurable.
fn expired(view: &View, key: &[u8]) -> bool {
    expires_at(view, key).is_some_and(|at| view.time_ms() > at)
}

/// The string value of `key` if it holds a string and has not expired at the command's time.
pub fn live_value(view: &View, key: &[u8]) -> Option<Vec<u8>> {
    let value = view.get(&data_key(key))?;
    (!expired(view, key)).then_some(value)
}

/// `key`'s string value for a command that needs a string: `Ok(None)` when absent (or expired),
/// Redis's `WRONGTYPE` error when it holds a collection.
pub fn string_value(view: &View, key: &[u8]) -> Result<Option<Vec<u8>>, Reply> {
    match live_value(view, key) {
        Some(value) => Ok(Some(value)),
        None if is_live(view, key) => Err(crate::wrong_type()),
        None => Ok(None),
    }
}

/// Whether `key` holds a string or a collection, expired or not.
pub fn exists_raw(view: &View, key: &[u8]) -> bool {
    view.exists(&data_key(key)) || collection::header(view, key).is_some()
}

/// Whether `key` exists (any type) and has not expired at the command's time.
pub fn is_live(view: &View, key: &[u8]) -> bool {
    exists_raw(view, key) && !expired(view, key)
}

/// The length of `key`'s string value if it is live; `WRONGTYPE` for a collection.
pub fn live_len(view: &View, key: &[u8]) -> Result<Option<u32>, Reply> {
    match view.value_len(&data_key(key)) {
        Some(len) => Ok((!expired(view, key)).then_some(len)),
        None if is_live(view, key) => Err(crate::wrong_type()),
        None => Ok(None),
    }
}

/// Sets or clears `key`'s expiry time, keeping the index in step.
pub fn set_expiry(tx: &mut Tx, key: &[u8], at: Option<i64>) {
    let old = expires_at(tx, key);
    if old == at {
        return;
    }
    if let Some(old) = old {
        tx.delete(&index_key(old, key));
    }
    match at {
        Some(at) => {
            tx.put(&expiry_key(key), &at.to_le_bytes());
            tx.put(&index_key(at, key), &[]);
        }
        None => {
            tx.delete(&expiry_key(key));
        }
    }
}

/// Removes `key` (a string, or a collection whose elements the tick then deletes) with its
/// expiry; returns whether it existed (live or not).
pub fn remove(tx: &mut Tx, key: &[u8]) -> bool {
    let existed = tx.delete(&data_key(key)) || collection::remove_collection(tx, key);
    set_expiry(tx, key, None);
    if existed {
        key_removed(tx, key);
    }
    existed
}

/// Removes `key` if its time ran out: what a write does before it looks at a key, so that it
/// sees an expired key as absent and leaves no trace of it.
pub fn expire_if_due(tx: &mut Tx, key: &[u8]) {
    if expired(tx, key) {
        remove(tx, key);
    }
}

/// Stores `value` at `key` as a new string value, whatever the key held: any expiry is dropped
/// (as Redis's `SET` without `KEEPTTL`). Returns whether the key is new.
pub fn overwrite(tx: &mut Tx, key: &[u8], value: &[u8]) -> bool {
    let existed = tx.put(&data_key(key), value) || collection::remove_collection(tx, key);
    set_expiry(tx, key, None);
    if !existed {
        key_created(tx, key);
    }
    !existed
}

/// Whether a tick has work: the oldest indexed expiry time is past.
pub fn tick_due(view: &View) -> bool {
    let now = view.time_ms();
    view.scan(&[INDEX_PREFIX], Some(&[INDEX_PREFIX + 1]), 1)
        .first()
        .and_then(|(k, _)| k.get(1..9))
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .is_some_and(|at| now > u64::from_be_bytes(at) as i64)
}

/// Removes up to [`TICK_KEYS_MAX`] expired keys, oldest expiry first; replies with how many.
pub fn tick(tx: &mut Tx) -> Reply {
    let now = tx.time_ms();
    if now <= 0 {
        return Reply::Integer(0);
    }
    // Expired means `now > at`, so every index key below `x` + `now` is due.
    let end = index_key(now, &[]);
    let due = tx.scan(&[INDEX_PREFIX], Some(&end), TICK_KEYS_MAX);
    let mut removed = 0;
    for (index, _) in &due {
        tx.delete(index);
        if remove(tx, &index[9..]) {
            removed += 1;
        }
    }
    Reply::Integer(removed)
}

/// Redis's error for an expiry time out of range, naming the command.
fn invalid_expire_time(command: &str) -> Reply {
    Reply::error(format!("ERR invalid expire time in '{command}' command"))
}

/// How an expiry argument is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryUnit {
    /// `EX`: seconds from now.
    Seconds,
    /// `PX`: milliseconds from now.
    Millis,
    /// `EXAT`: a Unix time in seconds.
    UnixSeconds,
    /// `PXAT`: a Unix time in milliseconds.
    UnixMillis,
}

impl ExpiryUnit {
    /// The option's name, upper-case (`EX`, `PXAT`, ...), if `option` is one.
    pub fn parse(option: &[u8]) -> Option<Self> {
        match option.to_ascii_uppercase().as_slice() {
            b"EX" => Some(ExpiryUnit::Seconds),
            b"PX" => Some(ExpiryUnit::Millis),
            b"EXAT" => Some(ExpiryUnit::UnixSeconds),
            b"PXAT" => Some(ExpiryUnit::UnixMillis),
            _ => None,
        }
    }

    /// Whether the time is absolute (`EXAT`, `PXAT`).
    pub fn is_absolute(self) -> bool {
        matches!(self, ExpiryUnit::UnixSeconds | ExpiryUnit::UnixMillis)
    }
}

/// The absolute expiry time `SET`/`GETEX`-style options give, as Redis's
/// `getExpireMillisecondsOrReply` computes it: the argument must be an integer above zero, and
/// the result must not overflow.
pub fn option_expiry(command: &str, unit: ExpiryUnit, arg: &[u8], now: i64) -> Result<i64, Reply> {
    let n = parse_i64(arg).ok_or_else(Reply::not_an_integer)?;
    let seconds = matches!(unit, ExpiryUnit::Seconds | ExpiryUnit::UnixSeconds);
    if n <= 0 || (seconds && n > i64::MAX / 1000) {
        return Err(invalid_expire_time(command));
    }
    let ms = if seconds { n * 1000 } else { n };
    let at = if unit.is_absolute() { Some(ms) } else { ms.checked_add(now) };
    at.filter(|&at| at > 0).ok_or_else(|| invalid_expire_time(command))
}

/// `EXPIRE key seconds [NX|XX|GT|LT]` and its three relatives.
fn expire_generic(tx: &mut Tx, args: &[&[u8]], command: &str, unit: ExpiryUnit) -> Reply {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for option in &args[3..] {
        match option.to_ascii_uppercase().as_slice() {
            b"NX" => nx = true,
            b"XX" => xx = true,
            b"GT" => gt = true,
            b"LT" => lt = true,
            _ => return Reply::error(format!("ERR Unsupported option {}", String::from_utf8_lossy(option))),
        }
    }
    if nx && (xx || gt || lt) {
        return Reply::error("ERR NX and XX, GT or LT options at the same time are not compatible");
    }
    if gt && lt {
        return Reply::error("ERR GT and LT options at the same time are not compatible");
    }
    let Some(n) = parse_i64(args[2]) else { return Reply::not_an_integer() };
    let now = tx.time_ms();
    let seconds = matches!(unit, ExpiryUnit::Seconds | ExpiryUnit::UnixSeconds);
    let ms = if seconds {
        match n.checked_mul(1000) {
            Some(ms) => ms,
            None => return invalid_expire_time(command),
        }
    } else {
        n
    };
    let base = if unit.is_absolute() { 0 } else { now };
    let Some(at) = ms.checked_add(base) else { return invalid_expire_time(command) };
    let key = args[1];
    expire_if_due(tx, key);
    if !exists_raw(tx, key) {
        return Reply::Integer(0);
    }
    let current = expires_at(tx, key);
    let refused = (nx && current.is_some())
        || (xx && current.is_none())
        || (gt && current.is_none_or(|c| at <= c))
        || (lt && current.is_some_and(|c| at >= c));
    if refused {
        return Reply::Integer(0);
    }
    if at <= now {
        remove(tx, key);
    } else {
        set_expiry(tx, key, Some(at));
    }
    Reply::Integer(1)
}

/// `EXPIRE key seconds [NX|XX|GT|LT]`.
pub fn expire(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    expire_generic(tx, args, "expire", ExpiryUnit::Seconds)
}

/// `PEXPIRE key milliseconds [NX|XX|GT|LT]`.
pub fn pexpire(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    expire_generic(tx, args, "pexpire", ExpiryUnit::Millis)
}

/// `EXPIREAT key unix-seconds [NX|XX|GT|LT]`.
pub fn expireat(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    expire_generic(tx, args, "expireat", ExpiryUnit::UnixSeconds)
}

/// `PEXPIREAT key unix-milliseconds [NX|XX|GT|LT]`.
pub fn pexpireat(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    expire_generic(tx, args, "pexpireat", ExpiryUnit::UnixMillis)
}

/// What a TTL-style read reports.
#[derive(Clone, Copy)]
enum TtlOutput {
    /// Time left (`TTL`, `PTTL`).
    Left,
    /// The expiry time itself (`EXPIRETIME`, `PEXPIRETIME`).
    Absolute,
}

/// `-2` for a missing key, `-1` for one without expiry, else the time left or the expiry time,
/// in milliseconds or rounded to seconds (Redis's `(ms + 500) / 1000`).
fn ttl_generic(view: &View, key: &[u8], output: TtlOutput, millis: bool) -> Reply {
    if !is_live(view, key) {
        return Reply::Integer(-2);
    }
    let Some(at) = expires_at(view, key) else { return Reply::Integer(-1) };
    let ms = match output {
        TtlOutput::Left => (at - view.time_ms()).max(0),
        TtlOutput::Absolute => at,
    };
    // Redis computes `(ms + 500) / 1000` in C: wrapping, for an expiry at `i64::MAX`.
    Reply::Integer(if millis { ms } else { ms.wrapping_add(500) / 1000 })
}

/// `TTL key`.
pub fn ttl(view: &View, args: &[&[u8]]) -> Reply {
    ttl_generic(view, args[1], TtlOutput::Left, false)
}

/// `PTTL key`.
pub fn pttl(view: &View, args: &[&[u8]]) -> Reply {
    ttl_generic(view, args[1], TtlOutput::Left, true)
}

/// `EXPIRETIME key`.
pub fn expiretime(view: &View, args: &[&[u8]]) -> Reply {
    ttl_generic(view, args[1], TtlOutput::Absolute, false)
}

/// `PEXPIRETIME key`.
pub fn pexpiretime(view: &View, args: &[&[u8]]) -> Reply {
    ttl_generic(view, args[1], TtlOutput::Absolute, true)
}

/// `PERSIST key`: 1 if a live key lost its expiry.
pub fn persist(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    let key = args[1];
    expire_if_due(tx, key);
    if exists_raw(tx, key) && expires_at(tx, key).is_some() {
        set_expiry(tx, key, None);
        Reply::Integer(1)
    } else {
        Reply::Integer(0)
    }
}

/// Stores `value` at `key` expiring at `at` (removing the key at once if `at` is past).
pub fn store_expiring(tx: &mut Tx, key: &[u8], value: &[u8], at: i64) {
    if at <= tx.time_ms() {
        remove(tx, key);
    } else {
        overwrite(tx, key, value);
        set_expiry(tx, key, Some(at));
    }
}

/// `SETEX key seconds value` and `PSETEX key milliseconds value`.
fn setex_generic(tx: &mut Tx, args: &[&[u8]], command: &str, unit: ExpiryUnit) -> Reply {
    let at = match option_expiry(command, unit, args[2], tx.time_ms()) {
        Ok(at) => at,
        Err(reply) => return reply,
    };
    store_expiring(tx, args[1], args[3], at);
    Reply::ok()
}

/// `SETEX key seconds value`.
pub fn setex(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    setex_generic(tx, args, "setex", ExpiryUnit::Seconds)
}

/// `PSETEX key milliseconds value`.
pub fn psetex(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    setex_generic(tx, args, "psetex", ExpiryUnit::Millis)
}

/// `GETEX key [EX seconds | PX ms | EXAT unix-seconds | PXAT unix-ms | PERSIST]`.
pub fn getex(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    let mut expiry: Option<(ExpiryUnit, &[u8])> = None;
    let mut persist = false;
    let mut i = 2;
    while i < args.len() {
        let option = args[i];
        let next = args.get(i + 1).copied();
        match (ExpiryUnit::parse(option), next) {
            (Some(unit), Some(arg)) if !persist && expiry.is_none_or(|(u, _)| u == unit) => {
                expiry = Some((unit, arg));
                i += 1;
            }
            _ if option.eq_ignore_ascii_case(b"PERSIST") && expiry.is_none() => persist = true,
            _ => return Reply::syntax_error(),
        }
        i += 1;
    }
    let key = args[1];
    expire_if_due(tx, key);
    let value = match string_value(tx, key) {
        Ok(Some(value)) => value,
        Ok(None) => return Reply::Null,
        Err(reply) => return reply,
    };
    if let Some((unit, arg)) = expiry {
        match option_expiry("getex", unit, arg, tx.time_ms()) {
            Ok(at) if at <= tx.time_ms() => {
                remove(tx, key);
            }
            Ok(at) => set_expiry(tx, key, Some(at)),
            Err(reply) => return reply,
        }
    } else if persist {
        set_expiry(tx, key, None);
    }
    Reply::Bulk(value)
}
