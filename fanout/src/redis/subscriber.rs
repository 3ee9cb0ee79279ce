//! The gateway's pub/sub side: one connection, one task, every local room.
//!
//! # Delivery semantics
//! Pub/sub is at most once: messages are lost while the connection is down and can be
//! lost under pressure. The task keeps each room's [`Cursor`] and delivers to
//! the hub strictly in order: a message after a gap is preceded by the missing events
//! read from the room's stream; a resubscribe and a periodic position check (every
//! `position_check`) catch up rooms whose tail was lost; an epoch change, or a gap the
//! stream no longer holds, is delivered as [`RESET_SEQ`] so viewers get a `reset`.
//!
//! # Backpressure
//! Watch requests go through a bounded channel (`watch` waits when it is full). The
//! redis client buffers pushed messages until this task reads them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use danmaku_protocol::RoomId;
use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use redis::cluster_async::ClusterConnection;
use redis::streams::StreamRangeReply;
use redis::{AsyncCommands, PushInfo, PushKind};
use tokio::sync::{mpsc, oneshot};

use super::RedisConfig;
use super::conn::{Conn, Target};
use super::keys::RoomKeys;
use super::record::Record;
use crate::position::{Behind, Cursor, Step};
use crate::{FanoutError, Hub, RESET_SEQ};

type Ack = oneshot::Sender<Result<(), FanoutError>>;

/// Handle to the subscriber task.
pub(crate) struct Subscriber {
    tx: mpsc::Sender<(RoomId, Ack)>,
    connected: Arc<AtomicBool>,
}

struct RoomSub {
    room: RoomId,
    keys: RoomKeys,
    /// This gateway's position in the room (epoch empty until the room has one).
    cursor: Cursor,
    idle_since: Option<Instant>,
    /// The store's head when a position check last found this room behind.
    behind: Option<u64>,
}

struct Task {
    target: Target,
    conn: Conn,
    hub: Arc<Hub>,
    config: RedisConfig,
    /// By channel name.
    rooms: HashMap<String, RoomSub>,
    connected: Arc<AtomicBool>,
    healthy: Arc<AtomicBool>,
}

impl Subscriber {
    pub(crate) fn start(
        target: Target,
        conn: Conn,
        hub: Arc<Hub>,
        config: RedisConfig,
        healthy: Arc<AtomicBool>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(1024);
        let connected = Arc::new(AtomicBool::new(false));
        let task = Task {
            target,
            conn,
            hub,
            config,
            rooms: HashMap::new(),
            connected: connected.clone(),
            healthy,
        };
        // Owned by the handle: the task ends when every sender (the store) is dropped.
        tokio::spawn(task.run(rx));
        Self { tx, connected }
    }

    /// Makes sure this gateway receives `room`'s events.
    ///
    /// # Errors
    /// [`FanoutError::Unavailable`] when Redis cannot be reached.
    pub(crate) async fn watch(&self, room: &RoomId) -> Result<(), FanoutError> {
        let (ack, done) = oneshot::channel();
        let down = || FanoutError::Unavailable("pub/sub unavailable".into());
        self.tx
            .send((room.clone(), ack))
            .await
            .map_err(|_| down())?;
        match tokio::time::timeout(Duration::from_secs(5), done).await {
            Ok(Ok(r)) => r,
            _ => Err(down()),
        }
    }

