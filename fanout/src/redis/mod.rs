//! The Redis store: rooms shared by every gateway.
//!
//! Every write to a room is one Lua script (`lua/room.lua`) that, atomically, creates
//! the room's epoch if missing, increments its seq, appends the event's record to the
//! room's stream (bounded by length and age), honours an idempotency key, publishes
//! the record on the room's channel, and refreshes the TTL of every key of the room.
//! Reads (`view`, `history`) are scripts too, so a join sees one consistent position.
//! The script makes no JSON: a record carries Rust-made text and counters, and Rust
//! encodes the event frame from it ([`record`]); script replies are read in one place
//! ([`reply`]).
//!
//! # Expiry
//! Every key of a room expires `room_ttl` after the room's last activity (a publish,
//! a vote, a join, a gateway reporting viewers), so Redis holds only live rooms. A
//! room that expired comes back with a new epoch, as in the memory store; its viewers
//! get `recovered:false` (or a `reset`) with the new epoch.
//!
//! Each gateway subscribes to a room while it has local viewers ([`subscriber`]); the
//! subscriber keeps the room's `last_seq`, fills gaps from the stream, and announces
//! an epoch change as a reset, so local viewers get one gapless order or a `reset`.

mod conn;
mod keys;
mod publisher;
pub(crate) mod record;
mod reply;
mod subscriber;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use danmaku_protocol::audience::{Audience, Viewer};
use danmaku_protocol::data::PollSpec;
use danmaku_protocol::{InteractionId, PollId, RoomId, Since};
use dashmap::DashMap;

use crate::interaction::{Kind, NewInteraction};
use crate::seats::{Action, Actor, Seats, Told};

use crate::{Arrival, Arrivals, Arriving};
use crate::{
    CoHosts, CouponRecord, Coupons, Fanout, FanoutError, History, Hub, InteractionRecord,
    Interactions, Moderate, NewCoupon, NewEvent, NewPoll, Polls, Published, RoomInfo, RoomView,
    Rooms, Settings, now_ms,
};
use conn::Conn;
use danmaku_protocol::settings::RoomSettings;
use danmaku_protocol::welcome::Welcome;
pub use publisher::Publisher;
use publisher::{connect_shards, millis, shard_index};
use reply::{RoomOp, unavailable};
use subscriber::Subscriber;

/// Settings of the Redis store.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://host:port/db` or `redis+unix:///path/to/socket`; several URLs shard the
    /// rooms over several standalone servers (client-side, by a consistent hash of the
    /// room id, so every gateway and publisher agrees on a room's shard).
    pub urls: Vec<String>,
    /// The URLs are seeds of one Redis Cluster (rooms are spread by hash slot; events
    /// go over sharded pub/sub, SPUBLISH/SSUBSCRIBE) instead of standalone shards.
    pub cluster: bool,
    /// Prefix of every key (lets several deployments share one Redis).
    pub prefix: String,
    /// Events kept per room stream (approximately; trimmed with `MAXLEN ~`).
    pub history_len: usize,
    /// Events older than this are no longer history (a resume from before them gets
    /// `recovered:false`); they are trimmed from the stream as new events come.
    pub history_age: Duration,
    /// Every key of a room expires this long after the room's last activity.
    pub room_ttl: Duration,
    /// How long a co-host request or invitation waits, and a seat outlives its holder's
    /// last connection.
    pub cohost_lease: Duration,
    /// How long an idempotency key is remembered.
    pub idempotency_ttl: Duration,
    /// A room without local viewers is unsubscribed after this long.
    pub unsubscribe_grace: Duration,
    /// How often each subscribed room's position is checked (finds a lost tail).
    pub position_check: Duration,
    /// This gateway's id, under which it reports its online counts.
    pub gateway_id: String,
    /// A gateway's reported online count expires after this (a crashed gateway's
    /// viewers stop counting).
    pub online_ttl: Duration,
    /// A pub/sub connection whose liveness probe (sent every `position_check`) has not
    /// come back this long after Redis took it is taken for stalled and replaced.
    pub probe_timeout: Duration,
    /// A gateway that cannot reach Redis this long tells its viewers to move to
    /// another gateway (`reconnect`, reason `store unavailable`).
    pub store_lost_after: Duration,
    /// The longest a store call may take. A publish without an answer by then is
    /// [`crate::FanoutError::OutcomeUnknown`] (it may have been sequenced); any other
    /// call is [`crate::FanoutError::Unavailable`].
    pub call_timeout: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            urls: vec!["redis://127.0.0.1:6379".into()],
            cluster: false,
            prefix: "dm".into(),
            history_len: 1_000,
            history_age: Duration::from_secs(600),
            room_ttl: Duration::from_secs(3_600),
            cohost_lease: Duration::from_millis(crate::seats::LEASE_MS),
            idempotency_ttl: Duration::from_secs(600),
            unsubscribe_grace: Duration::from_secs(5),
            position_check: Duration::from_secs(1),
            gateway_id: "g1".into(),
            online_ttl: Duration::from_secs(5),
            call_timeout: Duration::from_secs(1),
            probe_timeout: Duration::from_secs(2),
            store_lost_after: Duration::from_secs(10),
        }
    }
}

