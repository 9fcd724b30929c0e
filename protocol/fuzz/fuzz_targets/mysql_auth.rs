//! Password verifiers fed arbitrary responses: never panic, and a response
//! that verifies yields a key that answers the same scramble identically.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sqlmux_protocol::mysql::auth::{self, NativeVerifier, Sha2Verifier};

fuzz_target!(|data: &[u8]| {
    let split = data.len().min(20);
    let (scramble, response) = data.split_at(split);
    let native = NativeVerifier::from_config("*14E65567ABDB5135D0CFD9A70B3032C179A49EE7");
    if let Some(key) = native.verify(scramble, response) {
        assert_eq!(key.response(scramble), response);
    }
    let sha2 = Sha2Verifier::from_password(b"secret");
    if let Some(key) = sha2.verify_fast(scramble, response) {
        assert_eq!(key.response(scramble), response);
    }
    let _ = auth::full_auth_password(data);
    let _ = NativeVerifier::from_config(&String::from_utf8_lossy(data));
});
