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
        (&["SET", "k", "v", "EX"], err("ERR syntax error")),
        (&["SET", "k", "v", "EX", "10", "PX", "10"], err("ERR syntax error")),
        (&["SET", "k", "v", "EX", "10", "KEEPTTL"], err("ERR syntax error")),
        (&["SET", "k", "v", "KEEPTTL", "EX", "10"], err("ERR syntax error")),
        (&["SET", "k", "v", "EX", "0"], err("ERR invalid expire time in 'set' command")),
        (&["SET", "k", "v", "PX", "-5"], err("ERR invalid expire time in 'set' command")),
        (&["SET", "k", "v", "EX", "9223372036854775"], err("ERR invalid expire time in 'set' command")),
        (&["SET", "k", "v", "EX", "x"], err("ERR value is not an integer or out of range")),
        (&["GET", "k"], bulk("8")),
        (&["SET", "k", "9", "EX", "100", "EX", "200"], ok()),
        (&["TTL", "k"], Integer(200)),
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
    expect("expire", -3, true);
    expect("pexpire", -3, true);
    expect("expireat", -3, true);
    expect("pexpireat", -3, true);
    expect("ttl", 2, false);
    expect("pttl", 2, false);
    expect("expiretime", 2, false);
    expect("pexpiretime", 2, false);
    expect("persist", 2, true);
    expect("setex", 4, true);
    expect("psetex", 4, true);
    expect("getex", -2, true);
    expect("type", 2, false);
    expect("touch", -2, false);
    expect("unlink", -2, true);
    expect("keys", 2, false);
    expect("scan", -2, false);
    expect("randomkey", 1, false);
    expect("rename", 3, true);
    expect("renamenx", 3, true);
    expect("copy", -3, true);
    expect("flushdb", -1, true);
    expect("flushall", -1, true);
    expect("hset", -4, true);
    expect("hget", 3, false);
    expect("hgetall", 2, false);
    expect("hscan", -3, false);
    expect("sadd", -3, true);
    expect("smembers", 2, false);
    expect("spop", -2, true);
    expect("sscan", -3, false);
    expect("lpush", -3, true);
    expect("lrange", 4, false);
    expect("lmove", 5, true);
    expect("zadd", -4, true);
    expect("zrange", -4, false);
    expect("zscan", -3, false);
    assert_eq!(table.len(), 102);
}

/// A time far enough ahead of the wall clock that reads (which run at the later of the wall
/// clock and the last write's stamp) see exactly the stamps the test gives its writes.
fn future() -> i64 {
    redraft::runtime::wall_clock_ms() + 1_000_000_000
}

#[test]
fn keys_expire_at_the_entry_time_and_reads_never_see_them_after() {
    for mut kv in backends() {
        let t = future();
        assert_eq!(kv.call_at(t, &["SET", "k", "v", "PX", "1000"]), ok());
        assert_eq!(kv.call_at(t, &["SET", "forever", "x"]), ok());
        assert_eq!(kv.call(&["PTTL", "k"]), Integer(1000));
        assert_eq!(kv.call(&["TTL", "k"]), Integer(1));
        assert_eq!(kv.call(&["PEXPIRETIME", "k"]), Integer(t + 1000));
        assert_eq!(kv.call(&["EXPIRETIME", "k"]), Integer((t + 1000 + 500) / 1000));
        assert_eq!(kv.call(&["TTL", "forever"]), Integer(-1));
        assert_eq!(kv.call(&["TTL", "missing"]), Integer(-2));
        // At its expiry time the key is still there (Redis expires when the time is past it).
        assert_eq!(kv.call_at(t + 1000, &["SET", "clock", "1"]), ok());
        assert_eq!(kv.call(&["GET", "k"]), bulk("v"));
        assert_eq!(kv.call(&["PTTL", "k"]), Integer(0));
        // One millisecond later it is gone from every read, but still counted until swept.
        assert_eq!(kv.call_at(t + 1001, &["SET", "clock", "2"]), ok());
        assert_eq!(kv.call(&["GET", "k"]), Null, "{}", kv.backend);
        assert_eq!(kv.call(&["EXISTS", "k", "forever"]), Integer(1));
        assert_eq!(kv.call(&["MGET", "k", "forever"]), Reply::Array(vec![Null, bulk("x")]));
        assert_eq!(kv.call(&["STRLEN", "k"]), Integer(0));
        assert_eq!(kv.call(&["TTL", "k"]), Integer(-2));
        assert_eq!(kv.call(&["DBSIZE"]), Integer(3));
        // The housekeeping tick removes it from the store.
        assert_eq!(kv.tick_at(t + 1001), Integer(1));
        assert_eq!(kv.call(&["DBSIZE"]), Integer(2));
        assert_eq!(kv.tick_at(t + 1001), Integer(0));
    }
}

#[test]
fn a_write_sees_an_expired_key_as_absent() {
    for mut kv in backends() {
        let t = future();
        for (key, value) in [("a", "5"), ("b", "5"), ("c", "5"), ("d", "5")] {
            assert_eq!(kv.call_at(t, &["SET", key, value, "PX", "10"]), ok());
        }
        let later = t + 11;
        assert_eq!(kv.call_at(later, &["INCR", "a"]), Integer(1));
        assert_eq!(kv.call(&["TTL", "a"]), Integer(-1), "the new key has no expiry");
        assert_eq!(kv.call_at(later, &["SET", "b", "x", "NX"]), ok());
        assert_eq!(kv.call_at(later, &["DEL", "c"]), Integer(0));
        assert_eq!(kv.call_at(later, &["APPEND", "d", "x"]), Integer(1));
        assert_eq!(kv.call(&["DBSIZE"]), Integer(3));
        // Nothing is left for the tick: the writes removed what had expired.
        assert_eq!(kv.tick_at(later), Integer(0));
    }
}

