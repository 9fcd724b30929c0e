//! Pinning: session state that cannot follow a client to another server
//! (PostgreSQL LISTEN, advisory locks, temp tables, SQL PREPARE, WITH HOLD
//! cursors; MySQL user variables, named and table locks, temporary
//! tables, ...) keeps the client on its server until the state is gone or
//! the client leaves. Each front end maps statements to pin bits; this
//! module applies `pool.on_session_state` and tracks what is held.

use super::Refusal;
use crate::client::PinReason;
use crate::config::SessionStatePolicy;

/// One reason a client holds its server, as a bit.
pub type PinBits = u16;

/// LISTEN.
pub const PIN_LISTEN: PinBits = 1;
/// Session advisory lock (PostgreSQL) or GET_LOCK (MySQL).
pub const PIN_LOCK: PinBits = 2;
/// Temporary table.
pub const PIN_TEMP: PinBits = 4;
/// SQL-level PREPARE.
pub const PIN_PREPARE: PinBits = 8;
/// DECLARE ... WITH HOLD.
pub const PIN_HOLD: PinBits = 16;
/// User variables (MySQL `@name`).
pub const PIN_USER_VAR: PinBits = 32;
/// LOCK TABLES (MySQL).
pub const PIN_TABLE_LOCK: PinBits = 64;
/// Other session state (LOAD, SQL_CALC_FOUND_ROWS, replication).
pub const PIN_OTHER: PinBits = 128;
/// Every bit: what DISCARD ALL / COM_RESET_CONNECTION clears.
pub const PIN_ALL: PinBits = PinBits::MAX;

/// The reason shown for a set of pin bits (the first one).
pub fn reason(bits: PinBits) -> PinReason {
    const ORDER: [(PinBits, PinReason); 7] = [
        (PIN_LISTEN, PinReason::Listen),
        (PIN_LOCK, PinReason::AdvisoryLock),
        (PIN_TEMP, PinReason::TempTable),
        (PIN_PREPARE, PinReason::SqlPrepare),
        (PIN_HOLD, PinReason::HoldCursor),
        (PIN_USER_VAR, PinReason::UserVariable),
        (PIN_TABLE_LOCK, PinReason::TableLock),
    ];
    ORDER
        .iter()
        .find(|(b, _)| bits & b != 0)
        .map(|(_, r)| *r)
        .unwrap_or(if bits != 0 {
            PinReason::Other
        } else {
            PinReason::None
        })
}

/// What a client holds on its server.
#[derive(Debug, Clone, Copy)]
pub struct Pins {
    bits: PinBits,
    /// Bits that statements of the current transaction clear at commit.
    pending_clear: PinBits,
    session_mode: bool,
    policy: SessionStatePolicy,
}

impl Pins {
    /// No pins; `session_mode` holds the server for the whole session.
    pub fn new(session_mode: bool, policy: SessionStatePolicy) -> Pins {
        Pins {
            bits: 0,
            pending_clear: 0,
            session_mode,
            policy,
        }
    }

    /// True when the lease must outlive the transaction.
    #[inline]
    pub fn hold_lease(&self) -> bool {
        self.session_mode || self.bits != 0
    }

    /// True when any of `bits` is held.
    pub fn has(&self, bits: PinBits) -> bool {
        self.bits & bits != 0
    }

    /// True when the server carries this client's session state (it must
    /// be reset before another client gets it).
    pub fn carries_state(&self) -> bool {
        self.hold_lease()
    }

    /// Shown in SHOW CLIENTS.
    pub fn reason(&self) -> PinReason {
        if self.session_mode {
            PinReason::SessionMode
        } else {
            reason(self.bits)
        }
    }

    /// A statement creates the state in `bits`: pin, refuse or ignore it
    /// per `pool.on_session_state`. Session mode holds everything anyway.
    pub fn on_statement(&mut self, bits: PinBits) -> Result<(), Refusal> {
        if bits == 0 || self.session_mode {
            return Ok(());
        }
        match self.policy {
            SessionStatePolicy::Ignore => Ok(()),
            SessionStatePolicy::Error => Err(Refusal::SessionState {
                what: reason(bits).as_str().replace('_', " "),
            }),
            SessionStatePolicy::Pin => {
                self.bits |= bits;
                Ok(())
            }
        }
    }

    /// A statement of the current transaction clears the state in `bits`
    /// (UNLISTEN *, unlock all, DISCARD ...) once it commits.
    pub fn clear_at_commit(&mut self, bits: PinBits) {
        self.pending_clear |= bits;
    }

    /// The transaction ended; `committed` false after a rollback.
    pub fn at_boundary(&mut self, committed: bool) {
        if committed {
            self.bits &= !self.pending_clear;
        }
        self.pending_clear = 0;
    }

    /// Everything is gone from the server at once (MySQL
    /// COM_RESET_CONNECTION, which cannot be rolled back).
    pub fn clear_all(&mut self) {
        self.bits = 0;
        self.pending_clear = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_follow_the_policy_and_clear_only_at_commit() {
        let mut p = Pins::new(false, SessionStatePolicy::Pin);
        assert!(!p.hold_lease());
        p.on_statement(PIN_LOCK).unwrap();
        assert_eq!(p.reason(), PinReason::AdvisoryLock);
        p.clear_at_commit(PIN_LOCK);
        p.at_boundary(false);
        assert!(p.hold_lease(), "a rollback keeps the pin");
        p.clear_at_commit(PIN_LOCK);
        p.at_boundary(true);
        assert!(!p.hold_lease());
        let mut e = Pins::new(false, SessionStatePolicy::Error);
        assert!(e.on_statement(PIN_TEMP).is_err());
        let mut s = Pins::new(true, SessionStatePolicy::Error);
        assert!(s.on_statement(PIN_TEMP).is_ok());
        assert_eq!(s.reason(), PinReason::SessionMode);
    }
}
