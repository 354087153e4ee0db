//! Commands over the whole keyspace (`SCAN`, `KEYS`, `RANDOMKEY`, `FLUSHDB`, ...) and over keys
//! as such (`TYPE`, `RENAME`, `COPY`, `TOUCH`, ...), with the index that makes `SCAN` cursors
//! stable.
//!
//! **Why an index by hash.** A `SCAN` cursor is an integer (clients parse it as one), and it must
//! stay valid across writes and leader changes: a key present for the whole iteration is returned
//! at least once, whatever else is written meanwhile (Redis's guarantee). Key order cannot be
//! packed into 64 bits, so every key also has an entry `h` + hash(key) (`u64` big-endian) + key,
//! and a cursor is the hash to resume from. The cursor is a pure function of the state and the
//! keys, the same on every replica, and keys added or removed meanwhile move nothing else.
//!
//! **After a module switch** the index may be missing (a state written by a module that kept
//! none): the migration hook marks the keyspace as unindexed, the housekeeping tick indexes
//! [`INDEX_KEYS_PER_TICK`] keys per tick in key order, and `SCAN` answers an error until it is
//! done.

use crate::collection;
use crate::expiry::{self, exists_raw, expires_at, is_live, remove, set_expiry};
use crate::{DATA_PREFIX, DBSIZE_KEY, data_key, key_created, key_removed, parse_i64, read_dbsize};
use fsm_sdk::{Reply, Tx, View, glob::glob_match};

const INDEX_PREFIX: u8 = b'h';
/// Present while the keyspace index is being built: the data key to resume from.
const UNINDEXED_FROM: &[u8] = b"m:unindexed_from";
/// Keys one tick indexes while the index is being built.
pub const INDEX_KEYS_PER_TICK: u32 = 2048;
/// Keys one `KEYS` host scan returns at a time.
const SCAN_CHUNK: u32 = 1024;
/// More `m:` entries than the module will ever have (it has four kinds).
const MODULE_WIDE_ENTRIES_MAX: u32 = 256;
/// `SCAN`'s default `COUNT`, as Redis's.
const SCAN_COUNT_DEFAULT: u64 = 10;

/// A 64-bit hash of a key (FNV-1a, then MurmurHash3's finaliser to spread it): the key's place in
/// `SCAN` order.
pub fn key_hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn index_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 9);
    k.push(INDEX_PREFIX);
    k.extend_from_slice(&key_hash(key).to_be_bytes());
    k.extend_from_slice(key);
    k
}

fn index_start(hash: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(INDEX_PREFIX);
    k.extend_from_slice(&hash.to_be_bytes());
    k
}

/// Adds `key` to the index (a key was created).
pub fn index_add(tx: &mut Tx, key: &[u8]) {
    tx.put(&index_key(key), &[]);
}

/// Removes `key` from the index (a key was removed).
pub fn index_remove(tx: &mut Tx, key: &[u8]) {
    tx.delete(&index_key(key));
}

/// The migration hook's part: a state written by another module may have keys without index
/// entries, so index them all again, a tick at a time (re-adding an entry changes nothing).
pub fn reindex_after_switch(tx: &mut Tx) {
    if read_dbsize(tx) > 0 {
        tx.put(UNINDEXED_FROM, &[DATA_PREFIX]);
    }
}

/// Whether the index is still being built.
pub fn index_building(view: &View) -> bool {
    view.exists(UNINDEXED_FROM)
}

/// Indexes the next [`INDEX_KEYS_PER_TICK`] keys while the index is being built; the number
/// indexed.
pub fn index_step(tx: &mut Tx) -> i64 {
    let Some(from) = tx.get(UNINDEXED_FROM) else { return 0 };
    // String keys (`k` + key) and collection keys (`t` + key); the meta keys between them are
    // skipped.
    let keys = tx.scan(&from, Some(b"u"), INDEX_KEYS_PER_TICK);
    for (stored, _) in &keys {
        if matches!(stored.first(), Some(b'k' | b't')) {
            index_add(tx, &stored[1..]);
        }
    }
    match keys.last() {
        Some((last, _)) if keys.len() == INDEX_KEYS_PER_TICK as usize => {
            let mut next = last.clone();
            next.push(0);
            tx.put(UNINDEXED_FROM, &next);
        }
        _ => {
            tx.delete(UNINDEXED_FROM);
        }
    }
    keys.len() as i64
}

