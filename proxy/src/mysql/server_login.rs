//! Opening and logging in to MySQL servers for a pool: TCP, optional TLS
//! through the SSL request, the handshake with the capability flags of the
//! pool's clients, mysql_native_password or caching_sha2_password (fast
//! path; full authentication with a configured password over TLS), then
//! session tracking on.
//!
//! Credentials are the database entry's user and password, or the client's
//! own: a plain `[[users]]` password, or the key recovered from the
//! client's proof at its login ([`Credentials::learn_native`]) when only
//! the `*HEX` hash is configured. Passwords never reach a log.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use sqlmux_protocol::mysql::auth::{NativeKey, Sha2Key, encode_cleartext_password};
use sqlmux_protocol::mysql::caps::{CLIENT_CONNECT_WITH_DB, CLIENT_SSL, PoolCaps};
use sqlmux_protocol::mysql::handshake::{
    AuthReply, CACHING_SHA2_FAST_AUTH_SUCCESS, CACHING_SHA2_PASSWORD,
    CACHING_SHA2_PERFORM_FULL_AUTH, HandshakeResponse, InitialHandshake, MYSQL_NATIVE_PASSWORD,
    SslRequest, put_attribute,
};
use sqlmux_protocol::mysql::response::ErrPacket;

use super::conn::PacketConn;
use super::server::MyServer;
use crate::addr::ServerSocket;
use crate::config::Protocol;
use crate::io::Stream;
use crate::pool::{ConnectError, ConnectFuture, Connector, ServerInfo};
use crate::session::refusal::sqlstate;
use crate::tls::ServerTlsMode;

/// Longest packet accepted during a server login.
const MAX_LOGIN_PACKET: usize = 64 * 1024;

/// What sqlmux proves itself with to servers of one pool.
pub struct Credentials {
    /// Server user.
    pub user: String,
    /// Plain password, when configured as one.
    pub password: Option<String>,
    learned: Mutex<(Option<NativeKey>, Option<Sha2Key>)>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Credentials from a configured password: plain, `*HEX`, or none.
    pub fn new(user: &str, password: Option<&str>) -> Credentials {
        let plain = password.filter(|p| !is_native_hash(p)).map(str::to_owned);
        Credentials {
            user: user.to_owned(),
            password: plain,
            learned: Mutex::new((None, None)),
        }
    }

    /// Remembers SHA1(password) recovered from a client's native login.
    pub fn learn_native(&self, key: NativeKey) {
        self.learned.lock().unwrap_or_else(|e| e.into_inner()).0 = Some(key);
    }

    /// Remembers SHA256(password) recovered from a client's caching_sha2 login.
    pub fn learn_sha2(&self, key: Sha2Key) {
        self.learned.lock().unwrap_or_else(|e| e.into_inner()).1 = Some(key);
    }

    fn native(&self) -> Option<NativeKey> {
        match &self.password {
            Some(p) => Some(NativeKey::from_password(p.as_bytes())),
            None => self
                .learned
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .0
                .clone(),
        }
    }

    fn sha2(&self) -> Option<Sha2Key> {
        match &self.password {
            Some(p) => Some(Sha2Key::from_password(p.as_bytes())),
            None => self
                .learned
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .1
                .clone(),
        }
    }
}

