//! Configuration: the TOML schema, validation with clear errors, and the
//! resolved runtime form the rest of the proxy reads.
//!
//! The file is parsed with `deny_unknown_fields`, so a misspelt key stops
//! start-up (and RELOAD) with a message naming the key, line and column.
//! Semantic checks that serde cannot do (duplicate names, a pool smaller
//! than `min_idle`, TLS files that do not exist) name the key path and the
//! line of the offending entry.
//!
//! Passwords may be written inline or kept in files (`password_file`, e.g.
//! a mounted Kubernetes Secret), read at load time like the rest of the
//! file. `pool.share` divides every pool among the replicas of one
//! deployment, and `[peers]` (see [`crate::peers`]) names those replicas.
//!
//! The resolved [`Config`] is immutable; RELOAD builds a new one and swaps
//! it in through an `ArcSwap` (see `crate::Proxy`).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};
use thiserror::Error;

/// A configuration that could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The path given.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a bad value (the message carries the
    /// line and column).
    #[error("invalid configuration {origin}: {message}")]
    Parse {
        /// File name or "<string>".
        origin: String,
        /// toml's message with line, column and snippet.
        message: String,
    },
    /// A value that parses but makes no sense.
    #[error("invalid configuration {origin}, line {line}: {key}: {message}")]
    Invalid {
        /// File name or "<string>".
        origin: String,
        /// 1-based line of the entry, 0 when unknown.
        line: usize,
        /// Dotted key path, e.g. `databases[2].port`.
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

// ---------------------------------------------------------------------------
// Small value types

/// A duration written with units: `"5s"`, `"10m"`, `"1h 30m"`, `"250ms"`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl fmt::Debug for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let s = s.trim();
        if s == "0" {
            return Ok(Dur(Duration::ZERO));
        }
        humantime::parse_duration(s).map(Dur).map_err(|e| {
            de::Error::custom(format!(
                "invalid duration {s:?} ({e}); write a number with a unit, e.g. \"5s\", \"250ms\", \"10m\", \"1h\""
            ))
        })
    }
}

/// A password or verifier: never printed.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// How a server connection is lent to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// A server per transaction.
    Transaction,
    /// A server for the client's whole session.
    Session,
}

impl PoolMode {
    /// The name used in the config and in SHOW output.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Transaction => "transaction",
            PoolMode::Session => "session",
        }
    }
}

/// Which wire protocol a database speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// PostgreSQL.
    Postgres,
    /// MySQL / MariaDB.
    Mysql,
}

impl Protocol {
    /// The name used in the config and in SHOW output.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Postgres => "postgres",
            Protocol::Mysql => "mysql",
        }
    }
}

/// How clients must prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum AuthMethod {
    /// SCRAM-SHA-256 (md5 is used for users whose only secret is an md5 hash).
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// md5 (SCRAM is used for users whose only secret is a SCRAM verifier).
    #[serde(rename = "md5")]
    Md5,
    /// No password; the user must still be known.
    #[serde(rename = "trust")]
    Trust,
}

/// What to do with a transaction left open and idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeakAction {
    /// Report it.
    Warn,
    /// Report it, roll it back and return the server to the pool.
    Rollback,
}

impl LeakAction {
    /// The name used in the config and in SHOW output.
    pub fn as_str(self) -> &'static str {
        match self {
            LeakAction::Warn => "warn",
            LeakAction::Rollback => "rollback",
        }
    }
}

