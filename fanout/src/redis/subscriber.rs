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
//! # Lost writes
//! A store that comes back with an older state of a room (a restart from a stale
//! snapshot, a failover to a lagging replica) would hand out seqs again that viewers
//! already hold. Only a gateway can see it, by what it delivered: after every
//! (re)connect, before handling a message, each followed room's head must not be below
//! the cursor and the stream must still hold, under the last seq delivered, the record
//! that was delivered (compared by [`print`]); and pub/sub must never bring a seq twice
//! that no read brought. Otherwise the room is moved to a new epoch (`roll_over` in the
//! room script) and local viewers get a reset.
//!
//! # Liveness
//! A connection can stall without closing (a proxy that stops forwarding). Every
//! `position_check` the task publishes a probe on a channel of its own; when a
//! confirmed probe has not come back within `probe_timeout`, the connection is taken
//! for dead: the gateway reports not ready, and the task reconnects, resubscribes and
//! fills every room from its stream. Meanwhile the position check keeps rooms moving.
//!
//! Nothing the task awaits blocks delivery for long: a `watch` reads the room's
//! position and subscribes beside the loop (the join is answered once the position
//! is known), and every store call is bounded by `call_timeout`.
//!
//! # Backpressure
//! Watch requests go through a bounded channel (`watch` waits when it is full). Pushed
//! messages wait in a bounded buffer ([`PUSH_BUFFER`]) until this task reads them; a
//! push that finds it full is dropped and every room caught up from its stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use danmaku_protocol::RoomId;
use dashmap::DashSet;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::streams::StreamRangeReply;
use redis::{AsyncCommands, ProtocolVersion, PushInfo, PushKind};
use tokio::sync::{mpsc, oneshot};

use super::RedisConfig;
use super::conn::{Conn, Target};
use super::keys::RoomKeys;
use super::publisher::Publisher;
use super::record::Record;
use crate::position::{Behind, Cursor, Step};
use crate::stats::StoreStats;
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
    /// The highest seq of the cursor's epoch passed on from a read of the store (a
    /// position, a fill from the stream) rather than from pub/sub. A pub/sub copy of a
    /// seq up to here is expected (the read got it first); of a seq beyond it, it is
    /// the second publish of that seq in the epoch: the store lost writes.
    read_upto: u64,
    /// The print of the record delivered at the cursor's last seq (none after a reset
    /// or a position taken from a read): after a reconnect, the store must still hold
    /// that record under that seq, or it lost writes ([`print`]).
    last_print: Option<u64>,
    /// The epochs this room left here, newest last (at most [`RETIRED_EPOCHS`]): a
    /// message of one of them, still on its way when the room moved on, is stale.
    retired: std::collections::VecDeque<Arc<str>>,
}

/// Left epochs remembered per room (they are random; one is enough but for a room
/// that moves twice within one message's flight).
const RETIRED_EPOCHS: usize = 4;

impl RoomSub {
    /// Continuity restarts at `seq` of `epoch`.
    fn reset(&mut self, epoch: Arc<str>, seq: u64) {
        let left = self.cursor.epoch();
        if !left.is_empty() && *left != epoch {
            if self.retired.len() == RETIRED_EPOCHS {
                self.retired.pop_front();
            }
            self.retired.push_back(left.clone());
        }
        self.cursor.reset(epoch, seq);
        self.read_upto = seq;
        self.behind = None;
        self.last_print = None;
    }

    /// Records that the event `seq`, whose record is `record`, was passed on.
    fn wrote(&mut self, seq: u64, record: &[u8]) {
        self.cursor.wrote(seq);
        self.last_print = Some(print(record));
    }
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
    /// Starts the new epoch of a room the store lost writes of; its stats count this
    /// task's stalls, reconnects, rollovers and delivery lag.
    publisher: Publisher,
    /// This task's probe channel.
    probe_channel: String,
    /// Callers waiting for a room's position read, by channel: a join storm into a new
    /// room reads its position once. Bounded by the callers (one entry per join in
    /// flight); emptied when the read ends or the connection is replaced.
    waiting: HashMap<String, Vec<Ack>>,
    /// Rooms whose events of a timed kind this task passed on: the store sweeps them,
    /// so an interaction closes at its end even when the gateway that opened it is gone.
    timed: Arc<DashSet<RoomId>>,
}

