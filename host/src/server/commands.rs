//! The commands the server answers itself: connection handshake (`PING`, `HELLO`, `CLIENT`,
//! `SELECT`, ...), introspection (`COMMAND`, `INFO`, `CONFIG GET`), connection modes
//! (`READONLY`/`READWRITE`) and the cluster commands (`BOOTSTRAP`, `JOIN`, `REMOVE`, `LEADER`,
//! `NODES`, `SNAPSHOT`, `DEBUG DIGEST`). Everything else belongs to the module's command table.
//!
//! Replies follow Redis 7 where Redis has the command (texts probed against redis-server
//! 7.0.15), and the original Redraft for the cluster commands.

use super::Shared;
use super::command_docs;
use super::local::{self, Local, PROPOSE_MODULE, is, text, unknown_subcommand, wrong_arity};
use super::protocol::{Protocol, Response, VerbatimFormat};
use super::routing::cluster_error;
use super::session::Session;
use super::upstream::Upstream;
use crate::node::{ClusterError, Reload};
use bytes::Bytes;
use openraft::ServerState;
use std::fmt::Write as _;

/// Answers [`PROPOSE_MODULE`].
pub async fn propose_module(shared: &Shared, args: &[Bytes]) -> Response {
    let [_, bytes] = args else { return wrong_arity(&PROPOSE_MODULE.to_ascii_lowercase()) };
    shared.node.propose_module(bytes).await.map_or_else(|e| cluster_error(&e), Response::from)
}

/// The Redis version we report: the feature level our replies follow.
pub const REDIS_VERSION: &str = "7.0.0";

/// What to do with a command that is not the module's.
pub enum Outcome {
    /// Answer with this.
    Reply(Response),
    /// Answer with this, then close the connection (`QUIT`).
    Close(Response),
    /// A cluster command: run it with [`run_cluster`] once earlier replies are out.
    Cluster(Local),
    /// A blocking pop: the connection runs it ([`super::blocking::run`]) once earlier replies
    /// are out.
    Block(super::blocking::Blocking),
    /// Not a command we know.
    Unknown,
}

/// Answers a local command (parsed first: [`local::parse`]), or says it is a cluster command or
/// unknown.
pub fn run_local(shared: &Shared, session: &mut Session, args: &[Bytes]) -> Outcome {
    match local::parse(args) {
        None => Outcome::Unknown,
        Some(Err(reply)) => Outcome::Reply(reply),
        Some(Ok(command)) if command.is_cluster() => Outcome::Cluster(command),
        Some(Ok(command)) => run(shared, session, command),
    }
}

/// Runs a local command that is not a cluster command.
fn run(shared: &Shared, session: &mut Session, command: Local) -> Outcome {
    let reply = match command {
        Local::Ping(None) => Response::Simple("PONG".into()),
        Local::Ping(Some(message)) | Local::Echo(message) => Response::Bulk(message),
        Local::Quit => return Outcome::Close(Response::ok()),
        Local::Blocking(blocking) => return Outcome::Block(blocking),
        Local::Select(0) => Response::ok(),
        Local::Select(_) => Response::error("ERR DB index is out of range"),
        Local::Hello(args) => hello(shared, session, &args),
        Local::Auth { user, password } => super::auth::auth(shared, session, user.as_ref(), &password),
        Local::Acl(args) => super::auth::acl(shared, session, &args),
        Local::Client(args) => client(session, &args),
        Local::Command(args) => command_docs::command(shared, &args),
        Local::Info(args) => info(shared, session, &args),
        Local::Config(args) => config(shared, &args),
        Local::ReadOnly => {
            session.stale_reads = true;
            Response::ok()
        }
        Local::ReadWrite => {
            session.stale_reads = false;
            Response::ok()
        }
        Local::Debug(args) => debug(shared, &args),
        Local::Leader => match shared.node.leader() {
            _ if !shared.node.is_initialized() => cluster_error(&ClusterError::NoCluster),
            Some((id, member)) => {
                Response::Array(vec![Response::Integer(id as i64), Response::bulk(member.redis_addr)])
            }
            None => cluster_error(&ClusterError::NoLeader),
        },
        Local::Nodes => nodes(shared),
        // Queued inside MULTI: `EXEC` forgets the watched keys anyway.
        Local::Unwatch => Response::ok(),
        // Handled by the connection before it gets here (see `transaction`).
        Local::TransactionControl => Response::error("ERR Command not allowed inside a transaction"),
        Local::Module(args) => super::modules::module(shared, &args),
        Local::ModuleReload | Local::Bootstrap { .. } | Local::Join { .. } | Local::Remove { .. } | Local::Snapshot => {
            return Outcome::Cluster(command);
        }
    };
    Outcome::Reply(reply)
}

