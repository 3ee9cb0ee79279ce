//! Server frames as a client reads them: the decode side of [`crate::server`].
//!
//! Fields are read by name, so the order of a frame's keys never matters, and fields a
//! reader does not know are skipped, so a newer gateway can add them. [`ServerLine`] is
//! what any line of any server frame decodes into; it borrows from the frame and
//! allocates nothing for ids, kinds and codes, because a client decodes every event it
//! is sent. Replies read once per join (`joined`, `reset`) have owning types.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::data::PollState;
use crate::error::ErrorCode;

/// The `type` of a server frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FrameType {
    /// First frame of a connection.
    Hello,
    /// The reply to `join`.
    Joined,
    /// The reply to `leave`.
    Left,
    /// A sequenced room event.
    Event,
    /// A command succeeded.
    Ack,
    /// The reply to `ping`.
    Pong,
    /// A command (or the connection's request) failed.
    Error,
    /// Continuity of a room restarts at `seq`.
    Reset,
    /// The gateway is draining: reconnect and resume.
    Reconnect,
    /// A room's online count.
    Presence,
    /// Seqs `from..=to` of a room were not delivered to this viewer.
    Skipped,
    /// A type this version does not know (a newer gateway's): skip the line.
    #[serde(other)]
    Unknown,
}

/// One JSON object of a server frame. A field the frame's type does not have is `None`.
#[derive(Debug, Deserialize)]
pub struct ServerLine<'a> {
    /// The frame's type.
    #[serde(rename = "type")]
    pub ty: FrameType,
    /// The command's id (`joined`, `left`, `ack`, `pong`, `error`).
    pub id: Option<u64>,
    /// The room (`joined`, `left`, `event`, `reset`, `presence`).
    #[serde(borrow)]
    pub room: Option<Cow<'a, str>>,
    /// The room's epoch (`joined`, `event`, `reset`).
    #[serde(borrow)]
    pub epoch: Option<Cow<'a, str>>,
    /// A room seq (`joined`, `event`, `reset`, and `ack` of a sequenced command).
    pub seq: Option<u64>,
    /// The event's kind (`event`).
    #[serde(borrow)]
    pub kind: Option<Cow<'a, str>>,
    /// When the event was sequenced, Unix milliseconds (`event`).
    pub ts: Option<u64>,
    /// The event's data, still encoded (`event`).
    #[serde(borrow)]
    pub data: Option<&'a RawValue>,
    /// The error's code as sent (`error`); see [`ServerLine::error_code`].
    #[serde(borrow)]
    pub code: Option<Cow<'a, str>>,
    /// The error's explanation (`error`).
    #[serde(borrow)]
    pub message: Option<Cow<'a, str>>,
    /// When to retry (`error` with `rate_limited`).
    pub retry_after_ms: Option<u64>,
    /// Viewers online (`presence`).
    pub online: Option<u64>,
    /// When the server closes the connection (`reconnect`).
    pub after_ms: Option<u64>,
    /// The first seq skipped (`skipped`).
    pub from: Option<u64>,
    /// The last seq skipped (`skipped`).
    pub to: Option<u64>,
    /// Why (`skipped`).
    #[serde(borrow)]
    pub reason: Option<Cow<'a, str>>,
    /// The event's priority when not normal (`event`).
    #[serde(borrow)]
    pub priority: Option<Cow<'a, str>>,
    /// A comment merged into the room's next `comment.merged` (`ack`).
    pub merged: Option<bool>,
}

impl<'a> ServerLine<'a> {
    /// Decodes one line of a server frame.
    ///
    /// # Errors
    /// When the line is not a JSON object with a `type`, or a known field has the
    /// wrong JSON type.
    pub fn decode(line: &'a [u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(line)
    }

    /// The error's code, when it is one this version knows.
    pub fn error_code(&self) -> Option<ErrorCode> {
        self.code.as_deref().and_then(ErrorCode::parse)
    }
}

/// The `joined` reply, whole.
#[derive(Debug, Clone, Deserialize)]
pub struct JoinedReply {
    /// The join's id.
    pub id: u64,
    /// The room.
    pub room: String,
    /// The room's epoch.
    pub epoch: String,
    /// The room's latest seq at the join.
    pub seq: u64,
    /// Whether the `since` resume point was honoured.
    pub recovered: bool,
    /// The room's state.
    pub snapshot: SnapshotState,
}

