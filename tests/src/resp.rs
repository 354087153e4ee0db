//! Talking RESP to a node: `redis` crate connections with timeouts, commands whose error replies
//! come back as values (not `Err`), a compact rendering of replies for assertions, and a raw TCP
//! connection that reads whole replies byte for byte (for inline commands and malformed input).

use redis::{ConnectionAddr, ConnectionLike, IntoConnectionInfo, ProtocolVersion, RedisConnectionInfo, Value};
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Read and write timeout of every connection the harness opens for a test.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis` crate connection to `addr` speaking `protocol` (RESP3 sends `HELLO 3` first), with
/// [`CLIENT_TIMEOUT`] as connect, read and write timeout. With `set_lib_name` the client also sends
/// `CLIENT SETINFO LIB-NAME/LIB-VER` on connect, as the crate does by default.
pub fn connect(
    addr: SocketAddr,
    protocol: ProtocolVersion,
    set_lib_name: bool,
) -> redis::RedisResult<redis::Connection> {
    connect_with_timeout(addr, protocol, set_lib_name, CLIENT_TIMEOUT)
}

/// [`connect`] with another timeout (for commands that may take long, such as `JOIN`).
pub fn connect_with_timeout(
    addr: SocketAddr,
    protocol: ProtocolVersion,
    set_lib_name: bool,
    timeout: Duration,
) -> redis::RedisResult<redis::Connection> {
    connect_as(addr, protocol, set_lib_name, timeout, None)
}

/// [`connect_with_timeout`] authenticated as `(user, password)`: the client sends `AUTH user
/// password` (RESP2) or `HELLO 3 AUTH user password` (RESP3) first.
pub fn connect_as(
    addr: SocketAddr,
    protocol: ProtocolVersion,
    set_lib_name: bool,
    timeout: Duration,
    credentials: Option<(&str, &str)>,
) -> redis::RedisResult<redis::Connection> {
    let mut settings = RedisConnectionInfo::default().set_protocol(protocol);
    if let Some((user, password)) = credentials {
        settings = settings.set_username(user).set_password(password);
    }
    if !set_lib_name {
        settings = settings.set_skip_set_lib_name();
    }
    let info =
        ConnectionAddr::Tcp(addr.ip().to_string(), addr.port()).into_connection_info()?.set_redis_settings(settings);
    let con = redis::Client::open(info)?.get_connection_with_timeout(timeout)?;
    con.set_read_timeout(Some(timeout))?;
    con.set_write_timeout(Some(timeout))?;
    Ok(con)
}

/// Builds the command `args[0] args[1..]`.
pub fn command<A: AsRef<[u8]>>(args: &[A]) -> redis::Cmd {
    let (name, rest) = args.split_first().expect("a command has a name");
    let mut cmd = redis::cmd(&String::from_utf8_lossy(name.as_ref()));
    for arg in rest {
        cmd.arg(arg.as_ref());
    }
    cmd
}

/// Sends one command and returns its reply; an error reply is `Ok(Value::ServerError)`, only
/// I/O and parse failures are `Err`.
pub fn try_call<A: AsRef<[u8]>>(con: &mut redis::Connection, args: &[A]) -> redis::RedisResult<Value> {
    con.req_packed_command(&command(args).get_packed_command())
}

/// [`try_call`] that panics on an I/O failure, naming the command.
pub fn call<A: AsRef<[u8]>>(con: &mut redis::Connection, args: &[A]) -> Value {
    try_call(con, args).unwrap_or_else(|e| panic!("{}: {e}", show_args(args)))
}

/// [`call`], rendered with [`show`].
pub fn call_show<A: AsRef<[u8]>>(con: &mut redis::Connection, args: &[A]) -> String {
    show(&call(con, args))
}

/// Sends `commands` as one pipeline (one write) and returns every reply in order, error replies
/// included as values.
pub fn pipeline(con: &mut redis::Connection, commands: &[redis::Cmd]) -> redis::RedisResult<Vec<Value>> {
    let mut packed = Vec::new();
    for cmd in commands {
        cmd.write_packed_command(&mut packed);
    }
    con.req_packed_commands(&packed, 0, commands.len())
}

/// The arguments of a command as one line, for messages.
pub fn show_args<A: AsRef<[u8]>>(args: &[A]) -> String {
    args.iter().map(|a| String::from_utf8_lossy(a.as_ref()).into_owned()).collect::<Vec<_>>().join(" ")
}

