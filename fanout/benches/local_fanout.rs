//! The cost of handing one event to every local viewer of a room: the hub's loop of
//! refcount bumps and queue pushes, measured for 10,000 receivers.
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use danmaku_fanout::memory::{MemoryConfig, MemoryFanout};
use danmaku_fanout::{Hub, MailboxReceiver, Rooms, mailbox};
use danmaku_protocol::{EventKind, RoomId};

const RECEIVERS: usize = 10_000;
const QUEUE: usize = 256;

fn setup(hub: &Hub, room: &RoomId) -> Vec<MailboxReceiver> {
    (0..RECEIVERS)
        .map(|i| {
            let (tx, rx) = mailbox(QUEUE);
            hub.subscribe(room, i as u64, tx);
            rx
        })
        .collect()
}

fn drain(receivers: &mut [MailboxReceiver]) {
    let mut buf = Vec::with_capacity(QUEUE);
    for rx in receivers {
        buf.clear();
        rx.try_recv_many(&mut buf, QUEUE);
    }
}

fn bench(c: &mut Criterion) {
    let room = RoomId::new("shop-42").expect("room");
    let frame = Bytes::from(vec![b'x'; 100]);

    let hub = Hub::new();
    let mut receivers = setup(&hub, &room);
    c.bench_function("hub_deliver_1_event_to_10k", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for i in 0..iters {
                let t = Instant::now();
                hub.deliver(black_box(&room), i + 1, &frame);
                spent += t.elapsed();
                if (i + 1) % (QUEUE as u64 / 2) == 0 {
                    drain(&mut receivers);
                }
            }
            drain(&mut receivers);
            spent
        })
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let hub = Arc::new(Hub::new());
    let store = MemoryFanout::new(MemoryConfig::default(), hub.clone());
    let mut receivers = setup(&hub, &room);
    let kind = EventKind::new("comment").expect("kind");
    let data = r#"{"user":"u-1","name":"Ann","text":"这个颜色好看! this colour looks great"}"#;
    c.bench_function("publish_1_event_to_10k", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for i in 0..iters {
                let t = Instant::now();
                let p = rt.block_on(store.publish(&room, &kind, black_box(data), None));
                spent += t.elapsed();
                black_box(p.ok());
                if (i + 1) % (QUEUE as u64 / 2) == 0 {
                    drain(&mut receivers);
                }
            }
            drain(&mut receivers);
            spent
        })
    });
}

/// A stream's audience arriving and leaving: 10,000 viewers join one room of the
/// gateway's hub (lanes of 64), then all leave, in an order unrelated to the joins.
fn join_and_leave(c: &mut Criterion) {
    let room = RoomId::new("shop-42").expect("room");
    let hub = Hub::with_lanes(64, Duration::ZERO);
    c.bench_function("hub_join_and_leave_10k", |b| {
        b.iter(|| {
            let boxes: Vec<_> = (0..RECEIVERS)
                .map(|i| {
                    let (tx, rx) = mailbox(QUEUE);
                    hub.subscribe(&room, i as u64, tx);
                    rx
                })
                .collect();
            for i in 0..RECEIVERS {
                hub.unsubscribe(&room, (i * 7_919 % RECEIVERS) as u64);
            }
            black_box(boxes.len())
        })
    });
}

criterion_group!(benches, bench, join_and_leave);
criterion_main!(benches);
