//! Room sequencing, history, snapshots, likes, polls, and local delivery.
//!
//! The [`Fanout`] trait is the seam between the gateway and the store that sequences
//! events: the embedded [`memory::MemoryFanout`] (single node, the default) and
//! [`redis::RedisFanout`] (rooms shared by many gateways). Whatever the store, events reach this process's viewers through the [`Hub`],
//! which hands each connection's [`Mailbox`] a refcount of the bytes encoded once.
//!
//! # Delivery semantics
//! Every sequenced event of a room gets the next seq (no gaps) and is delivered to the
//! hub in seq order. Whoever follows a room keeps a [`position::Cursor`], which decides
//! every delivery (write, duplicate, gap, reset). A mailbox that is full drops the
//! delivery and marks the room overflowed, and takes nothing more of it until its owner
//! took the mark; the connection then catches up from [`Rooms::history`], so a viewer
//! sees every event in order or is told with `reset` where continuity restarts.
//!
//! # Layout
//! - [`position`]: a position in a room's sequence and the one decision about each
//!   delivery (write, duplicate, gap, reset).
//! - [`mailbox`]: the bounded per-connection inbox.
//! - [`hub`]: local subscriptions; the one shared map of the delivery path.
//! - [`memory`]: the embedded single-node store.
//! - [`redis`]: the Redis store shared by many gateways.
//! - [`stats`]: what a store counts for operators (errors, timeouts, latencies).
#![warn(missing_docs)]

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use danmaku_protocol::audience::{Audience, Viewer};
use danmaku_protocol::settings::RoomSettings;
use danmaku_protocol::{EventKind, InteractionId, PollId, Priority, RoomId, Since};

pub mod analytics;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod heat;
pub mod hub;
pub mod idempotency;
pub mod interaction;
pub mod mailbox;
pub mod memory;
pub mod moderation;
pub mod position;
pub mod redis;
pub mod seats;
pub mod stats;
#[cfg(feature = "test-util")]
pub mod testing;
mod time;

pub use heat::Heat;
pub use hub::{ConnKey, Hub};
pub use mailbox::{
    Control, Delivery, Mailbox, MailboxReceiver, RoomKey, Sink, mailbox, mailbox_with_sink,
};
pub use time::now_ms;

/// The most distinct comment texts a room tracks for merging at once; a new text beyond
/// it (when no window ended to make room) is sequenced without merging.
pub const MERGE_TEXTS: usize = 1_024;

/// The seq of a delivery that means "this room's continuity restarts": the room's
/// epoch changed or a gap can no longer be filled; the viewer gets a `reset`.
pub const RESET_SEQ: u64 = u64::MAX;

/// The result of a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The room's epoch.
    pub epoch: Arc<str>,
    /// The event's seq (for a retried idempotency key, the first publish's seq).
    pub seq: u64,
    /// Whether this was a retry of an idempotency key already published.
    pub duplicate: bool,
    /// A viewer comment merged into its room's next `comment.merged` event: nothing was
    /// sequenced now (`seq` is 0).
    pub merged: bool,
}

/// How a viewer's comment enters its room: the room's comment budget and the merging
/// of repeated comments. Comments of hosts, moderators and backends have none.
#[derive(Debug, Clone, Copy)]
pub struct Ingress<'a> {
    /// The room settings that apply while the room has none of its own (the gateway's
    /// configured defaults): the budget of viewer comments a second on every gateway
    /// together (beyond it [`FanoutError::RoomBusy`]), merging, slow mode, blocked
    /// words and the minimum level. A room's own settings replace them all.
    pub defaults: &'a RoomSettings,
    /// The sender's `level` claim (0 without one).
    pub level: i64,
    /// The sender, named in `comment.merged` (up to 5 senders; one with control
    /// characters is counted, not named).
    pub user: &'a str,
    /// The comment's normalized text ([`danmaku_protocol::data::merge_text`]), for
    /// merging and for the room's keyword games and comment lotteries; `None` never
    /// merges nor counts.
    pub merge_text: Option<&'a str>,
    /// The sender's tags (a lottery's `tags` decide whether its comment enters).
    pub tags: &'a [&'a str],
}

/// An event to sequence.
#[derive(Debug, Clone, Copy)]
pub struct NewEvent<'a> {
    /// Its kind.
    pub kind: &'a EventKind,
    /// Its data: one valid JSON value.
    pub data: &'a str,
    /// Its priority (stated on the wire unless normal).
    pub priority: Priority,
    /// Sequenced once per key (within the key's lifetime).
    pub idempotency_key: Option<&'a str>,
    /// A retry of an attempt under `idempotency_key` whose outcome is unknown (see
    /// [`Rooms::publish_retry`]).
    pub retry: bool,
    /// Only these viewers receive it; the others are told they skipped its seq.
    pub audience: Option<&'a Audience>,
    /// A viewer's comment: the room's budget and merging apply.
    pub ingress: Option<Ingress<'a>>,
}

