//! A logged-in PostgreSQL client: the transaction loop.
//!
//! Flow of one transaction:
//! 1. Idle: no server. Wait for the client's next message (holding no
//!    buffers while waiting, so idle clients cost little memory).
//! 2. Checkout: the first message of a transaction borrows a server through
//!    the session core ([`crate::session::Core`]), and parameters the
//!    client set are re-applied if the server differs ([`params::sync_sql`]).
//! 3. Pump ([`super::pump`]): bytes flow both ways. Frame headers are
//!    walked; only messages that decide something are looked at
//!    ([`super::client_messages`], [`super::server_messages`]).
//! 4. Boundary: ReadyForQuery `I` with nothing outstanding ends the
//!    transaction and the lease is dropped; the lease guard asks the server
//!    whether it is clean. A client that vanishes mid-transaction leaves a
//!    server that is not, so it is closed (PostgreSQL rolls back).
//!
//! In session mode, or when the client created state that cannot follow it
//! to another server (LISTEN, advisory locks, temp tables, ...), the lease
//! is kept until the client disconnects; the server then carries session
//! state and the guard resets it with DISCARD ALL before reuse.

use std::future::poll_fn;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use sqlmux_protocol::postgres::frame;
use sqlmux_protocol::postgres::message::{self, Severity};

use crate::Shared;
use crate::client::{ClientInfo, Signals};
use crate::clock::Tick;
use crate::config::{DatabaseConfig, PoolMode};
use crate::insight::LeakState;
use crate::io::{self, Stream};
use crate::pool::Pool;
use crate::pool::registry::PoolEntry;
use crate::postgres::params::{self, ClientParams};
use crate::postgres::prepared::ClientStatements;
use crate::postgres::server::PgServer;
use crate::postgres::session_state::{Memo, PendingSet};
use crate::postgres::tracker::{Injected, Req};
use crate::session::lifecycle::Rebound;
use crate::session::{Core, Refusal};
use crate::stats::Stat;

