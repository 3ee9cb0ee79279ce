//! What one viewer counts of the frames it reads: every seq (for loss, duplicates
//! and reorders), latencies, replies to its commands, resets and reconnect requests.
//!
//! Every line is decoded by field name ([`ServerLine`]), borrowing from the frame, so a
//! delivery costs one parse and no allocation.

use std::collections::BTreeMap;

use danmaku_protocol::{FrameType, ServerLine};

use crate::incoming::{poll_votes, published_at};
use crate::stats::Track;

/// The error code counted for a line that is not a server frame.
pub const UNDECODABLE: &str = "undecodable_frame";

/// A command waiting for its reply.
#[derive(Debug, Clone, Copy)]
pub enum Pending {
    /// A comment.
    Comment,
    /// Likes of this count.
    Like(u64),
    /// A vote for this option.
    Vote(u32),
    /// A comment of the room's keyword.
    Keyword,
    /// A quiz answer of this option.
    Answer(u32),
    /// A lottery entry.
    Enter,
    /// A coupon claim sent at this Unix µs.
    Claim(u64),
}

/// Which of a viewer's events have their latency measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LatencyOf {
    /// Every event.
    #[default]
    All,
    /// The high-priority events only.
    High,
    /// None (an adaptive viewer's, when only high events are measured).
    None,
}

/// What one viewer counted.
#[derive(Debug, Default)]
pub struct Seen {
    /// Seq accounting.
    pub track: Track,
    /// Events received.
    pub delivered: u64,
    /// Frames received.
    pub frames: u64,
    /// `reset` frames.
    pub resets: u64,
    /// Error replies by code.
    pub errors: BTreeMap<String, u64>,
    /// Commands refused (an `error` answering one), by code.
    pub refused: BTreeMap<String, u64>,
    /// Acks.
    pub acks: u64,
    /// Comments acked `merged:true`.
    pub merged_acks: u64,
    /// Likes acknowledged.
    pub likes_acked: u64,
    /// Votes acknowledged, by option.
    pub votes_acked: BTreeMap<u32, u64>,
    /// Commands waiting for replies, by id.
    pub pending: BTreeMap<u64, Pending>,
    /// What the viewer's game moves got.
    pub games: crate::stats::GamesSeen,
    /// The last poll event's tallies seen (seq, votes per option).
    pub last_poll: Option<(u64, Vec<u64>)>,
    /// The latest `reconnect` request from the gateway.
    pub reconnect_asked: bool,
    /// (publish → receive µs) samples not yet merged into the shared histogram.
    pub latencies: Vec<(u64, u64)>,
    /// The gateway (`--url` index) the viewer is connected to, for its latencies.
    pub gateway: usize,
    /// Which of this viewer's events have their latency measured.
    pub measures: LatencyOf,
}

impl Seen {
    /// Accounts for one line of a server frame received at `now_us` (Unix µs).
    pub fn on_line(&mut self, line: &[u8], now_us: u64) {
        if line.is_empty() {
            return;
        }
        let Ok(l) = ServerLine::decode(line) else {
            *self.errors.entry(UNDECODABLE.into()).or_default() += 1;
            return;
        };
        match l.ty {
            FrameType::Event => self.on_event(&l, now_us),
            FrameType::Ack => {
                self.acks += 1;
                self.merged_acks += u64::from(l.merged == Some(true));
                match l.id.and_then(|id| self.pending.remove(&id)) {
                    Some(Pending::Like(n)) => self.likes_acked += n,
                    Some(Pending::Vote(o)) => *self.votes_acked.entry(o).or_default() += 1,
                    Some(p) => self.games.acked(p, now_us, line),
                    None => {}
                }
            }
            FrameType::Error => {
                let code: String = l.code.map_or_else(|| "unknown".into(), Into::into);
                if let Some(p) = l.id.and_then(|id| self.pending.remove(&id)) {
                    *self.refused.entry(code.clone()).or_default() += 1;
                    self.games.refused(p, now_us);
                }
                *self.errors.entry(code).or_default() += 1;
            }
            FrameType::Reset => {
                self.resets += 1;
                if let Some(seq) = l.seq {
                    self.track.restart(seq);
                }
            }
            FrameType::Reconnect => self.reconnect_asked = true,
            FrameType::Skipped => {
                if let (Some(from), Some(to)) = (l.from, l.to)
                    && from <= to
                {
                    let targeted = l.reason.as_deref() == Some("targeted");
                    self.track.on_skipped(from, to, targeted);
                }
            }
            FrameType::Hello
            | FrameType::Joined
            | FrameType::Left
            | FrameType::Pong
            | FrameType::Presence
            | FrameType::Unknown => {}
        }
    }

