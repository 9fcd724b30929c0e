//! sqlmux: a connection-pooling proxy for PostgreSQL and MySQL that records
//! what the application does to the database.
//!
//! # Map
//!
//! - [`config`]: the TOML schema, validation, defaults.
//! - [`listener`]: sockets (TCP and Unix) and accept loops; [`addr`]:
//!   addresses of both kinds and the Unix socket paths of both protocols.
//! - [`mysql`]: the MySQL / MariaDB front end: login, the command loop
//!   and the forwarding pump, server connections, KILL QUERY.
//! - [`peers`]: replicas that act as one: cancel requests and MySQL KILLs
//!   forwarded to the replica that holds the client.
//! - [`postgres`]: the PostgreSQL front end: login, cancel, the session
//!   loop and the forwarding pump, server connections, parameters.
//! - [`session`]: the protocol-neutral half of every client session:
//!   admission, the lease and transaction lifecycle with its insight hooks,
//!   leaks, pins, and the refusals each front end renders.
//! - [`pool`]: protocol-agnostic pools: a synchronous state machine behind a
//!   short lock, FIFO waiting, the [`pool::Lease`] guard that returns,
//!   resets or closes a server as the server's own state says, and the one
//!   [`pool::registry`] of every pool of both protocols.
//! - [`insight`]: per-statement latency histograms, N+1 bursts, leaked
//!   transactions.
//! - [`client`], [`auth`], [`stats`], [`io`], [`clock`]: shared client facts,
//!   users and secrets, sharded counters, byte streams, the session clock.
//! - [`demo`]: `sqlmux demo` (throwaway servers, sqlmux in front and an
//!   application-like workload); [`import`]: `sqlmux import` and
//!   `sqlmux init` (configurations from PgBouncer's files or a URL).
//!
//! # One transaction
//!
//! A client's first message of a transaction makes its session check out a
//! server from the pool of (database, user) through the session core. The
//! session forwards frames both ways, looking only at frame headers and at
//! the few messages that decide something, and feeds statement timings to
//! the insight layer. At ReadyForQuery `I` with nothing outstanding, the
//! lease is dropped; the guard asks the server whether it is clean and
//! returns it to the pool (or resets or closes it).
//!
//! # Running
//!
//! [`Proxy::start`] binds the listeners and returns a handle; nothing here
//! is global, so tests can run several proxies in one process.

pub mod addr;
pub mod admin;
pub mod auth;
pub mod client;
pub mod clock;
pub mod config;
pub mod demo;
pub mod import;
pub mod insight;
pub mod io;
pub mod listener;
pub mod mysql;
pub mod peers;
pub mod pool;
pub mod postgres;
pub mod session;
pub mod stats;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Users;
use crate::client::ClientRegistry;
use crate::config::{Config, ConfigError};
use crate::insight::Insight;
use crate::listener::{Listener, Service};
use crate::pool::registry::Pools;

