//! The backend API of a room's settings (read them, change them live) and of its
//! moderation (act, read the audit list).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use danmaku_protocol::ErrorCode;
use danmaku_protocol::moderation::Moderation;
use danmaku_protocol::welcome::Welcome;

use super::ApiKey;
use super::api::{json_body, room_id, sequenced};
use super::body::JsonBody;
use super::error::ApiError;
use crate::state::AppState;

/// `PUT /v1/rooms/{room}/settings`: a partial update of the room's settings (the fields
/// named change; a room without settings of its own starts from this gateway's
/// defaults), announced as a high `settings` event holding them all. The store applies
/// them to the next comment on every gateway.
pub(super) async fn put_settings(
    _key: ApiKey,
    State(app): State<Arc<AppState>>,
    Path(room): Path<String>,
    body: JsonBody,
) -> Result<Json<serde_json::Value>, ApiError> {
    let room = room_id(&room)?;
    let patch: serde_json::Value = json_body(&body)?;
    let defaults = &app.conn.settings.rooms;
    let (settings, p) = app.fanout.update_settings(&room, &patch, defaults).await?;
    Ok(Json(serde_json::json!({
        "room": room.as_str(),
        "epoch": &*p.epoch,
        "seq": p.seq,
        "settings": settings,
    })))
}

/// `GET /v1/rooms/{room}/settings`: the room's settings; `"own": false` when it has
/// none of its own (these are then this gateway's defaults).
pub(super) async fn get_settings(
    _key: ApiKey,
    State(app): State<Arc<AppState>>,
    Path(room): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let room = room_id(&room)?;
    let own = app.fanout.settings(&room).await?;
    let is_own = own.is_some();
    let settings = own.unwrap_or_else(|| (*app.conn.settings.rooms).clone());
    Ok(Json(serde_json::json!({
        "room": room.as_str(),
        "own": is_own,
        "settings": settings,
    })))
}

#[derive(serde::Deserialize)]
struct ModerationBody {
    action: String,
    user: Option<String>,
    seq: Option<u64>,
    duration_s: Option<u64>,
}

/// `POST /v1/rooms/{room}/moderation`: a backend's mute, unmute, ban, unban or retract
/// (the body of the WebSocket `moderate` command), recorded with `"by":"backend"`.
pub(super) async fn moderate(
    _key: ApiKey,
    State(app): State<Arc<AppState>>,
    Path(room): Path<String>,
    body: JsonBody,
) -> Result<Json<serde_json::Value>, ApiError> {
    let room = room_id(&room)?;
    let b: ModerationBody = json_body(&body)?;
    let m = Moderation::new(&b.action, b.user.as_deref(), b.seq, b.duration_s)
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, e))?;
    let p = app.fanout.moderate(&room, &m, "backend").await?;
    Ok(sequenced(&room, &p))
}

/// `GET /v1/rooms/{room}/moderation`: the room's audit list, oldest first (the last
/// 1,000 actions).
pub(super) async fn moderation_log(
    _key: ApiKey,
    State(app): State<Arc<AppState>>,
    Path(room): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    let room = room_id(&room)?;
    let log = app.fanout.moderation_log(&room).await?;
    let body = danmaku_protocol::server::encode_listing("room", room.as_str(), "actions", &log);
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// `PUT /v1/rooms/{room}/welcome`: the room's welcome templates (`new`, `returning`,
/// `tags`), replacing the ones before; `{}` removes them. Each joiner's `joined` then
/// carries its own `welcome`.
pub(super) async fn put_welcome(
    _key: ApiKey,
    State(app): State<Arc<AppState>>,
    Path(room): Path<String>,
    body: JsonBody,
) -> Result<Json<serde_json::Value>, ApiError> {
    let room = room_id(&room)?;
    let raw: serde_json::Value = json_body(&body)?;
    let welcome = Welcome::from_json(&raw).map_err(|e| ApiError::new(ErrorCode::BadRequest, e))?;
    app.fanout.set_welcome(&room, &welcome).await?;
    Ok(Json(
        serde_json::json!({"room": room.as_str(), "welcome": welcome}),
    ))
}
