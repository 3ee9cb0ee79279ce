//! An event as the Redis script stores and publishes it, and its one encoding.
//!
//! The script (`lua/room.lua`) makes no JSON: it stores and publishes a *record*,
//! `<seq>:<epoch>:<ts>:<kind>:<shape>:<body>`, whose free text (event data, a poll's
//! question and options) was made by Rust. A gateway turns the record into the event
//! frame with [`danmaku_protocol::EventFrame::encode`] — once per message on the
//! subscriber, shared by every local viewer — so both stores send the same bytes.
//!
//! Shapes: `d` (body: the data, behind its audience tag when targeted — see
//! [`danmaku_protocol::audience`]; `dh` and `dl` for a high or low priority), `l` (likes,
//! `<total>:<delta>`, low), `p` (a poll's state, high,
//! `<id>:<open 1|0>:<ends_at>:<votes,…>:<spec JSON>`), `g` (merged comments, low,
//! `<count>:<senders, \x1f-separated>\x1e<normalized text>`).

use bytes::Bytes;
use danmaku_protocol::data::{PollDoc, PollSpec, likes_data};
use danmaku_protocol::{EventFrame, EventKind, Priority, RoomId};

use crate::FanoutError;

/// One stored event, borrowed from the bytes it was read from.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    pub(crate) seq: u64,
    pub(crate) epoch: &'a str,
    ts: u64,
    kind: &'a str,
    priority: Priority,
    body: Body<'a>,
}

/// The shape of a data record of `priority`.
pub(crate) fn data_shape(priority: Priority) -> &'static str {
    match priority {
        Priority::High => "dh",
        Priority::Normal => "d",
        Priority::Low => "dl",
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Body<'a> {
    Data(&'a str),
    Likes {
        total: u64,
        delta: u64,
    },
    Poll(PollState<'a>),
    /// `count` merged copies of `text`, by `users` (`\x1f`-separated).
    Merged {
        count: u64,
        users: &'a str,
        text: &'a str,
    },
}

/// A poll as the script reports it (a record body of shape `p`, or an open poll).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PollState<'a> {
    id: &'a str,
    open: bool,
    ends_at: u64,
    votes: Vec<u64>,
    spec: &'a str,
}

const BAD: FanoutError = FanoutError::BadReply("malformed event record");

impl<'a> Record<'a> {
    /// When the event was sequenced (Unix ms, the sequencing gateway's clock).
    pub(crate) fn ts(&self) -> u64 {
        self.ts
    }

    /// Whether the event is of a kind with a timed end (polls, coupons, keyword games,
    /// quizzes, lotteries): a gateway that passes one on sweeps its room.
    pub(crate) fn is_timed(&self) -> bool {
        matches!(
            self.kind,
            "poll" | "coupon" | "keyword" | "quiz" | "lottery"
        )
    }

    /// The data of a `moderation` event (without its audience tag); `None` for any
    /// other kind.
    pub(crate) fn moderation(&self) -> Option<&'a str> {
        match (self.kind, &self.body) {
            ("moderation", Body::Data(d)) => Some(danmaku_protocol::audience::split_tag(d).1),
            _ => None,
        }
    }

    /// Reads a record.
    ///
    /// # Errors
    /// [`FanoutError::BadReply`] when the bytes are not a record.
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self, FanoutError> {
        let text = std::str::from_utf8(bytes).map_err(|_| BAD)?;
        let mut fields = text.splitn(6, ':');
        let mut next = || fields.next().ok_or(BAD);
        let seq = next()?.parse().map_err(|_| BAD)?;
        let epoch = next()?;
        let ts = next()?.parse().map_err(|_| BAD)?;
        let kind = next()?;
        let shape = next()?;
        let body = next()?;
        let (priority, body) = match shape {
            "d" => (Priority::Normal, Body::Data(body)),
            "dh" => (Priority::High, Body::Data(body)),
            "dl" => (Priority::Low, Body::Data(body)),
            "l" => {
                let (total, delta) = body.split_once(':').ok_or(BAD)?;
                let likes = Body::Likes {
                    total: total.parse().map_err(|_| BAD)?,
                    delta: delta.parse().map_err(|_| BAD)?,
                };
                (Priority::Low, likes)
            }
            "p" => (Priority::High, Body::Poll(PollState::parse(body)?)),
            "g" => {
                let (count, rest) = body.split_once(':').ok_or(BAD)?;
                let (users, text) = rest.split_once('\x1e').ok_or(BAD)?;
                let merged = Body::Merged {
                    count: count.parse().map_err(|_| BAD)?,
                    users,
                    text,
                };
                (Priority::Low, merged)
            }
            _ => return Err(BAD),
        };
        Ok(Self {
            seq,
            epoch,
            ts,
            kind,
            priority,
            body,
        })
    }

    /// The event frame viewers receive.
    ///
    /// # Errors
    /// [`FanoutError::BadReply`] when the record's kind or poll spec is invalid.
    pub(crate) fn encode(&self, room: &RoomId) -> Result<Bytes, FanoutError> {
        let kind = EventKind::new(self.kind).map_err(|_| BAD)?;
        let owned;
        let mut tag = "";
        let data = match &self.body {
            Body::Data(d) => {
                let (t, data) = danmaku_protocol::audience::split_tag(d);
                tag = t;
                data
            }
            Body::Likes { total, delta } => {
                owned = likes_data(*total, *delta);
                &owned
            }
            Body::Poll(p) => {
                owned = p.encode()?;
                &owned
            }
            Body::Merged { count, users, text } => {
                let users = users.split('\x1f').filter(|u| !u.is_empty());
                owned = danmaku_protocol::data::merged_data(text, *count, users);
                &owned
            }
        };
        let frame = EventFrame::encode(
            room,
            self.epoch,
            self.seq,
            &kind,
            self.priority,
            self.ts,
            data,
        );
        if tag.is_empty() {
            return Ok(frame.bytes);
        }
        let mut targeted = Vec::with_capacity(tag.len() + frame.bytes.len());
        targeted.extend_from_slice(tag.as_bytes());
        targeted.extend_from_slice(&frame.bytes);
        Ok(Bytes::from(targeted))
    }
}

