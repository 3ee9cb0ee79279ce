//! The backend API of a room's settings: read them, change them live.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};

use super::ApiKey;
use super::api::{json_body, room_id};
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