impl<'a> NewEvent<'a> {
    /// A normal-priority event without a key.
    pub fn new(kind: &'a EventKind, data: &'a str) -> Self {
        Self {
            kind,
            data,
            priority: Priority::Normal,
            idempotency_key: None,
            retry: false,
            audience: None,
            ingress: None,
        }
    }

    /// What the store keeps of the event besides kind and priority: its data, behind
    /// the audience's tag when targeted (see [`danmaku_protocol::audience`]). An
    /// idempotency key's fingerprint covers it all.
    pub fn body(&self) -> std::borrow::Cow<'a, str> {
        match self.audience {
            None => std::borrow::Cow::Borrowed(self.data),
            Some(a) => {
                // The tag is ASCII: ids are checked strings, the marks control bytes.
                let mut body = String::from_utf8(a.tag()).unwrap_or_default();
                body.push_str(self.data);
                std::borrow::Cow::Owned(body)
            }
        }
    }

    /// An event a backend publishes, at its kind's backend priority (high, except the
    /// chatter kinds), without a key.
    pub fn from_backend(kind: &'a EventKind, data: &'a str) -> Self {
        Self {
            priority: Priority::of_backend(kind),
            ..Self::new(kind, data)
        }
    }
}

/// What a viewer needs to open a room.
#[derive(Debug, Clone)]
pub struct RoomView {
    /// The room's epoch.
    pub epoch: Arc<str>,
    /// The room's latest seq.
    pub seq: u64,
    /// Like total.
    pub likes: u64,
    /// The last events (empty when `replay` is given).
    pub recent: Vec<Bytes>,
    /// Open polls, encoded.
    pub polls: Vec<Bytes>,
    /// Coupons not closed yet (open or sold out), encoded.
    pub coupons: Vec<Bytes>,
    /// Keyword games open, encoded.
    pub keywords: Vec<Bytes>,
    /// Quizzes open, encoded.
    pub quizzes: Vec<Bytes>,
    /// Lotteries not drawn yet, encoded.
    pub lotteries: Vec<Bytes>,
    /// The room's stage object, when one is set.
    pub stage: Option<Bytes>,
    /// The room's public seats state, once seats are set.
    pub seats: Option<Bytes>,
    /// The room's own settings ([`RoomSettings::encode`]d), once set.
    pub settings: Option<Bytes>,
    /// With a `since` in this epoch and still in history: the events after it, in order.
    pub replay: Option<Vec<Bytes>>,
}

/// Events of a room's history.
#[derive(Debug, Clone)]
pub struct History {
    /// The room's epoch.
    pub epoch: Arc<str>,
    /// The room's latest seq.
    pub head: u64,
    /// Events after the requested seq, in order (at most the requested limit).
    pub events: Vec<Bytes>,
}

/// A room's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    /// The room's epoch.
    pub epoch: Arc<str>,
    /// The room's latest seq.
    pub seq: u64,
    /// Like total.
    pub likes: u64,
}

/// A new poll.
#[derive(Debug, Clone)]
pub struct NewPoll {
    /// The question.
    pub question: String,
    /// Option texts (2..=10).
    pub options: Vec<String>,
    /// How long the poll stays open.
    pub duration_s: u64,
}

/// A new coupon.
#[derive(Debug, Clone)]
pub struct NewCoupon {
    /// What it is for (1..=100 characters).
    pub title: String,
    /// How many can be claimed in all.
    pub stock: u64,
    /// How many one user may claim.
    pub per_user: u32,
    /// How long claims are taken.
    pub duration_s: u64,
    /// Who may see and claim it (everyone when `None`): its events are targeted, it is
    /// in the snapshot of its audience alone, and others' claims are refused.
    pub audience: Option<Audience>,
}

/// One successful claim of a coupon.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CouponClaim {
    /// Who claimed it.
    pub user: String,
    /// The code the backend honours.
    pub code: String,
    /// When, Unix ms (server clock).
    pub at: u64,
}

/// A coupon's whole record, for the backend that honours its claims.
#[derive(Debug, Clone)]
pub struct CouponRecord {
    /// The coupon's state (a `coupon` event's `data`).
    pub state: Bytes,
    /// Every successful claim, in order.
    pub claims: Vec<CouponClaim>,
}

