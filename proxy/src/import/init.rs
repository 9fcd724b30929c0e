//! `sqlmux init --from URL`: a configuration for the one database a
//! `DATABASE_URL` names, and the URL the application should use instead
//! (the same URL with sqlmux's host and port).
//!
//! `postgres://` and `postgresql://` URLs give a `[postgres]` listener,
//! `mysql://` (and `mariadb://`) a `[mysql]` one. The URL's user becomes a
//! `[[users]]` entry with the URL's password (so the application keeps its
//! credentials) and the admin user. `sslmode` maps to `server_tls`.

use super::ImportError;
use super::plan::{Plan, Setting, Toml};

/// A parsed database URL.
#[derive(Clone, PartialEq, Eq)]
pub struct DbUrl {
    /// `postgres` or `mysql`.
    pub protocol: &'static str,
    /// The scheme as written.
    pub scheme: String,
    /// User, if any.
    pub user: Option<String>,
    /// Password, if any (never printed).
    pub password: Option<String>,
    /// Host.
    pub host: String,
    /// Port, if given.
    pub port: Option<u16>,
    /// Database name, if given.
    pub database: Option<String>,
    /// Query parameters.
    pub params: Vec<(String, String)>,
}

impl std::fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DbUrl({})", self.redacted())
    }
}

/// `%XX` decoding of a URL component.
fn decode(s: &str) -> Result<String, ImportError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            out.push(hex.ok_or_else(|| ImportError::Url(format!("bad %-escape in {s:?}")))?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| ImportError::Url("the URL is not UTF-8 after decoding".into()))
}

/// `%XX` encoding of a user-info or path component.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl DbUrl {
    /// Parses `scheme://[user[:password]@]host[:port][/database][?k=v&...]`.
    pub fn parse(url: &str) -> Result<DbUrl, ImportError> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            ImportError::Url("expected a URL like postgres://user:password@host:5432/db".into())
        })?;
        let protocol = match scheme {
            "postgres" | "postgresql" => "postgres",
            "mysql" | "mariadb" => "mysql",
            other => {
                return Err(ImportError::Url(format!(
                    "unsupported scheme {other:?}: use postgres://, postgresql:// or mysql://"
                )));
            }
        };
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo.map(|u| u.split_once(':').unwrap_or((u, ""))) {
            Some((u, p)) => (
                Some(decode(u)?).filter(|u| !u.is_empty()),
                Some(decode(p)?).filter(|p| !p.is_empty()),
            ),
            None => (None, None),
        };
        let (host, port) = split_host_port(hostport)?;
        let params = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                Ok((decode(k)?, decode(v)?))
            })
            .collect::<Result<Vec<_>, ImportError>>()?;
        let database = Some(decode(path)?).filter(|d| !d.is_empty());
        Ok(DbUrl {
            protocol,
            scheme: scheme.to_owned(),
            user,
            password,
            host,
            port,
            database,
            params,
        })
    }

    /// The URL with the password replaced by `****`.
    pub fn redacted(&self) -> String {
        self.render(&self.host, self.port, true)
    }

    /// The URL with another host and port.
    pub fn render(&self, host: &str, port: Option<u16>, hide_password: bool) -> String {
        let mut s = format!("{}://", self.scheme);
        if let Some(u) = &self.user {
            s.push_str(&encode(u));
            if let Some(p) = &self.password {
                s.push(':');
                s.push_str(&if hide_password {
                    "****".to_owned()
                } else {
                    encode(p)
                });
            }
            s.push('@');
        }
        if host.contains(':') {
            s.push_str(&format!("[{host}]"));
        } else {
            s.push_str(host);
        }
        if let Some(p) = port {
            s.push_str(&format!(":{p}"));
        }
        if let Some(d) = &self.database {
            s.push('/');
            s.push_str(&encode(d));
        }
        if !self.params.is_empty() {
            let q: Vec<String> = self
                .params
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect();
            s.push('?');
            s.push_str(&q.join("&"));
        }
        s
    }
}

fn split_host_port(hp: &str) -> Result<(String, Option<u16>), ImportError> {
    let bad_port = |p: &str| ImportError::Url(format!("bad port {p:?}"));
    if let Some(rest) = hp.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| ImportError::Url("unclosed [ in the host".into()))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().map_err(|_| bad_port(p))?),
            None => None,
        };
        return Ok((host.to_owned(), port));
    }
    let (host, port) = match hp.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.parse().map_err(|_| bad_port(p))?)),
        None => (hp, None),
    };
    if host.is_empty() || host.contains(',') {
        return Err(ImportError::Url("the URL needs exactly one host".into()));
    }
    Ok((decode(host)?, port))
}

/// What `sqlmux init` writes and prints.
#[derive(Debug)]
pub struct Init {
    /// The configuration.
    pub imported: super::Imported,
    /// The URL the application should use instead (password as `****`).
    pub app_url: String,
}

