//! Targeting inside a room: who an event is for, and how a targeted event travels.
//!
//! A targeted event is sequenced in its room like any other, so it is in the room's one
//! order; only the viewers of its [`Audience`] receive it, the others get a `skipped`
//! marker with reason `targeted` for its seq. Inside the system (history, the Redis
//! record, the hub) a targeted event is its frame behind a *tag*:
//!
//! ```text
//! \x01 <u|t|a> \x1f item \x1f item \x1f \x02 {"type":"event",…}
//! ```
//!
//! (`u` users, `t` any of the tags, `a` all of the tags). The tag never reaches a
//! client: [`Targeted::split`] takes it off, and a JSON text never begins with `\x01`,
//! so an untargeted frame is recognised by its first byte. Items cannot hold the
//! control bytes, so a viewer matches by looking for `\x1f<id>\x1f`: no parsing and
//! no allocation per viewer.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

/// The tag every `host` connection carries, and no other: the audience of what only
/// the room's hosts receive (co-host requests). It is not a valid tag, so no token
/// claims it and no backend audience names it.
pub const HOSTS: &str = "@host";

/// The tag every `host` and `moderator` connection carries, and no other: the audience
/// of the room's moderation log as it happens. Like [`HOSTS`], no token or backend can
/// name it.
pub const STAFF: &str = "@staff";

/// The tag of a viewer in `variant` of its room's experiment (the room's alone): an
/// audience `{"variants":[…]}` is any of these. Not a valid tag either.
pub fn variant_tag(variant: &str) -> String {
    format!("@variant:{variant}")
}

/// Most user ids in one audience.
pub const MAX_USERS: usize = 1_000;
/// Most tags in one audience, and on one viewer.
pub const MAX_TAGS: usize = 32;
/// Longest user id an audience may name, in bytes.
pub const MAX_USER_ID: usize = 128;

const START: u8 = 0x01;
const SEP: u8 = 0x1f;
const END: u8 = 0x02;

/// Who a targeted event is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// These users (any of their connections).
    Users(Vec<String>),
    /// Viewers with any of these tags.
    Tags(Vec<String>),
    /// Viewers with all of these tags.
    TagsAll(Vec<String>),
}

/// Why an audience was refused; the text is for the backend developer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audience: {0}")]
pub struct AudienceError(String);

/// Whether `tag` is a valid tag: `[a-z0-9_.:-]{1,32}`.
pub fn valid_tag(tag: &str) -> bool {
    (1..=32).contains(&tag.len())
        && tag
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.:-".contains(&b))
}

fn valid_user(user: &str) -> bool {
    (1..=MAX_USER_ID).contains(&user.len()) && !user.chars().any(char::is_control)
}

impl Audience {
    /// Reads an `audience` object: exactly one of `users`, `tags`, `tags_all`, a
    /// non-empty array of valid ids.
    ///
    /// # Errors
    /// [`AudienceError`] saying what is wrong.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, AudienceError> {
        let bad = |m: &str| AudienceError(m.to_owned());
        let object = value
            .as_object()
            .ok_or_else(|| bad("must be an object with one of users, tags, tags_all, variants"))?;
        let mut entries = object.iter();
        let (Some((field, list)), None) = (entries.next(), entries.next()) else {
            return Err(bad("give exactly one of users, tags, tags_all, variants"));
        };
        let items = list
            .as_array()
            .ok_or_else(|| AudienceError(format!("{field} must be an array of strings")))?;
        let (max, valid, what): (usize, fn(&str) -> bool, &str) = match field.as_str() {
            "variants" => (
                crate::settings::MAX_VARIANTS,
                crate::settings::valid_variant,
                "variant names of [A-Za-z0-9_.:-]{1,32}",
            ),
            "users" => (
                MAX_USERS,
                valid_user,
                "user ids of 1..=128 bytes without control characters",
            ),
            "tags" | "tags_all" => (MAX_TAGS, valid_tag, "tags matching [a-z0-9_.:-]{1,32}"),
            other => {
                return Err(AudienceError(format!(
                    "unknown field `{other}`: give one of users, tags, tags_all, variants"
                )));
            }
        };
        if items.is_empty() || items.len() > max {
            return Err(AudienceError(format!("{field} must hold 1..={max} {what}")));
        }
        let mut ids = Vec::with_capacity(items.len());
        for item in items {
            match item.as_str() {
                Some(s) if valid(s) => ids.push(s.to_owned()),
                _ => return Err(AudienceError(format!("{field} must hold {what}"))),
            }
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(match field.as_str() {
            "users" => Self::Users(ids),
            "variants" => Self::Tags(ids.iter().map(|v| variant_tag(v)).collect()),
            "tags" => Self::Tags(ids),
            _ => Self::TagsAll(ids),
        })
    }

