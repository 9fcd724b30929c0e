//! Bad input on the MySQL listener, table-driven over raw sockets (the
//! rows and the checks are shared with the PostgreSQL table in
//! [`crate::badinput`]).

use std::sync::Arc;

use mysql_async::prelude::Queryable;
use sqlmux::Proxy;
use sqlmux::config::Config;
use sqlmux_protocol::mysql::auth::NativeKey;
use sqlmux_protocol::mysql::caps::{
    CLIENT_CONNECT_WITH_DB, CLIENT_PLUGIN_AUTH, CLIENT_PROTOCOL_41, CLIENT_SECURE_CONNECTION,
    CLIENT_SSL, CLIENT_TRANSACTIONS,
};
use sqlmux_protocol::mysql::handshake::InitialHandshake;
use sqlmux_tests::shared_mariadb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::badinput::{Before, Bystander, Case, Expect, check, send_and_read_to_close, tls_line};

/// Capabilities of a plain 4.1 client.
const CAPS: u32 = CLIENT_PROTOCOL_41
    | CLIENT_SECURE_CONNECTION
    | CLIENT_PLUGIN_AUTH
    | CLIENT_CONNECT_WITH_DB
    | CLIENT_TRANSACTIONS;

/// A packet: 3-byte length, sequence id, payload.
fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    p.push(seq);
    p.extend_from_slice(payload);
    p
}

/// A HandshakeResponse41 payload with raw name bytes.
fn response(caps: u32, user: &[u8], auth: &[u8], db: &[u8]) -> Vec<u8> {
    let mut b = caps.to_le_bytes().to_vec();
    b.extend_from_slice(&(1u32 << 24).to_le_bytes());
    b.push(45);
    b.extend_from_slice(&[0; 23]);
    b.extend_from_slice(user);
    b.push(0);
    b.push(auth.len() as u8);
    b.extend_from_slice(auth);
    b.extend_from_slice(db);
    b.push(0);
    b.extend_from_slice(b"mysql_native_password\0");
    b
}

/// The MySQL table.
pub(crate) fn mysql_bad_input_cases(db: &str) -> Vec<Case> {
    let row = |name, before, bytes: Vec<u8>, expect| Case {
        name,
        before,
        bytes,
        half_close: false,
        expect,
    };
    let good = packet(1, &response(CAPS, b"app", &[0; 20], db.as_bytes()));
    let mut long_auth = response(CAPS, b"app", &[], db.as_bytes());
    long_auth[36] = 200;
    let mut random = vec![0x16, 0x03, 0x01, 0x00, 0x40];
    random.extend((0..200u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let protocol_violation = Expect::MysqlCode(1156);
    vec![
        // The header alone is refused: the payload is never read.
        row(
            "login packet over 64 KiB",
            Before::Connect,
            vec![0, 0, 0x10, 1],
            protocol_violation,
        ),
        row(
            "login packet of 16 MiB - 1 (split)",
            Before::Connect,
            vec![0xff, 0xff, 0xff, 1],
            protocol_violation,
        ),
        Case {
            half_close: true,
            ..row(
                "handshake response cut short, then EOF",
                Before::Connect,
                good[..20].to_vec(),
                Expect::Silent,
            )
        },
        row(
            "handshake response of 10 bytes",
            Before::Connect,
            packet(1, &[0x0d; 10]),
            protocol_violation,
        ),
        row(
            "invalid UTF-8 user name",
            Before::Connect,
            packet(1, &response(CAPS, b"a\xffp", &[], db.as_bytes())),
            protocol_violation,
        ),
        row(
            "invalid UTF-8 database name",
            Before::Connect,
            packet(1, &response(CAPS, b"app", &[], b"\xc3\x28")),
            protocol_violation,
        ),
        row(
            "protocol 4.0 client (no CLIENT_PROTOCOL_41)",
            Before::Connect,
            packet(1, &response(CAPS & !CLIENT_PROTOCOL_41, b"app", &[], b"")),
            protocol_violation,
        ),
        row(
            "auth response longer than the packet",
            Before::Connect,
            packet(1, &long_auth[..40]),
            protocol_violation,
        ),
        row(
            "TLS garbage after the SSL request",
            Before::SslAccepted,
            random,
            Expect::TlsAlert,
        ),
        row(
            "command over max_message_size",
            Before::LoggedIn,
            vec![0, 0, 0x20, 0],
            protocol_violation,
        ),
        row(
            "command with sequence id 5",
            Before::LoggedIn,
            packet(5, b"\x03SELECT 1"),
            protocol_violation,
        ),
        Case {
            half_close: true,
            ..row(
                "command cut short, then EOF",
                Before::LoggedIn,
                vec![0x40, 0, 0, 0, 3, b'S'],
                Expect::Silent,
            )
        },
    ]
}

/// A proxy whose MySQL listener offers TLS, with user app/app-pass and
/// `general.max_message_size` at 1 MiB.
pub(crate) async fn start(db: &str, certs: &crate::dropin::Certs) -> Proxy {
    let text = format!(
        "[general]\nmax_message_size = 1048576\n[postgres]\nlisten = \"127.0.0.1:0\"\n\
         [mysql]\nlisten = \"127.0.0.1:0\"\n{}\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[databases]]\nname = \"{db}\"\nprotocol = \"mysql\"\nhost = \"127.0.0.1\"\nport = {}\npool = {{ size = 2 }}\n\n\
         [[users]]\nname = \"app\"\npassword = \"app-pass\"\n",
        tls_line(certs, "prefer"),
        shared_mariadb().port()
    );
    let cfg = Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    Proxy::start(cfg).await.expect("proxy starts")
}

/// Reads one packet's payload.
async fn read_packet(s: &mut TcpStream) -> Vec<u8> {
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await.unwrap();
    let mut payload = vec![0; u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize];
    s.read_exact(&mut payload).await.unwrap();
    payload
}

/// Logs in as `user`/`pw` with mysql_native_password from the local
/// address `from`: Ok, or the ERR packet's code.
pub(crate) async fn raw_login(
    from: std::net::IpAddr,
    port: u16,
    db: &str,
    user: &str,
    pw: &str,
) -> Result<(), u16> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::new(from, 0)).unwrap();
    let mut s = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    let greeting = InitialHandshake::decode(&read_packet(&mut s).await).expect("greeting");
    let proof = NativeKey::from_password(pw.as_bytes()).response(&greeting.scramble);
    let login = response(CAPS, user.as_bytes(), &proof, db.as_bytes());
    s.write_all(&packet(1, &login)).await.unwrap();
    let answer = read_packet(&mut s).await;
    match answer.first() {
        Some(0) => Ok(()),
        Some(0xff) => Err(u16::from_le_bytes([answer[1], answer[2]])),
        _ => panic!("unexpected answer to a login: {answer:?}"),
    }
}

