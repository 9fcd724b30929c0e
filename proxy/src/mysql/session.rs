//! The MySQL client session: reads one command at a time, answers what
//! needs no server ([`super::commands`]), and runs the rest on a server
//! leased from the pool for the length of a transaction.
//!
//! The lease lifecycle, insight hooks, pins and leak watch are the shared
//! [`Core`]; this file adds what only MySQL knows: the command/response
//! rhythm, session state replay at checkout, and the boundary test on the
//! status flags of a complete response. A transaction ends at a complete
//! response whose status has no IN_TRANS, MORE_RESULTS or CURSOR_EXISTS;
//! an ERR carries no flags and keeps the last known ones, so an error
//! inside a transaction keeps the lease.

use std::sync::Arc;

use sqlmux_protocol::mysql::command::Command;
use sqlmux_protocol::mysql::packet;
use sqlmux_protocol::mysql::response_state::{Completion, ResponseTracker};
use sqlmux_protocol::mysql::status::{SERVER_STATUS_AUTOCOMMIT, ServerStatus};

use super::analysis::{self, Statement};
use super::commands::{self, Action, LastValue};
use super::conn::PacketConn;
use super::pools::MyPool;
use super::prepared::ClientStatements;
use super::pump::{self, ClientEnd, PumpError};
use super::reply::{self, Value};
use super::server::MyServer;
use super::session_state::SessionVars;
use super::statements::{Outgoing, Unbound};
use crate::client::Signals;
use crate::clock::Tick;
use crate::insight::{LeakState, RecentlyNoted};
use crate::session::pins::{PIN_OTHER, PIN_TABLE_LOCK, PinBits};
use crate::session::{Core, Refusal};
use crate::stats::Stat;

/// Why the session ends.
#[derive(Debug)]
pub enum End {
    /// The client left (COM_QUIT, closed socket).
    ClientGone,
    /// An ERR was sent; the connection closes.
    Refused,
}

/// One logged-in MySQL client.
pub struct Session {
    /// Lease lifecycle, insight and pins.
    pub core: Core<Box<MyServer>>,
    /// The client's pool.
    pub my: Arc<MyPool>,
    /// The client connection.
    pub client: PacketConn,
    /// Capability flags negotiated with the client.
    pub caps: u32,
    /// MariaDB extended flags negotiated with the client.
    pub mariadb_caps: u32,
    /// The client's variables and schema.
    pub vars: SessionVars,
    /// Status flags of the last response the client received.
    pub status: ServerStatus,
    /// LAST_INSERT_ID() as the client's session would report it.
    pub last_insert_id: u64,
    /// ROW_COUNT() of the client's last statement.
    pub row_count: i64,
    /// Largest command accepted.
    pub max_packet: usize,
    /// Statements prepared with COM_STMT_PREPARE, by sqlmux's ids.
    pub stmts: ClientStatements,
    /// Fingerprints whose text this session noted recently.
    noted: RecentlyNoted,
}

/// Status flags a fresh session reports.
pub const INITIAL_STATUS: ServerStatus = ServerStatus(SERVER_STATUS_AUTOCOMMIT);

impl Drop for Session {
    /// The client's buffers go back to this thread's spares for the next
    /// login (what is left in them is of no use now).
    fn drop(&mut self) {
        for buf in [&mut self.client.buf, &mut self.client.out] {
            buf.clear();
            crate::io::recycle_buf(buf);
        }
    }
}

impl Session {
    /// A session for a client that logged in to `my`.
    pub fn new(
        core: Core<Box<MyServer>>,
        my: Arc<MyPool>,
        client: PacketConn,
        caps: (u32, u32),
        vars: SessionVars,
    ) -> Session {
        let max_packet = core.shared.config.load().general.max_message_size as usize;
        Session {
            core,
            my,
            client,
            caps: caps.0,
            mariadb_caps: caps.1,
            vars,
            status: INITIAL_STATUS,
            last_insert_id: 0,
            row_count: -1,
            max_packet,
            stmts: ClientStatements::default(),
            noted: RecentlyNoted::default(),
        }
    }

