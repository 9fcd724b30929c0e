//! Server connections: open, log in, and the state a pooled PostgreSQL
//! connection carries between leases.
//!
//! A [`PgServer`] owns its socket and its read buffer (so bytes that arrive
//! after a transaction ends stay with the server, not with the client that
//! just used it), the parameters the server reported, its cancel key, and
//! its protocol state: the requests still owed an answer, the transaction
//! status of the last ReadyForQuery, and whether its state is known at
//! all. From that state alone it answers [`PooledServer::is_clean`] when a
//! lease ends.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use sqlmux_protocol::postgres::auth::{ScramClient, ScramCredentials, md5_salted};
use sqlmux_protocol::postgres::frame::{self, HEADER_LEN};
use sqlmux_protocol::postgres::message::{self, AuthRequest};
use tokio::net::TcpStream;

use crate::addr::{PeerAddr, ServerSocket};
use crate::auth::AuthUser;
use crate::config::Protocol;
use crate::config::Secret;
use crate::io::{IdleRead, Stream};
use crate::pool::{ConnectError, ConnectFuture, Connector, PooledServer, ResetFuture, ServerInfo};
use crate::postgres::params::ServerParams;
use crate::postgres::tracker::Tracker;

/// A logged-in PostgreSQL server connection.
pub struct PgServer {
    /// The socket.
    pub stream: Stream,
    /// Bytes read from the server and not yet processed.
    pub buf: BytesMut,
    /// Reported parameters and applied settings.
    pub params: ServerParams,
    /// BackendKeyData: process id and secret, for cancel requests.
    pub cancel_pid: i32,
    /// BackendKeyData secret.
    pub cancel_secret: Vec<u8>,
    /// Named statements prepared on this server by sqlmux.
    pub prepared: crate::postgres::prepared::ServerStatements,
    /// Requests sent and not yet answered.
    pub q: Tracker,
    /// Status byte of the last ReadyForQuery (`I`, `T` or `E`).
    pub txn_status: u8,
    /// Bytes of a server message still to be streamed to the client.
    pub skip: usize,
    /// State unknown (protocol desync, a request cut short): close it.
    pub dirty: bool,
    /// The server sent a FATAL error and is closing.
    pub fatal: bool,
    /// Holds session state of the client that had it (pinned or session
    /// mode): reset with DISCARD ALL before another client gets it.
    pub carries_session_state: bool,
    info: Arc<ServerInfo>,
}

impl std::fmt::Debug for PgServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgServer")
            .field("id", &self.info.id)
            .field("pid", &self.cancel_pid)
            .finish()
    }
}

impl PooledServer for PgServer {
    fn info(&self) -> &Arc<ServerInfo> {
        &self.info
    }

    fn is_usable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return self.absorb_idle_messages();
        }
        // Room for a notice or parameter change sent while idle, read
        // straight into the buffer (nothing to zero or copy).
        self.buf.reserve(4096);
        match self.stream.idle_check(&mut self.buf) {
            IdleRead::Quiet => true,
            IdleRead::Closed => false,
            // Encrypted bytes cannot be inspected here.
            IdleRead::Data(_) if self.stream.is_tls() => false,
            IdleRead::Data(_) => self.absorb_idle_messages(),
        }
    }

    fn is_clean(&self) -> bool {
        !self.dirty
            && !self.fatal
            && self.q.is_empty()
            && !self.q.copy_in
            && self.txn_status == b'I'
            && self.skip == 0
    }

    fn needs_reset(&self) -> bool {
        self.carries_session_state
    }

    fn reset(&mut self) -> ResetFuture<'_> {
        Box::pin(self.discard_all())
    }
}

impl PgServer {
    /// Publishes the statement cache size (SHOW SERVERS, /metrics).
    pub fn publish_statement_count(&self) {
        self.info
            .prepared_statements
            .store(self.prepared.len(), std::sync::atomic::Ordering::Relaxed);
    }

