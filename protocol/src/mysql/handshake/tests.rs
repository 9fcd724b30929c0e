//! Handshake tests on packets captured from MariaDB 10.11.19 and from the
//! `mariadb` command-line client (libmariadb 3.3).

use super::*;
use crate::mysql::caps::{CLIENT_DEPRECATE_EOF, CLIENT_PROTOCOL_41, CLIENT_SESSION_TRACK};
use crate::mysql::test_hex as hex;

/// MariaDB 10.11.19's handshake.
const MARIADB_HANDSHAKE: &str = "640000000a352e352e352d31302e31312e31392d4d6172696144422d302b64656231327531000a00000079264b27216d246900fef72d0200ff81150000000000001d00000065415259483e3d5824482166006d7973716c5f6e61746976655f70617373776f726400";

/// The `mariadb` CLI logging in as appuser/secret to database `test`
/// against the scramble 0x21..=0x34.
const CLI_RESPONSE: &str = "d80000018ca2bf00000010002100000000000000000000000000000000000000000000006170707573657200141f44f306295a10870fd7895d358cb5f975d7d47f74657374006d7973716c5f6e61746976655f70617373776f7264007f035f6f73054c696e75780c5f636c69656e745f6e616d650a6c69626d617269616462045f7069640531373537300f5f636c69656e745f76657273696f6e06332e332e3230095f706c6174666f726d067838365f36340c70726f6772616d5f6e616d65056d7973716c0c5f7365727665725f686f7374093132372e302e302e31";

fn payload(packet_hex: &str) -> Vec<u8> {
    hex(packet_hex)[4..].to_vec()
}

#[test]
fn decodes_mariadb_handshake() {
    let hs = InitialHandshake::decode(&payload(MARIADB_HANDSHAKE)).unwrap();
    assert_eq!(hs.server_version, "5.5.5-10.11.19-MariaDB-0+deb12u1");
    assert_eq!(hs.connection_id, 10);
    assert_eq!(hs.capabilities, 0x81ff_f7fe);
    assert_eq!(hs.mariadb_capabilities, 0x1d);
    assert_eq!((hs.collation, hs.status), (45, ServerStatus(2)));
    assert_eq!(hs.auth_plugin, MYSQL_NATIVE_PASSWORD);
    assert_eq!(hs.scramble, hex("79264b27216d246965415259483e3d5824482166"));
}

#[test]
fn encodes_the_handshake_byte_for_byte() {
    let hs = InitialHandshake::decode(&payload(MARIADB_HANDSHAKE)).unwrap();
    let mut out = BytesMut::new();
    assert_eq!(hs.encode(&mut out, 0), 1);
    assert_eq!(&out[..], &hex(MARIADB_HANDSHAKE)[..]);
}

#[test]
fn mysql_handshake_without_mariadb_capabilities() {
    let hs = InitialHandshake {
        server_version: "8.4.0".into(),
        connection_id: 99,
        scramble: (1..=20).collect(),
        capabilities: 0xdfff_ffff,
        mariadb_capabilities: 0,
        collation: 255,
        status: ServerStatus(2),
        auth_plugin: CACHING_SHA2_PASSWORD.into(),
    };
    let mut out = BytesMut::new();
    hs.encode(&mut out, 0);
    let (_, p) = packet::complete_packet(&out).unwrap();
    assert_eq!(InitialHandshake::decode(p).unwrap(), hs);
    assert!(InitialHandshake::decode(&p[..20]).is_err());
    assert!(InitialHandshake::decode(b"\x09").is_err());
}

#[test]
fn decodes_the_cli_response_with_attributes() {
    let p = payload(CLI_RESPONSE);
    assert_eq!(SslRequest::decode(&p), None);
    let r = HandshakeResponse::decode(&p).unwrap();
    assert_eq!(r.head.capabilities, 0x00bf_a28c);
    assert_eq!((r.head.max_packet, r.head.collation), (1 << 20, 33));
    assert_eq!(r.user, "appuser");
    assert_eq!(
        r.auth_response,
        hex("1f44f306295a10870fd7895d358cb5f975d7d47f")
    );
    assert_eq!(r.database, Some("test"));
    assert_eq!(r.auth_plugin, Some(MYSQL_NATIVE_PASSWORD));
    let attrs: Vec<_> = r.attributes().collect();
    assert_eq!(attrs.len(), 7);
    assert!(attrs.contains(&(&b"program_name"[..], &b"mysql"[..])));
    // Re-encoding gives the same bytes.
    let mut out = BytesMut::new();
    r.encode(&mut out, 1);
    assert_eq!(&out[..], &hex(CLI_RESPONSE)[..]);
}

