//! The per-connection inbox that the room hub delivers into.
//!
//! # Backpressure
//! A mailbox holds at most `capacity` deliveries and, when built with a byte bound,
//! at most that many bytes of frames (a frame larger than the bound is taken only into
//! an empty queue). Delivery never blocks and never
//! allocates per viewer: a full mailbox drops the delivery and records the room as
//! *overflowed*; an overflowed room takes no more deliveries until the owner took the
//! mark, so what is queued is always a gapless prefix (a dropped `reset` can never be
//! overtaken by the events after it). The owner drains the queue, then sees the
//! overflow and catches the room up from its history (or sends `reset` when history
//! no longer covers the gap or the epoch changed),
//! so a slow reader costs bounded memory and loses nothing that history holds.
//! Unsequenced frames (presence) are simply dropped when full: the next one carries
//! the latest value.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// Identifies a room in the local hub for the lifetime of its hub entry.
pub type RoomKey = u64;

/// One frame for one connection: a refcount on shared bytes, never a copy.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The hub key of the room the frame belongs to.
    pub room: RoomKey,
    /// The event's seq, or 0 for unsequenced frames (presence). For a batch, the
    /// last seq it holds.
    pub seq: u64,
    /// The first seq the frame holds: `seq` for one event; a hot room's batch holds
    /// the events `first..=seq`, one per `\n`-separated line.
    pub first: u64,
    /// The encoded frame.
    pub frame: Bytes,
}

/// A queue that costs nothing while empty: an idle viewer holds no buffer.
#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Delivery>,
    /// The frames' bytes in `items`.
    bytes: usize,
    /// Rooms whose sequenced deliveries were dropped since the owner last looked.
    overflowed: Vec<RoomKey>,
    /// What moderation told the owner, per room (the latest of each room; a kick
    /// stays). At most one entry per room the connection holds.
    controls: Vec<(RoomKey, Control)>,
}

/// What moderation tells a connection about its user in one room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Banned: the connection leaves the room. Nothing more of the room is delivered.
    Kick,
    /// Muted until this time (Unix ms; `u64::MAX` for good).
    Mute(u64),
    /// A mute was lifted.
    Unmute,
}

/// Where a connection can take a delivery at once, bypassing its queue (the gateway
/// writes a quiet room's event straight to the socket).
pub trait Sink: Send + Sync {
    /// Offered every delivery first, under the mailbox lock; `queue_empty` tells
    /// whether deliveries are waiting. Returns true when it took the delivery (written,
    /// or dropped as a duplicate); false queues it as usual.
    fn offer(&self, delivery: &Delivery, queue_empty: bool) -> bool;

    /// Deliveries of `room` were dropped: stop taking them until the owner caught up.
    fn hold(&self, room: RoomKey);
}

struct Shared {
    queue: Mutex<Queue>,
    capacity: usize,
    max_bytes: usize,
    ready: Notify,
    receiver_gone: AtomicBool,
    sink: Option<Arc<dyn Sink>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("capacity", &self.capacity)
            .field("max_bytes", &self.max_bytes)
            .field("sink", &self.sink.is_some())
            .finish_non_exhaustive()
    }
}

/// The sending half, held by the hub for each subscription.
#[derive(Debug, Clone)]
pub struct Mailbox {
    shared: Arc<Shared>,
}

/// The receiving half, owned by the connection task.
#[derive(Debug)]
pub struct MailboxReceiver {
    shared: Arc<Shared>,
}

/// What happened to one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// Queued.
    Queued,
    /// The mailbox was full; a sequenced delivery's room is marked overflowed.
    Dropped,
    /// The receiver is gone; the subscription can be removed.
    Closed,
}

/// Creates a mailbox holding at most `capacity` deliveries (of any size).
pub fn mailbox(capacity: usize) -> (Mailbox, MailboxReceiver) {
    build(capacity, usize::MAX, None)
}

/// Creates a mailbox holding at most `capacity` deliveries and `max_bytes` bytes of
/// frames, whose deliveries are offered to `sink` before they are queued.
pub fn mailbox_with_sink(
    capacity: usize,
    max_bytes: usize,
    sink: Arc<dyn Sink>,
) -> (Mailbox, MailboxReceiver) {
    build(capacity, max_bytes, Some(sink))
}

