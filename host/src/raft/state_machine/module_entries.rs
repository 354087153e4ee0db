//! Module entries: loading a module from an entry, switching the applier and the reader to it
//! (its migration hook inside the entry's apply), the legacy contract entry, and the module
//! history every replica records identically.

use super::{ActiveModule, MODULE_HISTORY, MODULE_HISTORY_MAX, RETIRED_NODES, StateMachine, io_error};
use crate::raft::{ModuleChange, ModuleEvent, NodeId, decode, encode, lock};
use crate::runtime::{Contract, FsmModule, SwitchOutcome};
use crate::storage::meta;
use fsm_sdk::Reply;
use openraft::{LogId, StorageError, StorageIOError};
use std::collections::BTreeSet;
use std::sync::Arc;

impl StateMachine {
    /// Loads module bytes from the log or a snapshot, reusing the configured module when they
    /// are its bytes.
    pub(super) fn load_module(&self, bytes: &[u8]) -> Result<Arc<FsmModule>, crate::runtime::LoadError> {
        let configured = self.shared.configured();
        if bytes == configured.bytes() {
            return Ok(configured);
        }
        FsmModule::load(configured.engine(), bytes).map(Arc::new)
    }

    pub(super) fn reload_shared(&self) -> Result<(), StorageError<NodeId>> {
        let r = |e: &dyn std::fmt::Display| io_error(StorageIOError::read_state_machine, e);
        let view = self.store.read().map_err(|e| r(&e))?;
        let meta = view.meta().map_err(|e| r(&e))?;
        let retired = match meta.get(RETIRED_NODES) {
            Some(bytes) => decode(bytes).map_err(|e| r(&e))?,
            None => BTreeSet::new(),
        };
        *self.shared.retired.write().unwrap_or_else(|p| p.into_inner()) = retired;
        let history = match meta.get(MODULE_HISTORY) {
            Some(bytes) => decode(bytes).map_err(|e| r(&e))?,
            None => Vec::new(),
        };
        // The runtime runs the store's recorded module (opened with it, or switched to it by a
        // restore); without one, no module is active yet.
        let module = meta.contains_key(meta::MODULE).then(|| lock(&self.runtime).module().clone());
        self.note_configured(module.as_deref());
        *self.shared.module.write().unwrap_or_else(|p| p.into_inner()) = ActiveModule { module, history };
        Ok(())
    }

    /// Says so in the log when this node's configured module is not the cluster's.
    fn note_configured(&self, active: Option<&FsmModule>) {
        let configured = self.shared.configured();
        if let Some(active) = active
            && active.digest() != configured.digest()
        {
            tracing::warn!(
                active = %crate::storage::hex(&active.digest()),
                configured = %crate::storage::hex(&configured.digest()),
                "this node's configured fsm_module is not the cluster's active module: following the cluster"
            );
        }
    }

    /// Applies a [`Request::Contract`] entry (logs written before module switches): the module
    /// entry of this node's configured module, which must have exactly that contract.
    pub(super) fn apply_legacy_contract(
        &self,
        log_id: LogId<NodeId>,
        cluster: &[u8],
    ) -> Result<Reply, StorageError<NodeId>> {
        let configured = self.shared.configured();
        if configured.contract().encode() == cluster {
            // Installed as such a cluster's stores were: no migration, no history event (a
            // replica that applied this entry before the upgrade has none either).
            let last = encode(&log_id).map_err(|e| io_error(StorageIOError::write_state_machine, e))?;
            let meta = |_: &SwitchOutcome| Ok(vec![(meta::LAST_APPLIED, last.clone())]);
            let switched = self
                .switch_runtime(&configured, false, &meta)
                .map_err(|e| io_error(StorageIOError::write_state_machine, e))?;
            return match switched {
                SwitchOutcome::Activated => Ok(Reply::ok()),
                SwitchOutcome::Rejected(why) => Err(io_error(
                    StorageIOError::write_state_machine,
                    format!("the configured module cannot be installed: {why}"),
                )),
            };
        }
        let text = match Contract::decode(cluster) {
            Ok(theirs) => format!(
                "this node's state-machine contract differs from the cluster's ({}; cluster vs this node): refusing to \
                 apply. Configure the cluster's module (digest {}) and limits",
                theirs.differences(&configured.contract()).join("; "),
                crate::storage::hex(&theirs.module_digest),
            ),
            Err(e) => format!("the cluster's state-machine contract is unreadable ({e}): refusing to apply"),
        };
        tracing::error!("{text}");
        Err(io_error(StorageIOError::write_state_machine, text))
    }

