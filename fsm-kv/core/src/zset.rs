//! Sorted sets: `ZADD`, `ZRANGE`, `ZRANK`, `ZPOPMIN`, `ZSCAN` and the rest, with Redis's replies
//! and errors. A sorted set is a collection (see [`crate::collection`]) with two entries per
//! member: `f` + id + hash(member) + member → the score (for `ZSCORE` and `ZSCAN`), and
//! `z` + id + score (sortable) + member → empty, the order `ZRANGE` and `ZRANK` walk.
//!
//! Scores are doubles: RESP3 doubles, and in RESP2 bulk strings in their shortest form (`0.1`, as
//! Redis 7.2 prints them; Redis 7.0 prints 17 digits, `0.10000000000000001`). `WITHSCORES`
//! replies are pairs (nested in RESP3, flat in RESP2), as in Redis 7.

use crate::collection::{self, Header, Kind, element_key, order_end, order_prefix};
use crate::expiry::expire_if_due;
use crate::{parse_float, parse_i64};
use fsm_sdk::{Arity, Command, KeySpec, Reply, Tx, View};

/// The sorted-set commands.
pub const ZSETS: [Command; 17] = [
    Command::write("zadd", Arity::AtLeast(4), KeySpec::single(), zadd),
    Command::write("zincrby", Arity::Exact(4), KeySpec::single(), zincrby),
    Command::write("zrem", Arity::AtLeast(3), KeySpec::single(), zrem),
    Command::read("zscore", Arity::Exact(3), KeySpec::single(), zscore),
    Command::read("zmscore", Arity::AtLeast(3), KeySpec::single(), zmscore),
    Command::read("zcard", Arity::Exact(2), KeySpec::single(), zcard),
    Command::read("zcount", Arity::Exact(4), KeySpec::single(), zcount),
    Command::read("zrank", Arity::Exact(3), KeySpec::single(), zrank),
    Command::read("zrevrank", Arity::Exact(3), KeySpec::single(), zrevrank),
    Command::read("zrange", Arity::AtLeast(4), KeySpec::single(), zrange),
    Command::read("zrangebyscore", Arity::AtLeast(4), KeySpec::single(), zrangebyscore),
    Command::read("zrevrangebyscore", Arity::AtLeast(4), KeySpec::single(), zrevrangebyscore),
    Command::read("zrevrange", Arity::AtLeast(4), KeySpec::single(), zrevrange),
    Command::read("zrangebylex", Arity::AtLeast(4), KeySpec::single(), zrangebylex),
    Command::write("zpopmin", Arity::AtLeast(2), KeySpec::single(), zpopmin),
    Command::write("zpopmax", Arity::AtLeast(2), KeySpec::single(), zpopmax),
    Command::read("zscan", Arity::AtLeast(3), KeySpec::single(), zscan),
];

/// A score as 8 bytes that sort as the scores do (the sign bit flipped for positives, every bit
/// for negatives).
fn sortable(score: f64) -> [u8; 8] {
    let score = if score == 0.0 { 0.0 } else { score };
    let bits = score.to_bits();
    let bits = if bits >> 63 == 1 { !bits } else { bits | (1 << 63) };
    bits.to_be_bytes()
}

fn unsortable(bytes: &[u8]) -> f64 {
    let bits = bytes.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map_or(0, u64::from_be_bytes);
    f64::from_bits(if bits >> 63 == 1 { bits & !(1 << 63) } else { !bits })
}

fn order_key(id: u64, score: f64, member: &[u8]) -> Vec<u8> {
    let mut k = order_prefix(id);
    k.extend_from_slice(&sortable(score));
    k.extend_from_slice(member);
    k
}

fn find(view: &View, key: &[u8]) -> Result<Option<Header>, Reply> {
    collection::find(view, key, Kind::ZSet)
}

fn score_of(view: &View, id: u64, member: &[u8]) -> Option<f64> {
    view.get(&element_key(id, member)).and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok()).map(f64::from_le_bytes)
}

/// Sets `member`'s score (it may be new); returns whether it was new.
fn put_score(tx: &mut Tx, id: u64, member: &[u8], old: Option<f64>, score: f64) -> bool {
    if let Some(old) = old {
        tx.delete(&order_key(id, old, member));
    }
    tx.put(&element_key(id, member), &score.to_le_bytes());
    tx.put(&order_key(id, score, member), &[]);
    old.is_none()
}