#[test]
fn expire_and_its_options_follow_redis() {
    for mut kv in backends() {
        let t = future();
        let script: Vec<(&[&str], Reply)> = vec![
            (&["EXPIRE", "k", "10"], Integer(0)),
            (&["SET", "k", "v"], ok()),
            (&["EXPIRE", "k", "10", "XX"], Integer(0)),
            (&["EXPIRE", "k", "10", "GT"], Integer(0)),
            (&["EXPIRE", "k", "100", "NX"], Integer(1)),
            (&["EXPIRE", "k", "50", "NX"], Integer(0)),
            (&["EXPIRE", "k", "50", "GT"], Integer(0)),
            (&["EXPIRE", "k", "200", "GT"], Integer(1)),
            (&["EXPIRE", "k", "300", "LT"], Integer(0)),
            (&["PEXPIRE", "k", "150000", "lt"], Integer(1)),
            (&["TTL", "k"], Integer(150)),
            (&["INCR", "n"], Integer(1)),
            (&["EXPIRE", "n", "20", "LT"], Integer(1)),
            (&["INCR", "n"], Integer(2)),
            (&["TTL", "n"], Integer(20)),
            (&["SET", "k", "w", "KEEPTTL"], ok()),
            (&["TTL", "k"], Integer(150)),
            (&["PERSIST", "k"], Integer(1)),
            (&["PERSIST", "k"], Integer(0)),
            (&["TTL", "k"], Integer(-1)),
            (
                &["EXPIRE", "n", "10", "NX", "XX"],
                err("ERR NX and XX, GT or LT options at the same time are not compatible"),
            ),
            (&["EXPIRE", "n", "10", "GT", "LT"], err("ERR GT and LT options at the same time are not compatible")),
            (&["EXPIRE", "n", "10", "YY"], err("ERR Unsupported option YY")),
            (&["EXPIRE", "n", "x"], err("ERR value is not an integer or out of range")),
            (&["EXPIRE", "n", "9223372036854775807"], err("ERR invalid expire time in 'expire' command")),
            (&["EXPIRE", "n", "-1"], Integer(1)),
            (&["EXISTS", "n"], Integer(0)),
            (&["SETEX", "s", "5", "v"], ok()),
            (&["PTTL", "s"], Integer(5000)),
            (&["SETEX", "s", "0", "v"], err("ERR invalid expire time in 'setex' command")),
            (&["PSETEX", "s", "x", "v"], err("ERR value is not an integer or out of range")),
            (&["PSETEX", "s", "2500", "v"], ok()),
            (&["TTL", "s"], Integer(3)),
            (&["GETEX", "s", "PERSIST"], bulk("v")),
            (&["TTL", "s"], Integer(-1)),
            (&["GETEX", "s", "EX", "7"], bulk("v")),
            (&["TTL", "s"], Integer(7)),
            (&["GETEX", "s"], bulk("v")),
            (&["GETEX", "s", "EX", "0"], err("ERR invalid expire time in 'getex' command")),
            (&["GETEX", "s", "EX", "1", "PERSIST"], err("ERR syntax error")),
            (&["GETEX", "missing", "EX", "abc"], Null),
            (&["SET", "p", "v", "PXAT", "1000"], ok()),
            (&["EXISTS", "p"], Integer(0)),
            (&["SET", "k", "plain"], ok()),
            (&["EXPIREAT", "k", "1"], Integer(1)),
            (&["GET", "k"], Null),
        ];
        for (args, expected) in &script {
            assert_eq!(&kv.call_at(t, args), expected, "{} backend: {args:?}", kv.backend);
        }
        assert_eq!(kv.call(&["DBSIZE"]), Integer(1), "only s is left: past expiry times delete at once");
    }
}

