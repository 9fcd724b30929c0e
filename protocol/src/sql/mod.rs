//! SQL statement fingerprints and classification.
//!
//! Where it sits: the client session hands every Query (PostgreSQL simple
//! protocol), Parse (extended protocol) and COM_QUERY / COM_STMT_PREPARE
//! (MySQL) text to a [`Normalizer`]. The resulting [`Analysis`] feeds two
//! consumers:
//!
//! - insight: [`Analysis::fingerprint`] keys the per-statement histograms, N+1
//!   detection and SHOW STATEMENTS, whose `query` column is
//!   [`Normalizer::text`];
//! - the pool: [`Analysis::effects`] says whether the statement changes
//!   session state (SET, LISTEN, advisory locks, temp tables, ...), which
//!   decides whether the lease can go back to the pool, must be pinned, or
//!   needs its SETs replayed (see [`set_commands`]).
//!
//! # Normal form
//!
//! One pass over the bytes, no parser. The text is built so that queries
//! that differ only in spacing, comments, keyword case or literal values get
//! the same text, and so that normalizing the text again gives it back
//! unchanged:
//!
//! - tokens are separated by one space, except none after `(`, `[`, `.`,
//!   `::` and none before `)`, `]`, `,`, `.`, `::` (`a.b`, `f(x)`, `x::int`,
//!   `a[1]`, `a = $1`); a comma is followed by one space; a `(` gets a space
//!   only after an operator, a comma or a reserved word (`in (`, `values (`,
//!   but `count(`, `t(a, b)`);
//! - comments are dropped (`--`, `/* */` nested in PostgreSQL, `#` in MySQL;
//!   the body of a MySQL `/*! */` comment is SQL and is kept);
//! - unquoted words are lower-cased; quoted identifiers keep case and quotes;
//! - literals (strings in every form, numbers, a sign directly before a
//!   number where it cannot be a binary operator) and bind markers (`$n`,
//!   `?`, `:name`) become placeholders: `$1`, `$2`, ... in order of
//!   appearance for PostgreSQL (so the simple and the extended protocol give
//!   the same text), `?` for MySQL. `TRUE`, `FALSE` and `NULL` stay words.
//!   PostgreSQL `?`, `?|`, `?&` are jsonb operators;
//! - a parenthesised (or `ARRAY[...]`) list of only placeholders folds to its
//!   first entry and a comment: `in ($1 /*, ... */)`, whatever its length, and
//!   the numbering after it does not depend on its length. A call's argument
//!   list (`f(1, 2)`) and a subscript are never folded;
//! - a group that repeats the shape of the group before it (`VALUES (1, 'a'),
//!   (2, 'b')`) is dropped, so 1-row and n-row inserts match;
//! - statements are separated by `; `; a trailing `;` is dropped.
//!
//! Input beyond [`MAX_INPUT`] bytes is ignored; the text keeps at most
//! [`MAX_TEXT`] bytes (cut on a character boundary) while the fingerprint
//! covers the whole normalized text. Invalid UTF-8 becomes U+FFFD.
//!
//! # Statement kinds and effects
//!
//! [`Analysis::kind`] is the kind of the first statement; for `WITH` the
//! verb after the CTEs decides (`WITH ... INSERT` is [`Kind::Insert`],
//! likewise UPDATE and DELETE; `WITH ... SELECT` is [`Kind::Select`]).
//! MySQL `REPLACE` counts as [`Kind::Insert`]; MySQL `RESET ...` (RESET
//! MASTER, QUERY CACHE) is [`Kind::Other`] and sets no effect.
//! [`Analysis::effects`] ORs the [`Effects`] of all statements; see each
//! constant for what sets it. Only the first [`MAX_INPUT`] bytes are seen.
//!
//! Cost: about 4 ns per input byte (0.8 us for a 200-byte statement), no
//! allocation once the normalizer's buffers are warm. Those buffers grow to
//! the largest normalized text seen (a few KiB for ordinary queries, up to a
//! few times [`MAX_INPUT`] for pathological input) and are never shrunk:
//! keep one normalizer per worker thread or session, not one per query.

mod classify;
mod keywords;
mod lexer;
mod normalize;
mod set;
mod shape;
#[cfg(test)]
mod tests;

use std::fmt;

