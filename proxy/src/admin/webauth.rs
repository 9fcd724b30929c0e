//! HTTP basic auth for the web page and `/api` (and `/metrics` when
//! `admin.metrics_auth` is on).
//!
//! The user must be in `admin.users` or `admin.stats_users` and have a
//! `[[users]]` entry; the password is checked with the same secrets the
//! console uses ([`crate::auth::AuthUser::check_password`]: the plain
//! password, the md5 hash, or the SCRAM verifier derived again). A user
//! without any secret gets in only when `postgres.auth = "trust"`, as on
//! the console. Both roles may read everything HTTP offers: nothing on it
//! changes state.
//!
//! A page polls several endpoints every few seconds, and a SCRAM check is
//! one PBKDF2 run, so a successful check is remembered for [`CACHE_TTL`]
//! as an HMAC of (user, password) under a key made at start-up, tied to the
//! very `AuthUser` it was checked against (RELOAD with a new password makes
//! a new `AuthUser`, which invalidates the entry). Passwords are never
//! stored or logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::hmac;

use super::console::role_of;
use crate::Shared;
use crate::auth::AuthUser;
use crate::config::AuthMethod;

/// How long a successful check is remembered.
pub const CACHE_TTL: Duration = Duration::from_secs(60);

/// Most users remembered at once (a safety net: entries are per user).
const CACHE_MAX: usize = 1024;

/// The realm sent with `WWW-Authenticate`.
pub const REALM: &str = "sqlmux";

/// Remembered successful checks, per user.
pub struct Cache {
    key: hmac::Key,
    ok: Mutex<HashMap<String, Remembered>>,
}

struct Remembered {
    tag: hmac::Tag,
    user: Arc<AuthUser>,
    at: Instant,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("webauth::Cache(..)")
    }
}

impl Default for Cache {
    fn default() -> Self {
        let rng = ring::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            .expect("the operating system's random number generator works");
        Cache {
            key,
            ok: Mutex::new(HashMap::new()),
        }
    }
}

impl Cache {
    fn tag(&self, user: &str, password: &str) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(user.as_bytes());
        ctx.update(&[0]);
        ctx.update(password.as_bytes());
        ctx.sign()
    }

    fn hit(&self, user: &Arc<AuthUser>, password: &str) -> bool {
        let map = self.ok.lock().unwrap_or_else(|e| e.into_inner());
        let Some(r) = map.get(&user.name) else {
            return false;
        };
        let tag = self.tag(&user.name, password);
        Arc::ptr_eq(&r.user, user) && r.at.elapsed() < CACHE_TTL && tags_equal(&r.tag, &tag)
    }

    fn remember(&self, user: &Arc<AuthUser>, password: &str) {
        let tag = self.tag(&user.name, password);
        let mut map = self.ok.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CACHE_MAX {
            map.retain(|_, r| r.at.elapsed() < CACHE_TTL);
            if map.len() >= CACHE_MAX {
                map.clear();
            }
        }
        let entry = Remembered {
            tag,
            user: user.clone(),
            at: Instant::now(),
        };
        map.insert(user.name.clone(), entry);
    }
}

/// Constant-time comparison of two HMAC tags.
fn tags_equal(a: &hmac::Tag, b: &hmac::Tag) -> bool {
    let (a, b) = (a.as_ref(), b.as_ref());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a request was refused (for the log; the client only sees 401).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Basic` header, or one that does not decode.
    NoCredentials,
    /// The user is not in `admin.users` or `admin.stats_users`.
    NotAdmin(String),
    /// No `[[users]]` entry, or no secret while auth is not trust.
    NoSecret(String),
    /// Wrong password.
    WrongPassword(String),
}

/// `user:password` from an `Authorization` header value.
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes = BASE64.decode(rest.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Checks the `Authorization` header of a request; `Ok` carries the user.
pub fn check(shared: &Shared, cache: &Cache, header: Option<&str>) -> Result<String, Refusal> {
    let (user, password) = header.and_then(parse_basic).ok_or(Refusal::NoCredentials)?;
    let cfg = shared.config.load();
    if role_of(&cfg, &user).is_none() {
        return Err(Refusal::NotAdmin(user));
    }
    let users = shared.users.load();
    let Some(u) = users.get(&user) else {
        return Err(Refusal::NoSecret(user));
    };
    if cache.hit(u, &password) {
        return Ok(user);
    }
    match u.check_password(&password) {
        Some(true) => {
            cache.remember(u, &password);
            Ok(user)
        }
        Some(false) => Err(Refusal::WrongPassword(user)),
        None if cfg.postgres.auth == AuthMethod::Trust => Ok(user),
        None => Err(Refusal::NoSecret(user)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_headers_decode_to_user_and_password() {
        let h = format!("Basic {}", BASE64.encode("admin:pa:ss"));
        assert_eq!(
            parse_basic(&h),
            Some(("admin".to_owned(), "pa:ss".to_owned()))
        );
        let h = format!("basic  {}", BASE64.encode("u:"));
        assert_eq!(parse_basic(&h), Some(("u".to_owned(), String::new())));
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
        assert_eq!(
            parse_basic(&format!("Basic {}", BASE64.encode("nocolon"))),
            None
        );
    }

    #[test]
    fn the_cache_holds_only_the_checked_password_for_the_same_user_entry() {
        let cache = Cache::default();
        let u = Arc::new(AuthUser::new("admin", Some("right")));
        assert!(!cache.hit(&u, "right"));
        cache.remember(&u, "right");
        assert!(cache.hit(&u, "right"));
        assert!(!cache.hit(&u, "wrong"));
        // A reloaded user (new entry) is checked again.
        let reloaded = Arc::new(AuthUser::new("admin", Some("right")));
        assert!(!cache.hit(&reloaded, "right"));
    }
}
