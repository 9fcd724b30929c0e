//! Logging a PostgreSQL client in: the first packets (TLS, cancel, peer
//! requests), the StartupMessage, authentication, admission, the pool, and
//! the parameter values the client will see (learned from a server once
//! per pool and value, then cached), ending with BackendKeyData and
//! ReadyForQuery.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use sqlmux_protocol::postgres::frame;
use sqlmux_protocol::postgres::message::{self, Severity};
use sqlmux_protocol::postgres::startup::{self, Startup, StartupPacket};

use super::Rejected;
use super::cancel::forward_cancel;
use super::client_auth::{authenticate, lookup_user};
use super::params::{self, ClientParams};
use super::pools::{self, PgPool};
use crate::Shared;
use crate::client::{ClientInfo, ClientState};
use crate::config::Protocol;
use crate::io::Stream;
use crate::pool::registry::PoolEntry;
use crate::pool::{PooledServer, unix_us};
use crate::session::{Refusal, admission};

/// A client connection during login.
pub(super) struct Conn {
    pub(super) stream: Stream,
    pub(super) buf: BytesMut,
    pub(super) out: BytesMut,
    /// The client's address (failed logins are delayed per address).
    pub(super) peer: crate::addr::PeerAddr,
}

impl Conn {
    /// Sends a FATAL error and closes the connection (with TLS
    /// close_notify, so the client reads the error, not a broken stream).
    pub(super) async fn fatal(&mut self, code: &str, msg: &str, hint: Option<&str>) {
        message::error_response(&mut self.out, Severity::Fatal, code, msg, None, hint);
        let _ = self.stream.write_all_clear(&mut self.out).await;
        self.stream.close_gracefully().await;
    }

    /// Answers a failed login (wrong password, unknown user) with a FATAL
    /// error after the delay its address earned (see
    /// [`crate::session::auth_delay`]); the login ends.
    pub(super) async fn login_failed(
        &mut self,
        shared: &Shared,
        user: &str,
        (code, msg): (&str, &str),
        hint: Option<&str>,
    ) -> Rejected {
        crate::session::auth_delay::delay_failure(shared, self.peer.ip(), user).await;
        self.fatal(code, msg, hint).await;
        Rejected
    }

    /// Sends a refusal as a FATAL error; the login ends.
    pub(super) async fn refuse(&mut self, r: &Refusal) -> Rejected {
        let hint = r.hint();
        self.fatal(r.sqlstate(), &r.message(), hint.as_deref())
            .await;
        Rejected
    }

    pub(super) async fn flush(&mut self) -> Result<(), Rejected> {
        self.stream
            .write_all_clear(&mut self.out)
            .await
            .map_err(|_| Rejected)
    }

    /// Reads one complete message with the given tag during login.
    pub(super) async fn read_message(&mut self, tag: u8) -> Result<BytesMut, Rejected> {
        loop {
            match frame::peek_header(&self.buf, 10_000) {
                Ok(Some(h)) if self.buf.len() >= h.frame_len() => {
                    if h.tag != tag {
                        self.fatal(
                            "08P01",
                            &format!(
                                "expected a password message, got message type {:?}",
                                h.tag as char
                            ),
                            None,
                        )
                        .await;
                        return Err(Rejected);
                    }
                    let mut m = self.buf.split_to(h.frame_len());
                    m.advance(5);
                    return Ok(m);
                }
                Ok(_) => {}
                Err(e) => {
                    self.fatal(
                        "08P01",
                        &format!("invalid message during authentication: {e}"),
                        None,
                    )
                    .await;
                    return Err(Rejected);
                }
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return Err(Rejected),
                Ok(_) => {}
            }
        }
    }
}

/// What the first packets asked for.
pub(super) enum First {
    /// A StartupMessage.
    Startup(Startup),
    /// Upgrade to TLS now ('S' already sent, or direct TLS).
    StartTls,
    /// Nothing more to do (cancel handled, client gone).
    Done,
}