    /// The tag put in front of the event's frame.
    pub fn tag(&self) -> Vec<u8> {
        let (kind, items) = match self {
            Self::Users(u) => (b'u', u),
            Self::Tags(t) => (b't', t),
            Self::TagsAll(t) => (b'a', t),
        };
        let len = 4 + items.iter().map(|i| i.len() + 1).sum::<usize>();
        let mut tag = Vec::with_capacity(len);
        tag.extend_from_slice(&[START, kind, SEP]);
        for item in items {
            tag.extend_from_slice(item.as_bytes());
            tag.push(SEP);
        }
        tag.push(END);
        tag
    }

    /// Whether `viewer` is in the audience (as [`Targeted::includes`] decides for a
    /// frame behind this audience's tag).
    pub fn includes(&self, viewer: &Viewer) -> bool {
        match self {
            Self::Users(users) => users.binary_search_by(|u| (**u).cmp(viewer.user())).is_ok(),
            Self::Tags(tags) => viewer
                .tags()
                .any(|t| tags.binary_search_by(|x| (**x).cmp(t)).is_ok()),
            Self::TagsAll(tags) => tags.iter().all(|want| viewer.tags().any(|t| t == want)),
        }
    }

    /// `frame` behind this audience's tag.
    pub fn wrap(&self, frame: &[u8]) -> Bytes {
        let tag = self.tag();
        let mut out = BytesMut::with_capacity(tag.len() + frame.len());
        out.put_slice(&tag);
        out.put_slice(frame);
        out.freeze()
    }
}

/// What targeting knows of a viewer: its user id and its tags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Viewer {
    user: Arc<str>,
    tags: Box<[Box<str>]>,
}

impl Viewer {
    /// A viewer with `user` id and `tags` (assumed valid: tags come from a checked token).
    pub fn new(user: Arc<str>, tags: Vec<String>) -> Self {
        Self {
            user,
            tags: tags.into_iter().map(String::into_boxed_str).collect(),
        }
    }

    /// The viewer's user id.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The viewer's tags.
    pub fn tags(&self) -> impl Iterator<Item = &str> {
        self.tags.iter().map(|t| &**t)
    }
}

/// A targeted frame taken apart: who it is for, and the event as clients see it.
#[derive(Debug, Clone)]
pub struct Targeted {
    kind: u8,
    /// `\x1f item \x1f … item \x1f`.
    items: Bytes,
    /// The event frame, without the tag.
    pub event: Bytes,
}

/// `frame` (an event, targeted or not) as a retracted one: behind a tag no viewer is
/// in, so everyone is told its seq was skipped, with reason `retracted`.
pub fn retracted(frame: &Bytes) -> Bytes {
    let event = untagged(frame);
    let mut out = BytesMut::with_capacity(4 + event.len());
    out.put_slice(&[START, b'r', SEP, END]);
    out.put_slice(&event);
    out.freeze()
}

/// Whether `frame` is a targeted event (has an audience tag).
pub fn is_targeted(frame: &[u8]) -> bool {
    frame.first() == Some(&START)
}

/// The event of `frame` as clients see it: without its audience tag, if any.
pub fn untagged(frame: &Bytes) -> Bytes {
    Targeted::split(frame).map_or_else(|| frame.clone(), |t| t.event)
}

/// Splits a stored body into its audience tag (empty when untargeted) and the rest.
pub fn split_tag(body: &str) -> (&str, &str) {
    if !is_targeted(body.as_bytes()) {
        return ("", body);
    }
    match body.bytes().position(|b| b == END) {
        Some(end) => body.split_at(end + 1),
        None => ("", body),
    }
}

impl Targeted {
    /// Takes a targeted frame apart; `None` for an untargeted one (or a tag that is
    /// not well-formed, which no store writes).
    pub fn split(frame: &Bytes) -> Option<Self> {
        if !is_targeted(frame) {
            return None;
        }
        let end = frame.iter().position(|&b| b == END)?;
        let (kind, items) = (*frame.get(1)?, frame.slice(2..end));
        if !matches!(kind, b'u' | b't' | b'a' | b'r') || items.first() != Some(&SEP) {
            return None;
        }
        Some(Self {
            kind,
            items,
            event: frame.slice(end + 1..),
        })
    }

    fn has(&self, id: &str) -> bool {
        let id = id.as_bytes();
        // `\x1f id \x1f` anywhere in the items.
        self.items
            .windows(id.len() + 2)
            .any(|w| w[0] == SEP && w[w.len() - 1] == SEP && &w[1..w.len() - 1] == id)
    }

    /// Whether the event was retracted ([`retracted`]): in nobody's audience.
    pub fn is_retracted(&self) -> bool {
        self.kind == b'r'
    }

    /// What a viewer outside the audience is told its seq was skipped for.
    pub fn skip_reason(&self) -> crate::server::SkipReason {
        if self.is_retracted() {
            crate::server::SkipReason::Retracted
        } else {
            crate::server::SkipReason::Targeted
        }
    }

