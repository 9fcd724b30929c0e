//! The forwarding path: relays one server response to the client, packet
//! by packet, as bytes.
//!
//! Per physical packet the pump reads the 4-byte header and feeds the first
//! bytes of the payload to the [`ResponseTracker`], which says whether the
//! response goes on, waits for the client (LOCAL INFILE data) or is
//! complete. Packets are copied to the client's write buffer unchanged;
//! only an OK packet that carries session state is decoded whole, to learn
//! the variables and schema that follow the client (and, for a client that
//! did not ask for session tracking, re-encoded without that block).
//!
//! Bounded: a packet larger than [`SMALL_PACKET`] is streamed in pieces,
//! and the client's buffer is written out at [`FLUSH_AT`] bytes; while the
//! client does not read, the pump does not read the server (backpressure).
//! While waiting for the server the pump watches the client socket: a
//! client that disconnects mid-response ends the pump at once.

use bytes::Buf;
use sqlmux_protocol::mysql::caps::CLIENT_SESSION_TRACK;
use sqlmux_protocol::mysql::packet::{self, HEADER_LEN};
use sqlmux_protocol::mysql::response::OkPacket;
use sqlmux_protocol::mysql::response_state::{Completion, PEEK_LEN, Progress, ResponseTracker};
use thiserror::Error;

use super::conn::PacketConn;
use super::server::MyServer;
use super::session_state::SessionVars;

/// Packets up to this size are buffered whole before they are forwarded.
pub const SMALL_PACKET: usize = 64 * 1024;
/// Client write buffer size that triggers a write.
pub const FLUSH_AT: usize = 32 * 1024;

/// Why a response could not be relayed to its end.
#[derive(Debug, Error)]
pub enum PumpError {
    /// The client closed its connection or a write to it failed.
    #[error("the client went away")]
    ClientGone,
    /// The server closed its connection or a read failed.
    #[error("{0}")]
    ServerGone(String),
    /// The server's packets do not follow the protocol.
    #[error("{0}")]
    Protocol(String),
}

/// The client end of a relay.
pub struct ClientEnd<'a> {
    /// The client connection.
    pub conn: &'a mut PacketConn,
    /// Its negotiated capability flags.
    pub caps: u32,
    /// Its session state, updated from the OK packets it receives.
    pub vars: &'a mut SessionVars,
    /// Bytes written to it (for SHOW STATS).
    pub bytes_sent: u64,
}

/// Relays the server's response to the command just sent until `tracker`
/// says it is complete; returns how it ended.
pub async fn relay(
    server: &mut MyServer,
    client: &mut ClientEnd<'_>,
    tracker: &mut ResponseTracker,
) -> Result<Completion, PumpError> {
    let mut skip = 0usize;
    let mut done = None;
    loop {
        while done.is_none() || skip > 0 {
            if skip > 0 {
                let n = skip.min(server.buf.len());
                if n == 0 {
                    break;
                }
                client.conn.out.extend_from_slice(&server.buf[..n]);
                server.buf.advance(n);
                skip -= n;
                continue;
            }
            let Some(step) = next_packet(server, client, tracker)? else {
                break;
            };
            skip = step.skip;
            match step.progress {
                Progress::More => {}
                Progress::Done(c) => done = Some(c),
                Progress::ClientTurn => {
                    flush(client).await?;
                    client_data(server, client, tracker).await?;
                }
            }
            if client.conn.out.len() >= FLUSH_AT {
                flush(client).await?;
            }
        }
        if let Some(c) = done
            && skip == 0
        {
            server.owed = false;
            flush(client).await?;
            return Ok(c);
        }
        flush(client).await?;
        read_server(server, client).await?;
    }
}

/// One server packet handed on.
struct Step {
    progress: Progress,
    /// Payload bytes of this packet still to copy as they arrive.
    skip: usize,
}

