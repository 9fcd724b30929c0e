//! `sqlmux-bench callgrind`: instructions per transaction and per login,
//! counted by valgrind's callgrind, with insight on and off.
//!
//! # Method
//!
//! Wall-clock CPU time on a shared machine varies by 15-30% between rounds;
//! instruction counts do not. For each insight setting one sqlmux runs under
//! `valgrind --tool=callgrind` in front of a throwaway PostgreSQL. Each cell
//! first warms up (pools filled, statements known), then zeroes the counters
//! with `callgrind_control --zero`, runs pgbench for a fixed number of
//! transactions and dumps the counters with `callgrind_control --dump`. The
//! instructions sqlmux executes while idle (timers) are measured the same way
//! over a pause and subtracted in proportion to each cell's duration; they
//! are a tiny fraction. Instructions divided by transactions is the cost of
//! one transaction in sqlmux's user space (system calls are not counted).
//!
//! The login cell runs `pgbench -C` (a new connection per transaction); the
//! cost of a login is that cell's figure minus the simple-protocol one.
//!
//! Each cell is measured `--repeat` times; the table shows the median and
//! the range. With `--out-dir` the dumps are kept
//! (`<off|on>-<cell>-<n>.out`) for `callgrind_annotate`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::pgbench::Endpoint;
use crate::procs;
use crate::targets::{self, Proxy, SqlmuxSettings};

/// Options of `callgrind`.
#[derive(Args, Debug, Clone)]
pub struct CallgrindArgs {
    /// sqlmux binary to run (default: build target/release/sqlmux).
    #[arg(long, value_name = "PATH")]
    sqlmux: Option<PathBuf>,
    /// Transactions per cell (spread over --clients).
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    transactions: u32,
    /// pgbench clients. With one, every transaction takes the same path
    /// through sqlmux (one read and one write on each side), so the count
    /// does not depend on how busy the machine is; with more, how many
    /// messages arrive per wake-up does.
    #[arg(long, value_name = "N", default_value_t = 1)]
    clients: u32,
    /// Measurements per cell; the table shows their median and range.
    #[arg(long, value_name = "N", default_value_t = 3)]
    repeat: u32,
    /// Connections in the login cell.
    #[arg(long, value_name = "N", default_value_t = 400)]
    logins: u32,
    /// Keep callgrind's dumps here, named `<off|on>-<cell>-<n>.out`.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// Only these cells (comma-separated): simple, extended, prepared, login.
    #[arg(long, value_name = "CELLS", value_delimiter = ',')]
    only: Vec<String>,
    /// Only these insight settings (comma-separated): off, on.
    #[arg(long, value_name = "SETTINGS", value_delimiter = ',')]
    insight: Vec<String>,
}

/// One measured cell: what pgbench runs.
struct Cell {
    name: &'static str,
    flags: &'static [&'static str],
    login: bool,
}

const CELLS: &[Cell] = &[
    Cell {
        name: "simple",
        flags: &["-S", "-M", "simple"],
        login: false,
    },
    Cell {
        name: "extended",
        flags: &["-S", "-M", "extended"],
        login: false,
    },
    Cell {
        name: "prepared",
        flags: &["-S", "-M", "prepared"],
        login: false,
    },
    Cell {
        name: "login",
        flags: &["-S", "-M", "simple", "-C"],
        login: true,
    },
];

/// One result: instructions per transaction of one cell.
struct Measured {
    insight: bool,
    cell: &'static str,
    /// Median over the repetitions.
    per_tx: f64,
    /// Lowest and highest repetition.
    spread: (f64, f64),
}

/// Runs the cells for insight off and on and prints the table.
pub fn run(args: CallgrindArgs) -> Result<()> {
    for tool in ["valgrind", "callgrind_control"] {
        anyhow::ensure!(
            sqlmux_tests::which(tool).is_some(),
            "{tool} not found: install valgrind"
        );
    }
    let scratch = procs::ScratchDir::new().context("creating the scratch directory")?;
    if std::env::var_os("SQLMUX_TEST_TMPDIR").is_none() {
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("SQLMUX_TEST_TMPDIR", scratch.path()) };
    }
    procs::install_signal_cleanup();
    let bin = match &args.sqlmux {
        Some(p) => p.clone(),
        None => targets::build_sqlmux()?.0,
    };
    let out_dir = match &args.out_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => scratch.subdir("callgrind", None)?,
    };
    eprintln!("starting PostgreSQL (throwaway cluster)");
    let cluster = sqlmux_tests::PgCluster::start(sqlmux_tests::PgOptions::default());
    let direct = Endpoint {
        host: "127.0.0.1".into(),
        port: cluster.port(),
        user: "postgres".into(),
        password: None,
        db: "postgres".into(),
    };
    crate::pgbench::initialize(&direct, 1)?;
    let mut results = Vec::new();
    for insight in [false, true] {
        if !wanted(&args.insight, if insight { "on" } else { "off" }) {
            continue;
        }
        results.extend(profile_one(
            &args, &bin, &scratch, &out_dir, &direct, insight,
        )?);
    }
    print!("{}", render(&args, &results));
    if args.out_dir.is_some() {
        println!(
            "dumps in {}; e.g. callgrind_annotate {}/on-simple-1.out",
            out_dir.display(),
            out_dir.display()
        );
    }
    drop(cluster);
    Ok(())
}

