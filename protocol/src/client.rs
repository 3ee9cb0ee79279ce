//! Client → server commands: decoding and validation.
//!
//! Decoding is two steps: the JSON object is read into a loose wire shape (so the `id`
//! is known even when a field is wrong and the `error` reply can echo it), then checked
//! against [`Limits`] into a typed [`Command`]. Unknown fields are ignored, so clients
//! may add fields without breaking older gateways.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::error::{DecodeError, ErrorCode};
use crate::ids::{InteractionId, PollId, RoomId};
use crate::limits::Limits;

/// Where a client resumes a room: the epoch and the last seq it saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Since {
    /// The room's epoch the client saw.
    pub epoch: String,
    /// The last seq the client saw.
    pub seq: u64,
}

/// A validated client command. A client encodes one with [`Command::encode`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Command {
    /// Join a room, optionally resuming after `since`.
    Join {
        /// Echoed in the reply.
        id: u64,
        /// The room to join.
        room: RoomId,
        /// Resume point, if the client saw the room before.
        #[serde(skip_serializing_if = "Option::is_none")]
        since: Option<Since>,
        /// Every event, or an adaptive share of them.
        #[serde(flatten, skip_serializing_if = "Mode::is_all")]
        mode: Mode,
    },
    /// Leave a room.
    Leave {
        /// Echoed in the reply.
        id: u64,
        /// The room to leave.
        room: RoomId,
    },
    /// Post a comment.
    Comment {
        /// Echoed in the reply.
        id: u64,
        /// A joined room.
        room: RoomId,
        /// 1..=`comment_max_chars` Unicode scalar values, not blank.
        text: String,
    },
    /// Like the room `count` times.
    Like {
        /// Echoed in the reply.
        id: u64,
        /// A joined room.
        room: RoomId,
        /// 1..=`like_max_count`.
        count: u32,
    },
    /// Vote for an option of an open poll.
    Vote {
        /// Echoed in the reply.
        id: u64,
        /// A joined room.
        room: RoomId,
        /// The poll.
        poll: PollId,
        /// Index of the chosen option.
        option: u32,
    },
    /// Claim one of a coupon's stock.
    Claim {
        /// Echoed in the reply.
        id: u64,
        /// A joined room.
        room: RoomId,
        /// The coupon.
        coupon: InteractionId,
    },
    /// Answer an open quiz.
    Answer {
        /// Echoed in the reply.
        id: u64,
        /// A joined room.
        room: RoomId,
        /// The quiz.
        quiz: InteractionId,
        /// Index of the chosen option.
        option: u32,
    },
    /// Enter a lottery whose entry is the command.
    Enter {
        /// Echoed in the reply.
        id: u64,
        /// A joined room.
        room: RoomId,
        /// The lottery.
        lottery: InteractionId,
    },
    /// A co-host move: a viewer's `request`, `cancel`, `accept_invite`, `decline`,
    /// `leave`, or a host's `accept`, `reject`, `invite`, `kick` (naming `user`).
    Cohost {
        /// Echoed in the reply.
        id: u64,
        /// A joined room.
        room: RoomId,
        /// The move.
        action: CohostAction,
        /// The user a host's move is about.
        #[serde(skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        /// The seat asked for (`accept`, `invite`), from 0.
        #[serde(skip_serializing_if = "Option::is_none")]
        seat: Option<u32>,
    },
    /// A host's or moderator's moderation action in a room it joined.
    Moderate {
        /// Echoed in the reply.
        id: u64,
        /// A joined room.
        room: RoomId,
        /// The action.
        #[serde(flatten)]
        moderation: crate::moderation::Moderation,
    },
    /// A host opens a keyword game, quiz, lottery or coupon in a room it joined, with
    /// the body the HTTP API takes for it (the command's other fields).
    Open {
        /// Echoed in the reply.
        id: u64,
        /// A joined room.
        room: RoomId,
        /// What it opens.
        what: Opening,
        /// The fields of the API's body (every field but `type`, `id`, `room`, `what`).
        #[serde(flatten)]
        body: serde_json::Map<String, serde_json::Value>,
    },
    /// Round-trip check.
    Ping {
        /// Echoed in the reply.
        id: u64,
    },
}

