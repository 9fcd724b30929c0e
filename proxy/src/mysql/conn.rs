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
        // Spare buffers (see `crate::io::take_buf`): the first read would
        // grow a small one to `io::READ_CHUNK` anyway. A client's go back
        // when its session ends.
        PacketConn {
            stream,
            buf: crate::io::take_buf(),
            out: crate::io::take_buf(),
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

    /// Reads exactly one physical packet straight from the socket, not a
    /// byte more: the client's first packet, which may be an SSL request
    /// followed at once (without waiting for an answer) by its TLS
    /// ClientHello, which must stay in the socket for the TLS handshake.
    /// Packets longer than `max` are refused before they are read.
    pub async fn read_first_packet(&mut self, max: usize) -> Result<(u8, BytesMut), ReadError> {
        use tokio::io::AsyncReadExt;
        let mut head = [0u8; packet::HEADER_LEN];
        self.stream
            .read_exact(&mut head)
            .await
            .map_err(eof_is_closed)?;
        let len = u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize;
        if len > max || len == packet::MAX_CHUNK {
            return Err(ReadError::Packet(PacketError::TooLong { len, max }));
        }
        let mut payload = BytesMut::zeroed(len);
        self.stream
            .read_exact(&mut payload)
            .await
            .map_err(eof_is_closed)?;
        Ok((head[3], payload))
    }

    /// Writes and flushes everything queued in `out`.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.stream.write_all_clear(&mut self.out).await
    }
}

fn eof_is_closed(e: io::Error) -> ReadError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        ReadError::Closed
    } else {
        ReadError::Io(e)
    }
}
