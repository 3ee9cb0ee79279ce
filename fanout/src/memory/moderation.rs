//! A memory-store room's moderation: its mutes, bans and audit list.
//!
//! # Backpressure
//! At most [`MAX_MODERATED`] mutes and as many bans: a new one beyond first forgets
//! those that ended; if none did, it is refused ([`FanoutError::TooManyModerated`]).
//! The audit list keeps the last [`MAX_MODERATION_LOG`] actions.

use std::collections::{HashMap, VecDeque};

use danmaku_protocol::moderation::{ModAction, Moderation};

use crate::{FanoutError, MAX_MODERATED, MAX_MODERATION_LOG, Standing};

/// Until when (Unix ms) each user is muted or banned; `u64::MAX` for good.
type Until = HashMap<Box<str>, u64>;

#[derive(Debug, Default)]
pub(crate) struct RoomModeration {
    mutes: Until,
    bans: Until,
    log: VecDeque<String>,
}

fn active(list: &Until, user: &str, now: u64) -> Option<u64> {
    list.get(user).copied().filter(|&until| now < until)
}

impl RoomModeration {
    /// Applies a mute, unmute, ban or unban at `now` (a retraction changes none of
    /// these) and records `doc` in the audit list.
    pub(crate) fn apply(
        &mut self,
        m: &Moderation,
        doc: String,
        now: u64,
    ) -> Result<(), FanoutError> {
        let user = m.user.as_deref().unwrap_or_default();
        let list = match m.action {
            ModAction::Mute | ModAction::Unmute => &mut self.mutes,
            ModAction::Ban | ModAction::Unban => &mut self.bans,
            ModAction::Retract => {
                self.record(doc);
                return Ok(());
            }
        };
        match m.action {
            ModAction::Mute | ModAction::Ban => {
                if list.len() >= MAX_MODERATED && !list.contains_key(user) {
                    list.retain(|_, until| now < *until);
                    if list.len() >= MAX_MODERATED {
                        return Err(FanoutError::TooManyModerated);
                    }
                }
                list.insert(Box::from(user), m.until(now).unwrap_or(u64::MAX));
            }
            _ => {
                list.remove(user);
            }
        }
        self.record(doc);
        Ok(())
    }

    fn record(&mut self, doc: String) {
        if self.log.len() == MAX_MODERATION_LOG {
            self.log.pop_front();
        }
        self.log.push_back(doc);
    }

    /// The audit list, oldest first.
    pub(crate) fn log(&self) -> Vec<bytes::Bytes> {
        self.log
            .iter()
            .map(|d| bytes::Bytes::from(d.clone()))
            .collect()
    }

    /// `user`'s standing at `now`.
    pub(crate) fn standing(&self, user: &str, now: u64) -> Standing {
        Standing {
            muted_until: active(&self.mutes, user, now),
            banned_until: active(&self.bans, user, now),
        }
    }

    /// Refuses a muted user's comment or vote.
    pub(crate) fn check_muted(&self, user: &str, now: u64) -> Result<(), FanoutError> {
        match active(&self.mutes, user, now) {
            None => Ok(()),
            Some(until) => Err(FanoutError::muted(until, now)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(action: &str, user: &str, duration_s: Option<u64>) -> Moderation {
        Moderation::new(action, Some(user), None, duration_s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn mutes_and_bans_end_by_time_or_by_their_lift() {
        let mut r = RoomModeration::default();
        r.apply(&m("mute", "a", Some(10)), "1".into(), 1_000)
            .unwrap_or_else(|e| panic!("{e}"));
        r.apply(&m("ban", "b", None), "2".into(), 1_000)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            r.check_muted("a", 5_000),
            Err(FanoutError::Muted {
                retry_after_ms: Some(6_000)
            })
        );
        assert_eq!(r.check_muted("a", 11_000), Ok(()), "the mute ended");
        assert_eq!(r.standing("b", 9_999_999).banned_until, Some(u64::MAX));
        r.apply(&m("unban", "b", None), "3".into(), 2_000)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.standing("b", 2_000), Standing::default());
        assert_eq!(r.log().len(), 3, "every action is recorded");
    }

    #[test]
    fn the_lists_are_bounded_and_forget_what_ended_first() {
        let mut r = RoomModeration::default();
        for i in 0..MAX_MODERATED {
            let d = if i == 0 { Some(1) } else { None };
            r.apply(&m("mute", &format!("u{i}"), d), String::new(), 0)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let full = r.apply(&m("mute", "late", None), String::new(), 500);
        assert_eq!(full, Err(FanoutError::TooManyModerated));
        assert_eq!(
            r.apply(&m("mute", "late", None), String::new(), 1_000),
            Ok(()),
            "u0's mute ended"
        );
        assert_eq!(r.log.len(), MAX_MODERATION_LOG);
    }
}
