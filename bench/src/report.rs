//! Aggregation and output: the header, the table, the targets section and
//! the JSON with every raw number.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde::Serialize;

use crate::pgbench::Outcome;
use crate::scenario::{Kind, Scenario, Target};
use crate::{Settings, sys, targets};

/// One pgbench run against one target.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// Scenario key.
    pub scenario: String,
    /// Target.
    pub target: Target,
    /// Round (1-based).
    pub round: u32,
    /// Start time (Unix seconds).
    pub started_unix_s: f64,
    /// The pgbench command.
    pub command: String,
    /// What pgbench reported.
    pub outcome: Outcome,
    /// Proxy CPU (user + system) during the run, seconds.
    pub proxy_cpu_s: Option<f64>,
    /// Of which user mode, seconds.
    pub proxy_user_s: Option<f64>,
    /// Of which kernel mode, seconds.
    pub proxy_sys_s: Option<f64>,
    /// Proxy CPU per processed transaction, microseconds.
    pub proxy_cpu_us_per_tx: Option<f64>,
    /// Proxy peak RSS during the run, bytes.
    pub proxy_peak_rss_bytes: Option<u64>,
    /// How the peak was measured.
    pub peak_rss_method: Option<&'static str>,
    /// Whole-machine busy % during the run.
    pub machine_busy_pct: f64,
    /// Whole-machine busy % in the pause before the run (nothing of ours
    /// running: other users of the machine).
    pub background_busy_pct: Option<f64>,
}

impl RunRecord {
    /// Proxy user and kernel CPU per transaction, microseconds.
    pub fn user_sys_us_per_tx(&self) -> Option<(f64, f64)> {
        let tx = self.outcome.transactions as f64;
        match (self.proxy_user_s, self.proxy_sys_s) {
            (Some(u), Some(k)) if tx > 0.0 => Some((u * 1e6 / tx, k * 1e6 / tx)),
            _ => None,
        }
    }

    /// One line for the progress log.
    pub fn progress_line(&self) -> String {
        let o = &self.outcome;
        let mut s = format!(
            "{:>8.0} tps  mean {:>7} ms  p99 {:>7} ms",
            o.tps,
            fmt_opt(o.mean_ms, 3),
            fmt_opt(o.p99_ms, 3)
        );
        if let Some(c) = self.proxy_cpu_us_per_tx {
            let _ = write!(s, "  cpu {c:>6.1} us/tx");
            if let Some((u, k)) = self.user_sys_us_per_tx() {
                let _ = write!(s, " (usr {u:.1} sys {k:.1})");
            }
        }
        let _ = write!(
            s,
            "  busy {:>3.0}% (bg {:>3.0}%)",
            self.machine_busy_pct,
            self.background_busy_pct.unwrap_or(f64::NAN)
        );
        if !o.ok || o.failed > 0 {
            let _ = write!(
                s,
                "  FAILED (exit {}, {} failed): {}",
                o.exit_code,
                o.failed,
                o.errors.first().map(String::as_str).unwrap_or("")
            );
        }
        s
    }
}

/// The idle-client measurement for one proxy.
#[derive(Debug, Clone, Serialize)]
pub struct IdleResult {
    /// Proxy name.
    pub target: String,
    /// Connections opened.
    pub clients: usize,
    /// RSS after one warm-up login, before the idle clients.
    pub rss_before_bytes: u64,
    /// RSS with all idle clients logged in (1 s after the last).
    pub rss_open_bytes: u64,
    /// RSS 2 s after closing them.
    pub rss_after_close_bytes: Option<u64>,
    /// RSS with a second batch of as many clients open (same process).
    pub rss_second_open_bytes: Option<u64>,
    /// VmHWM at the end.
    pub peak_rss_bytes: Option<u64>,
    /// (open − before) / clients.
    pub bytes_per_client: f64,
    /// Time to open and log in all of them.
    pub open_seconds: f64,
    /// Proxy CPU per login, microseconds.
    pub login_cpu_us_per_client: f64,
    /// A further login succeeded with all of them open.
    pub new_login_ok_with_all_open: bool,
}

