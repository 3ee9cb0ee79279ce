//! The backend API: publish, polls, room info, history.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use danmaku_fanout::{NewEvent, NewPoll};
use danmaku_protocol::audience::Audience;
use danmaku_protocol::{ErrorCode, EventKind, InteractionId, Opening, PollId, Priority, RoomId};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::ApiKey;
use super::body::JsonBody;
use super::error::ApiError;
use crate::state::AppState;

/// Kinds the gateway sequences itself; a backend cannot forge them.
/// Kinds only the gateway sequences: a backend's event of one would pass for the room's
/// own state.
const RESERVED_KINDS: [&str; 16] = [
    "likes",
    "poll",
    "stage",
    "coupon",
    "keyword",
    "quiz",
    "lottery",
    "lottery.won",
    "seats",
    "cohost.request",
    "cohost.invite",
    "cohost.accepted",
    "cohost.rejected",
    "settings",
    "retract",
    "moderation",
];

/// Most bytes of a stage object (the product, its label and times).
pub const MAX_STAGE_BYTES: usize = 8 * 1024;
/// Most characters of a stage's label.
const MAX_STAGE_LABEL: usize = 64;

pub(super) fn room_id(raw: &str) -> Result<RoomId, ApiError> {
    RoomId::new(raw).map_err(|e| ApiError::new(ErrorCode::InvalidRoom, e.to_string()))
}

pub(super) fn json_body<'a, T: Deserialize<'a>>(body: &'a JsonBody) -> Result<T, ApiError> {
    serde_json::from_slice(&body.0)
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, format!("invalid JSON body: {e}")))
}

#[derive(Deserialize)]
struct PublishBody<'a> {
    kind: String,
    #[serde(borrow)]
    data: &'a RawValue,
    idempotency_key: Option<String>,
    /// A retry of an attempt whose outcome is unknown (needs `idempotency_key`).
    #[serde(default)]
    retry: bool,
    /// `high`, `normal` or `low`; by default high, except for the chatter kinds.
    priority: Option<String>,
    /// Only these viewers receive it: `{"users":[…]}`, `{"tags":[…]}` or
    /// `{"tags_all":[…]}`.
    audience: Option<serde_json::Value>,
}

pub(super) async fn publish(
    _key: ApiKey,
    State(app): State<Arc<AppState>>,
    Path(room): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let room = room_id(&room)?;
    let body: PublishBody<'_> = json_body(&body)?;
    let kind = EventKind::new(&body.kind)
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.to_string()))?;
    if RESERVED_KINDS.contains(&kind.as_str()) {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("kind `{}` is reserved", kind.as_str()),
        ));
    }
    if let Some(k) = &body.idempotency_key
        && (k.is_empty() || k.len() > 128)
    {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "idempotency_key must be 1..=128 bytes",
        ));
    }
    if body.retry && body.idempotency_key.is_none() {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "retry needs the idempotency_key of the first attempt",
        ));
    }
    let priority = match body.priority.as_deref() {
        None => Priority::of_backend(&kind),
        Some(p) => Priority::parse(p).ok_or_else(|| {
            ApiError::new(
                ErrorCode::BadRequest,
                format!("priority `{p}` is not one of high, normal, low"),
            )
        })?,
    };
    let audience = audience(body.audience.as_ref())?;
    let event = NewEvent {
        kind: &kind,
        data: body.data.get(),
        priority,
        idempotency_key: body.idempotency_key.as_deref(),
        retry: body.retry,
        audience: audience.as_ref(),
        ingress: None,
    };
    let started = Instant::now();
    let p = app.fanout.publish_event(&room, event).await?;
    app.metrics.publish_latency.observe(started.elapsed());
    if !p.duplicate {
        app.metrics.events_in.inc();
    }
    let mut reply = serde_json::json!({"room": room.as_str(), "epoch": &*p.epoch, "seq": p.seq});
    add_audience_online(&mut reply, &app, &room, audience.as_ref());
    Ok((StatusCode::OK, Json(reply)).into_response())
}

/// A body's `audience`, checked.
fn audience(raw: Option<&serde_json::Value>) -> Result<Option<Audience>, ApiError> {
    Ok(crate::opening::audience(raw)?)
}

