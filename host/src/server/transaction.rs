//! Transactions at the connection: `MULTI`, `EXEC`, `DISCARD`, `WATCH`, `UNWATCH`.
//!
//! Between `MULTI` and `EXEC` the connection queues commands (answering `+QUEUED`), checking each
//! as Redis does when it queues: an unknown command or a wrong arity is answered with its error
//! and dooms the transaction (`EXEC` then answers `EXECABORT`). `EXEC` submits every queued module
//! command as **one item of one log entry** ([`crate::runtime::encode_transaction`]): every
//! replica applies them back to back, in one store transaction, with nothing in between; reads
//! among them see the transaction's own writes. Commands the server answers itself (`PING`,
//! `ECHO`, ...) are answered at `EXEC` and their replies put in their places.
//!
//! `WATCH` reads each key's token from the module (a linearizable read: it reflects every write
//! acknowledged before it) and `EXEC` carries the tokens; the state machine compares them again
//! when it applies the entry, and if any differs the transaction runs nothing and `EXEC` answers
//! a null array. The check is part of the replicated apply, so it holds across replicas, leader
//! changes and forwarding: whoever proposes the entry, it is judged against the state at its
//! index.

use super::Shared;
use super::commands;
use super::protocol::Response;
use super::routing::cluster_error;
use super::session::Session;
use crate::node::ClusterError;
use bytes::Bytes;
use fsm_sdk::{Reply, codec};

use super::local::{FORWARDED_EXEC, is, wrong_arity};

/// Commands one transaction may queue: past it, the transaction is doomed (`EXECABORT`).
pub const QUEUED_COMMANDS_MAX: usize = 100_000;
/// Bytes of queued commands one transaction may hold, for the same reason: the transaction is
/// one log entry, and every replica holds it in memory while applying it.
pub const QUEUED_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Local commands that may be queued (answered at `EXEC`). Cluster and admin commands are
/// refused inside a transaction, as Redis refuses its `no-multi` commands.
const QUEUEABLE_LOCAL: &[&str] = &["ping", "echo", "select", "command", "info", "config", "leader", "nodes", "unwatch"];

/// One queued command.
enum Queued {
    /// A module command, encoded ([`codec::encode_args`]).
    Module(Vec<u8>),
    /// A command the server answers itself, at `EXEC`.
    Local(Vec<Bytes>),
}

/// A transaction being queued (`MULTI` was sent).
#[derive(Default)]
pub struct Transaction {
    queued: Vec<Queued>,
    bytes: usize,
    /// A queuing error happened: `EXEC` answers `EXECABORT`.
    doomed: bool,
}

/// What the connection should do with a request.
pub enum Step {
    /// Not a transaction matter: dispatch it as usual.
    Pass,
    /// Answer with this now (in order with the replies owed).
    Reply(Response),
    /// `EXEC`: wait for the replies owed, then run [`exec`].
    Exec,
    /// `WATCH`: wait for the replies owed, then run [`watch`].
    Watch,
}