/// Why the pump stopped.
#[derive(Debug)]
pub(crate) enum PumpEnd {
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

/// One logged-in client session.
pub(crate) struct Session {
    /// Lease lifecycle, counters, insight, pins.
    pub(crate) core: Core<Box<PgServer>>,
    pub(crate) client: Stream,
    pub(crate) cin: BytesMut,
    pub(crate) cout: BytesMut,
    pub(crate) sout: BytesMut,
    pub(crate) params: ClientParams,
    pub(crate) max_msg: u32,
    /// Bytes of a client message still to be streamed to the server.
    pub(crate) client_skip: usize,
    /// Fingerprints behind statement names and portals (insight).
    pub(crate) stmts: super::client_messages::Statements,
    /// A forwarded ReadyForQuery `I` answered everything sent so far.
    pub(crate) ready_idle: bool,
    /// An error or ROLLBACK was seen in the current transaction.
    pub(crate) rollback_seen: bool,
    /// Setting changes applied when the transaction commits.
    pub(crate) pending_sets: Vec<PendingSet>,
    /// Named prepared statements of this client (transaction mode).
    pub(crate) prepared: ClientStatements,
    /// Rewrite named statements to shared server names.
    pub(crate) rewrite: bool,
    /// Per-server prepared statement cache size.
    pub(crate) max_prepared: usize,
    /// An error sqlmux produced: ignore client messages until Sync.
    pub(crate) skip_until_sync: bool,
    /// Statements to send right behind the client's RESET ALL / DISCARD
    /// ALL that return the server to the client's startup values.
    pub(crate) restore_after: Option<String>,
    /// Recent statement analyses (at the first statement).
    pub(crate) memo: Option<Box<Memo>>,
}

impl Drop for Session {
    /// The buffers go back to this thread's spares for the next login
    /// (what is left in them, such as a Terminate, is of no use now).
    fn drop(&mut self) {
        for buf in [&mut self.cin, &mut self.cout, &mut self.sout] {
            buf.clear();
            io::recycle_buf(buf);
        }
    }
}

/// The pool that replaced a retired one, for [`Core`].
fn rebind(
    shared: &Shared,
    db: &DatabaseConfig,
    info: &ClientInfo,
) -> Option<Rebound<Box<PgServer>>> {
    let cfg = shared.config.load();
    let users = shared.users.load();
    let login = crate::postgres::pools::server_login(db, &users, &info.user())?;
    let (entry, pg) =
        crate::postgres::pools::pool_for(&shared.pools, &cfg, &shared.insight, db, login);
    Some((entry, pg.pool.clone()))
}

impl Session {
    pub(crate) fn new(
        shared: Arc<Shared>,
        info: Arc<ClientInfo>,
        client: Stream,
        cin: BytesMut,
        entry: Arc<PoolEntry>,
        pool: Arc<Pool<Box<PgServer>>>,
        params: ClientParams,
    ) -> Session {
        let max_msg = shared.config.load().general.max_message_size;
        let cfg = pool.config();
        let core = Core::new(shared, info, entry, pool, rebind);
        Session {
            core,
            max_msg,
            client,
            cin,
            cout: BytesMut::new(),
            sout: BytesMut::new(),
            params,
            client_skip: 0,
            stmts: Default::default(),
            ready_idle: false,
            rollback_seen: false,
            pending_sets: Vec::new(),
            prepared: ClientStatements::default(),
            rewrite: cfg.mode == PoolMode::Transaction && cfg.max_prepared_statements > 0,
            max_prepared: cfg.max_prepared_statements,
            skip_until_sync: false,
            restore_after: None,
            memo: None,
        }
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

    /// Sends a refusal as a FATAL error.
    pub(crate) async fn send_refusal(&mut self, r: &Refusal) {
        let (msg, hint) = (r.message(), r.hint());
        self.send_error(Severity::Fatal, r.sqlstate(), &msg, hint.as_deref())
            .await;
    }

    /// Runs the session until the client leaves. Returns when done; errors
    /// have already been reported to the client.
    pub(crate) async fn run(&mut self) {
        let end = self.transaction_loop().await;
        // Cold paths are boxed so they do not enlarge every idle session.
        Box::pin(self.finish(end)).await;
    }

    async fn transaction_loop(&mut self) -> PumpEnd {
        loop {
            // ---- Idle: flush what is pending, then wait for a request.
            if !self.cout.is_empty() {
                self.core
                    .counts
                    .add(Stat::BytesSent, self.cout.len() as u64);
                if self.client.write_all_clear(&mut self.cout).await.is_err() {
                    return PumpEnd::ClientGone;
                }
            }
            if self.core.lease.is_none() {
                if let Some(end) = self.start_transaction().await {
                    return end;
                }
                if self.core.lease.is_none() {
                    continue;
                }
            }
            // ---- Leased: pump until a boundary or an end.
            match poll_fn(|cx| self.poll_pump(cx)).await {
                PumpEnd::Boundary => {
                    if let Some(end) = self.on_boundary().await {
                        return end;
                    }
                }
                PumpEnd::LeakIdle => Box::pin(self.on_leak_idle()).await,
                other => return other,
            }
        }
    }

    /// Waits for the client's next request and, unless it needs no server,
    /// borrows one. Some(end) when the session is over.
    async fn start_transaction(&mut self) -> Option<PumpEnd> {
        match self.wait_for_request().await {
            Ok(true) => {}
            Ok(false) => return Some(PumpEnd::ClientGone),
            Err(end) => return Some(end),
        }
        match self.answer_locally() {
            LocalAnswer::Handled => return None,
            LocalAnswer::Terminate => return Some(PumpEnd::ClientTerminate),
            LocalAnswer::Forward => {}
        }
        if let Some(idle) = self.core.leak.rolled_back_after.take() {
            self.reject_after_rollback(idle);
            return None;
        }
        if let Err(r) = self.checkout().await {
            self.send_refusal(&r).await;
            return Some(PumpEnd::ClientGone);
        }
        None
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
            let plain = !self.client.is_tls();
            if plain && self.cin.is_empty() {
                io::recycle_buf(&mut self.cin);
                io::recycle_buf(&mut self.cout);
                io::recycle_buf(&mut self.sout);
                // Biased, the client first: the drain future is polled only
                // while the client is quiet.
                let readable = tokio::select! {
                    biased;
                    r = std::future::poll_fn(|cx| self.client.poll_read_ready(cx)) => r.is_ok(),
                    _ = self.core.info.signals.wait(Signals::DRAIN) => {
                        self.send_refusal(&Refusal::ShuttingDown).await;
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
                _ = self.core.info.signals.wait(Signals::DRAIN), if self.cin.is_empty() => {
                    self.send_refusal(&Refusal::ShuttingDown).await;
                    return Err(PumpEnd::ClientGone);
                }
            };
            match n {
                Ok(0) | Err(_) => return Ok(false),
                Ok(n) => {
                    self.core.now = Tick::now();
                    self.core.counts.add(Stat::BytesReceived, n as u64);
                }
            }
        }
    }

    /// Handles a request that needs no server: Terminate, a lone Sync or
    /// Flush outside a transaction.
    fn answer_locally(&mut self) -> LocalAnswer {
        match self.cin[0] {
            b'X' => LocalAnswer::Terminate,
            b'S' => {
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
    fn reject_after_rollback(&mut self, idle: std::time::Duration) {
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
        let r = Refusal::LeakRolledBack {
            idle,
            threshold: self.core.leak.idle,
        };
        let hint = r.hint();
        message::error_response(
            &mut self.cout,
            Severity::Error,
            r.sqlstate(),
            &r.message(),
            None,
            hint.as_deref(),
        );
        message::ready_for_query(&mut self.cout, b'I');
    }

    /// Borrows a server and prepares it for this client.
    async fn checkout(&mut self) -> Result<(), Refusal> {
        self.core.checkout().await?;
        if self.sout.capacity() == 0 {
            self.sout = io::take_buf();
        }
        if self.cout.capacity() == 0 {
            self.cout = io::take_buf();
        }
        let id = self.core.info.id;
        let carries = self.core.pins.carries_state();
        let server = self.core.server().expect("just leased");
        server.carries_session_state = carries;
        // Re-apply this client's parameters if the server differs.
        if let Some(sql) = params::sync_sql(id, &self.params, &server.params) {
            message::query(&mut self.sout, &sql);
            server.q.push(Req::Injected(Injected::Params));
        }
        Ok(())
    }

    /// A transaction ended (ReadyForQuery `I`, nothing outstanding): its
    /// setting and pin changes take effect, and the server goes back unless
    /// pins hold it. Some(end) when the session must end now.
    async fn on_boundary(&mut self) -> Option<PumpEnd> {
        self.ready_idle = false;
        let insight = self.core.shared.insight.clone();
        self.core.leak.end(&insight, LeakState::Finished);
        let committed = !self.rollback_seen;
        let pending = std::mem::take(&mut self.pending_sets);
        if committed {
            let server = self.core.server().map(|s| &mut **s);
            super::session_state::apply_pending(&mut self.params, pending, server);
        }
        self.core.pins.at_boundary(committed);
        self.rollback_seen = false;
        self.core.info.set_pin(self.core.pins.reason());
        if !self.core.pins.hold_lease() {
            self.release();
            return None;
        }
        self.core.transaction_held();
        if self.core.info.signals.raised(Signals::DRAIN) != 0 {
            // Shutting down: end pinned sessions at their boundary.
            self.send_refusal(&Refusal::ShuttingDown).await;
            return Some(PumpEnd::ClientGone);
        }
        None
    }

    /// Drops the lease. The server's own state decides what the guard does
    /// with it; what only the session knows is told to the server first:
    /// bytes for it still unsent or cut mid-message make it dirty, and a
    /// clean one is stamped with this client's parameters.
    fn release(&mut self) {
        let id = self.core.info.id;
        let carries = self.core.pins.carries_state();
        let unsent = !self.sout.is_empty() || self.client_skip > 0;
        if let Some(server) = self.core.server() {
            server.dirty |= unsent;
            server.carries_session_state = carries;
            if pooled_clean(server) {
                params::mark_synced(id, &self.params, &mut server.params);
            }
        }
        self.sout.clear();
        self.client_skip = 0;
        self.core.release();
    }

    /// The leak timer fired: the client holds a transaction and is idle.
    async fn on_leak_idle(&mut self) {
        let insight = self.core.shared.insight.clone();
        let now = Tick::now();
        let idle = self.core.leak.report(&insight, &self.core.info, now);
        if self.core.leak.action == crate::config::LeakAction::Warn {
            return;
        }
        // Roll back and give the server back.
        let Some(server) = self.core.server() else {
            return;
        };
        server.rollback_leaked().await;
        self.core.leak.end(&insight, LeakState::RolledBack);
        self.pending_sets.clear();
        self.rollback_seen = false;
        self.core.now = Tick::now();
        self.release();
        self.core.leak.rolled_back_after = Some(idle);
    }

    /// Cleans up when the session ends.
    async fn finish(&mut self, end: PumpEnd) {
        let fatal_forwarded = self.core.server().is_some_and(|s| s.fatal);
        match &end {
            PumpEnd::ServerGone(_) if fatal_forwarded => {}
            PumpEnd::ServerGone(msg) => {
                let m = format!("server connection lost: {msg}");
                self.send_error(
                    Severity::Fatal,
                    crate::session::refusal::sqlstate::CONNECTION_FAILURE,
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
                let code = crate::session::refusal::sqlstate::PROTOCOL_VIOLATION;
                self.send_error(Severity::Fatal, code, &m, None).await;
            }
            _ => {}
        }
        if !self.cout.is_empty() {
            let _ = self.client.write_all_clear(&mut self.cout).await;
        }
        let clean_exit = matches!(
            end,
            PumpEnd::ClientTerminate | PumpEnd::ClientGone | PumpEnd::Boundary
        );
        let in_transaction = self.core.server().is_some_and(|s| !pooled_clean(s));
        if let Some(server) = self.core.server() {
            server.dirty |= !clean_exit;
        }
        self.release();
        self.core.end(in_transaction && clean_exit);
    }
}

/// True when the server would go back to the pool as it is.
fn pooled_clean(server: &PgServer) -> bool {
    crate::pool::PooledServer::is_clean(server)
}

enum LocalAnswer {
    Handled,
    Terminate,
    Forward,
}
