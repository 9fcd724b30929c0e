//! Child processes that never outlive the test process.
//!
//! Every server and client the harness starts is forked from one dedicated
//! thread, the *spawner*, that lives as long as the process. In the child,
//! before `exec`, the harness (1) drops root to the server's OS user when
//! asked, (2) sets `PR_SET_PDEATHSIG`, (3) exits if the test process is
//! already gone. The parent-death signal fires when the thread that forked
//! the child exits — that is why forking happens on a thread that never
//! exits, not on a short-lived test thread — and therefore only when the
//! whole test process ends: normally, by panic, by abort or by `SIGKILL`.
//! The signal is set *after* the credential change because the kernel clears
//! it on `setuid`.
//!
//! Three layers of clean-up, from the most to the least graceful:
//!
//! 1. `Drop` of [`crate::PgCluster`] / [`crate::MariaDb`] (and of
//!    `ServerProcess`) stops the server and waits for it.
//! 2. An `atexit` hook stops the servers that are never dropped (the shared
//!    ones live in statics) and removes their directories.
//! 3. The parent-death signal kills what is left when the process dies
//!    without running `atexit`; the directories are then removed by the next
//!    test process (see `dir`).

use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, Once, OnceLock, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};

/// An OS user a child runs as (after `setgid`/`setuid` from root).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RunAs {
    pub(crate) uid: libc::uid_t,
    pub(crate) gid: libc::gid_t,
}

impl RunAs {
    /// `None` when the test process is not root (children then run as the
    /// current user); otherwise the uid/gid of `user`.
    ///
    /// # Panics
    ///
    /// When running as root and `user` does not exist; `hint` says which
    /// package creates it.
    pub(crate) fn for_server(user: &str, hint: &str) -> Option<RunAs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        Some(lookup_user(user).unwrap_or_else(|| {
            panic!("running as root but OS user `{user}` does not exist ({hint})")
        }))
    }
}

fn lookup_user(name: &str) -> Option<RunAs> {
    let cname = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: passwd is plain data; getpwnam_r fills it, pointing into buf,
    // which outlives every use of it here.
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

/// Changes the owner of `path` to `run_as`, when there is one.
pub(crate) fn chown(path: &std::path::Path, run_as: Option<RunAs>) -> io::Result<()> {
    match run_as {
        Some(u) => std::os::unix::fs::chown(path, Some(u.uid), Some(u.gid)),
        None => Ok(()),
    }
}

struct SpawnRequest {
    cmd: Command,
    run_as: Option<RunAs>,
    death_signal: libc::c_int,
    reply: mpsc::SyncSender<io::Result<Child>>,
}

/// The spawner thread's queue. The sender lives in a static, so the thread's
/// `recv` never fails and the thread never exits.
fn spawner() -> &'static mpsc::Sender<SpawnRequest> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        thread::Builder::new()
            .name("sqlmux-test-spawner".into())
            .spawn(move || {
                while let Ok(req) = rx.recv() {
                    let child = spawn_here(req.cmd, req.run_as, req.death_signal);
                    let _ = req.reply.send(child);
                }
                // Unreachable while the static holds a sender; if it ever
                // happens, staying alive keeps the children's death signal
                // tied to the process.
                loop {
                    thread::park();
                }
            })
            .expect("spawning the harness spawner thread");
        tx
    })
}

