//! Lists: `LPUSH`, `RPOP`, `LRANGE`, `LMOVE` and the rest, with Redis's replies and errors. A
//! list is a collection (see [`crate::collection`]) whose elements are keyed by position: element
//! `i` is at `f` + id + (head + i), so pushes and pops at either end, `LINDEX`, `LSET` and
//! `LRANGE` cost one store entry per element touched. `LREM` and `LINSERT` rewrite the list, as
//! they are linear in Redis too.

use crate::collection::{self, Header, Kind, elements_end, elements_prefix};
use crate::expiry::expire_if_due;
use crate::parse_i64;
use fsm_sdk::{Arity, Command, KeySpec, Reply, Tx, View};

/// The list commands.
pub const LISTS: [Command; 16] = [
    Command::write("lpush", Arity::AtLeast(3), KeySpec::single(), lpush),
    Command::write("rpush", Arity::AtLeast(3), KeySpec::single(), rpush),
    Command::write("lpushx", Arity::AtLeast(3), KeySpec::single(), lpushx),
    Command::write("rpushx", Arity::AtLeast(3), KeySpec::single(), rpushx),
    Command::write("lpop", Arity::AtLeast(2), KeySpec::single(), lpop),
    Command::write("rpop", Arity::AtLeast(2), KeySpec::single(), rpop),
    Command::read("llen", Arity::Exact(2), KeySpec::single(), llen),
    Command::read("lrange", Arity::Exact(4), KeySpec::single(), lrange),
    Command::read("lindex", Arity::Exact(3), KeySpec::single(), lindex),
    Command::write("lset", Arity::Exact(4), KeySpec::single(), lset),
    Command::write("lrem", Arity::Exact(4), KeySpec::single(), lrem),
    Command::write("ltrim", Arity::Exact(4), KeySpec::single(), ltrim),
    Command::write("linsert", Arity::Exact(5), KeySpec::single(), linsert),
    Command::read("lpos", Arity::AtLeast(3), KeySpec::single(), lpos),
    Command::write("lmove", Arity::Exact(5), KeySpec { first: 1, last: 2, step: 1 }, lmove),
    Command::write("rpoplpush", Arity::Exact(3), KeySpec { first: 1, last: 2, step: 1 }, rpoplpush),
];

/// The store key of position `pos` in list `id`: positions are signed, so they are stored with
/// the sign bit flipped, big-endian, to sort in order.
fn position_key(id: u64, pos: i64) -> Vec<u8> {
    let mut k = elements_prefix(id);
    k.extend_from_slice(&((pos as u64) ^ (1 << 63)).to_be_bytes());
    k
}

fn find(view: &View, key: &[u8]) -> Result<Option<Header>, Reply> {
    collection::find(view, key, Kind::List)
}

/// Redis's `start`/`stop` (negative from the end) as a range of indexes into a list of `len`,
/// or `None` when it is empty.
fn range(start: i64, stop: i64, len: i64) -> Option<(i64, i64)> {
    let start = if start < 0 { (len + start).max(0) } else { start };
    let stop = if stop < 0 { len + stop } else { stop.min(len - 1) };
    (start <= stop && start < len).then_some((start, stop))
}

/// The elements at indexes `start ..= stop` of list `header`.
fn elements(view: &View, header: &Header, start: i64, stop: i64) -> Vec<Vec<u8>> {
    let from = position_key(header.id, header.head + start);
    let end = position_key(header.id, header.head + stop + 1);
    collection::scan_range(view, &from, &end, usize::MAX).into_iter().map(|(_, v)| v).collect()
}

/// Replaces list `header`'s elements with `values` (positions from 0), saving or removing the key.
fn rewrite(tx: &mut Tx, key: &[u8], mut header: Header, values: &[Vec<u8>]) {
    let (prefix, end) = (elements_prefix(header.id), elements_end(header.id));
    loop {
        let old = tx.scan(&prefix, Some(&end), 512);
        if old.is_empty() {
            break;
        }
        for (k, _) in old {
            tx.delete(&k);
        }
    }
    for (i, value) in values.iter().enumerate() {
        tx.put(&position_key(header.id, i as i64), value);
    }
    header.head = 0;
    header.len = values.len() as u64;
    collection::save(tx, key, header, false);
}

