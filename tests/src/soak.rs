//! The soak load: many clients on both sqlmux ports doing short
//! transactions (BEGIN, SELECT, COMMIT, each a round trip) with a think
//! time between them, while an operator task RELOADs sqlmux and a sampler
//! records sqlmux's RSS. It counts transactions, the checkout timeouts a
//! small pool gives by design, and every other error (which should be
//! none), and reads sqlmux's checkout-wait p99 from `/metrics` at the end.
//!
//! Used by the suite's short soak test (sqlmux in-process) and by
//! `sqlmux-bench soak` (`scripts/soak.sh`, sqlmux as a process).
//!
//! # Concurrency
//!
//! One tokio task per client; counters are atomics, shared by all.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

/// How long one client call may take before it counts as a hang.
const CALL_GUARD: Duration = Duration::from_secs(120);
/// Errors kept verbatim for the report.
const KEEP_ERRORS: usize = 20;

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// Clients on the PostgreSQL port.
    pub pg_clients: usize,
    /// Clients on the MySQL port.
    pub my_clients: usize,
    /// How long the clients run.
    pub duration: Duration,
    /// tokio-postgres connection string through sqlmux.
    pub pg_url: String,
    /// mysql_async URL through sqlmux.
    pub my_url: String,
    /// sqlmux's admin port, and a console user and password: RELOAD and
    /// `/metrics`.
    pub admin: Option<(SocketAddr, String, String)>,
    /// RELOAD this often (needs `admin`).
    pub reload_every: Option<Duration>,
    /// Process whose RSS is sampled (sqlmux, or the test process).
    pub rss_pid: u32,
    /// Mean pause between a client's transactions.
    pub think: Duration,
}

/// What happened.
#[derive(Debug, Clone, Default)]
pub struct SoakReport {
    /// Transactions committed on the PostgreSQL port.
    pub pg_transactions: u64,
    /// Transactions committed on the MySQL port.
    pub my_transactions: u64,
    /// Transactions refused because the pool stayed full for
    /// `checkout_timeout` (expected under overload).
    pub checkout_timeouts: u64,
    /// Every other error: connect failures, lost connections, hangs,
    /// failed RELOADs. Should be zero.
    pub unexpected: u64,
    /// The first few unexpected errors.
    pub first_errors: Vec<String>,
    /// RELOADs done.
    pub reloads: u64,
    /// (seconds since start, RSS in KiB).
    pub rss_kib: Vec<(u64, u64)>,
    /// sqlmux's checkout wait p99 (upper bucket bound), milliseconds.
    pub checkout_wait_p99_ms: Option<f64>,
}

impl SoakReport {
    /// RSS growth from the end of warm-up (a third of the run) to the
    /// largest later sample, in percent.
    pub fn rss_growth_pct(&self) -> Option<f64> {
        let n = self.rss_kib.len();
        if n < 3 {
            return None;
        }
        let warm = self.rss_kib[n / 3].1 as f64;
        let later = self.rss_kib[n / 3..].iter().map(|s| s.1).max()? as f64;
        Some((later - warm) / warm * 100.0)
    }

    /// A human summary, one fact per line.
    pub fn summary(&self) -> String {
        let rss: Vec<String> = self
            .rss_kib
            .iter()
            .map(|(s, k)| format!("{s}s:{}MiB", k / 1024))
            .collect();
        format!(
            "transactions: postgres {} mysql {}\ncheckout timeouts (by design): {}\nunexpected errors: {}{}\nRELOADs: {}\ncheckout wait p99: {}\nRSS: {}\nRSS growth after warm-up: {}",
            self.pg_transactions,
            self.my_transactions,
            self.checkout_timeouts,
            self.unexpected,
            self.first_errors
                .iter()
                .map(|e| format!("\n  {e}"))
                .collect::<String>(),
            self.reloads,
            self.checkout_wait_p99_ms
                .map_or("n/a".into(), |v| format!("{v} ms")),
            rss.join(" "),
            self.rss_growth_pct()
                .map_or("n/a".into(), |v| format!("{v:.1}%")),
        )
    }
}

#[derive(Default)]
struct Counters {
    pg: AtomicU64,
    my: AtomicU64,
    full: AtomicU64,
    unexpected: AtomicU64,
    reloads: AtomicU64,
    errors: Mutex<Vec<String>>,
}

