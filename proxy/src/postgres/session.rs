//! A logged-in PostgreSQL client: the transaction loop and the forwarding
//! pump.
//!
//! Flow of one transaction:
//! 1. Idle: no server. Wait for the client's next message (holding no
//!    buffers while waiting, so idle clients cost little memory).
//! 2. Checkout: the first message of a transaction borrows a server from
//!    the pool (FIFO, `checkout_timeout`), and parameters the client set
//!    are re-applied if the server differs ([`params::sync_sql`]).
//! 3. Pump: bytes flow both ways. Frame headers are walked; only messages
//!    that decide something are looked at (see [`tracker`]). Each
//!    direction has a bounded output buffer: when it is full, sqlmux stops
//!    reading the other side (backpressure, not buffering).
//! 4. Boundary: ReadyForQuery `I` with nothing outstanding ends the
//!    transaction; the lease is marked reusable and dropped, which returns
//!    the server to the pool. A client that vanishes mid-transaction leaves
//!    the lease unmarked, so the server is closed (PostgreSQL rolls back).
//!
//! In session mode, or when the client created state that cannot follow it
//! to another server (LISTEN, advisory locks, temp tables, ...), the lease
//! is kept until the client disconnects; the server is then reset with
//! DISCARD ALL before it returns to the pool.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use sqlmux_protocol::postgres::frame::{self, HEADER_LEN};
use sqlmux_protocol::postgres::message::{self, Severity};
use sqlmux_protocol::sql::{self, Analysis, Dialect, Effects, Fingerprint, Kind, Normalizer};

use crate::Shared;
use crate::client::{ClientInfo, ClientState, PinReason, Signals};
use crate::config::{LeakAction, PoolMode, SessionStatePolicy};
use crate::insight::{LeakId, LeakState, SessionInsight};
use crate::io::{self, Stream};
use crate::pool::{CheckoutError, Lease, PooledServer, unix_us_at};
use crate::postgres::params::{self, ClientParams};
use crate::postgres::pools::PgPoolEntry;
use crate::postgres::prepared::{self, ClientStatements, Prepared};
use crate::postgres::server::PgServer;
use crate::postgres::tracker::{Injected, Local, Req, Tracker};
use crate::stats::{LocalCounts, Stat};

thread_local! {
    /// One normalizer per worker thread: its buffers are reused by every
    /// session on the thread instead of living in each session.
    static NORMALIZER: std::cell::RefCell<Normalizer> = std::cell::RefCell::new(Normalizer::new());
}

/// Output buffered for one side before sqlmux stops reading the other.
const HIGH_WATER: usize = 64 * 1024;

/// Why the pump stopped.
#[derive(Debug)]
enum PumpEnd {
    /// ReadyForQuery `I` with nothing outstanding.
    Boundary,
    /// The client sent Terminate.
    ClientTerminate,
    /// The client connection closed or failed.
    ClientGone,
    /// The server connection closed or failed.
    ServerGone(String),
    /// The client or server broke the protocol.
    Protocol { client_side: bool, message: String },
    /// The transaction has been idle past the leak threshold.
    LeakIdle,
}

/// Client statement names and portals, with the fingerprint each runs.
#[derive(Debug, Default)]
struct Statements {
    unnamed: StmtInfo,
    unnamed_portal: StmtInfo,
    named: std::collections::HashMap<Box<[u8]>, StmtInfo>,
    portals: std::collections::HashMap<Box<[u8]>, StmtInfo>,
}

/// What sqlmux remembers of a prepared statement or portal.
#[derive(Debug, Clone, Copy, Default)]
struct StmtInfo {
    fp: Fingerprint,
    /// BEGIN/COMMIT/ROLLBACK-like (ignored by the N+1 detector).
    txn_control: bool,
}

/// A pending change to unreported session settings, applied when the
/// transaction that made it commits.
#[derive(Debug, Clone)]
enum PendingSet {
    Set {
        name: String,
        statement: String,
    },
    Reset {
        name: String,
    },
    /// RESET ALL / DISCARD ALL; `restored` when sqlmux re-applied the
    /// client's startup values right after it.
    ResetAll {
        restored: bool,
    },
}

/// State of the leak timer for the current transaction.
#[derive(Debug, Default)]
struct LeakWatch {
    /// When the transaction began (first message of the lease).
    xact_started: Option<Instant>,
    /// When the client last sent something or a response completed.
    idle_since: Option<Instant>,
    /// The timer is armed.
    armed: bool,
    /// An open leak event.
    open: Option<LeakId>,
    /// Last statement run in the transaction.
    last_fp: Option<Fingerprint>,
}

/// One logged-in client session.
pub(crate) struct Session {
    pub(crate) shared: Arc<Shared>,
    pub(crate) info: Arc<ClientInfo>,
    pub(crate) client: Stream,
    pub(crate) cin: BytesMut,
    pub(crate) cout: BytesMut,
    sout: BytesMut,
    pub(crate) entry: Arc<PgPoolEntry>,
    lease: Option<Lease<Box<PgServer>>>,
    pub(crate) params: ClientParams,
    q: Tracker,
    max_msg: u32,
    client_skip: usize,
    server_skip: usize,
    txn_status: u8,
    pin: PinReason,
    stmts: Statements,
    insight_on: bool,
    sess_insight: SessionInsight,
    counts: LocalCounts,
    now: Instant,
    lease_started: Instant,
    query_started: Option<Instant>,
    last_done: Instant,
    rollback_seen: bool,
    pending_sets: Vec<PendingSet>,
    leak: LeakWatch,
    leak_sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    leak_idle: Duration,
    leak_action: LeakAction,
    /// Set after a leaked transaction was rolled back: the client's next
    /// request gets this error.
    rolled_back_after: Option<Duration>,
    /// Server state unknown (protocol desync): close instead of reuse.
    server_dirty: bool,
    /// The server sent a FATAL error (forwarded to the client): when the
    /// connection then closes, the client has already been told why.
    server_fatal: bool,
    /// A forwarded ReadyForQuery `I` answered everything sent so far.
    ready_idle: bool,
    /// Named prepared statements of this client (transaction mode).
    prepared: ClientStatements,
    /// Rewrite named statements to shared server names.
    rewrite: bool,
    /// Per-server prepared statement cache size.
    max_prepared: usize,
    /// An error sqlmux produced: ignore client messages until Sync.
    skip_until_sync: bool,
    /// Statements to send right behind the client's RESET ALL / DISCARD
    /// ALL that return the server to the client's startup values.
    restore_after: Option<String>,
    /// Reasons (PIN_* bits) the client holds its server.
    pins: u8,
    /// Pin bits cleared by statements of the current transaction.
    pending_unpin: u8,
    /// `pool.on_session_state`.
    session_policy: SessionStatePolicy,
    /// Recent analyses by hash of the raw statement text.
    analyses: [(u64, Analysis); 4],
    analyses_next: usize,
    /// Fingerprints whose text this session noted recently.
    noted: [Fingerprint; 4],
    noted_next: usize,
}

const PIN_LISTEN: u8 = 1;
const PIN_ADVISORY: u8 = 2;
const PIN_TEMP: u8 = 4;
const PIN_PREPARE: u8 = 8;
const PIN_HOLD: u8 = 16;
const PIN_OTHER: u8 = 32;

/// The reason shown for a set of pin bits (the first one).
fn pin_reason(bits: u8) -> PinReason {
    if bits & PIN_LISTEN != 0 {
        PinReason::Listen
    } else if bits & PIN_ADVISORY != 0 {
        PinReason::AdvisoryLock
    } else if bits & PIN_TEMP != 0 {
        PinReason::TempTable
    } else if bits & PIN_PREPARE != 0 {
        PinReason::SqlPrepare
    } else if bits & PIN_HOLD != 0 {
        PinReason::HoldCursor
    } else if bits != 0 {
        PinReason::Other
    } else {
        PinReason::None
    }
}

