//! SET and RESET: what a statement does to session parameters.
//!
//! Two callers share [`parse_set`]: the normalizer (on the hot path, without
//! allocating) only needs to know whether a SET is session-wide or
//! transaction-local, and [`super::set_commands`] (rare path) turns the items
//! of [`parse_set`] and [`parse_reset`] into owned [`SetCommand`]s the pool
//! replays when a client's next lease lands on a different server.
//!
//! Forms that change nothing lasting yield no item: PostgreSQL `SET
//! TRANSACTION`, `SET CONSTRAINTS`; MySQL `SET TRANSACTION` (next transaction
//! only), `SET GLOBAL`/`PERSIST`, `SET PASSWORD`, `SET DEFAULT ROLE`, MariaDB
//! `SET STATEMENT ... FOR`. Forms that do change session state under another
//! spelling are translated to the parameter they set: `SET TIME ZONE` →
//! `timezone`, PostgreSQL `SET SCHEMA` → `search_path`, `SET NAMES` →
//! `client_encoding`, `SET SESSION CHARACTERISTICS AS TRANSACTION ...` →
//! `default_transaction_isolation` / `_read_only` / `_deferrable`, MySQL `SET
//! SESSION TRANSACTION ...` → `transaction_isolation` /
//! `transaction_read_only`.

use super::lexer::{Lexer, Tok, TokKind};
use super::{Dialect, SetCommand};

/// The name of a parameter, as tokens of the input or a fixed string.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Name<'a> {
    /// A dotted name: words, quoted identifiers and dots.
    Toks(&'a [Tok]),
    /// A name implied by the syntax (`SET TIME ZONE` → `timezone`).
    Fixed(&'static str),
}

/// The value a SET gives.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value {
    /// `DEFAULT` (or `RESET`): back to the server's default.
    Default,
    /// The input bytes `start..end`, verbatim.
    Span(usize, usize),
    /// A value implied by the syntax (`READ ONLY` → `on`).
    Fixed(&'static str),
}

/// One parameter change found in a SET or RESET statement.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Item<'a> {
    pub name: Name<'a>,
    pub value: Value,
    /// PostgreSQL `SET LOCAL`: ends with the transaction.
    pub local: bool,
}

fn text<'s>(src: &'s [u8], t: &Tok) -> &'s [u8] {
    &src[t.start..t.end]
}

fn is_word(src: &[u8], t: Option<&Tok>, w: &str) -> bool {
    t.is_some_and(|t| t.kind == TokKind::Word && text(src, t).eq_ignore_ascii_case(w.as_bytes()))
}

fn is_op(src: &[u8], t: Option<&Tok>, op: &str) -> bool {
    t.is_some_and(|t| t.kind == TokKind::Op && text(src, t) == op.as_bytes())
}

/// `=`, `:=` (MySQL) or `TO` (PostgreSQL) at `t`.
fn is_assign(src: &[u8], t: Option<&Tok>, mysql: bool) -> bool {
    is_op(src, t, "=")
        || if mysql {
            is_op(src, t, ":=")
        } else {
            is_word(src, t, "to")
        }
}

/// Value tokens to a [`Value`]; `None` when there are none (malformed SET).
/// A lone `DEFAULT` (or one of `also_default`) means the server default.
fn value(src: &[u8], toks: &[Tok], also_default: &[&str]) -> Option<Value> {
    let (first, last) = (toks.first()?, toks.last()?);
    if toks.len() == 1
        && (is_word(src, Some(first), "default")
            || also_default.iter().any(|w| is_word(src, Some(first), w)))
    {
        return Some(Value::Default);
    }
    Some(Value::Span(first.start, last.end))
}

/// Length of a dotted name (`a`, `a.b`, `"A".b`) at the start of `toks`;
/// 0 when there is none.
fn name_len(toks: &[Tok]) -> usize {
    let part = |i: usize| {
        toks.get(i)
            .is_some_and(|t| matches!(t.kind, TokKind::Word | TokKind::QIdent))
    };
    if !part(0) {
        return 0;
    }
    let mut n = 1;
    while toks.get(n).is_some_and(|t| t.kind == TokKind::Dot) && part(n + 1) {
        n += 2;
    }
    n
}

