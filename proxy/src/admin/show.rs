//! The PgBouncer-compatible SHOW commands.
//!
//! Column names and their order are exactly PgBouncer's (its `src/admin.c`
//! and `src/stats.c`; exporters and dashboards key off them); sqlmux's
//! extra columns come only after them. Values are read from the pools, the
//! client registry and the configuration at the moment of the command.
//!
//! Concurrency: every reader takes short locks one at a time (pool state,
//! registry, server list), so a row is consistent with itself but two rows
//! may be a few microseconds apart.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::AdminState;
use super::stats::{STAT_COLUMNS, StatRow};
use super::table::{Cell, ColType, Table, format_time, format_unix_us};
use crate::Shared;
use crate::client::{ClientState, PinReason};
use crate::config::{Config, PoolMode};
use crate::pool::{ServerState, unix_us};
use crate::stats::STAT_COUNT;

use ColType::{Int, Text};

/// SHOW POOLS: PgBouncer's columns.
pub const POOLS_COLUMNS: &[&str] = &[
    "database",
    "user",
    "cl_active",
    "cl_waiting",
    "cl_active_cancel_req",
    "cl_waiting_cancel_req",
    "sv_active",
    "sv_active_cancel",
    "sv_being_canceled",
    "sv_idle",
    "sv_used",
    "sv_tested",
    "sv_login",
    "maxwait",
    "maxwait_us",
    "pool_mode",
    "load_balance_hosts",
];

/// SHOW CLIENTS / SHOW SERVERS: PgBouncer's shared socket header.
pub const SOCKET_COLUMNS: &[&str] = &[
    "type",
    "user",
    "database",
    "replication",
    "state",
    "addr",
    "port",
    "local_addr",
    "local_port",
    "connect_time",
    "request_time",
    "wait",
    "wait_us",
    "close_needed",
    "ptr",
    "link",
    "remote_pid",
    "tls",
    "application_name",
    "prepared_statements",
    "id",
];

/// SHOW DATABASES: PgBouncer's columns.
pub const DATABASES_COLUMNS: &[&str] = &[
    "name",
    "host",
    "port",
    "database",
    "force_user",
    "pool_size",
    "min_pool_size",
    "reserve_pool_size",
    "server_lifetime",
    "pool_mode",
    "load_balance_hosts",
    "max_connections",
    "current_connections",
    "max_client_connections",
    "current_client_connections",
    "paused",
    "disabled",
];

/// SHOW USERS: PgBouncer's columns.
pub const USERS_COLUMNS: &[&str] = &[
    "name",
    "pool_size",
    "reserve_pool_size",
    "pool_mode",
    "max_user_connections",
    "current_connections",
    "max_user_client_connections",
    "current_client_connections",
];

/// SHOW LISTS rows, in PgBouncer's order.
pub const LISTS_ROWS: &[&str] = &[
    "databases",
    "users",
    "peers",
    "pools",
    "peer_pools",
    "free_clients",
    "used_clients",
    "login_clients",
    "free_servers",
    "used_servers",
    "dns_names",
    "dns_zones",
    "dns_queries",
    "dns_pending",
];

/// Types of PgBouncer's socket header columns.
const SOCKET_TYPES: [ColType; 21] = [
    Text, Text, Text, Text, Text, Text, Int, Text, Int, Text, Text, Int, Int, Int, Text, Text, Int,
    Text, Text, Int, Int,
];

fn columns(names: &[&str], types: impl Fn(usize, &str) -> ColType) -> Vec<(String, ColType)> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| ((*n).to_owned(), types(i, n)))
        .collect()
}

fn table(cols: Vec<(String, ColType)>) -> Table {
    Table {
        columns: cols,
        rows: Vec::new(),
    }
}

