//! The queue of client requests still waiting for their server responses.
//!
//! Every forwarded message that the server answers gets an entry; every
//! response pops the entry it answers. This is what tells the session that
//! a server is at a clean transaction boundary (queue empty and
//! ReadyForQuery `I`), which response belongs to which statement (for
//! latency), and which responses sqlmux caused itself and must swallow.
//!
//! Response rules (PostgreSQL protocol, section "Message Flow"):
//! - Parse → ParseComplete, Bind → BindComplete, Close → CloseComplete,
//!   Describe → [ParameterDescription] RowDescription | NoData,
//!   Execute → CommandComplete | EmptyQueryResponse | PortalSuspended |
//!   CopyIn/CopyOut responses, Sync and Query → ReadyForQuery.
//! - After an ErrorResponse in the extended protocol the server skips
//!   messages up to the next Sync: their entries are dropped unanswered.
//! - In copy-in mode started by Execute, the server ignores Sync and Flush
//!   until CopyDone/CopyFail; Syncs already queued behind that Execute are
//!   dropped, and new ones are not queued until the copy ends.

use std::collections::VecDeque;

use sqlmux_protocol::sql::Fingerprint;

use crate::clock::Tick;

/// Requests sqlmux sends on its own behalf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// Parameter synchronisation at lease start.
    Params,
    /// ROLLBACK of a leaked transaction.
    Rollback,
    /// The client's startup values, re-applied right after its RESET ALL
    /// or DISCARD ALL; its ParameterStatus messages reach the client.
    Restore,
}

/// A reply sqlmux produces itself, in order with the server's replies.
#[derive(Debug, Clone, PartialEq)]
pub enum Local {
    /// ParseComplete for a statement the server already holds; the
    /// client's statement name, registered when the Parse was forwarded, is
    /// forgotten again if an earlier error makes the server skip it.
    ParseComplete(Option<Box<[u8]>>),
    /// CloseComplete for a client's Close of a named statement.
    CloseComplete,
    /// An ErrorResponse (unknown or duplicate statement name).
    Error {
        /// SQLSTATE.
        code: &'static str,
        /// Message.
        message: Box<str>,
    },
    /// CommandComplete with this tag, then ReadyForQuery (a Query answered
    /// by sqlmux, e.g. DEALLOCATE of a protocol-level statement).
    QueryDone(Box<str>),
    /// ErrorResponse then ReadyForQuery (a Query refused by sqlmux).
    QueryError {
        /// SQLSTATE.
        code: &'static str,
        /// Message.
        message: Box<str>,
    },
}

/// One request awaiting its response.
#[derive(Debug, Clone, PartialEq)]
pub enum Req {
    /// Simple Query: answered by everything up to ReadyForQuery.
    Query {
        /// Statement fingerprint.
        fp: Fingerprint,
        /// When it was forwarded.
        sent: Tick,
        /// Rows reported by CommandComplete tags so far.
        rows: u64,
        /// Whether an ErrorResponse was seen.
        error: bool,
    },
    /// Parse; `synthetic` when sqlmux injected it.
    Parse {
        /// Injected by sqlmux: swallow its ParseComplete.
        synthetic: bool,
        /// Content id of a shared named statement, if any: the server's
        /// statement cache lists it from the moment the Parse is sent, and
        /// forgets it again when the Parse fails or is skipped.
        stmt: Option<u64>,
        /// The client's name for the statement (transaction mode), likewise
        /// registered when sent and forgotten when the Parse does not run.
        name: Option<Box<[u8]>>,
    },
    /// Bind.
    Bind,
    /// Describe.
    Describe,
    /// Execute of a portal.
    Execute {
        /// Fingerprint of the statement behind the portal.
        fp: Fingerprint,
        /// When it was forwarded.
        sent: Tick,
    },
    /// Close; `synthetic` when sqlmux injected it.
    Close {
        /// Injected by sqlmux: swallow its CloseComplete.
        synthetic: bool,
        /// A statement evicted from the server's cache (content id and
        /// server name): back into the cache if the Close is skipped.
        evicted: Option<(u64, [u8; 23])>,
    },
    /// Sync.
    Sync,
    /// FunctionCall.
    Function,
    /// A simple query sqlmux sent itself; all its responses are swallowed.
    Injected(Injected),
    /// A reply sqlmux gives itself when this entry reaches the front.
    Local(Local),
}

