//! Generic response packets: OK, ERR, EOF, the COM_STMT_PREPARE answer and
//! the LOCAL INFILE request, with the session state changes an OK carries.
//!
//! Where this sits in the flow: the response tracker reads only the status
//! flags (from the first bytes of a packet); the session core decodes an
//! [`OkPacket`] when the flags say session state changed and walks
//! [`OkPacket::session_changes`] to learn the variables, schema and
//! transaction state the statement left behind. sqlmux's own answers (its
//! errors, local OKs) are written with [`encode_ok`] and [`encode_err`].
//!
//! Layouts assume `CLIENT_PROTOCOL_41`, which sqlmux requires on both legs.

use bytes::{BufMut, BytesMut};

use super::caps::CLIENT_SESSION_TRACK;
use super::lenenc::{self, put_bytes, put_int, read_bytes, read_int, read_u8, read_u16, read_u32};
use super::packet;
use super::status::{SERVER_SESSION_STATE_CHANGED, ServerStatus};
use super::{DecodeError, malformed};

/// First byte of an OK packet.
pub const OK_HEADER: u8 = 0x00;
/// First byte of an EOF packet, and of an OK that ends a result set under
/// `CLIENT_DEPRECATE_EOF`.
pub const EOF_HEADER: u8 = 0xFE;
/// First byte of an ERR packet.
pub const ERR_HEADER: u8 = 0xFF;
/// First byte of a LOCAL INFILE request.
pub const LOCAL_INFILE_HEADER: u8 = 0xFB;
/// An EOF packet is shorter than this (it is 5 bytes with protocol 4.1).
pub const EOF_MAX_LEN: usize = 9;

/// Whether a packet of `payload_len` bytes starting with `first` ends a
/// result set (or a list of column definitions): an EOF packet, or under
/// `CLIENT_DEPRECATE_EOF` an OK with header 0xFE. A text row may also start
/// with 0xFE (a length-encoded string of 2^24 bytes or more), but such a
/// packet is at least [`packet::MAX_CHUNK`] long.
#[inline]
pub fn is_terminator(first: u8, payload_len: usize, deprecate_eof: bool) -> bool {
    first == EOF_HEADER
        && if deprecate_eof {
            payload_len < packet::MAX_CHUNK
        } else {
            payload_len < EOF_MAX_LEN
        }
}

/// The fields of an OK packet up to the status flags, read from the first
/// bytes of the payload (23 bytes always suffice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OkHead {
    /// Rows changed (or matched, with `CLIENT_FOUND_ROWS`).
    pub affected_rows: u64,
    /// Last AUTO_INCREMENT value generated.
    pub last_insert_id: u64,
    /// Status flags.
    pub status: ServerStatus,
}

/// Reads [`OkHead`] from an OK payload (header 0x00 or 0xFE) or its prefix.
#[inline]
pub fn ok_head(payload: &[u8]) -> Option<OkHead> {
    let mut b = payload.get(1..)?;
    let affected_rows = read_int(&mut b)?;
    let last_insert_id = read_int(&mut b)?;
    let status = ServerStatus(read_u16(&mut b)?);
    Some(OkHead {
        affected_rows,
        last_insert_id,
        status,
    })
}

/// A decoded OK packet. Borrowed from the payload; decoding allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OkPacket<'a> {
    /// 0x00, or 0xFE when it ends a result set under `CLIENT_DEPRECATE_EOF`.
    pub header: u8,
    /// Rows changed (or matched, with `CLIENT_FOUND_ROWS`).
    pub affected_rows: u64,
    /// Last AUTO_INCREMENT value generated.
    pub last_insert_id: u64,
    /// Status flags.
    pub status: ServerStatus,
    /// Warnings raised.
    pub warnings: u16,
    /// Human-readable info (`Records: 1  Deleted: 0 ...`), often empty.
    pub info: &'a [u8],
    /// Raw session state block (present with `SERVER_SESSION_STATE_CHANGED`).
    pub session_state: &'a [u8],
}

