//! The one registry of every pool of a proxy, PostgreSQL and MySQL alike,
//! keyed by (protocol, database, server user).
//!
//! Front ends create their pools here on the first login that needs them;
//! the admin console, /metrics, the janitor, RELOAD and shutdown iterate the
//! registry and see each pool through [`PoolEntry`], which answers the
//! protocol-neutral questions (counts, servers, pause, reconnect, ...) for
//! either kind of pool. RELOAD reconfigures pools in place, or retires those
//! whose database entry vanished or now points elsewhere (sessions notice at
//! their next checkout and move to the new pool; servers of a retired pool
//! close at release).
//!
//! Concurrency: one `RwLock` around the map, taken for reading at logins
//! that find their pool and for writing only when a pool is created,
//! reloaded or pruned; never on the per-transaction path.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use super::{Counts, PoolKey, ServerInfo};
use crate::config::{Config, DatabaseConfig, PoolConfig, PoolMode, Protocol};
use crate::insight::PoolTag;
use crate::mysql::pools::MyPool;
use crate::postgres::pools::PgPool;
use crate::stats::Counters;

/// A pool of either protocol. Two protocols are two variants.
#[derive(Debug, Clone)]
pub enum AnyPool {
    /// A PostgreSQL pool with its parameter caches.
    Postgres(Arc<PgPool>),
    /// A MySQL pool with its server credentials and client profile.
    Mysql(Arc<MyPool>),
}

/// Runs the same expression on the generic pool of either variant.
macro_rules! each_pool {
    ($any:expr, $p:ident => $e:expr) => {
        match $any {
            AnyPool::Postgres(x) => {
                let $p = &x.pool;
                $e
            }
            AnyPool::Mysql(x) => {
                let $p = &x.pool;
                $e
            }
        }
    };
}

/// One registered pool: the database entry it was built from, its insight
/// tag, and the pool.
#[derive(Debug)]
pub struct PoolEntry {
    /// Protocol of the pool's servers.
    pub protocol: Protocol,
    /// The database entry the pool was built from.
    pub db: DatabaseConfig,
    /// Insight tag of (database, user).
    pub tag: PoolTag,
    /// The pool itself.
    pub pool: AnyPool,
}

impl PoolEntry {
    /// Database and server user of the pool.
    pub fn key(&self) -> &PoolKey {
        each_pool!(&self.pool, p => &p.key)
    }

    /// Counts for SHOW POOLS.
    pub fn counts(&self) -> Counts {
        each_pool!(&self.pool, p => p.counts())
    }

    /// Logged-in clients using the pool.
    pub fn clients(&self) -> usize {
        each_pool!(&self.pool, p => p.clients.load(Ordering::Relaxed))
    }

    /// Transaction and byte counters (SHOW STATS).
    pub fn stats(&self) -> &Counters {
        each_pool!(&self.pool, p => &p.stats)
    }

    /// Current pool settings.
    pub fn config(&self) -> PoolConfig {
        each_pool!(&self.pool, p => p.config())
    }

    /// Pool mode.
    pub fn mode(&self) -> PoolMode {
        each_pool!(&self.pool, p => p.mode())
    }

    /// Facts of every open server (SHOW SERVERS).
    pub fn servers(&self) -> Vec<Arc<ServerInfo>> {
        each_pool!(&self.pool, p => p.servers())
    }

    /// True once RELOAD or shutdown retired the pool.
    pub fn is_retired(&self) -> bool {
        each_pool!(&self.pool, p => p.is_retired())
    }

    /// PAUSE: returns once every lent server is back.
    pub async fn pause(&self) {
        each_pool!(&self.pool, p => p.pause().await)
    }

    /// Stops lending at once (KILL, pools created while paused).
    pub fn pause_now(&self) {
        each_pool!(&self.pool, p => p.pause_now())
    }

    /// RESUME.
    pub fn resume(&self) {
        each_pool!(&self.pool, p => p.resume())
    }

    /// RECONNECT: idle servers close now, lent ones at release.
    pub fn reconnect(&self) {
        each_pool!(&self.pool, p => p.reconnect())
    }

    /// No more checkouts; servers close.
    pub fn retire(&self) {
        each_pool!(&self.pool, p => p.retire())
    }

    /// Janitor upkeep: idle and lifetime expiry, min_idle warm-up.
    pub fn maintain(&self) {
        each_pool!(&self.pool, p => p.maintain())
    }

    fn reconfigure(&self, config: PoolConfig) {
        each_pool!(&self.pool, p => p.reconfigure(config))
    }
}

