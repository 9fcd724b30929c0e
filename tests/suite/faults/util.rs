//! Helpers of the fault tests: a proxy in front of PostgreSQL and/or
//! MariaDB with an admin user, the pool picture from SHOW POOLS and
//! SHOW SERVERS, and guard timeouts so no client call can hang a test.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use sqlmux::Proxy;
use sqlmux::config::Config;

use crate::common::connect_url;

/// Password of the console user `admin` in every fault-test proxy.
pub const ADMIN_PW: &str = "admin-pw";
/// The guard around one client call: far longer than any call takes, so
/// it only turns a hang into a failure.
pub const GUARD: Duration = Duration::from_secs(60);

/// One `[[databases]]` entry.
pub struct Db<'a> {
    /// Name clients use (and the server's database name).
    pub name: &'a str,
    /// `postgres` or `mysql`.
    pub protocol: &'a str,
    /// Server (or relay) port on 127.0.0.1.
    pub port: u16,
    /// Inline pool table body, e.g. `size = 8`.
    pub pool: &'a str,
}

/// Configuration text: both listeners and the admin port on free ports,
/// PostgreSQL clients by trust (user `postgres`), MySQL user `app` /
/// `app-pass`, console user `admin`, `general` lines, and `dbs`.
pub fn config_text(general: &str, dbs: &[Db<'_>]) -> String {
    let mut text = format!(
        "[general]\n{general}\n[postgres]\nlisten = \"127.0.0.1:0\"\nauth = \"trust\"\n\
         [mysql]\nlisten = \"127.0.0.1:0\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\nusers = [\"admin\"]\n"
    );
    for d in dbs {
        text += &format!(
            "[[databases]]\nname = \"{}\"\nprotocol = \"{}\"\nhost = \"127.0.0.1\"\nport = {}\npool = {{ {} }}\n\n",
            d.name, d.protocol, d.port, d.pool
        );
    }
    text += &format!(
        "[[users]]\nname = \"postgres\"\n\n[[users]]\nname = \"app\"\npassword = \"app-pass\"\n\n\
         [[users]]\nname = \"admin\"\npassword = \"{ADMIN_PW}\"\n"
    );
    text
}

/// Starts a proxy from [`config_text`].
pub async fn start(general: &str, dbs: &[Db<'_>]) -> Proxy {
    let text = config_text(general, dbs);
    let cfg = Config::parse(&text).unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"));
    Proxy::start(cfg).await.expect("proxy starts")
}

/// tokio-postgres URL of `db` through the proxy as `postgres`.
pub fn pg_url(p: &Proxy, db: &str) -> String {
    format!(
        "host=127.0.0.1 port={} user=postgres dbname={db} connect_timeout=10",
        p.postgres_addr().port()
    )
}

/// mysql_async URL of `db` through the proxy as `app`.
pub fn my_url(p: &Proxy, db: &str) -> String {
    format!(
        "mysql://app:app-pass@127.0.0.1:{}/{db}?prefer_socket=false",
        p.mysql_addr().port()
    )
}

/// Connects to PostgreSQL through the proxy (guarded).
pub async fn pg_connect(p: &Proxy, db: &str) -> tokio_postgres::Client {
    guard("connect", connect_url(&pg_url(p, db)))
        .await
        .expect("connect through sqlmux")
}

/// Connects to MySQL through the proxy (guarded).
pub async fn my_connect(p: &Proxy, db: &str) -> mysql_async::Conn {
    let opts = mysql_async::Opts::from_url(&my_url(p, db)).expect("url");
    guard("connect", mysql_async::Conn::new(opts))
        .await
        .expect("connect through sqlmux")
}

/// Awaits `f`, panicking (instead of hanging) after [`GUARD`].
pub async fn guard<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {GUARD:?} (a hang)"))
}

/// The admin console (guarded).
pub async fn admin(p: &Proxy) -> tokio_postgres::Client {
    let url = format!(
        "host=127.0.0.1 port={} user=admin password={ADMIN_PW} dbname=sqlmux connect_timeout=10",
        p.admin_addr().port()
    );
    guard("admin connect", connect_url(&url))
        .await
        .expect("admin logs in")
}

/// Rows of a console SHOW command as column → value maps.
pub async fn show(a: &tokio_postgres::Client, cmd: &str) -> Vec<HashMap<String, String>> {
    let msgs = guard(cmd, a.simple_query(cmd))
        .await
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    crate::common::row_maps(msgs)
}

/// One number from a SHOW row.
pub fn int(row: &HashMap<String, String>, col: &str) -> i64 {
    row.get(col)
        .unwrap_or_else(|| panic!("no column {col} in {row:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("{col} in {row:?}: {e}"))
}

/// What SHOW POOLS and SHOW SERVERS say about `db`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolPicture {
    /// cl_active, cl_waiting, sv_active, sv_idle + sv_used, sv_login.
    pub cl_active: i64,
    pub cl_waiting: i64,
    pub sv_active: i64,
    pub sv_idle: i64,
    pub sv_login: i64,
    /// Rows of SHOW SERVERS for `db`.
    pub servers: i64,
    /// Their remote pids (PostgreSQL pid or MySQL connection id).
    pub pids: Vec<i64>,
}

/// Reads [`PoolPicture`] of `db` from the console.
pub async fn picture(a: &tokio_postgres::Client, db: &str) -> PoolPicture {
    let pools = show(a, "SHOW POOLS").await;
    let row = pools
        .iter()
        .find(|r| r.get("database").map(String::as_str) == Some(db))
        .unwrap_or_else(|| panic!("no pool for {db}: {pools:?}"));
    let servers: Vec<_> = show(a, "SHOW SERVERS")
        .await
        .into_iter()
        .filter(|r| r.get("database").map(String::as_str) == Some(db))
        .collect();
    let mut pids: Vec<i64> = servers.iter().map(|r| int(r, "remote_pid")).collect();
    pids.sort_unstable();
    PoolPicture {
        cl_active: int(row, "cl_active"),
        cl_waiting: int(row, "cl_waiting"),
        sv_active: int(row, "sv_active"),
        sv_idle: int(row, "sv_idle") + int(row, "sv_used"),
        sv_login: int(row, "sv_login"),
        servers: servers.len() as i64,
        pids,
    }
}

/// Waits until nothing of `db`'s pool is lent, waiting or logging in, then
/// returns the settled picture.
pub async fn settled(a: &tokio_postgres::Client, db: &str) -> PoolPicture {
    let start = Instant::now();
    loop {
        let p = picture(a, db).await;
        if p.cl_waiting == 0 && p.sv_active == 0 && p.sv_login == 0 {
            assert_eq!(p.servers, p.sv_idle, "SHOW SERVERS vs SHOW POOLS: {p:?}");
            return p;
        }
        assert!(start.elapsed() < GUARD, "pool of {db} never settled: {p:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs blocking work (psql, mariadb client) off the async threads.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    guard("blocking call", tokio::task::spawn_blocking(f))
        .await
        .expect("blocking task")
}
