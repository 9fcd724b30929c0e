//! Packet framing: a 3-byte little-endian payload length and a 1-byte
//! sequence id, then the payload.
//!
//! Where this sits in the flow: the proxy's forwarding loop calls
//! [`peek_header`] / [`complete_packet`] on every packet it relays and hands
//! the header (plus the first bytes of the payload) to
//! [`ResponseTracker`](super::response_state::ResponseTracker); it never copies
//! a packet it only forwards.
//!
//! A logical payload of 0xFFFFFF bytes or more travels as several physical
//! packets of exactly [`MAX_CHUNK`] bytes followed by one shorter packet
//! (possibly empty). [`peek_logical`] and [`read_logical`] reassemble them,
//! for the few packets the proxy must read whole (handshake, commands); the
//! payload bound is checked on each header before any body is buffered.
//! [`write_packet`] splits and numbers packets when sqlmux writes its own.
//!
//! Sequence ids start at 0 with each command and count every physical packet
//! in both directions, wrapping at 256. A proxy that answers, drops or
//! injects packets renumbers with [`set_seq`].

use bytes::{BufMut, BytesMut};
use thiserror::Error;

/// Bytes in a packet header.
pub const HEADER_LEN: usize = 4;
/// Largest physical payload; a packet this long is continued by the next one.
pub const MAX_CHUNK: usize = 0xFF_FFFF;

/// A physical packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Payload length of this physical packet (0..=[`MAX_CHUNK`]).
    pub len: u32,
    /// Sequence id.
    pub seq: u8,
}

impl Header {
    /// Header plus payload.
    #[inline]
    pub fn packet_len(&self) -> usize {
        HEADER_LEN + self.len as usize
    }

    /// Whether the next physical packet continues this payload.
    #[inline]
    pub fn is_continued(&self) -> bool {
        self.len as usize == MAX_CHUNK
    }

    /// The four header bytes.
    #[inline]
    pub fn to_bytes(&self) -> [u8; 4] {
        let l = self.len.to_le_bytes();
        [l[0], l[1], l[2], self.seq]
    }
}

/// A framing error: the connection cannot be trusted any more.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PacketError {
    /// The logical payload exceeds the configured limit.
    #[error(
        "MySQL packet of at least {len} bytes exceeds the limit of {max} bytes (max_allowed_packet)"
    )]
    TooLong {
        /// Payload bytes announced so far.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// A continuation packet does not carry the next sequence id.
    #[error("MySQL packet out of order: sequence id {got}, expected {expected}")]
    Sequence {
        /// Sequence id received.
        got: u8,
        /// Sequence id expected.
        expected: u8,
    },
}

/// Reads the header at the start of `buf`; `None` until four bytes are there.
#[inline]
pub fn peek_header(buf: &[u8]) -> Option<Header> {
    let h = buf.get(..HEADER_LEN)?;
    Some(Header {
        len: u32::from_le_bytes([h[0], h[1], h[2], 0]),
        seq: h[3],
    })
}

/// The header and payload of the complete physical packet at the start of
/// `buf`, or `None` when it is not complete yet.
#[inline]
pub fn complete_packet(buf: &[u8]) -> Option<(Header, &[u8])> {
    let h = peek_header(buf)?;
    let payload = buf.get(HEADER_LEN..h.packet_len())?;
    Some((h, payload))
}

/// Where a logical packet lies in a buffer (see [`peek_logical`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Logical {
    /// Sequence id of the first physical packet.
    pub first_seq: u8,
    /// Sequence id of the last physical packet.
    pub last_seq: u8,
    /// Physical packets it spans.
    pub packets: usize,
    /// Payload bytes (headers excluded).
    pub payload_len: usize,
    /// Bytes on the wire (headers included).
    pub wire_len: usize,
}

