//! The retention dashboard at `/dashboard`: an operator's page, embedded in the binary
//! like the demo room. The page itself is public and static; it shows nothing until the
//! operator types an API key, which it keeps in `sessionStorage` and sends as
//! `Authorization: Bearer` with every request to the HTTP API (never in a URL). It
//! reads `GET /v1/rooms`, `GET /v1/rooms/{room}/analytics` and `GET /metrics`, and joins
//! the selected room anonymously with the web SDK (`/demo/danmaku.js`) to measure
//! delivery lag.

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

use crate::demo::{css, html, js};
use crate::state::AppState;

const INDEX: &str = include_str!("../assets/dashboard/index.html");
const SCRIPT: &str = include_str!("../assets/dashboard/dashboard.js");
const STYLE: &str = concat!(
    include_str!("../assets/theme.css"),
    include_str!("../assets/dashboard/dashboard.css")
);

/// The page's path.
pub const PATH: &str = "/dashboard";

/// The dashboard's routes (the headers, CSP included, are the demo room's).
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(PATH, get(|| html(INDEX)))
        .route("/dashboard/dashboard.js", get(|| js(SCRIPT)))
        .route("/dashboard/dashboard.css", get(|| css(STYLE)))
}
