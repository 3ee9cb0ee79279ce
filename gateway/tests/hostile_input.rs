//! Hostile and malformed input at the door — the WebSocket handshake, viewer tokens and
//! the HTTP API — over real sockets. Each row asserts the exact answer, and a witness
//! viewer in another room checks after each that nothing reached it: no reset, no
//! reconnect, no gap.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use danmaku_gateway::auth::{Claims, sign_hs256};
use serde_json::json;
use support::{API_KEY, Answer, Gateway, SECRET, Witness, exchange, token};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ORIGIN: &str = "https://shop.example";
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// The lines of a valid upgrade request of viewer `sub`, for a test to alter.
fn upgrade_lines(sub: &str) -> Vec<String> {
    vec![
        format!("GET /ws?token={} HTTP/1.1", token(sub)),
        "Host: gw".into(),
        "Upgrade: websocket".into(),
        "Connection: Upgrade".into(),
        format!("Sec-WebSocket-Key: {KEY}"),
        "Sec-WebSocket-Version: 13".into(),
        format!("Origin: {ORIGIN}"),
    ]
}

fn request(lines: &[String]) -> Vec<u8> {
    let mut r = lines.join("\r\n");
    r.push_str("\r\n\r\n");
    r.into_bytes()
}

/// Sends the request whole (the fast path) and in two pieces (hyper's path); both
/// must give the same answer, which is returned.
async fn both_paths(gw: &Gateway, lines: &[String]) -> Answer {
    let whole = request(lines);
    let a = exchange(gw.addr, &[&whole]).await;
    let (first, rest) = whole.split_at(10);
    let b = exchange(gw.addr, &[first, rest]).await;
    assert_eq!(
        (a.status, a.body.clone()),
        (b.status, b.body.clone()),
        "the two paths differ"
    );
    a
}

fn without(lines: &[String], name: &str) -> Vec<String> {
    lines
        .iter()
        .filter(|l| {
            !l.to_ascii_lowercase()
                .starts_with(&name.to_ascii_lowercase())
        })
        .cloned()
        .collect()
}

fn with(lines: &[String], name: &str, value: &str) -> Vec<String> {
    let mut out = without(lines, name);
    out.push(format!("{name}: {value}"));
    out
}

fn gateway() -> Gateway {
    Gateway::start(&["--allowed-origins", ORIGIN])
}

async fn witness(gw: &Gateway) -> Witness {
    Witness::join_from(gw, "w", Some(ORIGIN)).await
}

#[tokio::test]
async fn a_valid_upgrade_passes_on_both_paths() {
    let gw = gateway();
    let a = both_paths(&gw, &upgrade_lines("ok")).await;
    assert_eq!(a.status, 101);
}

#[tokio::test]
async fn a_disallowed_or_missing_origin_is_refused_with_403() {
    let gw = gateway();
    let mut w = witness(&gw).await;
    let lines = upgrade_lines("u");
    for (what, request) in [
        (
            "another site",
            with(&lines, "Origin", "https://evil.example"),
        ),
        (
            "a prefix of the allowed one",
            with(&lines, "Origin", "https://shop.example.evil"),
        ),
        (
            "another scheme",
            with(&lines, "Origin", "http://shop.example"),
        ),
        ("no Origin", without(&lines, "Origin")),
    ] {
        let a = both_paths(&gw, &request).await;
        assert_eq!((a.status, a.error().0), (403, "forbidden"), "{what}");
        w.check(&gw, what).await;
    }
}

