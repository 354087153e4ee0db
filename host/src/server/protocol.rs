//! The Redis wire protocol: requests in, replies out.
//!
//! **Requests** are parsed by our own code ([`parse_request`]) because it must behave like Redis 7's
//! `processMultibulkBuffer` / `processInlineBuffer` (networking.c), which `redis-protocol` does not
//! offer: inline commands split like `sdssplitargs`, the size caps of [`ProtocolLimits`], and
//! Redis's exact error texts. The parser never allocates what a client merely *declares*; it waits
//! for the bytes, then hands the arguments out as zero-copy slices of the read buffer.
//!
//! One deliberate difference: Redis applies its "too big" line checks only when a read ends
//! without the line's terminator, so whether a long line is refused depends on how the bytes
//! happened to arrive. Here a line is refused exactly when Redis would refuse it had the bytes
//! arrived one at a time, so the outcome does not depend on read boundaries.
//!
//! **Replies** ([`Response`]) are RESP3-shaped and encoded for the connection's [`Protocol`] by
//! [`encode`], downgrading the RESP3-only types on RESP2 the way Redis does.

use std::borrow::Cow;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use redis_protocol::{resp2, resp3};

/// Caps on what one client may send, so a client cannot make the server buffer without bound.
/// Redis's defaults are in brackets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolLimits {
    /// Longest inline request line, and longest `*<n>` / `$<len>` header line [64 KiB].
    pub inline_bytes_max: usize,
    /// Largest single argument (`proto-max-bulk-len`) [512 MiB].
    pub bulk_bytes_max: usize,
    /// Largest whole request, headers included [1 GiB, Redis's `client-query-buffer-limit`].
    pub request_bytes_max: usize,
    /// Most arguments in one multibulk request [Redis 6: 1024 * 1024].
    pub args_max: usize,
}

impl Default for ProtocolLimits {
    /// Redis's defaults.
    fn default() -> Self {
        Self {
            inline_bytes_max: 64 * 1024,
            bulk_bytes_max: 512 * 1024 * 1024,
            request_bytes_max: 1024 * 1024 * 1024,
            args_max: 1024 * 1024,
        }
    }
}

/// A protocol error: the server replies `-` followed by this text, then closes the connection
/// (the stream can no longer be framed, so nothing after it can be trusted).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ProtocolError(pub String);

impl ProtocolError {
    fn new(text: &str) -> Self {
        Self(text.to_owned())
    }
}

const INVALID_MULTIBULK_LENGTH: &str = "ERR Protocol error: invalid multibulk length";
const TOO_BIG_MBULK_COUNT: &str = "ERR Protocol error: too big mbulk count string";
const INVALID_BULK_LENGTH: &str = "ERR Protocol error: invalid bulk length";
const TOO_BIG_BULK_COUNT: &str = "ERR Protocol error: too big bulk count string";
const TOO_BIG_INLINE: &str = "ERR Protocol error: too big inline request";
const UNBALANCED_QUOTES: &str = "ERR Protocol error: unbalanced quotes in request";
const TOO_BIG_REQUEST: &str = "ERR Protocol error: request exceeds request_bytes_max";

/// Parses one request from the front of `buf` and consumes its bytes.
///
/// `Ok(None)`: the request is incomplete; read more and call again (nothing was consumed).
/// `Ok(Some(args))`: one request; `args` is empty for an empty inline line, `*0` or `*-1`, which
/// the caller skips as Redis does. `Err`: reply with the error and close the connection.
///
/// A request starting with `*` is multibulk (`*<n>\r\n` then `n` times `$<len>\r\n<bytes>\r\n`),
/// anything else is an inline command line. Multibulk arguments are slices of `buf`'s memory.
///
/// Each call re-reads the headers of a request still arriving (not its payload bytes), so the
/// cost of a call is proportional to the number of arguments received so far.
pub fn parse_request(buf: &mut BytesMut, limits: &ProtocolLimits) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_multibulk(buf, limits),
        Some(_) => parse_inline(buf, limits),
    }
}

/// Whether a request is an HTTP request sent to the Redis port (a "cross protocol scripting"
/// attack, e.g. a browser tricked into POSTing to localhost:6379): the caller must close the
/// connection without replying. Like Redis 7 (`processCommand`), this looks at the first argument
/// of any request, inline or multibulk, ignoring case: `POST` or `Host:`.
pub fn is_http_probe(args: &[Bytes]) -> bool {
    args.first().is_some_and(|first| first.eq_ignore_ascii_case(b"post") || first.eq_ignore_ascii_case(b"host:"))
}

/// Finds `byte` in `buf[from..]`, looking at no more than `max + 1` bytes: a line longer than
/// `max` is refused with `too_big` (as Redis would refuse it had it arrived byte by byte).
fn find_line_end(buf: &[u8], from: usize, max: usize, byte: u8, too_big: &str) -> Result<Option<usize>, ProtocolError> {
    let rest = buf.get(from..).unwrap_or_default();
    let window = &rest[..rest.len().min(max.saturating_add(1))];
    match window.iter().position(|&b| b == byte) {
        Some(at) => Ok(Some(from + at)),
        None if rest.len() > max => Err(ProtocolError::new(too_big)),
        None => Ok(None),
    }
}

