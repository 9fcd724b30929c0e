//! Protocol-agnostic facts about client connections, and the registry the
//! admin port and cancel requests read.
//!
//! Each session owns an `Arc<ClientInfo>` and updates its atomics at state
//! changes (login, waiting, active, idle), never per message. The registry
//! is touched only when a client connects or disconnects.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::addr::PeerAddr;
use crate::config::Protocol;
use crate::pool::unix_us;

/// Client state as shown by SHOW CLIENTS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ClientState {
    /// Authenticating.
    Login = 0,
    /// Logged in, no server lent.
    Idle = 1,
    /// Waiting for a server.
    Waiting = 2,
    /// Holding a server.
    Active = 3,
}

impl ClientState {
    /// The PgBouncer-compatible name.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientState::Login => "login",
            ClientState::Idle => "idle",
            ClientState::Waiting => "waiting",
            ClientState::Active => "active",
        }
    }
}

/// Why a client holds its server beyond a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PinReason {
    /// Not pinned.
    None = 0,
    /// Pool in session mode.
    SessionMode = 1,
    /// LISTEN.
    Listen = 2,
    /// Session-level advisory lock.
    AdvisoryLock = 3,
    /// Temporary table.
    TempTable = 4,
    /// SQL-level PREPARE.
    SqlPrepare = 5,
    /// DECLARE ... WITH HOLD.
    HoldCursor = 6,
    /// Other session state that cannot be re-applied (LOAD, replication).
    Other = 7,
    /// MySQL user variables.
    UserVariable = 8,
    /// MySQL LOCK TABLES.
    TableLock = 9,
}

impl PinReason {
    /// Name for SHOW CLIENTS and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            PinReason::None => "",
            PinReason::SessionMode => "session_mode",
            PinReason::Listen => "listen",
            PinReason::AdvisoryLock => "advisory_lock",
            PinReason::TempTable => "temp_table",
            PinReason::SqlPrepare => "sql_prepare",
            PinReason::HoldCursor => "hold_cursor",
            PinReason::Other => "session_state",
            PinReason::UserVariable => "user_variable",
            PinReason::TableLock => "table_lock",
        }
    }

    fn from_u8(v: u8) -> PinReason {
        match v {
            1 => PinReason::SessionMode,
            2 => PinReason::Listen,
            3 => PinReason::AdvisoryLock,
            4 => PinReason::TempTable,
            5 => PinReason::SqlPrepare,
            6 => PinReason::HoldCursor,
            7 => PinReason::Other,
            8 => PinReason::UserVariable,
            9 => PinReason::TableLock,
            _ => PinReason::None,
        }
    }
}

/// One client connection, as the admin port and the insight layer see it.
#[derive(Debug)]
pub struct ClientInfo {
    /// Process-unique id (PgBouncer's `id` and `ptr`).
    pub id: u64,
    /// Which front end accepted it.
    pub protocol: Protocol,
    /// Client address (`unix` and the listener's port for a Unix socket).
    pub addr: PeerAddr,
    /// Our listening address it connected to.
    pub local_addr: PeerAddr,
    /// When it connected.
    pub connect_time: SystemTime,
    /// Login user (set once after login).
    pub user: Mutex<String>,
    /// Database name it asked for (set once after login).
    pub database: Mutex<String>,
    /// Current application_name.
    pub application_name: Mutex<String>,
    /// TLS description, empty when plain.
    pub tls: Mutex<String>,
    state: AtomicU8,
    link: AtomicU64,
    request_time_us: AtomicI64,
    wait_start_us: AtomicI64,
    pin: AtomicU8,
    /// Prepared statements the client has defined.
    pub prepared_statements: AtomicUsize,
    /// Key handed out in BackendKeyData (PostgreSQL) or the connection id
    /// (MySQL) for cancel requests.
    pub cancel_key: (i32, i32),
    /// KILL, shutdown drain and hard shutdown, as seen by this client's
    /// task.
    pub signals: Signals,
}

/// Events that end or change a client session, raised by other tasks and
/// awaited by the session's own task.
///
/// One atomic and one waker per client: checking them costs the session's
/// task a load and a waker comparison per wake-up, where a
/// `CancellationToken` future takes two mutexes per poll. Global events
/// (shutdown) are raised on every registered client.
#[derive(Debug, Default)]
pub struct Signals {
    raised: AtomicU8,
    waker: futures::task::AtomicWaker,
}

