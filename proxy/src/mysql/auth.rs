//! Client authentication on the MySQL listener.
//!
//! sqlmux offers `mysql.auth` in its greeting (mysql_native_password by
//! default) and accepts a response computed with either supported plugin;
//! a client that used another plugin is switched (AuthSwitchRequest) to
//! the configured one.
//!
//! - mysql_native_password: verified against SHA1(SHA1(password)), from a
//!   plain `[[users]]` password or its `*HEX` form.
//! - caching_sha2_password: the fast path needs the plain password; without
//!   it (a `*HEX` user) sqlmux asks for full authentication, which takes the
//!   password in clear and so needs TLS. A client without TLS that asks for
//!   the server's RSA key gets an ERR naming the fix.
//!
//! A successful proof yields the key sqlmux may use to log in to servers as
//! the same user ([`Proof`]).

use bytes::BytesMut;
use sqlmux_protocol::mysql::auth::{
    NativeKey, NativeVerifier, Sha2Key, Sha2Verifier, full_auth_password,
};
use sqlmux_protocol::mysql::handshake::{
    AuthSwitchRequest, CACHING_SHA2_FAST_AUTH_SUCCESS, CACHING_SHA2_PASSWORD,
    CACHING_SHA2_PERFORM_FULL_AUTH, MYSQL_NATIVE_PASSWORD, encode_auth_more_data,
};

use super::conn::PacketConn;
use super::server_login::is_native_hash;
use crate::auth::{AuthUser, UserSecret};
use crate::session::Refusal;

/// Longest packet accepted during authentication.
const MAX_AUTH_PACKET: usize = 64 * 1024;

/// What a correct client proof taught sqlmux.
#[derive(Debug)]
pub enum Proof {
    /// SHA1(password), for native server logins.
    Native(NativeKey),
    /// SHA256(password), for caching_sha2 server logins.
    Sha2(Sha2Key),
}

/// One client's authentication exchange.
pub struct Exchange<'a> {
    /// The client connection.
    pub conn: &'a mut PacketConn,
    /// The scramble sent in the greeting.
    pub scramble: &'a [u8],
    /// Sequence id of the next packet sqlmux sends.
    pub seq: u8,
    /// The plugin sqlmux offered.
    pub offered: &'a str,
    /// True when the client connection uses TLS.
    pub tls: bool,
    /// `mysql.trust`: users without a password log in with an empty one.
    pub trust: bool,
}

impl Exchange<'_> {
    /// Checks `response` (computed by `plugin`) for `user`. On success the
    /// next sequence id is in `self.seq`, ready for the final OK.
    pub async fn run(
        &mut self,
        user: &AuthUser,
        plugin: &str,
        response: &[u8],
    ) -> Result<Proof, Refusal> {
        let trusted = self.trust || !matches!(user.secret, UserSecret::None);
        let Some(password) = mysql_password(user).filter(|_| trusted) else {
            return Err(Refusal::BadPassword {
                user: user.name.clone(),
            });
        };
        let mut response = response.to_vec();
        let mut plugin = plugin.to_owned();
        if plugin != MYSQL_NATIVE_PASSWORD && plugin != CACHING_SHA2_PASSWORD {
            AuthSwitchRequest::encode(&mut self.conn.out, self.seq, self.offered, self.scramble);
            response = self.reply().await?.to_vec();
            plugin = self.offered.to_owned();
        }
        let bad = || Refusal::BadPassword {
            user: user.name.clone(),
        };
        if plugin == MYSQL_NATIVE_PASSWORD {
            let verifier = NativeVerifier::from_config(password);
            return verifier
                .verify(self.scramble, &response)
                .map(Proof::Native)
                .ok_or_else(bad);
        }
        if !is_native_hash(password) {
            let verifier = Sha2Verifier::from_password(password.as_bytes());
            let key = verifier
                .verify_fast(self.scramble, &response)
                .ok_or_else(bad)?;
            self.seq = encode_auth_more_data(
                &mut self.conn.out,
                self.seq,
                &[CACHING_SHA2_FAST_AUTH_SUCCESS],
            );
            return Ok(Proof::Sha2(key));
        }
        self.full_auth(user, password).await
    }

    /// caching_sha2 full authentication: the password in clear, over TLS.
    async fn full_auth(&mut self, user: &AuthUser, password: &str) -> Result<Proof, Refusal> {
        self.seq = encode_auth_more_data(
            &mut self.conn.out,
            self.seq,
            &[CACHING_SHA2_PERFORM_FULL_AUTH],
        );
        let reply = self.reply().await?;
        let clear = match full_auth_password(&reply) {
            Ok(p) if self.tls => p,
            _ => {
                return Err(Refusal::Sha2NeedsTls {
                    user: user.name.clone(),
                });
            }
        };
        NativeVerifier::from_config(password)
            .verify_cleartext(clear)
            .map(Proof::Native)
            .ok_or_else(|| Refusal::BadPassword {
                user: user.name.clone(),
            })
    }

    /// Flushes what is queued and reads the client's next auth packet.
    async fn reply(&mut self) -> Result<BytesMut, Refusal> {
        let closed = || Refusal::ProtocolViolation {
            what: "the client closed the connection during authentication".into(),
        };
        self.conn.flush().await.map_err(|_| closed())?;
        let (seq, payload) = self
            .conn
            .read_packet(MAX_AUTH_PACKET)
            .await
            .map_err(|_| closed())?;
        self.seq = seq.wrapping_add(1);
        Ok(payload)
    }
}

/// The password string a MySQL login checks against: plain or `*HEX`;
/// empty for a user without one (who logs in only under `mysql.trust`).
/// `None` for PostgreSQL-only secrets.
fn mysql_password(user: &AuthUser) -> Option<&str> {
    match &user.secret {
        UserSecret::None => Some(""),
        UserSecret::Plain { password, .. } => Some(password),
        UserSecret::Md5(_) | UserSecret::Scram(_) => None,
    }
}
