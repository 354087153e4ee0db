//! A key-value module under the real wasm runtime, on either backend, driven like a client.
#![allow(dead_code)] // each test binary uses a different part of this module

use fsm_sdk::{Reply, codec};
use redraft::runtime::{FsmEngine, FsmModule, Runtime, RuntimeLimits};
use redraft::storage::{MemoryStore, RedbStore, SharedStore};
use std::sync::{Arc, OnceLock};

/// One runtime over one store, plus the temp dir that holds a redb file.
pub struct Kv {
    pub backend: &'static str,
    pub runtime: Runtime,
    _dir: Option<tempfile::TempDir>,
}

/// fsm-kv, compiled once per test binary (compiling is the slow part of a test).
pub fn module() -> Arc<FsmModule> {
    static MODULE: OnceLock<Arc<FsmModule>> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            let engine = FsmEngine::new(RuntimeLimits::default()).expect("engine");
            Arc::new(FsmModule::load(&engine, &redraft_tests::fsm_kv_wasm()).expect("fsm-kv loads"))
        })
        .clone()
}

/// fsm-kv-v2, compiled once per test binary.
pub fn v2_module() -> Arc<FsmModule> {
    static MODULE: OnceLock<Arc<FsmModule>> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            let engine = FsmEngine::new(RuntimeLimits::default()).expect("engine");
            let bytes = std::fs::read(redraft_tests::FSM_KV_V2_WASM).expect("read fsm-kv-v2");
            Arc::new(FsmModule::load(&engine, &bytes).expect("fsm-kv-v2 loads"))
        })
        .clone()
}

/// `module` on a fresh memory store.
pub fn in_memory(module: Arc<FsmModule>) -> Kv {
    Kv { backend: "memory", runtime: Runtime::open(module, Arc::new(MemoryStore::new())).expect("open"), _dir: None }
}

/// fsm-kv on a fresh memory store and on a fresh redb store.
pub fn backends() -> Vec<Kv> {
    let module = module();
    let memory: SharedStore = Arc::new(MemoryStore::new());
    let dir = tempfile::tempdir().expect("temp dir");
    let redb: SharedStore = Arc::new(RedbStore::open(&dir.path().join("state.redb"), false).expect("redb"));
    vec![
        Kv { backend: "memory", runtime: Runtime::open(module.clone(), memory).expect("open"), _dir: None },
        Kv { backend: "redb", runtime: Runtime::open(module, redb).expect("open"), _dir: Some(dir) },
    ]
}

pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    codec::encode_args(args, &mut out);
    out
}

impl Kv {
    /// Sends a command as the node will: writes through apply, stamped with the wall clock as a
    /// leader stamps its entries, reads through query.
    pub fn call_bytes(&mut self, args: &[&[u8]]) -> Reply {
        self.call_bytes_at(redraft::runtime::wall_clock_ms(), args)
    }

    /// As [`Kv::call_bytes`], with a write stamped `time_ms` (a read runs at the later of the
    /// wall clock and the last write's stamp, as on a node).
    pub fn call_bytes_at(&mut self, time_ms: i64, args: &[&[u8]]) -> Reply {
        let encoded = encode(args);
        let module = self.runtime.module().clone();
        let write = module.command_index(args[0]).is_none_or(|i| module.commands()[i].write);
        let result = if write {
            let op = redraft::runtime::Op::Command { encoded: &encoded, time_ms: Some(time_ms) };
            self.runtime.apply_ops(&[op], &[]).map(|mut replies| replies.remove(0))
        } else {
            self.runtime.query(&encoded)
        };
        result.expect("no storage failure")
    }

    /// [`Kv::call_bytes_at`] with text arguments.
    pub fn call_at(&mut self, time_ms: i64, args: &[&str]) -> Reply {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.call_bytes_at(time_ms, &args)
    }

