//! Server-side prepared statements (COM_STMT_*) through sqlmux in
//! transaction pooling, against the harness's MariaDB: mysql_async's
//! statement cache across servers, re-preparing on a new server, eviction
//! from a server's bounded cache, and, with a raw client, statement ids
//! that belong to one client, parameter types sent once, long data and
//! the errors MySQL gives.

use std::collections::HashSet;
use std::time::Duration;

use bytes::BytesMut;
use mysql_async::prelude::Queryable;
use sqlmux_protocol::mysql::auth::NativeKey;
use sqlmux_protocol::mysql::handshake::{HandshakeResponse, InitialHandshake, SslRequest};
use sqlmux_protocol::mysql::packet;
use sqlmux_protocol::mysql::response_state::{Progress, ResponseTracker};
use sqlmux_tests::shared_mariadb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::connect_url;
use crate::mysql::{admin_rows, connect, fresh_db, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_async_statements_run_on_every_server_of_a_smaller_pool() {
    let db = fresh_db("ps_pool");
    let p = start(&db, 2, "").await;
    let mut tasks = Vec::new();
    for client in 0..6u64 {
        let mut c = connect(&p, &db).await;
        tasks.push(tokio::spawn(async move {
            let stmt = c.prep("SELECT CONNECTION_ID(), ? + 0").await.unwrap();
            let mut seen = HashSet::new();
            for i in 0..25u64 {
                let want = client * 1000 + i;
                let in_txn = i % 3 == 0;
                if in_txn {
                    c.query_drop("BEGIN").await.unwrap();
                }
                let row: Option<(u64, u64)> = c.exec_first(&stmt, (want,)).await.unwrap();
                let (server, got) = row.expect("a row");
                assert_eq!(got, want, "the client's own parameter");
                seen.insert(server);
                if in_txn {
                    c.query_drop("COMMIT").await.unwrap();
                }
            }
            seen
        }));
    }
    let mut all = HashSet::new();
    let mut moved = 0;
    for t in tasks {
        let seen = t.await.unwrap();
        moved += usize::from(seen.len() > 1);
        all.extend(seen);
    }
    assert!(all.len() <= 2, "at most the pool's 2 servers: {all:?}");
    assert!(moved > 0, "some client ran its statement on both servers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_is_prepared_again_on_the_next_server() {
    let db = fresh_db("ps_again");
    let p = start(&db, 1, "").await;
    let mut c = connect(&p, &db).await;
    let stmt = c.prep("SELECT CONNECTION_ID(), ? * 2").await.unwrap();
    let (first, v): (u64, i64) = c.exec_first(&stmt, (21,)).await.unwrap().unwrap();
    assert_eq!(v, 42);
    kill_and_wait(first).await;
    // The killed server is noticed at checkout; the statement follows.
    let (second, v): (u64, i64) = c.exec_first(&stmt, (5,)).await.unwrap().unwrap();
    assert_eq!(v, 10);
    assert_ne!(second, first, "the statement ran on a new server");
}

/// Ends server connection `id` and waits until MariaDB has let it go.
async fn kill_and_wait(id: u64) {
    let m = shared_mariadb();
    m.sql(&format!("KILL {id}"));
    let gone = format!("SELECT COUNT(*) FROM information_schema.processlist WHERE id = {id};");
    for _ in 0..100 {
        if m.sql(&gone).trim().ends_with('0') {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("connection {id} still listed after KILL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_from_a_servers_cache_does_not_break_a_later_execute() {
    let db = fresh_db("ps_evict");
    let p = crate::mysql::start_with_pool(&db, "size = 1, max_prepared_statements = 2").await;
    let mut c = connect(&p, &db).await;
    let mut stmts = Vec::new();
    for k in 1..=4 {
        stmts.push(c.prep(format!("SELECT ? + {k}")).await.unwrap());
    }
    for round in 0..3i64 {
        for (k, s) in stmts.iter().enumerate() {
            let v: Option<i64> = c.exec_first(s, (round * 10,)).await.unwrap();
            assert_eq!(v, Some(round * 10 + k as i64 + 1));
        }
    }
    let admin = connect_url(&format!(
        "host=127.0.0.1 port={} user=admin password=admin-pass dbname=sqlmux",
        p.admin_addr().port()
    ))
    .await
    .expect("admin login");
    let rows = admin_rows(&admin, "SHOW SERVERS").await;
    let held: Vec<&str> = rows
        .iter()
        .map(|r| r["prepared_statements"].as_str())
        .collect();
    assert_eq!(
        held,
        ["2"],
        "one server holding the 2 most recent statements"
    );
}

/// A MySQL client that speaks packets, to send what drivers do not.
struct Raw {
    s: tokio::net::TcpStream,
    buf: BytesMut,
    caps: u32,
}

impl Raw {
    /// Logs in as app/app-pass with mysql_native_password.
    async fn login(addr: std::net::SocketAddr, db: &str) -> Raw {
        let s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut raw = Raw {
            s,
            buf: BytesMut::new(),
            caps: 0,
        };
        let (_, greeting) = raw.packet().await;
        let hello = InitialHandshake::decode(&greeting).unwrap();
        raw.caps = 0x200 | 0x8000 | 0x8_0000 | 0x8 | 0x2000 | 0x2_0000;
        let auth = NativeKey::from_password(b"app-pass").response(&hello.scramble);
        let response = HandshakeResponse {
            head: SslRequest {
                capabilities: raw.caps,
                max_packet: 1 << 24,
                collation: 45,
                mariadb_capabilities: 0,
            },
            user: "app",
            auth_response: &auth,
            database: Some(db),
            auth_plugin: Some("mysql_native_password"),
            raw_attributes: &[],
        };
        let mut out = BytesMut::new();
        response.encode(&mut out, 1);
        raw.s.write_all(&out).await.unwrap();
        let (_, ok) = raw.packet().await;
        assert_eq!(ok[0], 0, "logged in: {ok:?}");
        raw
    }

    async fn packet(&mut self) -> (u8, Vec<u8>) {
        loop {
            if let Some((h, p)) = packet::complete_packet(&self.buf) {
                let r = (h.seq, p.to_vec());
                let _ = self.buf.split_to(h.packet_len());
                return r;
            }
            let read = self.s.read_buf(&mut self.buf);
            let n = tokio::time::timeout(Duration::from_secs(30), read)
                .await
                .expect("an answer, not a hang")
                .unwrap();
            assert!(n > 0, "connection closed");
        }
    }

    /// Sends a command and returns the packets of its answer.
    async fn command(&mut self, payload: &[u8]) -> Vec<Vec<u8>> {
        self.send(payload).await;
        let mut tracker = ResponseTracker::for_command(payload, self.caps).expect("answered");
        let mut packets = Vec::new();
        loop {
            let (seq, p) = self.packet().await;
            let h = packet::Header {
                len: p.len() as u32,
                seq,
            };
            let progress = tracker.server_packet(h, &p).unwrap();
            packets.push(p);
            if matches!(progress, Progress::Done(_)) {
                return packets;
            }
        }
    }

    /// Sends a command that has no answer.
    async fn send(&mut self, payload: &[u8]) {
        let mut out = BytesMut::new();
        packet::write_packet(&mut out, 0, payload);
        self.s.write_all(&out).await.unwrap();
    }

    /// COM_STMT_PREPARE: the statement id.
    async fn prepare(&mut self, sql: &str) -> u32 {
        let mut p = vec![0x16];
        p.extend_from_slice(sql.as_bytes());
        let answer = self.command(&p).await;
        assert_eq!(answer[0][0], 0, "prepare OK: {answer:?}");
        u32::from_le_bytes(answer[0][1..5].try_into().unwrap())
    }
}

/// COM_STMT_EXECUTE of a one-parameter statement: `types` (None sends
/// new_params_bound_flag 0) and the value bytes.
fn execute(id: u32, types: Option<[u8; 2]>, value: &[u8]) -> Vec<u8> {
    let mut p = vec![0x17];
    p.extend_from_slice(&id.to_le_bytes());
    p.push(0);
    p.extend_from_slice(&1u32.to_le_bytes());
    p.push(0); // NULL bitmap
    match types {
        Some(t) => {
            p.push(1);
            p.extend_from_slice(&t);
        }
        None => p.push(0),
    }
    p.extend_from_slice(value);
    p
}

fn err_code(answer: &[Vec<u8>]) -> Option<u16> {
    let p = answer.last()?;
    (p[0] == 0xff).then(|| u16::from_le_bytes([p[1], p[2]]))
}

fn contains(answer: &[Vec<u8>], needle: &[u8]) -> bool {
    answer
        .iter()
        .any(|p| p.windows(needle.len()).any(|w| w == needle))
}

const LONGLONG: [u8; 2] = [8, 0];
const VAR_STRING: [u8; 2] = [253, 0];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_ids_types_and_long_data_belong_to_their_client() {
    let db = fresh_db("ps_raw");
    let p = start(&db, 1, "").await;
    let mut a = Raw::login(p.mysql_addr(), &db).await;
    let mut b = Raw::login(p.mysql_addr(), &db).await;
    let sa = a.prepare("SELECT CONCAT('v', ?)").await;

    // Another client cannot use A's id, and a short EXECUTE is refused.
    let answer = b
        .command(&execute(sa, Some(LONGLONG), &5i64.to_le_bytes()))
        .await;
    assert_eq!(err_code(&answer), Some(1243), "unknown statement for B");
    let sb = b.prepare("SELECT CONCAT('v', ?)").await;
    let answer = b.command(&execute(sb, Some(LONGLONG), &[])).await;
    assert_eq!(err_code(&answer), Some(1210), "too short for one parameter");

    // A binds LONGLONG once, then sends flag 0; B binds a string on the
    // same server statement in between: A's types still apply.
    let answer = a
        .command(&execute(sa, Some(LONGLONG), &5i64.to_le_bytes()))
        .await;
    assert!(contains(&answer, b"v5"), "{answer:?}");
    let answer = b.command(&execute(sb, Some(VAR_STRING), b"\x01x")).await;
    assert!(contains(&answer, b"vx"), "{answer:?}");
    let answer = a.command(&execute(sa, None, &7i64.to_le_bytes())).await;
    assert!(contains(&answer, b"v7"), "A's own types: {answer:?}");

    // Long data is held until the EXECUTE, even with B's traffic between,
    // and lands on a statement no EXECUTE bound other types on.
    let mut long = vec![0x18];
    long.extend_from_slice(&sa.to_le_bytes());
    long.extend_from_slice(&0u16.to_le_bytes());
    long.extend_from_slice(b"abc");
    a.send(&long).await;
    b.command(b"\x03SELECT 1").await;
    let answer = a.command(&execute(sa, Some(VAR_STRING), &[])).await;
    assert!(contains(&answer, b"vabc"), "{answer:?}");

    // COM_STMT_RESET is answered; after COM_STMT_CLOSE the id is gone, for
    // A only.
    let mut reset = vec![0x1a];
    reset.extend_from_slice(&sa.to_le_bytes());
    assert_eq!(a.command(&reset).await[0][0], 0, "reset OK");
    let mut close = vec![0x19];
    close.extend_from_slice(&sa.to_le_bytes());
    a.send(&close).await;
    let answer = a
        .command(&execute(sa, Some(LONGLONG), &1i64.to_le_bytes()))
        .await;
    assert_eq!(err_code(&answer), Some(1243), "closed");
    let answer = b
        .command(&execute(sb, Some(LONGLONG), &2i64.to_le_bytes()))
        .await;
    assert!(
        contains(&answer, b"v2"),
        "B's statement lives on: {answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_prepare_is_the_servers_error_and_leaves_no_statement() {
    let db = fresh_db("ps_fail");
    let p = start(&db, 1, "").await;
    let mut c = connect(&p, &db).await;
    let err = c.prep("SELECT * FROM no_such_table").await.unwrap_err();
    assert!(err.to_string().contains("no_such_table"), "{err}");
    let err = c.prep("SELEC 1").await.unwrap_err();
    assert!(err.to_string().contains("1064"), "{err}");
    let v: Option<i64> = c.exec_first("SELECT ? + 1", (1,)).await.unwrap();
    assert_eq!(v, Some(2));
}

/// COM_STMT_FETCH of `rows` rows from statement `id`.
fn fetch(id: u32, rows: u32) -> Vec<u8> {
    let mut p = vec![0x1c];
    p.extend_from_slice(&id.to_le_bytes());
    p.extend_from_slice(&rows.to_le_bytes());
    p
}

/// Binary rows (header 0x00) in an answer.
fn rows_in(answer: &[Vec<u8>]) -> usize {
    answer
        .iter()
        .filter(|p| p.first() == Some(&0) && p.len() > 1)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_keeps_its_server_until_it_is_exhausted_or_closed() {
    let db = fresh_db("ps_cursor");
    let p = start(&db, 1, "").await;
    let mut a = Raw::login(p.mysql_addr(), &db).await;
    let mut b = Raw::login(p.mysql_addr(), &db).await;
    let s = a.prepare("SELECT seq FROM seq_1_to_5").await;
    let mut open = execute(s, None, &[]);
    open.truncate(10);
    open[5] = 1; // CURSOR_TYPE_READ_ONLY
    let answer = a.command(&open).await;
    assert_eq!(rows_in(&answer), 0, "rows stay on the server: {answer:?}");
    let answer = a.command(&fetch(s, 2)).await;
    assert_eq!(rows_in(&answer), 2, "{answer:?}");
    let answer = a.command(&fetch(s, 10)).await;
    assert_eq!(rows_in(&answer), 3, "the rest: {answer:?}");
    // Exhausted: the one server is free for B.
    assert!(contains(&b.command(b"\x03SELECT 'b1'").await, b"b1"));
    let answer = a.command(&fetch(s, 1)).await;
    assert_eq!(err_code(&answer), Some(1421), "no open cursor");

    // Closing a statement with an open cursor frees the server too.
    a.command(&open).await;
    let mut close = vec![0x19];
    close.extend_from_slice(&s.to_le_bytes());
    a.send(&close).await;
    assert!(contains(&b.command(b"\x03SELECT 'b2'").await, b"b2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insight_times_each_execute_under_the_statements_fingerprint() {
    let db = fresh_db("ps_insight");
    let p = start(&db, 1, "").await;
    let mut c = connect(&p, &db).await;
    let stmt = c.prep("SELECT ? + 7").await.unwrap();
    for i in 0..6 {
        let _: Option<i64> = c.exec_first(&stmt, (i,)).await.unwrap();
    }
    let admin = connect_url(&format!(
        "host=127.0.0.1 port={} user=admin password=admin-pass dbname=sqlmux",
        p.admin_addr().port()
    ))
    .await
    .expect("admin login");
    let rows = admin_rows(&admin, "SHOW STATEMENTS").await;
    let calls: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["query"].as_str(), r["calls"].as_str()))
        .collect();
    assert!(calls.contains(&("select ? + ?", "6")), "{calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_keeps_the_schema_it_was_prepared_in_on_a_new_server() {
    let db = fresh_db("ps_schema");
    let other = fresh_db("ps_schema_b");
    let p = start(&db, 1, "").await;
    let mut c = connect(&p, &db).await;
    c.query_drop("CREATE TABLE t (v VARCHAR(10)); INSERT INTO t VALUES ('home')")
        .await
        .unwrap();
    c.query_drop(format!(
        "CREATE TABLE `{other}`.t (v VARCHAR(10)); INSERT INTO `{other}`.t VALUES ('other')"
    ))
    .await
    .unwrap();
    let stmt = c.prep("SELECT v, CONNECTION_ID() FROM t").await.unwrap();
    let (v, first): (String, u64) = c.exec_first(&stmt, ()).await.unwrap().unwrap();
    assert_eq!(v, "home");
    kill_and_wait(first).await;
    c.query_drop(format!("USE `{other}`")).await.unwrap();
    let (v, second): (String, u64) = c.exec_first(&stmt, ()).await.unwrap().unwrap();
    assert_ne!(second, first, "a new server");
    assert_eq!(v, "home", "names resolve where the statement was prepared");
    let here: Option<String> = c.query_first("SELECT DATABASE()").await.unwrap();
    assert_eq!(
        here.as_deref(),
        Some(other.as_str()),
        "the client's own schema"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_data_beyond_the_packet_limit_gets_an_error_not_memory() {
    let db = fresh_db("ps_long");
    let p = start(&db, 1, "[general]\nmax_message_size = 4096\n").await;
    let mut a = Raw::login(p.mysql_addr(), &db).await;
    let s = a.prepare("SELECT CONCAT('n', LENGTH(?))").await;
    let mut long = vec![0x18];
    long.extend_from_slice(&s.to_le_bytes());
    long.extend_from_slice(&0u16.to_le_bytes());
    long.extend_from_slice(&[b'x'; 3000]);
    a.send(&long).await;
    a.send(&long).await;
    let answer = a.command(&execute(s, Some(VAR_STRING), &[])).await;
    assert_eq!(err_code(&answer), Some(1210), "{answer:?}");
    let mut small = long[..7].to_vec();
    small.extend_from_slice(b"four");
    a.send(&small).await;
    let answer = a.command(&execute(s, Some(VAR_STRING), &[])).await;
    assert!(contains(&answer, b"n4"), "{answer:?}");
}
