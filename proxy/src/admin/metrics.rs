//! `GET /metrics`: Prometheus text exposition, every name prefixed
//! `sqlmux_`.
//!
//! Nothing is recorded on the hot path for this: at scrape time the values
//! are read from our own aggregates (pool counts and counters, the client
//! registry, insight) and set as absolute values on a per-proxy
//! [`PrometheusRecorder`] (never installed as the global recorder, so
//! several proxies can live in one process), which renders them. The
//! latency histograms (checkout wait, transaction duration, statement
//! duration for the top fingerprints) are cumulative buckets that insight
//! already keeps; they are written as Prometheus histogram families after
//! the recorder's output.
//!
//! Counters stay monotonic when RELOAD replaces a pool: the last totals of
//! the old pool are carried into the new one's series. Gauges of pools that
//! are gone disappear after [`GAUGE_IDLE`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Key, Label, Level, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use metrics_util::MetricKindMask;

use super::AdminState;
use crate::Shared;
use crate::client::{ClientState, PinReason};
use crate::insight::{Buckets, LATENCY_BUCKETS};
use crate::stats::{STAT_COUNT, Stat};

/// Gauges not set for this long (their pool is gone) are dropped.
pub const GAUGE_IDLE: Duration = Duration::from_secs(300);

/// Fingerprints whose statement latency is exported as a histogram.
pub const TOP_STATEMENTS: usize = 20;

/// Fingerprints whose N+1 burst count is exported separately.
pub const TOP_N_PLUS_ONE: usize = 50;

/// How often [`PrometheusHandle::run_upkeep`] runs.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static META: Metadata<'static> = Metadata::new("sqlmux::admin", Level::INFO, None);

/// Pool counters exported as Prometheus counters: (stat, name, help).
const COUNTERS: [(Stat, &str, &str); STAT_COUNT] = [
    (
        Stat::ServerAssignments,
        "sqlmux_server_assignments_total",
        "Times a server was lent to a client.",
    ),
    (
        Stat::Xacts,
        "sqlmux_transactions_total",
        "Transactions completed.",
    ),
    (
        Stat::Queries,
        "sqlmux_queries_total",
        "Queries completed (simple Query messages and extended-protocol Sync batches).",
    ),
    (
        Stat::BytesReceived,
        "sqlmux_client_received_bytes_total",
        "Bytes received from clients.",
    ),
    (
        Stat::BytesSent,
        "sqlmux_client_sent_bytes_total",
        "Bytes sent to clients.",
    ),
    (
        Stat::XactTimeUs,
        "sqlmux_transaction_time_microseconds_total",
        "Microseconds spent in transactions (lease held).",
    ),
    (
        Stat::QueryTimeUs,
        "sqlmux_query_time_microseconds_total",
        "Microseconds spent running queries.",
    ),
    (
        Stat::WaitTimeUs,
        "sqlmux_wait_time_microseconds_total",
        "Microseconds clients spent waiting for a server.",
    ),
    (
        Stat::ClientParses,
        "sqlmux_client_parses_total",
        "Parse messages of named statements from clients.",
    ),
    (
        Stat::ServerParses,
        "sqlmux_server_parses_total",
        "Parse messages sent to servers.",
    ),
    (Stat::Binds, "sqlmux_binds_total", "Bind messages."),
    (
        Stat::ClientLogins,
        "sqlmux_client_logins_total",
        "Client logins.",
    ),
    (
        Stat::Errors,
        "sqlmux_server_errors_total",
        "Statements the server answered with an error.",
    ),
];

const GAUGES: &[(&str, &str)] = &[
    (
        "sqlmux_info",
        "Always 1; the version label names the build.",
    ),
    (
        "sqlmux_start_time_seconds",
        "When the proxy started (Unix seconds).",
    ),
    (
        "sqlmux_draining",
        "1 while a graceful shutdown is draining.",
    ),
    (
        "sqlmux_paused",
        "1 while the whole proxy is paused (PAUSE).",
    ),
    ("sqlmux_client_connections", "Connected clients."),
    (
        "sqlmux_clients",
        "Clients by database, user and state (login, idle, waiting, active).",
    ),
    (
        "sqlmux_servers",
        "Server connections by pool and state (active, idle, login).",
    ),
    (
        "sqlmux_pool_size",
        "Maximum server connections of the pool.",
    ),
    (
        "sqlmux_pool_waiting_clients",
        "Clients waiting for a server.",
    ),
    (
        "sqlmux_pool_max_wait_seconds",
        "Age of the oldest waiting client.",
    ),
    ("sqlmux_pool_paused", "1 while the pool is paused."),
    (
        "sqlmux_pinned_clients",
        "Clients holding their server beyond a transaction, by reason.",
    ),
    (
        "sqlmux_leaked_transactions_open",
        "Leaked transactions still open.",
    ),
];

