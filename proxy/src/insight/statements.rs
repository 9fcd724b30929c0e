//! Per-statement statistics: calls, errors, rows, total and max time and a
//! latency histogram per (fingerprint, database, user), sharded per worker
//! thread and merged when the admin port reads.
//!
//! Layout: [`crate::stats::SHARDS`] cache-padded shards, each a mutex around
//! a map (fingerprint, tag) → [`Entry`] plus one "other" entry per tag. A
//! thread records only into the shard [`crate::stats::shard_index`] gives it,
//! so the mutex is uncontended unless more threads than shards record.
//!
//! Histograms are `hdrhistogram::Histogram<u32>` at 2 significant figures
//! (values within 1%), starting at 1 µs and auto-resizing up to
//! [`HISTOGRAM_MAX_US`] (one hour; larger values are clamped to it before
//! recording, which is what saturating at one hour means here). They start
//! at 256 counters (1 KiB, values up to 255 µs) and grow by 128 counters
//! (512 B) per power of two of the slowest execution seen: 2 KiB to 1 ms,
//! 4 KiB to 16 ms, 7 KiB to 2 s, 13 KiB to one hour, plus 96 bytes for the
//! histogram itself (the counts vector is trimmed after each growth, see
//! [`trim_after_growth`]). (`saturating_record` is not used
//! because it clamps to the *current* size of an auto-resizing histogram;
//! a fixed 1 h range would cost 13 KiB for every statement.)
//!
//! LRU: every record stamps the entry with the shard's clock. When an
//! insertion takes a shard past `max_statements`, the ~10% least recently
//! used entries (selected in O(n)) are folded into the "other" entry of
//! their tag: calls, errors, rows, total, max and histogram carry over, so
//! the totals over all rows never change.
//!
//! Readers make two passes so they never hold more than one shard lock and
//! never materialize one merged histogram per statement: pass one sums the
//! scalar counters per key and notes which shards hold it; pass two merges
//! each key's histograms shard by shard into one reusable scratch histogram
//! and reads the quantiles. A record landing between the passes shows in the
//! percentiles and not in the counts, which is harmless.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;
use sqlmux_protocol::sql::Fingerprint;

use super::hash::Seeded;
use super::latency::{Buckets, LATENCY_BOUNDS_US, LATENCY_BUCKETS, StatementBuckets};
use super::texts::TextMap;
use super::{OTHER_FINGERPRINT, Padded, PoolTag, lock};
use crate::stats::{SHARDS, shard_index};

/// Largest latency a statement histogram distinguishes (one hour, in µs);
/// slower executions are recorded as this value (max_us stays exact).
pub const HISTOGRAM_MAX_US: u64 = 3_600_000_000;

const SIGFIG: u8 = 2;

/// One row of SHOW STATEMENTS. Times in microseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct StatementRow {
    /// The statement's fingerprint; 0 for the "other" row.
    pub fingerprint: Fingerprint,
    /// Database the client connected to ("*" for an unknown tag).
    pub database: String,
    /// Login user ("*" for an unknown tag).
    pub user: String,
    /// Normalized text; "other" for the other row; empty when unknown.
    pub query: String,
    /// Executions.
    pub calls: u64,
    /// Executions the server answered with an error.
    pub errors: u64,
    /// Rows returned or affected, summed.
    pub rows: u64,
    /// Time in the server, summed.
    pub total_us: u64,
    /// total_us / calls.
    pub mean_us: f64,
    /// Median (within 1%, at most max_us).
    pub p50_us: u64,
    /// 95th percentile (within 1%, at most max_us).
    pub p95_us: u64,
    /// 99th percentile (within 1%, at most max_us).
    pub p99_us: u64,
    /// Slowest execution (exact).
    pub max_us: u64,
}

/// One bucket of SHOW HISTOGRAM: the samples in (previous `le_us`, `le_us`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistogramBucket {
    /// Upper bound in microseconds, from the 1-2-5 progression 1, 2, 5, 10,
    /// 20, 50, ...
    pub le_us: u64,
    /// Samples in the bucket (not cumulative).
    pub count: u64,
}