/// `HELLO [protover [AUTH user password] [SETNAME name]]`: options are all checked before any
/// takes effect, and a failed `AUTH` changes nothing (as in Redis).
fn hello(shared: &Shared, session: &mut Session, args: &[Bytes]) -> Response {
    let mut i = 1;
    let mut protocol = session.protocol;
    if args.len() > 1 {
        match text(&args[1]).parse::<i64>() {
            Ok(2) => protocol = Protocol::Resp2,
            Ok(3) => protocol = Protocol::Resp3,
            Ok(_) => return Response::error("NOPROTO unsupported protocol version"),
            Err(_) => return Response::error("ERR Protocol version is not an integer or out of range"),
        }
        i = 2;
    }
    let (mut credentials, mut name) = (None, None);
    while i < args.len() {
        if is(&args[i], "AUTH") && i + 2 < args.len() {
            credentials = Some((args[i + 1].clone(), args[i + 2].clone()));
            i += 3;
        } else if is(&args[i], "SETNAME") && i + 1 < args.len() {
            name = Some(args[i + 1].clone());
            i += 2;
        } else {
            return Response::error(format!("ERR Syntax error in HELLO option '{}'", text(&args[i])));
        }
    }
    match credentials {
        Some((user, password)) => {
            if let Err(refused) = super::auth::authenticate(shared, session, &user, &password) {
                return refused;
            }
        }
        None if session.user.is_none() => return Response::error(super::auth::NOAUTH_HELLO),
        None => {}
    }
    session.protocol = protocol;
    if name.is_some() {
        session.name = name;
    }
    let role = if shared.node.leader().is_some_and(|(l, _)| l == shared.node.id()) { "master" } else { "replica" };
    Response::Map(vec![
        (Response::bulk("server"), Response::bulk("redis")),
        (Response::bulk("version"), Response::bulk(REDIS_VERSION)),
        (Response::bulk("proto"), Response::Integer(if session.protocol == Protocol::Resp3 { 3 } else { 2 })),
        (Response::bulk("id"), Response::Integer(session.id as i64)),
        (Response::bulk("mode"), Response::bulk("standalone")),
        (Response::bulk("role"), Response::bulk(role)),
        (Response::bulk("modules"), Response::Array(vec![])),
    ])
}

fn client(session: &mut Session, args: &[Bytes]) -> Response {
    let sub = &args[1];
    if is(sub, "SETNAME") {
        if args.len() != 3 {
            return wrong_arity("client|setname");
        }
        if args[2].iter().any(|&c| c <= b' ' || c > b'~') {
            return Response::error("ERR Client names cannot contain spaces, newlines or special characters.");
        }
        session.name = if args[2].is_empty() { None } else { Some(args[2].clone()) };
        Response::ok()
    } else if is(sub, "GETNAME") {
        session.name.clone().map(Response::Bulk).unwrap_or(Response::Null)
    } else if is(sub, "ID") {
        Response::Integer(session.id as i64)
    } else if is(sub, "SETINFO") {
        if args.len() != 4 {
            return wrong_arity("client|setinfo");
        }
        if is(&args[2], "LIB-NAME") {
            session.lib.0 = Some(args[3].clone());
        } else if is(&args[2], "LIB-VER") {
            session.lib.1 = Some(args[3].clone());
        } else {
            return Response::error(format!("ERR Unrecognized option '{}'", text(&args[2])));
        }
        Response::ok()
    } else if is(sub, "INFO") || is(sub, "LIST") {
        let line = format!(
            "id={} addr={} name={} db=0 user={} resp={} lib-name={} lib-ver={}\n",
            session.id,
            session.peer,
            session.name.as_deref().map(text).unwrap_or_default(),
            session.user_name(),
            if session.protocol == Protocol::Resp3 { 3 } else { 2 },
            session.lib.0.as_deref().map(text).unwrap_or_default(),
            session.lib.1.as_deref().map(text).unwrap_or_default(),
        );
        Response::bulk(line)
    } else if is(sub, "HELP") {
        Response::Array(
            [
                "CLIENT <subcommand>",
                "SETNAME <name>",
                "GETNAME",
                "ID",
                "SETINFO <LIB-NAME|LIB-VER> <value>",
                "INFO",
                "LIST",
            ]
            .iter()
            .map(|l| Response::Simple((*l).into()))
            .collect(),
        )
    } else {
        unknown_subcommand(sub, "CLIENT")
    }
}

