//! Throwaway MariaDB servers: `mariadb-install-db` into a temporary
//! directory, then `mariadbd` as a child of the test process on a free port.
//!
//! All programs run with `--no-defaults`, so no `my.cnf` on the machine
//! leaks in. As root the server runs as root (`--user=root`); otherwise as
//! the current user. It listens on 127.0.0.1 only, with `skip-name-resolve`
//! (so accounts are matched by IP: `'x'@'127.0.0.1'` or `'x'@'%'`), no
//! binary log, a 64 MB buffer pool and relaxed durability.
//!
//! `root` has no password and may connect over the Unix socket
//! (`root@localhost`) or TCP (`root@127.0.0.1`); [`MariaDb::sql`] uses the
//! socket.
//!
//! # The shared server
//!
//! [`shared_mariadb`] starts one server per test process, on first use,
//! with a database `app` and a user `app` (hosts `%`, `127.0.0.1` and
//! `localhost`), password `app-pass` (`mysql_native_password`), holding all
//! privileges on `app.*`. Tests may create their own users and databases in
//! it (use unique names) but must not stop it or change its configuration;
//! they start their own [`MariaDb`] for that.

use std::fs::{self, OpenOptions};
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crate::dir::TestDir;
use crate::process::{self, ServerProcess};
use crate::tools::{mariadb_tool, require_mariadb_tools};
use crate::{HOST, TlsFiles, free_port, log_tail};

/// How long install, start-up and shutdown may take.
const SERVER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one `mariadb` client run may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
/// How many fresh ports to try when another process took ours.
const PORT_ATTEMPTS: usize = 5;
/// InnoDB redo log size, for both install and server (the default 96 MB
/// file per server is needless disk traffic).
const INNODB_LOG_FILE_SIZE: &str = "--innodb-log-file-size=16M";

/// How to set up a [`MariaDb`]. Build with struct update syntax:
/// `MariaDbOptions { max_connections: 20, ..MariaDbOptions::default() }`.
#[derive(Clone, Debug)]
pub struct MariaDbOptions {
    /// `--max-connections`; default 200.
    pub max_connections: u32,
    /// Extra `mariadbd` arguments, after the harness's (a later option
    /// wins), e.g. `"--wait-timeout=2"`.
    pub args: Vec<String>,
    /// Certificate and key for TLS (`--ssl-cert`/`--ssl-key`); without them
    /// the server offers no TLS.
    pub tls: Option<TlsFiles>,
}

impl Default for MariaDbOptions {
    fn default() -> Self {
        MariaDbOptions {
            max_connections: 200,
            args: Vec::new(),
            tls: None,
        }
    }
}

/// A MariaDB server of its own: data directory, port, socket and server
/// process.
///
/// Dropping it kills the server and removes the directory.
///
/// # Concurrency
///
/// Methods taking `&self` (queries, user creation) may run from many threads
/// at once; stopping and starting take `&mut self`, so the shared server
/// cannot be stopped by accident.
#[derive(Debug)]
pub struct MariaDb {
    server: Option<ServerProcess>,
    port: u16,
    args: Vec<String>,
    data_dir: PathBuf,
    socket: PathBuf,
    log_path: PathBuf,
    dir: TestDir,
}

impl MariaDb {
    /// Runs `mariadb-install-db` into a fresh temporary directory, starts
    /// `mariadbd` on a free port and waits (up to 60 s) until it accepts
    /// connections.
    ///
    /// # Panics
    ///
    /// When MariaDB is not installed (the message names the package), the
    /// install fails or the server does not come up; the message includes
    /// the log's tail.
    pub fn start(options: MariaDbOptions) -> MariaDb {
        require_mariadb_tools();
        let dir = TestDir::new("mariadb").expect("creating the server's temporary directory");
        let data_dir = dir.path().join("data");
        let socket = dir.path().join("mariadbd.sock");
        let log_path = dir.path().join("server.log");
        fs::create_dir(dir.path().join("tmp")).expect("creating the server's tmpdir");
        let mut db = MariaDb {
            server: None,
            port: 0,
            args: Vec::new(),
            data_dir,
            socket,
            log_path,
            dir,
        };
        db.install();
        db.args = db.server_args(&options);
        for attempt in 1..=PORT_ATTEMPTS {
            db.port = free_port();
            match db.launch() {
                Ok(()) => return db,
                Err(e) if e.port_in_use && attempt < PORT_ATTEMPTS => continue,
                Err(e) => panic!("{}", e.message),
            }
        }
        unreachable!("the last attempt panics")
    }