/// An item with a name fixed by the syntax and the value in `toks[skip..]`.
fn fixed<'a>(
    name: &'static str,
    toks: &[Tok],
    skip: usize,
    src: &[u8],
    also_default: &[&str],
    local: bool,
) -> Option<Item<'a>> {
    let value = value(src, &toks[skip.min(toks.len())..], also_default)?;
    Some(Item {
        name: Name::Fixed(name),
        value,
        local,
    })
}

/// Parses the tokens after `SET` (without the final `;`), calling `emit`
/// for each parameter the statement changes for the session or the
/// transaction.
pub(crate) fn parse_set<'a>(
    toks: &'a [Tok],
    src: &[u8],
    mysql: bool,
    emit: &mut impl FnMut(Item<'a>),
) {
    if mysql {
        parse_set_mysql(toks, src, emit)
    } else {
        parse_set_pg(toks, src, emit)
    }
}

fn parse_set_pg<'a>(toks: &'a [Tok], src: &[u8], emit: &mut impl FnMut(Item<'a>)) {
    let at = |i: usize| toks.get(i);
    let mut i = 0;
    let mut local = false;
    if is_word(src, at(0), "local") && !is_assign(src, at(1), false) {
        local = true;
        i = 1;
    } else if is_word(src, at(0), "session") && !is_assign(src, at(1), false) {
        if is_word(src, at(1), "characteristics") {
            if is_word(src, at(2), "as") && is_word(src, at(3), "transaction") {
                transaction_modes(&toks[4..], src, false, emit);
            }
            return;
        }
        if !is_word(src, at(1), "authorization") {
            i = 1;
        }
    }
    let rest = &toks[i..];
    let at = |i: usize| rest.get(i);
    if !is_assign(src, at(1), false) {
        if is_word(src, at(0), "transaction") || is_word(src, at(0), "constraints") {
            return;
        }
        let special = if is_word(src, at(0), "time") && is_word(src, at(1), "zone") {
            Some(("timezone", 2, &["local"][..]))
        } else if is_word(src, at(0), "session") && is_word(src, at(1), "authorization") {
            Some(("session_authorization", 2, &[][..]))
        } else if is_word(src, at(0), "xml") && is_word(src, at(1), "option") {
            Some(("xmloption", 2, &[][..]))
        } else if is_word(src, at(0), "schema") {
            Some(("search_path", 1, &[][..]))
        } else if is_word(src, at(0), "names") {
            Some(("client_encoding", 1, &[][..]))
        } else if is_word(src, at(0), "role") {
            Some(("role", 1, &["none"][..]))
        } else {
            None
        };
        if let Some((name, skip, also_default)) = special {
            if let Some(item) = fixed(name, rest, skip, src, also_default, local) {
                emit(item);
            }
            return;
        }
    }
    let n = name_len(rest);
    if n == 0 || !is_assign(src, at(n), false) {
        return;
    }
    if let Some(value) = value(src, &rest[n + 1..], &[]) {
        emit(Item {
            name: Name::Toks(&rest[..n]),
            value,
            local,
        });
    }
}

fn parse_set_mysql<'a>(toks: &'a [Tok], src: &[u8], emit: &mut impl FnMut(Item<'a>)) {
    let at = |i: usize| toks.get(i);
    if is_word(src, at(0), "password") {
        return;
    }
    if !is_assign(src, at(1), true) {
        let special = if is_word(src, at(0), "names") {
            Some(("names", 1))
        } else if is_word(src, at(0), "charset") {
            Some(("character set", 1))
        } else if is_word(src, at(0), "character") && is_word(src, at(1), "set") {
            Some(("character set", 2))
        } else if is_word(src, at(0), "role") {
            Some(("role", 1))
        } else {
            None
        };
        if let Some((name, skip)) = special {
            if let Some(item) = fixed(name, toks, skip, src, &[], false) {
                emit(item);
            }
            return;
        }
        if (is_word(src, at(0), "session") || is_word(src, at(0), "local"))
            && is_word(src, at(1), "transaction")
        {
            return transaction_modes(&toks[2..], src, true, emit);
        }
        let ignored = ["transaction", "statement", "resource"];
        if ignored.iter().any(|w| is_word(src, at(0), w))
            || (is_word(src, at(0), "default") && is_word(src, at(1), "role"))
            || (is_global(src, at(0)) && is_word(src, at(1), "transaction"))
        {
            return;
        }
    }
    // A list of assignments separated by top-level commas.
    let mut start = 0;
    while start < toks.len() {
        let mut depth = 0u32;
        let mut end = start;
        while end < toks.len() {
            match toks[end].kind {
                TokKind::LParen | TokKind::LBracket => depth += 1,
                TokKind::RParen | TokKind::RBracket => depth = depth.saturating_sub(1),
                TokKind::Comma if depth == 0 => break,
                _ => {}
            }
            end += 1;
        }
        mysql_assignment(&toks[start..end], src, emit);
        start = end + 1;
    }
}

