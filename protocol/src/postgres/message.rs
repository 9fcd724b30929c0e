//! Encoders for the messages sqlmux sends itself, and borrowing decoders for
//! the few message bodies the proxy must read.
//!
//! Encoders append one complete frame to a `BytesMut`. Decoders take a frame
//! body (without tag and length) and never allocate.

use bytes::{BufMut, BytesMut};

use super::startup::{CANCEL_REQUEST_CODE, PROTOCOL_3_0};

/// Starts a frame with `tag`; returns the offset of its length field.
#[inline]
fn begin(buf: &mut BytesMut, tag: u8) -> usize {
    buf.put_u8(tag);
    let at = buf.len();
    buf.put_u32(0);
    at
}

/// Patches the length field written by [`begin`].
#[inline]
fn finish(buf: &mut BytesMut, at: usize) {
    let len = (buf.len() - at) as u32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

#[inline]
fn put_cstr(buf: &mut BytesMut, s: &[u8]) {
    buf.put_slice(s);
    buf.put_u8(0);
}

// ---------------------------------------------------------------------------
// Client -> server (sqlmux acting as a client)

/// StartupMessage for protocol 3.0 with the given parameters.
pub fn startup(buf: &mut BytesMut, params: &[(&str, &str)]) {
    let at = buf.len();
    buf.put_u32(0);
    buf.put_u32(PROTOCOL_3_0);
    for (k, v) in params {
        put_cstr(buf, k.as_bytes());
        put_cstr(buf, v.as_bytes());
    }
    buf.put_u8(0);
    let len = (buf.len() - at) as u32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// CancelRequest packet.
pub fn cancel_request(buf: &mut BytesMut, pid: i32, secret: &[u8]) {
    buf.put_u32(12 + secret.len() as u32);
    buf.put_u32(CANCEL_REQUEST_CODE);
    buf.put_i32(pid);
    buf.put_slice(secret);
}

/// SSLRequest packet.
pub fn ssl_request(buf: &mut BytesMut) {
    buf.put_u32(8);
    buf.put_u32(super::startup::SSL_REQUEST_CODE);
}

/// PasswordMessage carrying a cleartext or md5 password.
pub fn password(buf: &mut BytesMut, password: &[u8]) {
    let at = begin(buf, b'p');
    put_cstr(buf, password);
    finish(buf, at);
}

/// SASLInitialResponse.
pub fn sasl_initial_response(buf: &mut BytesMut, mechanism: &str, data: &[u8]) {
    let at = begin(buf, b'p');
    put_cstr(buf, mechanism.as_bytes());
    buf.put_i32(data.len() as i32);
    buf.put_slice(data);
    finish(buf, at);
}

/// SASLResponse.
pub fn sasl_response(buf: &mut BytesMut, data: &[u8]) {
    let at = begin(buf, b'p');
    buf.put_slice(data);
    finish(buf, at);
}

/// Simple Query.
pub fn query(buf: &mut BytesMut, sql: &str) {
    let at = begin(buf, b'Q');
    put_cstr(buf, sql.as_bytes());
    finish(buf, at);
}

/// Parse (extended protocol).
pub fn parse(buf: &mut BytesMut, name: &[u8], sql: &[u8], param_types: &[u32]) {
    let at = begin(buf, b'P');
    put_cstr(buf, name);
    put_cstr(buf, sql);
    buf.put_u16(param_types.len() as u16);
    for t in param_types {
        buf.put_u32(*t);
    }
    finish(buf, at);
}

/// Close of a prepared statement (`kind` b'S') or portal (b'P').
pub fn close(buf: &mut BytesMut, kind: u8, name: &[u8]) {
    let at = begin(buf, b'C');
    buf.put_u8(kind);
    put_cstr(buf, name);
    finish(buf, at);
}

/// Sync.
pub fn sync(buf: &mut BytesMut) {
    buf.put_slice(&[b'S', 0, 0, 0, 4]);
}

/// Terminate.
pub fn terminate(buf: &mut BytesMut) {
    buf.put_slice(&[b'X', 0, 0, 0, 4]);
}

// ---------------------------------------------------------------------------
// Server -> client (sqlmux acting as a server)

/// AuthenticationOk.
pub fn auth_ok(buf: &mut BytesMut) {
    buf.put_slice(&[b'R', 0, 0, 0, 8, 0, 0, 0, 0]);
}

/// AuthenticationCleartextPassword.
pub fn auth_cleartext(buf: &mut BytesMut) {
    buf.put_slice(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]);
}

/// AuthenticationMD5Password with its salt.
pub fn auth_md5(buf: &mut BytesMut, salt: [u8; 4]) {
    buf.put_slice(&[b'R', 0, 0, 0, 12, 0, 0, 0, 5]);
    buf.put_slice(&salt);
}

/// AuthenticationSASL listing mechanisms.
pub fn auth_sasl(buf: &mut BytesMut, mechanisms: &[&str]) {
    let at = begin(buf, b'R');
    buf.put_u32(10);
    for m in mechanisms {
        put_cstr(buf, m.as_bytes());
    }
    buf.put_u8(0);
    finish(buf, at);
}

/// AuthenticationSASLContinue.
pub fn auth_sasl_continue(buf: &mut BytesMut, data: &[u8]) {
    let at = begin(buf, b'R');
    buf.put_u32(11);
    buf.put_slice(data);
    finish(buf, at);
}

/// AuthenticationSASLFinal.
pub fn auth_sasl_final(buf: &mut BytesMut, data: &[u8]) {
    let at = begin(buf, b'R');
    buf.put_u32(12);
    buf.put_slice(data);
    finish(buf, at);
}

/// ParameterStatus.
pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    let at = begin(buf, b'S');
    put_cstr(buf, name.as_bytes());
    put_cstr(buf, value.as_bytes());
    finish(buf, at);
}