/// Registry key: (protocol, client-visible database, server user).
type Key = (Protocol, String, String);

/// Every pool of the proxy.
#[derive(Debug, Default)]
pub struct Pools {
    map: RwLock<HashMap<Key, Arc<PoolEntry>>>,
    paused: RwLock<Paused>,
}

/// Databases held by the admin PAUSE (or KILL): pools created while their
/// database is paused start paused.
#[derive(Debug, Default)]
struct Paused {
    all: bool,
    databases: HashSet<String>,
}

/// True when two database entries reach the same server the same way.
fn same_target(a: &DatabaseConfig, b: &DatabaseConfig) -> bool {
    a.protocol == b.protocol
        && a.host == b.host
        && a.port == b.port
        && a.dbname == b.dbname
        && a.user == b.user
        && a.password == b.password
        && a.server_tls == b.server_tls
}

impl Pools {
    /// The live pool registered under (protocol, database, user), or the
    /// one `create` builds (registered, and paused if its database is).
    pub fn get_or_create(
        &self,
        protocol: Protocol,
        database: &str,
        user: &str,
        create: impl FnOnce() -> PoolEntry,
    ) -> Arc<PoolEntry> {
        let key = (protocol, database.to_owned(), user.to_owned());
        let live = |e: &&Arc<PoolEntry>| !e.is_retired();
        if let Some(e) = self.read().get(&key).filter(live) {
            return e.clone();
        }
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = map.get(&key).filter(live) {
            return e.clone();
        }
        let entry = Arc::new(create());
        if self.is_paused(database) {
            entry.pause_now();
        }
        tracing::debug!(
            protocol = protocol.as_str(),
            database,
            user,
            size = entry.db.pool.size,
            "pool created"
        );
        map.insert(key, entry.clone());
        entry
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Key, Arc<PoolEntry>>> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Every pool, sorted by database, user and protocol.
    pub fn all(&self) -> Vec<Arc<PoolEntry>> {
        let mut v: Vec<_> = self.read().values().cloned().collect();
        v.sort_by(|a, b| {
            let ka = (&*a.key().database, &*a.key().user, a.protocol.as_str());
            ka.cmp(&(&*b.key().database, &*b.key().user, b.protocol.as_str()))
        });
        v
    }

    /// Pools of one database (either protocol).
    pub fn of_database(&self, name: &str) -> Vec<Arc<PoolEntry>> {
        self.all()
            .into_iter()
            .filter(|e| &*e.key().database == name)
            .collect()
    }

    /// Applies a new configuration: reconfigures pools whose database still
    /// points at the same server, retires the others (kept listed while
    /// clients still use them).
    pub fn reload(&self, cfg: &Config) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, e| match cfg.database(&e.db.name) {
            Some(db) if same_target(&db, &e.db) => {
                e.reconfigure(db.pool.clone());
                true
            }
            _ => {
                e.retire();
                e.clients() > 0
            }
        });
    }

    /// Marks `database` (every database when `None`) paused or resumed for
    /// pools created from now on; the caller pauses or resumes the existing
    /// pools. Resuming every database also clears single-database pauses.
    pub fn set_paused(&self, database: Option<&str>, paused: bool) {
        let mut p = self.paused.write().unwrap_or_else(|e| e.into_inner());
        match (database, paused) {
            (None, true) => p.all = true,
            (None, false) => {
                p.all = false;
                p.databases.clear();
            }
            (Some(db), true) => {
                p.databases.insert(db.to_owned());
            }
            (Some(db), false) => {
                p.databases.remove(db);
            }
        }
    }

    /// True when pools of `database` are held by PAUSE.
    pub fn is_paused(&self, database: &str) -> bool {
        let p = self.paused.read().unwrap_or_else(|e| e.into_inner());
        p.all || p.databases.contains(database)
    }

    /// True when the whole proxy is paused (PAUSE without a database).
    pub fn all_paused(&self) -> bool {
        self.paused.read().unwrap_or_else(|e| e.into_inner()).all
    }

    /// Drops retired pools that no client uses any more.
    pub fn prune(&self) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, e| !e.is_retired() || e.clients() > 0);
    }

    /// Logged-in clients of one database across its pools.
    pub fn clients_of(&self, database: &str) -> usize {
        self.read()
            .values()
            .filter(|e| e.db.name == database)
            .map(|e| e.clients())
            .sum()
    }

    /// Number of pools.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// True when no pool exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
