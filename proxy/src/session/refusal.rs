//! Why sqlmux itself refuses or ends a client request, independent of the
//! wire protocol. Each front end renders a [`Refusal`] in its own form (a
//! PostgreSQL ErrorResponse with [`Refusal::sqlstate`], a MySQL ERR packet
//! with [`Refusal::mysql_code`]); the message names the cause and the fix.

use std::time::Duration;

use crate::pool::{CheckoutError, ConnectError};

/// SQLSTATEs sqlmux sends itself (the same codes PostgreSQL uses for the
/// same causes; MySQL clients get them in the ERR packet's SQLSTATE).
pub mod sqlstate {
    /// too_many_connections.
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    /// invalid_catalog_name (unknown database).
    pub const UNKNOWN_DATABASE: &str = "3D000";
    /// invalid_authorization_specification.
    pub const INVALID_AUTHORIZATION: &str = "28000";
    /// invalid_password.
    pub const INVALID_PASSWORD: &str = "28P01";
    /// admin_shutdown.
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    /// connection_failure.
    pub const CONNECTION_FAILURE: &str = "08006";
    /// protocol_violation.
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    /// feature_not_supported.
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    /// idle_in_transaction_session_timeout (a leaked transaction rolled back).
    pub const IDLE_IN_TRANSACTION_TIMEOUT: &str = "25P03";
    /// object_not_in_prerequisite_state.
    pub const NOT_IN_PREREQUISITE_STATE: &str = "55000";
}

/// A request sqlmux refuses or a session it ends, with everything a client
/// needs to understand why.
#[derive(Debug, Clone)]
pub enum Refusal {
    /// `pool.max_client_connections` reached.
    TooManyClients {
        /// The limit.
        max: usize,
    },
    /// The database's own client limit reached.
    DatabaseFull {
        /// Database name.
        database: String,
        /// Its limit.
        max: usize,
    },
    /// No `[[databases]]` entry of this protocol has this name.
    UnknownDatabase {
        /// Name the client asked for.
        database: String,
        /// Names it could have used.
        known: Vec<String>,
    },
    /// No `[[users]]` entry (and no lookup on the server).
    UnknownUser {
        /// User name.
        user: String,
    },
    /// Wrong password or proof.
    BadPassword {
        /// User name.
        user: String,
    },
    /// No server within `checkout_timeout`, or the server cannot be reached.
    Checkout(CheckoutError),
    /// sqlmux is shutting down.
    ShuttingDown,
    /// The shutdown grace period ended.
    ShutdownTimeout,
    /// KILL on the admin console.
    AdminKill,
    /// The transaction was left idle and rolled back (leak action).
    LeakRolledBack {
        /// How long it sat idle.
        idle: Duration,
        /// The configured threshold.
        threshold: Duration,
    },
    /// Session state that cannot follow the client in transaction mode,
    /// under `pool.on_session_state = "error"`.
    SessionState {
        /// What the statement would create (e.g. "advisory lock").
        what: String,
    },
    /// Login took longer than `general.client_login_timeout`.
    LoginTimeout {
        /// The limit.
        limit: Duration,
    },
    /// caching_sha2_password full authentication without TLS (sqlmux does
    /// not do the RSA key exchange).
    Sha2NeedsTls {
        /// User name.
        user: String,
    },
    /// Bytes that do not follow the protocol.
    ProtocolViolation {
        /// What was wrong.
        what: String,
    },
    /// A command sqlmux does not support.
    NotSupported {
        /// The command or feature.
        what: &'static str,
        /// What to do instead.
        hint: &'static str,
    },
    /// KILL with a connection id no client has.
    UnknownThread {
        /// The id.
        id: u32,
    },
    /// KILL of another user's connection.
    KillDenied {
        /// The id.
        id: u32,
    },
    /// Replaying the client's session state on a new server failed.
    StateReplay {
        /// The server's error.
        message: String,
    },
    /// The server connection failed mid-response.
    ServerLost {
        /// What happened.
        message: String,
    },
    /// TLS is required and the client did not use it.
    TlsRequired {
        /// The setting that requires it (e.g. `postgres.tls.mode`).
        setting: &'static str,
    },
}

