//! Configurations from elsewhere: `sqlmux import pgbouncer.ini
//! [userlist.txt]` and `sqlmux init --from URL`.
//!
//! # Import
//!
//! The ini file is read with its `%include`s ([`ini`]); `[pgbouncer]`
//! settings map onto sqlmux keys ([`mod@pgbouncer`]), `[databases]` lines onto
//! `[[databases]]` ([`databases`], [`connstr`]), and the `auth_file` users
//! onto `[[users]]` ([`userlist`]). Every setting is either carried over or
//! noted, with its file and line, as not supported (or carried over with a
//! difference); the notes head the written TOML as comments and are
//! printed on stderr. The result is validated by the same parser
//! `sqlmux check` uses.
//!
//! # Init
//!
//! [`init`] turns one database URL into a configuration for it and the
//! URL the application should use instead.

pub mod connstr;
pub mod databases;
pub mod ini;
pub mod init;
pub mod pgbouncer;
pub mod plan;
pub mod userlist;
pub mod values;

use std::path::{Path, PathBuf};

use crate::config::Config;
use ini::Origin;
use plan::{Note, NoteKind, Plan};

/// Why an import could not be done at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A line is not in the expected format.
    #[error("{origin}: {message}")]
    Syntax {
        /// Where.
        origin: Origin,
        /// What is wrong.
        message: String,
    },
    /// A database URL that cannot be used.
    #[error("{0}")]
    Url(String),
}

/// A written configuration.
#[derive(Debug)]
pub struct Imported {
    /// The TOML text.
    pub toml: String,
    /// What was not (or not exactly) carried over.
    pub notes: Vec<Note>,
    /// What `sqlmux check` says about the text (`Err` with its message).
    pub check: Result<(), String>,
}

/// Imports a PgBouncer configuration; `userlist` overrides its
/// `auth_file`.
pub fn pgbouncer(ini_path: &Path, userlist: Option<&Path>) -> Result<Imported, ImportError> {
    let entries = ini::read(ini_path)?;
    let base = ini_path.parent().unwrap_or(Path::new("."));
    let base = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
    let mut plan = Plan::default();
    let derived = pgbouncer::apply(&entries, &mut plan, &base);
    databases::apply(&entries, &mut plan, derived.server_tls.as_ref());
    let users_file = match (userlist, &derived.auth_file) {
        (Some(p), _) => Some(p.to_path_buf()),
        (None, Some((p, _))) if p.exists() => Some(p.clone()),
        (None, Some((p, origin))) => {
            let s = format!("[pgbouncer] auth_file = {}", p.display());
            let why = "file not found here; no users imported (give it as the second argument)";
            plan.note(origin, s, NoteKind::Unsupported, why);
            None
        }
        (None, None) => None,
    };
    if let Some(f) = users_file {
        databases::users(&mut plan, &userlist::read(&f)?);
    }
    let header = vec![
        format!("sqlmux configuration imported from {} by `sqlmux import`.", ini_path.display()),
        "The admin console is on admin.listen (PgBouncer's was the virtual database \"pgbouncer\" on the same port; sqlmux accepts that name too).".to_owned(),
    ];
    Ok(finish(&plan, &header))
}

/// Renders and validates a plan.
pub fn finish(plan: &Plan, header: &[String]) -> Imported {
    let toml = plan.render(header);
    let check = Config::parse(&toml).map(|_| ()).map_err(|e| e.to_string());
    Imported {
        toml,
        notes: plan.notes.clone(),
        check,
    }
}