/// Decides what to do with `args` given the session's transaction state; queues it when a
/// transaction is open. Pure apart from the session: unit-tested without a node.
pub fn step(shared: &Shared, session: &mut Session, args: &[Bytes]) -> Step {
    let name = &args[0];
    let in_multi = session.transaction.is_some();
    if is(name, "MULTI") {
        return Step::Reply(match (args.len(), in_multi) {
            (1, false) => {
                session.transaction = Some(Transaction::default());
                Response::ok()
            }
            (1, true) => Response::error("ERR MULTI calls can not be nested"),
            _ => doom(session, wrong_arity("multi")),
        });
    }
    if is(name, "EXEC") {
        return match (args.len(), in_multi) {
            (_, false) => Step::Reply(Response::error("ERR EXEC without MULTI")),
            (1, true) => Step::Exec,
            _ => Step::Reply(doom(session, wrong_arity("exec"))),
        };
    }
    if is(name, "DISCARD") {
        return Step::Reply(match (args.len(), in_multi) {
            (_, false) => Response::error("ERR DISCARD without MULTI"),
            (1, true) => {
                session.transaction = None;
                session.watched.clear();
                Response::ok()
            }
            _ => doom(session, wrong_arity("discard")),
        });
    }
    if is(name, "WATCH") {
        return match (args.len(), in_multi) {
            (1, _) => Step::Reply(doom(session, wrong_arity("watch"))),
            (_, true) => Step::Reply(Response::error("ERR WATCH inside MULTI is not allowed")),
            (_, false) => Step::Watch,
        };
    }
    if !in_multi {
        if is(name, "UNWATCH") {
            session.watched.clear();
            return Step::Reply(if args.len() == 1 { Response::ok() } else { wrong_arity("unwatch") });
        }
        return Step::Pass;
    }
    // Inside MULTI: queue it, or refuse it and doom the transaction.
    Step::Reply(queue(shared, session, args))
}

/// Marks the open transaction (if any) as doomed and passes `response` on.
pub(super) fn doom(session: &mut Session, response: Response) -> Response {
    if let Some(transaction) = session.transaction.as_mut() {
        transaction.doomed = true;
    }
    response
}

fn queue(shared: &Shared, session: &mut Session, args: &[Bytes]) -> Response {
    let module = shared.node.module();
    let item = if let Some(index) = module.command_index(&args[0]) {
        let info = &module.commands()[index];
        if !info.arity.accepts(args.len()) {
            return doom(session, wrong_arity(&info.name.to_ascii_lowercase()));
        }
        let mut encoded = Vec::with_capacity(codec::encoded_args_len(args));
        codec::encode_args(args, &mut encoded);
        Queued::Module(encoded)
    } else {
        let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
        if QUEUEABLE_LOCAL.contains(&name.as_str()) {
            Queued::Local(args.to_vec())
        } else if super::local::is_local(&name) {
            return doom(session, Response::error("ERR Command not allowed inside a transaction"));
        } else {
            let mut encoded = Vec::with_capacity(codec::encoded_args_len(args));
            codec::encode_args(args, &mut encoded);
            return doom(session, crate::runtime::unknown_command(&encoded).into());
        }
    };
    let Some(transaction) = session.transaction.as_mut() else { return Response::error("ERR EXEC without MULTI") };
    let bytes = match &item {
        Queued::Module(encoded) => encoded.len(),
        Queued::Local(args) => args.iter().map(Bytes::len).sum(),
    };
    if transaction.queued.len() >= QUEUED_COMMANDS_MAX || transaction.bytes + bytes > QUEUED_BYTES_MAX {
        transaction.doomed = true;
        return Response::error(format!(
            "ERR transaction too large: at most {QUEUED_COMMANDS_MAX} commands and {QUEUED_BYTES_MAX} bytes"
        ));
    }
    transaction.bytes += bytes;
    transaction.queued.push(item);
    Response::Simple("QUEUED".into())
}

/// Runs `EXEC` (the replies owed before it are out): submits the queued module commands as one
/// transaction, answers the local ones, and assembles the reply in queue order.
pub async fn exec(shared: &Shared, session: &mut Session) -> Response {
    let transaction = session.transaction.take().unwrap_or_default();
    let watched = std::mem::take(&mut session.watched);
    if transaction.doomed {
        return Response::error("EXECABORT Transaction discarded because of previous errors.");
    }
    let commands: Vec<&[u8]> = transaction
        .queued
        .iter()
        .filter_map(|q| match q {
            Queued::Module(encoded) => Some(encoded.as_slice()),
            Queued::Local(_) => None,
        })
        .collect();
    let mut module_replies = if commands.is_empty() && watched.is_empty() {
        Vec::new()
    } else {
        let item = crate::runtime::encode_transaction(&watched, &commands);
        match submit(shared, session, item).await {
            Response::Array(replies) => replies,
            // A watched key changed: nothing ran.
            Response::Null | Response::NullArray => return Response::NullArray,
            other => return other,
        }
    };
    module_replies.reverse();
    let mut replies = Vec::with_capacity(transaction.queued.len());
    for queued in &transaction.queued {
        replies.push(match queued {
            Queued::Module(_) => module_replies.pop().unwrap_or_else(|| Response::error("ERR missing reply")),
            Queued::Local(args) => match commands::run_local(shared, session, args) {
                commands::Outcome::Reply(response) | commands::Outcome::Close(response) => response,
                commands::Outcome::Cluster(_) | commands::Outcome::Block(_) | commands::Outcome::Unknown => {
                    Response::error("ERR Command not allowed inside a transaction")
                }
            },
        });
    }
    Response::Array(replies)
}