    /// Starts a private server set up like [`shared_mariadb`]: database
    /// `app` and user `app` / `app-pass`. For tests that need the standard
    /// login on a server they may stop or reconfigure.
    pub fn start_standard(options: MariaDbOptions) -> MariaDb {
        let db = MariaDb::start(options);
        let mut sql = String::from("CREATE DATABASE app;\n");
        for host in ["%", "127.0.0.1", "localhost"] {
            sql += &format!("CREATE USER 'app'@'{host}' IDENTIFIED BY 'app-pass';\n");
            sql += &format!("GRANT ALL PRIVILEGES ON app.* TO 'app'@'{host}';\n");
        }
        db.sql(&sql);
        db
    }

    fn install(&self) {
        let mut cmd = Command::new(mariadb_tool("mariadb-install-db"));
        cmd.arg("--no-defaults")
            .arg("--auth-root-authentication-method=normal")
            .arg(format!("--datadir={}", self.data_dir.display()))
            // A private tmpdir: concurrent bootstraps sharing /tmp now and
            // then crash (signal 11 dropping an Aria temporary table).
            .arg(format!(
                "--tmpdir={}",
                self.dir.path().join("tmp").display()
            ))
            .args([
                "--skip-test-db",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=64M",
            ])
            .arg(INNODB_LOG_FILE_SIZE)
            .args(root_user_arg());
        clean_env(&mut cmd);
        let out = process::run_command(cmd, None, SERVER_TIMEOUT)
            .unwrap_or_else(|e| panic!("running mariadb-install-db: {e}"));
        let mut text = out.stdout;
        text.extend_from_slice(&out.stderr);
        let _ = fs::write(self.dir.path().join("install.log"), &text);
        assert!(
            out.status.success(),
            "mariadb-install-db --datadir={} failed ({}):\n{}",
            self.data_dir.display(),
            out.status,
            String::from_utf8_lossy(&text)
        );
    }

    /// Every `mariadbd` argument but the port.
    fn server_args(&self, options: &MariaDbOptions) -> Vec<String> {
        let dir = self.dir.path();
        let mut args = vec![
            "--no-defaults".to_owned(),
            format!("--datadir={}", self.data_dir.display()),
            format!("--socket={}", self.socket.display()),
            format!("--pid-file={}", dir.join("mariadbd.pid").display()),
            format!("--tmpdir={}", dir.join("tmp").display()),
            format!("--bind-address={HOST}"),
            "--skip-name-resolve".to_owned(),
            "--skip-log-bin".to_owned(),
            "--innodb-buffer-pool-size=64M".to_owned(),
            INNODB_LOG_FILE_SIZE.to_owned(),
            "--innodb-flush-log-at-trx-commit=2".to_owned(),
            "--innodb-doublewrite=0".to_owned(),
            "--lc-messages=en_US".to_owned(),
            format!("--max-connections={}", options.max_connections),
        ];
        args.extend(root_user_arg());
        if let Some(tls) = &options.tls {
            let cert = dir.join("server-cert.pem");
            let key = dir.join("server-key.pem");
            fs::write(&cert, &tls.cert_pem).expect("writing the TLS certificate");
            fs::write(&key, &tls.key_pem).expect("writing the TLS key");
            args.push(format!("--ssl-cert={}", cert.display()));
            args.push(format!("--ssl-key={}", key.display()));
        }
        args.extend(options.args.iter().cloned());
        args
    }

