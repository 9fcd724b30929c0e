//! Leaked transactions: rows for SHOW LEAKS.
//!
//! The session detects that its client has been idle inside a transaction
//! past `leaked_transaction.idle` (it owns the timer) and reports here; this
//! module only keeps the rows: open leaks in a map by id (live ages computed
//! at read time from the session's `Tick`s) and closed ones in a ring of
//! the last [`EVENT_RING`] (ages frozen at close).
//!
//! Concurrency: one mutex, touched only when a transaction has already
//! been idle for seconds, and by readers.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use sqlmux_protocol::sql::Fingerprint;

use super::{EVENT_RING, lock};
use crate::addr::PeerAddr;
use crate::client::ClientInfo;
use crate::clock::Tick;
use crate::config::LeakAction;

/// Open leaks kept as rows; beyond this an id is still handed out and
/// counted, but no row is kept (sessions close their leaks, so this is only
/// a safety net).
const MAX_OPEN: usize = 100_000;

/// Identifies an open leak between [`super::Insight::leak_open`] and
/// [`super::Insight::leak_close`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeakId(pub u64);

/// Where a leaked transaction stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeakState {
    /// Still idle inside the transaction.
    Open,
    /// The client ended the transaction itself.
    Finished,
    /// The leak action rolled it back.
    RolledBack,
    /// The client disconnected inside it.
    Abandoned,
}

impl LeakState {
    /// The name shown in SHOW LEAKS.
    pub fn as_str(self) -> &'static str {
        match self {
            LeakState::Open => "open",
            LeakState::Finished => "finished",
            LeakState::RolledBack => "rolled_back",
            LeakState::Abandoned => "abandoned",
        }
    }
}

/// One row of SHOW LEAKS.
#[derive(Debug, Clone, PartialEq)]
pub struct LeakRow {
    /// When the leak was detected (wall clock).
    pub detected_at: SystemTime,
    /// Client's database.
    pub database: String,
    /// Client's user.
    pub user: String,
    /// Client address.
    pub client_addr: PeerAddr,
    /// Client's application_name at detection.
    pub application_name: String,
    /// Open or how it ended.
    pub state: LeakState,
    /// Seconds since the transaction began (now when open, at close else).
    pub xact_age_s: f64,
    /// Seconds the client had been idle (now when open, at close else).
    pub idle_s: f64,
    /// Normalized text of the last statement in the transaction; its
    /// fingerprint in hex when the text is not known; `None` when the
    /// session gave no statement.
    pub last_query: Option<String>,
    /// The action configured when the leak was detected.
    pub action: LeakAction,
}

struct Record {
    detected_at: SystemTime,
    database: String,
    user: String,
    client_addr: PeerAddr,
    application_name: String,
    state: LeakState,
    xact_started: Tick,
    idle_since: Tick,
    /// (xact_age_s, idle_s) once closed.
    frozen: Option<(f64, f64)>,
    last_query: Option<Fingerprint>,
    last_text: Option<Arc<str>>,
    action: LeakAction,
}

impl Record {
    fn new(
        client: &ClientInfo,
        xact_started: Tick,
        idle_since: Tick,
        last_query: Option<Fingerprint>,
        last_text: Option<Arc<str>>,
        action: LeakAction,
    ) -> Record {
        Record {
            detected_at: SystemTime::now(),
            database: client.database(),
            user: client.user(),
            client_addr: client.addr,
            application_name: client.application_name(),
            state: LeakState::Open,
            xact_started,
            idle_since,
            frozen: None,
            last_query,
            last_text,
            action,
        }
    }

    fn ages(&self, now: Tick) -> (f64, f64) {
        self.frozen.unwrap_or_else(|| {
            (
                now.saturating_duration_since(self.xact_started)
                    .as_secs_f64(),
                now.saturating_duration_since(self.idle_since).as_secs_f64(),
            )
        })
    }

    fn close(&mut self, state: LeakState, now: Tick) {
        self.frozen = Some(self.ages(now));
        self.state = state;
    }

    fn row(&self, now: Tick) -> LeakRow {
        let (xact_age_s, idle_s) = self.ages(now);
        LeakRow {
            detected_at: self.detected_at,
            database: self.database.clone(),
            user: self.user.clone(),
            client_addr: self.client_addr,
            application_name: self.application_name.clone(),
            state: self.state,
            xact_age_s,
            idle_s,
            last_query: match (&self.last_text, self.last_query) {
                (Some(t), _) => Some(t.to_string()),
                (None, Some(fp)) => Some(fp.to_string()),
                (None, None) => None,
            },
            action: self.action,
        }
    }
}

#[derive(Default)]
struct Inner {
    open: BTreeMap<u64, Record>,
    closed: VecDeque<Record>,
    next_id: u64,
}

impl Inner {
    fn push_closed(&mut self, r: Record) {
        if self.closed.len() >= EVENT_RING {
            self.closed.pop_front();
        }
        self.closed.push_back(r);
    }
}

/// Open and recently closed leaks; see the module documentation.
pub(crate) struct LeakLog {
    inner: Mutex<Inner>,
    total: AtomicU64,
}

impl LeakLog {
    pub(crate) fn new() -> Self {
        LeakLog {
            inner: Mutex::new(Inner::default()),
            total: AtomicU64::new(0),
        }
    }