impl Signals {
    /// KILL from the admin console: end the session now.
    pub const KILL: u8 = 1;
    /// Graceful shutdown: end the session at its next idle moment.
    pub const DRAIN: u8 = 2;
    /// Shutdown timeout reached or immediate shutdown: end it now.
    pub const HARD: u8 = 4;

    /// Raises `bits` and wakes the session's task.
    pub fn raise(&self, bits: u8) {
        self.raised.fetch_or(bits, Ordering::SeqCst);
        self.waker.wake();
    }

    /// The raised bits among `mask` (0 when none).
    #[inline]
    pub fn raised(&self, mask: u8) -> u8 {
        self.raised.load(Ordering::Acquire) & mask
    }

    /// Ready with the raised bits once any of `mask` is raised. Only the
    /// session's own task may poll (the waker slot holds one task).
    #[inline]
    pub fn poll_raised(&self, cx: &mut std::task::Context<'_>, mask: u8) -> std::task::Poll<u8> {
        let bits = self.raised(mask);
        if bits != 0 {
            return std::task::Poll::Ready(bits);
        }
        self.waker.register(cx.waker());
        match self.raised(mask) {
            0 => std::task::Poll::Pending,
            bits => std::task::Poll::Ready(bits),
        }
    }

    /// Waits until any of `mask` is raised; returns the raised bits.
    pub async fn wait(&self, mask: u8) -> u8 {
        std::future::poll_fn(|cx| self.poll_raised(cx, mask)).await
    }
}

impl ClientInfo {
    /// A new client in the login state.
    pub fn new(
        protocol: Protocol,
        addr: PeerAddr,
        local_addr: PeerAddr,
        cancel_key: (i32, i32),
    ) -> Self {
        let now = SystemTime::now();
        ClientInfo {
            id: crate::pool::next_id(),
            protocol,
            addr,
            local_addr,
            connect_time: now,
            user: Mutex::new(String::new()),
            database: Mutex::new(String::new()),
            application_name: Mutex::new(String::new()),
            tls: Mutex::new(String::new()),
            state: AtomicU8::new(ClientState::Login as u8),
            link: AtomicU64::new(0),
            request_time_us: AtomicI64::new(unix_us(now)),
            wait_start_us: AtomicI64::new(0),
            pin: AtomicU8::new(0),
            prepared_statements: AtomicUsize::new(0),
            cancel_key,
            signals: Signals::default(),
        }
    }

    /// Current state.
    pub fn state(&self) -> ClientState {
        match self.state.load(Ordering::Relaxed) {
            0 => ClientState::Login,
            1 => ClientState::Idle,
            2 => ClientState::Waiting,
            _ => ClientState::Active,
        }
    }

    /// Records a state change with the current time.
    #[inline]
    pub fn set_state(&self, state: ClientState, now_us: i64) {
        self.state.store(state as u8, Ordering::Relaxed);
        self.request_time_us.store(now_us, Ordering::Relaxed);
        if state == ClientState::Waiting {
            self.wait_start_us.store(now_us, Ordering::Relaxed);
        }
    }

    /// Links the client to a server id (0 = none).
    #[inline]
    pub fn set_link(&self, server_id: u64) {
        self.link.store(server_id, Ordering::Relaxed);
    }

    /// Server id the client holds, 0 when none.
    pub fn link(&self) -> u64 {
        self.link.load(Ordering::Relaxed)
    }

    /// Time of the last state change (Unix microseconds).
    pub fn request_time_us(&self) -> i64 {
        self.request_time_us.load(Ordering::Relaxed)
    }

    /// When the current wait began (Unix microseconds), if waiting.
    pub fn wait_start_us(&self) -> Option<i64> {
        (self.state() == ClientState::Waiting).then(|| self.wait_start_us.load(Ordering::Relaxed))
    }

    /// Why the client holds its server between transactions.
    pub fn pin(&self) -> PinReason {
        PinReason::from_u8(self.pin.load(Ordering::Relaxed))
    }

