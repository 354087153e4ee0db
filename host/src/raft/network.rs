//! The peer transport: Raft RPCs between nodes over TCP.
//!
//! **Why our own, over tokio.** The RPCs are a handful of openraft's serde types going one way
//! and coming back; tonic or tarpc would bring code generation or a second RPC model for no gain.
//! What we need is small and worth owning: persistent pooled connections (one RPC per connection
//! at a time, so a slow snapshot chunk never holds up a heartbeat), a timeout on each call,
//! reconnecting on any failure, a cluster id on every request, and a server that answers garbage
//! by closing the connection rather than panicking or allocating what a bogus length claims.
//!
//! **Framing.** Each frame is the magic `RDFT`, a big-endian `u32` length, then a postcard body.
//! The body is read as it arrives (never allocated up front from the declared length) and is
//! capped at [`FRAME_BYTES_MAX`]. A request frame's first [`ADMISSION_PREFIX_BYTES`] are read
//! and its header screened before the rest: a sender with a wrong cluster id or node id makes
//! the node buffer no more than that.
//!
//! **Cluster id.** Set when a node bootstraps (random); every request carries the sender's and
//! the recipient's node id. A node that has none yet (a fresh node being joined) adopts the first
//! it sees and keeps it; any other mismatch is refused with a message naming both ids, as is a
//! request addressed to another node id.
//!
//! **Probe.** One RPC is answered before any cluster id is checked or adopted: `Rpc::Probe`,
//! with which `JOIN` checks that a node runs at the address it was given, under the id it was
//! given, outside any other cluster and with the same state-machine contract, before anything
//! is proposed. It reveals nothing secret and changes nothing on the probed node.
//!
//! **Contact.** Every answered RPC records when the peer was last heard from
//! ([`PeerNetwork::heard_within`]): the leader's measure of which voters are alive, which
//! membership changes consult before they can cost the cluster its quorum.

use super::log_store::LogStore;
use super::peer_auth::{ClusterSecret, PeerAuth};
use super::{Member, NodeId, TypeConfig};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{LogId, Raft, Vote};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Frame start: tells a peer's frame from stray bytes at once.
const MAGIC: &[u8; 4] = b"RDFT";
/// Largest frame body accepted, in bytes: bounds what a peer (or garbage) can make us buffer.
pub const FRAME_BYTES_MAX: u32 = 1 << 30;
/// How much of a request frame the server reads before it screens the header (cluster id and
/// node ids; a few dozen bytes): all a sender from another cluster can make it buffer on one
/// connection. Larger frames (appends, snapshot chunks) are read on only once screened.
pub const ADMISSION_PREFIX_BYTES: u32 = 4096;
/// Idle connections kept per peer.
const POOL_IDLE_MAX: usize = 8;
/// Connecting to a peer gives up after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Most peer connections served at once (each peer pools up to [`POOL_IDLE_MAX`] per target, so
/// this leaves room for dozens of peers); past it a connection is closed at once.
const PEER_CONNECTIONS_MAX: usize = 256;
/// A served peer connection with no complete frame for this long is closed (the peer's pool
/// reconnects when it next needs it); it also bounds a frame that trickles in.
const PEER_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// The error type for our transport failures (turned into openraft's `Unreachable`/`Network`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// Socket failure.
    #[error("peer I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The peer did not answer in time.
    #[error("peer did not answer within {0:?}")]
    Timeout(Duration),
    /// Bytes that are not a frame of ours, or a body that does not decode.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The peer refused the request (cluster id or node id mismatch).
    #[error("peer refused: {0}")]
    Refused(String),
}

/// What travels in a request frame.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    cluster_id: String,
    from: NodeId,
    to: NodeId,
    rpc: Rpc,
}

/// The first fields of an [`Envelope`], decoded (postcard lays fields out in order) and admitted
/// before the request itself is decoded, so a sender without the cluster id cannot make the node
/// decode (and allocate for) an arbitrary request.
#[derive(Deserialize)]
struct Header {
    cluster_id: String,
    from: NodeId,
    to: NodeId,
}

#[derive(Debug, Serialize, Deserialize)]
enum Rpc {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// A follower asks the leader for a read index (linearizable follower reads).
    ReadIndex,
    /// `JOIN` asks a node about itself before adding it (answered before admission).
    Probe,
}

/// Why a follower got no read index from the leader.
#[derive(Debug, thiserror::Error)]
pub enum ReadIndexError {
    /// The leader could not be reached at all (refused, reset): nothing was asked.
    #[error("{0}")]
    Unreachable(String),
    /// The leader was asked and did not give one (no quorum, no longer leader, no answer in time).
    #[error("{0}")]
    Failed(String),
}

/// What a probed node says about itself (`Rpc::Probe`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeAnswer {
    /// The node's id.
    pub node_id: NodeId,
    /// The cluster it belongs to, if any.
    pub cluster_id: Option<String>,
    /// Its state-machine contract ([`crate::runtime::Contract`], encoded).
    pub contract: Vec<u8>,
    /// The last log index it has applied (0 before any).
    pub last_applied: u64,
}

