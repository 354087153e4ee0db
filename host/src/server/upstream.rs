//! Forwarding writes from a follower to the leader (`follower_writes: forward`).
//!
//! Each client connection that sends a write to a follower gets **one** upstream connection to
//! the leader's Redis address, so its writes keep their order. The upstream announces itself with
//! `REDRAFT.FORWARDED`: the leader then never forwards that connection's writes again (no loops;
//! a non-leader answers `-CLUSTERDOWN` instead). Nothing is ever re-sent: if the upstream breaks
//! with writes in flight, those writes are answered with an "outcome unknown" error and the next
//! write opens a fresh upstream to whoever leads then. If the connection cannot even be made,
//! nothing was sent, and the writes are answered `-CLUSTERDOWN`: known not applied. The queue is bounded
//! ([`UPSTREAM_QUEUE_MAX`]), so a slow leader pushes back on the client.

use super::protocol::{Protocol, Response};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

/// Writes queued towards one upstream before the client is made to wait.
pub const UPSTREAM_QUEUE_MAX: usize = 4096;
/// Connecting to the leader gives up after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The command that marks a connection as carrying forwarded writes.
pub const FORWARDED_MARKER: &str = "REDRAFT.FORWARDED";

/// A user and password, as a client gave them to `AUTH`: an upstream presents them to the
/// leader first, so forwarded commands run there under the client's user.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user's name.
    pub user: Bytes,
    /// The password.
    pub password: Bytes,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ..)", String::from_utf8_lossy(&self.user))
    }
}

struct Job {
    args: Vec<Bytes>,
    reply: oneshot::Sender<Response>,
}

/// One client connection's ordered pipe to the leader, speaking the client's protocol (so a
/// RESP3 client gets the leader's doubles, sets and pairs as such).
pub struct Upstream {
    addr: String,
    protocol: Protocol,
    credentials: Option<Credentials>,
    jobs: mpsc::Sender<Job>,
}

fn unknown(why: &str) -> Response {
    Response::Error(format!(
        "UNKNOWN the forwarded write's outcome is unknown ({why}): it may or may not have been applied"
    ))
}

/// For writes that never left this node: the client may safely send them again.
fn not_sent(why: &str) -> Response {
    Response::Error(format!("CLUSTERDOWN {why}; the write was not sent, so it was not applied"))
}

