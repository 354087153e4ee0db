//! Floats as Redis reads and prints them (`INCRBYFLOAT`, `HINCRBYFLOAT`).

/// Parses a float as Redis's `string2ld` accepts it: no leading or trailing space, not NaN, and
/// no overflow to infinity or underflow to zero (an explicit `inf` is accepted, as `strtold`
/// does). One difference: Redis parses into a `long double`, so it takes magnitudes up to about
/// 1e4932 where an `f64` stops near 1e308 (refused here as not a valid float). wasm floats are
/// IEEE-754 and the host canonicalises NaNs: every replica computes the same.
pub fn parse_float(bytes: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(bytes).ok()?;
    if text.is_empty() || text.len() > 5 * 1024 || text.starts_with(char::is_whitespace) {
        return None;
    }
    let n = text.parse::<f64>().ok().filter(|n| !n.is_nan())?;
    let mantissa = text.split(['e', 'E']).next().unwrap_or(text);
    let overflow = n.is_infinite() && mantissa.bytes().any(|b| b.is_ascii_digit());
    let underflow = n == 0.0 && mantissa.bytes().any(|b| matches!(b, b'1'..=b'9'));
    (!overflow && !underflow).then_some(n)
}

/// Prints a float the way Redis's `INCRBYFLOAT` does: plain decimal, no exponent, no trailing
/// zeros (`10.5`, `3`, `0.0001`). The sum is rounded to 15 significant digits first (what an
/// `f64` holds), so `0.1 + 0.2` prints `0.3` as in Redis. Redis adds in `long double` and prints
/// 17 decimals, which shows that type's own rounding error on larger values (`958.3` is
/// `958.29999999999999999` there): where the exact sum is not a binary fraction, the texts may
/// differ in those digits.
pub fn format_float(n: f64) -> String {
    let rounded: f64 = format!("{n:.14e}").parse().unwrap_or(n);
    let text = format!("{rounded}");
    if text == "-0" { "0".to_owned() } else { text }
}

#[cfg(test)]
mod tests {
    use super::{format_float, parse_float};

    #[test]
    fn floats_parse_like_redis() {
        assert_eq!(parse_float(b"10.5"), Some(10.5));
        assert_eq!(parse_float(b"5.0e3"), Some(5000.0));
        assert_eq!(parse_float(b"-1"), Some(-1.0));
        assert_eq!(parse_float(b"inf"), Some(f64::INFINITY));
        for bad in [&b""[..], b" 1", b"1 ", b"abc", b"nan", b"1.2.3", b"1e400", b"1e-400"] {
            assert_eq!(parse_float(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn floats_print_like_redis() {
        assert_eq!(format_float(10.5 + 0.1), "10.6");
        assert_eq!(format_float(5000.0), "5000");
        assert_eq!(format_float(-0.0), "0");
        assert_eq!(format_float(1e-5), "0.00001");
        assert_eq!(format_float(0.1 + 0.2), "0.3");
        assert_eq!(format_float(1e20), "100000000000000000000");
    }
}
