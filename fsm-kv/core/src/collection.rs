//! Keys that hold collections (hashes today), stored so that they stay scalable: a collection is
//! a small header plus one store entry per element, never one value rewritten per command.
//!
//! Layout:
//! * `t` + key → the header: type, id, element count, version (see [`Header`]);
//! * `f` + id (`u64` big-endian) + hash(element) (`u64` big-endian) + element → the element's
//!   value. Elements are ordered by their hash inside a collection, so `HSCAN` cursors are stable
//!   positions, as `SCAN`'s are (see [`crate::keyspace`]);
//! * `g` + id → the type: a collection removed but not yet emptied. Removing a key with a million
//!   elements takes one write (the header goes, the id goes to `g`), and the housekeeping tick
//!   deletes [`GARBAGE_ELEMENTS_PER_TICK`] elements per tick. Ids are never reused
//!   (`m:next_id`), so leftovers never show through a new key.
//!
//! A key is either a string (`k` + key) or a collection (`t` + key), never both.

use crate::expiry::{self, expire_if_due, is_live};
use crate::keyspace::key_hash;
use crate::{key_created, key_removed, wrong_type};
use fsm_sdk::{Reply, Tx, View};

const HEADER_PREFIX: u8 = b't';
const ELEMENT_PREFIX: u8 = b'f';
const GARBAGE_PREFIX: u8 = b'g';
const ORDER_PREFIX: u8 = b'z';
const NEXT_ID: &[u8] = b"m:next_id";
/// Elements of removed collections one tick deletes.
pub const GARBAGE_ELEMENTS_PER_TICK: u32 = 1024;

/// A collection type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A hash: field → value.
    Hash = 1,
    /// A set: member → empty.
    Set = 2,
    /// A list: position → element.
    List = 3,
    /// A sorted set: member → score, and an order entry per member (see [`crate::zset`]).
    ZSet = 4,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Kind::Hash),
            2 => Some(Kind::Set),
            3 => Some(Kind::List),
            4 => Some(Kind::ZSet),
            _ => None,
        }
    }

    /// The name `TYPE` answers.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Hash => "hash",
            Kind::Set => "set",
            Kind::List => "list",
            Kind::ZSet => "zset",
        }
    }
}

/// The collection of `kind` at `key`: `Ok(None)` when absent or expired, `WRONGTYPE` when the key
/// holds something else. In a write, call [`expire_if_due`] first.
pub fn find(view: &View, key: &[u8], kind: Kind) -> Result<Option<Header>, Reply> {
    if !is_live(view, key) {
        return Ok(None);
    }
    match header(view, key) {
        Some(header) if header.kind == kind => Ok(Some(header)),
        _ => Err(wrong_type()),
    }
}

/// The collection of `kind` at `key` for a write: the existing one, or a new empty one
/// (`Ok((header, true))`, stored by [`save`]).
pub fn find_or_create(tx: &mut Tx, key: &[u8], kind: Kind) -> Result<(Header, bool), Reply> {
    expire_if_due(tx, key);
    match find(tx, key, kind)? {
        Some(header) => Ok((header, false)),
        None => Ok((new_header(tx, kind), true)),
    }
}

/// Stores the header after a change, or removes the key when no element is left.
pub fn save(tx: &mut Tx, key: &[u8], mut header: Header, created: bool) {
    if header.len == 0 {
        if !created {
            // Every element is gone: so is the key (nothing left for the tick).
            drop_header(tx, key);
            expiry::set_expiry(tx, key, None);
            key_removed(tx, key);
        }
        return;
    }
    header.version += 1;
    put_header(tx, key, &header);
    if created {
        key_created(tx, key);
    }
}

/// Up to `limit` store entries with `from <= key < end`, in key order, read a page at a time.
/// One command's fuel bounds how many a command can read.
pub fn scan_range(view: &View, from: &[u8], end: &[u8], limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    scan_pages(view, from, end, limit, false)
}

/// As [`scan_range`], in descending key order: the `limit` highest entries of `[from, end)`.
pub fn scan_range_rev(view: &View, from: &[u8], end: &[u8], limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    scan_pages(view, from, end, limit, true)
}

