//! Replicas that act as one: requests that only the replica holding a
//! client can serve are forwarded to the other replicas (`[peers]`).
//!
//! Several sqlmux replicas behind one Service each give their clients their
//! own cancel keys. A client's CancelRequest opens a new connection, which
//! the Service may send to any replica. A replica that does not know the
//! key forwards the request to every peer; the one that knows it cancels the
//! query, the others drop it quietly, as PostgreSQL does with unknown keys.
//! A MySQL `KILL [QUERY] n` (or COM_PROCESS_KILL) for a connection id no
//! client of this replica holds travels the same way; there the answer
//! matters, because the client gets OK or "unknown thread id".
//!
//! # Wire format
//!
//! A peer request travels on the PostgreSQL port in the layout of the
//! untagged first packets (see `sqlmux_protocol::postgres::startup`):
//!
//! ```text
//! len: u32 (counting itself) | code: u32 = 80877856 (1234/6432) | kind: u8 | body
//! kind 1, PostgreSQL cancel: pid: i32 | secret: 4..=256 bytes (as in CancelRequest)
//! kind 2, MySQL kill: connection id: u32 | flags: u8 (bit 0: QUERY only) | user: 0..=256 bytes UTF-8
//! ```
//!
//! The receiver closes the connection when it is done. For a PostgreSQL
//! cancel it writes nothing, as a PostgreSQL server answers nothing to a
//! CancelRequest. For a MySQL kill it first writes one byte: 1 when it
//! stopped the client's statement (or session), 0 when it has no client
//! with that id and user. A sender reads a missing byte as 0.
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
/// Kind byte of a forwarded MySQL kill.
const KIND_MYSQL_KILL: u8 = 2;
/// Flag bit of a MySQL kill: stop the statement only (`KILL QUERY`).
const FLAG_QUERY_ONLY: u8 = 1;
/// Longest user name a MySQL kill carries.
const MAX_USER_LEN: usize = 256;
/// Reply byte: the receiver acted on the request.
const REPLY_ACTED: u8 = 1;
/// Reply byte: the receiver has no such client.
const REPLY_NOT_HERE: u8 = 0;

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
    /// Stop the statement (or the session) of the MySQL client with this
    /// connection id, if it is logged in as `user`.
    MysqlKill {
        /// The connection id the client got in its greeting.
        connection_id: u32,
        /// The user the requesting client is logged in as.
        user: String,
        /// True for `KILL QUERY`, false for `KILL [CONNECTION]`.
        query_only: bool,
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
            PeerRequest::MysqlKill {
                connection_id,
                user,
                query_only,
            } => {
                out.put_u32((4 + 4 + 1 + 4 + 1 + user.len()) as u32);
                out.put_u32(PEER_REQUEST_CODE);
                out.put_u8(KIND_MYSQL_KILL);
                out.put_u32(*connection_id);
                out.put_u8(if *query_only { FLAG_QUERY_ONLY } else { 0 });
                out.put_slice(user.as_bytes());
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
            KIND_MYSQL_KILL => decode_mysql_kill(rest),
            _ => None,
        }
    }

    /// Whether the sender waits for a reply byte (see the module docs).
    fn expects_reply(&self) -> bool {
        matches!(self, PeerRequest::MysqlKill { .. })
    }
}

/// The body of a MySQL kill after the kind byte; `None` when it is too
/// short, has unknown flags, or a user name too long or not UTF-8.
fn decode_mysql_kill(rest: &[u8]) -> Option<PeerRequest> {
    let (id, rest) = rest.split_first_chunk::<4>()?;
    let (&flags, user) = rest.split_first()?;
    if flags & !FLAG_QUERY_ONLY != 0 || user.len() > MAX_USER_LEN {
        return None;
    }
    Some(PeerRequest::MysqlKill {
        connection_id: u32::from_be_bytes(*id),
        user: std::str::from_utf8(user).ok()?.to_owned(),
        query_only: flags & FLAG_QUERY_ONLY != 0,
    })
}

/// Sends `req` to every peer, concurrently, each within `peers.timeout`,
/// and waits until each peer has closed the connection (it has acted) or
/// the time is up. Returns true when some peer replied that it acted
/// (only MySQL kills are answered); false at once when no peer is
/// configured.
pub async fn broadcast(shared: &Shared, req: &PeerRequest) -> bool {
    let cfg = shared.config.load().peers.clone();
    if cfg.is_empty() {
        return false;
    }
    let addrs = resolve_addrs(&cfg).await;
    tracing::debug!(peers = addrs.len(), "forwarding request to peers");
    let mut packet = BytesMut::new();
    req.encode(&mut packet);
    let sends = addrs.iter().map(|&addr| {
        let packet = &packet;
        async move {
            match tokio::time::timeout(cfg.timeout, send(addr, packet)).await {
                Ok(Ok(acted)) => acted,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %addr, error = %e, "peer request failed");
                    false
                }
                Err(_) => {
                    tracing::debug!(peer = %addr, "peer request timed out");
                    false
                }
            }
        }
    });
    let acted = futures::future::join_all(sends).await;
    acted.contains(&true)
}

