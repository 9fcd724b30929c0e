//! A short soak in the test command: 1,000 clients (500 per port) doing
//! short transactions through pools of 4 for 30 s (`SQLMUX_SOAK_SECS`
//! changes it) with a RELOAD every second. No error but the checkout
//! timeouts a full pool gives by design; afterwards nothing is lent,
//! waiting or logging in, and each pool is within its size.
//! `scripts/soak.sh` runs the long one against a sqlmux process.

use std::time::Duration;

use sqlmux::Proxy;
use sqlmux::config::Config;
use sqlmux_tests::soak::{self, SoakOptions};
use sqlmux_tests::{shared_mariadb, shared_pg};

use super::util::{ADMIN_PW, Db, admin, config_text, my_url, pg_url, settled};
use crate::common::fresh_db;
use crate::mysql::fresh_db as my_fresh_db;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_clients_with_reloads_see_no_error_but_checkout_timeouts() {
    soak::raise_nofile();
    let secs = std::env::var("SQLMUX_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let pg_db = fresh_db(shared_pg(), "flt_soak");
    let my_db = my_fresh_db("flt_soak");
    let dir = std::env::temp_dir().join(format!("sqlmux-soak-{}-{pg_db}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sqlmux.toml");
    let dbs = [
        Db {
            name: &pg_db,
            protocol: "postgres",
            port: shared_pg().port(),
            pool: "size = 4",
        },
        Db {
            name: &my_db,
            protocol: "mysql",
            port: shared_mariadb().port(),
            pool: "size = 4",
        },
    ];
    std::fs::write(&path, config_text("", &dbs)).unwrap();
    let p = Proxy::start(Config::load(&path).unwrap())
        .await
        .expect("proxy starts");
    let opts = SoakOptions {
        pg_clients: 500,
        my_clients: 500,
        duration: Duration::from_secs(secs),
        pg_url: pg_url(&p, &pg_db),
        my_url: my_url(&p, &my_db),
        admin: Some((p.admin_addr(), "admin".into(), ADMIN_PW.into())),
        reload_every: Some(Duration::from_secs(1)),
        rss_pid: std::process::id(),
        think: Duration::from_millis(500),
    };
    let report = soak::run(opts).await;
    eprintln!("soak, 1000 clients, {secs} s:\n{}", report.summary());
    assert_eq!(report.unexpected, 0, "{}", report.summary());
    assert!(report.pg_transactions > 0 && report.my_transactions > 0);
    assert!(report.reloads > 0);
    let a = admin(&p).await;
    for db in [&pg_db, &my_db] {
        let pic = settled(&a, db).await;
        assert!(pic.servers <= 4, "{db}: {pic:?}");
    }
    p.shutdown_now().await;
    let _ = std::fs::remove_dir_all(&dir);
}
