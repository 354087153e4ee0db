//! `COMMAND` and `COMMAND DOCS`: every command's entry (name, arity, flags, key positions), the
//! module's from its table and the server's own from [`super::local::TABLE`], and what each does
//! in Redis's shape (`summary`, `since`, `group`), for the commands Redis has. redis-cli reads
//! them when it starts interactively; client libraries and tools show them. A module command Redis
//! does not have gets a summary saying it is the module's.

use super::Shared;
use super::local::{is, text, unknown_subcommand};
use super::protocol::Response;
use bytes::Bytes;

/// `(name, summary, since, group)` for every Redis command a node or fsm-kv answers.
const DOCS: &[(&str, &str, &str, &str)] = &[
    ("append", "Appends a string to the value of a key. Creates the key if it doesn't exist.", "2.0.0", "string"),
    (
        "blmove",
        "Pops an element from a list, pushes it to another list and returns it. Blocks until an element is \
         available otherwise. Deletes the list if the last element was moved.",
        "6.2.0",
        "list",
    ),
    (
        "blpop",
        "Removes and returns the first element in a list. Blocks until an element is available otherwise. \
         Deletes the list if the last element was popped.",
        "2.0.0",
        "list",
    ),
    (
        "brpop",
        "Removes and returns the last element in a list. Blocks until an element is available otherwise. \
         Deletes the list if the last element was popped.",
        "2.0.0",
        "list",
    ),
    (
        "brpoplpush",
        "Pops an element from a list, pushes it to another list and returns it. Block until an element is \
         available otherwise. Deletes the list if the last element was popped.",
        "2.2.0",
        "list",
    ),
    (
        "bzpopmax",
        "Removes and returns the member with the highest score from one or more sorted sets. Blocks until a \
         member available otherwise. Deletes the sorted set if the last element was popped.",
        "5.0.0",
        "sorted-set",
    ),
    (
        "bzpopmin",
        "Removes and returns the member with the lowest score from one or more sorted sets. Blocks until a \
         member is available otherwise. Deletes the sorted set if the last element was popped.",
        "5.0.0",
        "sorted-set",
    ),
    ("copy", "Copies the value of a key to a new key.", "6.2.0", "generic"),
    ("dbsize", "Returns the number of keys in the database.", "1.0.0", "server"),
    (
        "decr",
        "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.",
        "1.0.0",
        "string",
    ),
    (
        "decrby",
        "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist.",
        "1.0.0",
        "string",
    ),
    ("del", "Deletes one or more keys.", "1.0.0", "generic"),
    ("discard", "Discards a transaction.", "2.0.0", "transactions"),
    ("echo", "Returns the given string.", "1.0.0", "connection"),
    ("exec", "Executes all commands in a transaction.", "1.2.0", "transactions"),
    ("exists", "Determines whether one or more keys exist.", "1.0.0", "generic"),
    ("expire", "Sets the expiration time of a key in seconds.", "1.0.0", "generic"),
    ("expireat", "Sets the expiration time of a key to a Unix timestamp.", "1.2.0", "generic"),
    ("expiretime", "Returns the expiration time of a key as a Unix timestamp.", "7.0.0", "generic"),
    ("flushall", "Removes all keys from all databases.", "1.0.0", "server"),
    ("flushdb", "Remove all keys from the current database.", "1.0.0", "server"),
    ("get", "Returns the string value of a key.", "1.0.0", "string"),
    ("getdel", "Returns the string value of a key after deleting the key.", "6.2.0", "string"),
    ("getex", "Returns the string value of a key after setting its expiration time.", "6.2.0", "string"),
    (
        "hdel",
        "Deletes one or more fields and their values from a hash. Deletes the hash if no fields remain.",
        "2.0.0",
        "hash",
    ),
    ("hello", "Handshakes with the Redis server.", "6.0.0", "connection"),
    ("hexists", "Determines whether a field exists in a hash.", "2.0.0", "hash"),
    ("hget", "Returns the value of a field in a hash.", "2.0.0", "hash"),
    ("hgetall", "Returns all fields and values in a hash.", "2.0.0", "hash"),
    (
        "hincrby",
        "Increments the integer value of a field in a hash by a number. Uses 0 as initial value if the field doesn't exist.",
        "2.0.0",
        "hash",
    ),
    (
        "hincrbyfloat",
        "Increments the floating point value of a field by a number. Uses 0 as initial value if the field doesn't exist.",
        "2.6.0",
        "hash",
    ),
    ("hkeys", "Returns all fields in a hash.", "2.0.0", "hash"),
    ("hlen", "Returns the number of fields in a hash.", "2.0.0", "hash"),
    ("hmget", "Returns the values of all fields in a hash.", "2.0.0", "hash"),
    ("hmset", "Sets the values of multiple fields.", "2.0.0", "hash"),
    ("hrandfield", "Returns one or more random fields from a hash.", "6.2.0", "hash"),
    ("hscan", "Iterates over fields and values of a hash.", "2.8.0", "hash"),
    ("hset", "Creates or modifies the value of a field in a hash.", "2.0.0", "hash"),
    ("hsetnx", "Sets the value of a field in a hash only when the field doesn't exist.", "2.0.0", "hash"),
    ("hstrlen", "Returns the length of the value of a field.", "3.2.0", "hash"),
    ("hvals", "Returns all values in a hash.", "2.0.0", "hash"),
    (
        "incr",
        "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.",
        "1.0.0",
        "string",
    ),
    (
        "incrby",
        "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist.",
        "1.0.0",
        "string",
    ),
    (
        "incrbyfloat",
        "Increment the floating point value of a key by a number. Uses 0 as initial value if the key doesn't exist.",
        "2.6.0",
        "string",
    ),
    ("info", "Returns information and statistics about the server.", "1.0.0", "server"),
    ("keys", "Returns all key names that match a pattern.", "1.0.0", "generic"),
    ("mget", "Atomically returns the string values of one or more keys.", "1.0.0", "string"),
    ("mset", "Atomically creates or modifies the string values of one or more keys.", "1.0.1", "string"),
    ("multi", "Starts a transaction.", "1.2.0", "transactions"),
    ("persist", "Removes the expiration time of a key.", "2.2.0", "generic"),
    ("pexpire", "Sets the expiration time of a key in milliseconds.", "2.6.0", "generic"),
    ("pexpireat", "Sets the expiration time of a key to a Unix milliseconds timestamp.", "2.6.0", "generic"),
    ("pexpiretime", "Returns the expiration time of a key as a Unix milliseconds timestamp.", "7.0.0", "generic"),
    ("ping", "Returns the server's liveliness response.", "1.0.0", "connection"),
    (
        "psetex",
        "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist.",
        "2.6.0",
        "string",
    ),
    ("pttl", "Returns the expiration time in milliseconds of a key.", "2.6.0", "generic"),
    ("quit", "Closes the connection.", "1.0.0", "connection"),
    ("randomkey", "Returns a random key name from the database.", "1.0.0", "generic"),
    ("rename", "Renames a key and overwrites the destination.", "1.0.0", "generic"),
    ("renamenx", "Renames a key only when the target key name doesn't exist.", "1.0.0", "generic"),
    ("scan", "Iterates over the key names in the database.", "2.8.0", "generic"),
    ("select", "Changes the selected database.", "1.0.0", "connection"),
    (
        "set",
        "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist.",
        "1.0.0",
        "string",
    ),
    (
        "setex",
        "Sets the string value and expiration time of a key. Creates the key if it doesn't exist.",
        "2.0.0",
        "string",
    ),
    ("setnx", "Set the string value of a key only when the key doesn't exist.", "1.0.0", "string"),
    ("strlen", "Returns the length of a string value.", "2.2.0", "string"),
    (
        "touch",
        "Returns the number of existing keys out of those specified after updating the time they were last accessed.",
        "3.2.1",
        "generic",
    ),
    ("ttl", "Returns the expiration time in seconds of a key.", "1.0.0", "generic"),
    ("type", "Determines the type of value stored at a key.", "1.0.0", "generic"),
    ("unlink", "Asynchronously deletes one or more keys.", "4.0.0", "generic"),
    ("unwatch", "Forgets about watched keys of a transaction.", "2.2.0", "transactions"),
    ("watch", "Monitors changes to keys to determine the execution of a transaction.", "2.2.0", "transactions"),
];

