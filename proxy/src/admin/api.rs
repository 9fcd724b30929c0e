//! The JSON API behind the web page: `GET /api/pools`, `/api/statements`,
//! `/api/statements/{fingerprint}`, `/api/n_plus_one`, `/api/leaks`.
//!
//! Every answer is built from the same snapshot functions as the console's
//! SHOW commands ([`super::show`], [`super::insight`]): their tables are
//! turned into JSON objects whose keys are the SHOW column names, so the
//! console and the API never disagree. A few fields are added on top:
//! `protocol` on every row (from the database's configuration), checkout
//! wait percentiles on pools, and the histogram of one statement.
//!
//! Everything here only reads; there is no state-changing endpoint.

use serde_json::{Map, Value, json};

use super::AdminState;
use super::http::Reply;
use super::insight::{self as show_insight, parse_fingerprint};
use super::table::{Cell, Table};
use crate::Shared;
use crate::config::Config;
use crate::insight::{Buckets, LATENCY_BOUNDS_US};

/// A JSON object: one row.
pub type Row = Map<String, Value>;

/// Answers a path under `/api/`; `None` when the path is not an API path.
pub fn route(shared: &Shared, _admin: &AdminState, path: &str) -> Option<Reply> {
    let rest = path.strip_prefix("/api/")?;
    let rest = rest.trim_end_matches('/');
    Some(match rest {
        "pools" => list(pools(shared)),
        "statements" => list(statements(shared)),
        "n_plus_one" => list(n_plus_one(shared)),
        "leaks" => list(leaks(shared)),
        _ => match rest.strip_prefix("statements/") {
            Some(fp) => statement(shared, fp),
            None => Reply::json(
                404,
                &json!({"error": "unknown API path; try /api/pools, /api/statements, /api/statements/{fingerprint}, /api/n_plus_one or /api/leaks"}),
            ),
        },
    })
}

/// A 200 reply with a JSON array of rows.
fn list(rows: Vec<Row>) -> Reply {
    Reply::json(200, &array(rows))
}

fn array(rows: Vec<Row>) -> Value {
    Value::Array(rows.into_iter().map(Value::Object).collect())
}

/// A cell as JSON: numbers stay numbers (the console's fixed-decimal
/// `numeric` cells become JSON numbers).
fn cell_value(cell: Cell) -> Value {
    match cell {
        Cell::Null => Value::Null,
        Cell::Text(s) => Value::String(s),
        Cell::Int(v) => Value::from(v),
        Cell::Num(s) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or(Value::String(s)),
        Cell::Bool(b) => Value::Bool(b),
    }
}

/// One JSON object per row, keyed by column name.
pub fn objects(table: Table) -> Vec<Row> {
    let names: Vec<String> = table.columns.into_iter().map(|(n, _)| n).collect();
    table
        .rows
        .into_iter()
        .map(|row| {
            names
                .iter()
                .cloned()
                .zip(row.into_iter().map(cell_value))
                .collect()
        })
        .collect()
}

/// The protocol of the database a row names, from the configuration.
fn protocol_of(cfg: &Config, database: Option<&Value>) -> Value {
    database
        .and_then(Value::as_str)
        .and_then(|name| cfg.database(name))
        .map(|d| Value::from(d.protocol.as_str()))
        .unwrap_or(Value::Null)
}

/// Adds `protocol` to rows that have a `database` field.
fn with_protocol(cfg: &Config, mut rows: Vec<Row>) -> Vec<Row> {
    for r in &mut rows {
        if !r.contains_key("protocol") {
            let p = protocol_of(cfg, r.get("database"));
            r.insert("protocol".into(), p);
        }
    }
    rows
}

/// The upper bound (ms) of the bucket holding the `q` quantile, `None`
/// without samples or beyond the last bound.
pub fn bucket_quantile_ms(b: &Buckets, q: f64) -> Option<f64> {
    if b.count == 0 {
        return None;
    }
    let rank = ((q * b.count as f64).ceil() as u64).max(1);
    let i = b.cumulative.iter().position(|&c| c >= rank)?;
    LATENCY_BOUNDS_US.get(i).map(|&us| us as f64 / 1000.0)
}

/// `/api/pools`: SHOW POOLS rows plus checkout-wait numbers (`checkouts`,
/// `checkout_wait_mean_ms`, and `checkout_wait_p50_ms` / `_p95_ms` /
/// `_p99_ms`, each the upper bound of the histogram bucket it falls in).
pub fn pools(shared: &Shared) -> Vec<Row> {
    let latencies = shared.insight.pool_latencies();
    let mut rows = objects(super::show::pools(shared));
    for r in &mut rows {
        let (db, user) = (r.get("database").cloned(), r.get("user").cloned());
        let mut merged = Buckets::default();
        let exact: Vec<_> = latencies
            .iter()
            .filter(|l| Some(&Value::from(l.database.as_str())) == db.as_ref())
            .filter(|l| Some(&Value::from(l.user.as_str())) == user.as_ref())
            .collect();
        for l in exact {
            merge(&mut merged, &l.checkout_wait);
        }
        let mean = (merged.count > 0).then(|| merged.sum_us as f64 / merged.count as f64 / 1e3);
        r.insert("checkouts".into(), Value::from(merged.count));
        r.insert("checkout_wait_mean_ms".into(), json!(mean));
        for (name, q) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)] {
            let v = bucket_quantile_ms(&merged, q);
            r.insert(format!("checkout_wait_{name}_ms"), json!(v));
        }
    }
    rows
}

