//! Writing into rooms: the publisher library, and the write half of the store.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use danmaku_protocol::{EventKind, RoomId};

use super::conn::{Conn, Target};
use super::keys::RoomKeys;
use super::reply::{self, RoomOp, unavailable};
use super::{RedisConfig, new_epoch};
use crate::stats::StoreStats;
use crate::{FanoutError, NewEvent, Published, now_ms};

/// Publishes into rooms from any process: the publisher library for backend services
/// (no gateway, no subscription), and the write half of [`RedisFanout`].
///
/// ```no_run
/// # async fn demo() -> Result<(), danmaku_fanout::FanoutError> {
/// use danmaku_fanout::redis::{Publisher, RedisConfig};
/// use danmaku_protocol::{EventKind, RoomId};
///
/// let config = RedisConfig { urls: vec!["redis://127.0.0.1:6379".into()], ..RedisConfig::default() };
/// let publisher = Publisher::connect(config).await?;
/// let room = RoomId::new("shop-42").expect("valid room id");
/// let kind = EventKind::new("product.card").expect("valid kind");
/// let p = publisher.publish(&room, &kind, r#"{"sku":"A-1","price":199}"#, Some("card-A-1")).await?;
/// println!("sequenced as {} in epoch {}", p.seq, p.epoch);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Publisher {
    config: RedisConfig,
    pub(super) shards: Vec<Shard>,
    room_script: redis::Script,
    /// Shared with the store's subscribers: one set of counts per store.
    pub(super) stats: Arc<StoreStats>,
}

/// One Redis server (or the whole Cluster) of the store.
#[derive(Clone)]
pub(super) struct Shard {
    pub(super) target: Target,
    /// Commands and scripts (multiplexed, reconnects by itself).
    pub(super) conn: Conn,
    /// False after an I/O error, true again after a success (for `/readyz`).
    pub(super) healthy: Arc<AtomicBool>,
}

pub(super) async fn connect_shards(
    config: &RedisConfig,
    stats: &Arc<StoreStats>,
) -> Result<Vec<Shard>, FanoutError> {
    if config.urls.is_empty() {
        return Err(FanoutError::Unavailable("no Redis URL configured".into()));
    }
    let targets = if config.cluster {
        vec![Target::Cluster(config.urls.clone())]
    } else {
        let clients: Result<Vec<_>, _> = config
            .urls
            .iter()
            .map(|u| redis::Client::open(u.as_str()))
            .collect();
        clients
            .map_err(|e| unavailable(&e))?
            .into_iter()
            .map(Target::Single)
            .collect()
    };
    let mut shards = Vec::with_capacity(targets.len());
    for target in targets {
        let conn = Conn::open(&target, config.call_timeout, stats.clone())
            .await
            .map_err(|e| unavailable(&e))?;
        shards.push(Shard {
            target,
            conn,
            healthy: Arc::new(AtomicBool::new(true)),
        });
    }
    Ok(shards)
}

/// The shard of `room` among `n`: FNV-1a of the id, then jump consistent hashing
/// (adding a shard moves only about 1/n of the rooms).
pub(super) fn shard_index(room: &RoomId, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let mut key = room
        .as_str()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    let (mut b, mut j) = (0i64, 0i64);
    while j < n as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    usize::try_from(b).unwrap_or(0)
}

impl Publisher {
    /// Connects to Redis.
    ///
    /// # Errors
    /// [`FanoutError::Unavailable`] when Redis cannot be reached.
    pub async fn connect(config: RedisConfig) -> Result<Self, FanoutError> {
        let stats = Arc::default();
        let shards = connect_shards(&config, &stats).await?;
        Ok(Self::with(config, shards, stats))
    }

    pub(super) fn with(config: RedisConfig, shards: Vec<Shard>, stats: Arc<StoreStats>) -> Self {
        Self {
            shards,
            room_script: room_script(&config),
            config,
            stats,
        }
    }

    /// What this publisher's calls counted: errors, timeouts, latency.
    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    pub(super) fn shard(&self, room: &RoomId) -> &Shard {
        &self.shards[shard_index(room, self.shards.len())]
    }

    /// Sequences one event into `room` as a backend does: at the kind's backend
    /// priority (high, except the chatter kinds), once per `idempotency_key`.
    ///
    /// # Errors
    /// [`FanoutError::Unavailable`] when Redis cannot be reached, and as
    /// [`Publisher::publish_event`].
    pub async fn publish(
        &self,
        room: &RoomId,
        kind: &EventKind,
        data: &str,
        idempotency_key: Option<&str>,
    ) -> Result<Published, FanoutError> {
        let event = NewEvent {
            idempotency_key,
            ..NewEvent::from_backend(kind, data)
        };
        self.publish_event(room, event).await
    }

    /// Retries an event a backend published (see [`Publisher::publish`]) whose first
    /// attempt got no certain answer (see [`crate::Rooms::publish_retry`]).
    ///
    /// # Errors
    /// As [`Publisher::publish`], and [`FanoutError::KeyUnknown`].
    pub async fn publish_retry(
        &self,
        room: &RoomId,
        kind: &EventKind,
        data: &str,
        idempotency_key: &str,
    ) -> Result<Published, FanoutError> {
        let event = NewEvent {
            idempotency_key: Some(idempotency_key),
            retry: true,
            ..NewEvent::from_backend(kind, data)
        };
        self.publish_event(room, event).await
    }