/// What travels in a response frame.
#[derive(Serialize, Deserialize)]
enum Answer {
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    ReadIndex(Result<u64, String>),
    Refused(String),
    Probe(ProbeAnswer),
}

pub(super) async fn write_frame<W: AsyncWrite + Unpin>(stream: &mut W, body: &[u8]) -> Result<(), TransportError> {
    let len = u32::try_from(body.len()).ok().filter(|l| *l <= FRAME_BYTES_MAX);
    let len = len.ok_or_else(|| TransportError::Malformed(format!("frame of {} bytes is too big", body.len())))?;
    let mut head = [0u8; 8];
    head[..4].copy_from_slice(MAGIC);
    head[4..].copy_from_slice(&len.to_be_bytes());
    // One vectored write for head and body: one syscall and one segment for a small frame,
    // where two writes cost two (and, with TCP_NODELAY, two packets).
    let mut frame = bytes::Buf::chain(&head[..], body);
    stream.write_all_buf(&mut frame).await?;
    Ok(())
}

/// Reads one frame; `Ok(None)` on a clean end of stream before a frame starts.
async fn read_frame<R: AsyncRead + Unpin>(stream: &mut R) -> Result<Option<Vec<u8>>, TransportError> {
    let Some(len) = read_frame_len(stream).await? else { return Ok(None) };
    let mut body = Vec::new();
    read_body(stream, len, &mut body).await?;
    Ok(Some(body))
}

/// Reads one frame of at most `max` bytes (the cluster-secret exchange's): a longer one is
/// refused before its body is read.
pub(super) async fn read_small_frame<R: AsyncRead + Unpin>(
    stream: &mut R,
    max: u32,
) -> Result<Vec<u8>, TransportError> {
    let len = read_frame_len(stream)
        .await?
        .ok_or_else(|| TransportError::Malformed("connection closed before a frame".into()))?;
    if len > max {
        return Err(TransportError::Refused(format!("a frame of {len} bytes where at most {max} were expected")));
    }
    let mut body = Vec::new();
    read_body(stream, len, &mut body).await?;
    Ok(body)
}

/// Reads a request frame, screening its header with `screen` once the first
/// [`ADMISSION_PREFIX_BYTES`] are in, before the rest of a larger frame is read.
async fn read_request_frame<R: AsyncRead + Unpin>(
    stream: &mut R,
    screen: impl FnOnce(&Header) -> Result<(), String>,
) -> Result<Option<Vec<u8>>, TransportError> {
    let Some(len) = read_frame_len(stream).await? else { return Ok(None) };
    let mut body = Vec::new();
    read_body(stream, len.min(ADMISSION_PREFIX_BYTES), &mut body).await?;
    if len > ADMISSION_PREFIX_BYTES {
        let (header, _): (Header, &[u8]) = postcard::take_from_bytes(&body).map_err(|e| {
            TransportError::Malformed(format!("no request header in the first {ADMISSION_PREFIX_BYTES} bytes: {e}"))
        })?;
        screen(&header).map_err(TransportError::Refused)?;
        read_body(stream, len, &mut body).await?;
    }
    Ok(Some(body))
}

/// The most a frame's declared length reserves before its bytes arrive.
const BODY_RESERVE_MAX: usize = 256 * 1024;

/// Reads `body` on until it holds `len` bytes, as they arrive.
async fn read_body<R: AsyncRead + Unpin>(stream: &mut R, len: u32, body: &mut Vec<u8>) -> Result<(), TransportError> {
    let missing = (len as usize).saturating_sub(body.len());
    // Room for up to `BODY_RESERVE_MAX` at once, so a usual frame is read in one call (growing
    // from empty took a read per doubling: seven for a one-write entry); beyond that it grows as
    // bytes arrive, so a bogus length costs little until the bytes are really sent.
    body.reserve(missing.min(BODY_RESERVE_MAX));
    stream.take(missing as u64).read_to_end(body).await?;
    if body.len() != len as usize {
        return Err(TransportError::Malformed("connection closed inside a frame".into()));
    }
    Ok(())
}

/// Reads a frame's magic and length; `Ok(None)` on a clean end of stream before a frame starts.
async fn read_frame_len<R: AsyncRead + Unpin>(stream: &mut R) -> Result<Option<u32>, TransportError> {
    let mut head = [0u8; 8];
    match stream.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    if &head[..4] != MAGIC {
        return Err(TransportError::Malformed("not a Redraft peer frame (bad magic)".into()));
    }
    let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    if len > FRAME_BYTES_MAX {
        return Err(TransportError::Malformed(format!("frame of {len} bytes exceeds {FRAME_BYTES_MAX}")));
    }
    Ok(Some(len))
}

/// This node's identity on the wire: its id and the cluster id (once it has one).
pub struct Identity {
    /// This node's id.
    pub node_id: NodeId,
    cluster_id: RwLock<Option<String>>,
    log: LogStore,
    /// The cluster-secret exchange every connection starts with (when there is a secret).
    pub auth: PeerAuth,
    /// Mutual TLS on every peer connection (`peer_tls`), if configured; its certificates can be
    /// replaced on SIGHUP ([`Identity::replace_tls`]).
    tls: RwLock<Option<crate::config::PeerTls>>,
}

