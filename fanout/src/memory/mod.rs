//! The embedded single-node store: rooms live in this process.
//!
//! Each room is a [`RoomState`] behind a short `parking_lot` lock. Publishing takes the
//! lock, assigns the next seq, encodes the event once, appends it to the history and
//! hands it to the hub, all before releasing the lock, so deliveries leave in seq order
//! whichever thread published. Nothing awaits under the lock.

mod arrivals;
mod coupon;
mod history;
mod ingress;
mod interaction;
mod moderation;
mod poll;
mod room;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use danmaku_protocol::audience::{Audience, Viewer};
use danmaku_protocol::{EventKind, InteractionId, PollId, Priority, RoomId, Since};
use dashmap::DashMap;
use parking_lot::Mutex;

use crate::idempotency::fingerprint;
use crate::interaction::NewInteraction;
use crate::seats::{Action, Actor, Seats, Told};
use crate::{Arrival, Arrivals, Arriving};
use crate::{
    CoHosts, CouponRecord, Coupons, Fanout, FanoutError, History, Hub, InteractionRecord,
    Interactions, Moderate, NewCoupon, NewEvent, NewPoll, Polls, Published, RoomInfo, RoomView,
    Rooms, Settings, now_ms,
};
use coupon::CouponEvent;
use danmaku_protocol::moderation::Moderation;
use danmaku_protocol::settings::RoomSettings;
use danmaku_protocol::welcome::Welcome;
use ingress::Admit;
pub(crate) use ingress::nameable;
use room::RoomState;
pub(crate) use room::new_epoch;

/// Bounds of the memory store.
#[derive(Debug, Clone)]
pub struct MemoryConfig {
    /// Events kept per room (default 1,000).
    pub history_len: usize,
    /// Age after which events leave the history (default 10 minutes).
    pub history_age: Duration,
    /// How long an idempotency key is remembered (default 10 minutes).
    pub idempotency_ttl: Duration,
    /// Idempotency keys kept per room at most; the oldest is forgotten first (default 10,000).
    pub idempotency_max: usize,
    /// A room without viewers and without events for this long is forgotten; it comes
    /// back with a new epoch (default 1 hour).
    pub room_ttl: Duration,
    /// Rooms held at most; publishing into a new room beyond it fails (default 100,000).
    pub max_rooms: usize,
    /// How long a co-host request or invitation waits, and a seat outlives its holder's
    /// last connection (default 30 s).
    pub cohost_lease: Duration,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            history_len: 1_000,
            history_age: Duration::from_secs(600),
            idempotency_ttl: Duration::from_secs(600),
            idempotency_max: 10_000,
            room_ttl: Duration::from_secs(3_600),
            max_rooms: 100_000,
            cohost_lease: Duration::from_millis(crate::seats::LEASE_MS),
        }
    }
}

/// The embedded store.
pub struct MemoryFanout {
    config: MemoryConfig,
    rooms: DashMap<RoomId, Arc<Mutex<RoomState>>>,
    hub: Arc<Hub>,
    /// When this store began (ms): idempotency keys used before it are gone.
    started_ms: u64,
}

impl MemoryFanout {
    /// Creates an empty store delivering into `hub`.
    pub fn new(config: MemoryConfig, hub: Arc<Hub>) -> Self {
        Self {
            config,
            rooms: DashMap::new(),
            hub,
            started_ms: now_ms(),
        }
    }

    /// Runs `f` on the room's state under its lock, creating the room when missing.
    fn with_room<T>(
        &self,
        id: &RoomId,
        f: impl FnOnce(&mut RoomState) -> T,
    ) -> Result<T, FanoutError> {
        // A room removed by expiry between lookup and lock is marked `removed`; retry.
        loop {
            let room = match self.rooms.get(id) {
                Some(r) => r.clone(),
                None => {
                    if self.rooms.len() >= self.config.max_rooms {
                        return Err(FanoutError::TooManyRooms(self.config.max_rooms));
                    }
                    self.rooms
                        .entry(id.clone())
                        .or_insert_with(|| {
                            Arc::new(Mutex::new(RoomState::new(&self.config, self.started_ms)))
                        })
                        .clone()
                }
            };
            let mut state = room.lock();
            if state.removed {
                continue;
            }
            state.touch(now_ms());
            return Ok(f(&mut state));
        }
    }