/// Proposes a transaction here, or forwards it to the leader, as a write is routed.
async fn submit(shared: &Shared, session: &mut Session, item: Vec<u8>) -> Response {
    match super::routing::route_write(shared, session) {
        super::routing::Route::Local => match shared.node.submit_write(item).await.await {
            Ok(Ok(reply)) => exec_response(reply),
            Ok(Err(e)) => cluster_error(&e),
            Err(_) => Response::error(
                "UNKNOWN the transaction's outcome is unknown (the node stopped): it may or may not have been applied",
            ),
        },
        super::routing::Route::Forward(addr) => {
            let upstream = session.upstream_to(&addr, shared.forward_timeout, shared.security().upstream_tls.clone());
            upstream
                .submit(vec![Bytes::from_static(FORWARDED_EXEC.as_bytes()), Bytes::from(item)])
                .await
                .await
                .unwrap_or_else(|_| {
                    Response::error(
                        "UNKNOWN the forwarded transaction's outcome is unknown: it may or may not have been applied",
                    )
                })
        }
        super::routing::Route::Reply(response) => response,
    }
}

/// The reply to [`FORWARDED_EXEC`] on the leader: proposes the transaction a follower sent.
pub async fn forwarded_exec(shared: &Shared, args: &[Bytes]) -> Response {
    let [_, item] = args else { return wrong_arity(&FORWARDED_EXEC.to_ascii_lowercase()) };
    if let Err(e) = shared.node.route_to_leader() {
        // Forwarded once already: never forward again.
        return match e {
            ClusterError::NotLeader { .. } => Response::error("CLUSTERDOWN No raft leader"),
            other => cluster_error(&other),
        };
    }
    match shared.node.submit_write(item.to_vec()).await.await {
        Ok(Ok(reply)) => exec_response(reply),
        Ok(Err(e)) => cluster_error(&e),
        Err(_) => Response::error(
            "UNKNOWN the transaction's outcome is unknown (the node stopped): it may or may not have been applied",
        ),
    }
}

/// `EXEC`'s reply from the state machine's: a null (a watched key changed) is a null array.
fn exec_response(reply: Reply) -> Response {
    match reply {
        Reply::Null => Response::NullArray,
        other => Response::from(other),
    }
}

/// Runs `WATCH key [key ...]` (the replies owed before it are out): reads each key's token with
/// a linearizable read and remembers it for `EXEC`.
pub async fn watch(shared: &Shared, session: &mut Session, args: &[Bytes]) -> Response {
    for key in &args[1..] {
        let request = crate::runtime::encode_watch(key);
        let token = match shared.node.submit_read(request, false).await.await {
            Ok(Ok(Reply::Bulk(token))) => token,
            Ok(Ok(Reply::Error(text))) => return Response::Error(text),
            Ok(Ok(_)) => return Response::error("ERR the state machine returned no watch token"),
            Ok(Err(e)) => return cluster_error(&e),
            Err(_) => return Response::error("ERR the node stopped"),
        };
        session.watched.push((key.to_vec(), token));
    }
    Response::ok()
}