/// Machine, versions and settings.
#[derive(Debug, Clone, Serialize)]
pub struct Header {
    /// UTC date and time.
    pub date: String,
    /// The command line.
    pub command: String,
    /// CPUs.
    pub cpus: usize,
    /// CPU model.
    pub cpu_model: String,
    /// RAM, GiB.
    pub mem_gib: f64,
    /// Kernel release.
    pub kernel: String,
    /// Load average at start.
    pub loadavg_at_start: String,
    /// `git rev-parse --short HEAD` (+ `-dirty`).
    pub sqlmux_commit: String,
    /// `sqlmux --version`.
    pub sqlmux_version: String,
    /// Binary path.
    pub sqlmux_binary: String,
    /// PostgreSQL server version.
    pub postgres: String,
    /// `pgbouncer --version` (first line).
    pub pgbouncer: Option<String>,
    /// `pgbench --version`.
    pub pgbench: String,
    /// pgbench scale.
    pub scale: u32,
    /// Settings.
    pub settings: Settings,
    /// Things to know when reading the numbers.
    pub notes: Vec<String>,
}

impl Header {
    /// Gathers the header facts.
    pub fn collect(
        sqlmux_bin: &Path,
        pgbouncer: Option<&Path>,
        pg_version: &str,
        scale: u32,
        settings: &Settings,
        notes: Vec<String>,
    ) -> Header {
        let root = targets::workspace_root();
        let git = |args: &[&str]| {
            Command::new("git")
                .arg("-C")
                .arg(&root)
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        };
        let mut commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
        if let Some(changed) = git(&["status", "--porcelain", "--untracked-files=no"])
            && !changed.is_empty()
        {
            let _ = write!(
                commit,
                "-dirty ({} tracked files changed)",
                changed.lines().count()
            );
        }
        let date = Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M:%S UTC"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let argv: Vec<String> = std::env::args().skip(1).collect();
        Header {
            date,
            command: format!("cargo run --release -p sqlmux-bench -- {}", argv.join(" ")),
            cpus: sys::cpus(),
            cpu_model: sys::cpu_model(),
            mem_gib: sys::mem_total() as f64 / (1u64 << 30) as f64,
            kernel: sys::kernel(),
            loadavg_at_start: sys::loadavg(),
            sqlmux_commit: commit,
            sqlmux_version: targets::sqlmux_version(sqlmux_bin),
            sqlmux_binary: sqlmux_bin.display().to_string(),
            postgres: pg_version.to_owned(),
            pgbouncer: pgbouncer.map(|b| targets::tool_version(b, &["--version"])),
            pgbench: targets::tool_version(&sqlmux_tests::pg_tool("pgbench"), &["--version"]),
            scale,
            settings: settings.clone(),
            notes,
        }
    }

    /// The header as text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "sqlmux-bench compare — {}", self.date);
        let _ = writeln!(s, "command:   {}", self.command);
        let _ = writeln!(
            s,
            "machine:   {} CPUs ({}), {:.0} GiB RAM, Linux {}, load average at start {}",
            self.cpus, self.cpu_model, self.mem_gib, self.kernel, self.loadavg_at_start
        );
        let _ = writeln!(
            s,
            "sqlmux:    commit {} ({}, {})",
            self.sqlmux_commit, self.sqlmux_version, self.sqlmux_binary
        );
        let _ = writeln!(s, "postgres:  {} ; {}", self.postgres, self.pgbench);
        let _ = writeln!(
            s,
            "pgbouncer: {}",
            self.pgbouncer.as_deref().unwrap_or("not available")
        );
        let st = &self.settings;
        let _ = writeln!(
            s,
            "settings:  {} round(s) x {} s per run, interleaved (direct, sqlmux, sqlmux with insight off, pgbouncer per scenario); pgbench scale {}; pool size {} (both proxies, transaction mode); {} idle clients",
            st.runs,
            st.duration_s,
            self.scale,
            targets::POOL_SIZE,
            st.idle_clients
        );
        for n in &self.notes {
            let _ = writeln!(s, "note:      {n}");
        }
        s
    }
}

/// Median, min and max of one measure over the rounds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    /// Median.
    pub median: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
}

impl Spread {
    fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(Spread {
            median: median_sorted(&v),
            min: v[0],
            max: v[v.len() - 1],
        })
    }
}

fn median_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    Spread::of(values).map(|s| s.median)
}

