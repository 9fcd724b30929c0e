//! The `[pgbouncer]` section: every setting is mapped to a sqlmux key,
//! or noted as not supported with its file and line.
//!
//! Settings PgBouncer defaults differently from sqlmux (pool mode, pool
//! size, client limit, wait and connect timeouts) are written out with
//! PgBouncer's default when the file does not set them, so the imported
//! configuration behaves like the PgBouncer it replaces.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::ini::{Entry, Origin};
use super::plan::{NoteKind, Plan, Toml};
use super::values::{duration, int, list, path, seconds};

/// What the `[pgbouncer]` section decides for other parts of the import.
#[derive(Debug, Default)]
pub struct Derived {
    /// `auth_file`, resolved, with where it was set.
    pub auth_file: Option<(PathBuf, Origin)>,
    /// `server_tls = { ... }` for every database.
    pub server_tls: Option<Toml>,
}

/// The section's settings by lowercase key (the last one wins, as in
/// PgBouncer); each mapping function takes the keys it handles.
struct Section(BTreeMap<String, Entry>);

impl Section {
    fn take(&mut self, key: &str) -> Option<Entry> {
        self.0.remove(key)
    }
}

fn shown(e: &Entry) -> String {
    format!("[pgbouncer] {} = {}", e.key, e.value)
}

fn unsupported(plan: &mut Plan, e: &Entry, why: &str) {
    plan.note(&e.origin, shown(e), NoteKind::Unsupported, why);
}

fn approximated(plan: &mut Plan, e: &Entry, why: &str) {
    plan.note(&e.origin, shown(e), NoteKind::Approximated, why);
}

fn bad_value(plan: &mut Plan, e: &Entry, expected: &str) {
    unsupported(
        plan,
        e,
        &format!("not {expected}; left at sqlmux's default"),
    );
}

/// Maps the `[pgbouncer]` entries onto `plan`.
pub fn apply(entries: &[Entry], plan: &mut Plan, base: &Path) -> Derived {
    let mut s = Section(
        entries
            .iter()
            .filter(|e| e.section == "pgbouncer")
            .map(|e| (e.key_lower(), e.clone()))
            .collect(),
    );
    listen(plan, &mut s);
    pool(plan, &mut s);
    general(plan, &mut s);
    admin(plan, &mut s);
    let auth_file = auth(plan, &mut s, base);
    client_tls(plan, &mut s, base);
    let server_tls = server_tls(plan, &mut s, base);
    leaks(plan, &mut s);
    for (_, e) in std::mem::take(&mut s.0) {
        unsupported(plan, &e, reason(&e.key_lower()));
    }
    Derived {
        auth_file,
        server_tls,
    }
}

fn listen(plan: &mut Plan, s: &mut Section) {
    let port = s.take("listen_port");
    let port_num = port.as_ref().and_then(|e| int(&e.value)).unwrap_or(6432);
    let addr = match s.take("listen_addr") {
        Some(e) => {
            let addrs = list(&e.value);
            if addrs.len() > 1 {
                approximated(plan, &e, "sqlmux listens on one address; using the first");
            }
            match addrs.first().map(String::as_str) {
                Some("*") => "0.0.0.0".to_owned(),
                Some(a) => a.to_owned(),
                None => "127.0.0.1".to_owned(),
            }
        }
        None => "127.0.0.1".to_owned(),
    };
    let listen = if addr.contains(':') {
        format!("[{addr}]:{port_num}")
    } else {
        format!("{addr}:{port_num}")
    };
    plan.set(
        "postgres",
        "listen",
        Toml::str(&listen),
        "listen_addr, listen_port",
    );
}

/// Sets `pool.key` from a PgBouncer setting, or PgBouncer's default.
fn pool_value(
    plan: &mut Plan,
    s: &mut Section,
    pgb: &str,
    key: &str,
    default: Option<Toml>,
    parse: fn(&str) -> Option<Toml>,
) {
    match s.take(pgb) {
        Some(e) => match parse(&e.value) {
            Some(v) => plan.set("pool", key, v, pgb),
            None => bad_value(plan, &e, "a valid value"),
        },
        None => {
            if let Some(d) = default {
                plan.set("pool", key, d, &format!("{pgb} (PgBouncer's default)"));
            }
        }
    }
}