impl Counters {
    /// Counts an error: a full pool is expected, anything else is not.
    fn error(&self, what: &str, text: String) {
        if text.contains("is full") {
            self.full.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.unexpected.fetch_add(1, Ordering::Relaxed);
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if errors.len() < KEEP_ERRORS {
            errors.push(format!("{what}: {text}"));
        }
    }
}

/// Runs the load and returns the report.
pub async fn run(opts: SoakOptions) -> SoakReport {
    let c = Arc::new(Counters::default());
    let start = Instant::now();
    let end = start + opts.duration;
    // Clients log in spread over the first sixth of the run (at most 5 s).
    let ramp = (opts.duration / 6).min(Duration::from_secs(5));
    let total = (opts.pg_clients + opts.my_clients).max(1) as u32;
    let mut tasks = Vec::new();
    for i in 0..opts.pg_clients + opts.my_clients {
        let at = start + ramp * i as u32 / total;
        let (c, o) = (c.clone(), opts.clone());
        let pg = i < opts.pg_clients;
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            if pg {
                pg_client(&o, &c, end, i as u64).await;
            } else {
                my_client(&o, &c, end, i as u64).await;
            }
        }));
    }
    let sampler = tokio::spawn(sample_rss(opts.rss_pid, start, end));
    let operator = tokio::spawn(reload_loop(opts.clone(), c.clone(), end));
    for t in tasks {
        let _ = t.await;
    }
    let rss_kib = sampler.await.unwrap_or_default();
    let _ = operator.await;
    let p99 = match &opts.admin {
        Some((addr, _, _)) => checkout_wait_p99_ms(*addr).await,
        None => None,
    };
    let errors = c.errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
    SoakReport {
        pg_transactions: c.pg.load(Ordering::Relaxed),
        my_transactions: c.my.load(Ordering::Relaxed),
        checkout_timeouts: c.full.load(Ordering::Relaxed),
        unexpected: c.unexpected.load(Ordering::Relaxed),
        first_errors: errors,
        reloads: c.reloads.load(Ordering::Relaxed),
        rss_kib,
        checkout_wait_p99_ms: p99,
    }
}

/// A pause around `think` (0.5x to 1.5x), varied per client and round.
fn think(opts: &SoakOptions, seed: &mut u64) -> Duration {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    opts.think / 2 + opts.think * (*seed % 1000) as u32 / 1000
}

async fn guarded<T, E: std::error::Error>(
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(CALL_GUARD, f).await {
        Ok(r) => r.map_err(|e| chain(&e)),
        Err(_) => Err(format!("no answer within {CALL_GUARD:?} (a hang)")),
    }
}

/// An error with its sources (tokio-postgres says only "db error" and
/// keeps the server's message in the source).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

