//! Sets: `SADD`, `SREM`, `SMEMBERS`, `SINTER`, `SPOP`, `SSCAN` and the rest, with Redis's replies
//! and errors. A set is a collection (see [`crate::collection`]): a header and one store entry
//! per member (with an empty value).

use crate::collection::{self, Header, Kind, element_key};
use crate::expiry::{expire_if_due, remove};
use crate::parse_i64;
use fsm_sdk::{Arity, Command, KeySpec, Reply, Tx, View};
use std::collections::BTreeSet;

/// The set commands.
pub const SETS: [Command; 16] = [
    Command::write("sadd", Arity::AtLeast(3), KeySpec::single(), sadd),
    Command::write("srem", Arity::AtLeast(3), KeySpec::single(), srem),
    Command::read("smembers", Arity::Exact(2), KeySpec::single(), smembers),
    Command::read("sismember", Arity::Exact(3), KeySpec::single(), sismember),
    Command::read("smismember", Arity::AtLeast(3), KeySpec::single(), smismember),
    Command::read("scard", Arity::Exact(2), KeySpec::single(), scard),
    Command::write("spop", Arity::AtLeast(2), KeySpec::single(), spop),
    Command::read("srandmember", Arity::AtLeast(2), KeySpec::single(), srandmember),
    Command::read("sinter", Arity::AtLeast(2), KeySpec::all(), sinter),
    Command::read("sunion", Arity::AtLeast(2), KeySpec::all(), sunion),
    Command::read("sdiff", Arity::AtLeast(2), KeySpec::all(), sdiff),
    Command::write("sinterstore", Arity::AtLeast(3), KeySpec::all(), sinterstore),
    Command::write("sunionstore", Arity::AtLeast(3), KeySpec::all(), sunionstore),
    Command::write("sdiffstore", Arity::AtLeast(3), KeySpec::all(), sdiffstore),
    Command::write("smove", Arity::Exact(4), KeySpec { first: 1, last: 2, step: 1 }, smove),
    Command::read("sscan", Arity::AtLeast(3), KeySpec::single(), sscan),
];

fn find(view: &View, key: &[u8]) -> Result<Option<Header>, Reply> {
    collection::find(view, key, Kind::Set)
}

/// The members of the set at `key` (empty when absent), or `WRONGTYPE`.
fn members(view: &View, key: &[u8]) -> Result<Vec<Vec<u8>>, Reply> {
    Ok(match find(view, key)? {
        Some(header) => collection::elements(view, header.id).into_iter().map(|(m, _)| m).collect(),
        None => Vec::new(),
    })
}

fn set_reply(members: impl IntoIterator<Item = Vec<u8>>) -> Reply {
    Reply::Set(members.into_iter().map(Reply::Bulk).collect())
}

/// `SADD key member [member ...]`: how many are new.
fn sadd(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    let (mut header, created) = match collection::find_or_create(tx, args[1], Kind::Set) {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    let mut added = 0;
    for member in &args[2..] {
        if !tx.put(&element_key(header.id, member), &[]) {
            header.len += 1;
            added += 1;
        }
    }
    collection::save(tx, args[1], header, created);
    Reply::Integer(added)
}

/// Removes `members` from the set at `key`; how many were there (the key goes with the last).
fn remove_members<'a>(tx: &mut Tx, key: &[u8], members: impl IntoIterator<Item = &'a [u8]>) -> Result<i64, Reply> {
    expire_if_due(tx, key);
    let Some(mut header) = find(tx, key)? else { return Ok(0) };
    let mut removed = 0;
    for member in members {
        if tx.delete(&element_key(header.id, member)) {
            header.len -= 1;
            removed += 1;
        }
    }
    if removed > 0 {
        collection::save(tx, key, header, false);
    }
    Ok(removed)
}

/// `SREM key member [member ...]`.
fn srem(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    remove_members(tx, args[1], args[2..].iter().copied()).map_or_else(|e| e, Reply::Integer)
}

