//! [`Reply`]: a RESP-shaped value, so the host can encode it for RESP2 or RESP3 without knowing
//! the module, plus Redis's exact texts for the errors most commands need.

/// A command's reply. The variants are the RESP types every Redis client understands.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A status line (`+OK`). CR and LF become spaces on the way to the host.
    Simple(String),
    /// An error, starting with its code (`ERR ...`, `WRONGTYPE ...`). It also tells the host to
    /// discard the command's writes. CR and LF become spaces on the way to the host.
    Error(String),
    /// A signed 64-bit integer.
    Integer(i64),
    /// A binary-safe string.
    Bulk(Vec<u8>),
    /// No value (RESP2 `$-1`, RESP3 `_`).
    Null,
    /// An array of replies.
    Array(Vec<Reply>),
    /// Key-value pairs, in order (`HGETALL`): a RESP3 map, or a flat array of keys and values in
    /// RESP2.
    Map(Vec<(Reply, Reply)>),
    /// Members without duplicates (`SMEMBERS`): a RESP3 set, or an array in RESP2.
    Set(Vec<Reply>),
    /// A floating-point number (a sorted set's score): a RESP3 double, or its shortest text as a
    /// bulk string in RESP2.
    Double(f64),
    /// Pairs (`ZRANGE … WITHSCORES`): an array of two-element arrays in RESP3, a flat array of
    /// both in RESP2, as Redis 7 answers them.
    Pairs(Vec<(Reply, Reply)>),
}

impl Reply {
    /// `+OK`.
    pub fn ok() -> Self {
        Reply::Simple("OK".to_owned())
    }

    /// An error reply; `text` starts with the error code, as in `"ERR syntax error"`.
    pub fn error(text: impl Into<String>) -> Self {
        Reply::Error(text.into())
    }

    /// Whether this is an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// `ERR wrong number of arguments for '<name>' command` (Redis's text; `name` lower-case).
    pub fn wrong_arity(name: &str) -> Self {
        Reply::Error(format!("ERR wrong number of arguments for '{name}' command"))
    }

    /// `ERR syntax error`.
    pub fn syntax_error() -> Self {
        Reply::error("ERR syntax error")
    }

    /// `ERR value is not an integer or out of range`.
    pub fn not_an_integer() -> Self {
        Reply::error("ERR value is not an integer or out of range")
    }

    /// `ERR increment or decrement would overflow`.
    pub fn overflow() -> Self {
        Reply::error("ERR increment or decrement would overflow")
    }

    /// A bulk string, or null when absent: the reply of `GET` and friends.
    pub fn bulk_or_null(value: Option<Vec<u8>>) -> Self {
        value.map_or(Reply::Null, Reply::Bulk)
    }
}
