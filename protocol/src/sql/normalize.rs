//! The one-pass normalizer behind [`super::Normalizer`].
//!
//! Tokens from the [`Lexer`] are written to the output as they come, with
//! canonical spacing, lower-cased words and literals replaced by
//! placeholders. Folding works by rewriting the tail of the output: every
//! open `(`/`[` remembers where it started and the placeholder counter at
//! that point, so when a list of only placeholders closes, its text is cut
//! back to one placeholder plus [`FOLD_MARK`] and the counter is rewound;
//! when a group repeats the shape of the group just before it (`VALUES
//! (..), (..)`), it is cut off entirely. Each output byte is cut at most once
//! per enclosing group, and the group stack has a fixed cap, so the work
//! stays linear in the input.
//!
//! Along the way each statement's tokens go to a [`Stmt`] for its kind and
//! effects; SET statements also keep their raw tokens for [`set::parse_set`].
//! All buffers live in the caller's [`Scratch`] and output `Vec`, so a warm
//! normalizer does not allocate.

use xxhash_rust::xxh3::xxh3_64;

use super::classify::Stmt;
use super::keywords::{Kw, is_reserved};
use super::lexer::{Lexer, Tok, TokKind, is_ident_char};
use super::set;
use super::{Analysis, Dialect, Effects, Fingerprint, Kind, MAX_INPUT, MAX_TEXT};

/// Nesting depth up to which groups are tracked (and may fold).
const MAX_DEPTH: usize = 128;
/// Tokens of one SET statement kept for its effects.
const MAX_SET_TOKENS: usize = 1024;
/// Marks a folded list: `in ($1 /*, ... */)`. Being a comment, it keeps the
/// text valid SQL and vanishes when the text is normalized again.
pub(crate) const FOLD_MARK: &[u8] = b" /*, ... */";

/// The class of the last token written, which decides spacing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prev {
    None,
    Word,
    Ident,
    Ph,
    Op,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Cast,
    Other,
}

/// Where a level stands with respect to repeated sibling groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Sib {
    #[default]
    None,
    /// A group occupying `out[a..b]` was the last thing written.
    After(usize, usize),
    /// ... followed by a comma.
    Comma(usize, usize),
}

/// What a token means to the group it sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Note {
    Ph,
    Comma,
    Other,
}

/// An open `(` or `[`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Group {
    /// Output offset of the opening byte.
    open: usize,
    /// Placeholder counter before the group.
    ph_before: u32,
    closer: u8,
    /// Not a call's argument list or a subscript.
    foldable: bool,
    /// Only placeholders and commas so far, alternating.
    pure: bool,
    /// At the start or after a comma: an element should come next.
    expect: bool,
    /// Holds a placeholder, directly or nested.
    has_ph: bool,
    /// Repeated-sibling state of the groups inside this one.
    sib: Sib,
    /// The previous sibling, when this group directly follows `<group>, `.
    candidate: Option<(usize, usize)>,
}

/// Buffers reused between calls.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    groups: Vec<Group>,
    set_toks: Vec<Tok>,
}

/// Normalizes `sql` into `out` (cleared first) and analyses it.
pub(crate) fn normalize(
    sql: &[u8],
    dialect: Dialect,
    out: &mut Vec<u8>,
    scratch: &mut Scratch,
) -> Analysis {
    out.clear();
    scratch.groups.clear();
    scratch.set_toks.clear();
    let src = &sql[..sql.len().min(MAX_INPUT)];
    let mut run = Run {
        src,
        pg: dialect == Dialect::Postgres,
        out,
        groups: &mut scratch.groups,
        set_toks: &mut scratch.set_toks,
        overflow: 0,
        root_sib: Sib::None,
        count: 0,
        prev: Prev::None,
        prev_str: false,
        word: (0, 0),
        in_stmt: false,
        recording: false,
        stmt: Stmt::default(),
        statements: 0,
        kind: Kind::Other,
        effects: 0,
    };
    run.run();
    let analysis = Analysis {
        fingerprint: Fingerprint(xxh3_64(run.out)),
        statements: run.statements,
        kind: run.kind,
        effects: Effects(run.effects),
    };
    if out.len() > MAX_TEXT {
        let mut n = MAX_TEXT;
        while n > 0 && out[n] & 0xC0 == 0x80 {
            n -= 1;
        }
        out.truncate(n);
    }
    analysis
}

