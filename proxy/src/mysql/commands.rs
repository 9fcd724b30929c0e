//! What the session does with each client command: forward it to a server,
//! answer it without one, or refuse it.
//!
//! Answered by sqlmux: COM_QUIT, COM_PING, COM_RESET_CONNECTION (which also
//! clears the client's session state and pins), `KILL [QUERY] n`,
//! COM_PROCESS_KILL, and `SELECT LAST_INSERT_ID()` / `SELECT ROW_COUNT()`
//! between transactions (from the last OK the client received, which is
//! what its previous server would say). The binary protocol (COM_STMT_*)
//! goes through sqlmux's statement ids ([`super::prepared`]). Refused with
//! an ERR: COM_CHANGE_USER, replication and other server-admin commands.
//! Everything else (COM_QUERY, COM_INIT_DB, COM_FIELD_LIST, COM_STATISTICS,
//! COM_SET_OPTION, ...) goes to the leased server.

use sqlmux_protocol::mysql::command::{Command, ResponseShape};

use super::kill::{self, KillRequest};
use crate::session::Refusal;

/// What to do with a command.
#[derive(Debug)]
pub enum Action {
    /// The client says goodbye.
    Quit,
    /// Answer OK without a server.
    Ping,
    /// Reset the client's session (and its server, if it holds one).
    Reset,
    /// Stop a statement (and maybe a session) of a client.
    Kill(KillRequest),
    /// Answer from the last OK: LAST_INSERT_ID() or ROW_COUNT().
    LastValue(LastValue),
    /// A binary-protocol command (COM_STMT_*).
    Stmt(Command),
    /// Answer with this ERR.
    Refuse(Refusal),
    /// Send to the server.
    Forward,
}

/// Values sqlmux answers from the client's last OK packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastValue {
    /// `SELECT LAST_INSERT_ID()`.
    InsertId,
    /// `SELECT ROW_COUNT()`.
    RowCount,
}

/// Decides what to do with a command payload. `leased` is true while the
/// client holds a server (then everything SQL goes to it).
pub fn classify(payload: &[u8], leased: bool) -> Action {
    let Some(cmd) = Command::peek(payload) else {
        return Action::Forward;
    };
    match cmd {
        Command::Quit => Action::Quit,
        Command::Ping => Action::Ping,
        Command::ResetConnection => Action::Reset,
        Command::ProcessKill => match payload.get(1..5) {
            Some(id) => Action::Kill(KillRequest {
                id: u32::from_le_bytes(id.try_into().expect("4 bytes")),
                connection: true,
            }),
            None => Action::Refuse(Refusal::ProtocolViolation {
                what: "COM_PROCESS_KILL without a connection id".into(),
            }),
        },
        Command::Query => query(&payload[1..], leased),
        Command::ChangeUser => Action::Refuse(Refusal::NotSupported {
            what: "COM_CHANGE_USER",
            hint: "open a new connection as the other user",
        }),
        Command::StmtPrepare
        | Command::StmtExecute
        | Command::StmtSendLongData
        | Command::StmtClose
        | Command::StmtReset
        | Command::StmtFetch
        | Command::StmtBulkExecute => Action::Stmt(cmd),
        c if c.response_shape() == ResponseShape::Unsupported => {
            Action::Refuse(Refusal::NotSupported {
                what: c.name(),
                hint: "connect to the server directly for replication and administration commands",
            })
        }
        _ => Action::Forward,
    }
}

/// COM_QUERY texts sqlmux answers itself.
fn query(sql: &[u8], leased: bool) -> Action {
    if let Some(k) = kill::parse(sql) {
        return Action::Kill(k);
    }
    if leased {
        return Action::Forward;
    }
    match last_value(sql) {
        Some(v) => Action::LastValue(v),
        None => Action::Forward,
    }
}

/// `SELECT LAST_INSERT_ID()` or `SELECT ROW_COUNT()`, any case, spacing
/// and a trailing semicolon allowed.
fn last_value(sql: &[u8]) -> Option<LastValue> {
    if sql.len() > 64 {
        return None;
    }
    let mut compact = [0u8; 64];
    let mut n = 0;
    for &b in sql {
        if !b.is_ascii_whitespace() && b != b';' {
            compact[n] = b.to_ascii_lowercase();
            n += 1;
        }
    }
    match &compact[..n] {
        b"selectlast_insert_id()" => Some(LastValue::InsertId),
        b"selectrow_count()" => Some(LastValue::RowCount),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_forwarded_answered_or_refused() {
        assert!(matches!(classify(&[0x0e], false), Action::Ping));
        assert!(matches!(classify(&[0x01], false), Action::Quit));
        assert!(matches!(classify(b"\x03SELECT 1", false), Action::Forward));
        assert!(matches!(
            classify(b"\x03 select  last_insert_id() ;", false),
            Action::LastValue(LastValue::InsertId)
        ));
        assert!(matches!(
            classify(b"\x03select last_insert_id()", true),
            Action::Forward
        ));
        assert!(matches!(
            classify(b"\x03KILL QUERY 5", true),
            Action::Kill(_)
        ));
        assert!(matches!(
            classify(b"\x16SELECT ?", false),
            Action::Stmt(Command::StmtPrepare)
        ));
        assert!(matches!(
            classify(&[0x19, 1, 0, 0, 0], false),
            Action::Stmt(Command::StmtClose)
        ));
        assert!(matches!(classify(&[0x11], false), Action::Refuse(_)));
    }
}