/// A compact, unambiguous rendering of a reply, for assertions and messages:
///
/// | reply | rendering |
/// |---|---|
/// | simple string / `OK` | `+OK` |
/// | error | `-ERR wrong number of arguments for 'get' command` |
/// | integer | `:42` |
/// | bulk string | `$value` (lossy UTF-8) |
/// | null (RESP2 null bulk or array, RESP3 null) | `(nil)` |
/// | array / set / push | `*[a, b]` / `~[a, b]` / `>[a, b]` |
/// | map | `%{k: v, k2: v2}` |
/// | double / boolean / big number | `,1.5` / `#t` / `(123` |
/// | verbatim string | `=txt:text` |
pub fn show(value: &Value) -> String {
    fn list(prefix: &str, items: &[Value]) -> String {
        format!("{prefix}[{}]", items.iter().map(show).collect::<Vec<_>>().join(", "))
    }
    match value {
        Value::Nil => "(nil)".into(),
        Value::Int(i) => format!(":{i}"),
        Value::BulkString(b) => format!("${}", String::from_utf8_lossy(b)),
        Value::Array(items) => list("*", items),
        Value::SimpleString(s) => format!("+{s}"),
        Value::Okay => "+OK".into(),
        Value::Map(pairs) => format!(
            "%{{{}}}",
            pairs.iter().map(|(k, v)| format!("{}: {}", show(k), show(v))).collect::<Vec<_>>().join(", ")
        ),
        Value::Attribute { data, .. } => show(data),
        Value::Set(items) => list("~", items),
        Value::Double(d) => format!(",{d}"),
        Value::Boolean(b) => if *b { "#t" } else { "#f" }.into(),
        Value::VerbatimString { format, text } => format!("={format}:{text}"),
        Value::BigNumber(n) => format!("({n:?}"),
        Value::Push { kind, data } => format!(">{kind:?}{}", list("", data)),
        Value::ServerError(e) => match e.details() {
            Some(details) => format!("-{} {details}", e.code()),
            None => format!("-{}", e.code()),
        },
        _ => format!("{value:?}"),
    }
}

