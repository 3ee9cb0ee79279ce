//! The WebSocket side: the upgrade (auth, limits, buffer sizes) and the connection task.

mod commands;
mod conn;
mod outbound;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use danmaku_protocol::{ErrorCode, SUBPROTOCOL};
use serde::Deserialize;

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::limits::LimitError;
use crate::metrics::Metrics;

/// Bytes tungstenite reads from the socket at a time. Its default (128 KiB, allocated
/// eagerly per connection) would dominate a viewer's memory; client frames are tiny.
const READ_BUFFER: usize = 1024;
/// Safety cap on tungstenite's write buffer; the real bound is the mailbox plus the
/// write timeout.
const MAX_WRITE_BUFFER: usize = 1024 * 1024;

#[derive(Deserialize)]
pub(crate) struct WsQuery {
    token: Option<String>,
}

/// `GET /ws`: checks the handshake, then hands the socket to a connection task.
pub(crate) async fn upgrade(
    State(app): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<WsQuery>, axum::extract::rejection::QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match accept(&app, addr, &headers, query, ws) {
        Ok(response) => response,
        Err(e) => {
            Metrics::inc(&app.metrics.handshakes_refused);
            e.into_response()
        }
    }
}

fn accept(
    app: &Arc<AppState>,
    addr: SocketAddr,
    headers: &HeaderMap,
    query: Result<Query<WsQuery>, axum::extract::rejection::QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    if app.shutdown.is_cancelled() {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "draining; connect to another gateway",
        ));
    }
    let ws = ws.map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))?;
    let Query(query) = query.map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))?;
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if !app.auth.origin_ok(origin) {
        return Err(ApiError::new(ErrorCode::Forbidden, "origin not allowed"));
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let token = query.token.as_deref().or(bearer);
    let identity = app
        .auth
        .viewer(token)
        .map_err(|e| ApiError::new(ErrorCode::Unauthorized, e.to_string()))?;
    let permit = app.limiter.acquire(addr.ip()).map_err(|e| match e {
        LimitError::PerIp => ApiError::new(
            ErrorCode::RateLimited,
            "too many connections from this address",
        ),
        LimitError::Total => ApiError::new(
            ErrorCode::Unavailable,
            "gateway is full; connect to another gateway",
        ),
    })?;
    let frame_limit = app.config.limits.max_frame_bytes;
    let ws = ws
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(frame_limit)
        .max_frame_size(frame_limit)
        .protocols([SUBPROTOCOL]);
    let app = app.clone();
    // The tracker token keeps shutdown waiting until this connection has drained.
    let tracked = app.tracker.token();
    Ok(ws.on_upgrade(move |socket| async move {
        let _tracked = tracked;
        let _permit = permit;
        conn::run(app, socket, identity).await;
    }))
}
