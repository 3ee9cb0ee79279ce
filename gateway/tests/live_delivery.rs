//! The live-room delivery classes over real gateways (one with the memory store, three
//! on every Redis topology): priorities on the wire, and adaptive viewers whose events
//! and `skipped` markers cover every seq once while every `high` event reaches them.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::store::Store;
use support::{API_KEY, Gateway, Viewer};

async fn publish(gw: &Gateway, body: Value) -> (u16, Value) {
    gw.http("POST", "/v1/rooms/r/events", Some(API_KEY), Some(&body))
        .await
}

/// A backend's event is high unless it says otherwise; a viewer's comment is normal
/// and states no priority (a v1 event, unchanged); a priority that is none of the
/// three is refused.
#[tokio::test]
async fn events_state_their_priority() {
    let gw = Gateway::start(&[]);
    let mut v = Viewer::connect(&gw, "u-1").await;
    v.join("r").await;
    let (s, _) = publish(&gw, json!({"kind": "product.card", "data": {"sku": "A"}})).await;
    assert_eq!(s, 200);
    assert_eq!(v.next_event().await["priority"], "high");
    let (s, _) = publish(&gw, json!({"kind": "card", "data": {}, "priority": "low"})).await;
    assert_eq!(s, 200);
    assert_eq!(v.next_event().await["priority"], "low");
    let (s, _) = publish(
        &gw,
        json!({"kind": "card", "data": {}, "priority": "normal"}),
    )
    .await;
    assert_eq!(s, 200);
    assert!(v.next_event().await.get("priority").is_none());
    let (s, bad) = publish(
        &gw,
        json!({"kind": "card", "data": {}, "priority": "urgent"}),
    )
    .await;
    assert_eq!(
        (s, &bad["error"]["code"]),
        (400, &json!("bad_request")),
        "{bad}"
    );

    let id = v
        .send(json!({"type": "comment", "room": "r", "text": "好看"}))
        .await;
    // The ack and the comment's event may come in either order.
    let (mut acked, mut comment) = (false, Value::Null);
    while !acked || comment.is_null() {
        let m = v.next().await;
        if m["id"] == json!(id) {
            assert_eq!(m["type"], "ack", "{m}");
            acked = true;
        } else if m["type"] == "event" {
            comment = m;
        }
    }
    assert_eq!(comment["kind"], "comment");
    assert!(comment.get("priority").is_none(), "{comment}");
    let id = v
        .send(json!({"type": "like", "room": "r", "count": 1}))
        .await;
    v.reply(id).await;
    assert_eq!(v.next_event().await["priority"], "low", "likes are chatter");
}

/// What a viewer read of a room: the seqs of the events, and the seqs the markers
/// covered, each in the order read (one list, so order and exactly-once show).
#[derive(Default)]
struct Coverage {
    order: Vec<u64>,
    events: Vec<u64>,
    markers: usize,
}

impl Coverage {
    /// Reads until `last` is covered.
    async fn read_to(v: &mut Viewer, last: u64) -> Self {
        let mut c = Self::default();
        while c.order.last() != Some(&last) {
            let m = v.next().await;
            match m["type"].as_str() {
                Some("event") => {
                    let seq = m["seq"].as_u64().unwrap();
                    c.order.push(seq);
                    c.events.push(seq);
                }
                Some("skipped") => {
                    let (from, to) = (m["from"].as_u64().unwrap(), m["to"].as_u64().unwrap());
                    assert_eq!(m["count"].as_u64(), Some(to - from + 1), "{m}");
                    assert_eq!(m["reason"], "sampled", "{m}");
                    c.order.extend(from..=to);
                    c.markers += 1;
                }
                _ => {}
            }
        }
        c
    }
}

const EVENTS: u64 = 200;

/// The priority of the `i`th event published (1-based): every tenth high (the last
/// one included), the rest normal and low in turn.
fn priority_of(i: u64) -> &'static str {
    match (i % 10, i % 2) {
        (0, _) => "high",
        (_, 0) => "normal",
        _ => "low",
    }
}

/// 200 events at about 50 a second through the gateways in turn; an adaptive viewer
/// that wants 5 a second (a tenth) on the last gateway, a viewer of every event on the
/// first. The adaptive viewer stays connected, gets every high event, in order, and
/// its events and markers cover 1..=200 once each; the other gets all 200 and no marker.
async fn adaptive_viewer_in_a_busy_room(gws: &[Arc<Gateway>]) {
    let mut all = Viewer::connect(&gws[0], "all").await;
    all.join("busy").await;
    let mut adaptive = Viewer::connect(&gws[gws.len() - 1], "adaptive").await;
    let id = adaptive
        .send(json!({"type": "join", "room": "busy", "mode": "adaptive", "max_rate": 5}))
        .await;
    assert_eq!(adaptive.reply(id).await["type"], "joined");
    let mut high = Vec::new();
    for i in 1..=EVENTS {
        let gw = &gws[i as usize % gws.len()];
        let body = json!({"kind": "card", "data": {"i": i}, "priority": priority_of(i)});
        let (s, p) = gw
            .http("POST", "/v1/rooms/busy/events", Some(API_KEY), Some(&body))
            .await;
        assert_eq!(s, 200, "{p}");
        if priority_of(i) == "high" {
            high.push(p["seq"].as_u64().unwrap());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = Coverage::read_to(&mut adaptive, EVENTS).await;
    assert_eq!(
        got.order,
        (1..=EVENTS).collect::<Vec<_>>(),
        "every seq once, in order"
    );
    let delivered_high: Vec<u64> = got
        .events
        .iter()
        .copied()
        .filter(|s| high.contains(s))
        .collect();
    assert_eq!(delivered_high, high, "every high event");
    assert!(
        got.markers > 0 && got.events.len() < 100,
        "{} events",
        got.events.len()
    );
    let (_, metrics) = gws[gws.len() - 1]
        .http_raw("GET", "/metrics", None, None)
        .await;
    let counted: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("danmaku_skipped_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    let skipped = (got.order.len() - got.events.len()) as u64;
    assert_eq!(counted, skipped, "every skipped event counted, by priority");
    let everything = Coverage::read_to(&mut all, EVENTS).await;
    assert_eq!(everything.events, (1..=EVENTS).collect::<Vec<_>>());
    assert_eq!(everything.markers, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adaptive_viewer_of_a_busy_room_gets_every_high_event_and_every_seq_told() {
    let gw = Arc::new(Gateway::start(&[]));
    adaptive_viewer_in_a_busy_room(&[gw]).await;
}

async fn adaptive_on_redis(store: Store) {
    adaptive_viewer_in_a_busy_room(&store.gateways()).await;
}

on_every_store!(
    an_adaptive_viewer_on_three_gateways_gets_every_high_event_and_every_seq_told,
    adaptive_on_redis
);