/// One (scenario, target) cell over the rounds.
#[derive(Debug, Clone, Serialize)]
pub struct Aggregate {
    /// Scenario key.
    pub scenario: String,
    /// Target.
    pub target: Target,
    /// Runs.
    pub runs: usize,
    /// True when every run exited 0 with no failed transactions.
    pub ok: bool,
    /// Runs that exited non-zero or had failed transactions.
    pub failed_runs: usize,
    /// Distinct error lines.
    pub errors: Vec<String>,
    /// tps.
    pub tps: Option<Spread>,
    /// Mean latency, ms.
    pub mean_ms: Option<Spread>,
    /// p99 latency, ms.
    pub p99_ms: Option<Spread>,
    /// Proxy CPU µs per transaction.
    pub cpu_us_per_tx: Option<Spread>,
    /// Of which user mode (median µs/tx).
    pub user_us_per_tx: Option<f64>,
    /// Of which kernel mode (median µs/tx).
    pub sys_us_per_tx: Option<f64>,
    /// Highest proxy peak RSS over the runs, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Failed transactions over all runs.
    pub failed_transactions: u64,
    /// Machine busy % (median).
    pub busy_pct: Option<f64>,
    /// Background busy % before the runs (median).
    pub background_busy_pct: Option<f64>,
    /// sqlmux tps / direct tps (medians), on sqlmux rows.
    pub tps_vs_direct: Option<f64>,
    /// sqlmux tps / PgBouncer tps (medians), on sqlmux rows.
    pub tps_vs_pgbouncer: Option<f64>,
    /// sqlmux CPU/tx / PgBouncer CPU/tx (medians), on sqlmux rows.
    pub cpu_vs_pgbouncer: Option<f64>,
    /// sqlmux user CPU/tx / PgBouncer user CPU/tx (medians), on sqlmux rows.
    pub user_vs_pgbouncer: Option<f64>,
    /// CPU/tx of sqlmux with insight off in the same rounds (median), on
    /// sqlmux rows.
    pub cpu_insight_off_us_per_tx: Option<f64>,
    /// CPU/tx insight on / off, paired per round, on sqlmux rows.
    pub insight_cpu_ratio: Option<Spread>,
}

/// Added latency at one client: sqlmux minus direct, paired by round.
#[derive(Debug, Clone, Serialize)]
pub struct AddedLatency {
    /// Per round: (mean µs, p99 µs) differences.
    pub per_round_us: Vec<(f64, f64)>,
    /// Median of the per-round mean differences, µs.
    pub mean_us: f64,
    /// Median of the per-round p99 differences, µs.
    pub p99_us: f64,
    /// The same for PgBouncer minus direct, for scale.
    pub pgbouncer_mean_us: Option<f64>,
    /// PgBouncer p99 minus direct p99, µs.
    pub pgbouncer_p99_us: Option<f64>,
}

/// Insight on vs off: sqlmux with insight on and off run in the same round
/// of every scenario that has both; each (scenario, round) gives one pair.
#[derive(Debug, Clone, Serialize)]
pub struct InsightResult {
    /// Pairs.
    pub pairs: usize,
    /// tps(on) / tps(off) over the pairs.
    pub tps_ratio: Spread,
    /// CPU/tx(on) / CPU/tx(off) over the pairs.
    pub cpu_ratio: Option<Spread>,
    /// Per scenario: the median CPU ratio of its rounds.
    pub cpu_ratio_per_scenario: Vec<(String, f64)>,
}

/// One line of the targets section.
#[derive(Debug, Clone, Serialize)]
pub struct TargetCheck {
    /// What is measured.
    pub measure: String,
    /// The target.
    pub target: String,
    /// What was measured (short).
    pub actual: String,
    /// Met, not met, or not measurable (None).
    pub met: Option<bool>,
    /// Per-cell values.
    pub details: Vec<String>,
}

/// Everything the run produced.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Machine, versions, settings.
    pub header: Header,
    /// The scenarios that ran.
    pub scenarios: Vec<Scenario>,
    /// Every run.
    pub runs: Vec<RunRecord>,
    /// Per (scenario, target).
    pub aggregates: Vec<Aggregate>,
    /// Idle clients.
    pub idle: Vec<IdleResult>,
    /// Added latency at c=1.
    pub added_latency: Option<AddedLatency>,
    /// Insight on vs off.
    pub insight: Option<InsightResult>,
    /// The targets.
    pub targets: Vec<TargetCheck>,
    /// WARN/ERROR lines from the proxies' logs.
    pub proxy_log_warnings: BTreeMap<String, Vec<String>>,
    /// Wall time of the rounds and idle tests, seconds.
    pub elapsed_s: f64,
}