    fn on_event(&mut self, l: &ServerLine<'_>, now_us: u64) {
        let Some(seq) = l.seq else {
            return;
        };
        self.delivered += 1;
        self.track.on_event(seq);
        if l.kind.as_deref() == Some("lottery.won") {
            self.games.won += 1;
            self.games.mine_won += 1;
        }
        if let Some(t) = published_at(l) {
            let measured = match self.measures {
                LatencyOf::All => true,
                LatencyOf::High => l.priority.as_deref() == Some("high"),
                LatencyOf::None => false,
            };
            if measured {
                self.latencies.push((now_us, now_us.saturating_sub(t)));
            }
        } else if let Some(votes) = poll_votes(l)
            && self.last_poll.as_ref().is_none_or(|(s, _)| seq > *s)
        {
            self.last_poll = Some((seq, votes));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_events_in_place() {
        let mut s = Seen {
            track: Track::start(0),
            ..Seen::default()
        };
        let line = br#"{"type":"event","room":"r","epoch":"e","seq":1,"kind":"lt","ts":5,"data":{"t":1000,"pad":"x"}}"#;
        s.on_line(line, 1_500);
        assert_eq!(
            (
                s.delivered,
                s.track.distinct,
                s.latencies.iter().map(|l| l.1).collect::<Vec<_>>()
            ),
            (1, 1, vec![500])
        );
        s.on_line(
            br#"{"type":"error","id":3,"code":"rate_limited","message":"x"}"#,
            0,
        );
        assert_eq!(s.errors.get("rate_limited"), Some(&1));
        s.pending.insert(4, Pending::Like(3));
        s.on_line(br#"{"type":"ack","id":4}"#, 0);
        assert_eq!(s.likes_acked, 3);
        s.on_line(
            br#"{"type":"reset","room":"r","epoch":"e","seq":9,"snapshot":{}}"#,
            0,
        );
        assert_eq!((s.resets, s.track.reset_lost), (1, 8));
    }

    #[test]
    fn errors_answering_commands_count_as_refused() {
        let mut s = Seen::default();
        s.pending.insert(2, Pending::Like(1));
        s.pending.insert(3, Pending::Comment);
        s.on_line(
            br#"{"type":"error","id":2,"code":"forbidden","message":"m"}"#,
            0,
        );
        s.on_line(
            br#"{"type":"error","id":3,"code":"rate_limited","message":"m"}"#,
            0,
        );
        s.on_line(
            br#"{"type":"error","id":3,"code":"forbidden","message":"again"}"#,
            0,
        );
        assert_eq!(s.refused.get("forbidden"), Some(&1));
        assert_eq!(s.refused.get("rate_limited"), Some(&1));
        assert_eq!(s.errors.get("forbidden"), Some(&2));
        assert!(s.pending.is_empty());
    }

    #[test]
    fn key_order_does_not_matter() {
        let mut s = Seen {
            track: Track::start(0),
            ..Seen::default()
        };
        s.on_line(
            br#"{"data":{"pad":"x","t":1000},"seq":1,"kind":"lt","type":"event"}"#,
            1_200,
        );
        s.on_line(br#"{"id":4,"type":"ack","seq":2}"#, 0);
        s.on_line(
            br#"{"message":"m","code":"forbidden","id":5,"type":"error"}"#,
            0,
        );
        s.on_line(
            br#"{"after_ms":5,"reason":"draining","type":"reconnect"}"#,
            0,
        );
        assert_eq!((s.delivered, s.latencies[0].1, s.acks), (1, 200, 1));
        assert_eq!(s.errors.get("forbidden"), Some(&1));
        assert!(s.refused.is_empty(), "no command 5 was sent");
        assert!(s.reconnect_asked);
    }

    #[test]
    fn poll_tallies_keep_the_latest_and_garbage_is_counted() {
        use danmaku_protocol::data::{PollDoc, PollSpec};
        use danmaku_protocol::{EventFrame, EventKind, RoomId};

        let mut s = Seen {
            track: Track::start(0),
            ..Seen::default()
        };
        let spec = PollSpec {
            question: "q".into(),
            options: vec!["a".into(), "b".into()],
        };
        let room = RoomId::new("r").expect("room");
        let poll = |seq: u64, a: u64| {
            let votes = [a, 1];
            let doc = PollDoc {
                poll: "p",
                open: true,
                spec: &spec,
                votes: &votes,
                ends_at: 9,
            };
            EventFrame::encode(
                &room,
                "e",
                seq,
                &EventKind::poll(),
                danmaku_protocol::Priority::High,
                0,
                &doc.encode(),
            )
            .bytes
        };
        s.on_line(&poll(2, 5), 0);
        s.on_line(&poll(1, 3), 0);
        assert_eq!(s.last_poll, Some((2, vec![5, 1])));
        s.on_line(b"not json", 0);
        s.on_line(b"", 0);
        assert_eq!(s.errors.get(UNDECODABLE), Some(&1));
    }

    #[test]
    fn skipped_markers_cover_seqs_that_are_not_lost() {
        let mut s = Seen {
            track: Track::start(0),
            ..Seen::default()
        };
        let event = |seq: u64| format!(r#"{{"type":"event","seq":{seq},"kind":"x","data":{{}}}}"#);
        let skipped = |from: u64, to: u64| {
            format!(
                r#"{{"type":"skipped","room":"r","from":{from},"to":{to},"count":{},"reason":"sampled"}}"#,
                to - from + 1
            )
        };
        for line in [event(1), skipped(2, 4), event(5), skipped(4, 4), event(5)] {
            s.on_line(line.as_bytes(), 0);
        }
        let t = &s.track;
        assert_eq!((t.distinct, t.skipped, t.duplicated, t.next), (2, 3, 2, 6));
    }

    #[test]
    fn a_share_is_spread_evenly() {
        let picked: Vec<usize> = (0..20).filter(|&i| crate::cli::in_share(i, 0.1)).collect();
        assert_eq!(picked, vec![9, 19]);
        assert_eq!(
            (0..100).filter(|&i| crate::cli::in_share(i, 0.25)).count(),
            25
        );
        assert!((0..10).all(|i| crate::cli::in_share(i, 1.0)));
        assert!(!(0..10).any(|i| crate::cli::in_share(i, 0.0)));
    }
}
