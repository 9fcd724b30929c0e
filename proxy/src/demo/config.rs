//! The demo's sqlmux configuration, written as TOML in code and validated
//! by the same parser as a configuration file.
//!
//! Everything listens on 127.0.0.1 only and nobody needs a password
//! (`postgres.auth = "trust"`, `admin.http_auth = false`): the demo is for
//! trying sqlmux on one's own machine, and prints its URLs without secrets.

use std::time::Duration;

use crate::config::{Config, ConfigError};

/// How long a transaction may sit idle before it counts as leaked.
pub const LEAK_IDLE: Duration = Duration::from_secs(3);

/// Ports of the PostgreSQL side.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// sqlmux's PostgreSQL listener.
    pub postgres: u16,
    /// sqlmux's admin port (console and web page).
    pub admin: u16,
    /// The throwaway PostgreSQL server.
    pub pg_server: u16,
}

/// Ports of the MySQL side.
#[derive(Debug, Clone, Copy)]
pub struct MysqlPorts {
    /// sqlmux's MySQL listener.
    pub listen: u16,
    /// The throwaway MariaDB server.
    pub server: u16,
}

/// The configuration text.
pub fn toml(p: &Ports, mysql: Option<&MysqlPorts>) -> String {
    let mut t = format!(
        r#"[general]
shutdown_timeout = "2s"
stats_period = "10s"

[admin]
listen = "127.0.0.1:{admin}"
users = ["admin"]
http_auth = false

[postgres]
listen = "127.0.0.1:{postgres}"
auth = "trust"
"#,
        admin = p.admin,
        postgres = p.postgres
    );
    if let Some(m) = mysql {
        t.push_str(&format!(
            "\n[mysql]\nlisten = \"127.0.0.1:{}\"\ntrust = true\n",
            m.listen
        ));
    }
    t.push_str(&format!(
        r#"
[pool]
size = 4

[insight]
n_plus_one = {{ threshold = 10, window = "1s" }}
leaked_transaction = {{ idle = "{}s", action = "warn" }}

[[databases]]
name = "app"
protocol = "postgres"
host = "127.0.0.1"
port = {}
"#,
        LEAK_IDLE.as_secs(),
        p.pg_server
    ));
    if let Some(m) = mysql {
        t.push_str(&format!(
            "\n[[databases]]\nname = \"shop\"\nprotocol = \"mysql\"\nhost = \"127.0.0.1\"\nport = {}\n",
            m.server
        ));
    }
    t.push_str("\n[[users]]\nname = \"app\"\n\n[[users]]\nname = \"admin\"\n");
    t
}

/// The validated configuration.
pub fn build(p: &Ports, mysql: Option<&MysqlPorts>) -> Result<Config, ConfigError> {
    Config::parse(&toml(p, mysql))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORTS: Ports = Ports {
        postgres: 16432,
        admin: 16434,
        pg_server: 15432,
    };

    #[test]
    fn the_postgres_demo_configuration_is_valid() {
        let cfg = build(&PORTS, None).unwrap();
        assert_eq!(cfg.postgres.listen, "127.0.0.1:16432");
        assert!(!cfg.admin.http_auth);
        assert_eq!(cfg.databases[0].port, 15432);
        assert_eq!(cfg.insight.leak_idle, LEAK_IDLE);
    }

    #[test]
    fn the_mysql_entry_is_written_for_when_mysql_is_accepted() {
        let m = MysqlPorts {
            listen: 16033,
            server: 13306,
        };
        let text = toml(&PORTS, Some(&m));
        assert!(
            text.contains("[mysql]\nlisten = \"127.0.0.1:16033\""),
            "{text}"
        );
        assert!(
            text.contains("protocol = \"mysql\"\nhost = \"127.0.0.1\"\nport = 13306"),
            "{text}"
        );
    }
}