impl Report {
    /// Aggregates the runs and evaluates the targets.
    pub fn new(
        header: Header,
        scenarios: Vec<Scenario>,
        runs: Vec<RunRecord>,
        idle: Vec<IdleResult>,
        proxy_log_warnings: BTreeMap<String, Vec<String>>,
        elapsed: Duration,
    ) -> Report {
        let mut aggregates = Vec::new();
        for sc in &scenarios {
            for &t in &sc.targets {
                let rs: Vec<&RunRecord> = runs
                    .iter()
                    .filter(|r| r.scenario == sc.key && r.target == t)
                    .collect();
                if !rs.is_empty() {
                    aggregates.push(aggregate(&sc.key, t, &rs));
                }
            }
        }
        // Ratios on the sqlmux rows.
        let find = |aggs: &[Aggregate], key: &str, t: Target| -> Option<Aggregate> {
            aggs.iter()
                .find(|a| a.scenario == key && a.target == t)
                .cloned()
        };
        let snapshot = aggregates.clone();
        for a in aggregates.iter_mut().filter(|a| a.target == Target::Sqlmux) {
            let direct = find(&snapshot, &a.scenario, Target::Direct);
            let pgb = find(&snapshot, &a.scenario, Target::PgBouncer);
            let med = |s: &Option<Spread>| s.map(|s| s.median);
            let ratio = |x: Option<f64>, y: Option<f64>| match (x, y) {
                (Some(x), Some(y)) if y > 0.0 => Some(x / y),
                _ => None,
            };
            if let Some(d) = direct.filter(|d| d.ok) {
                a.tps_vs_direct = ratio(med(&a.tps), med(&d.tps));
            }
            if let Some(p) = pgb.filter(|p| p.ok) {
                a.tps_vs_pgbouncer = ratio(med(&a.tps), med(&p.tps));
                a.cpu_vs_pgbouncer = ratio(med(&a.cpu_us_per_tx), med(&p.cpu_us_per_tx));
                a.user_vs_pgbouncer = ratio(a.user_us_per_tx, p.user_us_per_tx);
            }
            if let Some(off) = find(&snapshot, &a.scenario, Target::SqlmuxNoInsight) {
                a.cpu_insight_off_us_per_tx = med(&off.cpu_us_per_tx);
            }
            a.insight_cpu_ratio = Spread::of(insight_cpu_ratios(&runs, &a.scenario));
            if !a.ok {
                a.tps_vs_direct = None;
                a.tps_vs_pgbouncer = None;
                a.cpu_vs_pgbouncer = None;
                a.user_vs_pgbouncer = None;
            }
        }
        let added_latency = added_latency(&runs);
        let insight = insight_result(&runs, &scenarios);
        let mut report = Report {
            header,
            scenarios,
            runs,
            aggregates,
            idle,
            added_latency,
            insight,
            targets: Vec::new(),
            proxy_log_warnings,
            elapsed_s: elapsed.as_secs_f64(),
        };
        report.targets = report.check_targets();
        report
    }

    fn agg(&self, key: &str, t: Target) -> Option<&Aggregate> {
        self.aggregates
            .iter()
            .find(|a| a.scenario == key && a.target == t)
    }

    fn check_targets(&self) -> Vec<TargetCheck> {
        let mut out = Vec::new();
        let selects: Vec<&Scenario> = self
            .scenarios
            .iter()
            .filter(|s| s.kind == Kind::Select && s.clients >= 16)
            .collect();

        // Ratio targets over the -S 16..256 cells.
        let ratio_check = |measure: &str,
                           target: &str,
                           cells: &[&Scenario],
                           get: &dyn Fn(&Aggregate) -> Option<f64>,
                           ok: &dyn Fn(f64) -> bool,
                           worst_is_max: bool| {
            let mut details = Vec::new();
            let mut values = Vec::new();
            for sc in cells {
                let Some(a) = self.agg(&sc.key, Target::Sqlmux) else {
                    continue;
                };
                match get(a) {
                    Some(v) => {
                        details.push(format!("{} {:.2}x", sc.label, v));
                        values.push((v, sc.label.clone()));
                    }
                    None => {
                        details.push(format!("{} n/a ({})", sc.label, why_missing(self, &sc.key)))
                    }
                }
            }
            let worst = if worst_is_max {
                values.iter().max_by(|a, b| a.0.total_cmp(&b.0))
            } else {
                values.iter().min_by(|a, b| a.0.total_cmp(&b.0))
            };
            let (actual, met) = match worst {
                Some((v, label)) => (
                    format!(
                        "worst {v:.2}x ({label}); {} of {} cells meet it",
                        values.iter().filter(|(x, _)| ok(*x)).count(),
                        values.len()
                    ),
                    Some(values.iter().all(|(x, _)| ok(*x))),
                ),
                None => ("not measured".into(), None),
            };
            TargetCheck {
                measure: measure.into(),
                target: target.into(),
                actual,
                met,
                details,
            }
        };

        out.push(self.insight_check());
        out.push(ratio_check(
            "proxy user CPU/tx, -S, 16-256 clients",
            "<= 1.0 x PgBouncer",
            &selects,
            &|a| a.user_vs_pgbouncer,
            &|v| v <= 1.0,
            true,
        ));
        out.push(ratio_check(
            "proxy CPU/tx (usr+sys), -S, 16-256 clients",
            "<= 1.0 x PgBouncer",
            &selects,
            &|a| a.cpu_vs_pgbouncer,
            &|v| v <= 1.0,
            true,
        ));
        let connect: Vec<&Scenario> = self
            .scenarios
            .iter()
            .filter(|s| s.kind == Kind::Connect)
            .collect();
        out.push(ratio_check(
            "-C (connect per transaction), 16 clients, tps",
            ">= 1.0 x PgBouncer",
            &connect,
            &|a| a.tps_vs_pgbouncer,
            &|v| v >= 1.0,
            false,
        ));
        out.extend(self.idle_checks());
        out
    }