fn pool(plan: &mut Plan, s: &mut Section) {
    if let Some(e) = s.take("pool_mode") {
        match e.value.trim() {
            m @ ("session" | "transaction") => plan.set("pool", "mode", Toml::str(m), "pool_mode"),
            "statement" => {
                approximated(
                    plan,
                    &e,
                    "sqlmux has no statement mode; transaction mode is the closest",
                );
                plan.set(
                    "pool",
                    "mode",
                    Toml::str("transaction"),
                    "pool_mode = statement",
                );
            }
            _ => bad_value(plan, &e, "session, transaction or statement"),
        }
    } else {
        plan.set(
            "pool",
            "mode",
            Toml::str("session"),
            "pool_mode (PgBouncer's default)",
        );
    }
    if let Some(e) = s.take("default_pool_size") {
        match int(&e.value) {
            Some(0) => unsupported(
                plan,
                &e,
                "0 (unlimited) has no equivalent: sqlmux pools are bounded; left at sqlmux's default",
            ),
            Some(n) => plan.set("pool", "size", Toml::raw(n), "default_pool_size"),
            None => bad_value(plan, &e, "a number"),
        }
    } else {
        plan.set(
            "pool",
            "size",
            Toml::raw(20),
            "default_pool_size (PgBouncer's default)",
        );
    }
    let num = |v: &str| int(v).map(Toml::raw);
    let positive = |v: &str| int(v).filter(|n| *n > 0).map(Toml::raw);
    let dur = |v: &str| seconds(v).map(duration);
    pool_value(plan, s, "min_pool_size", "min_idle", None, num);
    pool_value(
        plan,
        s,
        "max_client_conn",
        "max_client_connections",
        Some(Toml::raw(100)),
        positive,
    );
    pool_value(plan, s, "server_idle_timeout", "idle_timeout", None, dur);
    pool_value(plan, s, "server_lifetime", "max_lifetime", None, dur);
    pool_value(
        plan,
        s,
        "max_prepared_statements",
        "max_prepared_statements",
        Some(Toml::raw(200)),
        num,
    );
    match s.take("query_wait_timeout") {
        Some(e) if seconds(&e.value).is_some_and(|d| d.is_zero()) => {
            approximated(
                plan,
                &e,
                "0 (wait forever) becomes one hour: sqlmux's checkout timeout is always finite",
            );
            plan.set(
                "pool",
                "checkout_timeout",
                Toml::str("1h"),
                "query_wait_timeout = 0",
            );
        }
        Some(e) => match seconds(&e.value) {
            Some(d) => plan.set(
                "pool",
                "checkout_timeout",
                duration(d),
                "query_wait_timeout",
            ),
            None => bad_value(plan, &e, "a number of seconds"),
        },
        None => plan.set(
            "pool",
            "checkout_timeout",
            Toml::str("120s"),
            "query_wait_timeout (PgBouncer's default)",
        ),
    }
}

fn general(plan: &mut Plan, s: &mut Section) {
    match s.take("server_connect_timeout") {
        Some(e) => match seconds(&e.value) {
            Some(d) => plan.set(
                "general",
                "server_connect_timeout",
                duration(d),
                "server_connect_timeout",
            ),
            None => bad_value(plan, &e, "a number of seconds"),
        },
        None => plan.set(
            "general",
            "server_connect_timeout",
            Toml::str("15s"),
            "server_connect_timeout (PgBouncer's default)",
        ),
    }
    if let Some(e) = s.take("stats_period") {
        match seconds(&e.value).filter(|d| !d.is_zero()) {
            Some(d) => plan.set("general", "stats_period", duration(d), "stats_period"),
            None => bad_value(plan, &e, "a positive number of seconds"),
        }
    }
    if let Some(e) = s.take("max_packet_size") {
        match int(&e.value) {
            Some(n) if (1024..=1 << 30).contains(&n) => plan.set(
                "general",
                "max_message_size",
                Toml::raw(n),
                "max_packet_size",
            ),
            Some(n) if n > 1 << 30 => {
                approximated(plan, &e, "sqlmux accepts messages up to 1 GiB");
                plan.set(
                    "general",
                    "max_message_size",
                    Toml::raw(1u64 << 30),
                    "max_packet_size (capped at 1 GiB)",
                );
            }
            _ => bad_value(plan, &e, "a size between 1024 and 1073741824"),
        }
    }
    if let Some(e) = s.take("client_login_timeout") {
        match seconds(&e.value).filter(|d| !d.is_zero()) {
            Some(d) => plan.set(
                "general",
                "client_login_timeout",
                duration(d),
                "client_login_timeout",
            ),
            None => bad_value(plan, &e, "a positive number of seconds"),
        }
    }
}

