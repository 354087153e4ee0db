//! Blocking pops: `BLPOP`, `BRPOP`, `BLMOVE`, `BRPOPLPUSH`, `BZPOPMIN` and `BZPOPMAX`.
//!
//! The module has no notion of a client that waits, and needs none: the node answers a blocking
//! pop by running the module's own non-blocking command (`LPOP`, `LMOVE`, `ZPOPMIN`, ...) through
//! the log, like any write, whenever one of the keys may have gained an element, until one pop
//! succeeds or the timeout passes. "May have gained" comes from the apply loop, which wakes the
//! clients blocked on the keys each applied write names (`raft::state_machine::key_waiters`), on
//! whichever node the client waits. Before each pop a local read (`LLEN`, `ZCARD`) skips the
//! empty keys, so a blocked client costs no log entry until there is something to take.
//!
//! What differs from Redis: when one push wakes several clients, they race for the element
//! through the log (one gets it, the others block again) rather than being served in the order
//! they blocked; and inside `MULTI` a blocking pop is refused (Redis runs it without blocking).
//! The timeout is judged by the serving node's clock.

use super::Shared;
use super::local::{is, wrong_arity};
use super::protocol::Response;
use super::routing::{Pending, cluster_error, route_write, write};
use super::session::Session;
use crate::node::ClusterError;
use bytes::{Bytes, BytesMut};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Input a blocked connection reads ahead (pipelined requests, kept for after the pop) before it
/// stops reading until the pop ends.
const READ_AHEAD_MAX: usize = 1 << 20;

/// What one attempt runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pop {
    /// `LPOP key` (`left`) or `RPOP key`.
    List {
        /// From the head.
        left: bool,
    },
    /// `LMOVE source destination from to`.
    Move {
        /// Where the element goes.
        destination: Bytes,
        /// `LEFT` or `RIGHT`: the end it leaves from.
        from: Bytes,
        /// `LEFT` or `RIGHT`: the end it arrives at.
        to: Bytes,
    },
    /// `ZPOPMIN key` or `ZPOPMAX key` (`max`).
    ZSet {
        /// The highest score.
        max: bool,
    },
}

/// A blocking pop, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocking {
    /// What to run on a key that has elements.
    pub pop: Pop,
    /// The keys to take from, in the order they are tried.
    pub keys: Vec<Bytes>,
    /// How long to wait; `None` is for ever (a timeout of 0).
    pub timeout: Option<Duration>,
}

/// Parses a blocking command (`name` lower-case, arity already checked).
pub fn parse(name: &str, args: &[Bytes]) -> Result<Blocking, Response> {
    let timeout = parse_timeout(&args[args.len() - 1])?;
    let keys_between = |last: usize| args[1..last].to_vec();
    let (pop, keys) = match name {
        "blpop" | "brpop" => (Pop::List { left: name == "blpop" }, keys_between(args.len() - 1)),
        "bzpopmin" | "bzpopmax" => (Pop::ZSet { max: name == "bzpopmax" }, keys_between(args.len() - 1)),
        "blmove" => {
            let end = |arg: &Bytes| {
                if is(arg, "LEFT") || is(arg, "RIGHT") {
                    Ok(arg.clone())
                } else {
                    Err(Response::error("ERR syntax error"))
                }
            };
            (Pop::Move { destination: args[2].clone(), from: end(&args[3])?, to: end(&args[4])? }, keys_between(2))
        }
        "brpoplpush" => (
            Pop::Move {
                destination: args[2].clone(),
                from: Bytes::from_static(b"RIGHT"),
                to: Bytes::from_static(b"LEFT"),
            },
            keys_between(2),
        ),
        other => return Err(wrong_arity(other)),
    };
    Ok(Blocking { pop, keys, timeout })
}

/// Redis's timeout argument: seconds, fractions allowed, 0 for ever.
fn parse_timeout(arg: &[u8]) -> Result<Option<Duration>, Response> {
    let seconds = std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite())
        .ok_or_else(|| Response::error("ERR timeout is not a float or out of range"))?;
    if seconds < 0.0 {
        return Err(Response::error("ERR timeout is negative"));
    }
    // Past what a Duration holds is for ever too.
    Ok((seconds > 0.0).then(|| Duration::try_from_secs_f64(seconds).ok()).flatten())
}

