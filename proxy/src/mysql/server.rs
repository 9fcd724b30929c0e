//! MySQL server connections: the connection a pool lends, and what it
//! knows about its own protocol state.
//!
//! A [`MyServer`] owns its socket and read buffer, the status flags of the
//! last complete response, whether a response is still owed, whether its
//! state is known at all, and the session state it holds beyond its login
//! state. From that alone it answers [`PooledServer::is_clean`] when a lease
//! ends; the session keeps no copy.
//!
//! Logging in is in [`super::server_login`].

use std::sync::Arc;

use bytes::BytesMut;
use sqlmux_protocol::mysql::command::Command;
use sqlmux_protocol::mysql::packet::{self, HEADER_LEN};
use sqlmux_protocol::mysql::response::{ErrPacket, OkPacket, PrepareOk};
use sqlmux_protocol::mysql::response_state::{Completion, Progress, ResponseTracker};
use sqlmux_protocol::mysql::status::ServerStatus;
use thiserror::Error;

use super::conn::{PacketConn, ReadError};
use super::session_state::{ENABLE_TRACKING, SessionVars};
use crate::io::{IdleRead, Stream};
use crate::pool::{PooledServer, ResetFuture, ServerInfo};
use crate::session::statements::ServerStatements;

/// Longest response to a command sqlmux sends on its own.
const MAX_OWN_RESPONSE: usize = 1 << 20;

/// A command sqlmux sent on its own failed.
#[derive(Debug, Error)]
pub enum CommandError {
    /// The server answered with an ERR packet.
    #[error("server error {code} ({state}): {message}")]
    Server {
        /// MySQL error code.
        code: u16,
        /// SQLSTATE.
        state: String,
        /// Message.
        message: String,
    },
    /// The connection failed or the answer did not follow the protocol.
    #[error("server connection failed: {0}")]
    Broken(String),
}

/// A logged-in MySQL server connection.
pub struct MyServer {
    /// The socket.
    pub stream: Stream,
    /// Bytes read from the server and not yet processed.
    pub buf: BytesMut,
    /// Capability flags negotiated with the server.
    pub caps: u32,
    /// Status flags of the last complete response (an ERR keeps them).
    pub status: ServerStatus,
    /// A command was sent and its response is not complete.
    pub owed: bool,
    /// State unknown (protocol error, a response cut short): close it.
    pub dirty: bool,
    /// Holds the session state of a pinned client: reset before reuse.
    pub carries_session_state: bool,
    /// Variables and schema that differ from the login state.
    pub session: SessionVars,
    /// The server's thread id (the target of KILL QUERY).
    pub thread_id: u32,
    /// Prepared statements it holds: content id to its statement id.
    pub stmts: ServerStatements<u32>,
    info: Arc<ServerInfo>,
}

impl std::fmt::Debug for MyServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MyServer")
            .field("id", &self.info.id)
            .field("thread_id", &self.thread_id)
            .finish()
    }
}

impl PooledServer for MyServer {
    fn info(&self) -> &Arc<ServerInfo> {
        &self.info
    }

    fn is_usable(&mut self) -> bool {
        if !self.buf.is_empty() {
            // Servers say nothing unasked except that they are leaving.
            return false;
        }
        self.stream.idle_check(&mut self.buf) == IdleRead::Quiet
    }

    fn is_clean(&self) -> bool {
        !self.dirty
            && !self.owed
            && self.buf.is_empty()
            && !self.status.in_transaction()
            && !self.status.more_results()
            && !self.status.cursor_exists()
    }

    fn needs_reset(&self) -> bool {
        self.carries_session_state
    }

    fn reset(&mut self) -> ResetFuture<'_> {
        Box::pin(async move { self.reset_connection().await.is_ok() && self.is_clean() })
    }
}

impl MyServer {
    /// A server connection that just logged in.
    pub fn new(conn: PacketConn, caps: u32, thread_id: u32, info: Arc<ServerInfo>) -> MyServer {
        info.remote_pid
            .store(i64::from(thread_id), std::sync::atomic::Ordering::Relaxed);
        MyServer {
            stream: conn.stream,
            buf: conn.buf,
            caps,
            status: ServerStatus(sqlmux_protocol::mysql::status::SERVER_STATUS_AUTOCOMMIT),
            owed: false,
            dirty: false,
            carries_session_state: false,
            session: SessionVars::default(),
            thread_id,
            stmts: ServerStatements::default(),
            info,
        }
    }

    /// COM_RESET_CONNECTION, then session tracking on again: the server
    /// is back to its login state (its schema stays).
    pub async fn reset_connection(&mut self) -> Result<(), CommandError> {
        self.command(&[Command::ResetConnection.as_byte()]).await?;
        self.stmts.clear();
        self.publish_statement_count();
        self.enable_tracking().await?;
        let schema = self.session.schema.take();
        self.session = SessionVars {
            vars: Default::default(),
            schema,
        };
        self.carries_session_state = false;
        Ok(())
    }

    /// Turns session tracking on (after login and after each reset).
    pub async fn enable_tracking(&mut self) -> Result<(), CommandError> {
        let mut payload = Vec::with_capacity(ENABLE_TRACKING.len() + 1);
        payload.push(Command::Query.as_byte());
        payload.extend_from_slice(ENABLE_TRACKING.as_bytes());
        self.command(&payload).await?;
        self.session.vars.clear();
        Ok(())
    }