fn admin(plan: &mut Plan, s: &mut Section) {
    plan.set(
        "admin",
        "listen",
        Toml::str("127.0.0.1:6434"),
        "the admin console has its own port in sqlmux",
    );
    let admins = s
        .take("admin_users")
        .map(|e| list(&e.value))
        .unwrap_or_default();
    plan.set("admin", "users", Toml::list(&admins), "admin_users");
    if let Some(e) = s.take("stats_users") {
        plan.set(
            "admin",
            "stats_users",
            Toml::list(&list(&e.value)),
            "stats_users",
        );
    }
}

fn auth(plan: &mut Plan, s: &mut Section, base: &Path) -> Option<(PathBuf, Origin)> {
    let method = match s.take("auth_type") {
        None => "md5",
        Some(e) => match e.value.trim() {
            "md5" => "md5",
            "scram-sha-256" => "scram-sha-256",
            "trust" => "trust",
            "plain" => {
                approximated(
                    plan,
                    &e,
                    "clients log in with SCRAM (or md5) instead of a cleartext password",
                );
                "scram-sha-256"
            }
            "any" => {
                approximated(
                    plan,
                    &e,
                    "trust: sqlmux still requires the user to be known",
                );
                "trust"
            }
            _ => {
                unsupported(
                    plan,
                    &e,
                    "sqlmux authenticates clients with scram-sha-256, md5 or trust; using scram-sha-256",
                );
                "scram-sha-256"
            }
        },
    };
    plan.set("postgres", "auth", Toml::str(method), "auth_type");
    for (pgb, key) in [
        ("auth_user", "auth_user"),
        ("auth_query", "auth_query"),
        ("auth_dbname", "auth_dbname"),
    ] {
        if let Some(e) = s.take(pgb) {
            plan.set(
                "postgres",
                key,
                Toml::str(e.value.trim().trim_matches('\'')),
                pgb,
            );
        }
    }
    s.take("auth_file")
        .map(|e| (PathBuf::from(path(&e.value, base)), e.origin))
}

fn client_tls(plan: &mut Plan, s: &mut Section, base: &Path) {
    let mode = s.take("client_tls_sslmode");
    let cert = s.take("client_tls_cert_file");
    let key = s.take("client_tls_key_file");
    let Some(m) = mode else {
        for e in [cert, key].into_iter().flatten() {
            unsupported(
                plan,
                &e,
                "client_tls_sslmode is not set (PgBouncer's default: disable)",
            );
        }
        return;
    };
    let sqlmux_mode = match m.value.trim() {
        "disable" => return,
        v @ ("allow" | "prefer" | "require") => v,
        "verify-ca" | "verify-full" => {
            approximated(
                plan,
                &m,
                "require: sqlmux does not verify client certificates",
            );
            "require"
        }
        _ => return bad_value(plan, &m, "a TLS mode"),
    };
    let (Some(cert), Some(key)) = (cert, key) else {
        return unsupported(
            plan,
            &m,
            "TLS needs client_tls_cert_file and client_tls_key_file",
        );
    };
    let tls = Toml::inline(&[
        ("cert".into(), Toml::str(&path(&cert.value, base))),
        ("key".into(), Toml::str(&path(&key.value, base))),
        ("mode".into(), Toml::str(sqlmux_mode)),
    ]);
    plan.set(
        "postgres",
        "tls",
        tls,
        "client_tls_sslmode, client_tls_cert_file, client_tls_key_file",
    );
}

