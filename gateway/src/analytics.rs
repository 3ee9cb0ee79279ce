//! Retention data at the gateway: what its viewers do is counted into their rooms'
//! analytics in the store ([`danmaku_fanout::analytics`]), so the figures are exact
//! across gateways.
//!
//! Connections tell the [`Recorder`] of joins, leaves and interactions; it queues
//! them per room and a flusher sends each room's queue to the store in one atomic step
//! every [`FLUSH_EVERY`]. The recorder also follows this gateway's open visits, to
//! count each one still present 1, 5 and 15 minutes after it began (the retention
//! curves), once per visit.
//!
//! Times are those of the analytics clock: Unix ms, times `--analytics-time-scale` (1
//! but in load tests that simulate minutes in seconds).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use danmaku_fanout::Fanout;
use danmaku_fanout::analytics::{MILESTONES, MINUTE_MS, Op};
use danmaku_protocol::RoomId;
use dashmap::DashMap;
use parking_lot::Mutex;

use crate::metrics::Metrics;

/// How often the queued ops go to the store.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Ops queued at most (all rooms); beyond, an op is dropped and counted in
/// `danmaku_analytics_dropped_total`.
pub const MAX_QUEUED: usize = 100_000;

/// A visit this gateway holds open (one per connection and room).
#[derive(Debug, Clone)]
struct Open {
    user: String,
    variant: Option<String>,
    /// When the visit began (earlier than the join when a resume continued it, once
    /// the store said so).
    start: u64,
    /// When this connection joined.
    joined: u64,
    /// The same, by the real clock (for the dwell metric).
    since: Instant,
    /// Milestones counted (bit i: `MILESTONES[i]`).
    marks: u8,
}

#[derive(Debug, Default)]
struct Queue {
    /// Per room: the ops, and for each join the connection it opened.
    rooms: HashMap<RoomId, (Vec<Op>, Vec<Option<u64>>)>,
    len: usize,
}

/// Counts what this gateway's viewers do into their rooms' analytics.
#[derive(Debug)]
pub struct Recorder {
    enabled: bool,
    scale: u64,
    window_ms: u64,
    gateway: String,
    queue: Mutex<Queue>,
    open: DashMap<(u64, RoomId), Open>,
    /// Per room: the minute and the largest online count told in it (rooms of the
    /// last minutes only: older ones are dropped at each flush).
    online_told: DashMap<RoomId, (u64, u64)>,
    /// One flush at a time, so that a room's ops reach the store in their order.
    flushing: tokio::sync::Mutex<()>,
    /// Ops dropped at the queue's bound, or lost with a failed flush.
    pub dropped: AtomicU64,
    /// The aggregate metrics the recorder feeds (Prometheus: no per-room labels).
    metrics: Arc<Metrics>,
}

impl Recorder {
    /// A recorder for `gateway`; `window` is how long after a disconnect a resume still
    /// continues the visit (the history's age), in real time.
    pub fn new(
        gateway: &str,
        enabled: bool,
        scale: u64,
        window: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        let scale = scale.max(1);
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        Self {
            enabled,
            scale,
            window_ms: window_ms.saturating_mul(scale),
            gateway: gateway.to_owned(),
            queue: Mutex::default(),
            open: DashMap::new(),
            online_told: DashMap::new(),
            flushing: tokio::sync::Mutex::new(()),
            dropped: AtomicU64::new(0),
            metrics,
        }
    }

    /// Whether anything is recorded (`--analytics`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The analytics clock: Unix ms, scaled.
    pub fn now(&self) -> u64 {
        danmaku_fanout::now_ms().saturating_mul(self.scale)
    }

    fn owner(&self, conn: u64) -> String {
        format!("{}-{conn}", self.gateway)
    }

