//! Hashes: `HSET`, `HGET`, `HGETALL`, `HINCRBY`, `HSCAN` and the rest, with Redis's replies and
//! errors. A hash is a collection (see [`crate::collection`]): a header and one store entry per
//! field, so a field write costs the same in a hash of ten fields as in one of ten million.

use crate::collection::{self, Header, Kind, element_key};
use crate::expiry::expire_if_due;
use crate::{format_float, parse_float, parse_i64};
use fsm_sdk::{Arity, Command, KeySpec, Reply, Tx, View};

/// The hash commands.
pub const HASHES: [Command; 16] = [
    Command::write("hset", Arity::AtLeast(4), KeySpec::single(), hset),
    Command::write("hmset", Arity::AtLeast(4), KeySpec::single(), hmset),
    Command::write("hsetnx", Arity::Exact(4), KeySpec::single(), hsetnx),
    Command::read("hget", Arity::Exact(3), KeySpec::single(), hget),
    Command::read("hmget", Arity::AtLeast(3), KeySpec::single(), hmget),
    Command::write("hdel", Arity::AtLeast(3), KeySpec::single(), hdel),
    Command::read("hexists", Arity::Exact(3), KeySpec::single(), hexists),
    Command::read("hlen", Arity::Exact(2), KeySpec::single(), hlen),
    Command::read("hstrlen", Arity::Exact(3), KeySpec::single(), hstrlen),
    Command::read("hgetall", Arity::Exact(2), KeySpec::single(), hgetall),
    Command::read("hkeys", Arity::Exact(2), KeySpec::single(), hkeys),
    Command::read("hvals", Arity::Exact(2), KeySpec::single(), hvals),
    Command::write("hincrby", Arity::Exact(4), KeySpec::single(), hincrby),
    Command::write("hincrbyfloat", Arity::Exact(4), KeySpec::single(), hincrbyfloat),
    Command::read("hrandfield", Arity::AtLeast(2), KeySpec::single(), hrandfield),
    Command::read("hscan", Arity::AtLeast(3), KeySpec::single(), hscan),
];

fn find(view: &View, key: &[u8]) -> Result<Option<Header>, Reply> {
    collection::find(view, key, Kind::Hash)
}

fn find_or_create(tx: &mut Tx, key: &[u8]) -> Result<(Header, bool), Reply> {
    collection::find_or_create(tx, key, Kind::Hash)
}

fn fields(view: &View, id: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    collection::elements(view, id)
}

fn set_fields(tx: &mut Tx, args: &[&[u8]], name: &str) -> Result<i64, Reply> {
    if !args.len().is_multiple_of(2) {
        return Err(Reply::wrong_arity(name));
    }
    let key = args[1];
    let (mut header, created) = find_or_create(tx, key)?;
    let mut added = 0;
    for pair in args[2..].chunks_exact(2) {
        if !tx.put(&element_key(header.id, pair[0]), pair[1]) {
            header.len += 1;
            added += 1;
        }
    }
    collection::save(tx, key, header, created);
    Ok(added)
}

/// `HSET key field value [field value ...]`: how many fields are new.
fn hset(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    set_fields(tx, args, "hset").map_or_else(|e| e, Reply::Integer)
}

/// `HMSET key field value [field value ...]` (deprecated in Redis, still sent by clients): `OK`.
fn hmset(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    set_fields(tx, args, "hmset").map_or_else(|e| e, |_| Reply::ok())
}

