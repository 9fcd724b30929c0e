//! The connection phase: Initial Handshake v10, SSLRequest,
//! HandshakeResponse41, AuthSwitchRequest and AuthMoreData.
//!
//! Where this sits in the flow. Client leg (sqlmux is the server): encode an
//! [`InitialHandshake`] with a fresh scramble, read the client's first packet
//! ([`SslRequest::decode`] first: after TLS the full response follows with
//! sequence id 2), then [`HandshakeResponse::decode`] and verify its auth
//! response with `auth`. Server leg (sqlmux is a client): decode the server's
//! handshake, answer with [`HandshakeResponse::encode`], then loop on
//! [`AuthReply::decode`] until OK or ERR.
//!
//! These packets are read once per login, so the server handshake is decoded
//! into an owned value; the client's response borrows from its payload.

use bytes::{BufMut, BytesMut};

use super::caps::{
    CLIENT_CONNECT_ATTRS, CLIENT_CONNECT_WITH_DB, CLIENT_LONG_PASSWORD, CLIENT_PLUGIN_AUTH,
    CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA, CLIENT_SECURE_CONNECTION, CLIENT_SSL,
};
use super::lenenc::{
    put_bytes, put_cstr, read_bytes, read_cstr, read_u8, read_u16, read_u32, take,
};
use super::packet;
use super::response::{EOF_HEADER, ERR_HEADER, OK_HEADER};
use super::status::ServerStatus;
use super::{DecodeError, malformed};

/// Plugin name: SHA1 challenge-response, MariaDB's default.
pub const MYSQL_NATIVE_PASSWORD: &str = "mysql_native_password";
/// Plugin name: SHA256 challenge-response with a server-side cache, MySQL 8's default.
pub const CACHING_SHA2_PASSWORD: &str = "caching_sha2_password";
/// Plugin name: the password in clear text (only over TLS).
pub const MYSQL_CLEAR_PASSWORD: &str = "mysql_clear_password";
/// Plugin name: MariaDB's Ed25519 signatures.
pub const CLIENT_ED25519: &str = "client_ed25519";

/// First byte of an AuthMoreData packet.
pub const AUTH_MORE_DATA: u8 = 0x01;
/// caching_sha2_password, client to server: send me your RSA public key.
pub const CACHING_SHA2_REQUEST_PUBLIC_KEY: u8 = 0x02;
/// caching_sha2_password, in AuthMoreData: the fast path succeeded, OK follows.
pub const CACHING_SHA2_FAST_AUTH_SUCCESS: u8 = 0x03;
/// caching_sha2_password, in AuthMoreData: send the password (TLS or RSA).
pub const CACHING_SHA2_PERFORM_FULL_AUTH: u8 = 0x04;

/// Length of the fixed part of a HandshakeResponse41, and of an SSLRequest.
pub const SSL_REQUEST_LEN: usize = 32;

/// The server's first packet (protocol version 10).
#[derive(Clone, PartialEq, Eq)]
pub struct InitialHandshake {
    /// Server version, e.g. `5.5.5-10.11.19-MariaDB-0+deb12u1`.
    pub server_version: String,
    /// Connection (thread) id on the server, the target of KILL.
    pub connection_id: u32,
    /// Auth plugin data (the scramble, 20 bytes for the usual plugins), without its trailing NUL.
    pub scramble: Vec<u8>,
    /// Capability flags.
    pub capabilities: u32,
    /// MariaDB extended capabilities (0 for MySQL).
    pub mariadb_capabilities: u32,
    /// Default collation id (low 8 bits).
    pub collation: u8,
    /// Status flags.
    pub status: ServerStatus,
    /// Default authentication plugin.
    pub auth_plugin: String,
}

impl std::fmt::Debug for InitialHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitialHandshake")
            .field("server_version", &self.server_version)
            .field("connection_id", &self.connection_id)
            .field("capabilities", &format_args!("{:#010x}", self.capabilities))
            .field(
                "mariadb_capabilities",
                &format_args!("{:#x}", self.mariadb_capabilities),
            )
            .field("collation", &self.collation)
            .field("status", &self.status)
            .field("auth_plugin", &self.auth_plugin)
            .finish_non_exhaustive()
    }
}

