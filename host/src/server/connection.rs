//! One client connection: reads requests, runs them, writes replies in order.
//!
//! **Pipelining.** Every complete request in the read buffer is dispatched before any reply is
//! awaited: writes are queued for the node's write batcher, reads for its read batcher, and both
//! are answered later, in order. Only two orderings need care, and both are kept by draining the
//! replies pending so far before the kind changes: a read after a write on the same connection
//! must see it (so it waits for the write), and a write after a read must not be seen by it (so it
//! waits for the read). Cluster commands (`JOIN`, ...) are barriers too.
//!
//! **Errors.** A command error is a reply and the connection goes on; a protocol error is
//! answered with Redis's `ERR Protocol error: ...` and the connection is closed (after the replies
//! to the requests before it).

use super::Shared;
use super::command_stats::Meter;
use super::commands::{self, Outcome};
use super::protocol::{self, Protocol, Response};
use super::routing::{Pending, Route, cluster_error, route_write, write};
use super::session::Session;
use super::transaction::{self, Step};
use super::upstream::FORWARDED_MARKER;
use crate::node::ClusterError;
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Replies pending before the connection drains them anyway (bounds memory per connection).
const PENDING_MAX: usize = 16 * 1024;
/// Output buffered before it is written even if more replies are coming.
const OUTPUT_FLUSH_BYTES: usize = 64 * 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
}

/// A local command with more arguments than this runs under `block_in_place`: its work grows
/// with its arguments (`COMMAND INFO`, `INFO`, `CONFIG GET` with many names), and the worker
/// busy with it must hand this runtime's other connections to another thread meanwhile.
const LOCAL_ARGS_INLINE_MAX: usize = 1024;

/// The replies owed to the client, in request order.
#[derive(Default)]
struct Pipeline {
    pending: VecDeque<(Pending, Option<Meter>)>,
    kind: Option<Kind>,
    /// Where the pending writes went: `Some("")` for this node, `Some(addr)` for the leader at
    /// `addr` through the upstream. Writes to another destination wait for these, so a leader
    /// change can never reorder one connection's writes.
    write_destination: Option<String>,
}

impl Pipeline {
    async fn drain(&mut self, protocol: Protocol, out: &mut BytesMut) {
        while let Some((item, meter)) = self.pending.pop_front() {
            let response = item.resolve().await;
            if let Some(meter) = meter {
                meter.finish(&response);
            }
            protocol::encode(&response, protocol, out);
        }
        self.kind = None;
        self.write_destination = None;
    }
}

impl Pipeline {
    /// Queues a reply owed to the client, measured by `meter` when it is a known command.
    fn owe(&mut self, meter: Option<Meter>, reply: Pending) {
        self.pending.push_back((reply, meter));
    }
}

/// The stats row of a command the server answers itself (`None` for anything else: unknown
/// names get no row).
fn local_slot(shared: &Shared, name: &[u8]) -> Option<std::sync::Arc<super::command_stats::CommandSlot>> {
    if name.len() > 16 {
        return None;
    }
    let lower = String::from_utf8_lossy(name).to_ascii_lowercase();
    super::local::is_local(&lower).then(|| shared.commands.slot(&lower))
}

