//! The Redis-facing server: what a client's TCP connection talks to.
//!
//! * [`protocol`] is the only code that touches client bytes: it cuts requests out of the read
//!   buffer (multibulk and inline, with Redis's limits and error texts) and encodes replies for
//!   RESP2 or RESP3;
//! * [`connection`] runs one client: dispatch, pipelining with replies in order, the session's
//!   modes;
//! * [`session`] is one connection's state; [`auth`] authenticates it and checks each command
//!   against its user's permissions before dispatch;
//! * [`commands`] answers what the server knows itself (handshake, introspection, cluster
//!   commands);
//! * [`transaction`] queues `MULTI` … `EXEC` at the connection and submits it as one log item,
//!   with `WATCH`'s optimistic checks;
//! * [`upstream`] forwards a follower's writes to the leader;
//! * [`glob`] matches `CONFIG GET` patterns in bounded time.
//!
//! Connections are capped (`limits.connections_max`); past the cap a client gets Redis's
//! `-ERR max number of clients reached` and is closed.

pub mod auth;
pub mod blocking;
mod command_docs;
pub mod command_stats;
pub mod commands;
pub mod connection;
pub mod glob;
pub mod local;
mod modules;
pub mod protocol;
pub mod routing;
pub mod session;
pub mod transaction;
pub mod upstream;

use crate::config::{Config, FollowerWrites};
use crate::node::Node;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// A client has this long to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What every connection shares.
pub struct Shared {
    /// The node the commands run on.
    pub node: Arc<Node>,
    /// Request caps.
    pub protocol_limits: protocol::ProtocolLimits,
    /// `forward` or `redirect` writes sent to a follower.
    pub follower_writes: FollowerWrites,
    /// Whether new connections start with stale (`READONLY`) reads.
    pub stale_reads_default: bool,
    /// Connection cap.
    pub connections_max: usize,
    /// How long a forwarded write may wait for the leader's reply before its outcome is reported
    /// unknown (`limits.write_timeout_ms` plus a margin for the hop).
    pub forward_timeout: std::time::Duration,
    /// Process start, for `INFO`.
    pub started: Instant,
    /// Who clients may be and what they must present; replaced whole on SIGHUP
    /// ([`Shared::reload_security`]).
    security: std::sync::RwLock<Arc<Security>>,
    /// Bumped by each reload, so that connections pick up their user's new definition.
    security_generation: AtomicU64,
    /// Refused authentications and commands, for `INFO stats`.
    pub denied: auth::DeniedCounts,
    /// Calls and latencies by command (`INFO commandstats`, the metrics endpoint).
    pub commands: command_stats::CommandStats,
    /// Connections accepted since start (`INFO stats`).
    pub connections_received: AtomicU64,
    /// Connections waiting in a blocking pop (`INFO clients`).
    pub blocked_clients: std::sync::atomic::AtomicUsize,
    slots: Arc<Semaphore>,
    next_id: AtomicU64,
}

/// The client port's security settings, read from the config at start and on SIGHUP.
pub struct Security {
    /// The users clients authenticate as (`auth` in the config).
    pub acl: crate::acl::Acl,
    /// TLS for clients' connections (`tls` in the config).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// TLS for connections to the leader's client port (forwarded writes), when it speaks TLS.
    pub upstream_tls: Option<upstream::Tls>,
}

impl Security {
    fn from_config(config: &Config) -> Result<Security, crate::config::InvalidSetting> {
        let tls = config.client_tls()?;
        Ok(Security {
            upstream_tls: tls.as_ref().map(|t| t.upstream.clone()),
            tls: tls.map(|t| tokio_rustls::TlsAcceptor::from(t.server)),
            acl: config.auth.acl()?,
        })
    }
}

impl Shared {
    /// The client port's security settings as of now (a new connection's TLS, `AUTH`, forwarding).
    pub fn security(&self) -> Arc<Security> {
        self.security.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Which reload the settings are from (0: as started).
    pub fn security_generation(&self) -> u64 {
        self.security_generation.load(Ordering::Acquire)
    }

    /// SIGHUP: takes the users and the client port's certificates from `config` (already loaded
    /// and checked). New connections handshake with the new certificates; open ones keep their
    /// session, and each connection takes its user's new definition before its next command
    /// (a user removed or disabled leaves the connection unauthenticated, as a new one would be).
    pub fn reload_security(&self, config: &Config) -> Result<(), crate::config::InvalidSetting> {
        let security = Security::from_config(config)?;
        *self.security.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(security);
        self.security_generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Settings from the config, which [`Config::validate`] has checked.
    pub fn new(node: Arc<Node>, config: &Config) -> Result<Self, crate::config::InvalidSetting> {
        let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        Ok(Shared {
            security: std::sync::RwLock::new(Arc::new(Security::from_config(config)?)),
            security_generation: AtomicU64::new(0),
            commands: command_stats::CommandStats::default(),
            connections_received: AtomicU64::new(0),
            blocked_clients: std::sync::atomic::AtomicUsize::new(0),
            denied: auth::DeniedCounts::default(),
            node,
            protocol_limits: protocol::ProtocolLimits {
                inline_bytes_max: size(config.limits.inline_bytes_max),
                bulk_bytes_max: size(config.limits.bulk_bytes_max),
                request_bytes_max: size(config.limits.request_bytes_max),
                ..protocol::ProtocolLimits::default()
            },
            follower_writes: config.follower_writes,
            stale_reads_default: config.reads == crate::config::ReadMode::Stale,
            connections_max: config.limits.connections_max,
            forward_timeout: std::time::Duration::from_millis(config.limits.write_timeout_ms.saturating_add(5_000)),
            started: Instant::now(),
            slots: Arc::new(Semaphore::new(config.limits.connections_max)),
            next_id: AtomicU64::new(1),
        })
    }

    /// Connected clients right now.
    pub fn connections(&self) -> usize {
        self.connections_max - self.slots.available_permits()
    }
}

/// The group Redis files the command `name` (lower-case) under (`string`, `hash`, `generic`,
/// ...), if Redis has it: the type categories of a module's commands come from it.
pub fn command_group(name: &str) -> Option<&'static str> {
    command_docs::group(name)
}

/// Accepts clients on `listener` forever, one task per connection.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (mut stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("redis listener: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = shared.slots.clone().try_acquire_owned() else {
            tokio::spawn(async move {
                let _ = stream.write_all(b"-ERR max number of clients reached\r\n").await;
            });
            continue;
        };
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        shared.connections_received.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        tokio::spawn(async move {
            let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            let _ = stream.set_nodelay(true);
            let tls = shared.security().tls.clone();
            match tls {
                None => {
                    let (rd, wr) = stream.split();
                    connection::serve(rd, wr, peer, shared, id).await;
                }
                Some(acceptor) => match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let (rd, wr) = tokio::io::split(tls);
                        connection::serve(rd, wr, peer, shared, id).await;
                    }
                    Ok(Err(e)) => tracing::info!(%peer, "client TLS handshake failed: {e}"),
                    Err(_) => tracing::info!(%peer, "client TLS handshake timed out"),
                },
            }
            drop(slot);
        });
    }
}
