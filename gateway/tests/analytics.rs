//! Retention data over real gateways (one with the memory store, three on each Redis
//! topology): joins, distinct users, resumes and interactions counted exactly however
//! the viewers spread over the gateways; a visit continued across a resume on another
//! gateway counted as one visit with one dwell; per variant; and a viewer still
//! present a (simulated) minute after it came counted in its join minute's retention.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::store::Store;
use support::{API_KEY, Gateway, Viewer};

/// The analytics clock runs 60 times faster: a real second is a simulated minute.
const FLAGS: &[&str] = &["--analytics-time-scale", "60"];

async fn analytics(gw: &Gateway, room: &str) -> Value {
    let path = format!("/v1/rooms/{room}/analytics");
    let (status, doc) = gw.http("GET", &path, Some(API_KEY), None).await;
    assert_eq!(status, 200, "{doc}");
    doc
}

/// The document once `done` holds of it (the other gateways flush every 200 ms).
async fn analytics_when(gw: &Gateway, room: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        last = analytics(gw, room).await;
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the figures never settled: {last:#}");
}

/// What the scenario did: viewers, resumes, comments, likes.
struct Did {
    viewers: i64,
    resumed: i64,
    comments: i64,
    likes: i64,
}

async fn counted_exactly(gws: &[Arc<Gateway>]) -> Did {
    let room = "retention";
    let (status, _) = gws[0]
        .http(
            "PUT",
            &format!("/v1/rooms/{room}/settings"),
            Some(API_KEY),
            Some(&json!({"experiment": {"name": "opening", "variants": ["A", "B"]}})),
        )
        .await;
    assert_eq!(status, 200);
    let n = 30;
    let mut viewers = Vec::new();
    let mut variants = (0, 0);
    let (mut comments, mut likes): (i64, i64) = (0, 0);
    for i in 0..n {
        let mut v = Viewer::connect(&gws[i % gws.len()], &format!("u-{i}")).await;
        let joined = v.join(room).await;
        match joined["variant"].as_str() {
            Some("A") => variants.0 += 1,
            Some("B") => variants.1 += 1,
            other => panic!("no variant: {other:?}"),
        }
        if i % 3 == 0 {
            let id = v
                .send(json!({"type": "comment", "room": room, "text": format!("hi {i}")}))
                .await;
            assert_eq!(v.reply(id).await["type"], "ack");
            comments += 1;
        }
        if i % 5 == 0 {
            let id = v
                .send(json!({"type": "like", "room": room, "count": 3}))
                .await;
            assert_eq!(v.reply(id).await["type"], "ack");
            likes += 1;
        }
        viewers.push((v, joined));
    }
    // A third of them drop off and come back on the next gateway, resuming.
    let mut resumed: i64 = 0;
    for (i, (v, joined)) in viewers.iter_mut().enumerate() {
        if i % 3 != 1 {
            continue;
        }
        let epoch = joined["epoch"].as_str().unwrap().to_owned();
        let seq = joined["seq"].as_u64().unwrap();
        let back = Viewer::connect(&gws[(i + 1) % gws.len()], &format!("u-{i}")).await;
        drop(std::mem::replace(v, back));
        let again = v.join_reply(room, Some((&epoch, seq))).await;
        assert_eq!(again["recovered"], true, "{again}");
        resumed += 1;
    }
    // Everyone is counted as present a simulated minute after joining.
    let doc = analytics_when(&gws[1 % gws.len()], room, |d| {
        d["retention"].as_array().is_some_and(|r| {
            r.iter()
                .map(|m| m["present"]["after_1m"].as_i64().unwrap_or(0))
                .sum::<i64>()
                >= n as i64
        })
    })
    .await;
    let joined: i64 = doc["retention"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["joined"].as_i64().unwrap())
        .sum();
    assert_eq!(joined, n as i64, "{doc:#}");
    // The rooms listing of any gateway has the room with everyone in it (and a quieter
    // one after it).
    let mut other = Viewer::connect(&gws[0], "elsewhere").await;
    other.join("quiet-room").await;
    let listed = |gw: Arc<Gateway>| async move {
        for _ in 0..200 {
            let (status, list) = gw
                .http("GET", "/v1/rooms?sort=online&limit=5", Some(API_KEY), None)
                .await;
            assert_eq!(status, 200, "{list}");
            if list["rooms"].as_array().map(Vec::len) == Some(2) && list["rooms"][0]["online"] == n
            {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the listing never showed both rooms");
    };
    let list = listed(gws[gws.len() - 1].clone()).await;
    assert_eq!(list["rooms"][0]["room"], room);
    assert_eq!(
        list["rooms"][1],
        json!({"room": "quiet-room", "online": 1, "seq": 0})
    );
    let (status, bad) = gws[0]
        .http("GET", "/v1/rooms?sort=joins", Some(API_KEY), None)
        .await;
    assert_eq!(
        (status, bad["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    drop(other);
    // Now they all go: some leave, the others just disconnect.
    for (i, (mut v, _)) in viewers.into_iter().enumerate() {
        if i % 2 == 0 {
            let id = v.send(json!({"type": "leave", "room": room})).await;
            assert_eq!(v.reply(id).await["type"], "left");
        }
    }
    analytics_when(&gws[2 % gws.len()], room, |d| d["dwell_s"]["count"] == n).await;
    // Each gateway flushes what it queued before it answers: after all three, every
    // leave is in, and a resumed visit's first connection added no second dwell.
    for gw in gws {
        analytics(gw, room).await;
    }
    let doc = analytics(&gws[0], room).await;
    assert_eq!(doc["dwell_s"]["count"], n, "one dwell per visit: {doc:#}");
    assert_eq!(doc["viewers"]["joins"], n, "one visit each: {doc:#}");
    assert_eq!(doc["viewers"]["unique"], n);
    assert_eq!(
        doc["recovery"],
        json!({"resumes": resumed, "recovered": resumed})
    );
    assert_eq!(doc["interactions"]["comments"], comments);
    assert_eq!(doc["interactions"]["likes"], likes);
    assert_eq!(doc["interactions"]["votes"], 0);
    // A resumed visit is one visit: one dwell, from its first join to its end.
    assert!(
        doc["dwell_s"]["p50"].as_f64().unwrap() >= 60.0,
        "dwell spans the resume: {doc:#}"
    );
    assert_eq!(
        doc["first_render_ms"]["count"],
        n as i64 + resumed,
        "each connection's first"
    );
    let by = &doc["by_variant"];
    assert_eq!(by["A"]["viewers"]["joins"], variants.0);
    assert_eq!(by["B"]["viewers"]["joins"], variants.1);
    let interactions = |v: &str| by[v]["interactions"]["comments"].as_i64().unwrap();
    assert_eq!(interactions("A") + interactions("B"), comments);
    let timeline = doc["timeline"].as_array().unwrap();
    let total = |what: &str| {
        timeline
            .iter()
            .map(|m| m[what].as_i64().unwrap())
            .sum::<i64>()
    };
    assert_eq!(total("joins"), n as i64);
    assert_eq!(total("interactions"), comments + likes);
    // The aggregate metrics, summed over the gateways: every connection's join and,
    // now that all are gone, its dwell.
    let mut sums = std::collections::HashMap::new();
    for gw in gws {
        let (_, text) = gw.http_raw("GET", "/metrics", None, None).await;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            if let Some((name, v)) = line.rsplit_once(' ') {
                *sums.entry(name.to_owned()).or_insert(0.0) += v.parse::<f64>().unwrap_or(0.0);
            }
        }
    }
    let metric = |name: &str| sums.get(name).copied().unwrap_or(-1.0) as i64;
    // (the viewers', and the quiet room's one)
    let connections = n as i64 + resumed + 1;
    assert_eq!(metric("danmaku_joins_total"), connections);
    assert_eq!(metric("danmaku_resumes_total{recovered=\"true\"}"), resumed);
    assert_eq!(metric("danmaku_resumes_total{recovered=\"false\"}"), 0);
    assert_eq!(metric("danmaku_first_render_seconds_count"), connections);
    assert_eq!(metric("danmaku_dwell_seconds_count"), connections);
    Did {
        viewers: n as i64,
        resumed,
        comments,
        likes,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_on_one_gateway_is_exact() {
    counted_exactly(&[Arc::new(Gateway::start(FLAGS))]).await;
}

async fn on_redis(store: Store) {
    let did = counted_exactly(&store.gateways_with(FLAGS)).await;
    // Every join, leave and interaction is an entry of the stream, and the example
    // consumer reads them all as the schema says.
    let urls = store.config().urls.join(",");
    let out = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/analytics/consumer.py"
        ))
        .args(["--redis", &urls, "--key", "dm:analytics", "--check"])
        .output()
        .expect("python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let totals: Value = serde_json::from_slice(&out.stdout).expect("the totals");
    // The viewers' connections, and the one viewer of the quiet room.
    let connections = did.viewers + did.resumed + 1;
    assert_eq!(
        totals,
        json!({
            "entries": 2 * connections + did.comments + did.likes,
            "joins": connections, "resumes": did.resumed, "recovered": did.resumed,
            "leaves": connections,
            "interactions": {"comments": did.comments, "likes": did.likes},
            "users": did.viewers + 1, "rooms": ["quiet-room", "retention"],
        })
    );
}

on_every_store!(retention_on_three_gateways_is_exact, on_redis);
