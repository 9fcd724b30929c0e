//! Protocol-agnostic server pools.
//!
//! A [`Pool`] is one (database, user) pair. Sessions call
//! [`Pool::checkout`] at the start of a transaction and get a [`Lease`]; the
//! lease is a guard: dropping it asks the server whether it is clean and
//! returns it to the pool, resets it first (session state of a pinned
//! client), or closes it (any other case: its state is unknown).
//!
//! The [`registry`] holds every pool of both protocols.
//!
//! The pool knows nothing about PostgreSQL or MySQL: a [`Connector`] opens
//! servers and a [`PooledServer`] reports the facts the pool needs. The
//! bookkeeping lives in the synchronous [`state`] machine behind a short
//! mutex; waiting happens outside the lock.
//!
//! Cancel safety: a checkout future dropped while queued removes itself from
//! the queue, and a grant that raced with the drop is handed back.

#[cfg(test)]
mod connect_retry_tests;
pub mod registry;
pub mod state;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use thiserror::Error;
use tokio::sync::Notify;

use crate::addr::PeerAddr;
use crate::clock::Tick;
use crate::config::{PoolConfig, PoolMode};
use crate::stats::Counters;
use state::{Aging, Grant, PoolState, Step};

pub use state::Counts;

/// Identity of a pool: the client-visible database name and the server user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// Database name as clients write it.
    pub database: Arc<str>,
    /// User the servers log in as.
    pub user: Arc<str>,
}

/// Why a server could not be opened. Carries what the client should see.
#[derive(Debug, Clone, Error)]
#[error("{message}")]
pub struct ConnectError {
    /// SQLSTATE for the client.
    pub sqlstate: &'static str,
    /// Message for the client and the log (never contains a password).
    pub message: String,
}

/// Why a checkout failed.
#[derive(Debug, Clone, Error)]
pub enum CheckoutError {
    /// Every server stayed busy for `checkout_timeout`.
    #[error(
        "pool \"{database}/{user}\" is full: all {size} server connections stayed busy for {waited_ms} ms (checkout_timeout); {waiting} clients were waiting. Raise pool.size or pool.size_per_cpu, shorten transactions, or raise pool.checkout_timeout"
    )]
    Timeout {
        /// Database of the pool.
        database: Arc<str>,
        /// User of the pool.
        user: Arc<str>,
        /// Configured size.
        size: usize,
        /// How long the client waited.
        waited_ms: u128,
        /// Clients waiting when it gave up (including itself).
        waiting: usize,
    },
    /// A new server could not be opened.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The pool was removed (RELOAD) or the proxy is shutting down.
    #[error("pool \"{0}\" is closed")]
    Closed(String),
}

/// Boxed future returned by a [`Connector`].
pub type ConnectFuture<S> = Pin<Box<dyn Future<Output = Result<S, ConnectError>> + Send>>;

/// Opens new server connections for a pool.
pub trait Connector<S>: Send + Sync + 'static {
    /// Opens and authenticates one server connection.
    fn connect(&self, info: Arc<ServerInfo>) -> ConnectFuture<S>;
}

/// Boxed future of [`PooledServer::reset`].
pub type ResetFuture<'a> = Pin<Box<dyn Future<Output = bool> + Send + 'a>>;

/// What the pool needs from a server connection. The server owns its
/// protocol state (transaction status, replies still owed, whether that
/// state is known at all), so it alone answers these.
pub trait PooledServer: Send + 'static {
    /// Shared facts shown by SHOW SERVERS.
    fn info(&self) -> &Arc<ServerInfo>;
    /// Cheap check before lending an idle server: false when the server
    /// closed or sent something unexpected while idle.
    fn is_usable(&mut self) -> bool;
    /// At the end of a lease: idle, nothing owed, state known. A server
    /// that is not clean is closed.
    fn is_clean(&self) -> bool;
    /// Clean, but carrying the last client's session state (a pinned or
    /// session-mode client): [`PooledServer::reset`] it before reuse.
    fn needs_reset(&self) -> bool;
    /// Clears session state (DISCARD ALL, COM_RESET_CONNECTION); true when
    /// the server is clean afterwards.
    fn reset(&mut self) -> ResetFuture<'_>;
}

