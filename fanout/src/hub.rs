//! The local room hub: which connections of this process watch which room.
//!
//! This is the one shared map of the delivery path. A delivery looks the room up, takes
//! its subscriber list lock for the duration of the loop (no await inside), and hands
//! each mailbox a refcount of the same bytes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use danmaku_protocol::RoomId;
use dashmap::DashMap;
use parking_lot::Mutex;

use crate::mailbox::{Delivered, Delivery, Mailbox, RoomKey};

/// Identifies a subscriber (a connection) in the hub.
pub type ConnKey = u64;

struct Subscriber {
    conn: ConnKey,
    mailbox: Mailbox,
}

/// One room's local subscribers.
struct LocalRoom {
    key: RoomKey,
    subscribers: Mutex<Vec<Subscriber>>,
    /// The online count last announced with `presence`.
    announced: AtomicU64,
}

/// Counters the hub keeps for metrics.
#[derive(Debug, Default)]
pub struct HubStats {
    /// Frames queued into mailboxes.
    pub delivered: AtomicU64,
    /// Frames dropped because a mailbox was full.
    pub dropped: AtomicU64,
}

/// Local subscriptions of this process.
#[derive(Default)]
pub struct Hub {
    rooms: DashMap<RoomId, Arc<LocalRoom>>,
    next_key: AtomicU64,
    stats: HubStats,
}

impl Hub {
    /// Creates an empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `conn` as a subscriber of `room`; returns the room's key for its deliveries.
    pub fn subscribe(&self, room: &RoomId, conn: ConnKey, mailbox: Mailbox) -> RoomKey {
        loop {
            let local = self
                .rooms
                .entry(room.clone())
                .or_insert_with(|| {
                    Arc::new(LocalRoom {
                        key: self.next_key.fetch_add(1, Ordering::Relaxed) + 1,
                        subscribers: Mutex::new(Vec::new()),
                        announced: AtomicU64::new(u64::MAX),
                    })
                })
                .clone();
            let mut subs = local.subscribers.lock();
            // A room emptied and removed concurrently: retry with a fresh entry.
            let current = self.rooms.get(room).map(|r| Arc::ptr_eq(&r, &local));
            if current != Some(true) {
                continue;
            }
            subs.push(Subscriber { conn, mailbox });
            return local.key;
        }
    }

    /// Removes `conn` from `room`'s subscribers; forgets the room when it is empty.
    pub fn unsubscribe(&self, room: &RoomId, conn: ConnKey) {
        let Some(local) = self.rooms.get(room).map(|r| r.clone()) else {
            return;
        };
        let mut subs = local.subscribers.lock();
        // Order does not matter: swap_remove keeps a mass disconnect linear per viewer.
        if let Some(i) = subs.iter().position(|s| s.conn == conn) {
            subs.swap_remove(i);
        }
        if subs.is_empty() {
            self.rooms.remove_if(room, |_, r| Arc::ptr_eq(r, &local));
        }
    }

    /// Hands `frame` (sequenced `seq`, or 0 for presence) to every local subscriber.
    pub fn deliver(&self, room: &RoomId, seq: u64, frame: &Bytes) {
        let Some(local) = self.rooms.get(room).map(|r| r.clone()) else {
            return;
        };
        let (mut queued, mut dropped) = (0, 0);
        let mut subs = local.subscribers.lock();
        subs.retain(|s| {
            let d = Delivery {
                room: local.key,
                seq,
                frame: frame.clone(),
            };
            match s.mailbox.deliver(d) {
                Delivered::Queued => queued += 1,
                Delivered::Dropped => dropped += 1,
                Delivered::Closed => return false,
            }
            true
        });
        drop(subs);
        self.stats.delivered.fetch_add(queued, Ordering::Relaxed);
        self.stats.dropped.fetch_add(dropped, Ordering::Relaxed);
    }

    /// Viewers of `room` on this process.
    pub fn online(&self, room: &RoomId) -> u64 {
        // Never lock a subscriber list while holding a map guard (lock order: list → map).
        let local = self.rooms.get(room).map(|r| r.clone());
        local.map_or(0, |r| r.subscribers.lock().len() as u64)
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