/// The Redis-backed store.
pub struct RedisFanout {
    config: RedisConfig,
    publisher: Publisher,
    view_script: redis::Script,
    history_script: redis::Script,
    hub: Arc<Hub>,
    /// One pub/sub connection per shard, in shard order.
    subscribers: Vec<Subscriber>,
    /// Rooms with votes taken here since the last flush (their tallies are due).
    votes_pending: dashmap::DashSet<RoomId>,
    /// Rooms where this gateway merged comments, by when the first window ends (at most
    /// one entry per room with local commenters; taken by [`Polls::tick`]).
    merges_due: DashMap<RoomId, u64>,
    /// Rooms with a coupon this gateway opened, by its end (ms): flushed once it passed,
    /// so the close is announced within a tick (other gateways' sweeps also close it).
    closes_due: DashMap<RoomId, u64>,
    /// Rooms where this gateway counted a join not yet told in an `entrance` event.
    entrances_pending: dashmap::DashSet<RoomId>,
    /// Rooms seen with open polls, coupons or games (at a join, an open here, or an
    /// event passed on by the subscriber), swept now and then to close what is past
    /// its end; a room leaves the set when this gateway has no viewer of it.
    poll_rooms: Arc<dashmap::DashSet<RoomId>>,
    /// Rooms with co-host seats that this gateway knows of, swept now and then
    /// (requests, invitations and leases expire; its viewers' seats are renewed).
    seat_rooms: dashmap::DashSet<RoomId>,
    /// When the seats were last swept (ms).
    seats_swept: std::sync::atomic::AtomicU64,
    /// Counts ticks, for the slower sweep.
    ticks: std::sync::atomic::AtomicU64,
}