impl Blocking {
    /// The module commands this needs: the pop, and the local look at a key's size.
    fn commands(&self) -> (&'static str, &'static str) {
        match &self.pop {
            Pop::List { left: true } => ("LPOP", "LLEN"),
            Pop::List { left: false } => ("RPOP", "LLEN"),
            Pop::Move { .. } => ("LMOVE", "LLEN"),
            Pop::ZSet { max: false } => ("ZPOPMIN", "ZCARD"),
            Pop::ZSet { max: true } => ("ZPOPMAX", "ZCARD"),
        }
    }

    fn pop_args(&self, key: &Bytes) -> Vec<Bytes> {
        let name = Bytes::from_static(self.commands().0.as_bytes());
        match &self.pop {
            Pop::Move { destination, from, to } => {
                vec![name, key.clone(), destination.clone(), from.clone(), to.clone()]
            }
            _ => vec![name, key.clone()],
        }
    }

    /// The client's reply for a pop's reply: `None` when the pop found nothing (another client
    /// took the element first).
    fn reply(&self, key: &Bytes, popped: Response) -> Option<Response> {
        match (&self.pop, popped) {
            (_, Response::Null | Response::NullArray) => None,
            (_, error @ Response::Error(_)) => Some(error),
            (Pop::List { .. }, value) => Some(Response::Array(vec![Response::Bulk(key.clone()), value])),
            (Pop::Move { .. }, value) => Some(value),
            (Pop::ZSet { .. }, Response::Array(pair)) if pair.is_empty() => None,
            (Pop::ZSet { .. }, Response::Array(pair)) => {
                Some(Response::Array(std::iter::once(Response::Bulk(key.clone())).chain(pair).collect()))
            }
            (Pop::ZSet { .. }, other) => Some(other),
        }
    }

    /// What the client gets when the timeout passes.
    fn timed_out(&self) -> Response {
        match self.pop {
            Pop::Move { .. } => Response::Null,
            _ => Response::NullArray,
        }
    }
}

/// The client went away while blocked: nothing more is owed to it.
pub struct Disconnected;

/// Serves a blocking pop: tries the keys in order, then waits for one of them to be written, the
/// timeout, or the client to leave (`Err`). Requests the client pipelines meanwhile are read
/// into `input` and run afterwards.
pub async fn run<R: AsyncRead + Unpin>(
    shared: &Shared,
    session: &mut Session,
    blocking: Blocking,
    rd: &mut R,
    input: &mut BytesMut,
) -> Result<Response, Disconnected> {
    let node = &shared.node;
    if !node.is_initialized() {
        return Ok(cluster_error(&ClusterError::NoCluster));
    }
    let (pop_name, size_name) = blocking.commands();
    let module = node.module();
    if module.command_index(pop_name.as_bytes()).is_none() || module.command_index(size_name.as_bytes()).is_none() {
        return Ok(Response::error(format!(
            "ERR the active module has no {pop_name} and {size_name}, which a blocking pop runs"
        )));
    }
    // Registered before the first look, so a write applied in between still wakes this client.
    let registration = node.key_waiters().register(&blocking.keys);
    let deadline = blocking.timeout.map(|t| tokio::time::Instant::now() + t);
    shared.blocked_clients.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let _blocked = BlockedGuard(shared);
    loop {
        for key in &blocking.keys {
            match size(shared, size_name, key).await {
                Ok(0) => continue,
                Ok(_) => {}
                Err(response) => return Ok(response),
            }
            let args = blocking.pop_args(key);
            let route = route_write(shared, session);
            let popped = write(shared, session, route, args).await.resolve().await;
            if let Some(response) = blocking.reply(key, popped) {
                return Ok(response);
            }
        }
        let timeout = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = registration.written() => {}
            () = timeout => return Ok(blocking.timed_out()),
            read = rd.read_buf(input), if input.len() < READ_AHEAD_MAX => match read {
                Ok(0) | Err(_) => return Err(Disconnected),
                Ok(_) => {}
            },
        }
    }
}

/// Counts the connection as blocked while it lives (`INFO clients`' `blocked_clients`).
struct BlockedGuard<'a>(&'a Shared);

