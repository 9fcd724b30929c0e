//! Insight: per-statement latency, N+1 bursts, leaked transactions and pool
//! latency distributions, shared by the PostgreSQL and MySQL front ends.
//!
//! # Where it sits
//!
//! A client session normalizes each statement it forwards (see
//! `sqlmux_protocol::sql`) and then, with the [`Fingerprint`] it got:
//!
//! 1. calls [`Insight::note_text`] so the admin port can show the normalized
//!    text (cheap once the text is known);
//! 2. calls [`SessionInsight::observe`] when the execution starts, which
//!    watches for N+1 bursts in that session;
//! 3. calls [`Insight::record`] when the server answered (CommandComplete /
//!    ErrorResponse, or the MySQL OK/ERR), with the elapsed time and rows.
//!
//! Per transaction the session core calls [`Insight::record_lease`] (the
//! transaction's time and, once per lease, the checkout wait). A session that sees its
//! client idle inside a transaction past `leaked_transaction.idle` calls
//! [`Insight::leak_open`] and later [`Insight::leak_close`] (or
//! [`Insight::leak_abandoned`] when the client vanished first).
//!
//! The admin port (SHOW STATEMENTS, SHOW HISTOGRAM, SHOW N_PLUS_ONE, SHOW
//! LEAKS, RESET STATEMENTS) and `/metrics` read through the reader methods,
//! which lock and merge; they are meant to be called rarely.
//!
//! # Concurrency
//!
//! The hot-path methods ([`Insight::record`], [`Insight::record_checkout_wait`],
//! [`Insight::record_transaction`], [`Insight::note_text`] for a known text,
//! [`Insight::enabled`]) take no global lock: statistics live in
//! [`SHARDS`](crate::stats::SHARDS) cache-padded shards, one picked per worker
//! thread with [`crate::stats::shard_index`], each behind a mutex that only
//! the threads mapped to that shard touch (uncontended in practice); texts
//! live in 16 fingerprint-sharded `RwLock`s that are read-locked when the
//! text is known. Readers lock one shard at a time, so a reader never holds
//! up recording on more than one shard, and a reader may see a statement
//! recorded in one shard and not yet in another: the numbers are consistent
//! per shard, not across shards.
//!
//! Settings live in atomics: [`Insight::reconfigure`] (RELOAD) takes effect
//! for the next event on every thread without a lock. N+1 detection runs in
//! the session's own [`SessionInsight`] (no shared state) and touches the
//! shared event log only when a burst is detected. Leak bookkeeping is one
//! mutex: it is touched only when a transaction has already been idle for
//! seconds.
//!
//! Locks are never poisoned for us: a panic elsewhere while holding one
//! leaves plain counters behind, so every lock recovers the guard.
//!
//! # Memory
//!
//! See [`Insight::record`] for the per-statement bound; events and leak rows
//! are kept in rings of [`EVENT_RING`] entries; interned (database, user)
//! pairs are capped at [`MAX_TAGS`].

mod hash;
mod latency;
mod leaks;
mod nplusone;
mod statements;
mod texts;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

pub use sqlmux_protocol::sql::Fingerprint;

pub use latency::{Buckets, LATENCY_BOUNDS_US, LATENCY_BUCKETS, PoolLatency, StatementBuckets};
pub use leaks::{LeakId, LeakRow, LeakState};
pub use nplusone::{NPlusOneEvent, SessionInsight};
pub use statements::{HISTOGRAM_MAX_US, HistogramBucket, StatementRow};
pub use texts::RecentlyNoted;

use crate::client::ClientInfo;
use crate::clock::Tick;
use crate::config::{InsightConfig, LeakAction};

/// Entries kept in the N+1 event ring and in the ring of closed leaks.
pub const EVENT_RING: usize = 1000;

/// Most (database, user) pairs [`Insight::tag`] interns; further pairs share
/// [`PoolTag::UNKNOWN`]. Pairs come from configured databases and users
/// (tags are taken after login), so the cap is a safety net.
pub const MAX_TAGS: usize = 65_536;