fn wanted(filter: &[String], name: &str) -> bool {
    filter.is_empty() || filter.iter().any(|f| f == name)
}

/// One sqlmux under callgrind with `insight`; every selected cell.
fn profile_one(
    args: &CallgrindArgs,
    bin: &Path,
    scratch: &procs::ScratchDir,
    out_dir: &Path,
    direct: &Endpoint,
    insight: bool,
) -> Result<Vec<Measured>> {
    let label = if insight { "on" } else { "off" };
    let name = format!("sqlmux-callgrind-{label}");
    let settings = SqlmuxSettings {
        insight,
        workers: 1,
    };
    let (config, port) =
        targets::write_sqlmux_config(bin, scratch.path(), &name, direct, &settings)?;
    let dumps = scratch.subdir(&format!("dumps-{label}"), None)?;
    let mut cmd = Command::new("valgrind");
    cmd.arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}/cg.out", dumps.display()))
        .arg(bin)
        .arg("--config")
        .arg(&config);
    eprintln!("starting sqlmux under callgrind, insight {label}");
    let proxy = targets::spawn_sqlmux(
        cmd,
        scratch.path(),
        &name,
        port,
        direct,
        Duration::from_secs(300),
    )?;
    let mut probe = Probe {
        proxy: &proxy,
        dumps: &dumps,
        seen: Vec::new(),
    };
    // Start-up work that sqlmux finishes in the background (metrics,
    // first pools) must not count as idle cost: warm up first.
    pgbench(&proxy.endpoint, &["-S"], 1, 20)?;
    std::thread::sleep(Duration::from_secs(1));
    let idle_rate = probe.idle_rate(&out_dir.join(format!("{label}-idle.out")))?;
    eprintln!("  idle: {idle_rate:.0} instructions/s");
    let mut out = Vec::new();
    for cell in CELLS.iter().filter(|c| wanted(&args.only, c.name)) {
        let tx = if cell.login {
            args.logins
        } else {
            args.transactions
        };
        let per_client = (tx / args.clients).max(1);
        pgbench(&proxy.endpoint, cell.flags, args.clients, 20)?;
        let mut samples = Vec::new();
        for rep in 1..=args.repeat.max(1) {
            probe.zero()?;
            let t = Instant::now();
            pgbench(&proxy.endpoint, cell.flags, args.clients, per_client)?;
            let elapsed = t.elapsed().as_secs_f64();
            let (file, total) = probe.dump()?;
            let keep = out_dir.join(format!("{label}-{}-{rep}.out", cell.name));
            std::fs::copy(&file, keep)?;
            let n = f64::from(per_client * args.clients);
            let per_tx = (total as f64 - idle_rate * elapsed).max(0.0) / n;
            eprintln!(
                "  {:<9} {n} tx in {elapsed:.1}s: {per_tx:.0} instructions/tx",
                cell.name
            );
            samples.push(per_tx);
        }
        samples.sort_by(f64::total_cmp);
        out.push(Measured {
            insight,
            cell: cell.name,
            per_tx: samples[samples.len() / 2],
            spread: (samples[0], samples[samples.len() - 1]),
        });
    }
    Ok(out)
}

/// Zeroes and dumps callgrind's counters of one running sqlmux.
struct Probe<'a> {
    proxy: &'a Proxy,
    dumps: &'a Path,
    seen: Vec<PathBuf>,
}