    /// Sequences an event the room makes itself (likes, polls), at its kind's priority.
    fn publish_locked(
        &self,
        id: &RoomId,
        state: &mut RoomState,
        kind: &EventKind,
        data: &str,
    ) -> Published {
        self.sequence_for(id, state, kind, Priority::of_room(kind), data, None)
    }

    /// Sequences a `coupon` event, for its audience.
    fn publish_coupon(
        &self,
        id: &RoomId,
        state: &mut RoomState,
        (data, audience): &CouponEvent,
    ) -> Published {
        let kind = EventKind::coupon();
        let priority = Priority::of_room(&kind);
        self.sequence_for(id, state, &kind, priority, data, audience.as_ref())
    }

    /// Sequences an event, for `audience` alone when given (see
    /// [`danmaku_protocol::audience`]).
    fn sequence_for(
        &self,
        id: &RoomId,
        state: &mut RoomState,
        kind: &EventKind,
        priority: Priority,
        data: &str,
        audience: Option<&Audience>,
    ) -> Published {
        let frame = state.append(id, kind, priority, data, audience, now_ms());
        self.hub.deliver(id, frame.seq, &frame.bytes);
        Published {
            epoch: state.epoch.clone(),
            seq: frame.seq,
            duplicate: false,
            merged: false,
        }
    }

    /// Publishes once per idempotency key. A `retry` whose key is unknown is refused
    /// while the room may have forgotten keys of their lifetime (the store began, or a
    /// key was forgotten at the room's bound, less than the key TTL ago).
    fn publish_keyed(&self, room: &RoomId, event: NewEvent<'_>) -> Result<Published, FanoutError> {
        let NewEvent {
            kind,
            data,
            priority,
            idempotency_key,
            retry,
            audience,
            ingress,
        } = event;
        self.with_room(room, |state| {
            let now = now_ms();
            let keyed = idempotency_key.map(|key| (key, fingerprint(kind, &event.body())));
            if let Some((key, print)) = &keyed {
                match state.idempotent_seq(key, now) {
                    Some((seq, first)) if first != *print => {
                        return Err(FanoutError::KeyReused { seq });
                    }
                    Some((seq, _)) => {
                        return Ok(Published {
                            epoch: state.epoch.clone(),
                            seq,
                            duplicate: true,
                            merged: false,
                        });
                    }
                    None if retry && state.may_have_lost_keys(now) => {
                        return Err(FanoutError::KeyUnknown);
                    }
                    None => {}
                }
            }
            if let Some(c) = &ingress {
                state.moderation.check_muted(c.user, now)?;
                let rules = state.settings.as_ref().unwrap_or(c.defaults);
                let admitted = state.comments.admit(c, rules, now)?;
                if let Some(text) = c.merge_text {
                    state.board.on_comment(c.user, text, c.tags, now);
                }
                match admitted {
                    Admit::Merged => {
                        return Ok(Published {
                            epoch: state.epoch.clone(),
                            seq: 0,
                            duplicate: false,
                            merged: true,
                        });
                    }
                    // The text's last window ended with merged copies: told first.
                    Admit::Sequence { flush: Some(data) } => {
                        self.publish_locked(room, state, &EventKind::comment_merged(), &data);
                    }
                    Admit::Sequence { flush: None } => {}
                }
            }
            let published = self.sequence_for(room, state, kind, priority, data, audience);
            if let Some(c) = &ingress {
                let rules = state.settings.as_ref().unwrap_or(c.defaults);
                state.comments.sequenced(c, rules, now);
            }
            if let Some((key, print)) = keyed {
                state.remember_key(key, published.seq, print, now);
            }
            Ok(published)
        })?
    }

    /// Sequences the events of interactions (a lottery's `lottery.won` for its
    /// winners alone).
    /// Returns the first one's publish.
    fn publish_due(
        &self,
        id: &RoomId,
        state: &mut RoomState,
        due: Vec<interaction::Due>,
    ) -> Option<Published> {
        let won = EventKind::lottery_won();
        let mut first = None;
        for d in due {
            let p = match &d.audience {
                None => self.publish_locked(id, state, &d.kind.event_kind(), &d.data),
                Some(a) => self.sequence_for(id, state, &won, Priority::High, &d.data, Some(a)),
            };
            first.get_or_insert(p);
        }
        first
    }

