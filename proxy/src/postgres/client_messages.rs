//! Client messages the pump looks inside: Query, Parse, Bind, Execute,
//! Describe, Close, Sync and the copy messages. Each queues what the server
//! will answer (so the session knows when the server is idle again), feeds
//! insight, and — for named statements in transaction mode — is rewritten
//! by [`super::named`].

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use sqlmux_protocol::postgres::frame::HEADER_LEN;
use sqlmux_protocol::postgres::message;
use sqlmux_protocol::sql::{Analysis, Effects, Fingerprint, Kind};

use super::session::{PumpEnd, Session};
use crate::postgres::prepared;
use crate::postgres::server::PgServer;
use crate::postgres::tracker::{Local, Req};
use crate::stats::Stat;

/// Client statement names and portals, with the fingerprint each runs.
#[derive(Debug, Default)]
pub(crate) struct Statements {
    unnamed: StmtInfo,
    unnamed_portal: StmtInfo,
    named: HashMap<Box<[u8]>, StmtInfo>,
    portals: HashMap<Box<[u8]>, StmtInfo>,
}

/// What sqlmux remembers of a prepared statement or portal.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StmtInfo {
    pub(crate) fp: Fingerprint,
    /// BEGIN/COMMIT/ROLLBACK-like (ignored by the N+1 detector).
    pub(crate) txn_control: bool,
}