struct Run<'a> {
    src: &'a [u8],
    pg: bool,
    out: &'a mut Vec<u8>,
    groups: &'a mut Vec<Group>,
    set_toks: &'a mut Vec<Tok>,
    /// Open groups beyond [`MAX_DEPTH`], counted but not tracked.
    overflow: u32,
    root_sib: Sib,
    /// Last placeholder number written (PostgreSQL).
    count: u32,
    prev: Prev,
    /// The last token was a string-literal placeholder.
    prev_str: bool,
    /// Output range of the last word, valid while `prev == Prev::Word`.
    word: (usize, usize),
    in_stmt: bool,
    /// The statement is a SET: keep its tokens for [`set::parse_set`].
    recording: bool,
    stmt: Stmt,
    statements: u32,
    kind: Kind,
    effects: u32,
}

impl Run<'_> {
    fn run(&mut self) {
        let mut lx = Lexer::new(self.src, !self.pg);
        while let Some(t) = lx.next() {
            if t.kind == TokKind::Semi && self.depth() == 0 {
                self.end_statement();
                continue;
            }
            if self.in_stmt {
                self.record(t);
            } else {
                self.begin_statement(t);
            }
            match t.kind {
                TokKind::Word => self.word(t),
                TokKind::QIdent => self.qident(t),
                TokKind::Str => self.placeholder(true),
                TokKind::Num | TokKind::Param => self.placeholder(false),
                TokKind::Op => {
                    if self.is_sign(t) {
                        let mut ahead = lx;
                        if let Some(n) = ahead.next()
                            && n.kind == TokKind::Num
                        {
                            lx = ahead;
                            self.record(n);
                            self.placeholder(false);
                            continue;
                        }
                    }
                    let star = self.src[t.start..t.end] == *b"*";
                    self.simple(t, Prev::Op, if star { Kw::Star } else { Kw::Punct });
                }
                TokKind::LParen => self.open(b'(', b')'),
                TokKind::LBracket => self.open(b'[', b']'),
                TokKind::RParen => self.close(b')'),
                TokKind::RBracket => self.close(b']'),
                TokKind::Comma => self.simple(t, Prev::Comma, Kw::Punct),
                TokKind::Dot => self.simple(t, Prev::Dot, Kw::Punct),
                TokKind::Cast => self.simple(t, Prev::Cast, Kw::Punct),
                TokKind::Semi | TokKind::Other => self.simple(t, Prev::Other, Kw::Punct),
            }
        }
        self.end_statement();
    }

    #[inline]
    fn depth(&self) -> usize {
        self.groups.len() + self.overflow as usize
    }

    fn begin_statement(&mut self, first: Tok) {
        if self.statements > 0 {
            self.out.extend_from_slice(b"; ");
        }
        self.statements += 1;
        self.in_stmt = true;
        self.stmt = Stmt::default();
        self.prev = Prev::None;
        self.prev_str = false;
        self.root_sib = Sib::None;
        self.set_toks.clear();
        self.recording = first.kind == TokKind::Word
            && self.src[first.start..first.end].eq_ignore_ascii_case(b"set");
    }

    fn end_statement(&mut self) {
        if !self.in_stmt {
            return;
        }
        self.in_stmt = false;
        let (kind, mut fx) = self.stmt.finish(self.pg);
        if self.recording {
            set::parse_set(self.set_toks, self.src, !self.pg, &mut |item| {
                fx |= if item.local {
                    Effects::SET_LOCAL
                } else {
                    Effects::SET
                };
            });
        }
        if self.statements == 1 {
            self.kind = kind;
        }
        self.effects |= fx;
        self.recording = false;
        self.groups.clear();
        self.overflow = 0;
    }

    #[inline]
    fn record(&mut self, t: Tok) {
        if self.recording && self.set_toks.len() < MAX_SET_TOKENS {
            self.set_toks.push(t);
        }
    }

    /// Tells the current level about a token inside it.
    #[inline]
    fn note(&mut self, n: Note) {
        if self.overflow > 0 {
            return;
        }
        let sib = match self.groups.last_mut() {
            Some(g) => {
                match n {
                    Note::Ph => {
                        g.has_ph = true;
                        if g.expect {
                            g.expect = false;
                        } else {
                            g.pure = false;
                        }
                    }
                    Note::Comma => {
                        if g.expect {
                            g.pure = false;
                        } else {
                            g.expect = true;
                        }
                    }
                    Note::Other => g.pure = false,
                }
                &mut g.sib
            }
            None => &mut self.root_sib,
        };
        *sib = match (n, *sib) {
            (Note::Comma, Sib::After(a, b)) => Sib::Comma(a, b),
            _ => Sib::None,
        };
    }

    /// Writes the separator a token of class `cur` needs after `self.prev`.
    #[inline]
    fn space(&mut self, cur: Prev) {
        let need = match (self.prev, cur) {
            (Prev::None, _) => false,
            // `: ::` must not become `:::`.
            (Prev::Op, Prev::Cast) => true,
            (_, Prev::RParen | Prev::RBracket | Prev::Comma | Prev::Dot | Prev::Cast) => false,
            (Prev::LParen | Prev::LBracket | Prev::Dot | Prev::Cast, _) => false,
            _ => true,
        };
        if need {
            self.out.push(b' ');
        }
    }

    #[inline]
    fn set_prev(&mut self, p: Prev) {
        self.prev = p;
        self.prev_str = false;
    }

    fn word(&mut self, t: Tok) {
        self.note(Note::Other);
        self.space(Prev::Word);
        let s = self.out.len();
        push_utf8(self.out, &self.src[t.start..t.end], true);
        let e = self.out.len();
        self.set_prev(Prev::Word);
        self.word = (s, e);
        if self.stmt.wants_words() {
            let depth0 = self.depth() == 0;
            self.stmt.word(&self.out[s..e], depth0, self.pg);
        }
    }

    fn qident(&mut self, t: Tok) {
        self.note(Note::Other);
        self.space(Prev::Ident);
        let raw = &self.src[t.start..t.end];
        match raw {
            [b'u' | b'U', b'&', rest @ ..] => {
                self.out.extend_from_slice(b"u&");
                push_utf8(self.out, rest, false);
            }
            _ => push_utf8(self.out, raw, false),
        }
        self.set_prev(Prev::Ident);
        self.stmt.token(Kw::Other);
    }

    /// Writes a placeholder for a literal or bind marker. A string directly
    /// after a string is the same literal (`'a' 'b'` is `'ab'`).
    fn placeholder(&mut self, is_str: bool) {
        if is_str && self.prev_str {
            return;
        }
        self.note(Note::Ph);
        self.space(Prev::Ph);
        if self.pg {
            self.count += 1;
            self.out.push(b'$');
            push_u32(self.out, self.count);
        } else {
            self.out.push(b'?');
        }
        self.prev = Prev::Ph;
        self.prev_str = is_str;
        self.stmt.token(Kw::Punct);
    }

    /// A `-`/`+` that is the sign of a following number rather than a
    /// binary operator: at the start, after an operator, `(`, `[`, `,`, a
    /// reserved word or `interval` (MySQL `INTERVAL -1 DAY`).
    fn is_sign(&self, t: Tok) -> bool {
        t.end - t.start == 1
            && matches!(self.src[t.start], b'-' | b'+')
            && match self.prev {
                Prev::None
                | Prev::Op
                | Prev::LParen
                | Prev::LBracket
                | Prev::Comma
                | Prev::Other => true,
                Prev::Word => {
                    let w = &self.out[self.word.0..self.word.1];
                    is_reserved(w) || w == b"interval"
                }
                _ => false,
            }
    }

    /// Operators and punctuation, written as they are.
    fn simple(&mut self, t: Tok, p: Prev, k: Kw) {
        self.note(if p == Prev::Comma {
            Note::Comma
        } else {
            Note::Other
        });
        self.space(p);
        // Operators and punctuation are ASCII.
        match &self.src[t.start..t.end] {
            [b] => self.out.push(*b),
            bytes => self.out.extend_from_slice(bytes),
        }
        self.set_prev(p);
        self.stmt.token(k);
    }

    fn level_sib(&self) -> Sib {
        if self.overflow > 0 {
            return Sib::None;
        }
        match self.groups.last() {
            Some(g) => g.sib,
            None => self.root_sib,
        }
    }

    fn open(&mut self, byte: u8, closer: u8) {
        let paren = byte == b'(';
        let prev_word = (self.prev == Prev::Word).then_some(self.word);
        let reserved = prev_word.is_some_and(|(s, e)| is_reserved(&self.out[s..e]));
        if paren
            && !reserved
            && let Some((s, e)) = prev_word
        {
            self.stmt.call(&self.out[s..e], self.pg);
        }
        let foldable = if paren {
            reserved
                || matches!(
                    self.prev,
                    Prev::None
                        | Prev::Op
                        | Prev::LParen
                        | Prev::LBracket
                        | Prev::Comma
                        | Prev::Other
                )
        } else {
            matches!(self.prev, Prev::LBracket | Prev::Comma)
                || prev_word.is_some_and(|(s, e)| self.out[s..e] == *b"array")
        };
        let space = match self.prev {
            Prev::Comma | Prev::Op | Prev::Other => true,
            Prev::Word => paren && reserved,
            _ => false,
        };
        let candidate = match self.level_sib() {
            Sib::Comma(a, b) => Some((a, b)),
            _ => None,
        };
        self.note(Note::Other);
        if space {
            self.out.push(b' ');
        }
        let open = self.out.len();
        self.out.push(byte);
        if self.overflow > 0 || self.groups.len() >= MAX_DEPTH {
            self.overflow += 1;
        } else {
            self.groups.push(Group {
                open,
                ph_before: self.count,
                closer,
                foldable,
                pure: true,
                expect: true,
                has_ph: false,
                sib: Sib::None,
                candidate,
            });
        }
        self.set_prev(if paren { Prev::LParen } else { Prev::LBracket });
        self.stmt.token(if paren { Kw::LParen } else { Kw::Punct });
    }

    fn close(&mut self, byte: u8) {
        let p = if byte == b')' {
            Prev::RParen
        } else {
            Prev::RBracket
        };
        self.stmt.token(Kw::Punct);
        if self.overflow > 0 {
            self.overflow -= 1;
            self.out.push(byte);
            self.set_prev(p);
            return;
        }
        let Some(g) = self.groups.pop() else {
            // Unbalanced: an ordinary token of the statement.
            self.note(Note::Other);
            self.out.push(byte);
            self.set_prev(p);
            return;
        };
        if g.closer == byte && g.foldable && g.pure && !g.expect {
            self.out.truncate(g.open + 1);
            if self.pg {
                self.count = g.ph_before + 1;
                self.out.push(b'$');
                push_u32(self.out, self.count);
            } else {
                self.out.push(b'?');
            }
            self.out.extend_from_slice(FOLD_MARK);
        }
        self.out.push(byte);
        let end = self.out.len();
        let mut sib = Sib::After(g.open, end);
        if let Some((ps, pe)) = g.candidate
            && g.has_ph
            && same_shape(&self.out[ps..pe], &self.out[g.open..end], self.pg)
        {
            self.out.truncate(pe);
            self.count = g.ph_before;
            sib = Sib::After(ps, pe);
        }
        match self.groups.last_mut() {
            Some(parent) => {
                parent.has_ph |= g.has_ph;
                parent.sib = sib;
            }
            None => self.root_sib = sib,
        }
        self.set_prev(p);
    }
}

