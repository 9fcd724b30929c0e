//! Password verification math for PostgreSQL: md5 and SCRAM-SHA-256
//! (RFC 5802 / RFC 7677), as PostgreSQL speaks them.
//!
//! Where this sits in the flow: a client session in `proxy/src/postgres`
//! authenticates the client with [`ScramServer`] (or [`md5_matches`]) against
//! the verifier sqlmux holds for that user; a server connection logs in to
//! PostgreSQL with [`ScramClient`] (or [`md5_salted`]). A server login may use
//! either the configured password or, PgBouncer-style, the ClientKey that
//! [`ScramServer::client_final`] recovered from the client's own proof
//! together with the ServerKey of the verifier
//! ([`ScramCredentials::from_client_key`]).
//!
//! Nothing here does I/O. Every SCRAM step takes the SASL payload (the data
//! inside SASLInitialResponse, SASLResponse, AuthenticationSASLContinue or
//! AuthenticationSASLFinal) and returns the payload to send back; framing
//! those messages is the caller's job.
//!
//! Only `SCRAM-SHA-256` is implemented: channel binding
//! (`SCRAM-SHA-256-PLUS`) is neither offered by [`ScramServer`] nor used by
//! [`ScramClient`].
//!
//! # Secrets
//!
//! No `Debug` output of this module contains a password, a key, a salt or a
//! proof. Key material is not zeroed on drop (no `zeroize` dependency).
//!
//! # Passwords and SASLprep
//!
//! PostgreSQL runs a password through SASLprep (RFC 4013) before hashing it
//! for SCRAM, and falls back to the raw bytes when SASLprep fails (invalid
//! UTF-8, prohibited characters, an empty result). This module does the same
//! for every pure-ASCII password, which PostgreSQL itself passes through
//! unchanged. A non-ASCII password is used as its raw UTF-8 bytes; that matches
//! PostgreSQL when SASLprep would leave the password unchanged (already NFKC,
//! for example `pässwörd` typed on a usual keyboard) or would reject it, and
//! differs when SASLprep would rewrite it: non-ASCII spaces such as U+00A0
//! (mapped to a space), characters mapped to nothing such as U+00AD, and
//! compatibility characters such as U+FB01 `ﬁ` (NFKC gives `fi`). Full
//! SASLprep needs the Unicode normalization tables of the `stringprep` crate.
//! md5 authentication never applies SASLprep, in PostgreSQL or here.

use crate::ct::{constant_time_eq, xor};
use std::fmt;
use std::num::NonZeroU32;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use md5::{Digest as _, Md5};
use ring::rand::{SecureRandom as _, SystemRandom};
use ring::{digest, hmac, pbkdf2};

/// PBKDF2 iterations of [`ScramVerifier::generate`]: PostgreSQL's default
/// (`scram_iterations`).
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// Salt length of [`ScramVerifier::generate`], as PostgreSQL uses.
const SALT_LEN: usize = 16;
/// Random bytes in each side's part of the nonce, as PostgreSQL uses.
const NONCE_LEN: usize = 18;
/// Length of SHA-256 output and so of every SCRAM key.
const KEY_LEN: usize = 32;
/// Mechanism name at the start of a stored verifier.
const SCRAM_SCHEME: &str = "SCRAM-SHA-256";

/// Error in a SCRAM exchange.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ScramError {
    /// A message did not follow RFC 5802 syntax.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client proof did not match the verifier (wrong password).
    #[error("password authentication failed")]
    BadProof,
    /// The server's signature did not match (server does not know the password).
    #[error("server signature mismatch")]
    BadServerSignature,
    /// The server answered with `e=...`.
    #[error("server reported SCRAM error: {0}")]
    ServerError(String),
    /// The nonce from the peer does not extend ours.
    #[error("nonce mismatch")]
    NonceMismatch,
    /// Channel binding was requested but is not supported.
    #[error("channel binding is not supported")]
    ChannelBinding,
}

// ---------------------------------------------------------------------------
// md5

/// `"md5" + hex(md5(password + user))`: what PostgreSQL stores in pg_authid.
pub fn md5_hash(user: &str, password: &str) -> String {
    md5_prefixed_hex(&[password.as_bytes(), user.as_bytes()])
}

/// Response to AuthenticationMD5Password given the stored `md5...` hash:
/// `"md5" + hex(md5(hex_part_of_stored + salt))`.
///
/// `stored_md5` may be given with or without its `md5` prefix. A client sends
/// this value (NUL-terminated) in its PasswordMessage; a server computes it
/// to compare, see [`md5_matches`].
pub fn md5_salted(stored_md5: &str, salt: [u8; 4]) -> String {
    let hex = stored_md5.strip_prefix("md5").unwrap_or(stored_md5);
    md5_prefixed_hex(&[hex.as_bytes(), &salt])
}

/// Whether `response` (a client's PasswordMessage without its trailing NUL)
/// answers AuthenticationMD5Password with `salt` for the stored `md5...`
/// hash. Compares in constant time.
pub fn md5_matches(stored_md5: &str, salt: [u8; 4], response: &[u8]) -> bool {
    constant_time_eq(md5_salted(stored_md5, salt).as_bytes(), response)
}

/// Whether `password` is the one behind the stored `md5...` hash of `user`
/// (a plaintext check, e.g. for HTTP basic auth). Compares in constant time.
pub fn md5_matches_password(stored_md5: &str, user: &str, password: &str) -> bool {
    constant_time_eq(md5_hash(user, password).as_bytes(), stored_md5.as_bytes())
}

/// `"md5"` followed by the lowercase hex md5 of the concatenated parts.
fn md5_prefixed_hex(parts: &[&[u8]]) -> String {
    let mut hasher = Md5::new();
    for part in parts {
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut out = String::with_capacity(3 + 2 * digest.len());
    out.push_str("md5");
    for byte in digest.iter() {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

// ---------------------------------------------------------------------------
// Verifier

/// A SCRAM-SHA-256 verifier as PostgreSQL stores it.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// Salt bytes (decoded).
    pub salt: Vec<u8>,
    /// H(ClientKey).
    pub stored_key: [u8; 32],
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: [u8; 32],
}

impl fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ScramVerifier(..)")
    }
}

