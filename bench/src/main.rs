//! `sqlmux-bench`: the numbers users compare.
//!
//! `sqlmux-bench compare` starts a throwaway PostgreSQL (or uses `--pg`),
//! the release `sqlmux` binary and PgBouncer (when installed), runs pgbench
//! scenarios against each in interleaved rounds, measures idle-client
//! memory, and prints one table with the targets. See README.md in
//! this directory for the method and the meaning of every column.
//!
//! # Map
//!
//! - [`procs`]: children that never outlive the runner, scratch directory,
//!   Ctrl-C clean-up.
//! - [`sys`]: `/proc` readers (CPU ticks, RSS, machine busy time).
//! - [`targets`]: starting sqlmux and PgBouncer with generated configs.
//! - [`pgbench`]: one pgbench run, its summary and latency log.
//! - [`idle`]: a minimal login-only client for the idle-client scenario.
//! - [`mysql`]: `compare-mysql`, sysbench against MariaDB directly and
//!   through sqlmux (text and prepared statements).
//! - [`proxysql`]: ProxySQL as a third `compare-mysql` target.
//! - [`scenario`]: the matrix.
//! - [`report`]: aggregation, the table, the targets, JSON.
//! - [`soak`]: `soak`, thousands of clients on both ports for minutes.

mod callgrind;
mod idle;
mod mysql;
mod pgbench;
mod procs;
mod proxysql;
mod report;
mod scenario;
mod soak;
mod sys;
mod targets;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use pgbench::{Endpoint, Invocation};
use report::{IdleResult, Report, RunRecord};
use scenario::{Scenario, Target};

/// Benchmarks for sqlmux.
#[derive(Parser, Debug)]
#[command(name = "sqlmux-bench", about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Compare sqlmux with a direct connection and PgBouncer (pgbench).
    Compare(CompareArgs),
    /// Compare sqlmux's MySQL port with a direct MariaDB connection
    /// (sysbench).
    CompareMysql(mysql::MysqlArgs),
    /// Instructions per transaction and per login under valgrind's
    /// callgrind, insight on and off.
    Callgrind(callgrind::CallgrindArgs),
    /// Thousands of clients on both ports doing short transactions through
    /// small pools, with RELOADs (scripts/soak.sh).
    Soak(soak::SoakArgs),
}

/// Options of `compare`.
#[derive(Args, Debug, Clone)]
struct CompareArgs {
    /// Short smoke run: 1 round, 3 s runs, scale 1, 1000 idle clients.
    #[arg(long)]
    quick: bool,
    /// Write every raw number to this JSON file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Use this PostgreSQL (postgres://user[:password]@host:port/db)
    /// instead of starting a throwaway one. pgbench tables are created only
    /// when missing.
    #[arg(long, value_name = "URL")]
    pg: Option<String>,
    /// PgBouncer binary (default: `pgbouncer` on PATH or in sbin).
    #[arg(long, value_name = "PATH")]
    pgbouncer: Option<PathBuf>,
    /// Leave PgBouncer out even when it is installed.
    #[arg(long)]
    no_pgbouncer: bool,
    /// sqlmux binary to run (default: build target/release/sqlmux).
    #[arg(long, value_name = "PATH")]
    sqlmux: Option<PathBuf>,
    /// Seconds per pgbench run (default 15, 3 with --quick).
    #[arg(long, value_name = "SECS")]
    duration: Option<u64>,
    /// Rounds (default 3, 1 with --quick).
    #[arg(long, value_name = "N")]
    runs: Option<u32>,
    /// pgbench scale factor for the throwaway database (default 10, 1
    /// with --quick).
    #[arg(long, value_name = "N")]
    scale: Option<u32>,
    /// Idle client connections to open (default 10000, 1000 with --quick).
    #[arg(long, value_name = "N")]
    idle_clients: Option<usize>,
    /// Only scenarios whose key contains one of these (comma-separated),
    /// e.g. `select-simple,connect`; `idle` selects the idle-client test.
    #[arg(long, value_name = "KEYS", value_delimiter = ',')]
    only: Vec<String>,
    /// Pause between runs, in seconds; background machine load is measured
    /// during it.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pause: f64,
    /// sqlmux `general.workers` (default 0: sqlmux's own choice, half the
    /// CPUs).
    #[arg(long, value_name = "N", default_value_t = 0)]
    workers: usize,
    /// The proxies (sqlmux and PgBouncer) reach PostgreSQL through its
    /// Unix socket in DIR (default: the throwaway cluster's socket
    /// directory) instead of TCP; clients still use TCP, and the rows are
    /// labelled `server-unix`.
    #[arg(long, value_name = "DIR", num_args = 0..=1)]
    server_unix: Option<Option<PathBuf>>,
}

