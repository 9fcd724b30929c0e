//! The `sqlmux` command line: run the proxy, check a configuration, run
//! the demo, or write a configuration from PgBouncer's or a database URL.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sqlmux::Proxy;
use sqlmux::addr;
use sqlmux::config::Config;

/// Connection-pooling proxy for PostgreSQL with per-statement insight.
#[derive(Parser, Debug)]
#[command(name = "sqlmux", version, about)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(short, long, global = true, default_value = "sqlmux.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the proxy (the default).
    Run,
    /// Validate the configuration and print the effective pools.
    Check,
    /// Start a throwaway PostgreSQL (and MariaDB), sqlmux in front of it and
    /// a small application-like workload; print the URLs to try.
    Demo {
        /// Stop by itself after this long (e.g. "20s") and print a summary.
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        run_for: Option<Duration>,
    },
    /// Write a sqlmux configuration that does what a PgBouncer
    /// configuration did; list what does not carry over.
    Import {
        /// pgbouncer.ini
        ini: PathBuf,
        /// userlist.txt (default: the ini's auth_file)
        userlist: Option<PathBuf>,
        /// Write here instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Write a configuration for the database a URL names and print the
    /// URL the application should use instead.
    Init {
        /// The application's DATABASE_URL (postgres://, postgresql:// or mysql://).
        #[arg(long)]
        from: String,
        /// Where to write the configuration ("-" for stdout).
        #[arg(short, long, default_value = "sqlmux.toml")]
        output: PathBuf,
        /// Where sqlmux listens (default 127.0.0.1:6432, or :6033 for MySQL).
        #[arg(long, default_value = "")]
        listen: String,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
}

/// Log filter: `SQLMUX_LOG`, else `default`.
fn init_tracing(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SQLMUX_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_target(false)
        .init();
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Run);
    match command {
        Command::Demo { run_for } => {
            init_tracing("warn");
            return demo(run_for);
        }
        Command::Import {
            ini,
            userlist,
            output,
        } => return import(&ini, userlist.as_deref(), output.as_deref()),
        Command::Init {
            from,
            output,
            listen,
            force,
        } => return init(&from, &output, &listen, force),
        Command::Run | Command::Check => {}
    }
    init_tracing("info");
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sqlmux: {e}");
            std::process::exit(2);
        }
    };
    match command {
        Command::Check => {
            print_check(&config);
            Ok(())
        }
        _ => run(config),
    }
}

/// Writes a configuration to `path` (mode 0600: it may hold passwords),
/// or to stdout for `None` / "-".
fn write_config(path: Option<&std::path::Path>, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    match path.filter(|p| p.as_os_str() != "-") {
        None => std::io::stdout().write_all(text.as_bytes())?,
        Some(p) => std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(p)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .with_context(|| format!("cannot write {}", p.display()))?,
    }
    Ok(())
}

/// Notes and the check result on stderr.
fn report(imported: &sqlmux::import::Imported) {
    for n in &imported.notes {
        eprintln!("sqlmux: {n}");
    }
    if let Err(e) = &imported.check {
        eprintln!(
            "sqlmux: warning: the written configuration does not pass `sqlmux check` here: {e}"
        );
    }
}

fn import(
    ini: &std::path::Path,
    userlist: Option<&std::path::Path>,
    output: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let imported = match sqlmux::import::pgbouncer(ini, userlist) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("sqlmux import: {e}");
            std::process::exit(2);
        }
    };
    write_config(output, &imported.toml)?;
    report(&imported);
    if let Some(p) = output {
        eprintln!(
            "sqlmux: wrote {}; check it with `sqlmux check --config {}`",
            p.display(),
            p.display()
        );
    }
    Ok(())
}

fn init(from: &str, output: &std::path::Path, listen: &str, force: bool) -> anyhow::Result<()> {
    let done = match sqlmux::import::init::from_url(from, listen) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("sqlmux init: {e}");
            std::process::exit(2);
        }
    };
    let to_stdout = output.as_os_str() == "-";
    if !to_stdout && output.exists() && !force {
        eprintln!(
            "sqlmux init: {} exists; pass --force to overwrite it or -o to write elsewhere",
            output.display()
        );
        std::process::exit(2);
    }
    write_config(Some(output), &done.imported.toml)?;
    report(&done.imported);
    let line = format!(
        "point the application at sqlmux (same password as before):\nDATABASE_URL={}",
        done.app_url
    );
    if to_stdout {
        eprintln!("{line}");
    } else {
        println!(
            "wrote {}; run it with: sqlmux --config {}",
            output.display(),
            output.display()
        );
        println!("{line}");
    }
    Ok(())
}

fn demo(run_for: Option<Duration>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sqlmux-demo")
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let opts = sqlmux::demo::DemoOptions { run_for };
    if let Err(e) = runtime.block_on(sqlmux::demo::run(opts)) {
        eprintln!("sqlmux demo: {e}");
        std::process::exit(1);
    }
    Ok(())
}

