//! Event priorities: what an adaptive viewer may skip, never an order.
//!
//! Every sequenced event is `high`, `normal` or `low`; on the wire an event object says
//! `"priority":"high"` or `"priority":"low"`, and nothing for `normal` (so a v1 event is
//! unchanged). Priorities never reorder a room: seq order is the one order.

use std::fmt;

use crate::EventKind;

/// An event's priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Priority {
    /// Chatter an adaptive viewer drops first (likes, entrances, merged comments).
    Low,
    /// Viewers' comments.
    #[default]
    Normal,
    /// Always delivered: the host's and the backend's events, interactions.
    High,
}

/// Kinds of the room's interactions and settings: high whoever sequences them.
const HIGH_KINDS: [&str; 9] = [
    "poll", "quiz", "lottery", "keyword", "stage", "coupon", "seats", "retract", "settings",
];

/// Kinds that are chatter: low whoever sequences them.
const LOW_KINDS: [&str; 3] = ["likes", "entrance", "comment.merged"];

impl Priority {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Normal => "normal",
            Self::High => "high",
        }
    }

    /// Reads `high`, `normal` or `low`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "low" => Some(Self::Low),
            "normal" => Some(Self::Normal),
            "high" => Some(Self::High),
            _ => None,
        }
    }

    /// The default of an event of `kind` that a backend publishes: high (the backend
    /// speaks for the show), except for the chatter kinds.
    pub fn of_backend(kind: &EventKind) -> Self {
        if LOW_KINDS.contains(&kind.as_str()) {
            Self::Low
        } else {
            Self::High
        }
    }

    /// The default of an event of `kind` that a viewer's command sequences (`staff`:
    /// the viewer is the room's host or a moderator, whose comments are high).
    pub fn of_viewer(kind: &EventKind, staff: bool) -> Self {
        let kind = kind.as_str();
        if HIGH_KINDS.contains(&kind) || staff {
            Self::High
        } else if LOW_KINDS.contains(&kind) {
            Self::Low
        } else {
            Self::Normal
        }
    }

    /// The default of an event the gateway sequences itself (`likes`, `poll`, …).
    pub fn of_room(kind: &EventKind) -> Self {
        Self::of_viewer(kind, false)
    }

    /// The priority an encoded event object states (`normal` when it states none). The
    /// field, when present, is written before `data` (see [`crate::EventFrame`]), so
    /// only the head of the object is read.
    pub fn of_frame(event: &[u8]) -> Self {
        const FIELD: &[u8] = b",\"priority\":\"";
        let head = match memfind(event, b",\"data\":") {
            Some(end) => &event[..end],
            None => event,
        };
        match memfind(head, FIELD).and_then(|i| head.get(i + FIELD.len())) {
            Some(b'h') => Self::High,
            Some(b'l') => Self::Low,
            _ => Self::Normal,
        }
    }
}

fn memfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(s: &str) -> EventKind {
        EventKind::new(s).unwrap_or_else(|_| EventKind::comment())
    }

    #[test]
    fn defaults_follow_who_sequences_what() {
        assert_eq!(Priority::of_backend(&kind("product.card")), Priority::High);
        assert_eq!(Priority::of_backend(&EventKind::comment()), Priority::High);
        assert_eq!(Priority::of_backend(&EventKind::likes()), Priority::Low);
        assert_eq!(
            Priority::of_viewer(&EventKind::comment(), false),
            Priority::Normal
        );
        assert_eq!(
            Priority::of_viewer(&EventKind::comment(), true),
            Priority::High
        );
        assert_eq!(Priority::of_room(&EventKind::likes()), Priority::Low);
        assert_eq!(Priority::of_room(&EventKind::poll()), Priority::High);
        assert_eq!(Priority::of_room(&kind("comment.merged")), Priority::Low);
    }

    #[test]
    fn the_wire_names_round_trip() {
        for p in [Priority::Low, Priority::Normal, Priority::High] {
            assert_eq!(Priority::parse(p.as_str()), Some(p));
        }
        assert_eq!(Priority::parse("urgent"), None);
        assert!(Priority::Low < Priority::Normal && Priority::Normal < Priority::High);
    }

    #[test]
    fn a_frame_states_its_priority_before_its_data() {
        let high = br#"{"type":"event","seq":1,"kind":"x","priority":"high","ts":1,"data":{}}"#;
        assert_eq!(Priority::of_frame(high), Priority::High);
        let plain =
            br#"{"type":"event","seq":1,"kind":"x","ts":1,"data":{"a":",\"priority\":\"high"}}"#;
        assert_eq!(
            Priority::of_frame(plain),
            Priority::Normal,
            "data is not read"
        );
        let low = br#"{"type":"event","kind":"likes","priority":"low","data":1}"#;
        assert_eq!(Priority::of_frame(low), Priority::Low);
    }
}