/// Redis's `string2ll`: an optional `-` then decimal digits, no leading zeros (so `-0` is
/// refused), no sign `+`, no spaces, at most 20 characters, within `i64`.
fn string2ll(text: &[u8]) -> Option<i64> {
    if text.is_empty() || text.len() > 20 {
        return None;
    }
    if text == b"0" {
        return Some(0);
    }
    let (negative, digits) = match text.split_first() {
        Some((b'-', digits)) => (true, digits),
        _ => (false, text),
    };
    if !matches!(digits.first(), Some(b'1'..=b'9')) {
        return None;
    }
    let mut value: u64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))?;
    }
    if negative { 0i64.checked_sub_unsigned(value) } else { i64::try_from(value).ok() }
}

fn parse_multibulk(buf: &mut BytesMut, limits: &ProtocolLimits) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    // `*<n>\r`, and the byte after `\r` must be there (Redis skips it without looking at it).
    let Some(cr) = find_line_end(buf, 0, limits.inline_bytes_max, b'\r', TOO_BIG_MBULK_COUNT)? else {
        return Ok(None);
    };
    if cr + 1 >= buf.len() {
        return Ok(None);
    }
    let args_max = i64::try_from(limits.args_max).unwrap_or(i64::MAX);
    let count = match string2ll(&buf[1..cr]) {
        Some(count) if count <= args_max => count,
        _ => return Err(ProtocolError::new(INVALID_MULTIBULK_LENGTH)),
    };
    let header_end = cr + 2;
    if header_end > limits.request_bytes_max {
        return Err(ProtocolError::new(TOO_BIG_REQUEST));
    }
    let Ok(count) = usize::try_from(count) else {
        // A negative count: an empty request, as in Redis.
        buf.advance(header_end);
        return Ok(Some(Vec::new()));
    };
    if count == 0 {
        buf.advance(header_end);
        return Ok(Some(Vec::new()));
    }

    // First pass: validate and find the end, without keeping anything. Only once the whole
    // request is here is memory taken for it (bounded by the bytes received, never by `count`).
    let Some(end) = walk_bulks(buf, header_end, count, limits, |_, _| {})? else {
        return Ok(None);
    };
    let request = buf.split_to(end).freeze();
    let mut args = Vec::with_capacity(count);
    walk_bulks(&request, header_end, count, limits, |start, len| {
        args.push(request.slice(start..start + len));
    })?;
    Ok(Some(args))
}

/// Walks `count` elements `$<len>\r\n<bytes>\r\n` from `pos`, calling `on_arg(start, len)` for
/// each; returns where the request ends, or `None` if it is incomplete.
fn walk_bulks(
    buf: &[u8],
    mut pos: usize,
    count: usize,
    limits: &ProtocolLimits,
    mut on_arg: impl FnMut(usize, usize),
) -> Result<Option<usize>, ProtocolError> {
    for _ in 0..count {
        let Some(cr) = find_line_end(buf, pos, limits.inline_bytes_max, b'\r', TOO_BIG_BULK_COUNT)? else {
            return Ok(None);
        };
        if cr + 1 >= buf.len() {
            return Ok(None);
        }
        match buf.get(pos) {
            Some(b'$') => {}
            // Redis formats the byte with `%c`; a byte above 0x7f becomes its Latin-1 character.
            Some(&other) => {
                return Err(ProtocolError(format!("ERR Protocol error: expected '$', got '{}'", char::from(other))));
            }
            None => return Ok(None),
        }
        let len = string2ll(&buf[pos + 1..cr])
            .and_then(|len| usize::try_from(len).ok())
            .filter(|&len| len <= limits.bulk_bytes_max)
            .ok_or_else(|| ProtocolError::new(INVALID_BULK_LENGTH))?;
        let start = cr + 2;
        // Redis skips the two bytes after the payload without checking they are `\r\n`.
        let end = start
            .checked_add(len)
            .and_then(|end| end.checked_add(2))
            .filter(|&end| end <= limits.request_bytes_max)
            .ok_or_else(|| ProtocolError::new(TOO_BIG_REQUEST))?;
        if buf.len() < end {
            return Ok(None);
        }
        on_arg(start, len);
        pos = end;
    }
    Ok(Some(pos))
}

fn parse_inline(buf: &mut BytesMut, limits: &ProtocolLimits) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    let Some(newline) = find_line_end(buf, 0, limits.inline_bytes_max, b'\n', TOO_BIG_INLINE)? else {
        return Ok(None);
    };
    if newline >= limits.request_bytes_max {
        return Err(ProtocolError::new(TOO_BIG_REQUEST));
    }
    let line_end = match newline.checked_sub(1) {
        Some(before) if buf[before] == b'\r' => before,
        _ => newline,
    };
    let args = split_args(&buf[..line_end]).ok_or_else(|| ProtocolError::new(UNBALANCED_QUOTES))?;
    buf.advance(newline + 1);
    Ok(Some(args))
}

/// C's `isspace` in the "C" locale.
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn hex_value(byte: Option<&u8>) -> Option<u8> {
    byte.and_then(|&b| char::from(b).to_digit(16)).and_then(|v| u8::try_from(v).ok())
}