    /// Sets the pin reason.
    pub fn set_pin(&self, reason: PinReason) {
        self.pin.store(reason as u8, Ordering::Relaxed);
    }

    /// User name (cloned).
    pub fn user(&self) -> String {
        self.user.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Database name (cloned).
    pub fn database(&self) -> String {
        self.database
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// application_name (cloned).
    pub fn application_name(&self) -> String {
        self.application_name
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Every connected client, by id and by cancel key.
#[derive(Debug, Default)]
pub struct ClientRegistry {
    inner: Mutex<RegistryInner>,
    count: AtomicUsize,
}

#[derive(Debug, Default)]
struct RegistryInner {
    by_id: IdMap<u64, Arc<ClientInfo>>,
    by_key: IdMap<(i32, i32), u64>,
}

/// A map keyed by values sqlmux chose itself (sequential client ids,
/// random cancel keys), which nobody can pick to collide: one multiply per
/// word instead of SipHash, which only keys a peer chooses need.
type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// The multiply-rotate hash of [`IdMap`] keys.
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl IdHasher {
    /// An odd constant with well-spread bits (2^64 / golden ratio).
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
}

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(Self::K);
    }

    fn write_i32(&mut self, n: i32) {
        self.write_u64(u64::from(n as u32));
    }
}

impl ClientRegistry {
    /// Adds a client; the returned guard removes it on drop.
    pub fn register(self: &Arc<Self>, info: Arc<ClientInfo>) -> Registration {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.by_key.insert(info.cancel_key, info.id);
        inner.by_id.insert(info.id, info.clone());
        self.count.fetch_add(1, Ordering::Relaxed);
        Registration {
            registry: self.clone(),
            info,
        }
    }

    /// Connected clients.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// True when no client is connected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Raises `bits` on every connected client (see [`Signals`]).
    pub fn raise_all(&self, bits: u8) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for c in inner.by_id.values() {
            c.signals.raise(bits);
        }
    }

    /// All clients (SHOW CLIENTS).
    pub fn all(&self) -> Vec<Arc<ClientInfo>> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = inner.by_id.values().cloned().collect();
        v.sort_by_key(|c| c.id);
        v
    }

    /// The client a cancel key belongs to.
    pub fn by_cancel_key(&self, key: (i32, i32)) -> Option<Arc<ClientInfo>> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let id = inner.by_key.get(&key)?;
        inner.by_id.get(id).cloned()
    }

    /// True if a cancel key is already in use.
    pub fn key_in_use(&self, key: (i32, i32)) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_key
            .contains_key(&key)
    }
}

/// Keeps a client in the registry while alive.
#[derive(Debug)]
pub struct Registration {
    registry: Arc<ClientRegistry>,
    info: Arc<ClientInfo>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut inner = self
            .registry
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        inner.by_id.remove(&self.info.id);
        inner.by_key.remove(&self.info.cancel_key);
        self.registry.count.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_maps_find_what_they_hold() {
        let mut m: IdMap<(i32, i32), u64> = IdMap::default();
        for i in 0..10_000i32 {
            m.insert((i, -i), i as u64);
        }
        assert!((0..10_000i32).all(|i| m.get(&(i, -i)) == Some(&(i as u64))));
        assert_eq!(m.get(&(1, 1)), None);
        let hash = |n: u64| {
            let mut h = IdHasher::default();
            h.write_u64(n);
            h.finish()
        };
        // Sequential ids spread over the top bits (hashbrown's tags).
        let tags: std::collections::HashSet<u64> = (0..1_000).map(|n| hash(n) >> 57).collect();
        assert!(tags.len() > 100, "{} distinct tags", tags.len());
    }

    #[tokio::test]
    async fn signals_wake_a_waiting_task_and_report_only_their_mask() {
        let s = Arc::new(Signals::default());
        // Raised before the wait: ready at once.
        s.raise(Signals::DRAIN);
        assert_eq!(s.wait(Signals::DRAIN | Signals::KILL).await, Signals::DRAIN);
        // Bits outside the mask do not wake.
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.wait(Signals::KILL | Signals::HARD).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        s.raise(Signals::HARD);
        assert_eq!(waiter.await.unwrap(), Signals::HARD);
        assert_eq!(s.raised(Signals::KILL), 0);
    }
}