impl Command {
    /// The command's `id`.
    pub fn id(&self) -> u64 {
        match self {
            Self::Join { id, .. }
            | Self::Leave { id, .. }
            | Self::Comment { id, .. }
            | Self::Like { id, .. }
            | Self::Vote { id, .. }
            | Self::Claim { id, .. }
            | Self::Answer { id, .. }
            | Self::Enter { id, .. }
            | Self::Cohost { id, .. }
            | Self::Moderate { id, .. }
            | Self::Open { id, .. }
            | Self::Ping { id } => *id,
        }
    }

    /// The command as one JSON object, as a client sends it.
    pub fn encode(&self) -> String {
        // INVARIANT: commands hold only strings, integers and validated ids, which
        // serde_json always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A co-host move ([`Command::Cohost`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CohostAction {
    /// A viewer asks for a seat.
    Request,
    /// A viewer withdraws its request.
    Cancel,
    /// A viewer takes the seat it was invited to.
    AcceptInvite,
    /// A viewer declines an invitation.
    Decline,
    /// A seated viewer leaves.
    Leave,
    /// The host seats a requester.
    Accept,
    /// The host turns a request down.
    Reject,
    /// The host invites a viewer.
    Invite,
    /// The host takes a seat back.
    Kick,
}

impl CohostAction {
    const ALL: [(&'static str, Self); 9] = [
        ("request", Self::Request),
        ("cancel", Self::Cancel),
        ("accept_invite", Self::AcceptInvite),
        ("decline", Self::Decline),
        ("leave", Self::Leave),
        ("accept", Self::Accept),
        ("reject", Self::Reject),
        ("invite", Self::Invite),
        ("kick", Self::Kick),
    ];

    /// Reads a move's wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, a)| *a)
    }

    /// Whether only a host may make it (it names the `user`).
    pub fn is_host_move(self) -> bool {
        matches!(
            self,
            Self::Accept | Self::Reject | Self::Invite | Self::Kick
        )
    }
}

/// What a host's `open` command opens ([`Command::Open`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Opening {
    /// A keyword game (`k-…`).
    Keyword,
    /// A quiz (`q-…`).
    Quiz,
    /// A lottery (`l-…`).
    Lottery,
    /// A coupon with stock (`c-…`).
    Coupon,
}

impl Opening {
    const ALL: [(&'static str, Self); 4] = [
        ("keyword", Self::Keyword),
        ("quiz", Self::Quiz),
        ("lottery", Self::Lottery),
        ("coupon", Self::Coupon),
    ];

    /// Reads its wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, w)| *w)
    }

    /// Its wire name, also the key of its id in replies (`{"quiz":"q-1"}`).
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, w)| *w == self)
            .map_or("keyword", |(n, _)| n)
    }
}

/// What a viewer receives of a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Mode {
    /// Every event (the default, v1).
    #[default]
    #[serde(skip)]
    All,
    /// Every `high` event; `normal` and `low` ones only within `max_rate` events per
    /// second and while the viewer keeps up. What is not delivered is told by a
    /// `skipped` marker before the next event that is.
    Adaptive {
        /// Events per second the viewer wants at most.
        max_rate: u32,
    },
}

impl Mode {
    /// Whether this is the v1 mode, every event.
    pub fn is_all(&self) -> bool {
        *self == Self::All
    }

    /// `max_rate` when a join does not say.
    pub const DEFAULT_MAX_RATE: u32 = 20;
    /// The largest `max_rate` a join may ask for.
    pub const MAX_MAX_RATE: u32 = 1_000;
}

