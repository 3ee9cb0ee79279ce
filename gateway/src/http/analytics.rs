//! `GET /v1/rooms/{room}/analytics`: a room's retention data, summed over every
//! gateway sharing the store (see [`danmaku_fanout::analytics`]); `GET /v1/rooms`: the
//! rooms with the most viewers.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use danmaku_protocol::ErrorCode;
use serde::Deserialize;

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

/// The most rooms one listing answers.
pub const MAX_LISTED: usize = 1_000;

#[derive(Deserialize)]
pub(super) struct ListQuery {
    sort: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/rooms?sort=online&limit=N`: the rooms with the most viewers online on
/// every gateway, most first (`limit` 1–1,000, default 50), each with its head seq.
pub(super) async fn rooms(
    _key: ApiKey,
    State(app): State<Arc<AppState>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))?;
    if q.sort.as_deref().is_some_and(|s| s != "online") {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "`sort` must be `online` (the only order there is)",
        ));
    }
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_LISTED).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("`limit` must be 1..={MAX_LISTED}"),
        ));
    }
    let top = app.fanout.top_rooms(limit).await?;
    let infos = futures_util::future::join_all(top.iter().map(|(r, _)| app.fanout.info(r))).await;
    let rooms: Vec<serde_json::Value> = top
        .iter()
        .zip(infos)
        .map(|((room, online), info)| {
            let seq = info.map(|i| i.seq).unwrap_or(0);
            serde_json::json!({"room": room.as_str(), "online": online, "seq": seq})
        })
        .collect();
    Ok(Json(
        serde_json::json!({ "sort": "online", "rooms": rooms }),
    ))
}
