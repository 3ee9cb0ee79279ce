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
const STYLE: &str = concat!(
    include_str!("../assets/theme.css"),
    include_str!("../assets/demo/demo.css")
);
/// The web SDK's bundle, built from `sdk/js` (CI checks it is the fresh build).
const SDK: &str = include_str!("../../sdk/js/dist/danmaku.js");

/// The page's path (the start-up banner prints it in dev mode).
pub const PATH: &str = "/demo";

/// The page may load only what this gateway serves, and talk only to it (the
/// dashboard's page too).
const CSP: &str = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; \
                   style-src 'self'; script-src 'self'; frame-ancestors 'none'";

/// An embedded asset with its headers: no caching without a check, the CSP, no sniffing,
/// no Referer (the dashboard's page is typed an API key).
fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
}

/// An embedded page (the dashboard's too).
pub(crate) async fn html(body: &'static str) -> impl IntoResponse {
    asset("text/html; charset=utf-8", body)
}

/// An embedded script.
pub(crate) async fn js(body: &'static str) -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", body)
}

/// An embedded style sheet.
pub(crate) async fn css(body: &'static str) -> impl IntoResponse {
    asset("text/css; charset=utf-8", body)
}

/// The demo's routes.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(PATH, get(|| html(INDEX)))
        .route("/demo/demo.js", get(|| js(SCRIPT)))
        .route("/demo/danmaku.js", get(|| js(SDK)))
        .route("/demo/demo.css", get(|| css(STYLE)))
}
