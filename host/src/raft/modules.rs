//! One node's side of the module lifecycle: the module its config names, and whether it asks the
//! cluster to switch to it.
//!
//! The cluster's *active* module is replicated state (see [`super::state_machine`]); a node's
//! *configured* module is only a proposal. A node asks for a switch (and proposes it once it
//! leads) in three cases:
//!
//! * `MODULE RELOAD`: the node reads its config again and the cluster switches to that module
//!   at once (a follower has the leader propose it);
//! * SIGHUP: the node reads its config again and, if the module differs from the active one, asks
//!   for the switch, proposing it whenever it leads;
//! * at start, when the configured module differs from the one this node's config named at its
//!   previous start (kept in `data_dir/configured_module`): an operator changed the config.
//!
//! A node that merely restarts with an old config, or joins with one, never asks: it follows the
//! cluster. A request is dropped once any later module entry decides the matter (another node's
//! switch, or this one's), and replaced by every reload, so a stale request never switches a
//! cluster back when its node wins an election.

use crate::config::ConfigSource;
use crate::runtime::{FsmEngine, FsmModule, LoadError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// The module a node's config names.
#[derive(Debug, Clone)]
pub struct Configured {
    /// The `.wasm` file, as resolved from the config.
    pub path: PathBuf,
    /// The module loaded from it.
    pub module: Arc<FsmModule>,
}

/// The configured module, shared by [`ModuleConfig`] (which replaces it on a reload) and the state
/// machine (which checks module entries against it): one value, never two copies to keep in step.
pub type ConfiguredCell = Arc<RwLock<Arc<FsmModule>>>;

/// A [`ConfiguredCell`] holding `module`.
pub fn configured_cell(module: Arc<FsmModule>) -> ConfiguredCell {
    Arc::new(RwLock::new(module))
}

/// See the module docs.
pub struct ModuleConfig {
    engine: Arc<FsmEngine>,
    source: Option<ConfigSource>,
    /// The `.wasm` path the config names.
    path: Mutex<PathBuf>,
    /// The module loaded from it.
    module: ConfiguredCell,
    /// The module this node asks the cluster to switch to, once it leads.
    wanted: Mutex<Option<Wanted>>,
    /// Whether the config names another module than at the previous start.
    changed_since_last_start: bool,
    /// Wakes the proposer when `wanted` is set.
    pub(crate) wakeup: Arc<tokio::sync::Notify>,
    /// Records the digest of the configured module at the last start or reload.
    seen_file: PathBuf,
}

fn load(engine: &Arc<FsmEngine>, path: &Path) -> Result<Arc<FsmModule>, LoadError> {
    FsmModule::load_file(engine, path).map(Arc::new)
}

/// A load error as an operator reads it: the path, then what is wrong.
fn describe(path: &Path, e: &LoadError) -> String {
    match e {
        LoadError::Read { .. } => e.to_string(),
        e => format!("fsm_module {}: {e}", path.display()),
    }
}

/// The configured module could not be loaded at start; the text names the file and what is
/// wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OpenError(String);

impl ModuleConfig {
    /// Loads the configured module (a missing or broken file stops the start) and decides, from
    /// what the config named at the previous start, whether this node asks for a switch.
    pub fn open(
        engine: Arc<FsmEngine>,
        path: &Path,
        source: Option<ConfigSource>,
        data_dir: &Path,
    ) -> Result<Self, OpenError> {
        let module = load(&engine, path).map_err(|e| OpenError(describe(path, &e)))?;
        let seen_file = data_dir.join("configured_module");
        let previous = std::fs::read_to_string(&seen_file).ok().map(|text| text.trim().to_owned());
        let digest = crate::storage::hex(&module.digest());
        let config = ModuleConfig {
            engine,
            source,
            path: Mutex::new(path.to_owned()),
            module: configured_cell(module),
            wanted: Mutex::new(None),
            changed_since_last_start: previous.as_ref().is_some_and(|p| *p != digest),
            wakeup: Arc::default(),
            seen_file,
        };
        // A changed config is recorded once its request is settled (`settle`), so a restart
        // before that asks again.
        if !config.changed_since_last_start {
            config.record_seen(&digest);
        }
        Ok(config)
    }

    fn record_seen(&self, digest: &str) {
        // Best effort: losing it only means a changed config is not noticed at the next start
        // (MODULE RELOAD still works).
        let temp = self.seen_file.with_extension("tmp");
        let written =
            std::fs::write(&temp, format!("{digest}\n")).and_then(|()| std::fs::rename(&temp, &self.seen_file));
        if let Err(e) = written {
            tracing::warn!("cannot record the configured module in {}: {e}", self.seen_file.display());
        }
    }

    /// The module the config names now.
    pub fn current(&self) -> Configured {
        let module = self.module.read().unwrap_or_else(|p| p.into_inner()).clone();
        Configured { path: super::lock(&self.path).clone(), module }
    }

    /// The configured module's cell, for the state machine.
    pub fn cell(&self) -> ConfiguredCell {
        self.module.clone()
    }

    /// Reads the config file again (when the node was started from one) and the module file it
    /// names, and makes that the configured module. Blocking: call it off the async workers.
    pub fn reread(&self) -> Result<Configured, String> {
        let path = match &self.source {
            Some(source) => source.load().map_err(|e| e.to_string())?.fsm_module,
            None => super::lock(&self.path).clone(),
        };
        let module = load(&self.engine, &path).map_err(|e| describe(&path, &e))?;
        self.record_seen(&crate::storage::hex(&module.digest()));
        *super::lock(&self.path) = path.clone();
        *self.module.write().unwrap_or_else(|p| p.into_inner()) = module.clone();
        Ok(Configured { path, module })
    }

    /// Whether the config named another module at this node's previous start.
    pub fn changed_since_last_start(&self) -> bool {
        self.changed_since_last_start
    }

    /// Asks for a switch to `module`, proposed when this node leads, unless a module entry after
    /// index `after` (the last one applied now) decides the matter first.
    pub fn want(&self, module: Arc<FsmModule>, after: u64) {
        *super::lock(&self.wanted) = Some(Wanted { module, after });
        self.wakeup.notify_one();
    }

    /// The request, if any.
    pub fn wanted(&self) -> Option<Wanted> {
        super::lock(&self.wanted).clone()
    }

    /// Drops the request for `module` (decided, or no longer needed), unless another one replaced
    /// it meanwhile; `None` drops any. The configured module counts as seen from then on.
    pub fn settle(&self, module: Option<&FsmModule>) {
        let mut wanted = super::lock(&self.wanted);
        if module.is_none_or(|m| wanted.as_ref().is_some_and(|w| w.module.digest() == m.digest())) {
            *wanted = None;
            drop(wanted);
            self.record_seen(&crate::storage::hex(&self.current().module.digest()));
        }
    }
}

/// A module this node asks the cluster to switch to.
#[derive(Debug, Clone)]
pub struct Wanted {
    /// The module.
    pub module: Arc<FsmModule>,
    /// The index of the last module entry applied when it was asked: a later one decides.
    pub after: u64,
}