fn build(
    capacity: usize,
    max_bytes: usize,
    sink: Option<Arc<dyn Sink>>,
) -> (Mailbox, MailboxReceiver) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue::default()),
        capacity: capacity.max(1),
        max_bytes,
        ready: Notify::new(),
        receiver_gone: AtomicBool::new(false),
        sink,
    });
    (
        Mailbox {
            shared: shared.clone(),
        },
        MailboxReceiver { shared },
    )
}

impl Mailbox {
    /// Queues `delivery` without waiting.
    pub fn deliver(&self, delivery: Delivery) -> Delivered {
        if self.shared.receiver_gone.load(Ordering::Relaxed) {
            return Delivered::Closed;
        }
        let mut q = self.shared.queue.lock();
        if q.controls.contains(&(delivery.room, Control::Kick)) {
            return Delivered::Dropped; // banned: the owner is leaving the room
        }
        if delivery.seq != 0 && q.overflowed.contains(&delivery.room) {
            // The room lost a delivery: it takes none until the owner took the mark and
            // caught up, so nothing queued can overtake what was lost (a reset above all).
            return Delivered::Dropped;
        }
        if let Some(sink) = &self.shared.sink
            && sink.offer(&delivery, q.items.is_empty())
        {
            return Delivered::Queued;
        }
        let len = delivery.frame.len();
        let too_big = !q.items.is_empty() && q.bytes.saturating_add(len) > self.shared.max_bytes;
        if q.items.len() >= self.shared.capacity || too_big {
            if delivery.seq != 0 && !q.overflowed.contains(&delivery.room) {
                q.overflowed.push(delivery.room);
            }
            return Delivered::Dropped;
        }
        let was_empty = q.items.is_empty();
        q.items.push_back(delivery);
        q.bytes += len;
        let half = self.shared.max_bytes / 2;
        let half_full =
            q.items.len() == self.shared.capacity / 2 || (q.bytes >= half && q.bytes - len < half);
        drop(q);
        // One wake-up per batch: the receiver drains everything that is queued. A second
        // one at half capacity ends a write linger before the queue can overflow.
        if was_empty || half_full {
            self.shared.ready.notify_one();
        }
        Delivered::Queued
    }

    /// The bytes of the frames waiting.
    pub fn queued_bytes(&self) -> usize {
        self.shared.queue.lock().bytes
    }

    /// Tells the owner `control` about `room`; it takes effect after what is queued.
    /// A kick drops every later delivery of the room.
    pub fn control(&self, room: RoomKey, control: Control) {
        let mut q = self.shared.queue.lock();
        match q.controls.iter_mut().find(|(r, _)| *r == room) {
            Some((_, Control::Kick)) => {}
            Some((_, c)) => *c = control,
            None => q.controls.push((room, control)),
        }
        drop(q);
        self.shared.ready.notify_one();
    }

    /// Records that deliveries of `room` were dropped before reaching this mailbox
    /// (a full lane): the owner catches the room up from history.
    pub fn overflow(&self, room: RoomKey) {
        let mut q = self.shared.queue.lock();
        if let Some(sink) = &self.shared.sink {
            sink.hold(room);
        }
        if !q.overflowed.contains(&room) {
            q.overflowed.push(room);
        }
        drop(q);
        self.shared.ready.notify_one();
    }
}

impl MailboxReceiver {
    /// Waits for deliveries (or an overflowed room) and moves up to `limit` of them
    /// into `buf`; returns how many.
    ///
    /// # Cancel safety
    /// Cancel safe: nothing is taken from the queue unless the call completes.
    pub async fn recv_many(&mut self, buf: &mut Vec<Delivery>, limit: usize) -> usize {
        loop {
            let n = self.try_recv_many(buf, limit);
            let told = {
                let q = self.shared.queue.lock();
                !q.overflowed.is_empty() || !q.controls.is_empty()
            };
            if n > 0 || told {
                return n;
            }
            // A delivery between the check and this await leaves a permit: no lost wake-up.
            self.shared.ready.notified().await;
        }
    }

