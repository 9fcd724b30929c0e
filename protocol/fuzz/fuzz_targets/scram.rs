//! SCRAM server and client state machines fed arbitrary messages.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sqlmux_protocol::postgres::auth::{ScramClient, ScramCredentials, ScramServer, ScramVerifier};

fuzz_target!(|data: &[u8]| {
    let split = data.len() / 2;
    let (a, b) = data.split_at(split);
    let verifier = ScramVerifier::from_password("pencil", b"0123456789abcdef", 1);
    let mut server = ScramServer::new(verifier);
    if server.client_first(a).is_ok() {
        let _ = server.client_final(b);
    }
    let mut client = ScramClient::new(ScramCredentials::Password("pencil".into()));
    if client.server_first(a).is_ok() {
        let _ = client.server_final(b);
    }
    let _ = ScramVerifier::parse(&String::from_utf8_lossy(data));
});