/// Counters and histogram of one (fingerprint, tag) in one shard.
struct Entry {
    calls: u64,
    errors: u64,
    rows: u64,
    total_us: u64,
    max_us: u64,
    /// Shard clock at the last record (unique per shard: the LRU order).
    last_used: u64,
    /// Allocated at the first record; `None` only if creation failed.
    hist: Option<Box<Histogram<u32>>>,
    /// Normalized text, shared with the text map (keeps it from being swept).
    text: Option<Arc<str>>,
}

fn new_histogram() -> Option<Box<Histogram<u32>>> {
    let mut h = Histogram::<u32>::new_with_bounds(1, 2, SIGFIG).ok()?;
    h.auto(true);
    Some(Box::new(h))
}

fn scratch_histogram() -> Option<Histogram<u32>> {
    let mut h = Histogram::<u32>::new_with_bounds(1, HISTOGRAM_MAX_US, SIGFIG).ok()?;
    h.auto(true);
    Some(h)
}

/// After an auto-resize, replaces the histogram by a clone whose counts
/// vector has no spare capacity: `Vec::resize` grows capacity by doubling,
/// which would make a histogram for one hour cost 16 KiB instead of 13.
/// Happens at most once per power of two of the slowest value.
fn trim_after_growth(h: &mut Box<Histogram<u32>>, before: usize) {
    if h.distinct_values() != before {
        **h = (**h).clone();
    }
}

impl Entry {
    fn empty(text: Option<Arc<str>>) -> Entry {
        Entry {
            calls: 0,
            errors: 0,
            rows: 0,
            total_us: 0,
            max_us: 0,
            last_used: 0,
            hist: None,
            text,
        }
    }

    #[inline]
    fn record(&mut self, elapsed_us: u64, rows: u64, error: bool, stamp: u64) {
        self.calls = self.calls.saturating_add(1);
        self.errors = self.errors.saturating_add(u64::from(error));
        self.rows = self.rows.saturating_add(rows);
        self.total_us = self.total_us.saturating_add(elapsed_us);
        self.max_us = self.max_us.max(elapsed_us);
        self.last_used = stamp;
        if self.hist.is_none() {
            self.hist = new_histogram();
        }
        if let Some(h) = self.hist.as_mut() {
            let before = h.distinct_values();
            // Auto-resizing, value clamped: cannot fail short of usize
            // overflow, and an error would only lose one sample.
            let _ = h.record(elapsed_us.min(HISTOGRAM_MAX_US));
            trim_after_growth(h, before);
        }
    }

    /// Adds `other`'s numbers to this entry (eviction into "other").
    fn fold(&mut self, other: Entry) {
        self.calls = self.calls.saturating_add(other.calls);
        self.errors = self.errors.saturating_add(other.errors);
        self.rows = self.rows.saturating_add(other.rows);
        self.total_us = self.total_us.saturating_add(other.total_us);
        self.max_us = self.max_us.max(other.max_us);
        match (&mut self.hist, other.hist) {
            (_, None) => {}
            (None, Some(h)) => self.hist = Some(h),
            (Some(mine), Some(h)) => {
                let before = mine.distinct_values();
                let _ = mine.add(&*h);
                trim_after_growth(mine, before);
            }
        }
    }
}

type Key = (Fingerprint, PoolTag);

struct StatShard {
    entries: HashMap<Key, Entry, Seeded>,
    /// Folded entries (and fingerprint-0 executions) per tag.
    others: HashMap<PoolTag, Entry, Seeded>,
    clock: u64,
}

impl StatShard {
    fn new() -> Self {
        StatShard {
            entries: HashMap::with_hasher(Seeded::new()),
            others: HashMap::with_hasher(Seeded::new()),
            clock: 0,
        }
    }

    fn get(&self, key: &Key) -> Option<&Entry> {
        if key.0 == OTHER_FINGERPRINT {
            self.others.get(&key.1)
        } else {
            self.entries.get(key)
        }
    }

