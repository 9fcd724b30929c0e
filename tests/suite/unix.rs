//! Unix-domain sockets on both sides: clients reaching sqlmux through
//! `postgres.unix_socket_dir` and `mysql.unix_socket` (psql, tokio-postgres,
//! the mariadb CLI, mysql_async), and sqlmux reaching the harness's
//! PostgreSQL and MariaDB through their own sockets (`host = "/path"`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use sqlmux::Proxy;
use sqlmux::config::Config;
use sqlmux_tests::{mariadb_tool, pg_tool, shared_mariadb, shared_pg};

use crate::common::{connect_url, run};

/// A temporary directory for sqlmux's sockets, removed on drop.
struct SocketDir(PathBuf);

impl SocketDir {
    fn new() -> SocketDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sqlmux-unix-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating the socket directory");
        SocketDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A proxy with both listeners on free ports plus `[postgres]` / `[mysql]`
/// extra lines, trust auth for PostgreSQL clients, and `databases`.
async fn start(pg_extra: &str, mysql_extra: &str, databases: &str) -> Proxy {
    let text = format!(
        "[postgres]\nlisten = \"127.0.0.1:0\"\nauth = \"trust\"\n{pg_extra}\n\
         [mysql]\nlisten = \"127.0.0.1:0\"\n{mysql_extra}\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n{databases}\n\
         [[users]]\nname = \"postgres\"\n\n[[users]]\nname = \"app\"\npassword = \"app-pass\"\n\n\
         [[users]]\nname = \"admin\"\npassword = \"admin-pass\"\n"
    );
    let cfg = Config::parse(&text).unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"));
    Proxy::start(cfg).await.expect("proxy starts")
}

/// A PostgreSQL database entry `name` for the shared cluster at `host`.
fn pg_db(name: &str, host: &str) -> String {
    format!(
        "[[databases]]\nname = \"{name}\"\ndbname = \"postgres\"\nhost = \"{host}\"\nport = {}\n",
        shared_pg().port()
    )
}

/// A MySQL database entry `name` for the shared MariaDB's `app` at `host`.
fn my_db(name: &str, host: &str) -> String {
    format!(
        "[[databases]]\nname = \"{name}\"\nprotocol = \"mysql\"\ndbname = \"app\"\nhost = \"{host}\"\nport = {}\n",
        shared_mariadb().port()
    )
}

/// SHOW CLIENTS (or another SHOW) as column -> value maps.
async fn admin_rows(p: &Proxy, sql: &str) -> Vec<HashMap<String, String>> {
    let admin = connect_url(&format!(
        "host=127.0.0.1 port={} user=admin password=admin-pass dbname=sqlmux",
        p.admin_addr().port()
    ))
    .await
    .expect("admin login");
    let msgs = admin.simple_query(sql).await.unwrap();
    crate::common::row_maps(msgs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_and_tokio_postgres_log_in_through_the_socket_directory_and_show_as_unix() {
    let dir = SocketDir::new();
    let pg_extra = format!("unix_socket_dir = \"{}\"", dir.path().display());
    let p = start(&pg_extra, "", &pg_db("viasock", "127.0.0.1")).await;
    let port = p.postgres_addr().port();
    let socket = dir.path().join(format!(".s.PGSQL.{port}"));
    assert!(socket.exists(), "{} was not created", socket.display());

    let url = format!(
        "host={} port={port} user=postgres dbname=viasock connect_timeout=10",
        dir.path().display()
    );
    let c = connect_url(&url)
        .await
        .expect("tokio-postgres over the socket");
    let v: i32 = c.query_one("SELECT 41 + 1", &[]).await.unwrap().get(0);
    assert_eq!(v, 42);

    let clients = admin_rows(&p, "SHOW CLIENTS").await;
    let unix: Vec<_> = clients
        .iter()
        .filter(|r| r["database"] == "viasock")
        .collect();
    assert_eq!(unix.len(), 1, "{clients:?}");
    assert_eq!(unix[0]["addr"], "unix", "{clients:?}");
    assert_eq!(unix[0]["port"], port.to_string(), "{clients:?}");

    let mut cmd = Command::new(pg_tool("psql"));
    cmd.arg("-h")
        .arg(dir.path())
        .arg("-p")
        .arg(port.to_string());
    cmd.args([
        "-U",
        "postgres",
        "-d",
        "viasock",
        "-X",
        "-A",
        "-t",
        "-c",
        "SELECT 6 * 7",
    ]);
    cmd.env("PGCONNECT_TIMEOUT", "10");
    let (ok, out) = tokio::task::spawn_blocking(move || run(cmd, Duration::from_secs(60)))
        .await
        .unwrap();
    assert!(ok && out.lines().any(|l| l.trim() == "42"), "psql: {out}");

    drop(c);
    p.shutdown().await;
    assert!(!socket.exists(), "{} outlived the proxy", socket.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_are_reached_through_the_postgres_socket_directory_and_cancels_follow() {
    let pg_dir = shared_pg().socket_dir().display().to_string();
    let p = start("", "", &pg_db("serversock", &pg_dir)).await;
    let url = format!(
        "host=127.0.0.1 port={} user=postgres dbname=serversock connect_timeout=10",
        p.postgres_addr().port()
    );
    let c = connect_url(&url).await.expect("connect through sqlmux");
    // Over a Unix socket the server has no client address.
    let row = c
        .query_one("SELECT inet_client_addr() IS NULL, current_database()", &[])
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "the server saw a TCP client");
    assert_eq!(row.get::<_, String>(1), "postgres");

    let servers = admin_rows(&p, "SHOW SERVERS").await;
    let mine: Vec<_> = servers
        .iter()
        .filter(|r| r["database"] == "serversock")
        .collect();
    assert!(
        !mine.is_empty() && mine.iter().all(|r| r["addr"] == "unix"),
        "{servers:?}"
    );

    // A cancel request reaches the server through its socket too.
    let token = c.cancel_token();
    let sleeper = tokio::spawn(async move { c.simple_query("SELECT pg_sleep(60)").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(30), sleeper)
        .await
        .expect("the cancelled query ends")
        .unwrap();
    let e = r.expect_err("pg_sleep was cancelled");
    assert_eq!(e.code().map(|c| c.code()), Some("57014"), "{e}");
}

/// mysql_async options for user app through sqlmux's MySQL socket.
fn socket_opts(socket: &Path, db: &str) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .socket(Some(socket.display().to_string()))
        .user(Some("app"))
        .pass(Some("app-pass"))
        .db_name(Some(db))
        .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_cli_and_mysql_async_log_in_through_the_mysql_socket() {
    let dir = SocketDir::new();
    let socket = dir.path().join("mysql.sock");
    let my_extra = format!("unix_socket = \"{}\"", socket.display());
    let p = start("", &my_extra, &my_db("mysock", "127.0.0.1")).await;
    assert!(socket.exists(), "{} was not created", socket.display());

    let mut c = mysql_async::Conn::new(socket_opts(&socket, "mysock"))
        .await
        .expect("mysql_async over the socket");
    let v: Option<i64> = c.query_first("SELECT 40 + 2").await.unwrap();
    assert_eq!(v, Some(42));
    let clients = admin_rows(&p, "SHOW CLIENTS").await;
    let mine: Vec<_> = clients
        .iter()
        .filter(|r| r["database"] == "mysock")
        .collect();
    assert_eq!(mine.len(), 1, "{clients:?}");
    assert_eq!(mine[0]["addr"], "unix", "{clients:?}");
    assert_eq!(mine[0]["protocol"], "mysql", "{clients:?}");
    assert_eq!(mine[0]["port"], p.mysql_addr().port().to_string());

    let mut cmd = Command::new(mariadb_tool("mariadb"));
    cmd.arg("--no-defaults")
        .arg(format!("--socket={}", socket.display()))
        .args([
            "-u",
            "app",
            "-papp-pass",
            "--batch",
            "--skip-column-names",
            "mysock",
        ])
        .args(["-e", "SELECT 6 * 7; SELECT 'done'"]);
    let (ok, out) = tokio::task::spawn_blocking(move || run(cmd, Duration::from_secs(60)))
        .await
        .unwrap();
    assert!(
        ok && out.contains("42") && out.contains("done"),
        "mariadb: {out}"
    );

    c.disconnect().await.unwrap();
    p.shutdown().await;
    assert!(!socket.exists(), "{} outlived the proxy", socket.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_are_reached_through_the_mariadb_socket_file() {
    let m = shared_mariadb();
    let p = start(
        "",
        "",
        &my_db("myserversock", &m.socket_path().display().to_string()),
    )
    .await;
    let url = format!(
        "mysql://app:app-pass@127.0.0.1:{}/myserversock?prefer_socket=false",
        p.mysql_addr().port()
    );
    let mut c = mysql_async::Conn::new(mysql_async::Opts::from_url(&url).unwrap())
        .await
        .expect("connect through sqlmux");
    // MariaDB names a socket client's host `localhost` (TCP: 127.0.0.1).
    let host: Option<String> = c
        .query_first("SELECT host FROM information_schema.processlist WHERE id = CONNECTION_ID()")
        .await
        .unwrap();
    assert_eq!(host.as_deref(), Some("localhost"));
    let user: Option<String> = c.query_first("SELECT USER()").await.unwrap();
    assert_eq!(user.as_deref(), Some("app@localhost"));
    let servers = admin_rows(&p, "SHOW SERVERS").await;
    let mine: Vec<_> = servers
        .iter()
        .filter(|r| r["database"] == "myserversock")
        .collect();
    assert!(
        !mine.is_empty() && mine.iter().all(|r| r["addr"] == "unix"),
        "{servers:?}"
    );
    c.disconnect().await.unwrap();
}
