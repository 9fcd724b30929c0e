//! Repeated failed logins from one address are answered with a growing
//! delay (`general.auth_failure_delay`), on both listeners; other
//! addresses, other clients and the pool are not held up by it.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use sqlmux::Proxy;
use sqlmux::config::Config;
use sqlmux_tests::{shared_mariadb, shared_pg};

use crate::common::sqlstate;

const GOOD: &str = "Delay-Pass-1";
const BAD: &str = "not-the-password";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A proxy on both protocols with user `app`/GOOD, pools of one.
async fn start(pg_db: &str, my_db: &str, cap: &str) -> Proxy {
    let text = format!(
        "[general]\nauth_failure_delay = \"{cap}\"\n\
         [postgres]\nlisten = \"127.0.0.1:0\"\nauth = \"scram-sha-256\"\n[mysql]\nlisten = \"127.0.0.1:0\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [[databases]]\nname = \"{pg_db}\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"postgres\"\npool = {{ size = 1 }}\n\n\
         [[databases]]\nname = \"{my_db}\"\nprotocol = \"mysql\"\nhost = \"127.0.0.1\"\nport = {}\n\
         user = \"app\"\npassword = \"app-pass\"\npool = {{ size = 1 }}\n\n\
         [[users]]\nname = \"app\"\npassword = \"{GOOD}\"\n\n[[users]]\nname = \"postgres\"\n",
        shared_pg().port(),
        shared_mariadb().port()
    );
    let cfg = Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    Proxy::start(cfg).await.expect("proxy starts")
}

/// Logs in to PostgreSQL through `port` from the local address `from`.
async fn pg_login(
    from: IpAddr,
    port: u16,
    db: &str,
    pw: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let tcp = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    let cfg: tokio_postgres::Config = format!("user=app password={pw} dbname={db}")
        .parse()
        .unwrap();
    let (client, conn) = cfg.connect_raw(tcp, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// A failed PostgreSQL login from `from`: the delay sqlmux reports for it
/// and how long the refusal took.
async fn pg_fail(p: &Proxy, from: IpAddr, db: &str) -> (Duration, Duration) {
    let start = Instant::now();
    let e = pg_login(from, p.postgres_addr().port(), db, BAD)
        .await
        .err()
        .unwrap();
    let took = start.elapsed();
    assert_eq!(sqlstate(&e), "28P01", "{e}");
    (p.shared.auth_delay.current(from), took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_failed_logins_from_one_address_wait_longer_each_time() {
    let db = crate::common::fresh_db(shared_pg(), "delay");
    let my_db = crate::mysql::fresh_db("delay_my");
    let p = start(&db, &my_db, "10s").await;
    let (attacker, other) = (ip("127.0.0.1"), ip("127.0.0.2"));
    let mut delays = Vec::new();
    for _ in 0..4 {
        let (delay, took) = pg_fail(&p, attacker, &db).await;
        assert!(
            took >= delay,
            "answered after {took:?}, before its delay {delay:?}"
        );
        delays.push(delay.as_millis());
    }
    assert_eq!(
        delays,
        [100, 200, 400, 800],
        "each failure doubles the delay"
    );
    let delayed = p
        .shared
        .auth_delay
        .delayed
        .load(std::sync::atomic::Ordering::Relaxed);
    // A fifth failure waits 1.6 s; meanwhile another address logs in and a
    // client uses the pool's only server: the delay holds neither.
    let port = p.postgres_addr().port();
    let (failing_db, proxy) = (db.clone(), p.clone());
    let failing = tokio::spawn(async move { pg_fail(&proxy, attacker, &failing_db).await });
    let c = pg_login(other, port, &db, GOOD)
        .await
        .expect("another address logs in");
    c.simple_query("SELECT 1").await.unwrap();
    assert!(
        !failing.is_finished(),
        "the delayed refusal came before another client's login"
    );
    assert_eq!(failing.await.unwrap().0, Duration::from_millis(1600));
    assert_eq!(p.shared.auth_delay.current(other), Duration::ZERO);
    assert_eq!(
        p.shared
            .auth_delay
            .delayed
            .load(std::sync::atomic::Ordering::Relaxed),
        delayed + 1,
        "only the failure was delayed"
    );
    // A success from the failing address ends its burst.
    pg_login(attacker, port, &db, GOOD)
        .await
        .expect("right password");
    assert_eq!(p.shared.auth_delay.current(attacker), Duration::ZERO);
    assert_eq!(
        pg_fail(&p, attacker, &db).await.0,
        Duration::from_millis(100)
    );
    p.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_failed_logins_from_one_address_wait_longer_each_time() {
    use crate::badinput_mysql::raw_login;
    let db = crate::common::fresh_db(shared_pg(), "delay2");
    let my_db = crate::mysql::fresh_db("delay2_my");
    let p = start(&db, &my_db, "300ms").await;
    let port = p.mysql_addr().port();
    let (attacker, other) = (ip("127.0.0.3"), ip("127.0.0.4"));
    let mut delays = Vec::new();
    for _ in 0..4 {
        let start = Instant::now();
        let refused = raw_login(attacker, port, &my_db, "app", BAD).await;
        assert_eq!(refused, Err(1045));
        let delay = p.shared.auth_delay.current(attacker);
        assert!(start.elapsed() >= delay);
        delays.push(delay.as_millis());
    }
    assert_eq!(delays, [100, 200, 300, 300], "doubling up to the cap");
    // Unknown users count too.
    assert_eq!(
        raw_login(attacker, port, &my_db, "nobody", BAD).await,
        Err(1045)
    );
    assert_eq!(
        p.shared.auth_delay.current(attacker),
        Duration::from_millis(300)
    );
    raw_login(other, port, &my_db, "app", GOOD)
        .await
        .expect("another address logs in");
    assert_eq!(p.shared.auth_delay.current(other), Duration::ZERO);
    assert_eq!(
        p.shared.auth_delay.current(attacker),
        Duration::from_millis(300)
    );
    raw_login(attacker, port, &my_db, "app", GOOD)
        .await
        .expect("right password");
    assert_eq!(p.shared.auth_delay.current(attacker), Duration::ZERO);
    p.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_failure_delay_zero_answers_failures_at_once() {
    let db = crate::common::fresh_db(shared_pg(), "delay0");
    let my_db = crate::mysql::fresh_db("delay0_my");
    let p = start(&db, &my_db, "0s").await;
    for _ in 0..3 {
        let (delay, _) = pg_fail(&p, ip("127.0.0.5"), &db).await;
        assert_eq!(delay, Duration::ZERO);
    }
    assert_eq!(
        p.shared
            .auth_delay
            .delayed
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    p.shutdown_now().await;
}
