//! Every fsm-kv command's Redis semantics and error texts, run as the compiled `.wasm` under
//! wasmtime on both storage backends.

mod support;

use fsm_sdk::Reply::{self, Integer, Null};
use support::{backends, bulk, err, ok};

/// Runs `script` (command, expected reply) on every backend.
fn expect_all(script: &[(&[&str], Reply)]) {
    for mut kv in backends() {
        for (args, expected) in script {
            assert_eq!(&kv.call(args), expected, "{} backend: {:?}", kv.backend, args);
        }
    }
}

#[test]
fn set_and_get() {
    expect_all(&[
        (&["GET", "k"], Null),
        (&["SET", "k", "v"], ok()),
        (&["GET", "k"], bulk("v")),
        (&["set", "k", "w"], ok()),
        (&["gEt", "k"], bulk("w")),
        (&["SET", "empty", ""], ok()),
        (&["GET", "empty"], bulk("")),
    ]);
}

#[test]
fn keys_and_values_are_binary_safe() {
    for mut kv in backends() {
        let key: &[u8] = b"k\0\r\n\xff";
        let value: &[u8] = b"\0\x01\r\n\xfe value";
        assert_eq!(kv.call_bytes(&[b"SET", key, value]), ok());
        assert_eq!(kv.call_bytes(&[b"GET", key]), Reply::Bulk(value.to_vec()));
        assert_eq!(kv.call_bytes(&[b"GET", b"k"]), Null, "{}: prefix of a key is another key", kv.backend);
        let big = vec![b'x'; 1 << 20];
        assert_eq!(kv.call_bytes(&[b"SET", b"big", &big]), ok());
        assert_eq!(kv.call_bytes(&[b"GET", b"big"]), Reply::Bulk(big));
    }
}

#[test]
fn set_options() {
    expect_all(&[
        (&["SET", "k", "1", "NX"], ok()),
        (&["SET", "k", "2", "NX"], Null),
        (&["GET", "k"], bulk("1")),
        (&["SET", "k", "3", "XX"], ok()),
        (&["SET", "missing", "3", "XX"], Null),
        (&["GET", "missing"], Null),
        (&["SET", "k", "4", "GET"], bulk("3")),
        (&["SET", "new", "5", "GET"], Null),
        (&["GET", "new"], bulk("5")),
        (&["SET", "k", "6", "nx", "get"], bulk("4")),
        (&["GET", "k"], bulk("4")),
        (&["SET", "absent", "7", "XX", "GET"], Null),
        (&["GET", "absent"], Null),
        (&["SET", "k", "8", "KEEPTTL"], ok()),
        (&["SET", "k", "v", "NX", "XX"], err("ERR syntax error")),
        (&["SET", "k", "v", "XX", "NX"], err("ERR syntax error")),
        (&["SET", "k", "v", "BOGUS"], err("ERR syntax error")),
        (
            &["SET", "k", "v", "EX", "10"],
            err("ERR SET with an expiry is not supported: the replicated state machine has no clock"),
        ),
        (&["GET", "k"], bulk("8")),
    ]);
}

#[test]
fn wrong_arity_and_unknown_commands_use_redis_texts() {
    expect_all(&[
        (&["GET"], err("ERR wrong number of arguments for 'get' command")),
        (&["GET", "a", "b"], err("ERR wrong number of arguments for 'get' command")),
        (&["SET", "k"], err("ERR wrong number of arguments for 'set' command")),
        (&["MSET", "a", "1", "b"], err("ERR wrong number of arguments for 'mset' command")),
        (&["DBSIZE", "x"], err("ERR wrong number of arguments for 'dbsize' command")),
        (&["INCRBY", "k"], err("ERR wrong number of arguments for 'incrby' command")),
        (&["FOO", "bar", "baz"], err("ERR unknown command 'FOO', with args beginning with: 'bar' 'baz' ")),
        (&["FOO"], err("ERR unknown command 'FOO', with args beginning with: ")),
    ]);
}

#[test]
fn del_delete_and_exists() {
    expect_all(&[
        (&["MSET", "a", "1", "b", "2", "c", "3"], ok()),
        (&["EXISTS", "a", "a", "b", "zz"], Integer(3)),
        (&["DEL", "a", "a", "zz"], Integer(1)),
        (&["EXISTS", "a"], Integer(0)),
        (&["DELETE", "b", "c"], Integer(2)),
        (&["DEL", "b"], Integer(0)),
        (&["DBSIZE"], Integer(0)),
    ]);
}