impl ScramVerifier {
    /// Parses `SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>`.
    ///
    /// Returns `None` on anything malformed: another scheme, a missing part,
    /// iterations that are 0 or not a decimal `u32`, an empty salt, base64
    /// that is not canonical standard base64 with padding, or a key that is
    /// not 32 bytes long.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split('$');
        let (scheme, params, keys) = (parts.next()?, parts.next()?, parts.next()?);
        if scheme != SCRAM_SCHEME || parts.next().is_some() {
            return None;
        }
        let (iterations, salt) = params.split_once(':')?;
        let (stored_key, server_key) = keys.split_once(':')?;
        let iterations = parse_iterations(iterations.as_bytes())?;
        let salt = BASE64.decode(salt).ok().filter(|salt| !salt.is_empty())?;
        Some(Self {
            iterations: iterations.get(),
            salt,
            stored_key: decode_key(stored_key.as_bytes())?,
            server_key: decode_key(server_key.as_bytes())?,
        })
    }

    /// Derives a verifier from a password (SASLprep'd), salt and iterations.
    ///
    /// See the module documentation for how SASLprep is applied.
    ///
    /// # Panics
    ///
    /// If `iterations` is 0 (PBKDF2 is undefined there; [`ScramVerifier::parse`]
    /// never yields such a verifier).
    pub fn from_password(password: &str, salt: &[u8], iterations: u32) -> Self {
        let iterations =
            NonZeroU32::new(iterations).expect("SCRAM iteration count must be at least 1");
        let keys = ScramKeys::from_password(password, salt, iterations);
        Self {
            iterations: iterations.get(),
            salt: salt.to_vec(),
            stored_key: sha256(&keys.client_key),
            server_key: keys.server_key,
        }
    }

    /// Whether `password` is the one this verifier was made from: derives
    /// the keys again with the verifier's salt and iterations (one PBKDF2
    /// run, so this costs what a SCRAM login costs the client) and compares
    /// them in constant time. For plaintext checks such as HTTP basic auth.
    pub fn matches_password(&self, password: &str) -> bool {
        let Some(iterations) = NonZeroU32::new(self.iterations) else {
            return false;
        };
        let keys = ScramKeys::from_password(password, &self.salt, iterations);
        let stored = constant_time_eq(&sha256(&keys.client_key), &self.stored_key);
        let server = constant_time_eq(&keys.server_key, &self.server_key);
        stored & server
    }

    /// A verifier with a random 16-byte salt and 4096 iterations.
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails.
    pub fn generate(password: &str) -> Self {
        let salt: [u8; SALT_LEN] = random_bytes();
        Self::from_password(password, &salt, DEFAULT_ITERATIONS)
    }
}

impl fmt::Display for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCRAM_SCHEME}${}:{}${}:{}",
            self.iterations,
            BASE64.encode(&self.salt),
            BASE64.encode(self.stored_key),
            BASE64.encode(self.server_key),
        )
    }
}

/// ClientKey and ServerKey: what it takes to log in to a server.
struct ScramKeys {
    client_key: [u8; KEY_LEN],
    server_key: [u8; KEY_LEN],
}

impl ScramKeys {
    /// SaltedPassword = PBKDF2-HMAC-SHA-256(password, salt, iterations);
    /// ClientKey and ServerKey are HMACs of fixed strings under it.
    fn from_password(password: &str, salt: &[u8], iterations: NonZeroU32) -> Self {
        let mut salted_password = [0u8; KEY_LEN];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iterations,
            salt,
            &prepared_password(password),
            &mut salted_password,
        );
        Self {
            client_key: hmac_sha256(&salted_password, &[b"Client Key"]),
            server_key: hmac_sha256(&salted_password, &[b"Server Key"]),
        }
    }
}

/// The bytes PostgreSQL hashes for `password`: SASLprep for ASCII (the
/// identity), raw UTF-8 for anything else. See the module documentation for
/// where that differs from PostgreSQL and why.
fn prepared_password(password: &str) -> std::borrow::Cow<'_, [u8]> {
    // PostgreSQL's pg_saslprep: ASCII passwords pass unchanged; otherwise
    // SASLprep (RFC 4013), falling back to the raw bytes when the password
    // is not valid under SASLprep (prohibited or unassigned characters).
    if password.is_ascii() {
        return std::borrow::Cow::Borrowed(password.as_bytes());
    }
    match stringprep::saslprep(password) {
        Ok(std::borrow::Cow::Borrowed(s)) => std::borrow::Cow::Borrowed(s.as_bytes()),
        Ok(std::borrow::Cow::Owned(s)) => std::borrow::Cow::Owned(s.into_bytes()),
        Err(_) => std::borrow::Cow::Borrowed(password.as_bytes()),
    }
}

// ---------------------------------------------------------------------------
// Server side

/// Server side of SCRAM-SHA-256: sqlmux authenticating a client.
///
/// One value serves one exchange: [`ScramServer::client_first`], then
/// [`ScramServer::client_final`]. Any error ends the exchange; a later call
/// returns [`ScramError::Malformed`].
///
/// Channel binding is not offered, so a client that requires it (`p=` in its
/// gs2 header) gets [`ScramError::ChannelBinding`], and one that says it
/// supports channel binding but believes the server does not (`y`) is
/// accepted. Should sqlmux ever advertise `SCRAM-SHA-256-PLUS`, a `y` client
/// must be refused instead (it would signal a downgrade attack).
pub struct ScramServer {
    verifier: ScramVerifier,
    /// Our part of the nonce, appended to the client's.
    server_nonce: String,
    state: ServerState,
}

enum ServerState {
    /// Waiting for the client-first-message.
    Initial,
    /// The server-first-message was sent; waiting for the client-final-message.
    Challenged(Challenge),
    /// The exchange ended, in success or failure.
    Finished,
}

/// What the server remembers between its two steps.
struct Challenge {
    /// The gs2 header the client sent (`n,,` or `y,,`); `c=` must repeat it.
    gs2_header: &'static [u8],
    client_first_bare: Vec<u8>,
    server_first: Vec<u8>,
    /// Client nonce followed by server nonce.
    nonce: Vec<u8>,
}

