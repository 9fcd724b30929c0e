//! N+1 burst detection.
//!
//! Each client session owns a [`SessionInsight`] and feeds it every
//! statement execution it starts, in order. Detection is local to the
//! session (no locks, no shared writes); only a detected burst touches the
//! shared [`BurstLog`].
//!
//! # What counts as a burst
//!
//! A *run* is a sequence of consecutive executions of the same fingerprint
//! by one session, each at most `window` after the previous one.
//! Transaction-control statements (BEGIN, COMMIT, SAVEPOINT, ...) are
//! skipped: they neither extend nor break a run, and are never a parent.
//! The run ends when a different statement executes, when the gap to the
//! previous execution exceeds `window`, or when the session finishes.
//!
//! A run is a burst when
//!
//! - it has a *parent*: a different statement executed by the session
//!   immediately before the run began (the "1" of N+1; a run that follows a
//!   gap, or the session's first statement, has none), and
//! - at least `threshold` of its executions fall within `window`: the last
//!   `threshold` start times of the run span at most `window`.
//!
//! So a session that only repeats one statement (a benchmark, a poller),
//! interleaved statements (A B A B, a TPC-B-like mix) and runs slower than
//! `threshold` per `window` never fire. One run gives at most one event: it
//! is published when the condition first holds, and updated in place
//! (repeats, span) through atomics shared with the event ring until the run
//! ends.
//!
//! Per-session state is about 120 bytes plus, once a run with a parent
//! repeats, a ring of `min(threshold, 1024)` start times (16 bytes each)
//! allocated once and reused. For thresholds above 1024 only the last 1024
//! start times are checked against the window (the run must still reach
//! `threshold` executions).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use sqlmux_protocol::sql::Fingerprint;

use super::hash::Seeded;
use super::{EVENT_RING, Insight, OTHER_FINGERPRINT, lock};
use crate::addr::PeerAddr;
use crate::client::ClientInfo;
use crate::clock::Tick;

/// Largest start-time ring a session keeps.
const RING_CAP: usize = 1024;

/// Fingerprints counted separately in [`Insight::n_plus_one_by_fingerprint`].
const MAX_BURST_FPS: usize = 10_000;

/// One row of SHOW N_PLUS_ONE.
#[derive(Debug, Clone, PartialEq)]
pub struct NPlusOneEvent {
    /// When the burst was detected (wall clock).
    pub detected_at: SystemTime,
    /// Client's database.
    pub database: String,
    /// Client's user.
    pub user: String,
    /// Client address.
    pub client_addr: PeerAddr,
    /// Client's application_name at detection.
    pub application_name: String,
    /// The repeated statement.
    pub fingerprint: Fingerprint,
    /// Its normalized text (empty when unknown).
    pub query: String,
    /// Executions in the run (so far, while `ongoing`).
    pub repeats: u64,
    /// Time from the run's first to its last execution start, in ms.
    pub window_ms: f64,
    /// The statement executed just before the run.
    pub parent_fingerprint: Option<Fingerprint>,
    /// Its normalized text, when known.
    pub parent_query: Option<String>,
    /// The run has not ended yet.
    pub ongoing: bool,
}

/// A detected burst, shared by the session (which updates it) and the ring.
struct Burst {
    detected_at: SystemTime,
    database: String,
    user: String,
    client_addr: PeerAddr,
    application_name: String,
    fingerprint: Fingerprint,
    query: Option<Arc<str>>,
    parent_fingerprint: Option<Fingerprint>,
    parent_query: Option<Arc<str>>,
    repeats: AtomicU64,
    span_us: AtomicU64,
    ongoing: AtomicBool,
}

impl Burst {
    fn row(&self) -> NPlusOneEvent {
        NPlusOneEvent {
            detected_at: self.detected_at,
            database: self.database.clone(),
            user: self.user.clone(),
            client_addr: self.client_addr,
            application_name: self.application_name.clone(),
            fingerprint: self.fingerprint,
            query: self.query.as_deref().unwrap_or("").to_owned(),
            repeats: self.repeats.load(Ordering::Relaxed),
            window_ms: self.span_us.load(Ordering::Relaxed) as f64 / 1000.0,
            parent_fingerprint: self.parent_fingerprint,
            parent_query: self.parent_query.as_deref().map(str::to_owned),
            ongoing: self.ongoing.load(Ordering::Acquire),
        }
    }
}

#[derive(Default)]
struct BurstLogInner {
    ring: VecDeque<Arc<Burst>>,
    by_fp: HashMap<Fingerprint, u64, Seeded>,
}

