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

mod client_messages;
mod local;
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

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use ring::rand::{SecureRandom, SystemRandom};
use sqlmux_protocol::postgres::auth::{ScramError, ScramServer, md5_matches};
use sqlmux_protocol::postgres::frame;
use sqlmux_protocol::postgres::message::{self, Severity};
use sqlmux_protocol::postgres::startup::{self, Startup, StartupPacket};
use tokio::net::TcpStream;

use crate::Shared;
use crate::auth::{AuthUser, ScramKeys};
use crate::client::{ClientInfo, ClientState, Signals};
use crate::config::{AuthMethod, Protocol};
use crate::io::Stream;
use crate::pool::registry::PoolEntry;
use crate::pool::{PooledServer, unix_us};
use params::ClientParams;
use pools::PgPool;
use session::Session;

/// Longest a client may take to log in.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// A login failure already reported to the client.
struct Rejected;

/// Serves one accepted PostgreSQL client connection until it closes.
pub async fn handle_client(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr) {
    // The login runs in its own boxed future, freed once the client is in:
    // the task of an idle client then holds only the session's state.
    let Some(LoggedIn {
        mut session,
        info,
        registration,
        span,
    }) = Box::pin(log_in(&shared, tcp, peer)).await
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
                let msg = if bits & Signals::HARD != 0 {
                    "terminating connection: sqlmux shutdown timeout reached"
                } else {
                    "terminating connection due to administrator command (KILL)"
                };
                session.send_error(Severity::Fatal, "57P01", msg, None).await;
            }
        }
        session.core.pool.clients.fetch_sub(1, Ordering::Relaxed);
        tracing::debug!("client disconnected");
        drop(registration);
    };
    tracing::Instrument::instrument(served, span).await;
}

/// A client that has logged in, ready to be served.
struct LoggedIn {
    session: Session,
    info: Arc<ClientInfo>,
    /// Keeps the client in SHOW CLIENTS until it is dropped.
    registration: crate::client::Registration,
    span: tracing::Span,
}

