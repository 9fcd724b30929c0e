//! Byte-level SQL tokenizer shared by the normalizer and the SET parser.
//!
//! It sits under [`super::normalize`] (the hot path, one pass per query) and
//! [`super::set`] (SET/RESET extraction). It knows the lexical rules of both
//! dialects (strings, quoted identifiers, comments, operators, bind markers)
//! but no grammar: a token is a kind plus a byte range of the input.
//!
//! Invariants: every call to [`Lexer::next`] consumes at least one byte or
//! returns `None`, and no byte is examined more than a constant number of
//! times, so tokenizing is linear in the input even for unterminated quotes,
//! comments and dollar quotes (they run to the end of the input). Nothing
//! here allocates or panics on any input, including invalid UTF-8.

/// What a token is. Placeholder-like kinds are [`TokKind::Str`],
/// [`TokKind::Num`] and [`TokKind::Param`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokKind {
    /// An unquoted word: keyword or identifier (also MySQL `@var`, `@@var`).
    Word,
    /// A quoted identifier: `"x"`, `U&"x"` (PostgreSQL), `` `x` `` (MySQL).
    QIdent,
    /// A string literal of any form, including dollar quotes and MySQL `"x"`.
    Str,
    /// A numeric literal (sign not included).
    Num,
    /// A bind marker: `$1` (PostgreSQL), `?` (MySQL), `:name` (both).
    Param,
    /// An operator.
    Op,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `,`
    Comma,
    /// `.`
    Dot,
    /// `::`
    Cast,
    /// `;`
    Semi,
    /// Any other byte (`\`, `{`, a lone `$`, ...).
    Other,
}

/// One token: its kind and the byte range `start..end` of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tok {
    pub kind: TokKind,
    pub start: usize,
    pub end: usize,
}

const SPACE: u8 = 1;
const IDENT_START: u8 = 2;
const DIGIT: u8 = 4;
const DOLLAR: u8 = 8;
const PG_OP: u8 = 16;
const MY_OP: u8 = 32;
/// Bytes that may continue an unquoted identifier.
const IDENT_CHAR: u8 = IDENT_START | DIGIT | DOLLAR;

const fn build_classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut c = 0;
        if b.is_ascii_alphabetic() || b == b'_' || b >= 0x80 {
            c |= IDENT_START;
        }
        if b.is_ascii_digit() {
            c |= DIGIT;
        }
        if b == b'$' {
            c |= DOLLAR;
        }
        // Control characters (NUL included) count as white space.
        if b <= 0x20 || b == 0x7f {
            c |= SPACE;
        }
        if matches!(
            b,
            b'+' | b'-'
                | b'*'
                | b'/'
                | b'<'
                | b'>'
                | b'='
                | b'~'
                | b'!'
                | b'@'
                | b'#'
                | b'%'
                | b'^'
                | b'&'
                | b'|'
                | b'`'
                | b'?'
        ) {
            c |= PG_OP;
        }
        if matches!(
            b,
            b'+' | b'-'
                | b'*'
                | b'/'
                | b'<'
                | b'>'
                | b'='
                | b'~'
                | b'!'
                | b'%'
                | b'^'
                | b'&'
                | b'|'
        ) {
            c |= MY_OP;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static CLASS: [u8; 256] = build_classes();

#[inline]
fn class(b: u8) -> u8 {
    CLASS[b as usize]
}

/// True for a byte that may continue an unquoted identifier.
#[inline]
pub(crate) fn is_ident_char(b: u8) -> bool {
    class(b) & IDENT_CHAR != 0
}

/// A cursor over one query string. Cheap to copy, which is how the
/// normalizer peeks one token ahead.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    mysql: bool,
    /// Open `[` minus `]`: inside brackets `:` is an array-slice colon, not a
    /// `:name` bind marker.
    brackets: u32,
    /// Inside a MySQL `/*! ... */` executable comment, whose body is SQL.
    exec_comment: bool,
}

