//! Replicas that act as one: requests that only the replica holding a
//! client can serve are forwarded to the other replicas (`[peers]`).
//!
//! Several sqlmux replicas behind one Service each give their clients their
//! own cancel keys. A client's CancelRequest opens a new connection, which
//! the Service may send to any replica. A replica that does not know the
//! key forwards the request to every peer; the one that knows it cancels the
//! query, the others drop it quietly, as PostgreSQL does with unknown keys.
//!
//! # Wire format
//!
//! A peer request travels on the PostgreSQL port in the layout of the
//! untagged first packets (see `sqlmux_protocol::postgres::startup`):
//!
//! ```text
//! len: u32 (counting itself) | code: u32 = 80877856 (1234/6432) | kind: u8 | body
//! kind 1, PostgreSQL cancel: pid: i32 | secret: 4..=256 bytes (as in CancelRequest)
//! kind 2, reserved for MySQL KILL QUERY (connection id and user)
//! ```
//!
//! PostgreSQL's own CancelRequest code is 80877102 (1234/5678); PostgreSQL
//! uses nothing in 1234/5681 and above, so a peer request sent to a real
//! server by mistake is refused as an unsupported protocol version.
//!
//! # Invariants
//!
//! - **No loops.** A replica acts on a peer request locally and never
//!   forwards it again: only a client's own request (a CancelRequest with
//!   an unknown key) is forwarded, and only as a peer request.
//! - **Only peers are heard.** A peer request is honoured only when its
//!   source IP is one of the addresses the receiving replica's own
//!   `[peers]` resolve to at that moment; anything else is dropped.
//! - **Bounded.** Every resolution and every send is limited by
//!   `peers.timeout`, and the sends to all peers run concurrently.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use serde::Deserialize;
use sqlmux_protocol::postgres::startup::PEER_REQUEST_CODE;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Shared;
use crate::config::Dur;

/// Kind byte of a forwarded PostgreSQL cancel.
const KIND_PG_CANCEL: u8 = 1;

/// Default limit for one resolution or one send.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// `[peers]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePeers {
    addresses: Option<Vec<String>>,
    dns: Option<String>,
    port: Option<u16>,
    timeout: Option<Dur>,
}

/// The other replicas, after validation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeersConfig {
    /// `host:port` entries, resolved when used.
    pub addresses: Vec<String>,
    /// A name whose A/AAAA records are all peers (a headless Service).
    pub dns: Option<String>,
    /// Port for the `dns` records: `peers.port`, else the port of
    /// `postgres.listen`.
    pub port: u16,
    /// Limit for one resolution or one send.
    pub timeout: Duration,
}

impl PeersConfig {
    /// True when no peer is configured (nothing is forwarded or accepted).
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty() && self.dns.is_none()
    }
}

/// Validates `[peers]`; errors are (key, message).
pub(crate) fn resolve_config(
    file: FilePeers,
    postgres_listen: &str,
) -> Result<PeersConfig, (String, String)> {
    let addresses = file.addresses.unwrap_or_default();
    for a in &addresses {
        if !is_host_port(a) {
            return Err((
                "addresses".into(),
                format!("{a:?} is not host:port (for example \"sqlmux-1.sqlmux-peers:6432\")"),
            ));
        }
    }
    if file.dns.as_deref().is_some_and(|d| d.trim().is_empty()) {
        return Err(("dns".into(), "must not be empty".into()));
    }
    let listen_port = postgres_listen
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(6432);
    let port = file.port.unwrap_or(listen_port);
    if port == 0 && file.dns.is_some() {
        return Err((
            "port".into(),
            "postgres.listen uses port 0; set peers.port to the port the peers listen on".into(),
        ));
    }
    let timeout = file.timeout.map(|d| d.0).unwrap_or(DEFAULT_TIMEOUT);
    if timeout.is_zero() {
        return Err(("timeout".into(), "must be longer than zero".into()));
    }
    Ok(PeersConfig {
        addresses,
        dns: file.dns,
        port,
        timeout,
    })
}