/// The `reset` frame, whole.
#[derive(Debug, Clone, Deserialize)]
pub struct ResetFrame {
    /// The room.
    pub room: String,
    /// The room's (possibly new) epoch.
    pub epoch: String,
    /// Continuity restarts after this seq.
    pub seq: u64,
    /// The room's state.
    pub snapshot: SnapshotState,
}

/// A snapshot as sent in `joined` and `reset`.
#[derive(Debug, Clone, Deserialize)]
pub struct SnapshotState {
    /// The last events, oldest first, each still encoded (decode with [`ServerLine`]).
    pub recent: Vec<Box<RawValue>>,
    /// The room's like total.
    pub likes: u64,
    /// Viewers online.
    pub online: u64,
    /// Open polls.
    pub polls: Vec<PollState>,
    /// The room's stage, when one is set.
    #[serde(default)]
    pub stage: Option<Box<RawValue>>,
    /// Coupons not closed.
    #[serde(default)]
    pub coupons: Vec<Box<RawValue>>,
    /// Keyword games open.
    #[serde(default)]
    pub keywords: Vec<Box<RawValue>>,
    /// Quizzes open.
    #[serde(default)]
    pub quizzes: Vec<Box<RawValue>>,
    /// Lotteries not drawn.
    #[serde(default)]
    pub lotteries: Vec<Box<RawValue>>,
    /// The co-host seats, once set.
    #[serde(default)]
    pub seats: Option<Box<RawValue>>,
    /// The room's settings.
    #[serde(default)]
    pub settings: Option<crate::settings::RoomSettings>,
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::data::{PollDoc, PollSpec};
    use crate::ids::{EventKind, RoomId};
    use crate::server::{EventFrame, Joined, ServerFrame, Snapshot, encode_reset};

    fn room() -> RoomId {
        RoomId::new("shop-1").expect("room")
    }

    #[test]
    fn every_small_frame_reads_back_what_was_encoded() {
        let cases = [
            (
                ServerFrame::Hello {
                    conn: "c",
                    gateway: "g",
                    heartbeat_ms: 1,
                    server_time: 2,
                },
                FrameType::Hello,
            ),
            (
                ServerFrame::Ack {
                    id: 3,
                    seq: Some(4),
                    merged: false,
                    claim: None,
                    opened: None,
                },
                FrameType::Ack,
            ),
            (ServerFrame::Left { id: 5, room: "r" }, FrameType::Left),
            (
                ServerFrame::Pong {
                    id: 6,
                    server_time: 7,
                },
                FrameType::Pong,
            ),
            (
                ServerFrame::Presence {
                    room: "r",
                    online: 8,
                },
                FrameType::Presence,
            ),
            (
                ServerFrame::Reconnect {
                    reason: "draining",
                    after_ms: 9,
                },
                FrameType::Reconnect,
            ),
            (
                ServerFrame::Skipped {
                    room: "r",
                    from: 3,
                    to: 4,
                    count: 2,
                    reason: crate::SkipReason::Sampled,
                },
                FrameType::Skipped,
            ),
        ];
        for (frame, ty) in cases {
            let bytes = frame.encode();
            let l = ServerLine::decode(&bytes).expect("decodes");
            assert_eq!(l.ty, ty, "{frame:?}");
            if ty == FrameType::Skipped {
                assert_eq!(
                    (l.from, l.to, l.reason.as_deref()),
                    (Some(3), Some(4), Some("sampled"))
                );
            }
        }
        let bytes = ServerFrame::Error {
            id: Some(3),
            code: ErrorCode::RateLimited,
            message: "5 comments/s, \"slow\"",
            retry_after_ms: Some(400),
        }
        .encode();
        let e = ServerLine::decode(&bytes).expect("decodes");
        assert_eq!(
            (e.ty, e.id, e.error_code(), e.retry_after_ms),
            (
                FrameType::Error,
                Some(3),
                Some(ErrorCode::RateLimited),
                Some(400)
            )
        );
        assert_eq!(e.message.as_deref(), Some("5 comments/s, \"slow\""));
    }