    /// Every key in the module's store, in order.
    pub fn store_keys(&self) -> Vec<Vec<u8>> {
        let view = self.runtime.store().read().expect("view");
        let mut keys = Vec::new();
        view.scan(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded, &mut |k, _| {
            keys.push(k.to_vec());
            std::ops::ControlFlow::Continue(())
        })
        .expect("scan");
        keys
    }

    /// Applies a housekeeping tick stamped `time_ms`; its reply.
    pub fn tick_at(&mut self, time_ms: i64) -> Reply {
        let mut replies = self.runtime.apply_ops(&[redraft::runtime::Op::Tick { time_ms }], &[]).expect("tick");
        replies.remove(0)
    }

    pub fn call(&mut self, args: &[&str]) -> Reply {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.call_bytes(&args)
    }
}

pub fn bulk(s: &str) -> Reply {
    Reply::Bulk(s.as_bytes().to_vec())
}

pub fn ok() -> Reply {
    Reply::ok()
}

pub fn err(s: &str) -> Reply {
    Reply::Error(s.to_owned())
}

// ----- seeded random command logs ---------------------------------------------------------

pub use redraft_tests::rng::Rng;

/// Random keys and values for the command logs, drawn from the shared seeded [`Rng`].
pub trait RandomData {
    fn key(&mut self) -> Vec<u8>;
    fn value(&mut self) -> Vec<u8>;
}

impl RandomData for Rng {
    fn key(&mut self) -> Vec<u8> {
        // A small keyspace so commands collide; some keys are binary.
        let k = self.below(400);
        if k.is_multiple_of(50) { vec![b'k', 0, (k % 256) as u8, b'\n'] } else { format!("key:{k}").into_bytes() }
    }

    fn value(&mut self) -> Vec<u8> {
        match self.below(4) {
            0 => (self.next() as i64 % 1000).to_string().into_bytes(),
            1 => Vec::new(),
            _ => (0..self.below(40)).map(|_| self.below(256) as u8).collect(),
        }
    }
}

/// Which server the commands are for: Redis has no `DELETE` (Redraft's original name for `DEL`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Redraft,
    Redis,
}

/// A random fsm-kv-v2 command: one of v2's own a quarter of the time, else an fsm-kv command.
/// `INCRBYFLOAT` increments are exact in binary, plus invalid ones: Redis adds in `long double`
/// and prints its rounding error (`958.29999999999999999` for 958 + 0.3) where fsm-kv-v2 adds in
/// `f64` and prints `958.3`, a documented difference.
pub fn random_v2_command(rng: &mut Rng) -> Vec<Vec<u8>> {
    let c = |s: &str| s.as_bytes().to_vec();
    const INCREMENTS: [&str; 12] =
        ["1", "0.5", "-2.25", "3.5e2", "0.125", "-0.75", "10", "2.5e-1", "abc", " 1", "", "inf"];
    match rng.below(12) {
        0 => vec![c("GETDEL"), rng.key()],
        1 => vec![c("SETNX"), rng.key(), rng.value()],
        2 => vec![c("INCRBYFLOAT"), rng.key(), c(INCREMENTS[rng.below(INCREMENTS.len() as u64) as usize])],
        _ => random_command(rng, Dialect::Redis),
    }
}

