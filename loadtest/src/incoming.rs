//! Server frames as the load test decodes them: by field name, with serde, so the
//! order of a frame's keys does not matter and fields the load test does not use
//! are skipped.
//!
//! The protocol crate encodes server frames but has no decode types for them, so
//! these live here. [`Line`] is what every line of every frame is read into: it
//! borrows from the frame and allocates nothing (an error's code aside), because
//! the passive readers decode every event delivered. Replies read once per
//! connection (`joined`) and poll tallies have their own, owning, types.

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

/// The `type` of a server frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FrameType {
    /// First frame of a connection.
    Hello,
    /// The reply to `join`.
    Joined,
    /// A sequenced room event.
    Event,
    /// A command succeeded.
    Ack,
    /// A command failed (or the connection's request did).
    Error,
    /// Continuity of a room restarts at `seq`.
    Reset,
    /// The gateway is draining: reconnect and resume.
    Reconnect,
    /// A room's online count.
    Presence,
    /// Any other frame (`left`, `pong`, or one a newer gateway sends).
    #[serde(other)]
    Other,
}

/// The `kind` of an event, as far as the load test cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// The load test's own events, carrying their publish time.
    Lt,
    /// A poll's state.
    Poll,
    /// Comments, likes, and kinds backends define.
    #[serde(other)]
    Other,
}

/// One JSON object of a server frame. Fields a frame type does not have are `None`.
#[derive(Debug, Deserialize)]
pub struct Line<'a> {
    /// The frame's type.
    #[serde(rename = "type")]
    pub ty: FrameType,
    /// The command's id (`ack`, `error`, `joined`).
    pub id: Option<u64>,
    /// The room seq (`event`, `reset`, `joined`).
    pub seq: Option<u64>,
    /// The event's kind (`event`).
    pub kind: Option<EventKind>,
    /// The error code (`error`).
    pub code: Option<String>,
    /// The event's data, left encoded (`event`).
    #[serde(borrow)]
    pub data: Option<&'a RawValue>,
}

impl<'a> Line<'a> {
    /// Decodes one line.
    ///
    /// # Errors
    /// When the line is not a JSON object with a `type`.
    pub fn decode(line: &'a [u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(line)
    }

    /// The publish time (Unix µs) of a load-test event.
    pub fn published_at(&self) -> Option<u64> {
        #[derive(Deserialize)]
        struct LtData {
            t: u64,
        }
        if self.kind != Some(EventKind::Lt) {
            return None;
        }
        let data = self.data?;
        serde_json::from_str::<LtData>(data.get()).ok().map(|d| d.t)
    }

    /// The votes per option of a poll event.
    pub fn poll_votes(&self) -> Option<Vec<u64>> {
        #[derive(Deserialize)]
        struct Tally {
            votes: u64,
        }
        #[derive(Deserialize)]
        struct PollData {
            options: Vec<Tally>,
        }
        if self.kind != Some(EventKind::Poll) {
            return None;
        }
        let data: PollData = serde_json::from_str(self.data?.get()).ok()?;
        Some(data.options.iter().map(|o| o.votes).collect())
    }
}

/// The `joined` reply.
#[derive(Debug, Deserialize)]
pub struct JoinedFrame {
    /// The room's epoch.
    pub epoch: String,
    /// The room's seq at the join.
    pub seq: u64,
    /// Whether the `since` resume point was honoured.
    #[serde(default)]
    pub recovered: bool,
    /// The room's state.
    #[serde(default)]
    pub snapshot: SnapshotFrame,
}

/// The part of a snapshot the load test uses.
#[derive(Debug, Default, Deserialize)]
pub struct SnapshotFrame {
    /// Open polls.
    #[serde(default)]
    pub polls: Vec<PollState>,
}

/// A poll's state, as in a snapshot.
#[derive(Debug, Deserialize)]
pub struct PollState {
    /// The poll's id.
    pub poll: String,
    /// Its options (only their number is used).
    pub options: Vec<IgnoredAny>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_by_name_in_any_order() {
        let a = br#"{"type":"event","room":"r","epoch":"e","seq":7,"kind":"lt","ts":1,"data":{"t":99,"pad":"x"}}"#;
        let b = br#"{"data":{"pad":"x","t":99},"ts":1,"kind":"lt","seq":7,"epoch":"e","room":"r","type":"event"}"#;
        for line in [&a[..], &b[..]] {
            let l = Line::decode(line).expect("decodes");
            assert_eq!(
                (l.ty, l.seq, l.published_at()),
                (FrameType::Event, Some(7), Some(99))
            );
        }
    }

    #[test]
    fn other_kinds_and_types_are_recognised_but_not_read() {
        let c = Line::decode(br#"{"type":"event","seq":3,"kind":"comment","data":{"t":5}}"#)
            .expect("decodes");
        assert_eq!((c.kind, c.published_at()), (Some(EventKind::Other), None));
        let p = Line::decode(br#"{"type":"pong","id":2,"server_time":5}"#).expect("decodes");
        assert_eq!((p.ty, p.id), (FrameType::Other, Some(2)));
        let s = Line::decode(br#"{"type":"event","seq":4,"kind":"lt","data":"just text"}"#)
            .expect("any data decodes");
        assert_eq!(s.published_at(), None);
        assert!(Line::decode(br#"{"seq":1}"#).is_err(), "a type is required");
    }

    #[test]
    fn poll_tallies_and_joined_snapshots() {
        let e = Line::decode(
            br#"{"type":"event","seq":9,"kind":"poll","data":{"poll":"p","options":[{"text":"a","votes":2},{"votes":0,"text":"b"}]}}"#,
        )
        .expect("decodes");
        assert_eq!(e.poll_votes(), Some(vec![2, 0]));
        let j: JoinedFrame = serde_json::from_slice(
            br#"{"type":"joined","id":1,"room":"r","epoch":"e1","seq":4,"recovered":true,"snapshot":{"recent":[],"likes":0,"online":1,"polls":[{"poll":"p-1","options":[{"text":"a","votes":0},{"text":"b","votes":0}]}]}}"#,
        )
        .expect("decodes");
        assert_eq!((j.epoch.as_str(), j.seq, j.recovered), ("e1", 4, true));
        assert_eq!(j.snapshot.polls[0].poll, "p-1");
        assert_eq!(j.snapshot.polls[0].options.len(), 2);
    }
}