/// The loose shape every command is first read into.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(rename = "type", borrow)]
    ty: Option<Cow<'a, str>>,
    id: Option<serde_json::Value>,
    #[serde(borrow)]
    room: Option<Cow<'a, str>>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    count: Option<serde_json::Value>,
    #[serde(borrow)]
    poll: Option<Cow<'a, str>>,
    #[serde(borrow)]
    coupon: Option<Cow<'a, str>>,
    #[serde(borrow)]
    quiz: Option<Cow<'a, str>>,
    #[serde(borrow)]
    lottery: Option<Cow<'a, str>>,
    #[serde(borrow)]
    action: Option<Cow<'a, str>>,
    #[serde(borrow)]
    what: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user: Option<Cow<'a, str>>,
    seat: Option<serde_json::Value>,
    seq: Option<serde_json::Value>,
    duration_s: Option<serde_json::Value>,
    option: Option<serde_json::Value>,
    since: Option<serde_json::Value>,
    mode: Option<serde_json::Value>,
    max_rate: Option<serde_json::Value>,
}

/// Splits a client text frame into its JSON objects (separated by `\n`), skipping
/// blank lines.
pub fn split_frame(frame: &str) -> impl Iterator<Item = &str> {
    frame.split('\n').filter(|l| !l.trim().is_empty())
}

/// Decodes and validates one JSON object of a client frame.
///
/// # Errors
/// A [`DecodeError`] with the code the `error` reply carries: `bad_request` for invalid
/// JSON, an unknown type or a missing/wrong field; `invalid_room`; `too_large` for an
/// over-long comment or like count.
pub fn decode_command(json: &str, limits: &Limits) -> Result<Command, DecodeError> {
    let wire: Wire<'_> = serde_json::from_str(json)
        .map_err(|e| DecodeError::new(None, ErrorCode::BadRequest, format!("invalid JSON: {e}")))?;
    let id = match &wire.id {
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            DecodeError::new(
                None,
                ErrorCode::BadRequest,
                "`id` must be an unsigned integer",
            )
        })?),
        None => None,
    };
    let bad = |msg: &str| DecodeError::new(id, ErrorCode::BadRequest, msg);
    let ty = wire
        .ty
        .as_deref()
        .ok_or_else(|| bad("missing field `type`"))?;
    let known = matches!(
        ty,
        "join"
            | "leave"
            | "comment"
            | "like"
            | "vote"
            | "claim"
            | "answer"
            | "enter"
            | "cohost"
            | "moderate"
            | "open"
            | "ping"
    );
    if !known {
        return Err(bad(&format!("unknown type `{}`", truncate(ty, 32))));
    }
    let id = id.ok_or_else(|| bad("missing field `id`"))?;
    if ty == "ping" {
        return Ok(Command::Ping { id });
    }
    let room = room(&wire, id)?;
    match ty {
        "join" => Ok(Command::Join {
            id,
            room,
            since: since(&wire, id)?,
            mode: mode(&wire, id)?,
        }),
        "leave" => Ok(Command::Leave { id, room }),
        "comment" => Ok(Command::Comment {
            id,
            room,
            text: comment_text(&wire, id, limits)?,
        }),
        "like" => Ok(Command::Like {
            id,
            room,
            count: like_count(&wire, id, limits)?,
        }),
        "claim" => Ok(Command::Claim {
            id,
            room,
            coupon: interaction(wire.coupon.as_deref(), "coupon", id)?,
        }),
        "answer" => Ok(Command::Answer {
            id,
            room,
            quiz: interaction(wire.quiz.as_deref(), "quiz", id)?,
            option: option(&wire, id)?,
        }),
        "enter" => Ok(Command::Enter {
            id,
            room,
            lottery: interaction(wire.lottery.as_deref(), "lottery", id)?,
        }),
        "cohost" => cohost(&wire, id, room),
        "moderate" => moderate(&wire, id, room),
        "open" => open(json, &wire, id, room),
        _ => vote(&wire, id, room),
    }
}

