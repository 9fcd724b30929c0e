//! The configuration being written: TOML tables with their keys (values
//! already rendered as TOML), `[[databases]]` and `[[users]]` entries, and
//! the notes about what could not be carried over. Rendering puts the
//! notes at the top as comments.

use std::fmt::Write as _;

use super::ini::Origin;

/// A rendered TOML value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toml(pub String);

impl Toml {
    /// A TOML string, quoted and escaped.
    pub fn str(s: &str) -> Toml {
        Toml(toml::Value::String(s.to_owned()).to_string())
    }

    /// A number or boolean written as is.
    pub fn raw(v: impl std::fmt::Display) -> Toml {
        Toml(v.to_string())
    }

    /// An array of strings.
    pub fn list(items: &[String]) -> Toml {
        let parts: Vec<String> = items.iter().map(|s| Toml::str(s).0).collect();
        Toml(format!("[{}]", parts.join(", ")))
    }

    /// An inline table.
    pub fn inline(pairs: &[(String, Toml)]) -> Toml {
        let parts: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{k} = {}", v.0))
            .collect();
        Toml(format!("{{ {} }}", parts.join(", ")))
    }
}

/// One `key = value` line with an optional trailing comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// Key.
    pub key: String,
    /// Rendered value.
    pub value: Toml,
    /// Where it came from / why, as a comment.
    pub comment: String,
}

/// Whether a PgBouncer setting has no effect in sqlmux or a slightly
/// different one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteKind {
    /// Not carried over.
    Unsupported,
    /// Carried over with a difference worth knowing.
    Approximated,
}

/// A PgBouncer setting that was not (or not exactly) carried over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Where it was written.
    pub origin: Origin,
    /// `[section] key = value` (secrets redacted).
    pub setting: String,
    /// Unsupported or approximated.
    pub kind: NoteKind,
    /// Why, and what sqlmux does instead.
    pub why: String,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.kind {
            NoteKind::Unsupported => "not supported",
            NoteKind::Approximated => "imported with a difference",
        };
        write!(f, "{}: {}: {what}: {}", self.origin, self.setting, self.why)
    }
}

/// The whole configuration being written.
#[derive(Debug, Default)]
pub struct Plan {
    tables: Vec<(String, Vec<Setting>)>,
    /// `[[databases]]` entries.
    pub databases: Vec<Vec<Setting>>,
    /// `[[users]]` entries.
    pub users: Vec<Vec<Setting>>,
    /// What was not carried over.
    pub notes: Vec<Note>,
}

impl Plan {
    /// Sets `table.key` (replacing an earlier value).
    pub fn set(&mut self, table: &str, key: &str, value: Toml, comment: &str) {
        let idx = match self.tables.iter().position(|(t, _)| t == table) {
            Some(i) => i,
            None => {
                self.tables.push((table.to_owned(), Vec::new()));
                self.tables.len() - 1
            }
        };
        let settings = &mut self.tables[idx].1;
        settings.retain(|s| s.key != key);
        settings.push(Setting {
            key: key.to_owned(),
            value,
            comment: comment.to_owned(),
        });
    }

    /// The value of `table.key`, if set.
    pub fn get(&self, table: &str, key: &str) -> Option<&Toml> {
        let (_, settings) = self.tables.iter().find(|(t, _)| t == table)?;
        settings.iter().find(|s| s.key == key).map(|s| &s.value)
    }

    /// Records a note.
    pub fn note(&mut self, origin: &Origin, setting: String, kind: NoteKind, why: &str) {
        self.notes.push(Note {
            origin: origin.clone(),
            setting,
            kind,
            why: why.to_owned(),
        });
    }

    /// The TOML text: a header comment, the notes, then the tables.
    pub fn render(&self, header: &[String]) -> String {
        let mut out = String::new();
        for h in header {
            let _ = writeln!(out, "# {h}");
        }
        for (kind, title) in [
            (
                NoteKind::Unsupported,
                "Not supported by sqlmux (no effect here):",
            ),
            (NoteKind::Approximated, "Imported with a difference:"),
        ] {
            let notes: Vec<&Note> = self.notes.iter().filter(|n| n.kind == kind).collect();
            if !notes.is_empty() {
                let _ = writeln!(out, "#\n# {title}");
                for n in notes {
                    let _ = writeln!(out, "#   {}: {}: {}", n.origin, n.setting, n.why);
                }
            }
        }
        for (table, settings) in &self.tables {
            let _ = writeln!(out, "\n[{table}]");
            write_settings(&mut out, settings);
        }
        for (name, entries) in [("databases", &self.databases), ("users", &self.users)] {
            for e in entries {
                let _ = writeln!(out, "\n[[{name}]]");
                write_settings(&mut out, e);
            }
        }
        out
    }
}

fn write_settings(out: &mut String, settings: &[Setting]) {
    for s in settings {
        let line = format!("{} = {}", s.key, s.value.0);
        if s.comment.is_empty() {
            let _ = writeln!(out, "{line}");
        } else {
            let _ = writeln!(out, "{line:<40} # {}", s.comment);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_valid_toml_with_notes_as_comments() {
        let mut p = Plan::default();
        p.set("pool", "size", Toml::raw(5), "default_pool_size");
        p.set("pool", "mode", Toml::str("session"), "");
        p.set("pool", "size", Toml::raw(7), "default_pool_size");
        p.databases.push(vec![Setting {
            key: "name".into(),
            value: Toml::str("a\"b"),
            comment: String::new(),
        }]);
        let origin = Origin {
            file: "x.ini".into(),
            line: 3,
        };
        p.note(
            &origin,
            "[pgbouncer] logfile = /x".into(),
            NoteKind::Unsupported,
            "logs go to stderr",
        );
        let text = p.render(&["imported".into()]);
        assert!(text.starts_with("# imported\n"), "{text}");
        assert!(
            text.contains("#   x.ini:3: [pgbouncer] logfile = /x: logs go to stderr"),
            "{text}"
        );
        let v: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(v["pool"]["size"].as_integer(), Some(7));
        assert_eq!(v["databases"][0]["name"].as_str(), Some("a\"b"));
    }
}