/// Detected bursts: a ring of the last [`EVENT_RING`] and counters.
///
/// Concurrency: one mutex, taken only when a burst is detected and by
/// readers.
pub(crate) struct BurstLog {
    inner: Mutex<BurstLogInner>,
    total: AtomicU64,
}

impl BurstLog {
    pub(crate) fn new() -> Self {
        BurstLog {
            inner: Mutex::new(BurstLogInner::default()),
            total: AtomicU64::new(0),
        }
    }

    fn push(&self, b: Arc<Burst>) {
        let fp = b.fingerprint;
        let mut inner = lock(&self.inner);
        if inner.ring.len() >= EVENT_RING {
            inner.ring.pop_front();
        }
        inner.ring.push_back(b);
        let key = if inner.by_fp.len() < MAX_BURST_FPS || inner.by_fp.contains_key(&fp) {
            fp
        } else {
            OTHER_FINGERPRINT
        };
        *inner.by_fp.entry(key).or_insert(0) += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn events(&self) -> Vec<NPlusOneEvent> {
        lock(&self.inner)
            .ring
            .iter()
            .rev()
            .map(|b| b.row())
            .collect()
    }

    pub(crate) fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    pub(crate) fn by_fingerprint(&self) -> Vec<(Fingerprint, u64)> {
        let mut v: Vec<(Fingerprint, u64)> = lock(&self.inner)
            .by_fp
            .iter()
            .map(|(f, n)| (*f, *n))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }
}

/// N+1 detector state of one client session; see the module documentation.
///
/// Owned by the session task: plain data, no locks; allocates nothing until
/// a run with a parent repeats, then one ring reused for the session's life.
/// Dropping it ends an ongoing burst like [`SessionInsight::finish`].
#[derive(Debug, Default)]
pub struct SessionInsight {
    /// Fingerprint of the current run (valid when `run_len > 0`).
    run_fp: Fingerprint,
    /// Executions in the current run; 0 before the first statement.
    run_len: u64,
    /// Start of the run's first execution.
    run_start: Option<Tick>,
    /// Start of the run's latest execution.
    last_at: Option<Tick>,
    /// The statement just before the run, if different.
    parent: Option<Fingerprint>,
    /// Start times of the run's latest executions (only for runs with a
    /// parent, from their second execution until the burst fires).
    ring: Vec<Tick>,
    /// Size the ring fills up to.
    ring_cap: usize,
    /// Next slot to overwrite once full (= the oldest).
    ring_head: usize,
    /// The burst of the current run, once detected.
    event: Option<BurstHandle>,
}

/// Wrapper so `SessionInsight` can derive `Debug` without exposing `Burst`.
struct BurstHandle(Arc<Burst>);

impl std::fmt::Debug for BurstHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Burst")
            .field("fingerprint", &self.0.fingerprint)
            .field("repeats", &self.0.repeats.load(Ordering::Relaxed))
            .finish()
    }
}

impl SessionInsight {
    /// A detector with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Called for every statement execution the client starts, in order
    /// (simple Query or extended Execute), with `txn_control` true for
    /// BEGIN/COMMIT/ROLLBACK/SAVEPOINT-like statements. `now` is when the
    /// execution started. Does nothing (and ends any run) while insight is
    /// disabled.
    pub fn observe(
        &mut self,
        insight: &Insight,
        client: &ClientInfo,
        fp: Fingerprint,
        txn_control: bool,
        now: Tick,
    ) {
        if txn_control {
            return;
        }
        if !insight.enabled() {
            self.reset();
            return;
        }
        let (threshold, window) = insight.n_plus_one_settings();
        let continues = self.run_len > 0
            && fp == self.run_fp
            && self
                .last_at
                .is_some_and(|t| now.saturating_duration_since(t) <= window);
        if !continues {
            let parent = (self.run_len > 0 && fp != self.run_fp).then_some(self.run_fp);
            self.end_run();
            self.run_fp = fp;
            self.run_len = 1;
            self.run_start = Some(now);
            self.last_at = Some(now);
            self.parent = parent;
            return;
        }

        self.run_len = self.run_len.saturating_add(1);
        self.last_at = Some(now);
        let start = self.run_start.unwrap_or(now);
        if let Some(ev) = &self.event {
            let b = &ev.0;
            b.repeats.store(self.run_len, Ordering::Relaxed);
            b.span_us.store(now.micros_since(start), Ordering::Relaxed);
            return;
        }
        if self.parent.is_none() {
            return;
        }
        let cap = (threshold as usize).clamp(2, RING_CAP);
        if self.run_len == 2 {
            self.ring_reset(cap);
            self.ring_push(start);
        } else if self.ring_cap != cap {
            // Threshold changed by RELOAD mid-run: start counting afresh.
            self.ring_reset(cap);
        }
        self.ring_push(now);
        if self.run_len >= u64::from(threshold)
            && self.ring.len() == self.ring_cap
            && now.saturating_duration_since(self.ring_oldest()) <= window
        {
            self.fire(insight, client, start, now);
        }
    }

