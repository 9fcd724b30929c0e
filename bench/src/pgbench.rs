//! pgbench runs: the command line, parsing its summary, and latency
//! percentiles from its per-transaction log.
//!
//! # Latency method
//!
//! Every run passes `-l --log-prefix=<scratch>/<run>`: pgbench then writes
//! one line per finished transaction (`client_id transaction_no time
//! script_no time_epoch time_us`, one file per pgbench thread), where
//! `time` is the transaction's elapsed time in microseconds, measured by
//! pgbench around the whole script (for `-C`, including the new
//! connection). The mean and the p99 (nearest rank) are computed from every
//! logged transaction, so they describe exactly the transactions counted in
//! tps. Lines whose time is not a number (`failed`, `skipped`) are counted
//! as failed. The log files are deleted after parsing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::procs;

/// Where a pgbench run connects.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Host (always 127.0.0.1 for what the runner starts).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// User.
    pub user: String,
    /// Password, passed in PGPASSWORD.
    pub password: Option<String>,
    /// Database.
    pub db: String,
}

impl Endpoint {
    /// The `postgres` database of a throwaway cluster on 127.0.0.1:`port`,
    /// as its superuser.
    pub fn cluster(port: u16) -> Endpoint {
        Endpoint {
            host: "127.0.0.1".into(),
            port,
            user: "postgres".into(),
            password: None,
            db: "postgres".into(),
        }
    }

    /// A proxy on 127.0.0.1:`port` in front of this server: same user and
    /// database, no password (the runner's proxies trust their clients).
    pub fn proxy_at(&self, port: u16) -> Endpoint {
        Endpoint {
            host: "127.0.0.1".into(),
            port,
            user: self.user.clone(),
            password: None,
            db: self.db.clone(),
        }
    }
}

/// `pgbench` against `ep` (password, host, port and user set); the caller
/// adds the rest and the database.
pub fn base_command(ep: &Endpoint) -> Command {
    let mut cmd = Command::new(sqlmux_tests::pg_tool("pgbench"));
    procs::clean_pg_env(&mut cmd);
    if let Some(p) = &ep.password {
        cmd.env("PGPASSWORD", p);
    }
    cmd.args(["-h", &ep.host, "-p", &ep.port.to_string(), "-U", &ep.user]);
    cmd
}

/// One pgbench invocation.
#[derive(Debug, Clone)]
pub struct Invocation<'a> {
    /// Mode and script flags (`-S -M simple`, `-C`, ...).
    pub flags: &'a [&'a str],
    /// Clients (`-c`).
    pub clients: u32,
    /// Threads (`-j`).
    pub threads: u32,
    /// Duration (`-T`).
    pub duration: Duration,
}

/// The numbers of one pgbench run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Outcome {
    /// pgbench exited 0.
    pub ok: bool,
    /// Exit code (-1 when killed).
    pub exit_code: i32,
    /// `tps = ...`.
    pub tps: f64,
    /// `number of transactions actually processed`.
    pub transactions: u64,
    /// `number of failed transactions` plus logged failures.
    pub failed: u64,
    /// `latency average` as pgbench printed it (ms).
    pub pgbench_latency_avg_ms: Option<f64>,
    /// `initial connection time` (ms).
    pub initial_connection_ms: Option<f64>,
    /// `average connection time` (ms), printed with `-C`.
    pub average_connection_ms: Option<f64>,
    /// Transactions in the per-transaction log.
    pub logged: u64,
    /// Mean latency from the log (ms).
    pub mean_ms: Option<f64>,
    /// p50 latency from the log (ms).
    pub p50_ms: Option<f64>,
    /// p99 latency from the log (ms).
    pub p99_ms: Option<f64>,
    /// Error lines pgbench wrote (first few), when any.
    pub errors: Vec<String>,
    /// CPU pgbench itself used (user + system, seconds).
    pub pgbench_cpu_s: f64,
}

/// The pgbench command for `inv` against `ep`, logging to `log_prefix`.
pub fn command(ep: &Endpoint, inv: &Invocation<'_>, log_prefix: &Path) -> Command {
    let mut cmd = base_command(ep);
    cmd.arg("-T").arg(inv.duration.as_secs().max(1).to_string());
    cmd.args(inv.flags);
    cmd.arg("-c").arg(inv.clients.to_string());
    cmd.arg("-j").arg(inv.threads.to_string());
    cmd.arg("-l")
        .arg(format!("--log-prefix={}", log_prefix.display()));
    cmd.arg(&ep.db);
    cmd
}

