//! Throwaway PostgreSQL clusters: `initdb` into a temporary directory, then
//! `postgres -D` as a child of the test process on a free port.
//!
//! As root, `initdb` and `postgres` run as the OS user `postgres` (they
//! refuse to run as root) and the directory belongs to it; otherwise they run
//! as the current user. `pg_ctl` is not used because it daemonizes the
//! server, which would escape the parent-death signal (see
//! [`crate::process`]).
//!
//! Every cluster listens on 127.0.0.1 only, with its Unix socket in its own
//! directory; `fsync`, `synchronous_commit` and `full_page_writes` are off and
//! `autovacuum` is off, because tests value speed over durability.
//! Server messages are in English (`lc_messages = 'C'`) so tests may match
//! them.
//!
//! # The shared cluster
//!
//! [`shared_pg`] starts one cluster per test process, on first use, with
//! this fixed set of roles and `pg_hba.conf` rules (over TCP; the Unix socket
//! is `trust` for everyone):
//!
//! | role           | password     | stored as      | TCP auth method        |
//! |----------------|--------------|----------------|------------------------|
//! | `postgres`     | none         | —              | `trust` (superuser)    |
//! | `sqlmux_scram` | `scram-pass` | SCRAM verifier | `scram-sha-256`        |
//! | `sqlmux_md5`   | `md5-pass`   | md5 hash       | `md5`                  |
//! | `sqlmux_plain` | `plain-pass` | SCRAM verifier | `password` (cleartext) |
//! | `app`          | `app-pass`   | SCRAM verifier | `scram-sha-256`        |
//! | any other role | —            | —              | `trust`                |
//!
//! plus a database `app` owned by `app`. The roles may connect to the
//! `postgres` and `app` databases (and any other). `max_connections` is 200.
//! Tests may create their own roles and databases in the shared cluster (use
//! unique names) but must not stop it or change its configuration; they
//! start their own [`PgCluster`] for that — [`PgCluster::start_standard`]
//! gives one with the same roles.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crate::dir::TestDir;
use crate::process::{self, RunAs, ServerProcess};
use crate::tools::{pg_tool, require_pg_tools};
use crate::{HOST, TlsFiles, free_port, log_tail};

/// How long start-up, shutdown and `reload` may take before the harness
/// gives up with the server log in the panic message.
const SERVER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one `psql` run may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
/// How many fresh ports to try when another process took ours.
const PORT_ATTEMPTS: usize = 5;

/// How to set up a [`PgCluster`]. Build with struct update syntax:
/// `PgOptions { max_connections: 20, ..PgOptions::default() }`.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// `max_connections`; default 200.
    pub max_connections: u32,
    /// Extra `postgresql.conf` lines, written after the harness defaults (a
    /// later setting wins), e.g. `"idle_session_timeout = '1s'"`.
    pub conf: Vec<String>,
    /// Extra `pg_hba.conf` lines, placed before the harness's `trust` lines
    /// (the first matching line wins), e.g.
    /// `"host all alice 127.0.0.1/32 scram-sha-256"`.
    pub hba: Vec<String>,
    /// Certificate and key to start with `ssl = on`; see
    /// [`PgCluster::enable_ssl`].
    pub tls: Option<TlsFiles>,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            max_connections: 200,
            conf: Vec::new(),
            hba: Vec::new(),
            tls: None,
        }
    }
}

/// A PostgreSQL cluster of its own: data directory, port, Unix socket
/// directory and server process.
///
/// Dropping it stops the server (immediate shutdown) and removes the
/// directory.
///
/// # Concurrency
///
/// Methods taking `&self` (queries, role creation, reload) may run from many
/// threads at once. Stopping, starting and changing the configuration take
/// `&mut self`, so the shared cluster (a `&'static PgCluster`) cannot be
/// stopped or reconfigured by accident.
#[derive(Debug)]
pub struct PgCluster {
    server: Option<ServerProcess>,
    port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    run_as: Option<RunAs>,
    dir: TestDir,
}

