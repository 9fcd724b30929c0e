//! The `sqlmux` command line: `check` prints the effective pools and
//! configuration errors name the key and the line.

use std::process::Command;

fn sqlmux() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sqlmux"))
}

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sqlmux-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("sqlmux.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn check_prints_effective_pools_with_their_size_derivation() {
    let p = write(
        "ok",
        "[pool]\nsize_per_cpu = 3\nbackend_cpus = 4\n\n[[databases]]\nname = \"app\"\nhost = \"127.0.0.1\"\n\n[[databases]]\nname = \"reports\"\nhost = \"127.0.0.1\"\npool = { size = 5, mode = \"session\" }\n\n[[users]]\nname = \"alice\"\npassword = \"x\"\n",
    );
    let out = sqlmux()
        .args(["check", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("is valid"), "{text}");
    let app = text
        .lines()
        .find(|l| l.starts_with("app "))
        .expect("app row");
    assert!(
        app.contains("alice") && app.contains("transaction") && app.contains(" 12 "),
        "{app}"
    );
    assert!(app.contains("size_per_cpu 3 x backend_cpus = 4"), "{app}");
    let reports = text
        .lines()
        .find(|l| l.starts_with("reports"))
        .expect("reports row");
    assert!(
        reports.contains("session")
            && reports.contains(" 5 ")
            && reports.contains("explicit pool.size"),
        "{reports}"
    );
    assert!(!text.contains("\"x\""), "password printed: {text}");
}

#[test]
fn unknown_keys_and_bad_values_name_the_key_and_line() {
    let p = write("unknown", "[pool]\nsize = 2\nsize_pre_cpu = 3\n");
    let out = sqlmux()
        .args(["check", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("size_pre_cpu") && err.contains("line 3"),
        "{err}"
    );

    let p = write("dur", "[pool]\ncheckout_timeout = \"soon\"\n");
    let out = sqlmux()
        .args(["check", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("line 2") && err.contains("invalid duration"),
        "{err}"
    );
}

#[test]
fn a_missing_file_is_named() {
    let out = sqlmux()
        .args(["check", "--config", "/nonexistent/sqlmux.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/sqlmux.toml"), "{err}");
}

#[test]
fn run_refuses_an_address_in_use_with_a_clear_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let p = write(
        "inuse",
        &format!("[postgres]\nlisten = \"127.0.0.1:{port}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n"),
    );
    let out = sqlmux().args(["--config"]).arg(&p).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("postgres.listen") && err.contains(&port.to_string()),
        "{err}"
    );
}
