//! The local room hub: which connections of this process watch which room.
//!
//! This is the one shared map of the delivery path. A room's subscribers are split
//! into *lanes* of at most `lane_size` viewers. A delivery is queued on each lane, and
//! each lane is drained by one task at a time, in order, on the runtime's workers: the
//! publisher never waits for a big room's writes, a big room's writes run on every
//! core, and each viewer still sees its room's events in order. A room of one lane
//! with nothing in flight is delivered inline (waking another worker for a few dozen
//! writes costs more than the writes). A hub built with [`Hub::new`] delivers inline
//! instead (one lane, no tasks), for tests and tools.
//!
//! A *hot* room is batched per lane: each lane gathers the room's events and hands them
//! on once per linger as one frame (`Delivery::first..=seq`). Lanes tick on staggered
//! phases, so a big room's writes spread over the linger instead of bunching at one
//! instant. A room is hot when its writes cost: [`HOT_EVENTS`] events within
//! [`HOT_LINGERS`] lingers *and* its viewers × its event rate reach the hub's
//! `hot_writes` per second (about what half a core writes). A small busy room (200
//! viewers at 25 events/s: 5,000 writes/s) stays immediate; a big one at that rate is
//! coalesced before its writes saturate a core.
//!
//! # Backpressure
//! A lane queues at most [`LANE_QUEUE`] deliveries. Past that, the lane drops what it
//! queued and its viewers are told their mailbox overflowed: they catch the room up
//! from history, as with a full mailbox, and nothing is lost that history holds. A batch holds at most
//! [`BATCH_EVENTS`] events or [`BATCH_BYTES`]; a full one is handed on at once.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use danmaku_protocol::RoomId;
use danmaku_protocol::audience::{self, Audience, Targeted, Viewer};
use dashmap::DashMap;
use parking_lot::Mutex;

use crate::heat::Heat;
use crate::mailbox::{Delivered, Delivery, Mailbox, RoomKey};

/// Identifies a subscriber (a connection) in the hub.
pub type ConnKey = u64;

/// Deliveries a lane holds before its viewers are sent to history instead.
pub const LANE_QUEUE: usize = 4096;

/// Deliveries a lane task makes before it yields to a fresh task.
const DRAIN_TURN: usize = 32;

/// A room is hot when this many events came within [`HOT_LINGERS`] lingers: two
/// events per linger on average, sustained, so a short burst of a quiet room (its
/// publisher caught up after a stall) is still written event by event.
const HOT_EVENTS: usize = 8;
const HOT_LINGERS: u32 = 4;
/// Most events in one hot-room frame.
const BATCH_EVENTS: usize = 64;
/// Largest hot-room frame, in bytes.
const BATCH_BYTES: usize = 64 * 1024;

struct Subscriber {
    conn: ConnKey,
    mailbox: Mailbox,
    /// Who the connection is, for counting a targeted event's audience.
    viewer: Option<Arc<Viewer>>,
}

/// A slice of a room's subscribers, drained by at most one task at a time.
struct Lane {
    room: RoomKey,
    subscribers: Mutex<Vec<Subscriber>>,
    queue: Mutex<LaneQueue>,
}

#[derive(Default)]
struct LaneQueue {
    /// (first, seq, frame)
    items: VecDeque<(u64, u64, Bytes)>,
    /// A task is draining this lane.
    scheduled: bool,
    /// A hot room's events for this lane, waiting for the lane's next tick.
    batch: Batch,
}

/// One room's local subscribers.
struct LocalRoom {
    key: RoomKey,
    lanes: Mutex<Lanes>,
    /// The online count last announced with `presence`.
    announced: AtomicU64,
}

#[derive(Default)]
struct Lanes {
    lanes: Vec<Arc<Lane>>,
    viewers: usize,
    heat: Heat<HOT_EVENTS>,
}

/// A hot room's events waiting for a lane's next write. Each lane ticks on its
/// own phase, so a big room's writes are spread over the linger, not bunched.
#[derive(Default)]
struct Batch {
    first: u64,
    last: u64,
    count: usize,
    /// The events, `\n`-separated.
    frame: BytesMut,
    /// A task will flush the batch at the next tick.
    scheduled: bool,
    last_flush: Option<Instant>,
    /// Added once to the next tick: this lane's phase in the room.
    shift: Duration,
}

