//! The admin port: a psql console and HTTP (/metrics, /healthz, /readyz)
//! on one listener.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;

use crate::Shared;

/// Serves one admin connection (console or HTTP, sniffed from the first
/// bytes).
pub async fn handle_connection(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr) {
    let _ = (shared, tcp, peer);
}

/// Starts the admin layer's background tasks (statistics averages,
/// metrics upkeep). Called once by `Proxy::start`.
pub fn start_background(shared: &Arc<Shared>) {
    let _ = shared;
}
