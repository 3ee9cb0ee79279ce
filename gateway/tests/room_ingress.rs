//! A room's ingress of viewer comments over real gateways (one with the memory store,
//! three on every Redis topology): repeated comments merge into one counted
//! `comment.merged`, and the room's comment budget refuses viewers with `room_busy`
//! while hosts and backends still get through. Both are exact across gateways.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use danmaku_gateway::auth::Claims;
use serde_json::{Value, json};
use support::store::Store;
use support::{Gateway, Viewer};

/// Sends one comment of `text` into `room` and returns its reply (the `ack` or
/// `error`), skipping the events that may come first.
async fn comment(v: &mut Viewer, room: &str, text: &str) -> Value {
    let id = v
        .send(json!({"type": "comment", "room": room, "text": text}))
        .await;
    v.reply(id).await
}

/// Opens `n` viewers named `<prefix>-<i>`, spread over the gateways, joined to `room`.
async fn viewers(gws: &[Arc<Gateway>], prefix: &str, n: usize, room: &str) -> Vec<Viewer> {
    let mut out = Vec::new();
    for i in 0..n {
        let mut v = Viewer::connect(&gws[i % gws.len()], &format!("{prefix}-{i}")).await;
        v.join(room).await;
        out.push(v);
    }
    out
}

/// Ten viewers on the gateways in turn send "666" in forms that normalize alike: three
/// copies are sequenced, the other seven are acked `merged:true` without a seq, and when
/// the window ends one low `comment.merged` counts exactly 7 and names up to 5 of their
/// senders. A watcher sees the three comments and that one event, nothing else.
async fn repeated_comments_merge(gws: &[Arc<Gateway>]) {
    let mut watcher = Viewer::connect(&gws[0], "watcher").await;
    watcher.join("m").await;
    let mut senders = viewers(gws, "s", 10, "m").await;
    let texts = ["666", " 666", "６６６", "666 "];
    let (mut sequenced, mut merged, mut merged_by) = (0, 0, Vec::new());
    for (i, v) in senders.iter_mut().enumerate() {
        let ack = comment(v, "m", texts[i % texts.len()]).await;
        assert_eq!(ack["type"], "ack", "{ack}");
        if ack["merged"] == true {
            assert!(ack.get("seq").is_none(), "{ack}");
            merged += 1;
            merged_by.push(format!("s-{i}"));
        } else {
            assert!(
                ack["seq"].as_u64().is_some() && ack.get("merged").is_none(),
                "{ack}"
            );
            sequenced += 1;
        }
    }
    assert_eq!((sequenced, merged), (3, 7));
    let (mut comments, mut told) = (0, None);
    while told.is_none() {
        let e = watcher.next_event().await;
        match e["kind"].as_str() {
            Some("comment") => comments += 1,
            Some("comment.merged") => told = Some(e),
            _ => panic!("unexpected event {e}"),
        }
    }
    let told = told.unwrap();
    assert_eq!(comments, 3);
    assert_eq!(told["priority"], "low", "{told}");
    assert_eq!(told["data"]["text"], "666");
    assert_eq!(told["data"]["count"], 7);
    let users = told["data"]["users"].as_array().unwrap();
    assert_eq!(users.len(), 5, "{told}");
    for u in users {
        assert!(
            merged_by.contains(&u.as_str().unwrap().to_owned()),
            "{u} did not merge"
        );
    }
    // The window is over: the next copy is sequenced again, in its own window.
    let ack = comment(&mut senders[0], "m", "666").await;
    assert!(ack["seq"].as_u64().is_some(), "{ack}");
}