/// Why a viewer outside a coupon's audience may not claim it.
pub(crate) const COUPON_FOR_OTHERS: &str = "this coupon is for other viewers";

/// Most coupons open at once in one room.
pub const MAX_OPEN_COUPONS: usize = 16;
/// Most stock of one coupon.
pub const MAX_COUPON_STOCK: u64 = 100_000;

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FanoutError {
    /// The requested seq is older than the room's history.
    #[error("seq {since} is older than the history of this room (epoch {epoch})")]
    Gone {
        /// The requested seq.
        since: u64,
        /// The room's epoch.
        epoch: Arc<str>,
    },
    /// The requested seq is beyond the room's latest seq.
    #[error("seq {since} is beyond the latest seq {head} of this room")]
    Ahead {
        /// The requested seq.
        since: u64,
        /// The room's latest seq.
        head: u64,
    },
    /// No such poll in this room.
    #[error("no poll `{0}` in this room")]
    UnknownPoll(PollId),
    /// The poll is closed.
    #[error("poll `{0}` is closed")]
    PollClosed(PollId),
    /// The user already voted in this poll.
    #[error("already voted in poll `{0}`")]
    AlreadyVoted(PollId),
    /// The option index is out of range.
    #[error("poll `{0}` has no option {1}")]
    BadOption(PollId, u32),
    /// No such coupon in this room.
    #[error("no coupon `{0}` in this room")]
    UnknownCoupon(InteractionId),
    /// The coupon's stock is gone.
    #[error("coupon `{0}` is sold out")]
    SoldOut(InteractionId),
    /// The user holds as many of the coupon as it allows.
    #[error("coupon `{0}` already claimed as often as it allows")]
    AlreadyClaimed(InteractionId),
    /// The coupon is closed.
    #[error("coupon `{0}` is closed")]
    CouponClosed(InteractionId),
    /// The room has as many coupons open as it may.
    #[error("at most {MAX_OPEN_COUPONS} coupons are open in a room at once")]
    TooManyCoupons,
    /// No such keyword game, quiz or lottery in this room.
    #[error("no interaction `{0}` in this room")]
    UnknownInteraction(InteractionId),
    /// The keyword game, quiz or lottery is closed.
    #[error("`{0}` is closed")]
    InteractionClosed(InteractionId),
    /// The user already answered the quiz.
    #[error("already answered quiz `{0}`")]
    AlreadyAnswered(InteractionId),
    /// The user already entered the lottery.
    #[error("already entered lottery `{0}`")]
    AlreadyEntered(InteractionId),
    /// The user may not take part (why is the text).
    #[error("not eligible for `{0}`: {1}")]
    NotEligible(InteractionId, &'static str),
    /// The quiz has no such option.
    #[error("quiz `{0}` has no option {1}")]
    NoSuchOption(InteractionId, u32),
    /// A co-host move refused by the seats' state machine.
    #[error("{0}")]
    Seat(seats::SeatError),
    /// The room has as many keyword games, quizzes and lotteries open as it may.
    #[error(
        "at most {} keyword games, quizzes and lotteries are open in a room at once",
        interaction::MAX_OPEN_INTERACTIONS
    )]
    TooManyInteractions,
    /// The idempotency key was first used for another event (another kind or data).
    #[error("idempotency key already used for a different event (seq {seq}); use a new key")]
    KeyReused {
        /// The seq of the event the key was first used for.
        seq: u64,
    },
    /// A retry's idempotency key is not known, and the store may have lost it with the
    /// events of its lifetime (a Redis restart or lost writes within the key's TTL, a
    /// gateway restart with the memory store): the first attempt may have been
    /// sequenced in a history that is gone. Nothing was sequenced now.
    #[error(
        "this retry's idempotency key is unknown and the store may have lost it (restarted or lost writes within the key's lifetime): the first attempt may have been delivered; nothing was sequenced now, send it with a new key to publish it anyway"
    )]
    KeyUnknown,
    /// The room admitted its budget of viewer comments this second.
    #[error(
        "this room takes at most {per_s} viewer comments a second; retry in {retry_after_ms} ms"
    )]
    RoomBusy {
        /// The room's budget.
        per_s: u32,
        /// When the next second begins.
        retry_after_ms: u64,
    },
    /// The room's slow mode: the user commented less than its `slow_mode_s` ago.
    #[error("this room is in slow mode; comment again in {retry_after_ms} ms")]
    SlowMode {
        /// When the user may comment again.
        retry_after_ms: u64,
    },
    /// The comment contains one of the room's blocked words. Nothing was sequenced.
    #[error("the comment contains a word this room blocks")]
    Blocked,
    /// The sender's level is below the room's `min_level`.
    #[error("this room takes comments from level {0} up")]
    LevelTooLow(i64),
    /// The user is muted in the room (`None`: for good).
    #[error("you are muted in this room{}", .retry_after_ms.map_or_else(|| " for good".to_owned(), |ms| format!(" for {ms} ms more")))]
    Muted {
        /// How long the mute lasts still.
        retry_after_ms: Option<u64>,
    },
    /// The room holds as many mutes or bans as it may.
    #[error("a room holds at most {MAX_MODERATED} mutes and as many bans")]
    TooManyModerated,
    /// `retract` of a seq the room has not given yet.
    #[error("the room has no event {seq} yet")]
    NoSuchSeq {
        /// The seq asked for.
        seq: u64,
    },
    /// A settings update that is not one (the text says why).
    #[error("{0}")]
    BadSettings(String),
    /// The store holds as many rooms as it may.
    #[error("too many rooms ({0})")]
    TooManyRooms(usize),
    /// The store is unreachable (the text is the store client's own message). Nothing
    /// was sequenced.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A sequencing call reached the store but no answer came back: the event may or
    /// may not have been sequenced. Retry with the same idempotency key.
    #[error(
        "the store did not confirm ({0}); the event may have been sequenced: retry with the same idempotency key"
    )]
    OutcomeUnknown(String),
    /// The store answered something this version cannot read: a reply of the wrong
    /// shape, or a stored event that is not a record. A bug or a version mix, never
    /// retried as if the store were down.
    #[error("unexpected answer from the store: {0}")]
    BadReply(&'static str),
}

