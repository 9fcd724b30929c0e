//! Tracker tests: captured MariaDB 10.11 responses (packets as sent, with
//! headers), generated result set chains, and arbitrary input.

use super::*;
use crate::mysql::caps::{CLIENT_PROTOCOL_41, CLIENT_SESSION_TRACK};
use crate::mysql::packet::{self, MAX_CHUNK};
use crate::mysql::status::{
    SERVER_MORE_RESULTS_EXISTS, SERVER_STATUS_AUTOCOMMIT, SERVER_STATUS_CURSOR_EXISTS,
};
use crate::mysql::test_hex as hex;
use proptest::prelude::*;

const EOF_CAPS: u32 = CLIENT_PROTOCOL_41 | CLIENT_SESSION_TRACK;
const DEP_CAPS: u32 = EOF_CAPS | CLIENT_DEPRECATE_EOF;

/// Feeds captured server packets; every packet but the last must answer
/// `More`, and the last one's answer is returned with the tracker.
fn run(command: u8, caps: u32, packets: &[&str]) -> (Progress, ResponseTracker) {
    let mut t = ResponseTracker::for_command(&[command], caps).unwrap();
    let mut last = Progress::More;
    for (i, p) in packets.iter().enumerate() {
        let bytes = hex(p);
        let (h, payload) = packet::complete_packet(&bytes).unwrap();
        assert_eq!(h.packet_len(), bytes.len(), "capture {i} is one packet");
        assert_eq!(last, Progress::More, "packet {i} came after {last:?}");
        last = t
            .server_packet(h, &payload[..payload.len().min(PEEK_LEN)])
            .unwrap();
    }
    (last, t)
}

fn done(status: u16) -> Progress {
    Progress::Done(Completion::Status(ServerStatus(status)))
}

const COL_A: &str = "17000002036465660000000161000c3f0001000000038100000000";

#[test]
fn text_result_set_with_eof_packets() {
    let (p, t) = run(
        0x03,
        EOF_CAPS,
        &[
            "0100000102",
            COL_A,
            "17000003036465660000000162000c2d0004000000fd0100270000",
            "05000004fe00000200",
            "0400000501310178",
            "05000006fe00000200",
        ],
    );
    assert_eq!((p, t.rows()), (done(0x0002), 1));
}

#[test]
fn text_result_set_with_deprecate_eof() {
    let (p, t) = run(
        0x03,
        DEP_CAPS,
        &[
            "0100000102",
            COL_A,
            "17000003036465660000000162000c2d0004000000fd0100270000",
            "0400000401310178",
            "07000005fe000002000000",
        ],
    );
    assert_eq!((p, t.rows()), (done(0x0002), 1));
}

#[test]
fn multi_statement_results_chain_until_the_last_one() {
    let (p, t) = run(
        0x03,
        EOF_CAPS,
        &[
            "0100000101",
            "17000002036465660000000131000c3f0001000000038100000000",
            "05000003fe00000a00",
            "020000040131",
            "05000005fe00000a00",
            "0100000601",
            "17000007036465660000000132000c3f0001000000038100000000",
            "05000008fe00000200",
            "020000090132",
            "0500000afe00000200",
        ],
    );
    assert_eq!((p, t.rows()), (done(0x0002), 2));
    let (p, t) = run(
        0x03,
        DEP_CAPS,
        &[
            "0100000101",
            "17000002036465660000000131000c3f0001000000038100000000",
            "020000030131",
            "07000004fe00000a000000",
            "0100000501",
            "17000006036465660000000132000c3f0001000000038100000000",
            "020000070132",
            "07000008fe000002000000",
        ],
    );
    assert_eq!((p, t.rows()), (done(0x0002), 2));
}

#[test]
fn result_set_followed_by_ok_with_session_state() {
    // SELECT 1; SET @a=1 with state tracking on.
    let (p, _) = run(
        0x03,
        DEP_CAPS,
        &[
            "0100000101",
            "17000002036465660000000131000c3f0001000000038100000000",
            "020000030131",
            "07000004fe00000a000000",
            "0c000005000000024000000003020131",
        ],
    );
    assert_eq!(p, done(0x4002));
}