    /// Serves the client until it leaves.
    pub async fn run(&mut self) {
        let end = self.serve().await;
        let in_transaction = self
            .core
            .server()
            .is_some_and(|s| s.status.in_transaction() || s.owed);
        if matches!(end, End::ClientGone) {
            tracing::debug!(in_transaction, "client left");
        }
        self.core.end(in_transaction);
    }

    /// Sends a refusal and flushes (best effort).
    pub async fn send_refusal(&mut self, seq: u8, r: &Refusal) {
        reply::refusal(&mut self.client.out, seq, r);
        let _ = self.client.flush().await;
    }

    async fn serve(&mut self) -> End {
        loop {
            if !self.client.out.is_empty() {
                self.core
                    .counts
                    .add(Stat::BytesSent, self.client.out.len() as u64);
                if self.client.flush().await.is_err() {
                    return End::ClientGone;
                }
            }
            let payload = match self.next_command().await {
                Ok(Some(p)) => p,
                Ok(None) => return End::ClientGone,
                Err(r) => {
                    self.send_refusal(1, &r).await;
                    return End::Refused;
                }
            };
            self.core.leak.activity(&self.core.shared.insight.clone());
            if let Some(idle) = self.core.leak.rolled_back_after.take() {
                let r = Refusal::LeakRolledBack {
                    idle,
                    threshold: self.core.leak.idle,
                };
                reply::refusal(&mut self.client.out, 1, &r);
                continue;
            }
            if let Some(end) = self.dispatch(payload).await {
                return end;
            }
        }
    }

    /// Waits for the next command; watches the leak timer while a
    /// transaction is open and the drain signal while none is.
    async fn next_command(&mut self) -> Result<Option<bytes::BytesMut>, Refusal> {
        loop {
            match packet::read_logical(&mut self.client.buf, self.max_packet) {
                Ok(Some((l, payload))) => {
                    self.core.now = Tick::now();
                    self.core.counts.add(Stat::BytesReceived, l.wire_len as u64);
                    if l.first_seq != 0 {
                        return Err(Refusal::ProtocolViolation {
                            what: format!("command packet with sequence id {}", l.first_seq),
                        });
                    }
                    return Ok(Some(payload));
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(Refusal::ProtocolViolation {
                        what: e.to_string(),
                    });
                }
            }
            let leased = self.core.lease.is_some();
            if !leased && !self.wait_idle().await? {
                return Ok(None);
            }
            let read = tokio::select! {
                biased;
                r = self.client.stream.read_buf(&mut self.client.buf) => r,
                _ = self.core.info.signals.wait(Signals::DRAIN), if !leased => {
                    return Err(Refusal::ShuttingDown);
                }
                _ = std::future::poll_fn(|cx| self.core.leak.poll_due(cx, true)), if leased => {
                    Box::pin(self.on_leak_idle()).await;
                    continue;
                }
            };
            match read {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => {}
            }
        }
    }

    /// Between transactions with nothing buffered, a plain connection holds
    /// no buffers while it waits (10,000 idle clients hold none): they go
    /// back to the thread's spares and a buffer is taken again once the
    /// socket is readable. False when the connection failed.
    async fn wait_idle(&mut self) -> Result<bool, Refusal> {
        if !self.client.buf.is_empty() || self.client.stream.is_tls() {
            return Ok(true);
        }
        crate::io::recycle_buf(&mut self.client.buf);
        crate::io::recycle_buf(&mut self.client.out);
        let readable = tokio::select! {
            biased;
            r = std::future::poll_fn(|cx| self.client.stream.poll_read_ready(cx)) => r.is_ok(),
            _ = self.core.info.signals.wait(Signals::DRAIN) => {
                return Err(Refusal::ShuttingDown);
            }
        };
        if readable && self.client.buf.capacity() == 0 {
            self.client.buf = crate::io::take_buf();
        }
        Ok(readable)
    }

