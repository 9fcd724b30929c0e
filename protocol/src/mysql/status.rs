//! Server status flags, carried by OK and EOF packets (never by ERR).
//!
//! Where this sits in the flow: the response tracker returns the flags of
//! the packet that ended a response; the session core decides from them
//! whether the lease may end ([`ServerStatus::is_transaction_boundary`]).

/// A transaction is open.
pub const SERVER_STATUS_IN_TRANS: u16 = 0x0001;
/// Autocommit is on.
pub const SERVER_STATUS_AUTOCOMMIT: u16 = 0x0002;
/// Another result set follows (multi-statements, CALL).
pub const SERVER_MORE_RESULTS_EXISTS: u16 = 0x0008;
/// The last query used no good index.
pub const SERVER_QUERY_NO_GOOD_INDEX_USED: u16 = 0x0010;
/// The last query used no index.
pub const SERVER_QUERY_NO_INDEX_USED: u16 = 0x0020;
/// COM_STMT_EXECUTE opened a read-only cursor: rows come with COM_STMT_FETCH.
pub const SERVER_STATUS_CURSOR_EXISTS: u16 = 0x0040;
/// The cursor has sent its last row.
pub const SERVER_STATUS_LAST_ROW_SENT: u16 = 0x0080;
/// A database was dropped.
pub const SERVER_STATUS_DB_DROPPED: u16 = 0x0100;
/// `NO_BACKSLASH_ESCAPES` is in sql_mode: backslashes are plain characters in strings.
pub const SERVER_STATUS_NO_BACKSLASH_ESCAPES: u16 = 0x0200;
/// A prepared statement's metadata changed since it was prepared.
pub const SERVER_STATUS_METADATA_CHANGED: u16 = 0x0400;
/// The query was logged as slow.
pub const SERVER_QUERY_WAS_SLOW: u16 = 0x0800;
/// The statement has output parameters (CALL).
pub const SERVER_PS_OUT_PARAMS: u16 = 0x1000;
/// The open transaction is read-only.
pub const SERVER_STATUS_IN_TRANS_READONLY: u16 = 0x2000;
/// The OK packet carries session state changes.
pub const SERVER_SESSION_STATE_CHANGED: u16 = 0x4000;
/// MariaDB: `ANSI_QUOTES` is in sql_mode (`"x"` is an identifier).
pub const SERVER_STATUS_ANSI_QUOTES: u16 = 0x8000;

/// Status flags of one OK or EOF packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ServerStatus(pub u16);

impl ServerStatus {
    /// Whether `flag` is set.
    #[inline]
    pub fn has(self, flag: u16) -> bool {
        self.0 & flag != 0
    }

    /// A transaction is open.
    #[inline]
    pub fn in_transaction(self) -> bool {
        self.has(SERVER_STATUS_IN_TRANS)
    }

    /// Autocommit is on.
    #[inline]
    pub fn autocommit(self) -> bool {
        self.has(SERVER_STATUS_AUTOCOMMIT)
    }

    /// Another result set follows.
    #[inline]
    pub fn more_results(self) -> bool {
        self.has(SERVER_MORE_RESULTS_EXISTS)
    }

    /// A cursor is open on the statement just executed.
    #[inline]
    pub fn cursor_exists(self) -> bool {
        self.has(SERVER_STATUS_CURSOR_EXISTS)
    }

    /// The cursor sent its last row.
    #[inline]
    pub fn last_row_sent(self) -> bool {
        self.has(SERVER_STATUS_LAST_ROW_SENT)
    }

    /// The packet carries session state changes.
    #[inline]
    pub fn session_state_changed(self) -> bool {
        self.has(SERVER_SESSION_STATE_CHANGED)
    }

    /// The open transaction is read-only.
    #[inline]
    pub fn read_only_transaction(self) -> bool {
        self.has(SERVER_STATUS_IN_TRANS_READONLY)
    }

    /// Neither a transaction, a result chain nor a cursor is open after the
    /// response that carried these flags: the transaction-mode lease may end
    /// here as far as the status tells (the session core still checks pins,
    /// open cursors of earlier statements and LOCAL INFILE).
    #[inline]
    pub fn is_transaction_boundary(self) -> bool {
        !self.has(SERVER_STATUS_IN_TRANS | SERVER_MORE_RESULTS_EXISTS | SERVER_STATUS_CURSOR_EXISTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_statuses_decide_boundaries() {
        // BEGIN -> 0x0003, COMMIT -> 0x0002, SET autocommit=0 -> 0x4000,
        // first of two results -> 0x000a, cursor execute -> 0x0062 (MariaDB 10.11).
        assert!(!ServerStatus(0x0003).is_transaction_boundary());
        assert!(ServerStatus(0x0002).is_transaction_boundary());
        assert!(ServerStatus(0x4000).is_transaction_boundary());
        assert!(!ServerStatus(0x000a).is_transaction_boundary());
        assert!(!ServerStatus(0x0062).is_transaction_boundary());
        assert!(ServerStatus(0x2003).read_only_transaction());
        assert!(ServerStatus(0x0082).last_row_sent());
    }
}
