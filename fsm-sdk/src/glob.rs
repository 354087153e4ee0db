//! Redis-style glob matching (`*`, `?`, `[abc]`, `[^a-z]`, `\x`), as `KEYS`, `SCAN ... MATCH` and
//! `CONFIG GET` patterns use: the same rules on both sides of the ABI.
//!
//! **Why not recursive.** A recursive matcher that backtracks on every `*` takes time exponential
//! in the number of stars (two `CONFIG GET '****...x'` once kept a node from answering anything
//! for more than ten seconds). This one is iterative and remembers only the last `*`, so it runs
//! in at most `pattern × name` steps.

/// Whether `name` matches `pattern`, case-sensitively. Steps are bounded by
/// `pattern.len() × (name.len() + 1)`.
pub fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    // Where to resume after the last `*`: the pattern just past it, and the next name byte the
    // star would swallow.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    // Consecutive stars are one star.
                    while p < pattern.len() && pattern[p] == b'*' {
                        p += 1;
                    }
                    if p == pattern.len() {
                        return true;
                    }
                    star = Some((p, n));
                    continue;
                }
                _ => {
                    if let Some(next) = match_one(pattern, p, name[n]) {
                        p = next;
                        n += 1;
                        continue;
                    }
                }
            }
        }
        // Mismatch: let the last star swallow one more byte, or fail.
        match star {
            Some((after_star, swallowed)) => {
                p = after_star;
                n = swallowed + 1;
                star = Some((after_star, n));
            }
            None => return false,
        }
    }
    while p < pattern.len() && pattern[p] == b'*' {
        p += 1;
    }
    p == pattern.len()
}

/// Matches one name byte against the pattern element at `p` (not a `*`); returns the index past
/// the element if it matches.
fn match_one(pattern: &[u8], p: usize, c: u8) -> Option<usize> {
    match pattern[p] {
        b'?' => Some(p + 1),
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == c).then_some(p + 2),
        b'[' => {
            let mut i = p + 1;
            let negate = pattern.get(i) == Some(&b'^');
            if negate {
                i += 1;
            }
            let mut matched = false;
            // As Redis: a class runs to the next `]` or to the end of the pattern.
            while i < pattern.len() && pattern[i] != b']' {
                if pattern[i] == b'\\' && i + 1 < pattern.len() {
                    matched |= pattern[i + 1] == c;
                    i += 2;
                } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
                    let (lo, hi) = (pattern[i].min(pattern[i + 2]), pattern[i].max(pattern[i + 2]));
                    matched |= (lo..=hi).contains(&c);
                    i += 3;
                } else {
                    matched |= pattern[i] == c;
                    i += 1;
                }
            }
            let end = if i < pattern.len() { i + 1 } else { i };
            (matched != negate).then_some(end)
        }
        literal => (literal == c).then_some(p + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, name: &str) -> bool {
        glob_match(pattern.as_bytes(), name.as_bytes())
    }

    #[test]
    fn matches_like_redis() {
        assert!(m("*", ""));
        assert!(m("*", "save"));
        assert!(m("sa*", "save"));
        assert!(m("*ve", "save"));
        assert!(m("s?ve", "save"));
        assert!(!m("s?ve", "sve"));
        assert!(m("*a*e*", "save"));
        assert!(!m("*x", "save"));
        assert!(m("[st]ave", "save"));
        assert!(!m("[^s]ave", "save"));
        assert!(m("[a-z]ave", "save"));
        assert!(m("[z-a]ave", "save"), "a reversed range matches as Redis's does");
        assert!(m("\\*", "*"));
        assert!(!m("\\*", "x"));
        assert!(!m("save", "saves"));
        assert!(!m("saves", "save"));
        assert!(m("", ""));
        assert!(!m("", "x"));
    }

    #[test]
    fn many_stars_take_linear_steps() {
        // Exponential for a backtracking matcher (this test would not end); immediate here.
        let pattern = format!("{}x", "*".repeat(511));
        let name = "a".repeat(10_000);
        assert!(!glob_match(pattern.as_bytes(), name.as_bytes()));
        let pattern = "*a".repeat(256);
        assert!(!glob_match(pattern.as_bytes(), b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab"));
    }
}