impl<'a> Lexer<'a> {
    /// A lexer at the start of `src`.
    pub(crate) fn new(src: &'a [u8], mysql: bool) -> Self {
        Self {
            src,
            pos: 0,
            mysql,
            brackets: 0,
            exec_comment: false,
        }
    }

    /// The next token, skipping white space and comments.
    #[inline(always)]
    pub(crate) fn next(&mut self) -> Option<Tok> {
        let src = self.src;
        let len = src.len();
        loop {
            let mut p = self.pos;
            while p < len && class(src[p]) & SPACE != 0 {
                p += 1;
            }
            if p >= len {
                self.pos = len;
                return None;
            }
            let b = src[p];
            let b1 = byte_at(src, p + 1);
            match b {
                b'-' if b1 == b'-'
                    && (!self.mysql || p + 2 >= len || class(src[p + 2]) & SPACE != 0) =>
                {
                    self.pos = skip_line(src, p + 2);
                    continue;
                }
                b'#' if self.mysql => {
                    self.pos = skip_line(src, p + 1);
                    continue;
                }
                b'/' if b1 == b'*' => {
                    if self.mysql {
                        // `/*!12345 ... */` and MariaDB `/*M!12345 ... */` carry
                        // SQL the server runs: lex their body, drop the markers.
                        let body = match (byte_at(src, p + 2), byte_at(src, p + 3)) {
                            (b'!', _) => Some(p + 3),
                            (b'M', b'!') => Some(p + 4),
                            _ => None,
                        };
                        if let Some(mut q) = body {
                            while q < len && src[q].is_ascii_digit() {
                                q += 1;
                            }
                            self.exec_comment = true;
                            self.pos = q;
                            continue;
                        }
                    }
                    self.pos = skip_block_comment(src, p + 2, !self.mysql);
                    continue;
                }
                b'*' if b1 == b'/' && self.exec_comment => {
                    self.exec_comment = false;
                    self.pos = p + 2;
                    continue;
                }
                _ => {}
            }
            let (kind, end) = self.token(p, b, b1);
            debug_assert!(end > p && end <= len);
            self.pos = end;
            return Some(Tok {
                kind,
                start: p,
                end,
            });
        }
    }