/// Most patterns one `CONFIG GET` may carry. Each costs at most
/// [`super::glob::GLOB_PATTERN_BYTES_MAX`] times a config name's length in steps per name, on an
/// async worker: this keeps one request's worst case to a few milliseconds.
pub const CONFIG_GET_PATTERNS_MAX: usize = 64;

fn config(shared: &Shared, args: &[Bytes]) -> Response {
    let sub = &args[1];
    if is(sub, "GET") {
        if args.len() < 3 {
            return wrong_arity("config|get");
        }
        if args.len() - 2 > CONFIG_GET_PATTERNS_MAX {
            return Response::error(format!("ERR CONFIG GET takes at most {CONFIG_GET_PATTERNS_MAX} patterns"));
        }
        // What redis-benchmark and client libraries ask about; we persist through the Raft log,
        // which behaves like `appendonly yes` + `appendfsync always`.
        let maxclients = shared.connections_max.to_string();
        let known: [(&str, &str); 7] = [
            ("save", ""),
            ("appendonly", "yes"),
            ("appendfsync", "always"),
            ("databases", "1"),
            ("maxmemory", "0"),
            ("maxclients", &maxclients),
            ("cluster-enabled", "no"),
        ];
        let mut pairs = Vec::new();
        for pattern in &args[2..] {
            let pattern = pattern.to_ascii_lowercase();
            for (name, value) in known {
                match super::glob::glob_match(&pattern, name.as_bytes()) {
                    Err(e) => return Response::error(format!("ERR {e}")),
                    Ok(true) if !pairs.iter().any(|(n, _): &(Response, Response)| *n == Response::bulk(name)) => {
                        pairs.push((Response::bulk(name), Response::bulk(value.to_owned())));
                    }
                    Ok(_) => {}
                }
            }
        }
        Response::Map(pairs)
    } else if is(sub, "SET") {
        Response::error("ERR CONFIG SET is not supported: settings live in the node's YAML file")
    } else if is(sub, "RESETSTAT") {
        Response::ok()
    } else {
        unknown_subcommand(sub, "CONFIG")
    }
}

fn debug(shared: &Shared, args: &[Bytes]) -> Response {
    if is(&args[1], "DIGEST") {
        match shared.node.state_digest() {
            Ok(hex) => Response::bulk(hex),
            Err(e) => cluster_error(&e),
        }
    } else {
        unknown_subcommand(&args[1], "DEBUG")
    }
}

fn role_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

fn nodes(shared: &Shared) -> Response {
    let node = &shared.node;
    if !node.is_initialized() {
        return cluster_error(&ClusterError::NoCluster);
    }
    let metrics = node.metrics();
    let membership = metrics.membership_config.membership();
    let voters: Vec<u64> = membership.voter_ids().collect();
    Response::Array(
        membership
            .nodes()
            .map(|(id, member)| {
                Response::Array(vec![
                    Response::Integer(*id as i64),
                    Response::bulk(member.raft_addr.clone()),
                    Response::bulk(member.redis_addr.clone()),
                    Response::bulk(if voters.contains(id) { "voter" } else { "learner" }),
                    Response::Integer(i64::from(metrics.current_leader == Some(*id))),
                ])
            })
            .collect(),
    )
}