/// Live user keys from `start` (a data key), in key order, at most `limit` store entries looked
/// at; returns them and where to continue (`None` at the end).
fn data_keys(view: &View, start: &[u8], limit: u32) -> (Vec<Vec<u8>>, Option<Vec<u8>>) {
    let entries = view.scan(start, Some(&[DATA_PREFIX + 1]), limit);
    let next = (entries.len() == limit as usize).then(|| {
        let mut next = entries.last().map(|(k, _)| k.clone()).unwrap_or_default();
        next.push(0);
        next
    });
    let now = view.time_ms();
    let keys = entries
        .into_iter()
        .map(|(k, _)| k[1..].to_vec())
        .filter(|k| expires_at(view, k).is_none_or(|at| now <= at))
        .collect();
    (keys, next)
}

/// What `TYPE` answers for `key`: `string`, a collection's type, or `none`.
pub fn type_name(view: &View, key: &[u8]) -> &'static str {
    if !is_live(view, key) {
        "none"
    } else if view.exists(&data_key(key)) {
        "string"
    } else {
        collection::header(view, key).map_or("none", |h| h.kind.name())
    }
}

/// `TYPE key`.
pub fn type_(view: &View, args: &[&[u8]]) -> Reply {
    Reply::Simple(type_name(view, args[1]).to_owned())
}

/// `TOUCH key [key ...]`: how many exist.
pub fn touch(view: &View, args: &[&[u8]]) -> Reply {
    Reply::Integer(args[1..].iter().filter(|k| is_live(view, k)).count() as i64)
}

/// `KEYS pattern`: every live key matching, in key order. One command, one fuel budget: on a
/// large keyspace it runs out of fuel (an error) rather than stall the node; `SCAN` is the way.
pub fn keys(view: &View, args: &[&[u8]]) -> Reply {
    let pattern = args[1];
    let mut out = Vec::new();
    let mut start = vec![DATA_PREFIX];
    loop {
        let (keys, next) = data_keys(view, &start, SCAN_CHUNK);
        out.extend(keys.into_iter().filter(|k| glob_match(pattern, k)).map(Reply::Bulk));
        match next {
            Some(next) => start = next,
            None => break,
        }
    }
    let mut start = collection::headers_start();
    loop {
        let (keys, next) = collection::header_keys(view, &start, SCAN_CHUNK);
        out.extend(keys.into_iter().filter(|k| is_live(view, k) && glob_match(pattern, k)).map(Reply::Bulk));
        match next {
            Some(next) => start = next,
            None => return Reply::Array(out),
        }
    }
}

/// `SCAN`-style options: `MATCH`, `COUNT`, and the flags a command allows (`TYPE t` for `SCAN`,
/// `NOVALUES` for `HSCAN`).
pub struct ScanOptions<'a> {
    /// The cursor: the hash to resume from.
    pub cursor: u64,
    /// `MATCH pattern`.
    pub pattern: Option<&'a [u8]>,
    /// `COUNT n`: entries looked at per call.
    pub count: u64,
    /// `TYPE t`, lower-case.
    pub type_filter: Option<Vec<u8>>,
    /// `NOVALUES`.
    pub no_values: bool,
}

/// Parses `cursor [MATCH p] [COUNT n] [TYPE t | NOVALUES]` (from `args[at]` on) with Redis's
/// errors.
pub fn parse_scan_options<'a>(args: &[&'a [u8]], at: usize, allow_type: bool) -> Result<ScanOptions<'a>, Reply> {
    let cursor = std::str::from_utf8(args[at])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| Reply::error("ERR invalid cursor"))?;
    let mut options =
        ScanOptions { cursor, pattern: None, count: SCAN_COUNT_DEFAULT, type_filter: None, no_values: false };
    let mut i = at + 1;
    while i < args.len() {
        let option = args[i].to_ascii_uppercase();
        if !allow_type && option == b"NOVALUES" {
            options.no_values = true;
            i += 1;
            continue;
        }
        let Some(&value) = args.get(i + 1) else { return Err(Reply::syntax_error()) };
        match option.as_slice() {
            b"MATCH" => options.pattern = Some(value),
            b"COUNT" => match parse_i64(value) {
                Some(n) if n >= 1 => options.count = n as u64,
                Some(_) => return Err(Reply::syntax_error()),
                None => return Err(Reply::not_an_integer()),
            },
            b"TYPE" if allow_type => options.type_filter = Some(value.to_ascii_lowercase()),
            _ => return Err(Reply::syntax_error()),
        }
        i += 2;
    }
    Ok(options)
}

