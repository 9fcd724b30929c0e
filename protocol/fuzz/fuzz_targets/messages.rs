//! Every borrowing message-body decoder on arbitrary bodies.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sqlmux_protocol::postgres::message as m;

fuzz_target!(|data: &[u8]| {
    let _ = m::decode_auth_request(data);
    let _ = m::decode_parameter_status(data);
    let _ = m::decode_backend_key_data(data);
    let _ = m::decode_error_fields(data);
    let _ = m::command_complete_rows(data);
    let _ = m::command_complete_command(data);
    let _ = m::decode_parse(data);
    let _ = m::decode_bind_names(data);
    let _ = m::decode_target(data);
    let _ = m::decode_execute(data);
    let _ = m::decode_query(data);
});
