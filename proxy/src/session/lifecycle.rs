//! The transaction lifecycle every client session follows, whatever its
//! protocol: borrow a server at the first message of a transaction (timed,
//! FIFO, cancel-safe), count and time what runs, feed statement timings and
//! the N+1 detector, watch for leaked transactions, and give the server
//! back at the boundary. Whether the server is clean (returned), carries
//! session state (reset first) or is in an unknown state (closed) is
//! decided by the lease guard asking the server itself; a session only
//! drops the lease.
//!
//! Front ends own a [`Core`] for their server type and drive it from their
//! own loop: [`Core::checkout`], then per statement [`Core::observe`] and
//! [`Core::record_statement`], then [`Core::release`] (or
//! [`Core::transaction_held`] when pins keep the lease).

use std::sync::Arc;

use sqlmux_protocol::sql::Fingerprint;

use super::leak::LeakWatch;
use super::pins::Pins;
use super::refusal::Refusal;
use super::reply::ReplyWatch;
use crate::Shared;
use crate::client::{ClientInfo, ClientState, Signals};
use crate::clock::Tick;
use crate::config::{DatabaseConfig, PoolMode};
use crate::insight::SessionInsight;
use crate::pool::registry::PoolEntry;
use crate::pool::{CheckoutError, Lease, Pool, PooledServer};
use crate::stats::{LocalCounts, Stat};

/// Finds the pool that replaced a retired one (RELOAD changed the
/// database entry): the front end knows how to build pools of its kind.
pub type Rebind<S> = fn(&Shared, &DatabaseConfig, &ClientInfo) -> Option<Rebound<S>>;

/// A pool's registry entry and the pool itself.
pub type Rebound<S> = (Arc<PoolEntry>, Arc<Pool<S>>);

/// [`Core`]'s "no checkout wait to record".
const NO_WAIT: u64 = u64::MAX;

/// The protocol-neutral state of one client session.
pub struct Core<S: PooledServer> {
    /// The proxy.
    pub shared: Arc<Shared>,
    /// The client as the admin port sees it.
    pub info: Arc<ClientInfo>,
    /// The registry entry of the client's pool.
    pub entry: Arc<PoolEntry>,
    /// The client's pool.
    pub pool: Arc<Pool<S>>,
    rebind: Rebind<S>,
    /// The server lent for the current transaction.
    pub lease: Option<Lease<S>>,
    /// Counters not yet added to the pool's.
    pub counts: LocalCounts,
    /// Time of the last read from either side.
    pub now: Tick,
    /// When the current lease (or held transaction) started.
    pub lease_started: Tick,
    /// When the current query batch started.
    pub query_started: Option<Tick>,
    /// When the last statement finished (the next one's latency starts no
    /// earlier: pipelined statements are timed back to back).
    pub last_done: Tick,
    /// Insight recording on (read once per transaction).
    pub insight_on: bool,
    /// The current lease's checkout wait, recorded with its first
    /// transaction's time (one insight record per transaction);
    /// [`NO_WAIT`] once recorded.
    wait_us: u64,
    n_plus_one: SessionInsight,
    /// Leaked-transaction watch.
    pub leak: LeakWatch,
    /// Silent-server watch (`pool.query_timeout`).
    pub reply: ReplyWatch,
    /// What holds the lease beyond a transaction.
    pub pins: Pins,
}

impl<S: PooledServer> Core<S> {
    /// The core of a client that logged in to `pool`.
    pub fn new(
        shared: Arc<Shared>,
        info: Arc<ClientInfo>,
        entry: Arc<PoolEntry>,
        pool: Arc<Pool<S>>,
        rebind: Rebind<S>,
    ) -> Core<S> {
        let (idle, action) = shared.insight.leak_settings();
        let cfg = pool.config();
        let now = Tick::now();
        let pins = Pins::new(cfg.mode == PoolMode::Session, cfg.on_session_state);
        info.set_pin(pins.reason());
        Core {
            insight_on: shared.insight.enabled(),
            shared,
            info,
            entry,
            pool,
            rebind,
            lease: None,
            wait_us: NO_WAIT,
            counts: LocalCounts::default(),
            now,
            lease_started: now,
            query_started: None,
            last_done: now,
            n_plus_one: SessionInsight::new(),
            leak: LeakWatch::new(idle, action),
            reply: ReplyWatch::default(),
            pins,
        }
    }

    /// Borrows a server for a new transaction (FIFO, `checkout_timeout`).
    /// Cancel safety: dropping the future leaves the wait queue.
    pub async fn checkout(&mut self) -> Result<(), Refusal> {
        if self.pool.is_retired() {
            self.move_to_new_pool();
        }
        let t0 = self.now;
        self.insight_on = self.shared.insight.enabled();
        (self.leak.idle, self.leak.action) = self.shared.insight.leak_settings();
        self.info.set_state(ClientState::Waiting, t0.unix_us());
        let lease = match self.pool.try_checkout(self.info.id, t0) {
            Some(l) => l,
            None => self.wait_for_server(t0).await?,
        };
        let now = lease.checked_out_at();
        let wait_us = now.micros_since(t0);
        self.counts.add(Stat::WaitTimeUs, wait_us);
        self.counts.add(Stat::ServerAssignments, 1);
        self.wait_us = wait_us;
        self.info.set_link(lease.server_ref().info().id);
        self.info.set_state(ClientState::Active, now.unix_us());
        self.lease = Some(lease);
        self.lease_started = now;
        self.now = now;
        self.last_done = now;
        self.leak.begin(now);
        Ok(())
    }