fn scan_pages(view: &View, from: &[u8], end: &[u8], limit: usize, reverse: bool) -> Vec<(Vec<u8>, Vec<u8>)> {
    const PAGE: usize = 512;
    let mut out = Vec::new();
    let (mut from, mut end) = (from.to_vec(), end.to_vec());
    while out.len() < limit {
        let want = (limit - out.len()).min(PAGE);
        let entries = if reverse {
            view.scan_rev(&from, Some(&end), want as u32)
        } else {
            view.scan(&from, Some(&end), want as u32)
        };
        let full = entries.len() == want;
        // The next page starts past the last key returned: above it going up (the bound is
        // inclusive), at it going down (the bound is exclusive).
        if let Some((last, _)) = entries.last() {
            if reverse {
                end = last.clone();
            } else {
                from = last.clone();
                from.push(0);
            }
        }
        out.extend(entries);
        if !full {
            break;
        }
    }
    out
}

/// Random picks from collection `id`, reading only what they return: each run of picks starts
/// at the first element at or after a pseudo-random point in hash order (wrapping around at the
/// end). With `distinct`, up to `count` different elements, consecutive in hash order from one
/// point: a pseudo-random subset, since hash order is unrelated to the elements. Otherwise
/// `count` independent picks, repeats allowed. The points come from the command's time and
/// `key`, so every replica applying the entry picks the same.
pub fn sample(view: &View, key: &[u8], id: u64, count: usize, distinct: bool) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut next = random(view, key);
    if distinct {
        return elements_from(view, id, next(), count);
    }
    (0..count).flat_map(|_| elements_from(view, id, next(), 1)).collect()
}

/// A deterministic pseudo-random sequence seeded by the command's time and `key`: the same on
/// every replica applying the same entry (and on any node reading at the same millisecond).
pub fn random(view: &View, key: &[u8]) -> impl FnMut() -> u64 + use<> {
    let mut seed = key_hash(&[&view.time_ms().to_le_bytes()[..], key].concat()) | 1;
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

/// Up to `count` `(element, value)`s of collection `id` in hash order from the hash `point`,
/// wrapping around to the lowest hash (never past `point` again).
fn elements_from(view: &View, id: u64, point: u64, count: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut from = elements_prefix(id);
    from.extend_from_slice(&point.to_be_bytes());
    let mut found = scan_range(view, &from, &elements_end(id), count);
    if found.len() < count {
        found.extend(scan_range(view, &elements_prefix(id), &from, count - found.len()));
    }
    found.into_iter().map(|(k, v)| (element_of(&k).to_vec(), v)).collect()
}

/// Every `(element, value)` of collection `id`, in hash order.
pub fn elements(view: &View, id: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    scan_range(view, &elements_prefix(id), &elements_end(id), usize::MAX)
        .into_iter()
        .map(|(k, v)| (element_of(&k).to_vec(), v))
        .collect()
}

/// A collection's header, at `t` + key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What it holds.
    pub kind: Kind,
    /// Its elements live under `f` + id.
    pub id: u64,
    /// How many elements it holds (never 0: an empty collection is removed).
    pub len: u64,
    /// Bumped by every change, so `WATCH` sees a change even when the count does not move.
    pub version: u64,
    /// A list's first position (its elements are at `head .. head + len`); 0 for the others.
    pub head: i64,
}

impl Header {
    fn encode(&self) -> [u8; 33] {
        let mut out = [0u8; 33];
        out[0] = self.kind as u8;
        out[1..9].copy_from_slice(&self.id.to_le_bytes());
        out[9..17].copy_from_slice(&self.len.to_le_bytes());
        out[17..25].copy_from_slice(&self.version.to_le_bytes());
        out[25..33].copy_from_slice(&self.head.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let word = |at: usize| bytes.get(at..at + 8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_le_bytes);
        Some(Header {
            kind: Kind::from_byte(*bytes.first()?)?,
            id: word(1)?,
            len: word(9)?,
            version: word(17)?,
            head: word(25)? as i64,
        })
    }
}

fn header_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(HEADER_PREFIX);
    k.extend_from_slice(key);
    k
}

/// The header of `key`, if it holds a collection (live or not: callers check expiry).
pub fn header(view: &View, key: &[u8]) -> Option<Header> {
    view.get(&header_key(key)).and_then(|b| Header::decode(&b))
}