/// Settings after defaults.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Settings {
    /// Seconds per run.
    pub duration_s: u64,
    /// Rounds.
    pub runs: u32,
    /// pgbench scale.
    pub scale: u32,
    /// Idle connections.
    pub idle_clients: usize,
    /// Pause between runs (s).
    pub pause_s: f64,
    /// Quick mode.
    pub quick: bool,
    /// Scenario filter.
    pub only: Vec<String>,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Compare(args) => compare(args),
        Cmd::CompareMysql(args) => mysql::compare(args),
        Cmd::Callgrind(args) => callgrind::run(args),
        Cmd::Soak(args) => soak::soak(args),
    };
    match result {
        Ok(()) => {}
        Err(e) => {
            eprintln!("sqlmux-bench: error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn compare(args: CompareArgs) -> Result<()> {
    let settings = Settings {
        duration_s: args.duration.unwrap_or(if args.quick { 3 } else { 15 }),
        runs: args.runs.unwrap_or(if args.quick { 1 } else { 3 }).max(1),
        scale: args.scale.unwrap_or(if args.quick { 1 } else { 10 }),
        idle_clients: args
            .idle_clients
            .unwrap_or(if args.quick { 1000 } else { 10_000 }),
        pause_s: args.pause.max(0.0),
        quick: args.quick,
        only: args.only.clone(),
    };

    // Before any thread exists: the scratch directory, and PostgreSQL's
    // data directory inside it (on disk, like the baselines, unless the
    // caller chose SQLMUX_TEST_TMPDIR).
    let scratch = procs::ScratchDir::for_servers().context("creating the scratch directory")?;
    let nofile = procs::raise_nofile(1 << 16);
    let needed_fds = settings.idle_clients as u64 + 1000;
    if nofile < needed_fds {
        bail!(
            "RLIMIT_NOFILE is {nofile}, but {} idle clients need about {needed_fds}; raise `ulimit -n` or pass --idle-clients",
            settings.idle_clients
        );
    }

    let wants = |key: &str| {
        settings.only.is_empty() || settings.only.iter().any(|o| key.contains(o.as_str()))
    };
    let scenarios: Vec<Scenario> = scenario::all()
        .into_iter()
        .map(|s| match args.server_unix {
            Some(_) => s.server_unix(),
            None => s,
        })
        .filter(|s| wants(&s.key))
        .collect();
    let run_idle = wants("idle");

    // sqlmux binary.
    let mut notes: Vec<String> = Vec::new();
    let sqlmux_bin = match &args.sqlmux {
        Some(p) => p.clone(),
        None => {
            let (bin, note) = targets::build_sqlmux()?;
            notes.extend(note);
            bin
        }
    };
    anyhow::ensure!(
        sqlmux_bin.exists(),
        "sqlmux binary {} does not exist",
        sqlmux_bin.display()
    );

    // PostgreSQL.
    let mut _cluster = None;
    let direct = match &args.pg {
        Some(url) => parse_pg_url(url)?,
        None => {
            eprintln!("starting PostgreSQL (throwaway cluster)");
            let cluster = sqlmux_tests::PgCluster::start(sqlmux_tests::PgOptions {
                max_connections: 400,
                conf: PG_CONF.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            });
            let ep = Endpoint::cluster(cluster.port());
            _cluster = Some(cluster);
            ep
        }
    };
    // What the proxies connect to: the same server, maybe over its socket.
    let upstream = match &args.server_unix {
        None => direct.clone(),
        Some(dir) => {
            let dir = match (dir, &_cluster) {
                (Some(dir), _) => dir.clone(),
                (None, Some(c)) => c.socket_dir().to_path_buf(),
                (None, None) => bail!("--server-unix needs a directory when --pg is given"),
            };
            Endpoint {
                host: dir.display().to_string(),
                ..direct.clone()
            }
        }
    };
    let pg_version = targets::psql(&direct, "SHOW server_version")?;
    let max_conn: u32 = targets::psql(&direct, "SHOW max_connections")?
        .parse()
        .unwrap_or(0);
    if max_conn < 320 {
        notes.push(format!(
            "PostgreSQL max_connections is {max_conn}; the c=256 direct runs plus three pools of {} need about 320",
            targets::POOL_SIZE
        ));
    }
    let has_tables = targets::psql(
        &direct,
        "SELECT count(*) FROM pg_tables WHERE tablename = 'pgbench_accounts'",
    )? != "0";
    let scale = if has_tables && args.pg.is_some() {
        let s: u32 = targets::psql(&direct, "SELECT count(*) FROM pgbench_branches")?
            .parse()
            .unwrap_or(0);
        notes.push(format!(
            "using the existing pgbench tables (scale {s}) of --pg"
        ));
        s
    } else {
        eprintln!("pgbench -i -s {}", settings.scale);
        let t = Instant::now();
        pgbench::initialize(&direct, settings.scale)?;
        targets::psql(&direct, "CHECKPOINT")?;
        eprintln!("  done in {:.1}s", t.elapsed().as_secs_f64());
        let s: u32 = targets::psql(&direct, "SELECT count(*) FROM pgbench_branches")?
            .parse()
            .unwrap_or(0);
        anyhow::ensure!(
            s == settings.scale,
            "pgbench -i -s {} left {s} rows in pgbench_branches",
            settings.scale
        );
        s
    };

    // Targets.
    let pgb_bin = if args.no_pgbouncer {
        None
    } else {
        targets::find_pgbouncer(args.pgbouncer.as_deref())
    };
    if pgb_bin.is_none() {
        notes.push(
            "PgBouncer not found (install `pgbouncer` or pass --pgbouncer PATH): its rows are missing"
                .into(),
        );
    }
    let need = |t: Target| scenarios.iter().any(|s| s.targets.contains(&t));
    eprintln!("starting sqlmux ({})", sqlmux_bin.display());
    let sqlmux = targets::start_sqlmux(
        &sqlmux_bin,
        scratch.path(),
        "sqlmux",
        &upstream,
        &targets::SqlmuxSettings {
            insight: true,
            workers: args.workers,
        },
    )?;
    check_target("sqlmux", &sqlmux.endpoint)?;
    let sqlmux_off = if need(Target::SqlmuxNoInsight) {
        let p = targets::start_sqlmux(
            &sqlmux_bin,
            scratch.path(),
            "sqlmux-noinsight",
            &upstream,
            &targets::SqlmuxSettings {
                insight: false,
                workers: args.workers,
            },
        )?;
        check_target("sqlmux-noinsight", &p.endpoint)?;
        Some(p)
    } else {
        None
    };
    let pgbouncer = match &pgb_bin {
        Some(bin) => {
            eprintln!("starting PgBouncer ({})", bin.display());
            let b = targets::start_pgbouncer(bin, &scratch, "pgbouncer", &upstream)?;
            if let Some(n) = &b.prepared_note {
                notes.push(format!(
                    "PgBouncer refused max_prepared_statements (\"{n}\"); it runs without it, so its -M prepared rows are expected to fail"
                ));
            }
            check_target("pgbouncer", &b.proxy.endpoint)?;
            Some(b)
        }
        None => None,
    };

    let header = report::Header::collect(
        &sqlmux_bin,
        pgb_bin.as_deref(),
        &pg_version,
        scale,
        &settings,
        notes,
    );
    eprint!("{}", header.render());

    let started = Instant::now();
    let mut idle_results: Vec<IdleResult> = Vec::new();
    if run_idle && settings.idle_clients > 0 {
        idle_results.push(idle_test("sqlmux", &settings, || {
            targets::start_sqlmux(
                &sqlmux_bin,
                scratch.path(),
                "sqlmux-idle",
                &upstream,
                &targets::SqlmuxSettings {
                    insight: true,
                    workers: args.workers,
                },
            )
        })?);
        if let Some(bin) = &pgb_bin {
            idle_results.push(idle_test("pgbouncer", &settings, || {
                targets::start_pgbouncer(bin, &scratch, "pgbouncer-idle", &upstream)
                    .map(|b| b.proxy)
            })?);
        }
    }

    // The interleaved rounds.
    let runs_dir = scratch.subdir("runs", None)?;
    let mut records: Vec<RunRecord> = Vec::new();
    let total_runs: usize =
        scenarios.iter().map(|s| s.targets.len()).sum::<usize>() * settings.runs as usize;
    let mut n = 0usize;
    for round in 1..=settings.runs {
        for sc in &scenarios {
            for &target in &sc.targets {
                let proxy: Option<&targets::Proxy> = match target {
                    Target::Direct => None,
                    Target::Sqlmux => Some(&sqlmux),
                    Target::SqlmuxNoInsight => sqlmux_off.as_ref(),
                    Target::PgBouncer => match &pgbouncer {
                        Some(b) => Some(&b.proxy),
                        None => continue,
                    },
                };
                if target == Target::SqlmuxNoInsight && proxy.is_none() {
                    continue;
                }
                n += 1;
                if procs::interrupted() {
                    bail!("interrupted");
                }
                let ep = proxy.map(|p| &p.endpoint).unwrap_or(&direct);
                let rec = one_run(
                    sc,
                    target,
                    round,
                    ep,
                    proxy.map(|p| p.pid()),
                    &settings,
                    &runs_dir,
                )?;
                eprintln!(
                    "[{n}/{total_runs} {:>4.0}s] round {round} {:<24} {:<16} {}",
                    started.elapsed().as_secs_f64(),
                    sc.label,
                    target.name(),
                    rec.progress_line()
                );
                records.push(rec);
                // A proxy that died is a finding; stop rather than fill the
                // table with connection errors.
                for (name, p) in [
                    ("sqlmux", Some(&sqlmux)),
                    ("sqlmux-noinsight", sqlmux_off.as_ref()),
                    ("pgbouncer", pgbouncer.as_ref().map(|b| &b.proxy)),
                ] {
                    if let Some(p) = p
                        && sys::cpu_ticks(p.pid()).is_none()
                    {
                        bail!(
                            "{name} (pid {}) is gone; log tail:\n{}",
                            p.pid(),
                            p.server.log_tail(30)
                        );
                    }
                }
            }
        }
    }

    // Anything the proxies logged at WARN or above during the runs.
    let mut proxy_logs = BTreeMap::new();
    for (name, p) in [
        ("sqlmux", Some(&sqlmux)),
        ("sqlmux-noinsight", sqlmux_off.as_ref()),
        ("pgbouncer", pgbouncer.as_ref().map(|b| &b.proxy)),
    ] {
        if let Some(p) = p {
            proxy_logs.insert(name.to_string(), warnings(&p.server.log));
        }
    }
    if let Some(b) = &pgbouncer {
        let log = b.proxy.server.log.with_file_name("pgbouncer.log");
        proxy_logs
            .entry("pgbouncer".to_string())
            .or_insert_with(Vec::new)
            .extend(warnings(&log));
    }

    let report = Report::new(
        header,
        scenarios,
        records,
        idle_results,
        proxy_logs,
        started.elapsed(),
    );
    print!("{}", report.render());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("raw numbers written to {}", path.display());
    }
    drop(pgbouncer);
    drop(sqlmux_off);
    drop(sqlmux);
    Ok(())
}

/// postgresql.conf lines for the throwaway cluster (after the harness's
/// test defaults, which they override): the baselines' settings.
const PG_CONF: &[&str] = &[
    "shared_buffers = 512MB",
    "fsync = on",
    "synchronous_commit = on",
    "full_page_writes = on",
    "autovacuum = on",
];

/// A quick query through a target, so a broken proxy fails before the
/// rounds start.
fn check_target(name: &str, ep: &Endpoint) -> Result<()> {
    let v = targets::psql(ep, "SELECT count(*) FROM pgbench_branches")
        .with_context(|| format!("a test query through {name} failed"))?;
    anyhow::ensure!(
        v.parse::<u64>().is_ok(),
        "unexpected answer through {name}: {v}"
    );
    Ok(())
}

/// One pgbench run with the proxy's CPU, peak RSS and the machine's busy
/// time around it.
fn one_run(
    sc: &Scenario,
    target: Target,
    round: u32,
    ep: &Endpoint,
    proxy_pid: Option<u32>,
    settings: &Settings,
    runs_dir: &Path,
) -> Result<RunRecord> {
    // Background load: the machine while nothing of ours runs.
    let bg0 = sys::MachineTimes::now();
    std::thread::sleep(Duration::from_secs_f64(settings.pause_s));
    let bg1 = sys::MachineTimes::now();
    let background_busy_pct = (settings.pause_s > 0.0).then(|| bg0.busy_pct_until(&bg1));

    let hwm_reset = proxy_pid.map(sys::reset_peak_rss).unwrap_or(false);
    let sampler = proxy_pid.filter(|_| !hwm_reset).map(RssSampler::start);
    let ticks0 = proxy_pid.and_then(sys::cpu_ticks_split);
    let m0 = sys::MachineTimes::now();
    let wall0 = SystemTime::now();
    let inv = Invocation {
        flags: &sc.flags,
        clients: sc.clients,
        threads: sc.threads,
        duration: Duration::from_secs(settings.duration_s),
    };
    let cmd = pgbench::describe(&pgbench::command(ep, &inv, &runs_dir.join("tx")));
    let outcome = pgbench::run(ep, &inv, runs_dir)?;
    let m1 = sys::MachineTimes::now();
    let ticks1 = proxy_pid.and_then(sys::cpu_ticks_split);
    let peak = match (proxy_pid, sampler) {
        (Some(pid), None) => sys::peak_rss(pid),
        (_, Some(s)) => Some(s.stop()),
        (None, None) => None,
    };
    let secs = |t: u64| sys::ticks_to_duration(t).as_secs_f64();
    let (cpu_s, user_s, sys_s) = match (ticks0, ticks1) {
        (Some((u0, s0)), Some((u1, s1))) => {
            let (u, s) = (u1.saturating_sub(u0), s1.saturating_sub(s0));
            (Some(secs(u + s)), Some(secs(u)), Some(secs(s)))
        }
        _ => (None, None, None),
    };
    let cpu_us_per_tx = cpu_s
        .filter(|_| outcome.transactions > 0)
        .map(|s| s * 1e6 / outcome.transactions as f64);
    Ok(RunRecord {
        scenario: sc.key.clone(),
        target,
        round,
        started_unix_s: wall0
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0),
        command: cmd,
        outcome,
        proxy_cpu_s: cpu_s,
        proxy_user_s: user_s,
        proxy_sys_s: sys_s,
        proxy_cpu_us_per_tx: cpu_us_per_tx,
        proxy_peak_rss_bytes: peak,
        peak_rss_method: if proxy_pid.is_none() {
            None
        } else if hwm_reset {
            Some("VmHWM after clear_refs")
        } else {
            Some("VmRSS sampled every 100 ms")
        },
        machine_busy_pct: m0.busy_pct_until(&m1),
        background_busy_pct,
    })
}