    /// Sequences what a co-host move or sweep tells; returns the first publish.
    fn publish_told(&self, id: &RoomId, state: &mut RoomState, told: &[Told]) -> Option<Published> {
        let mut first = None;
        for t in told {
            let (kind, data, audience) = t.event();
            let p = self.sequence_for(id, state, &kind, Priority::High, data, audience.as_ref());
            first.get_or_insert(p);
        }
        first
    }

    fn expire_rooms(&self, now: u64) {
        let ttl = u64::try_from(self.config.room_ttl.as_millis()).unwrap_or(u64::MAX);
        self.rooms.retain(|id, room| {
            let mut state = room.lock();
            if state.idle_since(now) >= ttl && !self.hub.contains(id) {
                state.removed = true;
                return false;
            }
            true
        });
    }
}

#[async_trait]
impl Rooms for MemoryFanout {
    async fn publish_event(
        &self,
        room: &RoomId,
        event: NewEvent<'_>,
    ) -> Result<Published, FanoutError> {
        self.publish_keyed(room, event)
    }

    async fn set_stage(
        &self,
        room: &RoomId,
        stage: Option<&str>,
    ) -> Result<Published, FanoutError> {
        let kind = EventKind::stage();
        self.with_room(room, |state| {
            state.stage = stage.map(|s| bytes::Bytes::copy_from_slice(s.as_bytes()));
            self.publish_locked(room, state, &kind, stage.unwrap_or("null"))
        })
    }

    async fn add_likes(&self, room: &RoomId, delta: u64) -> Result<Published, FanoutError> {
        let kind = EventKind::likes();
        self.with_room(room, |state| {
            state.likes = state.likes.saturating_add(delta);
            let data = danmaku_protocol::data::likes_data(state.likes, delta);
            self.publish_locked(room, state, &kind, &data)
        })
    }

    async fn view(
        &self,
        room: &RoomId,
        since: Option<&Since>,
        recent: usize,
    ) -> Result<RoomView, FanoutError> {
        self.with_room(room, |state| state.view(since, recent, now_ms()))
    }

    async fn history(
        &self,
        room: &RoomId,
        since: u64,
        limit: usize,
    ) -> Result<History, FanoutError> {
        self.with_room(room, |state| state.history(since, limit, now_ms()))?
    }

    async fn online(&self, room: &RoomId) -> Result<u64, FanoutError> {
        Ok(self.hub.online(room))
    }

    async fn info(&self, room: &RoomId) -> Result<RoomInfo, FanoutError> {
        self.with_room(room, |state| RoomInfo {
            epoch: state.epoch.clone(),
            seq: state.seq,
            likes: state.likes,
        })
    }
}

#[async_trait]
impl Polls for MemoryFanout {
    async fn create_poll(
        &self,
        room: &RoomId,
        poll: NewPoll,
    ) -> Result<(PollId, Published), FanoutError> {
        let kind = EventKind::poll();
        self.with_room(room, |state| {
            let (id, data) = state.open_poll(poll, now_ms());
            (id, self.publish_locked(room, state, &kind, &data))
        })
    }

    async fn close_poll(&self, room: &RoomId, poll: &PollId) -> Result<Published, FanoutError> {
        let kind = EventKind::poll();
        self.with_room(room, |state| {
            let data = state.close_poll(poll)?;
            Ok(self.publish_locked(room, state, &kind, &data))
        })?
    }

    async fn vote(
        &self,
        room: &RoomId,
        poll: &PollId,
        user: &str,
        option: u32,
    ) -> Result<(), FanoutError> {
        self.with_room(room, |state| state.vote(poll, user, option, now_ms()))?
    }

