//! A memory-store room's joins: its seen record and its pending entrances.
//!
//! # Backpressure
//! The seen record holds at most [`MAX_SEEN`] users: beyond, users last seen beyond the
//! 30-day horizon are forgotten; if none is, a new user is welcomed as new and not
//! recorded. Pending entrances keep a count, at most [`ENTRANCE_NAMES`] names and
//! [`ENTRANCE_VIPS`] VIPs until the next `entrance` event.

use std::collections::HashMap;

use danmaku_protocol::welcome::{HORIZON_DAYS, visit};

use crate::{ENTRANCE_EVERY_MS, ENTRANCE_NAMES, ENTRANCE_VIPS, MAX_SEEN};

#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// user → (last UTC day seen, distinct days seen).
    users: HashMap<Box<str>, (u64, u64)>,
}

impl Seen {
    /// Records `user`'s join `today`; returns whether it was returning and its visits.
    pub(crate) fn visit(&mut self, user: &str, today: u64) -> (bool, u64) {
        let before = self.users.get(user).copied();
        let (after, returning) = visit(before, today);
        if before.is_none() && self.users.len() >= MAX_SEEN {
            self.users
                .retain(|_, (last, _)| today.saturating_sub(*last) <= HORIZON_DAYS);
            if self.users.len() >= MAX_SEEN {
                return (returning, after.1);
            }
        }
        self.users.insert(Box::from(user), after);
        (returning, after.1)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Entrances {
    count: u64,
    names: Vec<String>,
    vips: Vec<serde_json::Value>,
    vip_count: u64,
    last_ms: u64,
}

impl Entrances {
    /// Counts one join (`vip`: named one by one).
    pub(crate) fn add(&mut self, user: &str, name: &str, tags: &[&str], vip: bool) {
        self.count += 1;
        if self.names.len() < ENTRANCE_NAMES {
            self.names.push(name.to_owned());
        }
        if vip {
            self.vip_count += 1;
            if self.vips.len() < ENTRANCE_VIPS {
                self.vips
                    .push(serde_json::json!({"user": user, "name": name, "tags": tags}));
            }
        }
    }

    /// The data of the `entrance` event due at `now`, if any (at most one a second).
    pub(crate) fn due(&mut self, now: u64) -> Option<String> {
        if self.count == 0 || now.saturating_sub(self.last_ms) < ENTRANCE_EVERY_MS {
            return None;
        }
        let data = serde_json::json!({
            "count": self.count,
            "names": std::mem::take(&mut self.names),
            "vip": std::mem::take(&mut self.vips),
            "vip_count": self.vip_count,
        });
        (self.count, self.vip_count, self.last_ms) = (0, 0, now);
        Some(data.to_string())
    }

    /// Notes the clock read after the event was sequenced: the event's `ts` is no
    /// later, so the next one's is at least a second after it.
    pub(crate) fn told_by(&mut self, now: u64) {
        self.last_ms = self.last_ms.max(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entrances_are_told_at_most_once_a_second() {
        let mut e = Entrances::default();
        assert_eq!(e.due(5_000), None, "nothing to tell");
        for i in 0..8 {
            e.add(&format!("u{i}"), &format!("n{i}"), &["vip"], i == 3);
        }
        let d: serde_json::Value =
            serde_json::from_str(&e.due(5_000).unwrap_or_default()).unwrap_or_default();
        assert_eq!(
            (&d["count"], d["names"].as_array().map(Vec::len)),
            (&8.into(), Some(ENTRANCE_NAMES))
        );
        assert_eq!(
            d["vip"],
            serde_json::json!([{"user": "u3", "name": "n3", "tags": ["vip"]}])
        );
        e.add("u9", "n9", &[], false);
        assert_eq!(e.due(5_999), None, "within the second");
        assert!(e.due(6_000).is_some());
    }

    #[test]
    fn visits_count_distinct_days_within_the_horizon() {
        let mut s = Seen::default();
        assert_eq!(s.visit("u", 100), (false, 1), "new");
        assert_eq!(
            s.visit("u", 100),
            (true, 1),
            "again today: returning, one visit"
        );
        assert_eq!(s.visit("u", 101), (true, 2), "the next day");
        assert_eq!(
            s.visit("u", 101 + HORIZON_DAYS),
            (true, 3),
            "on the horizon"
        );
        assert_eq!(
            s.visit("u", 102 + 2 * HORIZON_DAYS),
            (false, 1),
            "past it: new again"
        );
        assert_eq!(s.visit("v", 100), (false, 1), "each user on its own");
    }

    #[test]
    fn the_seen_record_is_bounded() {
        let mut s = Seen::default();
        for i in 0..MAX_SEEN {
            s.visit(&i.to_string(), 0);
        }
        assert_eq!(s.visit("late", 10), (false, 1));
        assert_eq!(s.visit("late", 11), (false, 1), "not recorded while full");
        assert_eq!(
            s.visit("later", 40),
            (false, 1),
            "the old ones are past the horizon"
        );
        assert_eq!(s.visit("later", 41), (true, 2));
    }
}