/// The fingerprint of the "other" row: statements folded out of the
/// per-statement table, and executions recorded with fingerprint 0.
pub const OTHER_FINGERPRINT: Fingerprint = Fingerprint(0);

/// Interned (database, user) pair, taken once at client login with
/// [`Insight::tag`] and passed with every recording so the hot path never
/// hashes names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolTag(pub u32);

impl PoolTag {
    /// The pair `("*", "*")`: used when [`MAX_TAGS`] is reached, and what a
    /// tag that [`Insight::tag`] never handed out is counted as.
    pub const UNKNOWN: PoolTag = PoolTag(0);
}

/// Shared insight state: one per proxy, behind an `Arc`, `Send + Sync`.
///
/// See the [module documentation](self) for the flow and the concurrency
/// rules.
pub struct Insight {
    enabled: AtomicBool,
    max_statements: AtomicUsize,
    n1_threshold: AtomicU32,
    n1_window_ns: AtomicU64,
    leak_idle_ns: AtomicU64,
    leak_action: AtomicU8,
    tags: RwLock<TagTable>,
    tag_count: AtomicU32,
    texts: texts::TextMap,
    stats: statements::StatShards,
    latency: latency::LatencyShards,
    bursts: nplusone::BurstLog,
    leaks: leaks::LeakLog,
}