/// Which end of a list.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Left,
    Right,
}

impl End {
    fn parse(arg: &[u8]) -> Option<Self> {
        if arg.eq_ignore_ascii_case(b"LEFT") {
            Some(End::Left)
        } else if arg.eq_ignore_ascii_case(b"RIGHT") {
            Some(End::Right)
        } else {
            None
        }
    }
}

/// Pushes `values` at `end` of `header`'s list (one by one, as Redis does).
fn push_values(tx: &mut Tx, header: &mut Header, end: End, values: &[&[u8]]) {
    for value in values {
        let pos = match end {
            End::Left => {
                header.head -= 1;
                header.head
            }
            End::Right => header.head + header.len as i64,
        };
        tx.put(&position_key(header.id, pos), value);
        header.len += 1;
    }
}

fn push(tx: &mut Tx, args: &[&[u8]], end: End, only_if_exists: bool) -> Reply {
    let (mut header, created) = match collection::find_or_create(tx, args[1], Kind::List) {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    if created && only_if_exists {
        return Reply::Integer(0);
    }
    push_values(tx, &mut header, end, &args[2..]);
    let len = header.len as i64;
    collection::save(tx, args[1], header, created);
    Reply::Integer(len)
}

/// `LPUSH key element [element ...]`: the new length.
fn lpush(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    push(tx, args, End::Left, false)
}

/// `RPUSH key element [element ...]`.
fn rpush(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    push(tx, args, End::Right, false)
}

/// `LPUSHX key element [element ...]`: only onto an existing list.
fn lpushx(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    push(tx, args, End::Left, true)
}

/// `RPUSHX key element [element ...]`.
fn rpushx(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    push(tx, args, End::Right, true)
}

/// Pops up to `count` elements from `end` of the list at `key`; `Ok(None)` when there is none.
fn pop_values(tx: &mut Tx, key: &[u8], end: End, count: usize) -> Result<Option<Vec<Vec<u8>>>, Reply> {
    expire_if_due(tx, key);
    let Some(mut header) = find(tx, key)? else { return Ok(None) };
    let mut out = Vec::new();
    while out.len() < count && header.len > 0 {
        let pos = match end {
            End::Left => header.head,
            End::Right => header.head + header.len as i64 - 1,
        };
        let k = position_key(header.id, pos);
        out.push(tx.get(&k).unwrap_or_default());
        tx.delete(&k);
        if end == End::Left {
            header.head += 1;
        }
        header.len -= 1;
    }
    if !out.is_empty() {
        collection::save(tx, key, header, false);
    }
    Ok(Some(out))
}

fn pop(tx: &mut Tx, args: &[&[u8]], end: End) -> Reply {
    if args.len() > 3 {
        return Reply::syntax_error();
    }
    let count = match args.get(2).map(|c| parse_i64(c)) {
        None => None,
        Some(Some(n)) if n >= 0 => Some(n as usize),
        Some(_) => return Reply::error("ERR value is out of range, must be positive"),
    };
    match pop_values(tx, args[1], end, count.unwrap_or(1)) {
        Err(reply) => reply,
        Ok(None) => Reply::Null,
        Ok(Some(values)) => match count {
            None => Reply::bulk_or_null(values.into_iter().next()),
            Some(_) => Reply::Array(values.into_iter().map(Reply::Bulk).collect()),
        },
    }
}

/// `LPOP key [count]`.
fn lpop(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    pop(tx, args, End::Left)
}

/// `RPOP key [count]`.
fn rpop(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    pop(tx, args, End::Right)
}

/// `LLEN key`.
fn llen(view: &View, args: &[&[u8]]) -> Reply {
    match find(view, args[1]) {
        Ok(h) => Reply::Integer(h.map_or(0, |h| h.len as i64)),
        Err(reply) => reply,
    }
}

/// `LRANGE key start stop`.
fn lrange(view: &View, args: &[&[u8]]) -> Reply {
    let (Some(start), Some(stop)) = (parse_i64(args[2]), parse_i64(args[3])) else { return Reply::not_an_integer() };
    match find(view, args[1]) {
        Ok(Some(h)) => match range(start, stop, h.len as i64) {
            Some((start, stop)) => Reply::Array(elements(view, &h, start, stop).into_iter().map(Reply::Bulk).collect()),
            None => Reply::Array(Vec::new()),
        },
        Ok(None) => Reply::Array(Vec::new()),
        Err(reply) => reply,
    }
}

/// The position of index `index` (negative from the end) in `header`'s list, if in range.
fn position(header: &Header, index: i64) -> Option<i64> {
    let len = header.len as i64;
    let index = if index < 0 { len + index } else { index };
    (0..len).contains(&index).then_some(header.head + index)
}

/// `LINDEX key index`.
fn lindex(view: &View, args: &[&[u8]]) -> Reply {
    let Some(index) = parse_i64(args[2]) else { return Reply::not_an_integer() };
    match find(view, args[1]) {
        Ok(Some(h)) => Reply::bulk_or_null(position(&h, index).and_then(|p| view.get(&position_key(h.id, p)))),
        Ok(None) => Reply::Null,
        Err(reply) => reply,
    }
}

/// `LSET key index element`.
fn lset(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    let Some(index) = parse_i64(args[2]) else { return Reply::not_an_integer() };
    expire_if_due(tx, args[1]);
    let header = match find(tx, args[1]) {
        Ok(Some(h)) => h,
        Ok(None) => return Reply::error("ERR no such key"),
        Err(reply) => return reply,
    };
    let Some(pos) = position(&header, index) else { return Reply::error("ERR index out of range") };
    tx.put(&position_key(header.id, pos), args[3]);
    collection::save(tx, args[1], header, false);
    Reply::ok()
}

/// A list's header and every element, in order.
type WholeList = (Header, Vec<Vec<u8>>);

/// The whole list at `key` for a rewrite, after the expiry check.
fn all(tx: &mut Tx, key: &[u8]) -> Result<Option<WholeList>, Reply> {
    expire_if_due(tx, key);
    Ok(find(tx, key)?.map(|h| {
        let values = elements(tx, &h, 0, h.len as i64 - 1);
        (h, values)
    }))
}

/// `LREM key count element`: removes the first `count` matches from the head (from the tail when
/// negative, all when 0); how many.
fn lrem(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    let Some(count) = parse_i64(args[2]) else { return Reply::not_an_integer() };
    let (header, mut values) = match all(tx, args[1]) {
        Ok(Some(found)) => found,
        Ok(None) => return Reply::Integer(0),
        Err(reply) => return reply,
    };
    let limit = if count == 0 { usize::MAX } else { count.unsigned_abs() as usize };
    let mut removed = 0;
    let mut keep = vec![true; values.len()];
    let order: Box<dyn Iterator<Item = usize>> =
        if count < 0 { Box::new((0..values.len()).rev()) } else { Box::new(0..values.len()) };
    for i in order {
        if removed < limit && values[i] == args[3] {
            keep[i] = false;
            removed += 1;
        }
    }
    if removed > 0 {
        let mut i = 0;
        values.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        rewrite(tx, args[1], header, &values);
    }
    Reply::Integer(removed as i64)
}

/// `LTRIM key start stop`: keeps only that range (the key goes when it is empty).
fn ltrim(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    let (Some(start), Some(stop)) = (parse_i64(args[2]), parse_i64(args[3])) else { return Reply::not_an_integer() };
    expire_if_due(tx, args[1]);
    let mut header = match find(tx, args[1]) {
        Ok(Some(h)) => h,
        Ok(None) => return Reply::ok(),
        Err(reply) => return reply,
    };
    let len = header.len as i64;
    let (keep_from, keep_to) = range(start, stop, len).unwrap_or((len, len - 1));
    for index in (0..keep_from).chain(keep_to + 1..len) {
        tx.delete(&position_key(header.id, header.head + index));
    }
    header.head += keep_from;
    header.len = (keep_to - keep_from + 1).max(0) as u64;
    collection::save(tx, args[1], header, false);
    Reply::ok()
}

/// `LINSERT key BEFORE|AFTER pivot element`: the new length, -1 without the pivot, 0 without
/// the key.
fn linsert(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    let before = if args[2].eq_ignore_ascii_case(b"BEFORE") {
        true
    } else if args[2].eq_ignore_ascii_case(b"AFTER") {
        false
    } else {
        return Reply::syntax_error();
    };
    let (header, mut values) = match all(tx, args[1]) {
        Ok(Some(found)) => found,
        Ok(None) => return Reply::Integer(0),
        Err(reply) => return reply,
    };
    let Some(at) = values.iter().position(|v| v.as_slice() == args[3]) else { return Reply::Integer(-1) };
    values.insert(if before { at } else { at + 1 }, args[4].to_vec());
    let len = values.len() as i64;
    rewrite(tx, args[1], header, &values);
    Reply::Integer(len)
}

/// `LPOS key element [RANK rank] [COUNT num] [MAXLEN len]`.
fn lpos(view: &View, args: &[&[u8]]) -> Reply {
    let (mut rank, mut count, mut maxlen) = (1i64, None::<i64>, 0i64);
    let mut i = 3;
    while i < args.len() {
        let Some(value) = args.get(i + 1) else { return Reply::syntax_error() };
        let Some(n) = parse_i64(value) else { return Reply::not_an_integer() };
        match args[i].to_ascii_uppercase().as_slice() {
            b"RANK" if n == 0 || n == i64::MIN => {
                return Reply::error(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                );
            }
            b"RANK" => rank = n,
            b"COUNT" if n < 0 => return Reply::error("ERR COUNT can't be negative"),
            b"COUNT" => count = Some(n),
            b"MAXLEN" if n < 0 => return Reply::error("ERR MAXLEN can't be negative"),
            b"MAXLEN" => maxlen = n,
            _ => return Reply::syntax_error(),
        }
        i += 2;
    }
    let header = match find(view, args[1]) {
        Ok(Some(h)) => h,
        Ok(None) => return if count.is_some() { Reply::Array(Vec::new()) } else { Reply::Null },
        Err(reply) => return reply,
    };
    let values = elements(view, &header, 0, header.len as i64 - 1);
    let indexes: Box<dyn Iterator<Item = usize>> =
        if rank < 0 { Box::new((0..values.len()).rev()) } else { Box::new(0..values.len()) };
    let wanted = match count {
        Some(0) => usize::MAX,
        Some(n) => n as usize,
        None => 1,
    };
    let mut skip = rank.unsigned_abs() - 1;
    let mut found = Vec::new();
    for (scanned, index) in indexes.enumerate() {
        if maxlen > 0 && scanned as i64 >= maxlen {
            break;
        }
        if values[index] == args[2] {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            found.push(Reply::Integer(index as i64));
            if found.len() >= wanted {
                break;
            }
        }
    }
    match count {
        Some(_) => Reply::Array(found),
        None => found.pop().unwrap_or(Reply::Null),
    }
}

/// Moves one element from `from`'s end of `source` to `to`'s end of `destination`.
fn move_element(tx: &mut Tx, source: &[u8], destination: &[u8], from: End, to: End) -> Reply {
    expire_if_due(tx, source);
    expire_if_due(tx, destination);
    match find(tx, source) {
        Ok(Some(_)) => {}
        Ok(None) => return Reply::Null,
        Err(reply) => return reply,
    }
    if let Err(reply) = find(tx, destination) {
        return reply;
    }
    let value = match pop_values(tx, source, from, 1) {
        Ok(Some(mut values)) if !values.is_empty() => values.remove(0),
        Ok(_) => return Reply::Null,
        Err(reply) => return reply,
    };
    let (mut header, created) = match collection::find_or_create(tx, destination, Kind::List) {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    push_values(tx, &mut header, to, &[value.as_slice()]);
    collection::save(tx, destination, header, created);
    Reply::Bulk(value)
}

/// `LMOVE source destination LEFT|RIGHT LEFT|RIGHT`.
fn lmove(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    let (Some(from), Some(to)) = (End::parse(args[3]), End::parse(args[4])) else { return Reply::syntax_error() };
    move_element(tx, args[1], args[2], from, to)
}

/// `RPOPLPUSH source destination` (deprecated, still sent by clients): `LMOVE … RIGHT LEFT`.
fn rpoplpush(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    move_element(tx, args[1], args[2], End::Right, End::Left)
}