/// Sequencing and reading rooms.
#[async_trait]
pub trait Rooms: Send + Sync {
    /// Sequences an event and delivers it to the hub.
    ///
    /// # Errors
    /// [`FanoutError::KeyReused`] when the idempotency key was used for another event;
    /// [`FanoutError::KeyUnknown`] for a retry whose key the store may have lost;
    /// [`FanoutError::TooManyRooms`], [`FanoutError::Unavailable`],
    /// [`FanoutError::OutcomeUnknown`].
    async fn publish_event(
        &self,
        room: &RoomId,
        event: NewEvent<'_>,
    ) -> Result<Published, FanoutError>;

    /// Sequences a normal-priority event (see [`Rooms::publish_event`]).
    ///
    /// # Errors
    /// As [`Rooms::publish_event`].
    async fn publish(
        &self,
        room: &RoomId,
        kind: &EventKind,
        data: &str,
        idempotency_key: Option<&str>,
    ) -> Result<Published, FanoutError> {
        let event = NewEvent {
            idempotency_key,
            ..NewEvent::new(kind, data)
        };
        self.publish_event(room, event).await
    }

    /// Publishes again a normal-priority event whose first attempt under
    /// `idempotency_key` got no certain answer ([`FanoutError::OutcomeUnknown`], a lost
    /// connection): answers the seq the first attempt got, or sequences it now if the
    /// store can tell the first attempt never reached it.
    ///
    /// # Errors
    /// As [`Rooms::publish_event`], and [`FanoutError::KeyUnknown`] when the key is
    /// unknown but the store may have lost it within its lifetime (it never gives one
    /// key two seqs).
    async fn publish_retry(
        &self,
        room: &RoomId,
        kind: &EventKind,
        data: &str,
        idempotency_key: &str,
    ) -> Result<Published, FanoutError> {
        let event = NewEvent {
            idempotency_key: Some(idempotency_key),
            retry: true,
            ..NewEvent::new(kind, data)
        };
        self.publish_event(room, event).await
    }

    /// Sets the room's stage to `stage` (a JSON object) or clears it (`None`), and
    /// sequences a high `stage` event with it (`null` when cleared), in one step: a
    /// viewer who joins after the event finds the stage in its snapshot.
    ///
    /// # Errors
    /// As [`Rooms::publish`].
    async fn set_stage(&self, room: &RoomId, stage: Option<&str>)
    -> Result<Published, FanoutError>;

    /// Adds `delta` likes and publishes a `likes` event with the new total.
    ///
    /// # Errors
    /// As [`Rooms::publish`].
    async fn add_likes(&self, room: &RoomId, delta: u64) -> Result<Published, FanoutError>;

    /// The room's state for a join, replaying from `since` when it is in history.
    ///
    /// # Errors
    /// As [`Rooms::publish`].
    async fn view(
        &self,
        room: &RoomId,
        since: Option<&Since>,
        recent: usize,
    ) -> Result<RoomView, FanoutError>;