    /// Whether `viewer` is in the audience.
    pub fn includes(&self, viewer: &Viewer) -> bool {
        match self.kind {
            b'r' => false,
            b'u' => self.has(&viewer.user),
            b't' => viewer.tags().any(|t| self.has(t)),
            _ => self
                .items
                .split(|&b| b == SEP)
                .filter(|i| !i.is_empty())
                .all(|want| viewer.tags().any(|t| t.as_bytes() == want)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn viewer(user: &str, tags: &[&str]) -> Viewer {
        Viewer::new(
            Arc::from(user),
            tags.iter().map(|t| (*t).to_owned()).collect(),
        )
    }

    fn targeted(audience: serde_json::Value) -> Targeted {
        let a = Audience::from_json(&audience).unwrap_or_else(|e| panic!("{e}"));
        Targeted::split(&a.wrap(br#"{"type":"event"}"#)).unwrap_or_else(|| panic!("split"))
    }

    #[test]
    fn users_tags_and_all_tags_match_as_named() {
        let users = targeted(json!({"users": ["u-1", "u-10"]}));
        assert_eq!(&users.event[..], br#"{"type":"event"}"#);
        assert!(users.includes(&viewer("u-1", &[])));
        assert!(users.includes(&viewer("u-10", &[])));
        assert!(
            !users.includes(&viewer("u-", &[])),
            "a prefix is not a match"
        );
        assert!(!users.includes(&viewer("u-100", &[])));
        let any = targeted(json!({"tags": ["new", "vip"]}));
        assert!(any.includes(&viewer("x", &["old", "vip"])));
        assert!(!any.includes(&viewer("x", &["old", "vi"])));
        assert!(!any.includes(&viewer("new", &[])), "tags are not user ids");
        let all = targeted(json!({"tags_all": ["new", "vip"]}));
        assert!(all.includes(&viewer("x", &["vip", "a", "new"])));
        assert!(!all.includes(&viewer("x", &["vip"])));
    }

    #[test]
    fn bad_audiences_are_refused_with_a_reason() {
        for bad in [
            json!([]),
            json!({}),
            json!({"users": []}),
            json!({"users": ["a"], "tags": ["b"]}),
            json!({"groups": ["a"]}),
            json!({"tags": ["VIP"]}),
            json!({"tags": "vip"}),
            json!({"users": ["a\u{1f}b"]}),
            json!({"users": [7]}),
            json!({"tags": vec!["t"; 33].iter().enumerate().map(|(i, _)| format!("t{i}")).collect::<Vec<_>>()}),
        ] {
            assert!(Audience::from_json(&bad).is_err(), "{bad} was accepted");
        }
        let many: Vec<String> = (0..=MAX_USERS).map(|i| format!("u{i}")).collect();
        assert!(Audience::from_json(&json!({ "users": many })).is_err());
    }

    #[test]
    fn untargeted_frames_pass_unchanged() {
        let frame = Bytes::from_static(br#"{"type":"event","seq":1}"#);
        assert!(Targeted::split(&frame).is_none());
        assert_eq!(untagged(&frame).as_ptr(), frame.as_ptr());
    }

    #[test]
    fn a_retracted_event_is_in_no_audience() {
        let frame = Bytes::from_static(br#"{"type":"event","seq":4}"#);
        for f in [
            frame.clone(),
            Audience::Users(vec!["u".into()]).wrap(&frame),
        ] {
            let t = Targeted::split(&retracted(&f)).unwrap_or_else(|| panic!("split"));
            assert!(t.is_retracted() && !t.includes(&viewer("u", &["vip"])));
            assert_eq!(t.event, frame, "the audience is gone with it");
            assert_eq!(t.skip_reason(), crate::server::SkipReason::Retracted);
        }
    }

    proptest! {
        #[test]
        fn a_user_matches_exactly_when_listed(
            listed in proptest::collection::vec("[a-z0-9-]{1,6}", 1..20),
            probe in "[a-z0-9-]{1,6}",
        ) {
            let a = Audience::from_json(&json!({ "users": listed })).unwrap_or_else(|e| panic!("{e}"));
            let t = Targeted::split(&a.wrap(b"{}")).unwrap_or_else(|| panic!("split"));
            prop_assert_eq!(t.includes(&viewer(&probe, &[])), listed.contains(&probe));
            prop_assert_eq!(&t.event[..], b"{}");
        }

        #[test]
        fn an_audience_and_its_tag_agree_on_every_viewer(
            field in prop_oneof![Just("users"), Just("tags"), Just("tags_all")],
            listed in proptest::collection::vec("[a-c]{1,2}", 1..5),
            user in "[a-c]{1,2}",
            tags in proptest::collection::vec("[a-c]{1,2}", 0..5),
        ) {
            let a = Audience::from_json(&json!({ field: listed })).unwrap_or_else(|e| panic!("{e}"));
            let t = Targeted::split(&a.wrap(b"{}")).unwrap_or_else(|| panic!("split"));
            let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
            let v = viewer(&user, &tags);
            prop_assert_eq!(a.includes(&v), t.includes(&v));
        }
    }
}
