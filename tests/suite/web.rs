//! The web page and JSON API on the admin port: basic auth, the API's
//! answers after real traffic, and the page itself rendered by headless
//! Chromium (no script errors, the pool and the statement on the page, the
//! histogram of a statement opened with `#fp=`).
//!
//! Set `SQLMUX_SCREENSHOT=path.png` to also save a screenshot of the page.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use sqlmux_tests::{shared_pg, which};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{TestProxy, fresh_db, start_trust, trust_db};

const ADMIN_PW: &str = "web-admin-pass";
const MONITOR_PW: &str = "web-monitor-pass";

/// `[admin]` keys plus an admin user (plain password), a stats user (SCRAM
/// verifier only) and a trust database `db`.
fn body(db: &str, admin_extra: &str) -> String {
    let verifier = sqlmux_protocol::postgres::auth::ScramVerifier::from_password(
        MONITOR_PW,
        b"web-salt",
        4096,
    );
    format!(
        "users = [\"admin\"]\nstats_users = [\"monitor\"]\n{admin_extra}\n{}\n\
         [[users]]\nname = \"admin\"\npassword = \"{ADMIN_PW}\"\n\n\
         [[users]]\nname = \"monitor\"\npassword = \"{verifier}\"\n",
        trust_db(db, "size = 2")
    )
}

fn admin_port(p: &TestProxy) -> u16 {
    p.proxy.admin_addr().port()
}

/// A GET with optional basic credentials: (status, head, body).
pub(crate) async fn get(
    port: u16,
    path: &str,
    auth: Option<(&str, &str)>,
) -> (u16, String, String) {
    request(port, "GET", path, auth).await
}

/// One request with `method`, an empty body and optional basic
/// credentials: (status, head, body).
pub(crate) async fn request(
    port: u16,
    method: &str,
    path: &str,
    auth: Option<(&str, &str)>,
) -> (u16, String, String) {
    use base64::Engine as _;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the admin port");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
    if method != "GET" {
        req.push_str("Content-Length: 0\r\n");
    }
    if let Some((u, pw)) = auth {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{pw}"));
        req.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf))
        .await
        .expect("HTTP response in time")
        .unwrap();
    let text = String::from_utf8(buf).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, head.to_owned(), body.to_owned())
}

