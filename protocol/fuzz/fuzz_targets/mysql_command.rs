//! Client command packets: the command byte and the length-encoded
//! fields every command body is made of, and the binary-protocol commands
//! sqlmux rewrites (statement ids, EXECUTE parameter types, long data), on
//! arbitrary payloads. Never panics; a known command byte maps back to
//! itself; what the lenenc readers take re-encodes to the same bytes; a
//! rebound EXECUTE keeps its layout.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sqlmux_protocol::mysql::command::Command;
use sqlmux_protocol::mysql::lenenc;
use sqlmux_protocol::mysql::stmt;

/// Statement commands: an EXECUTE for a statement with a parameter count
/// taken from the last byte, rebound with and without known types.
fn statement_commands(data: &[u8]) {
    let _ = stmt::long_data(data);
    let Some(id) = stmt::statement_id(data) else {
        return;
    };
    let params = u16::from(*data.last().unwrap_or(&0) % 40);
    let Ok(e) = stmt::Execute::parse(data, params) else {
        return;
    };
    let known = vec![8u8; 2 * usize::from(params)];
    for types in [None, Some(&known[..])] {
        let out = e.bind(data, id.wrapping_add(1), types);
        assert_eq!(stmt::statement_id(&out), Some(id.wrapping_add(1)));
        let again = stmt::Execute::parse(&out, params).expect("rebound parses");
        if types.is_some() && params > 0 {
            assert!(again.types(&out).is_some(), "types are sent");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    statement_commands(data);
    if let Some(c) = Command::peek(data) {
        assert_eq!(c.as_byte(), data[0]);
        let _ = (c.name(), c.response_shape(), c.expects_response());
    }
    let mut rest = data.get(1..).unwrap_or_default();
    while !rest.is_empty() {
        let before = rest;
        match before[0] % 4 {
            0 => {
                if let Some(v) = lenenc::read_int(&mut rest) {
                    let mut out = BytesMut::new();
                    lenenc::put_int(&mut out, v);
                    assert_eq!(out.len(), lenenc::int_len(v));
                }
            }
            1 => {
                if let Some(b) = lenenc::read_bytes(&mut rest) {
                    assert!(b.len() < before.len());
                }
            }
            2 => {
                let _ = lenenc::read_cstr(&mut rest);
            }
            _ => {
                let _ = lenenc::read_u24(&mut rest);
            }
        }
        if rest.len() == before.len() {
            rest = &rest[1..];
        }
    }
});
