//! Tests of the harness itself (`sqlmux-tests`): the servers it starts
//! accept the documented logins, survive restarts, and die with the test
//! process.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use sqlmux_tests::{
    MariaDb, MariaDbOptions, PgCluster, PgOptions, run_command, shared_mariadb, shared_pg,
};

#[test]
fn shared_pg_roles_log_in_over_tcp_with_their_password_only() {
    let started = Instant::now();
    let pg = shared_pg();
    eprintln!("shared_pg() ready after {:?}", started.elapsed());
    for (user, password, db) in [
        ("sqlmux_scram", "scram-pass", "postgres"),
        ("sqlmux_md5", "md5-pass", "postgres"),
        ("sqlmux_plain", "plain-pass", "postgres"),
        ("app", "app-pass", "app"),
    ] {
        let who = pg.psql_as(
            user,
            Some(password),
            db,
            "SELECT current_user, current_database()",
        );
        assert_eq!(
            who.as_deref(),
            Ok(format!("{user}|{db}").as_str()),
            "{user} with its password"
        );
        let err = pg
            .psql_as(user, Some("wrong-password"), db, "SELECT 1")
            .expect_err("a wrong password must be rejected");
        assert!(
            err.contains("password authentication failed"),
            "{user}: {err}"
        );
        let err = pg
            .psql_as(user, None, db, "SELECT 1")
            .expect_err("no password must be rejected");
        assert!(err.contains("no password supplied"), "{user}: {err}");
    }
    assert_eq!(
        pg.psql_as("postgres", None, "postgres", "SELECT 1")
            .as_deref(),
        Ok("1")
    );
}

#[test]
fn shared_pg_stores_passwords_as_documented() {
    let pg = shared_pg();
    let stored = pg.psql(
        "postgres",
        "SELECT rolname, CASE WHEN rolpassword LIKE 'SCRAM-SHA-256$%' THEN 'scram' \
         WHEN rolpassword LIKE 'md5%' THEN 'md5' END FROM pg_authid \
         WHERE rolname IN ('sqlmux_scram', 'sqlmux_md5', 'sqlmux_plain', 'app') ORDER BY rolname",
    );
    assert_eq!(
        stored,
        "app|scram\nsqlmux_md5|md5\nsqlmux_plain|scram\nsqlmux_scram|scram"
    );
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT datdba::regrole FROM pg_database WHERE datname = 'app'"
        ),
        "app"
    );
}

#[test]
fn private_pg_cluster_serves_queries_after_stop_and_restart() {
    let mut pg = PgCluster::start_standard(PgOptions {
        max_connections: 20,
        ..PgOptions::default()
    });
    let port = pg.port();
    pg.psql(
        "postgres",
        "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42);",
    );
    pg.stop();
    assert!(!pg.is_running());
    assert!(
        pg.try_psql("postgres", "SELECT 1").is_err(),
        "a stopped server answered"
    );
    pg.restart();
    assert_eq!(pg.port(), port);
    assert_eq!(pg.psql("postgres", "SELECT v FROM kept"), "42");
    assert_eq!(pg.psql("postgres", "SHOW max_connections"), "20");
    assert_eq!(
        pg.psql_as("app", Some("app-pass"), "app", "SELECT current_user")
            .as_deref(),
        Ok("app")
    );
    pg.stop_immediate();
    pg.restart();
    assert_eq!(pg.psql("postgres", "SELECT v FROM kept"), "42");
}

#[test]
fn private_pg_cluster_applies_hba_lines_and_roles() {
    let mut pg = PgCluster::start(PgOptions {
        hba: vec!["host all alice 127.0.0.1/32 md5".to_owned()],
        conf: vec!["idle_session_timeout = '5min'".to_owned()],
        ..PgOptions::default()
    });
    assert_eq!(pg.psql("postgres", "SHOW idle_session_timeout"), "5min");
    pg.create_role("alice", Some("alice-pass"), "md5");
    pg.create_role("bob", None, "scram-sha-256");
    pg.create_database("alice db");
    assert_eq!(
        pg.psql_as(
            "alice",
            Some("alice-pass"),
            "alice db",
            "SELECT current_user"
        )
        .as_deref(),
        Ok("alice")
    );
    assert!(
        pg.psql_as("alice", Some("nope"), "postgres", "SELECT 1")
            .is_err()
    );
    // bob falls through to the trust line.
    assert_eq!(
        pg.psql_as("bob", None, "postgres", "SELECT current_user")
            .as_deref(),
        Ok("bob")
    );
    pg.set_hba(&["host all bob 127.0.0.1/32 reject"]);
    let err = pg.psql_as("bob", None, "postgres", "SELECT 1").unwrap_err();
    assert!(err.contains("rejects connection"), "{err}");
    // The replaced line no longer applies: alice is trusted now.
    assert_eq!(
        pg.psql_as("alice", Some("nope"), "postgres", "SELECT 1")
            .as_deref(),
        Ok("1")
    );
}

#[test]
fn enable_ssl_lets_clients_require_tls() {
    let mut pg = PgCluster::start(PgOptions::default());
    let (cert, key) = self_signed_cert();
    pg.enable_ssl(&cert, &key);
    let mut cmd = sqlmux_tests::psql_command(pg.port(), "postgres", None, "postgres");
    cmd.env("PGSSLMODE", "require");
    let out = run_command(
        cmd,
        Some(b"SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"),
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "t");
}