/// Runs one row against the MySQL listener on `port`.
pub(crate) async fn run(port: u16, db: &str, case: &Case) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let greeting = InitialHandshake::decode(&read_packet(&mut s).await).expect("greeting");
    match case.before {
        Before::Connect => {}
        Before::SslAccepted => {
            let mut ssl = response(CAPS | CLIENT_SSL, b"", &[], b"");
            ssl.truncate(32);
            s.write_all(&packet(1, &ssl)).await.unwrap();
        }
        Before::LoggedIn => {
            let proof = NativeKey::from_password(b"app-pass").response(&greeting.scramble);
            let login = response(CAPS, b"app", &proof, db.as_bytes());
            s.write_all(&packet(1, &login)).await.unwrap();
            let ok = read_packet(&mut s).await;
            assert_eq!(ok.first(), Some(&0), "{}: login: {ok:?}", case.name);
        }
    }
    send_and_read_to_close(&mut s, &case.bytes, case.half_close).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_bad_input_gets_an_err_packet_and_a_close_and_other_clients_see_nothing() {
    let certs = crate::dropin::make_certs();
    let db = crate::mysql::fresh_db("my_badin");
    let proxy = start(&db, &certs).await;
    let port = proxy.mysql_addr().port();
    let url = format!("mysql://app:app-pass@127.0.0.1:{port}/{db}?prefer_socket=false");
    let opts = mysql_async::Opts::from_url(&url).unwrap();
    let conn = mysql_async::Conn::new(opts).await.unwrap();
    let conn = Arc::new(tokio::sync::Mutex::new(conn));
    let bystander = Bystander::start(move || {
        let c = conn.clone();
        async move {
            let mut c = c.lock().await;
            let v: Option<i64> = c.query_first("SELECT 1").await.map_err(|e| e.to_string())?;
            (v == Some(1)).then_some(()).ok_or_else(|| format!("{v:?}"))
        }
    });
    for case in mysql_bad_input_cases(&db) {
        let out = run(port, &db, &case).await;
        check(&case, &out);
    }
    bystander.finish().await;
    proxy.shutdown_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_ssl_request_without_tls_configured_gets_an_err() {
    let db = crate::mysql::fresh_db("my_nossl");
    let text = format!(
        "[postgres]\nlisten = \"127.0.0.1:0\"\n[mysql]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[databases]]\nname = \"{db}\"\nprotocol = \"mysql\"\nhost = \"127.0.0.1\"\nport = {}\n\n\
         [[users]]\nname = \"app\"\npassword = \"app-pass\"\n",
        shared_mariadb().port()
    );
    let proxy = Proxy::start(Config::parse(&text).unwrap()).await.unwrap();
    let mut s = TcpStream::connect(proxy.mysql_addr()).await.unwrap();
    let greeting = InitialHandshake::decode(&read_packet(&mut s).await).expect("greeting");
    assert_eq!(greeting.capabilities & CLIENT_SSL, 0, "TLS not offered");
    let mut ssl = response(CAPS | CLIENT_SSL, b"", &[], b"");
    ssl.truncate(32);
    let case = Case {
        name: "SSL request, TLS not configured",
        before: Before::Connect,
        bytes: packet(1, &ssl),
        half_close: false,
        expect: Expect::MysqlCode(1156),
    };
    let out = send_and_read_to_close(&mut s, &case.bytes, false).await;
    check(&case, &out);
    proxy.shutdown_now().await;
}
