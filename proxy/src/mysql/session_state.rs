//! Session state that follows a MySQL client from server to server.
//!
//! Every server connection runs with session tracking on
//! (`session_track_system_variables='*'`, `session_track_schema=ON`,
//! `session_track_state_change=ON`), so each OK packet that changed
//! something lists the resulting values. The same [`SessionVars`] type
//! holds two pictures:
//!
//! - on a client: the variables it changed and its default schema, as the
//!   OK packets it received said;
//! - on a server: what the server holds that differs from its login state.
//!
//! At checkout the session compares the two ([`SessionVars::sync_sql`]) and
//! replays the difference (one `SET`, one COM_INIT_DB); a server holding a
//! variable the client never set is reset first (COM_RESET_CONNECTION).
//!
//! What session tracking cannot carry (user variables, temporary tables,
//! SQL PREPARE, GET_LOCK, LOCK TABLES, SQL_CALC_FOUND_ROWS) is found from the
//! statement text ([`pin_bits`]) and pins the server under
//! `pool.on_session_state`.

use std::collections::BTreeMap;

use sqlmux_protocol::mysql::response::{OkPacket, SessionChange};
use sqlmux_protocol::sql::Effects;

use crate::session::pins::{
    PIN_LOCK, PIN_OTHER, PIN_PREPARE, PIN_TABLE_LOCK, PIN_TEMP, PIN_USER_VAR, PinBits,
};

/// The statement sqlmux runs on every new or reset server connection.
pub const ENABLE_TRACKING: &str = "SET session_track_system_variables='*', session_track_schema=ON, session_track_state_change=ON";

/// Variables and schema of one session (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionVars {
    /// Changed system variables and their values as the server reports them.
    pub vars: BTreeMap<Box<str>, Box<str>>,
    /// Default schema, when known.
    pub schema: Option<Box<str>>,
}

impl SessionVars {
    /// Applies the session state block of an OK packet. Returns true when
    /// anything was recorded.
    pub fn apply(&mut self, ok: &OkPacket<'_>) -> bool {
        let mut changed = false;
        for change in ok.session_changes().map_while(Result::ok) {
            match change {
                SessionChange::SystemVariable { name, value } => {
                    let name = String::from_utf8_lossy(name);
                    if name.starts_with("session_track_") {
                        continue;
                    }
                    let value = String::from_utf8_lossy(value);
                    self.vars.insert(name.into(), value.into());
                    changed = true;
                }
                SessionChange::Schema(s) => {
                    self.schema = Some(String::from_utf8_lossy(s).into());
                    changed = true;
                }
                _ => {}
            }
        }
        changed
    }

    /// True when `server` holds a variable this session does not have
    /// (only a reset brings it back to its default).
    pub fn needs_reset_of(&self, server: &SessionVars) -> bool {
        server.vars.keys().any(|k| !self.vars.contains_key(k))
    }

    /// The `SET` that brings `server` to this session's variables, if any
    /// differ.
    pub fn sync_sql(&self, server: &SessionVars) -> Option<String> {
        let mut sql = String::new();
        for (name, value) in &self.vars {
            if server.vars.get(name) == Some(value) {
                continue;
            }
            sql.push_str(if sql.is_empty() { "SET " } else { ", " });
            sql.push_str("@@SESSION.");
            sql.push_str(name);
            sql.push_str(" = ");
            push_value(&mut sql, value);
        }
        (!sql.is_empty()).then_some(sql)
    }
}

/// A variable value as SQL: integers bare, everything else quoted.
fn push_value(sql: &mut String, value: &str) {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        sql.push_str(value);
        return;
    }
    sql.push('\'');
    for c in value.chars() {
        match c {
            '\'' => sql.push_str("''"),
            '\\' => sql.push_str("\\\\"),
            c => sql.push(c),
        }
    }
    sql.push('\'');
}

/// Pin bits for a statement, from its effects and its normalized text
/// (lower-case words, literals as `?`).
pub fn pin_bits(effects: Effects, text: &str) -> PinBits {
    let mut bits = 0;
    if effects.any(Effects::ADVISORY_LOCK) || text.contains("get_lock(") {
        bits |= PIN_LOCK;
    }
    if effects.any(Effects::TEMP_TABLE) {
        bits |= PIN_TEMP;
    }
    if effects.any(Effects::PREPARE) {
        bits |= PIN_PREPARE;
    }
    if has_user_variable(text) {
        bits |= PIN_USER_VAR;
    }
    if text.starts_with("lock table") || text.contains("; lock table") {
        bits |= PIN_TABLE_LOCK;
    }
    if text.contains("sql_calc_found_rows") {
        bits |= PIN_OTHER;
    }
    bits
}

/// True when the statement names a user variable (`@x`, not `@@x`).
fn has_user_variable(text: &str) -> bool {
    let b = text.as_bytes();
    b.iter().enumerate().any(|(i, &c)| {
        c == b'@' && b.get(i + 1).is_some_and(|&n| n != b'@') && (i == 0 || b[i - 1] != b'@')
    })
}

/// True for `UNLOCK TABLES` (ends a table lock pin once it commits).
pub fn unlocks_tables(text: &str) -> bool {
    text.starts_with("unlock table")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_sql_sets_only_what_differs_and_quotes_strings() {
        let mut client = SessionVars::default();
        client.vars.insert("time_zone".into(), "+01:00".into());
        client.vars.insert("max_statement_time".into(), "5".into());
        let mut server = SessionVars::default();
        server.vars.insert("max_statement_time".into(), "5".into());
        assert_eq!(
            client.sync_sql(&server).unwrap(),
            "SET @@SESSION.time_zone = '+01:00'"
        );
        assert!(!client.needs_reset_of(&server));
        server.vars.insert("sql_mode".into(), "".into());
        assert!(client.needs_reset_of(&server));
    }

    #[test]
    fn user_variables_locks_and_found_rows_pin() {
        let none = Effects::default();
        assert_eq!(pin_bits(none, "select @@version"), 0);
        assert_eq!(pin_bits(none, "set @a = ?"), PIN_USER_VAR);
        assert_eq!(pin_bits(none, "lock tables t write"), PIN_TABLE_LOCK);
        assert_eq!(
            pin_bits(none, "select sql_calc_found_rows * from t"),
            PIN_OTHER
        );
        assert_eq!(pin_bits(none, "select get_lock(?, ?)"), PIN_LOCK);
    }
}
