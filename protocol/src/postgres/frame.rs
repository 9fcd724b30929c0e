//! Frame headers: one tag byte and a big-endian length that counts itself.
//!
//! Every message after the startup phase is `tag: u8, len: u32, body`, where
//! `len` includes its own four bytes. Walking a buffer of messages therefore
//! costs one bounds check and one load per message; the forwarding path does
//! exactly that and nothing more for messages it does not care about.

use thiserror::Error;

/// Bytes in a regular frame header (tag + length).
pub const HEADER_LEN: usize = 5;

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The message type byte (`b'Q'`, `b'Z'`, ...).
    pub tag: u8,
    /// Length field as sent: body length plus four.
    pub len: u32,
}

impl Header {
    /// Whole frame length including the tag byte.
    #[inline]
    pub fn frame_len(&self) -> usize {
        1 + self.len as usize
    }

    /// Body length (what follows the header).
    #[inline]
    pub fn body_len(&self) -> usize {
        self.len as usize - 4
    }
}

/// A frame header that cannot be valid.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The length field is below its own size.
    #[error("invalid message length {len} for message type {tag:?}")]
    TooShort {
        /// Message type byte as a char.
        tag: char,
        /// The length field.
        len: u32,
    },
    /// The length field exceeds the configured limit.
    #[error("message of type {tag:?} is {len} bytes, more than the limit of {max} bytes")]
    TooLong {
        /// Message type byte as a char.
        tag: char,
        /// The length field.
        len: u32,
        /// The configured limit.
        max: u32,
    },
}

/// Reads the header at the start of `buf`.
///
/// Returns `Ok(None)` when fewer than [`HEADER_LEN`] bytes are present: that
/// is normal ("need more bytes"). `max_len` bounds the length field so a
/// hostile peer cannot make the caller buffer gigabytes.
#[inline]
pub fn peek_header(buf: &[u8], max_len: u32) -> Result<Option<Header>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let tag = buf[0];
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(FrameError::TooShort {
            tag: tag as char,
            len,
        });
    }
    if len > max_len {
        return Err(FrameError::TooLong {
            tag: tag as char,
            len,
            max: max_len,
        });
    }
    Ok(Some(Header { tag, len }))
}

/// Returns the header and the body of the complete frame at the start of
/// `buf`, or `Ok(None)` if the frame is not complete yet.
#[inline]
pub fn complete_frame(buf: &[u8], max_len: u32) -> Result<Option<(Header, &[u8])>, FrameError> {
    match peek_header(buf, max_len)? {
        Some(h) if buf.len() >= h.frame_len() => Ok(Some((h, &buf[HEADER_LEN..h.frame_len()]))),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_buffer_needs_more_bytes() {
        assert_eq!(peek_header(b"Q\0\0", 100), Ok(None));
        assert_eq!(complete_frame(b"Q\0\0\0\x09abc", 100), Ok(None));
    }

    #[test]
    fn complete_frame_splits_body() {
        let buf = b"Z\0\0\0\x05Irest";
        let (h, body) = complete_frame(buf, 100).unwrap().unwrap();
        assert_eq!(h.tag, b'Z');
        assert_eq!(h.frame_len(), 6);
        assert_eq!(body, b"I");
    }

    #[test]
    fn invalid_lengths_are_errors() {
        assert!(matches!(
            peek_header(b"Q\0\0\0\x03", 100),
            Err(FrameError::TooShort { .. })
        ));
        assert!(matches!(
            peek_header(b"Q\x7f\0\0\0", 100),
            Err(FrameError::TooLong { .. })
        ));
    }
}