    /// Up to `limit` events after `since`.
    ///
    /// # Errors
    /// [`FanoutError::Gone`] when `since` is older than history.
    async fn history(
        &self,
        room: &RoomId,
        since: u64,
        limit: usize,
    ) -> Result<History, FanoutError>;

    /// The room's counters.
    ///
    /// # Errors
    /// As [`Rooms::publish`].
    async fn info(&self, room: &RoomId) -> Result<RoomInfo, FanoutError>;

    /// Viewers online in `room` on every gateway (this gateway's count is reported
    /// as part of the call).
    ///
    /// # Errors
    /// As [`Rooms::publish`].
    async fn online(&self, room: &RoomId) -> Result<u64, FanoutError>;
}

/// Polls: create, close, vote; tallies are published coalesced by [`Polls::tick`].
#[async_trait]
pub trait Polls: Send + Sync {
    /// Opens a poll and publishes its `poll` event; returns the poll id and seq.
    ///
    /// # Errors
    /// As [`Rooms::publish`].
    async fn create_poll(
        &self,
        room: &RoomId,
        poll: NewPoll,
    ) -> Result<(PollId, Published), FanoutError>;

    /// Closes a poll and publishes its final tallies.
    ///
    /// # Errors
    /// [`FanoutError::UnknownPoll`], [`FanoutError::PollClosed`].
    async fn close_poll(&self, room: &RoomId, poll: &PollId) -> Result<Published, FanoutError>;

    /// Records `user`'s vote. One vote per user per poll.
    ///
    /// # Errors
    /// [`FanoutError::UnknownPoll`], [`FanoutError::PollClosed`],
    /// [`FanoutError::AlreadyVoted`], [`FanoutError::BadOption`].
    async fn vote(
        &self,
        room: &RoomId,
        poll: &PollId,
        user: &str,
        option: u32,
    ) -> Result<(), FanoutError>;

    /// Periodic work: publishes changed poll tallies, closes polls past their end,
    /// expires idle rooms.
    async fn tick(&self);
}

/// Coupons with stock: exactly `stock` claims succeed, whatever the concurrency;
/// the remaining count is published coalesced by [`Polls::tick`].
#[async_trait]
pub trait Coupons: Send + Sync {
    /// Opens a coupon and publishes its `coupon` event; returns its id and seq.
    ///
    /// # Errors
    /// [`FanoutError::TooManyCoupons`], and as [`Rooms::publish`].
    async fn create_coupon(
        &self,
        room: &RoomId,
        coupon: NewCoupon,
    ) -> Result<(InteractionId, Published), FanoutError>;

    /// Closes a coupon (no more claims) and publishes its final state.
    ///
    /// # Errors
    /// [`FanoutError::UnknownCoupon`], [`FanoutError::CouponClosed`].
    async fn close_coupon(
        &self,
        room: &RoomId,
        coupon: &InteractionId,
    ) -> Result<Published, FanoutError>;

    /// Claims one of the coupon's stock for `viewer` under `code`.
    ///
    /// # Errors
    /// [`FanoutError::UnknownCoupon`], [`FanoutError::CouponClosed`],
    /// [`FanoutError::SoldOut`], [`FanoutError::AlreadyClaimed`],
    /// [`FanoutError::NotEligible`] for a viewer outside the coupon's audience.
    async fn claim(
        &self,
        room: &RoomId,
        coupon: &InteractionId,
        viewer: &Viewer,
        code: &str,
    ) -> Result<(), FanoutError>;

    /// The coupon's state and claims.
    ///
    /// # Errors
    /// [`FanoutError::UnknownCoupon`].
    async fn coupon(
        &self,
        room: &RoomId,
        coupon: &InteractionId,
    ) -> Result<CouponRecord, FanoutError>;
}

/// A keyword game's, quiz's or lottery's whole record, for the backend.
#[derive(Debug, Clone)]
pub struct InteractionRecord {
    /// Its state (the `data` of its last event).
    pub state: Bytes,
    /// A quiz's correct answerers in answer order; a lottery's entrants sorted (a quiz
    /// lottery's only once drawn); nothing for a keyword.
    pub users: Vec<String>,
}

/// Keyword games, quizzes and lotteries: each state change is one atomic step of the
/// store, so counts, answers and entries are exact across gateways; progress is
/// published coalesced by [`Polls::tick`], which also closes (and draws) what ended.
#[async_trait]
pub trait Interactions: Send + Sync {
    /// Opens one and publishes its first event; returns its id and seq.
    ///
    /// # Errors
    /// [`FanoutError::TooManyInteractions`], and as [`Rooms::publish`].
    async fn open_interaction(
        &self,
        room: &RoomId,
        new: interaction::NewInteraction,
    ) -> Result<(InteractionId, Published), FanoutError>;

