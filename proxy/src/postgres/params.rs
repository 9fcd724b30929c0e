//! Session parameters that follow a client from server to server.
//!
//! Two kinds of state are tracked:
//! - *reported* parameters, which the server announces with ParameterStatus
//!   (client_encoding, DateStyle, TimeZone, application_name, ...). The
//!   client's wanted value is whatever the server last reported while the
//!   client held it, or what the client asked for at startup.
//! - *unreported* settings changed with SQL `SET` outside a transaction
//!   (search_path before PostgreSQL 18, statement_timeout, work_mem, ...):
//!   sqlmux keeps the statement that set them and replays it.
//!
//! At the start of each lease, [`sync_sql`] compares the client's wanted
//! state with the server's and produces one statement batch (set_config /
//! SET / RESET) that makes them equal; its results are swallowed.

use std::fmt::Write;

/// Reported parameters a client cannot change; never synchronized.
const READ_ONLY: &[&str] = &[
    "server_version",
    "server_encoding",
    "integer_datetimes",
    "in_hot_standby",
    "is_superuser",
    "session_authorization",
];

/// True for reported parameters that sessions may change.
pub fn is_writable(name: &str) -> bool {
    !READ_ONLY.iter().any(|r| r.eq_ignore_ascii_case(name))
}

/// A small ordered map of names to values (a handful of entries; linear
/// search beats hashing at this size).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamMap(Vec<(Box<str>, Box<str>)>);

