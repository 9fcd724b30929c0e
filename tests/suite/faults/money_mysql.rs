//! The money test on MariaDB: 32 clients move money through a pool of 8
//! while a chaos task ends random clients mid-transaction (sqlmux's own
//! `KILL CONNECTION <client id>`) and random server connections (MariaDB's
//! `KILL CONNECTION <thread id>`). The same books must balance as on
//! PostgreSQL (see `money`), and no server transaction stays open.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use sqlmux::Proxy;
use sqlmux_tests::shared_mariadb;

use super::money::{
    ACCOUNTS, CLIENTS, Outcome, Plan, Rng, START_BALANCE, Tally, Transfer, deadline, finish,
};
use super::util::{Db, guard, my_url, start};
use crate::common::eventually;
use crate::mysql::fresh_db;

#[derive(Default)]
struct Chaos {
    /// Each client's sqlmux connection id (0 while disconnected).
    ids: Mutex<Vec<u32>>,
    tally: Tally,
}

async fn transfer(c: &mut mysql_async::Conn, t: &Transfer) -> Outcome {
    for sql in t.steps("START TRANSACTION") {
        match guard("transfer step", c.query_drop(sql)).await {
            Ok(()) => {}
            Err(mysql_async::Error::Server(e)) if e.code == 1062 => return Outcome::AlreadyDone,
            Err(_) => return Outcome::Retry,
        }
    }
    Outcome::Committed
}

async fn client(
    p: Arc<Proxy>,
    db: String,
    chaos: Arc<Chaos>,
    n: u64,
    until: Option<Instant>,
) -> Vec<i64> {
    let mut plan = Plan::new(n, until);
    let opts = mysql_async::Opts::from_url(&my_url(&p, &db)).unwrap();
    let mut seen = Vec::new();
    while let Some(t) = plan.next_transfer() {
        loop {
            let Ok(mut c) = guard("login", mysql_async::Conn::new(opts.clone())).await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            chaos.ids.lock().unwrap()[n as usize] = c.id();
            let outcome = transfer(&mut c, &t).await;
            chaos.ids.lock().unwrap()[n as usize] = 0;
            // A new connection per transfer: after any error its state is
            // unknown, and it keeps the chaos's ids fresh.
            drop(tokio::time::timeout(Duration::from_secs(5), c.disconnect()).await);
            match outcome {
                Outcome::Committed => seen.push(t.id),
                Outcome::AlreadyDone => {}
                Outcome::Retry => continue,
            }
            break;
        }
    }
    seen
}

async fn chaos_task(chaos: Arc<Chaos>, p: Arc<Proxy>, db: String, stop: Arc<AtomicBool>) {
    let mut rng = Rng::seeded(7);
    let mut killer = mysql_async::Conn::from_url(my_url(&p, &db))
        .await
        .expect("killer");
    let root = format!(
        "mysql://root@127.0.0.1:{}/?prefer_socket=false",
        shared_mariadb().port()
    );
    let mut root = mysql_async::Conn::from_url(root).await.expect("root");
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(15 + rng.below(30))).await;
        if rng.below(2) == 0 {
            let id = chaos.ids.lock().unwrap()[rng.below(CLIENTS) as usize];
            if id != 0
                && guard(
                    "KILL client",
                    killer.query_drop(format!("KILL CONNECTION {id}")),
                )
                .await
                .is_ok()
            {
                chaos.tally.cut.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            let sql = format!(
                "SELECT id FROM information_schema.processlist WHERE db = '{db}' AND user = 'app' ORDER BY RAND() LIMIT 1"
            );
            if let Ok(Some(id)) = guard("pick", root.query_first::<u64, _>(sql)).await
                && guard(
                    "KILL server",
                    root.query_drop(format!("KILL CONNECTION {id}")),
                )
                .await
                .is_ok()
            {
                chaos.tally.terminated.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn money_moved_under_chaos_is_never_lost_nor_doubled_on_mariadb() {
    let db = fresh_db("flt_money");
    let m = shared_mariadb();
    let mut sql = format!(
        "CREATE TABLE `{db}`.acc (id INT PRIMARY KEY, bal BIGINT NOT NULL) ENGINE=InnoDB;\n\
         CREATE TABLE `{db}`.log (id BIGINT PRIMARY KEY, src INT NOT NULL, dst INT NOT NULL, amount BIGINT NOT NULL) ENGINE=InnoDB;\n"
    );
    for a in 0..ACCOUNTS {
        sql += &format!("INSERT INTO `{db}`.acc VALUES ({a}, {START_BALANCE});\n");
    }
    m.sql(&sql);
    let pool = "size = 8, checkout_timeout = \"30s\"";
    let p = Arc::new(
        start(
            "",
            &[Db {
                name: &db,
                protocol: "mysql",
                port: m.port(),
                pool,
            }],
        )
        .await,
    );
    let chaos = Arc::new(Chaos::default());
    chaos.ids.lock().unwrap().resize(CLIENTS as usize, 0);
    let until = deadline();
    let stop = Arc::new(AtomicBool::new(false));
    let chaos_run = tokio::spawn(chaos_task(
        chaos.clone(),
        p.clone(),
        db.clone(),
        stop.clone(),
    ));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| tokio::spawn(client(p.clone(), db.clone(), chaos.clone(), n, until)))
        .collect();
    let committed = finish("money (mariadb)", clients, chaos_run, &stop, &chaos.tally).await;
    check_books(&db, &committed).await;
    p.shutdown_now().await;
}

async fn check_books(db: &str, committed: &HashSet<i64>) {
    let m = shared_mariadb();
    let total = m.sql(&format!("SELECT SUM(bal) FROM `{db}`.acc"));
    assert_eq!(
        total,
        (ACCOUNTS * 1000).to_string(),
        "money appeared or vanished"
    );
    let logged: HashSet<i64> = m
        .sql(&format!("SELECT id FROM `{db}`.log"))
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let missing: Vec<_> = committed.difference(&logged).collect();
    assert!(missing.is_empty(), "committed but not logged: {missing:?}");
    let wrong = m.sql(&format!(
        "SELECT COUNT(*) FROM `{db}`.acc a WHERE a.bal <> 1000 \
         - COALESCE((SELECT SUM(amount) FROM `{db}`.log WHERE src = a.id), 0) \
         + COALESCE((SELECT SUM(amount) FROM `{db}`.log WHERE dst = a.id), 0)"
    ));
    assert_eq!(wrong, "0", "balances that disagree with the log");
    let open = format!(
        "SELECT COUNT(*) FROM information_schema.innodb_trx t JOIN information_schema.processlist p \
         ON p.id = t.trx_mysql_thread_id WHERE p.db = '{db}'"
    );
    eventually(
        Duration::from_secs(30),
        "no server transaction left open",
        async || m.sql(&open) == "0",
    )
    .await;
}