/// A random fsm-kv command, weighted towards writes; includes error cases (bad integers, bad
/// options, wrong arity, unknown commands).
pub fn random_command(rng: &mut Rng, dialect: Dialect) -> Vec<Vec<u8>> {
    let c = |s: &str| s.as_bytes().to_vec();
    if rng.below(200) == 0 {
        return match rng.below(5) {
            0 => vec![c("GET")],
            1 => vec![c("SET"), rng.key()],
            2 => vec![c("NOSUCHCMD"), rng.key()],
            // Redis quotes unknown commands' arguments up to 128 bytes in all, and stops at NUL.
            3 => vec![c("NOSUCHCMD"), vec![b'a'; 90], vec![b'b'; 90], c("c")],
            _ => vec![[vec![b'N'; 150], c("\0x")].concat(), c("a\0b"), c("c\r\nd")],
        };
    }
    let del = if dialect == Dialect::Redis || rng.below(2) == 0 { "DEL" } else { "DELETE" };
    match rng.below(37) {
        0..=3 => {
            let mut cmd = vec![c("SET"), rng.key(), rng.value()];
            for option in ["NX", "XX", "GET", "BOGUS"] {
                if rng.below(8) == 0 {
                    cmd.push(c(option));
                }
            }
            cmd
        }
        4 => vec![c("GET"), rng.key()],
        5 => (0..1 + rng.below(3)).fold(vec![c(del)], |mut v, _| {
            v.push(rng.key());
            v
        }),
        6 => vec![c("EXISTS"), rng.key(), rng.key()],
        7 => vec![c("MGET"), rng.key(), rng.key(), rng.key()],
        8 => vec![c("MSET"), rng.key(), rng.value(), rng.key(), rng.value()],
        9 => vec![c("INCR"), rng.key()],
        10 => vec![c("INCRBY"), rng.key(), rng.value()],
        11 => vec![c("DECR"), rng.key()],
        12 => vec![c("DECRBY"), rng.key(), (rng.next() as i64 % 100).to_string().into_bytes()],
        13 => vec![c("APPEND"), rng.key(), rng.value()],
        14 => vec![c("STRLEN"), rng.key()],
        15 => vec![c("DBSIZE")],
        16..=19 => random_expiry_command(rng),
        20 | 21 => random_keyspace_command(rng),
        22..=25 => random_hash_command(rng),
        26..=28 => random_set_command(rng),
        29..=32 => random_list_command(rng),
        _ => random_zset_command(rng),
    }
}