/// `*` followed by 40 hex digits (mysql.user's native hash).
pub fn is_native_hash(s: &str) -> bool {
    s.len() == 41 && s.starts_with('*') && s[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// Opens MySQL server connections for one pool.
pub struct MyConnector {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Schema to log in to.
    pub dbname: String,
    /// Who to log in as.
    pub credentials: Arc<Credentials>,
    /// Capability flags of the pool's clients.
    pub profile: PoolCaps,
    /// Collation of the pool's clients.
    pub collation: u8,
    /// Limit for connect + login.
    pub timeout: Duration,
    /// TLS towards the server (Err: unusable settings).
    pub tls: Result<Option<tokio_rustls::TlsConnector>, String>,
    /// The configured TLS mode.
    pub tls_mode: ServerTlsMode,
}

impl Connector<Box<MyServer>> for MyConnector {
    fn connect(&self, info: Arc<ServerInfo>) -> ConnectFuture<Box<MyServer>> {
        let target = crate::addr::server_target(Protocol::Mysql, &self.host, self.port);
        let timeout = self.timeout;
        let login = Login {
            host: self.host.clone(),
            port: self.port,
            target: target.clone(),
            dbname: self.dbname.clone(),
            credentials: self.credentials.clone(),
            profile: self.profile,
            collation: self.collation,
            tls: self.tls.clone(),
            tls_mode: self.tls_mode,
        };
        Box::pin(async move {
            match tokio::time::timeout(timeout, login.run(info)).await {
                Ok(r) => r.map(Box::new),
                Err(_) => Err(failure(
                    &target,
                    format!(
                        "no answer within {} ms (general.server_connect_timeout)",
                        timeout.as_millis()
                    ),
                )),
            }
        })
    }
}

fn failure(target: &str, what: impl std::fmt::Display) -> ConnectError {
    ConnectError {
        sqlstate: sqlstate::CONNECTION_FAILURE,
        message: format!("could not connect to MySQL server {target}: {what}"),
    }
}

/// One login attempt.
struct Login {
    host: String,
    port: u16,
    target: String,
    dbname: String,
    credentials: Arc<Credentials>,
    profile: PoolCaps,
    collation: u8,
    tls: Result<Option<tokio_rustls::TlsConnector>, String>,
    tls_mode: ServerTlsMode,
}

impl Login {
    async fn run(self, info: Arc<ServerInfo>) -> Result<MyServer, ConnectError> {
        let socket = crate::addr::connect_server(Protocol::Mysql, &self.host, self.port, &info)
            .await
            .map_err(|e| failure(&self.target, e))?;
        let mut conn = PacketConn::new(match socket {
            ServerSocket::Tcp(tcp) => Stream::Plain(tcp),
            ServerSocket::Unix(s) => Stream::Unix(s),
        });
        let (_, greeting) = conn
            .read_packet(MAX_LOGIN_PACKET)
            .await
            .map_err(|e| failure(&self.target, e))?;
        if greeting.first() == Some(&0xFF) {
            return Err(self.refused(&greeting));
        }
        let hello = InitialHandshake::decode(&greeting).map_err(|e| failure(&self.target, e))?;
        let (mut caps, ext) = self
            .profile
            .server_request(hello.capabilities, hello.mariadb_capabilities);
        caps |= CLIENT_CONNECT_WITH_DB;
        let head = SslRequest {
            capabilities: caps,
            max_packet: 1 << 24,
            collation: self.collation,
            mariadb_capabilities: ext,
        };
        let mut seq = 1;
        // Like the MariaDB clients, no TLS over a Unix socket.
        let connector = match conn.stream.is_unix() {
            true => None,
            false => self.tls_connector(hello.capabilities)?,
        };
        if let Some(connector) = connector {
            seq = head.encode(&mut conn.out, seq);
            conn.flush().await.map_err(|e| failure(&self.target, e))?;
            conn.stream = self.start_tls(conn.stream, connector).await?;
            caps |= CLIENT_SSL;
        }
        *info.tls.lock().unwrap_or_else(|e| e.into_inner()) = conn.stream.tls_description();
        let head = SslRequest {
            capabilities: caps,
            ..head
        };
        self.authenticate(&mut conn, head, seq, &hello).await?;
        let mut server = MyServer::new(conn, caps, hello.connection_id, info);
        server
            .enable_tracking()
            .await
            .map_err(|e| failure(&self.target, e))?;
        server.session.schema = Some(self.dbname.as_str().into());
        Ok(server)
    }

    /// The TLS connector to use, given the server's flags and the mode.
    fn tls_connector(
        &self,
        server_caps: u32,
    ) -> Result<Option<tokio_rustls::TlsConnector>, ConnectError> {
        let connector = self
            .tls
            .clone()
            .map_err(|e| failure(&self.target, format!("server TLS settings unusable: {e}")))?;
        match connector {
            None => Ok(None),
            Some(c) if server_caps & CLIENT_SSL != 0 => Ok(Some(c)),
            Some(_) if self.tls_mode == ServerTlsMode::Prefer => Ok(None),
            Some(_) => Err(ConnectError {
                sqlstate: sqlstate::CONNECTION_FAILURE,
                message: format!(
                    "MySQL server {} does not support TLS but server_tls.mode = {}; set ssl_cert/ssl_key on the server or use mode = \"prefer\"",
                    self.target,
                    self.tls_mode.as_str()
                ),
            }),
        }
    }

    async fn start_tls(
        &self,
        stream: Stream,
        connector: tokio_rustls::TlsConnector,
    ) -> Result<Stream, ConnectError> {
        let Stream::Plain(tcp) = stream else {
            return Ok(stream);
        };
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())
            .map_err(|e| failure(&self.target, format!("invalid TLS server name: {e}")))?;
        let tls = connector.connect(name, tcp).await.map_err(|e| {
            failure(
                &self.target,
                format!(
                    "TLS handshake failed (server_tls.mode = {}): {e}",
                    self.tls_mode.as_str()
                ),
            )
        })?;
        Ok(Stream::TlsClient(Box::new(tls)))
    }

    /// Sends the handshake response and follows the exchange to OK.
    async fn authenticate(
        &self,
        conn: &mut PacketConn,
        head: SslRequest,
        seq: u8,
        hello: &InitialHandshake,
    ) -> Result<(), ConnectError> {
        let mut plugin = hello.auth_plugin.clone();
        if plugin != CACHING_SHA2_PASSWORD {
            plugin = MYSQL_NATIVE_PASSWORD.to_owned();
        }
        let mut scramble = hello.scramble.clone();
        let response = self.proof(&plugin, &scramble)?;
        let mut attrs = BytesMut::new();
        put_attribute(&mut attrs, "program_name", "sqlmux");
        let r = HandshakeResponse {
            head,
            user: &self.credentials.user,
            auth_response: &response,
            database: Some(&self.dbname),
            auth_plugin: Some(&plugin),
            raw_attributes: &attrs,
        };
        r.encode(&mut conn.out, seq);
        loop {
            conn.flush().await.map_err(|e| failure(&self.target, e))?;
            let (seq, p) = conn
                .read_packet(MAX_LOGIN_PACKET)
                .await
                .map_err(|e| failure(&self.target, e))?;
            let next = seq.wrapping_add(1);
            match AuthReply::decode(&p).map_err(|e| failure(&self.target, e))? {
                AuthReply::Ok => return Ok(()),
                AuthReply::Err => return Err(self.refused(&p)),
                AuthReply::Switch(sw) => {
                    plugin = sw.plugin.to_owned();
                    scramble = sw.scramble().to_vec();
                    let proof = self.proof(&plugin, &scramble)?;
                    sqlmux_protocol::mysql::packet::write_packet(&mut conn.out, next, &proof);
                }
                AuthReply::MoreData([CACHING_SHA2_FAST_AUTH_SUCCESS]) => {}
                AuthReply::MoreData([CACHING_SHA2_PERFORM_FULL_AUTH]) => {
                    let pw = self
                        .credentials
                        .password
                        .as_deref()
                        .filter(|_| conn.stream.is_tls());
                    let Some(pw) = pw else {
                        return Err(self.login_failed(
                            "the server wants caching_sha2_password full authentication, which needs TLS to the server (server_tls) and a plain password in the configuration",
                        ));
                    };
                    encode_cleartext_password(&mut conn.out, next, pw.as_bytes());
                }
                AuthReply::MoreData(_) => {
                    return Err(self.login_failed("unexpected authentication data from the server"));
                }
            }
        }
    }

    /// The auth response for `plugin` to `scramble`.
    fn proof(&self, plugin: &str, scramble: &[u8]) -> Result<Vec<u8>, ConnectError> {
        let c = &self.credentials;
        let missing = || {
            self.login_failed(
                "sqlmux has no password for this user: configure a plain password, or let a client log in with mysql_native_password first so sqlmux learns the key",
            )
        };
        match plugin {
            MYSQL_NATIVE_PASSWORD => Ok(c.native().ok_or_else(missing)?.response(scramble)),
            CACHING_SHA2_PASSWORD => Ok(c.sha2().ok_or_else(missing)?.response(scramble)),
            other => Err(self.login_failed(&format!(
                "the server asks for auth plugin {other}; sqlmux supports mysql_native_password and caching_sha2_password"
            ))),
        }
    }

    fn login_failed(&self, why: &str) -> ConnectError {
        ConnectError {
            sqlstate: sqlstate::INVALID_AUTHORIZATION,
            message: format!(
                "server login as user \"{}\" to {} failed: {why}",
                self.credentials.user, self.target
            ),
        }
    }

    /// The server's ERR during login, with the state clients act on.
    fn refused(&self, payload: &[u8]) -> ConnectError {
        let (code, msg) = match ErrPacket::decode(payload) {
            Ok(e) => (e.code, String::from_utf8_lossy(e.message).into_owned()),
            Err(_) => (0, "malformed error packet".to_owned()),
        };
        ConnectError {
            sqlstate: match code {
                1045 => sqlstate::INVALID_PASSWORD,
                1044 | 1698 => sqlstate::INVALID_AUTHORIZATION,
                1049 => sqlstate::UNKNOWN_DATABASE,
                1040 | 1203 => sqlstate::TOO_MANY_CONNECTIONS,
                _ => sqlstate::CONNECTION_FAILURE,
            },
            message: format!(
                "server login as user \"{}\" to {} failed: {msg} (error {code})",
                self.credentials.user, self.target
            ),
        }
    }
}
