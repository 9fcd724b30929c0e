//! The MySQL / MariaDB front end: client login and the session that
//! forwards transactions.
//!
//! Login, in order: sqlmux's greeting (a fresh scramble, the connection id
//! that `KILL QUERY n` and CONNECTION_ID()-based cancels use, the
//! capability flags sqlmux implements), the client's SSL request and TLS
//! handshake when TLS is configured, its HandshakeResponse41, the admission
//! checks shared with PostgreSQL, client authentication ([`auth`]), the
//! pool for (database, user, capability profile) ([`pools`]), and OK.
//!
//! Files: [`conn`] packet I/O during login, [`auth`] client proofs,
//! [`server`] / [`server_login`] server connections, [`pools`] pool keys,
//! [`session`] the command loop, [`pump`] the forwarding path,
//! [`commands`] what is answered locally, [`session_state`] state that
//! follows the client, [`analysis`] fingerprints and pins, [`kill`] KILL
//! QUERY, [`reply`] packets sqlmux writes itself.

pub mod analysis;
pub mod auth;
pub mod commands;
pub mod conn;
pub mod kill;
pub mod pools;
pub mod prepared;
pub mod pump;
pub mod reply;
pub mod server;
pub mod server_login;
pub mod session;
pub mod session_state;
pub mod statements;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use sqlmux_protocol::mysql::auth::generate_scramble;
use sqlmux_protocol::mysql::caps::{
    CLIENT_COMPRESS, CLIENT_PROTOCOL_41, CLIENT_SSL, CLIENT_ZSTD_COMPRESSION_ALGORITHM,
    MARIADB_MASKED, PoolCaps, offer_to_client,
};
use sqlmux_protocol::mysql::handshake::{
    HandshakeResponse, InitialHandshake, MYSQL_NATIVE_PASSWORD, SslRequest,
};

use crate::Shared;
use crate::client::{ClientInfo, ClientState, Registration, Signals};
use crate::config::{ClientTlsMode, Config, Protocol};
use crate::io::Stream;
use crate::listener::Accepted;
use crate::pool::unix_us;
use crate::session::{Core, Refusal, admission, auth_delay};
use conn::PacketConn;
use pools::{Profile, pool_for, server_credentials};
use session::{INITIAL_STATUS, Session};
use session_state::SessionVars;

/// Version announced to clients: a MariaDB 10.11 server (the `5.5.5-`
/// prefix is how MariaDB announces itself to old clients).
pub const SERVER_VERSION: &str = "5.5.5-10.11.0-MariaDB-sqlmux";
/// Capability flags of a MariaDB 10.11 server, before sqlmux's mask.
const SERVER_CAPS: u32 = 0x81ff_f7fe;
/// MariaDB extended flags of a MariaDB 10.11 server, before sqlmux's mask.
const SERVER_MARIADB_CAPS: u32 = 0x1d;
/// utf8mb4_general_ci, the collation announced in the greeting.
const DEFAULT_COLLATION: u8 = 45;
/// Longest packet accepted during login.
const MAX_LOGIN_PACKET: usize = 64 * 1024;

/// A login failure already reported to the client.
struct Rejected;

/// Serves one accepted MySQL client connection until it closes.
pub async fn handle_client(shared: Arc<Shared>, accepted: Accepted) {
    let peer = accepted.peer;
    let Some((mut session, registration)) = Box::pin(log_in(&shared, accepted)).await else {
        return;
    };
    let info = session.core.info.clone();
    let span = tracing::debug_span!("client", client.addr = %peer, database = %session.core.entry.db.name, user = %info.user());
    let served = async move {
        tracing::debug!("client logged in");
        let signals = info.signals.wait(Signals::KILL | Signals::HARD);
        let refusal = tokio::select! {
            biased;
            _ = session.run() => None,
            bits = signals => Some(if bits & Signals::HARD != 0 {
                Refusal::ShutdownTimeout
            } else {
                Refusal::AdminKill
            }),
        };
        if let Some(r) = refusal {
            session.send_refusal(0, &r).await;
            session.core.end(true);
        }
        session.core.pool.clients.fetch_sub(1, Ordering::Relaxed);
        tracing::debug!("client disconnected");
        drop(registration);
    };
    tracing::Instrument::instrument(served, span).await;
}