fn delete_member(tx: &mut Tx, id: u64, member: &[u8], score: f64) {
    tx.delete(&element_key(id, member));
    tx.delete(&order_key(id, score, member));
}

/// Every `(score, member)` of sorted set `id` with `from <= order key < to`, in order.
fn ordered(view: &View, from: &[u8], to: &[u8], limit: usize) -> Vec<(f64, Vec<u8>)> {
    decode_order(collection::scan_range(view, from, to, limit))
}

/// As [`ordered`], highest first: the `limit` highest entries of the range, read from the top
/// (a leaderboard's first page costs the page, not the set).
fn ordered_rev(view: &View, from: &[u8], to: &[u8], limit: usize) -> Vec<(f64, Vec<u8>)> {
    decode_order(collection::scan_range_rev(view, from, to, limit))
}

fn decode_order(entries: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(f64, Vec<u8>)> {
    entries.into_iter().map(|(k, _)| (unsortable(&k[9..17]), k[17..].to_vec())).collect()
}

/// The first order key of set `id` with a score above `score` (its members come before it).
fn order_key_above(id: u64, score: f64) -> Vec<u8> {
    match u64::from_be_bytes(sortable(score)).checked_add(1) {
        Some(next) => {
            let mut k = order_prefix(id);
            k.extend_from_slice(&next.to_be_bytes());
            k
        }
        None => order_end(id),
    }
}

fn all_ordered(view: &View, id: u64) -> Vec<(f64, Vec<u8>)> {
    ordered(view, &order_prefix(id), &order_end(id), usize::MAX)
}

/// `ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]`.
fn zadd(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) = (false, false, false, false, false, false);
    let mut at = 2;
    while at < args.len() {
        match args[at].to_ascii_uppercase().as_slice() {
            b"NX" => nx = true,
            b"XX" => xx = true,
            b"GT" => gt = true,
            b"LT" => lt = true,
            b"CH" => ch = true,
            b"INCR" => incr = true,
            _ => break,
        }
        at += 1;
    }
    let pairs = &args[at..];
    if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
        return Reply::syntax_error();
    }
    if incr && pairs.len() > 2 {
        return Reply::error("ERR INCR option supports a single increment-element pair");
    }
    if nx && xx {
        return Reply::error("ERR XX and NX options at the same time are not compatible");
    }
    if (nx && (gt || lt)) || (gt && lt) {
        return Reply::error("ERR GT, LT, and/or NX options at the same time are not compatible");
    }
    let mut scores = Vec::with_capacity(pairs.len() / 2);
    for pair in pairs.chunks_exact(2) {
        match parse_float(pair[0]) {
            Some(score) => scores.push(score),
            None => return Reply::error("ERR value is not a valid float"),
        }
    }
    expire_if_due(tx, args[1]);
    let existing = match find(tx, args[1]) {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    if existing.is_none() && xx {
        return if incr { Reply::Null } else { Reply::Integer(0) };
    }
    let (mut header, created) = match existing {
        Some(header) => (header, false),
        None => (collection::new_header(tx, Kind::ZSet), true),
    };
    let (mut added, mut changed) = (0, 0);
    let mut last_score = None;
    for (pair, &score) in pairs.chunks_exact(2).zip(&scores) {
        let member = pair[1];
        let old = score_of(tx, header.id, member);
        let new = match (old, incr) {
            (Some(old), true) => old + score,
            _ => score,
        };
        if new.is_nan() {
            return Reply::error("ERR resulting score is not a number (NaN)");
        }
        let skip = match old {
            Some(old) => nx || (gt && new <= old) || (lt && new >= old),
            None => xx,
        };
        if skip {
            continue;
        }
        last_score = Some(new);
        if old != Some(new) {
            if put_score(tx, header.id, member, old, new) {
                header.len += 1;
                added += 1;
            } else {
                changed += 1;
            }
        }
    }
    // A ZADD that changed nothing leaves the key alone (a `WATCH` on it stays valid).
    if created || added + changed > 0 {
        collection::save(tx, args[1], header, created);
    }
    if incr {
        return last_score.map_or(Reply::Null, Reply::Double);
    }
    Reply::Integer(if ch { added + changed } else { added })
}