/// Walks the physical packets of the logical packet at the start of `buf`.
///
/// `Ok(None)` means "need more bytes". Fails as soon as the announced payload
/// exceeds `max_payload`, before the body has to be buffered, or when a
/// continuation skips a sequence id.
pub fn peek_logical(buf: &[u8], max_payload: usize) -> Result<Option<Logical>, PacketError> {
    let mut at = 0;
    let mut payload_len = 0;
    let mut packets = 0;
    let mut first_seq = 0;
    loop {
        let Some(h) = peek_header(&buf[at..]) else {
            return Ok(None);
        };
        if packets == 0 {
            first_seq = h.seq;
        } else if h.seq != first_seq.wrapping_add(packets as u8) {
            let expected = first_seq.wrapping_add(packets as u8);
            return Err(PacketError::Sequence {
                got: h.seq,
                expected,
            });
        }
        payload_len += h.len as usize;
        if payload_len > max_payload {
            return Err(PacketError::TooLong {
                len: payload_len,
                max: max_payload,
            });
        }
        packets += 1;
        at += h.packet_len();
        if buf.len() < at {
            return Ok(None);
        }
        if !h.is_continued() {
            let last_seq = h.seq;
            let wire_len = at;
            return Ok(Some(Logical {
                first_seq,
                last_seq,
                packets,
                payload_len,
                wire_len,
            }));
        }
    }
}

/// Removes the complete logical packet at the start of `buf` and returns its
/// first sequence id and its payload.
///
/// A single physical packet is split off without copying; a split payload
/// is joined into one buffer. `Ok(None)` means "need more bytes".
pub fn read_logical(
    buf: &mut BytesMut,
    max_payload: usize,
) -> Result<Option<(Logical, BytesMut)>, PacketError> {
    let Some(l) = peek_logical(buf, max_payload)? else {
        return Ok(None);
    };
    let mut wire = buf.split_to(l.wire_len);
    if l.packets == 1 {
        let _ = wire.split_to(HEADER_LEN);
        return Ok(Some((l, wire)));
    }
    let mut payload = BytesMut::with_capacity(l.payload_len);
    let mut rest = &wire[..];
    while let Some((h, p)) = complete_packet(rest) {
        payload.put_slice(p);
        rest = &rest[h.packet_len()..];
    }
    Ok(Some((l, payload)))
}

/// Appends `payload` as one logical packet starting at sequence id `seq`,
/// split into [`MAX_CHUNK`] pieces as needed; returns the next sequence id.
pub fn write_packet(out: &mut BytesMut, seq: u8, payload: &[u8]) -> u8 {
    let mut seq = seq;
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_CHUNK);
        out.reserve(HEADER_LEN + n);
        out.put_slice(&Header { len: n as u32, seq }.to_bytes());
        out.put_slice(&rest[..n]);
        rest = &rest[n..];
        seq = seq.wrapping_add(1);
        if n < MAX_CHUNK {
            return seq;
        }
    }
}

/// Starts a packet written in place: reserves the header and returns its
/// offset for [`finish`]. Encoders in this module append the payload after it.
#[inline]
pub fn begin(out: &mut BytesMut) -> usize {
    let at = out.len();
    out.put_slice(&[0; HEADER_LEN]);
    at
}

/// Completes the packet started at `at` with sequence id `seq` and returns
/// the next sequence id. A payload of [`MAX_CHUNK`] bytes or more is split.
pub fn finish(out: &mut BytesMut, at: usize, seq: u8) -> u8 {
    let len = out.len() - at - HEADER_LEN;
    if len < MAX_CHUNK {
        out[at..at + HEADER_LEN].copy_from_slice(
            &Header {
                len: len as u32,
                seq,
            }
            .to_bytes(),
        );
        return seq.wrapping_add(1);
    }
    let payload = out.split_off(at + HEADER_LEN);
    out.truncate(at);
    write_packet(out, seq, &payload)
}

