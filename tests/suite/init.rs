//! `sqlmux init --from URL` end to end: the configuration it writes for a
//! real PostgreSQL URL starts a proxy, and the URL it prints (with the
//! application's own password) connects through it.

use sqlmux::Proxy;
use sqlmux::config::Config;
use sqlmux::import::init::from_url;
use sqlmux_tests::{free_port, shared_pg};

use crate::common::connect_url;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_config_serves_the_url_it_prints() {
    let pg = shared_pg();
    // The shared cluster's `app` role logs in with SCRAM (password app-pass).
    let url = format!("postgres://app:app-pass@127.0.0.1:{}/app", pg.port());
    let listen = format!("127.0.0.1:{}", free_port());
    let init = from_url(&url, &listen).expect("init accepts the URL");
    init.imported
        .check
        .as_ref()
        .expect("the config passes check");
    let text = init
        .imported
        .toml
        .replace("listen = \"127.0.0.1:6434\"", "listen = \"127.0.0.1:0\"");
    let proxy = Proxy::start(Config::parse(&text).unwrap())
        .await
        .expect("proxy starts");
    assert_eq!(proxy.postgres_addr().to_string(), listen);
    let app_url = init.app_url.replace("****", "app-pass");
    assert_eq!(app_url, format!("postgres://app:app-pass@{listen}/app"));
    let c = connect_url(&app_url)
        .await
        .expect("the printed URL connects");
    let row = c
        .query_one("SELECT current_user::text, current_database()::text", &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("app".into(), "app".into())
    );
    proxy.shutdown_now().await;
}
