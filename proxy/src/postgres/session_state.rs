//! Session state a client creates with SQL, PostgreSQL's half: statements
//! are analysed once (fingerprint for insight, effects for the rest);
//! settings changed with SET/RESET outside a transaction follow the client
//! to its next server once the transaction commits; RESET ALL and DISCARD
//! ALL return to the client's startup values; state that cannot follow it
//! (LISTEN, advisory locks, temp tables, ...) becomes a pin in the session
//! core ([`crate::session::pins`]).

use sqlmux_protocol::postgres::message;
use sqlmux_protocol::sql::{self, Analysis, Dialect, Effects, Normalizer};

use super::session::Session;
use crate::insight::{Insight, RecentlyNoted};
use crate::postgres::params::{self, ClientParams};
use crate::postgres::server::PgServer;
use crate::postgres::tracker::{Injected, Req};
use crate::session::Refusal;
use crate::session::pins::{
    PIN_ALL, PIN_HOLD, PIN_LISTEN, PIN_LOCK, PIN_OTHER, PIN_PREPARE, PIN_TEMP, PinBits,
};

thread_local! {
    /// One normalizer per worker thread: its buffers are reused by every
    /// session on the thread instead of living in each session.
    static NORMALIZER: std::cell::RefCell<Normalizer> = std::cell::RefCell::new(Normalizer::new());
}

/// A pending change to unreported session settings, applied when the
/// transaction that made it commits.
#[derive(Debug, Clone)]
pub(crate) enum PendingSet {
    Set {
        name: String,
        statement: String,
    },
    Reset {
        name: String,
    },
    /// RESET ALL / DISCARD ALL; `restored` when sqlmux re-applied the
    /// client's startup values right after it.
    ResetAll {
        restored: bool,
    },
}

/// Session state in `a` that cannot follow the client to another server.
fn pin_bits(a: &Analysis) -> PinBits {
    const MAP: [(u32, PinBits); 6] = [
        (Effects::LISTEN, PIN_LISTEN),
        (Effects::ADVISORY_LOCK, PIN_LOCK),
        (Effects::TEMP_TABLE, PIN_TEMP),
        (Effects::PREPARE, PIN_PREPARE),
        (Effects::WITH_HOLD, PIN_HOLD),
        (Effects::LOAD, PIN_OTHER),
    ];
    MAP.iter()
        .filter(|(e, _)| a.effects.any(*e))
        .fold(0, |bits, (_, b)| bits | b)
}

/// Pins that statements in `a` release once they commit.
fn unpin_bits(a: &Analysis) -> PinBits {
    if a.effects.any(Effects::DISCARD_ALL) {
        return PIN_ALL;
    }
    const MAP: [(u32, PinBits); 4] = [
        (Effects::UNLISTEN_ALL, PIN_LISTEN),
        (Effects::ADVISORY_UNLOCK_ALL, PIN_LOCK),
        (Effects::DISCARD_TEMP, PIN_TEMP),
        (Effects::DEALLOCATE_ALL, PIN_PREPARE),
    ];
    MAP.iter()
        .filter(|(e, _)| a.effects.any(*e))
        .fold(0, |bits, (_, b)| bits | b)
}

/// What a session remembers of the statement texts it sent recently.
/// Allocated at the first statement: a client that only logs in and waits
/// does not pay for it, and the session stays small enough for the
/// allocator's fast path.
#[derive(Debug)]
pub(crate) struct Memo {
    /// Recent analyses by hash of the raw statement text.
    analyses: [(u64, Analysis); 4],
    analyses_next: usize,
    /// Fingerprints whose text this session noted recently.
    noted: RecentlyNoted,
}

impl Default for Memo {
    fn default() -> Memo {
        Memo {
            analyses: [(u64::MAX, Analysis::default()); 4],
            analyses_next: 0,
            noted: RecentlyNoted::default(),
        }
    }
}

impl Memo {
    fn get(&self, key: u64) -> Option<Analysis> {
        self.analyses
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, a)| *a)
    }

    fn insert(&mut self, key: u64, a: Analysis) {
        self.analyses[self.analyses_next % self.analyses.len()] = (key, a);
        self.analyses_next = self.analyses_next.wrapping_add(1);
    }
}

/// Normalizes `sql` and, when `note`, tells insight its text. Texts are
/// shared across threads; the session's memory of what it already noted
/// keeps the hot path off that lock.
fn normalize(insight: &Insight, memo: &mut Memo, sql: &[u8], note: bool) -> Analysis {
    NORMALIZER.with(|n| {
        let mut n = n.borrow_mut();
        let a = n.analyze(sql, Dialect::Postgres);
        if note && memo.noted.note(a.fingerprint) {
            insight.note_text(a.fingerprint, n.text());
        }
        a
    })
}