    fn push(&self, room: &RoomId, op: Op, conn: Option<u64>) {
        let mut q = self.queue.lock();
        if q.len >= MAX_QUEUED {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.len += 1;
        let (ops, conns) = q.rooms.entry(room.clone()).or_default();
        ops.push(op);
        conns.push(conn);
    }

    /// Connection `conn` joined `room`. `resumed`: `Some(recovered)` for a join with
    /// `since`; `first_render`: for the connection's first `joined`, the time since its
    /// upgrade request.
    pub fn joined(
        &self,
        conn: u64,
        room: &RoomId,
        user: &str,
        variant: Option<&str>,
        resumed: Option<bool>,
        first_render: Option<Duration>,
    ) {
        let m = &self.metrics;
        m.joins.inc();
        if let Some(recovered) = resumed {
            m.resumes[usize::from(!recovered)].inc();
        }
        if let Some(d) = first_render {
            m.first_render.observe(d);
        }
        if !self.enabled {
            return;
        }
        let at = self.now();
        let key = (conn, room.clone());
        // A second join of a joined room (a re-sync) keeps its visit; with `since` it
        // counts as a resume.
        if self.open.contains_key(&key) {
            if resumed.is_none() {
                return;
            }
        } else {
            let open = Open {
                user: user.to_owned(),
                variant: variant.map(str::to_owned),
                start: at,
                joined: at,
                since: Instant::now(),
                marks: 0,
            };
            self.open.insert(key, open);
        }
        let op = Op::Join {
            user: user.to_owned(),
            owner: self.owner(conn),
            at,
            variant: variant.map(str::to_owned),
            resumed,
            first_render_ms: first_render.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        };
        self.push(room, op, Some(conn));
    }

    /// Connection `conn` is no longer in `room` (left, kicked, disconnected).
    pub fn left(&self, conn: u64, room: &RoomId) {
        let Some((_, open)) = self.open.remove(&(conn, room.clone())) else {
            return;
        };
        self.metrics.dwell.observe(open.since.elapsed());
        let op = Op::Leave {
            user: open.user,
            owner: self.owner(conn),
            at: self.now(),
            since: open.joined,
            variant: open.variant,
        };
        self.push(room, op, None);
    }

    /// An interaction (`kind` one of [`danmaku_fanout::analytics::KINDS`]) by connection
    /// `conn` in `room`.
    pub fn interaction(&self, conn: u64, room: &RoomId, kind: &'static str) {
        if !self.enabled {
            return;
        }
        let variant = self
            .open
            .get(&(conn, room.clone()))
            .and_then(|o| o.variant.clone());
        let op = Op::Interaction {
            kind,
            at: self.now(),
            variant,
        };
        self.push(room, op, None);
    }

    /// The room's online count, as this gateway's presence read it. The timeline keeps
    /// each minute's largest, so only a count above what this gateway told in this
    /// minute is sent (about one op a minute per steady room, not one a second).
    pub fn online(&self, room: &RoomId, online: u64) {
        if !self.enabled {
            return;
        }
        let at = self.now();
        let minute = danmaku_fanout::analytics::minute(at);
        let mut told = self.online_told.entry(room.clone()).or_insert((0, 0));
        if told.0 == minute && told.1 >= online {
            return;
        }
        *told = (minute, online);
        drop(told);
        self.push(room, Op::Online { at, online }, None);
    }

    /// Queues a milestone for each open visit that just reached one.
    fn sweep(&self) {
        let now = self.now();
        let mut marks = Vec::new();
        for mut entry in self.open.iter_mut() {
            let (conn, room) = entry.key().clone();
            let open = entry.value_mut();
            for (i, minutes) in MILESTONES.iter().enumerate() {
                let bit = 1 << i;
                if open.marks & bit == 0 && now.saturating_sub(open.start) >= minutes * MINUTE_MS {
                    open.marks |= bit;
                    let op = Op::Mark {
                        user: open.user.clone(),
                        owner: self.owner(conn),
                        start: open.start,
                        minutes: *minutes,
                        variant: open.variant.clone(),
                    };
                    marks.push((room.clone(), op));
                }
            }
        }
        for (room, op) in marks {
            self.push(&room, op, None);
        }
    }

    /// Sends the queued ops to the store, each room's in one step; milestones first.
    pub async fn flush(&self, fanout: &dyn Fanout) {
        if !self.enabled {
            return;
        }
        let _one = self.flushing.lock().await;
        self.sweep();
        let this_minute = danmaku_fanout::analytics::minute(self.now());
        self.online_told
            .retain(|_, (minute, _)| *minute + MINUTE_MS >= this_minute);
        let rooms = {
            let mut q = self.queue.lock();
            q.len = 0;
            std::mem::take(&mut q.rooms)
        };
        let sends = rooms.into_iter().map(|(room, (ops, conns))| async move {
            let r = fanout.record(&room, &ops, self.window_ms).await;
            (room, ops.len(), conns, r)
        });
        for (room, n, conns, r) in futures_util::future::join_all(sends).await {
            match r {
                Ok(starts) => {
                    // A resume that continued a visit began it earlier: its milestones
                    // come sooner.
                    for (conn, start) in conns.iter().zip(starts) {
                        if let (Some(conn), Some(start)) = (conn, start)
                            && let Some(mut open) = self.open.get_mut(&(*conn, room.clone()))
                        {
                            open.start = open.start.min(start);
                        }
                    }
                }
                Err(e) => {
                    self.dropped.fetch_add(n as u64, Ordering::Relaxed);
                    tracing::warn!(room = %room, error = %e, ops = n, "analytics not recorded");
                }
            }
        }
    }
}