/// Bytes of a query string that [`Normalizer::normalize`] scans; the rest
/// is ignored as if the string were cut there.
pub const MAX_INPUT: usize = 64 * 1024;
/// Bytes of normalized text [`Normalizer::text`] keeps (the fingerprint is
/// computed over the whole normalized text before this cut).
pub const MAX_TEXT: usize = 2 * 1024;

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
///
/// MySQL specifics: `SET` covers `SET @user_var`, `SET [SESSION|LOCAL] x`,
/// `SET @@[session.]x`, `SET NAMES`, `SET CHARACTER SET`, `SET SESSION
/// TRANSACTION` (but not `SET GLOBAL`/`PERSIST`, `SET TRANSACTION`, `SET
/// PASSWORD`); `GET_LOCK()` sets [`Effects::ADVISORY_LOCK`] and
/// `RELEASE_ALL_LOCKS()` [`Effects::ADVISORY_UNLOCK_ALL`]; `CREATE TEMPORARY
/// TABLE` sets [`Effects::TEMP_TABLE`]; `PREPARE`/`DEALLOCATE PREPARE`/`DROP
/// PREPARE` set [`Effects::PREPARE`]/[`Effects::DEALLOCATE`]; `XA ...` sets
/// [`Effects::TXN_CONTROL`]. LISTEN, UNLISTEN, LOAD, RESET and DISCARD are
/// PostgreSQL only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Effects(pub u32);

impl Effects {
    /// BEGIN/START TRANSACTION/COMMIT/END/ROLLBACK/ABORT/SAVEPOINT/RELEASE/PREPARE TRANSACTION/COMMIT PREPARED.
    pub const TXN_CONTROL: u32 = 1 << 0;
    /// `SET name ...` (not LOCAL), including `SET SESSION name`, `SET TIME ZONE`,
    /// `SET ROLE`, `SET SESSION AUTHORIZATION`, and `SET SESSION CHARACTERISTICS
    /// AS TRANSACTION` (which changes the session's transaction defaults).
    /// `SET TRANSACTION` and `SET CONSTRAINTS` last one transaction and set
    /// no bit.
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
    /// `CREATE [GLOBAL|LOCAL] TEMP|TEMPORARY TABLE` (also `VIEW`, `SEQUENCE`) without
    /// `ON COMMIT DROP`; PostgreSQL `SELECT ... INTO TEMP t`.
    pub const TEMP_TABLE: u32 = 1 << 13;
    /// `DECLARE ... WITH HOLD` (before the cursor's `FOR`).
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
    /// `xxh3_64` of the whole normalized text (before the [`MAX_TEXT`] cut).
    pub fingerprint: Fingerprint,
    /// Top-level statements in the string (0 for an empty/comment-only string).
    pub statements: u32,
    /// Kind of the first statement.
    pub kind: Kind,
    /// Effects over all statements.
    pub effects: Effects,
}

/// One-pass normalizer with reusable buffers (no allocation once warm).
///
/// See the [module documentation](self) for the normal form.
///
/// Concurrency: a normalizer is plain data with no shared state; use one per
/// thread (or session).
#[derive(Debug, Default)]
pub struct Normalizer {
    text: Vec<u8>,
    scratch: normalize::Scratch,
    shapes: shape::ShapeCache,
    /// The last [`Normalizer::analyze`] was answered from this shape.
    last_hit: Option<u64>,
}

