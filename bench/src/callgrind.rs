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
    /// Also count PgBouncer (this binary, 1.21 or later for the prepared
    /// cell) the same way, in its own column.
    #[arg(long, value_name = "PATH")]
    pgbouncer: Option<PathBuf>,
}

/// Whose instructions a column counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    /// sqlmux with insight off.
    Off,
    /// sqlmux with insight on.
    On,
    /// PgBouncer.
    PgBouncer,
}

impl Subject {
    /// Prefix of the dump files.
    fn label(self) -> &'static str {
        match self {
            Subject::Off => "off",
            Subject::On => "on",
            Subject::PgBouncer => "pgbouncer",
        }
    }
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
    subject: Subject,
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
    let scratch = procs::ScratchDir::for_servers().context("creating the scratch directory")?;
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
    let direct = Endpoint::cluster(cluster.port());
    crate::pgbench::initialize(&direct, 1)?;
    let mut results = Vec::new();
    for subject in [Subject::Off, Subject::On] {
        if !wanted(&args.insight, subject.label()) {
            continue;
        }
        results.extend(profile_sqlmux(
            &args, &bin, &scratch, &out_dir, &direct, subject,
        )?);
    }
    if let Some(pgb) = &args.pgbouncer {
        results.extend(profile_pgbouncer(&args, pgb, &scratch, &out_dir, &direct)?);
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

/// One sqlmux under callgrind (insight off or on); every selected cell.
fn profile_sqlmux(
    args: &CallgrindArgs,
    bin: &Path,
    scratch: &procs::ScratchDir,
    out_dir: &Path,
    direct: &Endpoint,
    subject: Subject,
) -> Result<Vec<Measured>> {
    let label = subject.label();
    let name = format!("sqlmux-callgrind-{label}");
    let settings = SqlmuxSettings {
        insight: subject == Subject::On,
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
    let probe = Probe {
        proxy: &proxy,
        dumps: &dumps,
        run_as: None,
        seen: Vec::new(),
    };
    measure_cells(args, probe, out_dir, subject, &[])
}

/// PgBouncer under callgrind, as the OS user it runs as; every selected
/// cell (not `prepared` when this PgBouncer lacks prepared statements).
fn profile_pgbouncer(
    args: &CallgrindArgs,
    bin: &Path,
    scratch: &procs::ScratchDir,
    out_dir: &Path,
    direct: &Endpoint,
) -> Result<Vec<Measured>> {
    let run_as = targets::pgbouncer_user()?;
    let dumps = scratch.subdir("dumps-pgbouncer", run_as)?;
    let command = |ini: &Path| {
        let mut cmd = Command::new("valgrind");
        cmd.arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}/cg.out", dumps.display()))
            .arg(bin)
            .arg(ini);
        cmd
    };
    let launch = targets::PgBouncerLaunch {
        command: &command,
        timeout: Duration::from_secs(300),
    };
    eprintln!("starting PgBouncer under callgrind");
    let pgb = targets::start_pgbouncer_with(bin, scratch, "pgbouncer-callgrind", direct, &launch)?;
    let skip: &[&str] = if pgb.prepared_note.is_some() {
        eprintln!("  this PgBouncer has no prepared statements: prepared cell left out");
        &["prepared"]
    } else {
        &[]
    };
    let probe = Probe {
        proxy: &pgb.proxy,
        dumps: &dumps,
        run_as,
        seen: Vec::new(),
    };
    measure_cells(args, probe, out_dir, Subject::PgBouncer, skip)
}

/// Warms the proxy behind `probe` up, measures its idle rate, then every
/// selected cell (except `skip`) `--repeat` times.
fn measure_cells(
    args: &CallgrindArgs,
    mut probe: Probe<'_>,
    out_dir: &Path,
    subject: Subject,
    skip: &[&str],
) -> Result<Vec<Measured>> {
    let label = subject.label();
    let endpoint = &probe.proxy.endpoint;
    // Start-up work that the proxy finishes in the background (metrics,
    // first pools) must not count as idle cost: warm up first.
    pgbench(endpoint, &["-S"], 1, 20)?;
    std::thread::sleep(Duration::from_secs(1));
    let idle_rate = probe.idle_rate(&out_dir.join(format!("{label}-idle.out")))?;
    eprintln!("  idle: {idle_rate:.0} instructions/s");
    let mut out = Vec::new();
    let cells = CELLS
        .iter()
        .filter(|c| wanted(&args.only, c.name) && !skip.contains(&c.name));
    for cell in cells {
        let tx = if cell.login {
            args.logins
        } else {
            args.transactions
        };
        let per_client = (tx / args.clients).max(1);
        pgbench(endpoint, cell.flags, args.clients, 20)?;
        let mut samples = Vec::new();
        for rep in 1..=args.repeat.max(1) {
            probe.zero()?;
            let t = Instant::now();
            pgbench(endpoint, cell.flags, args.clients, per_client)?;
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
            subject,
            cell: cell.name,
            per_tx: samples[samples.len() / 2],
            spread: (samples[0], samples[samples.len() - 1]),
        });
    }
    Ok(out)
}

