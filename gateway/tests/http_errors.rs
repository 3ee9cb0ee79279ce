//! The HTTP API's answers to requests it does not serve, and to bad credentials, over
//! real HTTP: every error has the JSON body `{"error":{"code","message"}}`, and the
//! messages are written for the person reading them.

mod support;

use serde_json::Value;
use support::{API_KEY, Gateway, SECRET, exchange, request};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[tokio::test]
async fn a_wrong_method_gets_405_with_a_json_body_and_allow() {
    let gw = Gateway::start(&[]);
    let a = request(&gw, "DELETE", "/v1/rooms/r/events", &[]).await;
    assert_eq!(a.status, 405);
    assert_eq!(a.header("allow"), Some("POST"));
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(
        a.error(),
        (
            "method_not_allowed",
            "DELETE is not allowed on /v1/rooms/r/events; the Allow header lists what is"
        )
    );
    let a = request(&gw, "POST", "/healthz", &[]).await;
    assert_eq!((a.status, a.error().0), (405, "method_not_allowed"));
    assert_eq!(a.header("allow"), Some("GET,HEAD"));
    // A plain OPTIONS (no preflight) is one more method the route does not serve.
    let a = request(&gw, "OPTIONS", "/v1/rooms/r", &[]).await;
    assert_eq!((a.status, a.error().0), (405, "method_not_allowed"));
    // An unknown path stays 404.
    let a = request(&gw, "DELETE", "/nowhere", &[]).await;
    assert_eq!((a.status, a.error().0), (404, "not_found"));
}

#[tokio::test]
async fn a_cors_preflight_is_refused_with_a_json_body() {
    let gw = Gateway::start(&[]);
    let a = request(
        &gw,
        "OPTIONS",
        "/v1/rooms/r/events",
        &[
            "Origin: https://shop.example",
            "Access-Control-Request-Method: POST",
            "Access-Control-Request-Headers: authorization, content-type",
        ],
    )
    .await;
    assert_eq!(a.status, 403);
    let (code, message) = a.error();
    assert_eq!(code, "forbidden");
    assert!(
        message.starts_with("cross-origin requests are not allowed"),
        "{message}"
    );
    a.assert_no_cors_grant();
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive_for_api_keys() {
    let gw = Gateway::start(&[]);
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let auth = format!("Authorization: {scheme} {API_KEY}");
        let a = request(&gw, "GET", "/v1/rooms/r", &[&auth]).await;
        assert_eq!(a.status, 200, "{scheme}: {}", a.body);
    }
    let a = request(
        &gw,
        "GET",
        "/v1/rooms/r",
        &["Authorization: Basic dXNlcjpwdw=="],
    )
    .await;
    assert_eq!(
        (a.status, a.error()),
        (
            401,
            (
                "unauthorized",
                "the Authorization header must be Bearer <key>"
            )
        )
    );
    let a = request(&gw, "GET", "/v1/rooms/r", &["Authorization: Bearer nope"]).await;
    assert_eq!(a.error(), ("unauthorized", "unknown API key"));
    let a = request(&gw, "GET", "/v1/rooms/r", &[]).await;
    assert_eq!(
        a.error(),
        (
            "unauthorized",
            "missing API key: send Authorization: Bearer <key>"
        )
    );
}

/// The refusal of a WebSocket upgrade carrying `token` (in the query or the header).
async fn refused_upgrade(gw: &Gateway, token: &str, in_header: bool) -> (u16, Value) {
    let url = if in_header {
        gw.ws_url()
    } else {
        format!("{}?token={token}", gw.ws_url())
    };
    let mut req = url.into_client_request().expect("request");
    if in_header {
        let value = format!("Bearer {token}").parse().expect("header");
        req.headers_mut().insert("Authorization", value);
    }
    match tokio_tungstenite::connect_async(req).await {
        Err(tungstenite::Error::Http(resp)) => {
            let body = resp.body().as_deref().unwrap_or_default();
            (
                resp.status().as_u16(),
                serde_json::from_slice(body).unwrap_or(Value::Null),
            )
        }
        Err(e) => panic!("not an HTTP refusal: {e}"),
        Ok(_) => panic!("{token} was let in"),
    }
}