    async fn tick(&self) {
        let kind = EventKind::poll();
        let merged = EventKind::comment_merged();
        let now = now_ms();
        let rooms: Vec<(RoomId, Arc<Mutex<RoomState>>)> = self
            .rooms
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        for (id, room) in rooms {
            let mut state = room.lock();
            if state.removed {
                continue;
            }
            for data in state.due_poll_updates(now) {
                self.publish_locked(&id, &mut state, &kind, &data);
            }
            for event in state.due_coupon_updates(now) {
                self.publish_coupon(&id, &mut state, &event);
            }
            for data in state.comments.due(now) {
                self.publish_locked(&id, &mut state, &merged, &data);
            }
            if let Some(data) = state.entrances.due(now) {
                self.publish_locked(&id, &mut state, &EventKind::entrance(), &data);
                state.entrances.told_by(now_ms());
            }
            let due = state.board.due(now);
            self.publish_due(&id, &mut state, due);
            if let Some(mut seats) = state.seats.take() {
                let here = crate::seats::present_here(&seats, &self.hub, &id);
                let lease = u64::try_from(self.config.cohost_lease.as_millis()).unwrap_or(u64::MAX);
                let (told, _) = seats.sweep(now, lease, |u| here.iter().any(|h| h == u));
                self.publish_told(&id, &mut state, &told);
                state.seats = Some(seats);
            }
        }
        self.expire_rooms(now);
    }
}

#[async_trait]
impl Coupons for MemoryFanout {
    async fn create_coupon(
        &self,
        room: &RoomId,
        coupon: NewCoupon,
    ) -> Result<(InteractionId, Published), FanoutError> {
        self.with_room(room, |state| {
            let (id, event) = state.open_coupon(coupon, now_ms())?;
            Ok((id, self.publish_coupon(room, state, &event)))
        })?
    }

    async fn close_coupon(
        &self,
        room: &RoomId,
        coupon: &InteractionId,
    ) -> Result<Published, FanoutError> {
        self.with_room(room, |state| {
            let event = state.close_coupon(coupon)?;
            Ok(self.publish_coupon(room, state, &event))
        })?
    }

    async fn claim(
        &self,
        room: &RoomId,
        coupon: &InteractionId,
        viewer: &Viewer,
        code: &str,
    ) -> Result<(), FanoutError> {
        self.with_room(room, |state| {
            if let Some(event) = state.claim(coupon, viewer, code, now_ms())? {
                self.publish_coupon(room, state, &event);
            }
            Ok(())
        })?
    }

    async fn coupon(
        &self,
        room: &RoomId,
        coupon: &InteractionId,
    ) -> Result<CouponRecord, FanoutError> {
        self.with_room(room, |state| state.coupon(coupon))?
    }
}

#[async_trait]
impl Interactions for MemoryFanout {
    async fn open_interaction(
        &self,
        room: &RoomId,
        new: NewInteraction,
    ) -> Result<(InteractionId, Published), FanoutError> {
        let kind = new.kind().event_kind();
        self.with_room(room, |state| {
            let (id, data) = state.board.open(new, now_ms())?;
            Ok((id, self.publish_locked(room, state, &kind, &data)))
        })?
    }

    async fn close_interaction(
        &self,
        room: &RoomId,
        id: &InteractionId,
    ) -> Result<Published, FanoutError> {
        self.with_room(room, |state| {
            let due = state.board.close(id)?;
            self.publish_due(room, state, due)
                .ok_or(FanoutError::BadReply("a close without its event"))
        })?
    }

    async fn answer(
        &self,
        room: &RoomId,
        quiz: &InteractionId,
        user: &str,
        option: u32,
    ) -> Result<(), FanoutError> {
        self.with_room(room, |state| {
            state.board.answer(quiz, user, option, now_ms())
        })?
    }

    async fn enter(
        &self,
        room: &RoomId,
        lottery: &InteractionId,
        user: &str,
        tags: &[&str],
    ) -> Result<(), FanoutError> {
        self.with_room(room, |state| {
            state.board.enter(lottery, user, tags, now_ms())
        })?
    }

    async fn interaction(
        &self,
        room: &RoomId,
        id: &InteractionId,
    ) -> Result<InteractionRecord, FanoutError> {
        self.with_room(room, |state| state.board.record(id))?
    }
}

#[async_trait]
impl Moderate for MemoryFanout {
    async fn moderate(
        &self,
        room: &RoomId,
        m: &Moderation,
        by: &str,
    ) -> Result<Published, FanoutError> {
        let now = now_ms();
        let doc = crate::moderation::doc(m, by, now);
        let published = self.with_room(room, |state| {
            if let Some(seq) = m.seq {
                state.retract(seq)?;
            }
            state.moderation.apply(m, doc.clone(), now)?;
            Ok(match m.seq {
                Some(seq) => {
                    let data = format!("{{\"seq\":{seq}}}");
                    self.publish_locked(room, state, &EventKind::retract(), &data)
                }
                None => {
                    let staff = crate::moderation::staff();
                    let kind = EventKind::moderation();
                    self.sequence_for(room, state, &kind, Priority::High, &doc, Some(&staff))
                }
            })
        })??;
        crate::moderation::tell_connections(&self.hub, room, m, now);
        Ok(published)
    }

