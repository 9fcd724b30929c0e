//! Parameters that follow the client from server to server.

use sqlmux_tests::shared_pg;

use crate::common::{connect_url, fresh_db, start_trust, trust_db};

async fn show(c: &tokio_postgres::Client, name: &str) -> String {
    c.query_one(&format!("SELECT current_setting('{name}')"), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_parameters_and_sets_follow_each_client_across_servers() {
    let pg = shared_pg();
    let db = fresh_db(pg, "params");
    pg.psql(
        &db,
        "CREATE SCHEMA s1; CREATE TABLE s1.only_here (v int); INSERT INTO s1.only_here VALUES (42)",
    );
    let p = start_trust(&trust_db(&db, "size = 2")).await;
    let url_a = format!(
        "{} application_name=alpha options='-c TimeZone=Asia/Tokyo'",
        p.url("postgres", None, &db)
    );
    let a = connect_url(&url_a).await.unwrap();
    let b = p.connect("postgres", None, &db).await;
    // A changes unreported (search_path, statement_timeout) and reported (DateStyle) settings.
    a.batch_execute("SET search_path TO s1, public")
        .await
        .unwrap();
    a.batch_execute("SET statement_timeout = '12s'")
        .await
        .unwrap();
    a.batch_execute("SET DateStyle = 'SQL, DMY'").await.unwrap();
    // A SET inside a rolled-back transaction does not stick.
    a.batch_execute("BEGIN; SET work_mem = '7MB'; ROLLBACK")
        .await
        .unwrap();
    // Interleave many transactions so each client lands on both servers.
    for _ in 0..20 {
        let (ra, rb) = futures::join!(
            async {
                (
                    show(&a, "application_name").await,
                    show(&a, "TimeZone").await,
                    show(&a, "search_path").await,
                    show(&a, "statement_timeout").await,
                    show(&a, "DateStyle").await,
                    show(&a, "work_mem").await,
                )
            },
            async {
                (
                    show(&b, "application_name").await,
                    show(&b, "TimeZone").await,
                    show(&b, "search_path").await,
                    show(&b, "statement_timeout").await,
                    show(&b, "DateStyle").await,
                )
            }
        );
        assert_eq!(ra.0, "alpha");
        assert_eq!(ra.1, "Asia/Tokyo");
        assert_eq!(ra.2, "s1, public");
        assert_eq!(ra.3, "12s");
        assert_eq!(ra.4, "SQL, DMY");
        assert_eq!(ra.5, "4MB", "SET inside a rolled-back transaction leaked");
        assert_eq!(rb.0, "", "application_name leaked to another client");
        assert_ne!(rb.1, "Asia/Tokyo", "TimeZone leaked to another client");
        assert_eq!(
            rb.2, "\"$user\", public",
            "search_path leaked to another client"
        );
        assert_eq!(rb.3, "0", "statement_timeout leaked to another client");
        assert_eq!(rb.4, "ISO, MDY", "DateStyle leaked to another client");
    }
    let v: i32 = a
        .query_one("SELECT v FROM only_here", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 42);
    // RESET brings the default back for this client.
    a.batch_execute("RESET search_path").await.unwrap();
    for _ in 0..4 {
        assert_eq!(show(&a, "search_path").await, "\"$user\", public");
    }
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sees_parameter_status_as_if_connected_directly() {
    let db = fresh_db(shared_pg(), "pstat");
    let p = start_trust(&trust_db(&db, "size = 1")).await;
    // tokio-postgres sends client_encoding=UTF8 and DateStyle=ISO at startup;
    // psql reports server_version from ParameterStatus.
    let port = p.port;
    let db2 = db.clone();
    let out = tokio::task::spawn_blocking(move || {
        sqlmux_tests::psql_tcp(
            port,
            "postgres",
            None,
            &db2,
            "\\echo :SERVER_VERSION_NAME :ENCODING\nSHOW integer_datetimes;",
        )
    })
    .await
    .unwrap()
    .unwrap();
    let direct = shared_pg().psql("postgres", "SHOW server_version");
    assert!(out.starts_with(direct.trim()), "{out} vs {direct}");
    assert!(out.contains("UTF8"), "{out}");
    assert!(out.contains("on"), "{out}");
    p.proxy.shutdown_now().await;
}