    /// A command completed on this server: keeps sqlmux's picture of the
    /// server equal to the server. `DISCARD ALL` and `DEALLOCATE ALL` drop
    /// every prepared statement, whoever sent them.
    pub fn command_completed(&mut self, tag: &[u8]) {
        if tag.starts_with(b"DISCARD ALL") || tag.starts_with(b"DEALLOCATE ALL") {
            self.prepared.clear();
            self.publish_statement_count();
        }
        if tag.starts_with(b"DISCARD ALL") {
            // Unreported settings are back to their defaults (DISCARD ALL
            // cannot run inside a transaction, so this is final); reported
            // ones arrive as ParameterStatus.
            if !self.params.settings.is_empty() {
                self.params.settings.clear();
                self.params.version += 1;
            }
        }
    }

    /// Handles what a server sent while idle in the pool: parameter changes
    /// are recorded, notices dropped; an error (e.g. the server is shutting
    /// down) or anything else makes the server unusable.
    fn absorb_idle_messages(&mut self) -> bool {
        loop {
            match frame::complete_frame(&self.buf, 1 << 20) {
                Ok(Some((h, body))) => {
                    match h.tag {
                        b'S' => {
                            if let Some((k, v)) = message::decode_parameter_status(body) {
                                let (k, v) = (k.to_owned(), v.to_owned());
                                self.params.reported(&k, &v);
                            }
                        }
                        b'N' => {}
                        _ => return false,
                    }
                    let _ = self.buf.split_to(h.frame_len());
                }
                Ok(None) => return self.buf.is_empty(),
                Err(_) => return false,
            }
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Say goodbye so the server logs a clean disconnect; best effort.
        self.stream.try_write_plain(&[b'X', 0, 0, 0, 4]);
    }
}

/// How sqlmux proves itself to the server.
#[derive(Clone)]
pub enum ServerLogin {
    /// The `[[databases]]` entry's user and password.
    Configured {
        /// Server user.
        user: String,
        /// Its password, if any.
        password: Option<Secret>,
    },
    /// The client's own user and secret from `[[users]]`.
    ClientUser(Arc<AuthUser>),
}

impl ServerLogin {
    /// The user name sent in the startup packet.
    pub fn user(&self) -> &str {
        match self {
            ServerLogin::Configured { user, .. } => user,
            ServerLogin::ClientUser(u) => &u.name,
        }
    }
}

/// Opens PostgreSQL server connections for one pool.
pub struct PgConnector {
    /// Server host name or address.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Database name on the server.
    pub dbname: String,
    /// Credentials.
    pub login: ServerLogin,
    /// Limit for connect + login.
    pub timeout: Duration,
    /// TLS towards the server (Ok(None) = plain; Err = the TLS settings
    /// could not be loaded, so no connection is attempted).
    pub tls: Result<Option<tokio_rustls::TlsConnector>, String>,
    /// The configured TLS mode.
    pub tls_mode: crate::tls::ServerTlsMode,
}

impl Connector<Box<PgServer>> for PgConnector {
    fn connect(&self, info: Arc<ServerInfo>) -> ConnectFuture<Box<PgServer>> {
        let host = self.host.clone();
        let port = self.port;
        let dbname = self.dbname.clone();
        let login = self.login.clone();
        let timeout = self.timeout;
        let tls = self.tls.clone().map(|c| c.map(|c| (c, self.tls_mode)));
        Box::pin(async move {
            let target = crate::addr::server_target(Protocol::Postgres, &host, port);
            let tls = tls.map_err(|e| ConnectError {
                sqlstate: "08006",
                message: format!(
                    "cannot connect to server {target}: server TLS settings unusable: {e}"
                ),
            })?;
            match tokio::time::timeout(timeout, connect(&host, port, &dbname, &login, tls, info))
                .await
            {
                Ok(r) => r.map(Box::new),
                Err(_) => Err(ConnectError {
                    sqlstate: "08006",
                    message: format!(
                        "could not connect to server {target}: no answer within {} ms (general.server_connect_timeout)",
                        timeout.as_millis()
                    ),
                }),
            }
        })
    }
}

impl PgConnector {
    /// Opens one connection outside any pool (auth_query lookups).
    pub async fn connect_once(&self) -> Result<PgServer, ConnectError> {
        Connector::connect(self, ServerInfo::detached())
            .await
            .map(|b| *b)
    }
}

fn connect_error(target: &str, what: impl std::fmt::Display) -> ConnectError {
    ConnectError {
        sqlstate: "08006",
        message: format!("could not connect to server {target}: {what}"),
    }
}

async fn connect(
    host: &str,
    port: u16,
    dbname: &str,
    login: &ServerLogin,
    tls: Option<(tokio_rustls::TlsConnector, crate::tls::ServerTlsMode)>,
    info: Arc<ServerInfo>,
) -> Result<PgServer, ConnectError> {
    let target = crate::addr::server_target(Protocol::Postgres, host, port);
    let socket = crate::addr::connect_server(Protocol::Postgres, host, port, &info)
        .await
        .map_err(|e| connect_error(&target, e))?;
    // Like libpq, no TLS over a Unix socket whatever server_tls.mode says.
    let mut stream = match (socket, tls) {
        (ServerSocket::Unix(s), _) => Stream::Unix(s),
        (ServerSocket::Tcp(tcp), None) => Stream::Plain(tcp),
        (ServerSocket::Tcp(tcp), Some((connector, mode))) => {
            negotiate_tls(tcp, host, &target, connector, mode).await?
        }
    };
    *info.tls.lock().unwrap_or_else(|e| e.into_inner()) = stream.tls_description();

    let user = login.user();
    let mut out = BytesMut::with_capacity(256);
    message::startup(&mut out, &[("user", user), ("database", dbname)]);
    stream
        .write_all_clear(&mut out)
        .await
        .map_err(|e| connect_error(&target, e))?;

    let mut buf = BytesMut::with_capacity(crate::io::BUF_CAPACITY);
    let mut scram: Option<ScramClient> = None;
    let mut params = ServerParams::default();
    let mut cancel_pid = 0;
    let mut cancel_secret = Vec::new();
    let login_failed = |code: &str, msg: &str| ConnectError {
        // The server's own reason where clients act on it, else a
        // connection failure.
        sqlstate: match code {
            "28P01" => "28P01",
            "28000" => "28000",
            "3D000" => "3D000",
            "53300" => "53300",
            "57P03" => "57P03",
            "42501" => "42501",
            _ => "08006",
        },
        message: format!(
            "server login as user \"{user}\" to database \"{dbname}\" at {target} failed: {msg} (SQLSTATE {code})"
        ),
    };
    loop {
        let (tag, body) = loop {
            match frame::complete_frame(&buf, 1 << 20) {
                Ok(Some((h, body))) => break (h.tag, body.to_vec()),
                Ok(None) => {}
                Err(e) => return Err(connect_error(&target, e)),
            }
            let n = stream
                .read_buf(&mut buf)
                .await
                .map_err(|e| connect_error(&target, e))?;
            if n == 0 {
                return Err(connect_error(
                    &target,
                    "the server closed the connection during login",
                ));
            }
        };
        let frame_len = HEADER_LEN + body.len();
        let _ = buf.split_to(frame_len);
        match tag {
            b'R' => {
                let req = message::decode_auth_request(&body)
                    .ok_or_else(|| connect_error(&target, "malformed authentication request"))?;
                match req {
                    AuthRequest::Ok => {}
                    AuthRequest::Cleartext => {
                        let pw = plain_password(login).ok_or_else(|| {
                            login_failed("28P01", "the server asks for a cleartext password but sqlmux only has a hash for this user; configure a plain password")
                        })?;
                        message::password(&mut out, pw.as_bytes());
                    }
                    AuthRequest::Md5(salt) => {
                        let hash = md5_hash_for(login).ok_or_else(|| {
                            login_failed("28P01", "the server asks for md5 but sqlmux has neither the password nor its md5 hash for this user")
                        })?;
                        message::password(&mut out, md5_salted(&hash, salt).as_bytes());
                    }
                    AuthRequest::Sasl(mechs) => {
                        if !mechs.contains(&"SCRAM-SHA-256") {
                            return Err(login_failed(
                                "28000",
                                &format!(
                                    "the server offers only {mechs:?}; sqlmux supports SCRAM-SHA-256"
                                ),
                            ));
                        }
                        let creds = scram_credentials(login).ok_or_else(|| {
                            login_failed("28P01", "the server requires SCRAM but sqlmux has no password for this user and has not yet seen the user log in with SCRAM; configure a plain password or a SCRAM verifier and let the client log in first")
                        })?;
                        let client = ScramClient::new(creds);
                        message::sasl_initial_response(
                            &mut out,
                            "SCRAM-SHA-256",
                            &client.client_first(),
                        );
                        scram = Some(client);
                    }
                    AuthRequest::SaslContinue(data) => {
                        let client = scram
                            .as_mut()
                            .ok_or_else(|| connect_error(&target, "unexpected SASL continue"))?;
                        let reply = client
                            .server_first(data)
                            .map_err(|e| login_failed("28P01", &e.to_string()))?;
                        message::sasl_response(&mut out, &reply);
                    }
                    AuthRequest::SaslFinal(data) => {
                        let client = scram
                            .as_ref()
                            .ok_or_else(|| connect_error(&target, "unexpected SASL final"))?;
                        client
                            .server_final(data)
                            .map_err(|e| login_failed("28P01", &e.to_string()))?;
                    }
                    AuthRequest::Other(code) => {
                        return Err(login_failed(
                            "28000",
                            &format!("authentication method {code} is not supported by sqlmux"),
                        ));
                    }
                }
                if !out.is_empty() {
                    stream
                        .write_all_clear(&mut out)
                        .await
                        .map_err(|e| connect_error(&target, e))?;
                }
            }
            b'S' => {
                if let Some((k, v)) = message::decode_parameter_status(&body) {
                    params.defaults.set(k, v);
                    params.reported(k, v);
                }
            }
            b'K' => {
                let (pid, secret) = message::decode_backend_key_data(&body)
                    .ok_or_else(|| connect_error(&target, "malformed BackendKeyData"))?;
                cancel_pid = pid;
                cancel_secret = secret.to_vec();
            }
            b'N' | b'v' => {}
            b'E' => {
                let f = message::decode_error_fields(&body).unwrap_or_default();
                return Err(login_failed(f.code, f.message));
            }
            b'Z' => break,
            other => {
                return Err(connect_error(
                    &target,
                    format!("unexpected message {:?} during login", other as char),
                ));
            }
        }
    }
    info.remote_pid
        .store(i64::from(cancel_pid), std::sync::atomic::Ordering::Relaxed);
    *info.cancel_token.lock().unwrap_or_else(|e| e.into_inner()) = cancel_secret.clone();
    Ok(PgServer {
        stream,
        buf,
        params,
        cancel_pid,
        cancel_secret,
        prepared: Default::default(),
        q: Tracker::default(),
        txn_status: b'I',
        skip: 0,
        dirty: false,
        fatal: false,
        carries_session_state: false,
        info,
    })
}

/// Sends SSLRequest and upgrades when the server agrees.
async fn negotiate_tls(
    mut tcp: TcpStream,
    host: &str,
    target: &str,
    connector: tokio_rustls::TlsConnector,
    mode: crate::tls::ServerTlsMode,
) -> Result<Stream, ConnectError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut req = BytesMut::with_capacity(8);
    message::ssl_request(&mut req);
    tcp.write_all(&req)
        .await
        .map_err(|e| connect_error(target, e))?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer)
        .await
        .map_err(|e| connect_error(target, e))?;
    match answer[0] {
        b'S' => {
            let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| {
                connect_error(target, format!("invalid TLS server name {host:?}: {e}"))
            })?;
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| ConnectError {
                    sqlstate: "08006",
                    message: format!(
                        "TLS handshake with server {target} failed (server_tls.mode = {}): {e}",
                        mode.as_str()
                    ),
                })?;
            Ok(Stream::TlsClient(Box::new(tls)))
        }
        b'N' if mode == crate::tls::ServerTlsMode::Prefer => Ok(Stream::Plain(tcp)),
        b'N' => Err(ConnectError {
            sqlstate: "08001",
            message: format!(
                "server {target} does not support TLS but server_tls.mode = {}; enable ssl on the server or use mode = \"prefer\"",
                mode.as_str()
            ),
        }),
        other => Err(connect_error(
            target,
            format!("unexpected answer {:?} to SSLRequest", other as char),
        )),
    }
}

