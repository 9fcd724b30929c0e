//! The web page on the admin port: one HTML file, one stylesheet and one
//! script from `admin/web/`, built into the binary with `include_str!` (no
//! build step, no external libraries, nothing fetched from elsewhere, so it
//! works offline). The script reads the JSON API ([`super::api`]) and
//! refreshes itself; the page never changes anything.

use super::http::Reply;

const INDEX: &str = include_str!("web/index.html");
const STYLE: &str = include_str!("web/style.css");
const SCRIPT: &str = include_str!("web/app.js");

/// Only our own files; no inline script, nothing from other origins.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The asset at `path`, if it is one of the page's files.
pub fn asset(path: &str) -> Option<Reply> {
    let (content_type, body) = match path {
        "/" | "/index.html" => ("text/html; charset=utf-8", INDEX),
        "/style.css" => ("text/css; charset=utf-8", STYLE),
        "/app.js" => ("text/javascript; charset=utf-8", SCRIPT),
        _ => return None,
    };
    let mut r = Reply::new(200, content_type, body.to_owned());
    r.headers.push(("Content-Security-Policy", CSP.to_owned()));
    r.headers.push(("X-Frame-Options", "DENY".to_owned()));
    r.headers
        .push(("Referrer-Policy", "no-referrer".to_owned()));
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files() {
        let page = asset("/").unwrap();
        assert!(page.content_type.starts_with("text/html"));
        assert!(page.body.contains("src=\"app.js\""));
        assert!(page.body.contains("href=\"style.css\""));
        for body in [INDEX, STYLE] {
            assert!(!body.contains("http://") && !body.contains("https://"));
        }
        for needle in ["http://", "https://", "fetch(\"http", "import "] {
            assert!(!SCRIPT.contains(needle), "{needle}");
        }
        assert!(asset("/app.js").is_some() && asset("/style.css").is_some());
        assert!(asset("/etc/passwd").is_none());
    }
}
