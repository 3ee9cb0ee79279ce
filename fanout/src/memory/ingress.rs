//! A memory-store room's ingress of viewer comments: the room's rules (minimum level,
//! blocked words, slow mode), its per-second budget and the merging of repeated
//! comments.
//!
//! # Backpressure
//! At most [`crate::MERGE_TEXTS`] texts are tracked at once. A new text beyond it first
//! makes room by forgetting windows that ended without merged copies; if none did, it is
//! sequenced without merging (as it would be with merging off). Slow mode remembers at
//! most [`SLOW_USERS`] users: beyond it, those whose wait is over are forgotten; if
//! none is, the comment is refused as `room_busy` for a second.

use std::collections::HashMap;

use danmaku_protocol::data::{MERGED_USERS, merged_data};
use danmaku_protocol::settings::RoomSettings;

use crate::{FanoutError, Ingress, MERGE_TEXTS};

/// One text's window.
#[derive(Debug)]
struct Window {
    ends_ms: u64,
    /// Copies sequenced one by one in this window.
    sequenced: u32,
    /// Copies merged since.
    merged: u64,
    users: Vec<Box<str>>,
}

/// What a comment becomes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Sequence it (after `flush`, a `comment.merged` of the text's ended window).
    Sequence { flush: Option<String> },
    /// Counted into the window's `comment.merged`.
    Merged,
}

#[derive(Debug, Default)]
pub(crate) struct CommentGate {
    /// (the second, comments admitted in it)
    second: (u64, u32),
    windows: HashMap<Box<str>, Window>,
    /// Slow mode: when each user who commented may comment again (ms).
    slow: HashMap<Box<str>, u64>,
}

/// Most users slow mode remembers in one room.
pub(crate) const SLOW_USERS: usize = 100_000;

impl CommentGate {
    /// Decides a viewer comment at `now` (ms) under the room's settings `s`: its rules
    /// first (level, blocked words, slow mode), then merging and the budget.
    ///
    /// # Errors
    /// [`FanoutError::LevelTooLow`], [`FanoutError::Blocked`], [`FanoutError::SlowMode`];
    /// [`FanoutError::RoomBusy`] when the room's budget for this second is spent.
    pub(crate) fn admit(
        &mut self,
        c: &Ingress<'_>,
        s: &RoomSettings,
        now: u64,
    ) -> Result<Admit, FanoutError> {
        if c.level < s.min_level {
            return Err(FanoutError::LevelTooLow(s.min_level));
        }
        if c.merge_text.is_some_and(|t| s.blocked_in(t).is_some()) {
            return Err(FanoutError::Blocked);
        }
        let slow_ms = u64::from(s.slow_mode_s) * 1_000;
        if slow_ms > 0 {
            if let Some(&at) = self.slow.get(c.user).filter(|&&at| now < at) {
                return Err(FanoutError::SlowMode {
                    retry_after_ms: at - now,
                });
            }
            if self.slow.len() >= SLOW_USERS && !self.slow.contains_key(c.user) {
                self.slow.retain(|_, at| now < *at);
                if self.slow.len() >= SLOW_USERS {
                    return Err(FanoutError::RoomBusy {
                        per_s: s.comments_per_s,
                        retry_after_ms: 1_000,
                    });
                }
            }
        }
        let admitted = self.merge_or_budget(c, s, now)?;
        if slow_ms > 0 {
            self.slow
                .insert(Box::from(c.user), now.saturating_add(slow_ms));
        }
        Ok(admitted)
    }

