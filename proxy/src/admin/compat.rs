//! PgBouncer's setting names in SHOW CONFIG: for every PgBouncer key that
//! has a sqlmux equivalent, a row with PgBouncer's name, the value in
//! PgBouncer's units (seconds as plain numbers, lists comma-separated) and
//! PgBouncer's default. These rows come after sqlmux's own, so tools that
//! read `SHOW CONFIG` from PgBouncer find the keys they know.

use std::time::Duration;

use crate::config::{AuthMethod, ClientTlsMode, Config};

/// One SHOW CONFIG row: key, value, default, changeable.
pub type ConfigRow = (&'static str, String, String, bool);

/// Whole seconds, PgBouncer's way of printing durations.
fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}", s as u64)
    } else {
        format!("{s}")
    }
}

/// The host and port parts of a `host:port` listen address.
fn split_listen(listen: &str) -> (String, String) {
    match listen.rsplit_once(':') {
        Some((h, p)) => (h.trim_matches(['[', ']']).to_owned(), p.to_owned()),
        None => (listen.to_owned(), String::new()),
    }
}

/// The PgBouncer-named rows for `cfg`.
pub fn pgbouncer_rows(cfg: &Config) -> Vec<ConfigRow> {
    let p = &cfg.pool;
    let g = &cfg.general;
    let (addr, port) = split_listen(&cfg.postgres.listen);
    let addr = if addr == "0.0.0.0" {
        "*".to_owned()
    } else {
        addr
    };
    let auth = match cfg.postgres.auth {
        AuthMethod::ScramSha256 => "scram-sha-256",
        AuthMethod::Md5 => "md5",
        AuthMethod::Trust => "trust",
    };
    let tls_mode = match cfg.postgres.tls.as_ref().map(|t| t.mode) {
        None | Some(ClientTlsMode::Disable) => "disable",
        Some(ClientTlsMode::Allow) => "allow",
        Some(ClientTlsMode::Prefer) => "prefer",
        Some(ClientTlsMode::Require) => "require",
    };
    let tls_file = |f: fn(&crate::config::ClientTls) -> &std::path::Path| {
        let path = cfg
            .postgres
            .tls
            .as_ref()
            .map(|t| f(t).display().to_string());
        path.unwrap_or_default()
    };
    let s = |v: &str| v.to_owned();
    vec![
        ("listen_addr", addr, s(""), false),
        ("listen_port", port, s("6432"), false),
        ("pool_mode", p.mode.as_str().into(), s("session"), true),
        (
            "max_client_conn",
            p.max_client_connections.to_string(),
            s("100"),
            true,
        ),
        ("default_pool_size", p.size.to_string(), s("20"), true),
        ("min_pool_size", p.min_idle.to_string(), s("0"), true),
        ("server_idle_timeout", secs(p.idle_timeout), s("600"), true),
        ("server_lifetime", secs(p.max_lifetime), s("3600"), true),
        (
            "query_wait_timeout",
            secs(p.checkout_timeout),
            s("120"),
            true,
        ),
        (
            "client_login_timeout",
            secs(g.client_login_timeout),
            s("60"),
            true,
        ),
        (
            "server_connect_timeout",
            secs(g.server_connect_timeout),
            s("15"),
            true,
        ),
        ("stats_period", secs(g.stats_period), s("60"), true),
        (
            "max_packet_size",
            g.max_message_size.to_string(),
            s("2147483647"),
            true,
        ),
        (
            "max_prepared_statements",
            p.max_prepared_statements.to_string(),
            s("200"),
            true,
        ),
        ("admin_users", cfg.admin.users.join(","), s(""), true),
        ("stats_users", cfg.admin.stats_users.join(","), s(""), true),
        ("auth_type", s(auth), s("md5"), true),
        (
            "auth_user",
            cfg.postgres.auth_user.clone().unwrap_or_default(),
            s(""),
            true,
        ),
        (
            "auth_query",
            cfg.postgres.auth_query.clone(),
            s(crate::config::DEFAULT_AUTH_QUERY),
            true,
        ),
        (
            "auth_dbname",
            cfg.postgres.auth_dbname.clone().unwrap_or_default(),
            s(""),
            true,
        ),
        ("client_tls_sslmode", s(tls_mode), s("disable"), true),
        ("client_tls_cert_file", tls_file(|t| &t.cert), s(""), true),
        ("client_tls_key_file", tls_file(|t| &t.key), s(""), true),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgbouncer_names_carry_sqlmux_values_in_pgbouncer_units() {
        let cfg = Config::parse(
            "[postgres]\nlisten = \"0.0.0.0:7432\"\n[admin]\nusers = [\"a\", \"b\"]\n[pool]\nsize = 7\nidle_timeout = \"90s\"\ncheckout_timeout = \"1500ms\"\n",
        )
        .unwrap();
        let rows = pgbouncer_rows(&cfg);
        let get = |k: &str| rows.iter().find(|r| r.0 == k).unwrap().1.clone();
        assert_eq!(get("listen_addr"), "*");
        assert_eq!(get("listen_port"), "7432");
        assert_eq!(get("default_pool_size"), "7");
        assert_eq!(get("server_idle_timeout"), "90");
        assert_eq!(get("query_wait_timeout"), "1.5");
        assert_eq!(get("admin_users"), "a,b");
        assert_eq!(get("pool_mode"), "transaction");
    }
}
