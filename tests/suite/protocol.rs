//! Everything a client can send is forwarded correctly.

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, TryStreamExt};
use sqlmux_tests::{psql_command, shared_pg};
use tokio_postgres::{AsyncMessage, SimpleQueryMessage};

use crate::common::{connect_with_messages, fresh_db, run, sqlstate, start_trust, trust_db};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_with_parameters_returns_what_the_server_returns() {
    let db = fresh_db(shared_pg(), "ext");
    let p = start_trust(&trust_db(&db, "size = 2")).await;
    let c = p.connect("postgres", None, &db).await;
    for i in 0..50i32 {
        let row = c
            .query_one(
                "SELECT $1::int4 * 2, $2::text || 'x', NULL::int8",
                &[&i, &format!("v{i}")],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, i32>(0), i * 2);
        assert_eq!(row.get::<_, String>(1), format!("v{i}x"));
        assert_eq!(row.get::<_, Option<i64>>(2), None);
    }
    // Rows larger than the proxy's buffers stream through intact.
    let big: String = c
        .query_one("SELECT repeat('abcdefgh', 200000)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(big.len(), 1_600_000);
    let n: i64 = c
        .query_one("SELECT count(*) FROM generate_series(1, 100000)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 100_000);
    let rows = c
        .query(
            "SELECT g, md5(g::text) FROM generate_series(1, 20000) g",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 20_000);
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_extended_batches_from_many_clients_keep_their_answers() {
    let db = fresh_db(shared_pg(), "pipe");
    let p = start_trust(&trust_db(&db, "size = 2")).await;
    let mut tasks = Vec::new();
    for client_no in 0..8i64 {
        let c = p.connect("postgres", None, &db).await;
        tasks.push(tokio::spawn(async move {
            let stmt = c.prepare("SELECT $1::int8 + $2::int8").await.unwrap();
            for round in 0..20i64 {
                // 10 queries in flight on one connection at once.
                let futs = (0..10i64).map(|k| {
                    let c = &c;
                    let stmt = &stmt;
                    async move {
                        let v: i64 = c
                            .query_one(stmt, &[&(client_no * 1000), &(round * 10 + k)])
                            .await
                            .unwrap()
                            .get(0);
                        assert_eq!(v, client_no * 1000 + round * 10 + k);
                    }
                });
                futures::future::join_all(futs).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_query_with_several_statements_and_errors_inside_transactions() {
    let db = fresh_db(shared_pg(), "multi");
    let p = start_trust(&trust_db(&db, "size = 1")).await;
    let c = p.connect("postgres", None, &db).await;
    let msgs = c
        .simple_query("CREATE TABLE t (id int primary key); INSERT INTO t VALUES (1), (2); SELECT id FROM t ORDER BY id")
        .await
        .unwrap();
    let rows: Vec<&str> = msgs
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0),
            _ => None,
        })
        .collect();
    assert_eq!(rows, ["1", "2"]);
    // An error inside a transaction puts it in the failed state; the next
    // statement is refused until ROLLBACK, which frees the server.
    c.batch_execute("BEGIN").await.unwrap();
    let e = c
        .batch_execute("INSERT INTO t VALUES (1)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23505");
    let e = c.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&e), "25P02");
    c.batch_execute("ROLLBACK").await.unwrap();
    // The single server is back in the pool: another client can use it.
    let other = p.connect("postgres", None, &db).await;
    let n: i64 = other
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    // An error in an implicit transaction (one statement) also frees it.
    let e = c.batch_execute("SELECT 1/0").await.unwrap_err();
    assert_eq!(sqlstate(&e), "22012");
    other.simple_query("SELECT 1").await.unwrap();
    // Errors in the extended protocol skip to Sync and keep the protocol in step.
    let e = c.query("SELECT $1::int4 / 0", &[&1i32]).await.unwrap_err();
    assert_eq!(sqlstate(&e), "22012");
    let v: i32 = c
        .query_one("SELECT $1::int4", &[&7i32])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 7);
    // Empty query.
    c.simple_query("").await.unwrap();
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_from_stdin_and_to_stdout_both_protocols() {
    let pg = shared_pg();
    let db = fresh_db(pg, "copy");
    pg.psql(&db, "CREATE TABLE c (id int, name text)");
    let p = start_trust(&trust_db(&db, "size = 1")).await;
    let c = p.connect("postgres", None, &db).await;
    // COPY FROM STDIN through tokio-postgres (extended protocol), 2 MB.
    let sink = c.copy_in("COPY c FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    for chunk in 0..20 {
        let mut data = String::new();
        for i in 0..5000 {
            data.push_str(&format!("{}\tname-{}\n", chunk * 5000 + i, i));
        }
        sink.send(Bytes::from(data)).await.unwrap();
    }
    let n = sink.finish().await.unwrap();
    assert_eq!(n, 100_000);
    // COPY TO STDOUT.
    let stream = c
        .copy_out("COPY (SELECT id FROM c ORDER BY id) TO STDOUT")
        .await
        .unwrap();
    let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
    let text: String = chunks
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert_eq!(text.lines().count(), 100_000);
    assert_eq!(text.lines().last(), Some("99999"));
    // A failing COPY (bad data) leaves the connection usable.
    let sink = c.copy_in("COPY c FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    sink.send(Bytes::from_static(b"not-a-number\tx\n"))
        .await
        .unwrap();
    let e = sink.finish().await.unwrap_err();
    assert_eq!(sqlstate(&e), "22P02");
    let n: i64 = c
        .query_one("SELECT count(*) FROM c", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 100_000);
    // psql's \copy uses the simple protocol.
    let port = p.port;
    let db2 = db.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        let mut cmd = psql_command(port, "postgres", None, &db2);
        cmd.args([
            "-c",
            "\\copy (SELECT g FROM generate_series(1,3) g) TO STDOUT",
        ]);
        cmd.args(["-c", "\\copy c FROM PROGRAM 'printf \"1\\tx\\n2\\ty\\n\"'"]);
        cmd.args(["-c", "SELECT count(*) FROM c"]);
        run(cmd, Duration::from_secs(30))
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("1\n2\n3\n"), "{out}");
    assert!(out.contains("100002"), "{out}");
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_and_notifications_reach_the_client() {
    let db = fresh_db(shared_pg(), "notify");
    let p = start_trust(&trust_db(&db, "size = 2")).await;
    let url = p.url("postgres", None, &db);
    let (listener, mut rx) = connect_with_messages(&url).await;
    listener
        .batch_execute("DO $$ BEGIN RAISE NOTICE 'hello from the server'; END $$")
        .await
        .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    match m {
        AsyncMessage::Notice(n) => assert_eq!(n.message(), "hello from the server"),
        other => panic!("expected a notice, got {other:?}"),
    }
    // LISTEN keeps the server with this client; NOTIFY from another client arrives.
    listener.batch_execute("LISTEN jobs").await.unwrap();
    let sender = p.connect("postgres", None, &db).await;
    for i in 0..3 {
        sender
            .batch_execute(&format!("NOTIFY jobs, 'job-{i}'"))
            .await
            .unwrap();
    }
    // Notifications are delivered while the listener is idle or running queries.
    listener.simple_query("SELECT 1").await.unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        if let AsyncMessage::Notification(n) =
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .unwrap()
                .unwrap()
        {
            assert_eq!(n.channel(), "jobs");
            got.push(n.payload().to_owned());
        }
    }
    assert_eq!(got, ["job-0", "job-1", "job-2"]);
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_session_through_the_proxy_matches_direct() {
    let pg = shared_pg();
    let db = fresh_db(pg, "psql");
    let p = start_trust(&trust_db(&db, "size = 1")).await;
    let script = "CREATE TABLE x(a int);\nINSERT INTO x SELECT generate_series(1,5);\nSELECT sum(a) FROM x;\nBEGIN;\nUPDATE x SET a = a * 10;\nSELECT sum(a) FROM x;\nCOMMIT;\nSELECT current_database(), current_user;\n";
    let port = p.port;
    let db2 = db.clone();
    let out = tokio::task::spawn_blocking(move || {
        sqlmux_tests::psql_tcp(port, "postgres", None, &db2, script)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(out.trim(), format!("15\n150\n{db}|postgres"));
    let rows = tokio::task::spawn_blocking(move || {
        let mut cmd = psql_command(port, "postgres", None, "nosuchdb");
        cmd.args(["-c", "SELECT 1"]);
        run(cmd, Duration::from_secs(10))
    })
    .await
    .unwrap();
    assert!(!rows.0);
    assert!(
        rows.1.contains("database \"nosuchdb\" does not exist"),
        "{}",
        rows.1
    );
    p.proxy.shutdown_now().await;
}