impl std::fmt::Debug for Insight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Insight")
            .field("enabled", &self.enabled())
            .field("max_statements", &self.max_statements())
            .field("n_plus_one", &self.n_plus_one_settings())
            .field("leak", &self.leak_settings())
            .field("tags", &self.tag_count.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct TagTable {
    by_name: HashMap<(String, String), u32>,
    names: Vec<(Arc<str>, Arc<str>)>,
}

fn action_to_u8(a: LeakAction) -> u8 {
    match a {
        LeakAction::Warn => 0,
        LeakAction::Rollback => 1,
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Insight {
    /// Creates the shared state from the `[insight]` settings.
    pub fn new(cfg: &InsightConfig) -> Arc<Insight> {
        let star: Arc<str> = Arc::from("*");
        let tags = TagTable {
            by_name: HashMap::new(),
            names: vec![(star.clone(), star)],
        };
        let insight = Insight {
            enabled: AtomicBool::new(cfg.enabled),
            max_statements: AtomicUsize::new(cfg.max_statements.max(1)),
            n1_threshold: AtomicU32::new(cfg.n_plus_one_threshold),
            n1_window_ns: AtomicU64::new(duration_ns(cfg.n_plus_one_window)),
            leak_idle_ns: AtomicU64::new(duration_ns(cfg.leak_idle)),
            leak_action: AtomicU8::new(action_to_u8(cfg.leak_action)),
            tags: RwLock::new(tags),
            tag_count: AtomicU32::new(1),
            texts: texts::TextMap::new(),
            stats: statements::StatShards::new(),
            latency: latency::LatencyShards::new(),
            bursts: nplusone::BurstLog::new(),
            leaks: leaks::LeakLog::new(),
        };
        Arc::new(insight)
    }

    /// Applies new `[insight]` settings (RELOAD). Each takes effect for the
    /// next event: `enabled` for the next statement, the N+1 threshold and
    /// window for the next execution a session observes, `max_statements`
    /// at the next insertion into each shard (a shard over the new limit
    /// then evicts down to it), the leak idle time and action for the next
    /// detection. Nothing recorded so far is dropped.
    pub fn reconfigure(&self, cfg: &InsightConfig) {
        self.enabled.store(cfg.enabled, Ordering::Relaxed);
        self.max_statements
            .store(cfg.max_statements.max(1), Ordering::Relaxed);
        self.n1_threshold
            .store(cfg.n_plus_one_threshold, Ordering::Relaxed);
        self.n1_window_ns
            .store(duration_ns(cfg.n_plus_one_window), Ordering::Relaxed);
        self.leak_idle_ns
            .store(duration_ns(cfg.leak_idle), Ordering::Relaxed);
        self.leak_action
            .store(action_to_u8(cfg.leak_action), Ordering::Relaxed);
    }

    /// Whether statements are recorded at all (`insight.enabled`). One
    /// relaxed atomic load; sessions check it before normalizing.
    ///
    /// When false, [`Insight::record`] and [`SessionInsight::observe`] do
    /// nothing. Pool latencies and leak bookkeeping are kept regardless:
    /// they are pool facts, and the leak action protects the pool.
    #[inline]
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// The N+1 burst threshold (at least 2) and window.
    #[inline]
    pub fn n_plus_one_settings(&self) -> (u32, Duration) {
        (
            self.n1_threshold.load(Ordering::Relaxed).max(2),
            Duration::from_nanos(self.n1_window_ns.load(Ordering::Relaxed)),
        )
    }

    /// The idle time after which an open transaction counts as leaked, and
    /// what to do with it.
    #[inline]
    pub fn leak_settings(&self) -> (Duration, LeakAction) {
        let action = match self.leak_action.load(Ordering::Relaxed) {
            1 => LeakAction::Rollback,
            _ => LeakAction::Warn,
        };
        (
            Duration::from_nanos(self.leak_idle_ns.load(Ordering::Relaxed)),
            action,
        )
    }

    fn max_statements(&self) -> usize {
        self.max_statements.load(Ordering::Relaxed).max(1)
    }

    /// Interns a (database, user) pair and returns its tag. Called once per
    /// client at login (after authentication, so the names are known ones),
    /// not per statement: it takes a read lock and, for a new pair, a write
    /// lock and allocates. Tags are never released; after [`MAX_TAGS`]
    /// pairs every new pair gets [`PoolTag::UNKNOWN`].
    pub fn tag(&self, database: &str, user: &str) -> PoolTag {
        let key = (database.to_owned(), user.to_owned());
        if let Some(&id) = read(&self.tags).by_name.get(&key) {
            return PoolTag(id);
        }
        let mut tags = write(&self.tags);
        if let Some(&id) = tags.by_name.get(&key) {
            return PoolTag(id);
        }
        if tags.names.len() >= MAX_TAGS {
            return PoolTag::UNKNOWN;
        }
        let id = tags.names.len() as u32;
        tags.names.push((Arc::from(database), Arc::from(user)));
        tags.by_name.insert(key, id);
        self.tag_count.store(id + 1, Ordering::Release);
        PoolTag(id)
    }

    /// The (database, user) names of a tag; `("*", "*")` for
    /// [`PoolTag::UNKNOWN`] and for ids never handed out.
    pub fn tag_names(&self, tag: PoolTag) -> (Arc<str>, Arc<str>) {
        let tags = read(&self.tags);
        let i = (tag.0 as usize).min(tags.names.len());
        tags.names
            .get(i)
            .or_else(|| tags.names.first())
            .cloned()
            .unwrap_or_else(|| (Arc::from("*"), Arc::from("*")))
    }

    /// Every tag's names, indexed by tag id (for readers).
    fn all_tag_names(&self) -> Vec<(Arc<str>, Arc<str>)> {
        read(&self.tags).names.clone()
    }

    /// A tag as an index that is safe to use: ids never handed out become
    /// [`PoolTag::UNKNOWN`], so a forged tag cannot make a table grow.
    #[inline]
    fn checked_tag(&self, tag: PoolTag) -> PoolTag {
        if tag.0 < self.tag_count.load(Ordering::Acquire) {
            tag
        } else {
            PoolTag::UNKNOWN
        }
    }

    /// Remembers the normalized text of a fingerprint; the first text wins.
    ///
    /// Cost when the fingerprint is already known: one read lock on one of
    /// 16 fingerprint-sharded maps and one hash lookup, no allocation.
    /// Otherwise the text (cut to `sqlmux_protocol::sql::MAX_TEXT` bytes) is
    /// copied once. Texts no statement row, event or leak row refers to any
    /// more are dropped when a text shard grows past about
    /// `2 × max_statements / 16` entries, so the map stays bounded. The
    /// "other" fingerprint 0 has no text.
    pub fn note_text(&self, fp: Fingerprint, text: &str) {
        if fp == OTHER_FINGERPRINT {
            return;
        }
        self.texts.note(fp, text, self.max_statements());
    }

    /// The normalized text noted for `fp`, if still known.
    pub fn text(&self, fp: Fingerprint) -> Option<Arc<str>> {
        self.texts.get(fp)
    }

    /// Records one finished statement execution: `elapsed_us` from the
    /// execution request to the server's completion, `rows` affected or
    /// returned, `error` when the server answered with an error. HOT PATH.
    ///
    /// Takes this thread's shard mutex (uncontended), one hash lookup, and
    /// one histogram record; allocates only the first time a (fingerprint,
    /// tag) pair is seen in a shard. Executions with fingerprint 0 count in
    /// the "other" row of their tag. No-op when insight is disabled.
    ///
    /// # Memory bound
    ///
    /// Each shard tracks at most `max_statements` (fingerprint, database,
    /// user) entries; when an insertion goes over, the least recently used
    /// ~10% are folded into the shard's per-(database, user) "other" entry
    /// (amortized: one O(n) selection every n/10 insertions). An entry costs
    /// about 110 bytes (key, counters, text pointer, map slot) plus its
    /// histogram, 96 bytes plus counters that grow with the slowest
    /// execution seen: 1 KiB under 256 µs, 2 KiB to 1 ms, 4 KiB to 16 ms,
    /// 7 KiB to 2 s, at most 13 KiB (one hour; slower values are clamped).
    /// Only shards of threads that record statements fill up, so the bound
    /// is `min(recording threads, 16) × max_statements × (~0.2 KiB +
    /// histogram)` plus one "other" entry per (database, user) and shard:
    /// with the default 5000 and statements under 16 ms, about 21 MiB per
    /// worker thread; 66 MiB per worker in the worst case. Texts are shared
    /// and bounded separately (see [`Insight::note_text`]).
    #[inline]
    pub fn record(&self, tag: PoolTag, fp: Fingerprint, elapsed_us: u64, rows: u64, error: bool) {
        if !self.enabled() {
            return;
        }
        let tag = self.checked_tag(tag);
        self.stats.record(
            tag,
            fp,
            elapsed_us,
            rows,
            error,
            self.max_statements(),
            &self.texts,
        );
    }

    /// Records how long one checkout waited for a server (0 when one was
    /// idle). HOT PATH: this thread's shard mutex, no allocation after the
    /// tag's first sample in the shard. Recorded even when insight is
    /// disabled.
    #[inline]
    pub fn record_checkout_wait(&self, tag: PoolTag, wait_us: u64) {
        let tag = self.checked_tag(tag);
        self.latency
            .record(tag, latency::Which::CheckoutWait, wait_us);
    }

    /// Records a transaction's time and, for the first transaction of a
    /// lease, how long its checkout waited: both under one shard lock.
    /// HOT PATH, like [`Insight::record_checkout_wait`].
    #[inline]
    pub fn record_lease(&self, tag: PoolTag, wait_us: Option<u64>, xact_us: u64) {
        let tag = self.checked_tag(tag);
        self.latency.record_lease(tag, wait_us, xact_us);
    }

    /// Records how long one transaction held its lease. HOT PATH, like
    /// [`Insight::record_checkout_wait`].
    #[inline]
    pub fn record_transaction(&self, tag: PoolTag, xact_us: u64) {
        let tag = self.checked_tag(tag);
        self.latency
            .record(tag, latency::Which::Transaction, xact_us);
    }

    /// SHOW STATEMENTS: one row per (fingerprint, database, user), merged
    /// over shards, sorted by total time (descending), then fingerprint.
    ///
    /// Rows with fingerprint 0 and query "other" hold what was folded out
    /// of the table (one per database and user that had statements folded),
    /// with exact calls/errors/rows/total/max and merged percentiles. A
    /// statement whose text was never noted (or was dropped, see
    /// [`Insight::note_text`]) has an empty query.
    ///
    /// Percentiles come from 2-significant-figure histograms (within 1%),
    /// capped at the exact max. Locks one shard at a time; allocates.
    pub fn statements(&self) -> Vec<StatementRow> {
        let names = self.all_tag_names();
        self.stats.rows(&names, &self.texts)
    }

    /// SHOW HISTOGRAM: the latency distribution of `fp` merged over all
    /// databases and users, or `None` when the fingerprint is not tracked.
    /// Fingerprint 0 gives the "other" rows' distribution.
    ///
    /// Buckets follow a 1-2-5 progression in microseconds (1, 2, 5, 10, 20,
    /// 50, ... 1 000 000 000, 2 000 000 000, 5 000 000 000): each bucket
    /// holds the samples in (previous le, le]; only non-empty buckets are
    /// returned, ascending; their counts add up to the calls. A sample is
    /// placed by the lower edge of its histogram cell, so a value within 1%
    /// above a bound may land in the bucket below it.
    pub fn histogram(&self, fp: Fingerprint) -> Option<Vec<HistogramBucket>> {
        self.stats.histogram(fp)
    }

    /// RESET STATEMENTS: clears every statement entry in every shard,
    /// including the "other" rows. Noted texts are kept (prepared statements
    /// are not re-parsed, so their texts would not come back); N+1 events,
    /// leak rows and pool latencies are not touched.
    pub fn reset_statements(&self) {
        self.stats.reset();
    }

    /// SHOW N_PLUS_ONE: detected bursts, newest first, at most
    /// [`EVENT_RING`]. An ongoing burst shows its repeats so far.
    pub fn n_plus_one_events(&self) -> Vec<NPlusOneEvent> {
        self.bursts.events()
    }

    /// Bursts detected since start.
    pub fn n_plus_one_total(&self) -> u64 {
        self.bursts.total()
    }

    /// Bursts detected since start per fingerprint, most first. At most
    /// 10 000 fingerprints are counted separately; further ones count under
    /// fingerprint 0.
    pub fn n_plus_one_by_fingerprint(&self) -> Vec<(Fingerprint, u64)> {
        self.bursts.by_fingerprint()
    }

    /// Records that `client` has been idle inside a transaction past the
    /// leak threshold. The row stays open (with live ages) until
    /// [`Insight::leak_close`]; its action is the one configured now.
    ///
    /// The session must close every id it opens (at the latest when it
    /// ends); at most 100 000 leaks are held open, beyond that the id is
    /// still returned and counted but no row is kept.
    pub fn leak_open(
        &self,
        client: &ClientInfo,
        xact_started: Tick,
        idle_since: Tick,
        last_query: Option<Fingerprint>,
    ) -> LeakId {
        let action = self.leak_settings().1;
        let text = last_query.and_then(|fp| self.text(fp));
        self.leaks
            .open(client, xact_started, idle_since, last_query, text, action)
    }

    /// Ends an open leak: `Finished` (the client ended the transaction),
    /// `RolledBack` (the leak action rolled it back) or `Abandoned` (the
    /// client disconnected inside it). Ages are frozen now and the row moves
    /// to the ring of closed leaks. Unknown ids and `Open` are ignored.
    pub fn leak_close(&self, id: LeakId, state: LeakState) {
        self.leaks.close(id, state);
    }

    /// Records a transaction the client abandoned (disconnected inside it)
    /// before it became an open leak: it goes straight to the ring of
    /// closed leaks as `Abandoned` and counts in [`Insight::leaks_total`].
    pub fn leak_abandoned(
        &self,
        client: &ClientInfo,
        xact_started: Tick,
        idle_since: Tick,
        last_query: Option<Fingerprint>,
    ) {
        let action = self.leak_settings().1;
        let text = last_query.and_then(|fp| self.text(fp));
        self.leaks
            .abandoned(client, xact_started, idle_since, last_query, text, action);
    }

    /// SHOW LEAKS: open leaks first (oldest detection first, ages computed
    /// now), then closed ones newest first (at most [`EVENT_RING`], ages as
    /// at close).
    pub fn leaks(&self) -> Vec<LeakRow> {
        self.leaks.rows()
    }

    /// Leaks detected since start: opened plus recorded as abandoned.
    pub fn leaks_total(&self) -> u64 {
        self.leaks.total()
    }

    /// Leaks currently open.
    pub fn open_leaks(&self) -> usize {
        self.leaks.open_count()
    }

    /// Checkout-wait and transaction-duration distributions per tag, as
    /// cumulative Prometheus buckets at [`LATENCY_BOUNDS_US`]: one entry per
    /// interned tag (zeros when nothing was recorded), plus
    /// [`PoolTag::UNKNOWN`] when it has samples; ordered by tag id.
    pub fn pool_latencies(&self) -> Vec<PoolLatency> {
        let names = self.all_tag_names();
        self.latency.merged(&names)
    }

    /// For `/metrics`: the `n` (fingerprint, database, user) rows with the
    /// most total time (the "other" rows excluded), as cumulative buckets at
    /// [`LATENCY_BOUNDS_US`] with count and sum. Sorted by total time,
    /// descending.
    pub fn top_statements_buckets(&self, n: usize) -> Vec<StatementBuckets> {
        let names = self.all_tag_names();
        self.stats.top_buckets(n, &names)
    }
}

/// Locks a mutex, recovering the guard if another thread panicked with it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Read-locks, recovering from poisoning.
pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write-locks, recovering from poisoning.
pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

/// A value on its own cache lines (128 bytes covers adjacent-line
/// prefetching on x86 and the 128-byte lines of some ARM cores).
#[repr(align(128))]
pub(crate) struct Padded<T>(pub T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;
    use crate::config::Protocol;
    use std::net::SocketAddr;

    pub fn cfg() -> InsightConfig {
        InsightConfig {
            enabled: true,
            max_statements: 5000,
            n_plus_one_threshold: 10,
            n_plus_one_window: Duration::from_secs(1),
            leak_idle: Duration::from_secs(5),
            leak_action: LeakAction::Warn,
        }
    }

    pub fn client(port: u16) -> ClientInfo {
        let c = ClientInfo::new(
            Protocol::Postgres,
            SocketAddr::from(([127, 0, 0, 1], port)).into(),
            SocketAddr::from(([127, 0, 0, 1], 6432)).into(),
            (1, port as i32),
        );
        *c.database.lock().unwrap() = "app".into();
        *c.user.lock().unwrap() = "alice".into();
        *c.application_name.lock().unwrap() = "orm".into();
        c
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;

    #[test]
    fn tags_are_interned_and_forged_tags_count_as_unknown() {
        let ins = Insight::new(&cfg());
        let a = ins.tag("app", "alice");
        let b = ins.tag("app", "bob");
        assert_ne!(a, b);
        assert_ne!(a, PoolTag::UNKNOWN);
        assert_eq!(ins.tag("app", "alice"), a);
        let (db, user) = ins.tag_names(b);
        assert_eq!((&*db, &*user), ("app", "bob"));
        assert_eq!(ins.checked_tag(PoolTag(4_000_000_000)), PoolTag::UNKNOWN);
        let (db, _) = ins.tag_names(PoolTag(4_000_000_000));
        assert_eq!(&*db, "*");
    }

    #[test]
    fn reconfigure_changes_settings() {
        let ins = Insight::new(&cfg());
        assert_eq!(ins.n_plus_one_settings(), (10, Duration::from_secs(1)));
        let mut c = cfg();
        c.enabled = false;
        c.n_plus_one_threshold = 3;
        c.n_plus_one_window = Duration::from_millis(200);
        c.leak_idle = Duration::from_secs(9);
        c.leak_action = LeakAction::Rollback;
        ins.reconfigure(&c);
        assert!(!ins.enabled());
        assert_eq!(ins.n_plus_one_settings(), (3, Duration::from_millis(200)));
        assert_eq!(
            ins.leak_settings(),
            (Duration::from_secs(9), LeakAction::Rollback)
        );
        let t = ins.tag("app", "alice");
        ins.record(t, Fingerprint(7), 10, 1, false);
        assert!(ins.statements().is_empty());
    }

    #[test]
    fn insight_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Insight>();
        check::<SessionInsight>();
    }
}