impl InitialHandshake {
    /// Decodes a server's handshake payload (MySQL or MariaDB).
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut b = payload;
        if read_u8(&mut b) != Some(10) {
            return Err(malformed("handshake protocol version is not 10"));
        }
        let bad = || malformed("handshake");
        let version = read_cstr(&mut b).ok_or_else(bad)?;
        let connection_id = read_u32(&mut b).ok_or_else(bad)?;
        let mut scramble = take(&mut b, 8).ok_or_else(bad)?.to_vec();
        let _filler = read_u8(&mut b).ok_or_else(bad)?;
        let caps_low = read_u16(&mut b).ok_or_else(bad)?;
        let mut hs = InitialHandshake {
            server_version: String::from_utf8_lossy(version).into_owned(),
            connection_id,
            scramble: Vec::new(),
            capabilities: u32::from(caps_low),
            mariadb_capabilities: 0,
            collation: 0,
            status: ServerStatus(0),
            auth_plugin: String::new(),
        };
        if !b.is_empty() {
            hs.decode_rest(&mut b, &mut scramble)?;
        }
        hs.scramble = scramble;
        Ok(hs)
    }

    fn decode_rest(&mut self, b: &mut &[u8], scramble: &mut Vec<u8>) -> Result<(), DecodeError> {
        let bad = || malformed("handshake");
        self.collation = read_u8(b).ok_or_else(bad)?;
        self.status = ServerStatus(read_u16(b).ok_or_else(bad)?);
        self.capabilities |= u32::from(read_u16(b).ok_or_else(bad)?) << 16;
        let auth_len = read_u8(b).ok_or_else(bad)?;
        let _reserved = take(b, 6).ok_or_else(bad)?;
        let ext = read_u32(b).ok_or_else(bad)?;
        if self.capabilities & CLIENT_LONG_PASSWORD == 0 {
            self.mariadb_capabilities = ext;
        }
        if self.capabilities & CLIENT_SECURE_CONNECTION != 0 {
            let n = usize::from(auth_len).saturating_sub(8).max(13);
            let part2 = take(b, n.min(b.len())).ok_or_else(bad)?;
            scramble.extend_from_slice(part2);
            if scramble.last() == Some(&0) {
                scramble.pop();
            }
        }
        if self.capabilities & CLIENT_PLUGIN_AUTH != 0 {
            // Some old servers omit the final NUL.
            let name = read_cstr(b).unwrap_or(b);
            self.auth_plugin = String::from_utf8_lossy(name).into_owned();
        }
        Ok(())
    }

    /// Appends this handshake as packet `seq` (0 at connection start);
    /// returns the next sequence id.
    pub fn encode(&self, out: &mut BytesMut, seq: u8) -> u8 {
        let at = packet::begin(out);
        out.put_u8(10);
        put_cstr(out, self.server_version.as_bytes());
        out.put_u32_le(self.connection_id);
        let (part1, part2) = self.scramble.split_at(self.scramble.len().min(8));
        out.put_slice(part1);
        out.put_bytes(0, 8 - part1.len());
        out.put_u8(0);
        out.put_u16_le(self.capabilities as u16);
        out.put_u8(self.collation);
        out.put_u16_le(self.status.0);
        out.put_u16_le((self.capabilities >> 16) as u16);
        let plugin = self.capabilities & CLIENT_PLUGIN_AUTH != 0;
        out.put_u8(if plugin {
            (self.scramble.len() + 1).min(255) as u8
        } else {
            0
        });
        out.put_bytes(0, 6);
        out.put_u32_le(self.mariadb_capabilities);
        if self.capabilities & CLIENT_SECURE_CONNECTION != 0 {
            out.put_slice(part2);
            out.put_bytes(0, 13usize.saturating_sub(part2.len()).max(1));
        }
        if plugin {
            put_cstr(out, self.auth_plugin.as_bytes());
        }
        packet::finish(out, at, seq)
    }
}

/// The fixed 32-byte start of a client's response; alone (with
/// `CLIENT_SSL`), it is an SSLRequest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SslRequest {
    /// Client capability flags.
    pub capabilities: u32,
    /// Largest packet the client accepts.
    pub max_packet: u32,
    /// Collation id; sets character_set_client/connection/results.
    pub collation: u8,
    /// MariaDB extended capabilities (when the client cleared `CLIENT_LONG_PASSWORD`).
    pub mariadb_capabilities: u32,
}

impl SslRequest {
    /// The SSLRequest in `payload`, or `None` if it is not one (a full
    /// response is longer).
    pub fn decode(payload: &[u8]) -> Option<Self> {
        let head = Self::decode_head(payload)?;
        (payload.len() == SSL_REQUEST_LEN && head.capabilities & CLIENT_SSL != 0).then_some(head)
    }