impl Session {
    pub(crate) fn new(
        shared: Arc<Shared>,
        info: Arc<ClientInfo>,
        client: Stream,
        cin: BytesMut,
        entry: Arc<PgPoolEntry>,
        params: ClientParams,
    ) -> Session {
        let cfg = shared.config.load();
        let (leak_idle, leak_action) = shared.insight.leak_settings();
        let now = Instant::now();
        Session {
            insight_on: shared.insight.enabled(),
            max_msg: cfg.general.max_message_size,
            shared: shared.clone(),
            info,
            client,
            cin,
            cout: BytesMut::new(),
            sout: BytesMut::new(),
            entry,
            lease: None,
            params,
            q: Tracker::default(),
            client_skip: 0,
            server_skip: 0,
            txn_status: b'I',
            pin: PinReason::None,
            stmts: Statements::default(),
            sess_insight: SessionInsight::new(),
            counts: LocalCounts::default(),
            now,
            lease_started: now,
            query_started: None,
            last_done: now,
            rollback_seen: false,
            pending_sets: Vec::new(),
            leak: LeakWatch::default(),
            leak_sleep: None,
            leak_idle,
            leak_action,
            rolled_back_after: None,
            server_dirty: false,
            server_fatal: false,
            ready_idle: false,
            prepared: ClientStatements::default(),
            rewrite: false,
            max_prepared: 0,
            skip_until_sync: false,
            restore_after: None,
            pins: 0,
            pending_unpin: 0,
            session_policy: SessionStatePolicy::Pin,
            analyses: [(u64::MAX, Analysis::default()); 4],
            analyses_next: 0,
            noted: [Fingerprint(u64::MAX); 4],
            noted_next: 0,
        }
    }

    fn hold_lease(&self) -> bool {
        self.pin == PinReason::SessionMode || self.pins != 0
    }

    /// Sends an error to the client and flushes (best effort).
    pub(crate) async fn send_error(
        &mut self,
        severity: Severity,
        code: &str,
        msg: &str,
        hint: Option<&str>,
    ) {
        message::error_response(&mut self.cout, severity, code, msg, None, hint);
        // Boxed: a rare path that would otherwise enlarge every session.
        let _ = Box::pin(self.client.write_all_clear(&mut self.cout)).await;
    }

    /// Runs the session until the client leaves. Returns when done; errors
    /// have already been reported to the client.
    pub(crate) async fn run(&mut self) {
        let pool_cfg = self.entry.pool.config();
        if pool_cfg.mode == PoolMode::Session {
            self.pin = PinReason::SessionMode;
            self.info.set_pin(PinReason::SessionMode);
        }
        self.max_prepared = pool_cfg.max_prepared_statements;
        self.session_policy = pool_cfg.on_session_state;
        self.rewrite = pool_cfg.mode == PoolMode::Transaction && self.max_prepared > 0;
        let end = self.transaction_loop().await;
        // Cold paths are boxed so they do not enlarge every idle session.
        Box::pin(self.finish(end)).await;
    }

    async fn transaction_loop(&mut self) -> PumpEnd {
        loop {
            // ---- Idle: flush what is pending, then wait for a request.
            if !self.cout.is_empty() {
                self.counts.add(Stat::BytesSent, self.cout.len() as u64);
                if self.client.write_all_clear(&mut self.cout).await.is_err() {
                    return PumpEnd::ClientGone;
                }
            }
            if self.lease.is_none() {
                match self.wait_for_request().await {
                    Ok(true) => {}
                    Ok(false) => return PumpEnd::ClientGone,
                    Err(end) => return end,
                }
                // Answer what needs no server.
                match self.answer_locally() {
                    LocalAnswer::Handled => continue,
                    LocalAnswer::Terminate => return PumpEnd::ClientTerminate,
                    LocalAnswer::Forward => {}
                }
                if self.rolled_back_after.is_some() {
                    self.reject_after_rollback();
                    continue;
                }
                if let Err(e) = self.checkout().await {
                    let (code, msg) = match &e {
                        CheckoutError::Timeout { .. } => ("53300", e.to_string()),
                        CheckoutError::Connect(c) => (c.sqlstate, c.message.clone()),
                        CheckoutError::Closed(_) => (
                            "57P01",
                            format!(
                                "{e}: sqlmux is shutting down or the database was removed from the configuration"
                            ),
                        ),
                    };
                    self.send_error(Severity::Fatal, code, &msg, None).await;
                    return PumpEnd::ClientGone;
                }
            }
            // ---- Leased: pump until a boundary or an end.
            let end = poll_fn(|cx| self.poll_pump(cx)).await;
            match end {
                PumpEnd::Boundary => {
                    self.on_boundary();
                    if !self.hold_lease() {
                        self.release(true);
                    } else if self.info.signals.raised(Signals::DRAIN) != 0 {
                        // Shutting down: end pinned sessions at their boundary.
                        self.send_error(
                            Severity::Fatal,
                            "57P01",
                            "terminating connection: sqlmux is shutting down",
                            Some("reconnect to another sqlmux instance"),
                        )
                        .await;
                        return PumpEnd::ClientGone;
                    }
                }
                PumpEnd::LeakIdle => {
                    if let Some(end) = Box::pin(self.on_leak_idle()).await {
                        return end;
                    }
                }
                other => return other,
            }
        }
    }

    /// Waits until `cin` holds at least one complete frame. Ok(false) when
    /// the client closed; Err when the proxy is shutting down.
    async fn wait_for_request(&mut self) -> Result<bool, PumpEnd> {
        loop {
            match frame::peek_header(&self.cin, self.max_msg) {
                Ok(Some(h)) if self.cin.len() >= h.frame_len() => return Ok(true),
                Ok(_) => {}
                Err(e) => {
                    return Err(PumpEnd::Protocol {
                        client_side: true,
                        message: e.to_string(),
                    });
                }
            }
            // Idle without pending bytes: hold no buffers while waiting.
            let plain = matches!(self.client, Stream::Plain(_));
            if plain && self.cin.is_empty() {
                io::recycle_buf(&mut self.cin);
                io::recycle_buf(&mut self.cout);
                io::recycle_buf(&mut self.sout);
                // Biased, the client first: the drain future is polled only
                // while the client is quiet (each poll takes its lock).
                let readable = tokio::select! {
                    biased;
                    r = self.client.tcp().readable() => r.is_ok(),
                    _ = self.info.signals.wait(Signals::DRAIN) => {
                        self.send_error(Severity::Fatal, "57P01", "terminating connection: sqlmux is shutting down", Some("reconnect to another sqlmux instance")).await;
                        return Err(PumpEnd::ClientGone);
                    }
                };
                if !readable {
                    return Ok(false);
                }
                if self.cin.capacity() == 0 {
                    self.cin = io::take_buf();
                }
            }
            let n = tokio::select! {
                biased;
                r = self.client.read_buf(&mut self.cin) => r,
                _ = self.info.signals.wait(Signals::DRAIN), if self.cin.is_empty() => {
                    self.send_error(Severity::Fatal, "57P01", "terminating connection: sqlmux is shutting down", Some("reconnect to another sqlmux instance")).await;
                    return Err(PumpEnd::ClientGone);
                }
            };
            match n {
                Ok(0) | Err(_) => return Ok(false),
                Ok(n) => {
                    self.now = Instant::now();
                    self.counts.add(Stat::BytesReceived, n as u64);
                }
            }
        }
    }

    /// Handles a request that needs no server: Terminate, a lone Sync or
    /// Flush outside a transaction.
    fn answer_locally(&mut self) -> LocalAnswer {
        let tag = self.cin[0];
        match tag {
            b'X' => LocalAnswer::Terminate,
            b'S' if self.q.is_empty() => {
                self.cin.advance(5);
                message::ready_for_query(&mut self.cout, b'I');
                LocalAnswer::Handled
            }
            b'H' => {
                self.cin.advance(5);
                LocalAnswer::Handled
            }
            _ => LocalAnswer::Forward,
        }
    }

    /// After a leaked transaction was rolled back: answers the client's
    /// next request (up to its Sync or the Query) with an error.
    fn reject_after_rollback(&mut self) {
        let idle = self.rolled_back_after.take().unwrap_or_default();
        // Consume messages up to and including the first Query or Sync.
        while let Ok(Some(h)) = frame::peek_header(&self.cin, self.max_msg) {
            if self.cin.len() < h.frame_len() {
                break;
            }
            self.cin.advance(h.frame_len());
            if h.tag == b'Q' || h.tag == b'S' {
                break;
            }
        }
        let msg = format!(
            "your transaction was rolled back by sqlmux after {:.1} s idle inside it (insight.leaked_transaction.idle = {})",
            idle.as_secs_f64(),
            humantime::format_duration(self.leak_idle)
        );
        message::error_response(
            &mut self.cout,
            Severity::Error,
            "25P03",
            &msg,
            None,
            Some("commit or roll back transactions promptly; start a new transaction"),
        );
        message::ready_for_query(&mut self.cout, b'I');
    }