/// Per-proxy exporter state.
pub(crate) struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    carry: Mutex<HashMap<(String, String), Carry>>,
    /// Gauge keys set by the last scrape; held for the whole scrape, so
    /// scrapes run one at a time.
    last_gauges: Mutex<HashSet<Key>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Keeps a (database, user) counter series monotonic across pools.
struct Carry {
    /// Identity of the pool seen last.
    pool: usize,
    /// Its totals at the last scrape.
    last: [u64; STAT_COUNT],
    /// Totals of the pools it replaced.
    base: [u64; STAT_COUNT],
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let recorder = PrometheusBuilder::new()
            .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE))
            .build_recorder();
        for (_, name, help) in COUNTERS {
            recorder.describe_counter(name.into(), None, SharedString::const_str(help));
        }
        recorder.describe_counter(
            "sqlmux_n_plus_one_bursts_total".into(),
            None,
            "N+1 query bursts detected.".into(),
        );
        recorder.describe_counter(
            "sqlmux_n_plus_one_bursts_by_fingerprint_total".into(),
            None,
            "N+1 query bursts detected, for the fingerprints with the most bursts.".into(),
        );
        recorder.describe_counter(
            "sqlmux_leaked_transactions_total".into(),
            None,
            "Transactions left open and idle past insight.leaked_transaction.idle.".into(),
        );
        for (name, help) in GAUGES {
            recorder.describe_gauge((*name).into(), None, SharedString::const_str(help));
        }
        let handle = recorder.handle();
        Metrics {
            recorder,
            handle,
            carry: Mutex::new(HashMap::new()),
            last_gauges: Mutex::new(HashSet::new()),
        }
    }

    /// Drains histogram samples and expires idle series (on a timer).
    pub(crate) fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// Sets a gauge and notes its key in `seen`.
    fn gauge(
        &self,
        seen: &mut HashSet<Key>,
        name: &'static str,
        labels: &[(&'static str, &str)],
        v: f64,
    ) {
        let k = key(name, labels);
        self.recorder.register_gauge(&k, &META).set(v);
        seen.insert(k);
    }

    /// Gauges set by the previous scrape but not by this one (a pool or a
    /// (database, user) of clients is gone) drop to 0 once; untouched
    /// afterwards, they expire after [`GAUGE_IDLE`].
    fn zero_stale(&self, last: &mut HashSet<Key>, seen: HashSet<Key>) {
        for k in last.difference(&seen) {
            self.recorder.register_gauge(k, &META).set(0.0);
        }
        *last = seen;
    }

    fn counter(&self, name: &'static str, labels: &[(&'static str, &str)], v: u64) {
        self.recorder
            .register_counter(&key(name, labels), &META)
            .absolute(v);
    }

    /// A pool's totals plus those of the pools it replaced.
    fn monotonic(
        &self,
        db: &str,
        user: &str,
        pool: usize,
        cur: [u64; STAT_COUNT],
    ) -> [u64; STAT_COUNT] {
        let mut carry = self.carry.lock().unwrap_or_else(|e| e.into_inner());
        let c = carry
            .entry((db.to_owned(), user.to_owned()))
            .or_insert(Carry {
                pool,
                last: [0; STAT_COUNT],
                base: [0; STAT_COUNT],
            });
        let replaced = c.pool != pool || cur.iter().zip(c.last.iter()).any(|(n, o)| n < o);
        if replaced {
            for (b, l) in c.base.iter_mut().zip(c.last) {
                *b = b.saturating_add(l);
            }
            c.pool = pool;
        }
        c.last = cur;
        let mut out = cur;
        for (o, b) in out.iter_mut().zip(c.base) {
            *o = o.saturating_add(b);
        }
        out
    }
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    Key::from_parts(
        name,
        labels
            .iter()
            .map(|(k, v)| Label::new(*k, (*v).to_owned()))
            .collect::<Vec<_>>(),
    )
}

const CLIENT_STATES: [ClientState; 4] = [
    ClientState::Login,
    ClientState::Idle,
    ClientState::Waiting,
    ClientState::Active,
];