    /// Lexes the token starting at `p` (not white space, not a comment).
    #[inline]
    fn token(&mut self, p: usize, b: u8, b1: u8) -> (TokKind, usize) {
        let src = self.src;
        let len = src.len();
        let c = class(b);
        if c & IDENT_START != 0 {
            if b1 == b'\'' {
                match b | 0x20 {
                    // E'..' has backslash escapes; in MySQL every string does.
                    b'e' if !self.mysql => {
                        return (TokKind::Str, scan_quoted(src, p + 2, b'\'', true));
                    }
                    b'x' | b'b' | b'n' => {
                        return (TokKind::Str, scan_quoted(src, p + 2, b'\'', self.mysql));
                    }
                    _ => {}
                }
            }
            if !self.mysql && b | 0x20 == b'u' && b1 == b'&' {
                match byte_at(src, p + 2) {
                    b'\'' => return (TokKind::Str, scan_quoted(src, p + 3, b'\'', false)),
                    b'"' => return (TokKind::QIdent, scan_quoted(src, p + 3, b'"', false)),
                    _ => {}
                }
            }
            return (TokKind::Word, scan_ident(src, p + 1));
        }
        if c & DIGIT != 0 {
            return (TokKind::Num, scan_number(src, p));
        }
        match b {
            b'\'' => (TokKind::Str, scan_quoted(src, p + 1, b'\'', self.mysql)),
            b'"' if self.mysql => (TokKind::Str, scan_quoted(src, p + 1, b'"', true)),
            b'"' => (TokKind::QIdent, scan_quoted(src, p + 1, b'"', false)),
            b'`' if self.mysql => (TokKind::QIdent, scan_quoted(src, p + 1, b'`', false)),
            b'(' => (TokKind::LParen, p + 1),
            b')' => (TokKind::RParen, p + 1),
            b'[' => {
                self.brackets = self.brackets.saturating_add(1);
                (TokKind::LBracket, p + 1)
            }
            b']' => {
                self.brackets = self.brackets.saturating_sub(1);
                (TokKind::RBracket, p + 1)
            }
            b',' => (TokKind::Comma, p + 1),
            b';' => (TokKind::Semi, p + 1),
            b'.' => {
                let glued = p > 0 && {
                    let pb = src[p - 1];
                    is_ident_char(pb) || matches!(pb, b'"' | b'`' | b')' | b']')
                };
                if b1.is_ascii_digit() && !glued {
                    (TokKind::Num, scan_number(src, p))
                } else {
                    (TokKind::Dot, p + 1)
                }
            }
            b':' => {
                if b1 == b':' {
                    (TokKind::Cast, p + 2)
                } else if b1 == b'=' {
                    (TokKind::Op, p + 2)
                } else if class(b1) & (IDENT_START | DIGIT) != 0 && self.brackets == 0 {
                    (TokKind::Param, scan_ident(src, p + 1))
                } else {
                    (TokKind::Op, p + 1)
                }
            }
            b'$' if self.mysql => (TokKind::Word, scan_ident(src, p + 1)),
            b'$' => self.dollar(p, b1),
            b'?' if self.mysql => (TokKind::Param, p + 1),
            b'@' if self.mysql => {
                let mut q = p + 1;
                if byte_at(src, q) == b'@' {
                    q += 1;
                }
                match byte_at(src, q) {
                    quote @ (b'\'' | b'"' | b'`') => {
                        (TokKind::Word, scan_quoted(src, q + 1, quote, quote != b'`'))
                    }
                    nb if q < len && is_ident_char(nb) => (TokKind::Word, scan_ident(src, q)),
                    _ => (TokKind::Op, q),
                }
            }
            _ if self.mysql && c & MY_OP != 0 => (TokKind::Op, p + mysql_op_len(src, p)),
            _ if !self.mysql && c & PG_OP != 0 => (TokKind::Op, pg_op_end(src, p)),
            _ => (TokKind::Other, p + 1),
        }
    }

    /// PostgreSQL `$`: a bind marker `$n`, a dollar quote `$tag$..$tag$`, or
    /// a lone `$`.
    fn dollar(&self, p: usize, b1: u8) -> (TokKind, usize) {
        let src = self.src;
        let len = src.len();
        if b1.is_ascii_digit() {
            let mut q = p + 1;
            while q < len && src[q].is_ascii_digit() {
                q += 1;
            }
            return (TokKind::Param, q);
        }
        let mut q = p + 1;
        if class(b1) & IDENT_START != 0 {
            q += 1;
            while q < len && class(src[q]) & (IDENT_START | DIGIT) != 0 {
                q += 1;
            }
        }
        if byte_at(src, q) != b'$' || q >= len {
            return (TokKind::Other, p + 1);
        }
        let tag = &src[p..=q];
        let mut i = q + 1;
        // Each `$` is compared against the tag at most up to the first
        // mismatching byte, and no `$` can lie before that byte (tags have
        // none), so the search stays linear.
        while let Some(k) = src[i..].iter().position(|&x| x == b'$') {
            let j = i + k;
            if src[j..].starts_with(tag) {
                return (TokKind::Str, j + tag.len());
            }
            i = j + 1;
        }
        (TokKind::Str, len)
    }
}

#[inline]
fn byte_at(src: &[u8], i: usize) -> u8 {
    src.get(i).copied().unwrap_or(0)
}

#[inline]
fn scan_ident(src: &[u8], q: usize) -> usize {
    match src
        .get(q..)
        .and_then(|rest| rest.iter().position(|&b| !is_ident_char(b)))
    {
        Some(k) => q + k,
        None => src.len(),
    }
}