    /// Borrows a server and prepares it for this client.
    async fn checkout(&mut self) -> Result<(), CheckoutError> {
        if self.entry.pool.is_retired() {
            self.rebind_pool();
        }
        let t0 = self.now;
        // Settings RELOAD may change, read once per transaction.
        self.insight_on = self.shared.insight.enabled();
        (self.leak_idle, self.leak_action) = self.shared.insight.leak_settings();
        self.info.set_state(ClientState::Waiting, unix_us_at(t0));
        let lease = match self.entry.pool.try_checkout(self.info.id, t0) {
            Some(l) => l,
            None => {
                // Waiting or connecting: boxed, so the future of an idle
                // session stays small.
                let pool = self.entry.pool.clone();
                let slow = Box::pin(pool.checkout(self.info.id, t0));
                tokio::select! {
                    l = slow => l?,
                    _ = self.info.signals.wait(Signals::DRAIN) => return Err(CheckoutError::Closed(self.entry.db.name.clone())),
                }
            }
        };
        let now = lease.checked_out_at();
        let wait_us = now.duration_since(t0).as_micros() as u64;
        self.counts.add(Stat::WaitTimeUs, wait_us);
        self.counts.add(Stat::ServerAssignments, 1);
        if self.insight_on {
            self.shared
                .insight
                .record_checkout_wait(self.entry.tag, wait_us);
        }
        self.info.set_link(lease.server_ref().info().id);
        self.info.set_state(ClientState::Active, unix_us_at(now));
        self.lease = Some(lease);
        self.lease_started = now;
        self.now = now;
        self.last_done = now;
        self.leak = LeakWatch {
            xact_started: Some(now),
            ..LeakWatch::default()
        };
        if self.sout.capacity() == 0 {
            self.sout = io::take_buf();
        }
        if self.cout.capacity() == 0 {
            self.cout = io::take_buf();
        }
        // Re-apply this client's parameters if the server differs.
        let server = self.lease.as_mut().expect("just leased").server();
        if let Some(sql) = params::sync_sql(self.info.id, &self.params, &server.params) {
            message::query(&mut self.sout, &sql);
            self.q.push(Req::Injected(Injected::Params));
        }
        Ok(())
    }

    /// The pool was retired by RELOAD: move to its replacement.
    fn rebind_pool(&mut self) {
        let cfg = self.shared.config.load();
        let users = self.shared.users.load();
        let Some(db) = cfg.database(&self.entry.db.name) else {
            return;
        };
        let Some(login) = crate::postgres::pools::server_login(&db, &users, &self.info.user())
        else {
            return;
        };
        let entry = self
            .shared
            .pg_pools
            .get_or_create(&cfg, &self.shared.insight, &db, login);
        entry.pool.clients.fetch_add(1, Ordering::Relaxed);
        self.entry.pool.clients.fetch_sub(1, Ordering::Relaxed);
        self.entry = entry;
    }

    /// Returns the server (clean when `clean` and the state allows it).
    fn release(&mut self, clean: bool) {
        let Some(mut lease) = self.lease.take() else {
            return;
        };
        let reusable = clean
            && !self.server_dirty
            && self.q.is_empty()
            && self.txn_status == b'I'
            && self.sout.is_empty()
            && self.client_skip == 0
            && self.server_skip == 0;
        if reusable {
            let server = lease.server();
            params::mark_synced(self.info.id, &self.params, &mut server.params);
        }
        lease.set_reusable(reusable);
        let xact_us = self
            .now
            .saturating_duration_since(self.lease_started)
            .as_micros() as u64;
        self.counts.add(Stat::XactTimeUs, xact_us);
        self.counts.add(Stat::Xacts, 1);
        if self.insight_on {
            self.shared
                .insight
                .record_transaction(self.entry.tag, xact_us);
        }
        drop(lease);
        self.q.clear();
        self.server_dirty = false;
        self.server_fatal = false;
        self.server_skip = 0;
        self.leak.armed = false;
        self.info.set_link(0);
        self.info.set_state(ClientState::Idle, unix_us_at(self.now));
        self.entry.pool.stats.add_all(&self.counts);
        self.counts.clear();
    }

    /// A transaction ended (ReadyForQuery `I`, nothing outstanding).
    fn on_boundary(&mut self) {
        self.ready_idle = false;
        if let Some(id) = self.leak.open.take() {
            self.shared.insight.leak_close(id, LeakState::Finished);
        }
        self.leak.armed = false;
        self.leak.xact_started = None;
        // Settings changed by committed statements now belong to the client.
        let pending = std::mem::take(&mut self.pending_sets);
        if !self.rollback_seen {
            let server = self.lease.as_mut().map(|l| &mut **l.server());
            apply_pending(&mut self.params, pending, server);
        }
        if !self.rollback_seen && self.pending_unpin != 0 {
            self.pins &= !self.pending_unpin;
            if self.pins == 0 && self.pin != PinReason::SessionMode {
                tracing::debug!(client.addr = %self.info.addr, "client unpinned");
                self.pin = PinReason::None;
                self.info.set_pin(PinReason::None);
            } else if self.pin != PinReason::SessionMode {
                self.pin = pin_reason(self.pins);
                self.info.set_pin(self.pin);
            }
        }
        self.pending_unpin = 0;
        self.rollback_seen = false;
        if self.hold_lease() {
            // Still leased: flush counters per transaction anyway.
            let xact_us = self
                .now
                .saturating_duration_since(self.lease_started)
                .as_micros() as u64;
            self.counts.add(Stat::XactTimeUs, xact_us);
            self.counts.add(Stat::Xacts, 1);
            self.entry.pool.stats.add_all(&self.counts);
            self.counts.clear();
            self.lease_started = self.now;
        }
    }
}

/// Applies committed setting changes to the client's wanted state and to
/// the server that ran them.
fn apply_pending(
    params: &mut ClientParams,
    pending: Vec<PendingSet>,
    mut server: Option<&mut PgServer>,
) {
    {
        for p in pending {
            match p {
                PendingSet::Set { name, statement } => {
                    params.set_setting(&name, &statement);
                    if let Some(s) = server.as_deref_mut() {
                        s.params.settings.set(&name, &statement);
                        s.params.version += 1;
                    }
                }
                PendingSet::Reset { name } => {
                    params.reset_setting(&name);
                    if let Some(s) = server.as_deref_mut()
                        && s.params.settings.remove_ignore_case(&name)
                    {
                        s.params.version += 1;
                    }
                }
                PendingSet::ResetAll { restored } => {
                    params.reset_all();
                    if let Some(s) = server.as_deref_mut() {
                        if restored {
                            s.params.settings = params.settings.clone();
                        } else {
                            s.params.settings.clear();
                        }
                        s.params.version += 1;
                    }
                }
            }
        }
    }
}

impl Session {
    /// The leak timer fired: the client holds a transaction and is idle.
    async fn on_leak_idle(&mut self) -> Option<PumpEnd> {
        let idle_since = self.leak.idle_since.unwrap_or(self.now);
        let xact_started = self.leak.xact_started.unwrap_or(self.lease_started);
        self.leak.armed = false;
        if self.leak.open.is_none() {
            tracing::warn!(
                client.addr = %self.info.addr,
                database = %self.entry.db.name,
                user = %self.entry.pool.key.user,
                idle_s = idle_since.elapsed().as_secs_f64(),
                action = self.leak_action.as_str(),
                "transaction left open and idle"
            );
            let id = self.shared.insight.leak_open(
                &self.info,
                xact_started,
                idle_since,
                self.leak.last_fp,
            );
            self.leak.open = Some(id);
        }
        if self.leak_action == LeakAction::Warn {
            return None;
        }
        // Roll back and give the server back.
        let idle = idle_since.elapsed();
        let lease = self.lease.as_mut()?;
        let server = lease.server();
        let ok = rollback_server(server, self.max_msg).await;
        if let Some(id) = self.leak.open.take() {
            self.shared.insight.leak_close(id, LeakState::RolledBack);
        }
        self.txn_status = b'I';
        self.pending_sets.clear();
        self.rollback_seen = false;
        self.now = Instant::now();
        self.release(ok);
        self.rolled_back_after = Some(idle);
        None
    }