fn server_tls(plan: &mut Plan, s: &mut Section, base: &Path) -> Option<Toml> {
    let ca = s.take("server_tls_ca_file");
    let m = s.take("server_tls_sslmode");
    let mode = match m.as_ref().map(|e| e.value.trim()) {
        None => "prefer",
        Some("allow") => {
            approximated(plan, m.as_ref()?, "prefer: sqlmux tries TLS first");
            "prefer"
        }
        Some(v @ ("disable" | "prefer" | "require" | "verify-ca" | "verify-full")) => v,
        Some(_) => {
            bad_value(plan, m.as_ref()?, "a TLS mode");
            "prefer"
        }
    };
    let mut pairs = vec![("mode".to_owned(), Toml::str(mode))];
    if let Some(ca) = ca {
        pairs.push(("ca".into(), Toml::str(&path(&ca.value, base))));
    }
    (m.is_some() || pairs.len() > 1).then(|| Toml::inline(&pairs))
}

fn leaks(plan: &mut Plan, s: &mut Section) {
    let Some(e) = s.take("idle_transaction_timeout") else {
        return;
    };
    match seconds(&e.value) {
        Some(d) if d.is_zero() => {}
        Some(d) => {
            approximated(
                plan,
                &e,
                "the leaked transaction is rolled back and the server returned to the pool, instead of closing the server",
            );
            let v = Toml::inline(&[
                ("idle".into(), duration(d)),
                ("action".into(), Toml::str("rollback")),
            ]);
            plan.set(
                "insight",
                "leaked_transaction",
                v,
                "idle_transaction_timeout",
            );
        }
        None => bad_value(plan, &e, "a number of seconds"),
    }
}

/// Why a `[pgbouncer]` setting has no sqlmux equivalent.
fn reason(key: &str) -> &'static str {
    match key {
        "logfile" | "syslog" | "syslog_ident" | "syslog_facility" | "verbose" => {
            "sqlmux logs to stderr; SQLMUX_LOG sets the level"
        }
        k if k.starts_with("log_") => "sqlmux logs to stderr; SQLMUX_LOG sets the level",
        "pidfile" | "user" => {
            "sqlmux does not daemonize; run it as the user you want (systemd, a container)"
        }
        "unix_socket_dir" | "unix_socket_mode" | "unix_socket_group" => {
            "sqlmux listens on TCP only (postgres.listen)"
        }
        "so_reuseport" | "peer_id" => {
            "one sqlmux process uses every core; no port sharing between processes"
        }
        "pkt_buf" | "sbuf_loopcnt" | "listen_backlog" | "max_packet_size" => {
            "sqlmux sizes its buffers itself"
        }
        "server_reset_query" | "server_reset_query_always" => {
            "sqlmux keeps session state per client and resets servers with DISCARD ALL when a client leaves state behind"
        }
        "server_check_query" | "server_check_delay" => {
            "sqlmux closes servers whose state is unknown instead of probing them"
        }
        "reserve_pool_size" | "reserve_pool_timeout" => {
            "no reserve pool: size the pool (pool.size) instead"
        }
        "max_db_connections"
        | "max_user_connections"
        | "max_db_client_connections"
        | "max_user_client_connections" => {
            "no caps across pools; each (database, user) pool has pool.size"
        }
        "track_extra_parameters" | "ignore_startup_parameters" => {
            "sqlmux follows every parameter a client sets and accepts any startup parameter"
        }
        "auth_hba_file" | "auth_ident_file" => {
            "sqlmux authenticates clients with scram-sha-256, md5 or trust only"
        }
        "client_tls_ca_file" => "sqlmux does not verify client certificates",
        "server_tls_cert_file" | "server_tls_key_file" => {
            "sqlmux does not present client certificates to servers"
        }
        k if k.contains("tls") => {
            "sqlmux uses rustls's defaults for protocols and ciphers (TLS 1.2 and 1.3)"
        }
        k if k.starts_with("dns_") || k == "resolv_conf" => {
            "sqlmux resolves server names when it connects"
        }
        k if k.starts_with("tcp_") => "the operating system's TCP settings apply",
        _ => "sqlmux has no such setting",
    }
}
