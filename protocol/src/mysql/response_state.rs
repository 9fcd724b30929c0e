//! The response tracker: a small synchronous state machine that follows a
//! server's answer to one command, packet by packet, without copying or
//! allocating, and says when the answer is complete and with which status.
//!
//! Where this sits in the flow: after forwarding a command to the leased
//! server, the MySQL front end creates a tracker
//! ([`ResponseTracker::for_command`]) and, for every physical packet the
//! server sends, calls [`ResponseTracker::server_packet`] with the header
//! and at least the first [`PEEK_LEN`] payload bytes (or the whole payload if
//! shorter), then forwards the packet unchanged. The answer is:
//!
//! - [`Progress::More`]: more server packets belong to this response;
//! - [`Progress::ClientTurn`]: the server now waits for the client (LOCAL
//!   INFILE data, or an authentication reply during COM_CHANGE_USER). Feed
//!   each client packet to [`ResponseTracker::client_packet`] before
//!   forwarding it; it answers `More` once the server's turn is back;
//! - [`Progress::Done`]: the response is complete. [`Completion::Status`]
//!   carries the status flags of its last OK/EOF, from which the session core
//!   decides whether the transaction ended (`status::ServerStatus::
//!   is_transaction_boundary`); [`Completion::Err`] carries no flags (keep the
//!   last known ones); [`Completion::NoStatus`] ends responses that carry no
//!   flags at all (COM_STATISTICS, a prepare answer under DEPRECATE_EOF).
//!
//! The packet that produced `Done` is the last one of the response; the
//! caller may decode it fully (`response::OkPacket`) when it needs more than
//! the flags, e.g. session state changes.
//!
//! Result sets are followed through chains of `SERVER_MORE_RESULTS_EXISTS`
//! (multi-statements, CALL), so `Done` only comes with the final packet. A
//! physical packet of 0xFFFFFF bytes is continued by the next one; the
//! tracker skips continuations itself. Rows are counted ([`ResponseTracker::
//! rows`]), as are affected rows of OK packets.
//!
//! Errors ([`ResponseError`]) mean the byte stream does not follow the
//! protocol: the server connection's state is unknown and it must be closed.
//!
//! Not handled, because sqlmux masks the capabilities that enable them:
//! optional result set metadata, MariaDB metadata caching and progress
//! packets, compression.

use thiserror::Error;

use super::caps::CLIENT_DEPRECATE_EOF;
use super::command::{Command, ResponseShape};
use super::packet::Header;
use super::response::{
    self, EOF_HEADER, ERR_HEADER, ErrPacket, LOCAL_INFILE_HEADER, OK_HEADER, PrepareOk,
};
use super::status::ServerStatus;

/// Payload bytes of each server packet the tracker needs at most: enough
/// for an OK packet's status flags (1 + 9 + 9 + 2 bytes).
pub const PEEK_LEN: usize = 32;

/// Caching_sha2 AuthMoreData status byte: fast authentication succeeded.
const FAST_AUTH_SUCCESS: u8 = 0x03;
/// First byte of AuthMoreData.
const AUTH_MORE_DATA: u8 = 0x01;

/// What the tracker learned from one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// More server packets belong to this response.
    More,
    /// The server waits for the client: feed client packets to
    /// [`ResponseTracker::client_packet`].
    ClientTurn,
    /// The response is complete.
    Done(Completion),
}

/// How a response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// With an OK or EOF packet carrying these status flags.
    Status(ServerStatus),
    /// With an ERR packet (no status flags: keep the last known ones).
    Err {
        /// The error code, e.g. 1213 for a deadlock (the transaction was rolled back).
        code: u16,
    },
    /// With a packet that carries no status flags.
    NoStatus,
}

