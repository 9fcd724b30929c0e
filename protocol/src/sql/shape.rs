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
const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of every byte of `w` that is not [`PLAIN`], and possibly of
/// bytes after (above) the first such byte, never before it.
#[inline]
fn special_bytes(w: u64) -> u64 {
    // Zero bytes of x: exact up to the first, may flag later ones.
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let equal = |c: u8| zero(w ^ (ONES * u64::from(c)));
    // Bytes strictly between 0x2f and 0x3a (the digits), exact: the low
    // seven bits cannot carry or borrow across bytes, and `!w` drops bytes
    // with the high bit set.
    let low7 = w & (ONES * 0x7f);
    let digits =
        (ONES * (0x7f + 0x3a)).wrapping_sub(low7) & !w & (low7 + ONES * (0x7f - 0x2f)) & HIGHS;
    digits | equal(0) | equal(b'"') | equal(b'`') | equal(b'\'')
}

/// Index of the first byte at or after `i` that is not [`PLAIN`], or
/// `sql.len()`.
#[inline]
fn next_special(sql: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = sql.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let m = special_bytes(w);
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < sql.len() && CLASS[sql[i] as usize] == PLAIN {
        i += 1;
    }
    i
}

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
        // Plain bytes are the bulk: skip them eight at a time.
        i = next_special(sql, i);
        if i == n {
            break;
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

    #[test]
    fn the_word_scan_finds_the_same_byte_as_the_table() {
        // Every byte value at every offset of a 24-byte window, on a
        // background of plain bytes (ASCII letters and high bytes).
        for background in [b'a', 0xc3, b' '] {
            for special in 0..=255u8 {
                for at in 0..24 {
                    let mut v = vec![background; 24];
                    v[at] = special;
                    let naive = (0..v.len())
                        .find(|&k| CLASS[v[k] as usize] != PLAIN)
                        .unwrap_or(v.len());
                    for start in 0..=at {
                        let expect = if naive >= start { naive } else { v.len() };
                        assert_eq!(
                            next_special(&v, start),
                            expect,
                            "{special:#x} at {at} from {start}"
                        );
                    }
                }
            }
        }
        // Two special bytes: the first wins, whatever follows it.
        let v = b"abc\0\0'1\"`defgh9";
        assert_eq!(next_special(v, 0), 3);
        assert_eq!(next_special(v, 5), 5);
        assert_eq!(next_special(v, 9), 14);
    }

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