/// Adds `audience_online` to the reply of a targeted publication: the joined viewers
/// on this gateway in the audience.
fn add_audience_online(
    reply: &mut serde_json::Value,
    app: &AppState,
    room: &RoomId,
    audience: Option<&Audience>,
) {
    if let Some(a) = audience {
        reply["audience_online"] = app.fanout.hub().audience_online(room, a).into();
    }
}

#[derive(Deserialize)]
struct StageBody<'a> {
    /// The product on stage: any JSON value the clients render.
    #[serde(borrow)]
    product: Option<&'a serde_json::value::RawValue>,
    /// When its countdown ends (Unix ms, server clock).
    ends_at: Option<u64>,
    /// A short label ("flash sale", "new").
    label: Option<String>,
}

/// `PUT /v1/rooms/{room}/stage`: puts a product on the room's stage (replacing what was
/// there), announced as a high `stage` event and held in every joiner's snapshot.
pub(super) async fn set_stage(
    _key: ApiKey,
    State(app): State<Arc<AppState>>,
    Path(room): Path<String>,
    body: JsonBody,
) -> Result<Json<serde_json::Value>, ApiError> {
    let room = room_id(&room)?;
    let body: StageBody<'_> = json_body(&body)?;
    let bad = |m: String| ApiError::new(ErrorCode::BadRequest, m);
    let product = body
        .product
        .filter(|p| p.get() != "null")
        .ok_or_else(|| bad("`product` is required".into()))?;
    let now = danmaku_fanout::now_ms();
    if let Some(at) = body.ends_at
        && at <= now
    {
        return Err(bad(format!(
            "`ends_at` ({at}) is not in the future (server time {now})"
        )));
    }
    if let Some(label) = &body.label
        && (label.trim().is_empty() || label.chars().count() > MAX_STAGE_LABEL)
    {
        return Err(bad(format!(
            "`label` must have 1..={MAX_STAGE_LABEL} characters"
        )));
    }
    // The product goes in as the backend sent it (no re-parse: numbers keep their
    // digits); the other fields are ours.
    let mut stage = format!("{{\"product\":{}", product.get());
    if let Some(at) = body.ends_at {
        stage.push_str(&format!(",\"ends_at\":{at}"));
    }
    if let Some(label) = &body.label {
        let label = serde_json::to_string(label).map_err(|e| bad(e.to_string()))?;
        stage.push_str(&format!(",\"label\":{label}"));
    }
    stage.push_str(&format!(",\"since\":{now}}}"));
    if stage.len() > MAX_STAGE_BYTES {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "the stage is {} bytes; at most {MAX_STAGE_BYTES}",
                stage.len()
            ),
        ));
    }
    let p = app.fanout.set_stage(&room, Some(&stage)).await?;
    Ok(sequenced(&room, &p))
}

/// The answer to a call that sequenced one event.
pub(super) fn sequenced(room: &RoomId, p: &danmaku_fanout::Published) -> Json<serde_json::Value> {
    Json(serde_json::json!({"room": room.as_str(), "epoch": &*p.epoch, "seq": p.seq}))
}

/// `DELETE /v1/rooms/{room}/stage`: clears the stage (a `stage` event with `null`).
pub(super) async fn clear_stage(
    _key: ApiKey,
    State(app): State<Arc<AppState>>,
    Path(room): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let room = room_id(&room)?;
    let p = app.fanout.set_stage(&room, None).await?;
    Ok(sequenced(&room, &p))
}

/// `POST /v1/rooms/{room}/coupons`: opens a coupon with a stock; exactly `stock`
/// claims succeed.
pub(super) async fn create_coupon(
    _key: ApiKey,
    State(app): State<Arc<AppState>>,
    Path(room): Path<String>,
    body: JsonBody,
) -> Result<Json<serde_json::Value>, ApiError> {
    let room = room_id(&room)?;
    let body = crate::opening::Body::Json(&body.0);
    let opened = crate::opening::open(&*app.fanout, &room, Opening::Coupon, body).await?;
    let mut reply = serde_json::json!({"coupon": opened.id.as_str(), "seq": opened.published.seq});
    if let Some(n) = opened.audience_online {
        reply["audience_online"] = n.into();
    }
    Ok(Json(reply))
}

fn coupon_id(raw: &str) -> Result<InteractionId, ApiError> {
    InteractionId::new(raw).map_err(|e| ApiError::new(ErrorCode::BadRequest, e.to_string()))
}

