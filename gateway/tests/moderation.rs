//! Moderation over real gateways (one with the memory store, three on every Redis
//! topology): mutes, bans, unbans and retractions by a moderator over the WebSocket
//! and by a backend over HTTP, with their expiry, across gateways — a banned user
//! connected to every gateway is kicked from every one — the staff told of each
//! action, every action in the audit list, and `forbidden` for viewers who try.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use danmaku_gateway::auth::Claims;
use serde_json::{Value, json};
use support::store::Store;
use support::{API_KEY, Gateway, Viewer};

async fn command(v: &mut Viewer, cmd: Value) -> Value {
    let id = v.send(cmd).await;
    v.reply(id).await
}

async fn comment(v: &mut Viewer, room: &str, text: &str) -> Value {
    command(v, json!({"type": "comment", "room": room, "text": text})).await
}

async fn with_role(gw: &Gateway, sub: &str, role: &str) -> Viewer {
    let claims = Claims {
        role: Some(role.to_owned()),
        ..Claims::default()
    };
    Viewer::connect_claims(gw, sub, claims).await
}

async fn backend(gw: &Gateway, room: &str, body: Value) -> Value {
    let path = format!("/v1/rooms/{room}/moderation");
    let (status, answer) = gw.http("POST", &path, Some(API_KEY), Some(&body)).await;
    assert_eq!(status, 200, "{body}: {answer}");
    answer
}

/// The data of the next `moderation` event of `action` the staff get, skipping the
/// rest.
async fn told(staff: &mut Viewer, action: &str) -> Value {
    loop {
        let e = staff.next_event().await;
        if e["kind"] == "moderation" && e["data"]["action"] == action {
            return e["data"].clone();
        }
    }
}

