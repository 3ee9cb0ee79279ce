//! The backend API of keyword games, quizzes and lotteries: open, close, read.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use danmaku_fanout::interaction::Kind;
use danmaku_protocol::{ErrorCode, InteractionId, Opening};
use serde::Deserialize;

use super::ApiKey;
use super::api::{json_body, room_id, sequenced};
use super::body::JsonBody;
use super::error::ApiError;
use crate::opening;
use crate::state::AppState;

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::BadRequest, m.into())
}

/// Opens `what` from the request's body, answering its id under its name with the
/// room, epoch and seq of its first event.
async fn open(
    app: &AppState,
    room: &str,
    what: Opening,
    body: &JsonBody,
) -> Result<Json<serde_json::Value>, ApiError> {
    let room = room_id(room)?;
    let opened = opening::open(&*app.fanout, &room, what, opening::Body::Json(&body.0)).await?;
    Ok(Json(serde_json::json!({
        what.as_str(): opened.id.as_str(),
        "room": room.as_str(),
        "epoch": &*opened.published.epoch,
        "seq": opened.published.seq,
    })))
}

/// `POST /v1/rooms/{room}/keywords`: a keyword the room floods; viewer comments whose
/// normalized text contains it count.
pub(super) async fn create_keyword(
    _key: ApiKey,
    State(app): State<Arc<AppState>>,
    Path(room): Path<String>,
    body: JsonBody,
) -> Result<Json<serde_json::Value>, ApiError> {
    open(&app, &room, Opening::Keyword, &body).await
}

/// `POST /v1/rooms/{room}/quizzes`: a quiz whose answer is told only at its close.
pub(super) async fn create_quiz(
    _key: ApiKey,
    State(app): State<Arc<AppState>>,
    Path(room): Path<String>,
    body: JsonBody,
) -> Result<Json<serde_json::Value>, ApiError> {
    open(&app, &room, Opening::Quiz, &body).await
}

/// `POST /v1/rooms/{room}/lotteries`: a lottery drawn verifiably at its close.
pub(super) async fn create_lottery(
    _key: ApiKey,
    State(app): State<Arc<AppState>>,
    Path(room): Path<String>,
    body: JsonBody,
) -> Result<Json<serde_json::Value>, ApiError> {
    open(&app, &room, Opening::Lottery, &body).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeatsBody {
    count: u32,
}

/// `PUT /v1/rooms/{room}/seats`: how many co-host seats the room has (seats beyond a
/// smaller count are emptied).
pub(super) async fn set_seats(
    _key: ApiKey,
    State(app): State<Arc<AppState>>,
    Path(room): Path<String>,
    body: JsonBody,
) -> Result<Json<serde_json::Value>, ApiError> {
    use danmaku_fanout::seats::MAX_SEATS;
    let room = room_id(&room)?;
    let body: SeatsBody = json_body(&body)?;
    if !(1..=MAX_SEATS).contains(&body.count) {
        return Err(bad(format!("`count` must be 1..={MAX_SEATS}")));
    }
    let p = app.fanout.set_seats(&room, body.count).await?;
    Ok(sequenced(&room, &p))
}

/// The id in the path, of the kind its collection holds (another kind is unknown here).
fn id_of(collection: Kind, raw: &str) -> Result<InteractionId, ApiError> {
    let id = InteractionId::new(raw).map_err(|e| bad(e.to_string()))?;
    if Kind::of(&id) != Some(collection) {
        return Err(ApiError::new(
            ErrorCode::UnknownInteraction,
            format!(
                "`{id}` is not a {} id (those begin `{}-`)",
                collection.name(),
                collection.prefix()
            ),
        ));
    }
    Ok(id)
}

fn collection(name: &str) -> Option<Kind> {
    match name {
        "keywords" => Some(Kind::Keyword),
        "quizzes" => Some(Kind::Quiz),
        "lotteries" => Some(Kind::Lottery),
        _ => None,
    }
}

/// `POST /v1/rooms/{room}/{keywords|quizzes|lotteries}/{id}/close`: closes it now (a
/// lottery is drawn).
pub(super) async fn close(
    _key: ApiKey,
    State(app): State<Arc<AppState>>,
    Path((room, what, id)): Path<(String, String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let room = room_id(&room)?;
    let kind = collection(&what).ok_or_else(ApiError::not_found)?;
    let id = id_of(kind, &id)?;
    let p = app.fanout.close_interaction(&room, &id).await?;
    Ok(sequenced(&room, &p))
}

/// `GET /v1/rooms/{room}/{keywords|quizzes|lotteries}/{id}`: its whole record — a
/// quiz's correct answerers in answer order, a lottery's entrants (sorted) with its
/// seed and winners once drawn, for anyone to recompute the draw.
pub(super) async fn get(
    _key: ApiKey,
    State(app): State<Arc<AppState>>,
    Path((room, what, id)): Path<(String, String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let room = room_id(&room)?;
    let kind = collection(&what).ok_or_else(ApiError::not_found)?;
    let id = id_of(kind, &id)?;
    let record = app.fanout.interaction(&room, &id).await?;
    record_body(kind, record, true).map(Json)
}

/// A record as the API answers it: `{<kind>: state}`, with its users (`users`) under
/// their name: a quiz's `correct_users`, a lottery's `entrants`.
fn record_body(
    kind: Kind,
    record: danmaku_fanout::InteractionRecord,
    users: bool,
) -> Result<serde_json::Value, ApiError> {
    let state: serde_json::Value = serde_json::from_slice(&record.state)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    let mut body = serde_json::json!({ kind.name(): state });
    if users {
        match kind {
            Kind::Quiz => body["correct_users"] = record.users.into(),
            Kind::Lottery => body["entrants"] = record.users.into(),
            Kind::Keyword => {}
        }
    }
    Ok(body)
}

/// `GET /v1/rooms/{room}/lotteries/{id}/draw`, without an API key: a drawn lottery's
/// audit record — the same body as the keyed `GET` — so that anyone (a viewer's
/// browser, say) can recompute the draw. Before the draw it answers the record
/// without its entrants: they are told with the seed, never before.
pub(super) async fn public_draw(
    State(app): State<Arc<AppState>>,
    Path((room, id)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let room = room_id(&room)?;
    let id = id_of(Kind::Lottery, &id)?;
    let record = app.fanout.interaction(&room, &id).await?;
    let drawn = serde_json::from_slice::<serde_json::Value>(&record.state)
        .is_ok_and(|state| state["state"] == "drawn");
    record_body(Kind::Lottery, record, drawn).map(Json)
}
