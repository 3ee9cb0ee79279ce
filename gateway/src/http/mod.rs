//! The HTTP side of the public port: the backend API, health, metrics and the API's
//! OpenAPI document (the WebSocket route is added next to them in `app.rs`).
//!
//! Every route here is in `gateway/openapi.json` (the test `openapi` fails otherwise).

mod analytics;
mod api;
mod body;
mod cors;
pub mod error;
mod interactions;
mod moderation;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};

use crate::state::AppState;
use error::ApiError;

/// The HTTP routes (state still to be given).
pub(crate) fn routes(state: &AppState) -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/rooms/{room}/events", post(api::publish))
        .route("/v1/rooms/{room}/polls", post(api::create_poll))
        .route("/v1/rooms/{room}/coupons", post(api::create_coupon))
        .route("/v1/rooms/{room}/coupons/{coupon}", get(api::get_coupon))
        .route(
            "/v1/rooms/{room}/coupons/{coupon}/close",
            post(api::close_coupon),
        )
        .route(
            "/v1/rooms/{room}/stage",
            put(api::set_stage).delete(api::clear_stage),
        )
        .route(
            "/v1/rooms/{room}/keywords",
            post(interactions::create_keyword),
        )
        .route("/v1/rooms/{room}/quizzes", post(interactions::create_quiz))
        .route(
            "/v1/rooms/{room}/lotteries",
            post(interactions::create_lottery),
        )
        .route(
            "/v1/rooms/{room}/lotteries/{id}/draw",
            get(interactions::public_draw),
        )
        .route("/v1/rooms/{room}/{what}/{id}", get(interactions::get))
        .route(
            "/v1/rooms/{room}/{what}/{id}/close",
            post(interactions::close),
        )
        .route("/v1/rooms/{room}/seats", put(interactions::set_seats))
        .route("/v1/rooms/{room}/welcome", put(moderation::put_welcome))
        .route(
            "/v1/rooms/{room}/moderation",
            post(moderation::moderate).get(moderation::moderation_log),
        )
        .route(
            "/v1/rooms/{room}/settings",
            put(moderation::put_settings).get(moderation::get_settings),
        )
        .route("/v1/rooms/{room}/polls/{poll}/close", post(api::close_poll))
        .route("/v1/rooms/{room}", get(api::room_info))
        .route("/v1/rooms/{room}/history", get(api::history))
        .route("/v1/rooms/{room}/analytics", get(analytics::analytics))
        .route("/v1/rooms", get(analytics::rooms))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            cors::Cors::new(&state.config.auth.cors_origins),
            finish,
        ))
}

/// What every answer of the HTTP API goes through: an error that is not JSON yet (one
/// of axum's own rejections, say) gets the API's error body, and the CORS headers are
/// added when `--cors-origins` lists the request's origin.
async fn finish(
    State(cors): State<cors::Cors>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let granted = cors.granted(request.headers());
    let mut response = error::json_error(next.run(request).await).await;
    cors.mark(granted, &mut response);
    response
}

/// The OpenAPI 3.1 document of every route of the public port.
pub const OPENAPI: &str = include_str!("../../openapi.json");

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// Proof that the request carries a configured API key.
pub struct ApiKey;

impl FromRequestParts<Arc<AppState>> for ApiKey {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        if let Some(name) = parts.uri.query().and_then(credential_in_query) {
            return Err(ApiError::new(
                danmaku_protocol::ErrorCode::Unauthorized,
                format!(
                    "credentials in the URL (`{name}`) are refused: URLs end up in logs; \
                     send Authorization: Bearer <key>"
                ),
            ));
        }
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let key = state.auth.api_key(header).map_err(ApiError::unauthorized)?;
        state.api_quota.take(key).map_err(|wait_ms| {
            state.metrics.api_rate_limited.inc();
            ApiError::rate_limited("too many requests with this API key", wait_ms)
        })?;
        Ok(Self)
    }
}

/// The name of a query parameter that looks like a credential, if there is one.
fn credential_in_query(query: &str) -> Option<&str> {
    const NAMES: [&str; 6] = [
        "key",
        "api_key",
        "apikey",
        "token",
        "access_token",
        "authorization",
    ];
    query
        .split('&')
        .map(|pair| pair.split_once('=').map_or(pair, |(name, _)| name))
        .find(|name| NAMES.iter().any(|n| n.eq_ignore_ascii_case(name)))
}

/// A known path asked with a method it does not serve (axum adds the `Allow` header).
///
/// A CORS preflight (no route serves `OPTIONS`) is answered 204 with the grant when its
/// `Origin` is one of `--cors-origins`, and refused with 403 otherwise: by default no
/// origin may call the API from a page, as its key is a backend secret that must not
/// reach a browser (the WebSocket checks `Origin` itself and needs no preflight).
async fn method_not_allowed(
    State(app): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> axum::response::Response {
    let preflight =
        method == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if !preflight {
        return ApiError::method_not_allowed(&method, uri.path()).into_response();
    }
    let origins = &app.config.auth.cors_origins;
    match headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        Some(origin) if origins.iter().any(|o| o == origin) => cors::preflight(),
        Some(origin) if !origins.is_empty() => ApiError::new(
            danmaku_protocol::ErrorCode::Forbidden,
            format!("the origin `{origin}` is not one of --cors-origins"),
        )
        .into_response(),
        _ => ApiError::cross_origin().into_response(),
    }
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

async fn readyz(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    if app.shutdown.is_cancelled() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "draining"})),
        )
    } else if !app.fanout.ready() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "store unavailable"})),
        )
    } else {
        (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ready"})),
        )
    }
}

async fn metrics(State(app): State<Arc<AppState>>, headers: HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, text) = app.exporter.render(accept);
    ([(header::CONTENT_TYPE, content_type)], text)
}