/// A random sorted-set command, on the same keys as the other types. Scores are exact in binary
/// (Redis 7.0 prints other scores with 17 digits, this module in their shortest form); the lex
/// commands go to one key whose members all score 0 (Redis leaves lex ranges over mixed scores
/// unspecified).
pub fn random_zset_command(rng: &mut Rng) -> Vec<Vec<u8>> {
    let c = |s: &str| s.as_bytes().to_vec();
    const SCORES: [&str; 9] = ["1", "2", "-1.5", "0", "2.5", "10", "inf", "-inf", "x"];
    const BOUNDS: [&str; 9] = ["-inf", "+inf", "(1", "2", "0", "(0", "2.5", "(10", "nope"];
    const LEX: [&str; 7] = ["-", "+", "[m2", "(m2", "[m4", "(m0", "m1"];
    let pick = |rng: &mut Rng, from: &[&str]| c(from[rng.below(from.len() as u64) as usize]);
    let member = |rng: &mut Rng| format!("m{}", rng.below(6)).into_bytes();
    let index = |rng: &mut Rng| (rng.below(10) as i64 - 5).to_string().into_bytes();
    let key = rng.key();
    match rng.below(24) {
        0..=4 => {
            let mut cmd = vec![c("ZADD"), key];
            for flag in ["NX", "XX", "GT", "LT", "CH"] {
                if rng.below(8) == 0 {
                    cmd.push(c(flag));
                }
            }
            let pairs = if rng.below(10) == 0 {
                cmd.push(c("INCR"));
                1
            } else {
                1 + rng.below(3)
            };
            for _ in 0..pairs {
                cmd.push(pick(rng, &SCORES));
                cmd.push(member(rng));
            }
            cmd
        }
        5 => vec![c("ZINCRBY"), key, pick(rng, &SCORES), member(rng)],
        6 => vec![c("ZREM"), key, member(rng), member(rng)],
        7 => vec![c("ZSCORE"), key, member(rng)],
        8 => vec![c("ZMSCORE"), key, member(rng), member(rng)],
        9 => vec![c("ZCARD"), key],
        10 => vec![c("ZCOUNT"), key, pick(rng, &BOUNDS), pick(rng, &BOUNDS)],
        11 => vec![c(["ZRANK", "ZREVRANK"][rng.below(2) as usize]), key, member(rng)],
        12 | 13 => {
            let mut cmd = vec![c(["ZRANGE", "ZREVRANGE"][rng.below(2) as usize]), key, index(rng), index(rng)];
            if rng.below(2) == 0 {
                cmd.push(c("WITHSCORES"));
            }
            cmd
        }
        14 | 15 => {
            let rev = rng.below(2) == 0;
            let mut cmd = vec![c("ZRANGE"), key, pick(rng, &BOUNDS), pick(rng, &BOUNDS), c("BYSCORE")];
            if rev {
                cmd.push(c("REV"));
            }
            if rng.below(3) == 0 {
                cmd.extend([c("LIMIT"), index(rng), index(rng)]);
            }
            if rng.below(2) == 0 {
                cmd.push(c("WITHSCORES"));
            }
            cmd
        }
        16 => {
            let mut cmd = vec![
                c(["ZRANGEBYSCORE", "ZREVRANGEBYSCORE"][rng.below(2) as usize]),
                key,
                pick(rng, &BOUNDS),
                pick(rng, &BOUNDS),
            ];
            if rng.below(2) == 0 {
                cmd.push(c("WITHSCORES"));
            }
            if rng.below(3) == 0 {
                cmd.extend([c("LIMIT"), index(rng), index(rng)]);
            }
            cmd
        }
        17 | 18 => {
            let mut cmd = vec![c(["ZPOPMIN", "ZPOPMAX"][rng.below(2) as usize]), key];
            if rng.below(2) == 0 {
                cmd.push((rng.below(4) as i64 - 1).to_string().into_bytes());
            }
            cmd
        }
        19 => vec![c("ZADD"), c("zlex"), c("0"), member(rng)],
        20 => vec![c("ZRANGEBYLEX"), c("zlex"), pick(rng, &LEX), pick(rng, &LEX)],
        21 => vec![c("ZRANGE"), c("zlex"), pick(rng, &LEX), pick(rng, &LEX), c("BYLEX")],
        22 => vec![c("ZRANGE"), key, c("0"), c("-1"), c("LIMIT"), c("0"), c("1")],
        _ => vec![c("TYPE"), key],
    }
}

/// A random list command, on the same keys as the other types.
pub fn random_list_command(rng: &mut Rng) -> Vec<Vec<u8>> {
    let c = |s: &str| s.as_bytes().to_vec();
    let element = |rng: &mut Rng| format!("e{}", rng.below(6)).into_bytes();
    let index = |rng: &mut Rng| (rng.below(14) as i64 - 7).to_string().into_bytes();
    let end = |rng: &mut Rng| c(if rng.below(2) == 0 { "LEFT" } else { "RIGHT" });
    let key = rng.key();
    match rng.below(22) {
        0..=3 => {
            let mut cmd = vec![c(["LPUSH", "RPUSH"][rng.below(2) as usize]), key];
            for _ in 0..1 + rng.below(3) {
                cmd.push(element(rng));
            }
            cmd
        }
        4 => vec![c(["LPUSHX", "RPUSHX"][rng.below(2) as usize]), key, element(rng)],
        5 | 6 => {
            let mut cmd = vec![c(["LPOP", "RPOP"][rng.below(2) as usize]), key];
            if rng.below(3) == 0 {
                cmd.push((rng.below(4) as i64 - 1).to_string().into_bytes());
            }
            cmd
        }
        7 => vec![c("LLEN"), key],
        8 | 9 => vec![c("LRANGE"), key, index(rng), index(rng)],
        10 => vec![c("LINDEX"), key, index(rng)],
        11 => vec![c("LSET"), key, index(rng), element(rng)],
        12 => vec![c("LREM"), key, index(rng), element(rng)],
        13 => vec![c("LTRIM"), key, index(rng), index(rng)],
        14 => {
            vec![c("LINSERT"), key, c(["BEFORE", "AFTER", "NEAR"][rng.below(3) as usize]), element(rng), element(rng)]
        }
        15 => vec![c("LPOS"), key, element(rng)],
        16 => {
            let mut cmd = vec![c("LPOS"), key, element(rng)];
            for option in ["RANK", "COUNT", "MAXLEN"] {
                if rng.below(2) == 0 {
                    cmd.push(c(option));
                    cmd.push((rng.below(6) as i64 - 2).to_string().into_bytes());
                }
            }
            cmd
        }
        17 | 18 => vec![c("LMOVE"), key, rng.key(), end(rng), end(rng)],
        19 => vec![c("RPOPLPUSH"), key, rng.key()],
        20 => vec![c("LRANGE"), key, c("0"), c("-1")],
        _ => vec![c("TYPE"), key],
    }
}