    fn decode_head(payload: &[u8]) -> Option<Self> {
        let mut b = payload.get(..SSL_REQUEST_LEN)?;
        let capabilities = read_u32(&mut b)?;
        let max_packet = read_u32(&mut b)?;
        let collation = read_u8(&mut b)?;
        let ext = u32::from_le_bytes(payload[28..32].try_into().ok()?);
        let mariadb_capabilities = if capabilities & CLIENT_LONG_PASSWORD == 0 {
            ext
        } else {
            0
        };
        Some(SslRequest {
            capabilities,
            max_packet,
            collation,
            mariadb_capabilities,
        })
    }

    fn put(&self, out: &mut BytesMut) {
        out.put_u32_le(self.capabilities);
        out.put_u32_le(self.max_packet);
        out.put_u8(self.collation);
        out.put_bytes(0, 19);
        out.put_u32_le(self.mariadb_capabilities);
    }

    /// Appends this as an SSLRequest packet (`seq` is 1); returns the next sequence id.
    pub fn encode(&self, out: &mut BytesMut, seq: u8) -> u8 {
        let at = packet::begin(out);
        SslRequest {
            capabilities: self.capabilities | CLIENT_SSL,
            ..*self
        }
        .put(out);
        packet::finish(out, at, seq)
    }
}

/// A client's HandshakeResponse41, borrowed from its payload.
#[derive(Clone, PartialEq, Eq)]
pub struct HandshakeResponse<'a> {
    /// Capabilities, max packet, collation, MariaDB capabilities.
    pub head: SslRequest,
    /// User name.
    pub user: &'a str,
    /// The auth plugin's response to the scramble (empty for an empty password).
    pub auth_response: &'a [u8],
    /// Default database (`CLIENT_CONNECT_WITH_DB`).
    pub database: Option<&'a str>,
    /// Plugin that computed `auth_response` (`CLIENT_PLUGIN_AUTH`).
    pub auth_plugin: Option<&'a str>,
    /// Raw connection attributes (`CLIENT_CONNECT_ATTRS`), see [`Self::attributes`].
    pub raw_attributes: &'a [u8],
}

impl std::fmt::Debug for HandshakeResponse<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeResponse")
            .field("head", &self.head)
            .field("user", &self.user)
            .field("database", &self.database)
            .field("auth_plugin", &self.auth_plugin)
            .finish_non_exhaustive()
    }
}

fn utf8<'a>(b: &'a [u8], what: &'static str) -> Result<&'a str, DecodeError> {
    std::str::from_utf8(b).map_err(|_| malformed(what))
}

impl<'a> HandshakeResponse<'a> {
    /// Decodes a client's response (after [`SslRequest::decode`] said no).
    pub fn decode(payload: &'a [u8]) -> Result<Self, DecodeError> {
        let head =
            SslRequest::decode_head(payload).ok_or(malformed("handshake response too short"))?;
        let caps = head.capabilities;
        let mut b = &payload[SSL_REQUEST_LEN..];
        let user = utf8(
            read_cstr(&mut b).ok_or(malformed("user name"))?,
            "user name",
        )?;
        let auth_response = if caps & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            read_bytes(&mut b)
        } else if caps & CLIENT_SECURE_CONNECTION != 0 {
            read_u8(&mut b).and_then(|n| take(&mut b, usize::from(n)))
        } else {
            read_cstr(&mut b)
        }
        .ok_or(malformed("auth response"))?;
        let mut r = HandshakeResponse {
            head,
            user,
            auth_response,
            database: None,
            auth_plugin: None,
            raw_attributes: &[],
        };
        if caps & CLIENT_CONNECT_WITH_DB != 0 && !b.is_empty() {
            r.database = Some(utf8(
                read_cstr(&mut b).ok_or(malformed("database"))?,
                "database",
            )?);
        }
        if caps & CLIENT_PLUGIN_AUTH != 0 && !b.is_empty() {
            // Some clients omit the final NUL when nothing follows.
            let name = match read_cstr(&mut b) {
                Some(name) => name,
                None => std::mem::take(&mut b),
            };
            r.auth_plugin = Some(utf8(name, "auth plugin name")?);
        }
        if caps & CLIENT_CONNECT_ATTRS != 0 && !b.is_empty() {
            r.raw_attributes = read_bytes(&mut b).ok_or(malformed("connection attributes"))?;
        }
        Ok(r)
    }

    /// The connection attributes as (key, value) pairs, e.g.
    /// (`program_name`, `mysql`); stops after the first malformed pair.
    pub fn attributes(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let mut rest = self.raw_attributes;
        std::iter::from_fn(move || {
            let key = read_bytes(&mut rest)?;
            let value = read_bytes(&mut rest)?;
            Some((key, value))
        })
    }

    /// Appends this response as packet `seq` (1, or 2 after TLS); returns the
    /// next sequence id. Fields are written as `head.capabilities` says:
    /// set `CLIENT_CONNECT_WITH_DB` with a database, `CLIENT_CONNECT_ATTRS`
    /// with attributes (see [`put_attribute`]).
    pub fn encode(&self, out: &mut BytesMut, seq: u8) -> u8 {
        let caps = self.head.capabilities;
        let at = packet::begin(out);
        self.head.put(out);
        put_cstr(out, self.user.as_bytes());
        if caps & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            put_bytes(out, self.auth_response);
        } else if caps & CLIENT_SECURE_CONNECTION != 0 {
            let n = self.auth_response.len().min(255);
            out.put_u8(n as u8);
            out.put_slice(&self.auth_response[..n]);
        } else {
            put_cstr(out, self.auth_response);
        }
        if caps & CLIENT_CONNECT_WITH_DB != 0 {
            put_cstr(out, self.database.unwrap_or("").as_bytes());
        }
        if caps & CLIENT_PLUGIN_AUTH != 0 {
            put_cstr(
                out,
                self.auth_plugin.unwrap_or(MYSQL_NATIVE_PASSWORD).as_bytes(),
            );
        }
        if caps & CLIENT_CONNECT_ATTRS != 0 {
            put_bytes(out, self.raw_attributes);
        }
        packet::finish(out, at, seq)
    }
}