#[test]
fn mget_and_mset() {
    expect_all(&[
        (&["MSET", "a", "1", "b", "2"], ok()),
        (&["MGET", "a", "nope", "b"], Reply::Array(vec![bulk("1"), Null, bulk("2")])),
        (&["MSET", "a", "x", "a", "y"], ok()),
        (&["GET", "a"], bulk("y")),
        (&["DBSIZE"], Integer(2)),
    ]);
}

#[test]
fn counters() {
    let max = i64::MAX.to_string();
    let min = i64::MIN.to_string();
    expect_all(&[
        (&["INCR", "n"], Integer(1)),
        (&["INCRBY", "n", "41"], Integer(42)),
        (&["DECR", "n"], Integer(41)),
        (&["DECRBY", "n", "-9"], Integer(50)),
        (&["GET", "n"], bulk("50")),
        (&["INCRBY", "n", "-100"], Integer(-50)),
        (&["SET", "s", "abc"], ok()),
        (&["INCR", "s"], err("ERR value is not an integer or out of range")),
        (&["SET", "s", " 1"], ok()),
        (&["INCR", "s"], err("ERR value is not an integer or out of range")),
        (&["INCRBY", "n", "x"], err("ERR value is not an integer or out of range")),
        (&["INCRBY", "n", "1.5"], err("ERR value is not an integer or out of range")),
        (&["SET", "m", &max], ok()),
        (&["INCR", "m"], err("ERR increment or decrement would overflow")),
        (&["GET", "m"], bulk(&max)),
        (&["SET", "m", &min], ok()),
        (&["DECR", "m"], err("ERR increment or decrement would overflow")),
        (&["DECRBY", "n", &min], err("ERR decrement would overflow")),
        (&["GET", "n"], bulk("-50")),
    ]);
}

#[test]
fn append_and_strlen() {
    expect_all(&[
        (&["STRLEN", "k"], Integer(0)),
        (&["APPEND", "k", "Hello"], Integer(5)),
        (&["APPEND", "k", " World"], Integer(11)),
        (&["GET", "k"], bulk("Hello World")),
        (&["STRLEN", "k"], Integer(11)),
        (&["DBSIZE"], Integer(1)),
    ]);
}

#[test]
fn dbsize_counts_keys_through_every_write() {
    expect_all(&[
        (&["DBSIZE"], Integer(0)),
        (&["SET", "a", "1"], ok()),
        (&["SET", "a", "2"], ok()),
        (&["SET", "b", "1", "NX"], ok()),
        (&["SET", "b", "1", "NX"], Null),
        (&["INCR", "c"], Integer(1)),
        (&["APPEND", "d", "x"], Integer(1)),
        (&["MSET", "a", "1", "e", "2"], ok()),
        (&["DBSIZE"], Integer(5)),
        (&["DEL", "a", "b", "zz"], Integer(2)),
        (&["DBSIZE"], Integer(3)),
    ]);
}

#[test]
fn a_write_command_is_refused_as_a_query() {
    for mut kv in backends() {
        let reply = kv.runtime.query(&support::encode(&[b"SET", b"k", b"v"])).expect("query");
        assert_eq!(reply, err("ERR 'set' writes and cannot run as a read-only query"));
        assert_eq!(kv.call(&["GET", "k"]), Null);
    }
}

#[test]
fn the_command_table_is_what_redis_reports() {
    let module = support::module();
    let table: Vec<(String, i32, bool)> =
        module.commands().iter().map(|c| (c.name.clone(), c.arity.to_wire(), c.write)).collect();
    let expect = |name: &str, arity: i32, write: bool| {
        assert!(table.contains(&(name.to_owned(), arity, write)), "{name} {arity} {write} in {table:?}");
    };
    expect("set", -3, true);
    expect("get", 2, false);
    expect("del", -2, true);
    expect("delete", -2, true);
    expect("exists", -2, false);
    expect("mget", -2, false);
    expect("mset", -3, true);
    expect("incr", 2, true);
    expect("incrby", 3, true);
    expect("decr", 2, true);
    expect("decrby", 3, true);
    expect("append", 3, true);
    expect("strlen", 2, false);
    expect("dbsize", 1, false);
    assert_eq!(table.len(), 14);
}
