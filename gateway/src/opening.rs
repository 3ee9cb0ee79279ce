//! Opening a keyword game, quiz, lottery or coupon from its JSON body: what the API's
//! `POST /v1/rooms/{room}/{keywords|quizzes|lotteries|coupons}` and a host's `open`
//! command share, so both check a body the same way and open the same thing.

use danmaku_fanout::interaction::{Entry, Kind, MAX_WINNERS, NewInteraction};
use danmaku_fanout::{Fanout, FanoutError, NewCoupon, Published};
use danmaku_protocol::audience::{Audience, MAX_TAGS, valid_tag};
use danmaku_protocol::client::Opening;
use danmaku_protocol::data::merge_text;
use danmaku_protocol::{InteractionId, RoomId};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Longest keyword, in characters.
const MAX_KEYWORD: usize = 32;
/// Longest question, in characters.
const MAX_QUESTION: usize = 200;
/// Longest option, prize or coupon title, in characters.
const MAX_TEXT: usize = 100;
/// Longest run, in seconds (a day).
const MAX_DURATION_S: u64 = 86_400;
/// Most claims one user may make of one coupon.
const MAX_PER_USER: u32 = 100;

/// Why nothing was opened.
#[derive(Debug)]
pub enum OpenError {
    /// The body is not a valid one (`bad_request`, with the reason).
    Invalid(String),
    /// The store refused or failed.
    Store(FanoutError),
}

impl From<FanoutError> for OpenError {
    fn from(e: FanoutError) -> Self {
        Self::Store(e)
    }
}

fn bad(m: impl Into<String>) -> OpenError {
    OpenError::Invalid(m.into())
}

/// What was opened.
#[derive(Debug)]
pub struct Opened {
    /// Its id (`k-…`, `q-…`, `l-…`, `c-…`).
    pub id: InteractionId,
    /// Its first event.
    pub published: Published,
    /// For a coupon with an audience: the viewers on this gateway in it.
    pub audience_online: Option<u64>,
}

/// The body an opening is read from.
#[derive(Debug)]
pub enum Body<'a> {
    /// An HTTP request's bytes (read straight into the body's fields: a key given twice
    /// is refused).
    Json(&'a [u8]),
    /// The fields of a host's `open` command.
    Fields(serde_json::Map<String, serde_json::Value>),
}

/// Opens `what` in `room` from `body`, a JSON object with the fields the API documents
/// for it (unknown fields refused, except on a coupon).
///
/// # Errors
/// [`OpenError::Invalid`] naming the field at fault; [`OpenError::Store`] as the
/// store's opening.
pub async fn open(
    fanout: &dyn Fanout,
    room: &RoomId,
    what: Opening,
    body: Body<'_>,
) -> Result<Opened, OpenError> {
    let new = match what {
        Opening::Coupon => return open_coupon(fanout, room, fields(body)?).await,
        Opening::Keyword => new_keyword(fields(body)?)?,
        Opening::Quiz => new_quiz(fields(body)?)?,
        Opening::Lottery => new_lottery(fanout, room, fields(body)?).await?,
    };
    let (id, published) = fanout.open_interaction(room, new).await?;
    Ok(Opened {
        id,
        published,
        audience_online: None,
    })
}

fn fields<T: DeserializeOwned>(body: Body<'_>) -> Result<T, OpenError> {
    match body {
        Body::Json(bytes) => {
            serde_json::from_slice(bytes).map_err(|e| bad(format!("invalid JSON body: {e}")))
        }
        Body::Fields(map) => serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| bad(format!("invalid fields: {e}"))),
    }
}

/// `text` has 1..=`max` characters and is not blank.
fn text(field: &str, text: &str, max: usize) -> Result<(), OpenError> {
    if text.trim().is_empty() || text.chars().count() > max {
        return Err(bad(format!("`{field}` must have 1..={max} characters")));
    }
    Ok(())
}

/// `v`, when it is within `lo..=hi`.
fn within<T: PartialOrd + std::fmt::Display>(
    field: &str,
    v: T,
    lo: T,
    hi: T,
) -> Result<T, OpenError> {
    if v < lo || v > hi {
        return Err(bad(format!("`{field}` must be {lo}..={hi}")));
    }
    Ok(v)
}