/// Redis's `sdssplitargs`: arguments separated by whitespace; `"..."` with the escapes `\n \r \t
/// \b \a \xHH` (any other escaped byte stands for itself); `'...'` where only `\'` is an escape;
/// a closing quote must be followed by whitespace or the end. `None`: unbalanced quotes.
///
/// Unlike Redis, which handles the line as a C string, a NUL byte is an ordinary byte here.
fn split_args(line: &[u8]) -> Option<Vec<Bytes>> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while line.get(i).is_some_and(|&b| is_space(b)) {
            i += 1;
        }
        if i >= line.len() {
            return Some(args);
        }
        let mut current = Vec::new();
        let (mut in_double, mut in_single) = (false, false);
        loop {
            let byte = line.get(i).copied();
            if in_double {
                match byte {
                    None => return None,
                    Some(b'\\') if line.get(i + 1) == Some(&b'x') => {
                        match (hex_value(line.get(i + 2)), hex_value(line.get(i + 3))) {
                            (Some(high), Some(low)) => {
                                current.push(high * 16 + low);
                                i += 3;
                            }
                            _ => {
                                current.push(b'x');
                                i += 1;
                            }
                        }
                    }
                    Some(b'\\') if i + 1 < line.len() => {
                        i += 1;
                        current.push(match line[i] {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 0x08,
                            b'a' => 0x07,
                            other => other,
                        });
                    }
                    Some(b'"') => {
                        if line.get(i + 1).is_some_and(|&b| !is_space(b)) {
                            return None;
                        }
                        i += 1;
                        break;
                    }
                    Some(other) => current.push(other),
                }
            } else if in_single {
                match byte {
                    None => return None,
                    Some(b'\\') if line.get(i + 1) == Some(&b'\'') => {
                        current.push(b'\'');
                        i += 1;
                    }
                    Some(b'\'') => {
                        if line.get(i + 1).is_some_and(|&b| !is_space(b)) {
                            return None;
                        }
                        i += 1;
                        break;
                    }
                    Some(other) => current.push(other),
                }
            } else {
                match byte {
                    // Only these four end a bare word (not \v or \f, which `isspace` skips).
                    None => break,
                    Some(b' ' | b'\n' | b'\r' | b'\t') => {
                        i += 1;
                        break;
                    }
                    Some(b'"') => in_double = true,
                    Some(b'\'') => in_single = true,
                    Some(other) => current.push(other),
                }
            }
            i += 1;
        }
        args.push(Bytes::from(current));
    }
}

/// Protocol version of a connection, chosen by `HELLO` (every connection starts on RESP2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// RESP2, what every client speaks.
    #[default]
    Resp2,
    /// RESP3, with maps, sets, booleans, doubles, verbatim strings and a distinct null.
    Resp3,
}

/// The format tag of a verbatim string, telling a client how to display it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerbatimFormat {
    /// `txt`: plain text (what Redis uses, e.g. for `INFO`).
    Text,
    /// `mkd`: markdown.
    Markdown,
}

/// A reply as the server builds it: RESP3-shaped, so one value serves both protocols;
/// [`encode`] downgrades the RESP3-only types on RESP2 connections.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// A status line, as `+OK`. CR and LF become spaces when encoded.
    Simple(String),
    /// An error, with its code: `"ERR syntax error"`. CR and LF become spaces when encoded.
    Error(String),
    /// A signed 64-bit integer.
    Integer(i64),
    /// A binary-safe string.
    Bulk(Bytes),
    /// No value: RESP2 `$-1`, RESP3 `_`.
    Null,
    /// No array: RESP2 `*-1` (what `EXEC` answers when a watched key changed), RESP3 `_`.
    NullArray,
    /// An ordered list of replies.
    Array(Vec<Response>),
    /// Key-value pairs, in order: RESP3 map, RESP2 flat array of keys and values.
    Map(Vec<(Response, Response)>),
    /// RESP3 boolean; RESP2 integer 1 or 0.
    Boolean(bool),
    /// RESP3 double; RESP2 bulk string of the same text.
    Double(f64),
    /// Text meant for humans (`INFO`): RESP3 verbatim string; RESP2 bulk string of the text.
    Verbatim {
        /// How the text is formatted.
        format: VerbatimFormat,
        /// The text.
        text: Bytes,
    },
    /// RESP3 set; RESP2 array.
    Set(Vec<Response>),
    /// Pairs: RESP3 an array of two-element arrays, RESP2 one flat array (`ZRANGE … WITHSCORES`).
    Pairs(Vec<(Response, Response)>),
}

impl Response {
    /// `+OK`, the most common reply.
    pub fn ok() -> Self {
        Response::Simple("OK".to_owned())
    }

    /// An error reply; `text` starts with the error code, as in `"ERR syntax error"`.
    pub fn error(text: impl Into<String>) -> Self {
        Response::Error(text.into())
    }

    /// A bulk string, from anything that converts to `Bytes` without copying where it can.
    pub fn bulk(bytes: impl Into<Bytes>) -> Self {
        Response::Bulk(bytes.into())
    }
}