    /// Cleans up when the session ends.
    async fn finish(&mut self, end: PumpEnd) {
        match &end {
            PumpEnd::ServerGone(_) if self.server_fatal => {}
            PumpEnd::ServerGone(msg) => {
                let m = format!("server connection lost: {msg}");
                self.send_error(
                    Severity::Fatal,
                    "08006",
                    &m,
                    Some("the server closed the connection or failed; reconnect"),
                )
                .await;
            }
            PumpEnd::Protocol {
                client_side,
                message,
            } => {
                let m = if *client_side {
                    format!("protocol violation: {message}")
                } else {
                    format!("protocol violation by the server: {message}")
                };
                self.send_error(Severity::Fatal, "08P01", &m, None).await;
            }
            _ => {}
        }
        if !self.cout.is_empty() {
            let _ = self.client.write_all_clear(&mut self.cout).await;
        }
        self.sess_insight.finish(&self.shared.insight);
        if self.lease.is_some() {
            let clean_exit = matches!(
                end,
                PumpEnd::ClientTerminate | PumpEnd::ClientGone | PumpEnd::Boundary
            );
            let idle_clean = self.q.is_empty() && self.txn_status == b'I' && self.sout.is_empty();
            if !idle_clean
                && self.leak.xact_started.is_some()
                && matches!(end, PumpEnd::ClientTerminate | PumpEnd::ClientGone)
            {
                let idle_since = self.leak.idle_since.unwrap_or(self.now);
                let xact_started = self.leak.xact_started.unwrap_or(self.lease_started);
                match self.leak.open.take() {
                    Some(id) => self.shared.insight.leak_close(id, LeakState::Abandoned),
                    None => self.shared.insight.leak_abandoned(
                        &self.info,
                        xact_started,
                        idle_since,
                        self.leak.last_fp,
                    ),
                }
            }
            let mut reusable = clean_exit && idle_clean && !self.server_dirty;
            if reusable && self.pin != PinReason::None {
                // Session state must not leak to the next client.
                let lease = self.lease.as_mut().expect("checked");
                reusable = reset_server(lease.server(), self.max_msg).await;
            }
            self.release(reusable);
        }
        if let Some(id) = self.leak.open.take() {
            self.shared.insight.leak_close(id, LeakState::Abandoned);
        }
        if !self.counts.is_empty() {
            self.entry.pool.stats.add_all(&self.counts);
        }
    }

    // ------------------------------------------------------------------
    // The pump

    fn poll_pump(&mut self, cx: &mut Context<'_>) -> Poll<PumpEnd> {
        loop {
            let mut progress = false;

            // Client output.
            if !self.cout.is_empty() {
                let before = self.cout.len();
                match self.client.poll_write_buf(cx, &mut self.cout) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(_)) => return Poll::Ready(PumpEnd::ClientGone),
                    Poll::Pending => {}
                }
                let written = before - self.cout.len();
                self.counts.add(Stat::BytesSent, written as u64);
            }