/// A random set command (not `SPOP`, `SRANDMEMBER` or `SSCAN`, whose picks or order differ from
/// Redis's by design), on the same keys as the other types.
pub fn random_set_command(rng: &mut Rng) -> Vec<Vec<u8>> {
    let c = |s: &str| s.as_bytes().to_vec();
    let member = |rng: &mut Rng| format!("m{}", rng.below(10)).into_bytes();
    let key = rng.key();
    match rng.below(14) {
        0..=3 => {
            let mut cmd = vec![c("SADD"), key];
            for _ in 0..1 + rng.below(3) {
                cmd.push(member(rng));
            }
            cmd
        }
        4 => vec![c("SREM"), key, member(rng), member(rng)],
        5 => vec![c("SMEMBERS"), key],
        6 => vec![c("SISMEMBER"), key, member(rng)],
        7 => vec![c("SMISMEMBER"), key, member(rng), member(rng)],
        8 => vec![c("SCARD"), key],
        9 => vec![c(["SINTER", "SUNION", "SDIFF"][rng.below(3) as usize]), key, rng.key()],
        10 => vec![c(["SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE"][rng.below(3) as usize]), key, rng.key(), rng.key()],
        11 => vec![c("SMOVE"), key, rng.key(), member(rng)],
        12 => vec![c("SPOP"), key, c("0")],
        _ => vec![c("TYPE"), key],
    }
}

/// A random hash command, on the same keys as the string commands (so `WRONGTYPE` comes up).
pub fn random_hash_command(rng: &mut Rng) -> Vec<Vec<u8>> {
    let c = |s: &str| s.as_bytes().to_vec();
    let field = |rng: &mut Rng| format!("f{}", rng.below(8)).into_bytes();
    let key = rng.key();
    match rng.below(18) {
        0..=3 => {
            let mut cmd = vec![c("HSET"), key];
            for _ in 0..1 + rng.below(3) {
                cmd.push(field(rng));
                cmd.push(rng.value());
            }
            if rng.below(20) == 0 {
                cmd.pop();
            }
            cmd
        }
        4 => vec![c("HSETNX"), key, field(rng), rng.value()],
        5 => vec![c("HGET"), key, field(rng)],
        6 => vec![c("HMGET"), key, field(rng), field(rng)],
        7 => vec![c("HDEL"), key, field(rng), field(rng)],
        8 => vec![c("HEXISTS"), key, field(rng)],
        9 => vec![c("HLEN"), key],
        10 => vec![c("HSTRLEN"), key, field(rng)],
        11 => vec![c("HGETALL"), key],
        12 => vec![c(if rng.below(2) == 0 { "HKEYS" } else { "HVALS" }), key],
        13 => vec![c("HINCRBY"), key, field(rng), rng.value()],
        14 => {
            const INCREMENTS: [&str; 6] = ["1", "0.5", "-2.25", "abc", "10", "2.5e-1"];
            vec![c("HINCRBYFLOAT"), key, field(rng), c(INCREMENTS[rng.below(6) as usize])]
        }
        15 => vec![c("HMSET"), key, field(rng), rng.value()],
        16 => vec![c("TYPE"), key],
        _ => vec![c("HSET"), key, field(rng), (rng.below(100) as i64 - 50).to_string().into_bytes()],
    }
}

