//! Unix-domain listening sockets: `postgres.unix_socket_dir` (the file
//! `.s.PGSQL.<port>`, so `psql -h DIR -p PORT` finds it) and
//! `mysql.unix_socket` (the MariaDB clients' `--socket=PATH`).
//!
//! At start a stale socket file (one nobody accepts on, left by a process
//! that died) is removed; a live one, or a path that is not a socket, stops
//! start-up instead. The file is made mode 0777 (as PgBouncer's default
//! `unix_socket_mode`): who may connect is decided by the directory's
//! permissions and by client authentication. When the listener closes
//! (shutdown), the file is removed, unless another process has replaced it
//! meanwhile.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

use super::Accepted;
use crate::addr::PeerAddr;
use crate::io::Stream;

/// Mode of the socket files sqlmux creates.
pub const SOCKET_MODE: u32 = 0o777;

/// A Unix listener and the file it owns.
#[derive(Debug)]
pub struct UnixSocketListener {
    listener: UnixListener,
    /// The TCP port of the same front end, shown for its Unix clients.
    port: u16,
    file: SocketFile,
}

impl UnixSocketListener {
    /// Binds `path` (removing a stale socket file first); `port` is what
    /// SHOW CLIENTS shows as the port of its clients.
    pub fn bind(path: &Path, port: u16) -> io::Result<Self> {
        remove_stale(path)?;
        let listener = UnixListener::bind(path)?;
        let file = SocketFile::new(path.to_path_buf())?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))?;
        Ok(UnixSocketListener {
            listener,
            port,
            file,
        })
    }

    /// The socket file.
    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// Waits for the next connection.
    ///
    /// Cancel safety: cancel-safe (tokio's accept is).
    pub async fn accept(&self) -> io::Result<Accepted> {
        let (stream, _) = self.listener.accept().await?;
        let addr = PeerAddr::Unix { port: self.port };
        Ok(Accepted {
            stream: Stream::Unix(stream),
            peer: addr,
            local: addr,
        })
    }
}

/// Removes `path` if it is a socket nobody accepts on; errors if it is
/// live or not a socket.
fn remove_stale(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("another process is listening on {}", path.display()),
        ));
    }
    tracing::info!(path = %path.display(), "removing stale socket file");
    std::fs::remove_file(path)
}

/// The socket file, removed on drop if it is still the one bound here.
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    fn new(path: PathBuf) -> io::Result<Self> {
        let meta = std::fs::symlink_metadata(&path)?;
        Ok(SocketFile {
            path,
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.dev() == self.dev && m.ino() == self.ino);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sqlmux-unix-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[tokio::test]
    async fn a_stale_file_is_replaced_and_the_file_goes_with_the_listener() {
        let dir = temp_dir("stale");
        let path = dir.join(".s.PGSQL.7000");
        // A socket file whose listener is gone: nobody accepts on it.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let l = UnixSocketListener::bind(&path, 7000).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, SOCKET_MODE);
        let second = UnixSocketListener::bind(&path, 7000).unwrap_err();
        assert_eq!(second.kind(), io::ErrorKind::AddrInUse);
        drop(l);
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_path_that_is_not_a_socket_is_left_alone() {
        let dir = temp_dir("file");
        let path = dir.join("mysql.sock");
        std::fs::write(&path, b"data").unwrap();
        let e = UnixSocketListener::bind(&path, 6033).unwrap_err();
        assert!(e.to_string().contains("not a socket"));
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_replaced_file_is_not_removed() {
        let dir = temp_dir("replaced");
        let path = dir.join("s.sock");
        let l = UnixSocketListener::bind(&path, 1).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"new").unwrap();
        drop(l);
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