/// The group of the Redis command `name` (lower-case), if Redis has it.
pub fn group(name: &str) -> Option<&'static str> {
    DOCS.binary_search_by(|(n, ..)| n.cmp(&name)).ok().map(|i| DOCS[i].3)
}

/// The `COMMAND DOCS` entry of `name` (lower-case): Redis's summary, or one saying the command is
/// the state-machine module's own (or the node's: the cluster commands).
pub fn entry(name: &str, from_module: bool) -> Response {
    let (summary, since, group) = match DOCS.binary_search_by(|(n, ..)| n.cmp(&name)) {
        Ok(i) => (DOCS[i].1.to_owned(), DOCS[i].2, DOCS[i].3),
        Err(_) if from_module => (format!("The state-machine module's `{name}` command."), "0.1.0", "module"),
        Err(_) => (format!("Redraft's `{name}` command (see the README)."), "0.1.0", "server"),
    };
    Response::Map(vec![
        (Response::bulk("summary"), Response::bulk(summary)),
        (Response::bulk("since"), Response::bulk(since)),
        (Response::bulk("group"), Response::bulk(group)),
    ])
}

fn flags(list: &[&str]) -> Response {
    Response::Set(list.iter().map(|f| Response::Simple((*f).into())).collect())
}

/// A module command as `COMMAND` (and `MODULE INFO`) describe it.
pub fn module_command_entry(info: &fsm_sdk::CommandInfo<String>) -> Response {
    let arity = match info.arity {
        fsm_sdk::Arity::Exact(n) => i64::from(n),
        fsm_sdk::Arity::AtLeast(n) => -i64::from(n),
    };
    let flag_list: &[&str] = if info.write { &["write"] } else { &["readonly", "fast"] };
    Response::Array(vec![
        Response::bulk(info.name.to_ascii_lowercase()),
        Response::Integer(arity),
        flags(flag_list),
        Response::Integer(i64::from(info.keys.first)),
        Response::Integer(i64::from(info.keys.last)),
        Response::Integer(i64::from(info.keys.step)),
        Response::Set(vec![]),
        Response::Set(vec![]),
        Response::Array(vec![]),
        Response::Array(vec![]),
    ])
}