fn print_check(cfg: &Config) {
    println!(
        "configuration {} is valid",
        cfg.path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    );
    println!("postgres.listen = {}", cfg.postgres.listen);
    if let Some(dir) = &cfg.postgres.unix_socket_dir {
        let port = cfg.postgres.listen.rsplit(':').next().unwrap_or("");
        println!("postgres socket = {}/.s.PGSQL.{port}", dir.display());
    }
    if cfg.mysql.enabled {
        println!("mysql.listen    = {}", cfg.mysql.listen);
        if let Some(path) = &cfg.mysql.unix_socket {
            println!("mysql socket    = {}", path.display());
        }
    } else {
        println!("mysql.listen    = off (no [mysql] listen and no mysql database)");
    }
    println!("admin.listen    = {}", cfg.admin.listen);
    println!("host CPUs       = {}", cfg.host_cpus);
    println!("peers           = {}", describe_peers(&cfg.peers));
    println!();
    let header = [
        "database",
        "user",
        "mode",
        "size",
        "share",
        "total",
        "size derived from",
    ];
    print_table(&header, &pool_rows(cfg));
    if cfg.databases.iter().any(|d| d.pool.share > 1) {
        println!();
        println!("size = servers this replica opens; total = size x share, for all replicas");
    }
    for db in cfg.databases.iter().filter(|d| addr::is_unix_host(&d.host)) {
        let path = addr::server_socket_path(db.protocol, &db.host, db.port);
        println!(
            "database {} reaches its server through the Unix socket {} (no TLS)",
            db.name,
            path.display()
        );
    }
}

/// One line saying where cancel requests for unknown keys are forwarded.
fn describe_peers(p: &sqlmux::peers::PeersConfig) -> String {
    if p.is_empty() {
        return "none (cancel requests for unknown keys are dropped)".into();
    }
    let mut parts: Vec<String> = p.addresses.clone();
    if let Some(dns) = &p.dns {
        parts.push(format!("every address of {dns} on port {}", p.port));
    }
    parts.join(", ")
}

/// One row per pool sqlmux will create: (database, user) with its sizes.
fn pool_rows(cfg: &Config) -> Vec<Vec<String>> {
    cfg.databases
        .iter()
        .flat_map(|db| {
            let users: Vec<String> = match &db.user {
                Some(u) => vec![u.clone()],
                None if cfg.users.is_empty() => vec!["(any client user)".into()],
                None => cfg.users.iter().map(|u| u.name.clone()).collect(),
            };
            users.into_iter().map(move |u| {
                vec![
                    db.name.clone(),
                    u,
                    db.pool.mode.as_str().to_owned(),
                    db.pool.size.to_string(),
                    db.pool.share.to_string(),
                    db.pool.total_size().to_string(),
                    db.pool.size_source.clone(),
                ]
            })
        })
        .collect()
}

/// Prints left-aligned columns with a dashed rule under the header.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: &[&str]| {
        let parts: Vec<String> = cells
            .iter()
            .zip(widths.iter())
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header);
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
    line(&rule.iter().map(String::as_str).collect::<Vec<_>>());
    for r in rows {
        line(&r.iter().map(String::as_str).collect::<Vec<_>>());
    }
}

/// One worker: tokio's single-threaded scheduler, which does none of the
/// bookkeeping that sharing tasks between threads needs (queue hand-offs,
/// poll-time statistics) and so spends fewer instructions per wake-up.
/// More workers: the work-stealing scheduler.
fn build_runtime(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    builder
        .thread_name("sqlmux-worker")
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

fn run(config: Config) -> anyhow::Result<()> {
    let runtime = build_runtime(config.general.workers)?;
    runtime.block_on(async move {
        let proxy = match Proxy::start(config).await {
            Ok(p) => p,
            Err(e) => {
                eprintln!("sqlmux: {e}");
                std::process::exit(1);
            }
        };
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
        loop {
            tokio::select! {
                _ = proxy.stopped() => {
                    // SHUTDOWN from the admin console.
                    break;
                }
                _ = hup.recv() => {
                    match proxy.reload() {
                        Ok(()) => tracing::info!("SIGHUP: configuration reloaded"),
                        Err(e) => tracing::error!(error = %e, "SIGHUP: configuration refused; keeping the running one"),
                    }
                }
                _ = term.recv() => {
                    tracing::info!("SIGTERM: draining (open transactions may finish)");
                    let p = proxy.clone();
                    let graceful = tokio::spawn(async move { p.shutdown().await });
                    tokio::select! {
                        _ = graceful => {}
                        _ = term.recv() => {
                            tracing::warn!("second SIGTERM: closing now");
                            proxy.shutdown_now().await;
                        }
                        _ = int.recv() => {
                            tracing::warn!("SIGINT: closing now");
                            proxy.shutdown_now().await;
                        }
                    }
                    break;
                }
                _ = int.recv() => {
                    tracing::info!("SIGINT: closing now");
                    proxy.shutdown_now().await;
                    break;
                }
            }
        }
        tracing::info!("sqlmux stopped");
        Ok(())
    })
}