    /// Starts `mariadbd` on `self.port` and waits until it is ready.
    fn launch(&mut self) -> Result<(), StartError> {
        let log_start = fs::metadata(&self.log_path).map(|m| m.len()).unwrap_or(0);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("opening the server log");
        let mut cmd = Command::new(mariadb_tool("mariadbd"));
        cmd.args(&self.args).arg(format!("--port={}", self.port));
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup of the log fd"))
            .stderr(log);
        clean_env(&mut cmd);
        let what = process::describe(&cmd);
        let server = ServerProcess::spawn(cmd, None, libc::SIGKILL, libc::SIGKILL)
            .unwrap_or_else(|e| panic!("spawning {what}: {e}"));
        self.server = Some(server);
        match self.wait_ready() {
            Ok(()) => Ok(()),
            Err(why) => {
                if let Some(mut server) = self.server.take() {
                    server.shutdown(libc::SIGKILL, Duration::from_secs(10));
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
                        "MariaDB on port {} ({}) did not start: {why}\n--- {} (tail) ---\n{}",
                        self.port,
                        self.data_dir.display(),
                        self.log_path.display(),
                        log_tail(&self.log_path, 40)
                    ),
                })
            }
        }
    }

    /// Waits until a TCP connection gets the server's handshake packet
    /// (protocol version 10), which it sends once it serves clients.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + SERVER_TIMEOUT;
        let addr = self.addr();
        loop {
            let server = self.server.as_mut().expect("launched");
            if let Some(status) = server.try_wait() {
                return Err(format!("the server exited ({status})"));
            }
            if handshake_received(addr) {
                return Ok(());
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

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's Unix socket.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The server's error log (stdout and stderr of every run).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// A `mysql://user:password@127.0.0.1:port/db` URL (percent-encoded),
    /// e.g. for `mysql_async::Pool::new`.
    pub fn url(&self, user: &str, password: Option<&str>, db: &str) -> String {
        let auth = match password {
            Some(p) => format!("{}:{}", crate::url_encode(user), crate::url_encode(p)),
            None => crate::url_encode(user),
        };
        format!(
            "mysql://{auth}@{HOST}:{}/{}",
            self.port,
            crate::url_encode(db)
        )
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(ServerProcess::pid)
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        self.server.as_mut().is_some_and(|s| s.try_wait().is_none())
    }

    /// Shuts the server down cleanly (`SIGTERM`: connections are closed) and
    /// waits for it to exit. Does nothing when it is not running.
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.shutdown(libc::SIGTERM, SERVER_TIMEOUT);
        }
    }

    /// Kills the server (`SIGKILL`, like a crash) and waits for it to exit;
    /// the next start runs crash recovery.
    pub fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.shutdown(libc::SIGKILL, SERVER_TIMEOUT);
        }
    }

    /// Starts the server again on the same port and data directory, after
    /// [`stop`](Self::stop) or [`kill`](Self::kill); if it is running, stops
    /// it first. Waits until it accepts connections.
    ///
    /// # Panics
    ///
    /// When it does not come up; the message includes the log tail.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.launch() {
            panic!("{}", e.message);
        }
    }

    /// Runs `sql` (one or more `;`-terminated statements) with the `mariadb`
    /// client as `root` over the Unix socket, in batch mode without column
    /// names (`-N -B`). Returns stdout without its final newline: one line
    /// per row, columns separated by tabs.
    ///
    /// # Panics
    ///
    /// When the client fails; the message has its stderr.
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`sql`](Self::sql) returning the client's stderr as the error instead
    /// of panicking.
    pub fn try_sql(&self, sql: &str) -> Result<String, String> {
        let mut cmd = base_client_command();
        cmd.arg(format!("--socket={}", self.socket.display()))
            .args(["--protocol=SOCKET", "-u", "root"]);
        run_client(cmd, sql)
    }

    /// Runs `sql` like [`sql`](Self::sql) but as `user` with `password` over
    /// TCP (127.0.0.1), in database `db` when given.
    pub fn sql_as(
        &self,
        user: &str,
        password: Option<&str>,
        db: Option<&str>,
        sql: &str,
    ) -> Result<String, String> {
        mariadb_tcp(self.port, user, password, db, sql)
    }

    /// Creates database `name`.
    pub fn create_database(&self, name: &str) {
        self.sql(&format!("CREATE DATABASE {};", quote_ident(name)));
    }

    /// Creates user `name`@`%` identified by `password`
    /// (`mysql_native_password`), with no privileges; grant them with
    /// [`sql`](Self::sql).
    pub fn create_user(&self, name: &str, password: &str) {
        self.sql(&format!(
            "CREATE USER {}@'%' IDENTIFIED BY {};",
            quote_literal(name),
            quote_literal(password)
        ));
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        // The data is thrown away, so a clean shutdown buys nothing.
        self.kill();
    }
}

