//! Child processes and temporary files that never outlive the runner.
//!
//! The runner starts long-lived servers (sqlmux, PgBouncer) and short tools
//! (pgbench, psql). All of them are forked from one dedicated thread that
//! lives as long as the process, with `PR_SET_PDEATHSIG` set in the child:
//! the kernel sends that signal when the *forking thread* ends, so forking
//! from a thread that never ends ties the children to the whole process.
//! PostgreSQL itself is started by the `sqlmux-tests` harness, which does
//! the same on its own thread and stops it from an `atexit` hook.
//!
//! Clean-up happens in three layers:
//!
//! 1. `Drop` of [`Server`] and [`ScratchDir`] (normal exit, `?` errors and
//!    panics, which unwind through `main`).
//! 2. SIGINT/SIGTERM/SIGHUP: a handler sets a flag; a watcher thread kills
//!    every registered child, removes the scratch directory and exits,
//!    which runs the harness's `atexit` hook (PostgreSQL and its directory).
//! 3. The parent-death signal for anything left when the runner is killed
//!    outright.
//!
//! Every child runs in its own process group, so a Ctrl-C in the terminal
//! reaches only the runner, which then stops the children in order.

use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};

/// An OS user a child runs as (root drops to it before `exec`).
#[derive(Clone, Copy, Debug)]
pub struct RunAs {
    /// User id.
    pub uid: libc::uid_t,
    /// Group id.
    pub gid: libc::gid_t,
}

/// Whether the runner is root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Looks up an OS user by name.
pub fn lookup_user(name: &str) -> Option<RunAs> {
    let cname = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: getpwnam_r fills `pwd` with pointers into `buf`; we read only
    // the two integer fields before either goes out of scope.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        );
        (rc == 0 && !result.is_null()).then_some(RunAs {
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        })
    }
}

/// Changes the owner of `path` when `run_as` is set.
pub fn chown(path: &Path, run_as: Option<RunAs>) -> io::Result<()> {
    match run_as {
        Some(u) => std::os::unix::fs::chown(path, Some(u.uid), Some(u.gid)),
        None => Ok(()),
    }
}

/// Raises RLIMIT_NOFILE as far as allowed (to `want` when root may raise
/// the hard limit) and returns the new soft limit. Children inherit it.
pub fn raise_nofile(want: u64) -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        let raised = libc::rlimit {
            rlim_cur: want.max(lim.rlim_cur),
            rlim_max: want.max(lim.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            return raised.rlim_cur;
        }
        let soft = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &soft) == 0 {
            return soft.rlim_cur;
        }
        lim.rlim_cur
    }
}

// ---------------------------------------------------------------------------
// The spawner thread

struct Request {
    cmd: Command,
    run_as: Option<RunAs>,
    reply: mpsc::SyncSender<io::Result<Child>>,
}

fn spawner() -> &'static Mutex<mpsc::Sender<Request>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        thread::Builder::new()
            .name("bench-spawner".into())
            .spawn(move || {
                while let Ok(req) = rx.recv() {
                    let _ = req.reply.send(fork_here(req.cmd, req.run_as));
                }
                // The sender lives in a static, so this is unreachable; if
                // it ever happens, staying alive keeps the children tied to
                // the process rather than to a dead thread.
                loop {
                    thread::park();
                }
            })
            .expect("starting the spawner thread");
        Mutex::new(tx)
    })
}