/// A throwaway certificate from the openssl CLI.
fn self_signed_cert() -> (String, String) {
    let dir = std::env::temp_dir().join(format!("sqlmux-selftest-cert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = Command::new("openssl");
    cmd.args([
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
    .arg(dir.join("key.pem"))
    .arg("-out")
    .arg(dir.join("cert.pem"));
    let out = run_command(cmd, None, Duration::from_secs(60)).expect("running openssl");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cert = std::fs::read_to_string(dir.join("cert.pem")).unwrap();
    let key = std::fs::read_to_string(dir.join("key.pem")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    (cert, key)
}

#[test]
fn shared_mariadb_answers_select_1_as_app() {
    let started = Instant::now();
    let db = shared_mariadb();
    eprintln!("shared_mariadb() ready after {:?}", started.elapsed());
    assert_eq!(
        db.sql_as("app", Some("app-pass"), Some("app"), "SELECT 1;")
            .as_deref(),
        Ok("1")
    );
    assert_eq!(
        db.sql_as("app", Some("app-pass"), None, "SELECT current_user();")
            .as_deref(),
        Ok("app@127.0.0.1")
    );
    let err = db
        .sql_as("app", Some("wrong"), Some("app"), "SELECT 1;")
        .unwrap_err();
    assert!(err.contains("Access denied"), "{err}");
    db.sql_as(
        "app",
        Some("app-pass"),
        Some("app"),
        "CREATE TABLE IF NOT EXISTS t (v int);",
    )
    .unwrap();
}

#[test]
fn private_mariadb_keeps_data_across_stop_kill_and_restart() {
    let started = Instant::now();
    let mut db = MariaDb::start(MariaDbOptions {
        max_connections: 30,
        ..MariaDbOptions::default()
    });
    eprintln!("MariaDb::start ready after {:?}", started.elapsed());
    let port = db.port();
    db.create_database("d");
    db.create_user("u", "u-pass");
    db.sql("GRANT ALL ON d.* TO 'u'@'%'; CREATE TABLE d.t (v int); INSERT INTO d.t VALUES (7);");
    db.stop();
    assert!(!db.is_running());
    assert!(
        db.try_sql("SELECT 1;").is_err(),
        "a stopped server answered"
    );
    db.restart();
    assert_eq!(db.port(), port);
    assert_eq!(
        db.sql_as("u", Some("u-pass"), Some("d"), "SELECT v FROM t;")
            .as_deref(),
        Ok("7")
    );
    db.kill();
    db.restart();
    assert_eq!(db.sql("SELECT @@max_connections;"), "30");
}

#[test]
fn clusters_started_in_parallel_get_different_ports() {
    let a = std::thread::spawn(|| PgCluster::start(PgOptions::default()));
    let b = std::thread::spawn(|| PgCluster::start(PgOptions::default()));
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    assert_ne!(a.port(), b.port());
    assert_ne!(a.data_dir(), b.data_dir());
    for pg in [&a, &b] {
        assert_eq!(pg.psql("postgres", "SHOW port"), pg.port().to_string());
    }
}

const ABORT_HELPER_ENV: &str = "SQLMUX_SELFTEST_ABORT_HELPER";

/// Not a test on its own: run by `servers_die_when_the_test_process_aborts`
/// in a child process, it starts servers, reports them and aborts.
#[test]
#[ignore = "helper process of servers_die_when_the_test_process_aborts"]
fn abort_helper() {
    if std::env::var_os(ABORT_HELPER_ENV).is_none() {
        return;
    }
    let pg = PgCluster::start(PgOptions::default());
    let maria = shared_mariadb();
    let mut out = std::io::stdout();
    // libtest has printed "test … " without a newline.
    writeln!(out).unwrap();
    writeln!(out, "SERVER {}", pg.pid().unwrap()).unwrap();
    writeln!(out, "SERVER {}", maria.pid().unwrap()).unwrap();
    writeln!(out, "DIR {}", pg.socket_dir().display()).unwrap();
    writeln!(out, "DIR {}", maria.data_dir().parent().unwrap().display()).unwrap();
    writeln!(out, "PID {}", std::process::id()).unwrap();
    out.flush().unwrap();
    std::process::abort();
}

#[test]
fn servers_die_when_the_test_process_aborts() {
    let out = crate::common::run_ignored_test(
        module_path!(),
        "abort_helper",
        ABORT_HELPER_ENV,
        Duration::from_secs(180),
    );
    assert!(!out.status.success(), "the helper should abort");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let pids: Vec<u32> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("SERVER "))
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(
        pids.len(),
        2,
        "helper output:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    for pid in pids {
        while process_alive(pid) {
            assert!(
                Instant::now() < deadline,
                "server {pid} outlived its aborted test process"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // The directories stay (abort skips atexit) but their locks died with
    // the helper, so the next test process sweeps them; tidy up now.
    let helper = stdout
        .lines()
        .find_map(|l| l.strip_prefix("PID "))
        .expect("helper pid");
    let dirs: Vec<&std::path::Path> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("DIR "))
        .map(std::path::Path::new)
        .collect();
    for dir in &dirs {
        let lock = std::fs::File::open(dir.join(".lock")).expect("the lock file is left");
        // SAFETY: flock on an fd we own.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(rc, 0, "{} is still locked", dir.display());
    }
    let prefix = format!("sqlmux-test-{helper}-");
    for base in dirs.iter().filter_map(|d| d.parent()) {
        for entry in std::fs::read_dir(base).unwrap().filter_map(Result::ok) {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Whether `pid` exists and is not a zombie.
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next());
            state != Some('Z') && state != Some('X')
        }
        Err(_) => false,
    }
}
