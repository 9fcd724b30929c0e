//! Console commands: the enum and its parser.
//!
//! Grammar (PgBouncer's): one or two words and an optional argument,
//! case-insensitive keywords, an optional trailing `;`. `SELECT x` is an
//! alias of `SHOW x`. Several commands may be sent in one query string,
//! separated by `;`.

/// What a SHOW command lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// Command list (a NOTICE, like PgBouncer).
    Help,
    /// One row per pool.
    Pools,
    /// One row per client.
    Clients,
    /// One row per server.
    Servers,
    /// Per-database totals and averages.
    Stats,
    /// Per-database totals only.
    StatsTotals,
    /// Per-database averages only.
    StatsAverages,
    /// Totals and averages over all databases, as name/value rows.
    Totals,
    /// One row per configured database.
    Databases,
    /// Configuration keys.
    Config,
    /// Internal list sizes.
    Lists,
    /// One row per configured user.
    Users,
    /// The version string.
    Version,
    /// Whether the proxy is active, paused, suspended.
    State,
    /// Per-statement statistics (sqlmux).
    Statements,
    /// Detected N+1 bursts (sqlmux).
    NPlusOne,
    /// Leaked transactions (sqlmux).
    Leaks,
}

impl Show {
    /// Every SHOW target with its name, in SHOW HELP order.
    pub const ALL: &'static [(&'static str, Show)] = &[
        ("HELP", Show::Help),
        ("POOLS", Show::Pools),
        ("CLIENTS", Show::Clients),
        ("SERVERS", Show::Servers),
        ("STATS", Show::Stats),
        ("STATS_TOTALS", Show::StatsTotals),
        ("STATS_AVERAGES", Show::StatsAverages),
        ("TOTALS", Show::Totals),
        ("DATABASES", Show::Databases),
        ("CONFIG", Show::Config),
        ("LISTS", Show::Lists),
        ("USERS", Show::Users),
        ("VERSION", Show::Version),
        ("STATE", Show::State),
        ("STATEMENTS", Show::Statements),
        ("N_PLUS_ONE", Show::NPlusOne),
        ("LEAKS", Show::Leaks),
    ];
}

/// One console command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `SHOW x`.
    Show(Show),
    /// `SHOW HISTOGRAM <fingerprint>`.
    Histogram(String),
    /// `SHOW <setting>` for the settings drivers ask about (fake values).
    FakeSetting(&'static str, &'static str),
    /// `SET ...`: accepted and ignored, so chatty drivers work.
    Set,
    /// `RESET STATEMENTS`.
    ResetStatements,
    /// `PAUSE [db]`.
    Pause(Option<String>),
    /// `RESUME [db]`.
    Resume(Option<String>),
    /// `RECONNECT [db]`.
    Reconnect(Option<String>),
    /// `KILL [db]`.
    Kill(Option<String>),
    /// `RELOAD`.
    Reload,
    /// `SHUTDOWN [WAIT_FOR_CLIENTS | WAIT_FOR_SERVERS]`.
    Shutdown,
}

impl Command {
    /// True for commands only `admin.users` may run.
    pub fn needs_admin(&self) -> bool {
        !matches!(
            self,
            Command::Show(_) | Command::Histogram(_) | Command::FakeSetting(..) | Command::Set
        )
    }

    /// The command's name for messages and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Show(_) | Command::Histogram(_) | Command::FakeSetting(..) => "SHOW",
            Command::Set => "SET",
            Command::ResetStatements => "RESET STATEMENTS",
            Command::Pause(_) => "PAUSE",
            Command::Resume(_) => "RESUME",
            Command::Reconnect(_) => "RECONNECT",
            Command::Kill(_) => "KILL",
            Command::Reload => "RELOAD",
            Command::Shutdown => "SHUTDOWN",
        }
    }
}

/// Why a command could not be parsed: the message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

/// Settings that drivers query after connecting, with PgBouncer's fake
/// values.
const FAKE_SETTINGS: &[(&str, &str)] = &[
    ("client_encoding", "UTF8"),
    ("default_transaction_isolation", "read committed"),
    ("standard_conforming_strings", "on"),
    ("datestyle", "ISO"),
    ("timezone", "GMT"),
];