#[tokio::test]
async fn a_bad_viewer_token_is_refused_in_words() {
    let gw = Gateway::start(&[]);
    let claims = |exp: u64| danmaku_gateway::auth::Claims {
        sub: "u1".into(),
        exp,
        name: None,
        role: None,
        rooms: None,
        ..danmaku_gateway::auth::Claims::default()
    };
    let far = danmaku_fanout::now_ms() / 1000 + 3600;
    let sign = |secret: &str, exp| {
        danmaku_gateway::auth::sign_hs256(secret.as_bytes(), &claims(exp)).expect("sign")
    };
    let cases = [
        (
            sign("another-secret-0123456789", far),
            "token signature is invalid",
        ),
        (sign(SECRET, 1_000), "token expired"),
        ("not-a-token".to_owned(), "token malformed"),
        (
            danmaku_gateway::auth::sign_hs256(
                SECRET.as_bytes(),
                &danmaku_gateway::auth::Claims {
                    tags: Some(vec!["VIP".into()]),
                    ..claims(far)
                },
            )
            .expect("sign"),
            "the tags claim must hold at most 32 tags matching [a-z0-9_.:-]{1,32}",
        ),
    ];
    for (token, message) in &cases {
        for in_header in [false, true] {
            let (status, body) = refused_upgrade(&gw, token, in_header).await;
            assert_eq!(status, 401, "{body}");
            assert_eq!(body["error"]["code"], "unauthorized");
            assert_eq!(body["error"]["message"], *message, "header: {in_header}");
        }
    }
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive_for_viewer_tokens() {
    use futures_util::{SinkExt, StreamExt};
    use tungstenite::Message;
    // Anonymous viewers on: a header that was not read would let the viewer in as
    // `anon-…`, whose comment is `forbidden`, instead of refusing it.
    let gw = Gateway::start(&["--anonymous"]);
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let mut req = gw.ws_url().into_client_request().expect("request");
        let value = format!("{scheme} {}", support::token("u-header"));
        req.headers_mut()
            .insert("Authorization", value.parse().expect("header"));
        let (mut ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("connect");
        let join = r#"{"type":"join","id":1,"room":"r"}"#;
        let comment = r#"{"type":"comment","id":2,"room":"r","text":"hi"}"#;
        ws.send(Message::text(format!("{join}\n{comment}")))
            .await
            .expect("send");
        let reply = tokio::time::timeout(support::WAIT, async {
            while let Some(Ok(m)) = ws.next().await {
                let Message::Text(t) = m else { continue };
                for line in t.as_str().split('\n') {
                    let v: Value = serde_json::from_str(line).expect("json");
                    if v["id"] == 2 {
                        return v;
                    }
                }
            }
            panic!("closed before the reply");
        })
        .await
        .expect("a reply");
        assert_eq!(reply["type"], "ack", "{scheme}: {reply}");
    }
}

/// axum's own rejections (a path that is not UTF-8 once decoded, a query string of the
/// wrong types) answer in plain text; the API turns them into its error body.
#[tokio::test]
async fn axums_rejections_get_the_json_body_too() {
    let gw = Gateway::start(&[]);
    let auth = format!("Authorization: Bearer {API_KEY}");
    for path in [
        "/v1/rooms/%FF",
        "/v1/rooms/%C3%28/history",
        "/v1/rooms/r/coupons/%FF%FE",
        "/v1/rooms/r/quizzes/%80/close",
    ] {
        let method = if path.ends_with("/close") {
            "POST"
        } else {
            "GET"
        };
        let a = request(&gw, method, path, &[&auth]).await;
        assert_eq!(a.status, 400, "{path}");
        assert_eq!(a.header("content-type"), Some("application/json"), "{path}");
        let (code, message) = a.error();
        assert_eq!(code, "bad_request", "{path}");
        assert!(message.contains("UTF-8"), "{path}: {message}");
    }
    for query in ["since=abc", "limit=-1", "since=1e3"] {
        let path = format!("/v1/rooms/r/history?{query}");
        let a = request(&gw, "GET", &path, &[&auth]).await;
        assert_eq!((a.status, a.error().0), (400, "bad_request"), "{query}");
    }
    // A body sent in chunks, past the limit: 413 with the body (no Content-Length to
    // refuse it by).
    let chunk = "x".repeat(70 * 1024);
    let req = format!(
        "POST /v1/rooms/r/events HTTP/1.1\r\nHost: t\r\n{auth}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let a = exchange(gw.addr, &[req.as_bytes()]).await;
    assert_eq!((a.status, a.error().0), (413, "too_large"));
}