/// The server user of the pool a client of `database` logged in as
/// `client_user` uses: the database's configured user, else the client's.
pub(crate) fn pool_user(cfg: &Config, database: &str, client_user: &str) -> String {
    let db = cfg
        .databases
        .iter()
        .find(|d| d.name == database)
        .or_else(|| cfg.databases.iter().find(|d| d.name == "*"));
    match db.and_then(|d| d.user.clone()) {
        Some(u) => u,
        None => client_user.to_owned(),
    }
}

/// Pinned clients per (database, pool user).
fn pinned_per_pool(shared: &Shared, cfg: &Config) -> HashMap<(String, String), usize> {
    let mut out = HashMap::new();
    for c in shared.clients.all() {
        if c.pin() != PinReason::None {
            let db = c.database();
            let user = pool_user(cfg, &db, &c.user());
            *out.entry((db, user)).or_insert(0) += 1;
        }
    }
    out
}

/// SHOW POOLS.
pub fn pools(shared: &Shared) -> Table {
    let cfg = shared.config.load();
    let mut cols = columns(POOLS_COLUMNS, |i, _| {
        if (2..=14).contains(&i) { Int } else { Text }
    });
    cols.extend([
        ("protocol".to_owned(), Text),
        ("size".to_owned(), Int),
        ("pinned".to_owned(), Int),
        ("paused".to_owned(), Int),
    ]);
    let mut t = table(cols);
    let pinned = pinned_per_pool(shared, &cfg);
    for e in shared.pools.all() {
        let c = e.counts();
        let clients = e.clients();
        let key = (e.key().database.to_string(), e.key().user.to_string());
        t.push(vec![
            Cell::text(&*e.key().database),
            Cell::text(&*e.key().user),
            Cell::count(clients.saturating_sub(c.waiting)),
            Cell::count(c.waiting),
            Cell::Int(0),
            Cell::Int(0),
            Cell::count(c.active),
            Cell::Int(0),
            Cell::Int(0),
            Cell::count(c.idle),
            Cell::Int(0),
            Cell::Int(0),
            Cell::count(c.connecting),
            Cell::count(c.max_wait.as_secs()),
            Cell::count(c.max_wait.subsec_micros()),
            Cell::text(e.mode().as_str()),
            Cell::Null,
            Cell::text(e.db.protocol.as_str()),
            Cell::count(c.size),
            Cell::count(pinned.get(&key).copied().unwrap_or(0)),
            Cell::Int(c.paused as i64),
        ]);
    }
    t
}

fn socket_table(extra: &[(&str, ColType)]) -> Table {
    let mut cols = columns(SOCKET_COLUMNS, |i, _| SOCKET_TYPES[i]);
    cols.extend(extra.iter().map(|(n, ty)| ((*n).to_owned(), *ty)));
    table(cols)
}

/// PgBouncer shows socket pointers; ours are ids, printed the same way so
/// `link` can be matched with the peer's `ptr`.
fn ptr(id: u64) -> String {
    format!("{id:#x}")
}

fn link_cell(id: u64) -> Cell {
    if id == 0 {
        Cell::Null
    } else {
        Cell::text(ptr(id))
    }
}

fn addr_cells(addr: Option<crate::addr::PeerAddr>) -> (Cell, Cell) {
    match addr {
        Some(a) => (Cell::text(a.host()), Cell::count(a.port())),
        None => (Cell::Null, Cell::Null),
    }
}

fn path_text(p: Option<&std::path::Path>) -> String {
    p.map(|p| p.display().to_string()).unwrap_or_default()
}

