//! The systems under test: the release `sqlmux` binary and PgBouncer, each a
//! separate process with a generated configuration, pointed at one
//! PostgreSQL.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::pgbench::Endpoint;
use crate::procs::{self, RunAs, Server};

/// Pool size for both proxies (the PgBouncer baseline used 20).
pub const POOL_SIZE: u32 = 20;
/// Client connection limit for both proxies (above the idle-client count).
pub const MAX_CLIENTS: u32 = 20_000;

/// A running proxy: its process and where clients connect.
#[derive(Debug)]
pub struct Proxy {
    /// The process.
    pub server: Server,
    /// Client endpoint.
    pub endpoint: Endpoint,
}

impl Proxy {
    /// Process id (for CPU and RSS).
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }
}

/// Waits until `port` accepts TCP connections while `server` stays alive.
pub fn wait_listening(server: &mut Server, port: u16, timeout: Duration) -> Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = server.try_wait() {
            bail!(
                "{} exited during start-up ({status}); log tail:\n{}",
                server.name,
                server.log_tail(20)
            );
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} did not listen on port {port} within {timeout:?}; log tail:\n{}",
                server.name,
                server.log_tail(20)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// sqlmux

/// The workspace root (this crate's parent directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf()
}

/// Builds the release binary with cargo (a no-op when it is fresh) and
/// returns its path. When the build fails but an older binary exists, that
/// one is used and the returned note says so.
pub fn build_sqlmux() -> Result<(PathBuf, Option<String>)> {
    let root = workspace_root();
    let bin = root.join("target/release/sqlmux");
    eprintln!("building sqlmux: cargo build --release -p sqlmux");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "-p", "sqlmux"])
        .current_dir(&root)
        .status()
        .context("running cargo build")?;
    if status.success() {
        return Ok((bin, None));
    }
    if bin.exists() {
        let note = format!(
            "cargo build --release -p sqlmux failed ({status}); using the existing {}",
            bin.display()
        );
        eprintln!("warning: {note}");
        return Ok((bin, Some(note)));
    }
    bail!("cargo build --release -p sqlmux failed ({status}) and no binary exists")
}

/// Settings for one generated sqlmux configuration.
#[derive(Debug, Clone)]
pub struct SqlmuxSettings {
    /// `insight.enabled`.
    pub insight: bool,
    /// `general.workers` (0 = sqlmux's default).
    pub workers: usize,
}

/// Writes the configuration, validates it with `sqlmux check`, starts
/// `sqlmux --config FILE` and waits until it listens.
pub fn start_sqlmux(
    bin: &Path,
    dir: &Path,
    name: &str,
    upstream: &Endpoint,
    settings: &SqlmuxSettings,
) -> Result<Proxy> {
    let (config, port) = write_sqlmux_config(bin, dir, name, upstream, settings)?;
    let mut cmd = Command::new(bin);
    cmd.arg("--config").arg(&config);
    spawn_sqlmux(cmd, dir, name, port, upstream, Duration::from_secs(30))
}

/// Starts `cmd` (sqlmux, or a wrapper around it) with its log in `dir` and
/// waits up to `timeout` until it listens on `port`.
pub fn spawn_sqlmux(
    cmd: Command,
    dir: &Path,
    name: &str,
    port: u16,
    upstream: &Endpoint,
    timeout: Duration,
) -> Result<Proxy> {
    let log = dir.join(format!("{name}.log"));
    let program = cmd.get_program().to_owned();
    let mut server = Server::spawn(name, cmd, None, &log)
        .with_context(|| format!("starting {}", program.to_string_lossy()))?;
    wait_listening(&mut server, port, timeout)?;
    Ok(Proxy {
        server,
        endpoint: upstream.proxy_at(port),
    })
}

