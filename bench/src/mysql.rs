//! `sqlmux-bench compare-mysql`: sysbench against a throwaway MariaDB,
//! directly and through sqlmux's MySQL port, in interleaved rounds, with
//! sqlmux's CPU per transaction (utime + stime from /proc) and the ratios.
//!
//! Scenarios: `oltp_point_select` and `oltp_read_only` with
//! `--db-ps-mode=disable` (text protocol) at 16 and 64 threads, over a pool
//! of [`targets::POOL_SIZE`] servers.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::procs::{self, Server};
use crate::{sys, targets};

/// Options of `compare-mysql`.
#[derive(Args, Debug, Clone)]
pub struct MysqlArgs {
    /// Seconds per sysbench run.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    duration: u64,
    /// Rounds (each round runs every scenario on both targets).
    #[arg(long, value_name = "N", default_value_t = 2)]
    runs: u32,
    /// Rows per sysbench table (4 tables).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    table_size: u32,
    /// sqlmux binary to run (default: build target/release/sqlmux).
    #[arg(long, value_name = "PATH")]
    sqlmux: Option<std::path::PathBuf>,
}

/// Where sysbench connects.
#[derive(Debug, Clone)]
struct MyEndpoint {
    port: u16,
    user: &'static str,
    password: &'static str,
    db: &'static str,
}

/// One sysbench run's numbers.
#[derive(Debug, Clone, Default)]
struct RunResult {
    transactions: u64,
    tps: f64,
    errors: u64,
    latency_avg_ms: f64,
    latency_p95_ms: f64,
    /// Proxy CPU per transaction in microseconds: (user, system).
    cpu_us: Option<(f64, f64)>,
}

const SCENARIOS: &[(&str, u32)] = &[
    ("oltp_point_select", 16),
    ("oltp_point_select", 64),
    ("oltp_read_only", 16),
    ("oltp_read_only", 64),
];

/// Runs the comparison and prints the table.
pub fn compare(args: MysqlArgs) -> Result<()> {
    let sysbench = sqlmux_tests::which("sysbench")
        .context("sysbench is not installed (apt-get install sysbench)")?;
    let scratch = procs::ScratchDir::new()?;
    procs::install_signal_cleanup();
    let bin = match &args.sqlmux {
        Some(p) => p.clone(),
        None => targets::build_sqlmux()?.0,
    };
    eprintln!("starting MariaDB (throwaway server)");
    let db = sqlmux_tests::MariaDb::start_standard(sqlmux_tests::MariaDbOptions {
        max_connections: 400,
        ..Default::default()
    });
    let direct = MyEndpoint {
        port: db.port(),
        user: "app",
        password: "app-pass",
        db: "app",
    };
    eprintln!("sysbench prepare: 4 tables of {} rows", args.table_size);
    let prep = sysbench_cmd(&sysbench, "oltp_read_only", &direct, 4, &args, "prepare");
    let out = procs::run_tool(prep, Duration::from_secs(600))?;
    if !out.success() {
        bail!("sysbench prepare failed:\n{}{}", out.stdout, out.stderr);
    }
    let proxy = start_sqlmux(&bin, scratch.path(), &direct)?;
    let through = MyEndpoint {
        port: proxy.1,
        ..direct.clone()
    };
    let mut rows: Vec<(&str, u32, Vec<RunResult>, Vec<RunResult>)> = SCENARIOS
        .iter()
        .map(|(s, t)| (*s, *t, Vec::new(), Vec::new()))
        .collect();
    for round in 1..=args.runs {
        for row in rows.iter_mut() {
            let d = one_run(&sysbench, row.0, row.1, &direct, None, &args)?;
            let s = one_run(
                &sysbench,
                row.0,
                row.1,
                &through,
                Some(proxy.0.pid()),
                &args,
            )?;
            eprintln!(
                "round {round} {:<18} t={:<3} direct {:>8.0} tps  sqlmux {:>8.0} tps",
                row.0, row.1, d.tps, s.tps
            );
            row.2.push(d);
            row.3.push(s);
        }
    }
    print!("{}", render(&args, &rows));
    drop(proxy);
    Ok(())
}

fn sysbench_cmd(
    bin: &Path,
    test: &str,
    ep: &MyEndpoint,
    threads: u32,
    args: &MysqlArgs,
    verb: &str,
) -> Command {
    let mut c = Command::new(bin);
    c.arg(test)
        .arg("--db-driver=mysql")
        .arg("--mysql-host=127.0.0.1")
        .arg(format!("--mysql-port={}", ep.port))
        .arg(format!("--mysql-user={}", ep.user))
        .arg(format!("--mysql-password={}", ep.password))
        .arg(format!("--mysql-db={}", ep.db))
        .arg("--mysql-ssl=off")
        .arg("--tables=4")
        .arg(format!("--table-size={}", args.table_size))
        .arg(format!("--threads={threads}"))
        .arg("--db-ps-mode=disable")
        .arg(format!("--time={}", args.duration))
        .arg("--report-interval=0")
        .arg(verb);
    c
}