    pub(crate) fn open(
        &self,
        client: &ClientInfo,
        xact_started: Tick,
        idle_since: Tick,
        last_query: Option<Fingerprint>,
        last_text: Option<Arc<str>>,
        action: LeakAction,
    ) -> LeakId {
        let r = Record::new(
            client,
            xact_started,
            idle_since,
            last_query,
            last_text,
            action,
        );
        self.total.fetch_add(1, Ordering::Relaxed);
        let mut inner = lock(&self.inner);
        inner.next_id = inner.next_id.wrapping_add(1);
        let id = inner.next_id;
        if inner.open.len() < MAX_OPEN {
            inner.open.insert(id, r);
        }
        LeakId(id)
    }

    pub(crate) fn close(&self, id: LeakId, state: LeakState) {
        if state == LeakState::Open {
            return;
        }
        let now = Tick::now();
        let mut inner = lock(&self.inner);
        if let Some(mut r) = inner.open.remove(&id.0) {
            r.close(state, now);
            inner.push_closed(r);
        }
    }

    pub(crate) fn abandoned(
        &self,
        client: &ClientInfo,
        xact_started: Tick,
        idle_since: Tick,
        last_query: Option<Fingerprint>,
        last_text: Option<Arc<str>>,
        action: LeakAction,
    ) {
        let mut r = Record::new(
            client,
            xact_started,
            idle_since,
            last_query,
            last_text,
            action,
        );
        r.close(LeakState::Abandoned, Tick::now());
        self.total.fetch_add(1, Ordering::Relaxed);
        lock(&self.inner).push_closed(r);
    }

    pub(crate) fn rows(&self) -> Vec<LeakRow> {
        let now = Tick::now();
        let inner = lock(&self.inner);
        inner
            .open
            .values()
            .map(|r| r.row(now))
            .chain(inner.closed.iter().rev().map(|r| r.row(now)))
            .collect()
    }

    pub(crate) fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    pub(crate) fn open_count(&self) -> usize {
        lock(&self.inner).open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::Insight;
    use super::super::test_util::{cfg, client};
    use super::*;
    use std::time::Duration;

    #[test]
    fn open_then_close_freezes_ages_and_moves_the_row() {
        let ins = Insight::new(&cfg());
        ins.note_text(Fingerprint(9), "update t set x = $1");
        let c = client(7000);
        let now = Tick::now();
        let started = now - Duration::from_secs(8);
        let idle = now - Duration::from_secs(6);
        let id = ins.leak_open(&c, started, idle, Some(Fingerprint(9)));
        assert_eq!(ins.open_leaks(), 1);
        assert_eq!(ins.leaks_total(), 1);
        let rows = ins.leaks();
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(r.state, LeakState::Open);
        assert_eq!(r.state.as_str(), "open");
        assert!(r.xact_age_s >= r.idle_s);
        assert!(r.idle_s > 0.0 || started == now);
        assert_eq!(r.last_query.as_deref(), Some("update t set x = $1"));
        assert_eq!(r.action, LeakAction::Warn);
        assert_eq!(r.client_addr.port(), 7000);
        assert_eq!((r.database.as_str(), r.user.as_str()), ("app", "alice"));

        // The action is the one configured at detection.
        let mut rb = cfg();
        rb.leak_action = LeakAction::Rollback;
        ins.reconfigure(&rb);
        let id2 = ins.leak_open(&c, started, idle, None);
        ins.leak_close(id, LeakState::Finished);
        ins.leak_close(id, LeakState::RolledBack); // already closed: ignored
        ins.leak_close(id2, LeakState::Open); // not a close: ignored
        assert_eq!(ins.open_leaks(), 1);
        let rows = ins.leaks();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].state, LeakState::Open, "open ones first");
        assert_eq!(rows[0].action, LeakAction::Rollback);
        assert_eq!(rows[0].last_query, None);
        assert_eq!(rows[1].state, LeakState::Finished);
        assert_eq!(rows[1].action, LeakAction::Warn);
        let frozen = rows[1].xact_age_s;
        assert_eq!(ins.leaks()[1].xact_age_s, frozen);
        ins.leak_close(id2, LeakState::RolledBack);
        assert_eq!(ins.open_leaks(), 0);
        let rows = ins.leaks();
        assert_eq!(rows[0].state.as_str(), "rolled_back");
        assert_eq!(rows[1].state.as_str(), "finished");
        assert_eq!(ins.leaks_total(), 2);
    }

    #[test]
    fn abandoned_without_open_is_recorded_closed() {
        let ins = Insight::new(&cfg());
        let c = client(1);
        let now = Tick::now();
        ins.leak_abandoned(&c, now, now, Some(Fingerprint(0xabc)));
        assert_eq!(ins.open_leaks(), 0);
        assert_eq!(ins.leaks_total(), 1);
        let rows = ins.leaks();
        assert_eq!(rows[0].state, LeakState::Abandoned);
        assert_eq!(rows[0].state.as_str(), "abandoned");
        // No text known: the fingerprint is shown instead.
        assert_eq!(rows[0].last_query.as_deref(), Some("0000000000000abc"));
    }

    #[test]
    fn closed_ring_is_bounded() {
        let ins = Insight::new(&cfg());
        let c = client(1);
        let now = Tick::now();
        for _ in 0..(EVENT_RING + 250) {
            let id = ins.leak_open(&c, now, now, None);
            ins.leak_close(id, LeakState::Abandoned);
        }
        let id = ins.leak_open(&c, now, now, None);
        let rows = ins.leaks();
        assert_eq!(rows.len(), EVENT_RING + 1);
        assert_eq!(rows[0].state, LeakState::Open);
        assert_eq!(ins.leaks_total(), (EVENT_RING + 251) as u64);
        ins.leak_close(id, LeakState::Finished);
        assert_eq!(ins.leaks().len(), EVENT_RING);
        assert_eq!(ins.leaks()[0].state, LeakState::Finished);
    }
}