/// Writes `dir/name.toml` for `settings`, checks it with `sqlmux check`
/// and returns its path and the PostgreSQL port it listens on.
pub fn write_sqlmux_config(
    bin: &Path,
    dir: &Path,
    name: &str,
    upstream: &Endpoint,
    settings: &SqlmuxSettings,
) -> Result<(PathBuf, u16)> {
    let port = sqlmux_tests::free_port();
    let admin_port = sqlmux_tests::free_port();
    let config = dir.join(format!("{name}.toml"));
    let mut text = format!(
        "# generated by sqlmux-bench\n\
         [general]\n\
         workers = {workers}\n\
         \n\
         [admin]\n\
         listen = \"127.0.0.1:{admin_port}\"\n\
         users = [{user:?}]\n\
         \n\
         [postgres]\n\
         listen = \"127.0.0.1:{port}\"\n\
         auth = \"trust\"\n\
         \n\
         [pool]\n\
         mode = \"transaction\"\n\
         size = {POOL_SIZE}\n\
         max_client_connections = {MAX_CLIENTS}\n\
         \n\
         [insight]\n\
         enabled = {insight}\n\
         \n\
         [[databases]]\n\
         name = {db:?}\n\
         host = {host:?}\n\
         port = {pgport}\n",
        user = upstream.user,
        workers = settings.workers,
        insight = settings.insight,
        db = upstream.db,
        host = upstream.host,
        pgport = upstream.port,
    );
    if let Some(pw) = &upstream.password {
        text += &format!("user = {:?}\npassword = {:?}\n", upstream.user, pw);
    }
    text += &format!("\n[[users]]\nname = {:?}\n", upstream.user);
    std::fs::write(&config, text)?;

    let check = procs::run_tool(
        {
            let mut c = Command::new(bin);
            c.arg("check").arg("--config").arg(&config);
            c
        },
        Duration::from_secs(30),
    )?;
    if !check.success() {
        bail!(
            "sqlmux check --config {} failed:\n{}{}",
            config.display(),
            check.stdout,
            check.stderr
        );
    }

    Ok((config, port))
}

/// `sqlmux --version`.
pub fn sqlmux_version(bin: &Path) -> String {
    tool_version(bin, &["--version"])
}

// ---------------------------------------------------------------------------
// PgBouncer

/// A started PgBouncer and what had to be left out of its configuration.
#[derive(Debug)]
pub struct PgBouncer {
    /// The running proxy.
    pub proxy: Proxy,
    /// Why it was not (PgBouncer's own error line).
    pub prepared_note: Option<String>,
}

/// Finds PgBouncer: `--pgbouncer PATH`, else `pgbouncer` on PATH or in sbin.
pub fn find_pgbouncer(explicit: Option<&Path>) -> Option<PathBuf> {
    match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => sqlmux_tests::which("pgbouncer"),
    }
}

/// Starts PgBouncer in transaction mode with the same pool size, as the
/// OS user `postgres` when we are root (it refuses to run as root). Tries
/// `max_prepared_statements = 100` first and drops it when this PgBouncer
/// does not know it (before 1.21).
pub fn start_pgbouncer(
    bin: &Path,
    scratch: &procs::ScratchDir,
    name: &str,
    upstream: &Endpoint,
) -> Result<PgBouncer> {
    let launch = PgBouncerLaunch {
        command: &|ini: &Path| {
            let mut cmd = Command::new(bin);
            cmd.arg(ini);
            cmd
        },
        timeout: Duration::from_secs(30),
    };
    start_pgbouncer_with(bin, scratch, name, upstream, &launch)
}

/// How [`start_pgbouncer_with`] runs PgBouncer: the command for a given
/// `pgbouncer.ini` (PgBouncer itself, or a wrapper such as valgrind) and
/// how long it may take to listen.
pub struct PgBouncerLaunch<'a> {
    /// The command line for this configuration file.
    pub command: &'a dyn Fn(&Path) -> Command,
    /// Start-up limit.
    pub timeout: Duration,
}

/// The OS user PgBouncer runs as: `postgres` when we are root (PgBouncer
/// refuses to run as root), else ourselves.
pub fn pgbouncer_user() -> Result<Option<RunAs>> {
    if !procs::is_root() {
        return Ok(None);
    }
    procs::lookup_user("postgres")
        .context("running as root, and OS user `postgres` (for PgBouncer) is missing")
        .map(Some)
}

