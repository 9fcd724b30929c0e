//! Test harness: real, throwaway PostgreSQL and MariaDB servers for the
//! integration suite (`tests/suite/`).
//!
//! The suite drives sqlmux with real clients against real servers. This
//! crate starts those servers: each one gets its own temporary directory and
//! a free port, runs as a child of the test process and cannot outlive it.
//!
//! # Map
//!
//! - [`tools`]: finds `initdb`, `postgres`, `psql`, `mariadbd`, … and panics
//!   with the package to install when one is missing.
//! - [`port`]: [`free_port`], ports no other test in this process holds.
//! - [`process`]: every child is spawned from one long-lived thread with a
//!   parent-death signal, so a panicking, aborting or killed test process
//!   takes its servers with it; [`run_command`] runs clients with a timeout.
//! - `dir` (private): temporary directories that are removed on drop, at
//!   exit, and — when a test process was killed — by the next test process.
//! - [`pg`]: [`PgCluster`] (initdb + `postgres -D`) and the per-process
//!   [`shared_pg`] with a standard set of roles.
//! - [`mariadb`]: [`MariaDb`] (mariadb-install-db + `mariadbd`) and
//!   [`shared_mariadb`].
//! - [`relay`]: [`Relay`], a fault-injecting TCP relay (pass, delay, drop,
//!   black-hole) to put between sqlmux and a server.
//! - [`soak`]: the soak load (many clients, short transactions, RELOADs,
//!   RSS samples) shared by the suite and `sqlmux-bench soak`.
//!
//! # Which server to use
//!
//! Tests that only need a server to talk to use [`shared_pg`] /
//! [`shared_mariadb`]: started lazily once per test process, shared by all
//! tests, never stopped before the process exits. Tests that stop, restart,
//! reconfigure or crash a server start their own [`PgCluster`] / [`MariaDb`]
//! and drop it at the end.
//!
//! # Environment
//!
//! - `PG_BIN`: directory of the PostgreSQL binaries to use.
//! - `MARIADB_BIN`: directory of the MariaDB binaries to use.
//! - `SQLMUX_TEST_TMPDIR`: where server directories go (default: `/dev/shm`
//!   when it has 2 GiB free, else the system temp directory). As root,
//!   PostgreSQL runs as the OS user `postgres`, which must be able to reach
//!   this directory.
//!
//! # Concurrency
//!
//! Everything here may be called from many test threads at once, and from
//! several test processes at once: ports come from the kernel and are never
//! handed out twice in one process, directories are unique per process.
//! Calls that run a client (`psql`, `mariadb`) block the calling thread; from
//! async tests call them through `tokio::task::spawn_blocking` or accept the
//! short block.

#![warn(missing_docs)]

mod dir;
pub mod mariadb;
pub mod pg;
pub mod port;
pub mod process;
pub mod relay;
pub mod soak;
pub mod tools;

pub use mariadb::{MariaDb, MariaDbOptions, mariadb_command, mariadb_tcp, shared_mariadb};
pub use pg::{PgCluster, PgOptions, psql_command, psql_tcp, shared_pg};
pub use port::free_port;
pub use process::run_command;
pub use relay::{Mode, Relay};
pub use tools::{mariadb_tool, pg_tool, require_mariadb_tools, require_pg_tools, which};

/// A TLS certificate chain and private key, both PEM, for a test server.
///
/// Tests usually generate them with `rcgen` for `localhost`/`127.0.0.1`.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// Certificate chain, PEM, leaf first.
    pub cert_pem: String,
    /// Private key matching the leaf certificate, PEM (PKCS#8 or PKCS#1).
    pub key_pem: String,
}

/// The host every test server listens on. Servers never listen on other
/// addresses, so tests never collide with servers on the machine's network.
pub const HOST: &str = "127.0.0.1";

/// Percent-encodes a URL user-info or path component (RFC 3986 unreserved
/// characters pass through).
pub(crate) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The last `max_lines` lines of a log file, for panic messages.
pub(crate) fn log_tail(path: &std::path::Path, max_lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(max_lines);
            lines[from..].join("\n")
        }
        Err(e) => format!("(could not read {}: {e})", path.display()),
    }
}
