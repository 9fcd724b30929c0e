//! Addresses of both kinds of socket, and the Unix-domain socket paths of
//! both protocols.
//!
//! Clients reach sqlmux over TCP or a Unix socket (`postgres.unix_socket_dir`,
//! `mysql.unix_socket`), and sqlmux reaches a server over TCP or a Unix
//! socket (`host = "/path"` on a database entry). [`PeerAddr`] is what the
//! admin port, the insight layer and the logs show for either: a Unix peer
//! has no address of its own, so it shows as `unix` with the port of the
//! listener (or of the server), as PgBouncer shows it.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::{TcpStream, UnixStream};

use crate::config::Protocol;
use crate::pool::ServerInfo;

/// Longest path a Unix socket address holds (`sun_path` less its NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// The address of one end of a client or server connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAddr {
    /// A TCP endpoint.
    Tcp(SocketAddr),
    /// A Unix-domain socket; `port` is the TCP port of the same listener
    /// (clients) or the configured port of the server (servers).
    Unix {
        /// The port shown in SHOW CLIENTS / SHOW SERVERS.
        port: u16,
    },
}

impl PeerAddr {
    /// The host part as SHOW CLIENTS shows it: the IP, or `unix`.
    pub fn host(&self) -> String {
        match self {
            PeerAddr::Tcp(a) => a.ip().to_string(),
            PeerAddr::Unix { .. } => "unix".to_owned(),
        }
    }

    /// The port part.
    pub fn port(&self) -> u16 {
        match self {
            PeerAddr::Tcp(a) => a.port(),
            PeerAddr::Unix { port } => *port,
        }
    }

    /// The IP address failed logins are counted under; clients of a Unix
    /// socket all count as one (0.0.0.0).
    pub fn ip(&self) -> std::net::IpAddr {
        match self {
            PeerAddr::Tcp(a) => a.ip(),
            PeerAddr::Unix { .. } => std::net::Ipv4Addr::UNSPECIFIED.into(),
        }
    }

    /// True for a Unix-domain socket.
    pub fn is_unix(&self) -> bool {
        matches!(self, PeerAddr::Unix { .. })
    }
}

impl From<SocketAddr> for PeerAddr {
    fn from(a: SocketAddr) -> Self {
        PeerAddr::Tcp(a)
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Tcp(a) => a.fmt(f),
            PeerAddr::Unix { port } => write!(f, "unix:{port}"),
        }
    }
}

/// True when a database entry's `host` names a Unix socket (it starts with
/// `/`, as libpq and the MariaDB clients read it).
pub fn is_unix_host(host: &str) -> bool {
    host.starts_with('/')
}

/// The PostgreSQL socket file for port `port` in directory `dir`
/// (`<dir>/.s.PGSQL.<port>`, where libpq looks for it).
pub fn pg_socket_path(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!(".s.PGSQL.{port}"))
}

/// The socket file a database entry with a Unix `host` connects to:
/// PostgreSQL: a directory holding `.s.PGSQL.<port>`; MySQL: the file.
pub fn server_socket_path(protocol: Protocol, host: &str, port: u16) -> PathBuf {
    match protocol {
        Protocol::Postgres => pg_socket_path(Path::new(host), port),
        Protocol::Mysql => PathBuf::from(host),
    }
}

/// Checks a socket file path from the configuration: absolute and short
/// enough for a Unix socket address.
pub fn check_socket_path(path: &Path) -> Result<(), String> {
    if !path.is_absolute() {
        return Err(format!("{} is not an absolute path", path.display()));
    }
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(format!(
            "socket path {} is {len} bytes; a Unix socket path holds at most {MAX_SOCKET_PATH}",
            path.display()
        ));
    }
    Ok(())
}

/// A connected server socket, before TLS or login.
#[derive(Debug)]
pub enum ServerSocket {
    /// TCP, with TCP_NODELAY and keepalive set.
    Tcp(TcpStream),
    /// A Unix-domain socket (no TCP options apply; TLS is not used).
    Unix(UnixStream),
}