impl PgCluster {
    /// Creates a fresh cluster in a new temporary directory (a copy of a data
    /// directory `initdb` made once per process, with `-U postgres -E UTF8
    /// --locale=C.UTF-8`, or `C` where that locale is missing), configures it
    /// from `options`, starts it on a free port and waits (up to 60 s) until
    /// it accepts connections.
    ///
    /// # Panics
    ///
    /// When the binaries are missing, `initdb` fails, or the server does not
    /// come up; the message includes the server log's tail.
    pub fn start(options: PgOptions) -> PgCluster {
        require_pg_tools();
        let run_as = RunAs::for_server(
            "postgres",
            "it comes with the postgresql package; initdb and postgres refuse to run as root",
        );
        let dir = TestDir::new("pg").expect("creating the cluster's temporary directory");
        process::chown(dir.path(), run_as).expect("chown of the cluster directory");
        let data_dir = dir.path().join("data");
        let log_path = dir.path().join("server.log");
        let mut cluster = PgCluster {
            server: None,
            port: 0,
            data_dir,
            log_path,
            run_as,
            dir,
        };
        cluster.copy_template();
        cluster.write_conf(&options);
        cluster.write_hba(&options.hba);
        if let Some(tls) = &options.tls {
            cluster.write_tls_files(tls);
        }
        for attempt in 1..=PORT_ATTEMPTS {
            cluster.port = free_port();
            match cluster.launch() {
                Ok(()) => return cluster,
                Err(e) if e.port_in_use && attempt < PORT_ATTEMPTS => continue,
                Err(e) => panic!("{}", e.message),
            }
        }
        unreachable!("the last attempt panics")
    }

    /// Starts a private cluster set up like [`shared_pg`]: the standard
    /// roles, passwords, `pg_hba.conf` lines (after `options.hba`, which thus
    /// take precedence) and the `app` database. For tests that need the
    /// standard logins on a server they may stop or reconfigure.
    pub fn start_standard(mut options: PgOptions) -> PgCluster {
        options
            .hba
            .extend(STANDARD_HBA.iter().map(|s| s.to_string()));
        let cluster = PgCluster::start(options);
        // One psql run instead of five: start-up time adds up.
        cluster.psql(
            "postgres",
            "SET password_encryption = 'scram-sha-256';
             CREATE ROLE sqlmux_scram LOGIN PASSWORD 'scram-pass';
             CREATE ROLE sqlmux_plain LOGIN PASSWORD 'plain-pass';
             CREATE ROLE app LOGIN PASSWORD 'app-pass';
             SET password_encryption = 'md5';
             CREATE ROLE sqlmux_md5 LOGIN PASSWORD 'md5-pass';
             CREATE DATABASE app OWNER app;",
        );
        cluster
    }