fn is_global(src: &[u8], t: Option<&Tok>) -> bool {
    ["global", "persist", "persist_only"]
        .iter()
        .any(|w| is_word(src, t, w))
}

/// `[GLOBAL|SESSION|LOCAL|PERSIST] name = expr`, `@@[scope.]name = expr`,
/// `@user_var = expr`.
fn mysql_assignment<'a>(item: &'a [Tok], src: &[u8], emit: &mut impl FnMut(Item<'a>)) {
    let at = |i: usize| item.get(i);
    let mut i = 0;
    if !is_assign(src, at(1), true) {
        if is_global(src, at(0)) {
            return;
        }
        if is_word(src, at(0), "session") || is_word(src, at(0), "local") {
            i = 1;
        }
    }
    if let Some(t) = at(i)
        && t.kind == TokKind::Word
        && item.get(i + 1).is_some_and(|d| d.kind == TokKind::Dot)
    {
        let w = text(src, t);
        if ["@@global", "@@persist", "@@persist_only"]
            .iter()
            .any(|s| w.eq_ignore_ascii_case(s.as_bytes()))
        {
            return;
        }
        if w.eq_ignore_ascii_case(b"@@session") || w.eq_ignore_ascii_case(b"@@local") {
            i += 2;
        }
    }
    let rest = &item[i.min(item.len())..];
    let n = name_len(rest);
    if n == 0 || !is_assign(src, rest.get(n), true) {
        return;
    }
    if let Some(value) = value(src, &rest[n + 1..], &[]) {
        emit(Item {
            name: Name::Toks(&rest[..n]),
            value,
            local: false,
        });
    }
}

/// Transaction modes of PostgreSQL `SET SESSION CHARACTERISTICS AS
/// TRANSACTION` or MySQL `SET SESSION TRANSACTION`, translated to the
/// session parameters they set.
fn transaction_modes<'a>(toks: &[Tok], src: &[u8], mysql: bool, emit: &mut impl FnMut(Item<'a>)) {
    let at = |i: usize| toks.get(i);
    let mut i = 0;
    let (iso, ro, def) = if mysql {
        ("transaction_isolation", "transaction_read_only", "")
    } else {
        (
            "default_transaction_isolation",
            "default_transaction_read_only",
            "default_transaction_deferrable",
        )
    };
    let mut put = |name: &'static str, v: &'static str| {
        emit(Item {
            name: Name::Fixed(name),
            value: Value::Fixed(v),
            local: false,
        });
    };
    while i < toks.len() {
        if toks[i].kind == TokKind::Comma {
            i += 1;
        } else if is_word(src, at(i), "isolation") && is_word(src, at(i + 1), "level") {
            let (pg, my, n) = if is_word(src, at(i + 2), "serializable") {
                ("'serializable'", "'SERIALIZABLE'", 1)
            } else if is_word(src, at(i + 2), "repeatable") && is_word(src, at(i + 3), "read") {
                ("'repeatable read'", "'REPEATABLE-READ'", 2)
            } else if is_word(src, at(i + 2), "read") && is_word(src, at(i + 3), "committed") {
                ("'read committed'", "'READ-COMMITTED'", 2)
            } else if is_word(src, at(i + 2), "read") && is_word(src, at(i + 3), "uncommitted") {
                ("'read uncommitted'", "'READ-UNCOMMITTED'", 2)
            } else {
                return;
            };
            put(iso, if mysql { my } else { pg });
            i += 2 + n;
        } else if is_word(src, at(i), "read") && is_word(src, at(i + 1), "only") {
            put(ro, if mysql { "ON" } else { "on" });
            i += 2;
        } else if is_word(src, at(i), "read") && is_word(src, at(i + 1), "write") {
            put(ro, if mysql { "OFF" } else { "off" });
            i += 2;
        } else if !mysql && is_word(src, at(i), "deferrable") {
            put(def, "on");
            i += 1;
        } else if !mysql && is_word(src, at(i), "not") && is_word(src, at(i + 1), "deferrable") {
            put(def, "off");
            i += 2;
        } else {
            return;
        }
    }
}