    /// Closes one (a lottery is drawn) and publishes its final state.
    ///
    /// # Errors
    /// [`FanoutError::UnknownInteraction`], [`FanoutError::InteractionClosed`].
    async fn close_interaction(
        &self,
        room: &RoomId,
        id: &InteractionId,
    ) -> Result<Published, FanoutError>;

    /// Records `user`'s answer to a quiz. One answer per user.
    ///
    /// # Errors
    /// [`FanoutError::UnknownInteraction`], [`FanoutError::InteractionClosed`],
    /// [`FanoutError::AlreadyAnswered`], [`FanoutError::NoSuchOption`],
    /// [`FanoutError::NotEligible`] when the quiz is full.
    async fn answer(
        &self,
        room: &RoomId,
        quiz: &InteractionId,
        user: &str,
        option: u32,
    ) -> Result<(), FanoutError>;

    /// Enters `user` (with `tags`) into a lottery entered by command. One entry per user.
    ///
    /// # Errors
    /// [`FanoutError::UnknownInteraction`], [`FanoutError::InteractionClosed`],
    /// [`FanoutError::AlreadyEntered`], [`FanoutError::NotEligible`].
    async fn enter(
        &self,
        room: &RoomId,
        lottery: &InteractionId,
        user: &str,
        tags: &[&str],
    ) -> Result<(), FanoutError>;

    /// One's whole record.
    ///
    /// # Errors
    /// [`FanoutError::UnknownInteraction`].
    async fn interaction(
        &self,
        room: &RoomId,
        id: &InteractionId,
    ) -> Result<InteractionRecord, FanoutError>;
}

/// Co-host seats: every move is one exact step of the store ([`seats`]); requests,
/// invitations and the seats of users gone for [`seats::LEASE_MS`] expire in
/// [`Polls::tick`].
#[async_trait]
pub trait CoHosts: Send + Sync {
    /// Sets the room's number of seats (emptying those beyond it) and publishes the
    /// `seats` state.
    ///
    /// # Errors
    /// As [`Rooms::publish`].
    async fn set_seats(&self, room: &RoomId, count: u32) -> Result<Published, FanoutError>;

    /// Makes a co-host move (the caller checked that a host move comes from a host).
    ///
    /// # Errors
    /// [`FanoutError::Seat`], and as [`Rooms::publish`].
    async fn cohost(
        &self,
        room: &RoomId,
        actor: seats::Actor<'_>,
        action: &seats::Action,
    ) -> Result<(), FanoutError>;
}

/// Most mutes (and, apart, bans) one room holds; beyond, expired ones are forgotten,
/// and if none is, the action is refused.
pub const MAX_MODERATED: usize = 10_000;
/// Moderation actions a room's audit list keeps (the oldest go first).
pub const MAX_MODERATION_LOG: usize = 1_000;
/// Retracted seqs a room remembers (its history holds at most as many events).
pub const MAX_RETRACTED: usize = 1_000;

/// A user's standing in a room: until when (Unix ms, `u64::MAX` for good) it is muted
/// or banned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Standing {
    /// Until when its comments, likes and votes are refused.
    pub muted_until: Option<u64>,
    /// Until when its joins are refused.
    pub banned_until: Option<u64>,
}

/// Users one room's seen record holds (beyond, a user not in it is welcomed as new and
/// not recorded).
pub const MAX_SEEN: usize = 100_000;
/// Names an `entrance` event lists.
pub const ENTRANCE_NAMES: usize = 5;
/// VIPs an `entrance` event names (more are counted).
pub const ENTRANCE_VIPS: usize = 20;
/// The least time between two `entrance` events of a room, in ms.
pub const ENTRANCE_EVERY_MS: u64 = 1_000;

/// A viewer joining a room, as its seen record and its entrances know it.
#[derive(Debug, Clone, Copy)]
pub struct Arriving<'a> {
    /// Its user id.
    pub user: &'a str,
    /// Its display name.
    pub name: &'a str,
    /// Its tags (a VIP has one of the room's `vip_tags`).
    pub tags: &'a [&'a str],
    /// Today, in UTC days since the Unix epoch, by the gateway's clock.
    pub today: u64,
    /// Whether it counts in entrances (anonymous viewers do not).
    pub counted: bool,
    /// The settings of a room that has none of its own (for its `vip_tags`).
    pub defaults: &'a RoomSettings,
}

