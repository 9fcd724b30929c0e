//! A fault-injecting TCP relay between sqlmux and a test server.
//!
//! Tests point sqlmux at [`Relay::addr`] instead of the server and switch
//! the relay's [`Mode`] while traffic flows, to play a network path that
//! fails in the ways a real one does:
//!
//! - [`Mode::Pass`]: bytes flow both ways unchanged.
//! - [`Mode::Delay`]: every chunk waits before it is forwarded.
//! - [`Mode::Drop`]: every open connection is reset (RST), new ones are
//!   accepted and reset at once — a firewall that rejects.
//! - [`Mode::BlackHole`]: new connections are accepted and never forwarded,
//!   open ones stop forwarding (nothing is read, nothing is closed) — a path
//!   that silently swallows packets.
//!
//! Switching back to `Pass` restores forwarding on connections that were
//! held (not on reset ones) and for new connections.
//!
//! # Concurrency
//!
//! The relay runs as tasks on the calling tokio runtime; [`Relay::set_mode`]
//! may be called from any thread. Dropping the relay stops accepting and
//! resets every connection it holds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the relay does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward unchanged.
    Pass,
    /// Forward every chunk after this delay.
    Delay(Duration),
    /// Reset every connection, open and new.
    Drop,
    /// Accept, never forward, never close.
    BlackHole,
}

/// A relay listening on a free port of 127.0.0.1 in front of `upstream`.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Starts a relay in [`Mode::Pass`] in front of `upstream`.
    ///
    /// # Panics
    ///
    /// When no port can be bound; outside a tokio runtime.
    pub async fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind((crate::HOST, 0))
            .await
            .expect("binding the relay's port");
        let addr = listener.local_addr().expect("relay address");
        let (mode, rx) = watch::channel(Mode::Pass);
        let accepted = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(accept_loop(listener, upstream, rx, accepted.clone()));
        Relay {
            addr,
            mode,
            accepted,
            task,
        }
    }

    /// Where sqlmux should connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The relay's port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Switches the mode; open connections follow at once.
    pub fn set_mode(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.mode.send_replace(Mode::Drop);
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    mode: watch::Receiver<Mode>,
    accepted: Arc<AtomicU64>,
) {
    while let Ok((client, _)) = listener.accept().await {
        accepted.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(serve(client, upstream, mode.clone()));
    }
}

/// One relayed connection, from accept to close.
async fn serve(client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Mode>) {
    // A new connection in black-hole mode waits, unforwarded, for the path
    // to come back (or to be dropped).
    if !forwarding(&mut mode).await {
        reset(client);
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        reset(client);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client, mut server) = (client, server);
    let (mut cr, mut cw) = client.split();
    let (mut sr, mut sw) = server.split();
    let (a, b) = tokio::join!(
        pump(&mut cr, &mut sw, mode.clone()),
        pump(&mut sr, &mut cw, mode.clone())
    );
    if a == End::Reset || b == End::Reset {
        reset(client);
        reset(server);
    }
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    /// EOF or an error: the other side was closed in turn.
    Closed,
    /// The mode switched to [`Mode::Drop`].
    Reset,
}

/// Forwards one direction until EOF, an error, or [`Mode::Drop`].
async fn pump(
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
    mut mode: watch::Receiver<Mode>,
) -> End {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // Hold (read nothing) while black-holed; leave on Drop.
        if !forwarding(&mut mode).await {
            return End::Reset;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return End::Closed;
                }
                Ok(n) => n,
            },
            _ = mode.changed() => continue,
        };
        let delay = match *mode.borrow() {
            Mode::Delay(d) => Some(d),
            _ => None,
        };
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        // Bytes read before a switch to black-hole wait for the path too.
        if !forwarding(&mut mode).await {
            return End::Reset;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return End::Closed;
        }
    }
}

/// Waits while the path is black-holed; false when it is (or becomes)
/// dropped.
async fn forwarding(mode: &mut watch::Receiver<Mode>) -> bool {
    match mode.wait_for(|m| *m != Mode::BlackHole).await {
        Ok(m) => *m != Mode::Drop,
        Err(_) => false,
    }
}

/// Closes with RST instead of FIN (SO_LINGER 0).
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}
