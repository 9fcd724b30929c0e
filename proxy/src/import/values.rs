//! PgBouncer value conversions: durations in seconds, integers, lists,
//! booleans, paths relative to the ini file.

use std::path::Path;
use std::time::Duration;

use super::plan::Toml;

/// A duration: PgBouncer writes seconds (`600`, `0.5`); unit suffixes
/// (`10s`, `5min`) are accepted too.
pub fn seconds(v: &str) -> Option<Duration> {
    let v = v.trim().trim_matches('\'');
    if let Ok(s) = v.parse::<f64>() {
        return (s >= 0.0 && s.is_finite()).then(|| Duration::from_secs_f64(s));
    }
    humantime::parse_duration(v).ok()
}

/// A duration as sqlmux writes it: `"0"`, `"90s"`, `"1500ms"`.
pub fn duration(d: Duration) -> Toml {
    let text = if d.is_zero() {
        "0".to_owned()
    } else if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis().max(1))
    };
    Toml::str(&text)
}

/// A non-negative integer.
pub fn int(v: &str) -> Option<u64> {
    v.trim().trim_matches('\'').parse().ok()
}

/// A comma-separated list (`admin_users = a, b`).
pub fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().trim_matches('\'').to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A path, made absolute from the ini file's directory when relative.
pub fn path(v: &str, base: &Path) -> String {
    let p = Path::new(v.trim().trim_matches('\''));
    if p.is_absolute() {
        p.display().to_string()
    } else {
        base.join(p).display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_pgbouncer_and_sqlmux_form() {
        assert_eq!(seconds("600"), Some(Duration::from_secs(600)));
        assert_eq!(seconds("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(seconds("10s"), Some(Duration::from_secs(10)));
        assert_eq!(seconds("-1"), None);
        assert_eq!(duration(Duration::ZERO).0, "\"0\"");
        assert_eq!(duration(Duration::from_secs(90)).0, "\"90s\"");
        assert_eq!(duration(Duration::from_millis(1500)).0, "\"1500ms\"");
        assert_eq!(list(" a, b ,,c"), vec!["a", "b", "c"]);
        assert_eq!(
            path("certs/x.pem", Path::new("/etc/pgb")),
            "/etc/pgb/certs/x.pem"
        );
    }
}
