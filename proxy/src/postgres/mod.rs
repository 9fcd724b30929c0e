//! The PostgreSQL front end: client login, cancel requests, and the
//! session that forwards transactions (see [`session`]).
//!
//! Login, in order: the first packet (SSLRequest is declined unless TLS is
//! configured, CancelRequest is forwarded to the right server and the
//! connection closed), the StartupMessage (user, database, parameters),
//! client authentication against `[[users]]` (SCRAM-SHA-256, md5 or trust),
//! the pool for (database, user), the parameter values the client will see
//! (learned from a server once per pool and value, then cached), our own
//! BackendKeyData, and ReadyForQuery.

mod cancel;
mod client_auth;
mod client_messages;
mod local;
mod login;
mod named;
pub mod params;
pub mod pools;
pub mod prepared;
mod pump;
pub mod server;
mod server_messages;
pub mod session;
mod session_state;
pub mod simple;
pub mod tracker;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::Shared;
use crate::client::{ClientInfo, Signals};
use crate::config::Protocol;
use crate::io::Stream;
use crate::listener::Accepted;
use crate::session::Refusal;
use cancel::new_cancel_key;
pub(crate) use cancel::{cancel_local, random_8};
use login::{Conn, First, first_packets, login};
use session::Session;
/// A login failure already reported to the client.
pub(super) struct Rejected;

/// Serves one accepted PostgreSQL client connection until it closes.
pub async fn handle_client(shared: Arc<Shared>, accepted: Accepted) {
    // The login runs in its own boxed future, freed once the client is in,
    // and the session lives in its own allocation: the task's future stays
    // small, so spawning it copies little, and an idle client holds only
    // the session's state and the few bytes of its wait.
    let Some(LoggedIn {
        mut session,
        info,
        registration,
        span,
    }) = Box::pin(log_in(&shared, accepted)).await
    else {
        return;
    };
    let served = async move {
        tracing::debug!("client logged in");
        // Biased: the session first, so a busy session costs one atomic
        // load per wake-up for the signals.
        let signals = info.signals.wait(Signals::KILL | Signals::HARD);
        tokio::select! {
            biased;
            _ = session.run() => {}
            bits = signals => {
                let r = if bits & Signals::HARD != 0 {
                    Refusal::ShutdownTimeout
                } else {
                    Refusal::AdminKill
                };
                session.send_refusal(&r).await;
            }
        }
        session.client.close_gracefully().await;
        session.core.pool.clients.fetch_sub(1, Ordering::Relaxed);
        tracing::debug!("client disconnected");
        drop(registration);
    };
    tracing::Instrument::instrument(served, span).await;
}

/// A client that has logged in, ready to be served.
struct LoggedIn {
    session: Box<Session>,
    info: Arc<ClientInfo>,
    /// Keeps the client in SHOW CLIENTS until it is dropped.
    registration: crate::client::Registration,
    span: tracing::Span,
}

/// Everything before the session: TLS, the startup packet, authentication,
/// the pool. None when the connection ended (errors already reported).
async fn log_in(shared: &Arc<Shared>, accepted: Accepted) -> Option<LoggedIn> {
    let Accepted {
        stream,
        peer,
        local,
    } = accepted;
    // Spare buffers: the first read would grow a small one to
    // `io::READ_CHUNK` anyway, and the session goes on with this one.
    let mut conn = Conn {
        stream,
        buf: crate::io::take_buf(),
        out: crate::io::take_buf(),
        peer,
    };
    let hard = shared.hard.clone();
    let login_timeout = shared.config.load().general.client_login_timeout;
    let timed_out = Refusal::LoginTimeout {
        limit: login_timeout,
    };
    let startup = loop {
        let first = tokio::select! {
            r = tokio::time::timeout(login_timeout, first_packets(shared, &mut conn)) => match r {
                Ok(Ok(f)) => f,
                Ok(Err(Rejected)) => return None,
                Err(_) => {
                    conn.refuse(&timed_out).await;
                    return None;
                }
            },
            _ = hard.cancelled() => return None,
        };
        match first {
            First::Startup(s) => break s,
            First::Done => {
                conn.stream.close_gracefully().await;
                return None;
            }
            First::StartTls => {
                if !conn.buf.is_empty() {
                    // Bytes sent after SSLRequest but before the handshake
                    // could be injected by a man in the middle.
                    conn.fatal("08P01", "unexpected data after SSLRequest", None)
                        .await;
                    return None;
                }
                let acceptor = (**shared.pg_tls.load()).clone()?;
                let Stream::Plain(tcp) = conn.stream else {
                    return None;
                };
                match tokio::time::timeout(login_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => conn.stream = Stream::TlsServer(Box::new(tls)),
                    Ok(Err(e)) => {
                        tracing::debug!(client.addr = %peer, error = %e, "TLS handshake failed");
                        return None;
                    }
                    Err(_) => return None,
                }
            }
        }
    };
    let tls_required = shared
        .config
        .load()
        .postgres
        .tls
        .as_ref()
        .is_some_and(|t| t.mode == crate::config::ClientTlsMode::Require);
    // Like PgBouncer, a Unix socket needs no TLS even when it is required.
    if tls_required && !conn.stream.is_tls() && !conn.stream.is_unix() {
        let setting = "postgres.tls.mode";
        conn.refuse(&Refusal::TlsRequired { setting }).await;
        return None;
    }

    // From here on the client is visible in SHOW CLIENTS.
    let key = new_cancel_key(shared);
    let info = Arc::new(ClientInfo::new(Protocol::Postgres, peer, local, key));
    let registration = shared.clients.register(info.clone());
    // A shutdown that began before the registration did not see this
    // client: raise its signals here (the registry lock orders the two).
    if shared.hard.is_cancelled() {
        info.signals.raise(Signals::DRAIN | Signals::HARD);
    } else if shared.drain.is_cancelled() {
        info.signals.raise(Signals::DRAIN);
    }
    *info.tls.lock().unwrap_or_else(|e| e.into_inner()) = conn.stream.tls_description();
    let login = tokio::select! {
        r = tokio::time::timeout(login_timeout, login(shared, &mut conn, &info, startup)) => r,
        _ = info.signals.wait(Signals::KILL | Signals::HARD) => return None,
    };
    let (entry, pg, params) = match login {
        Ok(Ok(v)) => v,
        Ok(Err(Rejected)) => return None,
        Err(_) => {
            conn.refuse(&timed_out).await;
            return None;
        }
    };
    pg.pool.clients.fetch_add(1, Ordering::Relaxed);
    let span = tracing::debug_span!("client", client.addr = %peer, database = %entry.db.name, user = %pg.pool.key.user);
    let Conn {
        stream,
        buf,
        mut out,
        ..
    } = conn;
    crate::io::recycle_buf(&mut out);
    let session = Box::new(Session::new(
        shared.clone(),
        info.clone(),
        stream,
        buf,
        entry.clone(),
        pg.pool.clone(),
        params,
    ));
    Some(LoggedIn {
        session,
        info,
        registration,
        span,
    })
}
