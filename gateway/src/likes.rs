//! Likes arrive by the thousands per second in a hot room; they are summed per room
//! here and published as one `likes` event per window, so the room's event rate stays
//! bounded whatever the click rate.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use danmaku_fanout::Fanout;
use danmaku_protocol::RoomId;
use dashmap::DashMap;

/// Pending like counts per room.
///
/// # Backpressure
/// One entry per room with likes pending since the last flush (bounded by the rooms
/// joined on this gateway); counts saturate at `u64::MAX`.
#[derive(Default)]
pub struct LikeAggregator {
    pending: DashMap<RoomId, AtomicU64>,
}

impl LikeAggregator {
    /// Adds `count` likes to `room`.
    pub fn add(&self, room: &RoomId, count: u64) {
        if let Some(p) = self.pending.get(room) {
            p.fetch_add(count, Ordering::Relaxed);
            return;
        }
        self.pending
            .entry(room.clone())
            .or_default()
            .fetch_add(count, Ordering::Relaxed);
    }

    /// Publishes one `likes` event per room with likes pending. A failed publish puts
    /// its likes back for the next flush, so none is lost.
    pub async fn flush(&self, fanout: &Arc<dyn Fanout>) {
        let due: Vec<(RoomId, u64)> = self
            .pending
            .iter()
            .filter_map(|e| {
                let n = e.value().swap(0, Ordering::AcqRel);
                (n > 0).then(|| (e.key().clone(), n))
            })
            .collect();
        self.pending.retain(|_, v| v.load(Ordering::Acquire) > 0);
        for (room, delta) in due {
            if let Err(e) = fanout.add_likes(&room, delta).await {
                tracing::warn!(%room, delta, error = %e, "likes not published; retrying next window");
                self.add(&room, delta);
            }
        }
    }
}
