//! Users sqlmux knows, with the secrets derived from the configuration.
//!
//! A `[[users]]` password may be plain text, an md5 hash or a SCRAM
//! verifier. From a plain password both a SCRAM verifier (random salt) and
//! the md5 hash are derived once, at load, so a login never runs PBKDF2.
//! When a client proves itself with SCRAM, the ClientKey recovered from its
//! proof is remembered so sqlmux can log in to the server as that user
//! without knowing the password (this is what makes verifier-only users
//! work against servers that require SCRAM).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sqlmux_protocol::postgres::auth::{ScramVerifier, md5_hash};

use crate::config::Config;

/// The secret of a user, in the forms sqlmux can check.
#[derive(Clone)]
pub enum UserSecret {
    /// No password configured (trust only).
    None,
    /// A plain password, with derived verifier and md5 hash.
    Plain {
        /// The password itself (needed for cleartext server logins).
        password: String,
        /// SCRAM verifier derived with a random salt.
        scram: ScramVerifier,
        /// `md5` + md5(password + user).
        md5: String,
    },
    /// Only an md5 hash.
    Md5(String),
    /// Only a SCRAM verifier.
    Scram(ScramVerifier),
}

impl std::fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramKeys(<redacted>)")
    }
}

impl std::fmt::Debug for UserSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UserSecret::None => "None",
            UserSecret::Plain { .. } => "Plain(<redacted>)",
            UserSecret::Md5(_) => "Md5(<redacted>)",
            UserSecret::Scram(_) => "Scram(<redacted>)",
        })
    }
}

/// SCRAM keys learned from a client's proof.
#[derive(Clone, Copy)]
pub struct ScramKeys {
    /// ClientKey.
    pub client_key: [u8; 32],
    /// ServerKey.
    pub server_key: [u8; 32],
}

/// A user and its secret.
#[derive(Debug)]
pub struct AuthUser {
    /// User name.
    pub name: String,
    /// Its secret.
    pub secret: UserSecret,
    learned: Mutex<Option<ScramKeys>>,
}

impl AuthUser {
    /// Builds a user from a configured password string.
    pub fn new(name: &str, password: Option<&str>) -> AuthUser {
        let secret = match password {
            None => UserSecret::None,
            Some(p) if p.starts_with("SCRAM-SHA-256$") => match ScramVerifier::parse(p) {
                Some(v) => UserSecret::Scram(v),
                None => UserSecret::None,
            },
            Some(p) if is_md5_hash(p) => UserSecret::Md5(p.to_owned()),
            Some(p) => UserSecret::Plain {
                password: p.to_owned(),
                scram: ScramVerifier::generate(p),
                md5: md5_hash(name, p),
            },
        };
        AuthUser {
            name: name.to_owned(),
            secret,
            learned: Mutex::new(None),
        }
    }

    /// The SCRAM verifier, if the user has one (plain or verifier).
    pub fn scram_verifier(&self) -> Option<&ScramVerifier> {
        match &self.secret {
            UserSecret::Plain { scram, .. } | UserSecret::Scram(scram) => Some(scram),
            _ => None,
        }
    }

    /// The md5 hash, if the user has one (plain or md5).
    pub fn md5(&self) -> Option<&str> {
        match &self.secret {
            UserSecret::Plain { md5, .. } | UserSecret::Md5(md5) => Some(md5),
            _ => None,
        }
    }

    /// The plain password, if configured.
    pub fn plain(&self) -> Option<&str> {
        match &self.secret {
            UserSecret::Plain { password, .. } => Some(password),
            _ => None,
        }
    }

