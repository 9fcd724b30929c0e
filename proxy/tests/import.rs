//! `sqlmux import` and `sqlmux init` through the real binary: PgBouncer's
//! own example configuration and hand-written ones covering every mapped
//! key become configurations that pass `sqlmux check`, and every setting
//! is either carried over or named, with its file and line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sqlmux(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sqlmux"))
        .args(args)
        .output()
        .expect("sqlmux runs")
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sqlmux-import-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `sqlmux check` on a file; panics with its output on failure.
fn check(path: &Path) {
    let out = sqlmux(&["check", "--config", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "sqlmux check failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// PgBouncer's example configuration from Debian's package (installed, or
/// extracted into target/pgbouncer-example by scripts/test.sh).
fn pgbouncer_example() -> PathBuf {
    let extracted = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/pgbouncer-example/usr/share/doc/pgbouncer/examples/pgbouncer.ini");
    [
        PathBuf::from("/usr/share/doc/pgbouncer/examples/pgbouncer.ini"),
        PathBuf::from("/etc/pgbouncer/pgbouncer.ini"),
        extracted,
    ]
    .into_iter()
    .find(|p| p.exists())
    .expect("PgBouncer's example pgbouncer.ini is missing: run scripts/test.sh (it extracts it from Debian's pgbouncer package)")
}

#[test]
fn pgbouncers_example_configuration_imports_and_passes_check() {
    let ini = pgbouncer_example();
    let userlist = ini.with_file_name("userlist.txt");
    let out_path = dir("example").join("sqlmux.toml");
    let out = sqlmux(&[
        "import",
        ini.to_str().unwrap(),
        userlist.to_str().unwrap(),
        "-o",
        out_path.to_str().unwrap(),
    ]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    check(&out_path);
    let toml = std::fs::read_to_string(&out_path).unwrap();
    // Everything the example sets is carried over or named with its line.
    let ini_text = std::fs::read_to_string(&ini).unwrap();
    for (i, line) in ini_text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with(';') || l.starts_with('#') || l.starts_with('[') {
            continue;
        }
        let key = l.split('=').next().unwrap().trim();
        let at = format!("{}:{}", ini.display(), i + 1);
        let named = toml.lines().any(|t| t.contains(&at)) && stderr.contains(&at);
        let mapped = toml
            .lines()
            .any(|t| t.split_once('#').is_some_and(|(_, c)| c.contains(key)));
        assert!(
            named || mapped,
            "{key} (line {}) silently dropped:\n{toml}\n{stderr}",
            i + 1
        );
    }
    assert!(toml.contains("auth = \"md5\""), "{toml}");
    assert!(toml.contains("listen = \"localhost:6432\""), "{toml}");
    assert!(toml.contains("name = \"marko\""), "{toml}");
    let meta = std::fs::metadata(&out_path).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        meta.permissions().mode() & 0o077,
        0,
        "the file holds passwords"
    );
}

/// A self-signed certificate and key (openssl), for the TLS keys.
fn cert(d: &Path) -> (PathBuf, PathBuf) {
    let (crt, key) = (d.join("server.crt"), d.join("server.key"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    (crt, key)
}

const INI: &str = "\
;; every setting sqlmux maps, and some it does not
[databases]
app = host=db1.internal,db2.internal port=5433 dbname=app_prod pool_size=8 min_pool_size=1 pool_mode=transaction
forced = host=10.0.0.7 user=svc password=svc-secret max_db_client_connections=50 server_lifetime=1800 query_wait_timeout=30
local = host=/var/run/postgresql dbname=local connect_query='SELECT 1'
* = host=10.0.0.9 port=6543

[users]
alice = pool_mode=session

[pgbouncer]
listen_addr = *
listen_port = 7432
unix_socket_dir = /tmp
auth_type = scram-sha-256
auth_file = userlist.txt
auth_user = pgbouncer
auth_query = SELECT usename, passwd FROM pg_shadow WHERE usename=$1
auth_dbname = postgres
pool_mode = transaction
default_pool_size = 10
min_pool_size = 2
max_client_conn = 500
server_idle_timeout = 300
server_lifetime = 7200
query_wait_timeout = 45
client_login_timeout = 30
server_connect_timeout = 5
stats_period = 30
max_packet_size = 1048576
max_prepared_statements = 100
idle_transaction_timeout = 20
admin_users = admin, root
stats_users = monitor
client_tls_sslmode = require
client_tls_cert_file = server.crt
client_tls_key_file = server.key
client_tls_protocols = secure
server_tls_sslmode = verify-full
server_tls_ca_file = server.crt
reserve_pool_size = 5
%include extra.ini
";

#[test]
fn a_configuration_using_every_mapped_key_imports_and_passes_check() {
    let d = dir("full");
    cert(&d);
    std::fs::write(d.join("pgbouncer.ini"), INI).unwrap();
    std::fs::write(
        d.join("extra.ini"),
        "; included\nlogfile = /var/log/pgbouncer.log\ntcp_keepalive = 1\n",
    )
    .unwrap();
    let verifier = "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0$R7Lx2d1fuCqfbaIbUXmmxp9j5EuUuBcU0hUNxT9OLv8=:0dsvDZvqlhNDu2EPyA4Ufi9F6ZJFvUbqHc2sAtR0vko=";
    let userlist = format!(
        "\"admin\" \"admin-pw\"\n\"monitor\" \"md5aeb8a6ab1d9bcd6c8b14ac1c5b5a7d9e\"\n\"pgbouncer\" \"{verifier}\"\n"
    );
    std::fs::write(d.join("userlist.txt"), userlist).unwrap();
    let ini = d.join("pgbouncer.ini");
    let out = sqlmux(&["import", ini.to_str().unwrap()]);
    let (toml, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("svc-secret") && !stderr.contains("admin-pw"),
        "{stderr}"
    );
    let path = d.join("sqlmux.toml");
    std::fs::write(&path, &toml).unwrap();
    check(&path);

    let v: toml::Table = toml::from_str(&toml).unwrap();
    let get = |t: &str, k: &str| v[t][k].clone();
    assert_eq!(get("postgres", "listen").as_str(), Some("0.0.0.0:7432"));
    assert_eq!(get("postgres", "auth").as_str(), Some("scram-sha-256"));
    assert_eq!(get("postgres", "auth_user").as_str(), Some("pgbouncer"));
    assert_eq!(get("postgres", "auth_dbname").as_str(), Some("postgres"));
    assert!(
        get("postgres", "auth_query")
            .as_str()
            .unwrap()
            .contains("$1")
    );
    assert_eq!(v["postgres"]["tls"]["mode"].as_str(), Some("require"));
    assert_eq!(get("pool", "mode").as_str(), Some("transaction"));
    assert_eq!(get("pool", "size").as_integer(), Some(10));
    assert_eq!(get("pool", "min_idle").as_integer(), Some(2));
    assert_eq!(
        get("pool", "max_client_connections").as_integer(),
        Some(500)
    );
    assert_eq!(get("pool", "idle_timeout").as_str(), Some("300s"));
    assert_eq!(get("pool", "max_lifetime").as_str(), Some("7200s"));
    assert_eq!(get("pool", "checkout_timeout").as_str(), Some("45s"));
    assert_eq!(
        get("pool", "max_prepared_statements").as_integer(),
        Some(100)
    );
    assert_eq!(
        get("general", "server_connect_timeout").as_str(),
        Some("5s")
    );
    assert_eq!(get("general", "stats_period").as_str(), Some("30s"));
    assert_eq!(
        get("general", "max_message_size").as_integer(),
        Some(1_048_576)
    );
    assert_eq!(
        v["insight"]["leaked_transaction"]["action"].as_str(),
        Some("rollback")
    );
    assert_eq!(
        v["insight"]["leaked_transaction"]["idle"].as_str(),
        Some("20s")
    );
    assert_eq!(get("admin", "users").as_array().unwrap().len(), 2);
    assert_eq!(
        get("admin", "stats_users").as_array().unwrap()[0].as_str(),
        Some("monitor")
    );

    let dbs = v["databases"].as_array().unwrap();
    let db = |n: &str| {
        dbs.iter()
            .find(|d| d["name"].as_str() == Some(n))
            .unwrap_or_else(|| panic!("{n}"))
    };
    assert_eq!(db("app")["host"].as_str(), Some("db1.internal"));
    assert_eq!(db("app")["port"].as_integer(), Some(5433));
    assert_eq!(db("app")["dbname"].as_str(), Some("app_prod"));
    assert_eq!(db("app")["pool"]["size"].as_integer(), Some(8));
    assert_eq!(
        db("app")["server_tls"]["mode"].as_str(),
        Some("verify-full")
    );
    assert_eq!(db("forced")["user"].as_str(), Some("svc"));
    assert_eq!(db("forced")["password"].as_str(), Some("svc-secret"));
    assert_eq!(
        db("forced")["pool"]["max_client_connections"].as_integer(),
        Some(50)
    );
    assert_eq!(db("local")["host"].as_str(), Some("127.0.0.1"));
    assert_eq!(db("*")["port"].as_integer(), Some(6543));
    assert_eq!(v["general"]["client_login_timeout"].as_str(), Some("30s"));
    let users = v["users"].as_array().unwrap();
    assert_eq!(users.len(), 3);
    assert_eq!(users[2]["password"].as_str(), Some(verifier));

    // What does not carry over is named with file and line, in both places.
    for (file, line, what) in [
        ("pgbouncer.ini", 5, "connect_query"),
        ("pgbouncer.ini", 9, "alice"),
        ("pgbouncer.ini", 14, "unix_socket_dir"),
        ("pgbouncer.ini", 38, "client_tls_protocols"),
        ("pgbouncer.ini", 41, "reserve_pool_size"),
        ("extra.ini", 2, "logfile"),
        ("extra.ini", 3, "tcp_keepalive"),
    ] {
        let at = format!("{}:{line}: ", d.join(file).display());
        for (name, out) in [("stderr", &stderr), ("TOML", &toml)] {
            assert!(
                out.lines().any(|l| l.contains(&at) && l.contains(what)),
                "{what} at {at} missing from {name}:\n{out}"
            );
        }
    }
    // Approximations are named too.
    for what in [
        "host=db1.internal,db2.internal",
        "host=/var/run/postgresql",
        "idle_transaction_timeout",
    ] {
        assert!(stderr.contains(what), "{what}:\n{stderr}");
    }
}

#[test]
fn init_writes_a_checked_config_and_prints_the_url_on_sqlmux() {
    let d = dir("init");
    let path = d.join("sqlmux.toml");
    let _ = std::fs::remove_file(&path);
    let url = "postgres://app:s3cret@db.internal:5432/app";
    let out = sqlmux(&["init", "--from", url, "-o", path.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains("DATABASE_URL=postgres://app:****@127.0.0.1:6432/app"),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cret") && !text(&out.stderr).contains("s3cret"));
    check(&path);
    // An existing file is kept unless --force.
    let again = sqlmux(&["init", "--from", url, "-o", path.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("--force"));

    // MySQL: a [mysql] listener and a mysql database, accepted by check.
    let out = sqlmux(&[
        "init",
        "--from",
        "mysql://shop:pw@10.1.2.3:3307/shop",
        "-o",
        "-",
    ]);
    let toml = text(&out.stdout);
    assert!(
        toml.contains("[mysql]\nlisten = \"127.0.0.1:6033\""),
        "{toml}"
    );
    assert!(
        toml.contains("protocol = \"mysql\"") && toml.contains("port = 3307"),
        "{toml}"
    );
    assert!(text(&out.stderr).contains("DATABASE_URL=mysql://shop:****@127.0.0.1:6033/shop"));
    let my_path = d.join("mysql.toml");
    std::fs::write(&my_path, &toml).unwrap();
    check(&my_path);
}