#[tokio::test]
async fn a_missing_or_malformed_key_is_refused_with_400() {
    let gw = gateway();
    let mut w = witness(&gw).await;
    let lines = upgrade_lines("u");
    for (what, request) in [
        ("no key", without(&lines, "Sec-WebSocket-Key")),
        ("a short key", with(&lines, "Sec-WebSocket-Key", "c2hvcnQ=")),
        (
            "not base64",
            with(&lines, "Sec-WebSocket-Key", "!!!!!!!!!!!!!!!!!!!!!!=="),
        ),
        (
            "17 bytes",
            with(&lines, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZXg="),
        ),
    ] {
        let a = both_paths(&gw, &request).await;
        assert_eq!((a.status, a.error().0), (400, "bad_request"), "{what}");
        assert!(
            a.error().1.contains("Sec-WebSocket-Key"),
            "{what}: {}",
            a.body
        );
        w.check(&gw, what).await;
    }
}

#[tokio::test]
async fn another_websocket_version_gets_426_naming_13() {
    let gw = gateway();
    let mut w = witness(&gw).await;
    for version in ["8", "12", "14"] {
        let a = both_paths(
            &gw,
            &with(&upgrade_lines("u"), "Sec-WebSocket-Version", version),
        )
        .await;
        assert_eq!(a.status, 426, "version {version}");
        assert_eq!(a.header("sec-websocket-version"), Some("13"));
        w.check(&gw, version).await;
    }
    let a = both_paths(&gw, &without(&upgrade_lines("u"), "Sec-WebSocket-Version")).await;
    assert_eq!(a.status, 400, "no version at all");
}

#[tokio::test]
async fn oversized_or_too_many_headers_get_431() {
    let gw = gateway();
    let mut w = witness(&gw).await;
    let big = with(&upgrade_lines("u"), "X-Padding", &"a".repeat(20 * 1024));
    assert_eq!(
        exchange(gw.addr, &[&request(&big)]).await.status,
        431,
        "20 KB header"
    );
    w.check(&gw, "a big header").await;
    let mut many = upgrade_lines("u");
    many.extend((0..100).map(|i| format!("X-H{i}: {i}")));
    assert_eq!(
        exchange(gw.addr, &[&request(&many)]).await.status,
        431,
        "100 headers"
    );
    w.check(&gw, "many headers").await;
    let long_token = format!("{}.{}.x", "a".repeat(40 * 1024), "b".repeat(30 * 1024));
    let mut in_url = upgrade_lines("u");
    in_url[0] = format!("GET /ws?token={long_token} HTTP/1.1");
    assert_eq!(
        exchange(gw.addr, &[&request(&in_url)]).await.status,
        431,
        "64 KB token in the URL"
    );
    w.check(&gw, "a 64 KB token").await;
}

#[tokio::test]
async fn a_slow_handshake_is_closed_by_the_handshake_timeout() {
    let gw = Gateway::start(&["--handshake-timeout-ms", "500"]);
    let mut w = Witness::join(&gw, "w").await;
    for sent in [&b""[..], b"GET /ws HTTP/1.1\r\nHost: gw\r\n"] {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(sent).await.unwrap();
        let started = std::time::Instant::now();
        let mut rest = Vec::new();
        // The gateway ends the connection; the client sends nothing more.
        let read = tokio::time::timeout(support::WAIT, s.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "still open after {:?}", started.elapsed());
        assert!(started.elapsed() < Duration::from_secs(5));
        w.check(&gw, "a slow handshake").await;
    }
}

#[tokio::test]
async fn a_connection_flood_from_one_address_gets_429() {
    let gw = Gateway::start(&["--max-conns-per-ip", "4"]);
    let mut w = Witness::join(&gw, "w").await;
    let mut held = Vec::new();
    for i in 0..3 {
        held.push(support::Viewer::connect(&gw, &format!("f{i}")).await);
    }
    let mut lines = upgrade_lines("f");
    lines.retain(|l| !l.starts_with("Origin"));
    let a = exchange(gw.addr, &[&request(&lines)]).await;
    assert_eq!((a.status, a.error().0), (429, "rate_limited"));
    w.check(&gw, "the flood").await;
    drop(held);
}

fn signed(claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

async fn upgrade_status(gw: &Gateway, query: &str) -> Answer {
    let mut lines = upgrade_lines("u");
    lines[0] = format!("GET /ws?{query} HTTP/1.1");
    exchange(gw.addr, &[&request(&lines)]).await
}

#[tokio::test]
async fn tokens_not_valid_yet_or_for_someone_else_are_refused() {
    let gw = Gateway::start(&[
        "--allowed-origins",
        ORIGIN,
        "--jwt-audience",
        "shop",
        "--jwt-issuer",
        "https://id.example",
    ]);
    let now = danmaku_fanout::now_ms() / 1000;
    let base = json!({"sub": "u", "exp": now + 600, "aud": "shop", "iss": "https://id.example"});
    let with_claim = |name: &str, value: serde_json::Value| {
        let mut c = base.clone();
        c[name] = value;
        signed(&c)
    };
    let ok = upgrade_status(&gw, &format!("token={}", signed(&base))).await;
    assert_eq!(ok.status, 101);
    for (what, token, message) in [
        (
            "nbf ahead",
            with_claim("nbf", json!(now + 120)),
            "token not valid yet (nbf)",
        ),
        (
            "another aud",
            with_claim("aud", json!("blog")),
            "token's aud claim is not accepted",
        ),
        (
            "another iss",
            with_claim("iss", json!("https://x.example")),
            "token's iss claim is not accepted",
        ),
        (
            "expired",
            with_claim("exp", json!(now - 600)),
            "token expired",
        ),
    ] {
        let a = upgrade_status(&gw, &format!("token={token}")).await;
        assert_eq!((a.status, a.error().1), (401, message), "{what}");
    }
}

#[tokio::test]
async fn a_refused_token_can_be_told_after_the_upgrade_with_4501() {
    let gw = gateway();
    let url = format!("{}?token=garbage&refusal=close", gw.ws_url());
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        url.as_str(),
    )
    .unwrap();
    req.headers_mut().insert("Origin", ORIGIN.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgraded");
    use futures_util::StreamExt;
    let close = tokio::time::timeout(support::WAIT, ws.next())
        .await
        .unwrap();
    match close {
        Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(c)))) => {
            assert_eq!(
                (u16::from(c.code), c.reason.as_str()),
                (4501, "token malformed")
            );
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    let bad = upgrade_status(&gw, "token=garbage&refusal=maybe").await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn a_token_that_expires_mid_session_closes_with_4001() {
    let gw = Gateway::start(&["--heartbeat-ms", "200"]);
    let exp = danmaku_fanout::now_ms() / 1000 + 2;
    let t = sign_hs256(
        SECRET.as_bytes(),
        &Claims {
            sub: "short".into(),
            exp,
            name: None,
            role: None,
            rooms: None,
            ..Claims::default()
        },
    )
    .unwrap();
    let mut v = support::Viewer::connect_url(&format!("{}?token={t}", gw.ws_url())).await;
    v.join("r").await;
    assert_eq!(v.closed().await, 4001);
    assert!(danmaku_fanout::now_ms() / 1000 >= exp, "closed before exp");
    // A fresh token gets back in and resumes.
    let mut again = support::Viewer::connect(&gw, "short").await;
    again.join("r").await;
}

async fn api(gw: &Gateway, head: &str, body: &str) -> Answer {
    let req = format!(
        "{head}\r\nHost: gw\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    exchange(gw.addr, &[req.as_bytes()]).await
}

#[tokio::test]
async fn the_api_refuses_keys_in_the_url_wrong_types_and_oversized_bodies() {
    let gw = gateway();
    let mut w = witness(&gw).await;
    let auth = format!("Authorization: Bearer {API_KEY}");
    let event = r#"{"kind":"comment","data":{"text":"x"}}"#;

    let a = api(
        &gw,
        &format!("GET /v1/rooms/r?api_key={API_KEY} HTTP/1.1\r\n{auth}"),
        "",
    )
    .await;
    assert_eq!(a.status, 401);
    assert!(a.error().1.contains("credentials in the URL"), "{}", a.body);
    w.check(&gw, "a key in the URL").await;

    let a = api(
        &gw,
        "GET /v1/rooms/r HTTP/1.1\r\nAuthorization: Bearer nope",
        "",
    )
    .await;
    assert_eq!((a.status, a.error().0), (401, "unauthorized"));

    for ct in ["text/plain", "application/x-www-form-urlencoded"] {
        let head = format!("POST /v1/rooms/r/events HTTP/1.1\r\n{auth}\r\nContent-Type: {ct}");
        let a = api(&gw, &head, event).await;
        assert_eq!(
            (a.status, a.error().0),
            (415, "unsupported_media_type"),
            "{ct}"
        );
        w.check(&gw, ct).await;
    }
    let head = format!(
        "POST /v1/rooms/r/events HTTP/1.1\r\n{auth}\r\nContent-Type: application/json; charset=utf-8"
    );
    assert_eq!(api(&gw, &head, event).await.status, 200);

    let head =
        format!("POST /v1/rooms/r/events HTTP/1.1\r\n{auth}\r\nContent-Type: application/json");
    let a = api(&gw, &head, r#"{"kind":"comment","data":"#).await;
    assert_eq!(
        (a.status, a.error().0),
        (400, "bad_request"),
        "malformed JSON"
    );

    // 10 MB declared, not one byte of it sent: the answer comes from the length alone.
    let req = format!(
        "POST /v1/rooms/r/events HTTP/1.1\r\nHost: gw\r\n{auth}\r\nContent-Type: application/json\r\nContent-Length: 10485760\r\n\r\n"
    );
    let a = exchange(gw.addr, &[req.as_bytes()]).await;
    assert_eq!((a.status, a.error().0), (413, "too_large"));
    w.check(&gw, "a 10 MB body").await;
}

#[tokio::test]
async fn a_key_over_its_quota_gets_429_with_retry_after() {
    let gw = Gateway::start(&["--api-rate-per-s", "1", "--api-burst", "3"]);
    let statuses: Vec<u16> = {
        let mut s = Vec::new();
        for _ in 0..5 {
            s.push(gw.http("GET", "/v1/rooms/r", Some(API_KEY), None).await.0);
        }
        s
    };
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let a = api(
        &gw,
        &format!("GET /v1/rooms/r HTTP/1.1\r\nAuthorization: Bearer {API_KEY}"),
        "",
    )
    .await;
    assert_eq!((a.status, a.error().0), (429, "rate_limited"));
    let retry: u64 = a.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert!(
        a.body["error"]["retry_after_ms"]
            .as_u64()
            .is_some_and(|ms| ms <= 1000)
    );
}

#[tokio::test]
async fn an_idempotency_key_reused_for_another_event_gets_409() {
    let gw = gateway();
    let publish = |data: serde_json::Value| {
        let body = json!({"kind": "card", "data": data, "idempotency_key": "k-1"});
        let gw = &gw;
        async move {
            gw.http("POST", "/v1/rooms/r/events", Some(API_KEY), Some(&body))
                .await
        }
    };
    let (s1, first) = publish(json!({"sku": "A"})).await;
    let (s2, again) = publish(json!({"sku": "A"})).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(first["seq"], again["seq"], "a retry is the same event");
    let (s3, other) = publish(json!({"sku": "B"})).await;
    assert_eq!(s3, 409, "{other}");
    assert_eq!(other["error"]["code"], "idempotency_key_reused");
    let (_, info) = gw.http("GET", "/v1/rooms/r", Some(API_KEY), None).await;
    assert_eq!(info["seq"], first["seq"], "nothing more was sequenced");
}

/// A retry names its first attempt's key; the memory store began less than the key's
/// lifetime ago, so it cannot tell an unknown key from one it had before.
#[tokio::test]
async fn a_retry_without_a_key_is_400_and_of_an_unknown_key_409() {
    let gw = gateway();
    let post = |body: serde_json::Value| {
        let gw = &gw;
        async move {
            gw.http("POST", "/v1/rooms/r/events", Some(API_KEY), Some(&body))
                .await
        }
    };
    let (s, keyless) = post(json!({"kind": "card", "data": {}, "retry": true})).await;
    assert_eq!(
        (s, &keyless["error"]["code"]),
        (400, &json!("bad_request")),
        "{keyless}"
    );
    let (s, unknown) =
        post(json!({"kind": "card", "data": {}, "idempotency_key": "k", "retry": true})).await;
    assert_eq!(s, 409, "{unknown}");
    assert_eq!(unknown["error"]["code"], "idempotency_key_unknown");
    let (s, first) = post(json!({"kind": "card", "data": {}, "idempotency_key": "k"})).await;
    assert_eq!((s, first["seq"].as_u64()), (200, Some(1)), "{first}");
    let (s, again) =
        post(json!({"kind": "card", "data": {}, "idempotency_key": "k", "retry": true})).await;
    assert_eq!((s, again["seq"].as_u64()), (200, Some(1)), "{again}");
    let (s, bad) = post(json!({"kind": "card", "data": {}, "retry": "yes"})).await;
    assert_eq!(s, 400, "{bad}");
}
