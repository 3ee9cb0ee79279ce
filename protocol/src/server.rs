//! Server → client frames, encoded once into [`Bytes`].
//!
//! Sequenced events ([`EventFrame`]) are encoded when they are sequenced and then only
//! shared: every viewer, the history and the snapshot hold the same bytes. Frames that
//! embed events (`joined`, `reset`, history replies) splice those bytes in verbatim.

use bytes::Bytes;
use serde::{Serialize, Serializer};

use crate::error::ErrorCode;
use crate::ids::{EventKind, RoomId};
use crate::priority::Priority;

/// One sequenced event, encoded once as its complete `{"type":"event",…}` JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFrame {
    /// The event's seq in its room.
    pub seq: u64,
    /// The encoded frame, shared by every receiver.
    pub bytes: Bytes,
}

impl EventFrame {
    /// Encodes an event: the one place an event frame is made, for every store.
    /// `data` must be one valid JSON value (the caller parsed or built it); room, epoch
    /// and kind are validated identifiers and need no escaping. Line breaks between
    /// the value's tokens become spaces, so the frame is one line.
    ///
    /// A `priority` other than normal is stated after `kind`, before `data` (where
    /// [`crate::Priority::of_frame`] looks for it).
    pub fn encode(
        room: &RoomId,
        epoch: &str,
        seq: u64,
        kind: &EventKind,
        priority: Priority,
        ts_ms: u64,
        data: &str,
    ) -> Self {
        let mut out = Vec::with_capacity(116 + room.as_str().len() + epoch.len() + data.len());
        out.extend_from_slice(b"{\"type\":\"event\",\"room\":\"");
        out.extend_from_slice(room.as_str().as_bytes());
        out.extend_from_slice(b"\",\"epoch\":");
        write_json_str(&mut out, epoch);
        out.extend_from_slice(b",\"seq\":");
        push_u64(&mut out, seq);
        out.extend_from_slice(b",\"kind\":\"");
        out.extend_from_slice(kind.as_str().as_bytes());
        if priority != Priority::Normal {
            out.extend_from_slice(b"\",\"priority\":\"");
            out.extend_from_slice(priority.as_str().as_bytes());
        }
        out.extend_from_slice(b"\",\"ts\":");
        push_u64(&mut out, ts_ms);
        out.extend_from_slice(b",\"data\":");
        let start = out.len();
        out.extend_from_slice(data.as_bytes());
        // `\n` separates messages in a frame; in valid JSON a line break can only be
        // whitespace between tokens, so it becomes a space.
        for b in &mut out[start..] {
            if *b == b'\n' || *b == b'\r' {
                *b = b' ';
            }
        }
        out.push(b'}');
        Self {
            seq,
            bytes: Bytes::from(out),
        }
    }
}

impl EventFrame {
    /// The seq of an encoded event frame (read from its head, as [`EventFrame::encode`]
    /// writes it); `None` for anything else.
    pub fn seq_of(frame: &[u8]) -> Option<u64> {
        const FIELD: &[u8] = b",\"seq\":";
        let at = frame.windows(FIELD.len()).position(|w| w == FIELD)? + FIELD.len();
        let digits = frame[at..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        std::str::from_utf8(&frame[at..at + digits])
            .ok()?
            .parse()
            .ok()
    }
}

/// Everything a viewer needs to render a room at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The last sequenced events, oldest first (each an encoded event object).
    pub recent: Vec<Bytes>,
    /// The room's like total.
    pub likes: u64,
    /// Viewers online.
    pub online: u64,
    /// Open polls, each an encoded poll state object.
    pub polls: Vec<Bytes>,
    /// The room's stage (the encoded object of its last `stage` event), when one is
    /// set; the key is left out otherwise.
    pub stage: Option<Bytes>,
    /// Coupons not closed (open or sold out), each the `data` of its last `coupon`
    /// event; the key is left out when there are none.
    pub coupons: Vec<Bytes>,
    /// Keyword games open, each the `data` of its last `keyword` event (left out when
    /// none).
    pub keywords: Vec<Bytes>,
    /// Quizzes open, each the `data` of its last `quiz` event (never the answer).
    pub quizzes: Vec<Bytes>,
    /// Lotteries not drawn yet, each the `data` of its last `lottery` event.
    pub lotteries: Vec<Bytes>,
    /// The co-host seats (the `data` of the last `seats` event), once set.
    pub seats: Option<Bytes>,
    /// The room's settings (the `data` of a `settings` event).
    pub settings: Option<Bytes>,
}

