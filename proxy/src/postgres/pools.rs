//! The PostgreSQL pools of one proxy, keyed by (database, server user), and
//! what each pool remembers about its servers' parameters.
//!
//! Pools are created on the first client login that needs them. RELOAD
//! reconfigures pools in place, or retires those whose database entry
//! vanished or now points elsewhere (sessions notice at their next checkout
//! and move to the new pool; servers of a retired pool close at release).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use crate::auth::Users;
use crate::config::{Config, DatabaseConfig};
use crate::insight::{Insight, PoolTag};
use crate::pool::{Pool, PoolKey};
use crate::postgres::params::ParamMap;
use crate::postgres::server::{PgConnector, PgServer, ServerLogin};

/// A pool plus PostgreSQL-specific caches.
pub struct PgPoolEntry {
    /// The pool.
    pub pool: Arc<Pool<Box<PgServer>>>,
    /// The database entry the pool was built from.
    pub db: DatabaseConfig,
    /// Insight tag of (database, user).
    pub tag: PoolTag,
    /// ParameterStatus values a fresh server reports (sent to clients at login).
    pub welcome: Mutex<Option<ParamMap>>,
    /// (parameter, value as a client wrote it) -> (name, value as the server
    /// reports it), learned from servers so logins need no round trip.
    pub canonical: Mutex<HashMap<(String, String), (String, String)>>,
}

impl std::fmt::Debug for PgPoolEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPoolEntry")
            .field("key", &self.pool.key)
            .finish()
    }
}

/// Every PostgreSQL pool.
#[derive(Debug, Default)]
pub struct PgPools {
    map: RwLock<HashMap<(String, String), Arc<PgPoolEntry>>>,
    paused: RwLock<Paused>,
}

/// Databases held by the admin PAUSE (or KILL): pools created while their
/// database is paused start paused.
#[derive(Debug, Default)]
struct Paused {
    all: bool,
    databases: std::collections::HashSet<String>,
}

/// The server login for a client of `db`: the database's own user, or the
/// client's user from `[[users]]`.
pub fn server_login(db: &DatabaseConfig, users: &Users, client_user: &str) -> Option<ServerLogin> {
    match &db.user {
        Some(user) => Some(ServerLogin::Configured {
            user: user.clone(),
            password: db.password.clone(),
        }),
        None => users.get(client_user).cloned().map(ServerLogin::ClientUser),
    }
}

/// Like [`server_login`], for a user known from `[[users]]` or found
/// through `auth_query`.
pub fn server_login_for(db: &DatabaseConfig, user: &Arc<crate::auth::AuthUser>) -> ServerLogin {
    match &db.user {
        Some(u) => ServerLogin::Configured {
            user: u.clone(),
            password: db.password.clone(),
        },
        None => ServerLogin::ClientUser(user.clone()),
    }
}

fn same_target(a: &DatabaseConfig, b: &DatabaseConfig) -> bool {
    a.host == b.host
        && a.port == b.port
        && a.dbname == b.dbname
        && a.user == b.user
        && a.password == b.password
        && a.server_tls == b.server_tls
}

impl PgPools {
    /// The pool for `db` and `login`, created on first use. A retired pool
    /// is replaced.
    pub fn get_or_create(
        &self,
        cfg: &Config,
        insight: &Insight,
        db: &DatabaseConfig,
        login: ServerLogin,
    ) -> Arc<PgPoolEntry> {
        let key = (db.name.clone(), login.user().to_owned());
        if let Some(e) = self.map.read().unwrap_or_else(|e| e.into_inner()).get(&key)
            && !e.pool.is_retired()
        {
            return e.clone();
        }
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = map.get(&key)
            && !e.pool.is_retired()
        {
            return e.clone();
        }
        let connector = PgConnector {
            host: db.host.clone(),
            port: db.port,
            dbname: db.dbname.clone(),
            login: login.clone(),
            timeout: cfg.general.server_connect_timeout,
            tls: crate::tls::connector(db.server_tls.mode, db.server_tls.ca.as_deref()),
            tls_mode: db.server_tls.mode,
        };
        let pool_key = PoolKey {
            database: db.name.as_str().into(),
            user: login.user().into(),
        };
        let entry = Arc::new(PgPoolEntry {
            pool: Pool::new(pool_key, db.pool.clone(), Box::new(connector)),
            db: db.clone(),
            tag: insight.tag(&db.name, login.user()),
            welcome: Mutex::new(None),
            canonical: Mutex::new(HashMap::new()),
        });
        if self.is_paused(&db.name) {
            entry.pool.pause_now();
        }
        tracing::debug!(database = %db.name, user = %login.user(), size = db.pool.size, "pool created");
        map.insert(key, entry.clone());
        entry
    }

    /// Every pool, sorted by database and user.
    pub fn all(&self) -> Vec<Arc<PgPoolEntry>> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = map.values().cloned().collect();
        v.sort_by(|a, b| {
            (&*a.pool.key.database, &*a.pool.key.user)
                .cmp(&(&*b.pool.key.database, &*b.pool.key.user))
        });
        v
    }

    /// Pools of one database.
    pub fn of_database(&self, name: &str) -> Vec<Arc<PgPoolEntry>> {
        self.all()
            .into_iter()
            .filter(|e| &*e.pool.key.database == name)
            .collect()
    }

    /// Applies a new configuration: reconfigures pools whose database still
    /// points at the same server, retires the others.
    pub fn reload(&self, cfg: &Config) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, e| {
            match cfg.database(&e.db.name) {
                Some(db) if same_target(&db, &e.db) => {
                    e.pool.reconfigure(db.pool.clone());
                    true
                }
                _ => {
                    e.pool.retire();
                    // Keep it listed while clients still use it.
                    e.pool.clients.load(std::sync::atomic::Ordering::Relaxed) > 0
                }
            }
        });
    }

    /// Creates the pools of databases with `min_idle > 0` up front (for the
    /// configured server user, or for every `[[users]]` entry), so their
    /// servers are warm before the first client arrives.
    pub fn warm(&self, cfg: &Config, users: &Users, insight: &Insight) {
        for db in cfg.databases.iter().filter(|d| d.pool.min_idle > 0) {
            let logins: Vec<ServerLogin> = match &db.user {
                Some(_) => server_login(db, users, "").into_iter().collect(),
                None => users
                    .names()
                    .iter()
                    .filter_map(|u| server_login(db, users, u))
                    .collect(),
            };
            for login in logins {
                self.get_or_create(cfg, insight, db, login);
            }
        }
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
        map.retain(|_, e| {
            !e.pool.is_retired() || e.pool.clients.load(std::sync::atomic::Ordering::Relaxed) > 0
        });
    }

    /// Number of pools.
    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True when no pool exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
