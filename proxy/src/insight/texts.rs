//! Fingerprint → normalized text, first text wins.
//!
//! Sessions call [`TextMap::note`] for every statement they normalize, so
//! the known case must be cheap: 16 maps sharded by fingerprint, each behind
//! an `RwLock` that is only read-locked when the text is already there.
//!
//! Bound: texts are `Arc<str>` shared with the statement entries, N+1
//! events and leak rows that show them. When a shard grows past its
//! budget (about `2 × max_statements / 16`, at least 64) it drops every text
//! nobody else holds (`Arc::strong_count == 1`) and sets the next check at
//! twice what is left, so the sweep is amortized and the map never holds
//! more than about twice the referenced texts plus the budget. Each text is
//! at most `sqlmux_protocol::sql::MAX_TEXT` bytes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use sqlmux_protocol::sql::{Fingerprint, MAX_TEXT};

use super::hash::Seeded;
use super::{Padded, read, write};

/// The last few fingerprints one session handed to [`TextMap::note`]: a
/// session that runs the same statements again skips the shared map.
#[derive(Debug, Clone)]
pub struct RecentlyNoted {
    fps: [Fingerprint; 4],
    next: usize,
}

impl Default for RecentlyNoted {
    fn default() -> RecentlyNoted {
        RecentlyNoted {
            fps: [Fingerprint(u64::MAX); 4],
            next: 0,
        }
    }
}

impl RecentlyNoted {
    /// True when `fp` was noted recently.
    pub fn contains(&self, fp: Fingerprint) -> bool {
        self.fps.contains(&fp)
    }

    /// Remembers `fp`; true when it was not already remembered (its text
    /// should then be noted).
    pub fn note(&mut self, fp: Fingerprint) -> bool {
        if self.contains(fp) {
            return false;
        }
        self.fps[self.next % self.fps.len()] = fp;
        self.next = self.next.wrapping_add(1);
        true
    }
}

const TEXT_SHARDS: usize = 16;
const MIN_BUDGET: usize = 64;

struct TextShard {
    map: HashMap<Fingerprint, Arc<str>, Seeded>,
    /// Size at which the next sweep runs (0 = budget only).
    next_sweep: usize,
}

/// See the module documentation.
pub(crate) struct TextMap {
    shards: Box<[Padded<RwLock<TextShard>>]>,
}

/// `text` cut to at most `MAX_TEXT` bytes on a character boundary.
fn cut(text: &str) -> &str {
    if text.len() <= MAX_TEXT {
        return text;
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl TextMap {
    pub(crate) fn new() -> Self {
        TextMap {
            shards: (0..TEXT_SHARDS)
                .map(|_| {
                    Padded(RwLock::new(TextShard {
                        map: HashMap::with_hasher(Seeded::new()),
                        next_sweep: 0,
                    }))
                })
                .collect(),
        }
    }

    #[inline]
    fn shard(&self, fp: Fingerprint) -> &RwLock<TextShard> {
        // Fingerprints are hashes: any bits will do; the top ones are not
        // the ones the shard's own hash map leans on.
        &self.shards[(fp.0 >> 60) as usize % TEXT_SHARDS]
    }

    /// Remembers `text` for `fp` unless a text is already known.
    pub(crate) fn note(&self, fp: Fingerprint, text: &str, max_statements: usize) {
        let shard = self.shard(fp);
        if read(shard).map.contains_key(&fp) {
            return;
        }
        let mut s = write(shard);
        if s.map.contains_key(&fp) {
            return;
        }
        let budget = (max_statements.saturating_mul(2) / TEXT_SHARDS).max(MIN_BUDGET);
        if s.map.len() >= budget.max(s.next_sweep) {
            s.map.retain(|_, t| Arc::strong_count(t) > 1);
            s.next_sweep = s.map.len().saturating_mul(2);
        }
        s.map.insert(fp, Arc::from(cut(text)));
    }

    /// The text of `fp`, if known.
    pub(crate) fn get(&self, fp: Fingerprint) -> Option<Arc<str>> {
        read(self.shard(fp)).map.get(&fp).cloned()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| read(s).map.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recently_noted_keeps_the_last_four() {
        let mut r = RecentlyNoted::default();
        assert!(r.note(Fingerprint(1)));
        assert!(!r.note(Fingerprint(1)));
        for fp in 2..=5 {
            assert!(r.note(Fingerprint(fp)));
        }
        assert!(!r.contains(Fingerprint(1)), "the oldest is forgotten");
        assert!((2..=5).all(|fp| r.contains(Fingerprint(fp))));
    }

    #[test]
    fn first_text_wins() {
        let m = TextMap::new();
        m.note(Fingerprint(5), "select $1", 10);
        m.note(Fingerprint(5), "select 2", 10);
        assert_eq!(m.get(Fingerprint(5)).as_deref(), Some("select $1"));
        assert!(m.get(Fingerprint(6)).is_none());
    }

    #[test]
    fn long_texts_are_cut_on_a_char_boundary() {
        let m = TextMap::new();
        let long = "é".repeat(MAX_TEXT);
        m.note(Fingerprint(1), &long, 10);
        let t = m.get(Fingerprint(1)).unwrap();
        assert!(t.len() <= MAX_TEXT);
        assert!(t.chars().all(|c| c == 'é'));
    }

    #[test]
    fn unreferenced_texts_are_swept_and_held_ones_kept() {
        let m = TextMap::new();
        // Everything lands in shard 0 (top bits zero).
        m.note(Fingerprint(1), "held", 1);
        let held = m.get(Fingerprint(1)).unwrap();
        for i in 2..10_000u64 {
            m.note(Fingerprint(i), "x", 1);
        }
        assert!(m.len() <= 2 * MIN_BUDGET + 1, "{}", m.len());
        assert_eq!(m.get(Fingerprint(1)).as_deref(), Some(&*held));
    }
}
