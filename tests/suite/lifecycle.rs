//! Cancel, disconnects mid-transaction, shutdown and bad input.

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::Duration;

use sqlmux_tests::{psql_command, shared_pg};

use crate::common::{eventually, fresh_db, sqlstate, start_trust, trust_db};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_stops_the_running_query_and_nothing_else() {
    let db = fresh_db(shared_pg(), "cancel");
    let p = start_trust(&trust_db(&db, "size = 2")).await;
    let victim = p.connect("postgres", None, &db).await;
    let bystander = p.connect("postgres", None, &db).await;
    let token = victim.cancel_token();
    let slow = tokio::spawn(async move { victim.simple_query("SELECT pg_sleep(30)").await });
    let other =
        tokio::spawn(async move { bystander.simple_query("SELECT pg_sleep(1.5), 'done'").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(sqlstate(&err), "57014", "{err}");
    // The other client's query was not cancelled.
    other.await.unwrap().expect("bystander's query completes");
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_killed_mid_transaction_leaves_no_row_and_no_idle_server_in_transaction() {
    let pg = shared_pg();
    let db = fresh_db(pg, "killed");
    pg.psql(&db, "CREATE TABLE t (v text)");
    let p = start_trust(&trust_db(&db, "size = 1")).await;
    let port = p.port;
    // psql opens a transaction, inserts, then waits on stdin; we kill it.
    let mut cmd = psql_command(port, "postgres", None, &db);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"BEGIN;\nINSERT INTO t VALUES ('uncommitted');\nSELECT 'inserted';\n")
        .unwrap();
    stdin.flush().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 256];
    while !seen.contains("inserted") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "psql ended early");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    child.kill().unwrap();
    let _ = child.wait();
    drop(stdin);
    eventually(Duration::from_secs(10), "no server idle in transaction", async || {
        pg.psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND state LIKE 'idle in transaction%'"),
        )
        .trim()
            == "0"
    })
    .await;
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM t").trim(), "0");
    // The pool of one still serves (the dirty server was closed, a new one opens).
    let c = p.connect("postgres", None, &db).await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_mid_query_closes_the_server_instead_of_reusing_it() {
    let pg = shared_pg();
    let db = fresh_db(pg, "midq");
    let p = start_trust(&trust_db(&db, "size = 1")).await;
    let c = p.connect("postgres", None, &db).await;
    let pid_before: i32 = c
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    drop(c);
    // psql starts a long query and is killed while it runs.
    let mut cmd = psql_command(p.port, "postgres", None, &db);
    cmd.args(["-c", "SELECT pg_sleep(30)"]);
    let mut child = cmd.spawn().unwrap();
    eventually(Duration::from_secs(10), "query running on the server", async || {
        pg.psql("postgres", &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND query LIKE 'SELECT pg_sleep(30)%'"))
            .trim()
            == "1"
    })
    .await;
    child.kill().unwrap();
    let _ = child.wait();
    let c2 = p.connect("postgres", None, &db).await;
    let pid_after: i32 = c2
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(
        pid_before, pid_after,
        "a server with a query in flight was handed to another client"
    );
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_open_transactions_commit_and_closes_idle_clients() {
    let pg = shared_pg();
    let db = fresh_db(pg, "shut");
    pg.psql(&db, "CREATE TABLE t (v int)");
    let body = format!(
        "[general]\nshutdown_timeout = \"10s\"\n{}",
        trust_db(&db, "size = 2")
    );
    let p = start_trust(&body).await;
    let idle = p.connect("postgres", None, &db).await;
    let busy = p.connect("postgres", None, &db).await;
    busy.batch_execute("BEGIN; INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let proxy = p.proxy.clone();
    let shutdown = tokio::spawn(async move { proxy.shutdown().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // New connections are refused.
    assert!(
        crate::common::connect_url(&p.url("postgres", None, &db))
            .await
            .is_err()
    );
    // The idle client was told and closed.
    let e = idle.simple_query("SELECT 1").await.unwrap_err();
    assert!(e.is_closed() || sqlstate(&e) == "57P01", "{e}");
    // The open transaction can finish.
    busy.batch_execute("INSERT INTO t VALUES (2); COMMIT")
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM t").trim(), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeout_closes_transactions_that_do_not_finish() {
    let pg = shared_pg();
    let db = fresh_db(pg, "shut2");
    pg.psql(&db, "CREATE TABLE t (v int)");
    let body = format!(
        "[general]\nshutdown_timeout = \"500ms\"\n{}",
        trust_db(&db, "size = 1")
    );
    let p = start_trust(&body).await;
    let busy = p.connect("postgres", None, &db).await;
    busy.batch_execute("BEGIN; INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), p.proxy.shutdown())
        .await
        .unwrap();
    assert!(busy.simple_query("COMMIT").await.is_err());
    eventually(
        Duration::from_secs(5),
        "server connection closed",
        async || crate::common::server_backends(pg, &db) == 0,
    )
    .await;
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM t").trim(), "0");
}

/// Sends raw bytes and returns what the proxy answered before closing.
async fn raw_exchange(port: u16, bytes: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("proxy closed the connection");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_gets_a_protocol_error_and_a_closed_connection() {
    let db = fresh_db(shared_pg(), "bad");
    let p = start_trust(&trust_db(&db, "size = 1")).await;
    // Bytes that are not a startup packet (an impossible length, or a
    // Terminate sent before any login, as node-postgres's quick disconnect
    // does): PostgreSQL logs and closes without a word, and so does sqlmux.
    for bytes in [
        &[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0][..],
        &b"X\x00\x00\x00\x04"[..],
    ] {
        let direct = raw_exchange(shared_pg().port(), bytes).await;
        let proxied = raw_exchange(p.port, bytes).await;
        assert_eq!(direct, Vec::<u8>::new(), "PostgreSQL answered {bytes:?}");
        assert_eq!(
            proxied, direct,
            "sqlmux answered {bytes:?} unlike PostgreSQL"
        );
    }
    // Protocol 2.0.
    let out = raw_exchange(p.port, &[0, 0, 0, 8, 0, 2, 0, 0]).await;
    assert!(String::from_utf8_lossy(&out).contains("unsupported frontend protocol"));
    // After login: a message with a length below 4, then an unknown type.
    for bad in [
        &b"Q\x00\x00\x00\x02"[..],
        &b"\xff\x00\x00\x00\x04"[..],
        &b"Q\x7f\x00\x00\x00"[..],
    ] {
        let mut pkt = Vec::new();
        let params = format!("user\0postgres\0database\0{db}\0\0");
        pkt.extend_from_slice(&((8 + params.len()) as u32).to_be_bytes());
        pkt.extend_from_slice(&196_608u32.to_be_bytes());
        pkt.extend_from_slice(params.as_bytes());
        pkt.extend_from_slice(bad);
        let out = raw_exchange(p.port, &pkt).await;
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("08P01"),
            "no protocol error for {bad:?}: {text}"
        );
    }
    // The proxy still serves normal clients afterwards.
    let c = p.connect("postgres", None, &db).await;
    c.simple_query("SELECT 1").await.unwrap();
    p.proxy.shutdown_now().await;
}
