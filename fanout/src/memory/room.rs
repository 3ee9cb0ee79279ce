//! One room of the memory store.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use danmaku_protocol::audience::{Audience, Viewer};
use danmaku_protocol::{EventFrame, EventKind, InteractionId, PollId, Priority, RoomId, Since};

use super::MemoryConfig;
use super::coupon::{Coupon, CouponEvent};
use super::history::HistoryRing;
use super::ingress::CommentGate;
use super::poll::Poll;
use crate::{CouponRecord, FanoutError, History, MAX_OPEN_COUPONS, NewCoupon, NewPoll, RoomView};

pub(crate) struct RoomState {
    pub(crate) epoch: Arc<str>,
    /// INVARIANT: strictly increases by one per event within an epoch.
    pub(crate) seq: u64,
    pub(crate) likes: u64,
    history: HistoryRing,
    /// Idempotency key → (seq, the event's fingerprint). `idem_order` (key, first
    /// seen) bounds it by count and age.
    idem: HashMap<Box<str>, (u64, String)>,
    idem_order: VecDeque<(Box<str>, u64)>,
    idem_ttl_ms: u64,
    idem_max: usize,
    /// Until when (ms) a key of the last TTL may have been forgotten: the store's
    /// start, then a key forgotten at `idem_max` before its TTL, plus the TTL.
    idem_doubt_until: u64,
    polls: Vec<Poll>,
    next_poll: u64,
    /// Open and recently closed coupons (closed ones kept for `GET`, at most 100).
    coupons: Vec<Coupon>,
    next_coupon: u64,
    /// The stage object, when one is set.
    pub(crate) stage: Option<bytes::Bytes>,
    /// Keyword games, quizzes and lotteries.
    pub(crate) board: super::interaction::Board,
    /// Co-host seats, once set.
    pub(crate) seats: Option<crate::seats::Seats>,
    /// Viewer comments: the budget's second and the merge windows.
    pub(crate) comments: CommentGate,
    /// Mutes, bans and the audit list.
    pub(crate) moderation: super::moderation::RoomModeration,
    /// The welcome templates, once set.
    pub(crate) welcome: Option<danmaku_protocol::welcome::Welcome>,
    /// Who joined, by day, within the horizon.
    pub(crate) seen: super::arrivals::Seen,
    /// Joins not told in an `entrance` event yet.
    pub(crate) entrances: super::arrivals::Entrances,
    /// Retention counters and visits ([`crate::analytics`]).
    pub(crate) analytics: (crate::analytics::Counters, crate::analytics::Visits),
    /// The room's own settings, once set (until then, each comment's defaults apply).
    pub(crate) settings: Option<danmaku_protocol::settings::RoomSettings>,
    last_active_ms: u64,
    /// Set when the room was expired; a holder of a stale handle must look it up again.
    pub(crate) removed: bool,
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A random epoch: 16 hex digits.
pub(crate) fn new_epoch() -> Arc<str> {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(crate::now_ms());
    Arc::from(format!("{:016x}", h.finish()))
}

impl RoomState {
    /// A new room of a store that began at `store_started_ms`.
    pub(crate) fn new(config: &MemoryConfig, store_started_ms: u64) -> Self {
        let idem_ttl_ms = millis(config.idempotency_ttl);
        Self {
            epoch: new_epoch(),
            seq: 0,
            likes: 0,
            history: HistoryRing::new(config.history_len, millis(config.history_age)),
            idem: HashMap::new(),
            idem_order: VecDeque::new(),
            idem_ttl_ms,
            idem_max: config.idempotency_max.max(1),
            idem_doubt_until: store_started_ms.saturating_add(idem_ttl_ms),
            polls: Vec::new(),
            next_poll: 1,
            coupons: Vec::new(),
            next_coupon: 1,
            stage: None,
            board: super::interaction::Board::default(),
            seats: None,
            comments: CommentGate::default(),
            settings: None,
            moderation: super::moderation::RoomModeration::default(),
            welcome: None,
            seen: super::arrivals::Seen::default(),
            entrances: super::arrivals::Entrances::default(),
            analytics: Default::default(),
            last_active_ms: crate::now_ms(),
            removed: false,
        }
    }

    pub(crate) fn touch(&mut self, now: u64) {
        self.last_active_ms = now;
    }

    pub(crate) fn idle_since(&self, now: u64) -> u64 {
        now.saturating_sub(self.last_active_ms)
    }

