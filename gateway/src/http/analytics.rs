//! `GET /v1/rooms/{room}/analytics`: a room's retention data, summed over every
//! gateway sharing the store (see [`danmaku_fanout::analytics`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};

use super::ApiKey;
use super::api::room_id;
use super::error::ApiError;
use crate::state::AppState;

pub(super) async fn analytics(
    _key: ApiKey,
    State(app): State<Arc<AppState>>,
    Path(room): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let room = room_id(&room)?;
    let recorder = &app.conn.recorder;
    // What this gateway counted so far is in; other gateways' is at most a flush late.
    recorder.flush(app.fanout.as_ref()).await;
    let (counters, online) = tokio::join!(app.fanout.analytics(&room), app.fanout.online(&room));
    Ok(Json(counters?.doc(room.as_str(), recorder.now(), online?)))
}
