//! A minimal PostgreSQL protocol client for tests that need exact message
//! sequences (pipelines, errors inside batches, raw notifications).

use std::time::Duration;

use bytes::BytesMut;
use sqlmux_protocol::postgres::{frame, message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A minimal protocol client for exercising exact message sequences.
pub struct RawClient {
    tcp: tokio::net::TcpStream,
    buf: BytesMut,
    /// The process id from BackendKeyData.
    pub pid: i32,
}

impl RawClient {
    /// Logs in as postgres (trust) to `db`.
    pub async fn connect(port: u16, db: &str) -> RawClient {
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let mut out = BytesMut::new();
        message::startup(&mut out, &[("user", "postgres"), ("database", db)]);
        tcp.write_all(&out).await.unwrap();
        let mut c = RawClient {
            tcp,
            buf: BytesMut::new(),
            pid: 0,
        };
        let (tags, err) = c.until_ready().await;
        assert_eq!(err, None, "login failed: {tags}");
        c
    }

    /// Sends what `f` writes.
    pub async fn send(&mut self, f: impl FnOnce(&mut BytesMut)) {
        let mut out = BytesMut::new();
        f(&mut out);
        self.tcp.write_all(&out).await.unwrap();
    }

    /// Message tags up to and including ReadyForQuery (auth and parameter
    /// messages left out), and the first error's SQLSTATE.
    pub async fn until_ready(&mut self) -> (String, Option<String>) {
        let mut tags = String::new();
        let mut err = None;
        loop {
            while let Some((h, body)) = frame::complete_frame(&self.buf, 1 << 24).unwrap() {
                let len = h.frame_len();
                if h.tag == b'K' {
                    self.pid = message::decode_backend_key_data(body).map_or(0, |k| k.0);
                }
                if h.tag == b'E' && err.is_none() {
                    err = message::decode_error_fields(body).map(|f| f.code.to_owned());
                }
                if !matches!(h.tag, b'R' | b'S' | b'K') {
                    tags.push(h.tag as char);
                }
                let done = h.tag == b'Z';
                let _ = self.buf.split_to(len);
                if done {
                    return (tags, err);
                }
            }
            let n = tokio::time::timeout(Duration::from_secs(10), self.tcp.read_buf(&mut self.buf))
                .await
                .expect("answer within 10 s")
                .unwrap();
            assert!(n > 0, "connection closed; got {tags}");
        }
    }
}

/// A Bind of `stmt` to the unnamed portal, no parameters.
pub fn bind(b: &mut BytesMut, stmt: &str) {
    use bytes::BufMut;
    b.put_u8(b'B');
    b.put_u32((4 + 1 + stmt.len() + 1 + 2 + 2 + 2) as u32);
    b.put_u8(0);
    b.put_slice(stmt.as_bytes());
    b.put_u8(0);
    b.put_u16(0);
    b.put_u16(0);
    b.put_u16(0);
}

/// An Execute of the unnamed portal.
pub fn execute(b: &mut BytesMut) {
    use bytes::BufMut;
    b.put_u8(b'E');
    b.put_u32(4 + 1 + 4);
    b.put_u8(0);
    b.put_u32(0);
}

impl RawClient {
    /// Every message up to and including ReadyForQuery: (tag, body).
    pub async fn messages_until_ready(&mut self) -> Vec<(u8, Vec<u8>)> {
        let mut all = Vec::new();
        loop {
            while let Some((h, body)) = frame::complete_frame(&self.buf, 1 << 24).unwrap() {
                all.push((h.tag, body.to_vec()));
                let _ = self.buf.split_to(h.frame_len());
                if h.tag == b'Z' {
                    return all;
                }
            }
            let n = tokio::time::timeout(Duration::from_secs(10), self.tcp.read_buf(&mut self.buf))
                .await
                .expect("answer within 10 s")
                .unwrap();
            assert!(n > 0, "connection closed");
        }
    }

    /// Every message until the server closes the connection: (tag, body).
    pub async fn until_closed(&mut self) -> Vec<(u8, Vec<u8>)> {
        let mut all = Vec::new();
        loop {
            while let Some((h, body)) = frame::complete_frame(&self.buf, 1 << 24).unwrap() {
                all.push((h.tag, body.to_vec()));
                let _ = self.buf.split_to(h.frame_len());
            }
            let read =
                tokio::time::timeout(Duration::from_secs(10), self.tcp.read_buf(&mut self.buf))
                    .await
                    .expect("closed within 10 s");
            if !matches!(read, Ok(n) if n > 0) {
                return all;
            }
        }
    }
}
