//! Personalization over real gateways: a welcome for each joiner that knows whether it
//! is new or returning and on how many days it came (exact across gateways and days,
//! the gateways' clocks shifted by `DANMAKU_CLOCK_OFFSET_MS`), entrances aggregated
//! into at most one event a second with the VIPs named, and an experiment's variants
//! stable per user, taken from the `cohort` claim, and targetable.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::sync::Arc;

use danmaku_gateway::auth::Claims;
use serde_json::{Value, json};
use support::store::Store;
use support::{API_KEY, Gateway, Viewer};

const DAY_MS: i64 = 86_400_000;

async fn put(gw: &Gateway, room: &str, what: &str, body: &Value) -> Value {
    let path = format!("/v1/rooms/{room}/{what}");
    let (status, answer) = gw.http("PUT", &path, Some(API_KEY), Some(body)).await;
    assert_eq!(status, 200, "{body}: {answer}");
    answer
}

fn templates() -> Value {
    json!({
        "new": "欢迎新朋友 {name}!",
        "returning": "欢迎回来 {name},第 {visits} 次来",
        "tags": {"vip": "VIP {name} 驾到"}
    })
}

/// A join's welcome: (returning, visits, text).
async fn welcome(gw: &Gateway, sub: &str, tags: &[&str], room: &str) -> (bool, u64, String) {
    let mut v = Viewer::connect_tagged(gw, sub, tags).await;
    let joined = v.join(room).await;
    let w = &joined["welcome"];
    (
        w["returning"].as_bool().unwrap(),
        w["visits"].as_u64().unwrap(),
        w["text"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_welcome_on_one_gateway_knows_new_from_returning() {
    let gw = Gateway::start(&[]);
    let room = "welcome-1";
    let mut before = Viewer::connect(&gw, "early").await;
    let joined = before.join(room).await;
    assert!(
        joined.get("welcome").is_none(),
        "no templates, no welcome: {joined}"
    );
    put(&gw, room, "welcome", &templates()).await;
    let first = welcome(&gw, "u-1", &[], room).await;
    assert_eq!(first, (false, 1, "欢迎新朋友 name-u-1!".to_owned()));
    let again = welcome(&gw, "u-1", &[], room).await;
    assert_eq!(
        again,
        (true, 1, "欢迎回来 name-u-1,第 1 次来".to_owned()),
        "a second join today"
    );
    let vip = welcome(&gw, "v-1", &["fan", "vip"], room).await;
    assert_eq!(
        vip,
        (false, 1, "VIP name-v-1 驾到".to_owned()),
        "a tag's template wins"
    );
    let (status, bad) = gw
        .http(
            "PUT",
            &format!("/v1/rooms/{room}/welcome"),
            Some(API_KEY),
            Some(&json!({"new": ""})),
        )
        .await;
    assert_eq!(
        (status, &bad["error"]["code"]),
        (400, &json!("bad_request")),
        "{bad}"
    );
}

async fn visits_are_exact_across_gateways_and_days(store: Store) {
    let room = "welcome-days";
    // Three gateways a day apart, and one 40 days after the third.
    let offsets = [0, DAY_MS, 2 * DAY_MS, 42 * DAY_MS];
    let gws: Vec<Arc<Gateway>> = offsets
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let offset = o.to_string();
            let env = [("DANMAKU_CLOCK_OFFSET_MS", offset.as_str())];
            store.gateway_env(&format!("g{i}"), &[], &env)
        })
        .collect();
    put(&gws[0], room, "welcome", &templates()).await;
    assert!(!welcome(&gws[0], "u-1", &[], room).await.0, "new");
    let day = |r: (bool, u64, String)| (r.0, r.1);
    assert_eq!(
        day(welcome(&gws[0], "u-1", &[], room).await),
        (true, 1),
        "again today"
    );
    assert_eq!(
        day(welcome(&gws[1], "u-1", &[], room).await),
        (true, 2),
        "the next day"
    );
    assert_eq!(day(welcome(&gws[2], "u-1", &[], room).await), (true, 3));
    assert_eq!(
        day(welcome(&gws[1], "u-1", &[], room).await),
        (true, 3),
        "no new day"
    );
    assert_eq!(
        day(welcome(&gws[3], "u-1", &[], room).await),
        (false, 1),
        "40 days later: new again"
    );
    // On each of three days, 20 users join three times each, all at once: exactly 3
    // visits each.
    for gw in &gws[..3] {
        let tasks: Vec<_> = (0..60)
            .map(|i| {
                let gw = gw.clone();
                tokio::spawn(async move { welcome(&gw, &format!("m-{}", i % 20), &[], room).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    }
    for u in 0..20 {
        let r = welcome(&gws[2], &format!("m-{u}"), &[], room).await;
        assert_eq!((r.0, r.1), (true, 3), "m-{u}");
    }
}

on_every_store!(
    visits_on_three_gateways_are_exact_across_days,
    visits_are_exact_across_gateways_and_days
);

/// 2,000 plain joins and one VIP's: told in `entrance` events at most one a second,
/// every join counted once, the VIP named.
async fn entrances_are_aggregated(gws: &[Arc<Gateway>]) {
    let room = "entrances";
    put(
        &gws[0],
        room,
        "settings",
        &json!({"vip_tags": ["vip"], "entrances": true}),
    )
    .await;
    let mut watcher = Viewer::connect(&gws[0], "watcher").await;
    watcher.join(room).await;
    let mut viewers = Vec::new();
    for i in 0..2_000 {
        let mut v = Viewer::connect(&gws[i % gws.len()], &format!("p-{i}")).await;
        v.join(room).await;
        viewers.push(v);
        if i == 1_000 {
            let mut vip = Viewer::connect_tagged(&gws[gws.len() - 1], "star", &["vip"]).await;
            vip.join(room).await;
            viewers.push(vip);
        }
    }
    let (mut counted, mut vips, mut times) = (0, Vec::new(), Vec::new());
    // The watcher's own join, the 2,000 and the VIP.
    while counted < 2_002 {
        let e = watcher.next_event().await;
        if e["kind"] != "entrance" {
            continue;
        }
        assert_eq!(e["priority"], "low", "{e}");
        counted += e["data"]["count"].as_u64().unwrap();
        assert!(e["data"]["names"].as_array().unwrap().len() <= 5, "{e}");
        vips.extend(e["data"]["vip"].as_array().unwrap().iter().cloned());
        times.push(e["ts"].as_u64().unwrap());
    }
    assert_eq!(counted, 2_002, "every join once");
    assert_eq!(
        vips,
        [json!({"user": "star", "name": "name-star", "tags": ["vip"]})]
    );
    for w in times.windows(2) {
        assert!(w[1] - w[0] >= 1_000, "at most one a second: {times:?}");
    }
    assert!(
        times.len() < 2_002 / 10,
        "aggregated: {} events",
        times.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entrances_on_one_gateway_are_aggregated() {
    entrances_are_aggregated(&[Arc::new(Gateway::start(&[]))]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entrances_on_three_gateways_are_aggregated() {
    entrances_are_aggregated(&Store::single().gateways()).await;
}

/// Variants are the `cohort` claim's when it names one, else stable per user on every
/// gateway; an event for a variant reaches exactly its viewers.
async fn variants_are_stable_and_targetable(gws: &[Arc<Gateway>]) {
    let room = "experiment";
    let experiment = json!({"experiment": {"name": "opening-v2", "variants": ["A", "B"]}});
    put(&gws[0], room, "settings", &experiment).await;
    let mut viewers = Vec::new();
    let mut variant_of = HashMap::new();
    for i in 0..20 {
        let user = format!("u-{i}");
        let mut v = Viewer::connect(&gws[i % gws.len()], &user).await;
        let variant = v.join(room).await["variant"].as_str().unwrap().to_owned();
        let mut again = Viewer::connect(&gws[(i + 1) % gws.len()], &user).await;
        let second = again.join(room).await;
        assert_eq!(second["variant"], variant.as_str(), "stable for {user}");
        variant_of.insert(user, variant);
        viewers.push(v);
    }
    let claims = Claims {
        cohort: Some("B".into()),
        ..Claims::default()
    };
    let mut chosen = Viewer::connect_claims(&gws[0], "u-0", claims).await;
    assert_eq!(
        chosen.join(room).await["variant"],
        "B",
        "the claim's variant"
    );
    let in_b = variant_of.values().filter(|v| *v == "B").count();
    assert!(in_b > 0 && in_b < 20, "both variants used: {variant_of:?}");

    let body = json!({"kind": "offer", "data": {"v": "B"}, "audience": {"variants": ["B"]}});
    let seq = gws[0].publish_event(room, &body).await["seq"]
        .as_u64()
        .unwrap();
    let marker = gws[0].publish(room, json!({"text": "marker"})).await;
    for (i, v) in viewers.iter_mut().enumerate() {
        let user = format!("u-{i}");
        // Up to the marker: the offer itself, or its seq told as skipped for others.
        let (mut got, mut skipped) = (false, false);
        loop {
            let m = v.next().await;
            if m["seq"].as_u64() == Some(marker) {
                break;
            }
            if m["kind"] == "offer" {
                assert_eq!(m["seq"].as_u64(), Some(seq), "{user}: {m}");
                got = true;
            }
            let covers = m["from"].as_u64() <= Some(seq) && m["to"].as_u64() >= Some(seq);
            if m["type"] == "skipped" && m["reason"] == "targeted" && covers {
                skipped = true;
            }
        }
        let b = variant_of[&user] == "B";
        assert_eq!((got, skipped), (b, !b), "{user} in {}", variant_of[&user]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variants_on_one_gateway_are_stable_and_targetable() {
    variants_are_stable_and_targetable(&[Arc::new(Gateway::start(&[]))]).await;
}

async fn variants_on_redis(store: Store) {
    variants_are_stable_and_targetable(&store.gateways()).await;
}
on_every_store!(
    variants_on_three_gateways_are_stable_and_targetable,
    variants_on_redis
);