/// Splits a query string into statements at `;` outside quotes, dropping
/// empty ones.
pub fn split_statements(query: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quote: Option<char> = None;
    for (i, c) in query.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, ';') => {
                out.push(&query[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&query[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// Parses one statement (without its `;`).
pub fn parse(stmt: &str) -> Result<Command, ParseError> {
    let words: Vec<&str> = stmt.split_whitespace().collect();
    let Some(first) = words.first() else {
        return Err(ParseError("empty command".into()));
    };
    let kw = first.to_ascii_uppercase();
    let rest = &words[1..];
    let unknown = || {
        ParseError(format!(
            "unknown admin command \"{stmt}\"; run SHOW HELP for the list of commands"
        ))
    };
    let db_arg = |rest: &[&str]| -> Result<Option<String>, ParseError> {
        match rest {
            [] => Ok(None),
            [db] => Ok(Some(unquote(db))),
            _ => Err(ParseError(format!(
                "{kw} takes at most one database name, got \"{}\"",
                rest.join(" ")
            ))),
        }
    };
    match kw.as_str() {
        "SHOW" | "SELECT" => {
            let [what, args @ ..] = rest else {
                return Err(ParseError(
                    "SHOW needs a target, e.g. SHOW POOLS; run SHOW HELP for the list".into(),
                ));
            };
            let what_up = what.to_ascii_uppercase();
            if what_up == "HISTOGRAM" {
                return match args {
                    [fp] => Ok(Command::Histogram(unquote(fp))),
                    _ => Err(ParseError(
                        "SHOW HISTOGRAM needs one fingerprint (16 hex digits, as shown by SHOW STATEMENTS)"
                            .into(),
                    )),
                };
            }
            if !args.is_empty() {
                return Err(unknown());
            }
            if let Some((_, s)) = Show::ALL.iter().find(|(n, _)| *n == what_up) {
                return Ok(Command::Show(*s));
            }
            let lower = what.to_ascii_lowercase();
            if let Some((n, v)) = FAKE_SETTINGS.iter().find(|(n, _)| *n == lower) {
                return Ok(Command::FakeSetting(n, v));
            }
            Err(unknown())
        }
        "SET" if !rest.is_empty() => Ok(Command::Set),
        "RESET" => match rest {
            [w] if w.eq_ignore_ascii_case("STATEMENTS") => Ok(Command::ResetStatements),
            _ => Err(unknown()),
        },
        "PAUSE" => Ok(Command::Pause(db_arg(rest)?)),
        "RESUME" => Ok(Command::Resume(db_arg(rest)?)),
        "RECONNECT" => Ok(Command::Reconnect(db_arg(rest)?)),
        "KILL" => Ok(Command::Kill(db_arg(rest)?)),
        "RELOAD" if rest.is_empty() => Ok(Command::Reload),
        "SHUTDOWN" => match rest {
            [] => Ok(Command::Shutdown),
            [w] if w.eq_ignore_ascii_case("WAIT_FOR_CLIENTS")
                || w.eq_ignore_ascii_case("WAIT_FOR_SERVERS") =>
            {
                Ok(Command::Shutdown)
            }
            _ => Err(unknown()),
        },
        _ => Err(unknown()),
    }
}

/// Strips one pair of double or single quotes.
fn unquote(s: &str) -> String {
    for q in ['"', '\''] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return s[1..s.len() - 1].replace(&format!("{q}{q}"), &q.to_string());
        }
    }
    s.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_case_insensitively_with_optional_semicolon() {
        assert_eq!(parse("show pools"), Ok(Command::Show(Show::Pools)));
        assert_eq!(parse("SHOW  Stats"), Ok(Command::Show(Show::Stats)));
        assert_eq!(parse("select version"), Ok(Command::Show(Show::Version)));
        assert_eq!(parse("show n_plus_one"), Ok(Command::Show(Show::NPlusOne)));
        assert_eq!(
            split_statements("SHOW POOLS;"),
            vec!["SHOW POOLS"],
            "trailing semicolon"
        );
        assert_eq!(
            split_statements(" SHOW POOLS ; show stats;; "),
            vec!["SHOW POOLS", "show stats"]
        );
        assert_eq!(split_statements("SET x = 'a;b'"), vec!["SET x = 'a;b'"]);
    }

    #[test]
    fn control_commands_take_an_optional_database() {
        assert_eq!(parse("PAUSE"), Ok(Command::Pause(None)));
        assert_eq!(parse("pause app"), Ok(Command::Pause(Some("app".into()))));
        assert_eq!(
            parse("KILL \"My Db\""),
            Err(ParseError(
                "KILL takes at most one database name, got \"\"My Db\"\"".into()
            ))
        );
        assert_eq!(
            parse("kill \"MyDb\""),
            Ok(Command::Kill(Some("MyDb".into())))
        );
        assert_eq!(parse("resume"), Ok(Command::Resume(None)));
        assert_eq!(
            parse("reconnect app"),
            Ok(Command::Reconnect(Some("app".into())))
        );
        assert_eq!(parse("reload"), Ok(Command::Reload));
        assert_eq!(parse("shutdown wait_for_clients"), Ok(Command::Shutdown));
        assert_eq!(parse("reset statements"), Ok(Command::ResetStatements));
        assert!(Command::Pause(None).needs_admin());
        assert!(Command::ResetStatements.needs_admin());
        assert!(!Command::Show(Show::Pools).needs_admin());
    }

    #[test]
    fn histogram_fake_settings_and_unknown_commands() {
        assert_eq!(
            parse("SHOW HISTOGRAM 00000000deadbeef"),
            Ok(Command::Histogram("00000000deadbeef".into()))
        );
        assert!(parse("SHOW HISTOGRAM").is_err());
        assert_eq!(
            parse("show client_encoding"),
            Ok(Command::FakeSetting("client_encoding", "UTF8"))
        );
        assert_eq!(parse("SET DateStyle = ISO"), Ok(Command::Set));
        let err = parse("FROB").unwrap_err().0;
        assert!(err.contains("SHOW HELP"), "{err}");
        assert!(parse("SHOW NOTHING").unwrap_err().0.contains("SHOW HELP"));
    }
}