fn append_command(out: &mut Vec<u8>, args: &[Bytes]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

impl Upstream {
    /// Starts an upstream to the leader at `addr` (the connection is made in the background;
    /// failures surface as error replies to the writes). A reply that takes longer than
    /// `reply_timeout` fails every write in flight with "outcome unknown".
    pub fn start(addr: &str, reply_timeout: Duration, credentials: Option<Credentials>, tls: Option<Tls>) -> Self {
        Self::start_with(addr, reply_timeout, Protocol::Resp2, credentials, tls)
    }

    /// [`Upstream::start`] in `protocol`: with RESP3 the connection says `HELLO 3` first, and
    /// replies keep their RESP3 types (doubles, sets, maps, pairs) on their way to the client.
    /// With `credentials`, it authenticates with them before anything else; with `tls`, it
    /// speaks TLS (the leader's client port does).
    pub fn start_with(
        addr: &str,
        reply_timeout: Duration,
        protocol: Protocol,
        credentials: Option<Credentials>,
        tls: Option<Tls>,
    ) -> Self {
        let (jobs, rx) = mpsc::channel(UPSTREAM_QUEUE_MAX);
        tokio::spawn(run(addr.to_owned(), rx, reply_timeout, protocol, credentials.clone(), tls));
        Upstream { addr: addr.to_owned(), protocol, credentials, jobs }
    }

    /// The credentials this upstream authenticated with.
    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// The leader address this upstream goes to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The protocol this upstream speaks.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Whether the upstream has failed (a new one is needed for the next write).
    pub fn is_closed(&self) -> bool {
        self.jobs.is_closed()
    }

    /// Queues a write; the receiver yields the leader's reply (or an error reply).
    pub async fn submit(&self, args: Vec<Bytes>) -> oneshot::Receiver<Response> {
        let (reply, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError(job)) = self.jobs.send(Job { args, reply }).await {
            let _ = job.reply.send(unknown("the connection to the leader failed"));
        }
        rx
    }
}

/// The writer half: sends queued writes in order; the reader half (its own task, so writing never
/// waits for reading or the other way round) matches replies to them in the same order.
async fn run(
    addr: String,
    mut jobs: mpsc::Receiver<Job>,
    reply_timeout: Duration,
    protocol: Protocol,
    credentials: Option<Credentials>,
    tls: Option<Tls>,
) {
    let (rd, mut wr) = match tokio::time::timeout(CONNECT_TIMEOUT, connect(&addr, tls)).await {
        Ok(Ok(halves)) => halves,
        Ok(Err(e)) => return refuse_all(&mut jobs, &format!("cannot reach the leader at {addr}: {e}")),
        Err(_) => return refuse_all(&mut jobs, &format!("cannot reach the leader at {addr}: timeout")),
    };
    let (order, order_rx) = mpsc::unbounded_channel::<oneshot::Sender<Response>>();
    tokio::spawn(read_replies(rd, order_rx, reply_timeout, protocol));
    let mut out = Vec::with_capacity(16 * 1024);
    if let Some(credentials) = credentials {
        // Before the marker, which needs a user. A refusal (users differ between nodes) is
        // logged; the writes then get the leader's NOAUTH or NOPERM, as the client should.
        append_command(
            &mut out,
            &[Bytes::from_static(b"AUTH"), credentials.user.clone(), credentials.password.clone()],
        );
        let (auth, answer) = oneshot::channel();
        let _ = order.send(auth);
        let leader = addr.clone();
        tokio::spawn(async move {
            if let Ok(Response::Error(e)) = answer.await {
                tracing::warn!(
                    user = %String::from_utf8_lossy(&credentials.user),
                    "write forwarding: the leader at {leader} refused the client's user ({e}): are the users the same on every node?"
                );
            }
        });
    }
    append_command(&mut out, &[Bytes::from_static(FORWARDED_MARKER.as_bytes())]);
    // The marker's +OK is consumed like a reply nobody waits for.
    let (marker, _) = oneshot::channel();
    let _ = order.send(marker);
    if protocol == Protocol::Resp3 {
        // So is HELLO's map.
        append_command(&mut out, &[Bytes::from_static(b"HELLO"), Bytes::from_static(b"3")]);
        let (hello, _) = oneshot::channel();
        let _ = order.send(hello);
    }
    // Once the reader has failed (or a write stalls), nothing more is sent: every write sent so
    // far is answered by the reader, every write still queued gets the same careful error.
    loop {
        if !out.is_empty() {
            let written = tokio::select! {
                written = tokio::time::timeout(reply_timeout, wr.write_all(&out)) => written,
                () = order.closed() => return fail_all(&mut jobs, VecDeque::new(), "the leader stopped answering"),
            };
            match written {
                Ok(Ok(())) => out.clear(),
                Ok(Err(e)) => return fail_all(&mut jobs, VecDeque::new(), &format!("write to the leader failed: {e}")),
                Err(_) => return fail_all(&mut jobs, VecDeque::new(), "the leader stopped reading"),
            }
        }
        let job = tokio::select! {
            job = jobs.recv() => job,
            () = order.closed() => return fail_all(&mut jobs, VecDeque::new(), "the leader stopped answering"),
        };
        let Some(job) = job else { return };
        // Registered before the bytes go out, so the reader always knows whom a reply is for.
        let mut unsent = VecDeque::new();
        append_command(&mut out, &job.args);
        if let Err(mpsc::error::SendError(reply)) = order.send(job.reply) {
            unsent.push_back(reply);
            return fail_all(&mut jobs, unsent, "the leader stopped answering");
        }
        while out.len() < 64 * 1024 {
            let Ok(job) = jobs.try_recv() else { break };
            append_command(&mut out, &job.args);
            if let Err(mpsc::error::SendError(reply)) = order.send(job.reply) {
                unsent.push_back(reply);
                return fail_all(&mut jobs, unsent, "the leader stopped answering");
            }
        }
    }
}

/// TLS for an upstream: how the leader's client port is reached when it speaks TLS.
pub type Tls = std::sync::Arc<rustls::ClientConfig>;

type ReadHalf = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
type WriteHalf = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

/// Connects to the leader at `addr`, over TLS with `tls`.
async fn connect(addr: &str, tls: Option<Tls>) -> std::io::Result<(ReadHalf, WriteHalf)> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    match tls {
        None => {
            let (rd, wr) = stream.into_split();
            Ok((Box::new(rd), Box::new(wr)))
        }
        Some(config) => {
            let tls = tokio_rustls::TlsConnector::from(config).connect(crate::tls::node_server_name(), stream).await?;
            let (rd, wr) = tokio::io::split(tls);
            Ok((Box::new(rd), Box::new(wr)))
        }
    }
}

