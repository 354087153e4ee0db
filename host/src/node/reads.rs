//! The read batchers: one read-index round serves every linearizable read queued when it starts;
//! `READONLY` reads have a queue of their own and no barrier.

use super::{ClusterError, Node, stopped};
use crate::raft::network::ReadIndexError;
use crate::raft::{lock, try_lock};
use fsm_sdk::Reply;
use openraft::error::RaftError;
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc, oneshot};

pub(super) struct ReadJob {
    command: Vec<u8>,
    reply: oneshot::Sender<Result<Reply, ClusterError>>,
}

impl Node {
    /// Queues one linearizable read for the next read-index round (see [`Node::submit_write`]).
    /// A `stale` read (`READONLY`) skips the read index and has its own queue and rounds.
    pub async fn submit_read(&self, command: Vec<u8>, stale: bool) -> oneshot::Receiver<Result<Reply, ClusterError>> {
        let (reply, rx) = oneshot::channel();
        let queue = if stale { &self.stale_reads } else { &self.reads };
        if let Err(mpsc::error::SendError(job)) = queue.send(ReadJob { command, reply }).await {
            let _ = job.reply.send(Err(ClusterError::Fatal(stopped())));
        }
        rx
    }

    /// Runs a read command: linearizable, or (`stale`, a `READONLY` connection) against whatever
    /// this node has applied.
    pub async fn read(&self, command: Vec<u8>, stale: bool) -> Result<Reply, ClusterError> {
        if stale {
            return self.query(&command);
        }
        self.submit_read(command, false).await.await.unwrap_or_else(|_| Err(ClusterError::Fatal(stopped())))
    }

    /// Runs a read command against this node's applied state now (no read index).
    ///
    /// The wasm call (up to a full fuel budget) and the wait for the reader runtime run under
    /// `block_in_place`, so the async workers keep serving Raft while it runs.
    pub fn query(&self, command: &[u8]) -> Result<Reply, ClusterError> {
        tokio::task::block_in_place(|| self.with_reader(|reader| reader(command)))
    }

    /// Runs `queries` with a function that answers one query with the reader runtime, running the
    /// cluster's active module. Module changes wait meanwhile (`SharedState::module_change`), so a
    /// switch or a snapshot install cannot commit halfway through. Blocking.
    fn with_reader<T>(&self, queries: impl FnOnce(&mut dyn FnMut(&[u8]) -> Result<Reply, ClusterError>) -> T) -> T {
        self.run_reader(lock(&self.reader), lock(&self.shared.module_change), queries)
    }

    /// [`Node::with_reader`] if its locks are free right now; otherwise `queries` comes back, for
    /// a caller on an async worker that must not wait on them (a module switch holds one for as
    /// long as it compiles).
    fn try_with_reader<T, Q>(&self, queries: Q) -> Result<T, Q>
    where
        Q: FnOnce(&mut dyn FnMut(&[u8]) -> Result<Reply, ClusterError>) -> T,
    {
        let Some(reader) = try_lock(&self.reader) else { return Err(queries) };
        let Some(exclusive) = try_lock(&self.shared.module_change) else { return Err(queries) };
        Ok(self.run_reader(reader, exclusive, queries))
    }

    fn run_reader<T>(
        &self,
        mut reader: std::sync::MutexGuard<'_, crate::runtime::Runtime>,
        _exclusive: std::sync::MutexGuard<'_, ()>,
        queries: impl FnOnce(&mut dyn FnMut(&[u8]) -> Result<Reply, ClusterError>) -> T,
    ) -> T {
        let active = self.active(|active| active.module.clone());
        match &active {
            Some(module) => {
                reader.use_module(module.clone());
                queries(&mut |command| {
                    reader.query(command).map_err(|e| ClusterError::Fatal(format!("read failed: {e}")))
                })
            }
            None => queries(&mut |_| Ok(Reply::error(crate::raft::state_machine::NO_MODULE))),
        }
    }

