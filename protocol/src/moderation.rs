//! Moderation: what a room's hosts, moderators and backends may do to a user or an
//! event — mute, unmute, ban, unban, retract — each timed or for good.
//!
//! The WebSocket command (`{"type":"moderate",…}`) and the HTTP body
//! (`POST /v1/rooms/{room}/moderation`) carry the same fields, checked by
//! [`Moderation::new`].

use serde::Serialize;

/// Longest timed mute or ban: 30 days.
pub const MAX_DURATION_S: u64 = 30 * 86_400;
/// Longest user id an action may name, in bytes.
pub const MAX_USER: usize = 128;

/// What a moderation action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModAction {
    /// The user's comments, likes and votes in the room are refused with `muted`.
    Mute,
    /// Lifts a mute.
    Unmute,
    /// The user's connections leave the room (`kicked`) and its joins are refused.
    Ban,
    /// Lifts a ban.
    Unban,
    /// Takes an event back: a `retract` event, and the event leaves snapshots and
    /// replays.
    Retract,
}

impl ModAction {
    const ALL: [(&'static str, Self); 5] = [
        ("mute", Self::Mute),
        ("unmute", Self::Unmute),
        ("ban", Self::Ban),
        ("unban", Self::Unban),
        ("retract", Self::Retract),
    ];

    /// Reads an action's wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, a)| *a)
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, a)| *a == self)
            .map_or("", |(n, _)| n)
    }
}

/// One moderation action, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Moderation {
    /// What it does.
    pub action: ModAction,
    /// The user it is about (every action but `retract`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The event it takes back (`retract`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// How long a mute or ban lasts; for good without.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<u64>,
}

impl Moderation {
    /// Checks an action's fields: `user` for all but `retract`, `seq` for `retract`,
    /// `duration_s` (1..=30 days) only for `mute` and `ban`.
    ///
    /// # Errors
    /// What is missing or wrong, for the `bad_request` reply.
    pub fn new(
        action: &str,
        user: Option<&str>,
        seq: Option<u64>,
        duration_s: Option<u64>,
    ) -> Result<Self, String> {
        let action = ModAction::parse(action)
            .ok_or_else(|| "`action` must be mute, unmute, ban, unban or retract".to_owned())?;
        let user = match (action, user) {
            (ModAction::Retract, Some(_)) => {
                return Err("`retract` names a `seq`, not a `user`".into());
            }
            (ModAction::Retract, None) => None,
            (_, None) => {
                return Err(format!(
                    "`{}` needs the `user` it is about",
                    action.as_str()
                ));
            }
            (_, Some(u))
                if (1..=MAX_USER).contains(&u.len()) && !u.chars().any(char::is_control) =>
            {
                Some(u.to_owned())
            }
            (_, Some(_)) => {
                return Err("`user` must be 1..=128 bytes without control characters".into());
            }
        };
        let seq = match (action, seq) {
            (ModAction::Retract, Some(s)) if s > 0 => Some(s),
            (ModAction::Retract, _) => {
                return Err("`retract` needs the `seq` (≥ 1) of the event".into());
            }
            (_, Some(_)) => return Err(format!("`{}` takes no `seq`", action.as_str())),
            (_, None) => None,
        };
        let duration_s = match (action, duration_s) {
            (ModAction::Mute | ModAction::Ban, Some(d)) if (1..=MAX_DURATION_S).contains(&d) => {
                Some(d)
            }
            (ModAction::Mute | ModAction::Ban, Some(_)) => {
                return Err(format!("`duration_s` must be 1..={MAX_DURATION_S}"));
            }
            (_, Some(_)) => return Err(format!("`{}` takes no `duration_s`", action.as_str())),
            (_, None) => None,
        };
        Ok(Self {
            action,
            user,
            seq,
            duration_s,
        })
    }

    /// When a mute or ban made at `now` (ms) ends, Unix ms; `None` for good.
    pub fn until(&self, now: u64) -> Option<u64> {
        self.duration_s
            .map(|d| now.saturating_add(d.saturating_mul(1_000)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_take_exactly_their_fields() {
        let m =
            Moderation::new("mute", Some("u-7"), None, Some(60)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((m.action, m.until(1_000)), (ModAction::Mute, Some(61_000)));
        let b = Moderation::new("ban", Some("u-7"), None, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.until(1_000), None, "for good");
        let r = Moderation::new("retract", None, Some(42), None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.seq, Some(42));
        for (action, user, seq, d, why) in [
            ("shout", Some("u"), None, None, "`action`"),
            ("mute", None, None, None, "needs the `user`"),
            ("mute", Some(""), None, None, "1..=128"),
            ("mute", Some("a\u{1}"), None, None, "control"),
            ("mute", Some("u"), None, Some(0), "duration_s"),
            (
                "ban",
                Some("u"),
                None,
                Some(MAX_DURATION_S + 1),
                "duration_s",
            ),
            ("unmute", Some("u"), None, Some(5), "takes no `duration_s`"),
            ("unban", Some("u"), Some(3), None, "takes no `seq`"),
            ("retract", Some("u"), Some(3), None, "not a `user`"),
            ("retract", None, None, None, "needs the `seq`"),
            ("retract", None, Some(0), None, "needs the `seq`"),
        ] {
            let Err(e) = Moderation::new(action, user, seq, d) else {
                panic!("{action} {user:?} {seq:?} {d:?} was taken");
            };
            assert!(e.contains(why), "{action}: {e}");
        }
        assert_eq!(
            serde_json::to_string(&m).unwrap_or_default(),
            r#"{"action":"mute","user":"u-7","duration_s":60}"#
        );
    }
}
