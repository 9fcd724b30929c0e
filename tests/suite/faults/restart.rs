//! The server restarts under load: 64 clients over a pool of 8 (pgbench
//! for PostgreSQL, mysql_async clients for MariaDB). Only transactions in
//! flight fail, with the server's or sqlmux's clear error; transactions
//! that start while the server is down wait in the checkout queue (sqlmux
//! retries the connect until `checkout_timeout`) and succeed once it
//! accepts again; afterwards the pool is back to its size with no slot
//! stuck, and SHOW SERVERS matches what the server holds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use sqlmux::Proxy;
use sqlmux_tests::{MariaDb, MariaDbOptions, PgCluster, PgOptions};

use super::util::{Db, admin, blocking, my_url, pg_url, settled, start};
use crate::common::{connect_url, fresh_db, pgbench, run, server_backends};

const CLIENTS: usize = 64;
const POOL: i64 = 8;

/// How long after the server accepts again until a new client's query
/// through sqlmux succeeds (reported, not asserted).
async fn pg_recovery(p: &Proxy, db: &str) -> Duration {
    let t = Instant::now();
    loop {
        if let Ok(Ok(c)) =
            tokio::time::timeout(Duration::from_secs(5), connect_url(&pg_url(p, db))).await
            && let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_secs(5), c.simple_query("SELECT 1")).await
        {
            return t.elapsed();
        }
        assert!(t.elapsed() < Duration::from_secs(60), "no recovery");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_restart_under_pgbench_fails_only_transactions_in_flight_and_the_pool_recovers() {
    let mut pg = PgCluster::start(PgOptions::default());
    let db = fresh_db(&pg, "flt_restart");
    let (ok, out) = run(
        pgbench(pg.port(), "postgres", &db, &["-i", "-q", "-s", "1"]),
        Duration::from_secs(120),
    );
    assert!(ok, "pgbench -i: {out}");
    let pool = format!("size = {POOL}, checkout_timeout = \"30s\"");
    let p = start(
        "",
        &[Db {
            name: &db,
            protocol: "postgres",
            port: pg.port(),
            pool: &pool,
        }],
    )
    .await;
    let a = admin(&p).await;
    let port = p.postgres_addr().port();
    let args = ["-c", "64", "-j", "4", "-T", "10", "-N", "-P", "1"];
    let db2 = db.clone();
    let bench = tokio::task::spawn_blocking(move || {
        run(
            pgbench(port, "postgres", &db2, &args),
            Duration::from_secs(120),
        )
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pg = blocking(move || {
        pg.restart();
        pg
    })
    .await;
    let recovery = pg_recovery(&p, &db).await;
    eprintln!(
        "postgres restart under pgbench: queries succeed {} ms after the server accepts again",
        recovery.as_millis()
    );
    let (_, out) = bench.await.unwrap();
    let aborted: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("aborted in command"))
        .collect();
    eprintln!(
        "{} of {CLIENTS} pgbench clients aborted:\n{}",
        aborted.len(),
        aborted.join("\n")
    );
    assert!(
        aborted.len() as i64 <= POOL,
        "only the transactions holding one of the {POOL} servers may fail:\n{out}"
    );
    // Each failure is the server's own FATAL (or, when it arrived between
    // two of pgbench's statements, pgbench's note of the closed
    // connection, as it prints without sqlmux in between).
    for line in &aborted {
        assert!(
            line.contains("terminating connection due to administrator command")
                || line.contains("perhaps the backend died while processing"),
            "unclear error: {line}"
        );
    }
    // New transactions all succeed, from 64 clients again.
    let db3 = db.clone();
    let (ok, out) = blocking(move || {
        let args = ["-c", "64", "-j", "4", "-t", "30", "-N"];
        run(
            pgbench(port, "postgres", &db3, &args),
            Duration::from_secs(120),
        )
    })
    .await;
    assert!(ok && !out.contains("aborted"), "after the restart:\n{out}");
    let pic = settled(&a, &db).await;
    assert_eq!(pic.servers, POOL, "the pool is back to its size: {pic:?}");
    assert_eq!(
        server_backends(&pg, &db),
        POOL,
        "SHOW SERVERS vs pg_stat_activity"
    );
    p.shutdown_now().await;
}

/// One MySQL client: short transactions until `stop`; after an error it
/// reconnects. Returns (commits, error messages).
async fn my_client(
    url: String,
    n: usize,
    stop: Arc<AtomicBool>,
    commits: Arc<AtomicU64>,
) -> Vec<String> {
    let opts = mysql_async::Opts::from_url(&url).unwrap();
    let mut errors = Vec::new();
    let mut conn: Option<mysql_async::Conn> = None;
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match tokio::time::timeout(
                Duration::from_secs(30),
                mysql_async::Conn::new(opts.clone()),
            )
            .await
            {
                Ok(Ok(c)) => conn.insert(c),
                Ok(Err(e)) => {
                    errors.push(format!("connect: {e}"));
                    continue;
                }
                Err(_) => panic!("connect hung"),
            },
        };
        i += 1;
        let sql = format!(
            "START TRANSACTION; UPDATE acc SET n = n + 1 WHERE id = {n}; INSERT INTO log VALUES ({n}, {i}); COMMIT"
        );
        match tokio::time::timeout(Duration::from_secs(60), c.query_drop(sql)).await {
            Ok(Ok(())) => {
                commits.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                errors.push(e.to_string());
                conn = None;
            }
            Err(_) => panic!("a transaction hung"),
        }
    }
    errors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_restart_under_64_clients_fails_only_transactions_in_flight_and_the_pool_recovers()
{
    let mut m = MariaDb::start_standard(MariaDbOptions::default());
    let mut setup = String::from(
        "CREATE TABLE app.acc (id INT PRIMARY KEY, n INT NOT NULL);\nCREATE TABLE app.log (client INT, i BIGINT, PRIMARY KEY (client, i));\n",
    );
    for n in 0..CLIENTS {
        setup += &format!("INSERT INTO app.acc VALUES ({n}, 0);\n");
    }
    m.sql(&setup);
    let pool = format!("size = {POOL}, checkout_timeout = \"30s\"");
    let p = start(
        "",
        &[Db {
            name: "app",
            protocol: "mysql",
            port: m.port(),
            pool: &pool,
        }],
    )
    .await;
    let a = admin(&p).await;
    let stop = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            tokio::spawn(my_client(
                my_url(&p, "app"),
                n,
                stop.clone(),
                commits.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = commits.load(Ordering::Relaxed);
    m = blocking(move || {
        m.restart();
        m
    })
    .await;
    let t = Instant::now();
    let mut probe = loop {
        if let Ok(Ok(mut c)) = tokio::time::timeout(
            Duration::from_secs(5),
            mysql_async::Conn::from_url(my_url(&p, "app")),
        )
        .await
            && let Ok(Ok(())) =
                tokio::time::timeout(Duration::from_secs(5), c.query_drop("SELECT 1")).await
        {
            break c;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "no recovery");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    eprintln!(
        "mariadb restart under load: queries succeed {} ms after the server accepts again",
        t.elapsed().as_millis()
    );
    let at_recovery = commits.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for c in clients {
        errors.extend(
            tokio::time::timeout(Duration::from_secs(60), c)
                .await
                .expect("client ends")
                .unwrap(),
        );
    }
    let after = commits.load(Ordering::Relaxed);
    eprintln!(
        "{} errors of {after} transactions ({before} before the restart): {errors:#?}",
        errors.len()
    );
    assert!(
        before > 0 && after > at_recovery,
        "transactions ran before and after the restart"
    );
    assert!(
        errors.len() as i64 <= POOL,
        "only transactions holding one of the {POOL} servers may fail: {errors:#?}"
    );
    // Every commit a client saw is in the log, once.
    let logged: u64 = probe
        .query_first("SELECT COUNT(*) FROM log")
        .await
        .unwrap()
        .unwrap();
    assert!(logged >= after, "{logged} logged < {after} committed");
    drop(probe.disconnect().await);
    let pic = settled(&a, "app").await;
    assert_eq!(pic.servers, POOL, "the pool is back to its size: {pic:?}");
    let on_server = m.sql("SELECT COUNT(*) FROM information_schema.processlist WHERE db = 'app'");
    assert_eq!(on_server, POOL.to_string(), "SHOW SERVERS vs processlist");
    p.shutdown_now().await;
}