/// The server's packets do not follow the protocol for the command sent.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ResponseError {
    /// A packet that cannot appear at this point of the response.
    #[error(
        "unexpected server packet (first byte 0x{first:02x}, {len} bytes) while expecting {expecting}"
    )]
    Unexpected {
        /// Its first byte (0 for an empty packet).
        first: u8,
        /// Its payload length.
        len: u32,
        /// What the tracker was waiting for.
        expecting: &'static str,
    },
    /// Fewer payload bytes were passed than the decision needs.
    #[error("server packet too short to read its {0}")]
    Truncated(&'static str),
    /// A server packet arrived while the server should wait for the client.
    #[error("server sent a packet while waiting for the client")]
    ServerOutOfTurn,
    /// A client packet was fed while the server was answering.
    #[error("client sent a packet while the server was answering")]
    ClientOutOfTurn,
    /// A packet arrived after the response was complete.
    #[error("server sent a packet after its response was complete")]
    AfterDone,
}

/// What remains of a prepare answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Defs {
    params: u16,
    params_eof: bool,
    columns: u16,
    columns_eof: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// First packet of a (next) result: OK, ERR, LOCAL INFILE or column count.
    First,
    /// Column definitions of a result set, `left` to go.
    Columns { left: u64 },
    /// The EOF after the column definitions (without DEPRECATE_EOF).
    ColumnsEof,
    /// Rows until a terminator.
    Rows,
    /// The client sends LOCAL INFILE data, ending with an empty packet.
    InfileData,
    /// The first packet of a COM_STMT_PREPARE answer.
    PrepareFirst,
    /// Parameter then column definitions of a prepare answer.
    PrepareDefs(Defs),
    /// COM_FIELD_LIST column definitions until a terminator.
    FieldDefs,
    /// The single text packet of COM_STATISTICS.
    Statistics,
    /// One OK/ERR/EOF packet.
    Single,
    /// Server side of an authentication exchange.
    Auth,
    /// The client answers an authentication request with one packet.
    AuthReply,
    /// Complete.
    Done,
}

/// Follows one response; see the module docs. Plain data, no heap.
#[derive(Debug, Clone)]
pub struct ResponseTracker {
    state: State,
    binary: bool,
    deprecate_eof: bool,
    server_continued: bool,
    client_continued: bool,
    rows: u64,
    affected_rows: u64,
    last_insert_id: u64,
    prepared: Option<PrepareOk>,
    state_changed: bool,
}

impl ResponseTracker {
    /// A tracker for a response of `shape` on a connection that negotiated
    /// `caps` (only `CLIENT_DEPRECATE_EOF` matters). [`ResponseShape::None`]
    /// gives a tracker that is already done; [`ResponseShape::Unsupported`]
    /// one that expects a single OK/ERR (sqlmux should refuse such commands).
    pub fn new(shape: ResponseShape, caps: u32) -> Self {
        let (state, binary) = match shape {
            ResponseShape::None => (State::Done, false),
            ResponseShape::Single | ResponseShape::Unsupported => (State::Single, false),
            ResponseShape::TextResult => (State::First, false),
            ResponseShape::BinaryResult => (State::First, true),
            ResponseShape::Fetch => (State::Rows, true),
            ResponseShape::Prepare => (State::PrepareFirst, false),
            ResponseShape::FieldList => (State::FieldDefs, false),
            ResponseShape::Statistics => (State::Statistics, false),
            ResponseShape::AuthExchange => (State::Auth, false),
        };
        ResponseTracker {
            state,
            binary,
            deprecate_eof: caps & CLIENT_DEPRECATE_EOF != 0,
            server_continued: false,
            client_continued: false,
            rows: 0,
            affected_rows: 0,
            last_insert_id: 0,
            prepared: None,
            state_changed: false,
        }
    }

    /// A tracker for the client command whose payload (or first byte) is
    /// `command`; `None` when the server does not answer it. Unknown command
    /// bytes get a single ERR from the server.
    pub fn for_command(command: &[u8], caps: u32) -> Option<Self> {
        let shape = Command::peek(command).map_or(ResponseShape::Single, Command::response_shape);
        (shape != ResponseShape::None).then(|| Self::new(shape, caps))
    }

    /// Whether the response is complete (or none was expected).
    #[inline]
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the server waits for client packets.
    #[inline]
    pub fn is_client_turn(&self) -> bool {
        matches!(self.state, State::InfileData | State::AuthReply)
    }