impl<'a> OkPacket<'a> {
    /// Decodes an OK payload; `caps` are the connection's negotiated flags
    /// (`CLIENT_SESSION_TRACK` changes the layout of the info field).
    pub fn decode(payload: &'a [u8], caps: u32) -> Result<Self, DecodeError> {
        let header = *payload.first().ok_or(malformed("empty OK packet"))?;
        if header != OK_HEADER && header != EOF_HEADER {
            return Err(malformed("OK packet header"));
        }
        let mut b = &payload[1..];
        let affected_rows = read_int(&mut b).ok_or(malformed("OK affected rows"))?;
        let last_insert_id = read_int(&mut b).ok_or(malformed("OK last insert id"))?;
        let status = ServerStatus(read_u16(&mut b).ok_or(malformed("OK status"))?);
        let warnings = read_u16(&mut b).ok_or(malformed("OK warnings"))?;
        let mut ok = OkPacket {
            header,
            affected_rows,
            last_insert_id,
            status,
            warnings,
            info: b,
            session_state: &[],
        };
        if caps & CLIENT_SESSION_TRACK != 0 {
            ok.info = if b.is_empty() {
                b
            } else {
                read_bytes(&mut b).ok_or(malformed("OK info"))?
            };
            if status.session_state_changed() {
                ok.session_state = read_bytes(&mut b).ok_or(malformed("OK session state"))?;
            }
        }
        Ok(ok)
    }

    /// The session state changes, parsed lazily.
    pub fn session_changes(&self) -> SessionChanges<'a> {
        SessionChanges {
            rest: self.session_state,
        }
    }

    /// The same packet without session state, for a client that did not
    /// negotiate `CLIENT_SESSION_TRACK` (or must not see the server's).
    pub fn without_session_state(mut self) -> Self {
        self.status.0 &= !SERVER_SESSION_STATE_CHANGED;
        self.session_state = &[];
        self
    }

    /// Appends this OK as a packet with sequence id `seq` for a peer that
    /// negotiated `caps`; returns the next sequence id.
    pub fn encode(&self, out: &mut BytesMut, seq: u8, caps: u32) -> u8 {
        let at = packet::begin(out);
        out.put_u8(self.header);
        put_int(out, self.affected_rows);
        put_int(out, self.last_insert_id);
        out.put_u16_le(self.status.0);
        out.put_u16_le(self.warnings);
        if caps & CLIENT_SESSION_TRACK == 0 {
            out.put_slice(self.info);
        } else if self.status.session_state_changed() {
            put_bytes(out, self.info);
            put_bytes(out, self.session_state);
        } else if !self.info.is_empty() {
            put_bytes(out, self.info);
        }
        packet::finish(out, at, seq)
    }
}

/// Appends a plain OK (no rows, no info) with `status`; returns the next
/// sequence id. sqlmux answers COM_PING, COM_INIT_DB and the like with it.
pub fn encode_ok(out: &mut BytesMut, seq: u8, status: ServerStatus, caps: u32) -> u8 {
    let ok = OkPacket {
        header: OK_HEADER,
        affected_rows: 0,
        last_insert_id: 0,
        status: ServerStatus(status.0 & !SERVER_SESSION_STATE_CHANGED),
        warnings: 0,
        info: &[],
        session_state: &[],
    };
    ok.encode(out, seq, caps)
}

