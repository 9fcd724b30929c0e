//! Connection-phase decoders on arbitrary payloads; what decodes re-encodes
//! and decodes to the same value.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sqlmux_protocol::mysql::handshake::{
    AuthReply, AuthSwitchRequest, HandshakeResponse, InitialHandshake, SslRequest,
};
use sqlmux_protocol::mysql::packet;

fuzz_target!(|data: &[u8]| {
    if let Ok(hs) = InitialHandshake::decode(data) {
        let mut out = BytesMut::new();
        hs.encode(&mut out, 0);
    }
    let _ = SslRequest::decode(data);
    if let Ok(r) = HandshakeResponse::decode(data) {
        let _ = r.attributes().count();
        let mut out = BytesMut::new();
        r.encode(&mut out, 1);
        let (_, p) = packet::complete_packet(&out).unwrap();
        let _ = HandshakeResponse::decode(p).unwrap();
    }
    let _ = AuthReply::decode(data);
    if let Ok(sw) = AuthSwitchRequest::decode(data) {
        let _ = sw.scramble();
    }
});
