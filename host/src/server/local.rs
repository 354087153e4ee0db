//! The commands a node answers itself rather than the module: their table (name, arity and flags,
//! for `COMMAND` and permissions) and [`parse`], which turns a request into a checked [`Local`]
//! before anything runs. Parsing is a pure function of the arguments, unit-tested without a node:
//! arity, ids, addresses and flags are settled here, and running a [`Local`] only ever meets
//! well-formed input.

use super::protocol::Response;
use bytes::Bytes;

/// Internal command: `REDRAFT.PROPOSE-MODULE <wasm bytes>`. A follower's `MODULE RELOAD` sends the
/// module its config names to the leader, which validates and proposes it.
pub const PROPOSE_MODULE: &str = "REDRAFT.PROPOSE-MODULE";

/// Internal command a follower sends to the leader for `EXEC`: `REDRAFT.EXEC <transaction>`.
pub const FORWARDED_EXEC: &str = "REDRAFT.EXEC";

/// Commands answered here, for `COMMAND`: name, arity (negative: at least), flags.
pub const TABLE: &[(&str, i64, &[&str])] = &[
    ("ping", -1, &["fast", "stale"]),
    ("auth", -2, &["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"]),
    ("acl", -2, &["stale"]),
    ("echo", 2, &["fast", "stale"]),
    ("hello", -1, &["noscript", "loading", "stale", "fast"]),
    ("quit", -1, &["fast", "stale"]),
    ("select", 2, &["loading", "stale", "fast"]),
    ("client", -2, &["stale"]),
    ("command", -1, &["loading", "stale"]),
    ("info", -1, &["loading", "stale"]),
    ("config", -2, &["admin", "stale"]),
    ("readonly", 1, &["fast", "stale"]),
    ("readwrite", 1, &["fast", "stale"]),
    ("debug", -2, &["admin", "stale"]),
    ("bootstrap", 3, &["admin"]),
    ("join", -3, &["admin"]),
    ("remove", -2, &["admin"]),
    ("leader", 1, &["fast", "stale"]),
    ("nodes", 1, &["stale"]),
    ("snapshot", 1, &["admin"]),
    ("module", -2, &["admin", "stale"]),
    ("multi", 1, &["noscript", "loading", "stale", "fast", "allow_busy"]),
    ("exec", 1, &["noscript", "loading", "stale", "skip_slowlog"]),
    ("discard", 1, &["noscript", "loading", "stale", "fast", "allow_busy"]),
    ("watch", -2, &["noscript", "loading", "stale", "fast", "allow_busy"]),
    ("unwatch", 1, &["noscript", "loading", "stale", "fast", "allow_busy"]),
    ("blpop", -3, &["write", "blocking"]),
    ("brpop", -3, &["write", "blocking"]),
    ("blmove", 6, &["write", "denyoom", "blocking"]),
    ("brpoplpush", 4, &["write", "denyoom", "blocking"]),
    ("bzpopmin", -3, &["write", "blocking", "fast"]),
    ("bzpopmax", -3, &["write", "blocking", "fast"]),
];

/// Whether the server answers `name` (lower-case) itself rather than the module.
pub fn is_local(name: &str) -> bool {
    TABLE.iter().any(|(n, _, _)| *n == name)
}

/// The names of the commands the server answers itself.
pub fn local_names() -> impl Iterator<Item = &'static str> {
    TABLE.iter().map(|(n, _, _)| *n)
}

