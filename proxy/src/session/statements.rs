//! The prepared statements one server connection holds, for both
//! protocols: a bounded map from a statement's content id (a hash of what
//! makes two statements the same) to the server's own handle for it (a
//! PostgreSQL statement name, a MySQL statement id), least recently used
//! first out. The front end closes what [`ServerStatements::add`] evicts.

use std::collections::HashMap;

/// The statements one server holds (see the module docs).
#[derive(Debug)]
pub struct ServerStatements<H: Copy> {
    used: HashMap<u64, (u64, H)>,
    tick: u64,
}

impl<H: Copy> Default for ServerStatements<H> {
    fn default() -> Self {
        ServerStatements {
            used: HashMap::new(),
            tick: 0,
        }
    }
}

impl<H: Copy> ServerStatements<H> {
    /// The server's handle for a statement, if it holds it; marks it used.
    #[inline]
    pub fn get(&mut self, id: u64) -> Option<H> {
        self.tick += 1;
        let e = self.used.get_mut(&id)?;
        e.0 = self.tick;
        Some(e.1)
    }

    /// True if the server holds the statement; marks it used.
    #[inline]
    pub fn touch(&mut self, id: u64) -> bool {
        self.get(id).is_some()
    }

    /// Records a statement as prepared; returns the statements (content id
    /// and handle) to close to stay within `max` (0: unbounded).
    pub fn add(&mut self, id: u64, handle: H, max: usize) -> Vec<(u64, H)> {
        self.tick += 1;
        self.used.insert(id, (self.tick, handle));
        let mut evicted = Vec::new();
        while max > 0 && self.used.len() > max {
            let Some((&oldest, _)) = self
                .used
                .iter()
                .filter(|(k, _)| **k != id)
                .min_by_key(|(_, (t, _))| *t)
            else {
                break;
            };
            if let Some((_, h)) = self.used.remove(&oldest) {
                evicted.push((oldest, h));
            }
        }
        evicted
    }

    /// Forgets a statement.
    pub fn remove(&mut self, id: u64) -> Option<H> {
        self.used.remove(&id).map(|(_, h)| h)
    }

    /// Lists an evicted statement again: the close that would have removed
    /// it from the server did not run.
    pub fn restore(&mut self, id: u64, handle: H) {
        self.tick += 1;
        self.used.entry(id).or_insert((self.tick, handle));
    }

    /// Forgets everything (the server dropped all its statements).
    pub fn clear(&mut self) {
        self.used.clear();
    }

    /// Statements held.
    pub fn len(&self) -> usize {
        self.used.len()
    }

    /// True when none is held.
    pub fn is_empty(&self) -> bool {
        self.used.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_evicts_least_recently_used() {
        let mut s = ServerStatements::default();
        assert!(s.add(1, 'a', 2).is_empty());
        assert!(s.add(2, 'b', 2).is_empty());
        assert_eq!(s.get(1), Some('a'));
        assert_eq!(s.add(3, 'c', 2), vec![(2, 'b')]);
        assert!(s.touch(1) && s.touch(3) && !s.touch(2));
        assert_eq!(s.remove(1), Some('a'));
        s.restore(2, 'b');
        assert_eq!((s.len(), s.get(2)), (2, Some('b')));
        s.clear();
        assert!(s.is_empty());
    }

    #[test]
    fn zero_means_unbounded() {
        let mut s = ServerStatements::default();
        for i in 0..100 {
            assert!(s.add(i, i as u32, 0).is_empty());
        }
        assert_eq!(s.len(), 100);
    }
}