    /// Fills `data_dir` with a copy of this process's `initdb` template
    /// (copying is ~10x faster than running `initdb` again).
    fn copy_template(&self) {
        let template = initdb_template(self.run_as);
        let mut cmd = Command::new("cp");
        cmd.arg("-a").arg(template).arg(&self.data_dir);
        let out = process::run_command_as(cmd, self.run_as, None, SERVER_TIMEOUT)
            .unwrap_or_else(|e| panic!("copying the initdb template: {e}"));
        assert!(
            out.status.success(),
            "cp -a {} {} failed: {}",
            template.display(),
            self.data_dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn write_conf(&self, options: &PgOptions) {
        let mut conf = String::from("\n# --- sqlmux-tests harness ---\n");
        conf += "listen_addresses = '127.0.0.1'\n";
        conf += &format!(
            "unix_socket_directories = {}\n",
            conf_quote(&self.socket_dir().to_string_lossy())
        );
        conf += &format!("max_connections = {}\n", options.max_connections);
        conf += "shared_buffers = 16MB\n";
        conf += "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n";
        conf += "autovacuum = off\n";
        conf += "lc_messages = 'C'\n";
        conf += "log_line_prefix = '%m [%p] %q%u@%d '\n";
        for line in &options.conf {
            conf += line;
            conf += "\n";
        }
        self.append_to_conf(&conf);
    }

    /// Rewrites `pg_hba.conf`: `extra` lines first, then `trust` for the Unix
    /// socket and for TCP from 127.0.0.1 / ::1.
    fn write_hba(&self, extra: &[String]) {
        let mut hba = String::from("# sqlmux-tests harness: test lines first, then trust\n");
        for line in extra {
            hba += line;
            hba += "\n";
        }
        hba += "local all all trust\n";
        hba += "host all all 127.0.0.1/32 trust\n";
        hba += "host all all ::1/128 trust\n";
        hba += "local replication all trust\n";
        hba += "host replication all 127.0.0.1/32 trust\n";
        fs::write(self.data_dir.join("pg_hba.conf"), hba).expect("writing pg_hba.conf");
    }

    fn write_tls_files(&self, tls: &TlsFiles) {
        self.write_private_file("server.crt", &tls.cert_pem);
        self.write_private_file("server.key", &tls.key_pem);
        self.append_to_conf(
            "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
        );
    }

    /// Writes a file in the data directory, mode 0600, owned by the server's
    /// OS user (PostgreSQL insists on that for the key).
    fn write_private_file(&self, name: &str, contents: &str) {
        let path = self.data_dir.join(name);
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        f.write_all(contents.as_bytes())
            .expect("writing a TLS file");
        process::chown(&path, self.run_as).expect("chown of a TLS file");
    }

    /// Starts `postgres -D` on `self.port` and waits until it is ready.
    fn launch(&mut self) -> Result<(), StartError> {
        let log_start = fs::metadata(&self.log_path).map(|m| m.len()).unwrap_or(0);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("opening the server log");
        let mut cmd = Command::new(pg_tool("postgres"));
        cmd.arg("-D")
            .arg(&self.data_dir)
            .arg("-p")
            .arg(self.port.to_string());
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup of the log fd"))
            .stderr(log);
        clean_env(&mut cmd);
        let what = process::describe(&cmd);
        // SIGQUIT = immediate shutdown: the postmaster takes its backends
        // and shared memory with it, unlike SIGKILL.
        let server = ServerProcess::spawn(cmd, self.run_as, libc::SIGQUIT, libc::SIGQUIT)
            .unwrap_or_else(|e| panic!("spawning {what}: {e}"));
        self.server = Some(server);
        match self.wait_ready() {
            Ok(()) => Ok(()),
            Err(why) => {
                if let Some(mut server) = self.server.take() {
                    server.shutdown(libc::SIGQUIT, Duration::from_secs(10));
                }
                let new_log = fs::read(&self.log_path)
                    .map(|b| {
                        String::from_utf8_lossy(&b[(log_start as usize).min(b.len())..])
                            .into_owned()
                    })
                    .unwrap_or_default();
                Err(StartError {
                    port_in_use: new_log.contains("Address already in use"),
                    message: format!(
                        "PostgreSQL on port {} ({}) did not start: {why}\n--- {} (tail) ---\n{}",
                        self.port,
                        self.data_dir.display(),
                        self.log_path.display(),
                        log_tail(&self.log_path, 40)
                    ),
                })
            }
        }
    }

    /// Waits until `postmaster.pid` says "ready" for our port and a TCP
    /// connection succeeds.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + SERVER_TIMEOUT;
        let pid_file = self.data_dir.join("postmaster.pid");
        let addr = self.addr();
        loop {
            let server = self.server.as_mut().expect("launched");
            if let Some(status) = server.try_wait() {
                return Err(format!("the server exited ({status})"));
            }
            let pid = server.pid().to_string();
            if let Ok(text) = fs::read_to_string(&pid_file) {
                // Lines: pid, data dir, start time, port, socket dir, listen
                // address, shmem key, status.
                let lines: Vec<&str> = text.lines().collect();
                let ours = lines.first() == Some(&pid.as_str())
                    && lines.get(3).map(|p| p.trim()) == Some(self.port.to_string().as_str());
                if ours
                    && lines.get(7).map(|s| s.trim()) == Some("ready")
                    && TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
                {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("not ready after {SERVER_TIMEOUT:?}"));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The TCP port the server listens on (127.0.0.1). It stays the same
    /// across [`stop`](Self::stop) and [`restart`](Self::restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host the server listens on: always `"127.0.0.1"`.
    pub fn host(&self) -> &'static str {
        HOST
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The data directory (`PGDATA`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory holding the server's Unix socket
    /// (`.s.PGSQL.<port>`); pass it as `host` to connect over the socket.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server log (stdout and stderr of every run of the server).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// A `postgres://user:password@127.0.0.1:port/db` URL (percent-encoded),
    /// e.g. for `tokio_postgres::connect`.
    pub fn url(&self, user: &str, password: Option<&str>, db: &str) -> String {
        pg_url(self.port, user, password, db)
    }

    /// The postmaster's process id while the server runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(ServerProcess::pid)
    }

    /// Whether the server process is running (it may have been stopped, or
    /// have crashed).
    pub fn is_running(&mut self) -> bool {
        self.server.as_mut().is_some_and(|s| s.try_wait().is_none())
    }

    /// Stops the server with a fast shutdown (`SIGINT`: open sessions are
    /// terminated, their transactions rolled back) and waits for it to
    /// exit. Does nothing when it is not running.
    pub fn stop(&mut self) {
        self.shutdown(libc::SIGINT);
    }

    /// Stops the server with an immediate shutdown (`SIGQUIT`: processes
    /// exit at once, as in a crash; the next start runs recovery) and waits
    /// for it to exit.
    pub fn stop_immediate(&mut self) {
        self.shutdown(libc::SIGQUIT);
    }

    fn shutdown(&mut self, signal: libc::c_int) {
        if let Some(mut server) = self.server.take() {
            server.shutdown(signal, SERVER_TIMEOUT);
        }
    }

    /// Starts the server again on the same port and data directory, after
    /// [`stop`](Self::stop) (or a crash); if it is running, stops it (fast)
    /// first. Waits until it accepts connections.
    ///
    /// # Panics
    ///
    /// When it does not come up, e.g. because another process took the port
    /// meanwhile; the message includes the log tail.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.launch() {
            panic!("{}", e.message);
        }
    }

    /// Re-reads the configuration files (`SIGHUP`) and waits until the
    /// server has applied them, so connections opened afterwards see the new
    /// settings and `pg_hba.conf`.
    ///
    /// # Panics
    ///
    /// When the server is not running or does not reload within 60 s (e.g.
    /// a broken config file; see the log).
    pub fn reload(&self) {
        let pid = self.pid().expect("reload: the server is not running");
        let before = self.psql("postgres", "SELECT pg_conf_load_time()");
        // SAFETY: kill has no memory-safety preconditions; the pid is our
        // running child.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) };
        let deadline = Instant::now() + SERVER_TIMEOUT;
        while self.psql("postgres", "SELECT pg_conf_load_time()") == before {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL on port {} did not reload its configuration\n--- log tail ---\n{}",
                self.port,
                log_tail(&self.log_path, 20)
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Appends lines to `postgresql.conf`. They take effect at the next
    /// [`reload`](Self::reload) or [`restart`](Self::restart), depending on
    /// the setting.
    pub fn append_conf(&mut self, lines: &str) {
        self.append_to_conf(lines);
    }

    fn append_to_conf(&self, lines: &str) {
        let path = self.data_dir.join("postgresql.conf");
        let mut f = OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
        writeln!(f, "{}", lines.trim_end_matches('\n')).expect("appending to postgresql.conf");
    }

    /// Replaces the test lines of `pg_hba.conf` (those from
    /// [`PgOptions::hba`]) with `extra`, keeping the `trust` lines after
    /// them, and [`reload`](Self::reload)s.
    pub fn set_hba(&mut self, extra: &[&str]) {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        self.write_hba(&extra);
        self.reload();
    }

    /// Installs a certificate and key (written into the data directory,
    /// mode 0600, owned by the server's OS user), turns `ssl = on` and
    /// [`reload`](Self::reload)s; new connections can then use TLS.
    pub fn enable_ssl(&mut self, cert_pem: &str, key_pem: &str) {
        self.write_tls_files(&TlsFiles {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        });
        self.reload();
    }

    /// Runs `sql` (one or more statements, as a script) with `psql` as
    /// superuser `postgres` over the Unix socket in database `db`, with
    /// `-X -w -A -t -q -v ON_ERROR_STOP=1`. Returns stdout without its final
    /// newline: one line per row, columns separated by `|`.
    ///
    /// # Panics
    ///
    /// When `psql` fails; the message has its stderr.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`psql`](Self::psql) returning `psql`'s stderr (and exit status) as
    /// the error instead of panicking.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let mut cmd = base_psql_command();
        cmd.arg("-h")
            .arg(self.socket_dir())
            .arg("-p")
            .arg(self.port.to_string());
        cmd.args(["-U", "postgres", "-d", db]);
        run_psql(cmd, sql)
    }

    /// Runs `sql` like [`psql`](Self::psql) but as `user` over TCP
    /// (127.0.0.1), with `password` in `PGPASSWORD`, so `pg_hba.conf`
    /// authentication applies. Returns `psql`'s stderr on failure (e.g. a
    /// rejected password).
    pub fn psql_as(
        &self,
        user: &str,
        password: Option<&str>,
        db: &str,
        sql: &str,
    ) -> Result<String, String> {
        psql_tcp(self.port, user, password, db, sql)
    }

    /// Creates database `name` (owned by `postgres`).
    pub fn create_database(&self, name: &str) {
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {}", quote_ident(name)),
        );
    }

    /// Creates a login role. With a password, it is stored as a SCRAM
    /// verifier (`encryption = "scram-sha-256"`) or an md5 hash
    /// (`encryption = "md5"`), whatever `pg_hba.conf` later requires.
    ///
    /// # Panics
    ///
    /// On another `encryption`, or when the role exists.
    pub fn create_role(&self, name: &str, password: Option<&str>, encryption: &str) {
        assert!(
            matches!(encryption, "scram-sha-256" | "md5"),
            "create_role: encryption must be \"scram-sha-256\" or \"md5\", not {encryption:?}"
        );
        let mut sql = format!("SET password_encryption = {};\n", quote_literal(encryption));
        sql += &format!("CREATE ROLE {} LOGIN", quote_ident(name));
        if let Some(password) = password {
            sql += &format!(" PASSWORD {}", quote_literal(password));
        }
        sql += ";\n";
        self.psql("postgres", &sql);
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Immediate shutdown: nothing in a throwaway cluster is worth a
        // checkpoint. The directory is removed after (field TestDir).
        self.shutdown(libc::SIGQUIT);
    }
}

/// A data directory made by `initdb` once per process, copied by every
/// cluster. It lives in its own harness directory, removed at exit.
fn initdb_template(run_as: Option<RunAs>) -> &'static Path {
    static TEMPLATE: OnceLock<(TestDir, PathBuf)> = OnceLock::new();
    let (_, data_dir) = TEMPLATE.get_or_init(|| {
        let dir = TestDir::new("pg-template").expect("creating the initdb template directory");
        process::chown(dir.path(), run_as).expect("chown of the template directory");
        let data_dir = dir.path().join("data");
        initdb(&data_dir, run_as, &dir.path().join("initdb.log"));
        (dir, data_dir)
    });
    data_dir
}

/// Runs `initdb` into `data_dir` as `run_as`, keeping its output in `log`.
fn initdb(data_dir: &Path, run_as: Option<RunAs>, log: &Path) {
    let locale = if locale_exists("C.UTF-8") {
        "C.UTF-8"
    } else {
        "C"
    };
    let mut cmd = Command::new(pg_tool("initdb"));
    cmd.arg("-D")
        .arg(data_dir)
        .args(["-U", "postgres", "--auth-local=trust", "--auth-host=trust"])
        .args(["-E", "UTF8", "--no-sync"])
        .arg(format!("--locale={locale}"));
    clean_env(&mut cmd);
    let out = process::run_command_as(cmd, run_as, None, SERVER_TIMEOUT)
        .unwrap_or_else(|e| panic!("running initdb: {e}"));
    let mut text = out.stdout;
    text.extend_from_slice(&out.stderr);
    let _ = fs::write(log, &text);
    assert!(
        out.status.success(),
        "initdb -D {} failed ({}):\n{}",
        data_dir.display(),
        out.status,
        String::from_utf8_lossy(&text)
    );
}

/// Why one start attempt failed.
struct StartError {
    port_in_use: bool,
    message: String,
}

/// The cluster shared by all tests of this process, started on first use;
/// see the [module docs](self) for its roles, passwords and `pg_hba.conf`.
///
/// # Concurrency
///
/// Concurrent first calls block until the one start-up finishes. The
/// cluster is stopped when the process exits.
///
/// # Panics
///
/// When it cannot start (then every later call tries again and panics too).
pub fn shared_pg() -> &'static PgCluster {
    static SHARED: OnceLock<PgCluster> = OnceLock::new();
    SHARED.get_or_init(|| PgCluster::start_standard(PgOptions::default()))
}

