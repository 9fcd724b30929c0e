//! `sqlmux-bench soak`: thousands of clients on both sqlmux ports doing
//! short transactions through small pools for minutes, with RELOADs, while
//! sqlmux's RSS is sampled (the load itself is `sqlmux_tests::soak`).
//!
//! Without `--pg`/`--mysql` it starts a throwaway PostgreSQL and MariaDB
//! and the release `sqlmux` binary in front of both (pools of
//! `--pool-size`, `max_client_connections` above the client count). It
//! fails (exit 1) on any error other than a checkout timeout, and when RSS
//! grows more than `--max-rss-growth` percent after warm-up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use sqlmux_tests::soak::{self, SoakOptions};

use crate::procs::{self, Server};
use crate::targets;

/// Options of `soak`.
#[derive(Args, Debug, Clone)]
pub struct SoakArgs {
    /// Concurrent clients in all, half per port (all on one port when the
    /// other is not used).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    clients: usize,
    /// How long the clients run, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    secs: u64,
    /// RELOAD every this many milliseconds (0 = never).
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    reload_ms: u64,
    /// Mean pause between a client's transactions, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    think_ms: u64,
    /// Pool size per database of the sqlmux this command starts.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pool_size: usize,
    /// Fail when RSS grows more than this after warm-up (percent).
    #[arg(long, value_name = "PCT", default_value_t = 25.0)]
    max_rss_growth: f64,
    /// sqlmux binary (default: build target/release/sqlmux).
    #[arg(long, value_name = "PATH")]
    sqlmux: Option<PathBuf>,
    /// Use a running sqlmux instead: tokio-postgres connection string of
    /// its PostgreSQL port (with --mysql, --admin, --pid).
    #[arg(long, value_name = "CONNSTR")]
    pg: Option<String>,
    /// mysql:// URL of its MySQL port.
    #[arg(long, value_name = "URL")]
    mysql: Option<String>,
    /// Its admin port and console user: host:port,user,password.
    #[arg(long, value_name = "ADDR,USER,PASSWORD")]
    admin: Option<String>,
    /// Its process id (RSS samples).
    #[arg(long, value_name = "PID")]
    pid: Option<u32>,
}

/// The throwaway servers and sqlmux of one soak (dropped at the end).
struct Setup {
    _pg: sqlmux_tests::PgCluster,
    _my: sqlmux_tests::MariaDb,
    _scratch: procs::ScratchDir,
    sqlmux: Server,
    opts: SoakOptions,
}

/// Runs the soak and prints the report.
pub fn soak(args: SoakArgs) -> Result<()> {
    procs::install_signal_cleanup();
    let nofile = procs::raise_nofile(1 << 20);
    let needed = args.clients as u64 + 1000;
    if nofile < needed {
        bail!(
            "RLIMIT_NOFILE is {nofile}, but {} clients need about {needed}; raise `ulimit -n`",
            args.clients
        );
    }
    let mut setup = None;
    let opts = match &args.pg {
        Some(_) => external(&args)?,
        None => {
            let s = start(&args)?;
            let o = s.opts.clone();
            setup = Some(s);
            o
        }
    };
    eprintln!(
        "soak: {} postgres + {} mysql clients for {} s, RELOAD every {} ms",
        opts.pg_clients, opts.my_clients, args.secs, args.reload_ms
    );
    let rt = tokio::runtime::Runtime::new().context("tokio runtime")?;
    let report = rt.block_on(soak::run(opts));
    println!("{}", report.summary());
    if let Some(s) = &mut setup
        && let Some(status) = s.sqlmux.try_wait()
    {
        bail!("sqlmux exited during the soak ({status})");
    }
    if report.unexpected > 0 {
        bail!("{} unexpected errors", report.unexpected);
    }
    if let Some(g) = report.rss_growth_pct()
        && g > args.max_rss_growth
    {
        bail!(
            "RSS grew {g:.1}% after warm-up (limit {}%)",
            args.max_rss_growth
        );
    }
    Ok(())
}

fn base_options(args: &SoakArgs, pg: Option<String>, my: Option<String>) -> SoakOptions {
    let both = pg.is_some() && my.is_some();
    let pg_clients = if pg.is_none() {
        0
    } else if both {
        args.clients / 2
    } else {
        args.clients
    };
    SoakOptions {
        pg_clients,
        my_clients: args.clients - pg_clients,
        duration: Duration::from_secs(args.secs),
        pg_url: pg.unwrap_or_default(),
        my_url: my.unwrap_or_default(),
        admin: None,
        reload_every: (args.reload_ms > 0).then(|| Duration::from_millis(args.reload_ms)),
        rss_pid: 0,
        think: Duration::from_millis(args.think_ms),
    }
}

