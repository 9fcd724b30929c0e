//! The admin port: a psql console and HTTP (/metrics, /healthz, /readyz)
//! on one listener (`admin.listen`).
//!
//! # Where it sits
//!
//! The admin accept loop hands every connection to [`handle_connection`],
//! which peeks at the first bytes: a PostgreSQL startup packet (or
//! SSLRequest) begins with a zero byte, an HTTP request with a method
//! name. The console ([`console`]) is served by pgwire; HTTP ([`http`]) by
//! a few lines of our own. Both only read shared state (pools, clients,
//! insight, configuration) except for the control commands ([`control`]),
//! which act on pools and clients the way PgBouncer's do.
//!
//! Per-proxy admin state ([`AdminState`]: the Prometheus recorder, SHOW
//! STATS averages) lives in `Shared::admin`, created by
//! [`start_background`], which also starts the two timers (averages every
//! `general.stats_period`, metrics upkeep every few seconds).
//!
//! # Map
//!
//! - [`command`]: the command enum and its parser.
//! - [`show`]: PgBouncer-compatible SHOW commands; [`stats`]: SHOW STATS;
//!   [`compat`]: PgBouncer's setting names in SHOW CONFIG.
//! - [`insight`]: SHOW STATEMENTS / HISTOGRAM / N_PLUS_ONE / LEAKS.
//! - [`control`]: PAUSE, RESUME, RECONNECT, KILL, RELOAD, SHUTDOWN.
//! - [`table`]: typed result tables and time formatting.
//! - [`metrics`]: the Prometheus exposition.
//! - [`page`], [`api`], [`webauth`]: the web page, its JSON API and their
//!   basic auth.
//!
//! # Shutdown
//!
//! The admin listener stays open while the proxy drains, so /readyz can
//! answer 503 and operators keep their console; every admin connection is
//! closed when the grace period ends (`Shared::hard`).

pub mod api;
pub mod command;
pub mod compat;
pub mod console;
pub mod control;
pub mod http;
pub mod insight;
pub mod metrics;
pub mod page;
pub mod show;
pub mod stats;
pub mod table;
pub mod webauth;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;

use crate::Shared;
use stats::{AverageTable, Averages};

/// How long a new connection may take to send its first bytes.
const SNIFF_TIMEOUT: Duration = Duration::from_secs(10);

/// Per-proxy state of the admin layer, reachable as `Shared::admin`.
#[derive(Debug)]
pub struct AdminState {
    metrics: metrics::Metrics,
    averages: Mutex<AverageTable>,
    web_auth: webauth::Cache,
}

impl AdminState {
    fn new() -> AdminState {
        AdminState {
            metrics: metrics::Metrics::new(),
            averages: Mutex::new(AverageTable::default()),
            web_auth: webauth::Cache::default(),
        }
    }

    /// SHOW STATS averages of the last complete `stats_period`, per
    /// database.
    pub fn averages(&self) -> HashMap<String, Averages> {
        self.averages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_database
            .clone()
    }

    /// Averages over all databases (SHOW TOTALS).
    pub fn total_averages(&self) -> Averages {
        self.averages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .total
    }

    fn set_averages(&self, t: AverageTable) {
        *self.averages.lock().unwrap_or_else(|e| e.into_inner()) = t;
    }
}

/// The admin state of a proxy, created on first use.
fn state(shared: &Shared) -> Arc<AdminState> {
    shared
        .admin
        .get_or_init(|| Arc::new(AdminState::new()))
        .clone()
}

/// What the first bytes of a connection say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Console,
    Http,
    /// A TLS ClientHello: HTTPS when `admin.tls` is set.
    Tls,
    Unknown,
}

/// Classifies the first bytes seen so far; `None` means "need more".
fn sniff(bytes: &[u8]) -> Option<Kind> {
    match bytes.first()? {
        // Startup packets, SSLRequest and GSSENCRequest start with a
        // big-endian length below 16 MiB; 0x16 is a TLS ClientHello.
        0 => Some(Kind::Console),
        0x16 => Some(Kind::Tls),
        b'A'..=b'Z' => {
            if bytes.len() < 4 {
                // "GET " or "HEAD" need four bytes to be told apart.
                return None;
            }
            Some(Kind::Http)
        }
        _ => Some(Kind::Unknown),
    }
}

/// Serves one admin connection (console or HTTP, sniffed from the first
/// bytes) until it closes or the proxy's grace period ends.
pub async fn handle_connection(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    let admin = state(&shared);
    let kind = match tokio::time::timeout(SNIFF_TIMEOUT, peek_kind(&tcp)).await {
        Ok(Some(k)) => k,
        _ => return,
    };
    let hard = shared.hard.clone();
    match kind {
        Kind::Console => {
            tokio::select! {
                _ = console::serve(shared, admin, tcp) => {}
                _ = hard.cancelled() => {}
            }
        }
        Kind::Http => {
            tokio::select! {
                _ = http::serve(shared, admin, tcp, false) => {}
                _ = hard.cancelled() => {}
            }
        }
        Kind::Tls => {
            let Some(acceptor) = (**shared.admin_tls.load()).clone() else {
                tracing::debug!(peer = %peer, "admin port: TLS without admin.tls; closing");
                return;
            };
            let serve = async move {
                match tokio::time::timeout(SNIFF_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => http::serve(shared, admin, tls, true).await,
                    _ => tracing::debug!(peer = %peer, "admin port: TLS handshake failed"),
                }
            };
            tokio::select! {
                _ = serve => {}
                _ = hard.cancelled() => {}
            }
        }
        Kind::Unknown => {
            tracing::debug!(peer = %peer, "admin port: neither PostgreSQL nor HTTP; closing");
        }
    }
}

/// Peeks until the connection can be classified; `None` at EOF.
async fn peek_kind(tcp: &TcpStream) -> Option<Kind> {
    let mut buf = [0u8; 4];
    loop {
        let n = tcp.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        if let Some(k) = sniff(&buf[..n]) {
            return Some(k);
        }
        // Fewer bytes than needed arrived: wait for the rest.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Starts the admin layer's background tasks (statistics averages,
/// metrics upkeep). Called once by `Proxy::start`; both end when the
/// proxy's grace period ends.
pub fn start_background(shared: &Arc<Shared>) {
    let admin = state(shared);
    shared
        .tasks
        .spawn(stats::averages_task(shared.clone(), admin.clone()));
    let hard = shared.hard.clone();
    shared.tasks.spawn(async move {
        let mut tick = tokio::time::interval(metrics::UPKEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => admin.metrics.upkeep(),
                _ = hard.cancelled() => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_tell_console_from_http() {
        assert_eq!(sniff(&[0, 0, 0, 8]), Some(Kind::Console));
        assert_eq!(sniff(&[0]), Some(Kind::Console));
        assert_eq!(sniff(&[0x16, 3, 1]), Some(Kind::Tls));
        assert_eq!(sniff(b"GET "), Some(Kind::Http));
        assert_eq!(sniff(b"HEAD"), Some(Kind::Http));
        assert_eq!(sniff(b"GE"), None);
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(b"\xff\xff"), Some(Kind::Unknown));
    }
}