impl Identity {
    /// Loads the cluster id recorded in `log`, if any.
    /// With `secret`, peers must prove they hold it on every connection ([`PeerAuth`]); with
    /// `tls`, every connection is mutual TLS first.
    pub fn new(
        node_id: NodeId,
        log: LogStore,
        secret: Option<ClusterSecret>,
        tls: Option<crate::config::PeerTls>,
    ) -> Result<Arc<Self>, openraft::StorageError<NodeId>> {
        let cluster_id = log.cluster_id()?;
        Ok(Arc::new(Identity {
            node_id,
            cluster_id: RwLock::new(cluster_id),
            log,
            auth: PeerAuth::new(secret),
            tls: RwLock::new(tls),
        }))
    }

    /// The peer TLS settings as of now (each new connection takes them).
    pub fn tls(&self) -> Option<crate::config::PeerTls> {
        self.tls.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Takes new certificates for the peer port (SIGHUP); open connections keep their session.
    /// Turning peer TLS on or off is refused: this node would stop understanding its peers until
    /// they all changed too, so that takes a restart of every node.
    pub fn replace_tls(&self, tls: Option<crate::config::PeerTls>) -> Result<(), String> {
        let mut current = self.tls.write().unwrap_or_else(|p| p.into_inner());
        match (current.is_some(), tls.is_some()) {
            (true, true) => {
                *current = tls;
                Ok(())
            }
            (false, false) => Ok(()),
            (on, _) => Err(format!(
                "peer_tls cannot be turned {} while the node runs: restart every node with the new setting",
                if on { "off" } else { "on" }
            )),
        }
    }

    /// The cluster id, if this node belongs to a cluster.
    pub fn cluster_id(&self) -> Option<String> {
        self.cluster_id.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records a cluster id (at bootstrap, or adopting the first one a fresh node hears).
    pub fn set_cluster_id(&self, id: &str) -> Result<(), openraft::StorageError<NodeId>> {
        self.log.set_cluster_id(id)?;
        *self.cluster_id.write().unwrap_or_else(|p| p.into_inner()) = Some(id.to_owned());
        Ok(())
    }

    /// The refusals [`Identity::admit`] makes without deciding anything: a request for another
    /// node id, or from another cluster than the one this node belongs to.
    fn screen(&self, theirs: &str, to: NodeId) -> Result<(), String> {
        if to != self.node_id {
            return Err(self.not_me(to));
        }
        match self.cluster_id() {
            Some(ours) if ours != theirs => Err(mismatch(&ours, theirs)),
            _ => Ok(()),
        }
    }

    fn not_me(&self, to: NodeId) -> String {
        format!("this is node {}, the request was for node {to}", self.node_id)
    }

    /// Accepts a request's cluster id (adopting it on a node that has none yet) or explains the
    /// refusal.
    fn admit(&self, theirs: &str, to: NodeId) -> Result<(), String> {
        if to != self.node_id {
            return Err(self.not_me(to));
        }
        match self.cluster_id() {
            Some(ours) if ours == theirs => Ok(()),
            Some(ours) => Err(mismatch(&ours, theirs)),
            None if theirs.is_empty() => Err("the request carries no cluster id".into()),
            None => {
                tracing::info!(cluster = theirs, "joining cluster");
                self.set_cluster_id(theirs).map_err(|e| format!("cannot record the cluster id: {e}"))
            }
        }
    }
}

fn mismatch(ours: &str, theirs: &str) -> String {
    format!("cluster id mismatch: this node belongs to cluster {ours}, the request came from {theirs}")
}

/// Pooled connections to one peer address.
#[derive(Default)]
struct Pool {
    idle: Mutex<Vec<PeerStream>>,
}

/// A connection to a peer: plain TCP, or TLS when the cluster runs `peer_tls`.
enum PeerStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for PeerStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            PeerStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            PeerStream::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            PeerStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            PeerStream::Plain(s) => std::pin::Pin::new(s).poll_write_vectored(cx, bufs),
            PeerStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            PeerStream::Plain(s) => s.is_write_vectored(),
            PeerStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            PeerStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            PeerStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// When each peer last answered an RPC of ours.
type Contact = Arc<Mutex<HashMap<NodeId, Instant>>>;

/// Creates [`PeerClient`]s for openraft; shares one pool per peer address.
#[derive(Clone)]
pub struct PeerNetwork {
    identity: Arc<Identity>,
    rpc_timeout: Duration,
    pools: Arc<Mutex<HashMap<String, Arc<Pool>>>>,
    contact: Contact,
}

impl PeerNetwork {
    /// A factory for this node's outgoing RPCs.
    /// `rpc_timeout` is the least time our side gives an RPC. openraft 0.9 also wraps each call in
    /// its own deadline (one heartbeat interval for AppendEntries, the election timeout for a
    /// vote, `snapshot_chunk_timeout_ms` for a chunk), which wins when shorter: that is why
    /// catch-up batches are bounded (`raft.append_entries_max`, `raft.append_entries_bytes_max`)
    /// and a large AppendEntries outlives its call (see `PeerClient::append`).
    pub fn new(identity: Arc<Identity>, rpc_timeout: Duration) -> Self {
        PeerNetwork { identity, rpc_timeout, pools: Arc::default(), contact: Arc::default() }
    }

    /// Whether `peer` answered an RPC of ours within `window`. On the leader, heartbeats reach
    /// every member each heartbeat interval, so a live peer is always recently heard from.
    pub fn heard_within(&self, peer: NodeId, window: Duration) -> bool {
        let contact = self.contact.lock().unwrap_or_else(|p| p.into_inner());
        contact.get(&peer).is_some_and(|at| at.elapsed() <= window)
    }

    /// Connections refused since start because the peer failed the cluster-secret exchange.
    pub fn peers_refused(&self) -> u64 {
        self.identity.auth.refused()
    }

    /// How long ago `peer` last answered an RPC of ours, if ever.
    pub fn last_heard(&self, peer: NodeId) -> Option<Duration> {
        self.contact.lock().unwrap_or_else(|p| p.into_inner()).get(&peer).map(Instant::elapsed)
    }

    /// A client for `target` at `member`'s Raft address.
    pub fn client(&self, target: NodeId, member: &Member) -> PeerClient {
        let pool =
            self.pools.lock().unwrap_or_else(|p| p.into_inner()).entry(member.raft_addr.clone()).or_default().clone();
        PeerClient {
            target,
            addr: member.raft_addr.clone(),
            identity: self.identity.clone(),
            pool,
            rpc_timeout: self.rpc_timeout,
            contact: self.contact.clone(),
            in_flight: None,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerClient {
        self.client(target, node)
    }
}

/// Sends RPCs to one peer.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    identity: Arc<Identity>,
    pool: Arc<Pool>,
    rpc_timeout: Duration,
    contact: Contact,
    /// A large AppendEntries still being sent after its call gave up (see [`PeerClient::append`]).
    in_flight: Option<InFlight>,
}

/// AppendEntries bodies of at least this many bytes are sent by a task of their own (see
/// [`PeerClient::append`]); smaller ones, nearly all of them, take no extra hop.
const DETACHED_APPEND_BYTES: usize = 256 << 10;
/// A detached send's own deadline: `rpc_timeout` plus this much per started MiB of its body.
const DETACHED_SEND_PER_MIB: Duration = Duration::from_secs(1);

/// Which entries an AppendEntries carries: the leader's vote and the log ids before the first
/// and of the last. openraft retries a timed-out AppendEntries with the same ones.
type AppendKey = (Vote<NodeId>, Option<LogId<NodeId>>, Option<LogId<NodeId>>);

/// A detached AppendEntries: which entries it carries and where its answer lands.
struct InFlight {
    key: AppendKey,
    outcome: Arc<Outcome>,
}

/// The answer of a detached send, once it arrives.
#[derive(Default)]
struct Outcome {
    answer: Mutex<Option<Result<Answer, TransportError>>>,
    ready: tokio::sync::Notify,
}

impl Outcome {
    fn land(&self, answer: Result<Answer, TransportError>) {
        *self.answer.lock().unwrap_or_else(|p| p.into_inner()) = Some(answer);
        self.ready.notify_waiters();
    }

    /// Waits for the answer and takes it. Cancel-safe: dropped while waiting, the answer stays
    /// for the next wait.
    async fn take(&self) -> Result<Answer, TransportError> {
        loop {
            let ready = self.ready.notified();
            tokio::pin!(ready);
            // Registered before the check, so an answer landing in between still wakes us.
            ready.as_mut().enable();
            if let Some(answer) = self.answer.lock().unwrap_or_else(|p| p.into_inner()).take() {
                return answer;
            }
            ready.await;
        }
    }
}

impl PeerClient {
    async fn call(&self, rpc: Rpc, timeout: Duration) -> Result<Answer, TransportError> {
        let body = self.encode(rpc)?;
        self.send(&body, timeout).await
    }

    /// An AppendEntries. openraft 0.9 gives the call one heartbeat interval and drops it when that
    /// passes; a large one (a catch-up batch, a single multi-MiB entry) may need longer, and a
    /// frame cut off mid-way leaves the follower with nothing, so every retry would be cut off
    /// again: a livelock. So a large body is sent by a task of its own that finishes the exchange
    /// whatever happens to the call, and the retry (openraft resends the same entries) waits for
    /// that task's answer instead of sending the entries again. A large request with other
    /// entries (a new term, a conflict) leaves the old task to finish unheard and sends its own; a
    /// small one (a heartbeat between retries) goes inline and leaves it in place.
    async fn append(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        timeout: Duration,
    ) -> Result<Answer, TransportError> {
        let key: AppendKey = (rpc.vote, rpc.prev_log_id, rpc.entries.last().map(|e| e.log_id).or(rpc.prev_log_id));
        let retried = self.in_flight.as_ref().filter(|in_flight| in_flight.key == key).map(|f| f.outcome.clone());
        let outcome = match retried {
            Some(outcome) => outcome,
            None => {
                let body = self.encode(Rpc::Append(rpc))?;
                // A heartbeat between retries goes inline and leaves the detached send in place.
                if body.len() < DETACHED_APPEND_BYTES {
                    return self.send(&body, timeout).await;
                }
                let outcome = Arc::new(Outcome::default());
                let mebibytes = u32::try_from(body.len().div_ceil(1 << 20)).unwrap_or(u32::MAX);
                let deadline = self.rpc_timeout.saturating_add(DETACHED_SEND_PER_MIB.saturating_mul(mebibytes));
                let (sender, landed) = (self.sender(), outcome.clone());
                tokio::spawn(async move { landed.land(sender.send(&body, deadline).await) });
                outcome
            }
        };
        // Recorded before waiting: if openraft drops this call, its retry finds the send here.
        self.in_flight = Some(InFlight { key, outcome: outcome.clone() });
        let answer =
            tokio::time::timeout(timeout, outcome.take()).await.map_err(|_| TransportError::Timeout(timeout))?;
        self.in_flight = None;
        answer
    }

    /// A client for the same peer, for a detached send.
    fn sender(&self) -> PeerClient {
        PeerClient {
            target: self.target,
            addr: self.addr.clone(),
            identity: self.identity.clone(),
            pool: self.pool.clone(),
            rpc_timeout: self.rpc_timeout,
            contact: self.contact.clone(),
            in_flight: None,
        }
    }

    fn encode(&self, rpc: Rpc) -> Result<Vec<u8>, TransportError> {
        let cluster_id = self.identity.cluster_id().unwrap_or_default();
        super::encode(&Envelope { cluster_id, from: self.identity.node_id, to: self.target, rpc })
            .map_err(|e| TransportError::Malformed(e.to_string()))
    }

    /// Sends an encoded request on a pooled connection (or a new one) and reads its answer.
    async fn send(&self, body: &[u8], timeout: Duration) -> Result<Answer, TransportError> {
        let idle = self.pool.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let attempts = async {
            let pooled = idle.is_some();
            match self.exchange(idle, body).await {
                // A pooled connection may have died with a restarted peer: one retry on a fresh
                // one (every Raft RPC is safe to repeat).
                Err(TransportError::Io(_) | TransportError::Malformed(_)) if pooled => self.exchange(None, body).await,
                other => other,
            }
        };
        let (stream, answer) =
            tokio::time::timeout(timeout, attempts).await.map_err(|_| TransportError::Timeout(timeout))??;
        let mut idle = self.pool.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < POOL_IDLE_MAX {
            idle.push(stream);
        }
        drop(idle);
        match answer {
            Answer::Refused(why) => Err(TransportError::Refused(why)),
            answer => {
                self.contact.lock().unwrap_or_else(|p| p.into_inner()).insert(self.target, Instant::now());
                Ok(answer)
            }
        }
    }

    /// One request and its answer, on `stream` or a new connection.
    async fn exchange(&self, stream: Option<PeerStream>, body: &[u8]) -> Result<(PeerStream, Answer), TransportError> {
        let mut stream = match stream {
            Some(stream) => stream,
            None => {
                let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr))
                    .await
                    .map_err(|_| TransportError::Timeout(CONNECT_TIMEOUT))??;
                tcp.set_nodelay(true)?;
                let mut stream = match self.identity.tls() {
                    None => PeerStream::Plain(tcp),
                    Some(tls) => {
                        let connector = tokio_rustls::TlsConnector::from(tls.client.clone());
                        let handshake = connector.connect(crate::tls::node_server_name(), tcp);
                        let tls = tokio::time::timeout(CONNECT_TIMEOUT, handshake)
                            .await
                            .map_err(|_| TransportError::Timeout(CONNECT_TIMEOUT))?
                            .map_err(|e| TransportError::Refused(format!("TLS with the peer failed: {e}")))?;
                        PeerStream::Tls(Box::new(tls))
                    }
                };
                self.identity.auth.connect(&mut stream).await?;
                stream
            }
        };
        write_frame(&mut stream, body).await?;
        let reply = read_frame(&mut stream)
            .await?
            .ok_or_else(|| TransportError::Malformed("peer closed the connection".into()))?;
        let answer: Answer = super::decode(&reply).map_err(|e| TransportError::Malformed(e.to_string()))?;
        Ok((stream, answer))
    }

    /// Asks this peer about itself (`Rpc::Probe`): proves it runs, at this address, under this
    /// id.
    pub async fn probe(&self, timeout: Duration) -> Result<ProbeAnswer, TransportError> {
        match self.call(Rpc::Probe, timeout).await? {
            Answer::Probe(answer) => Ok(answer),
            _ => Err(TransportError::Malformed("unexpected answer to a probe".into())),
        }
    }

    /// Asks this peer (the leader) for a read index: the log index a linearizable read must wait
    /// for. The leader confirms its leadership with a quorum first.
    pub async fn read_index(&self, timeout: Duration) -> Result<u64, ReadIndexError> {
        match self.call(Rpc::ReadIndex, timeout).await {
            Ok(Answer::ReadIndex(result)) => result.map_err(ReadIndexError::Failed),
            Ok(_) => Err(ReadIndexError::Failed("unexpected answer to a read-index request".into())),
            Err(e @ TransportError::Io(_)) => Err(ReadIndexError::Unreachable(e.to_string())),
            Err(e) => Err(ReadIndexError::Failed(e.to_string())),
        }
    }
}

fn rpc_error<E: std::error::Error>(e: TransportError) -> RPCError<NodeId, Member, E> {
    match e {
        TransportError::Io(io) => RPCError::Unreachable(Unreachable::new(&io)),
        other => RPCError::Network(NetworkError::new(&other)),
    }
}

fn unexpected<E: std::error::Error>() -> RPCError<NodeId, Member, E> {
    rpc_error(TransportError::Malformed("answer of the wrong kind".into()))
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        match self.append(rpc, option.hard_ttl().max(self.rpc_timeout)).await.map_err(rpc_error)? {
            Answer::Append(result) => result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            _ => Err(unexpected()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>>
    {
        match self.call(Rpc::Snapshot(rpc), option.hard_ttl().max(self.rpc_timeout)).await.map_err(rpc_error)? {
            Answer::Snapshot(result) => result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            _ => Err(unexpected()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        match self.call(Rpc::Vote(rpc), option.hard_ttl().max(self.rpc_timeout)).await.map_err(rpc_error)? {
            Answer::Vote(result) => result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            _ => Err(unexpected()),
        }
    }
}

/// Serves peers' RPCs on `listener` until the process ends. Each connection is served in its own
/// task, one request at a time; a malformed frame closes that connection and nothing else.
/// `read_floor` is the last log index this node held at start: the leader never answers a
/// `ReadIndex` below it (see `raft::read_index` in the crate source).
pub async fn serve(
    listener: TcpListener,
    raft: Raft<TypeConfig>,
    identity: Arc<Identity>,
    read_timeout: Duration,
    read_floor: u64,
    contract: Arc<[u8]>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(PEER_CONNECTIONS_MAX));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("raft listener: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "raft listener: {PEER_CONNECTIONS_MAX} connections already open, closing this one");
            drop(stream);
            continue;
        };
        let raft = raft.clone();
        let identity = identity.clone();
        let contract = contract.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _ = stream.set_nodelay(true);
            let served = match identity.tls() {
                None => serve_connection(stream, peer, raft, identity, read_timeout, read_floor, contract).await,
                Some(tls) => {
                    let handshake = tokio_rustls::TlsAcceptor::from(tls.server).accept(stream);
                    match tokio::time::timeout(super::peer_auth::HANDSHAKE_TIMEOUT, handshake).await {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, peer, raft, identity, read_timeout, read_floor, contract).await
                        }
                        Ok(Err(e)) => {
                            identity.auth.count_refusal();
                            tracing::warn!(%peer, "refused a peer: TLS handshake failed: {e}");
                            Ok(())
                        }
                        Err(_) => {
                            identity.auth.count_refusal();
                            tracing::warn!(%peer, "refused a peer: TLS handshake timed out");
                            Ok(())
                        }
                    }
                }
            };
            if let Err(e) = served {
                tracing::warn!(%peer, "raft connection closed: {e}");
            }
        });
    }
}

