//! Length-encoded integers and strings, plus the fixed-width little-endian
//! readers every MySQL packet decoder in this module uses.
//!
//! A length-encoded integer is one byte below 0xFB, or a marker followed by
//! the value: 0xFC + 2 bytes, 0xFD + 3 bytes, 0xFE + 8 bytes. 0xFB means SQL
//! NULL in a text row and 0xFF starts an ERR packet; neither is an integer.
//! Readers take `&mut &[u8]` and advance it; they return `None` when the
//! input is short or invalid, never panic and never allocate.

use bytes::{BufMut, BytesMut};

/// Reads a length-encoded integer. `None` if truncated or if the first byte
/// is 0xFB (NULL) or 0xFF (not an integer).
#[inline]
pub fn read_int(buf: &mut &[u8]) -> Option<u64> {
    let (&first, rest) = buf.split_first()?;
    let width = match first {
        0..=0xFA => {
            *buf = rest;
            return Some(u64::from(first));
        }
        0xFC => 2,
        0xFD => 3,
        0xFE => 8,
        _ => return None,
    };
    let bytes = rest.get(..width)?;
    let mut le = [0u8; 8];
    le[..width].copy_from_slice(bytes);
    *buf = &rest[width..];
    Some(u64::from_le_bytes(le))
}

/// Reads a length-encoded string (length-encoded integer, then that many bytes).
#[inline]
pub fn read_bytes<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let mut rest = *buf;
    let len = usize::try_from(read_int(&mut rest)?).ok()?;
    let s = take(&mut rest, len)?;
    *buf = rest;
    Some(s)
}

/// Bytes [`put_int`] writes for `v`.
#[inline]
pub fn int_len(v: u64) -> usize {
    match v {
        0..=0xFA => 1,
        0xFB..=0xFFFF => 3,
        0x1_0000..=0xFF_FFFF => 4,
        _ => 9,
    }
}

/// Appends `v` as a length-encoded integer.
pub fn put_int(out: &mut BytesMut, v: u64) {
    match v {
        0..=0xFA => out.put_u8(v as u8),
        0xFB..=0xFFFF => {
            out.put_u8(0xFC);
            out.put_u16_le(v as u16);
        }
        0x1_0000..=0xFF_FFFF => {
            out.put_u8(0xFD);
            out.put_slice(&v.to_le_bytes()[..3]);
        }
        _ => {
            out.put_u8(0xFE);
            out.put_u64_le(v);
        }
    }
}

/// Appends `s` as a length-encoded string.
pub fn put_bytes(out: &mut BytesMut, s: &[u8]) {
    put_int(out, s.len() as u64);
    out.put_slice(s);
}

/// Splits `n` bytes off the front of `buf`.
#[inline]
pub fn take<'a>(buf: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if buf.len() < n {
        return None;
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Some(head)
}

/// Reads one byte.
#[inline]
pub fn read_u8(buf: &mut &[u8]) -> Option<u8> {
    let (&b, rest) = buf.split_first()?;
    *buf = rest;
    Some(b)
}

/// Reads a little-endian `u16`.
#[inline]
pub fn read_u16(buf: &mut &[u8]) -> Option<u16> {
    let b = take(buf, 2)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

/// Reads a little-endian 3-byte integer.
#[inline]
pub fn read_u24(buf: &mut &[u8]) -> Option<u32> {
    let b = take(buf, 3)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], 0]))
}

/// Reads a little-endian `u32`.
#[inline]
pub fn read_u32(buf: &mut &[u8]) -> Option<u32> {
    let b = take(buf, 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Splits a NUL-terminated string off the front of `buf` (without the NUL).
#[inline]
pub fn read_cstr<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let nul = buf.iter().position(|&b| b == 0)?;
    let s = &buf[..nul];
    *buf = &buf[nul + 1..];
    Some(s)
}

/// Appends `s` and a NUL byte.
pub fn put_cstr(out: &mut BytesMut, s: &[u8]) {
    out.put_slice(s);
    out.put_u8(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_each_width() {
        let cases: [(&[u8], u64); 4] = [
            (&[0xFA], 0xFA),
            (&[0xFC, 0xFB, 0x00], 0xFB),
            (&[0xFD, 0x01, 0x02, 0x03], 0x03_0201),
            (&[0xFE, 1, 0, 0, 0, 0, 0, 0, 0x80], 0x8000_0000_0000_0001),
        ];
        for (bytes, want) in cases {
            let mut b = bytes;
            assert_eq!(read_int(&mut b), Some(want));
            assert!(b.is_empty());
        }
    }

    #[test]
    fn null_marker_err_marker_and_truncation_are_none() {
        for bytes in [&[0xFB][..], &[0xFF], &[0xFC, 1], &[0xFE, 0, 0], &[]] {
            let mut b = bytes;
            assert_eq!(read_int(&mut b), None);
            assert_eq!(b, bytes, "input is not consumed on failure");
        }
        let mut b: &[u8] = &[3, b'a', b'b'];
        assert_eq!(read_bytes(&mut b), None);
    }

    proptest! {
        #[test]
        fn int_roundtrip(v in any::<u64>()) {
            let mut out = BytesMut::new();
            put_int(&mut out, v);
            prop_assert_eq!(out.len(), int_len(v));
            let mut b = &out[..];
            prop_assert_eq!(read_int(&mut b), Some(v));
            prop_assert!(b.is_empty());
        }

        #[test]
        fn bytes_roundtrip(s in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut out = BytesMut::new();
            put_bytes(&mut out, &s);
            let mut b = &out[..];
            prop_assert_eq!(read_bytes(&mut b), Some(&s[..]));
        }
    }
}