impl fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            ServerState::Initial => "initial",
            ServerState::Challenged(_) => "challenged",
            ServerState::Finished => "finished",
        };
        f.debug_struct("ScramServer")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl ScramServer {
    /// Starts an exchange against `verifier` with a fresh random nonce.
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails.
    pub fn new(verifier: ScramVerifier) -> Self {
        Self::with_nonce(verifier, &random_nonce())
    }

    /// Starts an exchange with a given server part of the nonce, for
    /// deterministic tests (e.g. the RFC 7677 example). Production code uses
    /// [`ScramServer::new`]: a predictable nonce allows replaying a proof.
    ///
    /// # Panics
    ///
    /// If `server_nonce` is empty or holds a byte outside printable ASCII
    /// (`0x21..=0x7e`) or a comma.
    pub fn with_nonce(verifier: ScramVerifier, server_nonce: &str) -> Self {
        assert!(
            is_valid_nonce(server_nonce.as_bytes()),
            "a SCRAM nonce must be non-empty printable ASCII without ','"
        );
        Self {
            verifier,
            server_nonce: server_nonce.to_owned(),
            state: ServerState::Initial,
        }
    }

    /// Takes the client-first-message (the SASLInitialResponse data) and
    /// returns the server-first-message.
    ///
    /// Accepts gs2 headers `n,,` and `y,,`; the user name in `n=` is ignored
    /// (PostgreSQL clients send it empty, the startup packet names the user).
    /// An authorization identity or a mandatory extension (`m=`) is refused
    /// with [`ScramError::Malformed`], as PostgreSQL does.
    pub fn client_first(&mut self, msg: &[u8]) -> Result<Vec<u8>, ScramError> {
        // Any early return below ends the exchange.
        let state = std::mem::replace(&mut self.state, ServerState::Finished);
        if !matches!(state, ServerState::Initial) {
            return Err(ScramError::Malformed("client-first-message out of order"));
        }
        let (gs2_header, bare) = split_gs2_header(msg)?;
        let mut attrs = bare.split(|&b| b == b',');
        let user = attrs.next().unwrap_or_default();
        if user.starts_with(b"m=") {
            return Err(ScramError::Malformed(
                "mandatory extension is not supported",
            ));
        }
        attribute(user, b'n').ok_or(ScramError::Malformed("expected user name (n=)"))?;
        let client_nonce = attrs
            .next()
            .and_then(|attr| attribute(attr, b'r'))
            .ok_or(ScramError::Malformed("expected nonce (r=)"))?;
        if !is_valid_nonce(client_nonce) {
            return Err(ScramError::Malformed("nonce is empty or not printable"));
        }
        // Extensions that may follow are ignored, as PostgreSQL does.

        let mut nonce = client_nonce.to_vec();
        nonce.extend_from_slice(self.server_nonce.as_bytes());
        let mut server_first = b"r=".to_vec();
        server_first.extend_from_slice(&nonce);
        server_first.extend_from_slice(
            format!(
                ",s={},i={}",
                BASE64.encode(&self.verifier.salt),
                self.verifier.iterations
            )
            .as_bytes(),
        );
        self.state = ServerState::Challenged(Challenge {
            gs2_header,
            client_first_bare: bare.to_vec(),
            server_first: server_first.clone(),
            nonce,
        });
        Ok(server_first)
    }

    /// Takes the client-final-message; on a valid proof returns the
    /// server-final-message and the ClientKey recovered from the proof.
    ///
    /// The ClientKey, with the verifier's ServerKey, lets sqlmux log in to a
    /// server that holds the same verifier ([`ScramCredentials::from_client_key`]).
    /// The proof is checked in constant time.
    pub fn client_final(&mut self, msg: &[u8]) -> Result<(Vec<u8>, [u8; 32]), ScramError> {
        let ServerState::Challenged(challenge) =
            std::mem::replace(&mut self.state, ServerState::Finished)
        else {
            return Err(ScramError::Malformed("client-final-message out of order"));
        };
        let (without_proof, proof) = split_proof(msg)?;
        let mut attrs = without_proof.split(|&b| b == b',');
        let binding = attrs
            .next()
            .and_then(|attr| attribute(attr, b'c'))
            .ok_or(ScramError::Malformed("expected channel binding (c=)"))?;
        if binding != BASE64.encode(challenge.gs2_header).as_bytes() {
            return Err(ScramError::Malformed(
                "channel binding (c=) does not match the gs2 header",
            ));
        }
        let nonce = attrs
            .next()
            .and_then(|attr| attribute(attr, b'r'))
            .ok_or(ScramError::Malformed("expected nonce (r=)"))?;
        if nonce != challenge.nonce.as_slice() {
            return Err(ScramError::NonceMismatch);
        }
        // Extensions between the nonce and the proof are ignored.

        let auth_message: [&[u8]; 5] = [
            &challenge.client_first_bare,
            b",",
            &challenge.server_first,
            b",",
            without_proof,
        ];
        let client_signature = hmac_sha256(&self.verifier.stored_key, &auth_message);
        let client_key = xor(&proof, &client_signature);
        if !constant_time_eq(&sha256(&client_key), &self.verifier.stored_key) {
            return Err(ScramError::BadProof);
        }
        let server_signature = hmac_sha256(&self.verifier.server_key, &auth_message);
        let mut server_final = b"v=".to_vec();
        server_final.extend_from_slice(BASE64.encode(server_signature).as_bytes());
        Ok((server_final, client_key))
    }
}

/// Splits a client-first-message into its gs2 header (`n,,` or `y,,`) and
/// the client-first-message-bare.
fn split_gs2_header(msg: &[u8]) -> Result<(&'static [u8], &[u8]), ScramError> {
    let header: &'static [u8] = match msg.first() {
        Some(b'n') => b"n,,",
        Some(b'y') => b"y,,",
        Some(b'p') => return Err(ScramError::ChannelBinding),
        _ => return Err(ScramError::Malformed("unexpected channel binding flag")),
    };
    if msg.get(1) != Some(&b',') {
        return Err(ScramError::Malformed(
            "expected ',' after channel binding flag",
        ));
    }
    match msg.get(2) {
        Some(b',') => Ok((header, &msg[3..])),
        Some(b'a') => Err(ScramError::Malformed(
            "authorization identity is not supported",
        )),
        _ => Err(ScramError::Malformed("malformed gs2 header")),
    }
}

/// Splits a client-final-message into client-final-message-without-proof
/// and the decoded proof, which must be the last attribute.
fn split_proof(msg: &[u8]) -> Result<(&[u8], [u8; KEY_LEN]), ScramError> {
    let comma = msg
        .iter()
        .rposition(|&b| b == b',')
        .ok_or(ScramError::Malformed("expected proof (p=)"))?;
    let proof = attribute(&msg[comma + 1..], b'p').ok_or(ScramError::Malformed(
        "expected proof (p=) as last attribute",
    ))?;
    let proof = decode_key(proof).ok_or(ScramError::Malformed("invalid proof"))?;
    Ok((&msg[..comma], proof))
}

// ---------------------------------------------------------------------------
// Client side

/// What sqlmux knows to log in to a server with SCRAM.
#[derive(Clone)]
pub enum ScramCredentials {
    /// A plaintext password.
    Password(String),
    /// ClientKey and ServerKey (learned from a client's SCRAM proof plus the
    /// verifier): enough to log in without the password.
    Keys {
        /// ClientKey.
        client_key: [u8; 32],
        /// ServerKey.
        server_key: [u8; 32],
    },
}

impl ScramCredentials {
    /// Keys for a passthrough login: the ClientKey that
    /// [`ScramServer::client_final`] recovered from a client's proof and the
    /// ServerKey of the verifier that proof was checked against.
    ///
    /// The login succeeds on any server that stores the same verifier (same
    /// salt and iterations), whatever salt and iterations it announces, since
    /// the keys are used as they are.
    pub fn from_client_key(client_key: [u8; 32], verifier: &ScramVerifier) -> Self {
        Self::Keys {
            client_key,
            server_key: verifier.server_key,
        }
    }
}

impl fmt::Debug for ScramCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Password(_) => f.write_str("ScramCredentials::Password(..)"),
            Self::Keys { .. } => f.write_str("ScramCredentials::Keys(..)"),
        }
    }
}