const PIN_REASONS: [PinReason; 9] = [
    PinReason::SessionMode,
    PinReason::Listen,
    PinReason::AdvisoryLock,
    PinReason::TempTable,
    PinReason::SqlPrepare,
    PinReason::HoldCursor,
    PinReason::UserVariable,
    PinReason::TableLock,
    PinReason::Other,
];

/// Renders the whole exposition.
pub fn render(shared: &Shared, admin: &AdminState) -> String {
    let m = &admin.metrics;
    let mut last = m.last_gauges.lock().unwrap_or_else(|e| e.into_inner());
    let mut seen = HashSet::new();
    let cfg = shared.config.load();
    let version = env!("CARGO_PKG_VERSION");
    m.gauge(&mut seen, "sqlmux_info", &[("version", version)], 1.0);
    m.gauge(
        &mut seen,
        "sqlmux_start_time_seconds",
        &[],
        shared
            .started
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0),
    );
    m.gauge(
        &mut seen,
        "sqlmux_draining",
        &[],
        shared.drain.is_cancelled() as u8 as f64,
    );
    m.gauge(
        &mut seen,
        "sqlmux_paused",
        &[],
        shared.pools.all_paused() as u8 as f64,
    );

    // Clients by (database, user, state) and pins by pool.
    let clients = shared.clients.all();
    m.gauge(
        &mut seen,
        "sqlmux_client_connections",
        &[],
        clients.len() as f64,
    );
    let mut by_state: BTreeMap<(String, String), [usize; 4]> = BTreeMap::new();
    let mut pins: HashMap<(String, String), [usize; PIN_REASONS.len()]> = HashMap::new();
    for c in &clients {
        // Names of clients still logging in are not authenticated yet.
        let (db, user) = match c.state() {
            ClientState::Login => (String::new(), String::new()),
            _ => (c.database(), c.user()),
        };
        let pin = c.pin();
        if pin != PinReason::None {
            let pool_user = super::show::pool_user(&cfg, &db, &user);
            let i = PIN_REASONS
                .iter()
                .position(|r| *r == pin)
                .unwrap_or(PIN_REASONS.len() - 1);
            pins.entry((db.clone(), pool_user)).or_default()[i] += 1;
        }
        by_state.entry((db, user)).or_default()[c.state() as usize] += 1;
    }
    for ((db, user), counts) in &by_state {
        for (st, n) in CLIENT_STATES.iter().zip(counts) {
            m.gauge(
                &mut seen,
                "sqlmux_clients",
                &[("database", db), ("user", user), ("state", st.as_str())],
                *n as f64,
            );
        }
    }

    // Pools.
    for e in shared.pools.all() {
        let (db, user) = (&*e.key().database, &*e.key().user);
        let protocol = e.protocol.as_str();
        let l = [("database", db), ("user", user), ("protocol", protocol)];
        let c = e.counts();
        for (state, n) in [
            ("active", c.active),
            ("idle", c.idle),
            ("login", c.connecting),
        ] {
            m.gauge(
                &mut seen,
                "sqlmux_servers",
                &[
                    ("database", db),
                    ("user", user),
                    ("protocol", protocol),
                    ("state", state),
                ],
                n as f64,
            );
        }
        m.gauge(&mut seen, "sqlmux_pool_size", &l, c.size as f64);
        m.gauge(
            &mut seen,
            "sqlmux_pool_waiting_clients",
            &l,
            c.waiting as f64,
        );
        m.gauge(
            &mut seen,
            "sqlmux_pool_max_wait_seconds",
            &l,
            c.max_wait.as_secs_f64(),
        );
        m.gauge(&mut seen, "sqlmux_pool_paused", &l, c.paused as u8 as f64);
        let p = pins
            .get(&(db.to_owned(), user.to_owned()))
            .copied()
            .unwrap_or_default();
        for (r, n) in PIN_REASONS.iter().zip(p) {
            m.gauge(
                &mut seen,
                "sqlmux_pinned_clients",
                &[("database", db), ("user", user), ("reason", r.as_str())],
                n as f64,
            );
        }
        let identity = Arc::as_ptr(&e) as *const () as usize;
        let totals = m.monotonic(db, user, identity, e.stats().totals());
        for (stat, name, _) in COUNTERS {
            m.counter(name, &l, totals[stat as usize]);
        }
    }

    // Insight.
    let ins = &shared.insight;
    m.counter(
        "sqlmux_n_plus_one_bursts_total",
        &[],
        ins.n_plus_one_total(),
    );
    for (fp, n) in ins
        .n_plus_one_by_fingerprint()
        .into_iter()
        .take(TOP_N_PLUS_ONE)
    {
        m.counter(
            "sqlmux_n_plus_one_bursts_by_fingerprint_total",
            &[("fingerprint", &fp.to_string())],
            n,
        );
    }
    m.counter("sqlmux_leaked_transactions_total", &[], ins.leaks_total());
    m.gauge(
        &mut seen,
        "sqlmux_leaked_transactions_open",
        &[],
        ins.open_leaks() as f64,
    );

    m.zero_stale(&mut last, seen);
    drop(last);
    let mut out = m.handle.render();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    let lat = ins.pool_latencies();
    write_histograms(
        &mut out,
        "sqlmux_checkout_wait_seconds",
        "Time clients waited for a server (checkout).",
        lat.iter().map(|l| {
            (
                vec![("database", l.database.as_str()), ("user", l.user.as_str())],
                &l.checkout_wait,
            )
        }),
    );
    write_histograms(
        &mut out,
        "sqlmux_transaction_duration_seconds",
        "Time transactions held their server.",
        lat.iter().map(|l| {
            (
                vec![("database", l.database.as_str()), ("user", l.user.as_str())],
                &l.transaction,
            )
        }),
    );
    let top = ins.top_statements_buckets(TOP_STATEMENTS);
    let fps: Vec<String> = top.iter().map(|s| s.fingerprint.to_string()).collect();
    write_histograms(
        &mut out,
        "sqlmux_statement_duration_seconds",
        "Statement latency in the server, for the fingerprints with the most total time.",
        top.iter().zip(&fps).map(|(s, fp)| {
            (
                vec![
                    ("fingerprint", fp.as_str()),
                    ("database", s.database.as_str()),
                    ("user", s.user.as_str()),
                ],
                &s.latency,
            )
        }),
    );
    out
}

