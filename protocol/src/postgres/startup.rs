//! The untagged packets a client sends first: SSLRequest, GSSENCRequest,
//! CancelRequest and StartupMessage (and sqlmux's own peer request, sent
//! only by another sqlmux replica).
//!
//! They share one layout, `len: u32` (counting itself) followed by a 32-bit
//! code, so one decoder tells them apart.

use bytes::{Buf, BytesMut};
use thiserror::Error;

/// Code of an SSLRequest packet.
pub const SSL_REQUEST_CODE: u32 = 80_877_103;
/// Code of a GSSENCRequest packet.
pub const GSSENC_REQUEST_CODE: u32 = 80_877_104;
/// Code of a CancelRequest packet.
pub const CANCEL_REQUEST_CODE: u32 = 80_877_102;
/// Code of sqlmux's own peer request, 1234/6432: one sqlmux replica asks
/// another to act on a request it received but cannot serve itself (a
/// CancelRequest whose key belongs to a client of the other replica).
/// PostgreSQL uses 1234/5678 to 1234/5680 and never this code; a PostgreSQL
/// server answers it as an unsupported protocol version.
pub const PEER_REQUEST_CODE: u32 = (1234 << 16) | 6432;
/// Protocol 3.0 as sent in a StartupMessage.
pub const PROTOCOL_3_0: u32 = 196_608;
/// Largest startup packet accepted (PostgreSQL uses the same limit).
pub const MAX_STARTUP_LEN: usize = 10_000;

/// A decoded first packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    /// The client asks for TLS.
    SslRequest,
    /// The client asks for GSSAPI encryption.
    GssEncRequest,
    /// Cancel the query running on the connection identified by the key.
    CancelRequest {
        /// Process id from BackendKeyData.
        pid: i32,
        /// Secret key from BackendKeyData (4 bytes in protocol 3.0, up to 256 in 3.2).
        secret: Vec<u8>,
    },
    /// A request from another sqlmux replica ([`PEER_REQUEST_CODE`]); the
    /// body after the code, interpreted by the proxy.
    PeerRequest(Vec<u8>),
    /// A StartupMessage.
    Startup(Startup),
}

/// The body of a StartupMessage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Startup {
    /// Major version in the high 16 bits, minor in the low 16 bits.
    pub version: u32,
    /// Parameters in the order sent (`user`, `database`, `options`, GUCs,
    /// and `_pq_.` protocol options).
    pub params: Vec<(String, String)>,
}

impl Startup {
    /// The value of a parameter, if the client sent it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Major protocol version.
    pub fn major(&self) -> u16 {
        (self.version >> 16) as u16
    }

    /// Minor protocol version.
    pub fn minor(&self) -> u16 {
        (self.version & 0xffff) as u16
    }
}

/// A first packet that cannot be valid.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StartupError {
    /// The length field is outside 8..=MAX_STARTUP_LEN.
    #[error("invalid startup packet length {0}")]
    BadLength(u32),
    /// The protocol version is not 3.x.
    #[error("unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.2")]
    UnsupportedVersion {
        /// Requested major version.
        major: u16,
        /// Requested minor version.
        minor: u16,
    },
    /// The parameter list is not a sequence of NUL-terminated strings.
    #[error("invalid startup packet layout: {0}")]
    Malformed(&'static str),
}

