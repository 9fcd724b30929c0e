//! Client authentication and server logins.

use sqlmux_tests::shared_pg;

use crate::common::{connect_url, sqlstate, start, start_on};

/// One database entry for the shared cluster's `postgres` database.
fn users_body(users: &str) -> String {
    format!(
        "[[databases]]\nname = \"postgres\"\nhost = \"127.0.0.1\"\nport = {{pg_port}}\npool = {{ size = 2 }}\n\n{users}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_clients_and_scram_md5_cleartext_server_logins() {
    let p = start(&users_body(
        "[[users]]\nname = \"sqlmux_scram\"\npassword = \"scram-pass\"\n\
         [[users]]\nname = \"sqlmux_md5\"\npassword = \"md5-pass\"\n\
         [[users]]\nname = \"sqlmux_plain\"\npassword = \"plain-pass\"\n",
    ))
    .await;
    // The server demands scram-sha-256, md5 and cleartext respectively.
    for (user, pw) in [
        ("sqlmux_scram", "scram-pass"),
        ("sqlmux_md5", "md5-pass"),
        ("sqlmux_plain", "plain-pass"),
    ] {
        let c = p.connect(user, Some(pw), "postgres").await;
        let who: String = c
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(who, user);
    }
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_client_auth_with_an_md5_hash_in_the_config() {
    let hash = sqlmux_protocol::postgres::auth::md5_hash("sqlmux_md5", "md5-pass");
    let body = users_body(&format!(
        "[[users]]\nname = \"sqlmux_md5\"\npassword = \"{hash}\"\n"
    ));
    let p = start_on(shared_pg().port(), "md5", &body).await;
    let c = p.connect("sqlmux_md5", Some("md5-pass"), "postgres").await;
    c.simple_query("SELECT 1").await.unwrap();
    let e = connect_url(&p.url("sqlmux_md5", Some("wrong"), "postgres"))
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&e), "28P01");
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scram_verifier_alone_is_enough_to_log_in_to_a_scram_server() {
    // The verifier PostgreSQL itself stores for `app`; sqlmux never sees the password.
    let verifier = shared_pg()
        .psql(
            "postgres",
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'",
        )
        .trim()
        .to_owned();
    assert!(verifier.starts_with("SCRAM-SHA-256$"), "{verifier}");
    let p = start(&users_body(&format!(
        "[[users]]\nname = \"app\"\npassword = \"{verifier}\"\n"
    )))
    .await;
    // The client's SCRAM proof yields the ClientKey sqlmux then uses for the server login.
    let c = p.connect("app", Some("app-pass"), "postgres").await;
    let who: String = c
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, "app");
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_failures_get_their_sqlstates() {
    let p = start(&users_body(
        "[[users]]\nname = \"sqlmux_scram\"\npassword = \"scram-pass\"\n",
    ))
    .await;
    let wrong = connect_url(&p.url("sqlmux_scram", Some("nope"), "postgres"))
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&wrong), "28P01", "{wrong}");
    assert!(
        crate::common::err_text(&wrong)
            .contains("password authentication failed for user \"sqlmux_scram\"")
    );
    let unknown = connect_url(&p.url("nobody", Some("x"), "postgres"))
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&unknown), "28000", "{unknown}");
    let nodb = connect_url(&p.url("sqlmux_scram", Some("scram-pass"), "nodb"))
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&nodb), "3D000", "{nodb}");
    // The server rejecting sqlmux's login (wrong configured password) is
    // reported to the client with the server's reason.
    let p2 = start(
        "[[databases]]\nname = \"postgres\"\nhost = \"127.0.0.1\"\nport = {pg_port}\nuser = \"sqlmux_scram\"\npassword = \"not-the-password\"\n\n[[users]]\nname = \"u\"\npassword = \"p\"\n",
    )
    .await;
    let e = connect_url(&p2.url("u", Some("p"), "postgres"))
        .await
        .err()
        .unwrap();
    let text = crate::common::err_text(&e);
    assert!(
        text.contains("server login as user \"sqlmux_scram\""),
        "{text}"
    );
    assert!(text.contains("28P01"), "{text}");
    // Secrets never appear in the configuration's debug output.
    let cfg = p.proxy.shared.config.load();
    assert!(!format!("{cfg:?}").contains("scram-pass"));
    p.proxy.shutdown_now().await;
    p2.proxy.shutdown_now().await;
}
