//! The module lifecycle: the module this node's config names, `MODULE RELOAD` and SIGHUP, and
//! proposing a switch through the log when this node leads.

use super::{ClusterError, Node};
use crate::raft::modules::Configured;
use crate::raft::{Member, ModuleChange, NodeId, Request};
use crate::runtime::FsmModule;
use fsm_sdk::Reply;
use openraft::RaftMetrics;
use std::sync::Arc;
use std::time::Duration;

impl Node {
    /// `MODULE RELOAD`: reads the config again and switches the cluster to the module it names
    /// (validated first: it loads, speaks our ABI, imports only what we allow). On the leader it
    /// proposes the switch and returns the outcome once applied; a follower returns what the
    /// leader must be sent ([`Reload::Forward`]).
    pub async fn reload_module(&self) -> Result<Reload, ClusterError> {
        let configured = self.reread_config().map_err(|e| ClusterError::Refused(e.to_string()))?;
        // An explicit reload replaces whatever this node asked for before.
        self.modules.settle(None);
        match self.route_to_leader() {
            Ok(()) => self.switch_to(configured.module, None).await.map(Reload::Done),
            Err(ClusterError::NotLeader { redis_addr, .. }) if !redis_addr.is_empty() => {
                self.read_barrier().await?;
                if self.is_active(&configured.module) {
                    return Ok(Reload::Done(already_active(&configured.module)));
                }
                Ok(Reload::Forward { redis_addr, bytes: configured.module.bytes().to_vec() })
            }
            Err(e) => Err(e),
        }
    }

    /// A follower's `MODULE RELOAD`, on the leader: validates the module it sent and switches to
    /// it.
    pub async fn propose_module(&self, bytes: &[u8]) -> Result<Reply, ClusterError> {
        // Not `-MOVED`: a client following it would reload the new leader's own config.
        self.route_to_leader().map_err(|e| match e {
            ClusterError::NotLeader { .. } => {
                ClusterError::Refused("leadership moved while the module was sent; run MODULE RELOAD again".into())
            }
            other => other,
        })?;
        let engine = self.shared.configured().engine().clone();
        let module = tokio::task::block_in_place(|| FsmModule::load(&engine, bytes))
            .map_err(|e| ClusterError::Refused(format!("the module does not load: {e}")))?;
        self.switch_to(Arc::new(module), None).await
    }

    /// SIGHUP: reads the config again; if it names another module than the active one, asks for
    /// a switch (proposed now if this node leads, else whenever it does).
    pub fn reload_on_signal(&self) {
        match self.reread_config() {
            Err(e) => tracing::error!("SIGHUP: the configuration was not reloaded: {e}"),
            Ok(configured) => {
                self.modules.settle(None);
                if self.is_active(&configured.module) {
                    tracing::info!("SIGHUP: the configured module is the active one; nothing to switch");
                } else {
                    tracing::info!(path = %configured.path.display(), "SIGHUP: proposing the configured module when this node leads");
                    self.modules.want(configured.module, self.last_module_entry());
                }
            }
        }
    }

    /// Reads the config and the module it names again (blocking: off the async workers).
    fn reread_config(&self) -> Result<Configured, String> {
        tokio::task::block_in_place(|| self.modules.reread())
    }

    pub(super) fn is_active(&self, module: &FsmModule) -> bool {
        self.active(|a| a.module.as_ref().is_some_and(|m| m.digest() == module.digest()))
    }

    /// The index of the last module entry this node applied (0 if none).
    pub(super) fn last_module_entry(&self) -> u64 {
        self.active(|a| a.history.last().map_or(0, |e| e.index))
    }

    /// Proposes `module` as the cluster's (on the leader) and returns the outcome once applied:
    /// `+OK ...` when active, an error naming why when rejected. With `after` (a request made
    /// when the last module entry was that one), a later module entry means the matter is decided
    /// and nothing is proposed.
    async fn switch_to(&self, module: Arc<FsmModule>, after: Option<u64>) -> Result<Reply, ClusterError> {
        let _one_at_a_time = self.switching.lock().await;
        // Decide on everything committed so far: a module entry may not be applied here yet.
        self.read_barrier().await?;
        if self.is_active(&module) {
            return Ok(already_active(&module));
        }
        let last = self.last_module_entry();
        if after.is_some_and(|after| after != last) {
            return Ok(Reply::Simple(format!("OK decided by the module entry at index {last}")));
        }
        let response = self.propose(Request::Module(ModuleChange::of(&module))).await?;
        Ok(response.replies.into_iter().next().unwrap_or_else(Reply::ok))
    }
}

fn already_active(module: &FsmModule) -> Reply {
    Reply::Simple(format!("OK module {} is already active", &crate::storage::hex(&module.digest())[..12]))
}

/// What `MODULE RELOAD` leaves to the server.
#[derive(Debug)]
pub enum Reload {
    /// The answer.
    Done(Reply),
    /// This node follows: the leader at `redis_addr` must propose these module bytes
    /// (`REDRAFT.PROPOSE-MODULE`).
    Forward {
        /// The leader's Redis address.
        redis_addr: String,
        /// The module this node's config names.
        bytes: Vec<u8>,
    },
}

/// Proposes the module this node asks for (see [`crate::raft::modules`]) whenever it leads.
pub(super) async fn module_loop(
    node: std::sync::Weak<Node>,
    mut metrics: tokio::sync::watch::Receiver<RaftMetrics<NodeId, Member>>,
    mut server: tokio::sync::watch::Receiver<openraft::metrics::RaftServerMetrics<NodeId, Member>>,
    wakeup: Arc<tokio::sync::Notify>,
) {
    loop {
        let woken = wakeup.notified();
        let mut failed = false;
        {
            let Some(node) = node.upgrade() else { return };
            if let Some(wanted) = node.modules.wanted()
                && node.active(|a| a.module.is_some())
                && node.route_to_leader().is_ok()
            {
                match node.switch_to(wanted.module.clone(), Some(wanted.after)).await {
                    Ok(reply) => {
                        tracing::info!("the module this node asked for: {reply:?}");
                        node.modules.settle(Some(&wanted.module));
                    }
                    // Lost the lead meanwhile: the request stays, for when this node leads.
                    Err(ClusterError::NoLeader | ClusterError::NotLeader { .. }) => {}
                    Err(e) => {
                        // Maybe applied after all: the next round sees the new module entry.
                        tracing::warn!("proposing the configured module failed: {e}; trying again");
                        failed = true;
                    }
                }
            }
        }
        if failed {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        // With nothing asked for, only a request can give this loop work: waiting on the metrics
        // too (which change with every append and apply) would wake it several times per write.
        if node.upgrade().is_some_and(|node| node.modules.wanted().is_some()) {
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return },
                () = woken => {}
            }
        } else {
            tokio::select! {
                changed = server.changed() => if changed.is_err() { return },
                () = woken => {}
            }
        }
    }
}
