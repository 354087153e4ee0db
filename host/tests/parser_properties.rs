//! Generated inputs for the parsers a client or an operator feeds: the RESP request parser
//! (multibulk and inline) and the YAML config. Whatever the bytes, parsing ends in a value or an
//! error, never a panic, and never holds more memory than the bytes received; valid input parses
//! back to what was encoded, however the bytes are cut into reads. (The peer frame decoder has
//! its own properties, beside its private types in `raft/network.rs`.)

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use redraft::config::Config;
use redraft::server::protocol::{ProtocolLimits, parse_request};
use std::path::Path;

/// Small caps, so generated inputs reach them.
const SMALL: ProtocolLimits =
    ProtocolLimits { inline_bytes_max: 64, bulk_bytes_max: 128, request_bytes_max: 512, args_max: 8 };

/// Everything `parse_request` makes of `buf`, request by request, until it needs more bytes or
/// refuses; checks on the way that a request consumes bytes and an incomplete one consumes none.
fn parse_all(buf: &mut BytesMut, limits: &ProtocolLimits) -> (Vec<Vec<Bytes>>, Option<String>) {
    let mut requests = Vec::new();
    loop {
        let before = buf.len();
        match parse_request(buf, limits) {
            Ok(Some(args)) => {
                let consumed = before - buf.len();
                assert!(consumed > 0, "a request consumed no bytes");
                let payload: usize = args.iter().map(Bytes::len).sum();
                assert!(payload <= consumed, "{payload} argument bytes out of {consumed} consumed");
                requests.push(args);
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "an incomplete request consumed bytes");
                return (requests, None);
            }
            Err(e) => return (requests, Some(e.0)),
        }
    }
}

