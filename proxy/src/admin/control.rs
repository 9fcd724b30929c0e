//! Control commands: PAUSE, RESUME, RECONNECT, KILL, RELOAD, SHUTDOWN and
//! RESET STATEMENTS, with PgBouncer's semantics. Only `admin.users` may run
//! them (checked by the console before calling here).
//!
//! PAUSE marks the database (or everything) paused in
//! the pool registry ([`Pools`](crate::pool::registry::Pools)), so pools created later
//! start paused too, then waits until every lent server of every affected
//! pool has come back; new transactions wait (without the checkout
//! timeout) until RESUME. KILL closes the database's clients and servers at
//! once and leaves it paused, so new clients wait for RESUME.

use std::sync::Arc;
use std::time::Duration;

use super::console::AdminError;
use crate::Shared;
use crate::pool::registry::PoolEntry;

/// How long KILL waits for killed sessions to hand back their servers.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// The pools a command applies to, after checking the database exists.
fn target_pools(shared: &Shared, db: Option<&str>) -> Result<Vec<Arc<PoolEntry>>, AdminError> {
    match db {
        None => Ok(shared.pools.all()),
        Some(name) => {
            let cfg = shared.config.load();
            let configured = cfg
                .databases
                .iter()
                .any(|d| d.name == name || d.name == "*");
            let pools = shared.pools.of_database(name);
            if !configured && pools.is_empty() {
                return Err(AdminError::new(
                    "3D000",
                    format!(
                        "database \"{name}\" is not configured; SHOW DATABASES lists the configured ones"
                    ),
                ));
            }
            Ok(pools)
        }
    }
}

/// PAUSE [db]: returns once every lent server of the affected pools is back
/// (and closed).
pub async fn pause(shared: &Shared, db: Option<&str>) -> Result<(), AdminError> {
    target_pools(shared, db)?;
    shared.pools.set_paused(db, true);
    // Pools created between the check above and now started paused.
    let pools = target_pools(shared, db)?;
    futures::future::join_all(pools.iter().map(|e| e.pause())).await;
    tracing::info!(database = db.unwrap_or("*"), "paused");
    Ok(())
}

/// RESUME [db].
pub fn resume(shared: &Shared, db: Option<&str>) -> Result<(), AdminError> {
    let pools = target_pools(shared, db)?;
    if db.is_some() && shared.pools.all_paused() {
        return Err(AdminError::new(
            "55000",
            "the whole proxy is paused; run RESUME without a database name".into(),
        ));
    }
    shared.pools.set_paused(db, false);
    for e in pools {
        e.resume();
    }
    tracing::info!(database = db.unwrap_or("*"), "resumed");
    Ok(())
}

/// RECONNECT [db]: idle servers close now, lent ones when released.
pub fn reconnect(shared: &Shared, db: Option<&str>) -> Result<(), AdminError> {
    for e in target_pools(shared, db)? {
        e.reconnect();
    }
    tracing::info!(database = db.unwrap_or("*"), "reconnect requested");
    Ok(())
}

/// KILL [db]: disconnects the database's clients and closes its servers
/// now; the database stays paused until RESUME.
pub async fn kill(shared: &Shared, db: Option<&str>) -> Result<(), AdminError> {
    target_pools(shared, db)?;
    shared.pools.set_paused(db, true);
    let pools = target_pools(shared, db)?;
    for e in &pools {
        e.pause_now();
        e.reconnect();
    }
    let mut killed = 0usize;
    for c in shared.clients.all() {
        if db.is_none_or(|d| c.database() == d) {
            c.signals.raise(crate::client::Signals::KILL);
            killed += 1;
        }
    }
    // Killed sessions drop their leases (the servers close as they are in
    // an unknown state); wait for that so SHOW SERVERS is empty afterwards.
    let wait = futures::future::join_all(pools.iter().map(|e| e.pause()));
    if tokio::time::timeout(KILL_WAIT, wait).await.is_err() {
        tracing::warn!(
            database = db.unwrap_or("*"),
            "KILL: some servers were not returned within 5 s"
        );
    }
    tracing::info!(database = db.unwrap_or("*"), clients = killed, "killed");
    Ok(())
}

/// RELOAD: re-reads the configuration file; on error the running
/// configuration stays and the error is returned with the parser's text.
pub fn reload(shared: &Shared) -> Result<(), AdminError> {
    shared.reload().map_err(|e| {
        tracing::warn!(error = %e, "RELOAD refused");
        AdminError::new(
            "F0000",
            format!("RELOAD failed; the running configuration is unchanged: {e}"),
        )
    })
}

/// SHUTDOWN: starts a graceful shutdown in the background, so the reply
/// reaches the client first. Not on the task tracker: the shutdown waits
/// for every tracked task.
pub fn shutdown(shared: &Arc<Shared>) {
    let shared = shared.clone();
    tracing::info!("SHUTDOWN requested on the admin console");
    tokio::spawn(async move {
        // Let the CommandComplete go out before the drain starts.
        tokio::time::sleep(Duration::from_millis(50)).await;
        shared.shutdown().await;
    });
}

/// RESET STATEMENTS.
pub fn reset_statements(shared: &Shared) {
    shared.insight.reset_statements();
    tracing::info!("statement statistics reset");
}