    /// Rows received so far (text and binary rows, all result sets).
    #[inline]
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Sum of the affected rows of the OK packets received so far.
    #[inline]
    pub fn affected_rows(&self) -> u64 {
        self.affected_rows
    }

    /// Last insert id of the last OK packet with a non-zero one.
    #[inline]
    pub fn last_insert_id(&self) -> u64 {
        self.last_insert_id
    }

    /// The prepare OK of a COM_STMT_PREPARE answer (statement id, columns, params).
    #[inline]
    pub fn prepared(&self) -> Option<PrepareOk> {
        self.prepared
    }

    /// True when the packet just fed was an OK packet whose status carries
    /// `SERVER_SESSION_STATE_CHANGED`: decode it whole
    /// (`response::OkPacket::session_changes`) to learn what changed.
    #[inline]
    pub fn state_changed(&self) -> bool {
        self.state_changed
    }

    /// Feeds one physical server packet: its header and at least
    /// `min(header.len, PEEK_LEN)` bytes of its payload.
    pub fn server_packet(
        &mut self,
        header: Header,
        payload: &[u8],
    ) -> Result<Progress, ResponseError> {
        self.state_changed = false;
        if self.server_continued {
            self.server_continued = header.is_continued();
            return Ok(Progress::More);
        }
        let progress = self.dispatch(header, payload)?;
        if header.is_continued() {
            // OK, ERR and EOF packets are short: one that would end the
            // response but goes on in the next packet is not one.
            if let Progress::Done(_) = progress {
                return Err(Self::unexpected(
                    header,
                    payload,
                    "a final packet below 16 MiB",
                ));
            }
            // A long row or definition: the state machine has already moved
            // past it, the next packet is its continuation.
            self.server_continued = true;
        }
        Ok(progress)
    }

    /// Feeds one physical client packet while [`Self::is_client_turn`].
    /// Returns [`Progress::ClientTurn`] while the client goes on, and
    /// [`Progress::More`] once the server's turn is back.
    pub fn client_packet(&mut self, header: Header) -> Result<Progress, ResponseError> {
        if self.client_continued {
            self.client_continued = header.is_continued();
            return Ok(Progress::ClientTurn);
        }
        self.client_continued = header.is_continued();
        match self.state {
            State::InfileData if header.len == 0 => self.state = State::First,
            State::InfileData => return Ok(Progress::ClientTurn),
            State::AuthReply if self.client_continued => return Ok(Progress::ClientTurn),
            State::AuthReply => self.state = State::Auth,
            _ => return Err(ResponseError::ClientOutOfTurn),
        }
        Ok(Progress::More)
    }

    fn dispatch(&mut self, h: Header, p: &[u8]) -> Result<Progress, ResponseError> {
        match self.state {
            State::First => self.first(h, p),
            State::Columns { left } => self.column(h, p, left),
            State::ColumnsEof => self.columns_eof(h, p),
            State::Rows => self.row(h, p),
            State::PrepareFirst => self.prepare_first(h, p),
            State::PrepareDefs(d) => self.prepare_def(h, p, d),
            State::FieldDefs => self.field_def(h, p),
            State::Statistics => self.statistics(p),
            State::Single => self.single(h, p),
            State::Auth => self.auth(h, p),
            State::InfileData | State::AuthReply => Err(ResponseError::ServerOutOfTurn),
            State::Done => Err(ResponseError::AfterDone),
        }
    }

    fn finish(&mut self, completion: Completion) -> Result<Progress, ResponseError> {
        self.state = State::Done;
        Ok(Progress::Done(completion))
    }

    fn err(&mut self, p: &[u8]) -> Result<Progress, ResponseError> {
        let code = ErrPacket::peek_code(p).ok_or(ResponseError::Truncated("ERR code"))?;
        self.finish(Completion::Err { code })
    }