/// A random command over keys as such (those whose replies do not depend on the order keys are
/// stored in: not `SCAN`, `KEYS` or `RANDOMKEY`).
pub fn random_keyspace_command(rng: &mut Rng) -> Vec<Vec<u8>> {
    let c = |s: &str| s.as_bytes().to_vec();
    match rng.below(12) {
        0 | 1 => vec![c("TYPE"), rng.key()],
        2 => vec![c("TOUCH"), rng.key(), rng.key()],
        3 => vec![c("UNLINK"), rng.key()],
        4 | 5 => vec![c("RENAME"), rng.key(), rng.key()],
        6 => vec![c("RENAMENX"), rng.key(), rng.key()],
        7 => vec![c("COPY"), rng.key(), rng.key()],
        8 => vec![c("COPY"), rng.key(), rng.key(), c("REPLACE")],
        9 => vec![c("COPY"), rng.key(), rng.key(), c("DB"), c("0"), c("BOGUS")],
        10 if rng.below(40) == 0 => vec![c("FLUSHDB")],
        _ => vec![c("DBSIZE")],
    }
}

/// A random time-to-live command. Relative times are whole seconds between 1000 s and about
/// 12 days, so nothing expires during a test and two of them on one key are never within the
/// milliseconds that separate two servers' clocks (which would flip a `GT` or `LT`); absolute
/// times are either in 2096 or in 1970 (which deletes the key at once, on Redis as here).
pub fn random_expiry_command(rng: &mut Rng) -> Vec<Vec<u8>> {
    let c = |s: &str| s.as_bytes().to_vec();
    let seconds = |rng: &mut Rng| 1000 + rng.below(1_000_000) as i64;
    let far = |rng: &mut Rng| 4_000_000_000 + rng.below(1_000_000) as i64;
    let flags = |rng: &mut Rng, mut cmd: Vec<Vec<u8>>| {
        for flag in ["NX", "XX", "GT", "LT", "ZZ"] {
            if rng.below(6) == 0 {
                cmd.push(c(flag));
            }
        }
        cmd
    };
    let key = rng.key();
    match rng.below(16) {
        0 => {
            let cmd = vec![c("EXPIRE"), key, seconds(rng).to_string().into_bytes()];
            flags(rng, cmd)
        }
        1 => {
            let cmd = vec![c("PEXPIRE"), key, (seconds(rng) * 1000).to_string().into_bytes()];
            flags(rng, cmd)
        }
        2 => {
            let cmd = vec![c("EXPIREAT"), key, far(rng).to_string().into_bytes()];
            flags(rng, cmd)
        }
        3 => match rng.below(3) {
            0 => vec![c("PEXPIREAT"), key, rng.below(1000).to_string().into_bytes()],
            1 => vec![c("EXPIRE"), key, c("-1")],
            _ => {
                let cmd = vec![c("PEXPIREAT"), key, (far(rng) * 1000).to_string().into_bytes()];
                flags(rng, cmd)
            }
        },
        4 => vec![c("TTL"), key],
        5 => vec![c("PTTL"), key],
        6 => vec![c("EXPIRETIME"), key],
        7 => vec![c("PEXPIRETIME"), key],
        8 => vec![c("PERSIST"), key],
        9 => vec![c("SETEX"), key, seconds(rng).to_string().into_bytes(), rng.value()],
        10 => vec![c("PSETEX"), key, (seconds(rng) * 1000).to_string().into_bytes(), rng.value()],
        11 => {
            let mut cmd = vec![c("GETEX"), key];
            match rng.below(5) {
                0 => cmd.extend([c("EX"), seconds(rng).to_string().into_bytes()]),
                1 => cmd.extend([c("PXAT"), (far(rng) * 1000).to_string().into_bytes()]),
                2 => cmd.push(c("PERSIST")),
                3 => cmd.extend([c("EX"), c("0")]),
                _ => {}
            }
            cmd
        }
        12 => vec![c("SET"), key, rng.value(), c("KEEPTTL")],
        13 => vec![c("SET"), key, rng.value(), c("EX"), seconds(rng).to_string().into_bytes()],
        14 => vec![c("SET"), key, rng.value(), c("EXAT"), far(rng).to_string().into_bytes(), c("GET")],
        // Invalid expiry times (never a small valid one: it would expire between the servers).
        _ => {
            const BAD: [&str; 5] = ["0", "-5", "abc", "", "1.5"];
            vec![c("SET"), key, rng.value(), c("PX"), c(BAD[rng.below(5) as usize])]
        }
    }
}