/// `SMEMBERS key`: a set (an array in RESP2), in hash order.
fn smembers(view: &View, args: &[&[u8]]) -> Reply {
    members(view, args[1]).map_or_else(|e| e, set_reply)
}

/// `SISMEMBER key member`.
fn sismember(view: &View, args: &[&[u8]]) -> Reply {
    match find(view, args[1]) {
        Ok(Some(h)) => Reply::Integer(i64::from(view.exists(&element_key(h.id, args[2])))),
        Ok(None) => Reply::Integer(0),
        Err(reply) => reply,
    }
}

/// `SMISMEMBER key member [member ...]`.
fn smismember(view: &View, args: &[&[u8]]) -> Reply {
    match find(view, args[1]) {
        Ok(Some(h)) => Reply::Array(
            args[2..].iter().map(|m| Reply::Integer(i64::from(view.exists(&element_key(h.id, m))))).collect(),
        ),
        Ok(None) => Reply::Array(vec![Reply::Integer(0); args.len() - 2]),
        Err(reply) => reply,
    }
}

/// `SCARD key`.
fn scard(view: &View, args: &[&[u8]]) -> Reply {
    match find(view, args[1]) {
        Ok(h) => Reply::Integer(h.map_or(0, |h| h.len as i64)),
        Err(reply) => reply,
    }
}

/// Parses a count argument as Redis's `SPOP` / `SRANDMEMBER` do.
fn count_arg(arg: Option<&&[u8]>) -> Result<Option<i64>, Reply> {
    match arg {
        None => Ok(None),
        Some(c) => parse_i64(c).map(Some).ok_or_else(Reply::not_an_integer),
    }
}

/// `SPOP key [count]`: removes and returns random members (picked by the entry's time, so the
/// same on every replica).
fn spop(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    if args.len() > 3 {
        return Reply::syntax_error();
    }
    let count = match count_arg(args.get(2)) {
        Ok(Some(n)) if n < 0 => return Reply::error("ERR value is out of range, must be positive"),
        Ok(count) => count,
        Err(reply) => return reply,
    };
    expire_if_due(tx, args[1]);
    let header = match find(tx, args[1]) {
        Ok(Some(header)) => header,
        Ok(None) => return if count.is_some() { Reply::Set(Vec::new()) } else { Reply::Null },
        Err(reply) => return reply,
    };
    let take = count.map_or(1, |n| n as usize);
    let picked: Vec<Vec<u8>> =
        collection::sample(tx, args[1], header.id, take, true).into_iter().map(|(m, _)| m).collect();
    if let Err(reply) = remove_members(tx, args[1], picked.iter().map(Vec::as_slice)) {
        return reply;
    }
    match count {
        None => Reply::Bulk(picked.into_iter().next().unwrap_or_default()),
        Some(_) => set_reply(picked),
    }
}

/// `SRANDMEMBER key [count]`: random members without removing them; a negative count may repeat.
fn srandmember(view: &View, args: &[&[u8]]) -> Reply {
    if args.len() > 3 {
        return Reply::syntax_error();
    }
    let count = match count_arg(args.get(2)) {
        Ok(count) => count,
        Err(reply) => return reply,
    };
    let header = match find(view, args[1]) {
        Ok(Some(header)) => header,
        Ok(None) => return if count.is_some() { Reply::Array(Vec::new()) } else { Reply::Null },
        Err(reply) => return reply,
    };
    let (take, distinct) = match count {
        None => (1, true),
        Some(n) if n >= 0 => (n as usize, true),
        Some(n) => (n.unsigned_abs().min(1 << 24) as usize, false),
    };
    let mut picked = collection::sample(view, args[1], header.id, take, distinct).into_iter().map(|(m, _)| m);
    match count {
        None => Reply::bulk_or_null(picked.next()),
        Some(_) => Reply::Array(picked.map(Reply::Bulk).collect()),
    }
}

/// How a set operation combines its sets.
#[derive(Clone, Copy)]
enum Op {
    Inter,
    Union,
    Diff,
}

