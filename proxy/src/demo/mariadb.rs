//! The demo's throwaway MariaDB: `mariadb-install-db` into the demo
//! directory, then `mariadbd` on a free port on 127.0.0.1 with a database
//! `shop` and a user `app` without password. Used only when this build's
//! configuration accepts MySQL databases (see [`super::mysql`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::DemoError;
use super::os::{command, find_program, is_root, log_file, run};

/// A running MariaDB server; killed if dropped while still running.
#[derive(Debug)]
pub struct MariaDbServer {
    child: Option<Child>,
    dir: PathBuf,
    socket: PathBuf,
    /// TCP port on 127.0.0.1.
    pub port: u16,
}

fn program(names: &[&str]) -> Result<PathBuf, DemoError> {
    let bin = std::env::var_os("MARIADB_BIN").map(PathBuf::from);
    find_program(names, bin.as_slice()).ok_or_else(|| {
        DemoError::Setup(format!(
            "MariaDB program {} not found: apt-get install mariadb-server mariadb-client",
            names[0]
        ))
    })
}

/// `--user=root` when running as root (mariadbd refuses root otherwise).
fn user_args() -> Vec<&'static str> {
    if is_root() {
        vec!["--user=root"]
    } else {
        Vec::new()
    }
}

impl MariaDbServer {
    /// Installs a data directory under `dir`, starts the server on `port`
    /// and creates the demo's database and user (blocking).
    pub fn start(dir: &Path, port: u16) -> Result<MariaDbServer, DemoError> {
        std::fs::create_dir_all(dir.join("tmp"))
            .map_err(|e| DemoError::io("creating the MariaDB directory", e))?;
        let mut server = MariaDbServer {
            child: None,
            dir: dir.to_path_buf(),
            socket: dir.join("mariadbd.sock"),
            port,
        };
        server.install()?;
        server.launch()?;
        server.wait_ready()?;
        server.sql("CREATE DATABASE shop; CREATE USER 'app'@'%'; CREATE USER 'app'@'127.0.0.1'; GRANT ALL ON shop.* TO 'app'@'%'; GRANT ALL ON shop.* TO 'app'@'127.0.0.1';")?;
        Ok(server)
    }

    fn install(&self) -> Result<(), DemoError> {
        let mut cmd = command(
            &program(&["mariadb-install-db", "mysql_install_db"])?,
            &self.dir,
        );
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", self.dir.join("data").display()))
            .arg(format!("--tmpdir={}", self.dir.join("tmp").display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .args(user_args());
        run(cmd, "mariadb-install-db").map(|_| ())
    }

    fn launch(&mut self) -> Result<(), DemoError> {
        let log = log_file(&self.dir.join("mariadbd.log"))?;
        let err = log
            .try_clone()
            .map_err(|e| DemoError::io("opening the server log", e))?;
        let mut cmd = command(&program(&["mariadbd", "mysqld"])?, &self.dir);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", self.dir.join("data").display()))
            .arg(format!("--socket={}", self.socket.display()))
            .arg(format!(
                "--pid-file={}",
                self.dir.join("mariadbd.pid").display()
            ))
            .arg(format!("--tmpdir={}", self.dir.join("tmp").display()))
            .arg(format!("--port={}", self.port))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--skip-log-bin",
            ])
            .args([
                "--innodb-buffer-pool-size=64M",
                "--innodb-flush-log-at-trx-commit=2",
            ])
            .args(user_args())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err));
        self.child = Some(
            cmd.spawn()
                .map_err(|e| DemoError::io("starting mariadbd", e))?,
        );
        Ok(())
    }

    fn wait_ready(&mut self) -> Result<(), DemoError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                return Err(DemoError::Setup(format!("mariadbd exited ({status})")));
            }
            if super::os::accepts(self.port) && self.sql("SELECT 1").is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(DemoError::Setup(
            "MariaDB did not start within a minute".into(),
        ))
    }

    /// Runs SQL as root over the Unix socket.
    pub fn sql(&self, sql: &str) -> Result<String, DemoError> {
        let mut cmd = command(&program(&["mariadb", "mysql"])?, &self.dir);
        cmd.arg("--no-defaults")
            .arg(format!("--socket={}", self.socket.display()))
            .args(["-uroot", "-e", sql]);
        run(cmd, "mariadb")
    }

    /// Shuts the server down and waits for it (blocking).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let admin = program(&["mariadb-admin", "mysqladmin"]);
        let stopped = admin.is_ok_and(|p| {
            let mut cmd = command(&p, &self.dir);
            cmd.arg("--no-defaults")
                .arg(format!("--socket={}", self.socket.display()))
                .args(["-uroot", "shutdown"]);
            run(cmd, "mariadb-admin shutdown").is_ok()
        });
        if !stopped {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

impl Drop for MariaDbServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