/// Why one start attempt failed.
struct StartError {
    port_in_use: bool,
    message: String,
}

/// The server shared by all tests of this process, started on first use;
/// see the [module docs](self) for its database and user.
///
/// # Concurrency
///
/// Concurrent first calls block until the one start-up finishes. The server
/// is killed when the process exits.
///
/// # Panics
///
/// When MariaDB is not installed or cannot start.
pub fn shared_mariadb() -> &'static MariaDb {
    static SHARED: OnceLock<MariaDb> = OnceLock::new();
    SHARED.get_or_init(|| MariaDb::start_standard(MariaDbOptions::default()))
}

/// A `mariadb` client command set up to run statements from stdin as `user`
/// against 127.0.0.1:`port` over TCP, batch mode without column names,
/// `--no-defaults`, password in `MYSQL_PWD`, in database `db` when given.
/// Add arguments (e.g. `--ssl`) and run it with [`crate::run_command`],
/// feeding the SQL on stdin.
pub fn mariadb_command(port: u16, user: &str, password: Option<&str>, db: Option<&str>) -> Command {
    let mut cmd = base_client_command();
    cmd.args([
        "--protocol=TCP",
        "-h",
        HOST,
        "-P",
        &port.to_string(),
        "-u",
        user,
    ]);
    if let Some(password) = password {
        cmd.env("MYSQL_PWD", password);
    }
    if let Some(db) = db {
        cmd.arg(format!("--database={db}"));
    }
    cmd
}

/// Runs `sql` through [`mariadb_command`] (e.g. against the proxy's port).
/// Returns stdout without its final newline, or the client's stderr when it
/// fails.
pub fn mariadb_tcp(
    port: u16,
    user: &str,
    password: Option<&str>,
    db: Option<&str>,
    sql: &str,
) -> Result<String, String> {
    run_client(mariadb_command(port, user, password, db), sql)
}

/// `--no-defaults` must come first on the client's command line.
fn base_client_command() -> Command {
    let mut cmd = Command::new(mariadb_tool("mariadb"));
    cmd.args(["--no-defaults", "-N", "-B", "--connect-timeout=10"]);
    clean_env(&mut cmd);
    cmd
}

fn run_client(cmd: Command, sql: &str) -> Result<String, String> {
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

/// Whether a MariaDB greeting (protocol version 10) arrives on `addr`.
fn handshake_received(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    // 3-byte length, sequence id, then the payload's first byte.
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).is_ok() && head[4] == 10
}

/// `--user=root` when running as root (mariadbd refuses root otherwise).
fn root_user_arg() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    (unsafe { libc::geteuid() } == 0).then(|| "--user=root".to_owned())
}

/// Removes inherited client variables (`MYSQL_PWD`, `MYSQL_HOST`, …).
fn clean_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let key_str = key.to_string_lossy();
        if key_str.starts_with("MYSQL") || key_str.starts_with("MARIADB") {
            cmd.env_remove(key);
        }
    }
}

/// A MariaDB identifier, backquoted.
fn quote_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// A MariaDB string literal (backslash escapes are on by default).
fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}