/// Everything before the session. None when the connection ended (errors
/// already reported).
async fn log_in(shared: &Arc<Shared>, accepted: Accepted) -> Option<(Box<Session>, Registration)> {
    let Accepted {
        stream,
        peer,
        local,
    } = accepted;
    let id = connection_id(shared);
    let info = Arc::new(ClientInfo::new(
        Protocol::Mysql,
        peer,
        local,
        (id as i32, kill::KEY_TAG),
    ));
    let registration = shared.clients.register(info.clone());
    if shared.hard.is_cancelled() {
        info.signals.raise(Signals::DRAIN | Signals::HARD);
    } else if shared.drain.is_cancelled() {
        info.signals.raise(Signals::DRAIN);
    }
    let limit = shared.config.load().general.client_login_timeout;
    let deadline = tokio::time::Instant::now() + limit;
    let conn = PacketConn::new(stream);
    let greeted = tokio::select! {
        r = Box::pin(greet(shared, conn, &info, id, deadline)) => r,
        _ = info.signals.wait(Signals::KILL | Signals::HARD) => return None,
    };
    let Ok(mut greeted) = greeted else {
        return None;
    };
    let login = tokio::select! {
        r = tokio::time::timeout_at(deadline, Box::pin(login(shared, &mut greeted, &info))) => r,
        _ = info.signals.wait(Signals::KILL | Signals::HARD) => return None,
    };
    let (core, my, caps, vars) = match login {
        Ok(Ok(v)) => v,
        Ok(Err(Rejected)) => return None,
        Err(_) => {
            let seq = greeted.seq.wrapping_add(1);
            reply::refusal(&mut greeted.conn.out, seq, &Refusal::LoginTimeout { limit });
            let _ = greeted.conn.flush().await;
            return None;
        }
    };
    // Its own allocation, so the task's future stays small (see
    // [`crate::postgres::handle_client`]).
    Some((
        Box::new(Session::new(core, my, greeted.conn, caps, vars)),
        registration,
    ))
}

/// A random connection id not used by another MySQL client here (never
/// 0, at most 2^31 - 1). Random rather than counted so that the replicas
/// behind one Service seldom hand out the same id (see [`kill`]).
fn connection_id(shared: &Shared) -> u32 {
    loop {
        let b = crate::postgres::random_8();
        let id = u32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]]);
        if id != 0 && !shared.clients.key_in_use((id as i32, kill::KEY_TAG)) {
            return id;
        }
    }
}

/// What the login hands to the session.
type LoginResult = (
    Core<Box<server::MyServer>>,
    Arc<pools::MyPool>,
    (u32, u32),
    SessionVars,
);

/// A client that received the greeting and sent its handshake response.
struct Greeted {
    conn: PacketConn,
    scramble: [u8; 20],
    /// Flags offered in the greeting.
    caps: u32,
    /// MariaDB extended flags offered.
    mariadb_caps: u32,
    /// Sequence id of the handshake response.
    seq: u8,
    /// The handshake response.
    payload: bytes::BytesMut,
}

/// Sends the greeting, runs TLS if the client asks, reads the response,
/// all before `deadline` (`general.client_login_timeout`).
async fn greet(
    shared: &Arc<Shared>,
    mut conn: PacketConn,
    info: &ClientInfo,
    id: u32,
    deadline: tokio::time::Instant,
) -> Result<Greeted, Rejected> {
    let cfg = shared.config.load();
    let scramble = generate_scramble();
    // No TLS over a Unix socket: the greeting does not offer it.
    let tls = (**shared.mysql_tls.load())
        .clone()
        .filter(|_| !conn.stream.is_unix());
    let caps = offer_to_client(SERVER_CAPS) | if tls.is_some() { CLIENT_SSL } else { 0 };
    let hello = InitialHandshake {
        server_version: SERVER_VERSION.to_owned(),
        connection_id: id,
        scramble: scramble.to_vec(),
        capabilities: caps,
        mariadb_capabilities: SERVER_MARIADB_CAPS & !MARIADB_MASKED,
        collation: DEFAULT_COLLATION,
        status: INITIAL_STATUS,
        auth_plugin: cfg.mysql.auth.plugin().to_owned(),
    };
    hello.encode(&mut conn.out, 0);
    let limit = cfg.general.client_login_timeout;
    match tokio::time::timeout_at(deadline, conn.flush()).await {
        Ok(Ok(())) => {}
        _ => return Err(Rejected),
    }
    let first = tokio::time::timeout_at(deadline, conn.read_first_packet(MAX_LOGIN_PACKET)).await;
    let (mut seq, mut payload) = login_packet(&mut conn, first, limit, 1).await?;
    if SslRequest::decode(&payload).is_some() {
        if tls.is_none() {
            let what = "SSL request, but TLS is not configured (no CLIENT_SSL in the greeting)";
            let r = Refusal::ProtocolViolation { what: what.into() };
            return reject(&mut conn, seq.wrapping_add(1), r).await;
        }
        conn = tokio::time::timeout_at(deadline, start_tls(conn, tls, info))
            .await
            .map_err(|_| Rejected)??;
        let next = tokio::time::timeout_at(deadline, conn.read_packet(MAX_LOGIN_PACKET)).await;
        (seq, payload) = login_packet(&mut conn, next, limit, seq.wrapping_add(1)).await?;
    }
    Ok(Greeted {
        conn,
        scramble,
        caps,
        mariadb_caps: hello.mariadb_capabilities,
        seq,
        payload,
    })
}