#[test]
fn error_in_the_middle_of_a_chain_ends_the_response() {
    let (p, t) = run(
        0x03,
        EOF_CAPS,
        &[
            "0100000101",
            "17000002036465660000000131000c3f0001000000038100000000",
            "05000003fe00000a00",
            "020000040131",
            "05000005fe00000a00",
            "2a000006ff7a042334325330325461626c652027746573742e6e6f737563682720646f65736e2774206578697374",
        ],
    );
    assert_eq!(
        (p, t.rows()),
        (Progress::Done(Completion::Err { code: 1146 }), 1)
    );
}

#[test]
fn call_ends_with_an_ok_after_its_result_sets() {
    let (p, t) = run(
        0x03,
        DEP_CAPS,
        &[
            "0100000101",
            "17000002036465660000000161000c3f0001000000038100000000",
            "020000030131",
            "07000004fe00000a000000",
            "0100000501",
            "17000006036465660000000162000c3f0001000000038100000000",
            "020000070132",
            "07000008fe00000a000000",
            "0700000900000002000000",
        ],
    );
    assert_eq!((p, t.rows()), (done(0x0002), 2));
}

#[test]
fn null_row_is_not_a_local_infile_request() {
    // SELECT 1/0: one row holding NULL (0xFB).
    let (p, t) = run(
        0x03,
        EOF_CAPS,
        &[
            "0100000101",
            "190000020364656600000003312f30000c3f0007000000f68000040000",
            "05000003fe00000200",
            "01000004fb",
            "05000005fe01000200",
        ],
    );
    assert_eq!((p, t.rows()), (done(0x0002), 1));
}

#[test]
fn local_infile_hands_the_turn_to_the_client_and_back() {
    let mut t = ResponseTracker::for_command(b"\x03LOAD DATA LOCAL INFILE", EOF_CAPS).unwrap();
    let req = hex("0b000001fb2f746d702f782e637376");
    let (h, p) = packet::complete_packet(&req).unwrap();
    assert_eq!(t.server_packet(h, p), Ok(Progress::ClientTurn));
    assert!(t.is_client_turn());
    assert_eq!(t.server_packet(h, p), Err(ResponseError::ServerOutOfTurn));
    assert_eq!(
        t.client_packet(Header { len: 7, seq: 2 }),
        Ok(Progress::ClientTurn)
    );
    assert_eq!(
        t.client_packet(Header { len: 0, seq: 3 }),
        Ok(Progress::More)
    );
    let ok = hex(
        "37000004000100020002002f5265636f7264733a2031202044656c657465643a20302020536b69707065643a203020205761726e696e67733a2032",
    );
    let (h, p) = packet::complete_packet(&ok).unwrap();
    assert_eq!(t.server_packet(h, &p[..PEEK_LEN]), Ok(done(0x0002)));
    assert_eq!(t.affected_rows(), 1);
}

#[test]
fn local_infile_chunk_of_exactly_16_mib_needs_its_own_empty_continuation() {
    let mut t = ResponseTracker::new(ResponseShape::TextResult, EOF_CAPS);
    assert_eq!(
        t.server_packet(Header { len: 2, seq: 1 }, b"\xfbf"),
        Ok(Progress::ClientTurn)
    );
    let full = Header {
        len: MAX_CHUNK as u32,
        seq: 2,
    };
    assert_eq!(t.client_packet(full), Ok(Progress::ClientTurn));
    // Ends the 16 MiB logical packet, not the file.
    assert_eq!(
        t.client_packet(Header { len: 0, seq: 3 }),
        Ok(Progress::ClientTurn)
    );
    assert_eq!(
        t.client_packet(Header { len: 0, seq: 4 }),
        Ok(Progress::More)
    );
}