impl Batch {
    /// Whether `seq` (with `len` bytes) can join: next in sequence, and room left.
    fn fits(&self, seq: u64, len: usize) -> bool {
        self.count == 0
            || (crate::position::follows(self.last, seq)
                && self.count < BATCH_EVENTS
                && self.frame.len() + 1 + len <= BATCH_BYTES)
    }

    fn add(&mut self, seq: u64, frame: &Bytes) {
        if self.count == 0 {
            self.first = seq;
        } else {
            self.frame.extend_from_slice(b"\n");
        }
        self.frame.extend_from_slice(frame);
        self.last = seq;
        self.count += 1;
    }

    /// Takes what was gathered as one delivery `(first, seq, frame)`.
    fn take(&mut self, now: Instant) -> Option<(u64, u64, Bytes)> {
        if self.count == 0 {
            return None;
        }
        // A frame of its own size: a slow viewer holding it holds these bytes, not
        // the buffer the next batches are gathered in.
        let frame = Bytes::copy_from_slice(&self.frame);
        self.frame.clear();
        if self.frame.capacity() > 2 * BATCH_BYTES {
            self.frame = BytesMut::new();
        }
        self.count = 0;
        self.last_flush = Some(now);
        Some((self.first, self.last, frame))
    }
}

/// Counters the hub keeps for metrics.
#[derive(Debug, Default)]
pub struct HubStats {
    /// Frames handed to connections (written or queued).
    pub delivered: AtomicU64,
    /// Frames dropped because a mailbox or a lane was full.
    pub dropped: AtomicU64,
    /// Writes the sequenced events asked for: each event times the room's local viewers
    /// (whether batched or not), the load that decides coalescing.
    pub demand: AtomicU64,
}

/// Local subscriptions of this process.
pub struct Hub {
    rooms: DashMap<RoomId, Arc<LocalRoom>>,
    next_key: AtomicU64,
    stats: Arc<HubStats>,
    /// Viewers per lane; `None` delivers inline.
    lane_size: Option<usize>,
    /// Hot rooms are written once per linger (zero: never batched).
    linger: Duration,
    /// Writes per second (viewers × events) from which a busy room is batched.
    hot_writes: f64,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    /// A hub that delivers inline, in the caller.
    pub fn new() -> Self {
        Self {
            rooms: DashMap::new(),
            next_key: AtomicU64::new(0),
            stats: Arc::default(),
            lane_size: None,
            linger: Duration::ZERO,
            hot_writes: 0.0,
        }
    }

    /// A hub that delivers on tokio tasks, one per lane of at most `lane_size`
    /// viewers, and writes a hot room once per `linger` (zero: never batched).
    /// Deliveries must then be made from within a tokio runtime.
    pub fn with_lanes(lane_size: usize, linger: Duration) -> Self {
        Self {
            lane_size: Some(lane_size.max(1)),
            linger,
            ..Self::new()
        }
    }

    /// Batches a busy room only once its viewers × events per second reach
    /// `writes_per_s` (0: whatever its size).
    pub fn with_hot_writes(self, writes_per_s: u64) -> Self {
        Self {
            hot_writes: writes_per_s as f64,
            ..self
        }
    }

    /// Adds `conn` as a subscriber of `room`; returns the room's key for its deliveries.
    pub fn subscribe(&self, room: &RoomId, conn: ConnKey, mailbox: Mailbox) -> RoomKey {
        self.subscribe_as(room, conn, mailbox, None)
    }

    /// Adds `conn`, watching as `viewer`, as a subscriber of `room` (see
    /// [`Hub::subscribe`]); the viewer is counted in the audiences it matches.
    pub fn subscribe_as(
        &self,
        room: &RoomId,
        conn: ConnKey,
        mailbox: Mailbox,
        viewer: Option<Arc<Viewer>>,
    ) -> RoomKey {
        loop {
            let local = self
                .rooms
                .entry(room.clone())
                .or_insert_with(|| {
                    Arc::new(LocalRoom {
                        key: self.next_key.fetch_add(1, Ordering::Relaxed) + 1,
                        lanes: Mutex::new(Lanes::default()),
                        announced: AtomicU64::new(u64::MAX),
                    })
                })
                .clone();
            let mut lanes = local.lanes.lock();
            // A room emptied and removed concurrently: retry with a fresh entry.
            let current = self.rooms.get(room).map(|r| Arc::ptr_eq(&r, &local));
            if current != Some(true) {
                continue;
            }
            let size = self.lane_size.unwrap_or(usize::MAX);
            let lane = match lanes
                .lanes
                .iter()
                .find(|l| l.subscribers.lock().len() < size)
            {
                Some(lane) => lane.clone(),
                None => {
                    let lane = Arc::new(Lane {
                        room: local.key,
                        subscribers: Mutex::new(Vec::new()),
                        queue: Mutex::new(LaneQueue::default()),
                    });
                    lanes.lanes.push(lane.clone());
                    lane
                }
            };
            lane.subscribers.lock().push(Subscriber {
                conn,
                mailbox,
                viewer,
            });
            lanes.viewers += 1;
            return local.key;
        }
    }

