//! Authentication math for `mysql_native_password` and
//! `caching_sha2_password`, on both sides of sqlmux.
//!
//! Where this sits in the flow. Client leg: sqlmux sends a scramble from
//! [`generate_scramble`] and checks the client's answer with
//! [`NativeVerifier::verify`] (or [`Sha2Verifier::verify_fast`]). A correct
//! answer also yields the key sqlmux needs to log in to servers as that user
//! without knowing the password: SHA1(password) for native
//! ([`NativeKey`]), SHA256(password) for caching_sha2 ([`Sha2Key`]).
//! Server leg: [`NativeKey::response`] / [`Sha2Key::response`] answer the
//! server's scramble.
//!
//! The formulas:
//!
//! - native: `SHA1(pw) XOR SHA1(scramble ‖ SHA1(SHA1(pw)))`; the server
//!   stores `SHA1(SHA1(pw))` (mysql.user shows it as `*` + 40 hex digits).
//! - caching_sha2 fast path: `SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) ‖ nonce)`;
//!   the server's cache holds `SHA256(SHA256(pw))`.
//! - caching_sha2 full authentication, after the server sent
//!   [`CACHING_SHA2_PERFORM_FULL_AUTH`](super::handshake::CACHING_SHA2_PERFORM_FULL_AUTH):
//!   over TLS the client sends the password followed by a NUL
//!   ([`cleartext_password`], [`encode_cleartext_password`]). Without TLS
//!   the client sends [`CACHING_SHA2_REQUEST_PUBLIC_KEY`]
//!   (0x02), the server answers AuthMoreData with a PEM public key, and the
//!   client sends `RSA-OAEP(pw XOR nonce)`. sqlmux does not implement that
//!   exchange: [`full_auth_password`] returns [`AuthError::RsaNotSupported`],
//!   whose message tells the user to enable TLS. A server login that needs
//!   full authentication needs the plaintext password in the configuration
//!   (a key recovered from the fast path only works while the server's
//!   cache holds the user).
//!
//! An empty password is answered with an empty auth response, by clients
//! and by sqlmux.
//!
//! # Secrets
//!
//! No `Debug` output here contains a password, a hash or a key.
//! Comparisons of secrets run in constant time.

use crate::ct::{constant_time_eq, xor};
use std::fmt;

use bytes::{BufMut, BytesMut};
use ring::digest::{self, SHA1_FOR_LEGACY_USE_ONLY, SHA256};
use ring::rand::{SecureRandom as _, SystemRandom};
use thiserror::Error;

use super::handshake::CACHING_SHA2_REQUEST_PUBLIC_KEY;
use super::packet;

/// Length of the scramble sqlmux sends.
pub const SCRAMBLE_LEN: usize = 20;

/// A failed authentication step.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// The client asked for the server's RSA public key.
    #[error(
        "caching_sha2_password full authentication without TLS (RSA key exchange) is not \
         supported: connect with TLS (ssl-mode=REQUIRED), or let the client log in once \
         over TLS so the fast path works"
    )]
    RsaNotSupported,
}

/// A fresh scramble: 20 random bytes in 1..=127, never NUL (the handshake
/// terminates it with one) nor `$`, like the ones MySQL sends.
pub fn generate_scramble() -> [u8; SCRAMBLE_LEN] {
    let mut s = [0u8; SCRAMBLE_LEN];
    SystemRandom::new()
        .fill(&mut s)
        .expect("system random source");
    for b in &mut s {
        *b = (*b & 0x7F).max(1);
        if *b == b'$' {
            *b = b'%';
        }
    }
    s
}

fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut ctx = digest::Context::new(&SHA1_FOR_LEGACY_USE_ONLY);
    parts.iter().for_each(|p| ctx.update(p));
    ctx.finish().as_ref().try_into().expect("SHA1 is 20 bytes")
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&SHA256);
    parts.iter().for_each(|p| ctx.update(p));
    ctx.finish()
        .as_ref()
        .try_into()
        .expect("SHA256 is 32 bytes")
}

// ---------------------------------------------------------------------------
// mysql_native_password

/// What sqlmux stores to verify a native-password client.
#[derive(Clone, PartialEq, Eq)]
pub enum NativeVerifier {
    /// The account has no password: only an empty response is accepted.
    NoPassword,
    /// SHA1(SHA1(password)).
    Hash([u8; 20]),
}