/// One entry of an OK packet's session state block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionChange<'a> {
    /// A system variable and its new value (`SESSION_TRACK_SYSTEM_VARIABLES`).
    SystemVariable {
        /// Variable name, e.g. `time_zone`.
        name: &'a [u8],
        /// Its value after the statement, e.g. `+01:00`.
        value: &'a [u8],
    },
    /// The new default database (`SESSION_TRACK_SCHEMA`).
    Schema(&'a [u8]),
    /// Session state changed in a way not reported otherwise: user
    /// variables, temporary tables, SQL PREPARE... (`SESSION_TRACK_STATE_CHANGE`).
    StateChanged(bool),
    /// GTIDs (`SESSION_TRACK_GTIDS`): the raw data (encoding byte first).
    Gtids(&'a [u8]),
    /// Statements to replay the transaction's characteristics
    /// (`SESSION_TRACK_TRANSACTION_CHARACTERISTICS`), e.g. `START TRANSACTION;`.
    TransactionCharacteristics(&'a [u8]),
    /// Eight flag characters such as `T_______` (`SESSION_TRACK_TRANSACTION_STATE`).
    TransactionState(&'a [u8]),
    /// An entry type this module does not know: its type byte and raw data.
    Other {
        /// Entry type.
        kind: u8,
        /// Entry data.
        data: &'a [u8],
    },
}

/// Session state entry type: system variable.
pub const SESSION_TRACK_SYSTEM_VARIABLES: u8 = 0;
/// Session state entry type: schema.
pub const SESSION_TRACK_SCHEMA: u8 = 1;
/// Session state entry type: other state changed.
pub const SESSION_TRACK_STATE_CHANGE: u8 = 2;
/// Session state entry type: GTIDs.
pub const SESSION_TRACK_GTIDS: u8 = 3;
/// Session state entry type: transaction characteristics.
pub const SESSION_TRACK_TRANSACTION_CHARACTERISTICS: u8 = 4;
/// Session state entry type: transaction state.
pub const SESSION_TRACK_TRANSACTION_STATE: u8 = 5;

/// Iterator over the session state block of an OK packet; stops after the
/// first malformed entry (which it yields as an error).
#[derive(Debug, Clone)]
pub struct SessionChanges<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for SessionChanges<'a> {
    type Item = Result<SessionChange<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let item = next_change(&mut self.rest);
        if item.is_err() {
            self.rest = &[];
        }
        Some(item)
    }
}

fn next_change<'a>(rest: &mut &'a [u8]) -> Result<SessionChange<'a>, DecodeError> {
    let kind = read_u8(rest).ok_or(malformed("session state type"))?;
    let mut data = read_bytes(rest).ok_or(malformed("session state entry"))?;
    let bad = || malformed("session state entry");
    Ok(match kind {
        SESSION_TRACK_SYSTEM_VARIABLES => {
            let name = read_bytes(&mut data).ok_or_else(bad)?;
            let value = read_bytes(&mut data).ok_or_else(bad)?;
            SessionChange::SystemVariable { name, value }
        }
        SESSION_TRACK_SCHEMA => SessionChange::Schema(read_bytes(&mut data).ok_or_else(bad)?),
        // Not nested: the entry data is the flag character itself.
        SESSION_TRACK_STATE_CHANGE => SessionChange::StateChanged(data == b"1"),
        SESSION_TRACK_GTIDS => SessionChange::Gtids(data),
        SESSION_TRACK_TRANSACTION_CHARACTERISTICS => {
            SessionChange::TransactionCharacteristics(read_bytes(&mut data).ok_or_else(bad)?)
        }
        SESSION_TRACK_TRANSACTION_STATE => {
            SessionChange::TransactionState(read_bytes(&mut data).ok_or_else(bad)?)
        }
        kind => SessionChange::Other { kind, data },
    })
}

/// A decoded ERR packet. ERR carries no status flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrPacket<'a> {
    /// Error number, e.g. 1146 (table doesn't exist), 1213 (deadlock).
    pub code: u16,
    /// Five-character SQLSTATE, or empty when the server sent none.
    pub sql_state: &'a [u8],
    /// Error message.
    pub message: &'a [u8],
}