fn is_host_port(s: &str) -> bool {
    if s.parse::<SocketAddr>().is_ok() {
        return true;
    }
    matches!(s.rsplit_once(':'), Some((h, p)) if !h.is_empty() && !h.contains(':') && p.parse::<u16>().is_ok_and(|p| p != 0))
}

/// Every address the configured peers resolve to now (duplicates removed).
/// A name that does not resolve in time contributes nothing.
pub async fn resolve_addrs(cfg: &PeersConfig) -> Vec<SocketAddr> {
    let mut names: Vec<String> = cfg.addresses.clone();
    if let Some(dns) = &cfg.dns {
        names.push(format!("{dns}:{}", cfg.port));
    }
    let lookups = names.iter().map(|n| async move {
        match tokio::time::timeout(cfg.timeout, tokio::net::lookup_host(n.as_str())).await {
            Ok(Ok(addrs)) => addrs.collect::<Vec<_>>(),
            Ok(Err(e)) => {
                tracing::debug!(peer = %n, error = %e, "peer name does not resolve");
                Vec::new()
            }
            Err(_) => {
                tracing::debug!(peer = %n, "peer name lookup timed out");
                Vec::new()
            }
        }
    });
    let mut all: Vec<SocketAddr> = futures::future::join_all(lookups)
        .await
        .into_iter()
        .flatten()
        .collect();
    all.sort();
    all.dedup();
    all
}

/// What one replica asks the others to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerRequest {
    /// Cancel the query of the PostgreSQL client with this cancel key.
    PgCancel {
        /// Process id from the client's BackendKeyData.
        pid: i32,
        /// Secret key from the client's BackendKeyData.
        secret: Vec<u8>,
    },
}

impl PeerRequest {
    /// Appends the whole packet (length, code, kind, body) to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            PeerRequest::PgCancel { pid, secret } => {
                out.put_u32((4 + 4 + 1 + 4 + secret.len()) as u32);
                out.put_u32(PEER_REQUEST_CODE);
                out.put_u8(KIND_PG_CANCEL);
                out.put_i32(*pid);
                out.put_slice(secret);
            }
        }
    }

    /// Decodes the body after the code; `None` for an unknown kind or a
    /// malformed body.
    pub fn decode(body: &[u8]) -> Option<PeerRequest> {
        let (&kind, rest) = body.split_first()?;
        match kind {
            KIND_PG_CANCEL if (8..=4 + 256).contains(&rest.len()) => Some(PeerRequest::PgCancel {
                pid: i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]),
                secret: rest[4..].to_vec(),
            }),
            _ => None,
        }
    }
}

/// Sends `req` to every peer, concurrently, each within `peers.timeout`,
/// and waits until each peer has closed the connection (it has acted) or
/// the time is up. Does nothing when no peer is configured.
pub async fn broadcast(shared: &Shared, req: &PeerRequest) {
    let cfg = shared.config.load().peers.clone();
    if cfg.is_empty() {
        return;
    }
    let addrs = resolve_addrs(&cfg).await;
    tracing::debug!(peers = addrs.len(), "forwarding request to peers");
    let mut packet = BytesMut::new();
    req.encode(&mut packet);
    let sends = addrs.iter().map(|&addr| {
        let packet = &packet;
        async move {
            match tokio::time::timeout(cfg.timeout, send(addr, packet)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(peer = %addr, error = %e, "peer request failed"),
                Err(_) => tracing::debug!(peer = %addr, "peer request timed out"),
            }
        }
    });
    futures::future::join_all(sends).await;
}

/// One peer request: connect, write, half-close, wait for the peer to close.
async fn send(addr: SocketAddr, packet: &[u8]) -> std::io::Result<()> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(packet).await?;
    tcp.shutdown().await?;
    let mut tmp = [0u8; 64];
    while tcp.read(&mut tmp).await? > 0 {}
    Ok(())
}