    /// Called when the session ends: finalizes an ongoing burst (its repeat
    /// count stays as the run left it, `ongoing` becomes false) and forgets
    /// the run.
    pub fn finish(&mut self, _insight: &Insight) {
        self.reset();
    }

    fn fire(&mut self, insight: &Insight, client: &ClientInfo, start: Tick, now: Tick) {
        let fp = self.run_fp;
        let parent = self.parent;
        let burst = Arc::new(Burst {
            detected_at: SystemTime::now(),
            database: client.database(),
            user: client.user(),
            client_addr: client.addr,
            application_name: client.application_name(),
            fingerprint: fp,
            query: insight.text(fp),
            parent_fingerprint: parent,
            parent_query: parent.and_then(|p| insight.text(p)),
            repeats: AtomicU64::new(self.run_len),
            span_us: AtomicU64::new(now.micros_since(start)),
            ongoing: AtomicBool::new(true),
        });
        insight.bursts.push(burst.clone());
        self.event = Some(BurstHandle(burst));
        self.ring.clear();
    }

    /// Ends the current run's burst, if any.
    fn end_run(&mut self) {
        if let Some(ev) = self.event.take() {
            ev.0.ongoing.store(false, Ordering::Release);
        }
    }

    /// Ends the run and forgets all history (keeps the ring's allocation).
    fn reset(&mut self) {
        self.end_run();
        self.run_len = 0;
        self.run_start = None;
        self.last_at = None;
        self.parent = None;
        self.ring.clear();
        self.ring_head = 0;
    }

    fn ring_reset(&mut self, cap: usize) {
        self.ring.clear();
        if self.ring.capacity() < cap {
            self.ring.reserve_exact(cap);
        }
        self.ring_cap = cap;
        self.ring_head = 0;
    }

    fn ring_push(&mut self, t: Tick) {
        if self.ring.len() < self.ring_cap {
            self.ring.push(t);
        } else if let Some(slot) = self.ring.get_mut(self.ring_head) {
            *slot = t;
            self.ring_head = (self.ring_head + 1) % self.ring_cap.max(1);
        }
    }

    /// Oldest start time in the ring (call only when it is non-empty).
    fn ring_oldest(&self) -> Tick {
        let i = if self.ring.len() < self.ring_cap {
            0
        } else {
            self.ring_head
        };
        self.ring
            .get(i)
            .or_else(|| self.ring.first())
            .copied()
            .unwrap_or_else(Tick::now)
    }
}

