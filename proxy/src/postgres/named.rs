//! Named prepared statements in transaction mode, the session side: a
//! client's Parse, Bind, Describe and Close of a named statement are
//! rewritten to the shared server-side name ([`super::prepared`]), and the
//! statement is prepared lazily on whichever server the client is lent.
//!
//! Invariant: the client's names and each server's statement cache list
//! exactly what the server holds. A name is registered when its Parse is
//! sent (so a Bind right behind it in the same batch resolves), and
//! forgotten again if the Parse fails or the server skips it after an
//! earlier error; an eviction whose Close is skipped is listed again.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use sqlmux_protocol::sql::Fingerprint;

use super::client_messages::StmtInfo;
use super::session::Session;
use crate::clock::Tick;
use crate::postgres::prepared::{self, Prepared};
use crate::postgres::server::PgServer;
use crate::postgres::tracker::{Local, Req};
use crate::stats::Stat;

impl Session {
    /// A named Parse in transaction mode: record the client's name and make
    /// sure the server has the statement under its shared name.
    pub(crate) fn parse_named(
        &mut self,
        srv: &mut PgServer,
        name: &[u8],
        query: &[u8],
        types: &[u8],
        info: StmtInfo,
    ) {
        if self.prepared.get(name).is_some() {
            let msg = format!(
                "prepared statement \"{}\" already exists",
                String::from_utf8_lossy(name)
            );
            self.local_error(srv, "42P05", msg);
            return;
        }
        let prep = Arc::new(Prepared::new(query, types, info.fp, info.txn_control));
        self.prepared.insert(name, prep.clone());
        self.publish_client_statements();
        if srv.prepared.touch(prep.id) {
            self.push_local(srv, Local::ParseComplete(Some(name.into())));
            return;
        }
        self.send_parse(srv, &prep, Some(name));
    }

    /// The statement behind a client's name, prepared on this server; None
    /// (after queueing PostgreSQL's error) when the name is unknown.
    pub(crate) fn named_statement(
        &mut self,
        srv: &mut PgServer,
        name: &[u8],
    ) -> Option<Arc<Prepared>> {
        let Some(prep) = self.prepared.get(name).cloned() else {
            let msg = format!(
                "prepared statement \"{}\" does not exist",
                String::from_utf8_lossy(name)
            );
            self.local_error(srv, "26000", msg);
            return None;
        };
        if !srv.prepared.touch(prep.id) {
            self.send_parse(srv, &prep, None);
        }
        Some(prep)
    }

    /// Sends a Parse of `prep` under its server name, closing evicted ones.
    /// `client_name` is the client's own Parse being rewritten (its
    /// ParseComplete goes to the client); None for an injected Parse.
    fn send_parse(&mut self, srv: &mut PgServer, prep: &Arc<Prepared>, client_name: Option<&[u8]>) {
        let evicted = srv
            .prepared
            .add(prep.id, prep.server_name, self.max_prepared);
        srv.publish_statement_count();
        for (id, name) in evicted {
            prepared::write_close(&mut self.sout, &name);
            srv.q.push(Req::Close {
                synthetic: true,
                evicted: Some((id, name)),
            });
        }
        prep.write_parse(&mut self.sout);
        srv.q.push(Req::Parse {
            synthetic: client_name.is_none(),
            stmt: Some(prep.id),
            name: client_name.map(Into::into),
        });
        self.core.counts.add(Stat::ServerParses, 1);
    }

    /// Publishes the number of this client's named statements.
    pub(crate) fn publish_client_statements(&self) {
        let n = self.prepared.len();
        self.core
            .info
            .prepared_statements
            .store(n, Ordering::Relaxed);
    }

    /// A request the server will never answer (an error came first): undo
    /// what sqlmux recorded when it sent it.
    fn forget_unanswered(&mut self, srv: &mut PgServer, r: &Req) {
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
        if let Some(id) = stmt {
            srv.prepared.remove(id);
        }
        if let Some((id, server_name)) = evicted {
            srv.prepared.restore(id, server_name);
        }
        srv.publish_statement_count();
    }

    /// After an error: the server skips everything up to the next Sync.
    /// Returns the Execute the error answered, if any.
    pub(crate) fn skip_to_sync(&mut self, srv: &mut PgServer) -> Option<(Fingerprint, Tick)> {
        let skipped = srv.q.skip_to_sync();
        for r in &skipped {
            self.forget_unanswered(srv, r);
        }
        match skipped.first() {
            Some(Req::Execute { fp, sent }) => Some((*fp, *sent)),
            _ => None,
        }
    }
}
