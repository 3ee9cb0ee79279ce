//! Protocol error codes (`error.code`) and decode errors.

use std::fmt;

/// The `code` of an `error` frame, and of an HTTP API error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The message is malformed: invalid JSON, unknown type, missing or wrong field.
    BadRequest,
    /// Missing or invalid credentials.
    Unauthorized,
    /// The credentials do not allow this (read-only viewer, room not in `rooms`).
    Forbidden,
    /// The command names a room the connection has not joined.
    NotJoined,
    /// Too many commands; retry after `retry_after_ms`.
    RateLimited,
    /// A field or body is larger than allowed (comment text, like count, body size).
    TooLarge,
    /// The room id is not `[A-Za-z0-9_.:-]{1,64}`.
    InvalidRoom,
    /// No such poll in this room.
    UnknownPoll,
    /// The poll is closed.
    PollClosed,
    /// This user already voted in this poll.
    AlreadyVoted,
    /// The connection has joined the maximum number of rooms.
    TooManyRooms,
    /// The store is unreachable; retry later. Nothing was done.
    Unavailable,
    /// The store took the request but did not confirm it in time: it may or may not
    /// have been done. Retry with the same idempotency key.
    OutcomeUnknown,
    /// No such coupon in this room.
    UnknownCoupon,
    /// The coupon's stock is gone.
    SoldOut,
    /// This user already claimed as many of the coupon as it allows.
    AlreadyClaimed,
    /// The coupon is closed.
    CouponClosed,
    /// This user already answered this quiz.
    AlreadyAnswered,
    /// The quiz is closed.
    QuizClosed,
    /// No such quiz in this room.
    UnknownQuiz,
    /// No such lottery in this room.
    UnknownLottery,
    /// The lottery is closed (drawn or drawing).
    LotteryClosed,
    /// This user already entered this lottery.
    AlreadyEntered,
    /// This user may not enter (the lottery's `tags`, its entry is not a command, or it
    /// is full).
    NotEligible,
    /// No interaction of that id in this room (a keyword, or an id of no known kind).
    UnknownInteraction,
    /// The seat asked for is taken.
    SeatTaken,
    /// The interaction is closed (a keyword game; quizzes, lotteries and coupons have
    /// their own codes).
    InteractionClosed,
    /// The room takes no more viewer comments this second (its comment budget); retry
    /// after `retry_after_ms`.
    RoomBusy,
    /// The user is muted in the room (for `retry_after_ms` more when the mute is timed).
    Muted,
    /// The room's slow mode: the user commented less than `slow_mode_s` ago; retry
    /// after `retry_after_ms`.
    SlowMode,
    /// The comment contains one of the room's blocked words; nothing was sequenced.
    Blocked,
    /// An unexpected server error.
    Internal,
}

impl ErrorCode {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotJoined => "not_joined",
            Self::RateLimited => "rate_limited",
            Self::TooLarge => "too_large",
            Self::InvalidRoom => "invalid_room",
            Self::UnknownPoll => "unknown_poll",
            Self::PollClosed => "poll_closed",
            Self::AlreadyVoted => "already_voted",
            Self::TooManyRooms => "too_many_rooms",
            Self::Unavailable => "unavailable",
            Self::OutcomeUnknown => "outcome_unknown",
            Self::RoomBusy => "room_busy",
            Self::UnknownCoupon => "unknown_coupon",
            Self::SoldOut => "sold_out",
            Self::AlreadyClaimed => "already_claimed",
            Self::CouponClosed => "coupon_closed",
            Self::AlreadyAnswered => "already_answered",
            Self::QuizClosed => "quiz_closed",
            Self::UnknownQuiz => "unknown_quiz",
            Self::UnknownLottery => "unknown_lottery",
            Self::LotteryClosed => "lottery_closed",
            Self::AlreadyEntered => "already_entered",
            Self::NotEligible => "not_eligible",
            Self::UnknownInteraction => "unknown_interaction",
            Self::InteractionClosed => "interaction_closed",
            Self::SeatTaken => "seat_taken",
            Self::Muted => "muted",
            Self::SlowMode => "slow_mode",
            Self::Blocked => "blocked",
            Self::Internal => "internal",
        }
    }

    /// The code of a wire spelling; `None` for one this version does not know.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Every code, in declaration order.
    pub const ALL: [Self; 32] = [
        Self::BadRequest,
        Self::Unauthorized,
        Self::Forbidden,
        Self::NotJoined,
        Self::RateLimited,
        Self::TooLarge,
        Self::InvalidRoom,
        Self::UnknownPoll,
        Self::PollClosed,
        Self::AlreadyVoted,
        Self::TooManyRooms,
        Self::Unavailable,
        Self::OutcomeUnknown,
        Self::UnknownCoupon,
        Self::SoldOut,
        Self::AlreadyClaimed,
        Self::CouponClosed,
        Self::AlreadyAnswered,
        Self::QuizClosed,
        Self::UnknownQuiz,
        Self::UnknownLottery,
        Self::LotteryClosed,
        Self::AlreadyEntered,
        Self::NotEligible,
        Self::UnknownInteraction,
        Self::SeatTaken,
        Self::InteractionClosed,
        Self::RoomBusy,
        Self::Muted,
        Self::SlowMode,
        Self::Blocked,
        Self::Internal,
    ];

    /// The HTTP status the API answers with for this code.
    pub fn http_status(self) -> u16 {
        match self {
            Self::BadRequest | Self::InvalidRoom | Self::NotJoined | Self::TooManyRooms => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::UnknownPoll
            | Self::UnknownCoupon
            | Self::UnknownQuiz
            | Self::UnknownLottery
            | Self::UnknownInteraction => 404,
            Self::PollClosed
            | Self::AlreadyVoted
            | Self::SoldOut
            | Self::AlreadyClaimed
            | Self::CouponClosed
            | Self::AlreadyAnswered
            | Self::QuizClosed
            | Self::LotteryClosed
            | Self::AlreadyEntered
            | Self::InteractionClosed
            | Self::SeatTaken => 409,
            Self::NotEligible | Self::Muted | Self::Blocked => 403,
            Self::TooLarge => 413,
            Self::RateLimited | Self::RoomBusy | Self::SlowMode => 429,
            Self::Unavailable => 503,
            Self::OutcomeUnknown => 504,
            Self::Internal => 500,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A client command that could not be decoded or failed validation.
///
/// Carries the command's `id` when it could be read, so the `error` reply echoes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The command's `id`, when the JSON was readable enough to find it.
    pub id: Option<u64>,
    /// The protocol error code.
    pub code: ErrorCode,
    /// A human-readable explanation.
    pub message: String,
}

impl DecodeError {
    pub(crate) fn new(id: Option<u64>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            id,
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for DecodeError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed_once_and_parses_back() {
        assert_eq!(ErrorCode::ALL.len(), ErrorCode::Internal as usize + 1);
        for (i, code) in ErrorCode::ALL.into_iter().enumerate() {
            assert_eq!(code as usize, i, "{code} out of place in ALL");
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::parse("a_future_code"), None);
    }
}
