//! Three gateway processes on real Redis — one server, two client-side shards, and a
//! 3-master Cluster: one gapless order per room across every gateway, resume on another
//! gateway, exact likes, votes and online counts, pub/sub loss healed, and a restart
//! turned into a reset.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use danmaku_fanout::redis::Publisher;
use danmaku_protocol::{EventKind, RoomId};
use serde_json::json;
use support::store::Store;
use support::{API_KEY, Gateway, Viewer};

/// One viewer joined to `room` on each gateway.
async fn one_viewer_per_gateway(gws: &[Arc<Gateway>], room: &str) -> Vec<Viewer> {
    let mut viewers = Vec::new();
    for (g, gw) in gws.iter().enumerate() {
        let mut v = Viewer::connect(gw, &format!("v{g}")).await;
        v.join(room).await;
        viewers.push(v);
    }
    viewers
}

on_every_store!(
    ten_thousand_events_from_four_publishers_in_one_order,
    four_publishers_one_order
);
on_every_store!(
    resume_on_another_gateway_without_loss,
    resume_on_another_gateway
);
on_every_store!(likes_and_votes_exact_across_gateways, likes_and_votes_exact);
on_every_store!(
    killed_pubsub_loses_nothing,
    killed_pubsub_loses_nothing_scenario
);
on_every_store!(online_counts_summed_across_gateways, online_counts_summed);
on_every_store!(
    a_lost_tail_reaches_every_gateway_within_five_seconds,
    lost_tail_within_five_seconds
);
on_every_store!(a_restart_is_a_reset_never_a_silent_gap, restart_is_a_reset);
on_every_store!(
    an_expired_room_comes_back_with_a_new_epoch,
    expired_room_comes_back
);

async fn four_publishers_one_order(store: Store) {
    const EACH: u64 = 2_500;
    let gws = store.gateways();
    let config = store.config();
    let mut viewers = Vec::new();
    for (g, gw) in gws.iter().enumerate() {
        for i in 0..4 {
            let mut v = Viewer::connect(gw, &format!("v{g}-{i}")).await;
            v.join("hot").await;
            viewers.push(v);
        }
    }
    let mut publishers = Vec::new();
    for (p, gw) in gws.iter().enumerate() {
        let gw = gw.clone();
        publishers.push(tokio::spawn(async move {
            for i in 0..EACH {
                gw.publish("hot", json!({"p": p, "i": i})).await;
            }
        }));
    }
    // The fourth publisher is a backend service using the publisher library.
    let library = Publisher::connect(config).await.unwrap();
    publishers.push(tokio::spawn(async move {
        let (room, kind) = (
            RoomId::new("hot").unwrap(),
            EventKind::new("comment").unwrap(),
        );
        for i in 0..EACH {
            library
                .publish(&room, &kind, &format!("{{\"p\":3,\"i\":{i}}}"), None)
                .await
                .unwrap();
        }
    }));
    let readers: Vec<_> = viewers
        .into_iter()
        .map(|mut v| {
            tokio::spawn(async move {
                let mut next_i = [0u64; 4];
                for expected in 1..=4 * EACH {
                    let ev = v.next_event().await;
                    assert_eq!(
                        ev["seq"].as_u64(),
                        Some(expected),
                        "gap, duplicate or reorder"
                    );
                    let p = ev["data"]["p"].as_u64().unwrap() as usize;
                    assert_eq!(
                        ev["data"]["i"].as_u64(),
                        Some(next_i[p]),
                        "a publisher's own order"
                    );
                    next_i[p] += 1;
                }
            })
        })
        .collect();
    for p in publishers {
        p.await.unwrap();
    }
    for r in readers {
        r.await.unwrap();
    }
}

async fn resume_on_another_gateway(store: Store) {
    let gws = store.gateways();
    let mut a = Viewer::connect(&gws[0], "mover").await;
    let joined = a.join("r").await;
    let epoch = joined["epoch"].as_str().unwrap().to_owned();
    for i in 1..=5 {
        gws[1].publish("r", json!({"i": i})).await;
    }
    for i in 1..=5 {
        assert_eq!(a.next_event().await["seq"], i);
    }
    drop(a);
    for i in 6..=12 {
        gws[2].publish("r", json!({"i": i})).await;
    }
    let mut b = Viewer::connect(&gws[1], "mover").await;
    let id = b
        .send(json!({"type": "join", "room": "r", "since": {"epoch": epoch, "seq": 5}}))
        .await;
    let j = b.reply(id).await;
    assert_eq!(
        (j["recovered"].as_bool(), j["seq"].as_u64()),
        (Some(true), Some(12))
    );
    for i in 6..=12 {
        assert_eq!(b.next_event().await["data"]["i"], i);
    }
    gws[0].publish("r", json!({"i": 13})).await;
    assert_eq!(b.next_event().await["seq"], 13);
}