    /// Insight on vs off, CPU per transaction over every paired run.
    fn insight_check(&self) -> TargetCheck {
        let cpu = self.insight.as_ref().and_then(|r| r.cpu_ratio);
        TargetCheck {
            measure: "insight on / off, CPU/tx (paired runs)".into(),
            target: "<= 1.05".into(),
            actual: match (&self.insight, cpu) {
                (Some(r), Some(c)) => format!(
                    "median {:.3} (min {:.3}, max {:.3}; {} pairs; tps on/off {:.3})",
                    c.median, c.min, c.max, r.pairs, r.tps_ratio.median
                ),
                _ => "not measured".into(),
            },
            met: cpu.map(|c| c.median <= 1.05),
            details: self
                .insight
                .as_ref()
                .map(|r| {
                    r.cpu_ratio_per_scenario
                        .iter()
                        .map(|(label, v)| format!("{label} {v:.3}"))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Memory per idle client and CPU per login, from the idle test.
    fn idle_checks(&self) -> Vec<TargetCheck> {
        let idle = self.idle.iter().find(|i| i.target == "sqlmux");
        let pgb = self.idle.iter().find(|i| i.target == "pgbouncer");
        let pgb_text =
            |f: &dyn Fn(&IdleResult) -> String| pgb.map(f).unwrap_or_else(|| "n/a".into());
        vec![
            TargetCheck {
                measure: "idle client connection, RSS".into(),
                target: "<= 1 KiB each".into(),
                actual: match idle {
                    Some(i) => format!(
                        "{:.2} KiB ({} clients; PgBouncer {})",
                        i.bytes_per_client / 1024.0,
                        i.clients,
                        pgb_text(&|p| format!("{:.2} KiB", p.bytes_per_client / 1024.0))
                    ),
                    None => "not measured".into(),
                },
                met: idle.map(|i| i.bytes_per_client <= 1024.0),
                details: vec![],
            },
            TargetCheck {
                measure: "CPU per login (idle test)".into(),
                target: "<= PgBouncer's".into(),
                actual: match idle {
                    Some(i) => format!(
                        "{:.0} us (PgBouncer {})",
                        i.login_cpu_us_per_client,
                        pgb_text(&|p| format!("{:.0} us", p.login_cpu_us_per_client))
                    ),
                    None => "not measured".into(),
                },
                met: idle
                    .zip(pgb)
                    .map(|(i, p)| i.login_cpu_us_per_client <= p.login_cpu_us_per_client),
                details: vec![],
            },
        ]
    }

    /// The whole report as text.
    pub fn render(&self) -> String {
        let mut s = self.header.render();
        let _ = writeln!(s, "elapsed:   {:.1} min\n", self.elapsed_s / 60.0);

        let cols = [
            "scenario",
            "target",
            "tps median (min-max)",
            "mean ms",
            "p99 ms",
            "CPU us/tx (min-max)",
            "usr+sys",
            "CPU insight off",
            "insight on/off (min-max)",
            "peak RSS",
            "failed",
            "busy% (bg)",
            "tps/direct",
            "tps/pgb",
            "cpu/pgb",
        ];
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut footnotes: Vec<String> = Vec::new();
        for sc in &self.scenarios {
            let mut first = true;
            for &t in &sc.targets {
                // Insight-off runs show in the sqlmux row's columns.
                let Some(a) = self
                    .agg(&sc.key, t)
                    .filter(|_| t != Target::SqlmuxNoInsight)
                else {
                    continue;
                };
                let tps = if a.ok {
                    fmt_spread(a.tps, 0)
                } else {
                    footnotes.push(format!(
                        "[{}] {} / {}: {} of {} runs failed (partial tps {}): {}",
                        footnotes.len() + 1,
                        sc.label,
                        t.name(),
                        a.failed_runs,
                        a.runs,
                        fmt_spread(a.tps, 0),
                        if a.errors.is_empty() {
                            "pgbench failed without an error line".to_string()
                        } else {
                            a.errors.join(" | ")
                        }
                    ));
                    format!("FAILED[{}]", footnotes.len())
                };
                rows.push(vec![
                    if first {
                        sc.label.clone()
                    } else {
                        String::new()
                    },
                    t.name().to_string(),
                    tps,
                    fmt_opt(a.mean_ms.map(|s| s.median), 3),
                    fmt_opt(a.p99_ms.map(|s| s.median), 3),
                    if t == Target::Direct {
                        "-".into()
                    } else {
                        fmt_spread(a.cpu_us_per_tx, 1)
                    },
                    match (a.user_us_per_tx, a.sys_us_per_tx) {
                        (Some(u), Some(k)) => format!("{u:.1}+{k:.1}"),
                        _ => "-".into(),
                    },
                    fmt_opt(a.cpu_insight_off_us_per_tx, 1),
                    fmt_spread(a.insight_cpu_ratio, 3),
                    a.peak_rss_bytes
                        .map(|b| format!("{:.1} MiB", b as f64 / 1048576.0))
                        .unwrap_or_else(|| "-".into()),
                    a.failed_transactions.to_string(),
                    format!(
                        "{} ({})",
                        fmt_opt(a.busy_pct, 0),
                        fmt_opt(a.background_busy_pct, 0)
                    ),
                    fmt_ratio(a.tps_vs_direct),
                    fmt_ratio(a.tps_vs_pgbouncer),
                    fmt_ratio(a.cpu_vs_pgbouncer),
                ]);
                first = false;
            }
        }
        if !rows.is_empty() {
            s += &table(&cols, &rows);
        }
        for f in &footnotes {
            let _ = writeln!(s, "{f}");
        }

        if !self.idle.is_empty() {
            let _ = writeln!(
                s,
                "\nidle clients (fresh proxy process, full login, then silent):"
            );
            let cols = [
                "target",
                "clients",
                "RSS before",
                "RSS open",
                "per client",
                "RSS after close",
                "2nd batch open",
                "open time",
                "CPU/login",
                "login with all open",
            ];
            let rows: Vec<Vec<String>> = self
                .idle
                .iter()
                .map(|i| {
                    vec![
                        i.target.clone(),
                        i.clients.to_string(),
                        format!("{:.1} MiB", i.rss_before_bytes as f64 / 1048576.0),
                        format!("{:.1} MiB", i.rss_open_bytes as f64 / 1048576.0),
                        format!("{:.2} KiB", i.bytes_per_client / 1024.0),
                        i.rss_after_close_bytes
                            .map(|b| format!("{:.1} MiB", b as f64 / 1048576.0))
                            .unwrap_or_else(|| "-".into()),
                        i.rss_second_open_bytes
                            .map(|b| format!("{:.1} MiB", b as f64 / 1048576.0))
                            .unwrap_or_else(|| "-".into()),
                        format!("{:.1} s", i.open_seconds),
                        format!("{:.0} us", i.login_cpu_us_per_client),
                        if i.new_login_ok_with_all_open {
                            "ok"
                        } else {
                            "FAILED"
                        }
                        .into(),
                    ]
                })
                .collect();
            s += &table(&cols, &rows);
        }

        if let Some(l) = &self.added_latency {
            let _ = writeln!(
                s,
                "\nadded latency at 1 client (-S simple c=1, sqlmux minus direct, paired per round, median): mean {:.0} us, p99 {:.0} us{}",
                l.mean_us,
                l.p99_us,
                match (l.pgbouncer_mean_us, l.pgbouncer_p99_us) {
                    (Some(m), Some(p)) => format!("; PgBouncer: mean {m:.0} us, p99 {p:.0} us"),
                    _ => String::new(),
                }
            );
        }
        if let Some(r) = &self.insight {
            let _ = writeln!(
                s,
                "insight on vs off (sqlmux with insight off in the same rounds, {} paired runs): CPU/tx on/off median {} (min-max {}), tps on/off median {:.3}",
                r.pairs,
                r.cpu_ratio
                    .map_or("n/a".into(), |c| format!("{:.3}", c.median)),
                r.cpu_ratio
                    .map_or("n/a".into(), |c| format!("{:.3}-{:.3}", c.min, c.max)),
                r.tps_ratio.median
            );
        }

        let _ = writeln!(s, "\ntargets (reported, never asserted):");
        for t in &self.targets {
            let verdict = match t.met {
                Some(true) => "met",
                Some(false) => "NOT MET",
                None => "n/a",
            };
            let _ = writeln!(
                s,
                "  {:<8} {:<50} target {:<22} measured {}",
                verdict, t.measure, t.target, t.actual
            );
            if !t.details.is_empty() && t.details.len() > 1 {
                let _ = writeln!(s, "           {}", t.details.join("; "));
            }
        }

        let busy: Vec<f64> = self
            .runs
            .iter()
            .filter_map(|r| r.background_busy_pct)
            .collect();
        if let Some(b) = Spread::of(busy.iter().copied()) {
            let noisy = busy.iter().filter(|&&x| x > 20.0).count();
            let _ = writeln!(
                s,
                "\nbackground load (machine busy % in the pause before each run, nothing of ours running): median {:.0}%, max {:.0}%; {} of {} runs started with > 20% background load{}",
                b.median,
                b.max,
                noisy,
                busy.len(),
                if noisy > 0 {
                    " (other users of the machine: treat those rows with care)"
                } else {
                    ""
                }
            );
        }
        let any_warn = self.proxy_log_warnings.values().any(|v| !v.is_empty());
        if any_warn {
            let _ = writeln!(s, "\nproxy log lines at WARN or above:");
            for (name, lines) in &self.proxy_log_warnings {
                for l in lines {
                    let _ = writeln!(s, "  {name}: {l}");
                }
            }
        }
        let _ = writeln!(
            s,
            "\nnoise: on a shared 2-core VM, tps differences below ~15% are not meaningful; CPU us/tx is steadier (~10-20%)."
        );
        s
    }
}

fn why_missing(r: &Report, key: &str) -> String {
    match (r.agg(key, Target::Sqlmux), r.agg(key, Target::PgBouncer)) {
        (Some(a), _) if !a.ok => "sqlmux failed".into(),
        (_, Some(p)) if !p.ok => "PgBouncer failed".into(),
        (_, None) => "no PgBouncer".into(),
        _ => "missing".into(),
    }
}

fn aggregate(key: &str, t: Target, rs: &[&RunRecord]) -> Aggregate {
    let ok = rs.iter().all(|r| r.outcome.ok && r.outcome.failed == 0);
    let mut errors: Vec<String> = Vec::new();
    for r in rs {
        for e in &r.outcome.errors {
            if !errors.contains(e) && errors.len() < 3 {
                errors.push(e.clone());
            }
        }
    }
    Aggregate {
        scenario: key.to_owned(),
        target: t,
        runs: rs.len(),
        ok,
        failed_runs: rs
            .iter()
            .filter(|r| !(r.outcome.ok && r.outcome.failed == 0))
            .count(),
        errors,
        tps: Spread::of(rs.iter().map(|r| r.outcome.tps)),
        mean_ms: Spread::of(rs.iter().filter_map(|r| r.outcome.mean_ms)),
        p99_ms: Spread::of(rs.iter().filter_map(|r| r.outcome.p99_ms)),
        cpu_us_per_tx: Spread::of(rs.iter().filter_map(|r| r.proxy_cpu_us_per_tx)),
        user_us_per_tx: median(
            rs.iter()
                .filter_map(|r| r.user_sys_us_per_tx().map(|x| x.0)),
        ),
        sys_us_per_tx: median(
            rs.iter()
                .filter_map(|r| r.user_sys_us_per_tx().map(|x| x.1)),
        ),
        peak_rss_bytes: rs.iter().filter_map(|r| r.proxy_peak_rss_bytes).max(),
        failed_transactions: rs.iter().map(|r| r.outcome.failed).sum(),
        busy_pct: median(rs.iter().map(|r| r.machine_busy_pct)),
        background_busy_pct: median(rs.iter().filter_map(|r| r.background_busy_pct)),
        tps_vs_direct: None,
        tps_vs_pgbouncer: None,
        cpu_vs_pgbouncer: None,
        user_vs_pgbouncer: None,
        cpu_insight_off_us_per_tx: None,
        insight_cpu_ratio: None,
    }
}

fn run_of<'a>(runs: &'a [RunRecord], key: &str, t: Target, round: u32) -> Option<&'a RunRecord> {
    runs.iter()
        .find(|r| r.scenario == key && r.target == t && r.round == round && r.outcome.ok)
}

fn added_latency(runs: &[RunRecord]) -> Option<AddedLatency> {
    let key = "select-simple-c1";
    let rounds: Vec<u32> = {
        let mut v: Vec<u32> = runs
            .iter()
            .filter(|r| r.scenario == key)
            .map(|r| r.round)
            .collect();
        v.dedup();
        v
    };
    let diff = |t: Target| -> Vec<(f64, f64)> {
        rounds
            .iter()
            .filter_map(|&round| {
                let d = run_of(runs, key, Target::Direct, round)?;
                let p = run_of(runs, key, t, round)?;
                Some((
                    (p.outcome.mean_ms? - d.outcome.mean_ms?) * 1000.0,
                    (p.outcome.p99_ms? - d.outcome.p99_ms?) * 1000.0,
                ))
            })
            .collect()
    };
    let per_round = diff(Target::Sqlmux);
    if per_round.is_empty() {
        return None;
    }
    let pgb = diff(Target::PgBouncer);
    Some(AddedLatency {
        mean_us: median(per_round.iter().map(|x| x.0))?,
        p99_us: median(per_round.iter().map(|x| x.1))?,
        per_round_us: per_round,
        pgbouncer_mean_us: median(pgb.iter().map(|x| x.0)),
        pgbouncer_p99_us: median(pgb.iter().map(|x| x.1)),
    })
}

/// (on, off) run pairs of one scenario, one per round that has both.
fn insight_pairs<'a>(runs: &'a [RunRecord], key: &str) -> Vec<(&'a RunRecord, &'a RunRecord)> {
    let max_round = runs.iter().map(|r| r.round).max().unwrap_or(0);
    (1..=max_round)
        .filter_map(|round| {
            Some((
                run_of(runs, key, Target::Sqlmux, round)?,
                run_of(runs, key, Target::SqlmuxNoInsight, round)?,
            ))
        })
        .collect()
}

/// CPU/tx insight on / off of one scenario, one value per round.
fn insight_cpu_ratios(runs: &[RunRecord], key: &str) -> Vec<f64> {
    insight_pairs(runs, key)
        .into_iter()
        .filter_map(
            |(on, off)| match (on.proxy_cpu_us_per_tx, off.proxy_cpu_us_per_tx) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            },
        )
        .collect()
}

