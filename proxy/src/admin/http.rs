//! A minimal HTTP/1.1 responder for the admin port: `GET /metrics`,
//! `/healthz`, `/readyz`, the web page (`/`, [`super::page`]) and its JSON
//! API (`/api/...`, [`super::api`]). One request per connection
//! (`Connection: close`); the request head is bounded in size and time.
//!
//! Only GET and HEAD exist: nothing on HTTP changes state. The page and the
//! API need basic auth from an admin or stats user ([`super::webauth`])
//! unless `admin.http_auth = false`; `/metrics` needs it only with
//! `admin.metrics_auth = true`; the probes never do.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::AdminState;
use crate::Shared;

/// Largest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// Time allowed for the request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// A response: status line, content type, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: String,
    /// Extra response headers.
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    /// A plain-text reply.
    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply::new(status, "text/plain; charset=utf-8", body.into())
    }

    /// A reply with a content type and body.
    pub fn new(status: u16, content_type: &'static str, body: String) -> Reply {
        Reply {
            status,
            content_type,
            body,
            headers: Vec::new(),
        }
    }

    /// A JSON reply.
    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        let mut body = value.to_string();
        body.push('\n');
        Reply::new(status, "application/json", body)
    }

    /// 401 asking for basic auth.
    pub fn unauthorized() -> Reply {
        let mut r = Reply::text(
            401,
            "authentication required: an admin.users or admin.stats_users user and its [[users]] password\n",
        );
        let realm = format!("Basic realm=\"{}\"", super::webauth::REALM);
        r.headers.push(("WWW-Authenticate", realm));
        r
    }
}

/// The parts of a request the admin port looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// The request target (path and query).
    pub target: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

impl Request {
    /// Parses a request head (request line and headers, no body).
    pub fn parse(head: &str) -> Request {
        let mut lines = head.lines();
        let mut parts = lines.next().unwrap_or("").split(' ');
        let method = parts.next().unwrap_or("").to_owned();
        let target = parts.next().unwrap_or("").to_owned();
        let authorization = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| v.trim().to_owned());
        Request {
            method,
            target,
            authorization,
        }
    }

    /// The path without query or fragment.
    pub fn path(&self) -> &str {
        self.target.split(['?', '#']).next().unwrap_or("")
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Why the proxy is not ready, or `None` when it is.
pub fn not_ready(shared: &Shared) -> Option<&'static str> {
    if shared.drain.is_cancelled() {
        Some("draining\n")
    } else if shared.pools.all_paused() {
        Some("paused\n")
    } else {
        None
    }
}

/// Routes one request.
pub fn route(shared: &Shared, admin: &AdminState, req: &Request) -> Reply {
    if req.method != "GET" && req.method != "HEAD" {
        return Reply::text(
            405,
            "only GET and HEAD are supported: the admin port's HTTP side is read-only\n",
        );
    }
    let path = req.path();
    let cfg = shared.config.load();
    match path {
        "/healthz" => return Reply::text(200, "ok\n"),
        "/readyz" => {
            return match not_ready(shared) {
                None => Reply::text(200, "ready\n"),
                Some(why) => Reply::text(503, why),
            };
        }
        _ => {}
    }
    let known =
        path == "/metrics" || path.starts_with("/api/") || super::page::asset(path).is_some();
    if !known {
        return Reply::text(
            404,
            "not found; try /, /api/pools, /api/statements, /metrics, /healthz or /readyz\n",
        );
    }
    let needs_auth = if path == "/metrics" {
        cfg.admin.metrics_auth
    } else {
        cfg.admin.http_auth
    };
    let auth = req.authorization.as_deref();
    if needs_auth && let Err(why) = super::webauth::check(shared, &admin.web_auth, auth) {
        if why != super::webauth::Refusal::NoCredentials {
            tracing::info!(path = %path, refusal = ?why, "admin HTTP request refused");
        }
        return Reply::unauthorized();
    }
    if path == "/metrics" {
        return Reply::new(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            super::metrics::render(shared, admin),
        );
    }
    if let Some(reply) = super::api::route(shared, admin, path) {
        return reply;
    }
    super::page::asset(path).unwrap_or_else(|| Reply::text(404, "not found\n"))
}

/// Serves one HTTP connection (`secure`: over TLS): reads the request
/// head, answers, closes.
pub(crate) async fn serve<S>(shared: Arc<Shared>, admin: Arc<AdminState>, mut tcp: S, secure: bool)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut tcp)).await {
        Ok(Ok(Some(h))) => h,
        Ok(Ok(None)) | Err(_) => return,
        Ok(Err(reply)) => {
            let _ = write_reply(&mut tcp, &reply, false).await;
            return;
        }
    };
    let req = Request::parse(&head);
    let reply = if !secure && needs_tls(&shared, &req) {
        Reply::text(
            403,
            "admin.tls.mode = \"require\": the page and /api are served over HTTPS only\n",
        )
    } else {
        route(&shared, &admin, &req)
    };
    let _ = write_reply(&mut tcp, &reply, req.method == "HEAD").await;
}

/// True when `admin.tls.mode = "require"` keeps this request off plain
/// HTTP: everything but the probes and /metrics (scrapers and kubelets
/// often speak plain HTTP inside the cluster).
fn needs_tls(shared: &Shared, req: &Request) -> bool {
    let cfg = shared.config.load();
    let required = cfg
        .admin
        .tls
        .as_ref()
        .is_some_and(|t| t.mode == crate::config::ClientTlsMode::Require);
    required && !matches!(req.path(), "/healthz" | "/readyz" | "/metrics")
}

/// Reads up to the blank line ending the head. `Ok(None)`: the peer went
/// away; `Err`: a reply to send (head too large).
async fn read_head<S: tokio::io::AsyncRead + Unpin>(tcp: &mut S) -> Result<Option<String>, Reply> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(end);
            return Ok(Some(String::from_utf8_lossy(&buf).into_owned()));
        }
        if buf.len() > MAX_HEAD {
            return Err(Reply::text(431, "request head too large\n"));
        }
    }
}

async fn write_reply<S: tokio::io::AsyncWrite + Unpin>(
    tcp: &mut S,
    r: &Reply,
    head_only: bool,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if !head_only {
        out.extend_from_slice(r.body.as_bytes());
    }
    tcp.write_all(&out).await?;
    tcp.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads_give_method_path_and_authorization() {
        let r = Request::parse(
            "GET /api/pools?x=1 HTTP/1.1\r\nHost: a\r\nauthorization:  Basic YTpi \r\nAccept: */*",
        );
        assert_eq!(r.method, "GET");
        assert_eq!(r.path(), "/api/pools");
        assert_eq!(r.authorization.as_deref(), Some("Basic YTpi"));
        assert_eq!(Request::parse("HEAD / HTTP/1.0").authorization, None);
    }

    #[test]
    fn unauthorized_asks_for_basic_auth_in_the_sqlmux_realm() {
        let r = Reply::unauthorized();
        assert_eq!(r.status, 401);
        assert!(
            r.headers
                .iter()
                .any(|(k, v)| *k == "WWW-Authenticate" && v.starts_with("Basic realm=\"sqlmux\""))
        );
    }
}