#[test]
fn prepare_answers_with_and_without_eof() {
    let (p, t) = run(
        0x16,
        EOF_CAPS,
        &[
            "0c000001000100000002000200000000",
            "1700000203646566000000013f000c3f0000000000068000000000",
            "17000003036465660000000179000c3f0000000000068000000000",
            "05000004fe00000200",
            "17000005036465660000000178000c3f0011000000058000000000",
            "17000006036465660000000179000c3f0000000000068000000000",
            "05000007fe00000200",
        ],
    );
    assert_eq!(p, done(0x0002));
    let ok = t.prepared().unwrap();
    assert_eq!((ok.statement_id, ok.columns, ok.params), (1, 2, 2));
    let (p, _) = run(
        0x16,
        DEP_CAPS,
        &[
            "0c000001000100000002000200000000",
            "1700000203646566000000013f000c3f0000000000068000000000",
            "17000003036465660000000179000c3f0000000000068000000000",
            "17000004036465660000000178000c3f0011000000058000000000",
            "17000005036465660000000179000c3f0000000000068000000000",
        ],
    );
    assert_eq!(p, Progress::Done(Completion::NoStatus));
    // Parameters only (DO ?), and a statement with neither.
    let (p, _) = run(
        0x16,
        EOF_CAPS,
        &[
            "0c000001000300000000000100000000",
            "1700000203646566000000013f000c3f0000000000068000000000",
            "05000003fe00000200",
        ],
    );
    assert_eq!(p, done(0x0002));
    let (p, _) = run(0x16, DEP_CAPS, &["0c000001000500000000000000000000"]);
    assert_eq!(p, Progress::Done(Completion::NoStatus));
}

#[test]
fn binary_result_set_from_execute() {
    let (p, t) = run(
        0x17,
        DEP_CAPS,
        &[
            "0100000102",
            "17000002036465660000000178000c3f0016000000088000000000",
            "17000003036465660000000179000c2d0008000000fe0100270000",
            "0d00000400000600000000000000026869",
            "07000005fe000002000000",
        ],
    );
    assert_eq!((p, t.rows()), (done(0x0002), 1));
}

const SEQ_COL: &str = "340000020364656604746573740a7365715f315f746f5f330a7365715f315f746f5f3303736571037365710c3f0014000000082110000000";

#[test]
fn cursor_execute_returns_only_metadata() {
    let (p, t) = run(
        0x17,
        EOF_CAPS,
        &["0100000101", SEQ_COL, "05000003fe00006200"],
    );
    assert_eq!((p, t.rows()), (done(0x0062), 0));
    let Progress::Done(Completion::Status(s)) = p else {
        unreachable!()
    };
    assert!(s.cursor_exists() && !s.is_transaction_boundary());
    // MariaDB sends an OK (0xFE) after the metadata under DEPRECATE_EOF too.
    let (p, _) = run(
        0x17,
        DEP_CAPS,
        &["0100000101", SEQ_COL, "07000003fe000062000000"],
    );
    assert_eq!(p, done(0x0062));
}

#[test]
fn fetch_rows_until_last_row_sent() {
    let (p, t) = run(
        0x1c,
        EOF_CAPS,
        &[
            "0a00000100000100000000000000",
            "0a00000200000200000000000000",
            "05000003fe00004200",
        ],
    );
    assert_eq!((p, t.rows()), (done(0x0042), 2));
    let (p, t) = run(
        0x1c,
        DEP_CAPS,
        &["0a00000100000300000000000000", "07000002fe000082000000"],
    );
    assert_eq!((p, t.rows()), (done(0x0082), 1));
}

#[test]
fn field_list_statistics_and_set_option() {
    let cols = [
        "28000001036465660474657374047463617004746361700269640269640c3f000b0000000303500000000130",
        "2b00000203646566047465737404746361700474636170046e616d65046e616d650c2d0028000000fd0000000000fb",
    ];
    let (p, _) = run(0x04, EOF_CAPS, &[cols[0], cols[1], "05000003fe00000200"]);
    assert_eq!(p, done(0x0002));
    let (p, _) = run(
        0x04,
        DEP_CAPS,
        &[cols[0], cols[1], "07000003fe000002000000"],
    );
    assert_eq!(p, done(0x0002));
    let (p, _) = run(0x09, EOF_CAPS, &["0c000001557074696d653a2032323720"]);
    assert_eq!(p, Progress::Done(Completion::NoStatus));
    let (p, _) = run(0x1b, EOF_CAPS, &["05000001fe00000200"]);
    assert_eq!(p, done(0x0002));
    let (p, _) = run(0x1b, DEP_CAPS, &["07000001fe000002000000"]);
    assert_eq!(p, done(0x0002));
    let (p, _) = run(0x1f, DEP_CAPS, &["0700000100000002000000"]);
    assert_eq!(p, done(0x0002));
}