    /// Sequences and encodes one event (behind its audience's tag when targeted).
    pub(crate) fn append(
        &mut self,
        room: &RoomId,
        kind: &EventKind,
        priority: Priority,
        data: &str,
        audience: Option<&Audience>,
        now: u64,
    ) -> EventFrame {
        self.seq += 1;
        let mut frame = EventFrame::encode(room, &self.epoch, self.seq, kind, priority, now, data);
        if let Some(a) = audience {
            frame.bytes = a.wrap(&frame.bytes);
        }
        self.history.push(self.seq, now, frame.bytes.clone());
        frame
    }

    /// The seq and fingerprint of the event `key` was first used for.
    pub(crate) fn idempotent_seq(&mut self, key: &str, now: u64) -> Option<(u64, String)> {
        self.forget_keys(now);
        self.idem.get(key).cloned()
    }

    pub(crate) fn remember_key(&mut self, key: &str, seq: u64, print: String, now: u64) {
        if self.idem.len() >= self.idem_max
            && let Some((old, at)) = self.idem_order.pop_front()
        {
            self.idem.remove(&old);
            let doubt = at.saturating_add(self.idem_ttl_ms);
            self.idem_doubt_until = self.idem_doubt_until.max(doubt);
        }
        self.idem.insert(Box::from(key), (seq, print));
        self.idem_order.push_back((Box::from(key), now));
    }

    /// Whether a key used within its TTL may have been forgotten (so an unknown key
    /// is no proof that its event was never sequenced).
    pub(crate) fn may_have_lost_keys(&self, now: u64) -> bool {
        now < self.idem_doubt_until
    }

    fn forget_keys(&mut self, now: u64) {
        while let Some((key, at)) = self.idem_order.front() {
            if at.saturating_add(self.idem_ttl_ms) >= now {
                break;
            }
            self.idem.remove(key);
            self.idem_order.pop_front();
        }
    }

    pub(crate) fn view(&mut self, since: Option<&Since>, recent: usize, now: u64) -> RoomView {
        self.history.prune(now);
        let replay = since
            .filter(|s| *s.epoch == *self.epoch)
            .and_then(|s| self.history.after(s.seq, self.seq, usize::MAX));
        let [keywords, quizzes, lotteries] = self.board.snapshot();
        RoomView {
            epoch: self.epoch.clone(),
            seq: self.seq,
            likes: self.likes,
            recent: if replay.is_some() {
                Vec::new()
            } else {
                self.history.recent(recent)
            },
            polls: self
                .polls
                .iter()
                .filter(|p| p.open)
                .map(Poll::encode)
                .collect(),
            coupons: self
                .coupons
                .iter()
                .filter(|c| c.open)
                .map(Coupon::encode_tagged)
                .collect(),
            stage: self.stage.clone(),
            seats: self.seats.as_ref().map(|s| bytes::Bytes::from(s.public())),
            settings: self
                .settings
                .as_ref()
                .map(|s| bytes::Bytes::from(s.encode())),
            keywords,
            quizzes,
            lotteries,
            replay,
        }
    }

    /// Marks event `seq` retracted in history. A seq the room has not given yet is
    /// refused; one history no longer holds needs no marking.
    pub(crate) fn retract(&mut self, seq: u64) -> Result<(), FanoutError> {
        if seq > self.seq {
            return Err(FanoutError::NoSuchSeq { seq });
        }
        self.history.retract(seq);
        Ok(())
    }

    pub(crate) fn history(
        &mut self,
        since: u64,
        limit: usize,
        now: u64,
    ) -> Result<History, FanoutError> {
        self.history.prune(now);
        if since > self.seq {
            return Err(FanoutError::Ahead {
                since,
                head: self.seq,
            });
        }
        match self.history.after(since, self.seq, limit) {
            Some(events) => Ok(History {
                epoch: self.epoch.clone(),
                head: self.seq,
                events,
            }),
            None => Err(FanoutError::Gone {
                since,
                epoch: self.epoch.clone(),
            }),
        }
    }

    /// Opens a poll; returns its id and the `data` of its event.
    pub(crate) fn open_poll(&mut self, new: NewPoll, now: u64) -> (PollId, String) {
        let name = format!("p-{}", self.next_poll);
        self.next_poll += 1;
        // INVARIANT: "p-<digits>" is a valid poll id.
        let id = PollId::new(&name).unwrap_or_else(|_| unreachable!("valid poll id"));
        let ends = now.saturating_add(new.duration_s.saturating_mul(1_000));
        let poll = Poll::new(id.clone(), new.question, new.options, ends);
        let data = String::from_utf8_lossy(&poll.encode()).into_owned();
        self.polls.push(poll);
        (id, data)
    }

    pub(crate) fn close_poll(&mut self, id: &PollId) -> Result<String, FanoutError> {
        let poll = self.poll_mut(id)?;
        if !poll.open {
            return Err(FanoutError::PollClosed(id.clone()));
        }
        poll.open = false;
        poll.dirty = false;
        Ok(String::from_utf8_lossy(&poll.encode()).into_owned())
    }

