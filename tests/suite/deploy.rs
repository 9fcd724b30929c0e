//! Replicas that act as one: a cancel request or a MySQL KILL that lands
//! on the wrong replica reaches the right one through `[peers]`, only
//! peers are heard, and a MySQL KILL acts only for the same user.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use sqlmux::Proxy;
use sqlmux::config::Config;
use sqlmux_tests::{shared_mariadb, shared_pg};
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

/// A MySQL replica's configuration: `[mysql]` and `[postgres]` (which
/// carries peer requests) on free ports in front of the shared MariaDB's
/// `db`, with `[peers]` listing `peers`. Users app and intruder both log
/// in to MariaDB as app.
fn my_config(db: &str, peers: &[String]) -> Config {
    let list: Vec<String> = peers.iter().map(|a| format!("\"{a}\"")).collect();
    let text = format!(
        "[postgres]\nlisten = \"127.0.0.1:0\"\n[mysql]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [peers]\naddresses = [{}]\n\n\
         [[databases]]\nname = \"{db}\"\nprotocol = \"mysql\"\nhost = \"127.0.0.1\"\nport = {}\n\
         user = \"app\"\npassword = \"app-pass\"\npool = {{ size = 2 }}\n\n\
         [[users]]\nname = \"app\"\npassword = \"app-pass\"\n\n\
         [[users]]\nname = \"intruder\"\npassword = \"intruder-pass\"\n",
        list.join(", "),
        shared_mariadb().port()
    );
    Config::parse(&text).unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"))
}

/// Starts a MySQL replica with no peers yet.
async fn start_my(db: &str) -> Proxy {
    Proxy::start(my_config(db, &[]))
        .await
        .expect("proxy starts")
}

/// Lists `peers` in `p`'s `[peers]` through a configuration swap, after
/// the listeners (port 0) are bound.
fn set_my_peers(p: &Proxy, db: &str, peers: &[String]) {
    p.apply(my_config(db, peers));
}

/// Where `p` hears peer requests: its PostgreSQL port on 127.0.0.1.
fn peer_addr(p: &Proxy) -> String {
    format!("127.0.0.1:{}", p.postgres_addr().port())
}

/// A mysql_async connection as `user` to `port` (a replica's MySQL port
/// or MariaDB itself).
async fn my_connect(port: u16, user: &str, db: &str) -> mysql_async::Conn {
    // prefer_socket=false: mysql_async would otherwise reconnect to the
    // server's own socket.
    let url = format!("mysql://{user}:{user}-pass@127.0.0.1:{port}/{db}?prefer_socket=false");
    mysql_async::Conn::new(mysql_async::Opts::from_url(&url).expect("url"))
        .await
        .unwrap_or_else(|e| panic!("connect as {user} to {port}: {e}"))
}

/// How `SELECT SLEEP(30)` ended: its value, or the server's error code.
type SleepOutcome = Result<Option<i64>, u16>;
type SlowSleep = JoinHandle<(SleepOutcome, mysql_async::Conn)>;