/// Equal texts, except that PostgreSQL placeholder numbers may differ.
fn same_shape(a: &[u8], b: &[u8], pg: bool) -> bool {
    if !pg {
        return a == b;
    }
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] != b[j] {
            return false;
        }
        let number = a[i] == b'$' && (i == 0 || !is_ident_char(a[i - 1]));
        i += 1;
        j += 1;
        if number {
            let (i0, j0) = (i, j);
            while i < a.len() && a[i].is_ascii_digit() {
                i += 1;
            }
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if (i == i0) != (j == j0) {
                return false;
            }
        }
    }
    i == a.len() && j == b.len()
}

/// Appends `bytes`, ASCII lower-cased when `lower`, with each invalid UTF-8
/// sequence replaced by U+FFFD.
#[inline(always)]
fn push_utf8(out: &mut Vec<u8>, bytes: &[u8], lower: bool) {
    let mut high = 0u8;
    out.extend(bytes.iter().map(|&b| {
        high |= b;
        if lower { b.to_ascii_lowercase() } else { b }
    }));
    if high >= 0x80 {
        let start = out.len() - bytes.len();
        if std::str::from_utf8(&out[start..]).is_err() {
            out.truncate(start);
            push_utf8_lossy(out, bytes, lower);
        }
    }
}

#[cold]
fn push_utf8_lossy(out: &mut Vec<u8>, bytes: &[u8], lower: bool) {
    for chunk in bytes.utf8_chunks() {
        let start = out.len();
        out.extend_from_slice(chunk.valid().as_bytes());
        if lower {
            out[start..].make_ascii_lowercase();
        }
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{FFFD}".as_bytes());
        }
    }
}

#[inline]
fn push_u32(out: &mut Vec<u8>, mut n: u32) {
    let mut buf = [0u8; 10];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}