impl fmt::Debug for NativeVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NativeVerifier::NoPassword => f.write_str("NativeVerifier::NoPassword"),
            NativeVerifier::Hash(_) => f.write_str("NativeVerifier::Hash(..)"),
        }
    }
}

impl NativeVerifier {
    /// The verifier of a plaintext password.
    pub fn from_password(password: &[u8]) -> Self {
        if password.is_empty() {
            return NativeVerifier::NoPassword;
        }
        NativeVerifier::Hash(sha1(&[&sha1(&[password])]))
    }

    /// A configured password: the `*` + 40 hex digits form MySQL and
    /// MariaDB store (`SELECT PASSWORD('...')`), or else a plaintext password.
    pub fn from_config(s: &str) -> Self {
        match parse_mysql_hash(s) {
            Some(h) => NativeVerifier::Hash(h),
            None => Self::from_password(s.as_bytes()),
        }
    }

    /// The `*HEX` form (empty for no password).
    pub fn to_mysql_string(&self) -> String {
        match self {
            NativeVerifier::NoPassword => String::new(),
            NativeVerifier::Hash(h) => {
                let hex: String = h.iter().map(|b| format!("{b:02X}")).collect();
                format!("*{hex}")
            }
        }
    }

    /// Checks a client's auth response to `scramble`; on success returns the
    /// key that logs in to servers as the same user.
    pub fn verify(&self, scramble: &[u8], response: &[u8]) -> Option<NativeKey> {
        match self {
            NativeVerifier::NoPassword => response.is_empty().then_some(NativeKey::NoPassword),
            NativeVerifier::Hash(stored) => {
                let response: &[u8; 20] = response.try_into().ok()?;
                let candidate = xor(response, &sha1(&[scramble, stored]));
                constant_time_eq(&sha1(&[&candidate]), stored).then_some(NativeKey::Sha1(candidate))
            }
        }
    }

    /// Checks a plaintext password (`mysql_clear_password` over TLS).
    pub fn verify_cleartext(&self, password: &[u8]) -> Option<NativeKey> {
        let ok = match (self, Self::from_password(password)) {
            (NativeVerifier::NoPassword, NativeVerifier::NoPassword) => true,
            (NativeVerifier::Hash(a), NativeVerifier::Hash(b)) => constant_time_eq(a, &b),
            _ => false,
        };
        ok.then(|| NativeKey::from_password(password))
    }
}

fn parse_mysql_hash(s: &str) -> Option<[u8; 20]> {
    let hex = s.strip_prefix('*')?.as_bytes();
    if hex.len() != 40 {
        return None;
    }
    let mut out = [0u8; 20];
    for (i, pair) in hex.chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// What logs in to a server with `mysql_native_password`.
#[derive(Clone, PartialEq, Eq)]
pub enum NativeKey {
    /// Empty password: send an empty response.
    NoPassword,
    /// SHA1(password).
    Sha1([u8; 20]),
}

impl fmt::Debug for NativeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NativeKey::NoPassword => f.write_str("NativeKey::NoPassword"),
            NativeKey::Sha1(_) => f.write_str("NativeKey::Sha1(..)"),
        }
    }
}

impl NativeKey {
    /// The key of a plaintext password.
    pub fn from_password(password: &[u8]) -> Self {
        if password.is_empty() {
            return NativeKey::NoPassword;
        }
        NativeKey::Sha1(sha1(&[password]))
    }

    /// The auth response to a server's `scramble` (20 bytes, or empty).
    pub fn response(&self, scramble: &[u8]) -> Vec<u8> {
        match self {
            NativeKey::NoPassword => Vec::new(),
            NativeKey::Sha1(h1) => xor(h1, &sha1(&[scramble, &sha1(&[h1])])).to_vec(),
        }
    }
}

// ---------------------------------------------------------------------------
// caching_sha2_password

/// What sqlmux stores to verify a caching_sha2 client on the fast path.
#[derive(Clone, PartialEq, Eq)]
pub enum Sha2Verifier {
    /// The account has no password: only an empty response is accepted.
    NoPassword,
    /// SHA256(SHA256(password)).
    Hash([u8; 32]),
}