/// Authentication, admission, pool.
async fn login(
    shared: &Arc<Shared>,
    g: &mut Greeted,
    info: &Arc<ClientInfo>,
) -> Result<LoginResult, Rejected> {
    let cfg = shared.config.load_full();
    let offered_plugin = cfg.mysql.auth.plugin();
    let conn = &mut g.conn;
    let caps = g.caps;
    let scramble = g.scramble;
    let payload = std::mem::take(&mut g.payload);
    let seq = g.seq;
    let next = seq.wrapping_add(1);
    let resp = match HandshakeResponse::decode(&payload) {
        Ok(r) => r,
        Err(e) => {
            return reject(
                conn,
                next,
                Refusal::ProtocolViolation {
                    what: e.to_string(),
                },
            )
            .await;
        }
    };
    if resp.head.capabilities & CLIENT_PROTOCOL_41 == 0 {
        let r = Refusal::ProtocolViolation {
            what: "the client does not speak protocol 4.1".into(),
        };
        return reject(conn, next, r).await;
    }
    if resp.head.capabilities & (CLIENT_COMPRESS | CLIENT_ZSTD_COMPRESSION_ALGORITHM) != 0 {
        // Not offered in the greeting; a client that compresses anyway
        // would wait forever for compressed answers.
        let r = Refusal::NotSupported {
            what: "protocol compression",
            hint: "connect without compression (sqlmux does not offer CLIENT_COMPRESS)",
        };
        return reject(conn, next, r).await;
    }
    if !conn.stream.is_tls() && !conn.stream.is_unix() && requires_tls(&cfg) {
        return reject(
            conn,
            next,
            Refusal::TlsRequired {
                setting: "mysql.tls.mode",
            },
        )
        .await;
    }
    let client_caps = resp.head.capabilities & (caps | CLIENT_SSL);
    let mariadb_caps = resp.head.mariadb_capabilities & g.mariadb_caps;
    let user = resp.user.to_owned();
    let database = resp.database.map(str::to_owned).filter(|d| !d.is_empty());
    *info.user.lock().unwrap_or_else(|e| e.into_inner()) = user.clone();
    if let Some(app) = resp
        .attributes()
        .find(|(k, _)| *k == b"program_name")
        .map(|(_, v)| v)
    {
        *info
            .application_name
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = String::from_utf8_lossy(app).into_owned();
    }
    let name = database.unwrap_or_else(|| default_database(&cfg));
    *info.database.lock().unwrap_or_else(|e| e.into_inner()) = name.clone();
    let db = match admission::admit(shared, &cfg, Protocol::Mysql, &name) {
        Ok(db) => db.into_owned(),
        Err(r) => return reject(conn, next, r).await,
    };
    let users = shared.users.load_full();
    let Some(auth_user) = users.get(&user).cloned() else {
        auth_delay::delay_failure(shared, info.addr.ip(), &user).await;
        return reject(conn, next, Refusal::UnknownUser { user }).await;
    };
    let plugin = resp.auth_plugin.unwrap_or(MYSQL_NATIVE_PASSWORD).to_owned();
    let response = resp.auth_response.to_vec();
    let collation = resp.head.collation;
    let mut ex = auth::Exchange {
        conn,
        scramble: &scramble,
        seq: next,
        offered: offered_plugin,
        tls: false,
        trust: shared.config.load().mysql.trust,
    };
    ex.tls = ex.conn.stream.is_tls();
    let proof = match ex.run(&auth_user, &plugin, &response).await {
        Ok(p) => p,
        Err(r) => {
            if auth_delay::is_failed_login(&r) {
                auth_delay::delay_failure(shared, info.addr.ip(), &user).await;
            }
            let seq = ex.seq;
            return reject(ex.conn, seq, r).await;
        }
    };
    shared.auth_delay.succeeded(info.addr.ip());
    let seq = ex.seq;
    if let Err(r) = admission::check_database_limit(shared, &db) {
        return reject(conn, seq, r).await;
    }
    let profile = Profile {
        caps: PoolCaps::of_client(client_caps, mariadb_caps),
        collation,
    };
    let creds = server_credentials(&db, &users, &user);
    let (entry, my) = pool_for(&shared.pools, &cfg, &shared.insight, &db, creds, profile);
    match proof {
        auth::Proof::Native(k) => my.credentials.learn_native(k),
        auth::Proof::Sha2(k) => my.credentials.learn_sha2(k),
    }
    my.pool.stats.add(crate::stats::Stat::ClientLogins, 1);
    my.pool.clients.fetch_add(1, Ordering::Relaxed);
    reply::ok(&mut conn.out, seq, INITIAL_STATUS, client_caps);
    conn.flush().await.map_err(|_| Rejected)?;
    info.set_state(ClientState::Idle, unix_us(std::time::SystemTime::now()));
    let vars = SessionVars {
        vars: Default::default(),
        schema: Some(db.dbname.as_str().into()),
    };
    let core = Core::new(shared.clone(), info.clone(), entry, my.pool.clone(), rebind);
    Ok((core, my, (client_caps, mariadb_caps), vars))
}

