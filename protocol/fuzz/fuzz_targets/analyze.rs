//! The fingerprinter's cached path on arbitrary statements, both dialects
//! (PostgreSQL `$1` and MySQL `?` placeholders alike): `analyze` answers
//! exactly what `normalize` does, text included, whether the shape cache
//! hits or not.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sqlmux_protocol::sql::{Dialect, Normalizer, may_have_effects};

fuzz_target!(|data: &[u8]| {
    let mut cached = Normalizer::new();
    let mut plain = Normalizer::new();
    for d in [Dialect::Postgres, Dialect::MySql] {
        // Twice: a miss, then (for a cacheable shape) a hit.
        for _ in 0..2 {
            let a = cached.analyze(data, d);
            let b = plain.normalize(data, d);
            assert_eq!(a, b);
            assert_eq!(cached.text(), plain.text());
        }
    }
    let _ = may_have_effects(data);
});