    pub(crate) fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<(RoomId, Ack)>) {
        let mut backoff = Backoff::default();
        loop {
            let opened = match Source::open(&self.target).await {
                Ok(mut source) => {
                    let channels: Vec<String> = self.rooms.keys().cloned().collect();
                    match channels.is_empty() {
                        true => Ok(source),
                        false => source.subscribe(&channels).await.map(|()| source),
                    }
                }
                Err(e) => Err(e),
            };
            let mut source = match opened {
                Ok(source) => source,
                Err(e) => {
                    self.connected.store(false, Ordering::Relaxed);
                    // Refuse watches while down, without waiting for the retry.
                    while let Ok((_, ack)) = rx.try_recv() {
                        let _ = ack.send(Err(FanoutError::Unavailable(e.to_string())));
                    }
                    tokio::time::sleep(backoff.next_delay()).await;
                    continue;
                }
            };
            backoff = Backoff::default();
            self.connected.store(true, Ordering::Relaxed);
            // Anything published while we were not subscribed is in the streams.
            self.check_positions(true).await;
            let mut tick = tokio::time::interval(self.config.position_check);
            loop {
                tokio::select! {
                    incoming = source.next() => match incoming {
                        Some(Incoming::Message(channel, payload)) => self.on_message(&channel, &payload).await,
                        Some(Incoming::Resync) => self.check_positions(true).await,
                        None => break,
                    },
                    cmd = rx.recv() => match cmd {
                        Some((room, ack)) => {
                            let r = self.watch(&mut source, room).await;
                            let _ = ack.send(r);
                        }
                        None => return,
                    },
                    _ = tick.tick() => {
                        self.check_positions(false).await;
                        self.unwatch_idle(&mut source).await;
                    }
                }
            }
            self.connected.store(false, Ordering::Relaxed);
        }
    }

    async fn watch(&mut self, source: &mut Source, room: RoomId) -> Result<(), FanoutError> {
        let keys = RoomKeys::new(&self.config.prefix, &room);
        if let Some(sub) = self.rooms.get_mut(&keys.channel) {
            sub.idle_since = None;
            return Ok(());
        }
        let down = |e: redis::RedisError| FanoutError::Unavailable(e.to_string());
        // Position first, then subscribe: anything in between is a gap, filled from the
        // stream when the next message or the position check shows it.
        let mut conn = self.conn.clone();
        let (epoch, seq): (Option<String>, Option<u64>) = redis::cmd("HMGET")
            .arg(&keys.meta)
            .arg("epoch")
            .arg("seq")
            .query_async(&mut conn)
            .await
            .map_err(down)?;
        source
            .subscribe(std::slice::from_ref(&keys.channel))
            .await
            .map_err(down)?;
        let channel = keys.channel.clone();
        let sub = RoomSub {
            room,
            keys,
            cursor: Cursor::new(Arc::from(epoch.unwrap_or_default()), seq.unwrap_or(0)),
            idle_since: None,
            behind: None,
        };
        self.rooms.insert(channel, sub);
        Ok(())
    }

    async fn unwatch_idle(&mut self, source: &mut Source) {
        let now = Instant::now();
        let grace = self.config.unsubscribe_grace;
        let mut gone = Vec::new();
        for (channel, sub) in &mut self.rooms {
            if self.hub.contains(&sub.room) {
                sub.idle_since = None;
            } else if sub.idle_since.get_or_insert(now).elapsed() >= grace {
                gone.push(channel.clone());
            }
        }
        for channel in gone {
            if source.unsubscribe(&channel).await.is_ok() {
                self.rooms.remove(&channel);
            }
        }
    }

    /// Handles an event's record published on `channel`.
    async fn on_message(&mut self, channel: &str, payload: &[u8]) {
        let Some(sub) = self.rooms.get_mut(channel) else {
            return;
        };
        let record = match Record::parse(payload) {
            Ok(r) => r,
            Err(e) => {
                // Not ours to deliver; the position check fills the seq from the stream.
                tracing::warn!(room = %sub.room, error = %e, "unreadable pub/sub message");
                return;
            }
        };
        let seq = record.seq;
        match sub.cursor.step_in(record.epoch, seq) {
            Step::Duplicate => return,
            Step::Reset => {
                // The room's history was lost (store restart, expiry): continuity restarts.
                sub.cursor.reset(Arc::from(record.epoch), seq);
                self.hub.deliver(&sub.room, RESET_SEQ, &Bytes::new());
                return;
            }
            Step::Gap { to, .. } => {
                if !self.fill(channel, to).await {
                    return;
                }
            }
            Step::Write { .. } => {}
        }
        let Some(sub) = self.rooms.get_mut(channel) else {
            return;
        };
        if sub.cursor.step(seq, seq) != (Step::Write { skip: 0 }) {
            return;
        }
        match record.encode(&sub.room) {
            Ok(frame) => {
                sub.cursor.wrote(seq);
                self.hub.deliver(&sub.room, seq, &frame);
            }
            Err(e) => tracing::warn!(room = %sub.room, error = %e, "unreadable event record"),
        }
    }

    /// Delivers a room's events after its cursor up to `upto` from its stream. Returns
    /// false (after delivering a reset) when the stream no longer holds them.
    async fn fill(&mut self, channel: &str, upto: u64) -> bool {
        let Some(sub) = self.rooms.get(channel) else {
            return false;
        };
        let (stream, from) = (sub.keys.stream.clone(), sub.cursor.last() + 1);
        let mut conn = self.conn.clone();
        let reply: Result<StreamRangeReply, _> = conn
            .xrange(&stream, format!("{from}-0"), format!("{upto}-0"))
            .await;
        let Some(sub) = self.rooms.get_mut(channel) else {
            return false;
        };
        let Ok(reply) = reply else {
            self.healthy.store(false, Ordering::Relaxed);
            return false;
        };
        for entry in reply.ids {
            let seq = entry
                .id
                .split('-')
                .next()
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
            if sub.cursor.step(seq, seq) != (Step::Write { skip: 0 }) {
                break;
            }
            let Some(redis::Value::BulkString(record)) = entry.map.get("r") else {
                break;
            };
            let Ok(frame) = Record::parse(record).and_then(|r| r.encode(&sub.room)) else {
                break; // unreadable: a reset below, never a silent gap
            };
            sub.cursor.wrote(seq);
            self.hub.deliver(&sub.room, seq, &frame);
        }
        if sub.cursor.missing(upto) > 0 {
            // Trimmed away: tell viewers where continuity restarts.
            let epoch = sub.cursor.epoch().clone();
            sub.cursor.reset(epoch, upto);
            self.hub.deliver(&sub.room, RESET_SEQ, &Bytes::new());
            return false;
        }
        true
    }

    /// Compares every room's position with the store: fills lost tails, resets on a
    /// new epoch.
    /// With `force`, every room behind is filled at once (after a reconnect or a lost
    /// push); otherwise only rooms found behind twice in a row.
    async fn check_positions(&mut self, force: bool) {
        // Concurrent reads over the multiplexed connection, 512 rooms at a time: about
        // one round trip per chunk, so the task keeps delivering messages. (Not one
        // pipeline: a Cluster pipeline must stay within one slot.)
        let channels: Vec<String> = self.rooms.keys().cloned().collect();
        for chunk in channels.chunks(512) {
            let reads = chunk
                .iter()
                .filter_map(|channel| self.rooms.get(channel))
                .map(|sub| {
                    let mut conn = self.conn.clone();
                    let meta = sub.keys.meta.clone();
                    async move {
                        let head: redis::RedisResult<(Option<String>, Option<u64>)> =
                            redis::cmd("HMGET")
                                .arg(&meta)
                                .arg("epoch")
                                .arg("seq")
                                .query_async(&mut conn)
                                .await;
                        head
                    }
                });
            let heads: Result<Vec<_>, _> = futures_util::future::join_all(reads)
                .await
                .into_iter()
                .collect();
            let Ok(heads) = heads else {
                self.healthy.store(false, Ordering::Relaxed);
                return;
            };
            self.healthy.store(true, Ordering::Relaxed);
            for (channel, head) in chunk.iter().zip(heads) {
                if let (Some(epoch), Some(seq)) = head {
                    self.on_position(channel, epoch, seq, force).await;
                }
            }
        }
    }

    /// Compares one room's position with the store's.
    async fn on_position(&mut self, channel: &str, epoch: String, seq: u64, force: bool) {
        let Some(sub) = self.rooms.get_mut(channel) else {
            return;
        };
        let missing = match sub.cursor.behind(&epoch, seq) {
            Behind::NewEpoch => {
                sub.cursor.reset(Arc::from(epoch), seq);
                sub.behind = None;
                self.hub.deliver(&sub.room, RESET_SEQ, &Bytes::new());
                return;
            }
            Behind::No => {
                sub.cursor.know_epoch(&epoch);
                sub.behind = None;
                return;
            }
            Behind::By(n) => n,
        };
        sub.cursor.know_epoch(&epoch);
        // Behind: fill only if we were already behind the head seen at the previous
        // check — an event published a moment ago is usually still on its way.
        let last = seq - missing;
        let was_behind = matches!(sub.behind, Some(previous) if last < previous);
        if force || was_behind {
            sub.behind = None;
            self.fill(channel, seq).await;
        } else {
            sub.behind = Some(seq);
        }
    }
}