/// `HSETNX key field value`: 1 if the field was set, 0 if it existed.
fn hsetnx(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    let (mut header, created) = match find_or_create(tx, args[1]) {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    let field = element_key(header.id, args[2]);
    if tx.exists(&field) {
        return Reply::Integer(0);
    }
    tx.put(&field, args[3]);
    header.len += 1;
    collection::save(tx, args[1], header, created);
    Reply::Integer(1)
}

/// Runs `read` on the hash at `args[1]`, or answers `absent` when there is none.
fn with_hash(view: &View, args: &[&[u8]], absent: Reply, read: impl FnOnce(Header) -> Reply) -> Reply {
    match find(view, args[1]) {
        Ok(Some(header)) => read(header),
        Ok(None) => absent,
        Err(reply) => reply,
    }
}

/// `HGET key field`.
fn hget(view: &View, args: &[&[u8]]) -> Reply {
    with_hash(view, args, Reply::Null, |h| Reply::bulk_or_null(view.get(&element_key(h.id, args[2]))))
}

/// `HMGET key field [field ...]`.
fn hmget(view: &View, args: &[&[u8]]) -> Reply {
    let nulls = Reply::Array(vec![Reply::Null; args.len() - 2]);
    with_hash(view, args, nulls, |h| {
        Reply::Array(args[2..].iter().map(|f| Reply::bulk_or_null(view.get(&element_key(h.id, f)))).collect())
    })
}

/// `HDEL key field [field ...]`: how many fields were removed; the key goes with the last one.
fn hdel(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    expire_if_due(tx, args[1]);
    let mut header = match find(tx, args[1]) {
        Ok(Some(header)) => header,
        Ok(None) => return Reply::Integer(0),
        Err(reply) => return reply,
    };
    let mut removed = 0;
    for field in &args[2..] {
        if tx.delete(&element_key(header.id, field)) {
            header.len -= 1;
            removed += 1;
        }
    }
    if removed > 0 {
        collection::save(tx, args[1], header, false);
    }
    Reply::Integer(removed)
}

/// `HEXISTS key field`.
fn hexists(view: &View, args: &[&[u8]]) -> Reply {
    with_hash(view, args, Reply::Integer(0), |h| Reply::Integer(i64::from(view.exists(&element_key(h.id, args[2])))))
}

/// `HLEN key`.
fn hlen(view: &View, args: &[&[u8]]) -> Reply {
    with_hash(view, args, Reply::Integer(0), |h| Reply::Integer(h.len as i64))
}

/// `HSTRLEN key field`.
fn hstrlen(view: &View, args: &[&[u8]]) -> Reply {
    with_hash(view, args, Reply::Integer(0), |h| {
        Reply::Integer(view.value_len(&element_key(h.id, args[2])).map_or(0, i64::from))
    })
}

/// `HGETALL key`: a map of fields to values (a flat array in RESP2), in hash order.
fn hgetall(view: &View, args: &[&[u8]]) -> Reply {
    with_hash(view, args, Reply::Map(Vec::new()), |h| {
        Reply::Map(fields(view, h.id).into_iter().map(|(f, v)| (Reply::Bulk(f), Reply::Bulk(v))).collect())
    })
}

/// `HKEYS key`.
fn hkeys(view: &View, args: &[&[u8]]) -> Reply {
    with_hash(view, args, Reply::Array(Vec::new()), |h| {
        Reply::Array(fields(view, h.id).into_iter().map(|(f, _)| Reply::Bulk(f)).collect())
    })
}

/// `HVALS key`.
fn hvals(view: &View, args: &[&[u8]]) -> Reply {
    with_hash(view, args, Reply::Array(Vec::new()), |h| {
        Reply::Array(fields(view, h.id).into_iter().map(|(_, v)| Reply::Bulk(v)).collect())
    })
}

/// Applies `update` to the field's current value (absent: `None`) and stores what it returns.
fn update_field(
    tx: &mut Tx,
    args: &[&[u8]],
    update: impl FnOnce(Option<&[u8]>) -> Result<(Vec<u8>, Reply), Reply>,
) -> Reply {
    let (mut header, created) = match find_or_create(tx, args[1]) {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    let field = element_key(header.id, args[2]);
    let current = tx.get(&field);
    let (stored, reply) = match update(current.as_deref()) {
        Ok(done) => done,
        Err(reply) => return reply,
    };
    if !tx.put(&field, &stored) {
        header.len += 1;
    }
    collection::save(tx, args[1], header, created);
    reply
}

/// `HINCRBY key field increment`: the new value.
fn hincrby(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    let Some(delta) = parse_i64(args[3]) else { return Reply::not_an_integer() };
    update_field(tx, args, |current| {
        let current = match current {
            None => 0,
            Some(v) => parse_i64(v).ok_or_else(|| Reply::error("ERR hash value is not an integer"))?,
        };
        let next = current.checked_add(delta).ok_or_else(Reply::overflow)?;
        Ok((next.to_string().into_bytes(), Reply::Integer(next)))
    })
}

/// `HINCRBYFLOAT key field increment`: the new value, as Redis prints it.
fn hincrbyfloat(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    let Some(delta) = parse_float(args[3]) else { return Reply::error("ERR value is not a valid float") };
    update_field(tx, args, |current| {
        let current = match current {
            None => 0.0,
            Some(v) => parse_float(v).ok_or_else(|| Reply::error("ERR hash value is not a float"))?,
        };
        let next = current + delta;
        if !next.is_finite() {
            return Err(Reply::error("ERR increment would produce NaN or Infinity"));
        }
        let text = format_float(next).into_bytes();
        Ok((text.clone(), Reply::Bulk(text)))
    })
}

/// `HRANDFIELD key [count [WITHVALUES]]`. Random by the command's time: fields are taken in hash
/// order from a point picked by the time and the key (so the same on every node at the same
/// time). A positive count gives distinct fields (at most the hash's size), a negative one
/// exactly that many, possibly repeated. `WITHVALUES` answers pairs (nested in RESP3, flat in
/// RESP2), as Redis 7 does.
fn hrandfield(view: &View, args: &[&[u8]]) -> Reply {
    let count = match args.get(2) {
        None => None,
        Some(c) => match parse_i64(c) {
            Some(n) => Some(n),
            None => return Reply::not_an_integer(),
        },
    };
    let with_values = match args.get(3) {
        None => false,
        Some(v) if v.eq_ignore_ascii_case(b"WITHVALUES") && args.len() == 4 => true,
        Some(_) => return Reply::syntax_error(),
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
    let picked = collection::sample(view, args[1], header.id, take, distinct);
    match count {
        None => Reply::bulk_or_null(picked.into_iter().next().map(|(field, _)| field)),
        Some(_) if with_values => {
            Reply::Pairs(picked.into_iter().map(|(field, value)| (Reply::Bulk(field), Reply::Bulk(value))).collect())
        }
        Some(_) => Reply::Array(picked.into_iter().map(|(field, _)| Reply::Bulk(field)).collect()),
    }
}

/// `HSCAN key cursor [MATCH pattern] [COUNT count] [NOVALUES]`: the cursor is a position in the
/// hash order of the fields, as `SCAN`'s is in the keys'.
fn hscan(view: &View, args: &[&[u8]]) -> Reply {
    collection::scan_elements(view, args, Kind::Hash, true, |field, value, with_values, out| {
        out.push(Reply::Bulk(field.to_vec()));
        if with_values {
            out.push(Reply::Bulk(value.to_vec()));
        }
    })
}