fn insight_result(runs: &[RunRecord], scenarios: &[Scenario]) -> Option<InsightResult> {
    let mut tps = Vec::new();
    let mut cpu = Vec::new();
    let mut per_scenario = Vec::new();
    for sc in scenarios {
        for (on, off) in insight_pairs(runs, &sc.key) {
            if off.outcome.tps > 0.0 {
                tps.push(on.outcome.tps / off.outcome.tps);
            }
        }
        let c = insight_cpu_ratios(runs, &sc.key);
        if let Some(m) = median(c.iter().copied()) {
            per_scenario.push((sc.label.clone(), m));
        }
        cpu.extend(c);
    }
    Some(InsightResult {
        pairs: tps.len(),
        tps_ratio: Spread::of(tps)?,
        cpu_ratio: Spread::of(cpu),
        cpu_ratio_per_scenario: per_scenario,
    })
}

fn fmt_opt(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.decimals$}"),
        _ => "-".into(),
    }
}

fn fmt_spread(s: Option<Spread>, decimals: usize) -> String {
    match s {
        Some(s) if s.min == s.max => format!("{:.decimals$}", s.median),
        Some(s) => format!(
            "{:.decimals$} ({:.decimals$}-{:.decimals$})",
            s.median, s.min, s.max
        ),
        None => "-".into(),
    }
}

fn fmt_ratio(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.2}x")).unwrap_or_default()
}

/// A plain-text table with aligned columns (numbers right-aligned).
fn table(cols: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = cols.iter().map(|c| c.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut s = String::new();
    let line = |cells: &[String], s: &mut String| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i < 2 {
                    format!("{c:<width$}", width = w[i])
                } else {
                    format!("{c:>width$}", width = w[i])
                }
            })
            .collect();
        let _ = writeln!(s, "{}", parts.join("  ").trim_end());
    };
    line(
        &cols.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        &mut s,
    );
    line(
        &w.iter().map(|&n| "-".repeat(n)).collect::<Vec<_>>(),
        &mut s,
    );
    for r in rows {
        line(r, &mut s);
    }
    s
}