/// What a server connection is opened to: `host:port`, or the socket file
/// when `host` is a path. `target` names it in error messages.
pub fn server_target(protocol: Protocol, host: &str, port: u16) -> String {
    if is_unix_host(host) {
        server_socket_path(protocol, host, port)
            .display()
            .to_string()
    } else {
        format!("{host}:{port}")
    }
}

/// Opens a server connection and records both ends in `info` (and the
/// socket file, which cancel requests use, for a Unix socket).
pub async fn connect_server(
    protocol: Protocol,
    host: &str,
    port: u16,
    info: &ServerInfo,
) -> io::Result<ServerSocket> {
    if is_unix_host(host) {
        let path = server_socket_path(protocol, host, port);
        let s = UnixStream::connect(&path).await?;
        let unix = Some(PeerAddr::Unix { port });
        *info.addr.lock().unwrap_or_else(|e| e.into_inner()) = unix;
        *info.local_addr.lock().unwrap_or_else(|e| e.into_inner()) = unix;
        let _ = info.socket_path.set(path);
        return Ok(ServerSocket::Unix(s));
    }
    let tcp = TcpStream::connect((host, port)).await?;
    let _ = tcp.set_nodelay(true);
    let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(
        &socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(60))
            .with_interval(Duration::from_secs(10))
            .with_retries(3),
    );
    *info.addr.lock().unwrap_or_else(|e| e.into_inner()) = tcp.peer_addr().ok().map(Into::into);
    *info.local_addr.lock().unwrap_or_else(|e| e.into_inner()) =
        tcp.local_addr().ok().map(Into::into);
    Ok(ServerSocket::Tcp(tcp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_peers_show_as_unix_with_their_port() {
        let u = PeerAddr::Unix { port: 6432 };
        assert_eq!(
            (u.host(), u.port(), u.to_string()),
            ("unix".into(), 6432, "unix:6432".into())
        );
        let t = PeerAddr::from(SocketAddr::from(([10, 0, 0, 1], 5000)));
        assert_eq!(
            (t.host(), t.port(), t.is_unix()),
            ("10.0.0.1".into(), 5000, false)
        );
    }

    #[test]
    fn socket_paths_follow_libpq_and_mariadb() {
        let pg = server_socket_path(Protocol::Postgres, "/run/pg", 5433);
        assert_eq!(pg, Path::new("/run/pg/.s.PGSQL.5433"));
        let my = server_socket_path(Protocol::Mysql, "/run/my.sock", 3306);
        assert_eq!(my, Path::new("/run/my.sock"));
        assert_eq!(server_target(Protocol::Postgres, "db", 5432), "db:5432");
    }

    #[test]
    fn relative_and_overlong_socket_paths_are_refused() {
        assert!(check_socket_path(Path::new("run/x.sock")).is_err());
        let long = format!("/{}", "d".repeat(MAX_SOCKET_PATH));
        assert!(
            check_socket_path(Path::new(&long))
                .unwrap_err()
                .contains("at most 107")
        );
        assert!(check_socket_path(Path::new("/run/sqlmux/.s.PGSQL.6432")).is_ok());
    }

    #[test]
    fn socket_keys_are_checked_when_the_configuration_is_read() {
        use crate::config::Config;
        let e = Config::parse("[postgres]\nunix_socket_dir = \"run\"\n").unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("postgres.unix_socket_dir") && e.contains("absolute"),
            "{e}"
        );
        let cfg = Config::parse("[mysql]\nunix_socket = \"/run/my.sock\"\n").unwrap();
        assert!(
            cfg.mysql.enabled,
            "a MySQL socket alone turns the listener on"
        );
        assert_eq!(
            cfg.mysql.unix_socket.as_deref(),
            Some(Path::new("/run/my.sock"))
        );
        let long = format!("/{}", "d".repeat(100));
        let text = format!("[[databases]]\nname = \"a\"\nhost = \"{long}\"\n");
        let e = Config::parse(&text).unwrap_err().to_string();
        assert!(e.contains("host") && e.contains("at most 107"), "{e}");
    }
}