// ---------------------------------------------------------------------------
// File schema (what serde reads)

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    general: FileGeneral,
    #[serde(default)]
    admin: FileAdmin,
    #[serde(default)]
    postgres: FilePostgres,
    #[serde(default)]
    mysql: FileMysql,
    #[serde(default)]
    pool: FilePool,
    #[serde(default)]
    insight: FileInsight,
    #[serde(default)]
    peers: crate::peers::FilePeers,
    #[serde(default)]
    databases: Vec<toml::Spanned<FileDatabase>>,
    #[serde(default)]
    users: Vec<toml::Spanned<FileUser>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGeneral {
    workers: Option<usize>,
    shutdown_timeout: Option<Dur>,
    max_message_size: Option<u64>,
    server_connect_timeout: Option<Dur>,
    client_login_timeout: Option<Dur>,
    auth_failure_delay: Option<Dur>,
    stats_period: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAdmin {
    listen: Option<String>,
    users: Option<Vec<String>>,
    stats_users: Option<Vec<String>>,
    http_auth: Option<bool>,
    metrics_auth: Option<bool>,
    tls: Option<FileClientTls>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePostgres {
    listen: Option<String>,
    unix_socket_dir: Option<String>,
    auth: Option<AuthMethod>,
    tls: Option<FileClientTls>,
    auth_user: Option<String>,
    auth_query: Option<String>,
    auth_dbname: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMysql {
    listen: Option<String>,
    unix_socket: Option<String>,
    auth: Option<MysqlAuth>,
    trust: Option<bool>,
    tls: Option<FileClientTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileClientTls {
    cert: Option<String>,
    key: Option<String>,
    mode: Option<ClientTlsMode>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServerTls {
    mode: Option<crate::tls::ServerTlsMode>,
    ca: Option<String>,
}

/// Whether clients may or must use TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientTlsMode {
    /// Refuse SSLRequest.
    Disable,
    /// Accept TLS when the client asks.
    Allow,
    /// Accept TLS when the client asks (same as allow on the server side).
    Prefer,
    /// Refuse clients that do not use TLS.
    Require,
}

/// What to do when a client creates session state that cannot follow it
/// to another server (LISTEN, advisory locks, temp tables, SQL PREPARE,
/// WITH HOLD cursors, LOAD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatePolicy {
    /// Keep the server with the client until it disconnects or clears it.
    Pin,
    /// Refuse the statement with an error.
    Error,
    /// Forward it and keep pooling per transaction (the state may be lost).
    Ignore,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePool {
    mode: Option<PoolMode>,
    size: Option<usize>,
    size_per_cpu: Option<usize>,
    backend_cpus: Option<usize>,
    min_idle: Option<usize>,
    checkout_timeout: Option<Dur>,
    query_timeout: Option<Dur>,
    idle_timeout: Option<Dur>,
    max_lifetime: Option<Dur>,
    max_client_connections: Option<usize>,
    max_prepared_statements: Option<usize>,
    on_session_state: Option<SessionStatePolicy>,
    share: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileInsight {
    enabled: Option<bool>,
    max_statements: Option<usize>,
    n_plus_one: Option<FileNPlusOne>,
    leaked_transaction: Option<FileLeak>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNPlusOne {
    threshold: Option<u32>,
    window: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLeak {
    idle: Option<Dur>,
    action: Option<LeakAction>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDatabase {
    name: String,
    #[serde(default = "default_protocol")]
    protocol: Protocol,
    host: String,
    port: Option<u16>,
    dbname: Option<String>,
    user: Option<String>,
    password: Option<Secret>,
    password_file: Option<String>,
    #[serde(default)]
    pool: FilePool,
    server_tls: Option<FileServerTls>,
}

fn default_protocol() -> Protocol {
    Protocol::Postgres
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUser {
    name: String,
    password: Option<Secret>,
    password_file: Option<String>,
}

// ---------------------------------------------------------------------------
// Resolved configuration

/// Process-wide settings (`[general]`).
#[derive(Debug, Clone)]
pub struct General {
    /// Tokio worker threads; 0 in the file means half the CPUs, at least one.
    pub workers: usize,
    /// How long SIGTERM waits for open transactions before closing them.
    pub shutdown_timeout: Duration,
    /// Largest protocol message accepted from a client or server.
    pub max_message_size: u32,
    /// Limit for TCP connect plus login to a server.
    pub server_connect_timeout: Duration,
    /// A client must finish logging in within this (PgBouncer's key).
    pub client_login_timeout: Duration,
    /// Longest delay before answering a failed login; consecutive failures
    /// from one address double it up to this (0 disables).
    pub auth_failure_delay: Duration,
    /// Interval over which SHOW STATS averages are computed.
    pub stats_period: Duration,
}

/// The admin port (`[admin]`).
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// `host:port` for psql and HTTP.
    pub listen: String,
    /// Users that may run every command.
    pub users: Vec<String>,
    /// Users that may run SHOW only.
    pub stats_users: Vec<String>,
    /// Whether the web page and `/api` need HTTP basic auth from an admin
    /// or stats user.
    pub http_auth: bool,
    /// Whether `/metrics` needs it too.
    pub metrics_auth: bool,
    /// TLS on the admin port: HTTPS for the page and API, SSL for psql.
    pub tls: Option<ClientTls>,
}

/// The PostgreSQL listener (`[postgres]`).
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// `host:port` to listen on.
    pub listen: String,
    /// Directory of a Unix socket listener too (`.s.PGSQL.<port>`).
    pub unix_socket_dir: Option<PathBuf>,
    /// Client authentication method.
    pub auth: AuthMethod,
    /// TLS towards clients.
    pub tls: Option<ClientTls>,
    /// User that looks up unknown users' secrets on the server.
    pub auth_user: Option<String>,
    /// Query returning (name, secret) for `$1`.
    pub auth_query: String,
    /// Database the auth query runs in (default: the client's database).
    pub auth_dbname: Option<String>,
}

/// The MySQL listener (`[mysql]`).
#[derive(Debug, Clone)]
pub struct MysqlConfig {
    /// True when the listener runs: `[mysql]` has `listen`, or a
    /// `[[databases]]` entry uses `protocol = "mysql"` (so PostgreSQL-only
    /// deployments do not take port 6033).
    pub enabled: bool,
    /// `host:port` to listen on.
    pub listen: String,
    /// Path of a Unix socket listener too.
    pub unix_socket: Option<PathBuf>,
    /// The auth plugin offered to clients.
    pub auth: MysqlAuth,
    /// Users without a password may log in with an empty one (like
    /// PostgreSQL's `trust`); off, they cannot log in on this port.
    pub trust: bool,
    /// TLS towards clients.
    pub tls: Option<ClientTls>,
}

/// The authentication plugin sqlmux offers MySQL clients (clients may
/// answer with either).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MysqlAuth {
    /// `mysql_native_password` (MariaDB's default).
    MysqlNativePassword,
    /// `caching_sha2_password` (MySQL 8's default).
    CachingSha2Password,
}

impl MysqlAuth {
    /// The plugin name on the wire.
    pub fn plugin(self) -> &'static str {
        match self {
            MysqlAuth::MysqlNativePassword => "mysql_native_password",
            MysqlAuth::CachingSha2Password => "caching_sha2_password",
        }
    }
}

/// TLS towards clients.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientTls {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// Whether TLS is optional or required.
    pub mode: ClientTlsMode,
}

/// TLS towards a database's server.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerTls {
    /// libpq-style mode.
    pub mode: crate::tls::ServerTlsMode,
    /// CA file for the verify modes.
    pub ca: Option<PathBuf>,
}

/// PgBouncer's default auth query.
pub const DEFAULT_AUTH_QUERY: &str =
    "SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = $1";

/// Pool settings after defaults and per-database overrides are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// Transaction or session pooling.
    pub mode: PoolMode,
    /// Maximum server connections in one (database, user) pool on this
    /// replica: the configured size divided by `share`, rounded up.
    pub size: usize,
    /// Replicas sharing the configured size (`pool.share`, at least 1).
    pub share: usize,
    /// How `size` was derived, for `sqlmux check` and SHOW CONFIG.
    pub size_source: String,
    /// Servers kept open even when idle (on this replica: the configured
    /// value divided by `share`, rounded up).
    pub min_idle: usize,
    /// Longest a client waits for a server.
    pub checkout_timeout: Duration,
    /// Longest a lent server may stay silent while it owes a reply; then
    /// the client gets an error and the server is closed (0 = never).
    pub query_timeout: Duration,
    /// Idle servers close after this (0 = never).
    pub idle_timeout: Duration,
    /// Every server closes after this age, at its next release (0 = never).
    pub max_lifetime: Duration,
    /// Client connections allowed (globally from `[pool]`, per database
    /// when set in a database's pool table).
    pub max_client_connections: usize,
    /// Named prepared statements cached per server in transaction mode
    /// (0 disables statement tracking).
    pub max_prepared_statements: usize,
    /// What to do with session state in transaction mode.
    pub on_session_state: SessionStatePolicy,
}

impl PoolConfig {
    /// Servers all replicas together may open for one (database, user):
    /// this replica's size times `share` (at least the configured size,
    /// more by the rounding up).
    pub fn total_size(&self) -> usize {
        self.size * self.share
    }
}

/// Insight settings (`[insight]`).
#[derive(Debug, Clone, PartialEq)]
pub struct InsightConfig {
    /// Record statements at all.
    pub enabled: bool,
    /// Fingerprints tracked before the least recent fold into "other".
    pub max_statements: usize,
    /// Repeats of one statement that make an N+1 burst.
    pub n_plus_one_threshold: u32,
    /// Window within which the repeats must fall.
    pub n_plus_one_window: Duration,
    /// Idle time inside a transaction after which it counts as leaked.
    pub leak_idle: Duration,
    /// What to do with a leaked transaction.
    pub leak_action: LeakAction,
}

/// One `[[databases]]` entry.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// The name clients put in their connection string.
    pub name: String,
    /// Wire protocol.
    pub protocol: Protocol,
    /// Server host, or a Unix socket: a directory (PostgreSQL) or the
    /// socket file (MySQL) when it starts with `/`.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Database name on the server.
    pub dbname: String,
    /// Server login user; `None` means the client's own.
    pub user: Option<String>,
    /// Server login password for `user`.
    pub password: Option<Secret>,
    /// Effective pool settings.
    pub pool: PoolConfig,
    /// Whether `pool.max_client_connections` was set for this database.
    pub client_limit: Option<usize>,
    /// TLS towards the server.
    pub server_tls: ServerTls,
}

/// One `[[users]]` entry.
#[derive(Debug, Clone)]
pub struct UserConfig {
    /// User name.
    pub name: String,
    /// Plain password, `md5...` hash or `SCRAM-SHA-256$...` verifier.
    pub password: Option<Secret>,
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// File it came from, if any (RELOAD re-reads it).
    pub path: Option<PathBuf>,
    /// `[general]`.
    pub general: General,
    /// `[admin]`.
    pub admin: AdminConfig,
    /// `[postgres]`.
    pub postgres: PostgresConfig,
    /// `[mysql]`.
    pub mysql: MysqlConfig,
    /// `[pool]` defaults as written (before per-database overrides).
    pub pool: PoolConfig,
    /// `[insight]`.
    pub insight: InsightConfig,
    /// `[peers]`: other replicas that cancel requests are forwarded to.
    pub peers: crate::peers::PeersConfig,
    /// `[[databases]]`.
    pub databases: Vec<DatabaseConfig>,
    /// `[[users]]`.
    pub users: Vec<UserConfig>,
    /// CPUs of this host, used when `backend_cpus` is 0.
    pub host_cpus: usize,
}

/// CPUs available to this process.
pub fn host_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut cfg = Self::parse_with_origin(&text, &path.display().to_string(), &base)?;
        cfg.path = Some(path.to_owned());
        Ok(cfg)
    }

    /// Parses and validates TOML text (used by tests and by `load`).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        Self::parse_with_origin(text, "<string>", Path::new("."))
    }

    fn parse_with_origin(text: &str, origin: &str, base: &Path) -> Result<Config, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        resolve(file, text, origin, base, host_cpus())
    }

    /// The database entry a client's database name maps to: an exact entry,
    /// or the `"*"` entry with `dbname` set to the requested name.
    pub fn database(&self, name: &str) -> Option<std::borrow::Cow<'_, DatabaseConfig>> {
        if let Some(d) = self.databases.iter().find(|d| d.name == name) {
            return Some(std::borrow::Cow::Borrowed(d));
        }
        if name == "sqlmux" || name == "pgbouncer" {
            return None;
        }
        let wild = self.databases.iter().find(|d| d.name == "*")?;
        let mut d = wild.clone();
        d.name = name.to_owned();
        d.dbname = name.to_owned();
        Some(std::borrow::Cow::Owned(d))
    }

    /// The database entry of `protocol` for a client's database name: the
    /// entry of that name, else the protocol's `*` wildcard entry.
    pub fn database_for(
        &self,
        protocol: Protocol,
        name: &str,
    ) -> Option<std::borrow::Cow<'_, DatabaseConfig>> {
        if let Some(d) = self
            .databases
            .iter()
            .find(|d| d.name == name && d.protocol == protocol)
        {
            return Some(std::borrow::Cow::Borrowed(d));
        }
        if name == "sqlmux" || name == "pgbouncer" || self.databases.iter().any(|d| d.name == name)
        {
            return None;
        }
        let wild = self
            .databases
            .iter()
            .find(|d| d.name == "*" && d.protocol == protocol)?;
        let mut d = wild.clone();
        d.name = name.to_owned();
        d.dbname = name.to_owned();
        Some(std::borrow::Cow::Owned(d))
    }

    /// The `[[users]]` entry for a name.
    pub fn user(&self, name: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.name == name)
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