/// Server state as shown by SHOW SERVERS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ServerState {
    /// Logging in.
    Login = 0,
    /// Lent to a client.
    Active = 1,
    /// Waiting in the pool.
    Idle = 2,
}

impl ServerState {
    /// PgBouncer's name for the state.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Login => "login",
            ServerState::Active => "active",
            ServerState::Idle => "idle",
        }
    }
}

/// Facts about one server connection, shared between the connection and
/// the admin port. Updated with relaxed atomics at lease boundaries.
#[derive(Debug)]
pub struct ServerInfo {
    /// Unique id (also PgBouncer's `ptr` column).
    pub id: u64,
    /// Pool generation at connect time.
    pub generation: u64,
    /// When the connection was opened.
    pub connect_time: SystemTime,
    /// Monotonic open time.
    pub created: Tick,
    state: AtomicU8,
    link: AtomicU64,
    request_time_us: AtomicI64,
    /// Server process id (PostgreSQL) or thread id (MySQL).
    pub remote_pid: AtomicI64,
    /// Address of the server.
    pub addr: Mutex<Option<PeerAddr>>,
    /// Our end of the connection.
    pub local_addr: Mutex<Option<PeerAddr>>,
    /// The socket file of a server reached over a Unix socket (where
    /// cancel requests go).
    pub socket_path: std::sync::OnceLock<std::path::PathBuf>,
    /// TLS description, empty when plain.
    pub tls: Mutex<String>,
    /// application_name currently set on the server.
    pub application_name: Mutex<String>,
    /// Prepared statements held on the server.
    pub prepared_statements: AtomicUsize,
    /// Set when the server will be closed at release (RECONNECT, RELOAD).
    pub close_needed: AtomicBool,
    /// What a cancel request to this server must carry besides
    /// `remote_pid` (PostgreSQL: the BackendKeyData secret; empty for MySQL,
    /// whose KILL QUERY needs only the thread id).
    pub cancel_token: Mutex<Vec<u8>>,
    /// The pool's `query_timeout` when the server was lent (nanoseconds).
    query_timeout_ns: AtomicU64,
}

