//! Statement classification: kind and session-state effects of one statement.
//!
//! The normalizer feeds every token of a statement to a [`Stmt`] as it goes
//! (words as lower-case bytes, other tokens as a [`Kw`]). A `Stmt` keeps the
//! first [`LEAD`] tokens, which decide almost everything, plus a few cheap
//! scans that only some statements switch on: the main verb of a `WITH`, `INTO
//! TEMP` in a query, `WITH HOLD` in a `DECLARE`, `ON COMMIT DROP` in a
//! `CREATE`. SET statements are finished by [`super::set`], which the
//! normalizer runs on their tokens.

use super::keywords::{Kw, kw};
use super::{Effects, Kind};

/// How many leading tokens decide a statement's kind.
pub(crate) const LEAD: usize = 6;

/// Which extra scan runs over a statement's later words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Scan {
    #[default]
    None,
    /// SELECT / WITH / VALUES / TABLE / `(`: the WITH main verb, `INTO TEMP`.
    Query,
    /// DECLARE: `WITH HOLD` before `FOR`.
    Declare,
    /// CREATE: `ON COMMIT DROP`.
    Create,
}

/// What is known so far about the statement being normalized.
#[derive(Debug, Default)]
pub(crate) struct Stmt {
    lead: [Kw; LEAD],
    nlead: usize,
    scan: Scan,
    /// Effect bits found by the scans and by function calls.
    fx: u32,
    with_main: Option<Kind>,
    after_into: bool,
    after_with: bool,
    /// Progress through `ON COMMIT DROP` (0..=2).
    on_commit: u8,
    on_commit_drop: bool,
}

impl Stmt {
    /// True while the leading tokens are still being collected, or a scan
    /// needs to see words: only then is [`Stmt::word`] worth calling.
    #[inline]
    pub(crate) fn wants_words(&self) -> bool {
        self.nlead < LEAD || self.scan != Scan::None
    }

    fn push_lead(&mut self, k: Kw) {
        if self.nlead < LEAD {
            self.lead[self.nlead] = k;
            self.nlead += 1;
            if self.nlead == 1 {
                self.scan = match k {
                    Kw::Select | Kw::With | Kw::Values | Kw::Table | Kw::LParen => Scan::Query,
                    Kw::Declare => Scan::Declare,
                    Kw::Create => Scan::Create,
                    _ => Scan::None,
                };
            }
        }
    }

    /// A word token (lower-case), `depth0` when outside every parenthesis.
    #[inline]
    pub(crate) fn word(&mut self, w: &[u8], depth0: bool, pg: bool) {
        if self.nlead < LEAD {
            self.push_lead(kw(w));
        }
        match self.scan {
            Scan::None => {}
            // Only words of 4 to 6 bytes matter here (`into`, `temp`, `local`,
            // `global`, `select`, `insert`, ...) unless after INTO.
            Scan::Query if !self.after_into && !(4..=6).contains(&w.len()) => {}
            Scan::Query => {
                if depth0 && self.with_main.is_none() && self.lead[0] == Kw::With {
                    self.with_main = match w {
                        b"select" | b"values" | b"table" => Some(Kind::Select),
                        b"insert" => Some(Kind::Insert),
                        b"update" => Some(Kind::Update),
                        b"delete" => Some(Kind::Delete),
                        _ => None,
                    };
                }
                if pg {
                    // SELECT ... INTO [LOCAL|GLOBAL] TEMP[ORARY] [TABLE] t
                    if self.after_into {
                        match w {
                            b"temp" | b"temporary" => {
                                self.fx |= Effects::TEMP_TABLE;
                                self.after_into = false;
                            }
                            b"local" | b"global" => {}
                            _ => self.after_into = false,
                        }
                    } else if w.len() == 4 {
                        self.after_into = w == b"into";
                    }
                }
            }
            Scan::Declare => {
                if depth0 && w == b"for" {
                    self.scan = Scan::None;
                } else {
                    if self.after_with && w == b"hold" {
                        self.fx |= Effects::WITH_HOLD;
                    }
                    self.after_with = w == b"with";
                }
            }
            Scan::Create => {
                self.on_commit = match (self.on_commit, w) {
                    (_, b"on") => 1,
                    (1, b"commit") => 2,
                    (2, b"drop") => {
                        self.on_commit_drop = true;
                        0
                    }
                    _ => 0,
                };
            }
        }
    }

    /// A non-word token.
    #[inline]
    pub(crate) fn token(&mut self, k: Kw) {
        self.push_lead(k);
        self.after_into = false;
        self.after_with = false;
        self.on_commit = 0;
    }

