//! Cluster membership: `BOOTSTRAP`, `JOIN` (probe, catch up as a learner, promote, wait until
//! the new voter serves) and `REMOVE`, each refused when it could cost the cluster its quorum.

use super::{ClusterError, Node, stopped};
use crate::raft::network::TransportError;
use crate::raft::{Member, ModuleChange, NodeId, Request};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How long `JOIN` waits for a new learner to catch up before giving up (it stays a learner).
const JOIN_CATCH_UP_SECS: u64 = 120;

/// How long `JOIN` waits for the new node to answer its probe before refusing it.
const JOIN_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// A learner that answers no RPC for this long (or for two snapshot chunk timeouts, if longer)
/// while catching up is taken as down, and `JOIN` gives up on it.
pub(super) const JOIN_SILENCE_MIN: Duration = Duration::from_secs(10);

/// How long `JOIN` waits, once the node is a voter, for it to apply what was committed when its
/// promotion was decided (after which it can serve reads).
const JOIN_SERVING_TIMEOUT: Duration = Duration::from_secs(30);

/// A fresh cluster id: unique, not secret (it only keeps clusters from talking to each other).
fn new_cluster_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    for salt in 0..2u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(salt);
        h.write_u32(std::process::id());
        if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            h.write_u128(t.as_nanos());
        }
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

impl Node {
    /// `BOOTSTRAP`: makes this fresh node a one-node cluster whose first entry installs this
    /// node's configured module.
    pub async fn bootstrap(&self, id: NodeId, raft_addr: &str) -> Result<(), ClusterError> {
        if id != self.id {
            return Err(ClusterError::Refused(format!("this is node {}, not node {id}", self.id)));
        }
        let pristine = self.log.is_pristine().map_err(|e| ClusterError::Fatal(e.to_string()))?;
        let initialized = self.raft.is_initialized().await.map_err(|e| ClusterError::Fatal(e.to_string()))?;
        // A cluster id without a log means an earlier BOOTSTRAP stopped before initialising:
        // starting over is safe, so only a log or a membership refuses.
        if initialized || !pristine {
            return Err(ClusterError::Refused("this node is already part of a cluster".into()));
        }
        self.identity.set_cluster_id(&new_cluster_id()).map_err(|e| ClusterError::Fatal(e.to_string()))?;
        let member = Member { raft_addr: raft_addr.to_owned(), redis_addr: self.member.redis_addr.clone() };
        self.raft
            .initialize(BTreeMap::from([(self.id, member)]))
            .await
            .map_err(|e| ClusterError::Refused(format!("bootstrap failed: {e}")))?;
        self.raft
            .wait(Some(self.tuning.election_timeout * 10))
            .state(ServerState::Leader, "bootstrap")
            .await
            .map_err(|e| ClusterError::Timeout(format!("the new cluster elected no leader: {e}")))?;
        self.propose(Request::Module(ModuleChange::of(&self.modules.current().module))).await?;
        tracing::info!(id = self.id, cluster = ?self.cluster_id(), "bootstrapped a one-node cluster");
        Ok(())
    }