impl ParamMap {
    /// Value of `name` (exact match).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| &**k == name).map(|(_, v)| &**v)
    }

    /// Value of `name`, ignoring ASCII case.
    pub fn get_ignore_case(&self, name: &str) -> Option<(&str, &str)> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(k, v)| (&**k, &**v))
    }

    /// Sets `name`; returns true if the value changed.
    pub fn set(&mut self, name: &str, value: &str) -> bool {
        match self.0.iter_mut().find(|(k, _)| &**k == name) {
            Some((_, v)) if &**v == value => false,
            Some((_, v)) => {
                *v = value.into();
                true
            }
            None => {
                self.0.push((name.into(), value.into()));
                true
            }
        }
    }

    /// Removes `name` (ignoring ASCII case); returns true if present.
    pub fn remove_ignore_case(&mut self, name: &str) -> bool {
        let before = self.0.len();
        self.0.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        before != self.0.len()
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Parameter state of one server connection.
#[derive(Debug, Clone, Default)]
pub struct ServerParams {
    /// Values reported at login: the defaults a RESET returns to.
    pub defaults: ParamMap,
    /// Values currently reported.
    pub current: ParamMap,
    /// Unreported settings applied by SQL: name -> the statement that set it.
    pub settings: ParamMap,
    /// Bumped whenever `current` or `settings` change.
    pub version: u64,
    /// (client id, client version, server version) after the last sync.
    pub synced: Option<(u64, u64, u64)>,
    /// (client state digest, server version) after the last sync: clients
    /// that want the same state skip the comparison.
    pub synced_digest: Option<(u64, u64)>,
}

impl ServerParams {
    /// Records a ParameterStatus.
    pub fn reported(&mut self, name: &str, value: &str) {
        if self.current.set(name, value) {
            self.version += 1;
        }
    }
}

/// Parameter state a client wants.
#[derive(Debug, Clone, Default)]
pub struct ClientParams {
    /// Wanted values of reported parameters (only those that differ from
    /// the server defaults need to be present).
    pub reported: ParamMap,
    /// Unreported settings: name -> statement to replay.
    pub settings: ParamMap,
    /// Bumped whenever `reported` or `settings` change.
    pub version: u64,
    /// Hash of `reported` and `settings` (order-independent).
    pub digest: u64,
    /// What the client asked for in its startup packet: the values RESET
    /// ALL and DISCARD ALL return to, as on a direct connection.
    startup: StartupValues,
}

/// Where a client's startup values are. Most clients never change what
/// they logged in with, so the copy is made only at the first change.
#[derive(Debug, Clone, Default)]
enum StartupValues {
    /// The startup packet set nothing (or nothing was remembered yet).
    #[default]
    None,
    /// `reported` and `settings` still hold exactly the startup values.
    Current,
    /// A copy, taken before the first change.
    Saved(Box<(ParamMap, ParamMap)>),
}

impl ClientParams {
    fn changed(&mut self) {
        self.version += 1;
        let mut d: u64 = 0x9e37_79b9_7f4a_7c15;
        for (k, v) in self.reported.iter() {
            d = d.wrapping_add(pair_hash(1, k, v));
        }
        for (k, v) in self.settings.iter() {
            d = d.wrapping_add(pair_hash(2, k, v));
        }
        self.digest = d;
    }

    /// Records a wanted reported value.
    pub fn want(&mut self, name: &str, value: &str) {
        if self.reported.get(name) == Some(value) {
            return;
        }
        self.save_startup();
        self.reported.set(name, value);
        self.changed();
    }

    /// Records an unreported setting and the statement that applies it.
    pub fn set_setting(&mut self, name: &str, statement: &str) {
        if self.settings.get(name) == Some(statement) {
            return;
        }
        self.save_startup();
        self.settings.set(name, statement);
        self.changed();
    }

    /// The startup values (reported, settings), if the packet set any.
    fn startup(&self) -> Option<(&ParamMap, &ParamMap)> {
        match &self.startup {
            StartupValues::None => None,
            StartupValues::Current => Some((&self.reported, &self.settings)),
            StartupValues::Saved(s) => Some((&s.0, &s.1)),
        }
    }

    /// Copies the startup values aside before the maps first change.
    fn save_startup(&mut self) {
        if let StartupValues::Current = self.startup {
            let copy = (self.reported.clone(), self.settings.clone());
            self.startup = StartupValues::Saved(Box::new(copy));
        }
    }

    /// RESET name of an unreported setting: back to the startup value, or
    /// to the server default when the startup packet did not set it.
    pub fn reset_setting(&mut self, name: &str) {
        let startup = self
            .startup()
            .and_then(|(_, settings)| settings.get_ignore_case(name))
            .map(|(k, v)| (k.to_owned(), v.to_owned()));
        self.save_startup();
        let changed = match startup {
            Some((k, v)) => {
                let removed = self.settings.remove_ignore_case(name);
                self.settings.set(&k, &v) || removed
            }
            None => self.settings.remove_ignore_case(name),
        };
        if changed {
            self.changed();
        }
    }

    /// Remembers the current state as the one the client logged in with.
    pub fn remember_startup(&mut self) {
        self.startup = if self.reported.is_empty() && self.settings.is_empty() {
            StartupValues::None
        } else {
            StartupValues::Current
        };
    }

    /// RESET ALL / DISCARD ALL: back to the session defaults, which are the
    /// server defaults overridden by what the startup packet asked for.
    pub fn reset_all(&mut self) {
        let (reported, settings) = match std::mem::take(&mut self.startup) {
            StartupValues::Current => {
                // Nothing changed since login.
                self.startup = StartupValues::Current;
                return;
            }
            StartupValues::Saved(s) => {
                self.startup = StartupValues::Current;
                *s
            }
            StartupValues::None => Default::default(),
        };
        if self.reported != reported || self.settings != settings {
            self.reported = reported;
            self.settings = settings;
            self.changed();
        }
    }

    /// The statements that re-apply the startup values on a server right
    /// after a RESET ALL / DISCARD ALL, or after RESET of the one parameter
    /// `only` (a server returns to *its* startup values, not the
    /// client's). None when the startup packet set none of them.
    pub fn restore_sql(&self, only: Option<&str>) -> Option<String> {
        let (reported, settings) = self.startup()?;
        let wanted = |name: &str| only.is_none_or(|o| o.eq_ignore_ascii_case(name));
        let mut set_config = String::new();
        for (name, value) in reported.iter().filter(|(n, _)| wanted(n)) {
            push_set_config(&mut set_config, name, value);
        }
        let mut sql = String::new();
        if !set_config.is_empty() {
            sql.push_str("SELECT ");
            sql.push_str(&set_config);
            sql.push_str("; ");
        }
        for (_, stmt) in settings.iter().filter(|(n, _)| wanted(n)) {
            sql.push_str(stmt);
            sql.push_str("; ");
        }
        (!sql.is_empty()).then_some(sql)
    }
}

/// One (kind, name, value) entry of the digest: the name's hash seeds the
/// value's, so the pair hashes as a unit without a buffer.
fn pair_hash(kind: u8, k: &str, v: &str) -> u64 {
    let name = xxhash_rust::xxh3::xxh3_64_with_seed(k.as_bytes(), u64::from(kind));
    xxhash_rust::xxh3::xxh3_64_with_seed(v.as_bytes(), name)
}

/// Quotes `s` as an SQL string literal.
pub fn quote_literal(out: &mut String, s: &str) {
    if s.contains('\\') {
        out.push_str("E'");
        for c in s.chars() {
            match c {
                '\'' => out.push_str("''"),
                '\\' => out.push_str("\\\\"),
                c => out.push(c),
            }
        }
    } else {
        out.push('\'');
        for c in s.chars() {
            if c == '\'' {
                out.push_str("''");
            } else {
                out.push(c);
            }
        }
    }
    out.push('\'');
}

/// The statement batch that gives `server` the state `client` wants, or
/// None when they already agree. Afterwards the caller updates the server
/// state with [`mark_synced`] (reported values arrive by ParameterStatus).
pub fn sync_sql(client_id: u64, client: &ClientParams, server: &ServerParams) -> Option<String> {
    if server.synced == Some((client_id, client.version, server.version))
        || server.synced_digest == Some((client.digest, server.version))
    {
        return None;
    }
    let mut set_config = String::new();
    let mut statements = String::new();
    // Reported parameters: the client's wanted value or the server default.
    for (name, current) in server.current.iter() {
        if !is_writable(name) {
            continue;
        }
        let wanted = client
            .reported
            .get(name)
            .or_else(|| server.defaults.get(name))
            .unwrap_or("");
        if wanted != current {
            push_set_config(&mut set_config, name, wanted);
        }
    }
    for (name, wanted) in client.reported.iter() {
        if server.current.get(name).is_none() {
            push_set_config(&mut set_config, name, wanted);
        }
    }
    // Unreported settings: replay what the client set, reset what it did not.
    for (name, stmt) in client.settings.iter() {
        if server.settings.get(name) != Some(stmt) {
            statements.push_str(stmt);
            statements.push_str("; ");
        }
    }
    for (name, _) in server.settings.iter() {
        if client.settings.get(name).is_none() {
            let _ = write!(statements, "RESET {}; ", quote_ident(name));
        }
    }
    if set_config.is_empty() && statements.is_empty() {
        return None;
    }
    let mut sql = String::with_capacity(set_config.len() + statements.len() + 16);
    if !set_config.is_empty() {
        sql.push_str("SELECT ");
        sql.push_str(&set_config);
        sql.push_str("; ");
    }
    sql.push_str(&statements);
    Some(sql)
}

/// After a sync batch completed: the server's unreported settings now equal
/// the client's, and the pair is stamped so the next lease of the same
/// client on the same server skips the comparison.
pub fn mark_synced(client_id: u64, client: &ClientParams, server: &mut ServerParams) {
    if server.settings != client.settings {
        server.settings = client.settings.clone();
        server.version += 1;
    }
    server.synced = Some((client_id, client.version, server.version));
    server.synced_digest = Some((client.digest, server.version));
}

fn push_set_config(out: &mut String, name: &str, value: &str) {
    if !out.is_empty() {
        out.push_str(", ");
    }
    out.push_str("pg_catalog.set_config(");
    quote_literal(out, name);
    out.push_str(", ");
    quote_literal(out, value);
    out.push_str(", false)");
}

/// Quotes an identifier when it is not a plain lower-case name.
pub fn quote_ident(name: &str) -> String {
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
        && !name.as_bytes()[0].is_ascii_digit();
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> ServerParams {
        let mut s = ServerParams::default();
        for (k, v) in [
            ("application_name", ""),
            ("TimeZone", "UTC"),
            ("server_version", "15.0"),
        ] {
            s.defaults.set(k, v);
            s.reported(k, v);
        }
        s
    }

    #[test]
    fn no_sql_when_states_agree() {
        let s = server();
        let c = ClientParams::default();
        assert_eq!(sync_sql(1, &c, &s), None);
    }

    #[test]
    fn client_values_and_defaults_are_applied() {
        let mut s = server();
        s.reported("application_name", "other-client");
        let mut c = ClientParams::default();
        c.want("TimeZone", "Europe/Berlin");
        let sql = sync_sql(1, &c, &s).unwrap();
        assert!(
            sql.contains("set_config('application_name', '', false)"),
            "{sql}"
        );
        assert!(
            sql.contains("set_config('TimeZone', 'Europe/Berlin', false)"),
            "{sql}"
        );
        assert!(!sql.contains("server_version"), "{sql}");
    }

    #[test]
    fn unreported_settings_replay_and_reset() {
        let mut s = server();
        s.settings
            .set("statement_timeout", "SET statement_timeout = 5");
        let mut c = ClientParams::default();
        c.set_setting("search_path", "SET search_path TO app, public");
        let sql = sync_sql(7, &c, &s).unwrap();
        assert!(sql.contains("SET search_path TO app, public; "), "{sql}");
        assert!(sql.contains("RESET statement_timeout; "), "{sql}");
        mark_synced(7, &c, &mut s);
        assert_eq!(sync_sql(7, &c, &s), None);
        // Another client with no settings needs a reset.
        assert!(
            sync_sql(8, &ClientParams::default(), &s)
                .unwrap()
                .contains("RESET search_path")
        );
    }

    #[test]
    fn reset_all_returns_to_the_startup_values() {
        let mut c = ClientParams::default();
        assert_eq!(c.restore_sql(None), None);
        c.want("application_name", "app");
        c.set_setting("work_mem", "SET work_mem TO '8MB'");
        c.remember_startup();
        c.want("application_name", "changed");
        c.set_setting("search_path", "SET search_path TO x");
        c.reset_all();
        assert_eq!(c.reported.get("application_name"), Some("app"));
        assert_eq!(c.settings.get("search_path"), None);
        assert_eq!(c.settings.get("work_mem"), Some("SET work_mem TO '8MB'"));
        assert_eq!(c.restore_sql(Some("search_path")), None);
        let one = c.restore_sql(Some("WORK_MEM")).unwrap();
        assert_eq!(one, "SET work_mem TO '8MB'; ");
        c.set_setting("work_mem", "SET work_mem TO '1MB'");
        c.reset_setting("work_mem");
        assert_eq!(c.settings.get("work_mem"), Some("SET work_mem TO '8MB'"));
        let sql = c.restore_sql(None).unwrap();
        assert!(
            sql.contains("set_config('application_name', 'app', false)"),
            "{sql}"
        );
        assert!(sql.contains("SET work_mem TO '8MB'; "), "{sql}");
        // A second round of changes returns to the same values.
        let digest = c.digest;
        c.want("application_name", "again");
        c.set_setting("work_mem", "SET work_mem TO '2MB'");
        assert_ne!(c.digest, digest);
        c.reset_all();
        assert_eq!(c.reported.get("application_name"), Some("app"));
        assert_eq!(c.settings.get("work_mem"), Some("SET work_mem TO '8MB'"));
        assert_eq!(c.digest, digest);
        assert_eq!(c.restore_sql(None).as_deref(), Some(sql.as_str()));
    }

    #[test]
    fn literals_are_quoted() {
        let mut out = String::new();
        quote_literal(&mut out, "it's");
        assert_eq!(out, "'it''s'");
        let mut out = String::new();
        quote_literal(&mut out, "a\\b");
        assert_eq!(out, "E'a\\\\b'");
        assert_eq!(quote_ident("work_mem"), "work_mem");
        assert_eq!(quote_ident("DateStyle"), "\"DateStyle\"");
    }

    #[test]
    fn clients_wanting_the_same_state_skip_the_comparison() {
        let mut s = server();
        let mut a = ClientParams::default();
        a.want("application_name", "pgbench");
        let mut b = ClientParams::default();
        b.want("application_name", "pgbench");
        assert_eq!(a.digest, b.digest);
        assert!(sync_sql(1, &a, &s).is_some());
        s.reported("application_name", "pgbench");
        mark_synced(1, &a, &mut s);
        assert_eq!(sync_sql(2, &b, &s), None);
        let mut c = ClientParams::default();
        c.want("application_name", "other");
        assert!(sync_sql(3, &c, &s).is_some());
    }
}
