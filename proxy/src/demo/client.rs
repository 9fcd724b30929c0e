//! A minimal PostgreSQL client for the demo's workload and set-up: trust
//! login and simple queries, built on the protocol crate's encoders and
//! frame headers. It is what an application's driver would be, cut down
//! to what the demo needs.

use std::io;
use std::net::SocketAddr;

use bytes::{Buf, BytesMut};
use sqlmux_protocol::postgres::frame::peek_header;
use sqlmux_protocol::postgres::message::{
    self, AuthRequest, decode_auth_request, decode_error_fields,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest message accepted from the server.
const MAX_MESSAGE: u32 = 16 * 1024 * 1024;

/// One connection.
#[derive(Debug)]
pub struct PgClient {
    tcp: TcpStream,
    buf: BytesMut,
}

/// What a query returned.
#[derive(Debug, Clone, Default)]
pub struct QueryResult {
    /// DataRows received.
    pub rows: u64,
    /// The server's error message, if the query failed.
    pub error: Option<String>,
}

impl PgClient {
    /// Connects and logs in (the server or sqlmux must trust the user).
    pub async fn connect(
        addr: SocketAddr,
        user: &str,
        database: &str,
        app: &str,
    ) -> io::Result<PgClient> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let mut c = PgClient {
            tcp,
            buf: BytesMut::with_capacity(8192),
        };
        let mut out = BytesMut::new();
        let params = [
            ("user", user),
            ("database", database),
            ("application_name", app),
        ];
        message::startup(&mut out, &params);
        c.tcp.write_all(&out).await?;
        let r = c.until_ready().await?;
        match r.error {
            Some(e) => Err(io::Error::other(format!("login refused: {e}"))),
            None => Ok(c),
        }
    }

    /// Runs one simple query (several statements allowed) to its
    /// ReadyForQuery. A server error is a result, not an `Err`.
    pub async fn query(&mut self, sql: &str) -> io::Result<QueryResult> {
        let mut out = BytesMut::new();
        message::query(&mut out, sql);
        self.tcp.write_all(&out).await?;
        self.until_ready().await
    }

    /// Sends Terminate and closes.
    pub async fn close(mut self) {
        let mut out = BytesMut::new();
        message::terminate(&mut out);
        let _ = self.tcp.write_all(&out).await;
    }

    /// Reads messages up to ReadyForQuery.
    async fn until_ready(&mut self) -> io::Result<QueryResult> {
        let mut result = QueryResult::default();
        loop {
            let (tag, body) = self.next_message().await?;
            match tag {
                b'Z' => return Ok(result),
                b'D' => result.rows += 1,
                b'E' => {
                    let f = decode_error_fields(&body).unwrap_or_default();
                    result.error = Some(format!("{} ({})", f.message, f.code));
                }
                b'R' => match decode_auth_request(&body) {
                    Some(AuthRequest::Ok) => {}
                    _ => {
                        return Err(io::Error::other(
                            "the demo client supports trust logins only",
                        ));
                    }
                },
                _ => {}
            }
        }
    }

    /// The next whole message: tag and body.
    async fn next_message(&mut self) -> io::Result<(u8, BytesMut)> {
        loop {
            let header = peek_header(&self.buf, MAX_MESSAGE).map_err(io::Error::other)?;
            if let Some(h) = header
                && self.buf.len() >= h.frame_len()
            {
                let mut frame = self.buf.split_to(h.frame_len());
                frame.advance(5);
                return Ok((h.tag, frame));
            }
            if self.tcp.read_buf(&mut self.buf).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                ));
            }
        }
    }
}