/// `POST /v1/rooms/{room}/coupons/{coupon}/close`.
pub(super) async fn close_coupon(
    _key: ApiKey,
    State(app): State<Arc<AppState>>,
    Path((room, coupon)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (room, coupon) = (room_id(&room)?, coupon_id(&coupon)?);
    let p = app.fanout.close_coupon(&room, &coupon).await?;
    Ok(sequenced(&room, &p))
}

/// `GET /v1/rooms/{room}/coupons/{coupon}`: its state and every claim, for the backend
/// that honours them.
pub(super) async fn get_coupon(
    _key: ApiKey,
    State(app): State<Arc<AppState>>,
    Path((room, coupon)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (room, coupon) = (room_id(&room)?, coupon_id(&coupon)?);
    let record = app.fanout.coupon(&room, &coupon).await?;
    let claims = serde_json::to_string(&record.claims)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    let mut body = Vec::with_capacity(record.state.len() + claims.len() + 16);
    body.extend_from_slice(b"{\"coupon\":");
    body.extend_from_slice(&record.state);
    body.extend_from_slice(b",\"claims\":");
    body.extend_from_slice(claims.as_bytes());
    body.push(b'}');
    Ok((
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

#[derive(Deserialize)]
struct PollBody {
    question: String,
    options: Vec<String>,
    duration_s: u64,
}

pub(super) async fn create_poll(
    _key: ApiKey,
    State(app): State<Arc<AppState>>,
    Path(room): Path<String>,
    body: JsonBody,
) -> Result<Json<serde_json::Value>, ApiError> {
    let room = room_id(&room)?;
    let body: PollBody = json_body(&body)?;
    let bad = |m: &str| ApiError::new(ErrorCode::BadRequest, m);
    if body.question.trim().is_empty() || body.question.chars().count() > 200 {
        return Err(bad("question must have 1..=200 characters"));
    }
    if !(2..=10).contains(&body.options.len()) {
        return Err(bad("a poll has 2..=10 options"));
    }
    if body
        .options
        .iter()
        .any(|o| o.trim().is_empty() || o.chars().count() > 100)
    {
        return Err(bad("each option must have 1..=100 characters"));
    }
    if !(1..=86_400).contains(&body.duration_s) {
        return Err(bad("duration_s must be 1..=86400"));
    }
    let new = NewPoll {
        question: body.question,
        options: body.options,
        duration_s: body.duration_s,
    };
    let (poll, p) = app.fanout.create_poll(&room, new).await?;
    Ok(Json(
        serde_json::json!({"poll": poll.as_str(), "seq": p.seq}),
    ))
}

pub(super) async fn close_poll(
    _key: ApiKey,
    State(app): State<Arc<AppState>>,
    Path((room, poll)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let room = room_id(&room)?;
    let poll =
        PollId::new(&poll).map_err(|e| ApiError::new(ErrorCode::UnknownPoll, e.to_string()))?;
    let p = app.fanout.close_poll(&room, &poll).await?;
    Ok(Json(serde_json::json!({"seq": p.seq})))
}

pub(super) async fn room_info(
    _key: ApiKey,
    State(app): State<Arc<AppState>>,
    Path(room): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let room = room_id(&room)?;
    let info = app.fanout.info(&room).await?;
    let online = app.fanout.online(&room).await?;
    Ok(Json(serde_json::json!({
        "room": room.as_str(), "epoch": &*info.epoch, "seq": info.seq, "online": online, "likes": info.likes,
    })))
}

#[derive(Deserialize)]
pub(super) struct HistoryQuery {
    since: Option<u64>,
    limit: Option<usize>,
}

pub(super) async fn history(
    _key: ApiKey,
    State(app): State<Arc<AppState>>,
    Path(room): Path<String>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let room = room_id(&room)?;
    let Query(q) = query.map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1_000);
    let h = app
        .fanout
        .history(&room, q.since.unwrap_or(0), limit)
        .await?;
    // Backends see every event, targeted ones without their audience tag.
    let events: Vec<_> = h
        .events
        .iter()
        .map(danmaku_protocol::audience::untagged)
        .collect();
    let body = danmaku_protocol::server::encode_history(&h.epoch, &events);
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