/// Starts `SELECT SLEEP(30)` on `conn`; the task hands the connection back.
async fn slow_sleep(mut conn: mysql_async::Conn) -> SlowSleep {
    let slow = tokio::spawn(async move {
        let outcome = match conn.query_first::<i64, _>("SELECT SLEEP(30)").await {
            Ok(v) => Ok(v),
            Err(mysql_async::Error::Server(e)) => Err(e.code),
            Err(e) => panic!("SLEEP failed outside the server: {e}"),
        };
        (outcome, conn)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    slow
}

/// Runs `sql` on `conn`; the server's error code if it fails.
async fn my_exec(conn: &mut mysql_async::Conn, sql: &str) -> Result<(), u16> {
    match conn.query_drop(sql).await {
        Ok(()) => Ok(()),
        Err(mysql_async::Error::Server(e)) => Err(e.code),
        Err(e) => panic!("{sql}: {e}"),
    }
}

/// Waits for the statement to end soon after a kill.
async fn sleep_ended(slow: SlowSleep) -> (SleepOutcome, mysql_async::Conn) {
    tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .expect("the statement ends soon after KILL QUERY")
        .unwrap()
}

/// Asserts the statement is still running a while after a KILL that must
/// not have reached it.
async fn sleep_still_running(slow: &SlowSleep, what: &str) {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!slow.is_finished(), "{what} stopped the statement");
}

/// What a client connected to MariaDB itself sees when its `SELECT
/// SLEEP(30)` is stopped by `KILL QUERY` from another connection.
async fn direct_kill_outcome(db: &str) -> SleepOutcome {
    let port = shared_mariadb().port();
    let victim = my_connect(port, "app", db).await;
    let thread = victim.id();
    let slow = slow_sleep(victim).await;
    let mut killer = my_connect(port, "app", db).await;
    my_exec(&mut killer, &format!("KILL QUERY {thread}"))
        .await
        .unwrap();
    sleep_ended(slow).await.0
}

/// MySQL's "Unknown thread id".
const UNKNOWN_THREAD: u16 = 1094;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_kill_query_sent_to_another_replica_stops_the_statement_on_the_one_holding_the_client()
 {
    let db = crate::mysql::fresh_db("peers_my");
    let direct = direct_kill_outcome(&db).await;
    let a = start_my(&db).await;
    let b = start_my(&db).await;
    let outsider = start_my(&db).await;
    set_my_peers(&a, &db, &[peer_addr(&b)]);
    set_my_peers(&b, &db, &[peer_addr(&a)]);

    let victim = my_connect(a.mysql_addr().port(), "app", &db).await;
    let id = victim.id();
    let slow = slow_sleep(victim).await;
    // A replica outside the peer lists knows nothing of the id.
    let mut lost = my_connect(outsider.mysql_addr().port(), "app", &db).await;
    let r = my_exec(&mut lost, &format!("KILL QUERY {id}")).await;
    assert_eq!(r, Err(UNKNOWN_THREAD));
    sleep_still_running(&slow, "a replica outside the peer lists").await;
    // B does not hold the client either, but its peer A does.
    let mut killer = my_connect(b.mysql_addr().port(), "app", &db).await;
    my_exec(&mut killer, &format!("KILL QUERY {id}"))
        .await
        .expect("B answers OK for the kill A carried out");
    let (outcome, mut victim) = sleep_ended(slow).await;
    assert_eq!(outcome, direct, "as a direct connection sees it");
    // Only the statement stopped: the client goes on.
    let v: Option<i64> = victim.query_first("SELECT 7").await.unwrap();
    assert_eq!(v, Some(7));

    for p in [a, b, outsider] {
        p.shutdown_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_kill_forwarded_from_an_address_not_in_peers_is_ignored() {
    let db = crate::mysql::fresh_db("peers_my_src");
    let a = start_my(&db).await;
    let outsider = start_my(&db).await;
    // A hears only 127.0.0.2; the outsider forwards to A from 127.0.0.1.
    set_my_peers(
        &a,
        &db,
        &[format!("127.0.0.2:{}", outsider.postgres_addr().port())],
    );
    set_my_peers(&outsider, &db, &[peer_addr(&a)]);

    let victim = my_connect(a.mysql_addr().port(), "app", &db).await;
    let id = victim.id();
    let slow = slow_sleep(victim).await;
    let mut unheard = my_connect(outsider.mysql_addr().port(), "app", &db).await;
    let r = my_exec(&mut unheard, &format!("KILL QUERY {id}")).await;
    assert_eq!(r, Err(UNKNOWN_THREAD));
    sleep_still_running(&slow, "a peer request from a source not in [peers]").await;
    // The client's own replica still carries out the kill.
    let mut killer = my_connect(a.mysql_addr().port(), "app", &db).await;
    my_exec(&mut killer, &format!("KILL QUERY {id}"))
        .await
        .unwrap();
    let (outcome, _) = sleep_ended(slow).await;
    assert_ne!(outcome, Ok(Some(0)), "SLEEP ran to its end");

    for p in [a, outsider] {
        p.shutdown_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_kill_through_a_peer_acts_only_for_the_same_user() {
    let db = crate::mysql::fresh_db("peers_my_user");
    let a = start_my(&db).await;
    let b = start_my(&db).await;
    set_my_peers(&a, &db, &[peer_addr(&b)]);
    set_my_peers(&b, &db, &[peer_addr(&a)]);

    let victim = my_connect(a.mysql_addr().port(), "app", &db).await;
    let id = victim.id();
    let slow = slow_sleep(victim).await;
    // Another user is told the id is unknown, on either kind of KILL.
    let mut intruder = my_connect(b.mysql_addr().port(), "intruder", &db).await;
    for sql in [format!("KILL QUERY {id}"), format!("KILL CONNECTION {id}")] {
        assert_eq!(my_exec(&mut intruder, &sql).await, Err(UNKNOWN_THREAD));
    }
    sleep_still_running(&slow, "another user's KILL through a peer").await;
    // The same user stops the statement, then ends the session with KILL n.
    let mut killer = my_connect(b.mysql_addr().port(), "app", &db).await;
    my_exec(&mut killer, &format!("KILL QUERY {id}"))
        .await
        .unwrap();
    let (_, mut victim) = sleep_ended(slow).await;
    my_exec(&mut killer, &format!("KILL {id}")).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), victim.query_drop("SELECT 1"))
        .await
        .expect("the killed session answers at once");
    assert!(ended.is_err(), "the session survived KILL {id}");

    for p in [a, b] {
        p.shutdown_now().await;
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
