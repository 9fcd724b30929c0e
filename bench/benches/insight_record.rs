//! Recording one statement execution in the insight layer (group
//! `insight`).
//!
//! `Insight::record` is called once per statement on the hot path: it
//! finds this thread's shard, the statement's entry and bumps its latency
//! histogram and counters. The entry is warm (recorded before timing), as
//! it is for a statement an application runs over and over.
//! `record_transaction` is the per-transaction pool histogram. Both run
//! single-threaded here; across threads they touch separate shards.
//!
//! Run: `cargo bench -p sqlmux-bench --bench insight_record`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sqlmux::config::{InsightConfig, LeakAction};
use sqlmux::insight::{Fingerprint, Insight};

fn config() -> InsightConfig {
    InsightConfig {
        enabled: true,
        max_statements: 5000,
        n_plus_one_threshold: 10,
        n_plus_one_window: Duration::from_secs(1),
        leak_idle: Duration::from_secs(5),
        leak_action: LeakAction::Warn,
    }
}

fn bench(c: &mut Criterion) {
    let insight = Insight::new(&config());
    let tag = insight.tag("postgres", "postgres");
    let fp = Fingerprint(0x9e37_79b9_7f4a_7c15);
    insight.note_text(fp, "select abalance from pgbench_accounts where aid = ?");
    // Warm: the entry exists in this thread's shard.
    for us in [90, 120, 3000] {
        insight.record(tag, fp, us, 1, false);
        insight.record_transaction(tag, us);
    }
    let mut group = c.benchmark_group("insight");
    group.throughput(Throughput::Elements(1));
    let mut us = 0u64;
    group.bench_function("record_warm_statement", |b| {
        b.iter(|| {
            // Vary the latency so different buckets are hit.
            us = (us + 37) % 5000;
            insight.record(black_box(tag), black_box(fp), black_box(50 + us), 1, false)
        })
    });
    group.bench_function("record_transaction", |b| {
        b.iter(|| {
            us = (us + 37) % 5000;
            insight.record_transaction(black_box(tag), black_box(50 + us))
        })
    });
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
