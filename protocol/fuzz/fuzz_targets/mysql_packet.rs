//! MySQL packet framing over arbitrary bytes: never panics, reassembled
//! payloads have the announced length and the limit is honoured.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sqlmux_protocol::mysql::packet;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some((l, payload))) = packet::read_logical(&mut buf, 1 << 20) {
        assert_eq!(payload.len(), l.payload_len);
        assert!(l.payload_len <= 1 << 20);
        let mut out = BytesMut::new();
        packet::write_packet(&mut out, l.first_seq, &payload);
        assert_eq!(out.len(), l.wire_len);
    }
});