async fn rooms_are_moderated_on_every_gateway(gws: &[Arc<Gateway>]) {
    let room = "moderated";
    let last = &gws[gws.len() - 1];
    let mut host = with_role(&gws[0], "host-1", "host").await;
    host.join(room).await;
    let mut moderator = with_role(last, "mod-1", "moderator").await;
    moderator.join(room).await;
    let mut watcher = Viewer::connect(last, "watcher").await;
    watcher.join(room).await;
    // The troll, on every gateway.
    let mut troll = Vec::new();
    for gw in gws {
        let mut t = Viewer::connect(gw, "troll").await;
        t.join(room).await;
        troll.push(t);
    }

    for m in [
        json!({"action": "mute", "user": "troll"}),
        json!({"action": "unmute", "user": "troll"}),
        json!({"action": "ban", "user": "troll", "duration_s": 60}),
        json!({"action": "unban", "user": "troll"}),
        json!({"action": "retract", "seq": 1}),
    ] {
        let mut cmd = m.clone();
        cmd["type"] = json!("moderate");
        cmd["room"] = json!(room);
        let r = command(&mut watcher, cmd).await;
        assert_eq!(
            r["code"], "forbidden",
            "a viewer may not moderate: {m}: {r}"
        );
    }

    // A timed mute by the moderator: comments and likes refused on every gateway.
    let r = command(
        &mut moderator,
        json!({"type": "moderate", "room": room, "action": "mute", "user": "troll", "duration_s": 2}),
    )
    .await;
    assert_eq!(r["type"], "ack", "{r}");
    let d = told(&mut host, "mute").await;
    assert_eq!(
        (&d["action"], &d["user"], &d["by"]),
        (&json!("mute"), &json!("troll"), &json!("mod-1"))
    );
    let mut wait = 0;
    for t in &mut troll {
        let r = comment(t, room, "spam").await;
        assert_eq!(r["code"], "muted", "{r}");
        wait = r["retry_after_ms"].as_u64().unwrap();
        assert!((1..=2_000).contains(&wait), "{r}");
        let r = command(t, json!({"type": "like", "room": room, "count": 1})).await;
        assert_eq!(r["code"], "muted", "likes too: {r}");
    }
    // It ends by itself.
    tokio::time::sleep(Duration::from_millis(wait + 50)).await;
    let r = comment(&mut troll[0], room, "back").await;
    assert_eq!(r["type"], "ack", "the mute ended: {r}");

    // For good, then lifted by a backend.
    backend(&gws[0], room, json!({"action": "mute", "user": "troll"})).await;
    let r = comment(&mut troll[gws.len() - 1], room, "x").await;
    assert_eq!(
        (&r["code"], r.get("retry_after_ms")),
        (&json!("muted"), None),
        "{r}"
    );
    backend(last, room, json!({"action": "unmute", "user": "troll"})).await;
    let r = comment(&mut troll[gws.len() - 1], room, "hello all").await;
    assert_eq!(r["type"], "ack", "{r}");
    let bad = r["seq"].as_u64().unwrap();

    // Retracted: announced, and gone from later snapshots and replays.
    let r = command(
        &mut moderator,
        json!({"type": "moderate", "room": room, "action": "retract", "seq": bad}),
    )
    .await;
    assert_eq!(r["type"], "ack", "{r}");
    loop {
        let e = watcher.next_event().await;
        if e["kind"] == "retract" {
            assert_eq!(
                (&e["data"]["seq"], &e["priority"]),
                (&json!(bad), &json!("high")),
                "{e}"
            );
            break;
        }
    }
    let mut late = Viewer::connect(&gws[1 % gws.len()], "late").await;
    let joined = late.join(room).await;
    let recent = joined["snapshot"]["recent"].as_array().unwrap();
    assert!(!recent.iter().any(|e| e["seq"] == json!(bad)), "{joined}");
    assert!(
        recent.iter().any(|e| e["type"] == "skipped"
            && e["reason"] == "retracted"
            && e["from"].as_u64() <= Some(bad)
            && e["to"].as_u64() >= Some(bad)),
        "told as retracted in place: {joined}"
    );
    let epoch = joined["epoch"].as_str().unwrap().to_owned();
    let mut resumer = Viewer::connect(&gws[0], "resumer").await;
    let resumed = resumer.join_reply(room, Some((&epoch, bad - 1))).await;
    assert_eq!(resumed["recovered"], true, "{resumed}");
    let first = resumer.next().await;
    assert_eq!(
        (&first["type"], &first["reason"], first["from"].as_u64()),
        (&json!("skipped"), &json!("retracted"), Some(bad)),
        "{first}"
    );

    // Banned: every connection of the user leaves the room, on every gateway.
    backend(&gws[0], room, json!({"action": "ban", "user": "troll"})).await;
    for t in &mut troll {
        let k = t.next_of("kicked").await;
        assert_eq!(
            (&k["room"], &k["reason"]),
            (&json!(room), &json!("banned")),
            "{k}"
        );
        let r = t.join_reply(room, None).await;
        assert_eq!(r["code"], "forbidden", "joins refused: {r}");
        let r = comment(t, room, "still here?").await;
        assert_eq!(r["code"], "not_joined", "{r}");
    }
    assert_eq!(told(&mut host, "ban").await["user"], "troll");
    let r = command(
        &mut host,
        json!({"type": "moderate", "room": room, "action": "unban", "user": "troll"}),
    )
    .await;
    assert_eq!(r["type"], "ack", "{r}");
    let r = troll[1 % gws.len()].join_reply(room, None).await;
    assert_eq!(r["type"], "joined", "unbanned: {r}");

    // A timed ban ends by itself.
    let r = backend(
        last,
        room,
        json!({"action": "ban", "user": "troll", "duration_s": 1}),
    )
    .await;
    assert!(r["seq"].as_u64().is_some(), "{r}");
    let k = troll[1 % gws.len()].next_of("kicked").await;
    assert_eq!(k["reason"], "banned");
    let r = troll[0].join_reply(room, None).await;
    assert_eq!(r["code"], "forbidden", "{r}");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let r = troll[0].join_reply(room, None).await;
    assert_eq!(r["type"], "joined", "the ban ended: {r}");

    // Every action, in order, in the audit list.
    let (status, log) = gws[1 % gws.len()]
        .http(
            "GET",
            &format!("/v1/rooms/{room}/moderation"),
            Some(API_KEY),
            None,
        )
        .await;
    assert_eq!(status, 200, "{log}");
    let actions: Vec<(&str, &str)> = log["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["action"].as_str().unwrap(), a["by"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("mute", "mod-1"),
            ("mute", "backend"),
            ("unmute", "backend"),
            ("retract", "mod-1"),
            ("ban", "backend"),
            ("unban", "host-1"),
            ("ban", "backend"),
        ],
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_on_one_gateway_is_moderated() {
    rooms_are_moderated_on_every_gateway(&[Arc::new(Gateway::start(&[]))]).await;
}

async fn moderated_on_redis(store: Store) {
    rooms_are_moderated_on_every_gateway(&store.gateways()).await;
}
on_every_store!(a_room_on_three_gateways_is_moderated, moderated_on_redis);

/// Bad actions are refused with the reason, by WebSocket and HTTP alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_moderation_is_refused_with_the_reason() {
    let gw = Gateway::start(&[]);
    let room = "moderated-bad";
    let mut m = with_role(&gw, "mod-1", "moderator").await;
    m.join(room).await;
    for (cmd, code, why) in [
        (json!({"action": "mute"}), "bad_request", "needs the `user`"),
        (
            json!({"action": "retract"}),
            "bad_request",
            "needs the `seq`",
        ),
        (
            json!({"action": "retract", "seq": 99}),
            "bad_request",
            "no event 99",
        ),
        (
            json!({"action": "ban", "user": "u", "duration_s": 0}),
            "bad_request",
            "duration_s",
        ),
        (
            json!({"action": "shout", "user": "u"}),
            "bad_request",
            "`action`",
        ),
    ] {
        let mut ws = cmd.clone();
        ws["type"] = json!("moderate");
        ws["room"] = json!(room);
        let r = command(&mut m, ws).await;
        assert_eq!(r["code"], code, "{cmd}: {r}");
        assert!(r["message"].as_str().unwrap().contains(why), "{cmd}: {r}");
        let path = format!("/v1/rooms/{room}/moderation");
        let (status, answer) = gw.http("POST", &path, Some(API_KEY), Some(&cmd)).await;
        assert_eq!(status, 400, "{cmd}: {answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(why),
            "{answer}"
        );
    }
    let mut outsider = with_role(&gw, "mod-2", "moderator").await;
    let r = command(
        &mut outsider,
        json!({"type": "moderate", "room": room, "action": "mute", "user": "u"}),
    )
    .await;
    assert_eq!(
        r["code"], "not_joined",
        "a moderator acts in a room it joined: {r}"
    );
}
