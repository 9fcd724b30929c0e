//! A socket with its read and write buffers, read and written in whole
//! MySQL packets: what the login phases (client and server leg) and the
//! commands sqlmux sends on its own use. The forwarding path walks the
//! buffers itself (see [`super::pump`]).

use std::io;

use bytes::BytesMut;
use sqlmux_protocol::mysql::packet::{self, PacketError};
use thiserror::Error;

use crate::io::Stream;

/// Why a packet could not be read.
#[derive(Debug, Error)]
pub enum ReadError {
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The peer closed the connection.
    #[error("the connection was closed")]
    Closed,
    /// The bytes are not MySQL packets, or one is too long.
    #[error("{0}")]
    Packet(#[from] PacketError),
}

/// A socket plus buffers.
#[derive(Debug)]
pub struct PacketConn {
    /// The socket.
    pub stream: Stream,
    /// Bytes read and not yet processed.
    pub buf: BytesMut,
    /// Bytes to write at the next flush.
    pub out: BytesMut,
}

impl PacketConn {
    /// Wraps a stream with empty buffers.
    pub fn new(stream: Stream) -> PacketConn {
        PacketConn {
            stream,
            buf: BytesMut::with_capacity(1024),
            out: BytesMut::with_capacity(512),
        }
    }

    /// Reads one whole logical packet (split packets joined): its first
    /// sequence id and payload.
    pub async fn read_packet(&mut self, max: usize) -> Result<(u8, BytesMut), ReadError> {
        loop {
            if let Some((l, payload)) = packet::read_logical(&mut self.buf, max)? {
                return Ok((l.first_seq, payload));
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(ReadError::Closed);
            }
        }
    }

    /// Reads one packet like [`read_packet`](Self::read_packet), but
    /// takes from the socket only the bytes of that packet (header, then
    /// payload, with exact reads). For the client's first packet after the
    /// greeting: a client that sends an SSL request starts its TLS
    /// handshake right after it, without waiting for an answer, so the
    /// ClientHello may arrive in the same segment and must stay in the
    /// socket for the TLS acceptor.
    pub async fn read_packet_exact(&mut self, max: usize) -> Result<(u8, BytesMut), ReadError> {
        if self.buf.is_empty() {
            let mut head = [0u8; packet::HEADER_LEN];
            self.read_exact(&mut head).await?;
            self.buf.extend_from_slice(&head);
            let len = u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize;
            if len <= max {
                let start = self.buf.len();
                self.buf.resize(start + len, 0);
                let (_, payload) = self.buf.split_at_mut(start);
                read_exact(&mut self.stream, payload).await?;
            }
        }
        self.read_packet(max).await
    }

    async fn read_exact(&mut self, out: &mut [u8]) -> Result<(), ReadError> {
        read_exact(&mut self.stream, out).await
    }

    /// Writes and flushes everything queued in `out`.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.stream.write_all_clear(&mut self.out).await
    }
}

/// `read_exact` with a closed connection reported as [`ReadError::Closed`].
async fn read_exact(stream: &mut Stream, out: &mut [u8]) -> Result<(), ReadError> {
    use tokio::io::AsyncReadExt;
    match stream.read_exact(out).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(ReadError::Closed),
        Err(e) => Err(ReadError::Io(e)),
    }
}