/// Client side of SCRAM-SHA-256: sqlmux logging in to a server.
///
/// One value serves one exchange: [`ScramClient::client_first`],
/// [`ScramClient::server_first`], then [`ScramClient::server_final`].
///
/// With [`ScramCredentials::Password`], [`ScramClient::server_first`] runs
/// PBKDF2 with the iteration count the server announces, synchronously: a
/// few milliseconds at PostgreSQL's default of 4096, but the count is not
/// bounded here, so callers on an async runtime may want to run that step on
/// a blocking thread.
pub struct ScramClient {
    credentials: ScramCredentials,
    /// The user name as it appears after `n=` (already escaped).
    user: String,
    /// Our part of the nonce.
    client_nonce: String,
    state: ClientState,
}

enum ClientState {
    /// The server-first-message has not been seen yet.
    Initial,
    /// The proof was sent; the server must answer with this signature.
    ProofSent { server_signature: [u8; KEY_LEN] },
    /// The exchange failed.
    Failed,
}

impl fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            ClientState::Initial => "initial",
            ClientState::ProofSent { .. } => "proof-sent",
            ClientState::Failed => "failed",
        };
        f.debug_struct("ScramClient")
            .field("credentials", &self.credentials)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl ScramClient {
    /// Starts an exchange with a fresh random nonce.
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails.
    pub fn new(credentials: ScramCredentials) -> Self {
        Self::with_nonce(credentials, &random_nonce())
    }

    /// Starts an exchange with a given client nonce, for deterministic tests
    /// (e.g. the RFC 7677 example). Production code uses [`ScramClient::new`].
    ///
    /// # Panics
    ///
    /// If `client_nonce` is empty or holds a byte outside printable ASCII
    /// (`0x21..=0x7e`) or a comma.
    pub fn with_nonce(credentials: ScramCredentials, client_nonce: &str) -> Self {
        assert!(
            is_valid_nonce(client_nonce.as_bytes()),
            "a SCRAM nonce must be non-empty printable ASCII without ','"
        );
        Self {
            credentials,
            user: String::new(),
            client_nonce: client_nonce.to_owned(),
            state: ClientState::Initial,
        }
    }

    /// Sends `user` in the `n=` attribute instead of the empty name that
    /// PostgreSQL clients send (PostgreSQL ignores it and uses the startup
    /// packet's user). `,` and `=` are escaped as RFC 5802 requires. Meant
    /// for reproducing exchanges such as the RFC 7677 example.
    pub fn with_user(mut self, user: &str) -> Self {
        self.user = user.replace('=', "=3D").replace(',', "=2C");
        self
    }

    /// The client-first-message (`n,,n=,r=<nonce>`).
    pub fn client_first(&self) -> Vec<u8> {
        let mut msg = b"n,,".to_vec();
        msg.extend_from_slice(&self.client_first_bare());
        msg
    }

    /// Takes the server-first-message, returns the client-final-message.
    ///
    /// The server's nonce must extend ours ([`ScramError::NonceMismatch`]);
    /// `e=` yields [`ScramError::ServerError`]. Any error ends the exchange.
    pub fn server_first(&mut self, msg: &[u8]) -> Result<Vec<u8>, ScramError> {
        // Any early return below ends the exchange.
        let state = std::mem::replace(&mut self.state, ClientState::Failed);
        if !matches!(state, ClientState::Initial) {
            return Err(ScramError::Malformed("server-first-message out of order"));
        }
        if let Some(error) = attribute(msg, b'e') {
            return Err(server_error(error));
        }
        let mut attrs = msg.split(|&b| b == b',');
        let mut first = attrs.next().unwrap_or_default();
        if first.starts_with(b"m=") {
            return Err(ScramError::Malformed(
                "mandatory extension is not supported",
            ));
        }
        let nonce = attribute(first, b'r').ok_or(ScramError::Malformed("expected nonce (r=)"))?;
        if !is_valid_nonce(nonce) {
            return Err(ScramError::Malformed("nonce is not printable"));
        }
        let ours = self.client_nonce.as_bytes();
        if nonce.len() <= ours.len() || !nonce.starts_with(ours) {
            return Err(ScramError::NonceMismatch);
        }
        first = attrs.next().unwrap_or_default();
        let salt = attribute(first, b's')
            .and_then(|salt| BASE64.decode(salt).ok())
            .filter(|salt| !salt.is_empty())
            .ok_or(ScramError::Malformed("expected salt (s=) in base64"))?;
        let iterations = attrs
            .next()
            .and_then(|attr| attribute(attr, b'i'))
            .and_then(parse_iterations)
            .ok_or(ScramError::Malformed("expected iteration count (i=)"))?;
        // Extensions that may follow are ignored.

        let keys = match &self.credentials {
            ScramCredentials::Password(password) => {
                ScramKeys::from_password(password, &salt, iterations)
            }
            ScramCredentials::Keys {
                client_key,
                server_key,
            } => ScramKeys {
                client_key: *client_key,
                server_key: *server_key,
            },
        };
        let mut client_final = b"c=biws,r=".to_vec();
        client_final.extend_from_slice(nonce);
        let auth_message: [&[u8]; 5] = [&self.client_first_bare(), b",", msg, b",", &client_final];
        let client_signature = hmac_sha256(&sha256(&keys.client_key), &auth_message);
        let proof = xor(&keys.client_key, &client_signature);
        let server_signature = hmac_sha256(&keys.server_key, &auth_message);
        client_final.extend_from_slice(b",p=");
        client_final.extend_from_slice(BASE64.encode(proof).as_bytes());
        self.state = ClientState::ProofSent { server_signature };
        Ok(client_final)
    }

    /// Checks the server-final-message (`v=...`).
    ///
    /// A wrong signature means the server does not know the password (or
    /// verifier), so the connection must not be trusted:
    /// [`ScramError::BadServerSignature`]. `e=` yields
    /// [`ScramError::ServerError`].
    pub fn server_final(&self, msg: &[u8]) -> Result<(), ScramError> {
        let ClientState::ProofSent { server_signature } = &self.state else {
            return Err(ScramError::Malformed("server-final-message out of order"));
        };
        let first = msg.split(|&b| b == b',').next().unwrap_or_default();
        if let Some(error) = attribute(first, b'e') {
            return Err(server_error(error));
        }
        let verifier = attribute(first, b'v').ok_or(ScramError::Malformed(
            "expected verifier (v=) or error (e=)",
        ))?;
        let verifier = decode_key(verifier).ok_or(ScramError::Malformed("invalid verifier"))?;
        if constant_time_eq(&verifier, server_signature) {
            Ok(())
        } else {
            Err(ScramError::BadServerSignature)
        }
    }

    /// `n=<user>,r=<client nonce>`.
    fn client_first_bare(&self) -> Vec<u8> {
        format!("n={},r={}", self.user, self.client_nonce).into_bytes()
    }
}

