//! Command bytes: the first byte of every packet a client sends with
//! sequence id 0, and the shape of the server's answer to each.
//!
//! Where this sits in the flow: the client session reads the command byte
//! ([`Command::peek`]), decides (answer locally, refuse, or lease a server
//! and forward), and starts a [`ResponseTracker`](super::response_state::ResponseTracker)
//! for the [`ResponseShape`] it expects.

/// A client command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Command {
    /// COM_SLEEP (internal to the server; answered with ERR).
    Sleep = 0x00,
    /// COM_QUIT: the client closes; no answer.
    Quit = 0x01,
    /// COM_INIT_DB: change the default database.
    InitDb = 0x02,
    /// COM_QUERY: a text statement.
    Query = 0x03,
    /// COM_FIELD_LIST: column definitions of a table (deprecated).
    FieldList = 0x04,
    /// COM_CREATE_DB (deprecated).
    CreateDb = 0x05,
    /// COM_DROP_DB (deprecated).
    DropDb = 0x06,
    /// COM_REFRESH: flush tables, logs... (deprecated).
    Refresh = 0x07,
    /// COM_SHUTDOWN (deprecated).
    Shutdown = 0x08,
    /// COM_STATISTICS: a human-readable status string.
    Statistics = 0x09,
    /// COM_PROCESS_INFO: the process list as a result set (deprecated).
    ProcessInfo = 0x0a,
    /// COM_CONNECT (internal).
    Connect = 0x0b,
    /// COM_PROCESS_KILL: kill a connection (deprecated).
    ProcessKill = 0x0c,
    /// COM_DEBUG: dump debug info to the server log.
    Debug = 0x0d,
    /// COM_PING.
    Ping = 0x0e,
    /// COM_TIME (internal).
    Time = 0x0f,
    /// COM_DELAYED_INSERT (internal).
    DelayedInsert = 0x10,
    /// COM_CHANGE_USER: log in again as another user on the same connection.
    ChangeUser = 0x11,
    /// COM_BINLOG_DUMP: replication stream.
    BinlogDump = 0x12,
    /// COM_TABLE_DUMP (internal).
    TableDump = 0x13,
    /// COM_CONNECT_OUT (internal).
    ConnectOut = 0x14,
    /// COM_REGISTER_SLAVE: replication.
    RegisterSlave = 0x15,
    /// COM_STMT_PREPARE.
    StmtPrepare = 0x16,
    /// COM_STMT_EXECUTE.
    StmtExecute = 0x17,
    /// COM_STMT_SEND_LONG_DATA: no answer.
    StmtSendLongData = 0x18,
    /// COM_STMT_CLOSE: no answer.
    StmtClose = 0x19,
    /// COM_STMT_RESET.
    StmtReset = 0x1a,
    /// COM_SET_OPTION: toggle MULTI_STATEMENTS.
    SetOption = 0x1b,
    /// COM_STMT_FETCH: rows from a cursor.
    StmtFetch = 0x1c,
    /// COM_DAEMON (internal).
    Daemon = 0x1d,
    /// COM_BINLOG_DUMP_GTID: replication stream.
    BinlogDumpGtid = 0x1e,
    /// COM_RESET_CONNECTION: reset session state, keep the login and database.
    ResetConnection = 0x1f,
    /// MariaDB COM_STMT_BULK_EXECUTE.
    StmtBulkExecute = 0xfa,
}

/// What the server sends back for a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseShape {
    /// Nothing (COM_QUIT, COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA).
    None,
    /// One packet: OK, ERR or an EOF-shaped 0xFE packet.
    Single,
    /// OK, ERR, LOCAL INFILE request or text result sets (COM_QUERY).
    TextResult,
    /// OK, ERR or binary result sets, possibly opening a cursor (COM_STMT_EXECUTE).
    BinaryResult,
    /// Binary rows then EOF/OK, or ERR (COM_STMT_FETCH).
    Fetch,
    /// Prepare OK then parameter and column definitions, or ERR.
    Prepare,
    /// Column definitions then EOF/OK, or ERR (COM_FIELD_LIST).
    FieldList,
    /// One packet of plain text, no header byte (COM_STATISTICS).
    Statistics,
    /// An authentication exchange ending in OK or ERR (COM_CHANGE_USER).
    AuthExchange,
    /// A stream that never ends on its own (replication): sqlmux refuses it.
    Unsupported,
}

