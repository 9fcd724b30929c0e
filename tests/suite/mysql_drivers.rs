//! MySQL drivers' server-side prepared statements through sqlmux, each
//! over a pool smaller than its client count: mysql-connector-python
//! (`prepared=True`), Node's mysql2 `execute()`, MariaDB Connector/J with
//! `useServerPrepStmts=true`, PHP's PDO with native prepares, and sysbench
//! with `--db-ps-mode=auto`. Each
//! driver reports the server connection ids its statements ran on: a
//! statement prepared once must work on every server of the pool.
//! scripts/test.sh installs the drivers.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlmux::Proxy;
use sqlmux::config::Config;
use sqlmux_tests::shared_mariadb;

use crate::dropin::{python_with, run_driver, run_python};
use crate::mysql::{fresh_db, start};

/// Reads the driver's `ids:` line (client number, server connection id
/// pairs) and checks the pool: at most `size` servers, and some client
/// whose statements ran on more than one.
fn check_servers(out: &str, size: usize) {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("ids:"))
        .unwrap_or_else(|| panic!("no ids line: {out}"));
    let mut all = HashSet::new();
    let mut per_client: std::collections::HashMap<&str, HashSet<&str>> = Default::default();
    for pair in line.split_whitespace() {
        let (client, server) = pair.split_once('=').expect("client=server");
        all.insert(server);
        per_client.entry(client).or_default().insert(server);
    }
    assert!(!all.is_empty() && all.len() <= size, "servers {all:?}");
    assert!(
        per_client.values().any(|s| s.len() > 1),
        "some client's statements ran on two servers: {per_client:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_connector_python_prepared_cursors_work_across_servers() {
    connector_python(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_connector_python_c_extension_prepared_cursors_work_across_servers() {
    connector_python(false).await;
}

/// mysql-connector-python's prepared cursors, pure Python or its C
/// extension (libmysqlclient's statement API).
async fn connector_python(pure: bool) {
    let python = python_with("mysql.connector");
    let db = fresh_db("ps_connector");
    let p = start(&db, 2, "").await;
    let script = format!(
        r#"
import threading, mysql.connector
cfg = dict(host="127.0.0.1", port={port}, user="app", password="app-pass", database="{db}", use_pure={pure})
c = mysql.connector.connect(**cfg)
c.cursor().execute("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20), n INT)")
cur = c.cursor(prepared=True)
for i in range(1, 41):
    cur.execute("INSERT INTO t VALUES (%s, %s, 0)", (i, "v%d" % i))
c.commit()
ids, errors = [], []
def work(k):
    try:
        conn = mysql.connector.connect(**cfg)
        cur = conn.cursor(prepared=True)
        for i in range(30):
            row_id = (k * 30 + i) % 40 + 1
            cur.execute("SELECT v, CONNECTION_ID() FROM t WHERE id = %s", (row_id,))
            v, server = cur.fetchone()
            assert v == "v%d" % row_id, v
            ids.append("%d=%d" % (k, server))
            cur.execute("UPDATE t SET n = n + 1 WHERE id = %s", (row_id,))
            conn.commit()
        conn.close()
    except Exception as e:
        errors.append(repr(e))
threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
for t in threads: t.start()
for t in threads: t.join()
assert not errors, errors
cur.execute("SELECT SUM(n) FROM t WHERE id > %s", (0,))
assert int(cur.fetchone()[0]) == 180
text = c.cursor()
text.execute("SELECT v FROM t WHERE id = %s", (7,))
assert text.fetchone()[0] == "v7"
print("ids:" + " ".join(ids))
print("ok")
"#,
        port = p.mysql_addr().port(),
        pure = if pure { "True" } else { "False" }
    );
    let (ok, out) = run_python(python, script).await;
    assert!(ok && out.contains("ok"), "{out}");
    check_servers(&out, 2);
}

/// Node's mysql2, installed by scripts/test.sh under target/node.
fn mysql2_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/node/node_modules/mysql2");
    assert!(
        dir.join("package.json").exists(),
        "mysql2 is not installed: run scripts/test.sh (it installs it into target/node)"
    );
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_mysql2_execute_works_across_servers() {
    let dir = mysql2_dir();
    let db = fresh_db("ps_mysql2");
    let p = start(&db, 2, "").await;
    let script = format!(
        r#"
const mysql = require({dir:?} + "/promise");
(async () => {{
  const cfg = {{ host: "127.0.0.1", port: {port}, user: "app", password: "app-pass", database: "{db}" }};
  const setup = await mysql.createConnection(cfg);
  await setup.query("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))");
  for (let i = 1; i <= 40; i++) await setup.execute("INSERT INTO t VALUES (?, ?)", [i, "v" + i]);
  await setup.end();
  const ids = [];
  const work = async (k) => {{
    const c = await mysql.createConnection(cfg);
    for (let i = 0; i < 30; i++) {{
      const id = (k * 30 + i) % 40 + 1;
      const [rows] = await c.execute("SELECT v, CONNECTION_ID() AS s FROM t WHERE id = ?", [id]);
      if (rows.length !== 1 || rows[0].v !== "v" + id) throw new Error("bad row " + JSON.stringify(rows));
      ids.push(k + "=" + rows[0].s);
      await c.beginTransaction();
      await c.execute("UPDATE t SET v = v WHERE id = ?", [id]);
      await c.commit();
    }}
    try {{
      await c.execute("SELECT * FROM no_such_table WHERE id = ?", [1]);
      throw new Error("no error");
    }} catch (e) {{
      if (e.errno !== 1146) throw e;
    }}
    await c.end();
  }};
  await Promise.all([0, 1, 2, 3, 4, 5].map(work));
  console.log("ids:" + ids.join(" "));
  console.log("ok");
}})().catch((e) => {{ console.error(e); process.exit(1); }});
"#,
        dir = dir.display().to_string(),
        port = p.mysql_addr().port()
    );
    let mut cmd = std::process::Command::new("node");
    cmd.arg("-e").arg(script);
    let (ok, out) = run_driver(cmd, Duration::from_secs(60)).await;
    assert!(ok && out.contains("ok"), "{out}");
    check_servers(&out, 2);
}

/// MariaDB Connector/J (Debian's libmariadb-java, installed by
/// scripts/test.sh).
const MARIADB_JAR: &str = "/usr/share/java/mariadb-java-client.jar";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_connector_j_server_prepared_statements_work_across_servers() {
    assert!(
        Path::new(MARIADB_JAR).exists(),
        "{MARIADB_JAR} is missing: run scripts/test.sh (it installs libmariadb-java)"
    );
    let db = fresh_db("ps_jdbc");
    let p = start(&db, 2, "").await;
    let dir = std::env::temp_dir().join(crate::common::unique_db("sqlmux_myjdbc"));
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join("MyJdbcCheck.java");
    std::fs::write(&source, JAVA_CHECK).unwrap();
    let url = format!(
        "jdbc:mariadb://127.0.0.1:{}/{}?user=app&password=app-pass&useServerPrepStmts=true",
        p.mysql_addr().port(),
        db
    );
    let mut cmd = std::process::Command::new("java");
    cmd.arg("-cp").arg(MARIADB_JAR).arg(&source).arg(url);
    let (ok, out) = run_driver(cmd, Duration::from_secs(120)).await;
    assert!(ok && out.contains("ok"), "{out}");
    check_servers(&out, 2);
    let _ = std::fs::remove_dir_all(&dir);
}

const JAVA_CHECK: &str = r#"
import java.sql.*;
import java.util.*;
import java.util.concurrent.*;

public class MyJdbcCheck {
    public static void main(String[] args) throws Exception {
        String url = args[0];
        try (Connection c = DriverManager.getConnection(url)) {
            c.createStatement().execute("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))");
            c.setAutoCommit(false);
            try (PreparedStatement ins = c.prepareStatement("INSERT INTO t VALUES (?, ?)")) {
                for (int i = 1; i <= 200; i++) {
                    ins.setInt(1, i);
                    ins.setString(2, "v" + i);
                    ins.addBatch();
                }
                ins.executeBatch();
            }
            c.commit();
        }
        ExecutorService pool = Executors.newFixedThreadPool(6);
        List<Future<String>> results = new ArrayList<>();
        for (int k = 0; k < 6; k++) {
            final int base = k;
            results.add(pool.submit(() -> {
                StringBuilder ids = new StringBuilder();
                try (Connection c = DriverManager.getConnection(url);
                     PreparedStatement sel = c.prepareStatement("SELECT v, CONNECTION_ID() FROM t WHERE id = ?");
                     PreparedStatement upd = c.prepareStatement("UPDATE t SET v = v WHERE id = ?")) {
                    for (int i = 0; i < 40; i++) {
                        int id = (base * 40 + i) % 200 + 1;
                        sel.setInt(1, id);
                        try (ResultSet rs = sel.executeQuery()) {
                            if (!rs.next() || !rs.getString(1).equals("v" + id)) throw new AssertionError("row " + id);
                            ids.append(" ").append(base).append("=").append(rs.getLong(2));
                        }
                        c.setAutoCommit(false);
                        upd.setInt(1, id);
                        if (upd.executeUpdate() != 1) throw new AssertionError("update " + id);
                        c.commit();
                        c.setAutoCommit(true);
                    }
                }
                return ids.toString();
            }));
        }
        StringBuilder all = new StringBuilder("ids:");
        for (Future<String> f : results) all.append(f.get());
        pool.shutdown();
        try (Connection c = DriverManager.getConnection(url);
             PreparedStatement bad = c.prepareStatement("SELECT v FROM t WHERE id = ?")) {
            try (PreparedStatement missing = c.prepareStatement("SELECT * FROM no_such_table WHERE id = ?")) {
                missing.setInt(1, 1);
                missing.executeQuery();
                throw new AssertionError("no error");
            } catch (SQLException e) {
                if (e.getErrorCode() != 1146) throw e;
            }
            bad.setInt(1, 7);
            try (ResultSet rs = bad.executeQuery()) {
                if (!rs.next() || !rs.getString(1).equals("v7")) throw new AssertionError("after error");
            }
        }
        System.out.println(all);
        System.out.println("ok");
    }
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn php_pdo_native_prepares_work_across_servers() {
    let db = fresh_db("ps_pdo");
    let p = start(&db, 2, "").await;
    let script = format!(
        r#"
$dsn = "mysql:host=127.0.0.1;port={port};dbname={db}";
$opts = [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION, PDO::ATTR_EMULATE_PREPARES => false];
$setup = new PDO($dsn, "app", "app-pass", $opts);
$setup->exec("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))");
$ins = $setup->prepare("INSERT INTO t VALUES (?, ?)");
for ($i = 1; $i <= 40; $i++) $ins->execute([$i, "v$i"]);
$conns = [];
for ($k = 0; $k < 6; $k++) {{
  $c = new PDO($dsn, "app", "app-pass", $opts);
  $conns[] = [$c, $c->prepare("SELECT v, CONNECTION_ID() FROM t WHERE id = ?")];
}}
$ids = [];
for ($i = 0; $i < 30; $i++) {{
  foreach ($conns as $k => [$c, $sel]) {{
    $id = ($k * 30 + $i) % 40 + 1;
    if ($i % 2 == 0) {{
      // Another client holds a server in a transaction meanwhile.
      $other = $conns[($k + 1) % 6][0];
      $other->beginTransaction();
      $other->query("SELECT 1")->fetchAll();
    }}
    $sel->execute([$id]);
    [$v, $server] = $sel->fetch(PDO::FETCH_NUM);
    $sel->closeCursor();
    if ($v !== "v$id") throw new Exception("bad row $v for $id");
    $ids[] = "$k=$server";
    if ($i % 2 == 0) $other->commit();
  }}
}}
try {{
  $conns[0][0]->prepare("SELECT * FROM no_such_table WHERE id = ?")->execute([1]);
  throw new Exception("no error");
}} catch (PDOException $e) {{
  if ($e->errorInfo[1] != 1146) throw $e;
}}
echo "ids:" . implode(" ", $ids) . "\nok\n";
"#,
        port = p.mysql_addr().port()
    );
    let mut cmd = std::process::Command::new("php");
    cmd.arg("-r").arg(script);
    let (ok, out) = run_driver(cmd, Duration::from_secs(60)).await;
    assert!(ok && out.contains("ok"), "{out}");
    check_servers(&out, 2);
}

/// A proxy in front of `db` whose servers log in as `server_user`.
async fn start_as(db: &str, size: usize, server_user: &str) -> Proxy {
    let m = shared_mariadb();
    let text = format!(
        "[postgres]\nlisten = \"127.0.0.1:0\"\n[mysql]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[databases]]\nname = \"{db}\"\nprotocol = \"mysql\"\nhost = \"127.0.0.1\"\nport = {}\n\
         user = \"{server_user}\"\npassword = \"sb-pass\"\npool = {{ size = {size} }}\n\n\
         [[users]]\nname = \"app\"\npassword = \"app-pass\"\n",
        m.port()
    );
    Proxy::start(Config::parse(&text).unwrap()).await.unwrap()
}

/// Connections MariaDB has for `user`.
fn connections_of(user: &str) -> usize {
    let out = shared_mariadb().sql(&format!(
        "SELECT COUNT(*) FROM information_schema.processlist WHERE user = '{user}';"
    ));
    out.trim()
        .lines()
        .last()
        .unwrap_or("0")
        .trim()
        .parse()
        .unwrap_or(usize::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sysbench_with_prepared_statements_runs_64_threads_over_4_servers() {
    let Some(sysbench) = sqlmux_tests::which("sysbench") else {
        panic!("sysbench is not installed: run scripts/test.sh (it installs it)");
    };
    let db = fresh_db("ps_sysbench");
    let user = crate::common::unique_db("sb");
    shared_mariadb().create_user(&user, "sb-pass");
    shared_mariadb().sql(&format!("GRANT ALL ON `{db}`.* TO '{user}'@'%';"));
    let p = start_as(&db, 4, &user).await;
    let port = p.mysql_addr().port();
    let base = |test: &str| {
        let mut cmd = std::process::Command::new(&sysbench);
        cmd.args([
            test,
            "--db-driver=mysql",
            "--mysql-host=127.0.0.1",
            "--mysql-user=app",
            "--mysql-password=app-pass",
            "--tables=2",
            "--table-size=2000",
            "--db-ps-mode=auto",
            // Deadlocks are the workload's own (a direct run of this
            // configuration gets about a thousand); any other error ends
            // the run with a failure.
            "--mysql-ignore-errors=1213,1205",
        ]);
        cmd.arg(format!("--mysql-port={port}"))
            .arg(format!("--mysql-db={db}"));
        cmd
    };
    let mut prep = base("oltp_read_write");
    prep.arg("prepare");
    let (ok, out) = run_driver(prep, Duration::from_secs(120)).await;
    assert!(ok, "sysbench prepare: {out}");
    let mut run = base("oltp_read_write");
    run.args(["--threads=64", "--events=3000", "--time=0", "run"]);
    let max = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sampler = tokio::spawn({
        let (user, max) = (user.clone(), max.clone());
        async move {
            loop {
                let u = user.clone();
                let n = tokio::task::spawn_blocking(move || connections_of(&u))
                    .await
                    .unwrap();
                max.fetch_max(n, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let (ok, out) = run_driver(run, Duration::from_secs(300)).await;
    sampler.abort();
    assert!(ok, "sysbench run: {out}");
    let transactions = sysbench_field(&out, "transactions:");
    assert_eq!(transactions, 3000.0, "{out}");
    let max = max.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        (1..=4).contains(&max),
        "MariaDB saw at most {max} connections from sqlmux"
    );
}

/// The first number after `label` in sysbench's summary.
fn sysbench_field(out: &str, label: &str) -> f64 {
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no {label} in {out}"));
    line.trim_start()[label.len()..]
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("bad {label} line: {line}"))
}