/// The value of an `e=` attribute, up to any following extension.
fn server_error(value: &[u8]) -> ScramError {
    let value = value.split(|&b| b == b',').next().unwrap_or_default();
    ScramError::ServerError(String::from_utf8_lossy(value).into_owned())
}

// ---------------------------------------------------------------------------
// Shared helpers

/// The value of `attr` if it is `<name>=<value>`.
fn attribute(attr: &[u8], name: u8) -> Option<&[u8]> {
    match attr {
        [n, b'=', value @ ..] if *n == name => Some(value),
        _ => None,
    }
}

/// RFC 5802 `printable`: non-empty, `0x21..=0x7e` except `,`.
fn is_valid_nonce(nonce: &[u8]) -> bool {
    !nonce.is_empty()
        && nonce
            .iter()
            .all(|&b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// A positive decimal iteration count.
fn parse_iterations(text: &[u8]) -> Option<NonZeroU32> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// Decodes standard base64 that must hold exactly one 32-byte key.
fn decode_key(text: &[u8]) -> Option<[u8; KEY_LEN]> {
    // 32 bytes encode to 44 characters; refuse longer input before decoding.
    if text.len() != 44 {
        return None;
    }
    BASE64.decode(text).ok()?.try_into().ok()
}

/// Base64 of fresh random bytes: one side's part of a nonce.
fn random_nonce() -> String {
    BASE64.encode(random_bytes::<NONCE_LEN>())
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random number generator failed");
    bytes
}

fn sha256(data: &[u8]) -> [u8; KEY_LEN] {
    let mut out = [0u8; KEY_LEN];
    out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref());
    out
}

/// HMAC-SHA-256 of the concatenated parts.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; KEY_LEN] {
    let mut context = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, key));
    for part in parts {
        context.update(part);
    }
    let mut out = [0u8; KEY_LEN];
    out.copy_from_slice(context.sign().as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3.
    const RFC_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
    const RFC_CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const RFC_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const RFC_SERVER_FIRST: &str = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                    s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const RFC_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                    p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    /// `rolpassword` for PASSWORD 'pencil' from PostgreSQL 15.20 with
    /// password_encryption = 'scram-sha-256'.
    const PG_PENCIL: &str = "SCRAM-SHA-256$4096:AqhgaIyUFJmgTEmeDYnuIg==$\
                             JG2oviknkSPEY+F03XTPtAktg8PNuuuQdeB5wEkM9pg=:\
                             1Ajv4Kq8c4CG+iPzdfsNIB8LDN9C6mERUzPutJxoJCg=";
    /// The same for PASSWORD 'pässwörd' (precomposed, UTF-8 database).
    const PG_NON_ASCII: &str = "SCRAM-SHA-256$4096:GHCxg44AQ8+k1IdhQmeyuw==$\
                                PmtbmByPsD8EJvJ0rnKhSR5XJaLgzAdS4n4U1KCaPVo=:\
                                ohYuc/605pbHBF1UyZNTxRnh68/MBtO9kaHADNk8Xqg=";

    fn rfc_verifier() -> ScramVerifier {
        static VERIFIER: std::sync::LazyLock<ScramVerifier> = std::sync::LazyLock::new(|| {
            ScramVerifier::from_password("pencil", &BASE64.decode(RFC_SALT).unwrap(), 4096)
        });
        VERIFIER.clone()
    }

    fn password(p: &str) -> ScramCredentials {
        ScramCredentials::Password(p.to_owned())
    }

    /// Runs a whole exchange; returns the ClientKey the server recovered.
    fn exchange(
        client: &mut ScramClient,
        server: &mut ScramServer,
    ) -> Result<[u8; 32], ScramError> {
        let server_first = server.client_first(&client.client_first())?;
        let client_final = client.server_first(&server_first)?;
        let (server_final, client_key) = server.client_final(&client_final)?;
        client.server_final(&server_final)?;
        Ok(client_key)
    }

    /// A server that has sent the RFC 7677 server-first-message, plus the
    /// client it sent it to.
    fn rfc_pair() -> (ScramClient, ScramServer) {
        let client =
            ScramClient::with_nonce(password("pencil"), RFC_CLIENT_NONCE).with_user("user");
        let mut server = ScramServer::with_nonce(rfc_verifier(), RFC_SERVER_NONCE);
        server.client_first(&client.client_first()).unwrap();
        (client, server)
    }

    #[test]
    fn md5_hash_matches_what_postgres_stores() {
        assert_eq!(
            md5_hash("postgres", "postgres"),
            "md53175bce1d3201d16594cebf9d7eb3f9d"
        );
    }

    #[test]
    fn md5_salted_matches_independent_computation_with_or_without_prefix() {
        // python3: "md5" + md5(b"3175bce1d3201d16594cebf9d7eb3f9d" + salt).hexdigest()
        let stored = md5_hash("postgres", "postgres");
        assert_eq!(
            md5_salted(&stored, [1, 2, 3, 4]),
            "md568be9ed08db75f318087ab337aaea044"
        );
        assert_eq!(
            md5_salted(&stored, [0xde, 0xad, 0xbe, 0xef]),
            "md58ee245854025535aedb7b15709315318"
        );
        assert_eq!(
            md5_salted(&stored[3..], [1, 2, 3, 4]),
            md5_salted(&stored, [1, 2, 3, 4])
        );
    }

    #[test]
    fn plaintext_passwords_check_against_verifiers_and_md5_hashes() {
        let v = ScramVerifier::from_password("s3cret", b"0123456789abcdef", 64);
        assert!(v.matches_password("s3cret"));
        assert!(!v.matches_password("s3cret "));
        assert!(!v.matches_password(""));
        let stored = md5_hash("alice", "s3cret");
        assert!(md5_matches_password(&stored, "alice", "s3cret"));
        assert!(!md5_matches_password(&stored, "bob", "s3cret"));
        assert!(!md5_matches_password(&stored, "alice", "other"));
    }

    #[test]
    fn md5_matches_accepts_only_the_right_response() {
        let stored = md5_hash("postgres", "postgres");
        let salt = [1, 2, 3, 4];
        assert!(md5_matches(
            &stored,
            salt,
            b"md568be9ed08db75f318087ab337aaea044"
        ));
        assert!(!md5_matches(
            &stored,
            salt,
            b"md568be9ed08db75f318087ab337aaea045"
        ));
        assert!(!md5_matches(
            &stored,
            [1, 2, 3, 5],
            b"md568be9ed08db75f318087ab337aaea044"
        ));
        assert!(!md5_matches(
            &stored,
            salt,
            b"md568be9ed08db75f318087ab337aaea04"
        ));
        assert!(!md5_matches(&stored, salt, b""));
    }

    #[test]
    fn rfc7677_example_is_reproduced_by_client_and_server() {
        let mut client =
            ScramClient::with_nonce(password("pencil"), RFC_CLIENT_NONCE).with_user("user");
        let mut server = ScramServer::with_nonce(rfc_verifier(), RFC_SERVER_NONCE);

        let client_first = client.client_first();
        assert_eq!(client_first, RFC_CLIENT_FIRST.as_bytes());
        let server_first = server.client_first(&client_first).unwrap();
        assert_eq!(server_first, RFC_SERVER_FIRST.as_bytes());
        let client_final = client.server_first(&server_first).unwrap();
        assert_eq!(client_final, RFC_CLIENT_FINAL.as_bytes());
        let (server_final, client_key) = server.client_final(&client_final).unwrap();
        assert_eq!(server_final, RFC_SERVER_FINAL.as_bytes());
        client.server_final(&server_final).unwrap();

        let keys = ScramKeys::from_password(
            "pencil",
            &BASE64.decode(RFC_SALT).unwrap(),
            NonZeroU32::new(4096).unwrap(),
        );
        assert_eq!(client_key, keys.client_key);
    }

    #[test]
    fn client_with_password_logs_in_to_server_with_verifier_of_same_password() {
        let verifier = ScramVerifier::generate("correct horse");
        let mut client = ScramClient::new(password("correct horse"));
        let mut server = ScramServer::new(verifier.clone());
        let client_key = exchange(&mut client, &mut server).unwrap();
        assert_eq!(sha256(&client_key), verifier.stored_key);
    }

    #[test]
    fn wrong_password_is_bad_proof() {
        let mut client = ScramClient::new(password("pencil2"));
        let mut server = ScramServer::new(rfc_verifier());
        assert_eq!(
            exchange(&mut client, &mut server),
            Err(ScramError::BadProof)
        );
    }

    #[test]
    fn client_key_recovered_by_server_logs_in_to_a_second_server() {
        let verifier = ScramVerifier::parse(PG_PENCIL).unwrap();
        let mut client = ScramClient::new(password("pencil"));
        let mut server = ScramServer::new(verifier.clone());
        let client_key = exchange(&mut client, &mut server).unwrap();

        let keys = ScramCredentials::from_client_key(client_key, &verifier);
        let mut pooler = ScramClient::new(keys);
        let mut real_server = ScramServer::new(verifier);
        let again = exchange(&mut pooler, &mut real_server).unwrap();
        assert_eq!(again, client_key);
    }

    #[test]
    fn keys_from_a_different_verifier_are_refused() {
        let mut client = ScramClient::new(password("pencil"));
        let mut server = ScramServer::new(rfc_verifier());
        let client_key = exchange(&mut client, &mut server).unwrap();

        let other = ScramVerifier::parse(PG_PENCIL).unwrap();
        let mut pooler = ScramClient::new(ScramCredentials::Keys {
            client_key,
            server_key: rfc_verifier().server_key,
        });
        assert_eq!(
            exchange(&mut pooler, &mut ScramServer::new(other)),
            Err(ScramError::BadProof)
        );
    }

    #[test]
    fn verifier_from_postgres_round_trips_and_matches_password() {
        let verifier = ScramVerifier::parse(PG_PENCIL).unwrap();
        assert_eq!(verifier.iterations, 4096);
        assert_eq!(verifier.salt.len(), 16);
        assert_eq!(verifier.to_string(), PG_PENCIL);
        let derived = ScramVerifier::from_password("pencil", &verifier.salt, verifier.iterations);
        assert_eq!(derived, verifier);
    }

    #[test]
    fn non_ascii_password_already_normalized_matches_postgres() {
        let verifier = ScramVerifier::parse(PG_NON_ASCII).unwrap();
        let derived = ScramVerifier::from_password("pässwörd", &verifier.salt, verifier.iterations);
        assert_eq!(derived, verifier);
    }

    #[test]
    fn generated_verifier_has_random_salt_and_default_iterations() {
        let a = ScramVerifier::generate("pencil");
        let b = ScramVerifier::generate("pencil");
        assert_eq!(a.iterations, DEFAULT_ITERATIONS);
        assert_eq!(a.salt.len(), 16);
        assert_ne!(a.salt, b.salt);
        assert_eq!(ScramVerifier::parse(&a.to_string()), Some(a));
    }

    #[test]
    fn verifier_parse_refuses_malformed_text() {
        let good = PG_PENCIL;
        let (params, keys) = good
            .strip_prefix("SCRAM-SHA-256$")
            .unwrap()
            .split_once('$')
            .unwrap();
        let (stored, server) = keys.split_once(':').unwrap();
        let bad = [
            String::new(),
            "SCRAM-SHA-256".to_owned(),
            good.replace("SCRAM-SHA-256", "SCRAM-SHA-1"),
            good.replace("SCRAM-SHA-256", "scram-sha-256"),
            format!("{good}$"),
            good.replace("$4096:", "$0:"),
            good.replace("$4096:", "$-1:"),
            good.replace("$4096:", "$+4096:"),
            good.replace("$4096:", "$:"),
            good.replace("$4096:", "$99999999999:"),
            good.replace("$4096:", "$4096"),
            good.replace("AqhgaIyUFJmgTEmeDYnuIg==", ""),
            good.replace("AqhgaIyUFJmgTEmeDYnuIg==", "AqhgaIyUFJmgTEmeDYnuIg"),
            good.replace("AqhgaIyUFJmgTEmeDYnuIg==", "Aqhg*IyUFJmgTEmeDYnuIg=="),
            format!("SCRAM-SHA-256${params}${stored}"),
            format!("SCRAM-SHA-256${params}${stored}:{}", &server[..40]),
            format!("SCRAM-SHA-256${params}${stored}:{server}AAAA"),
            format!(
                "SCRAM-SHA-256${params}${stored}:{}",
                server.replace('=', "")
            ),
            format!("SCRAM-SHA-256${params}${stored}:{server}:{server}"),
            format!("md5{}", "0".repeat(32)),
        ];
        for text in bad {
            assert_eq!(ScramVerifier::parse(&text), None, "{text:?}");
        }
    }

    #[test]
    fn server_accepts_y_flag_and_requires_matching_binding() {
        let mut client = ScramClient::with_nonce(password("pencil"), RFC_CLIENT_NONCE);
        let mut server = ScramServer::new(rfc_verifier());
        let mut client_first = client.client_first();
        client_first[0] = b'y';
        let server_first = server.client_first(&client_first).unwrap();
        let client_final = client.server_first(&server_first).unwrap();
        // The client computed its proof over "c=biws"; a server that
        // received "y,," expects "c=eSws" and must refuse "c=biws".
        assert!(client_final.starts_with(b"c=biws,"));
        assert!(matches!(
            server.client_final(&client_final),
            Err(ScramError::Malformed(_))
        ));
    }

    #[test]
    fn server_with_y_flag_accepts_binding_of_y_header() {
        // Build a client-final by hand with c=eSws and a correct proof.
        let verifier = rfc_verifier();
        let mut server = ScramServer::with_nonce(verifier, "SRV");
        let bare = "n=,r=CLI";
        let server_first = server
            .client_first(format!("y,,{bare}").as_bytes())
            .unwrap();
        let without_proof = "c=eSws,r=CLISRV";
        let keys = ScramKeys::from_password(
            "pencil",
            &BASE64.decode(RFC_SALT).unwrap(),
            NonZeroU32::new(4096).unwrap(),
        );
        let auth: [&[u8]; 5] = [
            bare.as_bytes(),
            b",",
            &server_first,
            b",",
            without_proof.as_bytes(),
        ];
        let proof = xor(
            &keys.client_key,
            &hmac_sha256(&sha256(&keys.client_key), &auth),
        );
        let client_final = format!("{without_proof},p={}", BASE64.encode(proof));
        let (_, client_key) = server.client_final(client_final.as_bytes()).unwrap();
        assert_eq!(client_key, keys.client_key);
    }

    #[test]
    fn server_refuses_channel_binding_authzid_and_mandatory_extensions() {
        let cases: [(&[u8], ScramError); 6] = [
            (
                b"p=tls-server-end-point,,n=,r=abc",
                ScramError::ChannelBinding,
            ),
            (
                b"n,a=admin,n=,r=abc",
                ScramError::Malformed("authorization identity is not supported"),
            ),
            (
                b"n,,m=ext,n=,r=abc",
                ScramError::Malformed("mandatory extension is not supported"),
            ),
            (
                b"x,,n=,r=abc",
                ScramError::Malformed("unexpected channel binding flag"),
            ),
            (
                b"n,,n=,r=a b",
                ScramError::Malformed("nonce is empty or not printable"),
            ),
            (
                b"n,,n=,r=",
                ScramError::Malformed("nonce is empty or not printable"),
            ),
        ];
        for (msg, expected) in cases {
            let mut server = ScramServer::new(rfc_verifier());
            assert_eq!(server.client_first(msg), Err(expected), "{msg:?}");
        }
    }

    #[test]
    fn server_ignores_user_name_and_extensions_in_client_first() {
        let mut server = ScramServer::with_nonce(rfc_verifier(), "S");
        let reply = server.client_first(b"n,,n=someone,r=abc,x=ext").unwrap();
        assert_eq!(reply, format!("r=abcS,s={RFC_SALT},i=4096").as_bytes());
    }

    #[test]
    fn server_refuses_client_final_with_other_nonce() {
        let (mut client, mut server) = rfc_pair();
        let server_first =
            RFC_SERVER_FIRST.replace(RFC_SERVER_NONCE, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k1");
        let client_final = client.server_first(server_first.as_bytes()).unwrap();
        assert_eq!(
            server.client_final(&client_final),
            Err(ScramError::NonceMismatch)
        );
    }

    #[test]
    fn server_refuses_proof_of_wrong_length_or_not_last() {
        for msg in [
            RFC_CLIENT_FINAL.replace("p=dHzb", "p=dHz"),
            RFC_CLIENT_FINAL.split(",p=").next().unwrap().to_owned(),
            format!("{RFC_CLIENT_FINAL},x=1"),
            format!("{RFC_CLIENT_FINAL}AAAA"),
            RFC_CLIENT_FINAL.replace(",p=", ",q="),
        ] {
            let (_, mut server) = rfc_pair();
            assert!(
                matches!(
                    server.client_final(msg.as_bytes()),
                    Err(ScramError::Malformed(_))
                ),
                "{msg:?}"
            );
        }
    }

    #[test]
    fn tampered_client_final_is_bad_proof() {
        // An extension inserted before the proof changes the AuthMessage.
        let (_, mut server) = rfc_pair();
        let msg = RFC_CLIENT_FINAL.replace(",p=", ",x=1,p=");
        assert_eq!(
            server.client_final(msg.as_bytes()),
            Err(ScramError::BadProof)
        );
    }

    #[test]
    fn client_refuses_nonce_that_does_not_extend_its_own() {
        for server_first in [
            RFC_SERVER_FIRST.replace("r=rOpr", "r=xOpr"),
            format!("r={RFC_CLIENT_NONCE},s={RFC_SALT},i=4096"),
            format!("r=rOprNGfwEbeRWgbNEkq,s={RFC_SALT},i=4096"),
        ] {
            let mut client = ScramClient::with_nonce(password("pencil"), RFC_CLIENT_NONCE);
            assert_eq!(
                client.server_first(server_first.as_bytes()),
                Err(ScramError::NonceMismatch),
                "{server_first:?}"
            );
        }
    }

    #[test]
    fn client_reports_server_errors() {
        let mut client = ScramClient::with_nonce(password("pencil"), RFC_CLIENT_NONCE);
        assert_eq!(
            client.server_first(b"e=other-error"),
            Err(ScramError::ServerError("other-error".to_owned()))
        );

        let mut client = ScramClient::with_nonce(password("pencil"), RFC_CLIENT_NONCE);
        client.server_first(RFC_SERVER_FIRST.as_bytes()).unwrap();
        assert_eq!(
            client.server_final(b"e=invalid-proof"),
            Err(ScramError::ServerError("invalid-proof".to_owned()))
        );
    }

    #[test]
    fn client_refuses_wrong_server_signature() {
        let mut client = ScramClient::with_nonce(password("pencil"), RFC_CLIENT_NONCE);
        client.server_first(RFC_SERVER_FIRST.as_bytes()).unwrap();
        let forged = RFC_SERVER_FINAL.replace("v=6", "v=7");
        assert_eq!(
            client.server_final(forged.as_bytes()),
            Err(ScramError::BadServerSignature)
        );
        // A server that holds another verifier cannot produce the signature.
        let mut client = ScramClient::new(password("pencil"));
        let mut server = ScramServer::new(ScramVerifier::parse(PG_PENCIL).unwrap());
        let server_first = server.client_first(&client.client_first()).unwrap();
        client.server_first(&server_first).unwrap();
        let rfc = rfc_verifier();
        let fake = format!("v={}", BASE64.encode(hmac_sha256(&rfc.server_key, &[b"x"])));
        assert_eq!(
            client.server_final(fake.as_bytes()),
            Err(ScramError::BadServerSignature)
        );
    }

    #[test]
    fn calls_out_of_order_are_malformed() {
        let mut server = ScramServer::new(rfc_verifier());
        assert!(matches!(
            server.client_final(RFC_CLIENT_FINAL.as_bytes()),
            Err(ScramError::Malformed(_))
        ));

        let (_, mut server) = rfc_pair();
        assert!(matches!(
            server.client_first(RFC_CLIENT_FIRST.as_bytes()),
            Err(ScramError::Malformed(_))
        ));
        // The exchange is over after an error.
        assert!(matches!(
            server.client_final(RFC_CLIENT_FINAL.as_bytes()),
            Err(ScramError::Malformed(_))
        ));

        let (_, mut server) = rfc_pair();
        server.client_final(RFC_CLIENT_FINAL.as_bytes()).unwrap();
        assert!(matches!(
            server.client_final(RFC_CLIENT_FINAL.as_bytes()),
            Err(ScramError::Malformed(_))
        ));

        let mut client = ScramClient::with_nonce(password("pencil"), RFC_CLIENT_NONCE);
        assert!(matches!(
            client.server_final(RFC_SERVER_FINAL.as_bytes()),
            Err(ScramError::Malformed(_))
        ));
        client.server_first(RFC_SERVER_FIRST.as_bytes()).unwrap();
        assert!(matches!(
            client.server_first(RFC_SERVER_FIRST.as_bytes()),
            Err(ScramError::Malformed(_))
        ));
        assert!(matches!(
            client.server_final(RFC_SERVER_FINAL.as_bytes()),
            Err(ScramError::Malformed(_))
        ));
    }

    #[test]
    fn truncated_messages_are_errors_not_panics() {
        let keys = ScramCredentials::Keys {
            client_key: [7; 32],
            server_key: [9; 32],
        };
        for len in 0..RFC_CLIENT_FIRST.len() {
            let mut server = ScramServer::new(rfc_verifier());
            let _ = server.client_first(&RFC_CLIENT_FIRST.as_bytes()[..len]);
        }
        for len in 0..RFC_CLIENT_FINAL.len() {
            let (_, mut server) = rfc_pair();
            assert!(
                server
                    .client_final(&RFC_CLIENT_FINAL.as_bytes()[..len])
                    .is_err()
            );
        }
        for len in 0..RFC_SERVER_FIRST.len() {
            // Keys: a truncated i= must not make the test run PBKDF2 for long.
            let mut client = ScramClient::with_nonce(keys.clone(), RFC_CLIENT_NONCE);
            let msg = &RFC_SERVER_FIRST.as_bytes()[..len];
            let truncated_count = msg.len() > RFC_SERVER_FIRST.len() - 4;
            assert!(client.server_first(msg).is_ok() == truncated_count, "{len}");
        }
        for len in 0..RFC_SERVER_FINAL.len() {
            let mut client = ScramClient::with_nonce(password("pencil"), RFC_CLIENT_NONCE);
            client.server_first(RFC_SERVER_FIRST.as_bytes()).unwrap();
            assert!(
                client
                    .server_final(&RFC_SERVER_FINAL.as_bytes()[..len])
                    .is_err()
            );
        }
    }

    #[test]
    fn malformed_fields_are_errors() {
        let mut client =
            ScramClient::with_nonce(password("pencil"), RFC_CLIENT_NONCE).with_user("user");
        let nonce = format!("{RFC_CLIENT_NONCE}{RFC_SERVER_NONCE}");
        for msg in [
            format!("r={nonce},s=***,i=4096"),
            format!("r={nonce},s=,i=4096"),
            format!("r={nonce},s={RFC_SALT},i=0"),
            format!("r={nonce},s={RFC_SALT},i=x"),
            format!("r={nonce},s={RFC_SALT},i=-1"),
            format!("r={nonce},s={RFC_SALT},i=4294967296"),
            format!("r={nonce},i=4096,s={RFC_SALT}"),
            format!("m=x,r={nonce},s={RFC_SALT},i=4096"),
            format!("s={RFC_SALT},r={nonce},i=4096"),
        ] {
            client.state = ClientState::Initial;
            assert!(
                matches!(
                    client.server_first(msg.as_bytes()),
                    Err(ScramError::Malformed(_))
                ),
                "{msg:?}"
            );
        }
        client.state = ClientState::Initial;
        client.server_first(RFC_SERVER_FIRST.as_bytes()).unwrap();
        for msg in [
            "v=***",
            "v=",
            "x=1",
            "",
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4",
        ] {
            assert!(
                matches!(
                    client.server_final(msg.as_bytes()),
                    Err(ScramError::Malformed(_))
                ),
                "{msg:?}"
            );
        }
        // Extensions after the signature are allowed.
        client
            .server_final(format!("{RFC_SERVER_FINAL},x=1").as_bytes())
            .unwrap();
    }

    #[test]
    fn user_name_is_escaped() {
        let client = ScramClient::with_nonce(password("p"), "abc").with_user("a,b=c");
        assert_eq!(client.client_first(), b"n,,n=a=2Cb=3Dc,r=abc");
        assert_eq!(
            ScramClient::with_nonce(password("p"), "abc").client_first(),
            b"n,,n=,r=abc"
        );
    }

    #[test]
    fn random_nonces_are_printable_and_distinct() {
        let a = ScramClient::new(password("p")).client_first();
        let b = ScramClient::new(password("p")).client_first();
        assert_ne!(a, b);
        let nonce = a.strip_prefix(b"n,,n=,r=").unwrap();
        assert_eq!(nonce.len(), 24);
        assert!(is_valid_nonce(nonce));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let verifier = ScramVerifier::parse(PG_PENCIL).unwrap();
        let mut client = ScramClient::new(password("pencil"));
        let mut server = ScramServer::new(verifier.clone());
        let client_key = exchange(&mut client, &mut server).unwrap();
        let keys = ScramCredentials::from_client_key(client_key, &verifier);
        let text = format!(
            "{verifier:?} {client:?} {server:?} {keys:?} {:?}",
            password("pencil")
        );
        for secret in ["pencil", "AqhgaIyU", "JG2ovikn", "1Ajv4Kq8"] {
            assert!(!text.contains(secret), "{text}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(msg in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = ScramServer::new(rfc_verifier()).client_first(&msg);
            let (_, mut server) = rfc_pair();
            let _ = server.client_final(&msg);
            let mut client = ScramClient::new(ScramCredentials::Keys {
                client_key: [1; 32],
                server_key: [2; 32],
            });
            let _ = client.server_first(&msg);
            let mut client = ScramClient::with_nonce(ScramCredentials::Keys {
                client_key: [1; 32],
                server_key: [2; 32],
            }, RFC_CLIENT_NONCE);
            client.server_first(RFC_SERVER_FIRST.as_bytes()).unwrap();
            let _ = client.server_final(&msg);
            let _ = ScramVerifier::parse(&String::from_utf8_lossy(&msg));
        }
    }

    #[test]
    fn saslprep_maps_non_ascii_passwords_like_postgresql() {
        let salt = b"0123456789abcdef";
        // Soft hyphen is mapped to nothing, no-break space to space, the
        // ligature is NFKC-normalised: PostgreSQL stores these as shown.
        for (given, stored) in [
            ("pen\u{00AD}cil", "pencil"),
            ("\u{00A0}pencil", " pencil"),
            ("\u{FB01}sh", "fish"),
        ] {
            assert_eq!(
                ScramVerifier::from_password(given, salt, 4096),
                ScramVerifier::from_password(stored, salt, 4096),
                "{given:?}"
            );
        }
    }
}