fn config_ns(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A process-unique id for clients and servers.
pub fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Microseconds since the Unix epoch.
pub fn unix_us(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl ServerInfo {
    /// Facts for a connection outside any pool (auth_query lookups).
    pub fn detached() -> Arc<Self> {
        Arc::new(Self::new(0))
    }

    fn new(generation: u64) -> Self {
        let now = SystemTime::now();
        ServerInfo {
            id: next_id(),
            generation,
            connect_time: now,
            created: Tick::now(),
            state: AtomicU8::new(ServerState::Login as u8),
            link: AtomicU64::new(0),
            request_time_us: AtomicI64::new(unix_us(now)),
            remote_pid: AtomicI64::new(0),
            addr: Mutex::new(None),
            local_addr: Mutex::new(None),
            socket_path: std::sync::OnceLock::new(),
            tls: Mutex::new(String::new()),
            application_name: Mutex::new(String::new()),
            prepared_statements: AtomicUsize::new(0),
            close_needed: AtomicBool::new(false),
            cancel_token: Mutex::new(Vec::new()),
            query_timeout_ns: AtomicU64::new(0),
        }
    }

    /// How long the server may stay silent while it owes a reply (the
    /// pool's `query_timeout` at lease time; zero = no limit).
    pub fn query_timeout(&self) -> Duration {
        Duration::from_nanos(self.query_timeout_ns.load(Ordering::Relaxed))
    }

    /// Current state.
    pub fn state(&self) -> ServerState {
        match self.state.load(Ordering::Relaxed) {
            0 => ServerState::Login,
            1 => ServerState::Active,
            _ => ServerState::Idle,
        }
    }

    /// Id of the client holding the server, 0 when none.
    pub fn link(&self) -> u64 {
        self.link.load(Ordering::Relaxed)
    }

    /// Last time the server was lent or returned (Unix microseconds).
    pub fn request_time_us(&self) -> i64 {
        self.request_time_us.load(Ordering::Relaxed)
    }

    fn set(&self, state: ServerState, link: u64, now: Tick) {
        self.state.store(state as u8, Ordering::Relaxed);
        self.link.store(link, Ordering::Relaxed);
        self.request_time_us.store(now.unix_us(), Ordering::Relaxed);
    }
}

/// Pools usually hold boxed servers, so lending one moves a pointer.
impl<T: PooledServer> PooledServer for Box<T> {
    fn info(&self) -> &Arc<ServerInfo> {
        (**self).info()
    }
    fn is_usable(&mut self) -> bool {
        (**self).is_usable()
    }
    fn is_clean(&self) -> bool {
        (**self).is_clean()
    }
    fn needs_reset(&self) -> bool {
        (**self).needs_reset()
    }
    fn reset(&mut self) -> ResetFuture<'_> {
        (**self).reset()
    }
}

impl<S: PooledServer> Aging for S {
    fn created(&self) -> Tick {
        self.info().created
    }
    fn generation(&self) -> u64 {
        self.info().generation
    }
}

/// A pool of server connections for one (database, user).
pub struct Pool<S: PooledServer> {
    /// Which database and user this pool serves.
    pub key: PoolKey,
    config: Mutex<PoolConfig>,
    state: Mutex<PoolState<S>>,
    connector: Box<dyn Connector<S>>,
    servers: Mutex<Vec<Arc<ServerInfo>>>,
    /// Sharded transaction and byte counters (SHOW STATS).
    pub stats: Counters,
    /// Logged-in clients using this pool.
    pub clients: AtomicUsize,
    retired: AtomicBool,
    released: Notify,
    /// After a failed warm-up connect, no warm-up before this time.
    warm_backoff: Mutex<Option<Tick>>,
    /// Copies of the two settings read on every checkout and release, so
    /// the hot path takes no lock for them.
    checkout_timeout_ns: AtomicU64,
    max_lifetime_ns: AtomicU64,
    query_timeout_ns: AtomicU64,
}

impl<S: PooledServer> std::fmt::Debug for Pool<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("key", &self.key).finish()
    }
}