/// The text of a string-like reply (simple, bulk or verbatim string), else `None`.
pub fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Okay => Some("OK".into()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

/// A plain TCP connection that sends raw bytes and reads whole RESP replies as raw bytes.
pub struct RawConn {
    reader: BufReader<TcpStream>,
}

impl RawConn {
    /// Connects with [`CLIENT_TIMEOUT`] as connect, read and write timeout.
    pub fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT)?;
        stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
        stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(RawConn { reader: BufReader::new(stream) })
    }

    /// The socket, e.g. to change its timeouts.
    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    /// Writes all of `bytes`.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.reader.get_mut().write_all(bytes)
    }

    /// Reads one complete reply (nested aggregates included) and returns its bytes exactly as
    /// received. End of stream before a complete reply is `UnexpectedEof`.
    pub fn read_reply(&mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        read_reply_into(&mut self.reader, &mut out)?;
        Ok(out)
    }

    /// Sends `bytes` and reads one reply; panics on an I/O error, naming the request.
    pub fn request(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.send(bytes).unwrap_or_else(|e| panic!("send {:?}: {e}", String::from_utf8_lossy(bytes)));
        self.read_reply().unwrap_or_else(|e| panic!("reply to {:?}: {e}", String::from_utf8_lossy(bytes)))
    }

    /// [`RawConn::request`] with the reply as (lossy) text, for `assert_eq!` with readable diffs.
    pub fn request_text(&mut self, bytes: &[u8]) -> String {
        String::from_utf8_lossy(&self.request(bytes)).into_owned()
    }

    /// Whether the server closed the connection: reads until end of stream (or a reset) and
    /// returns `Ok(())`, or `Err` describing what came instead (more bytes, or nothing before the
    /// read timeout).
    pub fn check_closed(&mut self) -> Result<(), String> {
        let mut extra = Vec::new();
        match self.reader.read_to_end(&mut extra) {
            Ok(_) if extra.is_empty() => Ok(()),
            Ok(_) => Err(format!("the server sent {:?} and then closed", String::from_utf8_lossy(&extra))),
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => {
                if extra.is_empty() {
                    Ok(())
                } else {
                    Err(format!("the server sent {:?} before resetting", String::from_utf8_lossy(&extra)))
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Err(format!(
                "the connection is still open after {:?} (received {:?} meanwhile)",
                self.stream().read_timeout().ok().flatten(),
                String::from_utf8_lossy(&extra)
            )),
            Err(e) => Err(format!("reading after the reply failed: {e}")),
        }
    }

    /// Panics unless the server closed the connection (see [`RawConn::check_closed`]).
    pub fn expect_closed(&mut self) {
        if let Err(e) = self.check_closed() {
            panic!("expected the server to close the connection: {e}");
        }
    }
}

/// Reads one RESP2/RESP3 reply from `reader`, appending its raw bytes to `out`.
pub fn read_reply_into(reader: &mut impl BufRead, out: &mut Vec<u8>) -> io::Result<()> {
    let start = out.len();
    let n = reader.read_until(b'\n', out)?;
    if n == 0 || out.last() != Some(&b'\n') {
        return Err(io::Error::new(
            ErrorKind::UnexpectedEof,
            format!("connection closed inside a reply (got {:?})", String::from_utf8_lossy(&out[start..])),
        ));
    }
    let line = String::from_utf8_lossy(&out[start..]).trim_end_matches(['\r', '\n']).to_owned();
    let (kind, rest) = line.split_at(line.chars().next().map_or(0, char::len_utf8));
    let number = || -> io::Result<i64> {
        rest.parse().map_err(|_| io::Error::new(ErrorKind::InvalidData, format!("bad length in reply line {line:?}")))
    };
    match kind {
        "+" | "-" | ":" | "_" | "#" | "," | "(" => Ok(()),
        "$" | "=" | "!" => {
            let len = number()?;
            if len < 0 {
                return Ok(());
            }
            let len = usize::try_from(len).map_err(|e| io::Error::new(ErrorKind::InvalidData, e))?;
            let mut body = vec![0; len + 2];
            reader.read_exact(&mut body)?;
            out.extend_from_slice(&body);
            Ok(())
        }
        "*" | "~" | ">" | "%" | "|" => {
            let count = number()?;
            let items = if matches!(kind, "%" | "|") { count.saturating_mul(2) } else { count };
            for _ in 0..items.max(0) {
                read_reply_into(reader, out)?;
            }
            // An attribute precedes the reply it annotates.
            if kind == "|" {
                read_reply_into(reader, out)?;
            }
            Ok(())
        }
        _ => Err(io::Error::new(ErrorKind::InvalidData, format!("not a RESP reply line: {line:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8]) -> Vec<String> {
        let mut reader = BufReader::new(bytes);
        let mut replies = Vec::new();
        while !reader.fill_buf().expect("fill").is_empty() {
            let mut out = Vec::new();
            read_reply_into(&mut reader, &mut out).expect("reply");
            replies.push(String::from_utf8(out).expect("utf8"));
        }
        replies
    }

    #[test]
    fn raw_replies_are_split_whole() {
        let stream = b"+OK\r\n-ERR x y\r\n:5\r\n$3\r\na\r\n\r\n$-1\r\n*2\r\n$1\r\na\r\n*1\r\n:1\r\n*-1\r\n\
                       %1\r\n+k\r\n$1\r\nv\r\n_\r\n#t\r\n,1.5\r\n=7\r\ntxt:abc\r\n|1\r\n+a\r\n+b\r\n:2\r\n";
        assert_eq!(
            read_all(stream),
            [
                "+OK\r\n",
                "-ERR x y\r\n",
                ":5\r\n",
                "$3\r\na\r\n\r\n",
                "$-1\r\n",
                "*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
                "*-1\r\n",
                "%1\r\n+k\r\n$1\r\nv\r\n",
                "_\r\n",
                "#t\r\n",
                ",1.5\r\n",
                "=7\r\ntxt:abc\r\n",
                "|1\r\n+a\r\n+b\r\n:2\r\n",
            ]
        );
    }

    #[test]
    fn a_cut_reply_is_unexpected_eof() {
        for cut in [&b"+OK"[..], b"$5\r\nab", b"*2\r\n:1\r\n", b""] {
            let mut out = Vec::new();
            let e = read_reply_into(&mut BufReader::new(cut), &mut out).expect_err("cut");
            assert_eq!(e.kind(), ErrorKind::UnexpectedEof, "{cut:?}: {e}");
        }
        let mut out = Vec::new();
        let e = read_reply_into(&mut BufReader::new(&b"?what\r\n"[..]), &mut out).expect_err("bad type");
        assert_eq!(e.kind(), ErrorKind::InvalidData);
    }

    #[test]
    fn values_render_compactly() {
        let parse = |bytes: &[u8]| redis::parse_redis_value(bytes).expect("parse");
        assert_eq!(show(&parse(b"+OK\r\n")), "+OK");
        assert_eq!(show(&parse(b"+PONG\r\n")), "+PONG");
        assert_eq!(
            show(&parse(b"-ERR unknown command 'FOO', with args beginning with: 'bar' \r\n")),
            "-ERR unknown command 'FOO', with args beginning with: 'bar' "
        );
        assert_eq!(show(&parse(b"-MOVED 0 127.0.0.1:7001\r\n")), "-MOVED 0 127.0.0.1:7001");
        assert_eq!(show(&parse(b"-CLUSTERDOWN No raft leader\r\n")), "-CLUSTERDOWN No raft leader");
        assert_eq!(show(&parse(b"-NOCLUSTER No Raft Cluster\r\n")), "-NOCLUSTER No Raft Cluster");
        assert_eq!(show(&parse(b"-ERR\r\n")), "-ERR");
        assert_eq!(show(&parse(b":-3\r\n")), ":-3");
        assert_eq!(show(&parse(b"$-1\r\n")), "(nil)");
        assert_eq!(show(&parse(b"_\r\n")), "(nil)");
        assert_eq!(show(&parse(b"*3\r\n$1\r\n1\r\n$-1\r\n:2\r\n")), "*[$1, (nil), :2]");
        assert_eq!(show(&parse(b"%1\r\n$6\r\nserver\r\n$5\r\nredis\r\n")), "%{$server: $redis}");
        assert_eq!(text(&parse(b"=7\r\ntxt:abc\r\n")).as_deref(), Some("abc"));
        assert_eq!(show_args(&["SET", "k", "v"]), "SET k v");
        let packed = command(&["SET", "k", "v w"]).get_packed_command();
        assert_eq!(packed, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv w\r\n");
    }
}
