//! Starting a real sqlmux in-process against the harness's PostgreSQL.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sqlmux::Proxy;
use sqlmux::config::Config;
use sqlmux_tests::{PgCluster, run_command, shared_pg};

/// A proxy running on a free port, stopped on drop of the test runtime.
pub struct TestProxy {
    pub proxy: Proxy,
    pub port: u16,
}

impl TestProxy {
    /// tokio-postgres connection string through the proxy.
    pub fn url(&self, user: &str, password: Option<&str>, db: &str) -> String {
        let pw = password
            .map(|p| format!(" password={p}"))
            .unwrap_or_default();
        format!(
            "host=127.0.0.1 port={} user={user} dbname={db}{pw} connect_timeout=10",
            self.port
        )
    }

    /// Connects with tokio-postgres and drives the connection in a task.
    pub async fn connect(
        &self,
        user: &str,
        password: Option<&str>,
        db: &str,
    ) -> tokio_postgres::Client {
        connect_url(&self.url(user, password, db))
            .await
            .expect("connect through sqlmux")
    }
}

/// Connects and spawns the connection future.
pub async fn connect_url(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// A config with listeners on free ports, `body` appended (databases,
/// users, pool settings). `{pg_port}` in `body` is replaced.
pub fn config(pg_port: u16, auth: &str, body: &str) -> Config {
    let text = format!(
        "[postgres]\nlisten = \"127.0.0.1:0\"\nauth = \"{auth}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        body.replace("{pg_port}", &pg_port.to_string())
    );
    Config::parse(&text).unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"))
}

/// Starts a proxy against the shared cluster with SCRAM client auth.
pub async fn start(body: &str) -> TestProxy {
    start_on(shared_pg().port(), "scram-sha-256", body).await
}

/// Starts a proxy against the shared cluster with trust client auth.
pub async fn start_trust(body: &str) -> TestProxy {
    start_on(shared_pg().port(), "trust", body).await
}

/// Starts a proxy against a server on `pg_port`.
pub async fn start_on(pg_port: u16, auth: &str, body: &str) -> TestProxy {
    let cfg = config(pg_port, auth, body);
    let proxy = Proxy::start(cfg).await.expect("proxy starts");
    let port = proxy.postgres_addr().port();
    TestProxy { proxy, port }
}

/// A database name unique to this process and call.
pub fn unique_db(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates a fresh database on `pg` owned by postgres.
pub fn fresh_db(pg: &PgCluster, prefix: &str) -> String {
    let name = unique_db(prefix);
    pg.create_database(&name);
    name
}

/// Runs the ignored test `name` of `module` (pass `module_path!()`) in a
/// child process of this test binary with `env` set to 1, so that it can
/// do what the parent must not (abort, log at trace level); its output.
pub fn run_ignored_test(
    module: &str,
    name: &str,
    env: &str,
    timeout: Duration,
) -> std::process::Output {
    let test = module
        .split_once("::")
        .map_or(name.to_owned(), |(_, m)| format!("{m}::{name}"));
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        test.as_str(),
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    cmd.env(env, "1");
    run_command(cmd, None, timeout).expect("running the child test")
}

/// Runs a command (blocking), returning (success, stdout+stderr).
pub fn run(mut cmd: Command, timeout: Duration) -> (bool, String) {
    cmd.env_remove("PGPASSWORD");
    let out = run_command(cmd, None, timeout).expect("command runs");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Waits until `f` is true or panics after `limit`.
pub async fn eventually(limit: Duration, what: &str, mut f: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Error SQLSTATE of a tokio-postgres error.
pub fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_owned())
        .unwrap_or_else(|| format!("no sqlstate: {e}"))
}

/// Server connections (client backends) to `db` as seen by the server.
/// Panics when the count cannot be read, so a broken count never passes
/// an upper-bound check.
pub fn server_backends(pg: &PgCluster, db: &str) -> i64 {
    let out = pg.psql(
        "postgres",
        &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND backend_type = 'client backend'"),
    );
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("cannot read the backend count of {db}: {out:?}"))
}

/// Connects and collects notices and notifications on a channel.
pub async fn connect_with_messages(
    url: &str,
) -> (
    tokio_postgres::Client,
    tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::AsyncMessage>,
) {
    use futures::StreamExt;
    let (client, mut conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect through sqlmux");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(m)) = stream.next().await {
            let _ = tx.send(m);
        }
    });
    (client, rx)
}

/// A pgbench command against 127.0.0.1:`port`.
pub fn pgbench(port: u16, user: &str, db: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(sqlmux_tests::pg_tool("pgbench"));
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", user, "-n"])
        .args(args)
        .arg(db);
    for (k, _) in std::env::vars() {
        if k.starts_with("PG") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Config body for one database `db` on the test server with pool
/// settings (an inline table body such as `size = 4`) and user postgres.
pub fn trust_db(db: &str, pool: &str) -> String {
    format!(
        "[[databases]]\nname = \"{db}\"\nhost = \"127.0.0.1\"\nport = {{pg_port}}\npool = {{ {pool} }}\n\n[[users]]\nname = \"postgres\"\n"
    )
}

/// The server message of a tokio-postgres error (or its Display).
pub fn err_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!(
            "{}: {} {}",
            d.code().code(),
            d.message(),
            d.hint().unwrap_or("")
        ),
        None => e.to_string(),
    }
}

/// The rows of a simple-query answer as column -> value maps (NULL as "").
pub fn row_maps<M: FromIterator<(String, String)>>(
    msgs: Vec<tokio_postgres::SimpleQueryMessage>,
) -> Vec<M> {
    msgs.into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                r.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.name().to_owned(), r.get(i).unwrap_or("").to_owned()))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}
