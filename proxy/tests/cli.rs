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
fn check_prints_the_per_replica_size_and_the_total_with_share() {
    let p = write(
        "share",
        "[pool]\nsize = 20\nshare = 3\n\n[peers]\ndns = \"sqlmux-peers.db.svc\"\n\n[[databases]]\nname = \"app\"\nhost = \"127.0.0.1\"\n\n[[users]]\nname = \"alice\"\npassword = \"x\"\n",
    );
    let out = sqlmux()
        .args(["check", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let header = text
        .lines()
        .find(|l| l.starts_with("database"))
        .expect("header");
    let cols: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(
        &cols[..6],
        ["database", "user", "mode", "size", "share", "total"]
    );
    let app: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("app "))
        .expect("app row")
        .split_whitespace()
        .collect();
    assert_eq!(&app[..6], ["app", "alice", "transaction", "7", "3", "21"]);
    assert!(text.contains("20 / share 3, rounded up"), "{text}");
    assert!(text.contains("sqlmux-peers.db.svc on port 6432"), "{text}");

    let p = write("share0", "[pool]\nsize = 20\nshare = 0\n");
    let out = sqlmux()
        .args(["check", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pool.share") && err.contains("line 3"),
        "{err}"
    );
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

/// Starts the binary on free ports; returns the child and the config path.
fn spawn_proxy(name: &str, extra: &str) -> (std::process::Child, std::path::PathBuf) {
    let p = write(
        name,
        &format!(
            "[general]\nshutdown_timeout = \"2s\"\n[postgres]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{extra}"
        ),
    );
    let child = sqlmux()
        .args(["--config"])
        .arg(&p)
        .env("SQLMUX_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    (child, p)
}

fn wait_exit(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    None
}

#[test]
fn sigterm_and_sigint_stop_the_process_and_sighup_keeps_it_on_a_broken_config() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let (mut child, _) = spawn_proxy(&format!("sig{sig}"), "");
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert!(child.try_wait().unwrap().is_none(), "proxy exited early");
        unsafe { libc::kill(child.id() as i32, sig) };
        let st = wait_exit(&mut child, std::time::Duration::from_secs(10))
            .expect("proxy stops on the signal");
        assert!(st.success(), "exit status {st}");
    }
    // SIGHUP with a broken file: the running configuration stays.
    let (mut child, path) = spawn_proxy("hup", "");
    std::thread::sleep(std::time::Duration::from_millis(500));
    std::fs::write(&path, "[pool]\nsize = \"many\"\n").unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "a broken config on SIGHUP must not stop the proxy"
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    wait_exit(&mut child, std::time::Duration::from_secs(10)).expect("stops");
    let mut log = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(log.contains("configuration refused"), "{log}");
    assert!(log.contains("line 2"), "{log}");
}