/// One peer request: connect, write, half-close, wait for the peer to
/// close. True when the peer's first reply byte says it acted.
async fn send(addr: SocketAddr, packet: &[u8]) -> std::io::Result<bool> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(packet).await?;
    tcp.shutdown().await?;
    let mut reply = Vec::new();
    let mut tmp = [0u8; 64];
    loop {
        let n = tcp.read(&mut tmp).await?;
        if n == 0 {
            return Ok(reply.first() == Some(&REPLY_ACTED));
        }
        if reply.is_empty() {
            reply.extend_from_slice(&tmp[..n]);
        }
    }
}

/// Serves a peer request that arrived on the PostgreSQL port from `from`:
/// acts on it locally when `from` is a configured peer, never forwards.
/// Returns the byte to write back before closing, if the request kind
/// takes an answer and `from` is a peer; nothing is written otherwise.
pub async fn handle(shared: &Shared, from: SocketAddr, body: &[u8]) -> Option<u8> {
    let Some(req) = PeerRequest::decode(body) else {
        tracing::debug!(peer = %from, "malformed peer request ignored");
        return None;
    };
    if !is_peer(shared, from.ip()).await {
        tracing::warn!(source = %from, "peer request from an address that is not in [peers] ignored");
        return None;
    }
    let acted = match &req {
        PeerRequest::PgCancel { pid, secret } => {
            crate::postgres::cancel_local(shared, *pid, secret).await
        }
        PeerRequest::MysqlKill {
            connection_id,
            user,
            query_only,
        } => crate::mysql::kill::kill_local(shared, *connection_id, user, *query_only).await,
    };
    req.expects_reply()
        .then_some(if acted { REPLY_ACTED } else { REPLY_NOT_HERE })
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
    fn mysql_kill_round_trips_through_the_startup_decoder() {
        for query_only in [true, false] {
            let req = PeerRequest::MysqlKill {
                connection_id: 0xfedc_ba98,
                user: "app_ü".into(),
                query_only,
            };
            let mut buf = BytesMut::new();
            req.encode(&mut buf);
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            assert_eq!(len, buf.len());
            assert!(req.expects_reply());
            match sqlmux_protocol::postgres::startup::decode(&mut buf) {
                Ok(Some(sqlmux_protocol::postgres::startup::StartupPacket::PeerRequest(body))) => {
                    assert_eq!(body[..6], [2, 0xfe, 0xdc, 0xba, 0x98, query_only as u8]);
                    assert_eq!(PeerRequest::decode(&body), Some(req));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn malformed_mysql_kills_are_refused() {
        // Id cut short, flags missing.
        assert_eq!(PeerRequest::decode(&[2, 0, 0, 1]), None);
        assert_eq!(PeerRequest::decode(&[2, 0, 0, 0, 1]), None);
        // Unknown flag bits.
        assert_eq!(PeerRequest::decode(&[2, 0, 0, 0, 1, 2, b'a']), None);
        assert_eq!(PeerRequest::decode(&[2, 0, 0, 0, 1, 0x81, b'a']), None);
        // User not UTF-8, or too long.
        assert_eq!(PeerRequest::decode(&[2, 0, 0, 0, 1, 1, 0xff, 0xfe]), None);
        let mut long = vec![2, 0, 0, 0, 1, 1];
        long.extend(std::iter::repeat_n(b'u', MAX_USER_LEN + 1));
        assert_eq!(PeerRequest::decode(&long), None);
        long.pop();
        assert!(PeerRequest::decode(&long).is_some());
        // An empty user is well-formed.
        assert_eq!(
            PeerRequest::decode(&[2, 0, 0, 0, 7, 0]),
            Some(PeerRequest::MysqlKill {
                connection_id: 7,
                user: String::new(),
                query_only: false
            })
        );
    }

    #[test]
    fn only_mysql_kills_take_an_answer() {
        let cancel = PeerRequest::PgCancel {
            pid: 1,
            secret: vec![0; 4],
        };
        assert!(!cancel.expects_reply());
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