    /// Changes who `conn` watches `room` as (its variant of the room's experiment,
    /// known once the join read the room).
    pub fn set_viewer(&self, room: &RoomId, conn: ConnKey, viewer: Arc<Viewer>) {
        let Some(local) = self.rooms.get(room).map(|r| r.clone()) else {
            return;
        };
        let lanes = local.lanes.lock();
        for lane in &lanes.lanes {
            let mut subs = lane.subscribers.lock();
            if let Some(s) = subs.iter_mut().find(|s| s.conn == conn) {
                s.viewer = Some(viewer);
                return;
            }
        }
    }

    /// Removes `conn` from `room`'s subscribers; forgets the room when it is empty.
    pub fn unsubscribe(&self, room: &RoomId, conn: ConnKey) {
        let Some(local) = self.rooms.get(room).map(|r| r.clone()) else {
            return;
        };
        let mut lanes = local.lanes.lock();
        let mut emptied = None;
        for (i, lane) in lanes.lanes.iter().enumerate() {
            let mut subs = lane.subscribers.lock();
            // Order does not matter: swap_remove keeps a mass disconnect linear.
            if let Some(j) = subs.iter().position(|s| s.conn == conn) {
                subs.swap_remove(j);
                emptied = Some((i, subs.is_empty()));
                break;
            }
        }
        if let Some((i, empty)) = emptied {
            lanes.viewers -= 1;
            if empty {
                lanes.lanes.swap_remove(i);
            }
        }
        if lanes.viewers == 0 {
            self.rooms.remove_if(room, |_, r| Arc::ptr_eq(r, &local));
        }
    }

    /// Hands `frame` (sequenced `seq`, or 0 for presence) to every local subscriber.
    ///
    /// In a hot room (a hub with a linger, and 8 events within 4 lingers) each lane
    /// gathers the events and writes them once per linger as one frame of
    /// `\n`-separated events: a viewer then costs one write per linger, however fast
    /// the room goes.
    pub fn deliver(&self, room: &RoomId, seq: u64, frame: &Bytes) {
        let Some(local) = self.rooms.get(room).map(|r| r.clone()) else {
            return;
        };
        // Held throughout: deliveries to one room never overtake each other.
        let mut lanes = local.lanes.lock();
        if self.lane_size.is_none() {
            for lane in &lanes.lanes {
                lane.deliver(seq, seq, frame, &self.stats);
            }
            return;
        }
        let now = Instant::now();
        let sequenced = seq != 0 && seq != crate::RESET_SEQ;
        if sequenced {
            let viewers = lanes.viewers as u64;
            self.stats.demand.fetch_add(viewers, Ordering::Relaxed);
        }
        // A targeted event goes alone: each viewer's connection decides whether it is
        // in the audience, which a batch shared by the lane could not carry.
        let batching = !self.linger.is_zero() && sequenced && !audience::is_targeted(frame);
        let hot = batching && {
            lanes.heat.arrive(now);
            lanes.heat.within(self.hot_window(lanes.viewers), now)
        };
        let (n, single) = (lanes.lanes.len(), lanes.lanes.len() == 1);
        for (i, lane) in lanes.lanes.iter().enumerate() {
            let mut q = lane.queue.lock();
            let gathering = q.batch.count > 0 || q.batch.scheduled;
            if batching && (hot || gathering) {
                if !q.batch.fits(seq, frame.len()) {
                    // Out of sequence or full: what is gathered goes now.
                    if let Some((first, last, f)) = q.batch.take(now) {
                        q = lane.push(q, first, last, &f, &self.stats, false);
                    }
                }
                q.batch.add(seq, frame);
                if !q.batch.scheduled {
                    q.batch.scheduled = true;
                    let at = match q.batch.last_flush {
                        Some(t) if now < t + self.linger => {
                            t + self.linger + std::mem::take(&mut q.batch.shift)
                        }
                        // Starting: the first batch goes at once, and the lanes' next
                        // ticks are staggered over the linger.
                        _ => {
                            q.batch.shift = self.linger.mul_f64(i as f64 / n as f64);
                            now
                        }
                    };
                    let (local, lane, stats) = (local.clone(), lane.clone(), self.stats.clone());
                    tokio::spawn(async move {
                        tokio::time::sleep_until(at.into()).await;
                        // The room's lock first, as in `deliver`: nothing overtakes.
                        let _room = local.lanes.lock();
                        let mut q = lane.queue.lock();
                        q.batch.scheduled = false;
                        if let Some((first, last, f)) = q.batch.take(Instant::now()) {
                            drop(lane.push(q, first, last, &f, &stats, single));
                        }
                    });
                }
                continue;
            }
            if let Some((first, last, f)) = q.batch.take(now) {
                q = lane.push(q, first, last, &f, &self.stats, false);
            }
            drop(lane.push(q, seq, seq, frame, &self.stats, single));
        }
    }

