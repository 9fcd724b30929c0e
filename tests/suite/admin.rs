//! The admin port: psql console (PgBouncer-compatible SHOWs, control
//! commands, logins), HTTP /metrics, /healthz and /readyz, driven by psql,
//! tokio-postgres and raw HTTP against a proxy in front of real PostgreSQL.

use std::collections::{BTreeMap, HashSet};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use sqlmux::Proxy;
use sqlmux::config::Config;
use sqlmux_tests::{pg_tool, shared_pg};
use tokio_postgres::SimpleQueryMessage;

use crate::common::{
    TestProxy, connect_url, err_text, eventually, fresh_db, run, sqlstate, start_trust, trust_db,
};

const ADMIN_PW: &str = "admin-pass";
const MONITOR_PW: &str = "monitor-pass";
const LEGACY_PW: &str = "legacy-pass";

// PgBouncer's column lists (src/admin.c, src/stats.c), written out here
// independently of the proxy's own constants.
const POOLS: &[&str] = &[
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
const SOCKETS: &[&str] = &[
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
const STATS: &[&str] = &[
    "database",
    "total_server_assignment_count",
    "total_xact_count",
    "total_query_count",
    "total_received",
    "total_sent",
    "total_xact_time",
    "total_query_time",
    "total_wait_time",
    "total_client_parse_count",
    "total_server_parse_count",
    "total_bind_count",
    "total_client_login_count",
    "avg_server_assignment_count",
    "avg_xact_count",
    "avg_query_count",
    "avg_recv",
    "avg_sent",
    "avg_xact_time",
    "avg_query_time",
    "avg_wait_time",
    "avg_client_parse_count",
    "avg_server_parse_count",
    "avg_bind_count",
    "avg_client_login_count",
];
const DATABASES: &[&str] = &[
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
const USERS: &[&str] = &[
    "name",
    "pool_size",
    "reserve_pool_size",
    "pool_mode",
    "max_user_connections",
    "current_connections",
    "max_user_client_connections",
    "current_client_connections",
];
const CONFIG: &[&str] = &["key", "value", "default", "changeable"];
const LISTS: &[&str] = &["list", "items"];
const VERSION: &[&str] = &["version"];

/// `[admin]` keys (the harness's config puts the body inside `[admin]`),
/// the admin users, and a trust database `db` with `pool` settings.
fn admin_body(db: &str, pool: &str, extra: &str) -> String {
    let legacy_md5 = sqlmux_protocol::postgres::auth::md5_hash("legacy", LEGACY_PW);
    format!(
        "users = [\"admin\"]\nstats_users = [\"monitor\", \"legacy\"]\n{extra}\n{}\n\
         [[users]]\nname = \"admin\"\npassword = \"{ADMIN_PW}\"\n\n\
         [[users]]\nname = \"monitor\"\npassword = \"{MONITOR_PW}\"\n\n\
         [[users]]\nname = \"legacy\"\npassword = \"{legacy_md5}\"\n",
        trust_db(db, pool)
    )
}

async fn start_admin(db: &str, pool: &str, extra: &str) -> TestProxy {
    start_trust(&admin_body(db, pool, extra)).await
}

fn admin_port(p: &TestProxy) -> u16 {
    p.proxy.admin_addr().port()
}

fn admin_url(p: &TestProxy, user: &str, password: &str, db: &str) -> String {
    format!(
        "host=127.0.0.1 port={} user={user} password={password} dbname={db} connect_timeout=10",
        admin_port(p)
    )
}

async fn admin(p: &TestProxy) -> tokio_postgres::Client {
    connect_url(&admin_url(p, "admin", ADMIN_PW, "sqlmux"))
        .await
        .expect("admin logs in to the console")
}

/// A SHOW result: column names and rows of optional text.
#[derive(Debug)]
struct Shown {
    columns: Vec<String>,
    rows: Vec<Vec<Option<String>>>,
}

impl Shown {
    fn col(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.columns))
    }

    /// Rows whose `column` equals `value`.
    fn rows_where(&self, column: &str, value: &str) -> Vec<&Vec<Option<String>>> {
        let i = self.col(column);
        self.rows
            .iter()
            .filter(|r| r[i].as_deref() == Some(value))
            .collect()
    }

    /// The one row whose `column` equals `value`.
    fn row(&self, column: &str, value: &str) -> &Vec<Option<String>> {
        let rows = self.rows_where(column, value);
        assert_eq!(rows.len(), 1, "rows with {column} = {value}: {self:?}");
        rows[0]
    }

    fn get<'a>(&self, row: &'a [Option<String>], column: &str) -> Option<&'a str> {
        row[self.col(column)].as_deref()
    }

    fn int(&self, row: &[Option<String>], column: &str) -> i64 {
        self.get(row, column)
            .unwrap_or_else(|| panic!("{column} is NULL"))
            .parse()
            .unwrap_or_else(|e| panic!("{column}: {e}"))
    }
}