/// BackendKeyData (protocol 3.0: 4-byte secret).
pub fn backend_key_data(buf: &mut BytesMut, pid: i32, secret: i32) {
    buf.put_slice(&[b'K', 0, 0, 0, 12]);
    buf.put_i32(pid);
    buf.put_i32(secret);
}

/// ReadyForQuery with the transaction status byte.
pub fn ready_for_query(buf: &mut BytesMut, status: u8) {
    buf.put_slice(&[b'Z', 0, 0, 0, 5, status]);
}

/// NegotiateProtocolVersion: the newest minor version we support and the
/// protocol options we did not recognise.
pub fn negotiate_protocol_version(buf: &mut BytesMut, minor: u32, unsupported: &[&str]) {
    let at = begin(buf, b'v');
    buf.put_u32(minor);
    buf.put_u32(unsupported.len() as u32);
    for o in unsupported {
        put_cstr(buf, o.as_bytes());
    }
    finish(buf, at);
}

/// ParseComplete.
pub fn parse_complete(buf: &mut BytesMut) {
    buf.put_slice(&[b'1', 0, 0, 0, 4]);
}

/// BindComplete.
pub fn bind_complete(buf: &mut BytesMut) {
    buf.put_slice(&[b'2', 0, 0, 0, 4]);
}

/// CloseComplete.
pub fn close_complete(buf: &mut BytesMut) {
    buf.put_slice(&[b'3', 0, 0, 0, 4]);
}

/// CommandComplete with a tag such as `SELECT 1`.
pub fn command_complete(buf: &mut BytesMut, tag: &str) {
    let at = begin(buf, b'C');
    put_cstr(buf, tag.as_bytes());
    finish(buf, at);
}

/// EmptyQueryResponse.
pub fn empty_query_response(buf: &mut BytesMut) {
    buf.put_slice(&[b'I', 0, 0, 0, 4]);
}

/// Severity of an error or notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The statement failed; the connection stays.
    Error,
    /// The connection is being closed.
    Fatal,
    /// A notice.
    Notice,
    /// A warning notice.
    Warning,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
            Severity::Notice => "NOTICE",
            Severity::Warning => "WARNING",
        }
    }
}

/// ErrorResponse (or NoticeResponse for notice severities) with a SQLSTATE,
/// a message and optional detail and hint.
pub fn error_response(
    buf: &mut BytesMut,
    severity: Severity,
    code: &str,
    message: &str,
    detail: Option<&str>,
    hint: Option<&str>,
) {
    let tag = match severity {
        Severity::Error | Severity::Fatal => b'E',
        Severity::Notice | Severity::Warning => b'N',
    };
    let at = begin(buf, tag);
    buf.put_u8(b'S');
    put_cstr(buf, severity.as_str().as_bytes());
    buf.put_u8(b'V');
    put_cstr(buf, severity.as_str().as_bytes());
    buf.put_u8(b'C');
    put_cstr(buf, code.as_bytes());
    buf.put_u8(b'M');
    put_cstr(buf, message.as_bytes());
    if let Some(d) = detail {
        buf.put_u8(b'D');
        put_cstr(buf, d.as_bytes());
    }
    if let Some(h) = hint {
        buf.put_u8(b'H');
        put_cstr(buf, h.as_bytes());
    }
    buf.put_u8(0);
    finish(buf, at);
}

// ---------------------------------------------------------------------------
// Borrowing decoders for message bodies

/// Splits a NUL-terminated string off the front of `body`.
#[inline]
pub fn take_cstr<'a>(body: &mut &'a [u8]) -> Option<&'a [u8]> {
    let nul = memchr(0, body)?;
    let s = &body[..nul];
    *body = &body[nul + 1..];
    Some(s)
}

#[inline]
fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

