//! `sqlmux-bench compare-mysql`: sysbench against a throwaway MariaDB,
//! directly and through sqlmux's MySQL port, in interleaved rounds, with
//! sqlmux's CPU per transaction (utime + stime from /proc) and the ratios.
//!
//! Scenarios: `oltp_point_select` and `oltp_read_only` with
//! `--db-ps-mode=disable` (text protocol) at 16 and 64 threads, and with
//! `--db-ps-mode=auto` (server-side prepared statements) at 16, 64 and 256
//! threads, over a pool of [`targets::POOL_SIZE`] servers. With
//! `--proxysql PATH`, ProxySQL runs as a third target with the same pool
//! size ([`crate::proxysql`]).

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
    /// ProxySQL binary to compare with (same pool size, multiplexing on).
    #[arg(long, value_name = "PATH")]
    proxysql: Option<std::path::PathBuf>,
}

/// Where sysbench connects.
#[derive(Debug, Clone)]
pub struct MyEndpoint {
    /// Port on 127.0.0.1.
    pub port: u16,
    /// User name.
    pub user: &'static str,
    /// Password.
    pub password: &'static str,
    /// Database.
    pub db: &'static str,
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

/// One sysbench configuration: test, threads, `--db-ps-mode`.
type Scenario = (&'static str, u32, &'static str);

const SCENARIOS: &[Scenario] = &[
    ("oltp_point_select", 16, "disable"),
    ("oltp_point_select", 64, "disable"),
    ("oltp_read_only", 16, "disable"),
    ("oltp_read_only", 64, "disable"),
    ("oltp_point_select", 16, "auto"),
    ("oltp_point_select", 64, "auto"),
    ("oltp_point_select", 256, "auto"),
    ("oltp_read_only", 64, "auto"),
];

/// A scenario's runs on each target: direct, sqlmux, ProxySQL.
struct Row {
    scenario: Scenario,
    runs: [Vec<RunResult>; 3],
}

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
    let prep = sysbench_cmd(&sysbench, SCENARIOS[2], &direct, &args, "prepare");
    let out = procs::run_tool(prep, Duration::from_secs(600))?;
    if !out.success() {
        bail!("sysbench prepare failed:\n{}{}", out.stdout, out.stderr);
    }
    let proxy = start_sqlmux(&bin, scratch.path(), &direct)?;
    let proxysql = match &args.proxysql {
        Some(p) => Some(crate::proxysql::start(p, scratch.path(), &direct)?),
        None => None,
    };
    let mut targets: Vec<(MyEndpoint, Option<u32>)> = vec![(direct.clone(), None)];
    targets.push((direct.at(proxy.1), Some(proxy.0.pid())));
    if let Some((server, port)) = &proxysql {
        targets.push((direct.at(*port), Some(server.pid())));
    }
    let mut rows: Vec<Row> = SCENARIOS
        .iter()
        .map(|s| Row {
            scenario: *s,
            runs: Default::default(),
        })
        .collect();
    for round in 1..=args.runs {
        for row in rows.iter_mut() {
            let mut line = format!("round {round} {:?}", row.scenario);
            for (i, (ep, pid)) in targets.iter().enumerate() {
                let r = one_run(&sysbench, row.scenario, ep, *pid, &args)?;
                line += &format!(" {:.0} tps", r.tps);
                row.runs[i].push(r);
            }
            eprintln!("{line}");
        }
    }
    print!("{}", render(&args, &rows, proxysql.is_some()));
    drop(proxy);
    drop(proxysql);
    Ok(())
}

impl MyEndpoint {
    /// The same database and user on another port.
    fn at(&self, port: u16) -> MyEndpoint {
        MyEndpoint {
            port,
            ..self.clone()
        }
    }
}

fn sysbench_cmd(
    bin: &Path,
    (test, threads, ps_mode): Scenario,
    ep: &MyEndpoint,
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
        .arg(format!("--db-ps-mode={ps_mode}"))
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
    scenario: Scenario,
    ep: &MyEndpoint,
    proxy_pid: Option<u32>,
    args: &MysqlArgs,
) -> Result<RunResult> {
    let test = scenario.0;
    let ticks0 = proxy_pid.and_then(sys::cpu_ticks_split);
    let cmd = sysbench_cmd(bin, scenario, ep, args, "run");
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

/// Median tps, p95 latency and CPU per transaction (user, system) of runs.
fn medians(runs: &[RunResult]) -> (f64, f64, f64, f64) {
    let m = |f: &dyn Fn(&RunResult) -> Option<f64>| median(runs.iter().filter_map(f).collect());
    (
        m(&|r| Some(r.tps)),
        m(&|r| Some(r.latency_p95_ms)),
        m(&|r| r.cpu_us.map(|c| c.0)),
        m(&|r| r.cpu_us.map(|c| c.1)),
    )
}

fn render(args: &MysqlArgs, rows: &[Row], proxysql: bool) -> String {
    let mut s = format!(
        "\nMySQL: sysbench, {} s x {} rounds, pool {} (medians)\n\n",
        args.duration,
        args.runs,
        targets::POOL_SIZE
    );
    s += "| scenario | ps-mode | threads | direct tps | sqlmux tps | ratio | sqlmux p95 ms (direct) | sqlmux CPU us/tx (usr+sys) |";
    s += if proxysql {
        " ProxySQL tps | ratio | ProxySQL CPU us/tx (usr+sys) | errors |\n"
    } else {
        " errors |\n"
    };
    s += if proxysql {
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    } else {
        "|---|---|---|---|---|---|---|---|---|\n"
    };
    for row in rows {
        let (test, threads, ps) = row.scenario;
        let (dt, dp95, _, _) = medians(&row.runs[0]);
        let (mt, p95, usr, sys) = medians(&row.runs[1]);
        s += &format!(
            "| {test} | {ps} | {threads} | {dt:.0} | {mt:.0} | {:.2}x | {p95:.2} ({dp95:.2}) | {:.1} ({usr:.1}+{sys:.1}) |",
            mt / dt,
            usr + sys
        );
        if proxysql {
            let (pt, _, pu, psys) = medians(&row.runs[2]);
            s += &format!(
                " {pt:.0} | {:.2}x | {:.1} ({pu:.1}+{psys:.1}) |",
                pt / dt,
                pu + psys
            );
        }
        let errors: u64 = row.runs[1..].iter().flatten().map(|r| r.errors).sum();
        s += &format!(" {errors} |\n");
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
