//! The `sqlmux` command line: run the proxy, or check a configuration.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sqlmux::Proxy;
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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SQLMUX_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .init();

    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sqlmux: {e}");
            std::process::exit(2);
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Check => {
            print_check(&config);
            Ok(())
        }
        Command::Run => run(config),
    }
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

fn run(config: Config) -> anyhow::Result<()> {
    let workers = config.general.workers;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("sqlmux-worker")
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
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