#[test]
fn keyspace_commands_follow_redis() {
    expect_all(&[
        (&["TYPE", "s"], Reply::Simple("none".into())),
        (&["SET", "s", "v", "EX", "100"], ok()),
        (&["TYPE", "s"], Reply::Simple("string".into())),
        (&["TOUCH", "s", "s", "nope"], Integer(2)),
        (&["RENAME", "nope", "x"], err("ERR no such key")),
        (&["RENAME", "s", "t"], ok()),
        (&["EXISTS", "s"], Integer(0)),
        (&["GET", "t"], bulk("v")),
        (&["TTL", "t"], Integer(100)),
        (&["RENAME", "t", "t"], ok()),
        (&["SET", "u", "w"], ok()),
        (&["RENAMENX", "t", "u"], Integer(0)),
        (&["RENAMENX", "t", "v"], Integer(1)),
        (&["COPY", "v", "u"], Integer(0)),
        (&["COPY", "v", "u", "REPLACE"], Integer(1)),
        (&["TTL", "u"], Integer(100)),
        (&["COPY", "v", "v"], err("ERR source and destination objects are the same")),
        (&["COPY", "v", "w", "DB", "1"], err("ERR DB index is out of range")),
        (&["COPY", "v", "w", "DB", "0"], Integer(1)),
        (&["COPY", "nope", "w2"], Integer(0)),
        (&["KEYS", "*"], Reply::Array(vec![bulk("u"), bulk("v"), bulk("w")])),
        (&["KEYS", "[uv]"], Reply::Array(vec![bulk("u"), bulk("v")])),
        (&["UNLINK", "u", "nope"], Integer(1)),
        (&["DBSIZE"], Integer(2)),
        (&["FLUSHDB", "BOGUS"], err("ERR syntax error")),
        (&["FLUSHALL", "ASYNC"], ok()),
        (&["DBSIZE"], Integer(0)),
        (&["KEYS", "*"], Reply::Array(vec![])),
        (&["RANDOMKEY"], Null),
        (&["SCAN", "0"], Reply::Array(vec![bulk("0"), Reply::Array(vec![])])),
        (&["SCAN", "x"], err("ERR invalid cursor")),
        (&["SCAN", "0", "COUNT", "0"], err("ERR syntax error")),
        (&["SCAN", "0", "COUNT", "x"], err("ERR value is not an integer or out of range")),
        (&["SCAN", "0", "MATCH"], err("ERR syntax error")),
    ]);
}

/// Follows a SCAN iteration to its end; the keys returned, in order, with repeats.
fn scan_all(kv: &mut support::Kv, count: &str, between: &mut dyn FnMut(&mut support::Kv, usize)) -> Vec<String> {
    let mut cursor = "0".to_owned();
    let mut seen = Vec::new();
    for round in 0.. {
        let Reply::Array(reply) = kv.call(&["SCAN", &cursor, "COUNT", count]) else { panic!("SCAN reply") };
        let [Reply::Bulk(next), Reply::Array(keys)] = reply.as_slice() else { panic!("SCAN reply {reply:?}") };
        seen.extend(keys.iter().map(|k| match k {
            Reply::Bulk(k) => String::from_utf8_lossy(k).into_owned(),
            other => panic!("key {other:?}"),
        }));
        cursor = String::from_utf8_lossy(next).into_owned();
        if cursor == "0" {
            break;
        }
        between(kv, round);
    }
    seen
}

#[test]
fn scan_returns_every_key_present_throughout_despite_writes_between_calls() {
    for mut kv in backends() {
        for i in 0..500 {
            assert_eq!(kv.call(&["SET", &format!("key:{i}"), "v"]), ok());
        }
        // Without writes: every key exactly once.
        let mut seen = scan_all(&mut kv, "7", &mut |_, _| {});
        seen.sort();
        let mut all: Vec<String> = (0..500).map(|i| format!("key:{i}")).collect();
        all.sort();
        assert_eq!(seen, all, "{}", kv.backend);
        // With keys added and removed between calls: every key present throughout, at least once.
        let seen = scan_all(&mut kv, "13", &mut |kv, round| {
            kv.call(&["SET", &format!("new:{round}"), "v"]);
            kv.call(&["DEL", &format!("key:{}", 400 + round % 100)]);
        });
        for i in 0..400 {
            assert!(seen.contains(&format!("key:{i}")), "{}: key:{i} missed", kv.backend);
        }
        // MATCH filters what a call looked at; TYPE string keeps every key here.
        let Reply::Array(reply) = kv.call(&["SCAN", "0", "MATCH", "key:1?", "COUNT", "1000", "TYPE", "string"]) else {
            panic!("SCAN reply")
        };
        assert_eq!(reply[0], bulk("0"));
        assert!(matches!(&reply[1], Reply::Array(keys) if keys.len() == 10), "{reply:?}");
        let Reply::Array(reply) = kv.call(&["SCAN", "0", "COUNT", "1000", "TYPE", "hash"]) else { panic!("reply") };
        assert_eq!(reply[1], Reply::Array(vec![]));
        assert!(matches!(kv.call(&["RANDOMKEY"]), Reply::Bulk(_)));
    }
}

fn map(pairs: &[(&str, &str)]) -> Reply {
    Reply::Map(pairs.iter().map(|(k, v)| (bulk(k), bulk(v))).collect())
}