/// The command line as text (for the JSON and for messages).
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs pgbench and parses its summary and logs. `log_dir` must be empty
/// and is emptied again afterwards.
pub fn run(ep: &Endpoint, inv: &Invocation<'_>, log_dir: &Path) -> Result<Outcome> {
    let prefix = log_dir.join("tx");
    let cmd = command(ep, inv, &prefix);
    let what = describe(&cmd);
    let timeout = inv.duration + Duration::from_secs(300);
    let out = procs::run_tool(cmd, timeout).with_context(|| format!("running {what}"))?;
    let mut o = parse_summary(&out.stdout);
    o.ok = out.success();
    o.exit_code = out.status.and_then(|s| s.code()).unwrap_or(-1);
    o.pgbench_cpu_s = out.cpu.as_secs_f64();
    o.errors = error_lines(&out.stderr);
    if out.status.is_none() {
        let why = if procs::interrupted() {
            "pgbench stopped: interrupted".to_string()
        } else {
            format!("pgbench killed after {}s timeout", timeout.as_secs())
        };
        o.errors.insert(0, why);
    }
    if !o.ok && o.errors.is_empty() {
        o.errors.push(format!(
            "pgbench exited with {}: {}",
            o.exit_code,
            out.stderr.trim().lines().last().unwrap_or("")
        ));
    }
    let mut lat: Vec<u32> = Vec::with_capacity(o.transactions as usize + 16);
    let mut logged_failed = 0u64;
    for entry in std::fs::read_dir(log_dir)?.filter_map(|e| e.ok()) {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            match line.split_whitespace().nth(2) {
                Some(t) => match t.parse::<u64>() {
                    Ok(us) => lat.push(us.min(u32::MAX as u64) as u32),
                    Err(_) => logged_failed += 1,
                },
                None => continue,
            }
        }
        let _ = std::fs::remove_file(entry.path());
    }
    o.failed = o.failed.max(logged_failed);
    o.logged = lat.len() as u64;
    if !lat.is_empty() {
        let sum: u64 = lat.iter().map(|&x| x as u64).sum();
        o.mean_ms = Some(sum as f64 / lat.len() as f64 / 1000.0);
        o.p50_ms = Some(percentile(&mut lat, 50.0) as f64 / 1000.0);
        o.p99_ms = Some(percentile(&mut lat, 99.0) as f64 / 1000.0);
    }
    Ok(o)
}

/// Nearest-rank percentile (`p` in 0..=100) of a non-empty sample.
pub fn percentile(v: &mut [u32], p: f64) -> u32 {
    let n = v.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    let idx = rank.clamp(1, n) - 1;
    *v.select_nth_unstable(idx).1
}

/// Parses pgbench's summary (stdout).
pub fn parse_summary(stdout: &str) -> Outcome {
    let mut o = Outcome::default();
    for line in stdout.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("number of transactions actually processed:") {
            o.transactions = first_number(v).unwrap_or(0.0) as u64;
        } else if let Some(v) = line.strip_prefix("number of failed transactions:") {
            o.failed = first_number(v).unwrap_or(0.0) as u64;
        } else if let Some(v) = line.strip_prefix("latency average =") {
            o.pgbench_latency_avg_ms = first_number(v);
        } else if let Some(v) = line.strip_prefix("initial connection time =") {
            o.initial_connection_ms = first_number(v);
        } else if let Some(v) = line.strip_prefix("average connection time =") {
            o.average_connection_ms = first_number(v);
        } else if let Some(v) = line.strip_prefix("tps =") {
            o.tps = first_number(v).unwrap_or(0.0);
        }
    }
    o
}

fn first_number(s: &str) -> Option<f64> {
    let s = s.trim_start();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    s[..end].parse().ok()
}

/// The first distinct error messages of pgbench's stderr. pgbench threads
/// may interleave their lines, so a server error is cut down to its
/// `ERROR:` part, and client numbers are ignored when comparing.
fn error_lines(stderr: &str) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for line in stderr.lines() {
        let l = line.trim();
        let lower = l.to_ascii_lowercase();
        if !(lower.contains("error") || lower.contains("fatal") || lower.contains("abort")) {
            continue;
        }
        let msg = match l.rfind("ERROR:").or_else(|| l.rfind("FATAL:")) {
            Some(at) => l[at..].split_whitespace().collect::<Vec<_>>().join(" "),
            None => l.to_owned(),
        };
        let key = strip_client_number(&msg);
        if !v.iter().any(|x| strip_client_number(x) == key) {
            v.push(msg);
        }
        if v.len() >= 4 {
            break;
        }
    }
    v
}

fn strip_client_number(l: &str) -> String {
    l.split_whitespace()
        .filter(|w| !w.chars().all(|c| c.is_ascii_digit()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `pgbench -i -s <scale>` against `ep` (quietly; `-q`).
pub fn initialize(ep: &Endpoint, scale: u32) -> Result<()> {
    let mut cmd = base_command(ep);
    cmd.args(["-i", "-q", "-s", &scale.to_string()]);
    cmd.arg(&ep.db);
    let out = procs::run_tool(cmd, Duration::from_secs(1800))?;
    anyhow::ensure!(out.success(), "pgbench -i failed: {}", out.stderr.trim());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_pg15_summary() {
        let s = "transaction type: <builtin: select only>\n\
                 scaling factor: 10\n\
                 number of transactions actually processed: 245123\n\
                 number of failed transactions: 0 (0.000%)\n\
                 latency average = 0.978 ms\n\
                 initial connection time = 12.345 ms\n\
                 tps = 16301.123456 (without initial connection time)\n";
        let o = parse_summary(s);
        assert_eq!(o.transactions, 245123);
        assert_eq!(o.failed, 0);
        assert_eq!(o.pgbench_latency_avg_ms, Some(0.978));
        assert_eq!(o.initial_connection_ms, Some(12.345));
        assert!((o.tps - 16301.123456).abs() < 1e-6);
    }

    #[test]
    fn nearest_rank_percentile() {
        let mut v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&mut v, 99.0), 99);
        assert_eq!(percentile(&mut v, 50.0), 50);
        let mut one = vec![7];
        assert_eq!(percentile(&mut one, 99.0), 7);
    }

    #[test]
    fn error_lines_fold_client_numbers() {
        let e = "pgbench: error: client 3 aborted in command 1 (SQL) of script 0; ERROR:  prepared statement \"P_0\" already exists\n\
                 pgbench: error: client 4 aborted in command 1 (SQL) of script 0; ERROR:  prepared statement \"P_0\" already exists\n";
        assert_eq!(
            error_lines(e),
            vec!["ERROR: prepared statement \"P_0\" already exists".to_string()]
        );
    }
}
