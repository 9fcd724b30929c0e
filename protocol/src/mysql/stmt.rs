//! The binary-protocol commands a pooler rewrites: every COM_STMT_* names a
//! statement by an id that belongs to one server connection, so a proxy
//! that lends servers per transaction gives clients ids of its own and
//! swaps in the server's id on the way out.
//!
//! COM_STMT_EXECUTE layout (after the command byte): statement id (4),
//! flags (1), iteration count (4), and, when the statement has parameters,
//! the NULL bitmap (`(params + 7) / 8`), `new_params_bound_flag` (1), the
//! parameter types (2 per parameter, only when the flag is 1) and the
//! values. A client may send the types once and then flag 0; the server
//! that executes may not be the one that saw them, so [`Execute::bind`]
//! always sends them.

use bytes::{BufMut, BytesMut};

use super::{DecodeError, malformed};

/// Statement id MariaDB clients use for "the statement prepared last on
/// this connection" (prepare and execute sent back to back).
pub const LAST_PREPARED: u32 = u32::MAX;

/// COM_STMT_EXECUTE flag: open a read-only cursor.
pub const CURSOR_TYPE_READ_ONLY: u8 = 0x01;

/// The statement id of a COM_STMT_* payload (command byte first).
#[inline]
pub fn statement_id(payload: &[u8]) -> Option<u32> {
    let id = payload.get(1..5)?;
    Some(u32::from_le_bytes(id.try_into().ok()?))
}

/// Overwrites the statement id of a COM_STMT_* payload.
///
/// # Panics
/// If the payload is shorter than a command byte and an id.
#[inline]
pub fn set_statement_id(payload: &mut [u8], id: u32) {
    payload[1..5].copy_from_slice(&id.to_le_bytes());
}

/// The parameter of a COM_STMT_SEND_LONG_DATA payload and its data.
pub fn long_data(payload: &[u8]) -> Result<(u16, &[u8]), DecodeError> {
    let p = payload
        .get(5..7)
        .ok_or_else(|| malformed("COM_STMT_SEND_LONG_DATA"))?;
    Ok((u16::from_le_bytes([p[0], p[1]]), &payload[7..]))
}

/// Appends a COM_STMT_SEND_LONG_DATA packet for statement `id`.
pub fn write_long_data(out: &mut BytesMut, id: u32, param: u16, data: &[u8]) {
    let mut payload = BytesMut::with_capacity(7 + data.len());
    payload.put_u8(super::command::Command::StmtSendLongData.as_byte());
    payload.put_u32_le(id);
    payload.put_u16_le(param);
    payload.put_slice(data);
    super::packet::write_packet(out, 0, &payload);
}

/// Appends a COM_STMT_CLOSE packet for statement `id` (it has no answer).
pub fn write_close(out: &mut BytesMut, id: u32) {
    let mut payload = [0u8; 5];
    payload[0] = super::command::Command::StmtClose.as_byte();
    payload[1..].copy_from_slice(&id.to_le_bytes());
    super::packet::write_packet(out, 0, &payload);
}

/// Where the parts of a COM_STMT_EXECUTE payload are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Execute {
    /// The cursor flags byte.
    pub flags: u8,
    /// Parameters the statement has.
    params: u16,
    /// Offset of `new_params_bound_flag` (none without parameters).
    bound_at: Option<usize>,
}

impl Execute {
    /// Reads the layout of `payload` for a statement with `params`
    /// parameters; a payload too short for it is malformed.
    pub fn parse(payload: &[u8], params: u16) -> Result<Execute, DecodeError> {
        let bad = || malformed("COM_STMT_EXECUTE");
        let flags = *payload.get(5).ok_or_else(bad)?;
        if payload.len() < 10 {
            return Err(bad());
        }
        if params == 0 {
            return Ok(Execute {
                flags,
                params,
                bound_at: None,
            });
        }
        let bound_at = 10 + usize::from(params).div_ceil(8);
        let flag = *payload.get(bound_at).ok_or_else(bad)?;
        if flag == 1 && payload.len() < bound_at + 1 + 2 * usize::from(params) {
            return Err(bad());
        }
        Ok(Execute {
            flags,
            params,
            bound_at: Some(bound_at),
        })
    }