    /// A room of `viewers` is hot when [`HOT_EVENTS`] events came within this: at least
    /// two events per linger, and enough for `viewers` × the rate to reach `hot_writes`.
    fn hot_window(&self, viewers: usize) -> Duration {
        let busy = self.linger * HOT_LINGERS;
        if self.hot_writes <= 0.0 {
            return busy;
        }
        let costly = Duration::from_secs_f64(HOT_EVENTS as f64 * viewers as f64 / self.hot_writes);
        busy.min(costly)
    }

    /// Tells every connection of `user` in `room` on this process `control` (after
    /// what is queued for it); returns how many there were.
    pub fn control(&self, room: &RoomId, user: &str, control: crate::mailbox::Control) -> usize {
        let Some(local) = self.rooms.get(room).map(|r| r.clone()) else {
            return 0;
        };
        let lanes = local.lanes.lock();
        let mut n = 0;
        for lane in &lanes.lanes {
            for s in lane.subscribers.lock().iter() {
                if s.viewer.as_deref().is_some_and(|v| v.user() == user) {
                    s.mailbox.control(local.key, control);
                    n += 1;
                }
            }
        }
        n
    }

    /// Viewers of `room` on this process who are in `audience`.
    pub fn audience_online(&self, room: &RoomId, audience: &Audience) -> u64 {
        let Some(local) = self.rooms.get(room).map(|r| r.clone()) else {
            return 0;
        };
        let Some(targeted) = Targeted::split(&audience.wrap(b"")) else {
            return 0;
        };
        let lanes = local.lanes.lock();
        let mut n = 0;
        for lane in &lanes.lanes {
            let subs = lane.subscribers.lock();
            let matched = subs.iter().filter_map(|s| s.viewer.as_deref());
            n += matched.filter(|v| targeted.includes(v)).count() as u64;
        }
        n
    }

    /// Which of `users` have a connection in `room` on this process (one pass over the
    /// room's viewers).
    pub fn present(&self, room: &RoomId, users: &[&str]) -> Vec<bool> {
        let mut out = vec![false; users.len()];
        let Some(local) = self.rooms.get(room).map(|r| r.clone()) else {
            return out;
        };
        let lanes = local.lanes.lock();
        for lane in &lanes.lanes {
            for v in lane
                .subscribers
                .lock()
                .iter()
                .filter_map(|s| s.viewer.as_deref())
            {
                if let Some(i) = users.iter().position(|u| *u == v.user()) {
                    out[i] = true;
                }
            }
        }
        out
    }

    /// Viewers of `room` on this process.
    pub fn online(&self, room: &RoomId) -> u64 {
        // Never lock a room while holding a map guard (lock order: room → map).
        let local = self.rooms.get(room).map(|r| r.clone());
        local.map_or(0, |r| r.lanes.lock().viewers as u64)
    }

    /// The rooms with local viewers.
    pub fn rooms(&self) -> Vec<RoomId> {
        self.rooms.iter().map(|e| e.key().clone()).collect()
    }

    /// Rooms with local viewers.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Whether `room` has local viewers.
    pub fn contains(&self, room: &RoomId) -> bool {
        self.rooms.contains_key(room)
    }