#[test]
fn hashes_follow_redis_and_live_beside_strings() {
    const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
    expect_all(&[
        (&["HSET", "h", "a", "1", "b", "2"], Integer(2)),
        (&["HSET", "h", "a", "10", "c", "3"], Integer(1)),
        (&["HGET", "h", "a"], bulk("10")),
        (&["HGET", "h", "zz"], Null),
        (&["HMGET", "h", "a", "zz", "c"], Reply::Array(vec![bulk("10"), Null, bulk("3")])),
        (&["HMGET", "nohash", "a"], Reply::Array(vec![Null])),
        (&["HLEN", "h"], Integer(3)),
        (&["HEXISTS", "h", "b"], Integer(1)),
        (&["HSTRLEN", "h", "a"], Integer(2)),
        (&["HSETNX", "h", "a", "x"], Integer(0)),
        (&["HSETNX", "h", "d", "4"], Integer(1)),
        (&["HINCRBY", "h", "a", "5"], Integer(15)),
        (&["HINCRBY", "h", "new", "-5"], Integer(-5)),
        (&["HINCRBY", "h", "a", "x"], err("ERR value is not an integer or out of range")),
        (&["HSET", "h", "s", "text"], Integer(1)),
        (&["HINCRBY", "h", "s", "1"], err("ERR hash value is not an integer")),
        (&["HINCRBYFLOAT", "h", "f", "1.5"], bulk("1.5")),
        (&["HINCRBYFLOAT", "h", "s", "1"], err("ERR hash value is not a float")),
        (&["HDEL", "h", "s", "f", "new", "zz"], Integer(3)),
        (&["TYPE", "h"], Reply::Simple("hash".into())),
        (&["HSET", "h", "odd"], err("ERR wrong number of arguments for 'hset' command")),
        (&["HMSET", "h", "e", "5"], ok()),
        // In the fields' hash order (the same on every replica), not insertion order.
        (&["HGETALL", "h"], map(&[("e", "5"), ("b", "2"), ("c", "3"), ("a", "15"), ("d", "4")])),
        // Strings and hashes refuse each other's commands.
        (&["GET", "h"], err(WRONGTYPE)),
        (&["INCR", "h"], err(WRONGTYPE)),
        (&["APPEND", "h", "x"], err(WRONGTYPE)),
        (&["STRLEN", "h"], err(WRONGTYPE)),
        (&["SET", "h", "v", "GET"], err(WRONGTYPE)),
        (&["MGET", "h"], Reply::Array(vec![Null])),
        (&["SET", "str", "v"], ok()),
        (&["HSET", "str", "a", "1"], err(WRONGTYPE)),
        (&["HGET", "str", "a"], err(WRONGTYPE)),
        (&["HGETALL", "str"], err(WRONGTYPE)),
        // Keyspace commands see hashes.
        (&["EXISTS", "h", "str"], Integer(2)),
        (&["DBSIZE"], Integer(2)),
        (&["SET", "h", "v", "NX"], Null),
        (&["EXPIRE", "h", "100"], Integer(1)),
        (&["TTL", "h"], Integer(100)),
        (&["RENAME", "h", "h2"], ok()),
        (&["TTL", "h2"], Integer(100)),
        (&["HGET", "h2", "a"], bulk("15")),
        (&["COPY", "h2", "h3"], Integer(1)),
        (&["HDEL", "h2", "a"], Integer(1)),
        (&["HGET", "h3", "a"], bulk("15")),
        (&["HLEN", "h3"], Integer(5)),
        (&["KEYS", "*"], Reply::Array(vec![bulk("str"), bulk("h2"), bulk("h3")])),
        // The last field takes the key with it; SET replaces a hash.
        (&["HDEL", "h2", "b", "c", "d", "e"], Integer(4)),
        (&["EXISTS", "h2"], Integer(0)),
        (&["SET", "h3", "plain"], ok()),
        (&["GET", "h3"], bulk("plain")),
        (&["HLEN", "h3"], err(WRONGTYPE)),
        (&["DBSIZE"], Integer(2)),
    ]);
}