impl Snapshot {
    /// Appends the snapshot's JSON object to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"recent\":");
        write_raw_array(out, &self.recent);
        out.extend_from_slice(b",\"likes\":");
        push_u64(out, self.likes);
        out.extend_from_slice(b",\"online\":");
        push_u64(out, self.online);
        out.extend_from_slice(b",\"polls\":");
        write_raw_array(out, &self.polls);
        for (key, list) in [
            (&b",\"coupons\":"[..], &self.coupons),
            (b",\"keywords\":", &self.keywords),
            (b",\"quizzes\":", &self.quizzes),
            (b",\"lotteries\":", &self.lotteries),
        ] {
            if !list.is_empty() {
                out.extend_from_slice(key);
                write_raw_array(out, list);
            }
        }
        if let Some(stage) = &self.stage {
            out.extend_from_slice(b",\"stage\":");
            out.extend_from_slice(stage);
        }
        if let Some(seats) = &self.seats {
            out.extend_from_slice(b",\"seats\":");
            out.extend_from_slice(seats);
        }
        if let Some(settings) = &self.settings {
            out.extend_from_slice(b",\"settings\":");
            out.extend_from_slice(settings);
        }
        out.push(b'}');
    }
}

/// The reply to `join`.
#[derive(Debug)]
pub struct Joined<'a> {
    /// The join's id.
    pub id: u64,
    /// The room.
    pub room: &'a RoomId,
    /// The room's epoch.
    pub epoch: &'a str,
    /// The room's latest seq at the join; live events follow with greater seqs.
    pub seq: u64,
    /// Whether the `since` resume point was honoured (missed events follow).
    pub recovered: bool,
    /// The room's state.
    pub snapshot: &'a Snapshot,
    /// The joiner's welcome (an encoded `{"text","returning","visits"}`), when the room
    /// has welcome templates.
    pub welcome: Option<&'a str>,
    /// The joiner's variant of the room's experiment, when it has one.
    pub variant: Option<&'a str>,
}

impl Joined<'_> {
    /// Encodes the frame.
    pub fn encode(&self) -> Bytes {
        let mut out =
            Vec::with_capacity(256 + self.snapshot.recent.iter().map(Bytes::len).sum::<usize>());
        out.extend_from_slice(b"{\"type\":\"joined\",\"id\":");
        push_u64(&mut out, self.id);
        out.extend_from_slice(b",\"room\":\"");
        out.extend_from_slice(self.room.as_str().as_bytes());
        out.extend_from_slice(b"\",\"epoch\":");
        write_json_str(&mut out, self.epoch);
        out.extend_from_slice(b",\"seq\":");
        push_u64(&mut out, self.seq);
        out.extend_from_slice(if self.recovered {
            b",\"recovered\":true,\"snapshot\":"
        } else {
            b",\"recovered\":false,\"snapshot\":"
        });
        self.snapshot.write_json(&mut out);
        if let Some(w) = self.welcome {
            out.extend_from_slice(b",\"welcome\":");
            out.extend_from_slice(w.as_bytes());
        }
        if let Some(v) = self.variant {
            out.extend_from_slice(b",\"variant\":");
            write_json_str(&mut out, v);
        }
        out.push(b'}');
        Bytes::from(out)
    }
}