/// Delays between attempts to (re)open the pub/sub connection: 100 ms, doubling up
/// to 5 s, so a Redis that is down is not hammered by every gateway at once.
#[derive(Default)]
struct Backoff {
    attempts: u32,
}

impl Backoff {
    fn next_delay(&mut self) -> Duration {
        let delay = Duration::from_millis(100) * 2u32.saturating_pow(self.attempts.min(6));
        self.attempts = self.attempts.saturating_add(1);
        delay.min(Duration::from_secs(5))
    }
}

/// What the pub/sub connection brings.
enum Incoming {
    /// A message on a room channel.
    Message(String, Vec<u8>),
    /// Messages may have been lost (a reconnect, a full buffer): check every room.
    Resync,
}

/// Messages published into pushed to this gateway: classic pub/sub on a standalone
/// server, sharded pub/sub (SSUBSCRIBE) on a Cluster.
enum Source {
    Single(PubSubSink, PubSubStream),
    Cluster {
        conn: ClusterConnection,
        pushes: mpsc::Receiver<PushInfo>,
        /// Set when a push found the buffer full (it was dropped): resync.
        overflow: Arc<AtomicBool>,
    },
}

/// Pushes buffered per Cluster connection; beyond, they are dropped and the rooms are
/// caught up from their streams.
const PUSH_BUFFER: usize = 16 * 1024;