    /// The parameter types the payload carries (flag 1), if any.
    pub fn types<'a>(&self, payload: &'a [u8]) -> Option<&'a [u8]> {
        let at = self.bound_at?;
        if payload[at] != 1 {
            return None;
        }
        Some(&payload[at + 1..at + 1 + 2 * usize::from(self.params)])
    }

    /// The payload to send to a server as statement `server_id`: with the
    /// types it carries, or else with `known` (the types this client sent
    /// last), so the server never relies on what it saw before.
    pub fn bind(&self, payload: &[u8], server_id: u32, known: Option<&[u8]>) -> BytesMut {
        let mut out;
        match (self.bound_at, known) {
            (Some(at), Some(types)) if payload[at] != 1 => {
                out = BytesMut::with_capacity(payload.len() + 1 + types.len());
                out.put_slice(&payload[..at]);
                out.put_u8(1);
                out.put_slice(types);
                out.put_slice(&payload[at + 1..]);
            }
            _ => out = BytesMut::from(payload),
        }
        set_statement_id(&mut out, server_id);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn execute(id: u32, bitmap: &[u8], bound: Option<&[u8]>, values: &[u8]) -> Vec<u8> {
        let mut p = vec![0x17];
        p.extend_from_slice(&id.to_le_bytes());
        p.push(0);
        p.extend_from_slice(&1u32.to_le_bytes());
        p.extend_from_slice(bitmap);
        match bound {
            Some(t) => {
                p.push(1);
                p.extend_from_slice(t);
            }
            None if !bitmap.is_empty() => p.push(0),
            None => {}
        }
        p.extend_from_slice(values);
        p
    }

    #[test]
    fn types_sent_once_are_sent_again() {
        let types = [8u8, 0, 253, 0];
        let first = execute(7, &[0], Some(&types), &[1, 0, 0, 0, 0, 0, 0, 0, 1, b'x']);
        let e = Execute::parse(&first, 2).unwrap();
        assert_eq!(e.types(&first), Some(&types[..]));
        let out = e.bind(&first, 3, None);
        assert_eq!(statement_id(&out), Some(3));
        assert_eq!(&out[5..], &first[5..]);

        let later = execute(7, &[0], None, &[2, 0, 0, 0, 0, 0, 0, 0, 1, b'y']);
        let e = Execute::parse(&later, 2).unwrap();
        assert_eq!(e.types(&later), None);
        let out = e.bind(&later, 9, Some(&types));
        let want = execute(9, &[0], Some(&types), &[2, 0, 0, 0, 0, 0, 0, 0, 1, b'y']);
        assert_eq!(&out[..], &want[..]);
    }

    #[test]
    fn no_parameters_no_bitmap() {
        let p = execute(1, &[], None, &[]);
        let e = Execute::parse(&p, 0).unwrap();
        assert_eq!(e.types(&p), None);
        assert_eq!(&e.bind(&p, 5, Some(&[1, 0]))[1..5], &5u32.to_le_bytes());
    }

    #[test]
    fn short_payloads_are_malformed() {
        assert!(Execute::parse(&[0x17, 1, 0, 0, 0], 0).is_err());
        let p = execute(1, &[0], Some(&[8, 0]), &[]);
        assert!(
            Execute::parse(&p, 2).is_err(),
            "types for one of two parameters"
        );
        assert!(Execute::parse(&p[..10], 1).is_err(), "no bitmap");
        assert!(long_data(&[0x18, 1, 0, 0, 0, 1]).is_err());
        assert_eq!(
            long_data(&[0x18, 1, 0, 0, 0, 1, 0, b'a']).unwrap(),
            (1, &b"a"[..])
        );
    }

    #[test]
    fn written_packets_frame_their_payload() {
        let mut out = BytesMut::new();
        write_close(&mut out, 258);
        assert_eq!(&out[..], &[5, 0, 0, 0, 0x19, 2, 1, 0, 0]);
        let mut out = BytesMut::new();
        write_long_data(&mut out, 1, 2, b"ab");
        assert_eq!(&out[..], &[9, 0, 0, 0, 0x18, 1, 0, 0, 0, 2, 0, b'a', b'b']);
    }
}