#[test]
fn a_removed_hash_is_emptied_by_the_tick_and_never_shows_through() {
    for mut kv in backends() {
        let t = future();
        let mut args = vec!["HSET".to_owned(), "big".to_owned()];
        for i in 0..3000 {
            args.push(format!("f{i}"));
            args.push("v".to_owned());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(kv.call_at(t, &refs), Integer(3000));
        assert_eq!(kv.call_at(t, &["DEL", "big"]), Integer(1));
        assert_eq!(kv.call_at(t, &["HSET", "big", "g", "1"]), Integer(1));
        assert_eq!(kv.call(&["HGETALL", "big"]), map(&[("g", "1")]));
        // 1024 elements per tick: three ticks and a last one that finds the rest.
        let mut ticks = 0;
        while kv.tick_at(t) != Integer(0) {
            ticks += 1;
            assert!(ticks < 10, "{}: the tick never finished", kv.backend);
        }
        assert_eq!(ticks, 3, "{}", kv.backend);
        assert_eq!(kv.call(&["HLEN", "big"]), Integer(1));
        assert_eq!(kv.call_at(t, &["DEL", "big"]), Integer(1));
        assert_eq!(kv.tick_at(t), Integer(1));
        assert_eq!(kv.call(&["DBSIZE"]), Integer(0));
        let left: Vec<String> = kv.store_keys().iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
        assert_eq!(left, ["m:dbsize", "m:next_id"], "{}: only counters are left", kv.backend);
    }
}

#[test]
fn flushdb_removes_a_keyspace_of_any_size_in_one_command() {
    for mut kv in backends() {
        let t = future();
        // 60,000 strings (some with a time to live), a hash, a sorted set: well past what one
        // command could delete key by key within its fuel.
        for chunk in 0..60 {
            let mut args = vec!["MSET".to_owned()];
            for i in 0..1000 {
                args.extend([format!("s:{chunk}:{i}"), "v".to_owned()]);
            }
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            assert_eq!(kv.call_at(t, &refs), ok());
        }
        assert_eq!(kv.call_at(t, &["EXPIRE", "s:0:0", "1000"]), Integer(1));
        assert_eq!(kv.call_at(t, &["HSET", "h", "f", "1"]), Integer(1));
        assert_eq!(kv.call_at(t, &["ZADD", "z", "1", "a", "2", "b"]), Integer(2));
        assert_eq!(kv.call(&["DBSIZE"]), Integer(60_002));
        assert_eq!(kv.call_at(t, &["FLUSHDB"]), ok(), "{}", kv.backend);
        assert_eq!(kv.call(&["DBSIZE"]), Integer(0));
        assert_eq!(kv.call(&["GET", "s:0:0"]), Reply::Null);
        assert_eq!(kv.call(&["SCAN", "0"]), Reply::Array(vec![bulk("0"), Reply::Array(vec![])]));
        let left: Vec<String> = kv.store_keys().iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
        assert_eq!(left, ["m:next_id"], "{}: only the id counter is left", kv.backend);
        // The keyspace works as new; collection ids carry on where they were.
        assert_eq!(kv.call_at(t, &["HSET", "h", "g", "2"]), Integer(1));
        assert_eq!(kv.call(&["HGETALL", "h"]), map(&[("g", "2")]));
        assert_eq!(kv.call(&["SCAN", "0"]), Reply::Array(vec![bulk("0"), Reply::Array(vec![bulk("h")])]));
        assert_eq!(kv.call_at(t, &["FLUSHALL", "ASYNC"]), ok());
        assert_eq!(kv.tick_at(t), Integer(0), "{}: nothing is left for the tick", kv.backend);
    }
}

#[test]
fn hscan_and_hrandfield() {
    for mut kv in backends() {
        let mut args = vec!["HSET".to_owned(), "h".to_owned()];
        for i in 0..200 {
            args.push(format!("field:{i}"));
            args.push(i.to_string());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(kv.call(&refs), Integer(200));
        let mut cursor = "0".to_owned();
        let mut seen = std::collections::BTreeMap::new();
        loop {
            let Reply::Array(reply) = kv.call(&["HSCAN", "h", &cursor, "COUNT", "17"]) else { panic!("reply") };
            let [Reply::Bulk(next), Reply::Array(items)] = reply.as_slice() else { panic!("{reply:?}") };
            for pair in items.chunks(2) {
                let (Reply::Bulk(f), Reply::Bulk(v)) = (&pair[0], &pair[1]) else { panic!("{pair:?}") };
                seen.insert(f.clone(), v.clone());
            }
            cursor = String::from_utf8_lossy(next).into_owned();
            if cursor == "0" {
                break;
            }
        }
        assert_eq!(seen.len(), 200, "{}", kv.backend);
        assert_eq!(seen[b"field:7".as_slice()], b"7");
        let Reply::Array(reply) = kv.call(&["HSCAN", "h", "0", "COUNT", "1000", "MATCH", "field:1?", "NOVALUES"])
        else {
            panic!("reply")
        };
        assert!(matches!(&reply[1], Reply::Array(items) if items.len() == 10), "{reply:?}");
        assert!(matches!(kv.call(&["HRANDFIELD", "h"]), Reply::Bulk(_)));
        assert!(matches!(kv.call(&["HRANDFIELD", "h", "5"]), Reply::Array(items) if items.len() == 5));
        assert!(matches!(kv.call(&["HRANDFIELD", "h", "500"]), Reply::Array(items) if items.len() == 200));
        assert!(
            matches!(kv.call(&["HRANDFIELD", "h", "-300", "WITHVALUES"]), Reply::Pairs(items) if items.len() == 300)
        );
        assert_eq!(kv.call(&["HRANDFIELD", "nope"]), Null);
        assert_eq!(kv.call(&["HRANDFIELD", "nope", "3"]), Reply::Array(vec![]));
    }
}

fn set(members: &[&str]) -> Reply {
    Reply::Set(members.iter().map(|m| bulk(m)).collect())
}

/// Sorts a set reply's members, so a test does not depend on the hash order.
fn sorted(reply: Reply) -> Reply {
    match reply {
        Reply::Set(mut items) | Reply::Array(mut items) => {
            items.sort_by_key(|r| format!("{r:?}"));
            Reply::Set(items)
        }
        other => other,
    }
}

#[test]
fn sets_follow_redis() {
    const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
    for mut kv in backends() {
        let script: &[(&[&str], Reply)] = &[
            (&["SADD", "s", "a", "b", "c", "a"], Integer(3)),
            (&["SADD", "s", "c", "d"], Integer(1)),
            (&["SCARD", "s"], Integer(4)),
            (&["SISMEMBER", "s", "a"], Integer(1)),
            (&["SMISMEMBER", "s", "a", "z"], Reply::Array(vec![Integer(1), Integer(0)])),
            (&["SMISMEMBER", "nope", "a"], Reply::Array(vec![Integer(0)])),
            (&["SREM", "s", "d", "z"], Integer(1)),
            (&["SMEMBERS", "s"], set(&["a", "b", "c"])),
            (&["SADD", "t", "b", "c", "x"], Integer(3)),
            (&["SINTER", "s", "t"], set(&["b", "c"])),
            (&["SUNION", "s", "t"], set(&["a", "b", "c", "x"])),
            (&["SDIFF", "s", "t"], set(&["a"])),
            (&["SINTER", "s", "nope"], set(&[])),
            (&["SDIFFSTORE", "d", "s", "t"], Integer(1)),
            (&["SMEMBERS", "d"], set(&["a"])),
            (&["SINTERSTORE", "d", "s", "nope"], Integer(0)),
            (&["EXISTS", "d"], Integer(0)),
            (&["SMOVE", "s", "t", "a"], Integer(1)),
            (&["SMOVE", "s", "t", "a"], Integer(0)),
            (&["SMOVE", "nope", "str", "a"], Integer(0)),
            (&["SET", "str", "v"], ok()),
            (&["SMOVE", "t", "str", "a"], err(WRONGTYPE)),
            (&["SADD", "str", "a"], err(WRONGTYPE)),
            (&["SINTER", "s", "str"], err(WRONGTYPE)),
            (&["GET", "s"], err(WRONGTYPE)),
            (&["TYPE", "s"], Reply::Simple("set".into())),
            (&["SPOP", "s", "-1"], err("ERR value is out of range, must be positive")),
            (&["SPOP", "nope"], Null),
            (&["SPOP", "nope", "2"], set(&[])),
            (&["SRANDMEMBER", "nope"], Null),
        ];
        for (args, expected) in script {
            assert_eq!(sorted(kv.call(args)), sorted(expected.clone()), "{} backend: {args:?}", kv.backend);
        }
        // SPOP takes members away, the same ones on every replica (picked by the entry's time).
        let t = future();
        let popped = kv.call_at(t, &["SPOP", "t", "2"]);
        assert!(matches!(&popped, Reply::Set(m) if m.len() == 2), "{popped:?}");
        assert_eq!(kv.call(&["SCARD", "t"]), Integer(2));
        assert!(matches!(kv.call(&["SPOP", "s"]), Reply::Bulk(_)));
        assert!(matches!(kv.call(&["SPOP", "s", "5"]), Reply::Set(m) if m.len() == 1));
        assert_eq!(kv.call(&["EXISTS", "s"]), Integer(0), "{}: the last member took the key", kv.backend);
        assert!(matches!(kv.call(&["SRANDMEMBER", "t", "-5"]), Reply::Array(m) if m.len() == 5));
        let Reply::Array(scan) = kv.call(&["SSCAN", "t", "0", "COUNT", "100"]) else { panic!("SSCAN") };
        assert!(matches!(&scan[1], Reply::Array(m) if m.len() == 2), "{scan:?}");
    }
}

fn list(items: &[&str]) -> Reply {
    Reply::Array(items.iter().map(|i| bulk(i)).collect())
}

#[test]
fn lists_follow_redis() {
    const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
    expect_all(&[
        (&["RPUSH", "l", "a", "b", "c"], Integer(3)),
        (&["LPUSH", "l", "z", "y"], Integer(5)),
        (&["LRANGE", "l", "0", "-1"], list(&["y", "z", "a", "b", "c"])),
        (&["LRANGE", "l", "-2", "100"], list(&["b", "c"])),
        (&["LRANGE", "l", "3", "1"], list(&[])),
        (&["LLEN", "l"], Integer(5)),
        (&["LINDEX", "l", "-1"], bulk("c")),
        (&["LINDEX", "l", "9"], Null),
        (&["LSET", "l", "1", "Z"], ok()),
        (&["LSET", "l", "9", "Z"], err("ERR index out of range")),
        (&["LSET", "nope", "0", "Z"], err("ERR no such key")),
        (&["LPOP", "l"], bulk("y")),
        (&["RPOP", "l", "2"], list(&["c", "b"])),
        (&["LPOP", "l", "-1"], err("ERR value is out of range, must be positive")),
        (&["RPUSH", "l", "a", "x", "a"], Integer(5)),
        (&["LREM", "l", "-1", "a"], Integer(1)),
        (&["LRANGE", "l", "0", "-1"], list(&["Z", "a", "a", "x"])),
        (&["LREM", "l", "0", "a"], Integer(2)),
        (&["LINSERT", "l", "BEFORE", "x", "w"], Integer(3)),
        (&["LINSERT", "l", "AFTER", "nope", "w"], Integer(-1)),
        (&["LINSERT", "l", "NEAR", "x", "w"], err("ERR syntax error")),
        (&["LPOS", "l", "x"], Integer(2)),
        (&["LPOS", "l", "q"], Null),
        (&["LPOS", "l", "x", "COUNT", "0"], Reply::Array(vec![Integer(2)])),
        (
            &["LPOS", "l", "x", "RANK", "0"],
            err(
                "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
            ),
        ),
        (&["LTRIM", "l", "1", "-1"], ok()),
        (&["LRANGE", "l", "0", "-1"], list(&["w", "x"])),
        (&["LMOVE", "l", "m", "LEFT", "RIGHT"], bulk("w")),
        (&["RPOPLPUSH", "l", "m"], bulk("x")),
        (&["EXISTS", "l"], Integer(0)),
        (&["LRANGE", "m", "0", "-1"], list(&["x", "w"])),
        (&["LMOVE", "m", "m", "LEFT", "RIGHT"], bulk("x")),
        (&["LRANGE", "m", "0", "-1"], list(&["w", "x"])),
        (&["LMOVE", "nope", "m", "LEFT", "LEFT"], Null),
        (&["LPUSHX", "nope", "a"], Integer(0)),
        (&["RPUSHX", "m", "y"], Integer(3)),
        (&["LTRIM", "m", "5", "9"], ok()),
        (&["EXISTS", "m"], Integer(0)),
        (&["SET", "s", "v"], ok()),
        (&["LPUSH", "s", "a"], err(WRONGTYPE)),
        (&["RPUSH", "q", "a"], Integer(1)),
        (&["GET", "q"], err(WRONGTYPE)),
        (&["LMOVE", "q", "s", "LEFT", "LEFT"], err(WRONGTYPE)),
        (&["TYPE", "q"], Reply::Simple("list".into())),
    ]);
}

#[test]
fn sorted_sets_follow_redis() {
    const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
    // Compared as a RESP2 client sees them: scores as text, pairs flat.
    let script: &[(&[&str], Reply)] = &[
        (&["ZADD", "board", "10", "alice", "20", "bob", "15", "carol"], Integer(3)),
        (&["ZADD", "board", "XX", "CH", "25", "alice", "5", "dave"], Integer(1)),
        (&["ZADD", "board", "NX", "1", "alice", "5", "dave"], Integer(1)),
        (&["ZADD", "board", "GT", "CH", "1", "alice", "30", "bob"], Integer(1)),
        (&["ZADD", "board", "INCR", "2.5", "carol"], bulk("17.5")),
        (&["ZADD", "board", "NX", "XX", "1", "a"], err("ERR XX and NX options at the same time are not compatible")),
        (
            &["ZADD", "board", "GT", "LT", "1", "a"],
            err("ERR GT, LT, and/or NX options at the same time are not compatible"),
        ),
        (
            &["ZADD", "board", "INCR", "1", "a", "2", "b"],
            err("ERR INCR option supports a single increment-element pair"),
        ),
        (&["ZADD", "board", "x", "a"], err("ERR value is not a valid float")),
        (&["ZADD", "board", "NX", "1"], err("ERR syntax error")),
        (&["ZSCORE", "board", "carol"], bulk("17.5")),
        (&["ZMSCORE", "board", "bob", "nobody"], Reply::Array(vec![bulk("30"), Null])),
        (&["ZCARD", "board"], Integer(4)),
        (
            &["ZRANGE", "board", "0", "-1", "WITHSCORES"],
            list(&["dave", "5", "carol", "17.5", "alice", "25", "bob", "30"]),
        ),
        (&["ZREVRANGE", "board", "0", "1"], list(&["bob", "alice"])),
        (&["ZRANGE", "board", "(5", "25", "BYSCORE"], list(&["carol", "alice"])),
        (&["ZRANGE", "board", "+inf", "-inf", "BYSCORE", "REV", "LIMIT", "1", "2"], list(&["alice", "carol"])),
        (&["ZRANGEBYSCORE", "board", "-inf", "(25", "WITHSCORES"], list(&["dave", "5", "carol", "17.5"])),
        (&["ZCOUNT", "board", "(5", "+inf"], Integer(3)),
        (&["ZCOUNT", "board", "x", "1"], err("ERR min or max is not a float")),
        (&["ZRANK", "board", "alice"], Integer(2)),
        (&["ZREVRANK", "board", "alice"], Integer(1)),
        (&["ZRANK", "board", "nobody"], Null),
        (&["ZINCRBY", "board", "-12.5", "carol"], bulk("5")),
        (&["ZRANGE", "board", "0", "1"], list(&["carol", "dave"])),
        (
            &["ZRANGE", "board", "0", "1", "LIMIT", "0", "1"],
            err("ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"),
        ),
        (&["ZPOPMIN", "board"], list(&["carol", "5"])),
        (&["ZPOPMAX", "board", "2"], list(&["bob", "30", "alice", "25"])),
        (&["ZREM", "board", "dave", "nobody"], Integer(1)),
        (&["EXISTS", "board"], Integer(0)),
        (&["ZADD", "lex", "0", "b", "0", "a", "0", "d", "0", "c"], Integer(4)),
        (&["ZRANGEBYLEX", "lex", "[b", "(d"], list(&["b", "c"])),
        (&["ZRANGE", "lex", "-", "+", "BYLEX", "LIMIT", "1", "2"], list(&["b", "c"])),
        (&["ZRANGEBYLEX", "lex", "b", "d"], err("ERR min or max not valid string range item")),
        (&["ZADD", "neg", "-inf", "x", "inf", "y", "0", "z"], Integer(3)),
        (&["ZRANGE", "neg", "0", "-1", "WITHSCORES"], list(&["x", "-inf", "z", "0", "y", "inf"])),
        (&["ZINCRBY", "neg", "-inf", "y"], err("ERR resulting score is not a number (NaN)")),
        (&["SET", "s", "v"], ok()),
        (&["ZADD", "s", "1", "a"], err(WRONGTYPE)),
        (&["TYPE", "lex"], Reply::Simple("zset".into())),
    ];
    for mut kv in backends() {
        for (args, expected) in script {
            assert_eq!(support::as_resp2(&kv.call(args)), *expected, "{} backend: {args:?}", kv.backend);
        }
        // In RESP3 terms: a score is a double, WITHSCORES gives pairs.
        assert_eq!(kv.call(&["ZADD", "z", "1.5", "m"]), Integer(1));
        assert_eq!(kv.call(&["ZSCORE", "z", "m"]), Reply::Double(1.5));
        assert_eq!(
            kv.call(&["ZRANGE", "z", "0", "-1", "WITHSCORES"]),
            Reply::Pairs(vec![(bulk("m"), Reply::Double(1.5))])
        );
    }
}

/// The members of a `WITHSCORES` or plain range reply, in order.
fn members(reply: Reply) -> Vec<Vec<u8>> {
    match reply {
        Reply::Pairs(pairs) => pairs.into_iter().map(|(m, _)| m).collect::<Vec<_>>(),
        Reply::Array(items) => items,
        other => panic!("not a range reply: {other:?}"),
    }
    .into_iter()
    .map(|m| match m {
        Reply::Bulk(b) => b,
        other => panic!("not a member: {other:?}"),
    })
    .collect()
}

#[test]
fn reverse_ranges_read_from_the_top_across_many_pages() {
    for mut kv in backends() {
        let t = future();
        // 2,000 members over 667 scores: ties, which Redis orders by member (reversed with REV),
        // and ranges that span several of the module's 512-entry scan pages.
        let mut args = vec!["ZADD".to_owned(), "z".to_owned()];
        for i in 0..2000 {
            args.extend([(i / 3).to_string(), format!("m{i:04}")]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(kv.call_at(t, &refs), Integer(2000));
        let mut ascending = members(kv.call(&["ZRANGE", "z", "0", "-1"]));
        assert_eq!(ascending.len(), 2000);
        ascending.reverse();
        let descending = ascending;
        assert_eq!(members(kv.call(&["ZREVRANGE", "z", "0", "-1"])), descending, "{}", kv.backend);
        assert_eq!(members(kv.call(&["ZRANGE", "z", "5", "1300", "REV"])), descending[5..=1300], "{}", kv.backend);
        assert_eq!(
            members(kv.call(&["ZRANGE", "z", "+inf", "-inf", "BYSCORE", "REV", "LIMIT", "700", "600"])),
            descending[700..1300],
            "{}",
            kv.backend
        );
        assert_eq!(
            members(kv.call(&["ZREVRANGEBYSCORE", "z", "(600", "100"])),
            descending.iter().filter(|m| (300..1800).contains(&member_index(m))).cloned().collect::<Vec<_>>(),
            "{}: scores 100 to 599",
            kv.backend
        );
        assert_eq!(kv.call(&["ZREVRANK", "z", "m0000"]), Integer(1999));
        assert_eq!(kv.call(&["ZREVRANK", "z", "m1999"]), Integer(0));
        assert_eq!(kv.call(&["ZRANK", "z", "m1234"]), Integer(1234));
        assert_eq!(kv.call(&["ZREVRANK", "z", "m1234"]), Integer(765));
        assert_eq!(members(kv.call_at(t, &["ZPOPMAX", "z", "600"])), descending[..600], "{}", kv.backend);
        assert_eq!(kv.call(&["ZCARD", "z"]), Integer(1400));
        assert_eq!(members(kv.call(&["ZREVRANGE", "z", "0", "0"])), descending[600..601]);
    }
}

fn member_index(member: &[u8]) -> usize {
    std::str::from_utf8(&member[1..]).ok().and_then(|n| n.parse().ok()).expect("m<number>")
}

#[test]
fn random_picks_from_a_large_set_or_hash_read_only_what_they_return() {
    // One backend: what is measured is the module's reads (before, every pick read the whole
    // collection, and this set ran out of fuel).
    for mut kv in [support::in_memory(support::module())] {
        let t = future();
        // 200,000 members: reading them all would take far more than one command's fuel.
        for chunk in 0..40 {
            let mut sadd = vec!["SADD".to_owned(), "big".to_owned()];
            let mut hset = vec!["HSET".to_owned(), "bigh".to_owned()];
            for i in 0..5000 {
                sadd.push(format!("m{chunk}:{i}"));
                hset.extend([format!("f{chunk}:{i}"), format!("v{chunk}:{i}")]);
            }
            let refs: Vec<&str> = sadd.iter().map(String::as_str).collect();
            assert_eq!(kv.call_at(t, &refs), Integer(5000));
            let refs: Vec<&str> = hset.iter().map(String::as_str).collect();
            assert_eq!(kv.call_at(t, &refs), Integer(5000));
        }
        let members = |reply: Reply| match reply {
            Reply::Array(items) | Reply::Set(items) => items
                .into_iter()
                .map(|m| match m {
                    Reply::Bulk(b) => String::from_utf8(b).expect("utf8"),
                    other => panic!("{other:?}"),
                })
                .collect::<Vec<_>>(),
            other => panic!("not a list of members: {other:?}"),
        };
        let picked = members(kv.call(&["SRANDMEMBER", "big", "25"]));
        assert_eq!(picked.len(), 25);
        assert_eq!(picked.iter().collect::<std::collections::BTreeSet<_>>().len(), 25, "distinct");
        assert!(picked.iter().all(|m| m.starts_with('m')), "{picked:?}");
        assert_eq!(members(kv.call(&["SRANDMEMBER", "big", "-40"])).len(), 40);
        let popped = members(kv.call_at(t, &["SPOP", "big", "3"]));
        assert_eq!(popped.len(), 3);
        assert_eq!(kv.call(&["SCARD", "big"]), Integer(199_997));
        for member in &popped {
            assert_eq!(kv.call(&["SISMEMBER", "big", member]), Integer(0), "{member} was removed");
        }
        assert!(matches!(kv.call_at(t, &["SPOP", "big"]), Reply::Bulk(_)));
        match kv.call(&["HRANDFIELD", "bigh", "2", "WITHVALUES"]) {
            Reply::Pairs(pairs) => {
                assert_eq!(pairs.len(), 2);
                for (field, value) in pairs {
                    let (Reply::Bulk(field), Reply::Bulk(value)) = (field, value) else { panic!("not bulks") };
                    assert_eq!(value[1..], field[1..], "a field's own value");
                }
            }
            other => panic!("{other:?}"),
        }
    }
}