    /// The slow path: queued or connecting. Boxed, so the future of an
    /// idle session stays small.
    async fn wait_for_server(&mut self, t0: Tick) -> Result<Lease<S>, Refusal> {
        let pool = self.pool.clone();
        let slow = Box::pin(pool.checkout(self.info.id, t0));
        tokio::select! {
            l = slow => l.map_err(Refusal::Checkout),
            _ = self.info.signals.wait(Signals::DRAIN) => Err(Refusal::Checkout(
                CheckoutError::Closed(self.entry.db.name.clone()),
            )),
        }
    }

    /// The pool was retired by RELOAD: move to its replacement.
    fn move_to_new_pool(&mut self) {
        let cfg = self.shared.config.load();
        let Some(db) = cfg.database_for(self.entry.protocol, &self.entry.db.name) else {
            return;
        };
        let Some((entry, pool)) = (self.rebind)(&self.shared, &db, &self.info) else {
            return;
        };
        pool.clients
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.pool
            .clients
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.entry = entry;
        self.pool = pool;
    }

    /// The lent server, if any.
    #[inline]
    pub fn server(&mut self) -> Option<&mut S> {
        self.lease.as_mut().map(|l| l.server())
    }

    /// Ends the transaction and drops the lease: the guard returns the
    /// server, resets it first, or closes it, as the server's own state
    /// says.
    pub fn release(&mut self) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        self.count_transaction();
        drop(lease);
        self.info.set_link(0);
        self.info.set_state(ClientState::Idle, self.now.unix_us());
        self.flush_counts();
    }

    /// A transaction ended while pins keep the lease: counted like one that
    /// released its server.
    pub fn transaction_held(&mut self) {
        self.count_transaction();
        self.flush_counts();
        self.lease_started = self.now;
    }

    fn count_transaction(&mut self) {
        let xact_us = self.now.micros_since(self.lease_started);
        self.counts.add(Stat::XactTimeUs, xact_us);
        self.counts.add(Stat::Xacts, 1);
        let wait_us = std::mem::replace(&mut self.wait_us, NO_WAIT);
        if self.insight_on {
            let wait_us = (wait_us != NO_WAIT).then_some(wait_us);
            self.shared
                .insight
                .record_lease(self.entry.tag, wait_us, xact_us);
        }
    }

    /// Adds the session's counters to the pool's.
    pub fn flush_counts(&mut self) {
        if !self.counts.is_empty() {
            self.pool.stats.add_all(&self.counts);
            self.counts.clear();
        }
    }

    /// A statement starts executing now: the N+1 detector sees it and the
    /// leak report will name it.
    pub fn observe(&mut self, fp: Fingerprint, txn_control: bool, now: Tick) {
        self.leak.last_fp = Some(fp);
        if self.insight_on {
            let insight = &self.shared.insight;
            self.n_plus_one
                .observe(insight, &self.info, fp, txn_control, now);
        }
    }

    /// A statement finished: its latency (from when it was sent, or from
    /// the end of the statement before it in a pipeline) and rows.
    pub fn record_statement(
        &mut self,
        fp: Fingerprint,
        sent: Tick,
        rows: u64,
        error: bool,
        now: Tick,
    ) {
        let start = sent.max(self.last_done);
        self.last_done = now;
        if self.insight_on {
            let us = now.micros_since(start);
            self.shared
                .insight
                .record(self.entry.tag, fp, us, rows, error);
        }
    }

    /// A query batch was answered (PostgreSQL ReadyForQuery, a complete
    /// MySQL response): counted, and the transaction is idle from now.
    pub fn finish_query(&mut self, now: Tick, more_pending: bool) {
        self.counts.add(Stat::Queries, 1);
        if let Some(t) = self.query_started {
            let us = now.micros_since(t);
            self.counts.add(Stat::QueryTimeUs, us);
        }
        self.query_started = (more_pending).then_some(now);
        self.leak.touch(now);
    }

    /// The session ends. `in_transaction` when the client left inside a
    /// transaction (recorded as an abandoned leak).
    pub fn end(&mut self, in_transaction: bool) {
        self.n_plus_one.finish(&self.shared.insight);
        let insight = self.shared.insight.clone();
        if in_transaction && self.leak.in_transaction() {
            self.leak.abandoned(&insight, &self.info, self.now);
        } else {
            self.leak
                .end(&insight, crate::insight::LeakState::Abandoned);
        }
        self.release();
        self.flush_counts();
    }
}