#[test]
fn change_user_auth_switch_waits_for_the_client() {
    let mut t = ResponseTracker::for_command(b"\x11root\0", EOF_CAPS).unwrap();
    let switch = hex(
        "2c000001fe6d7973716c5f6e61746976655f70617373776f72640053507479254777442b4b742b72224f4858656f2300",
    );
    let (h, p) = packet::complete_packet(&switch).unwrap();
    assert_eq!(t.server_packet(h, &p[..PEEK_LEN]), Ok(Progress::ClientTurn));
    assert_eq!(
        t.client_packet(Header { len: 20, seq: 2 }),
        Ok(Progress::More)
    );
    assert_eq!(
        t.server_packet(Header { len: 2, seq: 3 }, b"\x01\x03"),
        Ok(Progress::More)
    );
    let ok = [0u8, 0, 0, 2, 0, 0, 0];
    assert_eq!(
        t.server_packet(Header { len: 7, seq: 4 }, &ok),
        Ok(done(0x0002))
    );
    assert_eq!(
        t.server_packet(Header { len: 7, seq: 5 }, &ok),
        Err(ResponseError::AfterDone)
    );
}

#[test]
fn commands_without_answer_have_no_tracker() {
    assert!(ResponseTracker::for_command(b"\x19\x01\0\0\0", EOF_CAPS).is_none());
    assert!(ResponseTracker::for_command(b"\x18", EOF_CAPS).is_none());
    assert!(ResponseTracker::for_command(b"\x01", EOF_CAPS).is_none());
    assert!(ResponseTracker::new(ResponseShape::None, 0).is_done());
    let mut t = ResponseTracker::for_command(b"\x03", EOF_CAPS).unwrap();
    assert_eq!(
        t.client_packet(Header { len: 0, seq: 1 }),
        Err(ResponseError::ClientOutOfTurn)
    );
}

#[test]
fn long_row_starting_with_0xfe_is_a_row_and_its_continuation_is_skipped() {
    let mut t = ResponseTracker::new(ResponseShape::TextResult, DEP_CAPS);
    let more = Ok(Progress::More);
    assert_eq!(t.server_packet(Header { len: 1, seq: 1 }, b"\x01"), more);
    assert_eq!(
        t.server_packet(Header { len: 5, seq: 2 }, b"\x03def\0"),
        more
    );
    // A row holding a 16 MiB string: 0xFE + 8-byte length, in two packets.
    let long = Header {
        len: MAX_CHUNK as u32,
        seq: 3,
    };
    assert_eq!(t.server_packet(long, &[0xFE, 0, 0, 0, 1, 0, 0, 0, 0]), more);
    // The continuation looks like an OK terminator but is row data.
    assert_eq!(
        t.server_packet(Header { len: 7, seq: 4 }, &[0xFE, 0, 0, 2, 0, 0, 0]),
        more
    );
    assert_eq!(t.rows(), 1);
    let end = [0xFE, 0, 0, 2, 0, 0, 0];
    assert_eq!(
        t.server_packet(Header { len: 7, seq: 5 }, &end),
        Ok(done(0x0002))
    );
}

#[test]
fn garbage_is_an_error_not_a_hang() {
    let mut t = ResponseTracker::new(ResponseShape::TextResult, EOF_CAPS);
    let err = t.server_packet(Header { len: 0, seq: 1 }, b"").unwrap_err();
    assert!(matches!(err, ResponseError::Unexpected { .. }), "{err}");
    let mut t = ResponseTracker::new(ResponseShape::Single, EOF_CAPS);
    assert_eq!(
        t.server_packet(Header { len: 1, seq: 1 }, b"\x00"),
        Err(ResponseError::Truncated("OK status"))
    );
}

// ---------------------------------------------------------------------------
// Generated chains

#[derive(Debug, Clone)]
enum Part {
    Ok,
    Set { columns: u8, rows: u8 },
}

fn ok_payload(first: u8, status: u16) -> Vec<u8> {
    let s = status.to_le_bytes();
    vec![first, 0, 0, s[0], s[1], 0, 0]
}

