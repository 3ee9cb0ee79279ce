//! CORS for the HTTP API, over real HTTP: off by default (preflights refused with 403
//! and no grant), and with `--cors-origins` a grant for exactly the listed origins.

mod support;

use support::{API_KEY, Answer, Gateway, request};

const SHOP: &str = "https://shop.example";

async fn preflight(gw: &Gateway, origin: &str, path: &str) -> Answer {
    let origin = format!("Origin: {origin}");
    request(
        gw,
        "OPTIONS",
        path,
        &[
            &origin,
            "Access-Control-Request-Method: POST",
            "Access-Control-Request-Headers: authorization, content-type",
        ],
    )
    .await
}

#[tokio::test]
async fn without_cors_origins_no_origin_is_granted_anything() {
    let gw = Gateway::start(&[]);
    let a = preflight(&gw, SHOP, "/v1/rooms/r/events").await;
    assert_eq!((a.status, a.error().0), (403, "forbidden"));
    a.assert_no_cors_grant();
    let origin = format!("Origin: {SHOP}");
    let auth = format!("Authorization: Bearer {API_KEY}");
    let a = request(&gw, "GET", "/v1/rooms/r", &[&origin, &auth]).await;
    assert_eq!(a.status, 200);
    a.assert_no_cors_grant();
    assert_eq!(a.header("vary"), None);
}

#[tokio::test]
async fn a_listed_origin_is_granted_and_only_it() {
    let gw = Gateway::start(&[
        "--cors-origins",
        "https://shop.example,http://127.0.0.1:3000",
    ]);
    for path in [
        "/v1/rooms/r/events",
        "/v1/rooms/r/stage",
        "/v1/rooms/r/quizzes/q-1",
    ] {
        let a = preflight(&gw, SHOP, path).await;
        assert_eq!(a.status, 204, "{path}: {:?}", a.body);
        assert_eq!(a.header("access-control-allow-origin"), Some(SHOP));
        let methods = a.header("access-control-allow-methods").expect("methods");
        for m in ["GET", "POST", "PUT", "DELETE"] {
            assert!(methods.contains(m), "{methods}");
        }
        let headers = a.header("access-control-allow-headers").expect("headers");
        assert!(headers.contains("authorization") && headers.contains("content-type"));
        assert!(a.header("access-control-max-age").is_some());
        assert_eq!(a.header("vary"), Some("origin"));
    }
    // The other listed origin gets its own origin back, never `*`.
    let a = preflight(&gw, "http://127.0.0.1:3000", "/v1/rooms/r").await;
    assert_eq!(a.status, 204);
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("http://127.0.0.1:3000")
    );

    // Actual answers to a listed origin, successes and errors, say so.
    let origin = format!("Origin: {SHOP}");
    let auth = format!("Authorization: Bearer {API_KEY}");
    let a = request(&gw, "GET", "/v1/rooms/r", &[&origin, &auth]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("access-control-allow-origin"), Some(SHOP));
    assert_eq!(a.header("vary"), Some("origin"));
    let a = request(&gw, "GET", "/v1/rooms/r", &[&origin]).await;
    assert_eq!((a.status, a.error().0), (401, "unauthorized"));
    assert_eq!(a.header("access-control-allow-origin"), Some(SHOP));

    // Another origin (a look-alike too) gets no grant, and its preflight 403.
    for other in [
        "https://evil.example",
        "https://shop.example.evil",
        "https://SHOP.example",
    ] {
        let a = preflight(&gw, other, "/v1/rooms/r/events").await;
        assert_eq!((a.status, a.error().0), (403, "forbidden"), "{other}");
        assert!(a.error().1.contains("--cors-origins"), "{}", a.body);
        a.assert_no_cors_grant();
        let o = format!("Origin: {other}");
        let a = request(&gw, "GET", "/v1/rooms/r", &[&o, &auth]).await;
        assert_eq!(a.status, 200);
        a.assert_no_cors_grant();
        assert_eq!(
            a.header("vary"),
            Some("origin"),
            "caches keep origins apart"
        );
    }
    // A plain OPTIONS (not a preflight) is still 405.
    let a = request(&gw, "OPTIONS", "/v1/rooms/r", &[&origin]).await;
    assert_eq!((a.status, a.error().0), (405, "method_not_allowed"));
}

#[tokio::test]
async fn a_malformed_origin_is_refused_at_start_up() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_danmaku-gateway"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--jwt-secret",
            support::SECRET,
            "--cors-origins",
            "https://shop.example/",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--cors-origins"), "{err}");
}
