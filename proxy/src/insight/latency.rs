//! Pool latencies: checkout wait and transaction duration per (database,
//! user), as fixed Prometheus buckets.
//!
//! Recording is a bucket search over [`LATENCY_BOUNDS_US`] and three adds in
//! this thread's shard (sharded and padded like the statement table, behind
//! an uncontended mutex). Each shard keeps a vector indexed by tag id,
//! grown the first time the shard sees a tag (tag ids are checked against
//! the interned count before they get here, so the vector is bounded by
//! [`super::MAX_TAGS`]); 304 bytes per tag per shard.

use std::sync::{Arc, Mutex};

use sqlmux_protocol::sql::Fingerprint;

use super::{Padded, PoolTag, lock};
use crate::stats::{SHARDS, shard_index};

/// Upper bounds (µs, inclusive) of the latency buckets used for pool
/// latencies and `/metrics` statement histograms: 100 µs to 10 s in a
/// 1-2.5-5 progression. A last, implicit `+Inf` bucket follows.
pub const LATENCY_BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Buckets including `+Inf`.
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_US.len() + 1;

/// One Prometheus histogram: `cumulative[i]` counts samples `<=
/// LATENCY_BOUNDS_US[i]`; the last entry is `+Inf` and equals `count`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buckets {
    /// Cumulative counts per bound, `+Inf` last.
    pub cumulative: [u64; LATENCY_BUCKETS],
    /// Samples (the `_count` series).
    pub count: u64,
    /// Sum of the samples in microseconds (the `_sum` series, divide by
    /// 1e6 for seconds).
    pub sum_us: u64,
}

impl Default for Buckets {
    fn default() -> Self {
        Buckets {
            cumulative: [0; LATENCY_BUCKETS],
            count: 0,
            sum_us: 0,
        }
    }
}

impl Buckets {
    /// From non-cumulative counts per bucket.
    pub(crate) fn from_counts(counts: &[u64; LATENCY_BUCKETS], count: u64, sum_us: u64) -> Buckets {
        let mut cumulative = [0u64; LATENCY_BUCKETS];
        let mut acc = 0u64;
        for (c, n) in cumulative.iter_mut().zip(counts) {
            acc = acc.saturating_add(*n);
            *c = acc;
        }
        Buckets {
            cumulative,
            count,
            sum_us,
        }
    }

    /// The bucket bounds in seconds as Prometheus `le` label values, `+Inf`
    /// last, matching `cumulative`.
    pub fn le_labels() -> [&'static str; LATENCY_BUCKETS] {
        [
            "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
            "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
        ]
    }
}

/// Latency distributions of one (database, user) pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolLatency {
    /// The tag these numbers belong to.
    pub tag: PoolTag,
    /// Database name ("*" for [`PoolTag::UNKNOWN`]).
    pub database: String,
    /// User name ("*" for [`PoolTag::UNKNOWN`]).
    pub user: String,
    /// Time from the checkout request to getting a server.
    pub checkout_wait: Buckets,
    /// Time a transaction held its lease.
    pub transaction: Buckets,
}

/// `/metrics` latency histogram of one statement row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementBuckets {
    /// The statement's fingerprint.
    pub fingerprint: Fingerprint,
    /// Database name.
    pub database: String,
    /// User name.
    pub user: String,
    /// Cumulative buckets at [`LATENCY_BOUNDS_US`] from the statement's
    /// histogram (placed by the lower edge of each 1%-wide histogram cell),
    /// count of samples and exact sum.
    pub latency: Buckets,
}

/// Which distribution a sample belongs to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Which {
    CheckoutWait,
    Transaction,
}

#[derive(Clone, Copy, Default)]
struct Raw {
    counts: [u64; LATENCY_BUCKETS],
    count: u64,
    sum_us: u64,
}

impl Raw {
    #[inline]
    fn add(&mut self, v: u64) {
        let i = LATENCY_BOUNDS_US.partition_point(|&b| b < v);
        self.counts[i] = self.counts[i].wrapping_add(1);
        self.count = self.count.wrapping_add(1);
        self.sum_us = self.sum_us.saturating_add(v);
    }

    fn merge(&mut self, o: &Raw) {
        for (a, b) in self.counts.iter_mut().zip(o.counts.iter()) {
            *a = a.saturating_add(*b);
        }
        self.count = self.count.saturating_add(o.count);
        self.sum_us = self.sum_us.saturating_add(o.sum_us);
    }

    fn buckets(&self) -> Buckets {
        Buckets::from_counts(&self.counts, self.count, self.sum_us)
    }
}

