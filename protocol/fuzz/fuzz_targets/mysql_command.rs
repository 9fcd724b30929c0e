//! Client command packets: the command byte and the length-encoded
//! fields every command body is made of, on arbitrary payloads. Never
//! panics; a known command byte maps back to itself; what the lenenc
//! readers take re-encodes to the same bytes.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sqlmux_protocol::mysql::command::Command;
use sqlmux_protocol::mysql::lenenc;

fuzz_target!(|data: &[u8]| {
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
