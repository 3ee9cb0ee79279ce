//! Moderation shared by the stores: what an action is recorded as, and how it reaches
//! the user's connections on this gateway.

use danmaku_protocol::RoomId;
use danmaku_protocol::audience::Audience;
use danmaku_protocol::moderation::{ModAction, Moderation};

use crate::Hub;
use crate::mailbox::Control;

/// What an action is recorded as, in the audit list and in the `moderation` event the
/// room's staff get: `{"action","by","at","user"?,"seq"?,"until"?}` (`until` absent for
/// good, and for the actions that lift).
pub fn doc(m: &Moderation, by: &str, now: u64) -> String {
    let mut doc = serde_json::json!({"action": m.action.as_str(), "by": by, "at": now});
    if let Some(u) = &m.user {
        doc["user"] = u.as_str().into();
    }
    if let Some(s) = m.seq {
        doc["seq"] = s.into();
    }
    if let Some(t) = m.until(now) {
        doc["until"] = t.into();
    }
    doc.to_string()
}

/// The audience of the room's staff (hosts and moderators): the `moderation` events'.
pub(crate) fn staff() -> Audience {
    Audience::Tags(vec![danmaku_protocol::audience::STAFF.to_owned()])
}

/// Tells the connections of the action's user in `room` on this gateway: a ban takes
/// them out of the room, a mute or unmute changes what their likes get.
pub(crate) fn tell_connections(hub: &Hub, room: &RoomId, m: &Moderation, now: u64) {
    let Some(user) = m.user.as_deref() else {
        return;
    };
    let control = match m.action {
        ModAction::Ban => Control::Kick,
        ModAction::Mute => Control::Mute(m.until(now).unwrap_or(u64::MAX)),
        ModAction::Unmute => Control::Unmute,
        ModAction::Unban | ModAction::Retract => return,
    };
    hub.control(room, user, control);
}

/// Acts on a `moderation` event's data (a [`doc`]) passed on by a store's subscriber:
/// the action was made on another gateway.
pub(crate) fn on_event(hub: &Hub, room: &RoomId, data: &str) {
    #[derive(serde::Deserialize)]
    struct Doc {
        action: String,
        user: Option<String>,
        until: Option<u64>,
    }
    let Ok(d) = serde_json::from_str::<Doc>(data) else {
        return;
    };
    let Some(user) = d.user else {
        return;
    };
    let control = match d.action.as_str() {
        "ban" => Control::Kick,
        "mute" => Control::Mute(d.until.unwrap_or(u64::MAX)),
        "unmute" => Control::Unmute,
        _ => return,
    };
    hub.control(room, &user, control);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_doc_names_what_was_done_and_until_when() {
        let m =
            Moderation::new("mute", Some("u-7"), None, Some(60)).unwrap_or_else(|e| panic!("{e}"));
        let d: serde_json::Value =
            serde_json::from_str(&doc(&m, "mod-1", 1_000)).unwrap_or_default();
        assert_eq!(
            d,
            serde_json::json!({"action": "mute", "user": "u-7", "by": "mod-1", "at": 1_000, "until": 61_000})
        );
    }
}
