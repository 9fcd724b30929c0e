//! The SQL normalizer on arbitrary bytes, both dialects: never panics, and
//! normalizing its own output gives the same text.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sqlmux_protocol::sql::{Dialect, Normalizer, set_commands};

fuzz_target!(|data: &[u8]| {
    let mut n = Normalizer::new();
    for d in [Dialect::Postgres, Dialect::MySql] {
        let a = n.normalize(data, d);
        let text = n.text().to_owned();
        let b = n.normalize(text.as_bytes(), d);
        // A text cut at MAX_TEXT (on a character boundary, so up to 3 bytes
        // short of it) no longer carries the whole fingerprint.
        if text.len() + 4 <= sqlmux_protocol::sql::MAX_TEXT {
            assert_eq!(n.text(), text);
            assert_eq!(a.fingerprint, b.fingerprint);
        }
        let _ = set_commands(data, d);
    }
});