/// What the store knows of a viewer joining a room.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Arrival {
    /// Its mute and ban.
    pub standing: Standing,
    /// Whether it was seen in the room within 30 days before.
    pub returning: bool,
    /// The distinct UTC days it joined the room on, today included.
    pub visits: u64,
    /// The room's welcome templates, if any.
    pub welcome: Option<danmaku_protocol::welcome::Welcome>,
}

/// Joins: each viewer's seen record (for its welcome) and the room's aggregated
/// `entrance` events.
#[async_trait]
pub trait Arrivals: Send + Sync {
    /// Sets the room's welcome templates (replacing the ones before).
    ///
    /// # Errors
    /// As [`Rooms::view`].
    async fn set_welcome(
        &self,
        room: &RoomId,
        welcome: &danmaku_protocol::welcome::Welcome,
    ) -> Result<(), FanoutError>;

    /// Records a join: the user's visit in the room's seen record (exact on every
    /// gateway) and, unless it is banned, its entrance, told in the room's next
    /// `entrance` event (at most one a second, [`ENTRANCE_EVERY_MS`]).
    ///
    /// # Errors
    /// As [`Rooms::view`].
    async fn arrive(&self, room: &RoomId, who: &Arriving<'_>) -> Result<Arrival, FanoutError>;
}

/// Moderation: mutes, bans and retractions, exact on every gateway.
#[async_trait]
pub trait Moderate: Send + Sync {
    /// Applies `m` (by `by`: a user id, or `backend`), records it in the room's audit
    /// list and sequences its event: a `retract` (`{"seq"}`, for everyone) or a
    /// `moderation` event ([`moderation::doc`]) for the room's staff alone. A ban takes
    /// the user's connections out of the room on every gateway; a mute reaches its
    /// connections too (their likes are refused at once).
    ///
    /// # Errors
    /// [`FanoutError::TooManyModerated`], [`FanoutError::NoSuchSeq`], and as
    /// [`Rooms::publish`].
    async fn moderate(
        &self,
        room: &RoomId,
        m: &danmaku_protocol::moderation::Moderation,
        by: &str,
    ) -> Result<Published, FanoutError>;

    /// The room's audit list, oldest first: each a [`moderation::doc`].
    ///
    /// # Errors
    /// As [`Rooms::view`].
    async fn moderation_log(&self, room: &RoomId) -> Result<Vec<Bytes>, FanoutError>;
}

/// A room's settings, changed live by its hosts and backends and enforced by the store
/// on every viewer comment (see [`Ingress`]).
#[async_trait]
pub trait Settings: Send + Sync {
    /// Applies `patch` (a partial update, [`RoomSettings::patch`]) to the room's
    /// settings — `defaults` when it has none yet — atomically, and publishes the
    /// whole result as a high `settings` event.
    ///
    /// # Errors
    /// [`FanoutError::BadSettings`] (nothing changes), and as [`Rooms::publish`].
    async fn update_settings(
        &self,
        room: &RoomId,
        patch: &serde_json::Value,
        defaults: &RoomSettings,
    ) -> Result<(RoomSettings, Published), FanoutError>;

    /// The room's own settings; `None` when they were never set.
    ///
    /// # Errors
    /// As [`Rooms::view`].
    async fn settings(&self, room: &RoomId) -> Result<Option<RoomSettings>, FanoutError>;
}

/// Retention data ([`analytics`]): counted in the store, so exact across gateways.
#[async_trait]
pub trait Analytics: Send + Sync {
    /// Applies `ops` to the room's counters and visits, in order, in one atomic step;
    /// returns one entry per op: for a join, when its visit began (earlier than the
    /// join when a resume continued it). `window_ms`: how long after its end a resume
    /// continues a visit.
    ///
    /// # Errors
    /// As [`Rooms::view`].
    async fn record(
        &self,
        room: &RoomId,
        ops: &[analytics::Op],
        window_ms: u64,
    ) -> Result<Vec<Option<u64>>, FanoutError>;

    /// The room's counters.
    ///
    /// # Errors
    /// As [`Rooms::view`].
    async fn analytics(&self, room: &RoomId) -> Result<analytics::Counters, FanoutError>;

    /// Tells the store the online counts of this gateway's rooms (for
    /// [`Analytics::top_rooms`] on every gateway); nothing to do for a store of one
    /// gateway.
    async fn report_rooms(&self, _rooms: &[(RoomId, u64)]) {}