async fn likes_and_votes_exact(store: Store) {
    let gws = store.gateways();
    let poll = json!({"question": "Colour?", "options": ["red", "blue"], "duration_s": 300});
    let (s, created) = gws[0]
        .http("POST", "/v1/rooms/r/polls", Some(API_KEY), Some(&poll))
        .await;
    assert_eq!(s, 200, "{created}");
    let poll_id = created["poll"].as_str().unwrap().to_owned();
    let mut watcher = Viewer::connect(&gws[0], "watcher").await;
    watcher.join("r").await;
    let mut voters = Vec::new();
    for i in 0..30 {
        let mut v = Viewer::connect(&gws[i % 3], &format!("u{i}")).await;
        v.join("r").await;
        let id = v
            .send(json!({"type": "like", "room": "r", "count": 3}))
            .await;
        assert_eq!(v.reply(id).await["type"], "ack");
        let id = v
            .send(json!({"type": "vote", "room": "r", "poll": poll_id, "option": i % 2}))
            .await;
        assert_eq!(v.reply(id).await["type"], "ack");
        voters.push(v);
    }
    // The same user on another gateway cannot vote again.
    let mut again = Viewer::connect(&gws[1], "u0").await;
    again.join("r").await;
    let id = again
        .send(json!({"type": "vote", "room": "r", "poll": poll_id, "option": 1}))
        .await;
    assert_eq!(again.reply(id).await["code"], "already_voted");

    let (mut likes, mut tallies) = (0, vec![0, 0]);
    while likes < 90 || tallies != vec![15, 15] {
        let ev = watcher.next_event().await;
        match ev["kind"].as_str() {
            Some("likes") => likes = ev["data"]["total"].as_u64().unwrap(),
            Some("poll") => {
                tallies = ev["data"]["options"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|o| o["votes"].as_u64().unwrap())
                    .collect();
            }
            _ => {}
        }
        assert!(likes <= 90);
    }
    let (_, info) = gws[2].http("GET", "/v1/rooms/r", Some(API_KEY), None).await;
    assert_eq!(info["likes"], 90);
}

async fn killed_pubsub_loses_nothing_scenario(store: Store) {
    const EVENTS: u64 = 3_000;
    let store = Arc::new(store);
    let gws = store.gateways();
    let viewers = one_viewer_per_gateway(&gws, "r").await;
    let publisher = {
        let gw = gws[0].clone();
        tokio::spawn(async move {
            for i in 0..EVENTS {
                gw.publish("r", json!({"i": i})).await;
            }
        })
    };
    let killer = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || {
            let mut killed = 0;
            for _ in 0..5 {
                killed += store.kill_pubsub();
                std::thread::sleep(std::time::Duration::from_millis(150));
            }
            killed
        })
    };
    for mut v in viewers {
        for expected in 1..=EVENTS {
            assert_eq!(v.next_event().await["seq"].as_u64(), Some(expected));
        }
    }
    publisher.await.unwrap();
    assert!(
        killer.await.unwrap() > 0,
        "pub/sub connections were killed during the run"
    );
}