/// `ZINCRBY key increment member`: the new score.
fn zincrby(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    zadd(tx, &[b"zadd", args[1], b"INCR", args[2], args[3]])
}

/// `ZREM key member [member ...]`.
fn zrem(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    expire_if_due(tx, args[1]);
    let mut header = match find(tx, args[1]) {
        Ok(Some(h)) => h,
        Ok(None) => return Reply::Integer(0),
        Err(reply) => return reply,
    };
    let mut removed = 0;
    for member in &args[2..] {
        if let Some(score) = score_of(tx, header.id, member) {
            delete_member(tx, header.id, member, score);
            header.len -= 1;
            removed += 1;
        }
    }
    if removed > 0 {
        collection::save(tx, args[1], header, false);
    }
    Reply::Integer(removed)
}

/// `ZSCORE key member`.
fn zscore(view: &View, args: &[&[u8]]) -> Reply {
    match find(view, args[1]) {
        Ok(Some(h)) => score_of(view, h.id, args[2]).map_or(Reply::Null, Reply::Double),
        Ok(None) => Reply::Null,
        Err(reply) => reply,
    }
}

/// `ZMSCORE key member [member ...]`.
fn zmscore(view: &View, args: &[&[u8]]) -> Reply {
    match find(view, args[1]) {
        Ok(found) => Reply::Array(
            args[2..]
                .iter()
                .map(|m| found.and_then(|h| score_of(view, h.id, m)).map_or(Reply::Null, Reply::Double))
                .collect(),
        ),
        Err(reply) => reply,
    }
}

/// `ZCARD key`.
fn zcard(view: &View, args: &[&[u8]]) -> Reply {
    match find(view, args[1]) {
        Ok(h) => Reply::Integer(h.map_or(0, |h| h.len as i64)),
        Err(reply) => reply,
    }
}

/// One end of a score range: the score and whether it is excluded (`(1.5`).
#[derive(Clone, Copy)]
struct Bound {
    score: f64,
    exclusive: bool,
}

fn parse_bound(arg: &[u8]) -> Option<Bound> {
    let (exclusive, text) = match arg.split_first() {
        Some((b'(', rest)) => (true, rest),
        _ => (false, arg),
    };
    parse_float(text).map(|score| Bound { score, exclusive })
}

fn in_range(score: f64, min: Bound, max: Bound) -> bool {
    let above = if min.exclusive { score > min.score } else { score >= min.score };
    let below = if max.exclusive { score < max.score } else { score <= max.score };
    above && below
}

/// The members with scores in `[min, max]`, lowest first (highest first with `rev`), at most
/// `cap` of them: the walk starts at the end it lists from and stops once it has `cap`.
fn by_score(view: &View, id: u64, min: Bound, max: Bound, rev: bool, cap: usize) -> Vec<(f64, Vec<u8>)> {
    if min.score > max.score {
        return Vec::new();
    }
    const PAGE: usize = 512;
    let mut out = Vec::new();
    let (prefix, end) = (order_prefix(id), order_end(id));
    // Ascending: from the first key at `min`. Descending: from below the first key past `max`.
    let mut bound = if rev {
        order_key_above(id, max.score)
    } else {
        let mut from = prefix.clone();
        from.extend_from_slice(&sortable(min.score));
        from
    };
    while out.len() < cap {
        let batch = if rev { ordered_rev(view, &prefix, &bound, PAGE) } else { ordered(view, &bound, &end, PAGE) };
        let full = batch.len() == PAGE;
        if let Some((score, member)) = batch.last() {
            bound = order_key(id, *score, member);
            if !rev {
                bound.push(0);
            }
        }
        for (score, member) in batch {
            if (rev && score < min.score) || (!rev && score > max.score) || out.len() == cap {
                return out;
            }
            if in_range(score, min, max) {
                out.push((score, member));
            }
        }
        if !full {
            break;
        }
    }
    out
}

/// `ZCOUNT key min max`.
fn zcount(view: &View, args: &[&[u8]]) -> Reply {
    let (Some(min), Some(max)) = (parse_bound(args[2]), parse_bound(args[3])) else {
        return Reply::error("ERR min or max is not a float");
    };
    match find(view, args[1]) {
        Ok(Some(h)) => Reply::Integer(by_score(view, h.id, min, max, false, usize::MAX).len() as i64),
        Ok(None) => Reply::Integer(0),
        Err(reply) => reply,
    }
}