/// Everything before the session: TLS, the startup packet, authentication,
/// the pool. None when the connection ended (errors already reported).
async fn log_in(shared: &Arc<Shared>, tcp: TcpStream, peer: SocketAddr) -> Option<LoggedIn> {
    let _ = tcp.set_nodelay(true);
    let local = tcp.local_addr().unwrap_or(peer);
    let mut conn = Conn {
        stream: Stream::Plain(tcp),
        buf: BytesMut::with_capacity(1024),
        out: BytesMut::with_capacity(512),
    };
    let hard = shared.hard.clone();
    let startup = loop {
        let first = tokio::select! {
            r = tokio::time::timeout(LOGIN_TIMEOUT, Box::pin(first_packets(shared, &mut conn))) => match r {
                Ok(Ok(f)) => f,
                Ok(Err(Rejected)) => return None,
                Err(_) => {
                    conn.fatal("08P01", "login timed out: no startup packet within 60 s", None).await;
                    return None;
                }
            },
            _ = hard.cancelled() => return None,
        };
        match first {
            First::Startup(s) => break s,
            First::Done => return None,
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
                match tokio::time::timeout(LOGIN_TIMEOUT, acceptor.accept(tcp)).await {
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
    if tls_required && !conn.stream.is_tls() {
        conn.fatal(
            "28000",
            "sqlmux requires TLS for this connection (postgres.tls.mode = \"require\")",
            Some("connect with sslmode=require or stronger"),
        )
        .await;
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
        r = tokio::time::timeout(LOGIN_TIMEOUT, Box::pin(login(shared, &mut conn, &info, startup))) => r,
        _ = info.signals.wait(Signals::KILL | Signals::HARD) => return None,
    };
    let (entry, pg, params) = match login {
        Ok(Ok(v)) => v,
        Ok(Err(Rejected)) => return None,
        Err(_) => {
            conn.fatal("08P01", "login timed out after 60 s", None)
                .await;
            return None;
        }
    };
    pg.pool.clients.fetch_add(1, Ordering::Relaxed);
    let span = tracing::debug_span!("client", client.addr = %peer, database = %entry.db.name, user = %pg.pool.key.user);
    let Conn { stream, buf, out } = conn;
    drop(out);
    let session = Session::new(
        shared.clone(),
        info.clone(),
        stream,
        buf,
        entry.clone(),
        pg.pool.clone(),
        params,
    );
    Some(LoggedIn {
        session,
        info,
        registration,
        span,
    })
}

/// A client connection during login.
struct Conn {
    stream: Stream,
    buf: BytesMut,
    out: BytesMut,
}

impl Conn {
    async fn fatal(&mut self, code: &str, msg: &str, hint: Option<&str>) {
        message::error_response(&mut self.out, Severity::Fatal, code, msg, None, hint);
        let _ = self.stream.write_all_clear(&mut self.out).await;
    }

    async fn flush(&mut self) -> Result<(), Rejected> {
        self.stream
            .write_all_clear(&mut self.out)
            .await
            .map_err(|_| Rejected)
    }

    /// Reads one complete message with the given tag during login.
    async fn read_message(&mut self, tag: u8) -> Result<BytesMut, Rejected> {
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
enum First {
    /// A StartupMessage.
    Startup(Startup),
    /// Upgrade to TLS now ('S' already sent, or direct TLS).
    StartTls,
    /// Nothing more to do (cancel handled, client gone).
    Done,
}

/// Reads the first packets: answers encryption requests, forwards cancel
/// requests, and returns the StartupMessage.
async fn first_packets(shared: &Shared, conn: &mut Conn) -> Result<First, Rejected> {
    let tls_available = shared.pg_tls.load().is_some();
    if tls_available && conn.buf.is_empty() && !conn.stream.is_tls() {
        // PostgreSQL 17 direct TLS starts with a ClientHello (0x16).
        let mut first = [0u8; 1];
        if let Ok(1) = conn.stream.tcp().peek(&mut first).await
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
            StartupPacket::Startup(s) => return Ok(First::Startup(s)),
        }
    }
}

/// A random cancel key not used by another client.
fn new_cancel_key(shared: &Shared) -> (i32, i32) {
    loop {
        let b = random_8();
        let pid = i32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]]);
        let secret = i32::from_be_bytes([b[4], b[5], b[6], b[7]]);
        if pid != 0 && !shared.clients.key_in_use((pid, secret)) {
            return (pid, secret);
        }
    }
}

/// Eight bytes from the operating system's CSPRNG, drawn 512 at a time per
/// thread so a login does not cost a getrandom call.
fn random_8() -> [u8; 8] {
    thread_local! {
        static POOL: std::cell::RefCell<([u8; 512], usize)> = const { std::cell::RefCell::new(([0; 512], 512)) };
    }
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.1 + 8 > p.0.len() {
            if SystemRandom::new().fill(&mut p.0).is_err() {
                // No OS randomness: fall back to unique, unpredictable-enough ids.
                let seed = crate::pool::next_id().wrapping_mul(0x9e37_79b9_7f4a_7c15);
                for (i, chunk) in p.0.chunks_mut(8).enumerate() {
                    chunk.copy_from_slice(&seed.rotate_left(i as u32 * 7).to_be_bytes());
                }
            }
            p.1 = 0;
        }
        let at = p.1;
        p.1 += 8;
        let mut out = [0u8; 8];
        out.copy_from_slice(&p.0[at..at + 8]);
        out
    })
}

/// Forwards a CancelRequest to the server currently running that client's
/// query, and to nothing else.
async fn forward_cancel(shared: &Shared, pid: i32, secret: &[u8]) {
    if secret.len() != 4 {
        return;
    }
    let key = (
        pid,
        i32::from_be_bytes([secret[0], secret[1], secret[2], secret[3]]),
    );
    let Some(client) = shared.clients.by_cancel_key(key) else {
        tracing::debug!("cancel request with an unknown key ignored");
        return;
    };
    let server_id = client.link();
    if server_id == 0 {
        return;
    }
    for entry in shared.pools.all() {
        for s in entry.servers() {
            if s.id == server_id && s.link() == client.id {
                let addr = *s.addr.lock().unwrap_or_else(|e| e.into_inner());
                let pid = s.remote_pid.load(Ordering::Relaxed) as i32;
                let secret = s
                    .cancel_token
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                if let Some(addr) = addr {
                    tracing::debug!(client.addr = %client.addr, server.pid = pid, "forwarding cancel request");
                    if let Err(e) = server::send_cancel(addr, pid, &secret).await {
                        tracing::warn!(error = %e, "cancel request to the server failed");
                    }
                }
                return;
            }
        }
    }
}

