//! `sqlmux demo`: sqlmux in front of a throwaway database, with an
//! application-like workload, ready to look at in a minute.
//!
//! # Flow
//!
//! 1. A temporary directory ([`os::TempDir`]) holds everything.
//! 2. PostgreSQL is initialized and started there on a free port
//!    ([`postgres`]); the `app` role, database and tables are created.
//! 3. If this build accepts MySQL databases, MariaDB joins ([`mysql`]).
//! 4. sqlmux starts in this process with a configuration built in code
//!    ([`config`]) on 127.0.0.1 (6432 and 6434 when free).
//! 5. The workload ([`workload`]) runs: ordinary traffic, an N+1 loop, a
//!    slow statement and a leaked transaction.
//! 6. The URLs are printed; the demo runs until Ctrl-C / SIGTERM (or
//!    `--for`), then prints a summary, stops sqlmux and the servers, and
//!    removes the directory. Servers and the directory are also cleaned up
//!    when set-up fails half-way (their guards' `Drop`).

pub mod client;
pub mod config;
pub mod mariadb;
pub mod mysql;
pub mod os;
pub mod postgres;
pub mod workload;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::Proxy;
use client::PgClient;
use os::TempDir;
use postgres::PgServer;
use workload::{Counters, Target};

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What the demo was doing.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A server or tool could not be set up.
    #[error("{0}")]
    Setup(String),
}

impl DemoError {
    /// An I/O error while doing `what`.
    pub fn io(what: &str, source: std::io::Error) -> DemoError {
        DemoError::Io {
            what: what.to_owned(),
            source,
        }
    }
}

/// Options of `sqlmux demo`.
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// Stop by itself after this long (otherwise at Ctrl-C / SIGTERM).
    pub run_for: Option<Duration>,
}

/// The running pieces, stopped in order by [`Demo::stop`].
struct Demo {
    dir: TempDir,
    pg: PgServer,
    mysql: Option<mysql::MysqlSide>,
    proxy: Proxy,
    stop: CancellationToken,
    counters: Arc<Counters>,
    started: Instant,
}

/// Runs the demo until Ctrl-C, SIGTERM or `opts.run_for`.
pub async fn run(opts: DemoOptions) -> Result<(), DemoError> {
    let demo = start().await?;
    print_banner(&demo);
    wait(opts.run_for).await;
    print_summary(&demo);
    demo.stop().await;
    Ok(())
}

async fn start() -> Result<Demo, DemoError> {
    let dir = TempDir::new()?;
    let ports = config::Ports {
        postgres: os::port_or_free(6432)?,
        admin: os::port_or_free(6434)?,
        pg_server: os::free_port()?,
    };
    println!(
        "sqlmux demo: starting PostgreSQL in {} ...",
        dir.path().display()
    );
    let pg_dir = dir.path().join("postgres");
    let pg = blocking(move || PgServer::start(&pg_dir, ports.pg_server)).await?;
    create_schema(pg.port).await?;
    let mysql = start_mysql(&dir).await?;
    let cfg = config::build(&ports, mysql.as_ref().map(|m| &m.ports))
        .map_err(|e| DemoError::Setup(format!("the demo configuration is invalid: {e}")))?;
    let proxy = Proxy::start(cfg)
        .await
        .map_err(|e| DemoError::Setup(e.to_string()))?;
    let demo = Demo {
        dir,
        pg,
        mysql,
        proxy,
        stop: CancellationToken::new(),
        counters: Arc::default(),
        started: Instant::now(),
    };
    demo.start_workload();
    Ok(demo)
}

/// Runs blocking set-up work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DemoError> + Send + 'static,
) -> Result<T, DemoError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DemoError::Setup(format!("set-up task failed: {e}")))?
}