fn duration(s: u64) -> Result<u64, OpenError> {
    within("duration_s", s, 1, MAX_DURATION_S)
}

/// A keyword a comment can contain: 1..=32 characters, not blank once normalized.
fn keyword(k: &str) -> Result<(), OpenError> {
    text("keyword", k, MAX_KEYWORD)?;
    if merge_text(k).is_empty() {
        return Err(bad("`keyword` is blank once normalized"));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeywordBody {
    keyword: String,
    duration_s: u64,
    goal: Option<u64>,
}

fn new_keyword(body: KeywordBody) -> Result<NewInteraction, OpenError> {
    keyword(&body.keyword)?;
    if let Some(g) = body.goal {
        within("goal", g, 1, 1_000_000_000)?;
    }
    Ok(NewInteraction::Keyword {
        keyword: body.keyword,
        goal: body.goal,
        duration_s: duration(body.duration_s)?,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuizBody {
    question: String,
    options: Vec<String>,
    answer: u32,
    duration_s: u64,
}

fn new_quiz(body: QuizBody) -> Result<NewInteraction, OpenError> {
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
    Ok(NewInteraction::Quiz {
        question: body.question,
        options: body.options,
        answer: body.answer,
        duration_s: duration(body.duration_s)?,
    })
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

async fn new_lottery(
    fanout: &dyn Fanout,
    room: &RoomId,
    body: LotteryBody,
) -> Result<NewInteraction, OpenError> {
    text("prize", &body.prize, MAX_TEXT)?;
    within("winners", body.winners, 1, MAX_WINNERS)?;
    if body.tags.len() > MAX_TAGS || !body.tags.iter().all(|t| valid_tag(t)) {
        return Err(bad(format!(
            "`tags` must hold at most {MAX_TAGS} tags matching [a-z0-9_.:-]{{1,32}}"
        )));
    }
    let entry = entry(fanout, room, &body.entry).await?;
    if matches!(entry, Entry::Quiz(_)) && !body.tags.is_empty() {
        return Err(bad(
            "`tags` apply to comment and command entries: a quiz's correct answerers all enter",
        ));
    }
    Ok(NewInteraction::Lottery {
        prize: body.prize,
        winners: body.winners,
        entry,
        tags: body.tags,
        duration_s: duration(body.duration_s)?,
    })
}

/// A lottery's `entry`: `{"comment":"<keyword>"}`, `{"quiz":"q-…"}` (a quiz of this
/// room) or `"command"`.
async fn entry(
    fanout: &dyn Fanout,
    room: &RoomId,
    v: &serde_json::Value,
) -> Result<Entry, OpenError> {
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
    fanout.interaction(room, &q).await?;
    Ok(Entry::Quiz(q))
}

#[derive(Deserialize)]
struct CouponBody {
    title: String,
    stock: u64,
    #[serde(default = "one")]
    per_user: u32,
    duration_s: u64,
    /// Who may see and claim it.
    audience: Option<serde_json::Value>,
}

fn one() -> u32 {
    1
}

/// An event's `audience`, checked.
///
/// # Errors
/// [`OpenError::Invalid`] with the reason.
pub fn audience(raw: Option<&serde_json::Value>) -> Result<Option<Audience>, OpenError> {
    raw.map(Audience::from_json)
        .transpose()
        .map_err(|e| bad(e.to_string()))
}

async fn open_coupon(
    fanout: &dyn Fanout,
    room: &RoomId,
    body: CouponBody,
) -> Result<Opened, OpenError> {
    text("title", &body.title, MAX_TEXT)?;
    within("stock", body.stock, 1, danmaku_fanout::MAX_COUPON_STOCK)?;
    within("per_user", body.per_user, 1, MAX_PER_USER)?;
    let duration_s = duration(body.duration_s)?;
    let audience = audience(body.audience.as_ref())?;
    let new = NewCoupon {
        title: body.title,
        stock: body.stock,
        per_user: body.per_user,
        duration_s,
        audience: audience.clone(),
    };
    let (id, published) = fanout.create_coupon(room, new).await?;
    Ok(Opened {
        id,
        published,
        audience_online: audience.map(|a| fanout.hub().audience_online(room, &a)),
    })
}
