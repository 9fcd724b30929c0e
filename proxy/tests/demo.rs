//! `sqlmux demo`: the real binary starts a throwaway PostgreSQL, sqlmux
//! and a workload, prints URLs that work, shows N+1 bursts and leaks on
//! the admin API, and removes everything when it stops.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The value after `prefix` on the first line that has it.
fn after<'a>(lines: &'a [String], prefix: &str) -> Option<&'a str> {
    lines
        .iter()
        .find_map(|l| l.trim_start().strip_prefix(prefix).map(str::trim))
}

/// GET `path` on `addr` (host:port); the body.
fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to the admin port");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{path}: {text}");
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

fn psql() -> String {
    let versions = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten();
    versions
        .map(|e| e.path().join("bin/psql"))
        .find(|p| p.exists())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "psql".into())
}

#[test]
fn demo_prints_working_urls_shows_events_and_cleans_up() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sqlmux"))
        .args(["demo", "--for", "25s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sqlmux demo starts");
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let start = Instant::now();
    while !lines.iter().any(|l: &String| l.contains("Ctrl-C stops")) {
        match rx.recv_timeout(Duration::from_secs(90)) {
            Ok(l) => lines.push(l),
            Err(_) => panic!("demo did not come up in time: {lines:#?}"),
        }
    }
    let url = after(&lines, "DATABASE_URL=")
        .expect("a DATABASE_URL")
        .to_owned();
    assert!(url.starts_with("postgres://app@127.0.0.1:"), "{url}");
    let page = after(&lines, "web page:")
        .expect("the page's URL")
        .to_owned();
    let dir = after(&lines, "directory:")
        .expect("the directory")
        .to_owned();
    assert!(after(&lines, "admin console:").is_some_and(|c| c.contains("-U admin sqlmux")));
    assert!(std::path::Path::new(&dir).is_dir(), "{dir}");

    let out = Command::new(psql())
        .args(["-X", "-A", "-t", "-c", "SELECT count(*) FROM books"])
        .arg(&url)
        .output()
        .expect("psql runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.trim(),
        "1000",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The MySQL side: MariaDB behind sqlmux's MySQL port.
    let my_url = lines
        .iter()
        .filter_map(|l| l.trim_start().strip_prefix("DATABASE_URL="))
        .find(|u| u.starts_with("mysql://"))
        .expect("a mysql:// DATABASE_URL")
        .to_owned();
    let my_port = my_url
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .expect("a port in the mysql URL")
        .to_owned();
    let out = Command::new("mariadb")
        .args([
            "--no-defaults",
            "-h",
            "127.0.0.1",
            "-P",
            &my_port,
            "-u",
            "app",
            "-N",
            "-B",
        ])
        .args(["-e", "SELECT COUNT(*) FROM items", "shop"])
        .output()
        .expect("the mariadb CLI runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "200",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let admin = page
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut seen = (false, false);
    while start.elapsed() < Duration::from_secs(60) && seen != (true, true) {
        let n1 = http_get(&admin, "/api/n_plus_one");
        let leaks = http_get(&admin, "/api/leaks");
        seen = (n1.contains("\"repeats\""), leaks.contains("\"last_query\""));
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(seen, (true, true), "N+1 burst and leak seen on the API");
    let statements = http_get(&admin, "/api/statements");
    assert!(
        statements.contains("\"protocol\":\"mysql\"")
            && statements.contains("\"protocol\":\"postgres\""),
        "statements of both protocols: {statements}"
    );

    let status = child.wait().expect("demo exits");
    // The reader ends (and drops its sender) at the end of the output.
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(10)) {
        lines.push(l);
    }
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{status}: {err}");
    let summary = lines
        .iter()
        .find(|l| l.contains("summary"))
        .expect("a summary");
    assert!(summary.contains("N+1 bursts"), "{summary}");
    assert!(!std::path::Path::new(&dir).exists(), "{dir} removed");
}