/// Reads the first packets: answers encryption requests, forwards cancel
/// requests, and returns the StartupMessage.
pub(super) async fn first_packets(shared: &Shared, conn: &mut Conn) -> Result<First, Rejected> {
    // No TLS over a Unix socket (as PostgreSQL: SSLRequest gets `N`).
    let tls_available = shared.pg_tls.load().is_some() && !conn.stream.is_unix();
    if tls_available && conn.buf.is_empty() && !conn.stream.is_tls() {
        // PostgreSQL 17 direct TLS starts with a ClientHello (0x16).
        let mut first = [0u8; 1];
        if let Some(tcp) = conn.stream.tcp()
            && let Ok(1) = tcp.peek(&mut first).await
            && first[0] == 0x16
        {
            return Ok(if tls_available {
                First::StartTls
            } else {
                First::Done
            });
        }
    }
    loop {
        let packet = loop {
            match startup::decode(&mut conn.buf) {
                Ok(Some(p)) => break p,
                Ok(None) => {}
                Err(startup::StartupError::BadLength(len)) => {
                    // Not a startup packet at all (e.g. a Terminate sent
                    // before any login): like PostgreSQL, log it and close
                    // without a word, since the peer expects no answer.
                    tracing::debug!(
                        length = len,
                        "invalid startup packet length; connection closed"
                    );
                    return Err(Rejected);
                }
                Err(e @ startup::StartupError::UnsupportedVersion { .. }) => {
                    // PostgreSQL's code for a protocol it does not speak.
                    conn.fatal("0A000", &e.to_string(), None).await;
                    return Err(Rejected);
                }
                Err(e) => {
                    conn.fatal("08P01", &format!("invalid startup packet: {e}"), None)
                        .await;
                    return Err(Rejected);
                }
            }
            match conn.stream.read_buf(&mut conn.buf).await {
                Ok(0) | Err(_) => return Ok(First::Done),
                Ok(_) => {}
            }
        };
        match packet {
            StartupPacket::SslRequest if tls_available && !conn.stream.is_tls() => {
                conn.out.extend_from_slice(b"S");
                conn.flush().await?;
                return Ok(First::StartTls);
            }
            StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
                conn.out.extend_from_slice(b"N");
                conn.flush().await?;
            }
            StartupPacket::CancelRequest { pid, secret } => {
                forward_cancel(shared, pid, &secret).await;
                return Ok(First::Done);
            }
            StartupPacket::PeerRequest(body) => {
                if let Some(Ok(from)) = conn.stream.tcp().map(|t| t.peer_addr())
                    && let Some(reply) = crate::peers::handle(shared, from, &body).await
                {
                    conn.out.extend_from_slice(&[reply]);
                    let _ = conn.flush().await;
                }
                return Ok(First::Done);
            }
            StartupPacket::Startup(s) => return Ok(First::Startup(s)),
        }
    }
}