/// Starts sqlmux with a MySQL listener in front of `upstream`; returns the
/// process and the client port.
fn start_sqlmux(bin: &Path, dir: &Path, upstream: &MyEndpoint) -> Result<(Server, u16)> {
    let port = sqlmux_tests::free_port();
    let pg_port = sqlmux_tests::free_port();
    let admin_port = sqlmux_tests::free_port();
    let config = dir.join("sqlmux-mysql.toml");
    let text = format!(
        "# generated by sqlmux-bench compare-mysql\n\
         [admin]\nlisten = \"127.0.0.1:{admin_port}\"\n\n\
         [postgres]\nlisten = \"127.0.0.1:{pg_port}\"\n\n\
         [mysql]\nlisten = \"127.0.0.1:{port}\"\n\n\
         [pool]\nmode = \"transaction\"\nsize = {size}\nmax_client_connections = {max}\n\n\
         [[databases]]\nname = {db:?}\nprotocol = \"mysql\"\nhost = \"127.0.0.1\"\nport = {up}\n\n\
         [[users]]\nname = {user:?}\npassword = {pw:?}\n",
        size = targets::POOL_SIZE,
        max = targets::MAX_CLIENTS,
        db = upstream.db,
        up = upstream.port,
        user = upstream.user,
        pw = upstream.password,
    );
    std::fs::write(&config, text)?;
    let mut cmd = Command::new(bin);
    cmd.arg("--config").arg(&config);
    let mut server = Server::spawn("sqlmux-mysql", cmd, None, &dir.join("sqlmux-mysql.log"))?;
    targets::wait_listening(&mut server, port, Duration::from_secs(30))?;
    Ok((server, port))
}

fn one_run(
    bin: &Path,
    test: &str,
    threads: u32,
    ep: &MyEndpoint,
    proxy_pid: Option<u32>,
    args: &MysqlArgs,
) -> Result<RunResult> {
    let ticks0 = proxy_pid.and_then(sys::cpu_ticks_split);
    let cmd = sysbench_cmd(bin, test, ep, threads, args, "run");
    let out = procs::run_tool(cmd, Duration::from_secs(args.duration + 120))?;
    let ticks1 = proxy_pid.and_then(sys::cpu_ticks_split);
    if !out.success() {
        bail!("sysbench {test} failed:\n{}{}", out.stdout, out.stderr);
    }
    let mut r = parse(&out.stdout);
    if let (Some((u0, s0)), Some((u1, s1))) = (ticks0, ticks1)
        && r.transactions > 0
    {
        let per_tx = |t: u64| sys::ticks_to_duration(t).as_secs_f64() * 1e6 / r.transactions as f64;
        r.cpu_us = Some((per_tx(u1.saturating_sub(u0)), per_tx(s1.saturating_sub(s0))));
    }
    Ok(r)
}

/// Reads sysbench's summary: transactions, ignored errors, latency.
fn parse(stdout: &str) -> RunResult {
    let mut r = RunResult::default();
    for line in stdout.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["transactions:", n, rate, ..] => {
                r.transactions = n.parse().unwrap_or(0);
                r.tps = rate.trim_start_matches('(').parse().unwrap_or(0.0);
            }
            ["ignored", "errors:", n, ..] => r.errors += n.parse::<u64>().unwrap_or(0),
            ["avg:", v] => r.latency_avg_ms = v.parse().unwrap_or(0.0),
            ["95th", "percentile:", v] => r.latency_p95_ms = v.parse().unwrap_or(0.0),
            _ => {}
        }
    }
    r
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

type Row<'a> = (&'a str, u32, Vec<RunResult>, Vec<RunResult>);

fn render(args: &MysqlArgs, rows: &[Row<'_>]) -> String {
    let mut s = format!(
        "\nMySQL: sysbench --db-ps-mode=disable, {} s x {} rounds, pool {} (medians)\n\n",
        args.duration,
        args.runs,
        targets::POOL_SIZE
    );
    s += "| scenario | threads | direct tps | sqlmux tps | ratio | sqlmux p95 ms (direct) | sqlmux CPU us/tx (usr+sys) | errors |\n";
    s += "|---|---|---|---|---|---|---|---|\n";
    for (test, threads, d, m) in rows {
        let dt = median(d.iter().map(|r| r.tps).collect());
        let mt = median(m.iter().map(|r| r.tps).collect());
        let usr = median(m.iter().filter_map(|r| r.cpu_us.map(|c| c.0)).collect());
        let sys = median(m.iter().filter_map(|r| r.cpu_us.map(|c| c.1)).collect());
        let p95 = median(m.iter().map(|r| r.latency_p95_ms).collect());
        let dp95 = median(d.iter().map(|r| r.latency_p95_ms).collect());
        let errors: u64 = m.iter().map(|r| r.errors).sum();
        s += &format!(
            "| {test} | {threads} | {dt:.0} | {mt:.0} | {:.2}x | {p95:.2} ({dp95:.2}) | {:.1} ({usr:.1}+{sys:.1}) | {errors} |\n",
            mt / dt,
            usr + sys
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysbench_summary_is_read() {
        let out = "SQL statistics:\n    transactions:                        12345  (1234.50 per sec.)\n    ignored errors:                      3      (0.30 per sec.)\nLatency (ms):\n         avg:                                    1.23\n         95th percentile:                        2.50\n";
        let r = parse(out);
        assert_eq!(r.transactions, 12345);
        assert_eq!(r.tps, 1234.5);
        assert_eq!(r.errors, 3);
        assert_eq!(r.latency_avg_ms, 1.23);
        assert_eq!(r.latency_p95_ms, 2.5);
    }
}
