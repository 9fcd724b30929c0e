//! Wire-level building blocks for sqlmux, free of I/O.
//!
//! Everything here works on byte buffers: decoders take a `&[u8]` or
//! `&mut BytesMut` and return `Ok(None)` when a frame is not complete yet,
//! encoders append to a `BytesMut`. Nothing here knows about sockets or
//! tokio, so every decoder can be unit tested and fuzzed on its own.
//!
//! - [`postgres`]: PostgreSQL v3 framing, startup packets, the messages the
//!   proxy must look inside, and the authentication math (md5, SCRAM-SHA-256).
//! - [`mysql`]: MySQL/MariaDB framing, login packets, OK/ERR/EOF, the
//!   response state machine and the authentication math (native, caching_sha2).
//! - [`sql`]: one-pass statement fingerprinting and the cheap statement
//!   classification the pooler needs (transaction control, SET, session state).

mod ct;
pub mod mysql;
pub mod postgres;
pub mod sql;
