//! Startup packet decoding: never panics; consumes exactly one packet.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sqlmux_protocol::postgres::startup;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let before = buf.len();
    if let Ok(Some(_)) = startup::decode(&mut buf) {
        assert!(buf.len() < before);
    }
});
