//! Bad input on both listeners, table-driven over raw sockets: oversized,
//! truncated and malformed login packets, invalid UTF-8 in names, wrong
//! protocol versions, TLS garbage, bad messages after login, and clients
//! that stay silent. Each gets a protocol error (or, where PostgreSQL
//! itself answers nothing, nothing) and a closed connection, while a
//! healthy client on the same proxy keeps running queries undisturbed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use sqlmux::Proxy;
use sqlmux::config::Config;
use sqlmux_protocol::postgres::{auth, frame, message};
use sqlmux_tests::{shared_mariadb, shared_pg};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::fresh_db;

/// What the proxy must answer before it closes the connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Expect {
    /// Nothing at all (what PostgreSQL answers a packet that is not a
    /// startup packet, or one cut short by the client's close).
    Silent,
    /// A PostgreSQL ErrorResponse with this SQLSTATE.
    Sqlstate(&'static str),
    /// A MySQL ERR packet with this error code.
    MysqlCode(u16),
    /// At most a TLS alert record (the TLS handshake failed).
    TlsAlert,
}

/// One row of a table: bytes sent after an optional prefix step.
pub(crate) struct Case {
    pub name: &'static str,
    /// The exchange before `bytes`.
    pub before: Before,
    pub bytes: Vec<u8>,
    /// Close the write half after sending (a client that stops mid-packet).
    pub half_close: bool,
    pub expect: Expect,
}

/// What a row does before sending its bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Before {
    /// Nothing (PostgreSQL) or read the greeting (MySQL).
    Connect,
    /// Ask for TLS and read the one-byte 'S' (PostgreSQL) or send the SSL
    /// request after the greeting (MySQL).
    SslAccepted,
    /// Log in completely.
    LoggedIn,
}

/// A healthy client running queries in a loop until stopped; counts its
/// queries and errors.
pub(crate) struct Bystander {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Bystander {
    /// Runs `query` (one round trip, returning an error text on failure)
    /// until stopped.
    pub fn start<F, Fut>(mut query: F) -> Bystander
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let (s, o) = (stop.clone(), ok.clone());
        let task = tokio::spawn(async move {
            let mut errors = Vec::new();
            while !s.load(Ordering::Relaxed) {
                match query().await {
                    Ok(()) => {
                        o.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => errors.push(e),
                }
            }
            errors
        });
        Bystander { stop, ok, task }
    }