async fn read_replies(
    mut rd: ReadHalf,
    mut order: mpsc::UnboundedReceiver<oneshot::Sender<Response>>,
    reply_timeout: Duration,
    protocol: Protocol,
) {
    let mut pending: VecDeque<oneshot::Sender<Response>> = VecDeque::new();
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let fail = |pending: VecDeque<oneshot::Sender<Response>>, order: &mut mpsc::UnboundedReceiver<_>, why: &str| {
        tracing::warn!("write forwarding: {why}");
        order.close();
        let mut all = pending;
        while let Ok(reply) = order.try_recv() {
            all.push_back(reply);
        }
        for reply in all {
            let _ = reply.send(unknown(why));
        }
    };
    loop {
        if pending.is_empty() {
            // Idle: also watch the socket, so a leader that closed the connection (say it
            // restarted) retires this upstream before the next write is sent into it.
            tokio::select! {
                // Reply slots first: a slot is always queued before its request's bytes are sent,
                // so bytes that arrive while no slot is queued really are unasked for.
                biased;
                reply = order.recv() => match reply {
                    Some(reply) => pending.push_back(reply),
                    None => return,
                },
                read = rd.read_buf(&mut buf) => match read {
                    Ok(0) | Err(_) => return fail(pending, &mut order, "the leader closed the connection"),
                    // Bytes nobody asked for: the stream is out of step.
                    Ok(_) => return fail(pending, &mut order, "the leader sent an unexpected reply"),
                },
            }
        }
        while let Ok(reply) = order.try_recv() {
            pending.push_back(reply);
        }
        match tokio::time::timeout(reply_timeout, rd.read_buf(&mut buf)).await {
            Err(_) => return fail(pending, &mut order, &format!("the leader did not answer within {reply_timeout:?}")),
            Ok(Ok(0)) => return fail(pending, &mut order, "the leader closed the connection"),
            Ok(Err(e)) => return fail(pending, &mut order, &format!("read from the leader failed: {e}")),
            Ok(Ok(_)) => {}
        }
        loop {
            let decoded = match protocol {
                Protocol::Resp2 => {
                    redis_protocol::resp2::decode::decode_bytes_mut(&mut buf).map(|d| d.map(|(f, ..)| from_frame(f)))
                }
                Protocol::Resp3 => redis_protocol::resp3::decode::complete::decode_bytes_mut(&mut buf)
                    .map(|d| d.map(|(f, ..)| from_frame3(f))),
            };
            match decoded {
                Ok(Some(frame)) => {
                    if pending.is_empty()
                        && let Ok(reply) = order.try_recv()
                    {
                        pending.push_back(reply);
                    }
                    match pending.pop_front() {
                        Some(reply) => {
                            let _ = reply.send(frame);
                        }
                        None => return fail(pending, &mut order, "the leader sent an unexpected reply"),
                    }
                }
                Ok(None) => break,
                Err(e) => return fail(pending, &mut order, &format!("bad reply from the leader: {e}")),
            }
        }
    }
}

/// The connection was never made: every write queued so far, and every one queued until the
/// connection notices it is closed, is known not applied.
fn refuse_all(jobs: &mut mpsc::Receiver<Job>, why: &str) {
    tracing::warn!("write forwarding: {why}");
    jobs.close();
    while let Ok(job) = jobs.try_recv() {
        let _ = job.reply.send(not_sent(why));
    }
}

fn fail_all(jobs: &mut mpsc::Receiver<Job>, inflight: VecDeque<oneshot::Sender<Response>>, why: &str) {
    tracing::warn!("write forwarding: {why}");
    jobs.close();
    for reply in inflight {
        let _ = reply.send(unknown(why));
    }
    while let Ok(job) = jobs.try_recv() {
        // Never sent, but behind writes whose fate is unknown: answered as carefully, so that a
        // client never re-sends a later write while an earlier one may still be on its way.
        let _ = job.reply.send(unknown(why));
    }
}

/// A RESP3 reply as a [`Response`]. Maps and sets come back in the decoder's (hash) order: the
/// forwarded replies that carry them are rare (`EXEC` of reads), and their order is Redis's
/// unspecified one anyway.
fn from_frame3(frame: redis_protocol::resp3::types::BytesFrame) -> Response {
    use redis_protocol::resp3::types::BytesFrame as F;
    use redis_protocol::resp3::types::VerbatimStringFormat;
    match frame {
        F::SimpleString { data, .. } => Response::Simple(String::from_utf8_lossy(&data).into_owned()),
        F::SimpleError { data, .. } => Response::Error(data.to_string()),
        F::BlobError { data, .. } => Response::Error(String::from_utf8_lossy(&data).into_owned()),
        F::Number { data, .. } => Response::Integer(data),
        F::BlobString { data, .. } | F::BigNumber { data, .. } => Response::Bulk(data),
        F::Double { data, .. } => Response::Double(data),
        F::Boolean { data, .. } => Response::Boolean(data),
        F::Null => Response::Null,
        F::VerbatimString { data, format, .. } => Response::Verbatim {
            format: match format {
                VerbatimStringFormat::Markdown => super::protocol::VerbatimFormat::Markdown,
                _ => super::protocol::VerbatimFormat::Text,
            },
            text: data,
        },
        F::Array { data, .. } | F::Push { data, .. } => Response::Array(data.into_iter().map(from_frame3).collect()),
        F::Map { data, .. } => Response::Map(data.into_iter().map(|(k, v)| (from_frame3(k), from_frame3(v))).collect()),
        F::Set { data, .. } => Response::Set(data.into_iter().map(from_frame3).collect()),
        other => Response::Error(format!("ERR unexpected reply from the leader: {other:?}")),
    }
}

fn from_frame(frame: redis_protocol::resp2::types::BytesFrame) -> Response {
    use redis_protocol::resp2::types::BytesFrame as F;
    match frame {
        F::SimpleString(s) => Response::Simple(String::from_utf8_lossy(&s).into_owned()),
        F::Error(e) => Response::Error(e.to_string()),
        F::Integer(i) => Response::Integer(i),
        F::BulkString(b) => Response::Bulk(b),
        F::Array(items) => Response::Array(items.into_iter().map(from_frame).collect()),
        F::Null => Response::Null,
    }
}
