//! Transaction pooling under load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use sqlmux_tests::shared_pg;

use crate::common::{
    self, fresh_db, pgbench, run, server_backends, sqlstate, start_trust, trust_db,
};

/// Runs pgbench through the proxy while sampling server connections.
async fn pgbench_through_pool(db: &str, port: u16, args: Vec<&'static str>) -> (bool, String, i64) {
    let pg = shared_pg();
    let stop = Arc::new(AtomicBool::new(false));
    let max_seen = Arc::new(AtomicI64::new(0));
    let sampler = {
        let (stop, max_seen, db) = (stop.clone(), max_seen.clone(), db.to_owned());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let n = server_backends(pg, &db);
                max_seen.fetch_max(n, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(30));
            }
        })
    };
    let db2 = db.to_owned();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        run(
            pgbench(port, "postgres", &db2, &args),
            Duration::from_secs(120),
        )
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    (ok, out, max_seen.load(Ordering::Relaxed))
}

fn init_pgbench(db: &str) {
    let pg = shared_pg();
    let (ok, out) = run(
        pgbench(pg.port(), "postgres", db, &["-i", "-s", "1", "-q"]),
        Duration::from_secs(120),
    );
    assert!(ok, "pgbench -i failed: {out}");
}

fn assert_no_failures(out: &str) {
    assert!(
        out.contains("number of failed transactions: 0 "),
        "pgbench reported failures:\n{out}"
    );
    let processed = out
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(processed > 100, "too few transactions processed:\n{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_select_only_40_clients_share_4_servers_simple_and_extended() {
    let db = fresh_db(shared_pg(), "pgb_s");
    init_pgbench(&db);
    let p = start_trust(&trust_db(&db, "size = 4")).await;
    for mode in ["simple", "extended"] {
        let args = vec!["-S", "-M", mode, "-c", "40", "-j", "2", "-T", "3"];
        let (ok, out, max_servers) = pgbench_through_pool(&db, p.port, args).await;
        assert!(ok, "pgbench -M {mode} failed:\n{out}");
        assert_no_failures(&out);
        assert!(
            max_servers <= 4,
            "saw {max_servers} server connections for a pool of 4 (-M {mode})"
        );
        assert!(max_servers >= 1, "sampler saw no server connection at all");
    }
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_tpcb_transactions_complete_without_failures() {
    let db = fresh_db(shared_pg(), "pgb_t");
    init_pgbench(&db);
    let p = start_trust(&trust_db(&db, "size = 4")).await;
    let (ok, out, max_servers) =
        pgbench_through_pool(&db, p.port, vec!["-c", "12", "-j", "2", "-T", "3"]).await;
    assert!(ok, "pgbench TPC-B failed:\n{out}");
    assert_no_failures(&out);
    assert!(
        max_servers <= 4,
        "saw {max_servers} server connections for a pool of 4"
    );
    // Every history row pgbench inserted is committed exactly once per transaction.
    let counted: u64 = shared_pg()
        .psql(&db, "SELECT count(*) FROM pgbench_history")
        .trim()
        .parse()
        .unwrap();
    assert!(counted > 100, "history rows: {counted}");
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_timeout_error_names_pool_size_and_wait() {
    let db = fresh_db(shared_pg(), "cto");
    let p = start_trust(&trust_db(&db, "size = 1, checkout_timeout = \"300ms\"")).await;
    let holder = p.connect("postgres", None, &db).await;
    holder.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let waiter = p.connect("postgres", None, &db).await;
    let err = waiter.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&err), "53300");
    let msg = err.as_db_error().unwrap().message().to_owned();
    assert!(msg.contains(&format!("\"{db}/postgres\"")), "{msg}");
    assert!(msg.contains("all 1 server connections"), "{msg}");
    assert!(msg.contains("checkout_timeout"), "{msg}");
    let waited: u64 = msg
        .split("busy for ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("message names the wait in ms");
    assert!(waited >= 300, "waited {waited} ms: {msg}");
    // The holder is unaffected and the pool serves again after it commits.
    holder.batch_execute("COMMIT").await.unwrap();
    let again = p.connect("postgres", None, &db).await;
    again.simple_query("SELECT 1").await.unwrap();
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_beyond_max_client_connections_get_too_many_clients() {
    let db = fresh_db(shared_pg(), "mcc");
    let body = format!(
        "[pool]\nmax_client_connections = 2\n{}",
        trust_db(&db, "size = 2")
    );
    let p = start_trust(&body).await;
    let a = p.connect("postgres", None, &db).await;
    let b = p.connect("postgres", None, &db).await;
    let err = common::connect_url(&p.url("postgres", None, &db))
        .await
        .expect_err("third client refused");
    assert_eq!(sqlstate(&err), "53300", "{err}");
    assert!(common::err_text(&err).contains("too many clients"), "{err}");
    a.simple_query("SELECT 1").await.unwrap();
    b.simple_query("SELECT 1").await.unwrap();
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_servers_close_after_idle_timeout_and_min_idle_stays_warm() {
    let db = fresh_db(shared_pg(), "idle");
    let p = start_trust(&trust_db(
        &db,
        "size = 3, min_idle = 1, idle_timeout = \"1s\"",
    ))
    .await;
    // min_idle opens one server without any client.
    common::eventually(
        Duration::from_secs(5),
        "min_idle server opened",
        async || server_backends(shared_pg(), &db) == 1,
    )
    .await;
    // Three concurrent transactions open three servers.
    let clients = futures::future::join_all((0..3).map(|_| p.connect("postgres", None, &db))).await;
    futures::future::join_all(
        clients
            .iter()
            .map(|c| c.simple_query("SELECT pg_sleep(0.3)")),
    )
    .await;
    assert_eq!(server_backends(shared_pg(), &db), 3);
    // After idle_timeout only min_idle remain.
    common::eventually(
        Duration::from_secs(6),
        "idle servers closed down to min_idle",
        async || server_backends(shared_pg(), &db) == 1,
    )
    .await;
    p.proxy.shutdown_now().await;
}

/// The backend pid of the server a client is lent.
async fn backend_pid(c: &tokio_postgres::Client) -> i32 {
    c.query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_lends_one_server_for_the_whole_session_and_resets_it() {
    let db = fresh_db(shared_pg(), "sess");
    let p = start_trust(&trust_db(
        &db,
        "size = 1, mode = \"session\", checkout_timeout = \"300ms\"",
    ))
    .await;
    let a = p.connect("postgres", None, &db).await;
    let pid = backend_pid(&a).await;
    // A setting the server does not report back stays, as on a direct
    // connection, and every transaction runs on the same server.
    a.batch_execute("SET work_mem = '7MB'").await.unwrap();
    for _ in 0..5 {
        a.batch_execute("BEGIN; SELECT 1; COMMIT").await.unwrap();
        assert_eq!(backend_pid(&a).await, pid);
    }
    let wm: String = a.query_one("SHOW work_mem", &[]).await.unwrap().get(0);
    assert_eq!(wm, "7MB");
    // The only server belongs to `a` even between its transactions.
    let b = p.connect("postgres", None, &db).await;
    let err = b.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&err), "53300", "{}", common::err_text(&err));
    // When `a` leaves, the server is reset (DISCARD ALL) and lent again.
    drop(a);
    let c = p.connect("postgres", None, &db).await;
    let again = {
        let mut got = None;
        for _ in 0..50 {
            match c.query_one("SELECT pg_backend_pid()", &[]).await {
                Ok(row) => {
                    got = Some(row.get::<_, i32>(0));
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        got.expect("the server is lent again after its client left")
    };
    assert_eq!(again, pid, "the same server is reused");
    let wm: String = c.query_one("SHOW work_mem", &[]).await.unwrap().get(0);
    assert_ne!(wm, "7MB", "session state of the previous client was reset");
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_older_than_max_lifetime_are_replaced() {
    let db = fresh_db(shared_pg(), "life");
    let p = start_trust(&trust_db(&db, "size = 1, max_lifetime = \"1s\"")).await;
    let c = p.connect("postgres", None, &db).await;
    let first = backend_pid(&c).await;
    // Within the lifetime the same server serves every transaction.
    assert_eq!(backend_pid(&c).await, first);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let mut later = backend_pid(&c).await;
    if later == first {
        // The server may have been released just before its lifetime ran
        // out; the next release retires it.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        later = backend_pid(&c).await;
    }
    assert_ne!(later, first, "a server past max_lifetime was reused");
    // The old server is really closed, not only set aside.
    common::eventually(Duration::from_secs(5), "old server closed", async || {
        server_backends(shared_pg(), &db) == 1
    })
    .await;
    p.proxy.shutdown_now().await;
}
