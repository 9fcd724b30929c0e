//! A minimal HTTP/1.1 responder for the admin port: `GET /metrics`,
//! `/healthz`, `/readyz`. One request per connection (`Connection: close`);
//! the request head is bounded in size and time.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
}

impl Reply {
    fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
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
pub fn route(shared: &Shared, admin: &AdminState, method: &str, target: &str) -> Reply {
    if method != "GET" && method != "HEAD" {
        return Reply::text(405, "only GET and HEAD are supported\n");
    }
    let path = target.split(['?', '#']).next().unwrap_or("");
    match path {
        "/metrics" => Reply {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: super::metrics::render(shared, admin),
        },
        "/healthz" => Reply::text(200, "ok\n"),
        "/readyz" => match not_ready(shared) {
            None => Reply::text(200, "ready\n"),
            Some(why) => Reply::text(503, why),
        },
        _ => Reply::text(404, "not found; try /metrics, /healthz or /readyz\n"),
    }
}

/// Serves one HTTP connection: reads the request head, answers, closes.
pub(crate) async fn serve(shared: Arc<Shared>, admin: Arc<AdminState>, mut tcp: TcpStream) {
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut tcp)).await {
        Ok(Ok(Some(h))) => h,
        Ok(Ok(None)) | Err(_) => return,
        Ok(Err(reply)) => {
            let _ = write_reply(&mut tcp, &reply, false).await;
            return;
        }
    };
    let mut parts = head.lines().next().unwrap_or("").split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let reply = route(&shared, &admin, method, target);
    let _ = write_reply(&mut tcp, &reply, method == "HEAD").await;
}

/// Reads up to the blank line ending the head. `Ok(None)`: the peer went
/// away; `Err`: a reply to send (head too large).
async fn read_head(tcp: &mut TcpStream) -> Result<Option<String>, Reply> {
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

async fn write_reply(tcp: &mut TcpStream, r: &Reply, head_only: bool) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(r.body.as_bytes());
    }
    tcp.write_all(&out).await?;
    tcp.shutdown().await
}
