//! One connection's state: who the client is, how it talks, and what it has started (a
//! transaction, watched keys, the upstream its forwarded writes travel on).

use super::protocol::Protocol;
use super::transaction::Transaction;
use super::upstream::{Credentials, Tls, Upstream};
use crate::acl::User;
use bytes::Bytes;
use std::sync::Arc;

/// Per-connection state that commands can change.
pub struct Session {
    /// The connection's id (`CLIENT ID`).
    pub id: u64,
    /// RESP2 until `HELLO 3`.
    pub protocol: Protocol,
    /// `CLIENT SETNAME`.
    pub name: Option<Bytes>,
    /// `CLIENT SETINFO LIB-NAME` / `LIB-VER`.
    pub lib: (Option<Bytes>, Option<Bytes>),
    /// `READONLY`: reads are served from local state without a read index.
    pub stale_reads: bool,
    /// The connection is another node forwarding writes: never forward them again.
    pub forwarded: bool,
    /// The peer's address, for `CLIENT LIST` / `INFO`.
    pub peer: String,
    /// The authenticated user; `None` until `AUTH` when the default user needs a password.
    pub user: Option<Arc<User>>,
    /// What the client authenticated with, so that writes forwarded to the leader run there
    /// under the same user (kept in memory only, like the client's own copy).
    pub credentials: Option<Credentials>,
    upstream: Option<Upstream>,
    /// The transaction being queued since `MULTI`, if any.
    pub transaction: Option<Transaction>,
    /// Keys `WATCH`ed, with the token each had when watched.
    pub watched: Vec<(Vec<u8>, Vec<u8>)>,
    /// This connection's shortcut to the module commands' stats rows.
    pub module_slots: super::command_stats::ModuleSlots,
    /// The reload of the users `user` was taken from (see `auth::refresh`).
    pub security_generation: u64,
}

impl Session {
    /// A fresh connection's session, as `user` (`None`: must authenticate first), with the users
    /// of reload `security_generation`.
    pub fn new(id: u64, peer: String, stale_reads: bool, user: Option<Arc<User>>, security_generation: u64) -> Self {
        Session {
            id,
            protocol: Protocol::Resp2,
            name: None,
            lib: (None, None),
            stale_reads,
            forwarded: false,
            peer,
            user,
            credentials: None,
            upstream: None,
            transaction: None,
            watched: Vec::new(),
            module_slots: Default::default(),
            security_generation,
        }
    }

    /// The connection to the leader at `redis_addr` this session forwards writes over, opened
    /// (or re-opened) when needed, authenticated as this session's user.
    pub fn upstream_to(&mut self, redis_addr: &str, timeout: std::time::Duration, tls: Option<Tls>) -> &Upstream {
        let protocol = self.protocol;
        let credentials = self.credentials.clone();
        let reuse = self.upstream.as_ref().is_some_and(|u| {
            u.addr() == redis_addr
                && u.protocol() == protocol
                && u.credentials() == credentials.as_ref()
                && !u.is_closed()
        });
        if !reuse {
            self.upstream = None;
        }
        self.upstream.get_or_insert_with(|| Upstream::start_with(redis_addr, timeout, protocol, credentials, tls))
    }

    /// The user's name, for `ACL WHOAMI` and logs.
    pub fn user_name(&self) -> &str {
        self.user.as_deref().map_or("", User::name)
    }
}
