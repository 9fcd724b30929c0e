//! Security: no password in the log at trace level on any login path, TLS
//! below 1.2 refused on every listener, the admin port's HTTP side refuses
//! anything that would change state, and no login without a password
//! unless `trust` is configured.

use std::process::Command;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use sqlmux::Proxy;
use sqlmux::config::Config;
use sqlmux_protocol::postgres::auth::md5_hash;
use sqlmux_tests::{run_command, shared_mariadb, shared_pg};

use crate::common::{connect_url, sqlstate, unique_db};

/// Set in the child process that runs the login paths at trace level.
const TRACE_CHILD_ENV: &str = "SQLMUX_TEST_TRACE_CHILD";
const ADMIN_PW: &str = "Admin-Secret-51c8";
const WRONG_PW: &str = "Wrong-Secret-2b97";

/// Starts a proxy from a full configuration text.
async fn start_text(text: &str) -> Proxy {
    let cfg = Config::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    Proxy::start(cfg).await.expect("proxy starts")
}

/// tokio-postgres URL for `port`.
fn pg_url(port: u16, user: &str, pw: &str, db: &str) -> String {
    format!("host=127.0.0.1 port={port} user={user} password={pw} dbname={db} sslmode=disable")
}

/// Logs in (expecting success) and runs one query (SHOW VERSION on the
/// admin console).
async fn pg_login_ok(url: &str) {
    let c = connect_url(url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let q = if url.contains("dbname=sqlmux") {
        "SHOW VERSION"
    } else {
        "SELECT 1"
    };
    c.simple_query(q).await.unwrap();
}

/// Logs in expecting a refusal with `code`.
async fn pg_login_fails(url: &str, code: &str) {
    let e = connect_url(url).await.expect_err("login refused");
    assert_eq!(sqlstate(&e), code, "{e}");
}

/// Every PostgreSQL login path (SCRAM, md5, auth_query, the admin console,
/// HTTP basic auth), each succeeding and failing. Returns the secrets.
async fn postgres_login_paths() -> Vec<String> {
    let pg = shared_pg();
    let (scram, md5, aq) = (unique_db("sec_s"), unique_db("sec_m"), unique_db("sec_q"));
    let (scram_pw, md5_pw, aq_pw) = ("Scram-Secret-7f3a", "Md5-Secret-9c2e", "Aq-Secret-0d4b");
    pg.create_role(&scram, Some(scram_pw), "scram-sha-256");
    pg.create_role(&md5, Some(md5_pw), "md5");
    pg.create_role(&aq, Some(aq_pw), "scram-sha-256");
    let users = format!(
        "[[databases]]\nname = \"postgres\"\nhost = \"127.0.0.1\"\nport = {}\n\n\
         [[users]]\nname = \"{scram}\"\npassword = \"{scram_pw}\"\n\n[[users]]\nname = \"{md5}\"\npassword = \"{md5_pw}\"\n\n\
         [[users]]\nname = \"admin\"\npassword = \"{ADMIN_PW}\"\n\n[[users]]\nname = \"postgres\"\n",
        pg.port()
    );
    for (auth, user, pw) in [("scram-sha-256", &scram, scram_pw), ("md5", &md5, md5_pw)] {
        let text = format!(
            "[postgres]\nlisten = \"127.0.0.1:0\"\nauth = \"{auth}\"\nauth_user = \"postgres\"\n\
             [admin]\nlisten = \"127.0.0.1:0\"\nusers = [\"admin\"]\n{users}"
        );
        let p = start_text(&text).await;
        let port = p.postgres_addr().port();
        pg_login_ok(&pg_url(port, user, pw, "postgres")).await;
        pg_login_fails(&pg_url(port, user, WRONG_PW, "postgres"), "28P01").await;
        // A user only the server knows (postgres.auth_query).
        pg_login_ok(&pg_url(port, &aq, aq_pw, "postgres")).await;
        pg_login_fails(&pg_url(port, &aq, WRONG_PW, "postgres"), "28P01").await;
        // The admin console and the HTTP API.
        let admin = p.admin_addr().port();
        pg_login_ok(&pg_url(admin, "admin", ADMIN_PW, "sqlmux")).await;
        pg_login_fails(&pg_url(admin, "admin", WRONG_PW, "sqlmux"), "28P01").await;
        let pools = crate::web::get(admin, "/api/pools", Some(("admin", ADMIN_PW))).await;
        assert_eq!(pools.0, 200, "{}", pools.2);
        let refused = crate::web::get(admin, "/api/pools", Some(("admin", WRONG_PW))).await;
        assert_eq!(refused.0, 401);
        p.shutdown_now().await;
    }
    use base64::Engine as _;
    let basic = |pw: &str| base64::engine::general_purpose::STANDARD.encode(format!("admin:{pw}"));
    vec![
        scram_pw.into(),
        md5_pw.into(),
        aq_pw.into(),
        md5_hash(&md5, md5_pw),
        md5_hash(&scram, scram_pw),
        basic(ADMIN_PW),
        basic(WRONG_PW),
    ]
}

/// MySQL logins with mysql_native_password and caching_sha2_password,
/// each succeeding and failing. Returns the secrets.
async fn mysql_login_paths() -> Vec<String> {
    let m = shared_mariadb();
    let db = crate::mysql::fresh_db("sec_my");
    let user = unique_db("secmy");
    let pw = "My-Secret-3e61";
    m.create_user(&user, pw);
    m.sql(&format!("GRANT ALL ON `{db}`.* TO '{user}'@'%';"));
    for plugin in ["mysql_native_password", "caching_sha2_password"] {
        let text = format!(
            "[postgres]\nlisten = \"127.0.0.1:0\"\n[mysql]\nlisten = \"127.0.0.1:0\"\nauth = \"{plugin}\"\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n\
             [[databases]]\nname = \"{db}\"\nprotocol = \"mysql\"\nhost = \"127.0.0.1\"\nport = {}\n\n\
             [[users]]\nname = \"{user}\"\npassword = \"{pw}\"\n",
            m.port()
        );
        let p = start_text(&text).await;
        let port = p.mysql_addr().port();
        let url =
            |pw: &str| format!("mysql://{user}:{pw}@127.0.0.1:{port}/{db}?prefer_socket=false");
        let opts = mysql_async::Opts::from_url(&url(pw)).unwrap();
        let mut c = mysql_async::Conn::new(opts).await.expect("MySQL login");
        let v: Option<i64> = c.query_first("SELECT 1").await.unwrap();
        assert_eq!(v, Some(1));
        c.disconnect().await.unwrap();
        let opts = mysql_async::Opts::from_url(&url(WRONG_PW)).unwrap();
        let e = mysql_async::Conn::new(opts).await.expect_err("refused");
        assert!(e.to_string().contains("1045"), "{e}");
        p.shutdown_now().await;
    }
    vec![pw.into()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs in a child process started by passwords_never_reach_the_log_at_trace_level"]
async fn login_paths_at_trace_level() {
    assert!(
        std::env::var_os(TRACE_CHILD_ENV).is_some(),
        "run by its parent test"
    );
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let mut secrets = postgres_login_paths().await;
    secrets.extend(mysql_login_paths().await);
    secrets.extend([ADMIN_PW.to_owned(), WRONG_PW.to_owned()]);
    // Hex, so that the secrets themselves never appear in the output.
    let hex: Vec<String> = secrets
        .iter()
        .map(|s| s.bytes().map(|b| format!("{b:02x}")).collect())
        .collect();
    println!("\nSECRETS-HEX {}", hex.join(","));
}

fn unhex(h: &str) -> String {
    let bytes: Vec<u8> = (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
        .collect();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn passwords_never_reach_the_log_at_trace_level() {
    let out = crate::common::run_ignored_test(
        module_path!(),
        "login_paths_at_trace_level",
        TRACE_CHILD_ENV,
        Duration::from_secs(600),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    let secrets: Vec<String> = stdout
        .lines()
        .find_map(|l| l.strip_prefix("SECRETS-HEX "))
        .expect("the child lists its secrets")
        .split(',')
        .map(unhex)
        .collect();
    assert!(secrets.len() >= 9, "{secrets:?}");
    // The log is at trace level and covers the logins.
    assert!(
        stderr.contains("TRACE") && stderr.contains("DEBUG"),
        "no trace log:\n{stderr}"
    );
    assert!(
        stderr.contains("failed login"),
        "no failed login logged:\n{stderr}"
    );
    let log = format!("{stdout}\n{stderr}");
    for s in &secrets {
        assert!(
            !log.contains(s.as_str()),
            "a secret ({} bytes) is in the log",
            s.len()
        );
    }
}

/// Runs `openssl s_client` against `port` forcing `version` (`-tls1_1`,
/// `-tls1_2`), with `starttls` (postgres, mysql) when given; (success,
/// output).
fn s_client(port: u16, version: &str, starttls: Option<&str>) -> (bool, String) {
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_client",
        "-connect",
        &format!("127.0.0.1:{port}"),
        version,
    ]);
    // OpenSSL 3 refuses to offer TLS 1.1 at its default security level.
    cmd.args(["-cipher", "DEFAULT:@SECLEVEL=0"]);
    if let Some(proto) = starttls {
        cmd.args(["-starttls", proto]);
    }
    let out = run_command(cmd, Some(b""), Duration::from_secs(30)).expect("openssl runs");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success() && text.contains("TLSv1.2"), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_below_1_2_is_refused_on_every_listener() {
    let certs = crate::dropin::make_certs();
    let tls = crate::badinput::tls_line(&certs, "prefer");
    let text = format!(
        "[postgres]\nlisten = \"127.0.0.1:0\"\nauth = \"trust\"\n{tls}\n[mysql]\nlisten = \"127.0.0.1:0\"\n{tls}\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n{tls}\n"
    );
    let p = start_text(&text).await;
    let ports = [
        ("PostgreSQL", p.postgres_addr().port(), Some("postgres")),
        ("MySQL", p.mysql_addr().port(), Some("mysql")),
        ("admin console", p.admin_addr().port(), Some("postgres")),
        ("admin HTTPS", p.admin_addr().port(), None),
    ];
    for (what, port, starttls) in ports {
        let (ok, out) = tokio::task::spawn_blocking(move || s_client(port, "-tls1_2", starttls))
            .await
            .unwrap();
        assert!(ok, "{what}: TLS 1.2 should work:\n{out}");
        let (ok, out) = tokio::task::spawn_blocking(move || s_client(port, "-tls1_1", starttls))
            .await
            .unwrap();
        assert!(!ok, "{what}: TLS 1.1 accepted:\n{out}");
        // The server's alert (protocol_version or handshake_failure), to
        // a client that did offer TLS 1.1 (not a client-side refusal).
        let refused = out.contains("SSL alert number") && out.contains("TLSv1.1");
        assert!(refused, "{what}: not refused by the server:\n{out}");
    }
    p.shutdown_now().await;
}

/// One HTTP request with `method`, optional basic credentials: status.
async fn http_status(port: u16, method: &str, path: &str, auth: Option<(&str, &str)>) -> u16 {
    crate::web::request(port, method, path, auth).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_http_side_changes_nothing_without_admin_credentials() {
    let db = crate::common::fresh_db(shared_pg(), "sec_http");
    let text = format!(
        "[postgres]\nlisten = \"127.0.0.1:0\"\nauth = \"trust\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         users = [\"admin\"]\nstats_users = [\"monitor\"]\n\
         [[databases]]\nname = \"{db}\"\nhost = \"127.0.0.1\"\nport = {}\n\n\
         [[users]]\nname = \"postgres\"\n\n[[users]]\nname = \"admin\"\npassword = \"{ADMIN_PW}\"\n\n\
         [[users]]\nname = \"monitor\"\npassword = \"monitor-pw\"\n",
        shared_pg().port()
    );
    let p = start_text(&text).await;
    let admin = p.admin_addr().port();
    let paths = [
        "/api/pools",
        "/api/statements",
        "/pause",
        "/reload",
        "/shutdown",
        "/",
    ];
    let creds = [
        None,
        Some(("monitor", "monitor-pw")),
        Some(("admin", WRONG_PW)),
    ];
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        for path in paths {
            for auth in creds {
                let status = http_status(admin, method, path, auth).await;
                assert!(
                    matches!(status, 401 | 405),
                    "{method} {path} {auth:?}: {status}"
                );
            }
        }
    }
    // Nothing was paused, reloaded or shut down: clients are still served.
    assert_eq!(http_status(admin, "GET", "/readyz", None).await, 200);
    let url = format!(
        "host=127.0.0.1 port={} user=postgres dbname={db}",
        p.postgres_addr().port()
    );
    pg_login_ok(&url).await;
    // The console refuses control commands to a stats user.
    let m = connect_url(&pg_url(admin, "monitor", "monitor-pw", "sqlmux"))
        .await
        .unwrap();
    for cmd in [
        "PAUSE",
        "RELOAD",
        "SHUTDOWN",
        &format!("RECONNECT {db}"),
        &format!("KILL {db}"),
    ] {
        let e = m.simple_query(cmd).await.unwrap_err();
        assert_eq!(sqlstate(&e), "42501", "{cmd}: {e}");
    }
    pg_login_ok(&url).await;
    p.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_login_without_a_password_unless_trust_is_configured() {
    let pg = shared_pg();
    let db = crate::common::fresh_db(pg, "sec_trust");
    let users = format!(
        "[[databases]]\nname = \"{db}\"\nhost = \"127.0.0.1\"\nport = {}\n\n\
         [[users]]\nname = \"postgres\"\n\n[[users]]\nname = \"withpw\"\npassword = \"With-Pw-1\"\n",
        pg.port()
    );
    for auth in ["scram-sha-256", "md5", "trust"] {
        let text = format!(
            "[postgres]\nlisten = \"127.0.0.1:0\"\nauth = \"{auth}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{users}"
        );
        let p = start_text(&text).await;
        let port = p.postgres_addr().port();
        // A user without a password in [[users]], no password sent.
        let url = format!("host=127.0.0.1 port={port} user=postgres dbname={db}");
        let nopw = connect_url(&url).await;
        // A user with one, and an empty password sent.
        let empty = connect_url(&pg_url(port, "withpw", "''", &db)).await;
        if auth == "trust" {
            nopw.expect("trust lets a user without a password in");
        } else {
            assert_eq!(sqlstate(&nopw.expect_err("refused")), "28P01", "{auth}");
            assert_eq!(sqlstate(&empty.expect_err("refused")), "28P01", "{auth}");
        }
        p.shutdown_now().await;
    }
    // MySQL: a user with a password is refused an empty one.
    let mdb = crate::mysql::fresh_db("sec_mytrust");
    let text = format!(
        "[postgres]\nlisten = \"127.0.0.1:0\"\n[mysql]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[databases]]\nname = \"{mdb}\"\nprotocol = \"mysql\"\nhost = \"127.0.0.1\"\nport = {}\n\n\
         [[users]]\nname = \"app\"\npassword = \"app-pass\"\n",
        shared_mariadb().port()
    );
    let p = start_text(&text).await;
    let port = p.mysql_addr().port();
    let url = format!("mysql://app@127.0.0.1:{port}/{mdb}?prefer_socket=false");
    let e = mysql_async::Conn::new(mysql_async::Opts::from_url(&url).unwrap())
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("1045"), "{e}");
    p.shutdown_now().await;
    // A user without a password logs in on MySQL only under mysql.trust.
    for trust in [false, true] {
        // Servers log in with the entry's credentials; the client has none.
        let text = text
            .replace("password = \"app-pass\"\n", "")
            .replace("[mysql]\n", &format!("[mysql]\ntrust = {trust}\n"))
            .replace(
                "protocol = \"mysql\"\n",
                "protocol = \"mysql\"\nuser = 'app'\npassword = 'app-pass'\n",
            );
        let p = start_text(&text).await;
        let port = p.mysql_addr().port();
        let url = format!("mysql://app@127.0.0.1:{port}/{mdb}?prefer_socket=false");
        let r = mysql_async::Conn::new(mysql_async::Opts::from_url(&url).unwrap()).await;
        match (trust, r) {
            (false, Err(e)) => assert!(e.to_string().contains("1045"), "{e}"),
            (true, Ok(c)) => drop(c),
            (t, r) => panic!("mysql.trust = {t}: {:?}", r.map(|_| "logged in")),
        }
        p.shutdown_now().await;
    }
}