/// Builds the configuration for `url`, with sqlmux listening on `listen`
/// (`host:port`; empty for the protocol's default on 127.0.0.1).
pub fn from_url(url: &str, listen: &str) -> Result<Init, ImportError> {
    let u = DbUrl::parse(url)?;
    let default_listen = if u.protocol == "mysql" {
        "127.0.0.1:6033"
    } else {
        "127.0.0.1:6432"
    };
    let listen = if listen.is_empty() {
        default_listen
    } else {
        listen
    };
    let (lhost, lport) = split_host_port(listen)?;
    let mut plan = Plan::default();
    plan.set(
        u.protocol,
        "listen",
        Toml::str(listen),
        "where the application connects now",
    );
    if u.protocol == "postgres" {
        plan.set("postgres", "auth", Toml::str("scram-sha-256"), "");
    }
    let users: Vec<String> = u.user.iter().cloned().collect();
    plan.set(
        "admin",
        "listen",
        Toml::str("127.0.0.1:6434"),
        "psql console, web page, /metrics",
    );
    plan.set(
        "admin",
        "users",
        Toml::list(&users),
        "the URL's user, with its password",
    );
    plan.databases.push(database(&u));
    if let Some(name) = &u.user {
        let mut entry = vec![setting("name", Toml::str(name))];
        if let Some(p) = &u.password {
            entry.push(setting("password", Toml::str(p)));
        }
        plan.users.push(entry);
    }
    let header = vec![format!(
        "sqlmux configuration written by `sqlmux init --from {}`.",
        u.redacted()
    )];
    let shown_host = if lhost == "0.0.0.0" || lhost == "::" {
        "127.0.0.1".to_owned()
    } else {
        lhost
    };
    let app_url = u.render(&shown_host, lport, true);
    Ok(Init {
        imported: super::finish(&plan, &header),
        app_url,
    })
}

fn setting(key: &str, value: Toml) -> Setting {
    Setting {
        key: key.to_owned(),
        value,
        comment: String::new(),
    }
}

/// The `[[databases]]` entry for the URL.
fn database(u: &DbUrl) -> Vec<Setting> {
    let name = u
        .database
        .clone()
        .unwrap_or_else(|| u.user.clone().unwrap_or_else(|| "postgres".into()));
    let mut d = vec![
        setting("name", Toml::str(&name)),
        setting("protocol", Toml::str(u.protocol)),
        setting("host", Toml::str(&u.host)),
        setting(
            "port",
            Toml::raw(
                u.port
                    .unwrap_or(if u.protocol == "mysql" { 3306 } else { 5432 }),
            ),
        ),
    ];
    let sslmode = u
        .params
        .iter()
        .find(|(k, _)| k == "sslmode")
        .map(|(_, v)| v.as_str());
    let mode = match sslmode {
        Some(m @ ("disable" | "prefer" | "require" | "verify-ca" | "verify-full")) => Some(m),
        Some("allow") => Some("prefer"),
        _ => None,
    };
    if let (Some(m), "postgres") = (mode, u.protocol) {
        d.push(setting(
            "server_tls",
            Toml::inline(&[("mode".into(), Toml::str(m))]),
        ));
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_escapes_ipv6_and_parameters() {
        let u = DbUrl::parse("postgresql://app%40x:p%3Ass@[::1]:5433/my%20db?sslmode=require&x=1")
            .unwrap();
        assert_eq!(u.protocol, "postgres");
        assert_eq!(u.user.as_deref(), Some("app@x"));
        assert_eq!(u.password.as_deref(), Some("p:ss"));
        assert_eq!((u.host.as_str(), u.port), ("::1", Some(5433)));
        assert_eq!(u.database.as_deref(), Some("my db"));
        assert_eq!(u.params[0], ("sslmode".to_owned(), "require".to_owned()));
        assert!(!format!("{u:?}").contains("p:ss") && !format!("{u:?}").contains("p%3Ass"));
        assert!(DbUrl::parse("redis://x").is_err());
        assert!(DbUrl::parse("postgres://h1,h2/db").is_err());
    }

    #[test]
    fn init_gives_a_config_and_the_same_url_on_sqlmux() {
        let init = from_url(
            "postgres://app:secret@db.internal:5432/app?sslmode=require",
            "",
        )
        .unwrap();
        assert_eq!(
            init.app_url,
            "postgres://app:****@127.0.0.1:6432/app?sslmode=require"
        );
        init.imported.check.as_ref().unwrap();
        let t = &init.imported.toml;
        assert!(t.contains("host = \"db.internal\""), "{t}");
        assert!(t.contains("password = \"secret\""), "{t}");
        assert!(!t.lines().next().unwrap().contains("secret"), "{t}");
        assert!(t.contains("server_tls = { mode = \"require\" }"), "{t}");
    }

    #[test]
    fn init_writes_a_mysql_listener_and_database_for_mysql_urls() {
        let init = from_url("mysql://shop:pw@10.0.0.5/shop", "").unwrap();
        assert_eq!(init.app_url, "mysql://shop:****@127.0.0.1:6033/shop");
        let t = &init.imported.toml;
        assert!(t.contains("[mysql]\nlisten = \"127.0.0.1:6033\""), "{t}");
        assert!(t.contains("protocol = \"mysql\""), "{t}");
        assert!(t.contains("port = 3306"), "{t}");
        assert!(!t.contains("[postgres]"), "{t}");
    }
}
