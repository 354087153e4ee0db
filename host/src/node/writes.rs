//! The write batcher: client writes queued while an entry is in flight become the next entry
//! (one append, one fsync and one replication round for all of them).

use super::{ClusterError, Node, Tuning, stopped, unknown};
use crate::raft::{Request, TimedCommands, TypeConfig, WriteCounters};
use fsm_sdk::Reply;
use openraft::Raft;
use openraft::error::ClientWriteError;
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc, oneshot};

pub(super) struct WriteJob {
    command: Vec<u8>,
    reply: oneshot::Sender<Result<Reply, ClusterError>>,
}

impl Node {
    /// Queues one write (an encoded command) for the next entry and returns where its reply
    /// will arrive: once the entry holding it is committed and applied here. Queuing eagerly, then
    /// awaiting, is what lets a pipelining client's writes share entries.
    pub async fn submit_write(&self, command: Vec<u8>) -> oneshot::Receiver<Result<Reply, ClusterError>> {
        let (reply, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError(job)) = self.writes.send(WriteJob { command, reply }).await {
            let _ = job.reply.send(Err(ClusterError::Fatal(stopped())));
        }
        rx
    }

    /// Proposes one write and waits for its reply.
    pub async fn write(&self, command: Vec<u8>) -> Result<Reply, ClusterError> {
        self.submit_write(command)
            .await
            .await
            .unwrap_or_else(|_| Err(ClusterError::Unknown(unknown("the node is shutting down"))))
    }
}

/// The write batcher: see the module docs. `flushed` watches the last index on this node's disk.
pub(super) async fn write_loop(
    raft: Raft<TypeConfig>,
    mut rx: mpsc::Receiver<WriteJob>,
    tuning: Tuning,
    mut flushed: tokio::sync::watch::Receiver<u64>,
    counters: Arc<WriteCounters>,
) {
    let slots = Arc::new(Semaphore::new(tuning.writes_in_flight_max));
    // The stamp of the last entry proposed: a stamp never goes below it, even if the wall clock
    // is set back (the state machine clamps too, across leaders).
    let mut last_stamp = 0i64;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let Some(first) = rx.recv().await else { return };
        let mut bytes = first.command.len();
        let mut jobs = vec![first];
        while jobs.len() < tuning.batch_commands_max && bytes < tuning.batch_bytes_max {
            match rx.try_recv() {
                Ok(job) => {
                    bytes += job.command.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let commands: Vec<Vec<u8>> = jobs.iter_mut().map(|j| std::mem::take(&mut j.command)).collect();
        WriteCounters::add(&counters.entries_proposed, 1);
        WriteCounters::add(&counters.commands_proposed, commands.len() as u64);
        counters.batch_commands.observe(commands.len() as u64);
        // Whatever this entry's index, it is above the last one appended before it.
        let appended_before = raft.metrics().borrow().last_log_index.unwrap_or(0);
        last_stamp = crate::runtime::wall_clock_ms().max(last_stamp);
        let entry = Request::Timed(TimedCommands { time_ms: last_stamp, commands: Arc::new(commands) });
        let answer = match raft.client_write_ff(entry).await {
            Ok(answer) => answer,
            Err(fatal) => {
                for job in jobs {
                    let _ = job.reply.send(Err(ClusterError::Fatal(format!("raft stopped: {fatal}"))));
                }
                continue;
            }
        };
        let timeout = tuning.write_timeout;
        let (answered, mut answered_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _answered = answered;
            let outcome = tokio::time::timeout(timeout, answer).await;
            let _slot = slot;
            match outcome {
                Ok(Ok(Ok(response))) => {
                    // One reply per write, in order: anything else is a bug between the batcher
                    // and the state machine, and must not hand one client another's reply.
                    if response.data.replies.len() != jobs.len() {
                        tracing::error!(
                            "entry {} carried {} writes but returned {} replies",
                            response.log_id,
                            jobs.len(),
                            response.data.replies.len()
                        );
                        debug_assert_eq!(response.data.replies.len(), jobs.len(), "replies per write");
                    }
                    let mut replies = response.data.replies.into_iter();
                    for job in jobs {
                        let reply = replies.next().ok_or_else(|| ClusterError::Fatal("missing reply".into()));
                        let _ = job.reply.send(reply);
                    }
                }
                // Refused before it was appended, or truncated as uncommitted: not applied.
                Ok(Ok(Err(ClientWriteError::ForwardToLeader(f)))) => {
                    let error = match (f.leader_id, f.leader_node) {
                        (Some(leader), Some(node)) => ClusterError::NotLeader { leader, redis_addr: node.redis_addr },
                        _ => ClusterError::NoLeader,
                    };
                    for job in jobs {
                        let _ = job.reply.send(Err(error.clone()));
                    }
                }
                Ok(Ok(Err(other))) => {
                    for job in jobs {
                        let _ = job.reply.send(Err(ClusterError::Unknown(unknown(&other.to_string()))));
                    }
                }
                Ok(Err(_)) | Err(_) => {
                    let why = if outcome.is_err() {
                        "not applied within the write timeout"
                    } else {
                        "the node stopped before answering"
                    };
                    for job in jobs {
                        let _ = job.reply.send(Err(ClusterError::Unknown(unknown(why))));
                    }
                }
            }
        });
        // The next entry is proposed once this one is on the leader's disk (or its outcome is
        // known, say it was refused), not once it is applied: its replication and the
        // followers' fsyncs then overlap the next entry's append, and everything queued
        // meanwhile still goes into that one entry. The slots bound the entries not yet applied.
        tokio::select! {
            _ = flushed.wait_for(|&last| last > appended_before) => {}
            _ = &mut answered_rx => {}
        }
    }
}
