//! Real Redis as the reply oracle: the same seeded random command log goes to a real
//! `redis-server` (Debian's 7.0, started on a free loopback port) and to fsm-kv under the wasm
//! runtime; every reply must be identical — type, value and error text — except the time left on
//! keys set with a relative expiry, which may differ by the few seconds between the two servers'
//! clocks ([`support::replies_agree`]).
//!
//! `make test` installs `redis-server`; set `REDIS_SERVER` to use another binary.

mod support;

use fsm_sdk::Reply;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{Dialect, Rng, random_command};

const COMMANDS: usize = 20_000;
const PIPELINE: usize = 500;

/// A `redis-server` child process, killed when dropped.
struct RedisServer {
    child: Child,
    port: u16,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RedisServer {
    fn start() -> Self {
        let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        // The texts compared are Redis 7's (`SET ... GET` needs 6.2; unknown-command quoting
        // changed in 7.0): refuse an older oracle with a clear message rather than a diff.
        let version = Command::new(&binary)
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("cannot run `{binary}` ({e}): install redis-server (`make test` does)"));
        let version = String::from_utf8_lossy(&version.stdout).into_owned();
        let major = version
            .split_whitespace()
            .find_map(|w| w.strip_prefix("v="))
            .and_then(|v| v.split('.').next()?.parse::<u32>().ok());
        assert!(major.is_some_and(|m| m >= 7), "the oracle must be redis-server 7 or later, found: {version}");
        // Ask the OS for a free loopback port, then hand it to redis-server.
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let child = Command::new(&binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{binary}` ({e}): install redis-server (`make test` does)"));
        RedisServer { child, port }
    }

    /// Connects, retrying until the server listens or the deadline passes.
    fn connect(&mut self) -> TcpStream {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match TcpStream::connect(("127.0.0.1", self.port)) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
                    return stream;
                }
                Err(e) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        panic!("redis-server exited before listening: {status}");
                    }
                    assert!(Instant::now() < deadline, "redis-server did not listen on {} in 10 s: {e}", self.port);
                    std::thread::yield_now();
                }
            }
        }
    }
}

fn write_command(out: &mut Vec<u8>, args: &[Vec<u8>]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

fn read_line(r: &mut impl BufRead) -> String {
    let mut line = String::new();
    r.read_line(&mut line).expect("read reply line");
    assert!(line.ends_with("\r\n"), "truncated reply line {line:?}");
    line.truncate(line.len() - 2);
    line
}

/// Parses one RESP2 reply into the SDK's reply type.
fn read_reply(r: &mut impl BufRead) -> Reply {
    let line = read_line(r);
    let (kind, rest) = line.split_at(1);
    let number = || rest.parse::<i64>().expect("number in reply");
    match kind {
        "+" => Reply::Simple(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Integer(number()),
        "$" if number() < 0 => Reply::Null,
        "$" => {
            let mut data = vec![0; number() as usize + 2];
            r.read_exact(&mut data).expect("bulk");
            data.truncate(data.len() - 2);
            Reply::Bulk(data)
        }
        "*" if number() < 0 => Reply::Null,
        "*" => Reply::Array((0..number()).map(|_| read_reply(r)).collect()),
        other => panic!("unexpected reply type {other:?}"),
    }
}

/// Sends `log` to a real redis-server and to `kv`, pipelined, and checks every reply.
fn replies_exactly_as_redis_does(mut kv: support::Kv, log: &[Vec<Vec<u8>>]) {
    let mut server = RedisServer::start();
    let stream = server.connect();
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    let mut checked = 0;
    for chunk in log.chunks(PIPELINE) {
        let mut out = Vec::new();
        for args in chunk {
            write_command(&mut out, args);
        }
        writer.write_all(&out).expect("send");
        for args in chunk {
            let expected = read_reply(&mut reader);
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let got = kv.call_bytes(&refs);
            let shown: Vec<String> = args.iter().map(|a| String::from_utf8_lossy(a).into_owned()).collect();
            assert!(
                support::replies_agree(args, &got, &expected),
                "command #{checked}: {shown:?}: fsm-kv replied {got:?}, redis-server {expected:?}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, log.len());
}

#[test]
fn fsm_kv_replies_exactly_as_redis_does() {
    let mut rng = Rng(0x0ac1e);
    let log: Vec<Vec<Vec<u8>>> = (0..COMMANDS).map(|_| random_command(&mut rng, Dialect::Redis)).collect();
    replies_exactly_as_redis_does(support::backends().remove(0), &log);
}

#[test]
fn fsm_kv_v2_replies_exactly_as_redis_does() {
    let mut rng = Rng(0x0000_ac1e_0002);
    let log: Vec<Vec<Vec<u8>>> = (0..COMMANDS).map(|_| support::random_v2_command(&mut rng)).collect();
    replies_exactly_as_redis_does(support::in_memory(support::v2_module()), &log);
}
