//! The Redis store: rooms shared by every gateway.
//!
//! Every write to a room is one Lua script (`lua/room.lua`) that, atomically, creates
//! the room's epoch if missing, increments its seq, appends the encoded event to the
//! room's bounded stream, honours an idempotency key, and publishes
//! `<seq>:<epoch>:<frame>` on the room's channel. Reads (`view`, `history`) are scripts
//! too, so a join sees one consistent position.
//!
//! Each gateway subscribes to a room while it has local viewers ([`subscriber`]); the
//! subscriber keeps the room's `last_seq`, fills gaps from the stream, and announces
//! an epoch change as a reset, so local viewers get one gapless order or a `reset`.

mod conn;
mod keys;
mod publisher;
mod subscriber;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use danmaku_protocol::{EventKind, PollId, RoomId, Since};

use crate::{
    Fanout, FanoutError, History, Hub, NewPoll, Polls, Published, RoomInfo, RoomView, Rooms, now_ms,
};
use conn::Conn;
pub use publisher::Publisher;
use publisher::{connect_shards, shard_index};
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
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            urls: vec!["redis://127.0.0.1:6379".into()],
            cluster: false,
            prefix: "dm".into(),
            history_len: 1_000,
            idempotency_ttl: Duration::from_secs(600),
            unsubscribe_grace: Duration::from_secs(5),
            position_check: Duration::from_secs(1),
            gateway_id: "g1".into(),
            online_ttl: Duration::from_secs(5),
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
    /// Rooms seen with open polls, swept now and then to close polls past their end.
    poll_rooms: dashmap::DashSet<RoomId>,
    /// Counts ticks, for the slower sweep.
    ticks: std::sync::atomic::AtomicU64,
}

fn unavailable(e: &redis::RedisError) -> FanoutError {
    FanoutError::Unavailable(e.to_string())
}

