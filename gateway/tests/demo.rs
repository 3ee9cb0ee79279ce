//! The demo live room is served by the gateway itself, from the binary: the page, its
//! script and style, and the web SDK's bundle as built from `sdk/js`.

mod support;

use support::{Gateway, request};

#[tokio::test]
async fn the_demo_page_and_its_assets_are_served_from_the_binary() {
    let gw = Gateway::start(&[]);
    let sdk = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../sdk/js/dist/danmaku.js"
    ))
    .expect("the SDK bundle");
    for (path, content_type, needle) in [
        (
            "/demo?room=shop-42",
            "text/html; charset=utf-8",
            "/demo/demo.js",
        ),
        (
            "/demo/demo.js",
            "text/javascript; charset=utf-8",
            "from \"/demo/danmaku.js\"",
        ),
        ("/demo/demo.css", "text/css; charset=utf-8", ".dm {"),
        (
            "/demo/danmaku.js",
            "text/javascript; charset=utf-8",
            "DanmakuClient",
        ),
    ] {
        request(&gw, "GET", path, &[])
            .await
            .assert_embedded(path, content_type);
        let (_, body) = gw.http_raw("GET", path, None, None).await;
        assert!(body.contains(needle), "{path} lacks {needle}");
        if path == "/demo/danmaku.js" {
            assert_eq!(body, sdk, "the embedded bundle is sdk/js/dist/danmaku.js");
        }
    }
    let missing = request(&gw, "GET", "/demo/nope.js", &[]).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.error().0, "not_found");
}