/// Authenticates the client and prepares its session state.
pub(super) async fn login(
    shared: &Arc<Shared>,
    conn: &mut Conn,
    info: &Arc<ClientInfo>,
    startup: Startup,
) -> Result<(Arc<PoolEntry>, Arc<PgPool>, ClientParams), Rejected> {
    let cfg = shared.config.load_full();
    let users = shared.users.load_full();

    // Protocol minor versions above 0 and _pq_ options are declined.
    let unsupported: Vec<&str> = startup
        .params
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| k.starts_with("_pq_."))
        .collect();
    if startup.minor() > 0 || !unsupported.is_empty() {
        message::negotiate_protocol_version(&mut conn.out, 0, &unsupported);
    }

    let Some(user) = startup
        .get("user")
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
    else {
        conn.fatal(
            "28000",
            "no user name specified in the startup packet",
            Some("set the user in the connection string"),
        )
        .await;
        return Err(Rejected);
    };
    let database = startup
        .get("database")
        .filter(|d| !d.is_empty())
        .unwrap_or(&user)
        .to_owned();
    *info.user.lock().unwrap_or_else(|e| e.into_inner()) = user.clone();
    *info.database.lock().unwrap_or_else(|e| e.into_inner()) = database.clone();
    if let Some(app) = startup.get("application_name") {
        *info
            .application_name
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = app.to_owned();
    }
    if startup
        .get("replication")
        .is_some_and(|r| r != "false" && r != "0" && r != "off" && r != "no")
    {
        conn.fatal(
            "0A000",
            "replication connections are not supported through sqlmux",
            Some("connect replication clients to the server directly"),
        )
        .await;
        return Err(Rejected);
    }

    let db = match admission::admit(shared, &cfg, Protocol::Postgres, &database) {
        Ok(db) => db,
        Err(r) => return Err(conn.refuse(&r).await),
    };

    // Authenticate.
    let auth_user = match users.get(&user).cloned() {
        Some(u) => u,
        None if cfg.postgres.auth_user.is_some() => {
            match lookup_user(shared, &cfg, &users, &db, &user).await {
                Ok(u) => u,
                Err((code, msg)) if code.starts_with("28") => {
                    return Err(conn.login_failed(shared, &user, (code, &msg), None).await);
                }
                Err((code, msg)) => {
                    conn.fatal(code, &msg, None).await;
                    return Err(Rejected);
                }
            }
        }
        None => {
            let r = Refusal::UnknownUser { user: user.clone() };
            let (msg, hint) = (r.message(), r.hint());
            let failed = (r.sqlstate(), msg.as_str());
            return Err(conn
                .login_failed(shared, &user, failed, hint.as_deref())
                .await);
        }
    };
    authenticate(shared, conn, &auth_user, cfg.postgres.auth).await?;
    shared.auth_delay.succeeded(conn.peer.ip());
    message::auth_ok(&mut conn.out);

    if let Err(r) = admission::check_database_limit(shared, &db) {
        return Err(conn.refuse(&r).await);
    }

    let login = pools::server_login_for(&db, &auth_user);
    let (entry, pg) = pools::pool_for(&shared.pools, &cfg, &shared.insight, &db, login);
    pg.pool.stats.add(crate::stats::Stat::ClientLogins, 1);

    // Parameters: what the client asked for, in the server's spelling.
    let mut params = ClientParams::default();
    let requested = startup_settings(&startup);
    let mut unknown: Vec<(String, String)> = Vec::new();
    {
        let cache = pg.canonical.lock().unwrap_or_else(|e| e.into_inner());
        for (k, v) in &requested {
            if k.eq_ignore_ascii_case("application_name") {
                params.want("application_name", &truncate_name(v));
            } else if let Some((name, value)) =
                cache.get(&(k.to_ascii_lowercase(), (*v).to_owned()))
            {
                if name.is_empty() {
                    params.set_setting(&k.to_ascii_lowercase(), &set_config_sql(k, v));
                } else {
                    params.want(name, value);
                }
            } else {
                unknown.push((k.to_string(), (*v).to_owned()));
            }
        }
    }
    let need_welcome = pg
        .welcome
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_none();
    if need_welcome || !unknown.is_empty() {
        learn_parameters(conn, info, &pg, &unknown, &mut params).await?;
    }

    // Welcome: ParameterStatus, BackendKeyData, ReadyForQuery.
    {
        let welcome = pg.welcome.lock().unwrap_or_else(|e| e.into_inner());
        let empty = params::ParamMap::default();
        let welcome = welcome.as_ref().unwrap_or(&empty);
        for (k, v) in welcome.iter() {
            let v = params.reported.get(k).unwrap_or(v);
            message::parameter_status(&mut conn.out, k, v);
        }
        for (k, v) in params.reported.iter() {
            if welcome.get(k).is_none() {
                message::parameter_status(&mut conn.out, k, v);
            }
        }
    }
    if let Some(app) = params.reported.get("application_name") {
        *info
            .application_name
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = app.to_owned();
    }
    params.remember_startup();
    message::backend_key_data(&mut conn.out, info.cancel_key.0, info.cancel_key.1);
    message::ready_for_query(&mut conn.out, b'I');
    conn.flush().await?;
    info.set_state(ClientState::Idle, unix_us(std::time::SystemTime::now()));
    Ok((entry, pg, params))
}

/// application_name as the server will report it (63 bytes, ASCII only).
pub(super) fn truncate_name(v: &str) -> String {
    let printable = |b: &u8| (b' '..=b'~').contains(b);
    if v.len() <= 63 && v.as_bytes().iter().all(printable) {
        return v.to_owned();
    }
    let mut s: String = v
        .chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect();
    s.truncate(63);
    s
}

/// Parameters from the startup packet that set session state, including
/// `-c name=value` and `--name=value` from `options`.
pub(super) fn startup_settings(startup: &Startup) -> Vec<(Cow<'_, str>, &str)> {
    let mut out = Vec::new();
    for (k, v) in &startup.params {
        match k.as_str() {
            "user" | "database" | "replication" => {}
            "options" => {
                let mut words = v.split_ascii_whitespace();
                while let Some(w) = words.next() {
                    let kv = if w == "-c" {
                        words.next()
                    } else if let Some(rest) = w.strip_prefix("-c") {
                        Some(rest)
                    } else {
                        w.strip_prefix("--")
                    };
                    if let Some((name, value)) = kv.and_then(|kv| kv.split_once('=')) {
                        out.push((Cow::Owned(name.replace('-', "_")), value));
                    }
                }
            }
            k if k.starts_with("_pq_.") => {}
            _ => out.push((Cow::Borrowed(k.as_str()), v.as_str())),
        }
    }
    out
}