async fn serve_rpc(raft: &Raft<TypeConfig>, rpc: Rpc, read_timeout: Duration, read_floor: u64) -> Answer {
    match rpc {
        Rpc::Append(rpc) => Answer::Append(raft.append_entries(rpc).await),
        Rpc::Vote(rpc) => Answer::Vote(raft.vote(rpc).await),
        Rpc::Snapshot(rpc) => Answer::Snapshot(raft.install_snapshot(rpc).await),
        Rpc::Probe => Answer::Refused("a probe is answered before admission".into()),
        Rpc::ReadIndex => Answer::ReadIndex(match tokio::time::timeout(read_timeout, raft.get_read_log_id()).await {
            Ok(Ok((read, _applied))) => Ok(super::read_index(read, read_floor)),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("leadership not confirmed within {read_timeout:?}")),
        }),
    }
}

/// The one request body a `Rpc::Probe` encodes to: recognised before anything is decoded.
fn probe_body() -> Vec<u8> {
    super::encode(&Rpc::Probe).unwrap_or_default()
}

/// Answers a probe: who this node is, without admitting or adopting anything.
fn answer_probe(raft: &Raft<TypeConfig>, identity: &Identity, to: NodeId, contract: &[u8]) -> Answer {
    if to != identity.node_id {
        return Answer::Refused(identity.not_me(to));
    }
    Answer::Probe(ProbeAnswer {
        node_id: identity.node_id,
        cluster_id: identity.cluster_id(),
        contract: contract.to_vec(),
        last_applied: raft.metrics().borrow().last_applied.map_or(0, |l| l.index),
    })
}

