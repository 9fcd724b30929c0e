//! Small operating-system helpers for the demo: temporary directories,
//! free ports, finding server programs, and the OS user servers run as.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::DemoError;

/// A directory removed (with everything in it) when dropped.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `sqlmux-demo-<pid>-<n>` in the system temporary directory.
    pub fn new() -> Result<TempDir, DemoError> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!("sqlmux-demo-{}-{nanos:x}", std::process::id());
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir(&path).map_err(|e| DemoError::io("creating the demo directory", e))?;
        Ok(TempDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A port on 127.0.0.1 that was free a moment ago (the kernel picks it).
pub fn free_port() -> Result<u16, DemoError> {
    let l =
        TcpListener::bind("127.0.0.1:0").map_err(|e| DemoError::io("finding a free port", e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| DemoError::io("finding a free port", e))
}

/// `preferred` when it is free on 127.0.0.1, else any free port.
pub fn port_or_free(preferred: u16) -> Result<u16, DemoError> {
    match TcpListener::bind(("127.0.0.1", preferred)) {
        Ok(_) => Ok(preferred),
        Err(_) => free_port(),
    }
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn accepts(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Whether this process runs as root (the owner of `/proc/self`).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// An OS user a server runs as.
#[derive(Debug, Clone, Copy)]
pub struct OsUser {
    uid: u32,
    gid: u32,
}

impl OsUser {
    /// When this process runs as root: the user `name` from /etc/passwd
    /// (PostgreSQL refuses to run as root). `Ok(None)` otherwise.
    pub fn for_server(name: &str) -> Result<Option<OsUser>, DemoError> {
        if !is_root() {
            return Ok(None);
        }
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() > 3 && f[0] == name)
            .and_then(|f| Some(OsUser { uid: f[2].parse().ok()?, gid: f[3].parse().ok()? }))
            .map(Some)
            .ok_or_else(|| DemoError::Setup(format!(
                "running as root, but there is no OS user \"{name}\" to run the server as (it comes with the server package)"
            )))
    }

    /// Makes `path` belong to this user.
    pub fn chown(&self, path: &Path) -> Result<(), DemoError> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .map_err(|e| DemoError::io("handing the directory to the server's OS user", e))
    }

    /// Makes `cmd` run as this user.
    pub fn apply(&self, cmd: &mut Command) {
        cmd.uid(self.uid).gid(self.gid);
    }
}

/// The first executable among `dirs` × `names`, then on `PATH`.
pub fn find_program(names: &[&str], dirs: &[PathBuf]) -> Option<PathBuf> {
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let extra = [PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")];
    for name in names {
        for dir in dirs.iter().chain(&path_dirs).chain(&extra) {
            let p = dir.join(name);
            if std::fs::metadata(&p).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0) {
                return Some(p);
            }
        }
    }
    None
}

/// A command with the given program, no stdin, its own process group (so
/// the terminal's Ctrl-C reaches only sqlmux, which then stops it in
/// order) and no `PG*` / `MYSQL*` variables from the environment.
pub fn command(program: &Path, cwd: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .process_group(0);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("PG") || k.starts_with("MYSQL") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Runs a command to completion; an error carries its output.
pub fn run(mut cmd: Command, what: &str) -> Result<String, DemoError> {
    let out = cmd.output().map_err(|e| DemoError::io(what, e))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        Ok(text)
    } else {
        Err(DemoError::Setup(format!(
            "{what} failed ({}):\n{text}",
            out.status
        )))
    }
}

/// A log file for a server's output.
pub fn log_file(path: &Path) -> Result<std::fs::File, DemoError> {
    std::fs::File::create(path).map_err(|e| DemoError::io("creating a server log", e))
}
