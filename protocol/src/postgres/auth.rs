//! Password verification math: md5 and SCRAM-SHA-256 (RFC 5802 / RFC 7677).
//! API STUB: the real implementation replaces this file.

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

/// `"md5" + hex(md5(password + user))`: what PostgreSQL stores in pg_authid.
pub fn md5_hash(user: &str, password: &str) -> String {
    let _ = (user, password);
    todo!()
}

/// Response to AuthenticationMD5Password given the stored `md5...` hash:
/// `"md5" + hex(md5(hex_part_of_stored + salt))`.
pub fn md5_salted(stored_md5: &str, salt: [u8; 4]) -> String {
    let _ = (stored_md5, salt);
    todo!()
}

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

impl std::fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramVerifier(..)")
    }
}

impl ScramVerifier {
    /// Parses `SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>`.
    pub fn parse(s: &str) -> Option<Self> {
        let _ = s;
        todo!()
    }
    /// Derives a verifier from a password (SASLprep'd), salt and iterations.
    pub fn from_password(password: &str, salt: &[u8], iterations: u32) -> Self {
        let _ = (password, salt, iterations);
        todo!()
    }
    /// A verifier with a random 16-byte salt and 4096 iterations.
    pub fn generate(password: &str) -> Self {
        let _ = password;
        todo!()
    }
}

impl std::fmt::Display for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let _ = f;
        todo!()
    }
}

/// Server side of SCRAM-SHA-256: sqlmux authenticating a client.
pub struct ScramServer {
    _p: (),
}

impl ScramServer {
    /// Starts an exchange against `verifier` with a fresh random nonce.
    pub fn new(verifier: ScramVerifier) -> Self {
        let _ = verifier;
        todo!()
    }
    /// Takes the client-first-message (the SASLInitialResponse data) and
    /// returns the server-first-message.
    pub fn client_first(&mut self, msg: &[u8]) -> Result<Vec<u8>, ScramError> {
        let _ = msg;
        todo!()
    }
    /// Takes the client-final-message; on a valid proof returns the
    /// server-final-message and the ClientKey recovered from the proof.
    pub fn client_final(&mut self, msg: &[u8]) -> Result<(Vec<u8>, [u8; 32]), ScramError> {
        let _ = msg;
        todo!()
    }
}

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

/// Client side of SCRAM-SHA-256: sqlmux logging in to a server.
pub struct ScramClient {
    _p: (),
}

impl ScramClient {
    /// Starts an exchange with a fresh random nonce.
    pub fn new(credentials: ScramCredentials) -> Self {
        let _ = credentials;
        todo!()
    }
    /// The client-first-message (`n,,n=,r=<nonce>`).
    pub fn client_first(&self) -> Vec<u8> {
        todo!()
    }
    /// Takes the server-first-message, returns the client-final-message.
    pub fn server_first(&mut self, msg: &[u8]) -> Result<Vec<u8>, ScramError> {
        let _ = msg;
        todo!()
    }
    /// Checks the server-final-message (`v=...`).
    pub fn server_final(&self, msg: &[u8]) -> Result<(), ScramError> {
        let _ = msg;
        todo!()
    }
}