/// A registry entry and the MySQL pool in it.
type Rebound = (
    Arc<crate::pool::registry::PoolEntry>,
    Arc<crate::pool::Pool<Box<server::MyServer>>>,
);

/// Finds the pool that replaced a retired one after RELOAD.
fn rebind(
    shared: &Shared,
    db: &crate::config::DatabaseConfig,
    info: &ClientInfo,
) -> Option<Rebound> {
    let old = shared
        .pools
        .all()
        .into_iter()
        .find(|e| e.protocol == Protocol::Mysql && e.db.name == db.name)?;
    let crate::pool::registry::AnyPool::Mysql(my) = &old.pool else {
        return None;
    };
    let profile = Profile {
        caps: my.profile,
        collation: my.collation,
    };
    let cfg = shared.config.load();
    let users = shared.users.load();
    let creds = server_credentials(db, &users, &info.user());
    let (entry, my) = pool_for(&shared.pools, &cfg, &shared.insight, db, creds, profile);
    Some((entry, my.pool.clone()))
}

/// A login packet read before the deadline, or the ERR that ends the
/// login: a packet over [`MAX_LOGIN_PACKET`] (refused from its header,
/// before its payload is read) or bytes that are not packets get a
/// protocol error, a client that stays silent a login timeout. `seq` is
/// the sequence id the client's packet should carry.
async fn login_packet(
    conn: &mut PacketConn,
    read: Result<Result<(u8, bytes::BytesMut), conn::ReadError>, tokio::time::error::Elapsed>,
    limit: std::time::Duration,
    seq: u8,
) -> Result<(u8, bytes::BytesMut), Rejected> {
    match read {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(conn::ReadError::Packet(e))) => {
            let what = format!("invalid login packet: {e}");
            let r = Refusal::ProtocolViolation { what };
            reject(conn, seq.wrapping_add(1), r).await
        }
        Ok(Err(_)) => Err(Rejected),
        Err(_) => reject(conn, seq, Refusal::LoginTimeout { limit }).await,
    }
}

/// Sends a refusal during login and ends it.
async fn reject<T>(conn: &mut PacketConn, seq: u8, r: Refusal) -> Result<T, Rejected> {
    tracing::debug!(code = r.mysql_code(), reason = %r.message(), "MySQL login refused");
    reply::refusal(&mut conn.out, seq, &r);
    let _ = conn.flush().await;
    Err(Rejected)
}

/// Upgrades the client connection after its SSL request.
async fn start_tls(
    conn: PacketConn,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    info: &ClientInfo,
) -> Result<PacketConn, Rejected> {
    // Bytes after the SSL request, before the handshake, could be
    // injected by a man in the middle.
    let (Some(acceptor), true) = (acceptor, conn.buf.is_empty()) else {
        return Err(Rejected);
    };
    let Stream::Plain(tcp) = conn.stream else {
        return Err(Rejected);
    };
    let tls = acceptor.accept(tcp).await.map_err(|e| {
        tracing::debug!(error = %e, "TLS handshake failed");
        Rejected
    })?;
    let conn = PacketConn::new(Stream::TlsServer(Box::new(tls)));
    *info.tls.lock().unwrap_or_else(|e| e.into_inner()) = conn.stream.tls_description();
    Ok(conn)
}

/// True when `mysql.tls.mode = "require"`.
fn requires_tls(cfg: &Config) -> bool {
    cfg.mysql
        .tls
        .as_ref()
        .is_some_and(|t| t.mode == ClientTlsMode::Require)
}

/// The database of a client that named none: the only MySQL database
/// entry, if there is exactly one.
fn default_database(cfg: &Config) -> String {
    let mut it = cfg
        .databases
        .iter()
        .filter(|d| d.protocol == Protocol::Mysql);
    match (it.next(), it.next()) {
        (Some(d), None) if d.name != "*" => d.name.clone(),
        _ => String::new(),
    }
}