fn rank(view: &View, args: &[&[u8]], reverse: bool) -> Reply {
    let header = match find(view, args[1]) {
        Ok(Some(h)) => h,
        Ok(None) => return Reply::Null,
        Err(reply) => return reply,
    };
    let Some(score) = score_of(view, header.id, args[2]) else { return Reply::Null };
    // The entries before the member's own in the rank's direction: linear in the rank, so a
    // member near the end it counts from answers quickly.
    let own = order_key(header.id, score, args[2]);
    let before = if reverse {
        let mut after_own = own;
        after_own.push(0);
        collection::scan_range(view, &after_own, &order_end(header.id), usize::MAX).len()
    } else {
        collection::scan_range(view, &order_prefix(header.id), &own, usize::MAX).len()
    };
    Reply::Integer(before as i64)
}

/// `ZRANK key member`.
fn zrank(view: &View, args: &[&[u8]]) -> Reply {
    rank(view, args, false)
}

/// `ZREVRANK key member`.
fn zrevrank(view: &View, args: &[&[u8]]) -> Reply {
    rank(view, args, true)
}

/// A lex range end: `[a` (inclusive), `(a` (exclusive), `-`, `+`.
#[derive(Clone)]
enum Lex {
    Min,
    Max,
    Inclusive(Vec<u8>),
    Exclusive(Vec<u8>),
}

fn parse_lex(arg: &[u8]) -> Option<Lex> {
    match arg.split_first() {
        Some((b'-', [])) => Some(Lex::Min),
        Some((b'+', [])) => Some(Lex::Max),
        Some((b'[', rest)) => Some(Lex::Inclusive(rest.to_vec())),
        Some((b'(', rest)) => Some(Lex::Exclusive(rest.to_vec())),
        _ => None,
    }
}

fn lex_above(member: &[u8], min: &Lex) -> bool {
    match min {
        Lex::Min => true,
        Lex::Max => false,
        Lex::Inclusive(m) => member >= m.as_slice(),
        Lex::Exclusive(m) => member > m.as_slice(),
    }
}

fn lex_below(member: &[u8], max: &Lex) -> bool {
    match max {
        Lex::Min => false,
        Lex::Max => true,
        Lex::Inclusive(m) => member <= m.as_slice(),
        Lex::Exclusive(m) => member < m.as_slice(),
    }
}

/// What a `ZRANGE`-family command selects.
enum Selector {
    Rank(i64, i64),
    Score(Bound, Bound),
    Lex(Lex, Lex),
}

/// Runs a range query: the selection, reversed with `rev`, cut by `LIMIT`, as a reply.
fn range_reply(
    view: &View,
    key: &[u8],
    selector: Selector,
    rev: bool,
    limit: Option<(i64, i64)>,
    with_scores: bool,
) -> Reply {
    let header = match find(view, key) {
        Ok(Some(h)) => h,
        Ok(None) => return Reply::Array(Vec::new()),
        Err(reply) => return reply,
    };
    let len = header.len as i64;
    let (prefix, end) = (order_prefix(header.id), order_end(header.id));
    // Listed in the reply's order: read from the top with REV.
    let mut selected = match selector {
        Selector::Rank(start, stop) => {
            let start = if start < 0 { (len + start).max(0) } else { start };
            let stop = if stop < 0 { len + stop } else { stop.min(len - 1) };
            if start > stop || start >= len {
                return Reply::Array(Vec::new());
            }
            // With REV, ranks count from the highest score.
            let wanted = (stop + 1) as usize;
            let mut items =
                if rev { ordered_rev(view, &prefix, &end, wanted) } else { ordered(view, &prefix, &end, wanted) };
            items.drain(..(start as usize).min(items.len()));
            items
        }
        Selector::Score(min, max) => {
            // With a LIMIT, only its window's end is needed.
            let cap = match limit {
                Some((offset, count)) if offset >= 0 && count >= 0 => offset.saturating_add(count) as usize,
                _ => usize::MAX,
            };
            by_score(view, header.id, min, max, rev, cap)
        }
        Selector::Lex(min, max) => {
            let mut items: Vec<_> = all_ordered(view, header.id)
                .into_iter()
                .filter(|(_, m)| lex_above(m, &min) && lex_below(m, &max))
                .collect();
            if rev {
                items.reverse();
            }
            items
        }
    };
    if let Some((offset, count)) = limit {
        if offset < 0 {
            return Reply::Array(Vec::new());
        }
        let rest = selected.into_iter().skip(offset as usize);
        selected = if count < 0 { rest.collect() } else { rest.take(count as usize).collect() };
    }
    if with_scores {
        return Reply::Pairs(
            selected.into_iter().map(|(score, member)| (Reply::Bulk(member), Reply::Double(score))).collect(),
        );
    }
    Reply::Array(selected.into_iter().map(|(_, member)| Reply::Bulk(member)).collect())
}

