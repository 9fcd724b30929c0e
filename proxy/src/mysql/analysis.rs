//! What a COM_QUERY text means to sqlmux: its fingerprint for insight, and
//! the session state it creates that cannot follow the client (pin bits).

use sqlmux_protocol::sql::{Dialect, Effects, Fingerprint, Kind, Normalizer};

use super::session_state::{pin_bits, unlocks_tables};
use crate::insight::{Insight, RecentlyNoted};
use crate::session::pins::PinBits;

thread_local! {
    /// One normalizer per worker thread, shared by its sessions.
    static NORMALIZER: std::cell::RefCell<Normalizer> = std::cell::RefCell::new(Normalizer::new());
}

/// The analysis of one query text.
#[derive(Debug, Clone, Copy, Default)]
pub struct Statement {
    /// Fingerprint of the normalized text.
    pub fingerprint: Fingerprint,
    /// Transaction control (BEGIN, COMMIT, ROLLBACK, ...).
    pub txn_control: bool,
    /// Kind of the first statement.
    pub kind: Kind,
    /// Session state it creates that pins the server.
    pub pins: PinBits,
    /// `UNLOCK TABLES`: the table lock pin ends.
    pub unlocks_tables: bool,
}

/// Analyzes `sql`. With `insight`, the normalized text is handed to it
/// unless its fingerprint is in `noted` (what this session already
/// reported, which keeps the shared text table off the hot path).
pub fn analyze(sql: &[u8], insight: Option<&Insight>, noted: &RecentlyNoted) -> Statement {
    NORMALIZER.with(|n| {
        let mut n = n.borrow_mut();
        let a = n.analyze(sql, Dialect::MySql);
        let text = n.text();
        if let Some(insight) = insight
            && !noted.contains(a.fingerprint)
        {
            insight.note_text(a.fingerprint, text);
        }
        Statement {
            fingerprint: a.fingerprint,
            txn_control: a.effects.any(Effects::TXN_CONTROL),
            kind: a.kind,
            pins: pin_bits(a.effects, text),
            unlocks_tables: unlocks_tables(text),
        }
    })
}
