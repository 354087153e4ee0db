//! `CONFIG GET` pattern matching: [`fsm_sdk::glob::glob_match`] (Redis's rules, in linear steps)
//! with a cap on the pattern's length, so that a client cannot make even `pattern × name` large.

/// Longest pattern accepted, in bytes. Config names are short; a longer pattern is refused with
/// an error rather than matched.
pub const GLOB_PATTERN_BYTES_MAX: usize = 512;

/// A pattern over [`GLOB_PATTERN_BYTES_MAX`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pattern of {0} bytes is longer than the {GLOB_PATTERN_BYTES_MAX} allowed")]
pub struct PatternTooLong(pub usize);

/// Whether `name` matches `pattern`, case-sensitively; patterns over the cap are refused.
pub fn glob_match(pattern: &[u8], name: &[u8]) -> Result<bool, PatternTooLong> {
    if pattern.len() > GLOB_PATTERN_BYTES_MAX {
        return Err(PatternTooLong(pattern.len()));
    }
    Ok(fsm_sdk::glob::glob_match(pattern, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_within_the_cap() {
        assert_eq!(glob_match(b"append*", b"appendonly"), Ok(true));
        assert_eq!(glob_match(b"save", b"saves"), Ok(false));
        let pattern = format!("{}x", "*".repeat(GLOB_PATTERN_BYTES_MAX - 1));
        assert_eq!(glob_match(pattern.as_bytes(), "a".repeat(10_000).as_bytes()), Ok(false));
    }

    #[test]
    fn long_patterns_are_refused() {
        let pattern = vec![b'*'; GLOB_PATTERN_BYTES_MAX + 1];
        assert_eq!(glob_match(&pattern, b"x"), Err(PatternTooLong(GLOB_PATTERN_BYTES_MAX + 1)));
    }
}
