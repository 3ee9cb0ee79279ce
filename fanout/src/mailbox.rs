//! The per-connection inbox that the room hub delivers into.
//!
//! # Backpressure
//! A mailbox holds at most `capacity` deliveries. Delivery never blocks and never
//! allocates per viewer: a full mailbox drops the delivery and records the room as
//! *overflowed*. The owner drains the queue, then sees the overflow and catches the
//! room up from its history (or sends `reset` when history no longer covers the gap),
//! so a slow reader costs bounded memory and loses nothing that history holds.
//! Unsequenced frames (presence) are simply dropped when full: the next one carries
//! the latest value.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::mpsc;

/// Identifies a room in the local hub for the lifetime of its hub entry.
pub type RoomKey = u64;

/// One frame for one connection: a refcount on shared bytes, never a copy.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The hub key of the room the frame belongs to.
    pub room: RoomKey,
    /// The event's seq, or 0 for unsequenced frames (presence).
    pub seq: u64,
    /// The encoded frame.
    pub frame: Bytes,
}

#[derive(Debug, Default)]
struct Overflow {
    any: AtomicBool,
    rooms: Mutex<Vec<RoomKey>>,
}

/// The sending half, held by the hub for each subscription.
#[derive(Debug, Clone)]
pub struct Mailbox {
    tx: mpsc::Sender<Delivery>,
    overflow: Arc<Overflow>,
}

/// The receiving half, owned by the connection task.
#[derive(Debug)]
pub struct MailboxReceiver {
    rx: mpsc::Receiver<Delivery>,
    overflow: Arc<Overflow>,
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

/// Creates a mailbox holding at most `capacity` deliveries.
pub fn mailbox(capacity: usize) -> (Mailbox, MailboxReceiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let overflow = Arc::new(Overflow::default());
    (
        Mailbox {
            tx,
            overflow: overflow.clone(),
        },
        MailboxReceiver { rx, overflow },
    )
}

impl Mailbox {
    /// Queues `delivery` without waiting.
    pub fn deliver(&self, delivery: Delivery) -> Delivered {
        let room = delivery.room;
        let sequenced = delivery.seq != 0;
        match self.tx.try_send(delivery) {
            Ok(()) => Delivered::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if sequenced {
                    let mut rooms = self.overflow.rooms.lock();
                    if !rooms.contains(&room) {
                        rooms.push(room);
                    }
                    self.overflow.any.store(true, Ordering::Release);
                }
                Delivered::Dropped
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Delivered::Closed,
        }
    }

    /// Whether the receiving half is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl MailboxReceiver {
    /// Waits for deliveries and moves up to `limit` of them into `buf`; returns how
    /// many. Returns 0 only when every sender is gone.
    ///
    /// # Cancel safety
    /// Cancel safe: nothing is taken from the queue unless the call completes.
    pub async fn recv_many(&mut self, buf: &mut Vec<Delivery>, limit: usize) -> usize {
        self.rx.recv_many(buf, limit).await
    }

    /// Moves deliveries that are ready into `buf` without waiting, up to `limit`.
    pub fn try_recv_many(&mut self, buf: &mut Vec<Delivery>, limit: usize) -> usize {
        let mut n = 0;
        while n < limit {
            match self.rx.try_recv() {
                Ok(d) => {
                    buf.push(d);
                    n += 1;
                }
                Err(_) => break,
            }
        }
        n
    }

    /// Takes the rooms that overflowed since the last call.
    pub fn take_overflowed(&self) -> Vec<RoomKey> {
        if !self.overflow.any.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        std::mem::take(&mut *self.overflow.rooms.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(room: RoomKey, seq: u64) -> Delivery {
        Delivery {
            room,
            seq,
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
}