async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: std::net::SocketAddr,
    raft: Raft<TypeConfig>,
    identity: Arc<Identity>,
    read_timeout: Duration,
    read_floor: u64,
    contract: Arc<[u8]>,
) -> Result<(), TransportError> {
    if let Err(e) = identity.auth.accept(&mut stream).await {
        let why = match e {
            TransportError::Refused(why) => why,
            other => other.to_string(),
        };
        tracing::warn!(%peer, "refused a peer: {why}");
        return Ok(());
    }
    let probe = probe_body();
    loop {
        let screen = |header: &Header| {
            identity.screen(&header.cluster_id, header.to).inspect_err(|why| {
                tracing::warn!(from = header.from, "refused a peer request before reading it: {why}");
            })
        };
        let body = match tokio::time::timeout(PEER_IDLE_TIMEOUT, read_request_frame(&mut stream, screen)).await {
            Err(_) => return Ok(()),
            Ok(frame) => match frame? {
                Some(body) => body,
                None => return Ok(()),
            },
        };
        let (header, rest): (Header, &[u8]) =
            postcard::take_from_bytes(&body).map_err(|e| TransportError::Malformed(e.to_string()))?;
        if rest == probe.as_slice() {
            let reply = super::encode(&answer_probe(&raft, &identity, header.to, &contract))
                .map_err(|e| TransportError::Malformed(e.to_string()))?;
            write_frame(&mut stream, &reply).await?;
            continue;
        }
        let decode = |rest: &[u8]| super::decode::<Rpc>(rest).map_err(|e| TransportError::Malformed(e.to_string()));
        // A node that would adopt the sender's cluster id only does so for a request that decodes.
        let decoded = if identity.cluster_id().is_none() { Some(decode(rest)?) } else { None };
        let answer = match identity.admit(&header.cluster_id, header.to) {
            Err(why) => {
                tracing::warn!(from = header.from, "refused a peer request: {why}");
                Answer::Refused(why)
            }
            Ok(()) => {
                let rpc = match decoded {
                    Some(rpc) => rpc,
                    None => decode(rest)?,
                };
                serve_rpc(&raft, rpc, read_timeout, read_floor).await
            }
        };
        let reply = super::encode(&answer).map_err(|e| TransportError::Malformed(e.to_string()))?;
        write_frame(&mut stream, &reply).await?;
    }
}

