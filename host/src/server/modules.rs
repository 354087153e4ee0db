//! `MODULE INFO`, `MODULE HISTORY` and the `# Module` section of `INFO`: what the cluster runs,
//! since when, and what this node's config names. (`MODULE RELOAD` is a cluster command: see
//! `super::commands::run_cluster`.)

use super::Shared;
use super::protocol::Response;
use crate::node::Node;
use crate::storage::hex;
use bytes::Bytes;
use std::fmt::Write as _;

/// Answers `MODULE INFO` and `MODULE HISTORY`.
pub(super) fn module(shared: &Shared, args: &[Bytes]) -> Response {
    let sub = &args[1];
    let node = &shared.node;
    if args.len() != 2 {
        return Response::error(format!(
            "ERR wrong number of arguments for 'module|{}' command",
            String::from_utf8_lossy(sub).to_ascii_lowercase()
        ));
    }
    if sub.eq_ignore_ascii_case(b"INFO") {
        info(node)
    } else if sub.eq_ignore_ascii_case(b"HISTORY") {
        history(node)
    } else {
        Response::error(format!(
            "ERR unknown subcommand '{}'. Try MODULE INFO, MODULE HISTORY or MODULE RELOAD.",
            String::from_utf8_lossy(sub)
        ))
    }
}

fn field(name: &str, value: Response) -> (Response, Response) {
    (Response::bulk(name.to_owned()), value)
}

fn info(node: &Node) -> Response {
    let (active, since) = node.active(|a| (a.module.clone(), a.since()));
    let configured = node.configured_module();
    let mut fields = vec![
        field("digest", active.as_ref().map_or(Response::Null, |m| Response::bulk(hex(&m.digest())))),
        field("abi_version", Response::Integer(i64::from(fsm_sdk::abi::ABI_VERSION))),
        field("active_since_index", Response::Integer(since as i64)),
        field("bytes", Response::Integer(active.as_ref().map_or(0, |m| m.bytes().len() as i64))),
        field("has_migrate", Response::Boolean(active.as_ref().is_some_and(|m| m.has_migrate()))),
        field("configured_path", Response::bulk(configured.path.display().to_string())),
        field("configured_digest", Response::bulk(hex(&configured.module.digest()))),
        field(
            "configured_is_active",
            Response::Boolean(active.as_ref().is_some_and(|m| m.digest() == configured.module.digest())),
        ),
    ];
    let commands = active.as_ref().map_or_else(Vec::new, |m| {
        m.commands().iter().map(super::command_docs::module_command_entry).collect::<Vec<_>>()
    });
    fields.push(field("commands", Response::Array(commands)));
    Response::Map(fields)
}

fn history(node: &Node) -> Response {
    let history = node.active(|a| a.history.clone());
    Response::Array(
        history
            .iter()
            .map(|event| {
                Response::Map(vec![
                    field("index", Response::Integer(event.index as i64)),
                    field("digest", Response::bulk(hex(&event.digest))),
                    field("outcome", Response::bulk(if event.rejected.is_some() { "rejected" } else { "activated" })),
                    field("reason", event.rejected.clone().map_or(Response::Null, Response::bulk)),
                ])
            })
            .collect(),
    )
}

/// `INFO`'s `# Module` section. A node whose config names another module than the cluster's says
/// so here (`module_configured_is_active:no`).
pub(super) fn info_section(node: &Node, out: &mut String) {
    let (active, since, switches) = node.active(|a| (a.module.clone(), a.since(), a.history.len()));
    let configured = node.configured_module();
    let digest = |m: &crate::runtime::FsmModule| hex(&m.digest());
    let _ = write!(
        out,
        "# Module\r\nmodule_active_digest:{}\r\nmodule_active_since_index:{since}\r\nmodule_abi_version:{}\r\n\
         module_commands:{}\r\nmodule_history_entries:{switches}\r\nmodule_configured_path:{}\r\n\
         module_configured_digest:{}\r\nmodule_configured_is_active:{}\r\nmodule_switch_wanted:{}\r\n\r\n",
        active.as_deref().map(digest).unwrap_or_default(),
        fsm_sdk::abi::ABI_VERSION,
        active.as_ref().map_or(0, |m| m.commands().len()),
        configured.path.display(),
        digest(&configured.module),
        if active.as_ref().is_some_and(|m| m.digest() == configured.module.digest()) { "yes" } else { "no" },
        node.wanted_module().as_deref().map(digest).unwrap_or_default(),
    );
}