async fn get_json(port: u16, path: &str) -> serde_json::Value {
    let (status, _, body) = get(port, path, None).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_and_api_need_an_admin_or_stats_user_and_probes_stay_open() {
    let db = fresh_db(shared_pg(), "web_auth");
    let p = start_trust(&body(&db, "")).await;
    let port = admin_port(&p);
    for path in ["/", "/api/pools", "/api/statements", "/app.js"] {
        let (status, head, _) = get(port, path, None).await;
        assert_eq!(status, 401, "{path} without credentials");
        assert!(
            head.contains("WWW-Authenticate: Basic realm=\"sqlmux\""),
            "{head}"
        );
        let (status, _, _) = get(port, path, Some(("admin", "wrong"))).await;
        assert_eq!(status, 401, "{path} with a wrong password");
        let (status, _, _) = get(port, path, Some(("postgres", ""))).await;
        assert_eq!(status, 401, "{path} as a user that is not an admin");
        assert_eq!(
            get(port, path, Some(("admin", ADMIN_PW))).await.0,
            200,
            "{path} as admin"
        );
        // The stats user has only a SCRAM verifier: checked by recomputing.
        let (status, _, _) = get(port, path, Some(("monitor", MONITOR_PW))).await;
        assert_eq!(status, 200, "{path} as the stats user");
    }
    for path in ["/metrics", "/healthz", "/readyz"] {
        assert_eq!(get(port, path, None).await.0, 200, "{path} stays open");
    }
    // Read-only: other methods are refused.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(b"POST /api/pools HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    assert!(buf.starts_with("HTTP/1.1 405"), "{buf}");
    p.proxy.shutdown_now().await;

    let p = start_trust(&body(&db, "metrics_auth = true")).await;
    let port = admin_port(&p);
    assert_eq!(get(port, "/metrics", None).await.0, 401);
    assert_eq!(
        get(port, "/metrics", Some(("monitor", MONITOR_PW))).await.0,
        200
    );
    assert_eq!(get(port, "/healthz", None).await.0, 200);
    p.proxy.shutdown_now().await;
}

/// Runs a little traffic; returns the normalized text of the repeated
/// statement.
async fn traffic(p: &TestProxy, db: &str) -> &'static str {
    let c = p.connect("postgres", None, db).await;
    for i in 0..25 {
        c.simple_query(&format!(
            "SELECT count(*) FROM pg_class WHERE relpages = {i}"
        ))
        .await
        .unwrap();
    }
    c.simple_query("SELECT pg_sleep(0.02)").await.unwrap();
    "select count(*) from pg_class where relpages = $1"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_answers_pools_statements_histogram_and_events_as_json() {
    let db = fresh_db(shared_pg(), "web_api");
    let p = start_trust(&body(&db, "http_auth = false")).await;
    let port = admin_port(&p);
    let query = traffic(&p, &db).await;

    let pools = get_json(port, "/api/pools").await;
    let pool = pools
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["database"] == db.as_str())
        .unwrap_or_else(|| panic!("pool of {db} in {pools}"));
    assert_eq!(pool["protocol"], "postgres");
    assert!(pool["checkouts"].as_u64().unwrap() >= 26, "{pool}");
    assert!(pool["checkout_wait_p99_ms"].as_f64().is_some(), "{pool}");

    let statements = get_json(port, "/api/statements").await;
    let st = statements
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["query"] == query && r["database"] == db.as_str())
        .unwrap_or_else(|| panic!("{query} in {statements}"));
    assert_eq!(st["calls"], 25);
    assert_eq!(st["protocol"], "postgres");
    assert!(st["p99_ms"].as_f64().unwrap() > 0.0, "{st}");
    let fp = st["fingerprint"].as_str().unwrap();

    let one = get_json(port, &format!("/api/statements/{fp}")).await;
    assert_eq!(one["query"], query);
    assert_eq!(one["fingerprint"], fp);
    let hist = one["histogram"].as_array().unwrap();
    let samples: u64 = hist.iter().map(|b| b["count"].as_u64().unwrap()).sum();
    assert_eq!(samples, 25, "{one}");
    assert!(hist.iter().all(|b| b["le_ms"].as_f64().is_some()), "{one}");
    for k in ["p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms"] {
        assert!(one[k].as_f64().is_some(), "{k} in {one}");
    }
    assert_eq!(
        get(port, "/api/statements/0123456789abcdef", None).await.0,
        404
    );
    assert_eq!(get(port, "/api/statements/nope", None).await.0, 400);
    assert!(get_json(port, "/api/n_plus_one").await.is_array());
    assert!(get_json(port, "/api/leaks").await.is_array());
    p.proxy.shutdown_now().await;
}

/// Chromium from Debian's `chromium` package (or any on PATH).
fn chromium() -> PathBuf {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|n| which(n))
        .expect("chromium is not installed: apt-get install -y chromium (scripts/test.sh does)")
}

/// Headless Chromium on `url` with `extra` arguments: (success, stdout,
/// stderr).
fn headless(url: &str, extra: &[String]) -> (bool, String, String) {
    let profile = std::env::temp_dir().join(format!(
        "sqlmux-chromium-{}-{}",
        std::process::id(),
        extra.len()
    ));
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--no-first-run",
        "--disable-extensions",
        "--disable-dev-shm-usage",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=8000",
        "--window-size=1400,1600",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url);
    let out =
        sqlmux_tests::run_command(cmd, None, Duration::from_secs(120)).expect("chromium runs");
    let _ = std::fs::remove_dir_all(&profile);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Console errors Chromium logged: uncaught exceptions, failed resources,