/// Stores `key`'s header.
pub fn put_header(tx: &mut Tx, key: &[u8], header: &Header) {
    tx.put(&header_key(key), &header.encode());
}

/// A new, empty collection header for `key` with a fresh id (the caller stores it with its first
/// element).
pub fn new_header(tx: &mut Tx, kind: Kind) -> Header {
    let id = tx.get(NEXT_ID).and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok()).map_or(1, u64::from_le_bytes);
    tx.put(NEXT_ID, &(id + 1).to_le_bytes());
    Header { kind, id, len: 0, version: 0, head: 0 }
}

/// The store key prefix of collection `id`'s elements.
pub fn elements_prefix(id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(ELEMENT_PREFIX);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The first key past collection `id`'s elements.
pub fn elements_end(id: u64) -> Vec<u8> {
    match id.checked_add(1) {
        Some(next) => elements_prefix(next),
        None => vec![ELEMENT_PREFIX + 1],
    }
}

/// Where collection `id`'s order entries start (`z` + id: a sorted set's members by score).
pub fn order_prefix(id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(ORDER_PREFIX);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The first key past collection `id`'s order entries.
pub fn order_end(id: u64) -> Vec<u8> {
    match id.checked_add(1) {
        Some(next) => order_prefix(next),
        None => vec![ORDER_PREFIX + 1],
    }
}

/// The store key of `element` in collection `id`.
pub fn element_key(id: u64, element: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(element.len() + 17);
    k.push(ELEMENT_PREFIX);
    k.extend_from_slice(&id.to_be_bytes());
    k.extend_from_slice(&key_hash(element).to_be_bytes());
    k.extend_from_slice(element);
    k
}

/// The element an element key names (what follows the id and the hash).
pub fn element_of(store_key: &[u8]) -> &[u8] {
    store_key.get(17..).unwrap_or_default()
}

/// Removes `key`'s collection (if it holds one): the header goes now, the elements with the
/// tick. Returns whether there was one.
pub fn remove_collection(tx: &mut Tx, key: &[u8]) -> bool {
    let Some(header) = header(tx, key) else { return false };
    tx.delete(&header_key(key));
    let mut garbage = vec![GARBAGE_PREFIX];
    garbage.extend_from_slice(&header.id.to_be_bytes());
    tx.put(&garbage, &[header.kind as u8]);
    true
}

/// Removes `key`'s header only: for a collection whose last element was just removed.
pub fn drop_header(tx: &mut Tx, key: &[u8]) {
    tx.delete(&header_key(key));
}

/// Moves `source`'s header to `destination` (whose own value the caller removed first): the
/// elements stay where they are, under the id.
pub fn move_collection(tx: &mut Tx, source: &[u8], destination: &[u8], header: &Header) {
    tx.delete(&header_key(source));
    put_header(tx, destination, header);
}

/// Copies collection `header` to `destination` (removed first by the caller) under a new id,
/// element by element: one command's fuel bounds how large a collection `COPY` can copy.
pub fn copy_collection(tx: &mut Tx, destination: &[u8], header: &Header) {
    let mut copy = new_header(tx, header.kind);
    copy.len = header.len;
    copy.head = header.head;
    for (start, end, copied_prefix) in [
        (elements_prefix(header.id), elements_end(header.id), elements_prefix(copy.id)),
        (order_prefix(header.id), order_end(header.id), order_prefix(copy.id)),
    ] {
        let mut from = start;
        loop {
            let entries = tx.scan(&from, Some(&end), 256);
            for (k, v) in &entries {
                // What follows the id (hash and element, a list position, a score) is kept as is.
                let mut copied = copied_prefix.clone();
                copied.extend_from_slice(&k[9..]);
                tx.put(&copied, v);
            }
            match entries.last() {
                Some((last, _)) if entries.len() == 256 => {
                    from = last.clone();
                    from.push(0);
                }
                _ => break,
            }
        }
    }
    put_header(tx, destination, &copy);
}

/// Whether removed collections wait to be emptied.
pub fn garbage_due(view: &View) -> bool {
    !view.scan(&[GARBAGE_PREFIX], Some(&[GARBAGE_PREFIX + 1]), 1).is_empty()
}

/// Deletes up to [`GARBAGE_ELEMENTS_PER_TICK`] elements of removed collections; how many.
pub fn collect_garbage(tx: &mut Tx) -> i64 {
    let mut budget = GARBAGE_ELEMENTS_PER_TICK;
    let mut deleted = 0;
    while budget > 0 {
        let Some((garbage, _)) = tx.scan(&[GARBAGE_PREFIX], Some(&[GARBAGE_PREFIX + 1]), 1).pop() else { break };
        let Some(id) = garbage.get(1..9).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_be_bytes) else {
            tx.delete(&garbage);
            continue;
        };
        let mut elements = tx.scan(&elements_prefix(id), Some(&elements_end(id)), budget);
        if (elements.len() as u32) < budget {
            // A sorted set's order entries go too.
            elements.extend(tx.scan(&order_prefix(id), Some(&order_end(id)), budget - elements.len() as u32));
        }
        for (k, _) in &elements {
            tx.delete(k);
        }
        deleted += elements.len() as i64;
        if (elements.len() as u32) < budget {
            tx.delete(&garbage);
        }
        budget -= (elements.len() as u32).min(budget);
        if elements.is_empty() {
            budget = budget.saturating_sub(1);
        }
    }
    deleted
}

/// The `StateMachine` hooks every fsm-kv module shares: housekeeping ([`crate::tick_due`],
/// [`crate::tick`]) and `WATCH` tokens ([`crate::watch_token`]). Use it inside the module's
/// `impl StateMachine`.
#[macro_export]
macro_rules! kv_hooks {
    () => {
        fn tick_due(view: &fsm_sdk::View) -> bool {
            $crate::tick_due(view)
        }

        fn tick(tx: &mut fsm_sdk::Tx) -> fsm_sdk::Reply {
            $crate::tick(tx)
        }

        fn watch_token(view: &fsm_sdk::View, key: &[u8]) -> Option<Vec<u8>> {
            Some($crate::watch_token(view, key))
        }
    };
}

/// `HSCAN`, `SSCAN` and `ZSCAN`: `key cursor [MATCH pattern] [COUNT count]` over the collection
/// of `kind` at `args[1]`, in the elements' hash order (cursors as stable as `SCAN`'s). Each
/// matching element goes into the reply through `render` (the element, then its value if the
/// command shows it). `NOVALUES` is accepted when `allow_no_values` (`HSCAN`).
pub fn scan_elements(
    view: &View,
    args: &[&[u8]],
    kind: Kind,
    allow_no_values: bool,
    render: impl Fn(&[u8], &[u8], bool, &mut Vec<Reply>),
) -> Reply {
    let options = match crate::keyspace::parse_scan_options(args, 2, false) {
        Ok(options) if allow_no_values || !options.no_values => options,
        Ok(_) => return Reply::syntax_error(),
        Err(reply) => return reply,
    };
    let (entries, next) = match find(view, args[1], kind) {
        Ok(Some(h)) => crate::keyspace::hash_page(view, &elements_prefix(h.id), options.cursor, options.count),
        Ok(None) => (Vec::new(), 0),
        Err(reply) => return reply,
    };
    let mut items = Vec::new();
    for (k, v) in &entries {
        let element = element_of(k);
        if options.pattern.is_none_or(|p| fsm_sdk::glob::glob_match(p, element)) {
            render(element, v, !options.no_values, &mut items);
        }
    }
    Reply::Array(vec![Reply::Bulk(next.to_string().into_bytes()), Reply::Array(items)])
}

/// Collection keys from `start` (a header key), in key order, at most `limit` looked at; with
/// where to continue.
pub fn header_keys(view: &View, start: &[u8], limit: u32) -> (Vec<Vec<u8>>, Option<Vec<u8>>) {
    let entries = view.scan(start, Some(&[HEADER_PREFIX + 1]), limit);
    let next = (entries.len() == limit as usize).then(|| {
        let mut next = entries.last().map(|(k, _)| k.clone()).unwrap_or_default();
        next.push(0);
        next
    });
    (entries.into_iter().map(|(k, _)| k[1..].to_vec()).collect(), next)
}

/// The first header key (where a walk over collection keys starts).
pub fn headers_start() -> Vec<u8> {
    vec![HEADER_PREFIX]
}
