//! RELOAD and PAUSE/RESUME under load on both protocols: while 16
//! PostgreSQL and 16 MySQL clients run short transactions, the console
//! reloads the configuration every 200 ms (the pool size flips between 4
//! and 5) and pauses and resumes every pool over and over. Nothing is
//! dropped: every transaction succeeds and every row is there.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use sqlmux::Proxy;
use sqlmux::config::Config;
use sqlmux_tests::{shared_mariadb, shared_pg};

use super::util::{Db, admin, config_text, guard, my_connect, pg_connect, settled};
use crate::common::fresh_db;
use crate::mysql::fresh_db as my_fresh_db;

const CLIENTS: usize = 16;
/// Operator rounds (one RELOAD each, PAUSE/RESUME every third).
const ROUNDS: usize = 12;

fn write_config(path: &std::path::Path, pg_db: &str, my_db: &str, size: usize) {
    let pool = format!("size = {size}");
    let dbs = [
        Db {
            name: pg_db,
            protocol: "postgres",
            port: shared_pg().port(),
            pool: &pool,
        },
        Db {
            name: my_db,
            protocol: "mysql",
            port: shared_mariadb().port(),
            pool: &pool,
        },
    ];
    std::fs::write(path, config_text("", &dbs)).unwrap();
}

/// Transactions until `done`; returns how many committed.
async fn pg_load(p: Arc<Proxy>, db: String, n: usize, done: Arc<AtomicBool>) -> i64 {
    let c = pg_connect(&p, &db).await;
    let mut i = 0;
    while !done.load(Ordering::Relaxed) {
        i += 1;
        let sql = format!("BEGIN; INSERT INTO t VALUES ({n}, {i}); SELECT count(*) FROM t; COMMIT");
        guard("pg transaction", c.batch_execute(&sql))
            .await
            .unwrap_or_else(|e| panic!("pg transaction dropped: {e}"));
    }
    i
}

async fn my_load(p: Arc<Proxy>, db: String, n: usize, done: Arc<AtomicBool>) -> i64 {
    let mut c = my_connect(&p, &db).await;
    let mut i = 0;
    while !done.load(Ordering::Relaxed) {
        i += 1;
        let sql = format!(
            "START TRANSACTION; INSERT INTO t VALUES ({n}, {i}); SELECT COUNT(*) FROM t; COMMIT"
        );
        guard("mysql transaction", c.query_drop(sql))
            .await
            .unwrap_or_else(|e| panic!("mysql transaction dropped: {e}"));
    }
    i
}

/// [`ROUNDS`] rounds 200 ms apart: RELOAD (flipping the size), and
/// PAUSE/RESUME every third round; then sets `done`. Returns (reloads,
/// pauses).
async fn operator(
    p: Arc<Proxy>,
    path: std::path::PathBuf,
    dbs: (String, String),
    done: Arc<AtomicBool>,
) -> (u64, u64) {
    let a = admin(&p).await;
    let (reloads, pauses) = (AtomicU64::new(0), AtomicU64::new(0));
    for round in 1..=ROUNDS {
        write_config(&path, &dbs.0, &dbs.1, 4 + round % 2);
        guard("RELOAD", a.simple_query("RELOAD"))
            .await
            .expect("RELOAD");
        reloads.fetch_add(1, Ordering::Relaxed);
        if round % 3 == 0 {
            guard("PAUSE", a.simple_query("PAUSE"))
                .await
                .expect("PAUSE");
            tokio::time::sleep(Duration::from_millis(50)).await;
            guard("RESUME", a.simple_query("RESUME"))
                .await
                .expect("RESUME");
            pauses.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    done.store(true, Ordering::Relaxed);
    (reloads.into_inner(), pauses.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reload_and_pause_resume_under_load_drop_nothing_on_either_protocol() {
    let pg_db = fresh_db(shared_pg(), "flt_reload");
    let my_db = my_fresh_db("flt_reload");
    let dir = std::env::temp_dir().join(format!("sqlmux-faults-{}-{pg_db}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sqlmux.toml");
    write_config(&path, &pg_db, &my_db, 4);
    let p = Arc::new(
        Proxy::start(Config::load(&path).expect("config loads"))
            .await
            .expect("proxy starts"),
    );
    let pc = pg_connect(&p, &pg_db).await;
    pc.batch_execute("CREATE TABLE t (client int, i int, PRIMARY KEY (client, i))")
        .await
        .unwrap();
    let mut mc = my_connect(&p, &my_db).await;
    mc.query_drop("CREATE TABLE t (client INT, i INT, PRIMARY KEY (client, i))")
        .await
        .unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let (mut pg_load_t, mut my_load_t) = (Vec::new(), Vec::new());
    for n in 0..CLIENTS {
        pg_load_t.push(tokio::spawn(pg_load(
            p.clone(),
            pg_db.clone(),
            n,
            done.clone(),
        )));
        my_load_t.push(tokio::spawn(my_load(
            p.clone(),
            my_db.clone(),
            n,
            done.clone(),
        )));
    }
    let op = tokio::spawn(operator(
        p.clone(),
        path.clone(),
        (pg_db.clone(), my_db.clone()),
        done.clone(),
    ));
    let (reloads, pauses) = op.await.unwrap();
    let (mut pg_done, mut my_done) = (0, 0);
    for t in pg_load_t {
        pg_done += t.await.expect("every client completes every transaction");
    }
    for t in my_load_t {
        my_done += t.await.expect("every client completes every transaction");
    }
    eprintln!(
        "{reloads} RELOADs and {pauses} PAUSE/RESUME rounds under load: {pg_done} + {my_done} transactions, none dropped"
    );
    assert_eq!((reloads, pauses), (ROUNDS as u64, (ROUNDS / 3) as u64));
    assert!(pg_done > 0 && my_done > 0);
    let n: i64 = pc
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, pg_done);
    let m: Option<i64> = mc.query_first("SELECT COUNT(*) FROM t").await.unwrap();
    assert_eq!(m, Some(my_done));
    drop(pc);
    drop(mc.disconnect().await);
    let a = admin(&p).await;
    for db in [&pg_db, &my_db] {
        let pic = settled(&a, db).await;
        assert!(pic.servers <= 5, "{db}: {pic:?}");
    }
    p.shutdown_now().await;
    let _ = std::fs::remove_dir_all(&dir);
}
