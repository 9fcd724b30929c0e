//! Server messages the pump looks inside: ReadyForQuery (the transaction
//! status and the end of a batch), CommandComplete (rows, ROLLBACK, resets
//! that empty the statement cache), ErrorResponse (the requests the server
//! will now skip), the Parse/Bind/Close completions, ParameterStatus and
//! copy mode. Each answer pops the request it answers from the server's
//! queue; answers to what sqlmux injected are swallowed.

use sqlmux_protocol::postgres::message::{self, Severity};

use super::client_messages::bad_server;
use super::pump::swallowing;
use super::session::{PumpEnd, Session};
use crate::client::PinReason;
use crate::pool::PooledServer;
use crate::postgres::params;
use crate::postgres::server::PgServer;
use crate::postgres::tracker::{Injected, Req};
use crate::stats::Stat;

impl Session {
    /// Looks at one complete server message. Returns whether to forward it.
    pub(crate) fn on_server_message(
        &mut self,
        srv: &mut PgServer,
        tag: u8,
        body: &[u8],
    ) -> Result<bool, PumpEnd> {
        let swallow = swallowing(srv);
        match tag {
            b'Z' => self.on_ready(srv, body),
            b'C' | b'I' | b's' => {
                self.on_complete(srv, tag, body);
                Ok(!swallow)
            }
            b'E' => Ok(self.on_error(srv, body)),
            b'1' => match srv.q.pop() {
                Some(Req::Parse { synthetic, .. }) => Ok(!synthetic),
                _ => Err(bad_server("ParseComplete without a Parse")),
            },
            b'2' => match srv.q.pop() {
                Some(Req::Bind) => Ok(true),
                _ => Err(bad_server("BindComplete without a Bind")),
            },
            b'3' => match srv.q.pop() {
                Some(Req::Close { synthetic, .. }) => Ok(!synthetic),
                _ => Err(bad_server("CloseComplete without a Close")),
            },
            b'n' | b'T' => {
                if matches!(srv.q.front(), Some(Req::Describe)) {
                    srv.q.pop();
                }
                Ok(!swallow)
            }
            b'G' => {
                srv.q.enter_copy_in();
                Ok(true)
            }
            b'W' => {
                // Copy-both (replication): this server can never be shared.
                srv.dirty = true;
                self.core.info.set_pin(PinReason::Other);
                Ok(true)
            }
            b'S' => self.on_parameter_status(srv, body),
            b'D' | b't' | b'A' | b'N' | b'V' | b'd' | b'c' | b'H' => Ok(!swallow),
            other => Err(bad_server(&format!(
                "unexpected message type {:?} from the server",
                other as char
            ))),
        }
    }

    /// ReadyForQuery: answers the oldest Query, Sync or injected query.
    fn on_ready(&mut self, srv: &mut PgServer, body: &[u8]) -> Result<bool, PumpEnd> {
        let status = *body
            .first()
            .ok_or_else(|| bad_server("empty ReadyForQuery"))?;
        let now = self.core.now;
        let mut forward = true;
        loop {
            match srv.q.pop() {
                Some(Req::Query {
                    fp,
                    sent,
                    rows,
                    error,
                }) => {
                    self.core.record_statement(fp, sent, rows, error, now);
                    break;
                }
                Some(Req::Sync) | Some(Req::Function) => break,
                Some(Req::Injected(kind)) => {
                    forward = false;
                    if kind == Injected::Params {
                        params::mark_synced(self.core.info.id, &self.params, &mut srv.params);
                    }
                    break;
                }
                Some(_) => continue,
                None => {
                    // A ReadyForQuery nobody asked for: state unknown.
                    srv.dirty = true;
                    break;
                }
            }
        }
        if !forward {
            return Ok(false);
        }
        srv.txn_status = status;
        self.core.finish_query(now, !srv.q.is_empty());
        if srv.q.is_empty() {
            if status == b'I' {
                self.ready_idle = true;
            } else {
                self.core.leak.arm(now);
            }
        }
        Ok(true)
    }

    /// CommandComplete, EmptyQueryResponse, PortalSuspended.
    fn on_complete(&mut self, srv: &mut PgServer, tag: u8, body: &[u8]) {
        let mut rows = 0;
        if tag == b'C' {
            rows = message::command_complete_rows(body).unwrap_or(0);
            if message::command_complete_command(body) == b"ROLLBACK" {
                self.rollback_seen = true;
            } else {
                srv.command_completed(body);
            }
        }
        match srv.q.front_mut() {
            Some(Req::Execute { .. }) => {
                if let Some(Req::Execute { fp, sent }) = srv.q.pop() {
                    let now = self.core.now;
                    self.core.record_statement(fp, sent, rows, false, now);
                }
            }
            Some(Req::Query { rows: r, .. }) => *r += rows,
            _ => {}
        }
    }

    /// ErrorResponse. Returns whether to forward it.
    fn on_error(&mut self, srv: &mut PgServer, body: &[u8]) -> bool {
        let fields = message::decode_error_fields(body).unwrap_or_default();
        if fields.severity == "FATAL" || fields.severity == "PANIC" {
            // The server is closing; its own error is the one the client
            // gets (see `Session::finish`).
            srv.dirty = true;
            srv.fatal = true;
        }
        self.rollback_seen = true;
        self.core.counts.add(Stat::Errors, 1);
        match srv.q.front_mut() {
            Some(Req::Query { error, .. }) => *error = true,
            Some(Req::Injected(kind)) => {
                let kind = *kind;
                self.injected_failed(kind, fields.code, fields.message);
                return false;
            }
            Some(_) => {
                // The failed request and everything up to Sync.
                if let Some((fp, sent)) = self.skip_to_sync(srv) {
                    let now = self.core.now;
                    self.core.record_statement(fp, sent, 0, true, now);
                }
            }
            // Asynchronous error (e.g. the server is shutting down).
            None => srv.dirty = true,
        }
        srv.q.copy_in = false;
        srv.q.copy_in_extended = false;
        true
    }

    /// A statement sqlmux injected failed: logged, and the client is told
    /// when its session settings could not be restored.
    fn injected_failed(&mut self, kind: Injected, code: &str, error: &str) {
        tracing::warn!(
            client.addr = %self.core.info.addr,
            code,
            error,
            kind = ?kind,
            "statement injected by sqlmux failed"
        );
        if kind == Injected::Params {
            let msg =
                format!("sqlmux could not restore your session settings on the server: {error}");
            message::error_response(&mut self.cout, Severity::Warning, "01000", &msg, None, None);
        }
    }

    /// ParameterStatus: the server's value is recorded; the client's wanted
    /// value follows what it saw.
    fn on_parameter_status(&mut self, srv: &mut PgServer, body: &[u8]) -> Result<bool, PumpEnd> {
        let (name, value) = message::decode_parameter_status(body)
            .ok_or_else(|| bad_server("malformed ParameterStatus"))?;
        srv.params.reported(name, value);
        if name == "application_name" {
            *srv.info()
                .application_name
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = value.to_owned();
        }
        let restoring = matches!(srv.q.front(), Some(Req::Injected(Injected::Restore)));
        if swallowing(srv) && !restoring {
            return Ok(false);
        }
        if params::is_writable(name) {
            self.params.want(name, value);
        }
        if name == "application_name" {
            *self
                .core
                .info
                .application_name
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = value.to_owned();
        }
        Ok(true)
    }
}