    async fn moderation_log(&self, room: &RoomId) -> Result<Vec<bytes::Bytes>, FanoutError> {
        self.with_room(room, |state| state.moderation.log())
    }
}

#[async_trait]
impl Arrivals for MemoryFanout {
    async fn set_welcome(&self, room: &RoomId, welcome: &Welcome) -> Result<(), FanoutError> {
        self.with_room(room, |state| {
            state.welcome = (!welcome.is_empty()).then(|| welcome.clone());
        })
    }

    async fn arrive(&self, room: &RoomId, who: &Arriving<'_>) -> Result<Arrival, FanoutError> {
        self.with_room(room, |state| {
            let standing = state.moderation.standing(who.user, now_ms());
            let (returning, visits) = state.seen.visit(who.user, who.today);
            let settings = state.settings.as_ref().unwrap_or(who.defaults);
            if who.counted && settings.entrances && standing.banned_until.is_none() {
                let vips = &settings.vip_tags;
                let vip = who.tags.iter().any(|t| vips.iter().any(|v| v == t));
                state.entrances.add(who.user, who.name, who.tags, vip);
            }
            Arrival {
                standing,
                returning,
                visits,
                welcome: state.welcome.clone(),
            }
        })
    }
}

#[async_trait]
impl crate::Analytics for MemoryFanout {
    async fn record(
        &self,
        room: &RoomId,
        ops: &[crate::analytics::Op],
        window_ms: u64,
    ) -> Result<Vec<Option<u64>>, FanoutError> {
        self.with_room(room, |state| {
            let (counters, visits) = &mut state.analytics;
            ops.iter()
                .map(|op| counters.apply(visits, op, window_ms))
                .collect()
        })
    }

    async fn analytics(&self, room: &RoomId) -> Result<crate::analytics::Counters, FanoutError> {
        self.with_room(room, |state| state.analytics.0.clone())
    }

    async fn top_rooms(&self, limit: usize) -> Result<Vec<(RoomId, u64)>, FanoutError> {
        let hub = &self.hub;
        Ok(crate::top_of(
            hub.rooms().into_iter().map(|r| {
                let n = hub.online(&r);
                (r, n)
            }),
            limit,
        ))
    }
}

#[async_trait]
impl Settings for MemoryFanout {
    async fn update_settings(
        &self,
        room: &RoomId,
        patch: &serde_json::Value,
        defaults: &RoomSettings,
    ) -> Result<(RoomSettings, Published), FanoutError> {
        let kind = EventKind::settings();
        self.with_room(room, |state| {
            let current = state.settings.as_ref().unwrap_or(defaults);
            let next = current
                .patch(patch)
                .map_err(|e| FanoutError::BadSettings(e.to_string()))?;
            let published = self.publish_locked(room, state, &kind, &next.encode());
            state.settings = Some(next.clone());
            Ok((next, published))
        })?
    }

    async fn settings(&self, room: &RoomId) -> Result<Option<RoomSettings>, FanoutError> {
        self.with_room(room, |state| state.settings.clone())
    }
}

#[async_trait]
impl CoHosts for MemoryFanout {
    async fn set_seats(&self, room: &RoomId, count: u32) -> Result<Published, FanoutError> {
        self.with_room(room, |state| {
            let mut seats = state.seats.take().unwrap_or_default();
            let told = seats.set_count(count, now_ms());
            state.seats = Some(seats);
            self.publish_told(room, state, &told)
                .ok_or(FanoutError::BadReply("seats set without their event"))
        })?
    }

    async fn cohost(
        &self,
        room: &RoomId,
        actor: Actor<'_>,
        action: &Action,
    ) -> Result<(), FanoutError> {
        self.with_room(room, |state| {
            let mut seats = state.seats.take().unwrap_or_default();
            let told = seats.apply(actor, action, now_ms());
            if seats != Seats::default() {
                state.seats = Some(seats);
            }
            self.publish_told(room, state, &told.map_err(FanoutError::Seat)?);
            Ok(())
        })?
    }
}

impl Fanout for MemoryFanout {
    fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    fn ready(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