impl RedisFanout {
    /// Connects to Redis and starts the subscriber.
    ///
    /// # Errors
    /// [`FanoutError::Unavailable`] when Redis cannot be reached.
    pub async fn connect(config: RedisConfig, hub: Arc<Hub>) -> Result<Self, FanoutError> {
        let shards = connect_shards(&config).await?;
        let subscribers = shards
            .iter()
            .map(|s| {
                Subscriber::start(
                    s.target.clone(),
                    s.conn.clone(),
                    hub.clone(),
                    config.clone(),
                    s.healthy.clone(),
                )
            })
            .collect();
        Ok(Self {
            publisher: Publisher::with(config.clone(), shards),
            view_script: redis::Script::new(include_str!("lua/view.lua")),
            history_script: redis::Script::new(include_str!("lua/history.lua")),
            config,
            hub,
            subscribers,
            votes_pending: dashmap::DashSet::new(),
            poll_rooms: dashmap::DashSet::new(),
            ticks: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// A command connection to `room`'s shard.
    fn conn(&self, room: &RoomId) -> Conn {
        self.publisher.shard(room).conn.clone()
    }
}

/// Maps the script's error replies to store errors.
fn script_error(e: &redis::RedisError) -> FanoutError {
    let text = e.to_string();
    let poll = || PollId::new("p-0").unwrap_or_else(|_| unreachable!("valid id"));
    if text.contains("unknown_poll") {
        FanoutError::UnknownPoll(poll())
    } else if text.contains("poll_closed") {
        FanoutError::PollClosed(poll())
    } else if text.contains("already_voted") {
        FanoutError::AlreadyVoted(poll())
    } else if text.contains("bad_option") {
        FanoutError::BadOption(poll(), 0)
    } else {
        unavailable(e)
    }
}

/// A random epoch: 16 hex digits.
fn new_epoch() -> String {
    crate::memory::new_epoch().to_string()
}

fn as_bytes(v: &redis::Value) -> Option<Bytes> {
    match v {
        redis::Value::BulkString(b) => Some(Bytes::copy_from_slice(b)),
        redis::Value::SimpleString(s) => Some(Bytes::copy_from_slice(s.as_bytes())),
        _ => None,
    }
}

fn as_u64(v: &redis::Value) -> u64 {
    match v {
        redis::Value::Int(n) => u64::try_from(*n).unwrap_or(0),
        redis::Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

fn as_string(v: &redis::Value) -> String {
    as_bytes(v)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn items(v: redis::Value) -> Vec<redis::Value> {
    match v {
        redis::Value::Array(a) => a,
        _ => Vec::new(),
    }
}

fn published(v: redis::Value) -> Result<Published, FanoutError> {
    let a = items(v);
    if a.len() < 3 {
        return Err(FanoutError::Unavailable("unexpected script reply".into()));
    }
    Ok(Published {
        epoch: Arc::from(as_string(&a[0])),
        seq: as_u64(&a[1]),
        duplicate: as_u64(&a[2]) == 1,
    })
}

#[async_trait]
impl Rooms for RedisFanout {
    async fn publish(
        &self,
        room: &RoomId,
        kind: &EventKind,
        data: &str,
        idempotency_key: Option<&str>,
    ) -> Result<Published, FanoutError> {
        self.publisher
            .publish(room, kind, data, idempotency_key)
            .await
    }

    async fn add_likes(&self, room: &RoomId, delta: u64) -> Result<Published, FanoutError> {
        published(
            self.publisher
                .room_op(room, "likes", "", &[&delta.to_string()])
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
            .arg(new_epoch())
            .arg(recent)
            .arg(since_epoch)
            .arg(since_seq)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        let a = items(v);
        if a.len() < 4 {
            return Err(FanoutError::Unavailable("unexpected view reply".into()));
        }
        let events: Vec<Bytes> = a[4..].iter().filter_map(as_bytes).collect();
        let recovered = as_u64(&a[3]) == 1;
        let polls = self.open_polls(room).await?;
        if !polls.is_empty() {
            self.poll_rooms.insert(room.clone());
        }
        Ok(RoomView {
            epoch: Arc::from(as_string(&a[0])),
            seq: as_u64(&a[1]),
            likes: as_u64(&a[2]),
            recent: if recovered {
                Vec::new()
            } else {
                events.clone()
            },
            polls,
            replay: recovered.then_some(events),
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
            .invoke_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        let a = items(v);
        if a.len() < 3 {
            return Err(FanoutError::Unavailable("unexpected history reply".into()));
        }
        let epoch: Arc<str> = Arc::from(as_string(&a[0]));
        let head = as_u64(&a[1]);
        match as_u64(&a[2]) {
            1 => Err(FanoutError::Gone { since, epoch }),
            2 => Err(FanoutError::Ahead { since, head }),
            _ => Ok(History {
                epoch,
                head,
                events: a[3..].iter().filter_map(as_bytes).collect(),
            }),
        }
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
    async fn online_total(&self, room: &RoomId) -> Result<u64, FanoutError> {
        let local = self.hub.online(room).to_string();
        let ttl = self.config.online_ttl.as_millis().to_string();
        let a = items(
            self.publisher
                .room_op(room, "online", "", &[&self.config.gateway_id, &local, &ttl])
                .await?,
        );
        Ok(a.get(1).map_or(0, as_u64))
    }

    async fn open_polls(&self, room: &RoomId) -> Result<Vec<Bytes>, FanoutError> {
        Ok(items(self.publisher.room_op(room, "polls", "", &[]).await?)
            .iter()
            .filter_map(as_bytes)
            .collect())
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
        let options: Vec<serde_json::Value> = poll
            .options
            .iter()
            .map(|t| serde_json::json!({"text": t, "votes": 0}))
            .collect();
        let doc =
            serde_json::json!({"question": poll.question, "options": options, "ends_at": ends_at})
                .to_string();
        let a = items(
            self.publisher
                .room_op(room, "poll_open", "", &[&doc])
                .await?,
        );
        self.poll_rooms.insert(room.clone());
        let id = a.get(3).map(as_string).unwrap_or_default();
        let id = PollId::new(&id).map_err(|e| FanoutError::Unavailable(e.to_string()))?;
        Ok((id, published(redis::Value::Array(a))?))
    }

    async fn close_poll(&self, room: &RoomId, poll: &PollId) -> Result<Published, FanoutError> {
        let r = self
            .publisher
            .room_op(room, "poll_close", "", &[poll.as_str()])
            .await;
        published(r.map_err(|e| with_poll(e, poll))?)
    }

    async fn vote(
        &self,
        room: &RoomId,
        poll: &PollId,
        user: &str,
        option: u32,
    ) -> Result<(), FanoutError> {
        let r = self
            .publisher
            .room_op(
                room,
                "vote",
                "",
                &[poll.as_str(), user, &option.to_string()],
            )
            .await;
        if r.is_ok() {
            self.votes_pending.insert(room.clone());
        }
        r.map(|_| ()).map_err(|e| match with_poll(e, poll) {
            FanoutError::BadOption(p, _) => FanoutError::BadOption(p, option),
            other => other,
        })
    }

    async fn tick(&self) {
        // Tallies of rooms that took votes here since the last tick; the script's dirty
        // flags publish each update once, whichever gateway flushes first. Every 20th
        // tick, every room with open polls, so polls past their end get closed.
        let sweep = self
            .ticks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(20);
        let mut rooms: Vec<RoomId> = self.votes_pending.iter().map(|r| r.clone()).collect();
        for r in &rooms {
            self.votes_pending.remove(r);
        }
        if sweep {
            rooms.extend(self.poll_rooms.iter().map(|r| r.clone()));
            self.poll_rooms.retain(|r| self.hub.contains(r));
        }
        rooms.sort();
        rooms.dedup();
        for room in rooms {
            if let Err(e) = self.publisher.room_op(&room, "poll_flush", "", &[]).await {
                tracing::warn!(%room, error = %e, "poll tallies not flushed");
                self.votes_pending.insert(room);
            }
        }
    }
}

fn with_poll(e: FanoutError, poll: &PollId) -> FanoutError {
    match e {
        FanoutError::UnknownPoll(_) => FanoutError::UnknownPoll(poll.clone()),
        FanoutError::PollClosed(_) => FanoutError::PollClosed(poll.clone()),
        FanoutError::AlreadyVoted(_) => FanoutError::AlreadyVoted(poll.clone()),
        FanoutError::BadOption(_, o) => FanoutError::BadOption(poll.clone(), o),
        other => other,
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
}