/// State shared by every task of one proxy instance.
pub struct Shared {
    /// The current configuration (swapped atomically by RELOAD).
    pub config: ArcSwap<Config>,
    /// Users and their secrets, rebuilt on RELOAD.
    pub users: ArcSwap<Users>,
    /// Every pool, PostgreSQL and MySQL.
    pub pools: Pools,
    /// Connected clients.
    pub clients: Arc<ClientRegistry>,
    /// Statement statistics and detectors.
    pub insight: Arc<Insight>,
    /// Cancelled when shutdown begins: listeners stop, idle clients are
    /// closed, active ones at their transaction boundary.
    pub drain: CancellationToken,
    /// Cancelled when the grace period ends: every session is closed.
    pub hard: CancellationToken,
    /// Every connection and background task.
    pub tasks: TaskTracker,
    /// When the proxy started.
    pub started: SystemTime,
    /// State of the admin port (metrics recorder, SHOW STATS averages),
    /// set once by `admin::start_background`.
    pub admin: std::sync::OnceLock<Arc<crate::admin::AdminState>>,
    /// TLS acceptor for PostgreSQL clients (rebuilt on RELOAD).
    pub pg_tls: ArcSwap<Option<tokio_rustls::TlsAcceptor>>,
    /// TLS acceptor for MySQL clients (rebuilt on RELOAD).
    pub mysql_tls: ArcSwap<Option<tokio_rustls::TlsAcceptor>>,
    /// TLS acceptor for the admin port (rebuilt on RELOAD).
    pub admin_tls: ArcSwap<Option<tokio_rustls::TlsAcceptor>>,
    /// Secrets of users found through `postgres.auth_query`, cached briefly.
    pub auth_cache: auth::AuthCache,
    /// Failed-login bursts per client address (both protocols).
    pub auth_delay: session::auth_delay::AuthDelay,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// Errors that stop the proxy from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be opened.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// The address from the config.
        addr: String,
        /// Which listener.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A running proxy.
#[derive(Debug, Clone)]
pub struct Proxy {
    /// Shared state (for inspection and the admin layer).
    pub shared: Arc<Shared>,
    postgres_addr: SocketAddr,
    mysql_addr: SocketAddr,
    admin_addr: SocketAddr,
}

impl Proxy {
    /// Binds the listeners and starts accepting. Must run inside a tokio
    /// runtime.
    pub async fn start(config: Config) -> Result<Proxy, StartError> {
        let users = Users::from_config(&config, None);
        let insight = Insight::new(&config.insight);
        let pg_listener = listener::bind(&config.postgres.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.postgres.listen.clone(),
                what: "postgres.listen",
                source,
            })?;
        let postgres_addr = pg_listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                addr: config.postgres.listen.clone(),
                what: "postgres.listen",
                source,
            })?;
        let my_listener = match config.mysql.enabled {
            true => Some(
                listener::bind(&config.mysql.listen)
                    .await
                    .map_err(|source| StartError::Bind {
                        addr: config.mysql.listen.clone(),
                        what: "mysql.listen",
                        source,
                    })?,
            ),
            false => None,
        };
        let mysql_addr = match &my_listener {
            Some(l) => l.local_addr().map_err(|source| StartError::Bind {
                addr: config.mysql.listen.clone(),
                what: "mysql.listen",
                source,
            })?,
            None => SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        let pg_unix = match &config.postgres.unix_socket_dir {
            Some(dir) => Some(bind_unix(
                &addr::pg_socket_path(dir, postgres_addr.port()),
                postgres_addr.port(),
                "postgres.unix_socket_dir",
            )?),
            None => None,
        };
        let my_unix = match (&my_listener, &config.mysql.unix_socket) {
            (Some(_), Some(path)) => Some(bind_unix(path, mysql_addr.port(), "mysql.unix_socket")?),
            _ => None,
        };
        let admin_listener = listener::bind(&config.admin.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.admin.listen.clone(),
                what: "admin.listen",
                source,
            })?;
        let admin_addr = admin_listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                addr: config.admin.listen.clone(),
                what: "admin.listen",
                source,
            })?;
        let shared = Arc::new(Shared {
            config: ArcSwap::from_pointee(config),
            users: ArcSwap::from_pointee(users),
            pools: Pools::default(),
            clients: Arc::new(ClientRegistry::default()),
            insight,
            drain: CancellationToken::new(),
            hard: CancellationToken::new(),
            tasks: TaskTracker::new(),
            started: SystemTime::now(),
            admin: std::sync::OnceLock::new(),
            pg_tls: ArcSwap::from_pointee(None),
            mysql_tls: ArcSwap::from_pointee(None),
            admin_tls: ArcSwap::from_pointee(None),
            auth_cache: auth::AuthCache::default(),
            auth_delay: Default::default(),
        });
        shared
            .pg_tls
            .store(Arc::new(build_pg_tls(&shared.config.load())));
        shared
            .mysql_tls
            .store(Arc::new(build_mysql_tls(&shared.config.load())));
        shared
            .admin_tls
            .store(Arc::new(build_admin_tls(&shared.config.load())));
        let sockets = [pg_unix.as_ref(), my_unix.as_ref()].map(|u| u.map(|u| u.path().to_owned()));
        let listeners = [
            (my_listener.map(Listener::Tcp), Service::Mysql),
            (my_unix.map(Listener::Unix), Service::Mysql),
            (Some(Listener::Tcp(pg_listener)), Service::Postgres),
            (pg_unix.map(Listener::Unix), Service::Postgres),
            (Some(Listener::Tcp(admin_listener)), Service::Admin),
        ];
        for (l, service) in listeners {
            if let Some(l) = l {
                let accept = listener::accept_loop(shared.clone(), l, service);
                shared.tasks.spawn(accept);
            }
        }
        admin::start_background(&shared);
        postgres::pools::warm(
            &shared.pools,
            &shared.config.load(),
            &shared.users.load(),
            &shared.insight,
        );
        mysql::pools::warm(
            &shared.pools,
            &shared.config.load(),
            &shared.users.load(),
            &shared.insight,
        );
        shared.tasks.spawn(janitor(shared.clone()));
        tracing::info!(postgres = %postgres_addr, mysql = %mysql_addr, admin = %admin_addr, unix_sockets = ?sockets, "sqlmux started");
        Ok(Proxy {
            shared,
            postgres_addr,
            mysql_addr,
            admin_addr,
        })
    }

    /// Address the PostgreSQL listener is bound to.
    pub fn postgres_addr(&self) -> SocketAddr {
        self.postgres_addr
    }

    /// Address the MySQL listener is bound to (port 0 when it does not run:
    /// no `[mysql]` listen and no MySQL database).
    pub fn mysql_addr(&self) -> SocketAddr {
        self.mysql_addr
    }

    /// Address the admin listener is bound to.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Re-reads the configuration file and applies it atomically. On error
    /// the running configuration stays.
    pub fn reload(&self) -> Result<(), ConfigError> {
        self.shared.reload()
    }

    /// Applies an already validated configuration.
    pub fn apply(&self, new: Config) {
        apply_config(&self.shared, new);
    }

    /// Graceful shutdown (see [`Shared::shutdown`]).
    pub async fn shutdown(&self) {
        self.shared.shutdown().await
    }

    /// Immediate shutdown (see [`Shared::shutdown_now`]).
    pub async fn shutdown_now(&self) {
        self.shared.shutdown_now().await
    }

    /// Resolves when the proxy has been shut down (e.g. by the admin
    /// SHUTDOWN command) and every task has ended.
    pub async fn stopped(&self) {
        self.shared.hard.cancelled().await;
        self.shared.tasks.wait().await;
    }
}