/// A local command, parsed and checked. Commands with subcommands of their own (`CLIENT`,
/// `CONFIG`, `INFO`, ...) keep their arguments: their handlers read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    /// `PING [message]`.
    Ping(Option<Bytes>),
    /// `ECHO message`.
    Echo(Bytes),
    /// `QUIT`: answer, then close.
    Quit,
    /// `SELECT index`.
    Select(i64),
    /// `HELLO [protover [AUTH user password] [SETNAME name]]`.
    Hello(Vec<Bytes>),
    /// `AUTH [user] password` (no user: the default user).
    Auth {
        /// The user named, if any.
        user: Option<Bytes>,
        /// The password.
        password: Bytes,
    },
    /// `ACL subcommand ...`.
    Acl(Vec<Bytes>),
    /// `CLIENT subcommand ...`.
    Client(Vec<Bytes>),
    /// `COMMAND [subcommand ...]`.
    Command(Vec<Bytes>),
    /// `INFO [section ...]`.
    Info(Vec<Bytes>),
    /// `CONFIG subcommand ...`.
    Config(Vec<Bytes>),
    /// `READONLY`: stale reads on this connection.
    ReadOnly,
    /// `READWRITE`: linearizable reads on this connection.
    ReadWrite,
    /// `DEBUG subcommand ...`.
    Debug(Vec<Bytes>),
    /// `LEADER`.
    Leader,
    /// `NODES`.
    Nodes,
    /// `UNWATCH` queued inside a transaction.
    Unwatch,
    /// `MULTI`, `EXEC`, `DISCARD` or `WATCH` where the connection did not take it (inside a
    /// transaction).
    TransactionControl,
    /// `MODULE INFO | HISTORY | HELP ...`.
    Module(Vec<Bytes>),
    /// `MODULE RELOAD`: a cluster command.
    ModuleReload,
    /// `BOOTSTRAP id raft_addr`.
    Bootstrap {
        /// The node id (≥ 1).
        id: u64,
        /// Its Raft address, as given.
        raft_addr: String,
    },
    /// `JOIN id raft_addr [redis_addr]`.
    Join {
        /// The node id (≥ 1).
        id: u64,
        /// Its Raft address (`host:port`, checked).
        raft_addr: String,
        /// Its Redis address (`host:port`, checked), if given.
        redis_addr: Option<String>,
    },
    /// `REMOVE id [FORCE]`.
    Remove {
        /// The node id (≥ 1).
        id: u64,
        /// Remove even if the cluster would be left without a live majority.
        force: bool,
    },
    /// `SNAPSHOT`.
    Snapshot,
    /// `BLPOP`, `BRPOP`, `BLMOVE`, `BRPOPLPUSH`, `BZPOPMIN`, `BZPOPMAX`.
    Blocking(super::blocking::Blocking),
}

impl Local {
    /// Whether this is a cluster command, run once the replies owed before it are out
    /// (membership, snapshots, module switches).
    pub fn is_cluster(&self) -> bool {
        matches!(
            self,
            Local::Bootstrap { .. } | Local::Join { .. } | Local::Remove { .. } | Local::Snapshot | Local::ModuleReload
        )
    }
}