    /// Moves deliveries that are ready into `buf` without waiting, up to `limit`.
    pub fn try_recv_many(&mut self, buf: &mut Vec<Delivery>, limit: usize) -> usize {
        let mut q = self.shared.queue.lock();
        let n = q.items.len().min(limit);
        let mut taken = 0;
        buf.extend(q.items.drain(..n).inspect(|d| taken += d.frame.len()));
        q.bytes = q.bytes.saturating_sub(taken);
        if q.items.is_empty() && q.items.capacity() > 256 {
            // A burst is over: give its memory back.
            q.items = VecDeque::new();
        }
        n
    }

    /// Deliveries waiting.
    pub fn len(&self) -> usize {
        self.shared.queue.lock().items.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The queue's bound.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Waits for the next wake-up: the queue became non-empty or reached half its
    /// capacity (or a wake-up is still pending from before).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn wake(&self) {
        self.shared.ready.notified().await;
    }

    /// Runs `f` if nothing is queued and no room overflowed, with deliveries held
    /// off meanwhile; returns whether it ran. A [`Sink`] uses this to take over
    /// rooms without an event slipping past in between.
    pub fn when_idle(&self, f: impl FnOnce()) -> bool {
        let q = self.shared.queue.lock();
        if !q.items.is_empty() || !q.overflowed.is_empty() || !q.controls.is_empty() {
            return false;
        }
        f();
        drop(q);
        true
    }

    /// Takes what moderation told about rooms none of whose deliveries is still
    /// queued (those came before it, in the room's order).
    pub fn take_controls(&self) -> Vec<(RoomKey, Control)> {
        let mut q = self.shared.queue.lock();
        if q.controls.is_empty() {
            return Vec::new();
        }
        let Queue {
            items, controls, ..
        } = &mut *q;
        let mut ready = Vec::new();
        controls.retain(|(room, c)| {
            let queued = items.iter().any(|d| d.room == *room);
            if !queued {
                ready.push((*room, *c));
            }
            queued
        });
        ready
    }

    /// Takes the rooms that overflowed since the last call and whose queued deliveries
    /// were all taken: those were made before the drop, so the owner's catch-up must
    /// come after them. A room still queued keeps its mark for a later call.
    pub fn take_overflowed(&self) -> Vec<RoomKey> {
        let mut q = self.shared.queue.lock();
        if q.overflowed.is_empty() {
            return Vec::new();
        }
        let Queue {
            items, overflowed, ..
        } = &mut *q;
        let mut ready = Vec::new();
        overflowed.retain(|room| {
            let queued = items.iter().any(|d| d.room == *room);
            if !queued {
                ready.push(*room);
            }
            queued
        });
        ready
    }
}