impl Drop for BlockedGuard<'_> {
    fn drop(&mut self) {
        self.0.blocked_clients.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The number of elements at `key` on this node (a local read: a follower may lag, and is woken
/// again when it catches up), or the error to answer (`WRONGTYPE`, no cluster).
async fn size(shared: &Shared, command: &'static str, key: &Bytes) -> Result<i64, Response> {
    let args = [Bytes::from_static(command.as_bytes()), key.clone()];
    let mut encoded = Vec::with_capacity(fsm_sdk::codec::encoded_args_len(&args));
    fsm_sdk::codec::encode_args(&args, &mut encoded);
    match Pending::Node(shared.node.submit_read(encoded, true).await).resolve().await {
        Response::Integer(n) => Ok(n),
        other => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words.iter().map(|w| Bytes::copy_from_slice(w.as_bytes())).collect()
    }

    #[test]
    fn keys_timeouts_and_ends_are_parsed_as_redis_does() {
        let b = parse("blpop", &args(&["BLPOP", "a", "b", "1.5"])).expect("parses");
        assert_eq!(b.keys, args(&["a", "b"]));
        assert_eq!(b.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(b.pop, Pop::List { left: true });
        assert_eq!(parse("brpop", &args(&["BRPOP", "a", "0"])).expect("parses").timeout, None, "0 is for ever");
        let m = parse("blmove", &args(&["BLMOVE", "s", "d", "left", "RIGHT", "2"])).expect("parses");
        assert_eq!(m.keys, args(&["s"]));
        assert_eq!(m.pop_args(&m.keys[0]), args(&["LMOVE", "s", "d", "left", "RIGHT"]));
        let r = parse("brpoplpush", &args(&["BRPOPLPUSH", "s", "d", "0"])).expect("parses");
        assert_eq!(r.pop_args(&r.keys[0]), args(&["LMOVE", "s", "d", "RIGHT", "LEFT"]));
        assert_eq!(parse("bzpopmax", &args(&["BZPOPMAX", "z", "1"])).expect("parses").pop, Pop::ZSet { max: true });
        let error = |r: Result<Blocking, Response>| match r {
            Err(Response::Error(text)) => text,
            other => panic!("not an error: {other:?}"),
        };
        assert_eq!(error(parse("blpop", &args(&["BLPOP", "a", "-1"]))), "ERR timeout is negative");
        assert_eq!(error(parse("blpop", &args(&["BLPOP", "a", "soon"]))), "ERR timeout is not a float or out of range");
        assert_eq!(error(parse("blpop", &args(&["BLPOP", "a", "inf"]))), "ERR timeout is not a float or out of range");
        assert_eq!(error(parse("blmove", &args(&["BLMOVE", "s", "d", "UP", "LEFT", "0"]))), "ERR syntax error");
    }

    #[test]
    fn replies_take_redis_shapes() {
        let key = Bytes::from_static(b"q");
        let list = parse("blpop", &args(&["BLPOP", "q", "0"])).expect("parses");
        assert_eq!(list.reply(&key, Response::Null), None, "nothing popped: block again");
        assert_eq!(
            list.reply(&key, Response::Bulk(Bytes::from_static(b"x"))),
            Some(Response::Array(vec![Response::Bulk(key.clone()), Response::Bulk(Bytes::from_static(b"x"))]))
        );
        assert_eq!(list.timed_out(), Response::NullArray);
        let zset = parse("bzpopmin", &args(&["BZPOPMIN", "q", "0"])).expect("parses");
        assert_eq!(zset.reply(&key, Response::Array(vec![])), None);
        let popped = vec![Response::Bulk(Bytes::from_static(b"m")), Response::Double(1.5)];
        let mut expected = vec![Response::Bulk(key.clone())];
        expected.extend(popped.clone());
        assert_eq!(zset.reply(&key, Response::Array(popped)), Some(Response::Array(expected)));
        let wrong = Response::error("WRONGTYPE Operation against a key holding the wrong kind of value");
        assert_eq!(zset.reply(&key, wrong.clone()), Some(wrong));
        let moved = parse("blmove", &args(&["BLMOVE", "q", "d", "LEFT", "LEFT", "0"])).expect("parses");
        assert_eq!(moved.timed_out(), Response::Null);
    }
}