    /// Records `online` as the count to announce for `room`; true when it differs
    /// from the last one announced (so a `presence` frame is due).
    pub fn announce(&self, room: &RoomId, online: u64) -> bool {
        let local = self.rooms.get(room).map(|r| r.clone());
        local.is_some_and(|r| r.announced.swap(online, Ordering::Relaxed) != online)
    }

    /// Delivery counters.
    pub fn stats(&self) -> &HubStats {
        &self.stats
    }
}

impl Lane {
    /// Queues one delivery (an event, or a batch `first..=seq`) on this lane, or
    /// delivers it here when `inline` and nothing is in flight (the caller holds the
    /// room's lock). Returns the queue lock, taken again.
    fn push<'a>(
        self: &'a Arc<Self>,
        mut q: parking_lot::MutexGuard<'a, LaneQueue>,
        first: u64,
        seq: u64,
        frame: &Bytes,
        stats: &Arc<HubStats>,
        inline: bool,
    ) -> parking_lot::MutexGuard<'a, LaneQueue> {
        if inline && !q.scheduled && q.items.is_empty() {
            // A small room with nothing in flight: cheaper written here than handed
            // to another worker.
            drop(q);
            self.deliver(first, seq, frame, stats);
            return self.queue.lock();
        }
        if q.items.len() >= LANE_QUEUE {
            // What is queued goes too: delivered after the viewers' catch-up it could
            // carry events of an epoch their reset already left.
            let stale = std::mem::take(&mut q.items).len() as u64;
            drop(q);
            self.overflow(seq, stale + 1, stats);
            return self.queue.lock();
        }
        q.items.push_back((first, seq, frame.clone()));
        if !q.scheduled {
            q.scheduled = true;
            let (lane, stats) = (self.clone(), stats.clone());
            tokio::spawn(async move { lane.drain(&stats) });
        }
        q
    }

    /// Delivers everything queued, in order, until the queue is empty.
    ///
    /// After [`DRAIN_TURN`] deliveries it hands over to a fresh task, so a lane that is
    /// fed steadily does not hold a worker.
    fn drain(self: &Arc<Self>, stats: &Arc<HubStats>) {
        for _ in 0..DRAIN_TURN {
            let next = {
                let mut q = self.queue.lock();
                match q.items.pop_front() {
                    Some(item) => item,
                    None => {
                        q.scheduled = false;
                        if q.items.capacity() > 64 {
                            q.items = VecDeque::new();
                        }
                        return;
                    }
                }
            };
            self.deliver(next.0, next.1, &next.2, stats);
        }
        // Still `scheduled`: the next task goes on where this one stopped.
        let (lane, stats) = (self.clone(), stats.clone());
        tokio::spawn(async move { lane.drain(&stats) });
    }

    fn deliver(&self, first: u64, seq: u64, frame: &Bytes, stats: &HubStats) {
        let (mut queued, mut dropped) = (0, 0);
        // A closed mailbox stays listed: its connection unsubscribes, which keeps the
        // room's viewer count (and its removal when empty) in one place.
        for s in self.subscribers.lock().iter() {
            let d = Delivery {
                room: self.room,
                seq,
                first,
                frame: frame.clone(),
            };
            match s.mailbox.deliver(d) {
                Delivered::Queued => queued += 1,
                Delivered::Dropped => dropped += 1,
                Delivered::Closed => {}
            }
        }
        stats.delivered.fetch_add(queued, Ordering::Relaxed);
        stats.dropped.fetch_add(dropped, Ordering::Relaxed);
    }

    /// The lane is full: its `lost` deliveries are dropped and its viewers catch up
    /// from history instead.
    fn overflow(&self, seq: u64, lost: u64, stats: &HubStats) {
        let subs = self.subscribers.lock();
        if seq != 0 || lost > 1 {
            for s in subs.iter() {
                s.mailbox.overflow(self.room);
            }
        }
        stats
            .dropped
            .fetch_add(lost * subs.len() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::mailbox;

    #[tokio::test]
    async fn delivers_shared_bytes_to_every_subscriber() {
        let hub = Hub::new();
        let room = RoomId::new("r").expect("room");
        let (a, mut ra) = mailbox(8);
        let (b, mut rb) = mailbox(8);
        let ka = hub.subscribe(&room, 1, a);
        let kb = hub.subscribe(&room, 2, b);
        assert_eq!(ka, kb);
        assert_eq!(hub.online(&room), 2);
        let frame = Bytes::from(vec![b'x'; 100]);
        hub.deliver(&room, 1, &frame);
        let mut buf = Vec::new();
        ra.recv_many(&mut buf, 8).await;
        rb.recv_many(&mut buf, 8).await;
        assert_eq!(buf.len(), 2);
        assert_eq!(buf[0].frame.as_ptr(), frame.as_ptr());
        assert_eq!(buf[1].frame.as_ptr(), frame.as_ptr());
        hub.unsubscribe(&room, 1);
        assert_eq!(hub.online(&room), 1);
        hub.unsubscribe(&room, 2);
        assert_eq!(hub.room_count(), 0);
    }

    /// Subscribes connections `0..n` to `room`; returns their inboxes.
    fn viewers(hub: &Hub, room: &RoomId, n: u64, capacity: usize) -> Vec<crate::MailboxReceiver> {
        (0..n)
            .map(|conn| {
                let (tx, rx) = mailbox(capacity);
                hub.subscribe(room, conn, tx);
                rx
            })
            .collect()
    }

    #[tokio::test]
    async fn lanes_deliver_every_event_in_order() {
        let hub = Hub::with_lanes(2, Duration::ZERO);
        let room = RoomId::new("r").expect("room");
        let mut inboxes = viewers(&hub, &room, 5, 1_000);
        assert_eq!(hub.online(&room), 5);
        for seq in 1..=100 {
            hub.deliver(&room, seq, &Bytes::from_static(b"{}"));
        }
        for rx in &mut inboxes {
            let mut got = Vec::new();
            while got.len() < 100 {
                rx.recv_many(&mut got, 1_000).await;
            }
            let seqs: Vec<u64> = got.iter().map(|d| d.seq).collect();
            assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
        }
        for conn in 0..5 {
            hub.unsubscribe(&room, conn);
        }
        assert_eq!(hub.room_count(), 0);
    }

    #[tokio::test]
    async fn a_hot_room_is_written_in_batches() {
        let hub = Hub::with_lanes(64, Duration::from_millis(30));
        let room = RoomId::new("r").expect("room");
        let (tx, mut rx) = mailbox(1_000);
        hub.subscribe(&room, 1, tx);
        for seq in 1..=12 {
            hub.deliver(&room, seq, &Bytes::from(format!("e{seq}")));
        }
        hub.deliver(&room, 0, &Bytes::from_static(b"presence"));
        let mut got = Vec::new();
        while got.len() < 9 {
            rx.recv_many(&mut got, 1_000).await;
        }
        let shape: Vec<(u64, u64, &[u8])> =
            got.iter().map(|d| (d.first, d.seq, &d.frame[..])).collect();
        // Seven events before the room is hot; then one frame for the rest, sent
        // ahead of the unsequenced frame that followed them.
        let mut want: Vec<(u64, u64, &[u8])> = Vec::new();
        let singles: Vec<String> = (1..=7).map(|i| format!("e{i}")).collect();
        for (i, e) in singles.iter().enumerate() {
            want.push((i as u64 + 1, i as u64 + 1, e.as_bytes()));
        }
        want.push((8, 12, &b"e8\ne9\ne10\ne11\ne12"[..]));
        want.push((0, 0, &b"presence"[..]));
        assert_eq!(shape, want);
    }

    /// Frames one of `viewers` gets for 24 events 2 ms (or more) apart, with a linger
    /// of 30 ms and batching from 2,000 writes a second.
    async fn frames_at_500_per_s(viewers: u64) -> usize {
        let hub = Hub::with_lanes(64, Duration::from_millis(30)).with_hot_writes(2_000);
        let room = RoomId::new("r").expect("room");
        let mut inboxes = self::viewers(&hub, &room, viewers, 1_000);
        for seq in 1..=24 {
            hub.deliver(&room, seq, &Bytes::from(format!("e{seq}")));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let (mut got, mut frames) = (0, 0);
        while got < 24 {
            let mut batch = Vec::new();
            inboxes[0].recv_many(&mut batch, 1_000).await;
            frames += batch.len();
            got += batch.iter().map(|d| d.seq - d.first + 1).sum::<u64>();
        }
        frames
    }

    #[tokio::test]
    async fn a_busy_room_is_batched_only_when_its_writes_cost() {
        // One viewer at 500 events/s is 500 writes/s: each event goes at once.
        assert_eq!(frames_at_500_per_s(1).await, 24);
        // 64 viewers at that rate are 32,000 writes/s: batched.
        let frames = frames_at_500_per_s(64).await;
        assert!(frames < 20, "{frames} frames: not batched");
    }

    #[tokio::test]
    async fn a_closed_mailbox_still_leaves_through_unsubscribe() {
        for hub in [Hub::new(), Hub::with_lanes(1, Duration::ZERO)] {
            let room = RoomId::new("r").expect("room");
            let mut inboxes = viewers(&hub, &room, 2, 8);
            // A connection's inbox goes first; its unsubscribe comes later.
            drop(inboxes.remove(0));
            hub.deliver(&room, 1, &Bytes::from_static(b"{}"));
            let mut got = Vec::new();
            inboxes[0].recv_many(&mut got, 8).await;
            assert_eq!(hub.online(&room), 2);
            hub.unsubscribe(&room, 0);
            assert_eq!(hub.online(&room), 1);
            hub.unsubscribe(&room, 1);
            assert_eq!(hub.room_count(), 0, "the room is forgotten once empty");
        }
    }

    #[tokio::test]
    async fn hot_lanes_tick_in_order_across_batches() {
        let hub = Hub::with_lanes(2, Duration::from_millis(15));
        let room = RoomId::new("r").expect("room");
        let mut inboxes = viewers(&hub, &room, 5, 10_000);
        for seq in 1..=300u64 {
            hub.deliver(&room, seq, &Bytes::from(seq.to_string()));
            if seq % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        for rx in &mut inboxes {
            let (mut next, mut frames) = (1u64, 0);
            while next <= 300 {
                let mut got = Vec::new();
                rx.recv_many(&mut got, 10_000).await;
                for d in got {
                    frames += 1;
                    assert_eq!(d.first, next, "no gap, no overlap");
                    let lines: Vec<&[u8]> = d.frame.split(|&b| b == b'\n').collect();
                    assert_eq!(lines.len() as u64, d.seq - d.first + 1);
                    for (k, line) in lines.iter().enumerate() {
                        assert_eq!(*line, (d.first + k as u64).to_string().as_bytes());
                    }
                    next = d.seq + 1;
                }
            }
            assert!(frames < 100, "{frames} frames for 300 events: not batched");
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_full_lane_sends_its_viewers_to_history() {
        // Two lanes: a room of one lane with nothing in flight is delivered inline.
        let hub = Hub::with_lanes(1, Duration::ZERO);
        let room = RoomId::new("r").expect("room");
        let (tx, mut rx) = mailbox(10 * LANE_QUEUE);
        let key = hub.subscribe(&room, 1, tx);
        let (other, _other_rx) = mailbox(10 * LANE_QUEUE);
        hub.subscribe(&room, 2, other);
        // Nothing drains until this task yields: the lane fills up.
        for seq in 1..=(LANE_QUEUE as u64 + 10) {
            hub.deliver(&room, seq, &Bytes::from_static(b"{}"));
        }
        assert_eq!(rx.take_overflowed(), vec![key]);
        // The lane dropped what it held: nothing stale follows the viewers' catch-up,
        // only what came after the last overflow (within the lane's bound).
        hub.deliver(&room, LANE_QUEUE as u64 + 11, &Bytes::from_static(b"{}"));
        let mut got = Vec::new();
        while got
            .iter()
            .all(|d: &Delivery| d.seq != LANE_QUEUE as u64 + 11)
        {
            rx.recv_many(&mut got, 10 * LANE_QUEUE).await;
        }
        assert!(got.len() <= LANE_QUEUE, "the lane held its bound");
        assert!(
            got.iter().all(|d| d.seq > LANE_QUEUE as u64),
            "nothing stale"
        );
        assert!(hub.stats().dropped.load(Ordering::Relaxed) >= 2 * LANE_QUEUE as u64);
    }

    #[test]
    fn presence_reports_changes_only() {
        let hub = Hub::new();
        let room = RoomId::new("r").expect("room");
        let (a, _ra) = mailbox(8);
        hub.subscribe(&room, 1, a);
        assert!(hub.announce(&room, 1));
        assert!(!hub.announce(&room, 1));
        assert!(hub.announce(&room, 7));
        assert!(!hub.announce(&RoomId::new("other").expect("room"), 1));
    }
}
