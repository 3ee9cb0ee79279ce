//! The demo live room at `/demo`: a page built on the web SDK, embedded in the binary
//! (so a gateway run from a clean checkout serves it with no Node anywhere). The room
//! comes from `?room=`, the viewer token from `?token=`; the page talks to this gateway's
//! own `/ws`.

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::state::AppState;

const INDEX: &str = include_str!("../assets/demo/index.html");
const SCRIPT: &str = include_str!("../assets/demo/demo.js");
const STYLE: &str = include_str!("../assets/demo/demo.css");
/// The web SDK's bundle, built from `sdk/js` (CI checks it is the fresh build).
const SDK: &str = include_str!("../../sdk/js/dist/danmaku.js");

/// The page's path (the start-up banner prints it in dev mode).
pub const PATH: &str = "/demo";

/// The page may load only what this gateway serves, and talk only to it.
const CSP: &str = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; \
                   style-src 'self'; script-src 'self'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}

/// The demo's routes.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            PATH,
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/demo/demo.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/demo/danmaku.js",
            get(|| async { asset("text/javascript; charset=utf-8", SDK) }),
        )
        .route(
            "/demo/demo.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
}