#[test]
fn detects_the_cli_ssl_request() {
    let p = payload("200000018caabf0000001000210000000000000000000000000000000000000000000000");
    let ssl = SslRequest::decode(&p).unwrap();
    assert_ne!(ssl.capabilities & CLIENT_SSL, 0);
    let mut out = BytesMut::new();
    assert_eq!(ssl.encode(&mut out, 1), 2);
    assert_eq!(&out[4..], &p[..]);
}

#[test]
fn response_variants_of_the_auth_data() {
    let base =
        CLIENT_PROTOCOL_41 | CLIENT_PLUGIN_AUTH | CLIENT_SESSION_TRACK | CLIENT_DEPRECATE_EOF;
    for extra in [
        CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA,
        CLIENT_SECURE_CONNECTION,
    ] {
        let mut attrs = BytesMut::new();
        put_attribute(&mut attrs, "_client_name", "sqlmux");
        let r = HandshakeResponse {
            head: SslRequest {
                capabilities: base | extra | CLIENT_CONNECT_WITH_DB | CLIENT_CONNECT_ATTRS,
                max_packet: 1 << 24,
                collation: 45,
                mariadb_capabilities: 0x1d,
            },
            user: "u",
            auth_response: &[7; 32],
            database: Some("app"),
            auth_plugin: Some(CACHING_SHA2_PASSWORD),
            raw_attributes: &attrs,
        };
        let mut out = BytesMut::new();
        r.encode(&mut out, 2);
        let (h, p) = packet::complete_packet(&out).unwrap();
        assert_eq!(h.seq, 2);
        let d = HandshakeResponse::decode(p).unwrap();
        assert_eq!(
            (d.auth_response, d.raw_attributes),
            (r.auth_response, r.raw_attributes)
        );
        assert_eq!(d, r);
    }
    // Old-style NUL-terminated auth data, no plugin, no database.
    let mut p = vec![0u8; 32];
    p[..4].copy_from_slice(&CLIENT_PROTOCOL_41.to_le_bytes());
    p.extend_from_slice(b"bob\0pw\0");
    let r = HandshakeResponse::decode(&p).unwrap();
    assert_eq!(
        (r.user, r.auth_response, r.database, r.auth_plugin),
        ("bob", &b"pw"[..], None, None)
    );
    let mut out = BytesMut::new();
    r.encode(&mut out, 1);
    assert_eq!(&out[4..], &p[..]);
    assert!(HandshakeResponse::decode(&p[..31]).is_err());
}

#[test]
fn auth_switch_from_change_user() {
    let p = payload(
        "2c000001fe6d7973716c5f6e61746976655f70617373776f72640053507479254777442b4b742b72224f4858656f2300",
    );
    let AuthReply::Switch(sw) = AuthReply::decode(&p).unwrap() else {
        panic!("not a switch")
    };
    assert_eq!(sw.plugin, MYSQL_NATIVE_PASSWORD);
    assert_eq!(sw.scramble().len(), 20);
    let mut out = BytesMut::new();
    AuthSwitchRequest::encode(&mut out, 1, sw.plugin, sw.scramble());
    assert_eq!(&out[4..], &p[..]);
}

#[test]
fn auth_more_data_and_markers() {
    let mut out = BytesMut::new();
    encode_auth_more_data(&mut out, 2, &[CACHING_SHA2_FAST_AUTH_SUCCESS]);
    assert_eq!(&out[..], &[2, 0, 0, 2, 1, 3]);
    assert_eq!(
        AuthReply::decode(&out[4..]),
        Ok(AuthReply::MoreData(&[CACHING_SHA2_FAST_AUTH_SUCCESS]))
    );
    assert_eq!(AuthReply::decode(&[0, 0, 0, 2, 0, 0, 0]), Ok(AuthReply::Ok));
    assert_eq!(AuthReply::decode(&[0xff, 0x15, 0x04]), Ok(AuthReply::Err));
    assert!(AuthReply::decode(&[]).is_err());
}