            // Server output.
            let lease = self.lease.as_mut().expect("pump runs leased");
            if !self.sout.is_empty() {
                match lease.server().stream.poll_write_buf(cx, &mut self.sout) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(PumpEnd::ServerGone(e.to_string())),
                    Poll::Pending => {}
                }
            }

            // Server input -> client output.
            if self.cout.len() < HIGH_WATER {
                let mut sbuf =
                    std::mem::take(&mut self.lease.as_mut().expect("leased").server().buf);
                let r = self.process_server(&mut sbuf);
                let server = self.lease.as_mut().expect("leased").server();
                server.buf = sbuf;
                match r {
                    Ok(true) => progress = true,
                    Ok(false) => {}
                    Err(end) => return Poll::Ready(end),
                }
                if self.at_boundary() {
                    return Poll::Ready(PumpEnd::Boundary);
                }
                if self.cout.len() < HIGH_WATER && self.server_needs_bytes() {
                    let server = self.lease.as_mut().expect("leased").server();
                    match server.stream.poll_read_buf(cx, &mut server.buf) {
                        Poll::Ready(Ok(0)) => {
                            return Poll::Ready(PumpEnd::ServerGone(
                                "the server closed the connection".into(),
                            ));
                        }
                        Poll::Ready(Ok(_)) => {
                            self.now = Instant::now();
                            progress = true;
                        }
                        Poll::Ready(Err(e)) => {
                            return Poll::Ready(PumpEnd::ServerGone(e.to_string()));
                        }
                        Poll::Pending => {}
                    }
                }
            }

            // Client input -> server output.
            if self.sout.len() < HIGH_WATER {
                match self.process_client() {
                    Ok(true) => progress = true,
                    Ok(false) => {}
                    Err(end) => return Poll::Ready(end),
                }
                if self.sout.len() < HIGH_WATER && self.client_needs_bytes() {
                    match self.client.poll_read_buf(cx, &mut self.cin) {
                        Poll::Ready(Ok(0)) => return Poll::Ready(PumpEnd::ClientGone),
                        Poll::Ready(Ok(n)) => {
                            self.now = Instant::now();
                            self.counts.add(Stat::BytesReceived, n as u64);
                            progress = true;
                        }
                        Poll::Ready(Err(_)) => return Poll::Ready(PumpEnd::ClientGone),
                        Poll::Pending => {}
                    }
                }
            }

            // Idle inside a transaction?
            if self.leak.armed {
                let idle = self.idle_in_transaction();
                let idle_since = self.leak.idle_since.unwrap_or(self.now);
                let due = idle_since + self.leak_idle;
                if let Some(sleep) = self.leak_sleep.as_mut()
                    && sleep.as_mut().poll(cx).is_ready()
                {
                    let now = Instant::now();
                    if now >= due && idle {
                        return Poll::Ready(PumpEnd::LeakIdle);
                    }
                    if idle {
                        sleep
                            .as_mut()
                            .reset(due.max(now + Duration::from_millis(1)).into());
                        continue;
                    }
                    self.leak.armed = false;
                }
            }

            if !progress {
                return Poll::Pending;
            }
        }
    }

    fn at_boundary(&self) -> bool {
        self.ready_idle
            && self.q.is_empty()
            && self.sout.is_empty()
            && self.client_skip == 0
            && self.server_skip == 0
    }

    fn idle_in_transaction(&self) -> bool {
        self.txn_status != b'I' && self.q.is_empty() && self.sout.is_empty() && !self.q.copy_in
    }

    fn server_needs_bytes(&mut self) -> bool {
        if self.server_skip > 0 {
            return true;
        }
        let buf = &self.lease.as_mut().expect("leased").server().buf;
        match frame::peek_header(buf, self.max_msg) {
            Ok(Some(h)) => buf.len() < h.frame_len(),
            Ok(None) => true,
            Err(_) => false,
        }
    }

    fn client_needs_bytes(&self) -> bool {
        if self.client_skip > 0 {
            return true;
        }
        match frame::peek_header(&self.cin, self.max_msg) {
            Ok(Some(h)) => self.cin.len() < h.frame_len(),
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// Arms the leak timer when the transaction goes idle.
    fn arm_leak_timer(&mut self) {
        self.leak.idle_since = Some(self.now);
        if self.leak.armed {
            return;
        }
        self.leak.armed = true;
        let due = self.now + self.leak_idle;
        match self.leak_sleep.as_mut() {
            Some(s) => {
                if s.deadline() > due.into() || s.is_elapsed() {
                    s.as_mut().reset(due.into());
                }
            }
            None => self.leak_sleep = Some(Box::pin(tokio::time::sleep_until(due.into()))),
        }
    }

    // ------------------------------------------------------------------
    // Client -> server

    /// Moves complete client frames into `sout`. Ok(true) if anything moved.
    fn process_client(&mut self) -> Result<bool, PumpEnd> {
        let mut moved = false;
        while self.sout.len() < HIGH_WATER {
            if self.client_skip > 0 {
                if self.cin.is_empty() {
                    break;
                }
                let n = self.client_skip.min(self.cin.len());
                self.sout.extend_from_slice(&self.cin[..n]);
                self.cin.advance(n);
                self.client_skip -= n;
                moved = true;
                continue;
            }
            let h = match frame::peek_header(&self.cin, self.max_msg) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => {
                    return Err(PumpEnd::Protocol {
                        client_side: true,
                        message: e.to_string(),
                    });
                }
            };
            let len = h.frame_len();
            if self.cin.len() < len {
                if h.tag == b'd' {
                    // Stream large CopyData through.
                    let n = self.cin.len();
                    self.sout.extend_from_slice(&self.cin[..n]);
                    self.cin.advance(n);
                    self.client_skip = len - n;
                    moved = true;
                    continue;
                }
                if self.cin.capacity() < len {
                    self.cin.reserve(len - self.cin.len());
                }
                break;
            }
            moved = true;
            if self.leak.open.is_some()
                && let Some(id) = self.leak.open.take()
            {
                self.shared.insight.leak_close(id, LeakState::Finished);
            }
            self.leak.armed = false;
            let cin = std::mem::take(&mut self.cin);
            let r = self.on_client_message(h.tag, &cin[..len]);
            self.cin = cin;
            if r? {
                self.sout.extend_from_slice(&self.cin[..len]);
                if let Some(sql) = self.restore_after.take() {
                    message::query(&mut self.sout, &sql);
                    self.q.push(Req::Injected(Injected::Restore));
                }
            }
            self.cin.advance(len);
            if h.tag == b'X' {
                return Err(PumpEnd::ClientTerminate);
            }
        }
        Ok(moved)
    }

    /// Looks at one complete client message (the whole frame). Returns
    /// true to forward it verbatim; false when it was handled (rewritten
    /// into `sout`, answered locally, or dropped).
    fn on_client_message(&mut self, tag: u8, frame: &[u8]) -> Result<bool, PumpEnd> {
        let len = frame.len();
        let now = self.now;
        self.ready_idle = false;
        if self.skip_until_sync {
            // After an error sqlmux produced itself, PostgreSQL semantics:
            // ignore everything up to the next Sync.
            if tag == b'S' {
                self.skip_until_sync = false;
            } else {
                return Ok(tag == b'X');
            }
        }
        if self.query_started.is_none() && !matches!(tag, b'X' | b'H' | b'd' | b'c' | b'f') {
            self.query_started = Some(now);
        }
        let body = &frame[HEADER_LEN..len];
        match tag {
            b'Q' => {
                let sql = message::decode_query(body)
                    .ok_or_else(|| bad_client("malformed Query message"))?;
                let a = self.analyze(sql);
                if let Some(msg) = self.session_state_policy(&a) {
                    self.push_local(Local::QueryError {
                        code: "0A000",
                        message: msg.into(),
                    });
                    return Ok(false);
                }
                self.after_analysis(&a, sql, true);
                if self.rewrite
                    && a.effects
                        .any(Effects::DEALLOCATE | Effects::DEALLOCATE_ALL | Effects::DISCARD_ALL)
                    && let Some(done) = self.deallocate_locally(sql, &a)
                {
                    self.push_local(Local::QueryDone(done.into()));
                    return Ok(false);
                }
                self.q.push(Req::Query {
                    fp: a.fingerprint,
                    sent: now,
                    rows: 0,
                    error: false,
                });
            }
            b'P' => {
                let p = message::decode_parse(body)
                    .ok_or_else(|| bad_client("malformed Parse message"))?;
                let a = self.analyze(p.query);
                if let Some(msg) = self.session_state_policy(&a) {
                    self.local_error("0A000", msg);
                    return Ok(false);
                }
                self.after_analysis(&a, p.query, false);
                let info = StmtInfo {
                    fp: a.fingerprint,
                    txn_control: is_txn_control(&a),
                };
                if p.name.is_empty() {
                    self.stmts.unnamed = info;
                } else {
                    self.counts.add(Stat::ClientParses, 1);
                    if self.rewrite {
                        return self.parse_named(p.name, p.query, p.param_types, info);
                    }
                    self.stmts.named.insert(p.name.into(), info);
                    self.counts.add(Stat::ServerParses, 1);
                }
                self.q.push(Req::Parse {
                    synthetic: false,
                    stmt: None,
                    name: None,
                });
            }
            b'B' => {
                let (portal, stmt, rest_at) = message::decode_bind_names(body)
                    .ok_or_else(|| bad_client("malformed Bind message"))?;
                self.counts.add(Stat::Binds, 1);
                let info = if stmt.is_empty() {
                    self.stmts.unnamed
                } else if self.rewrite {
                    let Some(prep) = self.prepared.get(stmt).cloned() else {
                        self.local_error(
                            "26000",
                            format!(
                                "prepared statement \"{}\" does not exist",
                                String::from_utf8_lossy(stmt)
                            ),
                        );
                        return Ok(false);
                    };
                    self.ensure_prepared(&prep);
                    prepared::write_bind(
                        &mut self.sout,
                        portal,
                        &prep.server_name,
                        &body[rest_at..],
                    );
                    let info = StmtInfo {
                        fp: prep.fp,
                        txn_control: prep.txn_control,
                    };
                    self.set_portal(portal, info);
                    self.q.push(Req::Bind);
                    return Ok(false);
                } else {
                    self.stmts.named.get(stmt).copied().unwrap_or_default()
                };
                self.set_portal(portal, info);
                self.q.push(Req::Bind);
            }
            b'E' => {
                let (portal, _) = message::decode_execute(body)
                    .ok_or_else(|| bad_client("malformed Execute message"))?;
                let info = if portal.is_empty() {
                    self.stmts.unnamed_portal
                } else {
                    self.stmts.portals.get(portal).copied().unwrap_or_default()
                };
                let fp = info.fp;
                if self.insight_on {
                    self.sess_insight.observe(
                        &self.shared.insight,
                        &self.info,
                        fp,
                        info.txn_control,
                        now,
                    );
                }
                self.leak.last_fp = Some(fp);
                self.q.push(Req::Execute { fp, sent: now });
            }
            b'D' => {
                let (kind, name) = message::decode_target(body)
                    .ok_or_else(|| bad_client("malformed Describe message"))?;
                if kind == b'S' && !name.is_empty() && self.rewrite {
                    let Some(prep) = self.prepared.get(name).cloned() else {
                        self.local_error(
                            "26000",
                            format!(
                                "prepared statement \"{}\" does not exist",
                                String::from_utf8_lossy(name)
                            ),
                        );
                        return Ok(false);
                    };
                    self.ensure_prepared(&prep);
                    prepared::write_describe(&mut self.sout, &prep.server_name);
                    self.q.push(Req::Describe);
                    return Ok(false);
                }
                self.q.push(Req::Describe);
            }
            b'C' => {
                let (kind, name) = message::decode_target(body)
                    .ok_or_else(|| bad_client("malformed Close message"))?;
                if kind == b'S' {
                    if self.rewrite && !name.is_empty() {
                        // The server keeps the statement for other clients.
                        self.prepared.remove(name);
                        self.info
                            .prepared_statements
                            .store(self.prepared.len(), Ordering::Relaxed);
                        self.push_local(Local::CloseComplete);
                        return Ok(false);
                    }
                    self.stmts.named.remove(name);
                } else {
                    self.stmts.portals.remove(name);
                }
                self.q.push(Req::Close {
                    synthetic: false,
                    evicted: None,
                });
            }
            b'S' => {
                if !self.q.copy_in_extended {
                    self.q.push(Req::Sync);
                }
            }
            b'H' | b'd' => {}
            b'c' | b'f' => self.q.leave_copy_in(),
            b'F' => self.q.push(Req::Function),
            b'X' => return Ok(false),
            other => {
                return Err(bad_client(&format!(
                    "unexpected message type {:?} from the client",
                    other as char
                )));
            }
        }
        Ok(true)
    }

    fn set_portal(&mut self, portal: &[u8], info: StmtInfo) {
        if portal.is_empty() {
            self.stmts.unnamed_portal = info;
        } else {
            self.stmts.portals.insert(portal.into(), info);
        }
    }

    /// A named Parse in transaction mode: record the client's name and make
    /// sure the server has the statement under its shared name.
    fn parse_named(
        &mut self,
        name: &[u8],
        query: &[u8],
        types: &[u8],
        info: StmtInfo,
    ) -> Result<bool, PumpEnd> {
        if self.prepared.get(name).is_some() {
            self.local_error(
                "42P05",
                format!(
                    "prepared statement \"{}\" already exists",
                    String::from_utf8_lossy(name)
                ),
            );
            return Ok(false);
        }
        // The name is usable by the messages that follow in the same batch
        // (a Bind right behind the Parse), but exists for good only if the
        // Parse runs: a failed or skipped Parse forgets it again.
        let prep = Arc::new(Prepared::new(query, types, info.fp, info.txn_control));
        self.prepared.insert(name, prep.clone());
        self.publish_client_statements();
        let server = self.lease.as_mut().expect("leased").server();
        if server.prepared.touch(prep.id) {
            self.push_local(Local::ParseComplete(Some(name.into())));
            return Ok(false);
        }
        self.send_parse(&prep, Some(name));
        Ok(false)
    }

    /// Injects a Parse when the server lacks the statement.
    fn ensure_prepared(&mut self, prep: &Arc<Prepared>) {
        let server = self.lease.as_mut().expect("leased").server();
        if !server.prepared.touch(prep.id) {
            self.send_parse(prep, None);
        }
    }

    /// Sends a Parse of `prep` under its server name, closing evicted ones.
    /// `client_name` is the client's own Parse being rewritten (its
    /// ParseComplete goes to the client); None for an injected Parse.
    fn send_parse(&mut self, prep: &Arc<Prepared>, client_name: Option<&[u8]>) {
        let max = self.max_prepared;
        let server = self.lease.as_mut().expect("leased").server();
        let evicted = server.prepared.add(prep, max);
        server.publish_statement_count();
        for (id, name) in evicted {
            prepared::write_close(&mut self.sout, &name);
            self.q.push(Req::Close {
                synthetic: true,
                evicted: Some((id, name)),
            });
        }
        prep.write_parse(&mut self.sout);
        self.q.push(Req::Parse {
            synthetic: client_name.is_none(),
            stmt: Some(prep.id),
            name: client_name.map(Into::into),
        });
        self.counts.add(Stat::ServerParses, 1);
    }

    /// Publishes the number of this client's named statements.
    fn publish_client_statements(&self) {
        self.info
            .prepared_statements
            .store(self.prepared.len(), Ordering::Relaxed);
    }

    /// A request the server will never answer (an error came first): undo
    /// what sqlmux recorded when it sent it, so its idea of the client's
    /// names and of the server's statements stays what the server holds.
    fn forget_unanswered(&mut self, r: &Req) {
        let (stmt, name, evicted) = match r {
            Req::Parse { stmt, name, .. } => (*stmt, name.as_deref(), None),
            Req::Local(Local::ParseComplete(name)) => (None, name.as_deref(), None),
            Req::Close { evicted, .. } => (None, None, *evicted),
            _ => return,
        };
        if let Some(name) = name {
            self.prepared.remove(name);
            self.publish_client_statements();
        }
        let Some(lease) = self.lease.as_mut() else {
            return;
        };
        let server = lease.server();
        if let Some(id) = stmt {
            server.prepared.remove(id);
        }
        if let Some((id, server_name)) = evicted {
            server.prepared.restore(id, server_name);
        }
        server.publish_statement_count();
    }

    /// After an error: the server skips everything up to the next Sync.
    /// Returns the Execute the error answered, if any.
    fn skip_to_sync(&mut self) -> Option<(Fingerprint, Instant)> {
        let skipped = self.q.skip_to_sync();
        for r in &skipped {
            self.forget_unanswered(r);
        }
        match skipped.first() {
            Some(Req::Execute { fp, sent }) => Some((*fp, *sent)),
            _ => None,
        }
    }

    /// Queues a reply sqlmux produces itself, in order with the server's.
    fn push_local(&mut self, l: Local) {
        self.q.push(Req::Local(l));
        self.drain_local();
    }

    /// An error sqlmux produces itself; like PostgreSQL, later messages up
    /// to Sync are ignored.
    fn local_error(&mut self, code: &'static str, message: String) {
        self.skip_until_sync = true;
        self.push_local(Local::Error {
            code,
            message: message.into(),
        });
    }

    /// Emits local replies that have reached the front of the queue.
    fn drain_local(&mut self) {
        while let Some(Req::Local(_)) = self.q.front() {
            let Some(Req::Local(l)) = self.q.pop() else {
                break;
            };
            match l {
                Local::ParseComplete(_) => message::parse_complete(&mut self.cout),
                Local::CloseComplete => message::close_complete(&mut self.cout),
                Local::Error { code, message: m } => {
                    message::error_response(&mut self.cout, Severity::Error, code, &m, None, None);
                    self.skip_to_sync();
                }
                Local::QueryError { code, message: m } => {
                    message::error_response(&mut self.cout, Severity::Error, code, &m, None, None);
                    message::ready_for_query(
                        &mut self.cout,
                        if self.txn_status == b'I' { b'I' } else { b'E' },
                    );
                    self.finish_query(self.now);
                    if self.q.is_empty() && self.txn_status == b'I' {
                        self.query_started = None;
                        self.ready_idle = true;
                    }
                }
                Local::QueryDone(tag) => {
                    message::command_complete(&mut self.cout, &tag);
                    message::ready_for_query(&mut self.cout, self.txn_status);
                    self.finish_query(self.now);
                    if self.q.is_empty() && self.txn_status == b'I' {
                        self.query_started = None;
                        self.ready_idle = true;
                    }
                }
            }
        }
    }

    /// `DEALLOCATE name` / `DEALLOCATE ALL` of protocol-level statements is
    /// answered by sqlmux (the server knows them under other names).
    /// `DISCARD ALL` also forgets the client's statements but still runs.
    fn deallocate_locally(&mut self, sql: &[u8], a: &Analysis) -> Option<&'static str> {
        if a.effects.any(Effects::DISCARD_ALL) || a.effects.any(Effects::DEALLOCATE_ALL) {
            self.prepared.clear();
            self.info.prepared_statements.store(0, Ordering::Relaxed);
            return None;
        }
        if a.statements != 1 || self.pin == PinReason::SqlPrepare {
            return None;
        }
        // DEALLOCATE [PREPARE] name
        let text = std::str::from_utf8(sql)
            .ok()?
            .trim()
            .trim_end_matches(';')
            .trim();
        let mut words = text.split_whitespace();
        if !words.next()?.eq_ignore_ascii_case("deallocate") {
            return None;
        }
        let mut name = words.next()?;
        if name.eq_ignore_ascii_case("prepare") {
            name = words.next()?;
        }
        if words.next().is_some() {
            return None;
        }
        let name = name.trim_matches('"');
        self.prepared.remove(name.as_bytes())?;
        self.info
            .prepared_statements
            .store(self.prepared.len(), Ordering::Relaxed);
        Some("DEALLOCATE")
    }

    /// Normalizes a statement (for its fingerprint and effects).
    fn analyze(&mut self, sql: &[u8]) -> Analysis {
        // Drivers send the same statement text again and again (every
        // extended-protocol Parse, every repeated query): remember the last
        // few analyses by a hash of the raw bytes.
        let key = xxhash_rust::xxh3::xxh3_64(sql);
        if let Some((_, a)) = self.analyses.iter().find(|(k, _)| *k == key) {
            return *a;
        }
        if !self.insight_on && !sql::may_have_effects(sql) {
            // No fingerprint wanted and nothing that changes session state.
            return Analysis {
                statements: 1,
                ..Analysis::default()
            };
        }
        // Texts are shared across threads; a small per-session memory of
        // what was already noted keeps the hot path off that lock.
        let note = self.insight_on;
        let insight = &self.shared.insight;
        let noted = &self.noted;
        let a = NORMALIZER.with(|n| {
            let mut n = n.borrow_mut();
            let a = n.analyze(sql, Dialect::Postgres);
            if note && !noted.contains(&a.fingerprint) {
                insight.note_text(a.fingerprint, n.text());
            }
            a
        });
        if note && !self.noted.contains(&a.fingerprint) {
            self.noted[self.noted_next % self.noted.len()] = a.fingerprint;
            self.noted_next = self.noted_next.wrapping_add(1);
        }
        self.analyses[self.analyses_next % self.analyses.len()] = (key, a);
        self.analyses_next = self.analyses_next.wrapping_add(1);
        a
    }

    /// Session-state bookkeeping for a statement about to be forwarded.
    fn after_analysis(&mut self, a: &Analysis, sql: &[u8], executes_now: bool) {
        let e = a.effects;
        if executes_now {
            self.leak.last_fp = Some(a.fingerprint);
            if self.insight_on {
                self.sess_insight.observe(
                    &self.shared.insight,
                    &self.info,
                    a.fingerprint,
                    is_txn_control(a),
                    self.now,
                );
            }
        }
        if e.0 == 0 {
            return;
        }
        if e.any(Effects::SET | Effects::RESET) {
            let reported = self
                .lease
                .as_mut()
                .map(|l| l.server().params.current.clone())
                .unwrap_or_default();
            for cmd in sql::set_commands(sql, Dialect::Postgres) {
                if cmd.value.is_none() && executes_now && a.statements == 1 && !cmd.local {
                    // RESET name: back to the client's startup value.
                    self.restore_after = self.params.restore_sql(Some(&cmd.name));
                }
                if cmd.local || reported.get_ignore_case(&cmd.name).is_some() {
                    continue;
                }
                match cmd.value {
                    Some(v) => self.pending_sets.push(PendingSet::Set {
                        statement: format!("SET {} TO {}", params::quote_ident(&cmd.name), v),
                        name: cmd.name,
                    }),
                    None => self.pending_sets.push(PendingSet::Reset { name: cmd.name }),
                }
            }
        }
        if e.any(Effects::RESET_ALL | Effects::DISCARD_ALL) {
            // A lone RESET ALL / DISCARD ALL in a Query: the startup values
            // are re-applied right behind it (see `process_client`).
            if executes_now && a.statements == 1 {
                self.restore_after = self.params.restore_sql(None);
            }
            let restored = self.restore_after.is_some();
            self.pending_sets.push(PendingSet::ResetAll { restored });
        }
        // State that clears pins once the transaction commits.
        let mut clears = 0u8;
        if e.any(Effects::UNLISTEN_ALL) {
            clears |= PIN_LISTEN;
        }
        if e.any(Effects::ADVISORY_UNLOCK_ALL) {
            clears |= PIN_ADVISORY;
        }
        if e.any(Effects::DISCARD_TEMP) {
            clears |= PIN_TEMP;
        }
        if e.any(Effects::DEALLOCATE_ALL) {
            clears |= PIN_PREPARE;
        }
        if e.any(Effects::DISCARD_ALL) {
            clears = u8::MAX;
        }
        if clears != 0 {
            self.pending_unpin |= clears;
        }
    }

    /// Session state in `a` that cannot follow the client to another
    /// server, as pin bits (0 = none).
    fn session_state_bits(a: &Analysis) -> u8 {
        let e = a.effects;
        let mut bits = 0;
        if e.any(Effects::LISTEN) {
            bits |= PIN_LISTEN;
        }
        if e.any(Effects::ADVISORY_LOCK) {
            bits |= PIN_ADVISORY;
        }
        if e.any(Effects::TEMP_TABLE) {
            bits |= PIN_TEMP;
        }
        if e.any(Effects::PREPARE) {
            bits |= PIN_PREPARE;
        }
        if e.any(Effects::WITH_HOLD) {
            bits |= PIN_HOLD;
        }
        if e.any(Effects::LOAD) {
            bits |= PIN_OTHER;
        }
        bits
    }

    /// Applies `pool.on_session_state` to a statement. Returns an error
    /// message when the statement must be refused.
    fn session_state_policy(&mut self, a: &Analysis) -> Option<String> {
        let bits = Self::session_state_bits(a);
        if bits == 0 || self.pin == PinReason::SessionMode {
            return None;
        }
        match self.session_policy {
            SessionStatePolicy::Ignore => None,
            SessionStatePolicy::Error => Some(format!(
                "{} is not supported in transaction pooling mode (pool.on_session_state = \"error\"): the server would be shared with other clients",
                pin_reason(bits).as_str().replace('_', " ")
            )),
            SessionStatePolicy::Pin => {
                if self.pins == 0 {
                    let reason = pin_reason(bits);
                    tracing::debug!(client.addr = %self.info.addr, reason = reason.as_str(), "client pinned to its server");
                    self.pin = reason;
                    self.info.set_pin(reason);
                }
                self.pins |= bits;
                None
            }
        }
    }

    // ------------------------------------------------------------------
    // Server -> client

    /// Moves complete server frames from `sbuf` into `cout`. Ok(true) if
    /// anything was consumed.
    fn process_server(&mut self, sbuf: &mut BytesMut) -> Result<bool, PumpEnd> {
        let mut moved = false;
        // Frames forwarded unchanged are copied in runs: `run` is where the
        // current run starts, `pos` where the next frame starts.
        let mut run = 0;
        let mut pos = 0;
        while self.cout.len() + (pos - run) < HIGH_WATER {
            let rest = &sbuf[pos..];
            if self.server_skip > 0 {
                if rest.is_empty() {
                    break;
                }
                let n = self.server_skip.min(rest.len());
                pos += n;
                self.server_skip -= n;
                moved = true;
                continue;
            }
            let h = match frame::peek_header(rest, self.max_msg) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => {
                    self.server_dirty = true;
                    return Err(PumpEnd::Protocol {
                        client_side: false,
                        message: e.to_string(),
                    });
                }
            };
            let len = h.frame_len();
            if rest.len() < len {
                if matches!(h.tag, b'D' | b'd') && !self.swallowing() {
                    // Stream large rows and copy data through.
                    let n = rest.len();
                    pos += n;
                    self.server_skip = len - n;
                    moved = true;
                    continue;
                }
                if sbuf.capacity() - run < len {
                    sbuf.reserve(len);
                }
                break;
            }
            moved = true;
            if h.tag == b'A' {
                self.own_notification_pid(&mut sbuf[pos + HEADER_LEN..pos + len]);
            }
            let forward = self.on_server_message(h.tag, &sbuf[pos + HEADER_LEN..pos + len])?;
            if !forward {
                self.cout.extend_from_slice(&sbuf[run..pos]);
                run = pos + len;
            }
            pos += len;
            if matches!(self.q.front(), Some(Req::Local(_))) {
                self.cout.extend_from_slice(&sbuf[run..pos]);
                run = pos;
                self.drain_local();
            }
        }
        self.cout.extend_from_slice(&sbuf[run..pos]);
        sbuf.advance(pos);
        Ok(moved)
    }

    /// A NotificationResponse sent by the client's own session (NOTIFY on
    /// the server it is lent) names the server's process id; the client
    /// knows its session by the id sqlmux gave it in BackendKeyData, as on
    /// a direct connection. Rewritten in place.
    fn own_notification_pid(&mut self, body: &mut [u8]) {
        let Some(pid) = body.get(..4) else {
            return;
        };
        let pid = i32::from_be_bytes([pid[0], pid[1], pid[2], pid[3]]);
        let server = self.lease.as_mut().expect("leased").server();
        if pid == server.cancel_pid {
            body[..4].copy_from_slice(&self.info.cancel_key.0.to_be_bytes());
        }
    }

    fn swallowing(&self) -> bool {
        matches!(self.q.front(), Some(Req::Injected(_)))
    }

    /// Looks at one complete server message. Returns whether to forward it.
    fn on_server_message(&mut self, tag: u8, body: &[u8]) -> Result<bool, PumpEnd> {
        let now = self.now;
        let swallow = self.swallowing();
        match tag {
            b'Z' => {
                let status = *body
                    .first()
                    .ok_or_else(|| bad_server("empty ReadyForQuery"))?;
                let mut forward = true;
                loop {
                    match self.q.pop() {
                        Some(Req::Query {
                            fp,
                            sent,
                            rows,
                            error,
                        }) => {
                            self.finish_statement(fp, sent, rows, error, now);
                            self.finish_query(now);
                            break;
                        }
                        Some(Req::Sync) | Some(Req::Function) => {
                            self.finish_query(now);
                            break;
                        }
                        Some(Req::Injected(kind)) => {
                            forward = false;
                            if kind == Injected::Params {
                                let server = self.lease.as_mut().expect("leased").server();
                                params::mark_synced(self.info.id, &self.params, &mut server.params);
                            }
                            break;
                        }
                        Some(_) => continue,
                        None => {
                            // A ReadyForQuery nobody asked for: state unknown.
                            self.server_dirty = true;
                            break;
                        }
                    }
                }
                if forward {
                    self.txn_status = status;
                }
                if self.q.is_empty() && forward {
                    if status == b'I' {
                        self.query_started = None;
                        self.ready_idle = true;
                    } else {
                        self.arm_leak_timer();
                    }
                }
                Ok(forward)
            }
            b'C' | b'I' | b's' => {
                let rows = if tag == b'C' {
                    message::command_complete_rows(body).unwrap_or(0)
                } else {
                    0
                };
                if tag == b'C' {
                    let cmd = message::command_complete_command(body);
                    if cmd == b"ROLLBACK" {
                        self.rollback_seen = true;
                    } else {
                        let server = self.lease.as_mut().expect("leased").server();
                        server.command_completed(body);
                    }
                }
                match self.q.front_mut() {
                    Some(Req::Execute { .. }) => {
                        if let Some(Req::Execute { fp, sent }) = self.q.pop() {
                            self.finish_statement(fp, sent, rows, false, now);
                        }
                    }
                    Some(Req::Query { rows: r, .. }) => *r += rows,
                    _ => {}
                }
                Ok(!swallow)
            }
            b'E' => {
                let fields = message::decode_error_fields(body).unwrap_or_default();
                if fields.severity == "FATAL" || fields.severity == "PANIC" {
                    // The server is closing; its own error is the one the
                    // client gets (see `finish`).
                    self.server_dirty = true;
                    self.server_fatal = true;
                }
                self.rollback_seen = true;
                self.counts.add(Stat::Errors, 1);
                match self.q.front_mut() {
                    Some(Req::Query { error, .. }) => *error = true,
                    Some(Req::Injected(kind)) => {
                        tracing::warn!(
                            client.addr = %self.info.addr,
                            code = fields.code,
                            error = fields.message,
                            kind = ?kind,
                            "statement injected by sqlmux failed"
                        );
                        if *kind == Injected::Params {
                            // Tell the client its session settings could not be restored.
                            message::error_response(
                                &mut self.cout,
                                Severity::Warning,
                                "01000",
                                &format!(
                                    "sqlmux could not restore your session settings on the server: {}",
                                    fields.message
                                ),
                                None,
                                None,
                            );
                        }
                        return Ok(false);
                    }
                    Some(_) => {
                        // The failed request and everything up to Sync.
                        if let Some((fp, sent)) = self.skip_to_sync() {
                            self.finish_statement(fp, sent, 0, true, now);
                        }
                    }
                    None => {
                        // Asynchronous error (e.g. the server is shutting down).
                        self.server_dirty = true;
                    }
                }
                self.q.copy_in = false;
                self.q.copy_in_extended = false;
                Ok(true)
            }
            b'1' => match self.q.pop() {
                Some(Req::Parse { synthetic, .. }) => Ok(!synthetic),
                _ => Err(bad_server("ParseComplete without a Parse")),
            },
            b'2' => match self.q.pop() {
                Some(Req::Bind) => Ok(true),
                _ => Err(bad_server("BindComplete without a Bind")),
            },
            b'3' => match self.q.pop() {
                Some(Req::Close { synthetic, .. }) => Ok(!synthetic),
                _ => Err(bad_server("CloseComplete without a Close")),
            },
            b'n' => {
                if matches!(self.q.front(), Some(Req::Describe)) {
                    self.q.pop();
                }
                Ok(!swallow)
            }
            b'T' => {
                if matches!(self.q.front(), Some(Req::Describe)) {
                    self.q.pop();
                }
                Ok(!swallow)
            }
            b'G' => {
                self.q.enter_copy_in();
                Ok(true)
            }
            b'W' => {
                // Copy-both (replication): this server can never be shared.
                self.server_dirty = true;
                if self.pin == PinReason::None {
                    self.pin = PinReason::Other;
                    self.info.set_pin(PinReason::Other);
                }
                Ok(true)
            }
            b'S' => {
                let (name, value) = message::decode_parameter_status(body)
                    .ok_or_else(|| bad_server("malformed ParameterStatus"))?;
                let server = self.lease.as_mut().expect("leased").server();
                server.params.reported(name, value);
                if name == "application_name" {
                    *server
                        .info()
                        .application_name
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = value.to_owned();
                }
                let restoring = matches!(self.q.front(), Some(Req::Injected(Injected::Restore)));
                if swallow && !restoring {
                    return Ok(false);
                }
                if params::is_writable(name) {
                    self.params.want(name, value);
                }
                if name == "application_name" {
                    *self
                        .info
                        .application_name
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = value.to_owned();
                }
                Ok(true)
            }
            b'D' | b't' | b'A' | b'N' | b'V' | b'd' | b'c' | b'H' => Ok(!swallow),
            other => Err(bad_server(&format!(
                "unexpected message type {:?} from the server",
                other as char
            ))),
        }
    }

    /// One statement finished: latency and rows to insight.
    fn finish_statement(
        &mut self,
        fp: Fingerprint,
        sent: Instant,
        rows: u64,
        error: bool,
        now: Instant,
    ) {
        let start = sent.max(self.last_done);
        self.last_done = now;
        if self.insight_on {
            let us = now.saturating_duration_since(start).as_micros() as u64;
            self.shared
                .insight
                .record(self.entry.tag, fp, us, rows, error);
        }
    }

    /// A ReadyForQuery answered a Query or Sync: count the query.
    fn finish_query(&mut self, now: Instant) {
        self.counts.add(Stat::Queries, 1);
        if let Some(t) = self.query_started {
            self.counts.add(
                Stat::QueryTimeUs,
                now.saturating_duration_since(t).as_micros() as u64,
            );
        }
        self.query_started = if self.q.is_empty() { None } else { Some(now) };
        self.leak.idle_since = Some(now);
    }
}