/// CSP violations.
fn console_errors(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught") || l.contains("Refused to"))
        .filter(|l| !l.contains("favicon"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_renders_pools_statements_and_a_histogram_without_errors() {
    let db = fresh_db(shared_pg(), "web_page");
    let p = start_trust(&body(&db, "http_auth = false")).await;
    let port = admin_port(&p);
    let query = traffic(&p, &db).await;
    let statements = get_json(port, "/api/statements").await;
    let fp = statements
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["query"] == query)
        .and_then(|r| r["fingerprint"].as_str())
        .expect("the statement is listed")
        .to_owned();

    let url = format!("http://127.0.0.1:{port}/#fp={fp}");
    let url2 = url.clone();
    let (ok, dom, stderr) =
        tokio::task::spawn_blocking(move || headless(&url2, &["--dump-dom".to_owned()]))
            .await
            .unwrap();
    assert!(ok, "chromium failed:\n{stderr}");
    assert!(
        console_errors(&stderr).is_empty(),
        "console errors:\n{stderr}"
    );
    assert!(
        dom.contains("<div id=\"errors\" class=\"errors\" hidden=\"\"></div>"),
        "the page reported script errors:\n{dom}"
    );
    assert!(dom.contains(query), "statement text missing:\n{dom}");
    let pools = dom.split("id=\"pools\"").nth(1).expect("pools table");
    assert!(
        pools.contains(&format!("<td>{db}</td>")),
        "pool missing:\n{dom}"
    );
    let detail = dom.split("id=\"detail\"").nth(1).expect("detail panel");
    assert!(
        !detail.starts_with(" hidden"),
        "detail panel hidden:\n{dom}"
    );
    assert!(detail.contains(&fp), "fingerprint in the detail panel");
    assert!(
        detail.contains("class=\"bar\""),
        "no histogram bars:\n{detail}"
    );
    let samples: u64 = detail
        .split("data-count=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(samples, 25, "the bars hold every execution:\n{detail}");

    if let Ok(path) = std::env::var("SQLMUX_SCREENSHOT") {
        let shot = vec![
            format!("--screenshot={path}"),
            "--hide-scrollbars".to_owned(),
        ];
        let (ok, _, stderr) = tokio::task::spawn_blocking(move || headless(&url, &shot))
            .await
            .unwrap();
        assert!(ok, "screenshot failed:\n{stderr}");
    }
    p.proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_admin_tls_the_page_and_api_are_https_and_psql_uses_ssl() {
    let certs = crate::dropin::make_certs();
    let db = fresh_db(shared_pg(), "webtls");
    let tls = format!(
        "tls = {{ cert = \"{}\", key = \"{}\", mode = \"require\" }}",
        certs.cert.display(),
        certs.key.display()
    );
    let p = start_trust(&body(&db, &tls)).await;
    let port = admin_port(&p);
    // Plain HTTP: the probes stay open, the API with its password is not
    // served in clear text.
    assert_eq!(get(port, "/healthz", None).await.0, 200);
    let (status, _, text) = get(port, "/api/pools", Some(("admin", ADMIN_PW))).await;
    assert_eq!(status, 403, "{text}");
    let c = p.connect("postgres", None, &db).await;
    c.simple_query("SELECT 1").await.unwrap();
    let ca = certs.ca.clone();
    let db2 = db.clone();
    let (https, console) = tokio::task::spawn_blocking(move || {
        let mut curl = Command::new("curl");
        curl.args(["-sS", "--fail", "--cacert"])
            .arg(&ca)
            .args(["-u", &format!("admin:{ADMIN_PW}")])
            .arg(format!("https://localhost:{port}/api/pools"));
        let https = crate::common::run(curl, Duration::from_secs(30));
        let mut psql = Command::new(sqlmux_tests::pg_tool("psql"));
        psql.args(["-X", "-A", "-t", "-c", "SHOW VERSION"]).arg(format!(
            "host=localhost port={port} user=admin password={ADMIN_PW} dbname=sqlmux sslmode=verify-full sslrootcert={}",
            ca.display()
        ));
        let console = crate::common::run(psql, Duration::from_secs(30));
        (https, console)
    })
    .await
    .unwrap();
    assert!(
        https.0 && https.1.contains(&db2),
        "HTTPS /api/pools: {}",
        https.1
    );
    assert!(
        console.0 && console.1.contains("sqlmux"),
        "psql over SSL: {}",
        console.1
    );
    p.proxy.shutdown_now().await;
}