/// Options for a sqlmux that is already running.
fn external(args: &SoakArgs) -> Result<SoakOptions> {
    let mut o = base_options(args, args.pg.clone(), args.mysql.clone());
    if let Some(a) = &args.admin {
        let mut parts = a.splitn(3, ',');
        let addr: SocketAddr = parts
            .next()
            .unwrap_or("")
            .parse()
            .context("--admin address")?;
        let user = parts.next().context("--admin needs a user")?.to_owned();
        let password = parts.next().unwrap_or("").to_owned();
        o.admin = Some((addr, user, password));
    }
    o.rss_pid = args
        .pid
        .context("--pid of the running sqlmux is needed for RSS")?;
    Ok(o)
}

/// Starts PostgreSQL, MariaDB and sqlmux.
fn start(args: &SoakArgs) -> Result<Setup> {
    let scratch = procs::ScratchDir::new().context("scratch directory")?;
    let bin = match &args.sqlmux {
        Some(p) => p.clone(),
        None => targets::build_sqlmux()?.0,
    };
    eprintln!("starting PostgreSQL and MariaDB (throwaway servers)");
    let pg = sqlmux_tests::PgCluster::start(sqlmux_tests::PgOptions::default());
    let my = sqlmux_tests::MariaDb::start_standard(sqlmux_tests::MariaDbOptions::default());
    let (port, my_port, admin) = (
        sqlmux_tests::free_port(),
        sqlmux_tests::free_port(),
        sqlmux_tests::free_port(),
    );
    let config = write_config(
        scratch.path(),
        args,
        (port, my_port, admin),
        (pg.port(), my.port()),
    )?;
    let mut cmd = Command::new(&bin);
    cmd.arg("--config").arg(&config);
    let mut sqlmux = Server::spawn("sqlmux", cmd, None, &scratch.path().join("sqlmux.log"))
        .with_context(|| format!("starting {}", bin.display()))?;
    targets::wait_listening(&mut sqlmux, port, Duration::from_secs(30))?;
    targets::wait_listening(&mut sqlmux, my_port, Duration::from_secs(30))?;
    let pg_url =
        format!("host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=30");
    let my_url = format!("mysql://app:app-pass@127.0.0.1:{my_port}/app?prefer_socket=false");
    let mut opts = base_options(args, Some(pg_url), Some(my_url));
    opts.admin = Some((
        SocketAddr::from(([127, 0, 0, 1], admin)),
        "admin".into(),
        "admin-pw".into(),
    ));
    opts.rss_pid = sqlmux.pid();
    Ok(Setup {
        _pg: pg,
        _my: my,
        _scratch: scratch,
        sqlmux,
        opts,
    })
}

/// The sqlmux configuration: both ports, the admin port, pools of
/// `--pool-size`.
fn write_config(
    dir: &Path,
    args: &SoakArgs,
    (port, my_port, admin): (u16, u16, u16),
    (pg_port, my_server): (u16, u16),
) -> Result<PathBuf> {
    let text = format!(
        "# generated by sqlmux-bench soak\n\
         [admin]\nlisten = \"127.0.0.1:{admin}\"\nusers = [\"admin\"]\n\n\
         [postgres]\nlisten = \"127.0.0.1:{port}\"\nauth = \"trust\"\n\n\
         [mysql]\nlisten = \"127.0.0.1:{my_port}\"\n\n\
         [pool]\nsize = {size}\nmax_client_connections = {max}\n\n\
         [[databases]]\nname = \"postgres\"\nhost = \"127.0.0.1\"\nport = {pg_port}\n\n\
         [[databases]]\nname = \"app\"\nprotocol = \"mysql\"\nhost = \"127.0.0.1\"\nport = {my_server}\n\n\
         [[users]]\nname = \"postgres\"\n\n\
         [[users]]\nname = \"app\"\npassword = \"app-pass\"\n\n\
         [[users]]\nname = \"admin\"\npassword = \"admin-pw\"\n",
        size = args.pool_size,
        max = args.clients + 1000,
    );
    let path = dir.join("sqlmux.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}