impl<'a> PollState<'a> {
    /// Reads `<id>:<open 1|0>:<ends_at>:<votes,…>:<spec JSON>`.
    ///
    /// # Errors
    /// [`FanoutError::BadReply`] when the text is not a poll state.
    pub(crate) fn parse(text: &'a str) -> Result<Self, FanoutError> {
        let mut f = text.splitn(5, ':');
        let mut next = || f.next().ok_or(BAD);
        let id = next()?;
        let open = next()? == "1";
        let ends_at = next()?.parse().map_err(|_| BAD)?;
        let votes = next()?;
        let votes = if votes.is_empty() {
            Vec::new()
        } else {
            votes
                .split(',')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .map_err(|_| BAD)?
        };
        Ok(Self {
            id,
            open,
            ends_at,
            votes,
            spec: next()?,
        })
    }

    /// The poll document (`data` of a `poll` event, entry of a snapshot's `polls`).
    ///
    /// # Errors
    /// [`FanoutError::BadReply`] when the stored spec is not a poll spec.
    pub(crate) fn encode(&self) -> Result<String, FanoutError> {
        let spec: PollSpec = serde_json::from_str(self.spec).map_err(|_| BAD)?;
        Ok(PollDoc {
            poll: self.id,
            open: self.open,
            spec: &spec,
            votes: &self.votes,
            ends_at: self.ends_at,
        }
        .encode())
    }
}