fn resolve(
    file: FileConfig,
    text: &str,
    origin: &str,
    base: &Path,
    cpus: usize,
) -> Result<Config, ConfigError> {
    let invalid = |line: usize, key: &str, message: String| ConfigError::Invalid {
        origin: origin.to_owned(),
        line,
        key: key.to_owned(),
        message,
    };
    // Line of the first occurrence of a table header or key, for errors on
    // plain (unspanned) fields.
    let find_line = |needle: &str| -> usize {
        text.lines()
            .position(|l| l.trim_start().starts_with(needle))
            .map(|i| i + 1)
            .unwrap_or(0)
    };

    let g = file.general;
    let workers = g.workers.unwrap_or(0);
    let max_message_size = g.max_message_size.unwrap_or(64 * 1024 * 1024);
    if !(1024..=(1u64 << 30)).contains(&max_message_size) {
        return Err(invalid(
            find_line("max_message_size"),
            "general.max_message_size",
            format!("{max_message_size} is outside 1024..=1073741824 bytes"),
        ));
    }
    let general = General {
        // Automatic: half the CPUs (at least one). Each worker thread adds
        // cross-thread wake-ups; a pooler sharing its host with the
        // database does best leaving the other cores to it.
        workers: if workers == 0 {
            (cpus / 2).max(1)
        } else {
            workers
        },
        shutdown_timeout: g
            .shutdown_timeout
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(30)),
        max_message_size: max_message_size as u32,
        server_connect_timeout: g
            .server_connect_timeout
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(10)),
        client_login_timeout: g
            .client_login_timeout
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(60)),
        auth_failure_delay: g
            .auth_failure_delay
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(2)),
        stats_period: g
            .stats_period
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(60)),
    };
    if general.stats_period.is_zero() {
        return Err(invalid(
            find_line("stats_period"),
            "general.stats_period",
            "must be longer than zero".into(),
        ));
    }

    let admin_file_tls = file.admin.tls;
    let mut admin = AdminConfig {
        listen: file.admin.listen.unwrap_or_else(|| "127.0.0.1:6434".into()),
        users: file.admin.users.unwrap_or_else(|| vec!["admin".into()]),
        stats_users: file.admin.stats_users.unwrap_or_default(),
        http_auth: file.admin.http_auth.unwrap_or(true),
        metrics_auth: file.admin.metrics_auth.unwrap_or(false),
        tls: None,
    };
    check_listen(&admin.listen).map_err(|m| invalid(find_line("listen"), "admin.listen", m))?;

    let abs = |p: &str| -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let tls_line = find_line("tls");
    let client_tls =
        resolve_client_tls(file.postgres.tls, "postgres.tls", tls_line, &abs, &invalid)?;
    let mysql_tls = resolve_client_tls(file.mysql.tls, "mysql.tls", tls_line, &abs, &invalid)?;
    admin.tls = resolve_client_tls(admin_file_tls, "admin.tls", tls_line, &abs, &invalid)?;
    let mysql = MysqlConfig {
        enabled: file.mysql.listen.is_some()
            || file.mysql.unix_socket.is_some()
            || file
                .databases
                .iter()
                .any(|d| d.get_ref().protocol == Protocol::Mysql),
        listen: file.mysql.listen.unwrap_or_else(|| "0.0.0.0:6033".into()),
        unix_socket: file.mysql.unix_socket.map(PathBuf::from),
        auth: file.mysql.auth.unwrap_or(MysqlAuth::MysqlNativePassword),
        trust: file.mysql.trust.unwrap_or(false),
        tls: mysql_tls,
    };
    check_listen(&mysql.listen).map_err(|m| invalid(find_line("listen"), "mysql.listen", m))?;
    if let Some(p) = &mysql.unix_socket {
        crate::addr::check_socket_path(p)
            .map_err(|m| invalid(find_line("unix_socket"), "mysql.unix_socket", m))?;
    }
    let postgres = PostgresConfig {
        listen: file
            .postgres
            .listen
            .unwrap_or_else(|| "0.0.0.0:6432".into()),
        unix_socket_dir: file.postgres.unix_socket_dir.map(PathBuf::from),
        auth: file.postgres.auth.unwrap_or(AuthMethod::ScramSha256),
        tls: client_tls,
        auth_user: file.postgres.auth_user,
        auth_query: file
            .postgres
            .auth_query
            .unwrap_or_else(|| DEFAULT_AUTH_QUERY.to_owned()),
        auth_dbname: file.postgres.auth_dbname,
    };
    if !postgres.auth_query.contains("$1") {
        return Err(invalid(
            find_line("auth_query"),
            "postgres.auth_query",
            "must contain $1 (the user name being looked up)".into(),
        ));
    }
    check_listen(&postgres.listen)
        .map_err(|m| invalid(find_line("listen"), "postgres.listen", m))?;
    if let Some(dir) = &postgres.unix_socket_dir {
        // The directory, then the longest file name it may have to hold.
        crate::addr::check_socket_path(dir)
            .and_then(|()| crate::addr::check_socket_path(&crate::addr::pg_socket_path(dir, 65535)))
            .map_err(|m| invalid(find_line("unix_socket_dir"), "postgres.unix_socket_dir", m))?;
    }

    let pool = resolve_pool(&FilePool::default(), &file.pool, cpus)
        .map_err(|(k, m)| invalid(table_key_line(text, "[pool]", &k), &format!("pool.{k}"), m))?;
    let peers = crate::peers::resolve_config(file.peers, &postgres.listen).map_err(|(k, m)| {
        invalid(
            table_key_line(text, "[peers]", &k),
            &format!("peers.{k}"),
            m,
        )
    })?;

    let fi = file.insight;
    let n1 = fi.n_plus_one.unwrap_or_default();
    let leak = fi.leaked_transaction.unwrap_or_default();
    let insight = InsightConfig {
        enabled: fi.enabled.unwrap_or(true),
        max_statements: fi.max_statements.unwrap_or(5000),
        n_plus_one_threshold: n1.threshold.unwrap_or(10),
        n_plus_one_window: n1.window.map(|d| d.0).unwrap_or(Duration::from_secs(1)),
        leak_idle: leak.idle.map(|d| d.0).unwrap_or(Duration::from_secs(5)),
        leak_action: leak.action.unwrap_or(LeakAction::Warn),
    };
    let insight_line = find_line("[insight]");
    if insight.max_statements == 0 {
        return Err(invalid(
            insight_line,
            "insight.max_statements",
            "must be at least 1".into(),
        ));
    }
    if insight.n_plus_one_threshold < 2 {
        return Err(invalid(
            insight_line,
            "insight.n_plus_one.threshold",
            "must be at least 2 (one repeat is not a burst)".into(),
        ));
    }
    if insight.n_plus_one_window.is_zero() || insight.leak_idle.is_zero() {
        return Err(invalid(
            insight_line,
            "insight",
            "n_plus_one.window and leaked_transaction.idle must be longer than zero".into(),
        ));
    }

    let mut databases: Vec<DatabaseConfig> = Vec::new();
    for (i, spanned) in file.databases.into_iter().enumerate() {
        let line = line_of(text, spanned.span().start);
        let d = spanned.into_inner();
        let key = |k: &str| format!("databases[{i}].{k}");
        if d.name.is_empty() {
            return Err(invalid(line, &key("name"), "must not be empty".into()));
        }
        if matches!(d.name.as_str(), "sqlmux" | "pgbouncer") {
            return Err(invalid(
                line,
                &key("name"),
                format!(
                    "{:?} is reserved for the admin console; choose another name",
                    d.name
                ),
            ));
        }
        if databases.iter().any(|o| o.name == d.name) {
            return Err(invalid(
                line,
                &key("name"),
                format!("database {:?} is defined twice", d.name),
            ));
        }
        let password = read_password(d.password, d.password_file.as_deref(), &abs)
            .map_err(|(k, m)| invalid(line, &key(k), m))?;
        if password.is_some() && d.user.is_none() {
            return Err(invalid(
                line,
                &key("password"),
                "a server password needs a server user: set `user` too".into(),
            ));
        }
        let pool = resolve_pool(&file.pool, &d.pool, cpus)
            .map_err(|(k, m)| invalid(line, &key(&format!("pool.{k}")), m))?;
        let server_tls = match d.server_tls {
            None => ServerTls {
                mode: crate::tls::ServerTlsMode::Prefer,
                ca: None,
            },
            Some(t) => ServerTls {
                mode: t.mode.unwrap_or(crate::tls::ServerTlsMode::Prefer),
                ca: t.ca.as_deref().map(abs),
            },
        };
        crate::tls::connector(server_tls.mode, server_tls.ca.as_deref())
            .map_err(|m| invalid(line, &key("server_tls"), m))?;
        let port = d.port.unwrap_or(match d.protocol {
            Protocol::Postgres => 5432,
            Protocol::Mysql => 3306,
        });
        if crate::addr::is_unix_host(&d.host) {
            let path = crate::addr::server_socket_path(d.protocol, &d.host, port);
            crate::addr::check_socket_path(&path).map_err(|m| invalid(line, &key("host"), m))?;
        }
        databases.push(DatabaseConfig {
            server_tls,
            dbname: d.dbname.unwrap_or_else(|| d.name.clone()),
            port,
            name: d.name,
            protocol: d.protocol,
            host: d.host,
            user: d.user,
            password,
            client_limit: d.pool.max_client_connections,
            pool,
        });
    }

    let mut users: Vec<UserConfig> = Vec::new();
    for (i, spanned) in file.users.into_iter().enumerate() {
        let line = line_of(text, spanned.span().start);
        let u = spanned.into_inner();
        if u.name.is_empty() {
            return Err(invalid(
                line,
                &format!("users[{i}].name"),
                "must not be empty".into(),
            ));
        }
        if users.iter().any(|o| o.name == u.name) {
            return Err(invalid(
                line,
                &format!("users[{i}].name"),
                format!("user {:?} is defined twice", u.name),
            ));
        }
        let password = read_password(u.password, u.password_file.as_deref(), &abs)
            .map_err(|(k, m)| invalid(line, &format!("users[{i}].{k}"), m))?;
        if let Some(p) = &password {
            if p.0.starts_with("SCRAM-SHA-256$")
                && sqlmux_protocol::postgres::auth::ScramVerifier::parse(&p.0).is_none()
            {
                return Err(invalid(
                    line,
                    &format!("users[{i}].password"),
                    "looks like a SCRAM verifier but is malformed; expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>".into(),
                ));
            }
            if p.0.starts_with("md5")
                && p.0.len() == 35
                && !p.0[3..].bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Err(invalid(
                    line,
                    &format!("users[{i}].password"),
                    "looks like an md5 hash but is not 32 hex digits after \"md5\"".into(),
                ));
            }
        }
        users.push(UserConfig {
            name: u.name,
            password,
        });
    }

    Ok(Config {
        path: None,
        general,
        admin,
        postgres,
        mysql,
        pool,
        insight,
        peers,
        databases,
        users,
        host_cpus: cpus,
    })
}

