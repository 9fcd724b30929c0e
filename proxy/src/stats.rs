//! Counters sharded per worker thread, merged when the admin port reads.
//!
//! Sessions add to the shard of the thread they run on, so two workers never
//! write the same cache line. A shard is picked once per thread; threads
//! beyond the shard count share shards, which stays correct because every
//! add is an atomic `fetch_add`.
//!
//! Concurrency: adds are `Relaxed`; a reader may see a transaction's
//! counters half-applied, which only matters to within one transaction.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Shards per counter set (a power of two, more than the usual worker count).
pub const SHARDS: usize = 16;

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The shard index of the current thread.
#[inline]
pub fn shard_index() -> usize {
    SHARD.with(|s| {
        let v = s.get();
        if v != usize::MAX {
            return v;
        }
        let v = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
        s.set(v);
        v
    })
}

/// Counter names of a pool, in SHOW STATS order where they overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Stat {
    /// Times a server was lent to a client.
    ServerAssignments,
    /// Transactions completed.
    Xacts,
    /// Queries (simple Query messages and extended-protocol Sync batches).
    Queries,
    /// Bytes received from clients.
    BytesReceived,
    /// Bytes sent to clients.
    BytesSent,
    /// Microseconds spent in transactions (lease held).
    XactTimeUs,
    /// Microseconds spent running queries.
    QueryTimeUs,
    /// Microseconds clients spent waiting for a server.
    WaitTimeUs,
    /// Parse messages from clients (named statements).
    ClientParses,
    /// Parse messages sent to servers.
    ServerParses,
    /// Bind messages.
    Binds,
    /// Client logins.
    ClientLogins,
    /// Statement errors returned by servers.
    Errors,
}

/// Number of [`Stat`] variants.
pub const STAT_COUNT: usize = 13;

#[repr(align(128))]
#[derive(Default)]
struct Shard {
    counters: [AtomicU64; STAT_COUNT],
}

/// One set of sharded counters.
pub struct Counters {
    shards: Box<[Shard]>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counters")
            .field("totals", &self.totals())
            .finish()
    }
}

impl Counters {
    /// Adds `v` to `stat` on this thread's shard.
    #[inline]
    pub fn add(&self, stat: Stat, v: u64) {
        if v != 0 {
            self.shards[shard_index()].counters[stat as usize].fetch_add(v, Ordering::Relaxed);
        }
    }

    /// Adds a batch of local counts at once (one shard lookup).
    #[inline]
    pub fn add_all(&self, local: &LocalCounts) {
        let shard = &self.shards[shard_index()];
        for (i, &v) in local.0.iter().enumerate() {
            if v != 0 {
                shard.counters[i].fetch_add(v, Ordering::Relaxed);
            }
        }
    }

    /// Sums of every counter over all shards.
    pub fn totals(&self) -> [u64; STAT_COUNT] {
        let mut out = [0u64; STAT_COUNT];
        for shard in self.shards.iter() {
            for (o, c) in out.iter_mut().zip(shard.counters.iter()) {
                *o += c.load(Ordering::Relaxed);
            }
        }
        out
    }
}

/// Counts a session accumulates without atomics and flushes at transaction
/// end with [`Counters::add_all`].
#[derive(Debug, Default, Clone)]
pub struct LocalCounts(pub [u64; STAT_COUNT]);

impl LocalCounts {
    /// Adds to one counter.
    #[inline]
    pub fn add(&mut self, stat: Stat, v: u64) {
        self.0[stat as usize] += v;
    }

    /// True when nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&v| v == 0)
    }

    /// Resets all counts to zero.
    pub fn clear(&mut self) {
        self.0 = [0; STAT_COUNT];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_many_threads_add_up() {
        let c = std::sync::Arc::new(Counters::default());
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.add(Stat::Xacts, 1);
                    }
                    let mut l = LocalCounts::default();
                    l.add(Stat::BytesSent, 10);
                    c.add_all(&l);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let t = c.totals();
        assert_eq!(t[Stat::Xacts as usize], 8000);
        assert_eq!(t[Stat::BytesSent as usize], 80);
    }
}