/// BEGIN/COMMIT/ROLLBACK/SAVEPOINT-like statements.
fn is_txn_control(a: &Analysis) -> bool {
    a.effects.any(Effects::TXN_CONTROL)
        || matches!(a.kind, Kind::Begin | Kind::Commit | Kind::Rollback)
}

enum LocalAnswer {
    Handled,
    Terminate,
    Forward,
}

fn bad_client(msg: &str) -> PumpEnd {
    PumpEnd::Protocol {
        client_side: true,
        message: msg.to_owned(),
    }
}

fn bad_server(msg: &str) -> PumpEnd {
    PumpEnd::Protocol {
        client_side: false,
        message: msg.to_owned(),
    }
}

/// Runs a simple query on an otherwise idle server and waits for its
/// ReadyForQuery, recording parameter changes. Returns the status byte and
/// the error message, if any.
pub(crate) async fn run_simple(
    server: &mut PgServer,
    sql: &str,
    max_msg: u32,
) -> std::io::Result<(u8, Option<(String, String)>)> {
    let mut out = BytesMut::with_capacity(sql.len() + 8);
    message::query(&mut out, sql);
    server.stream.write_all_clear(&mut out).await?;
    let mut error = None;
    loop {
        while let Some((h, body)) = frame::complete_frame(&server.buf, max_msg)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
        {
            let len = h.frame_len();
            match h.tag {
                b'S' => {
                    if let Some((k, v)) = message::decode_parameter_status(body) {
                        let (k, v) = (k.to_owned(), v.to_owned());
                        server.params.reported(&k, &v);
                    }
                }
                b'C' => {
                    let tag = body.to_vec();
                    server.command_completed(&tag);
                }
                b'E' => {
                    let f = message::decode_error_fields(body).unwrap_or_default();
                    if error.is_none() {
                        error = Some((f.code.to_owned(), f.message.to_owned()));
                    }
                }
                b'Z' => {
                    let status = body.first().copied().unwrap_or(b'E');
                    server.buf.advance(len);
                    return Ok((status, error));
                }
                _ => {}
            }
            server.buf.advance(len);
        }
        let n = server.stream.read_buf(&mut server.buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// Runs a simple query and returns its rows as text (NULL = None), or the
/// server's error message.
pub(crate) async fn query_rows(
    server: &mut PgServer,
    sql: &str,
    max_msg: u32,
) -> std::io::Result<Result<Vec<Vec<Option<String>>>, String>> {
    let mut out = BytesMut::with_capacity(sql.len() + 8);
    message::query(&mut out, sql);
    server.stream.write_all_clear(&mut out).await?;
    let mut rows = Vec::new();
    let mut error = None;
    loop {
        while let Some((h, body)) = frame::complete_frame(&server.buf, max_msg)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
        {
            let len = h.frame_len();
            match h.tag {
                b'D' => rows.push(decode_data_row(body).ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed DataRow")
                })?),
                b'E' => {
                    let f = message::decode_error_fields(body).unwrap_or_default();
                    error.get_or_insert_with(|| format!("{} (SQLSTATE {})", f.message, f.code));
                }
                b'Z' => {
                    server.buf.advance(len);
                    return Ok(match error {
                        Some(e) => Err(e),
                        None => Ok(rows),
                    });
                }
                _ => {}
            }
            server.buf.advance(len);
        }
        if server.stream.read_buf(&mut server.buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

fn decode_data_row(mut body: &[u8]) -> Option<Vec<Option<String>>> {
    if body.len() < 2 {
        return None;
    }
    let n = u16::from_be_bytes([body[0], body[1]]) as usize;
    body = &body[2..];
    let mut row = Vec::with_capacity(n);
    for _ in 0..n {
        if body.len() < 4 {
            return None;
        }
        let len = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        body = &body[4..];
        if len < 0 {
            row.push(None);
            continue;
        }
        let len = len as usize;
        if body.len() < len {
            return None;
        }
        row.push(Some(String::from_utf8_lossy(&body[..len]).into_owned()));
        body = &body[len..];
    }
    Some(row)
}

/// Rolls back the open transaction of a leaked session. True when the
/// server is clean afterwards.
async fn rollback_server(server: &mut PgServer, max_msg: u32) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_secs(5),
            run_simple(server, "ROLLBACK", max_msg)
        )
        .await,
        Ok(Ok((b'I', _)))
    )
}

/// DISCARD ALL before a pinned or session-mode server returns to the pool.
async fn reset_server(server: &mut PgServer, max_msg: u32) -> bool {
    match tokio::time::timeout(
        Duration::from_secs(5),
        run_simple(server, "DISCARD ALL", max_msg),
    )
    .await
    {
        // The server's statement cache and settings were cleared as the
        // DISCARD ALL completed (PgServer::command_completed).
        Ok(Ok((b'I', None))) => true,
        _ => false,
    }
}