/// SHOW CLIENTS.
pub fn clients(shared: &Shared) -> Table {
    let mut t = socket_table(&[("pinned", Text), ("protocol", Text)]);
    let now_us = unix_us(SystemTime::now());
    for c in shared.clients.all() {
        let (wait_s, wait_us) = match c.wait_start_us() {
            Some(start) => {
                let w = (now_us - start).max(0);
                (w / 1_000_000, w % 1_000_000)
            }
            None => (0, 0),
        };
        let (addr, port) = addr_cells(Some(c.addr));
        let (laddr, lport) = addr_cells(Some(c.local_addr));
        let tls = c.tls.lock().unwrap_or_else(|e| e.into_inner()).clone();
        t.push(vec![
            Cell::text("C"),
            Cell::text(c.user()),
            Cell::text(c.database()),
            Cell::text("none"),
            Cell::text(match c.state() {
                ClientState::Login => "login",
                ClientState::Idle => "idle",
                ClientState::Waiting => "waiting",
                ClientState::Active => "active",
            }),
            addr,
            port,
            laddr,
            lport,
            Cell::text(format_time(c.connect_time)),
            Cell::text(format_unix_us(c.request_time_us())),
            Cell::Int(wait_s),
            Cell::Int(wait_us),
            Cell::Int(0),
            Cell::text(ptr(c.id)),
            link_cell(c.link()),
            Cell::Int(0),
            Cell::text(tls),
            Cell::text(c.application_name()),
            Cell::count(c.prepared_statements.load(Ordering::Relaxed)),
            Cell::count(c.id),
            Cell::text(c.pin().as_str()),
            Cell::text(c.protocol.as_str()),
        ]);
    }
    t
}

/// SHOW SERVERS.
pub fn servers(shared: &Shared) -> Table {
    let mut t = socket_table(&[("protocol", Text)]);
    for e in shared.pools.all() {
        let mut servers = e.servers();
        servers.sort_by_key(|s| s.id);
        for s in servers {
            let (addr, port) = addr_cells(*s.addr.lock().unwrap_or_else(|e| e.into_inner()));
            let (laddr, lport) =
                addr_cells(*s.local_addr.lock().unwrap_or_else(|e| e.into_inner()));
            let tls = s.tls.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let app = s
                .application_name
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            t.push(vec![
                Cell::text("S"),
                Cell::text(&*e.key().user),
                Cell::text(&*e.key().database),
                Cell::text("none"),
                Cell::text(match s.state() {
                    ServerState::Login => "new",
                    ServerState::Active => "active",
                    ServerState::Idle => "idle",
                }),
                addr,
                port,
                laddr,
                lport,
                Cell::text(format_time(s.connect_time)),
                Cell::text(format_unix_us(s.request_time_us())),
                Cell::Int(0),
                Cell::Int(0),
                Cell::Int(s.close_needed.load(Ordering::Relaxed) as i64),
                Cell::text(ptr(s.id)),
                link_cell(s.link()),
                Cell::Int(s.remote_pid.load(Ordering::Relaxed)),
                Cell::text(tls),
                Cell::text(app),
                Cell::count(s.prepared_statements.load(Ordering::Relaxed)),
                Cell::count(s.id),
                Cell::text(e.db.protocol.as_str()),
            ]);
        }
    }
    t
}

/// Sums of the pool counters per database (pools existing now), plus every
/// configured database (zeros when it has no pool yet), sorted by name.
pub(crate) fn totals_by_database(shared: &Shared) -> BTreeMap<String, [u64; STAT_COUNT]> {
    let mut out: BTreeMap<String, [u64; STAT_COUNT]> = BTreeMap::new();
    for d in &shared.config.load().databases {
        if d.name != "*" {
            out.entry(d.name.clone()).or_insert([0; STAT_COUNT]);
        }
    }
    for e in shared.pools.all() {
        let acc = out
            .entry(e.key().database.to_string())
            .or_insert([0; STAT_COUNT]);
        for (a, v) in acc.iter_mut().zip(e.stats().totals()) {
            *a = a.saturating_add(v);
        }
    }
    out
}

/// Which parts of the statistics a SHOW STATS variant shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsView {
    /// SHOW STATS: `total_*` then `avg_*`.
    Both,
    /// SHOW STATS_TOTALS.
    Totals,
    /// SHOW STATS_AVERAGES.
    Averages,
}