impl Session {
    /// Normalizes a statement (for its fingerprint and effects).
    pub(crate) fn analyze(&mut self, sql: &[u8]) -> Analysis {
        // Drivers send the same statement text again and again (every
        // extended-protocol Parse, every repeated query): remember the last
        // few analyses by a hash of the raw bytes. Insight on or off seeds
        // the hash: an analysis made without a fingerprint is not reused
        // once insight is turned on.
        let note = self.core.insight_on;
        let key = xxhash_rust::xxh3::xxh3_64_with_seed(sql, u64::from(note));
        let memo = self.memo.get_or_insert_with(Box::default);
        if let Some(a) = memo.get(key) {
            return a;
        }
        let a = if !note && !sql::may_have_effects(sql) {
            // No fingerprint wanted and nothing that changes session state.
            Analysis {
                statements: 1,
                ..Analysis::default()
            }
        } else {
            normalize(&self.core.shared.insight, memo, sql, note)
        };
        memo.insert(key, a);
        a
    }

    /// Applies `pool.on_session_state` to state the statement would create.
    pub(crate) fn apply_session_state(&mut self, a: &Analysis) -> Result<(), Refusal> {
        self.core.pins.on_statement(pin_bits(a))?;
        self.core.info.set_pin(self.core.pins.reason());
        Ok(())
    }

    /// Session-state bookkeeping for a statement about to be forwarded.
    pub(crate) fn after_analysis(
        &mut self,
        srv: &PgServer,
        a: &Analysis,
        sql: &[u8],
        executes_now: bool,
    ) {
        if executes_now {
            let now = self.core.now;
            self.core.observe(
                a.fingerprint,
                super::client_messages::is_txn_control(a),
                now,
            );
        }
        let e = a.effects;
        if e.0 == 0 {
            return;
        }
        let lone = executes_now && a.statements == 1;
        if e.any(Effects::SET | Effects::RESET) {
            self.note_set_commands(srv, sql, lone);
        }
        if e.any(Effects::RESET_ALL | Effects::DISCARD_ALL) {
            // A lone RESET ALL / DISCARD ALL in a Query: the startup values
            // are re-applied right behind it (see `send_restore`).
            if lone {
                self.restore_after = self.params.restore_sql(None);
            }
            let restored = self.restore_after.is_some();
            self.pending_sets.push(PendingSet::ResetAll { restored });
        }
        let clears = unpin_bits(a);
        if clears != 0 {
            self.core.pins.clear_at_commit(clears);
        }
    }

    /// SET / RESET of settings the server does not report: replayed on the
    /// client's next servers once committed. A lone `RESET name` returns to
    /// the client's startup value.
    fn note_set_commands(&mut self, srv: &PgServer, sql: &[u8], lone: bool) {
        for cmd in sql::set_commands(sql, Dialect::Postgres) {
            if cmd.value.is_none() && lone && !cmd.local {
                self.restore_after = self.params.restore_sql(Some(&cmd.name));
            }
            if cmd.local || srv.params.current.get_ignore_case(&cmd.name).is_some() {
                continue;
            }
            match cmd.value {
                Some(v) => self.pending_sets.push(PendingSet::Set {
                    statement: format!("SET {} TO {}", params::quote_ident(&cmd.name), v),
                    name: cmd.name,
                }),
                None => self.pending_sets.push(PendingSet::Reset { name: cmd.name }),
            }
        }
    }

    /// Sends the restore of startup values noted by `after_analysis`, right
    /// behind the client's statement.
    pub(crate) fn send_restore(&mut self, srv: &mut PgServer) {
        if let Some(sql) = self.restore_after.take() {
            message::query(&mut self.sout, &sql);
            srv.q.push(Req::Injected(Injected::Restore));
        }
    }
}

/// Applies committed setting changes to the client's wanted state and to
/// the server that ran them.
pub(crate) fn apply_pending(
    params: &mut ClientParams,
    pending: Vec<PendingSet>,
    mut server: Option<&mut PgServer>,
) {
    for p in pending {
        match p {
            PendingSet::Set { name, statement } => {
                params.set_setting(&name, &statement);
                if let Some(s) = server.as_deref_mut() {
                    s.params.settings.set(&name, &statement);
                    s.params.version += 1;
                }
            }
            PendingSet::Reset { name } => {
                params.reset_setting(&name);
                if let Some(s) = server.as_deref_mut()
                    && s.params.settings.remove_ignore_case(&name)
                {
                    s.params.version += 1;
                }
            }
            PendingSet::ResetAll { restored } => {
                params.reset_all();
                if let Some(s) = server.as_deref_mut() {
                    s.params.settings = if restored {
                        params.settings.clone()
                    } else {
                        Default::default()
                    };
                    s.params.version += 1;
                }
            }
        }
    }
}