/// Tells a viewer that continuity of a room restarts at `seq` (it fell behind history,
/// or the room's epoch changed).
pub fn encode_reset(room: &RoomId, epoch: &str, seq: u64, snapshot: &Snapshot) -> Bytes {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"type\":\"reset\",\"room\":\"");
    out.extend_from_slice(room.as_str().as_bytes());
    out.extend_from_slice(b"\",\"epoch\":");
    write_json_str(&mut out, epoch);
    out.extend_from_slice(b",\"seq\":");
    push_u64(&mut out, seq);
    out.extend_from_slice(b",\"snapshot\":");
    snapshot.write_json(&mut out);
    out.push(b'}');
    Bytes::from(out)
}

/// The body of `GET /v1/rooms/{room}/history`: `{"epoch":…,"events":[…]}`.
pub fn encode_history(epoch: &str, events: &[Bytes]) -> Bytes {
    encode_listing("epoch", epoch, "events", events)
}

/// `{"<key>":"<value>","<list>":[…items…]}`, the items (encoded JSON) written as they
/// are: an API answer listing stored objects without decoding them.
pub fn encode_listing(key: &str, value: &str, list: &str, items: &[Bytes]) -> Bytes {
    let len = 16 + key.len() + value.len() + list.len();
    let mut out = Vec::with_capacity(len + items.iter().map(|e| e.len() + 1).sum::<usize>());
    out.push(b'{');
    write_json_str(&mut out, key);
    out.push(b':');
    write_json_str(&mut out, value);
    out.push(b',');
    write_json_str(&mut out, list);
    out.push(b':');
    write_raw_array(&mut out, items);
    out.push(b'}');
    Bytes::from(out)
}

/// What an `ack` of a successful `claim` carries.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Claimed<'a> {
    /// The coupon claimed.
    pub coupon: &'a str,
    /// The code to redeem it with (unique per claim).
    pub code: &'a str,
}

/// What an `ack` of a host's `open` carries.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Opened<'a> {
    /// What was opened: `keyword`, `quiz`, `lottery` or `coupon`.
    pub what: &'a str,
    /// Its id.
    pub id: &'a str,
    /// A coupon with an audience: the viewers on this gateway in it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience_online: Option<u64>,
}

/// The small server frames that carry no embedded events.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame<'a> {
    /// First frame on every connection.
    Hello {
        /// This connection's id.
        conn: &'a str,
        /// The gateway's id.
        gateway: &'a str,
        /// Interval of the server's WebSocket pings.
        heartbeat_ms: u64,
        /// Server clock, Unix milliseconds.
        server_time: u64,
    },
    /// A command succeeded.
    Ack {
        /// The command's id.
        id: u64,
        /// The seq the command's event got, when it was sequenced at once.
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        /// A comment merged into the room's next `comment.merged` event (no seq).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        merged: bool,
        /// A successful `claim`: the coupon and the code to redeem it with.
        #[serde(skip_serializing_if = "Option::is_none")]
        claim: Option<Claimed<'a>>,
        /// A host's successful `open`: what it opened.
        #[serde(skip_serializing_if = "Option::is_none")]
        opened: Option<Opened<'a>>,
    },
    /// The reply to `leave`.
    Left {
        /// The command's id.
        id: u64,
        /// The room left.
        room: &'a str,
    },
    /// The reply to `ping`.
    Pong {
        /// The command's id.
        id: u64,
        /// Server clock, Unix milliseconds.
        server_time: u64,
    },
    /// A command failed.
    Error {
        /// The command's id, when it could be read.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// The error code.
        code: ErrorCode,
        /// A human-readable explanation.
        message: &'a str,
        /// When to retry (with `rate_limited`).
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// A room's online count (latest value wins; not sequenced).
    Presence {
        /// The room.
        room: &'a str,
        /// Viewers online.
        online: u64,
    },
    /// The connection was taken out of a room (it is no longer joined; a join is
    /// refused while the reason lasts).
    Kicked {
        /// The room.
        room: &'a str,
        /// Why: `banned`.
        reason: &'a str,
    },
    /// The server is draining: reconnect after `after_ms` and resume with `since`.
    Reconnect {
        /// Why.
        reason: &'a str,
        /// When the server will close the connection.
        after_ms: u64,
    },
    /// Seqs `from..=to` of a room were not delivered to this viewer (and never will
    /// be on this connection); written just before the next event that is.
    Skipped {
        /// The room.
        room: &'a str,
        /// The first seq not delivered.
        from: u64,
        /// The last.
        to: u64,
        /// `to - from + 1`.
        count: u64,
        /// Why.
        reason: SkipReason,
    },
}

