//! A memory of analyses keyed by a statement's *shape*, so that statements
//! differing only in their numbers (`... WHERE id = 41`, `... WHERE id = 42`)
//! are normalized once.
//!
//! The shape of a statement is its bytes with every free-standing run of
//! ASCII digits replaced by one NUL byte. A run is free-standing when the
//! bytes on both sides of it cannot glue it into a word, a bind marker or a
//! variable (letters, digits, `_`, `$`, `@`, `:`, non-ASCII bytes). Such a
//! run is, for the lexer, a number literal or part of a number literal
//! (`1.5`), or text inside a string literal or a comment; the normalizer
//! turns all of these into placeholders or drops them, whatever the digits
//! are. So two statements with the same shape have the same analysis and
//! the same normalized text.
//!
//! Statements for which that argument does not hold are not shaped:
//! quoted identifiers (`"t1"`, `` `t1` ``) and MySQL variables with quoted
//! names (`@'v 1'`) keep digits verbatim, a NUL byte
//! would collide with the marker, and long statements could be cut at
//! [`MAX_INPUT`] in different places.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use xxhash_rust::xxh3::xxh3_64;

use super::{Analysis, Dialect, MAX_INPUT};

/// Longest statement that is shaped (well under [`MAX_INPUT`], so that
/// statements of one shape are never cut differently).
pub(crate) const MAX_SHAPED: usize = 4 * 1024;
/// Shapes remembered; the memory is cleared when it is full.
pub(crate) const MAX_SHAPES: usize = 2048;

const _: () = assert!(MAX_SHAPED * 2 < MAX_INPUT);

const PLAIN: u8 = 0;
const DIGIT: u8 = 1;
/// `"`, backquote, NUL: the statement is not shaped.
const REFUSE: u8 = 2;
/// `'`: refused after `@` (a MySQL variable with a quoted name, `@'x 1'`).
const QUOTE: u8 = 3;

/// Byte classes for the scan.
static CLASS: [u8; 256] = {
    let mut t = [PLAIN; 256];
    let mut d = b'0';
    while d <= b'9' {
        t[d as usize] = DIGIT;
        d += 1;
    }
    t[b'"' as usize] = REFUSE;
    t[b'`' as usize] = REFUSE;
    t[0] = REFUSE;
    t[b'\'' as usize] = QUOTE;
    t
};

/// True for a byte that glues a neighbouring digit run into another token.
#[inline]
fn sticky(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80 || matches!(b, b'_' | b'$' | b'@' | b':')
}

/// Writes the shape of `sql` to `out` (cleared first). False when `sql`
/// must not be shaped (see the module documentation).
pub(crate) fn shape(sql: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let n = sql.len();
    if n > MAX_SHAPED {
        return false;
    }
    let mut i = 0;
    let mut start = 0;
    while i < n {
        // Plain bytes are the bulk: skip them in one tight loop.
        match sql[i..].iter().position(|&b| CLASS[b as usize] != PLAIN) {
            Some(k) => i += k,
            None => break,
        }
        match CLASS[sql[i] as usize] {
            DIGIT => {
                let run = i;
                i += sql[i..]
                    .iter()
                    .position(|b| !b.is_ascii_digit())
                    .unwrap_or(n - i);
                let free_before = run == 0 || !sticky(sql[run - 1]);
                let free_after = i == n || !sticky(sql[i]);
                if free_before && free_after {
                    out.extend_from_slice(&sql[start..run]);
                    out.push(0);
                    start = i;
                }
            }
            QUOTE => {
                if i > 0 && sql[i - 1] == b'@' {
                    return false;
                }
                i += 1;
            }
            _ => return false,
        }
    }
    out.extend_from_slice(&sql[start..]);
    true
}

/// The key is already a hash: use it as is.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// Analyses and normalized texts by shape hash.
#[derive(Debug, Default)]
pub(crate) struct ShapeCache {
    buf: Vec<u8>,
    map: HashMap<u64, (Analysis, Box<str>), BuildHasherDefault<KeyHasher>>,
}

impl ShapeCache {
    /// The key of `sql`, or None when it is not shaped.
    pub(crate) fn key(&mut self, sql: &[u8], dialect: Dialect) -> Option<u64> {
        if !shape(sql, &mut self.buf) {
            return None;
        }
        let h = xxh3_64(&self.buf);
        Some(match dialect {
            Dialect::Postgres => h,
            Dialect::MySql => h.rotate_left(1) ^ 0x9e37_79b9_7f4a_7c15,
        })
    }

    pub(crate) fn analysis(&self, key: u64) -> Option<Analysis> {
        self.map.get(&key).map(|(a, _)| *a)
    }

    pub(crate) fn text(&self, key: u64) -> Option<&str> {
        self.map.get(&key).map(|(_, t)| &**t)
    }

    pub(crate) fn insert(&mut self, key: u64, analysis: Analysis, text: &str) {
        if self.map.len() >= MAX_SHAPES {
            self.map.clear();
        }
        self.map.insert(key, (analysis, text.into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shaped(s: &str) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        shape(s.as_bytes(), &mut out).then_some(out)
    }

    #[test]
    fn free_standing_numbers_become_one_marker() {
        assert_eq!(
            shaped("select a from t where id = 12345").unwrap(),
            b"select a from t where id = \0"
        );
        assert_eq!(shaped("x = 1.25").unwrap(), b"x = \0.\0");
        assert_eq!(shaped("f(1,22)").unwrap(), b"f(\0,\0)");
        assert_eq!(shaped("'abc 12' -- 7").unwrap(), b"'abc \0' -- \0");
    }

    #[test]
    fn digits_glued_to_words_markers_and_variables_stay() {
        for s in [
            "select t1.a2 from t1",
            "select $1",
            "select @1",
            "select :1",
            "select 1e5",
            "select 0x1f",
            "select 1_000",
            "select 1table from x",
            "select é1",
        ] {
            let out = shaped(s).unwrap();
            assert!(
                s.bytes().filter(u8::is_ascii_digit).count()
                    == out.iter().filter(|b| b.is_ascii_digit()).count(),
                "{s}: {out:?}"
            );
        }
    }

    #[test]
    fn quoted_identifiers_nul_and_long_statements_are_not_shaped() {
        assert!(shaped("select \"1\" from t").is_none());
        assert!(shaped("select `1` from t").is_none());
        assert!(shaped("select 1\0").is_none());
        assert!(shaped("select @'1 day'").is_none());
        assert!(shaped(&format!("select {}", "1,".repeat(MAX_SHAPED))).is_none());
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut c = ShapeCache::default();
        for i in 0..(MAX_SHAPES as u64 * 2 + 3) {
            c.insert(i, Analysis::default(), "x");
            assert!(c.map.len() <= MAX_SHAPES);
        }
    }
}
