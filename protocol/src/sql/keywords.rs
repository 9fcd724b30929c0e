//! The few keywords the normalizer and the classifier must recognize.
//!
//! Words reach these functions already lower-cased (the normalizer looks at
//! its own output). Lookups happen only for the leading words of a statement
//! and for the word before a `(`, a sign or the like, never for every word.

/// Words that matter for statement classification. Anything else is
/// [`Kw::Other`]; non-word tokens map to [`Kw::LParen`], [`Kw::Star`] or
/// [`Kw::Punct`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Kw {
    Abort,
    All,
    Begin,
    Commit,
    Create,
    Deallocate,
    Declare,
    Delete,
    Discard,
    Drop,
    End,
    Global,
    Insert,
    Listen,
    Load,
    Local,
    Or,
    Prepare,
    Prepared,
    Recursive,
    Release,
    Replace,
    Reset,
    Rollback,
    Savepoint,
    Select,
    Sequence,
    Set,
    Show,
    Start,
    Table,
    Temp,
    Temporary,
    To,
    Transaction,
    Unlisten,
    Update,
    Values,
    View,
    With,
    Work,
    Xa,
    /// `(` as a token.
    LParen,
    /// `*` as a token.
    Star,
    /// Any other non-word token.
    Punct,
    /// Any other word, or nothing yet.
    #[default]
    Other,
}

/// Classifies a lower-case word.
pub(crate) fn kw(w: &[u8]) -> Kw {
    match w {
        b"abort" => Kw::Abort,
        b"all" => Kw::All,
        b"begin" => Kw::Begin,
        b"commit" => Kw::Commit,
        b"create" => Kw::Create,
        b"deallocate" => Kw::Deallocate,
        b"declare" => Kw::Declare,
        b"delete" => Kw::Delete,
        b"discard" => Kw::Discard,
        b"drop" => Kw::Drop,
        b"end" => Kw::End,
        b"global" => Kw::Global,
        b"insert" => Kw::Insert,
        b"listen" => Kw::Listen,
        b"load" => Kw::Load,
        b"local" => Kw::Local,
        b"or" => Kw::Or,
        b"prepare" => Kw::Prepare,
        b"prepared" => Kw::Prepared,
        b"recursive" => Kw::Recursive,
        b"release" => Kw::Release,
        b"replace" => Kw::Replace,
        b"reset" => Kw::Reset,
        b"rollback" => Kw::Rollback,
        b"savepoint" => Kw::Savepoint,
        b"select" => Kw::Select,
        b"sequence" => Kw::Sequence,
        b"set" => Kw::Set,
        b"show" => Kw::Show,
        b"start" => Kw::Start,
        b"table" => Kw::Table,
        b"temp" => Kw::Temp,
        b"temporary" => Kw::Temporary,
        b"to" => Kw::To,
        b"transaction" => Kw::Transaction,
        b"unlisten" => Kw::Unlisten,
        b"update" => Kw::Update,
        b"values" => Kw::Values,
        b"view" => Kw::View,
        b"with" => Kw::With,
        b"work" => Kw::Work,
        b"xa" => Kw::Xa,
        _ => Kw::Other,
    }
}

/// Reserved words after which an expression or a list starts.
///
/// They decide three things the same way every time, so that the output
/// does not depend on the input's spacing: a `(` after them gets a space
/// (`in (`, but `count(`), a `(` after them may be a foldable list (a `(`
/// after an ordinary identifier is a call's argument list and is never
/// folded), and a `-`/`+` after them is the sign of a number (`then -1`).
/// Words that end an expression (`end`, `null`, `true`) are not here, nor are
/// function-like keywords (`any`, `some`, `coalesce`, `cast`, `row`).
pub(crate) fn is_reserved(w: &[u8]) -> bool {
    matches!(
        w,
        b"all"
            | b"and"
            | b"array"
            | b"as"
            | b"between"
            | b"by"
            | b"case"
            | b"default"
            | b"distinct"
            | b"div"
            | b"do"
            | b"else"
            | b"escape"
            | b"except"
            | b"exists"
            | b"filter"
            | b"for"
            | b"from"
            | b"group"
            | b"having"
            | b"ilike"
            | b"in"
            | b"intersect"
            | b"into"
            | b"is"
            | b"join"
            | b"lateral"
            | b"like"
            | b"limit"
            | b"mod"
            | b"not"
            | b"offset"
            | b"on"
            | b"or"
            | b"over"
            | b"regexp"
            | b"return"
            | b"returning"
            | b"rlike"
            | b"select"
            | b"set"
            | b"similar"
            | b"table"
            | b"then"
            | b"to"
            | b"union"
            | b"using"
            | b"values"
            | b"when"
            | b"where"
            | b"window"
            | b"with"
            | b"xor"
    )
}
