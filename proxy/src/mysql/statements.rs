//! The session's half of server-side prepared statements (see
//! [`super::prepared`] for the design): COM_STMT_PREPARE answered from the
//! pool's descriptions or prepared on the leased server, COM_STMT_EXECUTE
//! bound to whichever server the client holds (preparing the statement
//! there first when it lacks it), and the commands around them.

use std::sync::Arc;

use bytes::BytesMut;
use sqlmux_protocol::mysql::command::Command;
use sqlmux_protocol::mysql::response::{PrepareOk, encode_err};
use sqlmux_protocol::mysql::stmt::{self, Execute};

use super::prepared::{LongData, StmtMeta, content_id};
use super::pump::PumpError;
use super::reply;
use super::server::{CommandError, MyServer};
use super::session::{End, Session};
use crate::clock::Tick;

/// MySQL's error for a statement id the connection does not know.
const ER_UNKNOWN_STMT_HANDLER: u16 = 1243;
/// MySQL's error for a COM_STMT_EXECUTE that does not fit its statement.
const ER_WRONG_ARGUMENTS: u16 = 1210;
/// MySQL's error for COM_STMT_FETCH without an open cursor.
const ER_STMT_HAS_NO_OPEN_CURSOR: u16 = 1421;

/// What goes to the server for one command.
#[derive(Debug)]
pub enum Outgoing {
    /// The client's command as it came.
    Command(BytesMut),
    /// A command naming a client statement, bound at the server.
    Stmt(Pending),
}

/// A binary-protocol command waiting for its server's statement id.
#[derive(Debug)]
pub struct Pending {
    meta: Arc<StmtMeta>,
    payload: BytesMut,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// COM_STMT_EXECUTE of the client's statement `client_id`.
    Execute { layout: Execute, client_id: u32 },
    /// COM_STMT_BULK_EXECUTE: prepared on demand, the id swapped.
    Bulk,
    /// COM_STMT_FETCH / COM_STMT_RESET: the server must hold it already.
    Held,
}

/// Why a command did not reach the server.
#[derive(Debug)]
pub enum Unbound {
    /// The client got this ERR (the statement failed to prepare there).
    Answered {
        /// Its code.
        code: u16,
    },
    /// The server connection failed.
    Broken(PumpError),
}

impl Session {
    /// Handles a COM_STMT_* command.
    pub(super) async fn statement(&mut self, cmd: Command, payload: BytesMut) -> Option<End> {
        match cmd {
            Command::StmtPrepare => self.prepare(payload).await,
            Command::StmtExecute | Command::StmtBulkExecute => self.execute(cmd, payload).await,
            Command::StmtSendLongData => {
                self.long_data(&payload);
                None
            }
            Command::StmtClose => self.close_statement(&payload).await,
            Command::StmtReset => self.reset_statement(payload).await,
            Command::StmtFetch => self.fetch(payload).await,
            _ => None,
        }
    }

    /// COM_STMT_PREPARE: a new client id for the statement, described by
    /// the pool's cache or by the server.
    async fn prepare(&mut self, payload: BytesMut) -> Option<End> {
        let query = &payload[1..];
        let id = content_id(query, &self.vars);
        let meta = match self.my.statements.get(id) {
            Some(m) => m,
            None => match self.prepare_on_server(id, query).await {
                Ok(Some(m)) => m,
                Ok(None) => return None,
                Err(end) => return Some(end),
            },
        };
        let client_id = self.stmts.add(meta.clone());
        meta.write_response(&mut self.client.out, client_id);
        self.publish_statement_count();
        None
    }