async fn pg_client(o: &SoakOptions, c: &Counters, end: Instant, id: u64) {
    let mut seed = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut client: Option<tokio_postgres::Client> = None;
    while Instant::now() < end {
        let cl = match client.as_ref().filter(|cl| !cl.is_closed()) {
            Some(cl) => cl,
            None => {
                match guarded(tokio_postgres::connect(&o.pg_url, tokio_postgres::NoTls)).await {
                    Ok((cl, conn)) => {
                        tokio::spawn(conn);
                        client.insert(cl)
                    }
                    Err(e) => {
                        c.error("postgres connect", e);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
        };
        let mut ok = true;
        for sql in ["BEGIN", "SELECT 1", "COMMIT"] {
            if let Err(e) = guarded(cl.simple_query(sql)).await {
                c.error("postgres transaction", e);
                let _ = guarded(cl.simple_query("ROLLBACK")).await;
                ok = false;
                break;
            }
        }
        if ok {
            c.pg.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(think(o, &mut seed)).await;
    }
}

async fn my_client(o: &SoakOptions, c: &Counters, end: Instant, id: u64) {
    let mut seed = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let Ok(opts) = mysql_async::Opts::from_url(&o.my_url) else {
        c.error("mysql url", o.my_url.clone());
        return;
    };
    let mut conn: Option<mysql_async::Conn> = None;
    while Instant::now() < end {
        let cl = match conn.as_mut() {
            Some(cl) => cl,
            None => match guarded(mysql_async::Conn::new(opts.clone())).await {
                Ok(cl) => conn.insert(cl),
                Err(e) => {
                    c.error("mysql connect", e);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        let mut ok = true;
        for sql in ["START TRANSACTION", "SELECT 1", "COMMIT"] {
            if let Err(e) = guarded(cl.query_drop(sql)).await {
                c.error("mysql transaction", e);
                ok = false;
                break;
            }
        }
        if ok {
            c.my.fetch_add(1, Ordering::Relaxed);
        } else {
            // After an error the connection's state is unknown: a new one.
            conn = None;
        }
        tokio::time::sleep(think(o, &mut seed)).await;
    }
    if let Some(cl) = conn {
        let _ = tokio::time::timeout(Duration::from_secs(5), cl.disconnect()).await;
    }
}

/// RELOAD every `reload_every` until `end`.
async fn reload_loop(o: SoakOptions, c: Arc<Counters>, end: Instant) {
    let (Some((addr, user, password)), Some(every)) = (o.admin.clone(), o.reload_every) else {
        return;
    };
    let url = format!(
        "host={} port={} user={user} password={password} dbname=sqlmux connect_timeout=10",
        addr.ip(),
        addr.port()
    );
    let admin = match guarded(tokio_postgres::connect(&url, tokio_postgres::NoTls)).await {
        Ok((cl, conn)) => {
            tokio::spawn(conn);
            cl
        }
        Err(e) => return c.error("admin connect", e),
    };
    while Instant::now() + every < end {
        tokio::time::sleep(every).await;
        match guarded(admin.simple_query("RELOAD")).await {
            Ok(_) => {
                c.reloads.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => c.error("RELOAD", e),
        }
    }
}

/// Samples `/proc/<pid>/status` VmRSS every 2 s (or a tenth of the run).
async fn sample_rss(pid: u32, start: Instant, end: Instant) -> Vec<(u64, u64)> {
    let every = ((end - start) / 10).clamp(Duration::from_millis(500), Duration::from_secs(10));
    let mut out = Vec::new();
    loop {
        tokio::time::sleep(every).await;
        if Instant::now() > end {
            // The clients are leaving: not a sample of the load.
            break;
        }
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kib = text
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
        if let Some(kib) = kib {
            out.push((start.elapsed().as_secs(), kib));
        }
    }
    out
}

/// p99 of `sqlmux_checkout_wait_seconds` over all pools, from `/metrics`.
async fn checkout_wait_p99_ms(admin: SocketAddr) -> Option<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(admin).await.ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: sqlmux\r\n\r\n")
        .await
        .ok()?;
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_string(&mut body))
        .await
        .ok()?
        .ok()?;
    p99_from_buckets(&body, "sqlmux_checkout_wait_seconds_bucket").map(|s| s * 1000.0)
}

/// The smallest `le` whose cumulative count (summed over every label set)
/// reaches 99 % of the total, from Prometheus text.
pub fn p99_from_buckets(text: &str, name: &str) -> Option<f64> {
    let mut by_le: Vec<(f64, f64)> = Vec::new();
    for line in text.lines().filter(|l| l.starts_with(name)) {
        let le = line.split("le=\"").nth(1)?.split('"').next()?;
        let le: f64 = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().ok()?
        };
        let count: f64 = line.rsplit(' ').next()?.parse().ok()?;
        match by_le.iter_mut().find(|(l, _)| *l == le) {
            Some(e) => e.1 += count,
            None => by_le.push((le, count)),
        }
    }
    by_le.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = by_le.last()?.1;
    if total == 0.0 {
        return None;
    }
    by_le
        .iter()
        .find(|(_, c)| *c >= total * 0.99)
        .map(|(le, _)| *le)
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the new soft
/// limit. Thousands of clients need thousands of descriptors.
pub fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
            return lim.rlim_cur;
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_is_the_first_bucket_holding_99_percent_over_all_pools() {
        let text = "\
sqlmux_checkout_wait_seconds_bucket{database=\"a\",le=\"0.001\"} 90
sqlmux_checkout_wait_seconds_bucket{database=\"a\",le=\"0.01\"} 95
sqlmux_checkout_wait_seconds_bucket{database=\"a\",le=\"+Inf\"} 100
sqlmux_checkout_wait_seconds_bucket{database=\"b\",le=\"0.001\"} 0
sqlmux_checkout_wait_seconds_bucket{database=\"b\",le=\"0.01\"} 99
sqlmux_checkout_wait_seconds_bucket{database=\"b\",le=\"+Inf\"} 100
sqlmux_checkout_wait_seconds_count{database=\"b\"} 100
";
        // 200 in all: 0.001 holds 90, 0.01 holds 194 (97 %), +Inf 200.
        let p = p99_from_buckets(text, "sqlmux_checkout_wait_seconds_bucket");
        assert_eq!(p, Some(f64::INFINITY));
        let text = text.replace("} 95", "} 100");
        let p = p99_from_buckets(&text, "sqlmux_checkout_wait_seconds_bucket");
        assert_eq!(p, Some(0.01));
        assert_eq!(p99_from_buckets("", "x_bucket"), None);
    }

    #[test]
    fn errors_carry_their_sources() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("db error")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::other("pool \"a/b\" is full"));
        assert_eq!(chain(&e), "db error: pool \"a/b\" is full");
    }

    #[test]
    fn rss_growth_is_measured_after_warm_up() {
        let r = SoakReport {
            rss_kib: vec![(1, 10), (2, 100), (3, 100), (4, 110), (5, 100), (6, 105)],
            ..SoakReport::default()
        };
        assert_eq!(r.rss_growth_pct(), Some(10.0));
        assert_eq!(SoakReport::default().rss_growth_pct(), None);
    }
}
