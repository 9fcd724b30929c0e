//! Admission: the checks every login makes once the client said who it is
//! and which database it wants, whatever its protocol.

use std::borrow::Cow;

use super::Refusal;
use crate::Shared;
use crate::config::{Config, DatabaseConfig, Protocol};

/// The database entry a client of `protocol` may use under `name`, after
/// the global client limit. Unknown names (or a name that belongs to the
/// other protocol) are refused with the names that would work.
pub fn admit<'c>(
    shared: &Shared,
    cfg: &'c Config,
    protocol: Protocol,
    name: &str,
) -> Result<Cow<'c, DatabaseConfig>, Refusal> {
    let max = cfg.pool.max_client_connections;
    if shared.clients.len() > max {
        return Err(Refusal::TooManyClients { max });
    }
    match cfg.database_for(protocol, name) {
        Some(db) => Ok(db),
        None => {
            let mut known: Vec<String> = cfg
                .databases
                .iter()
                .filter(|d| d.protocol == protocol)
                .map(|d| d.name.clone())
                .collect();
            known.sort();
            Err(Refusal::UnknownDatabase {
                database: name.to_owned(),
                known,
            })
        }
    }
}

/// The database's own client limit (`max_client_connections` on the
/// entry), checked once the client has authenticated.
pub fn check_database_limit(shared: &Shared, db: &DatabaseConfig) -> Result<(), Refusal> {
    match db.client_limit {
        Some(max) if shared.pools.clients_of(&db.name) >= max => Err(Refusal::DatabaseFull {
            database: db.name.clone(),
            max,
        }),
        _ => Ok(()),
    }
}
