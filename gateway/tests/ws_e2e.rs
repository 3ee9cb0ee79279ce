//! End to end over loopback: connect → join → publish → event, ordering, resume.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::json;
use support::{Gateway, Viewer};

#[tokio::test]
async fn join_publish_receive() {
    let gw = Gateway::start(&[]);
    let mut v = Viewer::connect(&gw, "u1").await;
    let joined = v.join("shop-42").await;
    assert_eq!(joined["seq"], 0);
    assert_eq!(joined["recovered"], false);
    assert_eq!(joined["snapshot"]["recent"], json!([]));
    let seq = gw.publish("shop-42", json!({"text": "hello"})).await;
    assert_eq!(seq, 1);
    let ev = v.next_event().await;
    assert_eq!(
        (ev["room"].as_str(), ev["seq"].as_u64(), ev["kind"].as_str()),
        (Some("shop-42"), Some(1), Some("comment"))
    );
    assert_eq!(ev["data"]["text"], "hello");
    assert_eq!(ev["epoch"], joined["epoch"]);

    // A client comment is acknowledged with its seq and delivered to the room.
    let id = v
        .send(json!({"type": "comment", "room": "shop-42", "text": "这个颜色好看!"}))
        .await;
    let mut got_ack = false;
    let mut got_event = false;
    while !(got_ack && got_event) {
        let m = v.next().await;
        if m["type"] == "ack" && m["id"] == json!(id) {
            assert_eq!(m["seq"], 2);
            got_ack = true;
        } else if m["type"] == "event" {
            assert_eq!(
                (
                    m["seq"].as_u64(),
                    m["data"]["user"].as_str(),
                    m["data"]["text"].as_str()
                ),
                (Some(2), Some("u1"), Some("这个颜色好看!"))
            );
            got_event = true;
        }
    }
    let id = v.send(json!({"type": "ping"})).await;
    let pong = v.reply(id).await;
    assert_eq!(pong["type"], "pong");
    assert!(pong["server_time"].as_u64().unwrap() > 0);
    let id = v.send(json!({"type": "leave", "room": "shop-42"})).await;
    assert_eq!(
        v.reply(id).await,
        json!({"type": "left", "id": id, "room": "shop-42"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_publishers_fifty_viewers_see_one_gapless_order() {
    const PUBLISHERS: u64 = 10;
    const EACH: u64 = 1_000;
    const VIEWERS: usize = 50;
    let gw = Gateway::start(&[]);
    let mut viewers = Vec::new();
    for i in 0..VIEWERS {
        let mut v = Viewer::connect(&gw, &format!("v{i}")).await;
        v.join("hot").await;
        viewers.push(v);
    }
    let gw = std::sync::Arc::new(gw);
    let mut pubs = Vec::new();
    for p in 0..PUBLISHERS {
        let gw = gw.clone();
        pubs.push(tokio::spawn(async move {
            for i in 0..EACH {
                gw.publish("hot", json!({"p": p, "i": i})).await;
            }
        }));
    }
    let readers: Vec<_> = viewers
        .into_iter()
        .map(|mut v| {
            tokio::spawn(async move {
                // Per publisher, its own events must also arrive in its publish order.
                let mut next_i = [0u64; PUBLISHERS as usize];
                for expected in 1..=PUBLISHERS * EACH {
                    let ev = v.next_event().await;
                    assert_eq!(ev["seq"].as_u64(), Some(expected), "gap or reorder");
                    let p = ev["data"]["p"].as_u64().unwrap() as usize;
                    assert_eq!(ev["data"]["i"].as_u64(), Some(next_i[p]));
                    next_i[p] += 1;
                }
                v.frames
            })
        })
        .collect();
    for p in pubs {
        p.await.unwrap();
    }
    let mut frames = 0;
    for r in readers {
        frames += r.await.unwrap();
    }
    // Each viewer saw 10,000 events exactly once, in order; report batching.
    eprintln!(
        "events per frame: {:.2}",
        (PUBLISHERS * EACH * VIEWERS as u64) as f64 / frames as f64
    );
}

#[tokio::test]
async fn resume_replays_exactly_the_missed_events() {
    let gw = Gateway::start(&["--history-len", "20"]);
    let mut v = Viewer::connect(&gw, "u1").await;
    let joined = v.join("r").await;
    let epoch = joined["epoch"].as_str().unwrap().to_owned();
    for i in 1..=5 {
        gw.publish("r", json!({"i": i})).await;
    }
    for i in 1..=5 {
        assert_eq!(v.next_event().await["seq"], i);
    }
    drop(v);
    for i in 6..=12 {
        gw.publish("r", json!({"i": i})).await;
    }
    let mut v = Viewer::connect(&gw, "u1").await;
    let id = v
        .send(json!({"type": "join", "room": "r", "since": {"epoch": epoch, "seq": 5}}))
        .await;
    let joined = v.reply(id).await;
    assert_eq!(
        (joined["recovered"].as_bool(), joined["seq"].as_u64()),
        (Some(true), Some(12))
    );
    for i in 6..=12 {
        let ev = v.next_event().await;
        assert_eq!(
            (ev["seq"].as_u64(), ev["data"]["i"].as_u64()),
            (Some(i), Some(i))
        );
    }
    gw.publish("r", json!({"i": 13})).await;
    assert_eq!(
        v.next_event().await["seq"],
        13,
        "live events follow the replay"
    );

    // Wrong epoch: not recovered, a snapshot instead, live from S+1.
    let mut w = Viewer::connect(&gw, "u2").await;
    let id = w
        .send(json!({"type": "join", "room": "r", "since": {"epoch": "not-the-epoch", "seq": 5}}))
        .await;
    let j = w.reply(id).await;
    assert_eq!(
        (j["recovered"].as_bool(), j["seq"].as_u64()),
        (Some(false), Some(13))
    );
    let recent = j["snapshot"]["recent"].as_array().unwrap();
    assert_eq!(recent.last().unwrap()["seq"], 13);

    // Older than history (20 kept): not recovered.
    for i in 14..=40 {
        gw.publish("r", json!({"i": i})).await;
    }
    let mut x = Viewer::connect(&gw, "u3").await;
    let id = x
        .send(json!({"type": "join", "room": "r", "since": {"epoch": epoch, "seq": 10}}))
        .await;
    let j = x.reply(id).await;
    assert_eq!(
        (j["recovered"].as_bool(), j["seq"].as_u64()),
        (Some(false), Some(40))
    );
    assert!(j["snapshot"].is_object());
    gw.publish("r", json!({"i": 41})).await;
    assert_eq!(x.next_event().await["seq"], 41);
}