impl Drop for MailboxReceiver {
    fn drop(&mut self) {
        self.shared.receiver_gone.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(room: RoomKey, seq: u64) -> Delivery {
        Delivery {
            room,
            seq,
            first: seq,
            frame: Bytes::from_static(b"{}"),
        }
    }

    #[tokio::test]
    async fn overflow_marks_rooms_once() {
        let (tx, mut rx) = mailbox(2);
        assert_eq!(tx.deliver(d(1, 1)), Delivered::Queued);
        assert_eq!(tx.deliver(d(1, 2)), Delivered::Queued);
        assert_eq!(tx.deliver(d(1, 3)), Delivered::Dropped);
        assert_eq!(tx.deliver(d(1, 4)), Delivered::Dropped);
        assert_eq!(tx.deliver(d(2, 0)), Delivered::Dropped);
        let mut buf = Vec::new();
        assert_eq!(rx.recv_many(&mut buf, 10).await, 2);
        assert_eq!(rx.take_overflowed(), vec![1]);
        assert!(rx.take_overflowed().is_empty());
        drop(rx);
        assert_eq!(tx.deliver(d(1, 5)), Delivered::Closed);
    }

    /// A sink that takes nothing: every delivery is queued.
    struct NoSink;

    impl Sink for NoSink {
        fn offer(&self, _: &Delivery, _: bool) -> bool {
            false
        }

        fn hold(&self, _: RoomKey) {}
    }

    fn sized(room: RoomKey, seq: u64, len: usize) -> Delivery {
        Delivery {
            frame: Bytes::from(vec![b'x'; len]),
            ..d(room, seq)
        }
    }

    #[tokio::test]
    async fn the_byte_bound_holds_and_is_given_back_as_frames_are_taken() {
        let (tx, mut rx) = mailbox_with_sink(100, 1_000, Arc::new(NoSink));
        assert_eq!(tx.deliver(sized(1, 1, 600)), Delivered::Queued);
        assert_eq!(tx.deliver(sized(2, 1, 400)), Delivered::Queued);
        assert_eq!(
            tx.deliver(sized(2, 2, 1)),
            Delivered::Dropped,
            "1,001 bytes"
        );
        let mut buf = Vec::new();
        assert_eq!(rx.recv_many(&mut buf, 1).await, 1);
        assert_eq!(
            rx.take_overflowed(),
            Vec::<RoomKey>::new(),
            "room 2 is queued"
        );
        assert_eq!(tx.deliver(sized(1, 2, 600)), Delivered::Queued, "600 back");
        rx.recv_many(&mut buf, 10).await;
        assert_eq!(rx.take_overflowed(), vec![2]);
        // A frame over the bound still gets through an empty queue.
        assert_eq!(tx.deliver(sized(3, 1, 5_000)), Delivered::Queued);
        assert_eq!(tx.deliver(sized(4, 1, 1)), Delivered::Dropped);
    }

    #[tokio::test]
    async fn an_overflowed_room_takes_nothing_until_its_mark_is_taken() {
        let (tx, mut rx) = mailbox(2);
        tx.deliver(d(2, 1));
        tx.deliver(d(1, 1));
        // Room 1 loses a delivery (think: a reset); room 2 keeps going.
        assert_eq!(tx.deliver(d(1, 2)), Delivered::Dropped);
        let mut buf = Vec::new();
        rx.recv_many(&mut buf, 1).await;
        assert_eq!(
            rx.take_overflowed(),
            Vec::<RoomKey>::new(),
            "room 1 is queued"
        );
        assert_eq!(
            tx.deliver(d(1, 3)),
            Delivered::Dropped,
            "nothing may overtake"
        );
        assert_eq!(tx.deliver(d(2, 2)), Delivered::Queued);
        rx.recv_many(&mut buf, 10).await;
        assert_eq!(rx.take_overflowed(), vec![1]);
        assert_eq!(
            tx.deliver(d(1, 4)),
            Delivered::Queued,
            "caught up: open again"
        );
    }

    /// Takes odd seqs while nothing is queued.
    struct OddSink(Mutex<Vec<u64>>);

    impl Sink for OddSink {
        fn offer(&self, d: &Delivery, queue_empty: bool) -> bool {
            if queue_empty && d.seq % 2 == 1 {
                self.0.lock().push(d.seq);
                return true;
            }
            false
        }

        fn hold(&self, _room: RoomKey) {}
    }

    #[tokio::test]
    async fn a_sink_sees_deliveries_first() {
        let sink = Arc::new(OddSink(Mutex::new(Vec::new())));
        let (tx, mut rx) = mailbox_with_sink(8, usize::MAX, sink.clone());
        assert!(rx.when_idle(|| {}));
        for seq in 1..=5 {
            assert_eq!(tx.deliver(d(1, seq)), Delivered::Queued);
        }
        // 1 taken; 2 queued, so 3..5 are queued behind it whatever their parity.
        assert_eq!(*sink.0.lock(), vec![1]);
        assert!(!rx.when_idle(|| panic!("not idle")));
        let mut buf = Vec::new();
        rx.recv_many(&mut buf, 8).await;
        let seqs: Vec<u64> = buf.iter().map(|d| d.seq).collect();
        assert_eq!(seqs, vec![2, 3, 4, 5]);
        assert!(rx.when_idle(|| {}));
    }
}