    /// Stops it, asserting it ran queries and saw no error.
    pub async fn finish(self) {
        // At least one more query after the last bad connection.
        let seen = self.ok.load(Ordering::Relaxed);
        while self.ok.load(Ordering::Relaxed) <= seen && !self.task.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.stop.store(true, Ordering::Relaxed);
        let errors = tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("bystander stops")
            .unwrap();
        assert!(
            errors.is_empty(),
            "the healthy client saw errors: {errors:?}"
        );
        assert!(
            self.ok.load(Ordering::Relaxed) > 0,
            "the healthy client ran no query"
        );
    }
}

/// Writes `bytes` (closing the write half if asked) and reads until the
/// proxy closes the connection; panics if it does not within 10 s.
pub(crate) async fn send_and_read_to_close(
    s: &mut TcpStream,
    bytes: &[u8],
    half_close: bool,
) -> Vec<u8> {
    // The proxy may close before reading everything (a refused length).
    let _ = s.write_all(bytes).await;
    if half_close {
        let _ = s.shutdown().await;
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("the proxy closed the connection within 10 s");
        match read {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// The SQLSTATE of the first ErrorResponse among PostgreSQL messages.
fn pg_error_code(bytes: &[u8]) -> Option<String> {
    // A one-byte answer to SSLRequest ('S') may come first.
    let mut rest = match bytes.split_first() {
        Some((b'S' | b'N', tail)) if tail.first() == Some(&b'E') => tail,
        _ => bytes,
    };
    while let Ok(Some((h, body))) = frame::complete_frame(rest, 1 << 24) {
        if h.tag == b'E' {
            return message::decode_error_fields(body).map(|f| f.code.to_owned());
        }
        rest = &rest[h.frame_len()..];
    }
    None
}

/// Checks an answer against its row's expectation.
pub(crate) fn check(case: &Case, out: &[u8]) {
    let name = case.name;
    match case.expect {
        Expect::Silent => assert!(out.is_empty(), "{name}: expected no answer, got {out:?}"),
        Expect::Sqlstate(code) => assert_eq!(
            pg_error_code(out).as_deref(),
            Some(code),
            "{name}: {}",
            String::from_utf8_lossy(out)
        ),
        Expect::MysqlCode(code) => assert_eq!(
            mysql_err_code(out),
            Some(code),
            "{name}: {}",
            String::from_utf8_lossy(out)
        ),
        Expect::TlsAlert => assert!(
            out.is_empty() || out[0] == 0x15,
            "{name}: expected at most a TLS alert, got {out:?}"
        ),
    }
}

/// The error code of the first ERR packet among MySQL packets.
pub(crate) fn mysql_err_code(bytes: &[u8]) -> Option<u16> {
    let mut rest = bytes;
    while rest.len() >= 4 {
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], 0]) as usize;
        let payload = rest.get(4..4 + len)?;
        if payload.first() == Some(&0xff) && payload.len() >= 3 {
            return Some(u16::from_le_bytes([payload[1], payload[2]]));
        }
        rest = &rest[4 + len..];
    }
    None
}

const PG_PASSWORD: &str = "pg-bad-pass";

/// A StartupMessage with raw parameter bytes (`k\0v\0...` plus the final NUL).
fn startup_raw(version: u32, params: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&((8 + params.len()) as u32).to_be_bytes());
    b.extend_from_slice(&version.to_be_bytes());
    b.extend_from_slice(params);
    b
}

/// Logs in with md5 over a raw socket; panics unless ReadyForQuery comes.
async fn pg_md5_login(s: &mut TcpStream, db: &str) {
    let mut out = BytesMut::new();
    message::startup(&mut out, &[("user", "postgres"), ("database", db)]);
    s.write_all(&out).await.unwrap();
    let mut buf = BytesMut::new();
    let mut answered = false;
    loop {
        while let Some((h, body)) = frame::complete_frame(&buf, 1 << 24).unwrap() {
            let (tag, body, len) = (h.tag, body.to_vec(), h.frame_len());
            let _ = buf.split_to(len);
            match tag {
                b'R' if body[..4] == [0, 0, 0, 5] && !answered => {
                    let salt = [body[4], body[5], body[6], body[7]];
                    let stored = auth::md5_hash("postgres", PG_PASSWORD);
                    let mut p = BytesMut::new();
                    message::password(&mut p, auth::md5_salted(&stored, salt).as_bytes());
                    s.write_all(&p).await.unwrap();
                    answered = true;
                }
                b'E' => panic!("login failed: {}", String::from_utf8_lossy(&body)),
                b'Z' => return,
                _ => {}
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read_buf(&mut buf))
            .await
            .expect("login answer")
            .unwrap();
        assert!(n > 0, "closed during login");
    }
}

/// Runs one PostgreSQL row against the proxy on `port`.
async fn pg_case(port: u16, db: &str, case: &Case) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    match case.before {
        Before::Connect => {}
        Before::SslAccepted => {
            s.write_all(&[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f])
                .await
                .unwrap();
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.unwrap();
            assert_eq!(&b, b"S", "{}: TLS offered", case.name);
        }
        Before::LoggedIn => pg_md5_login(&mut s, db).await,
    }
    send_and_read_to_close(&mut s, &case.bytes, case.half_close).await
}