impl Normalizer {
    /// A normalizer with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }
    /// Normalizes `sql`, leaving the text in [`Normalizer::text`].
    ///
    /// Never panics and runs in time linear in `sql.len()` (capped at
    /// [`MAX_INPUT`]), whatever the bytes.
    pub fn normalize(&mut self, sql: &[u8], dialect: Dialect) -> Analysis {
        self.last_hit = None;
        normalize::normalize(sql, dialect, &mut self.text, &mut self.scratch)
    }
    /// Like [`Normalizer::normalize`], but remembers the last few thousand
    /// results by the statement's shape: statements that differ only in
    /// their number literals (the bulk of what applications send without
    /// bind parameters) are normalized once. Gives exactly what `normalize`
    /// would, and [`Normalizer::text`] gives the same text afterwards.
    pub fn analyze(&mut self, sql: &[u8], dialect: Dialect) -> Analysis {
        let key = self.shapes.key(sql, dialect);
        if let Some(key) = key
            && let Some(a) = self.shapes.analysis(key)
        {
            self.last_hit = Some(key);
            return a;
        }
        let a = self.normalize(sql, dialect);
        if let Some(key) = key {
            let text = std::str::from_utf8(&self.text).unwrap_or("");
            self.shapes.insert(key, a, text);
        }
        a
    }
    /// Normalized text of the last call (empty before the first), at most
    /// [`MAX_TEXT`] bytes.
    pub fn text(&self) -> &str {
        if let Some(text) = self.last_hit.and_then(|k| self.shapes.text(k)) {
            return text;
        }
        match std::str::from_utf8(&self.text) {
            Ok(s) => s,
            Err(_) => {
                debug_assert!(false, "normalized text is not UTF-8");
                ""
            }
        }
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

impl SetCommand {
    /// A statement that re-applies this command on another server
    /// connection (`SET name TO value`, `RESET name`, `SET NAMES ...`, ...),
    /// quoting the name when it needs it.
    pub fn to_sql(&self, dialect: Dialect) -> String {
        match dialect {
            Dialect::Postgres => self.to_sql_pg(),
            Dialect::MySql => self.to_sql_mysql(),
        }
    }

    fn to_sql_pg(&self) -> String {
        let set = if self.local { "SET LOCAL" } else { "SET" };
        let special = match self.name.as_str() {
            "session_authorization" => Some("SESSION AUTHORIZATION"),
            "role" => Some("ROLE"),
            _ => None,
        };
        match (&self.value, special) {
            (Some(v), Some(s)) => format!("{set} {s} {v}"),
            (None, Some(s)) if !self.local => format!("RESET {s}"),
            (Some(v), _) => format!("{set} {} TO {v}", quote_name(&self.name, '"')),
            (None, _) if self.local => {
                format!("SET LOCAL {} TO DEFAULT", quote_name(&self.name, '"'))
            }
            (None, _) => format!("RESET {}", quote_name(&self.name, '"')),
        }
    }

    fn to_sql_mysql(&self) -> String {
        let v = self.value.as_deref();
        let bare = |v: &str| {
            v.trim_matches(|c| c == '\'' || c == '"')
                .to_ascii_uppercase()
        };
        match self.name.as_str() {
            "names" => format!("SET NAMES {}", v.unwrap_or("DEFAULT")),
            "character set" => format!("SET CHARACTER SET {}", v.unwrap_or("DEFAULT")),
            "role" => format!("SET ROLE {}", v.unwrap_or("DEFAULT")),
            // The TRANSACTION syntax works on every MySQL and MariaDB version;
            // the variable names differ between them.
            "transaction_isolation" | "tx_isolation"
                if v.is_some_and(|v| {
                    matches!(
                        bare(v).as_str(),
                        "READ-UNCOMMITTED" | "READ-COMMITTED" | "REPEATABLE-READ" | "SERIALIZABLE"
                    )
                }) =>
            {
                let level = bare(v.unwrap_or_default()).replace('-', " ");
                format!("SET SESSION TRANSACTION ISOLATION LEVEL {level}")
            }
            "transaction_read_only" | "tx_read_only"
                if v.is_some_and(|v| matches!(bare(v).as_str(), "ON" | "OFF" | "1" | "0")) =>
            {
                let on = matches!(bare(v.unwrap_or_default()).as_str(), "ON" | "1");
                format!(
                    "SET SESSION TRANSACTION READ {}",
                    if on { "ONLY" } else { "WRITE" }
                )
            }
            name if name.starts_with('@') => format!("SET {name} = {}", v.unwrap_or("NULL")),
            name => format!(
                "SET SESSION {} = {}",
                quote_name(name, '`'),
                v.unwrap_or("DEFAULT")
            ),
        }
    }
}

/// `name` as written when it is a plain lower-case (dotted) identifier,
/// else quoted with `q`.
fn quote_name(name: &str, q: char) -> String {
    let plain = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && name.split('.').all(|part| {
            !part.is_empty()
                && !part.as_bytes()[0].is_ascii_digit()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'$')
        });
    if plain {
        name.to_owned()
    } else {
        let escaped = name.replace(q, &format!("{q}{q}"));
        format!("{q}{escaped}{q}")
    }
}

/// Extracts every SET/RESET (not RESET ALL) command in `sql`, in order.
///
/// `value` is the SQL text after `=`/`TO` (MySQL: up to the next top-level
/// comma) as written, trimmed; `None` for `DEFAULT`, `RESET`, `SET TIME ZONE
/// LOCAL` and `SET ROLE NONE`. Special syntax is reported under the
/// parameter it sets: `SET TIME ZONE x` → `timezone`, `SET SCHEMA x` →
/// `search_path`, PostgreSQL `SET NAMES x` → `client_encoding`, `SET ROLE x`
/// → `role`, `SET SESSION AUTHORIZATION x` → `session_authorization`, `SET
/// SESSION CHARACTERISTICS AS TRANSACTION ...` →
/// `default_transaction_isolation` (`'read committed'`),
/// `default_transaction_read_only`, `default_transaction_deferrable` (`on`
/// / `off`). MySQL: `@user_var` keeps its `@`; `@@session.x`, `@@x` and
/// `SESSION x` give `x`; `SET NAMES` gives `names` and `SET CHARACTER SET`
/// gives `character set` (replay them with [`SetCommand::to_sql`]); `SET
/// SESSION TRANSACTION ...` gives `transaction_isolation`
/// (`'READ-COMMITTED'`) and `transaction_read_only` (`ON`/`OFF`). MySQL
/// `SET LOCAL` is the session scope there, so `local` is always false.
/// Statements that change nothing lasting (`SET TRANSACTION`, `SET GLOBAL`,
/// ...) give nothing.
///
/// Allocates; meant for the rare statements whose [`Analysis::effects`] has
/// [`Effects::SET`], [`Effects::SET_LOCAL`] or [`Effects::RESET`]. The input
/// is not capped.
pub fn set_commands(sql: &[u8], dialect: Dialect) -> Vec<SetCommand> {
    set::set_commands(sql, dialect)
}

/// A cheap pre-check for [`Effects`] that matter to a pooler: false when
/// `sql` cannot contain SET/RESET, DISCARD, LISTEN/UNLISTEN, advisory lock
/// calls, PREPARE/DEALLOCATE, temporary objects, WITH HOLD cursors or LOAD
/// (it looks for the words, ignoring case and ignoring whether they sit in
/// literals or comments, so it may say true needlessly but never false
/// wrongly). Lets a proxy skip [`Normalizer::normalize`] when it does not
/// need fingerprints.
pub fn may_have_effects(sql: &[u8]) -> bool {
    let sql = &sql[..sql.len().min(MAX_INPUT)];
    (0..sql.len()).any(|i| EFFECT_START[sql[i] as usize] && effect_word_at(&sql[i..]))
}

/// Bytes that can start a word [`may_have_effects`] looks for (either case).
static EFFECT_START: [bool; 256] = {
    let mut t = [false; 256];
    let starts = b"sdlapth";
    let mut k = 0;
    while k < starts.len() {
        t[starts[k] as usize] = true;
        t[starts[k].to_ascii_uppercase() as usize] = true;
        k += 1;
    }
    t
};

/// Whether `rest` starts with one of [`may_have_effects`]'s words. The
/// first two letters pick the word, so most bytes cost two compares.
#[inline]
fn effect_word_at(rest: &[u8]) -> bool {
    let lower = |k: usize| rest.get(k).map_or(0, |b| b | 0x20);
    let is = |w: &[u8]| {
        rest.len() >= w.len() && rest[..w.len()].iter().zip(w).all(|(a, b)| a | 0x20 == *b)
    };
    match (lower(0), lower(1)) {
        (b's', b'e') => is(b"set"),
        (b'd', b'i') => is(b"discard"),
        (b'd', b'e') => is(b"dealloc"),
        (b'l', b'i') => is(b"listen"),
        (b'l', b'o') => is(b"load") || is(b"lock"),
        (b'a', b'd') => is(b"advisory"),
        (b'p', b'r') => is(b"prepare"),
        (b't', b'e') => is(b"temp"),
        (b'h', b'o') => is(b"hold"),
        _ => false,
    }
}

#[cfg(test)]
mod prefilter_tests {
    use super::*;