    /// `JOIN` (on the leader): adds a node as a learner, waits until it has caught up, then
    /// promotes it to voter, and answers once it can serve reads. Ids in use or retired are
    /// refused.
    ///
    /// Nothing is proposed before the node has answered a probe at `raft_addr` under `id`, outside
    /// any other cluster, with our ABI, engine and limits. The learner is promoted only once its
    /// matched log index has reached the commit index the leader had when the catch-up started
    /// (openraft's own test counts entries, and a short log of large batched entries always
    /// passes it), and only if the new voter set keeps a live quorum. A learner that does not catch
    /// up stays a learner, which counts for no quorum, and the error says how to remove it.
    pub async fn join(&self, id: NodeId, raft_addr: &str, redis_addr: &str) -> Result<(), ClusterError> {
        self.route_to_leader()?;
        let metrics = self.metrics();
        let membership = metrics.membership_config.membership();
        let already_learner = match membership.get_node(&id) {
            Some(_) if membership.voter_ids().any(|v| v == id) => {
                return Err(ClusterError::Refused(format!("node {id} is already a member")));
            }
            Some(existing) if existing.raft_addr != raft_addr => {
                return Err(ClusterError::Refused(format!(
                    "node {id} is a learner at {}: REMOVE {id} first to give it another address",
                    existing.raft_addr
                )));
            }
            Some(_) => true,
            None => false,
        };
        if self.shared.retired.read().unwrap_or_else(|p| p.into_inner()).contains(&id) {
            return Err(ClusterError::Refused(format!("node id {id} was removed and is never reused: pick a new id")));
        }
        if raft_addr == self.member.raft_addr {
            return Err(ClusterError::Refused(format!("{raft_addr} is this node's own raft address")));
        }
        if let Some((other, _)) = membership.nodes().find(|(n, m)| **n != id && m.raft_addr == raft_addr) {
            return Err(ClusterError::Refused(format!("{raft_addr} is the raft address of node {other}")));
        }
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let member = Member { raft_addr: raft_addr.to_owned(), redis_addr: redis_addr.to_owned() };
        self.probe_joining(id, &member).await?;
        if !already_learner {
            tracing::info!(id, %member, "adding learner");
            self.raft.add_learner(id, member.clone(), false).await.map_err(membership_error)?;
        }
        let target = self.catch_up(id).await?;
        let mut promoted = voters;
        promoted.insert(id);
        self.live_quorum(&promoted).map_err(|why| {
            ClusterError::Refused(format!(
                "node {id} caught up but was not promoted: the voters would have no live quorum ({why}); it \
                 stays a learner: run JOIN again once the voters are back, or REMOVE {id}"
            ))
        })?;
        tracing::info!(id, target, "promoting to voter");
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(membership_error)?;
        self.wait_serving(id, &member, target).await
    }

    /// Asks the node about to join who it is (see `network`'s probe) and refuses it when it does
    /// not answer, is another node, belongs to another cluster, or runs another ABI, engine or
    /// limits (it would stop at the cluster's first module entry, and once promoted count towards
    /// quorums it can never serve). Its module may differ: it runs the cluster's.
    async fn probe_joining(&self, id: NodeId, member: &Member) -> Result<(), ClusterError> {
        let answer = self.network.client(id, member).probe(JOIN_PROBE_TIMEOUT).await.map_err(|e| match e {
            TransportError::Refused(why) => ClusterError::Refused(format!(
                "node {id} at {} refused us: {why}. Nothing was changed",
                member.raft_addr
            )),
            e => ClusterError::Refused(format!(
                "cannot reach node {id} at {}: {e}; is it running? Nothing was changed",
                member.raft_addr
            )),
        })?;
        if let Some(theirs) = &answer.cluster_id
            && Some(theirs) != self.cluster_id().as_ref()
        {
            return Err(ClusterError::Refused(format!(
                "node {id} belongs to another cluster ({theirs}): only a node with an empty data_dir can join"
            )));
        }
        let ours = self.modules.current().module.contract();
        let differences = match crate::runtime::Contract::decode(&answer.contract) {
            Ok(theirs) => ours.differences_besides_module(&theirs).join("; "),
            Err(e) => format!("unreadable contract: {e}"),
        };
        if differences.is_empty() {
            return Ok(());
        }
        Err(ClusterError::Refused(format!(
            "node {id} runs another ABI, engine or limits ({differences}; cluster vs node {id}): refusing to JOIN it"
        )))
    }