/// Handles the packet at the start of the server buffer, if enough of it
/// is there.
fn next_packet(
    server: &mut MyServer,
    client: &mut ClientEnd<'_>,
    tracker: &mut ResponseTracker,
) -> Result<Option<Step>, PumpError> {
    let Some(h) = packet::peek_header(&server.buf) else {
        return Ok(None);
    };
    let len = h.len as usize;
    let plen = h.packet_len();
    let small = len <= SMALL_PACKET;
    let need = if small { plen } else { HEADER_LEN + PEEK_LEN };
    if server.buf.len() < need {
        return Ok(None);
    }
    let peek = &server.buf[HEADER_LEN..need.min(HEADER_LEN + len)];
    let progress = tracker
        .server_packet(h, peek)
        .map_err(|e| PumpError::Protocol(e.to_string()))?;
    if tracker.state_changed() && small {
        let payload = &server.buf[HEADER_LEN..plen];
        if let Ok(ok) = OkPacket::decode(payload, server.caps) {
            server.session.apply(&ok);
            client.vars.apply(&ok);
            if client.caps & CLIENT_SESSION_TRACK == 0 {
                ok.without_session_state()
                    .encode(&mut client.conn.out, h.seq, client.caps);
                server.buf.advance(plen);
                return Ok(Some(Step { progress, skip: 0 }));
            }
        }
    }
    let take = plen.min(server.buf.len());
    client.conn.out.extend_from_slice(&server.buf[..take]);
    server.buf.advance(take);
    Ok(Some(Step {
        progress,
        skip: plen - take,
    }))
}

/// Writes the client's buffer out.
async fn flush(client: &mut ClientEnd<'_>) -> Result<(), PumpError> {
    if client.conn.out.is_empty() {
        return Ok(());
    }
    client.bytes_sent += client.conn.out.len() as u64;
    client.conn.flush().await.map_err(|_| PumpError::ClientGone)
}

/// Reads more from the server while watching the client for a disconnect;
/// a server silent for `pool.query_timeout` counts as gone.
async fn read_server(server: &mut MyServer, client: &mut ClientEnd<'_>) -> Result<(), PumpError> {
    use crate::pool::PooledServer;
    let limit = server.info().query_timeout();
    if limit.is_zero() {
        return read_server_or_client(server, client).await;
    }
    match tokio::time::timeout(limit, read_server_or_client(server, client)).await {
        Ok(r) => r,
        Err(_) => Err(PumpError::ServerGone(format!(
            "no reply from the server for {} ms (pool.query_timeout); the server connection was closed",
            limit.as_millis()
        ))),
    }
}

async fn read_server_or_client(
    server: &mut MyServer,
    client: &mut ClientEnd<'_>,
) -> Result<(), PumpError> {
    loop {
        tokio::select! {
            r = server.stream.read_buf(&mut server.buf) => {
                return match r {
                    Ok(0) => Err(PumpError::ServerGone("the server closed the connection".into())),
                    Ok(_) => Ok(()),
                    Err(e) => Err(PumpError::ServerGone(e.to_string())),
                };
            }
            r = client.conn.stream.read_buf(&mut client.conn.buf) => {
                // Bytes sent out of turn stay buffered; an end of stream
                // means the client is gone.
                if !matches!(r, Ok(n) if n > 0) {
                    return Err(PumpError::ClientGone);
                }
            }
        }
    }
}

/// LOCAL INFILE: relays the client's file packets to the server until the
/// empty packet that ends them.
async fn client_data(
    server: &mut MyServer,
    client: &mut ClientEnd<'_>,
    tracker: &mut ResponseTracker,
) -> Result<(), PumpError> {
    let mut out = bytes::BytesMut::new();
    loop {
        while let Some((h, _)) = packet::complete_packet(&client.conn.buf) {
            let progress = tracker
                .client_packet(h)
                .map_err(|e| PumpError::Protocol(e.to_string()))?;
            out.extend_from_slice(&client.conn.buf[..h.packet_len()]);
            client.conn.buf.advance(h.packet_len());
            if progress == Progress::More {
                return server
                    .stream
                    .write_all_clear(&mut out)
                    .await
                    .map_err(|e| PumpError::ServerGone(e.to_string()));
            }
        }
        if !out.is_empty() {
            server
                .stream
                .write_all_clear(&mut out)
                .await
                .map_err(|e| PumpError::ServerGone(e.to_string()))?;
        }
        match client.conn.stream.read_buf(&mut client.conn.buf).await {
            Ok(n) if n > 0 => {}
            _ => return Err(PumpError::ClientGone),
        }
    }
}
