//! # Redraft
//!
//! A Redis-compatible key-value server whose replicated state machine is a WebAssembly module.
//! This crate is the node. Its layers, each depending only on the ones after it:
//!
//! * [`server`]: the Redis-facing side: RESP2/RESP3 connections, pipelining, local and cluster
//!   commands, forwarding of follower writes;
//! * [`node`]: the service a running node offers the server: it opens the stores and starts
//!   openraft, batches writes into entries and reads into read-index rounds, runs membership
//!   changes and the module lifecycle;
//! * [`raft`]: openraft glue: the log store, the state machine, the peer transport;
//! * [`runtime`]: runs a state-machine module (wasmtime) deterministically and transactionally;
//! * [`storage`]: the state store, redb (durable) or memory, with chunked snapshots.
//!
//! [`config`] reads a node's settings (a YAML file and command-line overrides); [`run`] starts a
//! node from them. `docs/DESIGN.md` shows the request paths.

pub mod acl;
pub mod config;
pub mod metrics;
pub mod node;
pub mod raft;
pub mod runtime;
pub mod server;
pub mod stats;
pub mod storage;
pub mod tls;

use std::future::Future;
use std::sync::Arc;

/// Runs a node until `shutdown` resolves (the binary passes Ctrl-C / SIGTERM) or Raft stops on
/// its own. Returns an error if the node could not start or stopped because of a failure.
///
/// `source` is where `config` was read from: on SIGHUP, and on `MODULE RELOAD`, the node reads it
/// again to find the module to switch the cluster to (and, on SIGHUP, the users and certificates).
pub async fn run(
    config: config::Config,
    source: Option<config::ConfigSource>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let listener = tokio::net::TcpListener::bind(config.redis_addr)
        .await
        .map_err(|e| RunError::Start(format!("cannot listen on redis_addr {}: {e}", config.redis_addr)))?;
    let node = node::Node::start(&config, source.clone()).await.map_err(|e| RunError::Start(e.to_string()))?;
    let shared = match server::Shared::new(node.clone(), &config) {
        Ok(shared) => Arc::new(shared),
        Err(e) => {
            node.shutdown().await;
            return Err(RunError::Start(e.to_string()));
        }
    };
    // Before "node ready": from then on a SIGHUP must reload, not end the process.
    #[cfg(unix)]
    reload_on_sighup(Arc::downgrade(&node), Arc::downgrade(&shared), source);
    tracing::info!(id = config.id, redis = %config.redis_addr, raft = %config.raft_addr, "node ready");
    let metrics = match config.metrics_addr {
        None => None,
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => Some(tokio::spawn(metrics::serve(listener, shared.clone()))),
            Err(e) => {
                node.shutdown().await;
                return Err(RunError::Start(format!("cannot listen on metrics_addr {addr}: {e}")));
            }
        },
    };
    let server = tokio::spawn(server::serve(listener, shared));
    let outcome = tokio::select! {
        () = shutdown => Ok(()),
        reason = node.stopped() => Err(RunError::Stopped(reason)),
    };
    server.abort();
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    node.shutdown().await;
    outcome
}

/// Why [`run`] returned with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The node did not start (the message names the setting or file at fault).
    #[error("{0}")]
    Start(String),
    /// Raft stopped on a failure (storage, or a state-machine contract mismatch).
    #[error("the node stopped: {0}")]
    Stopped(String),
}

/// On SIGHUP the node reads its config again: the module it asks the cluster to run (see
/// `Node::reload_on_signal`), the users, and the certificates of the client and peer ports.
/// A config that does not load changes nothing (the error is logged); other settings take a
/// restart.
#[cfg(unix)]
fn reload_on_sighup(
    node: std::sync::Weak<node::Node>,
    shared: std::sync::Weak<server::Shared>,
    source: Option<config::ConfigSource>,
) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(hangup) => hangup,
        Err(e) => {
            tracing::warn!("SIGHUP will not reload the configuration: {e}");
            return;
        }
    };
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            let (Some(node), Some(shared)) = (node.upgrade(), shared.upgrade()) else { return };
            node.reload_on_signal();
            let Some(source) = &source else { continue };
            let reloaded = source.load().map_err(|e| e.to_string()).and_then(|config| {
                let peer_tls = config.peer_tls().map_err(|e| e.to_string())?;
                shared.reload_security(&config).map_err(|e| e.to_string())?;
                node.replace_peer_tls(peer_tls)
            });
            match reloaded {
                Ok(()) => tracing::info!("SIGHUP: users and TLS certificates reloaded"),
                Err(e) => tracing::error!("SIGHUP: users and certificates not reloaded: {e}"),
            }
        }
    });
}