#[derive(Clone, Copy, Default)]
struct PoolRaw {
    wait: Raw,
    xact: Raw,
}

/// The sharded pool latency table; see the module documentation.
pub(crate) struct LatencyShards {
    shards: Box<[Padded<Mutex<Vec<PoolRaw>>>]>,
}

impl LatencyShards {
    pub(crate) fn new() -> Self {
        LatencyShards {
            shards: (0..SHARDS)
                .map(|_| Padded(Mutex::new(Vec::new())))
                .collect(),
        }
    }

    /// Adds one sample; `tag` must be a checked tag.
    #[inline]
    pub(crate) fn record(&self, tag: PoolTag, which: Which, v: u64) {
        let i = tag.0 as usize;
        let mut per_tag = lock(&self.shards[shard_index() % SHARDS]);
        if per_tag.len() <= i {
            per_tag.resize(i + 1, PoolRaw::default());
        }
        let p = &mut per_tag[i];
        match which {
            Which::CheckoutWait => p.wait.add(v),
            Which::Transaction => p.xact.add(v),
        }
    }

    /// A transaction's time and, when given, its lease's checkout wait,
    /// under one lock.
    pub(crate) fn record_lease(&self, tag: PoolTag, wait_us: Option<u64>, xact_us: u64) {
        let i = tag.0 as usize;
        let mut per_tag = lock(&self.shards[shard_index() % SHARDS]);
        if per_tag.len() <= i {
            per_tag.resize(i + 1, PoolRaw::default());
        }
        let p = &mut per_tag[i];
        if let Some(w) = wait_us {
            p.wait.add(w);
        }
        p.xact.add(xact_us);
    }

    /// Merged over shards, one entry per name (tag id order); tag 0 only
    /// when it has samples.
    pub(crate) fn merged(&self, names: &[(Arc<str>, Arc<str>)]) -> Vec<PoolLatency> {
        let mut sum: Vec<PoolRaw> = vec![PoolRaw::default(); names.len()];
        for shard in self.shards.iter() {
            let per_tag = lock(shard);
            for (acc, p) in sum.iter_mut().zip(per_tag.iter()) {
                acc.wait.merge(&p.wait);
                acc.xact.merge(&p.xact);
            }
        }
        sum.iter()
            .zip(names)
            .enumerate()
            .filter(|(i, (p, _))| *i != 0 || p.wait.count != 0 || p.xact.count != 0)
            .map(|(i, (p, (db, user)))| PoolLatency {
                tag: PoolTag(i as u32),
                database: db.to_string(),
                user: user.to_string(),
                checkout_wait: p.wait.buckets(),
                transaction: p.xact.buckets(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::cfg;
    use super::super::{Insight, PoolTag};
    use super::*;

    #[test]
    fn pool_latencies_are_cumulative_per_tag() {
        let ins = Insight::new(&cfg());
        let a = ins.tag("app", "alice");
        let b = ins.tag("app", "bob");
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let ins = ins.clone();
                std::thread::spawn(move || {
                    for v in [0u64, 100, 101, 5_000, 60_000_000] {
                        ins.record_checkout_wait(a, v);
                    }
                    ins.record_transaction(b, 2_000);
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        ins.record_checkout_wait(PoolTag(999), 1);
        let l = ins.pool_latencies();
        assert_eq!(l.len(), 3, "{l:?}");
        assert_eq!(l[0].tag, PoolTag::UNKNOWN);
        assert_eq!(l[0].database, "*");
        assert_eq!(l[0].checkout_wait.count, 1);
        let la = &l[1];
        assert_eq!((la.database.as_str(), la.user.as_str()), ("app", "alice"));
        let w = &la.checkout_wait;
        assert_eq!(w.count, 20);
        assert_eq!(w.sum_us, 4 * (100 + 101 + 5_000 + 60_000_000));
        assert_eq!(w.cumulative[0], 8); // 0 and 100 are <= 100
        assert_eq!(w.cumulative[1], 12);
        assert_eq!(w.cumulative[5], 16); // le 5 ms
        assert_eq!(w.cumulative[LATENCY_BUCKETS - 2], 16);
        assert_eq!(w.cumulative[LATENCY_BUCKETS - 1], 20);
        assert_eq!(la.transaction, Buckets::default());
        let lb = &l[2];
        assert_eq!(lb.transaction.count, 4);
        assert_eq!(lb.transaction.cumulative[4], 4);
        assert_eq!(lb.transaction.cumulative[3], 0);
        assert_eq!(Buckets::le_labels().len(), LATENCY_BUCKETS);
    }
}
