//! Frame header walking over arbitrary bytes: never panics, never claims a
//! frame longer than the buffer.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sqlmux_protocol::postgres::frame;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((h, body))) = frame::complete_frame(rest, 1 << 20) {
        assert_eq!(body.len() + frame::HEADER_LEN, h.frame_len());
        rest = &rest[h.frame_len()..];
    }
});