async fn restart_is_a_reset(mut store: Store) {
    let gws = store.gateways();
    let mut viewers = one_viewer_per_gateway(&gws, "r").await;
    let first_epoch = {
        gws[0].publish("r", json!({"before": true})).await;
        let ev = viewers[0].next_event().await;
        ev["epoch"].as_str().unwrap().to_owned()
    };
    for v in &mut viewers[1..] {
        assert_eq!(v.next_event().await["seq"], 1);
    }

    store.stop();
    let body = json!({"kind": "comment", "data": {"during": true}});
    let (status, err) = gws[1]
        .http("POST", "/v1/rooms/r/events", Some(API_KEY), Some(&body))
        .await;
    // Never a 200 without a seq: 503 when the call certainly did not run, 504 when it
    // was in flight on the connection that broke (the gateway cannot know).
    assert!(
        matches!(
            (status, err["error"]["code"].as_str()),
            (503, Some("unavailable")) | (504, Some("outcome_unknown"))
        ),
        "{status} {err}"
    );
    let (ready, _) = gws[1].http("GET", "/readyz", None, None).await;
    assert_eq!(ready, 503, "not ready while the store is down");

    store.start_again();
    // Publishing succeeds again once the connection is back (the client reconnects).
    let mut seq = None;
    for _ in 0..200 {
        let (status, ok) = gws[1]
            .http("POST", "/v1/rooms/r/events", Some(API_KEY), Some(&body))
            .await;
        if status == 200 {
            seq = ok["seq"].as_u64();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(seq, Some(1), "a new epoch starts at seq 1");
    // Every viewer, still connected, is told that continuity restarted.
    for v in &mut viewers {
        let reset = v.next_of("reset").await;
        assert_ne!(reset["epoch"].as_str(), Some(first_epoch.as_str()));
        assert!(reset["seq"].as_u64().unwrap() >= 1);
    }
    let (ready, _) = gws[1].http("GET", "/readyz", None, None).await;
    assert_eq!(ready, 200);
}

async fn online_counts_summed(store: Store) {
    let gws = store.gateways();
    let mut viewers = Vec::new();
    for (g, n) in [(0, 2), (1, 3), (2, 4)] {
        for i in 0..n {
            let mut v = Viewer::connect(&gws[g], &format!("o{g}-{i}")).await;
            v.join("r").await;
            viewers.push(v);
        }
    }
    // Presence is latest-value-wins: read until every viewer sees the whole room.
    for v in &mut viewers {
        while v.next_of("presence").await["online"] != 9 {}
    }
    for gw in &gws {
        let (_, info) = gw.http("GET", "/v1/rooms/r", Some(API_KEY), None).await;
        assert_eq!(info["online"], 9);
    }
    viewers.truncate(5); // the four viewers of the third gateway leave
    for v in &mut viewers {
        while v.next_of("presence").await["online"] != 5 {}
    }
}

async fn lost_tail_within_five_seconds(store: Store) {
    let gws = store.gateways();
    let mut viewers = Vec::new();
    for (g, gw) in gws.iter().enumerate() {
        let mut v = Viewer::connect(gw, &format!("t{g}")).await;
        // Several rooms (on a Cluster, in several slots) in every position check.
        for other in ["other-a", "other-b", "other-c"] {
            v.join(other).await;
        }
        v.join("tail").await;
        viewers.push(v);
    }
    gws[0].publish("tail", json!({"i": 1})).await;
    for v in &mut viewers {
        assert_eq!(v.next_event().await["seq"], 1);
    }
    // Sequence event 2 behind pub/sub's back, as if its message had been lost.
    let epoch = store.cli_room("{dm:tail}:m", &["HGET", "{dm:tail}:m", "epoch"]);
    assert_eq!(
        store
            .cli_room("{dm:tail}:m", &["HINCRBY", "{dm:tail}:m", "seq", "1"])
            .trim(),
        "2"
    );
    let record = danmaku_fanout::testing::data_record(
        2,
        epoch.trim(),
        danmaku_fanout::now_ms(),
        "comment",
        r#"{"i":2}"#,
    );
    store.cli_room("{dm:tail}:m", &["XADD", "{dm:tail}:s", "2-0", "r", &record]);
    let lost_at = std::time::Instant::now();
    for v in &mut viewers {
        assert_eq!(v.next_event().await["data"]["i"], 2);
    }
    assert!(
        lost_at.elapsed() < std::time::Duration::from_secs(5),
        "found in {:?}",
        lost_at.elapsed()
    );
    for gw in &gws {
        let (ready, _) = gw.http("GET", "/readyz", None, None).await;
        assert_eq!(
            ready, 200,
            "position checks of several rooms keep the gateway ready"
        );
    }
}

/// A room nobody watches expires after `--room-ttl-s`; a viewer resuming it on another
/// gateway is told `recovered:false` with the new epoch, and sees its events from 1.
async fn expired_room_comes_back(store: Store) {
    let gws = store.gateways_with(&["--room-ttl-s", "1"]);
    let mut a = Viewer::connect(&gws[0], "early").await;
    let joined = a.join("brief").await;
    let epoch = joined["epoch"].as_str().unwrap().to_owned();
    for i in 1..=3 {
        gws[1].publish("brief", json!({"i": i})).await;
    }
    for i in 1..=3 {
        assert_eq!(a.next_event().await["seq"], i);
    }
    drop(a);
    // Nobody watches: every key of the room goes after its TTL.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while store
        .cli_room("{dm:brief}:m", &["EXISTS", "{dm:brief}:m"])
        .trim()
        != "0"
    {
        assert!(std::time::Instant::now() < deadline, "the room expires");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut b = Viewer::connect(&gws[2], "late").await;
    let id = b
        .send(json!({"type": "join", "room": "brief", "since": {"epoch": epoch, "seq": 3}}))
        .await;
    let j = b.reply(id).await;
    assert_eq!(j["recovered"].as_bool(), Some(false), "{j}");
    assert_ne!(j["epoch"].as_str(), Some(epoch.as_str()), "a new epoch");
    assert_eq!(j["seq"].as_u64(), Some(0));
    gws[0].publish("brief", json!({"i": 1})).await;
    let ev = b.next_event().await;
    assert_eq!(
        (ev["seq"].as_u64(), ev["epoch"].as_str()),
        (Some(1), j["epoch"].as_str())
    );
}
