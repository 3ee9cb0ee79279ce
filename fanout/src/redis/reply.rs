//! The room script's operations, typed, and the reading of every script reply.
//!
//! Nothing else in the Redis store looks inside a `redis::Value`: a reply of the wrong
//! shape is [`FanoutError::BadReply`], the script's own refusals (`DM_UNKNOWN_POLL`, …)
//! are the matching store errors, and only a failure to reach Redis is
//! [`FanoutError::Unavailable`].

use std::sync::Arc;

use bytes::Bytes;
use danmaku_protocol::data::PollSpec;
use danmaku_protocol::settings::RoomSettings;
use danmaku_protocol::{InteractionId, PollId, RoomId};
use redis::Value;

use super::record::{PollState, Record};
use crate::{CouponClaim, CouponRecord, FanoutError, History, NewEvent, Published};

/// One operation of `lua/room.lua`, with its arguments.
pub(crate) enum RoomOp<'a> {
    /// Sequences an event (once per idempotency key).
    Event(NewEvent<'a>),
    /// Adds likes and sequences the new total.
    Likes { delta: u64 },
    /// Sets (a JSON object) or clears the stage, and sequences it.
    Stage { stage: Option<&'a str> },
    /// Opens a coupon (`title` already a JSON string; `audience` its audience's tag,
    /// "" for everyone).
    CouponOpen {
        title: &'a str,
        stock: u64,
        per_user: u32,
        ends_at: u64,
        audience: &'a str,
    },
    /// Closes a coupon.
    CouponClose { coupon: &'a InteractionId },
    /// Claims one of a coupon's stock (`tags` the claimer's, wrapped).
    Claim {
        coupon: &'a InteractionId,
        user: &'a str,
        tags: &'a str,
        code: &'a str,
    },
    /// The coupons not closed.
    Coupons,
    /// A coupon's state and claims.
    CouponGet { coupon: &'a InteractionId },
    /// Opens a keyword game, quiz or lottery (`spec` made by
    /// [`crate::interaction::NewInteraction::spec`]).
    XOpen {
        new: &'a crate::interaction::NewInteraction,
        spec: &'a str,
        ends_at: u64,
        /// A lottery's seed, hex ("" otherwise).
        seed: &'a str,
    },
    /// Closes one; a lottery answers its seed and entrants for the draw.
    XClose { id: &'a InteractionId },
    /// Publishes a lottery's draw (`counts`) and its `lottery.won` body ("" for none).
    XDrawn {
        id: &'a InteractionId,
        counts: &'a str,
        won: &'a str,
    },
    /// Records a quiz answer.
    Answer {
        quiz: &'a InteractionId,
        user: &'a str,
        option: u32,
    },
    /// Enters a lottery by command (`tags` "\x1f"-wrapped).
    Enter {
        lottery: &'a InteractionId,
        user: &'a str,
        tags: &'a str,
    },
    /// One's state and users.
    XGet { id: &'a InteractionId },
    /// The open keyword games, quizzes and lotteries.
    Interactions,
    /// Applies a moderation action, records it and sequences its event.
    Moderate {
        m: &'a danmaku_protocol::moderation::Moderation,
        /// When a mute or ban ends (0: for good).
        until: u64,
        /// Its audit record.
        doc: &'a str,
    },
    /// A join: the user's standing, its visit, its entrance.
    Arrive { who: &'a crate::Arriving<'a> },
    /// Sets (JSON) or clears ("") the welcome templates.
    SetWelcome { welcome: &'a str },
    /// Sequences the pending entrances, if due.
    EntranceFlush,
    /// The audit list.
    ModerationLog,
    /// Applies retention ops (encoded, see `encode_analytics`).
    Analytics { ops: &'a [String], window_ms: u64 },
    /// The retention counters.
    AnalyticsGet,
    /// The room's settings' version and JSON.
    SettingsGet,
    /// Writes the room's settings if still at `version` (with their comment `rules`
    /// and `blocked` words as the comment op reads them), and sequences them.
    SettingsPut {
        version: &'a str,
        settings: &'a str,
        rules: &'a str,
        blocked: &'a str,
        vip: &'a str,
    },
    /// The co-host seats' version and state.
    SeatsGet,
    /// Writes the seats' state if still at `version`, and sequences `events`
    /// ("<kind>:dh", body).
    SeatsPut {
        version: &'a str,
        state: &'a str,
        public: &'a str,
        events: &'a [(String, String)],
    },
    /// Opens a poll.
    PollOpen { spec: &'a PollSpec, ends_at: u64 },
    /// Closes a poll.
    PollClose { poll: &'a PollId },
    /// Records a vote.
    Vote {
        poll: &'a PollId,
        user: &'a str,
        option: u32,
    },
    /// Publishes changed tallies and closes polls past their end.
    PollFlush,
    /// Reports this gateway's viewers of the room; answers the total.
    Online {
        gateway: &'a str,
        count: u64,
        ttl_ms: u64,
    },
    /// Moves a room whose seq went back under `epoch` to a new epoch.
    RollOver { epoch: &'a str },
    /// The open polls.
    Polls,
    /// Sequences the merged comments of windows that ended.
    MergeFlush,
}

impl RoomOp<'_> {
    /// The op's name in the script.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Event(e) if e.ingress.is_some() => "comment",
            Self::Event(_) => "event",
            Self::Likes { .. } => "likes",
            Self::Stage { .. } => "stage",
            Self::CouponOpen { .. } => "coupon_open",
            Self::CouponClose { .. } => "coupon_close",
            Self::Claim { .. } => "claim",
            Self::Coupons => "coupons",
            Self::CouponGet { .. } => "coupon_get",
            Self::XOpen { .. } => "x_open",
            Self::XClose { .. } => "x_close",
            Self::XDrawn { .. } => "x_drawn",
            Self::Answer { .. } => "answer",
            Self::Enter { .. } => "enter",
            Self::XGet { .. } => "x_get",
            Self::Interactions => "interactions",
            Self::Moderate { .. } => "moderate",
            Self::Arrive { .. } => "arrive",
            Self::SetWelcome { .. } => "set_welcome",
            Self::EntranceFlush => "entrance_flush",
            Self::ModerationLog => "moderation_log",
            Self::Analytics { .. } => "analytics",
            Self::AnalyticsGet => "analytics_get",
            Self::SettingsGet => "settings_get",
            Self::SettingsPut { .. } => "settings_put",
            Self::SeatsGet => "seats_get",
            Self::SeatsPut { .. } => "seats_put",
            Self::PollOpen { .. } => "poll_open",
            Self::PollClose { .. } => "poll_close",
            Self::Vote { .. } => "vote",
            Self::PollFlush => "poll_flush",
            Self::Online { .. } => "online",
            Self::RollOver { .. } => "roll_over",
            Self::Polls => "polls",
            Self::MergeFlush => "merge_flush",
        }
    }

    /// The op's own arguments (`ARGV[5..]`), after the common ones.
    pub(crate) fn args(&self) -> Vec<String> {
        match self {
            Self::Event(e) => {
                let shape = super::record::data_shape(e.priority);
                let body = e.body();
                let mut args = vec![
                    format!("{}:{shape}", e.kind.as_str()),
                    body.clone().into_owned(),
                    e.idempotency_key.unwrap_or_default().to_owned(),
                    e.idempotency_key.map_or_else(String::new, |_| {
                        crate::idempotency::fingerprint(e.kind, &body)
                    }),
                ];
                if e.retry && e.idempotency_key.is_some() {
                    args.push("1".to_owned());
                }
                if let Some(c) = &e.ingress {
                    args.truncate(4);
                    args.push(String::new());
                    // The room's own settings may merge where the defaults do not.
                    let hash = c
                        .merge_text
                        .map_or_else(String::new, |t| crate::idempotency::fingerprint(e.kind, t));
                    let named = crate::memory::nameable(c.user);
                    let d = c.defaults;
                    args.extend([
                        d.comments_per_s.to_string(),
                        hash,
                        d.merge_after.to_string(),
                        d.merge_window_ms.to_string(),
                        if named { c.user } else { "" }.to_owned(),
                        c.merge_text.unwrap_or_default().to_owned(),
                        c.user.to_owned(),
                        wrapped_tags(c.tags),
                        c.level.to_string(),
                        (u64::from(d.slow_mode_s) * 1_000).to_string(),
                        d.min_level.to_string(),
                        wrapped_words(&d.blocked_words),
                    ]);
                }
                args
            }
            Self::Likes { delta } => vec![delta.to_string()],
            Self::Stage { stage } => vec![stage.unwrap_or_default().to_owned()],
            Self::CouponOpen {
                title,
                stock,
                per_user,
                ends_at,
                audience,
            } => vec![
                (*title).to_owned(),
                stock.to_string(),
                per_user.to_string(),
                ends_at.to_string(),
                crate::MAX_OPEN_COUPONS.to_string(),
                (*audience).to_owned(),
            ],
            Self::CouponClose { coupon } | Self::CouponGet { coupon } => {
                vec![coupon.as_str().to_owned()]
            }
            Self::Claim {
                coupon,
                user,
                tags,
                code,
            } => vec![
                coupon.as_str().to_owned(),
                (*user).to_owned(),
                (*code).to_owned(),
                (*tags).to_owned(),
            ],
            Self::Coupons
            | Self::Interactions
            | Self::SeatsGet
            | Self::SettingsGet
            | Self::ModerationLog
            | Self::AnalyticsGet => Vec::new(),
            Self::Analytics { ops, window_ms } => {
                let mut args = vec![
                    window_ms.to_string(),
                    crate::analytics::MAX_VISITS.to_string(),
                    crate::analytics::MAX_MINUTES.to_string(),
                ];
                args.extend(ops.iter().cloned());
                args
            }
            Self::Moderate { m, until, doc } => {
                let staff = crate::moderation::staff();
                vec![
                    m.action.as_str().to_owned(),
                    m.user.clone().unwrap_or_default(),
                    m.seq.unwrap_or(0).to_string(),
                    until.to_string(),
                    (*doc).to_owned(),
                    String::from_utf8_lossy(&staff.tag()).into_owned(),
                    crate::MAX_MODERATED.to_string(),
                ]
            }
            Self::Arrive { who } => vec![
                who.user.to_owned(),
                who.today.to_string(),
                serde_json::to_string(who.name).unwrap_or_default(),
                wrapped_tags(who.tags),
                serde_json::json!({"user": who.user, "name": who.name, "tags": who.tags})
                    .to_string(),
                wrapped_words(&who.defaults.vip_tags),
                if who.counted { "1" } else { "0" }.to_owned(),
                crate::MAX_SEEN.to_string(),
                if who.defaults.entrances { "1" } else { "0" }.to_owned(),
            ],
            Self::SetWelcome { welcome } => vec![(*welcome).to_owned()],
            Self::EntranceFlush => vec![crate::ENTRANCE_EVERY_MS.to_string()],
            Self::SettingsPut {
                version,
                settings,
                rules,
                blocked,
                vip,
            } => [*version, *settings, *rules, *blocked, *vip]
                .map(str::to_owned)
                .to_vec(),
            Self::SeatsPut {
                version,
                state,
                public,
                events,
            } => {
                let mut args = vec![
                    (*version).to_owned(),
                    (*state).to_owned(),
                    (*public).to_owned(),
                ];
                for (head, body) in *events {
                    args.push(head.clone());
                    args.push(body.clone());
                }
                args
            }
            Self::XOpen {
                new,
                spec,
                ends_at,
                seed,
            } => {
                use crate::interaction::{Entry, NewInteraction};
                let (mut goal, mut options, mut answer) = (String::new(), 0, 0);
                let (mut winners, mut quiz, mut command, mut tags) =
                    (0, String::new(), "", String::new());
                match new {
                    NewInteraction::Keyword { goal: g, .. } => {
                        goal = g.map_or_else(String::new, |g| g.to_string());
                    }
                    NewInteraction::Quiz {
                        options: o,
                        answer: a,
                        ..
                    } => (options, answer) = (o.len(), *a),
                    NewInteraction::Lottery {
                        winners: w,
                        entry,
                        tags: t,
                        ..
                    } => {
                        winners = *w;
                        if let Entry::Quiz(q) = entry {
                            quiz = q.as_str().to_owned();
                        }
                        command = if *entry == Entry::Command { "1" } else { "" };
                        tags = t.join("\x1f");
                    }
                }
                vec![
                    new.kind().prefix().to_owned(),
                    (*spec).to_owned(),
                    ends_at.to_string(),
                    new.matcher().unwrap_or_default(),
                    goal,
                    options.to_string(),
                    answer.to_string(),
                    (*seed).to_owned(),
                    winners.to_string(),
                    quiz,
                    command.to_owned(),
                    tags,
                ]
            }
            Self::XClose { id } | Self::XGet { id } => vec![id.as_str().to_owned()],
            Self::XDrawn { id, counts, won } => vec![
                id.as_str().to_owned(),
                (*counts).to_owned(),
                (*won).to_owned(),
            ],
            Self::Answer { quiz, user, option } => vec![
                quiz.as_str().to_owned(),
                (*user).to_owned(),
                option.to_string(),
            ],
            Self::Enter {
                lottery,
                user,
                tags,
            } => vec![
                lottery.as_str().to_owned(),
                (*user).to_owned(),
                (*tags).to_owned(),
            ],
            Self::PollOpen { spec, ends_at } => vec![
                spec.to_json(),
                spec.options.len().to_string(),
                ends_at.to_string(),
            ],
            Self::PollClose { poll } => vec![poll.as_str().to_owned()],
            Self::Vote { poll, user, option } => vec![
                poll.as_str().to_owned(),
                (*user).to_owned(),
                option.to_string(),
            ],
            Self::RollOver { epoch } => vec![(*epoch).to_owned()],
            Self::PollFlush | Self::Polls | Self::MergeFlush => Vec::new(),
            Self::Online {
                gateway,
                count,
                ttl_ms,
            } => vec![(*gateway).to_owned(), count.to_string(), ttl_ms.to_string()],
        }
    }

    /// Whether the op sequences an event (so a call without an answer may have).
    fn sequences(&self) -> bool {
        matches!(
            self,
            Self::Event(_)
                | Self::Likes { .. }
                | Self::Stage { .. }
                | Self::CouponOpen { .. }
                | Self::CouponClose { .. }
                | Self::Claim { .. }
                | Self::XOpen { .. }
                | Self::XClose { .. }
                | Self::XDrawn { .. }
                | Self::SeatsPut { .. }
                | Self::SettingsPut { .. }
                | Self::Moderate { .. }
                | Self::EntranceFlush
                | Self::PollOpen { .. }
                | Self::PollClose { .. }
                | Self::PollFlush
                | Self::MergeFlush
        )
    }

    /// The op got no answer within `timeout`.
    pub(crate) fn no_answer(&self, timeout: std::time::Duration) -> FanoutError {
        let why = format!("no answer from Redis within {} ms", timeout.as_millis());
        if self.sequences() {
            FanoutError::OutcomeUnknown(why)
        } else {
            FanoutError::Unavailable(why)
        }
    }

    /// What a script error means for this op.
    pub(crate) fn error(&self, e: &redis::RedisError) -> FanoutError {
        let poll = match self {
            Self::PollClose { poll } | Self::Vote { poll, .. } => Some((*poll).clone()),
            _ => None,
        };
        let refused = (e.kind() == redis::ErrorKind::Extension)
            .then(|| e.code())
            .flatten();
        let coupon = match self {
            Self::CouponClose { coupon }
            | Self::CouponGet { coupon }
            | Self::Claim { coupon, .. } => Some((*coupon).clone()),
            _ => None,
        };
        if let (Some(code), Some(c)) = (refused, coupon) {
            match code {
                "DM_UNKNOWN_COUPON" => return FanoutError::UnknownCoupon(c),
                "DM_COUPON_CLOSED" => return FanoutError::CouponClosed(c),
                "DM_SOLD_OUT" => return FanoutError::SoldOut(c),
                "DM_ALREADY_CLAIMED" => return FanoutError::AlreadyClaimed(c),
                "DM_NOT_FOR_YOU" => return FanoutError::NotEligible(c, crate::COUPON_FOR_OTHERS),
                _ => {}
            }
        }
        if refused == Some("DM_TOO_MANY_COUPONS") {
            return FanoutError::TooManyCoupons;
        }
        if refused == Some("DM_TOO_MANY_INTERACTIONS") {
            return FanoutError::TooManyInteractions;
        }
        let interaction = match self {
            Self::XClose { id } | Self::XGet { id } | Self::XDrawn { id, .. } => Some(*id),
            Self::Answer { quiz, .. } => Some(*quiz),
            Self::Enter { lottery, .. } => Some(*lottery),
            _ => None,
        };
        if let (Some(code), Some(x)) = (refused, interaction) {
            let x = x.clone();
            match code {
                "DM_UNKNOWN_INTERACTION" => return FanoutError::UnknownInteraction(x),
                "DM_CLOSED" => return FanoutError::InteractionClosed(x),
                "DM_ALREADY_ANSWERED" => return FanoutError::AlreadyAnswered(x),
                "DM_ALREADY_ENTERED" => return FanoutError::AlreadyEntered(x),
                "DM_FULL" => return FanoutError::NotEligible(x, "it is full"),
                "DM_NOT_BY_COMMAND" => {
                    return FanoutError::NotEligible(x, "this lottery is not entered by command");
                }
                "DM_NOT_FOR_YOU" => {
                    return FanoutError::NotEligible(x, "this lottery is for other viewers");
                }
                "DM_NO_OPTION" => {
                    let option = match self {
                        Self::Answer { option, .. } => *option,
                        _ => 0,
                    };
                    return FanoutError::NoSuchOption(x, option);
                }
                _ => {}
            }
        }
        match (refused, poll) {
            (Some("DM_UNKNOWN_POLL"), Some(p)) => FanoutError::UnknownPoll(p),
            (Some("DM_POLL_CLOSED"), Some(p)) => FanoutError::PollClosed(p),
            (Some("DM_ALREADY_VOTED"), Some(p)) => FanoutError::AlreadyVoted(p),
            (Some("DM_KEY_REUSED"), _) => match e.detail().and_then(|d| d.trim().parse().ok()) {
                Some(seq) => FanoutError::KeyReused { seq },
                None => FanoutError::BadReply("DM_KEY_REUSED without the key's seq"),
            },
            (Some("DM_KEY_UNKNOWN"), _) => FanoutError::KeyUnknown,
            (Some("DM_ROOM_BUSY"), _) => {
                let mut detail = e.detail().unwrap_or_default().split_whitespace();
                match (
                    detail.next().and_then(|d| d.parse().ok()),
                    detail.next().and_then(|d| d.parse().ok()),
                ) {
                    (Some(retry_after_ms), Some(per_s)) => FanoutError::RoomBusy {
                        per_s,
                        retry_after_ms,
                    },
                    _ => FanoutError::BadReply("DM_ROOM_BUSY without its wait and budget"),
                }
            }
            (Some("DM_SLOW_MODE"), _) => match e.detail().and_then(|d| d.trim().parse().ok()) {
                Some(retry_after_ms) => FanoutError::SlowMode { retry_after_ms },
                None => FanoutError::BadReply("DM_SLOW_MODE without its wait"),
            },
            (Some("DM_LEVEL"), _) => match e.detail().and_then(|d| d.trim().parse().ok()) {
                Some(min) => FanoutError::LevelTooLow(min),
                None => FanoutError::BadReply("DM_LEVEL without the minimum"),
            },
            (Some("DM_BLOCKED"), _) => FanoutError::Blocked,
            (Some("DM_MUTED"), _) => match e.detail().and_then(|d| d.trim().parse::<u64>().ok()) {
                Some(0) => FanoutError::Muted {
                    retry_after_ms: None,
                },
                Some(ms) => FanoutError::Muted {
                    retry_after_ms: Some(ms),
                },
                None => FanoutError::BadReply("DM_MUTED without its wait"),
            },
            (Some("DM_TOO_MANY_MODERATED"), _) => FanoutError::TooManyModerated,
            (Some("DM_NO_SUCH_SEQ"), _) => match self {
                Self::Moderate { m, .. } => FanoutError::NoSuchSeq {
                    seq: m.seq.unwrap_or(0),
                },
                _ => FanoutError::BadReply("DM_NO_SUCH_SEQ of another op"),
            },
            (Some("DM_BAD_OPTION"), Some(p)) => {
                let option = match self {
                    Self::Vote { option, .. } => *option,
                    _ => 0,
                };
                FanoutError::BadOption(p, option)
            }
            (Some(_), _) => FanoutError::BadReply("the room script refused the operation"),
            // Sent and then lost (a timeout, a connection dropped mid-call): the script
            // may have run. Only a call that never reached Redis is certainly undone.
            (None, _) if self.sequences() && !never_sent(e) => {
                FanoutError::OutcomeUnknown(e.to_string())
            }
            (None, _) => unavailable(e),
        }
    }
}

/// Whether the call certainly never reached Redis: the connection was refused or
/// could not be made, so nothing was written.
///
/// A broken pipe is *not* such a sign: the client reports every call still in flight
/// on a connection that died with it, whether Redis ran the call or not.
fn never_sent(e: &redis::RedisError) -> bool {
    e.is_connection_refusal() || e.kind() == redis::ErrorKind::ClusterConnectionNotFound
}

/// Redis could not be reached (or failed to answer).
pub(crate) fn unavailable(e: &redis::RedisError) -> FanoutError {
    if e.is_timeout() {
        FanoutError::Unavailable(format!("Redis is slow or not answering ({e})"))
    } else {
        FanoutError::Unavailable(e.to_string())
    }
}

fn items(v: Value) -> Result<Vec<Value>, FanoutError> {
    match v {
        Value::Array(a) => Ok(a),
        _ => Err(FanoutError::BadReply("expected an array")),
    }
}

fn bytes(v: &Value) -> Result<&[u8], FanoutError> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.as_bytes()),
        _ => Err(FanoutError::BadReply("expected a string")),
    }
}

fn text(v: &Value) -> Result<&str, FanoutError> {
    std::str::from_utf8(bytes(v)?).map_err(|_| FanoutError::BadReply("expected UTF-8 text"))
}

fn number(v: &Value) -> Result<u64, FanoutError> {
    let bad = || FanoutError::BadReply("expected a count");
    match v {
        Value::Int(n) => u64::try_from(*n).map_err(|_| bad()),
        _ => text(v)?.parse().map_err(|_| bad()),
    }
}

fn field(a: &[Value], i: usize) -> Result<&Value, FanoutError> {
    a.get(i).ok_or(FanoutError::BadReply("reply too short"))
}

/// `{epoch, seq, duplicate}` of a sequencing op.
pub(crate) fn published(v: Value) -> Result<Published, FanoutError> {
    Ok(published_or_merged(v)?.0)
}

/// `{epoch, seq, duplicate}` of a sequencing op, or `{"", due, 2}` of a merged comment:
/// the publish, and for a merged one when its window ends (ms).
pub(crate) fn published_or_merged(v: Value) -> Result<(Published, Option<u64>), FanoutError> {
    let a = items(v)?;
    let (n, flag) = (number(field(&a, 1)?)?, number(field(&a, 2)?)?);
    let merged = flag == 2;
    let published = Published {
        epoch: Arc::from(text(field(&a, 0)?)?),
        seq: if merged { 0 } else { n },
        duplicate: flag == 1,
        merged,
    };
    Ok((published, merged.then_some(n)))
}

/// `{epoch, seq, duplicate, poll id}` of `poll_open`.
pub(crate) fn poll_opened(v: Value) -> Result<(PollId, Published), FanoutError> {
    let a = items(v)?;
    let id = PollId::new(text(field(&a, 3)?)?)
        .map_err(|_| FanoutError::BadReply("the script made an invalid poll id"))?;
    Ok((id, published(Value::Array(a))?))
}

/// The new coupon's id and seq: `{epoch, seq, duplicate, id}`.
pub(crate) fn coupon_opened(v: Value) -> Result<(InteractionId, Published), FanoutError> {
    let a = items(v)?;
    let id = InteractionId::new(text(field(&a, 3)?)?)
        .map_err(|_| FanoutError::BadReply("the script made an invalid coupon id"))?;
    Ok((id, published(Value::Array(a))?))
}

/// A list of strings as bytes (coupons' and interactions' states, the audit list).
pub(crate) fn bulk(v: Value) -> Result<Vec<Bytes>, FanoutError> {
    items(v)?
        .iter()
        .map(|c| Ok(Bytes::copy_from_slice(bytes(c)?)))
        .collect()
}

/// A coupon's `{state, claims…}` from the `coupon_get` op; a claim is
/// `<user>\t<code>\t<ms>`.
pub(crate) fn coupon_record(v: Value) -> Result<CouponRecord, FanoutError> {
    let a = items(v)?;
    let state = Bytes::copy_from_slice(bytes(field(&a, 0)?)?);
    let state = danmaku_protocol::audience::untagged(&state);
    let claims = a[1..]
        .iter()
        .map(|c| {
            let mut parts = text(c)?.splitn(3, '\t');
            let bad = || FanoutError::BadReply("a coupon claim is not user, code and time");
            let (user, code, at) = (
                parts.next().ok_or_else(bad)?,
                parts.next().ok_or_else(bad)?,
                parts.next().ok_or_else(bad)?,
            );
            Ok(CouponClaim {
                user: user.to_owned(),
                code: code.to_owned(),
                at: at.parse().map_err(|_| bad())?,
            })
        })
        .collect::<Result<_, FanoutError>>()?;
    Ok(CouponRecord { state, claims })
}

/// Blocked words as the room script matches them: `\x1f`-wrapped ("" for none).
pub(crate) fn wrapped_words(words: &[String]) -> String {
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    wrapped_tags(&words)
}

/// A join's answer from `arrive`: the standing (ms left of each, `0` for good, `""` for
/// none), whether returning, the visits, the welcome templates.
pub(crate) fn arrival(v: Value, now: u64) -> Result<crate::Arrival, FanoutError> {
    let a = items(v)?;
    let until = |i: usize| -> Result<Option<u64>, FanoutError> {
        match text(field(&a, i)?)? {
            "" => Ok(None),
            "0" => Ok(Some(u64::MAX)),
            left => left
                .parse::<u64>()
                .map(|ms| Some(now.saturating_add(ms)))
                .map_err(|_| FanoutError::BadReply("a standing that is not a number")),
        }
    };
    let welcome = match text(field(&a, 4)?)? {
        "" => None,
        json => Some(
            serde_json::from_str(json)
                .map_err(|_| FanoutError::BadReply("stored welcome templates that are not"))?,
        ),
    };
    Ok(crate::Arrival {
        standing: crate::Standing {
            muted_until: until(0)?,
            banned_until: until(1)?,
        },
        returning: number(field(&a, 2)?)? == 1,
        visits: number(field(&a, 3)?)?,
        welcome,
    })
}

/// Whether `arrive` counted the join into the room's pending entrances.
pub(crate) fn entered(v: &Value) -> bool {
    matches!(v, Value::Array(a) if a.get(5).is_some_and(|x| matches!(x, Value::Int(1))))
}

/// Whether `entrance_flush` found it too early (the entrances stay pending).
pub(crate) fn too_early(v: &Value) -> bool {
    matches!(v, Value::Array(a) if a.get(2).is_some_and(|x| matches!(x, Value::Int(1))))
}

/// A setting's version and JSON from `settings_get`.
pub(crate) fn settings(v: Value) -> Result<(String, Option<RoomSettings>), FanoutError> {
    let a = items(v)?;
    let version = text(field(&a, 0)?)?.to_owned();
    let json = text(field(&a, 1)?)?;
    if json.is_empty() {
        return Ok((version, None));
    }
    let settings = RoomSettings::decode(json.as_bytes()).ok_or(FanoutError::BadReply(
        "stored settings that are not settings",
    ))?;
    Ok((version, Some(settings)))
}

/// A viewer's tags as the room script matches them: `\x1f`-wrapped ("" for none).
pub(crate) fn wrapped_tags(tags: &[&str]) -> String {
    if tags.is_empty() {
        return String::new();
    }
    format!("\x1f{}\x1f", tags.join("\x1f"))
}

/// Whether a comment's `{epoch, seq, flag, counted}` says it counted in a keyword game
/// or entered a lottery.
pub(crate) fn counted(v: &Value) -> bool {
    matches!(v, Value::Array(a) if a.get(3).is_some_and(|c| number(c).ok() == Some(1)))
}

/// The new interaction's id and seq: `{epoch, seq, duplicate, id}`.
pub(crate) fn interaction_opened(v: Value) -> Result<(InteractionId, Published), FanoutError> {
    coupon_opened(v)
}

/// What `x_close` answers: the final event's publish, or a lottery's seed, winner count
/// and entrants to draw.
pub(crate) enum Closed {
    Published(Published),
    Draw {
        seed: [u8; 32],
        winners: usize,
        entrants: Vec<String>,
    },
}

pub(crate) fn closed(v: Value) -> Result<Closed, FanoutError> {
    let a = items(v)?;
    if number(field(&a, 2)?)? != 3 {
        return Ok(Closed::Published(published(Value::Array(a))?));
    }
    let seed = crate::interaction::seed_from_hex(text(field(&a, 3)?)?).ok_or(
        FanoutError::BadReply("a lottery seed that is not 64 hex digits"),
    )?;
    let winners = usize::try_from(number(field(&a, 4)?)?)
        .map_err(|_| FanoutError::BadReply("a winner count too large"))?;
    let entrants = a[5..]
        .iter()
        .map(|u| text(u).map(str::to_owned))
        .collect::<Result<_, _>>()?;
    Ok(Closed::Draw {
        seed,
        winners,
        entrants,
    })
}

/// `{state, users…}` of `x_get`.
pub(crate) fn interaction_record(v: Value) -> Result<crate::InteractionRecord, FanoutError> {
    let a = items(v)?;
    let state = Bytes::copy_from_slice(bytes(field(&a, 0)?)?);
    let users = a[1..]
        .iter()
        .map(|u| text(u).map(str::to_owned))
        .collect::<Result<_, _>>()?;
    Ok(crate::InteractionRecord { state, users })
}

/// The lotteries closed and not drawn yet that `poll_flush` answers after its count.
pub(crate) fn drawing(v: &Value) -> Vec<InteractionId> {
    match v {
        Value::Array(a) => a
            .iter()
            .skip(3)
            .filter_map(|x| text(x).ok().and_then(|t| InteractionId::new(t).ok()))
            .collect(),
        _ => Vec::new(),
    }
}

/// The count of `{_, count, _}` (online, poll_flush).
pub(crate) fn count(v: Value) -> Result<u64, FanoutError> {
    number(field(&items(v)?, 1)?)
}

/// Encoded open polls from the `polls` op.
pub(crate) fn polls(v: Value) -> Result<Vec<Bytes>, FanoutError> {
    items(v)?
        .iter()
        .map(|p| Ok(Bytes::from(PollState::parse(text(p)?)?.encode()?)))
        .collect()
}

/// Encodes the records in `a` as event frames.
/// Event records as frames; those whose seq is in `retracted` (the scripts' list,
/// comma-separated) are marked so ([`danmaku_protocol::audience::retracted`]).
fn events(room: &RoomId, retracted: &Value, a: &[Value]) -> Result<Vec<Bytes>, FanoutError> {
    let retracted: Vec<u64> = text(retracted)?
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect();
    a.iter()
        .map(|r| {
            let record = Record::parse(bytes(r)?)?;
            let frame = record.encode(room)?;
            Ok(if retracted.contains(&record.seq) {
                danmaku_protocol::audience::retracted(&frame)
            } else {
                frame
            })
        })
        .collect()
}

/// A join's view: `{epoch, seq, likes, recovered, records…}`.
pub(crate) struct View {
    pub(crate) epoch: Arc<str>,
    pub(crate) seq: u64,
    pub(crate) likes: u64,
    pub(crate) recovered: bool,
    /// Open polls and coupons in the room (read separately, when there are any).
    pub(crate) open_interactions: u64,
    /// The stage object, when one is set.
    pub(crate) stage: Option<Bytes>,
    /// The co-host seats' public state, once set.
    pub(crate) seats: Option<Bytes>,
    /// The room's settings, once set.
    pub(crate) settings: Option<Bytes>,
    pub(crate) events: Vec<Bytes>,
}

/// A string that is not empty, as bytes.
fn present(v: &Value) -> Option<Bytes> {
    match v {
        Value::BulkString(b) if !b.is_empty() => Some(Bytes::copy_from_slice(b)),
        _ => None,
    }
}

/// `{version, state}` of `seats_get`.
pub(crate) fn seats(v: Value) -> Result<(String, Option<crate::seats::Seats>), FanoutError> {
    let a = items(v)?;
    let version = text(field(&a, 0)?)?.to_owned();
    let state = text(field(&a, 1)?)?;
    if state.is_empty() {
        return Ok((version, None));
    }
    let seats = crate::seats::Seats::from_json(state).ok_or(FanoutError::BadReply(
        "stored seats that are not a seats state",
    ))?;
    Ok((version, Some(seats)))
}

/// A versioned write's answer (`seats_put`, `settings_put`): `None` when the state
/// changed since the read (read again),
/// else the first event's publish (`seq` 0 when there was none).
pub(crate) fn put_if_unchanged(v: Value) -> Result<Option<Published>, FanoutError> {
    let a = items(v)?;
    if number(field(&a, 2)?)? == 9 {
        return Ok(None);
    }
    published(Value::Array(a)).map(Some)
}

pub(crate) fn view(room: &RoomId, v: Value) -> Result<View, FanoutError> {
    let a = items(v)?;
    Ok(View {
        epoch: Arc::from(text(field(&a, 0)?)?),
        seq: number(field(&a, 1)?)?,
        likes: number(field(&a, 2)?)?,
        recovered: number(field(&a, 3)?)? == 1,
        open_interactions: number(field(&a, 4)?)?,
        stage: present(field(&a, 5)?),
        seats: present(field(&a, 6)?),
        settings: present(field(&a, 7)?),
        events: events(room, field(&a, 8)?, a.get(9..).unwrap_or_default())?,
    })
}

/// `{epoch, head, status, records…}` of the history script.
pub(crate) fn history(room: &RoomId, since: u64, v: Value) -> Result<History, FanoutError> {
    let a = items(v)?;
    let epoch: Arc<str> = Arc::from(text(field(&a, 0)?)?);
    let head = number(field(&a, 1)?)?;
    match number(field(&a, 2)?)? {
        0 => Ok(History {
            epoch,
            head,
            events: events(room, field(&a, 3)?, a.get(4..).unwrap_or_default())?,
        }),
        1 => Err(FanoutError::Gone { since, epoch }),
        2 => Err(FanoutError::Ahead { since, head }),
        _ => Err(FanoutError::BadReply("unknown history status")),
    }
}

/// A retention op as the script reads it: fields "\x1f"-separated (see `analytics` in
/// room.lua). User ids and owners carry no "\x1f" (they are checked at the handshake).
pub(crate) fn encode_analytics(op: &crate::analytics::Op) -> String {
    use crate::analytics::Op;
    let v = |v: &Option<String>| v.clone().unwrap_or_default();
    let fields: Vec<String> = match op {
        Op::Join {
            user,
            owner,
            at,
            variant,
            resumed,
            first_render_ms,
        } => vec![
            "J".into(),
            user.clone(),
            owner.clone(),
            at.to_string(),
            v(variant),
            resumed.map_or(String::new(), |r| if r { "1" } else { "0" }.into()),
            first_render_ms.map_or(String::new(), |ms| ms.to_string()),
        ],
        Op::Leave {
            user,
            owner,
            at,
            since,
            variant,
        } => vec![
            "L".into(),
            user.clone(),
            owner.clone(),
            at.to_string(),
            since.to_string(),
            v(variant),
        ],
        Op::Mark {
            user,
            owner,
            start,
            minutes,
            variant,
        } => vec![
            "M".into(),
            user.clone(),
            owner.clone(),
            start.to_string(),
            minutes.to_string(),
            v(variant),
        ],
        Op::Interaction { kind, at, variant } => {
            vec!["I".into(), (*kind).into(), at.to_string(), v(variant)]
        }
        Op::Online { at, online } => vec!["O".into(), at.to_string(), online.to_string()],
    };
    fields.join("\x1f")
}

/// The visit starts `analytics` answered, one per op (`-1`: not a join).
pub(crate) fn visit_starts(v: Value) -> Result<Vec<Option<u64>>, FanoutError> {
    Ok(items(v)?
        .into_iter()
        .map(|i| match i {
            Value::Int(n) => u64::try_from(n).ok(),
            _ => None,
        })
        .collect())
}

/// The counters `analytics_get` answered.
pub(crate) fn counters(v: Value) -> Result<crate::analytics::Counters, FanoutError> {
    let bulk = bulk(v)?;
    let mut out = std::collections::BTreeMap::new();
    for pair in bulk.chunks(2) {
        if let [name, value] = pair {
            let n = std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .unwrap_or(0);
            out.insert(String::from_utf8_lossy(name).into_owned(), n);
        }
    }
    Ok(crate::analytics::Counters(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: &str) -> Value {
        Value::BulkString(t.as_bytes().to_vec())
    }

    #[test]
    fn replies_of_the_wrong_shape_are_bad_replies_not_outages() {
        assert!(matches!(
            published(Value::Int(1)),
            Err(FanoutError::BadReply(_))
        ));
        assert!(matches!(
            published(Value::Array(vec![s("e"), Value::Int(1)])),
            Err(FanoutError::BadReply(_))
        ));
        let p =
            published(Value::Array(vec![s("e"), Value::Int(4), Value::Int(1)])).expect("published");
        assert_eq!((&*p.epoch, p.seq, p.duplicate), ("e", 4, true));
    }
}