/// Every command: the cluster's active module's, then the server's own.
fn command_entries(shared: &Shared) -> Vec<(String, Response)> {
    let mut out = Vec::new();
    for info in shared.node.module().commands() {
        out.push((info.name.to_ascii_lowercase(), module_command_entry(info)));
    }
    for (name, arity, flag_list) in super::local::TABLE {
        out.push((
            (*name).to_owned(),
            Response::Array(vec![
                Response::bulk(*name),
                Response::Integer(*arity),
                flags(flag_list),
                Response::Integer(0),
                Response::Integer(0),
                Response::Integer(0),
                Response::Set(vec![]),
                Response::Set(vec![]),
                Response::Array(vec![]),
                Response::Array(vec![]),
            ]),
        ));
    }
    out
}

/// `COMMAND [COUNT | DOCS [name ...] | INFO [name ...] | LIST]`.
pub fn command(shared: &Shared, args: &[Bytes]) -> Response {
    if args.len() == 1 {
        return Response::Array(command_entries(shared).into_iter().map(|(_, e)| e).collect());
    }
    let sub = &args[1];
    if is(sub, "COUNT") {
        Response::Integer(command_entries(shared).len() as i64)
    } else if is(sub, "DOCS") {
        // Every command, or the ones named (unknown names are left out, as Redis does).
        let module = shared.node.module();
        let module_names: Vec<String> = module.commands().iter().map(|c| c.name.to_ascii_lowercase()).collect();
        let local = super::local::TABLE.iter().map(|(n, ..)| (*n).to_owned());
        let known: Vec<(String, bool)> =
            module_names.iter().map(|n| (n.clone(), true)).chain(local.map(|n| (n, false))).collect();
        let wanted: Option<std::collections::HashSet<String>> =
            (args.len() > 2).then(|| args[2..].iter().map(|a| text(a).to_ascii_lowercase()).collect());
        Response::Map(
            known
                .into_iter()
                .filter(|(name, _)| wanted.as_ref().is_none_or(|w| w.contains(name)))
                .map(|(name, from_module)| {
                    let docs = super::command_docs::entry(&name, from_module);
                    (Response::bulk(name), docs)
                })
                .collect(),
        )
    } else if is(sub, "INFO") {
        // One lookup per name asked for: linear in the request, however many names it carries.
        let entries: std::collections::HashMap<String, Response> = command_entries(shared).into_iter().collect();
        Response::Array(
            args[2..]
                .iter()
                .map(|name| entries.get(&text(name).to_ascii_lowercase()).cloned().unwrap_or(Response::Null))
                .collect(),
        )
    } else if is(sub, "LIST") {
        Response::Array(command_entries(shared).into_iter().map(|(n, _)| Response::bulk(n)).collect())
    } else {
        unknown_subcommand(sub, "COMMAND")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_for_binary_search() {
        assert!(DOCS.windows(2).all(|w| w[0].0 < w[1].0), "DOCS must stay sorted by name");
    }

    #[test]
    fn known_and_unknown_commands_get_a_summary() {
        let Response::Map(get) = entry("get", true) else { panic!("a map") };
        assert_eq!(get[0].1, Response::bulk("Returns the string value of a key."));
        let Response::Map(vote) = entry("vote", true) else { panic!("a map") };
        assert_eq!(vote[2].1, Response::bulk("module"));
    }
}
