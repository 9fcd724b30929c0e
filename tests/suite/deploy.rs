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