/// Parses `args` (the command name first). `None`: not a command the server answers itself;
/// `Some(Err(reply))`: a local command with bad arguments, and the error to answer.
pub fn parse(args: &[Bytes]) -> Option<Result<Local, Response>> {
    let name = String::from_utf8_lossy(args.first()?).to_ascii_lowercase();
    let (_, arity, _) = TABLE.iter().find(|(n, _, _)| *n == name)?;
    let argc = args.len() as i64;
    if !(if *arity >= 0 { argc == *arity } else { argc >= -arity }) {
        return Some(Err(wrong_arity(&name)));
    }
    let rest = || args.to_vec();
    Some(Ok(match name.as_str() {
        "ping" => match args {
            [_] => Local::Ping(None),
            [_, message] => Local::Ping(Some(message.clone())),
            _ => return Some(Err(wrong_arity("ping"))),
        },
        "echo" => Local::Echo(args[1].clone()),
        "quit" => Local::Quit,
        "select" => match text(&args[1]).parse::<i64>() {
            Ok(index) => Local::Select(index),
            Err(_) => return Some(Err(Response::error("ERR value is not an integer or out of range"))),
        },
        "hello" => Local::Hello(rest()),
        "auth" => match args {
            [_, password] => Local::Auth { user: None, password: password.clone() },
            [_, user, password] => Local::Auth { user: Some(user.clone()), password: password.clone() },
            _ => return Some(Err(Response::error("ERR syntax error"))),
        },
        "acl" => Local::Acl(rest()),
        "client" => Local::Client(rest()),
        "command" => Local::Command(rest()),
        "info" => Local::Info(rest()),
        "config" => Local::Config(rest()),
        "readonly" => Local::ReadOnly,
        "readwrite" => Local::ReadWrite,
        "debug" => Local::Debug(rest()),
        "leader" => Local::Leader,
        "nodes" => Local::Nodes,
        "unwatch" => Local::Unwatch,
        "multi" | "exec" | "discard" | "watch" => Local::TransactionControl,
        "module" if args.len() == 2 && is(&args[1], "RELOAD") => Local::ModuleReload,
        "module" => Local::Module(rest()),
        "bootstrap" => match parse_id(&args[1]) {
            Ok(id) => Local::Bootstrap { id, raft_addr: text(&args[2]) },
            Err(reply) => return Some(Err(reply)),
        },
        "join" => {
            if args.len() > 4 {
                return Some(Err(wrong_arity("join")));
            }
            let id = match parse_id(&args[1]) {
                Ok(id) => id,
                Err(reply) => return Some(Err(reply)),
            };
            let raft_addr = text(&args[2]);
            let redis_addr = args.get(3).map(|a| text(a));
            if let Err(reply) = parse_addr("raft address", &raft_addr)
                .and_then(|()| redis_addr.as_deref().map_or(Ok(()), |a| parse_addr("redis address", a)))
            {
                return Some(Err(reply));
            }
            Local::Join { id, raft_addr, redis_addr }
        }
        "remove" => {
            let force = match args {
                [_, _] => false,
                [_, _, flag] if is(flag, "FORCE") => true,
                _ => return Some(Err(Response::error("ERR syntax error"))),
            };
            match parse_id(&args[1]) {
                Ok(id) => Local::Remove { id, force },
                Err(reply) => return Some(Err(reply)),
            }
        }
        "snapshot" => Local::Snapshot,
        "blpop" | "brpop" | "blmove" | "brpoplpush" | "bzpopmin" | "bzpopmax" => {
            match super::blocking::parse(&name, args) {
                Ok(blocking) => Local::Blocking(blocking),
                Err(reply) => return Some(Err(reply)),
            }
        }
        _ => return None,
    }))
}

/// Redis's reply to a command with the wrong number of arguments.
pub fn wrong_arity(name: &str) -> Response {
    Response::error(format!("ERR wrong number of arguments for '{name}' command"))
}

/// Whether an argument is `name`, case-blind (command names, subcommands, flags).
pub fn is(arg: &[u8], name: &str) -> bool {
    arg.eq_ignore_ascii_case(name.as_bytes())
}

/// An argument as text (invalid UTF-8 replaced), for messages and parsing.
pub fn text(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).into_owned()
}

/// Redis's reply to a subcommand the command does not have.
pub fn unknown_subcommand(sub: &[u8], command: &str) -> Response {
    Response::error(format!("ERR unknown subcommand '{}'. Try {command} HELP.", text(sub)))
}

/// Checks that `addr` is `host:port` (a name or an IPv4 address, or `[IPv6]:port`) with a port
/// in 1..=65535: a typo is refused before anything is proposed.
fn parse_addr(what: &str, addr: &str) -> Result<(), Response> {
    let bad = || Response::error(format!("ERR invalid {what} '{addr}': expected host:port"));
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && !host.contains(':')
            && host.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-' || c == b'_')
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 && host_ok => Ok(()),
        _ => Err(bad()),
    }
}

