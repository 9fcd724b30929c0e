//! Replicas that act as one: a cancel request that lands on the wrong
//! replica reaches the right one through `[peers]`, and only peers are
//! heard.

use std::time::Duration;

use sqlmux_tests::shared_pg;
use tokio::task::JoinHandle;

use crate::common::{TestProxy, config, fresh_db, sqlstate, start_trust, trust_db};

type SlowQuery = JoinHandle<Result<Vec<tokio_postgres::SimpleQueryMessage>, tokio_postgres::Error>>;

/// Gives a running proxy the same database plus a `[peers]` table listing
/// `peers` (`host:port` entries), through a configuration swap as RELOAD
/// does: the listeners (port 0) are bound first, so their ports are known.
fn set_peers(p: &TestProxy, db: &str, peers: &[String]) {
    let list: Vec<String> = peers.iter().map(|a| format!("\"{a}\"")).collect();
    let body = format!(
        "[peers]\naddresses = [{}]\n\n{}",
        list.join(", "),
        trust_db(db, "size = 2")
    );
    p.proxy.apply(config(shared_pg().port(), "trust", &body));
}

fn loopback(p: &TestProxy) -> String {
    format!("127.0.0.1:{}", p.port)
}

/// Starts `SELECT pg_sleep(30)` through `p`; returns its cancel token and
/// the running query.
async fn slow_query(p: &TestProxy, db: &str) -> (tokio_postgres::CancelToken, SlowQuery) {
    let victim = p.connect("postgres", None, db).await;
    let token = victim.cancel_token();
    let slow = tokio::spawn(async move { victim.simple_query("SELECT pg_sleep(30)").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    (token, slow)
}

/// Sends the CancelRequest of `token` to `p`'s PostgreSQL port (whichever
/// replica the client is really on).
async fn cancel_via(token: &tokio_postgres::CancelToken, p: &TestProxy) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", p.port))
        .await
        .unwrap();
    token
        .cancel_query_raw(tcp, tokio_postgres::NoTls)
        .await
        .unwrap();
}

/// Asserts the query ends with "canceling statement due to user request".
async fn expect_cancelled(slow: SlowQuery) {
    let err = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .expect("the query ends soon after the cancel")
        .unwrap()
        .unwrap_err();
    assert_eq!(sqlstate(&err), "57014", "{err}");
}

/// Asserts the query is still running a while after a cancel that must
/// not have reached it.
async fn expect_still_running(slow: &SlowQuery, what: &str) {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!slow.is_finished(), "{what} cancelled the query");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_sent_to_another_replica_is_forwarded_to_the_one_holding_the_client() {
    let db = fresh_db(shared_pg(), "peers");
    let a = start_trust(&trust_db(&db, "size = 2")).await;
    let b = start_trust(&trust_db(&db, "size = 2")).await;
    let outsider = start_trust(&trust_db(&db, "size = 2")).await;
    set_peers(&a, &db, &[loopback(&b)]);
    set_peers(&b, &db, &[loopback(&a)]);

    let (token, slow) = slow_query(&a, &db).await;
    // A replica with no peers does not know the key and drops the request.
    cancel_via(&token, &outsider).await;
    expect_still_running(&slow, "a replica outside the peer lists").await;
    // B does not know the key either, but forwards it to its peer A.
    cancel_via(&token, &b).await;
    expect_cancelled(slow).await;

    for p in [a, b, outsider] {
        p.proxy.shutdown_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_cancel_from_an_address_not_in_peers_is_ignored() {
    let db = fresh_db(shared_pg(), "peers_src");
    let a = start_trust(&trust_db(&db, "size = 2")).await;
    let b = start_trust(&trust_db(&db, "size = 2")).await;
    // A hears only 127.0.0.2; B forwards to A from 127.0.0.1.
    set_peers(&a, &db, &[format!("127.0.0.2:{}", b.port)]);
    set_peers(&b, &db, &[loopback(&a)]);

    let (token, slow) = slow_query(&a, &db).await;
    cancel_via(&token, &b).await;
    expect_still_running(&slow, "a peer request from a source not in [peers]").await;
    // The client's own replica still honours the cancel.
    cancel_via(&token, &a).await;
    expect_cancelled(slow).await;

    for p in [a, b] {
        p.proxy.shutdown_now().await;
    }
}

/// Metric names the Grafana dashboard queries: `SQLMUX_DASHBOARD_METRICS`
/// (comma-separated, as tests/deploy/check.py passes them after parsing the
/// JSON), else every `sqlmux_...` word in the dashboard file.
fn dashboard_metric_names() -> Vec<String> {
    if let Ok(list) = std::env::var("SQLMUX_DASHBOARD_METRICS") {
        return list
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
    }
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../charts/sqlmux/dashboards/sqlmux.json"
    );
    let text = std::fs::read_to_string(path).expect("dashboard JSON");
    let mut names: Vec<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("sqlmux_"))
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Names in a Prometheus text exposition: every sample's name and every
/// family named by `# TYPE`.
fn exported_names(body: &str) -> std::collections::BTreeSet<String> {
    body.lines()
        .filter_map(|l| match l.strip_prefix("# TYPE ") {
            Some(rest) => rest.split(' ').next(),
            None if l.starts_with('#') => None,
            None => l.split(['{', ' ']).next(),
        })
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `GET /metrics` on the admin port.
async fn metrics(p: &TestProxy) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(p.proxy.admin_addr())
        .await
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_metrics_are_all_exported() {
    let names = dashboard_metric_names();
    assert!(names.len() >= 10, "too few dashboard metrics: {names:?}");
    let db = fresh_db(shared_pg(), "dashboard");
    let body = format!(
        "[insight]\nn_plus_one = {{ threshold = 3, window = \"5s\" }}\nleaked_transaction = {{ idle = \"200ms\", action = \"warn\" }}\n\n{}",
        trust_db(&db, "size = 2")
    );
    let p = start_trust(&body).await;
    let c = p.connect("postgres", None, &db).await;
    // Statements, then an N+1 burst after a parent query.
    c.simple_query("SELECT 'parent', count(*) FROM pg_class")
        .await
        .unwrap();
    for i in 0..6 {
        c.simple_query(&format!("SELECT relname FROM pg_class WHERE oid = {i}"))
            .await
            .unwrap();
    }
    // A transaction left open and idle: a leak.
    let leaker = p.connect("postgres", None, &db).await;
    leaker.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let mut missing = names.clone();
    for _ in 0..50 {
        let exported = exported_names(&metrics(&p).await);
        missing.retain(|n| !exported.contains(n));
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        missing.is_empty(),
        "dashboard metrics not exported by sqlmux: {missing:?}\n{}",
        metrics(&p).await
    );
    p.proxy.shutdown_now().await;
}