/// Line of `key` inside the table whose header is `header` (e.g. `[pool]`),
/// else the header's line, else 0.
fn table_key_line(text: &str, header: &str, key: &str) -> usize {
    let mut lines = text.lines().enumerate();
    let Some((start, _)) = lines.find(|(_, l)| l.trim_start().starts_with(header)) else {
        return 0;
    };
    for (i, l) in lines {
        let l = l.trim_start();
        if l.starts_with('[') {
            break;
        }
        if let Some(rest) = l.strip_prefix(key)
            && rest.trim_start().starts_with('=')
        {
            return i + 1;
        }
    }
    start + 1
}

/// A password written inline (`password`) or kept in a file
/// (`password_file`, e.g. a mounted Kubernetes Secret). The file is read at
/// start-up and on every RELOAD; one trailing newline is ignored. Errors
/// name the key and the path, never the content.
fn read_password(
    inline: Option<Secret>,
    file: Option<&str>,
    abs: &dyn Fn(&str) -> PathBuf,
) -> Result<Option<Secret>, (&'static str, String)> {
    let Some(file) = file else {
        return Ok(inline);
    };
    if inline.is_some() {
        return Err((
            "password_file",
            "set either `password` or `password_file`, not both".into(),
        ));
    }
    let path = abs(file);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        (
            "password_file",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    let text = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if text.is_empty() {
        return Err(("password_file", format!("{} is empty", path.display())));
    }
    Ok(Some(Secret(text.to_owned())))
}

fn check_listen(addr: &str) -> Result<(), String> {
    if addr.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!(
            "{addr:?} is not host:port (for example \"127.0.0.1:6432\" or \"0.0.0.0:6432\")"
        )),
    }
}

