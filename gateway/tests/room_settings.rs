//! A room's settings over real gateways (one with the memory store, three on every
//! Redis topology): a partial `PUT` is announced as a high `settings` event and held in
//! every later snapshot, and the store applies it to the next comment on every gateway
//! — blocked words (also in full-width or mixed case) refused with `blocked` and never
//! sequenced, the minimum level refused with `forbidden`, slow mode per user across
//! gateways with `retry_after_ms` — and a later `PUT` lifts it at once.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use danmaku_gateway::auth::Claims;
use serde_json::{Value, json};
use support::store::Store;
use support::{API_KEY, Gateway, Viewer};

async fn put_settings(gw: &Gateway, room: &str, body: &Value) -> (u16, Value) {
    let path = format!("/v1/rooms/{room}/settings");
    gw.http("PUT", &path, Some(API_KEY), Some(body)).await
}

async fn get_settings(gw: &Gateway, room: &str) -> Value {
    let path = format!("/v1/rooms/{room}/settings");
    let (status, answer) = gw.http("GET", &path, Some(API_KEY), None).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

async fn comment(v: &mut Viewer, room: &str, text: &str) -> Value {
    let id = v
        .send(json!({"type": "comment", "room": room, "text": text}))
        .await;
    v.reply(id).await
}

async fn leveled(gw: &Gateway, sub: &str, level: i64) -> Viewer {
    let claims = Claims {
        level: Some(level),
        ..Claims::default()
    };
    Viewer::connect_claims(gw, sub, claims).await
}

async fn settings_apply_to_the_next_comment_everywhere(gws: &[Arc<Gateway>]) {
    let room = "settings-live";
    let last = &gws[gws.len() - 1];
    let before = get_settings(&gws[0], room).await;
    assert_eq!(before["own"], false, "{before}");
    assert_eq!(
        before["settings"]["comments_per_s"], 200,
        "the defaults: {before}"
    );

    let mut watcher = Viewer::connect(last, "watcher").await;
    let joined = watcher.join(room).await;
    assert_eq!(joined["snapshot"]["settings"]["slow_mode_s"], 0, "{joined}");

    let body = json!({"blocked_words": ["ＳＰＡＭ", "加微信"], "slow_mode_s": 2, "min_level": 2});
    let (status, put) = put_settings(&gws[0], room, &body).await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(
        put["settings"]["blocked_words"],
        json!(["spam", "加微信"]),
        "{put}"
    );
    let e = watcher.next_event().await;
    assert_eq!(
        (&e["kind"], &e["priority"]),
        (&json!("settings"), &json!("high")),
        "{e}"
    );
    assert_eq!(e["seq"], put["seq"], "{e}");
    assert_eq!(e["data"], put["settings"], "the whole settings: {e}");

    let mut low = leveled(&gws[1 % gws.len()], "low", 1).await;
    low.join(room).await;
    let r = comment(&mut low, room, "hi").await;
    assert_eq!(r["code"], "forbidden", "below min_level: {r}");

    let mut fan = leveled(&gws[1 % gws.len()], "fan", 5).await;
    fan.join(room).await;
    for text in ["buy spam now", "Buy ＳＰａｍ", "快加微信"] {
        let r = comment(&mut fan, room, text).await;
        assert_eq!(r["code"], "blocked", "{text}: {r}");
    }
    let r = comment(&mut fan, room, "hello").await;
    assert_eq!(r["type"], "ack", "{r}");
    let hello = r["seq"].as_u64().unwrap();

    // The same user on another gateway is within its slow mode there too.
    let mut again = leveled(last, "fan", 5).await;
    again.join(room).await;
    let r = comment(&mut again, room, "hello again").await;
    assert_eq!(r["code"], "slow_mode", "{r}");
    let wait = r["retry_after_ms"].as_u64().unwrap();
    assert!((1..=2_000).contains(&wait), "{r}");

    // Nothing refused was sequenced: the watcher's next events are the one comment and
    // a marker.
    let marker = gws[0].publish(room, json!({"text": "marker"})).await;
    let e = watcher.next_event().await;
    assert_eq!(e["seq"].as_u64(), Some(hello), "{e}");
    let e = watcher.next_event().await;
    assert_eq!(e["seq"].as_u64(), Some(marker), "{e}");

    // A late joiner has the settings; lifting slow mode takes effect at once.
    let mut late = Viewer::connect(&gws[0], "late").await;
    let joined = late.join(room).await;
    let held = &joined["snapshot"]["settings"];
    assert_eq!(
        (&held["slow_mode_s"], &held["min_level"]),
        (&json!(2), &json!(2)),
        "{joined}"
    );
    let (status, put) = put_settings(last, room, &json!({"slow_mode_s": 0})).await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(
        put["settings"]["min_level"], 2,
        "a partial update keeps the rest: {put}"
    );
    let r = comment(&mut again, room, "hello again").await;
    assert_eq!(r["type"], "ack", "{r}");
    let after = get_settings(&gws[0], room).await;
    assert_eq!(
        (&after["own"], &after["settings"]),
        (&json!(true), &put["settings"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_on_one_gateway_apply_to_the_next_comment() {
    settings_apply_to_the_next_comment_everywhere(&[Arc::new(Gateway::start(&[]))]).await;
}

async fn settings_on_redis(store: Store) {
    settings_apply_to_the_next_comment_everywhere(&store.gateways()).await;
}
on_every_store!(
    settings_on_three_gateways_apply_to_the_next_comment,
    settings_on_redis
);

/// Bad settings are refused with the field named, and nothing is sequenced or changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_are_refused_with_the_field_named() {
    let gw = Gateway::start(&[]);
    let room = "settings-bad";
    for (body, field) in [
        (json!({"slow_mode_s": 99_999}), "slow_mode_s"),
        (json!({"blocked_words": "spam"}), "blocked_words"),
        (
            json!({"experiment": {"name": "x", "variants": ["A"]}}),
            "variants",
        ),
        (json!({"colour": "red"}), "colour"),
        (json!({}), "at least one"),
    ] {
        let (status, answer) = put_settings(&gw, room, &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "bad_request", "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{body}: {message}");
    }
    let (_, info) = gw
        .http("GET", &format!("/v1/rooms/{room}"), Some(API_KEY), None)
        .await;
    assert_eq!(info["seq"], 0, "nothing sequenced: {info}");
    let settings = get_settings(&gw, room).await;
    assert_eq!(settings["own"], false, "{settings}");
}

/// Rooms' defaults come from the gateway's configuration file (the flags take the same
/// keys) — the README's example file, every key of it — and apply to a room that never
/// had settings of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_take_their_defaults_from_the_configuration() {
    let readme = include_str!("../../README.md");
    let toml = readme
        .split("```toml\n")
        .find(|b| b.starts_with("# gateway.toml"))
        .and_then(|b| b.split("```").next())
        .expect("README.md has the example gateway.toml");
    let file = std::env::temp_dir().join(format!("danmaku-rooms-{}.toml", std::process::id()));
    std::fs::write(&file, toml).unwrap();
    let gw = Gateway::start(&["--config", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    let room = "settings-defaults";
    let claims = |level| Claims {
        level: Some(level),
        ..Claims::default()
    };
    let mut v = Viewer::connect_claims(&gw, "v", claims(1)).await;
    let joined = v.join(room).await;
    let held = &joined["snapshot"]["settings"];
    let expected = json!({"comments_per_s": 300, "slow_mode_s": 3, "min_level": 1,
        "blocked_words": ["spam", "加微信"], "entrances": true, "vip_tags": ["svip", "vip"]});
    for (key, value) in expected.as_object().unwrap() {
        assert_eq!(&held[key], value, "{key} in {joined}");
    }
    assert_eq!(comment(&mut v, room, "ＳＰＡＭ!").await["code"], "blocked");
    assert_eq!(comment(&mut v, room, "hi").await["type"], "ack");
    assert_eq!(comment(&mut v, room, "hi").await["code"], "slow_mode");
    let mut low = Viewer::connect_claims(&gw, "low", claims(0)).await;
    low.join(room).await;
    assert_eq!(comment(&mut low, room, "hi").await["code"], "forbidden");
}
