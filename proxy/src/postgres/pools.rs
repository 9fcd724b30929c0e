//! PostgreSQL pools: how they are built and what each remembers about its
//! servers' parameters. The pools themselves live in the one registry
//! ([`crate::pool::registry`]) beside the MySQL ones.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::auth::Users;
use crate::config::{Config, DatabaseConfig, Protocol};
use crate::insight::Insight;
use crate::pool::registry::{AnyPool, PoolEntry, Pools};
use crate::pool::{Pool, PoolKey};
use crate::postgres::params::ParamMap;
use crate::postgres::server::{PgConnector, PgServer, ServerLogin};

/// A PostgreSQL pool plus what its servers taught it.
pub struct PgPool {
    /// The pool.
    pub pool: Arc<Pool<Box<PgServer>>>,
    /// ParameterStatus values a fresh server reports (sent to clients at login).
    pub welcome: Mutex<Option<ParamMap>>,
    /// (parameter, value as a client wrote it) -> (name, value as the server
    /// reports it), learned from servers so logins need no round trip.
    pub canonical: Mutex<HashMap<(String, String), (String, String)>>,
}

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPool")
            .field("key", &self.pool.key)
            .finish()
    }
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

/// The registered pool for `db` and `login`, created on first use (a
/// retired pool is replaced); returns the entry and its PostgreSQL view.
pub fn pool_for(
    pools: &Pools,
    cfg: &Config,
    insight: &Insight,
    db: &DatabaseConfig,
    login: ServerLogin,
) -> (Arc<PoolEntry>, Arc<PgPool>) {
    let entry = pools.get_or_create(Protocol::Postgres, &db.name, login.user(), || {
        new_entry(cfg, insight, db, login.clone())
    });
    match &entry.pool {
        AnyPool::Postgres(pg) => {
            let pg = pg.clone();
            (entry, pg)
        }
        AnyPool::Mysql(_) => unreachable!("a PostgreSQL registry key holds a PostgreSQL pool"),
    }
}

fn new_entry(
    cfg: &Config,
    insight: &Insight,
    db: &DatabaseConfig,
    login: ServerLogin,
) -> PoolEntry {
    let connector = PgConnector {
        host: db.host.clone(),
        port: db.port,
        dbname: db.dbname.clone(),
        login: login.clone(),
        timeout: cfg.general.server_connect_timeout,
        tls: crate::tls::connector(db.server_tls.mode, db.server_tls.ca.as_deref()),
        tls_mode: db.server_tls.mode,
    };
    let key = PoolKey {
        database: db.name.as_str().into(),
        user: login.user().into(),
    };
    let pg = PgPool {
        pool: Pool::new(key, db.pool.clone(), Box::new(connector)),
        welcome: Mutex::new(None),
        canonical: Mutex::new(HashMap::new()),
    };
    PoolEntry {
        protocol: Protocol::Postgres,
        db: db.clone(),
        tag: insight.tag(&db.name, login.user()),
        pool: AnyPool::Postgres(Arc::new(pg)),
    }
}

/// Creates the PostgreSQL pools of databases with `min_idle > 0` up front
/// (for the configured server user, or for every `[[users]]` entry), so
/// their servers are warm before the first client arrives.
pub fn warm(pools: &Pools, cfg: &Config, users: &Users, insight: &Insight) {
    let dbs = cfg.databases.iter();
    for db in dbs.filter(|d| d.pool.min_idle > 0 && d.protocol == Protocol::Postgres) {
        let logins: Vec<ServerLogin> = match &db.user {
            Some(_) => server_login(db, users, "").into_iter().collect(),
            None => users
                .names()
                .iter()
                .filter_map(|u| server_login(db, users, u))
                .collect(),
        };
        for login in logins {
            pool_for(pools, cfg, insight, db, login);
        }
    }
}
