//! The retention dashboard is served by the gateway itself, from the binary: a public,
//! static page (the API key is typed into it, never taken from the URL) with its
//! script and style, under the same headers and CSP as the demo room.

mod support;

use support::{Gateway, request};

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

#[tokio::test]
async fn the_dashboard_page_and_its_assets_are_served_from_the_binary() {
    let gw = Gateway::start(&[]);
    let assets: [(&str, &str, &[&str]); 3] = [
        (
            "/dashboard?room=shop-42",
            HTML,
            &["/dashboard/dashboard.js", "id=\"key\""],
        ),
        (
            "/dashboard/dashboard.js",
            JS,
            // The web SDK is the demo's; the typed key goes in a header, kept per tab;
            // what it draws is the API's and the metrics'.
            &[
                "from \"/demo/danmaku.js\"",
                "Bearer ${state.key}",
                "sessionStorage",
                "/v1/rooms?sort=online&limit=50",
                "/analytics",
                "\"/metrics\"",
            ],
        ),
        // The gateway's theme, then the dashboard's own style.
        ("/dashboard/dashboard.css", CSS, &["--panel:", ".card {"]),
    ];
    // No API key: the page is public, its data is not.
    for (path, content_type, needles) in assets {
        request(&gw, "GET", path, &[])
            .await
            .assert_embedded(path, content_type);
        let (_, body) = gw.http_raw("GET", path, None, None).await;
        let lacking: Vec<_> = needles.iter().filter(|n| !body.contains(**n)).collect();
        assert!(lacking.is_empty(), "{path} lacks {lacking:?}");
    }
    let missing = request(&gw, "GET", "/dashboard/nope.js", &[]).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.error().0, "not_found");
}