    /// Sequences `event` into `room` (see [`crate::Rooms::publish_event`]).
    ///
    /// # Errors
    /// [`FanoutError::Unavailable`] when Redis cannot be reached; the refusals of
    /// [`crate::Rooms::publish_event`].
    pub async fn publish_event(
        &self,
        room: &RoomId,
        event: NewEvent<'_>,
    ) -> Result<Published, FanoutError> {
        reply::published(self.room_op(room, &RoomOp::Event(event)).await?)
    }

    pub(super) fn keys(&self, room: &RoomId) -> RoomKeys {
        RoomKeys::new(&self.config.prefix, room)
    }

    /// Moves `room` to a new epoch if it is still in `epoch`, which a gateway found
    /// gone back (Redis lost acknowledged writes); answers the room's epoch and seq.
    ///
    /// # Errors
    /// [`FanoutError::Unavailable`] when Redis cannot be reached.
    pub(super) async fn roll_over(
        &self,
        room: &RoomId,
        epoch: &str,
    ) -> Result<Published, FanoutError> {
        reply::published(self.room_op(room, &RoomOp::RollOver { epoch }).await?)
    }

    /// Runs one op of the room script.
    pub(super) async fn room_op(
        &self,
        room: &RoomId,
        op: &RoomOp<'_>,
    ) -> Result<redis::Value, FanoutError> {
        let c = &self.config;
        let now = now_ms();
        let mut inv = self.room_script.prepare_invoke();
        inv.key(self.keys(room).tag())
            .arg(op.name())
            .arg(now)
            .arg(new_epoch())
            .arg(refresh_window(now, millis(c.room_ttl)));
        for a in op.args() {
            inv.arg(a);
        }
        let shard = self.shard(room);
        let mut conn = shard.conn.clone();
        let result = match tokio::time::timeout(c.call_timeout, inv.invoke_async(&mut conn)).await {
            Ok(answer) => answer.map_err(|e| op.error(&e)),
            Err(_) => {
                StoreStats::inc(&self.stats.timeouts);
                Err(op.no_answer(c.call_timeout))
            }
        };
        // Unhealthy on anything but an answer (a refused vote is an answer).
        let reached = !matches!(
            result,
            Err(FanoutError::Unavailable(_) | FanoutError::OutcomeUnknown(_))
        );
        shard.healthy.store(reached, Ordering::Relaxed);
        result
    }
}

/// The room script with the store's settings written into it (they are constants of
/// the script, not arguments of every call: see `lua/room.lua`).
fn room_script(c: &RedisConfig) -> redis::Script {
    let settings = format!(
        "{}, \"{}\", \"{}\", {}, \"{}\", {}, {}",
        c.history_len,
        millis(c.history_age),
        millis(c.room_ttl),
        c.cluster,
        c.idempotency_ttl.as_secs().max(1),
        crate::interaction::MAX_ENTRANTS,
        crate::interaction::MAX_OPEN_INTERACTIONS,
    );
    let text = include_str!("lua/room.lua").replacen("SETTINGS", &settings, 1);
    redis::Script::new(&text)
}

/// Which refresh window `now_ms` falls in: the room script refreshes a room's expiry
/// once per window of an eighth of its TTL, and compares windows as strings (so a
/// publish converts no number in Lua).
pub(super) fn refresh_window(now_ms: u64, ttl_ms: u64) -> u64 {
    now_ms / (ttl_ms / 8).max(1)
}

/// A duration in whole milliseconds, at least 1 (Redis refuses a zero expiry).
pub(super) fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_windows_are_an_eighth_of_the_ttl() {
        assert_eq!(refresh_window(0, 8_000), 0);
        assert_eq!(refresh_window(999, 8_000), 0);
        assert_eq!(refresh_window(1_000, 8_000), 1);
        assert_eq!(refresh_window(1_764_000_000_000, 3_600_000), 3_920_000);
        // A TTL under 8 ms still has windows (of 1 ms).
        assert_eq!(refresh_window(5, 1), 5);
    }

    #[test]
    fn rooms_spread_over_shards_and_move_little_when_one_is_added() {
        let rooms: Vec<RoomId> = (0..3_000)
            .map(|i| RoomId::new(&format!("room-{i}")).expect("room"))
            .collect();
        let count = |n: usize, s: usize| rooms.iter().filter(|r| shard_index(r, n) == s).count();
        for s in 0..3 {
            assert!(
                (800..1_200).contains(&count(3, s)),
                "shard {s}: {}",
                count(3, s)
            );
        }
        let moved = rooms
            .iter()
            .filter(|r| shard_index(r, 3) != shard_index(r, 4))
            .count();
        assert!(
            (500..1_000).contains(&moved),
            "about a quarter move: {moved}"
        );
        assert!(rooms.iter().all(|r| shard_index(r, 1) == 0));
    }
}