    /// An OK packet (header 0x00, or 0xFE as a terminator): counts, then
    /// either the next result of a chain or the end.
    fn ok(&mut self, p: &[u8]) -> Result<Progress, ResponseError> {
        let head = response::ok_head(p).ok_or(ResponseError::Truncated("OK status"))?;
        self.affected_rows = self.affected_rows.saturating_add(head.affected_rows);
        if head.last_insert_id != 0 {
            self.last_insert_id = head.last_insert_id;
        }
        self.state_changed = head.status.session_state_changed();
        self.end_of_result(head.status)
    }

    fn end_of_result(&mut self, status: ServerStatus) -> Result<Progress, ResponseError> {
        if status.more_results() {
            self.state = State::First;
            return Ok(Progress::More);
        }
        self.finish(Completion::Status(status))
    }

    /// A packet that ends a result: an OK under DEPRECATE_EOF, else an EOF.
    fn end_packet(&mut self, p: &[u8]) -> Result<Progress, ResponseError> {
        if self.deprecate_eof {
            return self.ok(p);
        }
        let status = self.terminator(p)?;
        self.end_of_result(status)
    }

    /// The status of a terminator (EOF, or OK with 0xFE under DEPRECATE_EOF).
    fn terminator(&mut self, p: &[u8]) -> Result<ServerStatus, ResponseError> {
        response::terminator_status(p, self.deprecate_eof)
            .ok_or(ResponseError::Truncated("EOF status"))
    }

    fn is_terminator(&self, h: Header, p: &[u8]) -> bool {
        p.first()
            .is_some_and(|&b| response::is_terminator(b, h.len as usize, self.deprecate_eof))
    }

    fn unexpected(h: Header, p: &[u8], expecting: &'static str) -> ResponseError {
        ResponseError::Unexpected {
            first: p.first().copied().unwrap_or(0),
            len: h.len,
            expecting,
        }
    }

    fn first(&mut self, h: Header, p: &[u8]) -> Result<Progress, ResponseError> {
        match p.first() {
            Some(&OK_HEADER) => self.ok(p),
            Some(&ERR_HEADER) => self.err(p),
            Some(&LOCAL_INFILE_HEADER) if !self.binary => {
                self.state = State::InfileData;
                Ok(Progress::ClientTurn)
            }
            Some(&EOF_HEADER) if self.is_terminator(h, p) => self.end_packet(p),
            _ => match response::column_count(p) {
                Some(n) if n > 0 && !h.is_continued() => {
                    self.state = State::Columns { left: n };
                    Ok(Progress::More)
                }
                _ => Err(Self::unexpected(h, p, "OK, ERR or a column count")),
            },
        }
    }

    fn column(&mut self, h: Header, p: &[u8], left: u64) -> Result<Progress, ResponseError> {
        match p.first() {
            Some(&ERR_HEADER) => return self.err(p),
            None => return Err(Self::unexpected(h, p, "a column definition")),
            _ => {}
        }
        self.state = match left {
            1 if self.deprecate_eof => State::Rows,
            1 => State::ColumnsEof,
            _ => State::Columns { left: left - 1 },
        };
        Ok(Progress::More)
    }

    fn columns_eof(&mut self, h: Header, p: &[u8]) -> Result<Progress, ResponseError> {
        if p.first() == Some(&ERR_HEADER) {
            return self.err(p);
        }
        if !self.is_terminator(h, p) {
            return Err(Self::unexpected(h, p, "EOF after column definitions"));
        }
        let status = self.terminator(p)?;
        if self.binary && status.cursor_exists() {
            // The rows stay on the server until COM_STMT_FETCH.
            return self.end_of_result(status);
        }
        self.state = State::Rows;
        Ok(Progress::More)
    }

    fn row(&mut self, h: Header, p: &[u8]) -> Result<Progress, ResponseError> {
        match p.first() {
            Some(&ERR_HEADER) => self.err(p),
            Some(_) if self.is_terminator(h, p) => self.end_packet(p),
            Some(_) => {
                self.rows += 1;
                Ok(Progress::More)
            }
            None => Err(Self::unexpected(h, p, "a row or the end of the result set")),
        }
    }