/// Options after a range: `WITHSCORES`, `LIMIT offset count`, and for `ZRANGE` `BYSCORE`,
/// `BYLEX` and `REV`.
struct RangeOptions {
    by_score: bool,
    by_lex: bool,
    rev: bool,
    limit: Option<(i64, i64)>,
    with_scores: bool,
}

fn parse_range_options(args: &[&[u8]], zrange: bool) -> Result<RangeOptions, Reply> {
    let mut o = RangeOptions { by_score: false, by_lex: false, rev: false, limit: None, with_scores: false };
    let mut i = 0;
    while i < args.len() {
        match args[i].to_ascii_uppercase().as_slice() {
            b"WITHSCORES" => o.with_scores = true,
            // The last of BYSCORE and BYLEX wins, as in Redis.
            b"BYSCORE" if zrange => (o.by_score, o.by_lex) = (true, false),
            b"BYLEX" if zrange => (o.by_score, o.by_lex) = (false, true),
            b"REV" if zrange => o.rev = true,
            b"LIMIT" if i + 2 < args.len() => {
                let (Some(offset), Some(count)) = (parse_i64(args[i + 1]), parse_i64(args[i + 2])) else {
                    return Err(Reply::not_an_integer());
                };
                o.limit = Some((offset, count));
                i += 2;
            }
            _ => return Err(Reply::syntax_error()),
        }
        i += 1;
    }
    Ok(o)
}

/// Builds the selector for `ZRANGE`-style `min max` arguments (already swapped for `REV`).
fn selector(min: &[u8], max: &[u8], by_score: bool, by_lex: bool) -> Result<Selector, Reply> {
    if by_score {
        let (Some(min), Some(max)) = (parse_bound(min), parse_bound(max)) else {
            return Err(Reply::error("ERR min or max is not a float"));
        };
        Ok(Selector::Score(min, max))
    } else if by_lex {
        let (Some(min), Some(max)) = (parse_lex(min), parse_lex(max)) else {
            return Err(Reply::error("ERR min or max not valid string range item"));
        };
        Ok(Selector::Lex(min, max))
    } else {
        let (Some(start), Some(stop)) = (parse_i64(min), parse_i64(max)) else {
            return Err(Reply::not_an_integer());
        };
        Ok(Selector::Rank(start, stop))
    }
}

/// `ZRANGE key start stop [BYSCORE|BYLEX] [REV] [LIMIT offset count] [WITHSCORES]`.
fn zrange(view: &View, args: &[&[u8]]) -> Reply {
    let o = match parse_range_options(&args[4..], true) {
        Ok(o) => o,
        Err(reply) => return reply,
    };
    if o.limit.is_some() && !o.by_score && !o.by_lex {
        return Reply::error("ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX");
    }
    if o.with_scores && o.by_lex {
        return Reply::error("ERR syntax error, WITHSCORES not supported in combination with BYLEX");
    }
    // With REV and BYSCORE or BYLEX, the arguments come as max then min.
    let (min, max) = if o.rev && (o.by_score || o.by_lex) { (args[3], args[2]) } else { (args[2], args[3]) };
    match selector(min, max, o.by_score, o.by_lex) {
        Ok(sel) => range_reply(view, args[1], sel, o.rev, o.limit, o.with_scores),
        Err(reply) => reply,
    }
}