/// Overwrites the sequence id of the packet whose header starts `packet`.
///
/// # Panics
/// If `packet` is shorter than a header.
#[inline]
pub fn set_seq(packet: &mut [u8], seq: u8) {
    packet[3] = seq;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_of_captured_ok_packet() {
        // OK to COM_PING from MariaDB 10.11.
        let buf = [0x07, 0, 0, 0x01, 0, 0, 0, 0x02, 0, 0, 0];
        let (h, payload) = complete_packet(&buf).unwrap();
        assert_eq!(h, Header { len: 7, seq: 1 });
        assert_eq!(payload, &buf[4..]);
        assert_eq!(complete_packet(&buf[..10]), None);
        assert_eq!(peek_header(&buf[..3]), None);
    }

    #[test]
    fn oversized_payload_is_refused_from_the_header_alone() {
        let buf = [0xFF, 0xFF, 0xFF, 0];
        let err = peek_logical(&buf, 1024).unwrap_err();
        assert_eq!(
            err,
            PacketError::TooLong {
                len: MAX_CHUNK,
                max: 1024
            }
        );
        assert_eq!(peek_logical(&buf, usize::MAX), Ok(None));
    }

    #[test]
    fn exact_chunk_payload_ends_with_an_empty_packet() {
        let payload = vec![7u8; MAX_CHUNK];
        let mut out = BytesMut::new();
        assert_eq!(write_packet(&mut out, 3, &payload), 5);
        assert_eq!(out.len(), MAX_CHUNK + 2 * HEADER_LEN);
        assert_eq!(&out[out.len() - 4..], &[0, 0, 0, 4]);
        let (l, got) = read_logical(&mut out, usize::MAX).unwrap().unwrap();
        assert_eq!((l.first_seq, l.last_seq, l.packets), (3, 4, 2));
        assert_eq!(got.len(), MAX_CHUNK);
        assert!(out.is_empty());
    }

    #[test]
    fn skipped_sequence_in_a_continuation_is_an_error() {
        let mut buf = BytesMut::new();
        write_packet(&mut buf, 0, &vec![0u8; MAX_CHUNK + 1]);
        set_seq(&mut buf[HEADER_LEN + MAX_CHUNK..], 9);
        let err = peek_logical(&buf, usize::MAX).unwrap_err();
        assert_eq!(
            err,
            PacketError::Sequence {
                got: 9,
                expected: 1
            }
        );
    }

    #[test]
    fn finish_splits_a_payload_written_in_place() {
        let mut out = BytesMut::from(&b"xx"[..]);
        let at = begin(&mut out);
        out.put_slice(&vec![1u8; MAX_CHUNK + 10]);
        assert_eq!(finish(&mut out, at, 255), 1);
        let mut rest = out.split_off(2);
        let (l, p) = read_logical(&mut rest, usize::MAX).unwrap().unwrap();
        assert_eq!((l.first_seq, l.last_seq, p.len()), (255, 0, MAX_CHUNK + 10));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Payloads around the 16 MiB boundary split and reassemble exactly,
        /// whatever the start sequence id, also when fed byte range by range.
        #[test]
        fn split_then_reassemble_roundtrips(
            chunks in 0usize..3,
            extra in prop_oneof![Just(0usize), Just(1), 0usize..64],
            seq in any::<u8>(),
            fill in any::<u8>(),
            cut in 0usize..8,
        ) {
            let payload = vec![fill; chunks * MAX_CHUNK + extra];
            let mut out = BytesMut::new();
            let next = write_packet(&mut out, seq, &payload);
            prop_assert_eq!(next, seq.wrapping_add(chunks as u8 + 1));
            let short = out.len().saturating_sub(cut + 1);
            prop_assert_eq!(peek_logical(&out[..short], usize::MAX), Ok(None));
            let (l, got) = read_logical(&mut out, usize::MAX).unwrap().unwrap();
            prop_assert_eq!(l.packets, chunks + 1);
            prop_assert_eq!(l.first_seq, seq);
            prop_assert_eq!(got.len(), payload.len());
            prop_assert!(got.iter().all(|&b| b == fill));
            prop_assert!(out.is_empty());
        }

        #[test]
        fn walking_arbitrary_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Some((l, p))) = read_logical(&mut buf, 1 << 20) {
                prop_assert_eq!(p.len(), l.payload_len);
            }
        }
    }
}