impl Drop for SessionInsight {
    fn drop(&mut self) {
        self.end_run();
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{cfg, client};
    use super::*;
    use std::time::Duration;

    const P: Fingerprint = Fingerprint(0x100);
    const X: Fingerprint = Fingerprint(0x200);
    const Y: Fingerprint = Fingerprint(0x300);
    const BEGIN: Fingerprint = Fingerprint(0x400);
    const COMMIT: Fingerprint = Fingerprint(0x500);

    fn ms(t0: Tick, k: u64) -> Tick {
        t0 + Duration::from_millis(k)
    }

    #[test]
    fn parent_then_fifty_fast_repeats_is_one_event() {
        let ins = Insight::new(&cfg());
        ins.note_text(P, "select * from posts");
        ins.note_text(X, "select * from users where id = $1");
        let c = client(5000);
        let mut s = SessionInsight::new();
        let t0 = Tick::now();
        s.observe(&ins, &c, P, false, t0);
        for k in 1..=50 {
            s.observe(&ins, &c, X, false, ms(t0, k));
        }
        let ev = ins.n_plus_one_events();
        assert_eq!(ev.len(), 1);
        assert!(ev[0].ongoing);
        assert_eq!(ev[0].repeats, 50);
        s.observe(&ins, &c, Y, false, ms(t0, 51));
        let ev = ins.n_plus_one_events();
        assert_eq!(ev.len(), 1);
        let e = &ev[0];
        assert!(!e.ongoing);
        assert_eq!(e.repeats, 50);
        assert_eq!(e.fingerprint, X);
        assert_eq!(e.query, "select * from users where id = $1");
        assert_eq!(e.parent_fingerprint, Some(P));
        assert_eq!(e.parent_query.as_deref(), Some("select * from posts"));
        assert_eq!(e.window_ms, 49.0);
        assert_eq!((e.database.as_str(), e.user.as_str()), ("app", "alice"));
        assert_eq!(e.application_name, "orm");
        assert_eq!(e.client_addr.port(), 5000);
        assert_eq!(ins.n_plus_one_total(), 1);
        assert_eq!(ins.n_plus_one_by_fingerprint(), vec![(X, 1)]);
    }

    #[test]
    fn finish_ends_an_ongoing_burst() {
        let ins = Insight::new(&cfg());
        let c = client(1);
        let mut s = SessionInsight::new();
        let t0 = Tick::now();
        s.observe(&ins, &c, P, false, t0);
        for k in 1..=12 {
            s.observe(&ins, &c, X, false, ms(t0, k));
        }
        assert!(ins.n_plus_one_events()[0].ongoing);
        s.finish(&ins);
        let e = &ins.n_plus_one_events()[0];
        assert!(!e.ongoing);
        assert_eq!(e.repeats, 12);
        // Dropping a session mid-burst ends it too.
        let mut s2 = SessionInsight::new();
        s2.observe(&ins, &c, P, false, t0);
        for k in 1..=12 {
            s2.observe(&ins, &c, Y, false, ms(t0, k));
        }
        drop(s2);
        assert!(ins.n_plus_one_events().iter().all(|e| !e.ongoing));
        assert_eq!(ins.n_plus_one_total(), 2);
    }

    #[test]
    fn repeats_without_a_parent_never_fire() {
        let ins = Insight::new(&cfg());
        let c = client(1);
        let mut s = SessionInsight::new();
        let t0 = Tick::now();
        for k in 0..500 {
            s.observe(&ins, &c, X, false, ms(t0, k));
        }
        s.finish(&ins);
        assert!(ins.n_plus_one_events().is_empty());
        assert!(s.ring.capacity() == 0, "no ring for a run without a parent");
    }

    #[test]
    fn interleaved_statements_never_fire() {
        let ins = Insight::new(&cfg());
        let c = client(1);
        let mut s = SessionInsight::new();
        let t0 = Tick::now();
        for k in 0..1000 {
            let fp = if k % 2 == 0 { X } else { Y };
            s.observe(&ins, &c, fp, false, ms(t0, k));
        }
        // A TPC-B-like mix of five statements in a transaction.
        for k in 0..200u64 {
            s.observe(&ins, &c, BEGIN, true, ms(t0, 1000 + k));
            for f in 1..=5u64 {
                s.observe(&ins, &c, Fingerprint(0x1000 + f), false, ms(t0, 1000 + k));
            }
            s.observe(&ins, &c, COMMIT, true, ms(t0, 1000 + k));
        }
        assert!(ins.n_plus_one_events().is_empty());
    }

    #[test]
    fn slow_runs_never_fire() {
        let ins = Insight::new(&cfg()); // 10 per 1 s
        let c = client(1);
        let mut s = SessionInsight::new();
        let t0 = Tick::now();
        s.observe(&ins, &c, P, false, t0);
        for k in 1..=50 {
            s.observe(&ins, &c, X, false, ms(t0, 200 * k));
        }
        s.finish(&ins);
        assert!(ins.n_plus_one_events().is_empty());
    }

    #[test]
    fn a_run_that_speeds_up_fires_once_the_window_holds_threshold() {
        let ins = Insight::new(&cfg());
        let c = client(1);
        let mut s = SessionInsight::new();
        let t0 = Tick::now();
        s.observe(&ins, &c, P, false, t0);
        // 9 slow ones (200 ms apart), then fast ones.
        let mut t = 0;
        for _ in 0..9 {
            t += 200;
            s.observe(&ins, &c, X, false, ms(t0, t));
        }
        assert!(ins.n_plus_one_events().is_empty());
        for _ in 0..9 {
            t += 10;
            s.observe(&ins, &c, X, false, ms(t0, t));
        }
        let ev = ins.n_plus_one_events();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].repeats, 18);
    }

    #[test]
    fn transaction_control_neither_extends_nor_breaks_a_run() {
        let ins = Insight::new(&cfg());
        let c = client(1);
        let mut s = SessionInsight::new();
        let t0 = Tick::now();
        s.observe(&ins, &c, P, false, t0);
        let mut t = 0;
        for _ in 0..30 {
            t += 1;
            s.observe(&ins, &c, BEGIN, true, ms(t0, t));
            s.observe(&ins, &c, X, false, ms(t0, t));
            s.observe(&ins, &c, COMMIT, true, ms(t0, t));
        }
        s.finish(&ins);
        let ev = ins.n_plus_one_events();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].repeats, 30);
        assert_eq!(ev[0].parent_fingerprint, Some(P));
    }

    #[test]
    fn two_sessions_below_threshold_each_never_fire() {
        let ins = Insight::new(&cfg());
        let c1 = client(1);
        let c2 = client(2);
        let mut s1 = SessionInsight::new();
        let mut s2 = SessionInsight::new();
        let t0 = Tick::now();
        s1.observe(&ins, &c1, P, false, t0);
        s2.observe(&ins, &c2, P, false, t0);
        for k in 1..=5 {
            s1.observe(&ins, &c1, X, false, ms(t0, k));
            s2.observe(&ins, &c2, X, false, ms(t0, k));
        }
        s1.finish(&ins);
        s2.finish(&ins);
        assert!(ins.n_plus_one_events().is_empty());
    }

    #[test]
    fn a_gap_longer_than_the_window_ends_the_run() {
        let ins = Insight::new(&cfg());
        let c = client(1);
        let mut s = SessionInsight::new();
        let t0 = Tick::now();
        s.observe(&ins, &c, P, false, t0);
        for k in 1..=15 {
            s.observe(&ins, &c, X, false, ms(t0, k));
        }
        // Pause, then the same statement again: a new run without a parent.
        for k in 0..15 {
            s.observe(&ins, &c, X, false, ms(t0, 5_000 + k));
        }
        let ev = ins.n_plus_one_events();
        assert_eq!(ev.len(), 1);
        assert!(!ev[0].ongoing);
        assert_eq!(ev[0].repeats, 15);
    }

    #[test]
    fn each_run_is_its_own_event_and_counted_per_fingerprint() {
        let ins = Insight::new(&cfg());
        let c = client(1);
        let mut s = SessionInsight::new();
        let t0 = Tick::now();
        let mut t = 0;
        for _ in 0..3 {
            t += 1;
            s.observe(&ins, &c, P, false, ms(t0, t));
            for _ in 0..10 {
                t += 1;
                s.observe(&ins, &c, X, false, ms(t0, t));
            }
        }
        t += 1;
        s.observe(&ins, &c, X, false, ms(t0, t + 10_000));
        s.observe(&ins, &c, P, false, ms(t0, t + 10_001));
        for k in 0..10 {
            s.observe(&ins, &c, Y, false, ms(t0, t + 10_002 + k));
        }
        s.finish(&ins);
        let ev = ins.n_plus_one_events();
        assert_eq!(ev.len(), 4);
        assert_eq!(ev[0].fingerprint, Y, "newest first");
        assert_eq!(ins.n_plus_one_total(), 4);
        assert_eq!(ins.n_plus_one_by_fingerprint(), vec![(X, 3), (Y, 1)]);
    }

    #[test]
    fn threshold_change_mid_run_and_disable_are_safe() {
        let ins = Insight::new(&cfg());
        let c = client(1);
        let mut s = SessionInsight::new();
        let t0 = Tick::now();
        s.observe(&ins, &c, P, false, t0);
        for k in 1..=5 {
            s.observe(&ins, &c, X, false, ms(t0, k));
        }
        let mut c3 = cfg();
        c3.n_plus_one_threshold = 3;
        ins.reconfigure(&c3);
        for k in 6..=8 {
            s.observe(&ins, &c, X, false, ms(t0, k));
        }
        assert_eq!(ins.n_plus_one_events().len(), 1);
        c3.enabled = false;
        ins.reconfigure(&c3);
        s.observe(&ins, &c, X, false, ms(t0, 9));
        assert!(!ins.n_plus_one_events()[0].ongoing);
        assert_eq!(ins.n_plus_one_events()[0].repeats, 8);
    }

    #[test]
    fn event_ring_keeps_the_last_thousand() {
        let ins = Insight::new(&cfg());
        let c = client(1);
        let mut s = SessionInsight::new();
        let t0 = Tick::now();
        let mut t = 0;
        for i in 0..1100u64 {
            t += 1;
            s.observe(&ins, &c, P, false, ms(t0, t));
            for _ in 0..10 {
                t += 1;
                s.observe(&ins, &c, Fingerprint(0x10_000 + i), false, ms(t0, t));
            }
        }
        s.finish(&ins);
        let ev = ins.n_plus_one_events();
        assert_eq!(ev.len(), EVENT_RING);
        assert_eq!(ev[0].fingerprint, Fingerprint(0x10_000 + 1099));
        assert_eq!(ins.n_plus_one_total(), 1100);
    }
}