    fn merge_or_budget(
        &mut self,
        c: &Ingress<'_>,
        s: &RoomSettings,
        now: u64,
    ) -> Result<Admit, FanoutError> {
        let mut flush = None;
        if let Some(text) = c.merge_text.filter(|_| s.merge_after > 0) {
            match self.windows.get_mut(text) {
                Some(w) if now < w.ends_ms && w.sequenced >= s.merge_after => {
                    w.merged += 1;
                    let named = w.users.iter().any(|u| **u == *c.user);
                    if w.users.len() < MERGED_USERS && !named && nameable(c.user) {
                        w.users.push(Box::from(c.user));
                    }
                    return Ok(Admit::Merged);
                }
                Some(w) if now < w.ends_ms => {}
                Some(_) => {
                    flush = self.windows.remove(text).and_then(|w| told(text, &w));
                }
                None => {}
            }
        }
        if s.comments_per_s > 0 {
            let sec = now / 1000;
            if self.second.0 != sec {
                self.second = (sec, 0);
            }
            if self.second.1 >= s.comments_per_s {
                return Err(FanoutError::RoomBusy {
                    per_s: s.comments_per_s,
                    retry_after_ms: 1000 - now % 1000,
                });
            }
            self.second.1 += 1;
        }
        Ok(Admit::Sequence { flush })
    }

    /// Counts a sequenced copy of the comment into its text's window (opening one).
    pub(crate) fn sequenced(&mut self, c: &Ingress<'_>, s: &RoomSettings, now: u64) {
        let Some(text) = c.merge_text.filter(|_| s.merge_after > 0) else {
            return;
        };
        if let Some(w) = self.windows.get_mut(text) {
            w.sequenced += 1;
            return;
        }
        if self.windows.len() >= MERGE_TEXTS {
            self.windows.retain(|_, w| w.merged > 0 || now < w.ends_ms);
            if self.windows.len() >= MERGE_TEXTS {
                return;
            }
        }
        let window = Window {
            ends_ms: now.saturating_add(s.merge_window_ms),
            sequenced: 1,
            merged: 0,
            users: Vec::new(),
        };
        self.windows.insert(Box::from(text), window);
    }

    /// The `comment.merged` data of every window that ended by `now`; ended windows
    /// are forgotten.
    pub(crate) fn due(&mut self, now: u64) -> Vec<String> {
        if self.windows.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        self.windows.retain(|text, w| {
            if now < w.ends_ms {
                return true;
            }
            out.extend(told(text, w));
            false
        });
        out
    }
}

/// A window's `comment.merged` data, if it merged any copy.
fn told(text: &str, w: &Window) -> Option<String> {
    (w.merged > 0).then(|| merged_data(text, w.merged, w.users.iter().map(|u| &**u)))
}