#[cfg(test)]
mod tests {
    //! Generated inputs for the peer frame decoder: whatever bytes arrive, decoding ends in a
    //! frame or an error, never a panic or an allocation the bytes did not pay for; and what we
    //! encode decodes to the same thing.

    use super::*;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().expect("a runtime").block_on(future)
    }

    #[test]
    fn a_detached_answer_waits_for_whoever_asks_next() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a runtime");
        runtime.block_on(async {
            let ready = |outcome: &Outcome| outcome.answer.lock().expect("lock").is_some();
            // Landed before anyone waits: the next wait takes it at once, and only once.
            let outcome = Outcome::default();
            outcome.land(Ok(Answer::ReadIndex(Ok(7))));
            assert!(matches!(outcome.take().await, Ok(Answer::ReadIndex(Ok(7)))));
            assert!(!ready(&outcome));
            // A wait given up (as when openraft's deadline drops the call) leaves the answer that
            // lands afterwards for the retry.
            let outcome = Arc::new(Outcome::default());
            let gave_up = tokio::time::timeout(Duration::from_millis(5), outcome.take()).await;
            assert!(gave_up.is_err());
            outcome.land(Err(TransportError::Timeout(Duration::from_secs(1))));
            assert!(matches!(outcome.take().await, Err(TransportError::Timeout(_))));
            // A waiter already parked is woken when the answer lands.
            let outcome = Arc::new(Outcome::default());
            let landing = outcome.clone();
            let waiter = async { outcome.take().await };
            let lander = async {
                tokio::task::yield_now().await;
                landing.land(Ok(Answer::Refused("no".into())));
            };
            let (answer, ()) = tokio::join!(waiter, lander);
            assert!(matches!(answer, Ok(Answer::Refused(why)) if why == "no"));
        });
    }

    fn log_id(term: u64, node: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, node), index)
    }

    /// Every kind of request a peer sends, with generated fields.
    fn rpc() -> impl Strategy<Value = Rpc> {
        let commands = vec(vec(any::<u8>(), 0..64), 0..8);
        let append = (any::<u64>(), any::<u64>(), any::<bool>(), any::<u64>(), vec(commands, 0..4)).prop_map(
            |(term, node, committed, index, entries)| {
                let mut vote = Vote::new(term, node);
                if committed {
                    vote.commit();
                }
                let entries = entries
                    .into_iter()
                    .enumerate()
                    .map(|(i, commands)| Entry::<TypeConfig> {
                        log_id: log_id(term, node, index.saturating_add(i as u64)),
                        payload: if commands.is_empty() {
                            EntryPayload::Blank
                        } else {
                            EntryPayload::Normal(crate::raft::Request::Commands(Arc::new(commands)))
                        },
                    })
                    .collect();
                Rpc::Append(AppendEntriesRequest {
                    vote,
                    prev_log_id: index.checked_sub(1).map(|i| log_id(term, node, i)),
                    entries,
                    leader_commit: Some(log_id(term, node, index / 2)),
                })
            },
        );
        let vote = (any::<u64>(), any::<u64>(), any::<Option<u64>>()).prop_map(|(term, node, last)| {
            Rpc::Vote(VoteRequest::new(Vote::new(term, node), last.map(|i| log_id(term, node, i))))
        });
        let read_index = Just(()).prop_map(|()| Rpc::ReadIndex);
        let probe = Just(()).prop_map(|()| Rpc::Probe);
        prop_oneof![append, vote, read_index, probe]
    }

    fn envelope() -> impl Strategy<Value = Envelope> {
        (vec(any::<char>(), 0..40), any::<u64>(), any::<u64>(), rpc()).prop_map(|(cluster_id, from, to, rpc)| {
            Envelope { cluster_id: cluster_id.into_iter().collect(), from, to, rpc }
        })
    }

    #[test]
    fn a_large_request_is_read_past_its_first_bytes_only_once_screened() {
        let envelope = Envelope { cluster_id: "theirs".into(), from: 2, to: 1, rpc: Rpc::Probe };
        let mut body = crate::raft::encode(&envelope).expect("encode");
        body.resize(1 << 20, 0);
        let mut wire = Vec::new();
        block_on(write_frame(&mut wire, &body)).expect("write to memory");

        let mut input = wire.as_slice();
        let refused = block_on(read_request_frame(&mut input, |h| Err(format!("not {}", h.cluster_id))));
        assert!(matches!(&refused, Err(TransportError::Refused(why)) if why == "not theirs"), "{refused:?}");
        assert_eq!(input.len(), wire.len() - 8 - ADMISSION_PREFIX_BYTES as usize, "only the prefix was read");

        let mut input = wire.as_slice();
        let read = block_on(read_request_frame(&mut input, |_| Ok(()))).expect("admitted");
        assert_eq!(read.as_deref(), Some(body.as_slice()));
        assert!(input.is_empty());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_frame_reader(bytes in vec(any::<u8>(), 0..512)) {
            let mut input = bytes.as_slice();
            if let Ok(Some(body)) = block_on(read_frame(&mut input)) {
                // A frame is only what the bytes carried.
                prop_assert!(body.len() + 8 <= bytes.len());
                prop_assert_eq!(&bytes[..4], MAGIC);
            }
        }

        #[test]
        fn a_declared_length_is_read_exactly_or_refused(len in any::<u32>(), sent in 0usize..64) {
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&len.to_be_bytes());
            bytes.extend(std::iter::repeat_n(7u8, sent));
            let mut input = bytes.as_slice();
            match block_on(read_frame(&mut input)) {
                Ok(Some(body)) => prop_assert_eq!(body.len() as u64, u64::from(len)),
                Ok(None) => prop_assert!(false, "a started frame is not a clean end"),
                Err(TransportError::Malformed(why)) => {
                    prop_assert!(len > FRAME_BYTES_MAX || sent < len as usize, "{}", why);
                }
                Err(e) => prop_assert!(false, "{}", e),
            }
        }

        #[test]
        fn arbitrary_request_frames_never_panic_the_screening_reader(bytes in vec(any::<u8>(), 0..6000)) {
            let mut input = bytes.as_slice();
            let _ = block_on(read_request_frame(&mut input, |h| if h.to == 1 { Ok(()) } else { Err("no".into()) }));
        }

        #[test]
        fn frames_round_trip_whatever_their_body(bodies in vec(vec(any::<u8>(), 0..300), 1..5)) {
            let mut wire = Vec::new();
            for body in &bodies {
                block_on(write_frame(&mut wire, body)).expect("write to memory");
            }
            let mut input = wire.as_slice();
            for body in &bodies {
                let read = block_on(read_frame(&mut input)).expect("a frame");
                prop_assert_eq!(read.as_ref(), Some(body));
            }
            prop_assert!(block_on(read_frame(&mut input)).expect("clean end").is_none());
        }

        #[test]
        fn arbitrary_bodies_never_panic_the_decoders(bytes in vec(any::<u8>(), 0..512)) {
            if let Ok((header, rest)) = postcard::take_from_bytes::<Header>(&bytes) {
                prop_assert!(header.cluster_id.len() <= bytes.len());
                let _ = crate::raft::decode::<Rpc>(rest);
            }
            let _ = crate::raft::decode::<Rpc>(&bytes);
            let _ = crate::raft::decode::<Answer>(&bytes);
        }

        #[test]
        fn envelopes_round_trip_through_header_then_request(envelope in envelope()) {
            let body = crate::raft::encode(&envelope).expect("encode");
            let (header, rest): (Header, &[u8]) = postcard::take_from_bytes(&body).expect("header");
            prop_assert_eq!(&header.cluster_id, &envelope.cluster_id);
            prop_assert_eq!((header.from, header.to), (envelope.from, envelope.to));
            // The server recognises a probe by its bytes, and only a probe.
            prop_assert_eq!(rest == probe_body().as_slice(), matches!(envelope.rpc, Rpc::Probe));
            let rpc: Rpc = crate::raft::decode(rest).expect("request");
            prop_assert_eq!(crate::raft::encode(&rpc).expect("encode"), crate::raft::encode(&envelope.rpc).expect("encode"));
        }
    }
}