    /// Handles one command. Some(end) when the session is over.
    async fn dispatch(&mut self, payload: bytes::BytesMut) -> Option<End> {
        match commands::classify(&payload, self.core.lease.is_some()) {
            Action::Quit => return Some(End::ClientGone),
            Action::Ping => {
                reply::ok(&mut self.client.out, 1, self.status, self.caps);
            }
            Action::Reset => self.reset().await,
            Action::Kill(k) => {
                let shared = self.core.shared.clone();
                match super::kill::kill(&shared, &self.core.info, k).await {
                    Ok(()) => {
                        reply::ok(&mut self.client.out, 1, self.status, self.caps);
                    }
                    Err(r) => {
                        reply::refusal(&mut self.client.out, 1, &r);
                    }
                }
            }
            Action::LastValue(v) => self.last_value(v),
            Action::Stmt(cmd) => return self.statement(cmd, payload).await,
            Action::Refuse(r) => {
                reply::refusal(&mut self.client.out, 1, &r);
            }
            Action::Forward => return self.forward(payload).await,
        }
        None
    }

    /// COM_RESET_CONNECTION: the client's session state and pins are gone;
    /// a server it holds is reset and goes back.
    async fn reset(&mut self) {
        self.vars.vars.clear();
        self.stmts.clear();
        self.publish_statement_count();
        self.core.pins.clear_all();
        self.core.info.set_pin(self.core.pins.reason());
        self.last_insert_id = 0;
        self.row_count = -1;
        self.status = INITIAL_STATUS;
        if let Some(server) = self.core.server() {
            if server.reset_connection().await.is_err() {
                server.dirty = true;
            }
            let insight = self.core.shared.insight.clone();
            self.core.leak.end(&insight, LeakState::Finished);
            self.core.release();
        }
        reply::ok(&mut self.client.out, 1, self.status, self.caps);
    }

    /// Answers LAST_INSERT_ID() / ROW_COUNT() from the last OK.
    fn last_value(&mut self, v: LastValue) {
        let (name, value) = match v {
            LastValue::InsertId => ("LAST_INSERT_ID()", Value::Unsigned(self.last_insert_id)),
            LastValue::RowCount => ("ROW_COUNT()", Value::Signed(self.row_count)),
        };
        reply::single_value(
            &mut self.client.out,
            name,
            value,
            self.status,
            self.caps,
            self.mariadb_caps,
        );
        self.row_count = -1;
    }

    /// Runs a command on the leased server (borrowing one first).
    async fn forward(&mut self, payload: bytes::BytesMut) -> Option<End> {
        let stmt = self.analyze(&payload);
        // COM_SET_OPTION changes how the server parses every later query
        // (multi-statements): it holds the server like session state, and
        // the server is closed instead of reset when the client leaves.
        let set_option = payload.first() == Some(&Command::SetOption.as_byte());
        let bits = stmt.as_ref().map_or(0, |s| s.pins) | if set_option { PIN_OTHER } else { 0 };
        self.run_command(stmt, bits, Outgoing::Command(payload))
            .await
    }

    /// Pins, checkout, the exchange and its bookkeeping for one command.
    pub(super) async fn run_command(
        &mut self,
        stmt: Option<Statement>,
        bits: PinBits,
        out: Outgoing,
    ) -> Option<End> {
        if let Err(r) = self.core.pins.on_statement(bits) {
            reply::refusal(&mut self.client.out, 1, &r);
            return None;
        }
        self.core.info.set_pin(self.core.pins.reason());
        if self.core.lease.is_none()
            && let Err(r) = self.checkout().await
        {
            reply::refusal(&mut self.client.out, 1, &r);
            return None;
        }
        let sent = Tick::now();
        if let Some(s) = &stmt {
            self.core.observe(s.fingerprint, s.txn_control, sent);
        }
        self.core.query_started = Some(sent);
        let payload = match out {
            Outgoing::Command(p) => p,
            Outgoing::Stmt(p) => match self.bind(p).await {
                Ok(p) => p,
                Err(Unbound::Answered { code }) => {
                    let c = Completion::Err { code };
                    self.after_response(stmt, c, (0, 0, 0), sent, Tick::now());
                    return None;
                }
                Err(Unbound::Broken(e)) => return Some(self.on_pump_error(e).await),
            },
        };
        let outcome = self.exchange(&payload).await;
        let now = Tick::now();
        self.core.now = now;
        match outcome {
            Ok((completion, rows)) => {
                if payload.first() == Some(&Command::SetOption.as_byte())
                    && let Some(server) = self.core.server()
                {
                    server.dirty = true;
                }
                self.after_response(stmt, completion, rows, sent, now);
                None
            }
            Err(e) => Some(self.on_pump_error(e).await),
        }
    }