    #[test]
    fn prefilter_never_misses_an_effect() {
        let cases: &[&str] = &[
            "SET search_path TO a",
            "reset all",
            "DISCARD ALL",
            "LISTEN x",
            "unlisten *",
            "select pg_advisory_lock(1)",
            "PREPARE p AS SELECT 1",
            "DEALLOCATE p",
            "create temp table t (a int)",
            "CREATE TEMPORARY TABLE t (a int)",
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            "LOAD 'auto_explain'",
            "SELECT 1; SET x = 1",
        ];
        let mut n = Normalizer::new();
        for c in cases {
            let a = n.normalize(c.as_bytes(), Dialect::Postgres);
            assert!(a.effects.0 != 0, "{c} has effects");
            assert!(may_have_effects(c.as_bytes()), "{c}");
        }
        assert!(!may_have_effects(
            b"SELECT abalance FROM pgbench_accounts WHERE aid = 42"
        ));
        // Every word, in any case and at any place, is found.
        for w in [
            "set", "discard", "dealloc", "listen", "load", "lock", "advisory", "prepare", "temp",
            "hold",
        ] {
            for text in [
                w.to_owned(),
                w.to_uppercase(),
                format!("select x_{w}1 from t"),
            ] {
                assert!(may_have_effects(text.as_bytes()), "{text}");
            }
            assert!(
                !may_have_effects(&w.as_bytes()[..w.len() - 1]),
                "{w} cut short"
            );
        }
        // A false positive is allowed (it only costs a normalization).
        assert!(may_have_effects(
            b"UPDATE pgbench_branches SET bbalance = 1"
        ));
    }
}