/// Applies `over` on top of `base` on top of the built-in defaults.
fn resolve_pool(
    base: &FilePool,
    over: &FilePool,
    cpus: usize,
) -> Result<PoolConfig, (String, String)> {
    let mode = over.mode.or(base.mode).unwrap_or(PoolMode::Transaction);
    let size_per_cpu = over.size_per_cpu.or(base.size_per_cpu).unwrap_or(2);
    let backend_cpus = over.backend_cpus.or(base.backend_cpus).unwrap_or(0);
    let (size, size_source) = match over.size.or(base.size) {
        Some(size) => (size, "explicit pool.size".to_owned()),
        None => {
            let (n, how) = if backend_cpus == 0 {
                (cpus, format!("{cpus} CPUs on this host"))
            } else {
                (backend_cpus, format!("backend_cpus = {backend_cpus}"))
            };
            (
                size_per_cpu * n,
                format!("size_per_cpu {size_per_cpu} x {how}"),
            )
        }
    };
    if size == 0 {
        return Err((
            "size".into(),
            "the pool size resolves to 0; set size or size_per_cpu to at least 1".into(),
        ));
    }
    let min_idle = over.min_idle.or(base.min_idle).unwrap_or(0);
    if min_idle > size {
        return Err((
            "min_idle".into(),
            format!("min_idle {min_idle} is larger than the pool size {size}"),
        ));
    }
    let share = over.share.or(base.share).unwrap_or(1);
    if share == 0 {
        return Err((
            "share".into(),
            "must be at least 1 (the number of replicas that share each pool's size)".into(),
        ));
    }
    let (size, size_source) = if share == 1 {
        (size, size_source)
    } else {
        let mine = size.div_ceil(share);
        (
            mine,
            format!("{size_source}; {size} / share {share}, rounded up"),
        )
    };
    let min_idle = min_idle.div_ceil(share);
    let checkout_timeout = over
        .checkout_timeout
        .or(base.checkout_timeout)
        .map(|d| d.0)
        .unwrap_or(Duration::from_secs(5));
    if checkout_timeout.is_zero() {
        return Err(("checkout_timeout".into(), "must be longer than zero".into()));
    }
    let max_client_connections = over
        .max_client_connections
        .or(base.max_client_connections)
        .unwrap_or(10_000);
    if max_client_connections == 0 {
        return Err(("max_client_connections".into(), "must be at least 1".into()));
    }
    Ok(PoolConfig {
        mode,
        size,
        share,
        size_source,
        min_idle,
        checkout_timeout,
        query_timeout: over
            .query_timeout
            .or(base.query_timeout)
            .map(|d| d.0)
            .unwrap_or(Duration::ZERO),
        idle_timeout: over
            .idle_timeout
            .or(base.idle_timeout)
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(600)),
        max_lifetime: over
            .max_lifetime
            .or(base.max_lifetime)
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(3600)),
        max_client_connections,
        max_prepared_statements: over
            .max_prepared_statements
            .or(base.max_prepared_statements)
            .unwrap_or(200),
        on_session_state: over
            .on_session_state
            .or(base.on_session_state)
            .unwrap_or(SessionStatePolicy::Pin),
    })
}

