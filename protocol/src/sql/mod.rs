//! SQL statement fingerprints and classification. API STUB: the real
//! implementation replaces this file.

use std::fmt;

/// Which SQL lexical rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// PostgreSQL.
    Postgres,
    /// MySQL / MariaDB.
    MySql,
}

/// Stable 64-bit id of a normalized statement, shown as 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Fingerprint(pub u64);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Statement kinds (of the first statement in a query string).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    /// SELECT / WITH ... SELECT / VALUES / TABLE.
    Select,
    /// INSERT.
    Insert,
    /// UPDATE.
    Update,
    /// DELETE.
    Delete,
    /// BEGIN / START TRANSACTION.
    Begin,
    /// COMMIT / END.
    Commit,
    /// ROLLBACK / ABORT (not ROLLBACK TO SAVEPOINT).
    Rollback,
    /// SET / RESET.
    Set,
    /// SHOW.
    Show,
    /// Anything else or empty.
    #[default]
    Other,
}

/// Session-state effects found anywhere in a query string (bit set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Effects(pub u32);

impl Effects {
    /// BEGIN/START TRANSACTION/COMMIT/END/ROLLBACK/ABORT/SAVEPOINT/RELEASE/PREPARE TRANSACTION/COMMIT PREPARED.
    pub const TXN_CONTROL: u32 = 1 << 0;
    /// `SET name ...` (not LOCAL, not SET TRANSACTION/SESSION CHARACTERISTICS), including `SET SESSION name`.
    pub const SET: u32 = 1 << 1;
    /// `SET LOCAL ...`.
    pub const SET_LOCAL: u32 = 1 << 2;
    /// `RESET name`.
    pub const RESET: u32 = 1 << 3;
    /// `RESET ALL`.
    pub const RESET_ALL: u32 = 1 << 4;
    /// `DISCARD ALL`.
    pub const DISCARD_ALL: u32 = 1 << 5;
    /// `LISTEN channel`.
    pub const LISTEN: u32 = 1 << 6;
    /// `UNLISTEN *`.
    pub const UNLISTEN_ALL: u32 = 1 << 7;
    /// A session-level advisory lock function (pg_advisory_lock, pg_try_advisory_lock, *_shared variants; not *_xact_*).
    pub const ADVISORY_LOCK: u32 = 1 << 8;
    /// pg_advisory_unlock_all().
    pub const ADVISORY_UNLOCK_ALL: u32 = 1 << 9;
    /// SQL-level `PREPARE name AS ...` (not PREPARE TRANSACTION).
    pub const PREPARE: u32 = 1 << 10;
    /// `DEALLOCATE [PREPARE] name`.
    pub const DEALLOCATE: u32 = 1 << 11;
    /// `DEALLOCATE [PREPARE] ALL`.
    pub const DEALLOCATE_ALL: u32 = 1 << 12;
    /// `CREATE [GLOBAL|LOCAL] TEMP|TEMPORARY TABLE` without `ON COMMIT DROP`.
    pub const TEMP_TABLE: u32 = 1 << 13;
    /// `DECLARE ... WITH HOLD`.
    pub const WITH_HOLD: u32 = 1 << 14;
    /// `DISCARD TEMP|TEMPORARY`.
    pub const DISCARD_TEMP: u32 = 1 << 15;
    /// `LOAD 'library'`.
    pub const LOAD: u32 = 1 << 16;
    /// `UNLISTEN channel` (not `*`).
    pub const UNLISTEN: u32 = 1 << 17;

    /// True when every bit of `bits` is set.
    pub fn has(self, bits: u32) -> bool {
        self.0 & bits == bits
    }
    /// True when any bit of `bits` is set.
    pub fn any(self, bits: u32) -> bool {
        self.0 & bits != 0
    }
}

/// The result of [`Normalizer::normalize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Analysis {
    /// Hash of the normalized text.
    pub fingerprint: Fingerprint,
    /// Top-level statements in the string (0 for an empty/comment-only string).
    pub statements: u32,
    /// Kind of the first statement.
    pub kind: Kind,
    /// Effects over all statements.
    pub effects: Effects,
}

/// One-pass normalizer with a reusable output buffer (no allocation once warm).
#[derive(Debug, Default)]
pub struct Normalizer {
    text: Vec<u8>,
}

impl Normalizer {
    /// A normalizer with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }
    /// Normalizes `sql`, leaving the text in [`Normalizer::text`].
    pub fn normalize(&mut self, sql: &[u8], dialect: Dialect) -> Analysis {
        let _ = (sql, dialect);
        todo!()
    }
    /// Normalized text of the last call.
    pub fn text(&self) -> &str {
        todo!()
    }
}

/// A SET or RESET command, extracted for session-state tracking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetCommand {
    /// Lower-cased parameter name (quoted names keep their case).
    pub name: String,
    /// The value as SQL text to re-apply (`'x'`, `a, b`, `DEFAULT` -> None); None = reset to default.
    pub value: Option<String>,
    /// SET LOCAL.
    pub local: bool,
}

/// Extracts every SET/RESET (not RESET ALL) command in `sql`, in order.
pub fn set_commands(sql: &[u8], dialect: Dialect) -> Vec<SetCommand> {
    let _ = (sql, dialect);
    todo!()
}
