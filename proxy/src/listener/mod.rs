//! Listening sockets and accept loops.
//!
//! TCP sockets are opened with socket2 (SO_REUSEADDR, a deep backlog) and
//! handed to tokio; Unix-domain sockets (`postgres.unix_socket_dir`,
//! `mysql.unix_socket`) are in [`unix`]. The accept loop stops when the
//! proxy starts draining (closing a Unix listener removes its file), backs
//! off when the process runs out of file descriptors instead of spinning,
//! and drops connections beyond a hard cap before reading a byte (the
//! per-client limit with a protocol error is enforced at login).

pub mod unix;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol as SockProtocol, SockAddr, Socket, Type};
use tokio::net::TcpListener;

use crate::Shared;
use crate::addr::PeerAddr;
use crate::io::Stream;

/// Opens a listening TCP socket on `addr` (`host:port`).
pub async fn bind(addr: &str) -> io::Result<TcpListener> {
    let mut last_err = None;
    for sa in tokio::net::lookup_host(addr).await? {
        match bind_one(sa) {
            Ok(l) => return Ok(l),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("{addr} resolves to no address"),
        )
    }))
}

fn bind_one(sa: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(sa),
        Type::STREAM,
        Some(SockProtocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&SockAddr::from(sa))?;
    socket.listen(4096)?;
    TcpListener::from_std(socket.into())
}

/// A listening socket of either kind.
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// A Unix-domain socket; the file goes away with it.
    Unix(unix::UnixSocketListener),
}

/// An accepted connection: the stream and both of its ends.
#[derive(Debug)]
pub struct Accepted {
    /// `Stream::Plain` or `Stream::Unix`.
    pub stream: Stream,
    /// The client.
    pub peer: PeerAddr,
    /// Our end (the listener's address, or `unix` and its port).
    pub local: PeerAddr,
}

impl Listener {
    /// Waits for the next connection. TCP connections get TCP_NODELAY.
    ///
    /// Cancel safety: cancel-safe (tokio's accept is).
    pub async fn accept(&self) -> io::Result<Accepted> {
        match self {
            Listener::Tcp(l) => {
                let (tcp, peer) = l.accept().await?;
                let _ = tcp.set_nodelay(true);
                let local = tcp.local_addr().unwrap_or(peer);
                Ok(Accepted {
                    stream: Stream::Plain(tcp),
                    peer: peer.into(),
                    local: local.into(),
                })
            }
            Listener::Unix(l) => l.accept().await,
        }
    }
}

/// Which front end an accept loop serves.
#[derive(Debug, Clone, Copy)]
pub enum Service {
    /// PostgreSQL clients.
    Postgres,
    /// MySQL clients.
    Mysql,
    /// The admin console and HTTP.
    Admin,
}

/// Accepts connections until the proxy drains (PostgreSQL) or until the
/// grace period ends (admin: /readyz must answer 503 while draining, and
/// operators keep their console during a graceful shutdown).
pub async fn accept_loop(shared: Arc<Shared>, listener: Listener, service: Service) {
    let drain = match service {
        Service::Admin => shared.hard.clone(),
        _ => shared.drain.clone(),
    };
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = drain.cancelled() => break,
        };
        match accepted {
            Ok(accepted) => {
                backoff = Duration::from_millis(5);
                spawn_connection(&shared, accepted, service);
            }
            Err(e) if is_transient(&e) => {
                tracing::debug!(error = %e, "accept failed; retrying");
            }
            Err(e) => {
                // Out of file descriptors or memory: wait instead of spinning.
                tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    tracing::info!(service = ?service, "listener closed");
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

fn spawn_connection(shared: &Arc<Shared>, accepted: Accepted, service: Service) {
    if !matches!(service, Service::Admin) {
        let cap = shared.config.load().pool.max_client_connections + 256;
        if shared.clients.len() >= cap {
            // Far beyond the limit: do not even read the first packet.
            drop(accepted);
            return;
        }
    }
    let shared2 = shared.clone();
    match service {
        Service::Postgres => shared
            .tasks
            .spawn(async move { crate::postgres::handle_client(shared2, accepted).await }),
        Service::Mysql => shared
            .tasks
            .spawn(async move { crate::mysql::handle_client(shared2, accepted).await }),
        Service::Admin => {
            // The admin port listens on TCP only.
            let (Stream::Plain(tcp), PeerAddr::Tcp(peer)) = (accepted.stream, accepted.peer) else {
                return;
            };
            shared
                .tasks
                .spawn(async move { crate::admin::handle_connection(shared2, tcp, peer).await })
        }
    };
}
