//! sqlmux's own console commands over the insight layer: SHOW STATEMENTS,
//! SHOW HISTOGRAM, SHOW N_PLUS_ONE, SHOW LEAKS (RESET STATEMENTS is a
//! control command). Times are milliseconds with microsecond precision.

use super::table::{Cell, ColType, Table, format_time};
use crate::insight::{Fingerprint, Insight};

use ColType::{Bool, Int, Num, Text};

/// SHOW STATEMENTS columns.
pub const STATEMENTS_COLUMNS: &[(&str, ColType)] = &[
    ("fingerprint", Text),
    ("database", Text),
    ("user", Text),
    ("query", Text),
    ("calls", Int),
    ("errors", Int),
    ("rows", Int),
    ("total_ms", Num),
    ("mean_ms", Num),
    ("p50_ms", Num),
    ("p95_ms", Num),
    ("p99_ms", Num),
    ("max_ms", Num),
];

/// SHOW N_PLUS_ONE columns (the contract's nine, then extras).
pub const N_PLUS_ONE_COLUMNS: &[(&str, ColType)] = &[
    ("detected_at", Text),
    ("database", Text),
    ("user", Text),
    ("client_addr", Text),
    ("application_name", Text),
    ("fingerprint", Text),
    ("query", Text),
    ("repeats", Int),
    ("window_ms", Num),
    ("parent_query", Text),
    ("ongoing", Bool),
];

/// SHOW LEAKS columns.
pub const LEAKS_COLUMNS: &[(&str, ColType)] = &[
    ("detected_at", Text),
    ("database", Text),
    ("user", Text),
    ("client_addr", Text),
    ("application_name", Text),
    ("state", Text),
    ("xact_age_s", Num),
    ("idle_s", Num),
    ("last_query", Text),
    ("action", Text),
];

/// SHOW STATEMENTS: one row per (fingerprint, database, user), slowest
/// total first.
pub fn statements(insight: &Insight) -> Table {
    let mut t = Table::new(STATEMENTS_COLUMNS);
    for r in insight.statements() {
        t.push(vec![
            Cell::text(r.fingerprint.to_string()),
            Cell::text(r.database),
            Cell::text(r.user),
            Cell::text(r.query),
            Cell::count(r.calls),
            Cell::count(r.errors),
            Cell::count(r.rows),
            Cell::ms_from_us(r.total_us as f64),
            Cell::ms_from_us(r.mean_us),
            Cell::ms_from_us(r.p50_us as f64),
            Cell::ms_from_us(r.p95_us as f64),
            Cell::ms_from_us(r.p99_us as f64),
            Cell::ms_from_us(r.max_us as f64),
        ]);
    }
    t
}

/// Why SHOW HISTOGRAM failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistogramError {
    /// Not 16 hex digits.
    BadFingerprint(String),
    /// Not tracked (never seen, folded into "other", or reset).
    Unknown(String),
}

/// Parses a fingerprint as SHOW STATEMENTS prints it (16 hex digits).
pub fn parse_fingerprint(s: &str) -> Option<Fingerprint> {
    if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok().map(Fingerprint)
}

/// SHOW HISTOGRAM: non-empty buckets of one fingerprint, merged over
/// databases and users.
pub fn histogram(insight: &Insight, fp: &str) -> Result<Table, HistogramError> {
    let f = parse_fingerprint(fp).ok_or_else(|| HistogramError::BadFingerprint(fp.to_owned()))?;
    let buckets = insight
        .histogram(f)
        .ok_or_else(|| HistogramError::Unknown(fp.to_owned()))?;
    let mut t = Table::new(&[("le_ms", Num), ("count", Int)]);
    for b in buckets {
        t.push(vec![Cell::ms_from_us(b.le_us as f64), Cell::count(b.count)]);
    }
    Ok(t)
}

/// SHOW N_PLUS_ONE: detected bursts, newest first.
pub fn n_plus_one(insight: &Insight) -> Table {
    let mut t = Table::new(N_PLUS_ONE_COLUMNS);
    for e in insight.n_plus_one_events() {
        t.push(vec![
            Cell::text(format_time(e.detected_at)),
            Cell::text(e.database),
            Cell::text(e.user),
            Cell::text(e.client_addr.to_string()),
            Cell::text(e.application_name),
            Cell::text(e.fingerprint.to_string()),
            Cell::text(e.query),
            Cell::count(e.repeats),
            Cell::num3(e.window_ms),
            Cell::opt_text(e.parent_query),
            Cell::Bool(e.ongoing),
        ]);
    }
    t
}

/// SHOW LEAKS: open leaks first, then recent closed ones.
pub fn leaks(insight: &Insight) -> Table {
    let mut t = Table::new(LEAKS_COLUMNS);
    for l in insight.leaks() {
        t.push(vec![
            Cell::text(format_time(l.detected_at)),
            Cell::text(l.database),
            Cell::text(l.user),
            Cell::text(l.client_addr.to_string()),
            Cell::text(l.application_name),
            Cell::text(l.state.as_str()),
            Cell::num3(l.xact_age_s),
            Cell::num3(l.idle_s),
            Cell::opt_text(l.last_query),
            Cell::text(l.action.as_str()),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{InsightConfig, LeakAction};
    use std::time::Duration;

    fn insight() -> std::sync::Arc<Insight> {
        Insight::new(&InsightConfig {
            enabled: true,
            max_statements: 100,
            n_plus_one_threshold: 10,
            n_plus_one_window: Duration::from_secs(1),
            leak_idle: Duration::from_secs(5),
            leak_action: LeakAction::Warn,
        })
    }

    #[test]
    fn statements_show_ms_with_three_decimals() {
        let ins = insight();
        let tag = ins.tag("app", "alice");
        ins.note_text(Fingerprint(0xabc), "select ?");
        ins.record(tag, Fingerprint(0xabc), 1_500, 2, false);
        ins.record(tag, Fingerprint(0xabc), 2_500, 1, true);
        let t = statements(&ins);
        assert_eq!(t.rows.len(), 1);
        let r = &t.rows[0];
        assert_eq!(r[0], Cell::text("0000000000000abc"));
        assert_eq!(r[3], Cell::text("select ?"));
        assert_eq!(r[4], Cell::Int(2));
        assert_eq!(r[5], Cell::Int(1));
        assert_eq!(r[6], Cell::Int(3));
        assert_eq!(r[7], Cell::Num("4.000".into()));
        assert_eq!(r[8], Cell::Num("2.000".into()));
        assert_eq!(r[12], Cell::Num("2.500".into()));
    }

    #[test]
    fn histogram_names_an_unknown_or_malformed_fingerprint() {
        let ins = insight();
        let tag = ins.tag("app", "alice");
        ins.record(tag, Fingerprint(0xabc), 1_500, 1, false);
        let t = histogram(&ins, "0000000000000ABC").unwrap();
        assert_eq!(t.names(), vec!["le_ms", "count"]);
        assert_eq!(
            t.rows.iter().map(|r| r[1].clone()).collect::<Vec<_>>(),
            vec![Cell::Int(1)]
        );
        assert_eq!(
            histogram(&ins, "00000000000000ff").unwrap_err(),
            HistogramError::Unknown("00000000000000ff".into())
        );
        assert_eq!(
            histogram(&ins, "xyz").unwrap_err(),
            HistogramError::BadFingerprint("xyz".into())
        );
    }
}