/// Samples VmRSS every 100 ms (when VmHWM cannot be reset).
struct RssSampler {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicU64>,
    handle: std::thread::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicU64::new(sys::rss(pid).unwrap_or(0)));
        let (s, m) = (stop.clone(), max.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(r) = sys::rss(pid) {
                    m.fetch_max(r, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        RssSampler { stop, max, handle }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.handle.join();
        self.max.load(Ordering::Relaxed)
    }
}

/// Starts a fresh proxy, opens `idle_clients` logged-in connections, and
/// measures its RSS before, with them open, and after closing them.
fn idle_test(
    name: &str,
    settings: &Settings,
    start: impl FnOnce() -> Result<targets::Proxy>,
) -> Result<IdleResult> {
    let n = settings.idle_clients;
    eprintln!("idle clients: {n} against a fresh {name}");
    let proxy = start()?;
    let pid = proxy.pid();
    // One login first: both proxies open a server connection for the first
    // client of a pool (to learn its parameters); that is not per-client
    // cost.
    let warm = idle::login(&proxy.endpoint)?;
    std::thread::sleep(Duration::from_millis(500));
    let rss_before = sys::rss(pid).context("reading RSS")?;
    let ticks0 = sys::cpu_ticks(pid).unwrap_or(0);
    let (conns, took) = idle::open_many(&proxy.endpoint, n, 4)?;
    std::thread::sleep(Duration::from_secs(1));
    let rss_open = sys::rss(pid).context("reading RSS")?;
    let ticks1 = sys::cpu_ticks(pid).unwrap_or(0);
    let hwm = sys::peak_rss(pid);
    // Still alive and answering with all of them open?
    let alive_after = idle::login(&proxy.endpoint).is_ok();
    drop(conns);
    drop(warm);
    std::thread::sleep(Duration::from_secs(2));
    let rss_closed = sys::rss(pid);
    // A second cycle on the same process: RSS should come back to about
    // the first cycle's level if closed clients' memory is reused.
    let (conns, _) = idle::open_many(&proxy.endpoint, n, 4)?;
    std::thread::sleep(Duration::from_secs(1));
    let rss_reopen = sys::rss(pid);
    drop(conns);
    let login_cpu_us =
        sys::ticks_to_duration(ticks1.saturating_sub(ticks0)).as_secs_f64() * 1e6 / n.max(1) as f64;
    let r = IdleResult {
        target: name.to_owned(),
        clients: n,
        rss_before_bytes: rss_before,
        rss_open_bytes: rss_open,
        rss_after_close_bytes: rss_closed,
        rss_second_open_bytes: rss_reopen,
        peak_rss_bytes: hwm,
        bytes_per_client: (rss_open as f64 - rss_before as f64) / n.max(1) as f64,
        open_seconds: took.as_secs_f64(),
        login_cpu_us_per_client: login_cpu_us,
        new_login_ok_with_all_open: alive_after,
    };
    eprintln!(
        "  {name}: {:.0} B/client (RSS {:.1} -> {:.1} MiB, {:.1} MiB after close, {:.1} MiB with a second {n} open), {:.1}s to open, {:.0} us CPU/login",
        r.bytes_per_client,
        mib(rss_before),
        mib(rss_open),
        rss_closed.map(mib).unwrap_or(f64::NAN),
        rss_reopen.map(mib).unwrap_or(f64::NAN),
        r.open_seconds,
        r.login_cpu_us_per_client
    );
    drop(proxy);
    Ok(r)
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// WARN/ERROR/FATAL/panic lines of a log (first 20 distinct).
fn warnings(path: &Path) -> Vec<String> {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let mut v: Vec<String> = Vec::new();
    for l in text.lines() {
        let u = l.to_ascii_uppercase();
        if (u.contains("WARN") || u.contains("ERROR") || u.contains("FATAL") || u.contains("PANIC"))
            && !v.iter().any(|x| x == l)
        {
            v.push(l.to_owned());
            if v.len() >= 20 {
                break;
            }
        }
    }
    v
}

/// Parses `postgres://user[:password]@host[:port]/db`.
fn parse_pg_url(url: &str) -> Result<Endpoint> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .context("--pg must start with postgres:// or postgresql://")?;
    let rest = rest.split('?').next().unwrap_or(rest);
    let (auth, hostpart) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    let (hostport, db) = hostpart.split_once('/').unwrap_or((hostpart, "postgres"));
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().context("bad port in --pg")?),
        None => (hostport, 5432),
    };
    let (user, password) = match auth {
        Some(a) => match a.split_once(':') {
            Some((u, p)) => (decode(u), Some(decode(p))),
            None => (decode(a), None),
        },
        None => ("postgres".to_owned(), None),
    };
    Ok(Endpoint {
        host: if host.is_empty() {
            "127.0.0.1".into()
        } else {
            host.to_owned()
        },
        port,
        user,
        password,
        db: if db.is_empty() {
            "postgres".into()
        } else {
            decode(db)
        },
    })
}

/// Percent-decoding for URL parts.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use scenario::Kind;

    #[test]
    fn pg_urls() {
        let e = parse_pg_url("postgres://bob:p%40ss@10.0.0.1:6000/app").unwrap();
        assert_eq!(
            (
                e.user.as_str(),
                e.password.as_deref(),
                e.host.as_str(),
                e.port,
                e.db.as_str()
            ),
            ("bob", Some("p@ss"), "10.0.0.1", 6000, "app")
        );
        let e = parse_pg_url("postgresql://127.0.0.1").unwrap();
        assert_eq!(
            (e.user.as_str(), e.port, e.db.as_str()),
            ("postgres", 5432, "postgres")
        );
    }

    #[test]
    fn kinds_cover_the_matrix() {
        let all = scenario::all();
        assert_eq!(all.iter().filter(|s| s.kind == Kind::Select).count(), 12);
        assert!(all.iter().all(|s| s.threads <= s.clients));
    }
}
