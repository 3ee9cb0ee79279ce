//! Validated identifiers. Constructing one is the only way to get one, so a value of
//! these types is always well-formed.

use std::fmt;
use std::sync::Arc;

/// Why an identifier was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Room ids match `[A-Za-z0-9_.:-]{1,64}`.
    #[error("room id must match [A-Za-z0-9_.:-]{{1,64}}")]
    Room,
    /// Event kinds match `[a-z][a-z0-9_.]{0,31}`.
    #[error("event kind must match [a-z][a-z0-9_.]{{0,31}}")]
    Kind,
    /// Poll ids match `[A-Za-z0-9_.:-]{1,64}`.
    #[error("poll id must match [A-Za-z0-9_.:-]{{1,64}}")]
    Poll,
    /// Interaction ids (a coupon's `c-1`, …) match `[A-Za-z0-9_.:-]{1,64}`.
    #[error("interaction id must match [A-Za-z0-9_.:-]{{1,64}}")]
    Interaction,
}

fn is_id_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-')
}

fn valid_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(is_id_char)
}

/// A room id: `[A-Za-z0-9_.:-]{1,64}`. Cheap to clone (shared string).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(Arc<str>);

impl RoomId {
    /// Validates `s` as a room id.
    ///
    /// # Errors
    /// [`IdError::Room`] when `s` is empty, longer than 64 bytes or has other characters.
    pub fn new(s: &str) -> Result<Self, IdError> {
        if valid_id(s) {
            Ok(Self(Arc::from(s)))
        } else {
            Err(IdError::Room)
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for RoomId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoomId({})", &self.0)
    }
}

/// A poll id: `[A-Za-z0-9_.:-]{1,64}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PollId(Arc<str>);

impl PollId {
    /// Validates `s` as a poll id.
    ///
    /// # Errors
    /// [`IdError::Poll`] when `s` does not match the pattern.
    pub fn new(s: &str) -> Result<Self, IdError> {
        if valid_id(s) {
            Ok(Self(Arc::from(s)))
        } else {
            Err(IdError::Poll)
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for PollId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl fmt::Display for PollId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of a room interaction (`c-1` for a coupon, …): `[A-Za-z0-9_.:-]{1,64}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InteractionId(Arc<str>);

impl InteractionId {
    /// Validates `s` as an interaction id.
    ///
    /// # Errors
    /// [`IdError::Interaction`] when `s` does not match the pattern.
    pub fn new(s: &str) -> Result<Self, IdError> {
        if valid_id(s) {
            Ok(Self(Arc::from(s)))
        } else {
            Err(IdError::Interaction)
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for InteractionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl fmt::Display for InteractionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An event kind: `[a-z][a-z0-9_.]{0,31}` (`comment`, `likes`, `poll`, `retract`, or
/// one a backend defines).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EventKind(Arc<str>);

impl EventKind {
    /// Validates `s` as an event kind.
    ///
    /// # Errors
    /// [`IdError::Kind`] when `s` does not match the pattern.
    pub fn new(s: &str) -> Result<Self, IdError> {
        let b = s.as_bytes();
        let ok = (1..=32).contains(&b.len())
            && b[0].is_ascii_lowercase()
            && b[1..]
                .iter()
                .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'.');
        if ok {
            Ok(Self(Arc::from(s)))
        } else {
            Err(IdError::Kind)
        }
    }

    /// The kind as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `likes`: a room's like total changed.
    pub fn likes() -> Self {
        Self(Arc::from("likes"))
    }

    /// `stage`: the room's stage (the pinned product) was set, replaced or cleared.
    pub fn stage() -> Self {
        Self(Arc::from("stage"))
    }

    /// `coupon`: a coupon opened, its remaining stock changed, it sold out or closed.
    pub fn coupon() -> Self {
        Self(Arc::from("coupon"))
    }

    /// `keyword`: a keyword game opened, its counts changed, or it closed.
    pub fn keyword() -> Self {
        Self(Arc::from("keyword"))
    }

    /// `quiz`: a quiz opened, its answer count changed, or it closed (with the answer).
    pub fn quiz() -> Self {
        Self(Arc::from("quiz"))
    }

    /// `lottery`: a lottery opened (with its commitment), its entrants changed, or it
    /// was drawn (with its seed and winners).
    pub fn lottery() -> Self {
        Self(Arc::from("lottery"))
    }

    /// `lottery.won`: told to a lottery's winners alone.
    pub fn lottery_won() -> Self {
        Self(Arc::from("lottery.won"))
    }

    /// `seats`: the room's co-host seats changed.
    pub fn seats() -> Self {
        Self(Arc::from("seats"))
    }

    /// `poll`: a poll opened, its tallies changed, or it closed.
    pub fn poll() -> Self {
        Self(Arc::from("poll"))
    }

    /// `comment`: a viewer's (or a backend's) comment.
    pub fn comment() -> Self {
        Self(Arc::from("comment"))
    }

    /// `comment.merged`: repeated copies of one comment, counted.
    pub fn comment_merged() -> Self {
        Self(Arc::from("comment.merged"))
    }

    /// `retract`: a moderator took event `seq` back.
    pub fn retract() -> Self {
        Self(Arc::from("retract"))
    }

    /// `moderation`: a mute, unmute, ban or unban, told to the room's staff.
    pub fn moderation() -> Self {
        Self(Arc::from("moderation"))
    }

    /// `entrance`: who joined the room lately, aggregated (at most one a second).
    pub fn entrance() -> Self {
        Self(Arc::from("entrance"))
    }

    /// `settings`: the room's settings changed (the whole of them).
    pub fn settings() -> Self {
        Self(Arc::from("settings"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids() {
        assert!(RoomId::new("shop-42").is_ok());
        assert!(RoomId::new("a.b:c_D-9").is_ok());
        assert!(RoomId::new(&"x".repeat(64)).is_ok());
        assert_eq!(RoomId::new(""), Err(IdError::Room));
        assert_eq!(RoomId::new(&"x".repeat(65)), Err(IdError::Room));
        assert_eq!(RoomId::new("a b"), Err(IdError::Room));
        assert_eq!(RoomId::new("房间"), Err(IdError::Room));
        assert_eq!(RoomId::new("a/b"), Err(IdError::Room));
    }

    #[test]
    fn kinds() {
        assert!(EventKind::new("comment").is_ok());
        assert!(EventKind::new("product.card_2").is_ok());
        assert!(EventKind::new(&format!("a{}", "b".repeat(31))).is_ok());
        assert_eq!(
            EventKind::new(&format!("a{}", "b".repeat(32))),
            Err(IdError::Kind)
        );
        assert_eq!(EventKind::new("Comment"), Err(IdError::Kind));
        assert_eq!(EventKind::new("1x"), Err(IdError::Kind));
        assert_eq!(EventKind::new(""), Err(IdError::Kind));
        for built_in in [EventKind::likes(), EventKind::poll(), EventKind::comment()] {
            assert_eq!(EventKind::new(built_in.as_str()), Ok(built_in));
        }
    }
}
