//! Who the client is and what it may run: `AUTH`, `HELLO … AUTH`, `ACL`, and the gate every
//! command passes before it is dispatched ([`gate`]). The users themselves are
//! [`crate::acl`]'s, from the node's config.
//!
//! Replies and errors are redis-server 7.0's (`NOAUTH`, `WRONGPASS`, `NOPERM`). A failed
//! attempt is logged with the user's name and the client's address, never the password, and
//! counted (`INFO stats`' `acl_access_denied_auth`).

use super::Shared;
use super::protocol::Response;
use super::session::Session;
use super::upstream::{Credentials, FORWARDED_MARKER};
use crate::acl::{self, Denied, User};
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};

/// Redis's reply to a command before `AUTH`.
pub const NOAUTH: &str = "NOAUTH Authentication required.";
/// Redis's reply to a wrong user, a wrong password or a disabled user, alike.
pub const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
/// Redis's reply to `HELLO` without `AUTH` before authenticating.
pub const NOAUTH_HELLO: &str = "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
                                HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and \
                                select the RESP protocol version at the same time";

/// Refusals since start, by kind (`INFO stats`).
#[derive(Debug, Default)]
pub struct DeniedCounts {
    /// Failed `AUTH` (and `HELLO … AUTH`) attempts.
    pub auth: AtomicU64,
    /// Commands refused to a user.
    pub command: AtomicU64,
    /// Commands refused for a key outside the user's patterns.
    pub key: AtomicU64,
}

/// Commands whose subcommand is part of their name for permissions (`acl|list`).
const CONTAINERS: &[&str] = &["acl", "client", "config", "module", "debug", "command"];

/// Brings the session's user up to date after a reload of the users (SIGHUP): the user of the
/// same name as now defined, or, if it was removed or disabled, what a new connection starts as.
/// One relaxed load per command when nothing was reloaded.
pub fn refresh(shared: &Shared, session: &mut Session) {
    let generation = shared.security_generation();
    if session.security_generation == generation {
        return;
    }
    session.security_generation = generation;
    let security = shared.security();
    let reloaded = session.user.as_ref().and_then(|user| security.acl.enabled_user(user.name()));
    if reloaded.is_none() && session.user.is_some() {
        session.credentials = None;
    }
    session.user = reloaded.or_else(|| security.acl.initial_user());
}

/// Checks that the session may run `args`: `NOAUTH` before authentication (except for `AUTH`,
/// `HELLO` and `QUIT`), `NOPERM` for a command or key the user may not use.
/// `module` and `index` are the active module and `args[0]`'s place in its table, which the
/// connection has already looked up.
pub fn gate(
    shared: &Shared,
    session: &Session,
    args: &[Bytes],
    module: &crate::runtime::FsmModule,
    index: Option<usize>,
) -> Result<(), Response> {
    let Some(user) = session.user.as_deref() else {
        let name = &args[0];
        return if [&b"AUTH"[..], b"HELLO", b"QUIT"].iter().any(|n| name.eq_ignore_ascii_case(n)) {
            Ok(())
        } else {
            Err(Response::error(NOAUTH))
        };
    };
    if user.is_unrestricted() {
        return Ok(());
    }
    check(shared, user, args, module, index).map_err(|denied| {
        let counter = match denied {
            Denied::Command(_) => &shared.denied.command,
            Denied::Key => &shared.denied.key,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Response::error(denied.message())
    })
}

/// What [`gate`] checks for an authenticated, restricted user.
fn check(
    shared: &Shared,
    user: &User,
    args: &[Bytes],
    module: &crate::runtime::FsmModule,
    index: Option<usize>,
) -> Result<(), Denied> {
    let name = &args[0];
    if let Some(index) = index {
        return acl::check_module_command(user, &module.commands()[index], args);
    }
    if name.eq_ignore_ascii_case(FORWARDED_MARKER.as_bytes()) {
        return Ok(());
    }
    if name.eq_ignore_ascii_case(super::local::PROPOSE_MODULE.as_bytes()) {
        return run(user, "module", Some(b"reload"));
    }
    if name.eq_ignore_ascii_case(super::local::FORWARDED_EXEC.as_bytes()) {
        return check_forwarded_exec(shared, user, args);
    }
    let lower = String::from_utf8_lossy(name).to_ascii_lowercase();
    if !super::local::is_local(&lower) {
        // Unknown: let it fail as unknown.
        return Ok(());
    }
    let sub = if CONTAINERS.contains(&lower.as_str()) { args.get(1).map(|s| s.as_ref()) } else { None };
    run(user, &lower, sub)?;
    if lower == "watch" && !args[1..].iter().all(|key| user.may_access(key)) {
        return Err(Denied::Key);
    }
    // Blocking pops: the keys, and the destination of a move; never the timeout.
    let keys = match lower.as_str() {
        "blpop" | "brpop" | "bzpopmin" | "bzpopmax" => &args[1..args.len().saturating_sub(1).max(1)],
        "blmove" | "brpoplpush" => &args[1..args.len().min(3)],
        _ => &[][..],
    };
    if !keys.iter().all(|key| user.may_access(key)) {
        return Err(Denied::Key);
    }
    Ok(())
}

/// Whether `user` may run the local command `name` (`sub`command).
fn run(user: &User, name: &str, sub: Option<&[u8]>) -> Result<(), Denied> {
    let full = match sub {
        Some(sub) => format!("{name}|{}", String::from_utf8_lossy(sub).to_ascii_lowercase()),
        None => name.to_owned(),
    };
    if user.may_run(name, &full, acl::local_categories(name, sub)) { Ok(()) } else { Err(Denied::Command(full)) }
}

/// A follower's `EXEC`, on the leader: every queued command and watched key, checked for the
/// client's user as the follower checked them.
fn check_forwarded_exec(shared: &Shared, user: &User, args: &[Bytes]) -> Result<(), Denied> {
    run(user, "exec", None)?;
    let Some(item) = args.get(1) else { return Ok(()) };
    let mut parts = Vec::new();
    if fsm_sdk::codec::decode_args_into(item, &mut parts).is_err() || parts.len() < 2 {
        // Malformed: the state machine refuses it.
        return Ok(());
    }
    let mut watches = Vec::new();
    if fsm_sdk::codec::decode_args_into(parts[1], &mut watches).is_ok()
        && !watches.iter().step_by(2).all(|key| user.may_access(key))
    {
        return Err(Denied::Key);
    }
    let module = shared.node.module();
    let mut command = Vec::new();
    for encoded in &parts[2..] {
        command.clear();
        if fsm_sdk::codec::decode_args_into(encoded, &mut command).is_err() || command.is_empty() {
            continue;
        }
        if let Some(index) = module.command_index(command[0]) {
            acl::check_module_command(user, &module.commands()[index], &command)?;
        }
    }
    Ok(())
}

/// Checks `user` / `password`; on success the session becomes that user. A failure is logged
/// (without the password) and counted, and the session keeps its user, as in Redis.
pub fn authenticate(shared: &Shared, session: &mut Session, user: &Bytes, password: &Bytes) -> Result<(), Response> {
    match shared.security().acl.authenticate(user, password) {
        Some(found) => {
            session.user = Some(found);
            session.credentials = Some(Credentials { user: user.clone(), password: password.clone() });
            Ok(())
        }
        None => {
            shared.denied.auth.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                peer = %session.peer,
                user = %String::from_utf8_lossy(user),
                "authentication failed"
            );
            Err(Response::error(WRONGPASS))
        }
    }
}