/// The PostgreSQL table.
fn pg_cases(db: &str) -> Vec<Case> {
    let ok_params = format!("user\0postgres\0database\0{db}\0\0");
    let row = |name, before, bytes: Vec<u8>, expect| Case {
        name,
        before,
        bytes,
        half_close: false,
        expect,
    };
    let mut cut = startup_raw(196_608, ok_params.as_bytes());
    cut.truncate(12);
    let mut oversized_password = startup_raw(196_608, ok_params.as_bytes());
    oversized_password.extend_from_slice(b"p\x00\x01\x00\x00");
    let mut random = vec![0x16, 0x03, 0x01, 0x00, 0x40];
    random.extend((0..200u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    vec![
        // The length alone is refused: the rest is never sent or buffered.
        row(
            "startup length over 10000",
            Before::Connect,
            vec![0, 0, 0x27, 0x11, 0, 3, 0, 0],
            Expect::Silent,
        ),
        row(
            "startup length 2 GiB",
            Before::Connect,
            vec![0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0],
            Expect::Silent,
        ),
        row(
            "startup length below 8",
            Before::Connect,
            vec![0, 0, 0, 4],
            Expect::Silent,
        ),
        Case {
            half_close: true,
            ..row(
                "startup cut short, then EOF",
                Before::Connect,
                cut,
                Expect::Silent,
            )
        },
        row(
            "protocol 2.0",
            Before::Connect,
            startup_raw(0x0002_0000, ok_params.as_bytes()),
            Expect::Sqlstate("0A000"),
        ),
        row(
            "protocol 4.0",
            Before::Connect,
            startup_raw(0x0004_0000, ok_params.as_bytes()),
            Expect::Sqlstate("0A000"),
        ),
        row(
            "parameter without NUL",
            Before::Connect,
            startup_raw(196_608, b"user\0postgres"),
            Expect::Sqlstate("08P01"),
        ),
        row(
            "invalid UTF-8 user name",
            Before::Connect,
            startup_raw(196_608, b"user\0p\xffq\0\0"),
            Expect::Sqlstate("08P01"),
        ),
        row(
            "invalid UTF-8 database name",
            Before::Connect,
            startup_raw(196_608, b"user\0postgres\0database\0\xc3\x28\0\0"),
            Expect::Sqlstate("08P01"),
        ),
        row(
            "password message over 10000 bytes",
            Before::Connect,
            oversized_password,
            Expect::Sqlstate("08P01"),
        ),
        row(
            "TLS garbage after SSLRequest accepted",
            Before::SslAccepted,
            random,
            Expect::TlsAlert,
        ),
        row(
            "plain data right behind SSLRequest",
            Before::Connect,
            [&[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f][..], b"Q\0\0\0\x09SELECT"].concat(),
            Expect::Sqlstate("08P01"),
        ),
        row(
            "message length below 4",
            Before::LoggedIn,
            b"Q\x00\x00\x00\x02".to_vec(),
            Expect::Sqlstate("08P01"),
        ),
        row(
            "message over max_message_size",
            Before::LoggedIn,
            b"Q\x7f\x00\x00\x00".to_vec(),
            Expect::Sqlstate("08P01"),
        ),
        row(
            "unknown message type",
            Before::LoggedIn,
            b"\xff\x00\x00\x00\x04".to_vec(),
            Expect::Sqlstate("08P01"),
        ),
        Case {
            half_close: true,
            ..row(
                "query cut short, then EOF",
                Before::LoggedIn,
                b"Q\x00\x00\x00\x40SELECT".to_vec(),
                Expect::Silent,
            )
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_bad_input_gets_an_error_and_a_close_and_other_clients_see_nothing() {
    let certs = crate::dropin::make_certs();
    let db = fresh_db(shared_pg(), "badin");
    let text = format!(
        "[postgres]\nlisten = \"127.0.0.1:0\"\nauth = \"md5\"\n{}\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[databases]]\nname = \"{db}\"\nhost = \"127.0.0.1\"\nport = {}\npool = {{ size = 2 }}\n\n\
         [[users]]\nname = \"postgres\"\npassword = \"{PG_PASSWORD}\"\n",
        tls_line(&certs, "prefer"),
        shared_pg().port()
    );
    let cfg = Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let proxy = Proxy::start(cfg).await.expect("proxy starts");
    let port = proxy.postgres_addr().port();
    let url = format!(
        "host=127.0.0.1 port={port} user=postgres password={PG_PASSWORD} dbname={db} sslmode=disable"
    );
    let client = Arc::new(crate::common::connect_url(&url).await.unwrap());
    let bystander = Bystander::start(move || {
        let c = client.clone();
        async move {
            let rows = c
                .simple_query("SELECT 1")
                .await
                .map_err(|e| e.to_string())?;
            let one = rows.iter().any(|m| {
                matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("1"))
            });
            one.then_some(())
                .ok_or_else(|| "SELECT 1 returned no 1".to_owned())
        }
    });
    for case in pg_cases(&db) {
        let out = pg_case(port, &db, &case).await;
        check(&case, &out);
    }
    bystander.finish().await;
    proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_answers_protocol_versions_like_postgresql() {
    let db = fresh_db(shared_pg(), "badver");
    let p = crate::common::start_trust(&crate::common::trust_db(&db, "size = 1")).await;
    for (version, text) in [
        (0x0002_0000u32, "unsupported frontend protocol 2.0"),
        (0x0004_0000, "unsupported frontend protocol 4.0"),
    ] {
        let bytes = startup_raw(version, b"user\0postgres\0\0");
        let mut answers = Vec::new();
        for port in [shared_pg().port(), p.port] {
            let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let out = send_and_read_to_close(&mut s, &bytes, false).await;
            assert!(
                String::from_utf8_lossy(&out).contains(text),
                "port {port}: {out:?}"
            );
            answers.push(pg_error_code(&out));
        }
        // PostgreSQL answers a 2.0 client in the 2.0 format (no SQLSTATE);
        // from 3.0 on, both send 0A000.
        if version >> 16 >= 3 {
            assert_eq!(
                answers,
                [Some("0A000".to_owned()), Some("0A000".to_owned())]
            );
        }
    }
    p.proxy.shutdown_now().await;
}

/// A listener's `tls = {...}` line with the test certificates.
pub(crate) fn tls_line(certs: &crate::dropin::Certs, mode: &str) -> String {
    format!(
        "tls = {{ cert = \"{}\", key = \"{}\", mode = \"{mode}\" }}",
        certs.cert.display(),
        certs.key.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_are_cut_after_client_login_timeout_on_both_listeners() {
    let db = fresh_db(shared_pg(), "logintmo");
    let m = shared_mariadb();
    let text = format!(
        "[general]\nclient_login_timeout = \"300ms\"\n[postgres]\nlisten = \"127.0.0.1:0\"\nauth = \"trust\"\n\
         [mysql]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[databases]]\nname = \"{db}\"\nhost = \"127.0.0.1\"\nport = {}\n\n\
         [[databases]]\nname = \"my\"\nprotocol = \"mysql\"\nhost = \"127.0.0.1\"\nport = {}\n\n\
         [[users]]\nname = \"postgres\"\n",
        shared_pg().port(),
        m.port()
    );
    let proxy = Proxy::start(Config::parse(&text).unwrap()).await.unwrap();
    // PostgreSQL: half a startup packet, then silence.
    let mut s = TcpStream::connect(proxy.postgres_addr()).await.unwrap();
    let out = send_and_read_to_close(&mut s, &[0, 0, 0, 40, 0, 3], false).await;
    let text = String::from_utf8_lossy(&out);
    assert_eq!(pg_error_code(&out).as_deref(), Some("08P01"), "{text}");
    assert!(text.contains("client_login_timeout"), "{text}");
    // MySQL: the greeting arrives, then the client says nothing.
    let mut s = TcpStream::connect(proxy.mysql_addr()).await.unwrap();
    let out = send_and_read_to_close(&mut s, &[], false).await;
    let greeting_len = u32::from_le_bytes([out[0], out[1], out[2], 0]) as usize;
    let after = &out[4 + greeting_len..];
    assert_eq!(
        mysql_err_code(after),
        Some(1158),
        "{}",
        String::from_utf8_lossy(after)
    );
    assert!(String::from_utf8_lossy(after).contains("client_login_timeout"));
    proxy.shutdown_now().await;
}