    /// Waits until a read started now may run locally and be linearizable: obtains a read index
    /// (from openraft on the leader, by RPC to the leader on a follower) and waits until this
    /// node has applied up to it.
    pub(super) async fn read_barrier(&self) -> Result<(), ClusterError> {
        if !self.is_initialized() {
            return Err(ClusterError::NoCluster);
        }
        // One read of the metrics, so the id and the address belong to the same leader.
        let (leader, member) = self.leader().ok_or(ClusterError::NoLeader)?;
        let timeout = self.tuning.read_timeout;
        let index = if leader == self.id {
            match tokio::time::timeout(timeout, self.raft.get_read_log_id()).await {
                Ok(Ok((read, _))) => crate::raft::read_index(read, self.read_floor),
                Ok(Err(RaftError::APIError(_))) => return Err(ClusterError::NoLeader),
                Ok(Err(RaftError::Fatal(e))) => return Err(ClusterError::Fatal(e.to_string())),
                Err(_) => {
                    return Err(ClusterError::Timeout(format!("leadership not confirmed within {timeout:?}")));
                }
            }
        } else {
            self.network.client(leader, &member).read_index(timeout).await.map_err(|e| match e {
                ReadIndexError::Unreachable(why) => {
                    ClusterError::Unreachable(format!("the leader (node {leader}) cannot be reached: {why}"))
                }
                ReadIndexError::Failed(why) => {
                    ClusterError::Timeout(format!("could not get a read index from the leader: {why}"))
                }
            })?
        };
        self.raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "linearizable read")
            .await
            .map(|_| ())
            .map_err(|e| ClusterError::Timeout(format!("not caught up with the leader's read index: {e}")))
    }
}

/// Reads served in one round at most.
const READS_PER_ROUND_MAX: usize = 4096;

/// `first` and every read queued behind it, up to [`READS_PER_ROUND_MAX`].
fn take_round(first: ReadJob, rx: &mut mpsc::Receiver<ReadJob>) -> Vec<ReadJob> {
    let mut jobs = vec![first];
    while jobs.len() < READS_PER_ROUND_MAX {
        match rx.try_recv() {
            Ok(job) => jobs.push(job),
            Err(_) => break,
        }
    }
    jobs
}

/// How long a round of reads may run on the async worker before the rest of it moves off
/// (`block_in_place`). Most rounds (a `GET` each from a few dozen clients) take far less; handing
/// the worker's core off costs more than such a round (a switch of threads each way).
const INLINE_ROUND_BUDGET: std::time::Duration = std::time::Duration::from_micros(200);

/// Answers a round of reads: each query once `barrier` allows it, with one lock of the reader
/// runtime for the whole round. The round starts on the async worker when the reader is free;
/// what is left of it once it has run for [`INLINE_ROUND_BUDGET`] (or all of it, when the reader
/// is busy) moves to a blocking hand-off, so a long round never holds up the worker's other tasks
/// longer than one query.
fn answer_round(node: &Node, jobs: Vec<ReadJob>, barrier: Result<(), ClusterError>) {
    let mut jobs = jobs.into_iter();
    let answer = |reader: &mut dyn FnMut(&[u8]) -> Result<Reply, ClusterError>, job: ReadJob| {
        let reply = barrier.clone().and_then(|()| reader(&job.command));
        let _ = job.reply.send(reply);
    };
    let inline = node.try_with_reader(|reader| {
        let started = std::time::Instant::now();
        while let Some(job) = jobs.next() {
            answer(&mut *reader, job);
            if started.elapsed() >= INLINE_ROUND_BUDGET && jobs.len() > 0 {
                tokio::task::block_in_place(|| jobs.by_ref().for_each(|job| answer(&mut *reader, job)));
            }
        }
    });
    if inline.is_err() {
        tokio::task::block_in_place(|| node.with_reader(|reader| jobs.for_each(|job| answer(&mut *reader, job))));
    }
}

/// Serves `READONLY` reads in rounds, with no read index.
pub(super) async fn stale_read_loop(node: std::sync::Weak<Node>, mut rx: mpsc::Receiver<ReadJob>) {
    while let Some(first) = rx.recv().await {
        let jobs = take_round(first, &mut rx);
        let Some(node) = node.upgrade() else { return };
        answer_round(&node, jobs, Ok(()));
    }
}

/// Read-index rounds in flight at once. One: every read arriving during a round joins the next,
/// which measured best (three nodes, `redis-benchmark -t get -c 50`: 45.7k and 45.2k GET/s with
/// one round, 41.5k and 41.1k with two, 31.2k and 36.2k with four).
const READ_ROUNDS_MAX: usize = 1;

/// The read batcher: see the module docs.
pub(super) async fn read_loop(node: std::sync::Weak<Node>, mut rx: mpsc::Receiver<ReadJob>) {
    let rounds = Arc::new(Semaphore::new(READ_ROUNDS_MAX));
    loop {
        let Ok(round) = rounds.clone().acquire_owned().await else { return };
        let Some(first) = rx.recv().await else { return };
        let jobs = take_round(first, &mut rx);
        let Some(node) = node.upgrade() else { return };
        tokio::spawn(async move {
            let _round = round;
            let barrier = node.read_barrier().await;
            answer_round(&node, jobs, barrier);
        });
    }
}