fn room(wire: &Wire<'_>, id: u64) -> Result<RoomId, DecodeError> {
    let raw = wire
        .room
        .as_deref()
        .ok_or_else(|| DecodeError::new(Some(id), ErrorCode::BadRequest, "missing field `room`"))?;
    RoomId::new(raw).map_err(|e| DecodeError::new(Some(id), ErrorCode::InvalidRoom, e.to_string()))
}

fn since(wire: &Wire<'_>, id: u64) -> Result<Option<Since>, DecodeError> {
    match &wire.since {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => Since::deserialize(v).map(Some).map_err(|_| {
            DecodeError::new(
                Some(id),
                ErrorCode::BadRequest,
                "`since` must be {\"epoch\": string, \"seq\": unsigned integer}",
            )
        }),
    }
}

fn mode(wire: &Wire<'_>, id: u64) -> Result<Mode, DecodeError> {
    let bad = |msg: &str| DecodeError::new(Some(id), ErrorCode::BadRequest, msg);
    let mode = match &wire.mode {
        None => None,
        Some(v) => Some(v.as_str().ok_or_else(|| bad("`mode` must be a string"))?),
    };
    match mode {
        None | Some("all") if wire.max_rate.is_none() => Ok(Mode::All),
        None | Some("all") => Err(bad("`max_rate` needs `\"mode\":\"adaptive\"`")),
        Some("adaptive") => {
            let max_rate = match &wire.max_rate {
                None => Mode::DEFAULT_MAX_RATE,
                Some(v) => v
                    .as_u64()
                    .filter(|r| (1..=u64::from(Mode::MAX_MAX_RATE)).contains(r))
                    .and_then(|r| u32::try_from(r).ok())
                    .ok_or_else(|| bad("`max_rate` must be an integer from 1 to 1000"))?,
            };
            Ok(Mode::Adaptive { max_rate })
        }
        Some(other) => Err(bad(&format!(
            "`mode` must be \"all\" or \"adaptive\", not `{}`",
            truncate(other, 32)
        ))),
    }
}

fn comment_text(wire: &Wire<'_>, id: u64, limits: &Limits) -> Result<String, DecodeError> {
    let text = wire
        .text
        .as_deref()
        .ok_or_else(|| DecodeError::new(Some(id), ErrorCode::BadRequest, "missing field `text`"))?;
    if text.trim().is_empty() {
        return Err(DecodeError::new(
            Some(id),
            ErrorCode::BadRequest,
            "`text` is empty",
        ));
    }
    let chars = text.chars().count();
    if chars > limits.comment_max_chars {
        return Err(DecodeError::new(
            Some(id),
            ErrorCode::TooLarge,
            format!(
                "`text` has {chars} characters, at most {} allowed",
                limits.comment_max_chars
            ),
        ));
    }
    Ok(text.to_owned())
}

fn like_count(wire: &Wire<'_>, id: u64, limits: &Limits) -> Result<u32, DecodeError> {
    let count = match &wire.count {
        None => 1,
        Some(v) => v.as_u64().filter(|&c| c >= 1).ok_or_else(|| {
            DecodeError::new(
                Some(id),
                ErrorCode::BadRequest,
                "`count` must be an integer >= 1",
            )
        })?,
    };
    if count > u64::from(limits.like_max_count) {
        return Err(DecodeError::new(
            Some(id),
            ErrorCode::TooLarge,
            format!("`count` is at most {}", limits.like_max_count),
        ));
    }
    u32::try_from(count)
        .map_err(|_| DecodeError::new(Some(id), ErrorCode::TooLarge, "`count` is too large"))
}

/// The interaction id in field `name`.
fn interaction(raw: Option<&str>, name: &str, id: u64) -> Result<InteractionId, DecodeError> {
    let bad = |msg: &str| DecodeError::new(Some(id), ErrorCode::BadRequest, msg);
    let raw = raw.ok_or_else(|| bad(&format!("missing field `{name}`")))?;
    InteractionId::new(raw).map_err(|e| bad(&e.to_string()))
}