impl<'a> ErrPacket<'a> {
    /// Decodes an ERR payload.
    pub fn decode(payload: &'a [u8]) -> Result<Self, DecodeError> {
        let mut b = payload;
        if read_u8(&mut b) != Some(ERR_HEADER) {
            return Err(malformed("ERR packet header"));
        }
        let code = read_u16(&mut b).ok_or(malformed("ERR code"))?;
        let mut sql_state: &[u8] = &[];
        if b.first() == Some(&b'#') {
            sql_state = b.get(1..6).ok_or(malformed("ERR SQLSTATE"))?;
            b = &b[6..];
        }
        Ok(ErrPacket {
            code,
            sql_state,
            message: b,
        })
    }

    /// The error code of an ERR payload or its prefix (3 bytes suffice).
    #[inline]
    pub fn peek_code(payload: &[u8]) -> Option<u16> {
        let mut b = payload.get(1..)?;
        read_u16(&mut b)
    }
}

/// Appends an ERR packet; returns the next sequence id. `sql_state` must be
/// five ASCII characters (it is padded or cut to five).
pub fn encode_err(out: &mut BytesMut, seq: u8, code: u16, sql_state: &str, message: &str) -> u8 {
    let at = packet::begin(out);
    out.put_u8(ERR_HEADER);
    out.put_u16_le(code);
    out.put_u8(b'#');
    let mut state = *b"HY000";
    for (d, s) in state.iter_mut().zip(sql_state.bytes()) {
        *d = s;
    }
    out.put_slice(&state);
    out.put_slice(message.as_bytes());
    packet::finish(out, at, seq)
}

/// A decoded EOF packet (before `CLIENT_DEPRECATE_EOF`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EofPacket {
    /// Warnings raised.
    pub warnings: u16,
    /// Status flags.
    pub status: ServerStatus,
}

impl EofPacket {
    /// Decodes an EOF payload (0xFE, warnings, status), or its prefix.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut b = payload;
        if read_u8(&mut b) != Some(EOF_HEADER) || payload.len() >= EOF_MAX_LEN {
            return Err(malformed("EOF packet header"));
        }
        let warnings = read_u16(&mut b).ok_or(malformed("EOF warnings"))?;
        let status = ServerStatus(read_u16(&mut b).ok_or(malformed("EOF status"))?);
        Ok(EofPacket { warnings, status })
    }

    /// Appends this EOF as a packet; returns the next sequence id.
    pub fn encode(&self, out: &mut BytesMut, seq: u8) -> u8 {
        let at = packet::begin(out);
        out.put_u8(EOF_HEADER);
        out.put_u16_le(self.warnings);
        out.put_u16_le(self.status.0);
        packet::finish(out, at, seq)
    }
}

/// The status flags of a packet that ends a result set or a list of column
/// definitions (see [`is_terminator`]), from its payload or prefix.
#[inline]
pub fn terminator_status(payload: &[u8], deprecate_eof: bool) -> Option<ServerStatus> {
    if deprecate_eof {
        ok_head(payload).map(|h| h.status)
    } else {
        EofPacket::decode(payload).ok().map(|e| e.status)
    }
}

/// The first packet of a successful COM_STMT_PREPARE response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrepareOk {
    /// Statement id on this server connection.
    pub statement_id: u32,
    /// Columns of the result set (0 for statements without one).
    pub columns: u16,
    /// Parameter placeholders.
    pub params: u16,
    /// Warnings raised.
    pub warnings: u16,
}

impl PrepareOk {
    /// Decodes a COM_STMT_PREPARE OK payload (12 bytes).
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut b = payload;
        if read_u8(&mut b) != Some(OK_HEADER) {
            return Err(malformed("prepare OK header"));
        }
        let bad = || malformed("prepare OK");
        let statement_id = read_u32(&mut b).ok_or_else(bad)?;
        let columns = read_u16(&mut b).ok_or_else(bad)?;
        let params = read_u16(&mut b).ok_or_else(bad)?;
        let _filler = read_u8(&mut b).ok_or_else(bad)?;
        let warnings = read_u16(&mut b).unwrap_or(0);
        Ok(PrepareOk {
            statement_id,
            columns,
            params,
            warnings,
        })
    }

    /// Appends this answer as a packet; returns the next sequence id.
    /// (Column and parameter definitions follow it; the caller writes them.)
    pub fn encode(&self, out: &mut BytesMut, seq: u8) -> u8 {
        let at = packet::begin(out);
        out.put_u8(OK_HEADER);
        out.put_u32_le(self.statement_id);
        out.put_u16_le(self.columns);
        out.put_u16_le(self.params);
        out.put_u8(0);
        out.put_u16_le(self.warnings);
        packet::finish(out, at, seq)
    }
}