    /// Writes the command to the server and relays its response.
    async fn exchange(
        &mut self,
        payload: &[u8],
    ) -> Result<(Completion, (u64, u64, u64)), PumpError> {
        let caps = self.caps;
        let Some(lease) = self.core.lease.as_mut() else {
            return Err(PumpError::ServerGone("no server".into()));
        };
        let server = lease.server();
        let mut out = bytes::BytesMut::with_capacity(payload.len() + 8);
        packet::write_packet(&mut out, 0, payload);
        let tracker = ResponseTracker::for_command(payload, server.caps);
        server.owed = tracker.is_some();
        if let Err(e) = server.stream.write_all_clear(&mut out).await {
            server.dirty = true;
            return Err(PumpError::ServerGone(e.to_string()));
        }
        let Some(mut tracker) = tracker else {
            return Ok((Completion::NoStatus, (0, 0, 0)));
        };
        let mut client = ClientEnd {
            conn: &mut self.client,
            caps,
            vars: &mut self.vars,
            bytes_sent: 0,
        };
        let r = pump::relay(server, &mut client, &mut tracker).await;
        let sent = client.bytes_sent;
        self.core.counts.add(Stat::BytesSent, sent);
        let r = r?;
        let counts = (
            tracker.rows(),
            tracker.affected_rows(),
            tracker.last_insert_id(),
        );
        Ok((r, counts))
    }

    /// A response is complete: record it, and end the transaction if the
    /// status says it ended.
    fn after_response(
        &mut self,
        stmt: Option<Statement>,
        completion: Completion,
        (rows, affected, insert_id): (u64, u64, u64),
        sent: Tick,
        now: Tick,
    ) {
        let error = matches!(completion, Completion::Err { .. });
        if let Some(s) = &stmt {
            self.core
                .record_statement(s.fingerprint, sent, rows.max(affected), error, now);
            if s.unlocks_tables && !error {
                self.core.pins.clear_at_commit(PIN_TABLE_LOCK);
            }
        }
        if error {
            self.core.counts.add(Stat::Errors, 1);
        }
        self.core.finish_query(now, false);
        if insert_id != 0 {
            self.last_insert_id = insert_id;
        }
        self.row_count = match completion {
            Completion::Status(_) if rows == 0 => affected as i64,
            _ => -1,
        };
        if let Completion::Status(s) = completion
            && let Some(server) = self.core.server()
        {
            server.status = s;
        }
        self.settle(!error, now);
    }

    /// A command is over: the transaction goes on while the server's status
    /// says so, else it ended (committed unless `ok` is false).
    pub(super) fn settle(&mut self, ok: bool, now: Tick) {
        let Some(server) = self.core.server() else {
            return;
        };
        let status = server.status;
        self.status =
            ServerStatus(status.0 & !sqlmux_protocol::mysql::status::SERVER_SESSION_STATE_CHANGED);
        if status.in_transaction() || status.more_results() || status.cursor_exists() || server.owed
        {
            self.core.leak.arm(now);
            return;
        }
        self.on_boundary(ok);
    }

    /// The transaction ended: give the server back unless pins hold it.
    fn on_boundary(&mut self, committed: bool) {
        let insight = self.core.shared.insight.clone();
        self.core.leak.end(&insight, LeakState::Finished);
        self.core.pins.at_boundary(committed);
        self.core.info.set_pin(self.core.pins.reason());
        if self.core.pins.hold_lease() {
            self.core.transaction_held();
            return;
        }
        self.release();
    }

