//! Fingerprinting the statements pgbench sends (group `fingerprint_pgbench`).
//!
//! `cargo bench -p sqlmux-protocol --bench fingerprint` covers the general
//! cases (40 B point select to a 64 KiB pathological quote); this one
//! measures `sqlmux_protocol::sql::Normalizer::normalize` on exactly the
//! statements the `compare` runner's pgbench load makes sqlmux normalize:
//! the `-S` select in simple (literal) and extended (`$1`) form, and the
//! TPC-B-like script's statements. Each case is measured twice: `normalize`
//! (a statement seen for the first time) and `analyze` (what the session
//! calls: a statement whose shape, i.e. its text up to the numbers, was seen
//! before is answered from memory). The latter is part of the sqlmux CPU/tx
//! figure in the comparison table.
//!
//! Run: `cargo bench -p sqlmux-bench --bench fingerprint_pgbench`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sqlmux_protocol::sql::{Dialect, Normalizer};

const CASES: &[(&str, &str)] = &[
    (
        "select_only_simple",
        "SELECT abalance FROM pgbench_accounts WHERE aid = 483921;",
    ),
    (
        "select_only_extended",
        "SELECT abalance FROM pgbench_accounts WHERE aid = $1;",
    ),
    (
        "tpcb_update_accounts",
        "UPDATE pgbench_accounts SET abalance = abalance + -2412 WHERE aid = 83121;",
    ),
    (
        "tpcb_insert_history",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 83121, -2412, CURRENT_TIMESTAMP);",
    ),
    ("tpcb_begin", "BEGIN;"),
];

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("fingerprint_pgbench");
    let mut n = Normalizer::new();
    for (name, sql) in CASES {
        let a = n.normalize(sql.as_bytes(), Dialect::Postgres);
        println!("{name}: {} -> {} ({})", sql, n.text(), a.fingerprint);
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("{name}/normalize"), |b| {
            b.iter(|| black_box(n.normalize(black_box(sql.as_bytes()), Dialect::Postgres)))
        });
        // Another number of another length each time: the shape is the same.
        let variants: Vec<String> = (0..64u64)
            .map(|i| sql.replace("483921", &(i * 7919 + 3).to_string()))
            .collect();
        let mut i = 0;
        group.bench_function(format!("{name}/analyze"), |b| {
            b.iter(|| {
                i = (i + 1) % variants.len();
                black_box(n.analyze(black_box(variants[i].as_bytes()), Dialect::Postgres))
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
