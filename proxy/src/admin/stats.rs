//! SHOW STATS: PgBouncer's statistics columns over our pool counters, and
//! the background task that recomputes the averages every
//! `general.stats_period`.
//!
//! Totals are sums of the sharded [`Counters`](crate::stats::Counters) of
//! the pools that exist now (like PgBouncer, a pool that is dropped takes
//! its counts with it). Averages compare two snapshots one period apart:
//! counts and bytes per second, times per item (transaction time per
//! transaction, query time per query, wait time per server assignment), all
//! in microseconds, as PgBouncer's `stats.c` does.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use crate::Shared;
use crate::stats::{STAT_COUNT, Stat};

/// Names of one statistic in each PgBouncer view.
#[derive(Debug, Clone, Copy)]
pub struct StatColumn {
    /// Which counter.
    pub stat: Stat,
    /// SHOW STATS total column.
    pub total: &'static str,
    /// SHOW STATS average column.
    pub avg: &'static str,
    /// SHOW STATS_TOTALS column.
    pub bare_total: &'static str,
    /// SHOW STATS_AVERAGES column.
    pub bare_avg: &'static str,
    /// SHOW TOTALS row name of the total.
    pub total_row: &'static str,
    /// SHOW TOTALS row name of the average.
    pub avg_row: &'static str,
    /// How the average is formed.
    pub kind: AvgKind,
}

/// How an average is computed from two snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvgKind {
    /// Increase per second.
    PerSecond,
    /// Increase divided by the increase of another counter.
    PerItem(Stat),
}

const fn col(stat: Stat, names: [&'static str; 6], kind: AvgKind) -> StatColumn {
    StatColumn {
        stat,
        total: names[0],
        avg: names[1],
        bare_total: names[2],
        bare_avg: names[3],
        total_row: names[4],
        avg_row: names[5],
        kind,
    }
}

/// PgBouncer's twelve statistics in SHOW STATS order.
pub const STAT_COLUMNS: [StatColumn; 12] = [
    col(
        Stat::ServerAssignments,
        [
            "total_server_assignment_count",
            "avg_server_assignment_count",
            "server_assignment_count",
            "server_assignment_count",
            "total_server_assignment_count",
            "avg_server_assignment_count",
        ],
        AvgKind::PerSecond,
    ),
    col(
        Stat::Xacts,
        [
            "total_xact_count",
            "avg_xact_count",
            "xact_count",
            "xact_count",
            "total_xact_count",
            "avg_xact_count",
        ],
        AvgKind::PerSecond,
    ),
    col(
        Stat::Queries,
        [
            "total_query_count",
            "avg_query_count",
            "query_count",
            "query_count",
            "total_query_count",
            "avg_query_count",
        ],
        AvgKind::PerSecond,
    ),
    col(
        Stat::BytesReceived,
        [
            "total_received",
            "avg_recv",
            "bytes_received",
            "bytes_received",
            "total_client_bytes",
            "avg_client_bytes",
        ],
        AvgKind::PerSecond,
    ),
    col(
        Stat::BytesSent,
        [
            "total_sent",
            "avg_sent",
            "bytes_sent",
            "bytes_sent",
            "total_server_bytes",
            "avg_server_bytes",
        ],
        AvgKind::PerSecond,
    ),
    col(
        Stat::XactTimeUs,
        [
            "total_xact_time",
            "avg_xact_time",
            "xact_time",
            "xact_time",
            "total_xact_time",
            "avg_xact_time",
        ],
        AvgKind::PerItem(Stat::Xacts),
    ),
    col(
        Stat::QueryTimeUs,
        [
            "total_query_time",
            "avg_query_time",
            "query_time",
            "query_time",
            "total_query_time",
            "avg_query_time",
        ],
        AvgKind::PerItem(Stat::Queries),
    ),
    col(
        Stat::WaitTimeUs,
        [
            "total_wait_time",
            "avg_wait_time",
            "wait_time",
            "wait_time",
            "total_wait_time",
            "avg_wait_time",
        ],
        AvgKind::PerItem(Stat::ServerAssignments),
    ),
    col(
        Stat::ClientParses,
        [
            "total_client_parse_count",
            "avg_client_parse_count",
            "client_parse_count",
            "avg_client_parse_count",
            "total_ps_client_parse_count",
            "avg_ps_client_parse_count",
        ],
        AvgKind::PerSecond,
    ),
    col(
        Stat::ServerParses,
        [
            "total_server_parse_count",
            "avg_server_parse_count",
            "server_parse_count",
            "avg_server_parse_count",
            "total_ps_server_parse_count",
            "avg_ps_server_parse_count",
        ],
        AvgKind::PerSecond,
    ),
    col(
        Stat::Binds,
        [
            "total_bind_count",
            "avg_bind_count",
            "bind_count",
            "avg_bind_count",
            "total_ps_bind_count",
            "avg_ps_bind_count",
        ],
        AvgKind::PerSecond,
    ),
    col(
        Stat::ClientLogins,
        [
            "total_client_login_count",
            "avg_client_login_count",
            "client_login_count",
            "avg_client_login_count",
            "total_client_login_count",
            "avg_client_login_count",
        ],
        AvgKind::PerSecond,
    ),
];

/// Totals of one database in SHOW STATS order.
#[derive(Debug, Clone, Copy)]
pub struct StatRow<'a>(&'a [u64; STAT_COUNT]);

