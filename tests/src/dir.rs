//! Temporary directories for test servers, and sweeping the ones left by
//! killed test processes.
//!
//! Each server gets `<base>/sqlmux-test-<pid>-<n>-<kind>/`, holding its data
//! directory, log and Unix socket. `<base>` is, in order:
//!
//! 1. `$SQLMUX_TEST_TMPDIR` when set;
//! 2. `/dev/shm` when it is a writable tmpfs with at least 2 GiB free:
//!    creating the ~1,000 small files of a data directory there is about ten
//!    times faster than on a disk file system (docker's default 64 MB
//!    `/dev/shm` is too small and is skipped);
//! 3. the system temp directory (`/tmp` when that path would make a Unix
//!    socket path too long).
//!
//! Every directory contains a `.lock` file that its process holds an
//! exclusive `flock` on for as long as the directory is in use. The kernel
//! releases the lock when the process dies however it dies, so the first
//! harness directory created by any later test process removes every
//! `sqlmux-test-*` directory whose lock it can take. The lock file is locked
//! under a temporary name and then renamed, so a sweeper never sees a fresh
//! directory's `.lock` unlocked.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::process;

const PREFIX: &str = "sqlmux-test-";

/// A directory removed on drop (and at exit, and by a later sweep).
#[derive(Debug)]
pub(crate) struct TestDir {
    path: PathBuf,
    /// Holds the `flock` that marks the directory as in use.
    _lock: File,
}

impl TestDir {
    /// Creates a fresh directory; `kind` ends its name (`pg`, `mariadb`).
    pub(crate) fn new(kind: &str) -> io::Result<TestDir> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let base = base_dir();
        static SWEEP: Once = Once::new();
        SWEEP.call_once(|| {
            // Every place an earlier process may have used.
            let mut bases = vec![base.clone(), PathBuf::from(SHM), system_tmp()];
            bases.dedup();
            bases.iter().for_each(|b| sweep(b));
        });
        let pid = std::process::id();
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!("{PREFIX}{pid}-{n}-{kind}"));
            match fs::create_dir(&path) {
                Ok(()) => {}
                // Left by an earlier process with our pid that is still locked,
                // or not ours to remove: take the next number.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
            process::register_dir(path.clone());
            let tmp = path.join(".lock.tmp");
            let lock = File::create(&tmp)?;
            // SAFETY: flock on an fd we own.
            if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                return Err(io::Error::last_os_error());
            }
            fs::rename(&tmp, path.join(".lock"))?;
            return Ok(TestDir { path, _lock: lock });
        }
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
        process::unregister_dir(&self.path);
    }
}

/// Where harness directories go (see the module docs).
fn base_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SQLMUX_TEST_TMPDIR") {
        return PathBuf::from(dir);
    }
    let shm = Path::new(SHM);
    if free_bytes(shm).is_some_and(|free| free >= SHM_MIN_FREE) {
        return shm.to_path_buf();
    }
    system_tmp()
}

/// Fast RAM-backed base, when big enough.
const SHM: &str = "/dev/shm";
const SHM_MIN_FREE: u64 = 2 << 30;

fn system_tmp() -> PathBuf {
    let tmp = std::env::temp_dir();
    // sun_path holds 107 bytes; the name plus "/.s.PGSQL.65535" needs ~50.
    if tmp.as_os_str().len() > 50 {
        PathBuf::from("/tmp")
    } else {
        tmp
    }
}

/// Bytes available to us in the file system of `dir`, if it is writable.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: access and statvfs only read the path and fill `st`.
    unsafe {
        if libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) != 0 {
            return None;
        }
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return None;
        }
        Some(st.f_bavail as u64 * st.f_frsize as u64)
    }
}

/// Removes harness directories whose owning process is gone.
fn sweep(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        if !entry.file_name().to_string_lossy().starts_with(PREFIX) {
            continue;
        }
        let dir = entry.path();
        let Ok(lock) = OpenOptions::new().read(true).open(dir.join(".lock")) else {
            continue;
        };
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            let _ = fs::remove_dir_all(&dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_directory_survives_a_sweep_and_is_removed_on_drop() {
        let dir = TestDir::new("unit").unwrap();
        let path = dir.path().to_path_buf();
        assert!(path.join(".lock").exists());
        sweep(path.parent().unwrap());
        assert!(path.exists(), "sweep removed a directory still in use");
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn an_unlocked_directory_is_swept() {
        let base = base_dir();
        let path = base.join(format!("{PREFIX}{}-stale-unit", std::process::id()));
        fs::create_dir_all(&path).unwrap();
        File::create(path.join(".lock")).unwrap();
        // A concurrent sweep (another test's first TestDir) may hold the
        // lock for a moment; it removes the directory then.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while path.exists() && std::time::Instant::now() < deadline {
            sweep(&base);
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!path.exists());
    }
}