async fn show(c: &tokio_postgres::Client, cmd: &str) -> Shown {
    try_show(c, cmd)
        .await
        .unwrap_or_else(|e| panic!("{cmd}: {}", err_text(&e)))
}

async fn try_show(c: &tokio_postgres::Client, cmd: &str) -> Result<Shown, tokio_postgres::Error> {
    let mut out = Shown {
        columns: Vec::new(),
        rows: Vec::new(),
    };
    for m in c.simple_query(cmd).await? {
        match m {
            SimpleQueryMessage::RowDescription(cols) => {
                out.columns = cols.iter().map(|c| c.name().to_owned()).collect();
            }
            SimpleQueryMessage::Row(r) => {
                out.rows
                    .push((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect());
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Waits until `db`'s pools have no lent server: a session returns its
/// server just after forwarding ReadyForQuery, so a client may see its
/// answer a moment before the pool does.
async fn settle(a: &tokio_postgres::Client, db: &str) {
    eventually(
        Duration::from_secs(5),
        "servers returned to the pool",
        async || {
            let pools = show(a, "SHOW POOLS").await;
            pools
                .rows_where("database", db)
                .iter()
                .all(|r| pools.int(r, "sv_active") == 0)
        },
    )
    .await;
}

/// psql with headers (`-A -F|`), as an operator would run it.
fn psql_admin(port: u16, user: &str, password: &str, sql: &str) -> (bool, String) {
    let mut cmd = Command::new(pg_tool("psql"));
    for (k, _) in std::env::vars() {
        if k.starts_with("PG") {
            cmd.env_remove(k);
        }
    }
    cmd.args(["-X", "-w", "-A", "-F", "|", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .arg(format!(
            "host=127.0.0.1 port={port} user={user} password={password} dbname=sqlmux connect_timeout=10"
        ));
    run(cmd, Duration::from_secs(30))
}

/// A GET without credentials: (status, body). Every answer closes the
/// connection.
pub(crate) async fn http_get(port: u16, path: &str) -> (u16, String) {
    let (status, head, body) = crate::web::get(port, path, None).await;
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_shows_pgbouncer_column_names_in_pgbouncer_order() {
    let db = fresh_db(shared_pg(), "adm_hdr");
    let p = start_admin(&db, "size = 2", "").await;
    // One pool, one client, one server, so every SHOW has rows.
    let c = p.connect("postgres", None, &db).await;
    c.simple_query("SELECT 1").await.unwrap();
    let port = admin_port(&p);
    let cases: Vec<(&str, &[&str])> = vec![
        ("SHOW POOLS", POOLS),
        ("SHOW CLIENTS", SOCKETS),
        ("SHOW SERVERS", SOCKETS),
        ("SHOW STATS", STATS),
        ("SHOW DATABASES", DATABASES),
        ("SHOW USERS", USERS),
        ("SHOW CONFIG", CONFIG),
        ("SHOW LISTS", LISTS),
        ("SHOW VERSION", VERSION),
        (
            "SHOW STATEMENTS",
            &[
                "fingerprint",
                "database",
                "user",
                "query",
                "calls",
                "errors",
                "rows",
                "total_ms",
                "mean_ms",
                "p50_ms",
                "p95_ms",
                "p99_ms",
                "max_ms",
            ],
        ),
        (
            "SHOW N_PLUS_ONE",
            &[
                "detected_at",
                "database",
                "user",
                "client_addr",
                "application_name",
                "fingerprint",
                "query",
                "repeats",
                "window_ms",
            ],
        ),
        (
            "SHOW LEAKS",
            &[
                "detected_at",
                "database",
                "user",
                "client_addr",
                "application_name",
                "state",
                "xact_age_s",
                "idle_s",
                "last_query",
                "action",
            ],
        ),
    ];
    for (cmd, expected) in cases {
        let cmd2 = cmd.to_owned();
        let (ok, out) =
            tokio::task::spawn_blocking(move || psql_admin(port, "admin", ADMIN_PW, &cmd2))
                .await
                .unwrap();
        assert!(ok, "{cmd} failed: {out}");
        let header: Vec<&str> = out.lines().next().unwrap_or("").split('|').collect();
        assert!(
            header.len() >= expected.len() && header[..expected.len()] == *expected,
            "{cmd}: header {header:?} does not start with {expected:?}"
        );
    }
    // The same through tokio-postgres (RowDescription), lower case commands
    // with a trailing semicolon, and the pgbouncer database name.
    let a = connect_url(&admin_url(&p, "admin", ADMIN_PW, "pgbouncer"))
        .await
        .expect("the pgbouncer database name is accepted");
    let s = show(&a, "show pools;").await;
    assert_eq!(&s.columns[..POOLS.len()], POOLS);
    let s = show(&a, "show clients").await;
    assert_eq!(&s.columns[..SOCKETS.len()], SOCKETS);
    assert_eq!(
        &s.columns[SOCKETS.len()..],
        ["pinned", "protocol"],
        "extra columns come last"
    );
    let s = show(&a, "SHOW STATS").await;
    assert_eq!(&s.columns[..STATS.len()], STATS);
    let s = show(&a, "SHOW LISTS").await;
    let lists: Vec<&str> = s.rows.iter().map(|r| r[0].as_deref().unwrap()).collect();
    assert_eq!(
        lists,
        [
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
            "dns_pending"
        ]
    );
    let v = show(&a, "SHOW VERSION").await;
    assert!(
        v.rows[0][0].as_deref().unwrap().starts_with("sqlmux "),
        "{v:?}"
    );
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_clients_and_servers_follow_an_open_transaction() {
    let db = fresh_db(shared_pg(), "adm_live");
    let p = start_admin(&db, "size = 2", "").await;
    let a = admin(&p).await;

    // Connect over a socket whose address we know.
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", p.port))
        .await
        .unwrap();
    let local = tcp.local_addr().unwrap();
    let cfg: tokio_postgres::Config = p.url("postgres", None, &db).parse().unwrap();
    let (c, conn) = cfg.connect_raw(tcp, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    c.batch_execute("BEGIN").await.unwrap();
    let pid: i32 = c
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);

    let pools = show(&a, "SHOW POOLS").await;
    let row = pools.row("database", &db);
    assert_eq!(pools.get(row, "user"), Some("postgres"));
    assert_eq!(pools.int(row, "cl_active"), 1);
    assert_eq!(pools.int(row, "cl_waiting"), 0);
    assert_eq!(pools.int(row, "sv_active"), 1);
    assert_eq!(pools.int(row, "sv_idle"), 0);
    assert_eq!(pools.get(row, "pool_mode"), Some("transaction"));
    assert_eq!(pools.int(row, "size"), 2);

    let clients = show(&a, "SHOW CLIENTS").await;
    let cl = clients.row("database", &db);
    assert_eq!(clients.get(cl, "type"), Some("C"));
    assert_eq!(clients.get(cl, "state"), Some("active"));
    assert_eq!(clients.get(cl, "user"), Some("postgres"));
    assert_eq!(
        clients.get(cl, "addr"),
        Some(local.ip().to_string().as_str())
    );
    assert_eq!(clients.int(cl, "port"), i64::from(local.port()));
    assert_eq!(clients.int(cl, "local_port"), i64::from(p.port));
    assert!(
        clients.get(cl, "connect_time").unwrap().ends_with(" UTC"),
        "{cl:?}"
    );
    let client_ptr = clients.get(cl, "ptr").unwrap().to_owned();
    let client_link = clients
        .get(cl, "link")
        .expect("linked to its server")
        .to_owned();

    let servers = show(&a, "SHOW SERVERS").await;
    let sv = servers.row("database", &db);
    assert_eq!(servers.get(sv, "type"), Some("S"));
    assert_eq!(servers.get(sv, "state"), Some("active"));
    assert_eq!(servers.int(sv, "remote_pid"), i64::from(pid));
    assert_eq!(servers.int(sv, "port"), i64::from(shared_pg().port()));
    assert_eq!(servers.get(sv, "link"), Some(client_ptr.as_str()));
    assert_eq!(servers.get(sv, "ptr"), Some(client_link.as_str()));

    // After COMMIT the server goes back to the pool; the client stays
    // (PgBouncer counts logged-in idle clients as cl_active).
    c.batch_execute("COMMIT").await.unwrap();
    settle(&a, &db).await;
    let pools = show(&a, "SHOW POOLS").await;
    let row = pools.row("database", &db);
    assert_eq!(pools.int(row, "cl_active"), 1);
    assert_eq!(pools.int(row, "sv_active"), 0);
    assert_eq!(pools.int(row, "sv_idle"), 1);
    let clients = show(&a, "SHOW CLIENTS").await;
    let cl = clients.row("database", &db);
    assert_eq!(clients.get(cl, "state"), Some("idle"));
    assert_eq!(clients.get(cl, "link"), None);
    let servers = show(&a, "SHOW SERVERS").await;
    assert_eq!(
        servers.get(servers.row("database", &db), "state"),
        Some("idle")
    );

    // SHOW DATABASES and SHOW USERS count them too.
    let dbs = show(&a, "SHOW DATABASES").await;
    let d = dbs.row("name", &db);
    assert_eq!(dbs.int(d, "pool_size"), 2);
    assert_eq!(dbs.int(d, "current_connections"), 1);
    assert_eq!(dbs.int(d, "current_client_connections"), 1);
    assert_eq!(dbs.int(d, "port"), i64::from(shared_pg().port()));
    let users = show(&a, "SHOW USERS").await;
    assert_eq!(
        users.int(users.row("name", "postgres"), "current_client_connections"),
        1
    );
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_users_may_show_but_not_control_and_others_are_refused() {
    let db = fresh_db(shared_pg(), "adm_auth");
    let p = start_admin(&db, "size = 2", "").await;

    // SCRAM stats user.
    let m = connect_url(&admin_url(&p, "monitor", MONITOR_PW, "sqlmux"))
        .await
        .expect("stats user logs in");
    show(&m, "SHOW POOLS").await;
    for cmd in [
        "PAUSE",
        &format!("RESUME {db}"),
        "RELOAD",
        "KILL x",
        "SHUTDOWN",
        "RESET STATEMENTS",
    ] {
        let e = m.simple_query(cmd).await.unwrap_err();
        assert_eq!(sqlstate(&e), "42501", "{cmd}: {e}");
        let msg = err_text(&e);
        assert!(msg.contains("requires an admin user"), "{msg}");
    }
    // md5-only stats user.
    let l = connect_url(&admin_url(&p, "legacy", LEGACY_PW, "sqlmux"))
        .await
        .expect("md5 stats user logs in");
    show(&l, "SHOW STATS").await;

    // A known user that is neither admin nor stats user.
    let e = connect_url(&admin_url(&p, "postgres", "x", "sqlmux"))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "28000", "{e}");
    assert!(
        err_text(&e).contains("not an admin or stats user"),
        "{}",
        err_text(&e)
    );
    // Wrong password, for SCRAM and md5.
    for (user, pw) in [("admin", "wrong"), ("legacy", "wrong")] {
        let e = connect_url(&admin_url(&p, user, pw, "sqlmux"))
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&e), "28P01", "{e}");
        assert!(
            err_text(&e).contains(&format!("\"{user}\"")),
            "{}",
            err_text(&e)
        );
    }
    // Another database name.
    let e = connect_url(&admin_url(&p, "admin", ADMIN_PW, &db))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "3D000", "{e}");

    // psql as an operator sees the same refusal.
    let port = admin_port(&p);
    let (ok, out) =
        tokio::task::spawn_blocking(move || psql_admin(port, "monitor", MONITOR_PW, "PAUSE"))
            .await
            .unwrap();
    assert!(!ok, "{out}");
    assert!(out.contains("permission denied"), "{out}");
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_waits_for_open_transactions_and_holds_new_ones_until_resume() {
    let db = fresh_db(shared_pg(), "adm_pause");
    let p = start_admin(&db, "size = 2, checkout_timeout = \"300ms\"", "").await;
    let a = Arc::new(admin(&p).await);
    let busy = p.connect("postgres", None, &db).await;
    let later = p.connect("postgres", None, &db).await;
    busy.batch_execute("BEGIN; SELECT 1").await.unwrap();

    // PAUSE returns only when the open transaction has ended.
    let pause = {
        let (a, cmd) = (a.clone(), format!("PAUSE {db}"));
        tokio::spawn(async move { a.simple_query(&cmd).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !pause.is_finished(),
        "PAUSE returned while a transaction was open"
    );
    busy.batch_execute("COMMIT").await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), pause)
        .await
        .expect("PAUSE returns after COMMIT")
        .unwrap()
        .expect("PAUSE succeeds");
    let pools = show(&a, "SHOW POOLS").await;
    assert_eq!(pools.int(pools.row("database", &db), "paused"), 1);
    let dbs = show(&a, "SHOW DATABASES").await;
    assert_eq!(dbs.int(dbs.row("name", &db), "paused"), 1);

    // A new transaction waits (longer than checkout_timeout) ...
    let held = tokio::spawn(async move { later.simple_query("SELECT 'resumed'").await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !held.is_finished(),
        "a query ran while the database was paused"
    );
    let pools = show(&a, "SHOW POOLS").await;
    assert_eq!(pools.int(pools.row("database", &db), "cl_waiting"), 1);
    // ... until RESUME.
    a.simple_query(&format!("RESUME {db}")).await.unwrap();
    let rows = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .expect("query runs after RESUME")
        .unwrap()
        .expect("query succeeds");
    assert!(matches!(&rows[1], SimpleQueryMessage::Row(r) if r.get(0) == Some("resumed")));
    // The client that was open during PAUSE still works.
    busy.simple_query("SELECT 1").await.unwrap();
    p.proxy.shutdown_now().await;
}

fn write_config(path: &std::path::Path, db: &str, size: usize) {
    let text = format!(
        "[postgres]\nlisten = \"127.0.0.1:0\"\nauth = \"trust\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        admin_body(db, &format!("size = {size}"), "")
            .replace("{pg_port}", &shared_pg().port().to_string())
    );
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_a_new_pool_size_and_refuses_a_broken_file_without_dropping_clients() {
    let db = fresh_db(shared_pg(), "adm_reload");
    let dir = std::env::temp_dir().join(format!("sqlmux-admin-{}-{db}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sqlmux.toml");
    write_config(&path, &db, 2);
    let proxy = Proxy::start(Config::load(&path).expect("config file loads"))
        .await
        .expect("proxy starts");
    let p = TestProxy {
        port: proxy.postgres_addr().port(),
        proxy,
    };
    let a = admin(&p).await;
    let c = p.connect("postgres", None, &db).await;
    c.simple_query("SELECT 1").await.unwrap();
    let pools = show(&a, "SHOW POOLS").await;
    assert_eq!(pools.int(pools.row("database", &db), "size"), 2);

    write_config(&path, &db, 5);
    a.simple_query("RELOAD").await.expect("RELOAD succeeds");
    let pools = show(&a, "SHOW POOLS").await;
    assert_eq!(pools.int(pools.row("database", &db), "size"), 5);
    let dbs = show(&a, "SHOW DATABASES").await;
    assert_eq!(dbs.int(dbs.row("name", &db), "pool_size"), 5);
    // The client connected before RELOAD is still there and works.
    c.simple_query("SELECT 1")
        .await
        .expect("client survives RELOAD");

    // A broken file is refused with the parser's message; nothing changes.
    std::fs::write(&path, "[pool]\nsize_pre_cpu = 3\n").unwrap();
    let e = a.simple_query("RELOAD").await.unwrap_err();
    let msg = err_text(&e);
    assert!(msg.contains("size_pre_cpu"), "{msg}");
    assert!(msg.contains("unchanged"), "{msg}");
    let dbs = show(&a, "SHOW DATABASES").await;
    assert_eq!(dbs.int(dbs.row("name", &db), "pool_size"), 5);
    c.simple_query("SELECT 1")
        .await
        .expect("client survives a refused RELOAD");
    let cfg = show(&a, "SHOW CONFIG").await;
    let file = cfg.row("key", "config_file");
    assert_eq!(
        cfg.get(file, "value"),
        Some(path.display().to_string().as_str())
    );
    // PgBouncer's names for the same settings follow sqlmux's own rows.
    let keys: Vec<&str> = cfg.rows.iter().map(|r| r[0].as_deref().unwrap()).collect();
    let own_end = keys.iter().position(|k| *k == "config_file").unwrap();
    for (key, value) in [
        ("admin_users", "admin"),
        ("stats_users", "monitor,legacy"),
        ("pool_mode", "transaction"),
        ("listen_addr", "127.0.0.1"),
        ("listen_port", "0"),
        ("auth_type", "trust"),
        ("max_client_conn", "10000"),
        ("min_pool_size", "0"),
        ("server_idle_timeout", "600"),
        ("server_lifetime", "3600"),
        ("query_wait_timeout", "5"),
        ("client_login_timeout", "60"),
        ("max_prepared_statements", "200"),
    ] {
        let at = keys
            .iter()
            .position(|k| *k == key)
            .unwrap_or_else(|| panic!("{key} missing"));
        assert!(at > own_end, "{key} comes after sqlmux's own rows");
        assert_eq!(cfg.get(cfg.row("key", key), "value"), Some(value), "{key}");
    }
    let size = cfg
        .get(cfg.row("key", "default_pool_size"), "value")
        .unwrap();
    assert!(size.parse::<usize>().unwrap() >= 2, "{size}");
    p.proxy.shutdown_now().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Checks Prometheus text exposition line by line; returns the samples as
/// (name, labels, value).
fn parse_prometheus(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let mut typed: HashSet<String> = HashSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut w = rest.split_whitespace();
            match w.next() {
                Some("TYPE") => {
                    let name = w.next().expect("TYPE names a family");
                    let ty = w.next().expect("TYPE has a type");
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&ty),
                        "{line}"
                    );
                    assert!(typed.insert(name.to_owned()), "family typed twice: {line}");
                }
                Some("HELP") => {}
                _ => panic!("unknown comment: {line}"),
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("no value: {line}"));
        let name = &line[..name_end];
        assert!(name.starts_with("sqlmux_"), "{line}");
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':'),
            "{line}"
        );
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let mut key = String::new();
            let end;
            loop {
                let (i, ch) = chars
                    .next()
                    .unwrap_or_else(|| panic!("unclosed labels: {line}"));
                match ch {
                    '}' if key.is_empty() => {
                        end = i;
                        break;
                    }
                    ',' if key.is_empty() => {}
                    '=' => {
                        assert_eq!(chars.next().map(|c| c.1), Some('"'), "{line}");
                        let mut value = String::new();
                        loop {
                            match chars.next().map(|c| c.1) {
                                Some('\\') => match chars.next().map(|c| c.1) {
                                    Some('n') => value.push('\n'),
                                    Some(c @ ('\\' | '"')) => value.push(c),
                                    other => panic!("bad escape {other:?}: {line}"),
                                },
                                Some('"') => break,
                                Some(c) => value.push(c),
                                None => panic!("unterminated value: {line}"),
                            }
                        }
                        assert!(
                            key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                            "{line}"
                        );
                        labels.insert(std::mem::take(&mut key), value);
                    }
                    c => key.push(c),
                }
            }
            rest = &body[end + 1..];
        }
        let value = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("no space before value: {line}"));
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| typed.contains(*f) && !typed.contains(name))
            })
            .unwrap_or(name);
        assert!(typed.contains(family), "sample without # TYPE: {line}");
        samples.push((name.to_owned(), labels, v));
    }
    samples
}

fn sample(
    samples: &[(String, BTreeMap<String, String>, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_move_with_traffic() {
    let db = fresh_db(shared_pg(), "adm_metrics");
    let p = start_admin(&db, "size = 2", "").await;
    let port = admin_port(&p);
    let (status, body) = http_get(port, "/healthz").await;
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, _) = http_get(port, "/nothing-here").await;
    assert_eq!(status, 404);

    let c = p.connect("postgres", None, &db).await;
    c.simple_query("SELECT 1").await.unwrap();
    let (status, body) = http_get(port, "/metrics").await;
    assert_eq!(status, 200);
    let before = parse_prometheus(&body);
    let l = [("database", db.as_str()), ("user", "postgres")];
    let xacts_before =
        sample(&before, "sqlmux_transactions_total", &l).expect("transactions counter");
    for _ in 0..3 {
        c.simple_query("SELECT 1").await.unwrap();
    }
    let a = admin(&p).await;
    settle(&a, &db).await;
    let (_, body) = http_get(port, "/metrics").await;
    let after = parse_prometheus(&body);
    let xacts_after = sample(&after, "sqlmux_transactions_total", &l).unwrap();
    assert!(
        xacts_after >= xacts_before + 3.0,
        "transactions {xacts_before} -> {xacts_after}"
    );
    assert!(sample(&after, "sqlmux_queries_total", &l).unwrap() >= 4.0);
    assert_eq!(sample(&after, "sqlmux_pool_size", &l), Some(2.0));
    assert_eq!(
        sample(
            &after,
            "sqlmux_servers",
            &[("database", &db), ("user", "postgres"), ("state", "idle")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &after,
            "sqlmux_clients",
            &[("database", &db), ("user", "postgres"), ("state", "idle")]
        ),
        Some(1.0)
    );
    // Checkout wait is a real histogram with buckets.
    let inf = sample(
        &after,
        "sqlmux_checkout_wait_seconds_bucket",
        &[("database", &db), ("le", "+Inf")],
    )
    .expect("checkout wait histogram");
    assert_eq!(
        Some(inf),
        sample(
            &after,
            "sqlmux_checkout_wait_seconds_count",
            &[("database", &db)]
        )
    );
    assert!(inf >= 4.0, "{inf}");
    assert!(
        sample(
            &after,
            "sqlmux_checkout_wait_seconds_bucket",
            &[("database", &db), ("le", "0.0001")]
        )
        .is_some()
    );
    assert!(
        sample(
            &after,
            "sqlmux_statement_duration_seconds_count",
            &[("database", &db)]
        )
        .is_some()
    );
    assert_eq!(
        sample(&after, "sqlmux_n_plus_one_bursts_total", &[]),
        Some(0.0)
    );
    assert_eq!(
        sample(&after, "sqlmux_leaked_transactions_open", &[]),
        Some(0.0)
    );

    // When the client leaves, its gauge drops instead of going stale.
    drop(c);
    eventually(
        Duration::from_secs(5),
        "client gone from /metrics",
        async || {
            let (_, body) = http_get(port, "/metrics").await;
            let s = parse_prometheus(&body);
            sample(
                &s,
                "sqlmux_clients",
                &[("database", &db), ("user", "postgres"), ("state", "idle")],
            ) == Some(0.0)
        },
    )
    .await;
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_paused_and_while_shutdown_drains() {
    let db = fresh_db(shared_pg(), "adm_ready");
    let p = start_admin(&db, "size = 2", "[general]\nshutdown_timeout = \"20s\"").await;
    let port = admin_port(&p);
    let a = admin(&p).await;
    assert_eq!(http_get(port, "/readyz").await.0, 200);

    a.simple_query("PAUSE").await.unwrap();
    assert_eq!(http_get(port, "/readyz").await.0, 503);
    let state = show(&a, "SHOW STATE").await;
    assert_eq!(state.get(state.row("key", "paused"), "value"), Some("yes"));
    a.simple_query("RESUME").await.unwrap();
    assert_eq!(http_get(port, "/readyz").await.0, 200);

    // An open transaction keeps the drain going.
    let c = p.connect("postgres", None, &db).await;
    c.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let msgs = a.simple_query("SHUTDOWN").await.expect("SHUTDOWN answers");
    assert!(matches!(
        msgs.last(),
        Some(SimpleQueryMessage::CommandComplete(_))
    ));
    eventually(
        Duration::from_secs(5),
        "/readyz 503 while draining",
        async || http_get(port, "/readyz").await.0 == 503,
    )
    .await;
    assert_eq!(http_get(port, "/healthz").await.0, 200, "still alive");
    // New PostgreSQL clients are not accepted any more.
    assert!(connect_url(&p.url("postgres", None, &db)).await.is_err());
    c.batch_execute("COMMIT")
        .await
        .expect("the open transaction may finish");
    tokio::time::timeout(Duration::from_secs(10), p.proxy.stopped())
        .await
        .expect("proxy stops once the transaction is done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_statements_lists_traffic_and_reset_statements_empties_it() {
    let db = fresh_db(shared_pg(), "adm_stmts");
    let p = start_admin(&db, "size = 2", "").await;
    let a = admin(&p).await;
    let c = p.connect("postgres", None, &db).await;
    for i in 0..3 {
        c.simple_query(&format!("SELECT {i} AS answer, pg_sleep(0.002)"))
            .await
            .unwrap();
    }
    let mut found = None;
    eventually(
        Duration::from_secs(5),
        "statement in SHOW STATEMENTS",
        async || {
            let s = show(&a, "SHOW STATEMENTS").await;
            found = s
                .rows
                .iter()
                .find(|r| {
                    r[s.col("database")].as_deref() == Some(db.as_str())
                        && r[s.col("query")]
                            .as_deref()
                            .is_some_and(|q| q.contains("answer"))
                })
                .map(|r| (s.columns.clone(), r.clone()));
            found.as_ref().is_some_and(|(cols, r)| {
                r[cols.iter().position(|c| c == "calls").unwrap()].as_deref() == Some("3")
            })
        },
    )
    .await;
    let (cols, row) = found.unwrap();
    let s = Shown {
        columns: cols,
        rows: vec![row.clone()],
    };
    let fp = s.get(&row, "fingerprint").unwrap().to_owned();
    assert_eq!(fp.len(), 16, "{fp}");
    assert_eq!(s.get(&row, "user"), Some("postgres"));
    assert_eq!(s.int(&row, "errors"), 0);
    let total: f64 = s.get(&row, "total_ms").unwrap().parse().unwrap();
    let max: f64 = s.get(&row, "max_ms").unwrap().parse().unwrap();
    assert!(total >= 6.0 && max >= 2.0, "{row:?}");
    let (_, decimals) = s.get(&row, "mean_ms").unwrap().split_once('.').unwrap();
    assert_eq!(decimals.len(), 3, "{row:?}");

    let h = show(&a, &format!("SHOW HISTOGRAM {fp}")).await;
    assert_eq!(h.columns, ["le_ms", "count"]);
    let counted: i64 = h
        .rows
        .iter()
        .map(|r| r[1].as_deref().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(counted, 3);
    let e = a
        .simple_query("SHOW HISTOGRAM 0123456789abcdef")
        .await
        .unwrap_err();
    assert!(
        err_text(&e).contains("0123456789abcdef"),
        "{}",
        err_text(&e)
    );

    a.simple_query("RESET STATEMENTS").await.unwrap();
    let s = show(&a, "SHOW STATEMENTS").await;
    assert!(s.rows.is_empty(), "{s:?}");
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_disconnects_clients_and_new_clients_wait_for_resume() {
    let db = fresh_db(shared_pg(), "adm_kill");
    let p = start_admin(&db, "size = 2", "").await;
    let a = admin(&p).await;
    let victim = p.connect("postgres", None, &db).await;
    victim.batch_execute("BEGIN; SELECT 1").await.unwrap();
    a.simple_query(&format!("KILL {db}"))
        .await
        .expect("KILL succeeds");
    let e = victim.simple_query("SELECT 1").await.unwrap_err();
    assert!(victim.is_closed() || e.is_closed(), "{e}");
    eventually(Duration::from_secs(5), "no server after KILL", async || {
        let servers = show(&a, "SHOW SERVERS").await;
        servers.rows_where("database", &db).is_empty()
    })
    .await;

    let newcomer = p.connect("postgres", None, &db).await;
    let held = tokio::spawn(async move { newcomer.simple_query("SELECT 1").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!held.is_finished(), "a new client ran a query after KILL");
    a.simple_query(&format!("RESUME {db}")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .expect("query runs after RESUME")
        .unwrap()
        .expect("query succeeds");
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_closes_idle_servers_and_unknown_commands_point_to_show_help() {
    let db = fresh_db(shared_pg(), "adm_reconn");
    let p = start_admin(&db, "size = 2", "").await;
    let a = admin(&p).await;
    let c = p.connect("postgres", None, &db).await;
    let pid1: i32 = c
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    a.simple_query(&format!("RECONNECT {db}")).await.unwrap();
    // The server closes (at once when idle, else when it comes back); the
    // client's next statement gets a new one.
    eventually(
        Duration::from_secs(5),
        "old server closed after RECONNECT",
        async || {
            let servers = show(&a, "SHOW SERVERS").await;
            servers
                .rows_where("remote_pid", &pid1.to_string())
                .is_empty()
        },
    )
    .await;
    let pid2: i32 = c
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(pid1, pid2, "a new server after RECONNECT");

    let e = a.simple_query("FROBNICATE").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42601");
    assert!(err_text(&e).contains("SHOW HELP"), "{}", err_text(&e));
    let e = a.simple_query("PAUSE no_such_db").await.unwrap_err();
    assert!(err_text(&e).contains("no_such_db"), "{}", err_text(&e));
    // The extended protocol is refused with a clear error; the session
    // goes on.
    let e = a.query("SHOW POOLS", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e), "0A000");
    assert!(err_text(&e).contains("simple query"), "{}", err_text(&e));
    show(&a, "SHOW VERSION").await;
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_stats_counts_transactions_and_averages_them_per_period() {
    let db = fresh_db(shared_pg(), "adm_stats");
    let p = start_admin(&db, "size = 2", "[general]\nstats_period = \"1s\"").await;
    let a = admin(&p).await;
    let c = p.connect("postgres", None, &db).await;
    for _ in 0..5 {
        c.simple_query("SELECT 1").await.unwrap();
    }
    settle(&a, &db).await;
    let s = show(&a, "SHOW STATS").await;
    let r = s.row("database", &db);
    assert_eq!(s.int(r, "total_xact_count"), 5);
    assert_eq!(s.int(r, "total_query_count"), 5);
    assert_eq!(s.int(r, "total_client_login_count"), 1);
    assert!(s.int(r, "total_received") > 0 && s.int(r, "total_sent") > 0);
    assert!(s.int(r, "total_xact_time") > 0);
    // Within two periods the averages reflect the traffic.
    eventually(Duration::from_secs(5), "avg_xact_count > 0", async || {
        for _ in 0..5 {
            c.simple_query("SELECT 1").await.unwrap();
        }
        let s = show(&a, "SHOW STATS").await;
        let r = s.row("database", &db);
        s.int(r, "avg_xact_count") > 0 && s.int(r, "avg_xact_time") > 0
    })
    .await;
    let t = show(&a, "SHOW TOTALS").await;
    assert!(t.int(t.row("name", "total_xact_count"), "value") >= 5);
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_appear_in_show_output_or_metrics() {
    let db = fresh_db(shared_pg(), "adm_secret");
    let body = format!(
        "{}\n[[databases]]\nname = \"{db}_forced\"\nhost = \"127.0.0.1\"\nport = {{pg_port}}\ndbname = \"{db}\"\nuser = \"postgres\"\npassword = \"server-secret-pw\"\n",
        admin_body(&db, "size = 2", "")
    );
    let p = start_trust(&body).await;
    let c = p.connect("postgres", None, &format!("{db}_forced")).await;
    c.simple_query("SELECT 1").await.unwrap();
    let a = admin(&p).await;
    let mut everything = String::new();
    for cmd in [
        "SHOW CONFIG",
        "SHOW DATABASES",
        "SHOW USERS",
        "SHOW POOLS",
        "SHOW CLIENTS",
        "SHOW SERVERS",
        "SHOW STATS",
        "SHOW LISTS",
        "SHOW STATEMENTS",
    ] {
        everything.push_str(&format!("{:?}\n", show(&a, cmd).await));
    }
    everything.push_str(&http_get(admin_port(&p), "/metrics").await.1);
    let legacy_md5 = sqlmux_protocol::postgres::auth::md5_hash("legacy", LEGACY_PW);
    for secret in [
        "server-secret-pw",
        ADMIN_PW,
        MONITOR_PW,
        LEGACY_PW,
        legacy_md5.as_str(),
    ] {
        assert!(
            !everything.contains(secret),
            "{secret} leaked:\n{everything}"
        );
    }
    // The forced user is shown, its password is not.
    let dbs = show(&a, "SHOW DATABASES").await;
    let d = dbs.row("name", &format!("{db}_forced"));
    assert_eq!(dbs.get(d, "force_user"), Some("postgres"));
    p.proxy.shutdown_now().await;
}