    /// Folds the least recently used entries into "other" until at most
    /// `max - max / 10` remain (called when the shard holds more than `max`).
    fn evict(&mut self, max: usize) {
        let keep = max - max / 10;
        let len = self.entries.len();
        if len <= keep {
            return;
        }
        let n = len - keep;
        let mut stamps: Vec<u64> = self.entries.values().map(|e| e.last_used).collect();
        let (_, &mut cutoff, _) = stamps.select_nth_unstable(n - 1);
        // Stamps are unique per shard, so exactly `n` entries go.
        let evicted: Vec<(Key, Entry)> = self
            .entries
            .extract_if(|_, e| e.last_used <= cutoff)
            .collect();
        for ((_, tag), e) in evicted {
            self.others
                .entry(tag)
                .or_insert_with(|| Entry::empty(None))
                .fold(e);
        }
    }
}

/// The sharded statement table; see the module documentation.
pub(crate) struct StatShards {
    shards: Box<[Padded<Mutex<StatShard>>]>,
}

/// Pass-one sums for one key.
struct Agg {
    calls: u64,
    errors: u64,
    rows: u64,
    total_us: u64,
    max_us: u64,
    /// Bit i set: shard i holds the key.
    shards: u32,
    text: Option<Arc<str>>,
}

impl StatShards {
    pub(crate) fn new() -> Self {
        StatShards {
            shards: (0..SHARDS)
                .map(|_| Padded(Mutex::new(StatShard::new())))
                .collect(),
        }
    }