/// Serves a peer request that arrived on the PostgreSQL port from `from`:
/// acts on it locally when `from` is a configured peer, never forwards.
pub async fn handle(shared: &Shared, from: SocketAddr, body: &[u8]) {
    let Some(req) = PeerRequest::decode(body) else {
        tracing::debug!(peer = %from, "malformed peer request ignored");
        return;
    };
    if !is_peer(shared, from.ip()).await {
        tracing::warn!(source = %from, "peer request from an address that is not in [peers] ignored");
        return;
    }
    match req {
        PeerRequest::PgCancel { pid, secret } => {
            crate::postgres::cancel_local(shared, pid, &secret).await;
        }
    }
}

/// Whether `ip` is one of the addresses the configured peers resolve to.
async fn is_peer(shared: &Shared, ip: IpAddr) -> bool {
    let cfg = shared.config.load().peers.clone();
    if cfg.is_empty() {
        return false;
    }
    let ip = ip.to_canonical();
    resolve_addrs(&cfg)
        .await
        .iter()
        .any(|a| a.ip().to_canonical() == ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(addresses: &[&str], dns: Option<&str>, port: Option<u16>) -> FilePeers {
        FilePeers {
            addresses: Some(addresses.iter().map(|s| s.to_string()).collect()),
            dns: dns.map(str::to_owned),
            port,
            timeout: None,
        }
    }

    #[test]
    fn pg_cancel_round_trips_through_the_startup_decoder() {
        let req = PeerRequest::PgCancel {
            pid: 0x1234_5678,
            secret: vec![9, 8, 7, 6],
        };
        let mut buf = BytesMut::new();
        req.encode(&mut buf);
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        assert_eq!(len, buf.len());
        match sqlmux_protocol::postgres::startup::decode(&mut buf) {
            Ok(Some(sqlmux_protocol::postgres::startup::StartupPacket::PeerRequest(body))) => {
                assert_eq!(PeerRequest::decode(&body), Some(req));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_kinds_and_short_bodies_are_refused() {
        assert_eq!(PeerRequest::decode(&[]), None);
        assert_eq!(PeerRequest::decode(&[2, 0, 0, 0, 1]), None);
        assert_eq!(PeerRequest::decode(&[1, 0, 0, 0, 1, 2, 3]), None);
    }

    #[test]
    fn dns_port_defaults_to_the_postgres_listen_port() {
        let c = resolve_config(file(&[], Some("sqlmux-peers"), None), "0.0.0.0:7000").unwrap();
        assert_eq!(c.port, 7000);
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        let c =
            resolve_config(file(&[], Some("sqlmux-peers"), Some(6432)), "0.0.0.0:7000").unwrap();
        assert_eq!(c.port, 6432);
        assert!(
            resolve_config(FilePeers::default(), "0.0.0.0:6432")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn bad_entries_name_their_key() {
        let (k, _) = resolve_config(file(&["no-port"], None, None), "0.0.0.0:6432").unwrap_err();
        assert_eq!(k, "addresses");
        let (k, _) = resolve_config(file(&[], Some(" "), None), "0.0.0.0:6432").unwrap_err();
        assert_eq!(k, "dns");
        let (k, _) = resolve_config(file(&[], Some("x"), None), "127.0.0.1:0").unwrap_err();
        assert_eq!(k, "port");
    }

    #[tokio::test]
    async fn addresses_and_dns_resolve_to_all_records() {
        let c = resolve_config(
            file(
                &["127.0.0.1:7001", "127.0.0.1:7001"],
                Some("localhost"),
                Some(7002),
            ),
            "0.0.0.0:6432",
        )
        .unwrap();
        let addrs = resolve_addrs(&c).await;
        assert!(
            addrs.contains(&"127.0.0.1:7001".parse().unwrap()),
            "{addrs:?}"
        );
        assert!(addrs.iter().any(|a| a.port() == 7002), "{addrs:?}");
        assert_eq!(addrs.iter().filter(|a| a.port() == 7001).count(), 1);
    }
}
