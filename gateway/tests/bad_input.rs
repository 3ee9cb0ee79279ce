//! Every bad input gets a clear error, and the connection stays unless the protocol
//! says to close.
#![allow(clippy::unwrap_used)]

mod support;

use futures_util::SinkExt;
use serde_json::{Value, json};
use support::{API_KEY, Gateway, SECRET, Viewer};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

async fn error_for(v: &mut Viewer, raw: &str) -> Value {
    v.ws.send(Message::text(raw)).await.unwrap();
    v.next_of("error").await
}

async fn still_alive(v: &mut Viewer) {
    let id = v.send(json!({"type": "ping"})).await;
    assert_eq!(v.reply(id).await["type"], "pong");
}

#[tokio::test]
async fn malformed_commands_get_errors_and_the_connection_stays() {
    let gw = Gateway::start(&[]);
    let mut v = Viewer::connect(&gw, "u1").await;
    let e = error_for(&mut v, "{not json").await;
    assert_eq!(e["code"], "bad_request");
    still_alive(&mut v).await;
    let e = error_for(&mut v, r#"{"type":"dance","id":7}"#).await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_u64()),
        (Some("bad_request"), Some(7))
    );
    still_alive(&mut v).await;
    let e = error_for(&mut v, r#"{"type":"join","id":8,"room":"no spaces!"}"#).await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_u64()),
        (Some("invalid_room"), Some(8))
    );
    let e = error_for(
        &mut v,
        r#"{"type":"comment","id":9,"room":"r","text":"hi"}"#,
    )
    .await;
    assert_eq!(e["code"], "not_joined");
    v.join("r").await;
    let long = "长".repeat(201);
    let e = error_for(
        &mut v,
        &json!({"type":"comment","id":10,"room":"r","text":long}).to_string(),
    )
    .await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_u64()),
        (Some("too_large"), Some(10))
    );
    let e = error_for(&mut v, r#"{"type":"like","id":11,"room":"r","count":1000}"#).await;
    assert_eq!(e["code"], "too_large");
    let e = error_for(
        &mut v,
        r#"{"type":"vote","id":12,"room":"r","poll":"p-404","option":0}"#,
    )
    .await;
    assert_eq!(e["code"], "unknown_poll");
    v.ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(v.next_of("error").await["code"], "bad_request");
    still_alive(&mut v).await;
}

#[tokio::test]
async fn comment_rate_limit_answers_with_retry_after() {
    // 1/s: the burst cannot refill while the 11 commands are in flight, however slow the machine.
    let gw = Gateway::start(&["--comments-per-s", "1", "--comments-burst", "10"]);
    let mut v = Viewer::connect(&gw, "u1").await;
    v.join("r").await;
    let mut ids = Vec::new();
    for i in 0..11 {
        ids.push(
            v.send(json!({"type": "comment", "room": "r", "text": format!("c{i}")}))
                .await,
        );
    }
    for (n, id) in ids.into_iter().enumerate() {
        let r = v.reply(id).await;
        if n < 10 {
            assert_eq!(r["type"], "ack", "burst of 10 allowed: {r}");
        } else {
            assert_eq!(r["code"], "rate_limited", "{r}");
            let wait = r["retry_after_ms"].as_u64().unwrap();
            assert!((1..=1_000).contains(&wait), "one token per second: {wait}");
        }
    }
}

#[tokio::test]
async fn room_limit_per_connection() {
    let gw = Gateway::start(&["--max-rooms-per-conn", "2"]);
    let mut v = Viewer::connect(&gw, "u1").await;
    v.join("a").await;
    v.join("b").await;
    let id = v.send(json!({"type": "join", "room": "c"})).await;
    assert_eq!(v.reply(id).await["code"], "too_many_rooms");
}

#[tokio::test]
async fn oversized_frame_closes_with_1009() {
    let gw = Gateway::start(&[]);
    let mut v = Viewer::connect(&gw, "u1").await;
    let big =
        json!({"type": "comment", "id": 1, "room": "r", "text": "x".repeat(5000)}).to_string();
    v.ws.send(Message::text(big)).await.unwrap();
    assert_eq!(v.closed().await, 1009);
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    let gw = Gateway::start(&[]);
    let mut v = Viewer::connect(&gw, "u1").await;
    let frame = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    v.ws.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(v.closed().await, 1007);
}

async fn handshake_status(url: &str) -> u16 {
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("unexpected handshake error: {e}"),
    }
}