/// Parses the tokens after PostgreSQL `RESET`. `RESET ALL` yields nothing
/// (it is an effect bit of its own).
pub(crate) fn parse_reset<'a>(toks: &'a [Tok], src: &[u8], emit: &mut impl FnMut(Item<'a>)) {
    let at = |i: usize| toks.get(i);
    let fixed = |name| Item {
        name: Name::Fixed(name),
        value: Value::Default,
        local: false,
    };
    if is_word(src, at(0), "time") && is_word(src, at(1), "zone") {
        emit(fixed("timezone"));
    } else if is_word(src, at(0), "session") && is_word(src, at(1), "authorization") {
        emit(fixed("session_authorization"));
    } else if !(is_word(src, at(0), "all") && toks.len() == 1) {
        let n = name_len(toks);
        if n > 0 && n == toks.len() {
            emit(Item {
                name: Name::Toks(toks),
                value: Value::Default,
                local: false,
            });
        }
    }
}

/// The name as the session tracker keys it: unquoted parts lower-cased,
/// quoted parts verbatim without their quotes; MySQL `@@name` loses `@@`.
fn name_string(name: Name<'_>, src: &[u8]) -> String {
    let toks = match name {
        Name::Fixed(s) => return s.to_owned(),
        Name::Toks(t) => t,
    };
    let mut out = String::new();
    for t in toks {
        let raw = text(src, t);
        match t.kind {
            TokKind::Word => {
                let raw = raw.strip_prefix(b"@@").unwrap_or(raw);
                out.push_str(&String::from_utf8_lossy(raw).to_ascii_lowercase());
            }
            TokKind::QIdent => {
                let (open, body) = match raw {
                    [b'u' | b'U', b'&', b'"', rest @ ..] => (b'"', rest),
                    [q, rest @ ..] => (*q, rest),
                    [] => (b'"', raw),
                };
                let body = body.strip_suffix(&[open]).unwrap_or(body);
                let body = String::from_utf8_lossy(body);
                let q = char::from(open).to_string();
                out.push_str(&body.replace(&format!("{q}{q}"), &q));
            }
            _ => out.push('.'),
        }
    }
    out
}

/// Every SET/RESET in `sql`, in order (the body of [`super::set_commands`]).
pub(crate) fn set_commands(sql: &[u8], dialect: Dialect) -> Vec<SetCommand> {
    let mysql = dialect == Dialect::MySql;
    let mut out = Vec::new();
    let mut lx = Lexer::new(sql, mysql);
    let mut toks: Vec<Tok> = Vec::new();
    let mut depth = 0u32;
    loop {
        let t = lx.next();
        if t.is_none_or(|t| t.kind == TokKind::Semi && depth == 0) {
            statement(&toks, sql, mysql, &mut out);
            toks.clear();
            depth = 0;
        }
        let Some(t) = t else { return out };
        match t.kind {
            TokKind::Semi if depth == 0 => continue,
            TokKind::LParen | TokKind::LBracket => depth += 1,
            TokKind::RParen | TokKind::RBracket => depth = depth.saturating_sub(1),
            _ => {}
        }
        toks.push(t);
    }
}

fn statement(toks: &[Tok], src: &[u8], mysql: bool, out: &mut Vec<SetCommand>) {
    let Some(first) = toks.first() else { return };
    let mut push = |item: Item<'_>| {
        let value = match item.value {
            Value::Default => None,
            Value::Span(a, b) => Some(String::from_utf8_lossy(&src[a..b]).into_owned()),
            Value::Fixed(v) => Some(v.to_owned()),
        };
        out.push(SetCommand {
            name: name_string(item.name, src),
            value,
            local: item.local,
        });
    };
    if is_word(src, Some(first), "set") {
        parse_set(&toks[1..], src, mysql, &mut push);
    } else if !mysql && is_word(src, Some(first), "reset") {
        parse_reset(&toks[1..], src, &mut push);
    }
}
