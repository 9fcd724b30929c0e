//! A network path that fails, played by the harness's relay between sqlmux
//! and the server: black-holed at connect (`general.server_connect_timeout`
//! fires), black-holed mid-query (`pool.query_timeout` fires), dropped
//! (resets reach the clients in flight; idle servers are replaced),
//! delayed (slow, nothing lost). No client call hangs (each is guarded),
//! and the pool recovers when the path does.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use sqlmux_tests::{Mode, Relay, shared_mariadb, shared_pg};

use sqlmux_protocol::postgres::message;

use super::util::{Db, admin, guard, my_connect, my_url, pg_connect, pg_url, settled, start};
use crate::common::{connect_url, err_text, fresh_db};
use crate::mysql::fresh_db as my_fresh_db;
use crate::raw::RawClient;

/// Short enough for a quick test, long enough for a loaded machine to log
/// in to a server that is there.
const GENERAL: &str = "server_connect_timeout = \"2s\"";
const POOL: &str = "size = 2, checkout_timeout = \"1s\", query_timeout = \"2s\"";

async fn pg_behind_relay(prefix: &str, pool: &str) -> (String, Relay, sqlmux::Proxy) {
    let db = fresh_db(shared_pg(), prefix);
    let relay = Relay::start(shared_pg().addr()).await;
    let p = start(
        GENERAL,
        &[Db {
            name: &db,
            protocol: "postgres",
            port: relay.port(),
            pool,
        }],
    )
    .await;
    (db, relay, p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_black_holed_connect_is_cut_by_server_connect_timeout_and_recovers() {
    let (db, relay, p) = pg_behind_relay("flt_bh_connect", POOL).await;
    relay.set_mode(Mode::BlackHole);
    // The login itself needs a server (its parameters), so it is refused.
    let e = guard("login over a black hole", connect_url(&pg_url(&p, &db)))
        .await
        .expect_err("no server can be reached");
    let text = err_text(&e);
    assert!(text.contains("server_connect_timeout"), "{text}");
    assert!(
        relay.accepted() >= 1,
        "sqlmux tried to connect through the relay"
    );
    relay.set_mode(Mode::Pass);
    let c = pg_connect(&p, &db).await;
    guard("query after the path is back", c.simple_query("SELECT 1"))
        .await
        .expect("the pool recovers");
    let a = admin(&p).await;
    assert_eq!(settled(&a, &db).await.servers, 1);
    p.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_black_hole_mid_query_is_cut_by_query_timeout_and_the_server_replaced() {
    let (db, relay, p) = pg_behind_relay("flt_bh_query", POOL).await;
    let a = admin(&p).await;
    // A raw client, to see the exact error sqlmux sends before it closes.
    let mut raw = RawClient::connect(p.postgres_addr().port(), &db).await;
    raw.send(|b| message::query(b, "SELECT 1")).await;
    guard("before", raw.until_ready()).await;
    let pid = settled(&a, &db).await.pids[0];
    relay.set_mode(Mode::BlackHole);
    raw.send(|b| message::query(b, "SELECT 2")).await;
    let errors: Vec<Vec<u8>> = guard("query into a black hole", raw.until_closed())
        .await
        .into_iter()
        .filter(|(tag, _)| *tag == b'E')
        .map(|(_, body)| body)
        .collect();
    assert_eq!(errors.len(), 1, "one error, then the close");
    let f = message::decode_error_fields(&errors[0]).unwrap();
    assert_eq!((f.severity, f.code), ("FATAL", "08006"));
    assert!(f.message.contains("query_timeout"), "{}", f.message);
    // The silent server is closed, not pooled.
    assert_eq!(settled(&a, &db).await.servers, 0);
    relay.set_mode(Mode::Pass);
    let c = pg_connect(&p, &db).await;
    let pid2: i64 = guard("after", c.query_one("SELECT pg_backend_pid()::int8", &[]))
        .await
        .expect("the pool recovers")
        .get(0);
    assert_ne!(pid, pid2);
    assert_eq!(settled(&a, &db).await.pids, vec![pid2]);
    p.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_dropped_path_errors_the_client_in_flight_and_idle_servers_are_replaced() {
    let (db, relay, p) = pg_behind_relay("flt_drop", "size = 2").await;
    let a = admin(&p).await;
    // Two servers: one busy, one idle.
    let busy = pg_connect(&p, &db).await;
    let idle = pg_connect(&p, &db).await;
    let (r1, r2) = guard(
        "warm",
        futures::future::join(
            busy.simple_query("SELECT pg_sleep(0.2)"),
            idle.simple_query("SELECT pg_sleep(0.2)"),
        ),
    )
    .await;
    r1.and(r2).expect("both servers open");
    let sleeping = tokio::spawn(async move { busy.simple_query("SELECT pg_sleep(30)").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.set_mode(Mode::Drop);
    let e = guard("query on a dropped path", sleeping)
        .await
        .unwrap()
        .expect_err("a reset path fails the query");
    assert!(!err_text(&e).is_empty());
    relay.set_mode(Mode::Pass);
    guard("idle client after the drop", idle.simple_query("SELECT 1"))
        .await
        .expect("the reset idle server is replaced, not lent");
    let pic = settled(&a, &db).await;
    assert_eq!(pic.servers, 1, "{pic:?}");
    p.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_delayed_path_is_slow_but_loses_nothing() {
    let (db, relay, p) = pg_behind_relay("flt_delay", "size = 2").await;
    let c = pg_connect(&p, &db).await;
    guard(
        "create",
        c.batch_execute("CREATE TABLE t (client int, i int)"),
    )
    .await
    .unwrap();
    relay.set_mode(Mode::Delay(Duration::from_millis(20)));
    let mut tasks = Vec::new();
    for client in 0..4 {
        let c = pg_connect(&p, &db).await;
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                let sql = format!("BEGIN; INSERT INTO t VALUES ({client}, {i}); COMMIT");
                guard("delayed transaction", c.batch_execute(&sql))
                    .await
                    .expect("a slow path still works");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n: i64 = guard("count", c.query_one("SELECT count(*) FROM t", &[]))
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 40);
    p.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_black_hole_and_drop_are_cut_by_timeouts_and_the_pool_recovers() {
    let db = my_fresh_db("flt_my_net");
    let relay = Relay::start(shared_mariadb().addr()).await;
    let p = start(
        GENERAL,
        &[Db {
            name: &db,
            protocol: "mysql",
            port: relay.port(),
            pool: POOL,
        }],
    )
    .await;
    let a = admin(&p).await;
    // Black hole at connect: server_connect_timeout.
    relay.set_mode(Mode::BlackHole);
    let opts = mysql_async::Opts::from_url(&my_url(&p, &db)).unwrap();
    let e = guard("login over a black hole", mysql_async::Conn::new(opts))
        .await
        .expect_err("no server can be reached");
    assert!(e.to_string().contains("server_connect_timeout"), "{e}");
    // Back: a server is opened.
    relay.set_mode(Mode::Pass);
    let mut c = my_connect(&p, &db).await;
    guard("after connect black hole", c.query_drop("SELECT 1"))
        .await
        .expect("recovers");
    // Black hole mid-query: query_timeout.
    relay.set_mode(Mode::BlackHole);
    let e = guard("query into a black hole", c.query_drop("SELECT 2"))
        .await
        .expect_err("the silent server is given up");
    assert!(e.to_string().contains("query_timeout"), "{e}");
    assert_eq!(settled(&a, &db).await.servers, 0);
    // Drop: the client in flight gets an error.
    relay.set_mode(Mode::Pass);
    let mut c = my_connect(&p, &db).await;
    let sleeping = tokio::spawn(async move { c.query_drop("SELECT SLEEP(30)").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    relay.set_mode(Mode::Drop);
    guard("query on a dropped path", sleeping)
        .await
        .unwrap()
        .expect_err("a reset path fails the query");
    relay.set_mode(Mode::Pass);
    let mut c = my_connect(&p, &db).await;
    let v: Option<i64> = guard("after the drop", c.query_first("SELECT 6 * 7"))
        .await
        .expect("recovers");
    assert_eq!(v, Some(42));
    assert_eq!(settled(&a, &db).await.servers, 1);
    p.shutdown_now().await;
}
