//! The MySQL front end against the harness's MariaDB: the mariadb CLI and
//! mysql_async (text protocol) through pools smaller than the client
//! count, session state across servers, KILL QUERY, TLS, caching_sha2
//! logins, and insight for MySQL traffic.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use sqlmux::Proxy;
use sqlmux::config::Config;
use sqlmux_tests::{mariadb_command, run_command, shared_mariadb};

use crate::common::{connect_url, eventually, unique_db};

/// A proxy with `[mysql]` on a free port in front of the shared MariaDB's
/// database `db` (pool of `size`), user app/app-pass and an admin user.
pub(crate) async fn start(db: &str, size: usize, mysql_extra: &str) -> Proxy {
    start_config(db, &format!("size = {size}"), mysql_extra).await
}

/// [`start`] with the database's `pool = { ... }` settings given.
pub(crate) async fn start_with_pool(db: &str, pool: &str) -> Proxy {
    start_config(db, pool, "").await
}

async fn start_config(db: &str, pool: &str, mysql_extra: &str) -> Proxy {
    let m = shared_mariadb();
    let text = format!(
        "[postgres]\nlisten = \"127.0.0.1:0\"\n[mysql]\nlisten = \"127.0.0.1:0\"\n{mysql_extra}\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[databases]]\nname = \"{db}\"\nprotocol = \"mysql\"\nhost = \"127.0.0.1\"\nport = {}\npool = {{ {pool} }}\n\n\
         [[users]]\nname = \"app\"\npassword = \"app-pass\"\n\n[[users]]\nname = \"admin\"\npassword = \"admin-pass\"\n",
        m.port()
    );
    let cfg = Config::parse(&text).unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"));
    Proxy::start(cfg).await.expect("proxy starts")
}

/// A fresh database on the shared MariaDB that user app may use.
pub(crate) fn fresh_db(prefix: &str) -> String {
    let m = shared_mariadb();
    let name = unique_db(prefix);
    m.create_database(&name);
    m.sql(&format!("GRANT ALL ON `{name}`.* TO 'app'@'%';"));
    name
}

pub(crate) fn url(p: &Proxy, db: &str) -> String {
    // prefer_socket=false: mysql_async would otherwise read @@socket and
    // reconnect to the server directly.
    format!(
        "mysql://app:app-pass@127.0.0.1:{}/{db}?prefer_socket=false",
        p.mysql_addr().port()
    )
}