/// SHOW STATS, SHOW STATS_TOTALS, SHOW STATS_AVERAGES.
pub fn stats(shared: &Shared, admin: &AdminState, view: StatsView) -> Table {
    let mut names: Vec<String> = vec!["database".into()];
    match view {
        StatsView::Both => {
            names.extend(STAT_COLUMNS.iter().map(|c| c.total.to_owned()));
            names.extend(STAT_COLUMNS.iter().map(|c| c.avg.to_owned()));
            names.push("total_errors".into());
        }
        StatsView::Totals => {
            names.extend(STAT_COLUMNS.iter().map(|c| c.bare_total.to_owned()));
        }
        StatsView::Averages => {
            names.extend(STAT_COLUMNS.iter().map(|c| c.bare_avg.to_owned()));
        }
    }
    let cols = names
        .into_iter()
        .enumerate()
        .map(|(i, n)| (n, if i == 0 { Text } else { Int }))
        .collect();
    let mut t = table(cols);
    let averages = admin.averages();
    for (db, totals) in totals_by_database(shared) {
        let avg = averages.get(&db).copied().unwrap_or_default();
        let row = StatRow::new(&totals);
        let mut cells = vec![Cell::text(db)];
        if view != StatsView::Averages {
            cells.extend(row.totals().map(Cell::count));
        }
        if view != StatsView::Totals {
            cells.extend(avg.values().map(Cell::count));
        }
        if view == StatsView::Both {
            cells.push(Cell::count(row.errors()));
        }
        t.push(cells);
    }
    t
}

/// SHOW TOTALS: `name, value` rows over every database.
pub fn totals(shared: &Shared, admin: &AdminState) -> Table {
    let mut t = Table::new(&[("name", Text), ("value", Int)]);
    let mut sum = [0u64; STAT_COUNT];
    for v in totals_by_database(shared).values() {
        for (a, b) in sum.iter_mut().zip(v) {
            *a = a.saturating_add(*b);
        }
    }
    let row = StatRow::new(&sum);
    let avg = admin.total_averages();
    for (c, v) in STAT_COLUMNS.iter().zip(row.totals()) {
        t.push(vec![Cell::text(c.total_row), Cell::count(v)]);
    }
    for (c, v) in STAT_COLUMNS.iter().zip(avg.values()) {
        t.push(vec![Cell::text(c.avg_row), Cell::count(v)]);
    }
    t
}

/// SHOW DATABASES.
pub fn databases(shared: &Shared) -> Table {
    let cfg = shared.config.load();
    let mut cols = columns(DATABASES_COLUMNS, |_, n| match n {
        "port"
        | "pool_size"
        | "min_pool_size"
        | "reserve_pool_size"
        | "server_lifetime"
        | "max_connections"
        | "current_connections"
        | "max_client_connections"
        | "current_client_connections"
        | "paused"
        | "disabled" => Int,
        _ => Text,
    });
    cols.extend([
        ("protocol".to_owned(), Text),
        ("checkout_timeout_ms".to_owned(), Int),
        ("size_source".to_owned(), Text),
    ]);
    let mut t = table(cols);
    let mut servers: HashMap<String, usize> = HashMap::new();
    for e in shared.pools.all() {
        let c = e.counts();
        *servers.entry(e.key().database.to_string()).or_default() +=
            c.active + c.idle + c.connecting;
    }
    let mut clients: HashMap<String, usize> = HashMap::new();
    for c in shared.clients.all() {
        *clients.entry(c.database()).or_default() += 1;
    }
    for d in &cfg.databases {
        let p = &d.pool;
        t.push(vec![
            Cell::text(&d.name),
            Cell::text(&d.host),
            Cell::count(d.port),
            Cell::text(&d.dbname),
            Cell::opt_text(d.user.clone()),
            Cell::count(p.size),
            Cell::count(p.min_idle),
            Cell::Int(0),
            Cell::count(p.max_lifetime.as_secs()),
            Cell::text(p.mode.as_str()),
            Cell::Null,
            Cell::Int(0),
            Cell::count(servers.get(&d.name).copied().unwrap_or(0)),
            Cell::count(p.max_client_connections),
            Cell::count(clients.get(&d.name).copied().unwrap_or(0)),
            Cell::Int(shared.pools.is_paused(&d.name) as i64),
            Cell::Int(0),
            Cell::text(d.protocol.as_str()),
            Cell::count(p.checkout_timeout.as_millis()),
            Cell::text(&p.size_source),
        ]);
    }
    t
}