impl Req {
    /// True for requests answered by ReadyForQuery.
    pub fn ends_with_ready(&self) -> bool {
        matches!(
            self,
            Req::Query { .. }
                | Req::Sync
                | Req::Function
                | Req::Injected(_)
                | Req::Local(Local::QueryDone(_) | Local::QueryError { .. })
        )
    }
}

/// The outstanding-request queue of one leased server.
#[derive(Debug, Default)]
pub struct Tracker {
    q: VecDeque<Req>,
    /// The server is in copy-in mode entered through Execute: Syncs are
    /// ignored by the server until CopyDone/CopyFail.
    pub copy_in_extended: bool,
    /// The server is in copy-in mode (either protocol).
    pub copy_in: bool,
}

impl Tracker {
    /// True when the server will answer without further client input: a
    /// request that ends with ReadyForQuery is queued and no copy-in waits
    /// for the client's data.
    pub fn owes_reply(&self) -> bool {
        !self.copy_in && self.q.iter().any(Req::ends_with_ready)
    }

    /// Queues a request.
    #[inline]
    pub fn push(&mut self, r: Req) {
        self.q.push_back(r);
    }

    /// Oldest unanswered request.
    #[inline]
    pub fn front(&self) -> Option<&Req> {
        self.q.front()
    }

    /// Oldest unanswered request, mutable (to accumulate rows on a Query).
    #[inline]
    pub fn front_mut(&mut self) -> Option<&mut Req> {
        self.q.front_mut()
    }

    /// Removes and returns the oldest request.
    #[inline]
    pub fn pop(&mut self) -> Option<Req> {
        self.q.pop_front()
    }

    /// True when nothing is outstanding.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// Outstanding requests.
    pub fn len(&self) -> usize {
        self.q.len()
    }

    /// After an ErrorResponse in the extended protocol: removes and returns
    /// every entry before the next ready-ending one (the server skips those
    /// messages), oldest first, so the caller can undo what it recorded
    /// when it sent them.
    pub fn skip_to_sync(&mut self) -> Vec<Req> {
        let n = self
            .q
            .iter()
            .position(Req::ends_with_ready)
            .unwrap_or(self.q.len());
        self.q.drain(..n).collect()
    }

    /// CopyInResponse for the Execute at the front: Syncs queued behind it
    /// (before any other message) will be ignored by the server.
    pub fn enter_copy_in(&mut self) {
        self.copy_in = true;
        if matches!(self.q.front(), Some(Req::Execute { .. })) {
            self.copy_in_extended = true;
            // Drop Syncs queued right behind the Execute.
            let mut i = 1;
            while i < self.q.len() {
                if self.q[i] == Req::Sync {
                    self.q.remove(i);
                } else {
                    i += 1;
                }
            }
        }
    }

    /// Client sent CopyDone or CopyFail.
    pub fn leave_copy_in(&mut self) {
        self.copy_in = false;
        self.copy_in_extended = false;
    }

    /// Forgets everything (the server is being discarded).
    pub fn clear(&mut self) {
        self.q.clear();
        self.copy_in = false;
        self.copy_in_extended = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_skips_to_sync() {
        let now = Tick::now();
        let mut t = Tracker::default();
        t.push(Req::Parse {
            synthetic: false,
            stmt: None,
            name: None,
        });
        t.push(Req::Bind);
        t.push(Req::Execute {
            fp: Fingerprint(1),
            sent: now,
        });
        t.push(Req::Sync);
        t.push(Req::Parse {
            synthetic: false,
            stmt: None,
            name: None,
        });
        // ErrorResponse answering the Parse.
        t.pop();
        let dropped = t.skip_to_sync();
        assert_eq!(dropped.len(), 2);
        assert_eq!(t.pop(), Some(Req::Sync));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn extended_copy_in_drops_queued_syncs() {
        let now = Tick::now();
        let mut t = Tracker::default();
        t.push(Req::Execute {
            fp: Fingerprint(1),
            sent: now,
        });
        t.push(Req::Sync);
        t.enter_copy_in();
        assert!(t.copy_in_extended);
        assert_eq!(t.len(), 1);
        t.leave_copy_in();
        assert!(!t.copy_in);
    }
}
