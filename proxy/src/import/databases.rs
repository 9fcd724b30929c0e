//! `[databases]` lines become `[[databases]]` entries; `[users]`,
//! `[peers]` and unknown sections are noted, and the `auth_file` users
//! become `[[users]]`.

use super::connstr;
use super::ini::Entry;
use super::plan::{NoteKind, Plan, Setting, Toml};
use super::userlist::UserLine;
use super::values::{duration, int, seconds};

fn shown(e: &Entry) -> String {
    format!("[{}] {} = {}", e.section, e.key, redact(&e.value))
}

/// The value with `password=...` hidden.
fn redact(v: &str) -> String {
    match connstr::parse(v) {
        Ok(pairs) => pairs
            .iter()
            .map(|(k, v)| {
                if k == "password" {
                    format!("{k}=***")
                } else {
                    format!("{k}={v}")
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
        Err(_) => v.to_owned(),
    }
}

fn setting(key: &str, value: Toml, comment: &str) -> Setting {
    Setting {
        key: key.to_owned(),
        value,
        comment: comment.to_owned(),
    }
}

/// Maps every non-`[pgbouncer]` section.
pub fn apply(entries: &[Entry], plan: &mut Plan, server_tls: Option<&Toml>) {
    for e in entries {
        match e.section.as_str() {
            "pgbouncer" => {}
            "databases" => database(plan, e, server_tls),
            "users" => plan.note(&e.origin, shown(e), NoteKind::Unsupported, "sqlmux has no per-user pool settings; set them per database ([[databases]] pool = { ... })"),
            "peers" => plan.note(&e.origin, shown(e), NoteKind::Unsupported, "cancel forwarding between processes is not configured by import"),
            _ => plan.note(&e.origin, shown(e), NoteKind::Unsupported, "not a PgBouncer section sqlmux knows"),
        }
    }
}

/// One `[databases]` line.
fn database(plan: &mut Plan, e: &Entry, server_tls: Option<&Toml>) {
    let pairs = match connstr::parse(&e.value) {
        Ok(p) => p,
        Err(why) => {
            let why = format!("cannot parse the connection string ({why}); database not imported");
            return plan.note(&e.origin, shown(e), NoteKind::Unsupported, &why);
        }
    };
    let name = e.key.trim().trim_matches('"');
    let mut out = vec![setting("name", Toml::str(name), "")];
    let mut pool: Vec<(String, Toml)> = Vec::new();
    let mut host = None;
    for (k, v) in &pairs {
        let note = |plan: &mut Plan, kind, why: &str| {
            let s = format!(
                "[databases] {name}: {k}={}",
                if k == "password" { "***" } else { v }
            );
            plan.note(&e.origin, s, kind, why);
        };
        match k.as_str() {
            "host" => host = Some(server_host(plan, e, name, v)),
            "port" => match int(v) {
                Some(p) if p <= u16::MAX as u64 => out.push(setting("port", Toml::raw(p), "")),
                _ => note(plan, NoteKind::Unsupported, "not a port; using 5432"),
            },
            "dbname" => out.push(setting("dbname", Toml::str(v), "")),
            "user" => out.push(setting("user", Toml::str(v), "")),
            "password" => out.push(setting("password", Toml::str(v), "")),
            "pool_size" => pool.push(("size".into(), Toml::raw(int(v).unwrap_or(20).max(1)))),
            "min_pool_size" => pool.push(("min_idle".into(), Toml::raw(int(v).unwrap_or(0)))),
            "max_db_client_connections" => pool.push((
                "max_client_connections".into(),
                Toml::raw(int(v).unwrap_or(1).max(1)),
            )),
            "pool_mode" => match v.as_str() {
                "session" | "transaction" => pool.push(("mode".into(), Toml::str(v))),
                _ => {
                    note(
                        plan,
                        NoteKind::Approximated,
                        "sqlmux has no statement mode; transaction mode is the closest",
                    );
                    pool.push(("mode".into(), Toml::str("transaction")));
                }
            },
            "server_lifetime" | "query_wait_timeout" => match seconds(v).filter(|d| !d.is_zero()) {
                Some(d) if k == "server_lifetime" => {
                    pool.push(("max_lifetime".into(), duration(d)))
                }
                Some(d) => pool.push(("checkout_timeout".into(), duration(d))),
                None => note(
                    plan,
                    NoteKind::Unsupported,
                    "not a positive number of seconds",
                ),
            },
            _ => note(plan, NoteKind::Unsupported, db_reason(k)),
        }
    }
    out.insert(
        1,
        setting(
            "host",
            Toml::str(&host.unwrap_or_else(|| "127.0.0.1".into())),
            "",
        ),
    );
    finish(plan, e, name, out, pool, server_tls);
}

fn finish(
    plan: &mut Plan,
    e: &Entry,
    name: &str,
    mut out: Vec<Setting>,
    pool: Vec<(String, Toml)>,
    server_tls: Option<&Toml>,
) {
    if out.iter().any(|s| s.key == "password") && !out.iter().any(|s| s.key == "user") {
        let s = format!("[databases] {name}: password=***");
        plan.note(
            &e.origin,
            s,
            NoteKind::Unsupported,
            "a server password needs user= too; password not imported",
        );
        out.retain(|s| s.key != "password");
    }
    if !pool.is_empty() {
        out.push(setting("pool", Toml::inline(&pool), ""));
    }
    if let Some(tls) = server_tls {
        out.push(setting("server_tls", tls.clone(), "server_tls_sslmode"));
    }
    out[0].comment = e.origin.to_string();
    let same = |d: &Vec<Setting>| d.first().map(|s| &s.value) == out.first().map(|s| &s.value);
    if plan.databases.iter().any(same) {
        let s = format!("[databases] {name}");
        plan.note(
            &e.origin,
            s,
            NoteKind::Approximated,
            "defined again: this later line replaces the earlier one, as in PgBouncer",
        );
        plan.databases.retain(|d| !same(d));
    }
    plan.databases.push(out);
}

/// The server host: the first of a list; a Unix socket directory becomes
/// 127.0.0.1 (sqlmux connects to servers over TCP).
fn server_host(plan: &mut Plan, e: &Entry, name: &str, v: &str) -> String {
    let hosts: Vec<&str> = v
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    let first = hosts.first().copied().unwrap_or("127.0.0.1");
    let s = format!("[databases] {name}: host={v}");
    if hosts.len() > 1 {
        plan.note(
            &e.origin,
            s.clone(),
            NoteKind::Approximated,
            "sqlmux connects to one host per database; using the first",
        );
    }
    if first.starts_with('/') || first.starts_with('@') {
        plan.note(
            &e.origin,
            s,
            NoteKind::Approximated,
            "Unix-socket server connections become TCP to 127.0.0.1",
        );
        return "127.0.0.1".into();
    }
    first.to_owned()
}

fn db_reason(key: &str) -> &'static str {
    match key {
        "auth_user" | "auth_query" | "auth_dbname" => {
            "auth_query per database is not supported; set postgres.auth_user for all"
        }
        "client_encoding" | "datestyle" | "timezone" | "application_name" => {
            "clients' own settings are passed to the server as they are"
        }
        "connect_query" => "sqlmux runs no query on new server connections",
        "reserve_pool" | "reserve_pool_size" => "no reserve pool: size the pool instead",
        "max_db_connections" => "no cap across the pools of a database; each pool has pool.size",
        "load_balance_hosts" => "sqlmux connects to one host per database",
        _ => "sqlmux has no such database setting",
    }
}

/// `[[users]]` from the auth_file lines.
pub fn users(plan: &mut Plan, lines: &[UserLine]) {
    for (i, u) in lines.iter().enumerate() {
        if lines[i + 1..].iter().any(|later| later.name == u.name) {
            let s = format!("\"{}\" \"***\"", u.name);
            plan.note(
                &u.origin,
                s,
                NoteKind::Approximated,
                "listed again later; the later line wins",
            );
            continue;
        }
        plan.users.push(vec![
            setting(
                "name",
                Toml::str(&u.name),
                &format!("auth_file {}", u.origin),
            ),
            setting("password", Toml::str(&u.secret), ""),
        ]);
    }
}