/// Why a viewer did not receive events of a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SkipReason {
    /// An adaptive viewer's budget (`max_rate`, or its socket backing up) had no room.
    Sampled,
    /// The events were for another audience.
    Targeted,
    /// The events were taken back by a moderator.
    Retracted,
}

impl SkipReason {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sampled => "sampled",
            Self::Targeted => "targeted",
            Self::Retracted => "retracted",
        }
    }
}

impl ServerFrame<'_> {
    /// Encodes the frame as one JSON object.
    pub fn encode(&self) -> Bytes {
        // INVARIANT: these frames hold only strings, integers and enums, which
        // serde_json always serializes.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

fn write_raw_array(out: &mut Vec<u8>, items: &[Bytes]) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item);
    }
    out.push(b']');
}

fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // INVARIANT: serializing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn push_u64(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parse(b: &[u8]) -> Value {
        serde_json::from_slice(b).expect("valid json")
    }

    #[test]
    fn an_event_is_one_line_whatever_its_data() {
        let room = RoomId::new("r").expect("room");
        let kind = EventKind::new("card").expect("kind");
        let f = EventFrame::encode(
            &room,
            "e",
            1,
            &kind,
            Priority::Normal,
            2,
            "{\n  \"a\": \"x\\ny\"\r\n}",
        );
        assert!(!f.bytes.contains(&b'\n') && !f.bytes.contains(&b'\r'));
        assert_eq!(parse(&f.bytes)["data"]["a"], "x\ny");
    }

    #[test]
    fn an_events_seq_is_read_from_its_head() {
        let room = RoomId::new("r").expect("room");
        for seq in [1, 42, u64::MAX - 1] {
            let f = EventFrame::encode(
                &room,
                "e",
                seq,
                &EventKind::comment(),
                Priority::Low,
                2,
                "{}",
            );
            assert_eq!(EventFrame::seq_of(&f.bytes), Some(seq));
        }
        assert_eq!(EventFrame::seq_of(br#"{"type":"pong"}"#), None);
    }

    #[test]
    fn event_frame_is_valid_json() {
        let room = RoomId::new("shop-42").expect("room");
        let kind = EventKind::new("comment").expect("kind");
        let ev = EventFrame::encode(
            &room,
            "8f3a",
            131,
            &kind,
            Priority::Normal,
            1_764_011_234_890,
            r#"{"user":"u-1","text":"好"}"#,
        );
        assert_eq!(
            parse(&ev.bytes),
            json!({"type":"event","room":"shop-42","epoch":"8f3a","seq":131,"kind":"comment",
                   "ts":1_764_011_234_890u64,"data":{"user":"u-1","text":"好"}})
        );
        assert_eq!(ev.seq, 131);
        for p in [Priority::High, Priority::Low] {
            let ev = EventFrame::encode(&room, "8f3a", 131, &kind, p, 1, "{}");
            assert_eq!(parse(&ev.bytes)["priority"], p.as_str());
            assert_eq!(Priority::of_frame(&ev.bytes), p);
        }
    }

    #[test]
    fn joined_and_reset_embed_snapshot() {
        let room = RoomId::new("r").expect("room");
        let kind = EventKind::new("comment").expect("kind");
        let ev = EventFrame::encode(&room, "e", 1, &kind, Priority::Normal, 5, "{}");
        let snap = Snapshot {
            recent: vec![ev.bytes.clone()],
            likes: 7,
            online: 3,
            polls: vec![Bytes::from_static(br#"{"poll":"p-1"}"#)],
            stage: Some(Bytes::from_static(
                br#"{"product":{"sku":"A-1"},"since":5}"#,
            )),
            coupons: vec![Bytes::from_static(br#"{"coupon":"c-1","state":"open"}"#)],
            quizzes: vec![Bytes::from_static(br#"{"id":"q-1","state":"open"}"#)],
            ..Snapshot::default()
        };
        let j = Joined {
            id: 4,
            room: &room,
            epoch: "e",
            seq: 1,
            recovered: false,
            snapshot: &snap,
            welcome: Some(r#"{"text":"hi","returning":false,"visits":1}"#),
            variant: Some("B"),
        };
        let v = parse(&j.encode());
        assert_eq!(v["type"], "joined");
        assert_eq!(
            (&v["welcome"]["text"], &v["variant"]),
            (&json!("hi"), &json!("B"))
        );
        assert_eq!(v["recovered"], false);
        assert_eq!(v["snapshot"]["recent"][0]["seq"], 1);
        assert_eq!(v["snapshot"]["likes"], 7);
        assert_eq!(v["snapshot"]["polls"][0]["poll"], "p-1");
        assert_eq!(v["snapshot"]["stage"]["product"]["sku"], "A-1");
        assert_eq!(v["snapshot"]["coupons"][0]["coupon"], "c-1");
        assert_eq!(v["snapshot"]["quizzes"][0]["id"], "q-1");
        assert!(v["snapshot"].get("keywords").is_none(), "none: left out");
        let r = parse(&encode_reset(&room, "e2", 9, &Snapshot::default()));
        assert_eq!(
            r,
            json!({"type":"reset","room":"r","epoch":"e2","seq":9,
            "snapshot":{"recent":[],"likes":0,"online":0,"polls":[]}})
        );
    }

    #[test]
    fn small_frames() {
        let e = ServerFrame::Error {
            id: Some(3),
            code: ErrorCode::RateLimited,
            message: "5 comments/s",
            retry_after_ms: Some(400),
        };
        assert_eq!(
            parse(&e.encode()),
            json!({"type":"error","id":3,"code":"rate_limited","message":"5 comments/s","retry_after_ms":400})
        );
        assert_eq!(
            parse(
                &ServerFrame::Ack {
                    id: 3,
                    seq: Some(131),
                    merged: false,
                    claim: None,
                    opened: None,
                }
                .encode()
            ),
            json!({"type":"ack","id":3,"seq":131})
        );
        assert_eq!(
            parse(
                &ServerFrame::Ack {
                    id: 3,
                    seq: None,
                    merged: false,
                    claim: None,
                    opened: None,
                }
                .encode()
            ),
            json!({"type":"ack","id":3})
        );
        assert_eq!(
            parse(
                &ServerFrame::Reconnect {
                    reason: "draining",
                    after_ms: 500
                }
                .encode()
            ),
            json!({"type":"reconnect","reason":"draining","after_ms":500})
        );
        assert_eq!(
            parse(
                &ServerFrame::Presence {
                    room: "r",
                    online: 10
                }
                .encode()
            ),
            json!({"type":"presence","room":"r","online":10})
        );
        assert_eq!(
            &ServerFrame::Skipped {
                room: "shop-42",
                from: 131,
                to: 139,
                count: 9,
                reason: SkipReason::Sampled,
            }
            .encode()[..],
            br#"{"type":"skipped","room":"shop-42","from":131,"to":139,"count":9,"reason":"sampled"}"#
        );
        assert_eq!(
            parse(&encode_history("e", &[])),
            json!({"epoch":"e","events":[]})
        );
    }

    #[test]
    fn integers_format() {
        for n in [0u64, 1, 9, 10, 12345, u64::MAX] {
            let mut v = Vec::new();
            push_u64(&mut v, n);
            assert_eq!(String::from_utf8(v).expect("ascii"), n.to_string());
        }
    }
}