/// Authenticates the client and prepares its session state.
async fn login(
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

    // Global client limit.
    let max_clients = cfg.pool.max_client_connections;
    if shared.clients.len() > max_clients {
        conn.fatal(
            "53300",
            &format!("too many clients: sqlmux accepts at most {max_clients} client connections (pool.max_client_connections)"),
            Some("close idle connections or raise pool.max_client_connections"),
        )
        .await;
        return Err(Rejected);
    }

    let Some(db) = cfg.database(&database) else {
        let mut known: Vec<&str> = cfg.databases.iter().map(|d| d.name.as_str()).collect();
        known.sort();
        conn.fatal(
            "3D000",
            &format!("database \"{database}\" does not exist in sqlmux"),
            Some(&format!(
                "sqlmux serves: {}; add a [[databases]] entry named \"{database}\" or fix the connection string",
                if known.is_empty() { "(none)".into() } else { known.join(", ") }
            )),
        )
        .await;
        return Err(Rejected);
    };

    // Authenticate.
    let auth_user = match users.get(&user).cloned() {
        Some(u) => u,
        None if cfg.postgres.auth_user.is_some() => {
            match lookup_user(shared, &cfg, &users, &db, &user).await {
                Ok(u) => u,
                Err((code, msg)) => {
                    conn.fatal(code, &msg, None).await;
                    return Err(Rejected);
                }
            }
        }
        None => {
            conn.fatal(
                "28000",
                &format!("no such user \"{user}\" in sqlmux"),
                Some("add a [[users]] entry for this user, or configure postgres.auth_user to look users up on the server"),
            )
            .await;
            return Err(Rejected);
        }
    };
    authenticate(conn, &auth_user, cfg.postgres.auth).await?;
    message::auth_ok(&mut conn.out);

    // Per-database client limit.
    if let Some(limit) = db.client_limit {
        let used = shared.pools.clients_of(&db.name);
        if used >= limit {
            conn.fatal(
                "53300",
                &format!("too many clients for database \"{}\": at most {limit} (databases.pool.max_client_connections)", db.name),
                Some("close idle connections or raise the database's max_client_connections"),
            )
            .await;
            return Err(Rejected);
        }
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
            } else if let Some((name, value)) = cache.get(&(k.to_ascii_lowercase(), v.clone())) {
                if name.is_empty() {
                    params.set_setting(&k.to_ascii_lowercase(), &set_config_sql(k, v));
                } else {
                    params.want(name, value);
                }
            } else {
                unknown.push((k.clone(), v.clone()));
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
fn truncate_name(v: &str) -> String {
    let mut s: String = v
        .chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect();
    s.truncate(63);
    s
}

/// Parameters from the startup packet that set session state, including
/// `-c name=value` and `--name=value` from `options`.
fn startup_settings(startup: &Startup) -> Vec<(String, String)> {
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
                        out.push((name.replace('-', "_"), value.to_owned()));
                    }
                }
            }
            k if k.starts_with("_pq_.") => {}
            _ => out.push((k.clone(), v.clone())),
        }
    }
    out
}