/// The `app` role and database on the server, and the tables in it.
async fn create_schema(port: u16) -> Result<(), DemoError> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let fail = |what: &str, e: String| DemoError::Setup(format!("{what}: {e}"));
    let mut su = PgClient::connect(addr, "postgres", "postgres", "sqlmux-demo")
        .await
        .map_err(|e| fail("connecting to PostgreSQL", e.to_string()))?;
    for sql in ["CREATE ROLE app LOGIN", "CREATE DATABASE app OWNER app"] {
        let r = su.query(sql).await.map_err(|e| fail(sql, e.to_string()))?;
        if let Some(e) = r.error {
            return Err(fail(sql, e));
        }
    }
    su.close().await;
    let mut app = PgClient::connect(addr, "app", "app", "sqlmux-demo")
        .await
        .map_err(|e| fail("connecting as app", e.to_string()))?;
    let r = app
        .query(&workload::schema_sql())
        .await
        .map_err(|e| fail("creating the tables", e.to_string()))?;
    if let Some(e) = r.error {
        return Err(fail("creating the tables", e));
    }
    app.close().await;
    Ok(())
}

/// Starts the MySQL side when MariaDB is installed.
async fn start_mysql(dir: &TempDir) -> Result<Option<mysql::MysqlSide>, DemoError> {
    if !mysql::available() {
        println!(
            "sqlmux demo: MariaDB is not installed (apt-get install mariadb-server); running PostgreSQL only"
        );
        return Ok(None);
    }
    println!("sqlmux demo: starting MariaDB ...");
    let path = dir.path().to_path_buf();
    blocking(move || mysql::start(&path)).await.map(Some)
}

impl Demo {
    fn start_workload(&self) {
        let target = Target {
            addr: self.proxy.postgres_addr(),
            stop: self.stop.clone(),
            counters: self.counters.clone(),
            leak_idle: config::LEAK_IDLE + Duration::from_secs(2),
        };
        workload::spawn(&target);
        if let Some(m) = &self.mysql {
            m.spawn_workload(&target);
        }
    }

    /// Stops the workload, sqlmux and the servers; removes the directory.
    async fn stop(self) {
        self.stop.cancel();
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.proxy.shutdown_now().await;
        let Demo {
            dir, mut pg, mysql, ..
        } = self;
        let _ = tokio::task::spawn_blocking(move || {
            pg.stop();
            if let Some(m) = mysql {
                m.stop();
            }
        })
        .await;
        let path = dir.path().to_path_buf();
        drop(dir);
        println!("sqlmux demo: stopped; removed {}", path.display());
    }
}

/// Waits for Ctrl-C, SIGTERM or the end of `run_for`.
async fn wait(run_for: Option<Duration>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tokio::time::sleep(run_for.unwrap_or(Duration::MAX)).await;
        return;
    };
    let limit = async {
        match run_for {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = int.recv() => println!(),
        _ = term.recv() => {}
        _ = limit => {}
    }
}

fn print_banner(d: &Demo) {
    let pg = d.proxy.postgres_addr();
    let admin = d.proxy.admin_addr();
    println!();
    println!(
        "sqlmux demo is running: PostgreSQL {} on 127.0.0.1:{} behind sqlmux on {pg}",
        d.pg.version, d.pg.port
    );
    println!();
    println!("  DATABASE_URL=postgres://app@{pg}/app");
    println!("  psql \"postgres://app@{pg}/app\"");
    if let Some(m) = &d.mysql {
        println!("  DATABASE_URL={}", m.url());
        println!("  {}", m.cli());
    }
    println!(
        "  admin console: psql -h {} -p {} -U admin sqlmux",
        admin.ip(),
        admin.port()
    );
    println!("  web page:      http://{admin}/");
    println!();
    println!("  workload: ordinary queries, an N+1 loop every 5 s, pg_sleep(0.2) every 2 s,");
    println!(
        "            a transaction left idle past the {} s leak threshold once a minute",
        config::LEAK_IDLE.as_secs()
    );
    println!("  directory: {}", d.dir.path().display());
    println!();
    println!("Ctrl-C stops the demo and removes everything it started.");
}

fn print_summary(d: &Demo) {
    let ins = &d.proxy.shared.insight;
    let queries = d.counters.queries.load(Ordering::Relaxed);
    let errors = d.counters.errors.load(Ordering::Relaxed);
    println!(
        "sqlmux demo summary: ran {:.0} s; workload sent {queries} queries ({errors} failed on purpose); {} statements tracked; {} N+1 bursts; {} leaked transactions",
        d.started.elapsed().as_secs_f64(),
        ins.statements().len(),
        ins.n_plus_one_total(),
        ins.leaks_total(),
    );
}