/// A store entry: key and value.
pub type StoreEntry = (Vec<u8>, Vec<u8>);

/// The first byte string after every string that starts with `prefix` (`None`: there is none).
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut next = prefix.to_vec();
    while let Some(last) = next.pop() {
        if last < u8::MAX {
            next.push(last + 1);
            return Some(next);
        }
    }
    None
}

/// One page of a hash-ordered range: store entries `prefix + hash (u64 BE) + name` from hash
/// `cursor` on, `count` of them plus any that share the last one's hash (so a cursor never splits
/// a hash), and the cursor to continue from (0 at the end).
pub fn hash_page(view: &View, prefix: &[u8], cursor: u64, count: u64) -> (Vec<StoreEntry>, u64) {
    let mut start = prefix.to_vec();
    start.extend_from_slice(&cursor.to_be_bytes());
    let end = successor(prefix);
    let end = end.as_deref();
    let at = prefix.len();
    let hash_of = |k: &[u8]| k.get(at..at + 8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map_or(0, u64::from_be_bytes);
    let limit = count.min(u64::from(u32::MAX - 1)) as u32;
    let mut entries = view.scan(&start, end, limit + 1);
    if entries.len() <= limit as usize {
        return (entries, 0);
    }
    let boundary = hash_of(&entries[limit as usize].0);
    let last = hash_of(&entries[limit as usize - 1].0);
    if boundary != last {
        entries.truncate(limit as usize);
        return (entries, boundary);
    }
    // A run of equal hashes straddles the limit: take the whole run.
    entries.truncate(limit as usize);
    let mut from = entries.last().map(|(k, _)| k.clone()).unwrap_or_default();
    loop {
        from.push(0);
        let more = view.scan(&from, end, SCAN_CHUNK);
        let full = more.len() == SCAN_CHUNK as usize;
        for (k, v) in more {
            if hash_of(&k) != last {
                return (entries, hash_of(&k));
            }
            from = k.clone();
            entries.push((k, v));
        }
        if !full {
            return (entries, 0);
        }
    }
}

/// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`: the cursor is a position in hash
/// order (see the module docs); `COUNT` index entries are looked at per call, then `MATCH` and
/// `TYPE` filter them, as in Redis: a call may return no keys and a non-zero cursor.
pub fn scan(view: &View, args: &[&[u8]]) -> Reply {
    let options = match parse_scan_options(args, 1, true) {
        Ok(options) => options,
        Err(reply) => return reply,
    };
    if index_building(view) {
        return Reply::error(
            "ERR SCAN is unavailable while the keyspace index is built after a module switch: retry shortly",
        );
    }
    let (entries, next_cursor) = hash_page(view, &[INDEX_PREFIX], options.cursor, options.count);
    let keys = entries
        .into_iter()
        .map(|(k, _)| k[9..].to_vec())
        .filter(|k| is_live(view, k))
        .filter(|k| options.pattern.is_none_or(|p| glob_match(p, k)))
        .filter(|k| options.type_filter.as_deref().is_none_or(|t| type_name(view, k).as_bytes() == t))
        .map(Reply::Bulk)
        .collect();
    Reply::Array(vec![Reply::Bulk(next_cursor.to_string().into_bytes()), Reply::Array(keys)])
}

/// `RANDOMKEY`: a live key, picked by the command's time from the hash index (so the same on
/// every replica at the same time), or null when there is none.
pub fn randomkey(view: &View, _args: &[&[u8]]) -> Reply {
    let start = key_hash(&view.time_ms().to_le_bytes());
    for (from, end) in [(index_start(start), vec![INDEX_PREFIX + 1]), (index_start(0), index_start(start))] {
        let mut from = from;
        loop {
            let entries = view.scan(&from, Some(&end), 64);
            for (k, _) in &entries {
                if is_live(view, &k[9..]) {
                    return Reply::Bulk(k[9..].to_vec());
                }
            }
            match entries.last() {
                Some((last, _)) if entries.len() == 64 => {
                    from = last.clone();
                    from.push(0);
                }
                _ => break,
            }
        }
    }
    Reply::Null
}

/// Copies `source`'s value or collection and expiry to `destination` (which must differ),
/// replacing whatever it held.
fn copy_key(tx: &mut Tx, source: &[u8], destination: &[u8]) {
    let at = expires_at(tx, source);
    remove(tx, destination);
    if let Some(value) = tx.get(&data_key(source)) {
        tx.put(&data_key(destination), &value);
    } else if let Some(header) = collection::header(tx, source) {
        collection::copy_collection(tx, destination, &header);
    }
    key_created(tx, destination);
    set_expiry(tx, destination, at);
}

/// Moves `source` to `destination` (which must differ), replacing whatever it held. A
/// collection's elements stay where they are: only its header moves.
fn move_key(tx: &mut Tx, source: &[u8], destination: &[u8]) {
    let at = expires_at(tx, source);
    remove(tx, destination);
    if let Some(value) = tx.get(&data_key(source)) {
        tx.put(&data_key(destination), &value);
        tx.delete(&data_key(source));
    } else if let Some(header) = collection::header(tx, source) {
        collection::move_collection(tx, source, destination, &header);
    }
    set_expiry(tx, source, None);
    key_removed(tx, source);
    key_created(tx, destination);
    set_expiry(tx, destination, at);
}

/// `RENAME key newkey` and `RENAMENX key newkey`.
fn rename_generic(tx: &mut Tx, args: &[&[u8]], nx: bool) -> Reply {
    let (source, destination) = (args[1], args[2]);
    expiry::expire_if_due(tx, source);
    expiry::expire_if_due(tx, destination);
    if !exists_raw(tx, source) {
        return Reply::error("ERR no such key");
    }
    if source == destination {
        return if nx { Reply::Integer(0) } else { Reply::ok() };
    }
    if nx && exists_raw(tx, destination) {
        return Reply::Integer(0);
    }
    move_key(tx, source, destination);
    if nx { Reply::Integer(1) } else { Reply::ok() }
}

/// `RENAME key newkey`: the value and its expiry move.
pub fn rename(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    rename_generic(tx, args, false)
}

/// `RENAMENX key newkey`: as `RENAME` unless `newkey` exists.
pub fn renamenx(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    rename_generic(tx, args, true)
}

/// `COPY source destination [DB 0] [REPLACE]`: 1 if copied (value and expiry). A collection is
/// copied element by element, within one command's fuel budget.
pub fn copy(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    let (source, destination) = (args[1], args[2]);
    let mut replace = false;
    let mut i = 3;
    while i < args.len() {
        match args[i].to_ascii_uppercase().as_slice() {
            b"REPLACE" => replace = true,
            b"DB" if i + 1 < args.len() => {
                match parse_i64(args[i + 1]) {
                    Some(0) => {}
                    Some(_) => return Reply::error("ERR DB index is out of range"),
                    None => return Reply::not_an_integer(),
                }
                i += 1;
            }
            _ => return Reply::syntax_error(),
        }
        i += 1;
    }
    if source == destination {
        return Reply::error("ERR source and destination objects are the same");
    }
    expiry::expire_if_due(tx, source);
    expiry::expire_if_due(tx, destination);
    if !exists_raw(tx, source) {
        return Reply::Integer(0);
    }
    if !replace && exists_raw(tx, destination) {
        return Reply::Integer(0);
    }
    copy_key(tx, source, destination);
    Reply::Integer(1)
}

/// `FLUSHDB [ASYNC|SYNC]` and `FLUSHALL [ASYNC|SYNC]`: removes every key, in this one entry and
/// in constant work whatever the keyspace's size (the host's `clear`: no key is visited).
///
/// The module-wide entries under `m:` survive, except the two that describe the keys (their
/// count, an index rebuild in progress): collection ids are never reused, so a `WATCH` token
/// taken on a collection before the flush never matches one created after it, and fsm-kv-v2's
/// schema stamp stays.
pub fn flushdb(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    if let Some(mode) = args.get(1)
        && (args.len() > 2 || !(mode.eq_ignore_ascii_case(b"ASYNC") || mode.eq_ignore_ascii_case(b"SYNC")))
    {
        return Reply::syntax_error();
    }
    let module_wide = tx.scan(b"m:", Some(b"m;"), MODULE_WIDE_ENTRIES_MAX);
    tx.clear();
    for (key, value) in module_wide {
        if key != DBSIZE_KEY && key != UNINDEXED_FROM {
            tx.put(&key, &value);
        }
    }
    Reply::ok()
}