    /// Waits until learner `id` has matched the log up to the commit index as it is now, and
    /// returns that index. Gives up (the node stays a learner) when this node stops leading, when
    /// the learner is silent for `join_silence`, or after [`JOIN_CATCH_UP_SECS`].
    async fn catch_up(&self, id: NodeId) -> Result<u64, ClusterError> {
        let target = self
            .raft
            .with_raft_state(|state| state.committed.map_or(0, |l| l.index))
            .await
            .map_err(|e| ClusterError::Fatal(e.to_string()))?;
        let stays = format!("it stays a learner, which counts for no quorum: run JOIN again, or REMOVE {id}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(JOIN_CATCH_UP_SECS);
        let mut metrics = self.raft.metrics();
        loop {
            {
                let m = metrics.borrow_and_update();
                if m.state != ServerState::Leader {
                    return Err(ClusterError::Refused(format!(
                        "leadership moved while node {id} was catching up; {stays}"
                    )));
                }
                let matched = m.replication.as_ref().and_then(|r| r.get(&id).cloned().flatten()).map(|l| l.index);
                if matched >= Some(target) {
                    return Ok(target);
                }
            }
            let silence = self.network.last_heard(id).unwrap_or(Duration::MAX);
            if silence > self.tuning.join_silence {
                return Err(ClusterError::Timeout(format!(
                    "node {id} stopped answering while catching up (nothing heard for {:?}); {stays}",
                    self.tuning.join_silence
                )));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClusterError::Timeout(format!(
                    "node {id} did not catch up to index {target} within {JOIN_CATCH_UP_SECS} s; {stays}"
                )));
            }
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() {
                    return Err(ClusterError::Fatal(stopped()));
                },
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    /// Whether `voters` has a quorum of live nodes: this node, and those the peer transport heard
    /// from within an election timeout. Says who is missing when not.
    fn live_quorum(&self, voters: &BTreeSet<NodeId>) -> Result<(), String> {
        let window = self.tuning.election_timeout;
        let (live, silent): (Vec<NodeId>, Vec<NodeId>) =
            voters.iter().partition(|&&v| v == self.id || self.network.heard_within(v, window));
        let needed = voters.len() / 2 + 1;
        if live.len() >= needed {
            return Ok(());
        }
        Err(format!(
            "{} of {} voters heard from within {window:?}, a quorum is {needed}; silent: {silent:?}",
            live.len(),
            voters.len()
        ))
    }

    /// Waits until the new voter has applied `target`: from then on it answers reads.
    async fn wait_serving(&self, id: NodeId, member: &Member, target: u64) -> Result<(), ClusterError> {
        let deadline = tokio::time::Instant::now() + JOIN_SERVING_TIMEOUT;
        let client = self.network.client(id, member);
        loop {
            if let Ok(answer) = client.probe(JOIN_PROBE_TIMEOUT).await
                && answer.last_applied >= target
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClusterError::Timeout(format!(
                    "node {id} is a voter but has not applied index {target} within {JOIN_SERVING_TIMEOUT:?}; \
                     check its log"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `REMOVE` (on the leader): retires the id for good, then removes the node from the
    /// membership. Removing a voter is refused when the voters left would have no live quorum
    /// (the change could not commit, and the cluster would be stuck in its joint configuration)
    /// unless `force`.
    pub async fn remove(&self, id: NodeId, force: bool) -> Result<(), ClusterError> {
        self.route_to_leader()?;
        let metrics = self.metrics();
        let membership = metrics.membership_config.membership();
        if membership.get_node(&id).is_none() {
            return Err(ClusterError::Refused(format!("node {id} is not a member")));
        }
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if voters.len() == 1 && voters.contains(&id) {
            return Err(ClusterError::Refused("cannot remove the last voter".into()));
        }
        if voters.contains(&id) && !force {
            let mut remaining = voters.clone();
            remaining.remove(&id);
            self.live_quorum(&remaining).map_err(|why| {
                ClusterError::Refused(format!(
                    "removing node {id} would leave no live quorum ({why}); bring the silent voters back, or \
                     REMOVE {id} FORCE"
                ))
            })?;
        }
        self.propose(Request::RetireNode(id)).await?;
        if voters.contains(&id) {
            self.raft
                .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                .await
                .map_err(membership_error)?;
        }
        if self.metrics().membership_config.membership().get_node(&id).is_some() {
            self.raft
                .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                .await
                .map_err(membership_error)?;
        }
        Ok(())
    }
}

fn membership_error(e: RaftError<NodeId, ClientWriteError<NodeId, Member>>) -> ClusterError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => ClusterError::NoLeader,
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => ClusterError::Refused(e.to_string()),
        RaftError::Fatal(e) => ClusterError::Fatal(e.to_string()),
    }
}