    /// Records one execution in this thread's shard.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(crate) fn record(
        &self,
        tag: PoolTag,
        fp: Fingerprint,
        elapsed_us: u64,
        rows: u64,
        error: bool,
        max_statements: usize,
        texts: &TextMap,
    ) {
        let mut guard = lock(&self.shards[shard_index() % SHARDS]);
        let s = &mut *guard;
        s.clock += 1;
        let stamp = s.clock;
        if fp == OTHER_FINGERPRINT {
            s.others
                .entry(tag)
                .or_insert_with(|| Entry::empty(None))
                .record(elapsed_us, rows, error, stamp);
            return;
        }
        let key = (fp, tag);
        if let Some(e) = s.entries.get_mut(&key) {
            e.record(elapsed_us, rows, error, stamp);
            return;
        }
        // New in this shard. Lock order: stat shard, then text shard (the
        // text map never takes a stat shard lock).
        let mut e = Entry::empty(texts.get(fp));
        e.record(elapsed_us, rows, error, stamp);
        s.entries.insert(key, e);
        let max = max_statements.max(1);
        if s.entries.len() > max {
            s.evict(max);
        }
    }

    /// Clears every shard.
    pub(crate) fn reset(&self) {
        for shard in self.shards.iter() {
            let mut s = lock(shard);
            s.entries = HashMap::with_hasher(Seeded::new());
            s.others = HashMap::with_hasher(Seeded::new());
        }
    }

    /// Pass one: scalar sums per key over all shards.
    fn collect(&self) -> HashMap<Key, Agg, Seeded> {
        let mut out: HashMap<Key, Agg, Seeded> = HashMap::with_hasher(Seeded::new());
        for (i, shard) in self.shards.iter().enumerate() {
            let s = lock(shard);
            let others = s.others.iter().map(|(t, e)| ((OTHER_FINGERPRINT, *t), e));
            for (key, e) in s.entries.iter().map(|(k, e)| (*k, e)).chain(others) {
                let a = out.entry(key).or_insert_with(|| Agg {
                    calls: 0,
                    errors: 0,
                    rows: 0,
                    total_us: 0,
                    max_us: 0,
                    shards: 0,
                    text: None,
                });
                a.calls = a.calls.saturating_add(e.calls);
                a.errors = a.errors.saturating_add(e.errors);
                a.rows = a.rows.saturating_add(e.rows);
                a.total_us = a.total_us.saturating_add(e.total_us);
                a.max_us = a.max_us.max(e.max_us);
                a.shards |= 1 << (i % 32);
                if a.text.is_none() {
                    a.text = e.text.clone();
                }
            }
        }
        out
    }

    /// Pass two: merges the histograms of `key` from the shards in `mask`
    /// into `scratch` (reset first).
    fn merge_into(&self, key: &Key, mask: u32, scratch: &mut Histogram<u32>) {
        scratch.reset();
        for (i, shard) in self.shards.iter().enumerate() {
            if mask & (1 << (i % 32)) == 0 {
                continue;
            }
            let s = lock(shard);
            if let Some(h) = s.get(key).and_then(|e| e.hist.as_deref()) {
                let _ = scratch.add(h);
            }
        }
    }

    /// Pass one, sorted by total time descending, then fingerprint and tag.
    fn sorted(&self) -> Vec<(Key, Agg)> {
        let mut rows: Vec<(Key, Agg)> = self.collect().into_iter().collect();
        rows.sort_by(|a, b| {
            b.1.total_us
                .cmp(&a.1.total_us)
                .then(a.0.0.cmp(&b.0.0))
                .then(a.0.1.0.cmp(&b.0.1.0))
        });
        rows
    }

    /// SHOW STATEMENTS rows.
    pub(crate) fn rows(
        &self,
        names: &[(Arc<str>, Arc<str>)],
        texts: &TextMap,
    ) -> Vec<StatementRow> {
        let sorted = self.sorted();
        let mut scratch = scratch_histogram();
        let mut out = Vec::with_capacity(sorted.len());
        for (key, a) in sorted {
            let (p50, p95, p99) = match scratch.as_mut() {
                Some(h) => {
                    self.merge_into(&key, a.shards, h);
                    if h.is_empty() {
                        (0, 0, 0)
                    } else {
                        (
                            h.value_at_quantile(0.50).min(a.max_us),
                            h.value_at_quantile(0.95).min(a.max_us),
                            h.value_at_quantile(0.99).min(a.max_us),
                        )
                    }
                }
                None => (0, 0, 0),
            };
            let (database, user) = tag_names(names, key.1);
            let query = if key.0 == OTHER_FINGERPRINT {
                "other".to_owned()
            } else {
                a.text
                    .or_else(|| texts.get(key.0))
                    .map(|t| t.to_string())
                    .unwrap_or_default()
            };
            out.push(StatementRow {
                fingerprint: key.0,
                database,
                user,
                query,
                calls: a.calls,
                errors: a.errors,
                rows: a.rows,
                total_us: a.total_us,
                mean_us: if a.calls == 0 {
                    0.0
                } else {
                    a.total_us as f64 / a.calls as f64
                },
                p50_us: p50,
                p95_us: p95,
                p99_us: p99,
                max_us: a.max_us,
            });
        }
        out
    }

    /// SHOW HISTOGRAM buckets of `fp` over all tags.
    pub(crate) fn histogram(&self, fp: Fingerprint) -> Option<Vec<HistogramBucket>> {
        let mut scratch = scratch_histogram();
        let mut found = false;
        for shard in self.shards.iter() {
            let s = lock(shard);
            let mut add = |e: &Entry| {
                found = true;
                if let (Some(sc), Some(h)) = (scratch.as_mut(), e.hist.as_deref()) {
                    let _ = sc.add(h);
                }
            };
            if fp == OTHER_FINGERPRINT {
                s.others.values().for_each(&mut add);
            } else {
                s.entries
                    .iter()
                    .filter(|(k, _)| k.0 == fp)
                    .for_each(|(_, e)| add(e));
            }
        }
        if !found {
            return None;
        }
        let mut out: Vec<HistogramBucket> = Vec::new();
        if let Some(h) = scratch.as_ref() {
            for v in h.iter_recorded() {
                let le = le_1_2_5(h.lowest_equivalent(v.value_iterated_to()));
                let n = v.count_since_last_iteration();
                match out.last_mut() {
                    Some(b) if b.le_us == le => b.count = b.count.saturating_add(n),
                    _ => out.push(HistogramBucket {
                        le_us: le,
                        count: n,
                    }),
                }
            }
        }
        Some(out)
    }

    /// The `n` rows with the most total time ("other" excluded) as fixed
    /// Prometheus buckets.
    pub(crate) fn top_buckets(
        &self,
        n: usize,
        names: &[(Arc<str>, Arc<str>)],
    ) -> Vec<StatementBuckets> {
        let mut scratch = scratch_histogram();
        let mut out = Vec::new();
        for (key, a) in self
            .sorted()
            .into_iter()
            .filter(|(k, _)| k.0 != OTHER_FINGERPRINT)
            .take(n)
        {
            let mut counts = [0u64; LATENCY_BUCKETS];
            let mut count = 0u64;
            if let Some(h) = scratch.as_mut() {
                self.merge_into(&key, a.shards, h);
                for v in h.iter_recorded() {
                    let lo = h.lowest_equivalent(v.value_iterated_to());
                    let i = LATENCY_BOUNDS_US.partition_point(|&b| b < lo);
                    let c = v.count_since_last_iteration();
                    counts[i] = counts[i].saturating_add(c);
                    count = count.saturating_add(c);
                }
            }
            let (database, user) = tag_names(names, key.1);
            out.push(StatementBuckets {
                fingerprint: key.0,
                database,
                user,
                latency: Buckets::from_counts(&counts, count, a.total_us),
            });
        }
        out
    }

    #[cfg(test)]
    fn shard_len(&self, i: usize) -> usize {
        lock(&self.shards[i]).entries.len()
    }
}