/// SHOW USERS.
pub fn users(shared: &Shared) -> Table {
    let cfg = shared.config.load();
    let cols = columns(USERS_COLUMNS, |_, n| match n {
        "name" | "pool_mode" => Text,
        _ => Int,
    });
    let mut t = table(cols);
    let mut servers: HashMap<String, usize> = HashMap::new();
    for e in shared.pools.all() {
        let c = e.counts();
        *servers.entry(e.key().user.to_string()).or_default() += c.active + c.idle + c.connecting;
    }
    let mut clients: HashMap<String, usize> = HashMap::new();
    for c in shared.clients.all() {
        *clients.entry(c.user()).or_default() += 1;
    }
    let mut names: BTreeSet<String> = cfg.users.iter().map(|u| u.name.clone()).collect();
    names.extend(servers.keys().cloned());
    for name in names {
        t.push(vec![
            Cell::text(&name),
            Cell::Null,
            Cell::Null,
            Cell::Null,
            Cell::Int(0),
            Cell::count(servers.get(&name).copied().unwrap_or(0)),
            Cell::Int(0),
            Cell::count(clients.get(&name).copied().unwrap_or(0)),
        ]);
    }
    t
}

/// SHOW LISTS.
pub fn lists(shared: &Shared) -> Table {
    let cfg = shared.config.load();
    let mut t = Table::new(&[("list", Text), ("items", Int)]);
    let all = shared.clients.all();
    let login = all
        .iter()
        .filter(|c| c.state() == ClientState::Login)
        .count();
    let servers: usize = shared.pools.all().iter().map(|e| e.servers().len()).sum();
    for name in LISTS_ROWS {
        let v = match *name {
            "databases" => cfg.databases.len(),
            "users" => cfg.users.len(),
            "pools" => shared.pools.len(),
            "used_clients" => all.len() - login,
            "login_clients" => login,
            "used_servers" => servers,
            _ => 0,
        };
        t.push(vec![Cell::text(*name), Cell::count(v)]);
    }
    t
}

/// The version string of SHOW VERSION and `server_version`.
pub fn version_string() -> String {
    format!("sqlmux {}", env!("CARGO_PKG_VERSION"))
}

/// SHOW VERSION.
pub fn version() -> Table {
    let mut t = Table::new(&[("version", Text)]);
    t.push(vec![Cell::text(version_string())]);
    t
}

/// SHOW STATE.
pub fn state(shared: &Shared) -> Table {
    let mut t = Table::new(&[("key", Text), ("value", Text)]);
    let yes_no = |b: bool| Cell::text(if b { "yes" } else { "no" });
    let paused = shared.pools.all_paused();
    t.push(vec![
        Cell::text("active"),
        yes_no(!paused && !shared.drain.is_cancelled()),
    ]);
    t.push(vec![Cell::text("paused"), yes_no(paused)]);
    t.push(vec![Cell::text("suspended"), Cell::text("no")]);
    t.push(vec![
        Cell::text("draining"),
        yes_no(shared.drain.is_cancelled()),
    ]);
    t
}