/// Forks and execs `cmd` on the current (spawner) thread.
fn spawn_here(
    mut cmd: Command,
    run_as: Option<RunAs>,
    death_signal: libc::c_int,
) -> io::Result<Child> {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and only calls
    // async-signal-safe functions (setgroups, setgid, setuid, prctl,
    // getppid, _exit); io::Error::last_os_error does not allocate.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(u) = run_as
                && (libc::setgroups(1, &u.gid) != 0
                    || libc::setgid(u.gid) != 0
                    || libc::setuid(u.uid) != 0)
            {
                return Err(io::Error::last_os_error());
            }
            // After setuid: the kernel clears the death signal on credential
            // changes.
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                death_signal as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The test process died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Spawns `cmd` from the spawner thread so it gets `death_signal` when the
/// test process ends, running as `run_as` when given.
pub(crate) fn spawn(
    cmd: Command,
    run_as: Option<RunAs>,
    death_signal: libc::c_int,
) -> io::Result<Child> {
    let (reply, rx) = mpsc::sync_channel(1);
    spawner()
        .send(SpawnRequest {
            cmd,
            run_as,
            death_signal,
            reply,
        })
        .map_err(|_| io::Error::other("harness spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("harness spawner thread is gone"))?
}

/// Polls `child` until it exits or `timeout` passes (`Ok(None)`).
fn wait_timeout(child: &mut Child, timeout: Duration) -> io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Runs `cmd` to completion like [`Command::output`], feeding it `stdin`,
/// but killed after `timeout` (then the error kind is
/// [`io::ErrorKind::TimedOut`]) and killed when the test process dies. The
/// child runs in its own process group, which the timeout kills as a whole.
///
/// Use it for clients driven by tests (`psql`, `pgbench`, `mariadb`, …) so
/// a hung client fails the test instead of hanging the suite. Stdout and
/// stderr are captured; the exit status is not checked.
pub fn run_command(cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> io::Result<Output> {
    run_command_as(cmd, None, stdin, timeout)
}

/// [`run_command`], running the child as `run_as`.
pub(crate) fn run_command_as(
    mut cmd: Command,
    run_as: Option<RunAs>,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> io::Result<Output> {
    let what = describe(&cmd);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped());
    cmd.stderr(Stdio::piped());
    // Its own process group, so a timeout can kill its children too.
    cmd.process_group(0);
    let mut child = spawn(cmd, run_as, libc::SIGKILL)?;
    let mut child_in = child.stdin.take();
    let mut child_out = child.stdout.take().expect("piped stdout");
    let mut child_err = child.stderr.take().expect("piped stderr");
    thread::scope(|s| {
        if let (Some(mut w), Some(data)) = (child_in.take(), stdin) {
            // A child that exits without reading all input is not an error.
            s.spawn(move || {
                let _ = w.write_all(data);
            });
        }
        let out = s.spawn(move || {
            let mut v = Vec::new();
            let _ = child_out.read_to_end(&mut v);
            v
        });
        let err = s.spawn(move || {
            let mut v = Vec::new();
            let _ = child_err.read_to_end(&mut v);
            v
        });
        let status = match wait_timeout(&mut child, timeout) {
            Ok(Some(status)) => status,
            failed => {
                // Kill the whole group: a grandchild holding the pipes
                // open would keep the readers (and this scope) waiting.
                // SAFETY: the child is not reaped, so its pid still names
                // its process group.
                unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed.err().unwrap_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("{what} did not finish within {timeout:?}"),
                    )
                }));
            }
        };
        let stdout = out.join().expect("stdout reader");
        let stderr = err.join().expect("stderr reader");
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    })
}

/// Program and arguments, for messages (environment left out: it may hold
/// passwords).
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// A long-running server child. Dropping it stops the server (with
/// `drop_signal`, then `SIGKILL` if it lingers) and reaps it.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    child: Child,
    exited: Option<ExitStatus>,
    drop_signal: libc::c_int,
}

impl ServerProcess {
    /// Spawns a server from the spawner thread. `death_signal` is what it
    /// gets when the test process dies; `drop_signal` is what it gets when
    /// this handle is dropped (or at exit).
    pub(crate) fn spawn(
        cmd: Command,
        run_as: Option<RunAs>,
        death_signal: libc::c_int,
        drop_signal: libc::c_int,
    ) -> io::Result<ServerProcess> {
        let child = spawn(cmd, run_as, death_signal)?;
        register_pid(child.id(), drop_signal);
        Ok(ServerProcess {
            child,
            exited: None,
            drop_signal,
        })
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the server has exited (reaping it).
    pub(crate) fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none()
            && let Ok(Some(status)) = self.child.try_wait()
        {
            self.exited = Some(status);
            unregister_pid(self.child.id());
        }
        self.exited
    }