    /// Runs a query of sqlmux's own (a SET replaying session state).
    pub async fn query(&mut self, sql: &str) -> Result<(), CommandError> {
        let mut payload = Vec::with_capacity(sql.len() + 1);
        payload.push(Command::Query.as_byte());
        payload.extend_from_slice(sql.as_bytes());
        self.command(&payload).await
    }

    /// COM_INIT_DB: makes `schema` the default schema.
    pub async fn init_db(&mut self, schema: &str) -> Result<(), CommandError> {
        let mut payload = Vec::with_capacity(schema.len() + 1);
        payload.push(Command::InitDb.as_byte());
        payload.extend_from_slice(schema.as_bytes());
        self.command(&payload).await?;
        self.session.schema = Some(schema.into());
        Ok(())
    }

    /// Sends one command of sqlmux's own and reads its whole response,
    /// recording status and session state. A broken exchange leaves the
    /// server dirty.
    pub async fn command(&mut self, payload: &[u8]) -> Result<(), CommandError> {
        self.command_keeping(payload, None).await
    }

    /// COM_STMT_PREPARE of sqlmux's own: the server's answer (prepare OK
    /// and the packets that follow, headers included), or its ERR.
    pub async fn prepare(&mut self, query: &[u8]) -> Result<(PrepareOk, BytesMut), CommandError> {
        let mut payload = Vec::with_capacity(query.len() + 1);
        payload.push(Command::StmtPrepare.as_byte());
        payload.extend_from_slice(query);
        let mut response = BytesMut::new();
        self.command_keeping(&payload, Some(&mut response)).await?;
        let ok = PrepareOk::decode(&response[HEADER_LEN.min(response.len())..])
            .map_err(|e| CommandError::Broken(e.to_string()))?;
        Ok((ok, response))
    }

    /// Sends COM_STMT_CLOSE for statements this server no longer keeps
    /// (no answer comes).
    pub async fn close_statements(&mut self, ids: &[u32]) -> Result<(), CommandError> {
        let mut out = BytesMut::new();
        for &id in ids {
            sqlmux_protocol::mysql::stmt::write_close(&mut out, id);
        }
        self.stream
            .write_all_clear(&mut out)
            .await
            .map_err(|e| CommandError::Broken(e.to_string()))
    }

    /// Publishes the statement cache size (SHOW SERVERS, /metrics).
    pub fn publish_statement_count(&self) {
        self.info
            .prepared_statements
            .store(self.stmts.len(), std::sync::atomic::Ordering::Relaxed);
    }

    /// [`Self::command`], appending each packet of the answer to `keep`.
    async fn command_keeping(
        &mut self,
        payload: &[u8],
        mut keep: Option<&mut BytesMut>,
    ) -> Result<(), CommandError> {
        self.dirty = true;
        let mut out = BytesMut::with_capacity(payload.len() + HEADER_LEN);
        packet::write_packet(&mut out, 0, payload);
        self.stream
            .write_all_clear(&mut out)
            .await
            .map_err(|e| CommandError::Broken(e.to_string()))?;
        let mut tracker = ResponseTracker::for_command(payload, self.caps)
            .ok_or_else(|| CommandError::Broken("command without a response".into()))?;
        let mut err = None;
        loop {
            let (seq, p) = self.read_packet().await?;
            if let Some(keep) = keep.as_deref_mut() {
                packet::write_packet(keep, seq, &p);
            }
            let h = packet::Header {
                len: p.len() as u32,
                seq: 0,
            };
            let progress = tracker
                .server_packet(h, &p)
                .map_err(|e| CommandError::Broken(e.to_string()))?;
            if tracker.state_changed()
                && let Ok(ok) = OkPacket::decode(&p, self.caps)
            {
                self.session.apply(&ok);
            }
            match progress {
                Progress::More => {}
                Progress::ClientTurn => {
                    return Err(CommandError::Broken("server asked for client data".into()));
                }
                Progress::Done(Completion::Status(s)) => {
                    self.status = s;
                    break;
                }
                Progress::Done(Completion::Err { .. }) => {
                    err = ErrPacket::decode(&p).ok().map(|e| CommandError::Server {
                        code: e.code,
                        state: String::from_utf8_lossy(e.sql_state).into_owned(),
                        message: String::from_utf8_lossy(e.message).into_owned(),
                    });
                    break;
                }
                Progress::Done(Completion::NoStatus) => break,
            }
        }
        self.dirty = false;
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn read_packet(&mut self) -> Result<(u8, BytesMut), CommandError> {
        loop {
            match packet::read_logical(&mut self.buf, MAX_OWN_RESPONSE) {
                Ok(Some((l, p))) => return Ok((l.first_seq, p)),
                Ok(None) => {}
                Err(e) => return Err(CommandError::Broken(e.to_string())),
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => return Err(CommandError::Broken(ReadError::Closed.to_string())),
                Ok(_) => {}
                Err(e) => return Err(CommandError::Broken(e.to_string())),
            }
        }
    }
}

impl Drop for MyServer {
    fn drop(&mut self) {
        // COM_QUIT so the server logs a clean disconnect; best effort.
        self.stream
            .try_write_plain(&[1, 0, 0, 0, Command::Quit.as_byte()]);
    }
}