/// `reply` as a RESP2 client sees it: doubles as their shortest text (as the node prints them),
/// pairs flattened.
pub fn as_resp2(reply: &Reply) -> Reply {
    match reply {
        Reply::Double(n) if n.is_infinite() => Reply::Bulk(if *n > 0.0 { b"inf".to_vec() } else { b"-inf".to_vec() }),
        Reply::Double(n) => Reply::Bulk(n.to_string().into_bytes()),
        Reply::Pairs(pairs) => Reply::Array(pairs.iter().flat_map(|(a, b)| [as_resp2(a), as_resp2(b)]).collect()),
        Reply::Array(items) => Reply::Array(items.iter().map(as_resp2).collect()),
        other => other.clone(),
    }
}

/// Whether two replies to `args` agree, allowing for the two servers' clocks: the time left or
/// the expiry time of a key set with a relative time may differ by a few seconds.
pub fn replies_agree(args: &[Vec<u8>], ours: &Reply, theirs: &Reply) -> bool {
    let name = args.first().map(|n| n.to_ascii_uppercase()).unwrap_or_default();
    let tolerance = match name.as_slice() {
        b"TTL" | b"EXPIRETIME" => 5,
        b"PTTL" | b"PEXPIRETIME" => 5000,
        _ => 0,
    };
    let ours = &as_resp2(ours);
    match (ours, theirs) {
        (Reply::Integer(a), Reply::Integer(b)) if *a >= 0 && *b >= 0 => a.abs_diff(*b) <= tolerance,
        // Fields come in hash order here, in insertion order from a small Redis hash: compare
        // them as sets. HGETALL is a map here, a flat array of fields and values from RESP2.
        (Reply::Map(pairs), Reply::Array(flat)) if name == b"HGETALL" => {
            let mut ours: Vec<(Reply, Reply)> = pairs.clone();
            let mut theirs: Vec<(Reply, Reply)> =
                flat.chunks(2).map(|p| (p[0].clone(), p.get(1).cloned().unwrap_or(Reply::Null))).collect();
            ours.sort_by_key(|(k, _)| format!("{k:?}"));
            theirs.sort_by_key(|(k, _)| format!("{k:?}"));
            ours == theirs
        }
        (Reply::Set(a) | Reply::Array(a), Reply::Array(b))
            if matches!(
                name.as_slice(),
                b"HKEYS" | b"HVALS" | b"SMEMBERS" | b"SINTER" | b"SUNION" | b"SDIFF" | b"SPOP"
            ) =>
        {
            let (mut a, mut b) = (a.clone(), b.clone());
            a.sort_by_key(|r| format!("{r:?}"));
            b.sort_by_key(|r| format!("{r:?}"));
            a == b
        }
        _ => ours == theirs,
    }
}
