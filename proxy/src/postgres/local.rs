//! Replies sqlmux gives itself, in order with the server's: ParseComplete
//! for a statement the server already holds, CloseComplete for a client's
//! Close of a shared statement, PostgreSQL's errors for unknown or duplicate
//! names, and the answer to `DEALLOCATE name` of a protocol-level statement.
//! Each is queued like a request and emitted when it reaches the front.

use sqlmux_protocol::postgres::message::{self, Severity};
use sqlmux_protocol::sql::{Analysis, Effects};

use super::session::Session;
use crate::postgres::server::PgServer;
use crate::postgres::tracker::{Local, Req};
use crate::session::pins::PIN_PREPARE;

impl Session {
    /// Queues a reply sqlmux produces itself, in order with the server's.
    pub(crate) fn push_local(&mut self, srv: &mut PgServer, l: Local) {
        srv.q.push(Req::Local(l));
        self.drain_local(srv);
    }

    /// An error sqlmux produces itself; like PostgreSQL, later messages up
    /// to Sync are ignored.
    pub(crate) fn local_error(&mut self, srv: &mut PgServer, code: &'static str, message: String) {
        self.skip_until_sync = true;
        self.push_local(
            srv,
            Local::Error {
                code,
                message: message.into(),
            },
        );
    }

    /// Emits local replies that have reached the front of the queue.
    pub(crate) fn drain_local(&mut self, srv: &mut PgServer) {
        while let Some(Req::Local(_)) = srv.q.front() {
            let Some(Req::Local(l)) = srv.q.pop() else {
                break;
            };
            match l {
                Local::ParseComplete(_) => message::parse_complete(&mut self.cout),
                Local::CloseComplete => message::close_complete(&mut self.cout),
                Local::Error { code, message: m } => {
                    message::error_response(&mut self.cout, Severity::Error, code, &m, None, None);
                    self.skip_to_sync(srv);
                }
                Local::QueryError { code, message: m } => {
                    message::error_response(&mut self.cout, Severity::Error, code, &m, None, None);
                    let status = if srv.txn_status == b'I' { b'I' } else { b'E' };
                    self.local_query_done(srv, status);
                }
                Local::QueryDone(tag) => {
                    message::command_complete(&mut self.cout, &tag);
                    self.local_query_done(srv, srv.txn_status);
                }
            }
        }
    }

    /// ReadyForQuery after a Query sqlmux answered itself.
    fn local_query_done(&mut self, srv: &PgServer, status: u8) {
        message::ready_for_query(&mut self.cout, status);
        let now = self.core.now;
        self.core.finish_query(now, !srv.q.is_empty());
        if srv.q.is_empty() && srv.txn_status == b'I' {
            self.ready_idle = true;
        }
    }

    /// `DEALLOCATE name` / `DEALLOCATE ALL` of protocol-level statements is
    /// answered by sqlmux (the server knows them under other names).
    /// `DISCARD ALL` also forgets the client's statements but still runs.
    pub(crate) fn deallocate_locally(&mut self, sql: &[u8], a: &Analysis) -> Option<&'static str> {
        if a.effects.any(Effects::DISCARD_ALL) || a.effects.any(Effects::DEALLOCATE_ALL) {
            self.prepared.clear();
            self.publish_client_statements();
            return None;
        }
        if a.statements != 1 || self.core.pins.has(PIN_PREPARE) {
            return None;
        }
        let name = deallocated_name(sql)?;
        self.prepared.remove(name.as_bytes())?;
        self.publish_client_statements();
        Some("DEALLOCATE")
    }
}

/// The name in `DEALLOCATE [PREPARE] name`, if that is all `sql` says.
fn deallocated_name(sql: &[u8]) -> Option<&str> {
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
    Some(name.trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::deallocated_name;

    #[test]
    fn deallocate_names_are_found_and_other_statements_are_not() {
        assert_eq!(deallocated_name(b"DEALLOCATE q1"), Some("q1"));
        assert_eq!(
            deallocated_name(b" deallocate prepare \"q2\" ;"),
            Some("q2")
        );
        assert_eq!(deallocated_name(b"DEALLOCATE q1 q2"), None);
        assert_eq!(deallocated_name(b"SELECT 1"), None);
    }
}
