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

    /// Writes and flushes everything queued in `out`.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.stream.write_all_clear(&mut self.out).await
    }
}