fn plain_password(login: &ServerLogin) -> Option<String> {
    match login {
        ServerLogin::Configured { password, .. } => password
            .as_ref()
            .filter(|p| !p.0.starts_with("md5") && !p.0.starts_with("SCRAM-SHA-256$"))
            .map(|p| p.0.clone()),
        ServerLogin::ClientUser(u) => u.plain().map(str::to_owned),
    }
}

fn md5_hash_for(login: &ServerLogin) -> Option<String> {
    match login {
        ServerLogin::Configured { user, password } => {
            let p = &password.as_ref()?.0;
            if crate::auth::is_md5_hash(p) {
                Some(p.clone())
            } else if p.starts_with("SCRAM-SHA-256$") {
                None
            } else {
                Some(sqlmux_protocol::postgres::auth::md5_hash(user, p))
            }
        }
        ServerLogin::ClientUser(u) => u.md5().map(str::to_owned),
    }
}

fn scram_credentials(login: &ServerLogin) -> Option<ScramCredentials> {
    match login {
        ServerLogin::Configured { password, .. } => {
            let p = &password.as_ref()?.0;
            if crate::auth::is_md5_hash(p) || p.starts_with("SCRAM-SHA-256$") {
                None
            } else {
                Some(ScramCredentials::Password(p.clone()))
            }
        }
        ServerLogin::ClientUser(u) => {
            if let Some(p) = u.plain() {
                return Some(ScramCredentials::Password(p.to_owned()));
            }
            let keys = u.learned_scram_keys()?;
            Some(ScramCredentials::Keys {
                client_key: keys.client_key,
                server_key: keys.server_key,
            })
        }
    }
}

/// Sends a CancelRequest for `pid`/`secret` to the server `info` is
/// connected to (its TCP address, or its socket file).
pub async fn send_cancel(info: &ServerInfo, pid: i32, secret: &[u8]) -> std::io::Result<()> {
    let addr = *info.addr.lock().unwrap_or_else(|e| e.into_inner());
    match (addr, info.socket_path.get()) {
        (Some(PeerAddr::Tcp(a)), _) => cancel_on(TcpStream::connect(a).await?, pid, secret).await,
        (Some(PeerAddr::Unix { .. }), Some(path)) => {
            cancel_on(tokio::net::UnixStream::connect(path).await?, pid, secret).await
        }
        _ => Ok(()),
    }
}

async fn cancel_on<S>(mut tcp: S, pid: i32, secret: &[u8]) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncWriteExt;
    let mut buf = BytesMut::with_capacity(16 + secret.len());
    message::cancel_request(&mut buf, pid, secret);
    tcp.write_all(&buf).await?;
    tcp.shutdown().await?;
    // The server closes the connection when it has processed the request.
    let mut tmp = [0u8; 1];
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut tcp, &mut tmp),
    )
    .await;
    Ok(())
}
