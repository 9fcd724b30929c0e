//! PgBouncer's ini format: `[section]` headers, `key = value` lines,
//! whole-line comments starting with `;` or `#`, and `%include FILE`
//! (relative paths are taken from the including file's directory). Every
//! entry keeps the file and line it came from, so what cannot be imported
//! can be named precisely.

use std::path::{Path, PathBuf};

use super::ImportError;

/// How deep `%include` may nest (a loop would never end otherwise).
const MAX_INCLUDE_DEPTH: usize = 10;

/// Where a line came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One `key = value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Section name, lowercase (`databases`, `pgbouncer`, ...); empty
    /// before the first header.
    pub section: String,
    /// Key as written (database names are case-sensitive); compare
    /// [`Entry::key_lower`] for settings.
    pub key: String,
    /// Value, trimmed.
    pub value: String,
    /// Where it was written.
    pub origin: Origin,
}

impl Entry {
    /// The key in lowercase (PgBouncer's setting names are
    /// case-insensitive).
    pub fn key_lower(&self) -> String {
        self.key.to_ascii_lowercase()
    }
}

/// Reads `path` and its includes into entries, in file order.
pub fn read(path: &Path) -> Result<Vec<Entry>, ImportError> {
    let mut out = Vec::new();
    let mut section = String::new();
    read_into(path, &mut section, &mut out, 0)?;
    Ok(out)
}

fn read_into(
    path: &Path,
    section: &mut String,
    out: &mut Vec<Entry>,
    depth: usize,
) -> Result<(), ImportError> {
    for (origin, line) in content_lines(path)? {
        let line = line.as_str();
        if let Some(file) = line.strip_prefix("%include") {
            include(path, file.trim(), &origin, section, out, depth)?;
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            *section = name.trim().to_ascii_lowercase();
        } else if let Some((key, value)) = line.split_once('=') {
            out.push(Entry {
                section: section.clone(),
                key: key.trim().to_owned(),
                value: value.trim().to_owned(),
                origin,
            });
        } else {
            return Err(ImportError::Syntax {
                origin,
                message: format!("expected `key = value`, `[section]` or `%include`, got {line:?}"),
            });
        }
    }
    Ok(())
}

/// The lines of a PgBouncer file that say something (no blank lines and no
/// `;` or `#` comments), trimmed, each with where it stands.
pub(super) fn content_lines(path: &Path) -> Result<Vec<(Origin, String)>, ImportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ImportError::Read {
        path: path.to_owned(),
        source,
    })?;
    let lines = text.lines().enumerate().filter_map(|(i, raw)| {
        let line = raw.trim();
        let skip = line.is_empty() || line.starts_with(';') || line.starts_with('#');
        let origin = Origin {
            file: path.to_owned(),
            line: i + 1,
        };
        (!skip).then(|| (origin, line.to_owned()))
    });
    Ok(lines.collect())
}

fn include(
    from: &Path,
    file: &str,
    origin: &Origin,
    section: &mut String,
    out: &mut Vec<Entry>,
    depth: usize,
) -> Result<(), ImportError> {
    if depth >= MAX_INCLUDE_DEPTH {
        return Err(ImportError::Syntax {
            origin: origin.clone(),
            message: format!("%include nested more than {MAX_INCLUDE_DEPTH} deep (a loop?)"),
        });
    }
    let target = Path::new(file);
    let target = if target.is_absolute() {
        target.to_path_buf()
    } else {
        from.parent().unwrap_or(Path::new(".")).join(target)
    };
    read_into(&target, section, out, depth + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sqlmux-ini-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn sections_keys_comments_and_includes_keep_their_origin() {
        tmp("extra.ini", "; included\nmax_client_conn = 50\n");
        let main = tmp(
            "main.ini",
            "# comment\n[databases]\nApp = host=db port=5433\n\n[PgBouncer]\nPool_Mode = transaction\n%include extra.ini\nlisten_port=6000\n",
        );
        let e = read(&main).unwrap();
        assert_eq!(e.len(), 4);
        assert_eq!(
            (e[0].section.as_str(), e[0].key.as_str()),
            ("databases", "App")
        );
        assert_eq!(e[0].value, "host=db port=5433");
        assert_eq!(e[0].origin.line, 3);
        assert_eq!(e[1].key_lower(), "pool_mode");
        assert_eq!(e[2].key, "max_client_conn");
        assert_eq!(e[2].section, "pgbouncer");
        assert!(e[2].origin.file.ends_with("extra.ini"));
        assert_eq!(e[2].origin.line, 2);
        assert_eq!((e[3].key.as_str(), e[3].origin.line), ("listen_port", 8));
    }

    #[test]
    fn a_line_that_is_not_ini_names_its_line() {
        let p = tmp("bad.ini", "[pgbouncer]\nthis is not ini\n");
        let err = read(&p).unwrap_err().to_string();
        assert!(err.contains("bad.ini:2"), "{err}");
    }
}