const WINDOW: &[&str] = &["--merge-window-ms", "300"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_comments_merge_into_one_counted_event() {
    let gw = Arc::new(Gateway::start(WINDOW));
    repeated_comments_merge(&[gw]).await;
}

async fn merge_on_redis(store: Store) {
    repeated_comments_merge(&store.gateways_with(WINDOW)).await;
}

on_every_store!(
    repeated_comments_on_three_gateways_merge_exactly,
    merge_on_redis
);

/// Waits for the start of the next second of the clock the budget counts by (Redis
/// and the gateways run on this machine's clock), so that a short burst falls within
/// one second.
async fn at_a_second_start() {
    let into = danmaku_fanout::now_ms() % 1000;
    tokio::time::sleep(Duration::from_millis(1000 - into + 5)).await;
}

/// A budget of 4 comments a second: of 10 viewers' comments (distinct texts) within one
/// second on the gateways in turn, exactly 4 are sequenced and 6 get `room_busy` with a
/// wait to the next second; the host's comment and a backend's event in that second are
/// still sequenced, the host's as high.
async fn comments_beyond_the_budget(gws: &[Arc<Gateway>]) {
    let mut senders = viewers(gws, "b", 10, "busy").await;
    let host_claims = Claims {
        role: Some("host".into()),
        ..Claims::default()
    };
    let mut host = Viewer::connect_claims(&gws[gws.len() - 1], "host", host_claims).await;
    host.join("busy").await;
    at_a_second_start().await;
    let (mut admitted, mut busy) = (0, 0);
    for (i, v) in senders.iter_mut().enumerate() {
        let reply = comment(v, "busy", &format!("hello {i}")).await;
        match reply["type"].as_str() {
            Some("ack") => admitted += 1,
            _ => {
                assert_eq!(reply["code"], "room_busy", "{reply}");
                let wait = reply["retry_after_ms"].as_u64().unwrap();
                assert!((1..=1000).contains(&wait), "{reply}");
                busy += 1;
            }
        }
    }
    let ack = comment(&mut host, "busy", "welcome!").await;
    assert!(
        ack["seq"].as_u64().is_some(),
        "the host is not budgeted: {ack}"
    );
    // A backend is not budgeted (the helper asserts the 200).
    gws[0]
        .publish_event("busy", &json!({"kind": "card", "data": {}}))
        .await;
    assert!(
        danmaku_fanout::now_ms() % 1000 < 900,
        "the burst outlasted its second: the counts below would not hold"
    );
    assert_eq!((admitted, busy), (4, 6));
    let mut host_event = None;
    while host_event.is_none() {
        let e = senders[0].next_event().await;
        if e["data"]["user"] == "host" {
            host_event = Some(e);
        }
    }
    assert_eq!(host_event.unwrap()["priority"], "high");
}

const BUDGET: &[&str] = &["--room-comments-per-s", "4", "--merge-after", "0"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comments_beyond_the_room_budget_are_refused_but_not_the_hosts() {
    let gw = Arc::new(Gateway::start(BUDGET));
    comments_beyond_the_budget(&[gw]).await;
}

async fn budget_on_redis(store: Store) {
    comments_beyond_the_budget(&store.gateways_with(BUDGET)).await;
}

on_every_store!(the_room_budget_on_three_gateways_is_exact, budget_on_redis);

/// The gateway that merged a window's copies is killed before the window ends: the
/// merged copies are still told, exactly once, by a gateway that has viewers of the
/// room (its presence report sequences the windows that ended).
async fn merged_copies_outlive_their_gateway(store: Store) {
    let gws = store.gateways_with(WINDOW);
    let mut watcher = Viewer::connect(&gws[1], "watcher").await;
    watcher.join("m").await;
    let mut senders = viewers(&gws[..1], "s", 6, "m").await;
    let mut merged = 0;
    for v in &mut senders {
        if comment(v, "m", "好看").await["merged"] == true {
            merged += 1;
        }
    }
    assert_eq!(merged, 3);
    gws[0].sigkill();
    let mut told = Vec::new();
    while told.is_empty() {
        let e = watcher.next_event().await;
        if e["kind"] == "comment.merged" {
            told.push(e);
        }
    }
    assert_eq!(told[0]["data"]["count"], 3, "{}", told[0]);
    // Exactly once: a later event follows it directly, with no second merged one.
    let p = gws[2]
        .publish_event("m", &json!({"kind": "card", "data": {}}))
        .await;
    let next = watcher.next_event().await;
    assert_eq!(next["kind"], "card", "{next}");
    assert_eq!(next["seq"].as_u64(), p["seq"].as_u64());
}

on_every_store!(
    merged_copies_are_told_when_their_gateway_is_gone,
    merged_copies_outlive_their_gateway
);