impl fmt::Debug for Sha2Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sha2Verifier::NoPassword => f.write_str("Sha2Verifier::NoPassword"),
            Sha2Verifier::Hash(_) => f.write_str("Sha2Verifier::Hash(..)"),
        }
    }
}

impl Sha2Verifier {
    /// The verifier of a plaintext password.
    pub fn from_password(password: &[u8]) -> Self {
        if password.is_empty() {
            return Sha2Verifier::NoPassword;
        }
        Sha2Verifier::Hash(sha256(&[&sha256(&[password])]))
    }

    /// Checks a client's fast-path response to `nonce` (the 20-byte
    /// scramble); on success returns SHA256(password) for server logins.
    pub fn verify_fast(&self, nonce: &[u8], response: &[u8]) -> Option<Sha2Key> {
        match self {
            Sha2Verifier::NoPassword => response.is_empty().then_some(Sha2Key::NoPassword),
            Sha2Verifier::Hash(stored) => {
                let response: &[u8; 32] = response.try_into().ok()?;
                let candidate = xor(response, &sha256(&[stored, nonce]));
                constant_time_eq(&sha256(&[&candidate]), stored)
                    .then_some(Sha2Key::Sha256(candidate))
            }
        }
    }

    /// Checks the password a client sent in full authentication (over TLS).
    pub fn verify_cleartext(&self, password: &[u8]) -> Option<Sha2Key> {
        let ok = match (self, Self::from_password(password)) {
            (Sha2Verifier::NoPassword, Sha2Verifier::NoPassword) => true,
            (Sha2Verifier::Hash(a), Sha2Verifier::Hash(b)) => constant_time_eq(a, &b),
            _ => false,
        };
        ok.then(|| Sha2Key::from_password(password))
    }
}

/// What answers a server's caching_sha2 fast path.
#[derive(Clone, PartialEq, Eq)]
pub enum Sha2Key {
    /// Empty password: send an empty response.
    NoPassword,
    /// SHA256(password).
    Sha256([u8; 32]),
}

impl fmt::Debug for Sha2Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sha2Key::NoPassword => f.write_str("Sha2Key::NoPassword"),
            Sha2Key::Sha256(_) => f.write_str("Sha2Key::Sha256(..)"),
        }
    }
}

impl Sha2Key {
    /// The key of a plaintext password.
    pub fn from_password(password: &[u8]) -> Self {
        if password.is_empty() {
            return Sha2Key::NoPassword;
        }
        Sha2Key::Sha256(sha256(&[password]))
    }

    /// The fast-path response to a server's `nonce` (32 bytes, or empty).
    pub fn response(&self, nonce: &[u8]) -> Vec<u8> {
        match self {
            Sha2Key::NoPassword => Vec::new(),
            Sha2Key::Sha256(h1) => xor(h1, &sha256(&[&sha256(&[h1]), nonce])).to_vec(),
        }
    }
}

/// The password in a full-authentication packet from a client: the payload
/// without its trailing NUL.
pub fn cleartext_password(payload: &[u8]) -> &[u8] {
    payload.strip_suffix(&[0]).unwrap_or(payload)
}

/// The client's answer to "perform full authentication": its password, or
/// [`AuthError::RsaNotSupported`] if it asked for the RSA public key.
pub fn full_auth_password(payload: &[u8]) -> Result<&[u8], AuthError> {
    if payload == [CACHING_SHA2_REQUEST_PUBLIC_KEY] {
        return Err(AuthError::RsaNotSupported);
    }
    Ok(cleartext_password(payload))
}