    /// The rooms with the most viewers online, most first, at most `limit`: those
    /// every gateway sharing the store reported lately.
    ///
    /// # Errors
    /// When the store cannot be reached.
    async fn top_rooms(&self, limit: usize) -> Result<Vec<(RoomId, u64)>, FanoutError>;
}

/// The `limit` rooms of `counts` with the most online, most first (ties by id).
pub fn top_of(counts: impl IntoIterator<Item = (RoomId, u64)>, limit: usize) -> Vec<(RoomId, u64)> {
    let mut all: Vec<(RoomId, u64)> = counts.into_iter().collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.as_str().cmp(b.0.as_str())));
    all.truncate(limit);
    all
}

/// A store the gateway runs on.
pub trait Fanout:
    Rooms + Polls + Coupons + Interactions + CoHosts + Settings + Moderate + Arrivals + Analytics
{
    /// The hub this store delivers into.
    fn hub(&self) -> &Arc<Hub>;

    /// Whether the store is reachable (for `/readyz`).
    fn ready(&self) -> bool;

    /// What the store counted since start (errors, timeouts, reconnects, stalls,
    /// rollovers, call latency); `None` for a store that has nothing to count (the
    /// memory store: its calls cannot fail or time out).
    fn store_stats(&self) -> Option<&stats::StoreStats> {
        None
    }
}

impl FanoutError {
    /// [`FanoutError::Muted`] for a mute that lasts until `until` (Unix ms, `u64::MAX`
    /// for good), told at `now`.
    pub fn muted(until: u64, now: u64) -> Self {
        Self::Muted {
            retry_after_ms: (until != u64::MAX).then(|| until.saturating_sub(now)),
        }
    }

    /// When to try again, for a refusal that passes (the room's budget, slow mode).
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            Self::RoomBusy { retry_after_ms, .. } | Self::SlowMode { retry_after_ms } => {
                Some(*retry_after_ms)
            }
            Self::Muted { retry_after_ms } => *retry_after_ms,
            _ => None,
        }
    }

    /// The protocol error code a client or backend is told.
    pub fn code(&self) -> danmaku_protocol::ErrorCode {
        use danmaku_protocol::ErrorCode;
        match self {
            Self::Gone { .. }
            | Self::Ahead { .. }
            | Self::BadOption(..)
            | Self::KeyReused { .. }
            | Self::KeyUnknown => ErrorCode::BadRequest,
            Self::UnknownPoll(_) => ErrorCode::UnknownPoll,
            Self::PollClosed(_) => ErrorCode::PollClosed,
            Self::AlreadyVoted(_) => ErrorCode::AlreadyVoted,
            Self::UnknownCoupon(_) => ErrorCode::UnknownCoupon,
            Self::SoldOut(_) => ErrorCode::SoldOut,
            Self::AlreadyClaimed(_) => ErrorCode::AlreadyClaimed,
            Self::CouponClosed(_) => ErrorCode::CouponClosed,
            Self::TooManyCoupons | Self::TooManyInteractions | Self::NoSuchOption(..) => {
                ErrorCode::BadRequest
            }
            Self::UnknownInteraction(id) => match interaction::Kind::of(id) {
                Some(interaction::Kind::Quiz) => ErrorCode::UnknownQuiz,
                Some(interaction::Kind::Lottery) => ErrorCode::UnknownLottery,
                _ => ErrorCode::UnknownInteraction,
            },
            Self::InteractionClosed(id) => match interaction::Kind::of(id) {
                Some(interaction::Kind::Quiz) => ErrorCode::QuizClosed,
                Some(interaction::Kind::Lottery) => ErrorCode::LotteryClosed,
                _ => ErrorCode::InteractionClosed,
            },
            Self::Seat(seats::SeatError::Taken(_)) => ErrorCode::SeatTaken,
            Self::Seat(seats::SeatError::Wrong(_)) => ErrorCode::BadRequest,
            Self::AlreadyAnswered(_) => ErrorCode::AlreadyAnswered,
            Self::AlreadyEntered(_) => ErrorCode::AlreadyEntered,
            Self::NotEligible(..) => ErrorCode::NotEligible,
            Self::TooManyRooms(_) | Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::OutcomeUnknown(_) => ErrorCode::OutcomeUnknown,
            Self::RoomBusy { .. } => ErrorCode::RoomBusy,
            Self::SlowMode { .. } => ErrorCode::SlowMode,
            Self::Blocked => ErrorCode::Blocked,
            Self::LevelTooLow(_) => ErrorCode::Forbidden,
            Self::BadSettings(_) | Self::TooManyModerated | Self::NoSuchSeq { .. } => {
                ErrorCode::BadRequest
            }
            Self::Muted { .. } => ErrorCode::Muted,
            Self::BadReply(_) => ErrorCode::Internal,
        }
    }
}