#[inline]
fn take_u32(body: &mut &[u8]) -> Option<u32> {
    if body.len() < 4 {
        return None;
    }
    let v = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    *body = &body[4..];
    Some(v)
}

#[inline]
fn take_u16(body: &mut &[u8]) -> Option<u16> {
    if body.len() < 2 {
        return None;
    }
    let v = u16::from_be_bytes([body[0], body[1]]);
    *body = &body[2..];
    Some(v)
}

/// An authentication request from a server (message `R`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthRequest<'a> {
    /// AuthenticationOk.
    Ok,
    /// AuthenticationCleartextPassword.
    Cleartext,
    /// AuthenticationMD5Password.
    Md5([u8; 4]),
    /// AuthenticationSASL with its NUL-separated mechanism list.
    Sasl(Vec<&'a str>),
    /// AuthenticationSASLContinue.
    SaslContinue(&'a [u8]),
    /// AuthenticationSASLFinal.
    SaslFinal(&'a [u8]),
    /// Any other method (Kerberos, GSS, SSPI).
    Other(u32),
}

/// Decodes the body of an `R` message.
pub fn decode_auth_request(mut body: &[u8]) -> Option<AuthRequest<'_>> {
    let code = take_u32(&mut body)?;
    Some(match code {
        0 => AuthRequest::Ok,
        3 => AuthRequest::Cleartext,
        5 => {
            if body.len() < 4 {
                return None;
            }
            AuthRequest::Md5([body[0], body[1], body[2], body[3]])
        }
        10 => {
            let mut mechs = Vec::new();
            loop {
                let m = take_cstr(&mut body)?;
                if m.is_empty() {
                    break;
                }
                mechs.push(std::str::from_utf8(m).ok()?);
            }
            AuthRequest::Sasl(mechs)
        }
        11 => AuthRequest::SaslContinue(body),
        12 => AuthRequest::SaslFinal(body),
        other => AuthRequest::Other(other),
    })
}

/// Decodes a ParameterStatus body into name and value.
pub fn decode_parameter_status(mut body: &[u8]) -> Option<(&str, &str)> {
    let name = std::str::from_utf8(take_cstr(&mut body)?).ok()?;
    let value = std::str::from_utf8(take_cstr(&mut body)?).ok()?;
    Some((name, value))
}

/// Decodes a BackendKeyData body into process id and secret.
pub fn decode_backend_key_data(mut body: &[u8]) -> Option<(i32, &[u8])> {
    let pid = take_u32(&mut body)? as i32;
    if body.len() < 4 {
        return None;
    }
    Some((pid, body))
}

/// The fields of an ErrorResponse or NoticeResponse that sqlmux uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFields<'a> {
    /// Non-localized severity (`V`), or the localized one (`S`).
    pub severity: &'a str,
    /// SQLSTATE (`C`).
    pub code: &'a str,
    /// Primary message (`M`).
    pub message: &'a str,
}

/// Decodes an ErrorResponse/NoticeResponse body.
pub fn decode_error_fields(mut body: &[u8]) -> Option<ErrorFields<'_>> {
    let mut f = ErrorFields::default();
    loop {
        let (&kind, rest) = body.split_first()?;
        body = rest;
        if kind == 0 {
            return Some(f);
        }
        let value = std::str::from_utf8(take_cstr(&mut body)?).unwrap_or("");
        match kind {
            b'V' => f.severity = value,
            b'S' if f.severity.is_empty() => f.severity = value,
            b'C' => f.code = value,
            b'M' => f.message = value,
            _ => {}
        }
    }
}

/// The row count at the end of a CommandComplete tag (`SELECT 5`,
/// `INSERT 0 3`, `UPDATE 2`, `COPY 10`); `None` for tags without one.
pub fn command_complete_rows(body: &[u8]) -> Option<u64> {
    let tag = body.strip_suffix(&[0]).unwrap_or(body);
    let last_space = tag.iter().rposition(|&b| b == b' ')?;
    let digits = &tag[last_space + 1..];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(n)
}

/// The command word(s) of a CommandComplete tag, without the row count.
pub fn command_complete_command(body: &[u8]) -> &[u8] {
    let tag = body.strip_suffix(&[0]).unwrap_or(body);
    match tag.iter().position(|&b| b == b' ') {
        Some(sp) => &tag[..sp],
        None => tag,
    }
}

/// A decoded Parse body (borrowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseBody<'a> {
    /// Statement name; empty for the unnamed statement.
    pub name: &'a [u8],
    /// Query text.
    pub query: &'a [u8],
    /// Parameter type OIDs as a raw big-endian array (count 2 bytes + 4 each).
    pub param_types: &'a [u8],
}

