//! `KILL [QUERY | CONNECTION] n` and COM_PROCESS_KILL, where `n` is the
//! connection id sqlmux gave a client in its greeting (what drivers read
//! with CONNECTION_ID() before they connect a second time to cancel).
//!
//! The id names a sqlmux client, not a server thread: sqlmux finds the
//! server that client is running a statement on (if any) and sends
//! `KILL QUERY <thread id>` to it over a separate, short-lived server
//! connection of the same pool. Only that statement stops; the server goes
//! on serving the pool. `KILL CONNECTION n` also ends the client's session.
//! A client may kill only statements of clients logged in as the same user.
//!
//! Several replicas behind one Service act as one: a KILL for an id no
//! client of this replica holds (under the killer's user) is forwarded to
//! the peer replicas (see `crate::peers`), and the client gets OK when one
//! of them acted. Connection ids are drawn at random from 31 bits, so two
//! replicas rarely hand out the same id at once (about one chance in two
//! billion per live client elsewhere); should they, each acts only for a
//! client of the killer's own user, as MySQL's own KILL does, and a client
//! here comes first.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::Shared;
use crate::client::{ClientInfo, Signals};
use crate::config::Protocol;
use crate::peers::PeerRequest;
use crate::pool::registry::{AnyPool, PoolEntry};
use crate::pool::{Connector, ServerInfo};
use crate::session::Refusal;

use super::server_login::MyConnector;

/// The second half of a MySQL client's cancel key (the first is its
/// connection id): keeps MySQL ids apart from PostgreSQL keys.
pub const KEY_TAG: i32 = i32::MIN;

/// What a KILL statement asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KillRequest {
    /// The connection id sqlmux handed out.
    pub id: u32,
    /// True for `KILL [CONNECTION]`, false for `KILL QUERY`.
    pub connection: bool,
}

/// Recognises `KILL [HARD|SOFT] [QUERY|CONNECTION] n` (case-insensitive).
pub fn parse(sql: &[u8]) -> Option<KillRequest> {
    let text = std::str::from_utf8(sql).ok()?.trim().trim_end_matches(';');
    let mut words = text.split_ascii_whitespace();
    if !words.next()?.eq_ignore_ascii_case("kill") {
        return None;
    }
    let mut connection = true;
    for w in words {
        if w.eq_ignore_ascii_case("hard") || w.eq_ignore_ascii_case("soft") {
            continue;
        }
        if w.eq_ignore_ascii_case("query") {
            connection = false;
            continue;
        }
        if w.eq_ignore_ascii_case("connection") {
            continue;
        }
        return w.parse().ok().map(|id| KillRequest { id, connection });
    }
    None
}

/// Carries out a KILL from `killer`: on this replica's client with that
/// id when it is logged in as the same user, else on the peer replicas
/// (`[peers]`), which act only for a client of the same user. When no
/// replica acted, the refusal is the local one: "unknown thread id", or
/// "not owner" when a client here has the id under another user.
pub async fn kill(shared: &Shared, killer: &ClientInfo, req: KillRequest) -> Result<(), Refusal> {
    let user = killer.user();
    let refusal = match find(shared, req.id, &user) {
        Ok(target) => {
            let end_session = req.connection && target.id != killer.id;
            stop(shared, &target, end_session).await;
            return Ok(());
        }
        Err(r) => r,
    };
    let forwarded = PeerRequest::MysqlKill {
        connection_id: req.id,
        user,
        query_only: !req.connection,
    };
    if crate::peers::broadcast(shared, &forwarded).await {
        tracing::debug!(connection_id = req.id, "KILL carried out by a peer replica");
        return Ok(());
    }
    Err(refusal)
}

/// Carries out a KILL forwarded by a peer replica, on this replica only:
/// false when no client here has connection id `id` under `user`.
pub(crate) async fn kill_local(shared: &Shared, id: u32, user: &str, query_only: bool) -> bool {
    match find(shared, id, user) {
        Ok(target) => {
            stop(shared, &target, !query_only).await;
            true
        }
        Err(_) => false,
    }
}

/// This replica's MySQL client with connection id `id`, if `user` may
/// kill it (MySQL's rule: only one's own user's threads).
fn find(shared: &Shared, id: u32, user: &str) -> Result<Arc<ClientInfo>, Refusal> {
    let target = shared
        .clients
        .by_cancel_key((id as i32, KEY_TAG))
        .filter(|c| c.protocol == Protocol::Mysql)
        .ok_or(Refusal::UnknownThread { id })?;
    if target.user() != user {
        return Err(Refusal::KillDenied { id });
    }
    Ok(target)
}

/// Stops the statement `target` runs, and its session when `end_session`.
async fn stop(shared: &Shared, target: &Arc<ClientInfo>, end_session: bool) {
    cancel_running(shared, target).await;
    if end_session {
        target.signals.raise(Signals::KILL);
    }
}

/// Stops the statement `client` is running, if it runs one.
async fn cancel_running(shared: &Shared, client: &Arc<ClientInfo>) {
    let server_id = client.link();
    if server_id == 0 {
        return;
    }
    for entry in shared.pools.all() {
        if entry.protocol != Protocol::Mysql {
            continue;
        }
        for s in entry.servers() {
            if s.id == server_id && s.link() == client.id {
                let thread = s.remote_pid.load(Ordering::Relaxed);
                if let Err(e) = kill_on(shared, &entry, "QUERY", thread).await {
                    tracing::warn!(error = %e, "KILL QUERY on the server failed");
                }
                return;
            }
        }
    }
}

/// Opens a connection like the pool's and runs `KILL <what> thread` on it
/// (`QUERY`: the statement; `CONNECTION`: the whole server connection,
/// which rolls its transaction back).
pub async fn kill_on(
    shared: &Shared,
    entry: &PoolEntry,
    what: &str,
    thread: i64,
) -> Result<(), String> {
    let AnyPool::Mysql(my) = &entry.pool else {
        return Err("not a MySQL pool".into());
    };
    let cfg = shared.config.load();
    let db = &entry.db;
    let connector = MyConnector {
        host: db.host.clone(),
        port: db.port,
        dbname: db.dbname.clone(),
        credentials: my.credentials.clone(),
        profile: my.profile,
        collation: my.collation,
        timeout: cfg.general.server_connect_timeout,
        tls: crate::tls::connector(db.server_tls.mode, db.server_tls.ca.as_deref()),
        tls_mode: db.server_tls.mode,
    };
    let mut server = connector
        .connect(ServerInfo::detached())
        .await
        .map_err(|e| e.message)?;
    tracing::debug!(server.thread = thread, what, "KILL on the server");
    server
        .query(&format!("KILL {what} {thread}"))
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_statements_parse() {
        assert_eq!(
            parse(b"KILL QUERY 42"),
            Some(KillRequest {
                id: 42,
                connection: false
            })
        );
        assert_eq!(
            parse(b" kill 7;"),
            Some(KillRequest {
                id: 7,
                connection: true
            })
        );
        assert_eq!(parse(b"kill hard connection 9").map(|k| k.id), Some(9));
        assert_eq!(parse(b"killer 1"), None);
        assert_eq!(parse(b"KILL QUERY x"), None);
    }
}