/// A state machine's reply becomes a server reply (moving bulk strings, never copying them).
impl From<fsm_sdk::Reply> for Response {
    fn from(reply: fsm_sdk::Reply) -> Self {
        match reply {
            fsm_sdk::Reply::Simple(text) => Response::Simple(text),
            fsm_sdk::Reply::Error(text) => Response::Error(text),
            fsm_sdk::Reply::Integer(value) => Response::Integer(value),
            fsm_sdk::Reply::Bulk(bytes) => Response::Bulk(Bytes::from(bytes)),
            fsm_sdk::Reply::Null => Response::Null,
            fsm_sdk::Reply::Array(items) => Response::Array(items.into_iter().map(Response::from).collect()),
            fsm_sdk::Reply::Set(items) => Response::Set(items.into_iter().map(Response::from).collect()),
            fsm_sdk::Reply::Double(value) => Response::Double(value),
            fsm_sdk::Reply::Pairs(pairs) => {
                Response::Pairs(pairs.into_iter().map(|(a, b)| (Response::from(a), Response::from(b))).collect())
            }
            fsm_sdk::Reply::Map(pairs) => {
                Response::Map(pairs.into_iter().map(|(k, v)| (Response::from(k), Response::from(v))).collect())
            }
        }
    }
}

/// Appends the encoding of `reply` under `protocol` to `out`.
///
/// Every scalar goes through `redis-protocol`'s encoders as a borrowed frame (no allocation, no
/// copy of the payload other than into `out`). Aggregate headers (`*n`, `%n`, `~n`) are written
/// here: `redis-protocol` would need the whole reply rebuilt as its own frame tree, and its RESP3
/// map and set are `HashMap`/`HashSet`, which would lose the order of a reply (and of the
/// `HELLO` map), drop duplicate members, and panic when asked to hash an aggregate key.
pub fn encode(reply: &Response, protocol: Protocol, out: &mut BytesMut) {
    match protocol {
        Protocol::Resp2 => encode_resp2(reply, out),
        Protocol::Resp3 => encode_resp3(reply, out),
    }
}

fn encode_resp2(reply: &Response, out: &mut BytesMut) {
    use resp2::types::BorrowedFrame as F;
    let scratch: Cow<'_, str>;
    let frame = match reply {
        Response::Simple(text) => {
            scratch = one_line(text);
            F::SimpleString(scratch.as_bytes())
        }
        Response::Error(text) => {
            scratch = one_line(text);
            F::Error(&scratch)
        }
        Response::Integer(value) => F::Integer(*value),
        Response::Bulk(bytes) => F::BulkString(bytes),
        Response::Null => F::Null,
        Response::NullArray => {
            out.extend_from_slice(b"*-1\r\n");
            return;
        }
        Response::Boolean(value) => F::Integer(i64::from(*value)),
        Response::Double(value) => {
            scratch = double_text(*value);
            F::BulkString(scratch.as_bytes())
        }
        Response::Verbatim { text, .. } => F::BulkString(text),
        Response::Array(items) | Response::Set(items) => {
            aggregate_header(out, b'*', items.len());
            items.iter().for_each(|item| encode_resp2(item, out));
            return;
        }
        Response::Map(pairs) | Response::Pairs(pairs) => {
            aggregate_header(out, b'*', pairs.len().saturating_mul(2));
            for (key, value) in pairs {
                encode_resp2(key, out);
                encode_resp2(value, out);
            }
            return;
        }
    };
    let start = out.len();
    if resp2::encode::extend_encode_borrowed(out, &frame, false).is_err() {
        encoding_failed(out, start);
    }
}

fn encode_resp3(reply: &Response, out: &mut BytesMut) {
    use resp3::types::{BorrowedFrame as F, VerbatimStringFormat};
    let scratch: Cow<'_, str>;
    let frame = match reply {
        Response::Simple(text) => {
            scratch = one_line(text);
            F::SimpleString { data: scratch.as_bytes(), attributes: None }
        }
        Response::Error(text) => {
            scratch = one_line(text);
            F::SimpleError { data: &scratch, attributes: None }
        }
        Response::Integer(value) => F::Number { data: *value, attributes: None },
        Response::Bulk(bytes) => F::BlobString { data: bytes, attributes: None },
        Response::Null | Response::NullArray => F::Null,
        Response::Boolean(value) => F::Boolean { data: *value, attributes: None },
        Response::Double(value) => F::Double { data: *value, attributes: None },
        Response::Verbatim { format, text } => F::VerbatimString {
            data: text,
            format: match format {
                VerbatimFormat::Text => VerbatimStringFormat::Text,
                VerbatimFormat::Markdown => VerbatimStringFormat::Markdown,
            },
            attributes: None,
        },
        Response::Array(items) | Response::Set(items) => {
            let kind = if matches!(reply, Response::Set(_)) { b'~' } else { b'*' };
            aggregate_header(out, kind, items.len());
            items.iter().for_each(|item| encode_resp3(item, out));
            return;
        }
        Response::Map(pairs) => {
            aggregate_header(out, b'%', pairs.len());
            for (key, value) in pairs {
                encode_resp3(key, out);
                encode_resp3(value, out);
            }
            return;
        }
        Response::Pairs(pairs) => {
            aggregate_header(out, b'*', pairs.len());
            for (first, second) in pairs {
                aggregate_header(out, b'*', 2);
                encode_resp3(first, out);
                encode_resp3(second, out);
            }
            return;
        }
    };
    let start = out.len();
    if resp3::encode::complete::extend_encode_borrowed(out, &frame, false).is_err() {
        encoding_failed(out, start);
    }
}