fn info(shared: &Shared, session: &Session, args: &[Bytes]) -> Response {
    let wanted: Vec<String> = args[1..].iter().map(|a| text(a).to_ascii_lowercase()).collect();
    let everything = wanted.iter().any(|w| w == "all" || w == "everything");
    let default = everything || wanted.is_empty() || wanted.iter().any(|w| w == "default");
    // As in Redis, the per-command sections are not in the default set.
    let per_command = |section: &str| matches!(section, "commandstats" | "latencystats");
    let want = |section: &str| (default && !per_command(section)) || everything || wanted.iter().any(|w| w == section);
    let node = &shared.node;
    let metrics = node.metrics();
    let mut out = String::new();
    if want("server") {
        let _ = write!(
            out,
            "# Server\r\nredis_version:{REDIS_VERSION}\r\nredraft_version:{}\r\nredis_mode:standalone\r\nos:{}\r\n\
             arch_bits:64\r\nprocess_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\nfsm_module_digest:{}\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::process::id(),
            node.member().redis_addr.rsplit(':').next().unwrap_or(""),
            shared.started.elapsed().as_secs(),
            crate::storage::hex(&node.module().digest()),
        );
    }
    if want("clients") {
        let _ = write!(
            out,
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:{}\r\n\r\n",
            shared.connections(),
            shared.connections_max,
            shared.blocked_clients.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    if want("memory") {
        let rss = resident_bytes();
        let _ = write!(
            out,
            "# Memory\r\nused_memory:{rss}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\n\r\n",
            human_bytes(rss)
        );
    }
    if want("stats") {
        let count = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        let rows = shared.commands.all();
        let total = |outcome: super::command_stats::Outcome| rows.iter().map(|r| r.count(outcome)).sum::<u64>();
        use super::command_stats::Outcome as O;
        let _ = write!(
            out,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\n\
             total_error_replies:{}\r\nunexpected_error_replies:0\r\nrejected_calls:{}\r\nfailed_calls:{}\r\n\
             acl_access_denied_auth:{}\r\nacl_access_denied_cmd:{}\r\nacl_access_denied_key:{}\r\n\r\n",
            count(&shared.connections_received),
            O::ALL.iter().map(|o| total(*o)).sum::<u64>(),
            total(O::Error) + total(O::Rejected) + total(O::Unknown) + total(O::Moved),
            total(O::Rejected),
            total(O::Error) + total(O::Unknown) + total(O::Moved),
            count(&shared.denied.auth),
            count(&shared.denied.command),
            count(&shared.denied.key),
        );
    }
    if want("commandstats") {
        use super::command_stats::Outcome as O;
        out.push_str("# Commandstats\r\n");
        for row in shared.commands.all() {
            // As in Redis, `calls` counts the calls that ran: not the rejected ones.
            let calls: u64 = O::ALL.iter().filter(|o| **o != O::Rejected).map(|o| row.count(*o)).sum();
            let usec = row.latency().sum_micros();
            let _ = write!(
                out,
                "cmdstat_{}:calls={calls},usec={usec},usec_per_call={:.2},rejected_calls={},failed_calls={}\r\n",
                row.name(),
                if calls == 0 { 0.0 } else { usec as f64 / calls as f64 },
                row.count(O::Rejected),
                row.count(O::Error) + row.count(O::Unknown) + row.count(O::Moved),
            );
        }
        out.push_str("\r\n");
    }
    if want("latencystats") {
        out.push_str("# Latencystats\r\n");
        for row in shared.commands.all() {
            let h = row.latency();
            let _ = write!(
                out,
                "latency_percentiles_usec_{}:p50={:.3},p99={:.3},p99.9={:.3}\r\n",
                row.name(),
                h.quantile_micros(0.5) as f64,
                h.quantile_micros(0.99) as f64,
                h.quantile_micros(0.999) as f64,
            );
        }
        out.push_str("\r\n");
    }
    if want("replication") {
        let role = if metrics.current_leader == Some(node.id()) { "master" } else { "slave" };
        let _ = write!(out, "# Replication\r\nrole:{role}\r\n\r\n");
    }
    if want("raft") {
        let leader = metrics.current_leader.map(|l| l.to_string()).unwrap_or_default();
        let index = |l: Option<openraft::LogId<u64>>| l.map(|l| l.index).unwrap_or(0);
        let _ = write!(
            out,
            "# Raft\r\nraft_node_id:{}\r\nraft_cluster_id:{}\r\nraft_role:{}\r\nraft_leader_id:{leader}\r\nraft_term:{}\r\n\
             raft_last_log_index:{}\r\nraft_commit_index:{}\r\nraft_last_applied_index:{}\r\n\
             raft_snapshot_index:{}\r\nraft_purged_index:{}\r\nraft_voters:{}\r\nraft_read_mode:{}\r\n\
             raft_peers_last_heard_ms:{}\r\nraft_peers_refused:{}\r\n",
            node.id(),
            node.cluster_id().unwrap_or_default(),
            role_name(metrics.state),
            metrics.current_term,
            metrics.last_log_index.unwrap_or(0),
            node.write_stats().commit_index.load(std::sync::atomic::Ordering::Relaxed),
            index(metrics.last_applied),
            index(metrics.snapshot),
            index(metrics.purged),
            metrics.membership_config.membership().voter_ids().map(|v| v.to_string()).collect::<Vec<_>>().join(","),
            if session.stale_reads { "stale" } else { "linearizable" },
            node.peers_last_heard()
                .into_iter()
                .map(|(id, heard)| format!("{id}={}", heard.map_or("never".to_owned(), |d| d.as_millis().to_string())))
                .collect::<Vec<_>>()
                .join(","),
            node.peers_refused(),
        );
        for (name, value) in node.write_counters() {
            let _ = write!(out, "{name}:{value}\r\n");
        }
        let snapshot_bytes = node.write_stats().snapshot_bytes.load(std::sync::atomic::Ordering::Relaxed);
        let _ = write!(out, "raft_snapshot_last_bytes:{snapshot_bytes}\r\n");
        out.push_str("\r\n");
    }
    if want("module") {
        super::modules::info_section(node, &mut out);
    }
    if want("keyspace") {
        out.push_str("# Keyspace\r\n");
        if node.module().command_index(b"dbsize").is_some() {
            let mut encoded = Vec::new();
            fsm_sdk::codec::encode_args(&[b"DBSIZE".as_slice()], &mut encoded);
            if let Ok(fsm_sdk::Reply::Integer(keys)) = node.query(&encoded)
                && keys > 0
            {
                let _ = write!(out, "db0:keys={keys},expires=0,avg_ttl=0\r\n");
            }
        }
        out.push_str("\r\n");
    }
    Response::Verbatim { format: VerbatimFormat::Text, text: Bytes::from(out) }
}

/// This process's resident memory, in bytes (`/proc/self/statm`; 0 where there is none): what
/// `INFO memory` reports as `used_memory`, for `redis-cli --stat` and dashboards.
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|pages| pages.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4096)
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2}{}", UNITS[unit])
}