/// Appends one connection attribute pair to `attrs` (the block that goes
/// into [`HandshakeResponse::raw_attributes`]).
pub fn put_attribute(attrs: &mut BytesMut, key: &str, value: &str) {
    put_bytes(attrs, key.as_bytes());
    put_bytes(attrs, value.as_bytes());
}

/// AuthSwitchRequest: the server asks the client to authenticate with
/// another plugin (0xFE + plugin name + plugin data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthSwitchRequest<'a> {
    /// Plugin to use.
    pub plugin: &'a str,
    /// Plugin data as sent (for the usual plugins a 20-byte scramble and a NUL).
    pub data: &'a [u8],
}

impl<'a> AuthSwitchRequest<'a> {
    /// Decodes an AuthSwitchRequest payload.
    pub fn decode(payload: &'a [u8]) -> Result<Self, DecodeError> {
        let mut b = payload;
        if read_u8(&mut b) != Some(EOF_HEADER) {
            return Err(malformed("auth switch header"));
        }
        let plugin = read_cstr(&mut b).ok_or(malformed("auth switch plugin"))?;
        Ok(AuthSwitchRequest {
            plugin: utf8(plugin, "auth switch plugin")?,
            data: b,
        })
    }

    /// The plugin data without a trailing NUL: the new scramble.
    pub fn scramble(&self) -> &'a [u8] {
        self.data.strip_suffix(&[0]).unwrap_or(self.data)
    }

    /// Appends an AuthSwitchRequest carrying `scramble` (a NUL is added);
    /// returns the next sequence id.
    pub fn encode(out: &mut BytesMut, seq: u8, plugin: &str, scramble: &[u8]) -> u8 {
        let at = packet::begin(out);
        out.put_u8(EOF_HEADER);
        put_cstr(out, plugin.as_bytes());
        put_cstr(out, scramble);
        packet::finish(out, at, seq)
    }
}

/// Appends an AuthMoreData packet (0x01 + `data`); returns the next sequence id.
pub fn encode_auth_more_data(out: &mut BytesMut, seq: u8, data: &[u8]) -> u8 {
    let at = packet::begin(out);
    out.put_u8(AUTH_MORE_DATA);
    out.put_slice(data);
    packet::finish(out, at, seq)
}

/// What a server sends during authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthReply<'a> {
    /// Logged in (decode the payload as an OK packet for its details).
    Ok,
    /// Refused (decode the payload as an ERR packet).
    Err,
    /// Use another plugin with a new scramble.
    Switch(AuthSwitchRequest<'a>),
    /// Plugin-specific data, e.g. caching_sha2's fast-auth marker or an RSA key.
    MoreData(&'a [u8]),
}

impl<'a> AuthReply<'a> {
    /// Classifies a server packet of the authentication phase.
    pub fn decode(payload: &'a [u8]) -> Result<Self, DecodeError> {
        match payload.first() {
            Some(&OK_HEADER) => Ok(AuthReply::Ok),
            Some(&ERR_HEADER) => Ok(AuthReply::Err),
            Some(&EOF_HEADER) => AuthSwitchRequest::decode(payload).map(AuthReply::Switch),
            Some(&AUTH_MORE_DATA) => Ok(AuthReply::MoreData(&payload[1..])),
            _ => Err(malformed("authentication reply")),
        }
    }
}

#[cfg(test)]
mod tests;
