//! The real binary on both of its schedulers: one worker runs tokio's
//! single-threaded scheduler, more run the work-stealing one. Each serves
//! pgbench's TPC-B transactions from concurrent clients through a small
//! pool, every transaction committed exactly once.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlmux_tests::{free_port, pg_tool, run_command, shared_pg};

const CLIENTS: u32 = 8;
const PER_CLIENT: u32 = 100;

/// Starts `sqlmux --config` with `workers` in front of `db`; returns the
/// child and its PostgreSQL port once it accepts connections.
fn start(db: &str, workers: usize) -> (Child, u16) {
    let (port, admin) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("sqlmux-runtime-{}-{workers}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("sqlmux.toml");
    std::fs::write(
        &config,
        format!(
            "[general]\nworkers = {workers}\nshutdown_timeout = \"2s\"\n\
             [postgres]\nlisten = \"127.0.0.1:{port}\"\nauth = \"trust\"\n\
             [admin]\nlisten = \"127.0.0.1:{admin}\"\n\
             [[databases]]\nname = \"{db}\"\nhost = \"127.0.0.1\"\nport = {pg}\npool = {{ size = 3 }}\n\
             [[users]]\nname = \"postgres\"\n",
            pg = shared_pg().port(),
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sqlmux"))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sqlmux starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "sqlmux exited at start"
        );
        assert!(Instant::now() < deadline, "sqlmux did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, port)
}

fn history_rows(db: &str) -> u64 {
    shared_pg()
        .psql(db, "SELECT count(*) FROM pgbench_history")
        .trim()
        .parse()
        .unwrap()
}

fn pgbench(port: u16, db: &str, args: &[&str]) -> String {
    let mut cmd = Command::new(pg_tool("pgbench"));
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(args)
        .arg(db)
        .env_remove("PGPASSWORD");
    let out = run_command(cmd, None, Duration::from_secs(300)).expect("pgbench runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pgbench {args:?} failed:\n{text}");
    text
}

fn serves_tpcb_with(workers: usize) {
    let pg = shared_pg();
    let db = format!("runtime_w{workers}_{}", std::process::id());
    pg.create_database(&db);
    pgbench(pg.port(), &db, &["-i", "-s", "1", "-q"]);
    let (mut child, port) = start(&db, workers);
    let before = history_rows(&db);
    let (c, t) = (CLIENTS.to_string(), PER_CLIENT.to_string());
    for mode in ["simple", "extended", "prepared"] {
        // One pgbench thread per client: with -M prepared a thread blocks
        // in a synchronous prepare for one client while its other clients
        // hold the pool's servers in open transactions, which stalls
        // PgBouncer the same way.
        let args = ["-n", "-M", mode, "-c", &c, "-j", &c, "-t", &t];
        let out = pgbench(port, &db, &args);
        let processed = format!(
            "number of transactions actually processed: {}/{}",
            CLIENTS * PER_CLIENT,
            CLIENTS * PER_CLIENT
        );
        assert!(
            out.contains(&processed),
            "workers = {workers}, -M {mode}:\n{out}"
        );
        assert!(
            out.contains("number of failed transactions: 0 "),
            "workers = {workers}, -M {mode}:\n{out}"
        );
    }
    // Every TPC-B transaction inserts one history row: all committed, once.
    let inserted = history_rows(&db) - before;
    assert_eq!(
        inserted,
        3 * u64::from(CLIENTS * PER_CLIENT),
        "workers = {workers}"
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "workers = {workers}: sqlmux exited with {status}"
    );
}

#[test]
fn one_worker_single_threaded_scheduler_serves_concurrent_transactions() {
    serves_tpcb_with(1);
}

#[test]
fn two_workers_work_stealing_scheduler_serve_concurrent_transactions() {
    serves_tpcb_with(2);
}