/// The file name of a LOCAL INFILE request (0xFB + name), if `payload` is one.
pub fn local_infile_name(payload: &[u8]) -> Option<&[u8]> {
    match payload.split_first() {
        Some((&LOCAL_INFILE_HEADER, name)) => Some(name),
        _ => None,
    }
}

/// The column count that opens a result set, from its payload or prefix.
#[inline]
pub fn column_count(payload: &[u8]) -> Option<u64> {
    let mut b = payload;
    lenenc::read_int(&mut b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::caps::CLIENT_PROTOCOL_41;
    use crate::mysql::status::{SERVER_STATUS_AUTOCOMMIT, SERVER_STATUS_IN_TRANS};
    use crate::mysql::test_hex as hex;

    const TRACK: u32 = CLIENT_PROTOCOL_41 | CLIENT_SESSION_TRACK;

    /// Payload of the captured packet (header stripped).
    fn payload(packet_hex: &str) -> Vec<u8> {
        hex(packet_hex)[4..].to_vec()
    }

    #[test]
    fn ok_with_tracked_time_zone_yields_variable_and_state_change() {
        // MariaDB 10.11 answer to SET time_zone='+01:00' with
        // session_track_system_variables='*' and session_track_state_change=ON.
        let p = payload("1f00000100000002400000001600110974696d655f7a6f6e65062b30313a3030020131");
        let ok = OkPacket::decode(&p, TRACK).unwrap();
        assert_eq!(ok.status, ServerStatus(0x4002));
        assert_eq!(ok.info, b"");
        let changes: Vec<_> = ok.session_changes().map(Result::unwrap).collect();
        assert_eq!(
            changes,
            [
                SessionChange::SystemVariable {
                    name: b"time_zone",
                    value: b"+01:00"
                },
                SessionChange::StateChanged(true),
            ]
        );
    }

    #[test]
    fn login_ok_reports_the_schema() {
        let p = payload("1000000200000002400000000701050474657374");
        let ok = OkPacket::decode(&p, TRACK).unwrap();
        let changes: Vec<_> = ok.session_changes().collect();
        assert_eq!(changes, [Ok(SessionChange::Schema(b"test"))]);
    }

    #[test]
    fn ok_with_info_and_warnings() {
        // LOAD DATA LOCAL INFILE answer.
        let p = payload(
            "37000004000100020002002f5265636f7264733a2031202044656c657465643a20302020536b69707065643a203020205761726e696e67733a2032",
        );
        let ok = OkPacket::decode(&p, TRACK).unwrap();
        assert_eq!((ok.affected_rows, ok.warnings), (1, 2));
        assert!(ok.info.starts_with(b"Records: 1"));
        assert_eq!(ok.session_changes().count(), 0);
        let head = ok_head(&p[..6]).unwrap();
        assert_eq!(head.status.0, SERVER_STATUS_AUTOCOMMIT);
    }

    #[test]
    fn ok_encode_decode_roundtrip_with_and_without_tracking() {
        let state = [1u8, 5, 4, b't', b'e', b's', b't'];
        let ok = OkPacket {
            header: OK_HEADER,
            affected_rows: 300,
            last_insert_id: 70_000,
            status: ServerStatus(0x4003),
            warnings: 1,
            info: b"Rows matched: 1",
            session_state: &state,
        };
        for caps in [TRACK, CLIENT_PROTOCOL_41] {
            let ok = if caps == TRACK {
                ok
            } else {
                ok.without_session_state()
            };
            let mut out = BytesMut::new();
            assert_eq!(ok.encode(&mut out, 7, caps), 8);
            let (h, p) = packet::complete_packet(&out).unwrap();
            assert_eq!(h.seq, 7);
            assert_eq!(OkPacket::decode(p, caps).unwrap(), ok);
        }
    }

    #[test]
    fn err_packet_from_mariadb() {
        let p = payload(
            "2f000001ff7a042334325330325461626c652027746573742e6e6f737563687461626c652720646f65736e2774206578697374",
        );
        let e = ErrPacket::decode(&p).unwrap();
        assert_eq!((e.code, e.sql_state), (1146, &b"42S02"[..]));
        assert_eq!(e.message, b"Table 'test.nosuchtable' doesn't exist");
        assert_eq!(ErrPacket::peek_code(&p[..3]), Some(1146));
        let mut out = BytesMut::new();
        encode_err(
            &mut out,
            1,
            1146,
            "42S02",
            "Table 'test.nosuchtable' doesn't exist",
        );
        assert_eq!(&out[4..], &p[..]);
    }

    #[test]
    fn eof_and_deprecate_eof_terminators() {
        let eof = payload("05000004fe00000200");
        assert!(is_terminator(eof[0], eof.len(), false));
        assert_eq!(
            terminator_status(&eof, false),
            Some(ServerStatus(SERVER_STATUS_AUTOCOMMIT))
        );
        let ok = payload("07000005fe000002000000");
        assert!(!is_terminator(ok[0], ok.len(), false) || ok.len() < EOF_MAX_LEN);
        assert!(is_terminator(ok[0], ok.len(), true));
        assert_eq!(
            terminator_status(&ok, true),
            Some(ServerStatus(SERVER_STATUS_AUTOCOMMIT))
        );
        assert_eq!(OkPacket::decode(&ok, TRACK).unwrap().header, EOF_HEADER);
        // A long row starting with 0xFE is never a terminator.
        assert!(!is_terminator(0xFE, packet::MAX_CHUNK, true));
        let mut out = BytesMut::new();
        EofPacket {
            warnings: 0,
            status: ServerStatus(2),
        }
        .encode(&mut out, 4);
        assert_eq!(&out[..], &hex("05000004fe00000200")[..]);
    }

    #[test]
    fn prepare_ok_from_mariadb() {
        let p = payload("0c000001000100000002000200000000");
        let ok = PrepareOk::decode(&p).unwrap();
        assert_eq!(
            ok,
            PrepareOk {
                statement_id: 1,
                columns: 2,
                params: 2,
                warnings: 0
            }
        );
        let mut out = BytesMut::new();
        ok.encode(&mut out, 1);
        assert_eq!(&out[..], &hex("0c000001000100000002000200000000")[..]);
    }

    #[test]
    fn plain_ok_encodes_like_mariadb_ping_answer() {
        let mut out = BytesMut::new();
        let status = ServerStatus(SERVER_STATUS_AUTOCOMMIT | SERVER_SESSION_STATE_CHANGED);
        encode_ok(&mut out, 1, status, TRACK);
        assert_eq!(&out[..], &hex("0700000100000002000000")[..]);
        assert!(!ServerStatus(SERVER_STATUS_IN_TRANS).is_transaction_boundary());
    }

    #[test]
    fn malformed_session_state_stops_the_iterator() {
        let ok = OkPacket {
            header: 0,
            affected_rows: 0,
            last_insert_id: 0,
            status: ServerStatus(0x4000),
            warnings: 0,
            info: b"",
            session_state: &[0, 3, 9, b'x', b'y', 1, 1],
        };
        let v: Vec<_> = ok.session_changes().collect();
        assert_eq!(v.len(), 1);
        assert!(v[0].is_err());
    }
}
