//! Packets sqlmux writes to MySQL clients itself: refusals as ERR packets,
//! OK for commands answered without a server, and the one-value result
//! sets that answer `SELECT LAST_INSERT_ID()` and `SELECT ROW_COUNT()`.

use bytes::{BufMut, BytesMut};
use sqlmux_protocol::mysql::caps::CLIENT_DEPRECATE_EOF;
use sqlmux_protocol::mysql::lenenc::{put_bytes, put_int};
use sqlmux_protocol::mysql::packet;
use sqlmux_protocol::mysql::response::{EOF_HEADER, EofPacket, encode_err, encode_ok};
use sqlmux_protocol::mysql::status::ServerStatus;

use crate::session::Refusal;

/// MariaDB extended capability: column definitions carry extended type info.
const MARIADB_EXTENDED_METADATA: u32 =
    sqlmux_protocol::mysql::caps::MARIADB_CLIENT_EXTENDED_METADATA;

/// Appends a refusal as an ERR packet with sequence id `seq` (its hint
/// follows the message); returns the next sequence id.
pub fn refusal(out: &mut BytesMut, seq: u8, r: &Refusal) -> u8 {
    let mut msg = r.message();
    if let Some(h) = r.hint() {
        msg.push_str(" (");
        msg.push_str(&h);
        msg.push(')');
    }
    encode_err(out, seq, r.mysql_code(), r.sqlstate(), &msg)
}

/// Appends an OK with `status` for a command answered without a server.
pub fn ok(out: &mut BytesMut, seq: u8, status: ServerStatus, caps: u32) -> u8 {
    encode_ok(out, seq, status, caps)
}

/// A signed or unsigned 64-bit value for [`single_value`].
#[derive(Debug, Clone, Copy)]
pub enum Value {
    /// Unsigned (LAST_INSERT_ID()).
    Unsigned(u64),
    /// Signed (ROW_COUNT()).
    Signed(i64),
}

/// Appends a result set of one BIGINT column named `name` and one row
/// (text protocol), answering a command whose packet had sequence id 0.
pub fn single_value(
    out: &mut BytesMut,
    name: &str,
    value: Value,
    status: ServerStatus,
    caps: u32,
    mariadb_caps: u32,
) {
    let mut seq = 1;
    let at = packet::begin(out);
    put_int(out, 1);
    seq = packet::finish(out, at, seq);
    seq = column_definition(out, seq, name, value, mariadb_caps);
    let deprecate_eof = caps & CLIENT_DEPRECATE_EOF != 0;
    if !deprecate_eof {
        seq = eof(out, seq, status);
    }
    let at = packet::begin(out);
    let text = match value {
        Value::Unsigned(v) => v.to_string(),
        Value::Signed(v) => v.to_string(),
    };
    put_bytes(out, text.as_bytes());
    seq = packet::finish(out, at, seq);
    if deprecate_eof {
        let at = packet::begin(out);
        out.put_u8(EOF_HEADER);
        put_int(out, 0);
        put_int(out, 0);
        out.put_u16_le(status.0);
        out.put_u16_le(0);
        packet::finish(out, at, seq);
    } else {
        eof(out, seq, status);
    }
}

fn eof(out: &mut BytesMut, seq: u8, status: ServerStatus) -> u8 {
    EofPacket {
        warnings: 0,
        status,
    }
    .encode(out, seq)
}

/// A column definition (Protocol::ColumnDefinition41) for a BIGINT.
fn column_definition(
    out: &mut BytesMut,
    seq: u8,
    name: &str,
    value: Value,
    mariadb_caps: u32,
) -> u8 {
    const LONGLONG: u8 = 0x08;
    const NOT_NULL: u16 = 0x0001;
    const UNSIGNED: u16 = 0x0020;
    const BINARY_COLLATION: u16 = 63;
    let at = packet::begin(out);
    put_bytes(out, b"def");
    put_bytes(out, b"");
    put_bytes(out, b"");
    put_bytes(out, b"");
    put_bytes(out, name.as_bytes());
    put_bytes(out, b"");
    if mariadb_caps & MARIADB_EXTENDED_METADATA != 0 {
        put_bytes(out, b"");
    }
    put_int(out, 0x0c);
    out.put_u16_le(BINARY_COLLATION);
    out.put_u32_le(21);
    out.put_u8(LONGLONG);
    let flags = match value {
        Value::Unsigned(_) => NOT_NULL | UNSIGNED,
        Value::Signed(_) => NOT_NULL,
    };
    out.put_u16_le(flags);
    out.put_u8(0);
    out.put_u16_le(0);
    packet::finish(out, at, seq)
}