impl Shared {
    /// Re-reads the configuration file and applies it atomically (RELOAD,
    /// SIGHUP). On error the running configuration stays and the error is
    /// returned.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let current = self.config.load();
        let new = match current.path.clone() {
            Some(path) => Config::load(&path)?,
            None => (**current).clone(),
        };
        apply_config(self, new);
        Ok(())
    }

    /// Graceful shutdown: readiness goes false and listeners stop, idle
    /// clients are closed, open transactions may finish for up to
    /// `general.shutdown_timeout`, then everything is closed. Returns when
    /// all tasks have ended.
    pub async fn shutdown(&self) {
        let timeout = self.config.load().general.shutdown_timeout;
        self.drain.cancel();
        self.clients.raise_all(client::Signals::DRAIN);
        self.tasks.close();
        let wait = async {
            while !self.clients.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        if tokio::time::timeout(timeout, wait).await.is_err() {
            tracing::warn!(
                clients = self.clients.len(),
                "shutdown timeout reached; closing remaining connections"
            );
        }
        self.shutdown_now().await;
    }

    /// Immediate shutdown: closes every connection now.
    pub async fn shutdown_now(&self) {
        self.drain.cancel();
        self.hard.cancel();
        self.clients
            .raise_all(client::Signals::DRAIN | client::Signals::HARD);
        self.tasks.close();
        for e in self.pools.all() {
            e.retire();
        }
        self.tasks.wait().await;
    }
}

/// Binds a Unix listener for `what` (a config key) at `path`.
fn bind_unix(
    path: &std::path::Path,
    port: u16,
    what: &'static str,
) -> Result<listener::unix::UnixSocketListener, StartError> {
    listener::unix::UnixSocketListener::bind(path, port).map_err(|source| StartError::Bind {
        addr: path.display().to_string(),
        what,
        source,
    })
}

fn build_pg_tls(cfg: &Config) -> Option<tokio_rustls::TlsAcceptor> {
    build_client_tls(cfg.postgres.tls.as_ref(), Some(b"postgresql"))
}

fn build_mysql_tls(cfg: &Config) -> Option<tokio_rustls::TlsAcceptor> {
    build_client_tls(cfg.mysql.tls.as_ref(), None)
}

fn build_admin_tls(cfg: &Config) -> Option<tokio_rustls::TlsAcceptor> {
    build_client_tls(cfg.admin.tls.as_ref(), None)
}

fn build_client_tls(
    t: Option<&config::ClientTls>,
    alpn: Option<&[u8]>,
) -> Option<tokio_rustls::TlsAcceptor> {
    let t = t?;
    if t.mode == config::ClientTlsMode::Disable {
        return None;
    }
    match tls::acceptor_with_alpn(&t.cert, &t.key, alpn) {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::error!(error = %e, "TLS for clients disabled: cannot load certificate");
            None
        }
    }
}

/// Swaps in a new configuration: users, pools and insight settings.
pub(crate) fn apply_config(shared: &Shared, new: Config) {
    shared.pg_tls.store(Arc::new(build_pg_tls(&new)));
    shared.mysql_tls.store(Arc::new(build_mysql_tls(&new)));
    shared.admin_tls.store(Arc::new(build_admin_tls(&new)));
    shared.auth_cache.clear();
    let users = Users::from_config(&new, Some(&shared.users.load()));
    shared.insight.reconfigure(&new.insight);
    shared.users.store(Arc::new(users));
    shared.pools.reload(&new);
    postgres::pools::warm(&shared.pools, &new, &shared.users.load(), &shared.insight);
    mysql::pools::warm(&shared.pools, &new, &shared.users.load(), &shared.insight);
    shared.config.store(Arc::new(new));
    tracing::info!("configuration reloaded");
}

/// Background upkeep: idle/lifetime expiry, min_idle warm-up, pruning.
async fn janitor(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shared.drain.cancelled() => return,
        }
        for e in shared.pools.all() {
            e.maintain();
        }
        shared.pools.prune();
    }
}