pub(super) fn set_config_sql(name: &str, value: &str) -> String {
    let mut s = String::from("SELECT pg_catalog.set_config(");
    params::quote_literal(&mut s, name);
    s.push_str(", ");
    params::quote_literal(&mut s, value);
    s.push_str(", false)");
    s
}

/// Borrows a server once to learn the welcome parameters of the pool and
/// the server's spelling of values the client asked for. Invalid values
/// fail the login like they would on the server itself.
pub(super) async fn learn_parameters(
    conn: &mut Conn,
    info: &Arc<ClientInfo>,
    pg: &Arc<PgPool>,
    unknown: &[(String, String)],
    params: &mut ClientParams,
) -> Result<(), Rejected> {
    let mut lease = match pg.pool.checkout(info.id, crate::clock::Tick::now()).await {
        Ok(l) => l,
        Err(e) => {
            let (code, msg) = match &e {
                crate::pool::CheckoutError::Connect(c) => (c.sqlstate, c.message.clone()),
                _ => ("53300", e.to_string()),
            };
            conn.fatal(code, &msg, None).await;
            return Err(Rejected);
        }
    };
    let server = lease.server();
    // Bring the server to the client's current state first.
    let mut sql = params::sync_sql(info.id, params, &server.params).unwrap_or_default();
    if !unknown.is_empty() {
        sql.push_str("SELECT ");
        for (i, (k, v)) in unknown.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str("pg_catalog.set_config(");
            params::quote_literal(&mut sql, k);
            sql.push_str(", ");
            params::quote_literal(&mut sql, v);
            sql.push_str(", false)");
        }
    }
    if !sql.is_empty() {
        match server.run_simple(&sql).await {
            Ok(None) if server.txn_status == b'I' => {}
            Ok(Some((code, msg))) => {
                drop(lease);
                conn.fatal(&code, &msg, None).await;
                return Err(Rejected);
            }
            _ => {
                drop(lease);
                conn.fatal(
                    "08006",
                    "the server failed while applying startup parameters",
                    None,
                )
                .await;
                return Err(Rejected);
            }
        }
    }
    {
        let mut cache = pg.canonical.lock().unwrap_or_else(|e| e.into_inner());
        for (k, v) in unknown {
            match server.params.current.get_ignore_case(k) {
                Some((name, value)) => {
                    let (name, value) = (name.to_owned(), value.to_owned());
                    params.want(&name, &value);
                    cache.insert((k.to_ascii_lowercase(), v.clone()), (name, value));
                }
                None => {
                    params.set_setting(&k.to_ascii_lowercase(), &set_config_sql(k, v));
                    cache.insert(
                        (k.to_ascii_lowercase(), v.clone()),
                        (String::new(), String::new()),
                    );
                }
            }
        }
    }
    {
        let mut welcome = pg.welcome.lock().unwrap_or_else(|e| e.into_inner());
        if welcome.is_none() {
            *welcome = Some(server.params.defaults.clone());
        }
    }
    params::mark_synced(info.id, params, &mut server.params);
    let _ = server.info();
    drop(lease);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_names_are_reported_as_the_server_would() {
        assert_eq!(truncate_name("pgbench"), "pgbench");
        assert_eq!(truncate_name("naïve app"), "na?ve app");
        let long = "x".repeat(70);
        assert_eq!(truncate_name(&long), "x".repeat(63));
        assert_eq!(truncate_name("tab\there"), "tab?here");
    }

    #[test]
    fn startup_settings_take_parameters_and_options() {
        let param = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        let startup = Startup {
            version: 3 << 16,
            params: vec![
                param("user", "app"),
                param("database", "db"),
                param("application_name", "web"),
                param(
                    "options",
                    "-c search-path=x --work_mem=8MB -cstatement_timeout=5",
                ),
                param("_pq_.compression", "on"),
                param("TimeZone", "UTC"),
            ],
        };
        let got: Vec<(String, String)> = startup_settings(&startup)
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v.to_owned()))
            .collect();
        assert_eq!(
            got,
            vec![
                param("application_name", "web"),
                param("search_path", "x"),
                param("work_mem", "8MB"),
                param("statement_timeout", "5"),
                param("TimeZone", "UTC"),
            ]
        );
    }
}
