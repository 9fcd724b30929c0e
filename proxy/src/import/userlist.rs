//! PgBouncer's `auth_file` (userlist.txt): one `"user" "secret"` per line,
//! where the secret is a plain password, an `md5...` hash or a
//! `SCRAM-SHA-256$...` verifier (all three are valid `[[users]]`
//! passwords in sqlmux). A `"` inside a field is written `""`.

use std::path::Path;

use super::ImportError;
use super::ini::Origin;

/// One user line.
#[derive(Clone, PartialEq, Eq)]
pub struct UserLine {
    /// User name.
    pub name: String,
    /// Its secret (never printed).
    pub secret: String,
    /// Where it was written.
    pub origin: Origin,
}

impl std::fmt::Debug for UserLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UserLine({:?}, <secret>, {})", self.name, self.origin)
    }
}

/// Reads a userlist file.
pub fn read(path: &Path) -> Result<Vec<UserLine>, ImportError> {
    let mut out = Vec::new();
    for (origin, line) in super::ini::content_lines(path)? {
        let line = line.as_str();
        let (name, rest) = quoted(line).ok_or_else(|| bad(&origin))?;
        let (secret, rest) = quoted(rest.trim_start()).ok_or_else(|| bad(&origin))?;
        if !rest.trim().is_empty() {
            return Err(bad(&origin));
        }
        out.push(UserLine {
            name,
            secret,
            origin,
        });
    }
    Ok(out)
}

fn bad(origin: &Origin) -> ImportError {
    ImportError::Syntax {
        origin: origin.clone(),
        message: "expected \"user\" \"password\"".into(),
    }
}

/// A `"..."` field at the start of `s` (with `""` for a quote) and what
/// follows it.
fn quoted(s: &str) -> Option<(String, &str)> {
    let mut chars = s.strip_prefix('"')?.char_indices().peekable();
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        if c != '"' {
            out.push(c);
        } else if chars.peek().is_some_and(|(_, n)| *n == '"') {
            out.push('"');
            chars.next();
        } else {
            return Some((out, &s[i + 2..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_fields_with_doubled_quotes() {
        assert_eq!(quoted("\"a\" \"b\""), Some(("a".into(), " \"b\"")));
        assert_eq!(quoted("\"x\"\"y\"z"), Some(("x\"y".into(), "z")));
        assert_eq!(quoted("\"open"), None);
        assert_eq!(quoted("bare"), None);
    }

    #[test]
    fn userlist_lines_give_names_and_secrets() {
        let dir = std::env::temp_dir().join(format!("sqlmux-userlist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("userlist.txt");
        std::fs::write(
            &p,
            ";; users\n\"app\" \"s3cret\"\n\"odd\"\"name\" \"md5abc\"\n",
        )
        .unwrap();
        let users = read(&p).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(
            (users[0].name.as_str(), users[0].secret.as_str()),
            ("app", "s3cret")
        );
        assert_eq!(users[1].name, "odd\"name");
        assert_eq!(users[1].origin.line, 3);
        assert!(!format!("{users:?}").contains("s3cret"));
        std::fs::write(&p, "app s3cret\n").unwrap();
        assert!(read(&p).unwrap_err().to_string().contains("userlist.txt:1"));
    }
}