fn parse_id(arg: &[u8]) -> Result<u64, Response> {
    match text(arg).parse::<u64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(Response::error("ERR node id must be a positive integer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words.iter().map(|w| Bytes::copy_from_slice(w.as_bytes())).collect()
    }

    fn ok(words: &[&str]) -> Local {
        match parse(&args(words)) {
            Some(Ok(local)) => local,
            other => panic!("{words:?}: {other:?}"),
        }
    }

    fn refused(words: &[&str]) -> String {
        match parse(&args(words)) {
            Some(Err(Response::Error(text))) => text.to_string(),
            other => panic!("{words:?} should be refused: {other:?}"),
        }
    }

    #[test]
    fn names_are_case_blind_and_module_commands_are_not_local() {
        assert_eq!(ok(&["PiNg"]), Local::Ping(None));
        assert_eq!(ok(&["ping", "hi"]), Local::Ping(Some(Bytes::from_static(b"hi"))));
        assert!(parse(&args(&["GET", "k"])).is_none());
        assert!(parse(&[]).is_none());
        assert!(TABLE.iter().all(|(name, _, _)| is_local(name)));
    }

    #[test]
    fn arity_is_checked_against_the_table() {
        assert_eq!(refused(&["echo"]), "ERR wrong number of arguments for 'echo' command");
        assert_eq!(refused(&["ping", "a", "b"]), "ERR wrong number of arguments for 'ping' command");
        assert_eq!(refused(&["leader", "x"]), "ERR wrong number of arguments for 'leader' command");
        assert_eq!(refused(&["join", "2", "h:1", "h:2", "extra"]), "ERR wrong number of arguments for 'join' command");
    }

    #[test]
    fn select_auth_and_module_reload() {
        assert_eq!(ok(&["select", "3"]), Local::Select(3));
        assert_eq!(refused(&["select", "x"]), "ERR value is not an integer or out of range");
        assert_eq!(ok(&["auth", "pw"]), Local::Auth { user: None, password: Bytes::from_static(b"pw") });
        assert_eq!(
            ok(&["auth", "app", "pw"]),
            Local::Auth { user: Some(Bytes::from_static(b"app")), password: Bytes::from_static(b"pw") }
        );
        assert_eq!(refused(&["auth", "a", "b", "c"]), "ERR syntax error");
        assert_eq!(ok(&["module", "reload"]), Local::ModuleReload);
        assert!(ok(&["module", "reload"]).is_cluster());
        assert!(matches!(ok(&["module", "reload", "x"]), Local::Module(_)));
        assert!(!ok(&["module", "info"]).is_cluster());
    }

    #[test]
    fn cluster_commands_check_ids_addresses_and_flags() {
        assert_eq!(
            ok(&["BOOTSTRAP", "1", "127.0.0.1:7001"]),
            Local::Bootstrap { id: 1, raft_addr: "127.0.0.1:7001".into() }
        );
        assert_eq!(refused(&["bootstrap", "0", "h:1"]), "ERR node id must be a positive integer");
        assert_eq!(
            ok(&["join", "2", "[::1]:7002", "localhost:9002"]),
            Local::Join { id: 2, raft_addr: "[::1]:7002".into(), redis_addr: Some("localhost:9002".into()) }
        );
        assert_eq!(ok(&["join", "2", "h:7002"]), Local::Join { id: 2, raft_addr: "h:7002".into(), redis_addr: None });
        assert_eq!(refused(&["join", "2", "nohost"]), "ERR invalid raft address 'nohost': expected host:port");
        assert_eq!(refused(&["join", "2", "h:1", "h:0"]), "ERR invalid redis address 'h:0': expected host:port");
        assert_eq!(refused(&["join", "x", "h:1"]), "ERR node id must be a positive integer");
        assert_eq!(ok(&["remove", "3"]), Local::Remove { id: 3, force: false });
        assert_eq!(ok(&["remove", "3", "force"]), Local::Remove { id: 3, force: true });
        assert_eq!(refused(&["remove", "3", "now"]), "ERR syntax error");
        assert_eq!(refused(&["remove", "3", "force", "x"]), "ERR syntax error");
        assert!(ok(&["snapshot"]).is_cluster() && !ok(&["nodes"]).is_cluster());
    }
}
