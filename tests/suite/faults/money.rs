//! The money test: 32 clients move money between accounts through a pool
//! of 8 while a chaos task cuts random clients' sockets mid-transaction
//! and terminates random server connections. Afterwards the sum of the
//! balances is unchanged, every transfer a client saw COMMIT succeed for
//! is in the log table exactly once (transfer ids are the client's, the
//! log's primary key), every balance equals what the log says, and no
//! server is left idle in transaction.
//!
//! A fixed number of transfers by default; `SQLMUX_MONEY_SECS=60` runs
//! the clients for that many seconds instead.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlmux::Proxy;
use sqlmux_tests::shared_pg;
use tokio::task::JoinHandle;

use super::util::{Db, guard, start};
use crate::common::{eventually, fresh_db, sqlstate};

pub(super) const CLIENTS: u64 = 32;
const TRANSFERS: u64 = 25;
pub(super) const ACCOUNTS: i64 = 20;
pub(super) const START_BALANCE: i64 = 1000;

/// A tiny xorshift generator (tests need no crypto-grade randomness).
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn seeded(salt: u64) -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        Rng((t ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What a chaos task did: clients it ended, server connections it ended.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) cut: AtomicU64,
    pub(super) terminated: AtomicU64,
}

/// One transfer a client makes: its id (the log's primary key) and what
/// moves where.
pub(super) struct Transfer {
    pub(super) id: i64,
    pub(super) from: i64,
    pub(super) to: i64,
    pub(super) amount: i64,
}

impl Transfer {
    /// The statements of the transfer, opened with `begin`; the lower
    /// account is locked first.
    pub(super) fn steps(&self, begin: &str) -> [String; 6] {
        let Transfer {
            id,
            from,
            to,
            amount,
        } = *self;
        let (lo, hi) = (from.min(to), from.max(to));
        [
            begin.to_owned(),
            format!("INSERT INTO log VALUES ({id}, {from}, {to}, {amount})"),
            format!("SELECT bal FROM acc WHERE id IN ({lo}, {hi}) ORDER BY id FOR UPDATE"),
            format!("UPDATE acc SET bal = bal - {amount} WHERE id = {from}"),
            format!("UPDATE acc SET bal = bal + {amount} WHERE id = {to}"),
            "COMMIT".to_owned(),
        ]
    }
}

/// Client `n`'s transfers: [`TRANSFERS`] of them, or as many as fit
/// before `until`.
pub(super) struct Plan {
    n: u64,
    k: u64,
    rng: Rng,
    until: Option<Instant>,
}

impl Plan {
    pub(super) fn new(n: u64, until: Option<Instant>) -> Plan {
        Plan {
            n,
            k: 0,
            rng: Rng::seeded(n),
            until,
        }
    }

    pub(super) fn next_transfer(&mut self) -> Option<Transfer> {
        if !self
            .until
            .map_or(self.k < TRANSFERS, |t| Instant::now() < t)
        {
            return None;
        }
        let id = (self.n * 1_000_000 + self.k) as i64;
        self.k += 1;
        let from = self.rng.below(ACCOUNTS as u64) as i64;
        let to = (from + 1 + self.rng.below(ACCOUNTS as u64 - 1) as i64) % ACCOUNTS;
        let amount = 1 + self.rng.below(50) as i64;
        Some(Transfer {
            id,
            from,
            to,
            amount,
        })
    }
}

/// `SQLMUX_MONEY_SECS` from now, when it is set.
pub(super) fn deadline() -> Option<Instant> {
    std::env::var("SQLMUX_MONEY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(|s| Instant::now() + Duration::from_secs(s))
}

/// Waits for the clients, then stops the chaos; asserts that the chaos
/// ended both clients and servers. The ids the clients saw committed.
pub(super) async fn finish(
    label: &str,
    clients: Vec<JoinHandle<Vec<i64>>>,
    chaos: JoinHandle<()>,
    stop: &AtomicBool,
    tally: &Tally,
) -> HashSet<i64> {
    let mut committed = HashSet::new();
    for c in clients {
        committed.extend(c.await.expect("client task"));
    }
    stop.store(true, Ordering::Relaxed);
    chaos.await.unwrap();
    let (cut, terminated) = (
        tally.cut.load(Ordering::Relaxed),
        tally.terminated.load(Ordering::Relaxed),
    );
    eprintln!(
        "{label}: {} transfers seen committed, {cut} clients ended, {terminated} servers ended",
        committed.len()
    );
    assert!(cut > 0 && terminated > 0, "the chaos did something");
    committed
}

/// What the chaos task can reach: each client's socket (a clone of it, to
/// shut down), and counts of what it did.
#[derive(Default)]
struct Chaos {
    sockets: Mutex<Vec<Option<std::net::TcpStream>>>,
    tally: Tally,
}

/// Connects through sqlmux over a socket whose clone goes to `chaos`.
async fn connect(
    p: &Proxy,
    db: &str,
    chaos: &Chaos,
    slot: usize,
) -> Option<tokio_postgres::Client> {
    let std = std::net::TcpStream::connect(p.postgres_addr()).ok()?;
    std.set_nonblocking(true).ok()?;
    let clone = std.try_clone().ok()?;
    let tcp = tokio::net::TcpStream::from_std(std).ok()?;
    let mut cfg = tokio_postgres::Config::new();
    cfg.user("postgres").dbname(db);
    let (client, conn) = guard("login", cfg.connect_raw(tcp, tokio_postgres::NoTls))
        .await
        .ok()?;
    tokio::spawn(conn);
    chaos.sockets.lock().unwrap()[slot] = Some(clone);
    Some(client)
}

pub(super) enum Outcome {
    Committed,
    /// The id was already logged: an earlier attempt committed although
    /// its client saw an error.
    AlreadyDone,
    Retry,
}

async fn transfer(c: &tokio_postgres::Client, t: &Transfer) -> Outcome {
    for sql in &t.steps("BEGIN") {
        match guard("transfer step", c.simple_query(sql)).await {
            Ok(_) => {}
            Err(e) if sqlstate(&e) == "23505" => return Outcome::AlreadyDone,
            Err(_) => {
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), c.simple_query("ROLLBACK")).await;
                return Outcome::Retry;
            }
        }
    }
    Outcome::Committed
}