/// Zeroes and dumps callgrind's counters of one running proxy.
struct Probe<'a> {
    proxy: &'a Proxy,
    dumps: &'a Path,
    /// The proxy's OS user: callgrind_control must run as it.
    run_as: Option<procs::RunAs>,
    seen: Vec<PathBuf>,
}

impl Probe<'_> {
    fn control(&self, flag: &str) -> Result<()> {
        let mut cmd = Command::new("callgrind_control");
        cmd.arg(flag).arg(self.proxy.pid().to_string());
        let out = procs::run_tool_as(cmd, self.run_as, Duration::from_secs(120))?;
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
                    "callgrind wrote no new dump into {} (files: {}; proxy log: {})",
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
    let mut cmd = crate::pgbench::base_command(ep);
    cmd.arg("-n");
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

/// The table: one row per cell, instructions per transaction of sqlmux
/// with insight off and on, and of PgBouncer when it was measured.
fn render(args: &CallgrindArgs, results: &[Measured]) -> String {
    let get =
        |cell: &str, who: Subject| results.iter().find(|m| m.cell == cell && m.subject == who);
    let find = |cell: &str, who: Subject| get(cell, who).map(|m| m.per_tx);
    let fmt = |cell: &str, who: Subject| {
        get(cell, who).map_or("-".to_string(), |m| {
            format!("{:.0} ({:.0}-{:.0})", m.per_tx, m.spread.0, m.spread.1)
        })
    };
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.3}x", a / b),
        _ => "-".into(),
    };
    let with_pgb = args.pgbouncer.is_some();
    let mut s = format!(
        "callgrind: instructions per transaction in the proxy's user space, median (min-max) of {} ({} transactions, {} clients, {} logins)\n\n",
        args.repeat, args.transactions, args.clients, args.logins
    );
    s += "| cell | sqlmux insight off | sqlmux insight on | on / off |";
    s += if with_pgb {
        " PgBouncer | sqlmux (on) / PgBouncer |\n|---|---:|---:|---:|---:|---:|\n"
    } else {
        "\n|---|---:|---:|---:|\n"
    };
    for cell in CELLS.iter().filter(|c| wanted(&args.only, c.name)) {
        let (off, on) = (find(cell.name, Subject::Off), find(cell.name, Subject::On));
        let label = if cell.login {
            "login + tx (-C)"
        } else {
            cell.name
        };
        let (a, b) = (fmt(cell.name, Subject::Off), fmt(cell.name, Subject::On));
        s += &format!("| {label} | {a} | {b} | {} |", ratio(on, off));
        if with_pgb {
            let pgb = find(cell.name, Subject::PgBouncer);
            let p = fmt(cell.name, Subject::PgBouncer);
            s += &format!(" {p} | {} |", ratio(on, pgb));
        }
        s += "\n";
    }
    let per_login = |who: Subject| Some(find("login", who)? - find("simple", who)?);
    if let Some(l) = per_login(Subject::Off) {
        s += &format!("\nper login, sqlmux (insight off): {l:.0} instructions\n");
    }
    if let Some(l) = per_login(Subject::PgBouncer) {
        s += &format!("per login, PgBouncer: {l:.0} instructions\n");
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

    fn args(pgbouncer: bool) -> CallgrindArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: CallgrindArgs,
        }
        let mut argv = vec!["callgrind", "--only", "simple,login"];
        if pgbouncer {
            argv.extend(["--pgbouncer", "/opt/pgbouncer"]);
        }
        Cli::parse_from(argv).args
    }

    fn measured(subject: Subject, cell: &'static str, per_tx: f64) -> Measured {
        Measured {
            subject,
            cell,
            per_tx,
            spread: (per_tx - 10.0, per_tx + 10.0),
        }
    }

    #[test]
    fn the_table_compares_insight_and_pgbouncer() {
        let results = [
            measured(Subject::Off, "simple", 10_000.0),
            measured(Subject::On, "simple", 10_400.0),
            measured(Subject::PgBouncer, "simple", 20_800.0),
            measured(Subject::Off, "login", 40_000.0),
            measured(Subject::On, "login", 40_400.0),
            measured(Subject::PgBouncer, "login", 31_800.0),
        ];
        let table = render(&args(true), &results);
        assert!(
            table.contains("| simple | 10000 (9990-10010) | 10400 (10390-10410) | 1.040x | 20800 (20790-20810) | 0.500x |"),
            "{table}"
        );
        assert!(
            table.contains("per login, sqlmux (insight off): 30000 instructions"),
            "{table}"
        );
        assert!(
            table.contains("per login, PgBouncer: 11000 instructions"),
            "{table}"
        );
        // Without --pgbouncer there is no PgBouncer column.
        let table = render(&args(false), &results[..2]);
        assert!(!table.contains("PgBouncer"), "{table}");
        assert!(
            table.contains("| simple | 10000 (9990-10010) | 10400 (10390-10410) | 1.040x |\n"),
            "{table}"
        );
    }
}
