//! Encoding cost of the frames on the hot path.
use criterion::{Criterion, criterion_group, criterion_main};
use danmaku_protocol::{
    EventFrame, EventKind, Limits, Priority, RoomId, ServerFrame, decode_command,
};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let room = RoomId::new("shop-42").expect("room");
    let kind = EventKind::new("comment").expect("kind");
    let data = r#"{"user":"u-1","name":"Ann","text":"这个颜色好看! this colour looks great"}"#;
    c.bench_function("encode_event_100B", |b| {
        b.iter(|| {
            EventFrame::encode(
                black_box(&room),
                "8f3a9c1d2e4b5a60",
                131,
                &kind,
                Priority::Normal,
                1_764_011_234_890,
                black_box(data),
            )
        })
    });
    c.bench_function("encode_ack", |b| {
        b.iter(|| {
            ServerFrame::Ack {
                id: black_box(3),
                seq: Some(131),
                merged: false,
                claim: None,
                opened: None,
            }
            .encode()
        })
    });
    let limits = Limits::default();
    let cmd = r#"{"type":"comment","id":3,"room":"shop-42","text":"这个颜色好看!"}"#;
    c.bench_function("decode_comment", |b| {
        b.iter(|| decode_command(black_box(cmd), &limits))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