impl<S: PooledServer> Pool<S> {
    /// A pool with no servers yet.
    pub fn new(key: PoolKey, config: PoolConfig, connector: Box<dyn Connector<S>>) -> Arc<Self> {
        let (checkout_timeout, max_lifetime) = (config.checkout_timeout, config.max_lifetime);
        let query_timeout = config.query_timeout;
        Arc::new(Pool {
            key,
            state: Mutex::new(PoolState::new(config.size)),
            config: Mutex::new(config),
            connector,
            servers: Mutex::new(Vec::new()),
            stats: Counters::default(),
            clients: AtomicUsize::new(0),
            retired: AtomicBool::new(false),
            released: Notify::new(),
            warm_backoff: Mutex::new(None),
            checkout_timeout_ns: AtomicU64::new(config_ns(checkout_timeout)),
            max_lifetime_ns: AtomicU64::new(config_ns(max_lifetime)),
            query_timeout_ns: AtomicU64::new(config_ns(query_timeout)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, PoolState<S>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Current settings.
    pub fn config(&self) -> PoolConfig {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn max_lifetime(&self) -> Duration {
        Duration::from_nanos(self.max_lifetime_ns.load(Ordering::Relaxed))
    }

    /// Pool mode (read at every session start).
    pub fn mode(&self) -> PoolMode {
        self.config.lock().unwrap_or_else(|e| e.into_inner()).mode
    }

    /// Applies new settings (RELOAD). Surplus servers close on release.
    pub fn reconfigure(&self, config: PoolConfig) {
        let size = config.size;
        self.checkout_timeout_ns
            .store(config_ns(config.checkout_timeout), Ordering::Relaxed);
        self.max_lifetime_ns
            .store(config_ns(config.max_lifetime), Ordering::Relaxed);
        self.query_timeout_ns
            .store(config_ns(config.query_timeout), Ordering::Relaxed);
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = config;
        let closed = self.lock().set_size(size);
        self.close_all(closed);
    }

    /// Counts for SHOW POOLS.
    pub fn counts(&self) -> Counts {
        self.lock().counts(Tick::now())
    }

    /// Shared infos of every open server (SHOW SERVERS).
    pub fn servers(&self) -> Vec<Arc<ServerInfo>> {
        self.servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// True once RELOAD removed or replaced this pool.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    /// Lends a server, waiting up to `checkout_timeout` in FIFO order.
    /// `client_id` is recorded as the server's link.
    ///
    /// Cancel safety: dropping the future leaves the queue and hands back
    /// anything granted meanwhile.
    /// `started` is when the client asked (the caller usually has the time
    /// at hand); [`Lease::checked_out_at`] tells when it got the server.
    pub async fn checkout(
        self: &Arc<Self>,
        client_id: u64,
        started: Tick,
    ) -> Result<Lease<S>, CheckoutError> {
        if self.is_retired() {
            return Err(CheckoutError::Closed(self.key.database.to_string()));
        }
        let timeout = Duration::from_nanos(self.checkout_timeout_ns.load(Ordering::Relaxed));
        let mut at = started;
        loop {
            let step = self.lock().checkout(started);
            let grant = match step {
                Step::Server(s) => Grant::Server(s),
                Step::Connect => Grant::Connect,
                Step::Wait(id, rx) => {
                    let mut waiter = Waiter {
                        pool: self,
                        id,
                        rx: Some(rx),
                    };
                    let g = waiter.wait(started + timeout, started).await?;
                    at = Tick::now();
                    g
                }
            };
            match grant {
                Grant::Server(mut s) => {
                    if s.is_usable() {
                        return Ok(self.lease(s, client_id, at));
                    }
                    // Died while idle: close it and try again (capacity freed).
                    let closed = self.lock().release(s, false, Tick::now(), Duration::ZERO);
                    if let Some(s) = closed {
                        self.close(s);
                    }
                }
                Grant::Connect => match self.open().await {
                    Ok(s) => {
                        self.lock().connected();
                        return Ok(self.lease(s, client_id, Tick::now()));
                    }
                    // A server that is restarting: try again while the
                    // client may still wait.
                    Err(e) => retry_pause(&e, started + timeout).await.ok_or(e)?,
                },
            }
        }
    }

    /// The synchronous fast path of [`Pool::checkout`]: an idle server if
    /// one is available right now and nobody is queued.
    pub fn try_checkout(self: &Arc<Self>, client_id: u64, now: Tick) -> Option<Lease<S>> {
        if self.is_retired() {
            return None;
        }
        let mut s = self.lock().take_idle()?;
        if s.is_usable() {
            return Some(self.lease(s, client_id, now));
        }
        let closed = self.lock().release(s, false, now, Duration::ZERO);
        if let Some(s) = closed {
            self.close(s);
        }
        None
    }

    fn lease(self: &Arc<Self>, s: S, client_id: u64, at: Tick) -> Lease<S> {
        s.info().set(ServerState::Active, client_id, at);
        s.info().query_timeout_ns.store(
            self.query_timeout_ns.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        Lease {
            server: Some(s),
            pool: self.clone(),
            at,
        }
    }

    /// Opens a server on a connect slot already counted as connecting.
    async fn open(self: &Arc<Self>) -> Result<S, ConnectError> {
        let generation = self.lock().generation();
        let info = Arc::new(ServerInfo::new(generation));
        self.servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(info.clone());
        // If this future is dropped mid-connect, the slot must be released.
        let mut slot = ConnectSlot {
            pool: self,
            info: Some(info.clone()),
        };
        let result = self.connector.connect(info).await;
        match result {
            Ok(s) => {
                slot.info = None;
                Ok(s)
            }
            Err(e) => {
                tracing::warn!(database = %self.key.database, user = %self.key.user, error = %e, "server connection failed");
                Err(e)
                // `slot` drops here: unregisters and frees the capacity.
            }
        }
    }

    fn unregister(&self, id: u64) {
        let mut servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = servers.iter().position(|s| s.id == id) {
            servers.swap_remove(i);
        }
    }

    fn close_all(&self, servers: Vec<S>) {
        for s in servers {
            self.close(s);
        }
    }

    fn close(&self, s: S) {
        self.unregister(s.info().id);
        drop(s);
    }

    fn release(&self, server: S, reusable: bool) {
        let max_lifetime = self.max_lifetime();
        let reusable =
            reusable && !self.is_retired() && !server.info().close_needed.load(Ordering::Relaxed);
        let now = Tick::now();
        server.info().set(ServerState::Idle, 0, now);
        let mut st = self.lock();
        let closed = st.release(server, reusable, now, max_lifetime);
        // Only PAUSE waits for the pool to drain.
        let idle_now = st.active() == 0 && st.is_paused();
        drop(st);
        if let Some(s) = closed {
            self.close(s);
        }
        if idle_now {
            self.released.notify_waiters();
        }
    }

    /// PAUSE: stop lending, close idle servers, and wait until every lent
    /// server has come back (and been closed).
    pub async fn pause(&self) {
        let closed = self.lock().pause();
        self.close_all(closed);
        loop {
            let notified = self.released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().active() == 0 {
                let closed = self.lock().drain_idle();
                self.close_all(closed);
                return;
            }
            notified.await;
        }
    }

    /// Stops lending and closes idle servers without waiting for lent ones
    /// (a pool created while its database is paused starts this way).
    pub fn pause_now(&self) {
        let closed = self.lock().pause();
        self.close_all(closed);
    }

    /// RESUME after PAUSE.
    pub fn resume(&self) {
        self.lock().resume();
    }

    /// True while paused.
    pub fn is_paused(&self) -> bool {
        self.lock().is_paused()
    }

    /// RECONNECT: close idle servers now and lent ones when released.
    pub fn reconnect(&self) {
        for s in self.servers() {
            s.close_needed.store(true, Ordering::Relaxed);
        }
        let closed = self.lock().reconnect();
        self.close_all(closed);
    }

    /// Retires the pool (RELOAD removed it, KILL, shutdown): no new
    /// checkouts; idle servers close now, lent ones at release.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
        let mut st = self.lock();
        let closed = st.drain_idle();
        st.drop_waiters();
        drop(st);
        self.close_all(closed);
    }

    /// Periodic upkeep: closes idle and expired servers and opens servers to
    /// reach `min_idle`. Called by the janitor about once a second.
    pub fn maintain(self: &Arc<Self>) {
        if self.is_retired() {
            return;
        }
        let cfg = self.config();
        let (closed, to_open) = self.lock().maintain(
            Tick::now(),
            cfg.idle_timeout,
            cfg.max_lifetime,
            cfg.min_idle,
        );
        self.close_all(closed);
        for _ in 0..to_open {
            let pool = self.clone();
            tokio::spawn(async move {
                match pool.open().await {
                    Ok(s) => {
                        s.info().set(ServerState::Idle, 0, Tick::now());
                        pool.lock().warmed(s, Tick::now());
                    }
                    Err(_) => {
                        *pool.warm_backoff.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(Tick::now() + Duration::from_secs(5));
                    }
                }
            });
        }
    }
}

/// Pause between connect attempts while a server cannot be reached.
const CONNECT_RETRY: Duration = Duration::from_millis(200);

/// After a failed connect: waits [`CONNECT_RETRY`] and returns `Some` when
/// the failure is one a restarting server gives (refused, reset, "starting
/// up" / "shutting down") and the checkout deadline leaves room for
/// another attempt; `None` to hand the error to the client now (bad
/// password, unknown database, deadline near).
async fn retry_pause(e: &ConnectError, deadline: Tick) -> Option<()> {
    let transient = e.sqlstate.starts_with("08") || e.sqlstate == "57P03";
    if !transient || Tick::now() + CONNECT_RETRY >= deadline {
        return None;
    }
    tokio::time::sleep(CONNECT_RETRY).await;
    Some(())
}

/// A queued checkout. Its drop leaves the queue (cancel safety).
struct Waiter<'a, S: PooledServer> {
    pool: &'a Pool<S>,
    id: u64,
    rx: Option<tokio::sync::oneshot::Receiver<Grant<S>>>,
}

impl<S: PooledServer> Waiter<'_, S> {
    async fn wait(&mut self, deadline: Tick, started: Tick) -> Result<Grant<S>, CheckoutError> {
        let mut deadline = deadline;
        loop {
            let rx = self.rx.as_mut().expect("receiver present while waiting");
            match tokio::time::timeout_at(deadline.into(), rx).await {
                Ok(Ok(grant)) => {
                    self.rx = None;
                    return Ok(grant);
                }
                Ok(Err(_)) => {
                    // The pool dropped its waiters: retired.
                    self.rx = None;
                    return Err(CheckoutError::Closed(self.pool.key.database.to_string()));
                }
                Err(_) => {
                    let counts = self.pool.counts();
                    if counts.paused {
                        // PAUSE holds clients without a time limit.
                        deadline = Tick::now() + Duration::from_millis(250);
                        continue;
                    }
                    return Err(CheckoutError::Timeout {
                        database: self.pool.key.database.clone(),
                        user: self.pool.key.user.clone(),
                        size: counts.size,
                        waited_ms: started.elapsed().as_millis(),
                        waiting: counts.waiting,
                    });
                }
            }
        }
    }
}

impl<S: PooledServer> Drop for Waiter<'_, S> {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        let mut st = self.pool.lock();
        if st.cancel_wait(self.id) {
            return;
        }
        // Already granted: hand the grant back.
        if let Ok(grant) = rx.try_recv() {
            let max_lifetime = self.pool.max_lifetime();
            let closed = st.return_grant(grant, Tick::now(), max_lifetime);
            drop(st);
            if let Some(s) = closed {
                self.pool.close(s);
            }
        }
    }
}

/// A connect slot in flight; its drop (failure or cancellation) frees it.
struct ConnectSlot<'a, S: PooledServer> {
    pool: &'a Pool<S>,
    info: Option<Arc<ServerInfo>>,
}

impl<S: PooledServer> Drop for ConnectSlot<'_, S> {
    fn drop(&mut self) {
        if let Some(info) = self.info.take() {
            self.pool.unregister(info.id);
            self.pool.lock().connect_failed();
        }
    }
}