/// The `pg_hba.conf` lines of the standard set-up (see the module docs).
const STANDARD_HBA: &[&str] = &[
    "host all sqlmux_scram 127.0.0.1/32 scram-sha-256",
    "host all sqlmux_md5 127.0.0.1/32 md5",
    "host all sqlmux_plain 127.0.0.1/32 password",
    "host all app 127.0.0.1/32 scram-sha-256",
];

/// A `psql` command set up to run a script as `user` against
/// 127.0.0.1:`port`, database `db`, over TCP: `-X -w -A -t -q -v
/// ON_ERROR_STOP=1 -f -`, `PGPASSWORD` = `password`, inherited `PG*`
/// variables removed, a 10 s connect timeout. Add arguments or variables
/// (e.g. `PGSSLMODE=require`) and run it with [`crate::run_command`],
/// feeding the SQL on stdin.
pub fn psql_command(port: u16, user: &str, password: Option<&str>, db: &str) -> Command {
    let mut cmd = base_psql_command();
    cmd.args(["-h", HOST, "-p", &port.to_string(), "-U", user, "-d", db]);
    if let Some(password) = password {
        cmd.env("PGPASSWORD", password);
    }
    cmd
}

/// Runs `sql` through [`psql_command`] (e.g. against the proxy's port).
/// Returns stdout without its final newline, or `psql`'s stderr when it
/// fails.
pub fn psql_tcp(
    port: u16,
    user: &str,
    password: Option<&str>,
    db: &str,
    sql: &str,
) -> Result<String, String> {
    run_psql(psql_command(port, user, password, db), sql)
}