fn merge(into: &mut Buckets, b: &Buckets) {
    for (a, v) in into.cumulative.iter_mut().zip(b.cumulative) {
        *a = a.saturating_add(v);
    }
    into.count = into.count.saturating_add(b.count);
    into.sum_us = into.sum_us.saturating_add(b.sum_us);
}

/// `/api/statements`: SHOW STATEMENTS rows plus `protocol`.
pub fn statements(shared: &Shared) -> Vec<Row> {
    let cfg = shared.config.load();
    with_protocol(&cfg, objects(show_insight::statements(&shared.insight)))
}

/// `/api/n_plus_one`: SHOW N_PLUS_ONE rows plus `protocol`.
pub fn n_plus_one(shared: &Shared) -> Vec<Row> {
    let cfg = shared.config.load();
    with_protocol(&cfg, objects(show_insight::n_plus_one(&shared.insight)))
}

/// `/api/leaks`: SHOW LEAKS rows plus `protocol`.
pub fn leaks(shared: &Shared) -> Vec<Row> {
    let cfg = shared.config.load();
    with_protocol(&cfg, objects(show_insight::leaks(&shared.insight)))
}

/// `/api/statements/{fingerprint}`: a summary over the statement's rows,
/// its latency histogram (`histogram`: `le_ms`, `count`) and the rows
/// themselves, one per database and user (`by_database_user`).
fn statement(shared: &Shared, fp: &str) -> Reply {
    let Some(parsed) = parse_fingerprint(fp) else {
        let msg =
            format!("{fp:?} is not a fingerprint; give the 16 hex digits /api/statements lists");
        return Reply::json(400, &json!({ "error": msg }));
    };
    let fp = parsed.to_string();
    let hist = match show_insight::histogram(&shared.insight, &fp) {
        Ok(t) => objects(t),
        Err(_) => {
            let msg = format!(
                "fingerprint {fp} is not tracked (never seen, reset, or folded into \"other\")"
            );
            return Reply::json(404, &json!({ "error": msg }));
        }
    };
    let rows: Vec<Row> = statements(shared)
        .into_iter()
        .filter(|r| r.get("fingerprint").and_then(Value::as_str) == Some(fp.as_str()))
        .collect();
    let mut out = summary(&rows);
    out.insert("fingerprint".into(), Value::from(fp));
    out.insert("histogram".into(), array(hist));
    out.insert("by_database_user".into(), array(rows));
    Reply::json(200, &Value::Object(out))
}

/// Totals over a statement's rows: counts and total time add up; mean is
/// total / calls; p50/p95/p99/max are the largest over the rows (exact
/// when the statement ran under one database and user).
fn summary(rows: &[Row]) -> Row {
    let num = |r: &Row, k: &str| r.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    let first = |k: &str| {
        rows.first()
            .and_then(|r| r.get(k))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let mut out = Row::new();
    out.insert("query".into(), first("query"));
    out.insert("protocol".into(), first("protocol"));
    for k in ["calls", "errors", "rows"] {
        let sum: f64 = rows.iter().map(|r| num(r, k)).sum();
        out.insert(k.into(), Value::from(sum as u64));
    }
    let total: f64 = rows.iter().map(|r| num(r, "total_ms")).sum();
    let calls: f64 = rows.iter().map(|r| num(r, "calls")).sum();
    out.insert("total_ms".into(), json!(round3(total)));
    out.insert(
        "mean_ms".into(),
        json!(round3(if calls > 0.0 { total / calls } else { 0.0 })),
    );
    for k in ["p50_ms", "p95_ms", "p99_ms", "max_ms"] {
        let m = rows.iter().map(|r| num(r, k)).fold(0.0, f64::max);
        out.insert(k.into(), json!(m));
    }
    out
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::table::ColType;

    #[test]
    fn tables_become_objects_keyed_by_column_with_numbers_as_numbers() {
        let mut t = Table::new(&[
            ("a", ColType::Text),
            ("n", ColType::Int),
            ("ms", ColType::Num),
            ("x", ColType::Text),
            ("b", ColType::Bool),
        ]);
        t.push(vec![
            Cell::text("q \"1\""),
            Cell::Int(7),
            Cell::Num("1.250".into()),
            Cell::Null,
            Cell::Bool(true),
        ]);
        let rows = objects(t);
        let text = serde_json::to_string(&rows).unwrap();
        assert_eq!(
            text,
            r#"[{"a":"q \"1\"","n":7,"ms":1.25,"x":null,"b":true}]"#
        );
    }

    #[test]
    fn bucket_quantiles_are_the_upper_bound_of_their_bucket() {
        let mut counts = [0u64; crate::insight::LATENCY_BUCKETS];
        counts[0] = 90; // <= 100 us
        counts[4] = 10; // <= 2.5 ms
        let b = Buckets::from_counts(&counts, 100, 0);
        assert_eq!(bucket_quantile_ms(&b, 0.5), Some(0.1));
        assert_eq!(bucket_quantile_ms(&b, 0.9), Some(0.1));
        assert_eq!(bucket_quantile_ms(&b, 0.95), Some(2.5));
        assert_eq!(bucket_quantile_ms(&Buckets::default(), 0.5), None);
    }
}