pub(crate) async fn connect(p: &Proxy, db: &str) -> mysql_async::Conn {
    let opts = mysql_async::Opts::from_url(&url(p, db)).expect("url");
    mysql_async::Conn::new(opts)
        .await
        .expect("connect through sqlmux")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_cli_runs_multi_statements_through_sqlmux() {
    let db = fresh_db("my_cli");
    let p = start(&db, 1, "").await;
    let port = p.mysql_addr().port();
    let out = tokio::task::spawn_blocking(move || {
        let cmd = mariadb_command(port, "app", Some("app-pass"), Some(&db));
        let sql = "CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, v INT);\n\
                   INSERT INTO t (v) VALUES (1), (2), (3);\n\
                   SELECT SUM(v) FROM t; SELECT COUNT(*) FROM t;\n\
                   SELECT DATABASE();\n";
        let out = run_command(cmd, Some(sql.as_bytes()), Duration::from_secs(60)).expect("runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap();
    assert!(out.0, "mariadb CLI failed: {}", out.2);
    let lines: Vec<&str> = out.1.lines().collect();
    assert_eq!(lines[..2], ["6", "3"], "{}", out.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_async_clients_share_a_pool_smaller_than_their_count() {
    let db = fresh_db("my_pool");
    let p = start(&db, 2, "").await;
    let mut c = connect(&p, &db).await;
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, client INT, n INT)")
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for client in 0..8 {
        let mut conn = connect(&p, &db).await;
        tasks.push(tokio::spawn(async move {
            for n in 0..20 {
                conn.query_drop("START TRANSACTION").await.unwrap();
                conn.query_drop(format!("INSERT INTO t (client, n) VALUES ({client}, {n})"))
                    .await
                    .unwrap();
                let c: Option<i64> = conn
                    .query_first(format!("SELECT COUNT(*) FROM t WHERE client = {client}"))
                    .await
                    .unwrap();
                assert_eq!(c, Some(n + 1));
                conn.query_drop("COMMIT").await.unwrap();
            }
            conn.disconnect().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total: Option<i64> = c.query_first("SELECT COUNT(*) FROM t").await.unwrap();
    assert_eq!(total, Some(160));
    let servers: Option<i64> = c
        .query_first(format!(
            "SELECT COUNT(*) FROM information_schema.processlist WHERE db = '{db}'"
        ))
        .await
        .unwrap();
    assert!(
        servers.unwrap() <= 2,
        "more servers than the pool size: {servers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_variables_and_schema_follow_a_client_across_servers() {
    let db = fresh_db("my_state");
    let other = fresh_db("my_state_other");
    let p = start(&db, 2, "").await;
    let mut a = connect(&p, &db).await;
    let mut b = connect(&p, &db).await;
    a.query_drop("SET time_zone = '+03:00', sql_mode = 'ANSI_QUOTES'")
        .await
        .unwrap();
    a.query_drop(format!("USE `{other}`")).await.unwrap();
    let mut ids = std::collections::BTreeSet::new();
    for i in 0..6 {
        // b holds one server in a transaction every other round, so a's
        // statements land on different servers.
        let first: Option<u64> = a.query_first("SELECT CONNECTION_ID()").await.unwrap();
        ids.extend(first);
        if i % 2 == 0 {
            // The most recently returned server is a's: b takes it.
            b.query_drop("START TRANSACTION").await.unwrap();
        }
        let row: Option<(u64, String, String, Option<String>)> = a
            .query_first("SELECT CONNECTION_ID(), @@time_zone, @@sql_mode, DATABASE()")
            .await
            .unwrap();
        let (id, tz, mode, schema) = row.unwrap();
        ids.insert(id);
        assert_eq!(tz, "+03:00");
        assert_eq!(mode, "ANSI_QUOTES");
        assert_eq!(schema.as_deref(), Some(other.as_str()));
        if i % 2 == 0 {
            b.query_drop("COMMIT").await.unwrap();
        }
        // Another client on a fresh session sees the server defaults.
        let tz_b: Option<String> = b.query_first("SELECT @@time_zone").await.unwrap();
        assert_eq!(tz_b.as_deref(), Some("SYSTEM"));
    }
    assert!(ids.len() > 1, "a always ran on one server: {ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_query_stops_only_its_own_statement() {
    let db = fresh_db("my_kill");
    let p = start(&db, 3, "").await;
    let mut a = connect(&p, &db).await;
    let mut b = connect(&p, &db).await;
    let mut killer = connect(&p, &db).await;
    let a_id = a.id();
    let t0 = std::time::Instant::now();
    let slow = tokio::spawn(async move {
        // Interrupted: SLEEP returns 1, or the statement fails with 1317.
        let v = match a.query_first::<i64, _>("SELECT SLEEP(30)").await {
            Ok(v) => v,
            Err(mysql_async::Error::Server(e)) if e.code == 1317 => Some(1),
            Err(e) => panic!("{e}"),
        };
        (v, t0.elapsed())
    });
    let other = tokio::spawn(async move {
        let v: Option<i64> = b.query_first("SELECT SLEEP(2)").await.unwrap();
        v
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    killer
        .query_drop(format!("KILL QUERY {a_id}"))
        .await
        .unwrap();
    let (v, took) = slow.await.unwrap();
    assert_eq!(v, Some(1), "an interrupted SLEEP returns 1");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(
        other.await.unwrap(),
        Some(0),
        "the other client's statement ran to its end"
    );
    let err = killer
        .query_drop("KILL QUERY 4000000000")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown thread"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_client_leaves_no_rows_and_no_open_transaction() {
    let db = fresh_db("my_killed");
    let p = start(&db, 1, "").await;
    let mut c = connect(&p, &db).await;
    c.query_drop("CREATE TABLE t (id INT)").await.unwrap();
    let port = p.mysql_addr().port();
    let db2 = db.clone();
    tokio::task::spawn_blocking(move || {
        let mut cmd = mariadb_command(port, "app", Some("app-pass"), Some(&db2));
        cmd.stdin(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("mariadb CLI");
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"START TRANSACTION;\nINSERT INTO t VALUES (1);\nSELECT SLEEP(60);\n")
            .unwrap();
        stdin.flush().unwrap();
        std::thread::sleep(Duration::from_secs(1));
        child.kill().unwrap();
        let _ = child.wait();
    })
    .await
    .unwrap();
    let m = shared_mariadb();
    eventually(Duration::from_secs(20), "the killed client's transaction ends", async || {
        m.sql(&format!(
            "SELECT COUNT(*) FROM information_schema.innodb_trx t JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id WHERE p.db = '{db}'"
        )) == "0"
    })
    .await;
    let rows: Option<i64> = c.query_first("SELECT COUNT(*) FROM t").await.unwrap();
    assert_eq!(rows, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insight_records_mysql_statements() {
    let db = fresh_db("my_insight");
    let p = start(&db, 1, "").await;
    let mut c = connect(&p, &db).await;
    for i in 0..5 {
        c.query_drop(format!("SELECT {i} + 1")).await.unwrap();
    }
    let admin = connect_url(&format!(
        "host=127.0.0.1 port={} user=admin password=admin-pass dbname=sqlmux",
        p.admin_addr().port()
    ))
    .await
    .expect("admin login");
    let rows = admin.simple_query("SHOW STATEMENTS").await.unwrap();
    let found = rows.iter().any(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => {
            r.get("query") == Some("select ? + ?") && r.get("calls") == Some("5")
        }
        _ => false,
    });
    let texts: Vec<String> = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some(format!("{:?} {:?}", r.get("query"), r.get("calls")))
            }
            _ => None,
        })
        .collect();
    assert!(
        found,
        "SHOW STATEMENTS lacks the MySQL statement: {texts:?}"
    );
    let pools = admin.simple_query("SHOW POOLS").await.unwrap();
    let mysql_pool = pools.iter().any(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get("database") == Some(db.as_str()),
        _ => false,
    });
    assert!(mysql_pool, "SHOW POOLS lacks the MySQL pool");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caching_sha2_clients_log_in_on_the_fast_path() {
    let db = fresh_db("my_sha2");
    let p = start(&db, 1, "auth = \"caching_sha2_password\"").await;
    let mut c = connect(&p, &db).await;
    let v: Option<i64> = c.query_first("SELECT 41 + 1").await.unwrap();
    assert_eq!(v, Some(42));
    let bad = format!(
        "mysql://app:wrong@127.0.0.1:{}/{db}?prefer_socket=false",
        p.mysql_addr().port()
    );
    let err = mysql_async::Conn::new(mysql_async::Opts::from_url(&bad).unwrap())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("password authentication failed"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_insert_id_and_ping_are_answered_like_a_direct_connection() {
    let db = fresh_db("my_lastid");
    let p = start(&db, 1, "").await;
    let mut c = connect(&p, &db).await;
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, v INT)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO t (v) VALUES (1), (2)")
        .await
        .unwrap();
    let first = c.last_insert_id();
    let id: Option<u64> = c.query_first("SELECT LAST_INSERT_ID()").await.unwrap();
    assert_eq!(id, first);
    c.query_drop("UPDATE t SET v = v + 1").await.unwrap();
    let n: Option<i64> = c.query_first("SELECT ROW_COUNT()").await.unwrap();
    assert_eq!(n, Some(2));
    c.ping().await.unwrap();
    c.reset().await.unwrap();
    let v: Option<i64> = c.query_first("SELECT 1").await.unwrap();
    assert_eq!(v, Some(1));
}

/// A proxy whose MySQL listener offers TLS with `mode`, with `auth` as
/// the greeting's plugin and `password` as app's `[[users]]` secret.
async fn start_tls(
    db: &str,
    certs: &crate::dropin::Certs,
    mode: &str,
    auth: &str,
    password: &str,
) -> Proxy {
    let m = shared_mariadb();
    let text = format!(
        "[postgres]\nlisten = \"127.0.0.1:0\"\n[mysql]\nlisten = \"127.0.0.1:0\"\nauth = \"{auth}\"\n\
         tls = {{ cert = \"{}\", key = \"{}\", mode = \"{mode}\" }}\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[databases]]\nname = \"{db}\"\nprotocol = \"mysql\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"app\"\npassword = \"app-pass\"\npool = {{ size = 1 }}\n\n\
         [[users]]\nname = \"app\"\npassword = \"{password}\"\n",
        certs.cert.display(),
        certs.key.display(),
        m.port()
    );
    Proxy::start(Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}")))
        .await
        .expect("proxy starts")
}

/// mysql_async options through `p`, over TLS (accepting the test CA's
/// certificate) or in plain text.
fn opts(p: &Proxy, db: &str, tls: bool) -> mysql_async::Opts {
    let builder =
        mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(&url(p, db)).unwrap());
    let builder = if tls {
        builder.ssl_opts(mysql_async::SslOpts::default().with_danger_accept_invalid_certs(true))
    } else {
        builder
    };
    builder.into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_require_refuses_plain_clients_and_serves_tls_ones() {
    let certs = crate::dropin::make_certs();
    let db = fresh_db("my_tlsreq");
    let p = start_tls(&db, &certs, "require", "mysql_native_password", "app-pass").await;
    let err = mysql_async::Conn::new(opts(&p, &db, false))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("requires TLS"), "{err}");
    let mut c = mysql_async::Conn::new(opts(&p, &db, true))
        .await
        .expect("TLS login");
    let v: Option<i64> = c.query_first("SELECT 20 + 22").await.unwrap();
    assert_eq!(v, Some(42));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caching_sha2_full_authentication_over_tls_serves_a_user_known_only_by_its_hash() {
    // `*HEX` is what mysql.user stores for native passwords: it cannot check
    // a caching_sha2 scramble, so sqlmux asks for full authentication,
    // which sends the password itself and is allowed over TLS only.
    let certs = crate::dropin::make_certs();
    let db = fresh_db("my_sha2full");
    let hash = "*3F57C84FDE4BBAB2C998F3A2D311684280BAE8E7"; // app-pass
    let p = start_tls(&db, &certs, "prefer", "caching_sha2_password", hash).await;
    let mut c = mysql_async::Conn::new(opts(&p, &db, true))
        .await
        .expect("full authentication over TLS");
    let v: Option<i64> = c.query_first("SELECT 6 * 7").await.unwrap();
    assert_eq!(v, Some(42));
    let err = mysql_async::Conn::new(opts(&p, &db, false))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("TLS"),
        "plain text must be refused with a reason: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymysql_clients_share_one_server_and_see_their_own_transactions() {
    let python = crate::dropin::python_with("pymysql");
    let db = fresh_db("my_pymysql");
    let p = start(&db, 1, "").await;
    let port = p.mysql_addr().port();
    let script = format!(
        r#"
import pymysql
def conn():
    return pymysql.connect(host="127.0.0.1", port={port}, user="app", password="app-pass", database="{db}", autocommit=True)
a, b, c = conn(), conn(), conn()
with a.cursor() as cur:
    cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))")
# Interleaved autocommit statements from three clients over one server.
for i in range(30):
    with (a, b, c)[i % 3].cursor() as cur:
        cur.execute("INSERT INTO t VALUES (%s, %s)", (i, "x" * (i % 5)))
# An explicit transaction keeps its server until it ends.
b.begin()
with b.cursor() as cur:
    cur.execute("INSERT INTO t VALUES (100, 'tx')")
b.rollback()
with c.cursor() as cur:
    cur.execute("SELECT COUNT(*), SUM(id) FROM t")
    n, s = cur.fetchone()
assert (n, s) == (30, sum(range(30))), (n, s)
with a.cursor() as cur:
    cur.execute("SELECT v FROM t WHERE id = %s", (4,))
    assert cur.fetchone() == ("xxxx",)
print("ok")
"#
    );
    let (ok, out) = crate::dropin::run_python(python, script).await;
    assert!(ok && out.contains("ok"), "{out}");
}

/// Rows of an admin console command as (column -> value) maps.
pub(crate) async fn admin_rows(
    admin: &tokio_postgres::Client,
    sql: &str,
) -> Vec<std::collections::HashMap<String, String>> {
    let msgs = admin.simple_query(sql).await.unwrap();
    crate::common::row_maps(msgs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_console_lists_and_controls_mysql_pools() {
    let db = fresh_db("my_admin");
    let p = start(&db, 1, "").await;
    let mut c = connect(&p, &db).await;
    let first: Option<u64> = c.query_first("SELECT CONNECTION_ID()").await.unwrap();
    let admin = connect_url(&format!(
        "host=127.0.0.1 port={} user=admin password=admin-pass dbname=sqlmux",
        p.admin_addr().port()
    ))
    .await
    .expect("admin login");
    // Listed beside PostgreSQL pools, with the protocol column.
    for show in [
        "SHOW POOLS",
        "SHOW SERVERS",
        "SHOW DATABASES",
        "SHOW CLIENTS",
    ] {
        let rows = admin_rows(&admin, show).await;
        let column = if show == "SHOW DATABASES" {
            "name"
        } else {
            "database"
        };
        assert!(
            rows.iter()
                .any(|r| r[column] == db && r["protocol"] == "mysql"),
            "{show} lacks the MySQL {db}: {rows:?}"
        );
    }
    // /metrics labels the pool with its protocol.
    let (status, metrics) = crate::admin::http_get(p.admin_addr().port(), "/metrics").await;
    assert_eq!(status, 200);
    let label = format!("sqlmux_pool_size{{database=\"{db}\",user=\"app\",protocol=\"mysql\"}}");
    assert!(metrics.contains(&label), "no {label} in /metrics");
    // RECONNECT closes the idle server: the next statement gets a new one.
    admin
        .simple_query(&format!("RECONNECT {db}"))
        .await
        .unwrap();
    let second: Option<u64> = c.query_first("SELECT CONNECTION_ID()").await.unwrap();
    assert_ne!(first, second, "RECONNECT left the old server in the pool");
    // PAUSE holds the next transaction until RESUME.
    admin.simple_query(&format!("PAUSE {db}")).await.unwrap();
    let held = tokio::spawn(async move {
        let v: Option<i64> = c.query_first("SELECT 7").await.unwrap();
        (v, c)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!held.is_finished(), "a query ran while its pool was paused");
    admin.simple_query(&format!("RESUME {db}")).await.unwrap();
    let (v, mut c) = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .expect("RESUME lets the query run")
        .unwrap();
    assert_eq!(v, Some(7));
    // KILL disconnects the database's clients.
    admin.simple_query(&format!("KILL {db}")).await.unwrap();
    assert!(
        c.query_drop("SELECT 1").await.is_err(),
        "client survived KILL"
    );
    admin.simple_query(&format!("RESUME {db}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_plus_one_bursts_and_leaked_transactions_are_found_in_mysql_traffic() {
    let db = fresh_db("my_detect");
    let insight = "[insight]\nleaked_transaction = { idle = \"300ms\", action = \"rollback\" }";
    let p = start(&db, 2, insight).await;
    let mut c = connect(&p, &db).await;
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    let values: Vec<String> = (1..=30).map(|i| format!("({i}, {i})")).collect();
    c.query_drop(format!("INSERT INTO t VALUES {}", values.join(", ")))
        .await
        .unwrap();
    // An ORM loop: a parent query, then one lookup per row.
    c.query_drop("SELECT id FROM t ORDER BY id").await.unwrap();
    for i in 1..=20 {
        let v: Option<i64> = c
            .query_first(format!("SELECT v FROM t WHERE id = {i}"))
            .await
            .unwrap();
        assert_eq!(v, Some(i));
    }
    let admin = connect_url(&format!(
        "host=127.0.0.1 port={} user=admin password=admin-pass dbname=sqlmux",
        p.admin_addr().port()
    ))
    .await
    .expect("admin login");
    let bursts = admin_rows(&admin, "SHOW N_PLUS_ONE").await;
    let burst = bursts
        .iter()
        .find(|r| r["database"] == db)
        .unwrap_or_else(|| panic!("no N+1 burst for {db}: {bursts:?}"));
    assert!(burst["query"].contains("where id = ?"), "{burst:?}");
    // A transaction left idle is rolled back and the client told why.
    c.query_drop("BEGIN").await.unwrap();
    c.query_drop("INSERT INTO t VALUES (100, 100)")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let err = c.query_drop("SELECT 1").await.unwrap_err();
    assert!(err.to_string().contains("rolled back"), "{err}");
    let mut other = connect(&p, &db).await;
    let n: Option<i64> = other
        .query_first("SELECT COUNT(*) FROM t WHERE id = 100")
        .await
        .unwrap();
    assert_eq!(n, Some(0), "the leaked transaction's row is visible");
    let leaks = admin_rows(&admin, "SHOW LEAKS").await;
    assert!(
        leaks
            .iter()
            .any(|r| r["database"] == db && r["action"] == "rollback"),
        "no leak for {db}: {leaks:?}"
    );
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_hello_in_the_segment_of_the_ssl_request_is_served() {
    // A MySQL client gets no answer to its SSL request: it may send the
    // TLS ClientHello right behind it, and both can arrive in one read.
    // (mysql-connector-python's asyncio connections do.) The ClientHello
    // belongs to the TLS handshake, not to the login's buffer.
    let certs = crate::dropin::make_certs();
    let db = fresh_db("my_tlsfirst");
    let p = start_tls(&db, &certs, "prefer", "mysql_native_password", "app-pass").await;
    let port = p.mysql_addr().port();
    let python = crate::dropin::python_with("ssl");
    let script = format!(
        r#"
import hashlib, socket, ssl, struct
port, user, password, db = {port}, "app", "app-pass", "{db}"

def packet(seq, payload):
    return struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload

s = socket.create_connection(("127.0.0.1", port), timeout=10)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

def plain_exact(n):
    buf = b""
    while len(buf) < n:
        c = s.recv(n - len(buf))
        if not c:
            raise SystemExit("closed by sqlmux")
        buf += c
    return buf

head = plain_exact(4)
greeting = plain_exact(int.from_bytes(head[:3], "little"))
assert greeting[0] == 10, greeting
i = greeting.index(b"\0", 1) + 1 + 4
scramble = greeting[i:i + 8]
i += 8 + 1
caps = int.from_bytes(greeting[i:i + 2], "little"); i += 2 + 1 + 2
caps |= int.from_bytes(greeting[i:i + 2], "little") << 16; i += 2
i += 1 + 10
scramble += greeting[i:i + 12]
assert caps & 0x800, "no TLS offered"

CAPS = 0x1 | 0x8 | 0x200 | 0x800 | 0x8000 | 0x80000
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(inc, out, server_hostname="localhost")
try:
    tls.do_handshake()
except ssl.SSLWantReadError:
    pass
# One write: the SSL request and the TLS ClientHello right behind it, as a
# client that does not wait between the two may send them.
s.sendall(packet(1, struct.pack("<IIB", CAPS, 1 << 24, 45) + b"\0" * 23) + out.read())

def pump():
    c = s.recv(65536)
    if not c:
        raise SystemExit("closed by sqlmux during the TLS handshake")
    inc.write(c)

while True:
    try:
        tls.do_handshake()
        break
    except ssl.SSLWantReadError:
        data = out.read()
        if data:
            s.sendall(data)
        pump()
data = out.read()
if data:
    s.sendall(data)

def send(b):
    tls.write(b)
    s.sendall(out.read())

def exact(n):
    buf = b""
    while len(buf) < n:
        try:
            buf += tls.read(n - len(buf))
        except ssl.SSLWantReadError:
            pump()
    return buf

def read_packet():
    h = exact(4)
    return exact(int.from_bytes(h[:3], "little"))

def sha1(b):
    return hashlib.sha1(b).digest()

p1 = sha1(password.encode())
token = bytes(a ^ b for a, b in zip(p1, sha1(scramble + sha1(p1)))) if password else b""
resp = (struct.pack("<IIB", CAPS, 1 << 24, 45) + b"\0" * 23 + user.encode() + b"\0"
        + bytes([len(token)]) + token + db.encode() + b"\0" + b"mysql_native_password\0")
send(packet(2, resp))
ok = read_packet()
assert ok[0] == 0, f"login failed: {{ok!r}}"
send(packet(0, b"\x03SELECT 6 * 7"))
assert read_packet() == b"\x01"
read_packet()                      # column definition
assert read_packet()[0] == 0xFE    # EOF
assert read_packet() == b"\x0242", "wrong row"
print("ok")
"#
    );
    let (ok, out) = crate::dropin::run_python(python, script).await;
    assert!(ok && out.contains("ok"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_current_schema_leaves_no_schema_like_a_direct_connection() {
    let db = fresh_db("my_dropschema");
    let p = start(&db, 2, "").await;
    let gone = unique_db("my_gone");
    shared_mariadb().sql(&format!(
        "CREATE DATABASE `{gone}`; GRANT ALL ON `{gone}`.* TO 'app'@'%';"
    ));
    let mut c = connect(&p, &db).await;
    c.query_drop(format!("USE `{gone}`")).await.unwrap();
    c.query_drop(format!("DROP DATABASE `{gone}`"))
        .await
        .unwrap();
    // Directly, the connection now has no default schema; every later
    // statement, on whichever server, must see the same.
    for _ in 0..4 {
        let current: Option<Option<String>> = c.query_first("SELECT DATABASE()").await.unwrap();
        assert_eq!(current, Some(None));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_asking_for_compression_gets_an_error_instead_of_a_hang() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let db = fresh_db("my_compress");
    let p = start(&db, 1, "").await;
    let mut s = tokio::net::TcpStream::connect(p.mysql_addr())
        .await
        .unwrap();
    let read_packet = async |s: &mut tokio::net::TcpStream| {
        let mut head = [0u8; 4];
        s.read_exact(&mut head).await.unwrap();
        let len = u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize;
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await.unwrap();
        (head[3], body)
    };
    let _greeting = read_packet(&mut s).await;
    // HandshakeResponse41: PROTOCOL_41 | SECURE_CONNECTION | PLUGIN_AUTH |
    // COMPRESS, no password, user app.
    let caps: u32 = 0x200 | 0x8000 | 0x8_0000 | 0x20;
    let mut body = Vec::new();
    body.extend_from_slice(&caps.to_le_bytes());
    body.extend_from_slice(&(1u32 << 24).to_le_bytes());
    body.push(45);
    body.extend_from_slice(&[0u8; 23]);
    body.extend_from_slice(b"app\0");
    body.push(0);
    body.extend_from_slice(b"mysql_native_password\0");
    let mut packet = (body.len() as u32).to_le_bytes()[..3].to_vec();
    packet.push(1);
    packet.extend_from_slice(&body);
    s.write_all(&packet).await.unwrap();
    let (_, answer) = tokio::time::timeout(Duration::from_secs(10), read_packet(&mut s))
        .await
        .expect("an answer, not a hang");
    assert_eq!(answer[0], 0xff, "an ERR packet");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.contains("compression"), "{text}");
}