    #[test]
    fn an_event_reads_back_whatever_the_order_of_its_keys() {
        let kind = EventKind::new("card").expect("kind");
        let ev = EventFrame::encode(
            &room(),
            "e1",
            7,
            &kind,
            crate::Priority::Normal,
            11,
            r#"{"sku":"x"}"#,
        );
        let reordered =
            br#"{"data":{"sku":"x"},"ts":11,"kind":"card","seq":7,"epoch":"e1","room":"shop-1","type":"event"}"#;
        for line in [&ev.bytes[..], &reordered[..]] {
            let l = ServerLine::decode(line).expect("decodes");
            assert_eq!(l.ty, FrameType::Event);
            assert_eq!(
                (l.room.as_deref(), l.epoch.as_deref(), l.seq, l.ts),
                (Some("shop-1"), Some("e1"), Some(7), Some(11))
            );
            assert_eq!(l.kind.as_deref(), Some("card"));
            assert_eq!(l.data.map(RawValue::get), Some(r#"{"sku":"x"}"#));
        }
    }

    #[test]
    fn joined_and_reset_read_back_with_their_snapshot() {
        let spec = PollSpec {
            question: "q".into(),
            options: vec!["a".into(), "b".into()],
        };
        let poll = PollDoc {
            poll: "p-1",
            open: true,
            spec: &spec,
            votes: &[2],
            ends_at: 99,
        }
        .encode();
        let ev = EventFrame::encode(
            &room(),
            "e",
            1,
            &EventKind::comment(),
            crate::Priority::Normal,
            5,
            "{}",
        );
        let snap = Snapshot {
            recent: vec![ev.bytes.clone()],
            likes: 7,
            online: 3,
            polls: vec![Bytes::from(poll)],
            stage: None,
            ..Snapshot::default()
        };
        let joined = Joined {
            id: 4,
            room: &room(),
            epoch: "e",
            seq: 1,
            recovered: true,
            snapshot: &snap,
            welcome: None,
            variant: None,
        }
        .encode();
        assert_eq!(
            ServerLine::decode(&joined).expect("line").ty,
            FrameType::Joined
        );
        let j: JoinedReply = serde_json::from_slice(&joined).expect("joined");
        assert_eq!(
            (j.id, j.room.as_str(), j.epoch.as_str()),
            (4, "shop-1", "e")
        );
        assert_eq!((j.seq, j.recovered), (1, true));
        assert_eq!((j.snapshot.likes, j.snapshot.online), (7, 3));
        let recent = ServerLine::decode(j.snapshot.recent[0].get().as_bytes()).expect("event");
        assert_eq!(recent.seq, Some(1));
        let p = &j.snapshot.polls[0];
        assert_eq!(
            (p.poll.as_str(), p.is_open(), p.votes()),
            ("p-1", true, vec![2, 0])
        );

        let reset = encode_reset(&room(), "e2", 9, &Snapshot::default());
        let r: ResetFrame = serde_json::from_slice(&reset).expect("reset");
        assert_eq!(
            (r.epoch.as_str(), r.seq, r.snapshot.recent.len()),
            ("e2", 9, 0)
        );
    }

    #[test]
    fn what_a_newer_gateway_adds_is_skipped() {
        let l = ServerLine::decode(br#"{"type":"confetti","room":"r","from":3,"to":9,"n":2}"#)
            .expect("decodes");
        assert_eq!((l.ty, l.room.as_deref()), (FrameType::Unknown, Some("r")));
        let e =
            ServerLine::decode(br#"{"type":"error","id":1,"code":"a_future_code","message":"m"}"#)
                .expect("decodes");
        assert_eq!(
            (e.code.as_deref(), e.error_code()),
            (Some("a_future_code"), None)
        );
        let x =
            ServerLine::decode(br#"{"type":"event","seq":4,"kind":"lt","data":"text","x":[1]}"#)
                .expect("any data decodes");
        assert_eq!(x.data.map(RawValue::get), Some("\"text\""));
        assert!(
            ServerLine::decode(br#"{"seq":1}"#).is_err(),
            "a type is required"
        );
        assert!(ServerLine::decode(br#"{"type":"event","seq":"1"}"#).is_err());
    }
}