fn multibulk(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Requests of 1–5 arguments of any bytes.
fn requests() -> impl Strategy<Value = Vec<Vec<Vec<u8>>>> {
    vec(vec(vec(any::<u8>(), 0..40), 1..6), 1..6)
}

fn word() -> impl Strategy<Value = String> {
    vec(prop_oneof![b'a'..=b'z', b'0'..=b'9', Just(b'-')], 1..12).prop_map(|w| String::from_utf8(w).expect("ascii"))
}

proptest! {
    #[test]
    fn arbitrary_bytes_end_in_requests_a_wait_or_an_error(bytes in vec(any::<u8>(), 0..600)) {
        for limits in [ProtocolLimits::default(), SMALL] {
            let mut buf = BytesMut::from(&bytes[..]);
            let (_, error) = parse_all(&mut buf, &limits);
            if let Some(error) = error {
                prop_assert!(error.starts_with("ERR Protocol error: "), "{}", error);
            }
        }
    }

    #[test]
    fn multibulk_requests_round_trip_however_the_bytes_are_cut(
        requests in requests(),
        cuts in vec(1usize..64, 0..40),
    ) {
        let wire: Vec<u8> = requests.iter().flat_map(|r| multibulk(r)).collect();
        let mut buf = BytesMut::new();
        let mut parsed = Vec::new();
        let mut at: usize = 0;
        for cut in cuts.into_iter().chain(std::iter::once(usize::MAX)) {
            let end = at.saturating_add(cut).min(wire.len());
            buf.extend_from_slice(&wire[at..end]);
            at = end;
            let (got, error) = parse_all(&mut buf, &ProtocolLimits::default());
            prop_assert!(error.is_none(), "{:?}", error);
            parsed.extend(got);
            if at == wire.len() {
                break;
            }
        }
        prop_assert!(buf.is_empty(), "{} bytes left over", buf.len());
        let parsed: Vec<Vec<Vec<u8>>> = parsed.iter().map(|r| r.iter().map(|a| a.to_vec()).collect()).collect();
        prop_assert_eq!(parsed, requests);
    }

    #[test]
    fn inline_lines_split_into_their_words(words in vec(word(), 1..8), gaps in vec(1usize..4, 8), crlf in any::<bool>()) {
        let mut line = String::new();
        for (word, gap) in words.iter().zip(&gaps) {
            line.push_str(word);
            line.push_str(&" ".repeat(*gap));
        }
        line.push_str(if crlf { "\r\n" } else { "\n" });
        let mut buf = BytesMut::from(line.as_bytes());
        let (parsed, error) = parse_all(&mut buf, &ProtocolLimits::default());
        prop_assert!(error.is_none(), "{:?}", error);
        let parsed: Vec<Vec<String>> =
            parsed.iter().map(|r| r.iter().map(|a| String::from_utf8_lossy(a).into_owned()).collect()).collect();
        prop_assert_eq!(parsed, vec![words]);
    }

    #[test]
    fn quoted_inline_arguments_carry_any_bytes(arg in vec(any::<u8>(), 0..40)) {
        // `"\xHH..."`: the escape `sdssplitargs` decodes to any byte.
        let mut line = b"SET \"".to_vec();
        for byte in &arg {
            line.extend_from_slice(format!("\\x{byte:02x}").as_bytes());
        }
        line.extend_from_slice(b"\"\r\n");
        let mut buf = BytesMut::from(&line[..]);
        let (parsed, error) = parse_all(&mut buf, &ProtocolLimits::default());
        prop_assert!(error.is_none(), "{:?}", error);
        prop_assert_eq!(parsed.len(), 1);
        prop_assert_eq!(parsed[0][1].to_vec(), arg);
    }

    #[test]
    fn declared_sizes_past_the_caps_are_refused_before_their_bytes_arrive(
        count in (SMALL.args_max as u64 + 1)..u64::MAX / 2,
        len in (SMALL.bulk_bytes_max as u64 + 1)..u64::MAX / 2,
    ) {
        let mut buf = BytesMut::from(format!("*{count}\r\n").as_bytes());
        let refused = parse_all(&mut buf, &SMALL).1;
        prop_assert_eq!(refused.as_deref(), Some("ERR Protocol error: invalid multibulk length"));
        let mut buf = BytesMut::from(format!("*1\r\n${len}\r\n").as_bytes());
        let refused = parse_all(&mut buf, &SMALL).1;
        prop_assert_eq!(refused.as_deref(), Some("ERR Protocol error: invalid bulk length"));
    }

    #[test]
    fn a_declared_size_within_the_caps_costs_nothing_until_its_bytes_arrive(
        count in 1usize..1024,
        len in 1usize..(512 * 1024 * 1024),
        sent in 0usize..32,
    ) {
        let mut wire = format!("*{count}\r\n${len}\r\n").into_bytes();
        wire.extend(std::iter::repeat_n(b'x', sent.min(len)));
        let mut buf = BytesMut::with_capacity(wire.len());
        buf.extend_from_slice(&wire);
        let capacity = buf.capacity();
        prop_assert_eq!(parse_request(&mut buf, &ProtocolLimits::default()), Ok(None));
        prop_assert_eq!(buf.len(), wire.len());
        prop_assert_eq!(buf.capacity(), capacity, "nothing was reserved for the declared sizes");
    }

    #[test]
    fn lines_past_the_inline_cap_are_refused(extra in 1usize..64, multibulk in any::<bool>()) {
        let start: &[u8] = if multibulk { b"*" } else { b"P" };
        let mut line = start.to_vec();
        line.extend(std::iter::repeat_n(b'1', SMALL.inline_bytes_max + extra));
        let mut buf = BytesMut::from(&line[..]);
        let expected = if multibulk { "too big mbulk count string" } else { "too big inline request" };
        let error = parse_all(&mut buf, &SMALL).1.unwrap_or_default();
        prop_assert!(error.ends_with(expected), "{}", error);
    }

    #[test]
    fn arbitrary_yaml_is_refused_with_a_message_never_a_panic(bytes in vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        if let Err(e) = Config::from_yaml_str(&text, Path::new("generated.yaml")) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn a_shipped_config_with_damaged_bytes_is_refused_or_accepted_never_a_panic(
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = SHIPPED.as_bytes().to_vec();
        for (at, byte) in edits {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        let _ = Config::from_yaml_str(&String::from_utf8_lossy(&bytes), &shipped_path());
    }
}

const SHIPPED: &str = include_str!("../../config/single.yaml");

fn shipped_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/single.yaml")
}

#[test]
fn the_shipped_config_parses() {
    Config::from_yaml_str(SHIPPED, &shipped_path()).expect("config/single.yaml");
}

#[test]
fn deeply_nested_yaml_is_refused_without_overflowing_the_stack() {
    for open in ["[", "{a: ", "- "] {
        let text = open.repeat(5_000);
        let error = Config::from_yaml_str(&text, Path::new("deep.yaml")).expect_err("not a config");
        assert!(!error.to_string().is_empty());
    }
}
