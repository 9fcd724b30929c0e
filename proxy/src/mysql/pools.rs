//! MySQL pools: how they are built and keyed. The pools live in the one
//! registry ([`crate::pool::registry`]) beside the PostgreSQL ones.
//!
//! # Keys
//!
//! A MySQL server connection's behaviour depends on capability flags fixed
//! at its login (FOUND_ROWS, MULTI_STATEMENTS, DEPRECATE_EOF, ...: the
//! [`PoolCaps`]) and on the collation its handshake named. Two clients may
//! share servers only if those match, so each (database, server user,
//! flags, collation) gets its own pool: the registry key's user part
//! carries the flags and collation after the user name, while the pool's
//! own key (shown by SHOW POOLS, used by insight) is the plain user. Clients
//! of one application send the same flags, so in practice there is one
//! pool per (database, user).

use std::sync::Arc;

use sqlmux_protocol::mysql::caps::PoolCaps;

use super::prepared::MetaCache;
use super::server::MyServer;
use super::server_login::{Credentials, MyConnector};
use crate::auth::Users;
use crate::config::{Config, DatabaseConfig, Protocol};
use crate::insight::Insight;
use crate::pool::registry::{AnyPool, PoolEntry, Pools};
use crate::pool::{Pool, PoolKey};

/// A MySQL pool and the credentials its servers log in with.
pub struct MyPool {
    /// The pool.
    pub pool: Arc<Pool<Box<MyServer>>>,
    /// Server credentials (learns keys from client logins).
    pub credentials: Arc<Credentials>,
    /// Capability flags of the pool's clients.
    pub profile: PoolCaps,
    /// Collation of the pool's clients.
    pub collation: u8,
    /// Prepare responses of the statements its clients prepared.
    pub statements: MetaCache,
}

impl std::fmt::Debug for MyPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MyPool")
            .field("key", &self.pool.key)
            .field("profile", &self.profile)
            .finish()
    }
}

/// Who servers of a pool log in as: the database entry's user, or the
/// client's own (with its `[[users]]` password, plain or `*HEX`).
pub fn server_credentials(db: &DatabaseConfig, users: &Users, client_user: &str) -> Credentials {
    match &db.user {
        Some(user) => Credentials::new(user, db.password.as_ref().map(|p| p.0.as_str())),
        None => {
            let pw = users.get(client_user).and_then(|u| u.plain());
            Credentials::new(client_user, pw)
        }
    }
}

/// What a client needs from its servers besides database and user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// Behaviour-changing capability flags.
    pub caps: PoolCaps,
    /// Handshake collation.
    pub collation: u8,
}

/// The registered pool for `db`, the server user of `credentials` and the
/// client's profile, created on first use.
pub fn pool_for(
    pools: &Pools,
    cfg: &Config,
    insight: &Insight,
    db: &DatabaseConfig,
    credentials: Credentials,
    profile: Profile,
) -> (Arc<PoolEntry>, Arc<MyPool>) {
    let key_user = format!(
        "{}\u{1}{:x}.{:x}.{}",
        credentials.user, profile.caps.client, profile.caps.mariadb, profile.collation
    );
    let entry = pools.get_or_create(Protocol::Mysql, &db.name, &key_user, || {
        new_entry(cfg, insight, db, credentials, profile)
    });
    match &entry.pool {
        AnyPool::Mysql(my) => {
            let my = my.clone();
            (entry, my)
        }
        AnyPool::Postgres(_) => unreachable!("a MySQL registry key holds a MySQL pool"),
    }
}

fn new_entry(
    cfg: &Config,
    insight: &Insight,
    db: &DatabaseConfig,
    credentials: Credentials,
    profile: Profile,
) -> PoolEntry {
    let credentials = Arc::new(credentials);
    let connector = MyConnector {
        host: db.host.clone(),
        port: db.port,
        dbname: db.dbname.clone(),
        credentials: credentials.clone(),
        profile: profile.caps,
        collation: profile.collation,
        timeout: cfg.general.server_connect_timeout,
        tls: crate::tls::connector(db.server_tls.mode, db.server_tls.ca.as_deref()),
        tls_mode: db.server_tls.mode,
    };
    let key = PoolKey {
        database: db.name.as_str().into(),
        user: credentials.user.as_str().into(),
    };
    let my = MyPool {
        pool: Pool::new(key, db.pool.clone(), Box::new(connector)),
        credentials,
        profile: profile.caps,
        collation: profile.collation,
        statements: MetaCache::new(meta_cache_size(db.pool.max_prepared_statements)),
    };
    PoolEntry {
        protocol: Protocol::Mysql,
        db: db.clone(),
        tag: insight.tag(&db.name, &my.credentials.user),
        pool: AnyPool::Mysql(Arc::new(my)),
    }
}

/// How many prepare responses a pool keeps: four times what one server
/// keeps (clients of a pool prepare the same statements), 1024 when servers
/// keep any number.
fn meta_cache_size(per_server: usize) -> usize {
    if per_server == 0 {
        1024
    } else {
        per_server * 4
    }
}

/// The profile of the common drivers (mysql_async, PyMySQL, the mariadb
/// CLI differ; this one matches a utf8mb4 client with multi-results and
/// DEPRECATE_EOF), used to warm pools before any client arrives.
const WARM_PROFILE: Profile = Profile {
    caps: PoolCaps {
        client: sqlmux_protocol::mysql::caps::CLIENT_MULTI_RESULTS
            | sqlmux_protocol::mysql::caps::CLIENT_PS_MULTI_RESULTS
            | sqlmux_protocol::mysql::caps::CLIENT_MULTI_STATEMENTS
            | sqlmux_protocol::mysql::caps::CLIENT_DEPRECATE_EOF,
        mariadb: 0,
    },
    collation: 45,
};

/// Creates the MySQL pools of databases with `min_idle > 0` up front (for
/// the configured server user, or for every `[[users]]` entry).
pub fn warm(pools: &Pools, cfg: &Config, users: &Users, insight: &Insight) {
    let dbs = cfg.databases.iter();
    for db in dbs.filter(|d| d.pool.min_idle > 0 && d.protocol == Protocol::Mysql) {
        let names: Vec<String> = match &db.user {
            Some(u) => vec![u.clone()],
            None => users.names(),
        };
        for name in names {
            let creds = server_credentials(db, users, &name);
            pool_for(pools, cfg, insight, db, creds, WARM_PROFILE);
        }
    }
}
