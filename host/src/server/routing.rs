//! Where a request goes when this node cannot answer it alone, and how a cluster condition reads
//! on the wire: the one place a [`ClusterError`] becomes a Redis error reply, and the routing of
//! writes (propose here, forward to the leader, or answer at once).

use super::Shared;
use super::protocol::Response;
use super::session::Session;
use crate::config::FollowerWrites;
use crate::node::ClusterError;

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