/// End of a quoted run whose body starts at `from`: a doubled quote is an
/// escaped quote, and with `backslash` a `\` escapes the next byte. An
/// unterminated run ends at the end of the input.
#[inline]
fn scan_quoted(src: &[u8], from: usize, quote: u8, backslash: bool) -> usize {
    let len = src.len();
    let mut i = from;
    while i < len {
        let c = src[i];
        if c == quote {
            if i + 1 < len && src[i + 1] == quote {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += if backslash && c == b'\\' { 2 } else { 1 };
    }
    len
}

/// Numbers: `12`, `1_000`, `1.5`, `.5`, `1e-3`, `0x1F`, `0b101`, `0o17`.
fn scan_number(src: &[u8], p: usize) -> usize {
    let len = src.len();
    let digit = |i: usize| i < len && src[i].is_ascii_digit();
    let digits = |mut i: usize| {
        while i < len && (src[i].is_ascii_digit() || (src[i] == b'_' && digit(i + 1))) {
            i += 1;
        }
        i
    };
    if src[p] == b'0'
        && matches!(byte_at(src, p + 1) | 0x20, b'x' | b'b' | b'o')
        && byte_at(src, p + 2).is_ascii_hexdigit()
    {
        let mut q = p + 2;
        while q < len && (src[q].is_ascii_hexdigit() || src[q] == b'_') {
            q += 1;
        }
        return q;
    }
    let mut q = digits(p);
    if q < len && src[q] == b'.' && byte_at(src, q + 1) != b'.' {
        q = digits(q + 1);
    }
    if q < len && src[q] | 0x20 == b'e' {
        let mut r = q + 1;
        if matches!(byte_at(src, r), b'+' | b'-') {
            r += 1;
        }
        if digit(r) {
            q = digits(r);
        }
    }
    q
}

fn skip_line(src: &[u8], from: usize) -> usize {
    match src[from.min(src.len())..].iter().position(|&c| c == b'\n') {
        Some(k) => from + k + 1,
        None => src.len(),
    }
}

/// End of a `/* */` comment whose body starts at `from` (nested in
/// PostgreSQL); an unterminated comment runs to the end of the input.
fn skip_block_comment(src: &[u8], from: usize, nested: bool) -> usize {
    let len = src.len();
    let mut depth = 1u32;
    let mut i = from;
    while i + 1 < len {
        if src[i] == b'*' && src[i + 1] == b'/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else if nested && src[i] == b'/' && src[i + 1] == b'*' {
            depth += 1;
            i += 2;
        } else {
            i += 1;
        }
    }
    len
}

/// PostgreSQL operator: the longest run of operator bytes, stopped before a
/// comment start, and (like the server's lexer) without trailing `+`/`-`
/// unless the run also holds one of `~ ! @ # % ^ & | \` ?`. So `=-5` is `=`
/// followed by `-5`.
fn pg_op_end(src: &[u8], p: usize) -> usize {
    let len = src.len();
    let mut q = p + 1;
    while q < len && class(src[q]) & PG_OP != 0 {
        let (a, b) = (src[q - 1], src[q]);
        if (a == b'-' && b == b'-') || (a == b'/' && b == b'*') {
            q -= 1;
            break;
        }
        q += 1;
    }
    if q - p > 1
        && matches!(src[q - 1], b'+' | b'-')
        && !src[p..q].iter().any(|c| {
            matches!(
                c,
                b'~' | b'!' | b'@' | b'#' | b'%' | b'^' | b'&' | b'|' | b'`' | b'?'
            )
        })
    {
        while q - p > 1 && matches!(src[q - 1], b'+' | b'-') {
            q -= 1;
        }
    }
    q
}

/// MySQL operators are a fixed set; anything else is one byte.
fn mysql_op_len(src: &[u8], p: usize) -> usize {
    let b1 = byte_at(src, p + 1);
    let b2 = byte_at(src, p + 2);
    match (src[p], b1, b2) {
        (b'<', b'=', b'>') | (b'-', b'>', b'>') => 3,
        (b'<', b'=' | b'>' | b'<', _)
        | (b'>', b'=' | b'>', _)
        | (b'!', b'=', _)
        | (b'&', b'&', _)
        | (b'|', b'|', _)
        | (b'-', b'>', _) => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(sql: &str, mysql: bool) -> Vec<(TokKind, &str)> {
        let mut lx = Lexer::new(sql.as_bytes(), mysql);
        let mut v = Vec::new();
        while let Some(t) = lx.next() {
            v.push((t.kind, &sql[t.start..t.end]));
        }
        v
    }

    #[test]
    fn postgres_operator_run_drops_trailing_minus_like_the_server() {
        use TokKind::*;
        assert_eq!(
            kinds("a=-5", false),
            vec![(Word, "a"), (Op, "="), (Op, "-"), (Num, "5")]
        );
        assert_eq!(
            kinds("a@-5", false),
            vec![(Word, "a"), (Op, "@-"), (Num, "5")]
        );
        assert_eq!(
            kinds("a<=b", false),
            vec![(Word, "a"), (Op, "<="), (Word, "b")]
        );
        assert_eq!(
            kinds("a=--c\n1", false),
            vec![(Word, "a"), (Op, "="), (Num, "1")]
        );
    }

    #[test]
    fn mysql_double_dash_needs_a_space_to_be_a_comment() {
        use TokKind::*;
        assert_eq!(
            kinds("5--3", true),
            vec![(Num, "5"), (Op, "-"), (Op, "-"), (Num, "3")]
        );
        assert_eq!(kinds("5 -- 3", true), vec![(Num, "5")]);
        assert_eq!(kinds("5 # 3\n4", true), vec![(Num, "5"), (Num, "4")]);
    }

    #[test]
    fn dollar_forms_lex_as_params_quotes_or_a_lone_dollar() {
        use TokKind::*;
        assert_eq!(kinds("$1", false), vec![(Param, "$1")]);
        assert_eq!(kinds("$a$ x $b$ $a$", false), vec![(Str, "$a$ x $b$ $a$")]);
        assert_eq!(kinds("$$x$$ y", false), vec![(Str, "$$x$$"), (Word, "y")]);
        assert_eq!(kinds("$ a", false), vec![(Other, "$"), (Word, "a")]);
        assert_eq!(kinds("$a$ open", false), vec![(Str, "$a$ open")]);
    }

    #[test]
    fn a_leading_dot_starts_a_number_only_when_not_glued_to_a_name() {
        use TokKind::*;
        assert_eq!(kinds("1_000.5e-3", false), vec![(Num, "1_000.5e-3")]);
        assert_eq!(kinds("0x1F", true), vec![(Num, "0x1F")]);
        assert_eq!(
            kinds("t.5", false),
            vec![(Word, "t"), (Dot, "."), (Num, "5")]
        );
        assert_eq!(kinds("= .5", false), vec![(Op, "="), (Num, ".5")]);
    }

    #[test]
    fn colon_is_a_cast_a_bind_marker_or_a_slice_separator() {
        use TokKind::*;
        assert_eq!(
            kinds("a::int", false),
            vec![(Word, "a"), (Cast, "::"), (Word, "int")]
        );
        assert_eq!(kinds("= :id", false), vec![(Op, "="), (Param, ":id")]);
        assert_eq!(
            kinds("a[1:n]", false),
            vec![
                (Word, "a"),
                (LBracket, "["),
                (Num, "1"),
                (Op, ":"),
                (Word, "n"),
                (RBracket, "]")
            ]
        );
    }

    #[test]
    fn mysql_executable_comments_are_lexed() {
        use TokKind::*;
        assert_eq!(
            kinds("/*!40101 SET NAMES utf8 */;", true),
            vec![(Word, "SET"), (Word, "NAMES"), (Word, "utf8"), (Semi, ";")]
        );
    }
}
