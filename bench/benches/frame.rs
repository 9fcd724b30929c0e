//! Frame header walk and forward per message (group `frame`).
//!
//! The buffer is what a server sends for a small SELECT: RowDescription
//! (3 columns), 10 DataRows, CommandComplete and ReadyForQuery — 13
//! messages, 457 bytes. `walk` reads each header with
//! `sqlmux_protocol::postgres::frame::complete_frame`, as the session pump
//! does before deciding what to do with a message; `forward` also copies
//! each frame into an output buffer, which is what the pump does for every
//! message it passes through unchanged. Throughput is per message.
//!
//! Run: `cargo bench -p sqlmux-bench --bench frame`.

use std::hint::black_box;

use bytes::{BufMut, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sqlmux_protocol::postgres::frame;
use sqlmux_protocol::postgres::message;

/// RowDescription + 10 DataRow + CommandComplete + ReadyForQuery.
fn server_response() -> (BytesMut, u64) {
    let mut b = BytesMut::new();
    // RowDescription: id int4, name text, balance int8.
    let at = b.len();
    b.put_u8(b'T');
    b.put_u32(0);
    b.put_u16(3);
    for (name, oid, size) in [("id", 23u32, 4i16), ("name", 25, -1), ("balance", 20, 8)] {
        b.put_slice(name.as_bytes());
        b.put_u8(0);
        b.put_u32(16_384); // table oid
        b.put_u16(1); // column number
        b.put_u32(oid);
        b.put_i16(size);
        b.put_i32(-1); // type modifier
        b.put_u16(0); // text format
    }
    let len = (b.len() - at - 1) as u32;
    b[at + 1..at + 5].copy_from_slice(&len.to_be_bytes());
    for i in 0..10u32 {
        let id = (1000 + i).to_string();
        let name = format!("customer-{i:04}");
        let balance = (i as i64 * 7919 - 20_000).to_string();
        let at = b.len();
        b.put_u8(b'D');
        b.put_u32(0);
        b.put_u16(3);
        for v in [&id, &name, &balance] {
            b.put_i32(v.len() as i32);
            b.put_slice(v.as_bytes());
        }
        let len = (b.len() - at - 1) as u32;
        b[at + 1..at + 5].copy_from_slice(&len.to_be_bytes());
    }
    message::command_complete(&mut b, "SELECT 10");
    message::ready_for_query(&mut b, b'I');
    (b, 13)
}

const MAX: u32 = 64 << 20;

fn bench(c: &mut Criterion) {
    let (buf, messages) = server_response();
    println!("server response: {messages} messages, {} bytes", buf.len());
    let mut group = c.benchmark_group("frame");
    group.throughput(Throughput::Elements(messages));

    group.bench_function("walk_13_messages", |b| {
        b.iter(|| {
            let mut rest: &[u8] = black_box(&buf[..]);
            let mut tags = 0u32;
            while let Ok(Some((h, _body))) = frame::complete_frame(rest, MAX) {
                tags = tags.wrapping_add(h.tag as u32);
                rest = &rest[h.frame_len()..];
            }
            black_box(tags)
        })
    });

    let mut out = BytesMut::with_capacity(64 * 1024);
    group.bench_function("forward_13_messages", |b| {
        b.iter(|| {
            out.clear();
            let mut rest: &[u8] = black_box(&buf[..]);
            while let Ok(Some((h, body))) = frame::complete_frame(rest, MAX) {
                // The pump looks at a few tags; 'Z' carries the status.
                if h.tag == b'Z' {
                    black_box(body.first());
                }
                let len = h.frame_len();
                out.extend_from_slice(&rest[..len]);
                rest = &rest[len..];
            }
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