    /// Drops the lease; a server carrying pinned state is reset by the guard.
    fn release(&mut self) {
        let carries = self.core.pins.carries_state();
        if let Some(server) = self.core.server() {
            server.carries_session_state |= carries;
        }
        self.core.release();
    }

    /// Borrows a server and brings it to this client's session state.
    pub(super) async fn checkout(&mut self) -> Result<(), Refusal> {
        self.core.checkout().await?;
        let vars = &self.vars;
        let Some(server) = self.core.server() else {
            return Ok(());
        };
        if let Err(e) = sync_server(server, vars).await {
            server.dirty = true;
            self.core.release();
            return Err(Refusal::StateReplay {
                message: e.to_string(),
            });
        }
        Ok(())
    }

    /// The leak timer fired while the client holds an open transaction.
    async fn on_leak_idle(&mut self) {
        let insight = self.core.shared.insight.clone();
        let idle = self
            .core
            .leak
            .report(&insight, &self.core.info, Tick::now());
        if self.core.leak.action == crate::config::LeakAction::Warn {
            return;
        }
        if let Some(server) = self.core.server()
            && server.query("ROLLBACK").await.is_err()
        {
            server.dirty = true;
        }
        self.core.leak.end(&insight, LeakState::RolledBack);
        self.core.now = Tick::now();
        self.core.pins.at_boundary(false);
        if !self.core.pins.hold_lease() {
            self.release();
        }
        self.core.leak.rolled_back_after = Some(idle);
    }

    /// The pump failed: the server's state is unknown, so it is closed.
    pub(super) async fn on_pump_error(&mut self, e: PumpError) -> End {
        let mut running = None;
        if let Some(server) = self.core.server() {
            server.dirty = true;
            running = server.owed.then_some(i64::from(server.thread_id));
        }
        match e {
            PumpError::ClientGone => {
                if let Some(thread) = running {
                    // Closing the socket does not stop a statement that
                    // sends nothing (SLEEP, a long UPDATE): end the server
                    // connection, which rolls its transaction back.
                    let shared = self.core.shared.clone();
                    let entry = self.core.entry.clone();
                    tokio::spawn(async move {
                        if let Err(e) =
                            super::kill::kill_on(&shared, &entry, "CONNECTION", thread).await
                        {
                            tracing::warn!(error = %e, "could not end the abandoned server connection");
                        }
                    });
                }
                End::ClientGone
            }
            PumpError::ServerGone(m) | PumpError::Protocol(m) => {
                tracing::warn!(error = %m, "server connection failed mid-response");
                self.core.release();
                let r = Refusal::ServerLost { message: m };
                self.send_refusal(1, &r).await;
                End::Refused
            }
        }
    }

    /// Fingerprint and pins of a COM_QUERY; None for other commands.
    fn analyze(&mut self, payload: &[u8]) -> Option<Statement> {
        if payload.first() != Some(&Command::Query.as_byte()) {
            return None;
        }
        Some(self.analyze_text(&payload[1..]))
    }

    /// Fingerprint and pins of a query text (handed to insight when on).
    pub(super) fn analyze_text(&mut self, sql: &[u8]) -> Statement {
        let insight = self.core.shared.insight.clone();
        let on = self.core.insight_on;
        let s = analysis::analyze(sql, on.then_some(&*insight), &self.noted);
        if on {
            self.noted.note(s.fingerprint);
        }
        s
    }
}

/// Replays the client's variables and schema on a freshly leased server;
/// a server holding variables the client never set is reset first.
async fn sync_server(
    server: &mut MyServer,
    vars: &SessionVars,
) -> Result<(), super::server::CommandError> {
    if vars.needs_reset_of(&server.session) {
        server.reset_connection().await?;
    }
    if let Some(sql) = vars.sync_sql(&server.session) {
        server.query(&sql).await?;
    }
    if let Some(schema) = &vars.schema
        && server.session.schema.as_ref() != Some(schema)
    {
        server.init_db(schema).await?;
    }
    Ok(())
}