/// Escapes a label value for the text format.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels_text(labels: &[(&str, &str)], le: Option<&str>) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{k}=\"{}\"", escape(v));
    }
    if let Some(le) = le {
        if !labels.is_empty() {
            s.push(',');
        }
        let _ = write!(s, "le=\"{le}\"");
    }
    s.push('}');
    s
}

/// Writes one histogram family from cumulative buckets (µs sums).
fn write_histograms<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    series: impl Iterator<Item = (Vec<(&'a str, &'a str)>, &'a Buckets)>,
) {
    let mut header = false;
    for (labels, b) in series {
        if !header {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} histogram");
            header = true;
        }
        for (le, v) in Buckets::le_labels().iter().zip(b.cumulative.iter()) {
            let _ = writeln!(out, "{name}_bucket{} {v}", labels_text(&labels, Some(le)));
        }
        debug_assert_eq!(b.cumulative.len(), LATENCY_BUCKETS);
        let l = labels_text(&labels, None);
        let _ = writeln!(out, "{name}_sum{l} {}", b.sum_us as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{l} {}", b.count);
    }
    if header {
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_families_are_prometheus_text() {
        let b = Buckets {
            cumulative: [1; LATENCY_BUCKETS],
            count: 1,
            sum_us: 250,
        };
        let mut out = String::new();
        write_histograms(
            &mut out,
            "sqlmux_x_seconds",
            "help",
            std::iter::once((vec![("database", "a\"b")], &b)),
        );
        assert!(
            out.starts_with("# HELP sqlmux_x_seconds help\n# TYPE sqlmux_x_seconds histogram\n")
        );
        assert!(out.contains("sqlmux_x_seconds_bucket{database=\"a\\\"b\",le=\"0.0001\"} 1\n"));
        assert!(out.contains("sqlmux_x_seconds_bucket{database=\"a\\\"b\",le=\"+Inf\"} 1\n"));
        assert!(out.contains("sqlmux_x_seconds_sum{database=\"a\\\"b\"} 0.00025\n"));
        assert!(out.contains("sqlmux_x_seconds_count{database=\"a\\\"b\"} 1\n"));
        let mut empty = String::new();
        write_histograms(&mut empty, "sqlmux_y", "h", std::iter::empty());
        assert!(empty.is_empty());
    }

    #[test]
    fn counters_stay_monotonic_when_a_pool_is_replaced() {
        let m = Metrics::new();
        let mut t = [0u64; STAT_COUNT];
        t[1] = 10;
        assert_eq!(m.monotonic("a", "u", 1, t)[1], 10);
        t[1] = 3; // a new pool at another address
        assert_eq!(m.monotonic("a", "u", 2, t)[1], 13);
        t[1] = 5;
        assert_eq!(m.monotonic("a", "u", 2, t)[1], 15);
    }
}