/// How long a reset may take before the server is closed instead.
const RESET_TIMEOUT: Duration = Duration::from_secs(5);

/// A server lent to one client. Dropping it decides, in this one place, by
/// asking the server: a clean server goes back to the pool, a clean one
/// carrying session state is reset first (in a task of its own; it counts
/// as lent meanwhile), and any other is closed.
pub struct Lease<S: PooledServer> {
    server: Option<S>,
    pool: Arc<Pool<S>>,
    at: Tick,
}

impl<S: PooledServer> Lease<S> {
    /// When the server was handed over.
    pub fn checked_out_at(&self) -> Tick {
        self.at
    }

    /// The pool this lease came from.
    pub fn pool(&self) -> &Arc<Pool<S>> {
        &self.pool
    }

    /// The server connection.
    #[inline]
    pub fn server(&mut self) -> &mut S {
        self.server
            .as_mut()
            .expect("lease holds a server until dropped")
    }

    /// The server connection (shared).
    #[inline]
    pub fn server_ref(&self) -> &S {
        self.server
            .as_ref()
            .expect("lease holds a server until dropped")
    }
}

impl<S: PooledServer> Drop for Lease<S> {
    fn drop(&mut self) {
        let Some(mut s) = self.server.take() else {
            return;
        };
        if !s.is_clean() {
            self.pool.release(s, false);
            return;
        }
        if !s.needs_reset() {
            self.pool.release(s, true);
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.pool.release(s, false);
            return;
        };
        let pool = self.pool.clone();
        rt.spawn(async move {
            let ok = matches!(
                tokio::time::timeout(RESET_TIMEOUT, s.reset()).await,
                Ok(true)
            );
            let clean = ok && s.is_clean();
            pool.release(s, clean);
        });
    }
}