impl Refusal {
    /// The SQLSTATE for this cause.
    pub fn sqlstate(&self) -> &'static str {
        use sqlstate::*;
        match self {
            Refusal::TooManyClients { .. } | Refusal::DatabaseFull { .. } => TOO_MANY_CONNECTIONS,
            Refusal::UnknownDatabase { .. } => UNKNOWN_DATABASE,
            Refusal::UnknownUser { .. } | Refusal::TlsRequired { .. } => INVALID_AUTHORIZATION,
            Refusal::BadPassword { .. } => INVALID_PASSWORD,
            Refusal::Checkout(CheckoutError::Timeout { .. }) => TOO_MANY_CONNECTIONS,
            Refusal::Checkout(CheckoutError::Connect(c)) => c.sqlstate,
            Refusal::Checkout(CheckoutError::Closed(_))
            | Refusal::ShuttingDown
            | Refusal::ShutdownTimeout
            | Refusal::AdminKill => ADMIN_SHUTDOWN,
            Refusal::LeakRolledBack { .. } => IDLE_IN_TRANSACTION_TIMEOUT,
            Refusal::SessionState { .. } => FEATURE_NOT_SUPPORTED,
            Refusal::LoginTimeout { .. } | Refusal::ProtocolViolation { .. } => PROTOCOL_VIOLATION,
            Refusal::Sha2NeedsTls { .. } => INVALID_AUTHORIZATION,
            Refusal::NotSupported { .. } => FEATURE_NOT_SUPPORTED,
            Refusal::UnknownThread { .. } | Refusal::KillDenied { .. } => NOT_IN_PREREQUISITE_STATE,
            Refusal::StateReplay { .. } | Refusal::ServerLost { .. } => CONNECTION_FAILURE,
        }
    }

    /// The MySQL error code for this cause (server error numbers a MySQL
    /// client knows how to react to).
    pub fn mysql_code(&self) -> u16 {
        match self {
            Refusal::TooManyClients { .. } | Refusal::DatabaseFull { .. } => 1040,
            Refusal::UnknownDatabase { .. } => 1049,
            Refusal::UnknownUser { .. } | Refusal::BadPassword { .. } => 1045,
            Refusal::TlsRequired { .. } => 3159,
            Refusal::Checkout(CheckoutError::Timeout { .. }) => 1040,
            Refusal::Checkout(CheckoutError::Connect(c)) => connect_code(c),
            Refusal::Checkout(CheckoutError::Closed(_))
            | Refusal::ShuttingDown
            | Refusal::ShutdownTimeout => 1053,
            Refusal::AdminKill => 1927,
            Refusal::LeakRolledBack { .. } => 1180,
            Refusal::SessionState { .. } => 1235,
            Refusal::LoginTimeout { .. } => 1158,
            Refusal::Sha2NeedsTls { .. } => 1045,
            Refusal::ProtocolViolation { .. } => 1156,
            Refusal::NotSupported { .. } => 1235,
            Refusal::UnknownThread { .. } => 1094,
            Refusal::KillDenied { .. } => 1095,
            Refusal::StateReplay { .. } | Refusal::ServerLost { .. } => 2013,
        }
    }

    /// The message: what happened and which setting or action changes it.
    pub fn message(&self) -> String {
        match self {
            Refusal::TooManyClients { max } => format!(
                "too many clients: sqlmux accepts at most {max} client connections (pool.max_client_connections)"
            ),
            Refusal::DatabaseFull { database, max } => format!(
                "too many clients for database \"{database}\": at most {max} (databases.pool.max_client_connections)"
            ),
            Refusal::UnknownDatabase { database, .. } => {
                format!("database \"{database}\" does not exist in sqlmux")
            }
            Refusal::UnknownUser { user } => format!("no such user \"{user}\" in sqlmux"),
            Refusal::BadPassword { user } => {
                format!("password authentication failed for user \"{user}\"")
            }
            Refusal::Checkout(CheckoutError::Closed(db)) => format!(
                "pool \"{db}\" is closed: sqlmux is shutting down or the database was removed from the configuration"
            ),
            Refusal::Checkout(e) => e.to_string(),
            Refusal::ShuttingDown => "terminating connection: sqlmux is shutting down".into(),
            Refusal::ShutdownTimeout => {
                "terminating connection: sqlmux shutdown timeout reached".into()
            }
            Refusal::AdminKill => {
                "terminating connection due to administrator command (KILL)".into()
            }
            Refusal::LeakRolledBack { idle, threshold } => format!(
                "your transaction was rolled back by sqlmux after {:.1} s idle inside it (insight.leaked_transaction.idle = {})",
                idle.as_secs_f64(),
                humantime::format_duration(*threshold)
            ),
            Refusal::SessionState { what } => format!(
                "{what} is not supported in transaction pooling mode (pool.on_session_state = \"error\"): the server would be shared with other clients"
            ),
            Refusal::LoginTimeout { limit } => format!(
                "login timed out after {} (general.client_login_timeout)",
                humantime::format_duration(*limit)
            ),
            Refusal::Sha2NeedsTls { user } => format!(
                "caching_sha2_password full authentication for user \"{user}\" needs TLS: sqlmux does not send its RSA public key"
            ),
            Refusal::ProtocolViolation { what } => format!("protocol violation: {what}"),
            Refusal::NotSupported { what, .. } => {
                format!("{what} is not supported by sqlmux yet")
            }
            Refusal::UnknownThread { id } => format!("unknown thread id: {id}"),
            Refusal::KillDenied { id } => {
                format!("you are not owner of thread {id} (it belongs to another user)")
            }
            Refusal::StateReplay { message } => format!(
                "could not restore this session's settings on a new server connection: {message}"
            ),
            Refusal::ServerLost { message } => {
                format!("lost connection to the server during the query: {message}")
            }
            Refusal::TlsRequired { setting } => {
                format!("sqlmux requires TLS for this connection ({setting} = \"require\")")
            }
        }
    }

    /// A hint on what to do, where one helps.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Refusal::TooManyClients { .. } => {
                "close idle connections or raise pool.max_client_connections".into()
            }
            Refusal::DatabaseFull { .. } => {
                "close idle connections or raise the database's max_client_connections".into()
            }
            Refusal::UnknownDatabase { database, known } => format!(
                "sqlmux serves: {}; add a [[databases]] entry named \"{database}\" or fix the connection string",
                if known.is_empty() {
                    "(none)".into()
                } else {
                    known.join(", ")
                }
            ),
            Refusal::UnknownUser { .. } => {
                "add a [[users]] entry for this user (PostgreSQL logins can also be looked up on the server with postgres.auth_user)".into()
            }
            Refusal::ShuttingDown | Refusal::ShutdownTimeout => {
                "reconnect to another sqlmux instance".into()
            }
            Refusal::LeakRolledBack { .. } => {
                "commit or roll back transactions promptly; start a new transaction".into()
            }
            Refusal::TlsRequired { .. } => "connect with TLS (sslmode=require or --ssl)".into(),
            Refusal::Sha2NeedsTls { .. } => {
                "connect with TLS (mysql.tls), configure the plain password in [[users]] so the fast path works, or use mysql_native_password".into()
            }
            Refusal::NotSupported { hint, .. } => (*hint).into(),
            _ => return None,
        })
    }
}