/// SHOW CONFIG: `key, value, default, changeable`: sqlmux's keys, then
/// PgBouncer's names for the settings that have one
/// ([`super::compat::pgbouncer_rows`]). Passwords never appear (no secret
/// is a key here).
pub fn config(shared: &Shared) -> Table {
    let cfg = shared.config.load();
    let mut t = Table::new(&[
        ("key", Text),
        ("value", Text),
        ("default", Text),
        ("changeable", Text),
    ]);
    let dur = |d: std::time::Duration| humantime::format_duration(d).to_string();
    let list = |v: &[String]| format!("[{}]", v.join(", "));
    let g = &cfg.general;
    let p = &cfg.pool;
    let i = &cfg.insight;
    let default_size = format!("size_per_cpu 2 x {} CPUs on this host", cfg.host_cpus);
    let rows: Vec<(&str, String, String, bool)> = vec![
        (
            "general.workers",
            g.workers.to_string(),
            "0 (half the CPUs, at least 1)".into(),
            false,
        ),
        (
            "general.shutdown_timeout",
            dur(g.shutdown_timeout),
            "30s".into(),
            true,
        ),
        (
            "general.max_message_size",
            g.max_message_size.to_string(),
            "67108864".into(),
            true,
        ),
        (
            "general.server_connect_timeout",
            dur(g.server_connect_timeout),
            "10s".into(),
            true,
        ),
        (
            "general.client_login_timeout",
            dur(g.client_login_timeout),
            "1m".into(),
            true,
        ),
        (
            "general.auth_failure_delay",
            dur(g.auth_failure_delay),
            "2s".into(),
            true,
        ),
        (
            "general.stats_period",
            dur(g.stats_period),
            "1m".into(),
            true,
        ),
        (
            "admin.listen",
            cfg.admin.listen.clone(),
            "127.0.0.1:6434".into(),
            false,
        ),
        (
            "admin.users",
            list(&cfg.admin.users),
            "[admin]".into(),
            true,
        ),
        (
            "admin.stats_users",
            list(&cfg.admin.stats_users),
            "[]".into(),
            true,
        ),
        (
            "admin.http_auth",
            cfg.admin.http_auth.to_string(),
            "true".into(),
            true,
        ),
        (
            "admin.metrics_auth",
            cfg.admin.metrics_auth.to_string(),
            "false".into(),
            true,
        ),
        (
            "postgres.listen",
            cfg.postgres.listen.clone(),
            "0.0.0.0:6432".into(),
            false,
        ),
        (
            "postgres.unix_socket_dir",
            path_text(cfg.postgres.unix_socket_dir.as_deref()),
            String::new(),
            false,
        ),
        (
            "mysql.unix_socket",
            path_text(cfg.mysql.unix_socket.as_deref()),
            String::new(),
            false,
        ),
        (
            "postgres.auth",
            match cfg.postgres.auth {
                crate::config::AuthMethod::ScramSha256 => "scram-sha-256",
                crate::config::AuthMethod::Md5 => "md5",
                crate::config::AuthMethod::Trust => "trust",
            }
            .into(),
            "scram-sha-256".into(),
            true,
        ),
        (
            "postgres.tls",
            match &cfg.postgres.tls {
                Some(t) => format!(
                    "mode={:?} cert={} key={}",
                    t.mode,
                    t.cert.display(),
                    t.key.display()
                )
                .to_lowercase(),
                None => "disabled".into(),
            },
            "disabled".into(),
            true,
        ),
        (
            "postgres.auth_user",
            cfg.postgres.auth_user.clone().unwrap_or_default(),
            String::new(),
            true,
        ),
        (
            "postgres.auth_query",
            cfg.postgres.auth_query.clone(),
            crate::config::DEFAULT_AUTH_QUERY.into(),
            true,
        ),
        (
            "postgres.auth_dbname",
            cfg.postgres.auth_dbname.clone().unwrap_or_default(),
            String::new(),
            true,
        ),
        (
            "pool.mode",
            p.mode.as_str().into(),
            PoolMode::Transaction.as_str().into(),
            true,
        ),
        (
            "pool.size",
            format!("{} ({})", p.size, p.size_source),
            default_size,
            true,
        ),
        ("pool.share", p.share.to_string(), "1".into(), true),
        ("pool.min_idle", p.min_idle.to_string(), "0".into(), true),
        (
            "pool.checkout_timeout",
            dur(p.checkout_timeout),
            "5s".into(),
            true,
        ),
        (
            "pool.query_timeout",
            dur(p.query_timeout),
            "0s".into(),
            true,
        ),
        ("pool.idle_timeout", dur(p.idle_timeout), "10m".into(), true),
        ("pool.max_lifetime", dur(p.max_lifetime), "1h".into(), true),
        (
            "pool.max_client_connections",
            p.max_client_connections.to_string(),
            "10000".into(),
            true,
        ),
        (
            "pool.max_prepared_statements",
            p.max_prepared_statements.to_string(),
            "200".into(),
            true,
        ),
        (
            "pool.on_session_state",
            match p.on_session_state {
                crate::config::SessionStatePolicy::Pin => "pin",
                crate::config::SessionStatePolicy::Error => "error",
                crate::config::SessionStatePolicy::Ignore => "ignore",
            }
            .into(),
            "pin".into(),
            true,
        ),
        (
            "insight.enabled",
            i.enabled.to_string(),
            "true".into(),
            true,
        ),
        (
            "insight.max_statements",
            i.max_statements.to_string(),
            "5000".into(),
            true,
        ),
        (
            "insight.n_plus_one.threshold",
            i.n_plus_one_threshold.to_string(),
            "10".into(),
            true,
        ),
        (
            "insight.n_plus_one.window",
            dur(i.n_plus_one_window),
            "1s".into(),
            true,
        ),
        (
            "insight.leaked_transaction.idle",
            dur(i.leak_idle),
            "5s".into(),
            true,
        ),
        (
            "insight.leaked_transaction.action",
            i.leak_action.as_str().into(),
            "warn".into(),
            true,
        ),
        (
            "peers.addresses",
            list(&cfg.peers.addresses),
            "[]".into(),
            true,
        ),
        (
            "peers.dns",
            cfg.peers.dns.clone().unwrap_or_default(),
            String::new(),
            true,
        ),
        (
            "peers.port",
            cfg.peers.port.to_string(),
            "the postgres.listen port".into(),
            true,
        ),
        ("peers.timeout", dur(cfg.peers.timeout), "2s".into(), true),
        (
            "config_file",
            cfg.path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            String::new(),
            false,
        ),
    ];
    let compat = super::compat::pgbouncer_rows(&cfg);
    for (k, v, d, ch) in rows.into_iter().chain(compat) {
        t.push(vec![
            Cell::text(k),
            Cell::text(v),
            Cell::text(d),
            Cell::text(if ch { "yes" } else { "no" }),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgbouncer_headers_have_the_documented_widths() {
        assert_eq!(POOLS_COLUMNS.len(), 17);
        assert_eq!(SOCKET_COLUMNS.len(), 21);
        assert_eq!(SOCKET_TYPES.len(), SOCKET_COLUMNS.len());
        assert_eq!(DATABASES_COLUMNS.len(), 17);
        assert_eq!(USERS_COLUMNS.len(), 8);
        assert_eq!(LISTS_ROWS.len(), 14);
    }

    #[test]
    fn pool_user_prefers_the_configured_server_user() {
        let cfg = Config::parse(
            "[[databases]]\nname = \"a\"\nhost = \"h\"\nuser = \"svc\"\n\n[[databases]]\nname = \"b\"\nhost = \"h\"\n",
        )
        .unwrap();
        assert_eq!(pool_user(&cfg, "a", "alice"), "svc");
        assert_eq!(pool_user(&cfg, "b", "alice"), "alice");
        assert_eq!(pool_user(&cfg, "zzz", "alice"), "alice");
    }
}