impl Probe<'_> {
    fn control(&self, flag: &str) -> Result<()> {
        let mut cmd = Command::new("callgrind_control");
        cmd.arg(flag).arg(self.proxy.pid().to_string());
        let out = procs::run_tool(cmd, Duration::from_secs(120))?;
        if !out.success() {
            bail!(
                "callgrind_control {flag} failed: {}{}",
                out.stdout,
                out.stderr
            );
        }
        Ok(())
    }

    fn zero(&mut self) -> Result<()> {
        self.control("--zero")
    }

    /// Dumps the counters and returns the new dump file and its total
    /// instruction count.
    fn dump(&mut self) -> Result<(PathBuf, u64)> {
        self.control("--dump")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // Dumps are cg.out.1, cg.out.2, ...; cg.out itself is written
            // at exit.
            let new = std::fs::read_dir(self.dumps)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x != "out"))
                .find(|p| !self.seen.contains(p));
            if let Some(file) = new
                && let Some(total) = totals(&std::fs::read_to_string(&file)?)
            {
                self.seen.push(file.clone());
                return Ok((file, total));
            }
            if Instant::now() > deadline {
                let names: Vec<String> = std::fs::read_dir(self.dumps)?
                    .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                    .collect();
                bail!(
                    "callgrind wrote no new dump into {} (files: {}; sqlmux log: {})",
                    self.dumps.display(),
                    names.join(" "),
                    self.proxy.server.log_tail(5)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Instructions per second while no client is connected; the dump is
    /// copied to `keep`.
    fn idle_rate(&mut self, keep: &Path) -> Result<f64> {
        self.zero()?;
        let t = Instant::now();
        std::thread::sleep(Duration::from_secs(3));
        let (file, total) = self.dump()?;
        std::fs::copy(file, keep)?;
        Ok(total as f64 / t.elapsed().as_secs_f64())
    }
}

/// The `totals:` (or `summary:`) line of a callgrind dump.
fn totals(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l
            .strip_prefix("totals:")
            .or_else(|| l.strip_prefix("summary:"))?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// `pgbench -n FLAGS -c clients -t per_client` against `ep`.
fn pgbench(ep: &Endpoint, flags: &[&str], clients: u32, per_client: u32) -> Result<()> {
    let mut cmd = Command::new(sqlmux_tests::pg_tool("pgbench"));
    procs::clean_pg_env(&mut cmd);
    cmd.args([
        "-h",
        &ep.host,
        "-p",
        &ep.port.to_string(),
        "-U",
        &ep.user,
        "-n",
    ]);
    cmd.args(flags);
    cmd.arg("-c").arg(clients.to_string());
    cmd.arg("-t").arg(per_client.to_string());
    cmd.arg(&ep.db);
    let out = procs::run_tool(cmd, Duration::from_secs(3600))?;
    if !out.success() || out.stderr.contains("error") {
        bail!("pgbench {} failed: {}", flags.join(" "), out.stderr.trim());
    }
    Ok(())
}

/// The table: one row per cell, instructions per transaction off and on.
fn render(args: &CallgrindArgs, results: &[Measured]) -> String {
    let get = |cell: &str, on: bool| results.iter().find(|m| m.cell == cell && m.insight == on);
    let find = |cell: &str, on: bool| get(cell, on).map(|m| m.per_tx);
    let fmt = |cell: &str, on: bool| {
        get(cell, on).map_or("-".to_string(), |m| {
            format!("{:.0} ({:.0}-{:.0})", m.per_tx, m.spread.0, m.spread.1)
        })
    };
    let mut s = format!(
        "callgrind: sqlmux instructions per transaction, median (min-max) of {} ({} transactions, {} clients, {} logins)\n\n\
         | cell | insight off | insight on | on / off |\n|---|---:|---:|---:|\n",
        args.repeat, args.transactions, args.clients, args.logins
    );
    for cell in CELLS.iter().filter(|c| wanted(&args.only, c.name)) {
        let (off, on) = (find(cell.name, false), find(cell.name, true));
        let ratio = match (off, on) {
            (Some(a), Some(b)) if a > 0.0 => format!("{:.3}x", b / a),
            _ => "-".into(),
        };
        let label = if cell.login {
            "login + tx (-C)"
        } else {
            cell.name
        };
        let (a, b) = (fmt(cell.name, false), fmt(cell.name, true));
        s += &format!("| {label} | {a} | {b} | {ratio} |\n");
    }
    if let (Some(l), Some(t)) = (find("login", false), find("simple", false)) {
        s += &format!("\nper login (insight off): {:.0} instructions\n", l - t);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_totals_line() {
        let dump =
            "version: 1\ncreator: callgrind-3.22\nevents: Ir\nfn=(1) main\n1 5\ntotals: 123456\n";
        assert_eq!(totals(dump), Some(123456));
        assert_eq!(totals("summary: 42\n"), Some(42));
        assert_eq!(totals("fn=main\n"), None);
    }
}