/// A record as the test suites write one behind the store's back.
#[cfg(any(test, feature = "test-util"))]
pub fn data_record(seq: u64, epoch: &str, ts: u64, kind: &str, data: &str) -> String {
    format!("{seq}:{epoch}:{ts}:{kind}:d:{data}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> RoomId {
        RoomId::new("shop-42").expect("room")
    }

    #[test]
    fn merged_and_targeted_records_encode_as_the_memory_store_would() {
        let record = "9:e1:5:comment.merged:g:3:u-1\x1fu:2\x1e6:6 6";
        let r = Record::parse(record.as_bytes()).expect("record");
        let data = danmaku_protocol::data::merged_data("6:6 6", 3, ["u-1", "u:2"]);
        let kind = EventKind::comment_merged();
        let want = EventFrame::encode(&room(), "e1", 9, &kind, Priority::Low, 5, &data);
        assert_eq!(r.encode(&room()).expect("encode"), want.bytes);

        let audience = danmaku_protocol::audience::Audience::Users(vec!["u-1".into()]);
        let tag = String::from_utf8(audience.tag()).expect("ascii");
        let record = format!("4:e1:5:card:dh:{tag}{{\"a\":1}}");
        let r = Record::parse(record.as_bytes()).expect("record");
        let card = EventKind::new("card").expect("kind");
        let frame = EventFrame::encode(&room(), "e1", 4, &card, Priority::High, 5, "{\"a\":1}");
        assert_eq!(
            r.encode(&room()).expect("encode"),
            audience.wrap(&frame.bytes)
        );
    }

    #[test]
    fn a_data_record_encodes_as_the_memory_store_would() {
        let data = r#"{"user":"u-1","text":"a:b:c"}"#;
        let record = data_record(7, "e1", 123, "comment", data);
        let r = Record::parse(record.as_bytes()).expect("record");
        assert_eq!((r.seq, r.epoch), (7, "e1"));
        let want = EventFrame::encode(
            &room(),
            "e1",
            7,
            &EventKind::comment(),
            Priority::Normal,
            123,
            data,
        );
        assert_eq!(r.encode(&room()).expect("encode"), want.bytes);
        for p in [Priority::High, Priority::Low] {
            let record = format!("7:e1:123:card:{}:{{}}", data_shape(p));
            let r = Record::parse(record.as_bytes()).expect("record");
            let card = EventKind::new("card").expect("kind");
            let want = EventFrame::encode(&room(), "e1", 7, &card, p, 123, "{}");
            assert_eq!(r.encode(&room()).expect("encode"), want.bytes);
        }
    }

    #[test]
    fn likes_and_polls_use_the_protocol_payloads() {
        let r = Record::parse(b"3:e:9:likes:l:12:5").expect("likes");
        let want = EventFrame::encode(
            &room(),
            "e",
            3,
            &EventKind::likes(),
            Priority::Low,
            9,
            &likes_data(12, 5),
        );
        assert_eq!(r.encode(&room()).expect("encode"), want.bytes);

        let spec = PollSpec {
            question: "Which: this?".into(),
            options: vec!["a".into(), "b".into()],
        };
        let record = format!("4:e:9:poll:p:p-1:1:500:2,0:{}", spec.to_json());
        let r = Record::parse(record.as_bytes()).expect("poll");
        let doc = PollDoc {
            poll: "p-1",
            open: true,
            spec: &spec,
            votes: &[2, 0],
            ends_at: 500,
        };
        let want = EventFrame::encode(
            &room(),
            "e",
            4,
            &EventKind::poll(),
            Priority::High,
            9,
            &doc.encode(),
        );
        assert_eq!(r.encode(&room()).expect("encode"), want.bytes);
    }

    #[test]
    fn what_is_not_a_record_is_refused() {
        for bad in [
            &b""[..],
            b"x:e:1:comment:d:{}",
            b"1:e:1:comment:z:{}",
            b"1:e:1:comment",
            b"1:e:1:likes:l:12",
            b"1:e:1:poll:p:p-1:1:5:x:{}",
            b"\xff",
        ] {
            assert_eq!(Record::parse(bad), Err(BAD), "{bad:?}");
        }
        let bad_kind = Record::parse(b"1:e:1:Bad Kind:d:{}").expect("parses");
        assert_eq!(bad_kind.encode(&room()), Err(BAD));
    }

    proptest::proptest! {
        // The mirror of a fuzz target: whatever Redis hands back, reading it never
        // panics, and a record that reads encodes or is refused.
        #[test]
        fn any_bytes_are_read_or_refused(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            if let Ok(r) = Record::parse(&bytes) {
                let _ = r.encode(&room());
            }
        }

        #[test]
        fn records_of_any_shape_are_read_or_refused(
            seq in 0u64..u64::MAX,
            epoch in "[0-9a-f]{0,20}",
            shape in "[dlpx]",
            body in "[ -~]{0,64}",
        ) {
            let text = format!("{seq}:{epoch}:5:comment:{shape}:{body}");
            if let Ok(r) = Record::parse(text.as_bytes()) {
                proptest::prop_assert_eq!(r.seq, seq);
                let _ = r.encode(&room());
            }
        }

        #[test]
        fn data_records_round_trip(seq in 1u64..u64::MAX, ts in 0u64..u64::MAX, text in "[^\\p{C}]{0,40}") {
            let data = serde_json::json!({"text": text}).to_string();
            let record = data_record(seq, "e1", ts, "comment", &data);
            let frame = Record::parse(record.as_bytes()).expect("reads").encode(&room()).expect("encodes");
            let v: serde_json::Value = serde_json::from_slice(&frame).expect("json");
            proptest::prop_assert_eq!(v["seq"].as_u64(), Some(seq));
            proptest::prop_assert_eq!(v["ts"].as_u64(), Some(ts));
            proptest::prop_assert_eq!(v["data"]["text"].as_str(), Some(text.as_str()));
        }
    }
}