fn set_config_sql(name: &str, value: &str) -> String {
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
async fn learn_parameters(
    conn: &mut Conn,
    info: &Arc<ClientInfo>,
    pg: &Arc<PgPool>,
    unknown: &[(String, String)],
    params: &mut ClientParams,
) -> Result<(), Rejected> {
    let mut lease = match pg.pool.checkout(info.id, std::time::Instant::now()).await {
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

/// Finds the secret of a user missing from `[[users]]` on the server,
/// through `postgres.auth_user` and `postgres.auth_query` (cached for
/// [`crate::auth::AUTH_CACHE_TTL`]). Never logs the secret.
async fn lookup_user(
    shared: &Arc<Shared>,
    cfg: &crate::config::Config,
    users: &crate::auth::Users,
    db: &crate::config::DatabaseConfig,
    user: &str,
) -> Result<Arc<AuthUser>, (&'static str, String)> {
    if let Some(u) = shared.auth_cache.get(&db.name, user) {
        return Ok(u);
    }
    let auth_name = cfg.postgres.auth_user.as_deref().unwrap_or_default();
    let Some(auth) = users.get(auth_name).cloned() else {
        return Err((
            "28000",
            format!(
                "postgres.auth_user \"{auth_name}\" has no [[users]] entry; sqlmux cannot look up user \"{user}\""
            ),
        ));
    };
    let connector = server::PgConnector {
        host: db.host.clone(),
        port: db.port,
        dbname: cfg
            .postgres
            .auth_dbname
            .clone()
            .unwrap_or_else(|| db.dbname.clone()),
        login: server::ServerLogin::ClientUser(auth),
        timeout: cfg.general.server_connect_timeout,
        tls: crate::tls::connector(db.server_tls.mode, db.server_tls.ca.as_deref()),
        tls_mode: db.server_tls.mode,
    };
    let mut server = connector.connect_once().await.map_err(|e| {
        (
            "08006",
            format!("cannot look up user \"{user}\": {}", e.message),
        )
    })?;
    let mut literal = String::new();
    params::quote_literal(&mut literal, user);
    let sql = cfg.postgres.auth_query.replace("$1", &literal);
    let rows = tokio::time::timeout(cfg.general.server_connect_timeout, server.query_rows(&sql))
        .await
        .map_err(|_| ("08006", format!("looking up user \"{user}\" timed out")))?
        .map_err(|e| ("08006", format!("looking up user \"{user}\" failed: {e}")))?
        .map_err(|e| ("28000", format!("postgres.auth_query failed: {e}")))?;
    let Some(row) = rows.into_iter().next() else {
        return Err((
            "28000",
            format!(
                "no such user \"{user}\" (not in [[users]] and not found by postgres.auth_query)"
            ),
        ));
    };
    let Some(secret) = row.get(1).cloned().flatten() else {
        return Err((
            "28P01",
            format!(
                "password authentication failed for user \"{user}\": the server has no password for this user"
            ),
        ));
    };
    tracing::debug!(user, database = %db.name, "user found through auth_query");
    Ok(shared.auth_cache.put(&db.name, user, &secret))
}

/// Runs the configured authentication exchange.
async fn authenticate(
    conn: &mut Conn,
    user: &Arc<AuthUser>,
    method: AuthMethod,
) -> Result<(), Rejected> {
    let failed_msg = format!("password authentication failed for user \"{}\"", user.name);
    if method == AuthMethod::Trust {
        return Ok(());
    }
    let use_scram = match method {
        AuthMethod::ScramSha256 => user.scram_verifier().is_some(),
        AuthMethod::Md5 => user.md5().is_none() && user.scram_verifier().is_some(),
        AuthMethod::Trust => unreachable!(),
    };
    if use_scram {
        let verifier = user.scram_verifier().expect("checked").clone();
        message::auth_sasl(&mut conn.out, &["SCRAM-SHA-256"]);
        conn.flush().await?;
        let body = conn.read_message(b'p').await?;
        let mut b = &body[..];
        let mech = message::take_cstr(&mut b).unwrap_or_default();
        if mech != b"SCRAM-SHA-256" || b.len() < 4 {
            conn.fatal(
                "28000",
                "unsupported SASL mechanism: sqlmux offers SCRAM-SHA-256",
                None,
            )
            .await;
            return Err(Rejected);
        }
        let data = &b[4..];
        let mut scram = ScramServer::new(verifier.clone());
        let first = match scram.client_first(data) {
            Ok(f) => f,
            Err(e) => {
                conn.fatal("08P01", &format!("invalid SCRAM message: {e}"), None)
                    .await;
                return Err(Rejected);
            }
        };
        message::auth_sasl_continue(&mut conn.out, &first);
        conn.flush().await?;
        let body = conn.read_message(b'p').await?;
        match scram.client_final(&body) {
            Ok((final_msg, client_key)) => {
                message::auth_sasl_final(&mut conn.out, &final_msg);
                user.learn_scram_keys(ScramKeys {
                    client_key,
                    server_key: verifier.server_key,
                });
                Ok(())
            }
            Err(ScramError::BadProof) => {
                conn.fatal("28P01", &failed_msg, None).await;
                Err(Rejected)
            }
            Err(e) => {
                conn.fatal("08P01", &format!("invalid SCRAM message: {e}"), None)
                    .await;
                Err(Rejected)
            }
        }
    } else if let Some(stored) = user.md5() {
        let mut salt = [0u8; 4];
        let _ = SystemRandom::new().fill(&mut salt);
        message::auth_md5(&mut conn.out, salt);
        conn.flush().await?;
        let body = conn.read_message(b'p').await?;
        let resp = body.strip_suffix(&[0]).unwrap_or(&body);
        if md5_matches(stored, salt, resp) {
            Ok(())
        } else {
            conn.fatal("28P01", &failed_msg, None).await;
            Err(Rejected)
        }
    } else {
        conn.fatal(
            "28P01",
            &format!("password authentication failed for user \"{}\": no password is configured for this user in sqlmux", user.name),
            Some("set a password in its [[users]] entry, or use postgres.auth = \"trust\""),
        )
        .await;
        Err(Rejected)
    }
}