    /// Applies a [`Request::Module`] entry (everything before it is committed): switches modules
    /// or records why not, in one store transaction with the last-applied id. Returns the reply
    /// for whoever proposed it.
    pub(super) fn apply_module_change(
        &self,
        log_id: LogId<NodeId>,
        change: &ModuleChange,
    ) -> Result<Reply, StorageError<NodeId>> {
        use sha2::Digest as _;
        let w = |e: &dyn std::fmt::Display| io_error(StorageIOError::write_state_machine, e);
        let digest: [u8; 32] = sha2::Sha256::digest(&change.bytes).into();
        let short = &crate::storage::hex(&digest)[..12];
        let last = encode(&log_id).map_err(|e| w(&e))?;
        // Whether this replica can follow the cluster at all is not a deterministic outcome but
        // this node's configuration: it stops rather than diverge.
        let proposed = Contract::decode(&change.contract);
        if let Ok(proposed) = &proposed {
            let differences = self.shared.configured().contract().differences_besides_module(proposed);
            if !differences.is_empty() {
                let text = format!(
                    "this node's ABI, engine or limits differ from the cluster's ({}; this node vs cluster): refusing \
                     to apply. Run the same Redraft build with the same limits as the rest of the cluster",
                    differences.join("; ")
                );
                tracing::error!("{text}");
                return Err(w(&text));
            }
        }
        let (current, previous) = {
            let active = self.shared.module.read().unwrap_or_else(|p| p.into_inner());
            (active.module.clone(), active.history.clone())
        };
        if current.as_ref().is_some_and(|m| m.digest() == digest) {
            // Already active: nothing to switch, nothing to record.
            self.commit_meta(&[(meta::LAST_APPLIED, &last)])?;
            return Ok(Reply::Simple(format!("OK module {short} is already active")));
        }
        let history_with = |rejected: Option<String>| {
            let mut history = previous.clone();
            history.push(ModuleEvent { index: log_id.index, digest, rejected });
            let excess = history.len().saturating_sub(MODULE_HISTORY_MAX);
            history.drain(..excess);
            history
        };
        // A malformed entry is rejected alike everywhere. Bytes that match their digest but do
        // not load here are this node's problem (the leader validated them, and every node runs
        // the same engine): a resource failure, or a build whose checks differ. Stop rather than
        // diverge.
        let loaded = match proposed {
            Err(e) => Err(format!("the entry's contract is unreadable: {e}")),
            Ok(proposed) if proposed.module_digest != digest => {
                Err("the module's bytes do not match its digest".into())
            }
            Ok(_) => match tokio::task::block_in_place(|| self.load_module(&change.bytes)) {
                Ok(module) => Ok(module),
                Err(e) => {
                    let text = format!(
                        "the module the cluster switches to at index {} ({short}) does not load on this node: {e}. \
                         Refusing to apply: run the same Redraft build as the rest of the cluster",
                        log_id.index
                    );
                    tracing::error!("{text}");
                    return Err(w(&text));
                }
            },
        };
        // A failed migration's reason, as the history and the reply give it.
        let migrate_failed = |outcome: SwitchOutcome| match outcome {
            SwitchOutcome::Rejected(reason) => {
                let reason = reason.strip_prefix("ERR ").unwrap_or(&reason);
                let reason = reason.strip_prefix("command aborted: ").unwrap_or(reason);
                SwitchOutcome::Rejected(format!("migrate failed: {reason}"))
            }
            activated => activated,
        };
        let outcome = match loaded {
            Err(reason) => {
                let history = encode(&history_with(Some(reason.clone()))).map_err(|e| w(&e))?;
                self.commit_meta(&[(meta::LAST_APPLIED, &last), (MODULE_HISTORY, &history)])?;
                SwitchOutcome::Rejected(reason)
            }
            Ok(module) => {
                // No migration when the cluster gets its first module: there is no earlier state.
                let run_migrate = current.is_some();
                let meta_for = |outcome: &SwitchOutcome| {
                    let rejected = match migrate_failed(outcome.clone()) {
                        SwitchOutcome::Activated => None,
                        SwitchOutcome::Rejected(reason) => Some(reason),
                    };
                    let history = encode(&history_with(rejected))
                        .map_err(|e| crate::runtime::ApplyError::Engine(format!("encoding the history: {e}")))?;
                    Ok(vec![(meta::LAST_APPLIED, last.clone()), (MODULE_HISTORY, history)])
                };
                let switched = self.switch_runtime(&module, run_migrate, &meta_for).map_err(|e| {
                    tracing::error!("applying the module entry {log_id} failed: {e}; this node stops applying");
                    w(&e)
                })?;
                if switched == SwitchOutcome::Activated {
                    self.note_configured(Some(&module));
                }
                migrate_failed(switched)
            }
        };
        let hex = crate::storage::hex(&digest);
        let index = log_id.index;
        let mut active = self.shared.module.write().unwrap_or_else(|p| p.into_inner());
        Ok(match outcome {
            SwitchOutcome::Activated => {
                active.history = history_with(None);
                tracing::info!(index, module = %hex, "state-machine module switched");
                Reply::Simple(format!("OK module {short} is active from index {index}"))
            }
            SwitchOutcome::Rejected(reason) => {
                active.history = history_with(Some(reason.clone()));
                tracing::warn!(index, module = %hex, "module switch rejected: {reason}");
                Reply::Error(format!("ERR module switch to {short} rejected at index {index}: {reason}"))
            }
        })
    }

    /// Switches the applier's runtime to `module` (see `Runtime::switch_module`) and, when the
    /// module became active, the shared active module too, with readers kept out until both agree.
    fn switch_runtime(
        &self,
        module: &Arc<FsmModule>,
        run_migrate: bool,
        meta: &dyn Fn(&SwitchOutcome) -> Result<crate::runtime::MetaValues, crate::runtime::ApplyError>,
    ) -> Result<SwitchOutcome, crate::runtime::ApplyError> {
        tokio::task::block_in_place(|| {
            let _exclusive = lock(&self.shared.module_change);
            let switched = lock(&self.runtime).switch_module(module.clone(), run_migrate, meta)?;
            if switched == SwitchOutcome::Activated {
                self.shared.module.write().unwrap_or_else(|p| p.into_inner()).module = Some(module.clone());
            }
            Ok(switched)
        })
    }
}