    /// Publishes the client's statement count (SHOW CLIENTS).
    pub(super) fn publish_statement_count(&self) {
        let n = self.stmts.len();
        let count = &self.core.info.prepared_statements;
        count.store(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Prepares on the leased server (borrowing one): the description, or
    /// None when the client got an ERR instead.
    async fn prepare_on_server(
        &mut self,
        id: u64,
        query: &[u8],
    ) -> Result<Option<Arc<StmtMeta>>, End> {
        if self.core.lease.is_none()
            && let Err(r) = self.checkout().await
        {
            reply::refusal(&mut self.client.out, 1, &r);
            return Ok(None);
        }
        let statement = self.analyze_text(query);
        let max = self.core.entry.db.pool.max_prepared_statements;
        let Some(server) = self.core.server() else {
            return Ok(None);
        };
        let meta = match prepare_on(server, id, query, max).await {
            Ok((ok, response)) => {
                let key = (id, self.vars.schema.clone());
                Arc::new(StmtMeta::new(key, query, ok.params, statement, &response))
            }
            Err(CommandError::Server {
                code,
                state,
                message,
            }) => {
                encode_err(&mut self.client.out, 1, code, &state, &message);
                self.settle(false, Tick::now());
                return Ok(None);
            }
            Err(CommandError::Broken(m)) => {
                return Err(self.on_pump_error(PumpError::ServerGone(m)).await);
            }
        };
        self.my.statements.insert(meta.clone());
        self.settle(true, Tick::now());
        Ok(Some(meta))
    }

    /// COM_STMT_EXECUTE / COM_STMT_BULK_EXECUTE: runs like a query.
    async fn execute(&mut self, cmd: Command, payload: BytesMut) -> Option<End> {
        let (client_id, cs) = self.client_statement(&payload, "mysqld_stmt_execute")?;
        let meta = cs.meta.clone();
        let kind = if cmd == Command::StmtExecute {
            let Ok(layout) = Execute::parse(&payload, meta.params) else {
                let msg = "Incorrect arguments to mysqld_stmt_execute";
                self.stmt_error(ER_WRONG_ARGUMENTS, msg);
                return None;
            };
            if let Some(t) = layout.types(&payload) {
                cs.types = Some(t.into());
            }
            Kind::Execute { layout, client_id }
        } else {
            Kind::Bulk
        };
        let s = meta.statement;
        let pending = Pending {
            meta,
            payload,
            kind,
        };
        self.run_command(Some(s), s.pins, Outgoing::Stmt(pending))
            .await
    }

    /// The client statement a command names (the id as the client sent
    /// it, resolved), or an ERR written to the client.
    fn client_statement(
        &mut self,
        payload: &[u8],
        to: &str,
    ) -> Option<(u32, &mut super::prepared::ClientStmt)> {
        let id = stmt::statement_id(payload).unwrap_or(0);
        let resolved = self.stmts.resolve(id);
        match self.stmts.get_mut(resolved) {
            Some(cs) => Some((resolved, cs)),
            None => {
                let msg = format!("Unknown prepared statement handler ({id}) given to {to}");
                let code = ER_UNKNOWN_STMT_HANDLER;
                encode_err(&mut self.client.out, 1, code, "HY000", &msg);
                None
            }
        }
    }

    /// COM_STMT_SEND_LONG_DATA: held for the statement's next EXECUTE
    /// (no answer, as from a server).
    fn long_data(&mut self, payload: &[u8]) {
        let id = stmt::statement_id(payload).unwrap_or(0);
        let max = self.max_packet;
        if let (Some(cs), Ok((param, data))) = (self.stmts.get_mut(id), stmt::long_data(payload)) {
            cs.hold_long_data(param, data, max);
        }
    }

    /// COM_STMT_CLOSE: the client's id is gone (no answer). The server
    /// keeps the statement for other clients; a cursor the client left
    /// open on its server is closed so the server can go back.
    async fn close_statement(&mut self, payload: &[u8]) -> Option<End> {
        let id = stmt::statement_id(payload).unwrap_or(0);
        let cs = self.stmts.remove(id)?;
        self.publish_statement_count();
        let server = self.core.server()?;
        if !server.status.cursor_exists() {
            return None;
        }
        let server_id = server.stmts.get(cs.meta.id)?;
        let mut reset = [Command::StmtReset.as_byte(), 0, 0, 0, 0];
        stmt::set_statement_id(&mut reset, server_id);
        if server.command(&reset).await.is_err() {
            server.dirty = true;
        }
        self.settle(true, Tick::now());
        None
    }

    /// COM_STMT_RESET: held long data is dropped; a cursor open on the
    /// client's server is closed there, otherwise sqlmux answers OK.
    async fn reset_statement(&mut self, payload: BytesMut) -> Option<End> {
        let (_, cs) = self.client_statement(&payload, "mysqld_stmt_reset")?;
        cs.take_long_data();
        let meta = cs.meta.clone();
        if !self.cursor_open(&meta) {
            reply::ok(&mut self.client.out, 1, self.status, self.caps);
            return None;
        }
        let pending = Pending {
            meta,
            payload,
            kind: Kind::Held,
        };
        self.run_command(None, 0, Outgoing::Stmt(pending)).await
    }

    /// COM_STMT_FETCH: rows of a cursor, which lives on the client's server.
    async fn fetch(&mut self, payload: BytesMut) -> Option<End> {
        let (_, cs) = self.client_statement(&payload, "mysqld_stmt_fetch")?;
        let meta = cs.meta.clone();
        if !self.cursor_open(&meta) {
            let id = stmt::statement_id(&payload).unwrap_or(0);
            let msg = format!("The statement ({id}) has no open cursor.");
            self.stmt_error(ER_STMT_HAS_NO_OPEN_CURSOR, &msg);
            return None;
        }
        let s = meta.statement;
        let pending = Pending {
            meta,
            payload,
            kind: Kind::Held,
        };
        self.run_command(Some(s), 0, Outgoing::Stmt(pending)).await
    }

    /// The command for the leased server: its statement id swapped in,
    /// the statement prepared there first if it lacks it, held long data
    /// sent ahead.
    pub(super) async fn bind(&mut self, p: Pending) -> Result<BytesMut, Unbound> {
        let held = match p.kind {
            Kind::Execute { client_id, .. } => self.held_long_data(client_id)?,
            _ => Vec::new(),
        };
        let server_id = match p.kind {
            Kind::Held => self.held_statement(&p.meta)?,
            // Long data goes to a statement no EXECUTE has bound types on
            // yet: MariaDB would read the value with the earlier types.
            _ => self.server_statement(&p.meta, !held.is_empty()).await?,
        };
        let Kind::Execute { layout, client_id } = p.kind else {
            let mut out = p.payload;
            stmt::set_statement_id(&mut out, server_id);
            return Ok(out);
        };
        if !held.is_empty() {
            self.send_long_data(server_id, &held).await?;
        }
        let types = self
            .stmts
            .get_mut(client_id)
            .and_then(|c| c.types.as_deref());
        Ok(layout.bind(&p.payload, server_id, types))
    }

    /// True when the client's server has a cursor open and holds `meta`.
    fn cursor_open(&mut self, meta: &StmtMeta) -> bool {
        let server = self.core.server();
        server.is_some_and(|s| s.status.cursor_exists() && s.stmts.touch(meta.id))
    }

    /// Writes one of MySQL's statement errors (SQLSTATE HY000).
    fn stmt_error(&mut self, code: u16, message: &str) {
        encode_err(&mut self.client.out, 1, code, "HY000", message);
    }

    /// The long data held for a client statement's EXECUTE, or the ERR a
    /// server gives when it was more than a packet may carry.
    fn held_long_data(&mut self, client_id: u32) -> Result<LongData, Unbound> {
        let held = self.stmts.get_mut(client_id).map(|c| c.take_long_data());
        match held {
            Some(None) => {
                let msg = "Parameter of prepared statement which is set through mysql_send_long_data() is longer than 'max_long_data_size' parameter";
                self.stmt_error(ER_WRONG_ARGUMENTS, msg);
                Err(Unbound::Answered {
                    code: ER_WRONG_ARGUMENTS,
                })
            }
            Some(Some(v)) => Ok(v),
            None => Ok(Vec::new()),
        }
    }

    /// The leased server's id for a statement it must already hold.
    fn held_statement(&mut self, meta: &StmtMeta) -> Result<u32, Unbound> {
        let held = self.core.server().and_then(|s| s.stmts.get(meta.id));
        held.ok_or_else(|| Unbound::Broken(PumpError::Protocol("statement not held".into())))
    }

    /// The leased server's id for a statement, preparing it there first
    /// (or anew when `fresh`).
    async fn server_statement(&mut self, meta: &StmtMeta, fresh: bool) -> Result<u32, Unbound> {
        let max = self.core.entry.db.pool.max_prepared_statements;
        let Some(server) = self.core.server() else {
            return Err(Unbound::Broken(PumpError::ServerGone("no server".into())));
        };
        if let Some(id) = server.stmts.get(meta.id)
            && !fresh
        {
            return Ok(id);
        }
        match prepare_in_schema(server, meta, max).await {
            Ok(id) => Ok(id),
            Err(CommandError::Server {
                code,
                state,
                message,
            }) => {
                encode_err(&mut self.client.out, 1, code, &state, &message);
                Err(Unbound::Answered { code })
            }
            Err(CommandError::Broken(m)) => Err(Unbound::Broken(PumpError::ServerGone(m))),
        }
    }

    /// Sends held COM_STMT_SEND_LONG_DATA packets (they get no answer).
    async fn send_long_data(
        &mut self,
        server_id: u32,
        held: &[(u16, Box<[u8]>)],
    ) -> Result<(), Unbound> {
        let mut out = BytesMut::new();
        for (param, data) in held {
            stmt::write_long_data(&mut out, server_id, *param, data);
        }
        let Some(server) = self.core.server() else {
            return Err(Unbound::Broken(PumpError::ServerGone("no server".into())));
        };
        server
            .stream
            .write_all_clear(&mut out)
            .await
            .map_err(|e| Unbound::Broken(PumpError::ServerGone(e.to_string())))
    }
}

/// Prepares `meta` on `server` in the schema it was first prepared in
/// (the server goes back to the client's schema after).
async fn prepare_in_schema(
    server: &mut MyServer,
    meta: &StmtMeta,
    max: usize,
) -> Result<u32, CommandError> {
    let current = server.session.schema.clone();
    let elsewhere = meta.schema.is_some() && meta.schema != current;
    if let (true, Some(schema)) = (elsewhere, &meta.schema) {
        server.init_db(schema).await?;
    }
    let prepared = prepare_on(server, meta.id, &meta.query, max).await;
    if elsewhere {
        // No command unsets a schema: a client without one loses the server.
        let back = match &current {
            Some(schema) => server.init_db(schema).await.is_ok(),
            None => false,
        };
        server.dirty |= !back;
    }
    Ok(prepared?.0.statement_id)
}

/// Prepares `query` on `server` as statement `id`, closing what the
/// server's cache evicts (and an older copy of the same statement).
async fn prepare_on(
    server: &mut MyServer,
    id: u64,
    query: &[u8],
    max: usize,
) -> Result<(PrepareOk, BytesMut), CommandError> {
    let (ok, response) = server.prepare(query).await?;
    let mut close: Vec<u32> = server.stmts.remove(id).into_iter().collect();
    let evicted = server.stmts.add(id, ok.statement_id, max);
    close.extend(evicted.into_iter().map(|(_, h)| h));
    server.publish_statement_count();
    if !close.is_empty() {
        server.close_statements(&close).await?;
    }
    Ok((ok, response))
}
