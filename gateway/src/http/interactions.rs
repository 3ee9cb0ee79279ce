//! The backend API of keyword games, quizzes and lotteries: open, close, read.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use danmaku_fanout::interaction::{Entry, Kind, MAX_WINNERS, NewInteraction};
use danmaku_protocol::audience::{MAX_TAGS, valid_tag};
use danmaku_protocol::data::merge_text;
use danmaku_protocol::{ErrorCode, InteractionId, RoomId};
use serde::Deserialize;

use super::ApiKey;
use super::api::{json_body, room_id, sequenced};
use super::body::JsonBody;
use super::error::ApiError;
use crate::state::AppState;

/// Longest keyword, in characters.
const MAX_KEYWORD: usize = 32;
/// Longest question, in characters.
const MAX_QUESTION: usize = 200;
/// Longest option or prize, in characters.
const MAX_TEXT: usize = 100;
/// Longest run, in seconds (a day).
const MAX_DURATION_S: u64 = 86_400;

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::BadRequest, m.into())
}

/// `text` has 1..=`max` characters and is not blank.
fn text(field: &str, text: &str, max: usize) -> Result<(), ApiError> {
    if text.trim().is_empty() || text.chars().count() > max {
        return Err(bad(format!("`{field}` must have 1..={max} characters")));
    }
    Ok(())
}

fn duration(s: u64) -> Result<u64, ApiError> {
    if !(1..=MAX_DURATION_S).contains(&s) {
        return Err(bad(format!("`duration_s` must be 1..={MAX_DURATION_S}")));
    }
    Ok(s)
}

/// A keyword a comment can contain: 1..=32 characters, not blank once normalized.
fn keyword(k: &str) -> Result<(), ApiError> {
    text("keyword", k, MAX_KEYWORD)?;
    if merge_text(k).is_empty() {
        return Err(bad("`keyword` is blank once normalized"));
    }
    Ok(())
}

async fn open(
    app: &AppState,
    room: &RoomId,
    new: NewInteraction,
) -> Result<Json<serde_json::Value>, ApiError> {
    let kind = new.kind();
    let (id, p) = app.fanout.open_interaction(room, new).await?;
    Ok(Json(serde_json::json!({
        kind.name(): id.as_str(),
        "room": room.as_str(),
        "epoch": &*p.epoch,
        "seq": p.seq,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeywordBody {
    keyword: String,
    duration_s: u64,
    goal: Option<u64>,
}

/// `POST /v1/rooms/{room}/keywords`: a keyword the room floods; viewer comments whose
/// normalized text contains it count.
pub(super) async fn create_keyword(
    _key: ApiKey,
    State(app): State<Arc<AppState>>,
    Path(room): Path<String>,
    body: JsonBody,
) -> Result<Json<serde_json::Value>, ApiError> {
    let room = room_id(&room)?;
    let body: KeywordBody = json_body(&body)?;
    keyword(&body.keyword)?;
    if body.goal.is_some_and(|g| !(1..=1_000_000_000).contains(&g)) {
        return Err(bad("`goal` must be 1..=1000000000"));
    }
    let new = NewInteraction::Keyword {
        keyword: body.keyword,
        goal: body.goal,
        duration_s: duration(body.duration_s)?,
    };
    open(&app, &room, new).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuizBody {
    question: String,
    options: Vec<String>,
    answer: u32,
    duration_s: u64,
}

/// `POST /v1/rooms/{room}/quizzes`: a quiz whose answer is told only at its close.
pub(super) async fn create_quiz(
    _key: ApiKey,
    State(app): State<Arc<AppState>>,
    Path(room): Path<String>,
    body: JsonBody,
) -> Result<Json<serde_json::Value>, ApiError> {
    let room = room_id(&room)?;
    let body: QuizBody = json_body(&body)?;
    text("question", &body.question, MAX_QUESTION)?;
    if !(2..=6).contains(&body.options.len()) {
        return Err(bad("`options` must hold 2..=6 options"));
    }
    for o in &body.options {
        text("options", o, MAX_TEXT)?;
    }
    if body.answer as usize >= body.options.len() {
        return Err(bad(format!(
            "`answer` must index `options` (0..={})",
            body.options.len() - 1
        )));
    }
    let new = NewInteraction::Quiz {
        question: body.question,
        options: body.options,
        answer: body.answer,
        duration_s: duration(body.duration_s)?,
    };
    open(&app, &room, new).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LotteryBody {
    prize: String,
    winners: u32,
    duration_s: u64,
    entry: serde_json::Value,
    #[serde(default)]
    tags: Vec<String>,
}

/// `POST /v1/rooms/{room}/lotteries`: a lottery drawn verifiably at its close.
pub(super) async fn create_lottery(
    _key: ApiKey,
    State(app): State<Arc<AppState>>,
    Path(room): Path<String>,
    body: JsonBody,
) -> Result<Json<serde_json::Value>, ApiError> {
    let room = room_id(&room)?;
    let body: LotteryBody = json_body(&body)?;
    text("prize", &body.prize, MAX_TEXT)?;
    if !(1..=MAX_WINNERS).contains(&body.winners) {
        return Err(bad(format!("`winners` must be 1..={MAX_WINNERS}")));
    }
    if body.tags.len() > MAX_TAGS || !body.tags.iter().all(|t| valid_tag(t)) {
        return Err(bad(format!(
            "`tags` must hold at most {MAX_TAGS} tags matching [a-z0-9_.:-]{{1,32}}"
        )));
    }
    let entry = entry(&app, &room, &body.entry).await?;
    if matches!(entry, Entry::Quiz(_)) && !body.tags.is_empty() {
        return Err(bad(
            "`tags` apply to comment and command entries: a quiz's correct answerers all enter",
        ));
    }
    let new = NewInteraction::Lottery {
        prize: body.prize,
        winners: body.winners,
        entry,
        tags: body.tags,
        duration_s: duration(body.duration_s)?,
    };
    open(&app, &room, new).await
}

/// A lottery's `entry`: `{"comment":"<keyword>"}`, `{"quiz":"q-…"}` (a quiz of this
/// room) or `"command"`.
async fn entry(app: &AppState, room: &RoomId, v: &serde_json::Value) -> Result<Entry, ApiError> {
    const WHAT: &str =
        r#"`entry` must be {"comment":"<keyword>"}, {"quiz":"<quiz id>"} or "command""#;
    if v.as_str() == Some("command") {
        return Ok(Entry::Command);
    }
    let object = v
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or_else(|| bad(WHAT))?;
    if let Some(k) = object.get("comment") {
        let k = k.as_str().ok_or_else(|| bad(WHAT))?;
        keyword(k)?;
        return Ok(Entry::Comment(k.to_owned()));
    }
    let q = object
        .get("quiz")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| bad(WHAT))?;
    let q = InteractionId::new(q).map_err(|e| bad(e.to_string()))?;
    if Kind::of(&q) != Some(Kind::Quiz) {
        return Err(bad(format!("`{q}` is not a quiz id")));
    }
    // The quiz must be this room's.
    app.fanout.interaction(room, &q).await?;
    Ok(Entry::Quiz(q))
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