/// Appends the full-authentication answer of a client over TLS (the
/// password and a NUL); returns the next sequence id.
pub fn encode_cleartext_password(out: &mut BytesMut, seq: u8, password: &[u8]) -> u8 {
    let at = packet::begin(out);
    out.put_slice(password);
    out.put_u8(0);
    packet::finish(out, at, seq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::test_hex as hex;

    /// The scramble the `mariadb` CLI answered in the captured login.
    fn scramble() -> Vec<u8> {
        (0x21..=0x34).collect()
    }

    #[test]
    fn native_response_matches_the_mariadb_client() {
        // Captured: the CLI's response for password "secret".
        let want = hex("1f44f306295a10870fd7895d358cb5f975d7d47f");
        assert_eq!(
            NativeKey::from_password(b"secret").response(&scramble()),
            want
        );
    }

    #[test]
    fn native_verify_accepts_hash_or_plaintext_and_recovers_sha1() {
        let response = hex("1f44f306295a10870fd7895d358cb5f975d7d47f");
        // SELECT PASSWORD('secret') on MariaDB 10.11.
        let stored = "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7";
        for v in [
            NativeVerifier::from_config(stored),
            NativeVerifier::from_config("secret"),
        ] {
            assert_eq!(v.to_mysql_string(), stored);
            let key = v.verify(&scramble(), &response).unwrap();
            // hashlib.sha1(b"secret")
            let sha1_pw = hex("e5e9fa1ba31ecd1ae84f75caaa474f3a663f05f4");
            assert_eq!(key, NativeKey::Sha1(sha1_pw.try_into().unwrap()));
            // The recovered key answers a different scramble correctly.
            let other = [9u8; 20];
            assert_eq!(
                key.response(&other),
                NativeKey::from_password(b"secret").response(&other)
            );
        }
        let v = NativeVerifier::from_config(stored);
        let mut wrong = response.clone();
        wrong[0] ^= 1;
        assert_eq!(v.verify(&scramble(), &wrong), None);
        assert_eq!(v.verify(&scramble(), &[]), None);
        assert!(v.verify_cleartext(b"secret").is_some());
        assert!(v.verify_cleartext(b"Secret").is_none());
    }

    #[test]
    fn empty_password_means_empty_response() {
        let v = NativeVerifier::from_config("");
        assert_eq!(v.verify(&scramble(), &[]), Some(NativeKey::NoPassword));
        assert_eq!(v.verify(&scramble(), &[0; 20]), None);
        assert!(NativeKey::NoPassword.response(&scramble()).is_empty());
        let v = Sha2Verifier::from_password(b"");
        assert_eq!(v.verify_fast(&scramble(), &[]), Some(Sha2Key::NoPassword));
        assert!(
            Sha2Verifier::from_password(b"x")
                .verify_fast(&scramble(), &[])
                .is_none()
        );
    }

    #[test]
    fn caching_sha2_known_answers() {
        // hashlib: sha256(b"secret"), sha256(sha256(b"secret")) and the
        // fast-path response for the nonce 0x21..=0x34.
        let h1 = hex("2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b");
        let h2 = hex("3881219d087dd9c634373fd33dfa33a2cb6bfc6c520b64b8bb60ef2ceb534ae7");
        let want = hex("3e6e1d1225dfe8531b46e47caf897453dba8211b1e2fdca5e10ef0f98718b18e");
        let key = Sha2Key::from_password(b"secret");
        assert_eq!(key, Sha2Key::Sha256(h1.clone().try_into().unwrap()));
        assert_eq!(key.response(&scramble()), want);
        let v = Sha2Verifier::from_password(b"secret");
        assert_eq!(v, Sha2Verifier::Hash(h2.try_into().unwrap()));
        assert_eq!(v.verify_fast(&scramble(), &want), Some(key.clone()));
        assert_eq!(v.verify_fast(&[0; 20], &want), None);
        assert_eq!(v.verify_cleartext(b"secret"), Some(key));
    }

    #[test]
    fn full_auth_cleartext_and_rsa_refusal() {
        let mut out = BytesMut::new();
        assert_eq!(encode_cleartext_password(&mut out, 5, b"secret"), 6);
        assert_eq!(&out[..], b"\x07\0\0\x05secret\0");
        assert_eq!(full_auth_password(&out[4..]), Ok(&b"secret"[..]));
        let err = full_auth_password(&[CACHING_SHA2_REQUEST_PUBLIC_KEY]).unwrap_err();
        assert!(err.to_string().contains("TLS"));
    }

    #[test]
    fn scrambles_have_no_nul_and_differ() {
        let a = generate_scramble();
        assert!(a.iter().all(|&b| (1..=0x7F).contains(&b) && b != b'$'));
        assert_ne!(a, generate_scramble());
    }

    #[test]
    fn debug_output_hides_secrets() {
        let s = format!(
            "{:?} {:?} {:?} {:?}",
            NativeVerifier::from_password(b"secret"),
            NativeKey::from_password(b"secret"),
            Sha2Verifier::from_password(b"secret"),
            Sha2Key::from_password(b"secret")
        );
        assert!(!s.contains(['[', ',']), "{s}");
    }
}
