//! Insight through the admin console: per-statement latency, N+1 bursts,
//! leaked transactions.

use std::time::Duration;

use sqlmux_tests::shared_pg;

use crate::common::{TestProxy, connect_url, err_text, fresh_db, pgbench, run, start_trust};

/// Config body: one trust database, user postgres, and an admin user.
fn body(db: &str, extra: &str) -> String {
    format!(
        "{extra}\n[[databases]]\nname = \"{db}\"\nhost = \"127.0.0.1\"\nport = {{pg_port}}\npool = {{ size = 2 }}\n\n[[users]]\nname = \"postgres\"\n\n[[users]]\nname = \"admin\"\npassword = \"admin-pass\"\n"
    )
}

/// Runs an admin command and returns rows as maps column -> value.
async fn admin(p: &TestProxy, sql: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let url = format!(
        "host=127.0.0.1 port={} user=admin password=admin-pass dbname=sqlmux",
        p.proxy.admin_addr().port()
    );
    let c = connect_url(&url).await.expect("admin login");
    let msgs = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", err_text(&e)));
    crate::common::row_maps(msgs)
}

fn num(row: &std::collections::BTreeMap<String, String>, col: &str) -> f64 {
    row.get(col)
        .unwrap_or_else(|| panic!("no column {col} in {row:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("column {col} not numeric in {row:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_sleep_statements_are_one_fingerprint_with_accurate_percentiles() {
    let db = fresh_db(shared_pg(), "ins_lat");
    let p = start_trust(&body(&db, "")).await;
    let c = p.connect("postgres", None, &db).await;
    for _ in 0..20 {
        c.simple_query("SELECT pg_sleep(0.05)").await.unwrap();
    }
    let rows = admin(&p, "SHOW STATEMENTS").await;
    let sleep: Vec<_> = rows
        .iter()
        .filter(|r| r["query"].contains("pg_sleep"))
        .collect();
    assert_eq!(sleep.len(), 1, "one fingerprint expected: {rows:?}");
    let r = sleep[0];
    assert_eq!(r["database"], db);
    assert_eq!(r["user"], "postgres");
    assert_eq!(num(r, "calls"), 20.0);
    assert_eq!(num(r, "errors"), 0.0);
    assert_eq!(r["fingerprint"].len(), 16);
    // What is exact whatever the machine's speed: no call took less than
    // the 50 ms it slept (up to the histogram's 2-significant-digit
    // resolution), and the order of the percentiles.
    let p50 = num(r, "p50_ms");
    assert!(
        p50 >= 49.5,
        "p50 {p50} ms is below the 50 ms every call slept"
    );
    assert!(num(r, "max_ms") >= num(r, "p99_ms") && num(r, "p99_ms") >= p50);
    assert!((num(r, "mean_ms") - num(r, "total_ms") / 20.0).abs() < 0.01);
    // The histogram of that fingerprint holds all 20 calls.
    let hist = admin(&p, &format!("SHOW HISTOGRAM {}", r["fingerprint"])).await;
    let total: f64 = hist.iter().map(|h| num(h, "count")).sum();
    assert_eq!(total, 20.0, "{hist:?}");
    // No sample below 50 ms, and p50 lies in the bucket where the
    // cumulative count reaches half of the calls.
    let filled: Vec<(f64, f64)> = hist
        .iter()
        .map(|h| (num(h, "le_ms"), num(h, "count")))
        .filter(|(_, n)| *n > 0.0)
        .collect();
    assert!(filled.iter().all(|(le, _)| *le >= 49.5), "{hist:?}");
    let below: f64 = filled
        .iter()
        .filter(|(le, _)| *le < p50)
        .map(|(_, n)| n)
        .sum();
    let through: f64 = below
        + filled
            .iter()
            .find(|(le, _)| *le >= p50)
            .map_or(0.0, |(_, n)| *n);
    assert!(
        below < 10.0 && through >= 10.0,
        "p50 {p50} outside its bucket: {hist:?}"
    );
    // Errors are counted on their statement.
    let _ = c.simple_query("SELECT 1/0").await;
    let rows = admin(&p, "SHOW STATEMENTS").await;
    let div = rows
        .iter()
        .find(|r| r["query"].contains("/"))
        .expect("division statement");
    assert_eq!(num(div, "errors"), 1.0);
    admin(&p, "RESET STATEMENTS").await;
    assert!(admin(&p, "SHOW STATEMENTS").await.is_empty());
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orm_loop_after_a_parent_query_is_exactly_one_n_plus_one_event() {
    let pg = shared_pg();
    let db = fresh_db(pg, "ins_n1");
    pg.psql(
        &db,
        "CREATE TABLE users (id int primary key, name text); CREATE TABLE orders (id serial, user_id int, total int);
         INSERT INTO users SELECT g, 'u' || g FROM generate_series(1, 50) g;
         INSERT INTO orders (user_id, total) SELECT g % 50 + 1, g FROM generate_series(1, 200) g;",
    );
    let p = start_trust(&body(&db, "")).await;
    let c = p.connect("postgres", None, &db).await;
    // The "1": the parent query; then the "N": one query per row.
    let users = c
        .query("SELECT id FROM users ORDER BY id", &[])
        .await
        .unwrap();
    let per_user = c
        .prepare("SELECT total FROM orders WHERE user_id = $1")
        .await
        .unwrap();
    for u in &users {
        let id: i32 = u.get(0);
        c.query(&per_user, &[&id]).await.unwrap();
    }
    // The batched equivalent on another connection is not an N+1.
    let b = p.connect("postgres", None, &db).await;
    let ids: Vec<i32> = (1..=50).collect();
    b.query("SELECT id FROM users ORDER BY id", &[])
        .await
        .unwrap();
    b.query(
        "SELECT user_id, total FROM orders WHERE user_id = ANY($1)",
        &[&ids],
    )
    .await
    .unwrap();
    let in_list = format!(
        "SELECT user_id, total FROM orders WHERE user_id IN ({})",
        ids.iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    b.simple_query(&in_list).await.unwrap();
    // A different statement ends the burst.
    c.simple_query("SELECT 1").await.unwrap();
    let events = admin(&p, "SHOW N_PLUS_ONE").await;
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert!(e["query"].contains("from orders where user_id"), "{e:?}");
    assert_eq!(num(e, "repeats"), 50.0);
    assert!(e["parent_query"].contains("from users"), "{e:?}");
    assert_eq!(e["database"], db);
    assert!(e["client_addr"].starts_with("127.0.0.1"), "{e:?}");
    assert!(num(e, "window_ms") > 0.0);
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn benchmarks_and_steady_repetition_never_fire_n_plus_one() {
    let pg = shared_pg();
    let db = fresh_db(pg, "ins_quiet");
    let (ok, out) = run(
        pgbench(pg.port(), "postgres", &db, &["-i", "-s", "1", "-q"]),
        Duration::from_secs(120),
    );
    assert!(ok, "{out}");
    let p = start_trust(&body(&db, "")).await;
    let port = p.port;
    let db2 = db.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        let a = run(
            pgbench(
                port,
                "postgres",
                &db2,
                &["-S", "-c", "8", "-j", "2", "-T", "2"],
            ),
            Duration::from_secs(60),
        );
        let b = run(
            pgbench(
                port,
                "postgres",
                &db2,
                &["-M", "extended", "-c", "4", "-j", "2", "-T", "2"],
            ),
            Duration::from_secs(60),
        );
        (a.0 && b.0, a.1 + &b.1)
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    // A slow steady poller: 6 repeats 250 ms apart (threshold 10 per 1 s).
    let c = p.connect("postgres", None, &db).await;
    c.simple_query("SELECT 1").await.unwrap();
    for _ in 0..6 {
        c.simple_query("SELECT count(*) FROM pgbench_branches")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let events = admin(&p, "SHOW N_PLUS_ONE").await;
    assert!(events.is_empty(), "false N+1 alarms: {events:?}");
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_open_transaction_is_reported_as_a_leak() {
    let pg = shared_pg();
    let db = fresh_db(pg, "ins_leak");
    pg.psql(
        &db,
        "CREATE TABLE t (id int primary key, v int); INSERT INTO t VALUES (1, 0)",
    );
    let p = start_trust(&body(
        &db,
        "[insight]\nleaked_transaction = { idle = \"300ms\", action = \"warn\" }",
    ))
    .await;
    let c = p.connect("postgres", None, &db).await;
    c.batch_execute("BEGIN; UPDATE t SET v = v + 1 WHERE id = 1")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let leaks = admin(&p, "SHOW LEAKS").await;
    assert_eq!(leaks.len(), 1, "{leaks:?}");
    let l = &leaks[0];
    assert_eq!(l["state"], "open");
    assert_eq!(l["action"], "warn");
    assert!(
        num(l, "idle_s") >= 0.3 && num(l, "xact_age_s") >= num(l, "idle_s"),
        "{l:?}"
    );
    assert!(l["last_query"].contains("update t set v"), "{l:?}");
    // A long-running statement is not a leak.
    let d = p.connect("postgres", None, &db).await;
    d.simple_query("SELECT pg_sleep(0.8)").await.unwrap();
    // The client finishing its transaction closes the leak.
    c.batch_execute("COMMIT").await.unwrap();
    let leaks = admin(&p, "SHOW LEAKS").await;
    assert_eq!(leaks.len(), 1, "{leaks:?}");
    assert_eq!(leaks[0]["state"], "finished");
    assert_eq!(pg.psql(&db, "SELECT v FROM t"), "1");
    // A client that disconnects inside a transaction is recorded as abandoned.
    let e = p.connect("postgres", None, &db).await;
    e.batch_execute("BEGIN; UPDATE t SET v = 100")
        .await
        .unwrap();
    drop(e);
    crate::common::eventually(
        Duration::from_secs(5),
        "abandoned leak recorded",
        async || {
            admin(&p, "SHOW LEAKS")
                .await
                .iter()
                .any(|l| l["state"] == "abandoned")
        },
    )
    .await;
    assert_eq!(pg.psql(&db, "SELECT v FROM t"), "1");
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leak_rollback_undoes_the_work_frees_the_server_and_tells_the_client() {
    let pg = shared_pg();
    let db = fresh_db(pg, "ins_rb");
    pg.psql(
        &db,
        "CREATE TABLE t (id int primary key, v int); INSERT INTO t VALUES (1, 0)",
    );
    let p = start_trust(&body(
        &db,
        "[insight]\nleaked_transaction = { idle = \"300ms\", action = \"rollback\" }",
    ))
    .await;
    let c = p.connect("postgres", None, &db).await;
    c.batch_execute("BEGIN; UPDATE t SET v = 42 WHERE id = 1")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    // The update was rolled back and no server is idle in transaction.
    assert_eq!(pg.psql(&db, "SELECT v FROM t"), "0");
    assert_eq!(
        pg.psql("postgres", &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND state LIKE 'idle in transaction%'")),
        "0"
    );
    let leaks = admin(&p, "SHOW LEAKS").await;
    assert_eq!(leaks[0]["state"], "rolled_back", "{leaks:?}");
    assert_eq!(leaks[0]["action"], "rollback");
    // The client's next statement gets the explanation, then works again.
    let e = c.batch_execute("COMMIT").await.unwrap_err();
    let text = err_text(&e);
    assert!(
        text.contains("rolled back") && text.contains("idle"),
        "{text}"
    );
    let v: i32 = c.query_one("SELECT v FROM t", &[]).await.unwrap().get(0);
    assert_eq!(v, 0);
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_in_a_non_utf8_client_encoding_are_shown_with_replacement_characters() {
    use std::os::unix::ffi::OsStrExt;
    let db = fresh_db(shared_pg(), "ins_latin1");
    let p = start_trust(&body(&db, "")).await;
    // psql sends the bytes as they are: LATIN1 é (0xE9) in a quoted
    // identifier, which the normal form keeps verbatim.
    let sql = b"SELECT 42 AS \"caf\xe9\"";
    let port = p.port;
    let db2 = db.clone();
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = sqlmux_tests::psql_command(port, "postgres", None, &db2);
        cmd.env("PGCLIENTENCODING", "LATIN1")
            .arg("-At")
            .arg("-c")
            .arg(std::ffi::OsStr::from_bytes(sql));
        run(cmd, Duration::from_secs(30))
    })
    .await
    .unwrap();
    assert!(out.0 && out.1.trim() == "42", "{}", out.1);
    let rows = admin(&p, "SHOW STATEMENTS").await;
    assert!(
        rows.iter()
            .any(|r| r["query"] == "select $1 as \"caf\u{fffd}\"" && r["calls"] == "1"),
        "{rows:?}"
    );
    p.proxy.shutdown_now().await;
}