/// Passes a cluster command on to the leader and returns its answer; `check` names the command
/// that tells whether it took effect when the leader does not answer in `timeout`.
/// It goes under the session's user, whom the leader checks again.
async fn to_leader(
    session: &Session,
    tls: Option<super::upstream::Tls>,
    redis_addr: &str,
    args: &[Bytes],
    timeout: std::time::Duration,
    check: &str,
) -> Response {
    let upstream = Upstream::start(redis_addr, timeout, session.credentials.clone(), tls);
    upstream
        .submit(args.to_vec())
        .await
        .await
        .unwrap_or_else(|_| Response::error(format!("ERR the leader did not answer; check {check} before retrying")))
}

/// Runs a cluster command (`BOOTSTRAP`, `JOIN`, `REMOVE [FORCE]`, `SNAPSHOT`, `MODULE RELOAD`).
/// `JOIN`, `REMOVE` and `MODULE RELOAD` sent to a follower are passed on to the leader (`args`,
/// as the client sent them). `JOIN`'s addresses were checked for form by [`local::parse`];
/// [`crate::node::Node::join`] checks that the node behind them answers.
pub async fn run_cluster(shared: &Shared, session: &Session, command: Local, args: &[Bytes]) -> Response {
    let node = &shared.node;
    let result = match command {
        Local::Bootstrap { id, raft_addr } => node.bootstrap(id, &raft_addr).await.map(|()| Response::ok()),
        Local::ModuleReload => {
            // The node reads its config again, and the leader proposes the module it names.
            return match node.reload_module().await {
                Ok(Reload::Done(reply)) => Response::from(reply),
                Ok(Reload::Forward { redis_addr, bytes }) if !session.forwarded => {
                    let forward = [Bytes::from_static(PROPOSE_MODULE.as_bytes()), Bytes::from(bytes)];
                    // Compiling and switching takes a moment on every replica.
                    to_leader(
                        session,
                        shared.security().upstream_tls.clone(),
                        &redis_addr,
                        &forward,
                        std::time::Duration::from_secs(60),
                        "MODULE INFO",
                    )
                    .await
                }
                Ok(Reload::Forward { .. }) => cluster_error(&ClusterError::NoLeader),
                Err(e) => cluster_error(&e),
            };
        }
        Local::Join { id, raft_addr, redis_addr } => match on_leader(shared, session, args).await {
            Some(reply) => return reply,
            None => node.join(id, &raft_addr, &redis_addr.unwrap_or_default()).await.map(|()| Response::ok()),
        },
        Local::Remove { id, force } => match on_leader(shared, session, args).await {
            Some(reply) => return reply,
            None => node.remove(id, force).await.map(|()| Response::ok()),
        },
        Local::Snapshot => node.snapshot().await.map(|index| Response::Integer(index as i64)),
        _ => return Response::error("ERR unknown cluster command"),
    };
    result.unwrap_or_else(|e| cluster_error(&e))
}

/// For a membership command: `None` when this node leads (run it here); otherwise the leader's
/// answer to `args` passed on to it, or why it cannot be.
async fn on_leader(shared: &Shared, session: &Session, args: &[Bytes]) -> Option<Response> {
    match shared.node.route_to_leader() {
        Ok(()) => None,
        Err(ClusterError::NotLeader { redis_addr, .. }) if !session.forwarded && !redis_addr.is_empty() => {
            // JOIN waits for the new node to catch up (up to two minutes).
            let tls = shared.security().upstream_tls.clone();
            Some(to_leader(session, tls, &redis_addr, args, std::time::Duration::from_secs(150), "NODES").await)
        }
        Err(e) => Some(cluster_error(&e)),
    }
}