/// Whether a sender can be named in `comment.merged` (the Redis record separates the
/// names with control characters).
pub(crate) fn nameable(user: &str) -> bool {
    !user.is_empty() && !user.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(per_s: u32) -> RoomSettings {
        RoomSettings {
            comments_per_s: per_s,
            merge_after: 3,
            merge_window_ms: 1_000,
            ..RoomSettings::default()
        }
    }

    static NO_BUDGET: std::sync::LazyLock<RoomSettings> = std::sync::LazyLock::new(|| settings(0));

    fn ingress<'a>(user: &'a str, text: &'a str) -> Ingress<'a> {
        Ingress {
            defaults: &NO_BUDGET,
            level: 0,
            user,
            merge_text: Some(text),
            tags: &[],
        }
    }

    fn send(g: &mut CommentGate, c: &Ingress<'_>, now: u64) -> Result<Admit, FanoutError> {
        send_under(g, c, c.defaults, now)
    }

    fn send_under(
        g: &mut CommentGate,
        c: &Ingress<'_>,
        s: &RoomSettings,
        now: u64,
    ) -> Result<Admit, FanoutError> {
        let admit = g.admit(c, s, now)?;
        if admit != Admit::Merged {
            g.sequenced(c, s, now);
        }
        Ok(admit)
    }

    #[test]
    fn the_rules_refuse_before_anything_is_spent() {
        let mut g = CommentGate::default();
        let s = settings(1)
            .patch(
                &serde_json::json!({"slow_mode_s": 2, "min_level": 3, "blocked_words": ["spam"]}),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        let low = send_under(&mut g, &ingress("u", "hi"), &s, 1_000);
        assert_eq!(low, Err(FanoutError::LevelTooLow(3)));
        let c = Ingress {
            level: 3,
            ..ingress("u", "buy spam")
        };
        assert_eq!(send_under(&mut g, &c, &s, 1_000), Err(FanoutError::Blocked));
        let c = Ingress {
            level: 3,
            ..ingress("u", "hi")
        };
        assert!(
            send_under(&mut g, &c, &s, 1_000).is_ok(),
            "refusals spent neither budget nor slow mode"
        );
        assert_eq!(
            send_under(&mut g, &c, &s, 2_500),
            Err(FanoutError::SlowMode {
                retry_after_ms: 500
            })
        );
        let other = Ingress {
            level: 3,
            ..ingress("v", "hi")
        };
        assert!(
            send_under(&mut g, &other, &s, 2_500).is_ok(),
            "slow mode is per user"
        );
        assert!(
            send_under(&mut g, &c, &s, 3_000).is_ok(),
            "its wait is over"
        );
    }

    #[test]
    fn the_fourth_copy_merges_and_the_window_tells_the_count() {
        let mut g = CommentGate::default();
        for i in 0..3 {
            let r = send(&mut g, &ingress("u", "666"), 100 + i);
            assert_eq!(r, Ok(Admit::Sequence { flush: None }));
        }
        for (i, user) in ["a", "b", "a", "c"].iter().enumerate() {
            assert_eq!(
                send(&mut g, &ingress(user, "666"), 200 + i as u64),
                Ok(Admit::Merged)
            );
        }
        assert!(g.due(1_099).is_empty(), "the window is still open");
        let told = g.due(1_100);
        assert_eq!(told.len(), 1);
        let v: serde_json::Value = serde_json::from_str(&told[0]).unwrap_or_default();
        assert_eq!(
            v,
            serde_json::json!({"text": "666", "count": 4, "users": ["a", "b", "c"]})
        );
        assert_eq!(
            send(&mut g, &ingress("u", "666"), 1_200),
            Ok(Admit::Sequence { flush: None })
        );
    }

    #[test]
    fn a_copy_after_the_window_tells_the_merged_ones_first() {
        let mut g = CommentGate::default();
        for i in 0..4 {
            send(&mut g, &ingress("u", "hi"), i).unwrap_or(Admit::Merged);
        }
        match send(&mut g, &ingress("u", "hi"), 5_000) {
            Ok(Admit::Sequence { flush: Some(data) }) => assert!(data.contains("\"count\":1")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_budget_refuses_beyond_its_second_and_merged_copies_do_not_spend_it() {
        let mut g = CommentGate::default();
        let s = settings(2);
        let c = ingress("u", "x");
        assert!(send_under(&mut g, &c, &s, 1_000).is_ok());
        assert!(send_under(&mut g, &c, &s, 1_001).is_ok());
        let busy = send_under(
            &mut g,
            &Ingress {
                merge_text: None,
                ..c
            },
            &s,
            1_250,
        );
        assert_eq!(
            busy,
            Err(FanoutError::RoomBusy {
                per_s: 2,
                retry_after_ms: 750
            })
        );
        assert!(send_under(&mut g, &c, &s, 2_000).is_ok(), "a new second");
    }

    #[test]
    fn texts_are_bounded() {
        let mut g = CommentGate::default();
        let texts: Vec<String> = (0..MERGE_TEXTS + 10).map(|i| i.to_string()).collect();
        for t in &texts {
            send(&mut g, &ingress("u", t), 0).unwrap_or(Admit::Merged);
        }
        assert_eq!(g.windows.len(), MERGE_TEXTS);
        // Once they ended, new texts take their place.
        send(&mut g, &ingress("u", "new"), 5_000).unwrap_or(Admit::Merged);
        assert_eq!(g.windows.len(), 1);
    }
}