    pub(crate) fn vote(
        &mut self,
        id: &PollId,
        user: &str,
        option: u32,
        now: u64,
    ) -> Result<(), FanoutError> {
        self.moderation.check_muted(user, now)?;
        let poll = self.poll_mut(id)?;
        if poll.open && poll.ends_at_ms <= now {
            return Err(FanoutError::PollClosed(id.clone()));
        }
        poll.vote(user, option)
    }

    /// Event data for polls whose tallies changed or whose time ran out.
    pub(crate) fn due_poll_updates(&mut self, now: u64) -> Vec<String> {
        let mut out = Vec::new();
        for poll in self.polls.iter_mut().filter(|p| p.open) {
            if poll.ends_at_ms <= now {
                poll.open = false;
                poll.dirty = true;
            }
            if poll.dirty {
                poll.dirty = false;
                out.push(String::from_utf8_lossy(&poll.encode()).into_owned());
            }
        }
        // Closed polls stay for `close_poll` answers; keep at most 100 per room.
        while self.polls.len() > 100 {
            match self.polls.iter().position(|p| !p.open) {
                Some(i) => {
                    self.polls.remove(i);
                }
                None => break,
            }
        }
        out
    }

    /// Opens a coupon; returns its id and its event.
    pub(crate) fn open_coupon(
        &mut self,
        new: NewCoupon,
        now: u64,
    ) -> Result<(InteractionId, CouponEvent), FanoutError> {
        if self.coupons.iter().filter(|c| c.open).count() >= MAX_OPEN_COUPONS {
            return Err(FanoutError::TooManyCoupons);
        }
        let name = format!("c-{}", self.next_coupon);
        self.next_coupon += 1;
        // INVARIANT: "c-<digits>" is a valid interaction id.
        let id = InteractionId::new(&name).unwrap_or_else(|_| unreachable!("valid coupon id"));
        let ends = now.saturating_add(new.duration_s.saturating_mul(1_000));
        let coupon = Coupon::new(id.clone(), new, ends);
        let data = coupon.event();
        self.coupons.push(coupon);
        Ok((id, data))
    }

    /// Closes a coupon; returns its final event.
    pub(crate) fn close_coupon(&mut self, id: &InteractionId) -> Result<CouponEvent, FanoutError> {
        let coupon = self.coupon_mut(id)?;
        if !coupon.open {
            return Err(FanoutError::CouponClosed(id.clone()));
        }
        coupon.open = false;
        coupon.dirty = false;
        Ok(coupon.event())
    }

    /// Claims one of a coupon for `viewer`; returns the `coupon` event to publish at
    /// once when the claim sold it out.
    pub(crate) fn claim(
        &mut self,
        id: &InteractionId,
        viewer: &Viewer,
        code: &str,
        now: u64,
    ) -> Result<Option<CouponEvent>, FanoutError> {
        let coupon = self.coupon_mut(id)?;
        let sold_out = coupon.claim(viewer, code, now)?;
        Ok(sold_out.then(|| coupon.event()))
    }

    /// A coupon's state and claims.
    pub(crate) fn coupon(&mut self, id: &InteractionId) -> Result<CouponRecord, FanoutError> {
        let coupon = self.coupon_mut(id)?;
        Ok(CouponRecord {
            state: coupon.encode(),
            claims: coupon.claims(),
        })
    }

    /// Events of coupons whose remaining count changed or whose time ran out.
    pub(crate) fn due_coupon_updates(&mut self, now: u64) -> Vec<CouponEvent> {
        let mut out = Vec::new();
        for coupon in self.coupons.iter_mut().filter(|c| c.open) {
            if coupon.ends_at_ms <= now {
                coupon.open = false;
                coupon.dirty = true;
            }
            if coupon.dirty {
                coupon.dirty = false;
                out.push(coupon.event());
            }
        }
        while self.coupons.len() > 100 {
            match self.coupons.iter().position(|c| !c.open) {
                Some(i) => {
                    self.coupons.remove(i);
                }
                None => break,
            }
        }
        out
    }

    fn coupon_mut(&mut self, id: &InteractionId) -> Result<&mut Coupon, FanoutError> {
        self.coupons
            .iter_mut()
            .find(|c| c.id == *id)
            .ok_or_else(|| FanoutError::UnknownCoupon(id.clone()))
    }

    fn poll_mut(&mut self, id: &PollId) -> Result<&mut Poll, FanoutError> {
        self.polls
            .iter_mut()
            .find(|p| p.id == *id)
            .ok_or_else(|| FanoutError::UnknownPoll(id.clone()))
    }
}