fn base_psql_command() -> Command {
    let mut cmd = Command::new(pg_tool("psql"));
    cmd.args([
        "-X",
        "-w",
        "-A",
        "-t",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-f",
        "-",
    ]);
    clean_env(&mut cmd);
    cmd.env("PGCONNECT_TIMEOUT", "10")
        .env("PGCLIENTENCODING", "UTF8");
    cmd
}

fn run_psql(cmd: Command, sql: &str) -> Result<String, String> {
    let what = process::describe(&cmd);
    let out = process::run_command(cmd, Some(sql.as_bytes()), CLIENT_TIMEOUT)
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
        if s.ends_with('\n') {
            s.pop();
        }
        Ok(s)
    } else {
        Err(format!(
            "{what} failed ({}) running:\n{sql}\n--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        ))
    }
}

fn pg_url(port: u16, user: &str, password: Option<&str>, db: &str) -> String {
    let auth = match password {
        Some(p) => format!("{}:{}", crate::url_encode(user), crate::url_encode(p)),
        None => crate::url_encode(user),
    };
    format!("postgres://{auth}@{HOST}:{port}/{}", crate::url_encode(db))
}

/// Removes inherited libpq variables (`PGHOST`, `PGPASSWORD`, …) and the
/// locale overrides that would change server or client behaviour.
fn clean_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    cmd.env_remove("LC_ALL")
        .env_remove("LANGUAGE")
        .env("LANG", "C");
}

/// Whether the C library knows `name` as a locale.
fn locale_exists(name: &str) -> bool {
    let Ok(cname) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: newlocale either fails (null) or returns a locale we free.
    unsafe {
        let loc = libc::newlocale(libc::LC_ALL_MASK, cname.as_ptr(), std::ptr::null_mut());
        if loc.is_null() {
            return false;
        }
        libc::freelocale(loc);
        true
    }
}

/// A `postgresql.conf` string value.
fn conf_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// An SQL identifier, double-quoted.
fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// An SQL string literal (standard_conforming_strings is on).
fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_percent_encodes_credentials() {
        assert_eq!(
            pg_url(5, "a b", Some("p@ss:/"), "app"),
            "postgres://a%20b:p%40ss%3A%2F@127.0.0.1:5/app"
        );
        assert_eq!(pg_url(5, "u", None, "d"), "postgres://u@127.0.0.1:5/d");
    }

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
