//! The live-room delivery classes over real gateways (one with the memory store, three
//! on every Redis topology): priorities on the wire, adaptive viewers whose events
//! and `skipped` markers cover every seq once while every `high` event reaches them, and
//! targeted events that reach exactly their audience (live, on resume, in snapshots).
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

/// What a viewer read of a room: `Ok(seq)` an event, `Err((from, to))` a targeted skip.
type Read = Vec<Result<u64, (u64, u64)>>;

/// Reads events and `skipped` markers until `last` is covered.
async fn read_targeted(v: &mut Viewer, last: u64) -> Read {
    let mut got = Read::new();
    let covered = |g: &Read| g.last().map(|r| *r.as_ref().unwrap_or_else(|s| &s.1));
    while covered(&got) != Some(last) {
        let m = v.next().await;
        got.extend(targeted_item(&m));
    }
    got
}

fn targeted_item(m: &Value) -> Option<Result<u64, (u64, u64)>> {
    match m["type"].as_str()? {
        "event" => Some(Ok(m["seq"].as_u64().unwrap())),
        "skipped" => {
            assert_eq!(m["reason"], "targeted", "{m}");
            let (from, to) = (m["from"].as_u64().unwrap(), m["to"].as_u64().unwrap());
            assert_eq!(m["count"].as_u64(), Some(to - from + 1), "{m}");
            Some(Err((from, to)))
        }
        _ => None,
    }
}

/// Six events, four of them targeted: a user, any of a tag, all of two tags, any of a
/// tag; three viewers, each on another gateway when there are several. Each gets the
/// events of its audiences and one `targeted` marker for each run of the others', live,
/// on a resume with `since` and in a fresh join's `snapshot.recent`; a backend's
/// history holds all six, without any audience tag.
async fn targeted_events(gws: &[Arc<Gateway>]) {
    let gw = |i: usize| &gws[i % gws.len()];
    let mut one = Viewer::connect_tagged(gw(0), "u-1", &["new"]).await;
    let mut vip = Viewer::connect_tagged(gw(1), "u-2", &["vip", "new"]).await;
    let mut plain = Viewer::connect(gw(2), "u-3").await;
    let epoch = one.join("t").await["epoch"].as_str().unwrap().to_owned();
    vip.join("t").await;
    plain.join("t").await;
    let audiences = [
        None,
        Some(json!({"users": ["u-1"]})),
        Some(json!({"tags": ["vip"]})),
        Some(json!({"tags_all": ["new", "vip"]})),
        Some(json!({"tags": ["new"]})),
        None,
    ];
    for (i, audience) in audiences.iter().enumerate() {
        let mut body = json!({"kind": "offer", "data": {"i": i}});
        if let Some(a) = audience {
            body["audience"] = a.clone();
        }
        let (s, p) = gw(i)
            .http("POST", "/v1/rooms/t/events", Some(API_KEY), Some(&body))
            .await;
        assert_eq!((s, p["seq"].as_u64()), (200, Some(i as u64 + 1)), "{p}");
        assert_eq!(
            p.get("audience_online").is_some(),
            audience.is_some(),
            "{p}"
        );
        if gws.len() == 1 && audience.is_some() {
            let matched = [1, 1, 1, 2][i - 1];
            assert_eq!(p["audience_online"], matched, "{audience:?}");
        }
    }
    let want_one: Read = vec![Ok(1), Ok(2), Err((3, 4)), Ok(5), Ok(6)];
    let want_vip: Read = vec![Ok(1), Err((2, 2)), Ok(3), Ok(4), Ok(5), Ok(6)];
    let want_plain: Read = vec![Ok(1), Err((2, 5)), Ok(6)];
    assert_eq!(read_targeted(&mut one, 6).await, want_one);
    assert_eq!(read_targeted(&mut vip, 6).await, want_vip);
    assert_eq!(read_targeted(&mut plain, 6).await, want_plain);

    // A resume after seq 1 replays the same, from another gateway.
    let mut again = Viewer::connect(gw(1), "u-3").await;
    let r = again.join_reply("t", Some((&epoch, 1))).await;
    assert_eq!(r["recovered"], true, "{r}");
    assert_eq!(read_targeted(&mut again, 6).await, want_plain[1..].to_vec());
    // A fresh join's snapshot: the same view of the recent events.
    let mut fresh = Viewer::connect_tagged(gw(2), "u-2", &["vip", "new"]).await;
    let recent = fresh.join("t").await["snapshot"]["recent"].clone();
    let seen: Read = recent
        .as_array()
        .unwrap()
        .iter()
        .filter_map(targeted_item)
        .collect();
    assert_eq!(seen, want_vip);
    for e in recent.as_array().unwrap() {
        assert!(
            e.get("audience").is_none(),
            "no audience reaches a client: {e}"
        );
    }
    // A backend sees every event.
    let seqs = gw(0).history_seqs("t", 0, 100).await;
    assert_eq!(seqs, (1..=6).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_targeted_event_reaches_exactly_its_audience_and_the_others_are_told() {
    let gw = Arc::new(Gateway::start(&[]));
    targeted_events(&[gw]).await;
}

async fn targeted_on_redis(store: Store) {
    targeted_events(&store.gateways()).await;
}

on_every_store!(
    targeted_events_on_three_gateways_reach_exactly_their_audience,
    targeted_on_redis
);

/// An audience that is not one of the three shapes, or holds bad ids, is refused.
#[tokio::test]
async fn a_bad_audience_is_refused_with_400() {
    let gw = Gateway::start(&[]);
    for audience in [
        json!({"users": []}),
        json!({"tags": ["Not A Tag"]}),
        json!({"users": ["a"], "tags": ["b"]}),
        json!("vip"),
    ] {
        let body = json!({"kind": "offer", "data": {}, "audience": audience});
        let (s, e) = publish(&gw, body).await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (400, Some("bad_request")),
            "{audience}: {e}"
        );
    }
}

/// A small room publishing as fast as a backend can (each publish awaiting the last)
/// asks for few writes: its events go out as they come, not coalesced by the hot-room
/// linger. With coalescing at any cost (`--coalesce-writes-per-s 0`) the same room is
/// batched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_busy_room_is_written_event_by_event() {
    async fn frames_for_100_events(extra: &[&str]) -> u64 {
        let gw = Gateway::start(extra);
        let mut v = Viewer::connect(&gw, "u").await;
        v.join("small").await;
        let frames_before = v.frames;
        for i in 0..100 {
            gw.publish_event("small", &json!({"kind": "card", "data": {"i": i}}))
                .await;
        }
        let mut seen = 0;
        while seen < 100 {
            if v.next().await["type"] == "event" {
                seen += 1;
            }
        }
        v.frames - frames_before
    }
    let immediate = frames_for_100_events(&[]).await;
    assert!(
        immediate > 50,
        "{immediate} frames for 100 events: coalesced"
    );
    let batched = frames_for_100_events(&["--coalesce-writes-per-s", "0"]).await;
    assert!(
        batched < 50,
        "{batched} frames for 100 events: not coalesced"
    );
}
