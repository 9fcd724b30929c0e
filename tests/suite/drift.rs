//! sqlmux keeps a picture of every server it pools (the prepared statements
//! it holds, its settings) and of every client (its statement names, its
//! startup values). Each test here changes the server behind that picture
//! (a reset, an error inside a pipeline, a restart, a termination) and
//! checks that the next client still gets what a direct connection gives.

use sqlmux_protocol::postgres::message;
use sqlmux_tests::{PgCluster, PgOptions, shared_pg};

use crate::common::{connect_url, err_text, fresh_db, sqlstate, start_on, start_trust, trust_db};
use crate::raw::{RawClient, bind, execute};

/// The psycopg script of the statement-cache bug: a temp table pins the
/// server, a pipeline prepares statements on it, the client leaves (the
/// server is reset with DISCARD ALL and returned to the pool).
fn pinned_pipeline_script(port: u16, db: &str) -> String {
    format!(
        r#"
import psycopg
dsn = "host=127.0.0.1 port={port} user=postgres dbname={db}"
for round in range(3):
    conn = psycopg.connect(dsn, autocommit=True)
    cur = conn.cursor()
    cur.execute("create temp table trace (id int)")
    with conn.pipeline():
        cur.executemany("insert into trace (id) values (%s)", [(10,), (20,)])
    assert cur.execute("select count(*) from trace").fetchone()[0] == 2
    conn.close()
print("ok")
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_pinned_server_forgets_its_statements_and_the_next_client_works() {
    let python = crate::dropin::python_with("psycopg");
    let db = fresh_db(shared_pg(), "driftreset");
    let p = start_trust(&trust_db(&db, "size = 1")).await;
    let script = pinned_pipeline_script(p.port, &db);
    let (ok, out) = crate::dropin::run_python(python, script).await;
    assert!(ok && out.contains("ok"), "{out}");
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discard_all_and_deallocate_all_from_clients_empty_the_servers_statement_cache() {
    let db = fresh_db(shared_pg(), "driftdiscard");
    let p = start_trust(&trust_db(&db, "size = 1")).await;
    for reset in ["DISCARD ALL", "DEALLOCATE ALL"] {
        // One client prepares a statement on the single server, then wipes
        // the server's statements with SQL.
        let a = p.connect("postgres", None, &db).await;
        let s = a.prepare("SELECT 41 + $1::int4").await.unwrap();
        let v: i32 = a.query_one(&s, &[&1i32]).await.unwrap().get(0);
        assert_eq!(v, 42);
        a.batch_execute(reset).await.unwrap();
        drop(a);
        // Another client prepares the same text on the same server: sqlmux
        // must prepare it again instead of trusting a stale cache.
        let b = p.connect("postgres", None, &db).await;
        let s = b.prepare("SELECT 41 + $1::int4").await.unwrap();
        let v: i32 = b
            .query_one(&s, &[&2i32])
            .await
            .unwrap_or_else(|e| panic!("after {reset}: {}", err_text(&e)))
            .get(0);
        assert_eq!(v, 43, "after {reset}");
    }
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_named_parse_leaves_the_name_free_for_the_next_parse() {
    let db = fresh_db(shared_pg(), "driftparse");
    let p = start_trust(&trust_db(&db, "size = 1")).await;
    let mut raw = RawClient::connect(p.port, &db).await;
    raw.send(|b| {
        message::parse(b, b"s1", b"SELEC broken", &[]);
        message::sync(b);
    })
    .await;
    assert_eq!(raw.until_ready().await, ("EZ".into(), Some("42601".into())));
    // PostgreSQL: the name never existed, so preparing it again works.
    raw.send(|b| {
        message::parse(b, b"s1", b"SELECT 1", &[]);
        bind(b, "s1");
        execute(b);
        message::sync(b);
    })
    .await;
    assert_eq!(raw.until_ready().await, ("12DCZ".into(), None));
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_skipped_after_an_error_in_a_pipeline_do_not_exist() {
    let db = fresh_db(shared_pg(), "driftpipe");
    let p = start_trust(&trust_db(&db, "size = 1")).await;
    let mut raw = RawClient::connect(p.port, &db).await;
    // An error first; the server skips the named Parse behind it.
    raw.send(|b| {
        message::parse(b, b"", b"SELECT 1/0", &[]);
        bind(b, "");
        execute(b);
        message::parse(b, b"s2", b"SELECT 2", &[]);
        message::sync(b);
    })
    .await;
    assert_eq!(
        raw.until_ready().await,
        ("1EZ".into(), Some("22012".into()))
    );
    // As on a direct connection, s2 does not exist ...
    raw.send(|b| {
        bind(b, "s2");
        message::sync(b);
    })
    .await;
    assert_eq!(raw.until_ready().await, ("EZ".into(), Some("26000".into())));
    // ... and can be prepared; the server really gets the statement.
    raw.send(|b| {
        message::parse(b, b"s2", b"SELECT 2", &[]);
        bind(b, "s2");
        execute(b);
        message::sync(b);
    })
    .await;
    assert_eq!(raw.until_ready().await, ("12DCZ".into(), None));
    // Another client with the same text on the same server.
    let mut other = RawClient::connect(p.port, &db).await;
    other
        .send(|b| {
            message::parse(b, b"x", b"SELECT 2", &[]);
            bind(b, "x");
            execute(b);
            message::sync(b);
        })
        .await;
    assert_eq!(other.until_ready().await, ("12DCZ".into(), None));
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eviction_skipped_after_an_error_keeps_the_statement_listed() {
    let db = fresh_db(shared_pg(), "driftevict");
    let p = start_trust(&trust_db(&db, "size = 1, max_prepared_statements = 1")).await;
    let mut raw = RawClient::connect(p.port, &db).await;
    raw.send(|b| {
        message::parse(b, b"a", b"SELECT 'a'", &[]);
        message::sync(b);
    })
    .await;
    assert_eq!(raw.until_ready().await, ("1Z".into(), None));
    // Preparing b would evict a (Close a, Parse b), but an error comes
    // first: the server skips both and still holds a.
    raw.send(|b| {
        message::parse(b, b"", b"SELECT 1/0", &[]);
        bind(b, "");
        execute(b);
        message::parse(b, b"b", b"SELECT 'b'", &[]);
        message::sync(b);
    })
    .await;
    assert_eq!(
        raw.until_ready().await,
        ("1EZ".into(), Some("22012".into()))
    );
    raw.send(|b| {
        bind(b, "a");
        execute(b);
        message::sync(b);
    })
    .await;
    assert_eq!(raw.until_ready().await, ("2DCZ".into(), None));
    raw.send(|b| {
        message::parse(b, b"b", b"SELECT 'b'", &[]);
        bind(b, "b");
        execute(b);
        message::sync(b);
    })
    .await;
    assert_eq!(raw.until_ready().await, ("12DCZ".into(), None));
    p.proxy.shutdown_now().await;
}

/// `SHOW application_name` through a client that logged in with one.
async fn application_name_after(url: &str, reset: &str) -> (String, String) {
    let c = connect_url(url).await.unwrap();
    c.batch_execute("SET application_name = 'changed'")
        .await
        .unwrap();
    c.batch_execute(reset).await.unwrap();
    let same: String = c
        .query_one("SHOW application_name", &[])
        .await
        .unwrap()
        .get(0);
    // A new transaction (possibly on another server).
    let later: String = c
        .query_one("SHOW application_name", &[])
        .await
        .unwrap()
        .get(0);
    (same, later)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_all_and_discard_all_return_to_the_startup_values_like_a_direct_connection() {
    let pg = shared_pg();
    let db = fresh_db(pg, "driftparams");
    let p = start_trust(&trust_db(&db, "size = 2")).await;
    for reset in ["RESET ALL", "DISCARD ALL", "RESET application_name"] {
        let direct = format!(
            "{}?application_name=startup-app",
            pg.url("postgres", None, &db)
        );
        let proxied = format!(
            "{} application_name=startup-app",
            p.url("postgres", None, &db)
        );
        let want = application_name_after(&direct, reset).await;
        assert_eq!(want.0, "startup-app", "direct, {reset}");
        let got = application_name_after(&proxied, reset).await;
        assert_eq!(got, want, "through sqlmux, {reset}");
    }
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_terminated_under_a_client_gives_one_error_then_the_close() {
    let pg = shared_pg();
    let db = fresh_db(pg, "driftterm");
    let p = start_trust(&trust_db(&db, "size = 1")).await;
    let mut errors = Vec::new();
    for port in [pg.port(), p.port] {
        let mut raw = RawClient::connect(port, &db).await;
        raw.send(|b| message::query(b, "SELECT pg_terminate_backend(pg_backend_pid())"))
            .await;
        let codes: Vec<String> = raw
            .until_closed()
            .await
            .into_iter()
            .filter(|(tag, _)| *tag == b'E')
            .map(|(_, body)| {
                let f = message::decode_error_fields(&body).unwrap();
                format!("{} {}", f.severity, f.code)
            })
            .collect();
        errors.push(codes);
    }
    assert_eq!(errors[0], vec!["FATAL 57P01".to_owned()], "direct");
    assert_eq!(errors[1], errors[0], "through sqlmux");
    // The pool replaced the terminated server.
    let c = p.connect("postgres", None, &db).await;
    c.simple_query("SELECT 1").await.unwrap();
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_from_the_own_session_carries_the_clients_process_id() {
    let db = fresh_db(shared_pg(), "driftnotify");
    let p = start_trust(&trust_db(&db, "size = 2")).await;
    let mut raw = RawClient::connect(p.port, &db).await;
    raw.send(|b| message::query(b, "LISTEN drift; NOTIFY drift, 'hello'"))
        .await;
    let mut notified = None;
    for (tag, body) in raw.messages_until_ready().await {
        if tag == b'A' {
            notified = Some(i32::from_be_bytes([body[0], body[1], body[2], body[3]]));
        }
    }
    assert_eq!(notified, Some(raw.pid), "NotificationResponse process id");
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_survive_a_server_restart() {
    let mut pg = PgCluster::start(PgOptions::default());
    let db = fresh_db(&pg, "driftrestart");
    let p = start_on(pg.port(), "trust", &trust_db(&db, "size = 2")).await;
    let c = p.connect("postgres", None, &db).await;
    let s = c.prepare("SELECT 1 + $1::int4").await.unwrap();
    let v: i32 = c.query_one(&s, &[&1i32]).await.unwrap().get(0);
    assert_eq!(v, 2);
    pg.restart();
    // The pooled servers died with the old server; new ones hold no
    // statements, and sqlmux prepares the client's statement on them.
    // The client was idle, so its own connection to sqlmux lives on.
    let v: i32 = c
        .query_one(&s, &[&2i32])
        .await
        .unwrap_or_else(|e| panic!("after the restart: {} ({})", err_text(&e), sqlstate(&e)))
        .get(0);
    assert_eq!(v, 3);
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_survive_reconnect_of_their_servers() {
    let db = fresh_db(shared_pg(), "driftreconnect");
    let p = start_trust(&trust_db(&db, "size = 1")).await;
    let c = p.connect("postgres", None, &db).await;
    let s = c.prepare("SELECT 10 + $1::int4").await.unwrap();
    let v: i32 = c.query_one(&s, &[&1i32]).await.unwrap().get(0);
    assert_eq!(v, 11);
    // What the admin command RECONNECT does: every server closes (idle ones
    // now), so the statement must be prepared again on the new one.
    for e in p.proxy.shared.pools.all() {
        e.reconnect();
    }
    let v: i32 = c
        .query_one(&s, &[&2i32])
        .await
        .unwrap_or_else(|e| panic!("after RECONNECT: {}", err_text(&e)))
        .get(0);
    assert_eq!(v, 12);
    p.proxy.shutdown_now().await;
}