    /// Checks a plaintext password (HTTP basic auth on the admin port)
    /// against whatever secret the user has: the plain password, the md5
    /// hash, or the SCRAM verifier (derived again with its salt; one PBKDF2
    /// run). `None` when the user has no secret to check against.
    pub fn check_password(&self, password: &str) -> Option<bool> {
        use sqlmux_protocol::postgres::auth::md5_matches_password;
        Some(match &self.secret {
            UserSecret::None => return None,
            UserSecret::Plain { md5, .. } | UserSecret::Md5(md5) => {
                md5_matches_password(md5, &self.name, password)
            }
            UserSecret::Scram(v) => v.matches_password(password),
        })
    }

    /// Remembers the keys recovered from a successful client SCRAM login.
    pub fn learn_scram_keys(&self, keys: ScramKeys) {
        *self.learned.lock().unwrap_or_else(|e| e.into_inner()) = Some(keys);
    }

    /// Keys learned from a client's SCRAM login, if any.
    pub fn learned_scram_keys(&self) -> Option<ScramKeys> {
        *self.learned.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `md5` followed by 32 hex digits.
pub fn is_md5_hash(s: &str) -> bool {
    s.len() == 35 && s.starts_with("md5") && s[3..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// All configured users by name.
#[derive(Debug, Default)]
pub struct Users {
    by_name: HashMap<String, Arc<AuthUser>>,
}

impl Users {
    /// Builds the user table, reusing entries of `previous` whose password
    /// did not change (so RELOAD keeps learned keys and salts).
    pub fn from_config(cfg: &Config, previous: Option<&Users>) -> Users {
        let mut by_name = HashMap::new();
        for u in &cfg.users {
            let password = u.password.as_ref().map(|s| s.0.as_str());
            let reuse = previous
                .and_then(|p| p.by_name.get(&u.name))
                .filter(|old| same_password(old, password))
                .cloned();
            let user = reuse.unwrap_or_else(|| Arc::new(AuthUser::new(&u.name, password)));
            by_name.insert(u.name.clone(), user);
        }
        Users { by_name }
    }

    /// A user by name.
    pub fn get(&self, name: &str) -> Option<&Arc<AuthUser>> {
        self.by_name.get(name)
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// True when no user is configured.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<_> = self.by_name.keys().cloned().collect();
        v.sort();
        v
    }
}

fn same_password(old: &AuthUser, new: Option<&str>) -> bool {
    match (&old.secret, new) {
        (UserSecret::None, None) => true,
        (UserSecret::Plain { password, .. }, Some(p)) => password == p,
        (UserSecret::Md5(h), Some(p)) => h == p,
        (UserSecret::Scram(v), Some(p)) => v.to_string() == p,
        _ => false,
    }
}

/// Users looked up on the server with `postgres.auth_query`, by
/// (database, user). Every login looks its secret up again (as PgBouncer
/// does, so a changed password works at once); an entry whose secret did
/// not change keeps its `AuthUser` and the keys learned from earlier
/// logins, which server logins of the user's pool need.
#[derive(Debug, Default)]
pub struct AuthCache {
    map: Mutex<HashMap<(String, String), CachedUser>>,
}

/// When an auth_query entry was looked up, and the user it produced.
type CachedUser = (std::time::Instant, Arc<AuthUser>);

impl AuthCache {
    /// Stores a looked-up secret; returns the user to use (the cached one
    /// when the secret is unchanged).
    pub fn put(&self, db: &str, user: &str, secret: &str) -> Arc<AuthUser> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let key = (db.to_owned(), user.to_owned());
        let u = match map.get(&key) {
            Some((_, old)) if same_password(old, Some(secret)) => old.clone(),
            _ => Arc::new(AuthUser::new(user, Some(secret))),
        };
        map.insert(key, (std::time::Instant::now(), u.clone()));
        u
    }

    /// Any entry (fresh or expired), for server logins of pools.
    pub fn any(&self, db: &str, user: &str) -> Option<Arc<AuthUser>> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(db.to_owned(), user.to_owned()))
            .map(|(_, u)| u.clone())
    }

    /// Forgets everything (RELOAD).
    pub fn clear(&self) {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}