/// How long a (un)subscribe may take before the task gives up on it.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(3);

impl Source {
    async fn open(target: &Target) -> redis::RedisResult<Self> {
        match target {
            Target::Single(client) => {
                let (sink, stream) = client.get_async_pubsub().await?.split();
                Ok(Self::Single(sink, stream))
            }
            Target::Cluster(seeds) => {
                let (tx, pushes) = mpsc::channel(PUSH_BUFFER);
                let overflow = Arc::new(AtomicBool::new(false));
                let full = overflow.clone();
                let sender = move |info: PushInfo| {
                    tx.try_send(info)
                        .map_err(|_| full.store(true, Ordering::Relaxed))
                };
                let client = redis::cluster::ClusterClientBuilder::new(seeds.clone())
                    .use_protocol(redis::ProtocolVersion::RESP3)
                    .push_sender(sender)
                    .build()?;
                let conn = client.get_async_connection().await?;
                Ok(Self::Cluster {
                    conn,
                    pushes,
                    overflow,
                })
            }
        }
    }

    /// Subscribes, giving up after [`SUBSCRIBE_TIMEOUT`] (the task must not hang on a
    /// server that is down).
    async fn subscribe(&mut self, channels: &[String]) -> redis::RedisResult<()> {
        let timed_out = || redis::RedisError::from((redis::ErrorKind::Io, "subscribe timed out"));
        tokio::time::timeout(SUBSCRIBE_TIMEOUT, self.subscribe_now(channels))
            .await
            .map_err(|_| timed_out())?
    }

    async fn subscribe_now(&mut self, channels: &[String]) -> redis::RedisResult<()> {
        match self {
            Self::Single(sink, _) => sink.subscribe(channels).await,
            Self::Cluster { conn, .. } => {
                // One SSUBSCRIBE per channel: channels of different slots live on
                // different nodes.
                for c in channels {
                    conn.ssubscribe(c).await?;
                }
                Ok(())
            }
        }
    }

    async fn unsubscribe(&mut self, channel: &str) -> redis::RedisResult<()> {
        let timed_out = || redis::RedisError::from((redis::ErrorKind::Io, "unsubscribe timed out"));
        let unsubscribe = async {
            match self {
                Self::Single(sink, _) => sink.unsubscribe(channel).await,
                Self::Cluster { conn, .. } => conn.sunsubscribe(channel).await,
            }
        };
        tokio::time::timeout(SUBSCRIBE_TIMEOUT, unsubscribe)
            .await
            .map_err(|_| timed_out())?
    }

    /// The next message; `None` when the connection is gone for good.
    ///
    /// # Cancel safety
    /// Cancel safe: both underlying receivers are.
    async fn next(&mut self) -> Option<Incoming> {
        match self {
            Self::Single(_, stream) => {
                let m = stream.next().await?;
                Some(Incoming::Message(
                    m.get_channel_name().to_owned(),
                    m.get_payload_bytes().to_vec(),
                ))
            }
            Self::Cluster {
                pushes, overflow, ..
            } => loop {
                if overflow.swap(false, Ordering::Relaxed) {
                    return Some(Incoming::Resync);
                }
                let push = pushes.recv().await?;
                match push.kind {
                    PushKind::SMessage | PushKind::Message => {
                        if let [channel, payload, ..] = push.data.as_slice()
                            && let (redis::Value::BulkString(c), redis::Value::BulkString(p)) =
                                (channel, payload)
                        {
                            return Some(Incoming::Message(
                                String::from_utf8_lossy(c).into_owned(),
                                p.clone(),
                            ));
                        }
                    }
                    PushKind::Disconnection => return Some(Incoming::Resync),
                    _ => {}
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn retries_back_off_up_to_five_seconds() {
        let mut b = super::Backoff::default();
        let delays: Vec<u128> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    }
}