/// Decodes a Parse body.
pub fn decode_parse(mut body: &[u8]) -> Option<ParseBody<'_>> {
    let name = take_cstr(&mut body)?;
    let query = take_cstr(&mut body)?;
    let types_start = body;
    let n = take_u16(&mut body)? as usize;
    if body.len() < n * 4 {
        return None;
    }
    Some(ParseBody {
        name,
        query,
        param_types: &types_start[..2 + n * 4],
    })
}

/// The portal and statement names at the start of a Bind body, and the
/// offset at which the rest of the body (formats and values) begins.
pub fn decode_bind_names(body: &[u8]) -> Option<(&[u8], &[u8], usize)> {
    let mut rest = body;
    let portal = take_cstr(&mut rest)?;
    let stmt = take_cstr(&mut rest)?;
    Some((portal, stmt, body.len() - rest.len()))
}

/// Decodes a Describe or Close body: kind (`S` or `P`) and name.
pub fn decode_target(mut body: &[u8]) -> Option<(u8, &[u8])> {
    let (&kind, rest) = body.split_first()?;
    body = rest;
    let name = take_cstr(&mut body)?;
    if kind != b'S' && kind != b'P' {
        return None;
    }
    Some((kind, name))
}

/// Decodes an Execute body: portal name and row limit.
pub fn decode_execute(mut body: &[u8]) -> Option<(&[u8], u32)> {
    let portal = take_cstr(&mut body)?;
    let max = take_u32(&mut body)?;
    Some((portal, max))
}

/// Decodes a simple Query body into its SQL text (without the NUL).
pub fn decode_query(body: &[u8]) -> Option<&[u8]> {
    body.strip_suffix(&[0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::frame::complete_frame;

    fn one(buf: &BytesMut) -> (u8, Vec<u8>) {
        let (h, body) = complete_frame(buf, 1 << 20).unwrap().unwrap();
        assert_eq!(h.frame_len(), buf.len(), "exactly one frame");
        (h.tag, body.to_vec())
    }

    #[test]
    fn error_response_round_trip() {
        let mut buf = BytesMut::new();
        error_response(
            &mut buf,
            Severity::Fatal,
            "28P01",
            "password authentication failed for user \"bob\"",
            None,
            Some("check the password"),
        );
        let (tag, body) = one(&buf);
        assert_eq!(tag, b'E');
        let f = decode_error_fields(&body).unwrap();
        assert_eq!(f.severity, "FATAL");
        assert_eq!(f.code, "28P01");
        assert!(f.message.contains("bob"));
    }

    #[test]
    fn command_complete_parsing() {
        assert_eq!(command_complete_rows(b"SELECT 5\0"), Some(5));
        assert_eq!(command_complete_rows(b"INSERT 0 3\0"), Some(3));
        assert_eq!(command_complete_rows(b"BEGIN\0"), None);
        assert_eq!(command_complete_rows(b"CREATE TABLE\0"), None);
        assert_eq!(command_complete_command(b"INSERT 0 3\0"), b"INSERT");
        assert_eq!(command_complete_command(b"COMMIT\0"), b"COMMIT");
    }

    #[test]
    fn parse_and_bind_decoding() {
        let mut buf = BytesMut::new();
        parse(&mut buf, b"s1", b"select $1", &[23]);
        let (tag, body) = one(&buf);
        assert_eq!(tag, b'P');
        let p = decode_parse(&body).unwrap();
        assert_eq!(p.name, b"s1");
        assert_eq!(p.query, b"select $1");
        assert_eq!(p.param_types, &[0, 1, 0, 0, 0, 23]);
        let bind = b"portal\0stmt\0\0\0\0\0\0\0";
        let (portal, stmt, off) = decode_bind_names(bind).unwrap();
        assert_eq!((portal, stmt, off), (&b"portal"[..], &b"stmt"[..], 12));
    }

    #[test]
    fn auth_request_decoding() {
        let mut buf = BytesMut::new();
        auth_sasl(&mut buf, &["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"]);
        let (_, body) = one(&buf);
        assert_eq!(
            decode_auth_request(&body),
            Some(AuthRequest::Sasl(vec![
                "SCRAM-SHA-256",
                "SCRAM-SHA-256-PLUS"
            ]))
        );
        let mut buf = BytesMut::new();
        auth_md5(&mut buf, [1, 2, 3, 4]);
        let (_, body) = one(&buf);
        assert_eq!(
            decode_auth_request(&body),
            Some(AuthRequest::Md5([1, 2, 3, 4]))
        );
    }

    #[test]
    fn truncated_bodies_decode_to_none() {
        assert_eq!(decode_parse(b"s1\0select"), None);
        assert_eq!(decode_target(b"X\0"), None);
        assert_eq!(decode_execute(b"\0\0\0"), None);
        assert_eq!(decode_auth_request(b"\0\0"), None);
        assert_eq!(decode_error_fields(b"Cabc"), None);
    }
}
