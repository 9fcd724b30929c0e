//! The demo's PostgreSQL workload: what a small web application does to
//! its database, including the habits sqlmux is built to expose.
//!
//! - `demo-web`: ordinary traffic (lookups, updates, inserts, a failing
//!   query now and then), every ~180 ms;
//! - `demo-author-page`: an N+1 loop every 5 s: the list of authors, then
//!   the same books lookup once per author, 20 times;
//! - `demo-reports`: a slow statement (`pg_sleep(0.2)`) and a report query
//!   every 2 s;
//! - `demo-checkout`: a transaction left open and idle past the leak
//!   threshold, once a minute (the first one a few seconds after start).
//!
//! Every task connects through sqlmux as user `app` to database `app`,
//! reconnects after errors, and ends when the stop token is cancelled.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::client::PgClient;

/// Authors and books the set-up creates.
pub const AUTHORS: u64 = 50;
const BOOKS: u64 = 1000;

/// The schema and data, run once directly on the server.
pub fn schema_sql() -> String {
    format!(
        "CREATE TABLE authors (id int PRIMARY KEY, name text NOT NULL);
         CREATE TABLE books (id int PRIMARY KEY, author_id int NOT NULL REFERENCES authors, title text NOT NULL, price numeric(8,2) NOT NULL);
         CREATE INDEX books_author ON books (author_id);
         CREATE TABLE orders (id serial PRIMARY KEY, book_id int NOT NULL, qty int NOT NULL, at timestamptz NOT NULL DEFAULT now());
         INSERT INTO authors SELECT i, 'Author ' || i FROM generate_series(1, {AUTHORS}) i;
         INSERT INTO books SELECT i, 1 + i % {AUTHORS}, 'Book ' || i, 5 + (i % 40) FROM generate_series(1, {BOOKS}) i;"
    )
}

/// What the workload did, for the summary.
#[derive(Debug, Default)]
pub struct Counters {
    /// Queries sent.
    pub queries: AtomicU64,
    /// Queries the server answered with an error.
    pub errors: AtomicU64,
}

/// Where and how long the workload runs.
#[derive(Debug, Clone)]
pub struct Target {
    /// sqlmux's PostgreSQL listener.
    pub addr: SocketAddr,
    /// Cancelled to stop every task.
    pub stop: CancellationToken,
    /// Shared counters.
    pub counters: Arc<Counters>,
    /// How long the leaking transaction stays idle.
    pub leak_idle: Duration,
}

/// A tiny xorshift generator: the demo needs variety, not quality.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Rng((t ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Starts every task of the workload.
pub fn spawn(target: &Target) {
    tokio::spawn(ordinary(target.clone()));
    tokio::spawn(n_plus_one(target.clone()));
    tokio::spawn(reports(target.clone()));
    tokio::spawn(leaking_checkout(target.clone()));
}

impl Target {
    /// Sleeps; `false` when the workload was stopped meanwhile.
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.stop.cancelled() => false,
        }
    }

    async fn connect(&self, app: &str) -> Option<PgClient> {
        loop {
            match PgClient::connect(self.addr, "app", "app", app).await {
                Ok(c) => return Some(c),
                Err(e) => {
                    tracing::debug!(error = %e, app, "demo workload: connect failed; retrying")
                }
            }
            if !self.pause(Duration::from_secs(1)).await {
                return None;
            }
        }
    }

    /// Runs `sql`; `false` when the connection is gone.
    async fn run(&self, c: &mut PgClient, sql: &str) -> bool {
        self.counters.queries.fetch_add(1, Ordering::Relaxed);
        match c.query(sql).await {
            Ok(r) => {
                if r.error.is_some() {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                }
                true
            }
            Err(_) => false,
        }
    }

    /// A connection for one run of a task; `None` once stopped.
    async fn session(&self, app: &str) -> Option<PgClient> {
        if self.stop.is_cancelled() {
            return None;
        }
        self.connect(app).await
    }
}

// Each task: steps over one connection until a step says the connection
// is gone (or the workload stops), then reconnects.

async fn ordinary(t: Target) {
    let mut rng = Rng::new(1);
    while let Some(mut c) = t.session("demo-web").await {
        while ordinary_step(&t, &mut c, &mut rng).await {}
        c.close().await;
    }
}

async fn ordinary_step(t: &Target, c: &mut PgClient, rng: &mut Rng) -> bool {
    let id = 1 + rng.below(BOOKS);
    let sql = match rng.below(20) {
        0..=9 => format!("SELECT id, title, price FROM books WHERE id = {id}"),
        10..=13 => format!(
            "SELECT count(*) FROM books WHERE price > {}",
            5 + rng.below(40)
        ),
        14..=16 => format!("UPDATE books SET price = price + 0.01 WHERE id = {id}"),
        17 | 18 => format!(
            "INSERT INTO orders (book_id, qty) VALUES ({id}, {})",
            1 + rng.below(3)
        ),
        _ => format!("SELECT title FROM books WHERE id = 'book-{id}'"),
    };
    // At least 120 ms apart, so ten of the same statement in a row take
    // longer than the N+1 window: ordinary traffic is not a burst.
    let ok = t.run(c, &sql).await;
    ok && t.pause(Duration::from_millis(120 + rng.below(120))).await
}

async fn n_plus_one(t: Target) {
    if !t.pause(Duration::from_millis(500)).await {
        return;
    }
    while let Some(mut c) = t.session("demo-author-page").await {
        while n_plus_one_step(&t, &mut c).await {}
        c.close().await;
    }
}

/// The authors list, then one books lookup per author: the N+1 pattern.
async fn n_plus_one_step(t: &Target, c: &mut PgClient) -> bool {
    if !t
        .run(c, "SELECT id, name FROM authors ORDER BY name LIMIT 20")
        .await
    {
        return false;
    }
    for id in 1..=20 {
        let sql = format!("SELECT title, price FROM books WHERE author_id = {id}");
        if !t.run(c, &sql).await {
            return false;
        }
    }
    t.pause(Duration::from_secs(5)).await
}

async fn reports(t: Target) {
    while let Some(mut c) = t.session("demo-reports").await {
        while reports_step(&t, &mut c).await {}
        c.close().await;
    }
}

async fn reports_step(t: &Target, c: &mut PgClient) -> bool {
    let report = "SELECT a.name, count(*), avg(b.price) FROM authors a JOIN books b ON b.author_id = a.id GROUP BY a.name ORDER BY 2 DESC LIMIT 5";
    t.run(c, "SELECT pg_sleep(0.2)").await
        && t.run(c, report).await
        && t.pause(Duration::from_secs(2)).await
}

async fn leaking_checkout(t: Target) {
    if !t.pause(Duration::from_secs(2)).await {
        return;
    }
    while let Some(mut c) = t.session("demo-checkout").await {
        while leaking_step(&t, &mut c).await {}
        c.close().await;
    }
}

/// A transaction the "application" forgets for a while.
async fn leaking_step(t: &Target, c: &mut PgClient) -> bool {
    let ok = t.run(c, "BEGIN").await
        && t.run(c, "SELECT price FROM books WHERE id = 1 FOR UPDATE")
            .await;
    let idle = ok && t.pause(t.leak_idle).await;
    let ok = t.run(c, if idle { "COMMIT" } else { "ROLLBACK" }).await;
    ok && t.pause(Duration::from_secs(60)).await
}