/// `AUTH [user] password` (`user` `None`: the default user).
pub fn auth(shared: &Shared, session: &mut Session, user: Option<&Bytes>, password: &Bytes) -> Response {
    let result = match user {
        None => {
            if shared.security().acl.default_is_passwordless() {
                return Response::error(
                    "ERR AUTH <password> called without any password configured for the default user. Are you \
                     sure your configuration is correct?",
                );
            }
            authenticate(shared, session, &Bytes::from_static(b"default"), password)
        }
        Some(user) => authenticate(shared, session, user, password),
    };
    result.map_or_else(|e| e, |()| Response::ok())
}

/// `ACL WHOAMI | LIST | USERS | CAT [category] | HELP`. Users live in the config, so the
/// commands that would change them say so.
pub fn acl(shared: &Shared, session: &Session, args: &[Bytes]) -> Response {
    let sub = String::from_utf8_lossy(&args[1]).to_ascii_uppercase();
    let arity = |n: std::ops::RangeInclusive<usize>| {
        if n.contains(&args.len()) {
            None
        } else {
            Some(Response::error(format!(
                "ERR wrong number of arguments for 'acl|{}' command",
                sub.to_ascii_lowercase()
            )))
        }
    };
    match sub.as_str() {
        "WHOAMI" => arity(2..=2).unwrap_or_else(|| Response::bulk(session.user_name().to_owned())),
        "USERS" => arity(2..=2).unwrap_or_else(|| {
            let security = shared.security();
            let mut names: Vec<&str> = security.acl.users().iter().map(|u| u.name()).collect();
            names.sort_unstable();
            Response::Array(names.into_iter().map(|n| Response::bulk(n.to_owned())).collect())
        }),
        "LIST" => arity(2..=2).unwrap_or_else(|| {
            let security = shared.security();
            let mut users: Vec<_> = security.acl.users().iter().collect();
            users.sort_unstable_by(|a, b| a.name().cmp(b.name()));
            Response::Array(users.into_iter().map(|u| Response::bulk(u.describe())).collect())
        }),
        "CAT" => arity(2..=3).unwrap_or_else(|| match args.get(2) {
            None => Response::Array(acl::CATEGORY_NAMES.iter().map(|(n, _)| Response::bulk(*n)).collect()),
            Some(name) => {
                let name = String::from_utf8_lossy(name);
                let Some(category) = acl::category(&name) else {
                    return Response::error(format!("ERR Unknown category '{name}'"));
                };
                let module = shared.node.module();
                let module_names = module
                    .commands()
                    .iter()
                    .filter(|c| acl::module_categories(c).intersects(category))
                    .map(|c| c.name.to_ascii_lowercase());
                let local_names = super::local::local_names()
                    .filter(|n| acl::local_categories(n, None).intersects(category))
                    .map(str::to_owned);
                Response::Array(module_names.chain(local_names).map(Response::bulk).collect())
            }
        }),
        "HELP" => Response::Array(
            [
                "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "CAT [<category>]",
                "    List all commands that belong to <category>, or all command categories",
                "    when no category is specified.",
                "LIST",
                "    Show users details in config file format.",
                "USERS",
                "    List all the registered usernames.",
                "WHOAMI",
                "    Return the current connection username.",
                "Users are defined in the node's YAML file (auth.users); see docs/operations.md.",
            ]
            .iter()
            .map(|l| Response::Simple((*l).into()))
            .collect(),
        ),
        "SETUSER" | "DELUSER" | "GETUSER" | "LOAD" | "SAVE" | "GENPASS" | "LOG" | "DRYRUN" => Response::error(format!(
            "ERR ACL {sub} is not supported: users live in the node's YAML file (auth.users), the same on every node"
        )),
        _ => Response::error(format!("ERR unknown subcommand '{}'. Try ACL HELP.", String::from_utf8_lossy(&args[1]))),
    }
}