fn option(wire: &Wire<'_>, id: u64) -> Result<u32, DecodeError> {
    wire.option
        .as_ref()
        .and_then(serde_json::Value::as_u64)
        .and_then(|o| u32::try_from(o).ok())
        .ok_or_else(|| {
            DecodeError::new(
                Some(id),
                ErrorCode::BadRequest,
                "`option` must be an unsigned integer",
            )
        })
}

fn cohost(wire: &Wire<'_>, id: u64, room: RoomId) -> Result<Command, DecodeError> {
    let bad = |msg: &str| DecodeError::new(Some(id), ErrorCode::BadRequest, msg);
    let raw = wire
        .action
        .as_deref()
        .ok_or_else(|| bad("missing field `action`"))?;
    let action = CohostAction::parse(raw).ok_or_else(|| {
        bad(&format!(
            "`action` must be request, cancel, accept_invite, decline, leave, accept, reject, invite or kick, not `{}`",
            truncate(raw, 32)
        ))
    })?;
    let user = match wire.user.as_deref() {
        None => None,
        Some(u) if (1..=128).contains(&u.len()) && !u.chars().any(char::is_control) => {
            Some(u.to_owned())
        }
        Some(_) => {
            return Err(bad(
                "`user` must be 1..=128 bytes without control characters",
            ));
        }
    };
    if action.is_host_move() && user.is_none() {
        return Err(bad("missing field `user`: the move names whom it is about"));
    }
    let seat = match &wire.seat {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|s| u32::try_from(s).ok())
                .ok_or_else(|| bad("`seat` must be an unsigned integer"))?,
        ),
    };
    Ok(Command::Cohost {
        id,
        room,
        action,
        user,
        seat,
    })
}

fn moderate(wire: &Wire<'_>, id: u64, room: RoomId) -> Result<Command, DecodeError> {
    let bad = |msg: &str| DecodeError::new(Some(id), ErrorCode::BadRequest, msg);
    let number = |v: &Option<serde_json::Value>, field: &str| match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| bad(&format!("`{field}` must be an unsigned integer"))),
    };
    let action = wire
        .action
        .as_deref()
        .ok_or_else(|| bad("missing field `action`"))?;
    let seq = number(&wire.seq, "seq")?;
    let duration_s = number(&wire.duration_s, "duration_s")?;
    let moderation =
        crate::moderation::Moderation::new(action, wire.user.as_deref(), seq, duration_s)
            .map_err(|e| bad(&e))?;
    Ok(Command::Moderate {
        id,
        room,
        moderation,
    })
}

/// A host's `open`: `what`, and the rest of the object as the API's body.
fn open(json: &str, wire: &Wire<'_>, id: u64, room: RoomId) -> Result<Command, DecodeError> {
    let bad = |msg: &str| DecodeError::new(Some(id), ErrorCode::BadRequest, msg);
    let raw = wire
        .what
        .as_deref()
        .ok_or_else(|| bad("missing field `what`"))?;
    let what = Opening::parse(raw).ok_or_else(|| {
        bad(&format!(
            "`what` must be keyword, quiz, lottery or coupon, not `{}`",
            truncate(raw, 32)
        ))
    })?;
    // The object was read once already as the loose shape, so it is valid JSON.
    let mut body: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(json).map_err(|e| bad(&format!("invalid JSON: {e}")))?;
    for field in ["type", "id", "room", "what"] {
        body.remove(field);
    }
    Ok(Command::Open {
        id,
        room,
        what,
        body,
    })
}

fn vote(wire: &Wire<'_>, id: u64, room: RoomId) -> Result<Command, DecodeError> {
    let bad = |msg: &str| DecodeError::new(Some(id), ErrorCode::BadRequest, msg);
    let poll = wire
        .poll
        .as_deref()
        .ok_or_else(|| bad("missing field `poll`"))?;
    let poll = PollId::new(poll).map_err(|e| bad(&e.to_string()))?;
    let option = option(wire, id)?;
    Ok(Command::Vote {
        id,
        room,
        poll,
        option,
    })
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests;