/// `op` over the sets at `keys` (missing keys are empty sets), or `WRONGTYPE`.
fn combine(view: &View, keys: &[&[u8]], op: Op) -> Result<BTreeSet<Vec<u8>>, Reply> {
    let mut sets = Vec::with_capacity(keys.len());
    for key in keys {
        sets.push(members(view, key)?.into_iter().collect::<BTreeSet<_>>());
    }
    let mut iter = sets.into_iter();
    let first = iter.next().unwrap_or_default();
    Ok(iter.fold(first, |acc, set| match op {
        Op::Inter => acc.intersection(&set).cloned().collect(),
        Op::Union => acc.union(&set).cloned().collect(),
        Op::Diff => acc.difference(&set).cloned().collect(),
    }))
}

fn combine_reply(view: &View, args: &[&[u8]], op: Op) -> Reply {
    combine(view, &args[1..], op).map_or_else(|e| e, set_reply)
}

/// `SINTER key [key ...]`.
fn sinter(view: &View, args: &[&[u8]]) -> Reply {
    combine_reply(view, args, Op::Inter)
}

/// `SUNION key [key ...]`.
fn sunion(view: &View, args: &[&[u8]]) -> Reply {
    combine_reply(view, args, Op::Union)
}

/// `SDIFF key [key ...]`.
fn sdiff(view: &View, args: &[&[u8]]) -> Reply {
    combine_reply(view, args, Op::Diff)
}

/// `S*STORE destination key [key ...]`: the result's size; `destination` is replaced (removed
/// when the result is empty).
fn store(tx: &mut Tx, args: &[&[u8]], op: Op) -> Reply {
    for key in &args[1..] {
        expire_if_due(tx, key);
    }
    let result = match combine(tx, &args[2..], op) {
        Ok(result) => result,
        Err(reply) => return reply,
    };
    remove(tx, args[1]);
    if result.is_empty() {
        return Reply::Integer(0);
    }
    let mut header = collection::new_header(tx, Kind::Set);
    for member in &result {
        tx.put(&element_key(header.id, member), &[]);
    }
    header.len = result.len() as u64;
    collection::save(tx, args[1], header, true);
    Reply::Integer(result.len() as i64)
}

/// `SINTERSTORE destination key [key ...]`.
fn sinterstore(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    store(tx, args, Op::Inter)
}

/// `SUNIONSTORE destination key [key ...]`.
fn sunionstore(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    store(tx, args, Op::Union)
}

/// `SDIFFSTORE destination key [key ...]`.
fn sdiffstore(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    store(tx, args, Op::Diff)
}

/// `SMOVE source destination member`: 1 if moved.
fn smove(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    let (source, destination, member) = (args[1], args[2], args[3]);
    expire_if_due(tx, source);
    expire_if_due(tx, destination);
    // Redis's order: a missing source answers 0 before any type check of the destination.
    let header = match find(tx, source) {
        Ok(Some(header)) => header,
        Ok(None) => return Reply::Integer(0),
        Err(reply) => return reply,
    };
    if let Err(reply) = find(tx, destination) {
        return reply;
    }
    if !tx.exists(&element_key(header.id, member)) {
        return Reply::Integer(0);
    }
    if source == destination {
        return Reply::Integer(1);
    }
    if let Err(reply) = remove_members(tx, source, [member]) {
        return reply;
    }
    let (mut header, created) = match collection::find_or_create(tx, destination, Kind::Set) {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    if !tx.put(&element_key(header.id, member), &[]) {
        header.len += 1;
    }
    collection::save(tx, destination, header, created);
    Reply::Integer(1)
}

/// `SSCAN key cursor [MATCH pattern] [COUNT count]`: cursors are positions in the members' hash
/// order, as `SCAN`'s are in the keys'.
fn sscan(view: &View, args: &[&[u8]]) -> Reply {
    collection::scan_elements(view, args, Kind::Set, false, |member, _, _, out| out.push(Reply::Bulk(member.to_vec())))
}
