//! OK (with session state), ERR, EOF and prepare-OK decoders on arbitrary
//! payloads, with and without session tracking.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sqlmux_protocol::mysql::caps::{CLIENT_PROTOCOL_41, CLIENT_SESSION_TRACK};
use sqlmux_protocol::mysql::response::{self, EofPacket, ErrPacket, OkPacket, PrepareOk};

fuzz_target!(|data: &[u8]| {
    for caps in [
        CLIENT_PROTOCOL_41,
        CLIENT_PROTOCOL_41 | CLIENT_SESSION_TRACK,
    ] {
        if let Ok(ok) = OkPacket::decode(data, caps) {
            for change in ok.session_changes() {
                let _ = change;
            }
            let mut out = BytesMut::new();
            ok.encode(&mut out, 1, caps);
        }
    }
    let _ = ErrPacket::decode(data);
    let _ = EofPacket::decode(data);
    let _ = PrepareOk::decode(data);
    let _ = response::ok_head(data);
    let _ = response::terminator_status(data, true);
    let _ = response::column_count(data);
});