impl<'a> StatRow<'a> {
    /// Wraps raw counter totals (indexed by [`Stat`]).
    pub fn new(totals: &'a [u64; STAT_COUNT]) -> Self {
        StatRow(totals)
    }

    /// The twelve totals in SHOW STATS order.
    pub fn totals(&self) -> impl Iterator<Item = u64> + '_ {
        STAT_COLUMNS.iter().map(|c| self.0[c.stat as usize])
    }

    /// Server errors (a sqlmux extra column).
    pub fn errors(&self) -> u64 {
        self.0[Stat::Errors as usize]
    }
}

/// The twelve averages of one database, in SHOW STATS order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Averages([u64; 12]);

impl Averages {
    /// Averages between two snapshots `secs` seconds apart. Counters that
    /// went down (a pool was replaced) count as no change.
    pub fn between(old: &[u64; STAT_COUNT], new: &[u64; STAT_COUNT], secs: f64) -> Averages {
        let delta = |s: Stat| new[s as usize].saturating_sub(old[s as usize]);
        let mut out = [0u64; 12];
        for (o, c) in out.iter_mut().zip(STAT_COLUMNS.iter()) {
            let d = delta(c.stat);
            *o = match c.kind {
                AvgKind::PerSecond if secs > 0.0 => (d as f64 / secs).round() as u64,
                AvgKind::PerSecond => 0,
                AvgKind::PerItem(per) => d.checked_div(delta(per)).unwrap_or(0),
            };
        }
        Averages(out)
    }

    /// The values in SHOW STATS order.
    pub fn values(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().copied()
    }
}

/// Averages of the last complete period, per database and over all.
#[derive(Debug, Default)]
pub(crate) struct AverageTable {
    pub(crate) by_database: HashMap<String, Averages>,
    pub(crate) total: Averages,
}

fn sum(m: &BTreeMap<String, [u64; STAT_COUNT]>) -> [u64; STAT_COUNT] {
    let mut out = [0u64; STAT_COUNT];
    for v in m.values() {
        for (a, b) in out.iter_mut().zip(v) {
            *a = a.saturating_add(*b);
        }
    }
    out
}

/// Recomputes the averages every `general.stats_period` (read again each
/// round, so RELOAD changes it) until the proxy stops.
pub(crate) async fn averages_task(shared: Arc<Shared>, admin: Arc<super::AdminState>) {
    let mut prev_at = Instant::now();
    let mut prev = super::show::totals_by_database(&shared);
    loop {
        let period = shared.config.load().general.stats_period;
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shared.hard.cancelled() => return,
        }
        let now = Instant::now();
        let cur = super::show::totals_by_database(&shared);
        let secs = now.duration_since(prev_at).as_secs_f64();
        let zero = [0u64; STAT_COUNT];
        let by_database = cur
            .iter()
            .map(|(db, new)| {
                let old = prev.get(db).unwrap_or(&zero);
                (db.clone(), Averages::between(old, new, secs))
            })
            .collect();
        let total = Averages::between(&sum(&prev), &sum(&cur), secs);
        admin.set_averages(AverageTable { by_database, total });
        prev = cur;
        prev_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twelve_columns_in_pgbouncer_order_make_25_with_database() {
        let names: Vec<&str> = std::iter::once("database")
            .chain(STAT_COLUMNS.iter().map(|c| c.total))
            .chain(STAT_COLUMNS.iter().map(|c| c.avg))
            .collect();
        assert_eq!(names.len(), 25);
        assert_eq!(names[1], "total_server_assignment_count");
        assert_eq!(names[12], "total_client_login_count");
        assert_eq!(names[13], "avg_server_assignment_count");
        assert_eq!(names[16], "avg_recv");
        assert_eq!(names[24], "avg_client_login_count");
    }

    #[test]
    fn averages_are_rates_and_per_item_means() {
        let mut old = [0u64; STAT_COUNT];
        let mut new = [0u64; STAT_COUNT];
        old[Stat::Xacts as usize] = 10;
        new[Stat::Xacts as usize] = 30;
        new[Stat::XactTimeUs as usize] = 2_000;
        new[Stat::ServerAssignments as usize] = 4;
        new[Stat::WaitTimeUs as usize] = 400;
        new[Stat::BytesReceived as usize] = 1_000;
        let a = Averages::between(&old, &new, 2.0);
        let v: Vec<u64> = a.values().collect();
        assert_eq!(v[0], 2, "assignments per second");
        assert_eq!(v[1], 10, "xacts per second");
        assert_eq!(v[3], 500, "bytes received per second");
        assert_eq!(v[5], 100, "µs per transaction");
        assert_eq!(v[6], 0, "no queries");
        assert_eq!(v[7], 100, "µs wait per assignment");
        // A counter that went down (pool replaced) is no change.
        let b = Averages::between(&new, &old, 1.0);
        assert!(b.values().all(|x| x == 0));
    }
}