/// A watch whose position read finished: the room, its keys, and the position (or
/// why it could not be read). Its callers wait in [`Task::waiting`].
struct Watched {
    room: RoomId,
    keys: RoomKeys,
    position: Result<Head, FanoutError>,
}

/// The liveness probe of one connection.
#[derive(Default)]
struct Probe {
    /// Probes sent so far (the payload of the next is this + 1).
    sent: u64,
    /// The probe in flight, and when Redis confirmed publishing it.
    awaiting: Option<(u64, Option<Instant>)>,
}

impl Probe {
    /// Whether a confirmed probe is overdue.
    fn overdue(&self, timeout: Duration) -> bool {
        matches!(self.awaiting, Some((_, Some(at))) if at.elapsed() > timeout)
    }
}

impl Subscriber {
    pub(crate) fn start(
        target: Target,
        conn: Conn,
        hub: Arc<Hub>,
        config: RedisConfig,
        healthy: Arc<AtomicBool>,
        publisher: Publisher,
        timed: Arc<DashSet<RoomId>>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(1024);
        let connected = Arc::new(AtomicBool::new(false));
        let probe_channel = format!(
            "{}:probe:{}:{}",
            config.prefix,
            config.gateway_id,
            crate::memory::new_epoch()
        );
        let task = Task {
            target,
            conn,
            hub,
            config,
            rooms: HashMap::new(),
            connected: connected.clone(),
            healthy,
            probe_channel,
            waiting: HashMap::new(),
            publisher,
            timed,
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
        let mut first = true;
        loop {
            if !std::mem::take(&mut first) {
                StoreStats::inc(&self.publisher.stats.reconnects);
            }
            let opened = match Source::open(&self.target).await {
                Ok(mut source) => {
                    let mut channels: Vec<String> = self.rooms.keys().cloned().collect();
                    channels.push(self.probe_channel.clone());
                    source.subscribe(&channels).await.map(|()| source)
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
            // Anything published while we were not subscribed is in the streams; and
            // the store may be another one now (restarted, failed over): no message is
            // handled before every room's position is verified against it.
            if !self.check_positions(true).await {
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
            backoff = Backoff::default();
            self.connected.store(true, Ordering::Relaxed);
            let served = self.serve(&mut source, &mut rx).await;
            // Position reads in flight were dropped with the connection's loop.
            for (_, acks) in self.waiting.drain() {
                for ack in acks {
                    let _ = ack.send(Err(FanoutError::Unavailable("pub/sub reconnecting".into())));
                }
            }
            if served.is_break() {
                return;
            }
            self.connected.store(false, Ordering::Relaxed);
        }
    }

    /// Serves one connection until it ends or stalls (continue: reconnect) or the
    /// store is gone (break).
    async fn serve(
        &mut self,
        source: &mut Source,
        rx: &mut mpsc::Receiver<(RoomId, Ack)>,
    ) -> std::ops::ControlFlow<()> {
        use std::ops::ControlFlow;
        let mut tick = tokio::time::interval(self.config.position_check);
        let mut watches: FuturesUnordered<BoxFuture<'static, Watched>> = FuturesUnordered::new();
        // Subscribes sent beside the loop; a failed one means the connection is unwell.
        let mut subscribes: FuturesUnordered<BoxFuture<'static, bool>> = FuturesUnordered::new();
        let (confirmed_tx, mut confirmed) = mpsc::channel::<u64>(8);
        let mut probe = Probe::default();
        loop {
            tokio::select! {
                incoming = source.next() => match incoming {
                    Some(Incoming::Message(channel, payload)) => {
                        if channel == self.probe_channel {
                            let n = std::str::from_utf8(&payload).ok().and_then(|p| p.parse().ok());
                            if probe.awaiting.is_some_and(|(sent, _)| Some(sent) == n) {
                                probe.awaiting = None;
                            }
                        } else {
                            self.on_message(&channel, &payload).await;
                        }
                    }
                    Some(Incoming::Resync) => {
                        if !self.check_positions(true).await {
                            return ControlFlow::Continue(());
                        }
                    }
                    // The Cluster client would repair the node's connection and
                    // resubscribe by itself, but not always every channel of every
                    // node: start over on a fresh connection instead.
                    Some(Incoming::Disconnected) => return ControlFlow::Continue(()),
                    None => return ControlFlow::Continue(()),
                },
                cmd = rx.recv() => match cmd {
                    Some((room, ack)) => self.watch(room, ack, &mut watches),
                    None => return ControlFlow::Break(()),
                },
                Some(w) = watches.next(), if !watches.is_empty() => {
                    if let Some(subscribe) = self.watched(w, source) {
                        subscribes.push(subscribe);
                    }
                }
                Some(ok) = subscribes.next(), if !subscribes.is_empty() => {
                    if !ok {
                        tracing::warn!("pub/sub subscribe failed; reconnecting");
                        return ControlFlow::Continue(());
                    }
                }
                Some(n) = confirmed.recv() => {
                    if let Some((sent, at @ None)) = &mut probe.awaiting && *sent == n {
                        *at = Some(Instant::now());
                    }
                }
                _ = tick.tick() => {
                    if probe.overdue(self.config.probe_timeout) {
                        StoreStats::inc(&self.publisher.stats.pubsub_stalls);
                        tracing::warn!(
                            timeout_ms = self.config.probe_timeout.as_millis() as u64,
                            "pub/sub connection stalled (probe not delivered); reconnecting"
                        );
                        return ControlFlow::Continue(());
                    }
                    if probe.awaiting.is_none() {
                        probe.sent += 1;
                        probe.awaiting = Some((probe.sent, None));
                        self.send_probe(probe.sent, confirmed_tx.clone());
                    }
                    let _ = self.check_positions(false).await;
                    self.unwatch_idle(source).await;
                }
            }
        }
    }

    /// Publishes probe `n` on the command connection, beside the loop; `confirmed`
    /// hears when Redis took it (only then does its wait count).
    fn send_probe(&self, n: u64, confirmed: mpsc::Sender<u64>) {
        let mut conn = self.conn.clone();
        let channel = self.probe_channel.clone();
        let command = if self.config.cluster {
            "SPUBLISH"
        } else {
            "PUBLISH"
        };
        let timeout = self.config.call_timeout;
        tokio::spawn(async move {
            let mut cmd = redis::cmd(command);
            cmd.arg(&channel).arg(n);
            let publish = cmd.query_async::<redis::Value>(&mut conn);
            if let Ok(Ok(_)) = tokio::time::timeout(timeout, publish).await {
                let _ = confirmed.send(n).await;
            }
        });
    }

    /// Starts watching `room`: its position is read beside the loop, and the caller
    /// answered when it is known ([`Task::watched`]).
    fn watch(
        &mut self,
        room: RoomId,
        ack: Ack,
        watches: &mut FuturesUnordered<BoxFuture<'static, Watched>>,
    ) {
        let keys = RoomKeys::new(&self.config.prefix, &room);
        if let Some(sub) = self.rooms.get_mut(&keys.channel) {
            sub.idle_since = None;
            let _ = ack.send(Ok(()));
            return;
        }
        if let Some(acks) = self.waiting.get_mut(&keys.channel) {
            acks.push(ack);
            return;
        }
        self.waiting.insert(keys.channel.clone(), vec![ack]);
        let conn = self.conn.clone();
        let timeout = self.config.call_timeout;
        watches.push(Box::pin(async move {
            let position = match tokio::time::timeout(timeout, read_head(conn, &keys.meta)).await {
                Ok(Ok(position)) => Ok(position),
                Ok(Err(e)) => Err(FanoutError::Unavailable(e.to_string())),
                Err(_) => Err(FanoutError::Unavailable(format!(
                    "no answer from Redis within {} ms",
                    timeout.as_millis()
                ))),
            };
            Watched {
                room,
                keys,
                position,
            }
        }));
    }

    /// A watch's position is known: the room is followed from there (events after it
    /// that pub/sub misses are filled from the stream) and the caller answered; the
    /// subscribe is returned, to run beside the loop.
    fn watched(&mut self, w: Watched, source: &Source) -> Option<BoxFuture<'static, bool>> {
        let acks = self.waiting.remove(&w.keys.channel).unwrap_or_default();
        let (epoch, seq) = match w.position {
            Ok(position) => position,
            Err(e) => {
                for ack in acks {
                    let _ = ack.send(Err(e.clone()));
                }
                return None;
            }
        };
        if self.rooms.contains_key(&w.keys.channel) {
            for ack in acks {
                let _ = ack.send(Ok(()));
            }
            return None;
        }
        let channel = w.keys.channel.clone();
        self.rooms.insert(
            channel.clone(),
            RoomSub {
                room: w.room,
                keys: w.keys,
                cursor: Cursor::new(Arc::from(epoch.unwrap_or_default()), seq.unwrap_or(0)),
                idle_since: None,
                behind: None,
                read_upto: seq.unwrap_or(0),
                last_print: None,
                retired: std::collections::VecDeque::new(),
            },
        );
        for ack in acks {
            let _ = ack.send(Ok(()));
        }
        let mut handle = source.handle();
        Some(Box::pin(async move {
            handle
                .subscribe(std::slice::from_ref(&channel))
                .await
                .is_ok()
        }))
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
        if sub.retired.iter().any(|e| **e == *record.epoch) {
            return; // sequenced before the room moved on
        }
        match sub.cursor.step_in(record.epoch, seq) {
            Step::Duplicate if seq > sub.read_upto => {
                // Pub/sub brings each publish once: this seq was published twice.
                let (room, epoch, seen) = (sub.room.clone(), record.epoch, sub.cursor.last());
                self.roll_over(channel, &room, epoch, seen, seq).await;
                return;
            }
            Step::Duplicate => return,
            Step::Reset => {
                // The room's history was lost (store restart, expiry): continuity restarts.
                sub.reset(Arc::from(record.epoch), seq);
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
        note_record(&self.timed, &self.hub, &sub.room, &record);
        let lag_ms = crate::now_ms().saturating_sub(record.ts());
        self.publisher
            .stats
            .delivery_lag
            .observe(Duration::from_millis(lag_ms));
        match record.encode(&sub.room) {
            Ok(frame) => {
                sub.wrote(seq, payload);
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
            let parsed = Record::parse(record);
            if let Ok(r) = &parsed {
                note_record(&self.timed, &self.hub, &sub.room, r);
            }
            let Ok(frame) = parsed.and_then(|r| r.encode(&sub.room)) else {
                break; // unreadable: a reset below, never a silent gap
            };
            sub.wrote(seq, record);
            self.hub.deliver(&sub.room, seq, &frame);
        }
        sub.read_upto = sub.read_upto.max(upto);
        if sub.cursor.missing(upto) > 0 {
            // Trimmed away: tell viewers where continuity restarts.
            let epoch = sub.cursor.epoch().clone();
            sub.reset(epoch, upto);
            self.hub.deliver(&sub.room, RESET_SEQ, &Bytes::new());
            return false;
        }
        true
    }

    /// Compares every room's position with the store: fills lost tails, resets on a
    /// new epoch.
    /// With `force`, every room behind is filled at once (after a reconnect or a lost
    /// push); otherwise only rooms found behind twice in a row.
    ///
    /// Returns whether every room's head was read (false: the store is unreachable).
    async fn check_positions(&mut self, force: bool) -> bool {
        // Concurrent reads over the multiplexed connection, 512 rooms at a time: about
        // one round trip per chunk, so the task keeps delivering messages. (Not one
        // pipeline: a Cluster pipeline must stay within one slot.)
        let channels: Vec<String> = self.rooms.keys().cloned().collect();
        for chunk in channels.chunks(512) {
            let reads = chunk
                .iter()
                .filter_map(|channel| self.rooms.get(channel))
                .map(|sub| read_head(self.conn.clone(), &sub.keys.meta));
            let heads: Result<Vec<_>, _> = futures_util::future::join_all(reads)
                .await
                .into_iter()
                .collect();
            let Ok(heads) = heads else {
                self.healthy.store(false, Ordering::Relaxed);
                return false;
            };
            self.healthy.store(true, Ordering::Relaxed);
            // After a reconnect the store may be another (restarted, failed over):
            // it must still hold what this gateway delivered last.
            let changed = if force {
                match self.changed_records(chunk, &heads).await {
                    Ok(changed) => changed,
                    Err(()) => {
                        self.healthy.store(false, Ordering::Relaxed);
                        return false;
                    }
                }
            } else {
                Vec::new()
            };
            for (channel, head) in chunk.iter().zip(heads) {
                let (Some(epoch), Some(seq)) = head else {
                    continue;
                };
                match self.rooms.get(channel) {
                    Some(sub) if changed.contains(channel) => {
                        let (room, seen) = (sub.room.clone(), sub.cursor.last());
                        self.roll_over(channel, &room, &epoch, seen, seq).await;
                    }
                    _ => self.on_position(channel, epoch, seq, force).await,
                }
            }
        }
        true
    }

    /// The rooms of `chunk` (with their `heads`) whose stream holds, under the seq
    /// this gateway delivered last, another record than the one it delivered. A room
    /// whose record was trimmed away is not among them; a read that fails is an error.
    async fn changed_records(&self, chunk: &[String], heads: &[Head]) -> Result<Vec<String>, ()> {
        let reads = chunk.iter().zip(heads).filter_map(|(channel, head)| {
            let sub = self.rooms.get(channel)?;
            let (epoch, seq) = (head.0.as_deref()?, head.1?);
            let last = sub.cursor.last();
            let expected = sub.last_print?;
            (**sub.cursor.epoch() == *epoch && seq >= last && last > 0).then(|| {
                let (mut conn, stream, channel) =
                    (self.conn.clone(), sub.keys.stream.clone(), channel.clone());
                async move {
                    let id = format!("{last}-0");
                    let reply: StreamRangeReply =
                        conn.xrange(&stream, &id, &id).await.map_err(|_| ())?;
                    let changed = reply.ids.first().is_some_and(|held| {
                        !matches!(held.map.get("r"),
                            Some(redis::Value::BulkString(record)) if print(record) == expected)
                    });
                    Ok(changed.then_some(channel))
                }
            })
        });
        let found: Result<Vec<Option<String>>, ()> = futures_util::future::join_all(reads)
            .await
            .into_iter()
            .collect();
        Ok(found?.into_iter().flatten().collect())
    }

    /// Compares one room's position with the store's.
    async fn on_position(&mut self, channel: &str, epoch: String, seq: u64, force: bool) {
        let Some(sub) = self.rooms.get_mut(channel) else {
            return;
        };
        if **sub.cursor.epoch() == *epoch && seq < sub.cursor.last() {
            // Read after this gateway delivered `last` (no message is handled while the
            // check runs), so the store went back: it lost acknowledged writes.
            let (room, seen) = (sub.room.clone(), sub.cursor.last());
            self.roll_over(channel, &room, &epoch, seen, seq).await;
            return;
        }
        let missing = match sub.cursor.behind(&epoch, seq) {
            Behind::NewEpoch => {
                sub.reset(Arc::from(epoch), seq);
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

    /// The store went back under `room`'s `epoch`: it no longer holds what this
    /// gateway delivered up to `seen` (its head is `head`, or it published a seq again,
    /// or it holds another record under `seen`). The room moves to a new epoch, so no
    /// viewer takes new events under seqs it already holds, and local viewers get a
    /// reset. On a failed call the room stays as it is until the evidence is found
    /// again (a position check, a reconnect).
    async fn roll_over(&mut self, channel: &str, room: &RoomId, epoch: &str, seen: u64, head: u64) {
        tracing::warn!(
            %room, epoch, seen, head,
            "the store went back under the room's epoch (lost writes): starting a new epoch"
        );
        let moved = self.publisher.roll_over(room, epoch).await;
        let Some(sub) = self.rooms.get_mut(channel) else {
            return;
        };
        match moved {
            Ok(now) => {
                StoreStats::inc(&self.publisher.stats.rollovers);
                sub.reset(now.epoch, now.seq);
                self.hub.deliver(&sub.room, RESET_SEQ, &Bytes::new());
            }
            Err(e) => tracing::warn!(%room, error = %e, "could not start the new epoch"),
        }
    }
}

/// A fingerprint of an event's record, kept for the last event delivered in each room
/// to tell whether the store still holds that event under its seq (a multiply-rotate
/// hash over 8-byte words: in-process only, never stored).
/// What a record passed on means beyond its delivery: a room to sweep when it is of a
/// timed kind; a moderation action (made on any gateway) for this gateway's
/// connections of its user.
fn note_record(timed: &DashSet<RoomId>, hub: &Hub, room: &RoomId, record: &Record<'_>) {
    if record.is_timed() && !timed.contains(room) {
        timed.insert(room.clone());
    }
    if let Some(data) = record.moderation() {
        crate::moderation::on_event(hub, room, data);
    }
}

fn print(record: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let step = |h: u64, w: u64| (h.rotate_left(5) ^ w).wrapping_mul(K);
    let mut words = record.chunks_exact(8);
    let mut h = step(0, record.len() as u64);
    for w in &mut words {
        h = step(h, u64::from_le_bytes(w.try_into().unwrap_or_default()));
    }
    words
        .remainder()
        .iter()
        .fold(h, |h, &b| step(h, u64::from(b)))
}

/// A room's head in the store: its epoch and latest seq.
type Head = (Option<String>, Option<u64>);

/// A room's head in the store: its epoch and latest seq (both `None` for a room that
/// does not exist).
async fn read_head(mut conn: Conn, meta: &str) -> redis::RedisResult<Head> {
    redis::cmd("HMGET")
        .arg(meta)
        .arg("epoch")
        .arg("seq")
        .query_async(&mut conn)
        .await
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
    /// Messages may have been lost (a full buffer): check every room.
    Resync,
    /// A node's connection was lost.
    Disconnected,
}

/// Messages published into pushed to this gateway: classic pub/sub on a standalone
/// server, sharded pub/sub (SSUBSCRIBE) on a Cluster.
/// The pub/sub connection: RESP3, its pushes handed to a bounded buffer (for one
/// Redis and for a Cluster alike), so a burst the task cannot read at once costs at
/// most [`PUSH_BUFFER`] messages of memory; beyond, pushes are dropped and the rooms
/// caught up from their streams.
struct Source {
    conn: PushConn,
    pushes: mpsc::Receiver<PushInfo>,
    /// Set when a push found the buffer full (it was dropped): resync.
    overflow: Arc<AtomicBool>,
}

/// A connection that (un)subscribes; its messages arrive as pushes.
#[derive(Clone)]
enum PushConn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// Subscribes on a [`Source`]'s connection from elsewhere (a clone of it).
struct SubscribeHandle(PushConn);

impl SubscribeHandle {
    /// Subscribes, giving up after [`SUBSCRIBE_TIMEOUT`].
    async fn subscribe(&mut self, channels: &[String]) -> redis::RedisResult<()> {
        let timed_out = || redis::RedisError::from((redis::ErrorKind::Io, "subscribe timed out"));
        let subscribe = async {
            match &mut self.0 {
                PushConn::Single(conn) => conn.subscribe(channels).await,
                PushConn::Cluster(conn) => {
                    // One SSUBSCRIBE per channel: channels of different slots live on
                    // different nodes.
                    for c in channels {
                        conn.ssubscribe(c).await?;
                    }
                    Ok(())
                }
            }
        };
        tokio::time::timeout(SUBSCRIBE_TIMEOUT, subscribe)
            .await
            .map_err(|_| timed_out())?
    }
}

/// Pushes buffered per pub/sub connection; beyond, they are dropped and the rooms are
/// caught up from their streams.
const PUSH_BUFFER: usize = 16 * 1024;

/// How long a (un)subscribe may take before the task gives up on it.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(3);

impl Source {
    async fn open(target: &Target) -> redis::RedisResult<Self> {
        let (tx, pushes) = mpsc::channel(PUSH_BUFFER);
        let overflow = Arc::new(AtomicBool::new(false));
        let full = overflow.clone();
        let sender = move |info: PushInfo| {
            tx.try_send(info)
                .map_err(|_| full.store(true, Ordering::Relaxed))
        };
        let conn = match target {
            Target::Single(client) => {
                let info = client.get_connection_info().clone();
                let resp3 = info
                    .redis_settings()
                    .clone()
                    .set_protocol(ProtocolVersion::RESP3);
                let client = redis::Client::open(info.set_redis_settings(resp3))?;
                // (Un)subscribes are bounded by SUBSCRIBE_TIMEOUT, the connection's
                // liveness by the probe; not by the client's own 500 ms default.
                let config = redis::AsyncConnectionConfig::new()
                    .set_response_timeout(None)
                    .set_push_sender(sender);
                PushConn::Single(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                )
            }
            Target::Cluster(seeds) => {
                let client = redis::cluster::ClusterClientBuilder::new(seeds.clone())
                    .use_protocol(ProtocolVersion::RESP3)
                    .push_sender(sender)
                    .build()?;
                PushConn::Cluster(client.get_async_connection().await?)
            }
        };
        Ok(Self {
            conn,
            pushes,
            overflow,
        })
    }

    /// Subscribes, giving up after [`SUBSCRIBE_TIMEOUT`] (the task must not hang on a
    /// server that is down).
    async fn subscribe(&mut self, channels: &[String]) -> redis::RedisResult<()> {
        self.handle().subscribe(channels).await
    }

    /// A handle that subscribes on this connection from elsewhere.
    fn handle(&self) -> SubscribeHandle {
        SubscribeHandle(self.conn.clone())
    }

    async fn unsubscribe(&mut self, channel: &str) -> redis::RedisResult<()> {
        let timed_out = || redis::RedisError::from((redis::ErrorKind::Io, "unsubscribe timed out"));
        let unsubscribe = async {
            match &mut self.conn {
                PushConn::Single(conn) => conn.unsubscribe(channel).await,
                PushConn::Cluster(conn) => conn.sunsubscribe(channel).await,
            }
        };
        tokio::time::timeout(SUBSCRIBE_TIMEOUT, unsubscribe)
            .await
            .map_err(|_| timed_out())?
    }

    /// The next message; `None` when the connection is gone for good.
    ///
    /// # Cancel safety
    /// Cancel safe: the receiver is.
    async fn next(&mut self) -> Option<Incoming> {
        loop {
            if self.overflow.swap(false, Ordering::Relaxed) {
                return Some(Incoming::Resync);
            }
            let push = self.pushes.recv().await?;
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
                PushKind::Disconnection => return Some(Incoming::Disconnected),
                _ => {}
            }
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
