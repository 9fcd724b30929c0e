//! Cost of `Normalizer::normalize` per statement (group `fingerprint`).
//!
//! Cases: a 40 B point select, a ~200 B
//! OLTP select with a join and an IN list, a ~2 KB ORM query with a
//! 100-element IN list, a ~4 KB multi-row INSERT and a 64 KiB unterminated
//! quote. Before timing, each case is run once more on a warm normalizer
//! under a counting allocator, and the bench stops if that call allocates.
//!
//! Run: `cargo bench -p sqlmux-protocol --bench fingerprint`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sqlmux_protocol::sql::{Dialect, Normalizer};

/// Counts allocations so the bench can check the warm path makes none.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn point_select() -> String {
    "SELECT * FROM users WHERE id = 12345678;".to_owned()
}

fn oltp_select() -> String {
    "SELECT u.id, u.email, o.total FROM users u JOIN orders o ON o.user_id = u.id \
     WHERE u.id = 42 AND o.created_at > '2024-01-01' AND o.status IN ('paid', 'shipped', 'done') \
     ORDER BY o.created_at DESC LIMIT 10"
        .to_owned()
}

fn orm_query() -> String {
    let cols = [
        "id",
        "customer_id",
        "status",
        "total_cents",
        "currency",
        "created_at",
        "updated_at",
        "shipping_address_id",
        "billing_address_id",
        "notes",
        "external_ref",
        "channel",
    ];
    let mut sql = String::from("SELECT ");
    let list: Vec<String> = cols.iter().map(|c| format!("\"orders\".\"{c}\"")).collect();
    sql.push_str(&list.join(", "));
    let customer_cols = [
        "id",
        "email",
        "name",
        "phone",
        "country",
        "city",
        "postal_code",
        "created_at",
        "updated_at",
        "marketing_opt_in",
        "tier",
        "account_manager_id",
    ];
    for c in customer_cols {
        sql.push_str(&format!(", \"customers\".\"{c}\" AS \"customers__{c}\""));
    }
    sql.push_str(
        " FROM \"orders\" \
         INNER JOIN \"customers\" ON (\"orders\".\"customer_id\" = \"customers\".\"id\") \
         WHERE (\"orders\".\"status\" IN ('paid', 'shipped') AND \"orders\".\"id\" IN (",
    );
    let ids: Vec<String> = (0..100).map(|i| (1_000_000 + i * 37).to_string()).collect();
    sql.push_str(&ids.join(", "));
    sql.push_str(
        ") AND \"orders\".\"created_at\" >= '2024-01-01T00:00:00'::timestamptz) \
         ORDER BY \"orders\".\"created_at\" DESC LIMIT 50 OFFSET 100",
    );
    sql
}

fn multi_row_insert() -> String {
    let mut sql =
        String::from("INSERT INTO events (id, user_id, kind, payload, created_at) VALUES ");
    let mut i = 0;
    while sql.len() < 4000 {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "({}, {}, 'click', '{{\"x\": {i}, \"y\": \"button\"}}', '2024-01-01 00:00:{:02}')",
            10_000 + i,
            42 + i % 7,
            i % 60
        ));
        i += 1;
    }
    sql
}

fn unterminated_quote() -> String {
    let mut sql = String::from("SELECT '");
    sql.push_str(&"x".repeat(64 * 1024 - sql.len()));
    sql
}

fn bench(c: &mut Criterion) {
    let cases = [
        ("point_select_40b", point_select()),
        ("oltp_select_200b", oltp_select()),
        ("orm_in100_2kb", orm_query()),
        ("insert_rows_4kb", multi_row_insert()),
        ("unterminated_quote_64kb", unterminated_quote()),
    ];
    let mut group = c.benchmark_group("fingerprint");
    for (name, sql) in &cases {
        for (dialect, suffix) in [(Dialect::Postgres, "pg"), (Dialect::MySql, "mysql")] {
            let mut n = Normalizer::new();
            n.normalize(sql.as_bytes(), dialect);
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            let a = n.normalize(sql.as_bytes(), dialect);
            let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
            assert_eq!(
                allocations, 0,
                "{name}/{suffix}: a warm normalize allocated"
            );
            println!(
                "{name}/{suffix}: {} B in, {} B out, {}",
                sql.len(),
                n.text().len(),
                a.fingerprint
            );
            if suffix == "mysql" && !name.starts_with("oltp") {
                continue;
            }
            group.throughput(Throughput::Bytes(sql.len() as u64));
            group.bench_function(format!("{name}/{suffix}"), |b| {
                b.iter(|| black_box(n.normalize(black_box(sql.as_bytes()), dialect)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
