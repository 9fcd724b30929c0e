//! MySQL / MariaDB client-server protocol: framing, login, responses and
//! the authentication math, as bytes in and bytes out.
//!
//! The proxy's MySQL front end (`proxy/src/mysql`) forwards packets as they
//! come and looks inside only the ones that decide something: the command
//! byte from the client, OK/ERR/EOF and result set boundaries from the
//! server. sqlmux is the server on the client leg and a client on the
//! server leg, so most packets here have both a decoder and an encoder.
//!
//! - [`packet`]: 4-byte headers, 16 MiB splitting and reassembly, sequence ids.
//! - [`lenenc`]: length-encoded integers and strings, little-endian readers.
//! - [`handshake`]: Initial Handshake v10, SSLRequest, HandshakeResponse41,
//!   AuthSwitchRequest, AuthMoreData and the caching_sha2 markers.
//! - [`auth`]: mysql_native_password and caching_sha2_password math,
//!   verifying clients and logging in to servers without the plaintext.
//! - [`command`]: command bytes and the shape of the answer to each.
//! - [`response_state`]: the response tracker: is the server's answer
//!   complete, with which status flags, how many rows.
//! - [`response`]: OK (with session state changes), ERR, EOF, prepare OK.
//! - [`caps`]: capability flags, what sqlmux masks, the pool key subset.
//! - [`status`]: server status flags and the transaction boundary test.
//! - [`stmt`]: statement ids and parameter types in COM_STMT_* commands.

pub mod auth;
pub mod caps;
pub mod command;
pub mod handshake;
pub mod lenenc;
pub mod packet;
pub mod response;
pub mod response_state;
pub mod status;
pub mod stmt;

use thiserror::Error;

/// A packet payload that does not follow the protocol.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The payload is truncated or a field is invalid; the text names it.
    #[error("malformed MySQL packet: {0}")]
    Malformed(&'static str),
}

/// Shorthand for `DecodeError::Malformed`.
pub(crate) fn malformed(what: &'static str) -> DecodeError {
    DecodeError::Malformed(what)
}

/// Bytes from a hex string (test captures).
#[cfg(test)]
pub(crate) fn test_hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