    fn prepare_first(&mut self, h: Header, p: &[u8]) -> Result<Progress, ResponseError> {
        match p.first() {
            Some(&ERR_HEADER) => return self.err(p),
            Some(&OK_HEADER) => {}
            _ => return Err(Self::unexpected(h, p, "prepare OK or ERR")),
        }
        let ok = PrepareOk::decode(p).map_err(|_| ResponseError::Truncated("prepare OK"))?;
        self.prepared = Some(ok);
        let eof = !self.deprecate_eof;
        self.state = State::PrepareDefs(Defs {
            params: ok.params,
            params_eof: eof && ok.params > 0,
            columns: ok.columns,
            columns_eof: eof && ok.columns > 0,
        });
        self.prepare_progress(None)
    }

    fn prepare_def(&mut self, h: Header, p: &[u8], mut d: Defs) -> Result<Progress, ResponseError> {
        let mut status = None;
        let eof_due = d.params == 0 && (d.params_eof || (d.columns == 0 && d.columns_eof));
        if eof_due {
            if !self.is_terminator(h, p) {
                return Err(Self::unexpected(h, p, "EOF after definitions"));
            }
            status = Some(self.terminator(p)?);
            if d.params_eof {
                d.params_eof = false;
            } else {
                d.columns_eof = false;
            }
        } else if p.is_empty() || p[0] == ERR_HEADER {
            return Err(Self::unexpected(h, p, "a parameter or column definition"));
        } else if d.params > 0 {
            d.params -= 1;
        } else {
            d.columns -= 1;
        }
        self.state = State::PrepareDefs(d);
        self.prepare_progress(status)
    }

    fn prepare_progress(
        &mut self,
        status: Option<ServerStatus>,
    ) -> Result<Progress, ResponseError> {
        let done = Defs {
            params: 0,
            params_eof: false,
            columns: 0,
            columns_eof: false,
        };
        if self.state == State::PrepareDefs(done) {
            return self.finish(status.map_or(Completion::NoStatus, Completion::Status));
        }
        Ok(Progress::More)
    }

    fn field_def(&mut self, h: Header, p: &[u8]) -> Result<Progress, ResponseError> {
        match p.first() {
            Some(&ERR_HEADER) => self.err(p),
            Some(_) if self.is_terminator(h, p) => {
                let status = self.terminator(p)?;
                self.finish(Completion::Status(status))
            }
            Some(_) => Ok(Progress::More),
            None => Err(Self::unexpected(h, p, "a column definition")),
        }
    }

    fn statistics(&mut self, p: &[u8]) -> Result<Progress, ResponseError> {
        if p.first() == Some(&ERR_HEADER) {
            return self.err(p);
        }
        self.finish(Completion::NoStatus)
    }

    fn single(&mut self, h: Header, p: &[u8]) -> Result<Progress, ResponseError> {
        match p.first() {
            Some(&OK_HEADER) => {
                let head = response::ok_head(p).ok_or(ResponseError::Truncated("OK status"))?;
                self.affected_rows = head.affected_rows;
                self.last_insert_id = head.last_insert_id;
                self.finish(Completion::Status(head.status))
            }
            Some(&ERR_HEADER) => self.err(p),
            Some(&EOF_HEADER) if self.is_terminator(h, p) => {
                let status = self.terminator(p)?;
                self.finish(Completion::Status(status))
            }
            _ => Err(Self::unexpected(h, p, "OK, ERR or EOF")),
        }
    }

    fn auth(&mut self, h: Header, p: &[u8]) -> Result<Progress, ResponseError> {
        match p.first() {
            Some(&OK_HEADER) => self.single(h, p),
            Some(&ERR_HEADER) => self.err(p),
            Some(&AUTH_MORE_DATA) if p.get(1) == Some(&FAST_AUTH_SUCCESS) && h.len == 2 => {
                Ok(Progress::More)
            }
            Some(&EOF_HEADER) | Some(&AUTH_MORE_DATA) => {
                self.state = State::AuthReply;
                Ok(Progress::ClientTurn)
            }
            _ => Err(Self::unexpected(
                h,
                p,
                "an authentication packet, OK or ERR",
            )),
        }
    }
}

#[cfg(test)]
mod tests;
