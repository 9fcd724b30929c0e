//! The response tracker fed arbitrary packets of every response shape:
//! never panics, and accepts nothing after `Done`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sqlmux_protocol::mysql::caps::CLIENT_DEPRECATE_EOF;
use sqlmux_protocol::mysql::packet::{self, Header};
use sqlmux_protocol::mysql::response_state::{Progress, ResponseTracker};

fuzz_target!(|data: &[u8]| {
    let Some((&command, rest)) = data.split_first() else {
        return;
    };
    let caps = if command & 0x80 != 0 {
        CLIENT_DEPRECATE_EOF
    } else {
        0
    };
    let Some(mut t) = ResponseTracker::for_command(&[command & 0x3f], caps) else {
        return;
    };
    let mut rest = rest;
    while let Some((h, p)) = packet::complete_packet(rest) {
        rest = &rest[h.packet_len()..];
        let r = if t.is_client_turn() {
            t.client_packet(h)
        } else {
            t.server_packet(h, p)
        };
        match r {
            Ok(Progress::Done(_)) => {
                assert!(t.is_done());
                assert!(t.server_packet(Header { len: 0, seq: 0 }, &[]).is_err());
                return;
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
});