/// Decodes the first packet from `buf`, consuming it when complete.
///
/// Returns `Ok(None)` until the whole packet is buffered.
pub fn decode(buf: &mut BytesMut) -> Result<Option<StartupPacket>, StartupError> {
    if buf.len() < 8 {
        // A length field that is already known to be wrong is reported early.
        if buf.len() >= 4 {
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
            if !(8..=MAX_STARTUP_LEN as u32).contains(&len) {
                return Err(StartupError::BadLength(len));
            }
        }
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if !(8..=MAX_STARTUP_LEN as u32).contains(&len) {
        return Err(StartupError::BadLength(len));
    }
    if buf.len() < len as usize {
        return Ok(None);
    }
    let packet = buf.split_to(len as usize);
    let code = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
    let body = &packet[8..];
    match code {
        SSL_REQUEST_CODE if body.is_empty() => Ok(Some(StartupPacket::SslRequest)),
        GSSENC_REQUEST_CODE if body.is_empty() => Ok(Some(StartupPacket::GssEncRequest)),
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE => {
            Err(StartupError::Malformed("encryption request with a body"))
        }
        CANCEL_REQUEST_CODE => {
            if body.len() < 8 || body.len() > 4 + 256 {
                return Err(StartupError::Malformed("cancel request key length"));
            }
            let mut b = body;
            let pid = b.get_i32();
            Ok(Some(StartupPacket::CancelRequest {
                pid,
                secret: b.to_vec(),
            }))
        }
        PEER_REQUEST_CODE => Ok(Some(StartupPacket::PeerRequest(body.to_vec()))),
        version => {
            let major = (version >> 16) as u16;
            let minor = (version & 0xffff) as u16;
            if major != 3 {
                return Err(StartupError::UnsupportedVersion { major, minor });
            }
            let params = decode_params(body)?;
            Ok(Some(StartupPacket::Startup(Startup { version, params })))
        }
    }
}

fn decode_params(mut body: &[u8]) -> Result<Vec<(String, String)>, StartupError> {
    let mut params = Vec::new();
    loop {
        let key = take_cstr(&mut body)?;
        if key.is_empty() {
            break;
        }
        let value = take_cstr(&mut body)?;
        params.push((key, value));
    }
    if !body.is_empty() {
        return Err(StartupError::Malformed("bytes after the parameter list"));
    }
    Ok(params)
}

fn take_cstr(body: &mut &[u8]) -> Result<String, StartupError> {
    let nul = body
        .iter()
        .position(|&b| b == 0)
        .ok_or(StartupError::Malformed("missing NUL terminator"))?;
    let s = std::str::from_utf8(&body[..nul])
        .map_err(|_| StartupError::Malformed("parameter is not valid UTF-8"))?
        .to_owned();
    *body = &body[nul + 1..];
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::message;

    #[test]
    fn decodes_startup_message() {
        let mut buf = BytesMut::new();
        message::startup(
            &mut buf,
            &[
                ("user", "alice"),
                ("database", "app"),
                ("application_name", "x"),
            ],
        );
        let whole = buf.clone();
        let mut partial = BytesMut::from(&whole[..whole.len() - 1]);
        assert_eq!(decode(&mut partial), Ok(None));
        match decode(&mut buf).unwrap().unwrap() {
            StartupPacket::Startup(s) => {
                assert_eq!(s.get("user"), Some("alice"));
                assert_eq!(s.get("database"), Some("app"));
                assert_eq!(s.params.len(), 3);
                assert_eq!((s.major(), s.minor()), (3, 0));
            }
            other => panic!("{other:?}"),
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn decodes_ssl_and_cancel_requests() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 8, 4, 210, 22, 47][..]);
        assert_eq!(decode(&mut buf), Ok(Some(StartupPacket::SslRequest)));
        let mut buf = BytesMut::new();
        message::cancel_request(&mut buf, 42, &[1, 2, 3, 4]);
        assert_eq!(
            decode(&mut buf),
            Ok(Some(StartupPacket::CancelRequest {
                pid: 42,
                secret: vec![1, 2, 3, 4]
            }))
        );
    }

    #[test]
    fn decodes_peer_request_body_untouched() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&11u32.to_be_bytes());
        buf.extend_from_slice(&PEER_REQUEST_CODE.to_be_bytes());
        buf.extend_from_slice(&[1, 2, 3]);
        assert_eq!(PEER_REQUEST_CODE, 80_877_856);
        assert_eq!(
            decode(&mut buf),
            Ok(Some(StartupPacket::PeerRequest(vec![1, 2, 3])))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn rejects_bad_packets() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 3][..]);
        assert_eq!(decode(&mut buf), Err(StartupError::BadLength(3)));
        let mut buf = BytesMut::from(&[0x7fu8, 0, 0, 0, 0, 0, 0, 0][..]);
        assert!(decode(&mut buf).is_err());
        // Protocol 2.0.
        let mut buf = BytesMut::from(&[0u8, 0, 0, 9, 0, 2, 0, 0, 0][..]);
        assert!(matches!(
            decode(&mut buf),
            Err(StartupError::UnsupportedVersion { major: 2, .. })
        ));
        // Missing terminator.
        let mut buf = BytesMut::from(&[0u8, 0, 0, 11, 0, 3, 0, 0, b'u', b's', b'e'][..]);
        assert!(matches!(decode(&mut buf), Err(StartupError::Malformed(_))));
    }
}