/// Serves one client until it quits, breaks the protocol, or disconnects.
/// `rd` and `wr` are the connection's halves (plain TCP or TLS); `peer` its address.
pub async fn serve<R, W>(mut rd: R, mut wr: W, peer: String, shared: std::sync::Arc<Shared>, id: u64)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    // The generation first: a reload in between then only makes the session refresh needlessly.
    let generation = shared.security_generation();
    let initial_user = shared.security().acl.initial_user();
    let mut session = Session::new(id, peer, shared.stale_reads_default, initial_user, generation);
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut out = BytesMut::with_capacity(16 * 1024);
    let mut pipeline = Pipeline::default();
    let mut first_request = true;
    loop {
        if input.capacity() - input.len() < 4096 {
            input.reserve(16 * 1024);
        }
        match rd.read_buf(&mut input).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let mut close = false;
        loop {
            let args = match protocol::parse_request(&mut input, &shared.protocol_limits) {
                Ok(Some(args)) => args,
                Ok(None) => break,
                Err(e) => {
                    pipeline.drain(session.protocol, &mut out).await;
                    protocol::encode(&Response::Error(e.0), session.protocol, &mut out);
                    close = true;
                    break;
                }
            };
            if args.is_empty() {
                continue;
            }
            if first_request && protocol::is_http_probe(&args) {
                tracing::warn!(peer = %session.peer, "possible cross-protocol attack (HTTP request): closing");
                close = true;
                break;
            }
            first_request = false;
            match dispatch(&shared, &mut session, args, &mut pipeline, &mut out).await {
                Flow::Continue => {}
                Flow::Close => {
                    close = true;
                    break;
                }
                Flow::Block(blocking, meter) => {
                    // Everything owed before it goes out first: the client may wait a while.
                    pipeline.drain(session.protocol, &mut out).await;
                    if !out.is_empty() {
                        if wr.write_all(&out).await.is_err() {
                            return;
                        }
                        out.clear();
                    }
                    let Ok(response) = super::blocking::run(&shared, &mut session, blocking, &mut rd, &mut input).await
                    else {
                        // The client left while blocked.
                        return;
                    };
                    if let Some(meter) = meter {
                        meter.finish(&response);
                    }
                    protocol::encode(&response, session.protocol, &mut out);
                }
            }
            if pipeline.pending.len() >= PENDING_MAX {
                pipeline.drain(session.protocol, &mut out).await;
            }
            if out.len() >= OUTPUT_FLUSH_BYTES && wr.write_all(&out).await.is_err() {
                return;
            }
            if out.len() >= OUTPUT_FLUSH_BYTES {
                out.clear();
            }
        }
        pipeline.drain(session.protocol, &mut out).await;
        if !out.is_empty() {
            if wr.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if close {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

enum Flow {
    Continue,
    Close,
    /// A blocking pop: [`serve`] runs it, with the connection's input at hand.
    Block(super::blocking::Blocking, Option<Meter>),
}

async fn dispatch(
    shared: &Shared,
    session: &mut Session,
    args: Vec<Bytes>,
    pipeline: &mut Pipeline,
    out: &mut BytesMut,
) -> Flow {
    let node = &shared.node;
    let name = &args[0];
    let module = node.module();
    let module_index = module.command_index(name);
    let mut meter = match module_index {
        Some(index) => Some(Meter::start(session.module_slots.slot(&shared.commands, &module, index))),
        None => local_slot(shared, name).map(Meter::start),
    };
    super::auth::refresh(shared, session);
    if let Err(refusal) = super::auth::gate(shared, session, &args, &module, module_index) {
        let response = match session.transaction.take() {
            // A refused EXEC ends the transaction, as in Redis.
            Some(_) if name.eq_ignore_ascii_case(b"EXEC") => {
                session.watched.clear();
                match refusal {
                    Response::Error(text) => {
                        Response::error(format!("EXECABORT Transaction discarded because of: {text}"))
                    }
                    other => other,
                }
            }
            transaction => {
                session.transaction = transaction;
                transaction::doom(session, refusal)
            }
        };
        pipeline.owe(meter.take(), Pending::Ready(response));
        return Flow::Continue;
    }
    if name.eq_ignore_ascii_case(FORWARDED_MARKER.as_bytes()) {
        session.forwarded = true;
        pipeline.owe(meter.take(), Pending::Ready(Response::ok()));
        return Flow::Continue;
    }
    if name.eq_ignore_ascii_case(super::local::PROPOSE_MODULE.as_bytes()) {
        // Internal: a follower's MODULE RELOAD. Waits for everything before it, like the
        // cluster commands.
        pipeline.drain(session.protocol, out).await;
        let response = commands::propose_module(shared, &args).await;
        pipeline.owe(meter.take(), Pending::Ready(response));
        return Flow::Continue;
    }
    if name.eq_ignore_ascii_case(super::local::FORWARDED_EXEC.as_bytes()) {
        // Internal: a follower's EXEC. Waits for everything before it, like a cluster command.
        pipeline.drain(session.protocol, out).await;
        let response = transaction::forwarded_exec(shared, &args).await;
        pipeline.owe(meter.take(), Pending::Ready(response));
        return Flow::Continue;
    }
    if session.transaction.is_some() || is_transaction_command(name) {
        let response = match transaction::step(shared, session, &args) {
            Step::Pass => None,
            Step::Reply(response) => Some(response),
            Step::Exec => {
                pipeline.drain(session.protocol, out).await;
                Some(transaction::exec(shared, session).await)
            }
            Step::Watch => {
                pipeline.drain(session.protocol, out).await;
                Some(transaction::watch(shared, session, &args).await)
            }
        };
        if let Some(response) = response {
            pipeline.owe(meter.take(), Pending::Ready(response));
            return Flow::Continue;
        }
    }
    // The module's commands first: they are the hot path.
    if let Some(index) = module_index {
        let info = &module.commands()[index];
        if !info.arity.accepts(args.len()) {
            let text = format!("ERR wrong number of arguments for '{}' command", info.name.to_ascii_lowercase());
            pipeline.owe(meter.take(), Pending::Ready(Response::error(text)));
            return Flow::Continue;
        }
        let kind = if info.write { Kind::Write } else { Kind::Read };
        if pipeline.kind.is_some_and(|k| k != kind) {
            pipeline.drain(session.protocol, out).await;
        }
        pipeline.kind = Some(kind);
        let item = match kind {
            Kind::Write => {
                let route = route_write(shared, session);
                if let Route::Local | Route::Forward(_) = &route {
                    let destination = match &route {
                        Route::Forward(addr) => addr.clone(),
                        _ => String::new(),
                    };
                    if pipeline.write_destination.as_ref().is_some_and(|d| *d != destination) {
                        pipeline.drain(session.protocol, out).await;
                        pipeline.kind = Some(kind);
                    }
                    pipeline.write_destination = Some(destination);
                }
                write(shared, session, route, args).await
            }
            Kind::Read => read(shared, session, &args).await,
        };
        pipeline.owe(meter.take(), item);
        return Flow::Continue;
    }
    // HELLO changes how replies are encoded: the ones owed so far keep the old protocol.
    if name.eq_ignore_ascii_case(b"HELLO") {
        pipeline.drain(session.protocol, out).await;
    }
    let outcome = if args.len() > LOCAL_ARGS_INLINE_MAX {
        tokio::task::block_in_place(|| commands::run_local(shared, session, &args))
    } else {
        commands::run_local(shared, session, &args)
    };
    match outcome {
        Outcome::Reply(response) => {
            pipeline.owe(meter.take(), Pending::Ready(response));
            Flow::Continue
        }
        Outcome::Close(response) => {
            pipeline.owe(meter.take(), Pending::Ready(response));
            Flow::Close
        }
        Outcome::Block(blocking) => Flow::Block(blocking, meter.take()),
        Outcome::Cluster(command) => {
            // Membership and snapshot commands wait for everything before them.
            pipeline.drain(session.protocol, out).await;
            let response = commands::run_cluster(shared, session, command, &args).await;
            pipeline.owe(meter.take(), Pending::Ready(response));
            Flow::Continue
        }
        Outcome::Unknown => {
            let mut encoded = Vec::with_capacity(fsm_sdk::codec::encoded_args_len(&args));
            fsm_sdk::codec::encode_args(&args, &mut encoded);
            let reply = crate::runtime::unknown_command(&encoded);
            pipeline.owe(meter.take(), Pending::Ready(reply.into()));
            Flow::Continue
        }
    }
}

/// Whether `name` is one of the transaction commands [`transaction::step`] handles outside a
/// transaction.
fn is_transaction_command(name: &[u8]) -> bool {
    ["MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH"].iter().any(|c| name.eq_ignore_ascii_case(c.as_bytes()))
}

async fn read(shared: &Shared, session: &Session, args: &[Bytes]) -> Pending {
    let node = &shared.node;
    if !node.is_initialized() {
        return Pending::Ready(cluster_error(&ClusterError::NoCluster));
    }
    let mut encoded = Vec::with_capacity(fsm_sdk::codec::encoded_args_len(args));
    fsm_sdk::codec::encode_args(args, &mut encoded);
    Pending::Node(node.submit_read(encoded, session.stale_reads).await)
}