fn fork_here(mut cmd: Command, run_as: Option<RunAs>) -> io::Result<Child> {
    let parent = std::process::id() as libc::pid_t;
    cmd.process_group(0);
    // SAFETY: the closure runs between fork and exec and calls only
    // async-signal-safe functions; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(u) = run_as
                && (libc::setgroups(1, &u.gid) != 0
                    || libc::setgid(u.gid) != 0
                    || libc::setuid(u.uid) != 0)
            {
                return Err(io::Error::last_os_error());
            }
            // After setuid, which clears the death signal.
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Spawns `cmd` (in its own process group, killed when the runner dies),
/// as `run_as` when given.
pub fn spawn(cmd: Command, run_as: Option<RunAs>) -> io::Result<Child> {
    let (reply, rx) = mpsc::sync_channel(1);
    spawner()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .send(Request { cmd, run_as, reply })
        .map_err(|_| io::Error::other("spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("spawner thread is gone"))?
}

// ---------------------------------------------------------------------------
// Registry for the signal watcher

static LIVE_PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static LIVE_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static SIGNALLED: AtomicBool = AtomicBool::new(false);

fn register_pid(pid: u32) {
    LIVE_PIDS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(pid);
}

fn unregister_pid(pid: u32) {
    LIVE_PIDS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|&p| p != pid);
}

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

/// Installs the SIGINT/SIGTERM/SIGHUP handler and its watcher thread (see
/// the module docs). Call once, early.
pub fn install_signal_cleanup() {
    let handler: extern "C" fn(libc::c_int) = on_signal;
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe {
            libc::signal(sig, handler as libc::sighandler_t);
        }
    }
    thread::Builder::new()
        .name("bench-signals".into())
        .spawn(|| {
            loop {
                thread::sleep(Duration::from_millis(50));
                if SIGNALLED.load(Ordering::SeqCst) {
                    eprintln!("\nsqlmux-bench: interrupted; stopping children and cleaning up");
                    kill_registered();
                    std::process::exit(130);
                }
            }
        })
        .expect("starting the signal watcher thread");
}

/// Kills every registered child (SIGTERM, then SIGKILL after 3 s) and
/// removes the registered directories.
fn kill_registered() {
    let pids = std::mem::take(&mut *LIVE_PIDS.lock().unwrap_or_else(PoisonError::into_inner));
    for &pid in &pids {
        // SAFETY: plain syscalls on our own (unreaped) children; the
        // negative pid names the process group each child leads.
        unsafe {
            libc::kill(-(pid as libc::pid_t), libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut waiting = pids;
    while !waiting.is_empty() && Instant::now() < deadline {
        waiting.retain(|&pid| {
            // SAFETY: as above.
            unsafe { libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), libc::WNOHANG) == 0 }
        });
        thread::sleep(Duration::from_millis(20));
    }
    for pid in waiting {
        // SAFETY: as above.
        unsafe {
            libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
            libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
        }
    }
    let dirs = std::mem::take(&mut *LIVE_DIRS.lock().unwrap_or_else(PoisonError::into_inner));
    for d in dirs {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// True once Ctrl-C (or SIGTERM/SIGHUP) arrived; long loops check it.
pub fn interrupted() -> bool {
    SIGNALLED.load(Ordering::SeqCst)
}

// ---------------------------------------------------------------------------
// Scratch directory

/// The runner's temporary directory; removed on drop and on interrupt.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `<tmp>/sqlmux-bench-<pid>`, world-readable so servers
    /// running as another user can reach their subdirectories.
    pub fn new() -> io::Result<ScratchDir> {
        use std::os::unix::fs::PermissionsExt;
        let tmp = std::env::temp_dir();
        sweep_stale(&tmp);
        let path = tmp.join(format!("sqlmux-bench-{}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir_all(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        LIVE_DIRS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(path.clone());
        Ok(ScratchDir { path })
    }

    /// [`ScratchDir::new`] for a run that starts its own servers: their
    /// data directories go inside it (SQLMUX_TEST_TMPDIR, unless the caller
    /// chose one), and an interrupt stops them and removes it
    /// ([`install_signal_cleanup`]). Call before any thread exists.
    pub fn for_servers() -> io::Result<ScratchDir> {
        let scratch = ScratchDir::new()?;
        if std::env::var_os("SQLMUX_TEST_TMPDIR").is_none() {
            // SAFETY: the caller has started no thread yet, so nothing can
            // read the environment concurrently.
            unsafe { std::env::set_var("SQLMUX_TEST_TMPDIR", scratch.path()) };
        }
        install_signal_cleanup();
        Ok(scratch)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates (if needed) a subdirectory owned by `run_as`.
    pub fn subdir(&self, name: &str, run_as: Option<RunAs>) -> io::Result<PathBuf> {
        let p = self.path.join(name);
        std::fs::create_dir_all(&p)?;
        chown(&p, run_as)?;
        Ok(p)
    }
}

/// Removes `sqlmux-bench-<pid>` directories of runners that no longer
/// exist (killed with SIGKILL, so no clean-up ran).
fn sweep_stale(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("sqlmux-bench-")
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
        LIVE_DIRS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|p| p != &self.path);
    }
}

// ---------------------------------------------------------------------------
// Long-lived servers

/// A server child (sqlmux, PgBouncer). Dropping it sends SIGTERM, waits up
/// to 10 s, then SIGKILLs it.
#[derive(Debug)]
pub struct Server {
    /// What it is, for messages.
    pub name: String,
    child: Child,
    exited: Option<ExitStatus>,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

impl Server {
    /// Spawns `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(
        name: &str,
        mut cmd: Command,
        run_as: Option<RunAs>,
        log: &Path,
    ) -> io::Result<Server> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        let child = spawn(cmd, run_as)?;
        register_pid(child.id());
        Ok(Server {
            name: name.to_owned(),
            child,
            exited: None,
            log: log.to_owned(),
        })
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none()
            && let Ok(Some(s)) = self.child.try_wait()
        {
            self.exited = Some(s);
            unregister_pid(self.child.id());
        }
        self.exited
    }

    /// Stops it (SIGTERM, then SIGKILL after `grace`).
    pub fn stop(&mut self, grace: Duration) {
        if self.try_wait().is_some() {
            return;
        }
        // SAFETY: our unreaped child; the pid cannot have been recycled.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.try_wait().is_some() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        if let Ok(s) = self.child.wait() {
            self.exited = Some(s);
        }
        unregister_pid(self.child.id());
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log, n)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

/// The last `n` lines of a file.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------
// Short-lived tools

/// What a finished tool run produced.
#[derive(Debug)]
pub struct ToolOutput {
    /// Exit status (None when it was killed for the timeout).
    pub status: Option<ExitStatus>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// User + system CPU of the tool, from `wait4`.
    pub cpu: Duration,
}

impl ToolOutput {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

/// Runs `cmd` to completion, killing its process group after `timeout`.
pub fn run_tool(cmd: Command, timeout: Duration) -> io::Result<ToolOutput> {
    run_tool_as(cmd, None, timeout)
}

/// [`run_tool`] as `run_as` when given.
pub fn run_tool_as(
    mut cmd: Command,
    run_as: Option<RunAs>,
    timeout: Duration,
) -> io::Result<ToolOutput> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn(cmd, run_as)?;
    let pid = child.id();
    register_pid(pid);
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let mut status = None;
    let mut cpu = Duration::ZERO;
    loop {
        let mut raw = 0;
        // SAFETY: rusage is plain data filled by the kernel.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 on our own child with a valid status pointer.
        let r = unsafe { libc::wait4(pid as libc::pid_t, &mut raw, libc::WNOHANG, &mut usage) };
        if r == pid as libc::pid_t {
            use std::os::unix::process::ExitStatusExt;
            status = Some(ExitStatus::from_raw(raw));
            cpu = tv(usage.ru_utime) + tv(usage.ru_stime);
            break;
        }
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        if Instant::now() >= deadline || interrupted() {
            // SAFETY: our unreaped child leads its own process group.
            unsafe {
                libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
                libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
            }
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    unregister_pid(pid);
    // The Child handle must not reap again; forget its pid by dropping it
    // (std does not wait on drop).
    drop(child);
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    Ok(ToolOutput {
        status,
        stdout,
        stderr,
        cpu,
    })
}

fn tv(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
}

/// Removes inherited libpq variables so tools connect where we say.
pub fn clean_pg_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
}