impl Session {
    /// Looks at one complete client message (the whole frame). Returns
    /// true to forward it verbatim; false when it was handled (rewritten
    /// into `sout`, answered locally, or dropped).
    pub(crate) fn on_client_message(
        &mut self,
        srv: &mut PgServer,
        tag: u8,
        frame: &[u8],
    ) -> Result<bool, PumpEnd> {
        self.ready_idle = false;
        if self.skip_until_sync {
            // After an error sqlmux produced itself, PostgreSQL semantics:
            // ignore everything up to the next Sync.
            if tag != b'S' {
                return Ok(tag == b'X');
            }
            self.skip_until_sync = false;
        }
        if self.core.query_started.is_none() && !matches!(tag, b'X' | b'H' | b'd' | b'c' | b'f') {
            self.core.query_started = Some(self.core.now);
        }
        let body = &frame[HEADER_LEN..];
        match tag {
            b'Q' => return self.on_query(srv, body),
            b'P' => return self.on_parse(srv, body),
            b'B' => return self.on_bind(srv, body),
            b'E' => self.on_execute(srv, body)?,
            b'D' => return self.on_describe(srv, body),
            b'C' => return self.on_close(srv, body),
            b'S' => {
                if !srv.q.copy_in_extended {
                    srv.q.push(Req::Sync);
                }
            }
            b'H' | b'd' => {}
            b'c' | b'f' => srv.q.leave_copy_in(),
            b'F' => srv.q.push(Req::Function),
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

    fn on_query(&mut self, srv: &mut PgServer, body: &[u8]) -> Result<bool, PumpEnd> {
        let sql =
            message::decode_query(body).ok_or_else(|| bad_client("malformed Query message"))?;
        let a = self.analyze(sql);
        if let Err(r) = self.apply_session_state(&a) {
            self.push_local(
                srv,
                Local::QueryError {
                    code: r.sqlstate(),
                    message: r.message().into(),
                },
            );
            return Ok(false);
        }
        self.after_analysis(srv, &a, sql, true);
        let deallocates = Effects::DEALLOCATE | Effects::DEALLOCATE_ALL | Effects::DISCARD_ALL;
        if self.rewrite
            && a.effects.any(deallocates)
            && let Some(done) = self.deallocate_locally(sql, &a)
        {
            self.push_local(srv, Local::QueryDone(done.into()));
            return Ok(false);
        }
        srv.q.push(Req::Query {
            fp: a.fingerprint,
            sent: self.core.now,
            rows: 0,
            error: false,
        });
        Ok(true)
    }

    fn on_parse(&mut self, srv: &mut PgServer, body: &[u8]) -> Result<bool, PumpEnd> {
        let p = message::decode_parse(body).ok_or_else(|| bad_client("malformed Parse message"))?;
        let a = self.analyze(p.query);
        if let Err(r) = self.apply_session_state(&a) {
            self.local_error(srv, r.sqlstate(), r.message());
            return Ok(false);
        }
        self.after_analysis(srv, &a, p.query, false);
        let info = StmtInfo {
            fp: a.fingerprint,
            txn_control: is_txn_control(&a),
        };
        if p.name.is_empty() {
            self.stmts.unnamed = info;
        } else {
            self.core.counts.add(Stat::ClientParses, 1);
            if self.rewrite {
                self.parse_named(srv, p.name, p.query, p.param_types, info);
                return Ok(false);
            }
            self.stmts.named.insert(p.name.into(), info);
            self.core.counts.add(Stat::ServerParses, 1);
        }
        srv.q.push(Req::Parse {
            synthetic: false,
            stmt: None,
            name: None,
        });
        Ok(true)
    }

    fn on_bind(&mut self, srv: &mut PgServer, body: &[u8]) -> Result<bool, PumpEnd> {
        let (portal, stmt, rest_at) =
            message::decode_bind_names(body).ok_or_else(|| bad_client("malformed Bind message"))?;
        self.core.counts.add(Stat::Binds, 1);
        if stmt.is_empty() || !self.rewrite {
            let info = if stmt.is_empty() {
                self.stmts.unnamed
            } else {
                self.stmts.named.get(stmt).copied().unwrap_or_default()
            };
            self.set_portal(portal, info);
            srv.q.push(Req::Bind);
            return Ok(true);
        }
        let Some(prep) = self.named_statement(srv, stmt) else {
            return Ok(false);
        };
        prepared::write_bind(&mut self.sout, portal, &prep.server_name, &body[rest_at..]);
        let info = StmtInfo {
            fp: prep.fp,
            txn_control: prep.txn_control,
        };
        self.set_portal(portal, info);
        srv.q.push(Req::Bind);
        Ok(false)
    }

    fn on_execute(&mut self, srv: &mut PgServer, body: &[u8]) -> Result<(), PumpEnd> {
        let (portal, _) =
            message::decode_execute(body).ok_or_else(|| bad_client("malformed Execute message"))?;
        let info = if portal.is_empty() {
            self.stmts.unnamed_portal
        } else {
            self.stmts.portals.get(portal).copied().unwrap_or_default()
        };
        let now = self.core.now;
        self.core.observe(info.fp, info.txn_control, now);
        srv.q.push(Req::Execute {
            fp: info.fp,
            sent: now,
        });
        Ok(())
    }

    fn on_describe(&mut self, srv: &mut PgServer, body: &[u8]) -> Result<bool, PumpEnd> {
        let (kind, name) =
            message::decode_target(body).ok_or_else(|| bad_client("malformed Describe message"))?;
        if kind != b'S' || name.is_empty() || !self.rewrite {
            srv.q.push(Req::Describe);
            return Ok(true);
        }
        let Some(prep) = self.named_statement(srv, name) else {
            return Ok(false);
        };
        prepared::write_describe(&mut self.sout, &prep.server_name);
        srv.q.push(Req::Describe);
        Ok(false)
    }

    fn on_close(&mut self, srv: &mut PgServer, body: &[u8]) -> Result<bool, PumpEnd> {
        let (kind, name) =
            message::decode_target(body).ok_or_else(|| bad_client("malformed Close message"))?;
        if kind == b'S' {
            if self.rewrite && !name.is_empty() {
                // The server keeps the statement for other clients.
                self.prepared.remove(name);
                let n = self.prepared.len();
                self.core
                    .info
                    .prepared_statements
                    .store(n, Ordering::Relaxed);
                self.push_local(srv, Local::CloseComplete);
                return Ok(false);
            }
            self.stmts.named.remove(name);
        } else {
            self.stmts.portals.remove(name);
        }
        srv.q.push(Req::Close {
            synthetic: false,
            evicted: None,
        });
        Ok(true)
    }

    fn set_portal(&mut self, portal: &[u8], info: StmtInfo) {
        if portal.is_empty() {
            self.stmts.unnamed_portal = info;
        } else {
            self.stmts.portals.insert(portal.into(), info);
        }
    }
}

/// BEGIN/COMMIT/ROLLBACK/SAVEPOINT-like statements.
pub(crate) fn is_txn_control(a: &Analysis) -> bool {
    a.effects.any(Effects::TXN_CONTROL)
        || matches!(a.kind, Kind::Begin | Kind::Commit | Kind::Rollback)
}

pub(crate) fn bad_client(msg: &str) -> PumpEnd {
    PumpEnd::Protocol {
        client_side: true,
        message: msg.to_owned(),
    }
}

pub(crate) fn bad_server(msg: &str) -> PumpEnd {
    PumpEnd::Protocol {
        client_side: false,
        message: msg.to_owned(),
    }
}
