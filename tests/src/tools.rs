//! Finding the server and client binaries the harness runs.
//!
//! PostgreSQL binaries come from `$PG_BIN` when set, otherwise from the
//! highest-numbered `/usr/lib/postgresql/<version>/bin` (Debian's layout),
//! otherwise from `PATH`. MariaDB binaries come from `$MARIADB_BIN` when set,
//! otherwise from `PATH` plus the `sbin` directories (`mariadbd` lives in
//! `/usr/sbin`, which a non-root `PATH` often lacks). A missing binary is a
//! panic that names the package to install, never a silently skipped test.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Directories searched after `PATH`, because server binaries live in `sbin`.
const EXTRA_DIRS: &[&str] = &["/usr/local/sbin", "/usr/sbin", "/sbin"];

/// Finds an executable named `name` on `PATH` (then in the `sbin`
/// directories), like the `which` command. A `name` containing `/` is
/// returned as is when it is an executable file.
pub fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The directory holding `initdb` and `postgres`: `$PG_BIN`, else the
/// highest version under `/usr/lib/postgresql/*/bin`, else the directory of
/// `initdb` on `PATH`. Computed once per process.
///
/// # Panics
///
/// When no PostgreSQL server binaries can be found.
pub fn pg_bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("PG_BIN") {
            let dir = PathBuf::from(dir);
            assert!(
                is_executable(&dir.join("initdb")),
                "PG_BIN={} has no executable initdb",
                dir.display()
            );
            return dir;
        }
        if let Some(dir) = newest_debian_pg_bin(Path::new("/usr/lib/postgresql")) {
            return dir;
        }
        if let Some(initdb) = which("initdb") {
            return initdb.parent().map(Path::to_path_buf).unwrap_or_default();
        }
        panic!(
            "PostgreSQL server binaries (initdb, postgres) not found: install them \
             (`apt-get install postgresql`) or set PG_BIN to their directory"
        );
    })
}

/// `<root>/<highest numeric version>/bin` that contains `initdb`.
fn newest_debian_pg_bin(root: &Path) -> Option<PathBuf> {
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(root)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version: Vec<u32> = name
                .split('.')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            let bin = entry.path().join("bin");
            is_executable(&bin.join("initdb")).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// The path of a PostgreSQL program (`initdb`, `postgres`, `psql`,
/// `pgbench`, …): from [`pg_bin_dir`] so client and server versions match,
/// else from `PATH`.
///
/// # Panics
///
/// When the program cannot be found; the message names the package.
pub fn pg_tool(name: &str) -> PathBuf {
    let in_bin = pg_bin_dir().join(name);
    if is_executable(&in_bin) {
        return in_bin;
    }
    which(name).unwrap_or_else(|| {
        panic!(
            "PostgreSQL program `{name}` not found in {} nor on PATH: install it \
             (`apt-get install postgresql postgresql-client`) or set PG_BIN",
            pg_bin_dir().display()
        )
    })
}

/// Panics with a clear message unless `initdb`, `postgres` and `psql` are
/// available. Called by [`crate::PgCluster::start`]; call it early in a test
/// to fail before doing other work.
pub fn require_pg_tools() {
    for tool in ["initdb", "postgres", "psql"] {
        pg_tool(tool);
    }
}

/// The path of a MariaDB program, looked up under its current name and then
/// its old MySQL name (`mariadbd`/`mysqld`, `mariadb-install-db`/
/// `mysql_install_db`, `mariadb`/`mysql`), in `$MARIADB_BIN` first when set.
///
/// # Panics
///
/// When the program cannot be found; the message names the package.
pub fn mariadb_tool(name: &str) -> PathBuf {
    let names: &[&str] = match name {
        "mariadbd" => &["mariadbd", "mysqld"],
        "mariadb-install-db" => &["mariadb-install-db", "mysql_install_db"],
        "mariadb" => &["mariadb", "mysql"],
        "mariadb-admin" => &["mariadb-admin", "mysqladmin"],
        _ => std::slice::from_ref(&name),
    };
    let override_dir = std::env::var_os("MARIADB_BIN").map(PathBuf::from);
    for n in names {
        if let Some(dir) = &override_dir {
            let p = dir.join(n);
            if is_executable(&p) {
                return p;
            }
        }
        if let Some(p) = which(n) {
            return p;
        }
    }
    let package = if name == "mariadb" {
        "mariadb-client"
    } else {
        "mariadb-server"
    };
    panic!(
        "MariaDB program `{name}` not found on PATH or in /usr/sbin: install it \
         (`apt-get install {package}`) or set MARIADB_BIN to its directory"
    );
}

/// Panics with a clear message unless `mariadbd`, `mariadb-install-db` and
/// the `mariadb` client are available. Called by [`crate::MariaDb::start`].
pub fn require_mariadb_tools() {
    for tool in ["mariadbd", "mariadb-install-db", "mariadb"] {
        mariadb_tool(tool);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_finds_sh_and_not_nonsense() {
        assert!(which("sh").is_some());
        assert!(which("sqlmux-no-such-program").is_none());
    }

    #[test]
    fn newest_version_is_numeric_not_lexical() {
        let root = std::env::temp_dir().join(format!("sqlmux-tools-test-{}", std::process::id()));
        for v in ["9.6", "10", "15"] {
            let bin = root.join(v).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            std::fs::write(bin.join("initdb"), "").unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(bin.join("initdb"), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        let found = newest_debian_pg_bin(&root);
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(found, Some(root.join("15").join("bin")));
    }
}