/// One client: its transfers, reconnecting after every cut. Returns the
/// ids whose COMMIT it saw succeed.
async fn client(
    p: Arc<Proxy>,
    db: String,
    chaos: Arc<Chaos>,
    n: u64,
    until: Option<Instant>,
) -> Vec<i64> {
    let mut plan = Plan::new(n, until);
    let mut seen = Vec::new();
    let mut c = None;
    while let Some(t) = plan.next_transfer() {
        loop {
            if c.as_ref()
                .is_none_or(|c: &tokio_postgres::Client| c.is_closed())
            {
                c = connect(&p, &db, &chaos, n as usize).await;
                if c.is_none() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
            match transfer(c.as_ref().unwrap(), &t).await {
                Outcome::Committed => seen.push(t.id),
                Outcome::AlreadyDone => {}
                Outcome::Retry => continue,
            }
            break;
        }
    }
    seen
}

/// Cuts a random client's socket or terminates a random server
/// connection every few milliseconds until `stop`.
async fn chaos_task(
    chaos: Arc<Chaos>,
    direct: tokio_postgres::Client,
    db: String,
    stop: Arc<AtomicBool>,
) {
    let mut rng = Rng::seeded(99);
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(15 + rng.below(30))).await;
        if rng.below(2) == 0 {
            let slot = rng.below(CLIENTS) as usize;
            if let Some(s) = chaos.sockets.lock().unwrap()[slot].take() {
                let _ = s.shutdown(std::net::Shutdown::Both);
                chaos.tally.cut.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            let sql = format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}' \
                 AND pid <> pg_backend_pid() ORDER BY random() LIMIT 1"
            );
            if let Ok(rows) = guard("terminate", direct.simple_query(&sql)).await
                && rows.len() > 1
            {
                chaos.tally.terminated.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

async fn direct_client(db: &str) -> tokio_postgres::Client {
    crate::common::connect_url(&shared_pg().url("postgres", None, db))
        .await
        .expect("direct connection")
}

async fn setup(db: &str) {
    let d = direct_client(db).await;
    d.batch_execute(&format!(
        "CREATE TABLE acc (id int PRIMARY KEY, bal bigint NOT NULL);
         CREATE TABLE log (id bigint PRIMARY KEY, src int NOT NULL, dst int NOT NULL, amount bigint NOT NULL);
         INSERT INTO acc SELECT g, {START_BALANCE} FROM generate_series(0, {}) g;",
        ACCOUNTS - 1
    ))
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn money_moved_under_chaos_is_never_lost_nor_doubled_on_postgres() {
    let db = fresh_db(shared_pg(), "flt_money");
    setup(&db).await;
    let pool = "size = 8, checkout_timeout = \"30s\"";
    let p = Arc::new(
        start(
            "",
            &[Db {
                name: &db,
                protocol: "postgres",
                port: shared_pg().port(),
                pool,
            }],
        )
        .await,
    );
    let chaos = Arc::new(Chaos::default());
    chaos
        .sockets
        .lock()
        .unwrap()
        .resize_with(CLIENTS as usize, || None);
    let until = deadline();
    let stop = Arc::new(AtomicBool::new(false));
    let chaos_run = tokio::spawn(chaos_task(
        chaos.clone(),
        direct_client(&db).await,
        db.clone(),
        stop.clone(),
    ));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| tokio::spawn(client(p.clone(), db.clone(), chaos.clone(), n, until)))
        .collect();
    let committed = finish("money", clients, chaos_run, &stop, &chaos.tally).await;
    // A connection opened after the chaos, so the chaos never ended it.
    check_books(&direct_client(&db).await, &db, &committed).await;
    p.shutdown_now().await;
}

/// The books balance: total unchanged, every seen commit logged, every
/// balance what the log says; no server idle in transaction.
async fn check_books(d: &tokio_postgres::Client, db: &str, committed: &HashSet<i64>) {
    let total: i64 = d
        .query_one("SELECT sum(bal)::int8 FROM acc", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        total,
        ACCOUNTS * START_BALANCE,
        "money appeared or vanished"
    );
    let logged: HashSet<i64> = d
        .query("SELECT id FROM log", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let missing: Vec<_> = committed.difference(&logged).collect();
    assert!(missing.is_empty(), "committed but not logged: {missing:?}");
    let wrong: i64 = d
        .query_one(
            "SELECT count(*) FROM acc a WHERE a.bal <> 1000 \
             - coalesce((SELECT sum(amount) FROM log WHERE src = a.id), 0) \
             + coalesce((SELECT sum(amount) FROM log WHERE dst = a.id), 0)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(wrong, 0, "balances that disagree with the log");
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND state LIKE 'idle in transaction%'"
    );
    eventually(
        Duration::from_secs(30),
        "no server idle in transaction",
        async || d.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0) == 0,
    )
    .await;
}