    /// Sends `signal` unless the server has already been reaped (so the
    /// signal cannot hit a recycled pid).
    pub(crate) fn signal(&mut self, signal: libc::c_int) -> io::Result<()> {
        if self.try_wait().is_some() {
            return Ok(());
        }
        // SAFETY: kill has no memory-safety preconditions; the pid is our
        // unreaped child.
        if unsafe { libc::kill(self.child.id() as libc::pid_t, signal) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends `signal` and waits up to `grace` for the exit, then `SIGKILL`s
    /// it. Returns the exit status.
    pub(crate) fn shutdown(&mut self, signal: libc::c_int, grace: Duration) -> ExitStatus {
        if let Some(status) = self.try_wait() {
            return status;
        }
        let _ = self.signal(signal);
        let status = match wait_timeout(&mut self.child, grace) {
            Ok(Some(status)) => status,
            _ => {
                let _ = self.child.kill();
                self.child.wait().expect("waiting for a killed server")
            }
        };
        self.exited = Some(status);
        unregister_pid(self.child.id());
        status
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let signal = self.drop_signal;
        self.shutdown(signal, Duration::from_secs(30));
    }
}

/// Servers and directories still alive, for the `atexit` hook.
struct Live {
    pids: Vec<(u32, libc::c_int)>,
    dirs: Vec<PathBuf>,
}

static LIVE: Mutex<Live> = Mutex::new(Live {
    pids: Vec::new(),
    dirs: Vec::new(),
});

fn live() -> std::sync::MutexGuard<'static, Live> {
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

fn register_pid(pid: u32, signal: libc::c_int) {
    install_exit_hook();
    live().pids.push((pid, signal));
}

fn unregister_pid(pid: u32) {
    live().pids.retain(|&(p, _)| p != pid);
}

/// Records a harness directory to be removed at exit if it is still there.
pub(crate) fn register_dir(path: PathBuf) {
    install_exit_hook();
    live().dirs.push(path);
}

/// Forgets a directory its owner removed.
pub(crate) fn unregister_dir(path: &std::path::Path) {
    live().dirs.retain(|p| p != path);
}

fn install_exit_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: cleanup_at_exit is an extern "C" fn that never unwinds.
        unsafe {
            libc::atexit(cleanup_at_exit);
        }
    });
}

/// Stops the servers nobody dropped (the shared ones) and removes the
/// directories nobody removed, when the test process exits normally.
extern "C" fn cleanup_at_exit() {
    let _ = std::panic::catch_unwind(|| {
        // Another thread may still hold the lock at exit; then give up
        // and leave the work to the death signal and the next sweep.
        let Ok(mut live) = LIVE.try_lock() else {
            return;
        };
        let pids = std::mem::take(&mut live.pids);
        let dirs = std::mem::take(&mut live.dirs);
        drop(live);
        for &(pid, signal) in &pids {
            // SAFETY: these children were never reaped (reaping
            // unregisters them), so the pids are still ours.
            unsafe { libc::kill(pid as libc::pid_t, signal) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut waiting: Vec<u32> = pids.iter().map(|&(pid, _)| pid).collect();
        while !waiting.is_empty() && Instant::now() < deadline {
            waiting.retain(|&pid| {
                let mut status = 0;
                // SAFETY: plain syscall on our own child.
                unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) == 0 }
            });
            thread::sleep(Duration::from_millis(5));
        }
        for &pid in &waiting {
            // SAFETY: as above.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
                libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
            }
        }
        for dir in dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_command_feeds_stdin_and_captures_output() {
        let out =
            run_command(Command::new("cat"), Some(b"hello"), Duration::from_secs(10)).unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, b"hello");
    }

    #[test]
    fn run_command_kills_on_timeout_even_if_a_grandchild_holds_stdout() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30 & sleep 30"]);
        let started = Instant::now();
        let err = run_command(cmd, None, Duration::from_millis(200)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
