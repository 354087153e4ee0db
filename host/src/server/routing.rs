//! Where a request goes when this node cannot answer it alone, and how a cluster condition reads
//! on the wire: the one place a [`ClusterError`] becomes a Redis error reply, and the routing of
//! writes (propose here, forward to the leader, or answer at once) and of their replies ([`Pending`]).

use super::Shared;
use super::protocol::Response;
use super::session::Session;
use crate::config::FollowerWrites;
use crate::node::ClusterError;
use bytes::Bytes;
use fsm_sdk::Reply;
use tokio::sync::oneshot;

/// The one place a cluster condition becomes a Redis error reply.
pub fn cluster_error(error: &ClusterError) -> Response {
    match error {
        ClusterError::NoCluster => Response::error("NOCLUSTER No Raft Cluster"),
        ClusterError::NoLeader => Response::error("CLUSTERDOWN No raft leader"),
        ClusterError::NotLeader { redis_addr, .. } if !redis_addr.is_empty() => {
            Response::error(format!("MOVED 0 {redis_addr}"))
        }
        ClusterError::NotLeader { .. } => Response::error("CLUSTERDOWN No raft leader"),
        ClusterError::Unknown(text) => Response::error(format!("UNKNOWN {text}")),
        ClusterError::Timeout(text) => Response::error(format!("TIMEOUT {text}")),
        ClusterError::Unreachable(text) => Response::error(format!("CLUSTERDOWN {text}")),
        ClusterError::Refused(text) | ClusterError::Fatal(text) => Response::error(format!("ERR {text}")),
    }
}

/// Where a write goes.
pub enum Route {
    /// This node leads: propose it here.
    Local,
    /// Forward it to the leader at this Redis address.
    Forward(String),
    /// Answer at once (redirect, no leader, no cluster).
    Reply(Response),
}

/// Where a write from `session` goes now.
pub fn route_write(shared: &Shared, session: &Session) -> Route {
    match shared.node.route_to_leader() {
        Ok(()) => Route::Local,
        // Forwarded to us, but we no longer lead: say so, never forward again.
        Err(ClusterError::NotLeader { .. }) if session.forwarded => {
            Route::Reply(Response::error("CLUSTERDOWN No raft leader"))
        }
        Err(error @ ClusterError::NotLeader { .. }) if shared.follower_writes == FollowerWrites::Redirect => {
            Route::Reply(cluster_error(&error))
        }
        Err(ClusterError::NotLeader { redis_addr, .. }) if !redis_addr.is_empty() => Route::Forward(redis_addr),
        Err(error) => Route::Reply(cluster_error(&error)),
    }
}

/// A reply owed to the client: ready, or arriving from this node or from the leader.
pub enum Pending {
    /// Known already.
    Ready(Response),
    /// From this node's write or read batcher.
    Node(oneshot::Receiver<Result<Reply, ClusterError>>),
    /// From the leader, through the connection's upstream.
    Forwarded(oneshot::Receiver<Response>),
}

impl Pending {
    /// Waits for the reply.
    pub async fn resolve(self) -> Response {
        match self {
            Pending::Ready(response) => response,
            Pending::Node(rx) => match rx.await {
                Ok(Ok(reply)) => Response::from(reply),
                Ok(Err(e)) => cluster_error(&e),
                Err(_) => Response::error(
                    "UNKNOWN the write's outcome is unknown (the node stopped): it may or may not have been applied",
                ),
            },
            Pending::Forwarded(rx) => rx.await.unwrap_or_else(|_| {
                Response::error("UNKNOWN the forwarded write's outcome is unknown: it may or may not have been applied")
            }),
        }
    }
}

/// Sends a module write where `route` says: queued on this node, or forwarded to the leader.
pub async fn write(shared: &Shared, session: &mut Session, route: Route, args: Vec<Bytes>) -> Pending {
    match route {
        Route::Local => {
            let mut encoded = Vec::with_capacity(fsm_sdk::codec::encoded_args_len(&args));
            fsm_sdk::codec::encode_args(&args, &mut encoded);
            Pending::Node(shared.node.submit_write(encoded).await)
        }
        Route::Forward(redis_addr) => Pending::Forwarded(
            session
                .upstream_to(&redis_addr, shared.forward_timeout, shared.security().upstream_tls.clone())
                .submit(args)
                .await,
        ),
        Route::Reply(response) => Pending::Ready(response),
    }
}
