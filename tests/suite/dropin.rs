//! Drop-in behaviour for real drivers: named prepared statements in
//! transaction mode, TLS on both sides, auth_query, wildcard databases,
//! and session state that pins a server.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use sqlmux_protocol::postgres::message;
use sqlmux_tests::{PgCluster, PgOptions, TlsFiles, psql_command, shared_pg};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{
    connect_url, err_text, fresh_db, pgbench, run, server_backends, sqlstate, start, start_on,
    start_trust, trust_db,
};
use crate::raw::{RawClient, bind, execute};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_prepared_40_clients_over_a_pool_of_4() {
    let pg = shared_pg();
    let db = fresh_db(pg, "prep");
    let (ok, out) = run(
        pgbench(pg.port(), "postgres", &db, &["-i", "-s", "1", "-q"]),
        Duration::from_secs(120),
    );
    assert!(ok, "{out}");
    let p = start_trust(&trust_db(&db, "size = 4")).await;
    let port = p.port;
    let db2 = db.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        run(
            pgbench(
                port,
                "postgres",
                &db2,
                &["-S", "-M", "prepared", "-c", "40", "-j", "2", "-T", "3"],
            ),
            Duration::from_secs(120),
        )
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("number of failed transactions: 0 "), "{out}");
    let backends = server_backends(pg, &db);
    assert!(
        (1..=4).contains(&backends),
        "{backends} server connections for a pool of 4"
    );
    // The server a client is lent holds pgbench's statement under one
    // shared sqlmux name, not under the names pgbench gave it.
    let c = p.connect("postgres", None, &db).await;
    let names: Vec<String> = c
        .query("SELECT name FROM pg_prepared_statements", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!names.is_empty(), "no statement on the server");
    assert!(names.iter().all(|n| n.starts_with("sqlmux_")), "{names:?}");
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_follow_the_client_across_servers() {
    let db = fresh_db(shared_pg(), "prepx");
    let p = start_trust(&trust_db(&db, "size = 2")).await;
    let c = p.connect("postgres", None, &db).await;
    let other = p.connect("postgres", None, &db).await;
    let stmt = c
        .prepare("SELECT pg_backend_pid(), $1::int4 + 1")
        .await
        .unwrap();
    let mut pids = HashSet::new();
    for i in 0..20i32 {
        // `other` takes the server `c` used last (the pool lends the most
        // recently used one), so `c` lands on the other server each time.
        if i % 2 == 1 {
            other.batch_execute("BEGIN; SELECT 1").await.unwrap();
        }
        let row = c.query_one(&stmt, &[&i]).await.unwrap();
        pids.insert(row.get::<_, i32>(0));
        assert_eq!(row.get::<_, i32>(1), i + 1);
        if i % 2 == 1 {
            other.batch_execute("COMMIT").await.unwrap();
        }
    }
    assert_eq!(
        pids.len(),
        2,
        "executions did not spread over both servers ({pids:?})"
    );
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_name_belongs_to_its_client_only() {
    let db = fresh_db(shared_pg(), "prepiso");
    let p = start_trust(&trust_db(&db, "size = 1")).await;
    // tokio-postgres names its first statement "s0" in every connection.
    let a = p.connect("postgres", None, &db).await;
    let b = p.connect("postgres", None, &db).await;
    let sa = a.prepare("SELECT 'from a'::text").await.unwrap();
    let sb = b.prepare("SELECT 'from b'::text").await.unwrap();
    for _ in 0..5 {
        let ra: String = a.query_one(&sa, &[]).await.unwrap().get(0);
        let rb: String = b.query_one(&sb, &[]).await.unwrap().get(0);
        assert_eq!((ra.as_str(), rb.as_str()), ("from a", "from b"));
    }
    // A raw client using a name another client defined gets "does not exist".
    let mut raw = RawClient::connect(p.port, &db).await;
    raw.send(|b| {
        bind(b, "s0");
        message::sync(b);
    })
    .await;
    let (tags, err) = raw.until_ready().await;
    assert_eq!(tags, "EZ");
    assert_eq!(err.as_deref(), Some("26000"));
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_and_unknown_statement_names_get_postgresql_errors_and_stay_in_sync() {
    let db = fresh_db(shared_pg(), "prepdup");
    let p = start_trust(&trust_db(&db, "size = 1")).await;
    let mut raw = RawClient::connect(p.port, &db).await;
    raw.send(|b| {
        message::parse(b, b"q1", b"SELECT 1", &[]);
        message::sync(b);
    })
    .await;
    assert_eq!(raw.until_ready().await, ("1Z".into(), None));
    // Duplicate: error, and the rest of the batch up to Sync is skipped.
    raw.send(|b| {
        message::parse(b, b"q1", b"SELECT 2", &[]);
        bind(b, "q1");
        execute(b);
        message::sync(b);
    })
    .await;
    assert_eq!(raw.until_ready().await, ("EZ".into(), Some("42P05".into())));
    // The original statement still works; Close is answered and forgets it.
    raw.send(|b| {
        bind(b, "q1");
        execute(b);
        message::close(b, b'S', b"q1");
        message::sync(b);
    })
    .await;
    assert_eq!(raw.until_ready().await, ("2DC3Z".into(), None));
    raw.send(|b| {
        bind(b, "q1");
        message::sync(b);
    })
    .await;
    assert_eq!(raw.until_ready().await, ("EZ".into(), Some("26000".into())));
    // A failing Parse (bad SQL) reports the server's error, the name stays free.
    raw.send(|b| {
        message::parse(b, b"q2", b"SELEC nonsense", &[]);
        message::sync(b);
    })
    .await;
    assert_eq!(raw.until_ready().await, ("EZ".into(), Some("42601".into())));
    // SQL-level DEALLOCATE of a protocol statement keeps the map consistent.
    raw.send(|b| {
        message::parse(b, b"q3", b"SELECT 3", &[]);
        message::sync(b);
    })
    .await;
    assert_eq!(raw.until_ready().await, ("1Z".into(), None));
    raw.send(|b| message::query(b, "DEALLOCATE q3")).await;
    assert_eq!(raw.until_ready().await, ("CZ".into(), None));
    raw.send(|b| {
        message::parse(b, b"q3", b"SELECT 33", &[]);
        bind(b, "q3");
        execute(b);
        message::sync(b);
    })
    .await;
    assert_eq!(raw.until_ready().await, ("12DCZ".into(), None));
    p.proxy.shutdown_now().await;
}

/// A CA and a leaf certificate for localhost / 127.0.0.1, written to a temp dir.
pub(crate) struct Certs {
    pub(crate) dir: PathBuf,
    pub(crate) ca: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) files: TlsFiles,
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) fn make_certs() -> Certs {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sqlmux test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, &ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    let dir = std::env::temp_dir().join(crate::common::unique_db("sqlmux_certs"));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, key) = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    let files = TlsFiles {
        cert_pem: leaf.pem(),
        key_pem: leaf_key.serialize_pem(),
    };
    Certs {
        dir,
        ca,
        cert,
        key,
        files,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_over_tls_is_answered_with_an_orderly_close() {
    // libpq 17's cancel API (psycopg's cancel_safe) sends its CancelRequest
    // over TLS and reports a failure unless the server ends the TLS session
    // with close_notify, as PostgreSQL does.
    let python = python_with("psycopg");
    let certs = make_certs();
    let db = fresh_db(shared_pg(), "tlscancel");
    let cfg = format!(
        "[postgres]\nlisten = \"127.0.0.1:0\"\nauth = \"trust\"\ntls = {{ cert = \"{}\", key = \"{}\", mode = \"require\" }}\n[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        certs.cert.display(),
        certs.key.display(),
        trust_db(&db, "size = 2").replace("{pg_port}", &shared_pg().port().to_string())
    );
    let proxy = sqlmux::Proxy::start(sqlmux::config::Config::parse(&cfg).unwrap())
        .await
        .unwrap();
    let port = proxy.postgres_addr().port();
    let script = format!(
        r#"
import threading, time, psycopg
from psycopg import pq
conn = psycopg.connect("host=127.0.0.1 port={port} user=postgres dbname={db} sslmode=require")
status = []
def cancel():
    time.sleep(0.5)
    c = conn.pgconn.cancel_conn()
    c.blocking()
    status.append(c.status)
t = threading.Thread(target=cancel)
t.start()
try:
    conn.execute("SELECT pg_sleep(20)")
    raise SystemExit("not cancelled")
except psycopg.errors.QueryCanceled:
    t.join()
    assert status == [pq.ConnStatus.OK], status
    print("cancelled")
"#
    );
    let (ok, out) = run_python(python, script).await;
    assert!(ok && out.contains("cancelled"), "{out}");
    proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_connects_with_tls_require_and_verify_full_and_plain_is_refused() {
    let certs = make_certs();
    let db = fresh_db(shared_pg(), "tlsc");
    let body = trust_db(&db, "size = 2");
    let cfg_tls = format!(
        "[postgres]\nlisten = \"127.0.0.1:0\"\nauth = \"trust\"\ntls = {{ cert = \"{}\", key = \"{}\", mode = \"require\" }}\n[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        certs.cert.display(),
        certs.key.display(),
        body.replace("{pg_port}", &shared_pg().port().to_string())
    );
    let cfg = sqlmux::config::Config::parse(&cfg_tls).unwrap();
    let proxy = sqlmux::Proxy::start(cfg).await.unwrap();
    let port = proxy.postgres_addr().port();
    let ca = certs.ca.clone();
    let db2 = db.clone();
    let results = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for (mode, host) in [
            ("require", "127.0.0.1"),
            ("verify-full", "localhost"),
            ("verify-full", "127.0.0.1"),
            ("disable", "127.0.0.1"),
        ] {
            let mut cmd = psql_command(port, "postgres", None, &db2);
            cmd.env("PGSSLMODE", mode)
                .env("PGSSLROOTCERT", &ca)
                .env("PGHOST", host);
            cmd.args([
                "-h",
                host,
                "-c",
                "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            ]);
            out.push((mode, host, run(cmd, Duration::from_secs(20))));
        }
        out
    })
    .await
    .unwrap();
    for (mode, host, (ok, text)) in &results {
        if *mode == "disable" {
            assert!(
                !ok,
                "plain connection accepted despite mode=require: {text}"
            );
            assert!(text.contains("requires TLS"), "{text}");
        } else {
            assert!(ok, "psql sslmode={mode} host={host} failed: {text}");
            // The server side is plain TCP here: pg_stat_ssl shows sqlmux's own connection.
            assert!(text.contains('f') || text.contains('t'), "{text}");
        }
    }
    // The client's TLS is visible to the proxy.
    proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlmux_uses_tls_to_a_server_with_ssl_on() {
    let certs = make_certs();
    let pg = PgCluster::start(PgOptions {
        tls: Some(certs.files.clone()),
        hba: vec!["hostnossl all all 127.0.0.1/32 reject".into()],
        ..PgOptions::default()
    });
    let server_tls = format!(
        "server_tls = {{ mode = \"verify-full\", ca = \"{}\" }}",
        certs.ca.display()
    );
    let body = format!(
        "[[databases]]\nname = \"postgres\"\nhost = \"localhost\"\nport = {{pg_port}}\n{server_tls}\n\n[[users]]\nname = \"postgres\"\n"
    );
    let p = start_on(pg.port(), "trust", &body).await;
    let c = p.connect("postgres", None, "postgres").await;
    let ssl: bool = c
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "server connection is not encrypted");
    p.proxy.shutdown_now().await;
    // require against a server without TLS fails with a clear error.
    let plain = start_on(
        shared_pg().port(),
        "trust",
        "[[databases]]\nname = \"postgres\"\nhost = \"127.0.0.1\"\nport = {pg_port}\nserver_tls = { mode = \"require\" }\n\n[[users]]\nname = \"postgres\"\n",
    )
    .await;
    let e = connect_url(&plain.url("postgres", None, "postgres"))
        .await
        .err()
        .unwrap();
    assert!(
        err_text(&e).contains("does not support TLS"),
        "{}",
        err_text(&e)
    );
    plain.proxy.shutdown_now().await;
    // verify-full with a CA that did not sign the server's certificate fails.
    let other = make_certs();
    let body = format!(
        "[[databases]]\nname = \"postgres\"\nhost = \"localhost\"\nport = {{pg_port}}\nserver_tls = {{ mode = \"verify-full\", ca = \"{}\" }}\n\n[[users]]\nname = \"postgres\"\n",
        other.ca.display()
    );
    let p = start_on(pg.port(), "trust", &body).await;
    let e = connect_url(&p.url("postgres", None, "postgres"))
        .await
        .err()
        .unwrap();
    assert!(err_text(&e).contains("TLS handshake"), "{}", err_text(&e));
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_query_logs_in_a_user_that_exists_only_on_the_server() {
    let pg = shared_pg();
    let role = crate::common::unique_db("aq");
    pg.create_role(&role, Some("aq-pass"), "scram-sha-256");
    let body = "[postgres]\n".to_string();
    let _ = body;
    let cfg = format!(
        "[postgres]\nlisten = \"127.0.0.1:0\"\nauth_user = \"postgres\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[[databases]]\nname = \"postgres\"\nhost = \"127.0.0.1\"\nport = {}\n\n[[users]]\nname = \"postgres\"\n",
        pg.port()
    );
    let proxy = sqlmux::Proxy::start(sqlmux::config::Config::parse(&cfg).unwrap())
        .await
        .unwrap();
    let port = proxy.postgres_addr().port();
    let url =
        |pw: &str| format!("host=127.0.0.1 port={port} user={role} dbname=postgres password={pw}");
    let c = connect_url(&url("aq-pass")).await.unwrap();
    let who: String = c
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, role);
    // The server login used the key learned from the client's proof: a second
    // client through a second server works too.
    let c2 = connect_url(&url("aq-pass")).await.unwrap();
    let (r1, r2) = futures::join!(
        c.simple_query("SELECT pg_sleep(0.2)"),
        c2.simple_query("SELECT pg_sleep(0.2)")
    );
    r1.unwrap();
    r2.unwrap();
    let e = connect_url(&url("wrong")).await.err().unwrap();
    assert_eq!(sqlstate(&e), "28P01");
    // A changed password works at the very next login, the old one no more
    // (the secret is looked up at every login, as PgBouncer does).
    pg.psql(
        "postgres",
        &format!("ALTER ROLE \"{role}\" PASSWORD 'aq-new'"),
    );
    let c3 = connect_url(&url("aq-new")).await.unwrap();
    c3.simple_query("SELECT 1").await.unwrap();
    let e = connect_url(&url("aq-pass")).await.err().unwrap();
    assert_eq!(sqlstate(&e), "28P01");
    let e = connect_url(&format!(
        "host=127.0.0.1 port={port} user=nosuchrole dbname=postgres password=x"
    ))
    .await
    .err()
    .unwrap();
    assert_eq!(sqlstate(&e), "28000");
    proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_database_forwards_any_database_name() {
    let pg = shared_pg();
    let db1 = fresh_db(pg, "wild");
    let db2 = fresh_db(pg, "wild");
    let p = start_trust("[[databases]]\nname = \"*\"\nhost = \"127.0.0.1\"\nport = {pg_port}\n\n[[users]]\nname = \"postgres\"\n").await;
    for db in [&db1, &db2] {
        let c = p.connect("postgres", None, db).await;
        let name: String = c
            .query_one("SELECT current_database()::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(&name, db);
    }
    let e = connect_url(&p.url("postgres", None, "no_such_database_anywhere"))
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&e), "3D000", "{}", err_text(&e));
    p.proxy.shutdown_now().await;
}

fn pinned_reasons(p: &crate::common::TestProxy) -> Vec<String> {
    p.proxy
        .shared
        .clients
        .all()
        .iter()
        .map(|c| c.pin().as_str().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advisory_lock_pins_the_server_and_is_released_at_disconnect() {
    let db = fresh_db(shared_pg(), "adv");
    let p = start_trust(&trust_db(&db, "size = 2")).await;
    let holder = p.connect("postgres", None, &db).await;
    let other = p.connect("postgres", None, &db).await;
    let pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    holder
        .simple_query("SELECT pg_advisory_lock(4242)")
        .await
        .unwrap();
    assert_eq!(pinned_reasons(&p), ["advisory_lock"]);
    // The holder keeps its server for every later transaction.
    for _ in 0..5 {
        let (a, b) = futures::join!(
            holder.query_one("SELECT pg_backend_pid()", &[]),
            other.query_one("SELECT pg_try_advisory_xact_lock(4242)", &[])
        );
        let _ = a.unwrap();
        assert!(
            !b.unwrap().get::<_, bool>(0),
            "lock lost while the holder is connected"
        );
    }
    let now_pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let _ = pid;
    drop(holder);
    // Released at disconnect (DISCARD ALL), and the server is reused.
    let pg = shared_pg();
    crate::common::eventually(Duration::from_secs(5), "lock released", async || {
        pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242",
        )
        .trim()
            == "0"
    })
    .await;
    assert!(pinned_reasons(&p).is_empty());
    let got: bool = other
        .query_one("SELECT pg_try_advisory_xact_lock(4242)", &[])
        .await
        .unwrap()
        .get(0);
    assert!(got);
    let _ = now_pid;
    // The holder's server went back to the pool instead of being closed.
    assert_eq!(server_backends(pg, &db), 2);
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_pins_until_unlisten_and_error_policy_refuses() {
    let db = fresh_db(shared_pg(), "pinl");
    let p = start_trust(&trust_db(&db, "size = 2")).await;
    let c = p.connect("postgres", None, &db).await;
    c.batch_execute("LISTEN events").await.unwrap();
    assert_eq!(pinned_reasons(&p), ["listen"]);
    c.batch_execute("UNLISTEN *").await.unwrap();
    assert!(pinned_reasons(&p).is_empty(), "UNLISTEN * must unpin");
    // Temp tables pin too, and survive across transactions.
    c.batch_execute("CREATE TEMP TABLE scratch (v int); INSERT INTO scratch VALUES (1)")
        .await
        .unwrap();
    assert_eq!(pinned_reasons(&p), ["temp_table"]);
    let n: i64 = c
        .query_one("SELECT count(*) FROM scratch", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    p.proxy.shutdown_now().await;

    let p = start_trust(&trust_db(&db, "size = 2, on_session_state = \"error\"")).await;
    let c = p.connect("postgres", None, &db).await;
    let e = c.batch_execute("LISTEN events").await.unwrap_err();
    assert_eq!(sqlstate(&e), "0A000", "{}", err_text(&e));
    assert!(err_text(&e).contains("on_session_state"));
    c.simple_query("SELECT 1").await.unwrap();
    p.proxy.shutdown_now().await;
    let _ = start;
}

/// A Python that can import `module` (scripts/test.sh installs psycopg 3
/// and asyncpg into target/pyenv).
pub(crate) fn python_with(module: &str) -> PathBuf {
    if let Ok(p) = std::env::var("SQLMUX_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/pyenv/bin/python");
    for candidate in [venv, PathBuf::from("python3")] {
        let ok = std::process::Command::new(&candidate)
            .args(["-c", &format!("import {module}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return candidate;
        }
    }
    panic!(
        "the Python module {module} is not installed: run scripts/test.sh (it installs it into target/pyenv) or set SQLMUX_TEST_PYTHON"
    );
}

/// Runs a driver program off the async threads; returns (success, output).
pub(crate) async fn run_driver(cmd: std::process::Command, timeout: Duration) -> (bool, String) {
    tokio::task::spawn_blocking(move || run(cmd, timeout))
        .await
        .unwrap()
}

/// Runs a Python script (up to 60 s); returns (success, output).
pub(crate) async fn run_python(python: PathBuf, script: String) -> (bool, String) {
    let mut cmd = std::process::Command::new(python);
    cmd.arg("-c").arg(script);
    run_driver(cmd, Duration::from_secs(60)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_simple_extended_and_auto_prepared_queries_work() {
    let python = python_with("psycopg");
    let db = fresh_db(shared_pg(), "psyco");
    let p = start_trust(&trust_db(&db, "size = 2")).await;
    let script = format!(
        r#"
import psycopg
dsn = "host=127.0.0.1 port={port} user=postgres dbname={db}"
with psycopg.connect(dsn, autocommit=True) as conn:
    conn.execute("CREATE TABLE items (id int primary key, name text)")
    # Server-side binding (extended protocol, unnamed statements).
    for i in range(20):
        conn.execute("INSERT INTO items VALUES (%s, %s)", (i, f"item-{{i}}"))
    # After prepare_threshold executions psycopg switches to named statements.
    total = 0
    for i in range(20):
        total += conn.execute("SELECT id FROM items WHERE id = %s", (i,)).fetchone()[0]
    assert total == sum(range(20)), total
    conn.execute("SELECT 1", prepare=True)
    # Client-side binding with the simple protocol.
    with psycopg.ClientCursor(conn) as cur:
        cur.execute("SELECT count(*) FROM items WHERE name LIKE %s", ("item-%",))
        assert cur.fetchone()[0] == 20
    with conn.transaction():
        conn.execute("UPDATE items SET name = 'x' WHERE id = 0")
    with conn.cursor().copy("COPY items (id, name) FROM STDIN") as copy:
        for i in range(100, 110):
            copy.write_row((i, "copied"))
    rows = conn.execute("SELECT count(*) FROM items").fetchone()[0]
    assert rows == 30, rows
    conn.cursor().executemany("INSERT INTO items VALUES (%s, %s)", [(200 + i, "many") for i in range(5)])
print("ok")
"#,
        port = p.port,
        db = db
    );
    let (ok, out) = run_python(python, script).await;
    assert!(ok && out.contains("ok"), "{out}");
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_pool_with_its_statement_cache_works_over_two_servers() {
    // asyncpg names and caches a prepared statement for every query it
    // runs (`__asyncpg_stmt_N__`), introspects types with prepared queries,
    // and resets connections on release with UNLISTEN / RESET ALL /
    // pg_advisory_unlock_all(): the classic way to break a transaction
    // pooler. Eight asyncpg connections share two servers here.
    let python = python_with("asyncpg");
    let db = fresh_db(shared_pg(), "apg");
    let p = start_trust(&trust_db(&db, "size = 2")).await;
    let script = format!(
        r#"
import asyncio, asyncpg
dsn = "postgresql://postgres@127.0.0.1:{port}/{db}"
async def main():
    pool = await asyncpg.create_pool(dsn, min_size=8, max_size=8)
    async with pool.acquire() as c:
        await c.execute("CREATE TABLE t (id int primary key, v text, tags int[])")
        await c.executemany("INSERT INTO t VALUES ($1, $2, $3)", [(i, f"v{{i}}", [i, i + 1]) for i in range(100)])
    async def worker(k):
        done = 0
        for i in range(40):
            async with pool.acquire() as c:
                row = await c.fetchrow("SELECT id, v, tags FROM t WHERE id = $1", (k * 40 + i) % 100)
                assert row["v"] == f"v{{row['id']}}" and row["tags"] == [row["id"], row["id"] + 1], row
                async with c.transaction():
                    await c.execute("UPDATE t SET v = v WHERE id = $1", row["id"])
                    assert await c.fetchval("SELECT count(*) FROM t WHERE id <= $1", row["id"]) == row["id"] + 1
                done += 1
        return done
    assert sum(await asyncio.gather(*(worker(k) for k in range(8)))) == 320
    async with pool.acquire() as c:
        # A prepared statement object reused across transactions.
        st = await c.prepare("SELECT count(*) FROM t WHERE id < $1")
        for n in (10, 20, 30):
            assert await st.fetchval(n) == n
        # A server-side cursor inside a transaction.
        async with c.transaction():
            ids = [r["id"] async for r in c.cursor("SELECT id FROM t ORDER BY id", prefetch=7)]
            assert ids == list(range(100)), ids[:5]
        # An error does not break the connection or its statement cache.
        try:
            await c.fetchval("SELECT 1 / $1", 0)
            raise SystemExit("division by zero did not fail")
        except asyncpg.DivisionByZeroError:
            pass
        assert await c.fetchval("SELECT 1 / $1", 1) == 1
        await c.copy_records_to_table("t", records=[(1000 + i, "c", None) for i in range(10)])
        assert await c.fetchval("SELECT count(*) FROM t") == 110
    await pool.close()
    print("ok")
asyncio.run(main())
"#,
        port = p.port,
        db = db
    );
    let (ok, out) = run_python(python, script).await;
    assert!(ok && out.contains("ok"), "{out}");
    // Never more than the pool's two servers.
    assert!(server_backends(shared_pg(), &db) <= 2);
    p.proxy.shutdown_now().await;
}

/// node-postgres installed by scripts/test.sh under target/node.
fn node_pg_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/node/node_modules/pg");
    assert!(
        dir.join("package.json").exists(),
        "node-postgres is not installed: run scripts/test.sh (it installs it into target/node)"
    );
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres_named_queries_work_across_servers() {
    // node-postgres prepares a query once per connection when it has a
    // `name`, then only binds it: the name must keep working whichever
    // server the client is lent.
    let pg_dir = node_pg_dir();
    let db = fresh_db(shared_pg(), "nodepg");
    let p = start_trust(&trust_db(&db, "size = 2")).await;
    let script = format!(
        r#"
const {{ Pool }} = require({pg:?});
(async () => {{
  const pool = new Pool({{ host: "127.0.0.1", port: {port}, user: "postgres", database: "{db}", max: 6 }});
  await pool.query("CREATE TABLE t (id int primary key, v text)");
  await pool.query("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 50) g");
  const byId = (id) => ({{ name: "by-id", text: "SELECT id, v FROM t WHERE id = $1", values: [id] }});
  const work = async (k) => {{
    let n = 0;
    for (let i = 0; i < 30; i++) {{
      const id = ((k * 30 + i) % 50) + 1;
      const c = await pool.connect();
      try {{
        const r = await c.query(byId(id));
        if (r.rows.length !== 1 || r.rows[0].v !== "v" + id) throw new Error("bad row " + JSON.stringify(r.rows));
        await c.query("BEGIN");
        await c.query({{ name: "touch", text: "UPDATE t SET v = v WHERE id = $1", values: [id] }});
        await c.query("COMMIT");
        n++;
      }} finally {{
        c.release();
      }}
    }}
    return n;
  }};
  const done = await Promise.all([0, 1, 2, 3, 4, 5].map(work));
  if (done.reduce((a, b) => a + b) !== 180) throw new Error("lost work");
  // An error in a named query leaves the connection usable.
  const c = await pool.connect();
  try {{
    await c.query({{ name: "div", text: "SELECT 1 / $1::int AS x", values: [0] }});
    throw new Error("division by zero did not fail");
  }} catch (e) {{
    if (e.code !== "22012") throw e;
  }}
  const r = await c.query({{ name: "div", text: "SELECT 1 / $1::int AS x", values: [1] }});
  if (r.rows[0].x !== 1) throw new Error("after error: " + JSON.stringify(r.rows));
  c.release();
  await pool.end();
  console.log("ok");
}})().catch((e) => {{ console.error(e); process.exit(1); }});
"#,
        pg = pg_dir.display().to_string(),
        port = p.port,
        db = db
    );
    let mut cmd = std::process::Command::new("node");
    cmd.arg("-e").arg(script);
    let (ok, out) = run_driver(cmd, Duration::from_secs(60)).await;
    assert!(ok && out.contains("ok"), "{out}");
    assert!(server_backends(shared_pg(), &db) <= 2);
    p.proxy.shutdown_now().await;
}

/// The PostgreSQL JDBC driver (Debian's libpostgresql-jdbc-java, installed
/// by scripts/test.sh).
const JDBC_JAR: &str = "/usr/share/java/postgresql.jar";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_server_prepared_statements_and_batches_work_across_servers() {
    // pgjdbc switches a PreparedStatement to a named server statement
    // (S_1, S_2, ...) after prepareThreshold executions (1 here, so at
    // once), sends batches as pipelined Parse/Bind/Execute with one Sync,
    // and keeps its statements for the life of the connection.
    assert!(
        std::path::Path::new(JDBC_JAR).exists(),
        "{JDBC_JAR} is missing: run scripts/test.sh (it installs libpostgresql-jdbc-java)"
    );
    let db = fresh_db(shared_pg(), "jdbc");
    let p = start_trust(&trust_db(&db, "size = 2")).await;
    let dir = std::env::temp_dir().join(crate::common::unique_db("sqlmux_jdbc"));
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join("JdbcCheck.java");
    std::fs::write(
        &source,
        r#"
import java.sql.*;
import java.util.*;
import java.util.concurrent.*;

public class JdbcCheck {
    public static void main(String[] args) throws Exception {
        String url = args[0];
        try (Connection c = DriverManager.getConnection(url)) {
            c.createStatement().execute("CREATE TABLE t (id int primary key, v text)");
            c.setAutoCommit(false);
            try (PreparedStatement ins = c.prepareStatement("INSERT INTO t VALUES (?, ?)")) {
                for (int i = 1; i <= 200; i++) {
                    ins.setInt(1, i);
                    ins.setString(2, "v" + i);
                    ins.addBatch();
                }
                int[] counts = ins.executeBatch();
                if (counts.length != 200) throw new AssertionError("batch " + counts.length);
            }
            c.commit();
        }
        ExecutorService pool = Executors.newFixedThreadPool(6);
        List<Future<Integer>> results = new ArrayList<>();
        for (int k = 0; k < 6; k++) {
            final int base = k;
            results.add(pool.submit(() -> {
                int done = 0;
                try (Connection c = DriverManager.getConnection(url);
                     PreparedStatement sel = c.prepareStatement("SELECT v FROM t WHERE id = ?");
                     PreparedStatement upd = c.prepareStatement("UPDATE t SET v = v WHERE id = ?")) {
                    for (int i = 0; i < 40; i++) {
                        int id = (base * 40 + i) % 200 + 1;
                        sel.setInt(1, id);
                        try (ResultSet rs = sel.executeQuery()) {
                            if (!rs.next() || !rs.getString(1).equals("v" + id)) throw new AssertionError("row " + id);
                        }
                        c.setAutoCommit(false);
                        upd.setInt(1, id);
                        if (upd.executeUpdate() != 1) throw new AssertionError("update " + id);
                        c.commit();
                        c.setAutoCommit(true);
                        done++;
                    }
                }
                return done;
            }));
        }
        int total = 0;
        for (Future<Integer> f : results) total += f.get();
        pool.shutdown();
        if (total != 240) throw new AssertionError("total " + total);
        try (Connection c = DriverManager.getConnection(url);
             PreparedStatement div = c.prepareStatement("SELECT 1 / ?")) {
            div.setInt(1, 0);
            try {
                div.executeQuery();
                throw new AssertionError("division by zero did not fail");
            } catch (SQLException e) {
                if (!"22012".equals(e.getSQLState())) throw e;
            }
            div.setInt(1, 1);
            try (ResultSet rs = div.executeQuery()) {
                if (!rs.next() || rs.getInt(1) != 1) throw new AssertionError("after error");
            }
        }
        System.out.println("ok");
    }
}
"#,
    )
    .unwrap();
    let url = format!(
        "jdbc:postgresql://127.0.0.1:{}/{}?user=postgres&prepareThreshold=1&sslmode=disable",
        p.port, db
    );
    let mut cmd = std::process::Command::new("java");
    cmd.arg("-cp").arg(JDBC_JAR).arg(&source).arg(url);
    let (ok, out) = run_driver(cmd, Duration::from_secs(120)).await;
    assert!(ok && out.contains("ok"), "{out}");
    assert!(server_backends(shared_pg(), &db) <= 2);
    let _ = std::fs::remove_dir_all(&dir);
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_picks_up_new_certificate_files() {
    let first = make_certs();
    let second = make_certs();
    let db = fresh_db(shared_pg(), "tlsreload");
    let dir = std::env::temp_dir().join(crate::common::unique_db("sqlmux_tlsreload"));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::copy(&first.cert, &cert).unwrap();
    std::fs::copy(&first.key, &key).unwrap();
    let cfg_path = dir.join("sqlmux.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "[postgres]\nlisten = \"127.0.0.1:0\"\nauth = \"trust\"\ntls = {{ cert = \"server.pem\", key = \"server.key\", mode = \"require\" }}\n[admin]\nlisten = \"127.0.0.1:0\"\n{}",
            trust_db(&db, "size = 1").replace("{pg_port}", &shared_pg().port().to_string())
        ),
    )
    .unwrap();
    let proxy = sqlmux::Proxy::start(sqlmux::config::Config::load(&cfg_path).unwrap())
        .await
        .unwrap();
    let port = proxy.postgres_addr().port();
    let verify = |ca: PathBuf| {
        let db = db.clone();
        tokio::task::spawn_blocking(move || {
            let mut cmd = psql_command(port, "postgres", None, &db);
            cmd.env("PGSSLMODE", "verify-full")
                .env("PGSSLROOTCERT", &ca);
            cmd.args(["-h", "localhost", "-c", "SELECT 1"]);
            run(cmd, Duration::from_secs(20))
        })
    };
    assert!(verify(first.ca.clone()).await.unwrap().0);
    assert!(!verify(second.ca.clone()).await.unwrap().0);
    std::fs::copy(&second.cert, &cert).unwrap();
    std::fs::copy(&second.key, &key).unwrap();
    proxy.reload().unwrap();
    let (ok, out) = verify(second.ca.clone()).await.unwrap();
    assert!(ok, "new certificate not served after RELOAD: {out}");
    assert!(!verify(first.ca.clone()).await.unwrap().0);
    proxy.shutdown_now().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_statement_cache_is_bounded_and_discard_all_forgets_client_statements() {
    let db = fresh_db(shared_pg(), "prepevict");
    let p = start_trust(&trust_db(&db, "size = 1, max_prepared_statements = 2")).await;
    let c = p.connect("postgres", None, &db).await;
    let mut stmts = Vec::new();
    for k in 0..5i32 {
        stmts.push(c.prepare(&format!("SELECT {k} + $1::int4")).await.unwrap());
    }
    for round in 0..3i32 {
        for (k, s) in stmts.iter().enumerate() {
            let v: i32 = c.query_one(s, &[&round]).await.unwrap().get(0);
            assert_eq!(v, k as i32 + round);
        }
    }
    // The single server never holds more than the configured number.
    let held: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'sqlmux_%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(held <= 2, "server holds {held} statements, limit is 2");
    // DISCARD ALL drops the client's statements, as on a direct connection.
    c.batch_execute("DISCARD ALL").await.unwrap();
    let e = c.query_one(&stmts[0], &[&1i32]).await.unwrap_err();
    assert_eq!(sqlstate(&e), "26000", "{}", err_text(&e));
    let s = c.prepare("SELECT 7 + $1::int4").await.unwrap();
    let v: i32 = c.query_one(&s, &[&1i32]).await.unwrap().get(0);
    assert_eq!(v, 8);
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gssenc_request_is_declined_and_the_login_continues_in_plain_text() {
    let db = fresh_db(shared_pg(), "gssenc");
    let p = start_trust(&trust_db(&db, "size = 1")).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", p.port))
        .await
        .unwrap();
    // GSSENCRequest: length 8, code 80877104.
    let mut req = Vec::new();
    req.extend_from_slice(&8i32.to_be_bytes());
    req.extend_from_slice(&80877104i32.to_be_bytes());
    s.write_all(&req).await.unwrap();
    let mut answer = [0u8; 1];
    s.read_exact(&mut answer).await.unwrap();
    assert_eq!(
        answer[0], b'N',
        "GSSENCRequest answered {:?}",
        answer[0] as char
    );
    // The same connection goes on with an ordinary StartupMessage, as
    // libpq does after an 'N'.
    let mut body = Vec::new();
    body.extend_from_slice(&196608i32.to_be_bytes());
    for (k, v) in [("user", "postgres"), ("database", db.as_str())] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut startup = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    startup.extend_from_slice(&body);
    s.write_all(&startup).await.unwrap();
    // AuthenticationOk ('R', length 8, code 0) comes first.
    let mut head = [0u8; 9];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(head[0], b'R');
    assert_eq!(&head[1..], &[0, 0, 0, 8, 0, 0, 0, 0]);
    p.proxy.shutdown_now().await;
}