fn tag_names(names: &[(Arc<str>, Arc<str>)], tag: PoolTag) -> (String, String) {
    names
        .get(tag.0 as usize)
        .map(|(d, u)| (d.to_string(), u.to_string()))
        .unwrap_or_else(|| ("*".to_owned(), "*".to_owned()))
}

/// The smallest 1-2-5 number (1, 2, 5, 10, 20, 50, ...) at least `v`.
fn le_1_2_5(v: u64) -> u64 {
    let mut base: u64 = 1;
    loop {
        for m in [1u64, 2, 5] {
            let b = base.saturating_mul(m);
            if v <= b {
                return b;
            }
        }
        match base.checked_mul(10) {
            Some(next) => base = next,
            None => return u64::MAX,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::cfg;
    use super::super::{Insight, OTHER_FINGERPRINT};
    use super::*;

    #[test]
    fn one_two_five_progression() {
        assert_eq!(le_1_2_5(0), 1);
        assert_eq!(le_1_2_5(1), 1);
        assert_eq!(le_1_2_5(2), 2);
        assert_eq!(le_1_2_5(3), 5);
        assert_eq!(le_1_2_5(6), 10);
        assert_eq!(le_1_2_5(50_000), 50_000);
        assert_eq!(le_1_2_5(50_001), 100_000);
        assert_eq!(le_1_2_5(u64::MAX), u64::MAX);
    }

    #[test]
    fn records_from_several_threads_sum_up() {
        let ins = Insight::new(&cfg());
        let t = ins.tag("app", "alice");
        ins.note_text(Fingerprint(11), "select $1");
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let ins = ins.clone();
                std::thread::spawn(move || {
                    for k in 0..1000u64 {
                        ins.record(t, Fingerprint(11), 100 + k % 7, 2, k % 100 == 0);
                        ins.record(t, Fingerprint(12 + i % 2), 10, 0, false);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let rows = ins.statements();
        assert_eq!(rows.len(), 3, "{rows:?}");
        let r = &rows[0];
        assert_eq!(r.fingerprint, Fingerprint(11));
        assert_eq!(r.query, "select $1");
        assert_eq!((r.database.as_str(), r.user.as_str()), ("app", "alice"));
        assert_eq!(r.calls, 6000);
        assert_eq!(r.errors, 60);
        assert_eq!(r.rows, 12_000);
        let expect: u64 = 6 * (0..1000u64).map(|k| 100 + k % 7).sum::<u64>();
        assert_eq!(r.total_us, expect);
        assert_eq!(r.max_us, 106);
        assert!((r.mean_us - expect as f64 / 6000.0).abs() < 1e-9);
        assert!((100..=106).contains(&r.p50_us));
        assert_eq!(rows[1].calls + rows[2].calls, 6000);
        assert!(rows[1].total_us >= rows[2].total_us);
        let hist = ins.histogram(Fingerprint(11)).unwrap();
        assert_eq!(hist.iter().map(|b| b.count).sum::<u64>(), 6000);
    }

    #[test]
    fn percentiles_are_within_one_percent() {
        let ins = Insight::new(&cfg());
        let t = ins.tag("app", "alice");
        for _ in 0..20 {
            ins.record(t, Fingerprint(3), 50_000, 1, false);
        }
        let r = &ins.statements()[0];
        for p in [r.p50_us, r.p95_us, r.p99_us] {
            assert!(p.abs_diff(50_000) <= 500, "{p}");
        }
        assert_eq!(r.max_us, 50_000);
        assert_eq!(r.mean_us, 50_000.0);
        let h = ins.histogram(Fingerprint(3)).unwrap();
        assert_eq!(
            h,
            vec![HistogramBucket {
                le_us: 50_000,
                count: 20
            }]
        );
    }

    #[test]
    fn histogram_buckets_sum_to_calls_and_ascend() {
        let ins = Insight::new(&cfg());
        let a = ins.tag("app", "alice");
        let b = ins.tag("app", "bob");
        let mut calls = 0;
        for v in [
            0u64,
            1,
            3,
            7,
            99,
            250,
            1_000,
            12_345,
            999_999,
            7_200_000_000,
        ] {
            ins.record(a, Fingerprint(9), v, 0, false);
            ins.record(b, Fingerprint(9), v * 2, 0, false);
            calls += 2;
        }
        let h = ins.histogram(Fingerprint(9)).unwrap();
        assert_eq!(h.iter().map(|b| b.count).sum::<u64>(), calls);
        assert!(h.windows(2).all(|w| w[0].le_us < w[1].le_us), "{h:?}");
        assert!(h.iter().all(|b| b.count > 0));
        // Values above one hour are clamped into the 5e9 bucket.
        assert_eq!(h.last().unwrap().le_us, 5_000_000_000);
        assert!(ins.histogram(Fingerprint(10)).is_none());
        // The exact max survives the clamp.
        let rows = ins.statements();
        assert_eq!(rows.iter().map(|r| r.max_us).max(), Some(14_400_000_000));
    }

    #[test]
    fn eviction_folds_least_recent_into_other_and_keeps_totals() {
        let mut c = cfg();
        c.max_statements = 20;
        let ins = Insight::new(&c);
        let t = ins.tag("app", "alice");
        for fp in 1..=100u64 {
            ins.note_text(Fingerprint(fp), &format!("select {fp}"));
        }
        let mut total = 0;
        // All on this thread: one shard.
        for round in 0..3u64 {
            for fp in 1..=100u64 {
                let us = fp * 10 + round;
                ins.record(t, Fingerprint(fp), us, 1, fp == 1);
                total += us;
            }
        }
        // The most recent statement is still tracked by itself.
        ins.record(t, Fingerprint(100), 5, 1, false);
        total += 5;
        let i = shard_index() % SHARDS;
        assert!(ins.stats.shard_len(i) <= 20);
        let rows = ins.statements();
        assert!(rows.len() <= 21);
        let other = rows
            .iter()
            .find(|r| r.fingerprint == OTHER_FINGERPRINT)
            .expect("other row");
        assert_eq!(other.query, "other");
        assert_eq!(
            (other.database.as_str(), other.user.as_str()),
            ("app", "alice")
        );
        assert!(other.calls > 0);
        assert_eq!(rows.iter().map(|r| r.total_us).sum::<u64>(), total);
        assert_eq!(rows.iter().map(|r| r.calls).sum::<u64>(), 301);
        assert_eq!(rows.iter().map(|r| r.rows).sum::<u64>(), 301);
        assert_eq!(rows.iter().map(|r| r.errors).sum::<u64>(), 3);
        assert_eq!(rows.iter().map(|r| r.max_us).max(), Some(1002));
        let kept = rows
            .iter()
            .find(|r| r.fingerprint == Fingerprint(100))
            .unwrap();
        assert_eq!(kept.query, "select 100");
        // Re-inserted in the last round (after being folded), plus the
        // final record.
        assert_eq!(kept.calls, 2);
        let h = ins.histogram(OTHER_FINGERPRINT).unwrap();
        assert_eq!(h.iter().map(|b| b.count).sum::<u64>(), other.calls);
        // Rows are sorted by total time.
        assert!(rows.windows(2).all(|w| w[0].total_us >= w[1].total_us));
    }

    #[test]
    fn shrinking_max_statements_takes_effect_at_next_insert() {
        let ins = Insight::new(&cfg());
        let t = ins.tag("app", "alice");
        for fp in 1..=50u64 {
            ins.record(t, Fingerprint(fp), 10, 0, false);
        }
        let mut c = cfg();
        c.max_statements = 5;
        ins.reconfigure(&c);
        ins.record(t, Fingerprint(51), 10, 0, false);
        assert!(ins.stats.shard_len(shard_index() % SHARDS) <= 5);
        let rows = ins.statements();
        assert_eq!(rows.iter().map(|r| r.calls).sum::<u64>(), 51);
    }

    #[test]
    fn reset_clears_everything_including_other() {
        let mut c = cfg();
        c.max_statements = 2;
        let ins = Insight::new(&c);
        let t = ins.tag("app", "alice");
        for fp in 1..=10u64 {
            ins.record(t, Fingerprint(fp), 10, 0, false);
        }
        assert!(
            ins.statements()
                .iter()
                .any(|r| r.fingerprint == OTHER_FINGERPRINT)
        );
        ins.reset_statements();
        assert!(ins.statements().is_empty());
        assert!(ins.histogram(OTHER_FINGERPRINT).is_none());
        assert!(ins.histogram(Fingerprint(10)).is_none());
        assert!(ins.top_statements_buckets(10).is_empty());
        ins.record(t, Fingerprint(1), 10, 0, false);
        assert_eq!(ins.statements().len(), 1);
    }

    #[test]
    fn fingerprint_zero_counts_as_other_and_unknown_text_is_empty() {
        let ins = Insight::new(&cfg());
        let t = ins.tag("app", "alice");
        ins.record(t, OTHER_FINGERPRINT, 10, 0, false);
        ins.record(t, Fingerprint(77), 10, 0, false);
        let rows = ins.statements();
        assert_eq!(rows.len(), 2);
        let other = rows
            .iter()
            .find(|r| r.fingerprint == OTHER_FINGERPRINT)
            .unwrap();
        assert_eq!(other.query, "other");
        let r = rows
            .iter()
            .find(|r| r.fingerprint == Fingerprint(77))
            .unwrap();
        assert_eq!(r.query, "");
        // A text noted after the first record still shows.
        ins.note_text(Fingerprint(77), "select 1");
        let rows = ins.statements();
        let r = rows
            .iter()
            .find(|r| r.fingerprint == Fingerprint(77))
            .unwrap();
        assert_eq!(r.query, "select 1");
    }

    #[test]
    fn top_statements_buckets_are_cumulative() {
        let ins = Insight::new(&cfg());
        let t = ins.tag("app", "alice");
        for v in [50u64, 100, 150, 1_000, 20_000_000] {
            ins.record(t, Fingerprint(1), v, 0, false);
        }
        ins.record(t, Fingerprint(2), 10, 0, false);
        ins.record(t, OTHER_FINGERPRINT, 100_000_000, 0, false);
        let top = ins.top_statements_buckets(1);
        assert_eq!(top.len(), 1);
        let s = &top[0];
        assert_eq!(s.fingerprint, Fingerprint(1));
        assert_eq!(s.database, "app");
        let b = &s.latency;
        assert_eq!(b.count, 5);
        assert_eq!(b.sum_us, 20_001_300);
        assert_eq!(b.cumulative[0], 2); // le 100
        assert_eq!(b.cumulative[1], 3); // le 250
        assert_eq!(b.cumulative[3], 4); // le 1000
        assert_eq!(b.cumulative[LATENCY_BUCKETS - 2], 4); // le 10 s
        assert_eq!(b.cumulative[LATENCY_BUCKETS - 1], 5); // +Inf
        assert!(b.cumulative.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(ins.top_statements_buckets(10).len(), 2);
    }

    #[test]
    fn histogram_memory_grows_with_the_slowest_value() {
        let mut e = Entry::empty(None);
        e.record(100, 0, false, 1);
        let small = e.hist.as_ref().unwrap().distinct_values();
        e.record(10_000, 0, false, 2);
        let ms = e.hist.as_ref().unwrap().distinct_values();
        e.record(u64::MAX, 0, false, 3);
        let full = e.hist.as_ref().unwrap().distinct_values();
        assert_eq!(small, 256);
        assert_eq!(ms, 1024);
        assert_eq!(full, 3328);
        // Still a working histogram after the trimming clones.
        let h = e.hist.as_ref().unwrap();
        assert_eq!(h.len(), 3);
        assert!(h.is_auto_resize());
        assert_eq!(h.value_at_quantile(0.0), 100);
        assert_eq!(e.max_us, u64::MAX);
    }
}