/// `ZRANGEBYSCORE key min max [WITHSCORES] [LIMIT offset count]`.
fn zrangebyscore(view: &View, args: &[&[u8]]) -> Reply {
    let o = match parse_range_options(&args[4..], false) {
        Ok(o) => o,
        Err(reply) => return reply,
    };
    match selector(args[2], args[3], true, false) {
        Ok(sel) => range_reply(view, args[1], sel, false, o.limit, o.with_scores),
        Err(reply) => reply,
    }
}

/// `ZREVRANGEBYSCORE key max min [WITHSCORES] [LIMIT offset count]`.
fn zrevrangebyscore(view: &View, args: &[&[u8]]) -> Reply {
    let o = match parse_range_options(&args[4..], false) {
        Ok(o) => o,
        Err(reply) => return reply,
    };
    match selector(args[3], args[2], true, false) {
        Ok(sel) => range_reply(view, args[1], sel, true, o.limit, o.with_scores),
        Err(reply) => reply,
    }
}

/// `ZREVRANGE key start stop [WITHSCORES]`.
fn zrevrange(view: &View, args: &[&[u8]]) -> Reply {
    let with_scores = match &args[4..] {
        [] => false,
        [w] if w.eq_ignore_ascii_case(b"WITHSCORES") => true,
        _ => return Reply::syntax_error(),
    };
    match selector(args[2], args[3], false, false) {
        Ok(sel) => range_reply(view, args[1], sel, true, None, with_scores),
        Err(reply) => reply,
    }
}

/// `ZRANGEBYLEX key min max [LIMIT offset count]`.
fn zrangebylex(view: &View, args: &[&[u8]]) -> Reply {
    let o = match parse_range_options(&args[4..], false) {
        Ok(o) if !o.with_scores => o,
        Ok(_) => return Reply::syntax_error(),
        Err(reply) => return reply,
    };
    match selector(args[2], args[3], false, true) {
        Ok(sel) => range_reply(view, args[1], sel, false, o.limit, false),
        Err(reply) => reply,
    }
}

fn pop(tx: &mut Tx, args: &[&[u8]], highest: bool) -> Reply {
    if args.len() > 3 {
        return Reply::syntax_error();
    }
    let count = match args.get(2).map(|c| parse_i64(c)) {
        None => 1,
        Some(Some(n)) if n >= 0 => n as usize,
        Some(Some(_)) => return Reply::error("ERR value is out of range, must be positive"),
        Some(None) => return Reply::not_an_integer(),
    };
    expire_if_due(tx, args[1]);
    let mut header = match find(tx, args[1]) {
        Ok(Some(h)) => h,
        Ok(None) => return Reply::Array(Vec::new()),
        Err(reply) => return reply,
    };
    let (prefix, end) = (order_prefix(header.id), order_end(header.id));
    let items = if highest { ordered_rev(tx, &prefix, &end, count) } else { ordered(tx, &prefix, &end, count) };
    let mut out = Vec::with_capacity(items.len());
    for (score, member) in items {
        delete_member(tx, header.id, &member, score);
        header.len -= 1;
        out.push((Reply::Bulk(member), Reply::Double(score)));
    }
    if !out.is_empty() {
        collection::save(tx, args[1], header, false);
    }
    // Without a count, Redis 7 answers one flat pair even in RESP3; with one, a list of pairs.
    if args.len() == 2 {
        return Reply::Array(out.into_iter().flat_map(|(m, s)| [m, s]).collect());
    }
    Reply::Pairs(out)
}

/// `ZPOPMIN key [count]`: `[member, score, ...]`, lowest first.
fn zpopmin(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    pop(tx, args, false)
}

/// `ZPOPMAX key [count]`: highest first.
fn zpopmax(tx: &mut Tx, args: &[&[u8]]) -> Reply {
    pop(tx, args, true)
}

/// `ZSCAN key cursor [MATCH pattern] [COUNT count]`: `[cursor, [member, score, ...]]`, cursors
/// stable as `SCAN`'s (positions in the members' hash order).
fn zscan(view: &View, args: &[&[u8]]) -> Reply {
    collection::scan_elements(view, args, Kind::ZSet, false, |member, value, _, out| {
        let score = <[u8; 8]>::try_from(value).map_or(0.0, f64::from_le_bytes);
        out.push(Reply::Bulk(member.to_vec()));
        out.push(Reply::Double(score));
    })
}