/// [`start_pgbouncer`] with the command line of `launch`.
pub fn start_pgbouncer_with(
    bin: &Path,
    scratch: &procs::ScratchDir,
    name: &str,
    upstream: &Endpoint,
    launch: &PgBouncerLaunch<'_>,
) -> Result<PgBouncer> {
    let run_as = pgbouncer_user()?;
    let dir = scratch.subdir(name, run_as)?;
    let mut note = None;
    for with_prepared in [true, false] {
        let port = sqlmux_tests::free_port();
        write_pgbouncer_files(&dir, port, upstream, with_prepared, run_as)?;
        let cmd = (launch.command)(&dir.join("pgbouncer.ini"));
        let log = dir.join("stdout.log");
        let mut server = Server::spawn(name, cmd, run_as, &log)
            .with_context(|| format!("starting {}", bin.display()))?;
        match wait_listening(&mut server, port, launch.timeout) {
            Ok(()) => {
                return Ok(PgBouncer {
                    proxy: Proxy {
                        server,
                        endpoint: upstream.proxy_at(port),
                    },
                    prepared_note: note,
                });
            }
            Err(e) if with_prepared => {
                let log_text = procs::log_tail(&dir.join("pgbouncer.log"), 20)
                    + "\n"
                    + &procs::log_tail(&log, 20);
                let line = log_text
                    .lines()
                    .find(|l| l.contains("max_prepared_statements"))
                    .map(|l| l.trim().to_owned());
                match line {
                    Some(l) => {
                        note = Some(l);
                        // Keep the probe's complaints out of the log the
                        // report scans for warnings.
                        let _ = std::fs::rename(
                            dir.join("pgbouncer.log"),
                            dir.join("pgbouncer-probe.log"),
                        );
                        continue;
                    }
                    None => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the second attempt returns")
}

fn write_pgbouncer_files(
    dir: &Path,
    port: u16,
    upstream: &Endpoint,
    with_prepared: bool,
    run_as: Option<RunAs>,
) -> Result<()> {
    let mut db_line = format!(
        "{} = host={} port={} dbname={} user={}",
        upstream.db, upstream.host, upstream.port, upstream.db, upstream.user
    );
    if let Some(pw) = &upstream.password {
        db_line += &format!(" password={pw}");
    }
    let d = dir.display();
    let mut ini = format!(
        "; generated by sqlmux-bench\n\
         [databases]\n\
         {db_line}\n\
         \n\
         [pgbouncer]\n\
         listen_addr = 127.0.0.1\n\
         listen_port = {port}\n\
         unix_socket_dir = {d}\n\
         auth_type = trust\n\
         auth_file = {d}/userlist.txt\n\
         admin_users = {user}\n\
         pool_mode = transaction\n\
         default_pool_size = {POOL_SIZE}\n\
         max_client_conn = {MAX_CLIENTS}\n\
         ignore_startup_parameters = extra_float_digits\n\
         log_connections = 0\n\
         log_disconnections = 0\n\
         logfile = {d}/pgbouncer.log\n\
         pidfile = {d}/pgbouncer.pid\n",
        user = upstream.user,
    );
    if with_prepared {
        ini += "max_prepared_statements = 100\n";
    }
    let ini_path = dir.join("pgbouncer.ini");
    std::fs::write(&ini_path, ini)?;
    procs::chown(&ini_path, run_as)?;
    let users = dir.join("userlist.txt");
    std::fs::write(&users, format!("\"{}\" \"\"\n", upstream.user))?;
    procs::chown(&users, run_as)?;
    let _ = std::fs::remove_file(dir.join("pgbouncer.pid"));
    Ok(())
}

/// First line of `<bin> <args>`.
pub fn tool_version(bin: &Path, args: &[&str]) -> String {
    Command::new(bin)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s.lines().next().unwrap_or("").trim().to_owned()
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Runs one statement with psql against `ep`; returns stdout (trimmed).
pub fn psql(ep: &Endpoint, sql: &str) -> Result<String> {
    let mut cmd = Command::new(sqlmux_tests::pg_tool("psql"));
    procs::clean_pg_env(&mut cmd);
    if let Some(p) = &ep.password {
        cmd.env("PGPASSWORD", p);
    }
    cmd.env("PGCONNECT_TIMEOUT", "10");
    cmd.args(["-X", "-w", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"]);
    cmd.args([
        "-h",
        &ep.host,
        "-p",
        &ep.port.to_string(),
        "-U",
        &ep.user,
        "-d",
        &ep.db,
    ]);
    cmd.arg("-c").arg(sql);
    let out = procs::run_tool(cmd, Duration::from_secs(120))?;
    if !out.success() {
        bail!(
            "psql -c {sql:?} on port {} failed: {}",
            ep.port,
            out.stderr.trim()
        );
    }
    Ok(out.stdout.trim().to_owned())
}
