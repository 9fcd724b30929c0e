//! Where MySQL plugs into the demo.
//!
//! The demo always runs PostgreSQL. The MySQL side (a throwaway MariaDB, a
//! `shop` database entry with `protocol = "mysql"` behind a `[mysql]`
//! listener, and a small workload through the `mariadb` client) starts when
//! MariaDB is installed ([`available`]); otherwise the demo says so in one
//! line and runs PostgreSQL only.

use std::path::Path;
use std::time::Duration;

use super::DemoError;
use super::config::MysqlPorts;
use super::mariadb::MariaDbServer;
use super::os::{command, find_program, free_port, port_or_free};
use super::workload::Target;

/// Whether MariaDB's server and installer are installed.
pub fn available() -> bool {
    let sbin = [std::path::PathBuf::from("/usr/sbin")];
    find_program(&["mariadbd"], &sbin).is_some()
        && find_program(&["mariadb-install-db"], &[]).is_some()
}

/// The running MySQL side.
#[derive(Debug)]
pub struct MysqlSide {
    server: MariaDbServer,
    /// sqlmux's MySQL listener and the server's port.
    pub ports: MysqlPorts,
}

/// Starts MariaDB with the demo's `shop` data (blocking).
pub fn start(dir: &Path) -> Result<MysqlSide, DemoError> {
    let server = MariaDbServer::start(&dir.join("mariadb"), free_port()?)?;
    server.sql(
        "CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(100) NOT NULL, stock INT NOT NULL);
         INSERT INTO shop.items SELECT seq, CONCAT('Item ', seq), seq % 17 FROM shop.seq_1_to_200;",
    )?;
    let ports = MysqlPorts {
        listen: port_or_free(6033)?,
        server: server.port,
    };
    Ok(MysqlSide { server, ports })
}

impl MysqlSide {
    /// The URL applications would use.
    pub fn url(&self) -> String {
        format!("mysql://app@127.0.0.1:{}/shop", self.ports.listen)
    }

    /// The `mariadb` client command line for it.
    pub fn cli(&self) -> String {
        format!("mariadb -h 127.0.0.1 -P {} -u app shop", self.ports.listen)
    }

    /// Starts the MySQL workload: every 5 s, a list query followed by the
    /// same lookup 20 times, and a few ordinary statements, through sqlmux.
    pub fn spawn_workload(&self, target: &Target) {
        let Some(client) = find_program(&["mariadb", "mysql"], &[]) else {
            return;
        };
        let port = self.ports.listen;
        let t = target.clone();
        tokio::spawn(async move {
            let mut script = String::from("SELECT id, name FROM items ORDER BY id LIMIT 20;");
            for id in 1..=20 {
                script.push_str(&format!("SELECT stock FROM items WHERE id = {id};"));
            }
            script.push_str("UPDATE items SET stock = stock + 1 WHERE id = 7;");
            loop {
                let mut cmd = command(&client, Path::new("/"));
                cmd.args(["--no-defaults", "-h", "127.0.0.1", "-u", "app", "shop"])
                    .arg(format!("-P{port}"))
                    .args(["-e", &script]);
                let _ = tokio::task::spawn_blocking(move || cmd.output()).await;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = t.stop.cancelled() => return,
                }
            }
        });
    }

    /// Stops MariaDB (blocking).
    pub fn stop(mut self) {
        self.server.stop();
    }
}
