//! The demo's throwaway PostgreSQL: `initdb` into the demo directory, then
//! `postgres -D` on a free port on 127.0.0.1, stopped with `pg_ctl stop`.
//!
//! As root both run as the OS user `postgres` (PostgreSQL refuses root).
//! Durability is off (`fsync`, `synchronous_commit`, `full_page_writes`):
//! the data is thrown away at the end anyway.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::DemoError;
use super::os::{OsUser, command, find_program, log_file, run};

/// How long start-up may take.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running PostgreSQL server; killed if dropped while still running.
#[derive(Debug)]
pub struct PgServer {
    child: Option<Child>,
    bin: PathBuf,
    data: PathBuf,
    dir: PathBuf,
    user: Option<OsUser>,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// Major version, e.g. "16".
    pub version: String,
}

/// The newest `/usr/lib/postgresql/<version>/bin` with `initdb` (or
/// `$PG_BIN`), with its version.
fn bin_dir() -> Result<(PathBuf, String), DemoError> {
    if let Some(dir) = std::env::var_os("PG_BIN").map(PathBuf::from) {
        return Ok((dir, String::from("?")));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").exists())
        .collect();
    found.sort();
    if let Some((v, bin)) = found.pop() {
        return Ok((bin, v.to_string()));
    }
    let initdb = find_program(&["initdb"], &[]).ok_or_else(|| {
        DemoError::Setup("PostgreSQL is not installed: apt-get install postgresql".into())
    })?;
    let dir = initdb.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok((dir, String::from("?")))
}

impl PgServer {
    /// Runs `initdb` in `dir/data` and starts the server on `port`
    /// (blocking, up to a minute).
    pub fn start(dir: &Path, port: u16) -> Result<PgServer, DemoError> {
        let (bin, version) = bin_dir()?;
        let user = OsUser::for_server("postgres")?;
        std::fs::create_dir_all(dir)
            .map_err(|e| DemoError::io("creating the PostgreSQL directory", e))?;
        if let Some(u) = user {
            u.chown(dir)?;
        }
        let mut server = PgServer {
            child: None,
            data: dir.join("data"),
            dir: dir.to_path_buf(),
            bin,
            user,
            port,
            version,
        };
        server.initdb()?;
        server.launch()?;
        server.wait_ready()?;
        Ok(server)
    }

    fn tool(&self, name: &str) -> std::process::Command {
        let mut cmd = command(&self.bin.join(name), &self.dir);
        if let Some(u) = self.user {
            u.apply(&mut cmd);
        }
        cmd
    }

    fn initdb(&self) -> Result<(), DemoError> {
        let mut cmd = self.tool("initdb");
        cmd.arg("-D").arg(&self.data);
        cmd.args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        run(cmd, "initdb").map(|_| ())
    }

    fn launch(&mut self) -> Result<(), DemoError> {
        let log = log_file(&self.dir.join("postgres.log"))?;
        if let Some(u) = self.user {
            u.chown(&self.dir.join("postgres.log"))?;
        }
        let mut cmd = self.tool("postgres");
        cmd.arg("-D")
            .arg(&self.data)
            .arg("-p")
            .arg(self.port.to_string());
        cmd.arg("-k").arg(&self.dir);
        for setting in [
            "listen_addresses=127.0.0.1",
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
            "max_connections=100",
            "shared_buffers=32MB",
            "lc_messages=C",
        ] {
            cmd.arg("-c").arg(setting);
        }
        let err = log
            .try_clone()
            .map_err(|e| DemoError::io("opening the server log", e))?;
        cmd.stdout(Stdio::from(log)).stderr(Stdio::from(err));
        let child = cmd
            .spawn()
            .map_err(|e| DemoError::io("starting postgres", e))?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until `postmaster.pid` says the server is ready.
    fn wait_ready(&mut self) -> Result<(), DemoError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let pid_file = self.data.join("postmaster.pid");
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                let log =
                    std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
                return Err(DemoError::Setup(format!(
                    "postgres exited ({status}):\n{log}"
                )));
            }
            let text = std::fs::read_to_string(&pid_file).unwrap_or_default();
            if text.lines().nth(7).map(str::trim) == Some("ready") && super::os::accepts(self.port)
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(DemoError::Setup(
            "PostgreSQL did not start within a minute".into(),
        ))
    }

    /// Fast shutdown (`pg_ctl stop -m fast`), waiting for the server to
    /// exit (blocking).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let mut cmd = self.tool("pg_ctl");
        cmd.arg("stop")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "-t", "20"]);
        if run(cmd, "pg_ctl stop").is_err() {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