impl Command {
    /// The command for a byte, if known.
    pub fn from_byte(b: u8) -> Option<Self> {
        use Command::*;
        const TABLE: [Command; 0x20] = [
            Sleep,
            Quit,
            InitDb,
            Query,
            FieldList,
            CreateDb,
            DropDb,
            Refresh,
            Shutdown,
            Statistics,
            ProcessInfo,
            Connect,
            ProcessKill,
            Debug,
            Ping,
            Time,
            DelayedInsert,
            ChangeUser,
            BinlogDump,
            TableDump,
            ConnectOut,
            RegisterSlave,
            StmtPrepare,
            StmtExecute,
            StmtSendLongData,
            StmtClose,
            StmtReset,
            SetOption,
            StmtFetch,
            Daemon,
            BinlogDumpGtid,
            ResetConnection,
        ];
        match b {
            0xfa => Some(StmtBulkExecute),
            _ => TABLE.get(usize::from(b)).copied(),
        }
    }

    /// The command of a client packet's payload (its first byte), if known.
    #[inline]
    pub fn peek(payload: &[u8]) -> Option<Self> {
        Self::from_byte(*payload.first()?)
    }

    /// The command byte.
    #[inline]
    pub fn as_byte(self) -> u8 {
        self as u8
    }

    /// The protocol name, e.g. `COM_QUERY`, for logs and errors.
    pub fn name(self) -> &'static str {
        use Command::*;
        match self {
            Sleep => "COM_SLEEP",
            Quit => "COM_QUIT",
            InitDb => "COM_INIT_DB",
            Query => "COM_QUERY",
            FieldList => "COM_FIELD_LIST",
            CreateDb => "COM_CREATE_DB",
            DropDb => "COM_DROP_DB",
            Refresh => "COM_REFRESH",
            Shutdown => "COM_SHUTDOWN",
            Statistics => "COM_STATISTICS",
            ProcessInfo => "COM_PROCESS_INFO",
            Connect => "COM_CONNECT",
            ProcessKill => "COM_PROCESS_KILL",
            Debug => "COM_DEBUG",
            Ping => "COM_PING",
            Time => "COM_TIME",
            DelayedInsert => "COM_DELAYED_INSERT",
            ChangeUser => "COM_CHANGE_USER",
            BinlogDump => "COM_BINLOG_DUMP",
            TableDump => "COM_TABLE_DUMP",
            ConnectOut => "COM_CONNECT_OUT",
            RegisterSlave => "COM_REGISTER_SLAVE",
            StmtPrepare => "COM_STMT_PREPARE",
            StmtExecute => "COM_STMT_EXECUTE",
            StmtSendLongData => "COM_STMT_SEND_LONG_DATA",
            StmtClose => "COM_STMT_CLOSE",
            StmtReset => "COM_STMT_RESET",
            SetOption => "COM_SET_OPTION",
            StmtFetch => "COM_STMT_FETCH",
            Daemon => "COM_DAEMON",
            BinlogDumpGtid => "COM_BINLOG_DUMP_GTID",
            ResetConnection => "COM_RESET_CONNECTION",
            StmtBulkExecute => "COM_STMT_BULK_EXECUTE",
        }
    }

    /// What the server answers.
    pub fn response_shape(self) -> ResponseShape {
        use Command::*;
        match self {
            Quit | StmtSendLongData | StmtClose => ResponseShape::None,
            Query => ResponseShape::TextResult,
            // MariaDB may answer a bulk execute with a result set of unit results.
            StmtExecute | StmtBulkExecute => ResponseShape::BinaryResult,
            StmtFetch => ResponseShape::Fetch,
            StmtPrepare => ResponseShape::Prepare,
            FieldList => ResponseShape::FieldList,
            ProcessInfo => ResponseShape::TextResult,
            Statistics => ResponseShape::Statistics,
            ChangeUser => ResponseShape::AuthExchange,
            BinlogDump | BinlogDumpGtid | RegisterSlave | TableDump | ConnectOut => {
                ResponseShape::Unsupported
            }
            _ => ResponseShape::Single,
        }
    }

    /// Whether the server answers at all.
    #[inline]
    pub fn expects_response(self) -> bool {
        self.response_shape() != ResponseShape::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_byte_roundtrips() {
        for b in 0..=255u8 {
            if let Some(c) = Command::from_byte(b) {
                assert_eq!(c.as_byte(), b);
                assert!(c.name().starts_with("COM_"));
            }
        }
        assert_eq!(Command::from_byte(0x20), None);
        assert_eq!(Command::peek(b"\x03SELECT 1"), Some(Command::Query));
        assert_eq!(Command::peek(b""), None);
    }

    #[test]
    fn commands_without_answer() {
        assert!(!Command::Quit.expects_response());
        assert!(!Command::StmtClose.expects_response());
        assert!(!Command::StmtSendLongData.expects_response());
        assert!(Command::StmtReset.expects_response());
        assert_eq!(
            Command::ResetConnection.response_shape(),
            ResponseShape::Single
        );
        assert_eq!(Command::SetOption.response_shape(), ResponseShape::Single);
    }
}