impl RedisFanout {
    /// Connects to Redis and starts the subscriber.
    ///
    /// # Errors
    /// [`FanoutError::Unavailable`] when Redis cannot be reached.
    pub async fn connect(config: RedisConfig, hub: Arc<Hub>) -> Result<Self, FanoutError> {
        let stats = Arc::new(crate::stats::StoreStats::default());
        let shards = connect_shards(&config, &stats).await?;
        let publisher = Publisher::with(config.clone(), shards, stats);
        let poll_rooms = Arc::new(dashmap::DashSet::new());
        let subscribers = publisher
            .shards
            .iter()
            .map(|s| {
                Subscriber::start(
                    s.target.clone(),
                    s.conn.clone(),
                    hub.clone(),
                    config.clone(),
                    s.healthy.clone(),
                    publisher.clone(),
                    poll_rooms.clone(),
                )
            })
            .collect();
        Ok(Self {
            publisher,
            view_script: redis::Script::new(include_str!("lua/view.lua")),
            history_script: redis::Script::new(include_str!("lua/history.lua")),
            config,
            hub,
            subscribers,
            votes_pending: dashmap::DashSet::new(),
            merges_due: DashMap::new(),
            closes_due: DashMap::new(),
            poll_rooms,
            entrances_pending: dashmap::DashSet::new(),
            seat_rooms: dashmap::DashSet::new(),
            seats_swept: std::sync::atomic::AtomicU64::new(0),
            ticks: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// A command connection to `room`'s shard.
    fn conn(&self, room: &RoomId) -> Conn {
        self.publisher.shard(room).conn.clone()
    }
}

/// Interactions' states by the kind of their id (keywords, quizzes, lotteries).
fn by_kind(states: Vec<Bytes>) -> [Vec<Bytes>; 3] {
    let mut out: [Vec<Bytes>; 3] = Default::default();
    for s in states {
        // `{"id":"<k|q|l>-…`
        let kind = match s.get(7) {
            Some(b'k') => 0,
            Some(b'q') => 1,
            _ => 2,
        };
        out[kind].push(s);
    }
    out
}

/// A random epoch: 16 hex digits.
fn new_epoch() -> String {
    crate::memory::new_epoch().to_string()
}

#[async_trait]
impl Rooms for RedisFanout {
    async fn publish_event(
        &self,
        room: &RoomId,
        event: NewEvent<'_>,
    ) -> Result<Published, FanoutError> {
        if event.ingress.is_none() {
            return self.publisher.publish_event(room, event).await;
        }
        let answer = self.publisher.room_op(room, &RoomOp::Event(event)).await?;
        if reply::counted(&answer) {
            // A keyword game's or lottery's counts changed: published by the next tick.
            self.votes_pending.insert(room.clone());
        }
        let (published, due) = reply::published_or_merged(answer)?;
        if let Some(due) = due {
            // This gateway sequences the window's merged copies when it ends; any
            // gateway with viewers of the room does too within a presence interval.
            let mut at = self.merges_due.entry(room.clone()).or_insert(due);
            *at = (*at).min(due);
        }
        Ok(published)
    }

    async fn set_stage(
        &self,
        room: &RoomId,
        stage: Option<&str>,
    ) -> Result<Published, FanoutError> {
        reply::published(
            self.publisher
                .room_op(room, &RoomOp::Stage { stage })
                .await?,
        )
    }

    async fn add_likes(&self, room: &RoomId, delta: u64) -> Result<Published, FanoutError> {
        reply::published(
            self.publisher
                .room_op(room, &RoomOp::Likes { delta })
                .await?,
        )
    }

    async fn view(
        &self,
        room: &RoomId,
        since: Option<&Since>,
        recent: usize,
    ) -> Result<RoomView, FanoutError> {
        // Subscribe first: events sequenced after the view's position then reach the hub.
        self.subscribers[shard_index(room, self.subscribers.len())]
            .watch(room)
            .await?;
        let k = self.publisher.keys(room);
        let (since_epoch, since_seq) =
            since.map_or((String::new(), 0), |s| (s.epoch.clone(), s.seq));
        let mut conn = self.conn(room);
        let v: redis::Value = self
            .view_script
            .key(&k.meta)
            .key(&k.stream)
            .key(&k.polls)
            .arg(new_epoch())
            .arg(recent)
            .arg(since_epoch)
            .arg(since_seq)
            .arg(now_ms())
            .arg(millis(self.config.history_age))
            .arg(millis(self.config.room_ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        let view = reply::view(room, v)?;
        // Round trips more only for a room with open interactions.
        let (polls, coupons, others) = if view.open_interactions > 0 {
            let (polls, coupons, others) = tokio::join!(
                self.open_polls(room),
                self.publisher.room_op(room, &RoomOp::Coupons),
                self.publisher.room_op(room, &RoomOp::Interactions)
            );
            (polls?, reply::bulk(coupons?)?, reply::bulk(others?)?)
        } else {
            (Vec::new(), Vec::new(), Vec::new())
        };
        if !polls.is_empty() || !coupons.is_empty() || !others.is_empty() {
            self.poll_rooms.insert(room.clone());
        }
        if view.seats.is_some() {
            self.seat_rooms.insert(room.clone());
        }
        let [keywords, quizzes, lotteries] = by_kind(others);
        let (recent, replay) = if view.recovered {
            (Vec::new(), Some(view.events))
        } else {
            (view.events, None)
        };
        Ok(RoomView {
            epoch: view.epoch,
            seq: view.seq,
            likes: view.likes,
            recent,
            polls,
            coupons,
            keywords,
            quizzes,
            lotteries,
            stage: view.stage,
            seats: view.seats,
            settings: view.settings,
            replay,
        })
    }

    async fn history(
        &self,
        room: &RoomId,
        since: u64,
        limit: usize,
    ) -> Result<History, FanoutError> {
        let k = self.publisher.keys(room);
        let mut conn = self.conn(room);
        let v: redis::Value = self
            .history_script
            .key(&k.meta)
            .key(&k.stream)
            .arg(since)
            .arg(limit.max(1))
            .arg(now_ms())
            .arg(millis(self.config.history_age))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        reply::history(room, since, v)
    }

    async fn online(&self, room: &RoomId) -> Result<u64, FanoutError> {
        self.online_total(room).await
    }

    async fn info(&self, room: &RoomId) -> Result<RoomInfo, FanoutError> {
        let k = self.publisher.keys(room);
        let mut conn = self.conn(room);
        let (epoch, seq, likes): (Option<String>, Option<u64>, Option<u64>) = redis::cmd("HMGET")
            .arg(&k.meta)
            .arg("epoch")
            .arg("seq")
            .arg("likes")
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(RoomInfo {
            epoch: Arc::from(epoch.unwrap_or_default()),
            seq: seq.unwrap_or(0),
            likes: likes.unwrap_or(0),
        })
    }
}

impl RedisFanout {
    /// The listing's keys: the gateways' set, and this gateway's hash of rooms.
    fn listing_keys(&self) -> (String, String) {
        let tag = format!("{{{}:rooms}}", self.config.prefix);
        (
            format!("{tag}:gateways"),
            format!("{tag}:g:{}", self.config.gateway_id),
        )
    }

    /// Appends the ops' entries to the analytics stream `<prefix>:analytics` (one
    /// pipeline; bounded by `MAXLEN ~`). The counters are the record: an entry that
    /// cannot be written is logged and dropped.
    async fn export(&self, room: &RoomId, ops: &[crate::analytics::Op], starts: &[Option<u64>]) {
        let entries: Vec<String> = ops
            .iter()
            .zip(starts.iter().copied().chain(std::iter::repeat(None)))
            .filter_map(|(op, start)| op.entry(room.as_str(), start))
            .collect();
        if entries.is_empty() {
            return;
        }
        let key = format!("{}:analytics", self.config.prefix);
        let mut pipe = redis::pipe();
        for e in &entries {
            pipe.cmd("XADD")
                .arg(&key)
                .arg("MAXLEN")
                .arg("~")
                .arg(crate::analytics::STREAM_MAX_LEN)
                .arg("*")
                .arg("e")
                .arg(e)
                .ignore();
        }
        let mut conn = self.conn(&stream_room());
        if let Err(e) = pipe.query_async::<()>(&mut conn).await {
            tracing::warn!(error = %e, entries = entries.len(), "analytics entries not exported");
        }
    }

    async fn online_total(&self, room: &RoomId) -> Result<u64, FanoutError> {
        let op = RoomOp::Online {
            gateway: &self.config.gateway_id,
            count: self.hub.online(room),
            ttl_ms: millis(self.config.online_ttl),
        };
        reply::count(self.publisher.room_op(room, &op).await?)
    }

    async fn open_polls(&self, room: &RoomId) -> Result<Vec<Bytes>, FanoutError> {
        reply::polls(self.publisher.room_op(room, &RoomOp::Polls).await?)
    }
}

#[async_trait]
impl Polls for RedisFanout {
    async fn create_poll(
        &self,
        room: &RoomId,
        poll: NewPoll,
    ) -> Result<(PollId, Published), FanoutError> {
        let ends_at = now_ms().saturating_add(poll.duration_s.saturating_mul(1_000));
        let spec = PollSpec {
            question: poll.question,
            options: poll.options,
        };
        let op = RoomOp::PollOpen {
            spec: &spec,
            ends_at,
        };
        let opened = reply::poll_opened(self.publisher.room_op(room, &op).await?)?;
        self.poll_rooms.insert(room.clone());
        Ok(opened)
    }

    async fn close_poll(&self, room: &RoomId, poll: &PollId) -> Result<Published, FanoutError> {
        let op = RoomOp::PollClose { poll };
        reply::published(self.publisher.room_op(room, &op).await?)
    }

    async fn vote(
        &self,
        room: &RoomId,
        poll: &PollId,
        user: &str,
        option: u32,
    ) -> Result<(), FanoutError> {
        let op = RoomOp::Vote { poll, user, option };
        self.publisher.room_op(room, &op).await?;
        self.votes_pending.insert(room.clone());
        Ok(())
    }

    async fn tick(&self) {
        // Tallies of rooms that took votes here since the last tick; the script's dirty
        // flags publish each update once, whichever gateway flushes first. Every 20th
        // tick, every room with open polls, so polls past their end get closed.
        let tick = self.ticks.fetch_add(1, Ordering::Relaxed);
        let sweep = tick.is_multiple_of(20);
        // Seats are swept four times a lease: a seat's holder is renewed by its gateway
        // well before another gateway's sweep would find it gone.
        let (now, lease) = (now_ms(), millis(self.config.cohost_lease));
        let last = self.seats_swept.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= lease / 4 {
            self.seats_swept.store(now, Ordering::Relaxed);
            self.sweep_seats().await;
        }
        let mut rooms: Vec<RoomId> = self.votes_pending.iter().map(|r| r.clone()).collect();
        for r in &rooms {
            self.votes_pending.remove(r);
        }
        let ended = now_ms();
        self.closes_due.retain(|room, at| {
            let due = *at <= ended;
            if due {
                rooms.push(room.clone());
            }
            !due
        });
        if sweep {
            rooms.extend(self.poll_rooms.iter().map(|r| r.clone()));
            self.poll_rooms.retain(|r| self.hub.contains(r));
        }
        rooms.sort();
        rooms.dedup();
        for room in rooms {
            match self.publisher.room_op(&room, &RoomOp::PollFlush).await {
                Ok(v) => {
                    for lottery in reply::drawing(&v) {
                        if let Err(e) = self.close_interaction(&room, &lottery).await {
                            tracing::warn!(%room, %lottery, error = %e, "lottery not drawn yet");
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(%room, error = %e, "poll tallies not flushed");
                    self.votes_pending.insert(room);
                }
            }
        }
        let now = now_ms();
        let due: Vec<RoomId> = self
            .merges_due
            .iter()
            .filter(|e| *e.value() <= now)
            .map(|e| e.key().clone())
            .collect();
        for room in due {
            self.merges_due.remove(&room);
            if let Err(e) = self.publisher.room_op(&room, &RoomOp::MergeFlush).await {
                tracing::warn!(%room, error = %e, "merged comments not flushed yet");
                self.merges_due.insert(room, now);
            }
        }
        let pending: Vec<RoomId> = self.entrances_pending.iter().map(|r| r.clone()).collect();
        for room in pending {
            match self.publisher.room_op(&room, &RoomOp::EntranceFlush).await {
                Ok(v) if reply::too_early(&v) => {}
                Ok(_) => {
                    self.entrances_pending.remove(&room);
                }
                Err(e) => tracing::warn!(%room, error = %e, "entrances not told yet"),
            }
        }
    }
}

#[async_trait]
impl Coupons for RedisFanout {
    async fn create_coupon(
        &self,
        room: &RoomId,
        coupon: NewCoupon,
    ) -> Result<(InteractionId, Published), FanoutError> {
        let title = serde_json::to_string(&coupon.title)
            .map_err(|_| FanoutError::BadReply("a title that is not a string"))?;
        let ends_at = now_ms().saturating_add(coupon.duration_s.saturating_mul(1_000));
        // A tag is UTF-8: valid ids between ASCII control bytes.
        let audience = coupon
            .audience
            .as_ref()
            .map(Audience::tag)
            .unwrap_or_default();
        let audience = String::from_utf8_lossy(&audience);
        let op = RoomOp::CouponOpen {
            title: &title,
            stock: coupon.stock,
            per_user: coupon.per_user,
            ends_at,
            audience: &audience,
        };
        let opened = reply::coupon_opened(self.publisher.room_op(room, &op).await?)?;
        let mut at = self.closes_due.entry(room.clone()).or_insert(ends_at);
        *at = (*at).min(ends_at);
        drop(at);
        // Any gateway that knows of it sweeps it: its close at `ends_at` happens once.
        self.poll_rooms.insert(room.clone());
        Ok(opened)
    }

    async fn close_coupon(
        &self,
        room: &RoomId,
        coupon: &InteractionId,
    ) -> Result<Published, FanoutError> {
        let op = RoomOp::CouponClose { coupon };
        reply::published(self.publisher.room_op(room, &op).await?)
    }

    async fn claim(
        &self,
        room: &RoomId,
        coupon: &InteractionId,
        viewer: &Viewer,
        code: &str,
    ) -> Result<(), FanoutError> {
        let tags: Vec<&str> = viewer.tags().collect();
        let op = RoomOp::Claim {
            coupon,
            user: viewer.user(),
            tags: &reply::wrapped_tags(&tags),
            code,
        };
        self.publisher.room_op(room, &op).await?;
        // The remaining count is published by the next tick, coalesced.
        self.votes_pending.insert(room.clone());
        Ok(())
    }

    async fn coupon(
        &self,
        room: &RoomId,
        coupon: &InteractionId,
    ) -> Result<CouponRecord, FanoutError> {
        reply::coupon_record(
            self.publisher
                .room_op(room, &RoomOp::CouponGet { coupon })
                .await?,
        )
    }
}

#[async_trait]
impl Interactions for RedisFanout {
    async fn open_interaction(
        &self,
        room: &RoomId,
        new: NewInteraction,
    ) -> Result<(InteractionId, Published), FanoutError> {
        let seed = match new.kind() {
            Kind::Lottery => crate::interaction::new_seed()?,
            _ => [0; 32],
        };
        let ends_at = now_ms().saturating_add(new.duration_s().saturating_mul(1_000));
        let spec = new.spec(&seed);
        let seed_hex = match new.kind() {
            Kind::Lottery => crate::interaction::hex(&seed),
            _ => String::new(),
        };
        let op = RoomOp::XOpen {
            new: &new,
            spec: &spec,
            ends_at,
            seed: &seed_hex,
        };
        let opened = reply::interaction_opened(self.publisher.room_op(room, &op).await?)?;
        let mut at = self.closes_due.entry(room.clone()).or_insert(ends_at);
        *at = (*at).min(ends_at);
        drop(at);
        self.poll_rooms.insert(room.clone());
        Ok(opened)
    }

    async fn close_interaction(
        &self,
        room: &RoomId,
        id: &InteractionId,
    ) -> Result<Published, FanoutError> {
        let closed = reply::closed(self.publisher.room_op(room, &RoomOp::XClose { id }).await?)?;
        let (seed, winners, entrants) = match closed {
            reply::Closed::Published(p) => return Ok(p),
            reply::Closed::Draw {
                seed,
                winners,
                entrants,
            } => (seed, winners, entrants),
        };
        // The draw is made here, from what the script answered; a second gateway
        // drawing the same lottery makes the same draw, and the script keeps the first.
        let d = crate::interaction::draw(&seed, entrants, winners);
        let won = if d.winners.is_empty() {
            String::new()
        } else {
            let record = reply::interaction_record(
                self.publisher.room_op(room, &RoomOp::XGet { id }).await?,
            )?;
            let prize = crate::interaction::prize_in(&String::from_utf8_lossy(&record.state));
            let data = crate::interaction::won_data(id.as_str(), &prize);
            let (kind, audience) = (
                danmaku_protocol::EventKind::lottery_won(),
                danmaku_protocol::audience::Audience::Users(d.winners.clone()),
            );
            let event = NewEvent {
                audience: Some(&audience),
                ..NewEvent::new(&kind, &data)
            };
            event.body().into_owned()
        };
        let counts = d.counts();
        let op = RoomOp::XDrawn {
            id,
            counts: &counts,
            won: &won,
        };
        reply::published(self.publisher.room_op(room, &op).await?)
    }

    async fn answer(
        &self,
        room: &RoomId,
        quiz: &InteractionId,
        user: &str,
        option: u32,
    ) -> Result<(), FanoutError> {
        let op = RoomOp::Answer { quiz, user, option };
        self.publisher.room_op(room, &op).await?;
        self.votes_pending.insert(room.clone());
        Ok(())
    }

    async fn enter(
        &self,
        room: &RoomId,
        lottery: &InteractionId,
        user: &str,
        tags: &[&str],
    ) -> Result<(), FanoutError> {
        let tags = reply::wrapped_tags(tags);
        let op = RoomOp::Enter {
            lottery,
            user,
            tags: &tags,
        };
        self.publisher.room_op(room, &op).await?;
        self.votes_pending.insert(room.clone());
        Ok(())
    }

    async fn interaction(
        &self,
        room: &RoomId,
        id: &InteractionId,
    ) -> Result<InteractionRecord, FanoutError> {
        reply::interaction_record(self.publisher.room_op(room, &RoomOp::XGet { id }).await?)
    }
}

impl RedisFanout {
    /// Applies `step` to the room's seats and writes the result if nobody wrote since
    /// it was read (else reads and applies again). `step` answers what to tell, or
    /// `None` when nothing changed (nothing is written). Answers the first event's
    /// publish.
    async fn seats_step(
        &self,
        room: &RoomId,
        mut step: impl FnMut(&mut Seats) -> Result<Option<Vec<Told>>, FanoutError> + Send,
    ) -> Result<Option<Published>, FanoutError> {
        const ATTEMPTS: usize = 16;
        for _ in 0..ATTEMPTS {
            let (version, state) =
                reply::seats(self.publisher.room_op(room, &RoomOp::SeatsGet).await?)?;
            let mut seats = state.unwrap_or_default();
            let public_before = seats.public();
            let Some(told) = step(&mut seats)? else {
                return Ok(None);
            };
            let public = seats.public();
            let events: Vec<(String, String)> = told
                .iter()
                .map(|t| {
                    let (kind, data, audience) = t.event();
                    let event = NewEvent {
                        audience: audience.as_ref(),
                        ..NewEvent::new(&kind, data)
                    };
                    (format!("{}:dh", kind.as_str()), event.body().into_owned())
                })
                .collect();
            let op = RoomOp::SeatsPut {
                version: &version,
                state: &seats.to_json(),
                public: if public == public_before && !told.is_empty() {
                    ""
                } else {
                    &public
                },
                events: &events,
            };
            if let Some(p) = reply::put_if_unchanged(self.publisher.room_op(room, &op).await?)? {
                self.seat_rooms.insert(room.clone());
                return Ok(Some(p));
            }
        }
        Err(FanoutError::Unavailable(format!(
            "the room's seats changed under {ATTEMPTS} attempts in a row; try again"
        )))
    }

    /// Renews the seats of this gateway's viewers and expires what is due, in every
    /// room with seats this gateway knows of.
    async fn sweep_seats(&self) {
        let rooms: Vec<RoomId> = self.seat_rooms.iter().map(|r| r.clone()).collect();
        self.seat_rooms.retain(|r| self.hub.contains(r));
        for room in rooms {
            let swept = self
                .seats_step(&room, |seats| {
                    let here = crate::seats::present_here(seats, &self.hub, &room);
                    let lease = millis(self.config.cohost_lease);
                    let (told, changed) =
                        seats.sweep(now_ms(), lease, |u| here.iter().any(|h| h == u));
                    Ok(changed.then_some(told))
                })
                .await;
            if let Err(e) = swept {
                tracing::warn!(%room, error = %e, "seats not swept");
            }
        }
    }
}

#[async_trait]
impl Moderate for RedisFanout {
    async fn moderate(
        &self,
        room: &RoomId,
        m: &danmaku_protocol::moderation::Moderation,
        by: &str,
    ) -> Result<Published, FanoutError> {
        let now = now_ms();
        let doc = crate::moderation::doc(m, by, now);
        // This gateway's connections hear of it as every gateway's do: the
        // subscriber acts on the `moderation` event it passes on.
        let op = RoomOp::Moderate {
            m,
            until: m.until(now).unwrap_or(0),
            doc: &doc,
        };
        reply::published(self.publisher.room_op(room, &op).await?)
    }

    async fn moderation_log(&self, room: &RoomId) -> Result<Vec<Bytes>, FanoutError> {
        reply::bulk(self.publisher.room_op(room, &RoomOp::ModerationLog).await?)
    }
}

#[async_trait]
impl crate::Analytics for RedisFanout {
    async fn record(
        &self,
        room: &RoomId,
        ops: &[crate::analytics::Op],
        window_ms: u64,
    ) -> Result<Vec<Option<u64>>, FanoutError> {
        let encoded: Vec<String> = ops.iter().map(reply::encode_analytics).collect();
        let op = RoomOp::Analytics {
            ops: &encoded,
            window_ms,
        };
        let starts = reply::visit_starts(self.publisher.room_op(room, &op).await?)?;
        self.export(room, ops, &starts).await;
        Ok(starts)
    }

    async fn analytics(&self, room: &RoomId) -> Result<crate::analytics::Counters, FanoutError> {
        reply::counters(self.publisher.room_op(room, &RoomOp::AnalyticsGet).await?)
    }

    /// Each gateway keeps one hash of its rooms' counts, `{<prefix>:rooms}:g:<gateway>`,
    /// living a few presence intervals, and its name in `{<prefix>:rooms}:gateways`
    /// (by when it last reported): one pipeline per report, whatever the rooms.
    async fn report_rooms(&self, rooms: &[(RoomId, u64)]) {
        let (gateways, mine) = self.listing_keys();
        let now = now_ms();
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(&mine).ignore();
        if !rooms.is_empty() {
            let mut hset = redis::cmd("HSET");
            hset.arg(&mine);
            for (room, n) in rooms {
                hset.arg(room.as_str()).arg(*n);
            }
            pipe.add_command(hset).ignore();
            pipe.cmd("PEXPIRE")
                .arg(&mine)
                .arg(millis(self.config.online_ttl))
                .ignore();
        }
        pipe.cmd("ZADD")
            .arg(&gateways)
            .arg(now)
            .arg(&self.config.gateway_id)
            .ignore();
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(&gateways)
            .arg("-inf")
            .arg(now.saturating_sub(millis(self.config.online_ttl)))
            .ignore();
        let mut conn = self.conn(&stream_room());
        if let Err(e) = pipe.query_async::<()>(&mut conn).await {
            tracing::debug!(error = %e, "rooms not reported");
        }
    }

    async fn top_rooms(&self, limit: usize) -> Result<Vec<(RoomId, u64)>, FanoutError> {
        let (gateways, _) = self.listing_keys();
        let mut conn = self.conn(&stream_room());
        let since = now_ms().saturating_sub(millis(self.config.online_ttl));
        let ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(&gateways)
            .arg(since)
            .arg("+inf")
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        let mut counts: std::collections::HashMap<RoomId, u64> = std::collections::HashMap::new();
        for id in ids {
            let key = format!("{{{}:rooms}}:g:{id}", self.config.prefix);
            let rooms: std::collections::HashMap<String, u64> = redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .map_err(|e| unavailable(&e))?;
            // Each gateway reports the room's count on every gateway: the latest wins.
            for (room, n) in rooms {
                if let Ok(room) = RoomId::new(&room) {
                    let c = counts.entry(room).or_insert(0);
                    *c = (*c).max(n);
                }
            }
        }
        Ok(crate::top_of(counts, limit))
    }
}

#[async_trait]
impl Arrivals for RedisFanout {
    async fn set_welcome(&self, room: &RoomId, welcome: &Welcome) -> Result<(), FanoutError> {
        let json = if welcome.is_empty() {
            String::new()
        } else {
            serde_json::to_string(welcome).unwrap_or_default()
        };
        let op = RoomOp::SetWelcome { welcome: &json };
        self.publisher.room_op(room, &op).await?;
        Ok(())
    }

    async fn arrive(&self, room: &RoomId, who: &Arriving<'_>) -> Result<Arrival, FanoutError> {
        let v = self
            .publisher
            .room_op(room, &RoomOp::Arrive { who })
            .await?;
        if who.counted && reply::entered(&v) {
            // This gateway tells the entrance (any gateway's tick may: the script
            // sequences each batch once).
            self.entrances_pending.insert(room.clone());
        }
        reply::arrival(v, now_ms())
    }
}

#[async_trait]
impl Settings for RedisFanout {
    async fn update_settings(
        &self,
        room: &RoomId,
        patch: &serde_json::Value,
        defaults: &RoomSettings,
    ) -> Result<(RoomSettings, Published), FanoutError> {
        // Read, patch in Rust, write if nobody wrote since: settings change rarely.
        const ATTEMPTS: usize = 16;
        for _ in 0..ATTEMPTS {
            let read = self.publisher.room_op(room, &RoomOp::SettingsGet).await?;
            let (version, current) = reply::settings(read)?;
            let next = current
                .as_ref()
                .unwrap_or(defaults)
                .patch(patch)
                .map_err(|e| FanoutError::BadSettings(e.to_string()))?;
            let rules = format!(
                "{} {} {} {} {} {}",
                u64::from(next.slow_mode_s) * 1_000,
                next.min_level,
                next.comments_per_s,
                next.merge_after,
                next.merge_window_ms,
                u8::from(next.entrances)
            );
            let op = RoomOp::SettingsPut {
                version: &version,
                settings: &next.encode(),
                rules: &rules,
                blocked: &reply::wrapped_words(&next.blocked_words),
                vip: &reply::wrapped_words(&next.vip_tags),
            };
            if let Some(p) = reply::put_if_unchanged(self.publisher.room_op(room, &op).await?)? {
                return Ok((next, p));
            }
        }
        Err(FanoutError::Unavailable(format!(
            "the room's settings changed under {ATTEMPTS} attempts in a row; try again"
        )))
    }

    async fn settings(&self, room: &RoomId) -> Result<Option<RoomSettings>, FanoutError> {
        let read = self.publisher.room_op(room, &RoomOp::SettingsGet).await?;
        Ok(reply::settings(read)?.1)
    }
}

#[async_trait]
impl CoHosts for RedisFanout {
    async fn set_seats(&self, room: &RoomId, count: u32) -> Result<Published, FanoutError> {
        self.seats_step(room, |seats| Ok(Some(seats.set_count(count, now_ms()))))
            .await?
            .ok_or(FanoutError::BadReply("seats set without their event"))
    }

    async fn cohost(
        &self,
        room: &RoomId,
        actor: Actor<'_>,
        action: &Action,
    ) -> Result<(), FanoutError> {
        self.seats_step(room, |seats| {
            seats
                .apply(actor, action, now_ms())
                .map(Some)
                .map_err(FanoutError::Seat)
        })
        .await?;
        Ok(())
    }
}

impl Fanout for RedisFanout {
    fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    fn ready(&self) -> bool {
        self.publisher
            .shards
            .iter()
            .all(|s| s.healthy.load(Ordering::Relaxed))
            && self.subscribers.iter().all(Subscriber::connected)
    }

    fn store_stats(&self) -> Option<&crate::stats::StoreStats> {
        Some(&self.publisher.stats)
    }
}

/// The room whose shard holds the gateway-wide keys (the analytics stream): any room
/// id routes them to one shard of a sharded store, the same on every gateway.
fn stream_room() -> RoomId {
    RoomId::new("analytics").unwrap_or_else(|_| unreachable!("a valid room id"))
}