    /// A function call: the word `w` directly followed by `(`.
    pub(crate) fn call(&mut self, w: &[u8], pg: bool) {
        if pg {
            if w.len() >= 16 && w.starts_with(b"pg_") {
                match w {
                    b"pg_advisory_lock"
                    | b"pg_advisory_lock_shared"
                    | b"pg_try_advisory_lock"
                    | b"pg_try_advisory_lock_shared" => self.fx |= Effects::ADVISORY_LOCK,
                    b"pg_advisory_unlock_all" => self.fx |= Effects::ADVISORY_UNLOCK_ALL,
                    _ => {}
                }
            }
        } else {
            // MySQL's session-level named locks.
            match w {
                b"get_lock" => self.fx |= Effects::ADVISORY_LOCK,
                b"release_all_locks" => self.fx |= Effects::ADVISORY_UNLOCK_ALL,
                _ => {}
            }
        }
    }

    /// Kind and effects of the finished statement. SET effects are not
    /// included: the caller adds them from [`super::set`].
    pub(crate) fn finish(&self, pg: bool) -> (Kind, u32) {
        use Kw::*;
        let l = &self.lead;
        let at = |i: usize| l.get(i).copied().unwrap_or(Other);
        let txn = Effects::TXN_CONTROL;
        let (kind, fx) = match l[0] {
            Select | Values | Table | LParen => (Kind::Select, 0),
            With => (self.with_main.unwrap_or(Kind::Select), 0),
            Insert => (Kind::Insert, 0),
            Replace if !pg => (Kind::Insert, 0),
            Update => (Kind::Update, 0),
            Delete => (Kind::Delete, 0),
            Begin => (Kind::Begin, txn),
            Start if at(1) == Transaction => (Kind::Begin, txn),
            Commit | Rollback if at(1) == Prepared => (Kind::Other, txn),
            Commit | End => (Kind::Commit, txn),
            Rollback => {
                let to = at(1) == To || (matches!(at(1), Work | Transaction) && at(2) == To);
                (if to { Kind::Other } else { Kind::Rollback }, txn)
            }
            Abort => (Kind::Rollback, txn),
            Savepoint | Release => (Kind::Other, txn),
            Xa if !pg => (Kind::Other, txn),
            Prepare if at(1) == Transaction => (Kind::Other, txn),
            Prepare => (Kind::Other, Effects::PREPARE),
            Deallocate => {
                let all = at(1) == All || (at(1) == Prepare && at(2) == All);
                let fx = if all {
                    Effects::DEALLOCATE_ALL
                } else {
                    Effects::DEALLOCATE
                };
                (Kind::Other, fx)
            }
            Drop if !pg && at(1) == Prepare => (Kind::Other, Effects::DEALLOCATE),
            Set => (Kind::Set, 0),
            Reset if pg => {
                let fx = if at(1) == All {
                    Effects::RESET_ALL
                } else {
                    Effects::RESET
                };
                (Kind::Set, fx)
            }
            Show => (Kind::Show, 0),
            Discard => match at(1) {
                All => (Kind::Other, Effects::DISCARD_ALL),
                Temp | Temporary => (Kind::Other, Effects::DISCARD_TEMP),
                _ => (Kind::Other, 0),
            },
            Listen if pg => (Kind::Other, Effects::LISTEN),
            Unlisten if pg => {
                let fx = if at(1) == Star {
                    Effects::UNLISTEN_ALL
                } else {
                    Effects::UNLISTEN
                };
                (Kind::Other, fx)
            }
            Load if pg => (Kind::Other, Effects::LOAD),
            Create if self.temp_object() && !self.on_commit_drop => {
                (Kind::Other, Effects::TEMP_TABLE)
            }
            _ => (Kind::Other, 0),
        };
        (kind, fx | self.fx)
    }

    /// `CREATE [OR REPLACE] [GLOBAL|LOCAL] TEMP|TEMPORARY [RECURSIVE]
    /// TABLE|VIEW|SEQUENCE`.
    fn temp_object(&self) -> bool {
        let at = |i: usize| self.lead.get(i).copied().unwrap_or(Kw::Other);
        let mut i = 1;
        if at(1) == Kw::Or && at(2) == Kw::Replace {
            i = 3;
        }
        if matches!(at(i), Kw::Global | Kw::Local) {
            i += 1;
        }
        if !matches!(at(i), Kw::Temp | Kw::Temporary) {
            return false;
        }
        i += 1;
        if at(i) == Kw::Recursive {
            i += 1;
        }
        matches!(at(i), Kw::Table | Kw::View | Kw::Sequence)
    }
}