#[tokio::test]
async fn bad_tokens_get_401_before_the_upgrade() {
    use danmaku_gateway::auth::{Claims, sign_hs256};
    let gw = Gateway::start(&[]);
    let url = gw.ws_url();
    let exp = danmaku_fanout::now_ms() / 1000 + 3600;
    let claims = |exp| Claims {
        sub: "u".into(),
        exp,
        name: None,
        role: None,
        rooms: None,
        ..Claims::default()
    };
    let forged = sign_hs256(b"not-the-secret-at-all", &claims(exp)).unwrap();
    let expired = sign_hs256(SECRET.as_bytes(), &claims(1_000_000)).unwrap();
    // {"alg":"none","typ":"JWT"} . {"sub":"u","exp":9999999999} . (no signature)
    let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1IiwiZXhwIjo5OTk5OTk5OTk5fQ.";
    for (what, token) in [
        ("forged", forged.as_str()),
        ("expired", &expired),
        ("alg:none", none),
        ("garbage", "abc"),
    ] {
        assert_eq!(
            handshake_status(&format!("{url}?token={token}")).await,
            401,
            "{what}"
        );
    }
    assert_eq!(handshake_status(&url).await, 401, "no token, anonymous off");
    assert_eq!(
        handshake_status(&format!("{url}?token={}", support::token("ok"))).await,
        101
    );
}

#[tokio::test]
async fn anonymous_viewers_read_but_cannot_write() {
    let gw = Gateway::start(&["--anonymous"]);
    let mut v = Viewer::connect_url(&gw.ws_url()).await;
    v.join("r").await;
    let id = v
        .send(json!({"type": "comment", "room": "r", "text": "hi"}))
        .await;
    assert_eq!(v.reply(id).await["code"], "forbidden");
    gw.publish("r", json!({"text": "from backend"})).await;
    assert_eq!(v.next_event().await["data"]["text"], "from backend");
}

#[tokio::test]
async fn http_api_refuses_bad_requests_with_json_errors() {
    let gw = Gateway::start(&["--history-len", "5"]);
    let body = json!({"kind": "comment", "data": {"text": "x"}});
    let (s, b) = gw
        .http("POST", "/v1/rooms/r/events", None, Some(&body))
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (s, _) = gw
        .http("POST", "/v1/rooms/r/events", Some("wrong"), Some(&body))
        .await;
    assert_eq!(s, 401);
    let (s, b) = gw
        .http(
            "POST",
            "/v1/rooms/bad%20room/events",
            Some(API_KEY),
            Some(&body),
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("invalid_room"))
    );
    let (s, b) = gw
        .http_raw("POST", "/v1/rooms/r/events", Some(API_KEY), Some("{nope"))
        .await;
    assert_eq!(s, 400, "{b}");
    let bad_kind = json!({"kind": "Bad Kind", "data": {}});
    assert_eq!(
        gw.http("POST", "/v1/rooms/r/events", Some(API_KEY), Some(&bad_kind))
            .await
            .0,
        400
    );
    let reserved = json!({"kind": "likes", "data": {"total": 1}});
    assert_eq!(
        gw.http("POST", "/v1/rooms/r/events", Some(API_KEY), Some(&reserved))
            .await
            .0,
        400
    );
    let huge = json!({"kind": "comment", "data": {"t": "x".repeat(70_000)}});
    let (s, b) = gw
        .http("POST", "/v1/rooms/r/events", Some(API_KEY), Some(&huge))
        .await;
    assert_eq!((s, b["error"]["code"].as_str()), (413, Some("too_large")));
    let bad_poll = json!({"question": "?", "options": ["only one"], "duration_s": 10});
    assert_eq!(
        gw.http("POST", "/v1/rooms/r/polls", Some(API_KEY), Some(&bad_poll))
            .await
            .0,
        400
    );
    assert_eq!(
        gw.http("POST", "/v1/rooms/r/polls/p-9/close", Some(API_KEY), None)
            .await
            .0,
        404
    );
    let (s, b) = gw.http("GET", "/v1/nope", Some(API_KEY), None).await;
    assert_eq!((s, b["error"]["code"].as_str()), (404, Some("not_found")));

    // Nothing above changed the room.
    let (s, info) = gw.http("GET", "/v1/rooms/r", Some(API_KEY), None).await;
    assert_eq!((s, info["seq"].as_u64()), (200, Some(0)));

    // History: in range, then older than kept (410).
    for i in 0..8 {
        gw.publish("r", json!({"i": i})).await;
    }
    let seqs = gw.history_seqs("r", 6, 10).await;
    assert_eq!(seqs, vec![7, 8]);
    let (s, b) = gw
        .http("GET", "/v1/rooms/r/history?since=1", Some(API_KEY), None)
        .await;
    assert_eq!((s, b["error"]["code"].as_str()), (410, Some("gone")));
    let (s, _) = gw
        .http("GET", "/v1/rooms/r/history?since=abc", Some(API_KEY), None)
        .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn idempotent_publish_retried_five_times_is_one_event() {
    let gw = Gateway::start(&[]);
    let body = json!({"kind": "product.card", "data": {"sku": 1}, "idempotency_key": "order-77"});
    let mut seqs = Vec::new();
    for _ in 0..5 {
        let (s, b) = gw
            .http("POST", "/v1/rooms/r/events", Some(API_KEY), Some(&body))
            .await;
        assert_eq!(s, 200);
        seqs.push(b["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs, vec![1; 5]);
    let (_, info) = gw.http("GET", "/v1/rooms/r", Some(API_KEY), None).await;
    assert_eq!(info["seq"], 1);
}