/// `redis-protocol` only fails when its buffer is too small, which `extend_encode*` rules out;
/// should it fail anyway, an error element keeps the stream well-framed.
fn encoding_failed(out: &mut BytesMut, start: usize) {
    out.truncate(start);
    out.put_slice(b"-ERR reply encoding failed\r\n");
}

/// A status or error line cannot contain CR or LF: they would end the line early.
fn one_line(text: &str) -> Cow<'_, str> {
    if text.contains(['\r', '\n']) { Cow::Owned(text.replace(['\r', '\n'], " ")) } else { Cow::Borrowed(text) }
}

/// A double's text, as `redis-protocol` writes a RESP3 double: `inf`, `-inf`, `nan`, else the
/// shortest decimal that reads back as the same value (`1.5`, `3`, `-0`).
fn double_text(value: f64) -> Cow<'static, str> {
    if value.is_nan() {
        Cow::Borrowed(resp3::types::NAN)
    } else if value.is_infinite() {
        Cow::Borrowed(if value.is_sign_negative() { resp3::types::NEG_INFINITY } else { resp3::types::INFINITY })
    } else {
        Cow::Owned(value.to_string())
    }
}

fn aggregate_header(out: &mut BytesMut, kind: u8, len: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = len;
    loop {
        at -= 1;
        // `rest % 10` is below 10, so the cast cannot truncate.
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.reserve(3 + digits.len() - at);
    out.put_u8(kind);
    out.put_slice(&digits[at..]);
    out.put_slice(b"\r\n");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Small caps, so every limit is reachable with short inputs.
    fn small() -> ProtocolLimits {
        ProtocolLimits { inline_bytes_max: 16, bulk_bytes_max: 32, request_bytes_max: 128, args_max: 4 }
    }

    fn args(list: &[&str]) -> Vec<Bytes> {
        list.iter().map(|a| Bytes::copy_from_slice(a.as_bytes())).collect()
    }

    /// What parsing all of `input` yields: the requests, then the error or the bytes left over.
    type Outcome = (Vec<Vec<Bytes>>, Result<usize, ProtocolError>);

    fn parse_whole(input: &[u8], limits: &ProtocolLimits) -> Outcome {
        let mut buf = BytesMut::from(input);
        let mut requests = Vec::new();
        loop {
            let before = buf.len();
            match parse_request(&mut buf, limits) {
                Ok(Some(request)) => {
                    assert!(buf.len() < before, "a request must consume bytes");
                    requests.push(request);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "an incomplete request consumes nothing");
                    return (requests, Ok(buf.len()));
                }
                Err(error) => return (requests, Err(error)),
            }
        }
    }

    fn parse_byte_by_byte(input: &[u8], limits: &ProtocolLimits) -> Outcome {
        let mut buf = BytesMut::new();
        let mut requests = Vec::new();
        for &byte in input {
            buf.put_u8(byte);
            loop {
                match parse_request(&mut buf, limits) {
                    Ok(Some(request)) => requests.push(request),
                    Ok(None) => break,
                    Err(error) => return (requests, Err(error)),
                }
            }
        }
        (requests, Ok(buf.len()))
    }

    /// Parses `input` whole and byte by byte, checks both agree, and returns the outcome.
    fn parse(input: &[u8], limits: &ProtocolLimits) -> Outcome {
        let whole = parse_whole(input, limits);
        assert_eq!(whole, parse_byte_by_byte(input, limits), "input {input:?}");
        whole
    }

    fn one(input: &str) -> Vec<Bytes> {
        one_with(input, &small())
    }

    fn one_with(input: &str, limits: &ProtocolLimits) -> Vec<Bytes> {
        let (mut requests, rest) = parse(input.as_bytes(), limits);
        assert_eq!(rest, Ok(0), "input {input:?}");
        assert_eq!(requests.len(), 1, "input {input:?}");
        requests.remove(0)
    }

    fn error(input: &[u8], limits: &ProtocolLimits) -> String {
        match parse(input, limits).1 {
            Err(ProtocolError(text)) => text,
            Ok(rest) => panic!("{input:?} parsed, leaving {rest} bytes"),
        }
    }

    #[test]
    fn defaults_are_redis_defaults() {
        let limits = ProtocolLimits::default();
        assert_eq!(limits.inline_bytes_max, 65536);
        assert_eq!(limits.bulk_bytes_max, 512 << 20);
        assert_eq!(limits.request_bytes_max, 1 << 30);
        assert_eq!(limits.args_max, 1 << 20);
    }

    #[test]
    fn multibulk_requests_are_binary_safe() {
        assert_eq!(one("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), args(&["GET", "k"]));
        assert_eq!(one("*2\r\n$4\r\na\r\nb\r\n$0\r\n\r\n"), args(&["a\r\nb", ""]));
        let mut buf = BytesMut::from(&b"*1\r\n$3\r\n\0\xff\n\r\n"[..]);
        let request = parse_request(&mut buf, &small()).unwrap().unwrap();
        assert_eq!(request, vec![Bytes::from_static(b"\0\xff\n")]);
    }

    #[test]
    fn multibulk_arguments_share_the_read_buffer() {
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nSET\r\n$5\r\nvalue\r\n"[..]);
        let range = buf.as_ptr_range();
        let request = parse_request(&mut buf, &small()).unwrap().unwrap();
        for arg in &request {
            assert!(range.contains(&arg.as_ptr()), "{arg:?} was copied");
        }
    }

    #[test]
    fn pipelined_requests_come_out_one_at_a_time() {
        let input = b"*1\r\n$4\r\nPING\r\nECHO hi\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPI";
        let mut buf = BytesMut::from(&input[..]);
        let limits = small();
        assert_eq!(parse_request(&mut buf, &limits), Ok(Some(args(&["PING"]))));
        assert!(buf.starts_with(b"ECHO"));
        assert_eq!(parse_request(&mut buf, &limits), Ok(Some(args(&["ECHO", "hi"]))));
        assert_eq!(parse_request(&mut buf, &limits), Ok(Some(args(&["GET", "k"]))));
        assert_eq!(parse_request(&mut buf, &limits), Ok(None));
        assert_eq!(&buf[..], b"*1\r\n$4\r\nPI");
        assert_eq!(parse(input, &limits).0.len(), 3);
    }

    #[test]
    fn empty_requests_are_consumed_and_empty() {
        for input in ["*0\r\n", "*-1\r\n", "*-5\r\n", "\r\n", "\n", " \t \r\n"] {
            assert_eq!(one(input), Vec::<Bytes>::new(), "input {input:?}");
        }
    }

    #[test]
    fn every_strict_prefix_is_incomplete() {
        let input = b"*2\r\n$3\r\nSET\r\n$2\r\nab\r\n";
        for end in 0..input.len() {
            let mut buf = BytesMut::from(&input[..end]);
            assert_eq!(parse_request(&mut buf, &small()), Ok(None), "prefix {end}");
            assert_eq!(buf.len(), end);
        }
        // Redis waits for the `\r` before looking at an element's first byte.
        assert_eq!(parse(b"*1\r\nX", &small()), (vec![], Ok(5)));
    }

    #[test]
    fn like_redis_the_crlf_after_a_line_or_payload_is_skipped_unchecked() {
        assert_eq!(one("*1\r\n$3\r\nfooXY"), args(&["foo"]));
        assert_eq!(one("*1\rX$3\rXfoo\r\n"), args(&["foo"]));
    }

    #[test]
    fn invalid_multibulk_length() {
        let text = "ERR Protocol error: invalid multibulk length";
        for input in ["*\r\n", "*abc\r\n", "*-0\r\n", "*+1\r\n", "*01\r\n", "*1 \r\n", "*5\r\n"] {
            assert_eq!(error(input.as_bytes(), &small()), text, "input {input:?}");
        }
        let overflow = "*99999999999999999999\r\n";
        assert_eq!(error(overflow.as_bytes(), &ProtocolLimits::default()), text);
        assert_eq!(error(b"*1048577\r\n", &ProtocolLimits::default()), text);
        assert_eq!(parse(b"*1048576\r\n", &ProtocolLimits::default()), (vec![], Ok(10)));
    }

    #[test]
    fn too_big_mbulk_count_string() {
        let limits = small();
        let fits = format!("*{}", "1".repeat(15)); // 16 bytes: still waiting for `\r`
        assert_eq!(parse(fits.as_bytes(), &limits), (vec![], Ok(16)));
        let over = format!("*{}", "1".repeat(16));
        assert_eq!(error(over.as_bytes(), &limits), "ERR Protocol error: too big mbulk count string");
    }

    #[test]
    fn expected_dollar() {
        let limits = small();
        let text = |c: &str| format!("ERR Protocol error: expected '$', got '{c}'");
        assert_eq!(error(b"*1\r\n:1\r\n", &limits), text(":"));
        assert_eq!(error(b"*2\r\n$1\r\na\r\n*1\r\n", &limits), text("*"));
        assert_eq!(error(b"*1\r\n\r\n", &limits), text("\r"));
        assert_eq!(error(b"*1\r\n\xff\r\n", &limits), text("\u{ff}"));
    }

    #[test]
    fn invalid_bulk_length() {
        let text = "ERR Protocol error: invalid bulk length";
        for input in ["$\r\n", "$abc\r\n", "$-1\r\n", "$-0\r\n", "$+1\r\n", "$01\r\n", "$33\r\n"] {
            let request = format!("*1\r\n{input}");
            assert_eq!(error(request.as_bytes(), &small()), text, "input {input:?}");
        }
        assert_eq!(one("*1\r\n$32\r\n01234567890123456789012345678901\r\n").len(), 1);
        let over = b"*1\r\n$536870913\r\n";
        assert_eq!(error(over, &ProtocolLimits::default()), text);
    }

    #[test]
    fn too_big_bulk_count_string() {
        let limits = small();
        let fits = format!("*1\r\n${}", "1".repeat(15));
        assert_eq!(parse(fits.as_bytes(), &limits), (vec![], Ok(20)));
        let over = format!("*1\r\n${}", "1".repeat(16));
        assert_eq!(error(over.as_bytes(), &limits), "ERR Protocol error: too big bulk count string");
    }

    #[test]
    fn a_request_above_its_cap_is_refused_before_its_payload_arrives() {
        let limits = small();
        let element = format!("$32\r\n{}\r\n", "x".repeat(32)); // 39 bytes
        let three = format!("*4\r\n{}", element.repeat(3)); // 121 bytes
        assert_eq!(parse(three.as_bytes(), &limits), (vec![], Ok(121)));
        let header = format!("{three}$2\r\n"); // 121 + 4 + 2 + 2 = 129 > 128
        let text = "ERR Protocol error: request exceeds request_bytes_max";
        assert_eq!(error(header.as_bytes(), &limits), text);
        assert_eq!(one(&format!("{three}$1\r\nx\r\n")).len(), 4); // exactly 128
        let long_inline = ProtocolLimits { request_bytes_max: 4, ..limits };
        assert_eq!(error(b"ab c\n", &long_inline), text);
        assert_eq!(one("abc\n"), args(&["abc"]));
    }

    #[test]
    fn a_declared_length_is_never_allocated_up_front() {
        let limits = ProtocolLimits::default();
        let mut buf = BytesMut::with_capacity(64);
        buf.put_slice(b"*1\r\n$500000000\r\nsome bytes");
        let (capacity, len) = (buf.capacity(), buf.len());
        assert_eq!(parse_request(&mut buf, &limits), Ok(None));
        assert_eq!((buf.capacity(), buf.len()), (capacity, len));
        // Nor a declared argument count.
        let mut buf = BytesMut::from(&b"*1048576\r\n$1\r\na\r\n"[..]);
        assert_eq!(parse_request(&mut buf, &limits), Ok(None));
    }

    #[test]
    fn inline_requests_split_like_sdssplitargs() {
        let one = |input| one_with(input, &ProtocolLimits::default());
        assert_eq!(one("set \"a b\" 'c d'\r\n"), args(&["set", "a b", "c d"]));
        assert_eq!(one("  GET   k  \n"), args(&["GET", "k"]));
        assert_eq!(one("\"\\x41\" \"\\x4a\\x4A\"\n"), args(&["A", "JJ"]));
        assert_eq!(one("\"\\xZZ\" \"\\x4\"\n"), args(&["xZZ", "x4"]));
        assert_eq!(one("\"\\n\\r\\t\\b\\a\\\\\\\"\\q\"\n"), args(&["\n\r\t\x08\x07\\\"q"]));
        assert_eq!(one("'it\\'s' 'a\\nb'\n"), args(&["it's", "a\\nb"]));
        assert_eq!(one("\"\" ''\n"), args(&["", ""]));
        assert_eq!(one("a\"b c\" x'y'\n"), args(&["ab c", "xy"]));
        // \v and \f separate only where `isspace` is used: between words and after a quote.
        assert_eq!(one("a\x0bb \x0c\"c\"\x0bd\n"), args(&["a\x0bb", "c", "d"]));
        assert_eq!(one("GET a\r\r\n"), args(&["GET", "a"]));
        assert_eq!(one("GET a\rb\n"), args(&["GET", "a", "b"]));
    }

    #[test]
    fn unbalanced_quotes() {
        let text = "ERR Protocol error: unbalanced quotes in request";
        for input in ["\"a\"b\n", "'a'b\n", "\"abc\n", "'abc\n", "\"a\\\"\n", "x \"\\\n", "'\\'\n"] {
            assert_eq!(error(input.as_bytes(), &small()), text, "input {input:?}");
        }
    }

    #[test]
    fn too_big_inline_request() {
        let limits = small();
        let text = "ERR Protocol error: too big inline request";
        let sixteen = "a".repeat(16);
        assert_eq!(parse(sixteen.as_bytes(), &limits), (vec![], Ok(16)));
        assert_eq!(one(&format!("{sixteen}\n")), args(&[&sixteen]));
        // Refused whether or not the newline arrived in the same read.
        assert_eq!(error(format!("{sixteen}a").as_bytes(), &limits), text);
        assert_eq!(error(format!("{sixteen}a\n").as_bytes(), &limits), text);
    }

    #[test]
    fn http_probes_are_recognised_in_any_case() {
        assert!(is_http_probe(&args(&["POST", "/", "HTTP/1.1"])));
        assert!(is_http_probe(&args(&["post"])));
        assert!(is_http_probe(&args(&["Host:", "localhost"])));
        assert!(is_http_probe(&args(&["HOST:"])));
        assert!(is_http_probe(&one("*1\r\n$4\r\nPoSt\r\n")));
        assert!(!is_http_probe(&args(&["GET", "POST"])));
        assert!(!is_http_probe(&args(&["Host"])));
        assert!(!is_http_probe(&args(&["posts"])));
        assert!(!is_http_probe(&[]));
    }

    /// A deterministic PRNG (xorshift64), so failures replay.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn garbage_never_panics_and_does_not_depend_on_read_boundaries() {
        let alphabet = b"*$:+-0123456789\r\n\r\n \t\"'\\xaZ\x0b\0";
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..3000 {
            let len = rng.below(48);
            // Half the inputs look like the start of a multibulk request.
            let head: &[u8] = if rng.below(2) == 0 { b"*2\r\n$" } else { b"" };
            let input: Vec<u8> = head
                .iter()
                .copied()
                .chain((0..len).map(|_| match rng.below(10) {
                    0 => rng.next() as u8,
                    _ => alphabet[rng.below(alphabet.len())],
                }))
                .collect();
            let _outcome = parse(&input, &small());
        }
    }

    fn encoded(reply: &Response, protocol: Protocol) -> String {
        let mut out = BytesMut::new();
        encode(reply, protocol, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    /// Checks the RESP2 and the RESP3 encoding of `reply`.
    fn check(reply: Response, resp2: &str, resp3: &str) {
        assert_eq!(encoded(&reply, Protocol::Resp2), resp2, "RESP2 {reply:?}");
        assert_eq!(encoded(&reply, Protocol::Resp3), resp3, "RESP3 {reply:?}");
    }

    #[test]
    fn scalars_encode_byte_exact() {
        check(Response::ok(), "+OK\r\n", "+OK\r\n");
        check(Response::Simple("a\r\nb".into()), "+a  b\r\n", "+a  b\r\n");
        let error = Response::error("ERR bad\nthing\r");
        check(error, "-ERR bad thing \r\n", "-ERR bad thing \r\n");
        check(Response::Integer(-42), ":-42\r\n", ":-42\r\n");
        check(Response::bulk("abc"), "$3\r\nabc\r\n", "$3\r\nabc\r\n");
        check(Response::bulk(""), "$0\r\n\r\n", "$0\r\n\r\n");
        check(Response::bulk("a\r\nb"), "$4\r\na\r\nb\r\n", "$4\r\na\r\nb\r\n");
        check(Response::Null, "$-1\r\n", "_\r\n");
        check(Response::NullArray, "*-1\r\n", "_\r\n");
        check(Response::Boolean(true), ":1\r\n", "#t\r\n");
        check(Response::Boolean(false), ":0\r\n", "#f\r\n");
    }

    #[test]
    fn doubles_encode_byte_exact() {
        check(Response::Double(1.5), "$3\r\n1.5\r\n", ",1.5\r\n");
        check(Response::Double(3.0), "$1\r\n3\r\n", ",3\r\n");
        check(Response::Double(-0.25), "$5\r\n-0.25\r\n", ",-0.25\r\n");
        check(Response::Double(-0.0), "$2\r\n-0\r\n", ",-0\r\n");
        check(Response::Double(f64::INFINITY), "$3\r\ninf\r\n", ",inf\r\n");
        check(Response::Double(f64::NEG_INFINITY), "$4\r\n-inf\r\n", ",-inf\r\n");
        check(Response::Double(f64::NAN), "$3\r\nnan\r\n", ",nan\r\n");
    }

    #[test]
    fn verbatim_strings_encode_byte_exact() {
        let text = |format| Response::Verbatim { format, text: Bytes::from_static(b"a:1\r\n") };
        check(text(VerbatimFormat::Text), "$5\r\na:1\r\n\r\n", "=9\r\ntxt:a:1\r\n\r\n");
        check(text(VerbatimFormat::Markdown), "$5\r\na:1\r\n\r\n", "=9\r\nmkd:a:1\r\n\r\n");
    }

    #[test]
    fn aggregates_encode_byte_exact_and_in_order() {
        check(Response::Array(vec![]), "*0\r\n", "*0\r\n");
        let array = Response::Array(vec![Response::Integer(1), Response::bulk("a"), Response::Null]);
        check(array, "*3\r\n:1\r\n$1\r\na\r\n$-1\r\n", "*3\r\n:1\r\n$1\r\na\r\n_\r\n");
        let map = Response::Map(vec![
            (Response::bulk("k"), Response::Integer(1)),
            (Response::Simple("s".into()), Response::Null),
            (Response::bulk("k"), Response::Boolean(true)),
        ]);
        check(
            map,
            "*6\r\n$1\r\nk\r\n:1\r\n+s\r\n$-1\r\n$1\r\nk\r\n:1\r\n",
            "%3\r\n$1\r\nk\r\n:1\r\n+s\r\n_\r\n$1\r\nk\r\n#t\r\n",
        );
        let set = Response::Set(vec![Response::bulk("b"), Response::bulk("a")]);
        check(set, "*2\r\n$1\r\nb\r\n$1\r\na\r\n", "~2\r\n$1\r\nb\r\n$1\r\na\r\n");
        let nested = Response::Array(vec![
            Response::Map(vec![(Response::Array(vec![]), Response::Double(0.5))]),
            Response::Set(vec![]),
        ]);
        check(nested, "*2\r\n*2\r\n*0\r\n$3\r\n0.5\r\n*0\r\n", "*2\r\n%1\r\n*0\r\n,0.5\r\n~0\r\n");
        let many = Response::Array(vec![Response::Integer(7); 1234]);
        assert!(encoded(&many, Protocol::Resp3).starts_with("*1234\r\n:7\r\n"));
    }

    #[test]
    fn encoding_appends() {
        let mut out = BytesMut::from(&b"+first\r\n"[..]);
        encode(&Response::Integer(2), Protocol::Resp3, &mut out);
        assert_eq!(&out[..], b"+first\r\n:2\r\n");
    }

    #[test]
    fn state_machine_replies_convert() {
        use fsm_sdk::Reply;
        let reply = Reply::Array(vec![
            Reply::ok(),
            Reply::error("ERR x"),
            Reply::Integer(3),
            Reply::Bulk(b"v".to_vec()),
            Reply::Null,
            Reply::Array(vec![]),
        ]);
        let expected = Response::Array(vec![
            Response::ok(),
            Response::error("ERR x"),
            Response::Integer(3),
            Response::bulk("v"),
            Response::Null,
            Response::Array(vec![]),
        ]);
        assert_eq!(Response::from(reply), expected);
    }
}