/// Client TLS settings of one listener (`postgres.tls`, `mysql.tls`).
fn resolve_client_tls(
    t: Option<FileClientTls>,
    key: &str,
    line: usize,
    abs: &dyn Fn(&str) -> PathBuf,
    invalid: &dyn Fn(usize, &str, String) -> ConfigError,
) -> Result<Option<ClientTls>, ConfigError> {
    let Some(t) = t else {
        return Ok(None);
    };
    let mode = t.mode.unwrap_or(ClientTlsMode::Prefer);
    match (t.cert, t.key) {
        (Some(cert), Some(k)) => {
            let (cert, k) = (abs(&cert), abs(&k));
            if mode != ClientTlsMode::Disable {
                crate::tls::acceptor(&cert, &k).map_err(|m| invalid(line, key, m))?;
            }
            Ok(Some(ClientTls { cert, key: k, mode }))
        }
        _ if mode == ClientTlsMode::Disable => Ok(None),
        _ => Err(invalid(
            line,
            key,
            "TLS needs both `cert` and `key` (PEM files)".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_defaults() {
        let cfg = Config::parse(
            r#"
[[databases]]
name = "app"
host = "127.0.0.1"
"#,
        )
        .unwrap();
        assert_eq!(cfg.postgres.listen, "0.0.0.0:6432");
        assert_eq!(cfg.admin.listen, "127.0.0.1:6434");
        let db = &cfg.databases[0];
        assert_eq!(db.port, 5432);
        assert_eq!(db.dbname, "app");
        assert_eq!(db.pool.mode, PoolMode::Transaction);
        assert_eq!(db.pool.size, 2 * host_cpus());
        assert_eq!(db.pool.checkout_timeout, Duration::from_secs(5));
        assert_eq!(cfg.insight.n_plus_one_threshold, 10);
    }

    #[test]
    fn size_per_cpu_and_overrides() {
        let cfg = Config::parse(
            r#"
[pool]
size_per_cpu = 3
backend_cpus = 4
checkout_timeout = "250ms"

[[databases]]
name = "a"
host = "h"

[[databases]]
name = "b"
host = "h"
pool = { size = 7, mode = "session" }
"#,
        )
        .unwrap();
        assert_eq!(cfg.databases[0].pool.size, 12);
        assert_eq!(
            cfg.databases[0].pool.size_source,
            "size_per_cpu 3 x backend_cpus = 4"
        );
        assert_eq!(
            cfg.databases[0].pool.checkout_timeout,
            Duration::from_millis(250)
        );
        assert_eq!(cfg.databases[1].pool.size, 7);
        assert_eq!(cfg.databases[1].pool.mode, PoolMode::Session);
        assert_eq!(
            cfg.databases[1].pool.checkout_timeout,
            Duration::from_millis(250)
        );
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = Config::parse("[pool]\nsize_pre_cpu = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("size_pre_cpu"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn bad_duration_names_line() {
        let err = Config::parse("[pool]\ncheckout_timeout = \"5 parsecs\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("invalid duration"), "{err}");
    }

    #[test]
    fn semantic_errors_name_key_and_line() {
        let err = Config::parse(
            "[[databases]]\nname = \"a\"\nhost = \"h\"\n\n[[databases]]\nname = \"a\"\nhost = \"h\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("databases[1].name"), "{err}");
        assert!(err.contains("line 5"), "{err}");
        let err = Config::parse("[pool]\nsize = 2\nmin_idle = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("pool.min_idle"), "{err}");
    }

    #[test]
    fn share_divides_size_and_min_idle_rounding_up() {
        let cfg = Config::parse(
            "[pool]\nsize = 20\nmin_idle = 4\nshare = 3\n\n[[databases]]\nname = \"a\"\nhost = \"h\"\n\n[[databases]]\nname = \"b\"\nhost = \"h\"\npool = { share = 1 }\n",
        )
        .unwrap();
        let a = &cfg.databases[0].pool;
        assert_eq!((a.size, a.share, a.min_idle, a.total_size()), (7, 3, 2, 21));
        assert!(a.size_source.contains("20 / share 3"), "{}", a.size_source);
        let b = &cfg.databases[1].pool;
        assert_eq!((b.size, b.share, b.total_size()), (20, 1, 20));
        assert_eq!(cfg.pool.share, 3);
    }

    #[test]
    fn share_zero_names_key_and_line() {
        let err = Config::parse("[general]\nworkers = 1\n\n[pool]\nsize = 4\nshare = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("pool.share"), "{err}");
        assert!(err.contains("line 6"), "{err}");
        assert!(err.contains("at least 1"), "{err}");
        let err =
            Config::parse("[[databases]]\nname = \"a\"\nhost = \"h\"\npool = { share = 0 }\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("databases[0].pool.share"), "{err}");
    }

    #[test]
    fn passwords_can_come_from_files_relative_to_the_config() {
        let dir = std::env::temp_dir().join(format!("sqlmux-pwfile-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("secrets")).unwrap();
        std::fs::write(dir.join("secrets/app"), "s3cret-user\n").unwrap();
        std::fs::write(dir.join("secrets/db"), "s3cret-db").unwrap();
        let path = dir.join("sqlmux.toml");
        std::fs::write(
            &path,
            "[[databases]]\nname = \"a\"\nhost = \"h\"\nuser = \"svc\"\npassword_file = \"secrets/db\"\n\n[[users]]\nname = \"app\"\npassword_file = \"secrets/app\"\n",
        )
        .unwrap();
        let cfg = Config::load(&path).unwrap();
        assert_eq!(cfg.users[0].password.as_ref().unwrap().0, "s3cret-user");
        assert_eq!(cfg.databases[0].password.as_ref().unwrap().0, "s3cret-db");
        assert!(!format!("{cfg:?}").contains("s3cret"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn password_file_errors_name_key_and_never_the_secret() {
        let err =
            Config::parse("[[users]]\nname = \"u\"\npassword_file = \"/nonexistent/sqlmux/pw\"\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("users[0].password_file"), "{err}");
        assert!(err.contains("/nonexistent/sqlmux/pw"), "{err}");
        let err = Config::parse(
            "[[users]]\nname = \"u\"\npassword = \"hunter2\"\npassword_file = \"/x\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not both"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn peers_are_parsed_and_checked() {
        let cfg = Config::parse(
            "[postgres]\nlisten = \"0.0.0.0:7432\"\n[peers]\naddresses = [\"10.0.0.2:7432\"]\ndns = \"sqlmux-peers\"\n",
        )
        .unwrap();
        assert_eq!(cfg.peers.addresses, ["10.0.0.2:7432"]);
        assert_eq!(cfg.peers.dns.as_deref(), Some("sqlmux-peers"));
        assert_eq!(cfg.peers.port, 7432);
        let err = Config::parse("[peers]\naddresses = [\"nowhere\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("peers.addresses") && err.contains("line 2"),
            "{err}"
        );
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let cfg = Config::parse("[[users]]\nname = \"u\"\npassword = \"hunter2\"\n").unwrap();
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
    }
}