fn eof_payload(status: u16) -> Vec<u8> {
    let s = status.to_le_bytes();
    vec![0xFE, 0, 0, s[0], s[1]]
}

/// Server payloads of a chain of results, the last with `status`.
fn chain(parts: &[Part], dep: bool, binary: bool, status: u16) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let more = if i + 1 < parts.len() {
            SERVER_MORE_RESULTS_EXISTS
        } else {
            0
        };
        let st = status | more;
        match *part {
            Part::Ok => out.push(ok_payload(0, st)),
            Part::Set { columns, rows } => {
                out.push(vec![columns]);
                out.extend((0..columns).map(|_| b"\x03def\0\0\0\x01c".to_vec()));
                if !dep {
                    out.push(eof_payload(SERVER_STATUS_AUTOCOMMIT));
                }
                let row: &[u8] = if binary { b"\x00\x00\x05" } else { b"\x01x" };
                out.extend((0..rows).map(|_| row.to_vec()));
                out.push(if dep {
                    ok_payload(0xFE, st)
                } else {
                    eof_payload(st)
                });
            }
        }
    }
    out
}

fn part() -> impl Strategy<Value = Part> {
    prop_oneof![
        Just(Part::Ok),
        (1u8..5, 0u8..6).prop_map(|(columns, rows)| Part::Set { columns, rows })
    ]
}

proptest! {
    /// Any chain of OKs and result sets ends exactly at its last packet,
    /// with its status and the number of rows sent.
    #[test]
    fn generated_chains_end_at_their_last_packet(
        parts in proptest::collection::vec(part(), 1..5),
        dep in any::<bool>(),
        binary in any::<bool>(),
        status in any::<u16>(),
    ) {
        let status = status & !(SERVER_MORE_RESULTS_EXISTS | SERVER_STATUS_CURSOR_EXISTS);
        let caps = if dep { DEP_CAPS } else { EOF_CAPS };
        let shape = if binary { ResponseShape::BinaryResult } else { ResponseShape::TextResult };
        let mut t = ResponseTracker::new(shape, caps);
        let packets = chain(&parts, dep, binary, status);
        for (i, p) in packets.iter().enumerate() {
            let got = t.server_packet(Header { len: p.len() as u32, seq: i as u8 + 1 }, p).unwrap();
            if i + 1 < packets.len() {
                prop_assert_eq!(got, Progress::More);
            } else {
                prop_assert_eq!(got, done(status));
            }
        }
        let rows: u64 = parts.iter().map(|p| match p { Part::Set { rows, .. } => u64::from(*rows), Part::Ok => 0 }).sum();
        prop_assert_eq!(t.rows(), rows);
    }

    /// Arbitrary packets never panic; every packet is consumed with one
    /// answer, so the walk ends with the input, and nothing is accepted
    /// after `Done` or an error.
    #[test]
    fn arbitrary_packets_never_panic(
        shape in 0usize..10,
        dep in any::<bool>(),
        packets in proptest::collection::vec(
            (prop_oneof![0u32..40, Just(MAX_CHUNK as u32)], proptest::collection::vec(any::<u8>(), 0..40), any::<bool>()),
            0..40,
        ),
    ) {
        let shapes = [
            ResponseShape::None, ResponseShape::Single, ResponseShape::TextResult,
            ResponseShape::BinaryResult, ResponseShape::Fetch, ResponseShape::Prepare,
            ResponseShape::FieldList, ResponseShape::Statistics, ResponseShape::AuthExchange,
            ResponseShape::Unsupported,
        ];
        let mut t = ResponseTracker::new(shapes[shape], if dep { DEP_CAPS } else { EOF_CAPS });
        for (len, mut payload, from_client) in packets {
            payload.truncate(len as usize);
            let h = Header { len, seq: 0 };
            let r = if from_client || t.is_client_turn() { t.client_packet(h) } else { t.server_packet(h, &payload) };
            match r {
                Ok(Progress::Done(_)) => {
                    prop_assert!(t.is_done());
                    prop_assert_eq!(t.server_packet(h, &payload), Err(ResponseError::AfterDone));
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
}
