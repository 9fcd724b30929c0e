//! Server connections ended by the database itself (pg_terminate_backend,
//! MariaDB `KILL CONNECTION`), mid-query and while idle in the pool: the
//! client in the middle gets an error, the dead server is dropped, and the
//! next checkout gets a live one (a different server pid / connection id).

use std::time::Duration;

use mysql_async::prelude::Queryable;
use sqlmux_tests::{shared_mariadb, shared_pg};

use super::util::{Db, admin, blocking, guard, my_connect, pg_connect, picture, settled, start};
use crate::common::{eventually, fresh_db, sqlstate};
use crate::mysql::fresh_db as my_fresh_db;

fn pg_db(name: &str) -> Db<'_> {
    Db {
        name,
        protocol: "postgres",
        port: shared_pg().port(),
        pool: "size = 1",
    }
}

fn my_db(name: &str) -> Db<'_> {
    Db {
        name,
        protocol: "mysql",
        port: shared_mariadb().port(),
        pool: "size = 1",
    }
}

/// Whether a PostgreSQL backend `pid` is still alive.
fn pg_alive(pid: i64) -> bool {
    shared_pg().psql(
        "postgres",
        &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"),
    ) == "1"
}

/// "1" while MariaDB connection `id` exists, else "0".
fn my_alive(id: i64) -> String {
    shared_mariadb().sql(&format!(
        "SELECT COUNT(*) FROM information_schema.processlist WHERE id = {id}"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_terminate_backend_mid_query_errors_that_client_and_the_next_gets_a_live_server() {
    let db = fresh_db(shared_pg(), "flt_term_busy");
    let p = start("", &[pg_db(&db)]).await;
    let a = admin(&p).await;
    let c = pg_connect(&p, &db).await;
    let running = tokio::spawn(async move {
        let r = c.simple_query("SELECT pg_sleep(60)").await;
        (c, r)
    });
    let mut pid = 0;
    eventually(Duration::from_secs(20), "the sleep runs", async || {
        let pic = picture(&a, &db).await;
        pid = pic.pids.first().copied().unwrap_or(0);
        pic.sv_active == 1 && pid > 0
    })
    .await;
    let killed = blocking(move || {
        shared_pg().psql("postgres", &format!("SELECT pg_terminate_backend({pid})"))
    })
    .await;
    assert_eq!(killed, "t");
    let (_c, r) = guard("the terminated query", running).await.unwrap();
    let e = r.expect_err("a terminated query must fail");
    assert_eq!(sqlstate(&e), "57P01", "{e}");
    // A new client gets a live server, not the dead one.
    let c2 = pg_connect(&p, &db).await;
    let row = guard(
        "query after",
        c2.query_one("SELECT pg_backend_pid()::int8", &[]),
    )
    .await
    .expect("the next checkout works");
    let pid2: i64 = row.get(0);
    assert_ne!(pid2, pid);
    assert!(!blocking(move || pg_alive(pid)).await);
    let pic = settled(&a, &db).await;
    assert_eq!(pic.pids, vec![pid2], "only the live server is pooled");
    p.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_terminate_backend_of_an_idle_server_is_invisible_to_the_next_client() {
    let db = fresh_db(shared_pg(), "flt_term_idle");
    let p = start("", &[pg_db(&db)]).await;
    let a = admin(&p).await;
    let c = pg_connect(&p, &db).await;
    let pid: i64 = guard("first", c.query_one("SELECT pg_backend_pid()::int8", &[]))
        .await
        .unwrap()
        .get(0);
    assert_eq!(settled(&a, &db).await.pids, vec![pid]);
    blocking(move || {
        shared_pg().psql("postgres", &format!("SELECT pg_terminate_backend({pid})"));
    })
    .await;
    eventually(Duration::from_secs(20), "the backend exits", async || {
        !blocking(move || pg_alive(pid)).await
    })
    .await;
    // The same client, idle meanwhile, runs its next transaction on a
    // new server without seeing an error.
    let pid2: i64 = guard("second", c.query_one("SELECT pg_backend_pid()::int8", &[]))
        .await
        .expect("the dead idle server is replaced, not lent")
        .get(0);
    assert_ne!(pid2, pid);
    assert_eq!(settled(&a, &db).await.pids, vec![pid2]);
    p.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_kill_connection_mid_query_errors_that_client_and_the_next_gets_a_live_server() {
    let db = my_fresh_db("flt_kill_busy");
    let p = start("", &[my_db(&db)]).await;
    let a = admin(&p).await;
    let mut c = my_connect(&p, &db).await;
    let running = tokio::spawn(async move {
        let r: Result<Option<i64>, _> = c.query_first("SELECT SLEEP(60)").await;
        r
    });
    let mut id = 0;
    eventually(Duration::from_secs(20), "the sleep runs", async || {
        let pic = picture(&a, &db).await;
        id = pic.pids.first().copied().unwrap_or(0);
        pic.sv_active == 1 && id > 0
    })
    .await;
    blocking(move || shared_mariadb().sql(&format!("KILL CONNECTION {id}"))).await;
    let r = guard("the killed query", running).await.unwrap();
    let e = r.expect_err("a killed query must fail");
    assert!(!e.to_string().is_empty());
    let mut c2 = my_connect(&p, &db).await;
    let id2: Option<i64> = guard("query after", c2.query_first("SELECT CONNECTION_ID()"))
        .await
        .expect("the next checkout works");
    let pic = settled(&a, &db).await;
    assert_eq!(pic.pids.len(), 1, "{pic:?}");
    assert_ne!(
        pic.pids[0], id,
        "the killed server is gone from SHOW SERVERS"
    );
    assert!(id2.is_some());
    assert_eq!(blocking(move || my_alive(id)).await, "0");
    p.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_kill_connection_of_an_idle_server_is_invisible_to_the_next_client() {
    let db = my_fresh_db("flt_kill_idle");
    let p = start("", &[my_db(&db)]).await;
    let a = admin(&p).await;
    let mut c = my_connect(&p, &db).await;
    guard("first", c.query_drop("SELECT 1")).await.unwrap();
    let id = settled(&a, &db).await.pids[0];
    blocking(move || shared_mariadb().sql(&format!("KILL CONNECTION {id}"))).await;
    eventually(Duration::from_secs(20), "the connection ends", async || {
        blocking(move || my_alive(id)).await == "0"
    })
    .await;
    let v: Option<i64> = guard("second", c.query_first("SELECT 41 + 1"))
        .await
        .expect("the dead idle server is replaced, not lent");
    assert_eq!(v, Some(42));
    let pic = settled(&a, &db).await;
    assert_eq!(pic.pids.len(), 1, "{pic:?}");
    assert_ne!(pic.pids[0], id);
    p.shutdown_now().await;
}