/// A MySQL code for a failed server connection: access denied and unknown
/// database keep their meaning, everything else is "can't connect".
fn connect_code(c: &ConnectError) -> u16 {
    match c.sqlstate {
        sqlstate::INVALID_PASSWORD | sqlstate::INVALID_AUTHORIZATION => 1045,
        sqlstate::UNKNOWN_DATABASE => 1049,
        sqlstate::TOO_MANY_CONNECTIONS => 1040,
        _ => 2003,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cause_has_a_code_a_message_and_a_sqlstate_of_five_characters() {
        let all = [
            Refusal::TooManyClients { max: 3 },
            Refusal::UnknownDatabase {
                database: "x".into(),
                known: vec!["app".into()],
            },
            Refusal::UnknownUser { user: "u".into() },
            Refusal::BadPassword { user: "u".into() },
            Refusal::ShuttingDown,
            Refusal::AdminKill,
            Refusal::LeakRolledBack {
                idle: Duration::from_secs(6),
                threshold: Duration::from_secs(5),
            },
            Refusal::SessionState {
                what: "advisory lock".into(),
            },
        ];
        for r in all {
            assert_eq!(r.sqlstate().len(), 5, "{r:?}");
            assert!(r.mysql_code() >= 1000, "{r:?}");
            assert!(!r.message().is_empty());
        }
        let r = Refusal::UnknownDatabase {
            database: "x".into(),
            known: vec!["app".into(), "b".into()],
        };
        assert!(r.hint().unwrap().contains("app, b"));
    }
}
